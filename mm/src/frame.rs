//! `FrameAllocator`: per-CPU page lists over the global buddy allocator,
//! in the style of Linux `per_cpu_pages`.
//!
//! Owns: the buddy allocator (behind its one lock) and one list of free
//! single frames per CPU (behind a per-CPU lock that only its own CPU takes
//! on the common path; on the host, threads sharing a CPU id may meet
//! there).  A list is refilled from, and drained to, the buddy `batch`
//! frames at a time, and never holds more than `high` frames after a free.
//! When the buddy runs dry, every list is drained back and the allocation
//! retried once, so parked frames never make memory look exhausted.
//!
//! Invariants: a frame on a per-CPU list is allocated (order 0) as far as
//! the buddy knows; `free_frames()` = buddy free + every per-CPU list's
//! length, exact when no alloc/free runs concurrently.  In
//! `LockMode::Global` the per-CPU lists stay empty.
//!
//! Every lock here is taken under a `CpuGuard` (interrupts off in the
//! kernel), so an interrupt handler that allocates cannot deadlock on a
//! lock its own CPU holds.
//!
//! Must not: take the buddy lock on the common single-frame path in
//! `PerCpu` mode, or write a cache line shared with another CPU there.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use percpu::{per_cpu, CachePadded, CpuGuard, PerCpu, PerCpuCounter};
use spin::Mutex;

use crate::buddy::{BuddyAllocator, FreeError, RegionError};
use crate::{FrameMemory, LockMode, Pfn};

const NIL: u64 = u64::MAX;

/// Default refill/drain batch (frames).
pub const DEFAULT_BATCH: usize = 32;
/// Default high watermark of a per-CPU list (frames).
pub const DEFAULT_HIGH: usize = 128;

/// The lock mode can only be chosen before memory is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeError;

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lock mode must be chosen before any memory region is added")
    }
}

/// Counters for explaining scaling (read with `FrameAllocator::stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Times the buddy lock was taken.
    pub buddy_locks: i64,
    /// Of those, times it was held by another CPU at first try.
    pub buddy_contended: i64,
    /// Single-frame allocations served by a per-CPU list.
    pub pcp_allocs: i64,
    /// Frees refused (bad frame number, or rejected by the buddy when a
    /// per-CPU list was drained; such a frame is lost and counted here).
    pub rejected_frees: usize,
}

/// Intrusive singly linked list of free frames; the next link is stored in
/// the first 8 bytes of each frame.
struct PageList {
    head: u64,
    count: usize,
}

impl PageList {
    const fn new() -> Self {
        PageList {
            head: NIL,
            count: 0,
        }
    }

    fn push(&mut self, mem: &impl FrameMemory, pfn: Pfn) {
        // SAFETY: `pfn` is a free frame owned by this list from now on;
        // its first 8 bytes (aligned: frames are page aligned) hold the link.
        unsafe { mem.frame_ptr(pfn).cast::<u64>().write(self.head) };
        self.head = pfn as u64;
        self.count += 1;
    }

    fn pop(&mut self, mem: &impl FrameMemory) -> Option<Pfn> {
        if self.head == NIL {
            return None;
        }
        let pfn = self.head as Pfn;
        // SAFETY: `pfn` is on this list, so its first 8 bytes are our link.
        self.head = unsafe { mem.frame_ptr(pfn).cast::<u64>().read() };
        self.count -= 1;
        Some(pfn)
    }
}

/// Single frames from per-CPU lists, larger blocks from the buddy.
pub struct FrameAllocator<M> {
    mem: M,
    /// On its own cache line(s): every refill/drain writes the lock word,
    /// which must not invalidate the read-mostly fields below (`mode`,
    /// `lowest`, `highest`, `total`) that every allocation reads.
    buddy: CachePadded<Mutex<BuddyAllocator<M>>>,
    pcp: PerCpu<Mutex<PageList>>,
    mode: AtomicU8,
    batch: usize,
    high: usize,
    /// Lowest managed frame and one past the highest, for cheap sanity
    /// checks of frees on the per-CPU path (written only by `add_region`).
    lowest: AtomicUsize,
    highest: AtomicUsize,
    /// Frames managed, as the buddy counts them (written only by
    /// `add_region`, under the buddy lock): `total_frames` reads it without
    /// the buddy lock, so mmap's overcommit check shares no written line.
    total: AtomicUsize,
    buddy_locks: PerCpuCounter,
    buddy_contended: PerCpuCounter,
    pcp_allocs: PerCpuCounter,
    rejected_frees: AtomicUsize,
}

