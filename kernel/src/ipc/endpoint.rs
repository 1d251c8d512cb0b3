//! Endpoints: synchronous call / receive / reply between threads, with the
//! direct hand-off fastpath.
//!
//! Owns: the `Endpoint` (its queue of callers waiting to be received and
//! of receivers waiting for a caller, and its count of receive rights),
//! the per-thread `Waiter` record (one per thread, reused for every call
//! and receive), the message and the `ReplyCap` (the one right to answer
//! one call).
//!
//! Protocol.  A caller numbers its call (`seq`), then under the endpoint
//! lock either hands the message to a waiting receiver (phase
//! `AwaitReply`, and it switches straight to that receiver:
//! `sched::wait_once` with a hand-off) or queues itself (`Queued`).  A
//! receiver takes a queued caller or queues itself (`Receiving`) until a
//! caller fills its `incoming` (`Got`).  The receiver gets a `ReplyCap`
//! naming (caller, seq); `ReplyCap::complete` stores the reply if the
//! caller still waits for *that* call (`AwaitReply` with the same `seq`),
//! sets `Done` and wakes it (or the replier hands off to it).  A caller
//! interrupted by a signal cancels: it leaves the queue or bumps its `seq`
//! so that a late reply finds nothing to complete.  A `ReplyCap` dropped
//! unused (server exited, token closed) completes its call with `EPIPE`;
//! the last receive right going away fails every queued caller with
//! `EPIPE`.
//!
//! Messages move, they are not shared: the request (label, four words,
//! payload bytes) moves from caller to receiver and the reply back, so no
//! two threads ever touch one buffer and no lock is held while user
//! memory is copied (the system-call layer copies before and after).
//!
//! Lock order: endpoint lock, then a `Waiter`'s lock; a `Waiter` lock is a
//! leaf.  No lock is held across `wait_once` (a switch).  Per-core: the
//! only shared state on a call is the endpoint's own lock and the two
//! threads' records; there is no global lock.
//!
//! Must not: block while holding a lock, panic on anything a user can
//! cause, or deliver a reply to a call other than the one it answers.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::sched::{self, IrqSpinLock, Thread};
use abi::Errno;

/// A message: a label, four words, and a payload of bytes.
#[derive(Default)]
pub struct Message {
    pub label: u64,
    pub words: [u64; 4],
    pub bytes: Vec<u8>,
}

/// A request as the receiver gets it.
pub struct Request {
    pub msg: Message,
    /// The badge of the handle the caller called through.
    pub badge: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Phase {
    Idle,
    /// On an endpoint's caller queue, message in `request`.
    Queued,
    /// A receiver has the message; waiting for its reply.
    AwaitReply,
    /// `reply` holds the answer.
    Done,
    /// On an endpoint's receiver queue.
    Receiving,
    /// `incoming` holds a call.
    Got,
}

struct WaiterState {
    /// Number of the caller's current call (replies name it).
    seq: u64,
    request: Option<Request>,
    /// Most reply bytes the current call accepts.
    reply_cap: usize,
    reply: Option<Result<Message, Errno>>,
    incoming: Option<(Request, ReplyCap)>,
}

/// A thread's IPC record (one per thread, reused).  It names its thread
/// weakly: the task keeps its record, and the thread keeps the task.
///
/// The phase lives beside the lock: it is written only with `st` held, so
/// the waiting thread polls it without the lock and takes the lock once,
/// to collect what the phase says is there.  Both sides are SeqCst: the
/// phase is the condition of `sched::wait_once`'s Dekker handshake (the
/// waiter stores its thread state then loads the phase; the waker stores
/// the phase then loads the thread state).
pub struct Waiter {
    thread: Weak<Thread>,
    phase: AtomicU8,
    st: IrqSpinLock<WaiterState>,
}

impl Waiter {
    pub fn new(thread: &Arc<Thread>) -> Arc<Waiter> {
        Arc::new(Waiter {
            thread: Arc::downgrade(thread),
            phase: AtomicU8::new(Phase::Idle as u8),
            st: IrqSpinLock::new(WaiterState {
                seq: 0,
                request: None,
                reply_cap: 0,
                reply: None,
                incoming: None,
            }),
        })
    }

    /// Whether the phase is `phase` (no lock: see the type's doc).
    fn phase_is(&self, phase: Phase) -> bool {
        self.phase.load(Ordering::SeqCst) == phase as u8
    }

