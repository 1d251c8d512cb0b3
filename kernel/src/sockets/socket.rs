//! The socket framework: the `Socket` trait every family implements, and
//! the rules common to all of them, applied here once: blocking (on the
//! socket's `PollWaiters`) unless `O_NONBLOCK`/`MSG_DONTWAIT`,
//! `SO_RCVTIMEO`/`SO_SNDTIMEO`, `EINTR` on signals, `SIGPIPE` on `EPIPE`
//! unless `MSG_NOSIGNAL`, and the `SOL_SOCKET` options every socket has.
//!
//! Invariants: trait operations never block: they return `EAGAIN` (or
//! `EINPROGRESS` for a connect in progress) and announce every later state
//! change through `waiters().notify()`.  The framework retries an
//! operation only after a notify that came after the failed attempt (a
//! `PollWaker` subscribed before the retry), so no wakeup is lost and no
//! busy loop forms when `poll` and the operation disagree.
//!
//! Must not: hold a socket's lock while blocking or copying user memory
//! (the syscall layer copies; this file works on kernel buffers).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::sockaddr::SockAddr;
use super::*;
use crate::files::pollwait::{PollWaiters, PollWaker};
use crate::files::File;
use abi::Errno;

/// What `recv` returns: bytes copied, the datagram's full length (bigger
/// than `len` when it was truncated), and the sender's address if the
/// family reports one.
pub struct Received {
    pub len: usize,
    pub full_len: usize,
    pub from: Option<SockAddr>,
}

/// One socket of some family.  Every operation is non-blocking.
pub trait Socket: Send + Sync {
    /// `AF_UNIX`, `AF_INET`...
    fn family(&self) -> u32;
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
    fn sock_type(&self) -> u32;
    /// `SO_PROTOCOL`.
    fn protocol(&self) -> u32 {
        0
    }
    fn bind(&self, _addr: &SockAddr) -> Result<(), Errno> {
        Err(EOPNOTSUPP)
    }
    fn listen(&self, _backlog: i32) -> Result<(), Errno> {
        Err(EOPNOTSUPP)
    }
    /// A pending connection, or `EAGAIN`.
    fn accept(&self) -> Result<(Arc<dyn Socket>, Option<SockAddr>), Errno> {
        Err(EOPNOTSUPP)
    }
    /// Starts or completes a connection: `Ok` when connected, `EINPROGRESS`
    /// while it is being set up, or the error.  For a blocking socket the
    /// framework calls it again after every notify until it stops saying
    /// `EINPROGRESS`/`EALREADY` (so the second call after completion must
    /// return `Ok` or the connection's error, as on Linux).
    fn connect(&self, _addr: &SockAddr) -> Result<(), Errno> {
        Err(EOPNOTSUPP)
    }
    /// Queues bytes (a whole datagram for message types); `EAGAIN` when
    /// there is no room, `EPIPE` when the sending side is shut.
    fn send(&self, data: &[u8], flags: u32, to: Option<&SockAddr>) -> Result<usize, Errno>;
    /// Takes (or with `MSG_PEEK` copies) received bytes; `EAGAIN` when
    /// none, `len == 0` at end of stream.
    fn recv(&self, out: &mut [u8], flags: u32) -> Result<Received, Errno>;
    fn shutdown(&self, how: u32) -> Result<(), Errno>;
    fn local_addr(&self) -> Result<SockAddr, Errno>;
    fn peer_addr(&self) -> Result<SockAddr, Errno>;
    /// Family-specific options (SOL_SOCKET ones the framework does not
    /// serve itself, and other levels).
    fn setsockopt(&self, _level: i32, _name: i32, _value: &[u8]) -> Result<(), Errno> {
        Err(ENOPROTOOPT)
    }
    fn getsockopt(&self, _level: i32, _name: i32) -> Result<Vec<u8>, Errno> {
        Err(ENOPROTOOPT)
    }
    /// `SO_ERROR`: the pending error, cleared.
    fn take_error(&self) -> Option<Errno> {
        None
    }
    /// Readiness: poll(2) bits (`POLLIN`, `POLLOUT`, `POLLHUP`, `POLLERR`,
    /// and `POLLRDHUP` = 0x2000).
    fn poll(&self) -> u32;
    /// Where every readiness change is announced.
    fn waiters(&self) -> &PollWaiters;
    /// `FIONREAD`/`SIOCINQ`: bytes the next read could return.
    fn bytes_readable(&self) -> usize {
        0
    }
    /// Whether this is a listening socket (`SO_ACCEPTCONN`).
    fn is_listening(&self) -> bool {
        false
    }
    /// The last file referring to the socket is gone.
    fn on_close(&self);
}

