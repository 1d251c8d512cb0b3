//! PCI: configuration space, bus scan, BARs, capabilities and MSI-X.
//!
//! Owns configuration-space access: through the ECAM window of the ACPI MCFG
//! table when there is one (`q35`), else through the legacy mechanism #1
//! (ports 0xCF8/0xCFC; QEMU's `pc` machine has no MCFG).  Owns the MSI-X
//! table programming of every function a driver claims.
//!
//! Invariants: the mechanism is chosen once (`init_config_access`) before
//! the scan; the address/data port pair is used only under `CONFIG_LOCK`
//! (interrupts off while held, so an interrupt handler on this CPU can never
//! find the address port half written); BAR addresses handed out are
//! physical and below 4 GiB, where the HHDM maps them (Limine base revision
//! 2 maps the first 4 GiB; docs/CONTRACTS.md §2).
//!
//! Must not: touch a device's memory before its BAR was checked to be
//! assigned and inside the HHDM; enable bus mastering for a function no
//! driver claimed.

use alloc::vec::Vec;
use core::fmt;

use x86_64::instructions::port::Port;

use crate::sched::IrqSpinLock;

/// Serialises uses of the 0xCF8/0xCFC port pair.
static CONFIG_LOCK: IrqSpinLock<()> = IrqSpinLock::new(());

/// The ECAM window, when ACPI gave one (set once before the scan).
static ECAM: spin::Once<super::mcfg::EcamWindow> = spin::Once::new();

/// Chooses ECAM (ACPI MCFG) or the I/O ports, and says which.
pub fn init_config_access() {
    match super::mcfg::find() {
        Some(window) => {
            ECAM.call_once(|| window);
            log::info!(
                "pci: configuration space through ECAM at {:#x}, buses {}..={} (ACPI MCFG)",
                window.base,
                window.start_bus,
                window.end_bus
            );
        }
        None => log::info!("pci: configuration space through ports 0xCF8/0xCFC (no ACPI MCFG)"),
    }
}

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;

/// Standard configuration-space offsets.
const OFFSET_VENDOR_DEVICE: u16 = 0x00;
const OFFSET_COMMAND: u16 = 0x04;
const OFFSET_STATUS: u16 = 0x06;
const OFFSET_CLASS: u16 = 0x08;
const OFFSET_HEADER_TYPE: u16 = 0x0E;
const OFFSET_BAR0: u16 = 0x10;
const OFFSET_CAPABILITIES: u16 = 0x34;

/// Command register bits.
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: a capabilities list exists.
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Capability ids.
pub const CAP_MSIX: u8 = 0x11;
pub const CAP_VENDOR: u8 = 0x09;

/// MSI-X message control bits.
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X table entry: vector control bit 0 masks the entry.
const MSIX_ENTRY_MASKED: u32 = 1;
const MSIX_ENTRY_BYTES: u64 = 16;
/// Local APIC message address (x86 MSI format): destination id in bits 12..20.
const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;

/// The HHDM maps physical memory up to here on every boot path.
const HHDM_MAPPED_LIMIT: u64 = 1 << 32;

