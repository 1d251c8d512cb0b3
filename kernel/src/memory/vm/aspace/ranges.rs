//! Range locks of an address space: its VMAs partitioned by address, one
//! lock per stripe of partitions, so mmap/munmap/mprotect/faults on
//! different ranges of one address space take no common lock and write no
//! common cache line (RadixVM's goal, with range locks instead of its
//! per-page radix locks).
//!
//! Layout: the user half is cut into partitions of `1 << shift` bytes
//! (per-core mode: 1 GiB); partition `p` belongs to stripe `p % n`
//! (per-core mode: 64 stripes, each lock on its own cache line).  Each
//! stripe holds, under its lock, a `VmaMap` of the VMA *pieces* that lie in
//! its partitions: a VMA crossing a partition boundary is stored as one
//! piece per partition (`RangeGuard::insert` splits it; pieces never
//! merge across a boundary, as neighbouring partitions live in different
//! stripes).  Reports join the pieces again (`merged`).
//! `locks=global` (the ablation) uses one partition and one stripe: the
//! single lock per address space of the shared design, on the same code.
//!
//! Locking: an operation on `[start, end)` locks the stripes of the
//! partitions it touches, in increasing stripe order (`lock_range`), or
//! all of them (`lock_all`: fork, reports, the global free-range search).
//! A fault locks the one stripe of its page.  Lock order: the `brk` lock,
//! then stripes in increasing index.
//!
//! Invariants: a piece lies inside one partition and is in that
//! partition's stripe; pieces never overlap.  Callers read or change only
//! pieces of partitions whose stripe they hold (checked: `map` panics on a
//! stripe not held, a kernel bug, never reachable from user input since
//! every entry point locks the range it was given).
//!
//! Must not: block while holding a stripe (it is a `VmLock`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::super::lock::{VmGuard, VmLock};
use super::super::vma::{Backing, Vma, VmaMap};
use super::{PAGE, USER_END};

/// Per-core mode: partition size (log2): 1 GiB.
pub(super) const PART_SHIFT: u32 = 30;
/// Per-core mode: number of stripes (locks).
pub(super) const STRIPES: usize = 64;
/// `locks=global`: one partition covering the whole user half.
const GLOBAL_SHIFT: u32 = 47;

/// A stripe: one lock on its own cache line(s).
#[repr(align(64))]
struct Stripe(VmLock<VmaMap>);

/// The partitioned VMAs of one address space.
pub(super) struct Ranges {
    stripes: Box<[Stripe]>,
    shift: u32,
}

impl Ranges {
    /// Per-core mode (`partitioned`): 64 stripes of 1 GiB partitions; else
    /// one stripe for everything.
    pub fn new(partitioned: bool) -> Ranges {
        let (n, shift) = if partitioned {
            (STRIPES, PART_SHIFT)
        } else {
            (1, GLOBAL_SHIFT)
        };
        Ranges {
            stripes: (0..n).map(|_| Stripe(VmLock::new(VmaMap::new()))).collect(),
            shift,
        }
    }

    pub fn partitioned(&self) -> bool {
        self.stripes.len() > 1
    }

    /// Size of a partition in bytes.
    pub fn part_size(&self) -> u64 {
        1u64 << self.shift
    }

    fn stripe_of(&self, va: u64) -> usize {
        ((va >> self.shift) as usize) % self.stripes.len()
    }

    /// Stripes touched by `[start, end)` (an empty range: that of `start`).
    fn mask_of(&self, start: u64, end: u64) -> u64 {
        let n = self.stripes.len();
        let first = start >> self.shift;
        let last = (end.max(start + 1) - 1) >> self.shift;
        if last - first + 1 >= n as u64 {
            return all_mask(n);
        }
        (first..=last).fold(0, |m, p| m | 1u64 << (p as usize % n))
    }

