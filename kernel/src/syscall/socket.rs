//! Socket and epoll system calls, with Linux numbers, structures and errno
//! values: socket, socketpair, bind, listen, accept, accept4, connect,
//! sendto, recvfrom, sendmsg, recvmsg, shutdown, getsockname, getpeername,
//! setsockopt, getsockopt; epoll_create, epoll_create1, epoll_ctl,
//! epoll_wait, epoll_pwait.
//!
//! Owns the translation between the ABI (user pointers, `msghdr`,
//! `sockaddr`, option buffers, packed 12-byte `epoll_event`) and the kernel
//! objects (`crate::sockets` sockets, `crate::files::epoll`).  Every user pointer
//! goes through `memory::uaccess` (via `sockets::sockaddr` for addresses).
//!
//! Must not: block except through `sockets::socket`'s helpers and the epoll
//! wait below (both end on signals with EINTR), or hold a socket or epoll
//! lock while copying user memory.

use crate::memory::kbuf;
use abi::poll::EPOLL_CLOEXEC;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ::fs::oflags::O_NONBLOCK;

use crate::files::epoll::{Epoll, EPOLL_CTL_DEL};
use crate::files::{File, FileRef};
use crate::memory::uaccess::UserAddr;
use crate::sockets::sockaddr::{self, SockAddr};
use crate::sockets::*;
use abi::structs::EpollEvent;
use abi::{Errno, SysResult};

/// The calling process, borrowed through the running task (which keeps it
/// alive for the whole call), not cloned: the threads of a process would
/// all write its reference count on every call.
fn proc() -> Result<&'static crate::proc::Process, Errno> {
    crate::proc::current_task()
        .map(|t| &*t.process)
        .ok_or(Errno::EBADF)
}

/// The open file `fd` and its socket: `EBADF`, or `ENOTSOCK`.
fn socket_of(fd: i32) -> Result<(FileRef, Arc<dyn Socket>), Errno> {
    let f = proc()?.files.fds.get(fd)?;
    let s = f.as_socket().cloned().ok_or(ENOTSOCK)?;
    Ok((f, s))
}

/// Installs a new socket file; SOCK_NONBLOCK/SOCK_CLOEXEC from `flags`.
fn install(sock: Arc<dyn Socket>, flags: u32) -> Result<i32, Errno> {
    let nonblock = if flags & SOCK_NONBLOCK != 0 {
        O_NONBLOCK
    } else {
        0
    };
    let f = File::socket(sock, nonblock);
    proc()?.files.fds.insert(f, flags & SOCK_CLOEXEC != 0)
}

/// Splits socket()'s type into the type and its flags; `EINVAL` for
/// unknown flags.
fn split_type(raw: u32) -> Result<(u32, u32), Errno> {
    let flags = raw & !SOCK_TYPE_MASK;
    // SOCK_MAX is 11 (SOCK_PACKET + 1).
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 || raw & SOCK_TYPE_MASK >= 11 {
        return Err(Errno::EINVAL);
    }
    Ok((raw & SOCK_TYPE_MASK, flags))
}

/// A new AF_UNIX socket's type, after Linux's checks.
fn unix_type(sock_type: u32, protocol: u32) -> Result<u32, Errno> {
    if protocol != 0 && protocol != AF_UNIX {
        return Err(EPROTONOSUPPORT);
    }
    match sock_type {
        // Linux treats SOCK_RAW as SOCK_DGRAM for AF_UNIX.
        SOCK_RAW => Ok(SOCK_DGRAM),
        t if unix::supports(t) => Ok(t),
        _ => Err(ESOCKTNOSUPPORT),
    }
}

pub fn sys_socket(domain: u32, raw_type: u32, protocol: u32) -> SysResult {
    let (sock_type, flags) = split_type(raw_type)?;
    let sock = match domain {
        AF_UNIX => unix::create(unix_type(sock_type, protocol)?),
        AF_INET => inet::create(sock_type, protocol)?,
        _ => return Err(EAFNOSUPPORT),
    };
    install(sock, flags).map(|fd| fd as usize)
}

pub fn sys_socketpair(domain: u32, raw_type: u32, protocol: u32, fds: UserAddr) -> SysResult {
    let (sock_type, flags) = split_type(raw_type)?;
    match domain {
        AF_UNIX => {}
        AF_INET => return Err(EOPNOTSUPP),
        _ => return Err(EAFNOSUPPORT),
    }
    let sock_type = unix_type(sock_type, protocol)?;
    let (a, b) = unix::socketpair(sock_type);
    let p = proc()?;
    let fa = install(a, flags)?;
    let fb = match install(b, flags) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = p.files.fds.close(fa);
            return Err(e);
        }
    };
    if let Err(e) = fds.write(&[fa, fb]) {
        let _ = p.files.fds.close(fa);
        let _ = p.files.fds.close(fb);
        return Err(e);
    }
    Ok(0)
}

