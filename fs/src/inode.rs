//! Inodes: metadata, regular-file data in the page cache, directories with
//! hashed entries, symlinks and device nodes.
//!
//! Owns: `Inode` and what hangs off it.  Invariants:
//! * a regular file's bytes past `size` are zero in every page it holds, and
//!   pages past the last byte are not held (truncate frees them); a page
//!   missing below `size` is a hole and reads as zeros;
//! * a directory entry (`Entry`) maps a name to an inode and is immutable
//!   once published; entries live in per-bucket sorted lists changed only
//!   under the bucket lock and freed only after an RCU grace period, so
//!   lookups need no lock (`Bucket`); a directory holds a `Weak`
//!   link to its parent (no reference cycles); `dead` is set, with every
//!   bucket write-locked, when the directory is removed, and nothing is
//!   inserted into a dead directory;
//! * the page count charged to the file system equals the pages held;
//! * a regular file's reverse map (`FileMapper`s, weak) names every live
//!   address space that may map its pages; truncate unmaps there.
//!
//! Lock order: a directory bucket before the inode metadata of anything in
//! it; file data before inode metadata.  Must not: block while holding a
//! lock, or hold two bucket locks except as `vfs` orders them.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use percpu::CachePadded;

use crate::env::{Page, Timespec, PAGE_SIZE};
use crate::errno::{Errno, FsResult};
use crate::lockstat::{LockClass, Mutex, RwLock};
use crate::rcu::ReadGuard;
use crate::synth::{Gen, Payload};
use crate::vfs::Shared;

/// What a hole reads as.  Read-only, so sharing it between CPUs writes no
/// shared cache line.
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// Largest file size (1 TiB): beyond it writes fail with `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Hash buckets per directory.
pub(crate) const DIR_BUCKETS: usize = 32;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    /// A block device node (`S_IFBLK`), e.g. one found on a disk image.
    BlockDevice,
    Fifo,
    /// A bound AF_UNIX socket's name (`S_IFSOCK`): no data, the kernel's
    /// socket layer maps the inode to the socket.
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits of `st_mode`.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
        }
    }

    /// The `d_type` of `linux_dirent64`.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileType::Regular => 8,
            FileType::Directory => 4,
            FileType::Symlink => 10,
            FileType::CharDevice => 2,
            FileType::BlockDevice => 6,
            FileType::Fifo => 1,
            FileType::Socket => 12,
        }
    }
}

/// `stat` of an inode, in Linux units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Device number of the inode's superblock (`st_dev`).
    pub dev: u64,
    pub ino: u64,
    /// Type bits and permission bits, as `st_mode`.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    /// 512-byte blocks held.
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

pub(crate) struct Meta {
    pub(crate) perm: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
    pub(crate) ctime: Timespec,
}

/// A file, directory, symlink or device node.
pub struct Inode {
    ino: u64,
    kind: FileType,
    rdev: u64,
    pub(crate) meta: RwLock<Meta>,
    pub(crate) body: Body,
    pub(crate) shared: &'static Shared,
    /// Metadata changed since the last write-back to a disk (`ext2`).
    pub(crate) dirty: AtomicBool,
    /// On a disk: the inode is on a per-CPU dirty list (`ext2`).
    pub(crate) queued: AtomicBool,
    /// This inode (for the dirty lists, which hold it weakly).
    pub(crate) me: Weak<Inode>,
}

pub(crate) enum Body {
    File(RwLock<FileData>),
    Dir(Dir),
    Symlink(String),
    Special,
    /// A generated regular file: its bytes come from the provider at open.
    Generated(Gen),
    /// A magic link: follows to `target`; reads as `text`, made by
    /// `gen`'s provider on first read when not given (`synth`).
    Magic {
        target: Arc<Inode>,
        text: spin::Once<String>,
        gen: Option<Gen>,
    },
    /// A proxy for an object of the host (`synth`), with the `stat` it
    /// reports.
    Proxy(Payload, Stat),
}

pub(crate) struct FileData {
    size: u64,
    pages: BTreeMap<u64, Page>,
    /// Pages cut off by a truncate while the file was mapped: a mapping
    /// may still point at them, so they are freed only with the inode
    /// (a mapping keeps the inode alive).
    retired: alloc::vec::Vec<Page>,
    /// Set once a page's physical address was handed out for a mapping.
    mapped: bool,
    /// One-copy I/O (`grant`): open I/O handles of a file server's
    /// clients, and whether a page was granted since the count was last 0.
    /// While both hold, a truncate retires pages instead of freeing them.
    io_users: u32,
    io_granted: AtomicBool,
    /// The ticket the next write grant gets (`grant_write` hands it out,
    /// `commit_write` names it); starts at the file system's write-epoch
    /// base, so a ticket of another server instance is never valid here.
    tickets: u64,
    /// Write grants handed out and not ended yet (`grant`): what they may
    /// have copied into the pages past the end of the file.  Usually
    /// empty or one entry per writer in flight.
    grants: alloc::vec::Vec<grant::WriteGrant>,
    /// Reverse map: the address spaces that mapped this file (registered
    /// at mmap and fork, pruned when they die).  A truncate asks each to
    /// drop its translations past the new end.
    rmap: alloc::vec::Vec<Weak<dyn FileMapper>>,
    /// On a disk file system: which pages are on disk has not been read
    /// yet (`absent` is filled on first access, `ext2`).
    pub(crate) unloaded: bool,
    /// On a disk file system: pages mapped on disk and not yet read into
    /// `pages` (each is read on first access).
    pub(crate) absent: crate::ext2::Absent,
    /// On a disk file system: `i_blocks` as last read or written.
    pub(crate) disk_blocks: u64,
    /// On a disk file system: pages written since the last write-back.
    pub(crate) dirty: alloc::collections::BTreeSet<u64>,
    /// On a disk file system: the smallest size truncated to since the
    /// last write-back (blocks past it are freed on disk first).
    pub(crate) shrunk: Option<u64>,
    /// Bumped by every write and truncate (under this lock): a copy of
    /// the data read between two equal versions is current
    /// (`data_version`, the file server's pre-copy on replacement).
    version: u64,
}

