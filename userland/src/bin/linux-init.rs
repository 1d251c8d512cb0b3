//! `linux-init`: PID 1 shim for the Linux side of a comparison run.
//!
//! Linux starts it as `rdinit=/linux-init -- ARGS`.  It prepares what this
//! project's kernel provides by itself to PID 1 (DESIGN.md §6, docs/USERSPACE.md
//! "Boot to PID 1"): `/dev` (devtmpfs: null, zero, console), `/proc`, `/tmp`,
//! fds 0–2 on the console, umask 022, the environment `HOME=/ TERM=linux
//! PATH=...`, and the loopback interface up.  Then `/init` runs with ARGS as
//! PID 1 — of a new PID namespace, in a child: `getpid()` is 1, `getppid()`
//! is 0, orphans are reparented to it and signals without a handler do not
//! kill it, as for the real init.
//!
//! Why not simply `execve` `/init` here: when the real PID 1 exits, Linux
//! panics at once, before the serial driver has sent what the program wrote
//! last (its last lines were lost in practice).  So this process waits for
//! the program, drains the console (`tcdrain`), and only then exits with the
//! program's status (128 + N if a signal N killed it): the harness reads
//! that status from Linux's `Attempted to kill init! exitcode=` line.
//!
//! It must print nothing on success (the outputs are compared line by line);
//! a failure is reported on the console with the prefix `linux-init:` and
//! ends with exit status 127.

use std::ffi::CString;

fn warn(what: &str) {
    let msg = format!(
        "linux-init: {what}: {}\n",
        userland::errno_name(userland::errno())
    );
    // SAFETY: writes a valid buffer to fd 2 (the console, if open).
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

fn mkdir(path: &str, mode: libc::mode_t) {
    let c = CString::new(path).expect("no NUL in path");
    // SAFETY: `c` is a valid C string.
    if unsafe { libc::mkdir(c.as_ptr(), mode) } != 0 && userland::errno() != libc::EEXIST {
        warn(&format!("mkdir {path}"));
    }
}

fn mount(source: &str, target: &str, fstype: &str) {
    let (s, t, f) = (
        CString::new(source).unwrap(),
        CString::new(target).unwrap(),
        CString::new(fstype).unwrap(),
    );
    // SAFETY: valid C strings, no data argument.
    if unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) } != 0
        && userland::errno() != libc::EBUSY
    {
        warn(&format!("mount {fstype} on {target}"));
    }
}

/// Make sure fds 0, 1, 2 are open on the console (Linux leaves them closed
/// when the initramfs has no /dev/console).
fn console_fds() {
    // SAFETY: F_GETFD on a possibly closed fd only reports EBADF.
    let open = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    if open(0) && open(1) && open(2) {
        return;
    }
    let path = CString::new("/dev/console").unwrap();
    for fd in 0..3 {
        // SAFETY: plain open/dup2/close of our own descriptors.
        unsafe {
            libc::close(fd);
            let got = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            if got >= 0 && got != fd {
                libc::dup2(got, fd);
                libc::close(got);
            }
        }
    }
}

/// Bring the loopback interface up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP).
fn loopback_up() {
    // SAFETY: a datagram socket used only for interface ioctls; `ifr` is a
    // zeroed ifreq whose name we fill in, valid for both ioctls.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            warn("socket for lo");
            return;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as libc::Ioctl, &mut ifr) < 0 {
            warn("SIOCGIFFLAGS lo");
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS as libc::Ioctl, &ifr) < 0 {
                warn("SIOCSIFFLAGS lo");
            }
        }
        libc::close(sock);
    }
}

fn main() {
    mkdir("/dev", 0o755);
    mount("devtmpfs", "/dev", "devtmpfs");
    console_fds();
    mkdir("/proc", 0o555);
    mount("proc", "/proc", "proc");
    mkdir("/tmp", 0o1777);
    // SAFETY: umask only changes this process's creation mask.
    unsafe { libc::umask(0o022) };
    loopback_up();

    // argv[0] of the program is its path, as on our kernel; the rest are the
    // words after `--` on the Linux command line (our own argv[1..]).
    let mut argv: Vec<CString> = vec![CString::new("/init").unwrap()];
    for arg in std::env::args_os().skip(1) {
        use std::os::unix::ffi::OsStringExt;
        match CString::new(arg.into_vec()) {
            Ok(c) => argv.push(c),
            Err(_) => {
                warn("argument with NUL byte");
                std::process::exit(127);
            }
        }
    }
    let envp: Vec<CString> = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"]
        .iter()
        .map(|s| CString::new(*s).unwrap())
        .collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // Children made after this go into a new PID namespace; the first is its PID 1.
    // SAFETY: unshare only changes this process's namespace for new children.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        warn("unshare(CLONE_NEWPID)");
        std::process::exit(127);
    }
    // SAFETY: this process is single-threaded; the child only calls execve
    // (and write/_exit if that fails).
    let child = unsafe { libc::fork() };
    if child < 0 {
        warn("fork");
        std::process::exit(127);
    }
    if child == 0 {
        // SAFETY: both arrays are NULL-terminated and point at live C strings.
        unsafe { libc::execve(argv[0].as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
        warn("execve /init");
        // SAFETY: leave the child without running anything else.
        unsafe { libc::_exit(127) };
    }
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == child {
            break;
        }
        if r < 0 && userland::errno() != libc::EINTR {
            warn("waitpid /init");
            std::process::exit(127);
        }
    }
    // Everything the program wrote must be on the wire before Linux panics.
    // SAFETY: tcdrain on our console descriptors; errors (not a tty) are harmless.
    unsafe {
        libc::tcdrain(1);
        libc::tcdrain(2);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        127
    };
    std::process::exit(code);
}
