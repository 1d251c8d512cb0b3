//! One-copy write grants and the bytes past the end of a file
//! (`fs::Inode::grant_write` / `commit_write`): a grant copied into and
//! never committed must not leave its bytes where a later growth of the
//! file shows zeros, and a growth must not wipe what a writer holding a
//! grant copied.  Unit cases, a property test against a model of the
//! file's bytes, and real threads writing through grants while another
//! grows the file.
//!
//! The copies write the granted pages directly, as the kernel does: on
//! the host a page's address is its virtual address (`fs::host`).

use std::io::Write;
use std::sync::{Arc, Barrier};

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{Errno, Fs, FsConfig, Inode, LockMode, PAGE_SIZE};
use proptest::prelude::*;

const P: u64 = PAGE_SIZE as u64;

fn new_fs(mode: LockMode) -> Fs {
    Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 16,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    )
}

fn create(fs: &Fs) -> Arc<Inode> {
    fs.open(&fs.root(), "/f", O_CREAT | O_RDWR, 0o644).unwrap()
}

/// Copies `data` into the pages `pages` of a grant at `at`, as the kernel
/// does (the first page is the one holding `at`).
fn copy_in(pages: &[u64], at: u64, data: &[u8]) {
    let mut done = 0usize;
    while done < data.len() {
        let pos = at + done as u64;
        let page = pages[(pos / P - at / P) as usize];
        let in_page = (pos % P) as usize;
        let take = (PAGE_SIZE - in_page).min(data.len() - done);
        assert_ne!(page, 0);
        // SAFETY: a page the file system granted for this write (on the
        // host its address is a live heap page of PAGE_SIZE bytes), kept
        // while the file lives; the range stays inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data[done..].as_ptr(),
                (page as *mut u8).add(in_page),
                take,
            )
        }
        done += take;
    }
}

/// Grants `data.len()` bytes at `at` and copies them all: the ticket.
fn grant_copy(f: &Inode, at: u64, data: &[u8]) -> u64 {
    let (n, pages, ticket) = f.grant_write(at, data.len()).unwrap();
    assert_eq!(n, data.len());
    copy_in(&pages, at, data);
    ticket
}

fn read(f: &Inode, at: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0xEEu8; len];
    let n = f.read_at(at, &mut out).unwrap();
    out.truncate(n);
    out
}

fn modes(t: impl Fn(LockMode)) {
    t(LockMode::PerCpu);
    t(LockMode::Global);
}

/// The case found by mutation testing: grant at 0, copy `secret`, no
/// commit, grow: zeros, whichever way the grant ended.
#[test]
fn a_grant_ended_without_commit_leaves_zeros_past_the_end() {
    modes(|mode| {
        let fs = new_fs(mode);
        let f = create(&fs);
        // Ended by an empty commit (the client copied nothing it keeps).
        let t = grant_copy(&f, 0, b"secret");
        assert_eq!(f.commit_write(0, 0, t).unwrap(), 0);
        f.truncate(100).unwrap();
        assert_eq!(read(&f, 0, 100), vec![0; 100]);
        // Ended by the last I/O user closing (a client that died).
        f.truncate(0).unwrap();
        f.io_open();
        f.io_open();
        grant_copy(&f, 10, b"secret");
        f.io_close();
        f.io_close();
        f.truncate(100).unwrap();
        assert_eq!(read(&f, 0, 100), vec![0; 100]);
        // A short commit (a copy that faulted part-way): the rest zeros.
        f.truncate(0).unwrap();
        let t = grant_copy(&f, 0, b"secret");
        assert_eq!(f.commit_write(0, 3, t).unwrap(), 3);
        f.truncate(10).unwrap();
        assert_eq!(read(&f, 0, 10), b"sec\0\0\0\0\0\0\0");
        // A write further on, across a page.
        f.truncate(0).unwrap();
        let t = grant_copy(&f, P - 3, b"secret");
        f.commit_write(P - 3, 0, t).unwrap();
        f.write_at(2 * P, b"x", false).unwrap();
        assert_eq!(read(&f, 0, 2 * P as usize), vec![0; 2 * P as usize]);
        // A commit further on by another grant.
        f.truncate(0).unwrap();
        let t = grant_copy(&f, 0, b"secret");
        let t2 = grant_copy(&f, 20, b"x");
        f.commit_write(0, 0, t).unwrap();
        assert_eq!(f.commit_write(20, 1, t2).unwrap(), 21);
        assert_eq!(
            read(&f, 0, 21),
            b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0x"
        );
    });
}

