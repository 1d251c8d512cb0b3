//! One-copy `read`/`write` of file-server files (`structure=servers`,
//! `servers.copy=one`, docs/SERVERS.md "Copy modes"): the data moves once,
//! between the server's page-cache pages and the user buffer, never
//! through a message.
//!
//! Owns: the copy loop of a read (`ReadPages`: one call per 1 MiB names
//! the pages of the range and how many bytes are valid) and of a write
//! (`WritePages` names pages made ready for the range, the kernel copies
//! the user's bytes into them, `WriteDone` commits the size and times).
//!
//! Grant lifetime, two guards:
//! - **The kernel pins** each named frame (`AddressSpace::pin_for_io`,
//!   the checks of `MapPages`: private anonymous read/write memory of the
//!   server, present) for the length of its copy, so even a server that
//!   frees or unmaps the page meanwhile cannot make the kernel read or
//!   write a frame that went to another process: the frame is freed only
//!   at the unpin.
//! - **The server keeps the page** a page of this file (`fs::Inode::
//!   grant_read`): a truncate racing the copy retires the pages it cuts
//!   instead of freeing them, until the last I/O handle of the file
//!   closes.  The kernel holds the open file (and so its handle) for the
//!   whole call, so no copy runs past that point.  A read racing a
//!   truncate therefore returns the bytes as they were before the
//!   truncate (the read is ordered first), never another file's data.
//!   A write racing a truncate is seen by `WriteDone` (`EAGAIN`: the
//!   truncate epoch changed) and those bytes are written again through a
//!   message, so the result is the write after the truncate.  A copy
//!   that faults before its first byte still ends its grant (an empty
//!   `WriteDone`); the server zeroes what a grant that ends copied past
//!   the end and did not commit (`fs::Inode::commit_write`).
//!
//! **Kept read grants** (`ReadCache`, one per open file description): the
//! pinned frames of the pages a read was granted, and what the reads
//! learnt about the size, stay with the description while the data epoch
//! (`remote::data_epoch`, bumped after every delegated call that may
//! change a size or fill a hole: writes, truncates, `O_TRUNC`, `MapPages`)
//! is unchanged; a read wholly covered by them needs no call at all.  A
//! store through a shared mapping lands in the same frames, so they stay
//! right.  The description's handle is open while its cache lives, so the
//! server keeps the pages (above); the pins go with the cache.  A read that
//! races a write or truncate and uses kept grants is ordered before it
//! (the epoch moves before that call returns).  A read that starts where
//! the last one ended asks for a whole window (`READ_AHEAD`, 1 MiB) in
//! its one call, so a sequential stream makes one call per window rather
//! than one per read; a grant that no longer fits the cache is kept as
//! the read-ahead window until the next one.
//!
//! **Why a hit must be cheap under TCG** (the wall-clock gap of issue 20):
//! a read served from kept grants makes no call, and under `icount` it ran
//! as few guest instructions as a monolithic read (`pread4k_private` 0.96×),
//! yet on the wall clock it was 0.7×.  Sampling the guest's `RIP` through
//! QEMU's monitor while the workload ran (wall-time weighted) showed no
//! TLB flush, fault, IPI or idle time per read (`vmstat`: 0 faults and 0
//! flushes per read; 1 flush per `ReadPages` call, from the server's
//! `munmap`); the time went to the hit path itself: `compiler_builtins`'
//! `memcpy` (~10 % of the time: a 16-frame array, ~270 bytes, moved by
//! value three times per read; TCG runs those loops far slower per
//! instruction than the block copy) and a pin and an unpin per page.  A
//! hit now takes one reference to the kept grant that covers it (`Run`, an
//! `Arc` of its frames) and copies from it: no per-page atomics, nothing
//! moved by value.  (The copy routine is the monolithic one: same cost per
//! byte in both samples.)  Under `icount`, servers/monolithic went from
//! 0.96 to 1.13 (`pread4k_private`) and from 0.85 to 1.00 (`seq_read`).
//!
//! What stays on the message path (`remote::pread`/`pwrite`): `O_APPEND`
//! writes (the server picks the offset and writes in one step, so
//! concurrent appenders do not overlap), empty transfers, and ranges that
//! reach past the largest offset (`i64::MAX`), so errors there stay those
//! of the two-copy path.
//!
//! Must not: hold a lock across a call or a copy (a fault on the user
//! buffer may call the server for a mapping of the same file), or use
//! `unsafe` (the copies are `UserSlice::write_from_frame` /
//! `read_into_frame`).

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use core::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use abi::fcntl::O_APPEND;
use abi::Errno;
use fsproto::{Handle, MAX_IO_BYTES};

