//! `run=stress:SECS`: many threads per CPU hammer the allocators and the
//! scheduler for SECS seconds, then every count must add up.
//!
//! Owns the stress workload and the `stress: pass ...` / `stress: FAIL ...`
//! line.
//!
//! Workload: 4 threads per CPU, every other one pinned (round-robin over the
//! CPUs), the rest free to migrate and be stolen.  Each repeatedly picks a
//! random operation: allocate a frame or a heap block of random size and fill
//! it with a pattern unique to the thread and allocation; verify and free
//! one; yield; sleep; post a token and wake a waiter; or wait on the shared
//! wait queue for a token.  Checked at the end:
//! * no pattern mismatch (corruption or a double hand-out);
//! * the per-thread operation counts sum to the per-CPU counter they bumped
//!   (`percpu::PerCpuCounter`, bumped on whatever CPU the thread was on);
//! * `mm`'s free frame count is back to its value before the run.
//!
//! Must not: leave a thread blocked at the end (the stop flag is part of the
//! wait condition, and it is set before the final `wake_all`).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use percpu::PerCpuCounter;

use super::mem::{TestBlock, TestFrame};
use super::{join_all_within, report, Rng};
use crate::sched::{self, WaitQueue};

const THREADS_PER_CPU: usize = 4;
/// Most frames / heap blocks one thread holds at a time.
const MAX_FRAMES_HELD: usize = 16;
const MAX_BLOCKS_HELD: usize = 32;
/// Extra time allowed for the threads to finish after the deadline.
const JOIN_GRACE_NS: u64 = 10_000_000_000;

/// State shared by the stress threads and the main thread.
struct Shared {
    /// Set by the main thread at the deadline; part of every wait condition.
    stop: AtomicBool,
    /// Tokens posted and not yet taken; waiters take one.
    tokens: AtomicU64,
    queue: WaitQueue,
    /// Bumped once per operation, on the CPU the thread runs on.
    ops: PerCpuCounter,
    /// Per-thread operation counts, written once by each thread at its end.
    thread_ops: Vec<AtomicU64>,
    first_error: spin::Mutex<Option<String>>,
}

impl Shared {
    fn record_error(&self, error: String) {
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(error);
        }
    }

    /// Takes a token if one is there (called under the wait-queue lock).
    fn take_token(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
            .is_ok()
    }
}

/// What one run produced, gathered before the shared state is dropped.
struct Outcome {
    per_thread_ops: u64,
    per_cpu_ops: i64,
    first_error: Option<String>,
    switches: u64,
    steals: u64,
}

pub fn run(secs: u64) -> u32 {
    let cpus = sched::cpu_count();
    let threads = THREADS_PER_CPU * cpus;
    log::info!("stress: {threads} threads on {cpus} cpus for {secs} s");

    // Measured around everything the run allocates (its shared state, the
    // threads and their stacks), with the allocator caches flushed.
    let frames_before = super::mem::free_frames_after_flush();
    let outcome = match run_threads(threads, secs) {
        Ok(outcome) => outcome,
        Err(stuck) => {
            report(format_args!("stress: FAIL threads did not finish: {stuck}"));
            return 1;
        }
    };
    let frames_after = super::mem::free_frames_settled(frames_before);

    if let Some(error) = outcome.first_error {
        report(format_args!("stress: FAIL {error}"));
        return 1;
    }
    if outcome.per_cpu_ops < 0 || outcome.per_cpu_ops as u64 != outcome.per_thread_ops {
        report(format_args!(
            "stress: FAIL per-thread ops sum to {}, per-cpu counter says {}",
            outcome.per_thread_ops, outcome.per_cpu_ops
        ));
        return 1;
    }
    if frames_after != frames_before {
        report(format_args!(
            "stress: FAIL free frames {frames_before} before, {frames_after} after ({} lost)",
            frames_before as i64 - frames_after as i64
        ));
        return 1;
    }
    for cpu in 0..sched::cpu_count() {
        let stats = sched::cpu_stats(cpu);
        log::info!(
            "stress: cpu {cpu} since boot: switches={} steals={} ipis_sent={} idle_halts={}",
            stats.context_switches,
            stats.steals,
            stats.ipis_sent,
            stats.idle_halts
        );
    }
    report(format_args!(
        "stress: pass threads={threads} ops={} switches={} steals={} frames_before={frames_before} frames_after={frames_after}",
        outcome.per_thread_ops, outcome.switches, outcome.steals,
    ));
    0
}

