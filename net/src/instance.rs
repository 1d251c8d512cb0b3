//! One smoltcp TCP/IP instance: an `Interface`, its `SocketSet`, its queue
//! device, the per-handle readiness watches and the listener slots (accept
//! queues) of this instance.
//!
//! Locking: `Instance::core` is the instance lock; every smoltcp call on this
//! instance happens under it.  `Instance::inbox` is a second, leaf lock that
//! other instances take to hand over packets without touching `core` (so no
//! thread ever holds two instance locks).  Order: socket state → core → inbox.
//!
//! Invariants: a handle in `watches` is owned by exactly one live `Socket`
//! (or is an orphan being closed); a handle in a listener's `pool` or `queue`
//! is owned by that listener slot.  Nothing here calls the platform's
//! `notify`/`transmit_frame`: the waiters to wake and packets to send are
//! returned to the stack, which acts after dropping the lock.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpListenEndpoint;

use crate::consts::*;
use crate::device::QueueDevice;
use crate::errno::{ECONNREFUSED, ECONNRESET, ETIMEDOUT};
use crate::packet::parse_ipv4;
use crate::Platform;

/// Orphans (closed by the user, still finishing their FIN handshake) are
/// aborted after this long, so an unresponsive peer cannot pin memory.
pub(crate) const ORPHAN_MAX_MS: u64 = 30_000;
/// Listening smoltcp sockets kept ready per listener and instance: also the
/// bound on half-open (SYN-RECEIVED) connections per listener and instance.
pub(crate) const LISTEN_POOL_MAX: usize = 8;
/// Packets waiting in an inbox at most (further ones are dropped).
pub(crate) const INBOX_MAX: usize = 4096;
/// A connect or a half-open passive handshake fails after this long
/// (Linux: about two minutes of SYN retries; ETIMEDOUT).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a watched handle is and who waits on it.
pub(crate) struct Watch<P: Platform> {
    pub owner: u64,
    pub waiters: Option<Arc<P::Waiters>>,
    pub is_tcp: bool,
    pub last_state: tcp::State,
    pub last_events: u32,
    /// Pending socket error (SO_ERROR), 0 if none.
    pub error: i32,
    /// While connecting: when the handshake times out (ms).
    pub connect_deadline_ms: Option<u64>,
    /// Set when the user closed the socket; the handle is freed once the
    /// connection is done (or after `ORPHAN_MAX_MS`).
    pub orphan_since: Option<u64>,
}

impl<P: Platform> Watch<P> {
    pub fn new(owner: u64, waiters: Arc<P::Waiters>, is_tcp: bool, state: tcp::State) -> Self {
        Watch {
            owner,
            waiters: Some(waiters),
            is_tcp,
            last_state: state,
            last_events: 0,
            error: 0,
            connect_deadline_ms: None,
            orphan_since: None,
        }
    }
}

/// Shared between a listening `Socket` and its slots in every instance.
pub(crate) struct ListenShared<P: Platform> {
    pub waiters: Arc<P::Waiters>,
    /// Connections waiting in all this listener's accept queues.
    pub queued: AtomicUsize,
    pub backlog: AtomicUsize,
}

/// A listener's presence in one instance: ready listening sockets and the
/// accept queue of established connections.
pub(crate) struct ListenSlot<P: Platform> {
    pub owner: u64,
    pub endpoint: IpListenEndpoint,
    pub pool: Vec<SocketHandle>,
    pub queue: VecDeque<SocketHandle>,
    pub shared: Arc<ListenShared<P>>,
    pub nodelay: bool,
}

pub(crate) struct Core<P: Platform> {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub dev: QueueDevice,
    pub watches: BTreeMap<SocketHandle, Watch<P>>,
    pub listeners: BTreeMap<u16, ListenSlot<P>>,
    pub tcp_buffer_bytes: usize,
    pub udp_buffer_bytes: usize,
    pub max_sockets: usize,
    pub socket_count: usize,
}

