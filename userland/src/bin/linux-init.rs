//! `linux-init`: PID 1 shim for the Linux side of a comparison run.
//!
//! Linux starts it as `rdinit=/linux-init`.  It prepares what this project's
//! kernel provides by itself to PID 1 (DESIGN.md §6, docs/USERSPACE.md
//! "Boot to PID 1"): `/dev` (devtmpfs: null, zero, console, plus the links
//! fd, stdin, stdout, stderr into /proc/self/fd), `/proc`, `/tmp`,
//! fds 0–2 on the console, umask 022, the loopback interface up, and with a
//! NIC `eth0` configured from `net=IP/PREFIX[,gw=IP]` on the command line
//! (default 10.0.2.15/24 via 10.0.2.2, as ours): it first loads the modules
//! the harness put in `/lib/modules/<release>/` (each module's `modules.dep`
//! dependencies first, with `finit_module`).  argv and the environment come
//! from `/.init/argv` and `/.init/envp` (NUL-terminated entries, the format
//! our kernel reads; else the words after `--` and `HOME=/ TERM=linux
//! PATH=...`).  Those files, the modules and the temporary `/sys` are removed
//! before the program starts, so it sees the same root as on our kernel.
//! It prints Linux's `/sys/devices/system/cpu/vulnerabilities/*` lines as
//! `linux-init: vulnerability: NAME: TEXT` (the harness records them and drops
//! them from the program's output).  Then `/init` runs as PID 1 — of a new PID
//! namespace, in a child: `getpid()` is 1, `getppid()` is 0, orphans are
//! reparented to it and signals without a handler do not kill it, as for the
//! real init — with every signal disposition at its default and an empty
//! signal mask (Rust's runtime ignores SIGPIPE here; a plain Linux init does not).
//!
//! Why not simply `execve` `/init` here: when the real PID 1 exits, Linux
//! panics at once, before the serial driver has sent what the program wrote
//! last (its last lines were lost in practice).  So this process waits for
//! the program, drains the console (`tcdrain`), and only then exits with the
//! program's status (128 + N if a signal N killed it): the harness reads
//! that status from Linux's `Attempted to kill init! exitcode=` line.
//!
//! It must print nothing else on success (the outputs are compared line by
//! line); a failure is reported on the console with the prefix `linux-init:`
//! and ends with exit status 127.

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

/// Where the harness puts PID 1's argv and environment (kernel/src/cmdline.rs).
const ARGV_FILE: &str = "/.init/argv";
const ENVP_FILE: &str = "/.init/envp";
const ARGS_DIR: &str = "/.init";
/// PID 1's environment when there is no `/.init/envp`.
const DEFAULT_ENV: [&str; 3] = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"];
/// Prefix of the vulnerability lines (comparison/src/linux.rs `VULN_PREFIX`).
const VULN_PREFIX: &str = "linux-init: vulnerability: ";

fn fail(msg: &str) -> ! {
    let msg = format!("linux-init: {msg}\n");
    // SAFETY: writes a valid buffer to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::exit(127);
}

fn say(line: &str) {
    let line = format!("{line}\n");
    // SAFETY: writes a valid buffer to fd 1.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

fn unlink(path: &str) {
    let c = CString::new(path).expect("no NUL in path");
    // SAFETY: `c` is a valid C string.
    unsafe { libc::unlink(c.as_ptr()) };
}

fn rmdir(path: &str) {
    let c = CString::new(path).expect("no NUL in path");
    // SAFETY: `c` is a valid C string; fails harmlessly if not empty.
    unsafe { libc::rmdir(c.as_ptr()) };
}

/// Entries each followed by a NUL byte; `None` for a malformed file.
fn nul_list(data: &[u8]) -> Option<Vec<CString>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let body = data.strip_suffix(&[0])?;
    body.split(|b| *b == 0)
        .map(|e| CString::new(e.to_vec()).ok())
        .collect()
}

