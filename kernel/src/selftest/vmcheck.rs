//! `run=vmcheck`: checks of the user address-space code from kernel threads
//! (before user mode exists): demand-zero memory, user copies and their
//! EFAULT paths, mmap/munmap/mprotect/mremap/madvise/brk semantics and
//! errno values, ELF-style fixed mappings, copy-on-write fork, shared
//! anonymous memory across fork, file mappings through a `PageSource`
//! (private and shared), TLB shootdowns to exactly the CPUs that
//! ran an address space, a multi-CPU stress, a shared-region stress (every
//! CPU faults one mapping, one CPU unmaps half of it: no CPU may still
//! reach the old pages), mappings across the range locks' 1 GiB partition
//! boundaries (one mapping in reports, data, mprotect/mremap/munmap across
//! them), `mmap(NULL)` on different CPUs landing in different partitions
//! (per-core mode), and that every frame comes
//! back (`vmcheck: pass frames_before=.. frames_after=..`).
//!
//! Threads activate address spaces only while pinned (the scheduler does
//! not switch CR3 for kernel threads) and `deactivate` before they end.
//!
//! Must not: leave an address space loaded or alive after a pass.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{join_all_within, report};
use crate::memory::uaccess::{Pod, UserAddr};
use crate::memory::vm::{self, tlb, AddressSpace, PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::memory::{self as kmm};
use crate::sched;
use abi::Errno;

const RW: u32 = PROT_READ | PROT_WRITE;
const ANON: u32 = vm::MAP_PRIVATE | vm::MAP_ANONYMOUS;
const PAGE: u64 = vm::PAGE_SIZE;

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Expects `r` to fail with `want`.
fn expect_err<T: core::fmt::Debug>(what: &str, r: Result<T, Errno>, want: Errno) -> Check {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!(
            "{what}: expected errno {}, got {:?}",
            want.0, other
        )),
    }
}

fn ok<T>(what: &str, r: Result<T, Errno>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: errno {}", e.0))
}

pub fn run() -> u32 {
    kmm::flush_caches();
    let before = kmm::free_frames();
    let result = run_all();
    vm::deactivate();
    // Sources whose last loan went while their mapping was being unmapped
    // wait for a reconciliation pass (`vm::source_ref`): run them first.
    vm::source_ref::quiesce();
    kmm::flush_caches();
    let after = kmm::free_frames();
    let live = vm::live_count();
    let stats = tlb::stats();
    let locks = vm::lock_stats();
    match result {
        Ok(()) if before == after && live == 0 => {
            report(format_args!(
                "vmcheck: pass cpus={} frames_before={} frames_after={} shootdown_ipis={} requests_served={} lock_acquired={} lock_contended={} lock_wait_us={}",
                sched::cpu_count(),
                before,
                after,
                stats.ipis_sent,
                stats.requests_served,
                locks.acquired,
                locks.contended,
                locks.wait_ns / 1000
            ));
            0
        }
        Ok(()) => {
            report(format_args!(
                "vmcheck: FAIL frames lost: frames_before={} frames_after={} address_spaces_alive={}",
                before, after, live
            ));
            1
        }
        Err(e) => {
            report(format_args!("vmcheck: FAIL {}", e));
            1
        }
    }
}

fn run_all() -> Check {
    // Every CPU got its protections at boot (the boot IPI check reaches
    // each), before any of them loaded a user address space.
    for cpu in 0..sched::cpu_count() {
        ensure!(
            vm::aspace::cpu_features_on(cpu),
            "SMEP/SMAP/NX setup did not run on cpu {cpu}"
        );
    }
    on_cpu(0, basics)?;
    on_cpu(0, errors)?;
    on_cpu(0, protections)?;
    on_cpu(0, fork_and_sharing)?;
    on_cpu(0, remap_advise_brk)?;
    on_cpu(0, elf_segments)?;
    on_cpu(0, file_mappings)?;
    on_cpu(0, resident_sources)?;
    on_cpu(0, random_against_model)?;
    on_cpu(0, partitions)?;
    on_cpu(0, own_stripe_full_falls_back)?;
    if sched::cpu_count() >= 2 {
        shootdown()?;
        per_cpu_placement()?;
        source_loans_on_two_cpus()?;
    }
    stress()?;
    if sched::cpu_count() >= 2 {
        shared_stress()?;
    }
    Ok(())
}

/// Runs `f` in a thread pinned to `cpu` and deactivates afterwards.
fn on_cpu(cpu: usize, f: fn() -> Check) -> Check {
    let out: Arc<spin::Mutex<Option<Check>>> = Arc::new(spin::Mutex::new(None));
    let slot = out.clone();
    let h = sched::spawn("vmcheck", Some(cpu), move || {
        let r = f();
        vm::deactivate();
        *slot.lock() = Some(r);
    });
    join_all_within(alloc::vec![h], 60_000_000_000)
        .map_err(|s| format!("thread {s} did not finish"))?;
    let r = out.lock().take();
    r.unwrap_or_else(|| Err(String::from("thread gave no result")))
}

fn new_active() -> Result<Arc<AddressSpace>, String> {
    let a = ok("new_user", AddressSpace::new_user())?;
    a.activate();
    Ok(a)
}

