//! File-system system calls: files, directories, pipes, poll/select,
//! ioctl, with Linux numbers, structures and errno values.
//!
//! Owns the translation between the Linux ABI (user pointers, `struct
//! stat`, `statx`, `linux_dirent64`, `iovec`, `pollfd`, `fd_set`,
//! `timespec`) and the kernel's fs glue (`crate::fs`).  Every user pointer
//! goes through `crate::mm::uaccess`; a bad one gives `EFAULT`.
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

use super::errno::{Errno, SysResult};
use crate::fs::pollwait::PollWaker;
use crate::fs::{errno as fs_err, root_fs, File, FileRef};
use crate::mm::uaccess::{
    copy_from_user, copy_to_user, copy_to_user_nofault, fault_in_writable, read_user,
    read_user_cstr, write_user,
};
use crate::proc::Process;

const AT_FDCWD: i32 = -100;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const AT_REMOVEDIR: u32 = 0x200;
const AT_EACCESS: u32 = 0x200;
const AT_SYMLINK_FOLLOW: u32 = 0x400;
const AT_NO_AUTOMOUNT: u32 = 0x800;
const AT_EMPTY_PATH: u32 = 0x1000;
const AT_STATX_SYNC_TYPE: u32 = 0x6000;
/// Reported by F_GETFL for files opened with open(2) on 64-bit Linux.
const O_LARGEFILE: u32 = 0o100000;
/// Longest path read from user space (PATH_MAX includes the NUL).
const PATH_MAX: usize = 4096;
/// Most bytes moved through one kernel bounce buffer at a time.
const CHUNK: usize = 64 * 1024;
/// Most iovecs / pollfds accepted (UIO_MAXIOV / RLIMIT_NOFILE).
const MAX_VEC: u64 = 1024;

fn proc() -> Result<Arc<Process>, Errno> {
    crate::proc::current().ok_or(Errno::EBADF)
}

fn file(fd: i32) -> Result<FileRef, Errno> {
    // The process is borrowed through the running task, not cloned: the
    // threads of a process would all write its reference count.
    let task = crate::proc::current_task().ok_or(Errno::EBADF)?;
    task.process.files.fds.get(fd)
}

