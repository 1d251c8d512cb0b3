//! The network-service protocol: the messages the kernel (the client,
//! acting for a user thread) and the user-mode network server
//! (`servers/netd`) exchange when the kernel delegates AF_INET socket calls
//! (`structure=servers`).
//!
//! Owns: the operations ([`Op`], [`Request`]), the replies ([`Reply`]),
//! their encoding and checked decoding, the address word, the readiness
//! records of `PollChanged` ([`Changes`]) and the notification bit.  The
//! message shape (a label, four `u64` words, a payload of at most
//! [`MAX_PAYLOAD`] bytes) is the file service's (`fsproto::Message`): both
//! servers ride the same IPC.  docs/SERVERS.md ("Network service")
//! describes the protocol for readers; this file is the definition.
//!
//! Invariants: every operation is non-blocking (`EAGAIN`, `EINPROGRESS`
//! come back as errnos; the kernel blocks); readiness travels back
//! asynchronously (a handle armed with `Poll` is reported once, through
//! the client's notification bit and `PollChanged`).  Every decoder takes
//! any label, words and bytes and returns a well-formed value or an errno
//! (`EINVAL` malformed, `ENOSYS` unknown operation, `EMSGSIZE` a staged
//! datagram over 65507 bytes); none panics.  Unused words must be zero and
//! unknown flag bits are refused.  `decode(encode(x)) == x`.
//!
//! Must not: allocate in decoders (requests and replies borrow the
//! message), use `unsafe`, or know how either side is built.  Unix-domain
//! sockets and `socketpair` are not in this protocol: they stay in the
//! kernel (local IPC, like pipes).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};

use abi::Errno;
pub use fsproto::{Message, MsgRef, LABEL_OK, MAX_ERRNO, MAX_PAYLOAD};

/// Largest `len` of a `Recv`: the server receives up to this much in one
/// socket call (a whole datagram, or a peek of a stream) and holds what
/// does not fit the reply for `RecvMore`.
pub const MAX_RECV: usize = 65536;

/// Largest UDP datagram (IPv4: 65535 - 20 - 8), also the bound of a
/// datagram staged over several `Send` messages.
pub const MAX_DATAGRAM: usize = 65507;

/// Largest socket-option value (`SO_LINGER` is 8 bytes, ints 4).
pub const MAX_OPT: usize = 64;

/// Bytes of one `PollChanged` record: handle (u64), events (u32), zero (u32).
pub const CHANGE_RECORD: usize = 16;

/// Most records one `PollChanged` reply carries.
pub const MAX_CHANGES: usize = MAX_PAYLOAD / CHANGE_RECORD;

/// The notification bit the server raises when a client has changed
/// handles to collect with `PollChanged` (the default; the server is told
/// which bit the kernel wants).
pub const READY_BIT: u64 = 1;

/// Readiness bits (Linux's `EPOLL*`/`POLL*` values) a `Poll` may arm:
/// IN, PRI, OUT, ERR, HUP, RDNORM, RDBAND, WRNORM, WRBAND, RDHUP.
pub const EVENT_BITS: u32 =
    0x001 | 0x002 | 0x004 | 0x008 | 0x010 | 0x040 | 0x080 | 0x100 | 0x200 | 0x2000;

/// `Send` flags (w2).
pub const SEND_DEST: u64 = 1;
pub const SEND_MORE: u64 = 2;
/// Where `Send` carries the bits to arm if it says `EAGAIN` (w2 bits
/// 32..64; see `Request::Send`).
pub const SEND_ARM_SHIFT: u32 = 32;
/// `Recv` flags (w2).
pub const RECV_PEEK: u64 = 1;
/// `Received` reply flags (w2).
pub const FROM_SET: u64 = 1;

/// A socket the server holds for a client.  Opaque to the client; the
/// server checks every one (`EBADF` if closed, never given, stale after
/// `Attach`, or given to another client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u64);

/// Socket types the server makes (Linux's `SOCK_STREAM` = 1 and
/// `SOCK_DGRAM` = 2, without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`: those are
/// the kernel's fd state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stream = 1,
    Dgram = 2,
}

