//! AF_INET sockets: the glue from `socket(2)` to the `net` crate's per-core
//! TCP/IP stack (docs/NET.md is the contract this file follows).
//!
//! Owns: the kernel's `::net::Platform` (time, CPU number, wakeups through
//! `PollWaiters`, frames out to the virtio-net NIC, randomness), the one
//! `::net::Stack` (per-CPU instances, or one instance under `locks=global`),
//! one pinned `net` kernel thread per CPU that runs its instance's timers
//! and drains its own NIC queue pair; and `InetSocket`, the `Socket` the
//! framework (`socket.rs`) blocks on.
//!
//! Invariants: the stack is only called from thread context (never from an
//! interrupt handler: its spin locks are taken with interrupts on).  The NIC
//! interrupt of queue pair `i` (routed to CPU `i`) only sets a flag and
//! wakes CPU `i`'s net thread.  Frames leave through the sending CPU's
//! queue pair.
//!
//! Must not: block (the framework does), touch user memory, or hold a
//! stack lock while calling into the scheduler (the stack never does).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::{AtomicBool, Ordering};

use super::sockaddr::SockAddr;
use super::socket::Received;
use super::*;
use crate::drivers::net::nic;
use crate::files::pollwait::PollWaiters;
use crate::sched::WaitQueue;
use abi::Errno;
use percpu::PerCpu;

/// The kernel side of `::net::Platform`.
pub struct KernelPlatform;

impl ::net::Platform for KernelPlatform {
    type Waiters = PollWaiters;

    fn now_ms(&self) -> u64 {
        crate::arch::time::now_ns() / 1_000_000
    }

    fn current_cpu(&self) -> usize {
        crate::sched::current_cpu()
    }

    fn notify(&self, waiters: &PollWaiters) {
        waiters.notify();
    }

    fn transmit_frame(&self, frame: &[u8]) {
        if let Some(nic) = nic() {
            let queue = crate::sched::current_cpu() % nic.queues().max(1);
            // A full ring drops the frame; TCP retransmits (the contract).
            let _ = nic.transmit(queue, frame);
        }
    }

