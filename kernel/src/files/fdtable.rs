//! Per-process descriptor tables (`FdTable`) and file-system context
//! (`FsContext`: current directory and umask).
//!
//! Owns the fd -> open-file mapping.  Invariants: an fd names at most one
//! open file; new fds are the lowest free number (POSIX); at most
//! `MAX_FDS` are open.  The table lock is a per-process reader-writer lock
//! (class `fd_table`): processes never share it; threads of one process
//! share it, and their lookups only read-lock it.
//!
//! Lookups by system calls go through `FdTable::borrow`, which, on a hit
//! in the calling task's `FdCache`, writes no cache line another CPU uses
//! (see `borrow` for the protocol and why it is sound).
//!
//! What threads of one process still share (`comparison sharing`,
//! open_close_private: 2 conflict lines per operation): open, close and
//! `F_SETFD` write the table's lock word and the slot line of the fd.
//! Inherent while the threads share one table: POSIX gives the lowest free
//! fd, so every open must see the slots the other threads just took or
//! freed (Linux writes its `file_lock` and `open_fds` bitmap the same way);
//! only processes with their own tables (`--procs`) or an "any fd" open
//! (sv6's `O_ANYFD`) avoid it.  Closing an fd no cache was filled from
//! visits no other thread's cache and bumps no generation (`Slot::cached`).
//!
//! Must not: drop an open file while holding the table lock (closing a
//! pipe end wakes threads), or block.

use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use percpu::{CachePadded, LockMode};

use ::fs::lockstat::{LockClass, RwLock};
use ::fs::Inode;

use super::file::{File, FileRef};
use super::remote::RemoteHandle;
use abi::Errno;
use fsproto::Handle;

/// Highest number of open descriptors (RLIMIT_NOFILE's usual soft limit).
pub const MAX_FDS: usize = 1024;

struct Slot {
    file: FileRef,
    cloexec: bool,
    /// Set (under the read lock, once) when a task's `FdCache` is filled
    /// from this slot.  A slot never borrowed through a cache is closed
    /// without bumping the generation or visiting the caches: no task can
    /// hold its file in a current way (see `borrow`).
    cached: AtomicBool,
}

impl Slot {
    fn new(file: FileRef, cloexec: bool) -> Slot {
        Slot {
            file,
            cloexec,
            cached: AtomicBool::new(false),
        }
    }

    fn cached(&self) -> bool {
        self.cached.load(Ordering::Relaxed)
    }
}

impl Clone for Slot {
    /// A copy for another table (fork): none of its caches holds it yet.
    fn clone(&self) -> Slot {
        Slot::new(self.file.clone(), self.cloexec)
    }
}

/// A process's open descriptors.
pub struct FdTable {
    /// Read-locked by lookups (`get`), so threads of one process look up
    /// descriptors in parallel; written by open/close/dup.
    slots: RwLock<Vec<Option<Slot>>>,
    /// RLIMIT_NOFILE's soft limit (at most `MAX_FDS`): new fds stay below
    /// it.  Set by setrlimit/prlimit64, copied at fork.
    limit: AtomicUsize,
    /// Bumped (under the write lock of `slots`) whenever a slot that held
    /// a file changes: close, dup2 over, close-on-exec, exit.  Read by
    /// every `borrow`; on its own line, so the slow path's lock writes do
    /// not evict it from the readers' caches.
    generation: CachePadded<AtomicU64>,
    /// The caches of the tasks that borrowed from this table (closers
    /// empty them).  Shared, but only touched when a task first borrows,
    /// when it exits, and by closers: never on a cache hit.
    users: crate::sched::IrqSpinLock<Vec<Weak<FdCache>>>,
}

/// Ways of an `FdCache`.
const CACHE_WAYS: usize = 4;

/// One task's cache of the files it looked up, for `FdTable::borrow`.
pub struct FdCache {
    ways: [Way; CACHE_WAYS],
    /// The way the next miss fills first (round robin).  Task only.
    next: AtomicUsize,
    /// In the table's `users`.  Task only.
    registered: AtomicBool,
}