/// Spawns the workers, lets them run `secs` seconds, stops and joins them.
/// `Err` names the threads that did not finish in time.
fn run_threads(threads: usize, secs: u64) -> Result<Outcome, String> {
    let cpus = sched::cpu_count();
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        tokens: AtomicU64::new(0),
        queue: WaitQueue::new(),
        ops: PerCpuCounter::new(),
        thread_ops: (0..threads).map(|_| AtomicU64::new(0)).collect(),
        first_error: spin::Mutex::new(None),
    });
    let stats_before = sched::stats();
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let shared = shared.clone();
            let affinity = (index % 2 == 0).then_some((index / 2) % cpus);
            sched::spawn("stress", affinity, move || worker(index, &shared))
        })
        .collect();

    sched::sleep_ns(secs.saturating_mul(1_000_000_000));
    // Stop flag first, then wake: a waiter either sees the flag when it
    // checks its condition or is on the queue when `wake_all` looks.
    shared.stop.store(true, Ordering::SeqCst);
    shared.queue.wake_all();
    join_all_within(handles, JOIN_GRACE_NS)?;
    let stats_after = sched::stats();

    let first_error = shared.first_error.lock().clone();
    Ok(Outcome {
        per_thread_ops: shared
            .thread_ops
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum(),
        per_cpu_ops: shared.ops.sum(),
        first_error,
        switches: stats_after.context_switches - stats_before.context_switches,
        steals: stats_after.steals - stats_before.steals,
    })
}

/// One stress thread: random operations until the stop flag is set.
fn worker(index: usize, shared: &Shared) {
    let mut rng = Rng::new(0x5eed_0000 + index as u64);
    let mut frames: Vec<TestFrame> = Vec::with_capacity(MAX_FRAMES_HELD);
    let mut blocks: Vec<TestBlock> = Vec::with_capacity(MAX_BLOCKS_HELD);
    let mut serial: u64 = 0;
    let mut ops: u64 = 0;
    let check = |result: Result<(), String>| {
        if let Err(e) = result {
            shared.record_error(format!("thread {index}: {e}"));
        }
    };

    while !shared.stop.load(Ordering::Relaxed) {
        serial += 1;
        // Unique per thread and allocation: thread in the top 16 bits.
        let pattern = ((index as u64) << 48) | serial;
        match rng.below(100) {
            0..=29 => {
                if frames.len() == MAX_FRAMES_HELD {
                    let victim = frames.swap_remove(rng.below(frames.len() as u64) as usize);
                    check(victim.free());
                } else if let Some(frame) = TestFrame::alloc(pattern) {
                    frames.push(frame);
                } else {
                    check(Err(String::from("out of frames")));
                }
            }
            30..=39 => {
                if let Some(frame) = (!frames.is_empty()).then(|| frames.swap_remove(0)) {
                    check(frame.free());
                }
            }
            40..=69 => {
                if blocks.len() == MAX_BLOCKS_HELD {
                    let victim = blocks.swap_remove(rng.below(blocks.len() as u64) as usize);
                    check(victim.free());
                } else {
                    // Mostly small objects, sometimes multi-page ones.
                    let words = if rng.below(10) == 0 {
                        1 + rng.below(4096)
                    } else {
                        1 + rng.below(64)
                    };
                    blocks.push(TestBlock::alloc(words as usize, pattern));
                }
            }
            70..=79 => {
                if let Some(block) = (!blocks.is_empty()).then(|| blocks.swap_remove(0)) {
                    check(block.free());
                }
            }
            80..=86 => sched::yield_now(),
            87..=88 => sched::sleep_ns(rng.below(2_000_000)),
            89..=94 => {
                shared.tokens.fetch_add(1, Ordering::SeqCst);
                shared.queue.wake_one();
            }
            _ => {
                shared
                    .queue
                    .wait_until(|| shared.stop.load(Ordering::SeqCst) || shared.take_token());
            }
        }
        ops += 1;
        shared.ops.inc();
    }

    for frame in frames {
        check(frame.free());
    }
    for block in blocks {
        check(block.free());
    }
    shared.thread_ops[index].store(ops, Ordering::SeqCst);
}
