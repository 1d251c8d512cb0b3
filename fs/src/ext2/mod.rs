//! ext2 as a file-system type of the VFS: the disk is the backing store
//! of the ordinary in-memory inodes and page cache.
//!
//! Design: an ext2 superblock is an `Fs` like tmpfs, whose `Shared` holds
//! a `Backing` (the on-disk engine `disk::Ext2` over a `BlockCache`, and
//! an inode cache).  Inodes are made from disk lazily: a directory's
//! entries are read on its first use (`Inode::dir` → `load_dir`), making
//! an `Inode` per entry from its on-disk inode; a regular file learns on
//! first access which of its pages are on disk (`Absent`: ranges, from
//! the block map) and reads each page when a read, write or mapping first
//! touches it (`fill`; holes stay holes).  After that, lookups, reads and writes run on the same per-CPU fast paths as
//! tmpfs (RCU lookups, per-bucket locks, the file lock), touching no disk
//! state.  Namespace changes (create, link, unlink, rmdir, rename) are
//! applied to the image at once, in the block cache, under the bucket
//! locks the VFS holds; file data and inode attributes are written back
//! from per-CPU dirty lists (an inode joins the list of the CPU that
//! first changes it) by `sync_shared` (`Fs::sync`, `syncfs`; `fsync` does
//! one inode) and `write_back_local` (the kernel's per-CPU flusher, one
//! CPU's list): dirty pages become blocks (allocated then: delayed
//! allocation), attributes are copied into the on-disk inode, and the
//! block cache is written and the device flushed.  An inode whose last
//! name is gone is freed on disk once its last in-memory user drops it.
//!
//! Memory: a disk file short of pages gives back its own clean pages
//! (`FileData::evict_clean`; they are read again when touched), and
//! reads go in windows, so a file larger than the page bound streams;
//! there is no eviction across files yet.  Trade-offs: the engine serialises all disk metadata changes on one lock (bitmaps and
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
use percpu::{CpuGuard, PerCpu};

/// The disk side of an ext2 superblock.
pub struct Backing {
    pub(crate) disk: Ext2,
    /// In-memory inodes by number, so every name of a hard-linked file
    /// leads to one `Inode` (weak: the directory entries own them).
    icache: Mutex<BTreeMap<u32, Weak<Inode>>>,
    /// The root (for write-back from any inode's superblock).
    pub(crate) root: spin::Once<Weak<Inode>>,
    /// Inodes with changes not yet written back, listed on the CPU that
    /// first changed them (a change takes only that CPU's list lock; the
    /// flusher of each CPU drains its own list).
    /// Boxed: the 8 KiB array must not sit in `Shared`, which is built on
    /// the kernel stack.
    dirty: alloc::boxed::Box<PerCpu<Mutex<Vec<Weak<Inode>>>>>,
}

impl Backing {
    pub(crate) fn new(disk: Ext2) -> Backing {
        Backing {
            disk,
            icache: Mutex::new(LockClass::DiskFs, BTreeMap::new()),
            root: spin::Once::new(),
            dirty: alloc::boxed::Box::new(percpu::per_cpu!(Mutex::new(
                LockClass::DiskFs,
                Vec::new()
            ))),
        }
    }

    /// Adds `node` to this CPU's dirty list.
    pub(crate) fn queue(&self, node: Weak<Inode>) {
        let cpu = CpuGuard::new();
        self.dirty.get(&cpu).lock().push(node);
    }

