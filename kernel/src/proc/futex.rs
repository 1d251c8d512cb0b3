//! Futexes: hashed wait buckets with a lock each.
//!
//! Owns: the futex table (`BUCKETS` buckets, each an `IrqSpinLock`ed list
//! of waiters) and the operations WAIT, WAKE, REQUEUE, CMP_REQUEUE,
//! WAIT_BITSET, WAKE_BITSET (with or without FUTEX_PRIVATE_FLAG), with
//! relative (WAIT) or absolute (WAIT_BITSET) timeouts.
//!
//! Key: (address-space identity, user address).  Private and shared
//! futexes use the same key, so a shared futex works between the threads
//! (and CLONE_VM children) of one address space, not across `fork`.
//!
//! No lost wakeups: a waiter compares the futex word and enqueues itself
//! under the bucket lock; a waker changes the word (in user space) before
//! taking the same lock to pick waiters.  Each waiter sleeps on its own
//! wait queue and is woken by setting its `woken` flag first.
//!
//! Invariants: a waiter is in exactly the bucket of its current key;
//! requeue moves it while holding both bucket locks (lower index first).
//! Must not: read user memory with a bucket lock held (a fault may sleep):
//! the word is read before, then re-checked after enqueueing.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::task::Task;
use crate::memory::uaccess::UserAddr;
use crate::sched::{IrqSpinLock, WaitQueue};
use abi::{Errno, SysResult};

const FUTEX_WAIT: u32 = 0;
const FUTEX_WAKE: u32 = 1;
const FUTEX_REQUEUE: u32 = 3;
const FUTEX_CMP_REQUEUE: u32 = 4;
const FUTEX_WAIT_BITSET: u32 = 9;
const FUTEX_WAKE_BITSET: u32 = 10;
const FUTEX_PRIVATE_FLAG: u32 = 128;
const FUTEX_CLOCK_REALTIME: u32 = 256;
const FUTEX_BITSET_MATCH_ANY: u32 = u32::MAX;

/// Number of hash buckets (a power of two).
const BUCKETS: usize = 256;

/// One sleeping thread.
struct Waiter {
    /// Address-space identity and user address (atomics: requeue changes
    /// them under both bucket locks; the waiter reads them to find its
    /// bucket).
    space: AtomicUsize,
    addr: AtomicU64,
    bitset: u32,
    woken: AtomicBool,
    queue: WaitQueue,
}

static TABLE: [IrqSpinLock<Vec<Arc<Waiter>>>; BUCKETS] =
    [const { IrqSpinLock::new(Vec::new()) }; BUCKETS];

fn bucket_of(space: usize, addr: u64) -> usize {
    let mut h = (space as u64) ^ addr.rotate_left(17);
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 56) as usize % BUCKETS
}

/// The identity of the caller's address space (its `Arc` pointer), read
/// without a clone: threads of one process share the `Arc`, and a count
/// write per futex call would be a line they all write.
fn space_of(task: &Task) -> usize {
    task.aspace_id()
}

/// Wakes up to `count` waiters on `addr` whose bitset meets `bitset`.
fn wake_key(space: usize, addr: u64, count: usize, bitset: u32) -> usize {
    let mut woken = Vec::new();
    {
        let mut bucket = TABLE[bucket_of(space, addr)].lock();
        let mut i = 0;
        while i < bucket.len() && woken.len() < count {
            let w = &bucket[i];
            if w.space.load(Ordering::Relaxed) == space
                && w.addr.load(Ordering::Relaxed) == addr
                && w.bitset & bitset != 0
            {
                let w = bucket.remove(i);
                w.woken.store(true, Ordering::Release);
                woken.push(w);
            } else {
                i += 1;
            }
        }
    }
    let n = woken.len();
    for w in woken {
        w.queue.wake_all();
    }
    n
}

/// Wakes up to `count` waiters on `addr` in the caller's address space
/// (thread exit with CLONE_CHILD_CLEARTID uses it).
pub fn wake_address(task: &Task, addr: u64, count: usize) -> usize {
    wake_key(space_of(task), addr, count, FUTEX_BITSET_MATCH_ANY)
}

/// Removes `waiter` from whatever bucket its key now names (it gave up).
/// Returns false when a waker took it out first.
fn dequeue(waiter: &Arc<Waiter>) -> bool {
    loop {
        let space = waiter.space.load(Ordering::Acquire);
        let addr = waiter.addr.load(Ordering::Acquire);
        let mut bucket = TABLE[bucket_of(space, addr)].lock();
        // The key may have moved (requeue) between the loads and the lock.
        if waiter.space.load(Ordering::Acquire) != space
            || waiter.addr.load(Ordering::Acquire) != addr
        {
            continue;
        }
        let before = bucket.len();
        bucket.retain(|w| !Arc::ptr_eq(w, waiter));
        return bucket.len() != before;
    }
}

