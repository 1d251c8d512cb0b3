//! `signals`: handlers, masks, kill/tgkill to self, SA_SIGINFO, sigaltstack,
//! SIG_IGN, and signals to children (SIGTERM default and handled, SIGKILL,
//! exit-by-signal statuses).
//!
//! The parent synchronises with each child through a pipe before signalling
//! it, so every line is deterministic.  Exit 0 when every check held.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use userland::{errno, errno_name, fork_run, say, set_handler, wait_for};

static USR1: AtomicU32 = AtomicU32::new(0);
static USR2: AtomicU32 = AtomicU32::new(0);
static INFO_PID: AtomicI32 = AtomicI32::new(0);
static INFO_SIGNO: AtomicI32 = AtomicI32::new(0);
static ALT_LOW: AtomicUsize = AtomicUsize::new(0);
static ALT_HIGH: AtomicUsize = AtomicUsize::new(0);
static ON_ALT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_sig: i32) {
    USR1.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_usr2_info(sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    USR2.fetch_add(1, Ordering::SeqCst);
    // SAFETY: SA_SIGINFO handlers get a valid siginfo.
    unsafe {
        INFO_SIGNO.store((*info).si_signo, Ordering::SeqCst);
        INFO_PID.store((*info).si_pid(), Ordering::SeqCst);
    }
    let _ = sig;
}

extern "C" fn on_alt(_sig: i32) {
    let local = 0u8;
    let at = &local as *const u8 as usize;
    let on = at >= ALT_LOW.load(Ordering::SeqCst) && at < ALT_HIGH.load(Ordering::SeqCst);
    ON_ALT.store(if on { 1 } else { 2 }, Ordering::SeqCst);
}

extern "C" fn on_term_exit(_sig: i32) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(42) };
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0i32; 2];
    // SAFETY: room for two descriptors; both become owned Files.
    unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC);
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

fn mask(how: i32, sig: i32) -> i64 {
    // SAFETY: sigset_t is plain data; the calls only fill or read it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(how, &set, std::ptr::null_mut()) as i64
    }
}

