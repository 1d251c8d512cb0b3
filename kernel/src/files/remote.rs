//! The kernel's client of the user-mode file server (`structure=servers`,
//! docs/SERVERS.md "Kernel side / boot"): `fsproto` requests sent with
//! `ipc::kernel_call` to the endpoint registered as `SERVICE_FS`, on
//! behalf of the calling user thread.
//!
//! Owns: the boot-time switch (`active`), the root handle of the kernel's
//! client generation (`attach`), the server's pid (its own file calls are
//! refused, `EDEADLK`, instead of calling itself), server handles held by
//! the kernel (`RemoteHandle`: closed when the last reference goes, or
//! later if that close could not be sent), the copy mode
//! (`servers.copy=`, `one_copy`), the data epoch (bumped after every call
//! that may change file data's size or holes; `remote_io` keeps read
//! grants while it is unchanged), and one typed function per operation.
//!
//! Invariants: a server that is gone, or a reply that is not one the
//! operation can have, is `EIO` for the caller, never a panic; `EINTR`
//! (a signal during the wait) is passed on.  Handles are the kernel's
//! (one client for every process: the server sees `KERNEL_BADGE | pid`
//! and the file server maps every kernel badge to one client).
//!
//! Per-core: nothing here is per-CPU yet; the service lookup takes the
//! IPC registry's lock in shared mode (see `ipc::service`), and the
//! deferred-close list is a global lock touched only when a close could
//! not be sent (a counter is read on each call instead).  The data epoch
//! is one global counter written by every delegated write and truncate:
//! a reader on any CPU must see every writer's change (a per-file epoch
//! would be finer; see docs/SERVERS.md "Copy modes").
//!
//! Must not: hold a lock across a call, touch user memory (the system-call
//! layer copies), or use `unsafe`.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use abi::ipc::SERVICE_FS;
use abi::structs::{Stat as AbiStat, Statfs};
use abi::Errno;
use fsproto::{At, Cred, Cursor, Handle, MsgRef, NodeInfo, Reply, Request, Time, MAX_PAYLOAD};

/// Whether file-system calls go to the server (`structure=servers`); set
/// once at boot, before any user process runs.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The root handle of the kernel's client generation (0: not attached).
static ROOT: AtomicU64 = AtomicU64::new(0);
/// The file server's pid (0: none yet).
static SERVER_PID: AtomicI32 = AtomicI32::new(0);

/// Whether the file system runs in the server: the one branch the
/// monolithic hot paths pay.
#[inline(always)]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether `read`/`write` of server files copy once, between the
/// server's granted page-cache pages and the user buffer
/// (`servers.copy=one`, the default), or twice through messages.
static ONE_COPY: AtomicBool = AtomicBool::new(true);

/// Turns delegation on (boot, `structure=servers`), with the copy mode
/// of `servers.copy=`.
pub fn set_active(copy: crate::cmdline::ServerCopy) {
    let one = copy == crate::cmdline::ServerCopy::One;
    ONE_COPY.store(one, Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Relaxed);
    log::info!(
        "servers: file data copied {} (servers.copy={})",
        if one {
            "once, from granted page-cache pages"
        } else {
            "twice, through messages"
        },
        if one { "one" } else { "two" }
    );
}

/// Bumped after every delegated call that may change any file's size or
/// turn a hole into a page (writes, truncates, `O_TRUNC` opens, `MapPages`,
/// `Attach`): read grants kept by `remote_io::ReadCache` are valid only
/// while it is unchanged.  One global counter, not per CPU: a reader on
/// any CPU must see every writer's change before it trusts a kept grant.
static DATA_EPOCH: AtomicU64 = AtomicU64::new(1);

/// The current data epoch (see `DATA_EPOCH`).
pub fn data_epoch() -> u64 {
    DATA_EPOCH.load(Ordering::SeqCst)
}

