//! `VmLock`: the lock of one range stripe of an address space
//! (`aspace::ranges`), and of its program break.
//!
//! A spin lock held with interrupts off on the holding CPU, so that the
//! holder is never preempted and the page-fault handler (which may run with
//! interrupts off, e.g. a user copy inside some other spin lock) can wait
//! for it without deadlocking against a preempted holder on its own CPU.
//! While spinning it serves this CPU's TLB-shootdown mailbox: the holder may
//! be waiting for our acknowledgement.
//!
//! Ablation: under `locks=global` every address space's lock also takes one
//! global lock first (lock order: global, then per-address-space), so all
//! VM operations of the system serialize.  The global lock is re-entrant
//! per CPU (a per-CPU depth; interrupts are off while it is held, so the
//! holder cannot migrate): a CPU holding several VM locks at once (an
//! operation over several range locks) takes it once.
//!
//! Waiting: a waiter whose caller had interrupts on spins with short
//! interrupt windows (`acquire`), so it can be preempted or take IPIs
//! while the holder (perhaps a vCPU the host descheduled) finishes.
//!
//! Statistics: acquisitions, contended acquisitions (the first try failed)
//! and nanoseconds spent waiting, in per-CPU counters (`lock_stats`).
//!
//! Must not: be held across anything that blocks (wait queues, sleeps) or
//! across calls into a `PageSource`.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

use percpu::PerCpuCounter;

use crate::arch;
use crate::cmdline::{self, LockMode};

static ACQUIRED: PerCpuCounter = PerCpuCounter::new();
static CONTENDED: PerCpuCounter = PerCpuCounter::new();
static WAIT_NS: PerCpuCounter = PerCpuCounter::new();

/// Address-space lock statistics, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockStats {
    pub acquired: u64,
    pub contended: u64,
    pub wait_ns: u64,
}

/// Totals of the address-space locks (and, under `locks=global`, the
/// global VM lock taken with them).
pub fn lock_stats() -> LockStats {
    let sum = |c: &PerCpuCounter| c.sum().max(0) as u64;
    LockStats {
        acquired: sum(&ACQUIRED),
        contended: sum(&CONTENDED),
        wait_ns: sum(&WAIT_NS),
    }
}

static GLOBAL: spin::Mutex<()> = spin::Mutex::new(());

/// Per CPU: how many `VmGuard`s of this CPU hold `GLOBAL` (written only by
/// that CPU with interrupts off).
static GLOBAL_DEPTH: percpu::PerCpu<AtomicUsize> = percpu::per_cpu!(AtomicUsize::new(0));

/// Per CPU: `VmGuard`s this CPU holds, and whether the outermost one was
/// taken with interrupts on.  Written only by that CPU with interrupts off.
/// While the count is non-zero the scheduler does not preempt the CPU's
/// thread (`holding`), so a holder may open interrupt windows while it
/// waits for shootdown acknowledgements (`tlb::flush_on`) without a
/// same-CPU waiter, perhaps spinning with interrupts off, ever waiting for
/// a holder that was switched out.
struct Held {
    count: AtomicUsize,
    irq_ok: core::sync::atomic::AtomicBool,
}

static HELD: percpu::PerCpu<Held> = percpu::per_cpu!(Held {
    count: AtomicUsize::new(0),
    irq_ok: core::sync::atomic::AtomicBool::new(false),
});

/// Whether this CPU holds a VM lock (the timer tick asks, interrupts off:
/// no preemption then).
pub fn holding() -> bool {
    HELD.remote(arch::cpu::id()).count.load(Ordering::Relaxed) != 0
}

/// Whether code running with interrupts off under this CPU's VM locks may
/// open interrupt windows: the outermost lock was taken with interrupts on
/// (and no preemption can happen while it is held).  `irq_was_on`: the
/// caller's own saved flag, for a caller holding no VM lock.
pub fn may_enable_interrupts(irq_was_on: bool) -> bool {
    let h = HELD.remote(arch::cpu::id());
    if h.count.load(Ordering::Relaxed) == 0 {
        irq_was_on
    } else {
        h.irq_ok.load(Ordering::Relaxed)
    }
}

