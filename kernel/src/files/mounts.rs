//! The file systems mounted by `mount(2)` (ext2 on a virtio disk, tmpfs),
//! and their write-back: the periodic flusher and `sync`.
//!
//! Owns the table of mounted superblocks (which disk each one uses, so a
//! disk is mounted at most once: two superblocks over one image would
//! overwrite each other's metadata) and the per-CPU write-back threads.
//! Invariants: the table lock is never held across I/O (`sync_all` copies
//! the list first); a superblock leaves the table only after the VFS
//! unmounted it (written back and marked clean).
//!
//! Why one table, not per-CPU: mounts are rare and not on any hot path.
//! The write-back is per CPU: each CPU's thread writes the inodes dirtied
//! on that CPU (the `fs` crate keeps per-CPU dirty lists).
//!
//! Must not: sleep holding the table lock; let a user mount the same disk
//! twice.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use ::fs::{Fs, Inode};

#[cfg(feature = "monolithic")]
use super::blockdev::DiskDevice;
use super::root_fs;
#[cfg(feature = "monolithic")]
use crate::drivers::virtio_blk::Disk;
use abi::Errno;

/// Dirty buffers are written back at least this often (Linux's
/// `dirty_writeback_centisecs` default, 5 s).
#[cfg(feature = "monolithic")]
const WRITEBACK_INTERVAL_NS: u64 = 5_000_000_000;

struct Mounted {
    fs: Arc<Fs>,
    /// Index of the disk (`None`: tmpfs).
    disk: Option<usize>,
}

static MOUNTS: spin::Mutex<Vec<Mounted>> = spin::Mutex::new(Vec::new());
/// Write-back passes running now (`flusher`, `sync_all`): while one runs,
/// it holds inodes of the file system it writes, and `umount` would see
/// them as in use.
static WRITING_BACK: AtomicUsize = AtomicUsize::new(0);

/// Counts one write-back pass while alive.
struct WritebackPass;

impl WritebackPass {
    fn start() -> WritebackPass {
        WRITING_BACK.fetch_add(1, Ordering::AcqRel);
        WritebackPass
    }
}

impl Drop for WritebackPass {
    fn drop(&mut self) {
        WRITING_BACK.fetch_sub(1, Ordering::AcqRel);
    }
}
#[cfg(feature = "monolithic")]
static FLUSHER: spin::Once<()> = spin::Once::new();

fn fs_errno(e: ::fs::Errno) -> Errno {
    Errno(e.0)
}

/// Mounts the ext2 image on `disk` at `path` (from `start`); read-only
/// when `read_only` or the disk is.  Monolithic image only (the servers
/// image has no ext2: `sys_mount` refuses it with `ENODEV`).
#[cfg(feature = "monolithic")]
pub fn mount_ext2(
    disk: &'static Disk,
    start: &Arc<Inode>,
    path: &str,
    read_only: bool,
) -> Result<(), Errno> {
    if MOUNTS.lock().iter().any(|m| m.disk == Some(disk.index())) {
        return Err(Errno::EBUSY);
    }
    let max_pages = (crate::memory::total_frames() as u64 / 4).max(1);
    let fs = root_fs()
        .new_ext2_mount(Arc::new(DiskDevice(disk)), read_only, max_pages)
        .map_err(|e| {
            log::info!("ext2: /dev/{} not mounted: {}", disk.name(), e.reason);
            Errno(e.errno.0)
        })?;
    let fs = Arc::new(fs);
    {
        // Reserve the disk before mounting (the walk to `path` may read a
        // disk, so it runs without the table lock).
        let mut table = MOUNTS.lock();
        if table.iter().any(|m| m.disk == Some(disk.index())) {
            return Err(Errno::EBUSY);
        }
        table.push(Mounted {
            fs: fs.clone(),
            disk: Some(disk.index()),
        });
    }
    if let Err(e) = root_fs().mount(start, path, &fs) {
        MOUNTS.lock().retain(|m| !Arc::ptr_eq(&m.fs, &fs));
        return Err(fs_errno(e));
    }
    log::info!(
        "ext2: /dev/{} mounted on {}{}",
        disk.name(),
        path,
        if fs.read_only() { " (read-only)" } else { "" }
    );
    if !fs.read_only() {
        start_flusher();
    }
    Ok(())
}

