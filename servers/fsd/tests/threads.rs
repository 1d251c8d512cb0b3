//! Many client threads calling a multi-threaded server at once: private
//! and shared directories, opens and closes racing in the handle table,
//! renames across directories; afterwards the namespace is what the
//! clients' own bookkeeping says and every handle was given back.

mod common;

use std::collections::BTreeSet;
use std::sync::Barrier;

use abi::fcntl::*;
use abi::Errno;
use common::Setup;
use fsproto::At;

const CLIENTS: usize = 8;
const WORKERS: usize = 2;
const ROUNDS: usize = 300;

#[test]
fn clients_hammer_the_server() {
    let s = Setup::new(WORKERS);
    {
        let c = s.client(0);
        c.mkdir(c.root(), "shared", 0o777).unwrap();
        c.mkdir(c.root(), "moved", 0o777).unwrap();
    }
    let start = Barrier::new(CLIENTS);
    let kept: Vec<BTreeSet<String>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (s, start) = (&s, &start);
                sc.spawn(move || {
                    let c = s.client(t % WORKERS);
                    let r = c.root();
                    let mine = format!("c{t}");
                    c.mkdir(r, &mine, 0o755).unwrap();
                    let (dir, _) = c.open(r, &mine, O_PATH | O_DIRECTORY, 0).unwrap();
                    let mut kept = BTreeSet::new();
                    start.wait();
                    for i in 0..ROUNDS {
                        let name = format!("f{i}");
                        let (h, _) = c
                            .open(dir, &name, O_CREAT | O_EXCL | O_RDWR, 0o644)
                            .unwrap();
                        let body = format!("{t}:{i}:").repeat(1 + i % 50);
                        c.pwrite(h, 0, body.as_bytes(), false).unwrap();
                        assert_eq!(c.pread(h, 0, body.len() + 10).unwrap(), body.as_bytes());
                        // The same name in the shared directory: exactly
                        // one client creates it; the rest see EEXIST.
                        let shared = format!("shared/s{i}");
                        match c.open(r, &shared, O_CREAT | O_EXCL | O_WRONLY, 0o644) {
                            Ok((sh, _)) => c.close(sh).unwrap(),
                            Err(e) => assert_eq!(e, Errno::EEXIST),
                        }
                        match i % 3 {
                            0 => {
                                c.unlink(dir, &name, 0).unwrap();
                                // The open handle still reads the data.
                                assert_eq!(c.pread(h, 0, body.len()).unwrap(), body.as_bytes());
                            }
                            1 => {
                                let to = format!("moved/{mine}-{name}");
                                c.rename(dir, &name, r, &to, 0).unwrap();
                                assert_eq!(
                                    c.stat(At::path(r, &to)).unwrap().st_size as usize,
                                    body.len()
                                );
                                c.rename(r, &to, dir, &name, 0).unwrap();
                                kept.insert(name);
                            }
                            _ => {
                                kept.insert(name);
                            }
                        }
                        c.close(h).unwrap();
                    }
                    let (d, _) = c.open(dir, ".", O_RDONLY | O_DIRECTORY, 0).unwrap();
                    let (list, _) = c.list(d, 512).unwrap();
                    let names: BTreeSet<String> = list
                        .into_iter()
                        .map(|e| e.name)
                        .filter(|n| !n.starts_with('.'))
                        .collect();
                    assert_eq!(names, kept, "client {t}'s directory");
                    c.close(d).unwrap();
                    c.close(dir).unwrap();
                    kept
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let c = s.client(1);
    let r = c.root();
    let (shared, _) = c.open(r, "shared", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(c.list(shared, 4096).unwrap().0.len(), ROUNDS + 2);
    let (moved, _) = c.open(r, "moved", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(c.list(moved, 4096).unwrap().0.len(), 2);
    for (t, k) in kept.iter().enumerate() {
        assert_eq!(k.len(), ROUNDS - ROUNDS.div_ceil(3));
        let st = c.stat(At::path(r, &format!("c{t}"))).unwrap();
        assert_eq!(st.st_nlink, 2);
    }
    c.close(shared).unwrap();
    c.close(moved).unwrap();
    // Only the roots of the attached clients remain.
    assert_eq!(s.server.live_handles(), CLIENTS + 2);
    drop(c);
    s.finish();
}

#[test]
fn handles_opened_and_closed_concurrently_stay_distinct() {
    // Handle-table races: clients on both server threads open the same
    // file and close in another order; every handle is unique while live
    // and fails once closed.
    let s = Setup::new(WORKERS);
    {
        let c = s.client(0);
        c.open(c.root(), "f", O_CREAT | O_WRONLY, 0o644).unwrap();
    }
    std::thread::scope(|sc| {
        for t in 0..CLIENTS {
            let s = &s;
            sc.spawn(move || {
                let c = s.client(t % WORKERS);
                for _ in 0..50 {
                    let hs: Vec<_> = (0..20)
                        .map(|_| c.open(c.root(), "f", O_RDONLY, 0).unwrap().0)
                        .collect();
                    let set: BTreeSet<_> = hs.iter().collect();
                    assert_eq!(set.len(), hs.len());
                    for h in hs.iter().rev() {
                        c.close(*h).unwrap();
                        assert_eq!(c.pread(*h, 0, 1), Err(Errno::EBADF));
                    }
                }
            });
        }
    });
    // The clients' roots, and the first client's root and open file.
    assert_eq!(s.server.live_handles(), CLIENTS + 2);
    s.finish();
}