fn basics() -> Check {
    let a = new_active()?;
    let len = 16 * PAGE;
    let addr = ok("mmap anon", a.map_anonymous(0, len, RW, ANON))?;
    ensure!(
        addr % PAGE == 0 && addr >= vm::MMAP_MIN && addr + len <= vm::MMAP_TOP,
        "mmap gave {addr:#x}"
    );
    ensure!(
        a.resident_pages(addr, addr + len) == 0,
        "anonymous memory populated before use"
    );
    let mut buf = [0xffu8; 32];
    ok("read untouched", copy_from_user(&mut buf, addr + 5 * PAGE))?;
    ensure!(
        buf.iter().all(|&b| b == 0),
        "fresh anonymous memory is not zero"
    );
    ok("write", copy_to_user(addr + 100, b"hello, user"))?;
    let mut back = [0u8; 11];
    ok("read back", copy_from_user(&mut back, addr + 100))?;
    ensure!(&back == b"hello, user", "read back {:?}", back);
    // A copy crossing a page boundary.
    let big: Vec<u8> = (0..3 * PAGE as usize).map(|i| i as u8).collect();
    ok("write 3 pages", copy_to_user(addr + 2 * PAGE + 7, &big))?;
    let mut big_back = alloc::vec![0u8; big.len()];
    ok(
        "read 3 pages",
        copy_from_user(&mut big_back, addr + 2 * PAGE + 7),
    )?;
    ensure!(big == big_back, "multi-page copy differs");
    ok(
        "write_user",
        write_user(addr + 8 * PAGE, &0x1122_3344_5566_7788u64),
    )?;
    ensure!(
        read_user::<u64>(addr + 8 * PAGE) == Ok(0x1122_3344_5566_7788),
        "read_user/write_user round trip"
    );
    ok("cstr write", copy_to_user(addr + 2 * PAGE - 3, b"ab\0"))?;
    ensure!(
        read_user_cstr(addr + 2 * PAGE - 3, 64) == Ok(String::from("ab")),
        "read_user_cstr"
    );
    expect_err(
        "cstr too long",
        read_user_cstr(addr + 100, 4),
        Errno::ENAMETOOLONG,
    )?;
    // Longer than the first buffer (it grows), unaligned, across a page.
    let mut long = alloc::vec![b'x'; 300];
    long.push(0);
    ok(
        "long cstr write",
        copy_to_user(addr + 13 * PAGE - 151, &long),
    )?;
    let want = String::from_utf8(long[..300].to_vec()).unwrap_or_default();
    ensure!(
        read_user_cstr(addr + 13 * PAGE - 151, 4095).as_ref() == Ok(&want),
        "long read_user_cstr"
    );
    ensure!(
        read_user_cstr(addr + 13 * PAGE - 151, 300).as_ref() == Ok(&want),
        "read_user_cstr of exactly max bytes"
    );
    expect_err(
        "cstr one over max",
        read_user_cstr(addr + 13 * PAGE - 151, 299),
        Errno::ENAMETOOLONG,
    )?;
    // Ending with the last byte of the mapping: nothing past it is read;
    // unterminated there: EFAULT (the next page is not mapped).
    ok(
        "cstr at end",
        copy_to_user(addr + len - 11, b"0123456789\0"),
    )?;
    ensure!(
        read_user_cstr(addr + len - 11, 4095) == Ok(String::from("0123456789")),
        "read_user_cstr ending at the mapping's end"
    );
    ok(
        "cstr unterminated",
        copy_to_user(addr + len - 20, &[b'y'; 20]),
    )?;
    expect_err(
        "cstr into an unmapped page",
        read_user_cstr(addr + len - 20, 4095),
        Errno::EFAULT,
    )?;
    expect_err(
        "cstr kernel",
        read_user_cstr(vm::USER_END, 16),
        Errno::EFAULT,
    )?;
    ok("zero_user", zero_user(addr + 100, 5))?;
    ok("read zeroed", copy_from_user(&mut back, addr + 100))?;
    ensure!(&back == b"\0\0\0\0\0, user", "zero_user: {:?}", back);
    expect_err(
        "zero_user kernel",
        zero_user(vm::USER_END, 1),
        Errno::EFAULT,
    )?;
    // MAP_POPULATE.
    let p = ok(
        "populate",
        a.map_anonymous(0, 4 * PAGE, RW, ANON | vm::MAP_POPULATE),
    )?;
    ensure!(
        a.resident_pages(p, p + 4 * PAGE) == 4,
        "MAP_POPULATE left pages out"
    );
    ok("munmap", a.unmap(addr, len))?;
    expect_err(
        "read after munmap",
        copy_from_user(&mut buf, addr + 100),
        Errno::EFAULT,
    )?;
    ensure!(a.resident_pages(addr, addr + len) == 0, "munmap left pages");
    // A hint is honoured when free.
    let hint = 0x5000_0000;
    ensure!(
        a.map_anonymous(hint, PAGE, RW, ANON) == Ok(hint),
        "free hint not used"
    );
    Ok(())
}

fn errors() -> Check {
    let a = new_active()?;
    let mut buf = [0u8; 8];
    expect_err("unmapped", copy_from_user(&mut buf, 0x1000), Errno::EFAULT)?;
    expect_err("null", copy_to_user(0, &buf), Errno::EFAULT)?;
    expect_err(
        "kernel address",
        copy_from_user(&mut buf, 0xffff_8000_0000_0000),
        Errno::EFAULT,
    )?;
    expect_err(
        "kernel data",
        copy_from_user(&mut buf, &PAGE as *const u64 as u64),
        Errno::EFAULT,
    )?;
    expect_err(
        "straddles USER_END",
        copy_from_user(&mut buf, vm::USER_END - 4),
        Errno::EFAULT,
    )?;
    expect_err("wraps", copy_to_user(u64::MAX - 2, &buf), Errno::EFAULT)?;
    expect_err("len 0", a.map_anonymous(0, 0, RW, ANON), Errno::EINVAL)?;
    expect_err(
        "no type",
        a.map_anonymous(0, PAGE, RW, vm::MAP_ANONYMOUS),
        Errno::EINVAL,
    )?;
    expect_err(
        "bad prot",
        a.map_anonymous(0, PAGE, 0x80, ANON),
        Errno::EINVAL,
    )?;
    expect_err(
        "fixed unaligned",
        a.map_anonymous(0x10_0001, PAGE, RW, ANON | vm::MAP_FIXED),
        Errno::EINVAL,
    )?;
    expect_err("huge", a.map_anonymous(0, 1 << 47, RW, ANON), Errno::ENOMEM)?;
    expect_err(
        "fixed beyond",
        a.map_anonymous(vm::USER_TOP, 2 * PAGE, RW, ANON | vm::MAP_FIXED),
        Errno::ENOMEM,
    )?;
    expect_err(
        "file without fs",
        a.mmap(0, PAGE, PROT_READ, vm::MAP_PRIVATE, None),
        Errno::EBADF,
    )?;
    let fixed = 0x2000_0000;
    ok(
        "fixed",
        a.map_anonymous(fixed, 4 * PAGE, RW, ANON | vm::MAP_FIXED),
    )?;
    ok("write fixed", copy_to_user(fixed + PAGE, b"old"))?;
    expect_err(
        "noreplace",
        a.map_anonymous(fixed + PAGE, PAGE, RW, ANON | vm::MAP_FIXED_NOREPLACE),
        Errno::EEXIST,
    )?;
    ensure!(
        a.map_anonymous(fixed + PAGE, PAGE, RW, ANON | vm::MAP_FIXED) == Ok(fixed + PAGE),
        "MAP_FIXED over a mapping"
    );
    let mut b3 = [0xffu8; 3];
    ok("read replaced", copy_from_user(&mut b3, fixed + PAGE))?;
    ensure!(b3 == [0; 3], "MAP_FIXED kept the old contents");
    expect_err("munmap unaligned", a.unmap(fixed + 1, PAGE), Errno::EINVAL)?;
    expect_err("munmap len 0", a.unmap(fixed, 0), Errno::EINVAL)?;
    ok("munmap nothing", a.unmap(0x3000_0000, PAGE))?;
    expect_err(
        "mprotect unmapped",
        a.protect(0x3000_0000, PAGE, PROT_READ),
        Errno::ENOMEM,
    )?;
    expect_err(
        "mprotect unaligned",
        a.protect(fixed + 3, PAGE, PROT_READ),
        Errno::EINVAL,
    )?;
    expect_err(
        "madvise bad advice",
        a.advise(fixed, PAGE, 999),
        Errno::EINVAL,
    )?;
    expect_err(
        "madvise unmapped",
        a.advise(0x3000_0000, PAGE, vm::MADV_DONTNEED),
        Errno::ENOMEM,
    )?;
    ok("madvise hint", a.advise(fixed, PAGE, 0))?;
    expect_err(
        "mremap unmapped",
        a.remap(0x3000_0000, PAGE, 2 * PAGE, vm::MREMAP_MAYMOVE, 0),
        Errno::EFAULT,
    )?;
    expect_err(
        "mremap fixed without maymove",
        a.remap(fixed, PAGE, PAGE, vm::MREMAP_FIXED, 0x4000_0000),
        Errno::EINVAL,
    )?;
    let fault = a.handle_fault(0x3000_0000, false, true, false);
    ensure!(
        fault == Err(vm::Fault::MapErr),
        "fault on unmapped: {:?}",
        fault
    );
    Ok(())
}

