//! Stress program run inside QEMU (and on Linux): N threads (default: one
//! per CPU) create, write, read, rename and unlink files in private and
//! shared directories and pass data through pipes; at the end every
//! directory must list exactly what the threads' own bookkeeping says.
//! Prints `fs_stress: pass ...` (exit 0) or `fs_stress: FAIL ...` (exit 1).
//!
//!   cargo build --release -p userland --bin fs_stress --target x86_64-unknown-linux-musl

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

const ROUNDS: usize = 400;

fn worker(t: usize, base: &str) -> io::Result<(BTreeSet<String>, BTreeSet<String>)> {
    let private = format!("{base}/p{t}");
    fs::create_dir(&private)?;
    let mut mine = BTreeSet::new();
    let mut shared = BTreeSet::new();
    let mut seed = t as u64 * 7919 + 1;
    for i in 0..ROUNDS {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (seed >> 33) % 12;
        let name = format!("{private}/f{k}");
        match i % 6 {
            0 | 1 => {
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&name)
                {
                    Ok(f) => {
                        let data = format!("{name}:{i}");
                        f.write_all_at(data.as_bytes(), 100)?;
                        let mut back = vec![0u8; data.len()];
                        f.read_exact_at(&mut back, 100)?;
                        if back != data.as_bytes() {
                            return Err(io::Error::other(format!("{name}: read back wrong data")));
                        }
                        mine.insert(format!("f{k}"));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !mine.contains(&format!("f{k}")) {
                            return Err(io::Error::other(format!(
                                "{name}: EEXIST but not created"
                            )));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            2 => match fs::remove_file(&name) {
                Ok(()) => {
                    mine.remove(&format!("f{k}"));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            3 => {
                let to = format!("{private}/f{}", (k + 1) % 12);
                if fs::rename(&name, &to).is_ok() {
                    mine.remove(&format!("f{k}"));
                    mine.insert(format!("f{}", (k + 1) % 12));
                }
            }
            4 => {
                let s = format!("{base}/shared/t{t}-{i}");
                fs::write(&s, b"x")?;
                shared.insert(format!("t{t}-{i}"));
                if i % 4 == 0 {
                    fs::remove_file(&s)?;
                    shared.remove(&format!("t{t}-{i}"));
                }
            }
            _ => {
                let (mut r, mut w) = io::pipe()?;
                let msg = [t as u8; 100];
                w.write_all(&msg)?;
                drop(w);
                let mut got = Vec::new();
                r.read_to_end(&mut got)?;
                if got != msg {
                    return Err(io::Error::other("pipe lost data"));
                }
            }
        }
    }
    Ok((mine, shared))
}

fn listing(dir: &str) -> io::Result<BTreeSet<String>> {
    fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .max(4)
        });
    let base = "/fsstress";
    let run = || -> io::Result<String> {
        fs::create_dir(base)?;
        fs::create_dir(format!("{base}/shared"))?;
        let results: Vec<io::Result<(BTreeSet<String>, BTreeSet<String>)>> =
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| s.spawn(move || worker(t, base)))
                    .collect();
                hs.into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(io::Error::other("thread panicked")))
                    })
                    .collect()
            });
        let mut all_shared = BTreeSet::new();
        for (t, r) in results.into_iter().enumerate() {
            let (mine, shared) = r?;
            let got = listing(&format!("{base}/p{t}"))?;
            if got != mine {
                return Err(io::Error::other(format!(
                    "p{t}: listed {got:?}, expected {mine:?}"
                )));
            }
            for n in &mine {
                let m = fs::metadata(format!("{base}/p{t}/{n}"))?;
                if m.len() < 100 {
                    return Err(io::Error::other(format!("p{t}/{n}: size {}", m.len())));
                }
            }
            all_shared.extend(shared);
        }
        let got = listing(&format!("{base}/shared"))?;
        if got != all_shared {
            return Err(io::Error::other(format!(
                "shared: {} listed, {} expected",
                got.len(),
                all_shared.len()
            )));
        }
        Ok(format!("threads={threads} shared_entries={}", got.len()))
    };
    match run() {
        Ok(s) => println!("fs_stress: pass {s}"),
        Err(e) => {
            println!("fs_stress: FAIL {e}");
            std::process::exit(1);
        }
    }
}