/// The operations, as request labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    Attach = 1,
    Socket = 2,
    Close = 3,
    Bind = 4,
    Listen = 5,
    Accept = 6,
    Connect = 7,
    Send = 8,
    Recv = 9,
    RecvMore = 10,
    Shutdown = 11,
    SockName = 12,
    PeerName = 13,
    SetOpt = 14,
    GetOpt = 15,
    Poll = 16,
    PollChanged = 17,
    NotifyShard = 18,
}

impl Op {
    /// Every operation, in label order.
    pub const ALL: [Op; 18] = [
        Op::Attach,
        Op::Socket,
        Op::Close,
        Op::Bind,
        Op::Listen,
        Op::Accept,
        Op::Connect,
        Op::Send,
        Op::Recv,
        Op::RecvMore,
        Op::Shutdown,
        Op::SockName,
        Op::PeerName,
        Op::SetOpt,
        Op::GetOpt,
        Op::Poll,
        Op::PollChanged,
        Op::NotifyShard,
    ];

    /// The operation a label names; `ENOSYS` for an unknown one.
    pub fn from_label(label: u64) -> Result<Op, Errno> {
        match label {
            1..=18 => Ok(Op::ALL[label as usize - 1]),
            _ => Err(Errno::ENOSYS),
        }
    }
}

/// An IPv4 socket address in one word: the address as a big-endian
/// number in bits 0..32 (`u32::from(ip)`), the port in bits 32..48, the
/// rest zero.
pub fn addr_word(a: SocketAddrV4) -> u64 {
    u32::from(*a.ip()) as u64 | (a.port() as u64) << 32
}

/// The address a word holds; `EINVAL` if bits 48..64 are set.
pub fn word_addr(w: u64) -> Result<SocketAddrV4, Errno> {
    if w >> 48 != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(w as u32),
        (w >> 32) as u16,
    ))
}