/// One entry of an `FdCache`.
///
/// Only the task locks `state` with `lock` (and may hold it through a
/// whole system call, blocking included); closers only `try_lock` it,
/// with interrupts off, and hold it for a few stores, so nobody ever
/// waits for a blocked task.  `busy` is true while a borrow of this way
/// is alive; `fd` is the task's hint of what the way holds (checked under
/// the lock; -1 for empty).
struct Way {
    busy: AtomicBool,
    fd: AtomicI32,
    state: spin::Mutex<WayState>,
}

struct WayState {
    /// The table generation the entry was valid in.
    generation: u64,
    entry: Option<(i32, FileRef)>,
}

impl Way {
    /// Empties the way if the table moved past its generation `now`
    /// (to be dropped by the caller, unlocked).
    fn take_stale(&self, state: &mut WayState, now: u64) -> Option<(i32, FileRef)> {
        if state.generation == now {
            return None;
        }
        state.generation = now;
        self.fd.store(-1, Ordering::Relaxed);
        state.entry.take()
    }
}

impl FdCache {
    pub fn new() -> Arc<FdCache> {
        Arc::new(FdCache {
            ways: core::array::from_fn(|_| Way {
                busy: AtomicBool::new(false),
                fd: AtomicI32::new(-1),
                state: spin::Mutex::new(WayState {
                    generation: 0,
                    entry: None,
                }),
            }),
            next: AtomicUsize::new(0),
            registered: AtomicBool::new(false),
        })
    }
}

/// An open file borrowed for (part of) one system call: `Deref`s to the
/// `File`.  A cache hit writes only the calling task's lines; otherwise it
/// holds its own `Arc` (`LockMode::Global`, every way busy).
pub struct FileBorrow<'a>(Borrowed<'a>);

enum Borrowed<'a> {
    Owned(FileRef),
    Cached {
        /// Always `Some` until `drop`; its entry is always filled.
        state: Option<spin::MutexGuard<'a, WayState>>,
        way: &'a Way,
        table: &'a FdTable,
    },
}

impl FileBorrow<'_> {
    /// A reference of its own, for what outlives the call (an fd made by
    /// `F_DUPFD`, an epoll registration).
    pub fn to_arc(&self) -> FileRef {
        match &self.0 {
            Borrowed::Owned(f) => f.clone(),
            Borrowed::Cached { state, .. } => cached_file(state).clone(),
        }
    }
}

fn cached_file<'s>(state: &'s Option<spin::MutexGuard<'_, WayState>>) -> &'s FileRef {
    match state.as_ref().and_then(|s| s.entry.as_ref()) {
        Some((_, f)) => f,
        // `borrow` builds a cached borrow only from a filled way, and
        // nobody else changes it while the guard is held.
        None => unreachable!("cached borrow of an empty way"),
    }
}

impl core::ops::Deref for FileBorrow<'_> {
    type Target = File;
    fn deref(&self) -> &File {
        match &self.0 {
            Borrowed::Owned(f) => f,
            Borrowed::Cached { state, .. } => cached_file(state),
        }
    }
}