use super::file::File;
use super::remote;
use crate::memory::vm::uaccess::UserAddr;
use crate::memory::vm::{self, AddressSpace, PinnedFrame};
use percpu::{CachePadded, MAX_CPUS};

const PAGE: u64 = vm::PAGE_SIZE;

/// One-copy calls in flight, counted on the CPU each began on (it may end
/// on another: only the sum means anything).  Per CPU so that a call
/// writes only its own CPU's line; read in full only by `suspend`.
static IN_FLIGHT: [CachePadded<AtomicI64>; MAX_CPUS] =
    [const { CachePadded::new(AtomicI64::new(0)) }; MAX_CPUS];

/// Set while the file server is being replaced (`suspend`..`resume`):
/// grants would name pages of an instance that may be gone, or of the
/// wrong one, so calls go through messages instead.
static SUSPENDED: AtomicBool = AtomicBool::new(false);

/// A one-copy call in flight (see `IN_FLIGHT`).
struct InFlight(usize);

impl InFlight {
    /// `None` while one-copy I/O is suspended.  Dekker with `suspend`:
    /// the count goes up before the flag is read, and the flag is set
    /// before the counts are read (all SeqCst), so either this call sees
    /// the flag or `suspend` sees this call.
    fn enter() -> Option<InFlight> {
        let cpu = crate::arch::cpu::id();
        IN_FLIGHT[cpu].fetch_add(1, Ordering::SeqCst);
        if SUSPENDED.load(Ordering::SeqCst) {
            IN_FLIGHT[cpu].fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(InFlight(cpu))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT[self.0].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops new one-copy calls (they go through messages) and waits until
/// the ones in flight have finished: then no call holds or asks for a
/// grant of the running instance.  For the switch of a server
/// replacement; `resume` ends it.
pub fn suspend() {
    SUSPENDED.store(true, Ordering::SeqCst);
    while IN_FLIGHT
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum::<i64>()
        != 0
    {
        crate::sched::sleep_ns(100_000);
    }
}

/// One-copy calls may start again (after `suspend`).
pub fn resume() {
    SUSPENDED.store(false, Ordering::SeqCst);
}

/// The file server's address space (where granted addresses point).
fn server() -> Result<Arc<AddressSpace>, Errno> {
    crate::proc::process::find_process(remote::server_pid())
        .and_then(|p| p.aspace())
        .ok_or(Errno::EIO)
}

/// Which way a copy goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Server pages -> user buffer (a read; holes give zeros).
    Out,
    /// User buffer -> server pages (a write).
    In,
}

/// A granted page: its pinned frame, or `None` for a hole (zeros).
type Frame = Option<PinnedFrame>;

/// Another pin of the same page (`None` inside when it has too many).
fn pin_again(f: &Frame) -> Option<Frame> {
    match f {
        Some(p) => p.pin_again().map(Some),
        None => Some(None),
    }
}

/// Pins the frames behind the granted addresses `addrs` (0: a hole, only
/// in a read).  `EIO` (logged) for an address that is not a page of the
/// server; `ENOMEM` when a frame has the most pins it can hold (many open
/// files keeping it): the caller then moves that piece in messages.
fn pin_all(server: &AddressSpace, addrs: &[u64]) -> Result<Vec<Frame>, Errno> {
    server.pin_many_for_io(addrs).map_err(|e| {
        if e == Errno::ENOMEM {
            return e;
        }
        log::warn!("servers: a grant named an address that is not a page of the server ({e:?})");
        Errno::EIO
    })
}

/// Copies `n` bytes of the file at `offset` between the pinned pages
/// `frames` (one per page the range touches) and the user buffer `buf`,
/// one piece per source and per destination page, so that a user page
/// that faults leaves every byte before it copied and counted.  Returns
/// the bytes copied and, when fewer than `n`, why (`EFAULT` for the user
/// buffer, `EIO` for a missing page).
fn copy(
    frames: &[Frame],
    offset: u64,
    n: usize,
    buf: UserAddr,
    dir: Dir,
) -> (usize, Option<Errno>) {
    let mut done = 0usize;
    let first = offset / PAGE;
    while done < n {
        let pos = offset + done as u64;
        let Some(frame) = frames.get((pos / PAGE - first) as usize) else {
            return (done, Some(Errno::EIO));
        };
        if frame.is_none() && dir == Dir::In {
            return (done, Some(Errno::EIO));
        }
        // The rest of this source page, piece by destination page.
        let page_end = ((pos / PAGE + 1) * PAGE - offset) as usize;
        let stop = page_end.min(n);
        while done < stop {
            let p = offset + done as u64;
            let dst = buf.offset(done as u64);
            let room = (PAGE - dst.raw() % PAGE) as usize;
            let len = room.min(stop - done);
            let in_page = (p % PAGE) as usize;
            let res = dst.slice(len).and_then(|s| match (frame, dir) {
                (Some(f), Dir::Out) => s.write_from_frame(f, in_page),
                (Some(f), Dir::In) => s.read_into_frame(f, in_page),
                (None, _) => s.zero(),
            });
            if res.is_err() {
                return (done, Some(Errno::EFAULT));
            }
            done += len;
        }
    }
    (done, None)
}

/// Most pages a description keeps grants of (beyond, later grants are
/// not kept, except the last one as the read-ahead window): a bound on
/// the frames one open file pins (16 MiB).  The pinned pages are pages the
/// server's cache holds anyway; a pin only delays their reuse after a
/// truncate, unlink or eviction until this description's next read or its
/// close.  Measured (wall clock, quiet host, 1 vCPU, `seq_read` over its
/// 8 MiB file, `comparison suite --systems ours,ours-servers --cores 1
/// --workloads seq_read --runs 3`): with 1024 pages half of each pass
/// went through a `ReadPages` call per MiB and servers/monolithic was
/// 0.74; with 4096 every read after the first pass is a hit: 1.22.  A
/// stream through a file larger than this bound still makes one call per
/// MiB past it (docs/SERVERS.md "Copy modes").
const CACHE_PAGES: usize = 4096;

/// Bytes a read that continues the previous one (a sequential stream) asks
/// the server for: the rest comes with the same call and is kept (the
/// read-ahead window), so a stream of 64 KiB reads costs one call per
/// 1 MiB, not one per read.  A read elsewhere asks for its own bytes only
/// (random reads of a large file would otherwise pin pages they never
/// use).
const READ_AHEAD: u64 = MAX_IO_BYTES;

/// One kept grant: the frames of its pages in order, shared by the cache
/// and the reads copying from it (a read holds the run, not a pin per
/// page: see `ReadCache`).
type Run = Arc<[Frame]>;

/// The pages of one read: `run[skip..skip + pages]`.
struct Piece {
    run: Run,
    skip: usize,
    pages: usize,
}

impl Piece {
    fn frames(&self) -> &[Frame] {
        &self.run[self.skip..self.skip + self.pages]
    }
}

/// Read grants kept by one open file description (see the module
/// comment): valid for data epoch `epoch` only.
///
/// A hit costs one reference of the run that covers it (`Run`, one atomic
/// add and one subtract) and one map lookup, whatever the number of pages:
/// it used to pin and unpin every page it copied and move a 16-page frame
/// array by value three times (`memcpy` of ~270 bytes, which under QEMU's
/// TCG runs as a byte loop), the largest cost of a 4 KiB `pread` hit after
/// the copy itself (docs/SERVERS.md "Copy modes", the wall-clock gap).
#[derive(Default)]
pub struct ReadCache {
    epoch: u64,
    /// The file is at least this long (the end of a granted read).
    at_least: u64,
    /// Its exact size, once a read came back short.
    eof: Option<u64>,
    /// Where the last read through this description ended: a read that
    /// starts there is sequential and reads ahead (`READ_AHEAD`).
    next: u64,
    /// Kept grants by first page index; they do not overlap (a grant that
    /// overlaps kept ones replaces them).  Filled until `CACHE_PAGES`, then
    /// kept as they are (a stream through a large file would only churn).
    runs: BTreeMap<u64, Run>,
    /// Pages in `runs`.
    kept: usize,
    /// The last grant that did not fit in `runs`: its first page index
    /// and its frames (replaced by the next such grant).
    window: Option<(u64, Run)>,
}

impl core::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ReadCache({} pages, window {})",
            self.kept,
            self.window.as_ref().map_or(0, |(_, w)| w.len())
        )
    }
}

