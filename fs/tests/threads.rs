//! Concurrency: real threads (each bound to its own CPU id) create, unlink,
//! rename and look up in private and shared directories; afterwards the
//! namespace must be exactly what the threads' own bookkeeping says, with
//! consistent link counts and listings.

use std::collections::BTreeSet;
use std::sync::Arc;

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{DirCursor, Errno, Fs, FsConfig, LockMode};

const THREADS: usize = 8;
const ROUNDS: usize = 1500;

fn new_fs(mode: LockMode) -> (Fs, Arc<HeapPages>) {
    let pages = HeapPages::new();
    (
        Fs::new(
            FsConfig {
                mode,
                max_pages: 1 << 20,
            },
            pages.clone(),
            Arc::new(SystemClock),
        ),
        pages,
    )
}

fn listing(dir: &fs::Inode) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut c = DirCursor::default();
    dir.readdir(&mut c, |n, _, _, _| {
        assert!(names.insert(n.to_string()), "duplicate entry {n}");
        true
    })
    .unwrap();
    names.remove(".");
    names.remove("..");
    names
}

fn run_threads(f: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || {
                percpu::host::bind_current_thread(t).unwrap();
                f(t)
            });
        }
    });
}

/// Each thread works on its own names in `dir_of(t)`: create, write,
/// rename, link, unlink, with lookups of what it expects.  Returns the
/// names each thread believes exist.
fn stress(fs: &Fs, dir_of: impl Fn(usize) -> String + Sync) -> Vec<BTreeSet<String>> {
    let r = fs.root();
    let results = std::sync::Mutex::new(vec![BTreeSet::new(); THREADS]);
    run_threads(|t| {
        let dir = fs.lookup(&r, &dir_of(t), true).unwrap();
        let mut mine = BTreeSet::new();
        let mut seed = t as u64 * 7919 + 1;
        for i in 0..ROUNDS {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (seed >> 33) % 16;
            let name = format!("t{t}-{k}");
            match i % 5 {
                0 | 1 => {
                    let res = fs.open(&dir, &name, O_CREAT | O_EXCL | O_RDWR, 0o644);
                    match res {
                        Ok(f) => {
                            f.write_at(0, name.as_bytes(), false).unwrap();
                            assert!(mine.insert(name));
                        }
                        Err(e) => {
                            assert_eq!(e, Errno::EEXIST);
                            assert!(mine.contains(&name));
                        }
                    }
                }
                2 => match fs.unlink(&dir, &name) {
                    Ok(()) => assert!(mine.remove(&name)),
                    Err(e) => {
                        assert_eq!(e, Errno::ENOENT);
                        assert!(!mine.contains(&name));
                    }
                },
                3 => {
                    let to = format!("t{t}-{}", (k + 1) % 16);
                    match fs.rename(&dir, &name, &dir, &to) {
                        Ok(()) => {
                            assert!(mine.remove(&name));
                            mine.insert(to);
                        }
                        Err(e) => {
                            assert_eq!(e, Errno::ENOENT);
                            assert!(!mine.contains(&name));
                        }
                    }
                }
                _ => match fs.lookup(&dir, &name, true) {
                    Ok(f) => {
                        assert!(mine.contains(&name));
                        assert_eq!(f.nlink(), 1);
                    }
                    Err(e) => {
                        assert_eq!(e, Errno::ENOENT);
                        assert!(!mine.contains(&name));
                    }
                },
            }
        }
        results.lock().unwrap()[t] = mine;
    });
    results.into_inner().unwrap()
}

fn private_and_shared(mode: LockMode) {
    let (fs, pages) = new_fs(mode);
    let r = fs.root();
    fs.mkdir(&r, "/shared", 0o755).unwrap();
    for t in 0..THREADS {
        fs.mkdir(&r, &format!("/p{t}"), 0o755).unwrap();
    }
    // Private directories.
    let mine = stress(&fs, |t| format!("/p{t}"));
    for (t, names) in mine.iter().enumerate() {
        let dir = fs.lookup(&r, &format!("/p{t}"), true).unwrap();
        assert_eq!(&listing(&dir), names, "thread {t}");
        assert_eq!(dir.stat().size, 40 + 20 * names.len() as u64);
        for n in names {
            let f = fs.lookup(&dir, n, true).unwrap();
            assert_eq!(f.nlink(), 1);
        }
    }
    // One shared directory.
    let mine = stress(&fs, |_| "/shared".to_string());
    let all: BTreeSet<String> = mine.into_iter().flatten().collect();
    let shared = fs.lookup(&r, "/shared", true).unwrap();
    assert_eq!(listing(&shared), all);
    for n in &all {
        fs.unlink(&shared, n).unwrap();
    }
    for t in 0..THREADS {
        let dir = fs.lookup(&r, &format!("/p{t}"), true).unwrap();
        for n in listing(&dir) {
            fs.unlink(&dir, &n).unwrap();
        }
        fs.rmdir(&r, &format!("/p{t}")).unwrap();
    }
    fs.rmdir(&r, "/shared").unwrap();
    assert_eq!(listing(&r), BTreeSet::new());
    assert_eq!(r.nlink(), 2);
    // Unlinked entries are freed after an RCU grace period.
    fs.flush_deferred();
    assert_eq!(pages.live(), 0, "every page came back");
}