    fn random_u64(&self) -> u64 {
        let mut bytes = [0u8; 8];
        crate::random::fill_random(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

type Stack = ::net::Stack<KernelPlatform>;
type NetSocket = ::net::SocketRef<KernelPlatform>;

static STACK: spin::Once<Stack> = spin::Once::new();

/// One CPU's bottom-half state: set by the NIC interrupt of that CPU's
/// queue pair (interrupt context), consumed by that CPU's net thread.
struct NetCpu {
    rx_pending: AtomicBool,
    wait: WaitQueue,
}

static NET_CPUS: PerCpu<NetCpu> = percpu::per_cpu!(NetCpu {
    rx_pending: AtomicBool::new(false),
    wait: WaitQueue::new(),
});

/// How long a net thread sleeps at most between timer polls (one tick).
const POLL_PERIOD_NS: u64 = 10_000_000;
/// Each TCP socket holds two 64 KiB buffers.
const SOCKET_BYTES: usize = 2 * 64 * 1024;
/// Socket buffers may take at most this share (1/N) of the memory.
const SOCKET_MEMORY_SHARE: usize = 4;

fn stack() -> Result<&'static Stack, Errno> {
    STACK.get().ok_or(EAFNOSUPPORT)
}

/// Builds the stack and starts the per-CPU net threads.  Called once from
/// `kernel_main` after `drivers::init` (the NIC's MAC is needed).
pub fn init() {
    let cpus = percpu::cpu_count();
    let mode = percpu::lock_mode();
    let mut config = ::net::Config::new(cpus, mode);
    // Bounded memory: socket buffers take at most a quarter of RAM
    // (`ENFILE` beyond, as Linux's file limit would).
    let ram = crate::memory::total_frames() * 4096;
    config.max_sockets = (ram / SOCKET_MEMORY_SHARE / SOCKET_BYTES).clamp(64, 65536);
    if let Some(nic) = nic() {
        let addr = crate::drivers::net_config();
        config.eth = Some(::net::EthConfig {
            mac: nic.mac(),
            addr: Ipv4Addr::from(addr.ip),
            prefix_len: addr.prefix_len,
            gateway: addr.gateway.map(Ipv4Addr::from),
        });
        log::info!(
            "net: eth0 {}.{}.{}.{}/{} on the NIC ({} queue(s))",
            addr.ip[0],
            addr.ip[1],
            addr.ip[2],
            addr.ip[3],
            addr.prefix_len,
            nic.queues()
        );
        nic.set_rx_callback(on_nic_rx);
    }
    STACK.call_once(|| Stack::new(KernelPlatform, config));
    log::info!(
        "net: TCP/IP stack up ({mode:?}, {cpus} CPU(s), loopback 127.0.0.1, at most {} sockets)",
        config.max_sockets
    );
    for cpu in 0..cpus {
        crate::sched::spawn("net", Some(cpu), move || net_thread(cpu));
    }
}

/// NIC interrupt callback for queue pair `queue`, whose interrupt is routed
/// to CPU `queue` (interrupt context: no allocation, no stack locks):
/// remember the work and wake that CPU's net thread.
fn on_nic_rx(queue: usize) {
    if let Some(cpu) = NET_CPUS.try_remote(queue) {
        cpu.rx_pending.store(true, Ordering::Release);
        cpu.wait.wake_one();
    }
}

/// CPU `cpu`'s bottom half: drains its NIC queue pair (pair `cpu`, if the
/// NIC has that many), and runs its instance's timers when they are due
/// (CPU 0 also runs the NIC instance's).
fn net_thread(cpu: usize) -> ! {
    let stack = STACK.get().expect("net thread started before the stack");
    let this = NET_CPUS.remote(cpu);
    let nic_queue = nic().filter(|nic| cpu < nic.queues());
    let mut frames: Vec<Vec<u8>> = Vec::new();
    loop {
        let now_ns = crate::arch::time::now_ns();
        let due_ns = stack
            .next_poll_ms(cpu)
            .map(|ms| ms.saturating_mul(1_000_000))
            .unwrap_or(u64::MAX);
        let deadline = due_ns.min(now_ns + POLL_PERIOD_NS);
        this.wait
            .wait_until_deadline(|| this.rx_pending.load(Ordering::Acquire), Some(deadline));
        this.rx_pending.store(false, Ordering::Release);
        if let Some(nic) = nic_queue {
            // Copy the frames out first: feeding the stack may transmit
            // (ARP replies, ACKs) on this CPU's queue pair.
            nic.receive(cpu, &mut |frame| frames.push(frame.to_vec()));
            for frame in frames.drain(..) {
                stack.receive_frame(&frame);
            }
        }
        let now_ms = crate::arch::time::now_ns() / 1_000_000;
        if cpu == 0 || stack.next_poll_ms(cpu).is_some_and(|t| now_ms >= t) {
            stack.poll(cpu);
        }
    }
}

/// A new AF_INET socket of `sock_type` (SOCK_STREAM, SOCK_DGRAM; the
/// SOCK_NONBLOCK/SOCK_CLOEXEC flags already removed) and `protocol`.
pub fn create(sock_type: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    if super::remote::active() {
        // structure=servers: the network server's socket.
        return super::remote::create(sock_type, protocol);
    }
    const IPPROTO_TCP: u32 = 6;
    const IPPROTO_UDP: u32 = 17;
    let kind = match (sock_type, protocol) {
        (SOCK_STREAM, 0 | IPPROTO_TCP) => ::net::SockType::Stream,
        (SOCK_DGRAM, 0 | IPPROTO_UDP) => ::net::SockType::Dgram,
        (SOCK_STREAM | SOCK_DGRAM, _) => return Err(EPROTONOSUPPORT),
        (SOCK_RAW, _) => {
            log::warn!("net: SOCK_RAW is not supported: EPROTONOSUPPORT");
            return Err(EPROTONOSUPPORT);
        }
        _ => return Err(ESOCKTNOSUPPORT),
    };
    let sock = stack()?.socket(kind)?;
    Ok(Arc::new(InetSocket::new(sock, sock_type)))
}

/// An AF_INET socket of the `net` crate, as the framework sees it.
pub struct InetSocket {
    sock: NetSocket,
    sock_type: u32,
    listening: AtomicBool,
}

impl InetSocket {
    fn new(sock: NetSocket, sock_type: u32) -> Self {
        InetSocket {
            sock,
            sock_type,
            listening: AtomicBool::new(false),
        }
    }
}

/// An AF_INET address from the user, or EAFNOSUPPORT for another family.
fn inet_addr(addr: &SockAddr) -> Result<SocketAddrV4, Errno> {
    match addr {
        SockAddr::Inet { addr, port } => Ok(SocketAddrV4::new(Ipv4Addr::from(*addr), *port)),
        _ => Err(EAFNOSUPPORT),
    }
}

fn sockaddr(addr: SocketAddrV4) -> SockAddr {
    SockAddr::Inet {
        addr: addr.ip().octets(),
        port: addr.port(),
    }
}

impl Socket for InetSocket {
    fn family(&self) -> u32 {
        AF_INET
    }

    fn sock_type(&self) -> u32 {
        self.sock_type
    }

    fn protocol(&self) -> u32 {
        if self.sock_type == SOCK_STREAM {
            6
        } else {
            17
        }
    }

    fn bind(&self, addr: &SockAddr) -> Result<(), Errno> {
        self.sock.bind(inet_addr(addr)?)
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        self.sock.listen(backlog)?;
        self.listening.store(true, Ordering::Release);
        Ok(())
    }

    fn accept(&self) -> Result<(Arc<dyn Socket>, Option<SockAddr>), Errno> {
        let (sock, peer) = self.sock.accept()?;
        let accepted: Arc<dyn Socket> = Arc::new(InetSocket::new(sock, self.sock_type));
        Ok((accepted, Some(sockaddr(peer))))
    }

    fn connect(&self, addr: &SockAddr) -> Result<(), Errno> {
        self.sock.connect(inet_addr(addr)?)
    }

    fn send(&self, data: &[u8], _flags: u32, to: Option<&SockAddr>) -> Result<usize, Errno> {
        let dest = to.map(inet_addr).transpose()?;
        self.sock.send(data, dest)
    }

    fn recv(&self, out: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let (len, from) = self.sock.recv(out, flags & MSG_PEEK != 0)?;
        Ok(Received {
            len,
            full_len: len,
            from: from.map(sockaddr),
        })
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        self.sock.shutdown(how as i32)
    }

    fn local_addr(&self) -> Result<SockAddr, Errno> {
        self.sock.local_addr().map(sockaddr)
    }

    fn peer_addr(&self) -> Result<SockAddr, Errno> {
        self.sock.peer_addr().map(sockaddr)
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        self.sock.setsockopt(level, name, value)
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        let mut out = [0u8; 16];
        let n = self.sock.getsockopt(level, name, &mut out)?;
        Ok(out[..n].to_vec())
    }

    fn take_error(&self) -> Option<Errno> {
        let mut out = [0u8; 4];
        match self.sock.getsockopt(SOL_SOCKET, SO_ERROR, &mut out).ok()? {
            4 => match i32::from_ne_bytes(out) {
                0 => None,
                e => Some(Errno(e)),
            },
            _ => None,
        }
    }

    fn poll(&self) -> u32 {
        // The crate reports Linux's EPOLL* bits, which equal the POLL* bits.
        self.sock.poll_events()
    }

    fn waiters(&self) -> &PollWaiters {
        self.sock.waiters()
    }

    fn bytes_readable(&self) -> usize {
        // FIONREAD answers 0 rather than panic when the heap is short.
        let Ok(mut peek) = crate::memory::kbuf::zeroed(64 * 1024) else {
            return 0;
        };
        self.sock.recv(&mut peek, true).map(|(n, _)| n).unwrap_or(0)
    }

    fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn on_close(&self) {
        self.sock.close();
    }
}
