//! The packet rings between the NIC driver (`nicd`) and the network server
//! (`netd`) in the region the kernel keeps for them (`abi::dev::
//! RING_PAGES`, mapped by both with `DEV_RING_MAP`; it outlives a driver
//! instance, so a restarted driver continues where the old one stopped).
//!
//! Layout: page 0 is the header (magic, the driver's generation, the MAC
//! address, then the four ring indices each on its own cache line); pages
//! 1..=128 hold the receive ring (driver → netd), pages 129..=256 the
//! transmit ring (netd → driver): `SLOTS` slots of `SLOT_BYTES` each, a
//! slot being a `u32` length and the Ethernet frame at byte 8.
//!
//! Each ring is single-producer single-consumer (sDDF style,
//! docs/IPC.md): the producer writes a slot and publishes `head` with a
//! release store; the consumer reads `head` with an acquire load, copies
//! the slot out and publishes `tail`.  Each side has a "sleeping" flag
//! (own cache line): it sets it before waiting and looks at its ring once
//! more; a producer kicks only when the flag is set after it published.  Indices run freely (`u32`,
//! wrapping); a ring is full when `head - tail == SLOTS`.
//!
//! Invariants: a side writes only its own index and the slots it owns;
//! neither trusts the other: a length beyond a slot, or indices further
//! apart than `SLOTS`, is treated as an empty ring and a dropped frame.
//!
//! Must not: block (waiting is the caller's, on its notification).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slots per ring.
pub const SLOTS: u32 = 256;
/// Bytes per slot (length word, padding, frame).
pub const SLOT_BYTES: usize = 2048;
/// Largest frame a slot carries.
pub const MAX_FRAME: usize = SLOT_BYTES - 8;
/// Written by the driver once the header is set up.
pub const MAGIC: u32 = 0x4e49_4352;

const PAGE: usize = 4096;
const OFF_MAGIC: usize = 0;
const OFF_GENERATION: usize = 8;
const OFF_MAC: usize = 16;
const OFF_RX_HEAD: usize = 64;
const OFF_RX_TAIL: usize = 128;
const OFF_TX_HEAD: usize = 192;
const OFF_TX_TAIL: usize = 256;
const OFF_DRIVER_SLEEPING: usize = 320;
const OFF_NET_SLEEPING: usize = 384;
const RX_SLOTS_AT: usize = PAGE;
const TX_SLOTS_AT: usize = PAGE + SLOTS as usize * SLOT_BYTES;
const REGION_BYTES: usize = TX_SLOTS_AT + SLOTS as usize * SLOT_BYTES;

const _: () = assert!(REGION_BYTES == abi::dev::RING_PAGES as usize * PAGE);

/// Which ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Received frames: the driver produces, netd consumes.
    Rx,
    /// Frames to send: netd produces, the driver consumes.
    Tx,
}

impl Ring {
    fn offsets(self) -> (usize, usize, usize) {
        match self {
            Ring::Rx => (OFF_RX_HEAD, OFF_RX_TAIL, RX_SLOTS_AT),
            Ring::Tx => (OFF_TX_HEAD, OFF_TX_TAIL, TX_SLOTS_AT),
        }
    }
}

/// Which side of the rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Driver,
    Net,
}

impl Side {
    fn flag(self) -> usize {
        match self {
            Side::Driver => OFF_DRIVER_SLEEPING,
            Side::Net => OFF_NET_SLEEPING,
        }
    }
}

/// The mapped region.
pub struct Region {
    base: *mut u8,
}

// SAFETY: the region is plain shared memory; every shared word is accessed
// atomically, and each slot is written by one producer before it publishes
// it and read by one consumer after (the SPSC protocol above).
unsafe impl Send for Region {}
// SAFETY: as for Send.
unsafe impl Sync for Region {}

impl Region {
    /// The region at `base`.
    ///
    /// # Safety
    /// `base` maps `RING_PAGES` pages for the life of the `Region`, shared
    /// only with the other side of this protocol.
    pub unsafe fn new(base: *mut u8) -> Region {
        Region { base }
    }