/// `run` (from page `at`) as the piece for pages `first..first + pages`,
/// if it holds them all.
fn covering(at: u64, run: &Run, first: u64, pages: u64) -> Option<Piece> {
    let skip = first.checked_sub(at)?;
    (skip + pages <= run.len() as u64).then(|| Piece {
        run: run.clone(),
        skip: skip as usize,
        pages: pages as usize,
    })
}

impl ReadCache {
    /// The readable bytes of a read of `want` at `pos` and their frames,
    /// if one kept grant of `epoch` covers it.
    fn lookup(&mut self, epoch: u64, pos: u64, want: u64) -> Option<(usize, Piece)> {
        if self.epoch != epoch {
            *self = ReadCache {
                epoch,
                next: self.next,
                ..ReadCache::default()
            };
            return None;
        }
        let n = match self.eof {
            Some(eof) => want.min(eof.saturating_sub(pos)),
            None if pos.checked_add(want)? <= self.at_least => want,
            None => return None,
        };
        let first = pos / PAGE;
        let pages = fsproto::pages_spanned(pos, n);
        let piece = self
            .window
            .as_ref()
            .and_then(|(at, run)| covering(*at, run, first, pages))
            .or_else(|| {
                let (at, run) = self.runs.range(..=first).next_back()?;
                covering(*at, run, first, pages)
            })?;
        self.next = pos + n;
        Some((n as usize, piece))
    }

