//! Open files (Linux "open file descriptions"): what an fd points to, with
//! its offset and status flags, shared by `dup` and `fork`.
//!
//! Owns the per-open state: offset, `O_APPEND`/`O_NONBLOCK` status flags,
//! directory-listing cursor, and which object the file reads and writes
//! (a tmpfs inode, a device, a pipe end, a socket, an epoll instance, a
//! text snapshot), and its readiness for poll/select/epoll (`poll_mask`,
//! `poll_waiters`).  Invariants: the offset only changes under its lock; a
//! pipe end's reader/writer count is dropped exactly once, and a socket's
//! `on_close` runs exactly once, when the last reference goes.
//!
//! Must not: touch user memory (`read_direct` hands page-cache bytes to
//! its caller's sink), or hold a lock while blocking.

use abi::fcntl::{SEEK_CUR, SEEK_END, SEEK_SET};
pub use abi::poll::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ::fs::oflags::*;
use ::fs::{DirCursor, FileType, Inode, Stat};

use super::epoll::Epoll;
use super::pipe::Pipe;
use super::pollwait::PollWaiters;
use super::remote::{self, RemoteHandle};
use super::{dev, errno};
use crate::sockets::Socket;
use abi::Errno;

/// A shared reference to an open file.
pub type FileRef = Arc<File>;

