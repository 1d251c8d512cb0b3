//! Block devices and the block cache under the disk file systems.
//!
//! Owns the `BlockDevice` trait (what a disk driver gives the file
//! systems: 512-byte sectors, a flush, a read-only bit), the write-back
//! `BlockCache` of file-system blocks over one device, and two host
//! devices for tests (`MemDisk`, and `FileDisk` with the `host` feature).
//!
//! Cache invariants: one buffer per block number (so every CPU sees one
//! copy: the cache is shared, not per-CPU, because two copies of a
//! metadata block could not both be written back); a buffer is *dirty*
//! from a `write`/`zero` until `write_back` (or `sync`) has written it to
//! the device; `sync` writes every dirty buffer and then flushes the
//! device, so a block written before `sync` returns Ok is on stable
//! storage.  Buffers are spread over `SHARDS` independently locked shards
//! by block number, so CPUs working on different blocks rarely share a
//! lock; hit/miss counters are per-CPU.  A shard over its share of the
//! capacity evicts its least recently used clean buffer, or writes dirty
//! ones back first when every buffer is dirty.
//!
//! Must not: hold a shard lock while reading the device on a miss (the
//! read runs unlocked; a racing fill of the same block keeps the first
//! copy), read or write outside the device (`EIO`), or panic on any
//! device answer.  Eviction write-back runs under the shard lock (rare:
//! only when a shard is all dirty).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use percpu::PerCpuCounter;

use crate::errno::{Errno, FsResult};
use crate::lockstat::{LockClass, Mutex};

/// Bytes per sector of a `BlockDevice`.
pub const SECTOR_SIZE: usize = 512;

/// A disk: what a driver (virtio-blk in the kernel, a file or a `Vec` on
/// the host) offers the file systems.  Sectors are 512 bytes; every `buf`
/// is a whole number of sectors.  Errors are `EIO` (device failure or a
/// range past the end) or `EROFS` (a write to a read-only device).
pub trait BlockDevice: Send + Sync {
    /// Sectors on the device.
    fn sector_count(&self) -> u64;
    /// Reads `buf.len() / 512` sectors from sector `lba`.
    fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes `buf.len() / 512` sectors at sector `lba`.
    fn write_sectors(&self, lba: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Waits until every completed write is on stable storage.
    fn flush(&self) -> Result<(), Errno>;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
}

/// Checks that `len` bytes at sector `lba` are whole sectors inside a
/// device of `sectors` sectors.
pub fn check_range(sectors: u64, lba: u64, len: usize) -> FsResult<()> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(Errno::EINVAL);
    }
    let n = (len / SECTOR_SIZE) as u64;
    match lba.checked_add(n) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(Errno::EIO),
    }
}

/// A disk in memory (tests, and images the kernel is handed whole).
pub struct MemDisk {
    data: Mutex<Vec<u8>>,
    ro: bool,
}

impl MemDisk {
    /// A disk holding `image` (rounded down to whole sectors).
    pub fn new(mut image: Vec<u8>, read_only: bool) -> Arc<MemDisk> {
        image.truncate(image.len() / SECTOR_SIZE * SECTOR_SIZE);
        Arc::new(MemDisk {
            data: Mutex::new(LockClass::BlockCache, image),
            ro: read_only,
        })
    }

    /// A copy of the disk's bytes now.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

impl BlockDevice for MemDisk {
    fn sector_count(&self) -> u64 {
        (self.data.lock().len() / SECTOR_SIZE) as u64
    }
    fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> FsResult<()> {
        let d = self.data.lock();
        check_range((d.len() / SECTOR_SIZE) as u64, lba, buf.len())?;
        let at = lba as usize * SECTOR_SIZE;
        buf.copy_from_slice(&d[at..at + buf.len()]);
        Ok(())
    }
    fn write_sectors(&self, lba: u64, buf: &[u8]) -> FsResult<()> {
        if self.ro {
            return Err(Errno::EROFS);
        }
        let mut d = self.data.lock();
        check_range((d.len() / SECTOR_SIZE) as u64, lba, buf.len())?;
        let at = lba as usize * SECTOR_SIZE;
        d[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&self) -> FsResult<()> {
        Ok(())
    }
    fn read_only(&self) -> bool {
        self.ro
    }
}

/// A disk backed by a host file (tests: images made by `mke2fs`).
#[cfg(any(test, feature = "host"))]
pub struct FileDisk {
    file: std::fs::File,
    sectors: u64,
    ro: bool,
}

#[cfg(any(test, feature = "host"))]
impl FileDisk {
    /// Opens the image at `path` (read-only when `read_only`).
    pub fn open(path: &std::path::Path, read_only: bool) -> std::io::Result<Arc<FileDisk>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)?;
        let sectors = file.metadata()?.len() / SECTOR_SIZE as u64;
        Ok(Arc::new(FileDisk {
            file,
            sectors,
            ro: read_only,
        }))
    }
}

