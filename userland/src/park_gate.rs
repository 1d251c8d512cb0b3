//! The parking gate of a server hand-over with several serving threads
//! (fsd and netd under `placement=percore`, the kernel's `LABEL_PARK`
//! requests, docs/SERVERS.md "Replacing the file server").
//!
//! Owns: the count of serving threads still receiving on the endpoint and
//! the gate generation parked threads wait on.
//!
//! Invariants: at least one thread stays receiving (the last one refuses to
//! park and takes the hand-over); a parked thread holds no lock of its
//! server while it waits, and counts itself receiving again before it
//! serves.  Must not: allocate while parking (netd's parked threads must
//! not touch its arena) or block the thread that opens the gate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::ipc;

/// One server's gate (a `static` in the server binary).
pub struct ParkGate {
    /// Serving threads receiving on the endpoint (not parked).
    receiving: AtomicUsize,
    /// The gate's generation: a parked thread waits until it changes.
    generation: Mutex<u64>,
    opened: Condvar,
}

impl ParkGate {
    /// A gate with one receiving thread.
    pub const fn new() -> Self {
        Self {
            receiving: AtomicUsize::new(1),
            generation: Mutex::new(0),
            opened: Condvar::new(),
        }
    }

    /// Serving threads receiving now.
    pub fn receiving(&self) -> usize {
        self.receiving.load(Ordering::SeqCst)
    }

    /// Sets the number of serving threads (at start-up, before any parks).
    pub fn set_receiving(&self, threads: usize) {
        self.receiving.store(threads, Ordering::SeqCst);
    }

    /// The kernel's park request `token` on this thread.  The last thread
    /// receiving does not park: `false`, and the caller answers w0 = 1 and
    /// serves on.  Any other answers the kernel (w0: threads still
    /// receiving), waits until `unpark`, counts itself receiving again and
    /// returns `true` (the request is answered).
    pub fn park(&self, token: u64) -> bool {
        let parked = self
            .receiving
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then_some(n - 1)
            })
            .is_ok();
        if !parked {
            return false;
        }
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        let mine = *generation;
        let left = self.receiving() as u64;
        let _ = ipc::reply(token, 0, [left, 0, 0, 0], &[]);
        while *generation == mine {
            generation = self
                .opened
                .wait(generation)
                .unwrap_or_else(|p| p.into_inner());
        }
        drop(generation);
        self.receiving.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Opens the gate: every parked thread serves again.
    pub fn unpark(&self) {
        let mut generation = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        *generation += 1;
        self.opened.notify_all();
    }
}

impl Default for ParkGate {
    fn default() -> Self {
        Self::new()
    }
}
