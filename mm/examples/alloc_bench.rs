//! Host benchmark of the frame allocator and the heap (prints numbers; it
//! is not a test).  For each lock mode and 1, 2, 4 threads (each bound to
//! its own CPU id), it measures alloc+free pairs per second of single
//! frames and of 64-byte heap objects (in bursts of 16, so magazines and
//! page lists cycle), and prints one JSON object per line.  `ops_per_sec`
//! counts alloc+free pairs; the lock counters (acquisitions, and those that
//! found the lock held) explain the difference between the modes.
//!
//! Run: `cargo run --release -p mm --example alloc_bench [-- SECONDS]`
//! (default 0.5 s per measurement).

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use mm::host::Arena;
use mm::{FrameAllocator, Heap, LockMode};
use percpu::host;

const FRAMES: usize = 64 * 1024;
const BURST: usize = 16;

#[derive(Clone, Copy)]
enum Workload {
    Frame,
    Heap,
}

fn measure(mode: LockMode, workload: Workload, threads: usize, secs: f64) -> String {
    let arena = Arena::leak(FRAMES);
    let frames: &'static FrameAllocator<&Arena> = Box::leak(Box::new(FrameAllocator::new(arena)));
    frames.set_mode(mode).expect("fresh allocator");
    frames
        .add_region(arena.first_pfn(), FRAMES)
        .expect("arena region");
    let heap: &'static Heap<&Arena> = Box::leak(Box::new(Heap::new(frames)));
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let layout = Layout::from_size_align(64, 8).expect("layout");
    let elapsed = std::thread::scope(|s| {
        for cpu in 0..threads {
            let (stop, total, start) = (&stop, &total, &start);
            s.spawn(move || {
                host::bind_current_thread(cpu).expect("cpu id");
                let mut ops = 0u64;
                let mut pfns = [0usize; BURST];
                let mut ptrs = [std::ptr::null_mut::<u8>(); BURST];
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    match workload {
                        Workload::Frame => {
                            for p in pfns.iter_mut() {
                                *p = frames.alloc().expect("frames exhausted");
                            }
                            for p in pfns {
                                frames.free(p).expect("free");
                            }
                        }
                        Workload::Heap => {
                            for p in ptrs.iter_mut() {
                                *p = heap.alloc(layout);
                                assert!(!p.is_null(), "heap exhausted");
                            }
                            for p in ptrs {
                                // SAFETY: p came from heap.alloc(layout).
                                unsafe { heap.dealloc(p, layout) };
                            }
                        }
                    }
                    ops += BURST as u64;
                }
                total.fetch_add(ops, Ordering::Relaxed);
            });
        }
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        t0.elapsed()
    });
    let ops = total.load(Ordering::Relaxed);
    let fstats = frames.stats();
    let hstats = heap.stats();
    format!(
        "{{\"bench\":\"{}\",\"mode\":\"{}\",\"threads\":{},\"seconds\":{:.3},\"pairs\":{},\"ops_per_sec\":{:.0},\"buddy_locks\":{},\"buddy_contended\":{},\"heap_locks\":{},\"heap_contended\":{}}}",
        match workload {
            Workload::Frame => "frame_alloc_free",
            Workload::Heap => "heap_alloc_free_64",
        },
        match mode {
            LockMode::PerCpu => "percpu",
            LockMode::Global => "global",
        },
        threads,
        elapsed.as_secs_f64(),
        ops,
        ops as f64 / elapsed.as_secs_f64(),
        fstats.buddy_locks,
        fstats.buddy_contended,
        hstats.class_locks,
        hstats.class_contended + hstats.global_contended,
    )
}

fn main() {
    let secs = match std::env::args().nth(1) {
        None => 0.5,
        Some(arg) => match arg.parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => s,
            _ => {
                eprintln!("bench: expected a positive number of seconds, got {arg:?}");
                std::process::exit(2);
            }
        },
    };
    for workload in [Workload::Frame, Workload::Heap] {
        for mode in [LockMode::PerCpu, LockMode::Global] {
            for threads in [1, 2, 4] {
                println!("{}", measure(mode, workload, threads, secs));
            }
        }
    }
}