#[test]
fn private_and_shared_directories_percpu() {
    private_and_shared(LockMode::PerCpu);
}

#[test]
fn private_and_shared_directories_global() {
    private_and_shared(LockMode::Global);
}

/// Directories moved around concurrently (cross-directory renames, rmdir
/// attempts, creates inside them) never form a cycle, never lose a
/// directory, and keep link counts equal to 2 + subdirectories.
fn directory_shuffle(mode: LockMode) {
    let (fs, _) = new_fs(mode);
    let r = fs.root();
    for i in 0..8 {
        fs.mkdir(&r, &format!("/d{i}"), 0o755).unwrap();
    }
    run_threads(|t| {
        let mut seed = t as u64 + 99;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let a = (seed >> 40) % 8;
            let b = (seed >> 20) % 8;
            // Find d{a} and d{b} wherever they are by walking from the root.
            let find = |n: u64| -> Option<String> {
                let mut stack = vec!["".to_string()];
                while let Some(p) = stack.pop() {
                    let dir = fs
                        .lookup(&r, if p.is_empty() { "/" } else { &p }, true)
                        .ok()?;
                    for name in listing(&dir) {
                        let full = format!("{p}/{name}");
                        if name == format!("d{n}") {
                            return Some(full);
                        }
                        stack.push(full);
                    }
                }
                None
            };
            let (Some(pa), Some(pb)) = (find(a), find(b)) else {
                continue;
            };
            match t % 3 {
                0 | 1 => {
                    let _ = fs.rename(&r, &pa, &r, &format!("{pb}/d{a}"));
                }
                _ => {
                    let _ = fs.mkdir(&r, &format!("{pa}/tmp{t}"), 0o755);
                    let _ = fs.rmdir(&r, &format!("{pa}/tmp{t}"));
                }
            }
        }
    });
    // Every d{i} is reachable exactly once; nlink = 2 + subdirectories.
    let mut seen = BTreeSet::new();
    let mut stack = vec![r.clone()];
    while let Some(dir) = stack.pop() {
        let names = listing(&dir);
        let mut subdirs = 0;
        for n in names {
            let c = fs.lookup(&dir, &n, false).unwrap();
            if c.is_dir() {
                subdirs += 1;
                assert!(Arc::ptr_eq(&fs.lookup(&c, "..", true).unwrap(), &dir));
                if n.starts_with('d') {
                    assert!(seen.insert(n.clone()), "{n} twice");
                }
                stack.push(c);
            }
        }
        assert_eq!(dir.nlink(), 2 + subdirs);
    }
    assert_eq!(seen.len(), 8);
}

#[test]
fn directory_shuffle_percpu() {
    directory_shuffle(LockMode::PerCpu);
}

#[test]
fn directory_shuffle_global() {
    directory_shuffle(LockMode::Global);
}

/// Readers of a shared file always see whole writes of one pattern or
/// another (writes hold the file lock), and concurrent appends lose nothing.
#[test]
fn concurrent_appends_and_reads() {
    let (fs, _) = new_fs(LockMode::PerCpu);
    let f = fs
        .open(&fs.root(), "/log", O_CREAT | O_RDWR, 0o644)
        .unwrap();
    run_threads(|t| {
        let rec = [b'a' + t as u8; 100];
        for _ in 0..200 {
            f.write_at(0, &rec, true).unwrap();
            let mut b = [0u8; 100];
            let size = f.size();
            let at = (size / 100).saturating_sub(1) * 100;
            f.read_at(at, &mut b).unwrap();
            assert!(b.iter().all(|&c| c == b[0]), "torn record");
        }
    });
    assert_eq!(f.size(), THREADS as u64 * 200 * 100);
    let stats = fs::lockstat::total(fs::lockstat::LockClass::FileData);
    assert!(stats.acquired >= THREADS as u64 * 200 * 2);
}
