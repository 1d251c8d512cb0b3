//! `Ranges`: the mappings of one address space partitioned by address,
//! with one lock per stripe of partitions, so that operations on different
//! ranges take no common lock and write no common cache line (the VM's
//! range locks; RadixVM's goal with range locks instead of its per-page
//! radix locks).
//!
//! Layout: addresses are cut into partitions of `1 << shift` bytes;
//! partition `p` belongs to stripe `p % stripes` (at most 64 stripes, each
//! on its own cache line).  A stripe holds, under its lock, an ordered map
//! of the *pieces* ([`Piece`]: a mapping, or the part of one inside one
//! partition) of its partitions.  `RangeGuard::insert` cuts a mapping at
//! partition boundaries; pieces merge only inside a partition (neighbouring
//! partitions are in different stripes), and reports join them again
//! (`RangeGuard::merged`).  One stripe and one partition (`shift` 64)
//! gives the single lock of the shared design on the same code.
//!
//! Locking: `lock_range(start, end)` takes the stripes of the partitions
//! that `[start, end)` touches, in increasing stripe order, and the guard
//! releases them in decreasing order; `lock_all` takes every stripe.  The
//! lock itself is the caller's ([`RawLock`]: the kernel's interrupt-safe
//! VM lock; host tests use a spin lock).
//!
//! Invariants: a piece lies inside one partition and is in that
//! partition's stripe; pieces never overlap; a stripe's map is touched only
//! by the holder of its lock.  A guard reads or changes only stripes it
//! holds: asking for another one panics (a caller bug: every entry point
//! locks the range it works on).
//!
//! Must not: be used by the heap (this module allocates its maps), or
//! block inside a `RawLock` beyond what the lock itself does.

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

/// A mapping (or the part of one in one partition) kept by [`Ranges`].
pub trait Piece: Clone {
    fn start(&self) -> u64;
    fn end(&self) -> u64;
    fn set_end(&mut self, end: u64);
    /// Splits at `at` (strictly inside): `self` keeps the low part, the
    /// high part (with its own offset into any backing) is returned.
    fn split_off(&mut self, at: u64) -> Self;
    /// Whether `next`, starting at `self.end()`, may be merged into `self`
    /// (the shared design's VMA merge).
    fn merges_with(&self, next: &Self) -> bool;
    /// Whether `next` continues `self` as one mapping cut at a partition
    /// boundary (reports join them).
    fn continues(&self, next: &Self) -> bool;
}

/// A lock without data (the caller's choice of spinning, interrupts,
/// statistics).
pub trait RawLock {
    /// Returns once the caller holds the lock.
    fn lock(&self);
    /// Releases the lock; only its holder calls this.
    fn unlock(&self);
}

/// One stripe: its lock and the pieces of its partitions, on its own
/// cache line(s).
#[repr(align(64))]
struct Stripe<L, P> {
    lock: L,
    map: UnsafeCell<BTreeMap<u64, P>>,
}

/// The partitioned pieces of one address space.
pub struct Ranges<L, P> {
    stripes: Box<[Stripe<L, P>]>,
    shift: u32,
}

// SAFETY: a stripe's map is reached only through a `RangeGuard` holding
// that stripe's lock (or `&mut Ranges`), so threads never touch one map at
// once; pieces move between threads, hence `P: Send`.
unsafe impl<L: Sync, P: Send> Sync for Ranges<L, P> {}
// SAFETY: as above; moving the whole structure moves the pieces.
unsafe impl<L: Send, P: Send> Send for Ranges<L, P> {}