fn user_path(addr: u64) -> Result<String, Errno> {
    let p = read_user_cstr(addr, PATH_MAX - 1)?;
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
fn resolve(dirfd: i32, path_addr: u64, flags: u32, follow: bool) -> Result<Arc<Inode>, Errno> {
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
    let start = start_dir(&p, dirfd, &path)?;
    root_fs().lookup(&start, &path, follow).map_err(fs_err)
}

// ---- read and write ------------------------------------------------------

fn do_read(f: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    let count = count.min(isize::MAX as u64 & !0xfff) as usize;
    if count == 0 {
        return match offset {
            Some(o) => f.read_at(&mut [], o),
            None => f.read(&mut []),
        };
    }
    if let Some(res) = read_regular(f, buf, count, offset) {
        return res;
    }
    let mut kbuf = crate::mm::kbuf::zeroed(count.min(CHUNK))?;
    let mut done = 0;
    while done < count {
        let want = (count - done).min(kbuf.len());
        let res = match offset {
            Some(o) => f.read_at(&mut kbuf[..want], o + done as u64),
            None => f.read(&mut kbuf[..want]),
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if let Err(e) = copy_to_user(buf + done as u64, &kbuf[..n]) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        done += n;
        // Only regular files and disks fill a long read from several chunks; a pipe
        // returns what it has.
        if n < want || !(f.is_plain() || f.as_disk().is_some()) {
            break;
        }
    }
    Ok(done)
}

/// `read`/`pread64` of a regular file (`None` for anything else): one
/// copy, from the page cache straight to the user buffer, with no kernel
/// buffer.  That copy runs under the file's lock, so it never pages in
/// (`copy_to_user_nofault`): where the destination page is not mapped
/// writable yet (never touched, copy-on-write, a file mapping), the lock
/// is dropped, the page is faulted in as a user write would, and the read
/// goes on from there.  As on Linux, a buffer that runs into memory that
/// cannot be written gives the bytes copied before it, or `EFAULT`.
fn read_regular(f: &File, buf: u64, count: usize, offset: Option<u64>) -> Option<SysResult> {
    /// Rounds in a row that may fault in a page and still copy nothing
    /// (another thread unmapping it again meanwhile) before giving up.
    const MAX_STUCK: u32 = 4;
    const PAGE: u64 = 4096;
    let mut done = 0;
    let mut stuck = 0;
    loop {
        let before = done;
        let mut faulted = false;
        let res = f.read_direct(offset.map(|o| o + done as u64), count - done, |piece| {
            // One copy per destination page, so that a fault leaves every
            // byte before that page copied and counted (as Linux counts).
            let mut took = 0;
            while took < piece.len() {
                let dst = buf + done as u64;
                let room = (PAGE - dst % PAGE) as usize;
                let n = room.min(piece.len() - took);
                if copy_to_user_nofault(dst, &piece[took..took + n]).is_err() {
                    faulted = true;
                    break;
                }
                took += n;
                done += n;
            }
            took
        })?;
        if let Err(e) = res {
            return Some(if done == 0 { Err(e) } else { Ok(done) });
        }
        if !faulted || done == count {
            return Some(Ok(done));
        }
        stuck = if done == before { stuck + 1 } else { 0 };
        if stuck > MAX_STUCK || fault_in_writable(buf + done as u64).is_err() {
            return Some(if done == 0 {
                Err(Errno::EFAULT)
            } else {
                Ok(done)
            });
        }
    }
}

fn do_write(f: &File, buf: u64, count: u64, offset: Option<u64>) -> SysResult {
    let count = count.min(isize::MAX as u64 & !0xfff) as usize;
    if count == 0 {
        return match offset {
            Some(o) => f.write_at(&[], o, false).map(|(n, _)| n),
            None => f.write(&[]),
        };
    }
    let mut kbuf = crate::mm::kbuf::zeroed(count.min(CHUNK))?;
    let mut done = 0;
    while done < count {
        let want = (count - done).min(kbuf.len());
        if let Err(e) = copy_from_user(&mut kbuf[..want], buf + done as u64) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        let res = match offset {
            Some(o) => f
                .write_at(&kbuf[..want], o + done as u64, false)
                .map(|(n, _)| n),
            None => f.write(&kbuf[..want]),
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if n < want {
            break;
        }
    }
    Ok(done)
}

pub fn sys_read(fd: i32, buf: u64, count: u64) -> SysResult {
    do_read(&*file(fd)?, buf, count, None)
}

pub fn sys_write(fd: i32, buf: u64, count: u64) -> SysResult {
    do_write(&*file(fd)?, buf, count, None)
}

pub fn sys_pread64(fd: i32, buf: u64, count: u64, offset: i64) -> SysResult {
    let f = file(fd)?;
    if offset < 0 {
        return Err(Errno::EINVAL);
    }
    f.check_positional()?;
    do_read(&f, buf, count, Some(offset as u64))
}

pub fn sys_pwrite64(fd: i32, buf: u64, count: u64, offset: i64) -> SysResult {
    let f = file(fd)?;
    if offset < 0 {
        return Err(Errno::EINVAL);
    }
    f.check_positional()?;
    do_write(&f, buf, count, Some(offset as u64))
}

fn iovecs(iov: u64, cnt: u64) -> Result<Vec<(u64, u64)>, Errno> {
    if cnt > MAX_VEC {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for i in 0..cnt {
        let [base, len]: [u64; 2] = read_user(iov + i * 16)?;
        total = total
            .checked_add(len)
            .filter(|&t| t <= isize::MAX as u64)
            .ok_or(Errno::EINVAL)?;
        v.push((base, len));
    }
    Ok(v)
}

/// readv/writev: `transfer` each buffer in turn; stop at the first short
/// transfer; an error after some progress returns the progress (as Linux).
fn vectored(
    fd: i32,
    iov: u64,
    cnt: u64,
    transfer: fn(&File, u64, u64, Option<u64>) -> SysResult,
) -> SysResult {
    let f = file(fd)?;
    let mut total = 0;
    for (base, len) in iovecs(iov, cnt)? {
        match transfer(&f, base, len, None) {
            Ok(n) => {
                total += n;
                if (n as u64) < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

pub fn sys_readv(fd: i32, iov: u64, cnt: u64) -> SysResult {
    vectored(fd, iov, cnt, do_read)
}

pub fn sys_writev(fd: i32, iov: u64, cnt: u64) -> SysResult {
    vectored(fd, iov, cnt, do_write)
}

pub fn sys_lseek(fd: i32, offset: i64, whence: u32) -> SysResult {
    file(fd)?.seek(offset, whence).map(|p| p as usize)
}

// ---- open, close, dup ----------------------------------------------------

pub fn sys_openat(dirfd: i32, path: u64, flags: u32, mode: u32) -> SysResult {
    let p = proc()?;
    let path = user_path(path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = start_dir(&p, dirfd, &path)?;
    let perm = mode & 0o7777 & !p.files.ctx.umask();
    let inode = root_fs().open(&start, &path, flags, perm).map_err(fs_err)?;
    // A socket's name cannot be opened (Linux: ENXIO), except with O_PATH.
    if inode.kind() == FileType::Socket && flags & O_PATH == 0 {
        return Err(Errno::ENXIO);
    }
    let f = File::open_inode(inode, flags | O_LARGEFILE)?;
    p.files
        .fds
        .insert(f, flags & O_CLOEXEC != 0)
        .map(|fd| fd as usize)
}

pub fn sys_open(path: u64, flags: u32, mode: u32) -> SysResult {
    sys_openat(AT_FDCWD, path, flags, mode)
}

pub fn sys_creat(path: u64, mode: u32) -> SysResult {
    sys_openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)
}

pub fn sys_close(fd: i32) -> SysResult {
    proc()?.files.fds.close(fd).map(|_| 0)
}

pub fn sys_dup(fd: i32) -> SysResult {
    let p = proc()?;
    let f = p.files.fds.get(fd)?;
    p.files.fds.insert(f, false).map(|fd| fd as usize)
}

pub fn sys_dup2(old: i32, new: i32) -> SysResult {
    let p = proc()?;
    let f = p.files.fds.get(old)?;
    if old == new {
        return Ok(new as usize);
    }
    p.files.fds.insert_at(new, f, false).map(|fd| fd as usize)
}

pub fn sys_dup3(old: i32, new: i32, flags: u32) -> SysResult {
    if old == new || flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    let p = proc()?;
    let f = p.files.fds.get(old)?;
    p.files
        .fds
        .insert_at(new, f, flags & O_CLOEXEC != 0)
        .map(|fd| fd as usize)
}

pub fn sys_pipe2(fds: u64, flags: u32) -> SysResult {
    const O_DIRECT: u32 = 0o40000;
    if flags & !(O_CLOEXEC | O_NONBLOCK | O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = proc()?;
    let (r, w) = File::pipe(flags);
    let cloexec = flags & O_CLOEXEC != 0;
    let rfd = p.files.fds.insert(r, cloexec)?;
    let wfd = match p.files.fds.insert(w, cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = p.files.fds.close(rfd);
            return Err(e);
        }
    };
    if let Err(e) = write_user(fds, &[rfd, wfd]) {
        let _ = p.files.fds.close(rfd);
        let _ = p.files.fds.close(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn sys_pipe(fds: u64) -> SysResult {
    sys_pipe2(fds, 0)
}

pub fn sys_fcntl(fd: i32, cmd: u32, arg: u64) -> SysResult {
    const F_DUPFD: u32 = 0;
    const F_GETFD: u32 = 1;
    const F_SETFD: u32 = 2;
    const F_GETFL: u32 = 3;
    const F_SETFL: u32 = 4;
    const F_DUPFD_CLOEXEC: u32 = 1030;
    const FD_CLOEXEC: u64 = 1;
    let p = proc()?;
    let f = p.files.fds.get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg).map_err(|_| Errno::EINVAL)?;
            p.files
                .fds
                .insert_from(min, f, cmd == F_DUPFD_CLOEXEC)
                .map(|fd| fd as usize)
        }
        F_GETFD => Ok(if p.files.fds.cloexec(fd)? {
            FD_CLOEXEC as usize
        } else {
            0
        }),
        F_SETFD => p
            .files
            .fds
            .set_cloexec(fd, arg & FD_CLOEXEC != 0)
            .map(|_| 0),
        F_GETFL => Ok(f.flags() as usize),
        F_SETFL => {
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn sys_ioctl(fd: i32, cmd: u32, arg: u64) -> SysResult {
    const TCGETS: u32 = 0x5401;
    const TCSETS: u32 = 0x5402;
    const TCSETSW: u32 = 0x5403;
    const TCSETSF: u32 = 0x5404;
    const TIOCGPGRP: u32 = 0x540F;
    const TIOCSPGRP: u32 = 0x5410;
    const TIOCGWINSZ: u32 = 0x5413;
    const TIOCSWINSZ: u32 = 0x5414;
    const FIONBIO: u32 = 0x5421;
    const FIONREAD: u32 = 0x541B;
    const FIONCLEX: u32 = 0x5450;
    const FIOCLEX: u32 = 0x5451;
    let p = proc()?;
    let f = p.files.fds.get(fd)?;
    match cmd {
        FIONBIO => {
            let on: i32 = read_user(arg)?;
            let flags = if on != 0 {
                f.flags() | O_NONBLOCK
            } else {
                f.flags() & !O_NONBLOCK
            };
            f.set_status_flags(flags);
            return Ok(0);
        }
        FIONREAD => {
            // Sockets and pipes: bytes a read could return now.
            let n = if let Some(sock) = f.as_socket() {
                sock.bytes_readable()
            } else if let Some(n) = f.pipe_bytes_readable() {
                n
            } else {
                return Err(Errno::ENOTTY);
            };
            return write_user(arg, &(n.min(i32::MAX as usize) as i32)).map(|_| 0);
        }
        FIOCLEX => return p.files.fds.set_cloexec(fd, true).map(|_| 0),
        FIONCLEX => return p.files.fds.set_cloexec(fd, false).map(|_| 0),
        _ => {}
    }
    if f.as_socket().is_some() {
        if let Some(r) = crate::net::ifconf::ioctl(cmd, arg) {
            return r;
        }
    }
    if !f.is_console() {
        return Err(Errno::ENOTTY);
    }
    match cmd {
        TCGETS => {
            // A serial console at 115200 8N1 in cooked mode (what Linux
            // reports for /dev/console on a 16550).
            let mut t = [0u8; 36];
            t[0..4].copy_from_slice(&0o002400u32.to_ne_bytes()); // ICRNL | IXON
            t[4..8].copy_from_slice(&0o000005u32.to_ne_bytes()); // OPOST | ONLCR
            t[8..12].copy_from_slice(&0o010262u32.to_ne_bytes()); // B115200 | CS8 | CREAD
            t[12..16].copy_from_slice(&0o105073u32.to_ne_bytes()); // ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN
            let cc: [u8; 19] = [
                3, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22, 0, 0, 0,
            ];
            t[17..36].copy_from_slice(&cc);
            copy_to_user(arg, &t).map(|_| 0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let mut t = [0u8; 36];
            copy_from_user(&mut t, arg).map(|_| 0)
        }
        TIOCGWINSZ => write_user(arg, &[0u16; 4]).map(|_| 0),
        TIOCSWINSZ => {
            let _: [u16; 4] = read_user(arg)?;
            Ok(0)
        }
        TIOCGPGRP => write_user(arg, &p.pid).map(|_| 0),
        TIOCSPGRP => {
            let _: i32 = read_user(arg)?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

// ---- metadata -------------------------------------------------------------

/// Linux x86_64 `struct stat` (144 bytes).
fn stat_bytes(st: &Stat) -> [u8; 144] {
    let mut b = [0u8; 144];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &st.dev.to_ne_bytes());
    put(8, &st.ino.to_ne_bytes());
    put(16, &(st.nlink as u64).to_ne_bytes());
    put(24, &st.mode.to_ne_bytes());
    put(28, &st.uid.to_ne_bytes());
    put(32, &st.gid.to_ne_bytes());
    put(40, &st.rdev.to_ne_bytes());
    put(48, &st.size.to_ne_bytes());
    put(56, &(st.blksize as u64).to_ne_bytes());
    put(64, &st.blocks.to_ne_bytes());
    for (i, t) in [st.atime, st.mtime, st.ctime].iter().enumerate() {
        put(72 + i * 16, &t.sec.to_ne_bytes());
        put(80 + i * 16, &(t.nsec as u64).to_ne_bytes());
    }
    b
}

fn put_stat(buf: u64, st: &Stat) -> SysResult {
    copy_to_user(buf, &stat_bytes(st)).map(|_| 0)
}

pub fn sys_stat(path: u64, buf: u64) -> SysResult {
    put_stat(buf, &resolve(AT_FDCWD, path, 0, true)?.stat())
}

pub fn sys_lstat(path: u64, buf: u64) -> SysResult {
    put_stat(buf, &resolve(AT_FDCWD, path, 0, false)?.stat())
}

pub fn sys_fstat(fd: i32, buf: u64) -> SysResult {
    put_stat(buf, &file(fd)?.stat())
}

pub fn sys_newfstatat(dirfd: i32, path: u64, buf: u64, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(dirfd, path, flags)?;
    put_stat(buf, &st)
}

fn stat_at(dirfd: i32, path: u64, flags: u32) -> Result<Stat, Errno> {
    let p = proc()?;
    let s = user_path(path)?;
    if s.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd != AT_FDCWD {
        // A pipe or device opened without an inode still has a stat.
        return Ok(p.files.fds.get(dirfd)?.stat());
    }
    if s.is_empty() {
        return Ok(resolve(dirfd, path, flags, false)?.stat());
    }
    let start = start_dir(&p, dirfd, &s)?;
    root_fs()
        .stat_path(&start, &s, flags & AT_SYMLINK_NOFOLLOW == 0)
        .map_err(fs_err)
}

pub fn sys_statx(dirfd: i32, path: u64, flags: u32, mask: u32, buf: u64) -> SysResult {
    const STATX_RESERVED: u32 = 0x8000_0000;
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE) != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & STATX_RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(dirfd, path, flags)?;
    const STATX_BASIC_STATS: u32 = 0x7ff;
    let mut b = [0u8; 256];
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(0, &STATX_BASIC_STATS.to_ne_bytes());
    put(4, &st.blksize.to_ne_bytes());
    put(16, &st.nlink.to_ne_bytes());
    put(20, &st.uid.to_ne_bytes());
    put(24, &st.gid.to_ne_bytes());
    put(28, &(st.mode as u16).to_ne_bytes());
    put(32, &st.ino.to_ne_bytes());
    put(40, &st.size.to_ne_bytes());
    put(48, &st.blocks.to_ne_bytes());
    // atime @64, btime @80 (not reported), ctime @96, mtime @112.
    for (off, t) in [(64, st.atime), (96, st.ctime), (112, st.mtime)] {
        put(off, &t.sec.to_ne_bytes());
        put(off + 8, &t.nsec.to_ne_bytes());
    }
    put(128, &((st.rdev >> 8) as u32).to_ne_bytes());
    put(132, &((st.rdev & 0xff) as u32).to_ne_bytes());
    // st_dev of the inode's superblock (each mount has its own).
    put(136, &((st.dev >> 8) as u32).to_ne_bytes());
    put(140, &((st.dev & 0xff) as u32).to_ne_bytes());
    copy_to_user(buf, &b).map(|_| 0)
}

pub fn sys_faccessat2(dirfd: i32, path: u64, mode: u32, flags: u32) -> SysResult {
    const X_OK: u32 = 1;
    if mode & !7 != 0 || flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let inode = resolve(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    let st = inode.stat();
    // The real ids, or the effective ones with AT_EACCESS (as on Linux).
    let creds = &crate::proc::current_task()
        .ok_or(Errno::ENOSYS)?
        .process
        .creds;
    let (uid, gid) = if flags & AT_EACCESS != 0 {
        (&creds.euid, &creds.egid)
    } else {
        (&creds.uid, &creds.gid)
    };
    let relaxed = core::sync::atomic::Ordering::Relaxed;
    let (uid, gid) = (uid.load(relaxed), gid.load(relaxed));
    if uid == 0 {
        // Root reads and writes anything; execute needs an x bit (or a
        // directory), as for Linux's root.
        if mode & X_OK != 0 && !inode.is_dir() && st.mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        return Ok(0);
    }
    // Owner, else group, else other permission bits (no supplementary
    // groups here).
    let shift = if st.uid == uid {
        6
    } else if st.gid == gid {
        3
    } else {
        0
    };
    if (st.mode >> shift) & mode & 7 != mode & 7 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

pub fn sys_access(path: u64, mode: u32) -> SysResult {
    sys_faccessat2(AT_FDCWD, path, mode, 0)
}

pub fn sys_fchmodat(dirfd: i32, path: u64, mode: u32) -> SysResult {
    resolve(dirfd, path, 0, true)?.set_perm(mode);
    Ok(0)
}

pub fn sys_chmod(path: u64, mode: u32) -> SysResult {
    sys_fchmodat(AT_FDCWD, path, mode)
}

pub fn sys_fchmod(fd: i32, mode: u32) -> SysResult {
    file(fd)?.inode.clone().ok_or(Errno::EBADF)?.set_perm(mode);
    Ok(0)
}

pub fn sys_utimensat(dirfd: i32, path: u64, times: u64, flags: u32) -> SysResult {
    const UTIME_NOW: i64 = (1 << 30) - 1;
    const UTIME_OMIT: i64 = (1 << 30) - 2;
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let inode = if path == 0 {
        file(dirfd)?.inode.clone().ok_or(Errno::EBADF)?
    } else {
        resolve(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?
    };
    let now = root_fs().now();
    let (a, m) = if times == 0 {
        (Some(now), Some(now))
    } else {
        let ts: [i64; 4] = read_user(times)?;
        let pick = |sec: i64, nsec: i64| -> Result<Option<Timespec>, Errno> {
            match nsec {
                UTIME_OMIT => Ok(None),
                UTIME_NOW => Ok(Some(now)),
                0..=999_999_999 => Ok(Some(Timespec {
                    sec,
                    nsec: nsec as u32,
                })),
                _ => Err(Errno::EINVAL),
            }
        };
        (pick(ts[0], ts[1])?, pick(ts[2], ts[3])?)
    };
    if a.is_some() || m.is_some() {
        inode.set_times(a, m);
    }
    Ok(0)
}

// ---- directories and names -------------------------------------------------

pub fn sys_getdents64(fd: i32, dirp: u64, count: u64) -> SysResult {
    let f = file(fd)?;
    match &f.inode {
        Some(i) if i.is_dir() => {}
        _ => return Err(Errno::ENOTDIR),
    }
    let cap = count.min(CHUNK as u64) as usize;
    let mut out: Vec<u8> = Vec::new();
    out.try_reserve_exact(cap).map_err(|_| Errno::ENOMEM)?;
    let mut too_small = false;
    f.readdir(|name, ino, kind, next| {
        let reclen = (19 + name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > cap {
            too_small = out.is_empty();
            return false;
        }
        let start = out.len();
        out.resize(start + reclen, 0);
        let rec = &mut out[start..];
        rec[0..8].copy_from_slice(&ino.to_ne_bytes());
        rec[8..16].copy_from_slice(&next.to_ne_bytes());
        rec[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
        rec[18] = kind.dirent_type();
        rec[19..19 + name.len()].copy_from_slice(name.as_bytes());
        true
    })?;
    if too_small {
        return Err(Errno::EINVAL);
    }
    copy_to_user(dirp, &out)?;
    Ok(out.len())
}

pub fn sys_getcwd(buf: u64, size: u64) -> SysResult {
    let p = proc()?;
    let path = root_fs().path_of(&p.files.ctx.cwd()).map_err(fs_err)?;
    let len = path.len() + 1;
    if (size as usize) < len {
        return Err(Errno::ERANGE);
    }
    let mut bytes = path.into_bytes();
    bytes.push(0);
    copy_to_user(buf, &bytes)?;
    Ok(len)
}

pub fn sys_chdir(path: u64) -> SysResult {
    let dir = resolve(AT_FDCWD, path, 0, true)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    proc()?.files.ctx.set_cwd(dir);
    Ok(0)
}

pub fn sys_fchdir(fd: i32) -> SysResult {
    let dir = file(fd)?.inode.clone().ok_or(Errno::ENOTDIR)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    proc()?.files.ctx.set_cwd(dir);
    Ok(0)
}

/// The start directory and path of a `*at` call.
fn at(dirfd: i32, path: u64) -> Result<(StartDir, String), Errno> {
    let p = proc()?;
    let path = user_path(path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok((start_dir(&p, dirfd, &path)?, path))
}

pub fn sys_mkdirat(dirfd: i32, path: u64, mode: u32) -> SysResult {
    let umask = proc()?.files.ctx.umask();
    let (start, path) = at(dirfd, path)?;
    root_fs()
        .mkdir(&start, &path, mode & 0o1777 & !umask)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_mkdir(path: u64, mode: u32) -> SysResult {
    sys_mkdirat(AT_FDCWD, path, mode)
}

pub fn sys_mknodat(dirfd: i32, path: u64, mode: u32, dev: u64) -> SysResult {
    const S_IFMT: u32 = 0o170000;
    let kind = match mode & S_IFMT {
        0 | 0o100000 => FileType::Regular,
        0o010000 => FileType::Fifo,
        0o020000 => FileType::CharDevice,
        0o140000 => FileType::Socket,
        0o040000 => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    let umask = proc()?.files.ctx.umask();
    let (start, path) = at(dirfd, path)?;
    root_fs()
        .mknod(&start, &path, kind, mode & 0o7777 & !umask, dev)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_mknod(path: u64, mode: u32, dev: u64) -> SysResult {
    sys_mknodat(AT_FDCWD, path, mode, dev)
}

pub fn sys_unlinkat(dirfd: i32, path: u64, flags: u32) -> SysResult {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, path) = at(dirfd, path)?;
    let r = if flags & AT_REMOVEDIR != 0 {
        root_fs().rmdir(&start, &path)
    } else {
        root_fs().unlink(&start, &path)
    };
    r.map_err(fs_err).map(|_| 0)
}

pub fn sys_unlink(path: u64) -> SysResult {
    sys_unlinkat(AT_FDCWD, path, 0)
}

pub fn sys_rmdir(path: u64) -> SysResult {
    sys_unlinkat(AT_FDCWD, path, AT_REMOVEDIR)
}

pub fn sys_renameat2(olddir: i32, old: u64, newdir: i32, new: u64, flags: u32) -> SysResult {
    const RENAME_NOREPLACE: u32 = 1;
    const RENAME_EXCHANGE: u32 = 2;
    let mode = match flags {
        0 => ::fs::vfs::RenameMode::Replace,
        RENAME_NOREPLACE => ::fs::vfs::RenameMode::NoReplace,
        RENAME_EXCHANGE => ::fs::vfs::RenameMode::Exchange,
        // RENAME_WHITEOUT (overlay file systems) and combinations.
        _ => return Err(Errno::EINVAL),
    };
    let (os, op) = at(olddir, old)?;
    let (ns, np) = at(newdir, new)?;
    root_fs()
        .rename_with(&os, &op, &ns, &np, mode)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_rename(old: u64, new: u64) -> SysResult {
    sys_renameat2(AT_FDCWD, old, AT_FDCWD, new, 0)
}

pub fn sys_linkat(olddir: i32, old: u64, newdir: i32, new: u64, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let (os, op) = at(olddir, old)?;
    let (ns, np) = at(newdir, new)?;
    root_fs()
        .link(&os, &op, &ns, &np, flags & AT_SYMLINK_FOLLOW != 0)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_link(old: u64, new: u64) -> SysResult {
    sys_linkat(AT_FDCWD, old, AT_FDCWD, new, 0)
}

pub fn sys_symlinkat(target: u64, newdir: i32, path: u64) -> SysResult {
    let target = user_path(target)?;
    let (start, path) = at(newdir, path)?;
    root_fs()
        .symlink(&target, &start, &path)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_symlink(target: u64, path: u64) -> SysResult {
    sys_symlinkat(target, AT_FDCWD, path)
}

pub fn sys_readlinkat(dirfd: i32, path: u64, buf: u64, size: i64) -> SysResult {
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    let inode = resolve(dirfd, path, 0, false)?;
    let target = inode.symlink_target().ok_or(Errno::EINVAL)?;
    let n = target.len().min(size as usize);
    copy_to_user(buf, &target.as_bytes()[..n])?;
    Ok(n)
}

pub fn sys_readlink(path: u64, buf: u64, size: i64) -> SysResult {
    sys_readlinkat(AT_FDCWD, path, buf, size)
}

pub fn sys_ftruncate(fd: i32, len: i64) -> SysResult {
    let f = file(fd)?;
    if len < 0 || !f.writable() || !f.is_plain() {
        return Err(Errno::EINVAL);
    }
    match &f.inode {
        Some(i) if i.kind() == FileType::Regular => {
            i.truncate(len as u64).map_err(fs_err).map(|_| 0)
        }
        Some(i) if i.is_dir() => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sys_truncate(path: u64, len: i64) -> SysResult {
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let inode = resolve(AT_FDCWD, path, 0, true)?;
    match inode.kind() {
        FileType::Regular => inode.truncate(len as u64).map_err(fs_err).map(|_| 0),
        FileType::Directory => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

/// tmpfs has nothing to write back; pipes and the console refuse, as on
/// Linux.
pub fn sys_fsync(fd: i32) -> SysResult {
    let f = file(fd)?;
    if f.inode.is_none() || f.is_console() {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

pub fn sys_umask(mask: u32) -> SysResult {
    Ok(proc()?.files.ctx.swap_umask(mask) as usize)
}

// ---- poll and select -------------------------------------------------------

/// Waits until `check` finds something ready (returns > 0), the deadline
/// (absolute ns, `None` = forever) passes, or a signal arrives (`EINTR`).
///
/// Blocks on a `PollWaker` subscribed to every file's `PollWaiters` (only
/// once a first check found nothing): the sequence number is read before
/// each check, so a readiness change after the check ends the sleep (see
/// `fs::pollwait`).  Files without waiters are always ready.
fn wait_ready(
    files: &[Option<FileRef>],
    deadline: Option<u64>,
    mut check: impl FnMut() -> Result<usize, Errno>,
) -> SysResult {
    let waker = PollWaker::new();
    let sub = waker.as_subscriber();
    let mut subscribed = false;
    let result = loop {
        let seen = waker.sequence();
        let n = check()?;
        if n > 0 {
            break Ok(n);
        }
        if deadline.is_some_and(|d| crate::arch::time::now_ns() >= d) {
            break Ok(0);
        }
        if crate::proc::signal_pending() {
            break Err(Errno::EINTR);
        }
        if !subscribed {
            for w in files.iter().flatten().filter_map(|f| f.poll_waiters()) {
                w.subscribe(sub.clone());
            }
            subscribed = true;
            continue;
        }
        waker.wait_change(seen, deadline);
    };
    if subscribed {
        for w in files.iter().flatten().filter_map(|f| f.poll_waiters()) {
            w.unsubscribe(&sub);
        }
    }
    result
}

/// Runs `call` with the signal mask at `mask_addr` (ppoll, pselect6,
/// epoll_pwait): the old mask comes back when it returns, or, when it was
/// interrupted by a signal, after that signal's handler (as Linux does).
pub fn with_sigmask(mask_addr: u64, size: u64, call: impl FnOnce() -> SysResult) -> SysResult {
    if mask_addr == 0 {
        return call();
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new: u64 = read_user(mask_addr)?;
    let Some(task) = crate::proc::current_task() else {
        return call();
    };
    let old = task
        .signals
        .mask
        .load(core::sync::atomic::Ordering::Acquire);
    task.signals.set_mask(new);
    let result = call();
    if result == Err(Errno::EINTR) {
        crate::proc::signal::set_temporary_mask(task, new, old);
    } else {
        task.signals.set_mask(old);
    }
    result
}

fn deadline_after(ns: Option<u64>) -> Option<u64> {
    ns.map(|ns| crate::arch::time::now_ns().saturating_add(ns))
}

fn read_timespec(addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let [sec, nsec]: [i64; 2] = read_user(addr)?;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(
        (sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(nsec as u64),
    ))
}

fn do_poll(fds: u64, nfds: u64, deadline: Option<u64>) -> SysResult {
    if nfds > MAX_VEC {
        return Err(Errno::EINVAL);
    }
    let p = proc()?;
    let mut entries: Vec<(i32, i16)> = Vec::with_capacity(nfds as usize);
    for i in 0..nfds {
        let raw: [u8; 8] = read_user(fds + i * 8)?;
        let fd = i32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let events = i16::from_ne_bytes([raw[4], raw[5]]);
        entries.push((fd, events));
    }
    // Resolved once: a file closed meanwhile stays polled (as on Linux,
    // where poll holds its file references for the call).
    let files: Vec<Option<FileRef>> = entries
        .iter()
        .map(|&(fd, _)| {
            if fd < 0 {
                None
            } else {
                p.files.fds.get(fd).ok()
            }
        })
        .collect();
    let mut revents = vec![0i16; entries.len()];
    let n = wait_ready(&files, deadline, || {
        let mut ready = 0;
        for (i, &(fd, events)) in entries.iter().enumerate() {
            revents[i] = if fd < 0 {
                0
            } else {
                match &files[i] {
                    Some(f) => f.poll(events),
                    None => crate::fs::POLLNVAL,
                }
            };
            if revents[i] != 0 {
                ready += 1;
            }
        }
        Ok(ready)
    })?;
    for (i, r) in revents.iter().enumerate() {
        write_user(fds + i as u64 * 8 + 6, r)?;
    }
    Ok(n)
}

pub fn sys_poll(fds: u64, nfds: u64, timeout_ms: i32) -> SysResult {
    let ns = if timeout_ms < 0 {
        None
    } else {
        Some(timeout_ms as u64 * 1_000_000)
    };
    do_poll(fds, nfds, deadline_after(ns))
}

/// ppoll, with its signal mask in force while it waits.
pub fn sys_ppoll(fds: u64, nfds: u64, tmo: u64, sigmask: u64, size: u64) -> SysResult {
    let ns = read_timespec(tmo)?;
    let deadline = deadline_after(ns);
    with_sigmask(sigmask, size, || do_poll(fds, nfds, deadline))
}

fn do_select(nfds: i32, rp: u64, wp: u64, ep: u64, deadline: Option<u64>) -> SysResult {
    if !(0..=1024).contains(&nfds) {
        return Err(Errno::EINVAL);
    }
    let words = (nfds as usize).div_ceil(64);
    let read_set = |addr: u64| -> Result<Vec<u64>, Errno> {
        let mut v = vec![0u64; words];
        if addr != 0 {
            for (i, w) in v.iter_mut().enumerate() {
                *w = read_user(addr + i as u64 * 8)?;
            }
        }
        Ok(v)
    };
    let (rin, win, ein) = (read_set(rp)?, read_set(wp)?, read_set(ep)?);
    let p = proc()?;
    let mut files: Vec<Option<FileRef>> = Vec::with_capacity(nfds as usize);
    for fd in 0..nfds as usize {
        let wanted = (rin[fd / 64] | win[fd / 64] | ein[fd / 64]) & (1 << (fd % 64)) != 0;
        files.push(if wanted {
            Some(p.files.fds.get(fd as i32)?)
        } else {
            None
        });
    }
    let (mut rout, mut wout, mut eout) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let n = wait_ready(&files, deadline, || {
        let mut ready = 0;
        for (fd, f) in files.iter().enumerate() {
            let Some(f) = f else { continue };
            let (w, bit) = (fd / 64, 1u64 << (fd % 64));
            let ev = f.poll(crate::fs::POLLIN | crate::fs::POLLOUT);
            let r = rin[w] & bit != 0
                && ev & (crate::fs::POLLIN | crate::fs::POLLHUP | crate::fs::POLLERR) != 0;
            let wr = win[w] & bit != 0 && ev & (crate::fs::POLLOUT | crate::fs::POLLERR) != 0;
            rout[w] = if r { rout[w] | bit } else { rout[w] & !bit };
            wout[w] = if wr { wout[w] | bit } else { wout[w] & !bit };
            eout[w] &= !bit;
            ready += r as usize + wr as usize;
        }
        Ok(ready)
    })?;
    for (addr, set) in [(rp, &rout), (wp, &wout), (ep, &eout)] {
        if addr != 0 {
            for (i, w) in set.iter().enumerate() {
                write_user(addr + i as u64 * 8, w)?;
            }
        }
    }
    Ok(n)
}

pub fn sys_select(nfds: i32, rp: u64, wp: u64, ep: u64, tv: u64) -> SysResult {
    let ns = if tv == 0 {
        None
    } else {
        let [sec, usec]: [i64; 2] = read_user(tv)?;
        // Linux refuses only negative parts; whole seconds in tv_usec carry
        // into tv_sec (fs/select.c), unlike pselect6's timespec.
        if sec < 0 || usec < 0 {
            return Err(Errno::EINVAL);
        }
        Some(
            (sec as u64)
                .saturating_add(usec as u64 / 1_000_000)
                .saturating_mul(1_000_000_000)
                .saturating_add(usec as u64 % 1_000_000 * 1000),
        )
    };
    do_select(nfds, rp, wp, ep, deadline_after(ns))
}

/// pselect6, with its signal mask in force while it waits.  The sixth
/// argument points to `{ const sigset_t *ss; size_t ss_len; }`.
pub fn sys_pselect6(nfds: i32, rp: u64, wp: u64, ep: u64, ts: u64, sig: u64) -> SysResult {
    let ns = read_timespec(ts)?;
    let deadline = deadline_after(ns);
    let (mask_addr, size) = if sig == 0 {
        (0, 0)
    } else {
        let [addr, len]: [u64; 2] = read_user(sig)?;
        (addr, len)
    };
    with_sigmask(mask_addr, size, || do_select(nfds, rp, wp, ep, deadline))
}

// ---- dispatch ---------------------------------------------------------------

/// The file-system calls by Linux number: `Some(result)` for the numbers
/// this file serves, `None` for every other number.  `a` holds rdi, rsi,
/// rdx, r10, r8, r9.
pub fn dispatch(nr: u64, a: [u64; 6]) -> Option<SysResult> {
    let fd = |i: usize| a[i] as i32;
    Some(super::count::syscall_match!(nr, {
        0 => sys_read(fd(0), a[1], a[2]),
        1 => sys_write(fd(0), a[1], a[2]),
        2 => sys_open(a[0], a[1] as u32, a[2] as u32),
        3 => sys_close(fd(0)),
        4 => sys_stat(a[0], a[1]),
        5 => sys_fstat(fd(0), a[1]),
        6 => sys_lstat(a[0], a[1]),
        7 => sys_poll(a[0], a[1], a[2] as i32),
        8 => sys_lseek(fd(0), a[1] as i64, a[2] as u32),
        16 => sys_ioctl(fd(0), a[1] as u32, a[2]),
        17 => sys_pread64(fd(0), a[1], a[2], a[3] as i64),
        18 => sys_pwrite64(fd(0), a[1], a[2], a[3] as i64),
        19 => sys_readv(fd(0), a[1], a[2]),
        20 => sys_writev(fd(0), a[1], a[2]),
        21 => sys_access(a[0], a[1] as u32),
        22 => sys_pipe(a[0]),
        23 => sys_select(fd(0), a[1], a[2], a[3], a[4]),
        32 => sys_dup(fd(0)),
        33 => sys_dup2(fd(0), fd(1)),
        72 => sys_fcntl(fd(0), a[1] as u32, a[2]),
        74 | 75 => sys_fsync(fd(0)),
        76 => sys_truncate(a[0], a[1] as i64),
        77 => sys_ftruncate(fd(0), a[1] as i64),
        79 => sys_getcwd(a[0], a[1]),
        80 => sys_chdir(a[0]),
        81 => sys_fchdir(fd(0)),
        82 => sys_rename(a[0], a[1]),
        83 => sys_mkdir(a[0], a[1] as u32),
        84 => sys_rmdir(a[0]),
        85 => sys_creat(a[0], a[1] as u32),
        86 => sys_link(a[0], a[1]),
        87 => sys_unlink(a[0]),
        88 => sys_symlink(a[0], a[1]),
        89 => sys_readlink(a[0], a[1], a[2] as i64),
        90 => sys_chmod(a[0], a[1] as u32),
        91 => sys_fchmod(fd(0), a[1] as u32),
        95 => sys_umask(a[0] as u32),
        133 => sys_mknod(a[0], a[1] as u32, a[2]),
        217 => sys_getdents64(fd(0), a[1], a[2]),
        257 => sys_openat(fd(0), a[1], a[2] as u32, a[3] as u32),
        258 => sys_mkdirat(fd(0), a[1], a[2] as u32),
        259 => sys_mknodat(fd(0), a[1], a[2] as u32, a[3]),
        262 => sys_newfstatat(fd(0), a[1], a[2], a[3] as u32),
        263 => sys_unlinkat(fd(0), a[1], a[2] as u32),
        264 => sys_renameat2(fd(0), a[1], fd(2), a[3], 0),
        265 => sys_linkat(fd(0), a[1], fd(2), a[3], a[4] as u32),
        266 => sys_symlinkat(a[0], fd(1), a[2]),
        267 => sys_readlinkat(fd(0), a[1], a[2], a[3] as i64),
        268 => sys_fchmodat(fd(0), a[1], a[2] as u32),
        269 => sys_faccessat2(fd(0), a[1], a[2] as u32, 0),
        270 => sys_pselect6(fd(0), a[1], a[2], a[3], a[4], a[5]),
        271 => sys_ppoll(a[0], a[1], a[2], a[3], a[4]),
        280 => sys_utimensat(fd(0), a[1], a[2], a[3] as u32),
        292 => sys_dup3(fd(0), fd(1), a[2] as u32),
        293 => sys_pipe2(a[0], a[1] as u32),
        316 => sys_renameat2(fd(0), a[1], fd(2), a[3], a[4] as u32),
        332 => sys_statx(fd(0), a[1], a[2] as u32, a[3] as u32, a[4]),
        439 => sys_faccessat2(fd(0), a[1], a[2] as u32, a[3] as u32),
        40 => sys_sendfile(fd(0), fd(1), a[2], a[3]),
        92 => sys_chown(a[0], a[1] as u32, a[2] as u32),
        93 => sys_fchown(fd(0), a[1] as u32, a[2] as u32),
        94 => sys_lchown(a[0], a[1] as u32, a[2] as u32),
        260 => sys_fchownat(fd(0), a[1], a[2] as u32, a[3] as u32, a[4] as u32),
        137 => sys_statfs(a[0], a[1]),
        138 => sys_fstatfs(fd(0), a[1]),
        _ => return None,
    }))
}

/// (number, name) of every call `dispatch` serves.
#[allow(dead_code)] // for the dispatch table's owner and tests
pub const CALLS: &[(u64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (2, "open"),
    (3, "close"),
    (4, "stat"),
    (5, "fstat"),
    (6, "lstat"),
    (7, "poll"),
    (8, "lseek"),
    (16, "ioctl"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (21, "access"),
    (22, "pipe"),
    (23, "select"),
    (32, "dup"),
    (33, "dup2"),
    (72, "fcntl"),
    (74, "fsync"),
    (75, "fdatasync"),
    (76, "truncate"),
    (77, "ftruncate"),
    (79, "getcwd"),
    (80, "chdir"),
    (81, "fchdir"),
    (82, "rename"),
    (83, "mkdir"),
    (84, "rmdir"),
    (85, "creat"),
    (86, "link"),
    (87, "unlink"),
    (88, "symlink"),
    (89, "readlink"),
    (90, "chmod"),
    (91, "fchmod"),
    (95, "umask"),
    (133, "mknod"),
    (217, "getdents64"),
    (257, "openat"),
    (258, "mkdirat"),
    (259, "mknodat"),
    (262, "newfstatat"),
    (263, "unlinkat"),
    (264, "renameat"),
    (265, "linkat"),
    (266, "symlinkat"),
    (267, "readlinkat"),
    (268, "fchmodat"),
    (269, "faccessat"),
    (270, "pselect6"),
    (271, "ppoll"),
    (280, "utimensat"),
    (292, "dup3"),
    (293, "pipe2"),
    (316, "renameat2"),
    (332, "statx"),
    (439, "faccessat2"),
    (40, "sendfile"),
    (92, "chown"),
    (93, "fchown"),
    (94, "lchown"),
    (260, "fchownat"),
    (137, "statfs"),
    (138, "fstatfs"),
];

// ---- owners and sendfile ---------------------------------------------------

/// Changes the owner of `inode` for the calling process: root may set any
/// ids; others only the group of a file they own, to their own group
/// (`EPERM` otherwise).  `u32::MAX` (-1) leaves an id unchanged.
fn chown_inode(inode: &Inode, uid: u32, gid: u32) -> SysResult {
    let p = proc()?;
    let euid = p.creds.euid.load(core::sync::atomic::Ordering::Relaxed);
    let egid = p.creds.egid.load(core::sync::atomic::Ordering::Relaxed);
    let uid = (uid != u32::MAX).then_some(uid);
    let gid = (gid != u32::MAX).then_some(gid);
    if euid != 0 {
        let (owner, _) = inode.owner();
        let uid_ok = uid.is_none_or(|u| u == owner);
        let gid_ok = gid.is_none_or(|g| g == egid);
        if owner != euid || !uid_ok || !gid_ok {
            return Err(Errno::EPERM);
        }
    }
    inode.set_owner(uid, gid);
    Ok(0)
}

pub fn sys_fchownat(dirfd: i32, path: u64, uid: u32, gid: u32, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let inode = resolve(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    chown_inode(&inode, uid, gid)
}

pub fn sys_chown(path: u64, uid: u32, gid: u32) -> SysResult {
    sys_fchownat(AT_FDCWD, path, uid, gid, 0)
}

pub fn sys_lchown(path: u64, uid: u32, gid: u32) -> SysResult {
    sys_fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW)
}

pub fn sys_fchown(fd: i32, uid: u32, gid: u32) -> SysResult {
    let f = file(fd)?;
    if f.flags() & O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    match &f.inode {
        Some(inode) => chown_inode(inode, uid, gid),
        // Pipes, sockets and epoll files keep no owner here.
        None => Ok(0),
    }
}

/// `sendfile(out_fd, in_fd, offset, count)`: copies from a regular file
/// (at `*offset`, updated, or at its file position, advanced) to any
/// writable file or socket; stops at the first short write.  Errors in
/// Linux's order: `EFAULT` for `offset`, `EBADF` for a descriptor not
/// open for reading / writing, `ESPIPE`/`EINVAL` for an input that is
/// not a seekable file, `EINVAL` for an `O_APPEND` output.
pub fn sys_sendfile(out_fd: i32, in_fd: i32, offset: u64, count: u64) -> SysResult {
    const SEEK_CUR: u32 = 1;
    const MAX_RW_COUNT: u64 = 0x7fff_f000;
    let start: Option<i64> = if offset != 0 {
        Some(read_user(offset)?)
    } else {
        None
    };
    let input = file(in_fd)?;
    if !input.readable() {
        return Err(Errno::EBADF);
    }
    if start.is_some() && input.check_positional().is_err() {
        return Err(Errno::ESPIPE);
    }
    let output = file(out_fd)?;
    if !output.writable() {
        return Err(Errno::EBADF);
    }
    if output.flags() & O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let regular = input
        .inode
        .as_ref()
        .is_some_and(|i| i.kind() == FileType::Regular);
    if !regular {
        return Err(Errno::EINVAL);
    }
    let mut pos = match start {
        Some(p) if p < 0 => return Err(Errno::EINVAL),
        Some(p) => p as u64,
        None => input.seek(0, SEEK_CUR)?,
    };
    let count = count.min(MAX_RW_COUNT) as usize;
    let mut kbuf = vec![0u8; count.clamp(1, CHUNK)];
    let mut done = 0usize;
    let mut failure = None;
    while done < count {
        let want = (count - done).min(kbuf.len());
        let n = match input.read_at(&mut kbuf[..want], pos) {
            Ok(n) => n,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if n == 0 {
            break;
        }
        let w = match output.write(&kbuf[..n]) {
            Ok(w) => w,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        done += w;
        pos += w as u64;
        if w < n {
            break;
        }
    }
    if done == 0 {
        if let Some(e) = failure {
            return Err(e);
        }
    }
    match start {
        Some(_) => write_user(offset, &(pos as i64))?,
        None => {
            input.seek(pos as i64, 0)?;
        }
    }
    Ok(done)
}

// ---- statfs ------------------------------------------------------------------

/// Linux x86_64 `struct statfs` (120 bytes) of the superblock `inode` is
/// in: tmpfs (size bound, pages and inodes used), `/proc` (empty), or the
/// pseudo file systems of pipes and sockets (`inode` `None`, `magic`).
fn statfs_bytes(inode: Option<&Inode>, magic: i64) -> [u8; 120] {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const ST_VALID: i64 = 0x20;
    let mut v = [0i64; 15];
    v[1] = 4096; // f_bsize
    v[9] = 4096; // f_frsize
    v[8] = 255; // f_namelen
    v[10] = ST_VALID;
    v[0] = magic;
    if let Some(inode) = inode {
        v[7] = (inode.dev() & 0xffff_ffff) as i64; // f_fsid[0]
        if inode.dev() == crate::fs::proc_dev() {
            v[0] = PROC_SUPER_MAGIC;
        } else {
            let (used, max, inodes) = inode.superblock_usage();
            v[0] = TMPFS_MAGIC;
            v[2] = max as i64; // f_blocks
            v[3] = max.saturating_sub(used) as i64; // f_bfree
            v[4] = v[3]; // f_bavail
            v[5] = max as i64; // f_files
            v[6] = (max as i64 - inodes.max(0)).max(0); // f_ffree
        }
    }
    let mut b = [0u8; 120];
    for (i, x) in v.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&x.to_ne_bytes());
    }
    b
}

pub fn sys_statfs(path: u64, buf: u64) -> SysResult {
    let inode = resolve(AT_FDCWD, path, 0, true)?;
    copy_to_user(buf, &statfs_bytes(Some(&inode), 0)).map(|_| 0)
}

pub fn sys_fstatfs(fd: i32, buf: u64) -> SysResult {
    const PIPEFS_MAGIC: i64 = 0x5049_5045;
    const SOCKFS_MAGIC: i64 = 0x534f_434b;
    const ANON_INODE_FS_MAGIC: i64 = 0x0904_1934;
    let f = file(fd)?;
    let magic = match f.stat().mode & 0o170000 {
        0o010000 => PIPEFS_MAGIC,
        0o140000 => SOCKFS_MAGIC,
        _ => ANON_INODE_FS_MAGIC,
    };
    copy_to_user(buf, &statfs_bytes(f.inode.as_deref(), magic)).map(|_| 0)
}
