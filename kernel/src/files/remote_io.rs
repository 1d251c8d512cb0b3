//! One-copy `read`/`write` of file-server files (`structure=servers`,
//! `servers.copy=one`, docs/SERVERS.md "Copy modes"): the data moves once,
//! between the server's page-cache pages and the user buffer, never
//! through a message.
//!
//! Owns: the copy loop of a read (`ReadPages`: one call per 1 MiB names
//! the pages of the range and how many bytes are valid) and of a write
//! (`WritePages` names pages made ready for the range, the kernel copies
//! the user's bytes into them, `WriteDone` commits the size and times).
//!
//! Grant lifetime, two guards:
//! - **The kernel pins** each named frame (`AddressSpace::pin_for_io`,
//!   the checks of `MapPages`: private anonymous read/write memory of the
//!   server, present) for the length of its copy, so even a server that
//!   frees or unmaps the page meanwhile cannot make the kernel read or
//!   write a frame that went to another process: the frame is freed only
//!   at the unpin.
//! - **The server keeps the page** a page of this file (`fs::Inode::
//!   grant_read`): a truncate racing the copy retires the pages it cuts
//!   instead of freeing them, until the last I/O handle of the file
//!   closes.  The kernel holds the open file (and so its handle) for the
//!   whole call, so no copy runs past that point.  A read racing a
//!   truncate therefore returns the bytes as they were before the
//!   truncate (the read is ordered first), never another file's data.
//!   A write racing a truncate is seen by `WriteDone` (`EAGAIN`: the
//!   truncate epoch changed) and those bytes are written again through a
//!   message, so the result is the write after the truncate.
//!
//! What stays on the message path (`remote::pread`/`pwrite`): `O_APPEND`
//! writes (the server picks the offset and writes in one step, so
//! concurrent appenders do not overlap), empty transfers, and ranges that
//! reach past the largest offset (`i64::MAX`), so errors there stay those
//! of the two-copy path.
//!
//! Must not: hold a lock across a call or a copy (a fault on the user
//! buffer may call the server for a mapping of the same file), or use
//! `unsafe` (the copies are `UserSlice::write_from_frame` /
//! `read_into_frame`).

use alloc::sync::Arc;

use abi::fcntl::O_APPEND;
use abi::Errno;
use fsproto::{Handle, MAX_IO_BYTES};

use super::file::File;
use super::remote;
use crate::memory::vm::uaccess::UserAddr;
use crate::memory::vm::{self, AddressSpace};

const PAGE: u64 = vm::PAGE_SIZE;

/// The file server's address space (where granted addresses point).
fn server() -> Result<Arc<AddressSpace>, Errno> {
    crate::proc::process::find_process(remote::server_pid())
        .and_then(|p| p.aspace())
        .ok_or(Errno::EIO)
}

/// Which way a copy goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Server pages -> user buffer (a read; holes give zeros).
    Out,
    /// User buffer -> server pages (a write).
    In,
}

/// Copies `n` bytes of the file at `offset` between the granted pages
/// `addrs` (one per page the range touches) and the user buffer `buf`,
/// one piece per source and per destination page, so that a user page
/// that faults leaves every byte before it copied and counted.  Returns
/// the bytes copied and, when fewer than `n`, why (`EFAULT` for the user
/// buffer, `EIO` for an address that is not a page of the server).
fn copy(
    server: &AddressSpace,
    addrs: &[u64],
    offset: u64,
    n: usize,
    buf: UserAddr,
    dir: Dir,
) -> (usize, Option<Errno>) {
    let mut done = 0usize;
    let first = offset / PAGE;
    while done < n {
        let pos = offset + done as u64;
        let Some(&addr) = addrs.get((pos / PAGE - first) as usize) else {
            return (done, Some(Errno::EIO));
        };
        let frame = if addr == 0 && dir == Dir::Out {
            None
        } else {
            match server.pin_for_io(addr) {
                Ok(f) => Some(f),
                Err(e) => {
                    log::warn!(
                        "servers: a grant named {addr:#x}, not a page of the server ({e:?})"
                    );
                    return (done, Some(Errno::EIO));
                }
            }
        };
        // The rest of this source page, piece by destination page.
        let page_end = ((pos / PAGE + 1) * PAGE - offset) as usize;
        let stop = page_end.min(n);
        while done < stop {
            let p = offset + done as u64;
            let dst = buf.offset(done as u64);
            let room = (PAGE - dst.raw() % PAGE) as usize;
            let len = room.min(stop - done);
            let in_page = (p % PAGE) as usize;
            let res = dst.slice(len).and_then(|s| match (&frame, dir) {
                (Some(f), Dir::Out) => s.write_from_frame(f, in_page),
                (Some(f), Dir::In) => s.read_into_frame(f, in_page),
                (None, _) => s.zero(),
            });
            if res.is_err() {
                return (done, Some(Errno::EFAULT));
            }
            done += len;
        }
        // The pin goes here, after the last copy from this page.
        drop(frame);
    }
    (done, None)
}

