//! AF_UNIX sockets: connected pairs (`socketpair`) of SOCK_STREAM,
//! SOCK_DGRAM and SOCK_SEQPACKET type, with Linux semantics: end of file
//! after the peer closed or shut down writing, `EPIPE` (and SIGPIPE, from
//! the framework) when writing to a closed peer, `ECONNRESET` when the peer
//! closed with unread data, bounded buffers (`BUFFER_BYTES` per direction,
//! Linux's default socket buffer), message boundaries for the message types.
//!
//! Owns `Pair`: both directions' buffers and shutdown state under one
//! `IrqSpinLock`, and one `PollWaiters` per end.  Invariants: every state
//! change notifies *both* ends after the lock is released; buffered bytes
//! per direction never exceed `BUFFER_BYTES`.
//!
//! Named sockets, for SOCK_STREAM and SOCK_SEQPACKET (bind, listen,
//! connect, accept, getsockname/getpeername; connect completes at once, as
//! on Linux): Linux's abstract namespace (`sun_path[0] == 0`), and path
//! names: bind creates a socket inode (`S_IFSOCK`) at the path
//! (`EADDRINUSE` if the path exists) and the name table maps that inode to
//! the socket; connect resolves the path (`ENOENT`...) and finds the
//! listener through the inode (`ECONNREFUSED` if it is not a socket or
//! nobody listens).  Unlinking the file makes the name unreachable, as on
//! Linux.  Datagram sendto/connect by name and autobind are not
//! implemented (EOPNOTSUPP, logged once).
//!
//! Must not: block (the framework in `socket.rs` does), or notify with the
//! pair's lock held.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::sockaddr::{SockAddr, UnixAddr};
use super::socket::{Received, Socket};
use super::*;
use crate::files::pollwait::PollWaiters;
use crate::sched::IrqSpinLock;
use abi::Errno;

/// Bytes buffered per direction (Linux's `net.core.wmem_default`).
pub const BUFFER_BYTES: usize = 212_992;

const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
const SHUTDOWN_MASK: u8 = 3;

const POLLIN: u32 = 0x001;
const POLLOUT: u32 = 0x004;
const POLLERR: u32 = 0x008;
const POLLHUP: u32 = 0x010;
const POLLRDHUP: u32 = 0x2000;

/// Bytes flowing towards one end.
#[derive(Default)]
struct Inbox {
    bytes: VecDeque<u8>,
    /// Lengths of the queued messages (message types only).
    records: VecDeque<usize>,
}

struct PairState {
    /// `inbox[i]`: what end `i` reads.
    inbox: [Inbox; 2],
    /// `RCV_SHUTDOWN`/`SEND_SHUTDOWN` bits of each end (Linux's
    /// `sk_shutdown`); a close sets the peer's to `SHUTDOWN_MASK` for the
    /// connection-oriented types.
    shutdown: [u8; 2],
    /// `sk_err` of each end (ECONNRESET after a close with unread data).
    error: [Option<Errno>; 2],
}

/// A connected pair: shared state and the readiness fan-out of each end
/// (the same `Arc` its `UnixSocket` hands out as `waiters()`).
struct Pair {
    state: IrqSpinLock<PairState>,
    waiters: [Arc<PollWaiters>; 2],
    sock_type: u32,
}

impl Pair {
    fn notify_both(&self) {
        self.waiters[0].notify();
        self.waiters[1].notify();
    }

    fn records(&self) -> bool {
        self.sock_type != SOCK_STREAM
    }
}

/// One end of a connected pair: the data path of a connected socket.
#[derive(Clone)]
struct PairEnd {
    pair: Arc<Pair>,
    side: usize,
}

/// A new pair whose ends announce readiness on `waiters`.
fn new_pair(sock_type: u32, waiters: [Arc<PollWaiters>; 2]) -> [PairEnd; 2] {
    let pair = Arc::new(Pair {
        state: IrqSpinLock::new(PairState {
            inbox: [Inbox::default(), Inbox::default()],
            shutdown: [0, 0],
            error: [None, None],
        }),
        waiters,
        sock_type,
    });
    [
        PairEnd {
            pair: pair.clone(),
            side: 0,
        },
        PairEnd { pair, side: 1 },
    ]
}

