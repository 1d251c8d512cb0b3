//! Sockets over a per-core TCP/IP stack: a `no_std` + `alloc` library that the
//! kernel glues in and that `cargo test -p net` exercises on the host with
//! real threads standing in for CPUs.
//!
//! Owns: the socket layer (Linux semantics and errno values), one smoltcp
//! instance per CPU for loopback (or one in the `Global` ablation mode), an
//! optional Ethernet instance for the NIC, flow steering between instances,
//! replicated listeners with per-CPU accept queues, and the port table.
//!
//! Invariants: every socket operation is non-blocking (`EAGAIN` /
//! `EINPROGRESS`); memory is bounded per socket (fixed buffers), per listener
//! (backlog) and per instance (`Config::max_sockets`); malformed input never
//! panics.  `Platform::notify` is only called with no lock of this crate held.
//!
//! Must not: depend on the kernel, block, or be called from an interrupt
//! handler (its locks are spin locks taken with interrupts enabled).  The
//! contract for the kernel glue is in `docs/NET.md`.
#![no_std]
// No `unsafe` anywhere in this crate, and the compiler keeps it so.
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

mod device;
mod instance;
mod packet;
mod ports;
mod socket;
mod stack;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use core::net::{Ipv4Addr, SocketAddrV4};
pub use socket::{Socket, SocketRef};
pub use stack::{Stack, StackStats};

/// A Linux errno value, positive: the ABI's one errno type.
pub use abi::Errno;

/// The errno values as free constants (`errno::EAGAIN`), from the ABI's
/// one table.
pub mod errno {
    pub use abi::errno::*;
}

/// What the kernel provides to the stack.  Implemented by the kernel, and by
/// a `std` shim (threads + Condvar) in the host tests.
pub trait Platform: Send + Sync + 'static {
    /// Per-socket wait queue: the kernel blocks threads on it until
    /// `Socket::poll_events` shows the readiness they wait for.
    type Waiters: Default + Send + Sync;
    /// Monotonic milliseconds (any epoch).
    fn now_ms(&self) -> u64;
    /// The CPU the caller runs on (`0..Config::cpus`; larger values are
    /// reduced modulo `cpus`).
    fn current_cpu(&self) -> usize;
    /// Wake the threads waiting on `waiters`: the readiness of that socket
    /// may have changed.  Called with no lock of this crate held, from
    /// whatever thread ran the socket operation or `Stack::poll`.
    fn notify(&self, waiters: &Self::Waiters);
    /// Send one Ethernet frame on the NIC (only called when `Config::eth` is
    /// set).  Called with no lock of this crate held.
    fn transmit_frame(&self, frame: &[u8]);
    /// Random bits (TCP initial sequence numbers, smoltcp seeds).
    fn random_u64(&self) -> u64;
}

/// Per-CPU instances (the design) or one global instance (the ablation):
/// the one `percpu::LockMode`.  `PerCpu`: one loopback TCP/IP instance per
/// CPU, each behind its own lock; connections steered by a symmetric flow
/// hash.  `Global`: exactly one loopback instance behind one lock, used by
/// every CPU.
pub use percpu::LockMode;

/// The NIC's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthConfig {
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// Stack configuration, fixed at `Stack::new`.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Number of CPUs (instances in `PerCpu` mode); at least 1, at most 255.
    pub cpus: usize,
    pub mode: LockMode,
    /// The NIC, if any.
    pub eth: Option<EthConfig>,
    /// Receive and send buffer of every TCP socket, each (bytes).
    pub tcp_buffer_bytes: usize,
    /// Receive and send payload buffer of every UDP socket, each (bytes).
    pub udp_buffer_bytes: usize,
    /// Open `Socket` objects at most (`ENFILE` beyond); also the cap of
    /// smoltcp sockets per instance (`ENOBUFS` beyond).
    pub max_sockets: usize,
    /// Largest listen backlog (`listen` clamps to it, like `somaxconn`).
    pub max_backlog: usize,
}

impl Config {
    /// Defaults: 64 KiB TCP buffers, 16 KiB UDP buffers, 4096 sockets,
    /// backlog 1024, no NIC.
    pub fn new(cpus: usize, mode: LockMode) -> Self {
        Config {
            cpus,
            mode,
            eth: None,
            tcp_buffer_bytes: 64 * 1024,
            udp_buffer_bytes: 16 * 1024,
            max_sockets: 4096,
            max_backlog: 1024,
        }
    }
}

/// Socket types (Linux `SOCK_STREAM` = 1, `SOCK_DGRAM` = 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockType {
    Stream,
    Dgram,
}

/// Linux constants used by the socket API (values as Linux x86_64).
pub mod consts {
    pub use abi::poll::{
        EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, EPOLLRDHUP, EPOLLRDNORM, EPOLLWRNORM,
    };
    pub use abi::socket::{
        IPPROTO_TCP, SOL_SOCKET, SO_ERROR, SO_KEEPALIVE, SO_LINGER, SO_RCVBUF, SO_REUSEADDR,
        SO_REUSEPORT, SO_SNDBUF, SO_TYPE, TCP_NODELAY,
    };
    // The socket API takes these as C `int`s.
    pub const SOCK_STREAM: i32 = abi::socket::SOCK_STREAM as i32;
    pub const SOCK_DGRAM: i32 = abi::socket::SOCK_DGRAM as i32;
    pub const SHUT_RD: i32 = abi::socket::SHUT_RD as i32;
    pub const SHUT_WR: i32 = abi::socket::SHUT_WR as i32;
    pub const SHUT_RDWR: i32 = abi::socket::SHUT_RDWR as i32;
}
