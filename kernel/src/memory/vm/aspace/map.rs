//! The mapping calls of an address space: mmap (anonymous, file, exec's
//! segments), munmap, mprotect, mremap, msync, madvise, brk, and exec's
//! writes through the HHDM.
//!
//! Invariants: each call changes VMAs and leaf entries under the range
//! locks of its range (`ranges.rs`) and completes its shootdown
//! (`invalidate`) before unlocking; frames are released after that.  Must not: call a
//! `PageSource` under the lock.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::*;

impl AddressSpace {
    // ----- mmap ---------------------------------------------------------

    /// `mmap` of anonymous memory (private, or shared with fork children):
    /// `hint`, `len`, `prot` and `flags` as Linux takes them.
    pub fn map_anonymous(&self, hint: u64, len: u64, prot: u32, flags: u32) -> Result<u64, Errno> {
        self.mmap(hint, len, prot, flags | MAP_ANONYMOUS, None)
    }

    /// `mmap` of `source` pages from page `pgoff` (file mappings).
    pub fn map_source(
        &self,
        hint: u64,
        len: u64,
        prot: u32,
        flags: u32,
        source: Arc<dyn PageSource>,
        offset: u64,
    ) -> Result<u64, Errno> {
        self.mmap(
            hint,
            len,
            prot,
            flags & !MAP_ANONYMOUS,
            Some((source, offset)),
        )
    }

    /// The common part of `mmap` (Linux semantics and errno values).
    pub fn mmap(
        &self,
        hint: u64,
        len: u64,
        prot: u32,
        flags: u32,
        source: Option<(Arc<dyn PageSource>, u64)>,
    ) -> Result<u64, Errno> {
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        let shared = match flags & MAP_TYPE {
            MAP_SHARED => true,
            MAP_PRIVATE => false,
            MAP_SHARED_VALIDATE => {
                if flags & !MAP_KNOWN != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                true
            }
            _ => return Err(Errno::EINVAL),
        };
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_HUGETLB != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_len(len).ok_or(Errno::ENOMEM)?;
        let backing = match source {
            _ if flags & MAP_ANONYMOUS != 0 => {
                if shared {
                    Backing::Source {
                        source: SourceRef::new(SharedAnon::new()),
                        pgoff: 0,
                    }
                } else {
                    Backing::Anon
                }
            }
            Some((source, offset)) => {
                if offset % PAGE != 0 {
                    return Err(Errno::EINVAL);
                }
                offset.checked_add(len).ok_or(Errno::EOVERFLOW)?;
                Backing::Source {
                    source: SourceRef::new(source),
                    pgoff: offset / PAGE,
                }
            }
            None => return Err(Errno::EBADF),
        };
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        if fixed && !hint.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let (start, mut g) = if fixed {
            let end = hint.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_TOP {
                return Err(Errno::ENOMEM);
            }
            if hint < MMAP_MIN {
                return Err(Errno::EPERM);
            }
            let g = self.ranges.lock_range(hint, end);
            if flags & MAP_FIXED_NOREPLACE != 0 && !g.is_free(hint, end) {
                return Err(Errno::EEXIST);
            }
            (hint, g)
        } else {
            self.place(hint, len, flags & MAP_32BIT != 0)?
        };
        let end = start + len;
        // Linux's default overcommit heuristic (`vm.overcommit_memory=0`):
        // a mapping that commits memory (shared anonymous, or private
        // writable; not MAP_NORESERVE) larger than all RAM is refused with
        // ENOMEM.  Without it a 1 TiB shared MAP_POPULATE mapping (found by
        // the fuzzer) took every free frame and the kernel then panicked
        // on its next allocation.  Checked here, after the address checks,
        // as Linux does it in `mmap_region`.
        let commits = flags & MAP_NORESERVE == 0
            && if shared {
                flags & MAP_ANONYMOUS != 0
            } else {
                prot & PROT_WRITE != 0
            };
        if commits && len / PAGE > crate::memory::total_frames() as u64 {
            return Err(Errno::ENOMEM);
        }
        // MAP_FIXED replaces whatever was there.
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let removed = g.remove_range(start, end);
        if !removed.is_empty() {
            self.zap(start, end, &mut batch, &mut frames);
        }
        g.insert(Vma {
            start,
            end,
            prot,
            shared,
            backing,
        });
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        drop(removed);
        if flags & MAP_POPULATE != 0 && prot != 0 {
            // Best effort, like Linux: a failure leaves pages to demand faults.
            // It also stops while a reserve of free frames (1/16 of RAM) is
            // left: populating must not starve the kernel's own allocations
            // (they panic when memory is out).  Checked every 64 pages.
            let write = prot & PROT_WRITE != 0;
            let reserve = crate::memory::total_frames() / 16;
            let mut va = start;
            while va < end {
                if ((va - start) / PAGE).is_multiple_of(64)
                    && crate::memory::free_frames() < reserve
                {
                    break;
                }
                if self.resolve(va, write, false, false).is_err() {
                    break;
                }
                va += PAGE;
            }
        }
        Ok(start)
    }

