//! open/openat/creat, close, dup/dup2/dup3, pipe/pipe2, fcntl, ioctl:
//! the descriptor table and the flags of open files.
//!
//! Must not: keep a descriptor table lock across a user copy.

#[allow(unused_imports)]
use super::*;

pub fn sys_openat(dirfd: i32, path: UserAddr, flags: u32, mode: u32) -> SysResult {
    delegated!(delegate::openat(dirfd, path, flags, mode));
    let p = proc()?;
    let path = user_path(path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let start = start_dir(p, dirfd, &path)?;
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

pub fn sys_open(path: UserAddr, flags: u32, mode: u32) -> SysResult {
    sys_openat(AT_FDCWD, path, flags, mode)
}

pub fn sys_creat(path: UserAddr, mode: u32) -> SysResult {
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

pub fn sys_pipe2(fds: UserAddr, flags: u32) -> SysResult {
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
    if let Err(e) = fds.write(&[rfd, wfd]) {
        let _ = p.files.fds.close(rfd);
        let _ = p.files.fds.close(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn sys_pipe(fds: UserAddr) -> SysResult {
    sys_pipe2(fds, 0)
}

pub fn sys_fcntl(fd: i32, cmd: u32, arg: u64) -> SysResult {
    let p = proc()?;
    // The descriptor flags live in the table: F_GETFD/F_SETFD (which musl's
    // `open` with O_CLOEXEC makes after every open) do not borrow the file,
    // so the fd stays out of the thread's `FdCache` and its close visits no
    // other thread's cache (`FdTable::close`).
    match cmd {
        F_GETFD => {
            return Ok(if p.files.fds.cloexec(fd)? {
                FD_CLOEXEC as usize
            } else {
                0
            })
        }
        F_SETFD => {
            return p
                .files
                .fds
                .set_cloexec(fd, arg & FD_CLOEXEC != 0)
                .map(|_| 0)
        }
        _ => {}
    }
    let f = borrowed(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg).map_err(|_| Errno::EINVAL)?;
            p.files
                .fds
                .insert_from(min, f.to_arc(), cmd == F_DUPFD_CLOEXEC)
                .map(|fd| fd as usize)
        }
        F_GETFL => Ok(f.flags() as usize),
        F_SETFL => {
            f.set_status_flags(arg as u32);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn sys_ioctl(fd: i32, cmd: u32, arg: UserAddr) -> SysResult {
    let p = proc()?;
    let f = borrowed(fd)?;
    match cmd {
        FIONBIO => {
            let on: i32 = arg.read()?;
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
            return arg.write(&(n.min(i32::MAX as usize) as i32)).map(|_| 0);
        }
        FIOCLEX => return p.files.fds.set_cloexec(fd, true).map(|_| 0),
        FIONCLEX => return p.files.fds.set_cloexec(fd, false).map(|_| 0),
        _ => {}
    }
    if f.as_socket().is_some() {
        if let Some(r) = crate::sockets::ifconf::ioctl(cmd, arg) {
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
            arg.write_bytes(&t).map(|_| 0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let mut t = [0u8; 36];
            arg.read_bytes(&mut t).map(|_| 0)
        }
        TIOCGWINSZ => arg.write(&[0u16; 4]).map(|_| 0),
        TIOCSWINSZ => {
            let _: [u16; 4] = arg.read()?;
            Ok(0)
        }
        TIOCGPGRP => arg.write(&p.pid).map(|_| 0),
        TIOCSPGRP => {
            let _: i32 = arg.read()?;
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}
