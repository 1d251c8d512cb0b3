//! The Ethernet instance: two stacks joined by a "wire" the test pumps;
//! ARP, ICMP echo, TCP over Ethernet, a 0.0.0.0 listener reachable from both
//! loopback and the NIC, and malformed frames (property test).
mod common;

use common::*;
use net::consts::*;
use net::{errno, Config, EthConfig, Ipv4Addr, LockMode, SockType, SocketAddrV4, Stack};
use proptest::prelude::*;

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xb];
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

fn eth_stack(mac: [u8; 6], addr: Ipv4Addr, mode: LockMode) -> S {
    let mut cfg = Config::new(2, mode);
    cfg.eth = Some(EthConfig {
        mac,
        addr,
        prefix_len: 24,
        gateway: None,
    });
    Stack::new(TestPlatform::new(), cfg)
}

fn take_frames(s: &S) -> Vec<Vec<u8>> {
    std::mem::take(&mut *s.platform().frames.lock().unwrap())
}

/// Move frames between the two stacks until the wire is quiet.
fn pump(a: &S, b: &S) {
    for _ in 0..100 {
        let fa = take_frames(a);
        let fb = take_frames(b);
        if fa.is_empty() && fb.is_empty() {
            return;
        }
        for f in fa {
            b.receive_frame(&f);
        }
        for f in fb {
            a.receive_frame(&f);
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(MAC_B);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend(MAC_B);
    f.extend(IP_B.octets());
    f.extend([0; 6]);
    f.extend(target.octets());
    f
}

fn icmp_echo(dst_mac: [u8; 6], dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend(seq.to_be_bytes());
    icmp.extend(b"ping-payload");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend(IP_B.octets());
    ip.extend(dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(MAC_B);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(icmp);
    f
}

fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == IP_A.octets()
}

fn is_echo_reply(f: &[u8], seq: u16) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x00]
        && f[23] == 1
        && f[34] == 0
        && f[40..42] == seq.to_be_bytes()
}

#[test]
fn arp_and_icmp_echo_are_answered() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    a.receive_frame(&arp_request(IP_A));
    assert!(take_frames(&a).iter().any(|f| is_arp_reply(f)));
    a.receive_frame(&icmp_echo(MAC_A, IP_A, 7));
    assert!(take_frames(&a).iter().any(|f| is_echo_reply(f, 7)));
}

#[test]
fn tcp_over_ethernet_and_wildcard_listener() {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let a = eth_stack(MAC_A, IP_A, mode);
        let b = eth_stack(MAC_B, IP_B, mode);
        set_cpu(0);
        let l = b.socket(SockType::Stream).unwrap();
        l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
            .unwrap();
        l.listen(8).unwrap();
        let c = a.socket(SockType::Stream).unwrap();
        assert_eq!(
            c.connect(SocketAddrV4::new(IP_B, 80)),
            Err(errno::EINPROGRESS)
        );
        for _ in 0..50 {
            pump(&a, &b);
            if c.poll_events() & EPOLLOUT != 0 {
                break;
            }
            // ARP resolution retries on the timer.
            std::thread::sleep(std::time::Duration::from_millis(20));
            a.poll(0);
        }
        assert_eq!(c.connect(SocketAddrV4::new(IP_B, 80)), Ok(()));
        assert_eq!(*c.local_addr().unwrap().ip(), IP_A);
        let (s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(c.send(b"over the wire", None), Ok(13));
        pump(&a, &b);
        let mut buf = [0u8; 32];
        assert_eq!(s.recv(&mut buf, false), Ok((13, None)));
        assert_eq!(&buf[..13], b"over the wire");
        // The same wildcard listener also serves loopback on B.
        let lc = connect(&b, lo(80)).unwrap();
        let (ls, _) = l.accept().unwrap();
        send_all(&b, &lc, b"local");
        let mut five = [0u8; 5];
        assert!(recv_exact(&b, &ls, &mut five));
        // No NIC route to a foreign net without gateway; no NIC at all on a
        // loopback-only stack.
        let plain = stack(1, mode);
        let x = plain.socket(SockType::Stream).unwrap();
        assert_eq!(
            x.connect(SocketAddrV4::new(IP_B, 80)),
            Err(errno::ENETUNREACH)
        );
    }
}