/// What reads and writes go to.
pub enum Kind {
    /// A tmpfs inode: regular file, directory, symlink (O_PATH), FIFO node.
    Inode,
    Null,
    Zero,
    /// `/dev/full`: reads zeros, writes fail with `ENOSPC`.
    Full,
    /// `/dev/random`, `/dev/urandom`: the kernel's random source.
    Random,
    /// Serial console: writes go out unchanged, reads see end of file.
    Console,
    PipeRead(Arc<Pipe>),
    PipeWrite(Arc<Pipe>),
    /// Contents fixed at open (the generated files of `/proc`).
    Text(Vec<u8>),
    /// A socket of any family (`crate::sockets`).
    Socket(Arc<dyn Socket>),
    /// An epoll instance.
    Epoll(Arc<Epoll>),
    /// A virtio disk's node (`/dev/vda`...): bytes go to the device.
    Block(&'static crate::drivers::virtio_blk::Disk),
    /// A file of the user-mode file server (`structure=servers`): every
    /// operation is a call with this handle (`super::remote`); the offset
    /// and status flags stay here.
    Remote(RemoteHandle),
}

/// Status flags `fcntl(F_SETFL)` may change.
const SETTABLE: u32 = O_APPEND | O_NONBLOCK;

pub struct File {
    /// The inode opened (`None` for pipes).
    pub inode: Option<Arc<Inode>>,
    pub kind: Kind,
    /// Access mode and status flags, as `fcntl(F_GETFL)` reports them.
    flags: AtomicU32,
    pos: spin::Mutex<u64>,
    cursor: spin::Mutex<DirCursor>,
    /// Sockets: `SO_RCVTIMEO`, `SO_SNDTIMEO` in ns (0 = none).
    socket_timeouts: [AtomicU64; 2],
}

impl File {
    fn new(inode: Option<Arc<Inode>>, kind: Kind, flags: u32) -> FileRef {
        // 0o100000 is O_LARGEFILE, which open(2) sets on 64-bit Linux.
        let keep = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECTORY | O_PATH | 0o100000;
        Arc::new(File {
            inode,
            kind,
            flags: AtomicU32::new(flags & keep),
            pos: spin::Mutex::new(0),
            cursor: spin::Mutex::new(DirCursor::default()),
            socket_timeouts: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// A file for a new socket (read-write; `O_NONBLOCK` from `flags`).
    pub fn socket(sock: Arc<dyn Socket>, flags: u32) -> FileRef {
        File::new(None, Kind::Socket(sock), O_RDWR | (flags & O_NONBLOCK))
    }

    /// A file for a new epoll instance.
    pub fn epoll(ep: Arc<Epoll>) -> FileRef {
        File::new(None, Kind::Epoll(ep), O_RDWR)
    }

    /// A file opened on the file server (`structure=servers`).
    pub fn open_remote(handle: RemoteHandle, flags: u32) -> FileRef {
        File::new(None, Kind::Remote(handle), flags)
    }

    /// The file-server handle this file is, if it is one.
    pub fn as_remote(&self) -> Option<&RemoteHandle> {
        match &self.kind {
            Kind::Remote(r) => Some(r),
            _ => None,
        }
    }

    /// A directory listing's cursor as plain parts (the file server's
    /// `Getdents` cursor).
    pub fn cursor_parts(&self) -> (u64, u64, alloc::string::String) {
        let c = self.cursor.lock();
        let (pos, state, after) = c.to_parts();
        (pos, state, alloc::string::String::from(after.unwrap_or("")))
    }

    /// Sets the cursor from the parts the file server returned.
    pub fn set_cursor_parts(&self, pos: u64, state: u64, after: &str) -> Result<(), Errno> {
        let after = (!after.is_empty()).then_some(after);
        let c = DirCursor::from_parts(pos, state, after).map_err(|_| Errno::EIO)?;
        *self.cursor.lock() = c;
        Ok(())
    }

    /// `fstat`, asking the file server for its files.
    pub fn try_stat(&self) -> Result<Stat, Errno> {
        match &self.kind {
            Kind::Remote(r) => remote::stat(fsproto::At::handle(r.handle)),
            _ => Ok(self.stat()),
        }
    }

    /// The socket this file is, if it is one.
    pub fn as_socket(&self) -> Option<&Arc<dyn Socket>> {
        match &self.kind {
            Kind::Socket(s) => Some(s),
            _ => None,
        }
    }

    /// A pipe read end's buffered bytes (`FIONREAD`).
    pub fn pipe_bytes_readable(&self) -> Option<usize> {
        match &self.kind {
            Kind::PipeRead(p) => Some(p.bytes_buffered()),
            _ => None,
        }
    }

    /// The epoll instance this file is, if it is one.
    pub fn as_epoll(&self) -> Option<&Arc<Epoll>> {
        match &self.kind {
            Kind::Epoll(e) => Some(e),
            _ => None,
        }
    }

    /// `SO_SNDTIMEO` (`send`) or `SO_RCVTIMEO` in ns; 0 means none.
    pub fn socket_timeout(&self, send: bool) -> u64 {
        self.socket_timeouts[send as usize].load(Ordering::Relaxed)
    }

    pub fn set_socket_timeout(&self, send: bool, ns: u64) {
        self.socket_timeouts[send as usize].store(ns, Ordering::Relaxed);
    }

    /// Opens an inode already resolved (and created/truncated) by the VFS.
    /// A generated `/proc` file is read once, now; a proxy (a pipe reached
    /// through `/proc/<pid>/fd`) opens the pipe again, as the end `flags`
    /// ask for; other proxies (sockets, epoll) cannot be opened (`ENXIO`).
    pub fn open_inode(inode: Arc<Inode>, flags: u32) -> Result<FileRef, Errno> {
        if flags & O_PATH != 0 {
            return Ok(File::new(Some(inode), Kind::Inode, flags));
        }
        if let Some(payload) = inode.payload() {
            let file = payload
                .clone()
                .downcast::<File>()
                .map_err(|_| Errno::ENXIO)?;
            let pipe = match &file.kind {
                Kind::PipeRead(p) | Kind::PipeWrite(p) => p.clone(),
                _ => return Err(Errno::ENXIO),
            };
            let kind = if flags & O_ACCMODE == O_RDONLY {
                pipe.open_reader();
                Kind::PipeRead(pipe)
            } else {
                pipe.open_writer();
                Kind::PipeWrite(pipe)
            };
            let acc = if flags & O_ACCMODE == O_RDONLY {
                O_RDONLY
            } else {
                O_WRONLY
            };
            return Ok(File::new(None, kind, (flags & !O_ACCMODE) | acc));
        }
        if let Some(text) = inode.generated_contents() {
            let text = text.map_err(errno)?;
            return Ok(File::new(Some(inode), Kind::Text(text), flags));
        }
        let kind = if inode.kind() == FileType::CharDevice {
            match inode.rdev() {
                dev::NULL => Kind::Null,
                dev::ZERO => Kind::Zero,
                dev::FULL => Kind::Full,
                dev::RANDOM | dev::URANDOM => Kind::Random,
                dev::CONSOLE | dev::TTY => Kind::Console,
                _ => Kind::Null,
            }
        } else if inode.kind() == FileType::BlockDevice {
            // A read-only disk opens for writing too; writes fail (EPERM),
            // as on Linux 6.1.
            Kind::Block(super::blockdev::disk_of(inode.rdev()).ok_or(Errno::ENXIO)?)
        } else {
            Kind::Inode
        };
        Ok(File::new(Some(inode), kind, flags))
    }

    /// Both ends of a new pipe.
    pub fn pipe(flags: u32) -> (FileRef, FileRef) {
        let p = Pipe::new();
        (
            File::new(
                None,
                Kind::PipeRead(p.clone()),
                O_RDONLY | (flags & O_NONBLOCK),
            ),
            File::new(None, Kind::PipeWrite(p), O_WRONLY | (flags & O_NONBLOCK)),
        )
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// `fcntl(F_SETFL)`: only `O_APPEND` and `O_NONBLOCK` change.
    pub fn set_status_flags(&self, new: u32) {
        let old = self.flags();
        self.flags
            .store((old & !SETTABLE) | (new & SETTABLE), Ordering::Relaxed);
    }

    pub fn nonblocking(&self) -> bool {
        self.flags() & O_NONBLOCK != 0
    }

    pub fn readable(&self) -> bool {
        self.flags() & O_PATH == 0 && self.flags() & O_ACCMODE != O_WRONLY
    }

    pub fn writable(&self) -> bool {
        self.flags() & O_PATH == 0 && {
            let acc = self.flags() & O_ACCMODE;
            acc == O_WRONLY || acc == O_RDWR
        }
    }

    /// A tmpfs regular file or directory (not a device or pipe).
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, Kind::Inode)
    }

    /// The disk this file is the node of, if it is one.
    pub fn as_disk(&self) -> Option<&'static crate::drivers::virtio_blk::Disk> {
        match self.kind {
            Kind::Block(disk) => Some(disk),
            _ => None,
        }
    }

    pub fn is_console(&self) -> bool {
        matches!(self.kind, Kind::Console)
    }

    /// Seekable: regular files, directories, /dev/null and /dev/zero, text.
    fn seekable(&self) -> bool {
        !matches!(
            self.kind,
            Kind::PipeRead(_)
                | Kind::PipeWrite(_)
                | Kind::Console
                | Kind::Socket(_)
                | Kind::Epoll(_)
        )
    }

    /// Reads at `offset` (no offset change).  Pipes/console ignore it.
    pub fn read_at(&self, out: &mut [u8], offset: u64) -> Result<usize, Errno> {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            Kind::Inode => {
                let inode = self.inode.as_ref().ok_or(Errno::EBADF)?;
                match inode.kind() {
                    FileType::Directory => Err(Errno::EISDIR),
                    FileType::Regular => inode.read_at(offset, out).map_err(errno),
                    _ => Err(Errno::EINVAL),
                }
            }
            Kind::Null | Kind::Console => Ok(0),
            Kind::Zero | Kind::Full => {
                out.fill(0);
                Ok(out.len())
            }
            Kind::Random => {
                crate::random::fill_random(out);
                Ok(out.len())
            }
            Kind::PipeRead(p) => p.read(out, self.nonblocking()),
            Kind::PipeWrite(_) => Err(Errno::EBADF),
            Kind::Block(disk) => super::blockdev::read_at(disk, offset, out),
            Kind::Socket(sock) => {
                crate::sockets::socket::recv(self, &**sock, out, 0).map(|r| r.len)
            }
            Kind::Epoll(_) => Err(Errno::EINVAL),
            Kind::Remote(r) => remote::pread(r.handle, offset, out),
            Kind::Text(t) => {
                let start = (offset.min(t.len() as u64)) as usize;
                let n = out.len().min(t.len() - start);
                out[..n].copy_from_slice(&t[start..start + n]);
                Ok(n)
            }
        }
    }