    /// Chooses the address of an `mmap` without MAP_FIXED and returns it
    /// with the range locks of `[start, start + len)` held.  The hint if
    /// that range is free; else, per-core mode, the highest free range in
    /// the first `OWN_PARTITIONS` partitions (top down) of the calling
    /// CPU's own stripe, taking only that stripe's lock, so threads on
    /// different CPUs allocate in different stripes and share no lock;
    /// else (`locks=global`, MAP_32BIT, a mapping larger than a partition
    /// or no room there) the highest free range anywhere, as Linux's
    /// top-down search, under every range lock.
    fn place(
        &self,
        hint: u64,
        len: u64,
        low32: bool,
    ) -> Result<(u64, ranges::RangeGuard<'_>), Errno> {
        /// Partitions of its own stripe a CPU tries before the global search.
        const OWN_PARTITIONS: u64 = 4;
        let wanted = hint.checked_add(PAGE - 1).map(page_down).unwrap_or(0);
        if wanted >= MMAP_MIN && wanted.checked_add(len).is_some_and(|e| e <= USER_TOP) {
            let g = self.ranges.lock_range(wanted, wanted + len);
            if g.is_free(wanted, wanted + len) {
                return Ok((wanted, g));
            }
        }
        let (low, high) = if low32 {
            (MMAP_MIN.max(0x4000_0000), 0x8000_0000)
        } else {
            (MMAP_MIN, MMAP_TOP)
        };
        let part = self.ranges.part_size();
        if self.ranges.stripes() > 1 && !low32 && len <= part {
            // Partitions p with p % STRIPES == this CPU's stripe, from the
            // highest below MMAP_TOP down.
            let stripes = ranges::STRIPES as u64;
            let top = MMAP_TOP / part - 1;
            let me = crate::arch::cpu::id() as u64 % stripes;
            let first = top - (top + stripes - me) % stripes;
            for k in 0..OWN_PARTITIONS {
                let Some(p) = first.checked_sub(k * stripes) else {
                    break;
                };
                let (lo, hi) = ((p * part).max(low), (p + 1) * part);
                if hi <= lo {
                    break;
                }
                let g = self.ranges.lock_range(lo, hi);
                if let Some(start) = g.find_free_top_down(len, lo, hi) {
                    return Ok((start, g));
                }
            }
        }
        let g = self.ranges.lock_all();
        let start = g.find_free_top_down(len, low, high).ok_or(Errno::ENOMEM)?;
        Ok((start, g))
    }

