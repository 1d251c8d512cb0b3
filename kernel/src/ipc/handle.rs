//! Per-process handle tables: the only way a process names an IPC object.
//!
//! Owns: the slots of one process (object, rights, badge, generation) and
//! the encoding of handle numbers.  A handle is `generation << 12 |
//! index`: a closed slot's generation moves on, so an old number (stale)
//! or a made-up one (forged) finds no object and gives `EBADF`; a handle
//! without the right an operation needs gives `EPERM`.
//!
//! Capability rules: a process holds only handles it created, minted from
//! its own, or inherited at fork (endpoints and notifications; reply
//! tokens are one-shot and stay with the receiver).  Objects live as long
//! as some handle (or a call in progress) refers to them.  Endpoint
//! handles with the receive right are counted on the endpoint
//! (`RecvRight`), so the last one going away fails its callers.
//!
//! Room to grow: a slot holds an `Object`, so page grants (a `Grant`
//! object naming frames of the granter) and per-core server threads (more
//! receivers on one endpoint, each its own `Waiter`) fit without changing
//! the table.
//!
//! Per-core: one lock per process (threads of one process share it; no two
//! processes do).  Must not: drop an object while holding the table lock
//! (dropping an endpoint right or a reply token wakes threads), or panic
//! on any handle number.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::endpoint::{Endpoint, ReplyCap};
use super::notify::Notification;
use crate::sched::IrqSpinLock;
use abi::ipc::{IPC_MAX_HANDLES, RIGHT_MINT, RIGHT_RECV};
use abi::Errno;

const INDEX_BITS: u32 = 12;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// Generations wrap below this (handles stay below 2^30, positive ints).
const GEN_LIMIT: u32 = 1 << 18;
const _: () = assert!(IPC_MAX_HANDLES as u64 == INDEX_MASK + 1);

/// An endpoint reference that counts as a receive right when it has one.
pub struct EndpointRef {
    ep: Arc<Endpoint>,
    recv: bool,
}

impl EndpointRef {
    pub fn new(ep: Arc<Endpoint>, recv: bool) -> EndpointRef {
        if recv {
            ep.add_recv_right();
        }
        EndpointRef { ep, recv }
    }
}

impl Clone for EndpointRef {
    fn clone(&self) -> Self {
        EndpointRef::new(self.ep.clone(), self.recv)
    }
}

impl Drop for EndpointRef {
    fn drop(&mut self) {
        if self.recv {
            self.ep.drop_recv_right();
        }
    }
}

/// What a handle names.
pub enum Object {
    Endpoint(EndpointRef),
    Notification(Arc<Notification>),
    /// The right to answer one call (one-shot; not inherited).
    Reply(ReplyCap),
}

struct Entry {
    object: Object,
    rights: u32,
    badge: u64,
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// An entry copied for a child: object, rights, badge.
type Copied = (Object, u32, u64);

/// A process's handles.
pub struct HandleTable {
    slots: IrqSpinLock<Vec<Slot>>,
}

impl Default for HandleTable {
    fn default() -> Self {
        Self::new()
    }
}

fn encode(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << INDEX_BITS) | index as u64
}

fn next_generation(g: u32) -> u32 {
    if g + 1 >= GEN_LIMIT {
        1
    } else {
        g + 1
    }
}

/// The entry `handle` names in `slots` (its generation must match).
fn lookup(slots: &[Slot], handle: u64) -> Option<&Entry> {
    let index = (handle & INDEX_MASK) as usize;
    let generation = handle >> INDEX_BITS;
    match slots.get(index) {
        Some(Slot {
            generation: g,
            entry: Some(entry),
        }) if u64::from(*g) == generation => Some(entry),
        _ => None,
    }
}