/// Waits until an operation that returned `EAGAIN` may succeed.
/// `attempt` is retried after every notify that follows a failed try.
/// `nonblock` returns `EAGAIN` at once; `timeout_ns` (0 = none) gives
/// `EAGAIN` when it passes; a signal gives `EINTR`.
fn retry_blocking<T>(
    sock: &dyn Socket,
    nonblock: bool,
    timeout_ns: u64,
    mut attempt: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    let first = attempt();
    if !matches!(first, Err(e) if e == Errno::EAGAIN) || nonblock {
        return first;
    }
    let deadline =
        (timeout_ns != 0).then(|| crate::arch::time::now_ns().saturating_add(timeout_ns));
    let waker = PollWaker::new();
    let sub = waker.as_subscriber();
    sock.waiters().subscribe(sub.clone());
    let result = loop {
        let seen = waker.sequence();
        match attempt() {
            Err(e) if e == Errno::EAGAIN => {}
            other => break other,
        }
        if crate::proc::signal_pending() {
            break Err(Errno::EINTR);
        }
        if !waker.wait_change(seen, deadline) {
            break Err(Errno::EAGAIN);
        }
    };
    sock.waiters().unsubscribe(&sub);
    result
}

fn raise_sigpipe() {
    if let Some(p) = crate::proc::current() {
        crate::proc::signal::send_to_process(&p, crate::proc::signal::SIGPIPE);
    }
}

/// send/sendto/sendmsg/write: the whole buffer for blocking stream
/// sockets (partial progress is returned on a signal, timeout or error),
/// one datagram for message sockets.
pub fn send(
    file: &File,
    sock: &dyn Socket,
    data: &[u8],
    flags: u32,
    to: Option<&SockAddr>,
) -> Result<usize, Errno> {
    let nonblock = file.nonblocking() || flags & MSG_DONTWAIT != 0;
    let stream = sock.sock_type() == SOCK_STREAM;
    let mut done = 0;
    loop {
        let res = retry_blocking(sock, nonblock, file.socket_timeout(true), || {
            sock.send(&data[done..], flags, to)
        });
        match res {
            Ok(n) => {
                done += n;
                if !stream || nonblock || done >= data.len() {
                    return Ok(done);
                }
            }
            Err(e) => {
                if e == Errno::EPIPE && flags & MSG_NOSIGNAL == 0 {
                    raise_sigpipe();
                }
                return if done > 0 { Ok(done) } else { Err(e) };
            }
        }
    }
}

/// recv/recvfrom/recvmsg/read.
pub fn recv(file: &File, sock: &dyn Socket, out: &mut [u8], flags: u32) -> Result<Received, Errno> {
    let nonblock = file.nonblocking() || flags & MSG_DONTWAIT != 0;
    retry_blocking(sock, nonblock, file.socket_timeout(false), || {
        sock.recv(out, flags)
    })
}

/// accept/accept4.
pub fn accept(
    file: &File,
    sock: &dyn Socket,
) -> Result<(Arc<dyn Socket>, Option<SockAddr>), Errno> {
    if !sock.is_listening() {
        return Err(Errno::EINVAL);
    }
    retry_blocking(sock, file.nonblocking(), file.socket_timeout(false), || {
        sock.accept()
    })
}

