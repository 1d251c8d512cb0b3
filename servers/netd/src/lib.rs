//! The user-mode network server of `structure=servers`: the same `net`
//! crate (per-core TCP/IP stack, Linux-semantics AF_INET sockets) the
//! monolithic kernel links in, run behind the `netproto` protocol, for a
//! kernel that turns applications' socket calls into IPC calls to it.
//!
//! Owns: [`NetServer`] (a `net::Stack`, the handle table, per-client
//! readiness state), the user-mode `net::Platform` ([`platform`]: loopback
//! instances per server thread, the NIC frame path as the [`FrameSink`]
//! trait), the handle table ([`handles`]), readiness tracking
//! ([`readiness`]), the [`Transport`] and [`Signal`] traits with an
//! in-process channel implementation ([`channel`]), and a protocol client
//! ([`client`]) that models the kernel's side (splitting, blocking through
//! readiness reports) and that the tests use.
//!
//! Invariants: a message gets exactly one reply, an errno for anything
//! malformed, forged or failing (never a panic); a handle works only for
//! the client it was given to, until it is closed or that client attaches
//! again; no operation blocks a server thread (`EAGAIN`/`EINPROGRESS` go
//! back to the kernel, which blocks its thread and learns of readiness
//! through the client's notification bit).
//!
//! Replacement: the server keeps no state outside its heap, so the netd
//! program can put the whole `NetServer` in a shared-memory arena that a
//! successor instance adopts (`userland::netd_arena`, docs/SERVERS.md
//! "Replacing the network server"); `ServerPlatform::replace_nic` and
//! `Signal::attach` re-bind what names the old process.
//!
//! Must not: block in a request, hold a lock of its own across a `net`
//! call that may notify (see `readiness`), or trust a handle, length,
//! token or address from a message.  Unix-domain sockets are not here
//! (the kernel keeps them).
#![forbid(unsafe_code)]

pub mod channel;
pub mod client;
pub mod handles;
pub mod platform;
pub mod readiness;
pub mod server;

pub use platform::{FrameSink, ServerPlatform};
pub use server::{Config, NetServer};

use netproto::Message;

/// What one `Transport::recv` gives.
pub enum Incoming<C> {
    /// A request: its caller (reply capability), the client's identity as
    /// the transport vouches for it (the IPC badge), the message.
    Request(C, u64, Message),
    /// The wait ended without a request (time to run the stack's timers).
    Timeout,
    /// The transport is closed: the server thread stops.
    Closed,
}

/// Where requests come from and replies go: the kernel's IPC endpoint in
/// the real server, a channel in the tests.  One per server thread (core).
pub trait Transport {
    /// What a reply needs to find its caller.
    type Caller;

    /// Waits for the next request, at most `timeout_ms` milliseconds
    /// (`None`: no limit).
    fn recv(&mut self, timeout_ms: Option<u64>) -> Incoming<Self::Caller>;

    /// Sends the reply of a request received from `caller`.
    fn reply(&mut self, caller: Self::Caller, reply: Message);
}

/// Asynchronous notifications to clients: ORs `bits` into the client's
/// notification word and wakes it (the kernel's notification object; a
/// condition variable in the tests).  Called from any server thread, with
/// no lock of the server's or of `net` held; must not block.
pub trait Signal: Send + Sync {
    fn signal(&self, client: u64, bits: u64);

    /// A report of shard `shard` (a server thread; see `readiness`) is
    /// waiting: the shard's own notification if `NotifyShard` named one,
    /// else the client's (`signal`).
    fn signal_shard(&self, client: u64, _shard: usize, bits: u64) {
        self.signal(client, bits)
    }

    /// `NotifyShard { shard, notify }` from `client`: where that shard's
    /// signals go (a handle in the server's IPC handle table).  `EINVAL`
    /// when this transport has no per-shard signals.
    fn attach_shard(&self, _client: u64, _shard: usize, _notify: u64) -> Result<(), abi::Errno> {
        Err(abi::Errno::EINVAL)
    }

    /// `Attach { notify }` from `client`: where its signals go from now on
    /// (a notification handle in the server's IPC handle table; 0 keeps
    /// the transport's own way).  Called before the generation starts;
    /// forgets the client's per-shard notifications.
    fn attach(&self, _client: u64, _notify: u64) {}
}