fn valid_frames() -> Vec<Vec<u8>> {
    // A TCP SYN as the peer would send it, captured from a real stack.
    let b = eth_stack(MAC_B, IP_B, LockMode::PerCpu);
    let c = b.socket(SockType::Stream).unwrap();
    let _ = c.connect(SocketAddrV4::new(IP_A, 80));
    let mut frames = take_frames(&b); // ARP request
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    for f in &frames {
        a.receive_frame(f);
    }
    for f in take_frames(&a) {
        b.receive_frame(&f);
    }
    b.poll(0);
    frames.extend(take_frames(&b)); // the SYN
    frames.push(arp_request(IP_A));
    frames.push(icmp_echo(MAC_A, IP_A, 1));
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1600), 1..20)) {
        let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
        for f in &frames {
            a.receive_frame(f);
        }
        a.poll(0);
        // Still alive and answering.
        a.receive_frame(&arp_request(IP_A));
        prop_assert!(take_frames(&a).iter().any(|f| is_arp_reply(f)));
    }

    #[test]
    fn mutated_frames_never_panic(which in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let valid = valid_frames();
        let mut f = valid[which % valid.len()].clone();
        for (pos, val) in flips {
            let n = f.len();
            f[pos % n] = val;
        }
        let keep = cut % (f.len() + 1);
        let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
        let l = a.socket(SockType::Stream).unwrap();
        l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80)).unwrap();
        l.listen(4).unwrap();
        a.receive_frame(&f);
        a.receive_frame(&f[..keep]);
        a.poll(0);
        // A mutated ARP may have taught a wrong neighbour: re-teach, then ping.
        a.receive_frame(&arp_request(IP_A));
        a.receive_frame(&icmp_echo(MAC_A, IP_A, 9));
        prop_assert!(take_frames(&a).iter().any(|f| is_echo_reply(f, 9)));
    }
}

/// A TCP SYN frame from B (`IP_B:sport`) to `IP_A:80`.
fn syn_from_b(sport: u16) -> Vec<u8> {
    tcp_from_b(sport, 1000, 0x02)
}

/// A TCP segment from B's `sport` to A's port 80: sequence number `seq`,
/// flags `flags`, no ACK, no payload.
fn tcp_from_b(sport: u16, seq: u32, flags: u8) -> Vec<u8> {
    let mut tcp = Vec::new();
    tcp.extend(sport.to_be_bytes());
    tcp.extend(80u16.to_be_bytes());
    tcp.extend(seq.to_be_bytes());
    tcp.extend(0u32.to_be_bytes());
    tcp.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend(IP_B.octets());
    pseudo.extend(IP_A.octets());
    pseudo.extend([0, 6, 0, tcp.len() as u8]);
    pseudo.extend(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let total = (20 + tcp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend(total.to_be_bytes());
    ip.extend([0, 1, 0x40, 0, 64, 6, 0, 0]);
    ip.extend(IP_B.octets());
    ip.extend(IP_A.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend(MAC_A);
    f.extend(MAC_B);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(tcp);
    f
}

#[test]
fn syn_flood_from_the_wire_is_bounded_and_times_out() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    a.receive_frame(&arp_request(IP_A));
    let l = a.socket(SockType::Stream).unwrap();
    l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    l.listen(128).unwrap();
    let base = a.stats().smoltcp_sockets;
    for sport in 0..2000u16 {
        a.receive_frame(&syn_from_b(10_000 + sport));
    }
    take_frames(&a);
    // Half-open connections never exceed the listener's pool.
    assert_eq!(a.stats().smoltcp_sockets, base);
    assert_eq!(l.accept().err(), Some(errno::EAGAIN));
    // After the handshake timeout the pool listens again: a new SYN gets
    // a SYN-ACK.
    advance(&a, 61_000);
    a.poll(0);
    take_frames(&a);
    a.receive_frame(&syn_from_b(40_000));
    let synack = take_frames(&a)
        .iter()
        .any(|f| f.len() >= 54 && f[23] == 6 && f[47] & 0x12 == 0x12);
    assert!(synack, "listener serves again after the flood");
}

#[test]
fn connect_to_silent_peer_times_out() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    a.receive_frame(&arp_request(IP_A)); // learns B's MAC
    take_frames(&a);
    let c = a.socket(SockType::Stream).unwrap();
    assert_eq!(
        c.connect(SocketAddrV4::new(IP_B, 80)),
        Err(errno::EINPROGRESS)
    );
    assert_eq!(c.poll_events() & (EPOLLOUT | EPOLLERR), 0);
    advance(&a, 61_000);
    a.poll(0);
    a.poll(0);
    assert_ne!(c.poll_events() & EPOLLERR, 0);
    assert_eq!(
        c.connect(SocketAddrV4::new(IP_B, 80)),
        Err(errno::ETIMEDOUT)
    );
}

/// Frames up to 9018 bytes (a jumbo frame's size) are taken, longer ones
/// dropped; a stack without a NIC drops every frame.
#[test]
fn frame_size_limit_and_no_nic() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    for (len, answered) in [(9018, true), (9019, false), (20_000, false)] {
        let mut f = arp_request(IP_A);
        f.resize(len, 0);
        a.receive_frame(&f);
        let replied = take_frames(&a).iter().any(|f| is_arp_reply(f));
        assert_eq!(replied, answered, "frame of {len} bytes");
    }
    let plain = stack(2, LockMode::PerCpu);
    plain.receive_frame(&arp_request(IP_A));
    plain.receive_frame(&icmp_echo(MAC_A, IP_A, 1));
    assert!(take_frames(&plain).is_empty());
    assert_eq!(plain.next_poll_ms(0), None);
}

