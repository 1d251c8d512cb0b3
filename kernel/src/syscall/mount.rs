//! Mounting and writing back: `mount`, `umount2`, `sync`, `syncfs`,
//! `fsync`, `fdatasync`.
//!
//! Owns the system-call side of mounts (argument decoding, which file
//! systems a source may be) and of durability: a call that promises data
//! is on the disk returns only after the disk's cache was flushed
//! (`VIRTIO_BLK_T_FLUSH`).  Invariants: a block device node is written
//! through (`files::blockdev`), so `fsync` on it is one device flush;
//! `sync` flushes every disk.
//!
//! Must not: hold a lock across a device request (they sleep), or trust a
//! user pointer (everything goes through `memory::uaccess::UserAddr`).

use alloc::string::String;
use alloc::sync::Arc;

use ::fs::{FileType, Inode};

use super::file::delegate;
use crate::files::{blockdev, mounts, remote, root_fs};
use crate::memory::uaccess::UserAddr;
use abi::{Errno, SysResult};

/// Longest path read from user space (PATH_MAX includes the NUL).
const PATH_MAX: usize = 4096;
/// Longest file-system type name read.
const TYPE_MAX: usize = 64;

/// `mount` flags: the ones honoured, and the ones accepted and ignored
/// (they restrict what a root-only, single-user system does anyway).
const MS_RDONLY: u64 = 1;
const MS_IGNORED: u64 = 2 | 4 | 8 | 1024 | 2048 | (1 << 15) | (1 << 21) | (1 << 24);
/// The magic number old callers put in the top half of `flags`.
const MS_MGC_MASK: u64 = 0xffff_0000;
const MS_MGC_VAL: u64 = 0xC0ED_0000;

/// `umount2` flags Linux knows (MNT_FORCE, MNT_DETACH, MNT_EXPIRE,
/// UMOUNT_NOFOLLOW); only a plain unmount is done.
const UMOUNT_KNOWN: u64 = 1 | 2 | 4 | 8;

fn file(fd: i32) -> Result<crate::files::FileRef, Errno> {
    crate::files::with_files(|fds, _| fds.get(fd))?
}

fn flush_err(e: ::fs::Errno) -> Errno {
    Errno(e.0)
}

/// The directory relative paths start from, and the root-only check.
fn caller_cwd() -> Result<Arc<Inode>, Errno> {
    let p = crate::proc::current().ok_or(Errno::EPERM)?;
    if p.creds.euid.load(core::sync::atomic::Ordering::Relaxed) != 0 {
        return Err(Errno::EPERM);
    }
    Ok(p.files.ctx.cwd())
}

fn path_arg(addr: UserAddr, max: usize) -> Result<String, Errno> {
    let s = addr.read_cstr(max)?;
    if s.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(s)
}

/// `mount(source, target, fstype, flags, data)`: `ext2` from a virtio
/// disk node (`MS_RDONLY` honoured) or a new `tmpfs`; no options (`data`
/// is ignored), no remount, bind or move (`EINVAL`).  In
/// `structure=servers` a target on the file server's tree is mounted by
/// the server (`Mount`); `/dev` and `/proc` stay the kernel's.
pub fn sys_mount(
    source: UserAddr,
    target: UserAddr,
    fstype: UserAddr,
    flags: u64,
    _data: UserAddr,
) -> SysResult {
    let cwd = caller_cwd()?;
    let flags = if flags & MS_MGC_MASK == MS_MGC_VAL {
        flags & !MS_MGC_MASK
    } else {
        flags
    };
    if flags & !(MS_RDONLY | MS_IGNORED) != 0 {
        return Err(Errno::EINVAL);
    }
    let target = path_arg(target, PATH_MAX - 1)?;
    let kind = fstype.read_cstr(TYPE_MAX)?;
    let read_only = flags & MS_RDONLY != 0;
    match kind.as_str() {
        "ext2" => {
            let source = path_arg(source, PATH_MAX - 1)?;
            let node = root_fs().lookup(&cwd, &source, true).map_err(flush_err)?;
            if node.kind() != FileType::BlockDevice {
                return Err(Errno::ENOTBLK);
            }
            let disk = blockdev::disk_of(node.rdev()).ok_or(Errno::ENXIO)?;
            if remote::active() {
                let kind = fsproto::MountKind::Ext2 {
                    device: disk.index() as u32,
                    read_only,
                };
                match delegate::mount(&target, kind) {
                    Ok(None) => {}
                    Ok(Some(())) => return Ok(0),
                    Err(e) => {
                        if e == Errno::ENODEV {
                            log::warn!(
                                "mount: ext2 from /dev/{} on {}: the file server has no block devices (structure=servers): ENODEV",
                                disk.name(),
                                target
                            );
                        }
                        return Err(e);
                    }
                }
            }
            mount_ext2(disk, &cwd, &target, read_only)?;
        }
        "tmpfs" => {
            if read_only {
                // A read-only empty tmpfs is of no use; not supported.
                return Err(Errno::EINVAL);
            }
            if remote::active() {
                // Bounded like the kernel's own (half of memory).
                let max_pages = (crate::memory::total_frames() as u64 / 2).max(1);
                let kind = fsproto::MountKind::Tmpfs { max_pages };
                if delegate::mount(&target, kind)?.is_some() {
                    return Ok(0);
                }
            }
            mounts::mount_tmpfs(&cwd, &target)?;
        }
        _ => {
            log::info!("mount: file-system type {:?} unknown: ENODEV", kind);
            return Err(Errno::ENODEV);
        }
    }
    Ok(0)
}

