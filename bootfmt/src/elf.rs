//! ELF64 little-endian x86_64 executables: validated header, program headers
//! and section lookup by name.
//!
//! Used by the built-in loader for the kernel (ET_EXEC) and meant to be reused
//! by the kernel for user programs (ET_EXEC and static-pie ET_DYN).
//!
//! Invariants: [`parse`] checks everything a loader relies on before it
//! returns: the header fields, that the program header table lies inside the
//! file, that every segment's file range lies inside the file, that
//! `filesz <= memsz`, that no PT_LOAD's virtual range wraps around, and that
//! no two PT_LOAD segments overlap in virtual memory.  After a successful
//! parse, [`Elf64::program_headers`] and [`Elf64::segment_data`] cannot fail.
//! Section headers are optional and checked lazily by
//! [`Elf64::section_by_name`].  Must not: apply relocations or map memory.

use core::fmt;

/// `e_type`: executable at fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `e_type`: shared object / position-independent executable.
pub const ET_DYN: u16 = 3;
/// `e_machine` of x86_64.
pub const EM_X86_64: u16 = 62;
/// Program header types.
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_TLS: u32 = 7;
/// Program header flags.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const SHDR_LEN: usize = 64;

/// Why bytes are not an acceptable ELF64 x86_64 executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// No `\x7fELF` magic (or shorter than the 64-byte header).
    NotElf,
    /// ELF class is not 64-bit.
    Not64Bit,
    /// Data encoding is not little-endian.
    NotLittleEndian,
    /// `e_machine` is not x86_64.
    NotX86_64 { machine: u16 },
    /// `e_version` or `EI_VERSION` is not 1.
    BadVersion,
    /// `e_phentsize` / `e_shentsize` differ from the ELF64 sizes.
    BadHeaderSize,
    /// The program header table lies (partly) outside the file.
    ProgramHeadersOutOfRange { offset: u64, count: u16 },
    /// Segment `index`'s file range lies outside the file.
    SegmentOutOfRange {
        index: usize,
        offset: u64,
        filesz: u64,
    },
    /// Segment `index` has `filesz > memsz`.
    FileszExceedsMemsz {
        index: usize,
        filesz: u64,
        memsz: u64,
    },
    /// PT_LOAD segment `index`'s `vaddr + memsz` overflows.
    VaddrOverflow {
        index: usize,
        vaddr: u64,
        memsz: u64,
    },
    /// PT_LOAD segments `first` and `second` overlap in virtual memory.
    OverlappingSegments { first: usize, second: usize },
    /// The section header table or the section name table is out of range.
    SectionHeadersOutOfRange,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::NotElf => write!(f, "elf: not an ELF file (no \\x7fELF magic)"),
            ElfError::Not64Bit => write!(f, "elf: not a 64-bit ELF file"),
            ElfError::NotLittleEndian => write!(f, "elf: not a little-endian ELF file"),
            ElfError::NotX86_64 { machine } => {
                write!(f, "elf: machine {machine} is not x86_64 ({EM_X86_64})")
            }
            ElfError::BadVersion => write!(f, "elf: unsupported ELF version (expected 1)"),
            ElfError::BadHeaderSize => write!(f, "elf: unexpected program/section header entry size"),
            ElfError::ProgramHeadersOutOfRange { offset, count } => write!(
                f,
                "elf: program header table ({count} entries at offset {offset:#x}) lies outside the file"
            ),
            ElfError::SegmentOutOfRange { index, offset, filesz } => write!(
                f,
                "elf: segment {index} (file offset {offset:#x}, size {filesz:#x}) lies outside the file"
            ),
            ElfError::FileszExceedsMemsz { index, filesz, memsz } => write!(
                f,
                "elf: segment {index} has filesz {filesz:#x} larger than memsz {memsz:#x}"
            ),
            ElfError::VaddrOverflow { index, vaddr, memsz } => write!(
                f,
                "elf: segment {index} at {vaddr:#x} with size {memsz:#x} wraps around the address space"
            ),
            ElfError::OverlappingSegments { first, second } => {
                write!(f, "elf: loadable segments {first} and {second} overlap in virtual memory")
            }
            ElfError::SectionHeadersOutOfRange => {
                write!(f, "elf: section header table or section names lie outside the file")
            }
        }
    }
}