/// Both ends of a new connected pair of `sock_type` (already checked).
pub fn socketpair(sock_type: u32) -> (Arc<dyn Socket>, Arc<dyn Socket>) {
    let (a, b) = (UnixSocket::new(sock_type), UnixSocket::new(sock_type));
    let [ea, eb] = new_pair(sock_type, [a.waiters.clone(), b.waiters.clone()]);
    *a.state.lock() = State::Connected {
        end: ea,
        peer_name: None,
    };
    *b.state.lock() = State::Connected {
        end: eb,
        peer_name: None,
    };
    (a, b)
}

/// Whether `sock_type` is one AF_UNIX supports.
pub fn supports(sock_type: u32) -> bool {
    matches!(sock_type, SOCK_STREAM | SOCK_DGRAM | SOCK_SEQPACKET)
}

impl PairEnd {
    fn peer(&self) -> usize {
        1 - self.side
    }
}

impl Socket for PairEnd {
    fn family(&self) -> u32 {
        AF_UNIX
    }

    fn sock_type(&self) -> u32 {
        self.pair.sock_type
    }

    fn send(&self, data: &[u8], _flags: u32, to: Option<&SockAddr>) -> Result<usize, Errno> {
        if to.is_some() && self.pair.sock_type == SOCK_STREAM {
            return Err(EISCONN);
        }
        let records = self.pair.records();
        if records && data.len() > BUFFER_BYTES {
            return Err(EMSGSIZE);
        }
        let n = {
            let mut s = self.pair.state.lock();
            if s.shutdown[self.side] & SEND_SHUTDOWN != 0
                || s.shutdown[self.peer()] & RCV_SHUTDOWN != 0
            {
                if self.pair.sock_type == SOCK_DGRAM {
                    // An unconnected-style failure: the peer is gone.
                    return Err(ECONNREFUSED);
                }
                return Err(Errno::EPIPE);
            }
            let inbox = &mut s.inbox[self.peer()];
            let room = BUFFER_BYTES - inbox.bytes.len();
            let n = if records {
                if room < data.len() {
                    return Err(Errno::EAGAIN);
                }
                inbox.records.push_back(data.len());
                data.len()
            } else {
                if room == 0 && !data.is_empty() {
                    return Err(Errno::EAGAIN);
                }
                room.min(data.len())
            };
            inbox.bytes.extend(&data[..n]);
            n
        };
        self.pair.notify_both();
        Ok(n)
    }

    fn recv(&self, out: &mut [u8], flags: u32) -> Result<Received, Errno> {
        let peek = flags & MSG_PEEK != 0;
        let received = {
            let mut s = self.pair.state.lock();
            let side = self.side;
            let records = self.pair.records();
            let inbox = &mut s.inbox[side];
            let available = if records {
                inbox.records.front().copied()
            } else {
                (!inbox.bytes.is_empty()).then_some(inbox.bytes.len())
            };
            match available {
                Some(full_len) => {
                    let n = out.len().min(full_len);
                    for (dst, src) in out[..n].iter_mut().zip(inbox.bytes.iter()) {
                        *dst = *src;
                    }
                    if !peek {
                        // A message is consumed whole, even if truncated.
                        let consumed = if records { full_len } else { n };
                        inbox.bytes.drain(..consumed);
                        if records {
                            inbox.records.pop_front();
                        }
                    }
                    Received {
                        len: n,
                        full_len: if records { full_len } else { n },
                        // Linux reports no address for an unnamed sender.
                        from: None,
                    }
                }
                None => {
                    if let Some(e) = s.error[side].take() {
                        return Err(e);
                    }
                    if s.shutdown[side] & RCV_SHUTDOWN != 0 {
                        return Ok(Received {
                            len: 0,
                            full_len: 0,
                            from: None,
                        });
                    }
                    return Err(Errno::EAGAIN);
                }
            }
        };
        if !peek {
            self.pair.notify_both();
        }
        Ok(received)
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        let (mine, peers) = match how {
            SHUT_RD => (RCV_SHUTDOWN, SEND_SHUTDOWN),
            SHUT_WR => (SEND_SHUTDOWN, RCV_SHUTDOWN),
            SHUT_RDWR => (SHUTDOWN_MASK, SHUTDOWN_MASK),
            _ => return Err(Errno::EINVAL),
        };
        {
            let mut s = self.pair.state.lock();
            s.shutdown[self.side] |= mine;
            if self.pair.sock_type != SOCK_DGRAM {
                s.shutdown[self.peer()] |= peers;
            }
        }
        self.pair.notify_both();
        Ok(())
    }