pub fn sys_bind(fd: i32, addr: UserAddr, len: u32) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let sa = sockaddr::read_sockaddr(addr, len)?;
    s.bind(&sa).map(|_| 0)
}

pub fn sys_listen(fd: i32, backlog: i32) -> SysResult {
    let (_, s) = socket_of(fd)?;
    s.listen(backlog).map(|_| 0)
}

pub fn sys_accept4(fd: i32, addr: UserAddr, addrlen: UserAddr, flags: u32) -> SysResult {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let (f, s) = socket_of(fd)?;
    if !addr.is_null() {
        // Fail before taking a connection off the queue.
        let room: i32 = addrlen.read()?;
        if room < 0 {
            return Err(Errno::EINVAL);
        }
    }
    let (new, peer) = socket::accept(&f, &*s)?;
    if !addr.is_null() {
        let peer = match peer {
            Some(p) => p,
            None => new.peer_addr()?,
        };
        sockaddr::write_sockaddr(addr, addrlen, &peer)?;
    }
    install(new, flags).map(|fd| fd as usize)
}

pub fn sys_connect(fd: i32, addr: UserAddr, len: u32) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let sa = sockaddr::read_sockaddr(addr, len)?;
    socket::connect(&f, &*s, &sa).map(|_| 0)
}

/// Bytes moved through one kernel buffer per send/recv call at most.
const MAX_TRANSFER: usize = 1 << 20;

pub fn sys_sendto(
    fd: i32,
    buf: UserAddr,
    len: u64,
    flags: u32,
    addr: UserAddr,
    addrlen: u32,
) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let len = (len as usize).min(MAX_TRANSFER);
    let mut data = kbuf::zeroed(len)?;
    buf.read_bytes(&mut data)?;
    let to = if !addr.is_null() {
        Some(sockaddr::read_sockaddr(addr, addrlen)?)
    } else {
        None
    };
    socket::send(&f, &*s, &data, flags, to.as_ref())
}

pub fn sys_recvfrom(
    fd: i32,
    buf: UserAddr,
    len: u64,
    flags: u32,
    addr: UserAddr,
    addrlen: UserAddr,
) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let mut data = kbuf::zeroed((len as usize).min(MAX_TRANSFER))?;
    let r = socket::recv(&f, &*s, &mut data, flags)?;
    buf.write_bytes(&data[..r.len])?;
    if !addr.is_null() {
        match &r.from {
            Some(sa) => sockaddr::write_sockaddr(addr, addrlen, sa)?,
            None => addrlen.write(&0u32)?,
        }
    }
    Ok(if flags & MSG_TRUNC != 0 {
        r.full_len
    } else {
        r.len
    })
}

pub fn sys_sendmsg(fd: i32, msg: UserAddr, flags: u32) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let hdr = sockaddr::read_msghdr(msg)?;
    let data = sockaddr::gather(&hdr.iov, MAX_TRANSFER)?;
    let to = if !hdr.name.is_null() && hdr.namelen != 0 {
        Some(sockaddr::read_sockaddr(hdr.name, hdr.namelen)?)
    } else {
        None
    };
    socket::send(
        &f,
        &*s,
        &data[..data.len().min(MAX_TRANSFER)],
        flags,
        to.as_ref(),
    )
}

pub fn sys_recvmsg(fd: i32, msg: UserAddr, flags: u32) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let hdr = sockaddr::read_msghdr(msg)?;
    let total: u64 = hdr.iov.iter().map(|&(_, l)| l).sum();
    let mut data = kbuf::zeroed((total as usize).min(MAX_TRANSFER))?;
    let r = socket::recv(&f, &*s, &mut data, flags)?;
    sockaddr::scatter(&hdr.iov, &data[..r.len])?;
    let msg_flags = if r.full_len > r.len { MSG_TRUNC } else { 0 };
    sockaddr::finish_recvmsg(msg, &hdr, r.from.as_ref(), msg_flags)?;
    Ok(if flags & MSG_TRUNC != 0 {
        r.full_len
    } else {
        r.len
    })
}

pub fn sys_shutdown(fd: i32, how: u32) -> SysResult {
    let (_, s) = socket_of(fd)?;
    if how > SHUT_RDWR {
        return Err(Errno::EINVAL);
    }
    s.shutdown(how).map(|_| 0)
}

