//! Time system calls: clock_gettime, clock_getres, gettimeofday,
//! nanosleep, clock_nanosleep.
//!
//! Owns: the clocks user space sees.  `CLOCK_MONOTONIC` (and BOOTTIME,
//! MONOTONIC_RAW, the COARSE variants, and the CPU-time clocks, which are
//! approximated by it) is `arch::time::now_ns()`; `CLOCK_REALTIME` adds
//! the RTC time read once at boot (`init_realtime`).  Per-core rule: reading
//! a clock takes no lock (one atomic load plus the TSC).
//!
//! Must not: accept a `timespec` with `tv_nsec` outside 0..1e9 or a
//! negative `tv_sec` (EINVAL).

use crate::memory::uaccess::UserAddr;
use crate::time::{read_timespec, realtime_offset_ns, timespec_from_ns};
use abi::structs::{Itimerval, Timeval};
use abi::time::{
    CLOCK_BOOTTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, CLOCK_MONOTONIC_RAW,
    CLOCK_PROCESS_CPUTIME_ID, CLOCK_REALTIME, CLOCK_REALTIME_COARSE, CLOCK_THREAD_CPUTIME_ID,
    ITIMER_PROF, ITIMER_REAL, ITIMER_VIRTUAL, NS_PER_SEC, NS_PER_USEC, TIMER_ABSTIME,
};
use abi::{Errno, SysResult};

/// The value of clock `clock` in ns, or EINVAL for an unknown clock.
fn clock_now(clock: u32) -> Result<u64, Errno> {
    let mono = crate::arch::time::now_ns();
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Ok(mono + realtime_offset_ns()),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => Ok(mono),
        // CPU-time clocks: wall time since boot is an upper bound.
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Ok(mono),
        _ => Err(Errno::EINVAL),
    }
}

/// `clock_gettime(clock, tp)`.
pub fn sys_clock_gettime(clock: u32, tp: UserAddr) -> SysResult {
    let ns = clock_now(clock)?;
    tp.ptr()?.write(&timespec_from_ns(ns))?;
    Ok(0)
}

/// `clock_getres(clock, res)`: the TSC gives nanoseconds, the coarse
/// clocks the tick.
pub fn sys_clock_getres(clock: u32, res: UserAddr) -> SysResult {
    clock_now(clock)?;
    let ns = match clock {
        CLOCK_REALTIME_COARSE | CLOCK_MONOTONIC_COARSE => NS_PER_SEC / crate::arch::TICK_HZ,
        _ => 1,
    };
    if !res.is_null() {
        res.ptr()?.write(&timespec_from_ns(ns))?;
    }
    Ok(0)
}

/// `gettimeofday(tv, tz)`.
pub fn sys_gettimeofday(tv: UserAddr, tz: UserAddr) -> SysResult {
    if !tv.is_null() {
        let ns = clock_now(CLOCK_REALTIME)?;
        let val = Timeval {
            tv_sec: (ns / NS_PER_SEC) as i64,
            tv_usec: ((ns % NS_PER_SEC) / 1000) as i64,
        };
        tv.ptr()?.write(&val)?;
    }
    if !tz.is_null() {
        // struct timezone: minutes west, DST type; both 0.
        tz.ptr()?.write(&[0i32; 2])?;
    }
    Ok(0)
}

/// Sleeps until monotonic time `deadline`; EINTR (with the time left
/// written to `rem` when non-zero) if a signal arrives first.
fn sleep_until(deadline: u64, rem: UserAddr) -> SysResult {
    loop {
        let now = crate::arch::time::now_ns();
        if now >= deadline {
            return Ok(0);
        }
        if crate::proc::signal_pending() {
            if !rem.is_null() {
                rem.ptr()?.write(&timespec_from_ns(deadline - now))?;
            }
            return Err(Errno::EINTR);
        }
        // Slices, so a signal ends the sleep within one of them.
        crate::sched::sleep_ns((deadline - now).min(10_000_000));
    }
}

/// `nanosleep(req, rem)`.
pub fn sys_nanosleep(req: UserAddr, rem: UserAddr) -> SysResult {
    let ns = read_timespec(req)?;
    sleep_until(crate::arch::time::now_ns().saturating_add(ns), rem)
}