/// A request, borrowing the message it was decoded from.  How each maps
/// onto words and payload is written at `Request::encode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Starts a client generation: the server closes every socket this
    /// client held (its handles go stale) and forgets its pending
    /// readiness reports.
    /// w0: the client's notification for readiness reports, as a handle
    /// in the server's own IPC handle table (the kernel puts it there
    /// before attaching); 0 = the transport's own signalling (tests).
    Attach {
        notify: u64,
    },
    /// `socket(AF_INET, kind, protocol)`: a new handle.  `protocol` is
    /// 0 or the kind's (6 TCP, 17 UDP), else `EPROTONOSUPPORT`.
    Socket {
        kind: Kind,
        protocol: u32,
    },
    /// Closes the socket (the last fd of its description went away).
    Close {
        handle: Handle,
    },
    Bind {
        handle: Handle,
        addr: SocketAddrV4,
    },
    Listen {
        handle: Handle,
        backlog: i32,
    },
    /// One connection from the accept queue (`EAGAIN` if none).  `arm`
    /// as for `Recv`.
    Accept {
        handle: Handle,
        arm: u32,
    },
    /// `EINPROGRESS` once the SYN is out; called again after `EPOLLOUT`,
    /// the result (as `net`'s second `connect`).  UDP: sets the peer.
    Connect {
        handle: Handle,
        addr: SocketAddrV4,
    },
    /// `send`/`sendto`.  Stream: `data` is sent (the count may be short),
    /// `more` and `offset` must be zero.  Datagram: with `more` the data is
    /// staged at `offset` (the bytes staged so far; 0 starts again) and
    /// nothing is sent; the message without `more` sends the staged
    /// `offset` bytes followed by `data` as one datagram.  `dest` only on
    /// that last message.  `arm` as for `Recv`.
    Send {
        handle: Handle,
        dest: Option<SocketAddrV4>,
        more: bool,
        offset: u32,
        data: &'a [u8],
        arm: u32,
    },
    /// `recv`/`recvfrom` of at most `len` (≤ `MAX_RECV`) bytes, with
    /// `MSG_PEEK` if `peek`.  What does not fit the reply is held for
    /// `RecvMore`.  With `arm` ≠ 0 (`EPOLL*` bits), a call that says
    /// `EAGAIN` also arms the handle for `arm`, as `Poll { arm }` would
    /// (one call less before the client sleeps); if the socket is ready
    /// by the time the server armed it, the server reports it at once
    /// (`PollChanged`) so the client's wait ends.
    Recv {
        handle: Handle,
        len: u32,
        peek: bool,
        arm: u32,
    },
    /// The held rest of the last `Recv`: bytes from `offset` (counted from
    /// the start of the received data) of the hold named `token`.
    RecvMore {
        handle: Handle,
        token: u64,
        offset: u32,
    },
    /// `SHUT_RD` (0), `SHUT_WR` (1), `SHUT_RDWR` (2).
    Shutdown {
        handle: Handle,
        how: u32,
    },
    SockName {
        handle: Handle,
    },
    PeerName {
        handle: Handle,
    },
    /// `setsockopt` with the option's bytes (≤ `MAX_OPT`).
    SetOpt {
        handle: Handle,
        level: i32,
        name: i32,
        value: &'a [u8],
    },
    /// `getsockopt` with a buffer of `len` (≤ `MAX_OPT`) bytes.
    GetOpt {
        handle: Handle,
        level: i32,
        name: i32,
        len: u32,
    },
    /// The socket's readiness (`EPOLL*` bits).  With `arm` ≠ 0 the handle
    /// is armed first: its next readiness change is reported once
    /// (`PollChanged`, after the notification bit) and disarms it.
    Poll {
        handle: Handle,
        arm: u32,
    },
    /// At most `max` (1..=`MAX_CHANGES`) reports of armed handles whose
    /// readiness met their armed bits, with their current events; of
    /// report shard `shard` only (`Some`), or of every shard.
    PollChanged {
        max: u32,
        shard: Option<u32>,
    },
    /// Reports of shard `shard` (the server thread that armed the handle:
    /// `worker`, one per CPU with per-core placement) raise `notify`
    /// instead of the `Attach` notification, so one collector per CPU
    /// can take them with `PollChanged { shard }`.  `EINVAL` for a shard
    /// the server does not have.
    NotifyShard {
        shard: u32,
        notify: u64,
    },
}

