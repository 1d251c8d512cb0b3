//! The file-system namespace: path resolution and the operations that
//! change it (create, mkdir, mknod, link, symlink, unlink, rmdir, rename).
//!
//! Owns `Fs` and its `Shared` state (page accounting, inode numbers, the
//! global lock of the ablation, statistics).
//!
//! Locking (`LockMode::PerCpu`): a lookup takes no lock: a path walk runs
//! in one RCU read section (`rcu`: it writes only a per-CPU counter), reads
//! each bucket under its seqlock, and borrows intermediate inodes from the
//! directory entries, so only the result gets an `Arc` count (`Node`).
//! Unlinked entries are freed after a grace period, in per-CPU batches
//! (`Fs::flush_deferred` forces one).  A create or unlink takes the
//! write lock of the one bucket its name hashes to, so operations in
//! different directories share no lock, and in one directory only collide
//! on a bucket.  `rmdir` and rename-over-a-directory *try* to lock every
//! bucket of the victim (backing off on failure, so no lock order between
//! unrelated directories is needed).  A rename takes its two buckets in
//! address order, and a cross-directory rename first takes the per-fs
//! rename lock so the "not into its own subtree" check sees a stable tree.
//! `LockMode::Global` runs every operation under one lock, on the same code.
//!
//! Mounts: every `Fs` is one superblock with its own device number
//! (`st_dev`).  `Fs::mount` attaches another `Fs` on a directory: the
//! mount-point directory records the child root (write-once) and the child
//! root records the mount point, so the mount table is spread over the two
//! inodes and a lookup consults it only on an inode flagged as a mount
//! point or mount root, with plain loads (no shared line is written).
//! Mounts are permanent (there is no umount).  Creates use the superblock
//! of the directory they create in; `link`/`rename` between superblocks
//! fail with `EXDEV`; removing or renaming a mount point fails with `EBUSY`.
//!
//! Must not: hold a bucket lock while blocking, or resolve a path while
//! holding any lock.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use percpu::{CachePadded, PerCpuCounter, SloppyCounter};

use crate::env::{Clock, Page, PageAlloc, Timespec, PAGE_SIZE};
use crate::errno::{Errno, FsResult};
use crate::ino::InoAlloc;
use crate::inode::{Entry, FileType, Inode, Stat};
use crate::lockstat::{LockClass, Mutex};
use crate::rcu::{Rcu, ReadGuard};
use crate::LockMode;

/// Longest name of one path component; longest path, including its
/// terminating NUL in C (so 4095 bytes here).
pub use abi::fcntl::{NAME_MAX, PATH_MAX};
/// Symlinks followed in one resolution before `ELOOP`.
pub const MAX_SYMLINKS: u32 = 40;

/// Linux `open` flags this crate interprets.
pub mod oflags {
    pub use abi::fcntl::{
        O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NOCTTY, O_NOFOLLOW,
        O_NONBLOCK, O_PATH, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY,
    };
}
use oflags::*;

/// Per-CPU operation counters (summed when read).
pub(crate) struct OpStats {
    pub(crate) lookups: PerCpuCounter,
    pub(crate) creates: PerCpuCounter,
    pub(crate) unlinks: PerCpuCounter,
    pub(crate) renames: PerCpuCounter,
    pub(crate) reads: PerCpuCounter,
    pub(crate) writes: PerCpuCounter,
    /// Live inodes: sloppy, as every create and final close bumps it.
    pub(crate) inodes: SloppyCounter,
}

/// Summed statistics of one file system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    pub lookups: i64,
    pub creates: i64,
    pub unlinks: i64,
    pub renames: i64,
    pub reads: i64,
    pub writes: i64,
    pub live_inodes: i64,
    pub used_pages: u64,
    pub max_pages: u64,
}

/// State every inode of one file system points to.  Lives forever (an `Fs`
/// is leaked on creation: the kernel has one; tests leak a few).
pub(crate) struct Shared {
    pub(crate) mode: LockMode,
    pages: Arc<dyn PageAlloc>,
    clock: Arc<dyn Clock>,
    max_pages: u64,
    used_pages: CachePadded<AtomicU64>,
    /// The write-grant epoch new regular files start at
    /// (`Fs::set_write_epoch_base`); read once per file creation.
    pub(crate) write_epoch_base: AtomicU64,
    pub(crate) ino: InoAlloc,
    /// Device number of this superblock (`st_dev`).
    pub(crate) dev: u64,
    /// The ablation's one lock, shared by every superblock made with
    /// `Fs::new_mount` from the same first `Fs`.
    big: &'static Mutex<()>,
    rename: Mutex<()>,
    /// Boxed, like every per-CPU array of a superblock: `Shared` is built
    /// on the kernel stack before it moves to the heap, and a kernel stack
    /// is 64 KiB (one `PerCpuCounter` is 8 KiB).
    pub(crate) stats: alloc::boxed::Box<OpStats>,
    /// Read sections and deferred freeing of directory entries, shared
    /// (like `big`) by every superblock mounted together, since one path
    /// walk crosses them under one read section.
    pub(crate) rcu: &'static Rcu<Entry>,
    /// The disk behind a disk file system (`ext2`); `None` for tmpfs.
    pub(crate) disk: Option<crate::ext2::Backing>,
    /// Submounts below this superblock (umount of it is `EBUSY`).
    mounts_below: AtomicU64,
    /// The change log of a file-server replacement (`Fs::start_change_log`):
    /// every inode whose metadata, entries or data changed while it is on.
    /// One per superblock, not per CPU: it is on only between a
    /// replacement's pre-copy and its switch, where one reader drains it;
    /// off, `Inode::mark_dirty` pays one relaxed load of `logging`.
    pub(crate) changes: spin::Mutex<alloc::vec::Vec<alloc::sync::Weak<Inode>>>,
    pub(crate) logging: core::sync::atomic::AtomicBool,
}

impl Shared {
    /// Largest regular file: the disk format's limit, else `MAX_FILE_SIZE`.
    pub(crate) fn max_file_size(&self) -> u64 {
        match &self.disk {
            Some(b) => b.disk.max_file_size().min(crate::inode::MAX_FILE_SIZE),
            None => crate::inode::MAX_FILE_SIZE,
        }
    }

    /// Whether writes are refused (a read-only disk mount).
    pub(crate) fn read_only(&self) -> bool {
        self.disk.as_ref().is_some_and(|b| b.disk.read_only())
    }

    /// (pages used, page bound, live inodes) of this superblock.
    pub(crate) fn usage(&self) -> (u64, u64, i64) {
        (
            self.used_pages.load(Ordering::Relaxed),
            self.max_pages,
            self.stats.inodes.read(),
        )
    }