impl Drop for FileBorrow<'_> {
    fn drop(&mut self) {
        if let Borrowed::Cached { state, way, table } = &mut self.0 {
            let seen = state.as_ref().map_or(0, |s| s.generation);
            drop(state.take());
            table.leave(way, seen);
        }
    }
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable {
            slots: RwLock::new(LockClass::FdTable, Vec::new()),
            limit: AtomicUsize::new(MAX_FDS),
            generation: CachePadded::new(AtomicU64::new(0)),
            users: crate::sched::IrqSpinLock::new(Vec::new()),
        }
    }

    /// fds 0, 1, 2 open on `/dev/console` (read-only, write-only,
    /// write-only), as PID 1 gets them.
    pub fn new_console() -> FdTable {
        let t = FdTable::new();
        let root = super::root_fs();
        if let Ok(console) = root.lookup(&root.root(), "/dev/console", true) {
            for flags in [
                ::fs::oflags::O_RDONLY,
                ::fs::oflags::O_WRONLY,
                ::fs::oflags::O_WRONLY,
            ] {
                if let Ok(f) = File::open_inode(console.clone(), flags) {
                    let _ = t.insert(f, false);
                }
            }
        }
        t
    }

    /// The table a forked child gets: the same open files (shared offsets),
    /// its own table.
    pub fn fork_copy(&self) -> FdTable {
        FdTable {
            slots: RwLock::new(LockClass::FdTable, self.slots.read().clone()),
            limit: AtomicUsize::new(self.limit()),
            generation: CachePadded::new(AtomicU64::new(0)),
            users: crate::sched::IrqSpinLock::new(Vec::new()),
        }
    }

    /// `execve`: closes every close-on-exec descriptor.
    pub fn close_on_exec(&self) {
        let mut closed = Vec::new();
        {
            let mut slots = self.slots.write();
            for s in slots.iter_mut() {
                if s.as_ref().is_some_and(|s| s.cloexec) {
                    closed.push(s.take());
                }
            }
            if closed.iter().flatten().any(Slot::cached) {
                self.bump();
            }
        }
        if closed.iter().flatten().any(Slot::cached) {
            self.purge(None);
        }
        drop(closed);
    }

    /// Closes every descriptor (process exit).
    pub fn release(&self) {
        let all = {
            let mut slots = self.slots.write();
            self.bump();
            core::mem::take(&mut *slots)
        };
        self.purge(None);
        drop(all);
    }

    /// The open descriptors, ascending (for `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> Vec<i32> {
        let slots = self.slots.read();
        (0..slots.len())
            .filter(|&i| slots[i].is_some())
            .map(|i| i as i32)
            .collect()
    }

    /// Slots in the table (Linux's `FDSize`: at least 64).
    pub fn capacity(&self) -> usize {
        self.slots.read().len().next_multiple_of(64).max(64)
    }

    /// The open file of `fd`, with a reference of its own (what outlives
    /// the call, and the slow path of `borrow`).  Costs the table's read
    /// lock and an `Arc` clone: system calls use `borrow`.
    pub fn get(&self, fd: i32) -> Result<FileRef, Errno> {
        let slots = self.slots.read();
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// `fd`'s open file, borrowed for the calling task's system call
    /// (`cache` is that task's), without a reference-count write on a hit.
    ///
    /// Invariant: while a way's generation equals the table's, its entry
    /// holds the file the table has at that fd (entries are filled under
    /// the read lock with the generation read there, after marking the
    /// slot `cached`; every change of a `cached` slot bumps the generation
    /// under the write lock, and a slot that is not `cached` is in no way
    /// filled since it was installed).
    ///
    /// * Hit: pick the way tagged `fd`, store its `busy = true`, lock it,
    ///   load the generation (both `SeqCst`); if it equals the way's and
    ///   the way holds `fd`, borrow it.  Writes only the task's lines.
    /// * Miss: on that way or a free one (round robin), under the read
    ///   lock load the generation and clone the slot's `Arc` into it.
    /// * Writers (close, dup2 over, close-on-exec, exit) of a slot some
    ///   cache was filled from (`Slot::cached`, set under the read lock by
    ///   the fill) bump the generation under the write lock, then
    ///   (`purge`) empty the stale ways tagged with that fd in every
    ///   registered cache that are not `busy`, so the closed
    ///   file's last reference goes before `close` returns, as with a
    ///   plain `Arc` (a thread blocked reading a pipe sees EOF when
    ///   another closes the write end, even if it looked that end up).
    /// * End of a borrow: unlock, store `busy = false`, load the
    ///   generation; if it moved, empty the way (`leave`).
    ///
    /// Why no closed file is used or kept: a closer stores the generation
    /// then loads `busy`; the task stores `busy` then loads the generation
    /// (at the start and at the end of a borrow).  With `SeqCst` one of
    /// them sees the other's store: either the closer empties the idle
    /// way, or the task's load sees the new generation (the hit fails, or
    /// the ending borrow empties the way itself).  So a closed file stays
    /// alive only for the calls that borrowed it before the close, as
    /// Linux's in-flight `fget` references: a thread blocked in `read` on
    /// an fd another thread closes keeps that file until the read ends.
    ///
    /// `LockMode::Global` (the ablation), and a borrow finding every way
    /// busy, take the slow path: `get`.
    pub fn borrow<'a>(&'a self, cache: &'a Arc<FdCache>, fd: i32) -> Result<FileBorrow<'a>, Errno> {
        if percpu::lock_mode() == LockMode::Global {
            return self.get(fd).map(|f| FileBorrow(Borrowed::Owned(f)));
        }
        let idle = |w: &Way| !w.busy.load(Ordering::Relaxed);
        let tagged = cache
            .ways
            .iter()
            .find(|w| w.fd.load(Ordering::Relaxed) == fd && idle(w));
        let way = match tagged {
            Some(w) => w,
            None => {
                let start = cache.next.load(Ordering::Relaxed);
                let free = (0..CACHE_WAYS)
                    .map(|i| (start + i) % CACHE_WAYS)
                    .find(|&i| idle(&cache.ways[i]));
                let Some(i) = free else {
                    return self.get(fd).map(|f| FileBorrow(Borrowed::Owned(f)));
                };
                cache.next.store((i + 1) % CACHE_WAYS, Ordering::Relaxed);
                &cache.ways[i]
            }
        };
        way.busy.store(true, Ordering::SeqCst);
        let mut state = way.state.lock();
        let hit = state.generation == self.generation.load(Ordering::SeqCst)
            && state.entry.as_ref().is_some_and(|(f, _)| *f == fd);
        if hit {
            return Ok(FileBorrow(Borrowed::Cached {
                state: Some(state),
                way,
                table: self,
            }));
        }
        let (now, found) = {
            let slots = self.slots.read();
            let file = usize::try_from(fd)
                .ok()
                .and_then(|i| slots.get(i))
                .and_then(|s| s.as_ref())
                .map(|s| {
                    // Read first: a slot borrowed again after an eviction
                    // is not written again.
                    if !s.cached() {
                        s.cached.store(true, Ordering::Relaxed);
                    }
                    s.file.clone()
                });
            (self.generation.load(Ordering::SeqCst), file)
        };
        let stale = way.take_stale(&mut state, now);
        if !cache.registered.swap(true, Ordering::Relaxed) {
            let mut users = self.users.lock();
            users.retain(|u| u.strong_count() > 0);
            users.push(Arc::downgrade(cache));
        }
        let Some(file) = found else {
            drop(state);
            self.leave(way, now);
            drop(stale);
            return Err(Errno::EBADF);
        };
        way.fd.store(fd, Ordering::Relaxed);
        let evicted = state.entry.replace((fd, file));
        // Dropped holding only this task's way (nobody waits for it).
        drop(stale);
        drop(evicted);
        Ok(FileBorrow(Borrowed::Cached {
            state: Some(state),
            way,
            table: self,
        }))
    }

    /// A borrow of `way` (made in generation `seen`) ended: the way is no
    /// longer busy; empties it if a writer bumped the generation meanwhile
    /// (the closer skipped it while busy).
    fn leave(&self, way: &Way, seen: u64) {
        way.busy.store(false, Ordering::SeqCst);
        if self.generation.load(Ordering::SeqCst) == seen {
            return;
        }
        let stale = {
            let mut state = way.state.lock();
            way.take_stale(&mut state, self.generation.load(Ordering::SeqCst))
        };
        drop(stale);
    }

    /// A slot that held a file changed.  Caller holds the write lock.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// After `bump`, without the table lock: empties the stale ways of
    /// the tasks' caches that no borrow holds (a busy way is emptied when
    /// its borrow ends), dropping what they held after every lock is
    /// released.  With `Some(fd)` only the ways tagged `fd` (the one slot
    /// that changed): the others hold files the table still has, and go
    /// when their task next misses on them; the tags are read, and only a
    /// way holding `fd` is written, so closing one fd does not write the
    /// lines of every task that borrowed some other fd.
    ///
    /// A way's tag is stored before its borrow ends (`busy = false`,
    /// `SeqCst`), and read here after `busy`: an idle way's tag is the one
    /// its last borrow left.
    fn purge(&self, only: Option<i32>) {
        let mut stale = Vec::new();
        let mut caches = Vec::new();
        {
            let users = self.users.lock();
            for user in users.iter() {
                let Some(cache) = user.upgrade() else {
                    continue;
                };
                for way in &cache.ways {
                    if way.busy.load(Ordering::SeqCst) {
                        continue;
                    }
                    if only.is_some_and(|fd| way.fd.load(Ordering::Relaxed) != fd) {
                        continue;
                    }
                    if let Some(mut state) = way.state.try_lock() {
                        let now = self.generation.load(Ordering::SeqCst);
                        stale.extend(way.take_stale(&mut state, now));
                    }
                }
                // Dropped below: the last reference drops the entries.
                caches.push(cache);
            }
        }
        drop(stale);
        drop(caches);
    }

    /// The task owning `cache` exits: what it cached goes now, and the
    /// table forgets it.
    pub fn forget(&self, cache: &Arc<FdCache>) {
        let mut held = Vec::new();
        for way in &cache.ways {
            match way.state.try_lock() {
                Some(mut state) => {
                    way.fd.store(-1, Ordering::Relaxed);
                    held.extend(state.entry.take());
                }
                // Only a borrow alive across the exit could hold it.
                None => log::error!("fd cache way locked at thread exit"),
            }
        }
        cache.registered.store(false, Ordering::Relaxed);
        self.users
            .lock()
            .retain(|u| u.strong_count() > 0 && !core::ptr::eq(u.as_ptr(), Arc::as_ptr(cache)));
        drop(held);
    }

    /// The highest fd plus one that new descriptors may get.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Applies RLIMIT_NOFILE's soft limit `n` (clamped to `MAX_FDS`; open
    /// fds above it stay open, as on Linux).
    pub fn set_limit(&self, n: u64) {
        self.limit
            .store(n.min(MAX_FDS as u64) as usize, Ordering::Relaxed);
    }

    /// Installs `file` at the lowest free fd `>= min`.
    pub fn insert_from(&self, min: usize, file: FileRef, cloexec: bool) -> Result<i32, Errno> {
        let limit = self.limit();
        if min >= limit {
            return Err(Errno::EINVAL);
        }
        let mut slots = self.slots.write();
        let fd = match (min..slots.len()).find(|&i| slots[i].is_none()) {
            Some(fd) => fd,
            None => slots.len().max(min),
        };
        if fd >= limit {
            return Err(Errno::EMFILE);
        }
        if fd >= slots.len() {
            slots.resize(fd + 1, None);
        }
        slots[fd] = Some(Slot::new(file, cloexec));
        Ok(fd as i32)
    }

    /// Installs `file` at the lowest free fd.
    pub fn insert(&self, file: FileRef, cloexec: bool) -> Result<i32, Errno> {
        self.insert_from(0, file, cloexec)
    }

    /// Installs `file` at exactly `fd`, closing what was there (dup2).
    pub fn insert_at(&self, fd: i32, file: FileRef, cloexec: bool) -> Result<i32, Errno> {
        let i = usize::try_from(fd)
            .ok()
            .filter(|&i| i < self.limit())
            .ok_or(Errno::EBADF)?;
        let old = {
            let mut slots = self.slots.write();
            if i >= slots.len() {
                slots.resize(i + 1, None);
            }
            let old = slots[i].replace(Slot::new(file, cloexec));
            if old.as_ref().is_some_and(Slot::cached) {
                self.bump();
            }
            old
        };
        if old.as_ref().is_some_and(Slot::cached) {
            self.purge(Some(fd));
        }
        drop(old);
        Ok(fd)
    }

    /// Closes `fd`.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        let old = {
            let mut slots = self.slots.write();
            let old = usize::try_from(fd)
                .ok()
                .and_then(|i| slots.get_mut(i))
                .and_then(|s| s.take())
                .ok_or(Errno::EBADF)?;
            // A slot no cache was filled from is in no current way: the
            // close writes no line the other threads' lookups read.
            if old.cached() {
                self.bump();
            }
            old
        };
        if old.cached() {
            self.purge(Some(fd));
        }
        drop(old);
        Ok(())
    }

    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        let slots = self.slots.read();
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.cloexec)
            .ok_or(Errno::EBADF)
    }

    pub fn set_cloexec(&self, fd: i32, on: bool) -> Result<(), Errno> {
        let mut slots = self.slots.write();
        let s = usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)?;
        s.cloexec = on;
        Ok(())
    }
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

