//! The kernel's split virtqueues: the `virtio` crate's `Virtqueue` in
//! three DMA frames of the kernel's (never freed: drivers keep their rings
//! for the kernel's life, see `dma`).
//!
//! Owns nothing.  Must not: hand the same frame to two queues.

pub use virtio::queue::{Virtqueue, DESC_F_NEXT, DESC_F_WRITE, MAX_QUEUE_SIZE};

use super::dma::DmaFrame;

fn region(f: DmaFrame) -> virtio::queue::Region {
    virtio::queue::Region {
        virt: f.virt(0),
        phys: f.phys(0),
    }
}

/// A queue of `size` entries (a power of two up to `MAX_QUEUE_SIZE`) in
/// three fresh frames; `None` when memory is out.
pub fn alloc(index: u16, size: u16) -> Option<Virtqueue> {
    let (desc, avail, used) = (DmaFrame::alloc()?, DmaFrame::alloc()?, DmaFrame::alloc()?);
    // SAFETY: three distinct zeroed frames from the allocator, mapped by
    // the HHDM, never freed (DmaFrame has no Drop) nor given to anyone else.
    Some(unsafe { Virtqueue::new(index, size, region(desc), region(avail), region(used)) })
}
