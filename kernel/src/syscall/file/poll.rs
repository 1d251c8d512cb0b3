//! poll/ppoll, select/pselect6 and the signal-mask bracket of the p*
//! variants: waiting for readiness of several files.
//!
//! Must not: sleep except on the pollers' wait (which a signal ends).

#[allow(unused_imports)]
use super::*;
use abi::structs::Pollfd;

/// `sizeof(struct pollfd)`, and where its `revents` lies.
const POLLFD: u64 = size_of::<Pollfd>() as u64;
const REVENTS: u64 = core::mem::offset_of!(Pollfd, revents) as u64;

/// Waits until `check` finds something ready (returns > 0), the deadline
/// (absolute ns, `None` = forever) passes, or a signal arrives (`EINTR`).
///
/// Blocks on a `PollWaker` subscribed to every file's `PollWaiters` (only
/// once a first check found nothing): the sequence number is read before
/// each check, so a readiness change after the check ends the sleep (see
/// `files::pollwait`).  Files without waiters are always ready.
fn wait_ready(
    files: &[Option<FileRef>],
    deadline: Option<u64>,
    mut check: impl FnMut() -> Result<usize, Errno>,
) -> SysResult {
    let waker = PollWaker::new();
    let sub = waker.as_subscriber();
    let mut subscribed = false;
    let result = loop {
        let seen = waker.sequence();
        let n = check()?;
        if n > 0 {
            break Ok(n);
        }
        if deadline.is_some_and(|d| crate::arch::time::now_ns() >= d) {
            break Ok(0);
        }
        if crate::proc::signal_pending() {
            break Err(Errno::EINTR);
        }
        if !subscribed {
            for w in files.iter().flatten().filter_map(|f| f.poll_waiters()) {
                w.subscribe(sub.clone());
            }
            subscribed = true;
            continue;
        }
        waker.wait_change(seen, deadline);
    };
    if subscribed {
        for w in files.iter().flatten().filter_map(|f| f.poll_waiters()) {
            w.unsubscribe(&sub);
        }
    }
    result
}

/// Runs `call` with the signal mask at `mask_addr` (ppoll, pselect6,
/// epoll_pwait): the old mask comes back when it returns, or, when it was
/// interrupted by a signal, after that signal's handler (as Linux does).
pub fn with_sigmask(mask_addr: UserAddr, size: u64, call: impl FnOnce() -> SysResult) -> SysResult {
    if mask_addr.is_null() {
        return call();
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new: u64 = mask_addr.read()?;
    let Some(task) = crate::proc::current_task() else {
        return call();
    };
    let old = task
        .signals
        .mask
        .load(core::sync::atomic::Ordering::Acquire);
    task.signals.set_mask(new);
    let result = call();
    if result == Err(Errno::EINTR) {
        crate::proc::signal::set_temporary_mask(task, new, old);
    } else {
        task.signals.set_mask(old);
    }
    result
}

fn deadline_after(ns: Option<u64>) -> Option<u64> {
    ns.map(|ns| crate::arch::time::now_ns().saturating_add(ns))
}

fn read_timespec(addr: UserAddr) -> Result<Option<u64>, Errno> {
    if addr.is_null() {
        return Ok(None);
    }
    let abi::structs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    } = addr.read()?;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(
        (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(nsec as u64),
    ))
}

fn do_poll(fds: UserAddr, nfds: u64, deadline: Option<u64>) -> SysResult {
    if nfds > MAX_VEC {
        return Err(Errno::EINVAL);
    }
    let p = proc()?;
    let mut entries: Vec<(i32, i16)> = Vec::with_capacity(nfds as usize);
    for i in 0..nfds {
        let pfd: Pollfd = fds.offset(i * POLLFD).read()?;
        entries.push((pfd.fd, pfd.events));
    }
    // Resolved once: a file closed meanwhile stays polled (as on Linux,
    // where poll holds its file references for the call).
    let files: Vec<Option<FileRef>> = entries
        .iter()
        .map(|&(fd, _)| {
            if fd < 0 {
                None
            } else {
                p.files.fds.get(fd).ok()
            }
        })
        .collect();
    let mut revents = vec![0i16; entries.len()];
    let n = wait_ready(&files, deadline, || {
        let mut ready = 0;
        for (i, &(fd, events)) in entries.iter().enumerate() {
            revents[i] = if fd < 0 {
                0
            } else {
                match &files[i] {
                    Some(f) => f.poll(events),
                    None => crate::files::POLLNVAL,
                }
            };
            if revents[i] != 0 {
                ready += 1;
            }
        }
        Ok(ready)
    })?;
    for (i, r) in revents.iter().enumerate() {
        // Only `revents`, as Linux writes it.
        fds.offset(i as u64 * POLLFD + REVENTS).write(r)?;
    }
    Ok(n)
}

