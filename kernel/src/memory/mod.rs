//! Kernel memory management: the physical frame allocator and the kernel
//! heap (`#[global_allocator]`), both from the `mm` crate, over the HHDM.
//!
//! Owns the kernel's one `FrameAllocator` and one `Heap` (statics, usable
//! before any heap exists) and the conversion of the boot memory map into
//! allocator regions.  Memory freed on a CPU other than the one it came
//! from is sent back there in batches, and reclaimed from every CPU when
//! memory runs short (docs/MEMORY.md).  User address spaces, page faults and user copies
//! live in `vm/` (re-exported: `memory::uaccess`); `init` sets up its
//! per-frame reference counts.  Invariants: `set_mode` only before `init`; `init`
//! runs once, on the BSP, before anything allocates; every lock inside is
//! taken with interrupts off (through `percpu::CpuGuard`), so interrupt
//! handlers may allocate.  Until the arch code installs the percpu
//! platform, every caller counts as CPU 0 (early boot is single-CPU).
//!
//! Must not: hand out frame 0 (a null physical address hides bugs), manage
//! memory the map does not call usable, or panic on a bad free (it is
//! refused, logged and counted).

mod hhdm;
pub mod kbuf;
pub mod server_arena;
pub mod vm;

pub use vm::uaccess;

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use ::mm::{FrameAllocator, Heap, Pfn, RegionError, FRAME_SIZE};

pub use ::mm::heap::HeapStats;
pub use ::mm::{FrameStats, LockMode, ModeError};
use hhdm::Hhdm;

/// One entry of the boot memory map, as `main` hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Free for the kernel to use (Limine `USABLE`); other entries are
    /// ignored.
    pub usable: bool,
}

/// A physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(u64);

impl PhysAddr {
    pub const fn new(addr: u64) -> Self {
        PhysAddr(addr)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<PhysAddr> for u64 {
    fn from(p: PhysAddr) -> u64 {
        p.0
    }
}

/// What `init` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitSummary {
    /// Usable regions given to the allocator.
    pub regions: usize,
    /// Usable regions refused (too small for their metadata, overlapping,
    /// or beyond the allocator's region limit); logged one by one.
    pub skipped: usize,
    /// Frames managed.
    pub frames: usize,
}

/// Why `init` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// `init` ran before.
    AlreadyInitialized,
    /// The HHDM offset is not aligned to a maximal buddy block (4 MiB).
    MisalignedHhdm(u64),
    /// No usable memory in the map.
    NoUsableMemory,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyInitialized => f.write_str("mm::init called twice"),
            InitError::MisalignedHhdm(o) => {
                write!(
                    f,
                    "HHDM offset {:#x} is not {} KiB aligned",
                    o,
                    hhdm::REQUIRED_ALIGN >> 10
                )
            }
            InitError::NoUsableMemory => f.write_str("the memory map has no usable memory"),
        }
    }
}

static FRAMES: FrameAllocator<Hhdm> = FrameAllocator::new(Hhdm);

#[global_allocator]
static HEAP: Heap<'static, Hhdm> = Heap::new(&FRAMES);

static INITIALIZED: AtomicBool = AtomicBool::new(false);

const FRAME: u64 = FRAME_SIZE as u64;

/// Chooses the ablation mode of the frame allocator and heap; only before
/// `init`.
pub fn set_mode(mode: LockMode) -> Result<(), ModeError> {
    FRAMES.set_mode(mode)
}

/// The mode in force.
#[allow(dead_code)] // diagnostics API (docs/KERNEL-MODULES.md); no caller yet
pub fn mode() -> LockMode {
    FRAMES.mode()
}

