//! AF_INET sockets of the user-mode network server (`structure=servers`,
//! docs/SERVERS.md "Sockets in servers mode"): `RemoteInet` is a `Socket`
//! whose every operation is a `netproto` call, sent with
//! `ipc::kernel_call` to the endpoint registered as `SERVICE_NET`.  The
//! socket framework (`socket.rs`) does the blocking, `O_NONBLOCK`,
//! `SO_RCVTIMEO`/`SO_SNDTIMEO`, `EINTR` and `SIGPIPE` exactly as for local
//! sockets; this file makes its wakeups happen.
//!
//! Readiness: an operation that fails with `EAGAIN` (or a connect in
//! progress) arms the server's watch of the handle for the bits it waits
//! for (`Poll { arm }`); if the socket is ready already it notifies its own
//! `PollWaiters` at once, so the framework retries instead of sleeping.
//! `poll()` (poll, select, epoll) arms every readiness bit that is not set,
//! so any change the caller might wait for is reported.  The server raises
//! the notification the kernel gave it at `Attach`; the collector thread
//! (`collector`) waits on it, drains `PollChanged` and notifies the
//! `PollWaiters` of each reported socket.
//!
//! Owns: the boot-time switch (`active`), the server's pid (its own socket
//! calls are refused, `EDEADLK`), the notification and its collector
//! thread, the table from server handles to live sockets (for reports),
//! closes that could not be sent (sent before the next call).
//!
//! Invariants: a server that is gone or a reply that is not one the
//! operation can have is `EIO` (never a panic); `EINTR` passes through.
//! No lock is held across a call.  Unix-domain sockets never come here.
//!
//! Per-core: the handle table (`SOCKETS`) is global: a report names a
//! handle and may concern a socket made on any CPU; it is written on
//! socket creation and close and read by the collector, each under one
//! short lock (a per-CPU table keyed by the making CPU is the next step if
//! it shows up in measurements).
//!
//! Must not: hold a lock across a call, touch user memory, or block
//! (the framework blocks).

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::sockaddr::SockAddr;
use super::socket::Received;
use super::*;
use crate::files::pollwait::PollWaiters;
use crate::ipc::Notification;
use abi::ipc::SERVICE_NET;
use abi::Errno;
use netproto::{
    Handle, Kind, MsgRef, Reply, Request, MAX_CHANGES, MAX_DATAGRAM, MAX_OPT, MAX_PAYLOAD, MAX_RECV,
};

use abi::errno::EPIPE;

const POLLIN: u32 = 0x001;
const POLLPRI: u32 = 0x002;
const POLLOUT: u32 = 0x004;
const POLLERR: u32 = 0x008;
const POLLHUP: u32 = 0x010;
const POLLRDHUP: u32 = 0x2000;
/// What `poll()` keeps armed (the bits poll, select and epoll wait for).
const WATCH: u32 = POLLIN | POLLPRI | POLLOUT | POLLERR | POLLHUP | POLLRDHUP;
/// What a blocked receive (or accept) waits for.
const READABLE: u32 = POLLIN | POLLERR | POLLHUP | POLLRDHUP;
/// What a blocked send (or connect) waits for.
const WRITABLE: u32 = POLLOUT | POLLERR | POLLHUP;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static SERVER_PID: AtomicI32 = AtomicI32::new(0);
/// The network server instance sockets are made in: bumped when one dies
/// (`server_died`); a socket of an earlier epoch is stale and never
/// reaches a server again (its handle would name another socket).
static EPOCH: AtomicU32 = AtomicU32::new(0);
/// Whether the collector thread runs (one for every instance: the
/// notification is the same).
static COLLECTING: AtomicBool = AtomicBool::new(false);
/// The server pid whose death was handled (`server_died` runs once per
/// instance, from the watcher or from the first caller that saw it).
static RESET_PID: AtomicI32 = AtomicI32::new(0);
static RESET_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The current instance was attached (false from a death until the next
/// instance's `Attach`, which drops every handle the kernel held there:
/// a socket made before it would vanish).
static READY: AtomicBool = AtomicBool::new(false);
/// Whether the first delegated socket was logged (tests look for it).
static LOGGED: AtomicBool = AtomicBool::new(false);

/// One notification per CPU when the server runs one serving thread per
/// CPU (`servers.placement=percore`, more than one CPU), else none: the
/// server files a report in the shard of the thread that armed the
/// handle (the waiting caller's CPU), raises that shard's notification
/// (`NotifyShard`), and that CPU's collector takes it (`PollChanged
/// { shard }`) and wakes the caller there, with no cross-CPU wakeup and
/// no one collector thread that every CPU's reports queue behind.  Made
/// once; the same objects serve every server instance.
static SHARD_NOTIFY: spin::Once<Vec<Arc<Notification>>> = spin::Once::new();

/// The per-CPU report notifications (empty: one collector for all; see
/// `SHARD_NOTIFY`).
pub fn shard_notifications() -> &'static [Arc<Notification>] {
    SHARD_NOTIFY.call_once(|| {
        let cpus = percpu::cpu_count();
        let percore = crate::proc::servers::placement() == crate::cmdline::Placement::PerCore;
        let n = if percore && cpus > 1 { cpus } else { 0 };
        (0..n).map(|_| Arc::new(Notification::new())).collect()
    })
}

