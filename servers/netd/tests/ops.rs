//! Every operation through the protocol and the channel transport, with
//! its errors: TCP and UDP between remote sockets, large transfers split
//! into messages, readiness reports, handle checks, malformed messages.

mod common;

use std::sync::mpsc;

use abi::Errno;
use common::*;
use net::consts::*;
use netproto::*;
use proptest::prelude::*;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn tcp_connect_accept_echo() {
    let st = setup(1);
    let a = st.client(0);
    let b = st.client(0);
    let l = a.socket(Kind::Stream).unwrap();
    a.bind(l, lo(7000)).unwrap();
    a.listen(l, 8).unwrap();
    assert_eq!(a.sock_name(l).unwrap(), lo(7000));
    let s = b.socket(Kind::Stream).unwrap();
    assert_eq!(b.connect(s, lo(7000)), Err(Errno::EINPROGRESS));
    wait_ready(&b, s, OUT);
    assert_eq!(b.connect(s, lo(7000)), Ok(()));
    assert_eq!(b.connect(s, lo(7000)), Err(Errno::EISCONN));
    let (acc, peer, local) = accept(&a, l);
    assert_eq!(peer, b.sock_name(s).unwrap());
    assert_eq!(local, lo(7000));
    assert_eq!(a.peer_name(acc).unwrap(), peer);
    assert_eq!(b.peer_name(s).unwrap(), lo(7000));
    // Echo both ways.
    assert_eq!(b.send_stream(s, b"ping").unwrap(), 4);
    assert_eq!(recv(&a, acc, 100), b"ping");
    assert_eq!(a.send_stream(acc, b"pong!").unwrap(), 5);
    assert_eq!(recv(&b, s, 100), b"pong!");
    // Nothing more: EAGAIN, readiness without IN.
    assert_eq!(b.recv(s, 10, false), Err(Errno::EAGAIN));
    assert_eq!(b.poll(s, 0).unwrap() & EPOLLIN, 0);
    assert_ne!(b.poll(s, 0).unwrap() & EPOLLOUT, 0);
    // Half close: EOF on the other side, then close all.
    b.shutdown(s, SHUT_WR as u32).unwrap();
    assert_eq!(recv(&a, acc, 10), b"");
    assert_eq!(b.send_stream(s, b"x"), Err(Errno::EPIPE));
    for (c, h) in [(&a, l), (&a, acc), (&b, s)] {
        c.close(h).unwrap();
    }
    assert_eq!(st.server.live_handles(), 0);
    assert_eq!(st.server.stack().stats().open_sockets, 0);
    drop((a, b));
    st.stop();
}

