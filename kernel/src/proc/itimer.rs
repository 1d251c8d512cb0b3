//! The real-time interval timer of each process (`alarm`, `setitimer` /
//! `getitimer` with `ITIMER_REAL`): SIGALRM when it expires, re-armed by
//! its interval.
//!
//! Owns the table of armed timers (by pid) and the kernel thread that
//! fires them.  Invariants: a process has at most one entry; an entry
//! holds its process weakly (an exited process's timer is dropped when it
//! would fire or at the next change); pids are never reused, so a forked
//! child starts without a timer (as on Linux) and an exec keeps it.
//!
//! Shared state, not per-CPU: the table is one lock taken only by these
//! calls and by the timer thread, never on a hot path (a program arms an
//! alarm per request at most), and one thread sleeping until the earliest
//! deadline is cheaper than a check on every CPU's timer tick.
//!
//! Must not: send a signal while holding the table lock.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::process::{Pid, Process};
use crate::sched::WaitQueue;

const SIGALRM: u32 = 14;

struct Armed {
    /// Absolute `arch::time::now_ns` of the next expiry.
    deadline: u64,
    /// Re-arm period in ns (0: one shot).
    interval: u64,
    process: Weak<Process>,
}

static TIMERS: spin::Mutex<BTreeMap<Pid, Armed>> = spin::Mutex::new(BTreeMap::new());
/// Bumped by every change, so the timer thread recomputes its deadline.
static CHANGES: AtomicU64 = AtomicU64::new(0);
static WAKE: WaitQueue = WaitQueue::new();
static THREAD: spin::Once<()> = spin::Once::new();

/// The timer of `pid`: (ns until it expires, interval ns); (0, 0) when
/// disarmed.
pub fn get(pid: Pid) -> (u64, u64) {
    let now = crate::arch::time::now_ns();
    match TIMERS.lock().get(&pid) {
        // A timer that is due but not yet fired reads as just about to.
        Some(a) => (a.deadline.saturating_sub(now).max(1), a.interval),
        None => (0, 0),
    }
}

/// Arms (`value` > 0) or disarms (`value` = 0) the timer of `process` to
/// expire in `value` ns and then every `interval` ns; returns the old
/// setting as `get` does.
pub fn set(process: &Arc<Process>, value: u64, interval: u64) -> (u64, u64) {
    THREAD.call_once(|| {
        crate::sched::spawn("itimer", None, service);
    });
    let now = crate::arch::time::now_ns();
    let old = {
        let mut timers = TIMERS.lock();
        timers.retain(|_, a| a.process.strong_count() > 0);
        let old = timers.get(&process.pid).map_or((0, 0), |a| {
            (a.deadline.saturating_sub(now).max(1), a.interval)
        });
        if value == 0 {
            timers.remove(&process.pid);
        } else {
            timers.insert(
                process.pid,
                Armed {
                    deadline: now.saturating_add(value),
                    interval,
                    process: Arc::downgrade(process),
                },
            );
        }
        old
    };
    CHANGES.fetch_add(1, Ordering::Release);
    WAKE.wake_all();
    old
}

/// The timer thread: sleeps until the earliest deadline or a change, then
/// sends SIGALRM for every expired timer and re-arms the periodic ones.
fn service() {
    loop {
        let seen = CHANGES.load(Ordering::Acquire);
        let next = TIMERS.lock().values().map(|a| a.deadline).min();
        WAKE.wait_until_deadline(|| CHANGES.load(Ordering::Acquire) != seen, next);
        let now = crate::arch::time::now_ns();
        let mut due: Vec<Arc<Process>> = Vec::new();
        TIMERS.lock().retain(|_, a| {
            if a.deadline > now {
                return a.process.strong_count() > 0;
            }
            let Some(p) = a.process.upgrade() else {
                return false;
            };
            due.push(p);
            if a.interval == 0 {
                return false;
            }
            // Overruns are not queued: the next expiry is in the future.
            a.deadline = a.deadline.saturating_add(a.interval).max(now + 1);
            true
        });
        for p in due {
            if !p.zombie.load(Ordering::Acquire) {
                super::signal::send_to_process(&p, SIGALRM);
            }
        }
    }
}
