//! The server's own cache of resolved paths, for `Stat` by path: the
//! walk of a path the server resolved before is one hash look-up instead
//! of one directory look-up per name.
//!
//! Owns: one small map per server thread (path → the directory it was
//! resolved from, the follow flag and the inode it named) and the
//! namespace generation that validates them.
//!
//! Invariants: the server is the only writer of its namespace, and every
//! request that may change which inode a name leads to (creating,
//! removing, renaming or linking names, mounts, and anything not known to
//! leave names alone: `changes_names`) moves the generation once before
//! and once after it runs.  An entry is used only when the generation is
//! the one read before its walk began, so no walk that overlapped a
//! change is ever answered from the cache, and a change makes every
//! thread's map stale at once.  Entries hold the inodes weakly: the cache
//! keeps no file alive (an unlinked file is freed as before), and a
//! directory's address cannot be reused while a weak reference names it.
//! Only successful walks are kept; an error always walks again.
//!
//! Shared between server threads: only the generation (one atomic, read
//! per look-up, written by namespace changes); each thread's map is its
//! own (its lock is never contended, and never held around a VFS call).
//!
//! Must not: answer anything but which inode a path names (stat data is
//! read from the inode each time), or grow without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use fs::Inode;
use fsproto::{Op, Request};

/// Most paths one thread keeps (then its map starts again).
const MAX_ENTRIES: usize = 4096;

struct Entry {
    start: Weak<Inode>,
    follow: bool,
    node: Weak<Inode>,
}

#[derive(Default)]
struct Map {
    generation: u64,
    paths: HashMap<Box<str>, Vec<Entry>>,
}

/// The caches of all server threads.
pub struct PathCache {
    generation: AtomicU64,
    maps: Box<[Mutex<Map>]>,
}

/// Whether `req` may change which inode some path names (conservative:
/// everything that is not known to leave names alone).
pub fn changes_names(req: &Request<'_>) -> bool {
    match req {
        Request::Open { flags, .. } => flags & abi::fcntl::O_CREAT != 0,
        _ => !matches!(
            req.op(),
            Op::Close
                | Op::Read
                | Op::Write
                | Op::Stat
                | Op::Truncate
                | Op::Readlink
                | Op::Getdents
                | Op::Chmod
                | Op::Chown
                | Op::Utimens
                | Op::Statfs
                | Op::Fsync
                | Op::Sync
                | Op::Access
                | Op::PathOf
                | Op::MapPages
                | Op::ReadPages
                | Op::WritePages
                | Op::WriteDone
        ),
    }
}

impl PathCache {
    /// Caches for `workers` server threads.
    pub fn new(workers: usize) -> PathCache {
        PathCache {
            generation: AtomicU64::new(0),
            maps: (0..workers.max(1))
                .map(|_| Mutex::new(Map::default()))
                .collect(),
        }
    }

    /// A namespace change begins or ended (see the module doc).
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The generation to read before a walk whose result may be kept.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn map(&self, worker: usize) -> std::sync::MutexGuard<'_, Map> {
        self.maps[worker % self.maps.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The inode `path` from `start` named when the namespace was last
    /// unchanged, if this thread resolved it since.
    pub fn get(
        &self,
        worker: usize,
        start: &Arc<Inode>,
        path: &str,
        follow: bool,
    ) -> Option<Arc<Inode>> {
        let now = self.generation();
        let mut map = self.map(worker);
        if map.generation != now {
            map.paths.clear();
            map.generation = now;
            return None;
        }
        let entries = map.paths.get(path)?;
        let e = entries
            .iter()
            .find(|e| e.follow == follow && std::ptr::eq(e.start.as_ptr(), Arc::as_ptr(start)))?;
        e.node.upgrade()
    }

    /// Keeps `node` as what `path` from `start` names, found by a walk
    /// that began at generation `seen`.
    pub fn put(
        &self,
        worker: usize,
        seen: u64,
        start: &Arc<Inode>,
        path: &str,
        follow: bool,
        node: &Arc<Inode>,
    ) {
        let mut map = self.map(worker);
        if self.generation() != seen {
            return;
        }
        if map.generation != seen {
            map.paths.clear();
            map.generation = seen;
        }
        if map.paths.len() >= MAX_ENTRIES {
            map.paths.clear();
        }
        let entries = map.paths.entry(path.into()).or_default();
        entries.retain(|e| {
            !(e.follow == follow && std::ptr::eq(e.start.as_ptr(), Arc::as_ptr(start)))
                && e.start.strong_count() > 0
        });
        entries.push(Entry {
            start: Arc::downgrade(start),
            follow,
            node: Arc::downgrade(node),
        });
    }
}
