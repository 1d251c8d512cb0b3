//! Access to physical memory while the loader runs, and the physical page
//! allocator with the bookkeeping that becomes the Limine memory map.
//!
//! Invariants: the loader runs with the first 4 GiB identity-mapped, so a
//! physical address below 4 GiB is also a valid pointer; [`bytes`] and
//! [`bytes_mut`] refuse anything that crosses 4 GiB.  Every allocation is
//! page-aligned, zeroed, below 4 GiB, inside USABLE firmware memory, and
//! recorded as a [`Claim`] so the memory map can mark it.  Claims never
//! overlap.  Must not: hand out memory that overlaps the loader image, the
//! boot bundle or the firmware's boot structures (they are claimed first).

use crate::fail;

pub const PAGE: u64 = 4096;
/// Everything the loader touches must lie below this (identity-mapped).
pub const IDENTITY_LIMIT: u64 = 1 << 32;

/// View `len` bytes of physical memory at `addr` as a slice.
///
/// # Safety
/// The range must be memory that nothing else writes while the slice lives
/// (firmware tables, the boot bundle, memory this loader owns).
pub unsafe fn bytes(addr: u64, len: u64) -> &'static [u8] {
    match addr.checked_add(len) {
        Some(end) if end <= IDENTITY_LIMIT && addr != 0 => {
            // SAFETY: below 4 GiB physical == virtual (boot identity map);
            // the caller guarantees nobody mutates the range.
            unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) }
        }
        _ => fail!("physical range {addr:#x}+{len:#x} is not below 4 GiB"),
    }
}

/// Mutable view of `len` bytes of physical memory at `addr`.
///
/// # Safety
/// The range must be owned by the loader (an allocation) and not aliased.
pub unsafe fn bytes_mut(addr: u64, len: u64) -> &'static mut [u8] {
    match addr.checked_add(len) {
        Some(end) if end <= IDENTITY_LIMIT && addr != 0 => {
            // SAFETY: identity-mapped, and the caller owns the range.
            unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
        }
        _ => fail!("physical range {addr:#x}+{len:#x} is not below 4 GiB"),
    }
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}
pub fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

/// Limine memory map entry types.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub enum MemType {
    Usable = 0,
    Reserved = 1,
    AcpiReclaimable = 2,
    AcpiNvs = 3,
    BadMemory = 4,
    BootloaderReclaimable = 5,
    ExecutableAndModules = 6,
}

impl MemType {
    /// Map an E820 type to a Limine type.
    pub fn from_e820(kind: u32) -> MemType {
        match kind {
            1 => MemType::Usable,
            3 => MemType::AcpiReclaimable,
            4 => MemType::AcpiNvs,
            5 => MemType::BadMemory,
            _ => MemType::Reserved,
        }
    }
}

/// A firmware memory map entry.
#[derive(Clone, Copy, Debug)]
pub struct FwRegion {
    pub base: u64,
    pub len: u64,
    pub kind: MemType,
}

/// A page-aligned range the loader set aside, with what it holds.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub base: u64,
    pub end: u64,
    pub kind: MemType,
}

const MAX_FW: usize = 128;
const MAX_CLAIMS: usize = 96;
/// Most entries in the final memory map.
pub const MAX_MAP: usize = 256;

/// The allocator: firmware map + claims (sorted by base, non-overlapping).
pub struct PhysMem {
    fw: [FwRegion; MAX_FW],
    fw_len: usize,
    claims: [Claim; MAX_CLAIMS],
    claims_len: usize,
    /// Allocation goes upward from here.
    cursor: u64,
}

impl PhysMem {
    pub fn new(fw_regions: impl Iterator<Item = FwRegion>) -> PhysMem {
        let empty = FwRegion {
            base: 0,
            len: 0,
            kind: MemType::Reserved,
        };
        let mut pm = PhysMem {
            fw: [empty; MAX_FW],
            fw_len: 0,
            claims: [Claim {
                base: 0,
                end: 0,
                kind: MemType::Reserved,
            }; MAX_CLAIMS],
            claims_len: 0,
            cursor: 0x10_0000,
        };
        for r in fw_regions {
            if pm.fw_len == MAX_FW {
                fail!("firmware memory map has more than {MAX_FW} entries");
            }
            if r.len == 0 {
                continue;
            }
            pm.fw[pm.fw_len] = r;
            pm.fw_len += 1;
        }
        // Sort by base (insertion sort; the map is small).
        for i in 1..pm.fw_len {
            let mut j = i;
            while j > 0 && pm.fw[j - 1].base > pm.fw[j].base {
                pm.fw.swap(j - 1, j);
                j -= 1;
            }
        }
        if !pm.fw().iter().any(|r| r.kind == MemType::Usable) {
            fail!("firmware memory map has no usable RAM");
        }
        pm
    }

    pub fn fw(&self) -> &[FwRegion] {
        &self.fw[..self.fw_len]
    }

    pub fn claims(&self) -> &[Claim] {
        &self.claims[..self.claims_len]
    }

