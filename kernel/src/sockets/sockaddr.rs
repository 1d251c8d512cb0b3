//! Socket addresses and message headers as the Linux x86_64 ABI lays them
//! out: `sockaddr_un`, `sockaddr_in`, the `addrlen` in/out rules, `msghdr`
//! and its `iovec` array.
//!
//! Owns the translation between user memory and `SockAddr`/`MsgHdr`.
//! Invariants: every user access goes through `memory::uaccess` (a bad pointer
//! is `EFAULT`); an address written back is truncated to the caller's
//! buffer and the full length is stored in `*addrlen`, as Linux does.
//!
//! Must not: keep user pointers beyond the call, or read control messages
//! (they are ignored: `msg_controllen` comes back 0).

use alloc::vec;
use alloc::vec::Vec;

use super::{AF_INET, AF_UNIX};
use crate::memory::uaccess::UserAddr;
use abi::structs::{Iovec, Msghdr};
use abi::Errno;
use core::mem::{offset_of, size_of};

/// Largest address Linux accepts (`sizeof(struct sockaddr_storage)`).
const SOCKADDR_MAX: u32 = 128;
/// `sizeof(sun_path)`.
const UNIX_PATH_MAX: usize = 108;
/// Most iovecs in one msghdr (UIO_MAXIOV).
const MAX_IOV: u64 = 1024;

/// An AF_UNIX address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnixAddr {
    /// No name (socketpair ends, unbound sockets): `sizeof(sa_family_t)`.
    Unnamed,
    /// A file-system path (without the terminating NUL).
    Path(Vec<u8>),
    /// Linux's abstract namespace (`sun_path[0] == 0`), the name after it.
    Abstract(Vec<u8>),
}

/// A socket address of a family this kernel knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Unix(UnixAddr),
    /// IPv4: address bytes in network order, port in host order.
    Inet {
        addr: [u8; 4],
        port: u16,
    },
}

impl SockAddr {
    /// The Linux wire form (what `getsockname` copies out).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SockAddr::Unix(u) => {
                let mut b = (AF_UNIX as u16).to_ne_bytes().to_vec();
                match u {
                    UnixAddr::Unnamed => {}
                    UnixAddr::Path(p) => {
                        b.extend_from_slice(p);
                        b.push(0);
                    }
                    UnixAddr::Abstract(n) => {
                        b.push(0);
                        b.extend_from_slice(n);
                    }
                }
                b
            }
            SockAddr::Inet { addr, port } => {
                let mut b = vec![0u8; 16];
                b[0..2].copy_from_slice(&(AF_INET as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&port.to_be_bytes());
                b[4..8].copy_from_slice(addr);
                b
            }
        }
    }
}

/// Reads the address `(addr, len)` a caller passed to bind/connect/sendto.
/// `EINVAL` for a length outside 2..=128 or too short for its family,
/// `EFAULT` for a bad pointer, `EAFNOSUPPORT` for an unknown family.
pub fn read_sockaddr(addr: UserAddr, len: u32) -> Result<SockAddr, Errno> {
    if !(2..=SOCKADDR_MAX).contains(&len) {
        return Err(Errno::EINVAL);
    }
    // `len` is at most SOCKADDR_MAX here.
    let mut raw = [0u8; SOCKADDR_MAX as usize];
    let raw = &mut raw[..len as usize];
    addr.read_bytes(raw)?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]) as u32;
    match family {
        AF_UNIX => {
            let path = &raw[2..raw.len().min(2 + UNIX_PATH_MAX)];
            if path.is_empty() {
                return Ok(SockAddr::Unix(UnixAddr::Unnamed));
            }
            if path[0] == 0 {
                return Ok(SockAddr::Unix(UnixAddr::Abstract(path[1..].to_vec())));
            }
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            Ok(SockAddr::Unix(UnixAddr::Path(path[..end].to_vec())))
        }
        AF_INET => {
            if len < 16 {
                return Err(Errno::EINVAL);
            }
            Ok(SockAddr::Inet {
                port: u16::from_be_bytes([raw[2], raw[3]]),
                addr: [raw[4], raw[5], raw[6], raw[7]],
            })
        }
        _ => Err(super::EAFNOSUPPORT),
    }
}

/// Writes `sa` to `(addr, *addrlen)` by the Linux rules
/// (`move_addr_to_user`): `*addrlen` in is the buffer size (negative:
/// `EINVAL`); at most that many bytes are copied; `*addrlen` out is the
/// full length.  Callers with an optional address skip the call when
/// `addr` is 0; a bad pointer is `EFAULT`.
pub fn write_sockaddr(addr: UserAddr, addrlen_ptr: UserAddr, sa: &SockAddr) -> Result<(), Errno> {
    let room: i32 = addrlen_ptr.read()?;
    let bytes = sa.encode();
    let n = (room as i64).min(bytes.len() as i64);
    if n < 0 {
        return Err(Errno::EINVAL);
    }
    if n > 0 {
        addr.write_bytes(&bytes[..n as usize])?;
    }
    addrlen_ptr.write(&(bytes.len() as u32))
}

