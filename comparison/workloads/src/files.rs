//! The file workloads: metadata (open, create/unlink, stat, readdir) and
//! data (pread, append, sequential write/read, reads through a mapping).
//!
//! Layout under the workload's directory D (made by `setup_*`, removed by
//! main.rs after the run):
//!   D/shared/        one directory every worker uses (shared names go here)
//!   D/shared/file    1 MiB, read by every worker (the shared file)
//!   D/pW/            worker W's own directory
//!   D/pW/file        1 MiB, read only by worker W (a private file)
//!   D/pW/big         the sequential-read file (seq_read only)
//!   D/dir1000/       1000 empty files f0000..f0999 (readdir_1000 only)
//! Invariants: an operation allocates nothing (paths are made before the
//! loop) and leaves the tree as it found it, except append4k, seq_write and
//! write4k_fsync, which keep their file below a bound.  It must not write a shared file.

use crate::sys::{self, cpath, Fail, Res};
use crate::workload::{Ctx, Op};
use std::ffi::CString;

/// Size of the small data files (`file`).
const SMALL_BYTES: usize = 1 << 20;
/// Pages in a small file.
const SMALL_PAGES: u64 = (SMALL_BYTES / 4096) as u64;
/// Block of the sequential workloads.
const SEQ_BLOCK: usize = 64 * 1024;
/// append4k truncates its file back to 0 every this many appends (1 MiB).
const APPENDS_PER_TRUNCATE: u64 = 256;

fn private_dir(ctx: &Ctx, w: usize) -> String {
    format!("{}/p{w}", ctx.dir)
}

fn write_file(path: &str, bytes: usize, fill: u8) -> Res<()> {
    std::fs::write(path, vec![fill; bytes]).map_err(|e| Fail {
        what: format!("writing {path}: {e}"),
        errno: e.raw_os_error().unwrap_or(0),
    })
}

fn make_dir(path: &str) -> Res<()> {
    std::fs::create_dir(path).map_err(|e| Fail {
        what: format!("mkdir {path}: {e}"),
        errno: e.raw_os_error().unwrap_or(0),
    })
}

/// The shared directory and file, and each worker's directory and file.
pub fn setup_small(ctx: &Ctx) -> Res<()> {
    make_dir(&format!("{}/shared", ctx.dir))?;
    write_file(&format!("{}/shared/file", ctx.dir), SMALL_BYTES, 0x5a)?;
    for w in 0..ctx.workers {
        make_dir(&private_dir(ctx, w))?;
        write_file(
            &format!("{}/file", private_dir(ctx, w)),
            SMALL_BYTES,
            w as u8,
        )?;
    }
    Ok(())
}

/// `setup_small` plus each worker's big file.
pub fn setup_big(ctx: &Ctx) -> Res<()> {
    setup_small(ctx)?;
    for w in 0..ctx.workers {
        write_file(
            &format!("{}/big", private_dir(ctx, w)),
            ctx.big_file_bytes as usize,
            0x33,
        )?;
    }
    Ok(())
}

/// The 1000-entry directory (plus the usual ones, unused here).
pub fn setup_dir_1000(ctx: &Ctx) -> Res<()> {
    let dir = format!("{}/dir1000", ctx.dir);
    make_dir(&dir)?;
    for i in 0..1000 {
        write_file(&format!("{dir}/f{i:04}"), 0, 0)?;
    }
    Ok(())
}

/// An open file descriptor, closed when dropped.
struct Fd(i32);

impl Fd {
    /// The descriptor.  Closures call this (rather than reading `.0`) so
    /// that they capture, and keep open, the whole `Fd`.
    fn raw(&self) -> i32 {
        self.0
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = sys::close(self.0);
    }
}

fn open_at(path: &str, flags: i32) -> Res<Fd> {
    sys::open(&cpath(path), flags).map(Fd).map_err(|f| Fail {
        what: format!("open {path}"),
        ..f
    })
}

