//! Wait queues: block a thread until a condition holds, wake it from any CPU.
//!
//! Owns: the list of threads blocked on one condition.
//!
//! No lost wakeups: `wait_until` evaluates the condition *under the queue
//! lock* and enqueues itself before releasing it; a waker first makes the
//! condition true (any store sequenced before its call) and then takes the
//! same lock to pick waiters.  Either the waiter's check runs after the
//! waker's critical section (and sees the new value, since the waker's store
//! precedes its unlock), or the waiter is already on the queue when the waker
//! looks.
//!
//! A waiter that is woken while still on its CPU (between the unlock and its
//! switch) is handled by the BLOCKING/WOKEN protocol of `thread::state`, so
//! that wakeup is not lost either.
//!
//! Must not: call the condition without the lock, or switch threads while
//! holding the lock.  The condition runs with interrupts off and the queue
//! lock held: it must be short and must not block or wait on this queue.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::thread::{state, Thread};
use crate::arch;

/// A queue of threads waiting for some condition.
pub struct WaitQueue {
    waiters: spin::Mutex<VecDeque<Arc<Thread>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self {
            waiters: spin::Mutex::new(VecDeque::new()),
        }
    }

    /// Blocks the calling thread until `condition()` returns true.  Returns
    /// at once if it already holds.  Spurious wakeups are absorbed (the
    /// condition is re-checked under the lock each time).
    pub fn wait_until(&self, condition: impl FnMut() -> bool) {
        self.wait_until_deadline(condition, None);
    }

    /// Like `wait_until`, but gives up once `arch::time::now_ns()` reaches
    /// `deadline_ns` (tick resolution).  Returns whether the condition held.
    ///
    /// A thread kicked by `sched::wake_thread` while it waits (a signal, a
    /// timer) re-checks the condition and waits again; it is on the queue at
    /// most once, and leaves it when it returns, so a later `wake_one`
    /// never spends itself on a thread that stopped waiting.
    pub fn wait_until_deadline(
        &self,
        mut condition: impl FnMut() -> bool,
        deadline_ns: Option<u64>,
    ) -> bool {
        let mut me: Option<Arc<Thread>> = None;
        loop {
            // Interrupts stay off from the check to the switch: a timer
            // preemption in between would turn BLOCKING back into READY.
            let interrupts_were_enabled = arch::irq::save_disable();
            let mut waiters = self.waiters.lock();
            let done = condition();
            let timed_out = !done && deadline_ns.is_some_and(|d| arch::time::now_ns() >= d);
            if done || timed_out {
                if let Some(me) = &me {
                    waiters.retain(|t| !Arc::ptr_eq(t, me));
                }
                drop(waiters);
                arch::irq::restore(interrupts_were_enabled);
                return done;
            }
            assert!(
                interrupts_were_enabled,
                "WaitQueue::wait_until with interrupts disabled (a spin lock held?): it would sleep holding it"
            );
            let thread = me
                .get_or_insert_with(super::scheduler::current_thread)
                .clone();
            assert!(
                !thread.is_idle(),
                "the idle thread must never block (wait queue used from idle/interrupt context)"
            );
            thread.state.store(state::BLOCKING, Ordering::SeqCst);
            if !waiters.iter().any(|t| Arc::ptr_eq(t, &thread)) {
                waiters.push_back(thread.clone());
            }
            drop(waiters);
            if let Some(deadline) = deadline_ns {
                super::scheduler::arm_wakeup(deadline, thread);
            } else {
                drop(thread);
            }
            super::scheduler::block_current();
            arch::irq::restore(interrupts_were_enabled);
        }
    }

    /// Wakes the longest-waiting thread, if any.  Returns whether one was woken.
    pub fn wake_one(&self) -> bool {
        let thread = {
            let saved = arch::irq::save_disable();
            let thread = self.waiters.lock().pop_front();
            arch::irq::restore(saved);
            thread
        };
        match thread {
            Some(thread) => {
                super::scheduler::wake(thread);
                true
            }
            None => false,
        }
    }

    /// Wakes every waiting thread; returns how many.
    pub fn wake_all(&self) -> usize {
        let woken = {
            let saved = arch::irq::save_disable();
            let woken = core::mem::take(&mut *self.waiters.lock());
            arch::irq::restore(saved);
            woken
        };
        let count = woken.len();
        for thread in woken {
            super::scheduler::wake(thread);
        }
        count
    }
}