/// Takes the reply token `handle` names out of `slots` (locked); `EBADF`
/// for anything else, which stays.
fn take_reply_locked(slots: &mut [Slot], handle: u64) -> Result<ReplyCap, Errno> {
    let index = (handle & INDEX_MASK) as usize;
    let generation = handle >> INDEX_BITS;
    let slot = slots.get_mut(index).ok_or(Errno::EBADF)?;
    if u64::from(slot.generation) != generation
        || !matches!(
            slot.entry,
            Some(Entry {
                object: Object::Reply(_),
                ..
            })
        )
    {
        return Err(Errno::EBADF);
    }
    match slot.entry.take() {
        Some(Entry {
            object: Object::Reply(cap),
            ..
        }) => Ok(cap),
        _ => Err(Errno::EBADF),
    }
}

impl HandleTable {
    pub const fn new() -> HandleTable {
        HandleTable {
            slots: IrqSpinLock::new(Vec::new()),
        }
    }

    /// Runs `f` on the entry `handle` names, or `EBADF`.
    fn with_entry<R>(&self, handle: u64, f: impl FnOnce(&Entry) -> R) -> Result<R, Errno> {
        let slots = self.slots.lock();
        lookup(&slots, handle).map(f).ok_or(Errno::EBADF)
    }

    /// Adds an object; `EMFILE` when the table is full.  On error the
    /// object is returned to the caller to drop (outside any lock).
    pub fn insert(&self, object: Object, rights: u32, badge: u64) -> Result<u64, (Errno, Object)> {
        let mut slots = self.slots.lock();
        let index = match slots.iter().position(|s| s.entry.is_none()) {
            Some(i) => i,
            None if slots.len() < IPC_MAX_HANDLES => {
                slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                slots.len() - 1
            }
            None => return Err((Errno::EMFILE, object)),
        };
        let slot = &mut slots[index];
        slot.generation = next_generation(slot.generation);
        slot.entry = Some(Entry {
            object,
            rights,
            badge,
        });
        Ok(encode(index, slot.generation))
    }

    /// Adds an object, dropping it (outside the lock) when full.
    pub fn insert_or_drop(&self, object: Object, rights: u32, badge: u64) -> Result<u64, Errno> {
        self.insert(object, rights, badge).map_err(|(e, object)| {
            drop(object);
            e
        })
    }

    /// The endpoint `handle` names, if the handle has `right`; with its
    /// badge.
    pub fn endpoint(&self, handle: u64, right: u32) -> Result<(Arc<Endpoint>, u64), Errno> {
        self.with_entry(handle, |e| match &e.object {
            Object::Endpoint(r) if e.rights & right == right => Ok((r.ep.clone(), e.badge)),
            Object::Endpoint(_) => Err(Errno::EPERM),
            _ => Err(Errno::EBADF),
        })?
    }

    /// The notification `handle` names, if the handle has `right`.
    pub fn notification(&self, handle: u64, right: u32) -> Result<Arc<Notification>, Errno> {
        self.with_entry(handle, |e| match &e.object {
            Object::Notification(n) if e.rights & right == right => Ok(n.clone()),
            Object::Notification(_) => Err(Errno::EPERM),
            _ => Err(Errno::EBADF),
        })?
    }

    /// `ipc_reply_recv`'s look-ups in one pass under the lock (the
    /// fastpath takes the table lock once before the switch, not twice):
    /// the endpoint `handle` names, if the handle has `right`, with its
    /// badge; and, when `token` is not 0, the reply token it names, taken
    /// out.  On any error nothing is taken.
    pub fn endpoint_and_reply(
        &self,
        handle: u64,
        right: u32,
        token: u64,
    ) -> Result<(Arc<Endpoint>, u64, Option<ReplyCap>), Errno> {
        let mut slots = self.slots.lock();
        let (ep, badge) = match lookup(&slots, handle) {
            Some(Entry {
                object: Object::Endpoint(r),
                rights,
                badge,
            }) if rights & right == right => (&r.ep, *badge),
            Some(Entry {
                object: Object::Endpoint(_),
                ..
            }) => return Err(Errno::EPERM),
            _ => return Err(Errno::EBADF),
        };
        let ep = ep.clone();
        if token == 0 {
            return Ok((ep, badge, None));
        }
        let cap = take_reply_locked(&mut slots, token)?;
        Ok((ep, badge, Some(cap)))
    }