fn open_close(path: CString) -> Op {
    Box::new(move || {
        let fd = sys::open(&path, libc::O_RDONLY)?;
        sys::close(fd)?;
        Ok(1)
    })
}

/// open_close_private: open(O_RDONLY) + close of the worker's own file.
pub fn open_close_private(ctx: &Ctx, w: usize) -> Res<Op> {
    drop(open_at(
        &format!("{}/file", private_dir(ctx, w)),
        libc::O_RDONLY,
    )?);
    Ok(open_close(cpath(&format!("{}/file", private_dir(ctx, w)))))
}

/// open_close_shared: open(O_RDONLY) + close of the one shared file.
pub fn open_close_shared(ctx: &Ctx, _: usize) -> Res<Op> {
    drop(open_at(
        &format!("{}/shared/file", ctx.dir),
        libc::O_RDONLY,
    )?);
    Ok(open_close(cpath(&format!("{}/shared/file", ctx.dir))))
}

/// How long each worker's turn of `open_close_skewed` lasts.
pub const SKEW_PHASE_MS: u64 = 100;

/// The common start of the turns (set by the setup, before any worker
/// starts; forked workers inherit it: a monotonic instant).
static SKEW_EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Setup of `open_close_skewed`: the small files, and the start of the
/// first turn.
pub fn setup_skewed(ctx: &Ctx) -> Res<()> {
    setup_small(ctx)?;
    SKEW_EPOCH.get_or_init(std::time::Instant::now);
    Ok(())
}

/// open_close_skewed: open_close_private with the load on one core at a
/// time: the workers take turns of `SKEW_PHASE_MS` (turn k belongs to
/// worker k mod T, which runs on CPU k mod T); a worker out of turn sleeps
/// until its next turn and counts nothing.  The callers of a server thus
/// move from core to core over time (server placement and migration,
/// docs/SERVERS.md "Placement").  One worker: plain open_close_private.
pub fn open_close_skewed(ctx: &Ctx, w: usize) -> Res<Op> {
    let mut op = open_close_private(ctx, w)?;
    let epoch = *SKEW_EPOCH.get_or_init(std::time::Instant::now);
    let workers = ctx.workers.max(1) as u64;
    Ok(Box::new(move || {
        let ms = epoch.elapsed().as_millis() as u64;
        let turn = ms / SKEW_PHASE_MS;
        if turn % workers == w as u64 {
            return op();
        }
        // Sleep at most 5 ms at a time, so the end of a run is not late.
        let mine = (turn / workers) * workers + w as u64;
        let next = if mine > turn { mine } else { mine + workers };
        let wait = (next * SKEW_PHASE_MS).saturating_sub(ms).clamp(1, 5);
        std::thread::sleep(std::time::Duration::from_millis(wait));
        Ok(0)
    }))
}

