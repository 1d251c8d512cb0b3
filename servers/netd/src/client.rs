//! A protocol client: the calls the kernel will make on behalf of user
//! threads, over any `Call` (the channel transport in tests), with typed
//! results; the splitting of large sends and receives; and `Readiness`,
//! the model of how the kernel blocks on remote sockets (its wait queues
//! woken from the readiness reports the notification bit announces).
//!
//! Owns `Call`, `Client` and `Readiness`.  Invariants: a reply that is not
//! one the operation can have is `EIO` (a broken server never becomes a
//! panic or a wrong value); a stream send is split into `MAX_PAYLOAD`
//! pieces and stops at the first short or failed piece (reporting what
//! went, as a short `send`); a datagram goes whole (staged) or not at all.
//!
//! Must not: keep per-socket state (the kernel keeps it with the fd).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::{Condvar, Mutex};

use abi::Errno;
use netproto::{
    Handle, Kind, Message, Reply, Request, MAX_CHANGES, MAX_DATAGRAM, MAX_OPT, MAX_PAYLOAD,
    MAX_RECV,
};

use crate::channel::ClientEnd;

/// One synchronous call: a request message out, its reply back.
pub trait Call {
    fn call(&self, msg: Message) -> Result<Message, Errno>;
}

impl Call for ClientEnd {
    fn call(&self, msg: Message) -> Result<Message, Errno> {
        ClientEnd::call(self, msg)
    }
}

/// What `recv` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub data: Vec<u8>,
    pub from: Option<SocketAddrV4>,
}

/// A client of the network server.
pub struct Client<C: Call> {
    conn: C,
}

impl<C: Call> Client<C> {
    /// A client over `conn` (no call made).
    pub fn new(conn: C) -> Client<C> {
        Client { conn }
    }

    /// A client that starts a new generation first.
    pub fn attach(conn: C) -> Result<Client<C>, Errno> {
        let c = Client::new(conn);
        c.reattach()?;
        Ok(c)
    }

    /// Starts a new client generation: every handle so far goes stale.
    pub fn reattach(&self) -> Result<(), Errno> {
        self.done(&Request::Attach { notify: 0 })
    }

    pub fn conn(&self) -> &C {
        &self.conn
    }

    /// Sends a raw message (malformed-message tests).
    pub fn raw(&self, msg: Message) -> Result<Message, Errno> {
        self.conn.call(msg)
    }

    fn with<T>(
        &self,
        req: &Request<'_>,
        f: impl FnOnce(Reply<'_>) -> Option<T>,
    ) -> Result<T, Errno> {
        let m = req.encode()?;
        let r = self.conn.call(m)?;
        match Reply::decode(req.op(), r.view()) {
            Ok(Ok(reply)) => f(reply).ok_or(Errno::EIO),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Errno::EIO),
        }
    }

    fn done(&self, req: &Request<'_>) -> Result<(), Errno> {
        self.with(req, |r| matches!(r, Reply::Done).then_some(()))
    }

    pub fn socket(&self, kind: Kind) -> Result<Handle, Errno> {
        self.socket_proto(kind, 0)
    }

    pub fn socket_proto(&self, kind: Kind, protocol: u32) -> Result<Handle, Errno> {
        self.with(&Request::Socket { kind, protocol }, |r| match r {
            Reply::Handle(h) => Some(h),
            _ => None,
        })
    }

    pub fn close(&self, handle: Handle) -> Result<(), Errno> {
        self.done(&Request::Close { handle })
    }

    pub fn bind(&self, handle: Handle, addr: SocketAddrV4) -> Result<(), Errno> {
        self.done(&Request::Bind { handle, addr })
    }

    pub fn listen(&self, handle: Handle, backlog: i32) -> Result<(), Errno> {
        self.done(&Request::Listen { handle, backlog })
    }

    /// (new handle, peer, local).
    pub fn accept(&self, handle: Handle) -> Result<(Handle, SocketAddrV4, SocketAddrV4), Errno> {
        self.with(&Request::Accept { handle, arm: 0 }, |r| match r {
            Reply::Accepted {
                handle,
                peer,
                local,
            } => Some((handle, peer, local)),
            _ => None,
        })
    }

