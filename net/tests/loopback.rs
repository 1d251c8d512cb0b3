//! Loopback TCP/UDP through the per-CPU stack (and the global ablation),
//! with real threads standing in for CPUs.
mod common;

use common::*;
use net::consts::*;
use net::{errno, LockMode, SockType};
use std::sync::Arc;
use std::thread;

const MODES: [LockMode; 2] = [LockMode::PerCpu, LockMode::Global];

fn echo_pairs(mode: LockMode, cpus: usize) {
    let st = stack(cpus, mode);
    let l = Arc::new(listener(&st, 7000, 64));
    let mut handles = Vec::new();
    for c in 0..cpus {
        let (st2, l2) = (st.clone(), l.clone());
        handles.push(thread::spawn(move || {
            set_cpu(c);
            let (s, _) = accept(&st2, &l2);
            let mut buf = [0u8; 64];
            while recv_exact(&st2, &s, &mut buf) {
                send_all(&st2, &s, &buf);
            }
            s.close();
        }));
        let st2 = st.clone();
        handles.push(thread::spawn(move || {
            set_cpu(c);
            let s = connect(&st2, lo(7000)).unwrap();
            for i in 0..300u32 {
                let msg = [(i as u8) ^ (c as u8); 64];
                send_all(&st2, &s, &msg);
                let mut back = [0u8; 64];
                assert!(recv_exact(&st2, &s, &mut back));
                assert_eq!(back, msg);
            }
            s.close();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    if mode == LockMode::PerCpu {
        // Every flow was steered to its own CPU's instance.
        assert_eq!(st.stats().cross_instance_packets, 0);
    }
    l.close();
    settle(&st, |s| s.stats().smoltcp_sockets == 0);
    let stats = st.stats();
    assert_eq!((stats.open_sockets, stats.bound_ports), (0, 0), "{stats:?}");
}

#[test]
fn echo_one_pair_per_cpu() {
    for mode in MODES {
        echo_pairs(mode, 4);
        echo_pairs(mode, 8);
    }
}

fn many_connections(mode: LockMode) {
    const N: usize = 200;
    let st = stack(4, mode);
    let l = Arc::new(listener(&st, 7001, 256));
    let server = {
        let (st, l) = (st.clone(), l.clone());
        thread::spawn(move || {
            set_cpu(0);
            let mut conns = Vec::new();
            for _ in 0..N {
                let (s, peer) = accept(&st, &l);
                assert_eq!(*peer.ip(), net::Ipv4Addr::LOCALHOST);
                conns.push(s);
            }
            for s in &conns {
                let mut b = [0u8; 4];
                assert!(recv_exact(&st, s, &mut b));
                send_all(&st, s, &b);
            }
            conns
        })
    };
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let st = st.clone();
            thread::spawn(move || {
                set_cpu(c);
                let conns: Vec<_> = (0..N / 4)
                    .map(|_| connect(&st, lo(7001)).unwrap())
                    .collect();
                for (i, s) in conns.iter().enumerate() {
                    send_all(&st, s, &(i as u32).to_le_bytes());
                }
                for (i, s) in conns.iter().enumerate() {
                    let mut b = [0u8; 4];
                    assert!(recv_exact(&st, s, &mut b));
                    assert_eq!(u32::from_le_bytes(b), i as u32);
                }
                conns
            })
        })
        .collect();
    let mut all: Vec<_> = clients
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.extend(server.join().unwrap());
    assert_eq!(st.stats().open_sockets, 2 * N + 1);
    drop(all); // dropping the last reference closes
    l.close();
    settle(&st, |s| s.stats().smoltcp_sockets == 0);
    assert_eq!(st.stats().open_sockets, 0);
    assert_eq!(st.stats().bound_ports, 0);
}

#[test]
fn two_hundred_concurrent_connections_and_teardown_frees_everything() {
    for mode in MODES {
        many_connections(mode);
    }
}

#[test]
fn accept_steals_from_other_cpus() {
    let st = stack(4, LockMode::PerCpu);
    set_cpu(0);
    let l = listener(&st, 7002, 8);
    let c = {
        let st = st.clone();
        thread::spawn(move || {
            set_cpu(3);
            connect(&st, lo(7002)).unwrap()
        })
        .join()
        .unwrap()
    };
    // Connection lives in CPU 3's instance; CPU 0's queue is empty.
    assert_ne!(l.poll_events() & EPOLLIN, 0);
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    assert_eq!(c.peer_addr().unwrap(), lo(7002));
    assert_eq!(l.accept().err(), Some(errno::EAGAIN));
}

fn udp_echo(mode: LockMode) {
    let st = stack(4, mode);
    set_cpu(1);
    let srv = st.socket(SockType::Dgram).unwrap();
    srv.bind(lo(9000)).unwrap();
    let t = {
        let (st, srv) = (st.clone(), srv.clone());
        thread::spawn(move || {
            set_cpu(1);
            for _ in 0..50 {
                let mut b = [0u8; 100];
                let (n, from) = loop {
                    match srv.recv(&mut b, false) {
                        Ok(r) => break r,
                        Err(errno::EAGAIN) => {
                            wait(&st, &srv, EPOLLIN);
                        }
                        Err(e) => panic!("{e}"),
                    }
                };
                srv.send(&b[..n], from).unwrap();
            }
        })
    };
    set_cpu(2);
    let cli = st.socket(SockType::Dgram).unwrap();
    for i in 0..50u8 {
        cli.send(&[i; 33], Some(lo(9000))).unwrap();
        wait(&st, &cli, EPOLLIN);
        let mut b = [0u8; 100];
        let (n, from) = cli.recv(&mut b, false).unwrap();
        assert_eq!((n, from), (33, Some(lo(9000))));
        assert_eq!(b[..n], [i; 33]);
    }
    t.join().unwrap();
    // Connected UDP: default peer, send without address.
    cli.connect(lo(9000)).unwrap();
    assert_eq!(cli.peer_addr().unwrap(), lo(9000));
    assert_eq!(cli.recv(&mut [0u8; 4], false).err(), Some(errno::EAGAIN));
    let lonely = st.socket(SockType::Dgram).unwrap();
    assert_eq!(lonely.send(b"x", None).err(), Some(errno::EDESTADDRREQ));
    cli.close();
    srv.close();
    lonely.close();
    assert_eq!(st.stats().smoltcp_sockets, 0);
    assert_eq!(st.stats().bound_ports, 0);
}

#[test]
fn udp_echo_across_cpus() {
    for mode in MODES {
        udp_echo(mode);
    }
}

#[test]
fn connection_refused_and_addr_in_use() {
    for mode in MODES {
        let st = stack(2, mode);
        assert_eq!(connect(&st, lo(7999)).err(), Some(errno::ECONNREFUSED));
        let r = st.socket(SockType::Stream).unwrap();
        assert_eq!(r.connect(lo(7999)), Err(errno::EINPROGRESS));
        wait(&st, &r, EPOLLERR);
        assert_eq!(so_error(&r), errno::ECONNREFUSED.0);
        assert_eq!(so_error(&r), 0);
        let a = st.socket(SockType::Stream).unwrap();
        a.bind(lo(7003)).unwrap();
        let b = st.socket(SockType::Stream).unwrap();
        assert_eq!(b.bind(lo(7003)), Err(errno::EADDRINUSE));
        a.listen(4).unwrap();
        let c = st.socket(SockType::Stream).unwrap();
        c.setsockopt(SOL_SOCKET, SO_REUSEADDR, &1i32.to_ne_bytes())
            .unwrap();
        assert_eq!(c.bind(lo(7003)), Err(errno::EADDRINUSE));
        // A bound, connected socket: EISCONN on a second connect.
        let d = connect(&st, lo(7003)).unwrap();
        assert_eq!(d.connect(lo(7003)), Err(errno::EISCONN));
        assert_eq!(a.connect(lo(7003)), Err(errno::EINVAL));
        let e = st.socket(SockType::Stream).unwrap();
        assert_eq!(e.recv(&mut [0u8; 1], false).err(), Some(errno::ENOTCONN));
        assert_eq!(e.send(b"x", None).err(), Some(errno::EPIPE));
        assert_eq!(e.shutdown(SHUT_WR).err(), Some(errno::ENOTCONN));
        let mut opt = [0u8; 4];
        assert_eq!(
            e.getsockopt(SOL_SOCKET, 9999, &mut opt).err(),
            Some(errno::ENOPROTOOPT)
        );
        e.getsockopt(SOL_SOCKET, SO_TYPE, &mut opt).unwrap();
        assert_eq!(i32::from_ne_bytes(opt), SOCK_STREAM);
    }
}

#[test]
fn reset_gives_econnreset_then_eof() {
    for mode in MODES {
        let st = stack(2, mode);
        let l = listener(&st, 7004, 4);
        let c = connect(&st, lo(7004)).unwrap();
        let (s, _) = accept(&st, &l);
        let linger0 = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
        s.setsockopt(SOL_SOCKET, SO_LINGER, &linger0).unwrap();
        s.close();
        let ev = wait(&st, &c, EPOLLERR | EPOLLHUP);
        assert_ne!(ev & EPOLLHUP, 0);
        assert_eq!(c.recv(&mut [0u8; 8], false).err(), Some(errno::ECONNRESET));
        assert_eq!(c.recv(&mut [0u8; 8], false), Ok((0, None)));
        assert_eq!(c.send(b"x", None).err(), Some(errno::EPIPE));
    }
}

#[test]
fn shutdown_write_gives_peer_eof_and_epipe_locally() {
    for mode in MODES {
        let st = stack(2, mode);
        let l = listener(&st, 7005, 4);
        let c = connect(&st, lo(7005)).unwrap();
        let (s, _) = accept(&st, &l);
        send_all(&st, &c, b"bye");
        c.shutdown(SHUT_WR).unwrap();
        assert_eq!(c.send(b"x", None).err(), Some(errno::EPIPE));
        let mut b = [0u8; 3];
        assert!(recv_exact(&st, &s, &mut b));
        assert_eq!(&b, b"bye");
        wait(&st, &s, EPOLLRDHUP);
        assert_eq!(s.recv(&mut b, false), Ok((0, None)));
        // The other direction still works.
        send_all(&st, &s, b"ok!");
        assert!(recv_exact(&st, &c, &mut b));
        assert_eq!(&b, b"ok!");
        // peek leaves data in place
        send_all(&st, &s, b"pk");
        wait(&st, &c, EPOLLIN);
        let mut p = [0u8; 2];
        assert_eq!(c.recv(&mut p, true), Ok((2, None)));
        assert_eq!(c.recv(&mut p, false), Ok((2, None)));
        s.close();
        c.close();
        l.close();
        settle(&st, |s| s.stats().smoltcp_sockets == 0);
    }
}

#[test]
fn peer_that_never_reads_is_bounded_and_others_keep_working() {
    for mode in MODES {
        let st = stack(2, mode);
        // Time moves only when the test says, so a timer (a delayed ACK)
        // cannot open the window between the last EAGAIN and the check.
        freeze(&st);
        let buf = st.config().tcp_buffer_bytes;
        let l = listener(&st, 7006, 8);
        let hog = connect(&st, lo(7006)).unwrap();
        let (_idle, _) = accept(&st, &l);
        let chunk = vec![7u8; 4096];
        let mut sent = 0;
        // Send until EAGAIN, let the timers run, and again, until a round
        // moves nothing.
        loop {
            let before = sent;
            loop {
                match hog.send(&chunk, None) {
                    Ok(n) => sent += n,
                    Err(errno::EAGAIN) => break,
                    Err(e) => panic!("{e}"),
                }
                assert!(sent <= 4 * buf, "unbounded: {sent}");
            }
            if sent == before {
                break;
            }
            advance(&st, 1000);
            for c in 0..2 {
                st.poll(c);
            }
        }
        // At most the peer's receive buffer plus our send buffer.
        assert!(sent <= 2 * buf, "sent {sent}");
        assert_eq!(hog.poll_events() & EPOLLOUT, 0);
        let c = connect(&st, lo(7006)).unwrap();
        let (s, _) = accept(&st, &l);
        send_all(&st, &c, b"still alive");
        let mut b = [0u8; 11];
        assert!(recv_exact(&st, &s, &mut b));
        assert_eq!(&b, b"still alive");
    }
}

#[test]
fn syn_flood_on_full_listener_is_bounded() {
    for mode in MODES {
        let st = stack(2, mode);
        // No SYN retransmission (1 s) while the test counts: time moves
        // only when the test says.
        freeze(&st);
        set_cpu(0);
        let l = listener(&st, 7007, 4);
        let base = st.stats().smoltcp_sockets;
        let mut clients = Vec::new();
        for _ in 0..100 {
            let s = st.socket(SockType::Stream).unwrap();
            assert_eq!(s.connect(lo(7007)).err(), Some(errno::EINPROGRESS));
            clients.push(s);
        }
        for c in 0..2 {
            st.poll(c);
        }
        let stats = st.stats();
        // Clients + at most (backlog + 1) per instance held by the listener.
        let instances = if mode == LockMode::PerCpu { 2 } else { 1 };
        assert!(
            stats.smoltcp_sockets <= 100 + base + 5 * instances,
            "{stats:?}"
        );
        // The first ones were accepted into the queue; the rest wait (SYN dropped).
        let mut accepted = 0;
        while l.accept().is_ok() {
            accepted += 1;
        }
        assert!(
            accepted >= 1 && accepted <= 5 * instances,
            "accepted {accepted}"
        );
    }
}

#[test]
fn nonblocking_connect_reports_once_then_eisconn() {
    let st = stack(2, LockMode::PerCpu);
    let _l = listener(&st, 7008, 4);
    let s = st.socket(SockType::Stream).unwrap();
    assert_eq!(s.connect(lo(7008)), Err(errno::EINPROGRESS));
    wait(&st, &s, EPOLLOUT);
    assert_eq!(so_error(&s), 0);
    assert_eq!(s.connect(lo(7008)), Ok(()));
    assert_eq!(s.connect(lo(7008)), Err(errno::EISCONN));
    let name = s.local_addr().unwrap();
    assert_eq!(*name.ip(), net::Ipv4Addr::LOCALHOST);
    assert!(name.port() >= 32768);
    let mut b = [0u8; 4];
    s.setsockopt(IPPROTO_TCP, TCP_NODELAY, &1i32.to_ne_bytes())
        .unwrap();
    s.getsockopt(IPPROTO_TCP, TCP_NODELAY, &mut b).unwrap();
    assert_eq!(i32::from_ne_bytes(b), 1);
}

#[test]
fn closed_socket_with_unread_data_at_a_silent_peer_is_freed() {
    for mode in MODES {
        let st = stack(2, mode);
        let l = listener(&st, 7009, 4);
        let c = connect(&st, lo(7009)).unwrap();
        let (peer, _) = accept(&st, &l);
        let chunk = vec![1u8; 8192];
        while c.send(&chunk, None).is_ok() {}
        let before = st.stats().smoltcp_sockets;
        c.close(); // orphan: FIN queued behind data the peer never reads
        assert_eq!(st.stats().smoltcp_sockets, before);
        advance(&st, 31_000);
        for cpu in 0..2 {
            st.poll(cpu);
        }
        assert_eq!(st.stats().smoltcp_sockets, before - 1, "orphan freed");
        drop(peer);
        l.close();
        settle(&st, |s| s.stats().smoltcp_sockets == 0);
    }
}

#[test]
fn close_while_another_thread_waits_in_recv() {
    for mode in MODES {
        let st = stack(2, mode);
        let l = listener(&st, 7010, 4);
        let c = connect(&st, lo(7010)).unwrap();
        let (_s, _) = accept(&st, &l);
        let waiter = {
            let (st, c) = (st.clone(), c.clone());
            thread::spawn(move || {
                set_cpu(1);
                loop {
                    match c.recv(&mut [0u8; 8], false) {
                        Err(errno::EAGAIN) => {
                            wait(&st, &c, EPOLLIN | EPOLLHUP | EPOLLERR);
                        }
                        other => return other,
                    }
                }
            })
        };
        thread::sleep(std::time::Duration::from_millis(20));
        c.close();
        assert_eq!(waiter.join().unwrap(), Err(errno::EBADF));
        assert_eq!(c.send(b"x", None), Err(errno::EBADF));
        assert_eq!(c.poll_events() & EPOLLHUP, EPOLLHUP);
    }
}

/// A listener whose accept queue is full drops new SYNs, and only SYNs:
/// the segments of its accepted connections (same local port) still pass
/// (a filter that took every segment to the port for a SYN would stall
/// them once the queue filled).
#[test]
fn full_listener_still_passes_its_connections_segments() {
    for mode in MODES {
        let st = stack(1, mode);
        set_cpu(0);
        let l = listener(&st, 7011, 1);
        let a = connect(&st, lo(7011)).unwrap();
        let (sa, _) = accept(&st, &l);
        // Two more fill the accept queue and take the last listening socket.
        let _b = connect(&st, lo(7011)).unwrap();
        let _c = connect(&st, lo(7011)).unwrap();
        // A new SYN is dropped, not refused: the client keeps trying, as
        // against a full Linux listener (no RST, no error yet).
        let d = st.socket(SockType::Stream).unwrap();
        assert_eq!(d.connect(lo(7011)).err(), Some(errno::EINPROGRESS));
        st.poll(0);
        assert_eq!(d.poll_events() & (EPOLLERR | EPOLLHUP), 0);
        assert_eq!(so_error(&d), 0);
        let mut buf = [0u8; 4];
        send_all(&st, &a, b"ping");
        assert!(recv_exact(&st, &sa, &mut buf));
        assert_eq!(&buf, b"ping");
        send_all(&st, &sa, b"pong");
        assert!(recv_exact(&st, &a, &mut buf));
        assert_eq!(&buf, b"pong");
    }
}

fn get_int(s: &Sock, level: i32, name: i32) -> i32 {
    let mut b = [0u8; 4];
    assert_eq!(s.getsockopt(level, name, &mut b), Ok(4));
    i32::from_ne_bytes(b)
}

fn set_int(s: &Sock, level: i32, name: i32, v: i32) -> Result<(), net::Errno> {
    s.setsockopt(level, name, &v.to_ne_bytes())
}

/// Every option reads back what was set (buffers as Linux: twice the
/// request, negative as 0; unset, the real size), on both kinds; short
/// values and buffers are EINVAL; TCP options on UDP are ENOPROTOOPT.
#[test]
fn socket_options_read_back_what_was_set() {
    let st = stack(2, LockMode::PerCpu);
    let cfg = *st.config();
    for kind in [SockType::Stream, SockType::Dgram] {
        let s = st.socket(kind).unwrap();
        let ty = if kind == SockType::Stream {
            SOCK_STREAM
        } else {
            SOCK_DGRAM
        };
        assert_eq!(get_int(&s, SOL_SOCKET, SO_TYPE), ty);
        for name in [SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE] {
            assert_eq!(get_int(&s, SOL_SOCKET, name), 0, "{name}");
            set_int(&s, SOL_SOCKET, name, 5).unwrap();
            assert_eq!(get_int(&s, SOL_SOCKET, name), 1, "{name}");
            set_int(&s, SOL_SOCKET, name, 0).unwrap();
            assert_eq!(get_int(&s, SOL_SOCKET, name), 0, "{name}");
        }
        let real = if kind == SockType::Stream {
            cfg.tcp_buffer_bytes
        } else {
            cfg.udp_buffer_bytes
        } as i32;
        for name in [SO_RCVBUF, SO_SNDBUF] {
            assert_eq!(get_int(&s, SOL_SOCKET, name), real, "{name}");
        }
        set_int(&s, SOL_SOCKET, SO_RCVBUF, 1000).unwrap();
        assert_eq!(get_int(&s, SOL_SOCKET, SO_RCVBUF), 2000);
        assert_eq!(
            get_int(&s, SOL_SOCKET, SO_SNDBUF),
            real,
            "SO_SNDBUF untouched"
        );
        set_int(&s, SOL_SOCKET, SO_SNDBUF, -5).unwrap();
        assert_eq!(get_int(&s, SOL_SOCKET, SO_SNDBUF), 0);
        set_int(&s, SOL_SOCKET, SO_SNDBUF, 3000).unwrap();
        assert_eq!(get_int(&s, SOL_SOCKET, SO_SNDBUF), 6000);
        assert_eq!(get_int(&s, SOL_SOCKET, SO_RCVBUF), 2000);
        // SO_LINGER: two ints, off by default; a negative time is 0.
        let mut l = [0u8; 8];
        assert_eq!(s.getsockopt(SOL_SOCKET, SO_LINGER, &mut l), Ok(8));
        assert_eq!(l, [0; 8]);
        let linger = |on: i32, secs: i32| [on.to_ne_bytes(), secs.to_ne_bytes()].concat();
        s.setsockopt(SOL_SOCKET, SO_LINGER, &linger(1, 7)).unwrap();
        s.getsockopt(SOL_SOCKET, SO_LINGER, &mut l).unwrap();
        assert_eq!(l[..], linger(1, 7)[..]);
        s.setsockopt(SOL_SOCKET, SO_LINGER, &linger(2, -3)).unwrap();
        s.getsockopt(SOL_SOCKET, SO_LINGER, &mut l).unwrap();
        assert_eq!(l[..], linger(1, 0)[..]);
        s.setsockopt(SOL_SOCKET, SO_LINGER, &linger(0, 9)).unwrap();
        s.getsockopt(SOL_SOCKET, SO_LINGER, &mut l).unwrap();
        assert_eq!(l, [0; 8]);
        assert_eq!(
            s.setsockopt(SOL_SOCKET, SO_LINGER, &linger(1, 1)[..7]),
            Err(errno::EINVAL)
        );
        assert_eq!(
            s.getsockopt(SOL_SOCKET, SO_LINGER, &mut [0u8; 7]),
            Err(errno::EINVAL)
        );
        // Int options: 4 bytes in and out (more is fine, less is not).
        assert_eq!(
            s.setsockopt(SOL_SOCKET, SO_REUSEADDR, &[1, 0, 0]),
            Err(errno::EINVAL)
        );
        s.setsockopt(SOL_SOCKET, SO_REUSEADDR, &[1, 0, 0, 0, 9])
            .unwrap();
        assert_eq!(get_int(&s, SOL_SOCKET, SO_REUSEADDR), 1);
        assert_eq!(
            s.getsockopt(SOL_SOCKET, SO_TYPE, &mut [0u8; 3]),
            Err(errno::EINVAL)
        );
        assert_eq!(s.getsockopt(SOL_SOCKET, SO_TYPE, &mut [0u8; 6]), Ok(4));
        assert_eq!(set_int(&s, SOL_SOCKET, 9999, 1), Err(errno::ENOPROTOOPT));
        if kind == SockType::Stream {
            assert_eq!(get_int(&s, IPPROTO_TCP, TCP_NODELAY), 0);
            set_int(&s, IPPROTO_TCP, TCP_NODELAY, 1).unwrap();
            assert_eq!(get_int(&s, IPPROTO_TCP, TCP_NODELAY), 1);
            set_int(&s, IPPROTO_TCP, TCP_NODELAY, 0).unwrap();
            assert_eq!(get_int(&s, IPPROTO_TCP, TCP_NODELAY), 0);
        } else {
            assert_eq!(
                set_int(&s, IPPROTO_TCP, TCP_NODELAY, 1),
                Err(errno::ENOPROTOOPT)
            );
            assert_eq!(
                s.getsockopt(IPPROTO_TCP, TCP_NODELAY, &mut [0u8; 4]),
                Err(errno::ENOPROTOOPT)
            );
        }
        s.close();
    }
}

/// Readiness of sockets that carry no connection: a fresh stream socket
/// is writable and hung up (Linux), a fresh datagram socket writable, a
/// closed one only hung up; `shutdown` checks `how` and adds the read
/// and hang-up bits it implies.
#[test]
fn poll_events_of_fresh_shut_and_closed_sockets() {
    let st = stack(2, LockMode::PerCpu);
    let t = st.socket(SockType::Stream).unwrap();
    assert_eq!(t.poll_events(), EPOLLOUT | EPOLLWRNORM | EPOLLHUP);
    let u = st.socket(SockType::Dgram).unwrap();
    assert_eq!(u.poll_events(), EPOLLOUT | EPOLLWRNORM);
    for how in [-1, SHUT_RDWR + 1] {
        assert_eq!(u.shutdown(how), Err(errno::EINVAL));
    }
    // An unconnected UDP socket cannot be shut down; a connected one can.
    assert_eq!(u.shutdown(SHUT_RD), Err(errno::ENOTCONN));
    u.connect(lo(9)).unwrap();
    let base = u.poll_events();
    assert_eq!(base & (EPOLLIN | EPOLLRDHUP | EPOLLHUP), 0);
    u.shutdown(SHUT_WR).unwrap();
    assert_eq!(u.poll_events(), base, "SHUT_WR adds no event");
    u.shutdown(SHUT_RD).unwrap();
    assert_eq!(
        u.poll_events(),
        base | EPOLLIN | EPOLLRDNORM | EPOLLRDHUP | EPOLLHUP
    );
    let v = st.socket(SockType::Dgram).unwrap();
    v.connect(lo(9)).unwrap();
    v.shutdown(SHUT_RD).unwrap();
    assert_eq!(v.poll_events() & EPOLLHUP, 0, "read side only: no HUP");
    assert_eq!(v.poll_events() & EPOLLRDHUP, EPOLLRDHUP);
    for s in [&t, &u, &v] {
        s.close();
        assert_eq!(s.poll_events(), EPOLLHUP);
        s.close();
    }
}

/// Receive one datagram on `s` (waiting for it).
fn recv_dgram(st: &S, s: &Sock) -> Vec<u8> {
    let mut b = [0u8; 64];
    loop {
        match s.recv(&mut b, false) {
            Ok((n, _)) => return b[..n].to_vec(),
            Err(errno::EAGAIN) => {
                wait(st, s, EPOLLIN);
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// A UDP port's home instance (where loopback datagrams to it are steered)
/// is forgotten when its socket closes, but only by the socket that set it:
/// datagrams to a closed port stay in the sender's instance, and a second
/// socket on the same port keeps receiving after the first one closes.
#[test]
fn closed_udp_port_forgets_its_home_instance() {
    let st = stack(3, LockMode::PerCpu);
    let cross = |st: &S| st.stats().cross_instance_packets;
    set_cpu(0);
    let cli = st.socket(SockType::Dgram).unwrap();
    cli.bind(lo(9100)).unwrap();

    // Home on CPU 1: a datagram from CPU 0 crosses instances once.
    set_cpu(1);
    let a = st.socket(SockType::Dgram).unwrap();
    a.bind(lo(9101)).unwrap();
    set_cpu(0);
    let before = cross(&st);
    cli.send(b"to a", Some(lo(9101))).unwrap();
    set_cpu(1);
    assert_eq!(recv_dgram(&st, &a), b"to a");
    assert_eq!(cross(&st), before + 1);
    a.close();

    // Closed: the datagram stays in CPU 0's instance (no one gets it).
    set_cpu(0);
    let before = cross(&st);
    cli.send(b"to nobody", Some(lo(9101))).unwrap();
    for c in 0..3 {
        st.poll(c);
    }
    assert_eq!(cross(&st), before, "steered to a closed port's old home");

    // Two sockets on one port (SO_REUSEADDR): the last bind is the home;
    // closing the other one must not forget it.
    let reuse = |s: &Sock| {
        s.setsockopt(SOL_SOCKET, SO_REUSEADDR, &1i32.to_ne_bytes())
            .unwrap()
    };
    set_cpu(1);
    let first = st.socket(SockType::Dgram).unwrap();
    reuse(&first);
    first.bind(lo(9102)).unwrap();
    set_cpu(2);
    let second = st.socket(SockType::Dgram).unwrap();
    reuse(&second);
    second.bind(lo(9102)).unwrap();
    first.close();
    set_cpu(0);
    cli.send(b"to second", Some(lo(9102))).unwrap();
    set_cpu(2);
    assert_eq!(recv_dgram(&st, &second), b"to second");
    second.close();
    cli.close();
    assert_eq!(st.stats().smoltcp_sockets, 0);
    assert_eq!(st.stats().bound_ports, 0);
}

/// `next_poll_ms`: nothing pending once datagrams are delivered (UDP has
/// no timers); a TCP orphan closing at a silent peer keeps a deadline in
/// the future, not "now" (which would make the timer spin), until it is
/// freed.
#[test]
fn next_poll_ms_is_none_when_idle_and_not_a_spin() {
    let st = stack(2, LockMode::PerCpu);
    freeze(&st);
    set_cpu(0);
    let a = st.socket(SockType::Dgram).unwrap();
    a.bind(lo(9200)).unwrap();
    set_cpu(1);
    let b = st.socket(SockType::Dgram).unwrap();
    b.send(b"hi", Some(lo(9200))).unwrap();
    set_cpu(0);
    assert_eq!(recv_dgram(&st, &a), b"hi");
    for c in 0..2 {
        assert_eq!(st.next_poll_ms(c), None, "cpu {c}");
    }
    a.close();
    b.close();
    // A connection whose peer stops reading: closing it leaves an orphan
    // with unsent data, which needs a timer (zero-window probes, the
    // orphan limit) but not an immediate one.
    let l = listener(&st, 7200, 4);
    let c = connect(&st, lo(7200)).unwrap();
    let (_s, _) = accept(&st, &l);
    let chunk = vec![1u8; 4096];
    while c.send(&chunk, None).is_ok() {}
    c.close();
    let now = net::Platform::now_ms(st.platform());
    let due: Vec<u64> = (0..2).filter_map(|c| st.next_poll_ms(c)).collect();
    assert!(!due.is_empty());
    assert!(due.iter().all(|&d| d > now), "due {due:?}, now {now}");
    _s.close();
    l.close();
    advance(&st, 31_000);
    settle(&st, |s| s.stats().smoltcp_sockets == 0);
    for c in 0..2 {
        st.poll(c);
        assert_eq!(st.next_poll_ms(c), None, "cpu {c} after the orphan");
    }
}

/// A datagram for another CPU's instance is delivered by the sender's own
/// call: when `send` returns, the receiver is readable and was woken,
/// with no timer poll in between.
#[test]
fn cross_instance_datagram_is_delivered_and_woken_by_the_sender() {
    let st = stack(2, LockMode::PerCpu);
    freeze(&st);
    set_cpu(1);
    let srv = st.socket(SockType::Dgram).unwrap();
    srv.bind(lo(9300)).unwrap();
    set_cpu(0);
    let cli = st.socket(SockType::Dgram).unwrap();
    for i in 0..3u8 {
        let woken = srv.waiters().generation();
        let crossed = st.stats().cross_instance_packets;
        cli.send(&[i; 8], Some(lo(9300))).unwrap();
        assert_eq!(st.stats().cross_instance_packets, crossed + 1);
        assert_ne!(srv.poll_events() & EPOLLIN, 0, "datagram {i} not there");
        assert!(srv.waiters().generation() > woken, "receiver not woken");
        let mut b = [0u8; 16];
        assert_eq!(srv.recv(&mut b, false).map(|r| r.0), Ok(8));
        assert_eq!(b[..8], [i; 8]);
    }
    srv.close();
    cli.close();
}

/// `listen(fd, n)` holds n + 1 established connections, as Linux does; the
/// clients past that are not refused (their SYN is dropped, they retry)
/// and get in once the queue drains.
#[test]
fn backlog_holds_n_plus_one_and_the_rest_wait() {
    for backlog in [1usize, 2, 5] {
        let st = stack(1, LockMode::Global);
        freeze(&st);
        set_cpu(0);
        let l = listener(&st, 7300, backlog as i32);
        let clients: Vec<Sock> = (0..backlog + 4)
            .map(|_| {
                let c = st.socket(SockType::Stream).unwrap();
                assert_eq!(c.connect(lo(7300)), Err(errno::EINPROGRESS));
                c
            })
            .collect();
        st.poll(0);
        let connected = clients
            .iter()
            .filter(|c| c.poll_events() & EPOLLOUT != 0)
            .count();
        assert_eq!(connected, backlog + 1, "backlog {backlog}");
        for c in &clients {
            assert_eq!(so_error(c), 0, "a client was refused");
            assert_eq!(c.poll_events() & (EPOLLERR | EPOLLHUP), 0);
        }
        let mut accepted = Vec::new();
        while let Ok((s, _)) = l.accept() {
            accepted.push(s);
        }
        assert_eq!(accepted.len(), backlog + 1);
        // The others retry their SYN (1 s) and get in.
        for _ in 0..10 {
            advance(&st, 3000);
            st.poll(0);
            while let Ok((s, _)) = l.accept() {
                accepted.push(s);
            }
            if accepted.len() == clients.len() {
                break;
            }
        }
        assert_eq!(accepted.len(), clients.len(), "backlog {backlog}");
    }
}
