//! `procs`: processes — fork, pipes, exec of itself, wait4 statuses, SIGCHLD.
//!
//! Usage: `procs` (the test) or `procs child-exec WORD...` (the exec'd half:
//! prints its arguments and exits 3).  Every line is printed by one process
//! at a time (the parent waits before it prints), so the output is
//! deterministic.  Exit 0 when every check held.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use userland::{errno, errno_name, fork_run, say, set_handler, wait_for};

static SIGCHLD_COUNT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigchld(_sig: i32) {
    SIGCHLD_COUNT.fetch_add(1, Ordering::SeqCst);
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        say(&format!("pipe2 failed: {}", errno_name(errno())));
        std::process::exit(1);
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

fn exec_self(args: &[&str]) -> ! {
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "/init".to_string());
    let c: Vec<CString> = std::iter::once(me.as_str())
        .chain(args.iter().copied())
        .map(|s| CString::new(s).unwrap())
        .collect();
    let mut argv: Vec<*const libc::c_char> = c.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let env = [CString::new("FROM=procs").unwrap()];
    let envp = [env[0].as_ptr(), std::ptr::null()];
    // SAFETY: NULL-terminated arrays of live C strings.
    unsafe { libc::execve(c[0].as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    say(&format!("execve failed: {}", errno_name(errno())));
    // SAFETY: leave the child at once.
    unsafe { libc::_exit(1) }
}

fn main() {
    let args = userland::args();
    if args.first().map(String::as_str) == Some("child-exec") {
        say(&format!(
            "exec'd child: args {:?}, FROM={}",
            &args[1..],
            std::env::var("FROM").unwrap_or_default()
        ));
        say(&format!(
            "exec'd child: parent is pid 1: {}",
            // SAFETY: getppid takes no arguments.
            unsafe { libc::getppid() } == 1
        ));
        std::process::exit(3);
    }
    let mut ok = true;
    let mut expect = |what: &str, got: String, want: &str| {
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };
    if let Err(e) = set_handler(
        libc::SIGCHLD,
        on_sigchld as *const () as usize,
        libc::SA_RESTART,
    ) {
        say(&format!("sigaction SIGCHLD failed: {e}"));
    }

    // 1. fork + pipe: the child writes, the parent reads, then reaps status 7.
    let (mut rd, mut wr) = pipe();
    // SAFETY: getpid takes no arguments.
    let parent_pid = unsafe { libc::getpid() };
    let child = fork_run(|| {
        // SAFETY: getppid takes no arguments.
        let ppid_ok = unsafe { libc::getppid() } == parent_pid;
        let _ = write!(wr, "hello through the pipe (ppid ok: {ppid_ok})");
        7
    });
    drop(wr);
    let mut text = String::new();
    let _ = rd.read_to_string(&mut text);
    expect(
        "pipe from child",
        text,
        "hello through the pipe (ppid ok: true)",
    );
    match child {
        Ok(pid) => expect("fork child", wait_for(pid), "exited 7"),
        Err(e) => expect("fork", e, "ok"),
    }
    expect(
        "SIGCHLD delivered",
        (SIGCHLD_COUNT.load(Ordering::SeqCst) >= 1).to_string(),
        "true",
    );

    // 2. fork + execve of ourselves with arguments; status 3.
    match fork_run(|| exec_self(&["child-exec", "alpha", "beta"])) {
        Ok(pid) => expect("exec'd child", wait_for(pid), "exited 3"),
        Err(e) => expect("fork for exec", e, "ok"),
    }

    // 3. Several children reaped by pid, in reverse order.
    let pids: Vec<_> = (0..3)
        .filter_map(|i| fork_run(move || 10 + i).ok())
        .collect();
    for (i, pid) in pids.iter().enumerate().rev() {
        expect(
            &format!("child {i}"),
            wait_for(*pid),
            &format!("exited {}", 10 + i),
        );
    }
    // No children left: wait4 says ECHILD.
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(-1, &mut status, 0) };
    expect(
        "wait with no children",
        if r < 0 {
            errno_name(errno())
        } else {
            format!("pid {r}")
        },
        "ECHILD",
    );
    // WNOHANG on a running child returns 0.
    let (mut rd2, wr2) = pipe();
    let wr2_fd = std::os::fd::AsRawFd::as_raw_fd(&wr2);
    match fork_run(move || {
        // The child's copy of the write end would keep the pipe open.
        // SAFETY: closes our own inherited descriptor, owned by nothing here.
        unsafe { libc::close(wr2_fd) };
        let mut b = [0u8; 1];
        let _ = rd2.read(&mut b);
        0
    }) {
        Ok(pid) => {
            // SAFETY: as above.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            expect("WNOHANG on a running child", r.to_string(), "0");
            drop(wr2); // EOF lets the child finish.
            expect("child after EOF", wait_for(pid), "exited 0");
        }
        Err(e) => expect("fork", e, "ok"),
    }

    // 4. std::process::Command: spawn + pipes for stdout (posix_spawn/vfork in musl).
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "/init".to_string());
    match std::process::Command::new(&me)
        .args(["child-exec", "gamma"])
        .output()
    {
        Ok(out) => {
            expect(
                "Command output",
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                "exec'd child: args [\"gamma\"], FROM=",
            );
            expect(
                "Command status",
                format!("{:?}", out.status.code()),
                "Some(3)",
            );
        }
        Err(e) => expect("Command spawn", e.to_string(), "ok"),
    }

    // 5. A pipe's write end closed: write gives EPIPE (SIGPIPE ignored).
    // SAFETY: setting SIGPIPE to SIG_IGN is async-signal-safe and ours to do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (rd3, mut wr3) = pipe();
    drop(rd3);
    let r = wr3.write(b"x");
    expect(
        "write to a pipe without readers",
        r.map(|n| n.to_string())
            .unwrap_or_else(|e| errno_name(e.raw_os_error().unwrap_or(0))),
        "EPIPE",
    );

    // 6. execve's argument limits (Linux: a string of more than
    // MAX_ARG_STRLEN = 32 pages, NUL included, or strings adding up to more
    // than a quarter of the stack limit, are E2BIG).  Made in this process:
    // a successful exec would replace it and change the output.
    let me = std::env::args()
        .next()
        .unwrap_or_else(|| "/init".to_string());
    let exec_errno = |args: &[CString]| {
        let path = CString::new(me.as_str()).unwrap();
        let mut argv: Vec<*const libc::c_char> = vec![path.as_ptr()];
        argv.extend(args.iter().map(|a| a.as_ptr()));
        argv.push(std::ptr::null());
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        // SAFETY: NULL-terminated arrays of live C strings.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno_name(errno())
    };
    let long = CString::new(vec![b'a'; 32 * 4096]).unwrap();
    expect(
        "execve with a 128 KiB argument",
        exec_errno(&[long]),
        "E2BIG",
    );
    let many: Vec<CString> = (0..40)
        .map(|_| CString::new(vec![b'b'; 100 * 1024]).unwrap())
        .collect();
    expect("execve with 4 MB of arguments", exec_errno(&many), "E2BIG");

    // 7. clone with CLONE_PARENT_SETTID and an unmapped parent_tid: Linux
    // ignores the failed store and the child runs (once, here, the child
    // was left half-made and never reaped: a leak per call).
    let _ = std::io::stdout().flush();
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child
    // leaves at once with `_exit`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong | libc::CLONE_PARENT_SETTID as libc::c_ulong,
            0usize,
            8usize, // unmapped
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: leave the child at once.
        unsafe { libc::_exit(7) }
    }
    let got = if pid < 0 {
        errno_name(errno())
    } else {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        format!("child exited {}", libc::WEXITSTATUS(status))
    };
    expect("clone with a bad parent_tid pointer", got, "child exited 7");

    let _ = std::io::stdout().flush();
    say(&format!("procs: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
