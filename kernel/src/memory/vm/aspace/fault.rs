//! Page faults of an address space: demand paging (anonymous zero pages,
//! `PageSource` pages fetched without the lock), copy-on-write breaks,
//! fault-around for file mappings, and the install of the resolved entry
//! in the faulting CPU's own table (per-core mode).
//!
//! Invariants: a step under the lock either maps the page or asks for a
//! source page and retries; a replaced frame is released only after the
//! shootdown of its old entry.  Must not: call a `PageSource` under the lock.

use core::sync::atomic::Ordering;

use super::*;

/// Pages mapped around a read fault in a private file mapping (Linux's
/// default `fault_around_bytes`: 64 KiB).
const FAULT_AROUND_PAGES: u64 = 16;

/// Result of one locked step of fault handling.
enum Step {
    /// The page is mapped; its frame, and whether it was filled from a
    /// source's page just now (fault-around may follow).
    Done(PhysAddr, bool),
    /// A `PageSource` must provide page `index` first (without the lock).
    NeedSource(SourceLoan, u64),
}

impl AddressSpace {
    // ----- faults --------------------------------------------------------

    /// Resolves a fault at `addr` (`write`: a write access; `exec`: an
    /// instruction fetch; `user`: on behalf of user mode, so protections
    /// apply).  Ok when the access can be retried.
    pub fn handle_fault(
        &self,
        addr: u64,
        write: bool,
        user: bool,
        exec: bool,
    ) -> Result<(), Fault> {
        if addr >= USER_END {
            return Err(Fault::MapErr);
        }
        self.resolve(page_down(addr), write, exec, !user)
            .map(|_| ())
    }

    /// Makes the page at `va` present for the access; returns its frame.
    /// `kernel_write`: the kernel writes through the HHDM whatever the
    /// protection (exec setting up a read-only segment).
    pub(super) fn resolve(
        &self,
        va: u64,
        write: bool,
        exec: bool,
        kernel_write: bool,
    ) -> Result<PhysAddr, Fault> {
        let mut fetched: Option<(SourceLoan, u64, PhysAddr)> = None;
        let mut from_source: Option<SourceLoan> = None;
        loop {
            let step = {
                // Only the lock of this page's stripe.
                let g = self.ranges.lock_range(va, va + PAGE);
                let step =
                    self.resolve_locked(&g, va, write, exec, kernel_write, fetched.take())?;
                // A fault (not the kernel's HHDM access): the faulting CPU
                // gets the translation in its own table (per-core mode).
                if !kernel_write && matches!(step, Step::Done(..)) {
                    self.install_local(&g, va)?;
                }
                step
            };
            match step {
                Step::Done(frame, filled) => {
                    if filled && !write && !kernel_write {
                        self.fault_around(va, from_source.as_ref());
                    }
                    return Ok(frame);
                }
                Step::NeedSource(source, index) => {
                    let frame = source.page(index).map_err(|e| {
                        if e == Errno::EINTR {
                            Fault::Interrupted
                        } else {
                            Fault::BusErr
                        }
                    })?;
                    from_source = Some(source.clone());
                    fetched = Some((source, index, frame));
                }
            }
        }
    }

    /// After a read or execute fault filled page `va` of a private mapping
    /// of a source: maps the other pages of its `FAULT_AROUND_PAGES`-page
    /// aligned window (inside the VMA) that have no entry yet, read-only
    /// (a write still faults and copies), as Linux's fault-around does, so
    /// a program's start-up takes one fault per window instead of one per
    /// page.  Only for sources that say it is cheap (`PageSource::
    /// fault_around`: page-cache pages that exist anyway).  Resident pages
    /// (`PageSource::resident`) are mapped under the lock; the others only
    /// when the fault took a loan of the source (`loan`, the slow path):
    /// then the source is called without the lock and entries are filled
    /// only where still empty and the VMA still maps the same source pages.
    fn fault_around(&self, va: u64, loan: Option<&SourceLoan>) {
        const WINDOW: u64 = FAULT_AROUND_PAGES * PAGE;
        let lo = va & !(WINDOW - 1);
        // Pages of the window left for the source (same VMA, no entry yet,
        // not resident).
        let mut wanted = [None::<u64>; FAULT_AROUND_PAGES as usize];
        {
            let g = self.ranges.lock_range(lo, lo + WINDOW);
            let Some(vma) = g.find(va) else {
                return;
            };
            if vma.shared || vma.prot & (PROT_READ | PROT_EXEC) == 0 {
                return;
            }
            let source = match &vma.backing {
                Backing::Source { source: s, .. } if loan.is_none_or(|l| l.of(s)) => s,
                _ => return,
            };
            if !source.fault_around() {
                return;
            }
            for (i, slot) in wanted.iter_mut().enumerate() {
                let at = lo + i as u64 * PAGE;
                let empty =
                    paging::leaf(self.root, at).is_none_or(|e| e.load(Ordering::Acquire) == 0);
                if at == va || !vma.contains(at) || !empty {
                    continue;
                }
                let Some((_, index)) = vma.source_page(at) else {
                    continue;
                };
                match source.resident(index) {
                    Some(frame) => {
                        if !self.fill_around(&g, at, frame, vma.prot) {
                            return;
                        }
                    }
                    None => *slot = Some(index),
                }
            }
        }
        let Some(source) = loan else {
            return;
        };
        if wanted.iter().all(Option::is_none) {
            return;
        }
        let mut frames = [None::<(u64, PhysAddr)>; FAULT_AROUND_PAGES as usize];
        for (slot, index) in frames.iter_mut().zip(wanted) {
            if let Some(index) = index {
                // Past the end of the file: leave it to a real fault.
                *slot = source.page(index).ok().map(|f| (index, f));
            }
        }
        let g = self.ranges.lock_range(lo, lo + WINDOW);
        for (i, got) in frames.iter().enumerate() {
            let Some((index, frame)) = *got else {
                continue;
            };
            let at = lo + i as u64 * PAGE;
            let Some(vma) = g.find(at) else {
                continue;
            };
            let same = !vma.shared
                && vma
                    .source_page(at)
                    .is_some_and(|(s, ix)| source.of(s) && ix == index);
            if !same || vma.prot & (PROT_READ | PROT_EXEC) == 0 {
                continue;
            }
            if !self.fill_around(&g, at, frame, vma.prot) {
                break;
            }
        }
    }