/// The parts of a user `struct msghdr` (56 bytes) the calls use.
pub struct MsgHdr {
    pub name: UserAddr,
    pub namelen: u32,
    /// (base, len) of each iovec.
    pub iov: Vec<(UserAddr, u64)>,
}

/// Offsets of the fields recvmsg writes back inside `struct msghdr`.
const MSG_NAMELEN_OFFSET: u64 = offset_of!(Msghdr, msg_namelen) as u64;
const MSG_CONTROLLEN_OFFSET: u64 = offset_of!(Msghdr, msg_controllen) as u64;
const MSG_FLAGS_OFFSET: u64 = offset_of!(Msghdr, msg_flags) as u64;

/// Reads a `struct msghdr` and its iovec array.  `EMSGSIZE` for more than
/// `UIO_MAXIOV` entries, `EINVAL` for a total length over `isize::MAX`.
pub fn read_msghdr(addr: UserAddr) -> Result<MsgHdr, Errno> {
    let raw: Msghdr = addr.read()?;
    let (name, namelen, iov_addr, iov_len) = (
        UserAddr(raw.msg_name),
        raw.msg_namelen,
        UserAddr(raw.msg_iov),
        raw.msg_iovlen,
    );
    if iov_len > MAX_IOV {
        return Err(super::EMSGSIZE);
    }
    let mut iov = Vec::with_capacity(iov_len as usize);
    let mut total: u64 = 0;
    for i in 0..iov_len {
        let one: Iovec = iov_addr.offset(i * size_of::<Iovec>() as u64).read()?;
        let (base, len) = (UserAddr(one.iov_base), one.iov_len);
        total = total
            .checked_add(len)
            .filter(|&t| t <= isize::MAX as u64)
            .ok_or(Errno::EINVAL)?;
        iov.push((base, len));
    }
    Ok(MsgHdr { name, namelen, iov })
}

/// After recvmsg: the source address length (if a name buffer was given),
/// `msg_controllen = 0` (no control messages) and `msg_flags`.
pub fn finish_recvmsg(
    addr: UserAddr,
    hdr: &MsgHdr,
    from: Option<&SockAddr>,
    msg_flags: u32,
) -> Result<(), Errno> {
    if !hdr.name.is_null() {
        let full = match from {
            Some(sa) => {
                let bytes = sa.encode();
                let n = bytes.len().min(hdr.namelen as usize);
                hdr.name.write_bytes(&bytes[..n])?;
                bytes.len() as u32
            }
            None => 0,
        };
        addr.offset(MSG_NAMELEN_OFFSET).write(&full)?;
    }
    addr.offset(MSG_CONTROLLEN_OFFSET).write(&0u64)?;
    addr.offset(MSG_FLAGS_OFFSET).write(&msg_flags)
}

/// Copies the first `limit` bytes of user iovecs into one kernel buffer
/// (sendmsg).  The iovec lengths are the user's: they may add up to
/// terabytes (each total is only checked against `isize::MAX`), so the
/// buffer is sized by `limit` (at most `kbuf::MAX_KBUF`), never by their
/// sum, and comes from `kbuf::zeroed` (`ENOMEM`, not a panic, when the heap
/// is short).  Bytes past `limit` are not read, as Linux sends no more than
/// a socket buffer's worth of a stream per call.
pub fn gather(iov: &[(UserAddr, u64)], limit: usize) -> Result<Vec<u8>, Errno> {
    let total = iov
        .iter()
        .fold(0u64, |t, &(_, l)| t.saturating_add(l))
        .min(limit as u64) as usize;
    let mut buf = crate::memory::kbuf::zeroed(total)?;
    let mut at = 0usize;
    for &(base, len) in iov {
        if at == total {
            break;
        }
        let n = (len as usize).min(total - at);
        base.read_bytes(&mut buf[at..at + n])?;
        at += n;
    }
    Ok(buf)
}

/// Copies `data` out over user iovecs in order (recvmsg).
pub fn scatter(iov: &[(UserAddr, u64)], data: &[u8]) -> Result<(), Errno> {
    let mut at = 0usize;
    for &(base, len) in iov {
        if at >= data.len() {
            break;
        }
        let n = (len as usize).min(data.len() - at);
        base.write_bytes(&data[at..at + n])?;
        at += n;
    }
    Ok(())
}
