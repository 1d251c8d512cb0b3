//! `sigstart`: the signal state a program inherits from whoever started it,
//! and what that means for `yes | head`-style pipelines.
//!
//! `#![no_main]`: Rust's runtime (`lang_start`) would set SIGPIPE to
//! ignored before `main`, hiding the inherited disposition; here musl's C
//! start calls `main` directly, so the first thing this program sees is what
//! execve gave it.  Prints one fact a line:
//! - which signals are ignored and which are blocked at start (both must be
//!   none for a program started by a plain init);
//! - with `/proc/self/status` present: its `SigIgn:` and `SigBlk:` values
//!   (all zero is right);
//! - a child that writes to a pipe whose read end is closed dies of SIGPIPE
//!   (the default action), as `yes` in `yes | head -n 1` must.
//!
//! Ends with `sigstart: pass`, or marks wrong facts with `<-- WRONG`.
#![no_main]

fn line(text: &str) {
    let text = format!("{text}\n");
    // SAFETY: writes a valid buffer to fd 1.
    unsafe { libc::write(1, text.as_ptr().cast(), text.len()) };
}

/// Signals 1..=64 whose disposition is SIG_IGN, and those blocked.
fn inherited() -> (Vec<i32>, Vec<i32>) {
    let mut ignored = Vec::new();
    let mut blocked = Vec::new();
    // SAFETY: queries only (null new action / new mask), valid out-pointers.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        for sig in 1..=64 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                ignored.push(sig);
            }
            if libc::sigismember(&mask, sig) == 1 {
                blocked.push(sig);
            }
        }
    }
    (ignored, blocked)
}

fn names(sigs: &[i32]) -> String {
    if sigs.is_empty() {
        "none".to_string()
    } else {
        sigs.iter()
            .map(|s| userland::signal_name(*s))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How a child that writes to a pipe without readers ends.
fn write_to_closed_pipe() -> String {
    let mut fds = [0; 2];
    // SAFETY: pipe/fork/write/_exit/close/waitpid on our own descriptors;
    // the child only writes and exits.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return "pipe failed".into();
        }
        libc::close(fds[0]);
        let pid = libc::fork();
        if pid == 0 {
            let r = libc::write(fds[1], b"y\n".as_ptr().cast(), 2);
            // Still alive: the write failed (EPIPE) instead of killing us.
            libc::_exit(if r < 0 { 3 } else { 4 });
        }
        libc::close(fds[1]);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        userland::describe_status(status)
    }
}

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let (ignored, blocked) = inherited();
    let mut ok = true;
    let mut fact = |what: &str, value: String, good: bool| {
        ok &= good;
        line(&format!(
            "{what}: {value}{}",
            if good { "" } else { " <-- WRONG" }
        ));
    };
    fact("ignored at start", names(&ignored), ignored.is_empty());
    fact("blocked at start", names(&blocked), blocked.is_empty());
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for key in ["SigIgn:", "SigBlk:"] {
            if let Some(l) = status.lines().find(|l| l.starts_with(key)) {
                let value = l[key.len()..].trim().to_string();
                let zero = value.bytes().all(|b| b == b'0');
                fact(
                    &format!("/proc/self/status {}", key.trim_end_matches(':')),
                    value,
                    zero,
                );
            }
        }
    }
    let end = write_to_closed_pipe();
    let good = end.contains("SIGPIPE");
    fact("child writing to a closed pipe", end, good);
    line(if ok {
        "sigstart: pass"
    } else {
        "sigstart: FAIL"
    });
    0
}