    fn local_addr(&self) -> Result<SockAddr, Errno> {
        Ok(SockAddr::Unix(UnixAddr::Unnamed))
    }

    fn peer_addr(&self) -> Result<SockAddr, Errno> {
        Ok(SockAddr::Unix(UnixAddr::Unnamed))
    }

    fn take_error(&self) -> Option<Errno> {
        self.pair.state.lock().error[self.side].take()
    }

    fn poll(&self) -> u32 {
        let s = self.pair.state.lock();
        let me = self.side;
        let mut r = 0;
        if s.shutdown[me] == SHUTDOWN_MASK {
            r |= POLLHUP;
        }
        if s.shutdown[me] & RCV_SHUTDOWN != 0 {
            r |= POLLRDHUP | POLLIN;
        }
        if !s.inbox[me].bytes.is_empty() || !s.inbox[me].records.is_empty() {
            r |= POLLIN;
        }
        if s.error[me].is_some() {
            r |= POLLERR;
        }
        // Linux: writable while the bytes this end has queued use at most a
        // quarter of the buffer.
        if s.inbox[self.peer()].bytes.len() * 4 <= BUFFER_BYTES {
            r |= POLLOUT;
        }
        r
    }

    fn waiters(&self) -> &PollWaiters {
        &self.pair.waiters[self.side]
    }

    fn bytes_readable(&self) -> usize {
        let s = self.pair.state.lock();
        let inbox = &s.inbox[self.side];
        // Linux: the next datagram's size, or every byte queued for the
        // connection-oriented types (SOCK_SEQPACKET included).
        if self.pair.sock_type == SOCK_DGRAM {
            inbox.records.front().copied().unwrap_or(0)
        } else {
            inbox.bytes.len()
        }
    }

    fn on_close(&self) {
        {
            let mut s = self.pair.state.lock();
            let (me, peer) = (self.side, self.peer());
            s.shutdown[me] = SHUTDOWN_MASK;
            if self.pair.sock_type != SOCK_DGRAM {
                s.shutdown[peer] = SHUTDOWN_MASK;
                if !s.inbox[me].bytes.is_empty() {
                    s.error[peer] = Some(ECONNRESET);
                }
            }
            s.inbox[me] = Inbox::default();
        }
        self.pair.notify_both();
    }
}

static NAMED_LOGGED: AtomicBool = AtomicBool::new(false);

/// What is not implemented: logged once, EOPNOTSUPP.
fn path_unsupported<T>(what: &str) -> Result<T, Errno> {
    if !NAMED_LOGGED.swap(true, Ordering::Relaxed) {
        log::warn!("net: AF_UNIX {what} is not implemented: EOPNOTSUPP");
    }
    Err(EOPNOTSUPP)
}

/// The name a socket is bound to (or, for an accepted socket, its
/// listener's).
#[derive(Clone)]
enum Name {
    Abstract(Vec<u8>),
    /// The path as bound (what getsockname reports) and the socket inode
    /// bind created there.  Holding the inode keeps its address, the table
    /// key, from being reused while the name is bound.
    Path(Vec<u8>, Arc<::fs::Inode>),
    /// A path on the user-mode file server (`structure=servers`): the
    /// path as bound and the socket node's (`st_dev`, `st_ino`) there.
    /// The server's tmpfs does not reuse inode numbers, so the pair names
    /// the node as long as the name is bound.
    Remote(Vec<u8>, u64, u64),
}

/// The name table's key: abstract names by their bytes, path names by
/// their socket inode (so renames and other paths to it keep working).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum NameKey {
    Abstract(Vec<u8>),
    Inode(usize),
    Remote(u64, u64),
}

impl Name {
    fn key(&self) -> NameKey {
        match self {
            Name::Abstract(n) => NameKey::Abstract(n.clone()),
            Name::Path(_, inode) => NameKey::Inode(Arc::as_ptr(inode) as usize),
            Name::Remote(_, dev, ino) => NameKey::Remote(*dev, *ino),
        }
    }

    fn addr(&self) -> UnixAddr {
        match self {
            Name::Abstract(n) => UnixAddr::Abstract(n.clone()),
            Name::Path(p, _) | Name::Remote(p, ..) => UnixAddr::Path(p.clone()),
        }
    }
}

