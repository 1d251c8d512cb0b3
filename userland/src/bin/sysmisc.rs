//! `sysmisc`: the calls and files real programs expect besides the file
//! and process basics — `time`, `alarm`, `setitimer`/`getitimer` (SIGALRM
//! delivery checked with `sigsuspend` handshakes, never with timings),
//! `prctl` names, the `chown` family, `sendfile`, `rseq`; `/proc`
//! (`self`, `fd/` magic links, `exe`, `status`, `maps`, `cmdline`, `comm`,
//! `cpuinfo`, `meminfo`, `uptime`, `stat`, `loadavg`, `mounts`, `net/dev`)
//! and `/dev` (`full`, `urandom`, `random`).
//!
//! Prints one fact per line: results, errno names, and the shape of what
//! `/proc` shows (keys, line formats, values that must agree with other
//! calls), never times, addresses or pids.  With the argument
//! `cmdline-child` it prints its own `/proc/self/cmdline` and exits (it is
//! exec'd through `/proc/self/exe` for that).  Exit 0 when every check held.

use std::ffi::CString;
use std::sync::atomic::{AtomicU32, Ordering};

use userland::{errno_name, outcome, say};

static ALARMS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_alarm(_sig: i32) {
    ALARMS.fetch_add(1, Ordering::SeqCst);
}

struct Report {
    ok: bool,
}

impl Report {
    fn expect(&mut self, what: &str, got: bool) {
        say(&format!(
            "{what}: {got}{}",
            if got { "" } else { "  <-- WRONG" }
        ));
        self.ok &= got;
    }

    /// `what: value`, WRONG unless it is `want`.
    fn value(&mut self, what: &str, got: &str, want: &str) {
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        self.ok &= good;
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// A raw system call's result: `ok(N)`/`ok` or the errno name.
fn sys(ret: i64) -> String {
    outcome(ret)
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| errno_name(e.raw_os_error().unwrap_or(0)))
}

fn read_text(path: &str) -> String {
    read_file(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn readlink(path: &str) -> Result<String, String> {
    std::fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| errno_name(e.raw_os_error().unwrap_or(0)))
}

fn stat(path: &str, follow: bool) -> Option<libc::stat> {
    // SAFETY: zeroed `stat` is valid plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let p = cstr(path);
    // SAFETY: valid path and out-pointer.
    let r = unsafe {
        if follow {
            libc::stat(p.as_ptr(), &mut st)
        } else {
            libc::lstat(p.as_ptr(), &mut st)
        }
    };
    (r == 0).then_some(st)
}

fn fstat(fd: i32) -> libc::stat {
    // SAFETY: as in `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::fstat(fd, &mut st) };
    st
}

fn open(path: &str, flags: i32, mode: u32) -> i32 {
    let p = cstr(path);
    // SAFETY: valid path.
    unsafe { libc::open(p.as_ptr(), flags, mode) }
}

fn write_fd(fd: i32, data: &[u8]) -> i64 {
    // SAFETY: valid buffer.
    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) as i64 }
}

fn read_fd(fd: i32, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // SAFETY: valid buffer.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), n) };
    buf.truncate(r.max(0) as usize);
    buf
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// The value of `Key:` in a `/proc/.../status`-style text.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim())
}

fn hex_field(text: &str, key: &str) -> u64 {
    field(text, key)
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(u64::MAX)
}

fn sig_bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// `getitimer(ITIMER_REAL)` as (interval µs, value µs).
fn get_real() -> Result<(i64, i64), String> {
    let mut it = [0i64; 4];
    // SAFETY: `it` is a valid `struct itimerval`.
    let r = unsafe { libc::syscall(libc::SYS_getitimer, 0, it.as_mut_ptr()) };
    if r < 0 {
        return Err(errno_name(userland::errno()));
    }
    Ok((it[0] * 1_000_000 + it[1], it[2] * 1_000_000 + it[3]))
}

fn set_real(interval_us: i64, value_us: i64) -> i64 {
    let it = [
        interval_us / 1_000_000,
        interval_us % 1_000_000,
        value_us / 1_000_000,
        value_us % 1_000_000,
    ];
    // SAFETY: `it` is a valid `struct itimerval`; no old value asked for.
    unsafe { libc::syscall(libc::SYS_setitimer, 0, it.as_ptr(), 0usize) }
}

/// Waits (signals other than SIGALRM blocked) until `count` SIGALRMs
/// have been handled in all.
fn wait_alarms(count: u32) {
    // SAFETY: plain sigset manipulation and sigsuspend with a valid set.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        while ALARMS.load(Ordering::SeqCst) < count {
            libc::sigsuspend(&empty);
        }
    }
}

