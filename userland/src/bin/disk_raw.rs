//! `disk_raw`: byte-level reads and writes of the block device `/dev/vda`,
//! the same on any kernel that gives the program a virtio disk.
//!
//! The host fills the image with `pattern(1, offset)` (tests/disk.rs has the
//! same function).  The program checks the whole device reads back as that
//! pattern (with `read`, in odd-sized pieces, and with unaligned `pread`s,
//! including across and past the end), then writes `pattern(2, offset)` over
//! a few ranges (aligned, unaligned, a sector's partial bytes, the last
//! bytes, past the end), `fsync`s, and reads every range back with its
//! neighbours.  The host then checks that the image holds exactly those
//! writes.  With the argument `ro` the disk is read-only: it prints what
//! opening it for writing and writing to it answer, and writes nothing.
//!
//! One fact per line; wrong results end with `<-- WRONG`; the last line is
//! `disk_raw: pass` when nothing was wrong.

use std::ffi::CString;

use userland::{errno, errno_name, say};

/// Byte at `offset` of the pattern with `seed` (tests/disk.rs: `pattern`).
fn pattern(seed: u64, offset: u64) -> u8 {
    let x = (offset >> 3)
        .wrapping_add(seed.wrapping_mul(0x1000_0000_01b3))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> (8 * (offset & 7))) as u8
}

/// The ranges the program writes with seed 2 (offset, length), relative to
/// the device size for the last two (tests/disk.rs: `WRITES`).
fn writes(size: u64) -> Vec<(u64, usize)> {
    vec![
        (0, 512),
        (1000, 3),
        (3 * 4096 + 17, 70_000),
        (200_000, 4096),
        (size - 5, 5),
    ]
}

struct Checker {
    wrong: usize,
}

impl Checker {
    fn fact(&mut self, line: String, ok: bool) {
        if ok {
            say(&line);
        } else {
            self.wrong += 1;
            say(&format!("{line} <-- WRONG"));
        }
    }
}

fn pread(fd: i32, buf: &mut [u8], offset: u64) -> Result<usize, String> {
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), offset as i64) };
    if n < 0 {
        Err(errno_name(errno()))
    } else {
        Ok(n as usize)
    }
}

fn pwrite(fd: i32, buf: &[u8], offset: u64) -> Result<usize, String> {
    // SAFETY: `buf` is readable for its length.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as i64) };
    if n < 0 {
        Err(errno_name(errno()))
    } else {
        Ok(n as usize)
    }
}

fn open(path: &str, flags: i32) -> Result<i32, String> {
    let c = CString::new(path).expect("no NUL in the path");
    // SAFETY: a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        Err(errno_name(errno()))
    } else {
        Ok(fd)
    }
}

/// Which seed each byte of the device should have after `done` writes.
fn expected(size: u64, done: &[(u64, usize)], offset: u64) -> u8 {
    let written = done
        .iter()
        .any(|&(at, len)| offset >= at && offset < at + len as u64 && offset < size);
    pattern(if written { 2 } else { 1 }, offset)
}

