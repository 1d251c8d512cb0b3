//! The PCI Express ECAM window from the ACPI MCFG table, if the firmware
//! has one (QEMU's `q35` does; its `pc` machine does not).
//!
//! Reads the tables through `arch::acpi`'s HHDM handler.
//! Invariants: only segment group 0 is used (the only one QEMU has), and
//! only a window that lies wholly below 4 GiB, where the HHDM maps it.
//! Must not: write any ACPI table, or fail the boot (no MCFG is normal).

use acpi::mcfg::Mcfg;

use crate::memory::{self, PhysAddr};

/// Bytes of ECAM space per bus (32 devices x 8 functions x 4 KiB).
pub const BYTES_PER_BUS: u64 = 1 << 20;
/// The HHDM maps physical memory up to here on every boot path.
const HHDM_MAPPED_LIMIT: u64 = 1 << 32;

/// An ECAM window: physical base (of bus `start_bus`) and bus range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    pub base: u64,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// The ECAM window of segment group 0, if ACPI lists a usable one.
pub fn find() -> Option<EcamWindow> {
    let reported = crate::boot::rsdp_address()?;
    let hhdm = memory::phys_to_virt(PhysAddr::new(0)) as u64;
    let tables = crate::arch::acpi::tables(reported, hhdm).ok()?;
    let mcfg = tables.find_table::<Mcfg>().ok()?;
    let entry = mcfg
        .get()
        .entries()
        .iter()
        .copied()
        .find(|e| e.pci_segment_group == 0)?;
    let (base, start_bus, end_bus) = (
        entry.base_address,
        entry.bus_number_start,
        entry.bus_number_end,
    );
    let buses = (end_bus as u64).checked_sub(start_bus as u64)? + 1;
    let end = base.checked_add(buses * BYTES_PER_BUS)?;
    if base == 0 || end > HHDM_MAPPED_LIMIT {
        log::warn!(
            "pci: ACPI MCFG window {:#x}..{:#x} is outside the HHDM; using ports",
            base,
            end
        );
        return None;
    }
    Some(EcamWindow {
        base,
        start_bus,
        end_bus,
    })
}