/// The NIC instance's timers belong to CPU 0: its deadline shows in
/// `next_poll_ms(0)` only, and `poll(0)` (not `poll(1)`) runs them.
#[test]
fn nic_timers_run_on_cpu_zero_only() {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let a = eth_stack(MAC_A, IP_A, mode);
        freeze(&a);
        a.receive_frame(&arp_request(IP_A)); // learns B's MAC
        take_frames(&a);
        assert_eq!((a.next_poll_ms(0), a.next_poll_ms(1)), (None, None));
        let c = a.socket(SockType::Stream).unwrap();
        let peer = SocketAddrV4::new(IP_B, 80);
        assert_eq!(c.connect(peer), Err(errno::EINPROGRESS));
        let syns = |frames: &[Vec<u8>]| {
            frames
                .iter()
                .filter(|f| f.len() >= 54 && f[23] == 6 && f[47] & 0x12 == 0x02)
                .count()
        };
        assert_eq!(syns(&take_frames(&a)), 1);
        // The SYN's retransmission timer is pending in the NIC instance.
        let due = a.next_poll_ms(0).expect("a retransmission timer");
        assert_eq!(a.next_poll_ms(1), None, "{mode:?}");
        let now = net::Platform::now_ms(a.platform());
        advance(&a, due.saturating_sub(now) + 10_000);
        a.poll(1);
        assert_eq!(syns(&take_frames(&a)), 0, "poll(1) ran the NIC ({mode:?})");
        a.poll(0);
        assert_eq!(syns(&take_frames(&a)), 1, "poll(0) retransmits ({mode:?})");
        c.close();
    }
}

/// The NIC checks checksums (the loopback instances skip them): a frame
/// with a bad IP or ICMP checksum gets no answer, and the answers carry
/// correct ones.
#[test]
fn nic_checks_and_fills_checksums() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    a.receive_frame(&arp_request(IP_A));
    take_frames(&a);
    let good = icmp_echo(MAC_A, IP_A, 9);
    for at in [24, 36] {
        // 24: the IP header's checksum; 36: the ICMP checksum.
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        a.receive_frame(&bad);
        assert!(
            take_frames(&a).is_empty(),
            "answered a bad checksum at {at}"
        );
    }
    a.receive_frame(&good);
    let frames = take_frames(&a);
    let reply = frames
        .iter()
        .find(|f| is_echo_reply(f, 9))
        .expect("an echo reply");
    // A correct checksum sums (with itself) to zero.
    assert_eq!(checksum(&reply[14..34]), 0, "IP header checksum");
    assert_eq!(checksum(&reply[34..]), 0, "ICMP checksum");
}