    /// Locks the stripes of `[start, end)`.
    pub fn lock_range(&self, start: u64, end: u64) -> RangeGuard<'_> {
        self.lock_mask(self.mask_of(start, end))
    }

    /// Locks the stripes of two ranges (mremap: source and target).
    pub fn lock_two(&self, a: (u64, u64), b: (u64, u64)) -> RangeGuard<'_> {
        self.lock_mask(self.mask_of(a.0, a.1) | self.mask_of(b.0, b.1))
    }

    /// Locks every stripe.
    pub fn lock_all(&self) -> RangeGuard<'_> {
        self.lock_mask(all_mask(self.stripes.len()))
    }

    fn lock_mask(&self, mask: u64) -> RangeGuard<'_> {
        let mut g = RangeGuard {
            ranges: self,
            mask,
            first: None,
            rest: Vec::new(),
        };
        for i in (0..self.stripes.len()).filter(|i| mask & (1u64 << i) != 0) {
            let guard = self.stripes[i].0.lock();
            if g.first.is_none() {
                g.first = Some((i, guard));
            } else {
                g.rest.push((i, guard));
            }
        }
        g
    }

    /// Direct access to every stripe (teardown; a fork child nobody sees).
    pub fn maps_mut(&mut self) -> impl Iterator<Item = &mut VmaMap> {
        self.stripes.iter_mut().map(|s| s.0.get_mut())
    }
}

fn all_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The stripes an operation holds; released in reverse order of taking
/// (the first guard restores the interrupt flag and, under
/// `locks=global`, holds the global lock).
pub(super) struct RangeGuard<'a> {
    ranges: &'a Ranges,
    mask: u64,
    first: Option<(usize, VmGuard<'a, VmaMap>)>,
    rest: Vec<(usize, VmGuard<'a, VmaMap>)>,
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        while let Some(g) = self.rest.pop() {
            drop(g);
        }
        drop(self.first.take());
    }
}

