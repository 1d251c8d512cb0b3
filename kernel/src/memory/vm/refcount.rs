//! Reference counts of anonymous user frames (copy-on-write sharing).
//!
//! Choice: a per-frame array of `AtomicU32`, indexed by PFN, in chunks of
//! one frame (1024 counters, covering 4 MiB of physical memory each).  The
//! chunks for all memory `memory::init` manages are allocated at boot
//! (`init`), so the fault and fork paths never allocate for a count and a
//! count never moves.  Cost: 1 frame per 1024 (0.1 % of memory).  A hashed
//! table would cost less memory but a lock or probing on every COW fault;
//! the array makes `inc`/`dec` one atomic RMW on a line shared only by
//! users of neighbouring frames.
//!
//! Semantics: the count of an anonymous frame is the number of leaf PTEs
//! (in all address spaces) that point to it with `PTE_ANON` (the low
//! `PIN_SHIFT` bits) plus, in the high bits, its **pins**: references of
//! page grants (`grant.rs`: a file server's page-cache page mapped into
//! its clients), which keep the frame from being freed but are not PTEs,
//! so they do not make the owner's own pages copy-on-write (`get` counts
//! PTEs only).  The frame is freed by whoever brings the whole word to
//! zero.
//!
//! Must not: count frames that belong to a `PageSource` (those are only
//! borrowed by page tables), or be used before `init`.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::memory::{self, PhysAddr};

/// Counters per chunk (one frame of `AtomicU32`).
const PER_CHUNK: u64 = 1024;
/// Chunks the directory can name: 16384 x 4 MiB = 64 GiB of physical memory.
const MAX_CHUNKS: usize = 16384;

/// Physical address of each chunk (0 = none).
static CHUNKS: [AtomicU64; MAX_CHUNKS] = [const { AtomicU64::new(0) }; MAX_CHUNKS];
static READY: AtomicBool = AtomicBool::new(false);

/// Allocates the counters for every frame below `max_pfn`.  Returns the
/// number of frames used, or an error text.  Called once by `memory::init`.
pub fn init(max_pfn: u64) -> Result<usize, &'static str> {
    let chunks = max_pfn.div_ceil(PER_CHUNK) as usize;
    if chunks > MAX_CHUNKS {
        return Err("physical memory beyond 64 GiB: no reference counts for the rest");
    }
    for slot in CHUNKS.iter().take(chunks) {
        let frame = super::paging::alloc_zeroed_frame()
            .map_err(|_| "out of memory for reference counts")?;
        slot.store(frame.as_u64(), Ordering::Release);
    }
    READY.store(true, Ordering::Release);
    Ok(chunks)
}

/// Whether `init` succeeded (address spaces refuse to exist otherwise).
pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

/// The counter of `frame`.
fn counter(frame: PhysAddr) -> &'static AtomicU32 {
    let pfn = frame.as_u64() / super::paging::PAGE;
    let chunk = CHUNKS
        .get((pfn / PER_CHUNK) as usize)
        .map(|c| c.load(Ordering::Acquire))
        .unwrap_or(0);
    assert!(
        chunk != 0,
        "vm: no reference count for frame {:#x}",
        frame.as_u64()
    );
    let base = memory::phys_to_virt(PhysAddr::new(chunk)) as *const AtomicU32;
    // SAFETY: the chunk is a frame of 1024 `AtomicU32`, allocated in `init`
    // and never freed; the index is below 1024.
    unsafe { &*base.add((pfn % PER_CHUNK) as usize) }
}

/// Where pins start in a frame's word: up to 2^24 - 1 PTEs and 255 pins.
const PIN_SHIFT: u32 = 24;
const PIN: u32 = 1 << PIN_SHIFT;
const PTES: u32 = PIN - 1;

/// A freshly allocated anonymous frame gets its first reference.
pub fn set_one(frame: PhysAddr) {
    counter(frame).store(1, Ordering::Release);
}

/// One more PTE points to `frame`.
pub fn inc(frame: PhysAddr) {
    counter(frame).fetch_add(1, Ordering::AcqRel);
}

/// One PTE fewer; frees the frame when it was the last one (and no pin
/// holds it).
pub fn dec_and_free(frame: PhysAddr) {
    let before = counter(frame).fetch_sub(1, Ordering::AcqRel);
    assert!(
        before & PTES != 0,
        "vm: reference count of frame {:#x} underflows",
        frame.as_u64()
    );
    if before == 1 {
        memory::free_frame(frame);
    }
}

/// The current count of PTEs (1 means the caller's PTE is the only one);
/// pins do not count.
pub fn get(frame: PhysAddr) -> u32 {
    counter(frame).load(Ordering::Acquire) & PTES
}

/// Pins `frame`, which must have a PTE now (the caller holds the lock of
/// an address space whose entry points to it): it is not freed until
/// `unpin`.  `false` when the frame has 255 pins already.
pub fn pin(frame: PhysAddr) -> bool {
    counter(frame)
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            debug_assert!(c & PTES != 0);
            c.checked_add(PIN)
        })
        .is_ok()
}

/// One more pin of `frame`, which the caller already pins (so it is
/// alive whether or not a PTE maps it), if it has fewer than `below` pins
/// (room is left for pins that must not fail, such as mapping grants).
pub fn pin_pinned(frame: PhysAddr, below: u32) -> bool {
    counter(frame)
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            debug_assert!(c >= PIN);
            (c >> PIN_SHIFT < below).then(|| c + PIN)
        })
        .is_ok()
}

/// Drops a pin; frees the frame when no PTE and no other pin holds it.
pub fn unpin(frame: PhysAddr) {
    let before = counter(frame).fetch_sub(PIN, Ordering::AcqRel);
    assert!(
        before >= PIN,
        "vm: pin count of frame {:#x} underflows",
        frame.as_u64()
    );
    if before == PIN {
        memory::free_frame(frame);
    }
}
