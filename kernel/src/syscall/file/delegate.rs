//! System-call delegation (`structure=servers`, docs/SERVERS.md "Kernel
//! side / boot"): the file-system calls whose path or descriptor belongs
//! to the user-mode file server, turned into `fsproto` requests
//! (`crate::files::remote`).
//!
//! Owns the routing: an absolute path under a prefix of the kernel's mount
//! table (`/dev`, `/proc`: `remote::KERNEL_PREFIXES`) and a relative path
//! from a kernel directory stay in the kernel; everything else starts at a
//! server handle (the root, the working directory's handle, or the `*at`
//! descriptor's).  Each function returns `None` when the call is the
//! kernel's (the caller then runs its own code), else the call's result.
//!
//! Invariants: every handle a request names is kept alive for the call
//! (the descriptor's file or the working directory's reference is held);
//! the kernel still owns descriptors, offsets, status flags, the umask
//! and credentials, and sends the server only what it decides.
//!
//! Must not: use `unsafe`, hold a lock across a call, or be reached in
//! the monolithic structure (callers test `remote::active()` first).

use super::*;
use crate::files::remote::{self, RemoteHandle};
use crate::files::remote_map;
use abi::structs::Stat as AbiStat;
use fsproto::{At, Cred, Handle, Time};

/// What keeps a handle alive during a call.
#[allow(dead_code)] // held, never read
enum Hold {
    Root,
    File(FileRef),
    Dir(Arc<RemoteHandle>),
}

/// Where a `*at` path goes.
enum Route {
    Kernel,
    Server(Handle, Hold),
}

/// The route of `dirfd` + `path` (non-empty).
fn route(p: &Process, dirfd: i32, path: &str) -> Result<Route, Errno> {
    if path.starts_with('/') {
        return Ok(if remote::kernel_path(path) {
            Route::Kernel
        } else {
            Route::Server(remote::root(), Hold::Root)
        });
    }
    if dirfd == AT_FDCWD {
        return Ok(match p.files.ctx.remote_cwd() {
            Some(cwd) => Route::Server(cwd.handle, Hold::Dir(cwd)),
            None => Route::Kernel,
        });
    }
    let f = p.files.fds.get(dirfd)?;
    let Some(r) = f.as_remote() else {
        return Ok(Route::Kernel);
    };
    if !r.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let h = r.handle;
    Ok(Route::Server(h, Hold::File(f)))
}

/// The route of an `AT_EMPTY_PATH` call on `dirfd` itself.
fn route_self(p: &Process, dirfd: i32) -> Result<Route, Errno> {
    if dirfd == AT_FDCWD {
        return Ok(match p.files.ctx.remote_cwd() {
            Some(cwd) => Route::Server(cwd.handle, Hold::Dir(cwd)),
            None => Route::Kernel,
        });
    }
    let f = p.files.fds.get(dirfd)?;
    match f.as_remote() {
        Some(r) => {
            let h = r.handle;
            Ok(Route::Server(h, Hold::File(f)))
        }
        None => Ok(Route::Kernel),
    }
}

/// Runs a delegated call: `Ok(None)` from `f` means "the kernel's".
fn run<T>(f: impl FnOnce() -> Result<Option<T>, Errno>) -> Option<Result<T, Errno>> {
    f().transpose()
}

/// The route of a path argument: the path and where it goes.  An empty
/// path is left to the kernel's code (it reports `ENOENT`).
fn path_route(dirfd: i32, path: UserAddr) -> Result<Option<(String, Handle, Hold)>, Errno> {
    let p = proc()?;
    let s = user_path(path)?;
    if s.is_empty() {
        return Ok(None);
    }
    Ok(match route(p, dirfd, &s)? {
        Route::Kernel => None,
        Route::Server(h, hold) => Some((s, h, hold)),
    })
}

