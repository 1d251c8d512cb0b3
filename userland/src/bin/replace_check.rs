//! replace_check: replaces the file server (`structure=servers`) while a
//! file workload runs on every core, and checks every operation.
//!
//! Each worker (one per CPU, pinned) works in its own directory: creates
//! files of 1..12 KiB with contents derived from (worker, sequence),
//! reads each back and compares, stats it, unlinks old ones, and writes
//! and reads back a long-lived file that stays open across every
//! replacement (its handle at the server must survive; its inode number
//! must not change).  Every operation is timed.  The main thread waits
//! (a handshake on counters, no sleeping) until every worker did
//! `--ops` operations, replaces the server (`ipc_service_replace`), and
//! repeats `--rounds` times; after the last one each worker does `--ops`
//! more, then re-reads everything it still has.
//!
//! Prints per round `replace_check: round R switch_us=S pause_us=P
//! image_bytes=B export_us=E start_us=T precopy_us=.. precopy_bytes=..
//! call_us=.. call_max_op_us=..` (pause: the longest operation that
//! overlapped the switch as the kernel timed it, `CLOCK_MONOTONIC`;
//! call_max_op: the longest that overlapped the whole call, successor
//! start and pre-copy included, while the old instance still served), then `replace_check: ops=N
//! failed=F wrong=W median_us=M max_us_outside=X`, and `replace_check:
//! pass` (exit 0) or `replace_check: FAIL ...` (exit 1).
//!
//! Options: `--threads N` (default: CPUs), `--rounds R` (3), `--ops K`
//! (200), `--seed S` (0: every round waits `--ops`; otherwise each round
//! waits a number of operations drawn from S in 1..=2K, so replacements
//! hit the workload at different points), `--program PATH` (successor
//! program; default: the same).
//!
//! Must not: sleep to synchronise, or report a pass with any failed or
//! wrong operation.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use abi::ipc::SERVICE_FS;
use userland::ipc;

/// `CLOCK_MONOTONIC` in ns: the kernel's clock, in which it reports when
/// a switch began.
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Shared {
    stop: AtomicBool,
    done: Vec<AtomicU64>,
}

#[derive(Default)]
struct Result_ {
    /// (start ns, duration ns) of every operation.
    ops: Vec<(u64, u64)>,
    failed: Vec<String>,
    wrong: Vec<String>,
}

fn content(worker: usize, seq: u64) -> Vec<u8> {
    let len = 1024 + ((seq * 2654435761 + worker as u64 * 97) % (11 * 1024)) as usize;
    (0..len)
        .map(|i| (i as u64 * 31 + seq * 7 + worker as u64 * 13) as u8)
        .collect()
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes in it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn worker(id: usize, cpus: usize, sh: Arc<Shared>) -> Result_ {
    pin(id % cpus);
    let dir = format!("/tmp/replace_check/w{id}");
    let mut r = Result_::default();
    if let Err(e) = fs::create_dir_all(&dir) {
        r.failed.push(format!("mkdir {dir}: {e}"));
        return r;
    }
    let long_path = format!("{dir}/long");
    let mut long = match OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&long_path)
    {
        Ok(f) => f,
        Err(e) => {
            r.failed.push(format!("open {long_path}: {e}"));
            return r;
        }
    };
    let long_ino = long.metadata().map(|m| m.ino()).unwrap_or(0);
    let mut long_len = 0u64;
    let mut live: Vec<u64> = Vec::new();
    let mut seq = 0u64;
    let now = |_: &Shared| mono_ns();
    while !sh.stop.load(Ordering::Acquire) {
        // Counted before the work: a round that fails still counts (the
        // main thread's handshake must not wait forever on failures).
        if seq > 0 {
            sh.done[id].fetch_add(1, Ordering::Release);
        }
        seq += 1;
        let path = format!("{dir}/f{seq}");
        let want = content(id, seq);
        // One operation: create + write + close.
        let t0 = now(&sh);
        let res = File::create(&path).and_then(|mut f| f.write_all(&want));
        r.ops.push((t0, now(&sh) - t0));
        if let Err(e) = res {
            r.failed.push(format!("create {path}: {e}"));
            continue;
        }
        live.push(seq);
        // Read back the file written some steps ago (or this one).
        let back = live[live.len().saturating_sub(3)];
        let bpath = format!("{dir}/f{back}");
        let t0 = now(&sh);
        let mut got = Vec::new();
        let res = File::open(&bpath).and_then(|mut f| f.read_to_end(&mut got));
        r.ops.push((t0, now(&sh) - t0));
        match res {
            Err(e) => r.failed.push(format!("read {bpath}: {e}")),
            Ok(_) if got != content(id, back) => r.wrong.push(format!("read {bpath}: wrong data")),
            Ok(_) => {}
        }
        // The long-lived descriptor: append a record, read it back, fstat.
        let rec = format!("{id}:{seq};");
        let t0 = now(&sh);
        let res = long.write_all(rec.as_bytes()).and_then(|_| {
            let mut b = vec![0u8; rec.len()];
            long.read_exact_at(&mut b, long_len)?;
            Ok((b, long.metadata()?))
        });
        r.ops.push((t0, now(&sh) - t0));
        match res {
            Err(e) => r.failed.push(format!("long file: {e}")),
            Ok((b, m)) => {
                if b != rec.as_bytes() || m.ino() != long_ino {
                    r.wrong.push(format!(
                        "long file: read {:?} ino {} (want {rec:?} ino {long_ino})",
                        String::from_utf8_lossy(&b),
                        m.ino()
                    ));
                }
                long_len += rec.len() as u64;
            }
        }
        // Keep 8 files: stat and unlink the oldest.
        if live.len() > 8 {
            let old = live.remove(0);
            let opath = format!("{dir}/f{old}");
            let t0 = now(&sh);
            let res = fs::metadata(&opath).and_then(|m| {
                fs::remove_file(&opath)?;
                Ok(m.len())
            });
            r.ops.push((t0, now(&sh) - t0));
            match res {
                Err(e) => r.failed.push(format!("stat+unlink {opath}: {e}")),
                Ok(n) if n != content(id, old).len() as u64 => {
                    r.wrong.push(format!("stat {opath}: size {n}"))
                }
                Ok(_) => {}
            }
        }
    }
    // Everything still there must read back as written.
    for s in &live {
        let p = format!("{dir}/f{s}");
        match fs::read(&p) {
            Ok(b) if b == content(id, *s) => {}
            Ok(_) => r.wrong.push(format!("final read {p}: wrong data")),
            Err(e) => r.failed.push(format!("final read {p}: {e}")),
        }
    }
    let mut all = Vec::new();
    match File::open(&long_path).and_then(|mut f| f.read_to_end(&mut all)) {
        Ok(_) if all.len() as u64 == long_len => {}
        Ok(n) => r
            .wrong
            .push(format!("final long file: {n} bytes, want {long_len}")),
        Err(e) => r.failed.push(format!("final long file: {e}")),
    }
    r
}

