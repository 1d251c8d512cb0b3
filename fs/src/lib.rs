//! The VFS, tmpfs and page cache of the kernel: a `no_std` + `alloc`
//! library that the kernel glues in and that `cargo test` exercises on the
//! host with real threads standing in for CPUs.
//!
//! Owns: path resolution and the namespace operations (`vfs`), inodes with
//! file data in 4 KiB page-cache pages and hashed directories (`inode`),
//! inode numbers from per-CPU ranges (`ino`), RCU read sections and
//! deferred freeing of directory entries (`rcu`), lock statistics per class and
//! CPU (`lockstat`), the traits through which it asks its host for
//! pages and time (`env`), block devices and the write-back block cache
//! (`block`), ext2 as a disk-backed file-system type (`ext2`), and the
//! initramfs unpacker the kernel and the file server share (`initramfs`).
//!
//! Invariants: errors are Linux errno numbers (`Errno`); lookups of
//! existing names take no lock and write only a per-CPU line (`rcu`,
//! per-bucket seqlocks in `inode`); operations in different
//! directories share no lock (`LockMode::PerCpu`); `LockMode::Global` runs
//! the same code under one lock, for the ablation.
//!
//! Must not: depend on the kernel, block (every lock is a short spin lock),
//! or panic on any input a user program can produce.
#![cfg_attr(not(any(test, feature = "host")), no_std)]
// The compiler fences `unsafe`: only `env` (a `Page` over raw frame
// memory), `inode::bucket` (the lock-free entry lists) and the host test
// shim `host` may use it, each block with a `// SAFETY:` line.
#![deny(unsafe_code)]
// Without `ext2` the disk-only parts of the inodes are never read.
#![cfg_attr(not(feature = "ext2"), allow(dead_code))]

extern crate alloc;

pub mod block;
#[allow(unsafe_code)]
pub mod env;
/// The errno type of this crate is the ABI's (`abi::Errno`); this module
/// keeps the `fs::errno::{Errno, FsResult}` path.
pub mod errno {
    pub use abi::Errno;

    /// What every fallible file-system operation returns.
    pub type FsResult<T> = Result<T, Errno>;
}
#[cfg(feature = "ext2")]
pub mod ext2;
// Without ext2 (the kernel's servers image): the types the VFS names, no
// disk code (`ext2_absent.rs`).
#[cfg(not(feature = "ext2"))]
#[path = "ext2_absent.rs"]
pub mod ext2;
pub mod initramfs;
mod ino;
pub mod inode;
pub mod lockstat;
mod rcu;
pub mod synth;
pub mod vfs;

#[cfg(any(test, feature = "host"))]
#[allow(unsafe_code)]
pub mod host;

pub use env::{Clock, Page, PageAlloc, Timespec, PAGE_SIZE};
pub use errno::{Errno, FsResult};
pub use inode::{DirCursor, FileMapper, FileType, Inode, Stat, MAX_FILE_SIZE};
pub use synth::{Gen, Payload, Provider};
pub use vfs::{oflags, Fs, FsConfig, FsStats, MAX_SYMLINKS, NAME_MAX, PATH_MAX};

/// Which locking the file system uses (the ablation switch, the one
/// `percpu::LockMode`).  `PerCpu`: partitioned locks, per-CPU inode ranges
/// and counters.  `Global`: one lock around every operation; inode numbers
/// from one counter.
pub use percpu::LockMode;
