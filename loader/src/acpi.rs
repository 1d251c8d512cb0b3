//! The few ACPI facts the loader needs: the RSDP (from PVH or a BIOS-area
//! scan) and, from the MADT, the local APIC ids of the enabled CPUs and the
//! I/O APIC addresses (to mask them before the hand-off).
//!
//! Invariants: every table is checked (signature, length inside 4 GiB,
//! checksum) before its contents are used; a malformed table is skipped and
//! the loader boots with what it could read (at worst the BSP alone).  Must
//! not: write to any ACPI table.

use crate::phys;

/// Most CPUs the loader starts.
pub const MAX_CPUS: usize = 256;
pub const MAX_IOAPICS: usize = 8;

pub struct Madt {
    pub lapic_ids: [u32; MAX_CPUS],
    pub cpu_count: usize,
    pub ioapics: [u64; MAX_IOAPICS],
    pub ioapic_count: usize,
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// Validate an RSDP candidate at `addr`; returns it if the checksum(s) match.
fn rsdp_at(addr: u64) -> Option<u64> {
    if addr == 0 || addr.checked_add(36)? > phys::IDENTITY_LIMIT {
        return None;
    }
    // SAFETY: firmware memory below 4 GiB, read-only use.
    let b = unsafe { phys::bytes(addr, 20) };
    if &b[..8] != b"RSD PTR " || !checksum_ok(b) {
        return None;
    }
    if b[15] >= 2 {
        // SAFETY: as above; an ACPI 2.0 RSDP is 36 bytes.
        let ext = unsafe { phys::bytes(addr, 36) };
        if !checksum_ok(ext) {
            return None;
        }
    }
    Some(addr)
}

/// Find the RSDP: the address PVH gave, else scan the EBDA and the BIOS
/// area 0xe0000..0x100000 on 16-byte boundaries.
pub fn find_rsdp(pvh_rsdp: u64) -> Option<u64> {
    if let Some(a) = rsdp_at(pvh_rsdp) {
        return Some(a);
    }
    // SAFETY: the BDA word at 0x40e holds the EBDA segment on PC machines.
    let ebda = u64::from(u16::from_le_bytes(
        unsafe { phys::bytes(0x40e, 2) }
            .try_into()
            .unwrap_or([0, 0]),
    )) << 4;
    let ebda_scan = if (0x80000..0xa0000).contains(&ebda) {
        ebda..ebda + 1024
    } else {
        0..0
    };
    ebda_scan
        .chain(0xe0000..0x100000)
        .step_by(16)
        .find_map(rsdp_at)
}

/// A checked ACPI table at `addr` (header + body).
fn table_at(addr: u64) -> Option<&'static [u8]> {
    if addr == 0 || addr.checked_add(36)? > phys::IDENTITY_LIMIT {
        return None;
    }
    // SAFETY: firmware memory below 4 GiB; read-only.
    let len = u64::from(u32_at(unsafe { phys::bytes(addr, 36) }, 4));
    if len < 36 || addr.checked_add(len)? > phys::IDENTITY_LIMIT {
        return None;
    }
    // SAFETY: as above, length checked.
    let t = unsafe { phys::bytes(addr, len) };
    checksum_ok(t).then_some(t)
}

/// Read the MADT through the RSDP at `rsdp`.  `None` if any table on the
/// way is missing or malformed.
pub fn read_madt(rsdp: u64) -> Option<Madt> {
    // SAFETY: validated by `rsdp_at`.
    let r = unsafe { phys::bytes(rsdp, 36) };
    let (root, entry_size) = if r[15] >= 2 && u64_at(r, 24) != 0 {
        (u64_at(r, 24), 8)
    } else {
        (u64::from(u32_at(r, 16)), 4)
    };
    let root = table_at(root)?;
    let madt = root[36..]
        .chunks_exact(entry_size)
        .map(|e| {
            if entry_size == 8 {
                u64_at(e, 0)
            } else {
                u64::from(u32_at(e, 0))
            }
        })
        .filter_map(table_at)
        .find(|t| &t[..4] == b"APIC")?;
    let mut out = Madt {
        lapic_ids: [0; MAX_CPUS],
        cpu_count: 0,
        ioapics: [0; MAX_IOAPICS],
        ioapic_count: 0,
    };
    let mut off = 44;
    while off + 2 <= madt.len() {
        let (kind, len) = (madt[off], usize::from(madt[off + 1]));
        if len < 2 || off + len > madt.len() {
            break;
        }
        let e = &madt[off..off + len];
        match kind {
            // Processor local APIC: uid u8, apic id u8, flags u32 (bit 0 enabled).
            0 if len >= 8 && u32_at(e, 4) & 1 != 0 => add_cpu(&mut out, u32::from(e[3])),
            // I/O APIC: id u8, reserved u8, address u32, gsi base u32.
            1 if len >= 12 && out.ioapic_count < MAX_IOAPICS => {
                out.ioapics[out.ioapic_count] = u64::from(u32_at(e, 4));
                out.ioapic_count += 1;
            }
            // Processor local x2APIC: reserved u16, x2apic id u32, flags u32, uid u32.
            9 if len >= 16 && u32_at(e, 8) & 1 != 0 => add_cpu(&mut out, u32_at(e, 4)),
            _ => {}
        }
        off += len;
    }
    Some(out)
}

fn add_cpu(madt: &mut Madt, id: u32) {
    if madt.cpu_count < MAX_CPUS && !madt.lapic_ids[..madt.cpu_count].contains(&id) {
        madt.lapic_ids[madt.cpu_count] = id;
        madt.cpu_count += 1;
    }
}
