//! Sockets in the kernel: the socket framework (`socket.rs`: the `Socket`
//! trait and the blocking/timeout/SIGPIPE rules common to every family),
//! address and message-header translation (`sockaddr.rs`), AF_UNIX
//! (`unix.rs`) and the entry to AF_INET (`inet.rs`, over the `net` crate).
//!
//! Owns the Linux constants of the socket ABI (families, types, flags,
//! option names) and the socket errno values the shared errno table lacks.
//! Must not: touch user memory outside `sockaddr.rs` and the syscall layer,
//! or block anywhere but in `socket.rs`'s wait helpers.

#![deny(unsafe_code)]

pub mod ifconf;
pub mod inet;
pub mod sockaddr;
pub mod socket;
pub mod unix;

use crate::syscall::errno::Errno;

pub use socket::Socket;

// The constant tables below are Linux's, complete on purpose (the AF_INET
// glue uses more of them): not every name has a user yet.

// Address families.
#[allow(dead_code)]
pub const AF_UNSPEC: u32 = 0;
pub const AF_UNIX: u32 = 1;
pub const AF_INET: u32 = 2;

// Socket types, and the flags socket()/socketpair()/accept4() take with them.
pub const SOCK_STREAM: u32 = 1;
pub const SOCK_DGRAM: u32 = 2;
pub const SOCK_RAW: u32 = 3;
pub const SOCK_SEQPACKET: u32 = 5;
pub const SOCK_TYPE_MASK: u32 = 0xf;
pub const SOCK_NONBLOCK: u32 = 0o4000;
pub const SOCK_CLOEXEC: u32 = 0o2000000;

// send/recv flags.
#[allow(dead_code)]
pub const MSG_OOB: u32 = 0x1;
pub const MSG_PEEK: u32 = 0x2;
pub const MSG_TRUNC: u32 = 0x20;
pub const MSG_DONTWAIT: u32 = 0x40;
#[allow(dead_code)]
pub const MSG_WAITALL: u32 = 0x100;
pub const MSG_NOSIGNAL: u32 = 0x4000;

// shutdown(2) `how`.
pub const SHUT_RD: u32 = 0;
pub const SHUT_WR: u32 = 1;
pub const SHUT_RDWR: u32 = 2;

// Socket option levels and the SOL_SOCKET names the framework serves.
pub const SOL_SOCKET: i32 = 1;
pub const SO_TYPE: i32 = 3;
pub const SO_ERROR: i32 = 4;
pub const SO_SNDBUF: i32 = 7;
pub const SO_RCVBUF: i32 = 8;
pub const SO_RCVTIMEO: i32 = 20;
pub const SO_SNDTIMEO: i32 = 21;
pub const SO_ACCEPTCONN: i32 = 30;
pub const SO_PROTOCOL: i32 = 38;
pub const SO_DOMAIN: i32 = 39;

// Socket errno values (Linux numbers), beside `syscall::errno`.
pub const ENOTSOCK: Errno = Errno(88);
#[allow(dead_code)]
pub const EDESTADDRREQ: Errno = Errno(89);
pub const EMSGSIZE: Errno = Errno(90);
#[allow(dead_code)]
pub const EPROTOTYPE: Errno = Errno(91);
pub const ENOPROTOOPT: Errno = Errno(92);
pub const EPROTONOSUPPORT: Errno = Errno(93);
pub const ESOCKTNOSUPPORT: Errno = Errno(94);
pub const EOPNOTSUPP: Errno = Errno(95);
pub const EAFNOSUPPORT: Errno = Errno(97);
#[allow(dead_code)]
pub const EADDRINUSE: Errno = Errno(98);
#[allow(dead_code)]
pub const EADDRNOTAVAIL: Errno = Errno(99);
#[allow(dead_code)]
pub const ECONNABORTED: Errno = Errno(103);
pub const ECONNRESET: Errno = Errno(104);
pub const EISCONN: Errno = Errno(106);
pub const ENOTCONN: Errno = Errno(107);
pub const ECONNREFUSED: Errno = Errno(111);
pub const EALREADY: Errno = Errno(114);
pub const EINPROGRESS: Errno = Errno(115);
