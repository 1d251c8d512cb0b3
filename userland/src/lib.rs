//! Shared helpers of the static Linux test programs in `src/bin/`.
//!
//! Owns: errno names, thin checked wrappers over raw `libc` calls, and the
//! output conventions every program follows (one fact per line, no timings,
//! no addresses, no pids other than "is it 1"), so that the same binary prints
//! the same text on Linux and on this kernel and the outputs can be diffed.
//!
//! Invariants: nothing here panics on a failed system call; a failure becomes
//! an errno *name* in the output.  It must not print anything that varies
//! between runs or between kernels (times, addresses, pids of children).

use std::io::Write;

/// This kernel's IPC calls (`abi::ipc`, docs/IPC.md).
pub mod ipc;

/// This kernel's device-driver call (`abi::dev`).
pub mod dev;
/// The gate serving threads park at during a server hand-over.
pub mod park_gate;
/// Where the OS servers' threads run (`placement=` in their argv).
pub mod placement;
/// The server side of the request slots (dedicated placement).
pub mod slot_server;

/// The packet rings between the NIC driver and the network server.
pub mod nicring;

/// netd's NIC backend over those rings.
pub mod netd_nic;

pub mod netd_arena;

/// Sharing-plugin window markers (one file with `wis`'s, the same protocol).
#[path = "../../comparison/workloads/src/marker.rs"]
pub mod marker;

/// The calling thread's `errno` after a failed libc call.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The Linux name of an errno value (`EFAULT`), or `E?<n>` for unknown ones.
pub fn errno_name(e: i32) -> String {
    match abi::Errno(e).name() {
        Some(name) => name.to_string(),
        None => format!("E?{e}"),
    }
}

/// Result of a raw system call: `Ok(value)` or `Err(errno name)`.
pub fn check(ret: i64) -> Result<i64, String> {
    if ret < 0 {
        Err(errno_name(errno()))
    } else {
        Ok(ret)
    }
}

/// Describe a raw libc return value as `ok` / `ok(N)` or the errno name.
/// `ret` is what the libc wrapper returned (-1 with errno on failure).
pub fn outcome(ret: i64) -> String {
    match check(ret) {
        Ok(0) => "ok".to_string(),
        Ok(n) => format!("ok({n})"),
        Err(name) => name,
    }
}

/// Describe the status word of `wait4`/`waitpid` the same way on any kernel:
/// `exited N`, `killed by SIGNAME`, or `status 0x..` for anything else.
pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exited {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by {}", signal_name(libc::WTERMSIG(status)))
    } else {
        format!("status {status:#x}")
    }
}

/// The name of a signal number (`SIGSEGV`), or `SIG?<n>`.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        _ => return format!("SIG?{sig}"),
    };
    name.to_string()
}

/// Print one line and flush at once, so that output written before a
/// `fork` is never duplicated and lines from different processes do not mix.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Fork; the child runs `child` and exits with the code it returns (never
/// returning here).  Returns the child's pid, or the errno name.
pub fn fork_run(child: impl FnOnce() -> i32) -> Result<libc::pid_t, String> {
    let _ = std::io::stdout().flush();
    // SAFETY: the child only runs `child` and then `_exit`s; the programs that
    // call this are single-threaded at the time of the fork, so no lock held
    // by another thread can be inherited locked.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(errno_name(errno())),
        0 => {
            let code = child();
            let _ = std::io::stdout().flush();
            // SAFETY: ends the child without running the parent's atexit
            // handlers twice.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Wait for `pid` and describe how it ended.
pub fn wait_for(pid: libc::pid_t) -> String {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return describe_status(status);
        }
        if r < 0 && errno() != libc::EINTR {
            return format!("wait failed: {}", errno_name(errno()));
        }
    }
}

/// Install `handler` for `sig` with `flags` (SA_SIGINFO etc.).
pub fn set_handler(sig: i32, handler: usize, flags: i32) -> Result<(), String> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty mask and no flags.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    // SAFETY: `act` is fully initialised; the old action is not asked for.
    let r = unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) };
    check(r as i64).map(|_| ())
}

/// The program's arguments after argv[0].
pub fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}
