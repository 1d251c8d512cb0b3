//! `run=nettest`: the NIC tested at the frame level, without a TCP/IP stack.
//!
//! Owns only this test.  It finds the NIC, ARPs for the peer (the `gw=` of
//! `net=`, else the first host of the subnet; default 10.0.2.15/24 via
//! 10.0.2.2, QEMU user-mode networking), pings it with one ICMP echo request
//! and waits for the reply, then floods the rx path with 1000 ARP requests
//! (one sender thread per CPU, each on its CPU's queue pair) and checks that the driver's counters agree with what the test saw.
//! Prints `nettest: arp reply from IP at MAC`, `nettest: icmp echo reply`,
//! and `nettest: pass` or `nettest: FAIL <reason>`.
//!
//! Invariants: every wait is bounded (`REPLY_TIMEOUT_NS`); frames go only to
//! the configured peer or to the broadcast address of the guest's own link.
//! Must not: leave threads behind, or answer anything but ARP requests for
//! the guest's own address.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::report;
use crate::cmdline::NetConfig;
use crate::drivers::net::{self, Nic, NicCounters, TxError};
use crate::sched;

/// How long to wait for one reply.
const REPLY_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long the flood may take, replies included.
const FLOOD_TIMEOUT_NS: u64 = 30_000_000_000;
/// ARP requests sent by the flood.
const FLOOD_FRAMES: usize = 1000;

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const BROADCAST: [u8; 6] = [0xff; 6];
const ICMP_ID: u16 = 0x7e57;
/// Ethernet frames are padded to this length (without FCS).
const MIN_ETHERNET_BYTES: usize = 60;

/// Runs the test; returns the exit code (0 = pass).
pub fn run() -> u32 {
    match test() {
        Ok(()) => {
            report(format_args!("nettest: pass"));
            0
        }
        Err(reason) => {
            report(format_args!("nettest: FAIL {}", reason));
            1
        }
    }
}

