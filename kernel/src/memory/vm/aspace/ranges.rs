//! The range locks of an address space: `mm::ranges::Ranges` (its VMAs
//! partitioned by address, one lock per stripe of partitions; the
//! structure and its invariants are documented there and tested on the
//! host, mm/tests/ranges.rs) instantiated with the kernel's `RawVmLock` and
//! `Vma` pieces.
//!
//! Per-core mode: partitions of 1 GiB in 64 stripes, so mmap/munmap/
//! mprotect/faults on ranges in different stripes take no common lock and
//! write no common cache line.  `locks=global` (the ablation): one
//! partition and one stripe, the single lock per address space of the
//! shared design, on the same code.
//!
//! Must not: block while holding a stripe (it is a spin lock with
//! interrupts off).

use super::super::lock::RawVmLock;
use super::super::vma::{Backing, Vma};
use super::PAGE;

/// Per-core mode: partition size (log2): 1 GiB.
const PART_SHIFT: u32 = 30;
/// Per-core mode: number of stripes (locks).
pub(super) const STRIPES: usize = 64;

pub(super) type Ranges = ::mm::ranges::Ranges<RawVmLock, Vma>;
pub(super) type RangeGuard<'a> = ::mm::ranges::RangeGuard<'a, RawVmLock, Vma>;

/// Per-core mode (`partitioned`): 64 stripes of 1 GiB partitions; else
/// one stripe and one partition.
pub(super) fn new(partitioned: bool) -> Ranges {
    if partitioned {
        Ranges::new(STRIPES, PART_SHIFT, RawVmLock::new)
    } else {
        Ranges::new(1, 64, RawVmLock::new)
    }
}

impl ::mm::ranges::Piece for Vma {
    fn start(&self) -> u64 {
        self.start
    }

    fn end(&self) -> u64 {
        self.end
    }

    fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    fn split_off(&mut self, at: u64) -> Self {
        Vma::split_off(self, at)
    }

    fn merges_with(&self, next: &Self) -> bool {
        self.mergeable_with(next)
    }

    /// One mapping cut at a partition boundary: same protection, sharing
    /// and backing, the source offset running on.
    fn continues(&self, next: &Self) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.shared == next.shared
            && match (&self.backing, &next.backing) {
                (Backing::Anon, Backing::Anon) => true,
                (
                    Backing::Source {
                        source: s1,
                        pgoff: o1,
                    },
                    Backing::Source {
                        source: s2,
                        pgoff: o2,
                    },
                ) => s1.same(s2) && *o1 + (self.end - self.start) / PAGE == *o2,
                _ => false,
            }
    }
}