/// One program header, fields as in the ELF64 `Elf64_Phdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl ProgramHeader {
    /// Size in bytes of one ELF64 program header table entry.
    pub const SIZE: usize = PHDR_LEN;

    /// Decodes one little-endian `Elf64_Phdr` (no validation: that is
    /// [`parse`]'s job).  For callers that read the table piece by piece
    /// instead of holding the whole file (the kernel's exec).
    ///
    /// Panics if `entry` is shorter than [`ProgramHeader::SIZE`].
    pub fn from_bytes(entry: &[u8]) -> ProgramHeader {
        ProgramHeader {
            p_type: u32_at(entry, 0),
            flags: u32_at(entry, 4),
            offset: u64_at(entry, 8),
            vaddr: u64_at(entry, 16),
            paddr: u64_at(entry, 24),
            filesz: u64_at(entry, 32),
            memsz: u64_at(entry, 40),
            align: u64_at(entry, 48),
        }
    }

    /// Whether this is a PT_LOAD segment.
    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }
    /// End of the segment's virtual range (exclusive); checked by [`parse`]
    /// for PT_LOAD segments, saturating for others.
    pub fn vaddr_end(&self) -> u64 {
        self.vaddr.saturating_add(self.memsz)
    }
}

/// One section header, with its name resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section<'a> {
    pub name: &'a str,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
}

/// A validated ELF64 file.
#[derive(Debug, Clone, Copy)]
pub struct Elf64<'a> {
    bytes: &'a [u8],
    /// `e_type` (ET_EXEC, ET_DYN, ...).
    pub e_type: u16,
    /// Entry point virtual address.
    pub entry: u64,
    phoff: usize,
    phnum: usize,
    shoff: u64,
    shnum: u16,
    shentsize: u16,
    shstrndx: u16,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// `bytes[offset .. offset + len]` if it lies inside `bytes`.
fn range(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// Parse and validate an ELF64 little-endian x86_64 file.
pub fn parse(bytes: &[u8]) -> Result<Elf64<'_>, ElfError> {
    if bytes.len() < EHDR_LEN || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if bytes[4] != 2 {
        return Err(ElfError::Not64Bit);
    }
    if bytes[5] != 1 {
        return Err(ElfError::NotLittleEndian);
    }
    if bytes[6] != 1 || u32_at(bytes, 20) != 1 {
        return Err(ElfError::BadVersion);
    }
    let machine = u16_at(bytes, 18);
    if machine != EM_X86_64 {
        return Err(ElfError::NotX86_64 { machine });
    }
    let phoff = u64_at(bytes, 32);
    let phentsize = u16_at(bytes, 54);
    let phnum = u16_at(bytes, 56);
    let shentsize = u16_at(bytes, 58);
    if phnum != 0 && usize::from(phentsize) != PHDR_LEN {
        return Err(ElfError::BadHeaderSize);
    }
    range(bytes, phoff, u64::from(phnum) * PHDR_LEN as u64).ok_or(
        ElfError::ProgramHeadersOutOfRange {
            offset: phoff,
            count: phnum,
        },
    )?;
    let elf = Elf64 {
        bytes,
        e_type: u16_at(bytes, 16),
        entry: u64_at(bytes, 24),
        phoff: phoff as usize, // fits: checked by `range` above
        phnum: usize::from(phnum),
        shoff: u64_at(bytes, 40),
        shnum: u16_at(bytes, 60),
        shentsize,
        shstrndx: u16_at(bytes, 62),
    };

    for (index, ph) in elf.program_headers().enumerate() {
        if range(bytes, ph.offset, ph.filesz).is_none() {
            return Err(ElfError::SegmentOutOfRange {
                index,
                offset: ph.offset,
                filesz: ph.filesz,
            });
        }
        if ph.filesz > ph.memsz {
            return Err(ElfError::FileszExceedsMemsz {
                index,
                filesz: ph.filesz,
                memsz: ph.memsz,
            });
        }
        if ph.is_load() && ph.vaddr.checked_add(ph.memsz).is_none() {
            return Err(ElfError::VaddrOverflow {
                index,
                vaddr: ph.vaddr,
                memsz: ph.memsz,
            });
        }
    }
    // Pairwise overlap check of PT_LOAD segments; executables have a handful.
    for (i, a) in elf
        .program_headers()
        .enumerate()
        .filter(|(_, p)| p.is_load() && p.memsz > 0)
    {
        for (j, b) in elf
            .program_headers()
            .enumerate()
            .skip(i + 1)
            .filter(|(_, p)| p.is_load() && p.memsz > 0)
        {
            if a.vaddr < b.vaddr_end() && b.vaddr < a.vaddr_end() {
                return Err(ElfError::OverlappingSegments {
                    first: i,
                    second: j,
                });
            }
        }
    }
    Ok(elf)
}

