//! `net_diff`: AF_INET (TCP/UDP over loopback) and AF_UNIX socket cases,
//! one deterministic line per check, so that Linux and this
//! kernel can be diffed.  Raw `libc` calls throughout, so every errno is
//! visible.  Prints no port numbers, addresses that vary, or timings; a
//! wrong answer ends in `<-- WRONG`.  Ends with `net_diff: pass` and exit 0
//! when every check held.
//!
//! On Linux as PID 1 the loopback interface must be up (`linux-init` does
//! that).

use std::mem::{size_of, zeroed};
use userland::{errno, say};

struct Checker {
    ok: bool,
}

impl Checker {
    fn expect(&mut self, what: &str, got: impl ToString, want: &str) {
        let got = got.to_string();
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        self.ok &= good;
    }
}

/// Errno names (the ABI's one table).
fn name(e: i32) -> String {
    userland::errno_name(e)
}

/// `ok`, `ok(N)` or the errno name of a raw return value.
fn r(ret: isize) -> String {
    if ret < 0 {
        name(errno())
    } else if ret == 0 {
        "ok".into()
    } else {
        format!("ok({ret})")
    }
}

fn addr(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_in = unsafe { zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    a
}

const SLEN: libc::socklen_t = size_of::<libc::sockaddr_in>() as libc::socklen_t;

fn sock(kind: i32) -> i32 {
    // SAFETY: plain system call with integer arguments.
    unsafe { libc::socket(libc::AF_INET, kind, 0) }
}

fn bind(fd: i32, port: u16) -> isize {
    let a = addr(port);
    // SAFETY: `a` is a valid sockaddr_in of length SLEN.
    unsafe { libc::bind(fd, &a as *const _ as *const libc::sockaddr, SLEN) as isize }
}

fn connect(fd: i32, port: u16) -> isize {
    let a = addr(port);
    // SAFETY: `a` is a valid sockaddr_in of length SLEN.
    unsafe { libc::connect(fd, &a as *const _ as *const libc::sockaddr, SLEN) as isize }
}

/// getsockname / getpeername as (ip text, port).
fn name_of(fd: i32, peer: bool) -> Result<(String, u16), String> {
    // SAFETY: zeroed sockaddr_in is valid; the length says how big it is.
    let mut a: libc::sockaddr_in = unsafe { zeroed() };
    let mut len = SLEN;
    let p = &mut a as *mut _ as *mut libc::sockaddr;
    // SAFETY: `p`/`len` describe a writable sockaddr_in.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        }
    };
    if ret < 0 {
        return Err(name(errno()));
    }
    let b = a.sin_addr.s_addr.to_ne_bytes();
    Ok((
        format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]),
        u16::from_be(a.sin_port),
    ))
}

fn set_int(fd: i32, level: i32, opt: i32, v: i32) -> isize {
    // SAFETY: points at a live i32 of the given size.
    unsafe { libc::setsockopt(fd, level, opt, &v as *const i32 as *const libc::c_void, 4) as isize }
}

fn get_int(fd: i32, level: i32, opt: i32) -> Result<i32, String> {
    let mut v = 0i32;
    let mut len: libc::socklen_t = 4;
    // SAFETY: points at a live i32 and its length.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            &mut v as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if ret < 0 {
        Err(name(errno()))
    } else {
        Ok(v)
    }
}

fn send(fd: i32, data: &[u8]) -> isize {
    // SAFETY: the buffer is valid for its length.
    unsafe {
        libc::send(
            fd,
            data.as_ptr() as *const libc::c_void,
            data.len(),
            libc::MSG_NOSIGNAL,
        )
    }
}

fn recv(fd: i32, buf: &mut [u8], flags: i32) -> isize {
    // SAFETY: the buffer is valid and writable for its length.
    unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags) }
}

fn recv_exact(fd: i32, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let n = recv(fd, &mut buf[got..], 0);
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    true
}

fn set_nonblock(fd: i32, on: bool) {
    // SAFETY: fcntl on an owned fd with integer flags.
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

fn poll1(fd: i32, events: i16, ms: i32) -> (isize, i16) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    (n as isize, p.revents)
}

fn close(fd: i32) {
    // SAFETY: closes an fd this program owns.
    unsafe { libc::close(fd) };
}

fn accept(fd: i32) -> i32 {
    // SAFETY: null address pointers are allowed.
    unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) }
}

