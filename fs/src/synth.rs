//! Generated inodes: the pieces a host builds a procfs from.
//!
//! Owns the `Provider` trait and the bodies of generated inodes.  A
//! directory made with `Inode::gen_dir` (or the root of
//! `Fs::new_generated_mount`) holds no entries of its own: each lookup of
//! a name in it asks its provider, which builds a fresh inode for the
//! answer (a directory, a regular file whose bytes the provider makes at
//! open, a symlink, a *magic link* or a *proxy*).  A magic link reads like
//! a symlink (`readlink` gives its text) but following it yields the inode
//! it holds (Linux's `/proc/<pid>/fd/N`); a proxy stands for an object the
//! host owns and the file system does not know (a pipe, a socket), with
//! the object attached for the host to find when the proxy is opened.
//!
//! Invariants: a generated directory never holds real entries (creating
//! in one fails with `EACCES`); generated inodes take their numbers from
//! the provider (stable across lookups), never from the superblock's
//! allocator.  `Provider::lookup` and `Provider::list` run inside the file
//! system (a path walk, a listing; in `LockMode::Global` under its one
//! lock), so they must not call back into `Fs`: work that needs paths or
//! lookups belongs in `link_text` and `contents`, which run outside it.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;

use crate::errno::FsResult;
use crate::inode::{FileType, Inode};

/// What the host answers for generated directories and files.
pub trait Provider: Send + Sync {
    /// The entry `name` of generated directory `dir` (whose key is
    /// `key`), built with the `Inode::gen_*` constructors; `ENOENT` if
    /// there is none.
    fn lookup(&self, dir: &Arc<Inode>, key: u64, name: &str) -> FsResult<Arc<Inode>>;
    /// The entries of generated directory `key` now: (name, inode number,
    /// type), "." and ".." excluded.
    fn list(&self, key: u64) -> Vec<(String, u64, FileType)>;
    /// The bytes of generated regular file `key`, made now (at open,
    /// outside the file system's locks).
    fn contents(&self, key: u64) -> FsResult<Vec<u8>>;
    /// The text of magic link `key` (to `target`) made without one, on
    /// its first read (outside the file system's locks).
    fn link_text(&self, key: u64, target: &Arc<Inode>) -> String;
}

/// A generated directory or file: which provider answers and its key.
#[derive(Clone)]
pub struct Gen {
    pub provider: Arc<dyn Provider>,
    pub key: u64,
}

/// An object of the host behind a proxy inode.
pub type Payload = Arc<dyn Any + Send + Sync>;