/// Live remote sockets by server handle (for readiness reports).
static SOCKETS: spin::Mutex<BTreeMap<u64, Weak<RemoteInet>>> = spin::Mutex::new(BTreeMap::new());

/// Handles whose close could not be sent (an exiting caller).
static DEFERRED: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
static DEFERRED_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Whether AF_INET sockets go to the server: the one branch the
/// monolithic `socket(AF_INET)` pays.
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// One call: `req` out, the reply decoded and handed to `f` (`None` from
/// `f`, or a malformed reply, is `EIO`).
fn with<T>(req: &Request<'_>, f: impl FnOnce(Reply<'_>) -> Option<T>) -> Result<T, Errno> {
    let me = crate::proc::current_task().map_or(0, |t| t.process.pid);
    if me != 0 && me == SERVER_PID.load(Ordering::Relaxed) {
        return Err(Errno::EDEADLK);
    }
    if DEFERRED_COUNT.load(Ordering::Relaxed) != 0 {
        flush_deferred();
    }
    let m = req.encode()?;
    // Only replies that carry bytes get a buffer (most carry words only:
    // an 8 KiB buffer made for each would cost more than the call).
    let capacity = match req {
        // A receive gets at most what it asked for.
        Request::Recv { len, .. } => (*len as usize).min(MAX_PAYLOAD),
        Request::RecvMore { .. } | Request::PollChanged { .. } => MAX_PAYLOAD,
        Request::GetOpt { .. } => MAX_OPT,
        _ => 0,
    };
    let mut buf = vec![0u8; capacity];
    let (label, words, payload) = crate::ipc::delegate_call(
        SERVICE_NET,
        &req.op(),
        m.label,
        m.words,
        &m.payload,
        &mut buf,
    )?;
    let msg = MsgRef {
        label,
        words,
        payload,
    };
    match Reply::decode(req.op(), msg) {
        Ok(Ok(reply)) => f(reply).ok_or(Errno::EIO),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            log::warn!("servers: malformed reply to {:?} (EIO)", req.op());
            Err(Errno::EIO)
        }
    }
}

fn done(req: &Request<'_>) -> Result<(), Errno> {
    with(req, |r| matches!(r, Reply::Done).then_some(()))
}

fn flush_deferred() {
    let handles = {
        let saved = crate::arch::irq::save_disable();
        let h = core::mem::take(&mut *DEFERRED.lock());
        crate::arch::irq::restore(saved);
        h
    };
    DEFERRED_COUNT.fetch_sub(handles.len(), Ordering::Relaxed);
    for h in handles {
        close_handle(Handle(h));
    }
}

