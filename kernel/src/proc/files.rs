//! The adapter between processes and the file-system glue (`crate::fs`):
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

use crate::fs::{FdTable, FsContext};
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

/// An executable being loaded, read piece by piece.
pub struct Program {
    inode: Arc<::fs::Inode>,
}

impl Program {
    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.inode.size()
    }

    /// The file's pages, for mapping segments copy-on-write (exec).
    pub fn pages(&self) -> Arc<dyn crate::mm::vm::PageSource> {
        crate::fs::program_pages(&self.inode)
    }

    /// Fills `buf` from file offset `offset`; EIO when the file is shorter.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let n = self.inode.read_at(offset, buf).map_err(crate::fs::errno)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }
}

/// Opens the program at `path` (relative paths from the working
/// directory) for exec: EACCES for a directory or a file without an
/// execute bit, ENOENT when missing.
pub fn open_program(files: &Files, path: &str) -> Result<Program, Errno> {
    Ok(Program {
        inode: crate::fs::open_exec(&files.ctx, path)?,
    })
}