pub fn sys_poll(fds: UserAddr, nfds: u64, timeout_ms: i32) -> SysResult {
    let ns = if timeout_ms < 0 {
        None
    } else {
        Some(timeout_ms as u64 * 1_000_000)
    };
    do_poll(fds, nfds, deadline_after(ns))
}

/// ppoll, with its signal mask in force while it waits.
pub fn sys_ppoll(
    fds: UserAddr,
    nfds: u64,
    tmo: UserAddr,
    sigmask: UserAddr,
    size: u64,
) -> SysResult {
    let ns = read_timespec(tmo)?;
    let deadline = deadline_after(ns);
    with_sigmask(sigmask, size, || do_poll(fds, nfds, deadline))
}

fn do_select(
    nfds: i32,
    rp: UserAddr,
    wp: UserAddr,
    ep: UserAddr,
    deadline: Option<u64>,
) -> SysResult {
    if !(0..=1024).contains(&nfds) {
        return Err(Errno::EINVAL);
    }
    let words = (nfds as usize).div_ceil(64);
    let read_set = |addr: UserAddr| -> Result<Vec<u64>, Errno> {
        let mut v = vec![0u64; words];
        if !addr.is_null() {
            for (i, w) in v.iter_mut().enumerate() {
                *w = addr.offset(i as u64 * 8).read()?;
            }
        }
        Ok(v)
    };
    let (rin, win, ein) = (read_set(rp)?, read_set(wp)?, read_set(ep)?);
    let p = proc()?;
    let mut files: Vec<Option<FileRef>> = Vec::with_capacity(nfds as usize);
    for fd in 0..nfds as usize {
        let wanted = (rin[fd / 64] | win[fd / 64] | ein[fd / 64]) & (1 << (fd % 64)) != 0;
        files.push(if wanted {
            Some(p.files.fds.get(fd as i32)?)
        } else {
            None
        });
    }
    let (mut rout, mut wout, mut eout) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let n = wait_ready(&files, deadline, || {
        let mut ready = 0;
        for (fd, f) in files.iter().enumerate() {
            let Some(f) = f else { continue };
            let (w, bit) = (fd / 64, 1u64 << (fd % 64));
            let ev = f.poll(crate::files::POLLIN | crate::files::POLLOUT);
            let r = rin[w] & bit != 0
                && ev & (crate::files::POLLIN | crate::files::POLLHUP | crate::files::POLLERR) != 0;
            let wr = win[w] & bit != 0 && ev & (crate::files::POLLOUT | crate::files::POLLERR) != 0;
            rout[w] = if r { rout[w] | bit } else { rout[w] & !bit };
            wout[w] = if wr { wout[w] | bit } else { wout[w] & !bit };
            eout[w] &= !bit;
            ready += r as usize + wr as usize;
        }
        Ok(ready)
    })?;
    for (addr, set) in [(rp, &rout), (wp, &wout), (ep, &eout)] {
        if !addr.is_null() {
            for (i, w) in set.iter().enumerate() {
                addr.offset(i as u64 * 8).write(w)?;
            }
        }
    }
    Ok(n)
}

pub fn sys_select(nfds: i32, rp: UserAddr, wp: UserAddr, ep: UserAddr, tv: UserAddr) -> SysResult {
    let ns = if tv.is_null() {
        None
    } else {
        let abi::structs::Timeval {
            tv_sec: sec,
            tv_usec: usec,
        } = tv.read()?;
        // Linux refuses only negative parts; whole seconds in tv_usec carry
        // into tv_sec (fs/select.c), unlike pselect6's timespec.
        if sec < 0 || usec < 0 {
            return Err(Errno::EINVAL);
        }
        Some(
            (sec as u64)
                .saturating_add(usec as u64 / 1_000_000)
                .saturating_mul(1_000_000_000)
                .saturating_add(usec as u64 % 1_000_000 * 1000),
        )
    };
    do_select(nfds, rp, wp, ep, deadline_after(ns))
}

/// pselect6, with its signal mask in force while it waits.  The sixth
/// argument points to `{ const sigset_t *ss; size_t ss_len; }`.
pub fn sys_pselect6(
    nfds: i32,
    rp: UserAddr,
    wp: UserAddr,
    ep: UserAddr,
    ts: UserAddr,
    sig: UserAddr,
) -> SysResult {
    let ns = read_timespec(ts)?;
    let deadline = deadline_after(ns);
    let (mask_addr, size) = if sig.is_null() {
        (UserAddr(0), 0)
    } else {
        let [addr, len]: [u64; 2] = sig.read()?;
        (UserAddr(addr), len)
    };
    with_sigmask(mask_addr, size, || do_select(nfds, rp, wp, ep, deadline))
}