/// A file's size or pages may have changed (see `DATA_EPOCH`).
pub fn data_changed() {
    DATA_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// Whether file data moves in one copy (`servers.copy=one`).
#[inline]
pub fn one_copy() -> bool {
    ONE_COPY.load(Ordering::Relaxed)
}

/// Records the server's pid (its own file calls are refused).
pub fn set_server_pid(pid: i32) {
    SERVER_PID.store(pid, Ordering::Relaxed);
}

/// The file server's pid (0: none yet): whose address space holds the
/// pages `MapPages` names.
pub fn server_pid() -> i32 {
    SERVER_PID.load(Ordering::Relaxed)
}

/// The root directory's handle.
pub fn root() -> Handle {
    Handle(ROOT.load(Ordering::Acquire))
}

/// Handles whose close could not be sent (the caller was interrupted, as
/// an exiting process is); sent before the next call.
static DEFERRED: spin::Mutex<Vec<u64>> = spin::Mutex::new(Vec::new());
static DEFERRED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Objects holding handles whose drop would call the server, dropped from
/// a context that must not (`remote_map`: a mapping's file, freed with
/// the last VMA, maybe while an address space is torn down in the
/// scheduler); dropped before the next call.
static DEFERRED_DROPS: spin::Mutex<Vec<Box<dyn Any + Send>>> = spin::Mutex::new(Vec::new());

/// One call: `req` out, the reply decoded and handed to `f` (`None` from
/// `f`, or a malformed reply, is `EIO`).
fn with<T>(req: &Request<'_>, f: impl FnOnce(Reply<'_>) -> Option<T>) -> Result<T, Errno> {
    call(req.op(), || req.encode(), f)
}

