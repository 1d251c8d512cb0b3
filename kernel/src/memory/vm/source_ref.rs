//! How VMAs and page faults hold a `PageSource`: VMAs share one exact
//! `Arc` per mapped source (`SourceRef`, changed only by mmap, munmap,
//! splits and fork), while a fault's reference to call the source without
//! the range lock (`SourceLoan`) is a `percpu::RefCache` count: taking and
//! dropping it writes only the faulting CPU's delta cache, not a line every
//! CPU faulting on that file or shared mapping would write (the per-fault
//! `Arc` clone it replaces).
//!
//! Lifetime: a `SourceNode` (in a `Box`) owns the `Arc<dyn PageSource>`;
//! its RefCache count is 1 for the VMAs (held by the `SourceHandle`, the
//! target of every `SourceRef`) plus one per loan.  When the last VMA lets
//! go the handle drops that 1 and runs two reconciliation passes, so a
//! source with no loan out is released right there, as the `Arc` drop
//! was; one with loans out goes at a later pass (the next munmap that
//! drops a source, or `reconcile`).  Passes run where VMAs are dropped
//! today (never in an interrupt handler).
//!
//! A source that never lent (its pages were all resident, mapped under
//! the lock through `PageSource::resident`: a program's text in the page
//! cache) has no delta in any cache, so the last VMA's drop frees it at
//! once without a pass (a pass writes every CPU's cache: a program started
//! and exiting on each core would otherwise write lines of all of them).
//!
//! Invariants: a loan is made only from a `SourceRef` (the caller holds the
//! range lock of a VMA that holds it), so the count is above zero whenever
//! one is made; the node is freed only by its release function.
//!
//! Must not: take a VM lock (releases run in munmap and teardown paths
//! after the range locks are dropped).

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::ops::Deref;
use core::sync::atomic::{AtomicBool, Ordering};

use percpu::{RefCache, RefObj};

use super::vma::PageSource;

/// The loans' counts (and the VMAs' one reference per source).
static COUNTS: RefCache = RefCache::new();
/// Sources freed by their last VMA without a pass (never lent); per CPU,
/// so counting writes no shared line.
static DIRECT_RELEASES: percpu::PerCpuCounter = percpu::PerCpuCounter::new();

/// Sources freed by their last VMA's drop without a reconciliation pass
/// (they never lent), since boot.
pub fn direct_releases() -> u64 {
    DIRECT_RELEASES.sum().max(0) as u64
}

/// One mapped source: its count (first field, so the release function
/// finds the node) and the source.
#[repr(C)]
struct SourceNode {
    rc: RefObj,
    source: Arc<dyn PageSource>,
    /// Set (once, before the first loan's count) when a loan was made: only
    /// then may a CPU cache hold a delta of `rc`.
    lent: AtomicBool,
}

/// Frees the node (and drops its `Arc` of the source).
///
/// # Safety
/// `p` is the `rc` field of a `SourceNode` made by `SourceHandle::new`,
/// released once (the RefCache contract).
unsafe fn release_node(p: *const RefObj) {
    // SAFETY: `rc` is the first field of the repr(C) node, which came from
    // `Box::into_raw`; the RefCache calls this once, when no reference is left.
    drop(unsafe { Box::from_raw(p as *mut SourceNode) });
}

/// The VMAs' hold on one node.
struct SourceHandle {
    node: *const SourceNode,
}

// SAFETY: the node is shared by design (its source is Send + Sync) and
// lives while this handle's reference is counted.
unsafe impl Send for SourceHandle {}
// SAFETY: as above; the handle only reads the node.
unsafe impl Sync for SourceHandle {}