/// argv and envp from `/.init/{argv,envp}` (removed once read), else from
/// our own arguments after `--` and the default environment.
fn program_vectors() -> (Vec<CString>, Vec<CString>) {
    let argv = match std::fs::read(ARGV_FILE) {
        Ok(data) => match nul_list(&data) {
            Some(v) if !v.is_empty() => v,
            Some(_) => fail(&format!(
                "{ARGV_FILE}: no entries (argv[0] at least is needed)"
            )),
            None => fail(&format!(
                "{ARGV_FILE}: the last entry lacks its terminating NUL byte"
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // argv[0] is the program's path; the rest are the words after
            // `--` on the Linux command line (our own argv[1..]).
            let mut argv = vec![CString::new("/init").unwrap()];
            for arg in std::env::args_os().skip(1) {
                use std::os::unix::ffi::OsStringExt;
                argv.push(
                    CString::new(arg.into_vec()).unwrap_or_else(|_| fail("argument with NUL byte")),
                );
            }
            argv
        }
        Err(e) => fail(&format!("{ARGV_FILE}: {e}")),
    };
    let envp = match std::fs::read(ENVP_FILE) {
        Ok(data) => nul_list(&data).unwrap_or_else(|| {
            fail(&format!(
                "{ENVP_FILE}: the last entry lacks its terminating NUL byte"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_ENV
            .iter()
            .map(|s| CString::new(*s).unwrap())
            .collect(),
        Err(e) => fail(&format!("{ENVP_FILE}: {e}")),
    };
    unlink(ARGV_FILE);
    unlink(ENVP_FILE);
    rmdir(ARGS_DIR);
    (argv, envp)
}

/// Print `/sys/devices/system/cpu/vulnerabilities/*` (sysfs mounted on a
/// temporary `/sys`, removed again).
fn print_vulnerabilities() {
    mkdir("/sys", 0o555);
    mount("sysfs", "/sys", "sysfs");
    let dir = "/sys/devices/system/cpu/vulnerabilities";
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_default();
                say(&format!("{VULN_PREFIX}{name}: {}", text.trim()));
            }
        }
        Err(_) => say(&format!("{VULN_PREFIX}none: {dir} is missing")),
    }
    let target = CString::new("/sys").unwrap();
    // SAFETY: unmounts the sysfs mounted above.
    unsafe { libc::umount2(target.as_ptr(), 0) };
    rmdir("/sys");
}

/// Load every module of `/lib/modules/<release>/modules.dep`, dependencies
/// first, then remove the modules from the root.
fn load_modules() {
    // SAFETY: utsname is plain data: all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid out-pointer.
    unsafe { libc::uname(&mut uts) };
    // SAFETY: uname NUL-terminates `release`.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let base = format!("/lib/modules/{release}");
    let Ok(dep) = std::fs::read_to_string(format!("{base}/modules.dep")) else {
        return;
    };
    let deps: Vec<(String, Vec<String>)> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| {
            (
                m.trim().to_string(),
                d.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect();
    let mut loaded: Vec<String> = Vec::new();
    fn load(
        module: &str,
        base: &str,
        deps: &[(String, Vec<String>)],
        loaded: &mut Vec<String>,
        depth: usize,
    ) {
        if loaded.iter().any(|m| m == module) || depth > 32 {
            return;
        }
        if let Some((_, ds)) = deps.iter().find(|(m, _)| m == module) {
            for d in ds {
                load(d, base, deps, loaded, depth + 1);
            }
        }
        loaded.push(module.to_string());
        let path = format!("{base}/{module}");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => fail(&format!("module {path}: {e}")),
        };
        use std::os::fd::AsRawFd;
        let params = CString::new("").unwrap();
        // SAFETY: finit_module with an open module file and empty parameters.
        let r =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        if r != 0 && userland::errno() != libc::EEXIST {
            fail(&format!(
                "loading module {path}: {}",
                userland::errno_name(userland::errno())
            ));
        }
    }
    for (module, _) in &deps {
        load(module, &base, &deps, &mut loaded, 0);
    }
    let _ = std::fs::remove_dir_all(&base);
    rmdir("/lib/modules");
    rmdir("/lib");
}

/// `net=IP/PREFIX[,gw=IP]` from the kernel command line, else QEMU's
/// user-mode default; the same syntax as our kernel (kernel/src/cmdline.rs).
fn net_config() -> ([u8; 4], u8, Option<[u8; 4]>) {
    let default = ([10, 0, 2, 15], 24, Some([10, 0, 2, 2]));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(value) = cmdline
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("net="))
        .last()
    else {
        return default;
    };
    let ip4 = |t: &str| -> Option<[u8; 4]> {
        let parts: Vec<u8> = t
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        parts.try_into().ok()
    };
    let parsed = (|| {
        let (addr, gw) = match value.split_once(',') {
            Some((a, rest)) => (a, Some(ip4(rest.strip_prefix("gw=")?)?)),
            None => (value, None),
        };
        let (ip, prefix) = addr.split_once('/')?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some((ip4(ip)?, prefix, gw))
    })();
    parsed.unwrap_or_else(|| fail(&format!("bad net={value} (expected IP/PREFIX[,gw=IP])")))
}

fn sockaddr_in(ip: [u8; 4]) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; any bytes are a valid sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Configure `eth0` (address, netmask, up, default route) if it exists.
fn eth0_up() {
    let name = CString::new("eth0").unwrap();
    // SAFETY: a valid C string; 0 means no such interface.
    if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
        return;
    }
    let (ip, prefix, gateway) = net_config();
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
    .to_be_bytes();
    // SAFETY: a datagram socket used only for interface ioctls; `ifr` is a
    // zeroed ifreq with the name filled in, valid for each ioctl; `route`
    // is a zeroed rtentry whose device pointer outlives the call.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            fail("socket for eth0");
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"eth0\0") {
            *dst = *src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_addr = sockaddr_in(ip);
        if libc::ioctl(sock, libc::SIOCSIFADDR as libc::Ioctl, &ifr) < 0 {
            fail(&format!(
                "SIOCSIFADDR eth0: {}",
                userland::errno_name(userland::errno())
            ));
        }
        ifr.ifr_ifru.ifru_netmask = sockaddr_in(mask);
        if libc::ioctl(sock, libc::SIOCSIFNETMASK as libc::Ioctl, &ifr) < 0 {
            fail("SIOCSIFNETMASK eth0");
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS as libc::Ioctl, &mut ifr) < 0 {
            fail("SIOCGIFFLAGS eth0");
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock, libc::SIOCSIFFLAGS as libc::Ioctl, &ifr) < 0 {
            fail("SIOCSIFFLAGS eth0");
        }
        if let Some(gw) = gateway {
            let mut route: libc::rtentry = std::mem::zeroed();
            route.rt_dst = sockaddr_in([0; 4]);
            route.rt_genmask = sockaddr_in([0; 4]);
            route.rt_gateway = sockaddr_in(gw);
            route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
            let mut dev = *b"eth0\0";
            route.rt_dev = dev.as_mut_ptr().cast();
            if libc::ioctl(sock, libc::SIOCADDRT as libc::Ioctl, &route) < 0 {
                fail(&format!(
                    "SIOCADDRT default via eth0: {}",
                    userland::errno_name(userland::errno())
                ));
            }
        }
        libc::close(sock);
    }
}

/// Every signal back to its default disposition, none blocked: what a
/// program started by a plain Linux init gets (run in the child before execve).
fn reset_signals() {
    // SAFETY: sigaction with a zeroed action (SIG_DFL, empty mask) for each
    // signal (SIGKILL/SIGSTOP and libc's internal ones refuse harmlessly);
    // sigprocmask with an empty set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        for sig in 1..=libc::SIGRTMAX() {
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// The links a distribution's init (udev, systemd) makes in /dev and that
/// devtmpfs lacks; our kernel's /dev has them too (bash's `<(...)` needs
/// /dev/fd).
fn dev_links() {
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let (l, t) = (CString::new(link).unwrap(), CString::new(target).unwrap());
        // SAFETY: both are valid C strings.
        if unsafe { libc::symlink(t.as_ptr(), l.as_ptr()) } != 0
            && userland::errno() != libc::EEXIST
        {
            warn(&format!("symlink {link}"));
        }
    }
}

fn main() {
    mkdir("/dev", 0o755);
    mount("devtmpfs", "/dev", "devtmpfs");
    console_fds();
    mkdir("/proc", 0o555);
    mount("proc", "/proc", "proc");
    dev_links();
    mkdir("/tmp", 0o1777);
    // SAFETY: umask only changes this process's creation mask.
    unsafe { libc::umask(0o022) };
    loopback_up();
    print_vulnerabilities();
    load_modules();
    eth0_up();

    let (argv, envp) = program_vectors();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let path = CString::new("/init").unwrap();
    // Children made after this go into a new PID namespace; the first is its PID 1.
    // SAFETY: unshare only changes this process's namespace for new children.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        warn("unshare(CLONE_NEWPID)");
        std::process::exit(127);
    }
    // SAFETY: this process is single-threaded; the child only resets its
    // signals and calls execve (and write/_exit if that fails).
    let child = unsafe { libc::fork() };
    if child < 0 {
        warn("fork");
        std::process::exit(127);
    }
    if child == 0 {
        reset_signals();
        // SAFETY: both arrays are NULL-terminated and point at live C strings.
        unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
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
