//! `run=bench`: allocator scaling micro-benchmarks, will-it-scale style.
//!
//! Owns the benchmark loops and the `bench: {json}` lines.  For T in 1, 2, 4
//! (T <= CPUs), T threads pinned on CPUs 0..T each run one operation in a
//! loop: a warm-up, then a fixed measuring window; the line gives the summed
//! operations per second and the lock mode, so that `locks=percpu` and
//! `locks=global` runs can be compared.
//!
//! Must not: fail on a number (benchmarks report, tests judge), or measure
//! outside the common window (each thread counts only operations that
//! completed inside it).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{join_all_within, report};
use crate::arch::time::now_ns;
use crate::sched;

const WARMUP_NS: u64 = 100_000_000;
const MEASURE_NS: u64 = 500_000_000;
/// Operations between two clock reads.
const BATCH: u64 = 32;

type Op = fn() -> bool;

fn frame_alloc_free() -> bool {
    super::mem::frame_alloc_free_once()
}

fn heap_alloc_free() -> bool {
    let object = black_box(Box::new([0u8; 64]));
    drop(object);
    true
}

pub fn run() -> u32 {
    let cpus = sched::cpu_count();
    let locks = percpu::lock_mode();
    let cases: [(&str, Op); 2] = [
        ("frame_alloc_free", frame_alloc_free),
        ("heap_alloc_free", heap_alloc_free),
    ];
    for (name, op) in cases {
        for threads in [1usize, 2, 4].into_iter().filter(|&t| t <= cpus) {
            match measure(threads, op) {
                Some(ops_per_sec) => report(format_args!(
                    "bench: {{\"name\":\"{name}\",\"cpus\":{threads},\"locks\":\"{locks}\",\"ops_per_sec\":{ops_per_sec}}}"
                )),
                None => log::warn!("bench: {name} with {threads} cpus did not complete; no result"),
            }
        }
    }
    0
}

/// Runs `op` on `threads` pinned threads; returns the summed rate, or `None`
/// if a thread failed (out of memory) or did not finish.
fn measure(threads: usize, op: Op) -> Option<u64> {
    let total = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // A common window for every thread, starting once all had time to start.
    let window_start = now_ns() + WARMUP_NS;
    let window_end = window_start + MEASURE_NS;
    let handles: Vec<_> = (0..threads)
        .map(|cpu| {
            let total = total.clone();
            let failed = failed.clone();
            sched::spawn("bench", Some(cpu), move || {
                let mut counted: u64 = 0;
                loop {
                    for _ in 0..BATCH {
                        if !op() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    let now = now_ns();
                    if now >= window_end {
                        break;
                    }
                    if now >= window_start {
                        counted += BATCH;
                    }
                }
                total.fetch_add(counted, Ordering::Relaxed);
            })
        })
        .collect();
    let timeout = WARMUP_NS + MEASURE_NS + 10_000_000_000;
    join_all_within(handles, timeout).ok()?;
    if failed.load(Ordering::Relaxed) != 0 {
        return None;
    }
    Some(total.load(Ordering::Relaxed) * 1_000_000_000 / MEASURE_NS)
}
