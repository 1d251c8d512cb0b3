//! Readiness waiting: the object every pollable thing (pipe, socket, epoll
//! instance) owns, through which a thread waiting on *many* objects (poll,
//! select, epoll) is woken by any of them without polling tick by tick.
//!
//! Owns: `PollWaiters`, one per pollable object: a `WaitQueue` for threads
//! blocked on this object alone (a blocking read or write) plus a list of
//! *subscribers* (weak references to `PollSubscriber`s: a poll/select call
//! in progress, an epoll interest entry).  `PollWaker` is the subscriber a
//! poll/select/epoll_wait call blocks on.
//!
//! Protocol (no lost wakeups):
//! * a state change is published first (under the object's own lock, or by
//!   any store), then the object calls `notify()` with no object lock held;
//! * `notify()` wakes every thread on the object's queue and calls
//!   `on_notify()` of every live subscriber;
//! * a multi-object waiter subscribes to every object *before* it checks
//!   readiness, and reads its waker's sequence number before the check;
//!   it sleeps only while the sequence number is unchanged (checked under
//!   the waker queue's lock, see `WaitQueue`).  A notify that runs after the
//!   check bumps the sequence number (and wakes the queue), so the sleeper
//!   either sees the bump or is already on the queue when woken.
//! * single-object waiters use `wait_until` with their condition, exactly as
//!   `WaitQueue::wait_until` documents.
//!
//! `notify()` may be called from thread context with interrupts on or off
//! (it only takes interrupt-safe spin locks and calls `sched::wake`), but
//! not from inside a wait condition and not while holding a lock that a
//! subscriber's `on_notify` takes (epoll entries notify their epoll's own
//! `PollWaiters`; nesting is limited so that this order has no cycle).
//!
//! Must not: block, allocate in `notify` (dead subscribers are pruned in
//! place), or call a subscriber with the queue lock held.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sched::{IrqSpinLock, WaitQueue};

/// Something that wants to hear of readiness changes of several objects.
pub trait PollSubscriber: Send + Sync {
    /// Called by `PollWaiters::notify` after the object's state changed.
    /// Must be short and must not block.
    fn on_notify(&self);
}

/// The readiness-change fan-out of one pollable object.
pub struct PollWaiters {
    /// Threads blocked on this object alone.
    queue: WaitQueue,
    /// Multi-object waiters subscribed to this object.
    subscribers: IrqSpinLock<Vec<Weak<dyn PollSubscriber>>>,
    /// `subscribers.len()`, read without the lock so `notify` skips the
    /// lock in the common case of no subscriber.
    subscriber_count: AtomicUsize,
}

impl Default for PollWaiters {
    fn default() -> Self {
        Self::new()
    }
}

impl PollWaiters {
    pub const fn new() -> Self {
        Self {
            queue: WaitQueue::new(),
            subscribers: IrqSpinLock::new(Vec::new()),
            subscriber_count: AtomicUsize::new(0),
        }
    }

    /// Wakes everything waiting on this object (after a state change).
    pub fn notify(&self) {
        self.queue.wake_all();
        // SeqCst pairs with the SeqCst store in `subscribe`: a subscriber
        // added before this object's state change is seen here.
        if self.subscriber_count.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut subs = self.subscribers.lock();
        subs.retain(|weak| match weak.upgrade() {
            Some(sub) => {
                sub.on_notify();
                true
            }
            None => false,
        });
        self.subscriber_count.store(subs.len(), Ordering::SeqCst);
    }

    /// Blocks the caller until `condition()` holds (or the deadline, absolute
    /// ns, passes).  Returns whether the condition held.  See `WaitQueue`.
    pub fn wait_until_deadline(
        &self,
        condition: impl FnMut() -> bool,
        deadline_ns: Option<u64>,
    ) -> bool {
        self.queue.wait_until_deadline(condition, deadline_ns)
    }

    /// Adds a subscriber; it hears every later `notify`.
    pub fn subscribe(&self, sub: Weak<dyn PollSubscriber>) {
        let mut subs = self.subscribers.lock();
        subs.push(sub);
        self.subscriber_count.store(subs.len(), Ordering::SeqCst);
    }

    /// Removes a subscriber (by identity) and any dead ones.
    pub fn unsubscribe(&self, sub: &Weak<dyn PollSubscriber>) {
        let mut subs = self.subscribers.lock();
        subs.retain(|w| !Weak::ptr_eq(w, sub) && w.strong_count() > 0);
        self.subscriber_count.store(subs.len(), Ordering::SeqCst);
    }

    /// Number of live subscribers (tests and diagnostics).
    #[allow(dead_code)]
    pub fn subscriber_count(&self) -> usize {
        self.subscriber_count.load(Ordering::Relaxed)
    }
}

/// What a poll/select/epoll_wait call blocks on: any subscribed object's
/// `notify` bumps `sequence` and wakes `queue`.
#[derive(Default)]
pub struct PollWaker {
    sequence: AtomicU64,
    queue: WaitQueue,
}

impl PollSubscriber for PollWaker {
    fn on_notify(&self) {
        self.sequence.fetch_add(1, Ordering::SeqCst);
        self.queue.wake_all();
    }
}

impl PollWaker {
    pub fn new() -> Arc<PollWaker> {
        Arc::new(PollWaker::default())
    }

    /// The value to pass to `wait_change`, read *before* checking readiness.
    pub fn sequence(&self) -> u64 {
        self.sequence.load(Ordering::SeqCst)
    }

    /// Sleeps until some subscribed object notifies after `seen` was read,
    /// a signal is pending, or the deadline passes.  Returns false on
    /// timeout.
    pub fn wait_change(&self, seen: u64, deadline_ns: Option<u64>) -> bool {
        self.queue.wait_until_deadline(
            || self.sequence.load(Ordering::SeqCst) != seen || crate::proc::signal_pending(),
            deadline_ns,
        )
    }

    /// This waker as a subscriber handle for `PollWaiters::subscribe`.
    pub fn as_subscriber(self: &Arc<Self>) -> Weak<dyn PollSubscriber> {
        let weak: Weak<PollWaker> = Arc::downgrade(self);
        weak
    }
}