extern "C" fn on_alarm(_: i32) {}

/// A connected TCP pair on loopback: (client, server).
fn tcp_pair() -> (i32, i32) {
    let l = sock(libc::SOCK_STREAM);
    bind(l, 0);
    // SAFETY: listen on an owned fd.
    unsafe { libc::listen(l, 4) };
    let port = name_of(l, false).map_or(0, |(_, p)| p);
    let a = sock(libc::SOCK_STREAM);
    connect(a, port);
    let b = accept(l);
    close(l);
    (a, b)
}

/// Blocking behaviour: `SO_RCVTIMEO`, a signal during a blocking `recv`
/// (`EINTR`, handler without `SA_RESTART`), a receiver woken by another
/// thread's send, a large stream in both blocking directions, and a UDP
/// datagram larger than one IPC message (the servers structure stages it).
fn blocking_cases(c: &mut Checker) {
    let (a, b) = tcp_pair();
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    // SAFETY: the option value is a valid timeval.
    let ret = unsafe {
        libc::setsockopt(
            b,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    c.expect("tcp setsockopt SO_RCVTIMEO 50 ms", r(ret as isize), "ok");
    let mut buf = [0u8; 16];
    c.expect("tcp recv times out", r(recv(b, &mut buf, 0)), "EAGAIN");
    let zero = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: as above.
    unsafe {
        libc::setsockopt(
            b,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&zero as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    // SIGALRM every 20 ms until the blocked recv is interrupted.
    // SAFETY: a handler that does nothing; sigaction and setitimer with
    // valid structures.
    let r_intr = unsafe {
        let mut sa: libc::sigaction = zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(i32) as usize;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
        let n = recv(b, &mut buf, 0);
        let e = errno();
        let off: libc::itimerval = zeroed();
        libc::setitimer(libc::ITIMER_REAL, &off, std::ptr::null_mut());
        if n < 0 {
            name(e)
        } else {
            format!("ok({n})")
        }
    };
    c.expect("tcp recv interrupted by a signal", r_intr, "EINTR");
    // A receiver blocked until another thread sends.
    let writer = std::thread::spawn(move || send(a, b"wake"));
    c.expect(
        "tcp blocking recv woken by a send",
        r(recv(b, &mut buf, 0)),
        "ok(4)",
    );
    let _ = writer.join();
    // 300 KB through the pair: the sender blocks on a full buffer.
    const BIG: usize = 300 * 1024;
    let writer = std::thread::spawn(move || {
        let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < BIG {
            let n = send(a, &data[sent..]);
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
        sent
    });
    let mut got = vec![0u8; BIG];
    let whole = recv_exact(b, &mut got);
    let sent = writer.join().unwrap_or(0);
    let same = got.iter().enumerate().all(|(i, &v)| v == (i % 251) as u8);
    c.expect(
        "tcp 300 KB both ways blocking",
        format!("{} {} {}", sent == BIG, whole, same),
        "true true true",
    );
    close(a);
    close(b);
    // A 12000-byte datagram.
    let u = sock(libc::SOCK_DGRAM);
    bind(u, 0);
    let port = name_of(u, false).map_or(0, |(_, p)| p);
    let v = sock(libc::SOCK_DGRAM);
    let to = addr(port);
    let data: Vec<u8> = (0..12000).map(|i| (i % 253) as u8).collect();
    // SAFETY: buffer and address are valid for their lengths.
    let n = unsafe {
        libc::sendto(
            v,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            SLEN,
        )
    };
    c.expect("udp sendto 12000 bytes", r(n), "ok(12000)");
    let mut back = vec![0u8; 30000];
    let n = recv(u, &mut back, 0);
    c.expect(
        "udp recv 12000 bytes whole",
        format!("{} {}", r(n), n == 12000 && back[..12000] == data[..]),
        "ok(12000) true",
    );
    close(u);
    close(v);
}

fn main() {
    let mut c = Checker { ok: true };

    // Listener on an ephemeral port.
    let l = sock(libc::SOCK_STREAM);
    c.expect("tcp socket", if l >= 0 { "ok" } else { "failed" }, "ok");
    c.expect(
        "setsockopt SO_REUSEADDR",
        r(set_int(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)),
        "ok",
    );
    c.expect(
        "getsockopt SO_REUSEADDR",
        get_int(l, libc::SOL_SOCKET, libc::SO_REUSEADDR)
            .map_or_else(|e| e, |v| (v != 0).to_string()),
        "true",
    );
    c.expect("bind 127.0.0.1:0", r(bind(l, 0)), "ok");
    // SAFETY: plain system call.
    c.expect("listen", r(unsafe { libc::listen(l, 16) } as isize), "ok");
    let (lip, port) = name_of(l, false).unwrap_or(("?".into(), 0));
    c.expect(
        "getsockname listener",
        format!("{lip} port>0={}", port > 0),
        "127.0.0.1 port>0=true",
    );
    c.expect(
        "getsockopt SO_TYPE",
        get_int(l, libc::SOL_SOCKET, libc::SO_TYPE).map_or_else(|e| e, |v| v.to_string()),
        "1",
    );
    c.expect(
        "getpeername on listener",
        name_of(l, true).err().unwrap_or_default(),
        "ENOTCONN",
    );

    // Non-blocking accept with nothing pending.
    set_nonblock(l, true);
    c.expect("accept empty non-blocking", r(accept(l) as isize), "EAGAIN");
    set_nonblock(l, false);

    // Blocking connect, accept, names.
    let cl = sock(libc::SOCK_STREAM);
    c.expect("connect", r(connect(cl, port)), "ok");
    let sv = accept(l);
    c.expect("accept", if sv >= 0 { "ok" } else { "failed" }, "ok");
    let cname = name_of(cl, false);
    c.expect(
        "getsockname client ip",
        cname.clone().map_or_else(|e| e, |n| n.0),
        "127.0.0.1",
    );
    c.expect(
        "getpeername server == client name",
        (name_of(sv, true) == cname).to_string(),
        "true",
    );
    c.expect(
        "getpeername client == listener",
        (name_of(cl, true) == Ok((lip.clone(), port))).to_string(),
        "true",
    );
    c.expect("connect again", r(connect(cl, port)), "EISCONN");

    // Options.
    c.expect(
        "setsockopt TCP_NODELAY",
        r(set_int(cl, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)),
        "ok",
    );
    c.expect(
        "getsockopt TCP_NODELAY",
        get_int(cl, libc::IPPROTO_TCP, libc::TCP_NODELAY)
            .map_or_else(|e| e, |v| (v != 0).to_string()),
        "true",
    );
    c.expect(
        "setsockopt SO_RCVBUF",
        r(set_int(cl, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536)),
        "ok",
    );
    c.expect(
        "getsockopt SO_RCVBUF",
        get_int(cl, libc::SOL_SOCKET, libc::SO_RCVBUF)
            .map(|_| "set ok")
            .unwrap_or("failed"),
        "set ok",
    );
    c.expect(
        "setsockopt SO_KEEPALIVE",
        r(set_int(cl, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)),
        "ok",
    );
    c.expect(
        "getsockopt SO_KEEPALIVE",
        get_int(cl, libc::SOL_SOCKET, libc::SO_KEEPALIVE)
            .map_or_else(|e| e, |v| (v != 0).to_string()),
        "true",
    );
    c.expect(
        "getsockopt SO_ERROR",
        get_int(cl, libc::SOL_SOCKET, libc::SO_ERROR).map_or_else(|e| e, |v| v.to_string()),
        "0",
    );
    c.expect(
        "getsockopt unknown",
        get_int(cl, libc::SOL_SOCKET, 9999).map_or_else(|e| e, |v| v.to_string()),
        "ENOPROTOOPT",
    );

    // Echo.
    let mut echo_ok = true;
    for i in 0..20u8 {
        let msg = [i; 64];
        echo_ok &= send(cl, &msg) == 64;
        let mut b = [0u8; 64];
        echo_ok &= recv_exact(sv, &mut b);
        echo_ok &= send(sv, &b) == 64;
        let mut back = [0u8; 64];
        echo_ok &= recv_exact(cl, &mut back) && back == msg;
    }
    c.expect("tcp echo 20 x 64 bytes", echo_ok, "true");

    // EAGAIN on an empty non-blocking recv; MSG_PEEK.
    set_nonblock(cl, true);
    c.expect(
        "recv empty non-blocking",
        r(recv(cl, &mut [0u8; 8], 0)),
        "EAGAIN",
    );
    send(sv, b"peek");
    let (n, rev) = poll1(cl, libc::POLLIN, 5000);
    c.expect(
        "poll POLLIN",
        format!("{n} {}", rev & libc::POLLIN != 0),
        "1 true",
    );
    let mut b4 = [0u8; 4];
    c.expect(
        "recv MSG_PEEK",
        r(recv(cl, &mut b4, libc::MSG_PEEK)),
        "ok(4)",
    );
    c.expect("recv after peek", r(recv(cl, &mut b4, 0)), "ok(4)");
    set_nonblock(cl, false);

    // epoll on a socket.
    // SAFETY: plain system calls on fds this program owns; `ev` is valid.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 7,
        };
        c.expect(
            "epoll_ctl ADD",
            r(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, sv, &mut ev) as isize),
            "ok",
        );
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        c.expect(
            "epoll_wait idle",
            r(libc::epoll_wait(ep, out.as_mut_ptr(), 4, 0) as isize),
            "ok",
        );
        send(cl, b"x");
        let n = libc::epoll_wait(ep, out.as_mut_ptr(), 4, 5000);
        let (evs, data) = (out[0].events, out[0].u64);
        c.expect(
            "epoll_wait ready",
            format!("{n} in={} data={data}", evs & libc::EPOLLIN as u32 != 0),
            "1 in=true data=7",
        );
        recv(sv, &mut [0u8; 1], 0);
        close(ep);
    }

    // shutdown(SHUT_WR): the peer reads EOF; we get EPIPE.
    // SAFETY: plain system call.
    c.expect(
        "shutdown SHUT_WR",
        r(unsafe { libc::shutdown(cl, libc::SHUT_WR) } as isize),
        "ok",
    );
    c.expect("peer reads EOF", r(recv(sv, &mut [0u8; 8], 0)), "ok");
    c.expect("send after SHUT_WR", r(send(cl, b"late")), "EPIPE");
    c.expect(
        "reverse direction still open",
        r(send(sv, b"back")),
        "ok(4)",
    );
    c.expect("read reverse", r(recv(cl, &mut [0u8; 8], 0)), "ok(4)");

    // RST: SO_LINGER 0 on close; the peer gets ECONNRESET then EOF.
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `lg` is a valid linger struct of the given size.
    let ret = unsafe {
        libc::setsockopt(
            sv,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lg as *const _ as *const libc::c_void,
            size_of::<libc::linger>() as u32,
        )
    };
    c.expect("setsockopt SO_LINGER", r(ret as isize), "ok");
    close(sv);
    let (_, rev) = poll1(cl, libc::POLLIN, 5000);
    c.expect(
        "poll after RST has POLLHUP",
        rev & libc::POLLHUP != 0,
        "true",
    );
    c.expect(
        "recv after RST",
        r(recv(cl, &mut [0u8; 8], 0)),
        "ECONNRESET",
    );
    c.expect("recv after RST again", r(recv(cl, &mut [0u8; 8], 0)), "ok");
    close(cl);

    // EADDRINUSE.
    let dup = sock(libc::SOCK_STREAM);
    set_int(dup, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    c.expect("bind listener's port", r(bind(dup, port)), "EADDRINUSE");
    close(dup);

    // ECONNREFUSED: a port that was bound, never listened on, and closed.
    let tmp = sock(libc::SOCK_STREAM);
    bind(tmp, 0);
    let free = name_of(tmp, false).map(|n| n.1).unwrap_or(1);
    close(tmp);
    let rf = sock(libc::SOCK_STREAM);
    c.expect(
        "connect to closed port",
        r(connect(rf, free)),
        "ECONNREFUSED",
    );
    close(rf);

    // Non-blocking connect: EINPROGRESS, poll for POLLOUT, SO_ERROR 0.
    let nb = sock(libc::SOCK_STREAM);
    set_nonblock(nb, true);
    c.expect("non-blocking connect", r(connect(nb, port)), "EINPROGRESS");
    let (n, rev) = poll1(nb, libc::POLLOUT, 5000);
    c.expect(
        "poll POLLOUT",
        format!("{n} {}", rev & libc::POLLOUT != 0),
        "1 true",
    );
    c.expect(
        "SO_ERROR after connect",
        get_int(nb, libc::SOL_SOCKET, libc::SO_ERROR).map_or_else(|e| e, |v| v.to_string()),
        "0",
    );
    let acc = accept(l);
    c.expect("accept non-blocking client", acc >= 0, "true");
    close(acc);
    close(nb);

    // Non-blocking connect to a closed port: SO_ERROR gives ECONNREFUSED.
    let nbr = sock(libc::SOCK_STREAM);
    set_nonblock(nbr, true);
    let first = r(connect(nbr, free));
    let (_, rev) = poll1(nbr, libc::POLLOUT, 5000);
    c.expect(
        "non-blocking connect refused",
        format!(
            "{} pollerr={}",
            if first == "EINPROGRESS" || first == "ECONNREFUSED" {
                "started"
            } else {
                &first
            },
            rev & libc::POLLERR != 0
        ),
        "started pollerr=true",
    );
    c.expect(
        "SO_ERROR refused",
        get_int(nbr, libc::SOL_SOCKET, libc::SO_ERROR).map_or_else(|e| e, name),
        if first == "ECONNREFUSED" {
            "E?0"
        } else {
            "ECONNREFUSED"
        },
    );
    close(nbr);
    close(l);

    // UDP.
    let us = sock(libc::SOCK_DGRAM);
    c.expect("udp bind", r(bind(us, 0)), "ok");
    let uport = name_of(us, false).map(|n| n.1).unwrap_or(0);
    let uc = sock(libc::SOCK_DGRAM);
    c.expect(
        "udp send without address",
        r(send(uc, b"x")),
        "EDESTADDRREQ",
    );
    let a = addr(uport);
    // SAFETY: valid buffer and address.
    let ret = unsafe {
        libc::sendto(
            uc,
            b"dgram".as_ptr() as *const libc::c_void,
            5,
            0,
            &a as *const _ as *const libc::sockaddr,
            SLEN,
        )
    };
    c.expect("udp sendto", r(ret), "ok(5)");
    // SAFETY: zeroed sockaddr_in is valid.
    let mut from: libc::sockaddr_in = unsafe { zeroed() };
    let mut flen = SLEN;
    let mut buf = [0u8; 16];
    // SAFETY: valid buffer and address out-pointers.
    let n = unsafe {
        libc::recvfrom(
            us,
            buf.as_mut_ptr() as *mut libc::c_void,
            16,
            0,
            &mut from as *mut _ as *mut libc::sockaddr,
            &mut flen,
        )
    };
    c.expect(
        "udp recvfrom",
        format!(
            "{} {:?}",
            r(n),
            std::str::from_utf8(&buf[..n.max(0) as usize]).unwrap_or("?")
        ),
        "ok(5) \"dgram\"",
    );
    c.expect(
        "udp sender matches getsockname",
        (name_of(uc, false).map(|n| n.1) == Ok(u16::from_be(from.sin_port))).to_string(),
        "true",
    );
    c.expect("udp connect", r(connect(uc, uport)), "ok");
    c.expect("udp send connected", r(send(uc, b"two")), "ok(3)");
    c.expect("udp recv", r(recv(us, &mut buf, 0)), "ok(3)");
    set_nonblock(us, true);
    c.expect(
        "udp recv empty non-blocking",
        r(recv(us, &mut buf, 0)),
        "EAGAIN",
    );
    close(us);
    close(uc);

    // AF_UNIX socketpair echo.
    let mut sv2 = [0i32; 2];
    // SAFETY: `sv2` has room for two fds.
    let ret = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv2.as_mut_ptr()) };
    c.expect("socketpair AF_UNIX", r(ret as isize), "ok");
    if ret == 0 {
        c.expect("unix send", r(send(sv2[0], b"unix!")), "ok(5)");
        let mut b = [0u8; 5];
        c.expect(
            "unix recv",
            format!("{} {}", recv_exact(sv2[1], &mut b), &b == b"unix!"),
            "true true",
        );
        c.expect("unix reply", r(send(sv2[1], b"ok")), "ok(2)");
        c.expect("unix read reply", r(recv(sv2[0], &mut b, 0)), "ok(2)");
        close(sv2[1]);
        c.expect("unix EOF after close", r(recv(sv2[0], &mut b, 0)), "ok");
        close(sv2[0]);
    }

    blocking_cases(&mut c);

    say(if c.ok {
        "net_diff: pass"
    } else {
        "net_diff: FAIL"
    });
    std::process::exit(if c.ok { 0 } else { 1 });
}
