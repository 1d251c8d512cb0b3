//! Running one workload: T workers (threads, or processes with `--procs`),
//! worker w pinned to CPU w, a warm-up, then a fixed measured interval.
//!
//! Owns the shared control region (a `MAP_SHARED | MAP_ANONYMOUS` mapping,
//! so threads and forked processes use the same code) and the timing.
//! Invariants: every worker writes only its own cache-line-sized counter
//! slot, so the measurement adds no shared written line to the workload; the
//! count is read at the start and at the end of the interval, so warm-up
//! operations are never counted.  It must not print the result (main.rs does)
//! and never leaves a worker running: all are joined or waited for.
//!
//! With `--mark-ops N` (`Marking`), each worker wraps its first N operations
//! after the warm-up in a sharing-plugin window (marker.rs), and writes its
//! counter only outside the window; worker 0, once every worker has closed
//! its last window, labels and dumps the plugin's table; the main thread
//! stops the workers only after that dump.  Workers keep operating
//! (unmarked) after their own windows, so a worker whose operation needs a
//! peer (tcp_rr) never waits for one that already stopped.  Without marking
//! the worker loop is the unmarked one, unchanged.

use crate::marker;
use crate::sys::{self, Fail, Res};
use crate::workload::{Ctx, Workload};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the workers may take to get ready (pinning, opening files).
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long the marked operations may take after the interval (the sharing
/// plugin slows the guest several times).
const MARK_LIMIT: Duration = Duration::from_secs(900);

/// `--mark-ops`: how many operations each worker marks, and the label of the
/// dump that follows them.
#[derive(Clone, Copy)]
pub struct Marking {
    pub ops: u64,
    pub label: u16,
}

/// One cache line of the shared region.
#[repr(C, align(64))]
struct Line<T>(T);

/// The control block at the start of the shared region, followed by one
/// `Line<AtomicU64>` counter per worker.
#[repr(C)]
struct Control {
    /// Workers that finished their set-up.
    ready: Line<AtomicU32>,
    /// Set by the main thread: start operating.
    go: Line<AtomicU32>,
    /// Set by the main thread: stop operating and leave.
    stop: Line<AtomicU32>,
    /// Set by a worker whose operation failed (it printed why).
    failed: Line<AtomicU32>,
    /// Set by the main thread after the warm-up: start the marked operations.
    mark: Line<AtomicU32>,
    /// Workers that closed their last window.
    marked: Line<AtomicU32>,
    /// Set by worker 0 after it dumped the plugin's table.
    dumped: Line<AtomicU32>,
}

/// The shared region: control block and counters, zero-filled by the kernel.
struct Shared {
    base: *mut u8,
    len: usize,
    workers: usize,
}

// SAFETY: the region is only accessed through atomics (Control and the
// counters), which are safe to share between threads.
unsafe impl Sync for Shared {}
// SAFETY: as above; the pointer stays valid until `Drop`, after all workers
// have been joined.
unsafe impl Send for Shared {}

impl Shared {
    fn new(workers: usize) -> Res<Shared> {
        let len = std::mem::size_of::<Control>() + workers * std::mem::size_of::<Line<AtomicU64>>();
        let base = sys::mmap(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
        )
        .map_err(|f| Fail {
            what: "mmap of the shared counter region (MAP_SHARED|MAP_ANONYMOUS)".into(),
            ..f
        })?;
        Ok(Shared { base, len, workers })
    }

    fn control(&self) -> &Control {
        // SAFETY: the region starts with a Control (page-aligned, so aligned
        // for it); zero bytes are valid atomics; it lives as long as `self`.
        unsafe { &*(self.base as *const Control) }
    }

    fn counter(&self, w: usize) -> &AtomicU64 {
        assert!(w < self.workers);
        // SAFETY: counter w lies inside the mapping (len covers `workers`
        // lines after the Control block), 64-byte aligned, zero-initialised.
        unsafe {
            let lines = self.base.add(std::mem::size_of::<Control>()) as *const Line<AtomicU64>;
            &(*lines.add(w)).0
        }
    }

    fn total(&self) -> u64 {
        (0..self.workers)
            .map(|w| self.counter(w).load(Ordering::Relaxed))
            .sum()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = sys::munmap(self.base, self.len);
    }
}

/// What one run measured.
pub struct Measured {
    /// Operations (or bytes) counted during the interval, all workers.
    pub ops: u64,
    /// Length of the interval as measured.
    pub seconds: f64,
}

/// Run `workload` in `ctx`; the workload's set-up must have been done.
pub fn run(
    workload: &Workload,
    ctx: &Ctx,
    warmup: Duration,
    interval: Duration,
    marking: Option<Marking>,
) -> Res<Measured> {
    let shared = Shared::new(ctx.workers)?;
    if ctx.procs {
        let mut pids = Vec::new();
        let mut spawn_error = None;
        for w in 0..ctx.workers {
            match sys::fork() {
                Ok(0) => {
                    let code = if worker(&shared, workload, ctx, w, marking) {
                        0
                    } else {
                        1
                    };
                    sys::exit_now(code);
                }
                Ok(pid) => pids.push(pid),
                Err(f) => {
                    spawn_error = Some(f);
                    break;
                }
            }
        }
        let measured = match spawn_error {
            Some(f) => {
                shared.control().stop.0.store(1, Ordering::SeqCst);
                Err(f)
            }
            None => control(&shared, warmup, interval, marking.is_some()),
        };
        let mut bad_exit = None;
        for pid in pids {
            match sys::wait_child(pid)? {
                0 => {}
                code => bad_exit = Some(code),
            }
        }
        let measured = measured?;
        if let Some(code) = bad_exit {
            return Err(Fail::msg(format!(
                "a worker process exited with status {code}"
            )));
        }
        Ok(measured)
    } else {
        std::thread::scope(|s| {
            for w in 0..ctx.workers {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("worker{w}"))
                    .spawn_scoped(s, move || worker(shared, workload, ctx, w, marking))
                    .map_err(|e| Fail {
                        what: format!("spawning worker thread {w}: {e}"),
                        errno: e.raw_os_error().unwrap_or(0),
                    })
                    .inspect_err(|_| shared.control().stop.0.store(1, Ordering::SeqCst))?;
            }
            control(&shared, warmup, interval, marking.is_some())
        })
    }
}

