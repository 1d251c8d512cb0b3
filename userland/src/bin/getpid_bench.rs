//! `getpid_bench`: getpid round trips per second with T threads, each pinned
//! to its own CPU (will-it-scale style).  A benchmark, not a test: it prints
//! one JSON line and exits 0; nobody asserts its numbers.
//!
//! Usage: `getpid_bench [THREADS] [SECONDS]` (default 1 thread, 2 s after a
//! short warm-up).  The raw `syscall(SYS_getpid)` is used so no libc caching
//! can stand in for the kernel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t with one bit set, passed with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn main() {
    let args = userland::args();
    let threads: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1);
    let seconds: f64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .filter(|&s: &f64| s > 0.0)
        .unwrap_or(2.0);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (stop, start) = (stop.clone(), start.clone());
            std::thread::spawn(move || {
                let pinned = pin_to(i);
                start.wait();
                // Warm-up, then count until told to stop.
                let warm = Instant::now();
                while warm.elapsed() < Duration::from_millis(200) {
                    // SAFETY: getpid has no arguments.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                }
                let t0 = Instant::now();
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        // SAFETY: as above.
                        unsafe { libc::syscall(libc::SYS_getpid) };
                    }
                    ops += 256;
                }
                (pinned, ops as f64 / t0.elapsed().as_secs_f64())
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_secs_f64(seconds + 0.2));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(bool, f64)> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or((false, 0.0)))
        .collect();
    let total: f64 = results.iter().map(|r| r.1).sum();
    let per: Vec<String> = results.iter().map(|r| format!("{:.0}", r.1)).collect();
    println!(
        "{{\"name\":\"getpid\",\"threads\":{threads},\"seconds\":{seconds},\"pinned\":{},\"ops_per_sec\":{total:.0},\"per_thread\":[{}]}}",
        results.iter().all(|r| r.0),
        per.join(",")
    );
}
