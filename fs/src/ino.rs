//! Inode numbers from per-CPU ranges.
//!
//! Owns the allocator.  Each CPU takes a range of `RANGE` numbers from the
//! shared counter and hands them out locally, so creating files on
//! different CPUs writes no shared cache line except once per range.  In
//! `LockMode::Global` every number comes from the shared counter.
//!
//! Invariant: no number is handed out twice.  Must not: reuse numbers.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};

use percpu::{CachePadded, CpuGuard, PerCpu};

use crate::lockstat::{LockClass, Mutex};
use crate::LockMode;

const RANGE: u64 = 1024;

pub(crate) struct InoAlloc {
    mode: LockMode,
    next_range: CachePadded<AtomicU64>,
    /// Per CPU: (next, end) of its current range.  A lock, not a pair of
    /// atomics, because host threads may share a CPU id.
    /// Boxed: 8 KiB would otherwise be built on the kernel stack.
    local: Box<PerCpu<Mutex<(u64, u64)>>>,
    /// A number the next `alloc` must return instead (0: none): set only
    /// while a file server rebuilds a namespace from a state image
    /// (`Fs::with_ino`), one creation at a time.  Shared, not per-CPU:
    /// it is read once per creation and written only during a restore, so
    /// its cache line stays shared and clean on the hot path.
    forced: AtomicU64,
}

impl InoAlloc {
    /// Numbers start at `first` (the root takes a lower one).
    pub(crate) fn new(mode: LockMode, first: u64) -> Self {
        InoAlloc {
            mode,
            next_range: CachePadded::new(AtomicU64::new(first)),
            local: Box::new(percpu::per_cpu!(Mutex::new(LockClass::InoRange, (0, 0)))),
            forced: AtomicU64::new(0),
        }
    }

    /// Makes the next `alloc` return `ino` (0: stop forcing), and keeps
    /// later numbers above it: every CPU drops its current range, so no
    /// number handed out from here on can equal one a restore gave.
    pub(crate) fn force(&self, ino: u64) {
        self.forced.store(ino, Ordering::Relaxed);
        if ino != 0 {
            self.next_range.fetch_max(ino + 1, Ordering::Relaxed);
            for r in self.local.iter() {
                *r.lock() = (0, 0);
            }
        }
    }

    pub(crate) fn alloc(&self) -> u64 {
        if self.forced.load(Ordering::Relaxed) != 0 {
            let f = self.forced.swap(0, Ordering::Relaxed);
            if f != 0 {
                return f;
            }
        }
        if self.mode == LockMode::Global {
            return self.next_range.fetch_add(1, Ordering::Relaxed);
        }
        let guard = CpuGuard::new();
        let mut r = self.local.get(&guard).lock();
        if r.0 == r.1 {
            let start = self.next_range.fetch_add(RANGE, Ordering::Relaxed);
            *r = (start, start + RANGE);
        }
        let ino = r.0;
        r.0 += 1;
        ino
    }
}
