//! `sysgaps`: differential cases for the system calls no other test program
//! reached: uid/gid calls, process groups and sessions
//! (with kill(0)/kill(-pgid), wait4(0)/wait4(-pgid), waitid(P_PGID)),
//! resource limits, sysinfo, getrandom, gettimeofday, set_robust_list,
//! vfork, waitid, tkill, pause, rt_sigpending, rt_sigsuspend, readv,
//! dup/dup3, fsync/fdatasync, truncate, creat, fchdir, link,
//! fchmod/fchmodat, umask, mknod/mknodat, mkdirat, newfstatat, statx,
//! renameat/renameat2 (NOREPLACE, EXCHANGE), symlinkat, readlinkat,
//! faccessat/faccessat2, utimensat, epoll_create, epoll_wait, and
//! mount/umount2 of a tmpfs with sync/syncfs/fsync on it.
//!
//! Each case calls the raw system call (`libc::syscall`, or inline `asm!`
//! for vfork) so that no libc emulation hides what the kernel does, and
//! prints one deterministic line: the result or errno name, the side effect
//! (mode, size, link count, ids relative to the caller), and bad arguments
//! (EFAULT, EBADF, EINVAL, ENOENT, ...).  No pids, times or addresses are
//! printed, only relations between them.  Runs as PID 1 (or linux-init's
//! child on Linux) in a fresh directory `/sysgaps`; ends `sysgaps: pass`.
//! Lines the program can judge by itself (Linux-documented results) end
//! with `<-- WRONG` when they do not hold; everything else is compared
//! with Linux line by line by the test.

use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use userland::{errno, errno_name, fork_run, say, set_handler, wait_for};

/// Addresses no user pointer may reach (EFAULT).
const BAD: u64 = 0x0000_0100_0000_0000;
const AT_FDCWD: i64 = -100;

static FAILED: AtomicUsize = AtomicUsize::new(0);

/// Raw system call: the value, or -errno.
fn raw(nr: i64, a: &[u64]) -> i64 {
    let mut v = [0u64; 6];
    v[..a.len()].copy_from_slice(a);
    // SAFETY: the point of this program: the kernel checks every argument;
    // every pointer passed is either valid for the call or deliberately bad.
    let r = unsafe { libc::syscall(nr, v[0], v[1], v[2], v[3], v[4], v[5]) };
    if r < 0 {
        -(errno() as i64)
    } else {
        r
    }
}

/// `ok`, `ok(N)` or the errno name of a raw result.
fn show(r: i64) -> String {
    match r {
        0 => "ok".into(),
        r if r > 0 => format!("ok({r})"),
        r => errno_name(-r as i32),
    }
}