/// A process's current directory and umask.
pub struct FsContext {
    /// Interrupts off while held: never preempted holding it.
    cwd: crate::sched::IrqSpinLock<Arc<Inode>>,
    /// `structure=servers`: the working directory as a file-server handle
    /// (`None` when it is in one of the kernel's own file systems, `cwd`).
    remote_cwd: crate::sched::IrqSpinLock<Option<Arc<RemoteHandle>>>,
    umask: AtomicU32,
}

impl FsContext {
    /// cwd `/`, umask 022.
    pub fn new_root() -> FsContext {
        let remote = super::remote::active().then(|| Arc::new(RemoteHandle::root()));
        FsContext {
            cwd: crate::sched::IrqSpinLock::new(super::root_fs().root()),
            remote_cwd: crate::sched::IrqSpinLock::new(remote),
            umask: AtomicU32::new(0o022),
        }
    }

    pub fn fork_copy(&self) -> FsContext {
        FsContext {
            cwd: crate::sched::IrqSpinLock::new(self.cwd()),
            remote_cwd: crate::sched::IrqSpinLock::new(self.remote_cwd()),
            umask: AtomicU32::new(self.umask.load(Ordering::Relaxed)),
        }
    }

    pub fn cwd(&self) -> Arc<Inode> {
        self.cwd.lock().clone()
    }

