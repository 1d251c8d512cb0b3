//! Shared-memory request slots between the kernel's client and an OS
//! server on a dedicated core (`servers.placement=dedicated`,
//! docs/SERVERS.md "Placement and migration").  `no_std`; the kernel and
//! the server both link it, so the layout and the protocol exist once.
//!
//! Owns: the layout of the region (a header page, then `SLOT_BYTES` per
//! slot), the slot states and the operations of each side.  The region is
//! memory of the server that the kernel also reaches (pinned pages through
//! its direct map); `Mem` abstracts how each side addresses it.
//!
//! Protocol of one slot (client = the kernel, for one calling thread):
//!
//! ```text
//! FREE --client claims (CAS)--> CLAIMED --client writes, publishes--> REQUEST
//! REQUEST --server takes (CAS)--> BUSY --server writes reply--> DONE
//! DONE --client reads the reply--> FREE
//! REQUEST --client withdraws (CAS, interrupted before the server took it)--> FREE
//! ```
//!
//! Memory ordering.  Whoever moves a slot to a state in which the other
//! side reads it publishes with a release store (or SeqCst, below) after
//! writing the slot's contents; the other side checks the state with an
//! acquire load (or an acquire CAS) before it reads them.  So the request
//! written before `REQUEST` is seen whole by the server that saw `REQUEST`,
//! and the reply written before `DONE` by the client that saw `DONE`.
//! Only the state's owner writes the rest of the slot, so no byte is
//! written by two sides at once (a misbehaving server can still write
//! anything: the kernel checks every length it reads).
//!
//! Sleeping without lost wake-ups (both are Dekker hand-shakes on SeqCst
//! operations: of a store-then-load pair on each side, at least one load
//! sees the other side's store):
//! - the server, finding nothing, stores `server_sleeping = its token`
//!   (non-zero) then rescans the states; the client stores `REQUEST` then
//!   swaps `server_sleeping` to 0, and notifies the server if it was set;
//! - the client, waiting for its reply, stores `waiting = 1` then loads
//!   the state; the server stores `DONE` then loads `waiting`, and
//!   notifies the kernel (which wakes the caller) if it was 1.
//!
//! Which server instance serves (replacement, docs/SERVERS.md): the
//! header's `owner` word names the instance (a token the kernel chose)
//! that may take requests; 0 while a switch is under way.  A server takes
//! a request (CAS `REQUEST` -> `BUSY`, SeqCst), then loads `owner`
//! (SeqCst); if it is not its own it puts the request back (`BUSY` ->
//! `REQUEST`) untouched.  The kernel stores `owner` (SeqCst), then waits
//! until no slot is `BUSY` (SeqCst loads).  Of the two store-then-load
//! pairs one sees the other: a request is either put back or finished
//! before the kernel goes on, so after `set_owner(0)` and `!any_busy()`
//! no instance works on a slot, and requests published meanwhile wait for
//! the next owner.
//!
//! Must not: trust the other side's lengths, or block (the callers decide
//! how to wait).

#![no_std]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// `magic` once the server filled the header.
pub const MAGIC: u32 = 0x5249_4e47;
/// Bytes of the header.
pub const HEADER_BYTES: usize = 4096;
/// Bytes of one slot (three pages: a 64-byte slot header and the payload).
pub const SLOT_BYTES: usize = 3 * 4096;
/// Most payload bytes in one slot, each way.
pub const PAYLOAD_MAX: usize = 8192;
/// Offset of the payload in a slot.
const PAYLOAD: usize = 64;

// Header fields.
const H_MAGIC: usize = 0;
const H_SLOTS: usize = 4;
/// The server's handle of the notification the client raises to wake it.
const H_SERVER_NOTIFY: usize = 8;
/// The server's handle of the notification it raises when a waiting
/// client's reply is done (bit i: slot i).
const H_DONE_NOTIFY: usize = 16;
/// On its own cache line.
const H_SLEEPING: usize = 64;
/// The token (u32) of the instance that serves (0: none, a switch is
/// under way); written by the kernel, read by the servers.  Its own line.
const H_OWNER: usize = 128;

