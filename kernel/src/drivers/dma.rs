//! DMA memory for device drivers: zeroed 4 KiB frames from the frame
//! allocator, seen by the CPU through the HHDM and by the device at their
//! physical address.
//!
//! Owns nothing global.  Invariants: a `DmaFrame` is one whole frame, zeroed
//! at allocation, physically contiguous (it is one frame), and cache
//! coherent (x86 DMA snoops caches, so no flushing is needed).
//!
//! Must not: be freed while a device may still write it.  Drivers keep their
//! rings and buffers for the kernel's life, so frames are never returned;
//! `DmaFrame` therefore has no `Drop`.

use crate::memory::{self, PhysAddr};

/// Bytes in one DMA frame.
pub const FRAME_BYTES: usize = 4096;

/// One zeroed frame shared with a device.
#[derive(Debug, Clone, Copy)]
pub struct DmaFrame {
    phys: u64,
    virt: *mut u8,
}

// SAFETY: the frame is plain memory in the HHDM; callers synchronise their
// accesses (the drivers keep each frame under one queue lock).
unsafe impl Send for DmaFrame {}
// SAFETY: as for Send.
unsafe impl Sync for DmaFrame {}

impl DmaFrame {
    /// Allocates and zeroes a frame; `None` when memory is out.
    pub fn alloc() -> Option<DmaFrame> {
        let phys = memory::alloc_frame()?;
        let virt = memory::phys_to_virt(phys);
        // SAFETY: a fresh frame from the allocator, mapped by the HHDM, owned
        // by nobody else.
        unsafe { core::ptr::write_bytes(virt, 0, FRAME_BYTES) };
        Some(DmaFrame {
            phys: PhysAddr::as_u64(phys),
            virt,
        })
    }

    /// Device (physical) address of byte `offset`.
    pub fn phys(&self, offset: usize) -> u64 {
        debug_assert!(offset < FRAME_BYTES);
        self.phys + offset as u64
    }

    /// CPU pointer to byte `offset`.
    pub fn virt(&self, offset: usize) -> *mut u8 {
        assert!(offset < FRAME_BYTES, "DMA offset {} out of frame", offset);
        // SAFETY: in bounds of the frame (checked above).
        unsafe { self.virt.add(offset) }
    }
}
