//! Physical memory and kernel heap logic for the per-core kernel, free of
//! allocation and of any kernel dependency, so that the very code the kernel
//! runs is what host tests run (real threads standing in for CPUs).
//!
//! Owns: the global binary buddy allocator over frame numbers
//! ([`BuddyAllocator`]); the per-CPU block lists over it
//! ([`FrameAllocator`], Linux `per_cpu_pages` style); the heap
//! ([`Heap`]: size classes, per-CPU slabs carved from frames, per-CPU
//! magazine caches and depots, large allocations straight from frames);
//! in both, remote frees: memory freed on a CPU other than its home goes
//! back home in batches, through per-CPU outboxes and inboxes
//! (docs/MEMORY.md);
//! the ablation switch [`LockMode`]; [`radix::PageRadix`], the
//! concurrent page-keyed radix tree of the VM's per-page CPU sets; and
//! [`ranges::Ranges`], an address space's mappings partitioned by address
//! with a lock per stripe (the VM's range locks).
//!
//! Invariants: every managed frame is, at any time, in exactly one place:
//! a buddy free list, a per-CPU block list, an outbox or inbox of the frame
//! allocator, a slab, or handed out.  Lock order is: per-CPU heap cache (or,
//! `LockMode::Global`, heap lock -> class lock) -> per-CPU block list ->
//! buddy lock; nothing takes them in another order, and no per-CPU lock is
//! taken while another CPU's is held (inboxes take no lock).
//!
//! Must not: allocate from a heap (it *is* the heap; the one exception is
//! `ranges`, whose maps the VM allocates and which the heap never uses),
//! touch frame memory
//! except through [`FrameMemory`], or panic on a bad free (errors are
//! returned or counted).
#![cfg_attr(not(any(test, feature = "host")), no_std)]

mod buddy;
mod frame;
pub mod heap;
pub mod radix;
pub mod ranges;

#[cfg(any(test, feature = "host"))]
pub mod host;

pub use buddy::{BuddyAllocator, FreeError, RegionError};

pub use frame::{FrameAllocator, FrameStats, ModeError};
pub use heap::Heap;

/// A physical frame number: physical address / `FRAME_SIZE`.
pub type Pfn = usize;

/// Bytes in a frame.
pub const FRAME_SIZE: usize = 4096;

/// Largest buddy order: blocks of `1 << MAX_ORDER` frames (4 MiB).
pub const MAX_ORDER: usize = 10;

/// How frame memory is reached: the kernel maps frames through the HHDM,
/// host tests through a big allocated arena.
///
/// # Safety
///
/// Implementors promise, for every frame number inside a region given to an
/// allocator built on this memory:
/// * `frame_ptr(pfn)` points to `FRAME_SIZE` bytes that are readable and
///   writable, used by nobody but the allocator while the frame is free;
/// * frames are mapped in order: `frame_ptr(pfn + i) == frame_ptr(pfn) + i *
///   FRAME_SIZE` inside a region, and `frame_ptr(pfn)` is aligned to
///   `FRAME_SIZE << k` whenever `pfn` is a multiple of `1 << k` (`k <=
///   MAX_ORDER`), so a buddy block is a naturally aligned contiguous range;
/// * `pfn_of(frame_ptr(pfn) + off) == pfn` for `off < FRAME_SIZE`.
pub unsafe trait FrameMemory: Sync {
    /// Virtual address of the first byte of frame `pfn`.
    fn frame_ptr(&self, pfn: Pfn) -> *mut u8;
    /// The frame containing virtual address `ptr` (inverse of `frame_ptr`).
    fn pfn_of(&self, ptr: *const u8) -> Pfn;
}

/// The ablation switch (the one `percpu::LockMode`), chosen once at
/// initialization.  `PerCpu`: per-CPU page lists and per-CPU heap
/// magazines, the common alloc/free path takes no lock shared between CPUs.
/// `Global`: every frame alloc/free goes straight to the buddy under its one
/// lock; every heap alloc/free goes to the slabs under one global heap lock.
pub use percpu::LockMode;
