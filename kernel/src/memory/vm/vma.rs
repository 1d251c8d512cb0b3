//! Virtual memory areas (VMAs) of one address space, and what backs them.
//!
//! Owns: `Vma` (a page-aligned range with its protection, sharing and
//! backing), `PageSource` (the trait through which files and shared
//! anonymous memory provide frames), `SharedAnon` (MAP_SHARED|MAP_ANONYMOUS
//! memory, shared by fork children).  An address space keeps its VMAs in
//! `mm::ranges::Ranges` (`aspace::ranges`), which splits and merges them
//! through `Vma::split_off` and `Vma::mergeable_with`.
//!
//! Invariants: VMAs never overlap; `start < end`, both page aligned, both in
//! the user half; a `Source` VMA's `pgoff` is the source page index of its
//! `start` (split pieces adjust it).  VMAs are only touched under their
//! range lock.
//!
//! A `Source` VMA holds its source through a `SourceRef` (`source_ref.rs`).
//!
//! Must not: touch page tables (that is `aspace`'s job), or block.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use super::paging::{self, PAGE};
use super::source_ref::SourceRef;
use crate::memory::PhysAddr;
use abi::Errno;

pub const PROT_READ: u32 = 0x1;
pub const PROT_WRITE: u32 = 0x2;
pub const PROT_EXEC: u32 = 0x4;

/// Frames of a mappable object (a tmpfs file, shared anonymous memory).
///
/// `page(index)` returns the frame holding bytes `index * 4096 ..` of the
/// object, creating it (zero filled) when needed.  The frame must stay
/// valid as long as the source lives: a VMA keeps its source alive while
/// any page table may point into it.  Called without any VM lock held and
/// with interrupts as the faulting context had them, so it may block.
/// Errors: `EFAULT` (or any errno) for a page beyond the object, which the
/// fault path turns into SIGBUS (`BUS_ADRERR`) in user mode, EFAULT in a
/// user copy.
pub trait PageSource: Send + Sync {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno>;

    /// Identity of the object behind this source, for truncate-unmap:
    /// `AddressSpace::unmap_source_pages(key, ..)` matches VMAs whose
    /// source has this key.  0 (the default) for objects that never shrink.
    fn object_key(&self) -> usize {
        0
    }

    /// Called when `aspace` gains VMAs of this source (mmap, fork), so a
    /// source that can shrink records it in its reverse map.
    fn mapped_into(&self, _aspace: &Arc<super::AddressSpace>) {}

    /// (device, inode number) of the file behind this source, for
    /// `/proc/<pid>/maps`; `None` (the default) for anonymous objects.
    fn file_id(&self) -> Option<(u64, u64)> {
        None
    }

    /// Page `index` when it can be had right now without blocking, taking
    /// a sleeping lock or writing a line other CPUs share: a resident
    /// page-cache page of a file already mapped once.  The fault path asks
    /// this under the range lock first, and only on `None` takes a loan and
    /// calls `page` after the lock (module rule of `aspace`).  `None` (the
    /// default) always goes that way.
    fn resident(&self, _index: u64) -> Option<PhysAddr> {
        None
    }

    /// Whether a read fault may map neighbouring pages too (fault-around):
    /// true for files, whose `page` looks up page-cache pages (a hole
    /// below the end gets the zeroed page a read would see), false (the
    /// default) where it would allocate memory nobody asked for.
    fn fault_around(&self) -> bool {
        false
    }
}

/// How a VMA's pages come to be.
#[derive(Clone)]
pub enum Backing {
    /// Zero-filled on first touch; private (copy-on-write across fork).
    Anon,
    /// From `source`, starting at source page `pgoff`.
    Source { source: SourceRef, pgoff: u64 },
}

/// One mapping.
#[derive(Clone)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    /// MAP_SHARED: writes go to the source and are seen by every mapper.
    pub shared: bool,
    pub backing: Backing,
}

impl Vma {
    pub fn contains(&self, va: u64) -> bool {
        self.start <= va && va < self.end
    }

    /// Source page index of `va` without a loan (comparisons under the lock).
    pub fn source_page(&self, va: u64) -> Option<(&SourceRef, u64)> {
        match &self.backing {
            Backing::Anon => None,
            Backing::Source { source, pgoff } => Some((source, pgoff + (va - self.start) / PAGE)),
        }
    }

    /// Whether `other`, starting at `self.end`, may be merged into `self`.
    pub(super) fn mergeable_with(&self, other: &Vma) -> bool {
        self.end == other.start
            && self.prot == other.prot
            && self.shared == other.shared
            && matches!(
                (&self.backing, &other.backing),
                (Backing::Anon, Backing::Anon)
            )
    }

    /// Splits at `at` (strictly inside): `self` keeps the low part, the high
    /// part is returned.
    pub(super) fn split_off(&mut self, at: u64) -> Vma {
        debug_assert!(self.start < at && at < self.end);
        let mut high = self.clone();
        high.start = at;
        if let Backing::Source { pgoff, .. } = &mut high.backing {
            *pgoff += (at - self.start) / PAGE;
        }
        self.end = at;
        high
    }
}

/// MAP_SHARED|MAP_ANONYMOUS memory: zero-filled frames created on first
/// touch, shared by every address space that maps it (fork children too),
/// freed when the last mapping goes.
pub struct SharedAnon {
    pages: spin::Mutex<BTreeMap<u64, PhysAddr>>,
}

impl SharedAnon {
    pub fn new() -> Arc<SharedAnon> {
        Arc::new(SharedAnon {
            pages: spin::Mutex::new(BTreeMap::new()),
        })
    }
}

impl PageSource for SharedAnon {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno> {
        let saved = crate::arch::irq::save_disable();
        let result = (|| {
            let mut pages = self.pages.lock();
            if let Some(&frame) = pages.get(&index) {
                return Ok(frame);
            }
            let frame = paging::alloc_zeroed_frame()?;
            pages.insert(index, frame);
            Ok(frame)
        })();
        crate::arch::irq::restore(saved);
        result
    }
}

impl Drop for SharedAnon {
    fn drop(&mut self) {
        for (_, frame) in core::mem::take(&mut *self.pages.lock()) {
            crate::memory::free_frame(frame);
        }
    }
}
