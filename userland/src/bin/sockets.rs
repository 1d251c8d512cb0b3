//! `sockets`: AF_UNIX socket pairs, poll/select/epoll on pipes and sockets.
//!
//! One deterministic line per check (no counts that depend on buffer sizes,
//! no times): socketpair echo with threads, EOF/EPIPE/SIGPIPE, shutdown,
//! non-blocking EAGAIN, FIONREAD, MSG_PEEK, sendmsg/recvmsg with two
//! iovecs, datagram and seqpacket boundaries, socket option and errno
//! cases; poll/select/epoll (level, edge, one-shot, timeouts 0 and 50 ms,
//! a thread writing while another waits, EINTR), epoll_ctl errnos, named
//! sockets in the abstract namespace and at paths (bind, listen, connect,
//! accept; the socket file, unlink, ENOENT/ECONNREFUSED/ENXIO cases).
//! AF_INET is another program's job: nothing about it is printed here.
//! Exit 0 when every check held.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use userland::{errno, errno_name, say, set_handler};

static FAILED: AtomicBool = AtomicBool::new(false);
static SIGPIPES: AtomicU32 = AtomicU32::new(0);
static SIGUSR1S: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigpipe(_sig: i32) {
    SIGPIPES.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_sigusr1(_sig: i32) {
    SIGUSR1S.fetch_add(1, Ordering::SeqCst);
}

fn expect(what: &str, got: impl AsRef<str>, want: &str) {
    let got = got.as_ref();
    let good = got == want;
    if !good {
        FAILED.store(true, Ordering::SeqCst);
    }
    say(&format!(
        "{what}: {got}{}",
        if good { "" } else { "  <-- WRONG" }
    ));
}

/// Errno names (the ABI's one table).
fn ename(e: i32) -> String {
    errno_name(e)
}

/// `ok(N)` / `ok` / errno name for a libc return value.
fn res(ret: i64) -> String {
    if ret < 0 {
        ename(errno())
    } else if ret == 0 {
        "ok".into()
    } else {
        format!("ok({ret})")
    }
}

fn events(bits: i64) -> String {
    let names = [
        (libc::POLLIN as i64, "IN"),
        (libc::POLLPRI as i64, "PRI"),
        (libc::POLLOUT as i64, "OUT"),
        (libc::POLLERR as i64, "ERR"),
        (libc::POLLHUP as i64, "HUP"),
        (libc::POLLNVAL as i64, "NVAL"),
        (libc::POLLRDHUP as i64, "RDHUP"),
    ];
    let mut parts: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|&(_, n)| n)
        .collect();
    let rest = names.iter().fold(bits, |acc, (b, _)| acc & !b);
    let extra;
    if rest != 0 {
        extra = format!("{rest:#x}");
        parts.push(&extra);
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("|")
    }
}

fn socketpair(ty: i32) -> (i32, i32) {
    let mut fds = [-1i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
    if r != 0 {
        expect("socketpair", ename(errno()), "ok");
        std::process::exit(1);
    }
    (fds[0], fds[1])
}

fn pipe() -> (i32, i32) {
    let mut fds = [-1i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        expect("pipe", ename(errno()), "ok");
        std::process::exit(1);
    }
    (fds[0], fds[1])
}

fn write(fd: i32, data: &[u8]) -> i64 {
    // SAFETY: `data` is a live buffer of its length.
    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) as i64 }
}

fn read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: `buf` is a live, writable buffer of its length.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) as i64 }
}

fn send(fd: i32, data: &[u8], flags: i32) -> i64 {
    // SAFETY: `data` is a live buffer of its length.
    unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) as i64 }
}

fn recv(fd: i32, buf: &mut [u8], flags: i32) -> i64 {
    // SAFETY: `buf` is a live, writable buffer of its length.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) as i64 }
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor this program owns.
    unsafe { libc::close(fd) };
}

/// Reads exactly `buf.len()` bytes unless EOF or an error comes first.
fn read_full(fd: i32, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let n = read(fd, &mut buf[got..]);
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    got
}

fn poll1(fd: i32, ev: i16, timeout_ms: i32) -> String {
    let mut p = libc::pollfd {
        fd,
        events: ev,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        ename(errno())
    } else {
        format!("{r} {}", events(p.revents as i64))
    }
}

fn fionread(fd: i32) -> String {
    let mut n: libc::c_int = -1;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        ename(errno())
    } else {
        n.to_string()
    }
}

fn getsockopt_int(fd: i32, name: i32) -> String {
    let mut v: libc::c_int = -1;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized as `len` says.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        ename(errno())
    } else {
        format!("{v} (len {len})")
    }
}

fn cloexec(fd: i32) -> bool {
    // SAFETY: F_GETFD takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
}

fn nonblocking(fd: i32) -> bool {
    // SAFETY: F_GETFL takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK != 0 }
}

fn set_nonblocking(fd: i32, on: bool) {
    // SAFETY: F_GETFL/F_SETFL take no pointer.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        let fl = if on {
            fl | libc::O_NONBLOCK
        } else {
            fl & !libc::O_NONBLOCK
        };
        libc::fcntl(fd, libc::F_SETFL, fl);
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Interrupts thread `tid`'s coming blocking call: sends SIGUSR1 every 50 ms
/// until the caller sets the returned flag (its call returned), so a signal
/// that lands before the call blocks is followed by one that interrupts it.
/// Bounded: after 100 tries it writes a byte to `unblock_fd`, which ends the
/// call with a wrong result (a failed check) instead of a hang.  Join the
/// thread before the next blocking call: a last signal may still arrive.
fn interrupt_until_done(tid: i32, unblock_fd: i32) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let done = Arc::new(AtomicBool::new(false));
    let seen = done.clone();
    let killer = thread::spawn(move || {
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(50));
            if seen.load(Ordering::SeqCst) {
                return;
            }
            // SAFETY: signals our own process's thread.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
        }
        write(unblock_fd, b"!");
    });
    (done, killer)
}

