//! Counters that every CPU bumps: `PerCpuCounter` (exact, summed on read)
//! and `SloppyCounter` (per-CPU deltas folded into a shared value past a
//! threshold, like Linux `percpu_counter` and sv6's sloppy counters).
//!
//! Owns only the counter cells.  Invariants: no value is ever lost: every
//! delta is in exactly one cell (a CPU's slot or the shared total) at any
//! time, so a sum taken while no update runs is exact.
//!
//! Must not: take a lock, or write another CPU's slot on the update path
//! (the sloppy counter's fold writes the shared line, but only once per
//! `threshold` units of change on that CPU).

use core::sync::atomic::{AtomicI64, Ordering};

use crossbeam_utils::CachePadded;

use crate::guard::CpuGuard;
use crate::per_cpu::PerCpu;

/// Exact counter: one atomic per CPU, updated with a relaxed add on the
/// local slot; reading sums every slot.
///
/// The add is an atomic read-modify-write, not a plain load/store under the
/// pin, because on the host several threads may share a CPU id.  On one CPU
/// it only touches that CPU's cache line.
pub struct PerCpuCounter {
    slots: PerCpu<AtomicI64>,
}

impl PerCpuCounter {
    /// A counter at zero; usable in a `static`.
    pub const fn new() -> Self {
        PerCpuCounter {
            slots: crate::per_cpu!(AtomicI64::new(0)),
        }
    }

    /// Adds `delta` on the caller's CPU.
    #[inline]
    pub fn add(&self, delta: i64) {
        let guard = CpuGuard::new();
        self.add_local(&guard, delta);
    }

    /// Adds `delta` on the CPU `guard` pins us to (no extra pin).
    #[inline]
    pub fn add_local(&self, guard: &CpuGuard, delta: i64) {
        self.slots.get(guard).fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `delta` on CPU `cpu`, which the caller knows to be its own and
    /// cannot leave meanwhile (a kernel path with interrupts off that read
    /// its CPU id anyway): no pin through the platform.  A wrong `cpu` only
    /// moves the delta to another slot (the add stays atomic).  Panics if
    /// `cpu >= MAX_CPUS`.
    #[inline]
    pub fn add_on(&self, cpu: usize, delta: i64) {
        self.slots.remote(cpu).fetch_add(delta, Ordering::Relaxed);
    }

    /// Sum over all CPUs.  Exact when no update runs concurrently; otherwise
    /// some concurrent updates may or may not be included.
    pub fn sum(&self) -> i64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// The part of the count held by CPU `cpu` (for per-CPU statistics).
    pub fn local_value(&self, cpu: usize) -> i64 {
        self.slots.remote(cpu).load(Ordering::Relaxed)
    }
}

impl Default for PerCpuCounter {
    fn default() -> Self {
        Self::new()
    }
}

/// Counter whose cheap read (`read`) is approximate: each CPU accumulates a
/// local delta and folds it into the shared total once its magnitude reaches
/// `threshold`.  `read` is then off by less than `threshold` per CPU that
/// has updated it; `sum` adds the local deltas for the exact value.
pub struct SloppyCounter {
    shared: CachePadded<AtomicI64>,
    local: PerCpu<AtomicI64>,
    threshold: i64,
}

impl SloppyCounter {
    /// A counter at zero that folds local deltas once `|delta| >= threshold`
    /// (a threshold below 1 is taken as 1: every update is folded).
    pub const fn new(threshold: i64) -> Self {
        SloppyCounter {
            shared: CachePadded::new(AtomicI64::new(0)),
            local: crate::per_cpu!(AtomicI64::new(0)),
            threshold: if threshold < 1 { 1 } else { threshold },
        }
    }

    /// The fold threshold.
    pub fn threshold(&self) -> i64 {
        self.threshold
    }