/// Prints `what: got`; marks it WRONG when `want` is given and differs.
fn case(what: &str, got: impl std::fmt::Display, want: Option<&str>) {
    let got = got.to_string();
    let wrong = want.is_some_and(|w| w != got);
    if wrong {
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
    say(&format!(
        "{what}: {got}{}",
        if wrong { "  <-- WRONG" } else { "" }
    ));
}

/// A raw call printed with its expected result.
fn expect(what: &str, r: i64, want: &str) {
    case(what, show(r), Some(want));
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// Pointer to a C string as a syscall argument.
fn p(s: &CString) -> u64 {
    s.as_ptr() as u64
}

fn stat_of(path: &str, follow: bool) -> Result<libc::stat, String> {
    // SAFETY: `stat` is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let path = c(path);
    let flags = if follow {
        0
    } else {
        libc::AT_SYMLINK_NOFOLLOW as u64
    };
    let r = raw(
        libc::SYS_newfstatat,
        &[AT_FDCWD as u64, p(&path), &mut st as *mut _ as u64, flags],
    );
    if r < 0 {
        Err(show(r))
    } else {
        Ok(st)
    }
}

/// `mode=OCTAL nlink=N size=N` of a path (not following a last symlink).
fn meta(path: &str) -> String {
    match stat_of(path, false) {
        Ok(st) => format!(
            "mode={:o} nlink={} size={}",
            st.st_mode,
            st.st_nlink,
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                0
            } else {
                st.st_size
            }
        ),
        Err(e) => e,
    }
}

fn open(path: &str, flags: i32, mode: u32) -> i32 {
    let path = c(path);
    raw(
        libc::SYS_openat,
        &[AT_FDCWD as u64, p(&path), flags as u64, mode as u64],
    ) as i32
}

fn close(fd: i32) {
    raw(libc::SYS_close, &[fd as u64]);
}

fn write_file(path: &str, data: &[u8]) {
    let fd = open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
    raw(
        libc::SYS_write,
        &[fd as u64, data.as_ptr() as u64, data.len() as u64],
    );
    close(fd);
}

fn read_file(path: &str) -> String {
    match std::fs::read(path) {
        Ok(d) => String::from_utf8_lossy(&d).into_owned(),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    }
}

// ---------------------------------------------------------------- identity

fn ids(group: bool) -> String {
    let (mut r, mut e, mut s) = (0u32, 0u32, 0u32);
    let nr = if group {
        libc::SYS_getresgid
    } else {
        libc::SYS_getresuid
    };
    let ret = raw(
        nr,
        &[
            &mut r as *mut _ as u64,
            &mut e as *mut _ as u64,
            &mut s as *mut _ as u64,
        ],
    );
    if ret < 0 {
        return show(ret);
    }
    format!("{r} {e} {s}")
}

fn identity() {
    expect("getuid", raw(libc::SYS_getuid, &[]), "ok");
    expect("geteuid", raw(libc::SYS_geteuid, &[]), "ok");
    expect("getgid", raw(libc::SYS_getgid, &[]), "ok");
    expect("getegid", raw(libc::SYS_getegid, &[]), "ok");
    case("getresuid", ids(false), Some("0 0 0"));
    case("getresgid", ids(true), Some("0 0 0"));
    let mut v = 0u32;
    let me = &mut v as *mut u32 as u64;
    expect(
        "getresuid(bad r)",
        raw(libc::SYS_getresuid, &[BAD, me, me]),
        "EFAULT",
    );
    expect(
        "getresgid(bad s)",
        raw(libc::SYS_getresgid, &[me, me, BAD]),
        "EFAULT",
    );
    // Changing ids happens in children, so the rest runs as root.
    let child = fork_run(|| {
        expect("child setgid(100)", raw(libc::SYS_setgid, &[100]), "ok");
        case("child gids after setgid", ids(true), Some("100 100 100"));
        expect(
            "child setregid(200, 300)",
            raw(libc::SYS_setregid, &[200, 300]),
            "ok",
        );
        case("child gids after setregid", ids(true), Some("200 300 300"));
        expect(
            "child setregid(-1, 200)",
            raw(libc::SYS_setregid, &[u32::MAX as u64, 200]),
            "ok",
        );
        case("child gids after setregid(-1, real)", ids(true), None);
        expect(
            "child setresgid(1, 2, 3)",
            raw(libc::SYS_setresgid, &[1, 2, 3]),
            "ok",
        );
        case("child gids after setresgid", ids(true), Some("1 2 3"));
        expect(
            "child getgid/getegid",
            raw(libc::SYS_getgid, &[]) * 10 + raw(libc::SYS_getegid, &[]),
            "ok(12)",
        );
        expect(
            "child setreuid(1000, 1001)",
            raw(libc::SYS_setreuid, &[1000, 1001]),
            "ok",
        );
        case(
            "child uids after setreuid",
            ids(false),
            Some("1000 1001 1001"),
        );
        expect("child getuid", raw(libc::SYS_getuid, &[]), "ok(1000)");
        expect("child geteuid", raw(libc::SYS_geteuid, &[]), "ok(1001)");
        // No longer root: only ids already held.
        expect(
            "child setuid(1000) unprivileged",
            raw(libc::SYS_setuid, &[1000]),
            "ok",
        );
        case(
            "child uids after setuid",
            ids(false),
            Some("1000 1000 1001"),
        );
        expect(
            "child setuid(0) unprivileged",
            raw(libc::SYS_setuid, &[0]),
            "EPERM",
        );
        expect(
            "child setgid(5) unprivileged",
            raw(libc::SYS_setgid, &[5]),
            "EPERM",
        );
        expect(
            "child setresuid(-1, 1001, -1)",
            raw(
                libc::SYS_setresuid,
                &[u32::MAX as u64, 1001, u32::MAX as u64],
            ),
            "ok",
        );
        expect(
            "child setresuid(7, -1, -1)",
            raw(libc::SYS_setresuid, &[7, u32::MAX as u64, u32::MAX as u64]),
            "EPERM",
        );
        expect(
            "child setresgid(9, -1, -1)",
            raw(libc::SYS_setresgid, &[9, u32::MAX as u64, u32::MAX as u64]),
            "EPERM",
        );
        expect(
            "child setreuid(1001, 5)",
            raw(libc::SYS_setreuid, &[1001, 5]),
            "EPERM",
        );
        case("child uids at the end", ids(false), Some("1000 1001 1001"));
        0
    });
    case(
        "id child",
        child.map(wait_for).unwrap_or_else(|e| e),
        Some("exited 0"),
    );
    case("uids of the parent unchanged", ids(false), Some("0 0 0"));
}

// ------------------------------------------------- process groups, sessions

fn groups_and_sessions() {
    let pid = raw(libc::SYS_getpid, &[]);
    // PID 1 starts in the group and session it was given (Linux: those of
    // the kernel's first process, 0); setsid makes it lead its own.
    let r = raw(libc::SYS_setsid, &[]);
    case(
        "setsid() at start",
        r == pid || r == -(libc::EPERM as i64),
        Some("true"),
    );
    case(
        "leads its session and group",
        raw(libc::SYS_getsid, &[0]) == pid && raw(libc::SYS_getpgrp, &[]) == pid,
        Some("true"),
    );
    let pgrp = raw(libc::SYS_getpgrp, &[]);
    case(
        "getpgrp == getpgid(0)",
        pgrp == raw(libc::SYS_getpgid, &[0]),
        Some("true"),
    );
    case(
        "getpgid(self) == getpgid(0)",
        raw(libc::SYS_getpgid, &[pid as u64]) == pgrp,
        Some("true"),
    );
    case(
        "getsid(0) == getsid(self)",
        raw(libc::SYS_getsid, &[0]) == raw(libc::SYS_getsid, &[pid as u64]),
        Some("true"),
    );
    expect(
        "getpgid(no such pid)",
        raw(libc::SYS_getpgid, &[999_999]),
        "ESRCH",
    );
    expect(
        "getsid(no such pid)",
        raw(libc::SYS_getsid, &[999_999]),
        "ESRCH",
    );
    expect(
        "setpgid(0, -1)",
        raw(libc::SYS_setpgid, &[0, -1i64 as u64]),
        "EINVAL",
    );
    expect(
        "setpgid(no such pid, 0)",
        raw(libc::SYS_setpgid, &[999_999, 0]),
        "ESRCH",
    );
    let my_sid = raw(libc::SYS_getsid, &[0]);

    // A child: in its parent's group and session until it moves.
    let (mut to_parent, mut to_child) = ([0i32; 2], [0i32; 2]);
    // SAFETY: arrays of two fds.
    unsafe {
        libc::pipe(to_parent.as_mut_ptr());
        libc::pipe(to_child.as_mut_ptr());
    }
    let child = fork_run(|| {
        let me = raw(libc::SYS_getpid, &[]);
        case(
            "child pgid == parent's",
            raw(libc::SYS_getpgid, &[0]) == pgrp,
            Some("true"),
        );
        case(
            "child sid == parent's",
            raw(libc::SYS_getsid, &[0]) == my_sid,
            Some("true"),
        );
        expect("child setpgid(0, 0)", raw(libc::SYS_setpgid, &[0, 0]), "ok");
        case(
            "child now leads its group",
            raw(libc::SYS_getpgrp, &[]) == me,
            Some("true"),
        );
        case(
            "child setsid() as group leader",
            show(raw(libc::SYS_setsid, &[])),
            Some("EPERM"),
        );
        // Tell the parent, then wait for it to look at us.
        let b = [1u8];
        // SAFETY: valid one-byte buffers.
        unsafe {
            libc::write(to_parent[1], b.as_ptr().cast(), 1);
            let mut r = [0u8];
            libc::read(to_child[0], r.as_mut_ptr().cast(), 1);
        }
        0
    })
    .unwrap_or(-1);
    let mut b = [0u8];
    // SAFETY: valid one-byte buffer.
    unsafe { libc::read(to_parent[0], b.as_mut_ptr().cast(), 1) };
    case(
        "parent sees child's group == child pid",
        raw(libc::SYS_getpgid, &[child as u64]) == child as i64,
        Some("true"),
    );
    case(
        "parent sees child's session == own",
        raw(libc::SYS_getsid, &[child as u64]) == my_sid,
        Some("true"),
    );
    // The parent may move its child into the parent's group and back.
    expect(
        "setpgid(child, own group)",
        raw(libc::SYS_setpgid, &[child as u64, pgrp as u64]),
        "ok",
    );
    case(
        "child's group is ours again",
        raw(libc::SYS_getpgid, &[child as u64]) == pgrp,
        Some("true"),
    );
    // SAFETY: valid one-byte buffer.
    unsafe { libc::write(to_child[1], b.as_ptr().cast(), 1) };
    case("group child", wait_for(child), Some("exited 0"));
    for fd in to_parent.into_iter().chain(to_child) {
        close(fd);
    }

    // A child that starts a session.
    let child = fork_run(|| {
        let me = raw(libc::SYS_getpid, &[]);
        let sid = raw(libc::SYS_setsid, &[]);
        case("child setsid() == its pid", sid == me, Some("true"));
        case(
            "child getsid(0) == its pid",
            raw(libc::SYS_getsid, &[0]) == me,
            Some("true"),
        );
        case(
            "child getpgrp() == its pid",
            raw(libc::SYS_getpgrp, &[]) == me,
            Some("true"),
        );
        expect("child setsid() again", raw(libc::SYS_setsid, &[]), "EPERM");
        expect(
            "child setpgid(0, 0) as session leader",
            raw(libc::SYS_setpgid, &[0, 0]),
            "EPERM",
        );
        0
    });
    case(
        "session child",
        child.map(wait_for).unwrap_or_else(|e| e),
        Some("exited 0"),
    );

    // Signals and waits by process group, from a child leading its own.
    let child = fork_run(group_leader);
    case(
        "group leader child",
        child.map(wait_for).unwrap_or_else(|e| e),
        Some("exited 0"),
    );
}

/// Leads a new group with two members, kills the group with kill(0),
/// reaps it with wait4(0) and waitid(P_PGID); then moves a child into a
/// group of its own and kills and reaps that with kill/wait4(-pgid).
fn group_leader() -> i32 {
    expect(
        "leader setpgid(0, 0)",
        raw(libc::SYS_setpgid, &[0, 0]),
        "ok",
    );
    // SAFETY: ignoring SIGTERM for this process only.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    let (mut ready, mut block) = ([0i32; 2], [0i32; 2]);
    // SAFETY: arrays of two fds.
    unsafe {
        libc::pipe(ready.as_mut_ptr());
        libc::pipe(block.as_mut_ptr());
    }
    let member = move || {
        // SAFETY: default action back; one-byte buffers.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::write(ready[1], [1u8].as_ptr().cast(), 1);
            let mut b = [0u8];
            libc::read(block[0], b.as_mut_ptr().cast(), 1);
        }
        9
    };
    let members = [fork_run(member), fork_run(member)];
    let mut b = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 2 - got) };
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    let me = raw(libc::SYS_getpid, &[]);
    case(
        "leader: members in the group",
        members.iter().all(|m| {
            m.as_ref()
                .is_ok_and(|&p| raw(libc::SYS_getpgid, &[p as u64]) == me)
        }),
        Some("true"),
    );
    expect(
        "leader kill(0, SIGTERM)",
        raw(libc::SYS_kill, &[0, libc::SIGTERM as u64]),
        "ok",
    );
    for _ in 0..2 {
        let mut status = 0i32;
        let r = raw(libc::SYS_wait4, &[0, &mut status as *mut i32 as u64, 0, 0]);
        case(
            "leader wait4(0)",
            if r > 0 {
                userland::describe_status(status)
            } else {
                show(r)
            },
            Some("killed by SIGTERM"),
        );
    }
    expect(
        "leader wait4(0) with none left",
        raw(libc::SYS_wait4, &[0, 0, 0, 0]),
        "ECHILD",
    );
    let k3 = fork_run(|| 5).unwrap_or(-1);
    let mut info = [0u8; 128];
    expect(
        "leader waitid(P_PGID, 0)",
        raw(libc::SYS_waitid, &[2, 0, info.as_mut_ptr() as u64, 4]),
        "ok",
    );
    let (_, code, spid, status) = siginfo_of(&info);
    case(
        "leader waitid(P_PGID) info",
        format!("code={code} pid_match={} status={status}", spid == k3),
        Some("code=1 pid_match=true status=5"),
    );
    let k4 = fork_run(move || {
        let mut b = [0u8];
        // SAFETY: one-byte buffer.
        unsafe { libc::read(block[0], b.as_mut_ptr().cast(), 1) };
        0
    })
    .unwrap_or(-1) as u64;
    expect(
        "leader setpgid(child, child)",
        raw(libc::SYS_setpgid, &[k4, k4]),
        "ok",
    );
    let neg = (k4 as i64).wrapping_neg() as u64;
    expect(
        "leader wait4(-pgid, WNOHANG) alive",
        raw(libc::SYS_wait4, &[neg, 0, 1, 0]),
        "ok",
    );
    expect(
        "leader kill(-pgid, 0)",
        raw(libc::SYS_kill, &[neg, 0]),
        "ok",
    );
    expect(
        "leader kill(-pgid, SIGKILL)",
        raw(libc::SYS_kill, &[neg, 9]),
        "ok",
    );
    let mut status = 0i32;
    let r = raw(
        libc::SYS_wait4,
        &[neg, &mut status as *mut i32 as u64, 0, 0],
    );
    case(
        "leader wait4(-pgid)",
        format!(
            "pid_match={} {}",
            r == k4 as i64,
            userland::describe_status(status)
        ),
        Some("pid_match=true killed by SIGKILL"),
    );
    expect(
        "leader kill(-pgid) after reaping",
        raw(libc::SYS_kill, &[neg, 0]),
        "ESRCH",
    );
    expect(
        "leader kill(-999999, 0)",
        raw(libc::SYS_kill, &[-999_999i64 as u64, 0]),
        "ESRCH",
    );
    0
}

// --------------------------------------------------------- resource limits

fn rlimit(resource: u32) -> String {
    let mut lim = [0u64; 2];
    let r = raw(
        libc::SYS_getrlimit,
        &[resource as u64, lim.as_mut_ptr() as u64],
    );
    if r < 0 {
        return show(r);
    }
    let v = |x: u64| {
        if x == u64::MAX {
            "inf".to_string()
        } else {
            x.to_string()
        }
    };
    format!("{} {}", v(lim[0]), v(lim[1]))
}