/// `clock_nanosleep(clock, flags, req, rem)`.
pub fn sys_clock_nanosleep(clock: u32, flags: u32, req: UserAddr, rem: UserAddr) -> SysResult {
    if matches!(clock, CLOCK_THREAD_CPUTIME_ID) {
        return Err(Errno::EINVAL);
    }
    clock_now(clock)?;
    let ns = read_timespec(req)?;
    let deadline = if flags & TIMER_ABSTIME != 0 {
        let offset = if matches!(clock, CLOCK_REALTIME | CLOCK_REALTIME_COARSE) {
            realtime_offset_ns()
        } else {
            0
        };
        ns.saturating_sub(offset)
    } else {
        crate::arch::time::now_ns().saturating_add(ns)
    };
    // Linux returns the error number directly here (not -1/errno).
    sleep_until(
        deadline,
        if flags & TIMER_ABSTIME != 0 {
            UserAddr(0)
        } else {
            rem
        },
    )
}

// ---- time, alarm, interval timers -------------------------------------------

/// `time(tloc)`: seconds since the epoch, also stored at `tloc` if set.
pub fn sys_time(tloc: UserAddr) -> SysResult {
    let secs = (crate::arch::time::now_ns() + realtime_offset_ns()) / NS_PER_SEC;
    if !tloc.is_null() {
        tloc.ptr()?.write(&(secs as i64))?;
    }
    Ok(secs as usize)
}

/// `struct itimerval` (two `timeval`s: interval, then value) in ns.
fn itimerval_ns(addr: UserAddr) -> Result<(u64, u64), Errno> {
    let v: Itimerval = addr.ptr()?.read()?;
    let (isec, iusec) = (v.it_interval.tv_sec, v.it_interval.tv_usec);
    let (vsec, vusec) = (v.it_value.tv_sec, v.it_value.tv_usec);
    let ns = |sec: i64, usec: i64| -> Result<u64, Errno> {
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        Ok((sec as u64)
            .saturating_mul(NS_PER_SEC)
            .saturating_add(usec as u64 * NS_PER_USEC))
    };
    Ok((ns(isec, iusec)?, ns(vsec, vusec)?))
}

fn write_itimerval(addr: UserAddr, interval: u64, value: u64) -> Result<(), Errno> {
    // Rounded up to whole microseconds, so a running timer never reads 0.
    let tv = |ns: u64| {
        let us = ns.div_ceil(NS_PER_USEC);
        Timeval {
            tv_sec: (us / 1_000_000) as i64,
            tv_usec: (us % 1_000_000) as i64,
        }
    };
    let v = Itimerval {
        it_interval: tv(interval),
        it_value: tv(value),
    };
    addr.ptr()?.write(&v)
}

fn me() -> Result<&'static crate::proc::Task, Errno> {
    crate::proc::current_task().ok_or(Errno::ENOSYS)
}

/// `getitimer(which, curr)`: `ITIMER_REAL` only; the CPU-time timers
/// (`ITIMER_VIRTUAL`, `ITIMER_PROF`) are not kept and read as disarmed.
pub fn sys_getitimer(which: u32, curr: UserAddr) -> SysResult {
    let (value, interval) = match which {
        ITIMER_REAL => crate::proc::itimer::get(me()?.process.pid),
        ITIMER_VIRTUAL | ITIMER_PROF => (0, 0),
        _ => return Err(Errno::EINVAL),
    };
    write_itimerval(curr, interval, value).map(|_| 0)
}

/// `setitimer(which, new, old)`: `ITIMER_REAL` delivers SIGALRM; the
/// CPU-time timers are refused with `EINVAL` (not implemented).  A null
/// `new` disarms, as Linux still accepts.
pub fn sys_setitimer(which: u32, new: UserAddr, old: UserAddr) -> SysResult {
    let (interval, value) = if new.is_null() {
        (0, 0)
    } else {
        itimerval_ns(new)?
    };
    if which != ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    let (old_value, old_interval) = crate::proc::itimer::set(&me()?.process, value, interval);
    if !old.is_null() {
        write_itimerval(old, old_interval, old_value)?;
    }
    Ok(0)
}

/// `alarm(seconds)`: the real timer as a one-shot; returns the seconds
/// that were left (rounded to nearest, at least 1 if any time was left,
/// as Linux does).
pub fn sys_alarm(seconds: u32) -> SysResult {
    let value = seconds as u64 * NS_PER_SEC;
    let (old, _) = crate::proc::itimer::set(&me()?.process, value, 0);
    if old == 0 {
        return Ok(0);
    }
    let us = old.div_ceil(NS_PER_USEC);
    let secs = us / 1_000_000 + (us % 1_000_000 >= 500_000) as u64;
    Ok(secs.max(1) as usize)
}