/// Bus/device/function of one PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl Address {
    fn config_address(self, offset: u16) -> u32 {
        0x8000_0000
            | (self.bus as u32) << 16
            | (self.device as u32) << 11
            | (self.function as u32) << 8
            | (offset as u32 & 0xFC)
    }

    /// The ECAM address of `offset` in this function's space, if ECAM is in
    /// use and covers the bus.
    fn ecam_pointer(self, offset: u16) -> Option<*mut u32> {
        let window = ECAM.get()?;
        if self.bus < window.start_bus || self.bus > window.end_bus {
            return None;
        }
        let at = window.base
            + (self.bus - window.start_bus) as u64 * super::mcfg::BYTES_PER_BUS
            + ((self.device as u64) << 15)
            + ((self.function as u64) << 12)
            + (offset as u64 & 0xFFC);
        Some(crate::memory::phys_to_virt(crate::memory::PhysAddr::new(at)).cast())
    }

    /// Reads the aligned dword holding `offset`.
    pub fn read32(self, offset: u16) -> u32 {
        if let Some(at) = self.ecam_pointer(offset) {
            // SAFETY: inside the ECAM window, which `mcfg::find` checked to
            // lie below 4 GiB in the HHDM; device memory, read volatile.
            return unsafe { at.read_volatile() };
        }
        let _held = CONFIG_LOCK.lock();
        // SAFETY: configuration mechanism #1; the lock keeps the address and
        // data accesses together; reads have no memory effect.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS).write(self.config_address(offset));
            Port::<u32>::new(CONFIG_DATA).read()
        }
    }

    /// Writes the aligned dword at `offset`.
    pub fn write32(self, offset: u16, value: u32) {
        if let Some(at) = self.ecam_pointer(offset) {
            // SAFETY: as in `read32`; callers write only registers whose
            // meaning they know.
            unsafe { at.write_volatile(value) };
            return;
        }
        let _held = CONFIG_LOCK.lock();
        // SAFETY: as in `read32`; callers write only registers of a function
        // whose meaning they know (BAR sizing, command, MSI-X control).
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS).write(self.config_address(offset));
            Port::<u32>::new(CONFIG_DATA).write(value);
        }
    }

    pub fn read16(self, offset: u16) -> u16 {
        (self.read32(offset) >> ((offset & 2) * 8)) as u16
    }

    pub fn read8(self, offset: u16) -> u8 {
        (self.read32(offset) >> ((offset & 3) * 8)) as u8
    }

    /// Writes a 16-bit register by read-modify-write of its dword.  Only used
    /// for registers whose dword neighbour is not write-1-to-clear (the
    /// MSI-X message control shares its dword with read-only fields; the
    /// command register is written through `set_command_bits`).
    pub fn write16(self, offset: u16, value: u16) {
        let shift = (offset & 2) * 8;
        let old = self.read32(offset);
        let new = (old & !(0xFFFF << shift)) | (value as u32) << shift;
        self.write32(offset, new);
    }

    /// Sets bits in the command register (the status half is written as
    /// zero: its error bits are write-1-to-clear).
    fn set_command_bits(self, bits: u16) {
        let command = self.read16(OFFSET_COMMAND) | bits;
        self.write32(OFFSET_COMMAND, command as u32);
    }
}

/// A decoded base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Memory BAR: physical address and size (64-bit BARs take two slots).
    Memory {
        address: u64,
        size: u64,
        is_64bit: bool,
    },
    /// I/O port BAR.
    Io { port: u32, size: u32 },
    /// Slot unused (or the upper half of a 64-bit BAR).
    None,
}

/// One function found by the scan.
#[derive(Debug, Clone)]
pub struct Function {
    pub address: Address,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub bars: [Bar; 6],
    /// `(capability id, config offset)` of each capability, in list order.
    pub capabilities: Vec<(u8, u16)>,
}

impl Function {
    /// Offsets of every capability with this id.
    pub fn capabilities_with_id(&self, id: u8) -> impl Iterator<Item = u16> + '_ {
        self.capabilities
            .iter()
            .filter(move |(cap, _)| *cap == id)
            .map(|(_, offset)| *offset)
    }

    /// Kernel-virtual address of `offset` inside memory BAR `index`, if the
    /// BAR is assigned, inside the HHDM, and covers `offset + len`.
    pub fn bar_pointer(&self, index: usize, offset: u64, len: u64) -> Option<*mut u8> {
        match self.bars.get(index)? {
            Bar::Memory { address, size, .. }
                if *address != 0
                    && offset.checked_add(len)? <= *size
                    && address + size <= HHDM_MAPPED_LIMIT =>
            {
                Some(crate::memory::phys_to_virt(crate::memory::PhysAddr::new(
                    address + offset,
                )))
            }
            _ => None,
        }
    }

    /// Turns on memory decoding and bus mastering (DMA), and turns off the
    /// legacy INTx line (this kernel uses MSI-X only).
    pub fn enable_bus_master(&self) {
        self.address
            .set_command_bits(COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE);
    }

    /// A short human name for the log.
    pub fn name(&self) -> &'static str {
        match (self.vendor, self.device, self.class, self.subclass) {
            (0x1af4, 0x1041, _, _) | (0x1af4, 0x1000, _, _) => "virtio-net",
            (0x1af4, 0x1042, _, _) | (0x1af4, 0x1001, _, _) => "virtio-blk",
            (0x1af4, _, _, _) => "virtio",
            (_, _, 0x06, 0x00) => "host bridge",
            (_, _, 0x06, 0x01) => "ISA bridge",
            (_, _, 0x01, _) => "storage",
            (_, _, 0x02, _) => "network",
            (_, _, 0x03, _) => "display",
            (_, _, 0x06, _) => "bridge",
            _ => "device",
        }
    }
}

