//! Copy-on-write fork of an address space, and truncate-unmap (a file
//! shrank: drop the translations of its vanished pages everywhere).
//!
//! Invariants: the parent's anonymous pages are write-protected, and the
//! shootdown of their writable entries completed, before the parent runs
//! on; the child starts with no per-core tables.  Must not: call a
//! `PageSource` under the lock.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::*;

impl AddressSpace {
    // ----- fork ------------------------------------------------------------

    /// A copy of this address space for a fork child: the same VMAs; private
    /// pages shared copy-on-write (write-protected in both), shared pages
    /// shared.
    pub fn fork_cow(&self) -> Result<Arc<AddressSpace>, Errno> {
        let mut child = AddressSpace::new_user()?;
        // The pages write-protected here, as runs of consecutive pages
        // (`exact` false once a run could not be recorded: then the whole
        // envelope `batch` is invalidated, as before runs were kept).
        let mut batch = TlbBatch::new();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut exact = true;
        let result = {
            let (brk_base, brk) = {
                let b = self.brk.lock();
                (b.base, b.brk)
            };
            let g = self.ranges.lock_all();
            // The child is ours alone: no lock (and no nested global lock).
            let c = Arc::get_mut(&mut child).expect("fresh address space");
            for (i, map) in c.ranges.maps_mut().enumerate() {
                *map = g.stripe_map(i).clone();
            }
            let b = c.brk.get_mut();
            b.base = brk_base;
            b.brk = brk;
            let mut result = Ok(());
            for vma in g.overlapping(0, USER_END) {
                paging::for_each_leaf(self.root, vma.start, vma.end, |va, e| {
                    if result.is_err() {
                        return;
                    }
                    let cur = e.load(Ordering::Acquire);
                    if !holds_frame(cur) {
                        return;
                    }
                    let slot = match paging::leaf_alloc(child.root, va) {
                        Ok(s) => s,
                        Err(err) => {
                            result = Err(err);
                            return;
                        }
                    };
                    let mut shared_entry = cur;
                    if cur & PTE_ANON != 0 {
                        shared_entry = cur & !PTE_W;
                        if cur & PTE_W != 0 {
                            e.store(shared_entry, Ordering::Release);
                            batch.add_page(va);
                            match runs.last_mut() {
                                Some(run) if run.1 == va => run.1 = va + PAGE,
                                _ if exact => {
                                    if runs.try_reserve(1).is_ok() {
                                        runs.push((va, va + PAGE));
                                    } else {
                                        exact = false;
                                    }
                                }
                                _ => {}
                            }
                        }
                        refcount::inc(frame_of(cur));
                    }
                    slot.store(shared_entry, Ordering::Release);
                });
                if result.is_err() {
                    break;
                }
            }
            // Write-protect everywhere before the parent may run on: a
            // stale writable entry would leak its writes into the child.
            // Only the pages protected here: per-core copies of the rest
            // (text, read-only data, pages already shared) stay, so the
            // other threads' CPUs do not fault them all in again.
            if exact {
                self.write_protect_copies(&runs);
            } else {
                batch.flush(self);
            }
            result
        };
        result?;
        // The child maps the same files: enter it in their reverse maps so
        // a truncate unmaps there too.
        // Sources are called without the lock held (module rule).
        let sources: Vec<SourceRef> = child
            .ranges
            .lock_all()
            .overlapping(0, USER_END)
            .into_iter()
            .filter_map(|vma| match &vma.backing {
                Backing::Source { source, .. } => Some(source.clone()),
                Backing::Anon => None,
            })
            .collect();
        for source in sources {
            source.mapped_into(&child);
        }
        Ok(child)
    }

    // ----- truncate --------------------------------------------------------

    /// Drops the translations of source pages `first_gone` and later of
    /// every VMA whose source has `object_key() == key` (a file shrank):
    /// shared pages and private copy-on-write copies alike, as Linux's
    /// truncate does, so a later touch faults and gets SIGBUS.  The TLB
    /// shootdown completes before this returns; anonymous copies are
    /// released after it.  Must be called with no file-system lock held.
    pub fn unmap_source_pages(&self, key: usize, first_gone: u64) {
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let g = self.ranges.lock_all();
        for vma in g.overlapping(0, USER_END) {
            let Backing::Source { source, pgoff } = &vma.backing else {
                continue;
            };
            if key == 0 || source.object_key() != key {
                continue;
            }
            let pages = (vma.end - vma.start) / PAGE;
            if first_gone >= pgoff + pages {
                continue;
            }
            let from = vma.start + first_gone.saturating_sub(*pgoff) * PAGE;
            self.zap(from, vma.end, &mut batch, &mut frames);
        }
        batch.flush(self);
        drop(g);
        release(frames);
    }
}