impl Drop for SourceHandle {
    fn drop(&mut self) {
        // SAFETY: this handle's reference keeps the node alive until here.
        let lent = unsafe { (*self.node).lent.load(Ordering::Acquire) };
        if !lent {
            // No loan was ever made (a loan needs a `SourceRef` or a loan,
            // and this was the last `SourceRef`): the count is this
            // handle's 1 alone and no cache names the node.
            DIRECT_RELEASES.add(1);
            // SAFETY: as in `release_node`: the node came from
            // `Box::into_raw`, and nothing else refers to it.
            drop(unsafe { Box::from_raw(self.node as *mut SourceNode) });
            return;
        }
        // SAFETY: this handle's reference keeps the node alive until here.
        unsafe { COUNTS.dec(&(*self.node).rc) };
        // Two passes: the first sees the count at zero (if no loan is
        // out), the second releases.
        reconcile();
        reconcile();
    }
}

/// A VMA's reference to its source (cloned with the VMA).
#[derive(Clone)]
pub struct SourceRef(Arc<SourceHandle>);

impl SourceRef {
    pub fn new(source: Arc<dyn PageSource>) -> SourceRef {
        let node = Box::into_raw(Box::new(SourceNode {
            rc: RefObj::new(1, release_node),
            source,
            lent: AtomicBool::new(false),
        }));
        SourceRef(Arc::new(SourceHandle { node }))
    }

    fn node(&self) -> &SourceNode {
        // SAFETY: the handle's reference keeps the node alive.
        unsafe { &*self.0.node }
    }

    /// Same source object (two mmaps of one file are the same source, as
    /// the `Arc`s they were made from are).
    pub fn same(&self, other: &SourceRef) -> bool {
        Arc::ptr_eq(&self.node().source, &other.node().source)
    }

    /// A fault's reference, usable after the range lock is dropped.
    pub fn loan(&self) -> SourceLoan {
        let lent = &self.node().lent;
        // Written once: later loans only read the line.
        if !lent.load(Ordering::Relaxed) {
            lent.store(true, Ordering::Release);
        }
        // SAFETY: we hold a counted reference (this `SourceRef`'s handle),
        // and the node is released only through `release_node`.
        unsafe { COUNTS.inc(&self.node().rc) };
        SourceLoan { node: self.0.node }
    }
}

impl Deref for SourceRef {
    type Target = dyn PageSource;
    fn deref(&self) -> &Self::Target {
        &*self.node().source
    }
}

/// A fault's counted reference to a source (see the module comment).
pub struct SourceLoan {
    node: *const SourceNode,
}

// SAFETY: a loan is one counted reference; the source is Send + Sync and
// a loan may be dropped on another CPU (its decrement goes to that CPU's
// cache: only the sum matters).
unsafe impl Send for SourceLoan {}

impl SourceLoan {
    fn node(&self) -> &SourceNode {
        // SAFETY: this loan's reference keeps the node alive.
        unsafe { &*self.node }
    }

    /// The same source object as `r`'s.
    pub fn of(&self, r: &SourceRef) -> bool {
        Arc::ptr_eq(&self.node().source, &r.node().source)
    }
}

impl Clone for SourceLoan {
    fn clone(&self) -> Self {
        // SAFETY: as in `SourceRef::loan`: we hold a counted reference.
        unsafe { COUNTS.inc(&self.node().rc) };
        SourceLoan { node: self.node }
    }
}

impl Deref for SourceLoan {
    type Target = dyn PageSource;
    fn deref(&self) -> &Self::Target {
        &*self.node().source
    }
}

impl Drop for SourceLoan {
    fn drop(&mut self) {
        // SAFETY: our reference is given up here; the node may be released
        // by a later pass, and we do not touch it after this.
        unsafe { COUNTS.dec(&(*self.node).rc) };
    }
}

/// One reconciliation pass over the loans' counts (releases sources whose
/// last reference went at least one pass ago).  Call where a `PageSource`
/// may be dropped: not in an interrupt handler, with no VM lock held.
pub fn reconcile() {
    COUNTS.reconcile();
}

/// Passes until no source waits for release (leak checks).  True when
/// nothing is left waiting.
pub fn quiesce() -> bool {
    COUNTS.quiesce(8)
}

/// Release statistics (tests).
pub fn stats() -> percpu::RefCacheStats {
    COUNTS.stats()
}
