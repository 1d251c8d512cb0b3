//! The server's handle table: the inodes it holds for its clients (open
//! files, directories `*at` calls start from, roots and working
//! directories), named by numbers it hands out.
//!
//! Owns `HandleTable` and `IoUser` (an I/O handle's count among its
//! inode's I/O users: while any is open, pages granted for one-copy I/O
//! stay the file system's, see `fs::Inode::grant_read`).  A handle is `index | shard << 24 | seq << 32`:
//! `shard` is the table shard it lives in (the server thread that made
//! it), `index` its slot there, `seq` the slot's reuse count (never 0, so
//! handle 0 is never valid), so a closed handle, a reused slot,
//! a number never issued and one given to another client all fail the
//! check with `EBADF`.
//!
//! Sharing: each server thread (one per core) creates handles in its own
//! shard, so opens and closes on different cores take different locks;
//! a lookup takes its shard's lock for reading (a handle used from
//! another core reads that core's shard: the kernel sends a file's calls
//! to the server thread of the calling core, not of the opening one).
//! `attach` sweeps every shard (rare: once per client generation).
//!
//! Must not: hold a shard lock across a VFS operation (lookups clone the
//! inode's `Arc` and drop the lock).

use std::sync::{Arc, RwLock};

use abi::Errno;
use fs::Inode;
use fsproto::Handle;
use percpu::CachePadded;

/// Slots per shard (24 bits of the handle).
const MAX_SLOTS: usize = 1 << 24;
/// Shards (8 bits of the handle).
pub const MAX_SHARDS: usize = 256;

/// What a handle grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
    /// `O_PATH`: a place to start `*at` calls and `fstat`, no I/O.
    pub path_only: bool,
}

impl Access {
    pub const PATH: Access = Access {
        read: false,
        write: false,
        path_only: true,
    };
}

/// One live handle.
#[derive(Clone)]
pub struct Entry {
    pub inode: Arc<Inode>,
    pub client: u64,
    pub access: Access,
    /// For an I/O handle of a regular file: its count in the inode's I/O
    /// users (`fs::Inode::io_open`), dropped when the handle and every
    /// copy of its entry (requests running with it) are gone.
    pub io: Option<Arc<IoUser>>,
}

/// A handle's place among the I/O users of its inode: while it lives,
/// pages granted for one-copy I/O stay pages of the file system
/// (`fs::Inode::grant_read`).
pub struct IoUser(Arc<Inode>);

impl IoUser {
    pub fn new(inode: Arc<Inode>) -> Arc<IoUser> {
        inode.io_open();
        Arc::new(IoUser(inode))
    }
}

impl Drop for IoUser {
    fn drop(&mut self) {
        self.0.io_close();
    }
}

struct Slot {
    seq: u32,
    entry: Option<Entry>,
}