fn limits() {
    for (name, res) in [
        ("NOFILE", libc::RLIMIT_NOFILE),
        ("STACK", libc::RLIMIT_STACK),
        ("CORE", libc::RLIMIT_CORE),
        ("AS", libc::RLIMIT_AS),
        ("FSIZE", libc::RLIMIT_FSIZE),
        ("DATA", libc::RLIMIT_DATA),
        ("CPU", libc::RLIMIT_CPU),
    ] {
        case(&format!("getrlimit({name})"), rlimit(res as u32), None);
    }
    expect(
        "getrlimit(99)",
        raw(libc::SYS_getrlimit, &[99, BAD]),
        "EINVAL",
    );
    expect(
        "getrlimit(NOFILE, bad)",
        raw(libc::SYS_getrlimit, &[libc::RLIMIT_NOFILE as u64, BAD]),
        "EFAULT",
    );
    let child = fork_run(|| {
        let nofile = libc::RLIMIT_NOFILE as u64;
        let lim = [16u64, 32];
        expect(
            "child setrlimit(NOFILE, 16 32)",
            raw(libc::SYS_setrlimit, &[nofile, lim.as_ptr() as u64]),
            "ok",
        );
        case(
            "child getrlimit(NOFILE)",
            rlimit(nofile as u32),
            Some("16 32"),
        );
        let bad = [33u64, 32];
        expect(
            "child setrlimit(cur > max)",
            raw(libc::SYS_setrlimit, &[nofile, bad.as_ptr() as u64]),
            "EINVAL",
        );
        expect(
            "child setrlimit(NOFILE, bad)",
            raw(libc::SYS_setrlimit, &[nofile, BAD]),
            "EFAULT",
        );
        expect(
            "child setrlimit(99)",
            raw(libc::SYS_setrlimit, &[99, lim.as_ptr() as u64]),
            "EINVAL",
        );
        // The limit is enforced: descriptors 0..16 at most.
        let (mut highest, mut last) = (2, 0);
        for _ in 0..100 {
            last = raw(libc::SYS_dup, &[0]);
            if last < 0 {
                break;
            }
            highest = last;
        }
        case(
            "child dup until the limit",
            format!("highest fd {highest}, then {}", show(last)),
            Some("highest fd 15, then EMFILE"),
        );
        let mut old = [0u64; 2];
        let new = [8u64, 32];
        expect(
            "child prlimit64(0, NOFILE, 8 32, old)",
            raw(
                libc::SYS_prlimit64,
                &[0, nofile, new.as_ptr() as u64, old.as_mut_ptr() as u64],
            ),
            "ok",
        );
        case(
            "child prlimit64 old",
            format!("{} {}", old[0], old[1]),
            Some("16 32"),
        );
        let self_pid = raw(libc::SYS_getpid, &[]) as u64;
        expect(
            "child prlimit64(self, NOFILE, NULL, old)",
            raw(
                libc::SYS_prlimit64,
                &[self_pid, nofile, 0, old.as_mut_ptr() as u64],
            ),
            "ok",
        );
        case(
            "child prlimit64 read",
            format!("{} {}", old[0], old[1]),
            Some("8 32"),
        );
        let raise = [8u64, 64];
        expect(
            "child prlimit64(raise max as root)",
            raw(libc::SYS_prlimit64, &[0, nofile, raise.as_ptr() as u64, 0]),
            "ok",
        );
        expect(
            "child prlimit64(no such pid)",
            raw(
                libc::SYS_prlimit64,
                &[999_999, nofile, 0, old.as_mut_ptr() as u64],
            ),
            "ESRCH",
        );
        expect(
            "child prlimit64(99)",
            raw(libc::SYS_prlimit64, &[0, 99, 0, old.as_mut_ptr() as u64]),
            "EINVAL",
        );
        expect(
            "child prlimit64(old bad)",
            raw(libc::SYS_prlimit64, &[0, nofile, 0, BAD]),
            "EFAULT",
        );
        // Unprivileged: the hard limit cannot go up.
        raw(libc::SYS_setuid, &[1000]);
        let up = [8u64, 100];
        expect(
            "child setrlimit(raise max unprivileged)",
            raw(libc::SYS_setrlimit, &[nofile, up.as_ptr() as u64]),
            "EPERM",
        );
        0
    });
    case(
        "rlimit child",
        child.map(wait_for).unwrap_or_else(|e| e),
        Some("exited 0"),
    );
}

// ------------------------------------------------ sysinfo, getrandom, robust

fn info_calls() {
    // struct sysinfo: uptime(8) loads(24) totalram(8) freeram(8) sharedram
    // bufferram totalswap freeswap (8 each) procs(2) pad totalhigh freehigh
    // mem_unit(4): 112 bytes.
    let mut si = [0u8; 112];
    expect(
        "sysinfo",
        raw(libc::SYS_sysinfo, &[si.as_mut_ptr() as u64]),
        "ok",
    );
    let u64_at = |o: usize| u64::from_le_bytes(si[o..o + 8].try_into().unwrap());
    let total = u64_at(32);
    let free = u64_at(40);
    let procs = u16::from_le_bytes([si[80], si[81]]);
    let unit = u32::from_le_bytes(si[104..108].try_into().unwrap());
    case("sysinfo totalram > 0", total > 0, Some("true"));
    case("sysinfo freeram <= totalram", free <= total, Some("true"));
    case("sysinfo procs >= 1", procs >= 1, Some("true"));
    case("sysinfo mem_unit", unit, Some("1"));
    expect("sysinfo(bad)", raw(libc::SYS_sysinfo, &[BAD]), "EFAULT");

    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    expect(
        "getrandom(32)",
        raw(libc::SYS_getrandom, &[a.as_mut_ptr() as u64, 32, 0]),
        "ok(32)",
    );
    expect(
        "getrandom(32, GRND_NONBLOCK)",
        raw(libc::SYS_getrandom, &[b.as_mut_ptr() as u64, 32, 1]),
        "ok(32)",
    );
    case("getrandom gives different bytes", a != b, Some("true"));
    expect(
        "getrandom(len 0)",
        raw(libc::SYS_getrandom, &[a.as_mut_ptr() as u64, 0, 0]),
        "ok",
    );
    expect(
        "getrandom(bad flags)",
        raw(libc::SYS_getrandom, &[a.as_mut_ptr() as u64, 8, 0x80]),
        "EINVAL",
    );
    expect(
        "getrandom(bad buffer)",
        raw(libc::SYS_getrandom, &[BAD, 8, 0]),
        "EFAULT",
    );

    let mut tv = [0i64; 2];
    let mut tz = [7i32; 2];
    expect(
        "gettimeofday(tv, tz)",
        raw(
            libc::SYS_gettimeofday,
            &[tv.as_mut_ptr() as u64, tz.as_mut_ptr() as u64],
        ),
        "ok",
    );
    case(
        "gettimeofday is after 2020, usec < 1e6",
        tv[0] > 1_600_000_000 && (0..1_000_000).contains(&tv[1]),
        Some("true"),
    );
    case("gettimeofday timezone", format!("{tz:?}"), None);
    expect(
        "gettimeofday(NULL, NULL)",
        raw(libc::SYS_gettimeofday, &[0, 0]),
        "ok",
    );
    expect(
        "gettimeofday(bad tv)",
        raw(libc::SYS_gettimeofday, &[BAD, 0]),
        "EFAULT",
    );
    expect(
        "gettimeofday(tv, bad tz)",
        raw(libc::SYS_gettimeofday, &[tv.as_mut_ptr() as u64, BAD]),
        "EFAULT",
    );

    let head = [0u64; 3];
    expect(
        "set_robust_list(head, 24)",
        raw(libc::SYS_set_robust_list, &[head.as_ptr() as u64, 24]),
        "ok",
    );
    expect(
        "set_robust_list(head, 23)",
        raw(libc::SYS_set_robust_list, &[head.as_ptr() as u64, 23]),
        "EINVAL",
    );
}

// ------------------------------------------------------ vfork, waitid, tkill

/// Set by the vfork child through the shared address space.
static VFORK_FLAG: AtomicI32 = AtomicI32::new(0);

/// vfork; the child stores 5 into `VFORK_FLAG` and exits 42 without
/// returning to Rust code (it shares our stack).  The parent's result.
fn vfork_child() -> i64 {
    let flag = VFORK_FLAG.as_ptr();
    let ret: i64;
    // SAFETY: the child runs only the instructions below (a store to a
    // static and exit), never touching the shared stack, then exits; the
    // parent resumes after the child's exit with rax = child's pid.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov dword ptr [{flag}], 5",
            "mov eax, 60",
            "mov edi, 42",
            "syscall",
            "ud2",
            "2:",
            flag = in(reg) flag,
            inlateout("rax") libc::SYS_vfork => ret,
            out("rcx") _,
            out("r11") _,
            out("rdi") _,
        );
    }
    ret
}

fn siginfo_of(info: &[u8; 128]) -> (i32, i32, i32, i32) {
    let i = |o: usize| i32::from_le_bytes(info[o..o + 4].try_into().unwrap());
    (i(0), i(8), i(16), i(24))
}

static USR1: AtomicI32 = AtomicI32::new(0);
static USR2: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_usr1(_: i32) {
    USR1.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: i32) {
    USR2.fetch_add(1, Ordering::SeqCst);
}

