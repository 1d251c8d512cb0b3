//! newc ("070701") cpio archives: a reader over borrowed bytes and, with the
//! `alloc` feature, a writer.
//!
//! Layout of one member: a 110-byte ASCII header (magic + 13 eight-digit hex
//! fields), the NUL-terminated name, padding to a multiple of 4 counted from
//! the archive start, the data, padding to a multiple of 4 again.  The member
//! named `TRAILER!!!` ends the archive.
//!
//! Invariants: the reader never indexes outside `archive`; every malformed
//! header gives a [`CpioError`] carrying the byte offset where it was found,
//! and iteration stops after the first error.  Must not: allocate while
//! reading, or accept an archive without its trailer.

use core::fmt;

/// Magic of a newc member header without checksums.
const MAGIC_NEWC: &[u8; 6] = b"070701";
/// Magic of the "crc" variant; same layout, the checksum field is ignored.
const MAGIC_CRC: &[u8; 6] = b"070702";
/// Size of the fixed ASCII header in bytes.
const HEADER_LEN: usize = 110;
/// Name of the member that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// One member of an archive, borrowing its name and data from the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub mode: u32,
    pub ino: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// File type bits of `mode` for a regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// File type bits of `mode` for a directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Mask of the file type bits of `mode`.
    pub const S_IFMT: u32 = 0o170000;
    /// File type bits of `mode` for a symbolic link (data: the target).
    pub const S_IFLNK: u32 = 0o120000;

    /// Whether the member is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & Self::S_IFMT == Self::S_IFREG
    }

    /// Whether the member is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & Self::S_IFMT == Self::S_IFDIR
    }

    /// Whether the member is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & Self::S_IFMT == Self::S_IFLNK
    }
}

/// Why an archive could not be read.  `offset` is the byte offset in the
/// archive of the member header (or field) that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioError {
    /// The 6 magic bytes are not `070701` (or `070702`).
    BadMagic { offset: usize },
    /// A header field holds something other than 8 hex digits.
    BadHex { offset: usize, field: &'static str },
    /// Fewer than 110 bytes are left for a header.
    TruncatedHeader { offset: usize },
    /// The name runs past the end of the archive.
    TruncatedName { offset: usize },
    /// The data runs past the end of the archive.
    TruncatedData {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// The name's last byte (per `namesize`) is not NUL, or `namesize` is 0.
    NameNotTerminated { offset: usize },
    /// The name is not valid UTF-8.
    NameNotUtf8 { offset: usize },
    /// The archive ended without a `TRAILER!!!` member.
    MissingTrailer { offset: usize },
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpioError::BadMagic { offset } => write!(
                f,
                "cpio: bad magic at byte {offset} (not a newc archive, expected \"070701\")"
            ),
            CpioError::BadHex { offset, field } => {
                write!(
                    f,
                    "cpio: field {field} at byte {offset} is not 8 hex digits"
                )
            }
            CpioError::TruncatedHeader { offset } => {
                write!(f, "cpio: truncated member header at byte {offset}")
            }
            CpioError::TruncatedName { offset } => {
                write!(
                    f,
                    "cpio: member name at byte {offset} runs past the end of the archive"
                )
            }
            CpioError::TruncatedData {
                offset,
                needed,
                available,
            } => write!(
                f,
                "cpio: member data at byte {offset} needs {needed} bytes, only {available} left"
            ),
            CpioError::NameNotTerminated { offset } => {
                write!(
                    f,
                    "cpio: member name at byte {offset} is not NUL-terminated"
                )
            }
            CpioError::NameNotUtf8 { offset } => {
                write!(f, "cpio: member name at byte {offset} is not UTF-8")
            }
            CpioError::MissingTrailer { offset } => write!(
                f,
                "cpio: archive ends at byte {offset} without a TRAILER!!! member"
            ),
        }
    }
}

/// Iterate over the members of `archive`, stopping at the trailer.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries {
        archive,
        pos: 0,
        done: false,
    }
}