impl<L: RawLock, P: Piece> Ranges<L, P> {
    /// `stripes` (1..=64) stripes over partitions of `1 << shift` bytes
    /// (`shift` 64: one partition), each with the lock `new_lock()` makes.
    pub fn new(stripes: usize, shift: u32, mut new_lock: impl FnMut() -> L) -> Self {
        assert!((1..=64).contains(&stripes), "1..=64 stripes");
        Ranges {
            stripes: (0..stripes)
                .map(|_| Stripe {
                    lock: new_lock(),
                    map: UnsafeCell::new(BTreeMap::new()),
                })
                .collect(),
            shift,
        }
    }

    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// Size of a partition in bytes (`u64::MAX` for one partition).
    pub fn part_size(&self) -> u64 {
        if self.shift >= 64 {
            u64::MAX
        } else {
            1 << self.shift
        }
    }

    fn part(&self, va: u64) -> u64 {
        va.checked_shr(self.shift).unwrap_or(0)
    }

    /// Offset of `va` in its partition is 0.
    fn at_boundary(&self, va: u64) -> bool {
        self.shift < 64 && va & ((1u64 << self.shift) - 1) == 0
    }

    /// First address of the partition after the one of `va` (`None`: none).
    pub fn next_boundary(&self, va: u64) -> Option<u64> {
        if self.shift >= 64 {
            return None;
        }
        (va | ((1u64 << self.shift) - 1)).checked_add(1)
    }

    /// The stripe of the partition holding `va`.
    pub fn stripe_of(&self, va: u64) -> usize {
        (self.part(va) % self.stripes.len() as u64) as usize
    }

    /// Stripes touched by `[start, end)` (an empty range: that of `start`).
    fn mask_of(&self, start: u64, end: u64) -> u64 {
        let n = self.stripes.len() as u64;
        let first = self.part(start);
        let last = self.part(end.max(start.saturating_add(1)) - 1);
        if last - first + 1 >= n {
            return all_mask(n as usize);
        }
        (first..=last).fold(0, |m, p| m | 1u64 << (p % n))
    }

    /// Locks the stripes of `[start, end)`.
    pub fn lock_range(&self, start: u64, end: u64) -> RangeGuard<'_, L, P> {
        self.lock_mask(self.mask_of(start, end))
    }

    /// Locks the stripes of two ranges (a move: source and target).
    pub fn lock_two(&self, a: (u64, u64), b: (u64, u64)) -> RangeGuard<'_, L, P> {
        self.lock_mask(self.mask_of(a.0, a.1) | self.mask_of(b.0, b.1))
    }

    /// Locks every stripe.
    pub fn lock_all(&self) -> RangeGuard<'_, L, P> {
        self.lock_mask(all_mask(self.stripes.len()))
    }

    /// Takes the stripes of `mask` in increasing order, visiting only its
    /// set bits (a one-stripe guard, the fault path's, costs one lock: a
    /// scan over all 64 stripes cost more than the lock itself).
    fn lock_mask(&self, mask: u64) -> RangeGuard<'_, L, P> {
        for i in Bits(mask) {
            self.stripes[i].lock.lock();
        }
        RangeGuard { ranges: self, mask }
    }

    /// Each stripe's pieces, without locks (`&mut`: nobody else holds any).
    pub fn maps_mut(&mut self) -> impl Iterator<Item = &mut BTreeMap<u64, P>> {
        self.stripes.iter_mut().map(|s| s.map.get_mut())
    }
}

/// The set bits of a mask, lowest first (`next_back`: highest first).
struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

impl DoubleEndedIterator for Bits {
    fn next_back(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = 63 - self.0.leading_zeros() as usize;
        self.0 &= !(1u64 << i);
        Some(i)
    }
}

fn all_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The stripes one operation holds (released, in decreasing order, when
/// dropped).
pub struct RangeGuard<'a, L: RawLock, P> {
    ranges: &'a Ranges<L, P>,
    mask: u64,
}

impl<L: RawLock, P> Drop for RangeGuard<'_, L, P> {
    fn drop(&mut self) {
        for i in Bits(self.mask).rev() {
            self.ranges.stripes[i].lock.unlock();
        }
    }
}