/// Whether `count` bytes at `at` stay below the largest file offset (the
/// protocol refuses ranges past it; the message path answers those).
fn in_range(at: u64, count: usize) -> bool {
    at.checked_add(count as u64)
        .is_some_and(|e| e <= i64::MAX as u64)
}

/// `read`/`pread64` of `count` (> 0) bytes of the server file `f` (handle
/// `handle`) into `buf`, at `offset` or at the file offset (advanced by
/// the bytes copied).  `None`: this call goes through messages instead.
/// A buffer that faults gives the bytes before the faulting page, or
/// `EFAULT`; an error after some bytes is a short read.
pub fn read(
    f: &File,
    handle: Handle,
    buf: UserAddr,
    count: usize,
    offset: Option<u64>,
) -> Option<Result<usize, Errno>> {
    if !f.readable() {
        return Some(Err(Errno::EBADF));
    }
    let at = offset.unwrap_or_else(|| f.offset());
    if count == 0 || !in_range(at, count) {
        return None;
    }
    let server = match server() {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let mut done = 0usize;
    let mut failed = None;
    while done < count {
        let want = (count - done).min(MAX_IO_BYTES as usize);
        let pos = at + done as u64;
        let (n, _, addrs) = match remote::read_grant(handle, pos, want as u64) {
            Ok(g) => g,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let (took, err) = copy(&server, &addrs, pos, n, buf.offset(done as u64), Dir::Out);
        done += took;
        if err.is_some() {
            failed = err;
            break;
        }
        if n < want {
            break;
        }
    }
    if offset.is_none() {
        f.set_offset(at + done as u64);
    }
    Some(match failed {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    })
}

/// `write`/`pwrite64` of `count` (> 0) bytes from `buf` to the server file
/// `f`, at `offset` or at the file offset (advanced by the bytes
/// written).  `None`: this call goes through messages instead (`O_APPEND`,
/// see the module comment).  A buffer that faults gives the bytes before
/// the faulting page, or `EFAULT`; an error after some bytes is a short
/// write.
pub fn write(
    f: &File,
    handle: Handle,
    buf: UserAddr,
    count: usize,
    offset: Option<u64>,
) -> Option<Result<usize, Errno>> {
    if !f.writable() {
        return Some(Err(Errno::EBADF));
    }
    if offset.is_none() && f.flags() & O_APPEND != 0 {
        return None;
    }
    let at = offset.unwrap_or_else(|| f.offset());
    if count == 0 || !in_range(at, count) {
        return None;
    }
    let server = match server() {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let mut done = 0usize;
    let mut failed = None;
    while done < count {
        let want = (count - done).min(MAX_IO_BYTES as usize);
        let pos = at + done as u64;
        let src = buf.offset(done as u64);
        let (n, epoch, addrs) = match remote::write_grant(handle, pos, want as u64) {
            Ok(g) => g,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let (took, err) = copy(&server, &addrs, pos, n, src, Dir::In);
        let mut written = took;
        if took > 0 {
            match remote::write_done(handle, pos, took as u64, epoch) {
                Ok(_) => {}
                // A truncate came between grant and commit: the bytes may
                // have gone with a cut page; write them again in messages.
                Err(e) if e == Errno::EAGAIN => match rewrite(handle, pos, src, took) {
                    Ok(m) => written = m,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        done += written;
        if err.is_some() || written < took {
            failed = err.or(Some(Errno::EIO));
            break;
        }
        if n < want {
            break;
        }
    }
    if offset.is_none() {
        f.set_offset(at + done as u64);
    }
    Some(match failed {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    })
}

/// The two-copy write of `len` bytes of `src` at `pos` (after a commit
/// refused because of a truncate): bytes written.
fn rewrite(handle: Handle, pos: u64, src: UserAddr, len: usize) -> Result<usize, Errno> {
    let mut kbuf = crate::memory::kbuf::zeroed(len)?;
    src.read_bytes(&mut kbuf[..len])?;
    remote::pwrite(handle, pos, &kbuf[..len], false).map(|(n, _)| n)
}
