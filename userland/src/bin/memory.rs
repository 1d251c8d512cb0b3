//! `memory`: the memory-management calls — mmap/munmap/mprotect/mremap/
//! madvise/brk, touching pages and reading them back, copy-on-write and
//! shared mappings across fork, and a write to a read-only page caught by a
//! SIGSEGV handler (which then makes the page writable so the write retries).
//!
//! Prints booleans and errno names only (never addresses).  Exit 0 when every
//! check held.

use std::sync::atomic::{AtomicUsize, Ordering};
use userland::{errno, errno_name, fork_run, say, set_handler, wait_for};

const PAGE: usize = 4096;

static FAULT_ADDR: AtomicUsize = AtomicUsize::new(0);
static FAULT_PAGE: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_segv(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    FAULT_ADDR.store(addr, Ordering::SeqCst);
    // Make the page writable so that the faulting write succeeds on return.
    let page = FAULT_PAGE.load(Ordering::SeqCst);
    // SAFETY: `page` is the page this program mapped and made read-only.
    unsafe {
        libc::mprotect(
            page as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
}

fn map(len: usize, prot: i32, flags: i32) -> Result<*mut u8, String> {
    // SAFETY: an anonymous mapping at an address the kernel chooses.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            flags | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno_name(errno()))
    } else {
        Ok(p.cast())
    }
}

fn main() {
    let mut ok = true;
    let mut expect = |what: &str, got: String, want: &str| {
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };

    // 1. Anonymous memory: zero-filled, every page writable and read back.
    let pages = 1024; // 4 MiB
    match map(
        pages * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    ) {
        Ok(p) => {
            // SAFETY: `p` maps `pages` pages read-write.
            let mem = unsafe { std::slice::from_raw_parts_mut(p, pages * PAGE) };
            let zero = mem.iter().step_by(512).all(|&b| b == 0);
            for i in 0..pages {
                mem[i * PAGE] = (i % 251) as u8;
                mem[i * PAGE + PAGE - 1] = (i % 13) as u8;
            }
            let back = (0..pages).all(|i| {
                mem[i * PAGE] == (i % 251) as u8 && mem[i * PAGE + PAGE - 1] == (i % 13) as u8
            });
            expect("anonymous pages start zeroed", zero.to_string(), "true");
            expect("4 MiB written and read back", back.to_string(), "true");
            // Unmap the middle, map it again: fresh zero page.
            // SAFETY: unmapping part of our own mapping.
            let r = unsafe { libc::munmap(p.add(10 * PAGE).cast(), PAGE) };
            expect("munmap a middle page", userland::outcome(r as i64), "ok");
            // SAFETY: MAP_FIXED over the hole we just made.
            let again = unsafe {
                libc::mmap(
                    p.add(10 * PAGE).cast(),
                    PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            // SAFETY: the page is mapped again (checked first).
            let fresh = again != libc::MAP_FAILED && unsafe { *p.add(10 * PAGE) } == 0;
            expect(
                "MAP_FIXED into the hole is zeroed",
                fresh.to_string(),
                "true",
            );
            // madvise(DONTNEED) on private anonymous memory drops the contents.
            // SAFETY: our own mapping.
            let r = unsafe { libc::madvise(p.cast(), PAGE, libc::MADV_DONTNEED) };
            expect("madvise DONTNEED", userland::outcome(r as i64), "ok");
            // SAFETY: still mapped.
            expect(
                "page after DONTNEED is zero",
                (unsafe { *p } == 0).to_string(),
                "true",
            );
            // SAFETY: our own mapping.
            let r = unsafe { libc::munmap(p.cast(), pages * PAGE) };
            expect("munmap all", userland::outcome(r as i64), "ok");
        }
        Err(e) => expect("mmap 4 MiB", e, "ok"),
    }

    // 2. Bad arguments.
    expect(
        "mmap length 0",
        map(0, libc::PROT_READ, libc::MAP_PRIVATE)
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e),
        "EINVAL",
    );
    // SAFETY: an unaligned munmap only fails.
    let r = unsafe { libc::munmap((PAGE + 1) as *mut libc::c_void, PAGE) };
    expect("munmap unaligned", userland::outcome(r as i64), "EINVAL");
    expect(
        "mmap without PRIVATE/SHARED",
        map(PAGE, libc::PROT_READ, 0)
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e),
        "EINVAL",
    );

    // 3. mprotect: a write to a read-only page raises SIGSEGV at that address.
    if let Err(e) = set_handler(
        libc::SIGSEGV,
        on_segv as *const () as usize,
        libc::SA_SIGINFO,
    ) {
        expect("sigaction SIGSEGV", e, "ok");
    }
    match map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE) {
        Ok(p) => {
            // SAFETY: `p` is one writable page.
            unsafe { p.write_volatile(1) };
            FAULT_PAGE.store(p as usize, Ordering::SeqCst);
            // SAFETY: our own page.
            let r = unsafe { libc::mprotect(p.cast(), PAGE, libc::PROT_READ) };
            expect("mprotect read-only", userland::outcome(r as i64), "ok");
            // SAFETY: reading is allowed; the write faults once, the handler
            // makes the page writable again and the write is retried.
            let before = unsafe { p.add(100).read_volatile() };
            // SAFETY: see above (the write faults once, then succeeds).
            unsafe { p.add(100).write_volatile(42) };
            // SAFETY: the page is readable.
            let after = unsafe { p.add(100).read_volatile() };
            expect("read of a read-only page", before.to_string(), "0");
            expect(
                "SIGSEGV at the written address",
                (FAULT_ADDR.load(Ordering::SeqCst) == p as usize + 100).to_string(),
                "true",
            );
            expect("write retried after the handler", after.to_string(), "42");
            // SAFETY: our own page.
            unsafe { libc::munmap(p.cast(), PAGE) };
        }
        Err(e) => expect("mmap one page", e, "ok"),
    }

    // 4. mremap: grow with MREMAP_MAYMOVE keeps the contents.
    match map(
        2 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
    ) {
        Ok(p) => {
            // SAFETY: two writable pages.
            unsafe {
                p.write(0xab);
                p.add(PAGE + 7).write(0xcd);
            }
            // SAFETY: remapping our own mapping.
            let q = unsafe { libc::mremap(p.cast(), 2 * PAGE, 8 * PAGE, libc::MREMAP_MAYMOVE) };
            if q == libc::MAP_FAILED {
                expect("mremap grow", errno_name(errno()), "ok");
            } else {
                let q: *mut u8 = q.cast();
                // SAFETY: `q` maps 8 pages now.
                let kept = unsafe { q.read() == 0xab && q.add(PAGE + 7).read() == 0xcd };
                // SAFETY: inside the 8 mapped pages.
                unsafe { q.add(7 * PAGE).write(5) };
                // SAFETY: inside the 8 mapped pages.
                let grown = unsafe { q.add(7 * PAGE).read() == 5 && q.add(6 * PAGE).read() == 0 };
                expect("mremap keeps contents", kept.to_string(), "true");
                expect("mremap grown part usable", grown.to_string(), "true");
                // Shrink in place.
                // SAFETY: shrinking our own mapping.
                let s = unsafe { libc::mremap(q.cast(), 8 * PAGE, PAGE, 0) };
                expect(
                    "mremap shrink in place",
                    (s == q.cast()).to_string(),
                    "true",
                );
                // SAFETY: our own (shrunk or moved) mapping.
                unsafe { libc::munmap(if s == libc::MAP_FAILED { q.cast() } else { s }, PAGE) };
            }
        }
        Err(e) => expect("mmap for mremap", e, "ok"),
    }

    // 5. brk: grow, touch, shrink.
    // SAFETY: raw brk calls; nothing else in this program changes the break
    // between these calls (musl's malloc does not use brk).
    let (grew, touched, shrank) = unsafe {
        let cur = libc::syscall(libc::SYS_brk, 0) as usize;
        let want = cur + 64 * 1024;
        let got = libc::syscall(libc::SYS_brk, want) as usize;
        let grew = got == want;
        let mut touched = false;
        if grew {
            let p = cur as *mut u8;
            p.write_volatile(9);
            (p.add(64 * 1024 - 1)).write_volatile(8);
            touched = p.read_volatile() == 9 && p.add(64 * 1024 - 1).read_volatile() == 8;
        }
        let back = libc::syscall(libc::SYS_brk, cur) as usize;
        (grew, touched, back == cur)
    };
    expect("brk grows by 64 KiB", grew.to_string(), "true");
    expect("brk memory usable", touched.to_string(), "true");
    expect("brk shrinks back", shrank.to_string(), "true");

    // 6. fork: private mappings are copy-on-write, shared ones are shared.
    let private = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE);
    let shared = map(PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED);
    match (private, shared) {
        (Ok(pv), Ok(sh)) => {
            // SAFETY: both are one writable page each.
            unsafe {
                pv.write_volatile(1);
                sh.write_volatile(1);
            }
            let (pv_addr, sh_addr) = (pv as usize, sh as usize);
            let child = fork_run(move || {
                // SAFETY: the child's copies of the same mappings.
                unsafe {
                    let saw = (pv_addr as *mut u8).read_volatile();
                    (pv_addr as *mut u8).write_volatile(2);
                    (sh_addr as *mut u8).write_volatile(3);
                    if saw == 1 {
                        0
                    } else {
                        1
                    }
                }
            });
            match child {
                Ok(pid) => expect("child saw the parent's data", wait_for(pid), "exited 0"),
                Err(e) => expect("fork", e, "ok"),
            }
            // SAFETY: still our pages.
            let (p, s) = unsafe { (pv.read_volatile(), sh.read_volatile()) };
            expect(
                "private page after child wrote (copy-on-write)",
                p.to_string(),
                "1",
            );
            expect("shared page after child wrote", s.to_string(), "3");
        }
        (p, s) => expect(
            "mmap private+shared",
            format!("{:?} {:?}", p.err(), s.err()),
            "ok",
        ),
    }

    // 7. Heap through malloc: many allocations, freed, contents intact.
    let blocks: Vec<Vec<u8>> = (0..200)
        .map(|i| vec![(i % 256) as u8; 1000 + i * 37])
        .collect();
    let intact = blocks
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&x| x == (i % 256) as u8));
    expect("200 heap blocks intact", intact.to_string(), "true");
    drop(blocks);

    say(&format!("memory: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
