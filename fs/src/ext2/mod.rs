//! ext2 as a file-system type of the VFS: the disk is the backing store
//! of the ordinary in-memory inodes and page cache.
//!
//! Design: an ext2 superblock is an `Fs` like tmpfs, whose `Shared` holds
//! a `Backing` (the on-disk engine `disk::Ext2` over a `BlockCache`, and
//! an inode cache).  Inodes are made from disk lazily: a directory's
//! entries are read on its first use (`Inode::dir` → `load_dir`), making
//! an `Inode` per entry from its on-disk inode; a regular file's data is
//! read into page-cache pages on its first read, write or mapping
//! (`load_file`: only mapped blocks, so sparse files stay sparse).  After
//! that, lookups, reads and writes run on the same per-CPU fast paths as
//! tmpfs (RCU lookups, per-bucket locks, the file lock), touching no disk
//! state.  Namespace changes (create, link, unlink, rmdir, rename) are
//! applied to the image at once, in the block cache, under the bucket
//! locks the VFS holds; file data and inode attributes are written back
//! by `sync_shared` (`Fs::sync`, `Inode::fsync`, `syncfs`, the kernel's
//! flusher): dirty pages become blocks (allocated then: delayed
//! allocation), attributes are copied into the on-disk inode, and the
//! block cache is written and the device flushed.  An inode whose last
//! name is gone is freed on disk once its last in-memory user drops it.
//!
//! Trade-offs: a file is cached whole from its first data access (no
//! eviction of clean pages yet); write-back walks the loaded tree (cost
//! proportional to the inodes in memory, not to the dirty ones); the
//! engine serialises all disk metadata changes on one lock (bitmaps and
//! counts are shared by nature).  Names that are not UTF-8 are shown with
//! replacement characters and cannot be removed.
//!
//! Must not: read the disk while a bucket lock of the directory being
//! loaded is held by someone waiting for us (loading takes only the
//! directory's own `load` lock, then its buckets); panic on any image.

pub mod disk;

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

pub use disk::{Ext2, MountError};

use crate::env::PAGE_SIZE;
use crate::errno::{Errno, FsResult};
use crate::inode::{Body, Dir, FileData, FileType, Inode};
use crate::lockstat::{LockClass, Mutex, RwLock};
use crate::vfs::Shared;

/// The disk side of an ext2 superblock.
pub struct Backing {
    pub(crate) disk: Ext2,
    /// In-memory inodes by number, so every name of a hard-linked file
    /// leads to one `Inode` (weak: the directory entries own them).
    icache: Mutex<BTreeMap<u32, Weak<Inode>>>,
    /// The root (for write-back from any inode's superblock).
    pub(crate) root: spin::Once<Weak<Inode>>,
}

impl Backing {
    pub(crate) fn new(disk: Ext2) -> Backing {
        Backing {
            disk,
            icache: Mutex::new(LockClass::DiskFs, BTreeMap::new()),
            root: spin::Once::new(),
        }
    }

    /// The in-memory inode of disk inode `ino`, made from disk if needed.
    /// A directory already in memory is `EIO` (a directory has one name:
    /// meeting it twice means a loop or a shared directory in the image).
    pub(crate) fn inode(
        &self,
        shared: &'static Shared,
        ino: u32,
        parent: Option<&Arc<Inode>>,
    ) -> FsResult<Arc<Inode>> {
        let mut ic = self.icache.lock();
        if let Some(n) = ic.get(&ino).and_then(Weak::upgrade) {
            if n.is_dir() {
                return Err(Errno::EIO);
            }
            return Ok(n);
        }
        let di = self.disk.read_inode(ino)?;
        if di.mode() == 0 || di.links() == 0 {
            return Err(Errno::EIO);
        }
        use disk::mode::*;
        let kind = match di.mode() & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDevice,
            S_IFBLK => FileType::BlockDevice,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => return Err(Errno::EIO),
        };
        let body = match kind {
            FileType::Regular => Body::File(RwLock::new(
                LockClass::FileData,
                FileData::unloaded(di.size()),
            )),
            FileType::Directory => {
                let d = Dir::new(parent.map(Arc::downgrade).unwrap_or_default());
                d.pending.store(true, Ordering::Release);
                Body::Dir(d)
            }
            FileType::Symlink => Body::Symlink(self.disk.read_link(&di)?),
            _ => Body::Special,
        };
        let rdev = match kind {
            FileType::CharDevice | FileType::BlockDevice => di.rdev(),
            _ => 0,
        };
        let perm = (di.mode() & 0o7777) as u32;
        let node = Inode::with_body(shared, kind, perm, rdev, parent, body, ino as u64);
        {
            let mut m = node.meta.write();
            m.uid = di.uid();
            m.gid = di.gid();
            m.nlink = di.links();
            m.atime = di.atime();
            m.mtime = di.mtime();
            m.ctime = di.ctime();
        }
        ic.retain(|_, w| w.strong_count() > 0);
        ic.insert(ino, Arc::downgrade(&node));
        Ok(node)
    }

    /// Records a new in-memory inode for disk inode `ino`.
    pub(crate) fn remember(&self, node: &Arc<Inode>) {
        self.icache
            .lock()
            .insert(node.ino() as u32, Arc::downgrade(node));
    }
}