/// An established connection has no user timeout (Linux's default): data
/// for a peer that falls silent is retransmitted past the 60 s handshake
/// limit, not aborted, and arrives once the peer is back.
#[test]
fn established_connection_outlives_the_handshake_timeout() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    let b = eth_stack(MAC_B, IP_B, LockMode::PerCpu);
    freeze(&a);
    freeze(&b);
    set_cpu(0);
    let l = b.socket(SockType::Stream).unwrap();
    l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    l.listen(8).unwrap();
    let c = a.socket(SockType::Stream).unwrap();
    let peer = SocketAddrV4::new(IP_B, 80);
    assert_eq!(c.connect(peer), Err(errno::EINPROGRESS));
    for _ in 0..20 {
        pump(&a, &b);
        if c.poll_events() & EPOLLOUT != 0 {
            break;
        }
        // ARP resolution retries on the timer.
        advance(&a, 1000);
        advance(&b, 1000);
        a.poll(0);
        b.poll(0);
    }
    assert_eq!(c.connect(peer), Ok(()));
    let (s, _) = l.accept().unwrap();
    // B falls silent for 100 s.
    assert_eq!(c.send(b"into the void", None), Ok(13));
    take_frames(&a);
    for _ in 0..10 {
        advance(&a, 10_000);
        a.poll(0);
        take_frames(&a);
    }
    assert_eq!(so_error(&c), 0);
    assert_eq!(c.poll_events() & (EPOLLERR | EPOLLHUP), 0);
    // B is back: a retransmission gets through.
    let mut buf = [0u8; 32];
    for _ in 0..10 {
        if s.recv(&mut buf, false) == Ok((13, None)) {
            assert_eq!(&buf[..13], b"into the void");
            return;
        }
        advance(&a, 30_000);
        a.poll(0);
        pump(&a, &b);
    }
    panic!("the data never arrived");
}

/// A handshake reset (SYN, then RST) or timed out in a listener's pool
/// gives the pool socket back to listening: no connection to accept, no
/// wake-up of the listener, no socket more or less, and the next SYN is
/// answered.
#[test]
fn handshake_reset_in_the_pool_listens_again_quietly() {
    let a = eth_stack(MAC_A, IP_A, LockMode::PerCpu);
    freeze(&a);
    a.receive_frame(&arp_request(IP_A));
    let l = a.socket(SockType::Stream).unwrap();
    l.bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))
        .unwrap();
    l.listen(4).unwrap();
    take_frames(&a);
    let sockets = a.stats().smoltcp_sockets;
    let woken = l.waiters().generation();
    let synack = |frames: &[Vec<u8>]| {
        frames
            .iter()
            .any(|f| f.len() >= 54 && f[23] == 6 && f[47] & 0x12 == 0x12)
    };
    for round in 0..3u16 {
        a.receive_frame(&syn_from_b(5000 + round));
        assert!(synack(&take_frames(&a)), "round {round}");
        a.receive_frame(&tcp_from_b(5000 + round, 1001, 0x04));
        a.poll(0);
        assert_eq!(l.accept().err(), Some(errno::EAGAIN));
        assert_eq!(l.poll_events() & EPOLLIN, 0);
        assert_eq!(l.waiters().generation(), woken, "round {round}");
        assert_eq!(a.stats().smoltcp_sockets, sockets);
    }
    // A handshake that times out (smoltcp closes the socket, where a reset
    // took it back to listening itself).
    a.receive_frame(&syn_from_b(6000));
    assert!(synack(&take_frames(&a)));
    advance(&a, 61_000);
    a.poll(0);
    take_frames(&a);
    assert_eq!(l.accept().err(), Some(errno::EAGAIN));
    assert_eq!(l.waiters().generation(), woken, "woken by a timeout");
    assert_eq!(a.stats().smoltcp_sockets, sockets);
    a.receive_frame(&syn_from_b(6001));
    assert!(synack(&take_frames(&a)));
}