fn stream_basics() {
    let (a, b) = socketpair(libc::SOCK_STREAM);
    // SAFETY: an all-zero stat is a valid out buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live stat buffer.
    unsafe { libc::fstat(a, &mut st) };
    expect(
        "fstat of a socket is S_IFSOCK",
        (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).to_string(),
        "true",
    );
    expect(
        "SO_TYPE of a stream pair",
        getsockopt_int(a, libc::SO_TYPE),
        "1 (len 4)",
    );
    expect("SO_DOMAIN", getsockopt_int(a, libc::SO_DOMAIN), "1 (len 4)");
    expect("SO_ERROR", getsockopt_int(a, libc::SO_ERROR), "0 (len 4)");
    expect(
        "SO_ACCEPTCONN of a pair",
        getsockopt_int(a, libc::SO_ACCEPTCONN),
        "0 (len 4)",
    );
    // getsockname of an unnamed socket: the family only.
    // SAFETY: an all-zero sockaddr_un is a valid out buffer.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `sun`/`len` are live and sized as `len` says.
    let r = unsafe { libc::getsockname(a, (&mut sun as *mut libc::sockaddr_un).cast(), &mut len) };
    expect(
        "getsockname of a pair end",
        format!("{} len {len} family {}", res(r as i64), sun.sun_family),
        "ok len 2 family 1",
    );
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe { libc::getpeername(a, (&mut sun as *mut libc::sockaddr_un).cast(), &mut len) };
    expect(
        "getpeername of a pair end",
        format!("{} len {len}", res(r as i64)),
        "ok len 2",
    );

    expect("write 5 bytes", res(write(a, b"hello")), "ok(5)");
    expect("FIONREAD", fionread(b), "5");
    let mut buf = [0u8; 16];
    let n = recv(b, &mut buf[..3], libc::MSG_PEEK);
    expect(
        "recv MSG_PEEK 3",
        format!("{} {:?}", res(n), String::from_utf8_lossy(&buf[..3])),
        "ok(3) \"hel\"",
    );
    let n = read(b, &mut buf);
    expect(
        "read after peek",
        format!("{} {:?}", res(n), String::from_utf8_lossy(&buf[..5])),
        "ok(5) \"hello\"",
    );
    expect("FIONREAD when empty", fionread(b), "0");
    expect(
        "recv MSG_DONTWAIT on empty",
        res(recv(b, &mut buf, libc::MSG_DONTWAIT)),
        "EAGAIN",
    );
    expect(
        "poll empty end, timeout 0",
        poll1(b, libc::POLLIN | libc::POLLOUT, 0),
        "1 OUT",
    );
    expect(
        "poll empty end for IN, timeout 0",
        poll1(b, libc::POLLIN, 0),
        "0 none",
    );
    expect(
        "poll empty end for IN, timeout 50 ms",
        poll1(b, libc::POLLIN, 50),
        "0 none",
    );

    // FIONBIO, then fill the buffer.
    let on: libc::c_int = 1;
    // SAFETY: FIONBIO reads one int.
    let r = unsafe { libc::ioctl(a, libc::FIONBIO, &on) };
    expect("ioctl FIONBIO", res(r as i64), "ok");
    expect(
        "O_NONBLOCK after FIONBIO",
        nonblocking(a).to_string(),
        "true",
    );
    let chunk = vec![7u8; 4096];
    let mut last = 0;
    for _ in 0..10_000 {
        last = write(a, &chunk);
        if last < 0 {
            break;
        }
    }
    expect(
        "write until full (non-blocking)",
        res(last.min(0)),
        "EAGAIN",
    );
    expect(
        "poll full end for OUT, timeout 0",
        poll1(a, libc::POLLOUT, 0),
        "0 none",
    );
    expect("peer sees IN", poll1(b, libc::POLLIN, 0), "1 IN");
    // A reader thread drains; a blocking write of 256 KiB then completes.
    set_nonblocking(a, false);
    let drain = thread::spawn(move || {
        let mut total = 0usize;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = read(b, &mut buf);
            if n <= 0 {
                break;
            }
            total += n as usize;
        }
        (total, b)
    });
    let big = vec![1u8; 256 * 1024];
    expect(
        "blocking write of 256 KiB to a full socket",
        res(write(a, &big)),
        "ok(262144)",
    );
    // SAFETY: shutting down our own socket.
    let r = unsafe { libc::shutdown(a, libc::SHUT_WR) };
    expect("shutdown(SHUT_WR)", res(r as i64), "ok");
    let (total, b) = drain.join().unwrap();
    expect(
        "reader got everything, then EOF",
        (total >= 256 * 1024 && total % 4096 == 0).to_string(),
        "true",
    );
    expect(
        "write after SHUT_WR",
        res(send(a, b"x", libc::MSG_NOSIGNAL)),
        "EPIPE",
    );
    expect("peer can still write back", res(write(b, b"back")), "ok(4)");
    let n = read(a, &mut buf);
    expect("read the reply after SHUT_WR", res(n), "ok(4)");
    expect(
        "peer poll after SHUT_WR",
        poll1(b, libc::POLLIN | libc::POLLRDHUP, 0),
        "1 IN|RDHUP",
    );
    close(a);
    close(b);
}