/// A call whose payload is `path`'s own buffer: the request's label
/// and words from `Request::path_words` (computed while the request
/// borrowed `path`), so a path the system-call layer read from user
/// memory straight into its buffer is not copied again.
fn with_path<T>(
    op: fsproto::Op,
    words: Option<Result<(u64, [u64; 4]), Errno>>,
    path: String,
    f: impl FnOnce(Reply<'_>) -> Option<T>,
) -> Result<T, Errno> {
    // `path_words` is `None` only for requests without a lone path.
    let (label, words) = words.ok_or(Errno::EINVAL)??;
    call(
        op,
        || {
            Ok(fsproto::Message {
                label,
                words,
                payload: path.into_bytes(),
            })
        },
        f,
    )
}

/// One call of operation `op` with the message `encode` makes.
fn call<T>(
    op: fsproto::Op,
    encode: impl FnOnce() -> Result<fsproto::Message, Errno>,
    f: impl FnOnce(Reply<'_>) -> Option<T>,
) -> Result<T, Errno> {
    let me = crate::proc::current_task().map_or(0, |t| t.process.pid);
    if me != 0 && me == SERVER_PID.load(Ordering::Relaxed) {
        // The server would wait for itself.
        return Err(Errno::EDEADLK);
    }
    if DEFERRED_COUNT.load(Ordering::Relaxed) != 0 {
        flush_deferred();
    }
    let m = encode()?;
    // The encoded payload moves to the server and its reply comes back
    // as it was made: no receive buffer, no copy (`delegate_call_msg`).
    let reply = crate::ipc::delegate_call_msg(
        SERVICE_FS,
        &op,
        crate::ipc::Message {
            label: m.label,
            words: m.words,
            bytes: m.payload,
        },
        MAX_PAYLOAD,
    )?;
    let msg = MsgRef {
        label: reply.label,
        words: reply.words,
        payload: &reply.bytes,
    };
    match Reply::decode(op, msg) {
        Ok(Ok(reply)) => f(reply).ok_or(Errno::EIO),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            log::warn!("servers: malformed reply to {op:?} (EIO)");
            Err(Errno::EIO)
        }
    }
}

fn done(req: &Request<'_>) -> Result<(), Errno> {
    with(req, |r| matches!(r, Reply::Done).then_some(()))
}

/// Sends the closes that could not be sent earlier.
fn flush_deferred() {
    let drops = {
        let saved = crate::arch::irq::save_disable();
        let d = core::mem::take(&mut *DEFERRED_DROPS.lock());
        crate::arch::irq::restore(saved);
        d
    };
    DEFERRED_COUNT.fetch_sub(drops.len(), Ordering::Relaxed);
    drop(drops);
    let handles = {
        let saved = crate::arch::irq::save_disable();
        let h = core::mem::take(&mut *DEFERRED.lock());
        crate::arch::irq::restore(saved);
        h
    };
    DEFERRED_COUNT.fetch_sub(handles.len(), Ordering::Relaxed);
    for h in handles {
        send_close(Handle(h));
    }
}

/// Drops `obj` (which holds server handles) before the next call to the
/// server instead of now: for drops in contexts that must not block.
pub fn defer_drop(obj: Box<dyn Any + Send>) {
    let saved = crate::arch::irq::save_disable();
    DEFERRED_DROPS.lock().push(obj);
    crate::arch::irq::restore(saved);
    DEFERRED_COUNT.fetch_add(1, Ordering::Relaxed);
}

/// `MapPages`: the server's addresses of pages `index ..` (at most
/// `count`, at least one; fewer at the end of the file) of `handle`.
pub fn map_pages(handle: Handle, index: u64, count: u32) -> Result<Vec<u64>, Errno> {
    // Holes in the window get pages.
    let _bump = Bump;
    with(
        &Request::MapPages {
            handle,
            index,
            count,
        },
        |r| match r {
            Reply::Pages(p) if p.len() / 8 <= count as usize => {
                Some(fsproto::page_addrs(p).collect())
            }
            _ => None,
        },
    )
}

/// A grant reply: bytes the caller may copy, truncate epoch, page
/// addresses in the server (0: a hole).
pub type Grant = (usize, u64, Vec<u64>);

fn grant_reply(req: &Request<'_>, offset: u64, asked: u64) -> Result<Grant, Errno> {
    with(req, |r| match r {
        // As many pages as the bytes span, never more bytes than asked.
        Reply::Grant { len, epoch, pages }
            if len <= asked && pages.len() as u64 / 8 == fsproto::pages_spanned(offset, len) =>
        {
            Some((len as usize, epoch, fsproto::page_addrs(pages).collect()))
        }
        _ => None,
    })
}

/// `ReadPages`: the pages behind at most `len` (≤ `MAX_IO_BYTES`) bytes
/// at `offset` (fewer bytes only at the end of the file).
pub fn read_grant(handle: Handle, offset: u64, len: u64) -> Result<Grant, Errno> {
    grant_reply(
        &Request::ReadPages {
            handle,
            offset,
            len,
        },
        offset,
        len,
    )
}

/// `WritePages`: pages ready for at most `len` (1..=`MAX_IO_BYTES`) bytes
/// at `offset`.
pub fn write_grant(handle: Handle, offset: u64, len: u64) -> Result<Grant, Errno> {
    grant_reply(
        &Request::WritePages {
            handle,
            offset,
            len,
        },
        offset,
        len,
    )
}

/// `WriteDone`: `count` bytes were copied to `offset`; the offset after
/// them (`EAGAIN`: a truncate came in between, write again).
pub fn write_done(handle: Handle, offset: u64, count: u64, epoch: u64) -> Result<u64, Errno> {
    let _bump = Bump;
    with(
        &Request::WriteDone {
            handle,
            offset,
            count,
            epoch,
        },
        |r| match r {
            Reply::Written { count: c, end } if c == count => Some(end),
            _ => None,
        },
    )
}

/// Calls `data_changed` when dropped: after the call it guards, whatever
/// its result (an interrupted call may still have been done).
struct Bump;

impl Drop for Bump {
    fn drop(&mut self) {
        data_changed();
    }
}

/// Drops a handle at the server; when the close cannot be sent now (a
/// signal, an exiting caller), it is sent before the next call.
///
/// The last reference of an open file can go where nothing may block: a
/// dead thread's process is freed in the scheduler's switch path with
/// interrupts off (`sched::may_block`), so the close is deferred there
/// too.  `DEFERRED` is taken with interrupts off everywhere, since that
/// path can take it on a CPU whose interrupted thread holds it.
///
/// A close first waits in this CPU's `PENDING_CLOSE` slot and rides on
/// the next `Open` sent from this CPU (`Request::Open::close`): a pair of
/// `open` and `close` costs one round trip, not two.  Only the handle it
/// displaces from the slot is sent now (or deferred as above).
pub fn close(handle: Handle) {
    let slot = PENDING_CLOSE.remote(crate::arch::cpu::id());
    let displaced = slot.swap(handle.0, Ordering::AcqRel);
    if displaced != 0 {
        send_close(Handle(displaced));
    }
}

/// Sends `Close` now, or defers it (see `close`).
fn send_close(handle: Handle) {
    let result = if crate::sched::may_block() {
        done(&Request::Close { handle })
    } else {
        Err(Errno::EDEADLK)
    };
    match result {
        Err(e) if e == Errno::EINTR || e == Errno::EDEADLK => defer_close(handle),
        _ => {}
    }
}

/// Per CPU: a handle whose close waits for the next `Open` sent from this
/// CPU (0: none).  At most one per CPU, so at most that many handles stay
/// open at the server after their last reference went; only `Umount`
/// observes them (a busy mount), and it sends them first
/// (`flush_pending_closes`).  The server's handles are the kernel's
/// alone; a truncated file's retired pages are freed one open later.  Per CPU,
/// not one global slot: every `close` and `open` swaps it.  A thread that
/// moved to another CPU meanwhile only uses that CPU's slot (the swaps
/// are atomic either way).
static PENDING_CLOSE: percpu::PerCpu<AtomicU64> = percpu::per_cpu!(AtomicU64::new(0));

/// Takes this CPU's pending close for an `Open` to carry (0: none).
fn take_pending_close() -> Handle {
    let slot = PENDING_CLOSE.remote(crate::arch::cpu::id());
    if slot.load(Ordering::Relaxed) == 0 {
        return Handle(0);
    }
    Handle(slot.swap(0, Ordering::AcqRel))
}

/// Sends every CPU's pending close now: before a call whose answer
/// depends on which files are open (`Umount`: `EBUSY` while one is).
fn flush_pending_closes() {
    for slot in PENDING_CLOSE.iter() {
        if slot.load(Ordering::Relaxed) != 0 {
            let h = slot.swap(0, Ordering::AcqRel);
            if h != 0 {
                send_close(Handle(h));
            }
        }
    }
}

/// A carried close whose `Open` was not sent (`EINTR` before the server
/// took it, or `EDEADLK`): sent before the next call instead.
fn defer_close(handle: Handle) {
    let saved = crate::arch::irq::save_disable();
    DEFERRED.lock().push(handle.0);
    crate::arch::irq::restore(saved);
    DEFERRED_COUNT.fetch_add(1, Ordering::Relaxed);
}

/// A handle the kernel holds for an open file description or a working
/// directory: closed at the server when the last reference goes (the root
/// handle is never closed).
#[derive(Debug)]
pub struct RemoteHandle {
    pub handle: Handle,
    /// `st_mode` when it was opened (the type does not change).
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
    owned: bool,
    /// Read grants kept for this open file (`remote_io::ReadCache`).
    pub cache: spin::Mutex<super::remote_io::ReadCache>,
    /// `read`/`write` at the file offset run one at a time (`PosLock`).
    pub pos_lock: PosLock,
}

/// Linux's `f_pos_lock` for a file-server file: the offset is read, the
/// server called and the offset advanced with no spin lock held across the
/// call, so two threads sharing one open file description would otherwise
/// both read (or write) at the same offset.  `read`/`write`/`readv`/`writev`
/// at the file offset hold it across the whole call; `pread`/`pwrite` do
/// not take it.  A sleeping lock (the holder waits for the server);
/// uncontended it is one compare-and-swap and one store plus a look at an
/// empty wait queue.  Per open file description, so never shared between
/// unrelated files: nothing per-CPU to gain.
#[derive(Default)]
pub struct PosLock {
    busy: AtomicBool,
    waiters: crate::sched::WaitQueue,
}

impl core::fmt::Debug for PosLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PosLock({})", self.busy.load(Ordering::Relaxed))
    }
}