fn protections() -> Check {
    let a = new_active()?;
    let addr = ok("mmap", a.map_anonymous(0, 4 * PAGE, RW, ANON))?;
    ok("write", copy_to_user(addr, b"keep me"))?;
    ok("mprotect R", a.protect(addr, PAGE, PROT_READ))?;
    ensure!(
        a.vma_count() == 2,
        "mprotect of a part should split the VMA ({} VMAs)",
        a.vma_count()
    );
    expect_err(
        "write to read-only",
        copy_to_user(addr, b"x"),
        Errno::EFAULT,
    )?;
    let mut b = [0u8; 7];
    ok("read read-only", copy_from_user(&mut b, addr))?;
    ensure!(&b == b"keep me", "contents changed by mprotect");
    ok("mprotect NONE", a.protect(addr, PAGE, 0))?;
    expect_err(
        "read PROT_NONE",
        copy_from_user(&mut b, addr),
        Errno::EFAULT,
    )?;
    ensure!(
        a.handle_fault(addr, false, true, false) == Err(vm::Fault::AccErr),
        "PROT_NONE fault is not ACCERR"
    );
    ok("mprotect RW", a.protect(addr, PAGE, RW))?;
    ensure!(
        a.vma_count() == 1,
        "equal neighbours should merge again ({} VMAs)",
        a.vma_count()
    );
    ok("read again", copy_from_user(&mut b, addr))?;
    ensure!(&b == b"keep me", "contents lost across PROT_NONE");
    ensure!(
        a.handle_fault(addr, false, true, true) == Err(vm::Fault::AccErr),
        "exec of non-exec memory allowed"
    );
    Ok(())
}

fn fork_and_sharing() -> Check {
    let parent = new_active()?;
    let private = ok("mmap private", parent.map_anonymous(0, 4 * PAGE, RW, ANON))?;
    let shared = ok(
        "mmap shared",
        parent.map_anonymous(0, 4 * PAGE, RW, vm::MAP_SHARED | vm::MAP_ANONYMOUS),
    )?;
    ok("write A", copy_to_user(private, b"AAAA"))?;
    ok("write S", copy_to_user(shared, b"S1"))?;
    let frames_before_fork = kmm::free_frames();
    let child = ok("fork_cow", parent.fork_cow())?;
    // Copy-on-write: the fork copied tables, not pages.
    ensure!(
        frames_before_fork.saturating_sub(kmm::free_frames()) < 16,
        "fork copied pages ({} frames)",
        frames_before_fork.saturating_sub(kmm::free_frames())
    );
    ok("parent writes B", copy_to_user(private, b"BBBB"))?;
    let mut b = [0u8; 4];
    ok("child read", child.read_bytes(private, &mut b))?;
    ensure!(&b == b"AAAA", "child sees the parent's write: {:?}", b);
    child.activate();
    ok("child read active", copy_from_user(&mut b, private))?;
    ensure!(&b == b"AAAA", "child (active) sees {:?}", b);
    ok("child writes C", copy_to_user(private, b"CCCC"))?;
    // Shared memory: both directions, including a page first touched after fork.
    ok("child writes shared", copy_to_user(shared, b"S2"))?;
    ok(
        "child touches new shared page",
        copy_to_user(shared + 2 * PAGE, b"N"),
    )?;
    parent.activate();
    ok("parent read", copy_from_user(&mut b, private))?;
    ensure!(&b == b"BBBB", "parent sees {:?}", b);
    let mut s = [0u8; 2];
    ok("parent read shared", copy_from_user(&mut s, shared))?;
    ensure!(
        &s == b"S2",
        "MAP_SHARED write of the child not seen: {:?}",
        s
    );
    let mut n = [0u8; 1];
    ok(
        "parent read new shared",
        copy_from_user(&mut n, shared + 2 * PAGE),
    )?;
    ensure!(&n == b"N", "shared page touched after fork not shared");
    // A grandchild of an untouched COW page, then the parent unmaps.
    let grandchild = ok("fork again", child.fork_cow())?;
    ok("parent munmap", parent.unmap(private, 4 * PAGE))?;
    ok("grandchild read", grandchild.read_bytes(private, &mut b))?;
    ensure!(&b == b"CCCC", "grandchild sees {:?}", b);
    drop(child);
    ok(
        "grandchild read after child died",
        grandchild.read_bytes(private, &mut b),
    )?;
    ensure!(&b == b"CCCC", "grandchild lost its page: {:?}", b);
    Ok(())
}

fn remap_advise_brk() -> Check {
    let a = new_active()?;
    let addr = ok("mmap", a.map_anonymous(0, 2 * PAGE, RW, ANON))?;
    ok("write", copy_to_user(addr + PAGE, b"moved"))?;
    // Block growth in place so the grow has to move.
    ok(
        "blocker",
        a.map_anonymous(addr + 2 * PAGE, PAGE, PROT_READ, ANON | vm::MAP_FIXED),
    )?;
    expect_err(
        "grow without MAYMOVE",
        a.remap(addr, 2 * PAGE, 8 * PAGE, 0, 0),
        Errno::ENOMEM,
    )?;
    let new = ok(
        "mremap move",
        a.remap(addr, 2 * PAGE, 8 * PAGE, vm::MREMAP_MAYMOVE, 0),
    )?;
    ensure!(new != addr, "mremap did not move");
    let mut b = [0u8; 5];
    ok("read moved", copy_from_user(&mut b, new + PAGE))?;
    ensure!(&b == b"moved", "mremap lost contents: {:?}", b);
    expect_err(
        "old range gone",
        copy_from_user(&mut b, addr + PAGE),
        Errno::EFAULT,
    )?;
    ok("write grown part", copy_to_user(new + 7 * PAGE, b"x"))?;
    ensure!(
        a.remap(new, 8 * PAGE, PAGE, 0, 0) == Ok(new),
        "mremap shrink"
    );
    expect_err(
        "shrunk tail gone",
        copy_from_user(&mut b, new + 7 * PAGE),
        Errno::EFAULT,
    )?;
    // Growth in place.
    let g = ok("mmap", a.map_anonymous(0x6000_0000, PAGE, RW, ANON))?;
    ensure!(a.remap(g, PAGE, 3 * PAGE, 0, 0) == Ok(g), "mremap in place");
    ok("write grown in place", copy_to_user(g + 2 * PAGE, b"y"))?;
    // MADV_DONTNEED: private anonymous pages read back as zero.
    ok("write", copy_to_user(g, b"gone"))?;
    let resident = a.resident_pages(g, g + 3 * PAGE);
    ok("madvise", a.advise(g, 3 * PAGE, vm::MADV_DONTNEED))?;
    ensure!(
        resident > 0 && a.resident_pages(g, g + 3 * PAGE) == 0,
        "DONTNEED kept pages"
    );
    let mut z = [0xffu8; 4];
    ok("read after DONTNEED", copy_from_user(&mut z, g))?;
    ensure!(z == [0; 4], "DONTNEED did not zero: {:?}", z);
    // brk: the break starts inside a page the data segment would own.
    let base = 0x0100_0123;
    let heap = 0x0100_1000;
    a.set_brk_base(base);
    ensure!(a.brk(0) == base, "brk(0)");
    ensure!(a.brk(base - 1) == base, "brk below the base moved it");
    let top = base + 5 * PAGE;
    ensure!(a.brk(top) == top, "brk grow");
    ok("write heap end", copy_to_user(top - 8, b"heap!"))?;
    ok("write heap start", copy_to_user(heap, b"h"))?;
    let shrunk = base + PAGE + 10;
    ensure!(a.brk(shrunk) == shrunk, "brk shrink");
    expect_err(
        "above shrunk brk",
        copy_to_user(top - 8, b"x"),
        Errno::EFAULT,
    )?;
    ok("below shrunk brk", copy_to_user(heap, b"h"))?;
    ok(
        "blocker above brk",
        a.map_anonymous(0x0100_4000, PAGE, RW, ANON | vm::MAP_FIXED),
    )?;
    ensure!(a.brk(base + 8 * PAGE) == shrunk, "brk grew over a mapping");
    Ok(())
}