impl<L: RawLock, P: Piece> RangeGuard<'_, L, P> {
    /// Whether this guard holds every stripe of `[start, end)`.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let m = self.ranges.mask_of(start, end);
        m & self.mask == m
    }

    fn held(&self) -> Bits {
        Bits(self.mask)
    }

    /// The pieces of stripe `i` (held: panics otherwise).
    pub fn stripe_map(&self, i: usize) -> &BTreeMap<u64, P> {
        assert!(
            self.mask & (1u64 << i) != 0,
            "range lock of stripe {i} not held"
        );
        // SAFETY: this guard holds stripe `i`'s lock (checked), and hands
        // out shared references only through `&self`.
        unsafe { &*self.ranges.stripes[i].map.get() }
    }

    fn map_mut(&mut self, i: usize) -> &mut BTreeMap<u64, P> {
        assert!(
            self.mask & (1u64 << i) != 0,
            "range lock of stripe {i} not held"
        );
        // SAFETY: this guard holds stripe `i`'s lock (checked); `&mut self`
        // keeps any other reference through this guard from living on.
        unsafe { &mut *self.ranges.stripes[i].map.get() }
    }

    /// The piece containing `va`.
    pub fn find(&self, va: u64) -> Option<&P> {
        self.stripe_map(self.ranges.stripe_of(va))
            .range(..=va)
            .next_back()
            .map(|(_, p)| p)
            .filter(|p| p.start() <= va && va < p.end())
    }

    /// Pieces overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> Vec<&P> {
        assert!(self.covers(start, end), "range lock not held");
        let mut v: Vec<&P> = Vec::new();
        let mut stripes = 0;
        for i in self.held() {
            let before = v.len();
            v.extend(self.stripe_overlapping(i, start, end));
            stripes += usize::from(v.len() > before);
        }
        if stripes > 1 {
            v.sort_unstable_by_key(|p| p.start());
        }
        v
    }

    /// The pieces of held stripe `i` overlapping `[start, end)`, in
    /// address order, without allocating (the fault and `mmap(NULL)`
    /// paths: a heap object per call was a cache line shared with other
    /// CPUs' objects in `comparison sharing`).
    fn stripe_overlapping(
        &self,
        i: usize,
        start: u64,
        end: u64,
    ) -> impl DoubleEndedIterator<Item = &P> + '_ {
        let map = self.stripe_map(i);
        // The one starting before `start` may reach into the range.
        let from = map
            .range(..start)
            .next_back()
            .filter(|(_, p)| p.end() > start)
            .map(|(k, _)| *k)
            .unwrap_or(start);
        map.range(from..end.max(from))
            .map(|(_, p)| p)
            .filter(move |p| p.end() > start && p.start() < end)
    }

    /// The one held stripe that can hold pieces of `[start, end)`, when
    /// the range lies in partitions of a single stripe.
    fn single_stripe(&self, start: u64, end: u64) -> Option<usize> {
        let m = self.ranges.mask_of(start, end);
        (m.count_ones() == 1).then(|| m.trailing_zeros() as usize)
    }

    pub fn is_free(&self, start: u64, end: u64) -> bool {
        assert!(self.covers(start, end), "range lock not held");
        let m = self.ranges.mask_of(start, end);
        Bits(m).all(|i| self.stripe_overlapping(i, start, end).next().is_none())
    }

    /// True when every byte of `[start, end)` is inside some piece.
    pub fn fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for p in self.overlapping(start, end) {
            if p.start() > at {
                return false;
            }
            at = p.end();
        }
        at >= end
    }

    /// Makes `at` a piece boundary (splits the piece containing it).
    pub fn split_at(&mut self, at: u64) {
        if self.ranges.at_boundary(at) {
            return; // partition boundaries are piece boundaries already
        }
        let s = self.ranges.stripe_of(at);
        let map = self.map_mut(s);
        let Some((&k, p)) = map.range_mut(..=at).next_back() else {
            return;
        };
        if k == at || p.end() <= at {
            return;
        }
        let high = p.split_off(at);
        map.insert(at, high);
    }

    /// Removes and returns the pieces (split to fit) inside `[start, end)`,
    /// in address order.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<P> {
        assert!(self.covers(start, end), "range lock not held");
        self.split_at(start);
        self.split_at(end);
        let mut out = Vec::new();
        let mut stripes = 0;
        for i in self.held() {
            let map = self.map_mut(i);
            let before = out.len();
            // One piece at a time: no list of keys to allocate.
            while let Some(k) = map.range(start..end).next().map(|(k, _)| *k) {
                out.extend(map.remove(&k));
            }
            stripes += usize::from(out.len() > before);
        }
        if stripes > 1 {
            out.sort_unstable_by_key(|p| p.start());
        }
        out
    }

    /// Inserts `piece` (the caller made room) as one piece per partition,
    /// each merged with equal neighbours in its partition.
    pub fn insert(&mut self, mut piece: P) {
        loop {
            let rest = match self.ranges.next_boundary(piece.start()) {
                Some(b) if b < piece.end() => Some(piece.split_off(b)),
                _ => None,
            };
            let start = piece.start();
            let s = self.ranges.stripe_of(start);
            self.map_mut(s).insert(start, piece);
            self.merge_around(start);
            match rest {
                Some(r) => piece = r,
                None => return,
            }
        }
    }

    /// Mutable access to the piece starting exactly at `start`.
    pub fn get_mut(&mut self, start: u64) -> Option<&mut P> {
        let s = self.ranges.stripe_of(start);
        self.map_mut(s).get_mut(&start)
    }

    /// Merges the piece starting at `start` with equal neighbours (inside
    /// its partition: the neighbours in its stripe's map).
    pub fn merge_around(&mut self, start: u64) {
        let s = self.ranges.stripe_of(start);
        let map = self.map_mut(s);
        let Some(cur) = map.get(&start) else {
            return;
        };
        let mut start = start;
        if let Some((&pk, prev)) = map.range(..start).next_back() {
            if prev.merges_with(cur) {
                let cur = map.remove(&start).expect("present");
                map.get_mut(&pk).expect("present").set_end(cur.end());
                start = pk;
            }
        }
        let end = map[&start].end();
        if let Some(next) = map.get(&end) {
            if map[&start].merges_with(next) {
                let next = map.remove(&end).expect("present");
                map.get_mut(&start).expect("present").set_end(next.end());
            }
        }
    }

    /// Highest free, `len`-long range inside `[low, high)` (aligned as
    /// `len`, `low` and `high` are); the guard must hold its stripes.
    pub fn find_free_top_down(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        match self.single_stripe(low, high) {
            Some(i) => {
                assert!(self.covers(low, high), "range lock not held");
                Self::top_down(self.stripe_overlapping(i, low, high).rev(), len, low, high)
            }
            None => Self::top_down(
                self.overlapping(low, high).into_iter().rev(),
                len,
                low,
                high,
            ),
        }
    }

    /// `find_free_top_down` over `pieces`, highest first.
    fn top_down<'p>(
        pieces: impl Iterator<Item = &'p P>,
        len: u64,
        low: u64,
        high: u64,
    ) -> Option<u64>
    where
        P: 'p,
    {
        let mut top = high;
        for p in pieces {
            if p.end() < top && top - p.end() >= len {
                let start = top - len;
                return (start >= low).then_some(start);
            }
            top = top.min(p.start());
            if top < low.saturating_add(len) {
                return None;
            }
        }
        (top >= low.saturating_add(len)).then(|| top - len)
    }

    /// The whole mappings in `[start, end)` in address order: pieces that
    /// continue each other across a partition boundary joined again.
    pub fn merged(&self, start: u64, end: u64) -> Vec<P> {
        let mut out: Vec<P> = Vec::new();
        for p in self.overlapping(start, end) {
            if let Some(last) = out.last_mut() {
                if self.ranges.at_boundary(p.start()) && last.continues(p) {
                    last.set_end(p.end());
                    continue;
                }
            }
            out.push(p.clone());
        }
        out
    }
}
