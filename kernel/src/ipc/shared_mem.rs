//! The kernel's view of a server's request slots (`ring::Mem` over pinned
//! pages of the server, reached through the direct map).
//!
//! Owns: the address arithmetic over the region's frames.  The frames
//! are a `ServerArena`'s (`memory::server_arena`), which the kernel's
//! `KernelRing` holds beside these pointers: they are never freed while
//! the kernel may touch them, even if the server unmaps them or exits.
//!
//! Must not: hand out a reference outside the region or misaligned (every
//! offset is checked), or touch the memory other than through atomics and
//! byte copies (the server may write it at any time; the slot protocol
//! and the kernel's length checks make that harmless).

#![allow(unsafe_code)]

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64};

use crate::memory::PhysAddr;

const PAGE: usize = 4096;

/// Pinned pages, in the order of the region.
pub struct PinnedPages {
    pages: Vec<*mut u8>,
}

// SAFETY: the pointers name frames kept alive by the ring's region (module
// doc) through the direct map, valid on every CPU; access is through
// atomics and copies.
unsafe impl Send for PinnedPages {}
// SAFETY: as for Send.
unsafe impl Sync for PinnedPages {}

impl PinnedPages {
    /// The region of these frames (kept alive by whoever holds this: the
    /// `KernelRing` holds their `ServerArena`).
    pub fn new(frames: &[PhysAddr]) -> PinnedPages {
        PinnedPages {
            pages: frames
                .iter()
                .map(|&f| crate::memory::phys_to_virt(f))
                .collect(),
        }
    }

    /// The address of `off` when `size` bytes from there stay in one page
    /// and are aligned to `align`.
    fn at(&self, off: usize, size: usize, align: usize) -> *mut u8 {
        let page = off / PAGE;
        let within = off % PAGE;
        assert!(
            page < self.pages.len() && within + size <= PAGE && off % align == 0,
            "ipc ring: offset {off} outside the region"
        );
        self.pages[page].wrapping_add(within)
    }

    /// Calls `f` with each piece of `len` bytes from `off`, split at page
    /// boundaries: (kernel address, offset in the range, length).
    fn pieces(&self, off: usize, len: usize, mut f: impl FnMut(*mut u8, usize, usize)) {
        let mut done = 0;
        while done < len {
            let at = off + done;
            let n = (PAGE - at % PAGE).min(len - done);
            f(self.at(at, n, 1), done, n);
            done += n;
        }
    }
}

impl ring::Mem for PinnedPages {
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        let p = self.at(off, 4, 4);
        // SAFETY: inside one page of the region (checked), aligned, valid
        // while the ring holds the region; AtomicU32 has u32's layout.
        unsafe { &*(p as *const AtomicU32) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        let p = self.at(off, 8, 8);
        // SAFETY: as in `u32_at`.
        unsafe { &*(p as *const AtomicU64) }
    }

    fn read(&self, off: usize, dst: &mut [u8]) {
        let len = dst.len();
        self.pieces(off, len, |p, at, n| {
            // SAFETY: `p..p + n` lies in one page of the region (`at`);
            // `dst[at..at + n]` is in bounds (pieces cover 0..len).
            unsafe { core::ptr::copy_nonoverlapping(p, dst[at..at + n].as_mut_ptr(), n) };
        });
    }

    fn write(&self, off: usize, src: &[u8]) {
        self.pieces(off, src.len(), |p, at, n| {
            // SAFETY: as in `read`, the other way.
            unsafe { core::ptr::copy_nonoverlapping(src[at..at + n].as_ptr(), p, n) };
        });
    }
}
