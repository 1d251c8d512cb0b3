//! `FileServer`: decodes a request, runs it on the VFS, encodes the reply.
//!
//! Owns the mapping of each `fsproto` operation onto `fs` calls, with the
//! checks the kernel's system calls make when they run the VFS themselves
//! (access mode of a handle, `EROFS`, the chown and access permission
//! rules), so a delegated call answers as a local one.
//!
//! Shared between server threads (and why it cannot be per-CPU): the
//! namespace (`fs::Fs`, concurrent by design: lock-free lookups, per-bucket
//! locks, per-CPU counters, see `fs::vfs`), the handle table (sharded per
//! server thread, see `handles`), and the list of mounted superblocks
//! (one mutex, taken only by mount, umount and sync).  No lock of the
//! server's own is held around a VFS operation.
//!
//! Must not: panic on any message (every failure is an errno reply), or
//! keep per-open-file state beyond the handle (offsets are the client's).

use std::sync::{Arc, Mutex};

use abi::fcntl::*;
use abi::structs::{Stat as AbiStat, Statfs};
use abi::Errno;
use fs::block::BlockDevice;
use fs::vfs::RenameMode;
use fs::{DirCursor, FileType, Fs, Inode, Timespec};
use fsproto::encode_page_addrs;
use fsproto::{
    put_dirent, reply_message, At, Cred, Cursor, Handle, Message, MountKind, MsgRef, NodeInfo,
    Reply, Request, Time, MAX_PAYLOAD,
};

use crate::handles::{Access, Entry, HandleTable, IoUser};
use crate::pathcache::{changes_names, PathCache};
use crate::Transport;

/// How a server is set up.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Server threads (one per core): shards of the handle table.
    pub workers: usize,
    /// Live handles per shard.
    pub handles_per_worker: usize,
    /// Page-cache bound of an ext2 superblock mounted with `Mount`.
    pub ext2_pages: u64,
    /// Which instance this is since boot (0 first; a restart after a
    /// crash counts up): handles of earlier instances never match
    /// (`HandleTable::with_epoch`).
    pub handle_epoch: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 1,
            handles_per_worker: 1 << 16,
            ext2_pages: 1 << 14,
            handle_epoch: 0,
        }
    }
}

/// The file server: a namespace and the handles its clients hold.
pub struct FileServer {
    pub(crate) fs: Fs,
    pub(crate) handles: HandleTable,
    pub(crate) devices: Vec<Arc<dyn BlockDevice>>,
    /// Superblocks mounted through `Mount` (for `Sync` and to keep them).
    pub(crate) mounts: Mutex<Vec<Fs>>,
    pub(crate) config: Config,
    /// Paths `Stat` resolved (per server thread; `pathcache`).
    pub(crate) paths: PathCache,
}

/// `fs::Stat` as Linux's `struct stat`.
pub fn abi_stat(st: &fs::Stat) -> AbiStat {
    AbiStat {
        st_dev: st.dev,
        st_ino: st.ino,
        st_nlink: st.nlink as u64,
        st_mode: st.mode,
        st_uid: st.uid,
        st_gid: st.gid,
        st_rdev: st.rdev,
        st_size: st.size as i64,
        st_blksize: st.blksize as i64,
        st_blocks: st.blocks as i64,
        st_atime: st.atime.sec,
        st_atime_nsec: st.atime.nsec as i64,
        st_mtime: st.mtime.sec,
        st_mtime_nsec: st.mtime.nsec as i64,
        st_ctime: st.ctime.sec,
        st_ctime_nsec: st.ctime.nsec as i64,
        ..AbiStat::default()
    }
}

fn node_info(inode: &Inode) -> NodeInfo {
    let st = inode.stat();
    NodeInfo {
        mode: st.mode,
        ino: st.ino,
        dev: st.dev,
    }
}

impl FileServer {
    /// A server for the namespace `fs`, able to mount the ext2 images on
    /// `devices` (numbered from 0 in `MountKind::Ext2`).
    pub fn new(fs: Fs, devices: Vec<Arc<dyn BlockDevice>>, config: Config) -> FileServer {
        FileServer {
            fs,
            handles: HandleTable::with_epoch(
                config.workers,
                config.handles_per_worker,
                config.handle_epoch,
            ),
            devices,
            mounts: Mutex::new(Vec::new()),
            paths: PathCache::new(config.workers),
            config,
        }
    }

    /// The namespace (for tests and the server's own start-up).
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    /// Handles held by all clients.
    pub fn live_handles(&self) -> usize {
        self.handles.live()
    }