    /// Writes at `offset` (or at the end with `append`); returns the count
    /// and the offset after the write.
    pub fn write_at(&self, src: &[u8], offset: u64, append: bool) -> Result<(usize, u64), Errno> {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            Kind::Inode => {
                let inode = self.inode.as_ref().ok_or(Errno::EBADF)?;
                match inode.kind() {
                    FileType::Regular => inode.write_at(offset, src, append).map_err(errno),
                    FileType::Directory => Err(Errno::EISDIR),
                    _ => Err(Errno::EINVAL),
                }
            }
            Kind::Null | Kind::Zero | Kind::Random => Ok((src.len(), offset)),
            Kind::Full => Err(Errno::ENOSPC),
            Kind::Block(disk) => {
                super::blockdev::write_at(disk, offset, src).map(|n| (n, offset + n as u64))
            }
            Kind::Console => {
                for &b in src {
                    crate::arch::serial::write_byte(b);
                }
                Ok((src.len(), offset))
            }
            Kind::PipeWrite(p) => p.write(src, self.nonblocking()).map(|n| (n, offset)),
            Kind::Socket(sock) => {
                crate::sockets::socket::send(self, &**sock, src, 0, None).map(|n| (n, offset))
            }
            Kind::Epoll(_) => Err(Errno::EINVAL),
            Kind::Remote(r) => remote::pwrite(r.handle, offset, src, append),
            Kind::PipeRead(_) | Kind::Text(_) => Err(Errno::EBADF),
        }
    }

