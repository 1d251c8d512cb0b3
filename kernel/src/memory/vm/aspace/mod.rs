//! `AddressSpace`: one user address space — its page tables, its VMAs, its
//! program break — and the operations on it (mmap and friends, page
//! faults, copy-on-write fork, activation on a CPU).
//!
//! Invariants:
//! * Every VMA and leaf-entry change happens under the range lock(s) of
//!   its range (`ranges.rs`: the VMAs are partitioned by address, one lock
//!   per stripe of 1 GiB partitions; one lock under `locks=global`); the
//!   root table never changes.  Operations on ranges in different stripes
//!   take no common lock; `mmap(NULL)` looks first in partitions of the
//!   calling CPU's own stripe (`map.rs`), so threads on different cores
//!   get addresses in different stripes.
//! * A leaf entry holds a frame iff it is present or `PTE_PROTNONE`; a frame
//!   with `PTE_ANON` is counted in `refcount`, others belong to the VMA's
//!   `PageSource`.  A private VMA's page is writable in hardware only when
//!   it is anonymous with count 1 (else the first write copies it).
//! * Frames leave an address space (unmap, COW break, zap) only after the
//!   TLB shootdown of their old translation has completed.
//! * `cpus` has bit `n` set while CPU `n` has this address space loaded,
//!   or may still cache translations from it (set before CR3 is written,
//!   cleared after another root replaced it).  Each CPU keeps a strong
//!   reference to the address space it has loaded (`ACTIVE`), so a root
//!   table is never freed while some CR3 points to it.
//!
//! Two ways to hold translations, fixed at creation by the lock switch:
//! * `locks=global` (the ablation, today's design): `root` is the one
//!   table every CPU loads; a shootdown goes to every CPU that runs it.
//! * per-core (the design, after RadixVM): `root` is the *canonical*
//!   table, never loaded; it owns the frames (and their counts) exactly as
//!   in the shared design.  Each CPU that runs the address space loads its
//!   own table (`core_roots`), filled only by its own faults with copies of
//!   canonical leaves, and records itself in the page's CPU set
//!   (`cpu_sets`: `::mm::radix::PageRadix`, a lock-free radix tree of the
//!   same shape as a page table, one 64-bit CPU mask per page; its nodes
//!   are freed when the address space is).  A CPU therefore holds a translation only
//!   if it faulted on that page itself, and a change to a range clears the
//!   copies of, and shoots down, only the CPUs in the range's sets (those
//!   still running the address space get an IPI).  A thread that unmaps
//!   what only it touched sends no IPI.  Chosen over per-range CPU sets on
//!   one shared table: with a shared table any CPU running the process may
//!   walk (even speculatively) to any present entry, so a set recorded at
//!   fault time would not bound who caches it; and per-page sets, unlike
//!   per-VMA ones, are not widened when VMAs merge.
//!   Invariant: every copy in a core table equals the canonical leaf it was
//!   copied from and its CPU is in the page's set, until both are cleared
//!   (under the lock, before the shootdown) when that canonical leaf loses
//!   its frame or permissions.
//!
//! Files: this one (the type, its reports, teardown, zap/release and the
//! shootdown entry `invalidate`), `cpu.rs` (activation: CR3, the per-CPU
//! `ACTIVE` slots, CPU protection features), `map.rs` (mmap, munmap,
//! mprotect, mremap, madvise, msync, brk, exec's writes), `fault.rs`
//! (demand paging, copy-on-write breaks, fault-around), `fork.rs`
//! (copy-on-write fork and truncate-unmap), `grant.rs` (pinning a file
//! server's page-cache frames for page grants), `ranges.rs` (the range
//! locks: `mm::ranges` over the kernel's VM lock, `Vma` as its piece).
//!
//! Must not: call a `PageSource` while holding a range lock (it may
//! block), or touch the kernel half of the tables.

mod cpu;
mod fault;
mod fork;
mod grant;
mod map;
mod ranges;

use cpu::KERNEL_ROOT;
pub use cpu::{
    active_id, cpu_features_on, current, current_ptr, deactivate, init_cpu, init_kernel_root,
    protections_in_force, smap_enabled,
};
pub use grant::{unpin_frame, PinnedFrame};

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ::mm::radix::PageRadix;

use super::lock::VmLock;
use super::paging::{
    self, frame_of, holds_frame, PAGE, PTE_ANON, PTE_NX, PTE_P, PTE_PROTNONE, PTE_U, PTE_W,
};
use super::refcount;
use super::source_ref::{SourceLoan, SourceRef};
use super::tlb::{self, TlbBatch};
use super::vma::{Backing, PageSource, SharedAnon, Vma, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::*;
use crate::memory::PhysAddr;
use abi::Errno;

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
    /// The `PageSource` was interrupted by a signal (`EINTR`: a file
    /// server's page asked for while a signal is pending): from user mode
    /// the access is retried after the signal; a user copy gets EFAULT.
    Interrupted,
}

