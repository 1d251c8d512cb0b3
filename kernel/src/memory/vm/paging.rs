//! x86_64 4-level page tables of user address spaces, reached through the
//! HHDM.
//!
//! Owns: the PTE bit layout (hardware bits plus two software bits), walking
//! and allocating the tables of the lower (user) half, and freeing them.
//! Entries are read and written as `AtomicU64` because the CPU sets the
//! accessed/dirty bits behind our back.
//!
//! Invariants: only the lower half (PML4 slots 0..256) is ever changed here;
//! the upper half is a copy of the kernel's slots, shared by every address
//! space, and is never freed.  Intermediate entries are `P|W|U` (permission
//! is decided by the leaf).  Callers hold the range lock of the leaves they
//! change, so no two CPUs change the same leaf at once; intermediate tables
//! shared by several ranges are installed with a compare-exchange and never
//! removed before teardown.
//!
//! Must not: map anything in the upper half, free a frame that a leaf entry
//! points to (leaves are released by `aspace`, which knows their owner), or
//! be used on the kernel's own root table.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::memory::{self, PhysAddr};
use abi::Errno;

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_W: u64 = 1 << 1;
/// User accessible.
pub const PTE_U: u64 = 1 << 2;
/// Software bit: the frame is an anonymous frame owned through the
/// per-frame reference counts (`refcount.rs`); otherwise it belongs to a
/// `PageSource` and is only borrowed.
pub const PTE_ANON: u64 = 1 << 9;
/// Software bit: the page is mapped `PROT_NONE`; `PTE_P` is clear but the
/// frame address is kept, so the contents survive an `mprotect` round trip.
pub const PTE_PROTNONE: u64 = 1 << 10;
/// No execute (needs EFER.NXE, which the loader and `vm::init_cpu` set).
pub const PTE_NX: u64 = 1 << 63;
/// Physical address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Page size.
pub const PAGE: u64 = 4096;
/// Number of PML4 slots of the user half.
const USER_SLOTS: usize = 256;

/// True when a leaf entry holds a frame (present, or kept under PROT_NONE).
pub fn holds_frame(pte: u64) -> bool {
    pte & (PTE_P | PTE_PROTNONE) != 0
}

/// The frame of a leaf entry that holds one.
pub fn frame_of(pte: u64) -> PhysAddr {
    PhysAddr::new(pte & ADDR_MASK)
}

/// The 512 entries of the table in frame `table`.
fn entries(table: PhysAddr) -> &'static [AtomicU64; 512] {
    let ptr = memory::phys_to_virt(table) as *const [AtomicU64; 512];
    // SAFETY: `table` is a page-table frame allocated by this module (or the
    // kernel's root, read only); the HHDM maps it, it is 4 KiB aligned and
    // lives as long as the address space that owns it, which outlives every
    // walk (callers hold a reference to it).  Atomics make concurrent
    // hardware A/D updates sound.
    unsafe { &*ptr }
}

/// Index of `va` in the table at `level` (4 = PML4 ... 1 = PT).
fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Nodes of `::mm::radix::PageRadix` trees (the per-page CPU sets) in
/// frames, reached through the HHDM; a node's handle is its frame address.
pub struct FrameNodes;

// SAFETY: nodes are fresh zeroed frames, owned by the tree until it frees
// them; `slots` reads a node through the HHDM like any table (`entries`).
unsafe impl ::mm::radix::NodeMemory for FrameNodes {
    fn alloc_node(&self) -> Option<u64> {
        alloc_zeroed_frame().ok().map(|f| f.as_u64())
    }

    fn free_node(&self, node: u64) {
        memory::free_frame(PhysAddr::new(node));
    }

    fn slots(&self, node: u64) -> &[AtomicU64; 512] {
        entries(PhysAddr::new(node))
    }
}

/// Allocates a zeroed frame (tables, anonymous pages).
pub fn alloc_zeroed_frame() -> Result<PhysAddr, Errno> {
    let frame = memory::alloc_frame().ok_or(Errno::ENOMEM)?;
    // SAFETY: a fresh frame from the allocator, mapped by the HHDM, owned by
    // us alone until it is published in a table.
    unsafe { core::ptr::write_bytes(memory::phys_to_virt(frame), 0, PAGE as usize) };
    Ok(frame)
}

/// Allocates a frame holding a copy of `src` (copy-on-write): no zeroing
/// first, the copy overwrites every byte.
pub fn alloc_copy_frame(src: PhysAddr) -> Result<PhysAddr, Errno> {
    let frame = memory::alloc_frame().ok_or(Errno::ENOMEM)?;
    copy_frame(frame, src);
    Ok(frame)
}

/// A new root table: empty user half, kernel half copied from `kernel_root`.
pub fn new_root(kernel_root: PhysAddr) -> Result<PhysAddr, Errno> {
    let root = alloc_zeroed_frame()?;
    let (src, dst) = (entries(kernel_root), entries(root));
    for slot in USER_SLOTS..512 {
        dst[slot].store(src[slot].load(Ordering::Relaxed), Ordering::Relaxed);
    }
    Ok(root)
}

