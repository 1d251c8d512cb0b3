//! Sockets in the kernel: the socket framework (`socket.rs`: the `Socket`
//! trait and the blocking/timeout/SIGPIPE rules common to every family),
//! address and message-header translation (`sockaddr.rs`), AF_UNIX
//! (`unix.rs`) and the entry to AF_INET (`inet.rs`, over the `net` crate;
//! `remote.rs`: the user-mode network server's sockets in `structure=servers`).
//!
//! Owns the Linux constants of the socket ABI (families, types, flags,
//! option names) and the socket errno values the shared errno table lacks.
//! Must not: touch user memory outside `sockaddr.rs` and the syscall layer,
//! or block anywhere but in `socket.rs`'s wait helpers.

#![deny(unsafe_code)]

pub mod ifconf;
#[cfg(feature = "monolithic")]
pub mod inet;
/// AF_INET in the servers image (feature `monolithic` off): there is no
/// in-kernel stack, every socket is the network server's.
#[cfg(not(feature = "monolithic"))]
pub mod inet {
    use alloc::sync::Arc;

    use super::Socket;
    use abi::Errno;

    /// A new AF_INET socket: netd's, or `EAFNOSUPPORT` (logged) when no
    /// network server runs (a self-test mode, or before it attached).
    pub fn create(sock_type: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
        if super::remote::active() {
            return super::remote::create(sock_type, protocol);
        }
        log::warn!("net: no network server and no in-kernel stack in this image: EAFNOSUPPORT");
        Err(super::EAFNOSUPPORT)
    }
}
pub mod remote;
pub mod sockaddr;
pub mod socket;
pub mod unix;

pub use socket::Socket;

// Address families, socket types and flags, send/recv flags, shutdown
// modes, option levels and names: the ABI's (Linux numbers).
pub use abi::socket::{
    AF_INET, AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, SHUT_RD, SHUT_RDWR, SHUT_WR,
    SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM, SOCK_TYPE_MASK,
    SOL_SOCKET, SO_ACCEPTCONN, SO_DOMAIN, SO_ERROR, SO_PROTOCOL, SO_RCVBUF, SO_RCVTIMEO, SO_SNDBUF,
    SO_SNDTIMEO, SO_TYPE,
};

// Socket errno values, from the ABI's one table.
pub use abi::errno::{
    EADDRINUSE, EAFNOSUPPORT, EALREADY, ECONNREFUSED, ECONNRESET, EINPROGRESS, EISCONN, EMSGSIZE,
    ENOPROTOOPT, ENOTCONN, ENOTSOCK, EOPNOTSUPP, EPROTONOSUPPORT, EPROTOTYPE, ESOCKTNOSUPPORT,
};
