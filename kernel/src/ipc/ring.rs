//! The kernel's client of a server on a dedicated core
//! (`servers.placement=dedicated`): delegated calls go through request
//! slots in memory shared with the server (`ring` crate) instead of the
//! synchronous call, so the caller's core and the server's core exchange
//! cache lines and, only when one side sleeps, a notification.
//!
//! A call: claim a free slot (the caller's CPU's first), note the calling
//! thread in the slot's waiter record (kernel memory, never shared), write
//! and publish the request, notify the server if it sleeps; spin a
//! bounded time for the reply, then sleep (`sched::wait_once`) until the
//! server's done notification wakes it (`Notification` hook, `wake`); a
//! caller on the server's own CPU sleeps at once.
//! No free slot or a payload larger than a slot: the caller falls back to
//! the synchronous call (the server serves its endpoint too).
//!
//! A signal ends the wait while the server has not taken the request
//! (`ring::Ring::withdraw`: the caller gets `EINTR`, which the syscall
//! layer restarts per SA_RESTART, as for a call still queued on an
//! endpoint); a request the server took is waited for (fsd answers every
//! request at once: it never blocks).
//!
//! A server that dies (crash, kill, exit) makes the slots *gone*
//! (`server_gone`: its last receive right on the endpoint went away, or
//! the crash watcher saw it dead): every caller waiting in a slot is woken
//! and gets `EPIPE`, as a call queued on the endpoint of a dead server
//! does (`Endpoint::drop_recv_right`), which `ipc::delegate_call` turns
//! into `EIO`; later calls get it at once.  No lost wake-up: a caller
//! records itself in its slot's waiter record, then checks `gone` (in the
//! wait's condition, SeqCst); `server_gone` stores `gone` (SeqCst), then
//! wakes every recorded waiter.
//!
//! Per-core: the slots are shared with the server by design (they are the
//! channel); a caller writes only the slot it claimed, and claims start at
//! its CPU's slot so callers of different CPUs use different lines.
//!
//! Must not: trust a length the server wrote (checked in `ring`), or hold a
//! lock while it waits.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::shared_mem::PinnedPages;
use super::{KernelReply, Notification};
use crate::sched::{self, IrqSpinLock, Thread};
use abi::Errno;

/// How many times a caller checks for its reply before it sleeps (not
/// at all on the server's own CPU).
const SPIN: usize = 2000;

/// A server's request slots as the kernel uses them.
pub struct KernelRing {
    ring: ring::Ring<PinnedPages>,
    /// The memory of the slots: kept by the kernel (not by a process), so
    /// its frames live as long as this ring, and a successor instance can
    /// map the same slots (`region`).
    region: Arc<crate::memory::server_arena::ServerArena>,
    /// Raised when the server sleeps and a request came.
    server_notify: Arc<Notification>,
    /// The server's done notification (hooked to `wake`).
    done_notify: Arc<Notification>,
    /// The thread waiting on each slot.
    waiters: Box<[IrqSpinLock<Option<Arc<Thread>>>]>,
    /// Calls that went through the slots (for `ipcstat`).
    calls: AtomicU64,
    /// The CPU the server polls on: a caller there does not spin (it
    /// would only keep the server from running).
    server_cpu: usize,
    /// The server died: no reply will come (module doc).
    gone: AtomicBool,
}

impl KernelRing {
    pub fn new(
        ring: ring::Ring<PinnedPages>,
        region: Arc<crate::memory::server_arena::ServerArena>,
        server_notify: Arc<Notification>,
        done_notify: Arc<Notification>,
        server_cpu: usize,
    ) -> KernelRing {
        let waiters = (0..ring.slots()).map(|_| IrqSpinLock::new(None)).collect();
        KernelRing {
            ring,
            region,
            server_notify,
            done_notify,
            waiters,
            calls: AtomicU64::new(0),
            server_cpu,
            gone: AtomicBool::new(false),
        }
    }

    /// The server is gone (dead, killed): every caller waiting in a slot
    /// gets `EPIPE`, and so does every later call.  Idempotent.
    pub fn server_gone(&self) {
        if self.gone.swap(true, Ordering::SeqCst) {
            return;
        }
        for w in self.waiters.iter() {
            if let Some(t) = w.lock().clone() {
                sched::wake_thread(&t);
            }
        }
    }

