//! Page grants, the VM side: a file server's page-cache page (anonymous
//! memory of the server's own address space) is pinned so that the kernel
//! can map its frame into client address spaces (`files::remote_map`,
//! docs/SERVERS.md "File mappings").
//!
//! Invariants: only a frame that the address space maps, right now, with
//! a private anonymous read/write VMA and a `PTE_ANON` entry can be
//! pinned: never a device page, a kernel page, a page of a file or of
//! shared memory the server itself only borrows.  The pin is taken under
//! the page's range lock while the entry points to the frame, so the
//! frame cannot be freed in between; a pinned frame outlives the server's
//! mapping of it (munmap, exit) until `unpin_frame`.  Pins do not count as
//! PTEs (`refcount`), so the server's own writes never copy the page.
//!
//! One-copy I/O (`files::remote_io`) pins the same way for the length of
//! one copy: `pin_for_io` returns a `PinnedFrame`, which unpins when
//! dropped, and is the only way to the frame's bytes (`UserSlice::
//! write_from_frame` / `read_into_frame`).
//!
//! Must not: pin on behalf of anyone but the kernel's grant table and the
//! one-copy path, or hand out a frame without its pin.

use super::*;

impl AddressSpace {
    /// Pins the frame behind user page `va` of this address space (a file
    /// server's address space) and returns it.  Errors: `EFAULT` when `va`
    /// is not page aligned, not in the user half, or not a private
    /// anonymous read/write page; `ENOMEM` when the frame cannot be made
    /// present or has the most pins a frame can have.
    pub fn pin_anon_page(&self, va: u64) -> Result<PhysAddr, Errno> {
        if !va.is_multiple_of(PAGE) || va >= USER_END {
            return Err(Errno::EFAULT);
        }
        for attempt in 0..2 {
            {
                let g = self.ranges.lock_range(va, va + PAGE);
                let vma = g.find(va).ok_or(Errno::EFAULT)?;
                let rw = PROT_READ | PROT_WRITE;
                if vma.shared || !matches!(vma.backing, Backing::Anon) || vma.prot & rw != rw {
                    return Err(Errno::EFAULT);
                }
                if let Some(e) = paging::leaf(self.root, va) {
                    let cur = e.load(Ordering::Acquire);
                    if holds_frame(cur) && cur & PTE_ANON != 0 {
                        let frame = frame_of(cur);
                        return if refcount::pin(frame) {
                            Ok(frame)
                        } else {
                            Err(Errno::ENOMEM)
                        };
                    }
                }
            }
            // Not present (never touched, or dropped with MADV_DONTNEED):
            // bring it in as a write would, then look again.
            if attempt == 0 {
                self.resolve(va, true, false, true)
                    .map_err(|_| Errno::ENOMEM)?;
            }
        }
        Err(Errno::ENOMEM)
    }
}

impl AddressSpace {
    /// Pins the frame behind user page `va` (see `pin_anon_page`) for as
    /// long as the returned guard lives.
    pub fn pin_for_io(&self, va: u64) -> Result<PinnedFrame, Errno> {
        self.pin_anon_page(va).map(PinnedFrame)
    }

    /// `pin_for_io` of each of the pages `vas` (0: a hole, `None`), in
    /// order, under one range lock over the span they lie in instead of one
    /// per page (a one-copy grant names up to 257 pages).  A page that is
    /// not present is pinned afterwards on its own (`pin_anon_page` brings
    /// it in).  Same errors as `pin_for_io`; on an error no pin is kept.
    pub fn pin_many_for_io(&self, vas: &[u64]) -> Result<Vec<Option<PinnedFrame>>, Errno> {
        let named = vas.iter().copied().filter(|&va| va != 0);
        let (Some(lo), Some(hi)) = (named.clone().min(), named.max()) else {
            return Ok(vas.iter().map(|_| None).collect());
        };
        if hi >= USER_END || vas.iter().any(|va| !va.is_multiple_of(PAGE)) {
            return Err(Errno::EFAULT);
        }
        let mut out: Vec<Option<PinnedFrame>> = Vec::with_capacity(vas.len());
        let mut absent = Vec::new();
        {
            let g = self.ranges.lock_range(lo, hi + PAGE);
            let rw = PROT_READ | PROT_WRITE;
            for (k, &va) in vas.iter().enumerate() {
                if va == 0 {
                    out.push(None);
                    continue;
                }
                let vma = g.find(va).ok_or(Errno::EFAULT)?;
                if vma.shared || !matches!(vma.backing, Backing::Anon) || vma.prot & rw != rw {
                    return Err(Errno::EFAULT);
                }
                let cur = paging::leaf(self.root, va).map(|e| e.load(Ordering::Acquire));
                match cur {
                    Some(cur) if holds_frame(cur) && cur & PTE_ANON != 0 => {
                        let frame = frame_of(cur);
                        if !refcount::pin(frame) {
                            return Err(Errno::ENOMEM);
                        }
                        out.push(Some(PinnedFrame(frame)));
                    }
                    _ => {
                        out.push(None);
                        absent.push(k);
                    }
                }
            }
        }
        for k in absent {
            out[k] = Some(self.pin_for_io(vas[k])?);
        }
        Ok(out)
    }
}

/// A frame of a file server's page cache, pinned while this lives: it
/// cannot be freed (and so not be reused for anyone else) even if the
/// server unmaps it meanwhile.  No translation of it is made.
pub struct PinnedFrame(PhysAddr);

impl PinnedFrame {
    /// One more pin of the same frame (alive: this one pins it); `None`
    /// when the frame has half the pins it can have already (kept read
    /// grants must not starve the pins of mapping grants).
    pub fn pin_again(&self) -> Option<PinnedFrame> {
        refcount::pin_pinned(self.0, 128).then_some(PinnedFrame(self.0))
    }

    /// The frame (for the copy routines of `uaccess`).
    pub(in crate::memory::vm) fn frame(&self) -> PhysAddr {
        self.0
    }
}

impl Drop for PinnedFrame {
    fn drop(&mut self) {
        refcount::unpin(self.0);
    }
}

/// Drops a pin taken by `pin_anon_page` (frees the frame if its owner no
/// longer maps it).  The caller must have removed every translation of it
/// it made, with their TLB shootdowns, first.
pub fn unpin_frame(frame: PhysAddr) {
    refcount::unpin(frame);
}
