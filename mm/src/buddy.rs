//! The global binary buddy allocator over frame numbers.
//!
//! Owns: the regions of physical memory it was given, two bytes of state
//! per managed frame (kept in the first frames of each region: the block
//! state, and the *home CPU* recorded when a block is handed out, which the
//! frame allocator reads without this allocator's lock to send a block
//! freed elsewhere back to the CPU it came from), and one
//! intrusive doubly linked free list per order (links live in the free
//! frames themselves).
//!
//! Invariants (checked by the tests through the public API):
//! * a free block of order `k` starts at a multiple of `1 << k`, lies wholly
//!   inside one region, is on free list `k`, and its first frame's state is
//!   `FREE | k`;
//! * a block handed out by `alloc(k)` has first-frame state `ALLOC | k`
//!   until `free(pfn, k)`; every other frame's state is `NONE`;
//! * `free_frames()` is the number of frames on the free lists;
//! * a block's home byte is written only by `alloc_on` (under the caller's
//!   lock, before the block is handed out); state and home bytes are
//!   accessed as atomics, so the lock-free readers (`MetaView`) never race.
//!
//! Must not: lock (callers wrap it in their own lock), allocate, or touch a
//! frame that is handed out (only free frames and metadata frames are
//! written).

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::{FrameMemory, Pfn, FRAME_SIZE, MAX_ORDER};

/// Metadata bytes per managed frame: state, home CPU.
const META_BYTES: usize = 2;

/// Most regions one allocator manages (Limine maps have a handful).
pub const MAX_REGIONS: usize = 64;

const NIL: u64 = u64::MAX;

// Per-frame state byte.
const NONE: u8 = 0;
const FREE: u8 = 0x10;
pub(crate) const ALLOC: u8 = 0x20;

/// Header written into the first bytes of a free block's first frame.
#[repr(C)]
struct FreeLink {
    next: u64,
    prev: u64,
}

#[derive(Clone, Copy)]
struct Region {
    /// First managed frame (after the state bytes' frames).
    start: Pfn,
    /// One past the last managed frame.
    end: Pfn,
    /// First frame holding this region's state bytes.
    meta: Pfn,
}

/// Why a region was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// `start + count` overflows.
    InvalidRange,
    /// Too small to hold its own metadata plus one frame.
    TooSmall,
    /// Overlaps a region added before.
    Overlap,
    /// Already `MAX_REGIONS` regions.
    TooManyRegions,
}

/// Why a free was refused (the frame stays where it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// Order above `MAX_ORDER`.
    BadOrder,
    /// `pfn` is not a multiple of `1 << order`.
    Misaligned,
    /// The block is not (wholly) in a managed region.
    NotManaged,
    /// The block is not currently allocated with this order (double free,
    /// wrong order, or never allocated).
    NotAllocated,
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionError::InvalidRange => "region range overflows",
            RegionError::TooSmall => "region too small for its metadata",
            RegionError::Overlap => "region overlaps an existing one",
            RegionError::TooManyRegions => "too many memory regions",
        })
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreeError::BadOrder => "order out of range",
            FreeError::Misaligned => "frame not aligned to its order",
            FreeError::NotManaged => "frame outside managed memory",
            FreeError::NotAllocated => "frame not allocated with this order",
        })
    }
}

/// Binary buddy allocator of frames, orders `0..=MAX_ORDER`.
pub struct BuddyAllocator<M> {
    mem: M,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    heads: [u64; MAX_ORDER + 1],
    blocks: [usize; MAX_ORDER + 1],
    free: usize,
    total: usize,
}

impl<M: FrameMemory> BuddyAllocator<M> {
    /// An allocator with no memory yet.
    pub const fn new(mem: M) -> Self {
        BuddyAllocator {
            mem,
            regions: [Region {
                start: 0,
                end: 0,
                meta: 0,
            }; MAX_REGIONS],
            region_count: 0,
            heads: [NIL; MAX_ORDER + 1],
            blocks: [0; MAX_ORDER + 1],
            free: 0,
            total: 0,
        }
    }

