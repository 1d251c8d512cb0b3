//! Readiness tracking: which armed sockets of a client changed, and the
//! client's notification bit.
//!
//! Owns `ClientState` (one per client generation: the reports waiting for
//! `PollChanged`, sharded per server thread, and per shard whether the
//! client has been signalled since it last collected that shard) and
//! `Watch` (one per socket: its handle, the bits it is armed for and the
//! shard its report goes to).
//!
//! Protocol: `Poll { arm }` ORs bits into the watch *before* reading the
//! socket's events.  `net` calls `notify` whenever the socket's readiness
//! may have changed; `Watch::fire` takes the armed bits (disarming: one
//! report per arming, so a client's pending reports are bounded by its
//! handles) and queues `(handle, bits)` on the client, in the shard of
//! the server thread that armed it (with per-core placement: the CPU of
//! the thread that waits).  The first report of a shard after the client
//! collected it raises the shard's signal once (`Signal::signal_shard`:
//! the shard's own notification if the client named one with
//! `NotifyShard`, else the client's).  `ClientState::take` clears that
//! flag *before* draining, so a report queued during or after a
//! collection signals again: no lost wakeup.
//!
//! Sharing (why not per-CPU): a socket's readiness changes on whichever
//! server thread runs the peer's operation or the timer, so reports cross
//! threads (one short mutex per push into the arming thread's shard); a
//! client that collects per shard (one collector per CPU) then takes only
//! its own CPU's reports, and `PollChanged` without a shard visits all.
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
    /// Per shard: signalled and not yet collected.
    pending: Box<[CachePadded<AtomicBool>]>,
    /// Reports `(handle, armed bits)`, one shard per server thread.
    shards: Box<[CachePadded<Reports>]>,
}

impl ClientState {
    pub fn new(id: u64, bit: u64, signal: Arc<dyn Signal>, shards: usize) -> ClientState {
        ClientState {
            id,
            bit,
            signal,
            pending: (0..shards.max(1))
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
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

    /// The shards reports are kept in.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Queues a report in `shard` and signals the client if it has
    /// collected that shard since its last signal.
    pub fn push(&self, shard: usize, h: Handle, bits: u32) {
        let shard = shard % self.shards.len();
        self.shard(shard).push((h, bits));
        if !self.pending[shard].swap(true, Ordering::SeqCst) {
            self.signal.signal_shard(self.id, shard, self.bit);
        }
    }

    /// Every queued report of `shard` (`None`: of every shard); the flags
    /// are cleared first (see the module doc).
    pub fn take(&self, shard: Option<usize>) -> Vec<(Handle, u32)> {
        let range = match shard {
            Some(s) => s % self.shards.len()..s % self.shards.len() + 1,
            None => 0..self.shards.len(),
        };
        for i in range.clone() {
            self.pending[i].store(false, Ordering::SeqCst);
        }
        let mut all = Vec::new();
        for i in range {
            all.append(&mut self.shard(i));
        }
        all
    }

    /// Puts back reports of `shard` a reply had no room for (the reply
    /// says "more", so no new signal is needed for them).
    pub fn put_back(&self, shard: usize, rest: impl IntoIterator<Item = (Handle, u32)>) {
        self.shard(shard).extend(rest);
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
    /// The shard of the last arming (where the report goes).
    shard: AtomicU32,
}

impl Watch {
    pub fn new(client: Arc<ClientState>) -> Watch {
        Watch {
            client,
            handle: AtomicU64::new(0),
            armed: AtomicU32::new(0),
            shard: AtomicU32::new(0),
        }
    }

    pub fn set_handle(&self, h: Handle) {
        self.handle.store(h.0, Ordering::Release);
    }

    /// Adds `bits` to the armed set, reporting to `shard`; returns the
    /// armed set after.  (The shard is stored first: a report fired by
    /// the new bits goes to it.)
    pub fn arm(&self, bits: u32, shard: usize) -> u32 {
        self.shard.store(shard as u32, Ordering::SeqCst);
        self.armed.fetch_or(bits, Ordering::SeqCst) | bits
    }

    /// Arms `bits` for the calling server thread's shard.
    pub fn arm_here(&self, bits: u32) -> u32 {
        self.arm(bits, worker())
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
            let shard = self.shard.load(Ordering::SeqCst) as usize;
            self.client.push(shard, Handle(h), bits);
        }
    }
}