    /// Maps an ELF segment: `[vaddr, vaddr + memsz)` private anonymous with
    /// `prot`, the first `data.len()` bytes from `data`, the rest zero.
    /// Pages shared with an earlier segment keep their contents and get the
    /// union of both protections.  Works on an address space that is not
    /// loaded (writes go through the HHDM).
    pub fn map_fixed_with_data(
        &self,
        vaddr: u64,
        memsz: u64,
        data: &[u8],
        prot: u32,
    ) -> Result<(), Errno> {
        if data.len() as u64 > memsz || prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        if memsz == 0 {
            return Ok(());
        }
        let end = vaddr
            .checked_add(memsz)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::ENOMEM)?;
        let (start, end) = (page_down(vaddr), page_len(end).ok_or(Errno::ENOMEM)?);
        if start < MMAP_MIN {
            return Err(Errno::EPERM);
        }
        {
            let mut g = self.ranges.lock_range(start, end);
            // Fill the holes with the new mapping; widen what is there.
            let mut at = start;
            let existing: Vec<(u64, u64, u32)> = g
                .overlapping(start, end)
                .into_iter()
                .map(|v| (v.start, v.end, v.prot))
                .collect();
            for (s, e, p) in existing {
                if s > at {
                    g.insert(Vma {
                        start: at,
                        end: s,
                        prot,
                        shared: false,
                        backing: Backing::Anon,
                    });
                }
                if p | prot != p {
                    let (lo, hi) = (s.max(start), e.min(end));
                    drop(g);
                    self.protect(lo, hi - lo, p | prot)?;
                    g = self.ranges.lock_range(start, end);
                }
                at = e;
            }
            if at < end {
                g.insert(Vma {
                    start: at,
                    end,
                    prot,
                    shared: false,
                    backing: Backing::Anon,
                });
            }
        }
        self.write_bytes(vaddr, data)?;
        // Zero the tail (bss) in pages that existed before.
        let zero_from = vaddr + data.len() as u64;
        self.zero_bytes(zero_from, vaddr + memsz - zero_from)
    }

    /// Writes `data` at user address `va` through the HHDM, ignoring the
    /// mapping's protection (the pages must be mapped; they are populated
    /// and made private as needed).  For exec (segments, initial stack).
    pub fn write_bytes(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        self.each_page(va, data.len() as u64, true, |frame, off, range| {
            paging::write_frame(frame, off, &data[range]);
        })
    }

    /// Zeroes `len` bytes at user address `va` (like `write_bytes`).
    pub fn zero_bytes(&self, va: u64, len: u64) -> Result<(), Errno> {
        self.each_page(va, len, true, |frame, off, range| {
            paging::zero_frame(frame, off, range.len())
        })
    }

    /// Reads user memory at `va` through the HHDM (populating it).
    pub fn read_bytes(&self, va: u64, out: &mut [u8]) -> Result<(), Errno> {
        let len = out.len() as u64;
        self.each_page(va, len, false, |frame, off, range| {
            paging::read_frame(frame, off, &mut out[range])
        })
    }

    /// Calls `f(frame, offset_in_page, range_of_the_buffer)` for each page of
    /// `[va, va + len)`, after making it resident (and private when `write`).
    fn each_page(
        &self,
        va: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(PhysAddr, usize, core::ops::Range<usize>),
    ) -> Result<(), Errno> {
        let end = va
            .checked_add(len)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::EFAULT)?;
        let mut at = va;
        while at < end {
            let page = page_down(at);
            let chunk_end = end.min(page + PAGE);
            let frame = self
                .resolve(page, write, false, true)
                .map_err(|_| Errno::EFAULT)?;
            f(
                frame,
                (at - page) as usize,
                (at - va) as usize..(chunk_end - va) as usize,
            );
            at = chunk_end;
        }
        Ok(())
    }

    // ----- munmap, mprotect, mremap, madvise, brk ------------------------

    /// `munmap`: unmapping nothing is fine; EINVAL for a bad range.
    pub fn unmap(&self, addr: u64, len: u64) -> Result<(), Errno> {
        super::MUNMAPS.inc();
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_len(len).ok_or(Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let mut batch = TlbBatch::new();
        // Room for every page up to 512 (one allocation instead of one per
        // doubling: fewer small heap objects whose cache lines neighbour
        // another CPU's, the conflict lines `comparison sharing` showed for
        // page_fault at 4 vCPUs).
        let mut frames = Vec::with_capacity((len / PAGE).min(512) as usize);
        let mut g = self.ranges.lock_range(addr, end);
        let removed = g.remove_range(addr, end);
        for v in &removed {
            self.zap(v.start, v.end, &mut batch, &mut frames);
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        drop(removed);
        Ok(())
    }

    /// `mprotect`: ENOMEM when part of the range is not mapped.
    pub fn protect(&self, addr: u64, len: u64, prot: u32) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) || prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_len(len).ok_or(Errno::ENOMEM)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::ENOMEM)?;
        let mut batch = TlbBatch::new();
        let mut g = self.ranges.lock_range(addr, end);
        if !g.fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        g.split_at(addr);
        g.split_at(end);
        let starts: Vec<u64> = g.overlapping(addr, end).iter().map(|v| v.start).collect();
        for s in &starts {
            let vma = g.get_mut(*s).expect("listed above");
            vma.prot = prot;
            let vma = vma.clone();
            paging::for_each_leaf(self.root, vma.start, vma.end, |va, e| {
                let cur = e.load(Ordering::Relaxed);
                if holds_frame(cur) {
                    let anon = cur & PTE_ANON != 0;
                    e.store(
                        make_leaf(frame_of(cur), anon, prot, may_write(&vma, cur)),
                        Ordering::Release,
                    );
                    batch.add_page(va);
                }
            });
        }
        for s in starts.iter().rev() {
            if g.get_mut(*s).is_some() {
                g.merge_around(*s);
            }
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        Ok(())
    }

    /// `mremap` (flags: MREMAP_MAYMOVE, MREMAP_FIXED).
    pub fn remap(
        &self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u32,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
            || !old.is_multiple_of(PAGE)
        {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_DONTUNMAP != 0 {
            // Not supported here; Linux also refuses it for most mappings.
            return Err(Errno::EINVAL);
        }
        let old_len = page_len(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_len(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 || old_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old
            .checked_add(old_len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let fixed_target = if flags & MREMAP_FIXED != 0 {
            if !new_addr.is_multiple_of(PAGE) {
                return Err(Errno::EINVAL);
            }
            let e = new_addr
                .checked_add(new_len)
                .filter(|&e| e <= USER_TOP)
                .ok_or(Errno::EINVAL)?;
            if new_addr < old_end && old < e {
                return Err(Errno::EINVAL);
            }
            Some(new_addr)
        } else {
            None
        };
        // `[old, old_end)` must lie in one mapping (its pieces joined).
        let vma = {
            let g = self.ranges.lock_range(old, old_end);
            let mut whole = g.merged(old, old_end).into_iter();
            let vma = whole.next().ok_or(Errno::EFAULT)?;
            if vma.start > old || old_end > vma.end {
                return Err(Errno::EFAULT);
            }
            vma
        };
        if let Some(target) = fixed_target {
            self.unmap(target, new_len)?;
            return self.move_pages(old, old_len, new_len, target);
        }
        if new_len <= old_len {
            if new_len < old_len {
                self.unmap(old + new_len, old_len - new_len)?;
            }
            return Ok(old);
        }
        let new_end = old.checked_add(new_len).filter(|&e| e <= USER_TOP);
        {
            let mut g = self.ranges.lock_range(old, new_end.unwrap_or(old_end));
            if let Some(new_end) = new_end {
                if old_end == vma.end && g.is_free(old_end, new_end) {
                    // Grow the last piece to its partition's end, and add
                    // the rest as new pieces.
                    let last = g.find(old_end - PAGE).cloned().ok_or(Errno::EFAULT)?;
                    let grown = self
                        .ranges
                        .next_boundary(last.start)
                        .map_or(new_end, |b| new_end.min(b));
                    g.get_mut(last.start).expect("found").end = grown;
                    g.merge_around(last.start);
                    if grown < new_end {
                        let mut rest = last;
                        if let Backing::Source { pgoff, .. } = &mut rest.backing {
                            *pgoff += (grown - rest.start) / PAGE;
                        }
                        rest.start = grown;
                        rest.end = new_end;
                        g.insert(rest);
                    }
                    return Ok(old);
                }
            }
            if flags & MREMAP_MAYMOVE == 0 {
                return Err(Errno::ENOMEM);
            }
        }
        let target = {
            let g = self.ranges.lock_all();
            g.find_free_top_down(new_len, MMAP_MIN, MMAP_TOP)
                .ok_or(Errno::ENOMEM)?
        };
        self.move_pages(old, old_len, new_len, target)
    }

    /// Moves `[old, old + old_len)` (inside one mapping) to `target`,
    /// growing it to `new_len`; page-table entries move, frames stay.
    fn move_pages(&self, old: u64, old_len: u64, new_len: u64, target: u64) -> Result<u64, Errno> {
        let mut g = self
            .ranges
            .lock_two((old, old + old_len), (target, target + new_len));
        // The range may have changed since the caller looked: it must still
        // lie in one mapping.
        match g.merged(old, old + old_len).as_slice() {
            [v] if v.start <= old && v.end >= old + old_len => {}
            _ => return Err(Errno::EFAULT),
        }
        if !g.is_free(target, target + new_len) {
            return Err(Errno::ENOMEM);
        }
        let keep = old_len.min(new_len);
        // Tables for the destination first, so nothing moves on ENOMEM.
        let mut missing = Ok(());
        paging::for_each_leaf(self.root, old, old + keep, |va, e| {
            if missing.is_ok() && holds_frame(e.load(Ordering::Relaxed)) {
                missing = paging::leaf_alloc(self.root, target + (va - old)).map(|_| ());
            }
        });
        missing?;
        let mut pieces = g.remove_range(old, old + old_len);
        let mut moved = pieces.remove(0);
        let mut batch = TlbBatch::new();
        paging::for_each_leaf(self.root, old, old + keep, |va, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) {
                let dst = paging::leaf(self.root, target + (va - old)).expect("allocated above");
                dst.store(cur, Ordering::Release);
                batch.add_page(va);
            }
        });
        // Pages beyond `keep` (shrinking move) are dropped.
        let mut frames = Vec::new();
        if old_len > keep {
            self.zap(old + keep, old + old_len, &mut batch, &mut frames);
        }
        if let Backing::Source { pgoff, .. } = &mut moved.backing {
            *pgoff += (old - moved.start) / PAGE;
        }
        moved.start = target;
        moved.end = target + new_len;
        g.insert(moved);
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        Ok(target)
    }

    /// `msync`: the page cache is the file's only copy (tmpfs), so there is
    /// nothing to write back or invalidate; validates as Linux does.
    /// Errors: `EINVAL` for unknown flags, MS_SYNC with MS_ASYNC or an
    /// unaligned `addr`; `ENOMEM` if part of the range is unmapped (or the
    /// rounded range wraps).  A length that rounds to 0 succeeds.
    pub fn sync(&self, addr: u64, len: u64, flags: u32) -> Result<(), Errno> {
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || !addr.is_multiple_of(PAGE)
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        // Linux rounds with wrap-around: a huge length may round to 0.
        let len = len.wrapping_add(PAGE - 1) & !(PAGE - 1);
        let end = addr.wrapping_add(len);
        if end < addr {
            return Err(Errno::ENOMEM);
        }
        if end == addr {
            return Ok(());
        }
        if self.ranges.lock_range(addr, end).fully_mapped(addr, end) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// `madvise`: DONTNEED/FREE drop the pages (private anonymous memory
    /// reads back as zeros); the other known advices are accepted hints.
    pub fn advise(&self, addr: u64, len: u64, advice: u32) -> Result<(), Errno> {
        if !addr.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        let drop_pages = match advice {
            MADV_DONTNEED | MADV_FREE => true,
            0..=3 | 10..=21 => false,
            _ => return Err(Errno::EINVAL),
        };
        if len == 0 {
            return Ok(());
        }
        let len = page_len(len).ok_or(Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let g = self.ranges.lock_range(addr, end);
        let mapped = g.fully_mapped(addr, end);
        if drop_pages {
            let ranges: Vec<(u64, u64)> = g
                .overlapping(addr, end)
                .iter()
                .map(|v| (v.start.max(addr), v.end.min(end)))
                .collect();
            for (s, e) in ranges {
                self.zap(s, e, &mut batch, &mut frames);
            }
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        if mapped {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Sets the start of the program break (exec: end of the data segment).
    pub fn set_brk_base(&self, base: u64) {
        let mut b = self.brk.lock();
        b.base = base;
        b.brk = base;
    }

    /// `brk`: moves the break to `new` when possible; returns the break in
    /// force afterwards (Linux semantics: failure returns the old one).
    pub fn brk(&self, new: u64) -> u64 {
        let mut b = self.brk.lock();
        let cur = b.brk;
        if new == 0 || new < b.base || b.base == 0 || new > MMAP_TOP {
            return cur;
        }
        let (old_top, new_top) = (
            page_len(cur).unwrap_or(USER_TOP),
            page_len(new).unwrap_or(USER_TOP),
        );
        let mut g = self
            .ranges
            .lock_range(old_top.min(new_top), old_top.max(new_top));
        if new_top > old_top {
            if !g.is_free(old_top, new_top) {
                return cur;
            }
            g.insert(Vma {
                start: old_top,
                end: new_top,
                prot: PROT_READ | PROT_WRITE,
                shared: false,
                backing: Backing::Anon,
            });
        } else if new_top < old_top {
            let mut batch = TlbBatch::new();
            let mut frames = Vec::new();
            let removed = g.remove_range(new_top, old_top);
            self.zap(new_top, old_top, &mut batch, &mut frames);
            b.brk = new;
            batch.flush(self);
            drop(g);
            drop(b);
            release(frames);
            drop(removed);
            return new;
        }
        drop(g);
        b.brk = new;
        new
    }
}