    /// Removes and returns the reply token `handle` names (`EBADF` for
    /// anything else, which stays).
    pub fn take_reply(&self, handle: u64) -> Result<ReplyCap, Errno> {
        take_reply_locked(&mut self.slots.lock(), handle)
    }

    /// Closes `handle`.
    pub fn close(&self, handle: u64) -> Result<(), Errno> {
        let index = (handle & INDEX_MASK) as usize;
        let generation = handle >> INDEX_BITS;
        let entry = {
            let mut slots = self.slots.lock();
            match slots.get_mut(index) {
                Some(slot) if u64::from(slot.generation) == generation => slot.entry.take(),
                _ => None,
            }
        };
        match entry {
            Some(entry) => {
                drop(entry);
                Ok(())
            }
            None => Err(Errno::EBADF),
        }
    }

    /// A new handle on `handle`'s object with `rights` (a subset of its
    /// own; needs `RIGHT_MINT`) and `badge`.
    pub fn mint(&self, handle: u64, rights: u32, badge: u64) -> Result<u64, Errno> {
        let object = self.with_entry(handle, |e| {
            if e.rights & RIGHT_MINT == 0 || rights & !e.rights != 0 {
                return Err(Errno::EPERM);
            }
            match &e.object {
                Object::Endpoint(r) => Ok(Object::Endpoint(EndpointRef {
                    ep: r.ep.clone(),
                    recv: false,
                })),
                Object::Notification(n) => Ok(Object::Notification(n.clone())),
                Object::Reply(_) => Err(Errno::EPERM),
            }
        })??;
        // The receive count is taken outside the table lock (it takes the
        // endpoint's lock).
        let object = match object {
            Object::Endpoint(r) => {
                Object::Endpoint(EndpointRef::new(r.ep.clone(), rights & RIGHT_RECV != 0))
            }
            other => other,
        };
        self.insert_or_drop(object, rights, badge)
    }

    /// Fills this (new, empty) table of a forked child from its parent's:
    /// the same endpoints and notifications under the same numbers; no
    /// reply tokens.
    pub fn inherit(&self, parent: &HandleTable) {
        let this = parent;
        // Collect the clones' ingredients under the lock, then count the
        // receive rights outside it.
        let copied: Vec<(u32, Option<Copied>)> = {
            let slots = this.slots.lock();
            slots
                .iter()
                .map(|s| {
                    let entry = s.entry.as_ref().and_then(|e| {
                        let object = match &e.object {
                            Object::Endpoint(r) => Object::Endpoint(EndpointRef {
                                ep: r.ep.clone(),
                                recv: false,
                            }),
                            Object::Notification(n) => Object::Notification(n.clone()),
                            Object::Reply(_) => return None,
                        };
                        Some((object, e.rights, e.badge))
                    });
                    (s.generation, entry)
                })
                .collect()
        };
        let slots: Vec<Slot> = copied
            .into_iter()
            .map(|(generation, entry)| Slot {
                generation,
                entry: entry.map(|(object, rights, badge)| Entry {
                    object: match object {
                        Object::Endpoint(r) => Object::Endpoint(EndpointRef::new(
                            r.ep.clone(),
                            rights & RIGHT_RECV != 0,
                        )),
                        other => other,
                    },
                    rights,
                    badge,
                }),
            })
            .collect();
        let old = core::mem::replace(&mut *self.slots.lock(), slots);
        drop(old);
    }

    /// The process ended: every handle goes (reply tokens answer `EPIPE`,
    /// the last receive rights fail their endpoints' callers).
    pub fn release(&self) {
        let slots = core::mem::take(&mut *self.slots.lock());
        drop(slots);
    }
}