fn test() -> Result<(), String> {
    let nic = net::nic().ok_or("no NIC (boot with a virtio-net device: --nic user)")?;
    let config = crate::drivers::net_config();
    let peer = peer_of(&config);
    let mac = nic.mac();
    report(format_args!(
        "nettest: nic {}, {} queue pair(s) of {}, mac {}, ip {}/{}, peer {}",
        nic.pci_address,
        nic.queues(),
        nic.device_pairs,
        fmt_mac(&mac),
        fmt_ip(&config.ip),
        config.prefix_len,
        fmt_ip(&peer)
    ));

    // 0. Bad input to the driver is refused, not sent.
    let oversize = [0u8; net::MAX_FRAME_BYTES + 1];
    for (frame, queue, want) in [
        (&oversize[..], 0, TxError::BadLength),
        (&oversize[..13], 0, TxError::BadLength),
        (&oversize[..60], nic.queues(), TxError::NoSuchQueue),
    ] {
        if nic.transmit(queue, frame) != Err(want) {
            return Err(format!(
                "transmit of {} bytes on queue {} did not give {:?}",
                frame.len(),
                queue,
                want
            ));
        }
    }
    nic.set_rx_callback(count_rx_callback);

    // 1. ARP for the peer.
    let request = arp_frame(1, &mac, &config.ip, &BROADCAST, &[0; 6], &peer);
    send(nic, &request)?;
    let peer_mac = wait_for(nic, &config, REPLY_TIMEOUT_NS, |frame| {
        parse_arp(frame).and_then(|arp| {
            (arp.op == 2 && arp.sender_ip == peer && arp.target_ip == config.ip)
                .then_some(arp.sender_mac)
        })
    })
    .ok_or("no ARP reply from the peer within 5 s")?;
    report(format_args!(
        "nettest: arp reply from {} at {}",
        fmt_ip(&peer),
        fmt_mac(&peer_mac)
    ));

    // 2. ICMP echo.
    let sequence = 1;
    let echo = icmp_echo_frame(&mac, &peer_mac, &config.ip, &peer, sequence);
    send(nic, &echo)?;
    wait_for(nic, &config, REPLY_TIMEOUT_NS, |frame| {
        is_echo_reply(frame, &peer, &config.ip, sequence).then_some(())
    })
    .ok_or("no ICMP echo reply from the peer within 5 s")?;
    report(format_args!("nettest: icmp echo reply"));

    // 3. Flood the rx path with ARP replies: 1000 requests, sent by one
    // thread per CPU on that CPU's queue pair, while this thread drains
    // every queue; the driver's counters must match what the test saw.
    let before: Vec<NicCounters> = (0..nic.queues()).map(|q| nic.queue_counters(q)).collect();
    let before_total = nic.counters();
    let tally = Arc::new(FloodTally::default());
    let cpus = sched::cpu_count();
    let mut senders = Vec::with_capacity(cpus);
    for cpu in 0..cpus {
        let quota = FLOOD_FRAMES / cpus + if cpu == 0 { FLOOD_FRAMES % cpus } else { 0 };
        let (tally, request) = (tally.clone(), request.clone());
        senders.push(sched::spawn("nettest-flood", Some(cpu), move || {
            flood_sender(nic, &request, quota as u64, &tally)
        }));
    }
    let mut seen = 0u64;
    let mut replies = 0u64;
    let deadline = crate::arch::time::now_ns() + FLOOD_TIMEOUT_NS;
    let mut settle_deadline = None;
    loop {
        let got = drain(nic, &config, &mut |frame| {
            seen += 1;
            if is_arp_reply_from(frame, &peer, &config.ip) {
                replies += 1;
            }
        });
        let now = crate::arch::time::now_ns();
        if senders.iter().all(|h| h.is_finished()) {
            // Let the last replies arrive (bounded).
            let settle = *settle_deadline.get_or_insert(now + REPLY_TIMEOUT_NS);
            if replies >= tally.sent.load(Ordering::Relaxed) || now > settle {
                break;
            }
        } else if now > deadline {
            break;
        }
        if got == 0 {
            sched::sleep_ns(1_000_000);
        }
    }
    super::join_all_within(senders, REPLY_TIMEOUT_NS)
        .map_err(|stuck| format!("flood: sender threads did not finish: {}", stuck))?;
    let sent = tally.sent.load(Ordering::Relaxed);
    let ring_full = tally.ring_full.load(Ordering::Relaxed);
    if let Some(e) = *tally.error.lock() {
        return Err(format!("flood: transmit failed: {:?}", e));
    }
    let after = nic.counters();
    let mut per_queue = String::new();
    for (q, b) in before.iter().enumerate() {
        let a = nic.queue_counters(q);
        per_queue.push_str(&format!(
            "{}{}/{}",
            if q == 0 { "" } else { "," },
            a.tx_frames - b.tx_frames,
            a.rx_frames - b.rx_frames
        ));
        if q < cpus && a.tx_frames == b.tx_frames {
            return Err(format!(
                "flood: queue {} sent nothing though cpu {} used it",
                q, q
            ));
        }
    }
    report(format_args!(
        "nettest: flood sent={} ring_full={} arp_replies={} rx_frames={} rx_drops={} tx_frames={} interrupts={} tx/rx_per_queue={}",
        sent,
        ring_full,
        replies,
        after.rx_frames - before_total.rx_frames,
        after.rx_drops - before_total.rx_drops,
        after.tx_frames - before_total.tx_frames,
        after.interrupts,
        per_queue
    ));
    if sent != FLOOD_FRAMES as u64 {
        return Err(format!(
            "flood: only {} of {} frames sent in time",
            sent, FLOOD_FRAMES
        ));
    }
    let before = before_total;
    if after.tx_frames - before.tx_frames != sent {
        return Err(format!(
            "flood: tx counter moved by {}, {} frames were sent",
            after.tx_frames - before.tx_frames,
            sent
        ));
    }
    if after.tx_ring_full - before.tx_ring_full != ring_full {
        return Err("flood: ring-full counter disagrees with the refusals seen".into());
    }
    if after.rx_frames - before.rx_frames != seen {
        return Err(format!(
            "flood: rx counter moved by {}, the test saw {} frames",
            after.rx_frames - before.rx_frames,
            seen
        ));
    }
    if replies == 0 || replies > sent {
        return Err(format!(
            "flood: {} ARP replies for {} requests",
            replies, sent
        ));
    }
    if after.interrupts == 0 {
        return Err("no rx interrupt was ever taken (MSI-X routing broken?)".into());
    }
    let callbacks = RX_CALLBACKS.load(Ordering::Relaxed);
    if callbacks == 0 || callbacks > after.interrupts {
        return Err(format!(
            "rx callback ran {} times for {} rx interrupts",
            callbacks, after.interrupts
        ));
    }
    Ok(())
}