/// One instance, padded so two instances never share a cache line.
#[repr(align(128))]
pub(crate) struct Instance<P: Platform> {
    pub core: spin::Mutex<Core<P>>,
    pub inbox: spin::Mutex<VecDeque<Vec<u8>>>,
    /// Deadline (ms) of the next timer poll; `u64::MAX` if none.
    pub next_poll_ms: AtomicU64,
}

impl<P: Platform> Instance<P> {
    pub fn new(core: Core<P>) -> Self {
        Instance {
            core: spin::Mutex::new(core),
            inbox: spin::Mutex::new(VecDeque::new()),
            next_poll_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Queue a packet for this instance (leaf lock only).  Returns false if
    /// the inbox is full and the packet was dropped.
    pub fn push_inbox(&self, p: Vec<u8>) -> bool {
        let mut ib = self.inbox.lock();
        if ib.len() >= INBOX_MAX {
            return false;
        }
        ib.push_back(p);
        drop(ib);
        self.next_poll_ms.store(0, Ordering::Release);
        true
    }
}

/// Linux-style readiness of a TCP socket from its smoltcp state.
pub(crate) fn tcp_events(s: &tcp::Socket<'_>, error: i32) -> u32 {
    let mut ev = if error != 0 { EPOLLERR } else { 0 };
    match s.state() {
        tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {}
        tcp::State::Closed => {
            ev |= EPOLLIN | EPOLLRDNORM | EPOLLOUT | EPOLLWRNORM | EPOLLHUP | EPOLLRDHUP
        }
        _ => {
            if s.can_recv() || !s.may_recv() {
                ev |= EPOLLIN | EPOLLRDNORM;
            }
            if !s.may_recv() {
                ev |= EPOLLRDHUP;
            }
            if !s.may_send() || s.send_queue() < s.send_capacity() {
                ev |= EPOLLOUT | EPOLLWRNORM;
            }
            if !s.may_recv() && !s.may_send() {
                ev |= EPOLLHUP;
            }
        }
    }
    ev
}

pub(crate) fn udp_events(s: &udp::Socket<'_>) -> u32 {
    let mut ev = 0;
    if s.can_recv() {
        ev |= EPOLLIN | EPOLLRDNORM;
    }
    if s.can_send() {
        ev |= EPOLLOUT | EPOLLWRNORM;
    }
    ev
}

impl<P: Platform> Core<P> {
    /// A fresh TCP socket with this instance's buffer sizes; `None` when
    /// the heap cannot give its buffers (the caller's `ENOMEM`/`ENOBUFS`,
    /// never the allocator's panic: sockets are made on system-call paths,
    /// as many as a user asks for).
    pub fn new_tcp(&self) -> Option<tcp::Socket<'static>> {
        let n = self.tcp_buffer_bytes;
        Some(tcp::Socket::new(
            tcp::SocketBuffer::new(try_zeroed(n)?),
            tcp::SocketBuffer::new(try_zeroed(n)?),
        ))
    }

    /// A fresh UDP socket; `None` when the heap cannot give its buffers.
    pub fn new_udp(&self) -> Option<udp::Socket<'static>> {
        let n = self.udp_buffer_bytes;
        let slots = (n / 256).clamp(8, 256);
        let meta = || {
            let mut v = Vec::new();
            v.try_reserve_exact(slots).ok()?;
            v.resize(slots, udp::PacketMetadata::EMPTY);
            Some(v)
        };
        Some(udp::Socket::new(
            udp::PacketBuffer::new(meta()?, try_zeroed(n)?),
            udp::PacketBuffer::new(meta()?, try_zeroed(n)?),
        ))
    }

