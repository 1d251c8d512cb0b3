//! Host benchmark of the fs crate: operations per second with 1, 2 and 4
//! threads (each bound to its own CPU id), in both lock modes.  One JSON
//! line per case.  Numbers only; nothing is asserted.
//!
//! Cases: create+unlink in a private directory and in a shared directory,
//! lookup of an existing path, 4 KiB pread of a shared file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{Fs, FsConfig, LockMode};

const RUN: Duration = Duration::from_millis(400);

fn case(name: &str, mode: LockMode, threads: usize, op: impl Fn(&Fs, usize, u64) + Sync) {
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 20,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    );
    let r = fs.root();
    fs.mkdir(&r, "/shared", 0o755).unwrap();
    let f = fs
        .open(&r, "/shared/data", O_CREAT | O_RDWR, 0o644)
        .unwrap();
    f.write_at(0, &vec![7u8; 1 << 20], false).unwrap();
    for t in 0..threads {
        fs.mkdir(&r, &format!("/p{t}"), 0o755).unwrap();
    }
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (fs, stop, total, op) = (&fs, &stop, &total, &op);
            s.spawn(move || {
                percpu::host::bind_current_thread(t).unwrap();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    op(fs, t, i);
                    i += 1;
                }
                total.fetch_add(i, Ordering::Relaxed);
            });
        }
        std::thread::sleep(RUN);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let mode = match mode {
        LockMode::PerCpu => "percpu",
        LockMode::Global => "global",
    };
    println!(
        "{{\"name\":\"{name}\",\"threads\":{threads},\"locks\":\"{mode}\",\"ops_per_sec\":{:.0}}}",
        total.load(Ordering::Relaxed) as f64 / secs
    );
}

fn main() {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        for threads in [1, 2, 4] {
            case("create_unlink_private", mode, threads, |fs, t, i| {
                let r = fs.root();
                let p = format!("/p{t}/f{}", i % 64);
                fs.open(&r, &p, O_CREAT | O_RDWR, 0o644).unwrap();
                fs.unlink(&r, &p).unwrap();
            });
            case("create_unlink_shared", mode, threads, |fs, t, i| {
                let r = fs.root();
                let p = format!("/shared/t{t}-{}", i % 64);
                fs.open(&r, &p, O_CREAT | O_RDWR, 0o644).unwrap();
                fs.unlink(&r, &p).unwrap();
            });
            case("lookup", mode, threads, |fs, _, _| {
                fs.lookup(&fs.root(), "/shared/data", true).unwrap();
            });
            case("pread_4k_shared", mode, threads, |fs, _, i| {
                let f = fs.lookup(&fs.root(), "/shared/data", true).unwrap();
                let mut b = [0u8; 4096];
                f.read_at((i % 256) * 4096, &mut b).unwrap();
            });
        }
    }
}