    /// Adds frames `start..start + count`.  The first
    /// `ceil(2 * count / (FRAME_SIZE + 2))` of them hold this region's
    /// state and home bytes; the rest become free.  Returns how many frames
    /// became free.
    pub fn add_region(&mut self, start: Pfn, count: usize) -> Result<usize, RegionError> {
        let end = start.checked_add(count).ok_or(RegionError::InvalidRange)?;
        if end > (NIL as usize) / 2 {
            return Err(RegionError::InvalidRange);
        }
        let meta_frames = (META_BYTES * count).div_ceil(FRAME_SIZE + META_BYTES);
        if count <= meta_frames {
            return Err(RegionError::TooSmall);
        }
        let existing = &self.regions[..self.region_count];
        if existing.iter().any(|r| start < r.end && r.meta < end) {
            return Err(RegionError::Overlap);
        }
        if self.region_count == MAX_REGIONS {
            return Err(RegionError::TooManyRegions);
        }
        let region = Region {
            start: start + meta_frames,
            end,
            meta: start,
        };
        let managed = region.end - region.start;
        for i in 0..meta_frames {
            // SAFETY: frames start..start+meta_frames belong to this new
            // region (FrameMemory contract), and nobody else uses them.
            unsafe { core::ptr::write_bytes(self.mem.frame_ptr(start + i), NONE, FRAME_SIZE) };
        }
        // Keep regions sorted by address so lookups can bisect.
        let at = existing.partition_point(|r| r.end <= start);
        self.regions.copy_within(at..self.region_count, at + 1);
        self.regions[at] = region;
        self.region_count += 1;

        // Carve the managed range into maximal naturally aligned blocks.
        let mut pfn = region.start;
        while pfn < region.end {
            let mut order = MAX_ORDER.min(pfn.trailing_zeros() as usize);
            while pfn + (1 << order) > region.end {
                order -= 1;
            }
            self.push(&region, pfn, order);
            pfn += 1 << order;
        }
        self.free += managed;
        self.total += managed;
        Ok(managed)
    }

    /// Allocates `1 << order` contiguous frames aligned to `1 << order`,
    /// home CPU 0 (see `alloc_on`).
    pub fn alloc(&mut self, order: usize) -> Option<Pfn> {
        self.alloc_on(order, 0)
    }

    /// As `alloc`, recording `home` as the block's home CPU (read back
    /// with `MetaView::get`).
    pub fn alloc_on(&mut self, order: usize, home: u8) -> Option<Pfn> {
        if order > MAX_ORDER {
            return None;
        }
        let found = (order..=MAX_ORDER).find(|&k| self.heads[k] != NIL)?;
        let pfn = self.heads[found] as Pfn;
        let region = self.region_of(pfn)?;
        self.unlink(&region, pfn, found);
        // Split: keep the lower half, free the upper halves.
        let mut k = found;
        while k > order {
            k -= 1;
            self.push(&region, pfn + (1 << k), k);
        }
        self.set_state(&region, pfn, ALLOC | order as u8);
        self.set_home(&region, pfn, home);
        self.free -= 1 << order;
        Some(pfn)
    }

    /// Returns a block from `alloc(order)`, merging it with free buddies.
    pub fn free(&mut self, pfn: Pfn, order: usize) -> Result<(), FreeError> {
        let region = self.checked_region(pfn, order)?;
        self.set_state(&region, pfn, NONE);
        let mut pfn = pfn;
        let mut k = order;
        while k < MAX_ORDER {
            let buddy = pfn ^ (1 << k);
            if buddy < region.start || buddy + (1 << k) > region.end {
                break;
            }
            if self.state(&region, buddy) != FREE | k as u8 {
                break;
            }
            self.unlink(&region, buddy, k);
            self.set_state(&region, buddy, NONE);
            pfn = pfn.min(buddy);
            k += 1;
        }
        self.push(&region, pfn, k);
        self.free += 1 << order;
        Ok(())
    }

    /// Checks that `pfn` heads a block handed out by `alloc(order)`.
    pub fn check_allocated(&self, pfn: Pfn, order: usize) -> Result<(), FreeError> {
        self.checked_region(pfn, order).map(|_| ())
    }