    /// Takes the dirty lists of every CPU (`all`) or of this one.
    fn take_dirty(&self, all: bool) -> Vec<Weak<Inode>> {
        if all {
            self.dirty
                .iter()
                .flat_map(|l| core::mem::take(&mut *l.lock()))
                .collect()
        } else {
            let cpu = CpuGuard::new();
            core::mem::take(&mut *self.dirty.get(&cpu).lock())
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
                FileData::unloaded(di.size(), di.i_blocks() as u64),
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

/// Pages of a disk file that are on disk but not in memory, as sorted
/// disjoint ranges `start -> end` (exclusive), so a big file costs a few
/// entries, not one per page.
#[derive(Default)]
pub(crate) struct Absent(BTreeMap<u64, u64>);

impl Absent {
    /// From page numbers in increasing order.
    fn from_sorted(pages: &[u64]) -> Absent {
        let mut m = BTreeMap::new();
        let mut run: Option<(u64, u64)> = None;
        for &p in pages {
            run = match run {
                Some((s, e)) if p == e => Some((s, e + 1)),
                Some((s, e)) => {
                    m.insert(s, e);
                    Some((p, p + 1))
                }
                None => Some((p, p + 1)),
            };
        }
        if let Some((s, e)) = run {
            m.insert(s, e);
        }
        Absent(m)
    }

    /// Whether any page in `[first, end)` is absent.
    fn any_in(&self, first: u64, end: u64) -> bool {
        first < end
            && self
                .0
                .range(..end)
                .next_back()
                .is_some_and(|(_, &e)| e > first)
    }

    /// The absent pages in `[first, end)`.
    fn pages_in(&self, first: u64, end: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for (&s, &e) in self.0.range(..end) {
            for p in s.max(first)..e.min(end) {
                out.push(p);
            }
        }
        out
    }

    /// Marks page `p` absent again (it was dropped from memory).
    pub(crate) fn add(&mut self, p: u64) {
        if !self.any_in(p, p + 1) {
            self.0.insert(p, p + 1);
        }
    }

    fn remove(&mut self, p: u64) {
        if let Some((&s, &e)) = self.0.range(..=p).next_back() {
            if p < e {
                self.0.remove(&s);
                if s < p {
                    self.0.insert(s, p);
                }
                if p + 1 < e {
                    self.0.insert(p + 1, e);
                }
            }
        }
    }

    /// Forgets every page from `keep` on.
    pub(crate) fn truncate(&mut self, keep: u64) {
        let tail = self.0.split_off(&keep);
        drop(tail);
        if let Some((_, e)) = self.0.iter_mut().next_back() {
            *e = (*e).min(keep);
        }
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
}

/// For a read of `len` bytes at `offset` of disk file `f` (read-locked):
/// the page range to `fill` first, or `None` when it is all in memory.
pub(crate) fn missing(node: &Inode, f: &FileData, offset: u64, len: usize) -> Option<(u64, u64)> {
    node.shared.disk.as_ref()?;
    let size = f.size();
    if offset >= size {
        return None;
    }
    let first = offset / PAGE_SIZE as u64;
    let end = offset
        .saturating_add(len as u64)
        .min(size)
        .div_ceil(PAGE_SIZE as u64);
    (f.unloaded || f.absent.any_in(first, end)).then_some((first, end))
}

/// Reads the pages in `[first, end)` of disk file `node` (its data `f`,
/// write-locked) that are still only on disk.  Nothing for tmpfs.
pub(crate) fn fill(node: &Inode, f: &mut FileData, first: u64, end: u64) -> FsResult<()> {
    let Some(b) = &node.shared.disk else {
        return Ok(());
    };
    let ino = node.ino() as u32;
    if f.unloaded {
        let di = b.disk.read_inode(ino)?;
        let pages = f.size().div_ceil(PAGE_SIZE as u64);
        f.absent = Absent::from_sorted(&b.disk.mapped_pages(&di, pages)?);
        f.unloaded = false;
    }
    if !f.absent.any_in(first, end) {
        return Ok(());
    }
    let di = b.disk.read_inode(ino)?;
    let mut buf = vec![0u8; PAGE_SIZE];
    let size = f.size();
    for p in f.absent.pages_in(first, end) {
        b.disk.read_data(&di, p * PAGE_SIZE as u64, &mut buf)?;
        // Bytes past the end read as zeros, whatever the block holds.
        let start = p * PAGE_SIZE as u64;
        if size < start + PAGE_SIZE as u64 {
            buf[(size.saturating_sub(start)) as usize..].fill(0);
        }
        let page = match node.shared.alloc_zeroed_page() {
            Some(p) => p,
            // Short of pages: give back clean pages of this file outside
            // the range and retry once.
            None if f.evict_clean(node.shared, first, end, 64) > 0 => {
                node.shared.alloc_zeroed_page().ok_or(Errno::ENOMEM)?
            }
            None => return Err(Errno::ENOMEM),
        };
        page.write_at(0, &buf);
        f.insert_page(p, page);
        f.absent.remove(p);
    }
    Ok(())
}

/// `st_blocks` of a disk file: exact (the disk's count) when nothing is
/// waiting for write-back, else the pages it will hold.
pub(crate) fn file_blocks(node: &Inode, f: &FileData) -> u64 {
    let per_page = (PAGE_SIZE / 512) as u64;
    if node.shared.disk.is_none() {
        return f.resident_pages() * per_page;
    }
    if f.unloaded || (f.dirty.is_empty() && f.shrunk.is_none() && !f.is_mapped()) {
        return f.disk_blocks;
    }
    (f.resident_pages() + f.absent.count()) * per_page
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
            f.disk_blocks = b.disk.read_inode(ino)?.i_blocks() as u64;
        }
    }
    if node.dirty.swap(false, Ordering::AcqRel) {
        let m = node.meta.read();
        let a = disk::Attrs {
            perm: m.perm,
            uid: m.uid,
            gid: m.gid,
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

/// Writes back the inodes on the dirty lists (every CPU's, or this
/// CPU's) into the block cache; returns the first error (the inode that
/// failed stays listed).
fn write_back_listed(shared: &'static Shared, b: &Backing, all: bool) -> FsResult<()> {
    // Unlinked entries wait for a grace period before they drop their
    // inodes: run one, so inodes with no name left are freed now.
    shared.rcu.flush();
    let mut first_err = None;
    for w in b.take_dirty(all) {
        let Some(n) = w.upgrade() else { continue };
        n.queued.store(false, Ordering::Release);
        let r = write_back(&n);
        let mapped = matches!(&n.body, Body::File(f) if f.read().is_mapped());
        if let Err(e) = r {
            first_err.get_or_insert(e);
            n.queue();
        } else if mapped {
            // Stores through a shared mapping are not seen: write its
            // pages at every write-back while mapped.
            n.queue();
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes back every dirty inode of the superblock `shared` and its free
/// counts, then writes the block cache and flushes the device.
pub(crate) fn sync_shared(shared: &'static Shared) -> FsResult<()> {
    let Some(b) = &shared.disk else {
        return Ok(());
    };
    if b.disk.read_only() {
        return Ok(());
    }
    let first = write_back_listed(shared, b, true);
    let r = b.disk.sync(shared.now());
    first.and(r)
}

/// The per-CPU flusher's step: this CPU's dirty inodes into the cache,
/// then the cache's dirty blocks to the device (no flush).
pub(crate) fn write_back_local(shared: &'static Shared) -> FsResult<()> {
    let Some(b) = &shared.disk else {
        return Ok(());
    };
    if b.disk.read_only() {
        return Ok(());
    }
    let first = write_back_listed(shared, b, false);
    let r = b.disk.write_back(shared.now());
    first.and(r)
}

/// Final write-back at umount: `sync_shared`, then the image is marked
/// cleanly unmounted and this superblock never writes to it again.
pub(crate) fn unmount_shared(shared: &'static Shared) -> FsResult<()> {
    sync_shared(shared)?;
    match &shared.disk {
        Some(b) => {
            b.disk.unmount(shared.now())?;
            MOUNTED
                .lock()
                .retain(|s| !core::ptr::eq(*s as *const Shared, shared as *const Shared));
            Ok(())
        }
        None => Ok(()),
    }
}

/// Disk superblocks not yet unmounted (for `sync(2)`); a rare lock.
static MOUNTED: spin::Mutex<Vec<&'static Shared>> = spin::Mutex::new(Vec::new());

/// Records a new disk superblock for `sync_all`.
pub(crate) fn register(shared: &'static Shared) {
    if shared.disk.is_some() {
        MOUNTED.lock().push(shared);
    }
}

/// `EBUSY` if the device under `dev` backs a disk superblock that is
/// still mounted: two engines over one image would corrupt it.
pub(crate) fn check_unused(dev: &Arc<dyn crate::block::BlockDevice>) -> Result<(), MountError> {
    let key = Arc::as_ptr(dev) as *const u8;
    let busy = MOUNTED.lock().iter().any(|s| {
        s.disk
            .as_ref()
            .is_some_and(|b| Arc::as_ptr(b.disk.cache().device()) as *const u8 == key)
    });
    if busy {
        return Err(MountError {
            errno: Errno::EBUSY,
            reason: "the device is already mounted",
        });
    }
    Ok(())
}

fn registered() -> Vec<&'static Shared> {
    MOUNTED.lock().clone()
}

/// `sync(2)`: `Fs::sync` of every disk superblock not unmounted; the
/// first error is returned after all were tried.
pub fn sync_all() -> FsResult<()> {
    let mut first = Ok(());
    for s in registered() {
        let r = sync_shared(s);
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// The per-CPU flusher's step over every disk superblock not unmounted
/// (`Fs::write_back_local` of each).
pub fn write_back_local_all() -> FsResult<()> {
    let mut first = Ok(());
    for s in registered() {
        let r = write_back_local(s);
        if first.is_ok() {
            first = r;
        }
    }
    first
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

#[cfg(test)]
mod tests {
    //! `Absent` (the run-length set of pages on disk but not in memory)
    //! against a plain set of page numbers.
    use super::Absent;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Add(u64),
        Remove(u64),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..40u64).prop_map(Op::Add),
            3 => (0..40u64).prop_map(Op::Remove),
            1 => (0..42u64).prop_map(Op::Truncate),
        ]
    }

    fn check(a: &Absent, m: &BTreeSet<u64>) {
        assert_eq!(a.count(), m.len() as u64);
        // Runs are disjoint, non-empty and not touching (the set is
        // canonical only up to merging, so touching runs are allowed).
        let mut last = None;
        for (&s, &e) in &a.0 {
            assert!(s < e, "empty run {s}..{e}");
            if let Some(l) = last {
                assert!(s >= l, "overlapping runs");
            }
            last = Some(e);
        }
        for first in 0..42u64 {
            for end in [first, first + 1, first + 2, first + 5, 43] {
                let want: Vec<u64> = m.range(first..end).copied().collect();
                assert_eq!(a.pages_in(first, end), want, "pages_in {first}..{end}");
                assert_eq!(
                    a.any_in(first, end),
                    !want.is_empty(),
                    "any_in {first}..{end}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn absent_matches_a_set(start in proptest::collection::btree_set(0..40u64, 0..30),
                                ops in proptest::collection::vec(op(), 0..40)) {
            let pages: Vec<u64> = start.iter().copied().collect();
            let mut a = Absent::from_sorted(&pages);
            let mut m = start;
            check(&a, &m);
            for op in ops {
                match op {
                    Op::Add(p) => { a.add(p); m.insert(p); }
                    Op::Remove(p) => { a.remove(p); m.remove(&p); }
                    Op::Truncate(k) => { a.truncate(k); m.retain(|&p| p < k); }
                }
                check(&a, &m);
            }
        }
    }

    #[test]
    fn runs_merge_from_sorted_pages() {
        let a = Absent::from_sorted(&[1, 2, 3, 7, 8, 10]);
        let runs: Vec<(u64, u64)> = a.0.iter().map(|(&s, &e)| (s, e)).collect();
        assert_eq!(runs, [(1, 4), (7, 9), (10, 11)]);
        assert_eq!(a.count(), 6);
        assert!(!a.any_in(4, 7));
        assert!(!a.any_in(3, 3), "an empty range holds nothing");
    }
}