/// Mappings across partition boundaries of the range locks (1 GiB in
/// per-core mode; under `locks=global` there are none, and the same
/// answers are expected).
fn partitions() -> Check {
    let a = new_active()?;
    let gib = 0x4000_0000u64;
    let (lo, hi) = (gib - 4 * PAGE, gib + 4 * PAGE);
    let before = a.vma_count();
    ok(
        "mmap across",
        a.map_anonymous(lo, hi - lo, RW, ANON | vm::MAP_FIXED),
    )?;
    ensure!(
        a.vma_count() == before + 1,
        "a mapping across 1 GiB is not one VMA"
    );
    let line: Vec<u8> = (0..64u8).collect();
    ok("write across", copy_to_user(gib - 32, &line))?;
    let mut back = [0u8; 64];
    ok("read across", copy_from_user(&mut back, gib - 32))?;
    ensure!(back[..] == line[..], "data across 1 GiB differs");
    ok(
        "mprotect across",
        a.protect(gib - PAGE, 2 * PAGE, PROT_READ),
    )?;
    ensure!(
        a.vma_count() == before + 3,
        "mprotect across 1 GiB: {} VMAs",
        a.vma_count()
    );
    ok("mprotect back", a.protect(gib - PAGE, 2 * PAGE, RW))?;
    ensure!(a.vma_count() == before + 1, "mprotect back did not merge");
    // Move the whole mapping (source and target span boundaries).
    let target = 3 * gib - 2 * PAGE;
    let moved = ok(
        "mremap across",
        a.remap(
            lo,
            hi - lo,
            hi - lo,
            vm::MREMAP_MAYMOVE | vm::MREMAP_FIXED,
            target,
        ),
    )?;
    ensure!(moved == target, "mremap went to {moved:#x}");
    ok(
        "read moved",
        copy_from_user(&mut back, target + 4 * PAGE - 32),
    )?;
    ensure!(back[..] == line[..], "mremap across 1 GiB lost data");
    // Grow in place over the next boundary.
    let g = 2 * gib - 2 * PAGE;
    ok(
        "mmap below 2 GiB",
        a.map_anonymous(g, 2 * PAGE, RW, ANON | vm::MAP_FIXED),
    )?;
    ok("write below", copy_to_user(g, b"grow"))?;
    ensure!(
        a.remap(g, 2 * PAGE, 4 * PAGE, 0, 0) == Ok(g),
        "grow in place across 2 GiB"
    );
    ok("write grown", copy_to_user(2 * gib + PAGE, b"up"))?;
    let mut w = [0u8; 4];
    ok("read kept", copy_from_user(&mut w, g))?;
    ensure!(&w == b"grow", "grow in place lost data");
    ok("munmap across", a.unmap(target, hi - lo))?;
    ok("munmap grown", a.unmap(g, 4 * PAGE))?;
    ensure!(
        a.resident_pages(target, target + (hi - lo)) == 0 && a.vma_count() == before,
        "munmap across boundaries left pages or VMAs"
    );
    Ok(())
}

/// Per-core mode: `mmap(NULL)` by threads on CPUs 0 and 1 of one address
/// space returns addresses in different 1 GiB partitions (the range locks
/// of different stripes); under `locks=global`, anywhere.
fn per_cpu_placement() -> Check {
    let a = ok("new_user", AddressSpace::new_user())?;
    /// Per CPU: what its `mmap(NULL)` returned.
    type Placed = [Option<Result<u64, Errno>>; 2];
    let got: Arc<spin::Mutex<Placed>> = Arc::new(spin::Mutex::new([None, None]));
    let handles: Vec<_> = (0..2)
        .map(|cpu| {
            let (a, got) = (a.clone(), got.clone());
            sched::spawn("vmcheck-place", Some(cpu), move || {
                let r = a.map_anonymous(0, 16 * PAGE, RW, ANON);
                got.lock()[cpu] = Some(r);
            })
        })
        .collect();
    join_all_within(handles, 60_000_000_000).map_err(|s| format!("thread {s} did not finish"))?;
    let [Some(x), Some(y)] = *got.lock() else {
        return Err(String::from("placement thread gave no result"));
    };
    let (x, y) = (ok("mmap cpu 0", x)?, ok("mmap cpu 1", y)?);
    if crate::cmdline::lock_mode() == crate::cmdline::LockMode::PerCpu {
        ensure!(
            x >> 30 != y >> 30,
            "mmap(NULL) on CPUs 0 and 1 share a partition: {x:#x} {y:#x}"
        );
    }
    ok("munmap 0", a.unmap(x, 16 * PAGE))?;
    ok("munmap 1", a.unmap(y, 16 * PAGE))
}