/// The credentials the server checks with: the effective ids, or the
/// real ones (`access` without `AT_EACCESS`).
fn cred(real: bool) -> Result<Cred, Errno> {
    let c = &proc()?.creds;
    let relaxed = core::sync::atomic::Ordering::Relaxed;
    Ok(if real {
        Cred {
            uid: c.uid.load(relaxed),
            gid: c.gid.load(relaxed),
        }
    } else {
        Cred {
            uid: c.euid.load(relaxed),
            gid: c.egid.load(relaxed),
        }
    })
}

pub fn openat(dirfd: i32, path: UserAddr, flags: u32, mode: u32) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        let p = proc()?;
        let perm = mode & 0o7777 & !p.files.ctx.umask();
        let h = remote::open(dir, s, flags, perm)?;
        if flags & O_TRUNC != 0 && h.is_regular() {
            // Emptied: mappings of it lose their pages (SIGBUS).
            remote_map::truncated(h.dev, h.ino, 0);
        }
        // A socket's name cannot be opened (Linux: ENXIO), except O_PATH.
        if h.mode & S_IFMT == 0o140000 && flags & O_PATH == 0 {
            return Err(Errno::ENXIO);
        }
        let f = File::open_remote(h, flags | O_LARGEFILE);
        p.files
            .fds
            .insert(f, flags & O_CLOEXEC != 0)
            .map(|fd| Some(fd as usize))
    })
}

/// `stat` of `dirfd` + `path` with `flags` (`AT_EMPTY_PATH`,
/// `AT_SYMLINK_NOFOLLOW`).
pub fn stat_at(dirfd: i32, path: UserAddr, flags: u32) -> Option<Result<Stat, Errno>> {
    stat_at_abi(dirfd, path, flags).map(|r| r.map(|s| remote::fs_stat(&s)))
}

/// `stat_at` as Linux's `struct stat`, the server's reply as it came:
/// what `stat`, `lstat` and `newfstatat` copy out, with no conversion.
pub fn stat_at_abi(dirfd: i32, path: UserAddr, flags: u32) -> Option<Result<AbiStat, Errno>> {
    run(|| {
        let p = proc()?;
        let s = user_path(path)?;
        if s.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Ok(None);
            }
            return match route_self(p, dirfd)? {
                Route::Kernel => Ok(None),
                Route::Server(h, _hold) => remote::stat_abi(At::handle(h)).map(Some),
            };
        }
        match route(p, dirfd, &s)? {
            Route::Kernel => Ok(None),
            // The path's buffer becomes the request's payload.
            Route::Server(dir, _hold) => {
                remote::stat_path(dir, s, flags & AT_SYMLINK_NOFOLLOW).map(Some)
            }
        }
    })
}

pub fn faccessat(dirfd: i32, path: UserAddr, mode: u32, flags: u32) -> Option<SysResult> {
    run(|| {
        let p = proc()?;
        let s = user_path(path)?;
        let at_flags = flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH);
        let (h, _hold) = if s.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Ok(None);
            }
            match route_self(p, dirfd)? {
                Route::Kernel => return Ok(None),
                Route::Server(h, hold) => (h, hold),
            }
        } else {
            match route(p, dirfd, &s)? {
                Route::Kernel => return Ok(None),
                Route::Server(h, hold) => (h, hold),
            }
        };
        let at = At {
            dir: h,
            path: &s,
            flags: at_flags,
        };
        remote::access(at, mode, cred(flags & AT_EACCESS == 0)?)?;
        Ok(Some(0))
    })
}

pub fn fchmodat(dirfd: i32, path: UserAddr, mode: u32) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        remote::chmod(At::path(dir, &s), mode & 0o7777)?;
        Ok(Some(0))
    })
}

/// `fchmod`, `fchown`, `futimens`, `ftruncate`, `fstatfs`, `fsync`: the
/// file's handle when it is a server file.
fn remote_fd(fd: i32) -> Result<Option<(Handle, FileRef)>, Errno> {
    let f = file(fd)?;
    Ok(f.as_remote().map(|r| r.handle).map(|h| (h, f)))
}