fn create_unlink(path: String) -> Res<Op> {
    let c = cpath(&path);
    // One try outside the loop, so a missing feature names the path.
    let fd = sys::open(&c, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL).map_err(|f| Fail {
        what: format!("create {path}"),
        ..f
    })?;
    sys::close(fd)?;
    sys::unlink(&c).map_err(|f| Fail {
        what: format!("unlink {path}"),
        ..f
    })?;
    Ok(Box::new(move || {
        let fd = sys::open(&c, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
        sys::close(fd)?;
        sys::unlink(&c)?;
        Ok(1)
    }))
}

/// create_unlink_private: create (O_CREAT|O_EXCL) + close + unlink of one
/// name in the worker's own directory.
pub fn create_unlink_private(ctx: &Ctx, w: usize) -> Res<Op> {
    create_unlink(format!("{}/n", private_dir(ctx, w)))
}

/// create_unlink_shared: the same with the worker's own name `wW` in the
/// shared directory.
pub fn create_unlink_shared(ctx: &Ctx, w: usize) -> Res<Op> {
    create_unlink(format!("{}/shared/w{w}", ctx.dir))
}

fn stat_path(path: String) -> Res<Op> {
    let c = cpath(&path);
    sys::stat(&c).map_err(|f| Fail {
        what: format!("stat {path}"),
        ..f
    })?;
    Ok(Box::new(move || {
        sys::stat(&c)?;
        Ok(1)
    }))
}

/// stat_private: stat of the worker's own file (path lookup of 4 names).
pub fn stat_private(ctx: &Ctx, w: usize) -> Res<Op> {
    stat_path(format!("{}/file", private_dir(ctx, w)))
}

/// stat_shared: stat of the one shared file.
pub fn stat_shared(ctx: &Ctx, _: usize) -> Res<Op> {
    stat_path(format!("{}/shared/file", ctx.dir))
}

/// readdir_1000: open the shared 1000-entry directory, read every entry
/// with getdents64 (32 KiB buffer), close.  Checks at least 1000 entries.
pub fn readdir_1000(ctx: &Ctx, _: usize) -> Res<Op> {
    let path = format!("{}/dir1000", ctx.dir);
    let c = cpath(&path);
    let mut buf = vec![0u8; 32 * 1024];
    let mut op = move || -> Res<u64> {
        let fd = Fd(sys::open(&c, libc::O_RDONLY | libc::O_DIRECTORY)?);
        let mut entries = 0;
        loop {
            let n = sys::getdents64(fd.raw(), &mut buf)?;
            if n == 0 {
                break;
            }
            entries += sys::count_dirents(&buf, n)?;
        }
        if entries < 1000 {
            return Err(Fail::msg(format!(
                "readdir of {} entries gave only {entries}",
                1000
            )));
        }
        Ok(1)
    };
    op().map_err(|f| Fail {
        what: format!("readdir {path}: {}", f.what),
        ..f
    })?;
    Ok(Box::new(op))
}

fn pread4k(path: String) -> Res<Op> {
    let fd = open_at(&path, libc::O_RDONLY)?;
    let mut buf = [0u8; 4096];
    let mut page = 0u64;
    Ok(Box::new(move || {
        if sys::pread(fd.raw(), &mut buf, page * 4096)? != 4096 {
            return Err(Fail::msg(
                "pread returned less than 4096 bytes inside the file",
            ));
        }
        page = (page + 1) % SMALL_PAGES;
        Ok(1)
    }))
}

/// pread4k_private: pread 4 KiB of the worker's own 1 MiB file, pages in turn.
pub fn pread4k_private(ctx: &Ctx, w: usize) -> Res<Op> {
    pread4k(format!("{}/file", private_dir(ctx, w)))
}

/// pread4k_shared: pread 4 KiB of the shared 1 MiB file (each worker has
/// its own descriptor), pages in turn.
pub fn pread4k_shared(ctx: &Ctx, _: usize) -> Res<Op> {
    pread4k(format!("{}/shared/file", ctx.dir))
}

/// append4k: write 4 KiB to the worker's own O_APPEND file; every 256th
/// operation also truncates it to 0, so it stays at most 1 MiB.
pub fn append4k(ctx: &Ctx, w: usize) -> Res<Op> {
    let fd = open_at(
        &format!("{}/append", private_dir(ctx, w)),
        libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
    )?;
    let buf = [0xa5u8; 4096];
    let mut done = 0u64;
    Ok(Box::new(move || {
        if sys::write(fd.raw(), &buf)? != 4096 {
            return Err(Fail::msg("a 4 KiB append wrote less"));
        }
        done += 1;
        if done.is_multiple_of(APPENDS_PER_TRUNCATE) {
            sys::truncate_to_zero(fd.raw())?;
        }
        Ok(1)
    }))
}

/// write4k_fsync: overwrite 4 KiB of the worker's own file and fsync it,
/// one block after another over 1 MiB (FxMark's DWSL: data write + sync,
/// private file, low contention).  On a disk each operation waits for the
/// device's flush.
pub fn write4k_fsync(ctx: &Ctx, w: usize) -> Res<Op> {
    let fd = open_at(
        &format!("{}/synced", private_dir(ctx, w)),
        libc::O_WRONLY | libc::O_CREAT,
    )?;
    let buf = [0x3cu8; 4096];
    let mut block = 0u64;
    Ok(Box::new(move || {
        if sys::pwrite(fd.raw(), &buf, block * 4096)? != 4096 {
            return Err(Fail::msg("a 4 KiB pwrite wrote less"));
        }
        sys::fsync(fd.raw())?;
        block = (block + 1) % SMALL_PAGES;
        Ok(1)
    }))
}

/// seq_write: write the worker's own new file in 64 KiB blocks up to the
/// big-file size, then truncate it to 0 and start again.  Counts bytes.
pub fn seq_write(ctx: &Ctx, w: usize) -> Res<Op> {
    let fd = open_at(
        &format!("{}/seq", private_dir(ctx, w)),
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
    )?;
    let buf = vec![0x77u8; SEQ_BLOCK];
    let limit = ctx.big_file_bytes.max(SEQ_BLOCK as u64);
    let mut at = 0u64;
    Ok(Box::new(move || {
        if at >= limit {
            sys::truncate_to_zero(fd.raw())?;
            sys::rewind(fd.raw())?;
            at = 0;
        }
        let n = sys::write(fd.raw(), &buf)?;
        if n == 0 {
            return Err(Fail::msg("write of a 64 KiB block wrote nothing"));
        }
        at += n as u64;
        Ok(n as u64)
    }))
}

/// seq_read: read the worker's own big file in 64 KiB blocks from start to
/// end, then from the start again.  Counts bytes.
pub fn seq_read(ctx: &Ctx, w: usize) -> Res<Op> {
    let fd = open_at(&format!("{}/big", private_dir(ctx, w)), libc::O_RDONLY)?;
    let mut buf = vec![0u8; SEQ_BLOCK];
    let mut empty_in_a_row = 0;
    Ok(Box::new(move || {
        let n = sys::read(fd.raw(), &mut buf)?;
        if n == 0 {
            empty_in_a_row += 1;
            if empty_in_a_row > 1 {
                return Err(Fail::msg("the sequential-read file is empty"));
            }
            sys::rewind(fd.raw())?;
        } else {
            empty_in_a_row = 0;
        }
        Ok(n as u64)
    }))
}

/// A read-only shared mapping of a file, unmapped when dropped.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    /// Start of the mapping; closures call this so they own the `Mapping`.
    fn base(&self) -> *mut u8 {
        self.base
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let _ = sys::munmap(self.base, self.len);
    }
}