/// Takes `GLOBAL` unless this CPU holds it already (interrupts off).
fn global_enter(may_enable: bool) -> Option<spin::MutexGuard<'static, ()>> {
    let depth = GLOBAL_DEPTH.remote(arch::cpu::id());
    let guard = if depth.load(Ordering::Relaxed) == 0 {
        Some(acquire(&GLOBAL, may_enable))
    } else {
        None
    };
    depth.fetch_add(1, Ordering::Relaxed);
    guard
}

/// A spin lock that disables interrupts while held.
pub struct VmLock<T> {
    inner: spin::Mutex<T>,
}

/// Guard: releases the lock(s), then restores the interrupt flag.
pub struct VmGuard<'a, T> {
    guard: Option<spin::MutexGuard<'a, T>>,
    global: Option<spin::MutexGuard<'static, ()>>,
    /// This guard counted in `GLOBAL_DEPTH` (`locks=global`).
    in_global: bool,
    interrupts_were_enabled: bool,
}

/// Spins for `m` while serving TLB requests addressed to this CPU.  Called
/// with interrupts off; returns with them off and `m` held.  When
/// `may_enable` (the caller had interrupts on and holds no other VM lock),
/// each retry opens an interrupt window: a waiter whose holder's vCPU the
/// host descheduled can then take its timer tick (and be preempted in
/// favour of other threads) and its IPIs the ordinary way, instead of
/// spinning blind with interrupts off for milliseconds.
fn acquire<U>(m: &spin::Mutex<U>, may_enable: bool) -> spin::MutexGuard<'_, U> {
    ACQUIRED.inc();
    if let Some(g) = m.try_lock() {
        return g;
    }
    CONTENDED.inc();
    let start = arch::time::now_ns();
    loop {
        if let Some(g) = m.try_lock() {
            WAIT_NS.add(arch::time::now_ns().saturating_sub(start) as i64);
            return g;
        }
        super::tlb::service_pending();
        if may_enable {
            arch::irq::enable();
            core::hint::spin_loop();
            arch::irq::disable();
        } else {
            core::hint::spin_loop();
        }
    }
}

impl<T> VmLock<T> {
    pub const fn new(value: T) -> Self {
        VmLock {
            inner: spin::Mutex::new(value),
        }
    }

    pub fn lock(&self) -> VmGuard<'_, T> {
        let interrupts_were_enabled = arch::irq::save_disable();
        let in_global = cmdline::lock_mode() == LockMode::Global;
        let global = if in_global {
            global_enter(interrupts_were_enabled)
        } else {
            None
        };
        // Holding the global lock: wait for ours with interrupts off (the
        // holder must not be preempted).
        let guard = acquire(&self.inner, interrupts_were_enabled && !in_global);
        let held = HELD.remote(arch::cpu::id());
        if held.count.fetch_add(1, Ordering::Relaxed) == 0 {
            held.irq_ok
                .store(interrupts_were_enabled, Ordering::Relaxed);
        }
        VmGuard {
            guard: Some(guard),
            global,
            in_global,
            interrupts_were_enabled,
        }
    }
}

impl<T> Deref for VmGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard emptied only in drop")
    }
}

impl<T> DerefMut for VmGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard emptied only in drop")
    }
}

impl<T> Drop for VmGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        HELD.remote(arch::cpu::id())
            .count
            .fetch_sub(1, Ordering::Relaxed);
        if self.in_global {
            GLOBAL_DEPTH
                .remote(arch::cpu::id())
                .fetch_sub(1, Ordering::Relaxed);
        }
        drop(self.global.take());
        arch::irq::restore(self.interrupts_were_enabled);
    }
}

impl<T> VmLock<T> {
    /// Direct access when no one else can hold a reference (teardown).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}
