//! A split virtqueue (virtio 1.x, §2.7): descriptor table, driver ("avail")
//! ring and device ("used") ring, each in its own 4 KiB page of DMA memory
//! (the modern PCI transport takes three separate addresses, so no
//! multi-page region is needed).
//!
//! Owns the driver's ring indices; the ring memory is the caller's
//! (`Region`s it keeps alive and mapped as long as the queue exists).  Invariants: the
//! queue size is a power of two no larger than `MAX_QUEUE_SIZE` (so each
//! part fits in one 4 KiB frame); a descriptor id is in the avail ring at
//! most once until the device returns it in the used ring; ring indices are
//! published with a release fence after the entries they cover.
//!
//! Must not: be used without external synchronisation (the driver keeps
//! each queue under one lock), nor allocate.

use core::sync::atomic::{fence, Ordering};

/// One 4 KiB page of DMA memory: where the CPU sees it and where the
/// device does.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub virt: *mut u8,
    pub phys: u64,
}

/// Bytes in one `Region`.
pub const REGION_BYTES: usize = 4096;

impl Region {
    /// Device (physical) address of byte `offset`.
    pub fn phys(&self, offset: usize) -> u64 {
        debug_assert!(offset < REGION_BYTES);
        self.phys + offset as u64
    }

    /// CPU pointer to byte `offset`.
    pub fn virt(&self, offset: usize) -> *mut u8 {
        assert!(offset < REGION_BYTES, "DMA offset {} out of page", offset);
        // SAFETY: in bounds of the page (checked above).
        unsafe { self.virt.add(offset) }
    }
}

/// Largest queue this driver sets up (a 16-byte descriptor each: 4 KiB).
pub const MAX_QUEUE_SIZE: u16 = 256;

/// Descriptor flags.
pub const DESC_F_NEXT: u16 = 1;
pub const DESC_F_WRITE: u16 = 2;
/// Avail ring flag: the driver does not want used-buffer interrupts.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

const DESC_BYTES: usize = 16;
const RING_HEADER_BYTES: usize = 4;
const USED_ELEM_BYTES: usize = 8;

pub struct Virtqueue {
    size: u16,
    desc: Region,
    avail: Region,
    used: Region,
    /// Next free slot of the avail ring (free-running).
    avail_idx: u16,
    /// Next used-ring entry to read (free-running).
    last_used: u16,
    /// Where a write of the queue index tells the device to look.
    notify: *mut u16,
    /// This queue's index on its device.
    pub index: u16,
}

// SAFETY: the ring frames and the notify register are only touched through
// `&mut self`, and the driver holds the queue under a lock.
unsafe impl Send for Virtqueue {}

impl Virtqueue {
    /// A queue of `size` entries (a power of two, at most
    /// `MAX_QUEUE_SIZE`) in three zeroed pages.  `notify` is set later
    /// (`set_notify`).
    ///
    /// # Safety
    /// The three regions are distinct, zeroed, mapped for the CPU at
    /// `virt` and for the device at `phys`, and stay so (and are used by
    /// nothing else) while the queue or the device may touch them.
    pub unsafe fn new(
        index: u16,
        size: u16,
        desc: Region,
        avail: Region,
        used: Region,
    ) -> Virtqueue {
        assert!(size.is_power_of_two() && size <= MAX_QUEUE_SIZE);
        Virtqueue {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
            notify: core::ptr::null_mut(),
            index,
        }
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Physical addresses of the descriptor table, avail ring, used ring.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc.phys(0), self.avail.phys(0), self.used.phys(0))
    }

    /// Records the notify register (device memory).
    pub fn set_notify(&mut self, notify: *mut u16) {
        self.notify = notify;
    }

    /// Writes descriptor `id`.
    pub fn set_desc(&mut self, id: u16, addr: u64, len: u32, flags: u16, next: u16) {
        assert!(id < self.size);
        let at = self.desc.virt(id as usize * DESC_BYTES);
        // SAFETY: 16 bytes of descriptor `id`, inside the descriptor frame;
        // the device reads descriptors only once they are in the avail ring,
        // and `id` is not there (the caller owns it).
        unsafe {
            (at as *mut u64).write_volatile(addr);
            (at.add(8) as *mut u32).write_volatile(len);
            (at.add(12) as *mut u16).write_volatile(flags);
            (at.add(14) as *mut u16).write_volatile(next);
        }
    }

    /// Offers the chain starting at `head` to the device (not notified yet).
    pub fn push_avail(&mut self, head: u16) {
        let slot = (self.avail_idx % self.size) as usize;
        let entry = self.avail.virt(RING_HEADER_BYTES + 2 * slot) as *mut u16;
        // SAFETY: avail ring entry `slot` (inside the frame: 4 + 2*256 bytes
        // at most); the device reads it only after the index below moves.
        unsafe { entry.write_volatile(head) };
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The entry (and the descriptors) must be visible before the index.
        fence(Ordering::Release);
        // SAFETY: the avail ring's `idx` field.
        unsafe { (self.avail.virt(2) as *mut u16).write_volatile(self.avail_idx) };
    }

    /// Tells the device that the avail ring moved.
    pub fn notify(&self) {
        // Index stores must be visible before the doorbell.
        fence(Ordering::SeqCst);
        if !self.notify.is_null() {
            // SAFETY: the notify register of this queue (device memory).
            unsafe { self.notify.write_volatile(self.index) };
        }
    }

    /// Next buffer the device returned: `(descriptor id, bytes written)`.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        // SAFETY: the used ring's `idx` field, written by the device.
        let device_idx = unsafe { (self.used.virt(2) as *const u16).read_volatile() };
        if device_idx == self.last_used {
            return None;
        }
        // Read the entry only after seeing the index that covers it.
        fence(Ordering::Acquire);
        let slot = (self.last_used % self.size) as usize;
        let entry = self.used.virt(RING_HEADER_BYTES + USED_ELEM_BYTES * slot);
        // SAFETY: used ring entry `slot` (inside the frame: 4 + 8*256 bytes
        // at most), complete since the index covers it.
        let (id, len) = unsafe {
            (
                (entry as *const u32).read_volatile(),
                (entry.add(4) as *const u32).read_volatile(),
            )
        };
        self.last_used = self.last_used.wrapping_add(1);
        if id >= self.size as u32 {
            // A device bug; the caller counts it as a drop.
            return Some((u16::MAX, 0));
        }
        Some((id as u16, len))
    }

    /// Asks the device not to interrupt for used buffers (a hint).
    pub fn suppress_interrupts(&mut self) {
        // SAFETY: the avail ring's `flags` field.
        unsafe { (self.avail.virt(0) as *mut u16).write_volatile(AVAIL_F_NO_INTERRUPT) };
    }
}