pub fn fchmod(fd: i32, mode: u32) -> Option<SysResult> {
    run(|| {
        let Some((h, _f)) = remote_fd(fd)? else {
            return Ok(None);
        };
        remote::chmod(At::handle(h), mode & 0o7777)?;
        Ok(Some(0))
    })
}

pub fn fchownat(dirfd: i32, path: UserAddr, uid: u32, gid: u32, flags: u32) -> Option<SysResult> {
    run(|| {
        let p = proc()?;
        let s = user_path(path)?;
        let (h, _hold) = match if s.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Ok(None);
            }
            route_self(p, dirfd)?
        } else {
            route(p, dirfd, &s)?
        } {
            Route::Kernel => return Ok(None),
            Route::Server(h, hold) => (h, hold),
        };
        let at = At {
            dir: h,
            path: &s,
            flags: flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH),
        };
        let id = |v: u32| (v != u32::MAX).then_some(v);
        remote::chown(at, id(uid), id(gid), cred(false)?)?;
        Ok(Some(0))
    })
}

pub fn fchown(fd: i32, uid: u32, gid: u32) -> Option<SysResult> {
    run(|| {
        let Some((h, f)) = remote_fd(fd)? else {
            return Ok(None);
        };
        if f.flags() & O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        let id = |v: u32| (v != u32::MAX).then_some(v);
        remote::chown(At::handle(h), id(uid), id(gid), cred(false)?)?;
        Ok(Some(0))
    })
}

/// One `utimensat` time: `UTIME_NOW`, `UTIME_OMIT` or a valid time.
fn time_of(sec: i64, nsec: i64) -> Result<Time, Errno> {
    match nsec {
        UTIME_NOW => Ok(Time::Now),
        UTIME_OMIT => Ok(Time::Omit),
        0..=999_999_999 => Ok(Time::At {
            sec,
            nsec: nsec as u32,
        }),
        _ => Err(Errno::EINVAL),
    }
}

pub fn utimensat(dirfd: i32, path: UserAddr, times: UserAddr, flags: u32) -> Option<SysResult> {
    run(|| {
        let p = proc()?;
        let (h, s, _hold) = if path.is_null() {
            let Some((h, f)) = remote_fd(dirfd)? else {
                return Ok(None);
            };
            (h, String::new(), Hold::File(f))
        } else {
            let s = user_path(path)?;
            if s.is_empty() {
                if flags & AT_EMPTY_PATH == 0 {
                    return Ok(None);
                }
                match route_self(p, dirfd)? {
                    Route::Kernel => return Ok(None),
                    Route::Server(h, hold) => (h, s, hold),
                }
            } else {
                match route(p, dirfd, &s)? {
                    Route::Kernel => return Ok(None),
                    Route::Server(h, hold) => (h, s, hold),
                }
            }
        };
        let (atime, mtime) = if times.is_null() {
            (Time::Now, Time::Now)
        } else {
            let ts: [i64; 4] = times.read()?;
            (time_of(ts[0], ts[1])?, time_of(ts[2], ts[3])?)
        };
        let at = At {
            dir: h,
            path: &s,
            flags: if s.is_empty() {
                AT_EMPTY_PATH
            } else {
                flags & AT_SYMLINK_NOFOLLOW
            },
        };
        remote::utimens(at, atime, mtime)?;
        Ok(Some(0))
    })
}

pub fn statfs(path: UserAddr, buf: UserAddr) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(AT_FDCWD, path)? else {
            return Ok(None);
        };
        let sf = remote::statfs(At::path(dir, &s))?;
        buf.write_bytes(&fsproto::encode_statfs(&sf))?;
        Ok(Some(0))
    })
}

pub fn fstatfs(fd: i32, buf: UserAddr) -> Option<SysResult> {
    run(|| {
        let Some((h, _f)) = remote_fd(fd)? else {
            return Ok(None);
        };
        let sf = remote::statfs(At::handle(h))?;
        buf.write_bytes(&fsproto::encode_statfs(&sf))?;
        Ok(Some(0))
    })
}

