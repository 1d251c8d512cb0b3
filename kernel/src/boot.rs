//! Limine boot protocol: the kernel's requests and typed access to the answers.
//!
//! Owns every Limine request static (base revision 2, placed between the
//! start/end markers in the `.requests*` sections that `linker.ld` keeps).
//! Invariant: the bootloader fills the responses before `kernel_entry` runs
//! and nothing writes them afterwards, so shared references are fine.
//! Must not: interpret the responses beyond what the protocol promises, or
//! depend on which loader (Limine or the built-in one) answered.

use core::ffi::CStr;
use limine::request::{
    BootloaderInfoRequest, ExecutableAddressRequest, ExecutableCmdlineRequest,
    ExecutableFileRequest, HhdmRequest, MemoryMapRequest, ModuleRequest, MpRequest,
    RequestsEndMarker, RequestsStartMarker, RsdpRequest, StackSizeRequest,
};
use limine::BaseRevision;

/// The protocol revision we are written against (supported by Limine 7.x/8.x
/// and by the built-in loader). Revision 2 keeps the first 4 GiB in the HHDM,
/// which is where the local APIC, the IOAPIC and the ACPI tables live.
pub const REQUESTED_BASE_REVISION: u64 = 2;

/// Stack the loader gives the BSP and every AP; it becomes the CPU's idle
/// thread stack, so make it roomy.
pub const BOOT_STACK_SIZE: u64 = 256 * 1024;

#[used]
#[unsafe(link_section = ".requests_start_marker")]
static START_MARKER: RequestsStartMarker = RequestsStartMarker::new();

#[used]
#[unsafe(link_section = ".requests")]
static BASE_REVISION: BaseRevision = BaseRevision::with_revision(REQUESTED_BASE_REVISION);

#[used]
#[unsafe(link_section = ".requests")]
static BOOTLOADER_INFO: BootloaderInfoRequest = BootloaderInfoRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static STACK_SIZE: StackSizeRequest = StackSizeRequest::new().with_size(BOOT_STACK_SIZE);

#[used]
#[unsafe(link_section = ".requests")]
static HHDM: HhdmRequest = HhdmRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static MEMORY_MAP: MemoryMapRequest = MemoryMapRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static EXECUTABLE_FILE: ExecutableFileRequest = ExecutableFileRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static EXECUTABLE_CMDLINE: ExecutableCmdlineRequest = ExecutableCmdlineRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static EXECUTABLE_ADDRESS: ExecutableAddressRequest = ExecutableAddressRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static RSDP: RsdpRequest = RsdpRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static MODULES: ModuleRequest = ModuleRequest::new();

#[used]
#[unsafe(link_section = ".requests")]
static MP: MpRequest = MpRequest::new();

#[used]
#[unsafe(link_section = ".requests_end_marker")]
static END_MARKER: RequestsEndMarker = RequestsEndMarker::new();

/// Why the boot information is unusable.
#[derive(Debug, Clone, Copy)]
pub enum BootError {
    /// The base revision tag is as the kernel left it: the loader is not a
    /// Limine-protocol loader, or one too old to know base revisions.
    NotLimine,
    /// The loader speaks Limine but not revision 2; it reports the revision
    /// it loaded the kernel with.
    RevisionUnsupported(u64),
    /// A response the kernel cannot run without is missing.
    Missing(&'static str),
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootError::NotLimine => write!(
                f,
                "loader did not answer the Limine base revision tag (not a Limine loader, \
                 or one without base revision {} support)",
                REQUESTED_BASE_REVISION
            ),
            BootError::RevisionUnsupported(r) => write!(
                f,
                "loader does not support Limine base revision {} (it loaded the kernel \
                 with revision {})",
                REQUESTED_BASE_REVISION, r
            ),
            BootError::Missing(what) => write!(f, "loader gave no {} response", what),
        }
    }
}

/// The loader's answer to the base revision tag, when it supports ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// The revision the loader says it loaded the kernel with.  Loaders of
    /// the protocol's later revisions write it; Limine 7.x/8.x releases only
    /// mark the request supported and leave it out (`None`).
    pub loaded: Option<u64>,
}