    /// Serves `transport` on server thread `worker` until it closes.
    pub fn serve<T: Transport>(&self, worker: usize, transport: &mut T) {
        while let Some((caller, client, msg)) = transport.recv() {
            let reply = self.handle(worker, client, msg.view());
            transport.reply(caller, reply);
        }
    }

    /// The reply to one message from `client`, on server thread `worker`.
    pub fn handle(&self, worker: usize, client: u64, msg: MsgRef<'_>) -> Message {
        match Request::decode(msg) {
            Ok(req) => self.call(worker, client, &req),
            Err(e) => {
                if e == Errno::ENOSYS {
                    eprintln!("fsd: unknown operation {} (ENOSYS)", msg.label);
                }
                Message::error(e)
            }
        }
    }

    /// Runs a decoded request.
    pub fn call(&self, worker: usize, client: u64, req: &Request<'_>) -> Message {
        // A change of names moves the path caches' generation before and
        // after it (`pathcache`).
        let changes = changes_names(req);
        if changes {
            self.paths.bump();
        }
        let reply = match self.run(worker, client, req) {
            Ok(m) => m,
            Err(e) => Message::error(e),
        };
        if changes {
            self.paths.bump();
        }
        reply
    }

    fn entry(&self, client: u64, h: Handle) -> Result<Entry, Errno> {
        self.handles.get(client, h)
    }

    fn dir(&self, client: u64, h: Handle) -> Result<Arc<Inode>, Errno> {
        self.handles.inode(client, h)
    }

    /// The inode an `At` names.
    fn target(&self, client: u64, at: &At<'_>) -> Result<Arc<Inode>, Errno> {
        let start = self.dir(client, at.dir)?;
        if at.path.is_empty() {
            return if at.flags & AT_EMPTY_PATH != 0 {
                Ok(start)
            } else {
                Err(Errno::ENOENT)
            };
        }
        self.fs.lookup(&start, at.path, at.follow())
    }

    /// The inode `path` from `start` names, through this thread's path
    /// cache (`pathcache`; the same entries `Stat` keeps).
    fn resolve(
        &self,
        worker: usize,
        start: &Arc<Inode>,
        path: &str,
        follow: bool,
    ) -> Result<Arc<Inode>, Errno> {
        if let Some(node) = self.paths.get(worker, start, path, follow) {
            return Ok(node);
        }
        let seen = self.paths.generation();
        let node = self.fs.lookup(start, path, follow)?;
        self.paths.put(worker, seen, start, path, follow, &node);
        Ok(node)
    }

