//! epoll instances: an interest list of (fd, open file) entries, each
//! subscribed to its file's `PollWaiters`, and the readiness scan behind
//! `epoll_wait`.
//!
//! Owns `Epoll` and its `EpollEntry`s.  Invariants:
//! * an entry holds its file *weakly*: when the last reference to the open
//!   file goes, the entry is dead and is dropped at the next scan or
//!   `epoll_ctl` on that fd (Linux removes it at the final close);
//! * an entry's `pending` flag is set whenever its file notifies (and at
//!   ADD/MOD); only pending entries are examined by a scan.  Level-triggered
//!   entries stay pending while ready; edge-triggered ones (`EPOLLET`) are
//!   reported once per notify; `EPOLLONESHOT` disarms an entry after one
//!   report until `EPOLL_CTL_MOD`;
//! * `epoll_wait` sleeps on the instance's own `PollWaiters` until
//!   `generation` moves (every entry notify bumps it, then notifies), so no
//!   wakeup is lost (see `pollwait`);
//! * the instance is itself pollable (readable when a scan would report).
//!   To keep notify chains acyclic, an epoll fd that watches epoll fds may
//!   not be added to another epoll (`ELOOP`): nesting depth is at most 2.
//!
//! Must not: touch user memory (the syscall layer copies events), hold the
//! interest lock while polling files or notifying.

pub use abi::poll::{
    EPOLLERR, EPOLLET, EPOLLEXCLUSIVE, EPOLLHUP, EPOLLIN, EPOLLONESHOT, EPOLLWAKEUP, EPOLL_CTL_ADD,
    EPOLL_CTL_DEL, EPOLL_CTL_MOD,
};
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::file::{File, Kind};
use super::pollwait::{PollSubscriber, PollWaiters};
use abi::Errno;

const ELOOP: Errno = Errno::ELOOP;
/// Bits of `epoll_event.events` that are modes, not events.
const CONTROL_BITS: u32 = EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP;

/// One watched (fd, file).
struct EpollEntry {
    fd: i32,
    file: Weak<File>,
    /// Requested events and `EPOLLET`/`EPOLLONESHOT`; 0 events once a
    /// one-shot entry fired.
    events: AtomicU32,
    data: AtomicU64,
    /// The file notified (or the entry was (re)armed) since the last scan.
    pending: AtomicBool,
    epoll: Weak<Epoll>,
}

impl PollSubscriber for EpollEntry {
    fn on_notify(&self) {
        self.pending.store(true, Ordering::SeqCst);
        if let Some(ep) = self.epoll.upgrade() {
            ep.generation.fetch_add(1, Ordering::SeqCst);
            ep.waiters.notify();
        }
    }
}

/// One epoll instance.
pub struct Epoll {
    interest: spin::Mutex<BTreeMap<i32, Arc<EpollEntry>>>,
    /// Bumped on every entry notify; epoll_wait sleeps until it moves.
    generation: AtomicU64,
    /// Waiters on this instance (epoll_wait callers, poll on the epoll fd,
    /// an outer epoll).
    waiters: PollWaiters,
}

/// One ready event, as `struct epoll_event` carries it.
#[derive(Clone, Copy)]
pub struct ReadyEvent {
    pub events: u32,
    pub data: u64,
}

impl Epoll {
    pub fn new() -> Arc<Epoll> {
        Arc::new(Epoll {
            interest: spin::Mutex::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            waiters: PollWaiters::new(),
        })
    }

    pub fn waiters(&self) -> &PollWaiters {
        &self.waiters
    }

    /// The value to compare in `wait_change`, read before a scan.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Sleeps until an entry notifies after `seen` was read, a signal is
    /// pending or the deadline passes; false on timeout.
    pub fn wait_change(&self, seen: u64, deadline_ns: Option<u64>) -> bool {
        self.waiters.wait_until_deadline(
            || self.generation.load(Ordering::SeqCst) != seen || crate::proc::signal_pending(),
            deadline_ns,
        )
    }

    fn watches_epoll(&self) -> bool {
        self.interest.lock().values().any(|e| {
            e.file
                .upgrade()
                .is_some_and(|f| matches!(f.kind, Kind::Epoll(_)))
        })
    }