/// Bound names -> bound socket.  Entries of closed sockets are removed by
/// their `on_close` (and skipped if dead).  One table for the whole
/// system, like the file-system namespace it mirrors: binds and connects
/// by name are rare next to the data path, which never takes this lock.
static NAMES: spin::Mutex<BTreeMap<NameKey, Weak<UnixSocket>>> = spin::Mutex::new(BTreeMap::new());

/// The directory a path name is resolved from, the path as text, and the
/// caller's umask.
fn path_start(path: &[u8]) -> Result<(Arc<::fs::Inode>, &str, u32), Errno> {
    let text = core::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
    crate::files::with_files(|_, ctx| {
        let start = if text.starts_with('/') {
            crate::files::root_fs().root()
        } else {
            ctx.cwd()
        };
        (start, text, ctx.umask())
    })
}

/// `structure=servers`: the file-server directory handle a path name is
/// resolved from (`None`: the kernel's tree, as `/dev`, `/proc`), with
/// what keeps a working-directory handle alive during the call.
type ServerStart = (
    fsproto::Handle,
    Option<Arc<crate::files::remote::RemoteHandle>>,
);

fn server_start(text: &str) -> Option<ServerStart> {
    if !crate::files::remote::active() {
        return None;
    }
    if text.starts_with('/') {
        return (!crate::files::remote::kernel_path(text))
            .then(|| (crate::files::remote::root(), None));
    }
    let cwd = crate::files::with_files(|_, ctx| ctx.remote_cwd()).ok()??;
    Some((cwd.handle, Some(cwd)))
}

/// The (`st_dev`, `st_ino`) of the socket node `text` names on the file
/// server; `ECONNREFUSED` if it is not a socket.
fn remote_socket_node(dir: fsproto::Handle, text: &str) -> Result<(u64, u64), Errno> {
    let st = crate::files::remote::stat(fsproto::At {
        dir,
        path: text,
        flags: 0,
    })?;
    if st.mode & 0o170000 != 0o140000 {
        return Err(ECONNREFUSED);
    }
    Ok((st.dev, st.ino))
}

/// Creates the socket inode of `bind(path)`.
fn create_path_name(path: &[u8]) -> Result<Name, Errno> {
    let text = core::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
    if let Some((dir, _hold)) = server_start(text) {
        let umask = crate::files::with_files(|_, ctx| ctx.umask())?;
        crate::files::remote::mknod(dir, text, 0o140000 | (0o777 & !umask), 0).map_err(|e| {
            if e == Errno::EEXIST {
                EADDRINUSE
            } else {
                e
            }
        })?;
        let (dev, ino) = remote_socket_node(dir, text)?;
        return Ok(Name::Remote(path.to_vec(), dev, ino));
    }
    let (start, text, umask) = path_start(path)?;
    let inode = crate::files::root_fs()
        .mknod(&start, text, ::fs::FileType::Socket, 0o777 & !umask, 0)
        .map_err(|e| match crate::files::errno(e) {
            e if e == Errno::EEXIST => EADDRINUSE,
            e => e,
        })?;
    Ok(Name::Path(path.to_vec(), inode))
}

/// The table key of the socket inode `connect(path)` names.
fn resolve_path_name(path: &[u8]) -> Result<NameKey, Errno> {
    let text = core::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
    if let Some((dir, _hold)) = server_start(text) {
        let (dev, ino) = remote_socket_node(dir, text)?;
        return Ok(NameKey::Remote(dev, ino));
    }
    let (start, text, _) = path_start(path)?;
    let inode = crate::files::root_fs()
        .lookup(&start, text, true)
        .map_err(crate::files::errno)?;
    if inode.kind() != ::fs::FileType::Socket {
        return Err(ECONNREFUSED);
    }
    Ok(NameKey::Inode(Arc::as_ptr(&inode) as usize))
}

/// Connection requests a listener queues at most (Linux caps the backlog
/// at `somaxconn`, 4096).
const MAX_BACKLOG: usize = 4096;

enum State {
    /// From socket(2): maybe bound, not connected.
    Unconnected,
    /// listen(2) was called: connections wait in `queue` for accept.
    Listening {
        backlog: usize,
        queue: VecDeque<Arc<UnixSocket>>,
    },
    Connected {
        end: PairEnd,
        peer_name: Option<Name>,
    },
    /// After on_close.
    Closed,
}

