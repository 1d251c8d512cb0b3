//! A socket: the user-visible object (what an fd points to) with Linux
//! semantics, on top of smoltcp sockets living in one or more instances.
//!
//! Locking: `Socket::state` is the per-socket lock, the outermost lock of the
//! crate (order: socket state → instance core → instance inbox; the port
//! table lock is taken only under the socket lock, never with an instance
//! lock).  Every operation does its work under these locks, then drops them
//! and only then wakes waiters / sends frames / polls other instances
//! (`Shared::finish`).
//!
//! Invariants: every operation is non-blocking; the smoltcp handles held in
//! `Conn` are valid while the socket lock is held (only `close` removes them,
//! under that lock); a closed socket answers `EBADF`.
//! Must not: block, sleep, or call `Platform::notify` under a lock.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::Ordering;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::consts::*;
use crate::errno::*;
use crate::instance::{
    tcp_events, udp_events, ListenShared, ListenSlot, Watch, HANDSHAKE_TIMEOUT, KEEPALIVE,
};
use crate::ports::Proto;
use crate::stack::{After, Shared};
use crate::{Errno, LockMode, Platform, SockType};

/// A reference to an open socket (what the kernel stores in an fd).
pub type SocketRef<P> = Arc<Socket<P>>;

#[derive(Clone, Copy, Debug, Default)]
struct Opts {
    reuse_addr: bool,
    reuse_port: bool,
    keepalive: bool,
    nodelay: bool,
    rcvbuf: Option<i32>,
    sndbuf: Option<i32>,
    /// SO_LINGER: `Some(secs)` when on.
    linger: Option<i32>,
}

enum Conn<P: Platform> {
    None,
    Tcp {
        inst: usize,
        handle: SocketHandle,
        peer: SocketAddrV4,
        /// A connect() call has already reported the completed connection.
        reported: bool,
    },
    Listen {
        port: u16,
        insts: Vec<usize>,
        shared: Arc<ListenShared<P>>,
    },
    Udp {
        /// (instance, handle): the loopback home instance and/or the NIC.
        parts: Vec<(usize, SocketHandle)>,
        peer: Option<SocketAddrV4>,
    },
}

struct State<P: Platform> {
    /// Local address once bound (explicitly or implicitly).
    local: Option<SocketAddrV4>,
    /// This socket holds `local`'s port in the port table.
    owns_port: bool,
    conn: Conn<P>,
    shut_rd: bool,
    shut_wr: bool,
    opts: Opts,
    closed: bool,
}

/// A socket.  Created by `Stack::socket` or `Socket::accept`; closed by
/// `close` or when the last `SocketRef` is dropped.
pub struct Socket<P: Platform> {
    shared: Arc<Shared<P>>,
    id: u64,
    kind: SockType,
    waiters: Arc<P::Waiters>,
    state: spin::Mutex<State<P>>,
}

type Afters<P> = Vec<After<P>>;

fn v4(ep: IpEndpoint) -> SocketAddrV4 {
    let IpAddress::Ipv4(a) = ep.addr;
    SocketAddrV4::new(a, ep.port)
}

fn int_opt(val: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = val.get(..4).ok_or(EINVAL)?.try_into().map_err(|_| EINVAL)?;
    Ok(i32::from_ne_bytes(b))
}

fn put_int(out: &mut [u8], v: i32) -> Result<usize, Errno> {
    let dst = out.get_mut(..4).ok_or(EINVAL)?;
    dst.copy_from_slice(&v.to_ne_bytes());
    Ok(4)
}

impl<P: Platform> Socket<P> {
    pub(crate) fn new_ref(shared: Arc<Shared<P>>, kind: SockType) -> SocketRef<P> {
        Self::with_state(
            shared,
            kind,
            Arc::new(P::Waiters::default()),
            None,
            Conn::None,
        )
    }

    fn with_state(
        shared: Arc<Shared<P>>,
        kind: SockType,
        waiters: Arc<P::Waiters>,
        local: Option<SocketAddrV4>,
        conn: Conn<P>,
    ) -> SocketRef<P> {
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        Self::with_id(shared, id, kind, waiters, local, conn)
    }

    fn with_id(
        shared: Arc<Shared<P>>,
        id: u64,
        kind: SockType,
        waiters: Arc<P::Waiters>,
        local: Option<SocketAddrV4>,
        conn: Conn<P>,
    ) -> SocketRef<P> {
        Arc::new(Socket {
            shared,
            id,
            kind,
            waiters,
            state: spin::Mutex::new(State {
                local,
                owns_port: false,
                conn,
                shut_rd: false,
                shut_wr: false,
                opts: Opts::default(),
                closed: false,
            }),
        })
    }