    /// `epoll_ctl`.  `target` is the open file `fd` refers to; the caller
    /// has checked that it is pollable and not this instance.
    pub fn ctl(
        self: &Arc<Self>,
        op: i32,
        fd: i32,
        target: &Arc<File>,
        events: u32,
        data: u64,
    ) -> Result<(), Errno> {
        let same_file = |e: &EpollEntry| e.file.upgrade().is_some_and(|f| Arc::ptr_eq(&f, target));
        let mut interest = self.interest.lock();
        // An entry whose file was closed no longer counts.
        if interest.get(&fd).is_some_and(|e| !same_file(e)) {
            interest.remove(&fd);
        }
        match op {
            EPOLL_CTL_ADD => {
                if interest.contains_key(&fd) {
                    return Err(Errno::EEXIST);
                }
                if let Kind::Epoll(inner) = &target.kind {
                    drop(interest);
                    if inner.watches_epoll() {
                        return Err(ELOOP);
                    }
                    interest = self.interest.lock();
                    if interest.contains_key(&fd) {
                        return Err(Errno::EEXIST);
                    }
                }
                let entry = Arc::new(EpollEntry {
                    fd,
                    file: Arc::downgrade(target),
                    events: AtomicU32::new(events | EPOLLERR | EPOLLHUP),
                    data: AtomicU64::new(data),
                    pending: AtomicBool::new(true),
                    epoll: Arc::downgrade(self),
                });
                interest.insert(fd, entry.clone());
                drop(interest);
                if let Some(w) = target.poll_waiters() {
                    let weak: Weak<EpollEntry> = Arc::downgrade(&entry);
                    w.subscribe(weak);
                }
            }
            EPOLL_CTL_MOD => {
                let entry = interest.get(&fd).cloned().ok_or(Errno::ENOENT)?;
                drop(interest);
                entry
                    .events
                    .store(events | EPOLLERR | EPOLLHUP, Ordering::SeqCst);
                entry.data.store(data, Ordering::SeqCst);
                entry.pending.store(true, Ordering::SeqCst);
            }
            EPOLL_CTL_DEL => {
                let entry = interest.remove(&fd).ok_or(Errno::ENOENT)?;
                drop(interest);
                if let Some(w) = target.poll_waiters() {
                    let weak: Weak<EpollEntry> = Arc::downgrade(&entry);
                    let weak: Weak<dyn PollSubscriber> = weak;
                    w.unsubscribe(&weak);
                }
                return Ok(());
            }
            _ => return Err(Errno::EINVAL),
        }
        // A newly armed entry may already be ready: wake waiters to scan.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.waiters.notify();
        Ok(())
    }

    /// Collects up to `max` ready events, consuming edge-triggered and
    /// one-shot entries as Linux does.  With `peek`, only tells whether any
    /// event is ready (poll on the epoll fd) and consumes nothing.
    pub fn scan(&self, max: usize, peek: bool) -> Vec<ReadyEvent> {
        let entries: Vec<Arc<EpollEntry>> = self.interest.lock().values().cloned().collect();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for e in entries {
            if out.len() >= max {
                break;
            }
            if !e.pending.load(Ordering::SeqCst) {
                continue;
            }
            let Some(file) = e.file.upgrade() else {
                dead.push(e.fd);
                continue;
            };
            let wanted = e.events.load(Ordering::SeqCst);
            if wanted & !CONTROL_BITS == 0 {
                // A fired one-shot entry: nothing until MOD.
                e.pending.store(false, Ordering::SeqCst);
                continue;
            }
            if peek {
                if file.poll_mask() & wanted != 0 {
                    out.push(ReadyEvent { events: 0, data: 0 });
                }
                continue;
            }
            // Clear before polling: a notify racing with the poll re-arms it.
            e.pending.store(false, Ordering::SeqCst);
            let ready = file.poll_mask() & wanted;
            if ready == 0 {
                continue;
            }
            out.push(ReadyEvent {
                events: ready,
                data: e.data.load(Ordering::SeqCst),
            });
            if wanted & EPOLLONESHOT != 0 {
                e.events
                    .store(wanted & (EPOLLET | EPOLLONESHOT), Ordering::SeqCst);
            } else if wanted & EPOLLET == 0 {
                // Level-triggered: look again next time.
                e.pending.store(true, Ordering::SeqCst);
            }
        }
        if !dead.is_empty() {
            let mut interest = self.interest.lock();
            for fd in dead {
                if interest
                    .get(&fd)
                    .is_some_and(|e| e.file.strong_count() == 0)
                {
                    interest.remove(&fd);
                }
            }
        }
        out
    }

    /// Readiness of the epoll fd itself: `EPOLLIN` when a scan would report.
    pub fn poll_mask(&self) -> u32 {
        if self.scan(1, true).is_empty() {
            0
        } else {
            EPOLLIN
        }
    }
}
