//! The PCI Express ECAM window from the ACPI MCFG table, if the firmware
//! has one (QEMU's `q35` does; its `pc` machine does not).
//!
//! Owns a read-only `AcpiHandler` over the HHDM for this one lookup.
//! Invariants: only segment group 0 is used (the only one QEMU has), and
//! only a window that lies wholly below 4 GiB, where the HHDM maps it.
//! Must not: write any ACPI table, or fail the boot (no MCFG is normal).

use core::ptr::NonNull;

use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use crate::mm::{self, PhysAddr};

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

/// Physical tables through the HHDM (read-only use).
#[derive(Clone, Copy)]
struct HhdmTables;

impl AcpiHandler for HhdmTables {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = mm::phys_to_virt(PhysAddr::new(physical_address as u64)) as *mut T;
        // SAFETY: the HHDM maps the first 4 GiB, where firmware puts ACPI
        // tables; the pointer is in the higher half, hence non-null.
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

/// The ECAM window of segment group 0, if ACPI lists a usable one.
pub fn find() -> Option<EcamWindow> {
    let reported = crate::boot::rsdp_address()?;
    let hhdm = mm::phys_to_virt(PhysAddr::new(0)) as u64;
    // Below base revision 3 the loader reports an HHDM pointer.
    let rsdp = if reported as u64 >= hhdm {
        (reported as u64 - hhdm) as usize
    } else {
        reported
    };
    // SAFETY: the loader promised an RSDP here; the crate checks signatures
    // and checksums before trusting any table.
    let tables = unsafe { AcpiTables::from_rsdp(HhdmTables, rsdp) }.ok()?;
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