fn echo_with_threads() {
    let (a, b) = socketpair(libc::SOCK_STREAM);
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut total = 0;
        loop {
            let n = read(b, &mut buf);
            if n <= 0 {
                break;
            }
            let mut off = 0;
            while off < n as usize {
                let w = write(b, &buf[off..n as usize]);
                if w <= 0 {
                    return total;
                }
                off += w as usize;
            }
            total += n as usize;
        }
        close(b);
        total
    });
    let mut ok = true;
    for i in 0..64u32 {
        let msg: Vec<u8> = (0..1000u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
        if write(a, &msg) != 1000 {
            ok = false;
            break;
        }
        let mut back = vec![0u8; 1000];
        if read_full(a, &mut back) != 1000 || back != msg {
            ok = false;
            break;
        }
    }
    expect(
        "echo 64 x 1000 bytes through a thread",
        ok.to_string(),
        "true",
    );
    // SAFETY: our own socket.
    unsafe { libc::shutdown(a, libc::SHUT_WR) };
    expect(
        "echo thread saw EOF after",
        echo.join().unwrap().to_string(),
        "64000",
    );
    let mut buf = [0u8; 4];
    expect("read after the peer closed", res(read(a, &mut buf)), "ok");
    expect(
        "poll after the peer closed",
        poll1(a, libc::POLLIN | libc::POLLOUT, 0),
        "1 IN|OUT|HUP",
    );
    close(a);
}

fn epipe_and_sigpipe() {
    let (a, b) = socketpair(libc::SOCK_STREAM);
    close(b);
    set_handler(libc::SIGPIPE, on_sigpipe as *const () as usize, 0).unwrap();
    expect("write to a closed peer", res(write(a, b"x")), "EPIPE");
    expect(
        "SIGPIPE raised",
        SIGPIPES.load(Ordering::SeqCst).to_string(),
        "1",
    );
    expect(
        "send MSG_NOSIGNAL to a closed peer",
        res(send(a, b"x", libc::MSG_NOSIGNAL)),
        "EPIPE",
    );
    expect(
        "no SIGPIPE with MSG_NOSIGNAL",
        SIGPIPES.load(Ordering::SeqCst).to_string(),
        "1",
    );
    set_handler(libc::SIGPIPE, libc::SIG_IGN, 0).unwrap();
    close(a);

    // Closing with unread data resets the peer.
    let (a, b) = socketpair(libc::SOCK_STREAM);
    write(a, b"unread");
    close(b);
    let mut buf = [0u8; 8];
    expect(
        "read after the peer closed with unread data",
        res(read(a, &mut buf)),
        "ECONNRESET",
    );
    expect("read again", res(read(a, &mut buf)), "ok");
    close(a);
}