#[derive(Default)]
struct Shard {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

/// The table: one shard per server thread.
pub struct HandleTable {
    shards: Box<[CachePadded<RwLock<Shard>>]>,
    /// Live handles one shard may hold (`ENFILE` beyond).
    limit: usize,
    /// The sequence number of a new slot: above every number an earlier
    /// instance of the server can have used (`with_epoch`).
    first_seq: u32,
}

/// The sequence number after `s`: never 0, so handle 0 is never valid.
fn next_seq(s: u32) -> u32 {
    match s.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl HandleTable {
    /// A table of `shards` shards (1..=`MAX_SHARDS`), each holding at most
    /// `limit` live handles.
    pub fn new(shards: usize, limit: usize) -> HandleTable {
        Self::with_epoch(shards, limit, 0)
    }

    /// A table whose handles can never equal one of an earlier instance
    /// with a smaller `epoch` (a server restarted after a crash: the
    /// kernel may still hold the dead instance's numbers, which must fail
    /// with `EBADF` instead of naming a new file).  Sequence numbers start
    /// at `1 + epoch << 20`, so each epoch has 2^20 reuses of a slot.
    pub fn with_epoch(shards: usize, limit: usize, epoch: u32) -> HandleTable {
        let n = shards.clamp(1, MAX_SHARDS);
        HandleTable {
            shards: (0..n)
                .map(|_| CachePadded::new(RwLock::new(Shard::default())))
                .collect(),
            limit: limit.min(MAX_SLOTS),
            first_seq: 1 + ((epoch & 0xfff) << 20),
        }
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    fn shard(&self, i: usize) -> std::sync::RwLockWriteGuard<'_, Shard> {
        // A panic while holding a shard lock would be a server bug; the
        // table stays consistent (every update is one assignment), so a
        // poisoned lock is used as it is.
        self.shards[i % self.shards.len()]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A new handle in shard `shard` for `client`.  `ENFILE` when the
    /// shard is full.
    pub fn insert(&self, shard: usize, entry: Entry) -> Result<Handle, Errno> {
        let si = shard % self.shards.len();
        let mut s = self.shard(si);
        if s.live >= self.limit {
            return Err(Errno::ENFILE);
        }
        let index = match s.free.pop() {
            Some(i) => i as usize,
            None => {
                s.slots.push(Slot {
                    seq: self.first_seq,
                    entry: None,
                });
                s.slots.len() - 1
            }
        };
        let slot = &mut s.slots[index];
        slot.entry = Some(entry);
        let seq = slot.seq;
        s.live += 1;
        Ok(Handle(
            index as u64 | (si as u64) << 24 | (seq as u64) << 32,
        ))
    }

    /// Splits a handle into (shard, index, seq), if it could be valid.
    fn parts(&self, h: Handle) -> Result<(usize, usize, u32), Errno> {
        let index = (h.0 & 0xff_ffff) as usize;
        let shard = ((h.0 >> 24) & 0xff) as usize;
        let seq = (h.0 >> 32) as u32;
        if shard >= self.shards.len() || seq == 0 {
            return Err(Errno::EBADF);
        }
        Ok((shard, index, seq))
    }

    /// The entry of `h` if `client` holds it; `EBADF` otherwise.
    pub fn get(&self, client: u64, h: Handle) -> Result<Entry, Errno> {
        let (shard, index, seq) = self.parts(h)?;
        let s = self.shards[shard].read().unwrap_or_else(|p| p.into_inner());
        match s.slots.get(index) {
            Some(Slot {
                seq: sq,
                entry: Some(e),
            }) if *sq == seq && e.client == client => Ok(e.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// The inode of `h` alone (`EBADF` as `get`): what a path request
    /// starting at a directory handle needs, without cloning the rest of
    /// the entry.
    pub fn inode(&self, client: u64, h: Handle) -> Result<Arc<Inode>, Errno> {
        let (shard, index, seq) = self.parts(h)?;
        let s = self.shards[shard].read().unwrap_or_else(|p| p.into_inner());
        match s.slots.get(index) {
            Some(Slot {
                seq: sq,
                entry: Some(e),
            }) if *sq == seq && e.client == client => Ok(e.inode.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Drops `h` (`EBADF` if `client` does not hold it).  The inode goes
    /// after the shard lock is released.
    pub fn remove(&self, client: u64, h: Handle) -> Result<(), Errno> {
        let (shard, index, seq) = self.parts(h)?;
        let gone = {
            let mut s = self.shard(shard);
            let slot = match s.slots.get_mut(index) {
                Some(slot)
                    if slot.seq == seq
                        && slot.entry.as_ref().is_some_and(|e| e.client == client) =>
                {
                    slot
                }
                _ => return Err(Errno::EBADF),
            };
            let gone = slot.entry.take();
            slot.seq = next_seq(slot.seq);
            s.free.push(index as u32);
            s.live -= 1;
            gone
        };
        drop(gone);
        Ok(())
    }

    /// Drops every handle `client` holds (a new client generation).
    /// Returns how many.
    pub fn drop_client(&self, client: u64) -> usize {
        let mut n = 0;
        for i in 0..self.shards.len() {
            let mut gone = Vec::new();
            {
                let mut s = self.shard(i);
                let mut freed = Vec::new();
                for (index, slot) in s.slots.iter_mut().enumerate() {
                    if slot.entry.as_ref().is_some_and(|e| e.client == client) {
                        gone.push(slot.entry.take());
                        slot.seq = next_seq(slot.seq);
                        freed.push(index as u32);
                    }
                }
                s.live -= freed.len();
                s.free.extend(freed);
            }
            n += gone.len();
        }
        n
    }

    /// Live handles in all shards.
    pub fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).live)
            .sum()
    }
}

/// One slot as a state image carries it (`handover`): its reuse count and
/// the entry it holds, if any.
pub type SlotImage = (u32, Option<Entry>);

impl HandleTable {
    /// Every slot of every shard, in order (for a state image: a restored
    /// table gives the same numbers the same meaning, and a closed handle
    /// stays closed because its slot keeps its sequence number).
    pub fn export(&self) -> Vec<Vec<SlotImage>> {
        self.shards
            .iter()
            .map(|s| {
                let s = s.read().unwrap_or_else(|p| p.into_inner());
                s.slots
                    .iter()
                    .map(|sl| (sl.seq, sl.entry.clone()))
                    .collect()
            })
            .collect()
    }

    /// A table holding exactly `shards` (as `export` gave them), with at
    /// least `min_shards` shards and `limit` live handles per shard.
    /// `EINVAL` for an image no table could have made (a sequence number
    /// 0, too many shards or slots).
    pub fn restore(
        shards: Vec<Vec<SlotImage>>,
        min_shards: usize,
        limit: usize,
        epoch: u32,
    ) -> Result<HandleTable, Errno> {
        if shards.len() > MAX_SHARDS {
            return Err(Errno::EINVAL);
        }
        let table = HandleTable::with_epoch(shards.len().max(min_shards), limit, epoch);
        for (i, slots) in shards.into_iter().enumerate() {
            if slots.len() > MAX_SLOTS {
                return Err(Errno::EINVAL);
            }
            let mut s = table.shard(i);
            for (index, (seq, entry)) in slots.into_iter().enumerate() {
                if seq == 0 {
                    return Err(Errno::EINVAL);
                }
                if entry.is_some() {
                    s.live += 1;
                } else {
                    s.free.push(index as u32);
                }
                s.slots.push(Slot { seq, entry });
            }
            // Reuse the lowest free slots first, as a fresh table would.
            s.free.reverse();
        }
        Ok(table)
    }
}
