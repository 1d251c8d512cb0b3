//! ext2 left out of the build (feature `ext2` off): the shapes the VFS
//! names, with no disk code behind them.
//!
//! Used by the kernel's servers image (`structure=servers`, feature
//! `monolithic` off), where ext2 runs only in the file server.  `Ext2` and
//! so `Backing` are uninhabited: no superblock can have a disk, every
//! `shared.disk` is `None`, and each method below is `match *self {}` (the
//! compiler proves it is never called).  The free functions do what the
//! real ones do for a superblock without a disk.  `Fs::new_ext2` and
//! `Fs::new_ext2_mount` fail with `ENODEV` ("unknown file-system type", as
//! Linux says for a type it was built without).
//!
//! Must not: contain any disk code (tests/kernel_image.rs checks the
//! servers kernel has no `fs::ext2::disk` or `fs::block` symbols).

use alloc::sync::{Arc, Weak};

use crate::env::Timespec;
use crate::errno::{Errno, FsResult};
use crate::inode::{Dir, FileData, FileType, Inode};
use crate::vfs::Shared;

/// The on-disk layout's constants the VFS names.
pub mod disk {
    /// The root directory's inode number.
    pub const ROOT_INO: u32 = 2;
}

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

/// An ext2 image: none can exist in this build.
pub enum Ext2 {}

/// An on-disk inode: none can be read in this build.
pub enum DiskInode {}

impl DiskInode {
    pub fn size(&self) -> u64 {
        match *self {}
    }
    pub fn i_blocks(&self) -> u32 {
        match *self {}
    }
}

impl Ext2 {
    /// Always `ENODEV`: this build has no ext2.
    pub fn open(
        _dev: Arc<dyn crate::block::BlockDevice>,
        _read_only: bool,
    ) -> Result<Ext2, MountError> {
        Err(MountError {
            errno: Errno::ENODEV,
            reason: "ext2 is not built in (fs feature `ext2` off)",
        })
    }
    pub fn read_only(&self) -> bool {
        match *self {}
    }
    pub fn max_file_size(&self) -> u64 {
        match *self {}
    }
    pub fn cache(&self) -> &crate::block::BlockCache {
        match *self {}
    }
    pub fn read_inode(&self, _ino: u32) -> FsResult<DiskInode> {
        match *self {}
    }
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        _dir: u32,
        _name: &str,
        _m: u16,
        _uid: u32,
        _gid: u32,
        _rdev: u64,
        _target: Option<&str>,
        _now: Timespec,
    ) -> FsResult<u32> {
        match *self {}
    }
    pub fn link(&self, _dir: u32, _name: &str, _ino: u32) -> FsResult<()> {
        match *self {}
    }
    pub fn unlink(&self, _dir: u32, _name: &str, _rmdir: bool) -> FsResult<()> {
        match *self {}
    }
    pub fn rename(
        &self,
        _odir: u32,
        _oname: &str,
        _ndir: u32,
        _nname: &str,
        _replaced: Option<bool>,
        _moved_dir: bool,
    ) -> FsResult<()> {
        match *self {}
    }
    pub fn exchange(&self, _adir: u32, _a: &str, _bdir: u32, _b: &str) -> FsResult<()> {
        match *self {}
    }
    pub fn release(&self, _ino: u32) {
        match *self {}
    }
    pub fn sync(&self, _now: Timespec) -> FsResult<()> {
        match *self {}
    }
}

/// The disk side of an ext2 superblock: uninhabited here.
pub struct Backing {
    pub(crate) disk: Ext2,
    pub(crate) root: spin::Once<Weak<Inode>>,
}

impl Backing {
    pub(crate) fn new(disk: Ext2) -> Backing {
        match disk {}
    }
    pub(crate) fn queue(&self, _node: Weak<Inode>) {
        match self.disk {}
    }
    pub(crate) fn inode(
        &self,
        _shared: &'static Shared,
        _ino: u32,
        _parent: Option<&Arc<Inode>>,
    ) -> FsResult<Arc<Inode>> {
        match self.disk {}
    }
    pub(crate) fn remember(&self, _node: &Arc<Inode>) {
        match self.disk {}
    }
}

/// Pages of a disk file not read yet: always none without a disk.
#[derive(Default)]
pub(crate) struct Absent;

impl Absent {
    pub(crate) fn add(&mut self, _p: u64) {}
    pub(crate) fn truncate(&mut self, _keep: u64) {}
}

/// A directory's entries come from a disk only: without one this is `EIO`
/// (a tmpfs directory is never pending).
pub(crate) fn load_dir(_node: &Inode, _d: &Dir) -> FsResult<()> {
    Err(Errno::EIO)
}

pub(crate) fn missing(
    _node: &Inode,
    _f: &FileData,
    _offset: u64,
    _len: usize,
) -> Option<(u64, u64)> {
    None
}

pub(crate) fn fill(_node: &Inode, _f: &mut FileData, _first: u64, _end: u64) -> FsResult<()> {
    Ok(())
}

/// 512-byte blocks of a tmpfs file: its resident pages.
pub(crate) fn file_blocks(_node: &Inode, f: &FileData) -> u64 {
    f.resident_pages() * (crate::env::PAGE_SIZE / 512) as u64
}

pub(crate) fn write_back(_node: &Inode) -> FsResult<()> {
    Ok(())
}

pub(crate) fn sync_shared(_shared: &'static Shared) -> FsResult<()> {
    Ok(())
}

pub(crate) fn write_back_local(_shared: &'static Shared) -> FsResult<()> {
    Ok(())
}

pub(crate) fn unmount_shared(_shared: &'static Shared) -> FsResult<()> {
    Ok(())
}

pub(crate) fn register(_shared: &'static Shared) {}

pub(crate) fn check_unused(_dev: &Arc<dyn crate::block::BlockDevice>) -> Result<(), MountError> {
    Ok(())
}

/// Nothing to write back without disks.
pub fn sync_all() -> FsResult<()> {
    Ok(())
}

/// Nothing to write back without disks.
pub fn write_back_local_all() -> FsResult<()> {
    Ok(())
}

pub(crate) fn statfs(_shared: &'static Shared) -> Option<(u64, u64, u64, u64, usize)> {
    None
}

pub(crate) fn disk_mode(kind: FileType, perm: u32) -> u16 {
    (kind.mode_bits() | (perm & 0o7777)) as u16
}