impl RangeGuard<'_> {
    fn held(&self, stripe: usize) -> bool {
        self.mask & (1u64 << stripe) != 0
    }

    /// Whether this guard holds every stripe of `[start, end)`.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let m = self.ranges.mask_of(start, end);
        m & self.mask == m
    }

    fn map(&self, stripe: usize) -> &VmaMap {
        match &self.first {
            Some((i, g)) if *i == stripe => g,
            _ => self
                .rest
                .iter()
                .find(|(i, _)| *i == stripe)
                .map(|(_, g)| &**g)
                .expect("range lock of this stripe not held"),
        }
    }

    fn map_mut(&mut self, stripe: usize) -> &mut VmaMap {
        match &mut self.first {
            Some((i, g)) if *i == stripe => g,
            _ => self
                .rest
                .iter_mut()
                .find(|(i, _)| *i == stripe)
                .map(|(_, g)| &mut **g)
                .expect("range lock of this stripe not held"),
        }
    }

    fn held_maps(&self) -> impl Iterator<Item = &VmaMap> {
        self.first
            .iter()
            .map(|(_, g)| &**g)
            .chain(self.rest.iter().map(|(_, g)| &**g))
    }

    /// The piece containing `va`.
    pub fn find(&self, va: u64) -> Option<&Vma> {
        self.map(self.ranges.stripe_of(va)).find(va)
    }

    /// Pieces overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> Vec<&Vma> {
        debug_assert!(self.covers(start, end));
        let mut v: Vec<&Vma> = self
            .held_maps()
            .flat_map(|m| m.overlapping(start, end))
            .collect();
        if self.rest.is_empty() {
            return v;
        }
        v.sort_unstable_by_key(|p| p.start);
        v
    }

    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).is_empty()
    }

    /// True when every byte of `[start, end)` is inside some piece.
    pub fn fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }

    /// Makes `at` a piece boundary.
    pub fn split_at(&mut self, at: u64) {
        if at & (self.ranges.part_size() - 1) == 0 || at >= USER_END {
            return; // partition boundaries are piece boundaries already
        }
        let s = self.ranges.stripe_of(at);
        self.map_mut(s).split_at(at);
    }

    /// Removes and returns the pieces (split to fit) inside `[start, end)`,
    /// in address order.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        debug_assert!(self.covers(start, end));
        self.split_at(start);
        self.split_at(end);
        let mut out = Vec::new();
        if let Some((_, g)) = &mut self.first {
            out.extend(g.remove_range(start, end));
        }
        for (_, g) in self.rest.iter_mut() {
            out.extend(g.remove_range(start, end));
        }
        if !self.rest.is_empty() {
            out.sort_unstable_by_key(|p| p.start);
        }
        out
    }

    /// Inserts `vma` (the caller made room) as one piece per partition,
    /// each merged with equal neighbours of its partition.
    pub fn insert(&mut self, mut vma: Vma) {
        let part = self.ranges.part_size();
        loop {
            let boundary = (vma.start | (part - 1)).saturating_add(1);
            let rest = (boundary < vma.end).then(|| split_piece(&mut vma, boundary));
            let s = self.ranges.stripe_of(vma.start);
            self.map_mut(s).insert(vma);
            match rest {
                Some(r) => vma = r,
                None => return,
            }
        }
    }

    /// Mutable access to the piece starting exactly at `start`.
    pub fn get_mut(&mut self, start: u64) -> Option<&mut Vma> {
        let s = self.ranges.stripe_of(start);
        self.map_mut(s).get_mut(start)
    }

    /// Merges the piece starting at `start` with equal neighbours.
    pub fn merge_around(&mut self, start: u64) {
        let s = self.ranges.stripe_of(start);
        self.map_mut(s).merge_around(start);
    }

    /// Highest free, `len`-long, page-aligned range inside `[low, high)`;
    /// the guard must hold every stripe of `[low, high)`.
    pub fn find_free_top_down(&self, len: u64, low: u64, high: u64) -> Option<u64> {
        let mut top = high;
        for v in self.overlapping(low, high).iter().rev() {
            if v.end < top && top - v.end >= len {
                let start = top - len;
                return (start >= low).then_some(start);
            }
            top = top.min(v.start);
            if top < low.saturating_add(len) {
                return None;
            }
        }
        (top >= low.saturating_add(len)).then(|| top - len)
    }

    /// The whole mappings (pieces of one mapping joined again) in
    /// `[start, end)`, in address order.
    pub fn merged(&self, start: u64, end: u64) -> Vec<Vma> {
        let part = self.ranges.part_size();
        let mut out: Vec<Vma> = Vec::new();
        for p in self.overlapping(start, end) {
            if let Some(last) = out.last_mut() {
                if p.start & (part - 1) == 0 && continues(last, p) {
                    last.end = p.end;
                    continue;
                }
            }
            out.push(p.clone());
        }
        out
    }

    /// The map of stripe `i` (fork copies them one by one).
    pub fn stripe_map(&self, i: usize) -> &VmaMap {
        debug_assert!(self.held(i));
        self.map(i)
    }
}

/// Splits `vma` at `at` (inside it): `vma` keeps the low part.
fn split_piece(vma: &mut Vma, at: u64) -> Vma {
    let mut high = vma.clone();
    high.start = at;
    if let Backing::Source { pgoff, .. } = &mut high.backing {
        *pgoff += (at - vma.start) / PAGE;
    }
    vma.end = at;
    high
}

/// Whether piece `b` continues piece `a` (one mapping cut at a partition
/// boundary, or two that the shared design would have merged).
pub(super) fn continues(a: &Vma, b: &Vma) -> bool {
    a.end == b.start
        && a.prot == b.prot
        && a.shared == b.shared
        && match (&a.backing, &b.backing) {
            (Backing::Anon, Backing::Anon) => true,
            (
                Backing::Source { source: s1, pgoff: o1 },
                Backing::Source { source: s2, pgoff: o2 },
            ) => {
                alloc::sync::Arc::ptr_eq(s1, s2) && *o1 + (a.end - a.start) / PAGE == *o2
            }
            _ => false,
        }
}