    fn checked_region(&self, pfn: Pfn, order: usize) -> Result<Region, FreeError> {
        if order > MAX_ORDER {
            return Err(FreeError::BadOrder);
        }
        if !pfn.is_multiple_of(1 << order) {
            return Err(FreeError::Misaligned);
        }
        let region = self.region_of(pfn).ok_or(FreeError::NotManaged)?;
        if pfn + (1 << order) > region.end {
            return Err(FreeError::NotManaged);
        }
        if self.state(&region, pfn) != ALLOC | order as u8 {
            return Err(FreeError::NotAllocated);
        }
        Ok(region)
    }

    /// Frames on the free lists.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Frames managed (free or handed out; metadata frames excluded).
    pub fn total_frames(&self) -> usize {
        self.total
    }

    /// Number of free blocks of `order` (0 for orders out of range).
    pub fn free_blocks(&self, order: usize) -> usize {
        self.blocks.get(order).copied().unwrap_or(0)
    }

    /// Whether `pfn` is a managed frame.
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.region_of(pfn).is_some()
    }

    /// The frame memory this allocator writes through.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Number of regions added so far.
    pub(crate) fn region_count(&self) -> usize {
        self.region_count
    }

    /// Region `i` in address order: (first managed frame, one past the
    /// last, first metadata frame), for a `MetaView`.
    pub(crate) fn region_bounds(&self, i: usize) -> (Pfn, Pfn, Pfn) {
        let r = &self.regions[i];
        (r.start, r.end, r.meta)
    }

    fn region_of(&self, pfn: Pfn) -> Option<Region> {
        let regions = &self.regions[..self.region_count];
        let i = regions.partition_point(|r| r.end <= pfn);
        regions
            .get(i)
            .copied()
            .filter(|r| r.start <= pfn && pfn < r.end)
    }

    fn state_ptr(&self, region: &Region, pfn: Pfn) -> *mut u8 {
        meta_ptr(&self.mem, region.start, region.meta, pfn)
    }

    fn state(&self, region: &Region, pfn: Pfn) -> u8 {
        // SAFETY: pfn is in `region`, so its state byte is inside the
        // region's metadata frames, which only this allocator uses; they
        // are only ever accessed as atomics (`MetaView` reads them too).
        unsafe { AtomicU8::from_ptr(self.state_ptr(region, pfn)).load(Ordering::Relaxed) }
    }

    fn set_state(&mut self, region: &Region, pfn: Pfn, state: u8) {
        // SAFETY: as in `state`; `&mut self` makes us the only writer.
        unsafe { AtomicU8::from_ptr(self.state_ptr(region, pfn)).store(state, Ordering::Relaxed) }
    }

    fn set_home(&mut self, region: &Region, pfn: Pfn, home: u8) {
        let ptr = self.state_ptr(region, pfn).wrapping_add(1);
        // SAFETY: the home byte follows the state byte in the same
        // metadata frame (`META_BYTES` per frame, even offsets).
        unsafe { AtomicU8::from_ptr(ptr).store(home, Ordering::Relaxed) }
    }

    fn link(&self, pfn: u64) -> *mut FreeLink {
        self.mem.frame_ptr(pfn as Pfn).cast()
    }

    /// Puts the free block `pfn` of `order` at the head of its list.
    fn push(&mut self, region: &Region, pfn: Pfn, order: usize) {
        let old = self.heads[order];
        // SAFETY: the block is free, so its first frame is ours to write;
        // `old`, if any, is the head of a free block on the same list.
        unsafe {
            self.link(pfn as u64).write(FreeLink {
                next: old,
                prev: NIL,
            });
            if old != NIL {
                (*self.link(old)).prev = pfn as u64;
            }
        }
        self.heads[order] = pfn as u64;
        self.blocks[order] += 1;
        self.set_state(region, pfn, FREE | order as u8);
    }

    /// Takes the free block `pfn` of `order` off its list.
    fn unlink(&mut self, region: &Region, pfn: Pfn, order: usize) {
        // SAFETY: `pfn` heads a free block on list `order` (state checked
        // by callers or it came from the list head), so its link and its
        // neighbours' links are valid free-frame headers.
        unsafe {
            let FreeLink { next, prev } = self.link(pfn as u64).read();
            if prev == NIL {
                self.heads[order] = next;
            } else {
                (*self.link(prev)).next = next;
            }
            if next != NIL {
                (*self.link(next)).prev = prev;
            }
        }
        self.blocks[order] -= 1;
        self.set_state(region, pfn, NONE);
    }
}