// Slot fields.
const S_STATE: usize = 0;
const S_WAITING: usize = 4;
const S_LABEL: usize = 8;
const S_WORDS: usize = 16;
const S_LEN: usize = 48;

pub const FREE: u32 = 0;
pub const CLAIMED: u32 = 1;
pub const REQUEST: u32 = 2;
pub const BUSY: u32 = 3;
pub const DONE: u32 = 4;

/// Bytes of a region with `slots` slots.
pub const fn region_bytes(slots: usize) -> usize {
    HEADER_BYTES + slots * SLOT_BYTES
}

/// Most slots: one bit each in a notification word (bit 63 is reserved).
pub const MAX_SLOTS: usize = 63;

/// How one side addresses the region.  Offsets are below the region's
/// size and aligned for the type (the implementations may panic
/// otherwise: only this crate calls them, with its own constants).
pub trait Mem {
    fn u32_at(&self, off: usize) -> &AtomicU32;
    fn u64_at(&self, off: usize) -> &AtomicU64;
    /// Copies `dst.len()` bytes from `off`.
    fn read(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` to `off`.
    fn write(&self, off: usize, src: &[u8]);
}

/// A message in a slot: label, four words and the payload length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub label: u64,
    pub words: [u64; 4],
    pub len: usize,
}

/// The region of `slots` slots over `mem`.
pub struct Ring<M: Mem> {
    mem: M,
    slots: usize,
}

impl<M: Mem> Ring<M> {
    /// `slots` must be 1..=MAX_SLOTS and `mem` at least
    /// `region_bytes(slots)` long; None otherwise.
    pub fn new(mem: M, slots: usize) -> Option<Ring<M>> {
        (1..=MAX_SLOTS)
            .contains(&slots)
            .then_some(Ring { mem, slots })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn slot(&self, i: usize) -> usize {
        HEADER_BYTES + i * SLOT_BYTES
    }

    fn state(&self, i: usize) -> &AtomicU32 {
        self.mem.u32_at(self.slot(i) + S_STATE)
    }

    fn put(&self, i: usize, head: Head, payload: &[u8]) {
        let s = self.slot(i);
        self.mem
            .u64_at(s + S_LABEL)
            .store(head.label, Ordering::Relaxed);
        for (k, w) in head.words.iter().enumerate() {
            self.mem
                .u64_at(s + S_WORDS + 8 * k)
                .store(*w, Ordering::Relaxed);
        }
        self.mem
            .u32_at(s + S_LEN)
            .store(payload.len() as u32, Ordering::Relaxed);
        self.mem.write(s + PAYLOAD, payload);
    }

    /// Reads slot `i`'s message into `buf`; None if its length is more
    /// than `PAYLOAD_MAX` or `buf` holds (never trusted).
    fn get(&self, i: usize, buf: &mut [u8]) -> Option<Head> {
        let s = self.slot(i);
        let len = self.mem.u32_at(s + S_LEN).load(Ordering::Relaxed) as usize;
        if len > PAYLOAD_MAX || len > buf.len() {
            return None;
        }
        let mut words = [0u64; 4];
        for (k, w) in words.iter_mut().enumerate() {
            *w = self.mem.u64_at(s + S_WORDS + 8 * k).load(Ordering::Relaxed);
        }
        self.mem.read(s + PAYLOAD, &mut buf[..len]);
        Some(Head {
            label: self.mem.u64_at(s + S_LABEL).load(Ordering::Relaxed),
            words,
            len,
        })
    }

    // ---- header ----

    /// The server fills the header: its two notification handles, then
    /// the magic (release: a client that sees it sees the handles).
    pub fn server_init(&self, server_notify: u64, done_notify: u64) {
        self.mem
            .u32_at(H_SLOTS)
            .store(self.slots as u32, Ordering::Relaxed);
        self.mem
            .u64_at(H_SERVER_NOTIFY)
            .store(server_notify, Ordering::Relaxed);
        self.mem
            .u64_at(H_DONE_NOTIFY)
            .store(done_notify, Ordering::Relaxed);
        self.mem.u32_at(H_MAGIC).store(MAGIC, Ordering::Release);
    }

    /// The handles the server published (server notify, done notify), if
    /// it did, with as many slots as this ring.
    pub fn client_handles(&self) -> Option<(u64, u64)> {
        if self.mem.u32_at(H_MAGIC).load(Ordering::Acquire) != MAGIC
            || self.mem.u32_at(H_SLOTS).load(Ordering::Relaxed) as usize != self.slots
        {
            return None;
        }
        Some((
            self.mem.u64_at(H_SERVER_NOTIFY).load(Ordering::Relaxed),
            self.mem.u64_at(H_DONE_NOTIFY).load(Ordering::Relaxed),
        ))
    }

    // ---- client ----

    /// Claims a free slot, trying `start` first; None when all are busy.
    pub fn claim(&self, start: usize) -> Option<usize> {
        (0..self.slots)
            .map(|k| (start + k) % self.slots)
            .find(|&i| {
                self.state(i)
                    .compare_exchange(FREE, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            })
    }

    /// Writes the request into claimed slot `i` and publishes it.  Returns
    /// whether the server sleeps and must be notified (then this call has
    /// cleared its flag).
    pub fn publish(&self, i: usize, head: Head, payload: &[u8]) -> bool {
        let payload = &payload[..payload.len().min(PAYLOAD_MAX)];
        self.put(i, head, payload);
        self.mem
            .u32_at(self.slot(i) + S_WAITING)
            .store(0, Ordering::Relaxed);
        self.state(i).store(REQUEST, Ordering::SeqCst);
        self.mem.u32_at(H_SLEEPING).swap(0, Ordering::SeqCst) != 0
    }

    /// Whether slot `i`'s reply is there (acquire: its contents are
    /// visible after a true).
    pub fn is_done(&self, i: usize) -> bool {
        self.state(i).load(Ordering::Acquire) == DONE
    }

    /// Names the instance that serves (`token`, 0: none; module doc).
    pub fn set_owner(&self, token: u32) {
        self.mem.u32_at(H_OWNER).store(token, Ordering::SeqCst);
    }

    /// The token of the instance that serves.
    pub fn owner(&self) -> u32 {
        self.mem.u32_at(H_OWNER).load(Ordering::SeqCst)
    }

    /// Whether a server works on some slot (`BUSY`): after
    /// `set_owner(0)`, false means no instance does or will.
    pub fn any_busy(&self) -> bool {
        (0..self.slots).any(|i| self.state(i).load(Ordering::SeqCst) == BUSY)
    }

    /// The client will sleep until slot `i` is done: returns whether it
    /// is done already (then it must not sleep).
    pub fn prepare_wait(&self, i: usize) -> bool {
        self.mem
            .u32_at(self.slot(i) + S_WAITING)
            .store(1, Ordering::SeqCst);
        self.state(i).load(Ordering::SeqCst) == DONE
    }

    /// Takes back the request of slot `i` if the server has not taken it
    /// yet (`REQUEST` -> `FREE`; a caller interrupted by a signal): true
    /// when it was withdrawn (the server never sees it), false when the
    /// server has it (the reply will come; wait for it).
    pub fn withdraw(&self, i: usize) -> bool {
        self.state(i)
            .compare_exchange(REQUEST, FREE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Takes the reply of done slot `i` into `buf` and frees the slot.
    /// None when the server's reply is malformed (too long).
    pub fn take_reply(&self, i: usize, buf: &mut [u8]) -> Option<Head> {
        let head = self.get(i, buf);
        self.state(i).store(FREE, Ordering::Release);
        head
    }

    // ---- server ----

    /// Takes the next published request, looking from `start` on.
    pub fn next_request(&self, start: usize) -> Option<usize> {
        (0..self.slots)
            .map(|k| (start + k) % self.slots)
            .find(|&i| {
                self.state(i).load(Ordering::Relaxed) == REQUEST
                    && self
                        .state(i)
                        .compare_exchange(REQUEST, BUSY, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
            })
    }

    /// `next_request` for the instance `token`: None also when another
    /// instance is the owner (a request taken then is put back: module
    /// doc).
    pub fn next_request_as(&self, start: usize, token: u32) -> Option<usize> {
        let i = self.next_request(start)?;
        if self.owner() != token {
            self.state(i).store(REQUEST, Ordering::SeqCst);
            return None;
        }
        Some(i)
    }

    /// The request of slot `i` (taken by `next_request`), payload into
    /// `buf`; None when the client's length is malformed.
    pub fn request(&self, i: usize, buf: &mut [u8]) -> Option<Head> {
        self.get(i, buf)
    }

    /// Writes the reply of slot `i` and marks it done.  Returns whether
    /// the client sleeps and must be woken (bit `i` of the done
    /// notification).
    pub fn complete(&self, i: usize, head: Head, payload: &[u8]) -> bool {
        let payload = &payload[..payload.len().min(PAYLOAD_MAX)];
        self.put(i, head, payload);
        self.state(i).store(DONE, Ordering::SeqCst);
        self.mem
            .u32_at(self.slot(i) + S_WAITING)
            .load(Ordering::SeqCst)
            == 1
    }

    /// The server will sleep: sets its flag, then returns whether a
    /// request is there after all (then it must not sleep; it clears the
    /// flag itself with `awake`).
    pub fn prepare_sleep(&self) -> bool {
        self.prepare_sleep_as(1)
    }

    /// The server is awake (clears its flag).
    pub fn awake(&self) {
        self.awake_as(1)
    }

    /// `prepare_sleep` of instance `token` (not 0): the flag holds the
    /// sleeper's token, so that a predecessor waking late (`awake_as` with
    /// its own token) cannot clear the flag of its successor, which would
    /// then sleep through a request.
    pub fn prepare_sleep_as(&self, token: u32) -> bool {
        self.mem
            .u32_at(H_SLEEPING)
            .store(token.max(1), Ordering::SeqCst);
        (0..self.slots).any(|i| self.state(i).load(Ordering::SeqCst) == REQUEST)
    }

    /// `awake` of instance `token`: clears the flag if it is its own.
    pub fn awake_as(&self, token: u32) {
        let _ = self.mem.u32_at(H_SLEEPING).compare_exchange(
            token.max(1),
            0,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// A region that is contiguous in the address space of whoever uses it
/// (the server's mapping; host tests' memory).
pub struct RawMem {
    base: *mut u8,
    len: usize,
}

// SAFETY: the region is only accessed through atomics and through byte
// copies whose exclusivity the slot protocol guarantees (module doc).
unsafe impl Send for RawMem {}
// SAFETY: as for Send.
unsafe impl Sync for RawMem {}

impl RawMem {
    /// # Safety
    /// `base` must be 8-byte aligned and valid for reads and writes of
    /// `len` bytes for as long as the `RawMem` is used, and accessed by
    /// others only through this protocol.
    pub unsafe fn new(base: *mut u8, len: usize) -> RawMem {
        RawMem { base, len }
    }

    fn at(&self, off: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            off.checked_add(size).is_some_and(|end| end <= self.len) && off % align == 0,
            "ring: offset {off} out of the region"
        );
        self.base.wrapping_add(off)
    }
}

impl Mem for RawMem {
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        let p = self.at(off, 4, 4);
        // SAFETY: in bounds and aligned (checked); the memory lives as
        // long as `self` (`new`'s contract); AtomicU32 has u32's layout.
        unsafe { &*(p as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        let p = self.at(off, 8, 8);
        // SAFETY: as in `u32_at`.
        unsafe { &*(p as *const AtomicU64) }
    }

    fn read(&self, off: usize, dst: &mut [u8]) {
        let p = self.at(off, dst.len(), 1);
        // SAFETY: in bounds (checked); the slot protocol makes this side
        // the only one writing these bytes now.
        unsafe { core::ptr::copy_nonoverlapping(p, dst.as_mut_ptr(), dst.len()) };
    }

    fn write(&self, off: usize, src: &[u8]) {
        let p = self.at(off, src.len(), 1);
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) };
    }
}
