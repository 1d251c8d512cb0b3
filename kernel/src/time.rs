//! The realtime clock offset and user `timespec` decoding, shared by the
//! time system calls, futex timeouts and `/proc` (`btime`).
//!
//! Owns: `CLOCK_REALTIME`'s offset from the monotonic clock (the RTC read
//! once at boot, `init_realtime`), and the check of a user `timespec`.
//! Invariants: reading the offset takes no lock (one atomic load); a
//! `timespec` with `tv_nsec` outside 0..1e9 or a negative `tv_sec` is
//! `EINVAL`.  Must not: read the RTC after boot.

#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use crate::memory::uaccess::UserAddr;
use abi::structs::Timespec;
use abi::time::NS_PER_SEC;
use abi::Errno;

/// Unix time (ns) at monotonic time 0.
static REALTIME_OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Reads the RTC and fixes the offset of CLOCK_REALTIME.  Once, at boot.
pub fn init_realtime() {
    let secs = crate::arch::rtc::read_unix_seconds();
    let now = crate::arch::time::now_ns();
    REALTIME_OFFSET_NS.store((secs * NS_PER_SEC).saturating_sub(now), Ordering::Release);
    log::info!(
        "time: realtime clock from the RTC: {} s since the epoch",
        secs
    );
}

/// Unix time (ns) at monotonic time 0.
pub fn realtime_offset_ns() -> u64 {
    REALTIME_OFFSET_NS.load(Ordering::Acquire)
}

/// `ns` nanoseconds as a `timespec`.
pub fn timespec_from_ns(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / NS_PER_SEC) as i64,
        tv_nsec: (ns % NS_PER_SEC) as i64,
    }
}

/// Reads and checks a user `timespec`; returns it in nanoseconds.
pub fn read_timespec(addr: UserAddr) -> Result<u64, Errno> {
    let ts: Timespec = addr.ptr()?.read()?;
    if ts.tv_sec < 0 || !(0..NS_PER_SEC as i64).contains(&ts.tv_nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((ts.tv_sec as u64)
        .saturating_mul(NS_PER_SEC)
        .saturating_add(ts.tv_nsec as u64))
}