fn main() {
    let mut ok = true;
    let mut expect = |what: &str, got: String, want: &str| {
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };
    // SAFETY: getpid/gettid take no arguments.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };

    // 1. A handler runs on kill(self).
    expect(
        "sigaction SIGUSR1",
        set_handler(libc::SIGUSR1, on_usr1 as *const () as usize, 0)
            .map(|_| "ok".into())
            .unwrap_or_else(|e| e),
        "ok",
    );
    // SAFETY: signalling ourselves.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    expect(
        "handler ran after kill",
        USR1.load(Ordering::SeqCst).to_string(),
        "1",
    );

    // 2. Blocked: pending, not delivered; delivered on unblock.
    expect(
        "block SIGUSR1",
        userland::outcome(mask(libc::SIG_BLOCK, libc::SIGUSR1)),
        "ok",
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    expect(
        "handler while blocked",
        USR1.load(Ordering::SeqCst).to_string(),
        "1",
    );
    expect(
        "unblock SIGUSR1",
        userland::outcome(mask(libc::SIG_UNBLOCK, libc::SIGUSR1)),
        "ok",
    );
    expect(
        "handler after unblock",
        USR1.load(Ordering::SeqCst).to_string(),
        "2",
    );

    // 3. SA_SIGINFO through tgkill to this thread.
    let _ = set_handler(
        libc::SIGUSR2,
        on_usr2_info as *const () as usize,
        libc::SA_SIGINFO,
    );
    // SAFETY: signalling our own thread.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR2) };
    expect("tgkill self", userland::outcome(r), "ok");
    expect(
        "SA_SIGINFO handler ran",
        USR2.load(Ordering::SeqCst).to_string(),
        "1",
    );
    expect(
        "si_signo",
        INFO_SIGNO.load(Ordering::SeqCst).to_string(),
        &libc::SIGUSR2.to_string(),
    );
    expect(
        "si_pid is ours",
        (INFO_PID.load(Ordering::SeqCst) == pid).to_string(),
        "true",
    );

    // 4. SIG_IGN: the signal is dropped.
    // SAFETY: setting a disposition.
    unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
    // SAFETY: signalling ourselves.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    expect(
        "ignored signal",
        USR1.load(Ordering::SeqCst).to_string(),
        "2",
    );

    // 5. sigaltstack: an SA_ONSTACK handler runs on the alternate stack.
    let mut alt = vec![0u8; 64 * 1024];
    ALT_LOW.store(alt.as_ptr() as usize, Ordering::SeqCst);
    ALT_HIGH.store(alt.as_ptr() as usize + alt.len(), Ordering::SeqCst);
    let ss = libc::stack_t {
        ss_sp: alt.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: alt.len(),
    };
    // SAFETY: `ss` describes `alt`, which lives until after the signal.
    let r = unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    expect("sigaltstack", userland::outcome(r as i64), "ok");
    let _ = set_handler(
        libc::SIGUSR1,
        on_alt as *const () as usize,
        libc::SA_ONSTACK,
    );
    // SAFETY: signalling ourselves.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    expect(
        "handler on the alternate stack",
        (ON_ALT.load(Ordering::SeqCst) == 1).to_string(),
        "true",
    );
    let off = libc::stack_t {
        ss_sp: std::ptr::null_mut(),
        ss_flags: libc::SS_DISABLE,
        ss_size: 0,
    };
    // SAFETY: disabling the alternate stack before `alt` is freed.
    unsafe { libc::sigaltstack(&off, std::ptr::null_mut()) };
    drop(alt);

    // 6. Bad signal numbers.
    // SAFETY: invalid arguments only fail.
    let r = unsafe { libc::kill(pid, 99) };
    expect("kill with signal 99", userland::outcome(r as i64), "EINVAL");
    // SAFETY: signal 0 to a pid that does not exist only fails.
    let r = unsafe { libc::kill(999_999, 0) };
    expect("kill a missing pid", userland::outcome(r as i64), "ESRCH");
    let r = set_handler(libc::SIGKILL, on_usr1 as *const () as usize, 0);
    expect(
        "handler for SIGKILL",
        r.map(|_| "ok".into()).unwrap_or_else(|e| e),
        "EINVAL",
    );

    // 7. Children: default SIGTERM, handled SIGTERM, SIGKILL, self-signal.
    for (what, handled, sig, want) in [
        (
            "SIGTERM to a child (default action)",
            false,
            libc::SIGTERM,
            "killed by SIGTERM",
        ),
        (
            "SIGTERM to a child with a handler",
            true,
            libc::SIGTERM,
            "exited 42",
        ),
        (
            "SIGKILL to a child",
            false,
            libc::SIGKILL,
            "killed by SIGKILL",
        ),
    ] {
        let (mut rd, mut wr) = pipe();
        let child = fork_run(move || {
            if handled {
                let _ = set_handler(libc::SIGTERM, on_term_exit as *const () as usize, 0);
            }
            let _ = wr.write(b"r");
            loop {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        match child {
            Ok(cpid) => {
                let mut b = [0u8; 1];
                let _ = rd.read(&mut b); // the child is ready
                                         // SAFETY: signalling our own child.
                unsafe { libc::kill(cpid, sig) };
                expect(what, wait_for(cpid), want);
            }
            Err(e) => expect(what, e, "ok"),
        }
    }
    match fork_run(|| {
        // SAFETY: the child signals itself with the default action.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        0
    }) {
        Ok(cpid) => expect(
            "child that SIGTERMs itself",
            wait_for(cpid),
            "killed by SIGTERM",
        ),
        Err(e) => expect("fork", e, "ok"),
    }

    // 8. A signal interrupts a blocking read: EINTR (handler without SA_RESTART).
    let _ = set_handler(libc::SIGUSR1, on_usr1 as *const () as usize, 0);
    // The child signals every 200 ms until the parent closes `done_wr`
    // (its read returned), so a signal that lands before the read blocks
    // is followed by one that interrupts it.  Bounded: after 100 tries the
    // child writes a byte, ending the read with a wrong result, not a hang.
    let (mut rd, wr) = pipe();
    let (done_rd, done_wr) = pipe();
    let (wr_fd, done_wr_fd) = (wr.as_raw_fd(), done_wr.as_raw_fd());
    // SAFETY: getpid has no arguments.
    let parent = unsafe { libc::getpid() };
    let child = fork_run(move || {
        // SAFETY: closes the child's copy, so the parent's close is a hangup.
        unsafe { libc::close(done_wr_fd) };
        for _ in 0..100 {
            let mut p = libc::pollfd {
                fd: done_rd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: `p` is one live pollfd.
            if unsafe { libc::poll(&mut p, 1, 200) } > 0 {
                return 0;
            }
            // SAFETY: signalling our parent.
            unsafe { libc::kill(parent, libc::SIGUSR1) };
        }
        // SAFETY: writes one byte from a live buffer.
        unsafe { libc::write(wr_fd, b"!".as_ptr().cast(), 1) };
        1
    });
    let mut b = [0u8; 1];
    let r = rd.read(&mut b);
    let r = r
        .map(|n| n.to_string())
        .unwrap_or_else(|e| errno_name(e.raw_os_error().unwrap_or(errno())));
    drop(done_wr);
    // Reaped before printing: no late signal arrives after this point.
    let status = child.map(wait_for);
    expect("blocking read interrupted", r, "EINTR");
    drop(wr);
    if let Ok(status) = status {
        expect("signalling child", status, "exited 0");
    }

    let _ = std::io::stdout().flush();
    say(&format!("signals: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