fn block_alarm(block: bool) {
    // SAFETY: plain sigset manipulation.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

fn time_and_timers(r: &mut Report) {
    // time(2), with and without a pointer.
    let mut stored: i64 = 0;
    // SAFETY: `stored` is a valid out-pointer.
    let t = unsafe { libc::syscall(libc::SYS_time, &mut stored as *mut i64) };
    // SAFETY: null is allowed.
    let t0 = unsafe { libc::syscall(libc::SYS_time, 0usize) };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    r.expect("time() is after 2020", t > 1_577_836_800);
    r.expect("time(&t) stores what it returns", stored == t);
    r.expect(
        "time(NULL) agrees with gettimeofday (within 2 s)",
        (t0 - now).abs() <= 2,
    );
    // SAFETY: an invalid pointer: the kernel must refuse it.
    let bad = unsafe { libc::syscall(libc::SYS_time, 8usize) };
    say(&format!("time(bad pointer): {}", sys(bad)));

    // alarm(2) as a raw call: what it returns is the old setting.
    // SAFETY: alarm has no memory arguments.
    let alarm = |s: u32| unsafe { libc::syscall(libc::SYS_alarm, s) };
    say(&format!("alarm(0) first: {}", sys(alarm(0))));
    say(&format!("alarm(100): {}", sys(alarm(100))));
    say(&format!(
        "alarm(50) returns the 100 s left: {}",
        sys(alarm(50))
    ));
    let (interval, value) = get_real().unwrap_or((-1, -1));
    r.expect(
        "getitimer after alarm(50): value in (49 s, 50 s], no interval",
        interval == 0 && value > 49_000_000 && value <= 50_000_000,
    );
    say(&format!(
        "alarm(0) returns the 50 s left: {}",
        sys(alarm(0))
    ));
    say(&format!("getitimer when disarmed: {:?}", get_real()));

    // setitimer / getitimer errors.
    say(&format!("setitimer(5 s): {}", sys(set_real(0, 5_000_000))));
    let mut old = [0i64; 4];
    let it = [0i64, 250_000, 3, 0];
    // SAFETY: valid itimervals.
    let ret = unsafe { libc::syscall(libc::SYS_setitimer, 0, it.as_ptr(), old.as_mut_ptr()) };
    say(&format!("setitimer(3 s every 0.25 s, old): {}", sys(ret)));
    r.expect(
        "old value in (4 s, 5 s], old interval 0",
        old[0] == 0 && old[1] == 0 && (old[2] * 1_000_000 + old[3]) > 4_000_000,
    );
    let (interval, value) = get_real().unwrap_or((-1, -1));
    r.expect(
        "getitimer: interval 0.25 s, value in (2 s, 3 s]",
        interval == 250_000 && value > 2_000_000 && value <= 3_000_000,
    );
    say(&format!("setitimer(disarm): {}", sys(set_real(0, 0))));
    let bad_usec = [0i64, 0, 1, 1_000_000];
    // SAFETY: valid pointer; the value is invalid on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_setitimer, 0, bad_usec.as_ptr(), 0usize) };
    say(&format!("setitimer(tv_usec = 1000000): {}", sys(ret)));
    let zero = [0i64; 4];
    // SAFETY: valid pointer; `which` is invalid on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_setitimer, 7, zero.as_ptr(), 0usize) };
    say(&format!("setitimer(which = 7): {}", sys(ret)));
    // SAFETY: an invalid pointer on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_setitimer, 0, 8usize, 0usize) };
    say(&format!("setitimer(bad pointer): {}", sys(ret)));
    let mut out = [0i64; 4];
    // SAFETY: valid pointer; `which` is invalid on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_getitimer, 7, out.as_mut_ptr()) };
    say(&format!("getitimer(which = 7): {}", sys(ret)));
    // SAFETY: an invalid pointer on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_getitimer, 0, 8usize) };
    say(&format!("getitimer(bad pointer): {}", sys(ret)));

    // Delivery: SIGALRM blocked except inside sigsuspend, so no signal is
    // lost between the check and the wait.
    let handler = on_alarm as extern "C" fn(i32) as usize;
    say(&format!(
        "sigaction SIGALRM: {:?}",
        userland::set_handler(libc::SIGALRM, handler, 0)
    ));
    block_alarm(true);
    set_real(0, 20_000);
    wait_alarms(1);
    r.expect(
        "one-shot setitimer delivered SIGALRM once",
        ALARMS.load(Ordering::SeqCst) == 1,
    );
    r.expect(
        "one-shot timer is disarmed after firing",
        get_real() == Ok((0, 0)),
    );
    set_real(10_000, 10_000);
    wait_alarms(4);
    set_real(0, 0);
    r.expect(
        "periodic timer fired three more times",
        ALARMS.load(Ordering::SeqCst) >= 4,
    );
    let before = ALARMS.load(Ordering::SeqCst);
    alarm(1);
    wait_alarms(before + 1);
    r.expect(
        "alarm(1) delivered SIGALRM",
        ALARMS.load(Ordering::SeqCst) == before + 1,
    );
    // A forked child starts without the parent's timer.
    set_real(0, 30_000_000);
    let child = userland::fork_run(|| match get_real() {
        Ok((0, 0)) => 0,
        _ => 1,
    });
    say(&format!(
        "fork: child's timer is disarmed: {}",
        child.map(userland::wait_for).unwrap_or_else(|e| e)
    ));
    set_real(0, 0);
    block_alarm(false);

    // select's timeval: whole seconds in tv_usec carry into tv_sec (Linux's
    // fs/select.c); only negative parts are EINVAL.
    let select_after = |sec: i64, usec: i64| {
        let mut tv = libc::timeval {
            tv_sec: sec,
            tv_usec: usec,
        };
        let null = std::ptr::null_mut::<libc::fd_set>();
        // SAFETY: no fd sets; `tv` is a valid timeval for the call's duration.
        sys(unsafe { libc::syscall(libc::SYS_select, 0, null, null, null, &mut tv) })
    };
    r.value("select, tv_usec 1000000", &select_after(0, 1_000_000), "ok");
    r.value("select, tv_usec -1", &select_after(0, -1), "EINVAL");
    r.value("select, tv_sec -1", &select_after(-1, 0), "EINVAL");
}

fn prctl_names(r: &mut Report) {
    let name = cstr("sysmisc-name-longer-than-15");
    // SAFETY: valid NUL-terminated name.
    let ret = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    say(&format!(
        "prctl(PR_SET_NAME, 27 bytes): {}",
        sys(ret as i64)
    ));
    let mut buf = [0xffu8; 16];
    // SAFETY: 16-byte buffer, as PR_GET_NAME needs.
    let ret = unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
    let n = buf.iter().position(|&b| b == 0).unwrap_or(16);
    say(&format!(
        "prctl(PR_GET_NAME): {} {:?}",
        sys(ret as i64),
        String::from_utf8_lossy(&buf[..n])
    ));
    r.value(
        "/proc/self/comm",
        read_text("/proc/self/comm").trim_end(),
        "sysmisc-name-lo",
    );
    r.value(
        "/proc/self/status Name",
        field(&read_text("/proc/self/status"), "Name").unwrap_or("?"),
        "sysmisc-name-lo",
    );
    // SAFETY: an invalid pointer on purpose.
    let ret = unsafe { libc::prctl(libc::PR_SET_NAME, 8usize) };
    say(&format!(
        "prctl(PR_SET_NAME, bad pointer): {}",
        sys(ret as i64)
    ));
    // SAFETY: an option Linux does not have.
    let ret = unsafe { libc::prctl(0x7fff_0001, 0, 0, 0, 0) };
    say(&format!("prctl(unknown option): {}", sys(ret as i64)));
    let t = std::thread::Builder::new()
        .name("worker-thread".into())
        .spawn(|| {
            let mut buf = [0u8; 16];
            // SAFETY: 16-byte buffer.
            unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr()) };
            let n = buf.iter().position(|&b| b == 0).unwrap_or(16);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .map(|h| h.join().unwrap_or_default());
    say(&format!("a named std thread's PR_GET_NAME: {t:?}"));
    let name = cstr("sysmisc");
    // SAFETY: valid name.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };

    // rseq: Linux registers or refuses an area; a zero-length one is
    // refused either way (EINVAL, or ENOSYS where it is not built in).
    // SAFETY: no memory is handed over (length 0).
    let ret = unsafe { libc::syscall(334, 0usize, 0u32, 0, 0) };
    r.expect("rseq with a zero-length area is refused", ret == -1);
}

fn owners(r: &mut Report) {
    let _ = std::fs::remove_dir_all("/tmp/sysmisc");
    let _ = std::fs::create_dir_all("/tmp/sysmisc/d");
    let f = "/tmp/sysmisc/f";
    let _ = std::fs::write(f, b"owned");
    let owner = |p: &str, follow: bool| {
        stat(p, follow)
            .map(|s| format!("{}:{} mode {:o}", s.st_uid, s.st_gid, s.st_mode & 0o7777))
            .unwrap_or_else(|| "?".into())
    };
    let chown = |p: &str, u: u32, g: u32| {
        let c = cstr(p);
        // SAFETY: valid path.
        sys(unsafe { libc::chown(c.as_ptr(), u, g) } as i64)
    };
    // SAFETY: plain chmod of our file.
    unsafe { libc::chmod(cstr(f).as_ptr(), 0o644) };
    say(&format!("chown(f, 1000, 2000): {}", chown(f, 1000, 2000)));
    say(&format!("stat f: {}", owner(f, true)));
    say(&format!("chown(f, -1, 3000): {}", chown(f, u32::MAX, 3000)));
    say(&format!("stat f: {}", owner(f, true)));
    // SAFETY: as above.
    unsafe { libc::chmod(cstr(f).as_ptr(), 0o6755) };
    say(&format!(
        "chown(f, -1, -1) of a 6755 file: {}",
        chown(f, u32::MAX, u32::MAX)
    ));
    say(&format!("stat f (set-id bits cleared): {}", owner(f, true)));
    // SAFETY: as above.
    unsafe { libc::chmod(cstr("/tmp/sysmisc/d").as_ptr(), 0o2755) };
    say(&format!(
        "chown(dir, 1, 1): {}",
        chown("/tmp/sysmisc/d", 1, 1)
    ));
    say(&format!(
        "stat dir (setgid kept): {}",
        owner("/tmp/sysmisc/d", true)
    ));
    let _ = std::os::unix::fs::symlink("f", "/tmp/sysmisc/link");
    let link = cstr("/tmp/sysmisc/link");
    // SAFETY: valid path.
    let ret = unsafe { libc::lchown(link.as_ptr(), 5, 6) };
    say(&format!("lchown(link, 5, 6): {}", sys(ret as i64)));
    say(&format!(
        "lstat link owner: {}",
        stat("/tmp/sysmisc/link", false)
            .map_or((0, 0), |s| (s.st_uid, s.st_gid))
            .0
    ));
    say(&format!(
        "stat through link: {}",
        owner("/tmp/sysmisc/link", true)
    ));
    // SAFETY: valid path and flags.
    let ret = unsafe {
        libc::fchownat(
            libc::AT_FDCWD,
            link.as_ptr(),
            9,
            10,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    say(&format!(
        "fchownat(link, 9, 10, NOFOLLOW): {}",
        sys(ret as i64)
    ));
    say(&format!(
        "lstat link: {:?}",
        stat("/tmp/sysmisc/link", false).map(|s| (s.st_uid, s.st_gid))
    ));
    // SAFETY: invalid flags on purpose.
    let ret = unsafe { libc::fchownat(libc::AT_FDCWD, link.as_ptr(), 1, 1, 0x4) };
    say(&format!("fchownat(bad flags): {}", sys(ret as i64)));
    let fd = open(f, libc::O_RDONLY, 0);
    // SAFETY: our descriptor.
    let ret = unsafe { libc::fchown(fd, 7, 8) };
    say(&format!("fchown(fd, 7, 8): {}", sys(ret as i64)));
    say(&format!("stat f: {}", owner(f, true)));
    close(fd);
    let fd = open(f, libc::O_PATH, 0);
    // SAFETY: our descriptor.
    let ret = unsafe { libc::fchown(fd, 7, 8) };
    say(&format!("fchown(O_PATH fd): {}", sys(ret as i64)));
    close(fd);
    // SAFETY: a descriptor that is not open.
    let ret = unsafe { libc::fchown(999, 1, 1) };
    say(&format!("fchown(999): {}", sys(ret as i64)));
    say(&format!(
        "chown(missing): {}",
        chown("/tmp/sysmisc/none", 1, 1)
    ));
    // SAFETY: an invalid pointer on purpose.
    let ret = unsafe { libc::syscall(libc::SYS_chown, 8usize, 1, 1) };
    say(&format!("chown(bad pointer): {}", sys(ret)));
    // Not root: only the group of one's own file, to one's own group.
    let child = userland::fork_run(|| {
        // SAFETY: dropping privileges in the child only.
        unsafe {
            libc::setgid(8);
            libc::setuid(7);
        }
        let a = chown(f, 1000, u32::MAX);
        let b = chown(f, u32::MAX, 8);
        let c = chown(f, u32::MAX, 9);
        say(&format!(
            "as uid 7: chown to uid 1000: {a}, to gid 8: {b}, to gid 9: {c}"
        ));
        0
    });
    say(&format!(
        "non-root child: {}",
        child.map(userland::wait_for).unwrap_or_else(|e| e)
    ));
    r.expect("chown checks ran", true);
}

fn sendfile(r: &mut Report) {
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let _ = std::fs::write("/tmp/sysmisc/src", &data);
    let src = open("/tmp/sysmisc/src", libc::O_RDONLY, 0);
    let dst = open(
        "/tmp/sysmisc/dst",
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        0o644,
    );
    // SAFETY: our descriptors; null offset.
    let n = unsafe { libc::sendfile(dst, src, std::ptr::null_mut(), 4096) };
    say(&format!(
        "sendfile(file, file, NULL, 4096): {}",
        sys(n as i64)
    ));
    // SAFETY: our descriptor.
    let pos = unsafe { libc::lseek(src, 0, libc::SEEK_CUR) };
    say(&format!("input position after: {pos}"));
    let mut off: libc::off_t = 9000;
    // SAFETY: valid offset pointer.
    let n = unsafe { libc::sendfile(dst, src, &mut off, 5000) };
    say(&format!(
        "sendfile(offset 9000, 5000) near the end: {} offset now {off}",
        sys(n as i64)
    ));
    // SAFETY: our descriptor.
    let pos = unsafe { libc::lseek(src, 0, libc::SEEK_CUR) };
    say(&format!("input position unchanged: {pos}"));
    // SAFETY: valid offset pointer.
    let n = unsafe { libc::sendfile(dst, src, &mut off, 100) };
    say(&format!("sendfile at end of file: {}", sys(n as i64)));
    // SAFETY: null offset, zero count.
    let n = unsafe { libc::sendfile(dst, src, std::ptr::null_mut(), 0) };
    say(&format!("sendfile(count 0): {}", sys(n as i64)));
    close(dst);
    let got = read_file("/tmp/sysmisc/dst").unwrap_or_default();
    let mut want = data[..4096].to_vec();
    want.extend_from_slice(&data[9000..]);
    r.expect("destination holds the two copied ranges", got == want);

    // To a pipe and to a socket.
    let mut p = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    let mut off: libc::off_t = 100;
    // SAFETY: valid offset pointer.
    let n = unsafe { libc::sendfile(p[1], src, &mut off, 300) };
    say(&format!("sendfile to a pipe: {}", sys(n as i64)));
    r.expect(
        "the pipe carries the bytes",
        read_fd(p[0], 1000) == data[100..400],
    );
    let mut s = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) };
    let mut off: libc::off_t = 0;
    // SAFETY: valid offset pointer.
    let n = unsafe { libc::sendfile(s[0], src, &mut off, 500) };
    say(&format!("sendfile to a socket: {}", sys(n as i64)));
    r.expect(
        "the socket carries the bytes",
        read_fd(s[1], 1000) == data[..500],
    );

    // Errors.
    let wronly = open("/tmp/sysmisc/dst", libc::O_WRONLY, 0);
    let append = open("/tmp/sysmisc/dst", libc::O_WRONLY | libc::O_APPEND, 0);
    let e = |out: i32, inp: i32, off: *mut libc::off_t| {
        // SAFETY: the pointers are valid or deliberately bad.
        sys(unsafe { libc::sendfile(out, inp, off, 10) } as i64)
    };
    let mut neg: libc::off_t = -1;
    let mut zero: libc::off_t = 0;
    say(&format!(
        "sendfile(bad in fd): {}",
        e(p[1], 999, std::ptr::null_mut())
    ));
    say(&format!(
        "sendfile(bad out fd): {}",
        e(999, src, std::ptr::null_mut())
    ));
    say(&format!(
        "sendfile(in write-only): {}",
        e(p[1], wronly, std::ptr::null_mut())
    ));
    say(&format!(
        "sendfile(out read-only): {}",
        e(src, src, std::ptr::null_mut())
    ));
    say(&format!(
        "sendfile(out O_APPEND): {}",
        e(append, src, std::ptr::null_mut())
    ));
    say(&format!(
        "sendfile(in is a pipe, offset): {}",
        e(wronly, p[0], &mut zero)
    ));
    say(&format!("sendfile(offset -1): {}", e(p[1], src, &mut neg)));
    say(&format!(
        "sendfile(bad offset pointer): {}",
        e(
            p[1],
            src,
            std::ptr::without_provenance_mut::<libc::off_t>(8)
        )
    ));
    for fd in [src, wronly, append, p[0], p[1], s[0], s[1]] {
        close(fd);
    }
}

fn proc_self(r: &mut Report) {
    // Linux's side runs in a PID namespace below a /proc of the outer
    // one, so /proc/self is compared with /proc's own view, not getpid.
    let me = readlink("/proc/self").unwrap_or_default();
    r.expect(
        "readlink /proc/self is a number",
        !me.is_empty() && me.bytes().all(|b| b.is_ascii_digit()),
    );
    let fd = open("/tmp/sysmisc/src", libc::O_RDONLY, 0);
    let link = format!("/proc/self/fd/{fd}");
    say(&format!(
        "readlink /proc/self/fd/N of a file: {:?}",
        readlink(&link)
    ));
    let st = stat(&link, true);
    r.expect(
        "stat /proc/self/fd/N is the file",
        st.is_some_and(|s| s.st_ino == fstat(fd).st_ino && s.st_dev == fstat(fd).st_dev),
    );
    r.expect(
        "lstat /proc/self/fd/N is a symlink",
        stat(&link, false).is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFLNK),
    );
    read_fd(fd, 10);
    let again = open(&link, libc::O_RDONLY, 0);
    r.expect(
        "open /proc/self/fd/N reads the file from the start",
        again >= 0 && read_fd(again, 5) == read_file("/tmp/sysmisc/src").unwrap_or_default()[..5],
    );
    close(again);
    say(&format!(
        "open /proc/self/fd/999: {}",
        sys(open("/proc/self/fd/999", libc::O_RDONLY, 0) as i64)
    ));
    let listed: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    r.expect(
        "/proc/self/fd lists 0, 1, 2 and the open file",
        ["0", "1", "2", &fd.to_string()]
            .iter()
            .all(|n| listed.iter().any(|l| l == n)),
    );
    close(fd);

    // A pipe through /proc/self/fd (what bash's <(...) relies on).
    let mut p = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    let rlink = format!("/proc/self/fd/{}", p[0]);
    let text = readlink(&rlink).unwrap_or_default();
    r.expect(
        "readlink of a pipe is pipe:[its inode]",
        text == format!("pipe:[{}]", fstat(p[0]).st_ino),
    );
    r.expect(
        "stat of a pipe's link is a FIFO",
        stat(&rlink, true).is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFIFO),
    );
    let reader = open(&rlink, libc::O_RDONLY, 0);
    close(p[0]);
    write_fd(p[1], b"through the link");
    r.expect(
        "a pipe opened through its link reads what is written",
        read_fd(reader, 100) == b"through the link",
    );
    close(p[1]);
    r.expect("then sees end of file", read_fd(reader, 100).is_empty());
    close(reader);

    let exe = readlink("/proc/self/exe").unwrap_or_default();
    say(&format!("readlink /proc/self/exe: {exe}"));
    r.expect("/proc/self/exe is absolute", exe.starts_with('/'));
    let exe_st = stat("/proc/self/exe", true);
    r.expect(
        "stat /proc/self/exe is the program",
        exe_st.is_some_and(|s| Some(s.st_ino) == stat(&exe, true).map(|t| t.st_ino)),
    );
    let cwd = readlink("/proc/self/cwd");
    say(&format!("readlink /proc/self/cwd: {cwd:?}"));

    // status: keys, and values other calls determine.
    let handler = on_alarm as extern "C" fn(i32) as usize;
    let _ = userland::set_handler(libc::SIGUSR1, handler, 0);
    let _ = userland::set_handler(libc::SIGUSR2, libc::SIG_IGN, 0);
    // SAFETY: plain sigset manipulation.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let status = read_text("/proc/self/status");
    let keys = [
        "Name", "Umask", "State", "Tgid", "Pid", "PPid", "Uid", "Gid", "FDSize", "Threads", "SigQ",
        "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt",
    ];
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| field(&status, k).is_none())
        .collect();
    r.value("status keys missing", &format!("{missing:?}"), "[]");
    r.value(
        "status State",
        field(&status, "State").unwrap_or("?"),
        "R (running)",
    );
    r.expect(
        "status Pid is what /proc/self names",
        field(&status, "Pid") == Some(me.as_str()),
    );
    r.value(
        "status Uid",
        field(&status, "Uid").unwrap_or("?"),
        "0\t0\t0\t0",
    );
    r.value(
        "status Umask",
        field(&status, "Umask").unwrap_or("?"),
        "0022",
    );
    let mine = sig_bit(libc::SIGUSR1) | sig_bit(libc::SIGUSR2) | sig_bit(libc::SIGHUP);
    say(&format!(
        "status SigBlk/SigIgn/SigCgt for HUP, USR1, USR2: {:x} {:x} {:x}",
        hex_field(&status, "SigBlk") & mine,
        hex_field(&status, "SigIgn") & mine,
        hex_field(&status, "SigCgt") & mine
    ));
    let shape = status
        .lines()
        .filter(|l| l.starts_with("Sig") && !l.starts_with("SigQ"))
        .all(|l| {
            l.split_once(":\t")
                .is_some_and(|(_, v)| v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        });
    r.expect("status Sig* values are 16 hex digits", shape);
    // SAFETY: plain sigset manipulation.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let b2 = barrier.clone();
    let t = std::thread::spawn(move || {
        b2.wait();
        b2.wait();
    });
    barrier.wait();
    say(&format!(
        "status Threads with a second thread: {}",
        field(&read_text("/proc/self/status"), "Threads").unwrap_or("?")
    ));
    barrier.wait();
    let _ = t.join();

    // maps: every line in Linux's shape, the stack named.
    let maps = read_text("/proc/self/maps");
    let well_formed = maps.lines().all(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 5
            && f[0].split_once('-').is_some_and(|(a, b)| {
                u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
            })
            && f[1].len() == 4
            && f[1].chars().all(|c| "rwxps-".contains(c))
            && f[2].len() >= 8
            && u64::from_str_radix(f[2], 16).is_ok()
            && f[3].len() == 5
            && f[3].as_bytes()[2] == b':'
            && f[4].parse::<u64>().is_ok()
    });
    r.expect(
        "maps: every line is start-end perms offset dev inode [name]",
        well_formed,
    );
    r.expect("maps: has lines", maps.lines().count() >= 3);
    r.expect(
        "maps: the stack is named",
        maps.lines().any(|l| l.ends_with(" [stack]")),
    );
    r.expect(
        "maps: named lines put the name at column 73",
        maps.lines()
            .filter(|l| l.ends_with(" [stack]"))
            .all(|l| l.len() > 73 && l.as_bytes()[73] == b'['),
    );
    let code = main as fn() as *const () as usize as u64;
    r.expect(
        "maps: the code of main is in an r-x mapping",
        maps.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = f[0].split_once('-').unwrap_or(("0", "0"));
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap_or(0),
                u64::from_str_radix(b, 16).unwrap_or(0),
            );
            a <= code && code < b && f[1].starts_with("r-x")
        }),
    );

    // cmdline: seen by a copy of this program exec'd through /proc/self/exe.
    let child = userland::fork_run(|| {
        let prog = cstr("/proc/self/exe");
        let args = [
            cstr("sysmisc"),
            cstr("cmdline-child"),
            cstr("a b"),
            cstr(""),
        ];
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let envp = [std::ptr::null()];
        // SAFETY: NULL-terminated argv and envp of valid strings.
        unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        say(&format!(
            "execve /proc/self/exe: {}",
            errno_name(userland::errno())
        ));
        1
    });
    say(&format!(
        "exec'd child: {}",
        child.map(userland::wait_for).unwrap_or_else(|e| e)
    ));
}