    /// Run `f` under the socket lock; finish the collected work after it.
    fn run<R>(
        &self,
        f: impl FnOnce(&Self, &mut State<P>, &mut Afters<P>) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        let mut afters = Vec::new();
        let mut st = self.state.lock();
        let r = if st.closed {
            Err(EBADF)
        } else {
            f(self, &mut st, &mut afters)
        };
        drop(st);
        for a in afters {
            self.shared.finish(a);
        }
        r
    }

    /// Run `f` on instance `i` under its lock (then poll it); queue the rest.
    fn on<R>(
        &self,
        i: usize,
        afters: &mut Afters<P>,
        f: impl FnOnce(&mut crate::instance::Core<P>) -> R,
    ) -> R {
        let (r, after) = self.shared.with_instance(i, f);
        afters.push(after);
        r
    }

    /// SOCK_STREAM or SOCK_DGRAM.
    pub fn kind(&self) -> SockType {
        self.kind
    }

    /// The per-socket wait queue the kernel blocks on.
    pub fn waiters(&self) -> &P::Waiters {
        &self.waiters
    }

    fn proto(&self) -> Proto {
        match self.kind {
            SockType::Stream => Proto::Tcp,
            SockType::Dgram => Proto::Udp,
        }
    }

    fn check_local_ip(&self, ip: Ipv4Addr) -> Result<(), Errno> {
        let eth = self.shared.config.eth.map(|e| e.addr);
        if ip.is_unspecified() || ip == Ipv4Addr::LOCALHOST || Some(ip) == eth {
            Ok(())
        } else {
            Err(EADDRNOTAVAIL)
        }
    }

    /// Take a port in the table for `addr` (port 0: ephemeral).
    fn take_port(
        &self,
        st: &mut State<P>,
        addr: SocketAddrV4,
        wanted: impl Fn(u16) -> bool,
    ) -> Result<SocketAddrV4, Errno> {
        let mut ports = self.shared.ports.lock();
        let port = if addr.port() == 0 {
            ports.bind_ephemeral(self.proto(), *addr.ip(), self.id, wanted)?
        } else {
            ports.bind(
                self.proto(),
                addr.port(),
                *addr.ip(),
                self.id,
                st.opts.reuse_addr,
                st.opts.reuse_port,
            )?;
            addr.port()
        };
        drop(ports);
        let local = SocketAddrV4::new(*addr.ip(), port);
        st.local = Some(local);
        st.owns_port = true;
        Ok(local)
    }

    /// Instances a socket bound to `ip` lives in / listens on.
    fn instances_for(&self, ip: Ipv4Addr, all_loops: bool) -> Vec<usize> {
        let s = &self.shared;
        let mut v = Vec::new();
        if ip.is_unspecified() || ip.is_loopback() {
            if all_loops {
                v.extend(0..s.loops);
            } else {
                v.push(s.local_instance());
            }
        }
        if let Some(n) = s.nic() {
            if !ip.is_loopback() {
                v.push(n);
            }
        }
        v
    }

    /// Create the smoltcp UDP sockets of a bound UDP socket.
    fn udp_open(&self, st: &mut State<P>, afters: &mut Afters<P>) -> Result<(), Errno> {
        let local = st.local.ok_or(EINVAL)?;
        let mut parts = Vec::new();
        for i in self.instances_for(*local.ip(), false) {
            let ep = IpListenEndpoint {
                addr: (!local.ip().is_unspecified()).then_some(IpAddress::Ipv4(*local.ip())),
                port: local.port(),
            };
            let (id, waiters) = (self.id, self.waiters.clone());
            let h = self.on(i, afters, |core| {
                let mut s = core.new_udp()?;
                s.bind(ep).ok()?;
                let h = core.add_socket(s)?;
                core.watches
                    .insert(h, Watch::new(id, waiters, false, tcp::State::Closed));
                Some(h)
            });
            match h {
                Some(h) => parts.push((i, h)),
                None => {
                    for (i, h) in parts {
                        self.on(i, afters, |core| {
                            core.watches.remove(&h);
                            core.remove_socket(h);
                        });
                    }
                    return Err(ENOBUFS);
                }
            }
            if i < self.shared.loops {
                self.shared.udp_home[usize::from(local.port())]
                    .store(i as u8 + 1, Ordering::Release);
            }
        }
        st.conn = Conn::Udp { parts, peer: None };
        Ok(())
    }

