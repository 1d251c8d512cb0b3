//! Notifications: a word of bits that `notify` ORs in and `wait` takes
//! (returns and clears), from any CPU.  The asynchronous half of IPC: a
//! producer that filled a shared-memory ring tells its consumer without
//! waiting for it (docs/IPC.md, "Shared rings").
//!
//! Owns: the word and the queue of threads waiting for it to become
//! non-zero.  Invariants: bits are never lost: `notify` sets them before
//! waking, `wait` clears only what it returns (one atomic swap).
//! Per-core: the word and queue belong to the object; there is no global
//! state.  Must not: block in `notify`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sched::WaitQueue;
use abi::Errno;

/// A notification object.
pub struct Notification {
    word: AtomicU64,
    waiters: WaitQueue,
    /// Set by the kernel for a notification it consumes itself (a
    /// server's done notification, `ipc::ring`): `notify` runs it with
    /// the bits instead of storing them.
    hook: spin::Once<alloc::boxed::Box<dyn Fn(u64) + Send + Sync>>,
}

impl Notification {
    pub fn new() -> Notification {
        Notification {
            word: AtomicU64::new(0),
            waiters: WaitQueue::new(),
            hook: spin::Once::new(),
        }
    }

    /// Makes `notify` call `hook` with the bits (once; false if a hook
    /// was set already).
    pub fn set_hook(&self, hook: alloc::boxed::Box<dyn Fn(u64) + Send + Sync>) -> bool {
        let mut fresh = false;
        self.hook.call_once(|| {
            fresh = true;
            hook
        });
        fresh
    }

    /// ORs `bits` into the word and wakes a waiter.
    pub fn notify(&self, bits: u64) {
        if bits == 0 {
            return;
        }
        if let Some(hook) = self.hook.get() {
            hook(bits);
            return;
        }
        self.word.fetch_or(bits, Ordering::AcqRel);
        self.waiters.wake_one();
    }

    /// Takes the bits set so far (0 if none).
    pub fn poll(&self) -> u64 {
        if self.word.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.word.swap(0, Ordering::AcqRel)
    }

    /// Waits until the word is non-zero, then takes it.  `EINTR` when
    /// `interrupted` becomes true first.
    pub fn wait(&self, interrupted: &dyn Fn() -> bool) -> Result<u64, Errno> {
        loop {
            let bits = self.poll();
            if bits != 0 {
                return Ok(bits);
            }
            self.waiters
                .wait_until(|| self.word.load(Ordering::Acquire) != 0 || interrupted());
            let bits = self.poll();
            if bits != 0 {
                // Another waiter may want the next notification: the one
                // `notify` woke took this one.
                return Ok(bits);
            }
            if interrupted() {
                return Err(Errno::EINTR);
            }
        }
    }
}
