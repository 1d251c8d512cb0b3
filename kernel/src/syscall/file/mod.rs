//! File-system system calls: files, directories, pipes, poll/select,
//! ioctl, with Linux numbers, structures and errno values.  One file per
//! family (`rw.rs`, `open.rs`, `meta.rs`, `dir.rs`, `poll.rs`); this one
//! holds what they share (process and file lookup, path resolution).
//!
//! Owns the translation between the Linux ABI (user pointers, `struct
//! stat`, `statx`, `linux_dirent64`, `iovec`, `pollfd`, `fd_set`,
//! `timespec`) and the kernel's fs glue (`crate::files`).  Every user pointer
//! goes through `crate::memory::uaccess`; a bad one gives `EFAULT`.
//!
//! Must not: dereference a user address directly, hold an fs lock while
//! copying to or from user memory, or block except through the pipe wait
//! queues and the sleeps of poll/select (which end on a signal).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use ::fs::oflags::*;
use ::fs::{FileType, Inode, Stat, Timespec};

use crate::files::pollwait::PollWaker;
use crate::files::{errno as fs_err, root_fs, File, FileBorrow, FileRef};
use crate::memory::uaccess::{fault_in_writable, UserAddr};
use crate::proc::Process;
use abi::fcntl::{
    ANON_INODE_FS_MAGIC, AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_NO_AUTOMOUNT, AT_REMOVEDIR,
    AT_STATX_SYNC_TYPE, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, FD_CLOEXEC, FIOCLEX, FIONBIO,
    FIONCLEX, FIONREAD, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_SETFD, F_SETFL, O_DIRECT,
    O_LARGEFILE, PATH_MAX, PIPEFS_MAGIC, PROC_SUPER_MAGIC, RENAME_EXCHANGE, RENAME_NOREPLACE,
    SEEK_CUR, SOCKFS_MAGIC, STATX_BASIC_STATS, STATX_RESERVED, ST_VALID, S_IFMT, TCGETS, TCSETS,
    TCSETSF, TCSETSW, TIOCGPGRP, TIOCGWINSZ, TIOCSPGRP, TIOCSWINSZ, TMPFS_MAGIC, UTIME_NOW,
    UTIME_OMIT, X_OK,
};
use abi::structs::Iovec;
use abi::{Errno, SysResult};
use core::mem::size_of;

/// Most bytes moved through one kernel bounce buffer at a time.
const CHUNK: usize = 64 * 1024;
/// Most iovecs / pollfds accepted (UIO_MAXIOV / RLIMIT_NOFILE).
const MAX_VEC: u64 = 1024;

/// The calling process, borrowed through the running task (which keeps it
/// alive for the whole call), not cloned: the threads of a process would
/// all write its reference count on every call.
fn proc() -> Result<&'static crate::proc::Process, Errno> {
    crate::proc::current_task()
        .map(|t| &*t.process)
        .ok_or(Errno::EBADF)
}

/// `fd`'s open file with a reference of its own (for what keeps it past
/// the call); system calls that only use it during the call `borrowed` it.
fn file(fd: i32) -> Result<FileRef, Errno> {
    // The process is borrowed through the running task, not cloned: the
    // threads of a process would all write its reference count.
    let task = crate::proc::current_task().ok_or(Errno::EBADF)?;
    task.process.files.fds.get(fd)
}

/// `fd`'s open file, borrowed for the call (`FdTable::borrow`): neither
/// the process nor the file gets a reference-count write, which the
/// threads of a process using one file would all make on one line.
fn borrowed(fd: i32) -> Result<FileBorrow<'static>, Errno> {
    let task = crate::proc::current_task().ok_or(Errno::EBADF)?;
    task.process.files.fds.borrow(&task.fd_cache, fd)
}

fn user_path(addr: UserAddr) -> Result<String, Errno> {
    let p = addr.read_cstr(PATH_MAX - 1)?;
    Ok(p)
}

/// The directory a `*at` path starts from.
fn start_dir(p: &Process, dirfd: i32, path: &str) -> Result<StartDir, Errno> {
    if path.starts_with('/') {
        return Ok(StartDir::Root(root_fs().root_ref()));
    }
    if dirfd == AT_FDCWD {
        return Ok(StartDir::Owned(p.files.ctx.cwd()));
    }
    let f = p.files.fds.get(dirfd)?;
    match &f.inode {
        Some(i) if i.is_dir() => Ok(StartDir::Owned(i.clone())),
        _ => Err(Errno::ENOTDIR),
    }
}

/// Where a path walk starts.  Absolute paths borrow the root instead of
/// cloning its `Arc`: every core resolves absolute paths, and a clone per
/// call would make the root's reference count a cache line they all write.
enum StartDir {
    Root(&'static Arc<Inode>),
    Owned(Arc<Inode>),
}

impl core::ops::Deref for StartDir {
    type Target = Arc<Inode>;

    fn deref(&self) -> &Arc<Inode> {
        match self {
            StartDir::Root(root) => root,
            StartDir::Owned(dir) => dir,
        }
    }
}

/// Resolves `dirfd` + `path`; with `AT_EMPTY_PATH` and an empty path, the
/// inode of `dirfd` itself.
fn resolve(dirfd: i32, path_addr: UserAddr, flags: u32, follow: bool) -> Result<Arc<Inode>, Errno> {
    let p = proc()?;
    let path = user_path(path_addr)?;
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd == AT_FDCWD {
            return Ok(p.files.ctx.cwd());
        }
        return p.files.fds.get(dirfd)?.inode.clone().ok_or(Errno::EBADF);
    }
    let start = start_dir(p, dirfd, &path)?;
    root_fs().lookup(&start, &path, follow).map_err(fs_err)
}

/// `structure=servers`: runs the delegated version of a call when the
/// file system is the server's and the call is not the kernel's (one
/// predictable branch on a boot-time flag in the monolithic structure).
macro_rules! delegated {
    ($e:expr) => {
        if crate::files::remote::active() {
            if let Some(r) = $e {
                return r;
            }
        }
    };
}

// `mount`/`umount2` (syscall::mount) route through it too.
pub(super) mod delegate;
mod dir;
mod meta;
mod open;
mod poll;
mod rw;

pub use dir::*;
pub use meta::*;
pub use open::*;
pub use poll::*;
pub use rw::*;