/// A writer past the end holding a grant keeps its bytes while another
/// call grows the file over them (zeroing the gap at growth would wipe
/// them), and its commit then shows them.
#[test]
fn growing_keeps_the_bytes_of_a_grant_in_flight() {
    modes(|mode| {
        let fs = new_fs(mode);
        let f = create(&fs);
        f.write_at(0, b"head", false).unwrap();
        let t = grant_copy(&f, 100, b"in flight");
        f.truncate(300).unwrap();
        f.write_at(400, b"tail", false).unwrap();
        assert_eq!(f.commit_write(100, 9, t).unwrap(), 109);
        assert_eq!(f.size(), 404);
        let all = read(&f, 0, 404);
        assert_eq!(&all[..4], b"head");
        assert_eq!(&all[100..109], b"in flight");
        assert!(all[4..100].iter().chain(&all[109..400]).all(|&b| b == 0));
        // Grown over, then dropped: zeros again.
        let t = grant_copy(&f, 500, b"gone");
        f.truncate(600).unwrap();
        f.commit_write(500, 0, t).unwrap();
        assert_eq!(read(&f, 500, 4), vec![0; 4]);
    });
}

/// Overlapping grants: one that ends leaves the bytes another still
/// covers (that one may be copying there) and they are zeroed when the
/// last one ends; a committed write over a grant's bytes survives it.
#[test]
fn overlapping_grants_and_committed_writes() {
    modes(|mode| {
        let fs = new_fs(mode);
        let f = create(&fs);
        let a = grant_copy(&f, 0, b"aaaaaaaaaa");
        let b = grant_copy(&f, 5, b"bbbbbbbbbb");
        f.commit_write(0, 0, a).unwrap();
        f.truncate(20).unwrap();
        assert_eq!(read(&f, 0, 15), b"\0\0\0\0\0bbbbbbbbbb");
        f.commit_write(5, 0, b).unwrap();
        assert_eq!(read(&f, 0, 20), vec![0; 20]);
        // A write committed over a grant's copy past the end stays.
        f.truncate(0).unwrap();
        let a = grant_copy(&f, 0, b"aaaa");
        f.write_at(1, b"bb", false).unwrap();
        f.commit_write(0, 0, a).unwrap();
        f.truncate(6).unwrap();
        assert_eq!(read(&f, 0, 6), b"\0bb\0\0\0");
        // And the commit of another grant over it.
        f.truncate(0).unwrap();
        let a = grant_copy(&f, 0, b"aaaa");
        let b = grant_copy(&f, 2, b"cc");
        f.commit_write(2, 2, b).unwrap();
        f.commit_write(0, 0, a).unwrap();
        f.truncate(6).unwrap();
        assert_eq!(read(&f, 0, 6), b"\0\0cc\0\0");
    });
}

/// A shrinking truncate into a grant's range: its commit is refused (the
/// client writes again) and what it copied past the new end is zeroed
/// when it ends; a grant below the new end is not affected.
#[test]
fn a_truncate_into_a_grant_refuses_its_commit_and_zeroes_its_bytes() {
    modes(|mode| {
        let fs = new_fs(mode);
        let f = create(&fs);
        f.write_at(0, &[7u8; 200], false).unwrap();
        let low = grant_copy(&f, 0, b"low");
        let t = grant_copy(&f, 150, &[9u8; 100]);
        f.truncate(160).unwrap();
        // A copy after the truncate (the client was still copying).
        let (_, pages, _) = f.grant_write(150, 1).unwrap();
        copy_in(&pages, 170, &[9u8; 5]);
        assert_eq!(f.commit_write(150, 100, t).unwrap_err(), Errno::EAGAIN);
        assert_eq!(f.commit_write(0, 3, low).unwrap(), 3);
        f.truncate(300).unwrap();
        let all = read(&f, 0, 300);
        assert_eq!(&all[..3], b"low");
        assert_eq!(&all[3..150], &[7u8; 147][..]);
        assert_eq!(&all[150..160], &[9u8; 10][..]);
        assert!(all[160..].iter().all(|&b| b == 0), "{:?}", &all[160..]);
    });
}

