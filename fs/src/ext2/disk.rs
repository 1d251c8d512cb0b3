//! The ext2 on-disk engine: superblock and group descriptors, block and
//! inode bitmaps, inodes, block maps (direct, indirect, double and triple
//! indirect) and linear directories, on a `BlockCache`.
//!
//! Owns `Ext2` (one mounted image).  Every operation runs under the one
//! `state` lock (`LockClass::DiskFs`): allocation bitmaps, free counts and
//! the block map of an inode are shared by every CPU that touches the
//! image, so they cannot be per-CPU; the VFS above keeps lookups and
//! cached file data off this lock (see `super`).
//!
//! Invariants: every block number read from the image is checked against
//! the image (`block_ok`) before it is followed or written, so a
//! malformed image gives `EIO`, never a panic or a write outside it; a
//! block is allocated only if its bitmap bit was clear and it is not
//! metadata of its group (`is_meta`), so even a corrupt bitmap cannot make
//! a data write land on a bitmap, an inode table or a descriptor; every
//! loop over on-disk structures is bounded by the structure's size.
//!
//! Must not: take any VFS lock (it is the innermost lock), or change an
//! image mounted read-only (`EROFS`).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::block::{BlockCache, BlockDevice};
use crate::env::Timespec;
use crate::errno::{Errno, FsResult};
use crate::lockstat::{LockClass, Mutex};

const MAGIC: u16 = 0xEF53;
/// The root directory's inode.
pub const ROOT_INO: u32 = 2;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_SUPPORTED: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE;
/// `EXT2_INDEX_FL`: the directory has an htree index.
const INDEX_FL: u32 = 0x1000;
const STATE_VALID: u16 = 1;
/// Most links an inode may have (Linux's `EXT2_LINK_MAX`).
pub const LINK_MAX: u32 = 32000;
/// Cache capacity in blocks.
const CACHE_BLOCKS: usize = 4096;

/// Why a mount failed: the errno for the caller and a sentence for a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountError {
    pub errno: Errno,
    pub reason: &'static str,
}

impl From<MountError> for Errno {
    fn from(e: MountError) -> Errno {
        e.errno
    }
}