    /// Sets the phase; only with `st` held (the guard proves it).
    fn set_phase(&self, _held: &WaiterState, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }
}

/// The right to answer one call (moved into the receiver's handle table
/// as a reply token).  Dropped unused, it answers `EPIPE`.
pub struct ReplyCap {
    caller: Option<Arc<Waiter>>,
    seq: u64,
    reply_cap: usize,
}

impl ReplyCap {
    /// Most reply bytes the caller accepts.
    pub fn reply_capacity(&self) -> usize {
        self.reply_cap
    }

    /// Answers the call.  Returns the caller's thread when the answer was
    /// delivered (the caller was still waiting for this call), for a
    /// hand-off; `None` when the caller gave up (signal) meanwhile.
    pub fn complete(mut self, result: Result<Message, Errno>) -> Option<Arc<Thread>> {
        let caller = self.caller.take()?;
        let delivered = {
            let mut st = caller.st.lock();
            if st.seq == self.seq && caller.phase_is(Phase::AwaitReply) {
                st.reply = Some(result);
                caller.set_phase(&st, Phase::Done);
                true
            } else {
                false
            }
        };
        if delivered {
            caller.thread.upgrade()
        } else {
            None
        }
    }
}

impl Drop for ReplyCap {
    fn drop(&mut self) {
        if self.caller.is_some() {
            let me = ReplyCap {
                caller: self.caller.take(),
                seq: self.seq,
                reply_cap: self.reply_cap,
            };
            if let Some(thread) = me.complete(Err(Errno::EPIPE)) {
                sched::wake_thread(&thread);
            }
        }
    }
}

struct EpInner {
    callers: VecDeque<Arc<Waiter>>,
    receivers: VecDeque<Arc<Waiter>>,
    /// Handles with the receive right; 0 = nobody will ever answer.
    recv_rights: usize,
}

/// An endpoint.
pub struct Endpoint {
    inner: IrqSpinLock<EpInner>,
}

/// Fails a queued caller (under the endpoint lock); returns its thread to
/// wake once the lock is dropped.
fn fail_queued(caller: &Arc<Waiter>, err: Errno) -> Option<Arc<Thread>> {
    let mut st = caller.st.lock();
    if !caller.phase_is(Phase::Queued) {
        return None;
    }
    st.request = None;
    st.reply = Some(Err(err));
    caller.set_phase(&st, Phase::Done);
    drop(st);
    caller.thread.upgrade()
}

impl Endpoint {
    pub fn new() -> Arc<Endpoint> {
        Arc::new(Endpoint {
            inner: IrqSpinLock::new(EpInner {
                callers: VecDeque::new(),
                receivers: VecDeque::new(),
                recv_rights: 0,
            }),
        })
    }

    /// A handle with the receive right appeared.
    pub fn add_recv_right(&self) {
        self.inner.lock().recv_rights += 1;
    }

    /// A handle with the receive right went away; the last one fails
    /// every queued caller with `EPIPE`.
    pub fn drop_recv_right(&self) {
        let failed: Vec<Arc<Thread>> = {
            let mut g = self.inner.lock();
            g.recv_rights = g.recv_rights.saturating_sub(1);
            if g.recv_rights != 0 {
                return;
            }
            let callers = core::mem::take(&mut g.callers);
            callers
                .iter()
                .filter_map(|c| fail_queued(c, Errno::EPIPE))
                .collect()
        };
        for t in failed {
            sched::wake_thread(&t);
        }
    }

    /// Whether some handle can still receive here.
    pub fn alive(&self) -> bool {
        self.inner.lock().recv_rights != 0
    }

