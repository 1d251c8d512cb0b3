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
//! `EPIPE`, and the callers waiting in the request slots (`ring.rs`).
//!
//! Messages move, they are not shared: the request (label, four words,
//! payload bytes) moves from caller to receiver and the reply back, so no
//! two threads ever touch one buffer and no lock is held while user
//! memory is copied (the system-call layer copies before and after).
//!
//! Per-CPU receivers.  A receiver with nothing to take parks in the
//! receiver queue of the CPU it runs on (`CpuSlot`), and a caller first
//! looks in its own CPU's queue, without the endpoint lock: with one
//! server thread pinned per CPU (`servers.placement=percore`) a call is a
//! same-core hand-off that touches only this CPU's slot and the two
//! threads' records.  Otherwise (no receiver here) the caller takes the
//! endpoint lock, takes a receiver parked on any CPU (its own first), or
//! queues itself on the shared caller queue.  No lost wake-up: a caller
//! that queues publishes the queue length (`queued`, SeqCst) and then
//! looks at every CPU's `parked` count (SeqCst); a receiver parks (slot
//! lock, `parked` store SeqCst) and then loads `queued` (SeqCst).  In the
//! single total order of SeqCst operations one of the two comes second and
//! sees the other: the caller finds the receiver, or the receiver finds
//! the queue non-empty and takes a caller under the endpoint lock.
//!
//! Lock order: endpoint lock, then a CPU slot's lock, then a `Waiter`'s
//! lock; a `Waiter` lock is a leaf.  No lock is held across `wait_once`
//! (a switch).  Per-core: a same-core call touches its CPU's slot and the
//! two threads' records.  The shared state, and why it is not per-CPU:
//! the caller queue and its lock (callers of any CPU wait there for the
//! first free receiver, which is what a server with fewer threads than
//! CPUs needs; only calls that find no receiver on their CPU touch it),
//! and `queued` (read on every receive, written only when the caller
//! queue changes, so it stays a shared read-only line while every CPU has
//! its own receiver).
//!
//! Must not: block while holding a lock, panic on anything a user can
//! cause, or deliver a reply to a call other than the one it answers.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

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
    /// The endpoint (by address) this thread last registered with as a
    /// receiver (`Endpoint::servers`); touched only by its own thread.
    served: AtomicUsize,
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
            served: AtomicUsize::new(0),
        })
    }

    /// Whether the phase is `phase` (no lock: see the type's doc).
    fn phase_is(&self, phase: Phase) -> bool {
        self.phase.load(Ordering::SeqCst) == phase as u8
    }

    /// Whether this waiter's call was handed to a receiver and waits for
    /// the reply (the server may be doing the work: `ipc::kernel_call`
    /// for the file server then gives up only for a fatal signal).
    pub fn awaits_reply(&self) -> bool {
        self.phase_is(Phase::AwaitReply)
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
    /// Handles with the receive right; 0 = nobody will ever answer.
    recv_rights: usize,
}

/// One CPU's part of an endpoint (its own cache line): the receivers
/// parked on that CPU and the statistics of calls made from it.
#[repr(align(64))]
struct CpuSlot {
    receivers: IrqSpinLock<VecDeque<Arc<Waiter>>>,
    /// `receivers.len()`, stored under `receivers`' lock (SeqCst: the
    /// hand-shake with `queued`, see the module doc), read without it.
    parked: AtomicUsize,
    /// Calls made from this CPU, and the nanoseconds they waited for their
    /// reply; kept only while `ipc::migrate` watches (it reads and resets
    /// them each interval).  Written by callers on this CPU.
    calls: AtomicU64,
    waited_ns: AtomicU64,
    /// Calls from this CPU delivered to a receiver parked on this CPU
    /// without the endpoint lock (the same-core fastpath).
    local: AtomicU64,
}