/// Find the member called `name` (a leading `/` or `./` is ignored on both
/// sides).  `Ok(None)` when the archive is valid up to the trailer and has no
/// such member; an error if the archive is malformed before the member is found.
pub fn find<'a>(archive: &'a [u8], name: &str) -> Result<Option<Entry<'a>>, CpioError> {
    let wanted = normalize(name);
    for entry in entries(archive) {
        let entry = entry?;
        if normalize(entry.name) == wanted {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Strip the leading `./` or `/` (repeatedly) that archivers like to add.
fn normalize(name: &str) -> &str {
    let mut name = name;
    loop {
        if let Some(rest) = name.strip_prefix("./") {
            name = rest;
        } else if let Some(rest) = name.strip_prefix('/') {
            name = rest;
        } else {
            return name;
        }
    }
}

/// Iterator over archive members; see [`entries`].
pub struct Entries<'a> {
    archive: &'a [u8],
    pos: usize,
    done: bool,
}

/// Round `n` up to a multiple of 4, or `None` on overflow.
fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Parse the 8-hex-digit header field number `index` (0 = c_ino).
fn hex_field(header: &[u8], header_offset: usize, index: usize) -> Result<u32, CpioError> {
    const NAMES: [&str; 13] = [
        "c_ino",
        "c_mode",
        "c_uid",
        "c_gid",
        "c_nlink",
        "c_mtime",
        "c_filesize",
        "c_devmajor",
        "c_devminor",
        "c_rdevmajor",
        "c_rdevminor",
        "c_namesize",
        "c_check",
    ];
    let start = 6 + index * 8;
    let mut value: u32 = 0;
    for &byte in &header[start..start + 8] {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => {
                return Err(CpioError::BadHex {
                    offset: header_offset + start,
                    field: NAMES[index],
                })
            }
        };
        value = (value << 4) | u32::from(digit);
    }
    Ok(value)
}