    /// Calls: sends `msg` (badge `badge`) and waits for the reply, which
    /// may carry at most `reply_cap` bytes.  `EPIPE` when nobody can
    /// receive or the receiver went away, `EINTR` when a signal came
    /// first (`interrupted` says so).
    pub fn call(
        &self,
        me: &Arc<Waiter>,
        msg: Message,
        badge: u64,
        reply_cap: usize,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Message, Errno> {
        let request = Request { msg, badge };
        // A blocked thread lives by the references others hold to it; our
        // queues hold the `Waiter`, which names its thread weakly, so the
        // waiting thread keeps itself alive until it returns.
        let _alive = me.thread.upgrade().ok_or(Errno::ESRCH)?;
        let hand_off = {
            let mut g = self.inner.lock();
            if g.recv_rights == 0 {
                return Err(Errno::EPIPE);
            }
            let mut st = me.st.lock();
            st.seq = st.seq.wrapping_add(1);
            st.reply = None;
            st.reply_cap = reply_cap;
            let seq = st.seq;
            match g.receivers.pop_front() {
                Some(receiver) => {
                    me.set_phase(&st, Phase::AwaitReply);
                    drop(st);
                    let cap = ReplyCap {
                        caller: Some(me.clone()),
                        seq,
                        reply_cap,
                    };
                    let mut rs = receiver.st.lock();
                    rs.incoming = Some((request, cap));
                    receiver.set_phase(&rs, Phase::Got);
                    drop(rs);
                    receiver.thread.upgrade()
                }
                None => {
                    me.set_phase(&st, Phase::Queued);
                    st.request = Some(request);
                    drop(st);
                    g.callers.push_back(me.clone());
                    None
                }
            }
        };
        let mut hand_off = hand_off;
        loop {
            if sched::wait_once(&|| me.phase_is(Phase::Done), hand_off.take()) {
                break;
            }
            if me.phase_is(Phase::Done) {
                break;
            }
            if interrupted() && self.cancel_call(me) {
                return Err(Errno::EINTR);
            }
        }
        let mut st = me.st.lock();
        me.set_phase(&st, Phase::Idle);
        st.reply.take().unwrap_or(Err(Errno::EIO))
    }

    /// A signal ended the wait of `me`'s call: leaves the queue, or makes
    /// any later reply stale.  False when the reply is already there
    /// (then the caller takes it).
    fn cancel_call(&self, me: &Arc<Waiter>) -> bool {
        let mut g = self.inner.lock();
        let mut st = me.st.lock();
        if me.phase_is(Phase::Done) {
            return false;
        }
        if me.phase_is(Phase::Queued) {
            g.callers.retain(|c| !Arc::ptr_eq(c, me));
            st.request = None;
        }
        me.set_phase(&st, Phase::Idle);
        st.seq = st.seq.wrapping_add(1);
        true
    }

    /// Receives the next call; `hand_off` (a caller just replied to) is
    /// woken in every case, and switched to directly if this thread must
    /// wait.  `EINTR` when a signal came first.
    pub fn receive(
        &self,
        me: &Arc<Waiter>,
        hand_off: Option<Arc<Thread>>,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(Request, ReplyCap), Errno> {
        let mut hand_off = hand_off;
        // As in `call`: the waiting thread keeps itself alive.
        let Some(_alive) = me.thread.upgrade() else {
            if let Some(t) = hand_off {
                sched::wake_thread(&t);
            }
            return Err(Errno::ESRCH);
        };
        {
            let mut g = self.inner.lock();
            if let Some(caller) = g.callers.pop_front() {
                let mut cs = caller.st.lock();
                let request = cs.request.take();
                let seq = cs.seq;
                let reply_cap = cs.reply_cap;
                caller.set_phase(&cs, Phase::AwaitReply);
                drop(cs);
                drop(g);
                if let Some(t) = hand_off.take() {
                    sched::wake_thread(&t);
                }
                let cap = ReplyCap {
                    caller: Some(caller),
                    seq,
                    reply_cap,
                };
                // A queued caller always has its request (set with Queued
                // under this lock); if not, answer it rather than panic.
                let Some(request) = request else {
                    drop(cap.complete(Err(Errno::EIO)));
                    return Err(Errno::EAGAIN);
                };
                return Ok((request, cap));
            }
            let mut st = me.st.lock();
            me.set_phase(&st, Phase::Receiving);
            st.incoming = None;
            drop(st);
            g.receivers.push_back(me.clone());
        }
        loop {
            if sched::wait_once(&|| me.phase_is(Phase::Got), hand_off.take()) {
                break;
            }
            if me.phase_is(Phase::Got) {
                break;
            }
            if interrupted() {
                let mut g = self.inner.lock();
                let st = me.st.lock();
                if !me.phase_is(Phase::Got) {
                    g.receivers.retain(|r| !Arc::ptr_eq(r, me));
                    me.set_phase(&st, Phase::Idle);
                    return Err(Errno::EINTR);
                }
            }
        }
        let mut st = me.st.lock();
        me.set_phase(&st, Phase::Idle);
        st.incoming.take().ok_or(Errno::EIO)
    }
}