/// Address of frame `pfn`'s state byte (its home byte follows) in the
/// metadata of the region whose managed frames start at `start` and whose
/// metadata starts at frame `meta`.
fn meta_ptr<M: FrameMemory>(mem: &M, start: Pfn, meta: Pfn, pfn: Pfn) -> *mut u8 {
    let byte = (pfn - start) * META_BYTES;
    mem.frame_ptr(meta + byte / FRAME_SIZE)
        .wrapping_add(byte % FRAME_SIZE)
}

/// A block's metadata read without the buddy lock: its state says whether
/// it is handed out with a given order, its home which CPU it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    state: u8,
    /// Home CPU recorded by `alloc_on`.
    pub home: u8,
}

impl BlockMeta {
    /// Whether the block is handed out by the buddy with `order` (or sits
    /// on a per-CPU list, which the buddy counts as handed out).
    pub fn allocated_as(&self, order: usize) -> bool {
        self.state == ALLOC | order as u8
    }
}

/// Address of the metadata of a region's first managed frame (frame
/// `start`'s state byte), from which `read_meta` finds any frame's.
pub(crate) fn meta_base<M: FrameMemory>(mem: &M, start: Pfn, meta: Pfn) -> *mut u8 {
    meta_ptr(mem, start, meta, start)
}