    /// `Fs::open`, with the walk of a plain read-only open (no `O_CREAT`,
    /// `O_TRUNC` or write access: nothing but the walk and the checks
    /// below, which are `Fs::open`'s for that case) answered from the
    /// path cache.  Every other open walks in `Fs::open`.
    fn open(
        &self,
        worker: usize,
        start: &Arc<Inode>,
        path: &str,
        flags: u32,
        mode: u32,
    ) -> Result<Arc<Inode>, Errno> {
        if flags & (O_CREAT | O_TRUNC) != 0 || flags & O_ACCMODE != O_RDONLY {
            return self.fs.open(start, path, flags, mode);
        }
        let node = self.resolve(worker, start, path, flags & O_NOFOLLOW == 0)?;
        if node.kind() == FileType::Symlink && flags & O_PATH == 0 {
            return Err(Errno::ELOOP);
        }
        if flags & O_DIRECTORY != 0 && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    fn new_handle(
        &self,
        worker: usize,
        client: u64,
        inode: Arc<Inode>,
        access: Access,
    ) -> Result<Message, Errno> {
        let info = node_info(&inode);
        let io = (inode.kind() == FileType::Regular && (access.read || access.write))
            .then(|| IoUser::new(inode.clone()));
        let handle = self.handles.insert(
            worker,
            Entry {
                inode,
                client,
                access,
                io,
            },
        )?;
        Reply::Handle { handle, info }.encode()
    }

    fn run(&self, worker: usize, client: u64, req: &Request<'_>) -> Result<Message, Errno> {
        let done = || Ok(reply_message(Ok(Reply::Done)));
        match *req {
            Request::Attach => {
                self.handles.drop_client(client);
                self.new_handle(worker, client, self.fs.root(), Access::PATH)
            }
            Request::Open {
                dir,
                path,
                flags,
                mode,
                close,
            } => {
                if close.0 != 0 {
                    // A close the client deferred to this open: done
                    // whatever the open gives; a stale handle (an earlier
                    // server instance's) is nobody's error.
                    let _ = self.handles.remove(client, close);
                }
                let start = self.dir(client, dir)?;
                let inode = self.open(worker, &start, path, flags, mode)?;
                let acc = flags & O_ACCMODE;
                let path_only = flags & O_PATH != 0;
                let access = Access {
                    read: !path_only && acc != O_WRONLY,
                    write: !path_only && acc != O_RDONLY,
                    path_only,
                };
                self.new_handle(worker, client, inode, access)
            }
            Request::Close { handle } => {
                self.handles.remove(client, handle)?;
                done()
            }
            Request::Read {
                handle,
                offset,
                len,
            } => {
                let e = self.entry(client, handle)?;
                if !e.access.read {
                    return Err(Errno::EBADF);
                }
                let mut buf = vec![0u8; (len as usize).min(MAX_PAYLOAD)];
                let n = e.inode.read_at(offset, &mut buf)?;
                buf.truncate(n);
                Reply::Data(&buf).encode()
            }
            Request::Write {
                handle,
                offset,
                append,
                data,
            } => {
                let e = self.entry(client, handle)?;
                if !e.access.write {
                    return Err(Errno::EBADF);
                }
                let (count, end) = e.inode.write_at(offset, data, append)?;
                Reply::Written {
                    count: count as u64,
                    end,
                }
                .encode()
            }
            Request::Stat { at } => {
                let st = if at.path.is_empty() {
                    self.target(client, &at)?.stat()
                } else {
                    let start = self.dir(client, at.dir)?;
                    self.resolve(worker, &start, at.path, at.follow())?.stat()
                };
                Reply::Stat(abi_stat(&st)).encode()
            }
            Request::Truncate { at, size } => {
                let inode = if at.path.is_empty() {
                    // ftruncate: the handle must be open for writing.
                    let e = self.entry(client, at.dir)?;
                    if at.flags & AT_EMPTY_PATH == 0 {
                        return Err(Errno::ENOENT);
                    }
                    if e.access.path_only {
                        return Err(Errno::EBADF);
                    }
                    if !e.access.write {
                        return Err(Errno::EINVAL);
                    }
                    e.inode
                } else {
                    self.target(client, &at)?
                };
                match inode.kind() {
                    FileType::Regular => inode.truncate(size)?,
                    FileType::Directory => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EINVAL),
                }
                done()
            }
            Request::Mkdir { dir, path, mode } => {
                let start = self.dir(client, dir)?;
                self.fs.mkdir(&start, path, mode)?;
                done()
            }
            Request::Mknod {
                dir,
                path,
                mode,
                rdev,
            } => {
                let kind = match mode & S_IFMT {
                    0 | S_IFREG => FileType::Regular,
                    S_IFIFO => FileType::Fifo,
                    S_IFCHR => FileType::CharDevice,
                    S_IFBLK => FileType::BlockDevice,
                    S_IFSOCK => FileType::Socket,
                    S_IFDIR => return Err(Errno::EPERM),
                    _ => return Err(Errno::EINVAL),
                };
                let start = self.dir(client, dir)?;
                self.fs.mknod(&start, path, kind, mode & 0o7777, rdev)?;
                done()
            }
            Request::Unlink { dir, path, flags } => {
                let start = self.dir(client, dir)?;
                if flags & AT_REMOVEDIR != 0 {
                    self.fs.rmdir(&start, path)?;
                } else {
                    self.fs.unlink(&start, path)?;
                }
                done()
            }
            Request::Rename {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let mode = match flags {
                    RENAME_NOREPLACE => RenameMode::NoReplace,
                    RENAME_EXCHANGE => RenameMode::Exchange,
                    _ => RenameMode::Replace,
                };
                let (os, ns) = (self.dir(client, old_dir)?, self.dir(client, new_dir)?);
                self.fs.rename_with(&os, old, &ns, new, mode)?;
                done()
            }
            Request::Link {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let (os, ns) = (self.dir(client, old_dir)?, self.dir(client, new_dir)?);
                self.fs
                    .link(&os, old, &ns, new, flags & AT_SYMLINK_FOLLOW != 0)?;
                done()
            }
            Request::Symlink { target, dir, path } => {
                let start = self.dir(client, dir)?;
                self.fs.symlink(target, &start, path)?;
                done()
            }
            Request::Readlink { at } => {
                // Never follows the last component.
                let at = At {
                    flags: at.flags | AT_SYMLINK_NOFOLLOW,
                    ..at
                };
                let inode = self.target(client, &at)?;
                let t = inode.symlink_target().ok_or(Errno::EINVAL)?;
                Reply::Text(t).encode()
            }
            Request::Getdents {
                handle,
                cursor,
                max,
            } => self.getdents(client, handle, cursor, max as usize),
            Request::Chmod { at, mode } => {
                let inode = self.target(client, &at)?;
                inode.writable()?;
                inode.set_perm(mode);
                done()
            }
            Request::Chown { at, uid, gid, cred } => {
                let inode = self.target(client, &at)?;
                chown(&inode, uid, gid, cred)?;
                done()
            }
            Request::Utimens { at, atime, mtime } => {
                let inode = self.target(client, &at)?;
                let now = self.fs.now();
                let pick = |t: Time| match t {
                    Time::Now => Some(now),
                    Time::Omit => None,
                    Time::At { sec, nsec } => Some(Timespec { sec, nsec }),
                };
                let (a, m) = (pick(atime), pick(mtime));
                if a.is_some() || m.is_some() {
                    inode.writable()?;
                    inode.set_times(a, m);
                }
                done()
            }
            Request::Statfs { at } => {
                let inode = self.target(client, &at)?;
                Reply::Statfs(statfs(&inode)).encode()
            }
            Request::Fsync { handle, whole_fs } => {
                let inode = self.dir(client, handle)?;
                if whole_fs {
                    inode.sync_fs()?;
                } else {
                    inode.fsync()?;
                }
                done()
            }
            Request::Sync => {
                // Every superblock, the first error reported (after all
                // were tried).
                let mut first = self.fs.sync().err();
                let mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
                for m in mounts.iter() {
                    if let Err(e) = m.sync() {
                        first.get_or_insert(e);
                    }
                }
                match first {
                    Some(e) => Err(e),
                    None => done(),
                }
            }
            Request::Access { at, mode, cred } => {
                let inode = self.target(client, &at)?;
                access(&inode, mode, cred)?;
                done()
            }
            Request::PathOf { handle } => {
                let inode = self.dir(client, handle)?;
                let p = self.fs.path_of(&inode)?;
                Reply::Text(&p).encode()
            }
            Request::Mount { dir, path, kind } => {
                let start = self.dir(client, dir)?;
                let child = match kind {
                    MountKind::Tmpfs { max_pages } => self.fs.new_mount(max_pages),
                    MountKind::Ext2 { device, read_only } => {
                        let dev = self
                            .devices
                            .get(device as usize)
                            .ok_or(Errno::ENODEV)?
                            .clone();
                        self.fs
                            .new_ext2_mount(dev, read_only, self.config.ext2_pages)
                            .map_err(|e| e.errno)?
                    }
                };
                let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
                self.fs.mount(&start, path, &child)?;
                mounts.push(child);
                done()
            }
            Request::Umount { dir, path } => {
                let start = self.dir(client, dir)?;
                let root = self.fs.lookup(&start, path, true)?;
                let key = Arc::as_ptr(&root) as usize;
                drop(root);
                let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
                self.fs.umount(&start, path)?;
                mounts.retain(|m| Arc::as_ptr(m.root_ref()) as usize != key);
                done()
            }
            Request::MapPages {
                handle,
                index,
                count,
            } => {
                // A mapping reads the file: a handle open for reading
                // (`mmap` of a write-only file is EACCES on Linux).
                let e = self.entry(client, handle)?;
                if e.access.path_only {
                    return Err(Errno::EBADF);
                }
                if !e.access.read {
                    return Err(Errno::EACCES);
                }
                if e.inode.kind() != FileType::Regular {
                    return Err(Errno::ENODEV);
                }
                // `page_phys` is the page's address in this process (the
                // host page allocator has no other); once a page was
                // handed out, the file keeps it until the inode goes.
                let mut addrs = Vec::with_capacity(count as usize);
                for i in index..index + count as u64 {
                    match e.inode.page_phys(i) {
                        Ok(a) => addrs.push(a),
                        Err(err) if addrs.is_empty() => return Err(err),
                        Err(_) => break,
                    }
                }
                Reply::Pages(&encode_page_addrs(&addrs)).encode()
            }
            Request::ReadPages {
                handle,
                offset,
                len,
            } => {
                let e = self.entry(client, handle)?;
                if !e.access.read {
                    return Err(Errno::EBADF);
                }
                let (n, addrs) = e.inode.grant_read(offset, len as usize)?;
                Reply::Grant {
                    len: n as u64,
                    epoch: 0,
                    pages: &encode_page_addrs(&addrs),
                }
                .encode()
            }
            Request::WritePages {
                handle,
                offset,
                len,
            } => {
                let e = self.entry(client, handle)?;
                if !e.access.write {
                    return Err(Errno::EBADF);
                }
                let (n, addrs, epoch) = e.inode.grant_write(offset, len as usize)?;
                Reply::Grant {
                    len: n as u64,
                    epoch,
                    pages: &encode_page_addrs(&addrs),
                }
                .encode()
            }
            Request::WriteDone {
                handle,
                offset,
                count,
                epoch,
            } => {
                let e = self.entry(client, handle)?;
                if !e.access.write {
                    return Err(Errno::EBADF);
                }
                let end = e.inode.commit_write(offset, count as usize, epoch)?;
                Reply::Written { count, end }.encode()
            }
        }
    }