/// An address space that maps pages of regular files (the kernel
/// implements it; the file system only keeps `Weak` references in each
/// file's reverse map, so it never keeps an address space alive).
pub trait FileMapper: Send + Sync {
    /// Removes every translation of page `first_gone` and later of the
    /// file whose `Inode::map_key` is `file_key` (including private
    /// copy-on-write copies, as Linux does on truncate), with the TLB
    /// shootdown done before returning.  Called with no file-system lock
    /// held.
    fn unmap_file_pages(&self, file_key: usize, first_gone: u64);
}

// The lock-free directory entry lists (the raw-pointer code of this crate)
// live in their own module, the only one here allowed `unsafe`.
#[allow(unsafe_code)]
mod bucket;
mod grant;
pub(crate) use bucket::{Bucket, Entry, MountSlot};

pub(crate) struct Dir {
    buckets: Box<[CachePadded<Bucket>]>,
    pub(crate) parent: spin::RwLock<Weak<Inode>>,
    /// Set (under every bucket's write lock) once the directory is removed.
    pub(crate) dead: AtomicBool,
    /// Entries, for `st_size` (tmpfs reports 20 bytes per entry).
    pub(crate) entries: AtomicU64,
    /// On a mount point: the root of the superblock mounted here.  Set
    /// once, read with a plain load on every lookup that reaches it.
    /// An `Entry` (name unused) holding the root, retired through RCU at
    /// umount, so a lookup in a read section may use it without a count.
    pub(crate) mounted: MountSlot,
    /// On the root of a mounted superblock: its mount point (weak: the
    /// point holds the root).
    pub(crate) covers: spin::RwLock<Option<Weak<Inode>>>,
    /// A generated directory: its provider answers every lookup (`synth`).
    pub(crate) gen: Option<Gen>,
    /// On a disk file system: the entries are still only on disk (read on
    /// first use by `Inode::dir`, under `load`).
    pub(crate) pending: AtomicBool,
    pub(crate) load: Mutex<()>,
    /// The directory's own inode (for its children's parent links).
    pub(crate) this: Weak<Inode>,
}

impl FileData {
    /// A disk file's data before it is read (`ext2`).
    pub(crate) fn unloaded(size: u64, disk_blocks: u64) -> FileData {
        FileData {
            size,
            pages: BTreeMap::new(),
            retired: alloc::vec::Vec::new(),
            mapped: false,
            io_users: 0,
            io_granted: AtomicBool::new(false),
            tickets: 0,
            grants: alloc::vec::Vec::new(),
            rmap: alloc::vec::Vec::new(),
            unloaded: true,
            absent: Default::default(),
            disk_blocks,
            dirty: Default::default(),
            shrunk: None,
            version: 0,
        }
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn insert_page(&mut self, index: u64, page: Page) {
        if let Some(old) = self.pages.insert(index, page) {
            self.retired.push(old);
        }
    }
    pub(crate) fn is_mapped(&self) -> bool {
        self.mapped
    }
    pub(crate) fn page_indices(&self) -> impl Iterator<Item = u64> + '_ {
        self.pages.keys().copied()
    }
    pub(crate) fn page_bytes(&self, index: u64) -> Option<&[u8]> {
        self.pages.get(&index).map(|p| p.bytes(0, PAGE_SIZE))
    }
    pub(crate) fn resident_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// A disk file short of pages: drops up to `want` of its pages outside
    /// `[lo, hi)` whose contents are on disk unchanged (not dirty, no
    /// truncate pending, not mapped), to be read again when touched.
    /// Returns how many went.
    pub(crate) fn evict_clean(&mut self, shared: &Shared, lo: u64, hi: u64, want: usize) -> usize {
        // Only a disk holds another copy: tmpfs pages are the data.
        if shared.disk.is_none()
            || self.unloaded
            || self.mapped
            || (*self.io_granted.get_mut() && self.io_users > 0)
            || self.shrunk.is_some()
        {
            return 0;
        }
        let victims: alloc::vec::Vec<u64> = self
            .pages
            .keys()
            .copied()
            .filter(|p| (*p < lo || *p >= hi) && !self.dirty.contains(p))
            .take(want)
            .collect();
        for p in &victims {
            if let Some(page) = self.pages.remove(p) {
                shared.free_page(page);
                self.absent.add(*p);
            }
        }
        victims.len()
    }
}

