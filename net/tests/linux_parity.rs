//! The cases of `userland/src/bin/net_diff.rs` (verified on Linux 6.1) run
//! against the library directly, the way the kernel glue will call it, so a
//! semantic difference from Linux shows up here before any kernel exists.
mod common;

use common::*;
use net::consts::*;
use net::{errno, Ipv4Addr, LockMode, SockType};

fn int(s: &Sock, level: i32, name: i32) -> Result<i32, net::Errno> {
    let mut b = [0u8; 4];
    s.getsockopt(level, name, &mut b)
        .map(|_| i32::from_ne_bytes(b))
}

fn set(s: &Sock, level: i32, name: i32, v: i32) -> Result<(), net::Errno> {
    s.setsockopt(level, name, &v.to_ne_bytes())
}

fn parity(mode: LockMode) {
    let st = stack(2, mode);
    set_cpu(1);
    let l = st.socket(SockType::Stream).unwrap();
    set(&l, SOL_SOCKET, SO_REUSEADDR, 1).unwrap();
    assert_eq!(int(&l, SOL_SOCKET, SO_REUSEADDR), Ok(1));
    l.bind(lo(0)).unwrap();
    l.listen(16).unwrap();
    let laddr = l.local_addr().unwrap();
    assert_eq!(*laddr.ip(), Ipv4Addr::LOCALHOST);
    assert!(laddr.port() > 0);
    assert_eq!(int(&l, SOL_SOCKET, SO_TYPE), Ok(SOCK_STREAM));
    assert_eq!(l.peer_addr(), Err(errno::ENOTCONN));
    assert_eq!(l.accept().err(), Some(errno::EAGAIN));

    let cl = connect(&st, laddr).unwrap();
    let (sv, _) = accept(&st, &l);
    assert_eq!(*cl.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
    assert_eq!(sv.peer_addr(), cl.local_addr());
    assert_eq!(cl.peer_addr(), Ok(laddr));
    assert_eq!(cl.connect(laddr), Err(errno::EISCONN));

    set(&cl, IPPROTO_TCP, TCP_NODELAY, 1).unwrap();
    assert_eq!(int(&cl, IPPROTO_TCP, TCP_NODELAY), Ok(1));
    set(&cl, SOL_SOCKET, SO_RCVBUF, 65536).unwrap();
    assert!(int(&cl, SOL_SOCKET, SO_RCVBUF).is_ok());
    set(&cl, SOL_SOCKET, SO_KEEPALIVE, 1).unwrap();
    assert_eq!(int(&cl, SOL_SOCKET, SO_KEEPALIVE), Ok(1));
    assert_eq!(int(&cl, SOL_SOCKET, SO_ERROR), Ok(0));
    assert_eq!(int(&cl, SOL_SOCKET, 9999), Err(errno::ENOPROTOOPT));

    for i in 0..20u8 {
        send_all(&st, &cl, &[i; 64]);
        let mut b = [0u8; 64];
        assert!(recv_exact(&st, &sv, &mut b));
        send_all(&st, &sv, &b);
        assert!(recv_exact(&st, &cl, &mut b));
        assert_eq!(b, [i; 64]);
    }

    assert_eq!(cl.recv(&mut [0u8; 8], false).err(), Some(errno::EAGAIN));
    send_all(&st, &sv, b"peek");
    assert_ne!(wait(&st, &cl, EPOLLIN) & EPOLLIN, 0);
    let mut b4 = [0u8; 4];
    assert_eq!(cl.recv(&mut b4, true), Ok((4, None)));
    assert_eq!(cl.recv(&mut b4, false), Ok((4, None)));

    cl.shutdown(SHUT_WR).unwrap();
    wait(&st, &sv, EPOLLIN);
    assert_eq!(sv.recv(&mut [0u8; 8], false), Ok((0, None)));
    assert_eq!(cl.send(b"late", None), Err(errno::EPIPE));
    assert_eq!(sv.send(b"back", None), Ok(4));
    assert_eq!(cl.recv(&mut [0u8; 8], false), Ok((4, None)));

    let linger0 = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
    sv.setsockopt(SOL_SOCKET, SO_LINGER, &linger0).unwrap();
    sv.close();
    assert_ne!(wait(&st, &cl, EPOLLIN) & EPOLLHUP, 0);
    assert_eq!(cl.recv(&mut [0u8; 8], false), Err(errno::ECONNRESET));
    assert_eq!(cl.recv(&mut [0u8; 8], false), Ok((0, None)));
    cl.close();

    let dup = st.socket(SockType::Stream).unwrap();
    set(&dup, SOL_SOCKET, SO_REUSEADDR, 1).unwrap();
    assert_eq!(dup.bind(laddr), Err(errno::EADDRINUSE));
    dup.close();

    let tmp = st.socket(SockType::Stream).unwrap();
    tmp.bind(lo(0)).unwrap();
    let free = tmp.local_addr().unwrap();
    tmp.close();
    assert_eq!(connect(&st, free).err(), Some(errno::ECONNREFUSED));

    let nb = st.socket(SockType::Stream).unwrap();
    assert_eq!(nb.connect(laddr), Err(errno::EINPROGRESS));
    assert_ne!(wait(&st, &nb, EPOLLOUT) & EPOLLOUT, 0);
    assert_eq!(int(&nb, SOL_SOCKET, SO_ERROR), Ok(0));
    assert!(accept(&st, &l).0.peer_addr().is_ok());

    let nbr = st.socket(SockType::Stream).unwrap();
    assert_eq!(nbr.connect(free), Err(errno::EINPROGRESS));
    assert_ne!(wait(&st, &nbr, EPOLLOUT | EPOLLERR) & EPOLLERR, 0);
    assert_eq!(int(&nbr, SOL_SOCKET, SO_ERROR), Ok(errno::ECONNREFUSED.0));
    l.close();

    let us = st.socket(SockType::Dgram).unwrap();
    us.bind(lo(0)).unwrap();
    let uaddr = us.local_addr().unwrap();
    let uc = st.socket(SockType::Dgram).unwrap();
    assert_eq!(uc.send(b"x", None), Err(errno::EDESTADDRREQ));
    assert_eq!(uc.send(b"dgram", Some(uaddr)), Ok(5));
    wait(&st, &us, EPOLLIN);
    let mut buf = [0u8; 16];
    let (n, from) = us.recv(&mut buf, false).unwrap();
    assert_eq!(&buf[..n], b"dgram");
    assert_eq!(
        from.map(|f| f.port()),
        Some(uc.local_addr().unwrap().port())
    );
    uc.connect(uaddr).unwrap();
    assert_eq!(uc.send(b"two", None), Ok(3));
    wait(&st, &us, EPOLLIN);
    assert_eq!(us.recv(&mut buf, false).map(|r| r.0), Ok(3));
    assert_eq!(us.recv(&mut buf, false).err(), Some(errno::EAGAIN));
}

#[test]
fn net_diff_cases_match_linux() {
    parity(LockMode::PerCpu);
    parity(LockMode::Global);
}

#[test]
fn next_poll_ms_tracks_pending_timers() {
    let st = stack(2, LockMode::PerCpu);
    assert_eq!(st.next_poll_ms(0), None);
    let l = listener(&st, 7100, 4);
    let c = connect(&st, lo(7100)).unwrap();
    let (s, _) = accept(&st, &l);
    send_all(&st, &c, b"x");
    // Something is pending (delayed ACK or keep-alive bookkeeping) somewhere.
    let any = (0..2).any(|cpu| st.next_poll_ms(cpu).is_some());
    assert!(any);
    drop((c, s, l));
    settle(&st, |s| s.stats().smoltcp_sockets == 0);
}