    /// Highest end address of any RAM-like firmware region (not Reserved).
    pub fn top_of_ram(&self) -> u64 {
        self.fw()
            .iter()
            .filter(|r| r.kind != MemType::Reserved)
            .map(|r| r.base.saturating_add(r.len))
            .max()
            .unwrap_or(0)
    }

    /// Record that `[base, base+len)` (rounded out to pages) holds `kind`.
    /// Parts that overlap an existing claim keep the existing kind.
    pub fn claim(&mut self, base: u64, len: u64, kind: MemType) {
        let mut start = align_down(base, PAGE);
        let end = align_up(base.saturating_add(len), PAGE);
        // Insert the pieces of [start, end) not already claimed.
        while start < end {
            let overlapping = self
                .claims()
                .iter()
                .find(|c| c.base < end && start < c.end)
                .copied();
            match overlapping {
                Some(c) if c.base <= start => start = c.end,
                Some(c) => {
                    self.insert(Claim {
                        base: start,
                        end: c.base,
                        kind,
                    });
                    start = c.end;
                }
                None => {
                    self.insert(Claim {
                        base: start,
                        end,
                        kind,
                    });
                    start = end;
                }
            }
        }
    }

    fn insert(&mut self, claim: Claim) {
        let pos = self
            .claims()
            .iter()
            .position(|c| c.base > claim.base)
            .unwrap_or(self.claims_len);
        // Merge with the left neighbour when contiguous and of the same kind.
        if pos > 0 {
            let left = &mut self.claims[pos - 1];
            if left.end == claim.base && left.kind == claim.kind {
                left.end = claim.end;
                return;
            }
        }
        if pos < self.claims_len {
            let right = &mut self.claims[pos];
            if right.base == claim.end && right.kind == claim.kind {
                right.base = claim.base;
                return;
            }
        }
        if self.claims_len == MAX_CLAIMS {
            fail!("too many separate memory allocations (more than {MAX_CLAIMS})");
        }
        self.claims.copy_within(pos..self.claims_len, pos + 1);
        self.claims[pos] = claim;
        self.claims_len += 1;
    }

    /// Allocate `len` bytes (rounded up to pages), zeroed, page-aligned,
    /// below 4 GiB, marked `kind`.  Returns the physical address.
    pub fn alloc(&mut self, len: u64, kind: MemType) -> u64 {
        let size = align_up(len.max(1), PAGE);
        let mut candidate = align_up(self.cursor, PAGE);
        'regions: for i in 0..self.fw_len {
            let r = self.fw[i];
            if r.kind != MemType::Usable {
                continue;
            }
            let r_end = align_down(r.base.saturating_add(r.len).min(IDENTITY_LIMIT), PAGE);
            candidate = candidate.max(align_up(r.base, PAGE));
            loop {
                let Some(end) = candidate.checked_add(size) else {
                    break 'regions;
                };
                if end > r_end {
                    continue 'regions;
                }
                match self
                    .claims()
                    .iter()
                    .find(|c| c.base < end && candidate < c.end)
                {
                    Some(c) => candidate = c.end,
                    None => {
                        self.claim(candidate, size, kind);
                        self.cursor = end;
                        // SAFETY: the range is usable RAM below 4 GiB that
                        // was claimed just now, so the loader owns it.
                        unsafe { bytes_mut(candidate, size) }.fill(0);
                        return candidate;
                    }
                }
            }
        }
        fail!("out of memory below 4 GiB allocating {size:#x} bytes")
    }

    /// Build the final memory map: firmware regions with USABLE parts split
    /// by the claims, sorted, adjacent entries of one type merged.  Usable
    /// and reclaimable entries are page-aligned.  Returns the entry count.
    pub fn build_map(&self, out: &mut [FwRegion; MAX_MAP]) -> usize {
        let mut n = 0;
        let mut emit = |base: u64, end: u64, kind: MemType| {
            if end <= base {
                return;
            }
            if n == MAX_MAP {
                fail!("memory map has more than {MAX_MAP} entries");
            }
            // Merge with the previous entry when contiguous and same type.
            if n > 0 {
                let prev = &mut out[n - 1];
                if prev.kind == kind && prev.base + prev.len == base {
                    prev.len += end - base;
                    return;
                }
            }
            out[n] = FwRegion {
                base,
                len: end - base,
                kind,
            };
            n += 1;
        };
        for r in self.fw() {
            let r_end = r.base.saturating_add(r.len);
            if r.kind != MemType::Usable {
                emit(r.base, r_end, r.kind);
                continue;
            }
            let base = align_up(r.base, PAGE);
            let end = align_down(r_end, PAGE);
            let mut cur = base;
            for c in self.claims() {
                if c.end <= cur || c.base >= end {
                    continue;
                }
                emit(cur, c.base.max(cur), MemType::Usable);
                cur = c.base.max(cur);
                let piece_end = c.end.min(end);
                emit(cur, piece_end, c.kind);
                cur = piece_end;
            }
            emit(cur, end, MemType::Usable);
        }
        n
    }
}