/// mmap_read_shared: each worker maps the shared 1 MiB file (MAP_SHARED,
/// PROT_READ) once; one operation reads one 4 KiB page of it, one 8-byte
/// load per 64-byte cache line, pages in turn.
pub fn mmap_read_shared(ctx: &Ctx, _: usize) -> Res<Op> {
    let path = format!("{}/shared/file", ctx.dir);
    let fd = open_at(&path, libc::O_RDONLY)?;
    let base =
        sys::mmap(SMALL_BYTES, libc::PROT_READ, libc::MAP_SHARED, fd.raw()).map_err(|f| Fail {
            what: format!("mmap of {path}"),
            ..f
        })?;
    let map = Mapping {
        base,
        len: SMALL_BYTES,
    };
    drop(fd);
    let mut page = 0usize;
    let mut sum = 0u64;
    Ok(Box::new(move || {
        for line in (0..4096).step_by(64) {
            // SAFETY: the mapping is SMALL_BYTES long, readable, and lives
            // as long as this closure (it owns `map`); page < 256 and
            // line < 4096 keep the 8-byte aligned load inside it.
            sum = sum.wrapping_add(unsafe {
                (map.base().add(page * 4096 + line) as *const u64).read_volatile()
            });
        }
        // Keeps the loads from being optimised away.
        std::hint::black_box(sum);
        page = (page + 1) % SMALL_PAGES as usize;
        Ok(1)
    }))
}
