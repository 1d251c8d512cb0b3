//! crash_check: kills the file server (`structure=servers`) at seeded
//! points of a file workload and checks that the kernel isolates the
//! crash: calls fail cleanly (`EIO`, or `EBADF` for a descriptor of the
//! dead instance, `ENOENT` for files it had) and never hang, and the
//! kernel restarts the server, after which files work again (what was
//! written before is gone: the restarted server has only the initramfs).
//!
//! Each round: `N` (drawn from the seed in 1..=2*`--ops`) checked
//! operations, `kill(fsd, SIGKILL)`, then operations until one works
//! (each failure must be one of the clean errors), and the descriptor
//! opened before the crash must fail.  Prints `crash_check: round R
//! recovery_us=T errors=E old_fd=ERR` and `crash_check: pass`, or
//! `crash_check: FAIL ...` (exit 1).  Options: `--rounds R` (3), `--ops K`
//! (50), `--seed S` (1).
//!
//! Must not: sleep to synchronise (it retries), or pass with an unclean
//! error.

use std::fs::{self, File};
use std::io::{Read, Write};

fn fsd_pid() -> Option<i32> {
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Name:", "fsd"])
        {
            return Some(pid);
        }
    }
    None
}

fn mono_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// One checked operation: a file in /tmp/crash, written and read back.
fn op(n: u64) -> std::io::Result<()> {
    if let Err(e) = fs::create_dir_all("/tmp/crash") {
        // A server that is being killed may still answer the `mkdir`
        // (`EEXIST`) and be gone for the check that the name is a
        // directory: std then returns that `EEXIST`.  The directory was
        // there; the next call fails cleanly if the server is gone.
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    let path = format!("/tmp/crash/f{}", n % 16);
    let want: Vec<u8> = (0..(500 + n % 3000)).map(|i| (i ^ n) as u8).collect();
    File::create(&path)?.write_all(&want)?;
    let mut got = Vec::new();
    File::open(&path)?.read_to_end(&mut got)?;
    if got != want {
        return Err(std::io::Error::other(format!("{path}: wrong data")));
    }
    Ok(())
}

fn clean(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO) | Some(libc::EBADF) | Some(libc::ENOENT)
    )
}

fn fail(msg: &str) -> ! {
    println!("crash_check: FAIL {msg}");
    std::process::exit(1);
}

fn main() {
    let (mut rounds, mut ops, mut seed) = (3usize, 50u64, 1u64);
    let args: Vec<String> = std::env::args().skip(1).collect();
    for w in args.chunks(2) {
        let v = w.get(1).and_then(|v| v.parse().ok());
        match (w[0].as_str(), v) {
            ("--rounds", Some(v)) => rounds = v as usize,
            ("--ops", Some(v)) => ops = v,
            ("--seed", Some(v)) => seed = v.max(1),
            _ => fail(&format!("bad arguments {args:?}")),
        }
    }
    let mut n = 0u64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let before = 1 + seed % (2 * ops.max(1));
        for _ in 0..before {
            n += 1;
            if let Err(e) = op(n) {
                fail(&format!("round {round}: operation before the crash: {e}"));
            }
        }
        let mut held = File::open(format!("/tmp/crash/f{}", n % 16))
            .unwrap_or_else(|e| fail(&format!("open before the crash: {e}")));
        let Some(pid) = fsd_pid() else {
            fail("no fsd process in /proc")
        };
        // SAFETY: kill with a pid and a signal number.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            fail(&format!("kill {pid}: {}", std::io::Error::last_os_error()));
        }
        let t0 = mono_us();
        let mut errors = 0u64;
        loop {
            n += 1;
            match op(n) {
                Ok(()) => break,
                Err(e) if clean(&e) => errors += 1,
                Err(e) => fail(&format!(
                    "round {round}: unclean error after the crash: {e}"
                )),
            }
            if mono_us() - t0 > 60_000_000 {
                fail(&format!("round {round}: no recovery within 60 s"));
            }
        }
        let recovery = mono_us() - t0;
        let mut b = [0u8; 8];
        let old_fd = match held.read(&mut b) {
            Ok(_) => fail(&format!(
                "round {round}: a descriptor of the dead server still reads"
            )),
            Err(e) if clean(&e) => e.raw_os_error().unwrap_or(0),
            Err(e) => fail(&format!("round {round}: old descriptor: {e}")),
        };
        match fsd_pid() {
            Some(p) if p != pid => {}
            other => fail(&format!(
                "round {round}: fsd after restart: {other:?} (was {pid})"
            )),
        }
        println!("crash_check: round {round} recovery_us={recovery} errors={errors} old_fd_errno={old_fd}");
    }
    println!("crash_check: pass");
}