    /// How many bytes a read of `want` at `pos` that missed asks the
    /// server for: more when it continues the last read (`READ_AHEAD`).
    fn ask(&self, pos: u64, want: u64) -> u64 {
        if pos != self.next || want >= READ_AHEAD {
            return want;
        }
        // Not past the largest offset (the protocol refuses that range).
        let room = (i64::MAX as u64).saturating_sub(pos);
        READ_AHEAD.min(room).max(want)
    }

    /// Keeps the grant of a read of `want` at `pos` (of `epoch`) that gave
    /// `n` bytes in `run`: in `runs` while there is room (replacing kept
    /// grants it overlaps), else as the read-ahead window.
    fn insert(&mut self, epoch: u64, pos: u64, want: u64, n: u64, run: Run) {
        if self.epoch != epoch {
            // Data changed since (or before) this grant: keep nothing.
            return;
        }
        // What the size is learnt stays true for this epoch.
        self.at_least = self.at_least.max(pos + n);
        if n < want {
            self.eof = Some(pos + n);
        }
        if run.is_empty() {
            return;
        }
        let first = pos / PAGE;
        let end = first + run.len() as u64;
        let overlapping: Vec<u64> = self
            .runs
            .range(..end)
            .rev()
            .take_while(|(at, r)| *at + r.len() as u64 > first)
            .map(|(at, _)| *at)
            .collect();
        // Overlapping runs go in either case: their pages are in `run`.
        for at in overlapping {
            if let Some(r) = self.runs.remove(&at) {
                self.kept -= r.len();
            }
        }
        // A page with as many pins as kept grants may take
        // (`PinnedFrame::pin_again`) is not kept for long: the grant is
        // only the window then, replaced by the next one.
        if self.kept + run.len() > CACHE_PAGES || !run.iter().all(|f| pin_again(f).is_some()) {
            self.window = Some((first, run));
            return;
        }
        self.kept += run.len();
        self.runs.insert(first, run);
    }
}

