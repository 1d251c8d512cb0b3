//! The Limine protocol side: finding the base revision tag and the requests
//! in the loaded kernel image, and writing the responses.
//!
//! Invariants: requests are found only at 8-byte aligned offsets of the
//! loaded image (between the start/end markers when the kernel has them); a
//! request ID seen twice stops the boot.  Responses and everything they
//! point to live in one bootloader-reclaimable [`Arena`]; every pointer
//! written for the kernel is an HHDM address (base revisions 0..=2).
//! Unknown requests are left untouched (response stays NULL).  Must not:
//! write anywhere in the kernel image except the base revision tag and the
//! `response` words of recognised requests.

use crate::fail;
use crate::phys::{self, MemType, PhysMem};

/// Start of the higher-half direct map.
pub const HHDM_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Highest base revision this loader implements.
pub const MAX_BASE_REVISION: u64 = 2;

/// The GDT handed to the kernel (and used by the loader's own stubs):
/// null, 16-bit code/data, 32-bit code/data, 64-bit code (0x28), 64-bit data (0x30).
pub const LIMINE_GDT: [u64; 7] = [
    0,
    0x0000_9b00_0000_ffff,
    0x0000_9300_0000_ffff,
    0x00cf_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
];

const COMMON_MAGIC: [u64; 2] = [0xc7b1_dd30_df4c_8b88, 0x0a82_e883_a194_f07b];
const BASE_REVISION_MAGIC: [u64; 2] = [0xf956_2b2d_5c95_a6c8, 0x6a7b_3849_4453_6bdc];
const START_MARKER: [u64; 4] = [
    0xf6b8_f4b3_9de7_d1ae,
    0xfab9_1a69_40fc_b9cf,
    0x785c_6ed0_15d3_e316,
    0x181e_920a_7852_b9d9,
];
const END_MARKER: [u64; 2] = [0xadc0_e053_1bb1_0d03, 0x9572_709f_3176_4c62];

/// The requests this loader answers, in the order of [`Kind::ALL`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    BootloaderInfo,
    FirmwareType,
    StackSize,
    Hhdm,
    PagingMode,
    Mp,
    MemoryMap,
    EntryPoint,
    ExecutableFile,
    Modules,
    Rsdp,
    ExecutableAddress,
    ExecutableCmdline,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::BootloaderInfo,
        Kind::FirmwareType,
        Kind::StackSize,
        Kind::Hhdm,
        Kind::PagingMode,
        Kind::Mp,
        Kind::MemoryMap,
        Kind::EntryPoint,
        Kind::ExecutableFile,
        Kind::Modules,
        Kind::Rsdp,
        Kind::ExecutableAddress,
        Kind::ExecutableCmdline,
    ];

    /// The two request-specific ID words.
    fn id(self) -> [u64; 2] {
        match self {
            Kind::BootloaderInfo => [0xf550_38d8_e2a1_202f, 0x2794_26fc_f5f5_9740],
            Kind::FirmwareType => [0x8c2f_75d9_0bef_28a8, 0x7045_a468_8eac_00c3],
            Kind::StackSize => [0x224e_f046_0a8e_8926, 0xe1cb_0fc2_5f46_ea3d],
            Kind::Hhdm => [0x48dc_f1cb_8ad2_b852, 0x6398_4e95_9a98_244b],
            Kind::PagingMode => [0x95c1_a0ed_ab09_44cb, 0xa4e5_cb38_42f7_488a],
            Kind::Mp => [0x95a6_7b81_9a1b_857e, 0xa0b6_1b72_3b6a_73e0],
            Kind::MemoryMap => [0x67cf_3d9d_378a_806f, 0xe304_acdf_c50c_3c62],
            Kind::EntryPoint => [0x13d8_6c03_5a1c_d3e1, 0x2b0c_aa89_d8f3_026a],
            Kind::ExecutableFile => [0xad97_e90e_83f1_ed67, 0x31eb_5d1c_5ff2_3b69],
            Kind::Modules => [0x3e7e_2797_02be_32af, 0xca1c_4f3b_d128_0cee],
            Kind::Rsdp => [0xc5e7_7b6b_397e_7b43, 0x2763_7845_accd_cf3c],
            Kind::ExecutableAddress => [0x71ba_7686_3cc5_5f63, 0xb264_4a48_c516_a487],
            Kind::ExecutableCmdline => [0x4b16_1536_e598_651e, 0xb390_ad4a_2f1f_303a],
        }
    }
}

