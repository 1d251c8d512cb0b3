//! stat family, statx, access, chmod, chown, utimensat, statfs: file
//! metadata in Linux's structures.
//!
//! Must not: report fields Linux would not (unknown statx bits stay 0).

#[allow(unused_imports)]
use super::*;

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

fn put_stat(buf: UserAddr, st: &Stat) -> SysResult {
    buf.write_bytes(&stat_bytes(st)).map(|_| 0)
}

/// Copies a `struct stat` the file server sent out as it is.
fn put_abi_stat(buf: UserAddr, st: &abi::structs::Stat) -> SysResult {
    buf.write(st).map(|_| 0)
}

pub fn sys_stat(path: UserAddr, buf: UserAddr) -> SysResult {
    delegated!(delegate::stat_at_abi(AT_FDCWD, path, 0).map(|r| put_abi_stat(buf, &r?)));
    put_stat(buf, &resolve(AT_FDCWD, path, 0, true)?.stat())
}

pub fn sys_lstat(path: UserAddr, buf: UserAddr) -> SysResult {
    delegated!(
        delegate::stat_at_abi(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW).map(|r| put_abi_stat(buf, &r?))
    );
    put_stat(buf, &resolve(AT_FDCWD, path, 0, false)?.stat())
}

pub fn sys_fstat(fd: i32, buf: UserAddr) -> SysResult {
    put_stat(buf, &borrowed(fd)?.try_stat()?)
}

pub fn sys_newfstatat(dirfd: i32, path: UserAddr, buf: UserAddr, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT) != 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::stat_at_abi(dirfd, path, flags).map(|r| put_abi_stat(buf, &r?)));
    let st = stat_at(dirfd, path, flags)?;
    put_stat(buf, &st)
}

fn stat_at(dirfd: i32, path: UserAddr, flags: u32) -> Result<Stat, Errno> {
    delegated!(delegate::stat_at(dirfd, path, flags));
    let p = proc()?;
    let s = user_path(path)?;
    if s.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd != AT_FDCWD {
        // A pipe or device opened without an inode still has a stat.
        return Ok(p.files.fds.get(dirfd)?.stat());
    }
    if s.is_empty() {
        return Ok(resolve(dirfd, path, flags, false)?.stat());
    }
    let start = start_dir(p, dirfd, &s)?;
    root_fs()
        .stat_path(&start, &s, flags & AT_SYMLINK_NOFOLLOW == 0)
        .map_err(fs_err)
}

pub fn sys_statx(dirfd: i32, path: UserAddr, flags: u32, mask: u32, buf: UserAddr) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE) != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & STATX_RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let st = stat_at(dirfd, path, flags)?;
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
    buf.write_bytes(&b).map(|_| 0)
}

pub fn sys_faccessat2(dirfd: i32, path: UserAddr, mode: u32, flags: u32) -> SysResult {
    if mode & !7 != 0 || flags & !(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::faccessat(dirfd, path, mode, flags));
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

pub fn sys_access(path: UserAddr, mode: u32) -> SysResult {
    sys_faccessat2(AT_FDCWD, path, mode, 0)
}

pub fn sys_fchmodat(dirfd: i32, path: UserAddr, mode: u32) -> SysResult {
    delegated!(delegate::fchmodat(dirfd, path, mode));
    resolve(dirfd, path, 0, true)?.set_perm(mode);
    Ok(0)
}

pub fn sys_chmod(path: UserAddr, mode: u32) -> SysResult {
    sys_fchmodat(AT_FDCWD, path, mode)
}

pub fn sys_fchmod(fd: i32, mode: u32) -> SysResult {
    delegated!(delegate::fchmod(fd, mode));
    borrowed(fd)?
        .inode
        .clone()
        .ok_or(Errno::EBADF)?
        .set_perm(mode);
    Ok(0)
}

pub fn sys_utimensat(dirfd: i32, path: UserAddr, times: UserAddr, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let inode = if path.is_null() {
        delegated!(delegate::utimensat(dirfd, path, times, flags));
        borrowed(dirfd)?.inode.clone().ok_or(Errno::EBADF)?
    } else {
        resolve(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?
    };
    let now = root_fs().now();
    let (a, m) = if times.is_null() {
        (Some(now), Some(now))
    } else {
        let ts: [i64; 4] = times.read()?;
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

pub fn sys_fchownat(dirfd: i32, path: UserAddr, uid: u32, gid: u32, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::fchownat(dirfd, path, uid, gid, flags));
    let inode = resolve(dirfd, path, flags, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    chown_inode(&inode, uid, gid)
}

pub fn sys_chown(path: UserAddr, uid: u32, gid: u32) -> SysResult {
    sys_fchownat(AT_FDCWD, path, uid, gid, 0)
}

pub fn sys_lchown(path: UserAddr, uid: u32, gid: u32) -> SysResult {
    sys_fchownat(AT_FDCWD, path, uid, gid, AT_SYMLINK_NOFOLLOW)
}

pub fn sys_fchown(fd: i32, uid: u32, gid: u32) -> SysResult {
    delegated!(delegate::fchown(fd, uid, gid));
    let f = borrowed(fd)?;
    if f.flags() & O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    match &f.inode {
        Some(inode) => chown_inode(inode, uid, gid),
        // Pipes, sockets and epoll files keep no owner here.
        None => Ok(0),
    }
}

/// Linux x86_64 `struct statfs` (120 bytes) of the superblock `inode` is
/// in: tmpfs (size bound, pages and inodes used), `/proc` (empty), or the
/// pseudo file systems of pipes and sockets (`inode` `None`, `magic`).
fn statfs_bytes(inode: Option<&Inode>, magic: i64) -> [u8; 120] {
    let mut v = [0i64; 15];
    v[1] = 4096; // f_bsize
    v[9] = 4096; // f_frsize
    v[8] = 255; // f_namelen
    v[10] = ST_VALID;
    v[0] = magic;
    if let Some(inode) = inode {
        v[7] = (inode.dev() & 0xffff_ffff) as i64; // f_fsid[0]
        if inode.dev() == crate::files::proc_dev() {
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

pub fn sys_statfs(path: UserAddr, buf: UserAddr) -> SysResult {
    delegated!(delegate::statfs(path, buf));
    let inode = resolve(AT_FDCWD, path, 0, true)?;
    buf.write_bytes(&statfs_bytes(Some(&inode), 0)).map(|_| 0)
}

pub fn sys_fstatfs(fd: i32, buf: UserAddr) -> SysResult {
    delegated!(delegate::fstatfs(fd, buf));
    let f = borrowed(fd)?;
    let magic = match f.stat().mode & 0o170000 {
        0o010000 => PIPEFS_MAGIC,
        0o140000 => SOCKFS_MAGIC,
        _ => ANON_INODE_FS_MAGIC,
    };
    buf.write_bytes(&statfs_bytes(f.inode.as_deref(), magic))
        .map(|_| 0)
}