/// Whether `count` bytes at `at` stay below the largest file offset (the
/// protocol refuses ranges past it; the message path answers those).
fn in_range(at: u64, count: usize) -> bool {
    at.checked_add(count as u64)
        .is_some_and(|e| e <= i64::MAX as u64)
}

/// The frames behind a read of `want` bytes at `pos`: from the kept
/// grants of `cache`, or granted by one `ReadPages` call (and kept),
/// which reads ahead when the read continues the last one.
fn grant(
    cache: &spin::Mutex<ReadCache>,
    handle: Handle,
    pos: u64,
    want: u64,
) -> Result<(usize, Piece), Errno> {
    let epoch = remote::data_epoch();
    let ask = {
        let mut c = cache.lock();
        if let Some(hit) = c.lookup(epoch, pos, want) {
            return Ok(hit);
        }
        c.ask(pos, want)
    };
    let (got, _, addrs) = remote::read_grant(handle, pos, ask)?;
    let frames = pin_all(&*server()?, &addrs)?;
    // This read's own bytes; the whole grant is kept (its pins become
    // the cache's: no page is pinned twice).
    let n = got.min(want as usize);
    let spanned = fsproto::pages_spanned(pos, n as u64) as usize;
    let run: Run = frames.into();
    let piece = Piece {
        run: run.clone(),
        skip: 0,
        pages: spanned,
    };
    let mut c = cache.lock();
    c.insert(epoch, pos, ask, got as u64, run);
    c.next = pos + n as u64;
    Ok((n, piece))
}

