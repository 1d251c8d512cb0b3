//! The server's handle table: the sockets it holds for its clients, named
//! by numbers it hands out (the same scheme as the file server's).
//!
//! Owns `HandleTable<T>`.  A handle is `index | shard << 24 | seq << 32`:
//! `shard` is the shard of the server thread that made it, `index` its slot
//! there, `seq` the slot's reuse count (never 0, so handle 0 is never
//! valid).  A closed handle, a reused slot, a number never issued and one
//! given to another client all fail the check with `EBADF`.
//!
//! Sharing: each server thread creates handles in its own shard, so
//! `socket`/`accept`/`close` on different cores take different locks; a
//! lookup takes its shard's lock for reading and clones an `Arc`.
//!
//! Must not: hold a shard lock across a socket operation (entries are
//! `Arc`s cloned out; dropping one happens after the lock is released).

use std::sync::{Arc, RwLock, RwLockWriteGuard};

use abi::Errno;
use netproto::Handle;
use percpu::CachePadded;

/// Slots per shard (24 bits of the handle).
const MAX_SLOTS: usize = 1 << 24;
/// Shards (8 bits of the handle).
pub const MAX_SHARDS: usize = 256;

struct Slot<T> {
    seq: u32,
    entry: Option<(u64, Arc<T>)>,
}

struct Shard<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

/// The table: one shard per server thread.
pub struct HandleTable<T> {
    shards: Box<[CachePadded<RwLock<Shard<T>>>]>,
    limit: usize,
    /// The first sequence number of a new slot: `epoch << 24 | 1`, so an
    /// instance started after a crash (epoch N) never hands out a number
    /// the dead one gave (until 2^8 restarts or 2^24 reuses of a slot).
    first_seq: u32,
}

fn next_seq(s: u32) -> u32 {
    match s.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

impl<T> HandleTable<T> {
    /// `shards` shards (1..=`MAX_SHARDS`) of at most `limit` live handles.
    pub fn new(shards: usize, limit: usize) -> HandleTable<T> {
        Self::with_epoch(shards, limit, 0)
    }

    /// As `new`, numbering slots from restart epoch `epoch`.
    pub fn with_epoch(shards: usize, limit: usize, epoch: u32) -> HandleTable<T> {
        HandleTable {
            first_seq: ((epoch & 0xff) << 24) | 1,
            shards: (0..shards.clamp(1, MAX_SHARDS))
                .map(|_| {
                    CachePadded::new(RwLock::new(Shard {
                        slots: Vec::new(),
                        free: Vec::new(),
                        live: 0,
                    }))
                })
                .collect(),
            limit: limit.min(MAX_SLOTS),
        }
    }

    fn write(&self, i: usize) -> RwLockWriteGuard<'_, Shard<T>> {
        // Every update is a few assignments: a poisoned lock is consistent.
        self.shards[i].write().unwrap_or_else(|p| p.into_inner())
    }

    /// A new handle in shard `shard` for `client`; `EMFILE` when full.
    pub fn insert(&self, shard: usize, client: u64, entry: Arc<T>) -> Result<Handle, Errno> {
        let si = shard % self.shards.len();
        let mut s = self.write(si);
        if s.live >= self.limit {
            return Err(Errno::EMFILE);
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
        slot.entry = Some((client, entry));
        let seq = slot.seq;
        s.live += 1;
        Ok(Handle(
            index as u64 | (si as u64) << 24 | (seq as u64) << 32,
        ))
    }

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
    pub fn get(&self, client: u64, h: Handle) -> Result<Arc<T>, Errno> {
        let (shard, index, seq) = self.parts(h)?;
        let s = self.shards[shard].read().unwrap_or_else(|p| p.into_inner());
        match s.slots.get(index) {
            Some(Slot {
                seq: sq,
                entry: Some((c, e)),
            }) if *sq == seq && *c == client => Ok(e.clone()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Takes `h` out (`EBADF` if `client` does not hold it).
    pub fn remove(&self, client: u64, h: Handle) -> Result<Arc<T>, Errno> {
        let (shard, index, seq) = self.parts(h)?;
        let mut s = self.write(shard);
        let slot = match s.slots.get_mut(index) {
            Some(slot)
                if slot.seq == seq && slot.entry.as_ref().is_some_and(|(c, _)| *c == client) =>
            {
                slot
            }
            _ => return Err(Errno::EBADF),
        };
        let (_, e) = slot.entry.take().ok_or(Errno::EBADF)?;
        slot.seq = next_seq(slot.seq);
        s.free.push(index as u32);
        s.live -= 1;
        Ok(e)
    }

    /// Takes out every handle `client` holds (a new client generation).
    pub fn drop_client(&self, client: u64) -> Vec<Arc<T>> {
        let mut gone = Vec::new();
        for i in 0..self.shards.len() {
            let mut s = self.write(i);
            let mut freed = Vec::new();
            for (index, slot) in s.slots.iter_mut().enumerate() {
                if slot.entry.as_ref().is_some_and(|(c, _)| *c == client) {
                    if let Some((_, e)) = slot.entry.take() {
                        gone.push(e);
                    }
                    slot.seq = next_seq(slot.seq);
                    freed.push(index as u32);
                }
            }
            s.live -= freed.len();
            s.free.extend(freed);
        }
        gone
    }

    /// Live handles in all shards.
    pub fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).live)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of a later restart epoch never hands out a number an
    /// earlier instance gave, and refuses the earlier numbers.
    #[test]
    fn epochs_do_not_share_numbers() {
        let old: HandleTable<u8> = HandleTable::new(2, 16);
        let new: HandleTable<u8> = HandleTable::with_epoch(2, 16, 1);
        let a = old.insert(0, 7, Arc::new(1)).unwrap();
        let b = new.insert(0, 7, Arc::new(2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(new.get(7, a).err(), Some(Errno::EBADF));
        assert_eq!(*new.get(7, b).unwrap(), 2);
    }
}