pub fn getdents64(f: &File, dirp: UserAddr, count: u64) -> Option<SysResult> {
    let r = f.as_remote()?;
    let handle = r.handle;
    Some((|| {
        if !r.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if f.flags() & O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        let (pos, state, after) = f.cursor_parts();
        let max = count.min(fsproto::MAX_DENTS as u64) as usize;
        let (records, next) = remote::getdents(handle, (pos, state, &after), max)?;
        dirp.write_bytes(&records)?;
        if !records.is_empty() {
            f.set_cursor_parts(next.0, next.1, &next.2)?;
        }
        Ok(records.len())
    })())
}

pub fn getcwd(buf: UserAddr, size: u64) -> Option<SysResult> {
    run(|| {
        let Some(cwd) = proc()?.files.ctx.remote_cwd() else {
            return Ok(None);
        };
        let path = remote::path_of(cwd.handle)?;
        let len = path.len() + 1;
        if (size as usize) < len {
            return Err(Errno::ERANGE);
        }
        let mut bytes = path.into_bytes();
        bytes.push(0);
        buf.write_bytes(&bytes)?;
        Ok(Some(len))
    })
}

pub fn chdir(path: UserAddr) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(AT_FDCWD, path)? else {
            return Ok(None);
        };
        let h = remote::open(dir, s, O_PATH | O_DIRECTORY, 0)?;
        proc()?.files.ctx.set_remote_cwd(Arc::new(h));
        Ok(Some(0))
    })
}

pub fn fchdir(fd: i32) -> Option<SysResult> {
    run(|| {
        let Some((h, _f)) = remote_fd(fd)? else {
            return Ok(None);
        };
        let h = remote::open(h, ".".into(), O_PATH | O_DIRECTORY, 0)?;
        proc()?.files.ctx.set_remote_cwd(Arc::new(h));
        Ok(Some(0))
    })
}

/// `mount` at `target` (read already, non-empty): `Ok(None)` when the
/// target is the kernel's (`/dev`, `/proc`, a kernel working directory),
/// else the server's answer (`ENODEV` for an ext2 image from a server
/// without block devices: docs/SERVERS.md, "Mounts").
pub fn mount(target: &str, kind: fsproto::MountKind) -> Result<Option<()>, Errno> {
    let Route::Server(dir, _hold) = route(proc()?, AT_FDCWD, target)? else {
        return Ok(None);
    };
    remote::mount(dir, target, kind).map(Some)
}

/// `umount2` of `target` (read already, non-empty): `Ok(None)` when it is
/// the kernel's.
pub fn umount(target: &str) -> Result<Option<()>, Errno> {
    let Route::Server(dir, _hold) = route(proc()?, AT_FDCWD, target)? else {
        return Ok(None);
    };
    remote::umount(dir, target).map(Some)
}

pub fn mkdirat(dirfd: i32, path: UserAddr, mode: u32) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        let umask = proc()?.files.ctx.umask();
        remote::mkdir(dir, &s, mode & 0o1777 & !umask)?;
        Ok(Some(0))
    })
}

pub fn mknodat(dirfd: i32, path: UserAddr, mode: u32, dev: u64) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        let umask = proc()?.files.ctx.umask();
        let kind = match mode & S_IFMT {
            0 => 0o100000,
            k @ (0o100000 | 0o010000 | 0o020000 | 0o140000) => k,
            0o040000 => return Err(Errno::EPERM),
            _ => return Err(Errno::EINVAL),
        };
        remote::mknod(dir, &s, kind | (mode & 0o7777 & !umask), dev)?;
        Ok(Some(0))
    })
}

pub fn unlinkat(dirfd: i32, path: UserAddr, flags: u32) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        remote::unlink(dir, &s, flags & AT_REMOVEDIR)?;
        Ok(Some(0))
    })
}