const MODE_PERCPU: u8 = 0;
const MODE_GLOBAL: u8 = 1;

impl<M: FrameMemory + Copy> FrameAllocator<M> {
    /// An allocator with no memory, `PerCpu` mode, default batch and high.
    pub const fn new(mem: M) -> Self {
        Self::with_params(mem, DEFAULT_BATCH, DEFAULT_HIGH)
    }

    /// As `new`, with the per-CPU list's refill/drain `batch` and `high`
    /// watermark (`batch` at least 1, `high` at least `batch`).
    pub const fn with_params(mem: M, batch: usize, high: usize) -> Self {
        let batch = if batch == 0 { 1 } else { batch };
        let high = if high < batch { batch } else { high };
        FrameAllocator {
            mem,
            buddy: CachePadded::new(Mutex::new(BuddyAllocator::new(mem))),
            pcp: per_cpu!(Mutex::new(PageList::new())),
            mode: AtomicU8::new(MODE_PERCPU),
            batch,
            high,
            lowest: AtomicUsize::new(usize::MAX),
            highest: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            buddy_locks: PerCpuCounter::new(),
            buddy_contended: PerCpuCounter::new(),
            pcp_allocs: PerCpuCounter::new(),
            rejected_frees: AtomicUsize::new(0),
        }
    }

    /// Chooses the lock mode; only before the first `add_region`.
    pub fn set_mode(&self, mode: LockMode) -> Result<(), ModeError> {
        let _pin = CpuGuard::new();
        let buddy = self.buddy.lock();
        if buddy.total_frames() != 0 {
            return Err(ModeError);
        }
        let raw = match mode {
            LockMode::PerCpu => MODE_PERCPU,
            LockMode::Global => MODE_GLOBAL,
        };
        self.mode.store(raw, Ordering::Relaxed);
        Ok(())
    }

    /// The lock mode in force.
    pub fn mode(&self) -> LockMode {
        match self.mode.load(Ordering::Relaxed) {
            MODE_GLOBAL => LockMode::Global,
            _ => LockMode::PerCpu,
        }
    }

    /// The frame memory frames are reached through.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Adds frames `start..start + count` (see `BuddyAllocator::add_region`).
    pub fn add_region(&self, start: Pfn, count: usize) -> Result<usize, RegionError> {
        let _pin = CpuGuard::new();
        let mut buddy = self.lock_buddy();
        let added = buddy.add_region(start, count)?;
        self.total.store(buddy.total_frames(), Ordering::Release);
        drop(buddy);
        self.lowest.fetch_min(start, Ordering::Relaxed);
        self.highest.fetch_max(start + count, Ordering::Relaxed);
        Ok(added)
    }

    /// Allocates one frame.  When the buddy is empty, frames parked on
    /// other CPUs' lists are drained back and the allocation retried once,
    /// so memory is never reported exhausted while some list holds frames.
    pub fn alloc(&self) -> Option<Pfn> {
        let guard = CpuGuard::new();
        if self.mode() == LockMode::Global {
            return self.lock_buddy_local(&guard).alloc(0);
        }
        self.alloc_local(&guard).or_else(|| {
            self.drain_all();
            self.alloc_local(&guard)
        })
    }

    /// Pops a frame from this CPU's list, refilling it from the buddy first
    /// if it is empty.
    fn alloc_local(&self, guard: &CpuGuard) -> Option<Pfn> {
        let mut list = self.pcp.get(guard).lock();
        if list.count == 0 {
            let mut buddy = self.lock_buddy_local(guard);
            for _ in 0..self.batch {
                match buddy.alloc(0) {
                    Some(pfn) => list.push(&self.mem, pfn),
                    None => break,
                }
            }
        }
        let pfn = list.pop(&self.mem)?;
        self.pcp_allocs.add_local(guard, 1);
        Some(pfn)
    }