impl Fault {
    /// The Linux `si_code` for the signal (`SEGV_*`, or `BUS_ADRERR`).
    pub fn si_code(self) -> i32 {
        match self {
            Fault::MapErr | Fault::NoMemory | Fault::Interrupted => 1,
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

/// The program break: `(brk_base, brk)`.
struct Brk {
    base: u64,
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

/// The per-core root tables of one address space, one word per CPU,
/// packed 8 to a cache line.  Not a padded `PerCpu`: a slot is written once
/// in the address space's life (the CPU's first activation) and read only
/// by shootdowns, so false sharing costs nothing, while 64 padded slots
/// (8 KiB) were written on every `new_user`, twice per fork + exec, on heap
/// lines other CPUs had used (`comparison sharing`, exec_static).
struct CoreRoots([AtomicU64; crate::arch::cpu::MAX_CPUS]);

impl CoreRoots {
    fn new() -> CoreRoots {
        CoreRoots([const { AtomicU64::new(0) }; crate::arch::cpu::MAX_CPUS])
    }

    /// CPU `cpu`'s slot (`cpu < MAX_CPUS`, as every CPU id is).
    fn remote(&self, cpu: usize) -> &AtomicU64 {
        &self.0[cpu]
    }

    fn iter(&self) -> impl Iterator<Item = &AtomicU64> {
        self.0.iter()
    }
}

/// One user address space.
pub struct AddressSpace {
    /// The shared table (`locks=global`) or the canonical one (per-core).
    root: PhysAddr,
    /// The VMAs, partitioned by address with a lock per stripe of
    /// partitions (`ranges.rs`); one lock under `locks=global`.
    ranges: ranges::Ranges,
    /// The program break (its own lock, taken before any range lock).
    brk: VmLock<Brk>,
    cpus: AtomicU64,
    /// Per-core tables are in use (chosen at creation: `locks=percpu`).
    per_core: bool,
    /// Per-core mode: per page, the CPUs whose own table holds a copy of
    /// its canonical leaf (a page-table-shaped radix tree whose leaf slots
    /// are CPU masks).
    cpu_sets: PageRadix<paging::FrameNodes>,
    /// Per CPU: its own root table for this address space (0: none yet).
    /// Written only by that CPU (in `activate`, once per address space);
    /// read by shootdowns.  Not padded per CPU (`CoreRoots`).
    core_roots: CoreRoots,
    /// Some CPU ran the canonical table because its own could not be
    /// allocated: from then on every shootdown also goes to every CPU in
    /// `cpus`, as in the shared design.
    canonical_loaded: AtomicBool,
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
        let Ok(cpu_sets) = PageRadix::new(paging::FrameNodes) else {
            paging::free_tables(root);
            return Err(Errno::ENOMEM);
        };
        LIVE.fetch_add(1, Ordering::Relaxed);
        let per_core = crate::cmdline::lock_mode() == crate::cmdline::LockMode::PerCpu;
        Ok(Arc::new(AddressSpace {
            root,
            ranges: ranges::new(per_core),
            brk: VmLock::new(Brk { base: 0, brk: 0 }),
            cpus: AtomicU64::new(0),
            cpu_sets,
            per_core,
            core_roots: CoreRoots::new(),
            canonical_loaded: AtomicBool::new(false),
        }))
    }

    /// Number of VMAs (tests, /proc-like reports; pieces of one mapping
    /// in several partitions count once).
    pub fn vma_count(&self) -> usize {
        self.ranges.lock_all().merged(0, USER_END).len()
    }

    /// The mappings in address order, as `/proc/<pid>/maps` lists them.
    pub fn map_report(&self) -> alloc::vec::Vec<MapLine> {
        let (brk_base, brk) = {
            let b = self.brk.lock();
            (b.base, b.brk)
        };
        let g = self.ranges.lock_all();
        g.merged(0, USER_END)
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
                        && brk_base != 0
                        && v.start >= brk_base
                        && v.start < brk.next_multiple_of(4096),
                    stack: v.end == super::USER_TOP,
                }
            })
            .collect()
    }

