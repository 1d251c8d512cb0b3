//! Per-CPU data for the per-core kernel: `PerCpu<T>`, CPU guards, per-CPU and
//! sloppy counters, lazily reconciled reference counts.
//!
//! Owns: the platform hook (`Platform`, `set_platform`) through which the
//! kernel (or the host test shim in [`host`]) says which CPU is running and
//! how to pin the current task to it; the guard that holds such a pin
//! (`CpuGuard`); cache-line padded per-CPU slots (`PerCpu<T>`); counters built
//! on them (`PerCpuCounter`, `SloppyCounter`); reference counts whose updates
//! stay in per-CPU caches until a reconciliation pass (`RefCache`); a
//! reader-writer lock whose reads, once many CPUs read it, write only the
//! reader's CPU line (`BiasedRwLock`); the ablation switch
//! (`LockMode`, read through `lock_mode`) and the CPU count (`cpu_count`,
//! fixed by the kernel's SMP bring-up), which every crate reads from here.
//!
//! Invariants: a CPU id is always `< MAX_CPUS`; every slot of a `PerCpu<T>`
//! sits on its own cache line(s), so writes by different CPUs to their own
//! slots never share a cache line; a local slot is only reachable through a
//! `CpuGuard`, which pins the caller to its CPU for the guard's lifetime.
//!
//! Must not: allocate (everything here works in a `static` before any heap
//! exists), depend on the kernel, or assume that pinning gives exclusive
//! access: on the host, several threads may bind to one CPU id, so slot
//! contents use atomics or locks (`T: Sync`).
#![cfg_attr(not(any(test, feature = "host")), no_std)]

mod brlock;
mod counter;
mod guard;
mod lock_mode;
mod per_cpu;
mod platform;
mod refcache;

#[cfg(any(test, feature = "host"))]
pub mod host;

pub use brlock::{BiasedReadGuard, BiasedRwLock, BiasedWriteGuard, REBIAS_AFTER};
pub use counter::{PerCpuCounter, SloppyCounter};
pub use crossbeam_utils::CachePadded;
pub use guard::CpuGuard;
pub use lock_mode::{lock_mode, set_lock_mode, BadLockMode, LockMode, LockModeAlreadySet};
pub use per_cpu::PerCpu;
pub use platform::{cpu_count, cpu_id, set_cpu_count, set_platform, PinToken, Platform};
pub use refcache::{RefCache, RefCacheStats, RefObj, WAYS as REFCACHE_WAYS};

/// Largest number of CPUs the per-CPU structures have room for.
pub const MAX_CPUS: usize = 64;

/// Builds a `PerCpu<T>` in a `const` context (e.g. a `static`), every slot
/// initialized with the constant expression `$init`, which is evaluated once
/// per slot (so non-`Copy` values such as atomics or locks work).
///
/// ```
/// use core::sync::atomic::AtomicU64;
/// static HITS: percpu::PerCpu<AtomicU64> = percpu::per_cpu!(AtomicU64::new(0));
/// assert_eq!(HITS.iter().count(), percpu::MAX_CPUS);
/// ```
#[macro_export]
macro_rules! per_cpu {
    ($init:expr) => {
        $crate::PerCpu::from_slots([const { $crate::CachePadded::new($init) }; $crate::MAX_CPUS])
    };
}
