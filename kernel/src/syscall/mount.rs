//! Mounting and writing back: `mount`, `umount2`, `sync`, `syncfs`,
//! `fsync`, `fdatasync`.
//!
//! Owns the system-call side of mounts (argument decoding, which file
//! systems a source may be) and of durability: a call that promises data
//! is on the disk returns only after the disk's cache was flushed
//! (`VIRTIO_BLK_T_FLUSH`).  Invariants: a block device node is written
//! through (`fs::blockdev`), so `fsync` on it is one device flush;
//! `sync` flushes every disk.
//!
//! Must not: hold a lock across a device request (they sleep), or trust a
//! user pointer (everything goes through `copy_from_user`/`read_user_str`).

use super::errno::{Errno, SysResult};
use crate::drivers::virtio_blk;

fn file(fd: i32) -> Result<crate::fs::FileRef, Errno> {
    crate::fs::with_files(|fds, _| fds.get(fd))?
}

fn flush_err(e: ::fs::Errno) -> Errno {
    Errno(e.0)
}

/// `fsync`/`fdatasync`: a disk node flushes its disk; tmpfs has nothing to
/// write back; pipes, sockets and the console refuse (`EINVAL`), as on
/// Linux.
pub fn sys_fsync(fd: i32) -> SysResult {
    let f = file(fd)?;
    if let Some(disk) = f.as_disk() {
        disk.flush().map_err(flush_err)?;
        return Ok(0);
    }
    if f.inode.is_none() || f.is_console() {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// `sync`: every disk's cache flushed (errors are not reported, as on
/// Linux).
pub fn sys_sync() -> SysResult {
    for disk in virtio_blk::disks() {
        let _ = disk.flush();
    }
    Ok(0)
}

/// `syncfs`: the file system of `fd` written back and its disk flushed.
pub fn sys_syncfs(fd: i32) -> SysResult {
    let f = file(fd)?;
    if let Some(disk) = f.as_disk() {
        disk.flush().map_err(flush_err)?;
    }
    Ok(0)
}