impl Dir {
    pub(crate) fn new(parent: Weak<Inode>) -> Dir {
        Dir {
            buckets: (0..DIR_BUCKETS)
                .map(|_| CachePadded::new(Bucket::new()))
                .collect(),
            parent: spin::RwLock::new(parent),
            dead: AtomicBool::new(false),
            entries: AtomicU64::new(0),
            mounted: MountSlot::new(),
            covers: spin::RwLock::new(None),
            gen: None,
            pending: AtomicBool::new(false),
            load: Mutex::new(LockClass::DirBucket, ()),
            this: Weak::new(),
        }
    }

    /// The bucket that holds `name` (FNV-1a hash).
    pub(crate) fn bucket(&self, name: &str) -> &Bucket {
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        &self.buckets[(h as usize) % DIR_BUCKETS]
    }

    pub(crate) fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().map(|b| &**b)
    }

    /// The root mounted here, borrowed for the read section `_rcu`.
    pub(crate) fn mounted_in<'g>(&self, rcu: &'g ReadGuard<'_>) -> Option<&'g Arc<Inode>> {
        self.mounted.get(rcu)
    }

    /// The mount point this root covers, if mounted.
    pub(crate) fn covered(&self) -> Option<Arc<Inode>> {
        self.covers.read().as_ref().and_then(Weak::upgrade)
    }

    /// The entry `name`, without any lock: valid for the read section.
    pub(crate) fn lookup<'g>(&self, rcu: &'g ReadGuard<'_>, name: &str) -> Option<&'g Arc<Inode>> {
        self.bucket(name).lookup(rcu, name)
    }
}

/// Where a directory listing stands; start with `DirCursor::default()`.
#[derive(Clone, Debug, Default)]
pub struct DirCursor {
    /// 0: next is ".", 1: "..", 2: entries, 4: generated entries, 3: done.
    stage: u8,
    /// Generated entries returned so far.
    gen_index: usize,
    bucket: usize,
    after: Option<Box<str>>,
    /// Entries returned so far (the `d_off` of the last one).
    pub position: u64,
}

impl DirCursor {
    /// The cursor as plain data, for a client that keeps it between calls
    /// (the file server's protocol, `servers/fsproto`): the position
    /// (`d_off` of the last entry returned), a packed state word, and the
    /// name to resume after inside the current bucket.
    pub fn to_parts(&self) -> (u64, u64, Option<&str>) {
        let state = self.stage as u64
            | (self.bucket as u64) << 8
            | (self.gen_index as u64 & 0xffff_ffff) << 16;
        (self.position, state, self.after.as_deref())
    }

    /// A cursor from `to_parts`'s values.  `EINVAL` if the state word
    /// cannot come from `to_parts` (the name is any name: a forged one only
    /// makes the listing skip or repeat entries of one bucket).
    pub fn from_parts(position: u64, state: u64, after: Option<&str>) -> FsResult<DirCursor> {
        let stage = (state & 0xff) as u8;
        let bucket = ((state >> 8) & 0xff) as usize;
        let gen_index = (state >> 16) as usize;
        if stage > 4 || bucket > DIR_BUCKETS || state >> 48 != 0 {
            return Err(Errno::EINVAL);
        }
        if after.is_some_and(|a| a.is_empty() || a.len() > crate::vfs::NAME_MAX) {
            return Err(Errno::EINVAL);
        }
        Ok(DirCursor {
            stage,
            gen_index,
            bucket,
            after: after.map(Box::from),
            position,
        })
    }
}

impl Inode {
    pub(crate) fn new(
        shared: &'static Shared,
        kind: FileType,
        perm: u32,
        rdev: u64,
        parent: Option<&Arc<Inode>>,
        symlink_target: Option<String>,
        ino: Option<u64>,
    ) -> Arc<Inode> {
        let body = match kind {
            FileType::Regular => Body::File(RwLock::new(
                LockClass::FileData,
                FileData {
                    size: 0,
                    pages: BTreeMap::new(),
                    retired: alloc::vec::Vec::new(),
                    mapped: false,
                    io_users: 0,
                    io_granted: AtomicBool::new(false),
                    tickets: shared.write_epoch_base.load(Ordering::Relaxed),
                    grants: alloc::vec::Vec::new(),
                    rmap: alloc::vec::Vec::new(),
                    unloaded: false,
                    absent: Default::default(),
                    disk_blocks: 0,
                    dirty: Default::default(),
                    shrunk: None,
                    version: 0,
                },
            )),
            FileType::Directory => {
                Body::Dir(Dir::new(parent.map(Arc::downgrade).unwrap_or_default()))
            }
            FileType::Symlink => Body::Symlink(symlink_target.unwrap_or_default()),
            FileType::CharDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket => {
                Body::Special
            }
        };
        let ino = match ino {
            Some(i) => i,
            None => shared.ino.alloc(),
        };
        Inode::with_body(shared, kind, perm, rdev, parent, body, ino)
    }