fn msg_calls() {
    let (a, b) = socketpair(libc::SOCK_STREAM);
    let (p1, p2) = (b"abc".to_vec(), b"defg".to_vec());
    let iov = [
        libc::iovec {
            iov_base: p1.as_ptr() as *mut _,
            iov_len: p1.len(),
        },
        libc::iovec {
            iov_base: p2.as_ptr() as *mut _,
            iov_len: p2.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is valid; fields set below.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = iov.as_ptr() as *mut _;
    m.msg_iovlen = 2;
    // SAFETY: `m` points at live iovecs.
    let r = unsafe { libc::sendmsg(a, &m, 0) };
    expect("sendmsg with two iovecs", res(r as i64), "ok(7)");
    let (mut r1, mut r2) = ([0u8; 2], [0u8; 10]);
    let riov = [
        libc::iovec {
            iov_base: r1.as_mut_ptr().cast(),
            iov_len: r1.len(),
        },
        libc::iovec {
            iov_base: r2.as_mut_ptr().cast(),
            iov_len: r2.len(),
        },
    ];
    let mut name = [0u8; 32];
    let mut ctl = [0u8; 64];
    // SAFETY: as above.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = riov.as_ptr() as *mut _;
    m.msg_iovlen = 2;
    m.msg_name = name.as_mut_ptr().cast();
    m.msg_namelen = name.len() as u32;
    m.msg_control = ctl.as_mut_ptr().cast();
    m.msg_controllen = ctl.len() as _;
    m.msg_flags = -1;
    // SAFETY: `m` points at live buffers of the given sizes.
    let r = unsafe { libc::recvmsg(b, &mut m, 0) };
    expect(
        "recvmsg into two iovecs",
        format!(
            "{} {:?} {:?} namelen {} controllen {} flags {}",
            res(r as i64),
            String::from_utf8_lossy(&r1),
            String::from_utf8_lossy(&r2[..5]),
            m.msg_namelen,
            m.msg_controllen,
            m.msg_flags
        ),
        "ok(7) \"ab\" \"cdefg\" namelen 0 controllen 0 flags 0",
    );
    // recvfrom with an address buffer: an unnamed sender has length 0.
    write(a, b"z");
    let mut sun = [0u8; 110];
    let mut alen: libc::socklen_t = sun.len() as u32;
    let mut one = [0u8; 1];
    // SAFETY: live buffers of the given sizes.
    let r = unsafe {
        libc::recvfrom(
            b,
            one.as_mut_ptr().cast(),
            1,
            0,
            sun.as_mut_ptr().cast(),
            &mut alen,
        )
    };
    expect(
        "recvfrom on a pair",
        format!("{} addrlen {alen}", res(r as i64)),
        "ok(1) addrlen 0",
    );
    close(a);
    close(b);
}

fn datagrams() {
    let (a, b) = socketpair(libc::SOCK_DGRAM);
    expect(
        "SO_TYPE of a datagram pair",
        getsockopt_int(a, libc::SO_TYPE),
        "2 (len 4)",
    );
    send(a, b"one", 0);
    send(a, b"three", 0);
    send(a, b"fourth", 0);
    expect("FIONREAD on datagrams: the next one", fionread(b), "3");
    let mut buf = [0u8; 16];
    let n = recv(b, &mut buf, 0);
    expect(
        "datagram 1",
        format!(
            "{} {:?}",
            res(n),
            String::from_utf8_lossy(&buf[..n.max(0) as usize])
        ),
        "ok(3) \"one\"",
    );
    let n = recv(b, &mut buf[..2], 0);
    expect("datagram 2 into 2 bytes (truncated)", res(n), "ok(2)");
    let n = recv(b, &mut buf[..2], libc::MSG_PEEK | libc::MSG_TRUNC);
    expect(
        "peek datagram 3 with MSG_TRUNC: its full length",
        res(n),
        "ok(6)",
    );
    let n = recv(b, &mut buf, 0);
    expect(
        "datagram 3",
        format!(
            "{} {:?}",
            res(n),
            String::from_utf8_lossy(&buf[..n.max(0) as usize])
        ),
        "ok(6) \"fourth\"",
    );
    expect(
        "empty datagram queue",
        res(recv(b, &mut buf, libc::MSG_DONTWAIT)),
        "EAGAIN",
    );
    close(a);
    close(b);

    let (a, b) = socketpair(libc::SOCK_SEQPACKET);
    send(a, b"ab", 0);
    send(a, b"cde", 0);
    let n1 = recv(b, &mut buf, 0);
    let n2 = recv(b, &mut buf, 0);
    expect(
        "seqpacket keeps boundaries",
        format!("{} {}", res(n1), res(n2)),
        "ok(2) ok(3)",
    );
    close(a);
    expect("seqpacket EOF after close", res(recv(b, &mut buf, 0)), "ok");
    close(b);
}

fn socket_errnos() {
    // SAFETY: plain socket calls on integers.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        expect(
            "socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC)",
            format!("{} cloexec {}", res(fd.min(0) as i64), cloexec(fd)),
            "ok cloexec true",
        );
        close(fd);
        expect(
            "socket(AF_UNIX, type 9)",
            res(libc::socket(libc::AF_UNIX, 9, 0) as i64),
            "ESOCKTNOSUPPORT",
        );
        expect(
            "socket(AF_UNIX, SOCK_STREAM, protocol 7)",
            res(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 7) as i64),
            "EPROTONOSUPPORT",
        );
        expect(
            "socket(family 1000)",
            res(libc::socket(1000, libc::SOCK_STREAM, 0) as i64),
            "EAFNOSUPPORT",
        );
        expect(
            "socket with an unknown type flag",
            res(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | 0x100, 0) as i64),
            "EINVAL",
        );
        let mut fds = [-1; 2];
        expect(
            "socketpair(AF_INET)",
            res(libc::socketpair(libc::AF_INET, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) as i64),
            "EOPNOTSUPP",
        );
        let r = libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        );
        expect(
            "socketpair with SOCK_NONBLOCK|SOCK_CLOEXEC",
            format!(
                "{} nonblock {} cloexec {}",
                res(r as i64),
                nonblocking(fds[1]),
                cloexec(fds[1])
            ),
            "ok nonblock true cloexec true",
        );
        let mut buf = [0u8; 4];
        expect(
            "read on a non-blocking empty socket",
            res(read(fds[0], &mut buf)),
            "EAGAIN",
        );
        expect(
            "listen on a pair end",
            res(libc::listen(fds[0], 1) as i64),
            "EINVAL",
        );
        expect(
            "accept on a pair end",
            res(libc::accept(fds[0], std::ptr::null_mut(), std::ptr::null_mut()) as i64),
            "EINVAL",
        );
        expect(
            "shutdown how=7",
            res(libc::shutdown(fds[0], 7) as i64),
            "EINVAL",
        );
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let r = libc::setsockopt(
            fds[1],
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        expect("setsockopt SO_RCVTIMEO 50 ms", res(r as i64), "ok");
        set_nonblocking(fds[1], false);
        expect("recv times out", res(recv(fds[1], &mut buf, 0)), "EAGAIN");
        close(fds[0]);
        close(fds[1]);
        let (r, w) = pipe();
        expect("recv on a pipe", res(recv(r, &mut buf, 0)), "ENOTSOCK");
        expect(
            "getsockopt on a pipe",
            getsockopt_int(r, libc::SO_TYPE),
            "ENOTSOCK",
        );
        expect("recv on a closed fd", res(recv(999, &mut buf, 0)), "EBADF");
        write(w, b"abc");
        expect("FIONREAD on a pipe", fionread(r), "3");
        close(r);
        close(w);
        // AF_INET: whatever it does, print nothing (another program covers it).
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            close(fd);
        }
    }
}

