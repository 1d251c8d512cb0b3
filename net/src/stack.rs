//! The stack: the instances, flow steering between them, the timer entry
//! points (`poll`, `next_poll_ms`) and the NIC entry point (`receive_frame`).
//!
//! Instances `0..loops` are loopback instances (one per CPU in `PerCpu`
//! mode, one in `Global` mode); index `loops` is the NIC instance if an
//! Ethernet device is configured.  A packet that a loopback instance sends is
//! delivered to the instance chosen by `route`: the symmetric flow hash of
//! its TCP 4-tuple, or the home instance of a UDP port.  Same-instance
//! delivery stays under the instance lock; cross-instance delivery goes
//! through the target's inbox (a leaf lock), after which the target is
//! polled by the same thread once the first lock is dropped.
//!
//! Invariants: no thread holds two instance locks; `Platform::notify` and
//! `Platform::transmit_frame` run with no lock of this crate held.
//! Must not: block, or be entered from an interrupt handler.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::Medium;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::device::QueueDevice;
use crate::errno::ENFILE;
use crate::instance::{Core, Instance};
use crate::packet::{flow_hash, parse_ipv4, PROTO_TCP, PROTO_UDP};
use crate::ports::PortTable;
use crate::socket::{Socket, SocketRef};
use crate::{Config, Errno, LockMode, Platform, SockType};

/// Largest frame `receive_frame` accepts (jumbo frames are dropped).
const MAX_FRAME: usize = 9018;
/// Poll rounds per `poll_chain` before the rest is left to the timer.
const CHAIN_ROUNDS: usize = 64;
/// MTU of the loopback instances.
const LOOPBACK_MTU: usize = 16384;

/// Counters for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackStats {
    /// Open `Socket` objects.
    pub open_sockets: usize,
    /// smoltcp sockets in all instances (connections, listening pools,
    /// orphans still closing).
    pub smoltcp_sockets: usize,
    /// Bound ports in the port table.
    pub bound_ports: usize,
    /// Packets delivered to a different instance than the sender's.
    pub cross_instance_packets: u64,
}

pub(crate) struct Shared<P: Platform> {
    pub platform: P,
    pub config: Config,
    /// Loopback instances followed by the NIC instance, if any.
    pub instances: Vec<Instance<P>>,
    pub loops: usize,
    pub ports: spin::Mutex<PortTable>,
    /// Home instance + 1 of each bound UDP port on loopback (0: none).
    pub udp_home: Vec<AtomicU8>,
    pub open_sockets: AtomicUsize,
    pub next_id: AtomicU64,
    pub cross_packets: AtomicU64,
}

/// Work left after an instance's lock was dropped.
#[derive(Default)]
pub(crate) struct After<P: Platform> {
    pub wake: Vec<Arc<P::Waiters>>,
    pub deliver: Vec<(usize, Vec<u8>)>,
    pub frames: Vec<Vec<u8>>,
}

/// The network stack.  Cheap to clone (an `Arc`).
pub struct Stack<P: Platform> {
    pub(crate) shared: Arc<Shared<P>>,
}

impl<P: Platform> Clone for Stack<P> {
    fn clone(&self) -> Self {
        Stack {
            shared: self.shared.clone(),
        }
    }
}

fn new_core<P: Platform>(platform: &P, config: &Config, medium: Medium, now: Instant) -> Core<P> {
    let (mut dev, hw) = match (medium, config.eth) {
        (Medium::Ethernet, Some(eth)) => (
            QueueDevice::new(Medium::Ethernet, 1514),
            HardwareAddress::Ethernet(EthernetAddress(eth.mac)),
        ),
        // 16 KiB: several segments per 64 KiB window, so smoltcp ACKs every
        // second segment at once instead of waiting for the delayed-ACK timer.
        _ => (
            QueueDevice::new(Medium::Ip, LOOPBACK_MTU),
            HardwareAddress::Ip,
        ),
    };
    let mut ic = IfaceConfig::new(hw);
    ic.random_seed = platform.random_u64();
    let mut iface = Interface::new(ic, &mut dev, now);
    match (medium, config.eth) {
        (Medium::Ethernet, Some(eth)) => {
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(eth.addr), eth.prefix_len));
            });
            if let Some(gw) = eth.gateway {
                let _ = iface.routes_mut().add_default_ipv4_route(gw);
            }
        }
        _ => iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::LOCALHOST), 8));
        }),
    }
    Core {
        iface,
        sockets: SocketSet::new(Vec::new()),
        dev,
        watches: Default::default(),
        listeners: Default::default(),
        tcp_buffer_bytes: config.tcp_buffer_bytes.max(1024),
        udp_buffer_bytes: config.udp_buffer_bytes.max(1024),
        max_sockets: config.max_sockets.max(16),
        socket_count: 0,
    }
}