fn main() {
    let read_only = std::env::args().nth(1).as_deref() == Some("ro");
    let mut c = Checker { wrong: 0 };
    let path = "/dev/vda";
    let fd = match open(
        path,
        if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        },
    ) {
        Ok(fd) => fd,
        Err(e) => {
            say(&format!("open {path}: {e} <-- WRONG"));
            std::process::exit(1);
        }
    };
    // SAFETY: a zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable.
    let r = unsafe { libc::fstat(fd, &mut st) };
    c.fact(
        format!(
            "fstat: {}, block device: {}",
            userland::outcome(r as i64),
            st.st_mode & libc::S_IFMT == libc::S_IFBLK
        ),
        r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFBLK,
    );
    // SAFETY: plain lseek.
    let size = unsafe { libc::lseek(fd, 0, libc::SEEK_END) };
    c.fact(format!("size: {size}"), size > 300_000);
    let size = size.max(0) as u64;
    // SAFETY: plain lseek.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };

    // The whole device with read(), in pieces of an odd size.
    let mut buf = vec![0u8; 12_345];
    let (mut at, mut bad) = (0u64, 0u64);
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            c.fact(
                format!("read to the end: {}", userland::outcome(n as i64)),
                n == 0,
            );
            break;
        }
        for (i, b) in buf[..n as usize].iter().enumerate() {
            if *b != pattern(1, at + i as u64) {
                bad += 1;
            }
        }
        at += n as u64;
    }
    c.fact(format!("read all: {at} bytes"), at == size);
    c.fact(format!("bytes not matching the pattern: {bad}"), bad == 0);

    // Unaligned preads, across and past the end.
    for (offset, len) in [
        (1, 1),
        (511, 2),
        (4095, 8193),
        (size - 100, 200),
        (size, 10),
        (size + 4096, 1),
    ] {
        let mut b = vec![0u8; len];
        match pread(fd, &mut b, offset) {
            Ok(n) => {
                let want = (size.saturating_sub(offset) as usize).min(len);
                let same = (0..n).all(|i| b[i] == pattern(1, offset + i as u64));
                c.fact(
                    format!(
                        "pread at end{:+} len {len}: {n} bytes, match {same}",
                        offset as i64 - size as i64
                    ),
                    n == want && same,
                );
            }
            Err(e) => c.fact(format!("pread at {offset} len {len}: {e}"), false),
        }
    }

    if read_only {
        let w = open(path, libc::O_RDWR).map(|fd| {
            // SAFETY: closing our own fd.
            unsafe { libc::close(fd) };
            "ok".to_string()
        });
        say(&format!("open O_RDWR: {}", w.unwrap_or_else(|e| e)));
        let wfd = open(path, libc::O_WRONLY);
        if let Ok(wfd) = wfd {
            say(&format!(
                "pwrite: {}",
                pwrite(wfd, &[1], 0).map_or_else(|e| e, |n| n.to_string())
            ));
            // SAFETY: closing our own fd.
            unsafe { libc::close(wfd) };
        }
        let mut b = [0u8; 16];
        let same = pread(fd, &mut b, 0).is_ok() && (0..16).all(|i| b[i] == pattern(1, i as u64));
        c.fact(format!("contents unchanged: {same}"), same);
    } else {
        let mut done = Vec::new();
        for (offset, len) in writes(size) {
            let data: Vec<u8> = (0..len as u64).map(|i| pattern(2, offset + i)).collect();
            let r = pwrite(fd, &data, offset);
            c.fact(
                format!(
                    "pwrite at end{:+} len {len}: {}",
                    offset as i64 - size as i64,
                    r.clone().map_or_else(|e| e, |n| n.to_string())
                ),
                r == Ok(len),
            );
            done.push((offset, len));
        }
        let r = pwrite(fd, &[0u8; 10], size);
        c.fact(
            format!(
                "pwrite at the end: {}",
                r.clone().map_or_else(|e| e, |n| n.to_string())
            ),
            r == Err("ENOSPC".to_string()),
        );
        let r = pwrite(fd, &[0u8; 10], size - 3);
        c.fact(
            format!(
                "pwrite across the end: {}",
                r.clone().map_or_else(|e| e, |n| n.to_string())
            ),
            r == Ok(3),
        );
        // Undo that last one so the host sees only `writes`.
        let undo: Vec<u8> = (size - 3..size).map(|o| expected(size, &done, o)).collect();
        let r = pwrite(fd, &undo, size - 3);
        c.fact(format!("rewrite the last 3 bytes: {r:?}"), r == Ok(3));
        // SAFETY: plain fsync.
        let r = unsafe { libc::fsync(fd) };
        c.fact(format!("fsync: {}", userland::outcome(r as i64)), r == 0);
        // Every written range and 600 bytes either side.
        let mut bad = 0;
        for &(offset, len) in &done {
            let from = offset.saturating_sub(600);
            let to = (offset + len as u64 + 600).min(size);
            let mut b = vec![0u8; (to - from) as usize];
            match pread(fd, &mut b, from) {
                Ok(n) if n == b.len() => {
                    bad += (0..n)
                        .filter(|&i| b[i] != expected(size, &done, from + i as u64))
                        .count();
                }
                other => c.fact(format!("pread back at {from}: {other:?}"), false),
            }
        }
        c.fact(format!("bytes wrong after the writes: {bad}"), bad == 0);
    }
    // SAFETY: closing our own fd.
    let r = unsafe { libc::close(fd) };
    c.fact(format!("close: {}", userland::outcome(r as i64)), r == 0);
    if c.wrong == 0 {
        say("disk_raw: pass");
    } else {
        say(&format!("disk_raw: {} wrong", c.wrong));
        std::process::exit(1);
    }
}