/// Both paths of `rename`/`link`: both on the server, both in the
/// kernel, or `EXDEV`.
#[allow(clippy::type_complexity)]
fn two_routes(
    olddir: i32,
    old: UserAddr,
    newdir: i32,
    new: UserAddr,
) -> Result<Option<((String, Handle, Hold), (String, Handle, Hold))>, Errno> {
    let p = proc()?;
    let (os, ns) = (user_path(old)?, user_path(new)?);
    if os.is_empty() || ns.is_empty() {
        return Ok(None);
    }
    match (route(p, olddir, &os)?, route(p, newdir, &ns)?) {
        (Route::Kernel, Route::Kernel) => Ok(None),
        (Route::Server(oh, ohold), Route::Server(nh, nhold)) => {
            Ok(Some(((os, oh, ohold), (ns, nh, nhold))))
        }
        // Across the kernel's mount points: the points themselves are
        // busy, anything else is another file system.
        _ if remote::kernel_mount_point(&os) || remote::kernel_mount_point(&ns) => {
            Err(Errno::EBUSY)
        }
        _ => Err(Errno::EXDEV),
    }
}

pub fn renameat2(
    olddir: i32,
    old: UserAddr,
    newdir: i32,
    new: UserAddr,
    flags: u32,
) -> Option<SysResult> {
    run(|| {
        let Some(((os, oh, _a), (ns, nh, _b))) = two_routes(olddir, old, newdir, new)? else {
            return Ok(None);
        };
        remote::rename(oh, &os, nh, &ns, flags)?;
        Ok(Some(0))
    })
}

pub fn linkat(
    olddir: i32,
    old: UserAddr,
    newdir: i32,
    new: UserAddr,
    flags: u32,
) -> Option<SysResult> {
    run(|| {
        let Some(((os, oh, _a), (ns, nh, _b))) = two_routes(olddir, old, newdir, new)? else {
            return Ok(None);
        };
        remote::link(oh, &os, nh, &ns, flags & AT_SYMLINK_FOLLOW)?;
        Ok(Some(0))
    })
}

pub fn symlinkat(target: UserAddr, newdir: i32, path: UserAddr) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(newdir, path)? else {
            return Ok(None);
        };
        let target = user_path(target)?;
        remote::symlink(&target, dir, &s)?;
        Ok(Some(0))
    })
}

pub fn readlinkat(dirfd: i32, path: UserAddr, buf: UserAddr, size: i64) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(dirfd, path)? else {
            return Ok(None);
        };
        let target = remote::readlink(At::nofollow(dir, &s))?;
        let n = target.len().min(size.max(0) as usize);
        buf.write_bytes(&target.as_bytes()[..n])?;
        Ok(Some(n))
    })
}

pub fn truncate(path: UserAddr, len: i64) -> Option<SysResult> {
    run(|| {
        let Some((s, dir, _hold)) = path_route(AT_FDCWD, path)? else {
            return Ok(None);
        };
        // A mapped file's mappings must lose the pages cut off: which
        // file the path names is asked first (only if anything is mapped).
        let id = if remote_map::any_mapped() {
            remote::stat(At::path(dir, &s))
                .ok()
                .map(|st| (st.dev, st.ino))
        } else {
            None
        };
        remote::truncate(At::path(dir, &s), len as u64)?;
        if let Some((dev, ino)) = id {
            remote_map::truncated(dev, ino, len as u64);
        }
        Ok(Some(0))
    })
}

pub fn ftruncate(fd: i32, len: i64) -> Option<SysResult> {
    run(|| {
        let Some((h, f)) = remote_fd(fd)? else {
            return Ok(None);
        };
        if len < 0 || !f.writable() {
            return Err(Errno::EINVAL);
        }
        remote::truncate(At::handle(h), len as u64)?;
        if let Some(r) = f.as_remote() {
            remote_map::truncated(r.dev, r.ino, len as u64);
        }
        Ok(Some(0))
    })
}
