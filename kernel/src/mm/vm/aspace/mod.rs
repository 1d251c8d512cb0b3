//! `AddressSpace`: one user address space — its page tables, its VMAs, its
//! program break — and the operations on it (mmap and friends, page
//! faults, copy-on-write fork, activation on a CPU).
//!
//! Invariants:
//! * Every VMA and page-table change happens under `inner` (a `VmLock`);
//!   the root table never changes.
//! * A leaf entry holds a frame iff it is present or `PTE_PROTNONE`; a frame
//!   with `PTE_ANON` is counted in `refcount`, others belong to the VMA's
//!   `PageSource`.  A private VMA's page is writable in hardware only when
//!   it is anonymous with count 1 (else the first write copies it).
//! * Frames leave an address space (unmap, COW break, zap) only after the
//!   TLB shootdown of their old translation has completed.
//! * `cpus` has bit `n` set while CPU `n` has this root loaded, or may
//!   still cache translations from it (set before CR3 is written, cleared
//!   after another root replaced it).  Each CPU keeps a strong reference to
//!   the address space it has loaded (`ACTIVE`), so a root table is never
//!   freed while some CR3 points to it.
//!
//! Files: this one (the type, its reports, teardown, zap/release and the
//! shootdown entry `invalidate`), `cpu.rs` (activation: CR3, the per-CPU
//! `ACTIVE` slots, CPU protection features), `map.rs` (mmap, munmap,
//! mprotect, mremap, madvise, msync, brk, exec's writes), `fault.rs`
//! (demand paging, copy-on-write breaks, fault-around), `fork.rs`
//! (copy-on-write fork and truncate-unmap).
//!
//! Must not: call a `PageSource` while holding `inner` (it may block), or
//! touch the kernel half of the tables.

mod cpu;
mod fault;
mod fork;
mod map;

use cpu::KERNEL_ROOT;
pub use cpu::{
    active_id, cpu_features_on, current, deactivate, init_cpu, init_kernel_root,
    protections_in_force, smap_enabled,
};

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::lock::VmLock;
use super::paging::{
    self, frame_of, holds_frame, PAGE, PTE_ANON, PTE_NX, PTE_P, PTE_PROTNONE, PTE_U, PTE_W,
};
use super::refcount;
use super::tlb::{self, TlbBatch};
use super::vma::{Backing, PageSource, SharedAnon, Vma, VmaMap, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::*;
use crate::mm::PhysAddr;
use crate::syscall::errno::Errno;

/// Linux's EOVERFLOW (not in the shared errno list).
const EOVERFLOW: Errno = Errno(75);
/// Linux's EOPNOTSUPP (== ENOTSUP on x86_64).
const EOPNOTSUPP: Errno = Errno::ENOTSUP;

/// Address spaces alive (for leak checks in tests).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Why a page fault could not be resolved (the signal and si_code the
/// faulting thread gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No mapping at the address (SIGSEGV, SEGV_MAPERR).
    MapErr,
    /// A mapping that forbids the access (SIGSEGV, SEGV_ACCERR).
    AccErr,
    /// Out of memory while resolving it.
    NoMemory,
    /// The mapping's `PageSource` has no page there, e.g. a file mapping
    /// past the end of the file (SIGBUS, BUS_ADRERR, as on Linux).
    BusErr,
}

impl Fault {
    /// The Linux `si_code` for the signal (`SEGV_*`, or `BUS_ADRERR`).
    pub fn si_code(self) -> i32 {
        match self {
            Fault::MapErr | Fault::NoMemory => 1,
            Fault::AccErr => 2,
            Fault::BusErr => 2,
        }
    }
}

/// Number of address spaces alive.
pub fn live_count() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Protection/flags → leaf entry for `frame`.  `writable` is the hardware
/// write permission (false for copy-on-write pages).
fn make_leaf(frame: PhysAddr, anon: bool, prot: u32, writable: bool) -> u64 {
    let anon_bit = if anon { PTE_ANON } else { 0 };
    if prot & (PROT_READ | PROT_WRITE | PROT_EXEC) == 0 {
        return frame.as_u64() | PTE_PROTNONE | anon_bit;
    }
    let mut e = frame.as_u64() | PTE_P | PTE_U | anon_bit;
    if writable && prot & PROT_WRITE != 0 {
        e |= PTE_W;
    }
    if prot & PROT_EXEC == 0 {
        e |= PTE_NX;
    }
    e
}

