//! System calls: the entry from `arch::syscall` (`dispatch`) into the one
//! table by Linux x86_64 number (`table.rs`: number, name and handler per
//! row).
//!
//! Owns: the count of each call, the result convention (`rax` = value, or
//! `-errno`), and the log of each unsupported call, once per number (by
//! name from the table).
//!
//! Files, one per family: `process.rs`, `signal.rs`, `time.rs`, `info.rs`,
//! `mm.rs`, `fs.rs` (files), `net.rs` (sockets, epoll), `ipc.rs` (this
//! kernel's own IPC calls, numbered from 1000); `table.rs` (the
//! table), `count.rs` (per-CPU call counts).  fork/clone/execve/exit/wait and futex are in `proc`; errno
//! values, flags and user structures in the `abi` crate; user memory is
//! reached through `memory::uaccess` (`UserAddr` -> `UserPtr`/`UserSlice`).
//! No `unsafe` here (`deny(unsafe_code)`), except one marked blank frame in
//! `count.rs`.
//!
//! Invariants: every number without a handler returns `ENOSYS`; a handler
//! never sees an unchecked user pointer dereferenced (they go through
//! `memory::uaccess`).  Must not: block with interrupts off (the entry enables
//! them before `dispatch`).

#![deny(unsafe_code)]

pub mod count;
pub mod file;
pub mod info;
pub mod ipc;
pub mod memory;
pub mod mount;
pub mod process;
pub mod signal;
pub mod socket;
mod table;
pub mod time;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::idt::InterruptFrame;
use abi::{Errno, SysResult};

/// One bit per syscall number below 512: already logged as unsupported.
static LOGGED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// ENOSYS, logged once per number with its name and the first caller
/// (`comparison run` gathers these lines into its summary).
fn unsupported(nr: u64) -> SysResult {
    if count::probing() {
        return Ok(count::PROBE_UNSERVED); // a probe, not a call: no log
    }
    let first = if nr < 512 {
        let bit = 1u64 << (nr % 64);
        LOGGED[(nr / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit == 0
    } else {
        LOGGED[7].fetch_or(1 << 63, Ordering::Relaxed) & (1 << 63) == 0
    };
    if first {
        let pid = crate::proc::current_task().map_or(0, |t| t.process.pid);
        log::warn!(
            "syscall: unsupported: {} {} (first call from pid {})",
            nr,
            table::name_of(nr),
            pid
        );
    }
    Err(Errno::ENOSYS)
}

/// The calling process's address space (for the `mm` calls), borrowed for
/// the call: no reference-count write (`proc::task::AspaceRef`).
fn aspace() -> Result<crate::proc::task::AspaceRef, Errno> {
    crate::proc::task::current_aspace_ref().ok_or(Errno::ENOSYS)
}

/// Runs the system call described by `frame` (number in `rax`) and puts
/// the result in `rax`.
pub fn dispatch(frame: &mut InterruptFrame) {
    count::record(frame.rax);
    table::route(frame);
}

/// Argument `i` as a file descriptor (a C `int`: the low 32 bits).
fn fd(a: [u64; 6], i: usize) -> i32 {
    a[i] as i32
}