/// Held offset lock of a file-server file; released on drop.
pub struct PosGuard<'a>(&'a PosLock);

impl PosLock {
    /// Waits (not interruptibly, as Linux's `f_pos_lock`) until the
    /// description's offset is free and takes it.  The holder is in a
    /// server call that ends (a pending kill makes it `EINTR`), so the wait
    /// ends too.
    pub fn lock(&self) -> PosGuard<'_> {
        loop {
            if self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return PosGuard(self);
            }
            self.waiters
                .wait_until(|| !self.busy.load(Ordering::Acquire));
        }
    }
}

impl Drop for PosGuard<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        // A waiter checks `busy` under the queue's lock, which `wake_one`
        // takes after this store: no wakeup is lost.
        self.0.waiters.wake_one();
    }
}

impl RemoteHandle {
    pub fn new(handle: Handle, info: NodeInfo) -> RemoteHandle {
        RemoteHandle {
            handle,
            mode: info.mode,
            ino: info.ino,
            dev: info.dev,
            owned: true,
            cache: spin::Mutex::new(Default::default()),
            pos_lock: PosLock::default(),
        }
    }

    /// The root directory (not closed on drop).
    pub fn root() -> RemoteHandle {
        RemoteHandle {
            handle: root(),
            mode: 0o040755,
            ino: 0,
            dev: 0,
            owned: false,
            cache: spin::Mutex::new(Default::default()),
            pos_lock: PosLock::default(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    pub fn is_regular(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }
}

impl Drop for RemoteHandle {
    fn drop(&mut self) {
        if self.owned {
            close(self.handle);
        }
    }
}

/// Starts the kernel's client generation: every handle of an earlier one
/// goes stale; the new root handle is kept.
pub fn attach() -> Result<Handle, Errno> {
    let _bump = Bump;
    // Closes waiting for an `Open` name handles of the generation that
    // ends here.
    for slot in PENDING_CLOSE.iter() {
        slot.store(0, Ordering::Relaxed);
    }
    let (h, _) = handle_reply(&Request::Attach)?;
    ROOT.store(h.0, Ordering::Release);
    Ok(h)
}

fn handle_reply(req: &Request<'_>) -> Result<(Handle, NodeInfo), Errno> {
    with(req, |r| match r {
        Reply::Handle { handle, info } => Some((handle, info)),
        _ => None,
    })
}

/// `Open` of `path` (its buffer is the request's payload, see `with_path`).
pub fn open(dir: Handle, path: String, flags: u32, mode: u32) -> Result<RemoteHandle, Errno> {
    let _bump = (flags & abi::fcntl::O_TRUNC != 0).then_some(Bump);
    let close = take_pending_close();
    let words = Request::Open {
        dir,
        path: &path,
        flags: flags & fsproto::OPEN_FLAGS,
        mode,
        close,
    }
    .path_words();
    let r = with_path(fsproto::Op::Open, words, path, |r| match r {
        Reply::Handle { handle, info } => Some((handle, info)),
        _ => None,
    });
    if close.0 != 0 && matches!(r, Err(e) if e == Errno::EINTR || e == Errno::EDEADLK) {
        // Not sent: the close goes with the next call.
        defer_close(close);
    }
    let (h, info) = r?;
    Ok(RemoteHandle::new(h, info))
}

/// `pread` of at most `out.len()` bytes, in `MAX_PAYLOAD` pieces; stops at
/// the end of the file (an error after some bytes is a short read).
pub fn pread(handle: Handle, offset: u64, out: &mut [u8]) -> Result<usize, Errno> {
    let mut done_bytes = 0usize;
    loop {
        let want = (out.len() - done_bytes).min(MAX_PAYLOAD);
        let at = offset.saturating_add(done_bytes as u64);
        let dst = &mut out[done_bytes..done_bytes + want];
        let got = with(
            &Request::Read {
                handle,
                offset: at,
                len: want as u32,
            },
            |r| match r {
                Reply::Data(d) if d.len() <= dst.len() => {
                    dst[..d.len()].copy_from_slice(d);
                    Some(d.len())
                }
                _ => None,
            },
        );
        match got {
            Ok(n) => {
                done_bytes += n;
                if n < want || done_bytes >= out.len() {
                    return Ok(done_bytes);
                }
            }
            Err(_) if done_bytes > 0 => return Ok(done_bytes),
            Err(e) => return Err(e),
        }
    }
}

/// `pwrite` (or an append) in `MAX_PAYLOAD` pieces: bytes written and the
/// offset after them.
pub fn pwrite(
    handle: Handle,
    offset: u64,
    data: &[u8],
    append: bool,
) -> Result<(usize, u64), Errno> {
    let _bump = Bump;
    let mut written = 0usize;
    let mut end = offset;
    loop {
        let piece = &data[written..(written + MAX_PAYLOAD).min(data.len())];
        let r = with(
            &Request::Write {
                handle,
                offset: end,
                append,
                data: piece,
            },
            |r| match r {
                Reply::Written { count, end } if count as usize <= piece.len() => {
                    Some((count as usize, end))
                }
                _ => None,
            },
        );
        match r {
            Ok((n, e)) => {
                written += n;
                end = e;
                if n < piece.len() || written >= data.len() {
                    return Ok((written, end));
                }
            }
            Err(_) if written > 0 => return Ok((written, end)),
            Err(e) => return Err(e),
        }
    }
}

/// The server's `struct stat` as the `fs` crate's `Stat` (what the
/// system-call layer formats for `stat` and `statx`).
pub fn fs_stat(st: &AbiStat) -> ::fs::Stat {
    let ts = |sec: i64, nsec: i64| ::fs::Timespec {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    };
    ::fs::Stat {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size.max(0) as u64,
        blksize: st.st_blksize.clamp(0, u32::MAX as i64) as u32,
        blocks: st.st_blocks.max(0) as u64,
        atime: ts(st.st_atime, st.st_atime_nsec),
        mtime: ts(st.st_mtime, st.st_mtime_nsec),
        ctime: ts(st.st_ctime, st.st_ctime_nsec),
    }
}

pub fn stat(at: At<'_>) -> Result<::fs::Stat, Errno> {
    stat_abi(at).map(|s| fs_stat(&s))
}

/// `Stat` as the server sent it: Linux's `struct stat`, which the
/// `stat` system calls copy out as it is.
pub fn stat_abi(at: At<'_>) -> Result<AbiStat, Errno> {
    with(&Request::Stat { at }, |r| match r {
        Reply::Stat(s) => Some(s),
        _ => None,
    })
}

/// `Stat` of `path` from `dir` with `flags` (`AT_SYMLINK_NOFOLLOW`); the
/// path's buffer is the request's payload (`with_path`).  The reply as
/// the server sent it (see `stat_abi`).
pub fn stat_path(dir: Handle, path: String, flags: u32) -> Result<AbiStat, Errno> {
    let words = Request::Stat {
        at: At {
            dir,
            path: &path,
            flags,
        },
    }
    .path_words();
    with_path(fsproto::Op::Stat, words, path, |r| match r {
        Reply::Stat(s) => Some(s),
        _ => None,
    })
}

pub fn statfs(at: At<'_>) -> Result<Statfs, Errno> {
    with(&Request::Statfs { at }, |r| match r {
        Reply::Statfs(s) => Some(s),
        _ => None,
    })
}

pub fn truncate(at: At<'_>, size: u64) -> Result<(), Errno> {
    let _bump = Bump;
    done(&Request::Truncate { at, size })
}

pub fn mkdir(dir: Handle, path: &str, mode: u32) -> Result<(), Errno> {
    done(&Request::Mkdir { dir, path, mode })
}

pub fn mknod(dir: Handle, path: &str, mode: u32, rdev: u64) -> Result<(), Errno> {
    done(&Request::Mknod {
        dir,
        path,
        mode,
        rdev,
    })
}

pub fn unlink(dir: Handle, path: &str, flags: u32) -> Result<(), Errno> {
    done(&Request::Unlink { dir, path, flags })
}

pub fn rename(
    old_dir: Handle,
    old: &str,
    new_dir: Handle,
    new: &str,
    flags: u32,
) -> Result<(), Errno> {
    done(&Request::Rename {
        old_dir,
        old,
        new_dir,
        new,
        flags,
    })
}

pub fn link(
    old_dir: Handle,
    old: &str,
    new_dir: Handle,
    new: &str,
    flags: u32,
) -> Result<(), Errno> {
    done(&Request::Link {
        old_dir,
        old,
        new_dir,
        new,
        flags,
    })
}

pub fn symlink(target: &str, dir: Handle, path: &str) -> Result<(), Errno> {
    done(&Request::Symlink { target, dir, path })
}

pub fn readlink(at: At<'_>) -> Result<String, Errno> {
    with(&Request::Readlink { at }, |r| match r {
        Reply::Text(t) => Some(t.to_string()),
        _ => None,
    })
}

/// A directory cursor as plain parts: position, state word, resume name.
pub type CursorParts = (u64, u64, String);

/// One `getdents64` call from the cursor (`position`, `state`, resume
/// name): the `linux_dirent64` records and the cursor after them.
pub fn getdents(
    handle: Handle,
    cursor: (u64, u64, &str),
    max: usize,
) -> Result<(Vec<u8>, CursorParts), Errno> {
    with(
        &Request::Getdents {
            handle,
            cursor: Cursor {
                position: cursor.0,
                state: cursor.1,
                after: cursor.2,
            },
            max: max.min(fsproto::MAX_DENTS) as u32,
        },
        |r| match r {
            Reply::Dents { records, cursor } => Some((
                records.to_vec(),
                (cursor.position, cursor.state, cursor.after.to_string()),
            )),
            _ => None,
        },
    )
}

pub fn chmod(at: At<'_>, mode: u32) -> Result<(), Errno> {
    done(&Request::Chmod { at, mode })
}

pub fn chown(at: At<'_>, uid: Option<u32>, gid: Option<u32>, cred: Cred) -> Result<(), Errno> {
    done(&Request::Chown { at, uid, gid, cred })
}

pub fn utimens(at: At<'_>, atime: Time, mtime: Time) -> Result<(), Errno> {
    done(&Request::Utimens { at, atime, mtime })
}

pub fn fsync(handle: Handle, whole_fs: bool) -> Result<(), Errno> {
    done(&Request::Fsync { handle, whole_fs })
}

pub fn sync() -> Result<(), Errno> {
    done(&Request::Sync)
}

/// `mount` on the server's tree: a new tmpfs, or the ext2 image on the
/// server's block device `device` (`ENODEV` from a server without it).
pub fn mount(dir: Handle, path: &str, kind: fsproto::MountKind) -> Result<(), Errno> {
    done(&Request::Mount { dir, path, kind })
}

/// `umount2` of the server file system whose root `path` names.
pub fn umount(dir: Handle, path: &str) -> Result<(), Errno> {
    // A file closed in the mount must not keep it busy: closes waiting
    // for an `Open` (`PENDING_CLOSE`) go now.
    flush_pending_closes();
    done(&Request::Umount { dir, path })
}

pub fn access(at: At<'_>, mode: u32, cred: Cred) -> Result<(), Errno> {
    done(&Request::Access { at, mode, cred })
}

pub fn path_of(handle: Handle) -> Result<String, Errno> {
    with(&Request::PathOf { handle }, |r| match r {
        Reply::Text(t) => Some(t.to_string()),
        _ => None,
    })
}

/// The whole regular file `path` (from `dir`) for `execve`, in pieces of
/// at most 1 MiB (the kernel heap gives no larger contiguous blocks):
/// `EACCES` for a directory, a non-regular file or one without an execute
/// bit.
pub fn read_program(dir: Handle, path: &str) -> Result<Vec<Vec<u8>>, Errno> {
    const PIECE: usize = 1 << 20;
    let file = open(dir, path.into(), abi::fcntl::O_RDONLY, 0)?;
    if !file.is_regular() || file.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    let size = stat(At::handle(file.handle))?.size;
    let mut pieces = Vec::new();
    let mut at = 0u64;
    while at < size {
        let n = ((size - at) as usize).min(PIECE);
        let mut piece = Vec::new();
        piece.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
        piece.resize(n, 0);
        let got = pread(file.handle, at, &mut piece)?;
        if got == 0 {
            break;
        }
        piece.truncate(got);
        at += got as u64;
        pieces.push(piece);
    }
    Ok(pieces)
}

/// The prefix mount table of the delegation layer: absolute paths under
/// these directories stay with the kernel's own file systems (devices and
/// `/proc`); every other path goes to the server.
pub const KERNEL_PREFIXES: [&str; 2] = ["dev", "proc"];

/// Whether the absolute path `path` names something the kernel serves.
pub fn kernel_path(path: &str) -> bool {
    let rest = path.trim_start_matches('/');
    let first = rest.split('/').next().unwrap_or("");
    KERNEL_PREFIXES.contains(&first)
}

/// Whether the absolute path `path` is one of the kernel's mount points
/// itself (`/dev`, `/proc`): renaming it or over it is `EBUSY`, as for a
/// mount point on Linux.
pub fn kernel_mount_point(path: &str) -> bool {
    let rest = path.trim_start_matches('/').trim_end_matches('/');
    path.starts_with('/') && KERNEL_PREFIXES.contains(&rest)
}