/// A successful reply, borrowing its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Attach, Close, Bind, Listen, Connect, Shutdown, SetOpt.
    Done,
    /// `Socket`: the new handle.
    Handle(Handle),
    /// `Accept`: the connection's handle, its peer and local address.
    Accepted {
        handle: Handle,
        peer: SocketAddrV4,
        local: SocketAddrV4,
    },
    /// `Send`: bytes sent (or staged).
    Sent { count: u64 },
    /// `Recv`: `len` bytes received (0 at end of stream), the first
    /// `min(len, MAX_PAYLOAD)` in `data`; `from` for datagrams; `token`
    /// names the held rest (0 when everything is in `data`).
    Received {
        len: u64,
        from: Option<SocketAddrV4>,
        data: &'a [u8],
        token: u64,
    },
    /// `RecvMore`: the next piece and the bytes left after it.
    More { data: &'a [u8], left: u64 },
    /// `SockName`, `PeerName`.
    Addr(SocketAddrV4),
    /// `GetOpt`: the option's bytes.
    Value(&'a [u8]),
    /// `Poll`: the events.
    Events(u32),
    /// `PollChanged`: the reports, and whether more are waiting (call
    /// again before waiting for the notification bit).
    Changed { changes: Changes<'a>, more: bool },
}

/// The records of a `PollChanged` reply (checked when decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changes<'a> {
    bytes: &'a [u8],
}

impl<'a> Changes<'a> {
    /// Records from bytes: a multiple of `CHANGE_RECORD`, reserved zero.
    pub fn new(bytes: &'a [u8]) -> Result<Changes<'a>, Errno> {
        if bytes.len() % CHANGE_RECORD != 0 || bytes.len() > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        for r in bytes.chunks_exact(CHANGE_RECORD) {
            if r[12..16] != [0; 4] || le_u32(&r[8..12]) & !EVENT_BITS != 0 {
                return Err(Errno::EINVAL);
            }
        }
        Ok(Changes { bytes })
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / CHANGE_RECORD
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// (handle, events) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (Handle, u32)> + 'a {
        self.bytes
            .chunks_exact(CHANGE_RECORD)
            .map(|r| (Handle(le_u64(&r[..8])), le_u32(&r[8..12])))
    }
}

/// Appends one `PollChanged` record.
pub fn put_change(out: &mut Vec<u8>, handle: Handle, events: u32) {
    out.extend_from_slice(&handle.0.to_le_bytes());
    out.extend_from_slice(&(events & EVENT_BITS).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

// ---- helpers ------------------------------------------------------------

use fsproto::wire::{i32_word, msg, no_payload, u32_word, zero};

/// Bits to arm carried in a word: `EVENT_BITS` only, else `EINVAL`.
fn arm_word(w: u64) -> Result<u32, Errno> {
    let arm = u32_word(w)?;
    if arm & !EVENT_BITS != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(arm)
}

impl<'a> Request<'a> {
    pub fn op(&self) -> Op {
        match self {
            Request::Attach { .. } => Op::Attach,
            Request::Socket { .. } => Op::Socket,
            Request::Close { .. } => Op::Close,
            Request::Bind { .. } => Op::Bind,
            Request::Listen { .. } => Op::Listen,
            Request::Accept { .. } => Op::Accept,
            Request::Connect { .. } => Op::Connect,
            Request::Send { .. } => Op::Send,
            Request::Recv { .. } => Op::Recv,
            Request::RecvMore { .. } => Op::RecvMore,
            Request::Shutdown { .. } => Op::Shutdown,
            Request::SockName { .. } => Op::SockName,
            Request::PeerName { .. } => Op::PeerName,
            Request::SetOpt { .. } => Op::SetOpt,
            Request::GetOpt { .. } => Op::GetOpt,
            Request::Poll { .. } => Op::Poll,
            Request::PollChanged { .. } => Op::PollChanged,
            Request::NotifyShard { .. } => Op::NotifyShard,
        }
    }

    /// The message for this request.  Refuses (with the errno the server
    /// would give) what `decode` would refuse.
    pub fn encode(&self) -> Result<Message, Errno> {
        let label = self.op() as u64;
        let none = Vec::new;
        let m = match *self {
            Request::Attach { notify } => msg(label, [notify, 0, 0, 0], none())?,
            // w0 kind, w1 protocol.
            Request::Socket { kind, protocol } => {
                msg(label, [kind as u64, protocol as u64, 0, 0], none())?
            }
            // w0 handle, w1 bits to arm on EAGAIN.
            Request::Accept { handle, arm } => msg(label, [handle.0, arm as u64, 0, 0], none())?,
            // w0 handle.
            Request::Close { handle }
            | Request::SockName { handle }
            | Request::PeerName { handle } => msg(label, [handle.0, 0, 0, 0], none())?,
            // w0 handle, w1 address word.
            Request::Bind { handle, addr } | Request::Connect { handle, addr } => {
                msg(label, [handle.0, addr_word(addr), 0, 0], none())?
            }
            // w0 handle, w1 backlog (i32 bits).
            Request::Listen { handle, backlog } => {
                msg(label, [handle.0, backlog as u32 as u64, 0, 0], none())?
            }
            // w0 handle, w1 destination word, w2 SEND_DEST | SEND_MORE
            // and the bits to arm on EAGAIN << SEND_ARM_SHIFT, w3 staged
            // offset; payload data.
            Request::Send {
                handle,
                dest,
                more,
                offset,
                data,
                arm,
            } => {
                let mut flags = (arm as u64) << SEND_ARM_SHIFT;
                if dest.is_some() {
                    flags |= SEND_DEST;
                }
                if more {
                    flags |= SEND_MORE;
                }
                msg(
                    label,
                    [handle.0, dest.map_or(0, addr_word), flags, offset as u64],
                    data.into(),
                )?
            }
            // w0 handle, w1 length, w2 RECV_PEEK, w3 bits to arm on EAGAIN.
            Request::Recv {
                handle,
                len,
                peek,
                arm,
            } => msg(
                label,
                [handle.0, len as u64, peek as u64, arm as u64],
                none(),
            )?,
            // w0 handle, w1 token, w2 offset.
            Request::RecvMore {
                handle,
                token,
                offset,
            } => msg(label, [handle.0, token, offset as u64, 0], none())?,
            // w0 handle, w1 how.
            Request::Shutdown { handle, how } => msg(label, [handle.0, how as u64, 0, 0], none())?,
            // w0 handle, w1 level, w2 name (i32 bits); payload value.
            Request::SetOpt {
                handle,
                level,
                name,
                value,
            } => msg(
                label,
                [handle.0, level as u32 as u64, name as u32 as u64, 0],
                value.into(),
            )?,
            // w0 handle, w1 level, w2 name, w3 buffer length.
            Request::GetOpt {
                handle,
                level,
                name,
                len,
            } => msg(
                label,
                [
                    handle.0,
                    level as u32 as u64,
                    name as u32 as u64,
                    len as u64,
                ],
                none(),
            )?,
            // w0 handle, w1 armed bits.
            Request::Poll { handle, arm } => msg(label, [handle.0, arm as u64, 0, 0], none())?,
            // w0 max records, w1 shard + 1 (0: every shard).
            Request::PollChanged { max, shard } => msg(
                label,
                [max as u64, shard.map_or(0, |s| s as u64 + 1), 0, 0],
                none(),
            )?,
            // w0 notification, w1 shard.
            Request::NotifyShard { shard, notify } => {
                msg(label, [notify, shard as u64, 0, 0], none())?
            }
        };
        // What the encoder produced must be what the decoder accepts.
        Request::decode(m.view())?;
        Ok(m)
    }

    /// The request a message carries, or why it is malformed.
    pub fn decode(m: MsgRef<'a>) -> Result<Request<'a>, Errno> {
        let op = Op::from_label(m.label)?;
        let [w0, w1, w2, w3] = m.words;
        let p = m.payload;
        if p.len() > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        let h = Handle(w0);
        Ok(match op {
            Op::Attach => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Request::Attach { notify: w0 }
            }
            Op::Socket => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                let kind = match w0 {
                    1 => Kind::Stream,
                    2 => Kind::Dgram,
                    _ => return Err(Errno::EINVAL),
                };
                Request::Socket {
                    kind,
                    protocol: u32_word(w1)?,
                }
            }
            Op::Accept => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                Request::Accept {
                    handle: h,
                    arm: arm_word(w1)?,
                }
            }
            Op::Close | Op::SockName | Op::PeerName => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                match op {
                    Op::Close => Request::Close { handle: h },
                    Op::SockName => Request::SockName { handle: h },
                    _ => Request::PeerName { handle: h },
                }
            }
            Op::Bind | Op::Connect => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                let addr = word_addr(w1)?;
                if op == Op::Bind {
                    Request::Bind { handle: h, addr }
                } else {
                    Request::Connect { handle: h, addr }
                }
            }
            Op::Listen => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                Request::Listen {
                    handle: h,
                    backlog: i32_word(w1)?,
                }
            }
            Op::Send => {
                let arm = arm_word(w2 >> SEND_ARM_SHIFT)?;
                let w2 = w2 & ((1 << SEND_ARM_SHIFT) - 1);
                if w2 & !(SEND_DEST | SEND_MORE) != 0 {
                    return Err(Errno::EINVAL);
                }
                let more = w2 & SEND_MORE != 0;
                let dest = if w2 & SEND_DEST != 0 {
                    Some(word_addr(w1)?)
                } else {
                    zero(&[w1])?;
                    None
                };
                // The destination goes with the datagram's last piece.
                if more && dest.is_some() {
                    return Err(Errno::EINVAL);
                }
                let offset = u32_word(w3)?;
                if (more || offset > 0) && offset as usize + p.len() > MAX_DATAGRAM {
                    return Err(Errno::EMSGSIZE);
                }
                Request::Send {
                    handle: h,
                    dest,
                    more,
                    offset,
                    data: p,
                    arm,
                }
            }
            Op::Recv => {
                no_payload(p)?;
                if w1 > MAX_RECV as u64 || w2 > RECV_PEEK {
                    return Err(Errno::EINVAL);
                }
                Request::Recv {
                    handle: h,
                    len: w1 as u32,
                    peek: w2 == RECV_PEEK,
                    arm: arm_word(w3)?,
                }
            }
            Op::RecvMore => {
                zero(&[w3])?;
                no_payload(p)?;
                if w1 == 0 || w2 > MAX_RECV as u64 {
                    return Err(Errno::EINVAL);
                }
                Request::RecvMore {
                    handle: h,
                    token: w1,
                    offset: w2 as u32,
                }
            }
            Op::Shutdown => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                if w1 > 2 {
                    return Err(Errno::EINVAL);
                }
                Request::Shutdown {
                    handle: h,
                    how: w1 as u32,
                }
            }
            Op::SetOpt => {
                zero(&[w3])?;
                if p.len() > MAX_OPT {
                    return Err(Errno::EINVAL);
                }
                Request::SetOpt {
                    handle: h,
                    level: i32_word(w1)?,
                    name: i32_word(w2)?,
                    value: p,
                }
            }
            Op::GetOpt => {
                no_payload(p)?;
                if w3 > MAX_OPT as u64 {
                    return Err(Errno::EINVAL);
                }
                Request::GetOpt {
                    handle: h,
                    level: i32_word(w1)?,
                    name: i32_word(w2)?,
                    len: w3 as u32,
                }
            }
            Op::Poll => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                let arm = u32_word(w1)?;
                if arm & !EVENT_BITS != 0 {
                    return Err(Errno::EINVAL);
                }
                Request::Poll { handle: h, arm }
            }
            Op::PollChanged => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                if w0 == 0 || w0 > MAX_CHANGES as u64 {
                    return Err(Errno::EINVAL);
                }
                let shard = match w1 {
                    0 => None,
                    s => Some(u32_word(s - 1)?),
                };
                Request::PollChanged {
                    max: w0 as u32,
                    shard,
                }
            }
            Op::NotifyShard => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                Request::NotifyShard {
                    shard: u32_word(w1)?,
                    notify: w0,
                }
            }
        })
    }
}