/// FUTEX_WAIT / FUTEX_WAIT_BITSET.
fn wait(
    task: &Task,
    uaddr: UserAddr,
    expected: u32,
    deadline_ns: Option<u64>,
    bitset: u32,
) -> SysResult {
    // The word's address is also the waiter's key.
    let addr = uaddr.raw();
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    if addr % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    // Fault the word in (and check it) before taking the bucket lock.
    if uaddr.read::<u32>()? != expected {
        return Err(Errno::EAGAIN);
    }
    let space = space_of(task);
    let waiter = Arc::new(Waiter {
        space: AtomicUsize::new(space),
        addr: AtomicU64::new(addr),
        bitset,
        woken: AtomicBool::new(false),
        queue: WaitQueue::new(),
    });
    TABLE[bucket_of(space, addr)].lock().push(waiter.clone());
    // Re-check after enqueueing: a waker that changed the word before we
    // were queued would otherwise be missed.
    match uaddr.read::<u32>() {
        Ok(v) if v == expected => {}
        other => {
            if dequeue(&waiter) {
                return match other {
                    Ok(_) => Err(Errno::EAGAIN),
                    Err(e) => Err(e),
                };
            }
            return Ok(0);
        }
    }
    let woken = waiter.queue.wait_until_deadline(
        || waiter.woken.load(Ordering::Acquire) || super::signal::has_deliverable(task),
        deadline_ns,
    );
    if waiter.woken.load(Ordering::Acquire) {
        return Ok(0);
    }
    if !dequeue(&waiter) {
        // A waker took us out right after the deadline or signal: count it
        // as woken (its wakeup must not be lost).
        return Ok(0);
    }
    if woken {
        Err(Errno::EINTR)
    } else {
        Err(Errno::ETIMEDOUT)
    }
}

/// FUTEX_REQUEUE / FUTEX_CMP_REQUEUE.
fn requeue(
    task: &Task,
    uaddr: UserAddr,
    wake: usize,
    limit: usize,
    uaddr2: UserAddr,
    cmp: Option<u32>,
) -> SysResult {
    let (addr, addr2) = (uaddr.raw(), uaddr2.raw());
    if addr % 4 != 0 || addr2 % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    if let Some(expected) = cmp {
        if uaddr.read::<u32>()? != expected {
            return Err(Errno::EAGAIN);
        }
    }
    let space = space_of(task);
    let (a, b) = (bucket_of(space, addr), bucket_of(space, addr2));
    let mut woken = Vec::new();
    let mut moved = 0;
    {
        // Both bucket locks, lower index first (one lock if they coincide).
        let (mut first, mut second) = if a == b {
            (TABLE[a].lock(), None)
        } else if a < b {
            let ga = TABLE[a].lock();
            (ga, Some(TABLE[b].lock()))
        } else {
            let gb = TABLE[b].lock();
            (TABLE[a].lock(), Some(gb))
        };
        let mut i = 0;
        while i < first.len() {
            let w = &first[i];
            if w.space.load(Ordering::Relaxed) != space || w.addr.load(Ordering::Relaxed) != addr {
                i += 1;
                continue;
            }
            if woken.len() < wake {
                let w = first.remove(i);
                w.woken.store(true, Ordering::Release);
                woken.push(w);
            } else if moved < limit {
                let w = first.remove(i);
                w.addr.store(addr2, Ordering::Release);
                match second.as_mut() {
                    Some(s) => s.push(w),
                    None => {
                        first.push(w);
                        // Re-examined later in this loop only by position;
                        // it no longer matches `addr`, so it is skipped.
                    }
                }
                moved += 1;
            } else {
                break;
            }
        }
    }
    let n = woken.len();
    for w in woken {
        w.queue.wake_all();
    }
    Ok(n + moved)
}

/// `futex(uaddr, op, val, timeout/val2, uaddr2, val3)`.
/// `timeout` is a `struct timespec *` for the waits and the number `val2`
/// for the requeues, so it stays an integer until the command is known.
pub fn sys_futex(
    uaddr: UserAddr,
    op: u32,
    val: u32,
    timeout: u64,
    uaddr2: UserAddr,
    val3: u32,
) -> SysResult {
    let task = super::current_task().ok_or(Errno::ENOSYS)?;
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT {
                FUTEX_BITSET_MATCH_ANY
            } else {
                val3
            };
            let deadline = if timeout == 0 {
                None
            } else {
                let ts = crate::time::read_timespec(UserAddr(timeout))?;
                let now = crate::arch::time::now_ns();
                Some(if cmd == FUTEX_WAIT {
                    now.saturating_add(ts)
                } else if op & FUTEX_CLOCK_REALTIME != 0 {
                    // Absolute CLOCK_REALTIME: convert to the monotonic clock.
                    ts.saturating_sub(crate::time::realtime_offset_ns())
                } else {
                    ts
                })
            };
            wait(task, uaddr, val, deadline, bitset)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE {
                FUTEX_BITSET_MATCH_ANY
            } else {
                val3
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(wake_key(space_of(task), uaddr.raw(), val as usize, bitset))
        }
        // For the requeue operations the "timeout" argument is val2.
        FUTEX_REQUEUE => requeue(
            task,
            uaddr,
            val as usize,
            timeout as u32 as usize,
            uaddr2,
            None,
        ),
        FUTEX_CMP_REQUEUE => requeue(
            task,
            uaddr,
            val as usize,
            timeout as u32 as usize,
            uaddr2,
            Some(val3),
        ),
        _ => Err(Errno::ENOSYS),
    }
}
