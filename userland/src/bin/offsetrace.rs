//! `offsetrace`: threads sharing one open file description read and write
//! at its offset at the same time; every `read`/`write` must take its own
//! range (Linux's `f_pos_lock`), so no record is read twice or missed and
//! no write lands on another's.  In `structure=servers` the offset lives in
//! the kernel while the file server does the I/O (`remote::PosLock`).
//!
//! Usage: `offsetrace [DIR]` (default `/tmp`).  Prints `reads: ok` or
//! `reads: WRONG ...`, `writes: ok` or `writes: WRONG ...`, then
//! `offsetrace: pass` or `offsetrace: FAIL`; exit 0 on pass.  The output
//! does not depend on scheduling.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use userland::say;

/// Threads sharing the description.
const THREADS: usize = 4;
/// 8-byte records each thread reads or writes (one system call each).
const RECORDS: usize = 2048;

/// Every record read exactly once: each `read` of 8 bytes at the shared
/// offset returns a record no other `read` returned.
fn reads(dir: &str) -> Result<(), String> {
    let path = format!("{dir}/offsetrace.read");
    let total = THREADS * RECORDS;
    let mut data = Vec::with_capacity(total * 8);
    for i in 0..total as u64 {
        data.extend_from_slice(&i.to_le_bytes());
    }
    std::fs::write(&path, &data).map_err(|e| format!("writing {path}: {e}"))?;
    let file = Arc::new(File::open(&path).map_err(|e| format!("opening {path}: {e}"))?);
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (file, start) = (file.clone(), start.clone());
            std::thread::spawn(move || -> Result<Vec<u64>, String> {
                start.wait();
                let mut seen = Vec::new();
                let mut rec = [0u8; 8];
                loop {
                    match (&*file).read(&mut rec) {
                        Ok(0) => return Ok(seen),
                        Ok(8) => seen.push(u64::from_le_bytes(rec)),
                        Ok(n) => return Err(format!("short read of {n} bytes")),
                        Err(e) => return Err(format!("read: {e}")),
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().map_err(|_| "a reader panicked".to_string())??);
    }
    let _ = std::fs::remove_file(&path);
    all.sort_unstable();
    let dups = all.windows(2).filter(|w| w[0] == w[1]).count();
    all.dedup();
    let missing = total - all.len();
    if dups != 0 || missing != 0 || all.last() != Some(&(total as u64 - 1)) {
        return Err(format!(
            "{dups} record(s) read twice, {missing} never read, of {total}"
        ));
    }
    Ok(())
}

/// Every write kept: each `write` of 8 bytes at the shared offset takes
/// its own 8 bytes, so the file ends with every thread's every record.
fn writes(dir: &str) -> Result<(), String> {
    let path = format!("{dir}/offsetrace.write");
    let file = Arc::new(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| format!("creating {path}: {e}"))?,
    );
    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (file, start) = (file.clone(), start.clone());
            std::thread::spawn(move || -> Result<(), String> {
                start.wait();
                for i in 0..RECORDS as u64 {
                    let rec = ((t as u64) << 32 | i).to_le_bytes();
                    match (&*file).write(&rec) {
                        Ok(8) => {}
                        Ok(n) => return Err(format!("short write of {n} bytes")),
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a writer panicked".to_string())??;
    }
    drop(file);
    let data = std::fs::read(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let _ = std::fs::remove_file(&path);
    let total = THREADS * RECORDS;
    if data.len() != total * 8 {
        return Err(format!(
            "file has {} bytes, {} written (writes overlapped)",
            data.len(),
            total * 8
        ));
    }
    let mut recs: Vec<u64> = data
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    recs.sort_unstable();
    recs.dedup();
    if recs.len() != total {
        return Err(format!("{} distinct records of {total}", recs.len()));
    }
    Ok(())
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp".to_string());
    let mut pass = true;
    for (name, result) in [("reads", reads(&dir)), ("writes", writes(&dir))] {
        match result {
            Ok(()) => say(&format!("{name}: ok")),
            Err(e) => {
                pass = false;
                say(&format!("{name}: WRONG {e}"));
            }
        }
    }
    if pass {
        say("offsetrace: pass");
    } else {
        say("offsetrace: FAIL");
        std::process::exit(1);
    }
}