impl<P: Platform> Stack<P> {
    /// Build the stack: loopback instance(s) and, with `config.eth`, the NIC
    /// instance.
    pub fn new(platform: P, config: Config) -> Self {
        let mut config = config;
        config.cpus = config.cpus.clamp(1, 255);
        config.max_backlog = config.max_backlog.max(1);
        let loops = match config.mode {
            LockMode::PerCpu => config.cpus,
            LockMode::Global => 1,
        };
        let now = Instant::from_millis(platform.now_ms() as i64);
        let mut instances = Vec::new();
        for _ in 0..loops {
            instances.push(Instance::new(new_core(&platform, &config, Medium::Ip, now)));
        }
        if config.eth.is_some() {
            instances.push(Instance::new(new_core(
                &platform,
                &config,
                Medium::Ethernet,
                now,
            )));
        }
        let udp_home = (0..65536).map(|_| AtomicU8::new(0)).collect();
        log::info!(
            "net: {} loopback instance(s) ({:?}), nic: {}",
            loops,
            config.mode,
            config.eth.is_some()
        );
        Stack {
            shared: Arc::new(Shared {
                platform,
                config,
                instances,
                loops,
                ports: spin::Mutex::new(PortTable::default()),
                udp_home,
                open_sockets: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                cross_packets: AtomicU64::new(0),
            }),
        }
    }

    /// The platform this stack was built with.
    pub fn platform(&self) -> &P {
        &self.shared.platform
    }

    /// The configuration (after clamping).
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A new socket (not bound, not connected).  `ENFILE` past
    /// `Config::max_sockets`.
    pub fn socket(&self, kind: SockType) -> Result<SocketRef<P>, Errno> {
        let s = &self.shared;
        if s.open_sockets.fetch_add(1, Ordering::AcqRel) >= s.config.max_sockets {
            s.open_sockets.fetch_sub(1, Ordering::AcqRel);
            return Err(ENFILE);
        }
        Ok(Socket::new_ref(s.clone(), kind))
    }

    /// Run timers and deliver queued packets of `cpu`'s instance; on CPU 0
    /// also the NIC instance.  In `Global` mode only CPU 0 polls the single
    /// instance (other CPUs return at once).
    pub fn poll(&self, cpu: usize) {
        let s = &self.shared;
        if cpu < s.loops {
            s.poll_chain(cpu);
        }
        if cpu == 0 && s.instances.len() > s.loops {
            s.poll_chain(s.loops);
        }
    }

    /// When `poll(cpu)` should run next (ms, `Platform::now_ms` clock; 0 =
    /// now), or `None` if nothing is pending.  Atomic loads only.
    pub fn next_poll_ms(&self, cpu: usize) -> Option<u64> {
        let s = &self.shared;
        let mut d = u64::MAX;
        if cpu < s.loops {
            d = s.instances[cpu].next_poll_ms.load(Ordering::Acquire);
        }
        if cpu == 0 && s.instances.len() > s.loops {
            d = d.min(s.instances[s.loops].next_poll_ms.load(Ordering::Acquire));
        }
        (d != u64::MAX).then_some(d)
    }

    /// Hand a received Ethernet frame to the NIC instance and process it.
    /// Dropped silently if no NIC is configured, if it is oversized or if the
    /// NIC inbox is full.  Malformed frames are dropped by smoltcp.
    pub fn receive_frame(&self, frame: &[u8]) {
        let s = &self.shared;
        if s.instances.len() == s.loops || frame.len() > MAX_FRAME {
            return;
        }
        if s.instances[s.loops].push_inbox(frame.to_vec()) {
            s.poll_chain(s.loops);
        }
    }