#[cfg(any(test, feature = "host"))]
impl BlockDevice for FileDisk {
    fn sector_count(&self) -> u64 {
        self.sectors
    }
    fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> FsResult<()> {
        use std::os::unix::fs::FileExt;
        check_range(self.sectors, lba, buf.len())?;
        self.file
            .read_exact_at(buf, lba * SECTOR_SIZE as u64)
            .map_err(|_| Errno::EIO)
    }
    fn write_sectors(&self, lba: u64, buf: &[u8]) -> FsResult<()> {
        use std::os::unix::fs::FileExt;
        if self.ro {
            return Err(Errno::EROFS);
        }
        check_range(self.sectors, lba, buf.len())?;
        self.file
            .write_all_at(buf, lba * SECTOR_SIZE as u64)
            .map_err(|_| Errno::EIO)
    }
    fn flush(&self) -> FsResult<()> {
        if self.ro {
            return Ok(());
        }
        self.file.sync_data().map_err(|_| Errno::EIO)
    }
    fn read_only(&self) -> bool {
        self.ro
    }
}

/// Independently locked parts of a cache.
const SHARDS: usize = 16;

struct Buf {
    data: Vec<u8>,
    dirty: bool,
    used: u64,
}

struct Shard {
    map: BTreeMap<u64, Buf>,
    clock: u64,
}

/// Hit and miss counts of a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: i64,
    pub misses: i64,
    pub writebacks: i64,
}

/// A write-back cache of `block_size`-byte blocks of one device.
pub struct BlockCache {
    dev: Arc<dyn BlockDevice>,
    block_size: usize,
    blocks: u64,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
    /// Boxed: three per-CPU counters are 24 KiB, too much to build on a
    /// 64 KiB kernel stack inside `Ext2` and the superblock.
    counters: Box<Counters>,
}

/// Hit, miss and write-back counts of a `BlockCache`.
struct Counters {
    hits: PerCpuCounter,
    misses: PerCpuCounter,
    writebacks: PerCpuCounter,
}

