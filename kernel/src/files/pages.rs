//! The kernel's `PageAlloc` for the `fs` crate: page-cache pages are
//! frames from `mm`, reached through the HHDM.
//!
//! Owns the one `unsafe` of the kernel's file-system glue (making a
//! `::fs::Page` from a frame).  Invariant: a `Page` made here is a whole
//! frame owned by the page cache until `free_page` gives it back.  Must not:
//! hand out a frame that `mm` still owns elsewhere.

use ::fs::{Page, PageAlloc};

use crate::memory::PhysAddr;

/// Page-cache pages are frames, reached through the HHDM.
pub(super) struct FramePages;

impl PageAlloc for FramePages {
    fn alloc_page(&self) -> Option<Page> {
        let frame = crate::memory::alloc_frame()?;
        let virt = crate::memory::phys_to_virt(frame);
        // SAFETY: the frame is ours until `free_page`; its HHDM address maps
        // its 4 KiB, page aligned.
        unsafe { Page::from_raw(frame.as_u64(), virt) }
    }

    fn free_page(&self, page: Page) {
        crate::memory::free_frame(PhysAddr::new(page.phys()));
    }
}
