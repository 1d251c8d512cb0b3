//! Host (std) implementations of the crate's traits, for tests and the
//! host benchmark: pages from the heap, time from the system clock.
//!
//! Owns `HeapPages` (counts live pages so tests can check that every page
//! comes back) and `SystemClock`.  Must not: be used in the kernel.

use std::alloc::{alloc, dealloc, Layout};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use crate::env::{Clock, Page, PageAlloc, Timespec, PAGE_SIZE};

/// Heap-backed pages, with an optional cap on how many may be live.
pub struct HeapPages {
    live: AtomicI64,
    cap: u64,
}

impl HeapPages {
    /// Unlimited pages.
    pub fn new() -> Arc<Self> {
        Self::with_cap(u64::MAX)
    }

    /// At most `cap` live pages (the allocator then returns `None`).
    pub fn with_cap(cap: u64) -> Arc<Self> {
        Arc::new(HeapPages {
            live: AtomicI64::new(0),
            cap,
        })
    }

    /// Pages handed out and not yet freed.
    pub fn live(&self) -> i64 {
        self.live.load(Ordering::SeqCst)
    }
}

fn layout() -> Layout {
    Layout::from_size_align(PAGE_SIZE, PAGE_SIZE).expect("page layout")
}

impl PageAlloc for HeapPages {
    fn alloc_page(&self) -> Option<Page> {
        if self.live.fetch_add(1, Ordering::SeqCst) as u64 >= self.cap {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(layout()) };
        if p.is_null() {
            self.live.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        // Poison new pages so a missing zero-fill shows up in tests.
        // SAFETY: `p` points to PAGE_SIZE freshly allocated bytes.
        unsafe { core::ptr::write_bytes(p, 0xA5, PAGE_SIZE) };
        // SAFETY: `p` is a fresh, exclusively owned, page-aligned block of
        // PAGE_SIZE bytes; the host has no physical addresses, so the
        // virtual one stands in.
        unsafe { Page::from_raw(p as u64, p) }
    }

    fn free_page(&self, page: Page) {
        // SAFETY: every Page of this allocator came from `alloc` with the
        // same layout, and is given back exactly once (it is moved here).
        unsafe { dealloc(page.virt(), layout()) };
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Wall clock from `std::time::SystemTime`.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timespec {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timespec {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }
}

/// Monotonic nanoseconds since the first call (for `lockstat`).
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// A counter-based clock for deterministic tests: every call is one
/// second later than the previous.
pub struct TickClock(AtomicU64);

impl TickClock {
    pub fn new() -> Arc<Self> {
        Arc::new(TickClock(AtomicU64::new(1_000)))
    }
}

impl Clock for TickClock {
    fn now(&self) -> Timespec {
        Timespec {
            sec: self.0.fetch_add(1, Ordering::SeqCst) as i64,
            nsec: 0,
        }
    }
}