impl BlockCache {
    /// A cache of at most about `capacity` blocks of `block_size` bytes (a
    /// multiple of 512) over `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, block_size: usize, capacity: usize) -> FsResult<Self> {
        if block_size == 0 || !block_size.is_multiple_of(SECTOR_SIZE) {
            return Err(Errno::EINVAL);
        }
        let blocks = dev.sector_count() / (block_size / SECTOR_SIZE) as u64;
        Ok(BlockCache {
            dev,
            block_size,
            blocks,
            per_shard: capacity.div_ceil(SHARDS).max(4),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(
                        LockClass::BlockCache,
                        Shard {
                            map: BTreeMap::new(),
                            clock: 0,
                        },
                    )
                })
                .collect(),
            counters: Box::new(Counters {
                hits: PerCpuCounter::new(),
                misses: PerCpuCounter::new(),
                writebacks: PerCpuCounter::new(),
            }),
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Whole blocks on the device.
    pub fn block_count(&self) -> u64 {
        self.blocks
    }

    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.dev
    }

    pub fn read_only(&self) -> bool {
        self.dev.read_only()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.sum(),
            misses: self.counters.misses.sum(),
            writebacks: self.counters.writebacks.sum(),
        }
    }

    fn shard(&self, block: u64) -> &Mutex<Shard> {
        &self.shards[(block as usize) % SHARDS]
    }

    fn lba(&self, block: u64) -> u64 {
        block * (self.block_size / SECTOR_SIZE) as u64
    }

    fn check(&self, block: u64) -> FsResult<()> {
        if block >= self.blocks {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    /// Makes room in a locked shard (clean buffers first).
    fn evict(&self, s: &mut Shard) -> FsResult<()> {
        while s.map.len() >= self.per_shard {
            let victim = s
                .map
                .iter()
                .filter(|(_, b)| !b.dirty)
                .min_by_key(|(_, b)| b.used)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    s.map.remove(&k);
                }
                None => {
                    // Every buffer is dirty: write them back, then retry.
                    for (k, b) in s.map.iter_mut() {
                        self.dev.write_sectors(self.lba(*k), &b.data)?;
                        b.dirty = false;
                        self.counters.writebacks.inc();
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `f` on the buffer of `block`, reading it first on a miss
    /// unless `fill` is false (then a missing block starts zeroed).
    fn with_buf<R>(&self, block: u64, fill: bool, f: impl FnOnce(&mut Buf) -> R) -> FsResult<R> {
        self.check(block)?;
        {
            let mut s = self.shard(block).lock();
            s.clock += 1;
            let now = s.clock;
            if let Some(b) = s.map.get_mut(&block) {
                b.used = now;
                self.counters.hits.inc();
                return Ok(f(b));
            }
        }
        self.counters.misses.inc();
        let mut data = vec![0u8; self.block_size];
        if fill {
            self.dev.read_sectors(self.lba(block), &mut data)?;
        }
        let mut s = self.shard(block).lock();
        s.clock += 1;
        let now = s.clock;
        if !s.map.contains_key(&block) {
            self.evict(&mut s)?;
            s.map.insert(
                block,
                Buf {
                    data,
                    dirty: false,
                    used: now,
                },
            );
        }
        let b = s.map.get_mut(&block).ok_or(Errno::EIO)?;
        b.used = now;
        Ok(f(b))
    }

    /// Runs `f` on the bytes of `block`.
    pub fn read<R>(&self, block: u64, f: impl FnOnce(&[u8]) -> R) -> FsResult<R> {
        self.with_buf(block, true, |b| f(&b.data))
    }

    /// Copies `block` into `out` (`block_size` bytes).
    pub fn read_into(&self, block: u64, out: &mut [u8]) -> FsResult<()> {
        self.read(block, |d| {
            let n = out.len().min(d.len());
            out[..n].copy_from_slice(&d[..n]);
        })
    }

    /// Runs `f` on the bytes of `block` and marks it dirty.
    pub fn write<R>(&self, block: u64, f: impl FnOnce(&mut [u8]) -> R) -> FsResult<R> {
        if self.read_only() {
            return Err(Errno::EROFS);
        }
        self.with_buf(block, true, |b| {
            b.dirty = true;
            f(&mut b.data)
        })
    }

    /// Sets `block` to `data` (no read of the old contents).
    pub fn overwrite(&self, block: u64, data: &[u8]) -> FsResult<()> {
        if self.read_only() {
            return Err(Errno::EROFS);
        }
        self.with_buf(block, false, |b| {
            let n = data.len().min(b.data.len());
            b.data[..n].copy_from_slice(&data[..n]);
            b.data[n..].fill(0);
            b.dirty = true;
        })
    }

    /// Sets `block` to zeros (no read of the old contents).
    pub fn zero(&self, block: u64) -> FsResult<()> {
        self.overwrite(block, &[])
    }

    /// Drops a block from the cache without writing it (a freed block
    /// whose contents no longer matter).
    pub fn forget(&self, block: u64) {
        self.shard(block).lock().map.remove(&block);
    }

    /// Writes the dirty buffers among `blocks` to the device (no flush).
    pub fn write_back_blocks(&self, blocks: &[u64]) -> FsResult<()> {
        for &blk in blocks {
            let mut s = self.shard(blk).lock();
            if let Some(b) = s.map.get_mut(&blk) {
                if b.dirty {
                    self.dev.write_sectors(self.lba(blk), &b.data)?;
                    b.dirty = false;
                    self.counters.writebacks.inc();
                }
            }
        }
        Ok(())
    }

    /// Writes every dirty buffer to the device (no flush), in block order
    /// within each shard.
    pub fn write_back(&self) -> FsResult<()> {
        for shard in &self.shards {
            let mut s = shard.lock();
            for (k, b) in s.map.iter_mut() {
                if b.dirty {
                    self.dev.write_sectors(self.lba(*k), &b.data)?;
                    b.dirty = false;
                    self.counters.writebacks.inc();
                }
            }
        }
        Ok(())
    }

    /// Dirty buffers now.
    pub fn dirty_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map.values().filter(|b| b.dirty).count())
            .sum()
    }

    /// `write_back`, then a device flush: everything written before is
    /// on stable storage when this returns Ok.
    pub fn sync(&self) -> FsResult<()> {
        if self.read_only() {
            return Ok(());
        }
        self.write_back()?;
        self.dev.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_reaches_the_device_only_at_sync() {
        let disk = MemDisk::new(vec![0u8; 64 * 1024], false);
        let cache = BlockCache::new(disk.clone(), 1024, 8).unwrap();
        cache.write(3, |b| b[5] = 7).unwrap();
        assert_eq!(disk.contents()[3 * 1024 + 5], 0, "write-back, not through");
        assert_eq!(cache.read(3, |b| b[5]).unwrap(), 7);
        assert_eq!(cache.dirty_count(), 1);
        cache.sync().unwrap();
        assert_eq!(disk.contents()[3 * 1024 + 5], 7);
        assert_eq!(cache.dirty_count(), 0);
    }

    #[test]
    fn eviction_keeps_dirty_data_and_bounds_hold() {
        let disk = MemDisk::new(vec![0u8; 1024 * 1024], false);
        let cache = BlockCache::new(disk.clone(), 1024, 16).unwrap();
        for blk in 0..1000u64 {
            cache.write(blk, |b| b[0] = blk as u8).unwrap();
        }
        for blk in 0..1000u64 {
            assert_eq!(cache.read(blk, |b| b[0]).unwrap(), blk as u8);
        }
        cache.sync().unwrap();
        let c = disk.contents();
        for blk in 0..1000usize {
            assert_eq!(c[blk * 1024], blk as u8);
        }
    }

    #[test]
    fn check_range_takes_whole_sectors_inside_the_device() {
        assert_eq!(check_range(8, 0, 8 * SECTOR_SIZE), Ok(()));
        assert_eq!(check_range(8, 7, SECTOR_SIZE), Ok(()), "the last sector");
        assert_eq!(check_range(8, 8, SECTOR_SIZE), Err(Errno::EIO));
        assert_eq!(check_range(8, 7, 2 * SECTOR_SIZE), Err(Errno::EIO));
        assert_eq!(check_range(8, 0, 100), Err(Errno::EINVAL));
        assert_eq!(check_range(8, 0, SECTOR_SIZE + 1), Err(Errno::EINVAL));
        assert_eq!(check_range(8, u64::MAX, SECTOR_SIZE), Err(Errno::EIO));
        assert_eq!(check_range(8, 8, 0), Ok(()), "nothing at the end");
    }

    #[test]
    fn mem_disk_reads_and_writes_the_sectors_named() {
        // 1000 bytes: one whole sector; the tail is dropped.
        let small = MemDisk::new(vec![1u8; 1000], false);
        assert_eq!(small.sector_count(), 1);
        assert_eq!(small.contents().len(), SECTOR_SIZE);
        let disk = MemDisk::new(vec![0u8; 4 * SECTOR_SIZE], false);
        assert_eq!(disk.sector_count(), 4);
        assert!(!disk.read_only());
        disk.write_sectors(2, &[7u8; SECTOR_SIZE]).unwrap();
        let c = disk.contents();
        assert!(c[2 * SECTOR_SIZE..3 * SECTOR_SIZE].iter().all(|&b| b == 7));
        assert!(c[..2 * SECTOR_SIZE].iter().all(|&b| b == 0));
        assert!(c[3 * SECTOR_SIZE..].iter().all(|&b| b == 0));
        let mut buf = [0u8; 2 * SECTOR_SIZE];
        disk.read_sectors(1, &mut buf).unwrap();
        assert!(buf[..SECTOR_SIZE].iter().all(|&b| b == 0));
        assert!(buf[SECTOR_SIZE..].iter().all(|&b| b == 7));
        assert_eq!(disk.read_sectors(3, &mut buf), Err(Errno::EIO));
        assert_eq!(disk.write_sectors(4, &[0u8; SECTOR_SIZE]), Err(Errno::EIO));
        assert_eq!(disk.flush(), Ok(()));
        let ro = MemDisk::new(vec![0u8; SECTOR_SIZE], true);
        assert!(ro.read_only());
        assert_eq!(ro.write_sectors(0, &[1u8; SECTOR_SIZE]), Err(Errno::EROFS));
    }

    #[test]
    fn blocks_map_to_their_sectors() {
        // 2 KiB blocks (4 sectors) on a disk of 10 KiB and a half sector.
        let disk = MemDisk::new(vec![0u8; 10 * 1024 + 256], false);
        let cache = BlockCache::new(disk.clone(), 2048, 8).unwrap();
        assert_eq!(cache.block_size(), 2048);
        assert_eq!(cache.block_count(), 5);
        assert!(!cache.read_only());
        assert_eq!(cache.device().sector_count(), 20);
        for blk in 0..5u64 {
            cache.write(blk, |b| b.fill(blk as u8 + 1)).unwrap();
        }
        assert_eq!(cache.read(5, |_| ()), Err(Errno::EIO));
        cache.sync().unwrap();
        let c = disk.contents();
        for blk in 0..5usize {
            let bytes = &c[blk * 2048..(blk + 1) * 2048];
            assert!(bytes.iter().all(|&b| b == blk as u8 + 1), "block {blk}");
        }
        // A fresh cache reads what is on the device.
        let again = BlockCache::new(disk, 2048, 8).unwrap();
        let mut out = [0u8; 2048];
        again.read_into(4, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == 5));
        let mut short = [0u8; 3];
        again.read_into(2, &mut short).unwrap();
        assert_eq!(short, [3, 3, 3]);
        assert!(BlockCache::new(MemDisk::new(vec![0u8; 4096], false), 0, 8).is_err());
    }

    #[test]
    fn hits_misses_and_write_backs_are_counted() {
        let disk = MemDisk::new(vec![0u8; 64 * 1024], false);
        let cache = BlockCache::new(disk, 1024, 64).unwrap();
        let before = cache.stats();
        cache.read(1, |_| ()).unwrap();
        cache.read(1, |_| ()).unwrap();
        cache.read(2, |_| ()).unwrap();
        let after = cache.stats();
        assert_eq!(after.misses - before.misses, 2);
        assert_eq!(after.hits - before.hits, 1);
        cache.write(1, |b| b[0] = 1).unwrap();
        cache.write(2, |b| b[0] = 2).unwrap();
        assert_eq!(cache.dirty_count(), 2);
        cache.write_back_blocks(&[2, 3]).unwrap();
        assert_eq!(cache.dirty_count(), 1, "only block 2 was written back");
        assert_eq!(cache.stats().writebacks - before.writebacks, 1);
        cache.write_back().unwrap();
        assert_eq!(cache.dirty_count(), 0);
        assert_eq!(cache.stats().writebacks - before.writebacks, 2);
    }

    #[test]
    fn write_back_blocks_writes_only_the_dirty_ones_named() {
        let disk = MemDisk::new(vec![0u8; 16 * 1024], false);
        let cache = BlockCache::new(disk.clone(), 1024, 16).unwrap();
        cache.write(1, |b| b[0] = 11).unwrap();
        cache.write(2, |b| b[0] = 22).unwrap();
        cache.write_back_blocks(&[1]).unwrap();
        let c = disk.contents();
        assert_eq!((c[1024], c[2048]), (11, 0));
    }

    #[test]
    fn overwrite_zero_and_forget() {
        let disk = MemDisk::new(vec![9u8; 16 * 1024], false);
        let cache = BlockCache::new(disk.clone(), 1024, 16).unwrap();
        cache.overwrite(3, &[1, 2, 3]).unwrap();
        cache
            .read(3, |b| {
                assert_eq!(&b[..3], &[1, 2, 3]);
                assert!(b[3..].iter().all(|&x| x == 0), "the rest is zeroed");
            })
            .unwrap();
        cache.zero(4).unwrap();
        assert!(cache.read(4, |b| b.iter().all(|&x| x == 0)).unwrap());
        assert_eq!(cache.dirty_count(), 2);
        // A forgotten dirty block is not written: the device's copy shows.
        cache.forget(4);
        assert_eq!(cache.dirty_count(), 1);
        assert_eq!(cache.read(4, |b| b[0]).unwrap(), 9);
        cache.sync().unwrap();
        let c = disk.contents();
        assert_eq!(&c[3 * 1024..3 * 1024 + 4], &[1, 2, 3, 0]);
        assert_eq!(c[4 * 1024], 9);
    }

    #[test]
    fn eviction_drops_the_least_recently_used_clean_block() {
        let disk = MemDisk::new(vec![0u8; 256 * 1024], false);
        // Capacity 64: 4 buffers per shard; blocks 0, 16, 32... share one.
        let cache = BlockCache::new(disk, 1024, 64).unwrap();
        for blk in [0u64, 16, 32, 48] {
            cache.read(blk, |_| ()).unwrap();
        }
        // Touch 0 again: 16 is now the least recently used.
        cache.read(0, |_| ()).unwrap();
        cache.read(64, |_| ()).unwrap(); // evicts one
        let s = cache.stats();
        cache.read(0, |_| ()).unwrap();
        cache.read(32, |_| ()).unwrap();
        cache.read(48, |_| ()).unwrap();
        cache.read(64, |_| ()).unwrap();
        assert_eq!(cache.stats().misses, s.misses, "0, 32, 48, 64 stayed");
        cache.read(16, |_| ()).unwrap();
        assert_eq!(cache.stats().misses, s.misses + 1, "16 was evicted");
        // Another shard was untouched by all that.
        cache.read(1, |_| ()).unwrap();
        cache.read(1, |_| ()).unwrap();
        assert_eq!(cache.stats().misses, s.misses + 2);
    }

    /// Misses of `blocks` in `cache` (each read once, in order).
    fn misses_reading(cache: &BlockCache, blocks: &[u64]) -> i64 {
        let before = cache.stats().misses;
        for &blk in blocks {
            cache.read(blk, |_| ()).unwrap();
        }
        cache.stats().misses - before
    }

    #[test]
    fn eviction_follows_the_order_of_use_not_block_numbers() {
        // One shard (blocks 0, 16, 32, 48, 64 share it), 4 buffers.
        let disk = MemDisk::new(vec![0u8; 256 * 1024], false);
        // Filled in descending order: 48 is the least recently used.
        let cache = BlockCache::new(disk.clone(), 1024, 64).unwrap();
        assert_eq!(misses_reading(&cache, &[48, 32, 16, 0, 64]), 5);
        assert_eq!(misses_reading(&cache, &[0, 16, 32, 64]), 0);
        assert_eq!(misses_reading(&cache, &[48]), 1);
        // Hits after the last miss make 0, 16, 32 newer than 48.
        let cache = BlockCache::new(disk, 1024, 64).unwrap();
        assert_eq!(misses_reading(&cache, &[0, 16, 32, 48, 0, 16, 32, 64]), 5);
        assert_eq!(misses_reading(&cache, &[0, 16, 32, 64]), 0);
        assert_eq!(misses_reading(&cache, &[48]), 1);
    }

    #[test]
    fn a_shard_of_dirty_buffers_is_written_back_to_make_room() {
        let disk = MemDisk::new(vec![0u8; 256 * 1024], false);
        let cache = BlockCache::new(disk.clone(), 1024, 64).unwrap();
        for blk in [0u64, 16, 32, 48] {
            cache.write(blk, |b| b[0] = 1 + blk as u8).unwrap();
        }
        assert!(disk.contents().iter().all(|&b| b == 0));
        cache.read(64, |_| ()).unwrap();
        let c = disk.contents();
        for blk in [0usize, 16, 32, 48] {
            assert_eq!(c[blk * 1024], 1 + blk as u8, "block {blk} written back");
        }
        assert!(cache.stats().writebacks >= 4);
        assert_eq!(cache.dirty_count(), 0);
    }

    #[test]
    fn sync_of_a_read_only_cache_writes_nothing() {
        let disk = MemDisk::new(vec![5u8; 4096], true);
        let cache = BlockCache::new(disk.clone(), 1024, 8).unwrap();
        assert!(cache.read_only());
        assert_eq!(cache.overwrite(0, &[1]), Err(Errno::EROFS));
        assert_eq!(cache.zero(1), Err(Errno::EROFS));
        assert_eq!(cache.sync(), Ok(()));
        assert!(disk.contents().iter().all(|&b| b == 5));
    }

    #[test]
    fn out_of_range_and_read_only_are_errors() {
        let disk = MemDisk::new(vec![0u8; 4096], true);
        let cache = BlockCache::new(disk, 1024, 8).unwrap();
        assert_eq!(cache.read(4, |_| ()), Err(Errno::EIO));
        assert_eq!(cache.write(0, |_| ()), Err(Errno::EROFS));
        assert!(cache.read(3, |_| ()).is_ok());
        assert!(BlockCache::new(MemDisk::new(vec![], false), 1000, 8).is_err());
    }
}