/// A client that asks for grants and never commits cannot grow the
/// record without bound: the oldest ends (its bytes zeroed, its commit
/// refused with `EAGAIN`), the newest stay valid.
#[test]
fn the_oldest_of_too_many_grants_ends() {
    let fs = new_fs(LockMode::PerCpu);
    let f = create(&fs);
    let first = grant_copy(&f, 0, b"first");
    let mut last = 0;
    for i in 0..64u64 {
        last = grant_copy(&f, 1000 + i, b"y");
    }
    f.truncate(10).unwrap();
    assert_eq!(read(&f, 0, 10), vec![0; 10]);
    assert_eq!(f.commit_write(0, 5, first).unwrap_err(), Errno::EAGAIN);
    assert_eq!(f.commit_write(1063, 1, last).unwrap(), 1064);
    // A forged commit of a range the grant does not hold: EINVAL, and
    // the grant stays valid.
    let t = grant_copy(&f, 2000, b"zz");
    assert_eq!(f.commit_write(1999, 2, t).unwrap_err(), Errno::EINVAL);
    assert_eq!(f.commit_write(2000, 3, t).unwrap_err(), Errno::EINVAL);
    assert_eq!(f.commit_write(2000, 2, t).unwrap(), 2002);
}

// ---- Property test against a model of the file's bytes ----------------

#[derive(Debug, Clone)]
enum Op {
    /// Grant `len` bytes at `at`, copy the first `copied` per mille.
    Grant {
        at: u64,
        len: usize,
        copied: u16,
        seed: u8,
    },
    /// Commit the first `part` per mille of what grant `i` copied
    /// (0: ends it with nothing).
    Commit {
        i: usize,
        part: u16,
    },
    Truncate(u64),
    Write {
        at: u64,
        len: usize,
        seed: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3 * P, 1..2 * PAGE_SIZE, 0..=1000u16, any::<u8>())
            .prop_map(|(at, len, copied, seed)| Op::Grant { at, len, copied, seed }),
        3 => (any::<usize>(), 0..=1000u16).prop_map(|(i, part)| Op::Commit { i, part }),
        2 => (0..5 * P).prop_map(Op::Truncate),
        1 => (0..3 * P, 1..PAGE_SIZE, any::<u8>())
            .prop_map(|(at, len, seed)| Op::Write { at, len, seed }),
    ]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

struct MGrant {
    id: usize,
    ticket: u64,
    start: u64,
    end: u64,
    /// The smallest size of the file during the grant's life: bytes at or
    /// past it were past the end at some time.
    low: u64,
    stale: bool,
}

/// The file's bytes as the rules say: `val` `None` where a grant copied
/// inside the file and ended without committing (either value is right);
/// `owner` the grant whose uncommitted copy a byte holds.
struct Model {
    size: u64,
    val: Vec<Option<u8>>,
    owner: Vec<Option<usize>>,
    grants: Vec<MGrant>,
    next: usize,
}

const SPAN: usize = 6 * PAGE_SIZE;

impl Model {
    fn end(&mut self, at: usize, committed: (u64, u64)) {
        let g = self.grants.remove(at);
        for p in g.start..g.end {
            if (committed.0..committed.1).contains(&p) || self.owner[p as usize] != Some(g.id) {
                continue;
            }
            let p = p as usize;
            self.owner[p] = None;
            if (p as u64) < g.low {
                self.val[p] = None;
            } else if let Some(h) = self
                .grants
                .iter()
                .find(|h| (h.start..h.end).contains(&(p as u64)))
            {
                self.owner[p] = Some(h.id);
            } else {
                self.val[p] = Some(0);
            }
        }
    }

    fn set_size(&mut self, size: u64) {
        self.size = size;
        for g in &mut self.grants {
            g.low = g.low.min(size);
        }
    }
}

