//! `NetServer`: decodes a request, runs it on a `net` socket, encodes the
//! reply; tracks readiness per client.
//!
//! Owns the mapping of each `netproto` operation onto `net::Socket` calls
//! (the same calls `kernel/src/sockets/inet.rs` makes in the monolithic
//! kernel, so a delegated call answers as a local one), datagram staging
//! for sends larger than a message, held rests of receives larger than a
//! reply, and the server loop with the stack's timers.
//!
//! Shared between server threads (and why it cannot be per-CPU): the
//! stack (`net::Stack`: per-CPU instances by design, server thread `i` is
//! CPU `i`), the handle table (sharded per server thread), the client
//! table (a read-mostly map; written only by `Attach` and a client's first
//! call), and the hold-token counter (one atomic, touched only by receives
//! over `MAX_PAYLOAD`).  No lock of the server's own is held across a
//! socket call except a socket's own staging/hold buffer, which `net`
//! never takes (notify only touches `readiness`).
//!
//! Must not: block (every socket call is non-blocking), panic on any
//! message, or keep fd state (the kernel owns fds, `O_NONBLOCK`,
//! `SOCK_CLOEXEC`, timeouts).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use abi::Errno;
use net::{LockMode, SockType, SocketRef, Stack};
use netproto::{
    put_change, reply_message, Changes, Handle, Kind, Message, MsgRef, Reply, Request, EVENT_BITS,
    MAX_CHANGES, MAX_PAYLOAD, MAX_RECV, READY_BIT,
};

use crate::handles::HandleTable;
use crate::platform::{set_worker, ServerPlatform, Tag};
use crate::readiness::{ClientState, Watch};
use crate::{FrameSink, Incoming, Signal, Transport};

/// Longest a server thread waits for a request before running its
/// instance's timers (one tick, as the kernel's net threads).
pub const TICK_MS: u64 = 10;

/// How a server is set up.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Server threads (one per core): loopback instances in `PerCpu`
    /// mode and handle-table shards.
    pub workers: usize,
    /// `PerCpu` (one instance per server thread) or `Global` (the ablation).
    pub mode: LockMode,
    /// Live handles per shard (`EMFILE` beyond).
    pub handles_per_worker: usize,
    /// The notification bit raised for readiness reports.
    pub ready_bit: u64,
    /// The stack's configuration (`cpus` and `mode` are set from the
    /// fields above).
    pub stack: net::Config,
    /// The instance's restart epoch (0 at boot): handle numbers of an
    /// earlier, crashed instance never name a socket of this one.
    pub epoch: u32,
}

impl Config {
    pub fn new(workers: usize, mode: LockMode) -> Config {
        Config {
            workers,
            mode,
            handles_per_worker: 1 << 16,
            ready_bit: READY_BIT,
            stack: net::Config::new(workers, mode),
            epoch: 0,
        }
    }
}

/// A socket the server holds.
pub struct Sock {
    pub sock: SocketRef<ServerPlatform>,
    kind: Kind,
    watch: Arc<Watch>,
    /// A datagram being staged by `Send { more }`.
    staged: Mutex<Vec<u8>>,
    /// The rest of the last large `Recv`: (token, bytes received).
    held: Mutex<Option<(u64, Vec<u8>)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Buffers are replaced whole: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The network server.
pub struct NetServer {
    stack: Stack<ServerPlatform>,
    handles: HandleTable<Sock>,
    clients: RwLock<HashMap<u64, Arc<ClientState>>>,
    signal: Arc<dyn Signal>,
    next_token: AtomicU64,
    config: Config,
}

impl NetServer {
    /// A server whose readiness notifications go to `signal`, with the NIC
    /// behind `nic` if `config.stack.eth` is set.
    pub fn new(config: Config, signal: Arc<dyn Signal>, nic: Option<Arc<dyn FrameSink>>) -> Self {
        Self::with_platform(config, signal, ServerPlatform::new(nic))
    }

    /// A server over a given platform (a manual clock in tests).
    pub fn with_platform(
        config: Config,
        signal: Arc<dyn Signal>,
        platform: ServerPlatform,
    ) -> Self {
        let mut sc = config.stack;
        sc.cpus = config.workers.max(1);
        sc.mode = config.mode;
        NetServer {
            stack: Stack::new(platform, sc),
            handles: HandleTable::with_epoch(
                config.workers,
                config.handles_per_worker,
                config.epoch,
            ),
            clients: RwLock::new(HashMap::new()),
            signal,
            next_token: AtomicU64::new(1),
            config,
        }
    }