    /// bind(2).
    pub fn bind(&self, addr: SocketAddrV4) -> Result<(), Errno> {
        self.run(|me, st, afters| {
            if st.local.is_some() || !matches!(st.conn, Conn::None) {
                return Err(EINVAL);
            }
            me.check_local_ip(*addr.ip())?;
            me.take_port(st, addr, |_| true)?;
            if me.kind == SockType::Dgram {
                if let Err(e) = me.udp_open(st, afters) {
                    me.release_port(st);
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    fn release_port(&self, st: &mut State<P>) {
        if let (true, Some(local)) = (st.owns_port, st.local) {
            self.shared
                .ports
                .lock()
                .release(self.proto(), local.port(), self.id);
            st.owns_port = false;
        }
    }

    /// listen(2).  An unbound socket is bound to an ephemeral port first.
    pub fn listen(&self, backlog: i32) -> Result<(), Errno> {
        if self.kind != SockType::Stream {
            return Err(EOPNOTSUPP);
        }
        let max = self.shared.config.max_backlog;
        let backlog = (backlog.max(1) as usize).min(max);
        self.run(|me, st, afters| {
            match &st.conn {
                Conn::Listen { shared, .. } => {
                    shared.backlog.store(backlog, Ordering::Release);
                    return Ok(());
                }
                Conn::None => {}
                _ => return Err(EINVAL),
            }
            let local = match st.local {
                Some(l) => l,
                None => me.take_port(st, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), |_| true)?,
            };
            me.shared.ports.lock().set_listening(local.port(), me.id)?;
            let shared = Arc::new(ListenShared {
                waiters: me.waiters.clone(),
                queued: Default::default(),
                backlog: backlog.into(),
            });
            let endpoint = IpListenEndpoint {
                addr: (!local.ip().is_unspecified()).then_some(IpAddress::Ipv4(*local.ip())),
                port: local.port(),
            };
            let insts = me.instances_for(*local.ip(), true);
            let mut done: Vec<usize> = Vec::new();
            for &i in &insts {
                let (id, sh, nodelay) = (me.id, shared.clone(), st.opts.nodelay);
                let ok = me.on(i, afters, |core| {
                    if core.listeners.contains_key(&local.port()) {
                        return false;
                    }
                    core.listeners.insert(
                        local.port(),
                        ListenSlot {
                            owner: id,
                            endpoint,
                            pool: Vec::new(),
                            queue: Default::default(),
                            shared: sh,
                            nodelay,
                        },
                    );
                    core.refill_pool(local.port());
                    true
                });
                if !ok {
                    for &j in &done {
                        me.on(j, afters, |core| core.remove_listener(local.port(), id));
                    }
                    return Err(EADDRINUSE);
                }
                done.push(i);
            }
            st.conn = Conn::Listen {
                port: local.port(),
                insts,
                shared,
            };
            Ok(())
        })
    }

    /// accept(2), non-blocking: the calling CPU's accept queue first, then
    /// the other instances' (stealing).  `EAGAIN` if all are empty.
    pub fn accept(&self) -> Result<(SocketRef<P>, SocketAddrV4), Errno> {
        self.run(|me, st, afters| {
            let Conn::Listen {
                port,
                insts,
                shared,
            } = &st.conn
            else {
                return Err(EINVAL);
            };
            if shared.queued.load(Ordering::Acquire) == 0 {
                return Err(EAGAIN);
            }
            let s = &me.shared;
            if s.open_sockets.load(Ordering::Acquire) >= s.config.max_sockets {
                return Err(EMFILE);
            }
            let port = *port;
            let cur = s.local_instance();
            let start = insts.iter().position(|&i| i == cur).unwrap_or(0);
            for k in 0..insts.len() {
                let i = insts[(start + k) % insts.len()];
                let id = s.next_id.fetch_add(1, Ordering::Relaxed);
                let waiters = Arc::new(P::Waiters::default());
                let w2 = waiters.clone();
                let got = me.on(i, afters, |core| {
                    let slot = core.listeners.get_mut(&port)?;
                    let h = slot.queue.pop_front()?;
                    slot.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    core.refill_pool(port);
                    core.sockets.get_mut::<tcp::Socket>(h).set_timeout(None);
                    let sock = core.sockets.get::<tcp::Socket>(h);
                    let (l, r) = (sock.local_endpoint()?, sock.remote_endpoint()?);
                    let mut w = Watch::new(id, w2, true, sock.state());
                    w.last_events = tcp_events(sock, 0);
                    core.watches.insert(h, w);
                    Some((h, v4(l), v4(r)))
                });
                if let Some((h, local, peer)) = got {
                    s.open_sockets.fetch_add(1, Ordering::AcqRel);
                    let conn = Conn::Tcp {
                        inst: i,
                        handle: h,
                        peer,
                        reported: true,
                    };
                    let new = Socket::with_id(
                        s.clone(),
                        id,
                        SockType::Stream,
                        waiters,
                        Some(local),
                        conn,
                    );
                    new.state.lock().opts.nodelay = st.opts.nodelay;
                    return Ok((new, peer));
                }
            }
            Err(EAGAIN)
        })
    }

    /// connect(2), non-blocking.  TCP: `EINPROGRESS` once the SYN is out
    /// (even if loopback completes it at once, as Linux); the kernel then
    /// waits for EPOLLOUT|EPOLLERR|EPOLLHUP and reads SO_ERROR.  Called again:
    /// `EALREADY` while connecting, `Ok` once after success, then `EISCONN`;
    /// a pending error (ECONNREFUSED...) is returned and cleared.
    /// UDP: sets the default peer (binding an ephemeral port if needed).
    pub fn connect(&self, addr: SocketAddrV4) -> Result<(), Errno> {
        self.run(|me, st, afters| match me.kind {
            SockType::Dgram => {
                if st.local.is_none() {
                    me.take_port(st, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), |_| true)?;
                    me.udp_open(st, afters)?;
                }
                let dst = if addr.ip().is_unspecified() {
                    SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port())
                } else {
                    addr
                };
                if let Conn::Udp { peer, .. } = &mut st.conn {
                    *peer = Some(dst);
                }
                Ok(())
            }
            SockType::Stream => me.tcp_connect(st, afters, addr),
        })
    }

    fn tcp_connect(
        &self,
        st: &mut State<P>,
        afters: &mut Afters<P>,
        addr: SocketAddrV4,
    ) -> Result<(), Errno> {
        match &mut st.conn {
            Conn::Listen { .. } => return Err(EINVAL),
            Conn::Tcp {
                inst,
                handle,
                reported,
                ..
            } => {
                let (i, h) = (*inst, *handle);
                let (err, state) = self.on(i, afters, |core| {
                    let w = core.watches.get_mut(&h).expect("live socket has a watch");
                    let e = core::mem::take(&mut w.error);
                    (e, core.sockets.get::<tcp::Socket>(h).state())
                });
                if err != 0 {
                    return Err(Errno(err));
                }
                return match state {
                    tcp::State::SynSent | tcp::State::SynReceived => Err(EALREADY),
                    _ if !*reported => {
                        *reported = true;
                        Ok(())
                    }
                    _ => Err(EISCONN),
                };
            }
            Conn::Udp { .. } => return Err(EINVAL),
            Conn::None => {}
        }
        let s = &self.shared;
        let dst_ip = if addr.ip().is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            *addr.ip()
        };
        let is_loop = dst_ip.is_loopback();
        if !is_loop && (s.nic().is_none() || Some(dst_ip) == s.config.eth.map(|e| e.addr)) {
            return Err(ENETUNREACH);
        }
        let local_ip = match st.local {
            Some(l) if !l.ip().is_unspecified() => {
                if l.ip().is_loopback() != is_loop {
                    return Err(ENETUNREACH);
                }
                *l.ip()
            }
            _ if is_loop => Ipv4Addr::LOCALHOST,
            _ => s.config.eth.map(|e| e.addr).ok_or(ENETUNREACH)?,
        };
        let remote = (dst_ip, addr.port());
        let local_port = match st.local {
            Some(l) => l.port(),
            None => {
                // Affinity: pick a port whose flow hashes to this CPU's
                // instance, so the whole connection stays on this CPU.
                let cur = s.local_instance();
                let steer = is_loop && s.config.mode == LockMode::PerCpu && s.loops > 1;
                let shared = s.clone();
                let l =
                    self.take_port(st, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), move |p| {
                        !steer || shared.tcp_instance((local_ip, p), remote) == cur
                    })?;
                l.port()
            }
        };
        if addr.port() == 0 {
            return Err(ECONNREFUSED);
        }
        let inst = if is_loop {
            s.tcp_instance((local_ip, local_port), remote)
        } else {
            s.nic().ok_or(ENETUNREACH)?
        };
        let (id, waiters, opts) = (self.id, self.waiters.clone(), st.opts);
        let (now_ms, _) = s.now();
        let h = self.on(inst, afters, |core| {
            let mut sock = core.new_tcp().ok_or(ENOMEM)?;
            sock.set_nagle_enabled(!opts.nodelay);
            if opts.keepalive {
                sock.set_keep_alive(Some(KEEPALIVE));
            }
            sock.set_timeout(Some(HANDSHAKE_TIMEOUT));
            sock.connect(core.iface.context(), remote, (local_ip, local_port))
                .map_err(|_| EINVAL)?;
            let h = core.add_socket(sock).ok_or(ENOBUFS)?;
            let mut w = Watch::new(id, waiters, true, tcp::State::SynSent);
            w.connect_deadline_ms = Some(now_ms + HANDSHAKE_TIMEOUT.total_millis());
            core.watches.insert(h, w);
            Ok::<_, Errno>(h)
        })?;
        st.local = Some(SocketAddrV4::new(local_ip, local_port));
        st.conn = Conn::Tcp {
            inst,
            handle: h,
            peer: SocketAddrV4::new(dst_ip, addr.port()),
            reported: false,
        };
        Err(EINPROGRESS)
    }