/// Mounts a new, empty tmpfs at `path` (from `start`), bounded like
/// `/tmp` (half of memory).
pub fn mount_tmpfs(start: &Arc<Inode>, path: &str) -> Result<(), Errno> {
    let max_pages = (crate::memory::total_frames() as u64 / 2).max(1);
    let fs = Arc::new(root_fs().new_mount(max_pages));
    root_fs().mount(start, path, &fs).map_err(fs_errno)?;
    MOUNTS.lock().push(Mounted { fs, disk: None });
    Ok(())
}

/// Unmounts the file system whose root `path` names; a disk file system
/// is written back and marked clean first (`fs::Fs::umount`).
pub fn umount(start: &Arc<Inode>, path: &str) -> Result<(), Errno> {
    let dev = root_fs().lookup(start, path, true).map_err(fs_errno)?.dev();
    let mut result = root_fs().umount(start, path);
    if result == Err(::fs::Errno::EBUSY) && WRITING_BACK.load(Ordering::Acquire) > 0 {
        // A write-back pass holds inodes for a moment: wait it out, once.
        while WRITING_BACK.load(Ordering::Acquire) > 0 {
            crate::sched::sleep_ns(1_000_000);
        }
        result = root_fs().umount(start, path);
    }
    result.map_err(fs_errno)?;
    MOUNTS.lock().retain(|m| m.fs.dev() != dev);
    Ok(())
}

/// Writes back every mounted disk file system and flushes every disk
/// (`sync`).  Returns the first error.
pub fn sync_all() -> Result<(), Errno> {
    let _pass = WritebackPass::start();
    // Every disk superblock, the root's included (`fs::ext2::sync_all`).
    let mut result = ::fs::ext2::sync_all().map_err(fs_errno);
    for disk in crate::drivers::virtio_blk::disks() {
        if let Err(e) = disk.flush() {
            result = result.and(Err(fs_errno(e)));
        }
    }
    result
}

/// Writes back every writable disk file system (at shutdown: the kernel
/// calls it before QEMU exits, so a clean exit leaves clean images), and
/// logs each disk's counters.
pub fn unmount_all_at_exit() {
    let list: Vec<Arc<Fs>> = MOUNTS
        .lock()
        .iter()
        .filter(|m| m.disk.is_some() && !m.fs.read_only())
        .map(|m| m.fs.clone())
        .collect();
    for fs in list {
        if let Err(e) = fs.sync() {
            log::warn!("ext2: write-back at exit failed: errno {}", e.0);
        }
    }
    if super::root_on_disk() {
        // The root is never unmounted: write it back and mark it clean.
        if let Err(e) = root_fs().umount_root() {
            log::warn!("ext2: write-back of the root at exit failed: errno {}", e.0);
        }
    }
    for disk in crate::drivers::virtio_blk::disks() {
        let c = disk.counters();
        log::info!(
            "virtio-blk: /dev/{}: {} reads ({} KiB), {} writes ({} KiB), {} flushes, {} errors, {} interrupts on {} queue(s)",
            disk.name(),
            c.reads,
            c.bytes_read / 1024,
            c.writes,
            c.bytes_written / 1024,
            c.flushes,
            c.errors,
            c.interrupts,
            disk.queue_count()
        );
    }
}

/// Starts the write-back threads, one per CPU (once).  Monolithic image
/// only: without ext2 nothing is ever dirty on a disk.
#[cfg(feature = "monolithic")]
pub fn start_flusher() {
    FLUSHER.call_once(|| {
        for cpu in 0..crate::sched::cpu_count() {
            crate::sched::spawn("writeback", Some(cpu), flusher);
        }
    });
}

/// A CPU's write-back thread: every `WRITEBACK_INTERVAL_NS`, the inodes
/// dirtied on this CPU go into their block caches and the caches' dirty
/// blocks to the disks (`fs::ext2::write_back_local_all`; no device flush:
/// that is `fsync`'s and `sync`'s job).
#[cfg(feature = "monolithic")]
fn flusher() {
    loop {
        crate::sched::sleep_ns(WRITEBACK_INTERVAL_NS);
        let _pass = WritebackPass::start();
        if let Err(e) = ::fs::ext2::write_back_local_all() {
            log::warn!("ext2: periodic write-back failed: errno {}", e.0);
        }
    }
}