/// An AF_UNIX socket of any state.  Lock order: `state`, then the pair's
/// lock; `NAMES` before either.
pub struct UnixSocket {
    sock_type: u32,
    me: Weak<UnixSocket>,
    waiters: Arc<PollWaiters>,
    /// The name this socket is bound to.
    name: spin::Mutex<Option<Name>>,
    state: IrqSpinLock<State>,
}

/// A new unconnected AF_UNIX socket.
pub fn create(sock_type: u32) -> Arc<dyn Socket> {
    UnixSocket::new(sock_type)
}

fn name_addr(name: Option<&Name>) -> SockAddr {
    SockAddr::Unix(name.map_or(UnixAddr::Unnamed, Name::addr))
}

impl UnixSocket {
    fn new(sock_type: u32) -> Arc<UnixSocket> {
        Arc::new_cyclic(|me| UnixSocket {
            sock_type,
            me: me.clone(),
            waiters: Arc::new(PollWaiters::new()),
            name: spin::Mutex::new(None),
            state: IrqSpinLock::new(State::Unconnected),
        })
    }

    /// The data path, if connected.
    fn end(&self) -> Option<PairEnd> {
        match &*self.state.lock() {
            State::Connected { end, .. } => Some(end.clone()),
            _ => None,
        }
    }

    fn connection_oriented(&self) -> bool {
        self.sock_type != SOCK_DGRAM
    }
}

impl Socket for UnixSocket {
    fn family(&self) -> u32 {
        AF_UNIX
    }

    fn sock_type(&self) -> u32 {
        self.sock_type
    }

    fn bind(&self, addr: &SockAddr) -> Result<(), Errno> {
        if self.name.lock().is_some() {
            return Err(Errno::EINVAL);
        }
        let name = match addr {
            SockAddr::Unix(UnixAddr::Abstract(n)) => Name::Abstract(n.clone()),
            // Creating the file is the path's claim (EADDRINUSE if taken).
            SockAddr::Unix(UnixAddr::Path(p)) => create_path_name(p)?,
            // Linux autobinds to a generated abstract name here.
            SockAddr::Unix(UnixAddr::Unnamed) => return path_unsupported("autobind"),
            SockAddr::Inet { .. } => return Err(Errno::EINVAL),
        };
        let key = name.key();
        let mut names = NAMES.lock();
        let mut mine = self.name.lock();
        if mine.is_some() {
            return Err(Errno::EINVAL);
        }
        if names.get(&key).is_some_and(|w| w.strong_count() > 0) {
            return Err(EADDRINUSE);
        }
        names.insert(key, self.me.clone());
        *mine = Some(name);
        Ok(())
    }