impl Handshake {
    /// The revision the responses follow: the loaded one when reported,
    /// else the requested one (a loader that supports it answers in it).
    pub fn revision(&self) -> u64 {
        self.loaded.unwrap_or(REQUESTED_BASE_REVISION)
    }
}

impl core::fmt::Display for Handshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "base revision {} supported ", REQUESTED_BASE_REVISION)?;
        match self.loaded {
            Some(r) => write!(f, "(loader reported loaded revision {})", r),
            None => write!(f, "(loader did not report the loaded revision)"),
        }
    }
}

/// The base revision handshake as pure logic over the tag's answer:
/// `supported` is `BaseRevision::is_supported()` (third word zeroed),
/// `loaded` is `BaseRevision::loaded_revision()` (second word overwritten).
/// `is_supported()` is the handshake; the loaded revision is information.
pub fn classify_revision(supported: bool, loaded: Option<u64>) -> Result<Handshake, BootError> {
    match (supported, loaded) {
        (true, loaded) => Ok(Handshake { loaded }),
        (false, Some(r)) => Err(BootError::RevisionUnsupported(r)),
        (false, None) => Err(BootError::NotLimine),
    }
}

/// Checks the base revision handshake. Must be the first use of any response.
pub fn check_revision() -> Result<Handshake, BootError> {
    classify_revision(
        BASE_REVISION.is_supported(),
        BASE_REVISION.loaded_revision(),
    )
}

/// Bootloader name and version, when the loader answered.
pub fn bootloader() -> Option<(&'static str, &'static str)> {
    BOOTLOADER_INFO
        .get_response()
        .map(|r| (r.name(), r.version()))
}

/// Offset of the higher-half direct map (virtual = physical + offset).
pub fn hhdm_offset() -> Result<u64, BootError> {
    HHDM.get_response()
        .map(|r| r.offset())
        .ok_or(BootError::Missing("HHDM"))
}

/// The memory map, sorted by base address.
pub fn memory_map() -> Result<&'static [&'static limine::memory_map::Entry], BootError> {
    MEMORY_MAP
        .get_response()
        .map(|r| r.entries())
        .ok_or(BootError::Missing("memory map"))
}

/// The kernel command line: the executable-cmdline response if the loader
/// has it, else the string attached to the executable file. Empty if neither
/// exists or the string is not UTF-8 (the caller logs that case).
pub fn cmdline() -> Result<&'static str, core::str::Utf8Error> {
    let raw: &'static CStr = if let Some(r) = EXECUTABLE_CMDLINE.get_response() {
        r.cmdline()
    } else if let Some(r) = EXECUTABLE_FILE.get_response() {
        r.file().string()
    } else {
        c""
    };
    raw.to_str()
}

/// Physical and virtual base of the loaded kernel image.
pub fn kernel_address() -> Option<(u64, u64)> {
    EXECUTABLE_ADDRESS
        .get_response()
        .map(|r| (r.physical_base(), r.virtual_base()))
}

/// Address of the ACPI RSDP as the loader reported it (an HHDM virtual
/// address for revisions below 3, physical from revision 3 on).
pub fn rsdp_address() -> Option<usize> {
    RSDP.get_response().map(|r| r.address())
}

/// The boot modules (the initramfs, when given).
pub fn modules() -> &'static [&'static limine::file::File] {
    MODULES.get_response().map(|r| r.modules()).unwrap_or(&[])
}

/// The bytes of a boot module (e.g. the initramfs), read-only.
pub fn module_bytes(module: &'static limine::file::File) -> &'static [u8] {
    // SAFETY: the loader gives the module's address and size; the bytes
    // stay mapped (bootloader-reclaimable memory is never handed to `mm`)
    // and are never written.
    unsafe { core::slice::from_raw_parts(module.addr(), module.size() as usize) }
}

/// The MP (SMP) response: every CPU, the BSP included.
pub fn mp() -> Option<&'static limine::response::MpResponse> {
    MP.get_response()
}