    pub(crate) fn now(&self) -> Timespec {
        self.clock.now()
    }

    /// The global lock in `LockMode::Global`, nothing otherwise.
    pub(crate) fn big(&self) -> Option<crate::lockstat::Pinned<spin::MutexGuard<'_, ()>>> {
        match self.mode {
            LockMode::Global => Some(self.big.lock()),
            LockMode::PerCpu => None,
        }
    }

    /// A zeroed page charged to this file system, or `None` when the bound
    /// or the allocator is exhausted.
    pub(crate) fn alloc_zeroed_page(&self) -> Option<Page> {
        self.try_alloc_zeroed_page().or_else(|| {
            // Unlinked files may still wait for a grace period: free them
            // and try once more.
            self.rcu.flush();
            self.try_alloc_zeroed_page()
        })
    }

    fn try_alloc_zeroed_page(&self) -> Option<Page> {
        if self.used_pages.fetch_add(1, Ordering::Relaxed) >= self.max_pages {
            self.used_pages.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match self.pages.alloc_page() {
            Some(p) => {
                p.zero(0, PAGE_SIZE);
                Some(p)
            }
            None => {
                self.used_pages.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub(crate) fn free_page(&self, page: Page) {
        self.pages.free_page(page);
        self.used_pages.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Settings of a new file system.
#[derive(Clone, Copy, Debug)]
pub struct FsConfig {
    pub mode: LockMode,
    /// Bound on page-cache pages; past it writes fail with `ENOSPC`.
    pub max_pages: u64,
}

/// Device numbers of superblocks: Linux's anonymous devices (major 0),
/// handed out once each.
static NEXT_DEV: AtomicU64 = AtomicU64::new(0x1a);

/// Serialises mount and umount (rare; lookups never take it: they read
/// the per-inode mount links in their RCU section).
static MOUNT_TABLE: spin::Mutex<()> = spin::Mutex::new(());

/// A tmpfs instance (one superblock): a root directory and everything
/// reachable from it, plus whatever is mounted below it.
pub struct Fs {
    shared: &'static Shared,
    root: Arc<Inode>,
}

/// An inode reached by a walk: borrowed from a directory entry (valid for
/// the walk's read section) or owned (the start, `.`/`..` results).
enum Node<'g> {
    Ref(&'g Arc<Inode>),
    Own(Arc<Inode>),
}

impl Node<'_> {
    /// The inode as an owned reference (the one count a walk takes).
    fn into_arc(self) -> Arc<Inode> {
        match self {
            Node::Ref(a) => a.clone(),
            Node::Own(a) => a,
        }
    }
}

impl core::ops::Deref for Node<'_> {
    type Target = Arc<Inode>;
    fn deref(&self) -> &Arc<Inode> {
        match self {
            Node::Ref(a) => a,
            Node::Own(a) => a,
        }
    }
}

/// Result of resolving all but the last component of a path.
struct Parent<'p, D = Arc<Inode>> {
    dir: D,
    /// Last component; `None` when the path names the start or root itself
    /// (e.g. "/").
    last: Option<&'p str>,
    trailing_slash: bool,
}

impl Fs {
    /// A new, empty file system whose root directory has mode 0755.
    pub fn new(config: FsConfig, pages: Arc<dyn PageAlloc>, clock: Arc<dyn Clock>) -> Fs {
        let big: &'static Mutex<()> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Mutex::new(LockClass::Global, ())));
        let rcu: &'static Rcu<Entry> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Rcu::new(config.mode)));
        Self::with_big(config, pages, clock, big, rcu, None).expect("a tmpfs root")
    }

    /// A namespace whose root is the ext2 image on `dev` (`root=/dev/vda`).
    pub fn new_ext2(
        config: FsConfig,
        pages: Arc<dyn PageAlloc>,
        clock: Arc<dyn Clock>,
        dev: Arc<dyn crate::block::BlockDevice>,
        read_only: bool,
    ) -> Result<Fs, crate::ext2::MountError> {
        let big: &'static Mutex<()> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Mutex::new(LockClass::Global, ())));
        let rcu: &'static Rcu<Entry> =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Rcu::new(config.mode)));
        crate::ext2::check_unused(&dev)?;
        let disk = crate::ext2::Ext2::open(dev, read_only)?;
        Self::with_big(config, pages, clock, big, rcu, Some(disk))
    }

    /// A superblock for the ext2 image on `dev`, for mounting below this
    /// one (like `new_mount`); its page cache may hold `max_pages` pages.
    /// Refuses images with unknown incompatible features (`EINVAL`, with
    /// the reason) and a device that is already mounted (`EBUSY`: the
    /// kernel keeps one superblock per device); mounts read-only when `read_only`, when the device is,
    /// or when the image has unknown read-only-compatible features.
    pub fn new_ext2_mount(
        &self,
        dev: Arc<dyn crate::block::BlockDevice>,
        read_only: bool,
        max_pages: u64,
    ) -> Result<Fs, crate::ext2::MountError> {
        let config = FsConfig {
            mode: self.shared.mode,
            max_pages,
        };
        crate::ext2::check_unused(&dev)?;
        let disk = crate::ext2::Ext2::open(dev, read_only)?;
        Self::with_big(
            config,
            self.shared.pages.clone(),
            self.shared.clock.clone(),
            self.shared.big,
            self.shared.rcu,
            Some(disk),
        )
    }

    /// Whether this superblock refuses writes.
    pub fn read_only(&self) -> bool {
        self.shared.read_only()
    }

    /// Writes back this superblock (a disk file system): dirty file data
    /// and attributes, free counts, every dirty block, then a device
    /// flush.  Nothing to do for tmpfs.
    pub fn sync(&self) -> FsResult<()> {
        crate::ext2::sync_shared(self.shared)
    }

    /// The per-CPU flusher's step for this superblock: writes the inodes
    /// dirtied on this CPU into the block cache and the cache's dirty
    /// blocks to the device, without waiting for a device flush.
    pub fn write_back_local(&self) -> FsResult<()> {
        crate::ext2::write_back_local(self.shared)
    }

    /// Final write-back of a superblock that is not mounted below another
    /// (a disk namespace root at shutdown): `sync`, then the image is
    /// marked cleanly unmounted.
    pub fn umount_root(&self) -> FsResult<()> {
        crate::ext2::unmount_shared(self.shared)
    }

    /// The block cache of a disk superblock (statistics, tests).
    pub fn block_cache(&self) -> Option<&crate::block::BlockCache> {
        self.shared.disk.as_ref().map(|b| b.disk.cache())
    }

    /// Another superblock for mounting below this one: same lock mode,
    /// page allocator and clock, and the same global lock (so
    /// `LockMode::Global` stays one lock), its own device number, inode
    /// numbers and page bound.
    pub fn new_mount(&self, max_pages: u64) -> Fs {
        let config = FsConfig {
            mode: self.shared.mode,
            max_pages,
        };
        Self::with_big(
            config,
            self.shared.pages.clone(),
            self.shared.clock.clone(),
            self.shared.big,
            self.shared.rcu,
            None,
        )
        .expect("a tmpfs root")
    }

    /// Like `new_mount`, with a generated root directory (`synth`):
    /// `provider` answers every name in it, with `key` for the root.
    pub fn new_generated_mount(&self, provider: Arc<dyn crate::synth::Provider>, key: u64) -> Fs {
        let plain = self.new_mount(0);
        let gen = crate::synth::Gen { provider, key };
        let root = plain.root.gen_dir(1, 0o555, gen);
        // The root is its own parent, as `Inode::new` makes a root.
        if let Ok(d) = root.dir() {
            *d.parent.write() = Arc::downgrade(&root);
        }
        Fs {
            shared: plain.shared,
            root,
        }
    }

    fn with_big(
        config: FsConfig,
        pages: Arc<dyn PageAlloc>,
        clock: Arc<dyn Clock>,
        big: &'static Mutex<()>,
        rcu: &'static Rcu<Entry>,
        disk: Option<crate::ext2::Ext2>,
    ) -> Result<Fs, crate::ext2::MountError> {
        let shared: &'static Shared = alloc::boxed::Box::leak(alloc::boxed::Box::new(Shared {
            mode: config.mode,
            pages,
            clock,
            max_pages: config.max_pages,
            used_pages: CachePadded::new(AtomicU64::new(0)),
            write_epoch_base: AtomicU64::new(0),
            ino: InoAlloc::new(config.mode, 2),
            dev: NEXT_DEV.fetch_add(1, Ordering::Relaxed),
            big,
            rename: Mutex::new(LockClass::Rename, ()),
            stats: alloc::boxed::Box::new(OpStats {
                lookups: PerCpuCounter::new(),
                creates: PerCpuCounter::new(),
                unlinks: PerCpuCounter::new(),
                renames: PerCpuCounter::new(),
                reads: PerCpuCounter::new(),
                writes: PerCpuCounter::new(),
                inodes: SloppyCounter::new(64),
            }),
            rcu,
            disk: disk.map(crate::ext2::Backing::new),
            mounts_below: AtomicU64::new(0),
            changes: spin::Mutex::new(alloc::vec::Vec::new()),
            logging: core::sync::atomic::AtomicBool::new(false),
        }));
        let root = match &shared.disk {
            None => Inode::new(shared, FileType::Directory, 0o755, 0, None, None, None),
            Some(b) => {
                let root = b
                    .inode(shared, crate::ext2::disk::ROOT_INO, None)
                    .map_err(|e| crate::ext2::MountError {
                        errno: e,
                        reason: "cannot read the root directory",
                    })?;
                b.root.call_once(|| Arc::downgrade(&root));
                crate::ext2::register(shared);
                root
            }
        };
        Ok(Fs { shared, root })
    }

    pub fn root(&self) -> Arc<Inode> {
        self.root.clone()
    }

    /// The root, borrowed: path walks from `/` start here without touching
    /// the root's reference count (a line every core would write).
    pub fn root_ref(&self) -> &Arc<Inode> {
        &self.root
    }

    /// The time the file system's clock gives now.
    pub fn now(&self) -> Timespec {
        self.shared.now()
    }

    pub fn mode(&self) -> LockMode {
        self.shared.mode
    }

    /// Runs `create` (which must make exactly one inode) so that the new
    /// inode gets number `ino`; numbers handed out later are all above
    /// it.  For a file server rebuilding a namespace from a state image
    /// (`fsd::handover`) before it serves anyone: the caller makes sure
    /// no other creation runs meanwhile and that `ino` is not in use.
    pub fn with_ino<R>(&self, ino: u64, create: impl FnOnce() -> R) -> R {
        self.shared.ino.force(ino);
        let r = create();
        self.shared.ino.force(0);
        r
    }

    /// Makes regular files created from now on start their write-grant
    /// epoch (`Inode::grant_write`, `commit_write`) at `base`.  A file
    /// server that takes over another instance's namespace sets a base
    /// the old instance never reached, so that a `commit_write` carrying
    /// an epoch the old instance granted fails with `EAGAIN` here instead
    /// of committing bytes that were copied into the old instance's page.
    pub fn set_write_epoch_base(&self, base: u64) {
        self.shared
            .write_epoch_base
            .store(base, core::sync::atomic::Ordering::Relaxed);
    }

    /// Starts logging changes: from now on every inode whose metadata,
    /// directory entries or data change is recorded until
    /// [`Fs::take_changes`] with `stop`.  A change that completed before
    /// this call is not logged (a walk started after it sees it).
    pub fn start_change_log(&self) {
        self.shared.changes.lock().clear();
        self.shared
            .logging
            .store(true, core::sync::atomic::Ordering::SeqCst);
    }

    /// The inodes changed since [`Fs::start_change_log`] (or the last
    /// take), each once, those that are gone left out; `stop` ends the
    /// log.
    pub fn take_changes(&self, stop: bool) -> alloc::vec::Vec<Arc<Inode>> {
        if stop {
            self.shared
                .logging
                .store(false, core::sync::atomic::Ordering::SeqCst);
        }
        let log = core::mem::take(&mut *self.shared.changes.lock());
        let mut seen = alloc::collections::BTreeSet::new();
        log.iter()
            .filter_map(alloc::sync::Weak::upgrade)
            .filter(|i| seen.insert(i.ino()))
            .collect()
    }

    /// This superblock's device number (`st_dev` of its inodes).
    pub fn dev(&self) -> u64 {
        self.shared.dev
    }

    /// Mounts `child` on the directory `path` (resolved from `start`,
    /// crossing existing mounts).  `EBUSY` if something is mounted there
    /// already (no stacking) or `child` was mounted before; `ENOTDIR` if
    /// it is not a directory.
    pub fn mount(&self, start: &Arc<Inode>, path: &str, child: &Fs) -> FsResult<()> {
        let _big = self.shared.big();
        let point = self.walk(start, path, true, &mut 0)?;
        let pd = point.dir_body().ok_or(Errno::ENOTDIR)?;
        let cd = child.root.dir_body().ok_or(Errno::ENOTDIR)?;
        if pd.dead.load(Ordering::Acquire) {
            return Err(Errno::ENOENT);
        }
        let _table = MOUNT_TABLE.lock();
        // No stacking: not on the namespace root, not on a mounted root,
        // and each superblock is mounted once.
        if Arc::ptr_eq(&point, &self.root)
            || pd.covers.read().is_some()
            || cd.covers.read().is_some()
            || !pd.mounted.is_empty()
        {
            return Err(Errno::EBUSY);
        }
        // Record the child's side first: once the point is flagged, a
        // concurrent `..` from the child root must find its way back.
        *cd.covers.write() = Some(Arc::downgrade(&point));
        pd.mounted.publish(child.root.clone());
        point.shared.mounts_below.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Unmounts the file system whose root `path` names (resolved from
    /// `start`, following symlinks, as `umount2` without flags): `EINVAL`
    /// if it is not a mount's root, `EBUSY` if something is mounted below
    /// it or any of its inodes is in use (an open file, a working
    /// directory, a mapping: any reference besides the tree's own).  A
    /// disk file system is written back and marked clean first (its
    /// error, e.g. `EIO`, fails the umount).  The superblock stays usable
    /// by its owner (`child` of `mount`) but is no longer reachable.
    pub fn umount(&self, start: &Arc<Inode>, path: &str) -> FsResult<()> {
        let _big = self.shared.big();
        let root = self.walk(start, path, true, &mut 0)?;
        let rd = root.dir_body().ok_or(Errno::EINVAL)?;
        let _table = MOUNT_TABLE.lock();
        let point = match rd.covered() {
            Some(p) => p,
            None => return Err(Errno::EINVAL),
        };
        if root.shared.mounts_below.load(Ordering::Relaxed) != 0 {
            return Err(Errno::EBUSY);
        }
        // Entries retired by unlink still hold inodes: free them first.
        self.shared.rcu.flush();
        // The walk's own reference to the root is the one extra we hold.
        if Self::busy(&root, 1) {
            return Err(Errno::EBUSY);
        }
        crate::ext2::unmount_shared(root.shared)?;
        let pd = point.dir_body().ok_or(Errno::EINVAL)?;
        pd.mounted.retire(self.shared);
        *rd.covers.write() = None;
        point.shared.mounts_below.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether any inode of the tree under mounted root `root` is
    /// referenced from outside the tree (beyond `extra` references to the
    /// root held by the caller, the superblock and the mount table).
    fn busy(root: &Arc<Inode>, extra: usize) -> bool {
        use alloc::collections::BTreeMap;
        // Expected references: one per directory entry naming an inode,
        // plus, for the root, the `Fs` and the mount-table entry.
        let mut names: BTreeMap<usize, (Arc<Inode>, usize)> = BTreeMap::new();
        let key = |n: &Arc<Inode>| Arc::as_ptr(n) as usize;
        names.insert(key(root), (root.clone(), 2 + extra));
        let mut stack = alloc::vec![root.clone()];
        let mut seen = alloc::collections::BTreeSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(key(&n)) {
                continue;
            }
            if let Some(d) = n.dir_body() {
                if !d.mounted.is_empty() {
                    return true;
                }
                for b in d.buckets() {
                    let g = b.write(n.shared);
                    for e in g.iter() {
                        names
                            .entry(key(&e.inode))
                            .or_insert_with(|| (e.inode.clone(), 0))
                            .1 += 1;
                        stack.push(e.inode.clone());
                    }
                }
            }
        }
        drop(stack);
        // Each `names` value holds one more reference itself.
        names
            .values()
            .any(|(n, expected)| Arc::strong_count(n) > expected + 1)
    }

    /// Runs an RCU grace period and frees the directory entries retired
    /// by unlink/rename/rmdir so far (and the inodes only they held).  The
    /// file system does this by itself in batches and when memory runs
    /// short; tests call it before counting live inodes.
    pub fn flush_deferred(&self) {
        self.shared.rcu.flush();
    }

    pub fn stats(&self) -> FsStats {
        let s = &self.shared.stats;
        FsStats {
            lookups: s.lookups.sum(),
            creates: s.creates.sum(),
            unlinks: s.unlinks.sum(),
            renames: s.renames.sum(),
            reads: s.reads.sum(),
            writes: s.writes.sum(),
            live_inodes: s.inodes.sum(),
            used_pages: self.shared.used_pages.load(Ordering::Relaxed),
            max_pages: self.shared.max_pages,
        }
    }

    // ---- path resolution -------------------------------------------------
    //
    // A walk runs inside one RCU read section (`ReadGuard`): each step
    // finds the next component without a lock and borrows its inode from
    // the directory entry (valid until the section ends), so walking
    // through hot directories such as `/tmp` touches no reference count.
    // Only the result leaves the section as an `Arc`.

    /// One step from directory `dir` to `name` ("." and ".." included).
    fn step<'g>(&self, rcu: &'g ReadGuard<'_>, dir: &Arc<Inode>, name: &str) -> FsResult<Node<'g>> {
        let d = dir.dir()?;
        match name {
            "." => Ok(Node::Own(dir.clone())),
            ".." => {
                // From the root of a mounted superblock, `..` leaves it
                // through the mount point; the namespace root stays put.
                let mut here = dir.clone();
                while let Some(point) = here.dir_body().and_then(|d| d.covered()) {
                    here = point;
                }
                Ok(Node::Own(here.parent().unwrap_or(here)))
            }
            _ => match (d.lookup(rcu, name), &d.gen) {
                (Some(node), _) => Ok(Node::Ref(Self::cross(rcu, node))),
                (None, Some(g)) => Ok(Node::Own(g.provider.lookup(dir, g.key, name)?)),
                (None, None) => Err(Errno::ENOENT),
            },
        }
    }

    /// The root of what is mounted on `node`, or `node` itself.
    fn cross<'g>(rcu: &'g ReadGuard<'_>, mut node: &'g Arc<Inode>) -> &'g Arc<Inode> {
        while let Some(root) = node.dir_body().and_then(|d| d.mounted_in(rcu)) {
            node = root;
        }
        node
    }

    /// `walk_parent_in` in its own read section, with an owned result.
    fn walk_parent<'p>(
        &self,
        start: &Arc<Inode>,
        path: &'p str,
        links: &mut u32,
    ) -> FsResult<Parent<'p>> {
        let rcu = self.shared.rcu.read();
        let p = self.walk_parent_in(&rcu, start, path, links)?;
        Ok(Parent {
            dir: p.dir.into_arc(),
            last: p.last,
            trailing_slash: p.trailing_slash,
        })
    }

    fn walk_parent_in<'p, 'g>(
        &'g self,
        rcu: &'g ReadGuard<'_>,
        start: &Arc<Inode>,
        path: &'p str,
        links: &mut u32,
    ) -> FsResult<Parent<'p, Node<'g>>> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        // The root is borrowed (it lives as long as the `Fs`): absolute
        // walks touch no reference count until their result.
        let mut cur = if path.starts_with('/') {
            Node::Ref(&self.root)
        } else {
            Node::Own(start.clone())
        };
        if !cur.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let trailing_slash = path.ends_with('/');
        let mut comps = path.split('/').filter(|c| !c.is_empty()).peekable();
        while let Some(comp) = comps.next() {
            if comp.len() > NAME_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            if comps.peek().is_none() {
                return Ok(Parent {
                    dir: cur,
                    last: Some(comp),
                    trailing_slash,
                });
            }
            let next = self.step(rcu, &cur, comp)?;
            cur = self.follow_in(rcu, &cur, next, links)?;
            if !cur.is_dir() {
                return Err(Errno::ENOTDIR);
            }
        }
        Ok(Parent {
            dir: cur,
            last: None,
            trailing_slash,
        })
    }

    /// If `node` (found in `dir`) is a symlink, resolves it fully.
    fn follow_in<'g>(
        &'g self,
        rcu: &'g ReadGuard<'_>,
        dir: &Arc<Inode>,
        node: Node<'g>,
        links: &mut u32,
    ) -> FsResult<Node<'g>> {
        if let Some(target) = node.magic_target() {
            *links += 1;
            if *links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            return Ok(Node::Own(target.clone()));
        }
        match node.symlink_target() {
            None => Ok(node),
            Some(target) => {
                *links += 1;
                if *links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = String::from(target);
                self.walk_in(rcu, dir, &target, true, links)
            }
        }
    }

    /// `follow_in` in its own read section, with an owned result.
    fn follow(&self, dir: &Arc<Inode>, node: Arc<Inode>, links: &mut u32) -> FsResult<Arc<Inode>> {
        let rcu = self.shared.rcu.read();
        Ok(self
            .follow_in(&rcu, dir, Node::Own(node), links)?
            .into_arc())
    }

    /// One lookup of `name` in `dir`, in its own read section.
    fn step_owned(&self, dir: &Arc<Inode>, name: &str) -> FsResult<Arc<Inode>> {
        let rcu = self.shared.rcu.read();
        Ok(self.step(&rcu, dir, name)?.into_arc())
    }

    /// `walk_in` in its own read section, with an owned result.
    fn walk(
        &self,
        start: &Arc<Inode>,
        path: &str,
        follow_last: bool,
        links: &mut u32,
    ) -> FsResult<Arc<Inode>> {
        let rcu = self.shared.rcu.read();
        Ok(self
            .walk_in(&rcu, start, path, follow_last, links)?
            .into_arc())
    }

    fn walk_in<'g>(
        &'g self,
        rcu: &'g ReadGuard<'_>,
        start: &Arc<Inode>,
        path: &str,
        follow_last: bool,
        links: &mut u32,
    ) -> FsResult<Node<'g>> {
        let p = self.walk_parent_in(rcu, start, path, links)?;
        let Some(last) = p.last else { return Ok(p.dir) };
        let node = self.step(rcu, &p.dir, last)?;
        let node = if follow_last || p.trailing_slash {
            self.follow_in(rcu, &p.dir, node, links)?
        } else {
            node
        };
        if p.trailing_slash && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    /// Resolves `path` relative to directory `start` (absolute paths start
    /// at the root), following a final symlink when `follow` is true.
    pub fn lookup(&self, start: &Arc<Inode>, path: &str, follow: bool) -> FsResult<Arc<Inode>> {
        let _big = self.shared.big();
        self.shared.stats.lookups.inc();
        self.walk(start, path, follow, &mut 0)
    }

    /// `stat` of what `path` names, read inside the walk's read section:
    /// unlike `lookup(..).stat()`, no reference to the result is taken, so
    /// stat of a file every core looks at writes no shared line.
    pub fn stat_path(&self, start: &Arc<Inode>, path: &str, follow: bool) -> FsResult<Stat> {
        let _big = self.shared.big();
        self.shared.stats.lookups.inc();
        let rcu = self.shared.rcu.read();
        let node = self.walk_in(&rcu, start, path, follow, &mut 0)?;
        Ok(node.stat())
    }

    /// Opens (and with `O_CREAT` creates) `path`.  `perm` is the mode for a
    /// new file, already masked by the caller's umask.  Applies `O_EXCL`,
    /// `O_DIRECTORY`, `O_NOFOLLOW` and `O_TRUNC`; the open-file state
    /// (offset, `O_APPEND`) belongs to the caller.
    pub fn open(
        &self,
        start: &Arc<Inode>,
        path: &str,
        flags: u32,
        perm: u32,
    ) -> FsResult<Arc<Inode>> {
        let _big = self.shared.big();
        self.shared.stats.lookups.inc();
        let mut links = 0;
        let node = if flags & O_CREAT != 0 {
            let p = self.walk_parent(start, path, &mut links)?;
            let last = match p.last {
                None | Some(".") | Some("..") => return Err(Errno::EISDIR),
                Some(l) => l,
            };
            if p.trailing_slash {
                return Err(Errno::EISDIR);
            }
            loop {
                match self.step_owned(&p.dir, last) {
                    Ok(_) if flags & O_EXCL != 0 => return Err(Errno::EEXIST),
                    Ok(n) if n.kind() == FileType::Symlink => {
                        if flags & O_NOFOLLOW != 0 {
                            return Err(Errno::ELOOP);
                        }
                        break self.follow(&p.dir, n, &mut links)?;
                    }
                    Ok(n) => break n,
                    Err(e) if e == Errno::ENOENT => {
                        match self.insert_new(&p.dir, last, FileType::Regular, perm, 0, None) {
                            Ok(n) => break n,
                            Err(e) if e == Errno::EEXIST && flags & O_EXCL == 0 => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        } else {
            let n = self.walk(start, path, flags & O_NOFOLLOW == 0, &mut links)?;
            if n.kind() == FileType::Symlink && flags & O_PATH == 0 {
                return Err(Errno::ELOOP);
            }
            n
        };
        if flags & O_DIRECTORY != 0 && !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let acc = flags & O_ACCMODE;
        if node.is_dir() && (acc != O_RDONLY || flags & O_CREAT != 0) {
            return Err(Errno::EISDIR);
        }
        if acc != O_RDONLY && node.kind() == FileType::Regular {
            node.writable()?;
        }
        if flags & O_TRUNC != 0 && acc != O_RDONLY && node.kind() == FileType::Regular {
            drop(_big);
            node.truncate(0)?;
        }
        Ok(node)
    }

    /// Inserts a new inode named `name` into `dir`.
    fn insert_new(
        &self,
        dir: &Arc<Inode>,
        name: &str,
        kind: FileType,
        perm: u32,
        rdev: u64,
        target: Option<String>,
    ) -> FsResult<Arc<Inode>> {
        let d = dir.dir()?;
        if d.gen.is_some() {
            return Err(Errno::EACCES);
        }
        let mut bucket = d.bucket(name).write(dir.shared);
        if d.dead.load(Ordering::Acquire) {
            return Err(Errno::ENOENT);
        }
        if bucket.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        // The new inode belongs to the superblock of its directory; on a
        // disk it is made there first, which gives its number.
        let ino = match &dir.shared.disk {
            None => None,
            Some(b) => Some(b.disk.create(
                dir.ino() as u32,
                name,
                crate::ext2::disk_mode(kind, perm),
                0,
                0,
                rdev,
                target.as_deref(),
                dir.shared.now(),
            )? as u64),
        };
        let node = Inode::new(dir.shared, kind, perm, rdev, Some(dir), target, ino);
        if let Some(b) = &dir.shared.disk {
            b.remember(&node);
            // Its times and owner as the VFS set them reach the disk.
            node.mark_dirty();
        }
        let replaced = bucket.insert(name, node.clone());
        debug_assert!(replaced.is_none(), "checked under the same lock");
        d.entries.fetch_add(1, Ordering::Relaxed);
        drop(bucket);
        self.shared.stats.creates.inc();
        if kind == FileType::Directory {
            dir.add_nlink(1);
        }
        dir.touch_modified();
        Ok(node)
    }

    /// Resolves the parent of a path that must name a new entry.
    fn new_entry<'p>(&self, start: &Arc<Inode>, path: &'p str) -> FsResult<(Arc<Inode>, &'p str)> {
        let p = self.walk_parent(start, path, &mut 0)?;
        match p.last {
            None | Some(".") | Some("..") => Err(Errno::EEXIST),
            Some(l) => Ok((p.dir, l)),
        }
    }

    /// `mkdir`: `perm` already masked by the umask.
    pub fn mkdir(&self, start: &Arc<Inode>, path: &str, perm: u32) -> FsResult<Arc<Inode>> {
        let _big = self.shared.big();
        let (dir, name) = self.new_entry(start, path)?;
        self.insert_new(&dir, name, FileType::Directory, perm, 0, None)
    }

    /// `mknod` of a device node or FIFO (or regular file).
    pub fn mknod(
        &self,
        start: &Arc<Inode>,
        path: &str,
        kind: FileType,
        perm: u32,
        rdev: u64,
    ) -> FsResult<Arc<Inode>> {
        let _big = self.shared.big();
        if kind == FileType::Directory || kind == FileType::Symlink {
            return Err(Errno::EINVAL);
        }
        let p = self.walk_parent(start, path, &mut 0)?;
        match p.last {
            None | Some(".") | Some("..") => Err(Errno::EEXIST),
            Some(_) if p.trailing_slash => Err(Errno::ENOENT),
            Some(l) => self.insert_new(&p.dir, l, kind, perm, rdev, None),
        }
    }

    /// `symlink(target, path)`.
    pub fn symlink(&self, target: &str, start: &Arc<Inode>, path: &str) -> FsResult<Arc<Inode>> {
        let _big = self.shared.big();
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let p = self.walk_parent(start, path, &mut 0)?;
        match p.last {
            None | Some(".") | Some("..") => Err(Errno::EEXIST),
            Some(_) if p.trailing_slash => Err(Errno::ENOENT),
            Some(l) => self.insert_new(
                &p.dir,
                l,
                FileType::Symlink,
                0o777,
                0,
                Some(String::from(target)),
            ),
        }
    }

    /// `readlink`.
    pub fn readlink(&self, start: &Arc<Inode>, path: &str) -> FsResult<String> {
        let n = self.lookup(start, path, false)?;
        n.symlink_target().map(String::from).ok_or(Errno::EINVAL)
    }

    /// `link(old, new)`; `follow` says whether a final symlink in `old` is
    /// followed (`AT_SYMLINK_FOLLOW`).
    pub fn link(
        &self,
        old_start: &Arc<Inode>,
        old: &str,
        new_start: &Arc<Inode>,
        new: &str,
        follow: bool,
    ) -> FsResult<()> {
        let _big = self.shared.big();
        let target = self.walk(old_start, old, follow, &mut 0)?;
        if target.is_dir() {
            return Err(Errno::EPERM);
        }
        let p = self.walk_parent(new_start, new, &mut 0)?;
        let name = match p.last {
            None | Some(".") | Some("..") => return Err(Errno::EEXIST),
            Some(l) => l,
        };
        if p.trailing_slash {
            return Err(Errno::ENOENT);
        }
        if !core::ptr::eq(target.shared, p.dir.shared) {
            if self.step_owned(&p.dir, name).is_ok() {
                return Err(Errno::EEXIST);
            }
            return Err(Errno::EXDEV);
        }
        let d = p.dir.dir()?;
        let mut bucket = d.bucket(name).write(p.dir.shared);
        if d.dead.load(Ordering::Acquire) {
            return Err(Errno::ENOENT);
        }
        if bucket.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        if target.nlink() == 0 {
            return Err(Errno::ENOENT);
        }
        if let Some(b) = &p.dir.shared.disk {
            b.disk.link(p.dir.ino() as u32, name, target.ino() as u32)?;
        }
        {
            let mut m = target.meta.write();
            m.nlink += 1;
            m.ctime = self.shared.now();
            target.mark_dirty();
        }
        let replaced = bucket.insert(name, target);
        debug_assert!(replaced.is_none(), "checked under the same lock");
        d.entries.fetch_add(1, Ordering::Relaxed);
        drop(bucket);
        p.dir.touch_modified();
        Ok(())
    }

    /// `unlink`: removes a non-directory entry.  An open file lives on
    /// until its last reference is dropped.
    pub fn unlink(&self, start: &Arc<Inode>, path: &str) -> FsResult<()> {
        let _big = self.shared.big();
        let p = self.walk_parent(start, path, &mut 0)?;
        let name = match p.last {
            None | Some(".") | Some("..") => return Err(Errno::EISDIR),
            Some(l) => l,
        };
        let d = p.dir.dir()?;
        let mut bucket = d.bucket(name).write(p.dir.shared);
        let node = bucket.get(name).ok_or(Errno::ENOENT)?;
        if node.is_dir() {
            return Err(Errno::EISDIR);
        }
        if p.trailing_slash {
            return Err(Errno::ENOTDIR);
        }
        if let Some(b) = &p.dir.shared.disk {
            b.disk.unlink(p.dir.ino() as u32, name, false)?;
        }
        let gone = bucket.remove(name).expect("entry seen under the same lock");
        d.entries.fetch_sub(1, Ordering::Relaxed);
        drop(bucket);
        self.shared.stats.unlinks.inc();
        gone.inode().add_nlink(-1);
        p.dir.touch_modified();
        // Freed after a grace period (may run one: no lock is held).
        drop(gone);
        Ok(())
    }

    /// Tries to write-lock every bucket of directory `victim` and checks it
    /// is empty; on success marks it dead.  `Err(EAGAIN)` means a bucket was
    /// busy: the caller releases its own locks and retries.
    fn kill_empty_dir(victim: &Inode) -> FsResult<()> {
        let d = victim.dir()?;
        /// Releases the bucket guards newest first (pins nest).
        struct Lifo<G>(Vec<G>);
        impl<G> Drop for Lifo<G> {
            fn drop(&mut self) {
                while let Some(g) = self.0.pop() {
                    drop(g);
                }
            }
        }
        let mut guards = Lifo(Vec::with_capacity(crate::inode::DIR_BUCKETS));
        for b in d.buckets() {
            match b.try_write(victim.shared) {
                Some(g) => guards.0.push(g),
                None => return Err(Errno::EAGAIN),
            }
        }
        if guards.0.iter().any(|g| !g.is_empty()) {
            return Err(Errno::ENOTEMPTY);
        }
        d.dead.store(true, Ordering::Release);
        Ok(())
    }

    /// `rmdir`.
    pub fn rmdir(&self, start: &Arc<Inode>, path: &str) -> FsResult<()> {
        let _big = self.shared.big();
        let p = self.walk_parent(start, path, &mut 0)?;
        let name = match p.last {
            None => return Err(Errno::EBUSY),
            Some(".") => return Err(Errno::EINVAL),
            Some("..") => return Err(Errno::ENOTEMPTY),
            Some(l) => l,
        };
        let d = p.dir.dir()?;
        let (node, gone) = loop {
            let mut bucket = d.bucket(name).write(p.dir.shared);
            let node = bucket.get(name).ok_or(Errno::ENOENT)?.clone();
            if !node.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if node.mounted_root().is_some() {
                return Err(Errno::EBUSY);
            }
            match Self::kill_empty_dir(&node) {
                Ok(()) => {
                    if let Some(b) = &p.dir.shared.disk {
                        if let Err(e) = b.disk.unlink(p.dir.ino() as u32, name, true) {
                            node.dir()?.dead.store(false, Ordering::Release);
                            return Err(e);
                        }
                    }
                    let gone = bucket.remove(name);
                    d.entries.fetch_sub(1, Ordering::Relaxed);
                    break (node, gone);
                }
                Err(e) if e == Errno::EAGAIN => {
                    drop(bucket);
                    core::hint::spin_loop();
                }
                Err(e) => return Err(e),
            }
        };
        self.shared.stats.unlinks.inc();
        node.set_nlink(0);
        p.dir.add_nlink(-1);
        p.dir.touch_modified();
        drop(gone);
        Ok(())
    }

    /// `rename(old, new)` with POSIX semantics: atomic replacement of an
    /// existing target, `EINVAL` when moving a directory into its own
    /// subtree, `EISDIR`/`ENOTDIR`/`ENOTEMPTY` for mismatched targets, and
    /// nothing at all when both names are links to the same inode.
    pub fn rename(
        &self,
        old_start: &Arc<Inode>,
        old: &str,
        new_start: &Arc<Inode>,
        new: &str,
    ) -> FsResult<()> {
        self.rename_with(old_start, old, new_start, new, RenameMode::Replace)
    }

    /// `renameat2`: `rename` with Linux's flags (`RenameMode`).  With
    /// `NoReplace` an existing target (even a link to the source) gives
    /// `EEXIST`; with `Exchange` both names must exist and swap atomically
    /// (each name always names one of the two inodes for a lock-free
    /// lookup).
    pub fn rename_with(
        &self,
        old_start: &Arc<Inode>,
        old: &str,
        new_start: &Arc<Inode>,
        new: &str,
        mode: RenameMode,
    ) -> FsResult<()> {
        let _big = self.shared.big();
        let op = self.walk_parent(old_start, old, &mut 0)?;
        let np = self.walk_parent(new_start, new, &mut 0)?;
        let (oname, nname) = match (op.last, np.last) {
            (Some(o), Some(n)) if o != "." && o != ".." && n != "." && n != ".." => (o, n),
            _ => return Err(Errno::EBUSY),
        };
        let (odir, ndir) = (op.dir.dir()?, np.dir.dir()?);
        // Like Linux, the superblocks are compared before the names are
        // looked up.
        if !core::ptr::eq(op.dir.shared, np.dir.shared) {
            return Err(Errno::EXDEV);
        }
        let cross = !Arc::ptr_eq(&op.dir, &np.dir);
        // Cross-directory renames are serialized so the subtree check below
        // sees a tree no other rename is changing.
        let _rename = if cross {
            Some(self.shared.rename.lock())
        } else {
            None
        };
        self.shared.stats.renames.inc();
        loop {
            let ob = odir.bucket(oname);
            let nb = ndir.bucket(nname);
            let same = core::ptr::eq(ob, nb);
            // Two buckets: lock in address order.
            let old_first = (ob as *const _ as usize) <= (nb as *const _ as usize);
            // Guards are held in acquisition order (`first`, then
            // `second`), so leaving scope releases them in reverse.
            let sh = op.dir.shared;
            let mut first = if old_first {
                ob.write(sh)
            } else {
                nb.write(sh)
            };
            let mut second = if same {
                None
            } else if old_first {
                Some(nb.write(sh))
            } else {
                Some(ob.write(sh))
            };
            // `g1` is the old bucket; `g2` the new one, `None` when the same.
            let (g1, mut g2) = match &mut second {
                None => (&mut first, None),
                Some(s) if old_first => (&mut first, Some(s)),
                Some(s) => (s, Some(&mut first)),
            };
            let src = g1.get(oname).cloned().ok_or(Errno::ENOENT)?;
            if src.mounted_root().is_some() {
                return Err(Errno::EBUSY);
            }
            if ndir.dead.load(Ordering::Acquire) {
                return Err(Errno::ENOENT);
            }
            if !src.is_dir() && (op.trailing_slash || np.trailing_slash) {
                return Err(Errno::ENOTDIR);
            }
            if src.is_dir() && cross {
                // `np.dir` must not be `src` or below it.
                let mut cur = np.dir.clone();
                loop {
                    if Arc::ptr_eq(&cur, &src) {
                        return Err(Errno::EINVAL);
                    }
                    match cur.parent() {
                        Some(parent) if !Arc::ptr_eq(&parent, &cur) => cur = parent,
                        _ => break,
                    }
                }
            }
            let dst = match &g2 {
                Some(g) => g.get(nname).cloned(),
                None => g1.get(nname).cloned(),
            };
            match (mode, &dst) {
                (RenameMode::NoReplace, Some(_)) => return Err(Errno::EEXIST),
                (RenameMode::Exchange, None) => return Err(Errno::ENOENT),
                (RenameMode::Exchange, Some(dst)) => {
                    if Arc::ptr_eq(dst, &src) {
                        return Ok(());
                    }
                    if dst.mounted_root().is_some() {
                        return Err(Errno::EBUSY);
                    }
                    if dst.is_dir() && cross {
                        // `op.dir` must not be `dst` or below it.
                        let mut cur = op.dir.clone();
                        loop {
                            if Arc::ptr_eq(&cur, dst) {
                                return Err(Errno::EINVAL);
                            }
                            match cur.parent() {
                                Some(parent) if !Arc::ptr_eq(&parent, &cur) => cur = parent,
                                _ => break,
                            }
                        }
                    }
                    if let Some(b) = &sh.disk {
                        b.disk
                            .exchange(op.dir.ino() as u32, oname, np.dir.ino() as u32, nname)?;
                    }
                    // Each insert replaces the other inode: both names
                    // exist throughout.
                    let out_new = match &mut g2 {
                        Some(g) => g.insert(nname, src.clone()),
                        None => g1.insert(nname, src.clone()),
                    };
                    let out_old = g1.insert(oname, dst.clone());
                    drop(second);
                    drop(first);
                    drop(out_new);
                    drop(out_old);
                    if cross {
                        for (node, from, to) in [(&src, &op.dir, &np.dir), (dst, &np.dir, &op.dir)]
                        {
                            if node.is_dir() {
                                *node.dir()?.parent.write() = Arc::downgrade(to);
                                from.add_nlink(-1);
                                to.add_nlink(1);
                            }
                        }
                    }
                    src.touch_ctime();
                    dst.touch_ctime();
                    op.dir.touch_modified();
                    if cross {
                        np.dir.touch_modified();
                    }
                    return Ok(());
                }
                _ => {}
            }
            if let Some(dst) = &dst {
                if Arc::ptr_eq(dst, &src) {
                    return Ok(());
                }
                if dst.mounted_root().is_some() {
                    return Err(Errno::EBUSY);
                }
                match (src.is_dir(), dst.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    // The target is the source's own parent: not empty
                    // (and its bucket is one we hold).
                    (true, true) if Arc::ptr_eq(dst, &op.dir) => return Err(Errno::ENOTEMPTY),
                    (true, true) => match Self::kill_empty_dir(dst) {
                        Ok(()) => {}
                        Err(e) if e == Errno::EAGAIN => {
                            drop(second);
                            drop(first);
                            core::hint::spin_loop();
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                    (false, false) => {}
                }
            }
            if let Some(b) = &sh.disk {
                let r = b.disk.rename(
                    op.dir.ino() as u32,
                    oname,
                    np.dir.ino() as u32,
                    nname,
                    dst.as_ref().map(|d| d.is_dir()),
                    src.is_dir(),
                );
                if let Err(e) = r {
                    if let Some(d) = dst.as_ref().and_then(|d| d.dir_body()) {
                        d.dead.store(false, Ordering::Release);
                    }
                    return Err(e);
                }
            }
            // The new name appears before the old one goes, so the file is
            // never missing from both for a lock-free lookup.
            let replaced = match &mut g2 {
                Some(g) => g.insert(nname, src.clone()),
                None => g1.insert(nname, src.clone()),
            };
            let moved = g1.remove(oname).expect("source seen under the same lock");
            drop(second);
            drop(first);
            // Freed after a grace period, with no bucket lock held.
            drop(moved);
            drop(replaced);
            if dst.is_none() {
                odir.entries.fetch_sub(1, Ordering::Relaxed);
                ndir.entries.fetch_add(1, Ordering::Relaxed);
            } else {
                odir.entries.fetch_sub(1, Ordering::Relaxed);
            }
            if src.is_dir() && cross {
                *src.dir()?.parent.write() = Arc::downgrade(&np.dir);
                op.dir.add_nlink(-1);
                np.dir.add_nlink(1);
            }
            if let Some(dst) = dst {
                if dst.is_dir() {
                    dst.set_nlink(0);
                    np.dir.add_nlink(-1);
                } else {
                    dst.add_nlink(-1);
                }
            }
            src.touch_ctime();
            op.dir.touch_modified();
            if cross {
                np.dir.touch_modified();
            }
            return Ok(());
        }
    }

    /// Absolute path of directory `dir` (for `getcwd`); `ENOENT` if it was
    /// removed.
    pub fn path_of(&self, dir: &Arc<Inode>) -> FsResult<String> {
        let _big = self.shared.big();
        let mut names: Vec<String> = Vec::new();
        let mut cur = dir.clone();
        loop {
            if cur.is_dead_dir() {
                return Err(Errno::ENOENT);
            }
            let parent = cur.parent().ok_or(Errno::ENOTDIR)?;
            if Arc::ptr_eq(&parent, &cur) {
                // A mounted root continues as its mount point, whose name
                // is in the directory above.
                match cur.dir_body().and_then(|d| d.covered()) {
                    Some(point) => {
                        cur = point;
                        continue;
                    }
                    None => break,
                }
            }
            let pd = parent.dir()?;
            if let Some(g) = &pd.gen {
                // A generated directory's names come from its provider.
                let (name, _, _) = g
                    .provider
                    .list(g.key)
                    .into_iter()
                    .find(|(_, ino, _)| *ino == cur.ino())
                    .ok_or(Errno::ENOENT)?;
                names.push(name);
                cur = parent;
                continue;
            }
            let name = pd
                .buckets()
                .find_map(|b| {
                    b.write(parent.shared)
                        .iter()
                        .find(|e| Arc::ptr_eq(&e.inode, &cur))
                        .map(|e| String::from(&*e.name))
                })
                .ok_or(Errno::ENOENT)?;
            names.push(name);
            cur = parent;
        }
        let mut out = String::new();
        for n in names.iter().rev() {
            out.push('/');
            out.push_str(n);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(out)
    }
}

/// How `rename_with` treats an existing target (`renameat2` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// `rename`: an existing target is replaced.
    Replace,
    /// `RENAME_NOREPLACE`: an existing target is `EEXIST`.
    NoReplace,
    /// `RENAME_EXCHANGE`: both names must exist; they swap inodes.
    Exchange,
}