    /// The stack (tests, statistics).
    pub fn stack(&self) -> &Stack<ServerPlatform> {
        &self.stack
    }

    /// Where readiness signals go (a successor instance re-attaches the
    /// kernel's notification under its own handle number).
    pub fn signal(&self) -> &Arc<dyn Signal> {
        &self.signal
    }

    /// The server's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles held by all clients.
    pub fn live_handles(&self) -> usize {
        self.handles.live()
    }

    /// Reports waiting for `client`'s `PollChanged`.
    pub fn queued_reports(&self, client: u64) -> usize {
        self.client(client).queued()
    }

    /// One received Ethernet frame from the NIC driver.
    pub fn receive_frame(&self, frame: &[u8]) {
        self.stack.receive_frame(frame);
    }

    /// Runs server thread `worker`'s timers if they are due.
    pub fn tick(&self, worker: usize) {
        let now = net::Platform::now_ms(self.stack.platform());
        if self.stack.next_poll_ms(worker).is_some_and(|t| now >= t) {
            self.stack.poll(worker);
        }
    }

    /// Serves `transport` as server thread `worker` until it closes.
    pub fn serve<T: Transport>(&self, worker: usize, transport: &mut T) {
        set_worker(worker);
        loop {
            let now = net::Platform::now_ms(self.stack.platform());
            let wait = self
                .stack
                .next_poll_ms(worker)
                .map_or(TICK_MS, |t| t.saturating_sub(now).min(TICK_MS));
            match transport.recv(Some(wait)) {
                Incoming::Request(caller, client, msg) => {
                    let reply = self.handle(client, msg.view());
                    transport.reply(caller, reply);
                }
                Incoming::Timeout => {}
                Incoming::Closed => return,
            }
            self.tick(worker);
        }
    }

    /// The reply to one message from `client` (on the calling server thread).
    pub fn handle(&self, client: u64, msg: MsgRef<'_>) -> Message {
        match Request::decode(msg) {
            Ok(req) => self.call(client, &req),
            Err(e) => {
                if e == Errno::ENOSYS {
                    eprintln!("netd: unknown operation {} (ENOSYS)", msg.label);
                }
                Message::error(e)
            }
        }
    }

    /// Runs a decoded request.
    pub fn call(&self, client: u64, req: &Request<'_>) -> Message {
        match self.run(client, req) {
            Ok(m) => m,
            Err(e) => Message::error(e),
        }
    }

    /// The client's current generation (made on first use).
    fn client(&self, id: u64) -> Arc<ClientState> {
        if let Some(c) = self
            .clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return c.clone();
        }
        self.clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert_with(|| self.new_client(id))
            .clone()
    }

    fn new_client(&self, id: u64) -> Arc<ClientState> {
        Arc::new(ClientState::new(
            id,
            self.config.ready_bit,
            self.signal.clone(),
            self.config.workers,
        ))
    }

    fn sock(&self, client: u64, h: Handle) -> Result<Arc<Sock>, Errno> {
        self.handles.get(client, h)
    }

    /// A handle for a new socket of `client`.
    fn adopt(&self, client: u64, sock: SocketRef<ServerPlatform>) -> Result<Handle, Errno> {
        let kind = match sock.kind() {
            SockType::Stream => Kind::Stream,
            SockType::Dgram => Kind::Dgram,
        };
        let watch = Arc::new(Watch::new(self.client(client)));
        let tag: &Tag = sock.waiters();
        tag.link(watch.clone());
        let entry = Arc::new(Sock {
            sock,
            kind,
            watch,
            staged: Mutex::new(Vec::new()),
            held: Mutex::new(None),
        });
        match self
            .handles
            .insert(crate::platform::worker(), client, entry.clone())
        {
            Ok(h) => {
                entry.watch.set_handle(h);
                Ok(h)
            }
            Err(e) => {
                entry.sock.close();
                Err(e)
            }
        }
    }

