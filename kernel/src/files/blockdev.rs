//! Block device nodes `/dev/vda`, `/dev/vdb`, ...: byte-addressed reads and
//! writes on a virtio disk (`drivers::virtio_blk`), for programs that open
//! the node itself (`dd`, `mke2fs`, the raw-disk tests).
//!
//! Owns the mapping from device number to disk (major `VIRTIO_BLK_MAJOR`,
//! minor `16 * index`, as Linux numbers whole virtio disks) and the
//! read-modify-write of partial sectors.  Invariants: nothing is cached
//! here: a write reaches the device before it returns and `fsync` on the
//! node flushes the device's cache; reads past the end return 0 bytes,
//! writes there `ENOSPC`, writes to a read-only disk `EPERM` (Linux's
//! answers).
//!
//! Must not: hold a lock across a device request (requests sleep), or
//! allocate more than `CHUNK` bytes per request whatever the user asked.

use alloc::vec::Vec;

use super::dev::makedev;
use crate::drivers::virtio_blk::{self, Disk, SECTOR_BYTES};
use abi::Errno;

/// Major number of virtio disks (Linux allocates it dynamically; 254 is
/// what Debian's kernels get).
pub const VIRTIO_BLK_MAJOR: u64 = 254;

/// Largest piece moved per device request.
const CHUNK: usize = 64 * 1024;

/// Device number of disk `index`.
pub fn rdev_of(index: usize) -> u64 {
    makedev(VIRTIO_BLK_MAJOR, 16 * index as u64)
}

/// The disk behind device number `rdev`, if any.
pub fn disk_of(rdev: u64) -> Option<&'static Disk> {
    let (major, minor) = (rdev >> 8, rdev & 0xFF);
    if major != VIRTIO_BLK_MAJOR || minor % 16 != 0 {
        return None;
    }
    virtio_blk::disks().get((minor / 16) as usize)
}

fn eio(e: ::fs::Errno) -> Errno {
    Errno(e.0)
}

/// Size of the disk in bytes.
pub fn size(disk: &Disk) -> u64 {
    disk.sector_count() * SECTOR_BYTES as u64
}

/// Reads up to `out.len()` bytes at byte `offset`; 0 at or past the end.
pub fn read_at(disk: &Disk, offset: u64, out: &mut [u8]) -> Result<usize, Errno> {
    let end = size(disk);
    if offset >= end {
        return Ok(0);
    }
    let len = out.len().min((end - offset) as usize);
    let mut done = 0;
    let mut bounce = Vec::new();
    while done < len {
        let at = offset + done as u64;
        let first = at / SECTOR_BYTES as u64;
        let skip = (at % SECTOR_BYTES as u64) as usize;
        let n = (len - done).min(CHUNK - skip);
        let span = (skip + n).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        bounce.clear();
        bounce.try_reserve_exact(span).map_err(|_| Errno::ENOMEM)?;
        bounce.resize(span, 0);
        disk.read_sectors(first, &mut bounce).map_err(eio)?;
        out[done..done + n].copy_from_slice(&bounce[skip..skip + n]);
        done += n;
    }
    Ok(len)
}

/// Writes `src` at byte `offset` (partial sectors read, patched, written
/// back); `ENOSPC` at or past the end, a short count across it; `EPERM`
/// on a read-only disk.
pub fn write_at(disk: &Disk, offset: u64, src: &[u8]) -> Result<usize, Errno> {
    if disk.read_only() {
        return Err(Errno::EPERM);
    }
    let end = size(disk);
    if src.is_empty() {
        return Ok(0);
    }
    if offset >= end {
        return Err(Errno::ENOSPC);
    }
    let len = src.len().min((end - offset) as usize);
    let mut done = 0;
    let mut bounce = Vec::new();
    while done < len {
        let at = offset + done as u64;
        let first = at / SECTOR_BYTES as u64;
        let skip = (at % SECTOR_BYTES as u64) as usize;
        let n = (len - done).min(CHUNK - skip);
        let span = (skip + n).div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
        bounce.clear();
        bounce.try_reserve_exact(span).map_err(|_| Errno::ENOMEM)?;
        bounce.resize(span, 0);
        if skip != 0 || !n.is_multiple_of(SECTOR_BYTES) {
            // Partial first or last sector: keep the bytes around ours.
            disk.read_sectors(first, &mut bounce[..SECTOR_BYTES])
                .map_err(eio)?;
            let last = span - SECTOR_BYTES;
            if last > 0 {
                disk.read_sectors(first + (last / SECTOR_BYTES) as u64, &mut bounce[last..])
                    .map_err(eio)?;
            }
        }
        bounce[skip..skip + n].copy_from_slice(&src[done..done + n]);
        disk.write_sectors(first, &bounce).map_err(eio)?;
        done += n;
    }
    Ok(len)
}

/// A disk as the `fs` crate's `BlockDevice` (what ext2 mounts read and
/// write through its block cache).  Only in the monolithic image: the
/// servers image has no ext2 (docs/SERVERS.md, "The servers kernel image").
#[cfg(feature = "monolithic")]
pub struct DiskDevice(pub &'static Disk);

#[cfg(feature = "monolithic")]
impl ::fs::block::BlockDevice for DiskDevice {
    fn sector_count(&self) -> u64 {
        self.0.sector_count()
    }
    fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> Result<(), ::fs::Errno> {
        self.0.read_sectors(lba, buf)
    }
    fn write_sectors(&self, lba: u64, buf: &[u8]) -> Result<(), ::fs::Errno> {
        self.0.write_sectors(lba, buf)
    }
    fn flush(&self) -> Result<(), ::fs::Errno> {
        self.0.flush()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
}