impl<'a> Entries<'a> {
    /// Parse the member at `self.pos`; returns the entry and the offset of the
    /// next member.
    fn parse_at(&self) -> Result<(Entry<'a>, usize), CpioError> {
        let offset = self.pos;
        let rest = &self.archive[offset.min(self.archive.len())..];
        if rest.is_empty() {
            return Err(CpioError::MissingTrailer { offset });
        }
        if rest.len() < HEADER_LEN {
            // Too short for a header: still report a bad magic first if the
            // bytes that are there already show it is not a header.
            let n = rest.len().min(6);
            if rest[..n] != MAGIC_NEWC[..n] && rest[..n] != MAGIC_CRC[..n] {
                return Err(CpioError::BadMagic { offset });
            }
            return Err(CpioError::TruncatedHeader { offset });
        }
        let header = &rest[..HEADER_LEN];
        if &header[..6] != MAGIC_NEWC && &header[..6] != MAGIC_CRC {
            return Err(CpioError::BadMagic { offset });
        }
        let ino = hex_field(header, offset, 0)?;
        let mode = hex_field(header, offset, 1)?;
        let nlink = hex_field(header, offset, 4)?;
        let mtime = hex_field(header, offset, 5)?;
        let filesize = hex_field(header, offset, 6)? as usize;
        let namesize = hex_field(header, offset, 11)? as usize;
        // The checksum and device fields must still be hex, for a clear error.
        for index in [2, 3, 7, 8, 9, 10, 12] {
            hex_field(header, offset, index)?;
        }

        let name_offset = offset + HEADER_LEN;
        if namesize == 0 {
            return Err(CpioError::NameNotTerminated {
                offset: name_offset,
            });
        }
        let name_end = name_offset
            .checked_add(namesize)
            .filter(|&end| end <= self.archive.len())
            .ok_or(CpioError::TruncatedName {
                offset: name_offset,
            })?;
        let name_bytes = &self.archive[name_offset..name_end];
        let (&last, name_bytes) = name_bytes.split_last().expect("namesize >= 1");
        if last != 0 || name_bytes.contains(&0) {
            return Err(CpioError::NameNotTerminated {
                offset: name_offset,
            });
        }
        let name = core::str::from_utf8(name_bytes).map_err(|_| CpioError::NameNotUtf8 {
            offset: name_offset,
        })?;

        let data_offset = align4(name_end).ok_or(CpioError::TruncatedName {
            offset: name_offset,
        })?;
        let available = self.archive.len().saturating_sub(data_offset);
        if filesize > available {
            return Err(CpioError::TruncatedData {
                offset: data_offset,
                needed: filesize,
                available,
            });
        }
        // An empty member may lack its final padding at the very end of the
        // archive (data_offset == len + 1..3); its data is then simply empty.
        let data = if filesize == 0 {
            &[][..]
        } else {
            &self.archive[data_offset..data_offset + filesize]
        };
        let next = align4(data_offset + filesize).unwrap_or(usize::MAX);
        Ok((
            Entry {
                name,
                mode,
                ino,
                nlink,
                mtime,
                data,
            },
            next,
        ))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.parse_at() {
            Ok((entry, next)) => {
                if entry.name == TRAILER {
                    self.done = true;
                    return None;
                }
                self.pos = next;
                Some(Ok(entry))
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }
}

#[cfg(feature = "alloc")]
pub use writer::NewcWriter;

#[cfg(feature = "alloc")]
mod writer {
    use super::{Entry, HEADER_LEN, MAGIC_NEWC, TRAILER};
    use alloc::vec::Vec;

    /// Builds a newc archive in memory.  Inode numbers are assigned in
    /// order from 1; times are 0 so that archives are reproducible.
    pub struct NewcWriter {
        out: Vec<u8>,
        next_ino: u32,
    }

    impl Default for NewcWriter {
        fn default() -> Self {
            Self::new()
        }
    }

    impl NewcWriter {
        /// An empty archive.
        pub fn new() -> Self {
            NewcWriter {
                out: Vec::new(),
                next_ino: 1,
            }
        }

        /// Add a directory; `mode` holds the permission bits (the type bits
        /// are set here).
        pub fn add_dir(&mut self, name: &str, mode: u32) {
            let mode = (mode & !Entry::S_IFMT) | Entry::S_IFDIR;
            self.add(name, mode, 2, &[]);
        }

        /// Add a regular file; `mode` holds the permission bits (the type
        /// bits are set here).
        ///
        /// # Panics
        /// If `name` contains a NUL byte or `data` is 4 GiB or larger: the
        /// newc format cannot represent either.
        pub fn add_file(&mut self, name: &str, mode: u32, data: &[u8]) {
            let mode = (mode & !Entry::S_IFMT) | Entry::S_IFREG;
            self.add(name, mode, 1, data);
        }

        /// Add a symbolic link to `target`; `mode` holds the permission
        /// bits (the type bits are set here).
        pub fn add_symlink(&mut self, name: &str, mode: u32, target: &str) {
            let mode = (mode & !Entry::S_IFMT) | Entry::S_IFLNK;
            self.add(name, mode, 1, target.as_bytes());
        }

        /// Append the trailer and return the archive bytes.
        pub fn finish(mut self) -> Vec<u8> {
            self.next_ino = 0;
            self.add(TRAILER, 0, 1, &[]);
            self.out
        }

        fn add(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) {
            assert!(
                !name.as_bytes().contains(&0),
                "cpio member name contains NUL"
            );
            let filesize = u32::try_from(data.len()).expect("cpio member larger than 4 GiB");
            let namesize = u32::try_from(name.len() + 1).expect("cpio member name too long");
            let ino = self.next_ino;
            if self.next_ino != 0 {
                self.next_ino += 1;
            }
            let fields = [ino, mode, 0, 0, nlink, 0, filesize, 0, 0, 0, 0, namesize, 0];
            self.out.extend_from_slice(MAGIC_NEWC);
            for field in fields {
                push_hex8(&mut self.out, field);
            }
            debug_assert_eq!(self.out.len() % 4, HEADER_LEN % 4);
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(0);
            self.pad4();
            self.out.extend_from_slice(data);
            self.pad4();
        }

        fn pad4(&mut self) {
            while !self.out.len().is_multiple_of(4) {
                self.out.push(0);
            }
        }
    }

    fn push_hex8(out: &mut Vec<u8>, value: u32) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..8).rev() {
            out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::{format, vec::Vec};

    /// A hand-written one-file archive, independent of the writer.
    fn manual_archive() -> Vec<u8> {
        let mut buf = Vec::new();
        let mut member = |fields: [&str; 13], name: &[u8], data: &[u8]| {
            buf.extend_from_slice(b"070701");
            for f in fields {
                buf.extend_from_slice(f.as_bytes());
            }
            buf.extend_from_slice(name);
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
            buf.extend_from_slice(data);
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
        };
        let z = "00000000";
        // ino 1, mode 0100644, nlink 1, mtime 0x10, filesize 5, namesize 6.
        member(
            [
                "00000001", "000081a4", z, z, "00000001", "00000010", "00000005", z, z, z, z,
                "00000006", z,
            ],
            b"a.txt\0",
            b"hello",
        );
        member(
            [z, z, z, z, "00000001", z, z, z, z, z, z, "0000000b", z],
            b"TRAILER!!!\0",
            b"",
        );
        buf
    }

    #[test]
    fn reads_a_hand_written_archive() {
        let archive = manual_archive();
        let mut it = entries(&archive);
        let e = it.next().unwrap().unwrap();
        assert!(it.next().is_none(), "trailer must end the iteration");
        assert_eq!(e.name, "a.txt");
        assert_eq!(e.data, b"hello");
        assert_eq!(e.mode, 0o100644);
        assert_eq!(e.ino, 1);
        assert_eq!(e.nlink, 1);
        assert_eq!(e.mtime, 0x10);
        assert!(e.is_file() && !e.is_dir());
    }

    #[test]
    fn file_type_predicates_use_the_type_bits_only() {
        let with_mode = |mode| Entry {
            name: "x",
            mode,
            ino: 0,
            nlink: 1,
            mtime: 0,
            data: b"",
        };
        // (mode, is_file, is_dir, is_symlink); permission bits must not
        // matter, and a socket (0o140000) shares bits with each type.
        let cases = [
            (0o100644, true, false, false),
            (0o040755, false, true, false),
            (0o120777, false, false, true),
            (0o140755, false, false, false),
            (0o060644, false, false, false),
            (0o000777, false, false, false),
        ];
        for (mode, file, dir, link) in cases {
            let e = with_mode(mode);
            assert_eq!(e.is_file(), file, "is_file {mode:o}");
            assert_eq!(e.is_dir(), dir, "is_dir {mode:o}");
            assert_eq!(e.is_symlink(), link, "is_symlink {mode:o}");
        }
    }

    #[test]
    fn find_ignores_leading_slash_and_dot() {
        let archive = manual_archive();
        assert_eq!(find(&archive, "/a.txt").unwrap().unwrap().data, b"hello");
        assert_eq!(find(&archive, "./a.txt").unwrap().unwrap().data, b"hello");
        assert!(find(&archive, "b.txt").unwrap().is_none());
    }

    #[test]
    fn bad_magic_is_reported_at_offset_zero() {
        let err = entries(b"this is not a cpio archive at all, no no no")
            .next()
            .unwrap()
            .unwrap_err();
        assert_eq!(err, CpioError::BadMagic { offset: 0 });
        assert!(format!("{err}").contains("bad magic at byte 0"));
    }

    #[test]
    fn bad_hex_names_the_field() {
        let mut archive = manual_archive();
        archive[6 + 8] = b'z'; // first digit of c_mode
        let err = entries(&archive).next().unwrap().unwrap_err();
        assert_eq!(
            err,
            CpioError::BadHex {
                offset: 14,
                field: "c_mode"
            }
        );
    }

    #[test]
    fn truncations_are_detected() {
        let archive = manual_archive();
        assert_eq!(
            entries(&archive[..50]).next().unwrap().unwrap_err(),
            CpioError::TruncatedHeader { offset: 0 }
        );
        assert_eq!(
            entries(&archive[..113]).next().unwrap().unwrap_err(),
            CpioError::TruncatedName { offset: 110 }
        );
        assert_eq!(
            entries(&archive[..118]).next().unwrap().unwrap_err(),
            CpioError::TruncatedData {
                offset: 116,
                needed: 5,
                available: 2
            }
        );
        // Stopping right after the first member: the trailer is missing.
        let mut it = entries(&archive[..124]);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            it.next().unwrap().unwrap_err(),
            CpioError::MissingTrailer { offset: 124 }
        );
        assert!(it.next().is_none());
    }

    #[test]
    fn hex_fields_accept_both_cases_and_every_digit() {
        let mut archive = manual_archive();
        archive[6..14].copy_from_slice(b"ABCDEF09"); // c_ino, upper case
        archive[14..22].copy_from_slice(b"000081A4"); // c_mode
        let e = entries(&archive).next().unwrap().unwrap();
        assert_eq!(e.ino, 0xABCD_EF09);
        assert_eq!(e.mode, 0o100644);
        archive[6..14].copy_from_slice(b"abcdef78");
        assert_eq!(entries(&archive).next().unwrap().unwrap().ino, 0xabcd_ef78);
    }

    #[test]
    fn crc_magic_is_read_like_newc() {
        let mut archive = manual_archive();
        archive[5] = b'2'; // 070702 on the first member only
        let names: Vec<_> = entries(&archive).map(|e| e.unwrap().name).collect();
        assert_eq!(names, ["a.txt"]);
        archive[5] = b'3';
        assert_eq!(
            entries(&archive).next().unwrap().unwrap_err(),
            CpioError::BadMagic { offset: 0 }
        );
    }

    #[test]
    fn a_bare_header_is_read_and_its_name_is_missing() {
        // Exactly HEADER_LEN bytes: the header is whole, the name is not.
        let archive = manual_archive();
        assert_eq!(
            entries(&archive[..HEADER_LEN]).next().unwrap().unwrap_err(),
            CpioError::TruncatedName { offset: 110 }
        );
        assert_eq!(
            entries(&archive[..HEADER_LEN - 1])
                .next()
                .unwrap()
                .unwrap_err(),
            CpioError::TruncatedHeader { offset: 0 }
        );
    }

    #[test]
    fn errors_display_their_offsets() {
        use std::string::ToString;
        let m = CpioError::TruncatedData {
            offset: 116,
            needed: 5,
            available: 2,
        }
        .to_string();
        assert!(
            m.starts_with("cpio: ") && m.contains("116") && m.contains('5'),
            "{m}"
        );
        let m = CpioError::BadHex {
            offset: 14,
            field: "c_mode",
        }
        .to_string();
        assert!(m.contains("c_mode") && m.contains("14"), "{m}");
    }

    #[test]
    fn name_must_be_terminated_and_utf8() {
        let mut archive = manual_archive();
        archive[115] = b'!'; // overwrite the NUL of "a.txt\0"
        assert_eq!(
            entries(&archive).next().unwrap().unwrap_err(),
            CpioError::NameNotTerminated { offset: 110 }
        );
        let mut archive = manual_archive();
        archive[110] = 0xff;
        assert_eq!(
            entries(&archive).next().unwrap().unwrap_err(),
            CpioError::NameNotUtf8 { offset: 110 }
        );
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn writer_round_trips() {
        let mut w = NewcWriter::new();
        w.add_dir("boot", 0o755);
        w.add_file("boot/kernel.elf", 0o644, b"\x7fELF....");
        w.add_file("limine.conf", 0o644, b"timeout: 0\n");
        w.add_file("empty", 0o600, b"");
        let archive = w.finish();
        assert_eq!(archive.len() % 4, 0);
        let names: Vec<_> = entries(&archive).map(|e| e.unwrap().name).collect();
        assert_eq!(names, ["boot", "boot/kernel.elf", "limine.conf", "empty"]);
        // Inode numbers count up from 1 (and the trailer's is 0: checked by
        // the hand-written archive comparison below).
        let inos: Vec<_> = entries(&archive).map(|e| e.unwrap().ino).collect();
        assert_eq!(inos, [1, 2, 3, 4]);
        let dir = find(&archive, "boot").unwrap().unwrap();
        assert!(dir.is_dir());
        assert_eq!(dir.mode & 0o777, 0o755);
        let k = find(&archive, "/boot/kernel.elf").unwrap().unwrap();
        assert_eq!(k.data, b"\x7fELF....");
        assert_eq!(k.mode, 0o100644);
        assert_eq!(find(&archive, "empty").unwrap().unwrap().data, b"");
        // The hand-written archive and the writer agree on the format.
        let mut w = NewcWriter::new();
        w.add_file("a.txt", 0o644, b"hello");
        let ours = w.finish();
        let mut manual = manual_archive();
        manual[46..54].copy_from_slice(b"00000000"); // the writer's mtime is 0
        assert_eq!(ours, manual, "byte for byte");
        let e = find(&ours, "a.txt").unwrap().unwrap();
        assert_eq!((e.name, e.data, e.mode), ("a.txt", &b"hello"[..], 0o100644));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn writer_stores_symlinks() {
        let mut w = NewcWriter::new();
        w.add_symlink("link", 0o777, "target/file");
        let archive = w.finish();
        let e = find(&archive, "link").unwrap().unwrap();
        assert!(e.is_symlink() && !e.is_file() && !e.is_dir());
        assert_eq!((e.data, e.mode), (&b"target/file"[..], 0o120777));
    }
}