    /// Frees one frame from `alloc` (or `alloc_order(0)`).
    ///
    /// In `PerCpu` mode only the frame number's range is checked here; a
    /// double free is caught when the frame is drained to the buddy (then
    /// it is dropped and counted in `FrameStats::rejected_frees`).
    pub fn free(&self, pfn: Pfn) -> Result<(), FreeError> {
        let guard = CpuGuard::new();
        if self.mode() == LockMode::Global {
            return self
                .lock_buddy_local(&guard)
                .free(pfn, 0)
                .inspect_err(|_| self.reject());
        }
        let lowest = self.lowest.load(Ordering::Relaxed);
        let highest = self.highest.load(Ordering::Relaxed);
        if pfn < lowest || pfn >= highest {
            self.reject();
            return Err(FreeError::NotManaged);
        }
        let mut list = self.pcp.get(&guard).lock();
        list.push(&self.mem, pfn);
        if list.count > self.high {
            let mut buddy = self.lock_buddy_local(&guard);
            for _ in 0..self.batch {
                let Some(pfn) = list.pop(&self.mem) else {
                    break;
                };
                if buddy.free(pfn, 0).is_err() {
                    self.reject();
                }
            }
        }
        Ok(())
    }

    /// Allocates `1 << order` contiguous, naturally aligned frames; order 0
    /// uses the per-CPU lists.
    pub fn alloc_order(&self, order: usize) -> Option<Pfn> {
        if order == 0 {
            return self.alloc();
        }
        let _pin = CpuGuard::new();
        let block = self.lock_buddy().alloc(order);
        block.or_else(|| {
            // Frames parked on per-CPU lists may be what keeps a block
            // from coalescing: give them back and try once more.
            if self.mode() == LockMode::Global {
                return None;
            }
            self.drain_all();
            self.lock_buddy().alloc(order)
        })
    }

    /// Frees a block from `alloc_order(order)`.
    pub fn free_order(&self, pfn: Pfn, order: usize) -> Result<(), FreeError> {
        if order == 0 {
            self.free(pfn)
        } else {
            let _pin = CpuGuard::new();
            // Bound to a local, not the block's tail expression: a tail
            // expression's temporaries (here the buddy guard) are dropped
            // after the block's locals (edition 2021), so `_pin` would turn
            // interrupts back on while the lock is still held, and a timer
            // preemption there left the buddy locked with its holder off-CPU
            // (every CPU then spun on it: the fuzzer's 4-vCPU stall).
            let freed = self.lock_buddy().free(pfn, order);
            freed.inspect_err(|_| self.reject())
        }
    }

    /// Free frames: buddy plus every per-CPU list.  Exact when no
    /// allocation or free runs concurrently.
    pub fn free_frames(&self) -> usize {
        let _pin = CpuGuard::new();
        let buddy = self.lock_buddy().free_frames();
        buddy + self.pcp.iter().map(|list| list.lock().count).sum::<usize>()
    }

    /// Frames on the per-CPU list of CPU `cpu`.
    pub fn cpu_list_len(&self, cpu: usize) -> usize {
        let _pin = CpuGuard::new();
        // A local, so the list guard drops before `_pin` (see `free_order`).
        let count = self.pcp.remote(cpu).lock().count;
        count
    }