fn bad(reason: &'static str) -> MountError {
    MountError {
        errno: Errno::EINVAL,
        reason,
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Inode types as `i_mode` bits.
pub mod mode {
    pub const S_IFMT: u16 = 0o170000;
    pub const S_IFSOCK: u16 = 0o140000;
    pub const S_IFLNK: u16 = 0o120000;
    pub const S_IFREG: u16 = 0o100000;
    pub const S_IFBLK: u16 = 0o060000;
    pub const S_IFDIR: u16 = 0o040000;
    pub const S_IFCHR: u16 = 0o020000;
    pub const S_IFIFO: u16 = 0o010000;
}

/// Directory-entry file type for an `i_mode`.
fn dirent_type(m: u16) -> u8 {
    match m & mode::S_IFMT {
        mode::S_IFREG => 1,
        mode::S_IFDIR => 2,
        mode::S_IFCHR => 3,
        mode::S_IFBLK => 4,
        mode::S_IFIFO => 5,
        mode::S_IFSOCK => 6,
        mode::S_IFLNK => 7,
        _ => 0,
    }
}

/// Fixed facts about the image, checked at mount.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub block_size: usize,
    pub blocks_count: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub inodes_per_group: u32,
    pub inodes_count: u32,
    pub inode_size: usize,
    pub first_ino: u32,
    pub groups: u32,
    pub rev: u32,
    filetype: bool,
    sparse_super: bool,
    itable_blocks: u64,
    reserved_gdt: u64,
    gdt_blocks: u64,
}

#[derive(Clone, Copy)]
struct Group {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    free_blocks: u32,
    free_inodes: u32,
    used_dirs: u32,
}

struct State {
    groups: Vec<Group>,
    free_blocks: u64,
    free_inodes: u64,
    /// A group's descriptor changed since the last `sync`.
    gd_dirty: bool,
    /// Inodes whose last in-memory reference died with no link left:
    /// their blocks and inode are freed at the next operation.
    orphans: Vec<u32>,
}

/// One inode as stored, with its number; fields are read and written in
/// place so unknown fields survive.
#[derive(Clone)]
pub struct DiskInode {
    pub ino: u32,
    raw: Vec<u8>,
}

impl DiskInode {
    pub fn mode(&self) -> u16 {
        le16(&self.raw, 0)
    }
    pub fn uid(&self) -> u32 {
        le16(&self.raw, 2) as u32 | (le16(&self.raw, 120) as u32) << 16
    }
    pub fn gid(&self) -> u32 {
        le16(&self.raw, 24) as u32 | (le16(&self.raw, 122) as u32) << 16
    }
    pub fn links(&self) -> u32 {
        le16(&self.raw, 26) as u32
    }
    pub fn flags(&self) -> u32 {
        le32(&self.raw, 32)
    }
    pub fn i_blocks(&self) -> u32 {
        le32(&self.raw, 28)
    }
    fn block(&self, i: usize) -> u32 {
        le32(&self.raw, 40 + 4 * i)
    }
    fn set_block(&mut self, i: usize, v: u32) {
        put32(&mut self.raw, 40 + 4 * i, v)
    }
    pub fn is_dir(&self) -> bool {
        self.mode() & mode::S_IFMT == mode::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.mode() & mode::S_IFMT == mode::S_IFREG
    }
    /// Size in bytes (`i_size_high` counts for regular files).
    pub fn size(&self) -> u64 {
        let lo = le32(&self.raw, 4) as u64;
        if self.is_reg() {
            lo | (le32(&self.raw, 108) as u64) << 32
        } else {
            lo
        }
    }
    fn set_size(&mut self, s: u64) {
        put32(&mut self.raw, 4, s as u32);
        if self.is_reg() {
            put32(&mut self.raw, 108, (s >> 32) as u32);
        }
    }
    fn extra_isize(&self) -> usize {
        if self.raw.len() > 128 {
            le16(&self.raw, 128) as usize
        } else {
            0
        }
    }
    fn time(&self, at: usize, extra: usize) -> Timespec {
        let sec = le32(&self.raw, at) as i32 as i64;
        // The extra word holds nanoseconds << 2 and two epoch bits.
        if self.extra_isize() >= extra + 4 - 128 && self.raw.len() >= extra + 4 {
            let x = le32(&self.raw, extra);
            let nsec = (x >> 2).min(999_999_999);
            let epoch = (x & 3) as i64;
            return Timespec {
                sec: sec + (epoch << 32),
                nsec,
            };
        }
        Timespec { sec, nsec: 0 }
    }
    fn set_time(&mut self, at: usize, extra: usize, t: Timespec) {
        put32(&mut self.raw, at, t.sec as u32);
        if self.extra_isize() >= extra + 4 - 128 && self.raw.len() >= extra + 4 {
            let epoch = ((t.sec - (t.sec as i32 as i64)) >> 32) as u32 & 3;
            put32(&mut self.raw, extra, (t.nsec.min(999_999_999) << 2) | epoch);
        }
    }
    pub fn atime(&self) -> Timespec {
        self.time(8, 140)
    }
    pub fn ctime(&self) -> Timespec {
        self.time(12, 132)
    }
    pub fn mtime(&self) -> Timespec {
        self.time(16, 136)
    }
    /// Device number of a device node (old or new encoding in `i_block`).
    pub fn rdev(&self) -> u64 {
        let old = self.block(0);
        let (major, minor) = if old != 0 {
            ((old >> 8) & 0xff, old & 0xff)
        } else {
            let new = self.block(1);
            ((new >> 8) & 0xfff, (new & 0xff) | ((new >> 12) & 0xfff00))
        };
        ((major as u64) << 8) | (minor as u64 & 0xff) | ((minor as u64 & !0xff) << 12)
    }
    /// Whether a symlink keeps its target in `i_block` (no data block).
    /// As Linux: no blocks besides an extended-attribute block.
    fn fast_symlink(&self, block_size: usize) -> bool {
        let ea = if le32(&self.raw, 104) != 0 {
            (block_size / 512) as u32
        } else {
            0
        };
        self.i_blocks() == ea && self.size() < 60
    }
}

/// What the VFS sets on an inode at write-back.  Not the link count:
/// the namespace operations (`create`, `link`, `unlink`, `rename`,
/// `exchange`) keep it on disk, under the engine lock, at the moment
/// they change a name.  A write-back copies a snapshot of the in-memory
/// inode taken without that lock, so its count may predate an unlink
/// that already reached the disk: writing it back would leave an inode
/// with a link and no name (unattached) that `release` never frees.
#[derive(Clone, Copy, Debug)]
pub struct Attrs {
    /// Permission bits (the type bits stay).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

/// A directory record: (offset, record length, inode, name).
type Record = (usize, usize, u32, Vec<u8>);

/// One directory entry read from disk.
pub struct DirEnt {
    pub name: Vec<u8>,
    pub ino: u32,
}

/// One ext2 image.
pub struct Ext2 {
    cache: BlockCache,
    pub geo: Geometry,
    ro: bool,
    state: Mutex<State>,
    /// Set by `unmount`: the image may be mounted anew by another `Ext2`,
    /// so this one never writes again.
    detached: core::sync::atomic::AtomicBool,
}

impl Ext2 {
    /// Reads and checks the superblock and group descriptors of `dev`.
    /// `read_only` asks for a read-only mount; unknown read-only-compatible
    /// features force one, unknown incompatible features refuse the mount.
    pub fn open(dev: Arc<dyn BlockDevice>, read_only: bool) -> Result<Ext2, MountError> {
        let mut sb = vec![0u8; 1024];
        if dev.sector_count() < 4 {
            return Err(bad("device too small for an ext2 superblock"));
        }
        dev.read_sectors(2, &mut sb).map_err(|e| MountError {
            errno: e,
            reason: "cannot read the superblock",
        })?;
        if le16(&sb, 56) != MAGIC {
            return Err(bad("no ext2 magic number in the superblock"));
        }
        let rev = le32(&sb, 76);
        let log = le32(&sb, 24);
        if log > 2 {
            return Err(bad("block size larger than 4096 (the page size)"));
        }
        let block_size = 1024usize << log;
        let blocks_count = le32(&sb, 4) as u64;
        let inodes_count = le32(&sb, 0);
        let first_data_block = le32(&sb, 20) as u64;
        let blocks_per_group = le32(&sb, 32) as u64;
        let inodes_per_group = le32(&sb, 40);
        let (inode_size, first_ino, incompat, ro_compat) = if rev == 0 {
            (128usize, 11u32, 0u32, 0u32)
        } else {
            (
                le16(&sb, 88) as usize,
                le32(&sb, 84),
                le32(&sb, 96),
                le32(&sb, 100),
            )
        };
        if rev > 1 {
            return Err(bad("unknown ext2 revision"));
        }
        if incompat & !INCOMPAT_SUPPORTED != 0 {
            return Err(MountError {
                errno: Errno::EINVAL,
                reason: "image has incompatible features this ext2 does not support \
                         (e.g. extents, 64bit, flex_bg, meta_bg, journal recovery)",
            });
        }
        let dev_blocks = dev.sector_count() / (block_size as u64 / 512);
        if blocks_count == 0 || blocks_count > dev_blocks {
            return Err(bad("block count beyond the device"));
        }
        if first_data_block != (block_size == 1024) as u64 || first_data_block >= blocks_count {
            return Err(bad("bad first data block"));
        }
        let bits = 8 * block_size as u64;
        if blocks_per_group == 0 || blocks_per_group > bits {
            return Err(bad("bad blocks per group"));
        }
        if inodes_per_group == 0 || inodes_per_group as u64 > bits {
            return Err(bad("bad inodes per group"));
        }
        if inode_size < 128 || inode_size > block_size || !inode_size.is_power_of_two() {
            return Err(bad("bad inode size"));
        }
        let groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        if groups == 0 || groups > u32::MAX as u64 {
            return Err(bad("bad group count"));
        }
        if inodes_count as u64 > groups * inodes_per_group as u64 || inodes_count < ROOT_INO {
            return Err(bad("bad inode count"));
        }
        if first_ino <= ROOT_INO || first_ino > inodes_count {
            return Err(bad("bad first inode"));
        }
        let itable_blocks =
            (inodes_per_group as u64 * inode_size as u64).div_ceil(block_size as u64);
        let gdt_blocks = (groups * 32).div_ceil(block_size as u64);
        let reserved_gdt = if rev >= 1 && le32(&sb, 92) & 0x10 != 0 {
            le16(&sb, 206) as u64
        } else {
            0
        };
        let ro = read_only || dev.read_only() || ro_compat & !RO_COMPAT_SUPPORTED != 0;
        let geo = Geometry {
            block_size,
            blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inodes_count,
            inode_size,
            first_ino,
            groups: groups as u32,
            rev,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            itable_blocks,
            reserved_gdt,
            gdt_blocks,
        };
        let cache = BlockCache::new(dev, block_size, CACHE_BLOCKS).map_err(|e| MountError {
            errno: e,
            reason: "cannot cache the device",
        })?;
        let gdt_start = first_data_block + 1;
        if gdt_start + gdt_blocks > blocks_count {
            return Err(bad("group descriptors beyond the image"));
        }
        let mut gs = Vec::new();
        let (mut free_blocks, mut free_inodes) = (0u64, 0u64);
        for g in 0..groups {
            let at = g * 32;
            let blk = gdt_start + at / block_size as u64;
            let off = (at % block_size as u64) as usize;
            let d = cache
                .read(blk, |b| b[off..off + 32].to_vec())
                .map_err(|e| MountError {
                    errno: e,
                    reason: "cannot read the group descriptors",
                })?;
            let gr = Group {
                block_bitmap: le32(&d, 0) as u64,
                inode_bitmap: le32(&d, 4) as u64,
                inode_table: le32(&d, 8) as u64,
                free_blocks: le16(&d, 12) as u32,
                free_inodes: le16(&d, 14) as u32,
                used_dirs: le16(&d, 16) as u32,
            };
            let inside = |b: u64| b >= first_data_block && b < blocks_count;
            if !inside(gr.block_bitmap)
                || !inside(gr.inode_bitmap)
                || !inside(gr.inode_table)
                || gr.inode_table + itable_blocks > blocks_count
            {
                return Err(bad("group descriptor points outside the image"));
            }
            free_blocks += gr.free_blocks as u64;
            free_inodes += gr.free_inodes as u64;
            gs.push(gr);
        }
        // Bitmaps and inode tables must not overlap each other or the
        // primary superblock and descriptors: else a bitmap update could
        // land in an inode table.
        let mut ranges: Vec<(u64, u64)> = vec![(0, gdt_start + gdt_blocks + reserved_gdt)];
        for gr in &gs {
            ranges.push((gr.block_bitmap, 1));
            ranges.push((gr.inode_bitmap, 1));
            ranges.push((gr.inode_table, itable_blocks));
        }
        ranges.sort_unstable();
        if ranges.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
            return Err(bad("group metadata overlaps"));
        }
        let fs = Ext2 {
            cache,
            geo,
            ro,
            state: Mutex::new(
                LockClass::DiskFs,
                State {
                    groups: gs,
                    free_blocks,
                    free_inodes,
                    gd_dirty: false,
                    orphans: Vec::new(),
                },
            ),
            detached: core::sync::atomic::AtomicBool::new(false),
        };
        let root = fs.read_inode(ROOT_INO).map_err(|e| MountError {
            errno: e,
            reason: "cannot read the root inode",
        })?;
        if !root.is_dir() {
            return Err(bad("root inode is not a directory"));
        }
        if !fs.ro {
            // Mounted read-write: not clean until unmounted (as Linux).
            fs.patch_super(|sb| {
                let st = le16(sb, 58);
                put16(sb, 58, st & !STATE_VALID);
                put16(sb, 52, le16(sb, 52).wrapping_add(1));
            })
            .map_err(|e| MountError {
                errno: e,
                reason: "cannot write the superblock",
            })?;
        }
        Ok(fs)
    }

    pub fn read_only(&self) -> bool {
        self.ro
    }

    /// Largest file the block map can address (and `i_blocks`, counted in
    /// 512-byte units in 32 bits, can count).
    pub fn max_file_size(&self) -> u64 {
        let p = self.ptrs();
        let blocks = 12 + p + p * p + p * p * p;
        let by_map = blocks.saturating_mul(self.geo.block_size as u64);
        by_map.min((1u64 << 32) * 512 - self.geo.block_size as u64)
    }

    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    fn writable(&self) -> FsResult<()> {
        if self.ro {
            Err(Errno::EROFS)
        } else if self.is_detached() {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }

    /// Whether the image was unmounted (this `Ext2` no longer writes).
    pub fn is_detached(&self) -> bool {
        self.detached.load(core::sync::atomic::Ordering::Acquire)
    }

    /// Runs `f` on the superblock's bytes in the cache (marks it dirty).
    fn patch_super(&self, f: impl FnOnce(&mut [u8])) -> FsResult<()> {
        let (blk, off) = if self.geo.block_size == 1024 {
            (1, 0)
        } else {
            (0, 1024)
        };
        self.cache.write(blk, |b| f(&mut b[off..off + 1024]))
    }

    /// Whether `b` is a block a pointer may name (0 is a hole).
    fn block_ok(&self, b: u64) -> bool {
        b >= self.geo.first_data_block && b < self.geo.blocks_count
    }

    fn check_block(&self, b: u32) -> FsResult<u64> {
        let b = b as u64;
        if b != 0 && !self.block_ok(b) {
            return Err(Errno::EIO);
        }
        Ok(b)
    }

    fn group_has_super(&self, g: u64) -> bool {
        if !self.geo.sparse_super || g <= 1 {
            return true;
        }
        for p in [3u64, 5, 7] {
            let mut x = p;
            while x < g {
                x *= p;
            }
            if x == g {
                return true;
            }
        }
        false
    }

    /// Whether `b` is metadata of its group (superblock or descriptor
    /// copy, reserved descriptor blocks, bitmaps, inode table).
    fn is_meta(&self, st: &State, b: u64) -> bool {
        if b < self.geo.first_data_block || b >= self.geo.blocks_count {
            return true;
        }
        let g = (b - self.geo.first_data_block) / self.geo.blocks_per_group;
        let start = self.geo.first_data_block + g * self.geo.blocks_per_group;
        if self.group_has_super(g) && b < start + 1 + self.geo.gdt_blocks + self.geo.reserved_gdt {
            return true;
        }
        let Some(gr) = st.groups.get(g as usize) else {
            return true;
        };
        b == gr.block_bitmap
            || b == gr.inode_bitmap
            || (b >= gr.inode_table && b < gr.inode_table + self.geo.itable_blocks)
    }

    // ---- inodes ------------------------------------------------------

    fn inode_loc(&self, st: &State, ino: u32) -> FsResult<(u64, usize)> {
        if ino == 0 || ino > self.geo.inodes_count {
            return Err(Errno::EIO);
        }
        let i = (ino - 1) as u64;
        let g = (i / self.geo.inodes_per_group as u64) as usize;
        let idx = i % self.geo.inodes_per_group as u64;
        let gr = st.groups.get(g).ok_or(Errno::EIO)?;
        let byte = idx * self.geo.inode_size as u64;
        let bs = self.geo.block_size as u64;
        Ok((gr.inode_table + byte / bs, (byte % bs) as usize))
    }

    fn read_inode_locked(&self, st: &State, ino: u32) -> FsResult<DiskInode> {
        let (blk, off) = self.inode_loc(st, ino)?;
        let n = self.geo.inode_size;
        let raw = self.cache.read(blk, |b| b[off..off + n].to_vec())?;
        Ok(DiskInode { ino, raw })
    }

    /// The inode `ino` as stored.
    pub fn read_inode(&self, ino: u32) -> FsResult<DiskInode> {
        let st = self.state.lock();
        self.read_inode_locked(&st, ino)
    }

    fn write_inode_locked(&self, st: &State, di: &DiskInode) -> FsResult<()> {
        self.writable()?;
        let (blk, off) = self.inode_loc(st, di.ino)?;
        self.cache
            .write(blk, |b| b[off..off + di.raw.len()].copy_from_slice(&di.raw))
    }

    // ---- allocation --------------------------------------------------

    fn write_group(&self, st: &mut State, g: usize) -> FsResult<()> {
        let gr = st.groups[g];
        let at = g as u64 * 32;
        let bs = self.geo.block_size as u64;
        let blk = self.geo.first_data_block + 1 + at / bs;
        let off = (at % bs) as usize;
        self.cache.write(blk, |b| {
            put16(b, off + 12, gr.free_blocks as u16);
            put16(b, off + 14, gr.free_inodes as u16);
            put16(b, off + 16, gr.used_dirs as u16);
        })?;
        st.gd_dirty = true;
        Ok(())
    }

    /// A free block, preferably `near` (the block after the file's
    /// previous one, so files stay contiguous) or else in group `goal`,
    /// marked used and zeroed in the cache.
    fn alloc_block(&self, st: &mut State, goal: usize, near: u64) -> FsResult<u64> {
        self.writable()?;
        let n = st.groups.len();
        let (goal, from) = if self.block_ok(near) {
            let rel = near - self.geo.first_data_block;
            (
                (rel / self.geo.blocks_per_group) as usize,
                (rel % self.geo.blocks_per_group) as usize,
            )
        } else {
            (goal, 0)
        };
        for k in 0..n {
            let g = (goal + k) % n;
            if st.groups[g].free_blocks == 0 {
                continue;
            }
            let start = self.geo.first_data_block + g as u64 * self.geo.blocks_per_group;
            let count = self.geo.blocks_per_group.min(self.geo.blocks_count - start) as usize;
            let bitmap = st.groups[g].block_bitmap;
            // In the goal group, first from the hint on, then from its start.
            let first = if k == 0 { from.min(count) } else { 0 };
            let found = self.cache.read(bitmap, |b| {
                let free = |i: usize| {
                    b[i / 8] & (1 << (i % 8)) == 0 && !self.is_meta(st, start + i as u64)
                };
                (first..count)
                    .find(|&i| free(i))
                    .or_else(|| (0..first).find(|&i| free(i)))
            })?;
            let Some(i) = found else { continue };
            self.cache.write(bitmap, |b| b[i / 8] |= 1 << (i % 8))?;
            st.groups[g].free_blocks -= 1;
            st.free_blocks = st.free_blocks.saturating_sub(1);
            self.write_group(st, g)?;
            let blk = start + i as u64;
            self.cache.zero(blk)?;
            return Ok(blk);
        }
        Err(Errno::ENOSPC)
    }

    fn free_block(&self, st: &mut State, blk: u64) -> FsResult<()> {
        if !self.block_ok(blk) || self.is_meta(st, blk) {
            return Err(Errno::EIO);
        }
        let g = ((blk - self.geo.first_data_block) / self.geo.blocks_per_group) as usize;
        let i = ((blk - self.geo.first_data_block) % self.geo.blocks_per_group) as usize;
        let bitmap = st.groups[g].block_bitmap;
        let was = self.cache.write(bitmap, |b| {
            let was = b[i / 8] & (1 << (i % 8)) != 0;
            b[i / 8] &= !(1 << (i % 8));
            was
        })?;
        if !was {
            // Freed twice: the image is corrupt (a block shared by two
            // owners); keep the counts as they are.
            return Err(Errno::EIO);
        }
        self.cache.forget(blk);
        st.groups[g].free_blocks += 1;
        st.free_blocks += 1;
        self.write_group(st, g)
    }

    /// A free inode number, near `near` for files, in the emptiest group
    /// for directories; its bitmap bit is set.
    fn alloc_ino(&self, st: &mut State, near: u32, dir: bool) -> FsResult<u32> {
        self.writable()?;
        let n = st.groups.len();
        let ipg = self.geo.inodes_per_group;
        let goal = if dir {
            (0..n)
                .max_by_key(|&g| st.groups[g].free_inodes)
                .unwrap_or(0)
        } else {
            ((near.saturating_sub(1)) / ipg) as usize % n
        };
        for k in 0..n {
            let g = (goal + k) % n;
            if st.groups[g].free_inodes == 0 {
                continue;
            }
            let bitmap = st.groups[g].inode_bitmap;
            let first = g as u32 * ipg + 1;
            let limit = ipg.min(self.geo.inodes_count.saturating_sub(g as u32 * ipg)) as usize;
            let found = self.cache.read(bitmap, |b| {
                (0..limit).find(|&i| {
                    b[i / 8] & (1 << (i % 8)) == 0 && first + i as u32 >= self.geo.first_ino
                })
            })?;
            let Some(i) = found else { continue };
            self.cache.write(bitmap, |b| b[i / 8] |= 1 << (i % 8))?;
            st.groups[g].free_inodes -= 1;
            st.free_inodes = st.free_inodes.saturating_sub(1);
            if dir {
                st.groups[g].used_dirs += 1;
            }
            self.write_group(st, g)?;
            return Ok(first + i as u32);
        }
        Err(Errno::ENOSPC)
    }

    fn free_ino(&self, st: &mut State, ino: u32, dir: bool) -> FsResult<()> {
        if ino < self.geo.first_ino || ino > self.geo.inodes_count {
            return Err(Errno::EIO);
        }
        let g = ((ino - 1) / self.geo.inodes_per_group) as usize;
        let i = ((ino - 1) % self.geo.inodes_per_group) as usize;
        let bitmap = st.groups[g].inode_bitmap;
        let was = self.cache.write(bitmap, |b| {
            let was = b[i / 8] & (1 << (i % 8)) != 0;
            b[i / 8] &= !(1 << (i % 8));
            was
        })?;
        if !was {
            return Err(Errno::EIO);
        }
        st.groups[g].free_inodes += 1;
        st.free_inodes += 1;
        if dir {
            st.groups[g].used_dirs = st.groups[g].used_dirs.saturating_sub(1);
        }
        self.write_group(st, g)
    }

    fn group_of(&self, ino: u32) -> usize {
        ((ino.saturating_sub(1)) / self.geo.inodes_per_group) as usize
    }

    // ---- block maps --------------------------------------------------

    fn ptrs(&self) -> u64 {
        (self.geo.block_size / 4) as u64
    }

    /// Path through the block map to logical block `lblk`: the slot in
    /// `i_block` and the index at each indirect level.
    fn path(&self, lblk: u64) -> FsResult<(usize, Vec<u64>)> {
        let p = self.ptrs();
        if lblk < 12 {
            return Ok((lblk as usize, Vec::new()));
        }
        let mut l = lblk - 12;
        if l < p {
            return Ok((12, vec![l]));
        }
        l -= p;
        if l < p * p {
            return Ok((13, vec![l / p, l % p]));
        }
        l -= p * p;
        if l < p * p * p {
            return Ok((14, vec![l / (p * p), (l / p) % p, l % p]));
        }
        Err(Errno::EFBIG)
    }

    /// Physical block of logical block `lblk` of `di` (0: a hole).
    fn bmap(&self, di: &DiskInode, lblk: u64) -> FsResult<u64> {
        let (slot, idx) = self.path(lblk)?;
        let mut blk = self.check_block(di.block(slot))?;
        for i in idx {
            if blk == 0 {
                return Ok(0);
            }
            let at = i as usize * 4;
            blk = self.check_block(self.cache.read(blk, |b| le32(b, at))?)?;
        }
        Ok(blk)
    }

    /// Like `bmap`, allocating the block (and indirect blocks) if missing.
    fn bmap_alloc(&self, st: &mut State, di: &mut DiskInode, lblk: u64) -> FsResult<u64> {
        let (slot, idx) = self.path(lblk)?;
        let goal = self.group_of(di.ino);
        // Next to the previous logical block, when it is mapped.
        let mut near = match lblk.checked_sub(1) {
            Some(prev) => self.bmap(di, prev)?.wrapping_add(1),
            None => 0,
        };
        let sectors = (self.geo.block_size / 512) as u32;
        let mut blk = self.check_block(di.block(slot))?;
        if blk == 0 {
            blk = self.alloc_block(st, goal, near)?;
            near = blk + 1;
            di.set_block(slot, blk as u32);
            let nb = di.i_blocks().wrapping_add(sectors);
            put32(&mut di.raw, 28, nb);
        }
        for i in idx {
            let at = i as usize * 4;
            let mut next = self.check_block(self.cache.read(blk, |b| le32(b, at))?)?;
            if next == 0 {
                next = self.alloc_block(st, goal, near)?;
                near = next + 1;
                self.cache.write(blk, |b| put32(b, at, next as u32))?;
                let nb = di.i_blocks().wrapping_add(sectors);
                put32(&mut di.raw, 28, nb);
            }
            blk = next;
        }
        Ok(blk)
    }

    /// Frees the blocks of the subtree `blk` (at `level`: 0 a data block)
    /// that map logical blocks from `first` on; `base` is the subtree's
    /// first logical block.  Returns whether `blk` itself was freed.
    fn free_tree(
        &self,
        st: &mut State,
        di: &mut DiskInode,
        blk: u64,
        level: u32,
        base: u64,
        first: u64,
    ) -> FsResult<bool> {
        if blk == 0 {
            return Ok(false);
        }
        let sectors = (self.geo.block_size / 512) as u32;
        let span = self.ptrs().pow(level);
        if base + span <= first {
            return Ok(false);
        }
        if level > 0 {
            let child_span = self.ptrs().pow(level - 1);
            let entries: Vec<u32> = self.cache.read(blk, |b| {
                (0..self.ptrs() as usize).map(|i| le32(b, i * 4)).collect()
            })?;
            for (i, &c) in entries.iter().enumerate() {
                let c = self.check_block(c)?;
                let cbase = base + i as u64 * child_span;
                if c != 0 && self.free_tree(st, di, c, level - 1, cbase, first)? {
                    self.cache.write(blk, |b| put32(b, i * 4, 0))?;
                }
            }
            if base < first {
                return Ok(false);
            }
        }
        self.free_block(st, blk)?;
        let nb = di.i_blocks().saturating_sub(sectors);
        put32(&mut di.raw, 28, nb);
        Ok(true)
    }

    /// Frees every block of `di` mapping logical blocks from `first` on.
    fn free_from(&self, st: &mut State, di: &mut DiskInode, first: u64) -> FsResult<()> {
        let p = self.ptrs();
        let roots = [
            (12usize, 1u32, 12u64),
            (13, 2, 12 + p),
            (14, 3, 12 + p + p * p),
        ];
        for i in (first.min(12) as usize)..12 {
            let b = self.check_block(di.block(i))?;
            if self.free_tree(st, di, b, 0, i as u64, first)? {
                di.set_block(i, 0);
            }
        }
        for (slot, level, base) in roots {
            let b = self.check_block(di.block(slot))?;
            if self.free_tree(st, di, b, level, base, first)? {
                di.set_block(slot, 0);
            }
        }
        Ok(())
    }

    // ---- file data ---------------------------------------------------

    /// `b`, checked before a data or directory write: a pointer to a
    /// bitmap, an inode table or a descriptor (a corrupt image) is `EIO`.
    fn data_block(&self, st: &State, b: u64) -> FsResult<u64> {
        if self.is_meta(st, b) {
            return Err(Errno::EIO);
        }
        Ok(b)
    }

    /// Pages (4 KiB) below `pages` holding at least one mapped block of
    /// `di`, found by walking only the non-zero pointers.
    pub fn mapped_pages(&self, di: &DiskInode, pages: u64) -> FsResult<Vec<u64>> {
        let _st = self.state.lock();
        let per_page = (4096 / self.geo.block_size) as u64;
        let limit = pages * per_page;
        let mut out: Vec<u64> = Vec::new();
        let mut push = |lblk: u64| {
            let p = lblk / per_page;
            if lblk < limit && out.last() != Some(&p) {
                out.push(p);
            }
        };
        let p = self.ptrs();
        for i in 0..12 {
            if self.check_block(di.block(i))? != 0 {
                push(i as u64);
            }
        }
        let roots = [
            (12usize, 1u32, 12u64),
            (13, 2, 12 + p),
            (14, 3, 12 + p + p * p),
        ];
        for (slot, level, base) in roots {
            if base >= limit {
                break;
            }
            let b = self.check_block(di.block(slot))?;
            self.walk_mapped(b, level, base, limit, &mut push)?;
        }
        Ok(out)
    }

    fn walk_mapped(
        &self,
        blk: u64,
        level: u32,
        base: u64,
        limit: u64,
        push: &mut impl FnMut(u64),
    ) -> FsResult<()> {
        if blk == 0 || base >= limit {
            return Ok(());
        }
        if level == 0 {
            push(base);
            return Ok(());
        }
        let span = self.ptrs().pow(level - 1);
        let entries: Vec<u32> = self.cache.read(blk, |b| {
            (0..self.ptrs() as usize).map(|i| le32(b, i * 4)).collect()
        })?;
        for (i, &c) in entries.iter().enumerate() {
            let c = self.check_block(c)?;
            self.walk_mapped(c, level - 1, base + i as u64 * span, limit, push)?;
        }
        Ok(())
    }

    /// Reads the bytes of `di` at `offset` (a multiple of the block size)
    /// into `out` (holes as zeros); returns whether any block was mapped.
    pub fn read_data(&self, di: &DiskInode, offset: u64, out: &mut [u8]) -> FsResult<bool> {
        let _st = self.state.lock();
        let bs = self.geo.block_size;
        let mut any = false;
        for (k, chunk) in out.chunks_mut(bs).enumerate() {
            let lblk = offset / bs as u64 + k as u64;
            let b = self.bmap(di, lblk)?;
            if b == 0 {
                chunk.fill(0);
            } else {
                any = true;
                self.cache.read_into(b, chunk)?;
            }
        }
        Ok(any)
    }

    /// Writes `data` at `offset` (a multiple of the block size) of inode
    /// `ino`, allocating blocks; all-zero blocks that are holes stay holes.
    pub fn write_data(&self, ino: u32, offset: u64, data: &[u8]) -> FsResult<()> {
        self.writable()?;
        let mut st = self.state.lock();
        self.reap(&mut st);
        let mut di = self.read_inode_locked(&st, ino)?;
        let bs = self.geo.block_size;
        let mut changed = false;
        for (k, chunk) in data.chunks(bs).enumerate() {
            let lblk = offset / bs as u64 + k as u64;
            let mut b = self.bmap(&di, lblk)?;
            if b == 0 {
                if chunk.iter().all(|&x| x == 0) {
                    continue;
                }
                b = self.bmap_alloc(&mut st, &mut di, lblk)?;
                changed = true;
            }
            self.cache.overwrite(self.data_block(&st, b)?, chunk)?;
        }
        if changed {
            self.write_inode_locked(&st, &di)?;
        }
        Ok(())
    }

    /// Sets the stored size of regular file `ino` and frees the blocks
    /// past it.
    pub fn set_size(&self, ino: u32, size: u64) -> FsResult<()> {
        self.writable()?;
        let mut st = self.state.lock();
        let mut di = self.read_inode_locked(&st, ino)?;
        if size == di.size() {
            return Ok(());
        }
        if size > 0x7fff_ffff {
            // Sizes past 2 GiB need `large_file` (Linux sets it the same way).
            self.patch_super(|sb| {
                if le32(sb, 76) >= 1 {
                    put32(sb, 100, le32(sb, 100) | RO_COMPAT_LARGE_FILE);
                }
            })?;
        }
        if size < di.size() {
            let first = size.div_ceil(self.geo.block_size as u64);
            self.free_from(&mut st, &mut di, first)?;
            // Zero the tail of a kept partial block, so growing again
            // reads zeros there.
            let tail = (size % self.geo.block_size as u64) as usize;
            if tail != 0 {
                let b = self.bmap(&di, size / self.geo.block_size as u64)?;
                if b != 0 {
                    let b = self.data_block(&st, b)?;
                    self.cache.write(b, |d| d[tail..].fill(0))?;
                }
            }
        }
        di.set_size(size);
        self.write_inode_locked(&st, &di)
    }

    /// Writes the VFS's attributes into inode `ino` (not its link count:
    /// see `Attrs`).  Nothing for an inode with no name left: it is freed
    /// once its last user is gone.
    pub fn set_attrs(&self, ino: u32, a: &Attrs) -> FsResult<()> {
        self.writable()?;
        let st = self.state.lock();
        let mut di = self.read_inode_locked(&st, ino)?;
        if di.links() == 0 {
            return Ok(());
        }
        let m = (di.mode() & mode::S_IFMT) | (a.perm & 0o7777) as u16;
        put16(&mut di.raw, 0, m);
        put16(&mut di.raw, 2, a.uid as u16);
        put16(&mut di.raw, 120, (a.uid >> 16) as u16);
        put16(&mut di.raw, 24, a.gid as u16);
        put16(&mut di.raw, 122, (a.gid >> 16) as u16);
        di.set_time(8, 140, a.atime);
        di.set_time(16, 136, a.mtime);
        di.set_time(12, 132, a.ctime);
        self.write_inode_locked(&st, &di)
    }

    // ---- directories -------------------------------------------------

    /// Parses one directory block: (offset, rec_len, inode, name) of every
    /// record, or `EIO` when a record is malformed.
    fn parse_block(&self, b: &[u8]) -> FsResult<Vec<Record>> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < b.len() {
            if off + 8 > b.len() {
                return Err(Errno::EIO);
            }
            let ino = le32(b, off);
            let rec = le16(b, off + 4) as usize;
            let nlen = if self.geo.filetype {
                b[off + 6] as usize
            } else {
                le16(b, off + 6) as usize
            };
            if rec < 8
                || !rec.is_multiple_of(4)
                || off + rec > b.len()
                || (ino != 0 && 8 + nlen > rec)
            {
                return Err(Errno::EIO);
            }
            if ino > self.geo.inodes_count {
                return Err(Errno::EIO);
            }
            let name = if ino != 0 {
                b[off + 8..off + 8 + nlen].to_vec()
            } else {
                Vec::new()
            };
            out.push((off, rec, ino, name));
            off += rec;
        }
        Ok(out)
    }

    fn dir_blocks(&self, di: &DiskInode) -> FsResult<u64> {
        let bs = self.geo.block_size as u64;
        let n = di.size() / bs;
        if !di.size().is_multiple_of(bs) || n > self.geo.blocks_count {
            return Err(Errno::EIO);
        }
        Ok(n)
    }

    /// The entries of directory `ino` ("." and ".." included).
    pub fn list_dir(&self, ino: u32) -> FsResult<Vec<DirEnt>> {
        let st = self.state.lock();
        let di = self.read_inode_locked(&st, ino)?;
        if !di.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let mut out = Vec::new();
        for l in 0..self.dir_blocks(&di)? {
            let b = self.bmap(&di, l)?;
            if b == 0 {
                return Err(Errno::EIO);
            }
            for (_, _, ino, name) in self.cache.read(b, |d| self.parse_block(d))?? {
                if ino != 0 {
                    out.push(DirEnt { name, ino });
                }
            }
        }
        Ok(out)
    }

    fn rec_size(n: usize) -> usize {
        (8 + n + 3) & !3
    }

    fn put_entry(&self, b: &mut [u8], off: usize, rec: usize, ino: u32, name: &[u8], ty: u8) {
        put32(b, off, ino);
        put16(b, off + 4, rec as u16);
        if self.geo.filetype {
            b[off + 6] = name.len() as u8;
            b[off + 7] = ty;
        } else {
            put16(b, off + 6, name.len() as u16);
        }
        b[off + 8..off + 8 + name.len()].copy_from_slice(name);
    }

    /// Clears the htree flag of a directory about to change (its index
    /// would go stale; the blocks stay valid as a linear directory).
    fn drop_index(&self, st: &State, di: &mut DiskInode) -> FsResult<()> {
        if di.flags() & INDEX_FL != 0 {
            let fl = di.flags() & !INDEX_FL;
            put32(&mut di.raw, 32, fl);
            self.write_inode_locked(st, di)?;
        }
        Ok(())
    }

    fn add_entry(&self, st: &mut State, dir: u32, name: &[u8], ino: u32, ty: u8) -> FsResult<()> {
        let mut di = self.read_inode_locked(st, dir)?;
        if !di.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        self.drop_index(st, &mut di)?;
        let need = Self::rec_size(name.len());
        let nblocks = self.dir_blocks(&di)?;
        for l in 0..nblocks {
            let b = self.bmap(&di, l)?;
            if b == 0 {
                return Err(Errno::EIO);
            }
            let recs = self.cache.read(b, |d| self.parse_block(d))??;
            for (off, rec, eino, ename) in recs {
                let used = if eino == 0 {
                    0
                } else {
                    Self::rec_size(ename.len())
                };
                if rec - used >= need {
                    let b = self.data_block(st, b)?;
                    self.cache.write(b, |d| {
                        if used == 0 {
                            self.put_entry(d, off, rec, ino, name, ty);
                        } else {
                            put16(d, off + 4, used as u16);
                            self.put_entry(d, off + used, rec - used, ino, name, ty);
                        }
                    })?;
                    return Ok(());
                }
            }
        }
        let b = self.bmap_alloc(st, &mut di, nblocks)?;
        let bs = self.geo.block_size;
        self.cache
            .write(b, |d| self.put_entry(d, 0, bs, ino, name, ty))?;
        di.set_size((nblocks + 1) * bs as u64);
        self.write_inode_locked(st, &di)
    }

    /// Finds `name` in `dir`: (block, offset, previous record's offset).
    fn find_entry(
        &self,
        st: &State,
        dir: u32,
        name: &[u8],
    ) -> FsResult<(u64, usize, Option<usize>, u32)> {
        let mut di = self.read_inode_locked(st, dir)?;
        self.drop_index(st, &mut di)?;
        for l in 0..self.dir_blocks(&di)? {
            let b = self.bmap(&di, l)?;
            if b == 0 {
                return Err(Errno::EIO);
            }
            let recs = self.cache.read(b, |d| self.parse_block(d))??;
            let mut prev = None;
            for (off, _, eino, ename) in recs {
                if eino != 0 && ename == name {
                    return Ok((b, off, prev, eino));
                }
                prev = Some(off);
            }
        }
        Err(Errno::ENOENT)
    }

    fn remove_entry(&self, st: &State, dir: u32, name: &[u8]) -> FsResult<u32> {
        let (b, off, prev, ino) = self.find_entry(st, dir, name)?;
        let b = self.data_block(st, b)?;
        self.cache.write(b, |d| match prev {
            Some(p) => {
                let merged = le16(d, p + 4) as usize + le16(d, off + 4) as usize;
                put16(d, p + 4, merged as u16);
            }
            None => put32(d, off, 0),
        })?;
        Ok(ino)
    }

    fn retarget_entry(&self, st: &State, dir: u32, name: &[u8], ino: u32, ty: u8) -> FsResult<()> {
        let (b, off, _, _) = self.find_entry(st, dir, name)?;
        let b = self.data_block(st, b)?;
        let ft = self.geo.filetype;
        self.cache.write(b, |d| {
            put32(d, off, ino);
            if ft {
                d[off + 7] = ty;
            }
        })
    }

    fn adjust_links(&self, st: &State, ino: u32, delta: i32) -> FsResult<()> {
        let mut di = self.read_inode_locked(st, ino)?;
        let l = (di.links() as i64 + delta as i64).clamp(0, u16::MAX as i64);
        put16(&mut di.raw, 26, l as u16);
        self.write_inode_locked(st, &di)
    }

    // ---- namespace operations (called by the VFS) ----------------------

    /// Creates an inode of type `m` (with permission bits) named `name` in
    /// `dir`; a symlink gets `target`, a device `rdev`.  Returns its number.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        dir: u32,
        name: &str,
        m: u16,
        uid: u32,
        gid: u32,
        rdev: u64,
        target: Option<&str>,
        now: Timespec,
    ) -> FsResult<u32> {
        self.writable()?;
        if name.len() > 255 {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut st = self.state.lock();
        self.reap(&mut st);
        let is_dir = m & mode::S_IFMT == mode::S_IFDIR;
        if is_dir && self.read_inode_locked(&st, dir)?.links() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        let ino = self.alloc_ino(&mut st, dir, is_dir)?;
        let mut di = DiskInode {
            ino,
            raw: vec![0u8; self.geo.inode_size],
        };
        if self.geo.inode_size > 128 {
            // Room for the nanosecond and creation-time fields, as mke2fs.
            put16(&mut di.raw, 128, 32.min(self.geo.inode_size - 128) as u16);
        }
        put16(&mut di.raw, 0, m);
        put16(&mut di.raw, 2, uid as u16);
        put16(&mut di.raw, 120, (uid >> 16) as u16);
        put16(&mut di.raw, 24, gid as u16);
        put16(&mut di.raw, 122, (gid >> 16) as u16);
        put16(&mut di.raw, 26, if is_dir { 2 } else { 1 });
        di.set_time(8, 140, now);
        di.set_time(12, 132, now);
        di.set_time(16, 136, now);
        let res = self.init_inode(&mut st, &mut di, dir, m, rdev, target);
        let res = res.and_then(|()| {
            self.write_inode_locked(&st, &di)?;
            self.add_entry(&mut st, dir, name.as_bytes(), ino, dirent_type(m))
        });
        if let Err(e) = res {
            // Undo: give back what the new inode got.
            let _ = self.free_from(&mut st, &mut di, 0);
            let _ = self.free_ino(&mut st, ino, is_dir);
            return Err(e);
        }
        if is_dir {
            self.adjust_links(&st, dir, 1)?;
        }
        Ok(ino)
    }

    fn init_inode(
        &self,
        st: &mut State,
        di: &mut DiskInode,
        dir: u32,
        m: u16,
        rdev: u64,
        target: Option<&str>,
    ) -> FsResult<()> {
        let bs = self.geo.block_size;
        match m & mode::S_IFMT {
            mode::S_IFDIR => {
                let b = self.bmap_alloc(st, di, 0)?;
                let ino = di.ino;
                self.cache.write(b, |d| {
                    self.put_entry(d, 0, 12, ino, b".", 2);
                    self.put_entry(d, 12, bs - 12, dir, b"..", 2);
                })?;
                di.set_size(bs as u64);
            }
            mode::S_IFLNK => {
                let t = target.unwrap_or("").as_bytes();
                if t.len() < 60 {
                    di.raw[40..40 + t.len()].copy_from_slice(t);
                } else {
                    for (k, chunk) in t.chunks(bs).enumerate() {
                        let b = self.bmap_alloc(st, di, k as u64)?;
                        self.cache
                            .write(b, |d| d[..chunk.len()].copy_from_slice(chunk))?;
                    }
                }
                di.set_size(t.len() as u64);
            }
            mode::S_IFCHR | mode::S_IFBLK => {
                let major = ((rdev >> 8) & 0xfff) as u32;
                let minor = ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32;
                if major < 256 && minor < 256 {
                    di.set_block(0, (major << 8) | minor);
                } else {
                    di.set_block(1, (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A symlink's target as stored.
    pub fn read_link(&self, di: &DiskInode) -> FsResult<String> {
        let size = di.size();
        if size > 4096 {
            return Err(Errno::EIO);
        }
        let bytes = if di.fast_symlink(self.geo.block_size) {
            di.raw[40..40 + size as usize].to_vec()
        } else {
            let bs = self.geo.block_size as u64;
            let mut buf = vec![0u8; (size.div_ceil(bs) * bs) as usize];
            self.read_data(di, 0, &mut buf)?;
            buf.truncate(size as usize);
            buf
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Adds the name `name` in `dir` for the existing inode `ino`.
    pub fn link(&self, dir: u32, name: &str, ino: u32) -> FsResult<()> {
        self.writable()?;
        let mut st = self.state.lock();
        let di = self.read_inode_locked(&st, ino)?;
        if di.links() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        self.add_entry(&mut st, dir, name.as_bytes(), ino, dirent_type(di.mode()))?;
        self.adjust_links(&st, ino, 1)
    }

    /// Removes the name `name` from `dir`; `rmdir` says it names an
    /// (empty) directory.  The inode itself is freed by `release` when
    /// its last user is gone.
    pub fn unlink(&self, dir: u32, name: &str, rmdir: bool) -> FsResult<()> {
        self.writable()?;
        let st = self.state.lock();
        let ino = self.remove_entry(&st, dir, name.as_bytes())?;
        if rmdir {
            self.adjust_links(&st, ino, -2)?;
            self.adjust_links(&st, dir, -1)?;
        } else {
            self.adjust_links(&st, ino, -1)?;
        }
        Ok(())
    }

    /// Moves `oname` in `odir` to `nname` in `ndir` (replacing what was
    /// there: `replaced` says whether it was a directory).  `moved_dir`
    /// says the moved inode is a directory (its ".." is updated).
    pub fn rename(
        &self,
        odir: u32,
        oname: &str,
        ndir: u32,
        nname: &str,
        replaced: Option<bool>,
        moved_dir: bool,
    ) -> FsResult<()> {
        self.writable()?;
        let mut st = self.state.lock();
        let (_, _, _, ino) = self.find_entry(&st, odir, oname.as_bytes())?;
        let ty = dirent_type(self.read_inode_locked(&st, ino)?.mode());
        match replaced {
            Some(was_dir) => {
                let (_, _, _, old) = self.find_entry(&st, ndir, nname.as_bytes())?;
                self.retarget_entry(&st, ndir, nname.as_bytes(), ino, ty)?;
                if was_dir {
                    self.adjust_links(&st, old, -2)?;
                    self.adjust_links(&st, ndir, -1)?;
                } else {
                    self.adjust_links(&st, old, -1)?;
                }
            }
            None => self.add_entry(&mut st, ndir, nname.as_bytes(), ino, ty)?,
        }
        self.remove_entry(&st, odir, oname.as_bytes())?;
        if moved_dir && odir != ndir {
            self.retarget_entry(&st, ino, b"..", ndir, 2)?;
            self.adjust_links(&st, odir, -1)?;
            self.adjust_links(&st, ndir, 1)?;
        }
        Ok(())
    }

    /// Swaps the inodes named `a` in `adir` and `b` in `bdir`.
    pub fn exchange(&self, adir: u32, a: &str, bdir: u32, b: &str) -> FsResult<()> {
        self.writable()?;
        let st = self.state.lock();
        let (_, _, _, ia) = self.find_entry(&st, adir, a.as_bytes())?;
        let (_, _, _, ib) = self.find_entry(&st, bdir, b.as_bytes())?;
        let (da, db) = (
            self.read_inode_locked(&st, ia)?,
            self.read_inode_locked(&st, ib)?,
        );
        self.retarget_entry(&st, adir, a.as_bytes(), ib, dirent_type(db.mode()))?;
        self.retarget_entry(&st, bdir, b.as_bytes(), ia, dirent_type(da.mode()))?;
        if adir != bdir {
            if da.is_dir() {
                self.retarget_entry(&st, ia, b"..", bdir, 2)?;
                self.adjust_links(&st, adir, -1)?;
                self.adjust_links(&st, bdir, 1)?;
            }
            if db.is_dir() {
                self.retarget_entry(&st, ib, b"..", adir, 2)?;
                self.adjust_links(&st, bdir, -1)?;
                self.adjust_links(&st, adir, 1)?;
            }
        }
        Ok(())
    }

    /// Queues inode `ino` (no links left, last user gone) to be freed.
    pub fn release(&self, ino: u32) {
        if !self.ro && !self.is_detached() {
            self.state.lock().orphans.push(ino);
        }
    }

    /// Frees the queued orphans' blocks and inodes.
    fn reap(&self, st: &mut State) {
        while let Some(ino) = st.orphans.pop() {
            let Ok(mut di) = self.read_inode_locked(st, ino) else {
                continue;
            };
            if di.links() != 0 || di.mode() == 0 {
                continue;
            }
            let fast =
                di.mode() & mode::S_IFMT == mode::S_IFLNK && di.fast_symlink(self.geo.block_size);
            let has_blocks = matches!(
                di.mode() & mode::S_IFMT,
                mode::S_IFREG | mode::S_IFDIR | mode::S_IFLNK
            ) && !fast;
            if has_blocks {
                let _ = self.free_from(st, &mut di, 0);
            }
            // An extended-attribute block is shared by reference count.
            let acl = le32(&di.raw, 104) as u64;
            if acl != 0 && self.block_ok(acl) {
                if let Ok((magic, refs)) = self.cache.read(acl, |b| (le32(b, 0), le32(b, 4))) {
                    if magic == 0xEA02_0000 {
                        if refs <= 1 {
                            let _ = self.free_block(st, acl);
                        } else {
                            let _ = self.cache.write(acl, |b| put32(b, 4, refs - 1));
                        }
                    }
                }
                put32(&mut di.raw, 104, 0);
            }
            let dtime = le32(&di.raw, 12).max(1);
            put32(&mut di.raw, 20, dtime);
            let _ = self.write_inode_locked(st, &di);
            let _ = self.free_ino(st, ino, di.is_dir());
        }
    }

    /// Writes the free counts into the superblock, then every dirty block
    /// to the device, then flushes it.
    pub fn sync(&self, now: Timespec) -> FsResult<()> {
        if self.ro || self.is_detached() {
            return Ok(());
        }
        self.put_counts(now)?;
        self.cache.sync()
    }

    /// Writes the free counts into the superblock and every dirty block to
    /// the device, without a flush (the per-CPU flusher's step).
    pub fn write_back(&self, now: Timespec) -> FsResult<()> {
        if self.ro || self.is_detached() {
            return Ok(());
        }
        self.put_counts(now)?;
        self.cache.write_back()
    }

    fn put_counts(&self, now: Timespec) -> FsResult<()> {
        let mut st = self.state.lock();
        self.reap(&mut st);
        let (fb, fi) = (st.free_blocks, st.free_inodes);
        self.patch_super(|sb| {
            put32(sb, 12, fb as u32);
            put32(sb, 16, fi as u32);
            put32(sb, 48, now.sec as u32);
        })?;
        st.gd_dirty = false;
        Ok(())
    }

    /// `sync`, then marks the image cleanly unmounted.
    pub fn unmount(&self, now: Timespec) -> FsResult<()> {
        if self.ro || self.is_detached() {
            self.detached
                .store(true, core::sync::atomic::Ordering::Release);
            return Ok(());
        }
        self.sync(now)?;
        self.patch_super(|sb| put16(sb, 58, le16(sb, 58) | STATE_VALID))?;
        self.cache.sync()?;
        self.detached
            .store(true, core::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// (total blocks, free blocks, total inodes, free inodes, block size).
    pub fn statfs(&self) -> (u64, u64, u64, u64, usize) {
        let st = self.state.lock();
        (
            self.geo.blocks_count,
            st.free_blocks,
            self.geo.inodes_count as u64,
            st.free_inodes,
            self.geo.block_size,
        )
    }
}