/// Hardware write permission a page of `vma` may have now.
fn may_write(vma: &Vma, pte: u64) -> bool {
    if vma.prot & PROT_WRITE == 0 {
        return false;
    }
    if vma.shared {
        return true;
    }
    pte & PTE_ANON != 0 && refcount::get(frame_of(pte)) == 1
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Rounds `len` up to pages; `None` when it overflows the user half.
fn page_len(len: u64) -> Option<u64> {
    let l = len.checked_add(PAGE - 1)? & !(PAGE - 1);
    (l <= USER_TOP).then_some(l)
}

struct Inner {
    vmas: VmaMap,
    brk_base: u64,
    brk: u64,
}

/// One line of `/proc/<pid>/maps`.
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    /// Offset in the file (bytes) for file mappings.
    pub offset: u64,
    /// (device, inode) of the mapped file.
    pub file: Option<(u64, u64)>,
    /// Inside the `brk` area.
    pub heap: bool,
    /// The initial stack.
    pub stack: bool,
}

/// One user address space.
pub struct AddressSpace {
    root: PhysAddr,
    inner: VmLock<Inner>,
    cpus: AtomicU64,
}

impl AddressSpace {
    /// An empty address space (the kernel half shared with every other).
    pub fn new_user() -> Result<Arc<AddressSpace>, Errno> {
        let kernel_root = KERNEL_ROOT.load(Ordering::Acquire);
        if kernel_root == 0 || !refcount::ready() {
            log::error!("vm: address space requested before mm::init set up the VM");
            return Err(Errno::ENOMEM);
        }
        let root = paging::new_root(PhysAddr::new(kernel_root))?;
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(AddressSpace {
            root,
            inner: VmLock::new(Inner {
                vmas: VmaMap::new(),
                brk_base: 0,
                brk: 0,
            }),
            cpus: AtomicU64::new(0),
        }))
    }

    /// Number of VMAs (tests, /proc-like reports).
    pub fn vma_count(&self) -> usize {
        self.inner.lock().vmas.len()
    }

    /// The mappings in address order, as `/proc/<pid>/maps` lists them.
    pub fn map_report(&self) -> alloc::vec::Vec<MapLine> {
        let g = self.inner.lock();
        g.vmas
            .iter()
            .map(|v| {
                let (offset, file) = match &v.backing {
                    super::vma::Backing::Anon => (0, None),
                    super::vma::Backing::Source { source, pgoff } => {
                        (pgoff * 4096, source.file_id())
                    }
                };
                MapLine {
                    start: v.start,
                    end: v.end,
                    prot: v.prot,
                    shared: v.shared,
                    offset,
                    file,
                    heap: file.is_none()
                        && g.brk_base != 0
                        && v.start >= g.brk_base
                        && v.start < g.brk.next_multiple_of(4096),
                    stack: v.end == super::USER_TOP,
                }
            })
            .collect()
    }

    /// Leaf entries holding a frame in `[start, end)` (tests).
    pub fn resident_pages(&self, start: u64, end: u64) -> usize {
        let _g = self.inner.lock();
        let mut n = 0;
        paging::for_each_leaf(self.root, start, end, |_, e| {
            if holds_frame(e.load(Ordering::Relaxed)) {
                n += 1;
            }
        });
        n
    }

    // ----- helpers -----------------------------------------------------------

    /// Clears the leaf entries of `[start, end)`: their pages join `batch`,
    /// their anonymous frames `frames` (released after the flush).
    fn zap(&self, start: u64, end: u64, batch: &mut TlbBatch, frames: &mut Vec<PhysAddr>) {
        paging::for_each_leaf(self.root, start, end, |va, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) {
                if cur & PTE_ANON != 0 {
                    frames.push(frame_of(cur));
                }
                batch.add_page(va);
            }
        });
    }
}

/// Drops one reference of each anonymous frame (after the shootdown).
fn release(frames: Vec<PhysAddr>) {
    for f in frames {
        refcount::dec_and_free(f);
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // No CPU has this root loaded (each would hold a reference), and a
        // CR3 switch flushed their translations: free everything.
        let root = self.root;
        let inner = self.inner.get_mut();
        paging::for_each_leaf(root, 0, USER_END, |_, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) && cur & PTE_ANON != 0 {
                refcount::dec_and_free(frame_of(cur));
            }
        });
        paging::free_tables(root);
        inner.vmas = VmaMap::new();
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}