    /// Frames managed (free or not).  One load, no lock: the count
    /// changes only in `add_region` (mmap's overcommit check calls this on
    /// every writable mapping; taking the buddy lock there was the one
    /// cache line every `page_fault` operation shared between CPUs).
    pub fn total_frames(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Gives every per-CPU list back to the buddy (so that its free blocks
    /// coalesce), e.g. before a large allocation fails or at the end of a
    /// test.
    pub fn drain_all(&self) {
        let _pin = CpuGuard::new();
        for list in self.pcp.iter() {
            let mut list = list.lock();
            if list.count == 0 {
                continue;
            }
            let mut buddy = self.lock_buddy();
            while let Some(pfn) = list.pop(&self.mem) {
                if buddy.free(pfn, 0).is_err() {
                    self.reject();
                }
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            buddy_locks: self.buddy_locks.sum(),
            buddy_contended: self.buddy_contended.sum(),
            pcp_allocs: self.pcp_allocs.sum(),
            rejected_frees: self.rejected_frees.load(Ordering::Relaxed),
        }
    }

    fn reject(&self) {
        self.rejected_frees.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the buddy lock, counting the acquisition and whether it was
    /// contended.  Callers hold a `CpuGuard` for as long as the lock is
    /// held, so that (in the kernel) no interrupt handler on this CPU can
    /// try to take it again (nor preempt the holder).  The returned guard
    /// must be dropped before that `CpuGuard`: never leave it as a
    /// temporary of a block's tail expression (see `free_order`).
    fn lock_buddy(&self) -> spin::MutexGuard<'_, BuddyAllocator<M>> {
        let guard = CpuGuard::new();
        self.lock_buddy_local(&guard)
    }

    fn lock_buddy_local(&self, guard: &CpuGuard) -> spin::MutexGuard<'_, BuddyAllocator<M>> {
        self.buddy_locks.add_local(guard, 1);
        match self.buddy.try_lock() {
            Some(locked) => locked,
            None => {
                self.buddy_contended.add_local(guard, 1);
                self.buddy.lock()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Arena;
    use percpu::host;

    fn frames(n: usize, mode: LockMode) -> &'static FrameAllocator<&'static Arena> {
        let arena = Arena::leak(n);
        let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
        fa.set_mode(mode).unwrap();
        fa.add_region(arena.first_pfn(), n).unwrap();
        fa
    }

    #[test]
    fn high_below_batch_is_raised_to_batch() {
        std::thread::spawn(|| {
            host::bind_current_thread(11).unwrap();
            let arena = Arena::leak(256);
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 2)));
            fa.add_region(arena.first_pfn(), 256).unwrap();
            let p = fa.alloc().unwrap();
            assert_eq!(fa.cpu_list_len(11), 7, "refilled 8, handed out 1");
            fa.free(p).unwrap();
            assert_eq!(fa.cpu_list_len(11), 8, "high is 8 (= batch), not 2");
            assert!(!ModeError.to_string().is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_block_held_up_by_parked_frames_is_still_found() {
        std::thread::spawn(|| {
            host::bind_current_thread(13).unwrap();
            // Memory is exactly one aligned 16-frame block.
            let arena = Arena::leak(64);
            let s = (arena.first_pfn() + 16 + 15) & !15;
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
            assert_eq!(fa.add_region(s - 1, 17), Ok(16));
            let p = fa.alloc().unwrap();
            fa.free(p).unwrap();
            assert_eq!(fa.cpu_list_len(13), 8, "half the block parked on this CPU");
            assert_eq!(fa.alloc_order(4), Some(s), "lists drained for the block");
            assert_eq!(fa.cpu_list_len(13), 0);
            assert_eq!(fa.alloc_order(4), None);
            fa.free_order(s, 4).unwrap();
            assert_eq!(fa.free_frames(), 16);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn total_frames_follows_regions_without_the_buddy_lock() {
        std::thread::spawn(|| {
            host::bind_current_thread(17).unwrap();
            let arena = Arena::leak(256);
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
            assert_eq!(fa.total_frames(), 0);
            let a = fa.add_region(arena.first_pfn(), 100).unwrap();
            assert_eq!(fa.total_frames(), a);
            let b = fa.add_region(arena.first_pfn() + 128, 100).unwrap();
            assert_eq!(fa.total_frames(), a + b);
            let locks = fa.stats().buddy_locks;
            for _ in 0..10 {
                assert_eq!(fa.total_frames(), a + b);
            }
            assert_eq!(fa.stats().buddy_locks, locks, "no buddy lock taken");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn mode_is_fixed_once_memory_exists() {
        let fa = frames(64, LockMode::Global);
        assert_eq!(fa.mode(), LockMode::Global);
        assert_eq!(fa.set_mode(LockMode::PerCpu), Err(ModeError));
    }

    #[test]
    fn percpu_path_refills_in_batches_and_skips_the_buddy() {
        std::thread::spawn(|| {
            host::bind_current_thread(4).unwrap();
            let fa = frames(1024, LockMode::PerCpu);
            let total = fa.total_frames();
            let locks0 = fa.stats().buddy_locks;
            let a = fa.alloc().unwrap();
            assert_eq!(fa.cpu_list_len(4), 7, "refilled 8, handed out 1");
            let locks1 = fa.stats().buddy_locks;
            assert_eq!(locks1, locks0 + 1);
            let more: Vec<_> = (0..7).map(|_| fa.alloc().unwrap()).collect();
            assert_eq!(fa.stats().buddy_locks, locks1, "served from the list");
            assert_eq!(fa.free_frames(), total - 8);
            fa.free(a).unwrap();
            for p in more {
                fa.free(p).unwrap();
            }
            assert_eq!(fa.free_frames(), total);
            assert!(fa.cpu_list_len(4) <= 16);
            fa.drain_all();
            assert_eq!(fa.cpu_list_len(4), 0);
            assert_eq!(fa.free_frames(), total);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn list_is_drained_past_high() {
        std::thread::spawn(|| {
            host::bind_current_thread(6).unwrap();
            let fa = frames(1024, LockMode::PerCpu);
            let got: Vec<_> = (0..100).map(|_| fa.alloc().unwrap()).collect();
            for p in got {
                fa.free(p).unwrap();
                assert!(fa.cpu_list_len(6) <= 16);
            }
            assert_eq!(fa.free_frames(), fa.total_frames());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn frames_parked_on_other_cpus_are_not_lost_to_allocation() {
        let fa = frames(64, LockMode::PerCpu);
        let total = fa.total_frames();
        std::thread::spawn(move || {
            host::bind_current_thread(10).unwrap();
            let all: Vec<_> = std::iter::from_fn(|| fa.alloc()).collect();
            assert_eq!(all.len(), total);
            for p in all {
                fa.free(p).unwrap();
            }
            assert!(fa.cpu_list_len(10) > 0, "some frames stay parked on cpu 10");
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            host::bind_current_thread(11).unwrap();
            let all: Vec<_> = std::iter::from_fn(|| fa.alloc()).collect();
            assert_eq!(all.len(), total, "cpu 11 must get cpu 10's parked frames");
            for p in all {
                fa.free(p).unwrap();
            }
            fa.drain_all();
        })
        .join()
        .unwrap();
        assert_eq!(fa.free_frames(), total);
        std::thread::spawn(move || {
            host::bind_current_thread(12).unwrap();
            let p = fa.alloc().unwrap();
            fa.free(p).unwrap();
            let big = fa
                .alloc_order(4)
                .expect("parked frames drained for a block");
            fa.free_order(big, 4).unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn global_mode_uses_the_buddy_and_checks_frees() {
        let fa = frames(256, LockMode::Global);
        let p = fa.alloc().unwrap();
        assert!(fa.pcp.iter().all(|l| l.lock().count == 0));
        fa.free(p).unwrap();
        assert_eq!(fa.free(p), Err(FreeError::NotAllocated));
        assert_eq!(fa.stats().rejected_frees, 1);
    }

    #[test]
    fn out_of_range_free_is_refused_in_percpu_mode() {
        let fa = frames(256, LockMode::PerCpu);
        assert_eq!(fa.free(3), Err(FreeError::NotManaged));
        assert_eq!(fa.free(usize::MAX), Err(FreeError::NotManaged));
        // Just outside the region on either side.
        let first = fa.memory().first_pfn();
        assert_eq!(fa.free(first + 256), Err(FreeError::NotManaged));
        assert_eq!(fa.free(first - 1), Err(FreeError::NotManaged));
        assert_eq!(fa.stats().rejected_frees, 4);
        assert_eq!(fa.free_frames(), fa.total_frames());
    }

    #[test]
    fn higher_orders_come_from_the_buddy_aligned() {
        let fa = frames(4096, LockMode::PerCpu);
        let p = fa.alloc_order(4).unwrap();
        assert_eq!(p % 16, 0);
        assert_eq!(fa.free_order(p, 3), Err(FreeError::NotAllocated));
        fa.free_order(p, 4).unwrap();
        assert_eq!(fa.alloc_order(crate::MAX_ORDER + 1), None);
        assert_eq!(fa.free_frames(), fa.total_frames());
    }
}