fn processes() {
    let pid = vfork_child();
    case("vfork returns a pid", pid > 0, Some("true"));
    case(
        "vfork child's store seen by the parent",
        VFORK_FLAG.load(Ordering::SeqCst),
        Some("5"),
    );
    case("vfork child", wait_for(pid as i32), Some("exited 42"));

    let mut info = [0u8; 128];
    let ip = info.as_mut_ptr() as u64;
    let (p_all, p_pid) = (0u64, 1u64);
    let (wexited, wnohang, wnowait) = (4u64, 1u64, 0x0100_0000u64);
    expect(
        "waitid(no children)",
        raw(libc::SYS_waitid, &[p_all, 0, ip, wexited]),
        "ECHILD",
    );
    let child = fork_run(|| 3).unwrap_or(-1);
    expect(
        "waitid(P_PID, child, WEXITED|WNOWAIT)",
        raw(
            libc::SYS_waitid,
            &[p_pid, child as u64, ip, wexited | wnowait],
        ),
        "ok",
    );
    let (signo, code, spid, status) = siginfo_of(&info);
    case(
        "waitid WNOWAIT info",
        format!(
            "signo={signo} code={code} pid_match={} status={status}",
            spid == child
        ),
        Some("signo=17 code=1 pid_match=true status=3"),
    );
    info = [0u8; 128];
    expect(
        "waitid(P_PID, child, WEXITED)",
        raw(libc::SYS_waitid, &[p_pid, child as u64, ip, wexited]),
        "ok",
    );
    let (signo, code, spid, status) = siginfo_of(&info);
    case(
        "waitid info",
        format!(
            "signo={signo} code={code} pid_match={} status={status}",
            spid == child
        ),
        Some("signo=17 code=1 pid_match=true status=3"),
    );
    expect(
        "waitid(P_PID, reaped child)",
        raw(libc::SYS_waitid, &[p_pid, child as u64, ip, wexited]),
        "ECHILD",
    );
    expect(
        "waitid(options 0)",
        raw(libc::SYS_waitid, &[p_all, 0, ip, 0]),
        "EINVAL",
    );
    expect(
        "waitid(idtype 99)",
        raw(libc::SYS_waitid, &[99, 0, ip, wexited]),
        "EINVAL",
    );
    // A child that waits for us: WNOHANG finds nothing yet.
    let mut fds = [0i32; 2];
    // SAFETY: array of two fds.
    unsafe { libc::pipe(fds.as_mut_ptr()) };
    let child = fork_run(|| {
        let mut b = [0u8];
        // SAFETY: valid one-byte buffer.
        unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        0
    })
    .unwrap_or(-1);
    info = [0xff; 128];
    expect(
        "waitid(P_ALL, WEXITED|WNOHANG) with a live child",
        raw(libc::SYS_waitid, &[p_all, 0, ip, wexited | wnohang]),
        "ok",
    );
    case("waitid WNOHANG si_pid", siginfo_of(&info).2, Some("0"));
    expect(
        "kill(child, SIGKILL)",
        raw(libc::SYS_kill, &[child as u64, 9]),
        "ok",
    );
    expect(
        "waitid(P_PID, killed child)",
        raw(libc::SYS_waitid, &[p_pid, child as u64, ip, wexited]),
        "ok",
    );
    let (signo, code, _, status) = siginfo_of(&info);
    case(
        "waitid killed info",
        format!("signo={signo} code={code} status={status}"),
        Some("signo=17 code=2 status=9"),
    );
    close(fds[0]);
    close(fds[1]);
    let child = fork_run(|| 0).unwrap_or(-1);
    expect(
        "waitid(bad infop)",
        raw(libc::SYS_waitid, &[p_pid, child as u64, BAD, wexited]),
        "EFAULT",
    );
    // (the child was reaped by the failed call, as on Linux)
    expect(
        "waitid after EFAULT",
        raw(
            libc::SYS_waitid,
            &[p_pid, child as u64, ip, wexited | wnohang],
        ),
        "ECHILD",
    );

    // tkill
    let tid = raw(libc::SYS_gettid, &[]) as u64;
    expect("tkill(self, 0)", raw(libc::SYS_tkill, &[tid, 0]), "ok");
    expect(
        "tkill(-1, 0)",
        raw(libc::SYS_tkill, &[-1i64 as u64, 0]),
        "EINVAL",
    );
    expect("tkill(0, 0)", raw(libc::SYS_tkill, &[0, 0]), "EINVAL");
    expect(
        "tkill(no such tid, 0)",
        raw(libc::SYS_tkill, &[999_999, 0]),
        "ESRCH",
    );
    expect(
        "tkill(self, 99)",
        raw(libc::SYS_tkill, &[tid, 99]),
        "EINVAL",
    );
    let _ = set_handler(libc::SIGUSR1, on_usr1 as *const () as usize, 0);
    USR1.store(0, Ordering::SeqCst);
    expect(
        "tkill(self, SIGUSR1)",
        raw(libc::SYS_tkill, &[tid, libc::SIGUSR1 as u64]),
        "ok",
    );
    case("tkill handler ran", USR1.load(Ordering::SeqCst), Some("1"));
}

// ---------------------------------------------------------------- signals

/// rt_sigprocmask(how, set) on the 8-byte kernel mask; returns the old mask.
fn sigmask(how: i32, set: u64) -> u64 {
    let mut old = 0u64;
    raw(
        libc::SYS_rt_sigprocmask,
        &[
            how as u64,
            &set as *const u64 as u64,
            &mut old as *mut u64 as u64,
            8,
        ],
    );
    old
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

fn signals() {
    let _ = set_handler(libc::SIGUSR1, on_usr1 as *const () as usize, 0);
    let _ = set_handler(libc::SIGUSR2, on_usr2 as *const () as usize, 0);
    let pid = raw(libc::SYS_getpid, &[]) as u64;

    // rt_sigpending
    sigmask(libc::SIG_BLOCK, bit(libc::SIGUSR2));
    USR2.store(0, Ordering::SeqCst);
    raw(libc::SYS_kill, &[pid, libc::SIGUSR2 as u64]);
    let mut set = 0u64;
    let sp = &mut set as *mut u64 as u64;
    expect(
        "rt_sigpending(8)",
        raw(libc::SYS_rt_sigpending, &[sp, 8]),
        "ok",
    );
    case(
        "SIGUSR2 pending",
        set & bit(libc::SIGUSR2) != 0,
        Some("true"),
    );
    case(
        "SIGUSR1 pending",
        set & bit(libc::SIGUSR1) != 0,
        Some("false"),
    );
    set = 0;
    expect(
        "rt_sigpending(4)",
        raw(libc::SYS_rt_sigpending, &[sp, 4]),
        "ok",
    );
    case(
        "rt_sigpending(4) SIGUSR2 pending",
        set & bit(libc::SIGUSR2) != 0,
        Some("true"),
    );
    expect(
        "rt_sigpending(16)",
        raw(libc::SYS_rt_sigpending, &[sp, 16]),
        "EINVAL",
    );
    expect(
        "rt_sigpending(bad)",
        raw(libc::SYS_rt_sigpending, &[BAD, 8]),
        "EFAULT",
    );
    case(
        "handler not run while blocked",
        USR2.load(Ordering::SeqCst),
        Some("0"),
    );

    // rt_sigsuspend: the pending SIGUSR2 is delivered at once.
    let empty = 0u64;
    let ep = &empty as *const u64 as u64;
    expect(
        "rt_sigsuspend(empty mask)",
        raw(libc::SYS_rt_sigsuspend, &[ep, 8]),
        "EINTR",
    );
    case(
        "rt_sigsuspend ran the handler",
        USR2.load(Ordering::SeqCst),
        Some("1"),
    );
    let now = sigmask(libc::SIG_BLOCK, 0);
    case(
        "mask restored after rt_sigsuspend",
        now & bit(libc::SIGUSR2) != 0,
        Some("true"),
    );
    expect(
        "rt_sigsuspend(size 4)",
        raw(libc::SYS_rt_sigsuspend, &[ep, 4]),
        "EINVAL",
    );
    expect(
        "rt_sigsuspend(bad mask)",
        raw(libc::SYS_rt_sigsuspend, &[BAD, 8]),
        "EFAULT",
    );
    sigmask(libc::SIG_UNBLOCK, bit(libc::SIGUSR2));

    // rt_sigsuspend waking for a signal from another process.
    let (mut ready, mut done) = ([0i32; 2], [0i32; 2]);
    // SAFETY: arrays of two fds.
    unsafe {
        libc::pipe(ready.as_mut_ptr());
        libc::pipe(done.as_mut_ptr());
    }
    let waiter = |use_pause: bool| {
        let (ready, done) = (ready, done);
        move || {
            USR1.store(0, Ordering::SeqCst);
            let r = if use_pause {
                let b = [1u8];
                // SAFETY: one-byte buffer.
                unsafe { libc::write(ready[1], b.as_ptr().cast(), 1) };
                raw(libc::SYS_pause, &[])
            } else {
                // Block SIGUSR1, say ready, then atomically unblock and wait:
                // no window for the signal to be lost.
                sigmask(libc::SIG_BLOCK, bit(libc::SIGUSR1));
                let b = [1u8];
                // SAFETY: one-byte buffer.
                unsafe { libc::write(ready[1], b.as_ptr().cast(), 1) };
                let empty = 0u64;
                raw(libc::SYS_rt_sigsuspend, &[&empty as *const u64 as u64, 8])
            };
            let line = format!("{} handler={}", show(r), USR1.load(Ordering::SeqCst) > 0);
            // SAFETY: valid buffer.
            unsafe { libc::write(done[1], line.as_ptr().cast(), line.len()) };
            0
        }
    };
    for (what, use_pause) in [
        ("rt_sigsuspend woken by kill", false),
        ("pause woken by kill", true),
    ] {
        let child = fork_run(waiter(use_pause)).unwrap_or(-1);
        let mut b = [0u8; 64];
        // SAFETY: valid buffers.
        unsafe { libc::read(ready[0], b.as_mut_ptr().cast(), 1) };
        // pause has no atomic unblock: signal until the child reports (a
        // signal sent before it entered pause only runs the handler).
        let n = loop {
            raw(libc::SYS_kill, &[child as u64, libc::SIGUSR1 as u64]);
            let mut pfd = libc::pollfd {
                fd: done[0],
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 50) } > 0 {
                // SAFETY: valid buffer.
                break unsafe { libc::read(done[0], b.as_mut_ptr().cast(), b.len()) };
            }
        };
        case(
            what,
            String::from_utf8_lossy(&b[..n.max(0) as usize]),
            Some("EINTR handler=true"),
        );
        case(&format!("{what}: child"), wait_for(child), Some("exited 0"));
    }
    for fd in ready.into_iter().chain(done) {
        close(fd);
    }
}

