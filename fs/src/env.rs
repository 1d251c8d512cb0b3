//! What the file system asks of its host: 4 KiB pages (`PageAlloc`) and the
//! time of day (`Clock`).
//!
//! Owns the `Page` handle.  Invariant: a `Page` names `PAGE_SIZE` bytes that
//! belong to the file system from `alloc_page` until `free_page`; its
//! physical address is what the kernel maps into processes (file mmap), its
//! virtual address is where the kernel reads and writes it.
//!
//! Must not: assume anything about how pages are obtained (the kernel uses
//! its frame allocator and HHDM, the host shim uses heap boxes).

use core::ptr::NonNull;

/// Size of a page-cache page.
pub const PAGE_SIZE: usize = 4096;

/// One page of file data, owned by the file system.
pub struct Page {
    phys: u64,
    virt: NonNull<u8>,
}

// SAFETY: a Page is a handle to plain memory owned by whoever holds the
// Page; it is not tied to a thread.  Concurrent access to its bytes is
// ordered by the lock of the file that holds it.
unsafe impl Send for Page {}
// SAFETY: as above; shared references only read through `bytes`, and
// writes (`write_at`, `zero`) are made under the owning file's write lock.
unsafe impl Sync for Page {}

impl Page {
    /// Wraps a page given out by a `PageAlloc`.
    ///
    /// # Safety
    /// `virt` must point to `PAGE_SIZE` writable bytes, aligned to
    /// `PAGE_SIZE`, used by nobody else until the page is handed back with
    /// `PageAlloc::free_page`; `phys` is its physical address (any value on
    /// the host).
    pub unsafe fn from_raw(phys: u64, virt: *mut u8) -> Option<Page> {
        NonNull::new(virt).map(|virt| Page { phys, virt })
    }

    /// Physical address (what a page table maps).
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Virtual address of the first byte.
    pub fn virt(&self) -> *mut u8 {
        self.virt.as_ptr()
    }

    /// The `len` bytes from `offset`, borrowed: valid while the page is
    /// (callers hold the owning file's lock, which keeps writers out).
    /// Panics if the range leaves the page (a caller bug).
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset <= PAGE_SIZE && len <= PAGE_SIZE - offset);
        // SAFETY: the range is inside the page (checked above), valid
        // memory for the page's lifetime (constructor contract), which the
        // returned borrow cannot outlive; the file system writes a page's
        // bytes only under the owning file's write lock, which excludes the
        // readers that borrow them.  (A user store through a shared mapping
        // may change them meanwhile, as on Linux; readers only copy them.)
        unsafe { core::slice::from_raw_parts(self.virt.as_ptr().add(offset), len) }
    }

    /// Copies `src` into the page at `offset`.  Callers hold the owning
    /// file's write lock.  Panics if the range leaves the page.
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) {
        assert!(offset <= PAGE_SIZE && src.len() <= PAGE_SIZE - offset);
        // SAFETY: as in `read_at`; writers are serialized by the file lock.
        unsafe {
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.virt.as_ptr().add(offset), src.len())
        }
    }

    /// Zeroes `len` bytes from `offset`.  Callers hold the file's write
    /// lock (or own the page exclusively).  Panics if the range leaves the
    /// page.
    pub(crate) fn zero(&self, offset: usize, len: usize) {
        assert!(offset <= PAGE_SIZE && len <= PAGE_SIZE - offset);
        // SAFETY: the range is inside the page; writers are serialized.
        unsafe { core::ptr::write_bytes(self.virt.as_ptr().add(offset), 0, len) }
    }
}

/// Source of page-cache pages.  The kernel implements it with its per-CPU
/// frame allocator; the host shim with heap allocations.
pub trait PageAlloc: Send + Sync {
    /// A page with unspecified contents, or `None` when memory is out.
    fn alloc_page(&self) -> Option<Page>;
    /// Gives back a page obtained from `alloc_page` of this allocator.
    fn free_page(&self, page: Page);
}

/// A point in time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// Wall-clock time for timestamps.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timespec;
}
