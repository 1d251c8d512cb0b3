//! File-system benchmark program, run the same on this kernel and
//! on Linux: operations per second with T = 1..N threads, each pinned to
//! CPU t, for a fixed interval.  One JSON line per case:
//! `{"bench":NAME,"threads":T,"ops_per_sec":X}`.  Numbers only.
//!
//! Cases: open+close of a private file, create+unlink in a private and in a
//! shared directory, 4 KiB pread of a private and of a shared file.
//!
//!   cargo build --release -p userland --bin fs_bench --target x86_64-unknown-linux-musl
//!   ARGS: [max_threads] [millis per case]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// sched_setaffinity(0, 8, {1 << cpu}) by raw system call (no libc crate).
fn pin(cpu: usize) {
    let mask: u64 = 1 << cpu;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: system call 203 reads 8 bytes from `mask`, which lives
    // across the call; it touches no other memory.
    unsafe {
        let _ret: i64;
        std::arch::asm!("syscall", inlateout("rax") 203i64 => _ret, in("rdi") 0, in("rsi") 8,
            in("rdx") &mask as *const u64, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
}

fn case(name: &str, threads: usize, run: Duration, op: &(dyn Fn(usize, u64) + Sync)) {
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, total) = (&stop, &total);
            s.spawn(move || {
                pin(t);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    op(t, i);
                    i += 1;
                }
                total.fetch_add(i, Ordering::Relaxed);
            });
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
    });
    let ops = total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!("{{\"bench\":\"{name}\",\"threads\":{threads},\"ops_per_sec\":{ops:.0}}}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let max: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let run = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).unwrap_or(1000));
    let base = "/fsbench";
    let _ = fs::create_dir(base);
    let _ = fs::create_dir(format!("{base}/shared"));
    let block = vec![7u8; 1 << 20];
    fs::write(format!("{base}/shared/data"), &block).expect("shared data file");
    for t in 0..max {
        let _ = fs::create_dir(format!("{base}/p{t}"));
        fs::write(format!("{base}/p{t}/file"), &block).expect("private data file");
    }
    let mut threads = 1;
    while threads <= max {
        case("open_close_private", threads, run, &|t, _| {
            drop(File::open(format!("{base}/p{t}/file")).expect("open"));
        });
        case("create_unlink_private", threads, run, &|t, i| {
            let p = format!("{base}/p{t}/n{}", i % 16);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .expect("create");
            fs::remove_file(&p).expect("unlink");
        });
        case("create_unlink_shared", threads, run, &|t, i| {
            let p = format!("{base}/shared/t{t}-{}", i % 16);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .expect("create");
            fs::remove_file(&p).expect("unlink");
        });
        {
            let files: Vec<File> = (0..threads)
                .map(|t| File::open(format!("{base}/p{t}/file")).expect("open"))
                .collect();
            case("pread4k_private", threads, run, &|t, i| {
                let mut b = [0u8; 4096];
                files[t]
                    .read_exact_at(&mut b, (i % 256) * 4096)
                    .expect("pread");
            });
        }
        {
            let f = File::open(format!("{base}/shared/data")).expect("open");
            case("pread4k_shared", threads, run, &|_, i| {
                let mut b = [0u8; 4096];
                f.read_exact_at(&mut b, (i % 256) * 4096).expect("pread");
            });
        }
        threads *= 2;
    }
    if let Ok(s) = fs::read_to_string("/proc/lockstat") {
        for line in s
            .lines()
            .filter(|l| l.contains("cpu=all") && !l.contains("acquired=0"))
        {
            println!("{line}");
        }
    }
}
