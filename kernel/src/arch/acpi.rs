//! ACPI: find the MADT from the RSDP Limine gave us and report the interrupt
//! topology (local APIC ids, IOAPICs, interrupt source overrides).
//!
//! Owns the `AcpiHandler` that "maps" physical tables through the HHDM
//! (revision 2 guarantees the first 4 GiB are there, which is where firmware
//! puts ACPI tables). Read-only: must not write any table, and must not be a
//! reason to fail the boot (the Limine MP response alone is enough to start
//! CPUs), so every problem is returned as an error for the caller to log.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// Physical memory access through the higher-half direct map.
#[derive(Clone, Copy)]
pub struct HhdmHandler {
    offset: u64,
}

impl AcpiHandler for HhdmHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = (physical_address as u64 + self.offset) as *mut T;
        // SAFETY: the HHDM maps the table's physical range; the pointer is
        // non-null because the HHDM offset is in the higher half.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(virt),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // The HHDM is permanent: nothing to undo.
    }
}

/// Largest number of IOAPICs we record.
pub const MAX_IOAPICS: usize = 8;

/// What the MADT says about interrupt hardware.
#[derive(Debug, Default, Clone, Copy)]
pub struct MadtSummary {
    /// Physical address of the local APICs (after any 64-bit override).
    pub local_apic_address: u64,
    /// Enabled (or online-capable) processors listed.
    pub cpus: usize,
    /// `(id, physical address, first GSI)` of each IOAPIC.
    pub ioapics: [(u8, u32, u32); MAX_IOAPICS],
    pub ioapic_count: usize,
    /// Interrupt source overrides listed.
    pub overrides: usize,
    /// Whether legacy 8259 PICs are present (MADT flag PCAT_COMPAT).
    pub has_8259: bool,
}

/// Converts the RSDP address the loader reported into a physical address:
/// below base revision 3 it is an HHDM pointer, from 3 on it is physical.
fn rsdp_physical(reported: usize, hhdm_offset: u64) -> usize {
    if reported as u64 >= hhdm_offset {
        (reported as u64 - hhdm_offset) as usize
    } else {
        reported
    }
}

/// The ACPI tables behind the RSDP the loader reported, read through the
/// HHDM at `hhdm_offset` (shared with the MCFG lookup of `drivers`).
pub fn tables(
    rsdp_reported: usize,
    hhdm_offset: u64,
) -> Result<AcpiTables<HhdmHandler>, acpi::AcpiError> {
    let handler = HhdmHandler {
        offset: hhdm_offset,
    };
    let rsdp = rsdp_physical(rsdp_reported, hhdm_offset);
    // SAFETY: the loader promised an RSDP at this address; the crate checks
    // its signature and checksum before trusting it.
    unsafe { AcpiTables::from_rsdp(handler, rsdp) }
}

/// Walks the MADT, logging every entry at `debug` and a summary at `info`.
pub fn scan_madt(rsdp_reported: usize, hhdm_offset: u64) -> Result<MadtSummary, acpi::AcpiError> {
    let tables = tables(rsdp_reported, hhdm_offset)?;
    let madt = tables.find_table::<Madt>()?;
    let mut sum = MadtSummary {
        local_apic_address: madt.get().local_apic_address as u64,
        has_8259: madt.get().supports_8259(),
        ..MadtSummary::default()
    };
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                let (uid, id, flags) = (e.processor_id, e.apic_id, e.flags);
                // Bit 0: enabled; bit 1: online capable.
                if flags & 0b11 != 0 {
                    sum.cpus += 1;
                }
                log::info!(
                    "madt: local APIC id {} (processor {}), flags {:#x}",
                    id,
                    uid,
                    flags
                );
            }
            MadtEntry::LocalX2Apic(e) => {
                let (uid, id, flags) = (e.processor_uid, e.x2apic_id, e.flags);
                if flags & 0b11 != 0 {
                    sum.cpus += 1;
                }
                log::info!(
                    "madt: local x2APIC id {} (processor {}), flags {:#x}",
                    id,
                    uid,
                    flags
                );
            }
            MadtEntry::IoApic(e) => {
                let (id, addr, gsi) = (
                    e.io_apic_id,
                    e.io_apic_address,
                    e.global_system_interrupt_base,
                );
                log::info!("madt: IOAPIC id {} at {:#x}, GSI base {}", id, addr, gsi);
                if sum.ioapic_count < MAX_IOAPICS {
                    sum.ioapics[sum.ioapic_count] = (id, addr, gsi);
                    sum.ioapic_count += 1;
                }
            }
            MadtEntry::InterruptSourceOverride(e) => {
                let (bus, irq, gsi, flags) = (e.bus, e.irq, e.global_system_interrupt, e.flags);
                log::info!(
                    "madt: override bus {} IRQ {} -> GSI {}, flags {:#x}",
                    bus,
                    irq,
                    gsi,
                    flags
                );
                sum.overrides += 1;
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                sum.local_apic_address = e.local_apic_address;
            }
            MadtEntry::LocalApicNmi(e) => {
                let (uid, line) = (e.processor_id, e.nmi_line);
                log::debug!("madt: local APIC NMI processor {:#x} LINT{}", uid, line);
            }
            _ => {}
        }
    }
    Ok(sum)
}