/// Per-core mode: once the partitions of the calling CPU's own stripe
/// that `mmap(NULL)` tries first are full, it still succeeds through the
/// search over every partition (and outside them); under `locks=global`
/// the same calls work in the one partition.  Runs on CPU 0.
fn own_stripe_full_falls_back() -> Check {
    const GIB: u64 = 1 << 30;
    /// `place`'s own partitions per CPU (`OWN_PARTITIONS` in map.rs).
    const OWN: usize = 4;
    let a = ok("new_user", AddressSpace::new_user())?;
    let me = crate::arch::cpu::id() as u64;
    let per_core = crate::cmdline::lock_mode() == crate::cmdline::LockMode::PerCpu;
    // Whole 1 GiB partitions, inaccessible and not committed.
    let mut big = Vec::new();
    for i in 0..OWN {
        let at = ok(
            "1 GiB mmap(NULL)",
            a.map_anonymous(0, GIB, 0, ANON | vm::MAP_NORESERVE),
        )?;
        if per_core {
            ensure!(
                at % GIB == 0 && (at / GIB) % 64 == me % 64,
                "1 GiB mapping {i} at {at:#x} is not a whole partition of cpu {me}'s stripe"
            );
        }
        big.push(at);
    }
    // The own partitions are full: the next mmap(NULL) must fall back.
    let small = ok(
        "mmap(NULL) with a full stripe",
        a.map_anonymous(0, 16 * PAGE, RW, ANON),
    )?;
    ensure!(
        big.iter()
            .all(|&b| small + 16 * PAGE <= b || small >= b + GIB),
        "fallback mapping {small:#x} overlaps a full partition"
    );
    if per_core && me % 64 != 63 {
        ensure!(
            (small / GIB) % 64 != me % 64,
            "fallback mapping {small:#x} is in cpu {me}'s own stripe: not the all-stripe search"
        );
    }
    // It is real memory: write and read it back.
    ok("write fallback", a.write_bytes(small, &[0x5a; 8]))?;
    let mut back = [0u8; 8];
    ok("read fallback", a.read_bytes(small, &mut back))?;
    ensure!(back == [0x5a; 8], "fallback mapping reads back {back:?}");
    ok("munmap fallback", a.unmap(small, 16 * PAGE))?;
    for b in big {
        ok("munmap 1 GiB", a.unmap(b, GIB))?;
    }
    ensure!(a.vma_count() == 0, "{} mappings left", a.vma_count());
    Ok(())
}

/// Faults on one shared anonymous mapping from CPUs 0 and 1 take loans of
/// its source (`vm::source_ref`: per-CPU RefCache counts, not the `Arc`);
/// none releases it while the mapping exists, and the munmap of the last
/// mapping releases it at once (no loan is out).
fn source_loans_on_two_cpus() -> Check {
    let a = ok("new_user", AddressSpace::new_user())?;
    let pages = 8;
    let at = ok(
        "shared anon mmap",
        a.map_anonymous(0, pages * PAGE, RW, vm::MAP_SHARED | vm::MAP_ANONYMOUS),
    )?;
    // Earlier checks' deferred releases first, so the count below is ours.
    vm::source_ref::quiesce();
    let released = vm::source_ref::stats().released;
    let errors: Arc<spin::Mutex<Vec<String>>> = Arc::new(spin::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..2usize)
        .map(|cpu| {
            let (a, errors) = (a.clone(), errors.clone());
            sched::spawn("vmcheck-loans", Some(cpu), move || {
                for p in 0..pages {
                    let va = at + p * PAGE + cpu as u64 * 8;
                    if let Err(e) = a.write_bytes(va, &[cpu as u8 + 1; 8]) {
                        errors
                            .lock()
                            .push(format!("cpu {cpu} page {p}: errno {}", e.0));
                    }
                }
            })
        })
        .collect();
    join_all_within(handles, 60_000_000_000).map_err(|s| format!("thread {s} did not finish"))?;
    if let Some(e) = errors.lock().first() {
        return Err(e.clone());
    }
    // Both CPUs' bytes are in the one shared page.
    let mut back = [0u8; 16];
    ok("read shared", a.read_bytes(at + 3 * PAGE, &mut back))?;
    ensure!(
        back == [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2],
        "shared page reads {back:?}"
    );
    vm::source_ref::reconcile();
    vm::source_ref::reconcile();
    ensure!(
        vm::source_ref::stats().released == released,
        "a source was released while its mapping exists"
    );
    ok("munmap shared", a.unmap(at, pages * PAGE))?;
    ensure!(
        vm::source_ref::stats().released == released + 1,
        "munmap of the only mapping did not release its source (released {} -> {})",
        released,
        vm::source_ref::stats().released
    );
    Ok(())
}

fn elf_segments() -> Check {
    let a = AddressSpace::new_user().map_err(|e| format!("new_user: {}", e.0))?;
    // Written while not loaded (exec builds the image first).
    let text: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    ok(
        "text",
        a.map_fixed_with_data(0x40_0123, 0x2000, &text, PROT_READ | PROT_EXEC),
    )?;
    // Data shares the text's last page, with a bss tail.
    ok(
        "data",
        a.map_fixed_with_data(0x40_2200, 0x3000, b"data!", RW),
    )?;
    expect_err(
        "data larger than memsz",
        a.map_fixed_with_data(0x50_0000, 2, b"abc", RW),
        Errno::EINVAL,
    )?;
    a.activate();
    let mut back = alloc::vec![0u8; text.len()];
    ok("read text", copy_from_user(&mut back, 0x40_0123))?;
    ensure!(back == text, "segment contents differ");
    let mut d = [0u8; 5];
    ok("read data", copy_from_user(&mut d, 0x40_2200))?;
    ensure!(&d == b"data!", "data segment {:?}", d);
    let mut bss = [0xffu8; 64];
    ok("read bss", copy_from_user(&mut bss, 0x40_2205))?;
    ensure!(bss.iter().all(|&x| x == 0), "bss not zero");
    expect_err("write text", copy_to_user(0x40_0200, b"x"), Errno::EFAULT)?;
    ok("write data", copy_to_user(0x40_4000, b"x"))?;
    ensure!(
        a.handle_fault(0x40_0200, false, true, true).is_ok(),
        "text not executable"
    );
    ensure!(
        a.handle_fault(0x40_4000, false, true, true) == Err(vm::Fault::AccErr),
        "data executable"
    );
    Ok(())
}