/// Reads the metadata of frame `start + index` without the buddy lock,
/// given its region's `meta_base` (copied out of the buddy when the region
/// was added; regions never change afterwards).
///
/// # Safety
/// `base` is the `meta_base` of a region of at least `index + 1` managed
/// frames.
#[inline]
pub(crate) unsafe fn read_meta(base: *mut u8, index: usize) -> BlockMeta {
    // The metadata frames of a region are consecutive in memory
    // (`FrameMemory` contract), so its bytes form one array.
    let ptr = base.wrapping_add(index * META_BYTES);
    // SAFETY: per the caller's promise both bytes lie in the region's
    // metadata frames, which are accessed only as atomics.
    unsafe {
        BlockMeta {
            state: AtomicU8::from_ptr(ptr).load(Ordering::Relaxed),
            home: AtomicU8::from_ptr(ptr.wrapping_add(1)).load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Arena;

    fn buddy(frames: usize) -> (BuddyAllocator<&'static Arena>, Pfn) {
        let arena = Arena::leak(frames);
        let mut b = BuddyAllocator::new(arena);
        b.add_region(arena.first_pfn(), frames).unwrap();
        (b, arena.first_pfn())
    }

    #[test]
    fn region_reserves_metadata_and_frees_the_rest() {
        let (b, _) = buddy(4096);
        // 4096 frames need 2 metadata frames.
        assert_eq!(b.total_frames(), 4094);
        assert_eq!(b.free_frames(), 4094);
        // Two metadata bytes per frame: a metadata frame covers itself and
        // FRAME_SIZE / 2 managed frames, so 2049 frames still need only one...
        let (b, _) = buddy(FRAME_SIZE / 2 + 1);
        assert_eq!(b.total_frames(), FRAME_SIZE / 2);
        // ...and one more frame needs a second.
        let (b, _) = buddy(FRAME_SIZE / 2 + 2);
        assert_eq!(b.total_frames(), FRAME_SIZE / 2);
        // The smallest region: one metadata frame and one free frame.
        let (b, _) = buddy(2);
        assert_eq!(b.total_frames(), 1);
    }

    #[test]
    fn split_and_coalesce_back_to_max_blocks() {
        let (mut b, _) = buddy(4096);
        let max_blocks = b.free_blocks(MAX_ORDER);
        let a = b.alloc(0).unwrap();
        let c = b.alloc(3).unwrap();
        assert_eq!(c % 8, 0);
        assert_eq!(b.free_frames(), 4094 - 9);
        b.free(a, 0).unwrap();
        b.free(c, 3).unwrap();
        assert_eq!(b.free_frames(), 4094);
        assert_eq!(b.free_blocks(MAX_ORDER), max_blocks);
    }

    #[test]
    fn freeing_the_upper_buddy_last_coalesces() {
        let (mut b, _) = buddy(4096);
        let before: Vec<_> = (0..=MAX_ORDER).map(|k| b.free_blocks(k)).collect();
        let mut got: Vec<_> = (0..8).map(|_| b.alloc(0).unwrap()).collect();
        got.sort();
        assert!(
            got.windows(2).any(|w| w[0] % 2 == 0 && w[1] == w[0] + 1),
            "no buddy pair among {got:?}"
        );
        // Ascending: each upper buddy is freed after its lower one and must
        // find it free and merge.
        for p in got {
            b.free(p, 0).unwrap();
        }
        let after: Vec<_> = (0..=MAX_ORDER).map(|k| b.free_blocks(k)).collect();
        assert_eq!(after, before, "free blocks per order");
    }

    #[test]
    fn blocks_at_both_ends_of_an_aligned_region_merge() {
        // A region whose managed frames are exactly one aligned 64-frame block.
        let arena = Arena::leak(256);
        let f = arena.first_pfn();
        let s = (f + 64 + 63) & !63;
        let mut b = BuddyAllocator::new(arena);
        assert_eq!(b.add_region(s - 1, 65), Ok(64));
        assert_eq!(b.free_blocks(6), 1);
        for descending in [false, true] {
            let mut got: Vec<_> = (0..64).map(|_| b.alloc(0).unwrap()).collect();
            assert_eq!(b.alloc(0), None);
            got.sort();
            assert_eq!((got[0], got[63]), (s, s + 63));
            if descending {
                got.reverse();
            }
            for p in got {
                b.free(p, 0).unwrap();
            }
            assert_eq!(b.free_blocks(6), 1, "descending {descending}");
            assert!((0..6).all(|k| b.free_blocks(k) == 0));
        }
    }

    #[test]
    fn blocks_running_past_the_region_end_are_not_managed() {
        let arena = Arena::leak(256);
        let f = arena.first_pfn();
        let s = (f + 64 + 63) & !63;
        let mut b = BuddyAllocator::new(arena);
        assert_eq!(b.add_region(s - 1, 64), Ok(63)); // frames s..s+63
        assert!(!b.contains(s - 1), "metadata frame");
        assert!(b.contains(s) && b.contains(s + 62));
        assert!(!b.contains(s + 63), "one past the end");
        assert_eq!(b.free(s + 62, 1), Err(FreeError::NotManaged));
        assert_eq!(b.check_allocated(s + 62, 1), Err(FreeError::NotManaged));
        assert_eq!(b.free(s + 60, 2), Err(FreeError::NotManaged));
    }

    #[test]
    fn check_allocated_matches_what_free_would_accept() {
        let (mut b, _) = buddy(1024);
        let p = b.alloc(2).unwrap();
        assert_eq!(b.check_allocated(p, 2), Ok(()));
        assert_eq!(b.check_allocated(p, 1), Err(FreeError::NotAllocated));
        assert_eq!(b.check_allocated(p + 1, 0), Err(FreeError::NotAllocated));
        assert_eq!(b.check_allocated(p + 1, 2), Err(FreeError::Misaligned));
        assert_eq!(
            b.check_allocated(p, MAX_ORDER + 1),
            Err(FreeError::BadOrder)
        );
        b.free(p, 2).unwrap();
        assert_eq!(b.check_allocated(p, 2), Err(FreeError::NotAllocated));
    }

    #[test]
    fn bad_frees_are_refused() {
        let (mut b, first) = buddy(2048);
        let p = b.alloc(1).unwrap();
        assert_eq!(b.free(p, 0), Err(FreeError::NotAllocated), "wrong order");
        assert_eq!(b.free(p + 1, 0), Err(FreeError::NotAllocated), "tail frame");
        assert_eq!(b.free(p, MAX_ORDER + 1), Err(FreeError::BadOrder));
        assert_eq!(b.free(first + 2048 + 64, 0), Err(FreeError::NotManaged));
        assert_eq!(
            b.free(first, 0),
            Err(FreeError::NotManaged),
            "metadata frame"
        );
        b.free(p, 1).unwrap();
        assert_eq!(b.free(p, 1), Err(FreeError::NotAllocated), "double free");
        assert_eq!(b.free_frames(), 2047);
    }

    #[test]
    fn exhaustion_returns_none_and_everything_comes_back() {
        let (mut b, _) = buddy(300);
        let mut got = Vec::new();
        while let Some(p) = b.alloc(0) {
            got.push(p);
        }
        assert_eq!(got.len(), b.total_frames());
        assert_eq!(b.alloc(0), None);
        assert_eq!(b.alloc(MAX_ORDER + 1), None);
        got.sort();
        got.dedup();
        assert_eq!(got.len(), b.total_frames(), "a frame was handed out twice");
        for p in got {
            b.free(p, 0).unwrap();
        }
        assert_eq!(b.free_frames(), b.total_frames());
    }

    #[test]
    fn errors_have_distinct_messages() {
        let msgs: Vec<String> = [
            RegionError::InvalidRange,
            RegionError::TooSmall,
            RegionError::Overlap,
            RegionError::TooManyRegions,
        ]
        .iter()
        .map(|e| e.to_string())
        .chain(
            [
                FreeError::BadOrder,
                FreeError::Misaligned,
                FreeError::NotManaged,
                FreeError::NotAllocated,
            ]
            .iter()
            .map(|e| e.to_string()),
        )
        .collect();
        assert!(msgs.iter().all(|m| !m.is_empty()), "{msgs:?}");
        let mut unique = msgs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), msgs.len(), "{msgs:?}");
    }

    #[test]
    fn touching_regions_are_not_overlaps() {
        let arena = Arena::leak(512);
        let f = arena.first_pfn();
        let mut b = BuddyAllocator::new(arena);
        assert_eq!(b.add_region(f + 100, 100), Ok(99));
        assert_eq!(b.add_region(f + 200, 100), Ok(99), "right after");
        assert_eq!(b.add_region(f, 100), Ok(99), "right before");
        assert_eq!(b.add_region(f + 299, 10), Err(RegionError::Overlap));
        assert_eq!(b.add_region(f + 95, 6), Err(RegionError::Overlap));
        assert_eq!(b.total_frames(), 3 * 99);
        let mut n = 0;
        while b.alloc(0).is_some() {
            n += 1;
        }
        assert_eq!(n, 3 * 99);
    }

    #[test]
    fn region_errors() {
        let arena = Arena::leak(1024);
        let f = arena.first_pfn();
        let mut b = BuddyAllocator::new(arena);
        assert_eq!(b.add_region(usize::MAX, 2), Err(RegionError::InvalidRange));
        // No overflow, but past the frame numbers the free lists can encode.
        assert_eq!(
            b.add_region(usize::MAX / 2, 2),
            Err(RegionError::InvalidRange)
        );
        assert_eq!(b.add_region(f, 1), Err(RegionError::TooSmall));
        assert_eq!(b.add_region(f, 512), Ok(511));
        assert_eq!(b.add_region(f + 100, 10), Err(RegionError::Overlap));
        assert_eq!(b.add_region(f + 600, 100), Ok(99));
        // Blocks never straddle the gap 512..600.
        let mut n = 0;
        while let Some(p) = b.alloc(0) {
            assert!(p < f + 512 || p >= f + 601, "frame {p} in gap or metadata");
            n += 1;
        }
        assert_eq!(n, 511 + 99);
    }
}
