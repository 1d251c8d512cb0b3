//! Readiness tracking: which armed sockets of a client changed, and the
//! client's notification bit.
//!
//! Owns `ClientState` (one per client generation: the reports waiting for
//! `PollChanged`, sharded per server thread, and whether the client has
//! been signalled since it last collected) and `Watch` (one per socket:
//! its handle and the bits it is armed for).
//!
//! Protocol: `Poll { arm }` ORs bits into the watch *before* reading the
//! socket's events.  `net` calls `notify` whenever the socket's readiness
//! may have changed; `Watch::fire` takes the armed bits (disarming: one
//! report per arming, so a client's pending reports are bounded by its
//! handles) and queues `(handle, bits)` on the client.  The first report
//! after the client collected raises its notification bit once.
//! `ClientState::take` clears that flag *before* draining, so a report
//! queued during or after a collection signals again: no lost wakeup.
//!
//! Sharing (why not per-CPU): a socket's readiness changes on whichever
//! server thread runs the peer's operation or the timer, so reports cross
//! threads; they go to the reporting thread's shard of the client (one
//! short mutex per push), and only `PollChanged` visits every shard.
//!
//! Must not: call into `net` or block (`fire` runs inside `net`'s notify,
//! with no `net` lock held but on the hot path of every socket operation).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use netproto::Handle;
use percpu::CachePadded;

use crate::platform::worker;
use crate::Signal;

/// Reports `(handle, armed bits)` queued by one server thread.
type Reports = Mutex<Vec<(Handle, u32)>>;

/// One client generation's readiness state.
pub struct ClientState {
    id: u64,
    bit: u64,
    signal: Arc<dyn Signal>,
    /// Signalled and not yet collected.
    pending: AtomicBool,
    /// Reports `(handle, armed bits)`, one shard per server thread.
    shards: Box<[CachePadded<Reports>]>,
}

impl ClientState {
    pub fn new(id: u64, bit: u64, signal: Arc<dyn Signal>, shards: usize) -> ClientState {
        ClientState {
            id,
            bit,
            signal,
            pending: AtomicBool::new(false),
            shards: (0..shards.max(1))
                .map(|_| CachePadded::new(Mutex::new(Vec::new())))
                .collect(),
        }
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Vec<(Handle, u32)>> {
        // Every update is one push or drain: a poisoned lock is still whole.
        self.shards[i % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a report and signals the client if it has collected since
    /// the last signal.
    pub fn push(&self, h: Handle, bits: u32) {
        self.shard(worker()).push((h, bits));
        if !self.pending.swap(true, Ordering::SeqCst) {
            self.signal.signal(self.id, self.bit);
        }
    }

    /// Every queued report (the flag is cleared first: see the module doc).
    pub fn take(&self) -> Vec<(Handle, u32)> {
        self.pending.store(false, Ordering::SeqCst);
        let mut all = Vec::new();
        for i in 0..self.shards.len() {
            all.append(&mut self.shard(i));
        }
        all
    }

    /// Puts back reports a reply had no room for (the reply says "more",
    /// so no new signal is needed for them).
    pub fn put_back(&self, rest: impl IntoIterator<Item = (Handle, u32)>) {
        self.shard(worker()).extend(rest);
    }

    /// Reports waiting (tests, diagnostics).
    pub fn queued(&self) -> usize {
        (0..self.shards.len()).map(|i| self.shard(i).len()).sum()
    }
}

/// One socket's watch.
pub struct Watch {
    client: Arc<ClientState>,
    /// The socket's handle (0 until it has one).
    handle: AtomicU64,
    armed: AtomicU32,
}

impl Watch {
    pub fn new(client: Arc<ClientState>) -> Watch {
        Watch {
            client,
            handle: AtomicU64::new(0),
            armed: AtomicU32::new(0),
        }
    }

    pub fn set_handle(&self, h: Handle) {
        self.handle.store(h.0, Ordering::Release);
    }

    /// Adds `bits` to the armed set; returns the armed set after.
    pub fn arm(&self, bits: u32) -> u32 {
        self.armed.fetch_or(bits, Ordering::SeqCst) | bits
    }

    /// Disarms; returns the bits that were armed.
    pub fn disarm(&self) -> u32 {
        self.armed.swap(0, Ordering::SeqCst)
    }

    /// The socket's readiness may have changed: report it once if armed.
    pub fn fire(&self) {
        let h = self.handle.load(Ordering::Acquire);
        if h == 0 {
            return;
        }
        let bits = self.disarm();
        if bits != 0 {
            self.client.push(Handle(h), bits);
        }
    }
}