/// CPU 1 caches a translation; CPU 0 unmaps / write-protects; CPU 1 must
/// see the change at once.  CPUs that never ran the address space get no
/// request.
fn shootdown() -> Check {
    let a = ok("new_user", AddressSpace::new_user())?;
    let addr = ok("mmap", a.map_anonymous(0, 2 * PAGE, RW, ANON))?;
    ok("fill", a.write_bytes(addr, b"warm"))?;
    ok("fill 2", a.write_bytes(addr + PAGE, b"warm"))?;
    let step = Arc::new(AtomicU32::new(0));
    let failure = Arc::new(spin::Mutex::new(None::<String>));
    let (a1, s1, f1) = (a.clone(), step.clone(), failure.clone());
    let others: Vec<u64> = (2..sched::cpu_count()).map(tlb::served_by).collect();
    let h = sched::spawn("vm-shoot", Some(1), move || {
        let fail = |m: String| *f1.lock() = Some(m);
        a1.activate();
        let mut b = [0u8; 4];
        if copy_from_user(&mut b, addr).is_err() || copy_to_user(addr + PAGE, b"more").is_err() {
            fail(String::from("cpu 1 could not use the mapping"));
        }
        s1.store(1, Ordering::SeqCst);
        while s1.load(Ordering::SeqCst) < 2 {
            core::hint::spin_loop();
        }
        if copy_from_user(&mut b, addr) != Err(Errno::EFAULT) {
            fail(String::from(
                "cpu 1 still reads a page cpu 0 unmapped (stale TLB)",
            ));
        }
        if copy_to_user(addr + PAGE, b"late") != Err(Errno::EFAULT) {
            fail(String::from(
                "cpu 1 still writes a page cpu 0 made read-only (stale TLB)",
            ));
        }
        drop(a1);
        vm::deactivate();
        s1.store(3, Ordering::SeqCst);
    });
    let deadline = crate::arch::time::now_ns() + 20_000_000_000;
    while step.load(Ordering::SeqCst) < 1 && crate::arch::time::now_ns() < deadline {
        sched::sleep_ns(1_000_000);
    }
    ensure!(
        a.cpu_mask() & 0b10 != 0,
        "cpu 1 not in the address space's mask"
    );
    ensure!(
        a.cpu_mask() & !0b11 == 0,
        "cpus that never ran it are in the mask: {:#x}",
        a.cpu_mask()
    );
    ok("munmap", a.unmap(addr, PAGE))?;
    ok("mprotect", a.protect(addr + PAGE, PAGE, PROT_READ))?;
    step.store(2, Ordering::SeqCst);
    join_all_within(alloc::vec![h], 20_000_000_000).map_err(|s| format!("{s} did not finish"))?;
    if let Some(m) = failure.lock().take() {
        return Err(m);
    }
    ensure!(
        step.load(Ordering::SeqCst) == 3,
        "cpu 1 did not finish its checks"
    );
    let mut b = [0u8; 4];
    ok("contents kept", a.read_bytes(addr + PAGE, &mut b))?;
    ensure!(&b == b"more", "write of cpu 1 lost: {:?}", b);
    if percpu::lock_mode() == percpu::LockMode::PerCpu {
        let now: Vec<u64> = (2..sched::cpu_count()).map(tlb::served_by).collect();
        ensure!(
            now == others,
            "cpus 2.. got shootdowns for an address space they never ran"
        );
    }
    Ok(())
}