/// The leaf entry of `va`, if its page table exists.
pub fn leaf(root: PhysAddr, va: u64) -> Option<&'static AtomicU64> {
    let mut table = root;
    for level in (2..=4).rev() {
        let e = entries(table)[index(va, level)].load(Ordering::Acquire);
        if e & PTE_P == 0 {
            return None;
        }
        table = frame_of(e);
    }
    Some(&entries(table)[index(va, 1)])
}

/// The leaf entry of `va`, creating missing tables (ENOMEM when out of
/// frames; tables created before the failure stay, empty, until teardown).
pub fn leaf_alloc(root: PhysAddr, va: u64) -> Result<&'static AtomicU64, Errno> {
    let mut table = root;
    for level in (2..=4).rev() {
        let slot = &entries(table)[index(va, level)];
        let mut e = slot.load(Ordering::Acquire);
        if e & PTE_P == 0 {
            // Range locks let CPUs fill different ranges of one table at
            // once: install with a compare-exchange, and the loser frees
            // its table and uses the winner's.
            let fresh = alloc_zeroed_frame()?;
            let want = fresh.as_u64() | PTE_P | PTE_W | PTE_U;
            match slot.compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => e = want,
                Err(won) => {
                    memory::free_frame(fresh);
                    e = won;
                }
            }
        }
        table = frame_of(e);
    }
    Ok(&entries(table)[index(va, 1)])
}

/// Calls `f(va, entry)` for every leaf entry in `[start, end)` whose page
/// table exists (absent tables are skipped whole, so sparse ranges are cheap).
pub fn for_each_leaf(root: PhysAddr, start: u64, end: u64, mut f: impl FnMut(u64, &AtomicU64)) {
    walk(root, 4, 0, start, end, &mut f);
}

/// Recursive part of `for_each_leaf`: `table` at `level` covers the
/// addresses from `base`.
fn walk(
    table: PhysAddr,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(u64, &AtomicU64),
) {
    let span = 1u64 << (12 + 9 * (level - 1));
    let first = if start > base {
        ((start - base) / span) as usize
    } else {
        0
    };
    let tab = entries(table);
    for (i, slot) in tab.iter().enumerate().skip(first) {
        let lo = base + i as u64 * span;
        if lo >= end || (level == 4 && i >= USER_SLOTS) {
            break;
        }
        if level == 1 {
            f(lo, slot);
            continue;
        }
        let e = slot.load(Ordering::Acquire);
        if e & PTE_P != 0 {
            walk(frame_of(e), level - 1, lo, start, end, f);
        }
    }
}

/// Frees every table of the user half and the root itself.  Leaves must
/// have been released by the caller first.
pub fn free_tables(root: PhysAddr) {
    free_level(root, 4);
}

fn free_level(table: PhysAddr, level: u32) {
    if level > 1 {
        let slots = if level == 4 { USER_SLOTS } else { 512 };
        for slot in entries(table).iter().take(slots) {
            let e = slot.load(Ordering::Relaxed);
            if e & PTE_P != 0 {
                free_level(frame_of(e), level - 1);
            }
        }
    }
    memory::free_frame(table);
}

/// Copies the page at frame `src` into frame `dst`.
pub fn copy_frame(dst: PhysAddr, src: PhysAddr) {
    // SAFETY: both frames are HHDM-mapped whole pages; `dst` is a fresh frame
    // nobody else sees yet, so the two never overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(
            memory::phys_to_virt(src),
            memory::phys_to_virt(dst),
            PAGE as usize,
        )
    };
}

/// Writes `data` into frame `frame` at byte `offset` (`offset + len <= 4096`).
pub fn write_frame(frame: PhysAddr, offset: usize, data: &[u8]) {
    assert!(
        offset + data.len() <= PAGE as usize,
        "write_frame beyond the page"
    );
    // SAFETY: in bounds of one HHDM-mapped frame (checked above); the caller
    // owns the frame's contents (holds the range lock of its page).
    unsafe {
        core::ptr::copy_nonoverlapping(
            data.as_ptr(),
            memory::phys_to_virt(frame).add(offset),
            data.len(),
        )
    };
}

/// Zeroes `len` bytes of frame `frame` from byte `offset`.
pub fn zero_frame(frame: PhysAddr, offset: usize, len: usize) {
    assert!(offset + len <= PAGE as usize, "zero_frame beyond the page");
    // SAFETY: as in `write_frame`.
    unsafe { core::ptr::write_bytes(memory::phys_to_virt(frame).add(offset), 0, len) };
}

/// Reads `out.len()` bytes of frame `frame` from byte `offset`.
pub fn read_frame(frame: PhysAddr, offset: usize, out: &mut [u8]) {
    assert!(
        offset + out.len() <= PAGE as usize,
        "read_frame beyond the page"
    );
    // SAFETY: as in `write_frame` (read only).
    unsafe {
        core::ptr::copy_nonoverlapping(
            memory::phys_to_virt(frame).add(offset),
            out.as_mut_ptr(),
            out.len(),
        )
    };
}