/// Closes `handle` at the server, or defers the close to the next call
/// where nothing may block (the last reference of a socket dropped in the
/// scheduler's switch path, see `files::remote::close`).
fn close_handle(handle: Handle) {
    let result = if crate::sched::may_block() {
        SOCKETS.lock().remove(&handle.0);
        done(&Request::Close { handle })
    } else {
        Err(Errno::EDEADLK)
    };
    match result {
        Err(e) if e == Errno::EINTR || e == Errno::EDEADLK => {
            let saved = crate::arch::irq::save_disable();
            DEFERRED.lock().push(handle.0);
            crate::arch::irq::restore(saved);
            DEFERRED_COUNT.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Boot (`structure=servers`, once netd registered `SERVICE_NET`):
/// attaches with `notify` (the notification's handle in the server's
/// table; the kernel keeps `notification`), names the per-CPU
/// notifications (`shard_notify[i]`: the handle of
/// `shard_notifications()[i]` in the server's table), starts the
/// collector threads and turns delegation on.  A server that refuses a
/// shard keeps reporting through `notify` (the unpinned collector takes
/// every shard).
pub fn attach(
    server_pid: i32,
    notify: u64,
    notification: Arc<Notification>,
    shard_notify: &[u64],
) -> Result<(), Errno> {
    SERVER_PID.store(server_pid, Ordering::Relaxed);
    done(&Request::Attach { notify })?;
    for (i, &h) in shard_notify.iter().enumerate() {
        let shard = i as u32;
        if let Err(e) = done(&Request::NotifyShard { shard, notify: h }) {
            log::warn!(
                "servers: the network server refused report shard {i} (errno {}): one collector",
                e.0
            );
            break;
        }
    }
    READY.store(true, Ordering::Release);
    if !COLLECTING.swap(true, Ordering::AcqRel) {
        crate::sched::try_spawn("netd-reports", None, move || collector(notification, None))
            .map_err(|_| Errno::ENOMEM)?;
        for (cpu, n) in shard_notifications().iter().enumerate() {
            let n = n.clone();
            crate::sched::try_spawn("netd-reports", Some(cpu), move || {
                collector(n, Some(cpu as u32))
            })
            .map_err(|_| Errno::ENOMEM)?;
        }
    }
    ACTIVE.store(true, Ordering::Relaxed);
    Ok(())
}

/// The network server's pid (0 before boot started it).
pub fn server_pid() -> i32 {
    SERVER_PID.load(Ordering::Acquire)
}

/// A replacement made `pid` the server (its state is the old one's).
pub fn set_server_pid(pid: i32) {
    SERVER_PID.store(pid, Ordering::Release);
}

/// The server died (`proc::net_server`'s watcher): every socket made so
/// far is stale from now on (`RemoteInet::stale`), its waiters are woken
/// so blocked callers see the error, and closes not yet sent are dropped
/// (their handles would name sockets of the next instance).  Returns how
/// many sockets were live.
pub fn server_died() -> usize {
    let pid = SERVER_PID.load(Ordering::Acquire);
    if RESET_PID.swap(pid, Ordering::AcqRel) == pid {
        // A caller saw the death first and did the reset.
        return RESET_COUNT.load(Ordering::Acquire);
    }
    READY.store(false, Ordering::Release);
    EPOCH.fetch_add(1, Ordering::AcqRel);
    let live: Vec<Arc<RemoteInet>> = {
        let mut table = SOCKETS.lock();
        let live = table.values().filter_map(Weak::upgrade).collect();
        table.clear();
        live
    };
    let saved = crate::arch::irq::save_disable();
    let dropped = core::mem::take(&mut *DEFERRED.lock());
    crate::arch::irq::restore(saved);
    DEFERRED_COUNT.fetch_sub(dropped.len(), Ordering::Relaxed);
    for s in &live {
        s.events.store(POLLERR | POLLHUP, Ordering::Release);
        s.waiters.notify();
    }
    RESET_COUNT.store(live.len(), Ordering::Release);
    live.len()
}

/// After a failed call: if the server process is dead (not replaced), do
/// the reset now rather than when the watcher looks, so the caller gets
/// its socket's error (`ECONNRESET`, `EPIPE`) and not a bare `EIO`.
fn check_server_alive() {
    let pid = SERVER_PID.load(Ordering::Acquire);
    let dead =
        crate::proc::process::find_process(pid).is_none_or(|p| p.zombie.load(Ordering::Acquire));
    if dead && !crate::proc::server_replace::replacing() && pid == server_pid() {
        server_died();
    }
}

/// The collector: waits for the server's notification, then collects
/// every report (of `shard` only, when it is a CPU's collector:
/// `PollChanged` until `more` is 0) and wakes the reported sockets'
/// waiters.  A kernel thread: never interrupted by signals.
fn collector(notification: Arc<Notification>, shard: Option<u32>) {
    let mut ready: Vec<(u64, u32)> = Vec::new();
    loop {
        if notification.wait(&|| false).is_err() {
            continue;
        }
        loop {
            ready.clear();
            let more = with(
                &Request::PollChanged {
                    max: MAX_CHANGES as u32,
                    shard,
                },
                |r| match r {
                    Reply::Changed { changes, more } => {
                        ready.extend(changes.iter().map(|(h, ev)| (h.0, ev)));
                        Some(more)
                    }
                    _ => None,
                },
            );
            for &(h, ev) in &ready {
                let sock = SOCKETS.lock().get(&h).and_then(Weak::upgrade);
                if let Some(s) = sock {
                    s.events.store(ev, Ordering::Release);
                    s.waiters.notify();
                }
            }
            match more {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    log::warn!("servers: PollChanged failed: errno {}", e.0);
                    break;
                }
            }
        }
    }
}

/// A new AF_INET socket at the server (`socket.rs`'s rules apply).
pub fn create(sock_type: u32, protocol: u32) -> Result<Arc<dyn Socket>, Errno> {
    let kind = match sock_type {
        SOCK_STREAM => Kind::Stream,
        SOCK_DGRAM => Kind::Dgram,
        SOCK_RAW => {
            log::warn!("net: SOCK_RAW is not supported: EPROTONOSUPPORT");
            return Err(EPROTONOSUPPORT);
        }
        _ => return Err(ESOCKTNOSUPPORT),
    };
    if !READY.load(Ordering::Acquire) {
        // No network server right now (restarting after a crash).
        return Err(Errno::EIO);
    }
    let handle = with(&Request::Socket { kind, protocol }, |r| match r {
        Reply::Handle(h) => Some(h),
        _ => None,
    })?;
    if !LOGGED.swap(true, Ordering::Relaxed) {
        log::info!(
            "servers: first AF_INET socket made by the network server (handle {:#x})",
            handle.0
        );
    }
    Ok(RemoteInet::adopt(handle, sock_type))
}

/// A socket held by the network server, as the framework sees it.
pub struct RemoteInet {
    handle: Handle,
    sock_type: u32,
    listening: AtomicBool,
    waiters: PollWaiters,
    /// The events last seen (a reply to `Poll` or a report).
    events: AtomicU32,
    /// The server instance (`EPOCH`) that holds it.
    epoch: u32,
    /// Connected (accepted, or a connect was started): after the server
    /// died it reads as reset (`ECONNRESET`, then end of file) and writes
    /// fail with `EPIPE`, as a connection whose peer sent RST on Linux.
    connected: AtomicBool,
    /// The reset was reported once (`ECONNRESET`; later reads see EOF).
    reset_seen: AtomicBool,
}

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

impl RemoteInet {
    fn adopt(handle: Handle, sock_type: u32) -> Arc<RemoteInet> {
        let s = Arc::new(RemoteInet {
            handle,
            sock_type,
            listening: AtomicBool::new(false),
            waiters: PollWaiters::new(),
            events: AtomicU32::new(0),
            epoch: EPOCH.load(Ordering::Acquire),
            connected: AtomicBool::new(false),
            reset_seen: AtomicBool::new(false),
        });
        SOCKETS.lock().insert(handle.0, Arc::downgrade(&s));
        s
    }

    /// Whether the instance that held this socket died.
    fn stale(&self) -> bool {
        self.epoch != EPOCH.load(Ordering::Acquire)
    }

    /// What an operation on a stale socket gives: `EPIPE` for writes of a
    /// connected stream, `ECONNRESET` for its first read, `EIO` for the rest
    /// (listeners, datagram and unconnected sockets: the server that held
    /// them is gone).
    fn stale_error(&self, write: bool) -> Errno {
        if self.sock_type == SOCK_STREAM && self.connected.load(Ordering::Acquire) {
            if write {
                return EPIPE;
            }
            return ECONNRESET;
        }
        Errno::EIO
    }

    /// Runs `f` unless the socket is stale; a failure (the server died
    /// during the call: `EIO`) on a socket that became stale meanwhile is
    /// the stale socket's error.
    fn live<T>(&self, write: bool, f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        if self.stale() {
            return Err(self.stale_error(write));
        }
        let r = f();
        if matches!(r, Err(e) if e == Errno::EIO) {
            check_server_alive();
        }
        match r {
            Err(e) if e != Errno::EINTR && self.stale() => Err(self.stale_error(write)),
            r => r,
        }
    }

    /// `Poll { arm }`: the events, after arming `arm` (0: only read).
    fn poll_arm(&self, arm: u32) -> Result<u32, Errno> {
        let ev = with(
            &Request::Poll {
                handle: self.handle,
                arm,
            },
            |r| match r {
                Reply::Events(ev) => Some(ev),
                _ => None,
            },
        )?;
        self.events.store(ev, Ordering::Release);
        Ok(ev)
    }

    /// After an operation said `EAGAIN`: arms `bits`; if the socket is
    /// ready already (the server then did not arm), wakes the waiters so
    /// the framework tries again rather than sleeping.
    fn arm_after(&self, bits: u32) {
        match self.poll_arm(bits) {
            Ok(ev) if ev & bits == 0 => {}
            // Ready, or the server failed (the retry will see the error).
            _ => self.waiters.notify(),
        }
    }

    /// Runs `op`, a call that carried its own `arm` bits (the server armed
    /// on `EAGAIN`, or reported at once if ready: nothing more to do).
    fn op_armed<T>(&self, op: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
        op()
    }

    /// Runs `op`; on `EAGAIN` arms `bits` first (`again` also counts as
    /// waiting, for connect's `EINPROGRESS`/`EALREADY`).
    fn op<T>(
        &self,
        bits: u32,
        again: &[Errno],
        op: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let r = op();
        if let Err(e) = r {
            if e == Errno::EAGAIN || again.contains(&e) {
                self.arm_after(bits);
            }
        }
        r
    }

    /// One `Send`; `arm`: the bits to arm if it says `EAGAIN` (only a
    /// piece whose `EAGAIN` the caller waits on).
    fn send_piece(
        &self,
        dest: Option<SocketAddrV4>,
        more: bool,
        offset: usize,
        data: &[u8],
        arm: u32,
    ) -> Result<usize, Errno> {
        let offset = u32::try_from(offset).map_err(|_| EMSGSIZE)?;
        with(
            &Request::Send {
                handle: self.handle,
                dest,
                more,
                offset,
                data,
                arm,
            },
            |r| match r {
                Reply::Sent { count } => Some(count as usize),
                _ => None,
            },
        )
    }

    fn send_now(&self, data: &[u8], dest: Option<SocketAddrV4>) -> Result<usize, Errno> {
        if self.sock_type == SOCK_STREAM {
            // Pieces of one message each; stop at the first short one.
            // Only the first piece's EAGAIN is returned (then waited on).
            let mut sent = 0;
            for piece in data.chunks(MAX_PAYLOAD) {
                let arm = if sent == 0 { WRITABLE } else { 0 };
                match self.send_piece(dest, false, 0, piece, arm) {
                    Ok(n) => {
                        sent += n;
                        if n < piece.len() {
                            break;
                        }
                    }
                    Err(e) => return if sent > 0 { Ok(sent) } else { Err(e) },
                }
            }
            if data.is_empty() {
                return self.send_piece(dest, false, 0, data, WRITABLE);
            }
            return Ok(sent);
        }
        if data.len() <= MAX_PAYLOAD {
            return self.send_piece(dest, false, 0, data, WRITABLE);
        }
        if data.len() > MAX_DATAGRAM {
            return Err(EMSGSIZE);
        }
        // Staged: every piece but the last with `more`, then the last one
        // (with the destination) sends the whole datagram.
        let last = (data.len() - 1) / MAX_PAYLOAD * MAX_PAYLOAD;
        let mut off = 0;
        while off < last {
            self.send_piece(None, true, off, &data[off..off + MAX_PAYLOAD], 0)?;
            off += MAX_PAYLOAD;
        }
        self.send_piece(dest, false, last, &data[last..], WRITABLE)
            .map(|_| data.len())
    }

    fn recv_now(&self, out: &mut [u8], peek: bool) -> Result<Received, Errno> {
        let want = out.len().min(MAX_RECV);
        let (len, from, first, token) = with(
            &Request::Recv {
                handle: self.handle,
                len: want as u32,
                peek,
                arm: READABLE,
            },
            |r| match r {
                Reply::Received {
                    len,
                    from,
                    data,
                    token,
                } => {
                    let n = data.len().min(want);
                    out[..n].copy_from_slice(&data[..n]);
                    Some((len as usize, from, n, token))
                }
                _ => None,
            },
        )?;
        let len = len.min(want);
        let mut got = first;
        while got < len {
            let offset = got as u32;
            let n = with(
                &Request::RecvMore {
                    handle: self.handle,
                    token,
                    offset,
                },
                |r| match r {
                    Reply::More { data, .. } => {
                        let n = data.len().min(len - got);
                        out[got..got + n].copy_from_slice(&data[..n]);
                        Some(n)
                    }
                    _ => None,
                },
            )?;
            if n == 0 {
                return Err(Errno::EIO);
            }
            got += n;
        }
        Ok(Received {
            len,
            full_len: len,
            from: from.map(sockaddr),
        })
    }

    fn addr(&self, req: Request<'_>) -> Result<SockAddr, Errno> {
        self.live(false, || {
            with(&req, |r| match r {
                Reply::Addr(a) => Some(sockaddr(a)),
                _ => None,
            })
        })
    }
}

impl Socket for RemoteInet {
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
        let addr = inet_addr(addr)?;
        self.live(false, || {
            done(&Request::Bind {
                handle: self.handle,
                addr,
            })
        })
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        self.live(false, || {
            done(&Request::Listen {
                handle: self.handle,
                backlog,
            })
        })?;
        self.listening.store(true, Ordering::Release);
        Ok(())
    }

    fn accept(&self) -> Result<(Arc<dyn Socket>, Option<SockAddr>), Errno> {
        let (handle, peer) = self.live(false, || {
            self.op_armed(|| {
                with(
                    &Request::Accept {
                        handle: self.handle,
                        arm: READABLE,
                    },
                    |r| match r {
                        Reply::Accepted { handle, peer, .. } => Some((handle, peer)),
                        _ => None,
                    },
                )
            })
        })?;
        let accepted = RemoteInet::adopt(handle, self.sock_type);
        accepted.connected.store(true, Ordering::Release);
        let accepted: Arc<dyn Socket> = accepted;
        Ok((accepted, Some(sockaddr(peer))))
    }

    fn connect(&self, addr: &SockAddr) -> Result<(), Errno> {
        let addr = inet_addr(addr)?;
        let r = self.live(false, || {
            self.op(WRITABLE, &[EINPROGRESS, EALREADY], || {
                done(&Request::Connect {
                    handle: self.handle,
                    addr,
                })
            })
        });
        if matches!(r, Ok(()) | Err(EINPROGRESS) | Err(EALREADY) | Err(EISCONN)) {
            self.connected.store(true, Ordering::Release);
        }
        r
    }

    fn send(&self, data: &[u8], _flags: u32, to: Option<&SockAddr>) -> Result<usize, Errno> {
        let dest = to.map(inet_addr).transpose()?;
        self.live(true, || self.op_armed(|| self.send_now(data, dest)))
    }

    fn recv(&self, out: &mut [u8], flags: u32) -> Result<Received, Errno> {
        if self.stale()
            && self.sock_type == SOCK_STREAM
            && self.connected.load(Ordering::Acquire)
            && self.reset_seen.swap(true, Ordering::AcqRel)
        {
            // The reset was reported: end of file, as Linux after an RST.
            return Ok(Received {
                len: 0,
                full_len: 0,
                from: None,
            });
        }
        self.live(false, || {
            self.op_armed(|| self.recv_now(out, flags & MSG_PEEK != 0))
        })
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        if self.stale() && self.connected.load(Ordering::Acquire) {
            // Nothing left to shut: the connection was reset.
            return Ok(());
        }
        self.live(false, || {
            done(&Request::Shutdown {
                handle: self.handle,
                how,
            })
        })
    }

    fn local_addr(&self) -> Result<SockAddr, Errno> {
        self.addr(Request::SockName {
            handle: self.handle,
        })
    }

    fn peer_addr(&self) -> Result<SockAddr, Errno> {
        self.addr(Request::PeerName {
            handle: self.handle,
        })
    }

    fn setsockopt(&self, level: i32, name: i32, value: &[u8]) -> Result<(), Errno> {
        if value.len() > MAX_OPT {
            return Err(Errno::EINVAL);
        }
        self.live(false, || {
            done(&Request::SetOpt {
                handle: self.handle,
                level,
                name,
                value,
            })
        })
    }

    fn getsockopt(&self, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
        if self.stale() && level == SOL_SOCKET && name == SO_ERROR {
            let e = if self.connected.load(Ordering::Acquire)
                && !self.reset_seen.swap(true, Ordering::AcqRel)
            {
                ECONNRESET.0
            } else {
                0
            };
            return Ok(e.to_ne_bytes().to_vec());
        }
        if self.stale() {
            return Err(self.stale_error(false));
        }
        with(
            &Request::GetOpt {
                handle: self.handle,
                level,
                name,
                len: 16,
            },
            |r| match r {
                Reply::Value(v) => Some(v.to_vec()),
                _ => None,
            },
        )
    }

    fn take_error(&self) -> Option<Errno> {
        let v = self.getsockopt(SOL_SOCKET, SO_ERROR).ok()?;
        let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
        match i32::from_ne_bytes(b) {
            0 => None,
            e => Some(Errno(e)),
        }
    }

    fn poll(&self) -> u32 {
        if self.stale() {
            // Readable (the error, then EOF) and writable (EPIPE) at once.
            return POLLIN | POLLOUT | POLLERR | POLLHUP;
        }
        // Arm what is not set, so any change a poller may wait for is
        // reported.  If something armed is set by the time the server
        // looks, it disarmed: arm again with the new picture.
        let mut known = self.events.load(Ordering::Acquire);
        for _ in 0..4 {
            let arm = WATCH & !known;
            match self.poll_arm(arm) {
                Ok(ev) if ev & arm == 0 => return ev,
                Ok(ev) => known = ev,
                // A signal: the poll loop returns EINTR.
                Err(e) if e == Errno::EINTR => return 0,
                Err(_) => return POLLERR,
            }
        }
        // Still changing: have the poller look again.
        self.waiters.notify();
        known
    }

    fn waiters(&self) -> &PollWaiters {
        &self.waiters
    }

    fn bytes_readable(&self) -> usize {
        if self.stale() {
            return 0;
        }
        with(
            &Request::Recv {
                handle: self.handle,
                len: MAX_RECV as u32,
                peek: true,
                arm: 0,
            },
            |r| match r {
                Reply::Received { len, .. } => Some(len as usize),
                _ => None,
            },
        )
        .unwrap_or(0)
    }

    fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn on_close(&self) {
        if self.stale() {
            // The handle was the dead instance's: nothing to close, and
            // the number may name a socket of the next one.
            return;
        }
        close_handle(self.handle);
    }
}