    /// Counters (takes each instance lock briefly; for tests/diagnostics).
    pub fn stats(&self) -> StackStats {
        let s = &self.shared;
        StackStats {
            open_sockets: s.open_sockets.load(Ordering::Acquire),
            smoltcp_sockets: s.instances.iter().map(|i| i.core.lock().socket_count).sum(),
            bound_ports: s.ports.lock().len(),
            cross_instance_packets: s.cross_packets.load(Ordering::Relaxed),
        }
    }
}

impl<P: Platform> Shared<P> {
    pub fn now(&self) -> (u64, Instant) {
        let ms = self.platform.now_ms();
        (ms, Instant::from_millis(ms as i64))
    }

    /// The loopback instance of the calling CPU.
    pub fn local_instance(&self) -> usize {
        self.platform.current_cpu() % self.loops
    }

    pub fn nic(&self) -> Option<usize> {
        (self.instances.len() > self.loops).then_some(self.loops)
    }

    /// The loopback instance a TCP flow lives in.
    pub fn tcp_instance(&self, a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> usize {
        if self.loops == 1 {
            0
        } else {
            flow_hash(a, b) as usize % self.loops
        }
    }

    /// Where a packet sent by loopback instance `from` goes.
    fn route(&self, from: usize, p: &[u8]) -> Option<usize> {
        if self.loops == 1 {
            return Some(0);
        }
        let info = parse_ipv4(p)?;
        if !info.dst.is_loopback() {
            return None;
        }
        if info.has_ports && info.proto == PROTO_TCP {
            return Some(self.tcp_instance((info.src, info.src_port), (info.dst, info.dst_port)));
        }
        if info.has_ports && info.proto == PROTO_UDP {
            let home = self.udp_home[usize::from(info.dst_port)].load(Ordering::Acquire);
            return Some(if home == 0 {
                from
            } else {
                usize::from(home - 1)
            });
        }
        Some(0)
    }

    /// Lock instance `i`, run `f`, poll the instance (delivering its own
    /// packets to itself), harvest readiness changes; return what must be
    /// done after the lock is dropped.
    pub fn with_instance<R>(&self, i: usize, f: impl FnOnce(&mut Core<P>) -> R) -> (R, After<P>) {
        let (now_ms, now) = self.now();
        let mut after = After {
            wake: Vec::new(),
            deliver: Vec::new(),
            frames: Vec::new(),
        };
        let inst = &self.instances[i];
        let mut guard = inst.core.lock();
        let core = &mut *guard;
        {
            let mut ib = inst.inbox.lock();
            core.dev.rx.extend(ib.drain(..));
        }
        let r = f(core);
        let is_nic = i >= self.loops;
        for _ in 0..CHAIN_ROUNDS {
            core.filter_syn_overflow();
            core.iface.poll(now, &mut core.dev, &mut core.sockets);
            for p in core.dev.tx.drain(..) {
                if is_nic {
                    after.frames.push(p);
                    continue;
                }
                match self.route(i, &p) {
                    Some(t) if t == i => core.dev.rx.push_back(p),
                    Some(t) => after.deliver.push((t, p)),
                    None => {}
                }
            }
            if core.dev.rx.is_empty() {
                break;
            }
        }
        core.harvest(now_ms, &mut after.wake);
        let next = core.next_deadline_ms(now);
        inst.next_poll_ms.store(next, Ordering::Release);
        drop(guard);
        (r, after)
    }

    /// Finish `after` (no lock held): wake waiters, send frames, deliver
    /// packets to other instances and poll them.
    pub fn finish(&self, after: After<P>) {
        for w in &after.wake {
            self.platform.notify(w);
        }
        for f in &after.frames {
            self.platform.transmit_frame(f);
        }
        if after.deliver.is_empty() {
            return;
        }
        let mut targets: Vec<usize> = Vec::new();
        for (t, p) in after.deliver {
            self.cross_packets.fetch_add(1, Ordering::Relaxed);
            if self.instances[t].push_inbox(p) && !targets.contains(&t) {
                targets.push(t);
            }
        }
        for t in targets {
            self.poll_chain(t);
        }
    }

    /// Poll instance `start` and every instance it delivers to, iteratively
    /// (bounded; leftovers are picked up by the timer poll).
    pub fn poll_chain(&self, start: usize) {
        let mut work = alloc::collections::VecDeque::from([start]);
        let mut rounds = 0;
        while let Some(i) = work.pop_front() {
            rounds += 1;
            let ((), after) = self.with_instance(i, |_| ());
            for w in &after.wake {
                self.platform.notify(w);
            }
            for f in &after.frames {
                self.platform.transmit_frame(f);
            }
            for (t, p) in after.deliver {
                self.cross_packets.fetch_add(1, Ordering::Relaxed);
                if self.instances[t].push_inbox(p) && !work.contains(&t) && rounds < CHAIN_ROUNDS {
                    work.push_back(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::TCP_SYN;
    // A platform that does nothing: steering needs none of it.
    use crate::test_support::Quiet;

    fn shared(cpus: usize, mode: LockMode) -> Arc<Shared<Quiet>> {
        Stack::new(Quiet, Config::new(cpus, mode)).shared
    }

    /// An IPv4 packet `src:sp -> dst:dp` of protocol `proto` (with the SYN
    /// flag where a TCP header has its flags).
    fn packet(proto: u8, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> [u8; 40] {
        let mut p = [0u8; 40];
        p[0] = 0x45;
        p[9] = proto;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sp.to_be_bytes());
        p[22..24].copy_from_slice(&dp.to_be_bytes());
        p[33] = TCP_SYN;
        p
    }

    const LO: [u8; 4] = [127, 0, 0, 1];

    /// TCP flows spread over every loopback instance, both directions of a
    /// flow on the same one; one instance takes everything.
    #[test]
    fn tcp_flows_spread_over_instances_symmetrically() {
        let s = shared(4, LockMode::PerCpu);
        let server = (Ipv4Addr::LOCALHOST, 80);
        let mut seen = [0usize; 4];
        for port in 40_000..40_256 {
            let client = (Ipv4Addr::LOCALHOST, port);
            let i = s.tcp_instance(client, server);
            assert_eq!(i, s.tcp_instance(server, client));
            seen[i] += 1;
            // `route` sends both directions of the flow there, from anywhere.
            let out = packet(PROTO_TCP, LO, port, LO, 80);
            let back = packet(PROTO_TCP, LO, 80, LO, port);
            assert_eq!(s.route(3 - i, &out), Some(i));
            assert_eq!(s.route(0, &back), Some(i));
        }
        assert!(seen.iter().all(|&n| n > 16), "{seen:?}");
        let one = shared(4, LockMode::Global);
        assert_eq!(one.loops, 1);
        assert_eq!(one.tcp_instance((Ipv4Addr::LOCALHOST, 1), server), 0);
        assert_eq!(one.route(0, &[0u8; 3]), Some(0));
    }

    /// UDP goes to its port's home instance (or stays where it was sent
    /// when the port has none); other protocols to instance 0; packets not
    /// for 127/8, or not IPv4, nowhere.
    #[test]
    fn route_udp_home_other_protocols_and_garbage() {
        let s = shared(4, LockMode::PerCpu);
        let udp = packet(PROTO_UDP, LO, 5000, LO, 53);
        assert_eq!(s.route(2, &udp), Some(2));
        s.udp_home[53].store(3 + 1, Ordering::Release);
        for from in 0..4 {
            assert_eq!(s.route(from, &udp), Some(3));
        }
        // The home of the destination port, not of the source port.
        s.udp_home[5000].store(1 + 1, Ordering::Release);
        assert_eq!(s.route(0, &udp), Some(3));
        let icmp = packet(1, LO, 0, LO, 0);
        assert_eq!(s.route(2, &icmp), Some(0));
        let out = packet(PROTO_TCP, LO, 1, [10, 0, 2, 2], 80);
        assert_eq!(s.route(1, &out), None);
        assert_eq!(s.route(1, &out[..19]), None);
        let mut v6 = udp;
        v6[0] = 0x60;
        assert_eq!(s.route(1, &v6), None);
        // A UDP packet too short for its ports goes to instance 0, like
        // other protocols.
        assert_eq!(s.route(2, &udp[..23]), Some(0));
    }
}