    /// Maps the region with `DEV_RING_MAP`.
    pub fn map() -> Result<Region, i32> {
        let base = crate::dev::ring_map()?;
        // SAFETY: the kernel mapped `RING_PAGES` pages there, never unmapped
        // by this process (nothing here calls munmap).
        Ok(unsafe { Region::new(base) })
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= PAGE);
        // SAFETY: an aligned word of the header page, inside the mapping.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= PAGE);
        // SAFETY: as in `u32_at`.
        unsafe { &*(self.base.add(off) as *const AtomicU64) }
    }

    /// The driver's generation (0: no driver set it up yet).
    pub fn generation(&self) -> u64 {
        if self.u32_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return 0;
        }
        self.u64_at(OFF_GENERATION).load(Ordering::Acquire)
    }

    /// The MAC address the driver wrote.
    pub fn mac(&self) -> [u8; 6] {
        let w = self.u64_at(OFF_MAC).load(Ordering::Acquire);
        let b = w.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }

    /// Driver side: publishes the MAC and a new generation (after the
    /// device is running).  Returns the generation.
    pub fn publish_driver(&self, mac: [u8; 6]) -> u64 {
        let mut b = [0u8; 8];
        b[..6].copy_from_slice(&mac);
        self.u64_at(OFF_MAC)
            .store(u64::from_le_bytes(b), Ordering::Release);
        let generation = if self.u32_at(OFF_MAGIC).load(Ordering::Acquire) == MAGIC {
            self.u64_at(OFF_GENERATION).load(Ordering::Acquire) + 1
        } else {
            1
        };
        self.u64_at(OFF_GENERATION)
            .store(generation, Ordering::Release);
        self.u32_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
        generation
    }

    fn slot(&self, at: usize, index: u32) -> *mut u8 {
        // SAFETY: slot `index % SLOTS` of a ring inside the mapping.
        unsafe { self.base.add(at + (index % SLOTS) as usize * SLOT_BYTES) }
    }

    /// `side` is about to wait (`true`) or runs again (`false`).  A side
    /// that says it waits must then look at its rings once more before
    /// waiting (`pending`): a producer that published before seeing the
    /// flag did not kick.
    pub fn set_sleeping(&self, side: Side, sleeping: bool) {
        self.u32_at(side.flag())
            .store(u32::from(sleeping), Ordering::SeqCst);
        // The flag before the caller's last look at the ring's head.
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Producer, after publishing: whether `side` may be waiting and so
    /// needs a kick.  (The flag store and the head store are each followed
    /// by a full fence before the other side's read: no wakeup is lost.)
    pub fn needs_kick(&self, side: Side) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.u32_at(side.flag()).load(Ordering::SeqCst) != 0
    }

    /// Producer: copies `frame` into the next slot of `ring`; `false` when
    /// the ring is full (or the frame too long): the frame is dropped.
    pub fn push(&self, ring: Ring, frame: &[u8]) -> bool {
        let (head_at, tail_at, slots_at) = ring.offsets();
        let head = self.u32_at(head_at).load(Ordering::Relaxed);
        let tail = self.u32_at(tail_at).load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= SLOTS || frame.len() > MAX_FRAME {
            return false;
        }
        let slot = self.slot(slots_at, head);
        // SAFETY: the slot is the producer's until `head` moves past it;
        // the frame fits (checked).
        unsafe {
            (slot as *mut u32).write_volatile(frame.len() as u32);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(8), frame.len());
        }
        self.u32_at(head_at)
            .store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: hands the next frame of `ring` to `f` and frees its slot;
    /// `false` when the ring is empty.
    pub fn pop(&self, ring: Ring, f: &mut dyn FnMut(&[u8])) -> bool {
        let (head_at, tail_at, slots_at) = ring.offsets();
        let tail = self.u32_at(tail_at).load(Ordering::Relaxed);
        let head = self.u32_at(head_at).load(Ordering::Acquire);
        if head == tail || head.wrapping_sub(tail) > SLOTS {
            return false;
        }
        let slot = self.slot(slots_at, tail);
        // SAFETY: the producer published this slot (head covers it) and
        // does not touch it until `tail` moves past it.
        let len = unsafe { (slot as *const u32).read_volatile() } as usize;
        if len <= MAX_FRAME {
            let mut frame = [0u8; MAX_FRAME];
            // SAFETY: `len` bytes of the slot (checked against its size);
            // copied out first so a misbehaving producer cannot change
            // them under `f`.
            unsafe { std::ptr::copy_nonoverlapping(slot.add(8), frame.as_mut_ptr(), len) };
            f(&frame[..len]);
        }
        self.u32_at(tail_at)
            .store(tail.wrapping_add(1), Ordering::Release);
        true
    }
}

impl Region {
    /// Frames waiting in `ring` (0 if the indices make no sense).
    pub fn pending(&self, ring: Ring) -> u32 {
        let (head_at, tail_at, _) = ring.offsets();
        let d = self
            .u32_at(head_at)
            .load(Ordering::Acquire)
            .wrapping_sub(self.u32_at(tail_at).load(Ordering::Acquire));
        if d > SLOTS {
            0
        } else {
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> (Vec<u64>, Region) {
        let mut mem = vec![0u64; REGION_BYTES / 8];
        // SAFETY: the vector is the region's memory and outlives it in
        // each test (returned alongside).
        let r = unsafe { Region::new(mem.as_mut_ptr().cast()) };
        (mem, r)
    }

    #[test]
    fn frames_pass_in_order_through_many_wraps_and_a_full_ring_refuses() {
        let (_mem, r) = region();
        assert_eq!(r.generation(), 0);
        assert_eq!(r.publish_driver([1, 2, 3, 4, 5, 6]), 1);
        assert_eq!(r.publish_driver([1, 2, 3, 4, 5, 6]), 2);
        assert_eq!(r.mac(), [1, 2, 3, 4, 5, 6]);
        for round in 0..5 * SLOTS as usize {
            for ring in [Ring::Rx, Ring::Tx] {
                let frame: Vec<u8> = (0..60 + round % 1400).map(|i| (i + round) as u8).collect();
                assert!(r.push(ring, &frame));
                let mut got = Vec::new();
                assert!(r.pop(ring, &mut |f| got = f.to_vec()));
                assert_eq!(got, frame);
                assert!(!r.pop(ring, &mut |_| panic!("empty ring")));
            }
        }
        for _ in 0..SLOTS {
            assert!(r.push(Ring::Tx, &[7; 64]));
        }
        assert!(!r.push(Ring::Tx, &[7; 64]), "a full ring refuses");
        assert_eq!(r.pending(Ring::Tx), SLOTS);
        assert!(!r.push(Ring::Rx, &[0; MAX_FRAME + 1]), "too long");
    }

    #[test]
    fn a_forged_length_or_index_drops_instead_of_overrunning() {
        let (mut mem, r) = region();
        assert!(r.push(Ring::Rx, &[1; 100]));
        // The producer lies about the length of its slot.
        mem[RX_SLOTS_AT / 8] = 1 << 20;
        assert!(r.pop(Ring::Rx, &mut |_| panic!(
            "a forged length must not reach f"
        )));
        // Indices further apart than the ring: empty, nothing read.
        mem[OFF_RX_HEAD / 8] = 10_000;
        assert_eq!(r.pending(Ring::Rx), 0);
        assert!(!r.pop(Ring::Rx, &mut |_| panic!("impossible indices")));
    }
}
