//! The kernel's initial 4-level page tables: HHDM, identity map, kernel
//! segments.
//!
//! Invariants: tables are allocated from [`PhysMem`] as bootloader-
//! reclaimable pages below 4 GiB (so the loader can write them through the
//! identity map); intermediate entries are present + writable, leaves carry
//! the permissions.  A page is never mapped twice (double mapping is a
//! loader bug and stops the boot).  Must not: switch CR3 (the hand-off does).

use crate::fail;
use crate::phys::{MemType, PhysMem, PAGE};

pub const PRESENT: u64 = 1;
pub const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
pub const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
pub const SIZE_2M: u64 = 2 << 20;

pub struct PageTables {
    pub pml4: u64,
    /// Whether the CPU supports NX (else the bit is reserved and never set).
    nx: bool,
}

/// Pointer to entry `index` of the table at physical `table`.
fn entry(table: u64, index: u64) -> *mut u64 {
    (table + index * 8) as *mut u64
}

impl PageTables {
    pub fn new(mem: &mut PhysMem, nx: bool) -> PageTables {
        PageTables {
            pml4: mem.alloc(PAGE, MemType::BootloaderReclaimable),
            nx,
        }
    }

    /// Map one page of `size` (4 KiB or 2 MiB) at `virt` to `phys`.
    pub fn map(&mut self, mem: &mut PhysMem, virt: u64, phys: u64, size: u64, mut flags: u64) {
        if !self.nx {
            flags &= !NO_EXECUTE;
        }
        let leaf_level = if size == SIZE_2M { 2 } else { 1 };
        let mut table = self.pml4;
        for level in (leaf_level + 1..=4).rev() {
            let index = (virt >> (12 + 9 * (level - 1))) & 0x1ff;
            let e = entry(table, index);
            // SAFETY: `table` is a page-table page this loader allocated
            // below 4 GiB (identity-mapped); `index` < 512.
            let value = unsafe { e.read() };
            table = if value & PRESENT == 0 {
                let next = mem.alloc(PAGE, MemType::BootloaderReclaimable);
                // SAFETY: as above.
                unsafe { e.write(next | PRESENT | WRITABLE) };
                next
            } else if value & HUGE != 0 {
                fail!("internal: {virt:#x} already inside a large page");
            } else {
                value & ADDR_MASK
            };
        }
        let index = (virt >> (12 + 9 * (leaf_level - 1))) & 0x1ff;
        let e = entry(table, index);
        let huge = if size == SIZE_2M { HUGE } else { 0 };
        // SAFETY: as above.
        unsafe {
            if e.read() & PRESENT != 0 {
                fail!("internal: virtual page {virt:#x} mapped twice");
            }
            e.write(phys | flags | huge | PRESENT);
        }
    }
}