// ------------------------------------------------------------- file calls

fn files() {
    // readv
    write_file("rv", b"hello, world");
    let fd = open("rv", libc::O_RDONLY, 0);
    let (mut a, mut b, mut d) = ([0u8; 5], [0u8; 2], [0u8; 16]);
    let iov = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: 5,
        },
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: 2,
        },
        libc::iovec {
            iov_base: d.as_mut_ptr().cast(),
            iov_len: 16,
        },
    ];
    let iv = iov.as_ptr() as u64;
    expect(
        "readv(3 buffers)",
        raw(libc::SYS_readv, &[fd as u64, iv, 4]),
        "ok(12)",
    );
    case(
        "readv contents",
        format!(
            "{}|{}|{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&d[..5])
        ),
        Some("hello|, |world"),
    );
    expect(
        "readv at EOF",
        raw(libc::SYS_readv, &[fd as u64, iv, 4]),
        "ok",
    );
    expect(
        "readv(iovcnt 0)",
        raw(libc::SYS_readv, &[fd as u64, iv, 0]),
        "ok",
    );
    expect(
        "readv(iovcnt -1)",
        raw(libc::SYS_readv, &[fd as u64, iv, -1i64 as u64]),
        "EINVAL",
    );
    expect(
        "readv(iovcnt 1025)",
        raw(libc::SYS_readv, &[fd as u64, iv, 1025]),
        "EINVAL",
    );
    expect(
        "readv(bad fd)",
        raw(libc::SYS_readv, &[999, iv, 1]),
        "EBADF",
    );
    raw(libc::SYS_lseek, &[fd as u64, 0, 0]);
    expect(
        "readv(bad iov)",
        raw(libc::SYS_readv, &[fd as u64, BAD, 1]),
        "EFAULT",
    );
    let bad_iov = [libc::iovec {
        iov_base: BAD as *mut _,
        iov_len: 4,
    }];
    expect(
        "readv(iov to a bad buffer)",
        raw(libc::SYS_readv, &[fd as u64, bad_iov.as_ptr() as u64, 1]),
        "EFAULT",
    );
    let wfd = open("rv", libc::O_WRONLY, 0);
    expect(
        "readv(write-only fd)",
        raw(libc::SYS_readv, &[wfd as u64, iv, 1]),
        "EBADF",
    );

    // dup, dup3
    raw(libc::SYS_lseek, &[fd as u64, 0, 0]);
    let dfd = raw(libc::SYS_dup, &[fd as u64]);
    case("dup gives a new fd", dfd > fd as i64, Some("true"));
    raw(libc::SYS_lseek, &[dfd as u64, 7, 0]);
    let mut one = [0u8; 1];
    raw(libc::SYS_read, &[fd as u64, one.as_mut_ptr() as u64, 1]);
    case("dup shares the offset", one[0] as char, Some("w"));
    expect("dup(-1)", raw(libc::SYS_dup, &[-1i64 as u64]), "EBADF");
    expect("dup(999)", raw(libc::SYS_dup, &[999]), "EBADF");
    expect(
        "dup3(fd, 100, O_CLOEXEC)",
        raw(libc::SYS_dup3, &[fd as u64, 100, libc::O_CLOEXEC as u64]),
        "ok(100)",
    );
    expect(
        "fcntl(100, F_GETFD)",
        raw(libc::SYS_fcntl, &[100, libc::F_GETFD as u64]),
        "ok(1)",
    );
    expect(
        "dup3(fd, 101, 0)",
        raw(libc::SYS_dup3, &[fd as u64, 101]),
        "ok(101)",
    );
    expect(
        "fcntl(101, F_GETFD)",
        raw(libc::SYS_fcntl, &[101, libc::F_GETFD as u64]),
        "ok",
    );
    expect(
        "dup3(fd, fd, 0)",
        raw(libc::SYS_dup3, &[fd as u64, fd as u64, 0]),
        "EINVAL",
    );
    expect(
        "dup3(fd, 102, bad flags)",
        raw(libc::SYS_dup3, &[fd as u64, 102, 0x1234]),
        "EINVAL",
    );
    expect(
        "dup3(-1, 102, 0)",
        raw(libc::SYS_dup3, &[-1i64 as u64, 102, 0]),
        "EBADF",
    );
    expect(
        "dup3(fd, -1, 0)",
        raw(libc::SYS_dup3, &[fd as u64, -1i64 as u64, 0]),
        "EBADF",
    );
    expect(
        "dup3(fd, 1<<20, 0)",
        raw(libc::SYS_dup3, &[fd as u64, 1 << 20, 0]),
        "EBADF",
    );
    close(100);
    close(101);
    close(dfd as i32);

    // fsync, fdatasync
    expect("fsync(file)", raw(libc::SYS_fsync, &[wfd as u64]), "ok");
    expect(
        "fdatasync(file)",
        raw(libc::SYS_fdatasync, &[fd as u64]),
        "ok",
    );
    expect("fsync(-1)", raw(libc::SYS_fsync, &[-1i64 as u64]), "EBADF");
    expect("fdatasync(999)", raw(libc::SYS_fdatasync, &[999]), "EBADF");
    let mut pfds = [0i32; 2];
    // SAFETY: array of two fds.
    unsafe { libc::pipe(pfds.as_mut_ptr()) };
    expect(
        "fsync(pipe)",
        raw(libc::SYS_fsync, &[pfds[0] as u64]),
        "EINVAL",
    );
    expect(
        "fdatasync(pipe)",
        raw(libc::SYS_fdatasync, &[pfds[1] as u64]),
        "EINVAL",
    );
    close(fd);
    close(wfd);

    // truncate
    let rv = c("rv");
    expect(
        "truncate(rv, 5)",
        raw(libc::SYS_truncate, &[p(&rv), 5]),
        "ok",
    );
    case("truncate contents", read_file("rv"), Some("hello"));
    expect(
        "truncate(rv, 8)",
        raw(libc::SYS_truncate, &[p(&rv), 8]),
        "ok",
    );
    case(
        "truncate extends with zeros",
        format!("{:?}", read_file("rv")),
        Some("\"hello\\0\\0\\0\""),
    );
    expect(
        "truncate(rv, -1)",
        raw(libc::SYS_truncate, &[p(&rv), -1i64 as u64]),
        "EINVAL",
    );
    let dot = c(".");
    expect(
        "truncate(dir)",
        raw(libc::SYS_truncate, &[p(&dot), 0]),
        "EISDIR",
    );
    let none = c("nonexistent");
    expect(
        "truncate(nonexistent)",
        raw(libc::SYS_truncate, &[p(&none), 0]),
        "ENOENT",
    );
    expect(
        "truncate(bad path)",
        raw(libc::SYS_truncate, &[BAD, 0]),
        "EFAULT",
    );
    let under = c("rv/x");
    expect(
        "truncate(file/x)",
        raw(libc::SYS_truncate, &[p(&under), 0]),
        "ENOTDIR",
    );

    // umask (linux-init and our kernel both start PID 1 with 022)
    expect("umask(027)", raw(libc::SYS_umask, &[0o027]), "ok(18)");
    expect(
        "umask(01777) returns 027",
        raw(libc::SYS_umask, &[0o1777]),
        "ok(23)",
    );
    expect(
        "umask(022) returns 0777",
        raw(libc::SYS_umask, &[0o022]),
        "ok(511)",
    );
    raw(libc::SYS_umask, &[0o027]);

    // creat
    let cr = c("cr");
    let cfd = raw(libc::SYS_creat, &[p(&cr), 0o666]);
    case("creat(cr, 0666)", cfd >= 0, Some("true"));
    case(
        "creat mode under umask 027",
        meta("cr"),
        Some("mode=100640 nlink=1 size=0"),
    );
    let data = b"abc";
    expect(
        "write(creat fd)",
        raw(libc::SYS_write, &[cfd as u64, data.as_ptr() as u64, 3]),
        "ok(3)",
    );
    expect(
        "read(creat fd)",
        raw(libc::SYS_read, &[cfd as u64, one.as_mut_ptr() as u64, 1]),
        "EBADF",
    );
    close(cfd as i32);
    let cfd = raw(libc::SYS_creat, &[p(&cr), 0o600]);
    case(
        "creat existing truncates",
        meta("cr"),
        Some("mode=100640 nlink=1 size=0"),
    );
    close(cfd as i32);
    let nodir = c("nodir/cr");
    expect(
        "creat(nodir/cr)",
        raw(libc::SYS_creat, &[p(&nodir), 0o644]),
        "ENOENT",
    );
    expect(
        "creat(.)",
        raw(libc::SYS_creat, &[p(&dot), 0o644]),
        "EISDIR",
    );
    expect(
        "creat(bad path)",
        raw(libc::SYS_creat, &[BAD, 0o644]),
        "EFAULT",
    );
    raw(libc::SYS_umask, &[0o022]);

    // fchdir
    let sub = c("sub");
    raw(libc::SYS_mkdir, &[p(&sub), 0o755]);
    let dirfd = open("sub", libc::O_RDONLY | libc::O_DIRECTORY, 0);
    expect("fchdir(sub)", raw(libc::SYS_fchdir, &[dirfd as u64]), "ok");
    case(
        "getcwd after fchdir",
        std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        Some("/sysgaps/sub"),
    );
    let up = c("..");
    raw(libc::SYS_chdir, &[p(&up)]);
    let ffd = open("cr", libc::O_RDONLY, 0);
    expect(
        "fchdir(file)",
        raw(libc::SYS_fchdir, &[ffd as u64]),
        "ENOTDIR",
    );
    expect(
        "fchdir(-1)",
        raw(libc::SYS_fchdir, &[-1i64 as u64]),
        "EBADF",
    );

    // link
    let (cr2, sub_l) = (c("cr2"), c("sub/cr3"));
    expect(
        "link(cr, cr2)",
        raw(libc::SYS_link, &[p(&cr), p(&cr2)]),
        "ok",
    );
    case("link count", meta("cr"), Some("mode=100640 nlink=2 size=0"));
    expect(
        "link(cr, sub/cr3)",
        raw(libc::SYS_link, &[p(&cr), p(&sub_l)]),
        "ok",
    );
    case(
        "link count 3",
        meta("cr2"),
        Some("mode=100640 nlink=3 size=0"),
    );
    expect(
        "link(cr, cr2) again",
        raw(libc::SYS_link, &[p(&cr), p(&cr2)]),
        "EEXIST",
    );
    expect(
        "link(nonexistent, x)",
        raw(libc::SYS_link, &[p(&none), p(&c("x"))]),
        "ENOENT",
    );
    expect(
        "link(dir, x)",
        raw(libc::SYS_link, &[p(&sub), p(&c("x"))]),
        "EPERM",
    );
    expect(
        "link(cr, nodir/cr)",
        raw(libc::SYS_link, &[p(&cr), p(&nodir)]),
        "ENOENT",
    );
    expect(
        "link(bad, x)",
        raw(libc::SYS_link, &[BAD, p(&c("x"))]),
        "EFAULT",
    );
    expect(
        "link(cr, bad)",
        raw(libc::SYS_link, &[p(&cr), BAD]),
        "EFAULT",
    );

    // fchmod, fchmodat
    expect(
        "fchmod(fd, 0604)",
        raw(libc::SYS_fchmod, &[ffd as u64, 0o604]),
        "ok",
    );
    case(
        "fchmod mode",
        meta("cr"),
        Some("mode=100604 nlink=3 size=0"),
    );
    expect(
        "fchmod(fd, 07777)",
        raw(libc::SYS_fchmod, &[ffd as u64, 0o177777]),
        "ok",
    );
    case(
        "fchmod keeps only 07777",
        meta("cr"),
        Some("mode=107777 nlink=3 size=0"),
    );
    expect(
        "fchmod(-1)",
        raw(libc::SYS_fchmod, &[-1i64 as u64, 0o600]),
        "EBADF",
    );
    close(ffd);
    expect(
        "fchmodat(AT_FDCWD, cr, 0640)",
        raw(libc::SYS_fchmodat, &[AT_FDCWD as u64, p(&cr), 0o640]),
        "ok",
    );
    case(
        "fchmodat mode",
        meta("cr2"),
        Some("mode=100640 nlink=3 size=0"),
    );
    let cr3 = c("cr3");
    expect(
        "fchmodat(subfd, cr3, 0600)",
        raw(libc::SYS_fchmodat, &[dirfd as u64, p(&cr3), 0o600]),
        "ok",
    );
    case(
        "fchmodat via dirfd",
        meta("cr"),
        Some("mode=100600 nlink=3 size=0"),
    );
    expect(
        "fchmodat(bad dirfd, relative)",
        raw(libc::SYS_fchmodat, &[999, p(&cr3), 0o600]),
        "EBADF",
    );
    let abs = c("/sysgaps/cr");
    expect(
        "fchmodat(bad dirfd, absolute)",
        raw(libc::SYS_fchmodat, &[999, p(&abs), 0o600]),
        "ok",
    );
    expect(
        "fchmodat(nonexistent)",
        raw(libc::SYS_fchmodat, &[AT_FDCWD as u64, p(&none), 0o600]),
        "ENOENT",
    );
    expect(
        "fchmodat(bad path)",
        raw(libc::SYS_fchmodat, &[AT_FDCWD as u64, BAD, 0o600]),
        "EFAULT",
    );

    // mknod, mknodat
    let fifo = c("fifo");
    expect(
        "mknod(fifo, S_IFIFO|0644)",
        raw(
            libc::SYS_mknod,
            &[p(&fifo), (libc::S_IFIFO | 0o644) as u64, 0],
        ),
        "ok",
    );
    case(
        "mknod fifo",
        meta("fifo"),
        Some("mode=10644 nlink=1 size=0"),
    );
    let reg = c("reg");
    expect(
        "mknod(reg, 0600)",
        raw(libc::SYS_mknod, &[p(&reg), 0o600, 0]),
        "ok",
    );
    case(
        "mknod type 0 is a regular file",
        meta("reg"),
        Some("mode=100600 nlink=1 size=0"),
    );
    expect(
        "mknod(reg, S_IFREG) again",
        raw(
            libc::SYS_mknod,
            &[p(&reg), (libc::S_IFREG | 0o600) as u64, 0],
        ),
        "EEXIST",
    );
    let dd = c("dd");
    expect(
        "mknod(dd, S_IFDIR)",
        raw(
            libc::SYS_mknod,
            &[p(&dd), (libc::S_IFDIR | 0o755) as u64, 0],
        ),
        "EPERM",
    );
    expect(
        "mknod(bad type)",
        raw(libc::SYS_mknod, &[p(&dd), 0o170755, 0]),
        "EINVAL",
    );
    expect(
        "mknod(bad path)",
        raw(libc::SYS_mknod, &[BAD, 0o600, 0]),
        "EFAULT",
    );
    expect(
        "mknod(nodir/x)",
        raw(libc::SYS_mknod, &[p(&nodir), 0o600, 0]),
        "ENOENT",
    );
    let fifo2 = c("fifo2");
    expect(
        "mknodat(subfd, fifo2, S_IFIFO)",
        raw(
            libc::SYS_mknodat,
            &[dirfd as u64, p(&fifo2), (libc::S_IFIFO | 0o600) as u64, 0],
        ),
        "ok",
    );
    case(
        "mknodat fifo",
        meta("sub/fifo2"),
        Some("mode=10600 nlink=1 size=0"),
    );
    expect(
        "mknodat(bad dirfd)",
        raw(libc::SYS_mknodat, &[999, p(&fifo2), 0o600, 0]),
        "EBADF",
    );

    // mkdirat
    let inner = c("inner");
    expect(
        "mkdirat(subfd, inner)",
        raw(libc::SYS_mkdirat, &[dirfd as u64, p(&inner), 0o750]),
        "ok",
    );
    case(
        "mkdirat mode",
        meta("sub/inner"),
        Some("mode=40750 nlink=2 size=0"),
    );
    expect(
        "mkdirat again",
        raw(libc::SYS_mkdirat, &[dirfd as u64, p(&inner), 0o750]),
        "EEXIST",
    );
    expect(
        "mkdirat(bad dirfd)",
        raw(libc::SYS_mkdirat, &[999, p(&inner), 0o750]),
        "EBADF",
    );
    let filefd = open("reg", libc::O_RDONLY, 0);
    expect(
        "mkdirat(file fd)",
        raw(libc::SYS_mkdirat, &[filefd as u64, p(&inner), 0o750]),
        "ENOTDIR",
    );
    expect(
        "mkdirat(bad path)",
        raw(libc::SYS_mkdirat, &[dirfd as u64, BAD, 0o750]),
        "EFAULT",
    );

    // symlinkat, readlinkat
    let (target, lnk) = (c("../cr"), c("lnk"));
    expect(
        "symlinkat(../cr, subfd, lnk)",
        raw(libc::SYS_symlinkat, &[p(&target), dirfd as u64, p(&lnk)]),
        "ok",
    );
    expect(
        "symlinkat again",
        raw(libc::SYS_symlinkat, &[p(&target), dirfd as u64, p(&lnk)]),
        "EEXIST",
    );
    expect(
        "symlinkat(bad dirfd)",
        raw(libc::SYS_symlinkat, &[p(&target), 999, p(&lnk)]),
        "EBADF",
    );
    expect(
        "symlinkat(bad target)",
        raw(libc::SYS_symlinkat, &[BAD, dirfd as u64, p(&c("l2"))]),
        "EFAULT",
    );
    let mut buf = [0u8; 64];
    let n = raw(
        libc::SYS_readlinkat,
        &[dirfd as u64, p(&lnk), buf.as_mut_ptr() as u64, 64],
    );
    case(
        "readlinkat(subfd, lnk)",
        format!(
            "{} {}",
            show(n),
            String::from_utf8_lossy(&buf[..n.max(0) as usize])
        ),
        Some("ok(5) ../cr"),
    );
    let n = raw(
        libc::SYS_readlinkat,
        &[dirfd as u64, p(&lnk), buf.as_mut_ptr() as u64, 3],
    );
    case(
        "readlinkat truncated",
        format!(
            "{} {}",
            show(n),
            String::from_utf8_lossy(&buf[..n.max(0) as usize])
        ),
        Some("ok(3) ../"),
    );
    expect(
        "readlinkat(bufsiz 0)",
        raw(
            libc::SYS_readlinkat,
            &[dirfd as u64, p(&lnk), buf.as_mut_ptr() as u64, 0],
        ),
        "EINVAL",
    );
    expect(
        "readlinkat(regular file)",
        raw(
            libc::SYS_readlinkat,
            &[AT_FDCWD as u64, p(&reg), buf.as_mut_ptr() as u64, 64],
        ),
        "EINVAL",
    );
    expect(
        "readlinkat(nonexistent)",
        raw(
            libc::SYS_readlinkat,
            &[AT_FDCWD as u64, p(&none), buf.as_mut_ptr() as u64, 64],
        ),
        "ENOENT",
    );
    expect(
        "readlinkat(bad buffer)",
        raw(libc::SYS_readlinkat, &[dirfd as u64, p(&lnk), BAD, 64]),
        "EFAULT",
    );
    expect(
        "readlinkat(bad dirfd)",
        raw(
            libc::SYS_readlinkat,
            &[999, p(&lnk), buf.as_mut_ptr() as u64, 64],
        ),
        "EBADF",
    );

    // newfstatat
    // SAFETY: plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let sp = &mut st as *mut libc::stat as u64;
    expect(
        "newfstatat(subfd, lnk, 0)",
        raw(libc::SYS_newfstatat, &[dirfd as u64, p(&lnk), sp, 0]),
        "ok",
    );
    case(
        "newfstatat follows",
        format!("{:o}", st.st_mode),
        Some("100600"),
    );
    let nofollow = libc::AT_SYMLINK_NOFOLLOW as u64;
    expect(
        "newfstatat(subfd, lnk, NOFOLLOW)",
        raw(libc::SYS_newfstatat, &[dirfd as u64, p(&lnk), sp, nofollow]),
        "ok",
    );
    case(
        "newfstatat nofollow",
        format!("{:o} size={}", st.st_mode, st.st_size),
        Some("120777 size=5"),
    );
    let empty = c("");
    expect(
        "newfstatat(fd, \"\", AT_EMPTY_PATH)",
        raw(
            libc::SYS_newfstatat,
            &[filefd as u64, p(&empty), sp, libc::AT_EMPTY_PATH as u64],
        ),
        "ok",
    );
    case(
        "newfstatat empty path",
        format!("{:o}", st.st_mode),
        Some("100600"),
    );
    expect(
        "newfstatat(fd, \"\", 0)",
        raw(libc::SYS_newfstatat, &[filefd as u64, p(&empty), sp, 0]),
        "ENOENT",
    );
    expect(
        "newfstatat(bad flags)",
        raw(libc::SYS_newfstatat, &[AT_FDCWD as u64, p(&cr), sp, 0x1]),
        "EINVAL",
    );
    expect(
        "newfstatat(bad statbuf)",
        raw(libc::SYS_newfstatat, &[AT_FDCWD as u64, p(&cr), BAD, 0]),
        "EFAULT",
    );
    expect(
        "newfstatat(bad dirfd)",
        raw(libc::SYS_newfstatat, &[999, p(&cr), sp, 0]),
        "EBADF",
    );
    expect(
        "newfstatat(file/x)",
        raw(libc::SYS_newfstatat, &[AT_FDCWD as u64, p(&under), sp, 0]),
        "ENOTDIR",
    );

    // statx
    let mut sx = [0u8; 256];
    let xp = sx.as_mut_ptr() as u64;
    let basic = 0x7ffu64;
    expect(
        "statx(AT_FDCWD, cr2, 0, BASIC)",
        raw(libc::SYS_statx, &[AT_FDCWD as u64, p(&cr2), 0, basic, xp]),
        "ok",
    );
    let u32_at = |b: &[u8; 256], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u16_at = |b: &[u8; 256], o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
    let u64_at = |b: &[u8; 256], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    case(
        "statx fields",
        format!(
            "basic={} nlink={} mode={:o} size={}",
            u32_at(&sx, 0) & 0x7ff == 0x7ff,
            u32_at(&sx, 16),
            u16_at(&sx, 28),
            u64_at(&sx, 40)
        ),
        Some("basic=true nlink=3 mode=100600 size=0"),
    );
    expect(
        "statx(subfd, lnk, NOFOLLOW)",
        raw(
            libc::SYS_statx,
            &[dirfd as u64, p(&lnk), nofollow, basic, xp],
        ),
        "ok",
    );
    case(
        "statx symlink",
        format!("mode={:o} size={}", u16_at(&sx, 28), u64_at(&sx, 40)),
        Some("mode=120777 size=5"),
    );
    expect(
        "statx(fd, \"\", AT_EMPTY_PATH)",
        raw(
            libc::SYS_statx,
            &[
                filefd as u64,
                p(&empty),
                libc::AT_EMPTY_PATH as u64,
                basic,
                xp,
            ],
        ),
        "ok",
    );
    case(
        "statx empty path mode",
        format!("{:o}", u16_at(&sx, 28)),
        Some("100600"),
    );
    expect(
        "statx(bad flags)",
        raw(libc::SYS_statx, &[AT_FDCWD as u64, p(&cr), 0x1, basic, xp]),
        "EINVAL",
    );
    expect(
        "statx(reserved mask bit)",
        raw(
            libc::SYS_statx,
            &[AT_FDCWD as u64, p(&cr), 0, 0x8000_0000, xp],
        ),
        "EINVAL",
    );
    expect(
        "statx(bad buffer)",
        raw(libc::SYS_statx, &[AT_FDCWD as u64, p(&cr), 0, basic, BAD]),
        "EFAULT",
    );
    expect(
        "statx(nonexistent)",
        raw(libc::SYS_statx, &[AT_FDCWD as u64, p(&none), 0, basic, xp]),
        "ENOENT",
    );
    expect(
        "statx(bad dirfd)",
        raw(libc::SYS_statx, &[999, p(&cr), 0, basic, xp]),
        "EBADF",
    );

    // renameat, renameat2
    write_file("ra", b"A");
    write_file("rb", b"B");
    let (ra, rb, rc) = (c("ra"), c("rb"), c("rc"));
    let cwd = AT_FDCWD as u64;
    expect(
        "renameat(ra -> sub/ra)",
        raw(libc::SYS_renameat, &[cwd, p(&ra), dirfd as u64, p(&ra)]),
        "ok",
    );
    case(
        "renameat moved",
        format!("{} {}", meta("ra"), read_file("sub/ra")),
        Some("ENOENT A"),
    );
    expect(
        "renameat(nonexistent)",
        raw(libc::SYS_renameat, &[cwd, p(&ra), cwd, p(&rc)]),
        "ENOENT",
    );
    expect(
        "renameat(bad dirfd)",
        raw(libc::SYS_renameat, &[999, p(&ra), cwd, p(&rc)]),
        "EBADF",
    );
    expect(
        "renameat2(sub/ra -> rb, NOREPLACE)",
        raw(libc::SYS_renameat2, &[dirfd as u64, p(&ra), cwd, p(&rb), 1]),
        "EEXIST",
    );
    expect(
        "renameat2(sub/ra <-> rb, EXCHANGE)",
        raw(libc::SYS_renameat2, &[dirfd as u64, p(&ra), cwd, p(&rb), 2]),
        "ok",
    );
    case(
        "renameat2 exchanged",
        format!("{} {}", read_file("sub/ra"), read_file("rb")),
        Some("B A"),
    );
    expect(
        "renameat2(EXCHANGE with missing)",
        raw(libc::SYS_renameat2, &[cwd, p(&rb), cwd, p(&rc), 2]),
        "ENOENT",
    );
    expect(
        "renameat2(rb -> rc, NOREPLACE)",
        raw(libc::SYS_renameat2, &[cwd, p(&rb), cwd, p(&rc), 1]),
        "ok",
    );
    case("renameat2 noreplace moved", read_file("rc"), Some("A"));
    expect(
        "renameat2(NOREPLACE|EXCHANGE)",
        raw(libc::SYS_renameat2, &[cwd, p(&rc), cwd, p(&rb), 3]),
        "EINVAL",
    );
    expect(
        "renameat2(bad flags)",
        raw(libc::SYS_renameat2, &[cwd, p(&rc), cwd, p(&rb), 0x100]),
        "EINVAL",
    );
    expect(
        "renameat2(bad path)",
        raw(libc::SYS_renameat2, &[cwd, BAD, cwd, p(&rb), 0]),
        "EFAULT",
    );

    // faccessat, faccessat2
    let (r_ok, w_ok, x_ok) = (4u64, 2u64, 1u64);
    expect(
        "faccessat(cr, R_OK|W_OK)",
        raw(libc::SYS_faccessat, &[cwd, p(&cr), r_ok | w_ok]),
        "ok",
    );
    expect(
        "faccessat(cr, X_OK) as root",
        raw(libc::SYS_faccessat, &[cwd, p(&cr), x_ok]),
        "EACCES",
    );
    expect(
        "faccessat(sub, X_OK)",
        raw(libc::SYS_faccessat, &[cwd, p(&sub), x_ok]),
        "ok",
    );
    expect(
        "faccessat(subfd, lnk, F_OK)",
        raw(libc::SYS_faccessat, &[dirfd as u64, p(&lnk), 0]),
        "ok",
    );
    expect(
        "faccessat(bad mode)",
        raw(libc::SYS_faccessat, &[cwd, p(&cr), 8]),
        "EINVAL",
    );
    expect(
        "faccessat(nonexistent)",
        raw(libc::SYS_faccessat, &[cwd, p(&none), 0]),
        "ENOENT",
    );
    expect(
        "faccessat(bad dirfd)",
        raw(libc::SYS_faccessat, &[999, p(&cr), 0]),
        "EBADF",
    );
    expect(
        "faccessat(bad path)",
        raw(libc::SYS_faccessat, &[cwd, BAD, 0]),
        "EFAULT",
    );
    let dangling = c("dangling");
    raw(libc::SYS_symlinkat, &[p(&none), cwd, p(&dangling)]);
    expect(
        "faccessat2(dangling, 0)",
        raw(libc::SYS_faccessat2, &[cwd, p(&dangling), 0, 0]),
        "ENOENT",
    );
    expect(
        "faccessat2(dangling, NOFOLLOW)",
        raw(libc::SYS_faccessat2, &[cwd, p(&dangling), 0, nofollow]),
        "ok",
    );
    expect(
        "faccessat2(cr, W_OK, AT_EACCESS)",
        raw(
            libc::SYS_faccessat2,
            &[cwd, p(&cr), w_ok, libc::AT_EACCESS as u64],
        ),
        "ok",
    );
    expect(
        "faccessat2(fd, \"\", AT_EMPTY_PATH)",
        raw(
            libc::SYS_faccessat2,
            &[filefd as u64, p(&empty), r_ok, libc::AT_EMPTY_PATH as u64],
        ),
        "ok",
    );
    expect(
        "faccessat2(bad flags)",
        raw(libc::SYS_faccessat2, &[cwd, p(&cr), 0, 0x1]),
        "EINVAL",
    );
    expect(
        "faccessat2(bad mode)",
        raw(libc::SYS_faccessat2, &[cwd, p(&cr), 8, 0]),
        "EINVAL",
    );
    // As another user, permission bits count.
    let child = fork_run(|| {
        raw(libc::SYS_setuid, &[1000]);
        let cr = c("cr");
        expect(
            "child faccessat(cr 0600, R_OK)",
            raw(libc::SYS_faccessat, &[AT_FDCWD as u64, p(&cr), 4]),
            "EACCES",
        );
        expect(
            "child faccessat(sub, W_OK)",
            raw(libc::SYS_faccessat, &[AT_FDCWD as u64, p(&c("sub")), 2]),
            "EACCES",
        );
        expect(
            "child faccessat(sub, R_OK|X_OK)",
            raw(libc::SYS_faccessat, &[AT_FDCWD as u64, p(&c("sub")), 5]),
            "ok",
        );
        0
    });
    case(
        "access child",
        child.map(wait_for).unwrap_or_else(|e| e),
        Some("exited 0"),
    );

    // utimensat
    let ts = [
        libc::timespec {
            tv_sec: 1000,
            tv_nsec: 500,
        },
        libc::timespec {
            tv_sec: 2000,
            tv_nsec: 0,
        },
    ];
    let tp = ts.as_ptr() as u64;
    expect(
        "utimensat(cr, 1000.5, 2000)",
        raw(libc::SYS_utimensat, &[cwd, p(&cr), tp, 0]),
        "ok",
    );
    let times = |path: &str| match stat_of(path, false) {
        Ok(st) => format!(
            "atime={}.{} mtime={}.{}",
            st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec
        ),
        Err(e) => e,
    };
    case(
        "utimensat times",
        times("cr"),
        Some("atime=1000.500 mtime=2000.0"),
    );
    let omit = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 3000,
            tv_nsec: 7,
        },
    ];
    expect(
        "utimensat(fd, NULL, OMIT, 3000)",
        raw(
            libc::SYS_utimensat,
            &[filefd as u64, 0, omit.as_ptr() as u64, 0],
        ),
        "ok",
    );
    let mtime =
        stat_of("reg", false).map(|st| format!("mtime={}.{}", st.st_mtime, st.st_mtime_nsec));
    case(
        "utimensat on fd",
        mtime.unwrap_or_else(|e| e),
        Some("mtime=3000.7"),
    );
    expect(
        "utimensat(cr, OMIT, 3000)",
        raw(libc::SYS_utimensat, &[cwd, p(&cr), omit.as_ptr() as u64, 0]),
        "ok",
    );
    case(
        "utimensat omit",
        times("cr"),
        Some("atime=1000.500 mtime=3000.7"),
    );
    let now = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    expect(
        "utimensat(cr, NOW)",
        raw(libc::SYS_utimensat, &[cwd, p(&cr), now.as_ptr() as u64, 0]),
        "ok",
    );
    let recent = stat_of("cr", false)
        .map(|st| st.st_mtime > 1_600_000_000)
        .unwrap_or(false);
    case("utimensat NOW sets the clock's time", recent, Some("true"));
    expect(
        "utimensat(lnk, NOFOLLOW)",
        raw(libc::SYS_utimensat, &[dirfd as u64, p(&lnk), tp, nofollow]),
        "ok",
    );
    case(
        "utimensat on the link itself",
        times("sub/lnk"),
        Some("atime=1000.500 mtime=2000.0"),
    );
    let bad_ns = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000_000,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    ];
    expect(
        "utimensat(nsec 1e9)",
        raw(
            libc::SYS_utimensat,
            &[cwd, p(&cr), bad_ns.as_ptr() as u64, 0],
        ),
        "EINVAL",
    );
    expect(
        "utimensat(bad flags)",
        raw(libc::SYS_utimensat, &[cwd, p(&cr), tp, 0x1]),
        "EINVAL",
    );
    expect(
        "utimensat(bad times)",
        raw(libc::SYS_utimensat, &[cwd, p(&cr), BAD, 0]),
        "EFAULT",
    );
    expect(
        "utimensat(nonexistent)",
        raw(libc::SYS_utimensat, &[cwd, p(&none), tp, 0]),
        "ENOENT",
    );
    expect(
        "utimensat(bad fd, NULL)",
        raw(libc::SYS_utimensat, &[999, 0, tp, 0]),
        "EBADF",
    );

    // epoll_create, epoll_wait
    let ep = raw(libc::SYS_epoll_create, &[1]);
    case("epoll_create(1)", ep >= 0, Some("true"));
    expect(
        "epoll_create(0)",
        raw(libc::SYS_epoll_create, &[0]),
        "EINVAL",
    );
    expect(
        "epoll_create(-1)",
        raw(libc::SYS_epoll_create, &[-1i64 as u64]),
        "EINVAL",
    );
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 77,
    };
    expect(
        "epoll_ctl(ADD pipe)",
        raw(
            libc::SYS_epoll_ctl,
            &[
                ep as u64,
                libc::EPOLL_CTL_ADD as u64,
                pfds[0] as u64,
                &mut ev as *mut _ as u64,
            ],
        ),
        "ok",
    );
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
    let op = out.as_mut_ptr() as u64;
    expect(
        "epoll_wait(empty, 0)",
        raw(libc::SYS_epoll_wait, &[ep as u64, op, 4, 0]),
        "ok",
    );
    raw(libc::SYS_write, &[pfds[1] as u64, b"x".as_ptr() as u64, 1]);
    expect(
        "epoll_wait(readable, -1)",
        raw(libc::SYS_epoll_wait, &[ep as u64, op, 4, -1i64 as u64]),
        "ok(1)",
    );
    let (events, data) = (out[0].events, out[0].u64);
    case(
        "epoll_wait event",
        format!("events={events:#x} data={data}"),
        Some("events=0x1 data=77"),
    );
    expect(
        "epoll_wait(maxevents 0)",
        raw(libc::SYS_epoll_wait, &[ep as u64, op, 0, 0]),
        "EINVAL",
    );
    expect(
        "epoll_wait(bad fd)",
        raw(libc::SYS_epoll_wait, &[999, op, 4, 0]),
        "EBADF",
    );
    expect(
        "epoll_wait(not epoll)",
        raw(libc::SYS_epoll_wait, &[pfds[0] as u64, op, 4, 0]),
        "EINVAL",
    );
    expect(
        "epoll_wait(bad events)",
        raw(libc::SYS_epoll_wait, &[ep as u64, BAD, 4, 0]),
        "EFAULT",
    );
    close(ep as i32);
    close(pfds[0]);
    close(pfds[1]);
    close(filefd);
    close(dirfd);
}