/// Decodes all six BARs (sizing each by writing all ones, then restoring).
/// Memory decoding is off while sizing so no half-written BAR decodes.
fn read_bars(address: Address) -> [Bar; 6] {
    let mut bars = [Bar::None; 6];
    let command = address.read16(OFFSET_COMMAND);
    address.write32(OFFSET_COMMAND, (command & !0x3) as u32);
    let mut index = 0;
    while index < 6 {
        let offset = OFFSET_BAR0 + 4 * index as u16;
        let low = address.read32(offset);
        address.write32(offset, 0xFFFF_FFFF);
        let low_mask = address.read32(offset);
        address.write32(offset, low);
        if low & 1 == 1 {
            let mask = low_mask & !0x3;
            if mask != 0 {
                bars[index] = Bar::Io {
                    port: low & !0x3,
                    size: (!mask).wrapping_add(1) & 0xFFFF,
                };
            }
            index += 1;
            continue;
        }
        let is_64bit = (low >> 1) & 0x3 == 0x2;
        let (base, mask) = if is_64bit && index < 5 {
            let high_offset = offset + 4;
            let high = address.read32(high_offset);
            address.write32(high_offset, 0xFFFF_FFFF);
            let high_mask = address.read32(high_offset);
            address.write32(high_offset, high);
            (
                (high as u64) << 32 | (low & !0xF) as u64,
                (high_mask as u64) << 32 | (low_mask & !0xF) as u64,
            )
        } else {
            (
                (low & !0xF) as u64,
                0xFFFF_FFFF_0000_0000 | (low_mask & !0xF) as u64,
            )
        };
        if mask & 0xFFFF_FFFF != 0 || (is_64bit && mask != 0) {
            bars[index] = Bar::Memory {
                address: base,
                size: (!mask).wrapping_add(1),
                is_64bit,
            };
        }
        index += if is_64bit { 2 } else { 1 };
    }
    address.write32(OFFSET_COMMAND, command as u32);
    bars
}

/// Walks the capabilities list (bounded: at most 48 entries, offsets in
/// 0x40..0x100, so a looping list cannot hang the scan).
fn read_capabilities(address: Address) -> Vec<(u8, u16)> {
    let mut caps = Vec::new();
    if address.read16(OFFSET_STATUS) & STATUS_CAPABILITIES == 0 {
        return caps;
    }
    let mut offset = (address.read8(OFFSET_CAPABILITIES) & 0xFC) as u16;
    while offset >= 0x40 && caps.len() < 48 {
        let header = address.read16(offset);
        caps.push((header as u8, offset));
        offset = ((header >> 8) as u8 & 0xFC) as u16;
    }
    caps
}

fn probe(address: Address) -> Option<Function> {
    let id = address.read32(OFFSET_VENDOR_DEVICE);
    let vendor = id as u16;
    if vendor == 0xFFFF {
        return None;
    }
    let class = address.read32(OFFSET_CLASS);
    Some(Function {
        address,
        vendor,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        bars: read_bars(address),
        capabilities: read_capabilities(address),
    })
}