/// The kernel's own ext2 mount (monolithic image).
#[cfg(feature = "monolithic")]
fn mount_ext2(
    disk: &'static crate::drivers::virtio_blk::Disk,
    cwd: &Arc<Inode>,
    target: &str,
    read_only: bool,
) -> Result<(), Errno> {
    mounts::mount_ext2(disk, cwd, target, read_only)
}

/// The servers image has no ext2 (it runs in the file server): `ENODEV`,
/// as Linux answers for a type it was built without.
#[cfg(not(feature = "monolithic"))]
fn mount_ext2(
    disk: &'static crate::drivers::virtio_blk::Disk,
    _cwd: &Arc<Inode>,
    target: &str,
    _read_only: bool,
) -> Result<(), Errno> {
    log::warn!(
        "mount: ext2 from /dev/{} on {}: this kernel image has no ext2 (feature `monolithic` off): ENODEV",
        disk.name(),
        target
    );
    Err(Errno::ENODEV)
}

/// `umount2(target, flags)`: a plain unmount whatever the flags (`EBUSY`
/// while in use); unknown flags are `EINVAL`.  A target on the file
/// server's tree is the server's (`Umount`).
pub fn sys_umount2(target: UserAddr, flags: u64) -> SysResult {
    let cwd = caller_cwd()?;
    if flags & !UMOUNT_KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    let target = path_arg(target, PATH_MAX - 1)?;
    if remote::active() && delegate::umount(&target)?.is_some() {
        return Ok(0);
    }
    mounts::umount(&cwd, &target)?;
    Ok(0)
}

/// `fsync`/`fdatasync`: a file on a disk file system is written back and
/// the disk flushed (`fs::Inode::fsync`); a disk node flushes its disk;
/// tmpfs has nothing to write back; pipes, sockets and the console refuse
/// (`EINVAL`), as on Linux.
pub fn sys_fsync(fd: i32) -> SysResult {
    let f = file(fd)?;
    if let Some(r) = f.as_remote() {
        return crate::files::remote::fsync(r.handle, false).map(|_| 0);
    }
    if let Some(disk) = f.as_disk() {
        disk.flush().map_err(flush_err)?;
        return Ok(0);
    }
    match &f.inode {
        Some(inode) if !f.is_console() => {
            inode.fsync().map_err(flush_err)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `sync`: every mounted disk file system written back, every disk
/// flushed (errors are not reported, as on Linux).
pub fn sys_sync() -> SysResult {
    let _ = mounts::sync_all();
    if crate::files::remote::active() {
        let _ = crate::files::remote::sync();
    }
    Ok(0)
}

/// `syncfs`: the file system of `fd` written back and its disk flushed.
pub fn sys_syncfs(fd: i32) -> SysResult {
    let f = file(fd)?;
    if let Some(r) = f.as_remote() {
        return crate::files::remote::fsync(r.handle, true).map(|_| 0);
    }
    if let Some(disk) = f.as_disk() {
        disk.flush().map_err(flush_err)?;
        return Ok(0);
    }
    if let Some(inode) = &f.inode {
        inode.sync_fs().map_err(flush_err)?;
    }
    Ok(0)
}