    /// Whether the server is gone.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// The slots' memory (a successor maps it too).
    pub fn region(&self) -> &Arc<crate::memory::server_arena::ServerArena> {
        &self.region
    }

    /// The server's two notifications (wake, done): a successor gets them
    /// in its handle table.
    pub fn notifications(&self) -> (Arc<Notification>, Arc<Notification>) {
        (self.server_notify.clone(), self.done_notify.clone())
    }

    /// Takes the slots away from the serving instance (a replacement):
    /// no instance takes a request from here on, and this returns once
    /// none works on one (`ring` crate: the owner word), or `EBUSY` after
    /// `timeout_ns` (the slots are given back to `back`).  Requests
    /// published meanwhile wait in their slots for the next owner.
    pub fn take_from_server(&self, back: u32, timeout_ns: u64) -> Result<(), Errno> {
        self.ring.set_owner(0);
        // A sleeping slot thread wakes and sees it is not the owner.
        self.server_notify.notify(1);
        let began = crate::arch::time::now_ns();
        while self.ring.any_busy() {
            if crate::arch::time::now_ns() - began > timeout_ns {
                self.give_to(back);
                return Err(Errno::EBUSY);
            }
            sched::sleep_ns(100_000);
        }
        Ok(())
    }

    /// Makes instance `token` the one that serves the slots (and wakes
    /// its slot thread if it sleeps).
    pub fn give_to(&self, token: u32) {
        self.ring.set_owner(token);
        self.server_notify.notify(1);
    }

    /// The token of the instance that serves the slots.
    pub fn owner(&self) -> u32 {
        self.ring.owner()
    }

    /// Calls that went through the slots.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The done notification's bits: wakes the callers of those slots.
    pub fn wake(&self, bits: u64) {
        for (i, w) in self.waiters.iter().enumerate() {
            if bits & 1 << i != 0 {
                if let Some(t) = w.lock().clone() {
                    sched::wake_thread(&t);
                }
            }
        }
    }

    /// One call through the slots; `None` when it must go the synchronous
    /// way (no free slot, payload too large, not in a thread).
    pub fn call(
        &self,
        label: u64,
        words: [u64; 4],
        send: &[u8],
        recv: &mut [u8],
    ) -> Option<Result<KernelReply, Errno>> {
        if send.len() > ring::PAYLOAD_MAX {
            return None;
        }
        if self.is_gone() {
            return Some(Err(Errno::EPIPE));
        }
        let me = sched::current()?;
        let cpu = sched::current_cpu();
        let i = self.ring.claim(cpu)?;
        *self.waiters[i].lock() = Some(me);
        // After the waiter record (module doc): a `server_gone` from here
        // on either is seen below or wakes this thread.
        let head = ring::Head {
            label,
            words,
            len: send.len(),
        };
        if self.ring.publish(i, head, send) {
            self.server_notify.notify(1);
        }
        let mut spins = if cpu == self.server_cpu { SPIN } else { 0 };
        while !self.ring.is_done(i) {
            if self.is_gone() {
                // The slot stays as the dead server left it: the region is
                // not used again (a restarted server gets fresh slots).
                *self.waiters[i].lock() = None;
                return Some(Err(Errno::EPIPE));
            }
            if spins < SPIN {
                spins += 1;
                core::hint::spin_loop();
                continue;
            }
            // A signal: take the request back if the server has not taken
            // it (then it was never made: `EINTR`, or a restart per
            // SA_RESTART); once taken, its reply comes (as a call on the
            // endpoint that a receiver took).
            if super::interrupted() && self.ring.withdraw(i) {
                *self.waiters[i].lock() = None;
                return Some(Err(Errno::EINTR));
            }
            if self.ring.prepare_wait(i) {
                break;
            }
            sched::wait_once(&|| self.ring.is_done(i) || self.is_gone(), None);
        }
        *self.waiters[i].lock() = None;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let reply = self.ring.take_reply(i, recv);
        Some(match reply {
            Some(h) => Ok(KernelReply {
                label: h.label,
                words: h.words,
                len: h.len,
            }),
            None => Err(Errno::EIO),
        })
    }
}