/// Scans every bus, device and function (brute force: 256 buses is cheap
/// next to a boot, and it needs no bridge walking).  Logs one line per
/// function found.
pub fn scan() -> Vec<Function> {
    let mut found = Vec::new();
    for bus in 0..=255u8 {
        for device in 0..32u8 {
            let first = Address {
                bus,
                device,
                function: 0,
            };
            let Some(function0) = probe(first) else {
                continue;
            };
            let multifunction = first.read8(OFFSET_HEADER_TYPE) & 0x80 != 0;
            found.push(function0);
            if multifunction {
                for function in 1..8u8 {
                    if let Some(f) = probe(Address {
                        bus,
                        device,
                        function,
                    }) {
                        found.push(f);
                    }
                }
            }
        }
    }
    for f in &found {
        log::info!(
            "pci: {} {:04x}:{:04x} {}",
            f.address,
            f.vendor,
            f.device,
            f.name()
        );
        for (index, bar) in f.bars.iter().enumerate() {
            match bar {
                Bar::Memory {
                    address,
                    size,
                    is_64bit,
                } => log::debug!(
                    "pci:   BAR{} memory{} {:#x} size {:#x}",
                    index,
                    if *is_64bit { "64" } else { "32" },
                    address,
                    size
                ),
                Bar::Io { port, size } => {
                    log::debug!("pci:   BAR{} io {:#x} size {:#x}", index, port, size)
                }
                Bar::None => {}
            }
        }
    }
    found
}

/// An MSI-X capability whose table is mapped.
pub struct MsiX {
    address: Address,
    cap_offset: u16,
    table: *mut u32,
    entries: u16,
}

// SAFETY: the table pointer is device memory in the HHDM, valid for the
// kernel's life; entries are written with volatile stores, and each entry is
// programmed by one owner (the driver that claimed the function).
unsafe impl Send for MsiX {}
// SAFETY: as for Send; concurrent mask/unmask of *different* entries touch
// different dwords.
unsafe impl Sync for MsiX {}

/// Why MSI-X could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiXError {
    NoCapability,
    /// The table's BAR is unassigned, above 4 GiB, or too small.
    TableNotMapped,
}

impl MsiX {
    /// Finds and maps the MSI-X table of `function` (does not enable it).
    pub fn new(function: &Function) -> Result<MsiX, MsiXError> {
        let cap_offset = function
            .capabilities_with_id(CAP_MSIX)
            .next()
            .ok_or(MsiXError::NoCapability)?;
        let address = function.address;
        let control = address.read16(cap_offset + 2);
        let entries = (control & 0x7FF) + 1;
        let table_word = address.read32(cap_offset + 4);
        let bir = (table_word & 0x7) as usize;
        let table_offset = (table_word & !0x7) as u64;
        let table = function
            .bar_pointer(bir, table_offset, entries as u64 * MSIX_ENTRY_BYTES)
            .ok_or(MsiXError::TableNotMapped)?;
        Ok(MsiX {
            address,
            cap_offset,
            table: table.cast(),
            entries,
        })
    }

    /// Entries in the table.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    fn entry_word(&self, entry: u16, word: usize) -> *mut u32 {
        assert!(entry < self.entries, "MSI-X entry {} out of range", entry);
        // SAFETY: in bounds of the mapped table (checked just above).
        unsafe { self.table.add(entry as usize * 4 + word) }
    }

    /// Points `entry` at `vector` on the CPU with local APIC id `apic_id`
    /// (fixed delivery, edge), left masked.
    pub fn program(&self, entry: u16, apic_id: u32, vector: u8) {
        let message_address = MSI_ADDRESS_BASE | ((apic_id as u64 & 0xFF) << 12);
        // SAFETY: the four dwords of one table entry (see `entry_word`);
        // volatile because this is device memory.
        unsafe {
            self.entry_word(entry, 3).write_volatile(MSIX_ENTRY_MASKED);
            self.entry_word(entry, 0)
                .write_volatile(message_address as u32);
            self.entry_word(entry, 1)
                .write_volatile((message_address >> 32) as u32);
            self.entry_word(entry, 2).write_volatile(vector as u32);
        }
    }

    /// Masks (`true`) or unmasks one entry.
    pub fn set_masked(&self, entry: u16, masked: bool) {
        let control = if masked { MSIX_ENTRY_MASKED } else { 0 };
        // SAFETY: the vector-control dword of an in-range entry.
        unsafe { self.entry_word(entry, 3).write_volatile(control) };
    }

    /// Enables MSI-X for the function (function mask off).
    pub fn enable(&self) {
        let control = self.address.read16(self.cap_offset + 2);
        self.address.write16(
            self.cap_offset + 2,
            (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK,
        );
    }
}
