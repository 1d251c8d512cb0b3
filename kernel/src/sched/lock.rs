//! `IrqSpinLock`: a spin lock that keeps interrupts off on this CPU while held.
//!
//! Owns: nothing but the lock word (a `spin::Mutex`) and the saved interrupt
//! flag of the holder.
//!
//! Why interrupts are disabled: every scheduler lock (run queues, wait
//! queues) is also taken from the timer interrupt and the reschedule IPI.  If
//! a thread held one of them with interrupts on, the interrupt handler on the
//! same CPU could spin forever on a lock its own CPU holds.
//!
//! Invariants: the guard restores exactly the interrupt state seen by
//! `lock()`, so nesting works (the inner guard restores "disabled").  A
//! holder must never switch threads while holding a guard.
//!
//! Must not: be held across `switch_context`, nor be taken in a different
//! order than documented in `sched/mod.rs` (lock order section).

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::arch;

/// A spin lock whose guard disables interrupts on the holding CPU.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

/// Guard of an [`IrqSpinLock`]; releases the lock, then restores the
/// interrupt flag that was in effect before `lock()`.
///
/// The inner guard is a `ManuallyDrop` (not an `Option`, as before) so that
/// `drop` can release the lock before restoring the flag without a check on
/// every access: these locks sit on the IPC fastpath, about ten per round
/// trip.
pub struct IrqSpinGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    interrupts_were_enabled: bool,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// Disables interrupts on this CPU, then spins until the lock is ours.
    #[inline]
    pub fn lock(&self) -> IrqSpinGuard<'_, T> {
        let interrupts_were_enabled = arch::irq::save_disable();
        let guard = self.inner.lock();
        IrqSpinGuard {
            guard: ManuallyDrop::new(guard),
            interrupts_were_enabled,
        }
    }
}

impl<T> Deref for IrqSpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqSpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release first: an interrupt arriving right after `restore` may
        // want the same lock.
        // SAFETY: the inner guard is dropped exactly once, here, and never
        // used afterwards (this is the outer guard's drop).
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        arch::irq::restore(self.interrupts_were_enabled);
    }
}
