//! Unpacking an initramfs (a newc cpio archive, parsed by `bootfmt::cpio`)
//! into a file system: the monolithic kernel's root tmpfs
//! (`kernel/src/files/initramfs.rs`) and the file server's (`fsd`) both use it.
//!
//! Owns nothing after it returns.  Invariants: directories are made before
//! their contents (missing parents are created, mode 0755); regular files,
//! directories and symlinks keep their permission bits and mtime; an entry
//! that already exists as a directory is kept and takes the member's mode
//! (as Linux's unpacker does); other file types are skipped (and counted).
//!
//! Must not: panic on any archive (a malformed one is an error message).

use alloc::format;
use alloc::string::String;

use crate::oflags::*;
use crate::{Errno as FsErrno, Fs, Timespec};

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// What `unpack` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Members stored.
    pub stored: usize,
    /// Members of another file type (devices, FIFOs), not stored.
    pub skipped: usize,
}

/// Unpacks `archive` into the root of `fs`, keeping only the members
/// whose name (without a leading `/` or `./`) `keep` accepts.
pub fn unpack(fs: &Fs, archive: &[u8], keep: impl Fn(&str) -> bool) -> Result<Unpacked, String> {
    let root = fs.root();
    let mut out = Unpacked::default();
    for entry in bootfmt::cpio::entries(archive) {
        let entry = entry.map_err(|e| format!("{e}"))?;
        let mut name = entry.name;
        while let Some(rest) = name.strip_prefix("./").or_else(|| name.strip_prefix('/')) {
            name = rest;
        }
        if name.is_empty() || name == "." || !keep(name) {
            continue;
        }
        let path = format!("/{name}");
        let fail = |what: &str, e: FsErrno| format!("{path}: {what} failed (errno {})", e.0);
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            let parent = &path[..at + 1 + i];
            match fs.mkdir(&root, parent, 0o755) {
                Ok(_) => {}
                Err(e) if e == FsErrno::EEXIST => {}
                Err(e) => return Err(fail("mkdir of a parent", e)),
            }
            at += 1 + i;
        }
        let perm = entry.mode & 0o7777;
        let mtime = Timespec {
            sec: entry.mtime as i64,
            nsec: 0,
        };
        let inode = match entry.mode & S_IFMT {
            S_IFDIR => match fs.mkdir(&root, &path, perm) {
                Ok(d) => d,
                Err(e) if e == FsErrno::EEXIST => match fs.lookup(&root, &path, false) {
                    Ok(d) if d.is_dir() => {
                        d.set_perm(perm);
                        d
                    }
                    _ => return Err(fail("mkdir", e)),
                },
                Err(e) => return Err(fail("mkdir", e)),
            },
            S_IFREG => {
                let f = fs
                    .open(
                        &root,
                        &path,
                        O_CREAT | O_TRUNC | O_WRONLY | O_NOFOLLOW,
                        perm,
                    )
                    .map_err(|e| fail("create", e))?;
                f.set_perm(perm);
                if !entry.data.is_empty() {
                    let (n, _) = f
                        .write_at(0, entry.data, false)
                        .map_err(|e| fail("write", e))?;
                    if n != entry.data.len() {
                        return Err(fail("write", FsErrno::ENOSPC));
                    }
                }
                f
            }
            S_IFLNK => {
                let target = core::str::from_utf8(entry.data)
                    .map_err(|_| format!("{path}: symlink target is not UTF-8"))?;
                fs.symlink(target, &root, &path)
                    .map_err(|e| fail("symlink", e))?
            }
            _ => {
                out.skipped += 1;
                continue;
            }
        };
        inode.set_times(Some(mtime), Some(mtime));
        out.stored += 1;
    }
    Ok(out)
}