    /// Fault-around's fill of the empty entry of `at` with source frame
    /// `frame`, read-only, under the range lock `g` of `at`.  False when a
    /// table could not be allocated (fault-around stops).
    fn fill_around(&self, g: &ranges::RangeGuard<'_>, at: u64, frame: PhysAddr, prot: u32) -> bool {
        let Ok(entry) = paging::leaf_alloc(self.root, at) else {
            return false;
        };
        // Filling an empty entry needs no TLB flush (and no per-core
        // table has a copy of an empty canonical entry).
        let filled = entry
            .compare_exchange(
                0,
                make_leaf(frame, false, prot, false),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        !filled || self.install_local(g, at).is_ok()
    }

    fn resolve_locked(
        &self,
        g: &ranges::RangeGuard<'_>,
        va: u64,
        write: bool,
        exec: bool,
        kernel_write: bool,
        fetched: Option<(SourceLoan, u64, PhysAddr)>,
    ) -> Result<Step, Fault> {
        let vma = g.find(va).ok_or(Fault::MapErr)?;
        if !kernel_write {
            let denied = vma.prot == 0
                || (write && vma.prot & PROT_WRITE == 0)
                || (exec && vma.prot & PROT_EXEC == 0);
            if denied {
                return Err(Fault::AccErr);
            }
        }
        let entry = paging::leaf_alloc(self.root, va).map_err(|_| Fault::NoMemory)?;
        let cur = entry.load(Ordering::Acquire);
        if holds_frame(cur) {
            let frame = frame_of(cur);
            let anon = cur & PTE_ANON != 0;
            let private_copy_needed = write && !vma.shared && !(anon && refcount::get(frame) == 1);
            if !private_copy_needed {
                // Present already (another CPU won the race, a stale TLB
                // entry, or PROT_NONE lifted): refresh the entry.
                let fresh = make_leaf(frame, anon, vma.prot, may_write(vma, cur));
                if fresh != cur & !(1 << 5 | 1 << 6) {
                    entry.store(fresh, Ordering::Release);
                }
                // A translation of this table may be cached here only if
                // this CPU loads it: the shared table, or the canonical one
                // as a fallback (per-core copies are `install_local`'s).
                if !self.per_core || self.canonical_loaded.load(Ordering::Acquire) {
                    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(va));
                }
                return Ok(Step::Done(frame, false));
            }
            // Copy on write: a private copy for this address space.
            let copy = paging::alloc_copy_frame(frame).map_err(|_| Fault::NoMemory)?;
            refcount::set_one(copy);
            entry.store(make_leaf(copy, true, vma.prot, true), Ordering::Release);
            self.invalidate(va, va + PAGE);
            if anon {
                refcount::dec_and_free(frame);
            }
            return Ok(Step::Done(copy, false));
        }
        let (frame, filled) = match &vma.backing {
            Backing::Anon => {
                let frame = paging::alloc_zeroed_frame().map_err(|_| Fault::NoMemory)?;
                refcount::set_one(frame);
                entry.store(make_leaf(frame, true, vma.prot, true), Ordering::Release);
                (frame, false)
            }
            Backing::Source { .. } => {
                let (source, index) = vma.source_page(va).expect("source backing");
                let frame = match fetched {
                    Some((s, i, f)) if s.of(source) && i == index => f,
                    // A resident page-cache page: no loan, no call after
                    // the lock (`PageSource::resident`).
                    _ => match source.resident(index) {
                        Some(f) => f,
                        None => return Ok(Step::NeedSource(source.loan(), index)),
                    },
                };
                if vma.shared || !write {
                    entry.store(
                        make_leaf(frame, false, vma.prot, vma.shared),
                        Ordering::Release,
                    );
                    (frame, true)
                } else {
                    let copy = paging::alloc_copy_frame(frame).map_err(|_| Fault::NoMemory)?;
                    refcount::set_one(copy);
                    entry.store(make_leaf(copy, true, vma.prot, true), Ordering::Release);
                    (copy, true)
                }
            }
        };
        Ok(Step::Done(frame, filled))
    }
}