// ------------------------------------------------------------------ mounts

/// mount/umount2 of a tmpfs on a fresh directory, the write-back calls on
/// it (sync, syncfs, fsync), and the errors both kernels give.
fn mounts() {
    let dir = c("mnt");
    let none = c("none");
    let tmpfs = c("tmpfs");
    expect("mkdir mnt", raw(libc::SYS_mkdir, &[p(&dir), 0o755]), "ok");
    expect(
        "mount tmpfs on mnt",
        raw(libc::SYS_mount, &[p(&none), p(&dir), p(&tmpfs), 0, 0]),
        "ok",
    );
    write_file("mnt/f", b"kept in tmpfs");
    case(
        "mnt/f after mount",
        read_file("mnt/f"),
        Some("kept in tmpfs"),
    );
    let fd = open("mnt/f", libc::O_RDONLY, 0);
    expect("fsync on tmpfs", raw(libc::SYS_fsync, &[fd as u64]), "ok");
    expect("syncfs on tmpfs", raw(libc::SYS_syncfs, &[fd as u64]), "ok");
    expect("sync", raw(libc::SYS_sync, &[]), "ok");
    expect("syncfs bad fd", raw(libc::SYS_syncfs, &[999]), "EBADF");
    expect(
        "umount2 busy (open file)",
        raw(libc::SYS_umount2, &[p(&dir), 0]),
        "EBUSY",
    );
    close(fd);
    expect("umount2 mnt", raw(libc::SYS_umount2, &[p(&dir), 0]), "ok");
    case("mnt/f after umount", read_file("mnt/f"), Some("ENOENT"));
    expect(
        "umount2 not a mount point",
        raw(libc::SYS_umount2, &[p(&dir), 0]),
        "EINVAL",
    );
    let unknown = c("nosuchfs");
    expect(
        "mount unknown type",
        raw(libc::SYS_mount, &[p(&none), p(&dir), p(&unknown), 0, 0]),
        "ENODEV",
    );
    expect(
        "mount bad target pointer",
        raw(libc::SYS_mount, &[p(&none), BAD, p(&tmpfs), 0, 0]),
        "EFAULT",
    );
    expect("rmdir mnt", raw(libc::SYS_rmdir, &[p(&dir)]), "ok");
}

fn main() {
    let dir = userland::args()
        .into_iter()
        .next()
        .unwrap_or("/sysgaps".into());
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::env::set_current_dir(&dir)) {
        say(&format!("sysgaps: cannot use {dir}: {e}  <-- WRONG"));
        std::process::exit(1);
    }
    identity();
    groups_and_sessions();
    limits();
    info_calls();
    processes();
    signals();
    files();
    mounts();
    let failed = FAILED.load(Ordering::Relaxed);
    if failed == 0 {
        say("sysgaps: pass");
    } else {
        say(&format!("sysgaps: {failed} checks failed"));
        std::process::exit(1);
    }
}
