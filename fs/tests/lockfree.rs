//! Lock-free lookups under concurrent writers in the same directory (and
//! the same buckets), reclamation of unlinked entries, and the reverse map
//! that truncate uses to unmap pages.
//!
//! Lookup threads must always find names nobody changes, with the right
//! inode, and must never miss a name that a rename atomically replaces;
//! afterwards every inode and page comes back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{Errno, FileMapper, Fs, FsConfig, LockMode, PAGE_SIZE};

const THREADS: usize = 8;

fn new_fs(mode: LockMode) -> (Fs, Arc<HeapPages>) {
    let pages = HeapPages::new();
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 20,
        },
        pages.clone(),
        Arc::new(SystemClock),
    );
    (fs, pages)
}

fn lookups_race_writers(mode: LockMode) {
    let (fs, pages) = new_fs(mode);
    let root = fs.root();
    fs.mkdir(&root, "/d", 0o755).unwrap();
    let stable: Vec<(String, u64)> = (0..64)
        .map(|i| {
            let name = format!("/d/stable{i}");
            let n = fs.open(&root, &name, O_CREAT | O_RDWR, 0o644).unwrap();
            n.write_at(0, b"x", false).unwrap();
            (name, n.ino())
        })
        .collect();
    fs.open(&root, "/d/target", O_CREAT | O_RDWR, 0o644)
        .unwrap();
    let stop = AtomicBool::new(false);
    let lookups = AtomicU64::new(0);
    let writers_done = AtomicUsize::new(0);
    let writers = THREADS / 2;
    // Handshake: writers start only once every reader has done a lookup,
    // so the race happens however the host schedules the threads.
    let readers_ready = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (fs, root, stable, stop, lookups, writers_done, readers_ready) = (
                &fs,
                &root,
                &stable,
                &stop,
                &lookups,
                &writers_done,
                &readers_ready,
            );
            s.spawn(move || {
                percpu::host::bind_current_thread(t).unwrap();
                if t < writers {
                    while readers_ready.load(Ordering::SeqCst) < THREADS - writers {
                        std::thread::yield_now();
                    }
                    // Churn in the same directory: create, write, rename
                    // over `target` (atomic replacement), unlink.
                    for i in 0..1500 {
                        let a = format!("/d/w{t}_{i}");
                        let n = fs.open(root, &a, O_CREAT | O_EXCL | O_RDWR, 0o644).unwrap();
                        if i % 3 == 0 {
                            n.write_at(0, &[7u8; 100], false).unwrap();
                        }
                        drop(n);
                        if i % 2 == 0 {
                            fs.rename(root, &a, root, "/d/target").unwrap();
                        } else {
                            let b = format!("/d/w{t}_{i}_b");
                            fs.rename(root, &a, root, &b).unwrap();
                            fs.unlink(root, &b).unwrap();
                        }
                    }
                    writers_done.fetch_add(1, Ordering::SeqCst);
                    if writers_done.load(Ordering::SeqCst) == writers {
                        stop.store(true, Ordering::SeqCst);
                    }
                } else {
                    let mut k = t;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, ino) = &stable[k % stable.len()];
                        let n = fs.lookup(root, name, true).unwrap();
                        assert_eq!(n.ino(), *ino, "{name} found the wrong inode");
                        assert!(
                            fs.lookup(root, "/d/target", true).is_ok(),
                            "rename over an existing name left it missing"
                        );
                        k += 7;
                        lookups.fetch_add(1, Ordering::Relaxed);
                        if k == t + 7 {
                            // This reader's first lookup is done.
                            readers_ready.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    assert!(lookups.load(Ordering::Relaxed) > 0);
    // Exactly the stable files and `target` are left.
    let mut names = Vec::new();
    let d = fs.lookup(&root, "/d", true).unwrap();
    d.readdir(&mut fs::DirCursor::default(), |n, _, _, _| {
        names.push(n.to_string());
        true
    })
    .unwrap();
    assert_eq!(names.len(), 2 + 64 + 1, "{names:?}");
    assert_eq!(d.stat().size, 40 + 20 * 65);
    for (name, _) in &stable {
        fs.unlink(&root, name).unwrap();
    }
    fs.unlink(&root, "/d/target").unwrap();
    fs.rmdir(&root, "/d").unwrap();
    drop(d);
    fs.flush_deferred();
    assert_eq!(fs.stats().live_inodes, 1, "only the root is left");
    assert_eq!(pages.live(), 0, "every page came back");
}

#[test]
fn lookups_race_writers_percpu() {
    lookups_race_writers(LockMode::PerCpu);
}

#[test]
fn lookups_race_writers_global() {
    lookups_race_writers(LockMode::Global);
}

/// Deep paths walked by many threads while their last components change.
#[test]
fn deep_walks_while_leaves_change() {
    let (fs, _) = new_fs(LockMode::PerCpu);
    let root = fs.root();
    fs.mkdir(&root, "/a", 0o755).unwrap();
    fs.mkdir(&root, "/a/b", 0o755).unwrap();
    fs.mkdir(&root, "/a/b/c", 0o755).unwrap();
    fs.symlink("/a/b", &root, "/link").unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (fs, root) = (&fs, &root);
            s.spawn(move || {
                percpu::host::bind_current_thread(t).unwrap();
                for i in 0..800 {
                    let leaf = format!("/link/c/t{t}_{i}");
                    fs.mkdir(root, &leaf, 0o755).unwrap();
                    assert!(fs
                        .lookup(root, &format!("{leaf}/.."), true)
                        .unwrap()
                        .is_dir());
                    fs.rmdir(root, &leaf).unwrap();
                    assert_eq!(fs.lookup(root, &leaf, true).unwrap_err(), Errno::ENOENT);
                }
            });
        }
    });
    fs.flush_deferred();
    assert_eq!(fs.lookup(&root, "/a/b/c", true).unwrap().stat().nlink, 2);
}