fn cmdline_child() -> i32 {
    let raw = read_file("/proc/self/cmdline").unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    say(&format!("child /proc/self/cmdline split at NULs: {args:?}"));
    say(&format!(
        "child /proc/self/comm: {:?}",
        read_text("/proc/self/comm")
    ));
    say(&format!(
        "child readlink /proc/self/exe: {:?}",
        readlink("/proc/self/exe")
    ));
    0
}

fn numbers(line: &str, skip: usize) -> Option<Vec<u64>> {
    line.split_whitespace()
        .skip(skip)
        .map(|w| w.parse().ok())
        .collect()
}

fn centi(word: &str) -> bool {
    word.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.len() == 2
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

fn proc_system(r: &mut Report) {
    // SAFETY: sysconf has no memory arguments.
    let ncpu = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let cpuinfo = read_text("/proc/cpuinfo");
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor\t: "))
        .count();
    say(&format!("cpuinfo processor lines: {processors}"));
    r.expect(
        "as many as sysconf's online CPUs",
        processors as i64 == ncpu,
    );
    for key in ["vendor_id", "model name", "flags", "cpu family"] {
        let n = cpuinfo
            .lines()
            .filter(|l| l.split_once(':').is_some_and(|(k, _)| k.trim_end() == key))
            .count();
        r.expect(
            &format!("cpuinfo: one {key:?} per processor"),
            n == processors,
        );
    }

    let meminfo = read_text("/proc/meminfo");
    let keys: Vec<&str> = meminfo
        .lines()
        .take(3)
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    say(&format!("meminfo first keys: {keys:?}"));
    let shaped = meminfo.lines().all(|l| {
        l.len() >= 27
            && l.ends_with(" kB")
            && l.find(':')
                .is_some_and(|c| c < 16 && l[c + 1..16].bytes().all(|b| b == b' '))
            || !l.ends_with(" kB")
    });
    r.expect(
        "meminfo kB lines: key padded to 16, value right-aligned",
        shaped,
    );
    let kb = |k: &str| {
        field(&meminfo, k)
            .and_then(|v| v.strip_suffix(" kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    r.expect(
        "meminfo: 0 < MemFree <= MemTotal, MemAvailable <= MemTotal",
        matches!((kb("MemTotal"), kb("MemFree"), kb("MemAvailable")),
            (Some(t), Some(f), Some(a)) if f > 0 && f <= t && a <= t),
    );
    // SAFETY: sysinfo fills the struct.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::sysinfo(&mut si) };
    r.expect(
        "meminfo MemTotal is sysinfo's totalram",
        kb("MemTotal") == Some(si.totalram as u64 * si.mem_unit as u64 / 1024),
    );

    let uptime = read_text("/proc/uptime");
    let words: Vec<&str> = uptime.split_whitespace().collect();
    r.expect(
        "uptime: two numbers with two decimals",
        words.len() == 2 && words.iter().all(|w| centi(w)) && uptime.ends_with('\n'),
    );

    let stat = read_text("/proc/stat");
    let first = stat.lines().next().unwrap_or("");
    r.expect(
        "stat: first line is \"cpu  \" and 10 counters",
        first.starts_with("cpu  ") && numbers(first, 1).is_some_and(|n| n.len() == 10),
    );
    let per_cpu = stat
        .lines()
        .filter(|l| {
            l.starts_with("cpu")
                && l.as_bytes().get(3).is_some_and(|b| b.is_ascii_digit())
                && numbers(l, 1).is_some_and(|n| n.len() == 10)
        })
        .count();
    say(&format!("stat cpuN lines: {per_cpu}"));
    let total: Option<Vec<u64>> = numbers(first, 1);
    let sums: Vec<u64> = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .filter_map(|l| numbers(l, 1))
        .fold(vec![0; 10], |a, n| {
            a.iter().zip(&n).map(|(x, y)| x + y).collect()
        });
    r.expect(
        "stat: the cpu line is the sum of the cpuN lines (user, system)",
        total.is_some_and(|t| {
            t[0].abs_diff(sums[0]) <= 2 * per_cpu as u64
                && t[2].abs_diff(sums[2]) <= 2 * per_cpu as u64
        }),
    );
    for key in ["ctxt", "btime", "processes", "procs_running"] {
        r.expect(
            &format!("stat: a {key} line with a number"),
            stat.lines().any(|l| {
                l.strip_prefix(key).is_some_and(|v| {
                    v.starts_with(' ') && numbers(v, 0).is_some_and(|n| n.len() == 1)
                })
            }),
        );
    }
    let btime = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let up = words
        .first()
        .and_then(|w| w.split('.').next())
        .and_then(|w| w.parse::<i64>().ok())
        .unwrap_or(0);
    // SAFETY: null is allowed.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    r.expect(
        "stat btime + uptime is now (within 3 s)",
        (btime + up - now).abs() <= 3,
    );

    let load = read_text("/proc/loadavg");
    let w: Vec<&str> = load.split_whitespace().collect();
    r.expect(
        "loadavg: three averages, running/total, last pid",
        w.len() == 5
            && w[..3].iter().all(|x| centi(x))
            && w[3]
                .split_once('/')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
            && w[4].parse::<u32>().is_ok(),
    );

    let mounts = read_text("/proc/mounts");
    r.expect(
        "mounts: /proc is a proc mount",
        mounts.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 6 && f[1] == "/proc" && f[2] == "proc"
        }),
    );
    r.expect(
        "mounts: six fields per line",
        mounts.lines().all(|l| l.split_whitespace().count() == 6),
    );

    let dev = read_text("/proc/net/dev");
    let lines: Vec<&str> = dev.lines().collect();
    r.expect(
        "net/dev: Linux's two header lines",
        lines
            .first()
            .is_some_and(|l| l.starts_with("Inter-|   Receive"))
            && lines.get(1).is_some_and(|l| l.starts_with(" face |bytes")),
    );
    r.expect(
        "net/dev: an lo line with 16 counters",
        lines.iter().any(|l| {
            l.split_once(':').is_some_and(|(name, rest)| {
                name.trim() == "lo" && numbers(rest, 0).is_some_and(|n| n.len() == 16)
            })
        }),
    );
}