    fn getdents(
        &self,
        client: u64,
        handle: Handle,
        cursor: Cursor<'_>,
        max: usize,
    ) -> Result<Message, Errno> {
        let e = self.entry(client, handle)?;
        if e.access.path_only {
            return Err(Errno::EBADF);
        }
        if !e.inode.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let after = (!cursor.after.is_empty()).then_some(cursor.after);
        let mut c = DirCursor::from_parts(cursor.position, cursor.state, after)?;
        let mut out = Vec::with_capacity(max.min(MAX_PAYLOAD));
        let mut too_small = false;
        e.inode.readdir(&mut c, |name, ino, kind, next| {
            if put_dirent(&mut out, max, ino, next, kind.dirent_type(), name) {
                true
            } else {
                too_small = out.is_empty();
                false
            }
        })?;
        if too_small {
            return Err(Errno::EINVAL);
        }
        let (position, state, after) = c.to_parts();
        Reply::Dents {
            records: &out,
            cursor: Cursor {
                position,
                state,
                after: after.unwrap_or(""),
            },
        }
        .encode()
    }
}

/// `chown` by a caller with effective ids `cred`: root sets any ids, an
/// owner only the group, to its own group; `EPERM` otherwise.
fn chown(inode: &Inode, uid: Option<u32>, gid: Option<u32>, cred: Cred) -> Result<(), Errno> {
    if cred.uid != 0 {
        let (owner, _) = inode.owner();
        let uid_ok = uid.is_none_or(|u| u == owner);
        let gid_ok = gid.is_none_or(|g| g == cred.gid);
        if owner != cred.uid || !uid_ok || !gid_ok {
            return Err(Errno::EPERM);
        }
    }
    inode.writable()?;
    inode.set_owner(uid, gid);
    Ok(())
}