pub fn sys_getsockname(fd: i32, addr: UserAddr, addrlen: UserAddr) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let sa: SockAddr = s.local_addr()?;
    sockaddr::write_sockaddr(addr, addrlen, &sa).map(|_| 0)
}

pub fn sys_getpeername(fd: i32, addr: UserAddr, addrlen: UserAddr) -> SysResult {
    let (_, s) = socket_of(fd)?;
    let sa = s.peer_addr()?;
    sockaddr::write_sockaddr(addr, addrlen, &sa).map(|_| 0)
}

/// Longest option value read from user space.
const MAX_OPTION: u32 = 256;

pub fn sys_setsockopt(fd: i32, level: i32, name: i32, value: UserAddr, len: i32) -> SysResult {
    let (f, s) = socket_of(fd)?;
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let mut v = kbuf::zeroed((len as u32).min(MAX_OPTION) as usize)?;
    value.read_bytes(&mut v)?;
    socket::setsockopt(&f, &*s, level, name, &v).map(|_| 0)
}

pub fn sys_getsockopt(
    fd: i32,
    level: i32,
    name: i32,
    value: UserAddr,
    lenp: UserAddr,
) -> SysResult {
    let (f, s) = socket_of(fd)?;
    let room: i32 = lenp.read()?;
    if room < 0 {
        return Err(Errno::EINVAL);
    }
    let v = socket::getsockopt(&f, &*s, level, name)?;
    let n = v.len().min(room as usize);
    value.write_bytes(&v[..n])?;
    lenp.write(&(n as u32)).map(|_| 0)
}

// ---- epoll -------------------------------------------------------------------

/// Most events one epoll_wait returns (Linux: INT_MAX / sizeof(epoll_event)).
const EP_MAX_EVENTS: i32 = i32::MAX / 12;

pub fn sys_epoll_create1(flags: u32) -> SysResult {
    if flags & !EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let f = File::epoll(Epoll::new());
    proc()?
        .files
        .fds
        .insert(f, flags & EPOLL_CLOEXEC != 0)
        .map(|fd| fd as usize)
}

pub fn sys_epoll_create(size: i32) -> SysResult {
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    sys_epoll_create1(0)
}

/// Reads a packed `struct epoll_event` (u32 events, u64 data: 12 bytes).
fn read_event(addr: UserAddr) -> Result<(u32, u64), Errno> {
    let e: EpollEvent = addr.read()?;
    Ok((e.events, e.data))
}

pub fn sys_epoll_ctl(epfd: i32, op: i32, fd: i32, event: UserAddr) -> SysResult {
    let (events, data) = if op != EPOLL_CTL_DEL {
        read_event(event)?
    } else {
        (0, 0)
    };
    let p = proc()?;
    let ep_file = p.files.fds.get(epfd)?;
    let target = p.files.fds.get(fd)?;
    if !target.epoll_watchable() {
        return Err(Errno::EPERM);
    }
    let ep = match ep_file.as_epoll() {
        Some(ep) if !Arc::ptr_eq(&ep_file, &target) => ep.clone(),
        _ => return Err(Errno::EINVAL),
    };
    ep.ctl(op, fd, &target, events, data).map(|_| 0)
}

pub fn sys_epoll_wait(epfd: i32, events: UserAddr, max: i32, timeout_ms: i32) -> SysResult {
    if max <= 0 || max > EP_MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let f = proc()?.files.fds.get(epfd)?;
    let ep = f.as_epoll().cloned().ok_or(Errno::EINVAL)?;
    let deadline = (timeout_ms >= 0)
        .then(|| crate::arch::time::now_ns().saturating_add(timeout_ms as u64 * 1_000_000));
    loop {
        let seen = ep.generation();
        let ready = ep.scan(max as usize, false);
        if !ready.is_empty() {
            let out: Vec<EpollEvent> = ready
                .iter()
                .map(|e| EpollEvent {
                    events: e.events,
                    data: e.data,
                })
                .collect();
            events.write_array(&out)?;
            return Ok(ready.len());
        }
        if deadline.is_some_and(|d| crate::arch::time::now_ns() >= d) {
            return Ok(0);
        }
        if crate::proc::signal_pending() {
            return Err(Errno::EINTR);
        }
        ep.wait_change(seen, deadline);
    }
}

pub fn sys_epoll_pwait(
    epfd: i32,
    events: UserAddr,
    max: i32,
    timeout_ms: i32,
    mask: UserAddr,
    size: u64,
) -> SysResult {
    super::file::with_sigmask(mask, size, || sys_epoll_wait(epfd, events, max, timeout_ms))
}

// ---- dispatch ----------------------------------------------------------------
