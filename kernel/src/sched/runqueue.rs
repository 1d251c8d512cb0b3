//! A run queue: READY threads waiting for a CPU, under one lock.
//!
//! Owns: the FIFO of ready threads and a lock-free length hint.
//!
//! In per-CPU mode each CPU has one; its lock is taken by that CPU (pick,
//! re-queue), by a CPU waking or spawning a thread whose home it is, and by
//! an idle stealer.  In global-lock mode a single queue serves every CPU.
//! The same code serves both: `pop_for` returns the first thread allowed on
//! the asking CPU (in per-CPU mode that is always the head, because a queue
//! only ever holds threads allowed on its CPU).
//!
//! Invariants: every queued thread is in state READY; `len` equals the
//! number of queued threads whenever the lock is free (updated under it,
//! SeqCst, because idle CPUs read it without the lock to decide whether to
//! sleep — see the idle protocol in `scheduler.rs`).
//!
//! Must not: hold its lock while taking another run queue's lock.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::lock::IrqSpinLock;
use super::thread::Thread;

pub(super) struct RunQueue {
    threads: IrqSpinLock<VecDeque<Arc<Thread>>>,
    len: AtomicUsize,
}

impl RunQueue {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            threads: IrqSpinLock::new(VecDeque::with_capacity(capacity)),
            len: AtomicUsize::new(0),
        }
    }

    /// Lock-free snapshot of the number of queued threads.
    pub(super) fn len_hint(&self) -> usize {
        self.len.load(Ordering::SeqCst)
    }

    pub(super) fn push(&self, thread: Arc<Thread>) {
        let mut threads = self.threads.lock();
        threads.push_back(thread);
        self.len.store(threads.len(), Ordering::SeqCst);
    }

    /// Removes the first thread that may run on `cpu` (FIFO order).
    pub(super) fn pop_for(&self, cpu: usize) -> Option<Arc<Thread>> {
        let mut threads = self.threads.lock();
        let index = threads.iter().position(|t| t.can_run_on(cpu))?;
        let thread = threads.remove(index);
        self.len.store(threads.len(), Ordering::SeqCst);
        thread
    }

    /// Removes the most recently queued thread that may run on `thief`:
    /// the tail is the thread that would wait longest on this queue.
    pub(super) fn steal(&self, thief: usize) -> Option<Arc<Thread>> {
        let mut threads = self.threads.lock();
        let index = threads.iter().rposition(|t| t.can_run_on(thief))?;
        let thread = threads.remove(index);
        self.len.store(threads.len(), Ordering::SeqCst);
        thread
    }
}