    /// Leaf entries holding a frame in `[start, end)` (tests).
    pub fn resident_pages(&self, start: u64, end: u64) -> usize {
        let _g = self.ranges.lock_range(start, end);
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

impl AddressSpace {
    /// Drops the translations of `[start, end)` wherever they may be cached
    /// and returns once they are gone, so the caller may then free frames.
    /// Call under the lock, after changing the canonical (or shared)
    /// leaves.  Shared design: `tlb::flush_range` (every CPU running it).
    /// Per-core: takes the union of the pages' CPU sets (clearing them),
    /// clears those CPUs' copies in the range, then flushes those of them
    /// that have the address space loaded (`tlb::flush_on`).
    pub(super) fn invalidate(&self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if !self.per_core {
            tlb::flush_range(self, start, end - start);
            return;
        }
        let cpus = self.cpu_sets.take_range(start, end);
        // The set bits only (usually this CPU's alone), not all 64 CPUs.
        let mut rest = cpus;
        while rest != 0 {
            let cpu = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if cpu >= crate::arch::cpu::MAX_CPUS {
                break;
            }
            let root = self.core_roots.remote(cpu).load(Ordering::Acquire);
            if root != 0 {
                paging::for_each_leaf(PhysAddr::new(root), start, end, |_, e| {
                    e.store(0, Ordering::Release);
                });
            }
        }
        let targets = if self.canonical_loaded.load(Ordering::Acquire) {
            u64::MAX
        } else {
            cpus
        };
        tlb::flush_on(self, start, end - start, targets);
    }

    /// After fork cleared `PTE_W` in the canonical (or shared) leaves of
    /// `runs` (sorted, disjoint page ranges): makes every CPU drop its
    /// writable translations of them, and returns once all did.  Call
    /// under the lock of every stripe of the runs.  Shared design: one
    /// `tlb::flush_range` over their envelope.  Per-core: each per-core
    /// copy of those pages is write-protected in place (it still equals
    /// its canonical leaf, so it stays, and its CPU stays in the page's
    /// set): unlike `invalidate`, which would empty them, the other CPUs
    /// keep reading those pages without a fault, and the copies and sets
    /// of pages outside the runs are not touched at all.  Then one
    /// shootdown to the CPUs of the runs' sets.
    pub(super) fn write_protect_copies(&self, runs: &[(u64, u64)]) {
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            return;
        };
        let (lo, hi) = (first.0, last.1);
        if !self.per_core {
            tlb::flush_range(self, lo, hi - lo);
            return;
        }
        let mut targets = 0u64;
        for &(start, end) in runs {
            let cpus = self.cpu_sets.union(start, end);
            targets |= cpus;
            let mut rest = cpus;
            while rest != 0 {
                let cpu = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                if cpu >= crate::arch::cpu::MAX_CPUS {
                    break;
                }
                let root = self.core_roots.remote(cpu).load(Ordering::Acquire);
                if root != 0 {
                    paging::for_each_leaf(PhysAddr::new(root), start, end, |_, e| {
                        if e.load(Ordering::Relaxed) & PTE_W != 0 {
                            e.fetch_and(!PTE_W, Ordering::AcqRel);
                        }
                    });
                }
            }
        }
        let targets = if self.canonical_loaded.load(Ordering::Acquire) {
            u64::MAX
        } else {
            targets
        };
        tlb::flush_on(self, lo, hi - lo, targets);
    }

    /// Per-core mode: copies the canonical leaf of `va` into this CPU's own
    /// table (when this CPU runs the address space) and enters the CPU in
    /// the page's CPU set.  Call under the range lock of `va` (interrupts
    /// are off: the CPU cannot change).  ENOMEM when a table could not be
    /// allocated.
    fn install_local(&self, _g: &ranges::RangeGuard<'_>, va: u64) -> Result<(), Fault> {
        if !self.per_core {
            return Ok(());
        }
        let me = crate::arch::cpu::id();
        let root = self.core_roots.remote(me).load(Ordering::Relaxed);
        if root == 0 || active_id(me) != self as *const AddressSpace as usize {
            return Ok(());
        }
        let Some(canon) = paging::leaf(self.root, va).map(|e| e.load(Ordering::Acquire)) else {
            return Ok(());
        };
        if canon & PTE_P == 0 {
            return Ok(());
        }
        let slot = paging::leaf_alloc(PhysAddr::new(root), va).map_err(|_| Fault::NoMemory)?;
        // The CPU enters the set before its copy exists.
        self.cpu_sets
            .fetch_or(va, 1u64 << me)
            .map_err(|_| Fault::NoMemory)?;
        // Only a copy that replaces a present one (a protection refresh)
        // can leave a stale translation: an empty slot is never cached
        // (x86 caches no non-present entry, and whoever emptied it shot
        // this CPU down before unlocking), so a first copy needs no
        // `invlpg` (a costly one under TCG).
        let old = slot.swap(canon, Ordering::AcqRel);
        if old & PTE_P != 0 {
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(va));
        }
        Ok(())
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
        paging::for_each_leaf(root, 0, USER_END, |_, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) && cur & PTE_ANON != 0 {
                refcount::dec_and_free(frame_of(cur));
            }
        });
        paging::free_tables(root);
        // The per-core tables only borrow frames (the canonical leaves
        // owned them): free the tables alone.
        for core_root in self.core_roots.iter() {
            let r = core_root.load(Ordering::Acquire);
            if r != 0 {
                paging::free_tables(PhysAddr::new(r));
            }
        }
        for map in self.ranges.maps_mut() {
            map.clear();
        }
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}