/// The main thread's part: wait for the workers, start them, measure, stop.
fn control(shared: &Shared, warmup: Duration, interval: Duration, marking: bool) -> Res<Measured> {
    let c = shared.control();
    let result = (|| {
        let asked = Instant::now();
        while (c.ready.0.load(Ordering::Acquire) as usize) < shared.workers {
            if c.failed.0.load(Ordering::Acquire) != 0 {
                return Err(Fail::msg("a worker failed while getting ready"));
            }
            if asked.elapsed() > READY_LIMIT {
                return Err(Fail::msg(format!(
                    "the workers were not ready after {} s",
                    READY_LIMIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        c.go.0.store(1, Ordering::Release);
        std::thread::sleep(warmup);
        if marking {
            c.mark.0.store(1, Ordering::Release);
        }
        let (start_ops, start) = (shared.total(), Instant::now());
        std::thread::sleep(interval);
        let (end_ops, seconds) = (shared.total(), start.elapsed().as_secs_f64());
        if marking {
            let asked = Instant::now();
            while c.dumped.0.load(Ordering::Acquire) == 0 {
                if c.failed.0.load(Ordering::Acquire) != 0 {
                    return Err(Fail::msg("a worker failed during its marked operations"));
                }
                if asked.elapsed() > MARK_LIMIT {
                    return Err(Fail::msg(format!(
                        "the marked operations were not done {} s after the interval",
                        MARK_LIMIT.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(Measured {
            ops: end_ops - start_ops,
            seconds,
        })
    })();
    c.stop.0.store(1, Ordering::Release);
    if c.failed.0.load(Ordering::Acquire) != 0 {
        return Err(Fail::msg("a worker failed (see above)"));
    }
    result
}

/// One worker: pin, set up, wait for the start, operate until told to stop.
/// Returns false (after printing why) if anything failed.
fn worker(
    shared: &Shared,
    workload: &Workload,
    ctx: &Ctx,
    w: usize,
    marking: Option<Marking>,
) -> bool {
    let c = shared.control();
    let result = (|| -> Res<()> {
        sys::pin_to_cpu(w)?;
        let mut op = workload.make_worker(ctx, w)?;
        c.ready.0.fetch_add(1, Ordering::AcqRel);
        while c.go.0.load(Ordering::Acquire) == 0 {
            if c.stop.0.load(Ordering::Acquire) != 0 {
                return Ok(());
            }
            sys::yield_cpu();
        }
        let counter = shared.counter(w);
        let mut done = 0u64;
        if let Some(m) = marking {
            let running = || c.stop.0.load(Ordering::Relaxed) == 0;
            while c.mark.0.load(Ordering::Acquire) == 0 && running() {
                done += op()?;
                counter.store(done, Ordering::Relaxed);
            }
            for _ in 0..m.ops {
                if !running() {
                    break;
                }
                marker::begin();
                let result = op();
                marker::end();
                done += result?;
                counter.store(done, Ordering::Relaxed);
            }
            c.marked.0.fetch_add(1, Ordering::AcqRel);
            if w == 0 {
                while running() {
                    if c.marked.0.load(Ordering::Acquire) as usize == shared.workers {
                        marker::label(m.label);
                        marker::dump();
                        c.dumped.0.store(1, Ordering::Release);
                        break;
                    }
                    done += op()?;
                    counter.store(done, Ordering::Relaxed);
                }
            }
        }
        while c.stop.0.load(Ordering::Relaxed) == 0 {
            done += op()?;
            counter.store(done, Ordering::Relaxed);
        }
        Ok(())
    })();
    match result {
        Ok(()) => true,
        Err(f) => {
            eprintln!("wis: {}: worker {w}: {f}", workload.name);
            c.failed.0.store(1, Ordering::Release);
            false
        }
    }
}