/// A mapper standing in for an address space: records what it was told.
struct Recorder {
    calls: std::sync::Mutex<Vec<(usize, u64)>>,
}

impl FileMapper for Recorder {
    fn unmap_file_pages(&self, file_key: usize, first_gone: u64) {
        self.calls.lock().unwrap().push((file_key, first_gone));
    }
}

#[test]
fn truncate_unmaps_from_every_live_mapper() {
    let (fs, _) = new_fs(LockMode::PerCpu);
    let root = fs.root();
    let f = fs.open(&root, "/m", O_CREAT | O_RDWR, 0o644).unwrap();
    f.truncate(4 * PAGE_SIZE as u64).unwrap();
    let a = Arc::new(Recorder {
        calls: Default::default(),
    });
    let b = Arc::new(Recorder {
        calls: Default::default(),
    });
    for m in [&a, &b, &a] {
        let w: Weak<dyn FileMapper> = Arc::downgrade(m) as Weak<dyn FileMapper>;
        f.register_mapper(w).unwrap();
    }
    assert_eq!(f.mapper_count(), 2, "registered once each");
    // Nothing mapped yet: a shrink has nothing to unmap.
    f.truncate(3 * PAGE_SIZE as u64).unwrap();
    assert!(a.calls.lock().unwrap().is_empty());
    f.page_phys(0).unwrap();
    // Shrinking within the last page cuts no page.
    f.truncate(3 * PAGE_SIZE as u64 - 10).unwrap();
    assert!(a.calls.lock().unwrap().is_empty());
    f.truncate(PAGE_SIZE as u64 + 1).unwrap();
    assert_eq!(*a.calls.lock().unwrap(), vec![(f.map_key(), 2)]);
    assert_eq!(*b.calls.lock().unwrap(), vec![(f.map_key(), 2)]);
    drop(b);
    f.truncate(0).unwrap();
    assert_eq!(a.calls.lock().unwrap().last(), Some(&(f.map_key(), 0)));
    assert_eq!(f.mapper_count(), 1, "a dead mapper is pruned");
    // Growing never unmaps.
    let before = a.calls.lock().unwrap().len();
    f.truncate(8 * PAGE_SIZE as u64).unwrap();
    assert_eq!(a.calls.lock().unwrap().len(), before);
    assert_eq!(
        fs.mkdir(&root, "/dir", 0o755)
            .unwrap()
            .register_mapper(Arc::downgrade(&a) as Weak<dyn FileMapper>)
            .unwrap_err(),
        Errno::EISDIR
    );
}
