//! getdents64, getcwd, chdir, mkdir, mknod, unlink, rmdir, rename, link,
//! symlink, readlink, truncate, fsync, umask: names and directories.
//!
//! Must not: hold an fs lock while copying to or from user memory.

#[allow(unused_imports)]
use super::*;

pub fn sys_getdents64(fd: i32, dirp: UserAddr, count: u64) -> SysResult {
    let f = borrowed(fd)?;
    delegated!(delegate::getdents64(&f, dirp, count));
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
    dirp.write_bytes(&out)?;
    Ok(out.len())
}

pub fn sys_getcwd(buf: UserAddr, size: u64) -> SysResult {
    delegated!(delegate::getcwd(buf, size));
    let p = proc()?;
    let path = root_fs().path_of(&p.files.ctx.cwd()).map_err(fs_err)?;
    let len = path.len() + 1;
    if (size as usize) < len {
        return Err(Errno::ERANGE);
    }
    let mut bytes = path.into_bytes();
    bytes.push(0);
    buf.write_bytes(&bytes)?;
    Ok(len)
}

pub fn sys_chdir(path: UserAddr) -> SysResult {
    delegated!(delegate::chdir(path));
    let dir = resolve(AT_FDCWD, path, 0, true)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    proc()?.files.ctx.set_cwd(dir);
    Ok(0)
}

pub fn sys_fchdir(fd: i32) -> SysResult {
    delegated!(delegate::fchdir(fd));
    let dir = borrowed(fd)?.inode.clone().ok_or(Errno::ENOTDIR)?;
    if !dir.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    proc()?.files.ctx.set_cwd(dir);
    Ok(0)
}

/// The start directory and path of a `*at` call.
fn at(dirfd: i32, path: UserAddr) -> Result<(StartDir, String), Errno> {
    let p = proc()?;
    let path = user_path(path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok((start_dir(p, dirfd, &path)?, path))
}

pub fn sys_mkdirat(dirfd: i32, path: UserAddr, mode: u32) -> SysResult {
    delegated!(delegate::mkdirat(dirfd, path, mode));
    let umask = proc()?.files.ctx.umask();
    let (start, path) = at(dirfd, path)?;
    root_fs()
        .mkdir(&start, &path, mode & 0o1777 & !umask)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_mkdir(path: UserAddr, mode: u32) -> SysResult {
    sys_mkdirat(AT_FDCWD, path, mode)
}

pub fn sys_mknodat(dirfd: i32, path: UserAddr, mode: u32, dev: u64) -> SysResult {
    let kind = match mode & S_IFMT {
        0 | 0o100000 => FileType::Regular,
        0o010000 => FileType::Fifo,
        0o020000 => FileType::CharDevice,
        0o140000 => FileType::Socket,
        0o040000 => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    delegated!(delegate::mknodat(dirfd, path, mode, dev));
    let umask = proc()?.files.ctx.umask();
    let (start, path) = at(dirfd, path)?;
    root_fs()
        .mknod(&start, &path, kind, mode & 0o7777 & !umask, dev)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_mknod(path: UserAddr, mode: u32, dev: u64) -> SysResult {
    sys_mknodat(AT_FDCWD, path, mode, dev)
}

pub fn sys_unlinkat(dirfd: i32, path: UserAddr, flags: u32) -> SysResult {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::unlinkat(dirfd, path, flags));
    let (start, path) = at(dirfd, path)?;
    let r = if flags & AT_REMOVEDIR != 0 {
        root_fs().rmdir(&start, &path)
    } else {
        root_fs().unlink(&start, &path)
    };
    r.map_err(fs_err).map(|_| 0)
}

pub fn sys_unlink(path: UserAddr) -> SysResult {
    sys_unlinkat(AT_FDCWD, path, 0)
}

pub fn sys_rmdir(path: UserAddr) -> SysResult {
    sys_unlinkat(AT_FDCWD, path, AT_REMOVEDIR)
}

pub fn sys_renameat2(
    olddir: i32,
    old: UserAddr,
    newdir: i32,
    new: UserAddr,
    flags: u32,
) -> SysResult {
    let mode = match flags {
        0 => ::fs::vfs::RenameMode::Replace,
        RENAME_NOREPLACE => ::fs::vfs::RenameMode::NoReplace,
        RENAME_EXCHANGE => ::fs::vfs::RenameMode::Exchange,
        // RENAME_WHITEOUT (overlay file systems) and combinations.
        _ => return Err(Errno::EINVAL),
    };
    delegated!(delegate::renameat2(olddir, old, newdir, new, flags));
    let (os, op) = at(olddir, old)?;
    let (ns, np) = at(newdir, new)?;
    root_fs()
        .rename_with(&os, &op, &ns, &np, mode)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_rename(old: UserAddr, new: UserAddr) -> SysResult {
    sys_renameat2(AT_FDCWD, old, AT_FDCWD, new, 0)
}

pub fn sys_linkat(olddir: i32, old: UserAddr, newdir: i32, new: UserAddr, flags: u32) -> SysResult {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::linkat(olddir, old, newdir, new, flags));
    let (os, op) = at(olddir, old)?;
    let (ns, np) = at(newdir, new)?;
    root_fs()
        .link(&os, &op, &ns, &np, flags & AT_SYMLINK_FOLLOW != 0)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_link(old: UserAddr, new: UserAddr) -> SysResult {
    sys_linkat(AT_FDCWD, old, AT_FDCWD, new, 0)
}

pub fn sys_symlinkat(target: UserAddr, newdir: i32, path: UserAddr) -> SysResult {
    delegated!(delegate::symlinkat(target, newdir, path));
    let target = user_path(target)?;
    let (start, path) = at(newdir, path)?;
    root_fs()
        .symlink(&target, &start, &path)
        .map_err(fs_err)
        .map(|_| 0)
}

pub fn sys_symlink(target: UserAddr, path: UserAddr) -> SysResult {
    sys_symlinkat(target, AT_FDCWD, path)
}

pub fn sys_readlinkat(dirfd: i32, path: UserAddr, buf: UserAddr, size: i64) -> SysResult {
    if size <= 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::readlinkat(dirfd, path, buf, size));
    let inode = resolve(dirfd, path, 0, false)?;
    let target = inode.symlink_target().ok_or(Errno::EINVAL)?;
    let n = target.len().min(size as usize);
    buf.write_bytes(&target.as_bytes()[..n])?;
    Ok(n)
}

pub fn sys_readlink(path: UserAddr, buf: UserAddr, size: i64) -> SysResult {
    sys_readlinkat(AT_FDCWD, path, buf, size)
}

pub fn sys_ftruncate(fd: i32, len: i64) -> SysResult {
    delegated!(delegate::ftruncate(fd, len));
    let f = borrowed(fd)?;
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

pub fn sys_truncate(path: UserAddr, len: i64) -> SysResult {
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    delegated!(delegate::truncate(path, len));
    let inode = resolve(AT_FDCWD, path, 0, true)?;
    match inode.kind() {
        FileType::Regular => inode.truncate(len as u64).map_err(fs_err).map(|_| 0),
        FileType::Directory => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sys_umask(mask: u32) -> SysResult {
    Ok(proc()?.files.ctx.swap_umask(mask) as usize)
}