/// Where the kernel's requests are, as physical addresses of the request
/// structures (the image is loaded, so these are writable loader memory).
pub struct Requests {
    found: [Option<u64>; Kind::ALL.len()],
    /// Physical address of the base revision tag, if any.
    pub base_revision_tag: Option<u64>,
    /// Requests with a common-magic ID this loader does not know.
    pub unknown: usize,
}

fn read_u64(addr: u64) -> u64 {
    // SAFETY: callers pass 8-byte aligned addresses inside the loaded
    // kernel image, which this loader allocated below 4 GiB.
    unsafe { (addr as *const u64).read() }
}
fn write_u64(addr: u64, value: u64) {
    // SAFETY: as for `read_u64`; the image is loader-owned memory.
    unsafe { (addr as *mut u64).write(value) }
}

impl Requests {
    /// Scan the loaded image at physical `base` of `len` bytes.
    pub fn scan(base: u64, len: u64) -> Requests {
        let words = len / 8;
        let word = |i: u64| read_u64(base + i * 8);
        let matches = |i: u64, pattern: &[u64]| {
            i + pattern.len() as u64 <= words
                && pattern
                    .iter()
                    .enumerate()
                    .all(|(k, &p)| word(i + k as u64) == p)
        };
        let mut req = Requests {
            found: [None; Kind::ALL.len()],
            base_revision_tag: None,
            unknown: 0,
        };
        let (mut from, mut to) = (0, words);
        if let Some(start) = (0..words).find(|&i| matches(i, &START_MARKER)) {
            from = start + 4;
            if let Some(end) = (from..words).find(|&i| matches(i, &END_MARKER)) {
                to = end;
            }
        }
        for i in 0..words {
            if matches(i, &BASE_REVISION_MAGIC) && i + 2 < words {
                if req.base_revision_tag.is_some() {
                    fail!("kernel has two base revision tags");
                }
                req.base_revision_tag = Some(base + i * 8);
            }
        }
        let mut i = from;
        while i + 4 <= to {
            if !matches(i, &COMMON_MAGIC) {
                i += 1;
                continue;
            }
            let id = [word(i + 2), word(i + 3)];
            match Kind::ALL.iter().position(|k| k.id() == id) {
                Some(k) => {
                    if req.found[k].is_some() {
                        fail!("kernel has two {:?} requests", Kind::ALL[k]);
                    }
                    req.found[k] = Some(base + i * 8);
                }
                None => req.unknown += 1,
            }
            i += 4;
        }
        req
    }

    /// Physical address of the request of `kind`, if the kernel made one.
    pub fn get(&self, kind: Kind) -> Option<u64> {
        self.found[Kind::ALL
            .iter()
            .position(|&k| k == kind)
            .expect("kind in ALL")]
    }

    /// Number of recognised requests.
    pub fn count(&self) -> usize {
        self.found.iter().flatten().count()
    }

    /// The `index`-th u64 after the response pointer of `kind`'s request
    /// (request-specific fields start at byte 48).
    pub fn field(&self, kind: Kind, index: u64) -> Option<u64> {
        self.get(kind).map(|r| read_u64(r + 48 + index * 8))
    }

    /// Check the base revision tag and mark it as supported.  Returns the
    /// revision the kernel is loaded with.  With `report_loaded` the second
    /// tag word is overwritten with that revision (later protocol
    /// revisions); without it the second word is left alone, as Limine's
    /// 7.x/8.x releases do.
    pub fn accept_base_revision(&self, report_loaded: bool) -> u64 {
        let Some(tag) = self.base_revision_tag else {
            return 0;
        };
        let wanted = read_u64(tag + 16);
        if wanted > MAX_BASE_REVISION {
            fail!(
                "unsupported base revision {wanted} (this loader supports 0..={MAX_BASE_REVISION})"
            );
        }
        // Supported: the revision word becomes 0.
        write_u64(tag + 16, 0);
        if report_loaded {
            write_u64(tag + 8, wanted);
        }
        wanted
    }