    /// `read`: at the file offset, advancing it.
    pub fn read(&self, out: &mut [u8]) -> Result<usize, Errno> {
        if !self.seekable() {
            return self.read_at(out, 0);
        }
        if let Kind::Remote(_) = self.kind {
            // No spin lock across a call: the offset is read, then
            // advanced (threads sharing a description race on it, as on
            // Linux without `f_pos_lock`; docs/SERVERS.md).
            let at = *self.pos.lock();
            let n = self.read_at(out, at)?;
            *self.pos.lock() = at + n as u64;
            return Ok(n);
        }
        let mut pos = self.pos.lock();
        let n = self.read_at(out, *pos)?;
        *pos += n as u64;
        Ok(n)
    }

    /// The file offset, for the one-copy I/O of file-server files
    /// (`remote_io`), which reads it, calls, and sets it after, as `read`
    /// does for them (no lock across the call).
    pub fn offset(&self) -> u64 {
        *self.pos.lock()
    }

    /// Sets the file offset (see `offset`).
    pub fn set_offset(&self, pos: u64) {
        *self.pos.lock() = pos;
    }

    /// One read of a file-server file into `kbuf`, handed to `sink`, which
    /// returns how many bytes it took (fewer when the user buffer faults):
    /// at `offset`, or at the file offset, advancing it by what `sink`
    /// took.  Returns (bytes read, bytes taken); `None` when this is not a
    /// file-server file.
    pub fn read_remote(
        &self,
        offset: Option<u64>,
        kbuf: &mut [u8],
        sink: impl FnOnce(&[u8]) -> usize,
    ) -> Option<Result<(usize, usize), Errno>> {
        let Kind::Remote(r) = &self.kind else {
            return None;
        };
        if !self.readable() {
            return Some(Err(Errno::EBADF));
        }
        // No spin lock across the call (see `read`).
        let at = offset.unwrap_or_else(|| *self.pos.lock());
        let n = match remote::pread(r.handle, at, kbuf) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let took = sink(&kbuf[..n]).min(n);
        if offset.is_none() {
            *self.pos.lock() = at + took as u64;
        }
        Some(Ok((n, took)))
    }

