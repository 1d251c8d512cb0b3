//! The adapter between processes and the file-system glue (`crate::files`):
//! a process's open files and file-system context (`Files`), and reading a
//! program for `execve` (`Program`).
//!
//! Owns nothing of the file system itself; it only names the glue's types
//! so that the rest of `proc` does not.  Invariant: `exec` maps programs
//! from their pages (`Program::pages`) or reads them piece by piece through
//! `Program::read_at` (the kernel heap cannot give
//! more than 4 MiB contiguous, and programs with debug info are larger).
//!
//! Must not: panic on a bad path or a short read (errors are errno values).

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::files::{FdTable, FsContext};
use abi::Errno;

/// A process's open files and file-system context.
pub struct Files {
    /// The descriptor table (internally locked, per process).
    pub fds: FdTable,
    /// Working directory and umask.
    pub ctx: FsContext,
}

impl Files {
    /// fds 0, 1, 2 on the console, cwd `/`.
    pub fn new_console() -> Files {
        Files {
            fds: FdTable::new_console(),
            ctx: FsContext::new_root(),
        }
    }

    /// The copy a forked child gets (same open files, own table).
    pub fn fork_copy(&self) -> Files {
        Files {
            fds: self.fds.fork_copy(),
            ctx: self.ctx.fork_copy(),
        }
    }

    /// execve: closes the close-on-exec descriptors.
    pub fn close_on_exec(&self) {
        self.fds.close_on_exec();
    }

    /// The process ended: close every descriptor now (pipes see EOF).
    pub fn release(&self) {
        self.fds.release();
    }
}

/// An executable being loaded, read piece by piece: a file of the
/// kernel's file system, bytes in memory (a program of the initramfs
/// archive, e.g. the file server), or pieces read through the file server
/// (`structure=servers`).
pub enum Program {
    Inode(Arc<::fs::Inode>),
    Bytes(&'static [u8]),
    /// Consecutive pieces of the file (each at most 1 MiB).
    Pieces(Vec<Vec<u8>>),
}

impl Program {
    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Program::Inode(inode) => inode.size(),
            Program::Bytes(b) => b.len() as u64,
            Program::Pieces(p) => p.iter().map(|v| v.len() as u64).sum(),
        }
    }

    /// The file's pages, for mapping segments copy-on-write (exec);
    /// `None` for programs in memory (their segments are copied).
    pub fn pages(&self) -> Option<Arc<dyn crate::memory::vm::PageSource>> {
        match self {
            Program::Inode(inode) => Some(crate::files::program_pages(inode)),
            _ => None,
        }
    }

    /// Fills `buf` from file offset `offset`; EIO when the file is shorter.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        match self {
            Program::Inode(inode) => {
                let n = inode.read_at(offset, buf).map_err(crate::files::errno)?;
                if n == buf.len() {
                    Ok(())
                } else {
                    Err(Errno::EIO)
                }
            }
            Program::Bytes(b) => {
                let src = usize::try_from(offset)
                    .ok()
                    .and_then(|o| b.get(o..o.checked_add(buf.len())?))
                    .ok_or(Errno::EIO)?;
                buf.copy_from_slice(src);
                Ok(())
            }
            Program::Pieces(pieces) => {
                let mut at = offset;
                let mut filled = 0usize;
                let mut base = 0u64;
                for piece in pieces {
                    let end = base + piece.len() as u64;
                    if filled < buf.len() && at >= base && at < end {
                        let from = (at - base) as usize;
                        let n = (piece.len() - from).min(buf.len() - filled);
                        buf[filled..filled + n].copy_from_slice(&piece[from..from + n]);
                        filled += n;
                        at += n as u64;
                    }
                    base = end;
                }
                if filled == buf.len() {
                    Ok(())
                } else {
                    Err(Errno::EIO)
                }
            }
        }
    }
}

/// Opens the program at `path` (relative paths from the working
/// directory) for exec: EACCES for a directory or a file without an
/// execute bit, ENOENT when missing.  In `structure=servers` a program
/// outside the kernel's own file systems is read through the file server.
pub fn open_program(files: &Files, path: &str) -> Result<Program, Errno> {
    if crate::files::remote::active() {
        if let Some((dir, _hold)) = files.ctx.remote_start(path) {
            return crate::files::remote::read_program(dir, path).map(Program::Pieces);
        }
    }
    Ok(Program::Inode(crate::files::open_exec(&files.ctx, path)?))
}