/// Threads on every CPU share one address space: each maps, fills, checks
/// and unmaps its own regions while one of them forks and drops children.
fn stress() -> Check {
    let cpus = sched::cpu_count();
    let a = ok("new_user", AddressSpace::new_user())?;
    let errors = Arc::new(spin::Mutex::new(Vec::<String>::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for cpu in 0..cpus {
        let (a, errors, ops) = (a.clone(), errors.clone(), ops.clone());
        handles.push(sched::spawn("vm-stress", Some(cpu), move || {
            a.activate();
            if !vm::aspace::protections_in_force() {
                errors
                    .lock()
                    .push(format!("cpu {cpu}: SMEP/SMAP/WP/NXE not all in force"));
            }
            let mut rng = super::Rng::new(cpu as u64 + 1);
            for round in 0..150u64 {
                let pages = 1 + rng.below(8);
                let len = pages * PAGE;
                let r = (|| -> Check {
                    let addr = ok("mmap", a.map_anonymous(0, len, RW, ANON))?;
                    let tag = (cpu as u64) << 32 | round;
                    for p in 0..pages {
                        ok(
                            "write",
                            write_user(addr + p * PAGE + 8 * (p % 7), &(tag ^ p)),
                        )?;
                    }
                    if cpu == 0 && round % 10 == 0 {
                        let child = ok("fork", a.fork_cow())?;
                        ok("write after fork", write_user(addr, &!tag))?;
                        let mut v = [0u8; 8];
                        ok("child read", child.read_bytes(addr, &mut v))?;
                        ensure!(
                            u64::from_le_bytes(v) == tag,
                            "child saw a write made after fork"
                        );
                        ok("write back", write_user(addr, &tag))?;
                    }
                    sched::yield_now();
                    for p in 0..pages {
                        let v: u64 = ok("read", read_user(addr + p * PAGE + 8 * (p % 7)))?;
                        ensure!(
                            v == tag ^ p,
                            "cpu {cpu} round {round}: page {p} holds {v:#x}"
                        );
                    }
                    // (No read-after-unmap check here: another CPU may map
                    // the same range again at once.)
                    ok("munmap", a.unmap(addr, len))?;
                    Ok(())
                })();
                if let Err(e) = r {
                    errors.lock().push(e);
                    break;
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
            vm::deactivate();
        }));
    }
    join_all_within(handles, 120_000_000_000)
        .map_err(|s| format!("stress threads {s} did not finish"))?;
    if let Some(e) = errors.lock().first() {
        return Err(format!("stress: {e}"));
    }
    ensure!(a.vma_count() == 0, "stress left {} VMAs", a.vma_count());
    ensure!(
        ops.load(Ordering::Relaxed) == 150 * cpus as u64,
        "stress did not complete every round"
    );
    Ok(())
}

/// Every CPU faults every page of one shared mapping; CPU 0 unmaps its
/// first half (the others must then fault with EFAULT there: a stale
/// translation in some CPU's own table or TLB would let the read through)
/// and maps it again; CPU 1 forks and drops a child meanwhile.  Rounds are
/// separated by barriers (spin and yield).
fn shared_stress() -> Check {
    const PAGES: u64 = 16;
    const HALF: u64 = PAGES / 2;
    const ROUNDS: u64 = 40;
    let cpus = sched::cpu_count();
    let a = ok("new_user", AddressSpace::new_user())?;
    let region = ok("mmap", a.map_anonymous(0, PAGES * PAGE, RW, ANON))?;
    let arrived = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(spin::Mutex::new(Vec::<String>::new()));
    let mut handles = Vec::new();
    for cpu in 0..cpus {
        let (a, arrived, errors) = (a.clone(), arrived.clone(), errors.clone());
        handles.push(sched::spawn("vm-shared", Some(cpu), move || {
            a.activate();
            // Barrier number `n` (1-based): wait until all reached it, or
            // until some thread gave up (it records an error).
            let barrier = |n: u64| {
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < n * cpus as u64 {
                    if !errors.lock().is_empty() {
                        return false;
                    }
                    sched::yield_now();
                }
                true
            };
            let mut n = 0;
            let slot = 8 * cpu as u64;
            for round in 0..ROUNDS {
                let tag = (cpu as u64) << 32 | round;
                let r = (|| -> Check {
                    for p in 0..PAGES {
                        ok("write", write_user(region + p * PAGE + slot, &(tag ^ p)))?;
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    errors.lock().push(format!("cpu {cpu} round {round}: {e}"));
                }
                n += 1;
                if !barrier(n) {
                    break;
                }
                if cpu == 0 {
                    if let Err(e) = a.unmap(region, HALF * PAGE) {
                        errors.lock().push(format!("munmap: {e:?}"));
                    }
                }
                if cpu == 1 && round % 8 == 0 {
                    match a.fork_cow() {
                        Ok(child) => drop(child),
                        Err(e) => errors.lock().push(format!("fork: {e:?}")),
                    }
                }
                n += 1;
                if !barrier(n) {
                    break;
                }
                let r = (|| -> Check {
                    for p in 0..HALF {
                        let r = read_user::<u64>(region + p * PAGE + slot);
                        ensure!(
                            r == Err(Errno::EFAULT),
                            "cpu {cpu} round {round}: unmapped page {p} still reads {r:?} (stale translation)"
                        );
                    }
                    for p in HALF..PAGES {
                        let v: u64 = ok("read", read_user(region + p * PAGE + slot))?;
                        ensure!(
                            v == tag ^ p,
                            "cpu {cpu} round {round}: page {p} holds {v:#x}"
                        );
                    }
                    Ok(())
                })();
                if let Err(e) = r {
                    errors.lock().push(e);
                }
                n += 1;
                if !barrier(n) {
                    break;
                }
                if cpu == 0 {
                    let flags = ANON | vm::MAP_FIXED;
                    if let Err(e) = a.map_anonymous(region, HALF * PAGE, RW, flags) {
                        errors.lock().push(format!("mmap again: {e:?}"));
                    }
                }
                n += 1;
                if !barrier(n) {
                    break;
                }
            }
            vm::deactivate();
        }));
    }
    join_all_within(handles, 120_000_000_000)
        .map_err(|s| format!("shared stress threads {s} did not finish"))?;
    if let Some(e) = errors.lock().first() {
        return Err(format!("shared stress: {e}"));
    }
    ok("munmap all", a.unmap(region, PAGES * PAGE))?;
    Ok(())
}

/// Pages of a pretend file (what the fs glue provides for tmpfs files):
/// page `i` is filled with byte `i + 1`.
struct TestSource {
    frames: Vec<kmm::PhysAddr>,
    /// Answers `PageSource::resident` and fault-around like a file in
    /// the page cache.
    cached: bool,
}

impl TestSource {
    fn new(pages: usize) -> Result<Arc<TestSource>, String> {
        Self::with(pages, false)
    }

    fn with(pages: usize, cached: bool) -> Result<Arc<TestSource>, String> {
        let mut frames = Vec::new();
        for i in 0..pages {
            let f =
                kmm::alloc_frame().ok_or_else(|| String::from("no frame for the test source"))?;
            // SAFETY: a fresh frame, HHDM-mapped, owned by this source.
            unsafe { core::ptr::write_bytes(kmm::phys_to_virt(f), i as u8 + 1, PAGE as usize) };
            frames.push(f);
        }
        Ok(Arc::new(TestSource { frames, cached }))
    }

    /// Byte `offset` of source page `page`.
    fn byte(&self, page: usize, offset: usize) -> u8 {
        // SAFETY: in bounds of a frame this source owns.
        unsafe { *kmm::phys_to_virt(self.frames[page]).add(offset) }
    }
}

impl vm::PageSource for TestSource {
    fn page(&self, index: u64) -> Result<kmm::PhysAddr, Errno> {
        self.frames
            .get(index as usize)
            .copied()
            .ok_or(Errno::EFAULT)
    }

    fn resident(&self, index: u64) -> Option<kmm::PhysAddr> {
        self.frames
            .get(index as usize)
            .copied()
            .filter(|_| self.cached)
    }

    fn fault_around(&self) -> bool {
        self.cached
    }
}

impl Drop for TestSource {
    fn drop(&mut self) {
        for f in self.frames.drain(..) {
            kmm::free_frame(f);
        }
    }
}

/// File-backed mappings through `PageSource`: private (copy on write,
/// the file never changes), shared (writes reach the file), offsets,
/// pages beyond the end, fork.
fn file_mappings() -> Check {
    let a = new_active()?;
    let src = TestSource::new(2)?;
    let private = ok(
        "map private",
        a.map_source(0, 3 * PAGE, RW, vm::MAP_PRIVATE, src.clone(), 0),
    )?;
    let mut b = [0u8; 2];
    ok("read private", copy_from_user(&mut b, private + PAGE))?;
    ensure!(b == [2, 2], "private file page 1 reads {:?}", b);
    ok("write private", copy_to_user(private, b"pp"))?;
    ensure!(src.byte(0, 0) == 1, "a private mapping wrote to the file");
    ok("read private copy", copy_from_user(&mut b, private))?;
    ensure!(&b == b"pp", "private copy reads {:?}", b);
    expect_err(
        "beyond the file",
        copy_from_user(&mut b, private + 2 * PAGE),
        Errno::EFAULT,
    )?;
    let shared = ok(
        "map shared",
        a.map_source(0, PAGE, RW, vm::MAP_SHARED, src.clone(), PAGE),
    )?;
    ok("write shared", copy_to_user(shared + 10, b"ss"))?;
    ensure!(
        src.byte(1, 10) == b's',
        "a shared mapping did not write to the file"
    );
    ok(
        "read through private",
        copy_from_user(&mut b, private + PAGE + 10),
    )?;
    ensure!(
        &b == b"ss",
        "the private mapping of an untouched page misses the file's change: {:?}",
        b
    );
    expect_err(
        "unaligned offset",
        a.map_source(0, PAGE, RW, vm::MAP_SHARED, src.clone(), 5),
        Errno::EINVAL,
    )?;
    let child = ok("fork", a.fork_cow())?;
    ok("child read", child.read_bytes(private, &mut b))?;
    ensure!(&b == b"pp", "child sees {:?} in the private copy", b);
    ok("child writes shared", child.write_bytes(shared, b"cc"))?;
    ensure!(
        src.byte(1, 0) == b'c',
        "child's shared write missed the file"
    );
    ok("parent reads shared", copy_from_user(&mut b, shared))?;
    ensure!(&b == b"cc", "parent sees {:?}", b);
    Ok(())
}

/// A source whose pages are resident (`PageSource::resident`, as a
/// program in the page cache): faults map them under the lock without a
/// loan, fault-around maps the neighbours the same way, a write still
/// copies, and the munmap of the last mapping frees the source without a
/// RefCache pass (`vm::source_ref`); a source that lent goes through the
/// passes.
fn resident_sources() -> Check {
    let a = new_active()?;
    vm::source_ref::quiesce();
    let (direct, passed) = (
        vm::source_ref::direct_releases(),
        vm::source_ref::stats().released,
    );
    let src = TestSource::with(4, true)?;
    let weak = Arc::downgrade(&src);
    let at = ok(
        "map resident",
        a.map_source(0, 4 * PAGE, RW, vm::MAP_PRIVATE, src.clone(), 0),
    )?;
    drop(src);
    let mut b = [0u8; 2];
    ok("read resident", copy_from_user(&mut b, at + PAGE))?;
    ensure!(b == [2, 2], "resident page 1 reads {:?}", b);
    // Fault-around's window: the 64 KiB around the faulting page.
    let window = |va: u64| va & !(16 * PAGE - 1);
    let expect = (0..4)
        .filter(|p| window(at + p * PAGE) == window(at + PAGE))
        .count();
    ensure!(
        a.resident_pages(at, at + 4 * PAGE) == expect,
        "fault-around mapped {} of the {} resident pages in the window",
        a.resident_pages(at, at + 4 * PAGE),
        expect
    );
    ok("write resident", copy_to_user(at + 3 * PAGE, b"ww"))?;
    let src_alive = weak.upgrade().ok_or("source freed while mapped")?;
    ensure!(
        src_alive.byte(3, 0) == 4,
        "a private write reached the source"
    );
    drop(src_alive);
    ok("read copy", copy_from_user(&mut b, at + 3 * PAGE))?;
    ensure!(&b == b"ww", "private copy reads {:?}", b);
    ok("munmap resident", a.unmap(at, 4 * PAGE))?;
    ensure!(
        weak.upgrade().is_none(),
        "the munmap of the last mapping kept the source"
    );
    ensure!(
        vm::source_ref::direct_releases() == direct + 1
            && vm::source_ref::stats().released == passed,
        "a source that never lent was not freed directly (direct {} -> {}, passes {} -> {})",
        direct,
        vm::source_ref::direct_releases(),
        passed,
        vm::source_ref::stats().released
    );
    // One that lent (its pages are not resident) goes through the passes.
    let lender = TestSource::new(1)?;
    let at = ok(
        "map lender",
        a.map_source(0, PAGE, RW, vm::MAP_PRIVATE, lender, 0),
    )?;
    ok("read lender", copy_from_user(&mut b, at))?;
    ok("munmap lender", a.unmap(at, PAGE))?;
    ensure!(
        vm::source_ref::direct_releases() == direct + 1
            && vm::source_ref::stats().released == passed + 1,
        "a source that lent was not released by the passes"
    );
    Ok(())
}

/// Random mmap/munmap/mprotect/madvise/read/write/fork sequences on a
/// 48-page window, checked page by page against a plain model (mapped?,
/// protection, contents).  Catches VMA split/merge and PTE bookkeeping
/// mistakes that the hand-written cases miss.
fn random_against_model() -> Check {
    for seed in [0x5eed, 7, 1234] {
        random_run(seed).map_err(|e| format!("model seed {seed}: {e}"))?;
    }
    Ok(())
}

fn random_run(seed: u64) -> Check {
    const BASE: u64 = 0x7000_0000;
    const PAGES: usize = 48;
    /// Per page: `None` unmapped, else (prot, byte stored at offset 0).
    type Model = [Option<(u32, u8)>; PAGES];
    let a = new_active()?;
    let mut model: Model = [None; PAGES];
    let mut rng = super::Rng::new(seed);
    let mut forks: Vec<(Arc<AddressSpace>, Model)> = Vec::new();
    let va = |p: usize| BASE + p as u64 * PAGE;
    for step in 0..600 {
        let i = rng.below(PAGES as u64) as usize;
        let n = (1 + rng.below(6) as usize).min(PAGES - i);
        let what = rng.below(10);
        let ctx = |m: &str| format!("step {step} ({m} pages {i}..{})", i + n);
        match what {
            0 => {
                ok(
                    &ctx("mmap"),
                    a.map_anonymous(va(i), n as u64 * PAGE, RW, ANON | vm::MAP_FIXED),
                )?;
                model[i..i + n].iter_mut().for_each(|m| *m = Some((RW, 0)));
            }
            1 => {
                ok(&ctx("munmap"), a.unmap(va(i), n as u64 * PAGE))?;
                model[i..i + n].iter_mut().for_each(|m| *m = None);
            }
            2 | 3 => {
                let prot = [0, PROT_READ, RW][rng.below(3) as usize];
                let r = a.protect(va(i), n as u64 * PAGE, prot);
                if model[i..i + n].iter().all(|m| m.is_some()) {
                    ok(&ctx("mprotect"), r)?;
                    model[i..i + n]
                        .iter_mut()
                        .for_each(|m| m.as_mut().expect("mapped").0 = prot);
                } else {
                    expect_err(&ctx("mprotect over a hole"), r, Errno::ENOMEM)?;
                }
            }
            4 => {
                let r = a.advise(va(i), n as u64 * PAGE, vm::MADV_DONTNEED);
                let all = model[i..i + n].iter().all(|m| m.is_some());
                model[i..i + n].iter_mut().flatten().for_each(|m| m.1 = 0);
                if all {
                    ok(&ctx("madvise"), r)?
                } else {
                    expect_err(&ctx("madvise over a hole"), r, Errno::ENOMEM)?
                }
            }
            5 | 6 => {
                let v = 1 + rng.below(255) as u8;
                let r = copy_to_user(va(i), &[v]);
                match &mut model[i] {
                    Some((prot, val)) if *prot & PROT_WRITE != 0 => {
                        ok(&ctx("write"), r)?;
                        *val = v;
                    }
                    _ => expect_err(&ctx("write without PROT_WRITE"), r, Errno::EFAULT)?,
                }
            }
            7 | 8 => {
                let mut b = [0u8; 1];
                let r = copy_from_user(&mut b, va(i));
                match model[i] {
                    Some((prot, val)) if prot != 0 => {
                        ok(&ctx("read"), r)?;
                        ensure!(
                            b[0] == val,
                            "{}: read {} expected {}",
                            ctx("read"),
                            b[0],
                            val
                        );
                    }
                    _ => expect_err(&ctx("read unmapped or PROT_NONE"), r, Errno::EFAULT)?,
                }
            }
            _ => {
                if forks.len() < 3 {
                    forks.push((ok(&ctx("fork"), a.fork_cow())?, model));
                } else {
                    forks.remove(0);
                }
            }
        }
    }
    // Every fork still holds the memory as it was when it was made.
    for (child, snapshot) in &forks {
        for (p, m) in snapshot.iter().enumerate() {
            let mut b = [0u8; 1];
            let r = child.read_bytes(va(p), &mut b);
            match m {
                Some((_, val)) => {
                    ok("child read", r)?;
                    ensure!(
                        b[0] == *val,
                        "fork snapshot page {p}: {} expected {}",
                        b[0],
                        val
                    );
                }
                None => expect_err("child read unmapped", r, Errno::EFAULT)?,
            }
        }
    }
    let runs = (0..PAGES)
        .filter(|&p| {
            model[p].is_some() && (p == 0 || model[p - 1].map(|m| m.0) != model[p].map(|m| m.0))
        })
        .count();
    ensure!(
        a.vma_count() == runs,
        "{} VMAs for {} runs of equal pages (merging broken)",
        a.vma_count(),
        runs
    );
    Ok(())
}

// The checks name user addresses as numbers (they build the mappings
// themselves); these turn each into a `UserAddr` and go through the same
// typed path the system calls use.

fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Errno> {
    UserAddr(src).read_bytes(dst)
}

fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Errno> {
    UserAddr(dst).write_bytes(src)
}

fn read_user<T: Pod>(addr: u64) -> Result<T, Errno> {
    UserAddr(addr).read()
}

fn write_user<T: Pod>(addr: u64, value: &T) -> Result<(), Errno> {
    UserAddr(addr).write(value)
}

fn read_user_cstr(addr: u64, max: usize) -> Result<String, Errno> {
    UserAddr(addr).read_cstr(max)
}

fn zero_user(dst: u64, len: usize) -> Result<(), Errno> {
    UserAddr(dst).zero(len)
}