    fn listen(&self, backlog: i32) -> Result<(), Errno> {
        if !self.connection_oriented() {
            return Err(EOPNOTSUPP);
        }
        if self.name.lock().is_none() {
            return Err(Errno::EINVAL);
        }
        let backlog = (backlog.max(0) as usize).min(MAX_BACKLOG);
        let mut state = self.state.lock();
        match &mut *state {
            State::Unconnected => {
                *state = State::Listening {
                    backlog,
                    queue: VecDeque::new(),
                }
            }
            State::Listening { backlog: b, .. } => *b = backlog,
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    fn is_listening(&self) -> bool {
        matches!(*self.state.lock(), State::Listening { .. })
    }

    fn accept(&self) -> Result<(Arc<dyn Socket>, Option<SockAddr>), Errno> {
        let conn = match &mut *self.state.lock() {
            State::Listening { queue, .. } => queue.pop_front().ok_or(Errno::EAGAIN)?,
            _ => return Err(Errno::EINVAL),
        };
        let peer = conn.peer_addr().ok();
        Ok((conn, peer))
    }

    fn connect(&self, addr: &SockAddr) -> Result<(), Errno> {
        let key = match addr {
            SockAddr::Unix(UnixAddr::Abstract(n)) => NameKey::Abstract(n.clone()),
            SockAddr::Unix(UnixAddr::Path(p)) => resolve_path_name(p)?,
            SockAddr::Unix(UnixAddr::Unnamed) => return Err(Errno::EINVAL),
            SockAddr::Inet { .. } => return Err(Errno::EINVAL),
        };
        if !self.connection_oriented() {
            return path_unsupported("datagram connect by name");
        }
        match &*self.state.lock() {
            State::Unconnected => {}
            State::Connected { .. } => return Err(EISCONN),
            _ => return Err(Errno::EINVAL),
        }
        let listener = NAMES
            .lock()
            .get(&key)
            .and_then(|w| w.upgrade())
            .ok_or(ECONNREFUSED)?;
        let name = listener.name.lock().clone().ok_or(ECONNREFUSED)?;
        if listener.sock_type != self.sock_type {
            return Err(EPROTOTYPE);
        }
        let server = UnixSocket::new(self.sock_type);
        *server.name.lock() = Some(name.clone());
        let [client_end, server_end] = new_pair(
            self.sock_type,
            [self.waiters.clone(), server.waiters.clone()],
        );
        *server.state.lock() = State::Connected {
            end: server_end,
            peer_name: self.name.lock().clone(),
        };
        {
            let mut lstate = listener.state.lock();
            match &mut *lstate {
                State::Listening { backlog, queue } => {
                    if queue.len() > *backlog {
                        return Err(Errno::EAGAIN);
                    }
                    queue.push_back(server);
                }
                _ => return Err(ECONNREFUSED),
            }
        }
        // Connected before the listener hears of it: accept never returns
        // a socket whose client is still unconnected.
        *self.state.lock() = State::Connected {
            end: client_end,
            peer_name: Some(name),
        };
        listener.waiters.notify();
        self.waiters.notify();
        Ok(())
    }

    fn send(&self, data: &[u8], flags: u32, to: Option<&SockAddr>) -> Result<usize, Errno> {
        match self.end() {
            Some(end) => end.send(data, flags, to),
            None if self.sock_type == SOCK_DGRAM => path_unsupported("datagram sendto by name"),
            None => Err(ENOTCONN),
        }
    }

    fn recv(&self, out: &mut [u8], flags: u32) -> Result<Received, Errno> {
        match self.end() {
            Some(end) => end.recv(out, flags),
            // Nothing can reach an unconnected datagram socket yet.
            None if self.sock_type == SOCK_DGRAM => Err(Errno::EAGAIN),
            None => Err(Errno::EINVAL),
        }
    }

    fn shutdown(&self, how: u32) -> Result<(), Errno> {
        match self.end() {
            Some(end) => end.shutdown(how),
            None => Err(ENOTCONN),
        }
    }

    fn local_addr(&self) -> Result<SockAddr, Errno> {
        Ok(name_addr(self.name.lock().as_ref()))
    }

    fn peer_addr(&self) -> Result<SockAddr, Errno> {
        match &*self.state.lock() {
            State::Connected { peer_name, .. } => Ok(name_addr(peer_name.as_ref())),
            _ => Err(ENOTCONN),
        }
    }

    fn take_error(&self) -> Option<Errno> {
        self.end().and_then(|end| end.take_error())
    }

    fn poll(&self) -> u32 {
        if let Some(end) = self.end() {
            return end.poll();
        }
        match &*self.state.lock() {
            State::Listening { queue, .. } => {
                if queue.is_empty() {
                    0
                } else {
                    POLLIN
                }
            }
            _ if self.sock_type == SOCK_DGRAM => POLLOUT,
            _ => POLLOUT | POLLHUP,
        }
    }

    fn waiters(&self) -> &PollWaiters {
        &self.waiters
    }

    fn bytes_readable(&self) -> usize {
        self.end().map_or(0, |end| end.bytes_readable())
    }

    fn on_close(&self) {
        // Take the name first: the name lock is not held while the table's
        // is (bind takes the table's lock, then the name's).
        let name = self.name.lock().take();
        if let Some(name) = name {
            let key = name.key();
            let mut names = NAMES.lock();
            if names
                .get(&key)
                .is_some_and(|w| core::ptr::eq(w.as_ptr(), self as *const UnixSocket))
            {
                names.remove(&key);
            }
        }
        let old = core::mem::replace(&mut *self.state.lock(), State::Closed);
        match old {
            State::Connected { end, .. } => end.on_close(),
            // Connections never accepted are reset.
            State::Listening { queue, .. } => {
                for conn in queue {
                    conn.on_close();
                }
            }
            _ => {}
        }
        self.waiters.notify();
    }
}