    /// Reads a readable regular file straight from the page cache into
    /// `sink` (see `fs::Inode::read_with`: it runs under the file's lock
    /// and must not fault into code that takes it): at `offset`, or at the
    /// file offset, advancing it by what `sink` took.  `None` when this is
    /// not a readable regular file: `read_at`/`read` then do the work (and
    /// report the error).
    pub fn read_direct(
        &self,
        offset: Option<u64>,
        len: usize,
        sink: impl FnMut(&[u8]) -> usize,
    ) -> Option<Result<usize, Errno>> {
        let inode = match (&self.kind, &self.inode) {
            (Kind::Inode, Some(i)) if i.kind() == FileType::Regular && self.readable() => i,
            _ => return None,
        };
        Some(match offset {
            Some(o) => inode.read_with(o, len, sink).map_err(errno),
            None => {
                let mut pos = self.pos.lock();
                inode
                    .read_with(*pos, len, sink)
                    .map_err(errno)
                    .inspect(|&n| *pos += n as u64)
            }
        })
    }

    /// `write`: at the file offset (or end with `O_APPEND`), advancing it.
    pub fn write(&self, src: &[u8]) -> Result<usize, Errno> {
        if !self.seekable() {
            return self.write_at(src, 0, false).map(|(n, _)| n);
        }
        let append = self.flags() & O_APPEND != 0;
        if let Kind::Remote(_) = self.kind {
            let at = *self.pos.lock();
            let (n, end) = self.write_at(src, at, append)?;
            *self.pos.lock() = end;
            return Ok(n);
        }
        let mut pos = self.pos.lock();
        let (n, end) = self.write_at(src, *pos, append)?;
        if matches!(self.kind, Kind::Inode | Kind::Block(_)) {
            *pos = end;
        }
        Ok(n)
    }

    /// `pread64`/`pwrite64` need a seekable file.
    pub fn check_positional(&self) -> Result<(), Errno> {
        if self.seekable() {
            Ok(())
        } else {
            Err(Errno::ESPIPE)
        }
    }

    /// `lseek`.
    pub fn seek(&self, offset: i64, whence: u32) -> Result<u64, Errno> {
        if !self.seekable() {
            return Err(Errno::ESPIPE);
        }
        // The file server's size, asked before the offset lock is taken.
        let remote_size = match (&self.kind, whence) {
            (Kind::Remote(r), SEEK_END) => {
                Some(remote::stat(fsproto::At::handle(r.handle))?.size as i64)
            }
            _ => None,
        };
        let mut pos = self.pos.lock();
        let base: i64 = match whence {
            SEEK_SET => 0,
            SEEK_CUR => *pos as i64,
            SEEK_END => match (&self.kind, &self.inode) {
                (Kind::Text(t), _) => t.len() as i64,
                (Kind::Inode, Some(i)) => i.size() as i64,
                (Kind::Block(disk), _) => super::blockdev::size(disk) as i64,
                (Kind::Remote(_), _) => remote_size.unwrap_or(0),
                _ => 0,
            },
            _ => return Err(Errno::EINVAL),
        };
        // EOVERFLOW (75) is not among the shared errno constants.
        let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        let is_dir = self.inode.as_ref().is_some_and(|i| i.is_dir())
            || self.as_remote().is_some_and(|r| r.is_dir());
        if is_dir {
            // Only a rewind is meaningful for the hashed directory cursor.
            if new != 0 {
                return Err(Errno::EINVAL);
            }
            *self.cursor.lock() = DirCursor::default();
        }
        *pos = new as u64;
        Ok(new as u64)
    }