    /// send/sendto.  TCP ignores `dest`.  UDP: `dest` or the connected
    /// peer (`EDESTADDRREQ` if neither); binds an ephemeral port first.
    pub fn send(&self, data: &[u8], dest: Option<SocketAddrV4>) -> Result<usize, Errno> {
        self.run(|me, st, afters| match me.kind {
            SockType::Stream => {
                if st.shut_wr {
                    return Err(EPIPE);
                }
                let Conn::Tcp { inst, handle, .. } = st.conn else {
                    return Err(EPIPE);
                };
                me.on(inst, afters, |core| {
                    let w = core
                        .watches
                        .get_mut(&handle)
                        .expect("live socket has a watch");
                    if w.error != 0 {
                        return Err(Errno(core::mem::take(&mut w.error)));
                    }
                    let s = core.sockets.get_mut::<tcp::Socket>(handle);
                    if !s.may_send() {
                        return match s.state() {
                            tcp::State::SynSent | tcp::State::SynReceived => Err(EAGAIN),
                            _ => Err(EPIPE),
                        };
                    }
                    if data.is_empty() {
                        return Ok(0);
                    }
                    match s.send_slice(data) {
                        Ok(0) | Err(_) => Err(EAGAIN),
                        Ok(n) => Ok(n),
                    }
                })
            }
            SockType::Dgram => me.udp_send(st, afters, data, dest),
        })
    }