    /// Adds `delta` on the caller's CPU.
    pub fn add(&self, delta: i64) {
        let guard = CpuGuard::new();
        let slot = self.local.get(&guard);
        let now = slot.fetch_add(delta, Ordering::Relaxed).wrapping_add(delta);
        if now.unsigned_abs() >= self.threshold as u64 {
            // Take whatever the slot holds now (another thread bound to the
            // same CPU id may have added meanwhile) and move it, whole, to
            // the shared total.
            let moved = slot.swap(0, Ordering::Relaxed);
            self.shared.fetch_add(moved, Ordering::Relaxed);
        }
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The shared total only: one load, off by less than `threshold` for
    /// every CPU holding a local delta.
    pub fn read(&self) -> i64 {
        self.shared.load(Ordering::Relaxed)
    }

    /// Shared total plus every CPU's local delta: exact when no update runs
    /// concurrently.
    pub fn sum(&self) -> i64 {
        let locals: i64 = self.local.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        self.shared.load(Ordering::Relaxed) + locals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;

    const THREADS: usize = 8;
    const PER_THREAD: i64 = 100_000;

    fn on_threads(f: impl Fn(usize) + Sync) {
        std::thread::scope(|s| {
            for cpu in 0..THREADS {
                let f = &f;
                s.spawn(move || {
                    host::bind_current_thread(cpu).unwrap();
                    f(cpu);
                });
            }
        });
    }

    #[test]
    fn percpu_counter_sums_exactly_across_threads() {
        let c = PerCpuCounter::new();
        on_threads(|_| {
            for _ in 0..PER_THREAD {
                c.inc();
            }
        });
        assert_eq!(c.sum(), THREADS as i64 * PER_THREAD);
        for cpu in 0..THREADS {
            assert_eq!(c.local_value(cpu), PER_THREAD, "cpu {cpu}");
        }
    }

    #[test]
    fn percpu_counter_with_shared_cpu_ids_loses_nothing() {
        // Two threads per CPU id: the atomic add keeps them from racing.
        let c = PerCpuCounter::new();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let c = &c;
                s.spawn(move || {
                    host::bind_current_thread(t / 2).unwrap();
                    for _ in 0..PER_THREAD {
                        c.add(2);
                    }
                    c.add(-1);
                });
            }
        });
        assert_eq!(c.sum(), THREADS as i64 * (2 * PER_THREAD - 1));
    }

    #[test]
    fn sloppy_counter_sums_exactly_and_read_is_within_bound() {
        let threshold = 64;
        let c = SloppyCounter::new(threshold);
        on_threads(|cpu| {
            for i in 0..PER_THREAD {
                // Mix of increments and decrements: net +1 per 3 ops plus
                // a per-thread tail.
                if i % 3 == 2 {
                    c.dec();
                } else {
                    c.inc();
                }
            }
            c.add(cpu as i64);
        });
        let per_thread = (0..PER_THREAD)
            .map(|i| if i % 3 == 2 { -1 } else { 1 })
            .sum::<i64>();
        let expected = THREADS as i64 * per_thread + (0..THREADS as i64).sum::<i64>();
        assert_eq!(c.sum(), expected);
        let slack = (c.read() - expected).abs();
        assert!(slack < threshold * THREADS as i64, "read off by {slack}");
    }

    #[test]
    fn sloppy_counter_folds_past_threshold() {
        std::thread::spawn(|| {
            host::bind_current_thread(9).unwrap();
            let c = SloppyCounter::new(10);
            assert_eq!(c.threshold(), 10);
            for _ in 0..9 {
                c.inc();
            }
            assert_eq!(c.read(), 0, "below threshold stays local");
            c.inc();
            assert_eq!(c.read(), 10, "reaching threshold folds");
            c.add(-25);
            assert_eq!(c.read(), -15);
            assert_eq!(c.sum(), -15);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threshold_below_one_folds_every_update() {
        let c = SloppyCounter::new(0);
        assert_eq!(c.threshold(), 1);
        c.add(3);
        assert_eq!(c.read(), 3);
    }
}