/// connect: waits for a connection in progress unless non-blocking.
/// While waiting, the family's `connect` is called again after each notify
/// (Linux's "second connect"): `Ok` once connected, the error if the
/// attempt failed, `EINPROGRESS`/`EALREADY` while it is still going.
pub fn connect(file: &File, sock: &dyn Socket, addr: &SockAddr) -> Result<(), Errno> {
    match sock.connect(addr) {
        Err(e) if e == EINPROGRESS && !file.nonblocking() => {}
        other => return other,
    }
    let res = retry_blocking(sock, false, file.socket_timeout(true), || {
        match sock.connect(addr) {
            Err(e) if e == EINPROGRESS || e == EALREADY => Err(Errno::EAGAIN),
            other => other,
        }
    });
    match res {
        // Linux: a connect that timed out keeps going in the background.
        Err(e) if e == Errno::EAGAIN => Err(EINPROGRESS),
        other => other,
    }
}

/// Reads a `struct timeval` option value as nanoseconds (0 = no timeout).
fn timeval_ns(value: &[u8]) -> Result<u64, Errno> {
    if value.len() < 16 {
        return Err(Errno::EINVAL);
    }
    let sec = i64::from_ne_bytes(value[0..8].try_into().map_err(|_| Errno::EINVAL)?);
    let usec = i64::from_ne_bytes(value[8..16].try_into().map_err(|_| Errno::EINVAL)?);
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM); // as Linux
    }
    if sec < 0 {
        return Ok(0);
    }
    Ok((sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(usec as u64 * 1000))
}

fn int_value(value: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = value
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(Errno::EINVAL)?;
    Ok(i32::from_ne_bytes(b))
}

/// setsockopt: the framework's SOL_SOCKET options, else the family's.
pub fn setsockopt(
    file: &File,
    sock: &dyn Socket,
    level: i32,
    name: i32,
    value: &[u8],
) -> Result<(), Errno> {
    if level == SOL_SOCKET {
        match name {
            SO_RCVTIMEO | SO_SNDTIMEO => {
                let ns = timeval_ns(value)?;
                file.set_socket_timeout(name == SO_SNDTIMEO, ns);
                return Ok(());
            }
            SO_TYPE | SO_ERROR | SO_PROTOCOL | SO_DOMAIN | SO_ACCEPTCONN => {
                return Err(ENOPROTOOPT)
            }
            _ => {}
        }
        return match sock.setsockopt(level, name, value) {
            // Buffer sizes are accepted and ignored by families that keep
            // fixed buffers (Linux clamps them too).
            Err(e) if e == ENOPROTOOPT && matches!(name, SO_SNDBUF | SO_RCVBUF) => {
                int_value(value).map(|_| ())
            }
            other => other,
        };
    }
    sock.setsockopt(level, name, value)
}

/// getsockopt: the value bytes (the syscall truncates to the caller's
/// length).
pub fn getsockopt(file: &File, sock: &dyn Socket, level: i32, name: i32) -> Result<Vec<u8>, Errno> {
    let int = |v: u32| Ok((v as i32).to_ne_bytes().to_vec());
    if level == SOL_SOCKET {
        match name {
            SO_TYPE => return int(sock.sock_type()),
            SO_DOMAIN => return int(sock.family()),
            SO_PROTOCOL => return int(sock.protocol()),
            SO_ACCEPTCONN => return int(sock.is_listening() as u32),
            SO_ERROR => return int(sock.take_error().map_or(0, |e| e.0 as u32)),
            SO_RCVTIMEO | SO_SNDTIMEO => {
                let ns = file.socket_timeout(name == SO_SNDTIMEO);
                let mut v = ((ns / 1_000_000_000) as i64).to_ne_bytes().to_vec();
                v.extend_from_slice(&(((ns % 1_000_000_000) / 1000) as i64).to_ne_bytes());
                return Ok(v);
            }
            _ => {}
        }
    }
    sock.getsockopt(level, name)
}