impl<'a> Reply<'a> {
    /// The reply message of a successful call.  Payloads must fit
    /// `MAX_PAYLOAD` (`EINVAL` otherwise: a server bug).
    pub fn encode(&self) -> Result<Message, Errno> {
        let ok = LABEL_OK;
        let m = match *self {
            Reply::Done => Message::default(),
            // w0 handle.
            Reply::Handle(h) => msg(ok, [h.0, 0, 0, 0], Vec::new())?,
            // w0 handle, w1 peer, w2 local.
            Reply::Accepted {
                handle,
                peer,
                local,
            } => msg(
                ok,
                [handle.0, addr_word(peer), addr_word(local), 0],
                Vec::new(),
            )?,
            // w0 count.
            Reply::Sent { count } => msg(ok, [count, 0, 0, 0], Vec::new())?,
            // w0 length received, w1 sender word, w2 FROM_SET, w3 token;
            // payload the first min(length, MAX_PAYLOAD) bytes.
            Reply::Received {
                len,
                from,
                data,
                token,
            } => msg(
                ok,
                [len, from.map_or(0, addr_word), from.is_some() as u64, token],
                data.into(),
            )?,
            // w0 length, w1 left; payload data.
            Reply::More { data, left } => msg(ok, [data.len() as u64, left, 0, 0], data.into())?,
            // w0 address word.
            Reply::Addr(a) => msg(ok, [addr_word(a), 0, 0, 0], Vec::new())?,
            // w0 length; payload value.
            Reply::Value(v) => msg(ok, [v.len() as u64, 0, 0, 0], v.into())?,
            // w0 events.
            Reply::Events(e) => msg(ok, [e as u64, 0, 0, 0], Vec::new())?,
            // w0 records, w1 more; payload records.
            Reply::Changed { changes, more } => msg(
                ok,
                [changes.len() as u64, more as u64, 0, 0],
                changes.bytes.into(),
            )?,
        };
        Ok(m)
    }