/// Gives the usable regions of the memory map to the frame allocator (the
/// heap draws from it).  Call once, on the BSP, before anything allocates.
pub fn init(regions: &[MemRegion], hhdm_offset: u64) -> Result<InitSummary, InitError> {
    if INITIALIZED.swap(true, Ordering::AcqRel) {
        return Err(InitError::AlreadyInitialized);
    }
    hhdm::set_offset(hhdm_offset).map_err(InitError::MisalignedHhdm)?;
    let mut summary = InitSummary {
        regions: 0,
        skipped: 0,
        frames: 0,
    };
    // End of the highest managed frame (the VM's reference counts cover it).
    let mut max_pfn = 0u64;
    for r in regions.iter().filter(|r| r.usable) {
        // Whole frames only, and never frame 0.
        let start = r.base.max(FRAME).div_ceil(FRAME);
        let end = r.base.saturating_add(r.len) / FRAME;
        if end <= start {
            continue;
        }
        match FRAMES.add_region(start as Pfn, (end - start) as usize) {
            Ok(frames) => {
                summary.regions += 1;
                summary.frames += frames;
                max_pfn = max_pfn.max(end);
            }
            Err(e) => {
                summary.skipped += 1;
                // A region of a frame or two (common below 1 MiB) cannot
                // hold its own metadata: not worth a warning.
                if e == RegionError::TooSmall {
                    log::debug!(
                        "mm: skipping memory {:#x}..{:#x}: {}",
                        start * FRAME,
                        end * FRAME,
                        e
                    );
                } else {
                    log::warn!(
                        "mm: skipping memory {:#x}..{:#x}: {}",
                        start * FRAME,
                        end * FRAME,
                        e
                    );
                }
            }
        }
    }
    if summary.frames == 0 {
        return Err(InitError::NoUsableMemory);
    }
    log::info!(
        "mm: {} frames ({} MiB) in {} regions, mode {:?}",
        summary.frames,
        (summary.frames * FRAME_SIZE) >> 20,
        summary.regions,
        FRAMES.mode()
    );
    // Without the VM tables the kernel still runs its self-tests; user
    // address spaces are then refused (ENOMEM) with an error logged.
    if let Err(e) = vm::init(max_pfn) {
        log::error!("vm: error: {}", e);
    }
    Ok(summary)
}

/// Allocates one frame (contents undefined); `None` when memory is out.
pub fn alloc_frame() -> Option<PhysAddr> {
    FRAMES.alloc().map(|pfn| PhysAddr(pfn as u64 * FRAME))
}

/// Frees a frame from `alloc_frame`.  A misaligned or unmanaged address is
/// refused, logged and counted (`frame_stats().rejected_frees`).
pub fn free_frame(frame: PhysAddr) {
    if !frame.0.is_multiple_of(FRAME) {
        log::warn!("mm: free_frame({:#x}) refused: not frame aligned", frame.0);
        return;
    }
    if let Err(e) = FRAMES.free((frame.0 / FRAME) as Pfn) {
        log::warn!("mm: free_frame({:#x}) refused: {}", frame.0, e);
    }
}

/// Free frames (buddy plus per-CPU lists).
pub fn free_frames() -> usize {
    FRAMES.free_frames()
}

/// Frames managed.
pub fn total_frames() -> usize {
    FRAMES.total_frames()
}

/// Kernel-virtual address of a physical address, through the HHDM (valid
/// after `init`).
pub fn phys_to_virt(addr: PhysAddr) -> *mut u8 {
    (hhdm::offset() + addr.0) as *mut u8
}

/// Counters of the frame allocator.
#[allow(dead_code)] // diagnostics API (docs/KERNEL-MODULES.md); no caller yet
pub fn frame_stats() -> FrameStats {
    FRAMES.stats()
}

/// Counters and holdings of the heap.
pub fn heap_stats() -> HeapStats {
    HEAP.stats()
}

/// Gives all cached heap objects (magazines, depots, remote-free outboxes
/// and inboxes of every CPU) and empty slabs back, and every per-CPU block
/// list, outbox and inbox back to the buddy: afterwards `free_frames()`
/// counts every frame not in use (for leak checks in the self-tests).
pub fn flush_caches() {
    HEAP.flush();
    FRAMES.drain_all();
}
