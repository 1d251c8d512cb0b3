//! Host stand-in for physical memory: an arena of frames allocated from the
//! std heap, numbered from a fake physical base.
//!
//! Owns the arena's memory (leaked: allocators built on it live for the
//! whole test or benchmark).  Invariants: the arena is aligned to a
//! maximal buddy block (`FRAME_SIZE << MAX_ORDER`) and its first frame
//! number is a multiple of `1 << MAX_ORDER`, so naturally aligned frame
//! blocks are naturally aligned in memory, as through the kernel's HHDM.
//!
//! Must not: be used in the kernel (it needs std).

use std::alloc::{alloc, Layout};

use crate::{FrameMemory, Pfn, FRAME_SIZE, MAX_ORDER};

/// Fake physical frame number of the arena's first frame (1 GiB).
const FIRST_PFN: Pfn = (1 << 30) / FRAME_SIZE;

/// A block of host memory posing as physical frames
/// `first_pfn()..first_pfn() + frames()`.
pub struct Arena {
    base: *mut u8,
    frames: usize,
}

// SAFETY: the arena is plain memory; who may touch which frame is decided
// by the allocators built on it, which synchronize themselves.
unsafe impl Sync for Arena {}
// SAFETY: as above; the pointer is not tied to any thread.
unsafe impl Send for Arena {}

impl Arena {
    /// Allocates an arena of `frames` frames and leaks it.
    ///
    /// Panics if the host cannot allocate it (test setup only).
    pub fn leak(frames: usize) -> &'static Arena {
        let align = FRAME_SIZE << MAX_ORDER;
        let size = frames
            .max(1)
            .checked_mul(FRAME_SIZE)
            .expect("arena size overflows");
        let layout = Layout::from_size_align(size, align).expect("arena layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null(), "host arena: out of memory ({size} bytes)");
        Box::leak(Box::new(Arena { base, frames }))
    }

    /// Frame number of the first frame.
    pub fn first_pfn(&self) -> Pfn {
        FIRST_PFN
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

// SAFETY: frames are consecutive `FRAME_SIZE` slices of one allocation
// whose base is aligned to `FRAME_SIZE << MAX_ORDER` and whose first frame
// number is a multiple of `1 << MAX_ORDER`, so the alignment and
// contiguity promises hold; `pfn_of` inverts `frame_ptr`.
unsafe impl FrameMemory for &Arena {
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8 {
        debug_assert!(
            (FIRST_PFN..FIRST_PFN + self.frames).contains(&pfn),
            "frame {pfn:#x} outside the host arena"
        );
        self.base
            .wrapping_add((pfn.wrapping_sub(FIRST_PFN)) * FRAME_SIZE)
    }

    fn pfn_of(&self, ptr: *const u8) -> Pfn {
        FIRST_PFN + (ptr as usize).wrapping_sub(self.base as usize) / FRAME_SIZE
    }
}

/// Host nodes for `PageRadix`: boxed arrays from the std heap, counted so
/// tests can check that a dropped tree gave every node back.
#[derive(Default)]
pub struct HeapNodes {
    live: std::sync::atomic::AtomicUsize,
}

impl HeapNodes {
    /// Nodes allocated and not yet freed.
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::SeqCst)
    }
}

type Node = [std::sync::atomic::AtomicU64; crate::radix::SLOTS];

// SAFETY: a node is a fresh zeroed boxed array, leaked until `free_node`
// turns the same pointer back into its box; `slots` dereferences only
// handles that `alloc_node` returned (the tree never keeps freed ones).
unsafe impl crate::radix::NodeMemory for &HeapNodes {
    fn alloc_node(&self) -> Option<u64> {
        let node: Box<Node> =
            Box::new([const { std::sync::atomic::AtomicU64::new(0) }; crate::radix::SLOTS]);
        self.live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Box::into_raw(node) as u64)
    }

    fn free_node(&self, node: u64) {
        // SAFETY: `node` came from `Box::into_raw` in `alloc_node` and the
        // tree gives each node back once.
        drop(unsafe { Box::from_raw(node as *mut Node) });
        self.live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn slots(&self, node: u64) -> &Node {
        // SAFETY: a live node from `alloc_node` (trait contract).
        unsafe { &*(node as *const Node) }
    }
}