    /// After an operation that carried `arm`: on `EAGAIN` arms the handle
    /// for `arm` in the calling thread's shard; if the socket is ready by
    /// now (a peer on another thread changed it since the operation
    /// looked), reports it at once so the client's wait ends.
    fn arm_on_again<T>(&self, s: &Sock, arm: u32, r: Result<T, Errno>) -> Result<T, Errno> {
        if arm != 0 && matches!(r, Err(e) if e == Errno::EAGAIN) {
            let armed = s.watch.arm_here(arm);
            if s.sock.poll_events() & EVENT_BITS & armed != 0 {
                s.watch.fire();
            }
        }
        r
    }

    fn close(&self, s: &Sock) {
        s.watch.disarm();
        s.sock.close();
    }

    fn run(&self, client: u64, req: &Request<'_>) -> Result<Message, Errno> {
        let ok = |r: Reply<'_>| Ok(reply_message(Ok(r)));
        let done = || Ok(Message::default());
        match *req {
            Request::Attach { notify } => {
                self.signal.attach(client, notify);
                for s in self.handles.drop_client(client) {
                    self.close(&s);
                }
                self.clients
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(client, self.new_client(client));
                done()
            }
            Request::Socket { kind, protocol } => {
                let t = match (kind, protocol) {
                    (Kind::Stream, 0 | 6) => SockType::Stream,
                    (Kind::Dgram, 0 | 17) => SockType::Dgram,
                    _ => return Err(Errno::EPROTONOSUPPORT),
                };
                let sock = self.stack.socket(t)?;
                ok(Reply::Handle(self.adopt(client, sock)?))
            }
            Request::Close { handle } => {
                let s = self.handles.remove(client, handle)?;
                self.close(&s);
                done()
            }
            Request::Bind { handle, addr } => {
                self.sock(client, handle)?.sock.bind(addr)?;
                done()
            }
            Request::Listen { handle, backlog } => {
                self.sock(client, handle)?.sock.listen(backlog)?;
                done()
            }
            Request::Accept { handle, arm } => {
                let s = self.sock(client, handle)?;
                let (new, peer) = self.arm_on_again(&s, arm, s.sock.accept())?;
                let local = new.local_addr()?;
                let handle = self.adopt(client, new)?;
                ok(Reply::Accepted {
                    handle,
                    peer,
                    local,
                })
            }
            Request::Connect { handle, addr } => {
                self.sock(client, handle)?.sock.connect(addr)?;
                done()
            }
            Request::Send {
                handle,
                dest,
                more,
                offset,
                data,
                arm,
            } => {
                let s = self.sock(client, handle)?;
                let sent = self.send(&s, dest, more, offset as usize, data);
                let count = self.arm_on_again(&s, arm, sent)?;
                ok(Reply::Sent {
                    count: count as u64,
                })
            }
            Request::Recv {
                handle,
                len,
                peek,
                arm,
            } => {
                let s = self.sock(client, handle)?;
                let mut buf = vec![0u8; (len as usize).min(MAX_RECV)];
                let (n, from) = self.arm_on_again(&s, arm, s.sock.recv(&mut buf, peek))?;
                buf.truncate(n);
                let head = n.min(MAX_PAYLOAD);
                let mut held = lock(&s.held);
                let token = if n > MAX_PAYLOAD {
                    let t = self.next_token.fetch_add(1, Ordering::Relaxed);
                    *held = Some((t, buf.clone()));
                    t
                } else {
                    *held = None;
                    0
                };
                drop(held);
                ok(Reply::Received {
                    len: n as u64,
                    from,
                    data: &buf[..head],
                    token,
                })
            }
            Request::RecvMore {
                handle,
                token,
                offset,
            } => {
                let s = self.sock(client, handle)?;
                let mut held = lock(&s.held);
                let piece = match &*held {
                    Some((t, data)) if *t == token && (offset as usize) < data.len() => {
                        let start = offset as usize;
                        let end = (start + MAX_PAYLOAD).min(data.len());
                        (data[start..end].to_vec(), (data.len() - end) as u64)
                    }
                    _ => return Err(Errno::EINVAL),
                };
                if piece.1 == 0 {
                    *held = None;
                }
                drop(held);
                ok(Reply::More {
                    data: &piece.0,
                    left: piece.1,
                })
            }
            Request::Shutdown { handle, how } => {
                self.sock(client, handle)?.sock.shutdown(how as i32)?;
                done()
            }
            Request::SockName { handle } => {
                ok(Reply::Addr(self.sock(client, handle)?.sock.local_addr()?))
            }
            Request::PeerName { handle } => {
                ok(Reply::Addr(self.sock(client, handle)?.sock.peer_addr()?))
            }
            Request::SetOpt {
                handle,
                level,
                name,
                value,
            } => {
                self.sock(client, handle)?
                    .sock
                    .setsockopt(level, name, value)?;
                done()
            }
            Request::GetOpt {
                handle,
                level,
                name,
                len,
            } => {
                let mut buf = vec![0u8; len as usize];
                let n = self
                    .sock(client, handle)?
                    .sock
                    .getsockopt(level, name, &mut buf)?;
                ok(Reply::Value(&buf[..n.min(buf.len())]))
            }
            Request::Poll { handle, arm } => {
                let s = self.sock(client, handle)?;
                // Arm before reading the events: a change after the read
                // fires the watch (no lost wakeup).
                let armed = if arm != 0 { s.watch.arm_here(arm) } else { 0 };
                let ev = s.sock.poll_events() & EVENT_BITS;
                if ev & armed != 0 {
                    // Ready now: the caller will not sleep, no report needed.
                    s.watch.disarm();
                }
                ok(Reply::Events(ev))
            }
            Request::PollChanged { max, shard } => {
                self.poll_changed(client, max as usize, shard.map(|s| s as usize))
            }
            Request::NotifyShard { shard, notify } => {
                if shard as usize >= self.client(client).shards() {
                    return Err(Errno::EINVAL);
                }
                self.signal.attach_shard(client, shard as usize, notify)?;
                done()
            }
        }
    }