impl<'a> Elf64<'a> {
    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// All program headers in file order.
    pub fn program_headers(&self) -> impl Iterator<Item = ProgramHeader> + 'a {
        let table = &self.bytes[self.phoff..self.phoff + self.phnum * PHDR_LEN];
        table.chunks_exact(PHDR_LEN).map(ProgramHeader::from_bytes)
    }

    /// The PT_LOAD segments only.
    pub fn load_segments(&self) -> impl Iterator<Item = ProgramHeader> + 'a {
        self.program_headers().filter(ProgramHeader::is_load)
    }

    /// The file bytes of a segment of this file (`filesz` bytes).
    pub fn segment_data(&self, ph: &ProgramHeader) -> &'a [u8] {
        range(self.bytes, ph.offset, ph.filesz).unwrap_or(&[])
    }

    /// Lowest and highest (exclusive) virtual address of the PT_LOAD
    /// segments, or `None` if there is no non-empty PT_LOAD.
    pub fn load_span(&self) -> Option<(u64, u64)> {
        self.load_segments()
            .filter(|p| p.memsz > 0)
            .fold(None, |acc, p| match acc {
                None => Some((p.vaddr, p.vaddr_end())),
                Some((lo, hi)) => Some((lo.min(p.vaddr), hi.max(p.vaddr_end()))),
            })
    }

    /// Iterate over the section headers with their names.  Errors if the
    /// section header table or the name table lies outside the file.
    pub fn sections(&self) -> Result<impl Iterator<Item = Section<'a>> + 'a, ElfError> {
        let count = if self.shoff == 0 {
            0
        } else {
            u64::from(self.shnum)
        };
        if count != 0 && usize::from(self.shentsize) != SHDR_LEN {
            return Err(ElfError::BadHeaderSize);
        }
        let table = range(self.bytes, self.shoff, count * SHDR_LEN as u64)
            .ok_or(ElfError::SectionHeadersOutOfRange)?;
        let names: &[u8] = if count == 0 {
            &[]
        } else {
            let strtab = table
                .get(usize::from(self.shstrndx) * SHDR_LEN..)
                .and_then(|s| s.get(..SHDR_LEN))
                .ok_or(ElfError::SectionHeadersOutOfRange)?;
            range(self.bytes, u64_at(strtab, 24), u64_at(strtab, 32))
                .ok_or(ElfError::SectionHeadersOutOfRange)?
        };
        Ok(table.chunks_exact(SHDR_LEN).map(move |s| {
            let name_off = u32_at(s, 0) as usize;
            let name = names
                .get(name_off..)
                .and_then(|n| n.split(|&b| b == 0).next())
                .and_then(|n| core::str::from_utf8(n).ok())
                .unwrap_or("");
            Section {
                name,
                sh_type: u32_at(s, 4),
                flags: u64_at(s, 8),
                addr: u64_at(s, 16),
                offset: u64_at(s, 24),
                size: u64_at(s, 32),
            }
        }))
    }

    /// The first section called `name`, if the file has one.
    pub fn section_by_name(&self, name: &str) -> Result<Option<Section<'a>>, ElfError> {
        Ok(self.sections()?.find(|s| s.name == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// A minimal ELF: header, `phdrs`, then 0x100 bytes of payload at 0x200,
    /// and a section table with `.text` and `.requests`.
    pub(crate) fn build(e_type: u16, phdrs: &[ProgramHeader]) -> Vec<u8> {
        let mut b = std::vec![0u8; 0x400];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&0xffff_ffff_8000_0010u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (i, p) in phdrs.iter().enumerate() {
            let o = 64 + i * 56;
            b[o..o + 4].copy_from_slice(&p.p_type.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&p.flags.to_le_bytes());
            for (k, v) in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align]
                .iter()
                .enumerate()
            {
                b[o + 8 + k * 8..o + 16 + k * 8].copy_from_slice(&v.to_le_bytes());
            }
        }
        // Section name table at 0x300, section headers at 0x320 (4 of them).
        let names = b"\0.text\0.requests\0.shstrtab\0";
        b[0x300..0x300 + names.len()].copy_from_slice(names);
        let sh = |b: &mut Vec<u8>, i: usize, name: u32, offset: u64, size: u64| {
            let o = 0x320 + i * 64;
            if o + 64 > b.len() {
                b.resize(o + 64, 0);
            }
            b[o..o + 4].copy_from_slice(&name.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&1u32.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&offset.to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&size.to_le_bytes());
        };
        sh(&mut b, 1, 1, 0x200, 0x80);
        sh(&mut b, 2, 7, 0x280, 0x80);
        sh(&mut b, 3, 17, 0x300, names.len() as u64);
        b[40..48].copy_from_slice(&0x320u64.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        b[60..62].copy_from_slice(&4u16.to_le_bytes());
        b[62..64].copy_from_slice(&3u16.to_le_bytes());
        b
    }

    pub(crate) fn load(
        vaddr: u64,
        offset: u64,
        filesz: u64,
        memsz: u64,
        flags: u32,
    ) -> ProgramHeader {
        ProgramHeader {
            p_type: PT_LOAD,
            flags,
            offset,
            vaddr,
            paddr: 0,
            filesz,
            memsz,
            align: 0x1000,
        }
    }

    #[test]
    fn parses_a_valid_file() {
        let base = 0xffff_ffff_8000_0000;
        let bytes = build(
            ET_EXEC,
            &[
                load(base, 0x200, 0x80, 0x80, PF_R | PF_X),
                load(base + 0x1000, 0x280, 0x10, 0x2000, PF_R | PF_W),
            ],
        );
        let elf = parse(&bytes).unwrap();
        assert_eq!(elf.e_type, ET_EXEC);
        assert_eq!(elf.entry, 0xffff_ffff_8000_0010);
        let segs: Vec<_> = elf.load_segments().collect();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[1].memsz, 0x2000);
        assert_eq!(elf.segment_data(&segs[1]).len(), 0x10);
        assert_eq!(elf.load_span(), Some((base, base + 0x3000)));
        let req = elf.section_by_name(".requests").unwrap().unwrap();
        assert_eq!((req.offset, req.size), (0x280, 0x80));
        assert!(elf.section_by_name(".nothing").unwrap().is_none());
    }

    #[test]
    fn only_pt_load_segments_are_loaded() {
        let base = 0xffff_ffff_8000_0000;
        let note = ProgramHeader {
            p_type: 4, // PT_NOTE
            flags: PF_R,
            offset: 0x200,
            vaddr: base + 0x10, // inside the PT_LOAD: not an overlap
            paddr: 0,
            filesz: 0x10,
            memsz: 0x10,
            align: 4,
        };
        assert!(!note.is_load());
        let bytes = build(
            ET_EXEC,
            &[
                note,
                load(base + 0x20, 0x200, 0, 0, PF_R), // empty: no overlap
                load(base, 0x200, 0x80, 0x80, PF_R | PF_X),
                note,
                load(base + 0x30, 0x200, 0, 0, PF_R),
            ],
        );
        let elf = parse(&bytes).unwrap();
        let segs: Vec<_> = elf.load_segments().collect();
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| s.is_load()));
        assert_eq!(elf.load_span(), Some((base, base + 0x80)));
    }

    #[test]
    fn errors_display_their_numbers() {
        use std::string::ToString;
        let m = ElfError::NotX86_64 { machine: 183 }.to_string();
        assert!(m.starts_with("elf: ") && m.contains("183"), "{m}");
        let m = ElfError::OverlappingSegments {
            first: 3,
            second: 7,
        }
        .to_string();
        assert!(m.contains('3') && m.contains('7'), "{m}");
        assert!(ElfError::NotElf.to_string().contains("ELF"));
    }

    #[test]
    fn header_errors() {
        let good = build(ET_EXEC, &[]);
        assert_eq!(parse(b"\x7fEL").unwrap_err(), ElfError::NotElf);
        assert_eq!(parse(&[0u8; 64]).unwrap_err(), ElfError::NotElf);
        // The 64-byte header alone (no segments) is a whole file; one byte
        // less is not.
        assert!(parse(&good[..EHDR_LEN]).is_ok());
        assert_eq!(parse(&good[..EHDR_LEN - 1]).unwrap_err(), ElfError::NotElf);
        let mut b = good.clone();
        b[4] = 1;
        assert_eq!(parse(&b).unwrap_err(), ElfError::Not64Bit);
        let mut b = good.clone();
        b[5] = 2;
        assert_eq!(parse(&b).unwrap_err(), ElfError::NotLittleEndian);
        // A program header entry size other than 56 is refused when there
        // are program headers, and ignored when there are none.
        let mut b = build(ET_EXEC, &[load(0, 0x200, 0, 0, 0)]);
        b[54] = 64;
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadHeaderSize);
        let mut b = good.clone();
        b[54] = 0;
        assert!(parse(&b).is_ok());
        // Either version field alone being wrong is refused.
        let mut b = good.clone();
        b[6] = 2;
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadVersion);
        let mut b = good.clone();
        b[20] = 2;
        assert_eq!(parse(&b).unwrap_err(), ElfError::BadVersion);
        let mut b = good.clone();
        b[18] = 3;
        assert_eq!(parse(&b).unwrap_err(), ElfError::NotX86_64 { machine: 3 });
        // Both bytes of a 16-bit field count: 0x013e is not EM_X86_64 (0x3e).
        let mut b = good.clone();
        b[19] = 1;
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::NotX86_64 { machine: 0x013e }
        );
        let mut b = build(ET_EXEC, &[load(0, 0, 0, 0, 0)]);
        b[32..40].copy_from_slice(&0x3f0u64.to_le_bytes());
        assert!(matches!(
            parse(&b).unwrap_err(),
            ElfError::ProgramHeadersOutOfRange { .. }
        ));
    }

    #[test]
    fn segment_errors() {
        let b = build(ET_EXEC, &[load(0x1000, 0x410, 0x20, 0x20, PF_R)]);
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::SegmentOutOfRange {
                index: 0,
                offset: 0x410,
                filesz: 0x20
            }
        );
        let b = build(ET_EXEC, &[load(0x1000, 0x200, 0x20, 0x10, PF_R)]);
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::FileszExceedsMemsz {
                index: 0,
                filesz: 0x20,
                memsz: 0x10
            }
        );
        let b = build(ET_EXEC, &[load(u64::MAX - 0xf, 0x200, 0x10, 0x20, PF_R)]);
        assert!(matches!(
            parse(&b).unwrap_err(),
            ElfError::VaddrOverflow { index: 0, .. }
        ));
        let b = build(
            ET_EXEC,
            &[
                load(0x1000, 0x200, 0x10, 0x1000, PF_R),
                load(0x1fff, 0x200, 0x10, 0x10, PF_R),
            ],
        );
        assert_eq!(
            parse(&b).unwrap_err(),
            ElfError::OverlappingSegments {
                first: 0,
                second: 1
            }
        );
        // Touching is fine.
        let b = build(
            ET_EXEC,
            &[
                load(0x1000, 0x200, 0x10, 0x1000, PF_R),
                load(0x2000, 0x200, 0x10, 0x10, PF_R),
            ],
        );
        assert!(parse(&b).is_ok());
        // In either order, and overlapping by one byte in either order is not.
        let b = build(
            ET_EXEC,
            &[
                load(0x2000, 0x200, 0x10, 0x10, PF_R),
                load(0x1000, 0x200, 0x10, 0x1000, PF_R),
            ],
        );
        assert!(parse(&b).is_ok());
        let b = build(
            ET_EXEC,
            &[
                load(0x2000, 0x200, 0x10, 0x10, PF_R),
                load(0x1000, 0x200, 0x10, 0x1001, PF_R),
            ],
        );
        assert!(matches!(
            parse(&b).unwrap_err(),
            ElfError::OverlappingSegments { .. }
        ));
        // A segment ending exactly at the end of the file is in range.
        let n = build(ET_EXEC, &[]).len() as u64;
        let b = build(ET_EXEC, &[load(0x1000, n - 0x10, 0x10, 0x10, PF_R)]);
        assert!(parse(&b).is_ok(), "segment ending at byte {n}");
    }

    #[test]
    fn section_table_checks() {
        let good = build(ET_EXEC, &[]);
        let names: Vec<_> = parse(&good)
            .unwrap()
            .sections()
            .unwrap()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["", ".text", ".requests", ".shstrtab"]);
        // Wrong entry size with sections present.
        let mut b = good.clone();
        b[58..60].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(
            parse(&b).unwrap().section_by_name(".text").unwrap_err(),
            ElfError::BadHeaderSize
        );
        // No section table (shoff 0): no sections, whatever the other fields say.
        b[40..48].copy_from_slice(&0u64.to_le_bytes());
        assert!(parse(&b).unwrap().sections().unwrap().next().is_none());
        // A table running past the end of the file.
        let mut b = good.clone();
        let end = b.len() as u64;
        b[40..48].copy_from_slice(&(end - 64).to_le_bytes());
        assert_eq!(
            parse(&b).unwrap().section_by_name(".text").unwrap_err(),
            ElfError::SectionHeadersOutOfRange
        );
        // The name table's own range past the end of the file.
        let mut b = good.clone();
        let strtab = 0x320 + 3 * 64;
        b[strtab + 32..strtab + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(
            parse(&b).unwrap().section_by_name(".text").unwrap_err(),
            ElfError::SectionHeadersOutOfRange
        );
    }

    #[test]
    fn load_span_covers_every_nonempty_segment() {
        let bytes = build(
            ET_EXEC,
            &[
                load(0x5000, 0x200, 0x10, 0x10, PF_R),
                load(0x1000, 0x200, 0x10, 0x800, PF_R),
                load(0x9000, 0x200, 0, 0, PF_R),
            ],
        );
        let elf = parse(&bytes).unwrap();
        assert_eq!(elf.load_span(), Some((0x1000, 0x5010)));
        assert_eq!(
            elf.segment_data(&elf.load_segments().next().unwrap()).len(),
            0x10
        );
        let empty = build(ET_EXEC, &[load(0x9000, 0x200, 0, 0, PF_R)]);
        assert_eq!(parse(&empty).unwrap().load_span(), None);
    }

    #[test]
    fn bad_section_table_is_an_error_not_a_panic() {
        let mut b = build(ET_EXEC, &[]);
        b[62..64].copy_from_slice(&90u16.to_le_bytes()); // shstrndx out of range
        let elf = parse(&b).unwrap();
        assert_eq!(
            elf.section_by_name(".text").unwrap_err(),
            ElfError::SectionHeadersOutOfRange
        );
    }
}