/// `faccessat` for ids `cred`: root reads and writes anything and
/// executes what has an x bit (or is a directory); others get the owner,
/// else group, else other bits.  `W_OK` on a read-only mount is `EROFS`.
fn access(inode: &Inode, mode: u32, cred: Cred) -> Result<(), Errno> {
    let st = inode.stat();
    if mode & W_OK != 0 && inode.read_only() {
        return Err(Errno::EROFS);
    }
    if cred.uid == 0 {
        if mode & X_OK != 0 && !inode.is_dir() && st.mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        return Ok(());
    }
    let shift = if st.uid == cred.uid {
        6
    } else if st.gid == cred.gid {
        3
    } else {
        0
    };
    if (st.mode >> shift) & mode & 7 != mode & 7 {
        return Err(Errno::EACCES);
    }
    Ok(())
}

/// `struct statfs` of the superblock `inode` is on.
fn statfs(inode: &Inode) -> Statfs {
    let mut s = Statfs {
        f_bsize: 4096,
        f_frsize: 4096,
        f_namelen: NAME_MAX as i64,
        f_flags: ST_VALID,
        f_fsid: [(inode.dev() & 0xffff_ffff) as i32, 0],
        ..Statfs::default()
    };
    match inode.disk_usage() {
        Some((blocks, free, inodes, free_inodes, bsize)) => {
            s.f_type = EXT2_SUPER_MAGIC;
            s.f_bsize = bsize as i64;
            s.f_frsize = bsize as i64;
            s.f_blocks = blocks;
            s.f_bfree = free;
            s.f_bavail = free;
            s.f_files = inodes;
            s.f_ffree = free_inodes;
            if inode.read_only() {
                // ST_RDONLY.
                s.f_flags |= 1;
            }
        }
        None => {
            let (used, max, inodes) = inode.superblock_usage();
            s.f_type = TMPFS_MAGIC;
            s.f_blocks = max;
            s.f_bfree = max.saturating_sub(used);
            s.f_bavail = s.f_bfree;
            s.f_files = max;
            s.f_ffree = (max as i64 - inodes.max(0)).max(0) as u64;
        }
    }
    s
}
