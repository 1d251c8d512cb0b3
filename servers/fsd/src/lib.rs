//! The user-mode file server of `structure=servers`: the same `fs` crate
//! (VFS, tmpfs, page cache, ext2) the monolithic kernel links in, run
//! behind the `fsproto` protocol, for a kernel that turns applications'
//! file-system calls into IPC calls to it (system-call delegation).
//!
//! Owns: [`FileServer`] (a namespace, the superblocks mounted in it, the
//! block devices it may mount, the handle table), the dispatch of decoded
//! requests to the VFS ([`server`]), the handle table ([`handles`]), the
//! [`Transport`] trait with an in-process channel implementation
//! ([`channel`]), the unpacking of the initramfs into the root
//! ([`initramfs`]) and a protocol client ([`client`]) used by the tests and
//! as the model of the kernel's side.
//!
//! Invariants: a message from a client gets exactly one reply, an errno
//! for anything malformed, forged or failing (never a panic); a handle
//! works only for the client it was given to, until it is closed or that
//! client attaches again.  The server keeps no file offsets and no fd
//! table: those are the kernel's (docs/SERVERS.md says why).
//!
//! Must not: take a lock of its own around VFS operations (the `fs` crate
//! is concurrent; what the server shares is listed at `FileServer`), or
//! trust a handle, cursor, length or path from a message.
#![forbid(unsafe_code)]

pub mod channel;
pub mod client;
pub mod handles;
pub mod handover;
pub mod pathcache;
/// The initramfs unpacker is the `fs` crate's (shared with the kernel).
pub use fs::initramfs;
pub mod server;

pub use server::{Config, FileServer};

use fsproto::Message;

/// Where requests come from and replies go: the kernel's IPC endpoint in
/// the real server, a channel in the tests.  One transport per server
/// thread (per core).
pub trait Transport {
    /// What a reply needs to find its caller (a reply capability).
    type Caller;

    /// Waits for the next request: its caller, the client's identity as
    /// the transport vouches for it (the IPC badge: the kernel, or one
    /// client among several) and the message.  `None` when the transport
    /// is closed and the server thread should stop.
    fn recv(&mut self) -> Option<(Self::Caller, u64, Message)>;

    /// Sends the reply of a request received from `caller`.
    fn reply(&mut self, caller: Self::Caller, reply: Message);
}
