//! `RawVmLock`: the lock of one range stripe of an address space
//! (`mm::ranges::RawLock`, used by `aspace::ranges`), and `VmLock<T>`, the
//! same lock with data (an address space's program break).
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
//! VM operations of the system serialize.  A CPU holds it while it holds
//! any VM lock (its first VM lock takes it, its last unlock releases it),
//! so an operation over several range locks takes it once.
//!
//! Waiting: a waiter whose caller had interrupts on spins with short
//! interrupt windows (`acquire`), so it can be preempted or take IPIs
//! while the holder (perhaps a vCPU the host descheduled) finishes.
//!
//! Interrupts and preemption: the first VM lock a CPU takes records the
//! caller's interrupt flag in a per-CPU slot (`HELD`) and the last one it
//! releases restores it, whatever the release order.  While a CPU holds
//! one, the scheduler does not preempt its thread (`holding`), so a holder
//! may open interrupt windows when its caller had interrupts on (the
//! shootdown wait, `tlb::flush_on`) and no same-CPU waiter can ever spin
//! for a holder that was switched out.
//!
//! Statistics: acquisitions, contended acquisitions (the first try failed)
//! and nanoseconds spent waiting, in per-CPU counters (`lock_stats`).
//!
//! Must not: be held across anything that blocks (wait queues, sleeps) or
//! across calls into a `PageSource`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use percpu::{PerCpu, PerCpuCounter};

use crate::arch;
use crate::cmdline::{self, LockMode};

static ACQUIRED: PerCpuCounter = PerCpuCounter::new();
static CONTENDED: PerCpuCounter = PerCpuCounter::new();
static WAIT_NS: PerCpuCounter = PerCpuCounter::new();

/// VM lock statistics, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockStats {
    pub acquired: u64,
    pub contended: u64,
    pub wait_ns: u64,
}

/// Totals of the range locks (and, under `locks=global`, the global VM
/// lock taken with them).
pub fn lock_stats() -> LockStats {
    let sum = |c: &PerCpuCounter| c.sum().max(0) as u64;
    LockStats {
        acquired: sum(&ACQUIRED),
        contended: sum(&CONTENDED),
        wait_ns: sum(&WAIT_NS),
    }
}

/// `locks=global`: the one lock every VM lock also takes.
static GLOBAL: RawSpin = RawSpin::new();

/// Per CPU: VM locks held (under `locks=global`, `GLOBAL` is held while
/// this is non-zero), and whether the outermost was taken with interrupts
/// on.  Written only by that CPU, with interrupts off.
struct Held {
    count: AtomicUsize,
    irq_on: AtomicBool,
}

static HELD: PerCpu<Held> = percpu::per_cpu!(Held {
    count: AtomicUsize::new(0),
    irq_on: AtomicBool::new(false),
});

fn held() -> &'static Held {
    HELD.remote(arch::cpu::id())
}

/// Whether this CPU holds a VM lock (the timer tick asks, interrupts off:
/// no preemption then).
pub fn holding() -> bool {
    held().count.load(Ordering::Relaxed) != 0
}

/// Whether code running with interrupts off under this CPU's VM locks may
/// open interrupt windows: the outermost lock was taken with interrupts on.
/// `irq_was_on`: the caller's own saved flag, for a caller holding none.
pub fn may_enable_interrupts(irq_was_on: bool) -> bool {
    let h = held();
    if h.count.load(Ordering::Relaxed) == 0 {
        irq_was_on
    } else {
        h.irq_on.load(Ordering::Relaxed)
    }
}

/// A test-and-test-and-set spin lock without data.
struct RawSpin {
    locked: AtomicBool,
}

impl RawSpin {
    const fn new() -> Self {
        RawSpin {
            locked: AtomicBool::new(false),
        }
    }

    fn try_lock(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Spins for `m` while serving TLB requests addressed to this CPU.  Called
/// with interrupts off; returns with them off and `m` held.  When
/// `may_enable` (the caller had interrupts on and holds no other VM lock),
/// each retry opens an interrupt window: a waiter whose holder's vCPU the
/// host descheduled can then take its timer tick (and be preempted in
/// favour of other threads) and its IPIs the ordinary way, instead of
/// spinning blind with interrupts off for milliseconds.
fn acquire(m: &RawSpin, may_enable: bool) {
    // Interrupts are off: the CPU cannot change under the counter update,
    // so it needs no pin (`add_on`; a pin costs more than the lock).
    ACQUIRED.add_on(arch::cpu::id(), 1);
    if m.try_lock() {
        return;
    }
    CONTENDED.add_on(arch::cpu::id(), 1);
    let start = arch::time::now_ns();
    loop {
        if m.try_lock() {
            // Interrupt windows may have moved the thread: read the id now.
            WAIT_NS.add_on(
                arch::cpu::id(),
                arch::time::now_ns().saturating_sub(start) as i64,
            );
            return;
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

/// The lock of one range stripe: interrupts off while held (restored by
/// the CPU's last VM unlock), TLB requests served while waiting, the
/// global lock taken too under `locks=global`.
pub struct RawVmLock {
    spin: RawSpin,
}

impl RawVmLock {
    pub const fn new() -> Self {
        RawVmLock {
            spin: RawSpin::new(),
        }
    }
}

impl ::mm::ranges::RawLock for RawVmLock {
    fn lock(&self) {
        let irq_on = arch::irq::save_disable();
        // The first VM lock of this CPU.  Its waits may open interrupt
        // windows, so the thread may be preempted and resume on another
        // CPU: the per-CPU slot is looked up only once the lock is held
        // (interrupts stay off from then on).  A thread holding no VM lock
        // finds a count of 0 on whichever CPU it resumes (a non-zero count
        // belongs to a running holder, which cannot be preempted).
        let outermost = held().count.load(Ordering::Relaxed) == 0;
        let global = cmdline::lock_mode() == LockMode::Global;
        if global && outermost {
            // Held while this CPU holds any VM lock: a CPU holding several
            // (an operation over several stripes) takes it once.
            acquire(&GLOBAL, irq_on);
        }
        // Holding the global lock or another VM lock: wait with interrupts
        // off (the holder must not be preempted).
        acquire(&self.spin, irq_on && outermost && !global);
        let h = held();
        if outermost {
            h.irq_on.store(irq_on, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
    }

    fn unlock(&self) {
        self.spin.unlock();
        let h = held();
        if h.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            if cmdline::lock_mode() == LockMode::Global {
                GLOBAL.unlock();
            }
            arch::irq::restore(h.irq_on.load(Ordering::Relaxed));
        }
    }
}

/// A `RawVmLock` with data.
pub struct VmLock<T> {
    raw: RawVmLock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard holding `raw`, or
// through `&mut self`.
unsafe impl<T: Send> Sync for VmLock<T> {}

/// Holds a `VmLock`; releases it when dropped.
pub struct VmGuard<'a, T> {
    lock: &'a VmLock<T>,
}

impl<T> VmLock<T> {
    pub const fn new(value: T) -> Self {
        VmLock {
            raw: RawVmLock::new(),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> VmGuard<'_, T> {
        ::mm::ranges::RawLock::lock(&self.raw);
        VmGuard { lock: self }
    }

    /// Direct access when no one else can hold a reference (teardown).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

impl<T> Deref for VmGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for VmGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock; `&mut self` is unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for VmGuard<'_, T> {
    fn drop(&mut self) {
        ::mm::ranges::RawLock::unlock(&self.lock.raw);
    }
}
