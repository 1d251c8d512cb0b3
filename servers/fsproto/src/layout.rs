//! Byte layouts that travel in payloads: `struct stat` (144 bytes) and
//! `struct statfs` (120 bytes) as Linux x86_64 lays them out, and
//! `linux_dirent64` records, so the kernel copies a reply's payload to
//! user memory as it is.
//!
//! Invariants: encoders write every byte (padding as zero); decoders take
//! any bytes of the right length and parsers of records any bytes at all,
//! and return an errno rather than panic.
//!
//! Must not: use `unsafe` (fields are copied one by one).

use abi::structs::{Stat, Statfs};
use abi::Errno;

/// Size of `struct stat`.
pub const STAT_SIZE: usize = 144;
/// Size of `struct statfs`.
pub const STATFS_SIZE: usize = 120;
/// Bytes of a `linux_dirent64` before its name (`d_ino`, `d_off`,
/// `d_reclen`, `d_type`).
pub const DIRENT_HEADER: usize = 19;

const _: () = assert!(core::mem::size_of::<Stat>() == STAT_SIZE);
const _: () = assert!(core::mem::size_of::<Statfs>() == STATFS_SIZE);

/// Little-endian writer over a fixed buffer.
struct Put<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Put<'_> {
    fn u64(&mut self, v: u64) {
        self.buf[self.at..self.at + 8].copy_from_slice(&v.to_le_bytes());
        self.at += 8;
    }
    fn u32(&mut self, v: u32) {
        self.buf[self.at..self.at + 4].copy_from_slice(&v.to_le_bytes());
        self.at += 4;
    }
}

/// Little-endian reader over a buffer whose length was checked.
struct Get<'b> {
    buf: &'b [u8],
    at: usize,
}

impl Get<'_> {
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(b)
    }
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buf[self.at..self.at + 4]);
        self.at += 4;
        u32::from_le_bytes(b)
    }
    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
}