fn check(f: &Inode, m: &Model, what: &str) {
    assert_eq!(f.size(), m.size, "{what}");
    let got = read(f, 0, m.size as usize);
    for (p, (&g, v)) in got.iter().zip(&m.val).enumerate() {
        if let Some(v) = v {
            assert_eq!(g, *v, "byte {p} after {what}");
        }
    }
}

fn run_model(ops: Vec<Op>) {
    let fs = new_fs(LockMode::PerCpu);
    let f = create(&fs);
    let mut m = Model {
        size: 0,
        val: vec![Some(0); SPAN],
        owner: vec![None; SPAN],
        grants: Vec::new(),
        next: 0,
    };
    for op in ops {
        match op.clone() {
            Op::Grant {
                at,
                len,
                copied,
                seed,
            } => {
                let (n, pages, ticket) = f.grant_write(at, len).unwrap();
                assert_eq!(n, len);
                let c = len * copied as usize / 1000;
                let data = pattern(c, seed);
                copy_in(&pages, at, &data);
                let id = m.next;
                m.next += 1;
                for (k, &b) in data.iter().enumerate() {
                    m.val[at as usize + k] = Some(b);
                    m.owner[at as usize + k] = Some(id);
                }
                m.grants.push(MGrant {
                    id,
                    ticket,
                    start: at,
                    end: at + len as u64,
                    low: m.size,
                    stale: false,
                });
            }
            Op::Commit { i, part } => {
                if m.grants.is_empty() {
                    continue;
                }
                let i = i % m.grants.len();
                let g = &m.grants[i];
                let (start, ticket) = (g.start, g.ticket);
                let count = ((g.end - g.start) as usize * part as usize / 1000) as u64;
                let r = f.commit_write(start, count as usize, ticket);
                if g.stale {
                    assert_eq!(r.unwrap_err(), Errno::EAGAIN);
                    m.end(i, (0, 0));
                } else {
                    assert_eq!(r.unwrap(), start + count);
                    for p in start..start + count {
                        m.owner[p as usize] = None;
                    }
                    // An empty commit ends the grant and writes nothing:
                    // like a zero-length write, it never grows the file.
                    if count > 0 && start + count > m.size {
                        m.set_size(start + count);
                    }
                    m.end(i, (start, start + count));
                }
            }
            Op::Truncate(size) => {
                f.truncate(size).unwrap();
                if size < m.size {
                    for g in m.grants.iter_mut().filter(|g| g.end > size) {
                        g.stale = true;
                    }
                    for p in size as usize..SPAN {
                        m.val[p] = Some(0);
                        m.owner[p] = None;
                    }
                }
                m.set_size(size);
            }
            Op::Write { at, len, seed } => {
                let data = pattern(len, seed);
                f.write_at(at, &data, false).unwrap();
                for (k, &b) in data.iter().enumerate() {
                    m.val[at as usize + k] = Some(b);
                    m.owner[at as usize + k] = None;
                }
                if at + len as u64 > m.size {
                    m.set_size(at + len as u64);
                }
            }
        }
        check(&f, &m, &format!("{op:?}"));
    }
    // End every grant, then show every byte.
    while let Some(g) = m.grants.first() {
        let r = f.commit_write(g.start, 0, g.ticket);
        assert_eq!(r.is_err(), g.stale);
        m.end(0, (0, 0));
    }
    f.truncate(SPAN as u64).unwrap();
    m.set_size(SPAN as u64);
    check(&f, &m, "the end");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn grants_commits_drops_truncates_and_writes_match_the_model(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        run_model(ops);
    }
}

// ---- Real threads ------------------------------------------------------

const WRITERS: usize = 3;
const REGION: u64 = 3000;
const STRIDE: u64 = REGION + 1;
const PHASES: usize = 8;
const ROUNDS: usize = 40;