    pub fn connect(&self, handle: Handle, addr: SocketAddrV4) -> Result<(), Errno> {
        self.done(&Request::Connect { handle, addr })
    }

    fn send_piece(
        &self,
        handle: Handle,
        dest: Option<SocketAddrV4>,
        more: bool,
        offset: usize,
        data: &[u8],
    ) -> Result<usize, Errno> {
        let req = Request::Send {
            handle,
            dest,
            more,
            offset: offset as u32,
            data,
            arm: 0,
        };
        self.with(&req, |r| match r {
            // The last piece of a staged datagram sends all of it.
            Reply::Sent { count } if count as usize <= offset + data.len() => Some(count as usize),
            _ => None,
        })
    }

    /// `send` on a stream: split into `MAX_PAYLOAD` pieces; stops at the
    /// first short piece or error after progress (a short count, as
    /// Linux's non-blocking send); an error before any progress is returned.
    pub fn send_stream(&self, handle: Handle, data: &[u8]) -> Result<usize, Errno> {
        if data.len() <= MAX_PAYLOAD {
            return self.send_piece(handle, None, false, 0, data);
        }
        let mut sent = 0;
        for piece in data.chunks(MAX_PAYLOAD) {
            match self.send_piece(handle, None, false, 0, piece) {
                Ok(n) => {
                    sent += n;
                    if n < piece.len() {
                        break;
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// `sendto` of one datagram: larger than a message, it is staged in
    /// pieces and sent by the last one.  `EMSGSIZE` over `MAX_DATAGRAM`.
    pub fn send_dgram(
        &self,
        handle: Handle,
        data: &[u8],
        dest: Option<SocketAddrV4>,
    ) -> Result<usize, Errno> {
        if data.len() > MAX_DATAGRAM {
            return Err(Errno::EMSGSIZE);
        }
        if data.len() <= MAX_PAYLOAD {
            return self.send_piece(handle, dest, false, 0, data);
        }
        let last = (data.len() - 1) / MAX_PAYLOAD * MAX_PAYLOAD;
        for off in (0..last).step_by(MAX_PAYLOAD) {
            self.send_piece(handle, None, true, off, &data[off..off + MAX_PAYLOAD])?;
        }
        self.send_piece(handle, dest, false, last, &data[last..])
    }

    /// `send`/`sendto` by the socket's kind.
    pub fn send(
        &self,
        kind: Kind,
        handle: Handle,
        data: &[u8],
        dest: Option<SocketAddrV4>,
    ) -> Result<usize, Errno> {
        match (kind, dest) {
            (Kind::Stream, None) => self.send_stream(handle, data),
            (Kind::Stream, Some(_)) => {
                // TCP ignores the destination (as `net` does); one piece
                // per message still.
                let n = data.len().min(MAX_PAYLOAD);
                self.send_piece(handle, dest, false, 0, &data[..n])
            }
            (Kind::Dgram, _) => self.send_dgram(handle, data, dest),
        }
    }

    /// `recv`/`recvfrom` into a buffer of `len` bytes (at most `MAX_RECV`
    /// are asked for in one call; a stream may return fewer, as Linux).
    pub fn recv(&self, handle: Handle, len: usize, peek: bool) -> Result<Received, Errno> {
        let req = Request::Recv {
            handle,
            len: len.min(MAX_RECV) as u32,
            peek,
            arm: 0,
        };
        let (total, from, mut data, token) = self.with(&req, |r| match r {
            Reply::Received {
                len,
                from,
                data,
                token,
            } => Some((len as usize, from, data.to_vec(), token)),
            _ => None,
        })?;
        while data.len() < total {
            let req = Request::RecvMore {
                handle,
                token,
                offset: data.len() as u32,
            };
            let left = self.with(&req, |r| match r {
                Reply::More { data: d, left } => {
                    data.extend_from_slice(d);
                    Some(left)
                }
                _ => None,
            })?;
            if left as usize != total.saturating_sub(data.len()) {
                return Err(Errno::EIO);
            }
        }
        Ok(Received { data, from })
    }

    pub fn shutdown(&self, handle: Handle, how: u32) -> Result<(), Errno> {
        self.done(&Request::Shutdown { handle, how })
    }

    pub fn sock_name(&self, handle: Handle) -> Result<SocketAddrV4, Errno> {
        self.with(&Request::SockName { handle }, |r| match r {
            Reply::Addr(a) => Some(a),
            _ => None,
        })
    }

    pub fn peer_name(&self, handle: Handle) -> Result<SocketAddrV4, Errno> {
        self.with(&Request::PeerName { handle }, |r| match r {
            Reply::Addr(a) => Some(a),
            _ => None,
        })
    }

    pub fn setsockopt(
        &self,
        handle: Handle,
        level: i32,
        name: i32,
        value: &[u8],
    ) -> Result<(), Errno> {
        if value.len() > MAX_OPT {
            return Err(Errno::EINVAL);
        }
        self.done(&Request::SetOpt {
            handle,
            level,
            name,
            value,
        })
    }

    pub fn getsockopt(
        &self,
        handle: Handle,
        level: i32,
        name: i32,
        len: usize,
    ) -> Result<Vec<u8>, Errno> {
        let req = Request::GetOpt {
            handle,
            level,
            name,
            len: len.min(MAX_OPT) as u32,
        };
        self.with(&req, |r| match r {
            Reply::Value(v) => Some(v.to_vec()),
            _ => None,
        })
    }

    /// The socket's events; with `arm` ≠ 0 also arms a report.
    pub fn poll(&self, handle: Handle, arm: u32) -> Result<u32, Errno> {
        self.with(&Request::Poll { handle, arm }, |r| match r {
            Reply::Events(e) => Some(e),
            _ => None,
        })
    }

    /// One `PollChanged`: reports and whether more wait.
    pub fn poll_changed(&self, max: usize) -> Result<(Vec<(Handle, u32)>, bool), Errno> {
        let req = Request::PollChanged {
            max: max.clamp(1, MAX_CHANGES) as u32,
            shard: None,
        };
        self.with(&req, |r| match r {
            Reply::Changed { changes, more } => Some((changes.iter().collect(), more)),
            _ => None,
        })
    }

    /// Every waiting report (calls `PollChanged` until none is left).
    pub fn collect(&self) -> Result<Vec<(Handle, u32)>, Errno> {
        let mut all = Vec::new();
        loop {
            let (got, more) = self.poll_changed(MAX_CHANGES)?;
            all.extend(got);
            if !more {
                return Ok(all);
            }
        }
    }
}

/// The kernel side of readiness, modelled: per remote socket a generation
/// counter and the last reported events, and a condition variable standing
/// in for the sockets' wait queues.  A notification handler (a kernel
/// thread, a thread in the tests) calls `Client::collect` when the bit
/// arrives and hands the reports to `deliver`.
#[derive(Default)]
pub struct Readiness {
    state: Mutex<HashMap<Handle, (u64, u32)>>,
    cv: Condvar,
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Handle, (u64, u32)>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The socket's generation (read before trying an operation).
    pub fn generation(&self, h: Handle) -> u64 {
        self.lock().get(&h).map_or(0, |s| s.0)
    }

    /// Wakes the waiters of every reported socket.
    pub fn deliver(&self, reports: &[(Handle, u32)]) {
        let mut st = self.lock();
        for &(h, ev) in reports {
            let e = st.entry(h).or_insert((0, 0));
            e.0 += 1;
            e.1 = ev;
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Sleeps until the socket's generation differs from `seen`.
    pub fn wait_change(&self, h: Handle, seen: u64) {
        let mut st = self.lock();
        while st.get(&h).map_or(0, |s| s.0) == seen {
            st = self.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A blocking call as the kernel makes it: read the generation, try
    /// `op`; on `EAGAIN` arm `wanted` (which returns the events: ready
    /// means try again at once) and sleep until a report for `h` arrives.
    pub fn block_on<C: Call, T>(
        &self,
        client: &Client<C>,
        h: Handle,
        wanted: u32,
        mut op: impl FnMut() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        loop {
            let seen = self.generation(h);
            match op() {
                Err(Errno::EAGAIN) => {}
                r => return r,
            }
            if client.poll(h, wanted)? & wanted == 0 {
                self.wait_change(h, seen);
            }
        }
    }
}