fn poll_and_select() {
    let (r, w) = pipe();
    expect(
        "poll empty pipe, timeout 0",
        poll1(r, libc::POLLIN, 0),
        "0 none",
    );
    expect(
        "poll empty pipe, timeout 50 ms",
        poll1(r, libc::POLLIN, 50),
        "0 none",
    );
    expect("poll pipe write end", poll1(w, libc::POLLOUT, 0), "1 OUT");
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        write(w, b"x");
        w
    });
    expect(
        "poll while a thread writes",
        poll1(r, libc::POLLIN, -1),
        "1 IN",
    );
    let w = writer.join().unwrap();
    // Two pipes at once: only the second becomes ready.
    let (r2, w2) = pipe();
    let mut one = [0u8; 1];
    read(r, &mut one);
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        write(w2, b"y");
        w2
    });
    let mut fds = [
        libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: r2,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: 555,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Without the bad fd first, to block until the writer's byte.
    // SAFETY: two valid pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    expect(
        "poll two pipes, the second written by a thread",
        format!(
            "{n} {} {}",
            events(fds[0].revents as i64),
            events(fds[1].revents as i64)
        ),
        "1 none IN",
    );
    let w2 = writer.join().unwrap();
    // SAFETY: four pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 4, 0) };
    expect(
        "poll with a closed fd and a negative fd",
        format!(
            "{n} {} {}",
            events(fds[2].revents as i64),
            events(fds[3].revents as i64)
        ),
        "2 NVAL none",
    );
    close(w2);
    expect(
        "poll pipe after the writer closed (data left)",
        poll1(r2, libc::POLLIN, 0),
        "1 IN|HUP",
    );
    read(r2, &mut one);
    expect(
        "poll pipe after the writer closed (empty)",
        poll1(r2, libc::POLLIN, 0),
        "1 HUP",
    );
    close(r2);

    // select: a read set and a write set.
    // SAFETY: fd_set manipulation on live sets with fds below FD_SETSIZE.
    unsafe {
        let mut rs: libc::fd_set = std::mem::zeroed();
        let mut ws: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(r, &mut rs);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let n = libc::select(
            r.max(w) + 1,
            &mut rs,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
        expect(
            "select empty pipe, timeout 0",
            format!("{n} {}", libc::FD_ISSET(r, &rs)),
            "0 false",
        );
        libc::FD_SET(r, &mut rs);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        let n = libc::select(
            r.max(w) + 1,
            &mut rs,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut tv,
        );
        expect("select empty pipe, timeout 50 ms", n.to_string(), "0");
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            write(w, b"z");
            w
        });
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(r, &mut rs);
        let n = libc::select(
            r + 1,
            &mut rs,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        expect(
            "select while a thread writes",
            format!("{n} {}", libc::FD_ISSET(r, &rs)),
            "1 true",
        );
        let w = writer.join().unwrap();
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(r, &mut rs);
        libc::FD_SET(w, &mut ws);
        let n = libc::select(
            r.max(w) + 1,
            &mut rs,
            &mut ws,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        expect(
            "select read and write sets",
            format!("{n} {} {}", libc::FD_ISSET(r, &rs), libc::FD_ISSET(w, &ws)),
            "2 true true",
        );
        // pselect6 with a signal mask argument.
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut mask);
        libc::FD_ZERO(&mut rs);
        libc::FD_SET(r, &mut rs);
        let n = libc::pselect(
            r + 1,
            &mut rs,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &ts,
            &mask,
        );
        expect("pselect with a mask", n.to_string(), "1");
        let mut p = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        let n = libc::ppoll(&mut p, 1, &ts, &mask);
        expect(
            "ppoll with a mask",
            format!("{n} {}", events(p.revents as i64)),
            "1 IN",
        );
    }

    // A signal interrupts poll.
    let (r3, w3) = pipe();
    set_handler(libc::SIGUSR1, on_sigusr1 as *const () as usize, 0).unwrap();
    let (done, killer) = interrupt_until_done(gettid(), w3);
    let got = poll1(r3, libc::POLLIN, -1);
    done.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    expect("poll interrupted by a signal", got, "EINTR");
    // At least once: a signal may land before poll blocks (then another
    // one interrupts it).
    expect(
        "handler ran",
        (SIGUSR1S.load(Ordering::SeqCst) >= 1).to_string(),
        "true",
    );
    close(r3);
    close(w3);
    close(r);
    close(w);
}

