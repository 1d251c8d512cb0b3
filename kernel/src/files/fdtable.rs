//! Per-process descriptor tables (`FdTable`) and file-system context
//! (`FsContext`: current directory and umask).
//!
//! Owns the fd -> open-file mapping.  Invariants: an fd names at most one
//! open file; new fds are the lowest free number (POSIX); at most
//! `MAX_FDS` are open.  The table lock is a per-process reader-writer lock
//! (class `fd_table`): processes never share it; threads of one process
//! share it, and their lookups only read-lock it.
//!
//! Must not: drop an open file while holding the table lock (closing a
//! pipe end wakes threads), or block.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ::fs::lockstat::{LockClass, RwLock};
use ::fs::Inode;

use super::file::{File, FileRef};
use super::remote::RemoteHandle;
use abi::Errno;
use fsproto::Handle;

/// Highest number of open descriptors (RLIMIT_NOFILE's usual soft limit).
pub const MAX_FDS: usize = 1024;

#[derive(Clone)]
struct Slot {
    file: FileRef,
    cloexec: bool,
}

/// A process's open descriptors.
pub struct FdTable {
    /// Read-locked by lookups (`get`), so threads of one process look up
    /// descriptors in parallel; written by open/close/dup.
    slots: RwLock<Vec<Option<Slot>>>,
    /// RLIMIT_NOFILE's soft limit (at most `MAX_FDS`): new fds stay below
    /// it.  Set by setrlimit/prlimit64, copied at fork.
    limit: AtomicUsize,
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable {
            slots: RwLock::new(LockClass::FdTable, Vec::new()),
            limit: AtomicUsize::new(MAX_FDS),
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
        }
        drop(closed);
    }

    /// Closes every descriptor (process exit).
    pub fn release(&self) {
        let all = core::mem::take(&mut *self.slots.write());
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

    /// The open file of `fd`.
    ///
    /// Cost today: the table's read lock (two writes of one line every
    /// thread of the process shares) and an `Arc` clone and drop (the
    /// file's line, shared by threads using the same fd) per call.  The
    /// `Arc` is what keeps the `File` alive when another thread closes
    /// `fd` mid-call.  A refcount-free design that keeps that guarantee
    /// (not built yet):
    ///
    /// * the table gets a generation counter, bumped (under the write
    ///   lock) whenever a slot that held a file changes (close, dup2 over,
    ///   close-on-exec, exit);
    /// * each task keeps a small cache `(table, fd, generation, Arc<File>)`
    ///   filled by this slow path, plus a `busy` flag on its own line;
    /// * fast path: store `busy = true` (SeqCst), load the generation; if
    ///   it equals the cached one, borrow `&File` from the cache, with no
    ///   shared write; clear `busy` when the call ends, then drop the entry
    ///   if the generation moved meanwhile;
    /// * a closer, after bumping the generation, looks (read only) at the
    ///   caches of the tasks sharing the table; for an entry holding the
    ///   closed file whose task is not `busy` (SeqCst load; Dekker with the
    ///   fast path's store-then-load), it takes the entry out under that
    ///   cache's lock and drops it, so the last reference goes at once as
    ///   now; a `busy` task drops it itself at the end of its call, as
    ///   Linux drops an in-flight `fget` reference.
    ///
    /// `LockMode::Global` keeps this slow path (the ablation).
    pub fn get(&self, fd: i32) -> Result<FileRef, Errno> {
        let slots = self.slots.read();
        usize::try_from(fd)
            .ok()
            .and_then(|i| slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
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
        slots[fd] = Some(Slot { file, cloexec });
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
            slots[i].replace(Slot { file, cloexec })
        };
        drop(old);
        Ok(fd)
    }

    /// Closes `fd`.
    pub fn close(&self, fd: i32) -> Result<(), Errno> {
        let old = {
            let mut slots = self.slots.write();
            usize::try_from(fd)
                .ok()
                .and_then(|i| slots.get_mut(i))
                .and_then(|s| s.take())
                .ok_or(Errno::EBADF)?
        };
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