fn wait_all(sh: &Shared, base: &[u64], ops: u64) {
    loop {
        if sh
            .done
            .iter()
            .zip(base)
            .all(|(d, b)| d.load(Ordering::Acquire) >= b + ops)
        {
            return;
        }
        std::thread::yield_now();
    }
}

fn main() {
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rounds = 3usize;
    let mut ops = 200u64;
    let mut program = String::new();
    let mut seed = 0u64;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--threads" => threads = v.parse().unwrap_or(threads),
            "--rounds" => rounds = v.parse().unwrap_or(rounds),
            "--ops" => ops = v.parse().unwrap_or(ops),
            "--program" => program = v,
            "--seed" => seed = v.parse().unwrap_or(0),
            a => {
                eprintln!("replace_check: unknown argument {a}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        done: (0..threads).map(|_| AtomicU64::new(0)).collect(),
    });
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let sh = sh.clone();
            std::thread::spawn(move || worker(id, cpus, sh))
        })
        .collect();
    let mut windows = Vec::new();
    let mut errors = Vec::new();
    for round in 0..rounds {
        let base: Vec<u64> = sh.done.iter().map(|d| d.load(Ordering::Acquire)).collect();
        let wait = if seed == 0 {
            ops
        } else {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            1 + seed % (2 * ops.max(1))
        };
        wait_all(&sh, &base, wait);
        let s = mono_ns();
        let res = ipc::service_replace(SERVICE_FS, &program);
        let e = mono_ns();
        match res {
            Ok(st) => windows.push((round, s, e, st)),
            Err(err) => errors.push(format!("round {round}: ipc_service_replace: errno {err}")),
        }
    }
    let base: Vec<u64> = sh.done.iter().map(|d| d.load(Ordering::Acquire)).collect();
    wait_all(&sh, &base, ops);
    sh.stop.store(true, Ordering::Release);
    let results: Vec<Result_> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or_default())
        .collect();
    let all: Vec<(u64, u64)> = results.iter().flat_map(|r| r.ops.iter().copied()).collect();
    let overlaps = |(t, d): (u64, u64), s: u64, e: u64| t < e && t + d > s;
    let longest = |s: u64, e: u64| {
        all.iter()
            .filter(|o| overlaps(**o, s, e))
            .map(|o| o.1)
            .max()
            .unwrap_or(0)
    };
    for (round, s, e, st) in &windows {
        // The pause: the switch as the kernel timed it; the whole call
        // (start and pre-copy included, the service going on) apart.
        let pause = longest(st.switch_begin_ns, st.switch_begin_ns + st.switch_ns);
        let call_pause = longest(*s, *e);
        println!(
            "replace_check: round {round} switch_us={} pause_us={} image_bytes={} export_us={} import_us={} start_us={} precopy_us={} precopy_bytes={} call_us={} call_max_op_us={} pids={}->{}",
            st.switch_ns / 1000,
            pause / 1000,
            st.image_bytes,
            st.export_ns / 1000,
            st.import_ns / 1000,
            st.start_ns / 1000,
            st.precopy_ns / 1000,
            st.precopy_bytes,
            (e - s) / 1000,
            call_pause / 1000,
            st.old_pid,
            st.new_pid
        );
    }
    let mut durs: Vec<u64> = all.iter().map(|o| o.1).collect();
    durs.sort_unstable();
    let median = durs.get(durs.len() / 2).copied().unwrap_or(0);
    let outside = all
        .iter()
        .filter(|o| !windows.iter().any(|(_, s, e, _)| overlaps(**o, *s, *e)))
        .map(|o| o.1)
        .max()
        .unwrap_or(0);
    let failed: Vec<&String> = results.iter().flat_map(|r| r.failed.iter()).collect();
    let wrong: Vec<&String> = results.iter().flat_map(|r| r.wrong.iter()).collect();
    println!(
        "replace_check: ops={} failed={} wrong={} median_us={} max_us_outside={} threads={threads} rounds={rounds}",
        all.len(),
        failed.len(),
        wrong.len(),
        median / 1000,
        outside / 1000
    );
    for m in failed.iter().chain(wrong.iter()).take(10) {
        println!("replace_check:   {m}");
    }
    for m in &errors {
        println!("replace_check:   {m}");
    }
    if failed.is_empty() && wrong.is_empty() && errors.is_empty() && windows.len() == rounds {
        println!("replace_check: pass");
    } else {
        println!("replace_check: FAIL");
        std::process::exit(1);
    }
}