/// epoll_wait into a small array; "n events(data)..."
fn ewait(ep: i32, max: usize, timeout: i32) -> String {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` holds at least `max` (<= 8) events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), max as i32, timeout) };
    if n < 0 {
        return ename(errno());
    }
    let mut s = n.to_string();
    for e in &evs[..n as usize] {
        let (ev, data) = (e.events, e.u64);
        s.push_str(&format!(" {}({data:#x})", events(ev as i64)));
    }
    s
}

fn ctl(ep: i32, op: i32, fd: i32, events: u32, data: u64) -> String {
    let mut e = libc::epoll_event { events, u64: data };
    // SAFETY: `e` is a live epoll_event.
    res(unsafe { libc::epoll_ctl(ep, op, fd, &mut e) } as i64)
}

fn epoll_checks() {
    // SAFETY: plain epoll calls.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    expect(
        "epoll_create1(EPOLL_CLOEXEC)",
        format!("{} cloexec {}", res(ep.min(0) as i64), cloexec(ep)),
        "ok cloexec true",
    );
    // SAFETY: as above.
    expect(
        "epoll_create(0)",
        res(unsafe { libc::epoll_create(0) } as i64),
        "EINVAL",
    );
    expect(
        "epoll_create1(bad flag)",
        // SAFETY: as above.
        res(unsafe { libc::epoll_create1(1) } as i64),
        "EINVAL",
    );
    let (r, w) = pipe();
    let add = libc::EPOLL_CTL_ADD;
    let file = std::ffi::CString::new("/tmp/sockets-epoll-file").unwrap();
    // SAFETY: a NUL-terminated path.
    let reg = unsafe { libc::open(file.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o600) };
    expect(
        "epoll_ctl ADD a regular file",
        ctl(ep, add, reg, libc::EPOLLIN as u32, 0),
        "EPERM",
    );
    close(reg);
    // SAFETY: a NUL-terminated path.
    unsafe { libc::unlink(file.as_ptr()) };
    expect(
        "epoll_ctl ADD itself",
        ctl(ep, add, ep, libc::EPOLLIN as u32, 0),
        "EINVAL",
    );
    expect(
        "epoll_ctl on a non-epoll fd",
        ctl(r, add, w, libc::EPOLLIN as u32, 0),
        "EINVAL",
    );
    expect(
        "epoll_ctl ADD a closed fd",
        ctl(ep, add, 777, libc::EPOLLIN as u32, 0),
        "EBADF",
    );
    expect(
        "epoll_ctl with a closed epfd",
        ctl(777, add, r, libc::EPOLLIN as u32, 0),
        "EBADF",
    );
    expect(
        "epoll_ctl MOD not added",
        ctl(ep, libc::EPOLL_CTL_MOD, r, libc::EPOLLIN as u32, 0),
        "ENOENT",
    );
    expect(
        "epoll_ctl DEL not added",
        ctl(ep, libc::EPOLL_CTL_DEL, r, 0, 0),
        "ENOENT",
    );
    expect(
        "epoll_ctl bad op",
        ctl(ep, 9, r, libc::EPOLLIN as u32, 0),
        "EINVAL",
    );
    let data = 0x1122_3344_5566_7788u64;
    expect(
        "epoll_ctl ADD pipe (level)",
        ctl(ep, add, r, libc::EPOLLIN as u32, data),
        "ok",
    );
    expect(
        "epoll_ctl ADD again",
        ctl(ep, add, r, libc::EPOLLIN as u32, 0),
        "EEXIST",
    );
    expect("epoll_wait maxevents 0", ewait(ep, 0, 0), "EINVAL");
    expect(
        "epoll_wait on a pipe",
        {
            let mut e = [libc::epoll_event { events: 0, u64: 0 }; 1];
            // SAFETY: one event of room.
            res(unsafe { libc::epoll_wait(r, e.as_mut_ptr(), 1, 0) } as i64)
        },
        "EINVAL",
    );
    expect("epoll_wait empty, timeout 0", ewait(ep, 8, 0), "0");
    expect("epoll_wait empty, timeout 50 ms", ewait(ep, 8, 50), "0");
    write(w, b"ab");
    expect(
        "level-triggered: ready",
        ewait(ep, 8, 0),
        "1 IN(0x1122334455667788)",
    );
    expect(
        "level-triggered: still ready",
        ewait(ep, 8, 0),
        "1 IN(0x1122334455667788)",
    );
    expect("poll on the epoll fd", poll1(ep, libc::POLLIN, 0), "1 IN");
    let mut two = [0u8; 2];
    read(r, &mut two);
    expect("level-triggered: drained", ewait(ep, 8, 0), "0");
    expect(
        "poll on the idle epoll fd",
        poll1(ep, libc::POLLIN, 0),
        "0 none",
    );

    // Edge-triggered.
    let et = (libc::EPOLLIN | libc::EPOLLET) as u32;
    expect(
        "epoll_ctl MOD to edge-triggered",
        ctl(ep, libc::EPOLL_CTL_MOD, r, et, 2),
        "ok",
    );
    write(w, b"a");
    expect("edge-triggered: first", ewait(ep, 8, 0), "1 IN(0x2)");
    expect("edge-triggered: no new edge", ewait(ep, 8, 0), "0");
    write(w, b"b");
    expect(
        "edge-triggered: new data is an edge",
        ewait(ep, 8, 0),
        "1 IN(0x2)",
    );
    read(r, &mut two);

    // One-shot.
    let os = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
    expect(
        "epoll_ctl MOD to one-shot",
        ctl(ep, libc::EPOLL_CTL_MOD, r, os, 3),
        "ok",
    );
    write(w, b"c");
    expect("one-shot: fires", ewait(ep, 8, 0), "1 IN(0x3)");
    write(w, b"d");
    expect("one-shot: disarmed", ewait(ep, 8, 0), "0");
    expect(
        "one-shot: re-armed by MOD",
        ctl(ep, libc::EPOLL_CTL_MOD, r, os, 4),
        "ok",
    );
    expect("one-shot: fires again", ewait(ep, 8, 0), "1 IN(0x4)");
    read(r, &mut two);
    expect("epoll_ctl DEL", ctl(ep, libc::EPOLL_CTL_DEL, r, 0, 0), "ok");

    // A thread writes while epoll_wait blocks.
    expect(
        "ADD pipe again",
        ctl(ep, add, r, libc::EPOLLIN as u32, 5),
        "ok",
    );
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        write(w, b"e");
        w
    });
    expect(
        "epoll_wait while a thread writes",
        ewait(ep, 8, -1),
        "1 IN(0x5)",
    );
    let w = writer.join().unwrap();
    let mut one = [0u8; 1];
    read(r, &mut one);

    // A signal interrupts epoll_wait.
    let (done, killer) = interrupt_until_done(gettid(), w);
    let got = ewait(ep, 8, -1);
    done.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    expect("epoll_wait interrupted by a signal", got, "EINTR");

    // Sockets in epoll.
    let (a, b) = socketpair(libc::SOCK_STREAM);
    let want = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
    expect("ADD socket", ctl(ep, add, a, want, 6), "ok");
    expect("socket writable at once", ewait(ep, 8, 0), "1 OUT(0x6)");
    write(b, b"hi");
    expect(
        "socket readable after the peer wrote",
        ewait(ep, 8, 0),
        "1 IN|OUT(0x6)",
    );
    close(b);
    let mut buf = [0u8; 4];
    read(a, &mut buf);
    expect(
        "socket after the peer closed",
        ewait(ep, 8, 0),
        "1 IN|OUT|HUP|RDHUP(0x6)",
    );
    // Closing the only reference removes the entry.
    close(a);
    expect("closing a watched fd removes it", ewait(ep, 8, 0), "0");

    // Two pipes, and a nested epoll.
    let (r2, w2) = pipe();
    expect(
        "ADD second pipe",
        ctl(ep, add, r2, libc::EPOLLIN as u32, 7),
        "ok",
    );
    // Written in fd order, so Linux's arrival order is the fd order too.
    write(w, b"x");
    write(w2, b"x");
    expect("two ready pipes", ewait(ep, 8, 0), "2 IN(0x5) IN(0x7)");
    expect("maxevents 1", ewait(ep, 1, 0), "1 IN(0x5)");
    // SAFETY: plain epoll call.
    let outer = unsafe { libc::epoll_create1(0) };
    expect(
        "ADD an epoll fd to another",
        ctl(outer, add, ep, libc::EPOLLIN as u32, 8),
        "ok",
    );
    expect(
        "outer epoll sees the inner one ready",
        ewait(outer, 8, 0),
        "1 IN(0x8)",
    );
    read(r, &mut one);
    read(r2, &mut one);
    expect("outer epoll idle", ewait(outer, 8, 0), "0");
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        write(w2, b"q");
        w2
    });
    expect(
        "outer epoll woken through the inner",
        ewait(outer, 8, -1),
        "1 IN(0x8)",
    );
    let w2 = writer.join().unwrap();
    close(outer);
    close(r2);
    close(w2);
    close(w);
    expect("pipe whose writer closed", ewait(ep, 8, 0), "1 HUP(0x5)");
    close(r);
    close(ep);
}

/// An abstract-namespace address (`sun_path[0] == 0`) and its length.
fn abstract_addr(name: &[u8]) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, &b) in name.iter().enumerate() {
        a.sun_path[i + 1] = b as libc::c_char;
    }
    (a, (2 + 1 + name.len()) as libc::socklen_t)
}

fn named_sockets() {
    let (addr, alen) = abstract_addr(b"sockets-test");
    let sa = (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>();
    // SAFETY: plain socket calls with live address buffers.
    unsafe {
        let l = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "listen before bind",
            res(libc::listen(l, 5) as i64),
            "EINVAL",
        );
        expect(
            "bind an abstract name",
            res(libc::bind(l, sa, alen) as i64),
            "ok",
        );
        let other = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "bind the same name again",
            res(libc::bind(other, sa, alen) as i64),
            "EADDRINUSE",
        );
        expect(
            "bind a bound socket again",
            res(libc::bind(l, sa, alen) as i64),
            "EINVAL",
        );
        close(other);
        let c0 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect before listen",
            res(libc::connect(c0, sa, alen) as i64),
            "ECONNREFUSED",
        );
        close(c0);
        expect("listen", res(libc::listen(l, 5) as i64), "ok");
        let mut got: libc::sockaddr_un = std::mem::zeroed();
        let mut glen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        libc::getsockname(l, (&mut got as *mut libc::sockaddr_un).cast(), &mut glen);
        let name: Vec<u8> = got.sun_path[1..(glen as usize - 2)]
            .iter()
            .map(|&c| c as u8)
            .collect();
        expect(
            "getsockname of the listener",
            format!("len {glen} {:?}", String::from_utf8_lossy(&name)),
            "len 15 \"sockets-test\"",
        );
        expect(
            "SO_ACCEPTCONN of the listener",
            getsockopt_int(l, libc::SO_ACCEPTCONN),
            "1 (len 4)",
        );
        set_nonblocking(l, true);
        expect(
            "accept with nothing pending (non-blocking)",
            res(libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) as i64),
            "EAGAIN",
        );
        expect("poll idle listener", poll1(l, libc::POLLIN, 0), "0 none");
        let (missing, mlen) = abstract_addr(b"no-such-name");
        let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect to a missing name",
            res(libc::connect(c, (&missing as *const libc::sockaddr_un).cast(), mlen) as i64),
            "ECONNREFUSED",
        );
        expect("connect", res(libc::connect(c, sa, alen) as i64), "ok");
        expect(
            "connect again",
            res(libc::connect(c, sa, alen) as i64),
            "EISCONN",
        );
        expect(
            "poll listener with a pending connection",
            poll1(l, libc::POLLIN, 0),
            "1 IN",
        );
        let mut peer: libc::sockaddr_un = std::mem::zeroed();
        let mut plen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let s = libc::accept4(
            l,
            (&mut peer as *mut libc::sockaddr_un).cast(),
            &mut plen,
            libc::SOCK_CLOEXEC,
        );
        expect(
            "accept4: unnamed client",
            format!(
                "{} addrlen {plen} cloexec {}",
                res(s.min(0) as i64),
                cloexec(s)
            ),
            "ok addrlen 2 cloexec true",
        );
        let mut glen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        libc::getpeername(c, (&mut got as *mut libc::sockaddr_un).cast(), &mut glen);
        expect("getpeername of the client", format!("len {glen}"), "len 15");
        expect("client to server", res(write(c, b"ping")), "ok(4)");
        let mut buf = [0u8; 8];
        expect("server reads", res(read(s, &mut buf)), "ok(4)");
        expect("server to client", res(write(s, b"pong!")), "ok(5)");
        expect("client reads", res(read(c, &mut buf)), "ok(5)");
        close(s);
        expect("client sees EOF", res(read(c, &mut buf)), "ok");
        close(c);
        // A thread blocks in accept until main connects.
        set_nonblocking(l, false);
        let acceptor = thread::spawn(move || {
            let s = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
            let mut buf = [0u8; 8];
            let n = read(s, &mut buf);
            close(s);
            n
        });
        thread::sleep(Duration::from_millis(30));
        let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        libc::connect(c, sa, alen);
        write(c, b"hey");
        expect(
            "blocking accept in a thread",
            res(acceptor.join().unwrap()),
            "ok(3)",
        );
        close(c);
        close(l);
        let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect after the listener closed",
            res(libc::connect(c, sa, alen) as i64),
            "ECONNREFUSED",
        );
        close(c);
        // The name is free again.
        let l2 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "bind the name again after close",
            res(libc::bind(l2, sa, alen) as i64),
            "ok",
        );
        close(l2);
    }
}

/// A path address and its length (`sun_path` NUL-terminated, as libc does).
fn path_addr(path: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in path.bytes().enumerate() {
        a.sun_path[i] = b as libc::c_char;
    }
    (a, (2 + path.len() + 1) as libc::socklen_t)
}

/// Path-named sockets: bind creates an `S_IFSOCK` file, connect finds the
/// listener through it, unlink makes the name unreachable.
fn path_sockets() {
    let dir = "/tmp/sockets-path-test";
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = format!("{dir}/srv.sock");
    let (addr, alen) = path_addr(&path);
    let sa = (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>();
    // SAFETY: plain socket calls with live address buffers.
    unsafe {
        let l = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect("bind a path", res(libc::bind(l, sa, alen) as i64), "ok");
        let meta = std::fs::symlink_metadata(&path);
        expect(
            "the path is a socket file",
            format!(
                "{:?}",
                meta.map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            ),
            "Ok(true)",
        );
        let other = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "bind the same path again",
            res(libc::bind(other, sa, alen) as i64),
            "EADDRINUSE",
        );
        close(other);
        let c0 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect to the path before listen",
            res(libc::connect(c0, sa, alen) as i64),
            "ECONNREFUSED",
        );
        close(c0);
        expect("listen on the path", res(libc::listen(l, 5) as i64), "ok");
        let mut got: libc::sockaddr_un = std::mem::zeroed();
        let mut glen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        libc::getsockname(l, (&mut got as *mut libc::sockaddr_un).cast(), &mut glen);
        let name: Vec<u8> = got.sun_path[..(glen as usize - 3)]
            .iter()
            .map(|&c| c as u8)
            .collect();
        expect(
            "getsockname of the path listener",
            format!("len {glen} {:?}", String::from_utf8_lossy(&name)),
            &format!("len {alen} {path:?}"),
        );
        let c = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect to the path",
            res(libc::connect(c, sa, alen) as i64),
            "ok",
        );
        let a = libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut());
        expect("accept on the path", (a >= 0).to_string(), "true");
        expect("send over the path", res(send(c, b"ping", 0)), "ok(4)");
        let mut buf = [0u8; 8];
        expect("recv over the path", res(recv(a, &mut buf, 0)), "ok(4)");
        let mut plen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        libc::getpeername(c, (&mut got as *mut libc::sockaddr_un).cast(), &mut plen);
        expect(
            "getpeername is the path",
            (plen == alen).to_string(),
            "true",
        );
        expect(
            "open() of a socket file",
            res(libc::open(addr.sun_path.as_ptr(), libc::O_RDONLY) as i64),
            "ENXIO",
        );
        let (missing, mlen) = path_addr(&format!("{dir}/missing.sock"));
        let c2 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect to a missing path",
            res(libc::connect(c2, (&missing as *const libc::sockaddr_un).cast(), mlen) as i64),
            "ENOENT",
        );
        let plain = format!("{dir}/plain");
        std::fs::write(&plain, b"x").unwrap();
        let (paddr, palen) = path_addr(&plain);
        expect(
            "connect to a regular file",
            res(libc::connect(c2, (&paddr as *const libc::sockaddr_un).cast(), palen) as i64),
            "ECONNREFUSED",
        );
        close(c2);
        close(a);
        close(c);
        std::fs::remove_file(&path).unwrap();
        let c3 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect after unlink",
            res(libc::connect(c3, sa, alen) as i64),
            "ENOENT",
        );
        close(c3);
        close(l);
        let l2 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "bind the path again after unlink",
            res(libc::bind(l2, sa, alen) as i64),
            "ok",
        );
        close(l2);
        let c4 = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        expect(
            "connect to a closed socket's file",
            res(libc::connect(c4, sa, alen) as i64),
            "ECONNREFUSED",
        );
        close(c4);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    set_handler(libc::SIGPIPE, libc::SIG_IGN, 0).unwrap();
    stream_basics();
    echo_with_threads();
    epipe_and_sigpipe();
    msg_calls();
    datagrams();
    socket_errnos();
    poll_and_select();
    epoll_checks();
    named_sockets();
    path_sockets();
    if FAILED.load(Ordering::SeqCst) {
        say("sockets: FAIL");
        std::process::exit(1);
    }
    say("sockets: pass");
}
