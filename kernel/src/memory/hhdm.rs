//! Frame memory through the higher-half direct map (HHDM): frame `pfn` is
//! at virtual `HHDM + pfn * FRAME_SIZE`.
//!
//! Owns the HHDM offset, set once by `mm::init` before any frame is touched.
//! Invariants: the offset is a multiple of `FRAME_SIZE << MAX_ORDER`, so
//! naturally aligned frame blocks are naturally aligned virtually (checked
//! by `set_offset`).
//!
//! Must not: be asked for frames outside the memory map's usable regions
//! (the loader maps those; nothing else is promised).

use core::sync::atomic::{AtomicU64, Ordering};

use ::mm::{FrameMemory, Pfn, FRAME_SIZE, MAX_ORDER};

static OFFSET: AtomicU64 = AtomicU64::new(0);

/// Largest alignment a buddy block needs.
pub const REQUIRED_ALIGN: u64 = (FRAME_SIZE as u64) << MAX_ORDER;

/// Records the HHDM offset; refuses one that breaks block alignment.
pub fn set_offset(offset: u64) -> Result<(), u64> {
    if !offset.is_multiple_of(REQUIRED_ALIGN) {
        return Err(offset);
    }
    OFFSET.store(offset, Ordering::Relaxed);
    Ok(())
}

/// The HHDM offset (0 before `mm::init`).
pub fn offset() -> u64 {
    OFFSET.load(Ordering::Relaxed)
}

/// The HHDM view of physical memory, as the `mm` crate's frame memory.
#[derive(Clone, Copy)]
pub struct Hhdm;

// SAFETY: the loader maps every usable frame at `OFFSET + pfn * FRAME_SIZE`
// (Limine protocol), so frames are contiguous and in order; `set_offset`
// guarantees the block alignment; `pfn_of` inverts `frame_ptr`.  The
// allocators only ask for frames of the usable regions `mm::init` gave them.
unsafe impl FrameMemory for Hhdm {
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        (offset() + (pfn as u64) * FRAME_SIZE as u64) as *mut u8
    }

    fn pfn_of(&self, ptr: *const u8) -> Pfn {
        ((ptr as u64).wrapping_sub(offset()) / FRAME_SIZE as u64) as Pfn
    }
}