    fn send(
        &self,
        s: &Sock,
        dest: Option<SocketAddrV4>,
        more: bool,
        offset: usize,
        data: &[u8],
    ) -> Result<usize, Errno> {
        if !more && offset == 0 {
            return s.sock.send(data, dest);
        }
        if s.kind == Kind::Stream {
            // A stream is split freely by the client: no staging.
            return Err(Errno::EINVAL);
        }
        let mut staged = lock(&s.staged);
        if more && offset == 0 {
            staged.clear();
        }
        if offset != staged.len() {
            return Err(Errno::EINVAL);
        }
        if more {
            staged.extend_from_slice(data);
            return Ok(data.len());
        }
        let mut dgram = std::mem::take(&mut *staged);
        dgram.extend_from_slice(data);
        match s.sock.send(&dgram, dest) {
            Ok(n) => Ok(n),
            Err(e) => {
                // Kept, so a blocked sender retries the last piece only.
                dgram.truncate(offset);
                *staged = dgram;
                Err(e)
            }
        }
    }

    /// Reports of `shard` (`None`: of every shard), re-armed in it.
    fn poll_changed(
        &self,
        client: u64,
        max: usize,
        shard: Option<usize>,
    ) -> Result<Message, Errno> {
        let max = max.clamp(1, MAX_CHANGES);
        let state = self.client(client);
        if shard.is_some_and(|s| s >= state.shards()) {
            return Err(Errno::EINVAL);
        }
        let home = shard.unwrap_or_else(crate::platform::worker);
        let mut reports = state.take(shard).into_iter();
        let mut out = Vec::new();
        let mut n = 0;
        let mut more = false;
        while let Some((h, bits)) = reports.next() {
            if n == max {
                let rest: Vec<_> = std::iter::once((h, bits)).chain(reports).collect();
                state.put_back(home, rest);
                more = true;
                break;
            }
            // Closed or stale since: nothing to report.
            let Ok(s) = self.sock(client, h) else {
                continue;
            };
            // Re-arm, then read: not ready yet stays armed (and a change
            // after the read fires again); ready is reported and disarmed.
            let armed = s.watch.arm(bits, home);
            let ev = s.sock.poll_events() & EVENT_BITS;
            if ev & armed != 0 {
                s.watch.disarm();
                put_change(&mut out, h, ev);
                n += 1;
            }
        }
        let changes = Changes::new(&out)?;
        Ok(reply_message(Ok(Reply::Changed { changes, more })))
    }
}