/// The peer: the gateway, else the first host of the subnet.
fn peer_of(config: &NetConfig) -> [u8; 4] {
    if let Some(gw) = config.gateway {
        return gw;
    }
    let ip = u32::from_be_bytes(config.ip);
    let mask = if config.prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - config.prefix_len as u32)
    };
    ((ip & mask) + 1).to_be_bytes()
}

/// Rx interrupts seen by the callback the test installs.
static RX_CALLBACKS: AtomicU64 = AtomicU64::new(0);

/// The rx callback (interrupt context: one atomic add, nothing else).
fn count_rx_callback(_queue: usize) {
    RX_CALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// What the flood's sender threads did.
#[derive(Default)]
struct FloodTally {
    sent: AtomicU64,
    ring_full: AtomicU64,
    error: spin::Mutex<Option<TxError>>,
}

/// Sends `quota` copies of `frame` on this CPU's queue, retrying (after a
/// yield) while the ring is full, until the flood deadline.
fn flood_sender(nic: &Nic, frame: &[u8], quota: u64, tally: &FloodTally) {
    let deadline = crate::arch::time::now_ns() + FLOOD_TIMEOUT_NS;
    let mut sent = 0;
    while sent < quota && crate::arch::time::now_ns() < deadline {
        match nic.transmit(tx_queue(nic), frame) {
            Ok(()) => {
                sent += 1;
                tally.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(TxError::RingFull) => {
                tally.ring_full.fetch_add(1, Ordering::Relaxed);
                sched::yield_now();
            }
            Err(e) => {
                *tally.error.lock() = Some(e);
                return;
            }
        }
    }
}

/// This CPU's queue pair (the per-core arrangement the glue will use).
fn tx_queue(nic: &Nic) -> usize {
    sched::current_cpu() % nic.queues()
}

fn send(nic: &Nic, frame: &[u8]) -> Result<(), String> {
    nic.transmit(tx_queue(nic), frame)
        .map_err(|e| format!("transmit failed: {:?}", e))
}

/// Drains every queue, answering ARP requests for our address; returns the
/// frames seen.
fn drain(nic: &Nic, config: &NetConfig, f: &mut dyn FnMut(&[u8])) -> usize {
    let mut answers: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    for queue in 0..nic.queues() {
        total += nic.receive(queue, &mut |frame| {
            if let Some(arp) = parse_arp(frame) {
                if arp.op == 1 && arp.target_ip == config.ip {
                    answers.push(arp_frame(
                        2,
                        &nic.mac(),
                        &config.ip,
                        &arp.sender_mac,
                        &arp.sender_mac,
                        &arp.sender_ip,
                    ));
                }
            }
            f(frame);
        });
    }
    for answer in answers {
        // Best effort: a full ring only delays the peer's retry.
        let _ = nic.transmit(tx_queue(nic), &answer);
    }
    total
}

/// Drains until `want` returns `Some` or the timeout passes.
fn wait_for<T>(
    nic: &Nic,
    config: &NetConfig,
    timeout_ns: u64,
    mut want: impl FnMut(&[u8]) -> Option<T>,
) -> Option<T> {
    let deadline = crate::arch::time::now_ns() + timeout_ns;
    let mut found = None;
    loop {
        let got = drain(nic, config, &mut |frame| {
            if found.is_none() {
                found = want(frame);
            }
        });
        if found.is_some() {
            return found;
        }
        if crate::arch::time::now_ns() > deadline {
            return None;
        }
        if got == 0 && !(0..nic.queues()).any(|q| nic.rx_ready(q)) {
            sched::sleep_ns(1_000_000);
        }
    }
}

struct Arp {
    op: u16,
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn parse_arp(frame: &[u8]) -> Option<Arp> {
    if frame.len() < 42 || be16(frame, 12) != ETHERTYPE_ARP {
        return None;
    }
    let a = &frame[14..];
    if be16(a, 0) != 1 || be16(a, 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4 {
        return None;
    }
    Some(Arp {
        op: be16(a, 6),
        sender_mac: a[8..14].try_into().ok()?,
        sender_ip: a[14..18].try_into().ok()?,
        target_ip: a[24..28].try_into().ok()?,
    })
}

fn is_arp_reply_from(frame: &[u8], peer: &[u8; 4], ours: &[u8; 4]) -> bool {
    parse_arp(frame).is_some_and(|a| a.op == 2 && a.sender_ip == *peer && a.target_ip == *ours)
}

fn ethernet_header(frame: &mut Vec<u8>, dst: &[u8; 6], src: &[u8; 6], ethertype: u16) {
    frame.extend_from_slice(dst);
    frame.extend_from_slice(src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
}

fn arp_frame(
    op: u16,
    mac: &[u8; 6],
    ip: &[u8; 4],
    eth_dst: &[u8; 6],
    target_mac: &[u8; 6],
    target_ip: &[u8; 4],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_ETHERNET_BYTES);
    ethernet_header(&mut f, eth_dst, mac, ETHERTYPE_ARP);
    f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(mac);
    f.extend_from_slice(ip);
    f.extend_from_slice(target_mac);
    f.extend_from_slice(target_ip);
    f.resize(MIN_ETHERNET_BYTES, 0);
    f
}

/// The Internet checksum (RFC 1071) of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn icmp_echo_frame(
    mac: &[u8; 6],
    peer_mac: &[u8; 6],
    ip: &[u8; 4],
    peer: &[u8; 4],
    sequence: u16,
) -> Vec<u8> {
    let payload = b"percpu-kernel nettest payload 32";
    let mut icmp = Vec::with_capacity(8 + payload.len());
    icmp.extend_from_slice(&[8, 0, 0, 0]);
    icmp.extend_from_slice(&ICMP_ID.to_be_bytes());
    icmp.extend_from_slice(&sequence.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut ip_header = [0u8; 20];
    ip_header[0] = 0x45;
    ip_header[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    ip_header[4..6].copy_from_slice(&sequence.to_be_bytes());
    ip_header[8] = 64; // TTL
    ip_header[9] = 1; // ICMP
    ip_header[12..16].copy_from_slice(ip);
    ip_header[16..20].copy_from_slice(peer);
    let sum = checksum(&ip_header);
    ip_header[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut f = Vec::with_capacity(14 + 20 + icmp.len());
    ethernet_header(&mut f, peer_mac, mac, ETHERTYPE_IPV4);
    f.extend_from_slice(&ip_header);
    f.extend_from_slice(&icmp);
    if f.len() < MIN_ETHERNET_BYTES {
        f.resize(MIN_ETHERNET_BYTES, 0);
    }
    f
}

fn is_echo_reply(frame: &[u8], peer: &[u8; 4], ours: &[u8; 4], sequence: u16) -> bool {
    if frame.len() < 14 + 20 + 8 || be16(frame, 12) != ETHERTYPE_IPV4 {
        return false;
    }
    let ip = &frame[14..];
    let header_len = ((ip[0] & 0xF) as usize) * 4;
    if ip[0] >> 4 != 4 || header_len < 20 || ip.len() < header_len + 8 || ip[9] != 1 {
        return false;
    }
    if ip[12..16] != peer[..] || ip[16..20] != ours[..] {
        return false;
    }
    let icmp = &ip[header_len..];
    icmp[0] == 0 && be16(icmp, 4) == ICMP_ID && be16(icmp, 6) == sequence
}

fn fmt_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

fn fmt_ip(ip: &[u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}