#[test]
fn udp_sendto_recvfrom_with_addresses() {
    let st = setup(2);
    let a = st.client(0);
    let b = st.client(1);
    let ua = a.socket(Kind::Dgram).unwrap();
    let ub = b.socket_proto(Kind::Dgram, 17).unwrap();
    a.bind(ua, lo(5300)).unwrap();
    b.bind(ub, lo(5301)).unwrap();
    assert_eq!(b.send_dgram(ub, b"hello", Some(lo(5300))).unwrap(), 5);
    let r = loop {
        match a.recv(ua, 100, true) {
            Err(Errno::EAGAIN) => {
                wait_ready(&a, ua, IN);
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!((r.data.as_slice(), r.from), (&b"hello"[..], Some(lo(5301))));
    // The peek left it; recv takes it; then nothing.
    let r = a.recv(ua, 100, false).unwrap();
    assert_eq!((r.data.as_slice(), r.from), (&b"hello"[..], Some(lo(5301))));
    assert_eq!(a.recv(ua, 100, false), Err(Errno::EAGAIN));
    // Truncation to the buffer, as recvfrom.
    b.send_dgram(ub, b"0123456789", Some(lo(5300))).unwrap();
    assert_eq!(recv(&a, ua, 4), b"0123");
    // Connected UDP: send without destination; no destination at all.
    let uc = b.socket(Kind::Dgram).unwrap();
    assert_eq!(b.send_dgram(uc, b"x", None), Err(Errno::EDESTADDRREQ));
    b.connect(uc, lo(5300)).unwrap();
    assert_eq!(b.peer_name(uc).unwrap(), lo(5300));
    b.send_dgram(uc, b"via connect", None).unwrap();
    let from = lo(b.sock_name(uc).unwrap().port());
    let r = loop {
        match a.recv(ua, 100, false) {
            Err(Errno::EAGAIN) => {
                wait_ready(&a, ua, IN);
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!(r.from, Some(from));
    assert_eq!(r.data, b"via connect");
    // A datagram larger than a message is staged and arrives whole.
    let big = pattern(12_000, 3);
    assert_eq!(b.send_dgram(ub, &big, Some(lo(5300))).unwrap(), 12_000);
    let r = loop {
        match a.recv(ua, MAX_RECV, false) {
            Err(Errno::EAGAIN) => {
                wait_ready(&a, ua, IN);
            }
            r => break r.unwrap(),
        }
    };
    assert_eq!(r.data, big);
    assert_eq!(r.from, Some(lo(5301)));
    // Over the socket buffer (16 KiB): EMSGSIZE from the stack; over
    // 65507: from the client before any message.
    assert_eq!(
        b.send_dgram(ub, &pattern(20_000, 0), Some(lo(5300))),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(
        b.send_dgram(ub, &pattern(70_000, 0), Some(lo(5300))),
        Err(Errno::EMSGSIZE)
    );
    drop((a, b));
    st.stop();
}

#[test]
fn error_paths() {
    let st = setup(1);
    let a = st.client(0);
    let b = st.client(0);
    // EADDRINUSE: the same port twice (and for a listener with REUSEADDR).
    let x = a.socket(Kind::Stream).unwrap();
    a.bind(x, lo(7100)).unwrap();
    a.listen(x, 4).unwrap();
    let y = b.socket(Kind::Stream).unwrap();
    assert_eq!(b.bind(y, lo(7100)), Err(Errno::EADDRINUSE));
    b.setsockopt(y, SOL_SOCKET, SO_REUSEADDR, &1i32.to_ne_bytes())
        .unwrap();
    assert_eq!(
        b.getsockopt(y, SOL_SOCKET, SO_REUSEADDR, 4).unwrap(),
        1i32.to_ne_bytes()
    );
    assert_eq!(b.bind(y, lo(7100)), Err(Errno::EADDRINUSE));
    // ECONNREFUSED: nobody listens; the second connect and SO_ERROR say so.
    let z = b.socket(Kind::Stream).unwrap();
    assert_eq!(connect(&b, z, lo(7199)), Err(Errno::ECONNREFUSED));
    let z2 = b.socket(Kind::Stream).unwrap();
    assert_eq!(b.connect(z2, lo(7198)), Err(Errno::EINPROGRESS));
    wait_ready(&b, z2, OUT);
    assert_eq!(
        b.getsockopt(z2, SOL_SOCKET, SO_ERROR, 4).unwrap(),
        (Errno::ECONNREFUSED.0).to_ne_bytes()
    );
    // ENOTCONN: recv, getpeername, shutdown of an unconnected stream.
    let w = b.socket(Kind::Stream).unwrap();
    assert_eq!(b.recv(w, 10, false), Err(Errno::ENOTCONN));
    assert_eq!(b.peer_name(w), Err(Errno::ENOTCONN));
    assert_eq!(b.shutdown(w, 2), Err(Errno::ENOTCONN));
    // EINVAL: accept on a non-listener, a second bind, a staged piece on
    // a stream, a RecvMore without a hold, a bad shutdown.
    assert_eq!(b.accept(w), Err(Errno::EINVAL));
    b.bind(w, lo(7101)).unwrap();
    assert_eq!(b.bind(w, lo(7102)), Err(Errno::EINVAL));
    let staged = Request::Send {
        handle: w,
        dest: None,
        more: true,
        offset: 0,
        data: b"x",
        arm: 0,
    };
    let r = b.raw(staged.encode().unwrap()).unwrap();
    assert_eq!(r.label, Errno::EINVAL.0 as u64);
    let more = Request::RecvMore {
        handle: w,
        token: 1,
        offset: 0,
    };
    assert_eq!(b.raw(more.encode().unwrap()).unwrap().label, 22);
    // A staged datagram must continue where it stopped.
    let u = b.socket(Kind::Dgram).unwrap();
    let piece = |off: u32, more: bool| Request::Send {
        handle: u,
        dest: (!more).then_some(lo(7103)),
        more,
        offset: off,
        data: &[7; 100],
        arm: 0,
    };
    assert_eq!(b.raw(piece(0, true).encode().unwrap()).unwrap().label, 0);
    assert_eq!(b.raw(piece(50, true).encode().unwrap()).unwrap().label, 22);
    // Socket kinds and protocols.
    assert_eq!(
        b.socket_proto(Kind::Stream, 17),
        Err(Errno::EPROTONOSUPPORT)
    );
    // Unknown options.
    assert_eq!(b.getsockopt(w, SOL_SOCKET, 999, 4), Err(Errno::ENOPROTOOPT));
    // EBADF: closed, forged, another client's, stale after Attach.
    b.close(w).unwrap();
    assert_eq!(b.recv(w, 1, false), Err(Errno::EBADF));
    assert_eq!(b.close(w), Err(Errno::EBADF));
    assert_eq!(b.poll(Handle(0), 0), Err(Errno::EBADF));
    assert_eq!(b.poll(Handle(w.0 ^ (1 << 40)), 0), Err(Errno::EBADF));
    assert_eq!(b.poll(Handle(w.0 | 0xff << 24), 0), Err(Errno::EBADF));
    assert_eq!(a.sock_name(y), Err(Errno::EBADF));
    assert_eq!(b.sock_name(y).unwrap().port(), 0);
    let live = st.server.live_handles();
    b.reattach().unwrap();
    assert_eq!(b.sock_name(y), Err(Errno::EBADF));
    assert_eq!(st.server.live_handles(), live - 4);
    // The listener of `a` survived `b`'s attach.
    assert_eq!(a.sock_name(x).unwrap(), lo(7100));
    // The slot of a closed handle is reused with a new sequence number.
    let n = b.socket(Kind::Dgram).unwrap();
    assert_ne!(n, w);
    drop((a, b));
    st.stop();
}

#[test]
fn large_stream_transfers_are_split() {
    let st = setup(1);
    let a = st.client(0);
    let b = st.client(0);
    let (_l, s, acc) = pair(&a, &b, 7200);
    let data = pattern(300_000, 9);
    let mut sent = 0;
    let mut got = Vec::new();
    let mut calls = 0;
    while got.len() < data.len() {
        if sent < data.len() {
            match b.send_stream(s, &data[sent..]) {
                Ok(n) => sent += n,
                Err(Errno::EAGAIN) => {}
                Err(e) => panic!("send: {e:?}"),
            }
        }
        match a.recv(acc, MAX_RECV, false) {
            Ok(r) => got.extend_from_slice(&r.data),
            Err(Errno::EAGAIN) => {
                wait_ready(&a, acc, IN);
            }
            Err(e) => panic!("recv: {e:?}"),
        }
        calls += 1;
    }
    assert_eq!(got.len(), data.len());
    let first_bad = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_bad, None);
    // Buffers of 64 KiB: far fewer rounds than 8 KiB messages would take
    // one by one.
    assert!(calls < 300_000 / MAX_PAYLOAD, "{calls} rounds");
    // A peek larger than a message comes whole (held rest), then the
    // same bytes by recv (on a new connection: smoltcp peeks only up to
    // the end of its ring buffer; Nagle off, so all of it is there).
    let (_l, s, acc) = pair(&a, &b, 7201);
    b.setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &1i32.to_ne_bytes())
        .unwrap();
    let more = pattern(20_000, 1);
    assert_eq!(b.send_stream(s, &more).unwrap(), 20_000);
    let peeked = a.recv(acc, 30_000, true).unwrap().data;
    assert!(peeked == more, "peek {}", peeked.len());
    assert!(a.recv(acc, 30_000, false).unwrap().data == more, "recv");
    drop((a, b));
    st.stop();
}

#[test]
fn blocked_recv_is_woken_through_the_notification_path() {
    let st = setup(2);
    let a = st.client(0);
    let b = st.client(1);
    let (_l, s, acc) = pair(&a, &b, 7300);
    let notifier = st.conn().notifier();
    // Data to a socket nobody armed raises no notification.
    a.conn().take_bits();
    let before = notifier.signals.load(std::sync::atomic::Ordering::Relaxed);
    b.send_stream(s, b"unwatched").unwrap();
    assert_eq!(recv(&a, acc, 100), b"unwatched");
    assert_eq!(a.conn().take_bits(), 0);
    assert_eq!(
        notifier.signals.load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    // A thread of `a` blocks on recv: EAGAIN, arm, tell the sender, wait
    // for the bit, collect the report, recv.
    let (armed_tx, armed_rx) = mpsc::channel();
    let (id, conn) = (a.conn().id(), st.conn());
    let end = conn.connect_as(id, 0);
    let waiter = std::thread::spawn(move || {
        let c = netd::client::Client::new(end);
        assert_eq!(c.recv(acc, 100, false), Err(Errno::EAGAIN));
        let ev = c.poll(acc, EPOLLIN).unwrap();
        assert_eq!(ev & EPOLLIN, 0);
        armed_tx.send(()).unwrap();
        let bits = c.conn().wait_bits();
        assert_eq!(bits, READY_BIT);
        let reports = c.collect().unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].0, acc);
        assert_ne!(reports[0].1 & EPOLLIN, 0);
        c.recv(acc, 100, false).unwrap().data
    });
    armed_rx.recv().unwrap();
    b.send_stream(s, b"wake up").unwrap();
    assert_eq!(waiter.join().unwrap(), b"wake up");
    // The report disarmed the handle: more data, no new signal.
    b.send_stream(s, b"again").unwrap();
    assert_eq!(a.conn().take_bits(), 0);
    assert_eq!(a.server_reports(&st), 0);
    drop((a, b));
    st.stop();
}

trait Reports {
    fn server_reports(&self, st: &Setup) -> usize;
}
impl Reports for netd::client::Client<netd::channel::ClientEnd> {
    fn server_reports(&self, st: &Setup) -> usize {
        st.server.queued_reports(self.conn().id())
    }
}

#[test]
fn readiness_reports_for_accept_connect_and_many_handles() {
    let st = setup(1);
    let a = st.client(0);
    let b = st.client(0);
    let l = a.socket(Kind::Stream).unwrap();
    a.bind(l, lo(7400)).unwrap();
    a.listen(l, 64).unwrap();
    // An armed listener is reported when a connection is queued.
    assert_eq!(a.poll(l, EPOLLIN).unwrap() & EPOLLIN, 0);
    let s = b.socket(Kind::Stream).unwrap();
    assert_eq!(b.connect(s, lo(7400)), Err(Errno::EINPROGRESS));
    assert_eq!(a.conn().wait_bits(), READY_BIT);
    let r = a.collect().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].0, l);
    // 600 armed sockets reported at once: more than one reply holds.
    let mut accepted = Vec::new();
    let mut clients = Vec::new();
    accepted.push(accept(&a, l).0);
    clients.push(s);
    b.connect(s, lo(7400)).unwrap();
    for _ in 1..600 {
        let c = b.socket(Kind::Stream).unwrap();
        connect(&b, c, lo(7400)).unwrap();
        accepted.push(accept(&a, l).0);
        clients.push(c);
    }
    for &h in &accepted {
        assert_eq!(a.poll(h, EPOLLIN).unwrap() & EPOLLIN, 0);
    }
    for &c in &clients {
        b.send_stream(c, b"!").unwrap();
    }
    a.conn().wait_bits();
    let (first, more) = a.poll_changed(MAX_CHANGES).unwrap();
    assert_eq!(first.len(), MAX_CHANGES);
    assert!(more);
    let rest = a.collect().unwrap();
    let mut all: Vec<Handle> = first.iter().chain(rest.iter()).map(|r| r.0).collect();
    all.sort();
    let mut want = accepted.clone();
    want.sort();
    assert_eq!(all, want);
    // Closing all: no handles, no open sockets.
    b.reattach().unwrap();
    a.reattach().unwrap();
    assert_eq!(st.server.live_handles(), 0);
    assert_eq!(st.server.stack().stats().open_sockets, 0);
    drop((a, b));
    st.stop();
}

#[test]
fn unknown_operation_is_enosys() {
    let st = setup(1);
    let a = st.client(0);
    let r = a
        .raw(Message {
            label: 99,
            ..Message::default()
        })
        .unwrap();
    assert_eq!(r.label, Errno::ENOSYS.0 as u64);
    drop(a);
    st.stop();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random messages (labels of real operations, random words and
    /// bytes) get a reply, never a panic; the server stays usable.
    #[test]
    fn random_messages_get_a_reply(
        msgs in prop::collection::vec(
            (1u64..18, (prop_oneof![Just(0u64), 0u64..4, any::<u64>()], any::<u64>(), 0u64..70000, 0u64..70000),
             prop::collection::vec(any::<u8>(), 0..64)),
            1..20)
    ) {
        let server = netd::NetServer::new(
            netd::Config::new(1, net::LockMode::PerCpu),
            std::sync::Arc::new(netd::channel::Notifier::default()),
            None,
        );
        for (label, (w0, w1, w2, w3), payload) in msgs {
            let m = Message { label, words: [w0, w1, w2, w3], payload };
            let r = server.handle(1, m.view());
            if let Ok(op) = Op::from_label(label) {
                prop_assert!(Reply::decode(op, r.view()).is_ok());
            }
        }
        let ok = Request::Socket { kind: Kind::Dgram, protocol: 0 }.encode().unwrap();
        prop_assert_eq!(server.handle(1, ok.view()).label, 0);
    }
}

/// A `Recv` with `arm` arms on `EAGAIN` (no `Poll` call), and the report
/// goes to the shard of the server thread that armed it: `PollChanged
/// { shard }` of that shard has it, the other shard's is empty.
#[test]
fn recv_arms_on_eagain_and_reports_in_the_arming_shard() {
    let st = setup(2);
    let a = st.client(1);
    let b = st.client(0);
    let l = a.socket(Kind::Stream).unwrap();
    a.bind(l, lo(7600)).unwrap();
    a.listen(l, 4).unwrap();
    let s = b.socket(Kind::Stream).unwrap();
    connect(&b, s, lo(7600)).unwrap();
    let (acc, _, _) = accept(&a, l);
    let recv_msg = |arm: u32| {
        Request::Recv {
            handle: acc,
            len: 16,
            peek: false,
            arm,
        }
        .encode()
        .unwrap()
    };
    let r = a.raw(recv_msg(EPOLLIN)).unwrap();
    assert_eq!(r.label, Errno::EAGAIN.0 as u64);
    assert_eq!(a.conn().take_bits(), 0);
    b.send_stream(s, b"hi").unwrap();
    assert_eq!(a.conn().wait_bits(), READY_BIT);
    let changed = |shard: u32| {
        let m = a
            .raw(
                Request::PollChanged {
                    max: 8,
                    shard: Some(shard),
                }
                .encode()
                .unwrap(),
            )
            .unwrap();
        match Reply::decode(Op::PollChanged, m.view()).unwrap().unwrap() {
            Reply::Changed { changes, more } => {
                assert!(!more);
                changes.iter().collect::<Vec<_>>()
            }
            r => panic!("not a PollChanged reply: {r:?}"),
        }
    };
    assert_eq!(changed(0), vec![]);
    let got = changed(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, acc);
    assert_ne!(got[0].1 & EPOLLIN, 0);
    // Without arm nothing is armed: a later change is not reported.
    assert_eq!(recv(&a, acc, 16), b"hi");
    assert_eq!(a.raw(recv_msg(0)).unwrap().label, Errno::EAGAIN.0 as u64);
    b.send_stream(s, b"!").unwrap();
    assert_eq!(a.conn().take_bits(), 0);
    assert!(a.collect().unwrap().is_empty());
    // A shard the server does not have; a transport without per-shard
    // signals refuses to route one.
    let bad = Request::PollChanged {
        max: 8,
        shard: Some(2),
    };
    assert_eq!(
        a.raw(bad.encode().unwrap()).unwrap().label,
        Errno::EINVAL.0 as u64
    );
    for shard in [0, 2] {
        let m = Request::NotifyShard { shard, notify: 9 }.encode().unwrap();
        assert_eq!(a.raw(m).unwrap().label, Errno::EINVAL.0 as u64);
    }
    drop((a, b));
    st.stop();
}