impl CpuSlot {
    fn new() -> CpuSlot {
        CpuSlot {
            receivers: IrqSpinLock::new(VecDeque::new()),
            parked: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            waited_ns: AtomicU64::new(0),
            local: AtomicU64::new(0),
        }
    }

    /// Takes the first receiver parked here, if any.
    fn take(&self) -> Option<Arc<Waiter>> {
        if self.parked.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut q = self.receivers.lock();
        let r = q.pop_front();
        self.parked.store(q.len(), Ordering::SeqCst);
        r
    }

    /// Removes `me` if it is parked here; whether it was.
    fn remove(&self, me: &Arc<Waiter>) -> bool {
        let mut q = self.receivers.lock();
        let before = q.len();
        q.retain(|r| !Arc::ptr_eq(r, me));
        self.parked.store(q.len(), Ordering::SeqCst);
        q.len() != before
    }
}

/// What a CPU's callers did on an endpoint (`Endpoint::cpu_stats`).
#[derive(Clone, Copy, Default, Debug)]
pub struct CpuCallStats {
    pub calls: u64,
    pub waited_ns: u64,
    pub local: u64,
}

/// An endpoint.
pub struct Endpoint {
    inner: IrqSpinLock<EpInner>,
    /// `callers.len()`, stored under `inner`'s lock (SeqCst), read by
    /// receivers without it (module doc).
    queued: AtomicUsize,
    /// One slot per CPU (`percpu::cpu_count()`; a CPU id past the end
    /// wraps, which only costs locality).
    cpus: Box<[CpuSlot]>,
    /// Whether callers time their calls (`ipc::migrate` watches).
    timed: AtomicBool,
    /// The threads that received here (weakly; `ipc::migrate` moves
    /// them).  Written once per thread (its `Waiter::served` remembers).
    servers: IrqSpinLock<Vec<Weak<Thread>>>,
    /// The request slots of a server on a dedicated core, once attached
    /// (`kernel_call` uses them before the synchronous call).
    ring: spin::Once<Arc<super::ring::KernelRing>>,
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
        let n = percpu::cpu_count().max(1);
        Arc::new(Endpoint {
            inner: IrqSpinLock::new(EpInner {
                callers: VecDeque::new(),
                recv_rights: 0,
            }),
            queued: AtomicUsize::new(0),
            cpus: (0..n).map(|_| CpuSlot::new()).collect(),
            timed: AtomicBool::new(false),
            servers: IrqSpinLock::new(Vec::new()),
            ring: spin::Once::new(),
        })
    }

    /// Attaches a dedicated server's request slots (once).
    pub fn attach_ring(&self, ring: Arc<super::ring::KernelRing>) {
        self.ring.call_once(|| ring);
    }

    /// The attached request slots, if any.
    pub fn ring(&self) -> Option<&Arc<super::ring::KernelRing>> {
        self.ring.get()
    }

    /// The slot of CPU `cpu`.
    fn slot(&self, cpu: usize) -> &CpuSlot {
        &self.cpus[cpu % self.cpus.len()]
    }

    /// Takes a receiver parked on any CPU, `cpu`'s first.
    fn take_any_receiver(&self, cpu: usize) -> Option<Arc<Waiter>> {
        let n = self.cpus.len();
        (0..n).find_map(|i| self.slot(cpu + i).take())
    }

    /// Makes callers time their calls (per CPU) for `cpu_stats`.
    pub fn set_timed(&self, on: bool) {
        self.timed.store(on, Ordering::Relaxed);
    }

    /// Per-CPU call statistics; `reset` zeroes the timing (one interval).
    pub fn cpu_stats(&self, reset: bool) -> Vec<CpuCallStats> {
        self.cpus
            .iter()
            .map(|c| {
                let take = |a: &AtomicU64| {
                    if reset {
                        a.swap(0, Ordering::Relaxed)
                    } else {
                        a.load(Ordering::Relaxed)
                    }
                };
                CpuCallStats {
                    calls: take(&c.calls),
                    waited_ns: take(&c.waited_ns),
                    local: c.local.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The threads that have received here and still exist.
    pub fn server_threads(&self) -> Vec<Arc<Thread>> {
        let mut list = self.servers.lock();
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(|w| w.upgrade()).collect()
    }

    /// Remembers `me`'s thread as a server of this endpoint (once).
    fn note_server(&self, me: &Arc<Waiter>) {
        let id = self as *const Endpoint as usize;
        if me.served.load(Ordering::Relaxed) == id {
            return;
        }
        me.served.store(id, Ordering::Relaxed);
        let mut list = self.servers.lock();
        list.retain(|w| w.strong_count() > 0);
        if !list.iter().any(|w| Weak::ptr_eq(w, &me.thread)) {
            list.push(me.thread.clone());
        }
    }

    /// A handle with the receive right appeared.
    pub fn add_recv_right(&self) {
        self.inner.lock().recv_rights += 1;
    }

    /// A handle with the receive right went away; the last one fails
    /// every queued caller with `EPIPE`, and every caller waiting in the
    /// request slots too (`KernelRing::server_gone`: the server that
    /// polled them is dead).
    pub fn drop_recv_right(&self) {
        let failed: Vec<Arc<Thread>> = {
            let mut g = self.inner.lock();
            g.recv_rights = g.recv_rights.saturating_sub(1);
            if g.recv_rights != 0 {
                return;
            }
            let callers = core::mem::take(&mut g.callers);
            self.queued.store(0, Ordering::SeqCst);
            callers
                .iter()
                .filter_map(|c| fail_queued(c, Errno::EPIPE))
                .collect()
        };
        for t in failed {
            sched::wake_thread(&t);
        }
        if let Some(ring) = self.ring.get() {
            ring.server_gone();
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
        let timed = self.timed.load(Ordering::Relaxed);
        let started = if timed {
            crate::arch::time::now_ns()
        } else {
            0
        };
        let cpu = sched::current_cpu();
        // The same-core fastpath: a receiver parked on this CPU, taken
        // without the endpoint lock (a parked receiver holds the receive
        // right, so nobody needs to check `recv_rights`).
        let mut request = Some(request);
        let mut hand_off = match self.slot(cpu).take() {
            Some(receiver) => {
                self.slot(cpu).local.fetch_add(1, Ordering::Relaxed);
                self.deliver(me, &mut request, reply_cap, receiver)
            }
            None => None,
        };
        if request.is_some() {
            let mut g = self.inner.lock();
            if g.recv_rights == 0 {
                return Err(Errno::EPIPE);
            }
            // Announce the call before looking for receivers (module doc).
            self.queued.store(g.callers.len() + 1, Ordering::SeqCst);
            match self.take_any_receiver(cpu) {
                Some(receiver) => {
                    self.queued.store(g.callers.len(), Ordering::SeqCst);
                    drop(g);
                    hand_off = self.deliver(me, &mut request, reply_cap, receiver);
                }
                None => {
                    let mut st = me.st.lock();
                    st.seq = st.seq.wrapping_add(1);
                    st.reply = None;
                    st.reply_cap = reply_cap;
                    me.set_phase(&st, Phase::Queued);
                    st.request = request.take();
                    drop(st);
                    g.callers.push_back(me.clone());
                }
            }
        }
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
        if timed {
            let slot = self.slot(cpu);
            slot.calls.fetch_add(1, Ordering::Relaxed);
            slot.waited_ns.fetch_add(
                crate::arch::time::now_ns().saturating_sub(started),
                Ordering::Relaxed,
            );
        }
        let mut st = me.st.lock();
        me.set_phase(&st, Phase::Idle);
        st.reply.take().unwrap_or(Err(Errno::EIO))
    }

    /// Gives `request` (taken) to `receiver`, which a caller took off a
    /// CPU slot: the caller now waits for the reply.  Returns the
    /// receiver's thread to hand off to.
    fn deliver(
        &self,
        me: &Arc<Waiter>,
        request: &mut Option<Request>,
        reply_cap: usize,
        receiver: Arc<Waiter>,
    ) -> Option<Arc<Thread>> {
        let mut st = me.st.lock();
        st.seq = st.seq.wrapping_add(1);
        st.reply = None;
        st.reply_cap = reply_cap;
        let seq = st.seq;
        me.set_phase(&st, Phase::AwaitReply);
        drop(st);
        let cap = ReplyCap {
            caller: Some(me.clone()),
            seq,
            reply_cap,
        };
        let mut rs = receiver.st.lock();
        rs.incoming = request.take().map(|r| (r, cap));
        receiver.set_phase(&rs, Phase::Got);
        drop(rs);
        receiver.thread.upgrade()
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
            self.queued.store(g.callers.len(), Ordering::SeqCst);
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
        self.note_server(me);
        if self.queued.load(Ordering::SeqCst) != 0 {
            let mut g = self.inner.lock();
            if let Some(caller) = g.callers.pop_front() {
                self.queued.store(g.callers.len(), Ordering::SeqCst);
                drop(g);
                return Self::accept(caller, hand_off);
            }
        }
        // Park in this CPU's slot.
        {
            let mut st = me.st.lock();
            me.set_phase(&st, Phase::Receiving);
            st.incoming = None;
        }
        let cpu = sched::current_cpu();
        {
            let slot = self.slot(cpu);
            let mut q = slot.receivers.lock();
            q.push_back(me.clone());
            slot.parked.store(q.len(), Ordering::SeqCst);
        }
        // A caller that queued before it could see us parked (module doc).
        if self.queued.load(Ordering::SeqCst) != 0 {
            let mut g = self.inner.lock();
            if !g.callers.is_empty() && self.unpark(me, cpu) {
                if let Some(caller) = g.callers.pop_front() {
                    self.queued.store(g.callers.len(), Ordering::SeqCst);
                    drop(g);
                    return Self::accept(caller, hand_off);
                }
            }
        }
        loop {
            if sched::wait_once(&|| me.phase_is(Phase::Got), hand_off.take()) {
                break;
            }
            if me.phase_is(Phase::Got) {
                break;
            }
            // Not in the slot any more: a caller took us and is filling
            // `incoming` (Got follows); keep waiting for it.
            if interrupted() && self.unpark(me, cpu) {
                return Err(Errno::EINTR);
            }
        }
        let mut st = me.st.lock();
        me.set_phase(&st, Phase::Idle);
        st.incoming.take().ok_or(Errno::EIO)
    }

    /// Takes `me` out of CPU `cpu`'s slot where it parked (phase back to
    /// `Idle`); false when a caller took it first.
    fn unpark(&self, me: &Arc<Waiter>, cpu: usize) -> bool {
        if !self.slot(cpu).remove(me) {
            return false;
        }
        let st = me.st.lock();
        me.set_phase(&st, Phase::Idle);
        true
    }

    /// A receiver takes `caller`, just popped from the caller queue
    /// (`hand_off`, the caller it answered last, is woken).
    fn accept(
        caller: Arc<Waiter>,
        hand_off: Option<Arc<Thread>>,
    ) -> Result<(Request, ReplyCap), Errno> {
        let mut cs = caller.st.lock();
        let request = cs.request.take();
        let seq = cs.seq;
        let reply_cap = cs.reply_cap;
        caller.set_phase(&cs, Phase::AwaitReply);
        drop(cs);
        if let Some(t) = hand_off {
            sched::wake_thread(&t);
        }
        let cap = ReplyCap {
            caller: Some(caller),
            seq,
            reply_cap,
        };
        // A queued caller always has its request (set with Queued under
        // the endpoint lock); if not, answer it rather than panic.
        let Some(request) = request else {
            drop(cap.complete(Err(Errno::EIO)));
            return Err(Errno::EAGAIN);
        };
        Ok((request, cap))
    }
}