/// Puts `v` at byte `off` of a fixed-size buffer (the offsets below are
/// constants, so the compiler checks none of them at run time).
fn put8<const N: usize>(b: &mut [u8; N], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put4<const N: usize>(b: &mut [u8; N], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn get8<const N: usize>(b: &[u8; N], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn get4<const N: usize>(b: &[u8; N], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(w)
}

/// `struct stat`'s bytes, field by field in declaration order (Linux
/// x86_64 offsets: dev 0, ino 8, nlink 16, mode 24, uid 28, gid 32, pad
/// 36, rdev 40, size 48, blksize 56, blocks 64, then atime, mtime, ctime
/// as (sec, nsec) pairs from 72, and three unused words from 120).
pub fn encode_stat(st: &Stat) -> [u8; STAT_SIZE] {
    let mut b = [0u8; STAT_SIZE];
    put8(&mut b, 0, st.st_dev);
    put8(&mut b, 8, st.st_ino);
    put8(&mut b, 16, st.st_nlink);
    put4(&mut b, 24, st.st_mode);
    put4(&mut b, 28, st.st_uid);
    put4(&mut b, 32, st.st_gid);
    put4(&mut b, 36, st.__pad0);
    put8(&mut b, 40, st.st_rdev);
    let rest = [
        st.st_size,
        st.st_blksize,
        st.st_blocks,
        st.st_atime,
        st.st_atime_nsec,
        st.st_mtime,
        st.st_mtime_nsec,
        st.st_ctime,
        st.st_ctime_nsec,
        st.__unused[0],
        st.__unused[1],
        st.__unused[2],
    ];
    for (i, v) in rest.into_iter().enumerate() {
        put8(&mut b, 48 + 8 * i, v as u64);
    }
    b
}

/// The `struct stat` in `b` (`EINVAL` unless it is `STAT_SIZE` bytes).
pub fn decode_stat(b: &[u8]) -> Result<Stat, Errno> {
    let b: &[u8; STAT_SIZE] = b.try_into().map_err(|_| Errno::EINVAL)?;
    let i = |off: usize| get8(b, off) as i64;
    Ok(Stat {
        st_dev: get8(b, 0),
        st_ino: get8(b, 8),
        st_nlink: get8(b, 16),
        st_mode: get4(b, 24),
        st_uid: get4(b, 28),
        st_gid: get4(b, 32),
        __pad0: get4(b, 36),
        st_rdev: get8(b, 40),
        st_size: i(48),
        st_blksize: i(56),
        st_blocks: i(64),
        st_atime: i(72),
        st_atime_nsec: i(80),
        st_mtime: i(88),
        st_mtime_nsec: i(96),
        st_ctime: i(104),
        st_ctime_nsec: i(112),
        __unused: [i(120), i(128), i(136)],
    })
}

/// `struct statfs`'s bytes.
pub fn encode_statfs(s: &Statfs) -> [u8; STATFS_SIZE] {
    let mut b = [0u8; STATFS_SIZE];
    let mut w = Put { buf: &mut b, at: 0 };
    w.u64(s.f_type as u64);
    w.u64(s.f_bsize as u64);
    for v in [s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree] {
        w.u64(v);
    }
    w.u32(s.f_fsid[0] as u32);
    w.u32(s.f_fsid[1] as u32);
    for v in [s.f_namelen, s.f_frsize, s.f_flags] {
        w.u64(v as u64);
    }
    for v in s.f_spare {
        w.u64(v as u64);
    }
    debug_assert_eq!(w.at, STATFS_SIZE);
    b
}

/// The `struct statfs` in `b` (`EINVAL` unless it is `STATFS_SIZE` bytes).
pub fn decode_statfs(b: &[u8]) -> Result<Statfs, Errno> {
    if b.len() != STATFS_SIZE {
        return Err(Errno::EINVAL);
    }
    let mut r = Get { buf: b, at: 0 };
    Ok(Statfs {
        f_type: r.i64(),
        f_bsize: r.i64(),
        f_blocks: r.u64(),
        f_bfree: r.u64(),
        f_bavail: r.u64(),
        f_files: r.u64(),
        f_ffree: r.u64(),
        f_fsid: [r.u32() as i32, r.u32() as i32],
        f_namelen: r.i64(),
        f_frsize: r.i64(),
        f_flags: r.i64(),
        f_spare: [r.i64(), r.i64(), r.i64(), r.i64()],
    })
}

/// Appends one `linux_dirent64` record to `out` if it fits in `cap`
/// bytes; returns whether it did.  The record is padded to 8 bytes, its
/// name NUL-terminated.
pub fn put_dirent(
    out: &mut alloc::vec::Vec<u8>,
    cap: usize,
    ino: u64,
    off: u64,
    kind: u8,
    name: &str,
) -> bool {
    let reclen = (DIRENT_HEADER + name.len() + 1).next_multiple_of(8);
    if out.len() + reclen > cap || reclen > u16::MAX as usize {
        return false;
    }
    let start = out.len();
    out.resize(start + reclen, 0);
    let rec = &mut out[start..];
    rec[0..8].copy_from_slice(&ino.to_le_bytes());
    rec[8..16].copy_from_slice(&off.to_le_bytes());
    rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
    rec[18] = kind;
    rec[DIRENT_HEADER..DIRENT_HEADER + name.len()].copy_from_slice(name.as_bytes());
    true
}

/// One parsed `linux_dirent64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent<'a> {
    pub ino: u64,
    pub off: u64,
    pub kind: u8,
    pub name: &'a str,
}

/// The records of a `Getdents` reply, checked one by one: each yields a
/// record or `EINVAL` (and then the iteration ends).
pub struct Dirents<'a> {
    rest: &'a [u8],
}

impl<'a> Dirents<'a> {
    pub fn new(records: &'a [u8]) -> Dirents<'a> {
        Dirents { rest: records }
    }
}

impl<'a> Iterator for Dirents<'a> {
    type Item = Result<Dirent<'a>, Errno>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        let bad = || {
            // Nothing more after a malformed record.
            Some(Err(Errno::EINVAL))
        };
        if r.len() < DIRENT_HEADER + 1 {
            self.rest = &[];
            return bad();
        }
        let le64 = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let reclen = u16::from_le_bytes([r[16], r[17]]) as usize;
        if reclen < DIRENT_HEADER + 1 || reclen % 8 != 0 || reclen > r.len() {
            self.rest = &[];
            return bad();
        }
        let name_area = &r[DIRENT_HEADER..reclen];
        let Some(nul) = name_area.iter().position(|&c| c == 0) else {
            self.rest = &[];
            return bad();
        };
        let Ok(name) = core::str::from_utf8(&name_area[..nul]) else {
            self.rest = &[];
            return bad();
        };
        if name.is_empty() {
            self.rest = &[];
            return bad();
        }
        self.rest = &r[reclen..];
        Some(Ok(Dirent {
            ino: le64(0),
            off: le64(8),
            kind: r[18],
            name,
        }))
    }
}