/// `read`/`pread64` of `count` (> 0) bytes of the server file `f` (handle
/// `handle`) into `buf`, at `offset` or at the file offset (advanced by
/// the bytes copied).  `None`: this call goes through messages instead.
/// A buffer that faults gives the bytes before the faulting page, or
/// `EFAULT`; an error after some bytes is a short read.
pub fn read(
    f: &File,
    handle: Handle,
    cache: &spin::Mutex<ReadCache>,
    buf: UserAddr,
    count: usize,
    offset: Option<u64>,
) -> Option<Result<usize, Errno>> {
    if !f.readable() {
        return Some(Err(Errno::EBADF));
    }
    let at = offset.unwrap_or_else(|| f.offset());
    if count == 0 || !in_range(at, count) {
        return None;
    }
    let _in_flight = InFlight::enter()?;
    let mut done = 0usize;
    let mut failed = None;
    while done < count {
        let want = (count - done).min(MAX_IO_BYTES as usize);
        let pos = at + done as u64;
        let dst = buf.offset(done as u64);
        let (n, took, err) = match grant(cache, handle, pos, want as u64) {
            Ok((n, piece)) => {
                let (took, err) = copy(piece.frames(), pos, n, dst, Dir::Out);
                (n, took, err)
            }
            Err(e) if e == Errno::ENOMEM => read_by_message(handle, pos, want, dst),
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        done += took;
        if err.is_some() {
            failed = err;
            break;
        }
        if n < want {
            break;
        }
    }
    Some(finish(f, offset, at, done, failed))
}

/// The end of a one-copy `read`/`write`: the file offset advances by the
/// bytes moved when the call used it; an error counts only when nothing
/// moved (a short count otherwise, as Linux).
fn finish(
    f: &File,
    offset: Option<u64>,
    at: u64,
    done: usize,
    failed: Option<Errno>,
) -> Result<usize, Errno> {
    if offset.is_none() {
        f.set_offset(at + done as u64);
    }
    match failed {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

/// `write`/`pwrite64` of `count` (> 0) bytes from `buf` to the server file
/// `f`, at `offset` or at the file offset (advanced by the bytes
/// written).  `None`: this call goes through messages instead (`O_APPEND`,
/// see the module comment).  A buffer that faults gives the bytes before
/// the faulting page, or `EFAULT`; an error after some bytes is a short
/// write.
pub fn write(
    f: &File,
    handle: Handle,
    buf: UserAddr,
    count: usize,
    offset: Option<u64>,
) -> Option<Result<usize, Errno>> {
    if !f.writable() {
        return Some(Err(Errno::EBADF));
    }
    if offset.is_none() && f.flags() & O_APPEND != 0 {
        return None;
    }
    let at = offset.unwrap_or_else(|| f.offset());
    if count == 0 || !in_range(at, count) {
        return None;
    }
    let _in_flight = InFlight::enter()?;
    let server = match server() {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let mut done = 0usize;
    let mut failed = None;
    while done < count {
        let want = (count - done).min(MAX_IO_BYTES as usize);
        let pos = at + done as u64;
        let src = buf.offset(done as u64);
        let (n, epoch, addrs) = match remote::write_grant(handle, pos, want as u64) {
            Ok(g) => g,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let frames = match pin_all(&server, &addrs) {
            Ok(f) => f,
            // Pages with the most pins they can hold: this piece in messages.
            Err(e) if e == Errno::ENOMEM => match rewrite(handle, pos, src, n) {
                Ok(m) => {
                    done += m;
                    if m < n || n < want {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            },
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let (took, err) = copy(&frames, pos, n, src, Dir::In);
        drop(frames);
        let mut written = took;
        if took == 0 {
            // Nothing copied: end the grant (an empty commit), so the
            // server forgets it now rather than at the handle's close.
            let _ = remote::write_done(handle, pos, 0, epoch);
        } else {
            match remote::write_done(handle, pos, took as u64, epoch) {
                Ok(_) => {}
                // A truncate came between grant and commit: the bytes may
                // have gone with a cut page; write them again in messages.
                Err(e) if e == Errno::EAGAIN => match rewrite(handle, pos, src, took) {
                    Ok(m) => written = m,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        done += written;
        if err.is_some() || written < took {
            failed = err.or(Some(Errno::EIO));
            break;
        }
        if n < want {
            break;
        }
    }
    Some(finish(f, offset, at, done, failed))
}

/// The two-copy read of at most `want` bytes at `pos` into `dst` (when
/// the pages cannot be pinned): (bytes read, bytes copied out, why fewer).
fn read_by_message(
    handle: Handle,
    pos: u64,
    want: usize,
    dst: UserAddr,
) -> (usize, usize, Option<Errno>) {
    let mut kbuf = match crate::memory::kbuf::zeroed(want) {
        Ok(b) => b,
        Err(e) => return (0, 0, Some(e)),
    };
    let n = match remote::pread(handle, pos, &mut kbuf[..want]) {
        Ok(n) => n,
        Err(e) => return (0, 0, Some(e)),
    };
    let mut took = 0;
    while took < n {
        let d = dst.offset(took as u64);
        let len = ((PAGE - d.raw() % PAGE) as usize).min(n - took);
        if d.write_bytes(&kbuf[took..took + len]).is_err() {
            return (n, took, Some(Errno::EFAULT));
        }
        took += len;
    }
    (n, took, None)
}

/// The two-copy write of `len` bytes of `src` at `pos` (after a commit
/// refused because of a truncate): bytes written.
fn rewrite(handle: Handle, pos: u64, src: UserAddr, len: usize) -> Result<usize, Errno> {
    let mut kbuf = crate::memory::kbuf::zeroed(len)?;
    src.read_bytes(&mut kbuf[..len])?;
    remote::pwrite(handle, pos, &kbuf[..len], false).map(|(n, _)| n)
}