    /// Point `kind`'s request at the response at physical `response`.
    pub fn respond(&self, kind: Kind, response: u64) {
        if let Some(r) = self.get(kind) {
            write_u64(r + 40, hhdm(response));
        }
    }
}

/// HHDM virtual address of physical `phys`.
pub fn hhdm(phys: u64) -> u64 {
    phys + HHDM_OFFSET
}

/// Bump allocator for response structures in bootloader-reclaimable memory.
pub struct Arena {
    base: u64,
    used: u64,
    size: u64,
}

impl Arena {
    pub fn new(mem: &mut PhysMem, size: u64) -> Arena {
        Arena {
            base: mem.alloc(size, MemType::BootloaderReclaimable),
            used: 0,
            size: phys::align_up(size, phys::PAGE),
        }
    }

    /// `len` zeroed bytes aligned to `align`; physical address.
    pub fn alloc(&mut self, len: u64, align: u64) -> u64 {
        let start = phys::align_up(self.used, align);
        if start + len > self.size {
            fail!("internal: response arena full");
        }
        self.used = start + len;
        self.base + start
    }

    /// Copy `value` into the arena; physical address.
    pub fn put<T>(&mut self, value: T) -> u64 {
        let addr = self.alloc(core::mem::size_of::<T>() as u64, 16);
        // SAFETY: fresh, aligned, loader-owned arena memory of T's size.
        unsafe { (addr as *mut T).write(value) };
        addr
    }

    /// Copy `s` with a terminating NUL; physical address.
    pub fn put_str(&mut self, s: &str) -> u64 {
        let addr = self.alloc(s.len() as u64 + 1, 1);
        // SAFETY: fresh loader-owned arena memory of len + 1 bytes (zeroed,
        // so the NUL is already there).
        unsafe { phys::bytes_mut(addr, s.len() as u64).copy_from_slice(s.as_bytes()) };
        addr
    }
}

/// `struct limine_file` (revision 0).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct File {
    pub revision: u64,
    pub address: u64,
    pub size: u64,
    pub path: u64,
    pub string: u64,
    pub media_type: u32,
    pub unused: u32,
    pub tftp_ip: u32,
    pub tftp_port: u32,
    pub partition_index: u32,
    pub mbr_disk_id: u32,
    pub gpt_disk_uuid: [u8; 16],
    pub gpt_part_uuid: [u8; 16],
    pub part_uuid: [u8; 16],
}

impl File {
    /// A file at HHDM address `address` with HHDM string pointers.
    pub fn new(address: u64, size: u64, path: u64, string: u64) -> File {
        File {
            revision: 0,
            address,
            size,
            path,
            string,
            media_type: 0,
            unused: 0,
            tftp_ip: 0,
            tftp_port: 0,
            partition_index: 0,
            mbr_disk_id: 0,
            gpt_disk_uuid: [0; 16],
            gpt_part_uuid: [0; 16],
            part_uuid: [0; 16],
        }
    }
}

/// `struct limine_mp_info` (x86_64).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct MpInfo {
    pub processor_id: u32,
    pub lapic_id: u32,
    pub reserved: u64,
    pub goto_address: u64,
    pub extra_argument: u64,
}

/// `struct limine_mp_response` (x86_64).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct MpResponse {
    pub revision: u64,
    pub flags: u32,
    pub bsp_lapic_id: u32,
    pub cpu_count: u64,
    pub cpus: u64,
}

/// Responses made of a revision word and up to three u64 fields.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Words<const N: usize> {
    pub revision: u64,
    pub fields: [u64; N],
}

/// `struct limine_memmap_entry`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct MemmapEntry {
    pub base: u64,
    pub length: u64,
    pub kind: u64,
}
