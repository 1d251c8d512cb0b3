//! Reading QEMU's `struct hvm_start_info` (Xen PVH boot ABI): memory map,
//! modules (the initrd is module 0), RSDP.
//!
//! Invariants: the structure is validated (magic, version >= 1 for the
//! memory map, counts bounded) before anything it points to is read.  Must
//! not: keep pointers into the start info past loading (it lives in memory
//! the loader does not own).

use crate::fail;
use crate::phys::{self, FwRegion, MemType, PhysMem};

const MAGIC: u32 = 0x336e_c578;
const MAX_E820: u32 = 128;

/// What the loader takes from the start info.
pub struct StartInfo {
    pub addr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    /// The boot bundle (PVH module 0), physical address and size.
    pub bundle: Option<(u64, u64)>,
    pub modlist_paddr: u64,
    pub nr_modules: u32,
    pub rsdp_paddr: u64,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

impl StartInfo {
    /// Read and check the start info at physical `addr`.
    pub fn read(addr: u64) -> StartInfo {
        if addr == 0 {
            fail!("no PVH start info (the loader must be started by QEMU -kernel as a PVH ELF)");
        }
        // SAFETY: QEMU's firmware placed the 56-byte start info at `addr`
        // and nothing modifies it while the loader runs.
        let b = unsafe { phys::bytes(addr, 56) };
        if u32_at(b, 0) != MAGIC {
            fail!("bad PVH start info magic {:#x} at {addr:#x}", u32_at(b, 0));
        }
        let version = u32_at(b, 4);
        if version < 1 {
            fail!("PVH start info version 0 has no memory map (QEMU too old?)");
        }
        let nr_modules = u32_at(b, 12);
        let modlist_paddr = u64_at(b, 16);
        let memmap_entries = u32_at(b, 48);
        if memmap_entries == 0 || memmap_entries > MAX_E820 {
            fail!("PVH memory map has {memmap_entries} entries (expected 1..={MAX_E820})");
        }
        let bundle = if nr_modules == 0 || modlist_paddr == 0 {
            None
        } else {
            // SAFETY: module 0's 32-byte entry, placed by QEMU's firmware.
            let m = unsafe { phys::bytes(modlist_paddr, 32) };
            Some((u64_at(m, 0), u64_at(m, 8)))
        };
        StartInfo {
            addr,
            memmap_paddr: u64_at(b, 40),
            memmap_entries,
            bundle,
            modlist_paddr,
            nr_modules,
            rsdp_paddr: u64_at(b, 32),
        }
    }

    /// The E820-style memory map.
    pub fn memory_map(&self) -> impl Iterator<Item = FwRegion> {
        // SAFETY: `memmap_entries` 24-byte entries placed by QEMU's firmware.
        let table = unsafe { phys::bytes(self.memmap_paddr, u64::from(self.memmap_entries) * 24) };
        table.chunks_exact(24).map(|e| FwRegion {
            base: u64_at(e, 0),
            len: u64_at(e, 8),
            kind: MemType::from_e820(u32_at(e, 16)),
        })
    }

    /// Claim the start info's own structures as bootloader-reclaimable so
    /// no allocation overwrites them while loading.
    pub fn claim_structures(&self, mem: &mut PhysMem) {
        mem.claim(self.addr, 56, MemType::BootloaderReclaimable);
        mem.claim(
            self.memmap_paddr,
            u64::from(self.memmap_entries) * 24,
            MemType::BootloaderReclaimable,
        );
        if self.modlist_paddr != 0 {
            mem.claim(
                self.modlist_paddr,
                u64::from(self.nr_modules) * 32,
                MemType::BootloaderReclaimable,
            );
        }
    }
}