/// Writers each own a region of the file (regions share pages) and write
/// it through grants, committing all, part or nothing of what they
/// copied, while another thread grows the file over them by writing the
/// byte after each region (a write further on).  After each of its writes
/// a writer reads its region back: what it committed, and zeros elsewhere
/// up to the end (nobody else writes there and none of its grants is
/// open).  At the end of each phase (everyone idle) the whole file is
/// checked and cut to 0 for the next.
#[test]
fn writers_with_grants_and_a_growing_file_on_threads() {
    modes(|mode| {
        let fs = Arc::new(new_fs(mode));
        let f = create(&fs);
        let phase_end = Arc::new(Barrier::new(WRITERS + 1));
        let phase_start = Arc::new(Barrier::new(WRITERS + 1));
        let phase_mid = Arc::new(Barrier::new(WRITERS + 1));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (f, phase_end, phase_start, phase_mid) = (
                f.clone(),
                phase_end.clone(),
                phase_start.clone(),
                phase_mid.clone(),
            );
            writers.push(std::thread::spawn(move || {
                // A failing writer would leave the others at a barrier:
                // end the whole test instead of hanging.
                let body = std::panic::AssertUnwindSafe(|| {
                    writer(w, &f, &phase_start, &phase_end, &phase_mid)
                });
                if let Err(e) = std::panic::catch_unwind(body) {
                    // Straight to fd 2: the harness's capture dies with
                    // the process.
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let _ = writeln!(std::io::stderr(), "writer {w} failed: {why}");
                    std::process::exit(101);
                }
            }));
        }
        // The grower (this thread).
        let mut phases = Vec::new();
        for _ in 0..PHASES {
            phase_start.wait();
            for k in 0..WRITERS as u64 {
                for _ in 0..50 {
                    std::thread::yield_now();
                }
                f.write_at(k * STRIDE + REGION, &[0xFF], false).unwrap();
            }
            phase_end.wait();
            // Everyone idle: the gap bytes are the grower's (the writers
            // check their regions now).
            let all = read(&f, 0, (WRITERS as u64 * STRIDE) as usize);
            assert_eq!(f.size(), WRITERS as u64 * STRIDE);
            for k in 0..WRITERS {
                assert_eq!(all[k * STRIDE as usize + REGION as usize], 0xFF);
            }
            phases.push(all);
            phase_mid.wait();
            f.truncate(0).unwrap();
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(phases.len(), PHASES);
        let _ = fs;
    });
}

/// One writer of `writers_with_grants_and_a_growing_file_on_threads`.
fn writer(w: usize, f: &Inode, phase_start: &Barrier, phase_end: &Barrier, phase_mid: &Barrier) {
    let lo = w as u64 * STRIDE;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for phase in 0..PHASES {
        let mut mine = vec![0u8; REGION as usize];
        phase_start.wait();
        for round in 0..ROUNDS {
            let at = next() % REGION;
            let len = 1 + (next() % (REGION - at).min(700)) as usize;
            let data = pattern(len, (round * WRITERS + w) as u8);
            // The size at the grant lies between these two.
            let s0 = f.size();
            let (n, pages, ticket) = f.grant_write(lo + at, len).unwrap();
            let s1 = f.size();
            assert_eq!(n, len);
            let copied = len * (next() % 3) as usize / 2;
            copy_in(&pages, lo + at, &data[..copied]);
            let count = if next() % 4 == 0 { 0 } else { copied };
            f.commit_write(lo + at, count, ticket).unwrap();
            mine[at as usize..at as usize + count].copy_from_slice(&data[..count]);
            // Copied, not committed: past the end at the grant,
            // zeros (as before); inside the file, the copy
            // stays (the documented limit).
            for k in count..copied {
                let p = lo + at + k as u64;
                if p < s0 {
                    mine[(at as usize) + k] = data[k];
                } else if p < s1 {
                    let got = read(f, p, 1)[0];
                    assert!(got == data[k] || got == mine[(at as usize) + k]);
                    mine[(at as usize) + k] = got;
                }
            }
            let upto = f.size().clamp(lo, lo + REGION);
            let got = read(f, lo, (upto - lo) as usize);
            if let Some(p) = (0..got.len()).find(|&p| got[p] != mine[p]) {
                panic!(
                    "writer {w} phase {phase} round {round}: byte {} is {}, not {} \
                     (grant {}+{len}, copied {copied}, committed {count}, size {s0}..{s1})",
                    lo as usize + p,
                    got[p],
                    mine[p],
                    lo + at
                );
            }
        }
        phase_end.wait();
        // Everyone idle, every gap written: the whole region.
        assert!(
            read(f, lo, REGION as usize) == mine,
            "writer {w} phase {phase}"
        );
        phase_mid.wait();
    }
}