    /// `fstat`.
    pub fn stat(&self) -> Stat {
        if let Kind::Remote(r) = &self.kind {
            // What is known without a call (`try_stat` asks the server).
            return Stat {
                dev: r.dev,
                ino: r.ino,
                mode: r.mode,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                blksize: 4096,
                blocks: 0,
                atime: Default::default(),
                mtime: Default::default(),
                ctime: Default::default(),
            };
        }
        match &self.inode {
            Some(i) => i.stat(),
            None => Stat {
                dev: PIPE_DEV,
                ino: pipe_ino(self),
                mode: match self.kind {
                    Kind::Socket(_) => 0o140777,
                    Kind::Epoll(_) => 0o600,
                    _ => 0o010600,
                },
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                blksize: 4096,
                blocks: 0,
                atime: Default::default(),
                mtime: Default::default(),
                ctime: Default::default(),
            },
        }
    }

    /// Lists directory entries from this open file's cursor; see
    /// `fs::Inode::readdir`.
    pub fn readdir(&self, emit: impl FnMut(&str, u64, FileType, u64) -> bool) -> Result<(), Errno> {
        let inode = self.inode.as_ref().ok_or(Errno::ENOTDIR)?;
        if self.flags() & O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        let mut cursor = self.cursor.lock();
        inode.readdir(&mut cursor, emit).map_err(errno)
    }

    /// poll(2) readiness for `events`.
    pub fn poll(&self, events: i16) -> i16 {
        let ready = self.poll_mask() as i16;
        ready & (events | POLLERR | POLLHUP)
    }

    /// Every readiness bit that holds now (poll/epoll bits, `POLLRDHUP`
    /// included), before filtering by what a caller asked for.
    pub fn poll_mask(&self) -> u32 {
        match &self.kind {
            Kind::PipeRead(p) => p.poll_read() as u16 as u32,
            Kind::PipeWrite(p) => p.poll_write() as u16 as u32,
            Kind::Socket(s) => s.poll(),
            Kind::Epoll(e) => e.poll_mask(),
            // Files and devices are always ready; console reads see EOF.
            _ => (POLLIN | POLLOUT) as u32,
        }
    }

    /// Where this file announces readiness changes; `None` for files that
    /// are always ready.
    pub fn poll_waiters(&self) -> Option<&PollWaiters> {
        match &self.kind {
            Kind::PipeRead(p) | Kind::PipeWrite(p) => Some(p.waiters()),
            Kind::Socket(s) => Some(s.waiters()),
            Kind::Epoll(e) => Some(e.waiters()),
            _ => None,
        }
    }

    /// Whether epoll may watch this file (Linux: `EPERM` for regular files,
    /// directories and devices without a poll method).
    pub fn epoll_watchable(&self) -> bool {
        matches!(
            self.kind,
            Kind::PipeRead(_)
                | Kind::PipeWrite(_)
                | Kind::Socket(_)
                | Kind::Epoll(_)
                | Kind::Console
        )
    }
}

/// A stable number for a pipe (its buffer's address).
/// `st_dev` of pipes: an anonymous device of their own, like Linux's
/// pipefs (below the numbers the `fs` crate hands to superblocks).
const PIPE_DEV: u64 = 0x0c;

fn pipe_ino(f: &File) -> u64 {
    match &f.kind {
        Kind::PipeRead(p) | Kind::PipeWrite(p) => Arc::as_ptr(p) as u64 & 0xffff_ffff,
        Kind::Socket(s) => Arc::as_ptr(s) as *const u8 as u64 & 0xffff_ffff,
        Kind::Epoll(e) => Arc::as_ptr(e) as u64 & 0xffff_ffff,
        _ => 0,
    }
}

impl Drop for File {
    fn drop(&mut self) {
        match &self.kind {
            Kind::PipeRead(p) => p.close_reader(),
            Kind::PipeWrite(p) => p.close_writer(),
            Kind::Socket(s) => s.on_close(),
            _ => {}
        }
    }
}