/// Reads the entries of directory `node` (body `d`) from disk into its
/// buckets, once.
pub(crate) fn load_dir(node: &Inode, d: &Dir) -> FsResult<()> {
    let _g = d.load.lock();
    if !d.pending.load(Ordering::Acquire) {
        return Ok(());
    }
    let b = node.shared.disk.as_ref().ok_or(Errno::EIO)?;
    let me = d.this.upgrade().ok_or(Errno::ENOENT)?;
    let ents = b.disk.list_dir(node.ino() as u32)?;
    let mut seen = BTreeSet::new();
    let mut children = Vec::new();
    for e in ents {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        if e.name.is_empty() || e.name.contains(&b'/') || e.name.contains(&0) {
            return Err(Errno::EIO);
        }
        let name = String::from_utf8_lossy(&e.name).into_owned();
        if !seen.insert(name.clone()) {
            return Err(Errno::EIO);
        }
        let child = b.inode(node.shared, e.ino, Some(&me))?;
        children.push((name, child));
    }
    for (name, child) in children {
        let mut bucket = d.bucket(&name).write(node.shared);
        let old = bucket.insert(&name, child);
        drop(bucket);
        if old.is_none() {
            d.entries.fetch_add(1, Ordering::Relaxed);
        }
        drop(old);
    }
    d.pending.store(false, Ordering::Release);
    Ok(())
}

/// Reads a regular file's data from disk into its pages, once.
pub(crate) fn load_file(node: &Inode) -> FsResult<()> {
    let Some(b) = &node.shared.disk else {
        return Ok(());
    };
    let lock = node.file()?;
    if !lock.read().unloaded {
        return Ok(());
    }
    let mut f = lock.write();
    if !f.unloaded {
        return Ok(());
    }
    let di = b.disk.read_inode(node.ino() as u32)?;
    let pages = f.size().div_ceil(PAGE_SIZE as u64);
    let mut buf = vec![0u8; PAGE_SIZE];
    for p in b.disk.mapped_pages(&di, pages)? {
        b.disk.read_data(&di, p * PAGE_SIZE as u64, &mut buf)?;
        let page = node.shared.alloc_zeroed_page().ok_or(Errno::ENOMEM)?;
        page.write_at(0, &buf);
        f.insert_page(p, page);
    }
    f.unloaded = false;
    Ok(())
}

/// Writes one inode's dirty pages and attributes into the block cache.
pub(crate) fn write_back(node: &Inode) -> FsResult<()> {
    let Some(b) = &node.shared.disk else {
        return Ok(());
    };
    if b.disk.read_only() || node.nlink() == 0 {
        return Ok(());
    }
    let ino = node.ino() as u32;
    let bs = b.disk.geo.block_size as u64;
    if let Body::File(lock) = &node.body {
        let mut f = lock.write();
        if !f.unloaded {
            let size = f.size();
            if let Some(s) = f.shrunk.take() {
                b.disk.set_size(ino, s)?;
            }
            let mut dirty = core::mem::take(&mut f.dirty);
            if f.is_mapped() {
                dirty.extend(f.page_indices());
            }
            let mut res = Ok(());
            for &p in &dirty {
                let start = p * PAGE_SIZE as u64;
                if start >= size {
                    continue;
                }
                let Some(data) = f.page_bytes(p) else {
                    continue;
                };
                let len = ((size - start).min(PAGE_SIZE as u64)).div_ceil(bs) * bs;
                res = b.disk.write_data(ino, start, &data[..len as usize]);
                if res.is_err() {
                    break;
                }
            }
            if let Err(e) = res {
                f.dirty.extend(dirty);
                return Err(e);
            }
            b.disk.set_size(ino, size)?;
        }
    }
    if node.dirty.swap(false, Ordering::AcqRel) {
        let m = node.meta.read();
        let a = disk::Attrs {
            perm: m.perm,
            uid: m.uid,
            gid: m.gid,
            links: m.nlink,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        };
        drop(m);
        if let Err(e) = b.disk.set_attrs(ino, &a) {
            node.dirty.store(true, Ordering::Relaxed);
            return Err(e);
        }
    }
    Ok(())
}

/// Writes back every loaded inode of the superblock `shared` and its
/// free counts, then writes the block cache and flushes the device.
pub(crate) fn sync_shared(shared: &'static Shared) -> FsResult<()> {
    let Some(b) = &shared.disk else {
        return Ok(());
    };
    if b.disk.read_only() {
        return Ok(());
    }
    // Unlinked entries wait for a grace period before they drop their
    // inodes: run one, so inodes with no name left are freed now.
    shared.rcu.flush();
    let Some(root) = b.root.get().and_then(Weak::upgrade) else {
        return Ok(());
    };
    let mut first_err = None;
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(n) = stack.pop() {
        if !seen.insert(Arc::as_ptr(&n) as usize) {
            continue;
        }
        if let Err(e) = write_back(&n) {
            first_err.get_or_insert(e);
        }
        if let Body::Dir(d) = &n.body {
            if d.pending.load(Ordering::Acquire) {
                continue;
            }
            for bucket in d.buckets() {
                let g = bucket.write(shared);
                for e in g.iter() {
                    if core::ptr::eq(e.inode.shared, shared) {
                        stack.push(e.inode.clone());
                    }
                }
            }
        }
    }
    let r = b.disk.sync(shared.now());
    match first_err {
        Some(e) => Err(e),
        None => r,
    }
}

/// Final write-back at umount: `sync_shared`, then the image is marked
/// cleanly unmounted.
pub(crate) fn unmount_shared(shared: &'static Shared) -> FsResult<()> {
    sync_shared(shared)?;
    match &shared.disk {
        Some(b) => b.disk.unmount(shared.now()),
        None => Ok(()),
    }
}

/// `statfs` numbers of a disk superblock: (blocks, free blocks, inodes,
/// free inodes, block size).
pub(crate) fn statfs(shared: &'static Shared) -> Option<(u64, u64, u64, u64, usize)> {
    shared.disk.as_ref().map(|b| b.disk.statfs())
}

/// Convert a VFS inode's type and permissions to an on-disk mode.
pub(crate) fn disk_mode(kind: FileType, perm: u32) -> u16 {
    (kind.mode_bits() | (perm & 0o7777)) as u16
}