    fn udp_send(
        &self,
        st: &mut State<P>,
        afters: &mut Afters<P>,
        data: &[u8],
        dest: Option<SocketAddrV4>,
    ) -> Result<usize, Errno> {
        if st.shut_wr {
            return Err(EPIPE);
        }
        let peer = match &st.conn {
            Conn::Udp { peer, .. } => *peer,
            _ => None,
        };
        let dest = dest.or(peer).ok_or(EDESTADDRREQ)?;
        let dest = if dest.ip().is_unspecified() {
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, dest.port())
        } else {
            dest
        };
        if dest.port() == 0 {
            return Err(EINVAL);
        }
        if data.len() > self.shared.config.udp_buffer_bytes.max(1024) || data.len() > 65507 {
            return Err(EMSGSIZE);
        }
        if st.local.is_none() {
            self.take_port(st, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), |_| true)?;
            self.udp_open(st, afters)?;
        }
        let Conn::Udp { parts, .. } = &st.conn else {
            return Err(EINVAL);
        };
        let loops = self.shared.loops;
        let want_loop = dest.ip().is_loopback();
        let &(i, h) = parts
            .iter()
            .find(|(i, _)| (*i < loops) == want_loop)
            .ok_or(ENETUNREACH)?;
        let ep = IpEndpoint::new(IpAddress::Ipv4(*dest.ip()), dest.port());
        self.on(i, afters, |core| {
            match core.sockets.get_mut::<udp::Socket>(h).send_slice(data, ep) {
                Ok(()) => Ok(data.len()),
                Err(udp::SendError::BufferFull) => Err(EAGAIN),
                Err(udp::SendError::Unaddressable) => Err(ENETUNREACH),
            }
        })
    }

    /// recv/recvfrom.  Returns the byte count and, for UDP, the sender.
    /// TCP: `Ok(0)` at end of stream, `ECONNRESET` once after a reset,
    /// `ENOTCONN` if not connected.  UDP datagrams are truncated to `buf`.
    pub fn recv(&self, buf: &mut [u8], peek: bool) -> Result<(usize, Option<SocketAddrV4>), Errno> {
        self.run(|me, st, afters| match &st.conn {
            Conn::Tcp { inst, handle, .. } => {
                let (i, h) = (*inst, *handle);
                let shut_rd = st.shut_rd;
                me.on(i, afters, |core| {
                    let w = core.watches.get_mut(&h).expect("live socket has a watch");
                    if w.error != 0 {
                        return Err(Errno(core::mem::take(&mut w.error)));
                    }
                    let s = core.sockets.get_mut::<tcp::Socket>(h);
                    if s.can_recv() && !buf.is_empty() {
                        let r = if peek {
                            s.peek_slice(buf)
                        } else {
                            s.recv_slice(buf)
                        };
                        return r.map(|n| (n, None)).map_err(|_| EAGAIN);
                    }
                    if shut_rd {
                        return Ok((0, None));
                    }
                    match s.state() {
                        tcp::State::SynSent | tcp::State::SynReceived => Err(EAGAIN),
                        _ if !s.may_recv() => Ok((0, None)),
                        _ if buf.is_empty() => Ok((0, None)),
                        _ => Err(EAGAIN),
                    }
                })
            }
            Conn::Udp { parts, peer } => {
                let peer = *peer;
                for &(i, h) in parts {
                    let got = me.on(i, afters, |core| loop {
                        let s = core.sockets.get_mut::<udp::Socket>(h);
                        let (from, data_len) = match s.peek() {
                            Ok((data, meta)) => (v4(meta.endpoint), data.len()),
                            Err(_) => return None,
                        };
                        if peer.is_some_and(|p| p != from) {
                            let _ = s.recv();
                            continue;
                        }
                        let (data, _) = if peek {
                            let (d, m) = s.peek().ok()?;
                            (d, *m)
                        } else {
                            s.recv().ok()?
                        };
                        let n = data_len.min(buf.len());
                        buf[..n].copy_from_slice(&data[..n]);
                        return Some((n, Some(from)));
                    });
                    if let Some(r) = got {
                        return Ok(r);
                    }
                }
                Err(EAGAIN)
            }
            Conn::None if me.kind == SockType::Dgram => Err(EAGAIN),
            _ => Err(ENOTCONN),
        })
    }

    /// shutdown(2): `SHUT_RD`, `SHUT_WR` (sends FIN) or `SHUT_RDWR`.
    pub fn shutdown(&self, how: i32) -> Result<(), Errno> {
        if !(SHUT_RD..=SHUT_RDWR).contains(&how) {
            return Err(EINVAL);
        }
        let r = self.run(|me, st, afters| {
            match &st.conn {
                Conn::Tcp { inst, handle, .. } => {
                    if how != SHUT_RD {
                        let h = *handle;
                        me.on(*inst, afters, |core| {
                            core.sockets.get_mut::<tcp::Socket>(h).close()
                        });
                    }
                }
                Conn::Listen { .. } => {}
                Conn::Udp { peer: Some(_), .. } => {}
                _ => return Err(ENOTCONN),
            }
            if how != SHUT_WR {
                st.shut_rd = true;
            }
            if how != SHUT_RD {
                st.shut_wr = true;
            }
            Ok(())
        });
        self.shared.platform.notify(&self.waiters);
        r
    }

    /// close(2): graceful FIN (the connection finishes in the background as
    /// an orphan), or RST with SO_LINGER on and 0 seconds.  Listener: its
    /// queued connections are reset.  Idempotent.
    pub fn close(&self) {
        let mut afters = Vec::new();
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        let conn = core::mem::replace(&mut st.conn, Conn::None);
        match conn {
            Conn::Tcp { inst, handle, .. } => {
                let abort = st.opts.linger == Some(0);
                let (now, _) = self.shared.now();
                self.on(inst, &mut afters, |core| {
                    let s = core.sockets.get_mut::<tcp::Socket>(handle);
                    if abort {
                        s.abort();
                    } else {
                        s.close();
                        s.set_timeout(Some(smoltcp::time::Duration::from_secs(30)));
                    }
                    if let Some(w) = core.watches.get_mut(&handle) {
                        w.orphan_since = Some(now);
                        w.waiters = None;
                    }
                });
            }
            Conn::Listen { port, insts, .. } => {
                for i in insts {
                    let id = self.id;
                    self.on(i, &mut afters, |core| core.remove_listener(port, id));
                }
            }
            Conn::Udp { parts, .. } => {
                for (i, h) in parts {
                    self.on(i, &mut afters, |core| {
                        core.watches.remove(&h);
                        core.remove_socket(h);
                    });
                    if let (Some(l), true) = (st.local, i < self.shared.loops) {
                        let _ = self.shared.udp_home[usize::from(l.port())].compare_exchange(
                            i as u8 + 1,
                            0,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                }
            }
            Conn::None => {}
        }
        self.release_port(&mut st);
        drop(st);
        self.shared.open_sockets.fetch_sub(1, Ordering::AcqRel);
        for a in afters {
            self.shared.finish(a);
        }
        self.shared.platform.notify(&self.waiters);
    }

    /// getsockname(2): `0.0.0.0:0` if unbound.
    pub fn local_addr(&self) -> Result<SocketAddrV4, Errno> {
        self.run(|_, st, _| {
            Ok(st
                .local
                .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
        })
    }

    /// getpeername(2): `ENOTCONN` unless connected.
    pub fn peer_addr(&self) -> Result<SocketAddrV4, Errno> {
        self.run(|me, st, _| match &st.conn {
            Conn::Tcp {
                inst, handle, peer, ..
            } => {
                let state = me.shared.instances[*inst]
                    .core
                    .lock()
                    .sockets
                    .get::<tcp::Socket>(*handle)
                    .state();
                match state {
                    tcp::State::Closed | tcp::State::SynSent | tcp::State::SynReceived => {
                        Err(ENOTCONN)
                    }
                    _ => Ok(*peer),
                }
            }
            Conn::Udp { peer: Some(p), .. } => Ok(*p),
            _ => Err(ENOTCONN),
        })
    }

    /// setsockopt(2) for the options listed in docs/NET.md; others
    /// `ENOPROTOOPT`.  `val` is the option's bytes (int options: 4 bytes).
    pub fn setsockopt(&self, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        self.run(|me, st, afters| {
            let tcp_handle = match &st.conn {
                Conn::Tcp { inst, handle, .. } => Some((*inst, *handle)),
                _ => None,
            };
            match (level, name) {
                (SOL_SOCKET, SO_REUSEADDR) => st.opts.reuse_addr = int_opt(val)? != 0,
                (SOL_SOCKET, SO_REUSEPORT) => st.opts.reuse_port = int_opt(val)? != 0,
                (SOL_SOCKET, SO_RCVBUF) => st.opts.rcvbuf = Some(int_opt(val)?.max(0)),
                (SOL_SOCKET, SO_SNDBUF) => st.opts.sndbuf = Some(int_opt(val)?.max(0)),
                (SOL_SOCKET, SO_KEEPALIVE) => {
                    let on = int_opt(val)? != 0;
                    st.opts.keepalive = on;
                    if let Some((i, h)) = tcp_handle {
                        me.on(i, afters, |core| {
                            core.sockets
                                .get_mut::<tcp::Socket>(h)
                                .set_keep_alive(on.then_some(KEEPALIVE))
                        });
                    }
                }
                (SOL_SOCKET, SO_LINGER) => {
                    if val.len() < 8 {
                        return Err(EINVAL);
                    }
                    let on = int_opt(&val[..4])? != 0;
                    let secs = int_opt(&val[4..8])?;
                    st.opts.linger = on.then_some(secs.max(0));
                }
                (IPPROTO_TCP, TCP_NODELAY) if me.kind == SockType::Stream => {
                    let on = int_opt(val)? != 0;
                    st.opts.nodelay = on;
                    if let Some((i, h)) = tcp_handle {
                        me.on(i, afters, |core| {
                            core.sockets
                                .get_mut::<tcp::Socket>(h)
                                .set_nagle_enabled(!on)
                        });
                    }
                }
                (IPPROTO_TCP, _) if me.kind == SockType::Dgram => return Err(ENOPROTOOPT),
                _ => {
                    log::debug!("net: setsockopt level {level} name {name}: ENOPROTOOPT");
                    return Err(ENOPROTOOPT);
                }
            }
            Ok(())
        })
    }

    /// getsockopt(2): writes the value into `out` (4 bytes for ints, 8 for
    /// SO_LINGER) and returns its length.  SO_ERROR reads and clears.
    pub fn getsockopt(&self, level: i32, name: i32, out: &mut [u8]) -> Result<usize, Errno> {
        self.run(|me, st, afters| {
            let cfg = &me.shared.config;
            let v = match (level, name) {
                (SOL_SOCKET, SO_REUSEADDR) => st.opts.reuse_addr as i32,
                (SOL_SOCKET, SO_REUSEPORT) => st.opts.reuse_port as i32,
                (SOL_SOCKET, SO_KEEPALIVE) => st.opts.keepalive as i32,
                (SOL_SOCKET, SO_TYPE) => match me.kind {
                    SockType::Stream => SOCK_STREAM,
                    SockType::Dgram => SOCK_DGRAM,
                },
                (SOL_SOCKET, SO_RCVBUF) | (SOL_SOCKET, SO_SNDBUF) => {
                    let set = if name == SO_RCVBUF {
                        st.opts.rcvbuf
                    } else {
                        st.opts.sndbuf
                    };
                    let actual = match me.kind {
                        SockType::Stream => cfg.tcp_buffer_bytes,
                        SockType::Dgram => cfg.udp_buffer_bytes,
                    };
                    // Buffers are fixed per socket: report the real size
                    // unless the user asked for one (Linux reports 2x that).
                    set.map(|v| v.saturating_mul(2)).unwrap_or(actual as i32)
                }
                (SOL_SOCKET, SO_ERROR) => match &st.conn {
                    Conn::Tcp { inst, handle, .. } => {
                        let h = *handle;
                        me.on(*inst, afters, |core| {
                            core.watches
                                .get_mut(&h)
                                .map(|w| core::mem::take(&mut w.error))
                                .unwrap_or(0)
                        })
                    }
                    _ => 0,
                },
                (SOL_SOCKET, SO_LINGER) => {
                    let (on, secs) = match st.opts.linger {
                        Some(s) => (1, s),
                        None => (0, 0),
                    };
                    if out.len() < 8 {
                        return Err(EINVAL);
                    }
                    put_int(&mut out[..4], on)?;
                    put_int(&mut out[4..8], secs)?;
                    return Ok(8);
                }
                (IPPROTO_TCP, TCP_NODELAY) if me.kind == SockType::Stream => st.opts.nodelay as i32,
                _ => return Err(ENOPROTOOPT),
            };
            put_int(out, v)
        })
    }

    /// Readiness (EPOLLIN/OUT/ERR/HUP/RDHUP bits, Linux values).  Takes the
    /// socket lock and at most the instance lock(s); never polls.
    pub fn poll_events(&self) -> u32 {
        let st = self.state.lock();
        if st.closed {
            return EPOLLHUP;
        }
        let mut ev = match &st.conn {
            Conn::None => match self.kind {
                SockType::Stream => EPOLLOUT | EPOLLWRNORM | EPOLLHUP,
                SockType::Dgram => EPOLLOUT | EPOLLWRNORM,
            },
            Conn::Listen { shared, .. } => {
                if shared.queued.load(Ordering::Acquire) > 0 {
                    EPOLLIN | EPOLLRDNORM
                } else {
                    0
                }
            }
            Conn::Tcp { inst, handle, .. } => {
                let core = self.shared.instances[*inst].core.lock();
                let err = core
                    .watches
                    .get(handle)
                    .filter(|w| w.owner == self.id)
                    .map_or(0, |w| w.error);
                tcp_events(core.sockets.get::<tcp::Socket>(*handle), err)
            }
            Conn::Udp { parts, .. } => {
                let mut ev = 0;
                for (i, h) in parts {
                    let core = self.shared.instances[*i].core.lock();
                    ev |= udp_events(core.sockets.get::<udp::Socket>(*h));
                }
                ev
            }
        };
        if st.shut_rd {
            ev |= EPOLLIN | EPOLLRDNORM | EPOLLRDHUP;
        }
        if st.shut_rd && st.shut_wr {
            ev |= EPOLLHUP;
        }
        ev
    }
}

impl<P: Platform> Drop for Socket<P> {
    fn drop(&mut self) {
        self.close();
    }
}