    /// A new inode with a given body and number.
    pub(crate) fn with_body(
        shared: &'static Shared,
        kind: FileType,
        perm: u32,
        rdev: u64,
        parent: Option<&Arc<Inode>>,
        body: Body,
        ino: u64,
    ) -> Arc<Inode> {
        let now = shared.now();
        let mut body = body;
        let inode = Arc::new_cyclic(|me: &Weak<Inode>| {
            if let Body::Dir(d) = &mut body {
                d.this = me.clone();
                if parent.is_none() {
                    // The root is its own parent.
                    *d.parent.write() = me.clone();
                }
            }
            Inode {
                ino,
                kind,
                rdev,
                meta: RwLock::new(
                    LockClass::InodeMeta,
                    Meta {
                        perm: perm & 0o7777,
                        uid: 0,
                        gid: 0,
                        nlink: if kind == FileType::Directory { 2 } else { 1 },
                        atime: now,
                        mtime: now,
                        ctime: now,
                    },
                ),
                body,
                shared,
                dirty: AtomicBool::new(false),
                queued: AtomicBool::new(false),
                me: me.clone(),
            }
        });
        shared.stats.inodes.inc();
        inode
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    pub fn kind(&self) -> FileType {
        self.kind
    }

    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }

    /// Device number of a device node (0 otherwise).
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    /// The directory, its entries read from disk first if they are not
    /// yet (a disk file system); `EIO` if the disk is unreadable.
    pub(crate) fn dir(&self) -> FsResult<&Dir> {
        match &self.body {
            Body::Dir(d) => {
                if d.pending.load(Ordering::Acquire) {
                    crate::ext2::load_dir(self, d)?;
                }
                Ok(d)
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The directory as it is in memory (no disk read): for mount-table
    /// checks, which must not load a directory they only pass through.
    pub(crate) fn dir_body(&self) -> Option<&Dir> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn file(&self) -> FsResult<&RwLock<FileData>> {
        match &self.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// A directory's parent (the root's is itself); `None` for non-directories.
    pub fn parent(&self) -> Option<Arc<Inode>> {
        match &self.body {
            Body::Dir(d) => d.parent.read().upgrade(),
            _ => None,
        }
    }

    /// (pages used, page bound, live inodes) of this inode's superblock,
    /// for `statfs`.
    pub fn superblock_usage(&self) -> (u64, u64, i64) {
        self.shared.usage()
    }

    /// Device number of the superblock this inode belongs to.
    pub fn dev(&self) -> u64 {
        self.shared.dev
    }

    /// The root of the file system mounted on this directory, if any.
    pub fn mounted_root(&self) -> Option<Arc<Inode>> {
        let d = self.dir_body()?;
        let rcu = self.shared.rcu.read();
        d.mounted_in(&rcu).cloned()
    }

    /// Whether this directory was removed.
    pub fn is_dead_dir(&self) -> bool {
        matches!(&self.body, Body::Dir(d) if d.dead.load(Ordering::Acquire))
    }

    /// A symlink's target.
    pub fn symlink_target(&self) -> Option<&str> {
        match &self.body {
            Body::Symlink(t) => Some(t),
            Body::Magic { target, text, gen } => Some(text.call_once(|| {
                gen.as_ref()
                    .map(|g| g.provider.link_text(g.key, target))
                    .unwrap_or_default()
            })),
            _ => None,
        }
    }

    pub fn stat(&self) -> Stat {
        if let Body::Proxy(_, st) = &self.body {
            return *st;
        }
        // A disk inode's block count (and a disk directory's size) come
        // from the disk (one engine lock): only for directories and
        // files whose data is not read yet.
        let disk = || {
            self.shared
                .disk
                .as_ref()
                .and_then(|b| b.disk.read_inode(self.ino as u32).ok())
        };
        let (size, blocks) = match &self.body {
            Body::File(f) => {
                let f = f.read();
                (f.size, crate::ext2::file_blocks(self, &f))
            }
            // A disk directory has the size of its blocks, as on Linux.
            Body::Dir(_) if self.shared.disk.is_some() => match disk() {
                Some(di) => (di.size(), di.i_blocks() as u64),
                None => (0, 0),
            },
            Body::Dir(d) => (40 + 20 * d.entries.load(Ordering::Relaxed), 0),
            Body::Symlink(t) => (t.len() as u64, 0),
            // Linux reports 64 for its magic links; the text may not be
            // made yet (it is not made under the file system's locks).
            Body::Magic { .. } => (64, 0),
            Body::Special | Body::Generated(_) | Body::Proxy(..) => (0, 0),
        };
        let m = self.meta.read();
        Stat {
            dev: self.shared.dev,
            ino: self.ino,
            mode: self.kind.mode_bits() | m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: self.rdev,
            size,
            blksize: PAGE_SIZE as u32,
            blocks,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        }
    }

    /// Records a change of metadata (or data) for write-back: on a disk,
    /// the inode joins this CPU's dirty list once (`ext2`).
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
        self.queue();
        if self.shared.logging.load(Ordering::Relaxed) {
            self.log_change();
        }
    }

    /// Records this inode in the superblock's change log (a replacement's
    /// pre-copy is under way: `Fs::start_change_log`).
    #[cold]
    fn log_change(&self) {
        // SeqCst pairs with `start_change_log`: a change after the log
        // started is either seen by the base walk or logged here.
        if self.shared.logging.load(Ordering::SeqCst) {
            self.shared.changes.lock().push(self.me.clone());
        }
    }

    /// Puts a disk inode on this CPU's dirty list if it is not on one.
    pub(crate) fn queue(&self) {
        if let Some(b) = &self.shared.disk {
            if !self.queued.load(Ordering::Relaxed) && !self.queued.swap(true, Ordering::AcqRel) {
                b.queue(self.me.clone());
            }
        }
    }

    /// Whether this inode's file system is mounted read-only (the kernel
    /// checks it before `set_perm`, `set_owner`, `set_times`).
    pub fn read_only(&self) -> bool {
        self.shared.read_only()
    }

    /// `EROFS` on a read-only file system.
    pub fn writable(&self) -> FsResult<()> {
        if self.read_only() {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// `fsync`/`fdatasync`: writes this inode's data and attributes and
    /// then every dirty block of its disk, and waits for the device's
    /// flush.  Nothing to do on tmpfs.
    pub fn fsync(&self) -> FsResult<()> {
        let Some(b) = &self.shared.disk else {
            return Ok(());
        };
        if b.disk.read_only() {
            return Ok(());
        }
        crate::ext2::write_back(self)?;
        b.disk.sync(self.shared.now())
    }

    /// `syncfs`: writes back the whole superblock this inode is on.
    pub fn sync_fs(&self) -> FsResult<()> {
        crate::ext2::sync_shared(self.shared)
    }

    /// `statfs` of a disk superblock: (blocks, free blocks, inodes, free
    /// inodes, block size); `None` for memory file systems.
    pub fn disk_usage(&self) -> Option<(u64, u64, u64, u64, usize)> {
        crate::ext2::statfs(self.shared)
    }

    /// Current size of a regular file (0 for others).
    pub fn size(&self) -> u64 {
        match &self.body {
            Body::File(f) => f.read().size,
            _ => self.stat().size,
        }
    }

    pub(crate) fn add_nlink(&self, delta: i32) {
        let now = self.shared.now();
        let mut m = self.meta.write();
        m.nlink = (m.nlink as i64 + delta as i64).max(0) as u32;
        m.ctime = now;
        self.mark_dirty();
    }

    pub(crate) fn set_nlink(&self, n: u32) {
        self.meta.write().nlink = n;
        self.mark_dirty();
    }

    pub fn nlink(&self) -> u32 {
        self.meta.read().nlink
    }

    /// Updates mtime and ctime (after a change of contents).
    pub(crate) fn touch_modified(&self) {
        let now = self.shared.now();
        let mut m = self.meta.write();
        m.mtime = now;
        m.ctime = now;
        self.mark_dirty();
    }

    /// Updates ctime (after a change of name or links).
    pub(crate) fn touch_ctime(&self) {
        let now = self.shared.now();
        self.meta.write().ctime = now;
        self.mark_dirty();
    }

    /// `chmod`: sets the permission bits.
    pub fn set_perm(&self, perm: u32) {
        let now = self.shared.now();
        let mut m = self.meta.write();
        m.perm = perm & 0o7777;
        m.ctime = now;
        self.mark_dirty();
    }

    /// `chown`: sets the owner and/or group (`None` keeps it); on a
    /// non-directory clears set-user-ID, and set-group-ID when group
    /// execute is set, as Linux does for every chown; updates ctime.
    pub fn set_owner(&self, uid: Option<u32>, gid: Option<u32>) {
        let now = self.shared.now();
        let mut m = self.meta.write();
        if let Some(u) = uid {
            m.uid = u;
        }
        if let Some(g) = gid {
            m.gid = g;
        }
        if self.kind != FileType::Directory {
            m.perm &= !0o4000;
            if m.perm & 0o010 != 0 {
                m.perm &= !0o2000;
            }
        }
        m.ctime = now;
        self.mark_dirty();
    }

    /// (uid, gid) of the owner.
    pub fn owner(&self) -> (u32, u32) {
        let m = self.meta.read();
        (m.uid, m.gid)
    }

    /// `utimensat`-style update; `None` leaves a time unchanged.
    pub fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) {
        let now = self.shared.now();
        let mut m = self.meta.write();
        if let Some(a) = atime {
            m.atime = a;
        }
        if let Some(t) = mtime {
            m.mtime = t;
        }
        m.ctime = now;
        self.mark_dirty();
    }

    // ---- generated inodes (`synth`) ----------------------------------

    /// A generated directory below this one (`synth`).
    pub fn gen_dir(self: &Arc<Inode>, ino: u64, perm: u32, gen: Gen) -> Arc<Inode> {
        let mut d = Dir::new(Arc::downgrade(self));
        d.gen = Some(gen);
        Inode::with_body(
            self.shared,
            FileType::Directory,
            perm,
            0,
            Some(self),
            Body::Dir(d),
            ino,
        )
    }

    /// A generated regular file of this directory's superblock.
    pub fn gen_file(&self, ino: u64, perm: u32, gen: Gen) -> Arc<Inode> {
        let body = Body::Generated(gen);
        Inode::with_body(self.shared, FileType::Regular, perm, 0, None, body, ino)
    }

    /// A symlink to `target` of this directory's superblock.
    pub fn gen_symlink(&self, ino: u64, target: String) -> Arc<Inode> {
        let body = Body::Symlink(target);
        Inode::with_body(self.shared, FileType::Symlink, 0o777, 0, None, body, ino)
    }

    /// A magic link: following gives `target`; `readlink` gives `text`,
    /// or, when it is `None`, what `gen`'s `Provider::link_text` makes on
    /// the first read.
    pub fn gen_magic(
        &self,
        ino: u64,
        perm: u32,
        target: Arc<Inode>,
        text: Option<String>,
        gen: Option<Gen>,
    ) -> Arc<Inode> {
        let once = spin::Once::new();
        if let Some(t) = text {
            once.call_once(|| t);
        }
        let body = Body::Magic {
            target,
            text: once,
            gen,
        };
        Inode::with_body(self.shared, FileType::Symlink, perm, 0, None, body, ino)
    }

    /// A proxy for a host object that `stat` reports as `st` (its type
    /// from `st.mode`: FIFO, socket, else an anonymous regular inode).
    pub fn gen_proxy(&self, st: Stat, payload: Payload) -> Arc<Inode> {
        let kind = match st.mode & 0o170000 {
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => FileType::Regular,
        };
        let body = Body::Proxy(payload, st);
        Inode::with_body(self.shared, kind, st.mode, 0, None, body, st.ino)
    }

    /// The provider and key of a generated directory or file.
    pub fn gen(&self) -> Option<&Gen> {
        match &self.body {
            Body::Dir(d) => d.gen.as_ref(),
            Body::Generated(g) => Some(g),
            _ => None,
        }
    }

    /// A generated regular file's bytes, made now; `None` for other inodes.
    pub fn generated_contents(&self) -> Option<FsResult<alloc::vec::Vec<u8>>> {
        match &self.body {
            Body::Generated(g) => Some(g.provider.contents(g.key)),
            _ => None,
        }
    }

    /// Where a magic link leads.
    pub fn magic_target(&self) -> Option<&Arc<Inode>> {
        match &self.body {
            Body::Magic { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The host object behind a proxy.
    pub fn payload(&self) -> Option<&Payload> {
        match &self.body {
            Body::Proxy(p, _) => Some(p),
            _ => None,
        }
    }

    /// Reads from a regular file at `offset`; returns the bytes read (0 at
    /// or past the end).  Holes read as zeros.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> FsResult<usize> {
        let mut done = 0;
        self.read_with(offset, out.len(), |piece| {
            out[done..done + piece.len()].copy_from_slice(piece);
            done += piece.len();
            piece.len()
        })
    }

    /// Reads up to `len` bytes of a regular file from `offset` without an
    /// intermediate buffer: hands `sink` the file's bytes in order, one
    /// piece per page (a hole as zeros), straight from the page cache.
    /// `sink` returns how many bytes of its piece it took; a short count
    /// ends the read.  Returns the bytes taken in all (0 at or past the
    /// end).
    ///
    /// `sink` runs under the file's read lock (and, in `LockMode::Global`,
    /// the global lock), with the CPU pinned: it must not block, take a
    /// file-system lock or fault into code that does (the kernel copies to
    /// user memory with page faults turned into a short count).
    pub fn read_with(
        &self,
        offset: u64,
        len: usize,
        mut sink: impl FnMut(&[u8]) -> usize,
    ) -> FsResult<usize> {
        let _big = self.shared.big();
        self.shared.stats.reads.inc();
        let lock = self.file()?;
        // A disk file is read in windows, each made resident first (under
        // the write lock), so a read larger than the page bound works;
        // tmpfs reads in one pass.
        let window = if self.shared.disk.is_some() {
            32 * PAGE_SIZE
        } else {
            usize::MAX
        };
        let mut total = 0;
        while total < len {
            let start = offset.saturating_add(total as u64);
            let want = (len - total).min(window);
            let f = loop {
                let f = lock.read();
                match crate::ext2::missing(self, &f, start, want) {
                    None => break f,
                    Some((first, end)) => {
                        drop(f);
                        crate::ext2::fill(self, &mut lock.write(), first, end)?;
                    }
                }
            };
            if start >= f.size {
                break;
            }
            let n = want.min((f.size - start) as usize);
            let mut done = 0;
            while done < n {
                let pos = start + done as u64;
                let index = pos / PAGE_SIZE as u64;
                let in_page = (pos % PAGE_SIZE as u64) as usize;
                let chunk = (PAGE_SIZE - in_page).min(n - done);
                let piece = match f.pages.get(&index) {
                    Some(p) => p.bytes(in_page, chunk),
                    None => &ZERO_PAGE[..chunk],
                };
                let took = sink(piece).min(chunk);
                done += took;
                if took < chunk {
                    break;
                }
            }
            total += done;
            if done < want {
                break;
            }
        }
        Ok(total)
    }

    /// Writes to a regular file at `offset` (or at its end when `append`);
    /// returns the bytes written and the offset after them.  A write that
    /// runs out of space after writing some bytes returns the short count;
    /// with nothing written it fails with `ENOSPC`.
    pub fn write_at(&self, offset: u64, src: &[u8], append: bool) -> FsResult<(usize, u64)> {
        let _big = self.shared.big();
        self.shared.stats.writes.inc();
        self.writable()?;
        let mut f = self.file()?.write();
        f.version += 1;
        let offset = if append { f.size } else { offset };
        if src.is_empty() {
            return Ok((0, offset));
        }
        let end = offset.checked_add(src.len() as u64).ok_or(Errno::EFBIG)?;
        let max = self.shared.max_file_size();
        if offset >= max {
            return Err(Errno::EFBIG);
        }
        let last = end.min(max).div_ceil(PAGE_SIZE as u64);
        crate::ext2::fill(self, &mut f, offset / PAGE_SIZE as u64, last)?;
        let len = (end.min(max) - offset) as usize;
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let index = pos / PAGE_SIZE as u64;
            let in_page = (pos % PAGE_SIZE as u64) as usize;
            let chunk = (PAGE_SIZE - in_page).min(len - done);
            let page = match f.pages.entry(index) {
                alloc::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                alloc::collections::btree_map::Entry::Vacant(_) => {
                    let mut page = self.shared.alloc_zeroed_page();
                    // A disk file may give back clean pages and retry.
                    if page.is_none() && f.evict_clean(self.shared, index, last, 64) > 0 {
                        page = self.shared.alloc_zeroed_page();
                    }
                    match page {
                        Some(p) => f.pages.entry(index).or_insert(p),
                        None if done == 0 => return Err(Errno::ENOSPC),
                        None => break,
                    }
                }
            };
            page.write_at(in_page, &src[done..done + chunk]);
            if self.shared.disk.is_some() {
                f.dirty.insert(index);
            }
            done += chunk;
        }
        let new_end = offset + done as u64;
        // Committed bytes: no grant may zero them when it ends.
        f.grants_written(offset, new_end, None);
        if new_end > f.size {
            f.size = new_end;
        }
        drop(f);
        self.touch_modified();
        Ok((done, new_end))
    }

    /// Sets a regular file's size: shrinking frees the pages past the end
    /// and zeroes the tail of the last one; growing leaves a hole.  When
    /// the file was mapped, every registered `FileMapper` then drops its
    /// translations of the pages cut off (so a later touch faults and
    /// gets SIGBUS), after every file-system lock is released.
    pub fn truncate(&self, size: u64) -> FsResult<()> {
        let mappers = self.truncate_locked(size)?;
        if let Some((first_gone, mappers)) = mappers {
            for m in mappers {
                m.unmap_file_pages(self.map_key(), first_gone);
            }
        }
        Ok(())
    }

    /// The locked part of `truncate`: returns the first page cut off and
    /// the live mappers to notify, when the file shrank while mapped.
    #[allow(clippy::type_complexity)]
    fn truncate_locked(
        &self,
        size: u64,
    ) -> FsResult<Option<(u64, alloc::vec::Vec<Arc<dyn FileMapper>>)>> {
        let _big = self.shared.big();
        if size > self.shared.max_file_size() {
            return Err(Errno::EFBIG);
        }
        self.writable()?;
        let mut f = self.file()?.write();
        f.version += 1;
        let mut notify = None;
        if size < f.size {
            let keep = size.div_ceil(PAGE_SIZE as u64);
            // A disk file: the kept partial page must be in memory to be
            // cut, and the pages past it no longer come from disk.
            crate::ext2::fill(self, &mut f, size / PAGE_SIZE as u64, keep)?;
            f.absent.truncate(keep);
            let gone = f.pages.split_off(&keep);
            // Grants reaching past the new end lose bytes to the cut (or
            // to the zeroed tail): their commits are refused from now on.
            f.grants_cut(size);
            let keep_pages = f.mapped || (*f.io_granted.get_mut() && f.io_users > 0);
            for (_, p) in gone {
                if keep_pages {
                    f.retired.push(p);
                } else {
                    self.shared.free_page(p);
                }
            }
            let tail = (size % PAGE_SIZE as u64) as usize;
            if tail != 0 {
                if let Some(p) = f.pages.get(&(size / PAGE_SIZE as u64)) {
                    p.zero(tail, PAGE_SIZE - tail);
                }
            }
            if self.shared.disk.is_some() {
                f.shrunk = Some(f.shrunk.map_or(size, |s| s.min(size)));
                f.dirty.retain(|&i| i < keep);
            }
            if f.mapped && keep < f.size.div_ceil(PAGE_SIZE as u64) {
                f.rmap.retain(|w| w.strong_count() > 0);
                let live: alloc::vec::Vec<_> = f.rmap.iter().filter_map(Weak::upgrade).collect();
                notify = Some((keep, live));
            }
        }
        f.size = size;
        drop(f);
        self.touch_modified();
        Ok(notify)
    }

    /// The key by which a `FileMapper` recognises this file's mappings
    /// (the inode's address: unique while the inode lives, and a mapping
    /// keeps it alive).
    /// A regular file's data version (changes with every write and
    /// truncate) and whether its pages were handed out for mappings
    /// (`page_phys`); `None` for other inodes.
    pub fn data_version(&self) -> Option<(u64, bool)> {
        let f = self.file().ok()?.read();
        Some((f.version, f.mapped))
    }

    pub fn map_key(&self) -> usize {
        self as *const Inode as usize
    }

    /// Records that `mapper` maps (or may map) pages of this regular file,
    /// so that a truncate unmaps them there.  Registering the same mapper
    /// twice keeps one entry; dead mappers are pruned here and at truncate.
    pub fn register_mapper(&self, mapper: Weak<dyn FileMapper>) -> FsResult<()> {
        let mut f = self.file()?.write();
        f.rmap.retain(|w| w.strong_count() > 0);
        if !f.rmap.iter().any(|w| Weak::ptr_eq(w, &mapper)) {
            f.rmap.push(mapper);
        }
        Ok(())
    }

    /// Mappers currently registered and alive (for tests and debugging).
    pub fn mapper_count(&self) -> usize {
        match self.file() {
            Ok(f) => f
                .read()
                .rmap
                .iter()
                .filter(|w| w.strong_count() > 0)
                .count(),
            Err(_) => 0,
        }
    }

    /// Physical address of page `index` of a regular file, allocating a
    /// zeroed page for a hole below the end (for `MAP_SHARED`).  `EFAULT`
    /// past the end of the file (the caller raises a signal).  The page
    /// stays valid while this inode lives: once a file was mapped, a
    /// truncate keeps the pages it cuts off until the inode is dropped.
    pub fn page_phys(&self, index: u64) -> FsResult<u64> {
        let mut f = self.file()?.write();
        if index >= f.size.div_ceil(PAGE_SIZE as u64) {
            return Err(Errno::EFAULT);
        }
        crate::ext2::fill(self, &mut f, index, index + 1)?;
        if !f.mapped {
            // Written back at every sync while mapped (`ext2`).
            self.queue();
        }
        f.mapped = true;
        if let Some(p) = f.pages.get(&index) {
            return Ok(p.phys());
        }
        let p = self.shared.alloc_zeroed_page().ok_or(Errno::ENOSPC)?;
        let phys = p.phys();
        f.pages.insert(index, p);
        Ok(phys)
    }

    /// `page_phys` for a page that needs nothing done: a page present in
    /// the page cache, below the end, of a file whose pages were handed
    /// out for mappings before (`page_phys` ran once, so the file is
    /// queued for write-back).  Takes only the read lock (read-biased:
    /// many CPUs faulting on one program write no shared line) and never
    /// blocks, so the kernel may call it under its own spin locks.  `None`:
    /// ask `page_phys`.
    pub fn page_phys_resident(&self, index: u64) -> Option<u64> {
        let f = self.file().ok()?.read();
        if !f.mapped || index >= f.size.div_ceil(PAGE_SIZE as u64) {
            return None;
        }
        f.pages.get(&index).map(|p| p.phys())
    }

    /// Lists a directory from `cursor`: calls `emit(name, ino, type,
    /// next_position)` for each entry ("." and ".." first) until it returns
    /// false (that entry is not consumed) or the listing ends.  Entries
    /// created or removed meanwhile may or may not appear; every entry
    /// present throughout appears exactly once.
    pub fn readdir(
        &self,
        cursor: &mut DirCursor,
        mut emit: impl FnMut(&str, u64, FileType, u64) -> bool,
    ) -> FsResult<()> {
        let _big = self.shared.big();
        let d = self.dir()?;
        if d.dead.load(Ordering::Acquire) {
            cursor.stage = 3;
        }
        if cursor.stage == 0 {
            if !emit(".", self.ino, FileType::Directory, cursor.position + 1) {
                return Ok(());
            }
            cursor.stage = 1;
            cursor.position += 1;
        }
        if cursor.stage == 1 {
            let parent_ino = self.parent().map_or(self.ino, |p| p.ino);
            if !emit("..", parent_ino, FileType::Directory, cursor.position + 1) {
                return Ok(());
            }
            cursor.stage = 2;
            cursor.position += 1;
        }
        // A generated directory has no entries of its own (`synth`).
        if cursor.stage == 2 && d.gen.is_some() {
            cursor.stage = 4;
        }
        if let (4, Some(g)) = (cursor.stage, &d.gen) {
            let list = g.provider.list(g.key);
            for (name, ino, kind) in list.iter().skip(cursor.gen_index) {
                if !emit(name, *ino, *kind, cursor.position + 1) {
                    return Ok(());
                }
                cursor.gen_index += 1;
                cursor.position += 1;
            }
            cursor.stage = 3;
        }
        while cursor.stage == 2 && cursor.bucket < DIR_BUCKETS {
            let bucket = d.buckets[cursor.bucket].write(self.shared);
            for e in bucket.iter() {
                if cursor.after.as_deref().is_some_and(|a| *e.name <= *a) {
                    continue;
                }
                if !emit(&e.name, e.inode.ino, e.inode.kind, cursor.position + 1) {
                    return Ok(());
                }
                cursor.after = Some(Box::from(&*e.name));
                cursor.position += 1;
            }
            drop(bucket);
            cursor.bucket += 1;
            cursor.after = None;
        }
        cursor.stage = 3;
        Ok(())
    }
}

impl core::fmt::Debug for Inode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Inode({} {:?})", self.ino, self.kind)
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        // A disk inode with no name left: its blocks go at the next
        // operation of the disk (not here: a drop may run anywhere).
        if let Some(disk) = &self.shared.disk {
            if self.meta.get_mut().nlink == 0 {
                disk.disk.release(self.ino as u32);
            }
        }
        // Last reference gone (unlinked and closed): give the pages back.
        if let Body::File(f) = &mut self.body {
            let data = f.get_mut();
            let pages = core::mem::take(&mut data.pages);
            for (_, p) in pages {
                self.shared.free_page(p);
            }
            for p in core::mem::take(&mut data.retired) {
                self.shared.free_page(p);
            }
        }
        // A directory still holding entries (only a superblock's root
        // could): readers may be walking them, so they go through RCU.
        if let Body::Dir(d) = &self.body {
            for b in d.buckets() {
                b.retire_all(self.shared);
            }
        }
        self.shared.stats.inodes.dec();
    }
}