    /// The working directory's server handle, if it is on the server.
    pub fn remote_cwd(&self) -> Option<Arc<RemoteHandle>> {
        self.remote_cwd.lock().clone()
    }

    /// A working directory in the kernel's file systems.
    pub fn set_cwd(&self, dir: Arc<Inode>) {
        let old = core::mem::replace(&mut *self.cwd.lock(), dir);
        drop(old);
        // Dropped after the lock: the last reference closes it (a call).
        let old_remote = self.remote_cwd.lock().take();
        drop(old_remote);
    }

    /// A working directory on the file server.
    pub fn set_remote_cwd(&self, dir: Arc<RemoteHandle>) {
        let old = self.remote_cwd.lock().replace(dir);
        drop(old);
    }

    /// Where `path` (relative to the working directory, or absolute)
    /// starts on the file server, with what keeps that handle alive;
    /// `None` when the kernel resolves it (`/dev`, `/proc`, or a working
    /// directory there).
    pub fn remote_start(&self, path: &str) -> Option<(Handle, Option<Arc<RemoteHandle>>)> {
        if path.starts_with('/') {
            return (!super::remote::kernel_path(path)).then(|| (super::remote::root(), None));
        }
        let cwd = self.remote_cwd()?;
        Some((cwd.handle, Some(cwd)))
    }

    pub fn umask(&self) -> u32 {
        self.umask.load(Ordering::Relaxed)
    }

    /// Sets the umask; returns the previous one.
    pub fn swap_umask(&self, mask: u32) -> u32 {
        self.umask.swap(mask & 0o777, Ordering::Relaxed)
    }
}