    /// The reply to a request of operation `op`: `Ok(Ok(reply))`,
    /// `Ok(Err(errno))` for an error reply, or `Err` when the message is
    /// not a reply `op` can have (a broken server).
    pub fn decode(op: Op, m: MsgRef<'a>) -> Result<Result<Reply<'a>, Errno>, Errno> {
        let [w0, w1, w2, w3] = m.words;
        let p = m.payload;
        if let Err(errno) = fsproto::wire::reply_status(&m)? {
            return Ok(Err(errno));
        }
        let len_is = |n: u64| {
            if n == p.len() as u64 {
                Ok(())
            } else {
                Err(Errno::EINVAL)
            }
        };
        let r = match op {
            Op::Socket => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Reply::Handle(Handle(w0))
            }
            Op::Accept => {
                zero(&[w3])?;
                no_payload(p)?;
                Reply::Accepted {
                    handle: Handle(w0),
                    peer: word_addr(w1)?,
                    local: word_addr(w2)?,
                }
            }
            Op::Send => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Reply::Sent { count: w0 }
            }
            Op::Recv => {
                if w0 > MAX_RECV as u64 || w2 > FROM_SET {
                    return Err(Errno::EINVAL);
                }
                let from = if w2 == FROM_SET {
                    Some(word_addr(w1)?)
                } else {
                    zero(&[w1])?;
                    None
                };
                // The payload is the head; a token exactly when a rest is held.
                len_is(w0.min(MAX_PAYLOAD as u64))?;
                if (w3 != 0) != (w0 > MAX_PAYLOAD as u64) {
                    return Err(Errno::EINVAL);
                }
                Reply::Received {
                    len: w0,
                    from,
                    data: p,
                    token: w3,
                }
            }
            Op::RecvMore => {
                zero(&[w2, w3])?;
                len_is(w0)?;
                if w1 > MAX_RECV as u64 {
                    return Err(Errno::EINVAL);
                }
                Reply::More { data: p, left: w1 }
            }
            Op::SockName | Op::PeerName => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Reply::Addr(word_addr(w0)?)
            }
            Op::GetOpt => {
                zero(&[w1, w2, w3])?;
                len_is(w0)?;
                if p.len() > MAX_OPT {
                    return Err(Errno::EINVAL);
                }
                Reply::Value(p)
            }
            Op::Poll => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                let e = u32_word(w0)?;
                if e & !EVENT_BITS != 0 {
                    return Err(Errno::EINVAL);
                }
                Reply::Events(e)
            }
            Op::PollChanged => {
                zero(&[w2, w3])?;
                if w1 > 1 || w0.checked_mul(CHANGE_RECORD as u64) != Some(p.len() as u64) {
                    return Err(Errno::EINVAL);
                }
                Reply::Changed {
                    changes: Changes::new(p)?,
                    more: w1 == 1,
                }
            }
            Op::Attach
            | Op::Close
            | Op::Bind
            | Op::Listen
            | Op::Connect
            | Op::Shutdown
            | Op::SetOpt
            | Op::NotifyShard => {
                zero(&m.words)?;
                no_payload(p)?;
                Reply::Done
            }
        };
        Ok(Ok(r))
    }
}

/// The reply message for a server's result.
pub fn reply_message(r: Result<Reply<'_>, Errno>) -> Message {
    match r.and_then(|r| r.encode()) {
        Ok(m) => m,
        Err(e) => Message::error(e),
    }
}