    /// Add a socket if the per-instance cap allows.
    pub fn add_socket<S: smoltcp::socket::AnySocket<'static>>(
        &mut self,
        s: S,
    ) -> Option<SocketHandle> {
        if self.socket_count >= self.max_sockets {
            return None;
        }
        self.socket_count += 1;
        Some(self.sockets.add(s))
    }

    pub fn remove_socket(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
        self.socket_count -= 1;
    }

    /// Top up a listener's pool of listening sockets, within its backlog.
    pub fn refill_pool(&mut self, port: u16) {
        loop {
            let Some(slot) = self.listeners.get(&port) else {
                return;
            };
            let backlog = slot.shared.backlog.load(Ordering::Relaxed);
            let queued = slot.shared.queued.load(Ordering::Relaxed);
            if slot.pool.len() >= LISTEN_POOL_MAX.min(backlog) || queued + slot.pool.len() > backlog
            {
                return;
            }
            let (endpoint, nodelay) = (slot.endpoint, slot.nodelay);
            let Some(mut s) = self.new_tcp() else { return };
            s.set_nagle_enabled(!nodelay);
            // A half-open handshake gives its pool slot back after this long.
            s.set_timeout(Some(HANDSHAKE_TIMEOUT));
            if s.listen(endpoint).is_err() {
                return;
            }
            let Some(h) = self.add_socket(s) else { return };
            if let Some(slot) = self.listeners.get_mut(&port) {
                slot.pool.push(h);
            }
        }
    }

    /// Drop SYNs for listeners that have no listening socket left (their
    /// pool and accept queue are full), as Linux does: the client retries.
    /// A SYN for a port without a listener passes and gets smoltcp's RST.
    pub fn filter_syn_overflow(&mut self) {
        if self.listeners.is_empty() {
            return;
        }
        let mut budget: BTreeMap<u16, usize> = BTreeMap::new();
        let Core {
            dev,
            listeners,
            sockets,
            ..
        } = self;
        dev.rx.retain(|p| {
            let Some(info) = parse_ipv4(p) else {
                return true;
            };
            if !info.is_tcp_syn() {
                return true;
            }
            let Some(slot) = listeners.get(&info.dst_port) else {
                return true;
            };
            let left = budget.entry(info.dst_port).or_insert_with(|| {
                slot.pool
                    .iter()
                    .filter(|h| sockets.get::<tcp::Socket>(**h).state() == tcp::State::Listen)
                    .count()
            });
            if *left == 0 {
                return false;
            }
            *left -= 1;
            true
        });
    }

    /// After a poll: move established connections to accept queues, free
    /// dead ones, detect resets, free finished orphans and collect the
    /// waiters whose readiness changed.
    pub fn harvest(&mut self, now_ms: u64, wake: &mut Vec<Arc<P::Waiters>>) {
        // Listeners.
        let ports: Vec<u16> = self.listeners.keys().copied().collect();
        for port in ports {
            let mut freed = Vec::new();
            let mut woke = false;
            {
                let Core {
                    listeners, sockets, ..
                } = &mut *self;
                let slot = listeners.get_mut(&port).expect("port listed above");
                let endpoint = slot.endpoint;
                let mut i = 0;
                while i < slot.pool.len() {
                    let h = slot.pool[i];
                    let s = sockets.get_mut::<tcp::Socket>(h);
                    match s.state() {
                        tcp::State::Listen | tcp::State::SynReceived => i += 1,
                        tcp::State::Closed => {
                            // Reset during the handshake: listen again.
                            if s.listen(endpoint).is_err() {
                                slot.pool.swap_remove(i);
                                freed.push(h);
                            } else {
                                i += 1;
                            }
                        }
                        _ => {
                            slot.pool.swap_remove(i);
                            slot.queue.push_back(h);
                            slot.shared.queued.fetch_add(1, Ordering::AcqRel);
                            woke = true;
                        }
                    }
                }
                // Queued connections reset before accept are dropped.
                slot.queue.retain(|h| {
                    if sockets.get::<tcp::Socket>(*h).state() == tcp::State::Closed {
                        slot.shared.queued.fetch_sub(1, Ordering::AcqRel);
                        freed.push(*h);
                        false
                    } else {
                        true
                    }
                });
                if woke {
                    wake.push(slot.shared.waiters.clone());
                }
            }
            for h in freed {
                self.remove_socket(h);
            }
            self.refill_pool(port);
        }

        // Watched sockets.
        let mut dead = Vec::new();
        let Core {
            watches, sockets, ..
        } = &mut *self;
        for (h, w) in watches.iter_mut() {
            let ev = if w.is_tcp {
                let s = sockets.get_mut::<tcp::Socket>(*h);
                let st = s.state();
                if st != w.last_state {
                    if st == tcp::State::Closed && w.orphan_since.is_none() {
                        match w.last_state {
                            tcp::State::SynSent
                                if w.connect_deadline_ms.is_some_and(|d| now_ms >= d) =>
                            {
                                w.error = ETIMEDOUT.0
                            }
                            tcp::State::SynSent => w.error = ECONNREFUSED.0,
                            tcp::State::TimeWait | tcp::State::LastAck | tcp::State::Closed => {}
                            _ => w.error = ECONNRESET.0,
                        }
                    }
                    if w.last_state == tcp::State::SynSent && st != tcp::State::Closed {
                        // Connected: no user timeout from now on (as Linux's default).
                        s.set_timeout(None);
                        w.connect_deadline_ms = None;
                    }
                    w.last_state = st;
                }
                if let Some(since) = w.orphan_since {
                    if matches!(st, tcp::State::Closed | tcp::State::TimeWait)
                        || now_ms.saturating_sub(since) > ORPHAN_MAX_MS
                    {
                        s.abort();
                        dead.push(*h);
                        continue;
                    }
                }
                tcp_events(s, w.error)
            } else {
                udp_events(sockets.get::<udp::Socket>(*h))
            };
            if ev != w.last_events {
                w.last_events = ev;
                if let Some(wt) = &w.waiters {
                    wake.push(wt.clone());
                }
            }
        }
        for h in dead {
            self.watches.remove(&h);
            self.remove_socket(h);
        }
    }

    /// Close every socket of a listener slot (RST to queued connections).
    pub fn remove_listener(&mut self, port: u16, owner: u64) {
        let Some(slot) = self.listeners.get(&port) else {
            return;
        };
        if slot.owner != owner {
            return;
        }
        let slot = self.listeners.remove(&port).expect("checked above");
        for h in slot.pool.iter().chain(slot.queue.iter()) {
            self.sockets.get_mut::<tcp::Socket>(*h).abort();
        }
        // Aborted sockets must be polled once to send their RST; hand them
        // over as orphans that `harvest` frees when closed.
        for h in slot.pool.into_iter().chain(slot.queue) {
            let mut w =
                Watch::<P>::new(0, Arc::new(P::Waiters::default()), true, tcp::State::Closed);
            w.waiters = None;
            w.orphan_since = Some(0);
            self.watches.insert(h, w);
        }
        slot.shared.queued.store(0, Ordering::Release);
    }

    /// Deadline of the next timer event in ms, from smoltcp.
    pub fn next_deadline_ms(&mut self, now: Instant) -> u64 {
        let mut d = match self.iface.poll_delay(now, &self.sockets) {
            Some(delay) => (now + delay).total_millis().max(0) as u64,
            None => u64::MAX,
        };
        if !self.dev.rx.is_empty() {
            d = 0;
        }
        if self.watches.values().any(|w| w.orphan_since.is_some()) {
            d = d.min(now.total_millis().max(0) as u64 + 1000);
        }
        d
    }
}

/// Keep-alive interval set by SO_KEEPALIVE (Linux's default idle time is
/// 2 h; smoltcp has one interval for idle time and probes).
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(7200);

/// `n` zero bytes, or `None` when the heap cannot give them.  Filled by
/// copies of a zero page (memcpy even in unoptimised builds, where a
/// byte-by-byte `resize` of every socket's buffers slowed the host tests
/// enough for their handshake timers to fire).
fn try_zeroed(n: usize) -> Option<Vec<u8>> {
    static ZEROS: [u8; 4096] = [0; 4096];
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    while v.len() < n {
        let k = (n - v.len()).min(ZEROS.len());
        v.extend_from_slice(&ZEROS[..k]);
    }
    Some(v)
}
