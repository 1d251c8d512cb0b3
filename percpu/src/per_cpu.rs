//! `PerCpu<T>`: one cache-line padded slot of `T` per CPU.
//!
//! Owns the slots.  The local slot is reached with a `CpuGuard` (so the
//! caller cannot migrate while using it); any slot can be read with
//! `remote`, e.g. to sum counters or drain another CPU's cache.
//!
//! Invariants: exactly `MAX_CPUS` slots, each in its own `CachePadded`, so
//! two CPUs writing their own slots never write the same cache line.
//!
//! Must not: hand out `&mut T` (several threads may share a CPU id on the
//! host, and remote readers exist); mutation goes through `T`'s own atomics
//! or locks.

use crossbeam_utils::CachePadded;

use crate::guard::CpuGuard;
use crate::MAX_CPUS;

/// One `T` per CPU, each on its own cache line(s).
pub struct PerCpu<T> {
    slots: [CachePadded<T>; MAX_CPUS],
}

impl<T> PerCpu<T> {
    /// Builds from ready-made slots; usable in `const` contexts.  The
    /// [`per_cpu!`](crate::per_cpu) macro fills the array from one constant
    /// initializer.
    pub const fn from_slots(slots: [CachePadded<T>; MAX_CPUS]) -> Self {
        PerCpu { slots }
    }

    /// Builds at run time, slot `cpu` initialized with `init(cpu)`.
    pub fn from_fn(mut init: impl FnMut(usize) -> T) -> Self {
        PerCpu {
            slots: core::array::from_fn(|cpu| CachePadded::new(init(cpu))),
        }
    }

    /// The slot of the CPU the guard pins us to.
    #[inline]
    pub fn get(&self, guard: &CpuGuard) -> &T {
        &self.slots[guard.cpu()]
    }

    /// The slot of CPU `cpu`, for reading or draining another CPU's state.
    ///
    /// Panics if `cpu >= MAX_CPUS`, like slice indexing.
    #[inline]
    pub fn remote(&self, cpu: usize) -> &T {
        &self.slots[cpu]
    }

    /// The slot of CPU `cpu`, or `None` if `cpu >= MAX_CPUS` (for ids that
    /// come from outside, e.g. a device's queue number).
    #[inline]
    pub fn try_remote(&self, cpu: usize) -> Option<&T> {
        self.slots.get(cpu).map(|slot| &**slot)
    }

    /// All `MAX_CPUS` slots in CPU order (including CPUs not online, whose
    /// slots keep their initial value).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|slot| &**slot)
    }
}

impl<T: Default> Default for PerCpu<T> {
    fn default() -> Self {
        Self::from_fn(|_| T::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;
    use core::sync::atomic::{AtomicUsize, Ordering};

    static STATIC_SLOTS: PerCpu<AtomicUsize> = crate::per_cpu!(AtomicUsize::new(7));

    #[test]
    fn const_static_is_initialized_per_slot() {
        assert!(STATIC_SLOTS.iter().all(|s| s.load(Ordering::Relaxed) == 7));
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        let p: PerCpu<u8> = PerCpu::from_fn(|_| 0);
        let a = p.remote(0) as *const u8 as usize;
        let b = p.remote(1) as *const u8 as usize;
        assert!(b - a >= 64, "slots {a:#x} and {b:#x} are too close");
    }

    #[test]
    fn get_uses_the_bound_cpu_and_remote_sees_it() {
        let p: PerCpu<AtomicUsize> = PerCpu::from_fn(|cpu| AtomicUsize::new(cpu * 10));
        std::thread::scope(|s| {
            s.spawn(|| {
                host::bind_current_thread(5).unwrap();
                let g = CpuGuard::new();
                assert_eq!(g.cpu(), 5);
                assert_eq!(p.get(&g).load(Ordering::Relaxed), 50);
                p.get(&g).store(99, Ordering::Relaxed);
            });
        });
        assert_eq!(p.remote(5).load(Ordering::Relaxed), 99);
        assert_eq!(p.remote(4).load(Ordering::Relaxed), 40);
        assert_eq!(p.iter().count(), MAX_CPUS);
    }

    #[test]
    fn guards_nest() {
        std::thread::scope(|s| {
            s.spawn(|| {
                host::bind_current_thread(3).unwrap();
                let outer = CpuGuard::new();
                {
                    let inner = CpuGuard::new();
                    assert_eq!(inner.cpu(), 3);
                    assert_eq!(host::pin_depth(), 2);
                }
                assert_eq!(host::pin_depth(), 1);
                assert_eq!(outer.cpu(), 3);
            });
        });
    }
}