/// The interface ioctls `ifconfig` uses, on `lo` (up on both systems).
fn interfaces(r: &mut Report) {
    // SAFETY: a plain socket.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    let ifreq = |cmd: u64, name: &str| -> Result<[u8; 40], String> {
        let mut req = [0u8; 40];
        req[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a 40-byte `struct ifreq`.
        let ret = unsafe { libc::ioctl(s, cmd as _, req.as_mut_ptr()) };
        if ret < 0 {
            Err(errno_name(userland::errno()))
        } else {
            Ok(req)
        }
    };
    let flags = ifreq(0x8913, "lo").map(|q| u16::from_ne_bytes([q[16], q[17]]));
    say(&format!("SIOCGIFFLAGS lo: {flags:x?}"));
    let addr = ifreq(0x8915, "lo").map(|q| q[20..24].to_vec());
    say(&format!("SIOCGIFADDR lo: {addr:?}"));
    let mask = ifreq(0x891b, "lo").map(|q| q[20..24].to_vec());
    say(&format!("SIOCGIFNETMASK lo: {mask:?}"));
    let mtu = ifreq(0x8921, "lo").map(|q| i32::from_ne_bytes([q[16], q[17], q[18], q[19]]));
    say(&format!("SIOCGIFMTU lo: {mtu:?}"));
    let index = ifreq(0x8933, "lo").map(|q| i32::from_ne_bytes([q[16], q[17], q[18], q[19]]));
    say(&format!("SIOCGIFINDEX lo: {index:?}"));
    let hw = ifreq(0x8927, "lo").map(|q| u16::from_ne_bytes([q[16], q[17]]));
    say(&format!("SIOCGIFHWADDR lo family: {hw:?}"));
    say(&format!(
        "SIOCGIFFLAGS nosuch0: {:?}",
        ifreq(0x8913, "nosuch0").map(|_| ())
    ));
    let mut req = [0u8; 40];
    req[16..20].copy_from_slice(&1i32.to_ne_bytes());
    // SAFETY: as above.
    let ret = unsafe { libc::ioctl(s, 0x8910 as _, req.as_mut_ptr()) };
    let end = req[..16].iter().position(|&b| b == 0).unwrap_or(16);
    say(&format!(
        "SIOCGIFNAME 1: {} {:?}",
        sys(ret as i64),
        String::from_utf8_lossy(&req[..end])
    ));
    // SIOCGIFCONF: the length needed, then the entries.
    let mut conf = [0u64; 2];
    // SAFETY: `conf` is a `struct ifconf` with a null buffer.
    unsafe { libc::ioctl(s, 0x8912 as _, conf.as_mut_ptr()) };
    let need = conf[0] as i32;
    let mut buf = vec![0u8; need.max(0) as usize];
    conf[0] = need as u64;
    conf[1] = buf.as_mut_ptr() as u64;
    // SAFETY: `buf` holds `need` bytes.
    let ret = unsafe { libc::ioctl(s, 0x8912 as _, conf.as_mut_ptr()) };
    let names: Vec<String> = buf
        .chunks(40)
        .map(|c| {
            let end = c[..16].iter().position(|&b| b == 0).unwrap_or(16);
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect();
    r.expect(
        "SIOCGIFCONF lists lo with its address",
        ret == 0
            && names
                .iter()
                .zip(buf.chunks(40))
                .any(|(n, c)| n == "lo" && c[20..24] == [127, 0, 0, 1]),
    );
    close(s);
}

/// `/proc/self/stat` and `statfs` of the kernel's file systems.
fn stat_and_statfs(r: &mut Report) {
    let stat = read_text("/proc/self/stat");
    let me = readlink("/proc/self").unwrap_or_default();
    let (head, rest) = stat.rsplit_once(") ").unwrap_or(("", ""));
    let fields: Vec<&str> = rest.split_whitespace().collect();
    r.expect(
        "/proc/self/stat: pid (comm) then 50 more fields",
        head == format!("{me} (sysmisc") && fields.len() == 50,
    );
    say(&format!(
        "/proc/self/stat state: {}",
        fields.first().unwrap_or(&"?")
    ));
    r.expect(
        "/proc/self/stat: utime, stime, starttime, vsize are numbers",
        [11, 12, 19, 20]
            .iter()
            .all(|&i| fields.get(i).is_some_and(|f| f.parse::<u64>().is_ok())),
    );
    let magic = |path: &str| {
        // SAFETY: zeroed statfs is valid plain data.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let p = cstr(path);
        // SAFETY: valid path and out-pointer.
        let ret = unsafe { libc::statfs(p.as_ptr(), &mut st) };
        if ret < 0 {
            errno_name(userland::errno())
        } else {
            format!(
                "{:#x} bsize {} namelen {}",
                st.f_type, st.f_bsize, st.f_namelen
            )
        }
    };
    say(&format!("statfs /proc: {}", magic("/proc")));
    say(&format!("statfs /dev: {}", magic("/dev")));
    say(&format!("statfs /nonexistent: {}", magic("/nonexistent")));
    let fmagic = |fd: i32| {
        // SAFETY: as above.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        let ret = unsafe { libc::fstatfs(fd, &mut st) };
        if ret < 0 {
            errno_name(userland::errno())
        } else {
            format!("{:#x}", st.f_type)
        }
    };
    let mut p = [0i32; 2];
    // SAFETY: valid array.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    say(&format!("fstatfs of a pipe: {}", fmagic(p[0])));
    close(p[0]);
    close(p[1]);
    say(&format!("fstatfs of fd 999: {}", fmagic(999)));
}

fn devices(r: &mut Report) {
    let full = open("/dev/full", libc::O_RDWR, 0);
    say(&format!("write /dev/full: {}", sys(write_fd(full, b"x"))));
    let z = read_fd(full, 16);
    r.expect(
        "read /dev/full gives zeros",
        z.len() == 16 && z.iter().all(|&b| b == 0),
    );
    close(full);
    for path in ["/dev/urandom", "/dev/random"] {
        let fd = open(path, libc::O_RDONLY, 0);
        let (a, b) = (read_fd(fd, 32), read_fd(fd, 32));
        r.expect(
            &format!("{path}: two reads of 32 bytes differ"),
            a.len() == 32 && b.len() == 32 && a != b,
        );
        say(&format!(
            "write {path}: {}",
            sys(write_fd(open(path, libc::O_WRONLY, 0), b"seed"))
        ));
        close(fd);
    }
    for path in [
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/null",
        "/dev/zero",
    ] {
        let desc = stat(path, true)
            .map(|s| {
                format!(
                    "char {} {}:{} mode {:o}",
                    s.st_mode & libc::S_IFMT == libc::S_IFCHR,
                    libc::major(s.st_rdev),
                    libc::minor(s.st_rdev),
                    s.st_mode & 0o777
                )
            })
            .unwrap_or_else(|| "missing".into());
        say(&format!("{path}: {desc}"));
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("cmdline-child") {
        std::process::exit(cmdline_child());
    }
    let mut r = Report { ok: true };
    // SAFETY: umask has no memory arguments.
    unsafe { libc::umask(0o022) };
    time_and_timers(&mut r);
    prctl_names(&mut r);
    owners(&mut r);
    sendfile(&mut r);
    proc_self(&mut r);
    proc_system(&mut r);
    interfaces(&mut r);
    stat_and_statfs(&mut r);
    devices(&mut r);
    let _ = std::fs::remove_dir_all("/tmp/sysmisc");
    say(&format!("sysmisc: {}", if r.ok { "pass" } else { "FAIL" }));
    std::process::exit(if r.ok { 0 } else { 1 });
}
