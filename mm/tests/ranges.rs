//! Property tests of `Ranges` (the VM's range-locked, address-partitioned
//! mappings) against a simple model (a map from page to its tag and source
//! offset): random map/unmap/protect/fault/free-search sequences, alone
//! (partitioned, and one stripe as under `locks=global`) and from several
//! host threads at once on neighbouring windows that straddle partition
//! boundaries and share stripes; and operations on partitions of different
//! stripes proceed while another stripe is held (no common lock).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::Duration;

use mm::ranges::{Piece, Ranges, RawLock};
use proptest::prelude::*;

const PAGE: u64 = 4096;
/// Test partitions: 16 pages, so mappings cross boundaries often.
const SHIFT: u32 = 16;
const STRIPES: usize = 4;
/// Pages of one window (three partitions).
const WINDOW: u64 = 48;

/// A spin lock (the kernel's is the same shape, with interrupts off).
struct Spin(AtomicBool);

impl Spin {
    fn new() -> Self {
        Spin(AtomicBool::new(false))
    }
}

impl RawLock for Spin {
    fn lock(&self) {
        while self
            .0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }
    fn unlock(&self) {
        assert!(
            self.0.swap(false, Ordering::Release),
            "unlock of a free lock"
        );
    }
}

/// A mapping like a file VMA: `tag` stands for the protection, `off` for
/// the source page of `start`.
#[derive(Clone, Debug, PartialEq)]
struct M {
    start: u64,
    end: u64,
    tag: u32,
    off: u64,
}

impl Piece for M {
    fn start(&self) -> u64 {
        self.start
    }
    fn end(&self) -> u64 {
        self.end
    }
    fn set_end(&mut self, end: u64) {
        self.end = end;
    }
    fn split_off(&mut self, at: u64) -> Self {
        assert!(self.start < at && at < self.end);
        let high = M {
            start: at,
            end: self.end,
            tag: self.tag,
            off: self.off + (at - self.start) / PAGE,
        };
        self.end = at;
        high
    }
    fn merges_with(&self, next: &Self) -> bool {
        self.continues(next)
    }
    fn continues(&self, next: &Self) -> bool {
        self.end == next.start
            && self.tag == next.tag
            && self.off + (self.end - self.start) / PAGE == next.off
    }
}

type R = Ranges<Spin, M>;

/// Page -> (tag, source page).
type Model = BTreeMap<u64, (u32, u64)>;

#[derive(Debug, Clone)]
enum Op {
    Map {
        page: u64,
        pages: u64,
        tag: u32,
        off: u64,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
    Protect {
        page: u64,
        pages: u64,
        tag: u32,
    },
    Fault {
        page: u64,
    },
    FindFree {
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..WINDOW;
    let pages = 1..20u64;
    prop_oneof![
        (page.clone(), pages.clone(), 0..3u32, 0..4u64).prop_map(|(page, pages, tag, off)| {
            Op::Map {
                page,
                pages,
                tag,
                off: off * 100,
            }
        }),
        (page.clone(), pages.clone()).prop_map(|(page, pages)| Op::Unmap { page, pages }),
        (page.clone(), pages.clone(), 0..3u32).prop_map(|(page, pages, tag)| Op::Protect {
            page,
            pages,
            tag
        }),
        page.prop_map(|page| Op::Fault { page }),
        (1..12u64).prop_map(|pages| Op::FindFree { pages }),
    ]
}

/// Applies `op` inside the window starting at `base` to `r` and `model`,
/// checking every answer against the model; returns an error message.
fn apply(r: &R, model: &mut Model, base: u64, op: &Op) -> Result<(), String> {
    let clip = |page: u64, pages: u64| {
        let s = base + page * PAGE;
        (s, (s + pages * PAGE).min(base + WINDOW * PAGE))
    };
    match *op {
        Op::Map {
            page,
            pages,
            tag,
            off,
        } => {
            let (s, e) = clip(page, pages);
            let mut g = r.lock_range(s, e);
            g.remove_range(s, e);
            g.insert(M {
                start: s,
                end: e,
                tag,
                off,
            });
            for (i, va) in (s..e).step_by(PAGE as usize).enumerate() {
                model.insert(va, (tag, off + i as u64));
            }
        }
        Op::Unmap { page, pages } => {
            let (s, e) = clip(page, pages);
            let removed = r.lock_range(s, e).remove_range(s, e);
            let mut expect = 0;
            for va in (s..e).step_by(PAGE as usize) {
                expect += u64::from(model.remove(&va).is_some());
            }
            let got: u64 = removed.iter().map(|m| (m.end - m.start) / PAGE).sum();
            if got != expect {
                return Err(format!("unmap removed {got} pages, model {expect}"));
            }
        }
        Op::Protect { page, pages, tag } => {
            let (s, e) = clip(page, pages);
            let mut g = r.lock_range(s, e);
            let mapped = (s..e)
                .step_by(PAGE as usize)
                .all(|va| model.contains_key(&va));
            if g.fully_mapped(s, e) != mapped {
                return Err(format!("fully_mapped({s:#x}, {e:#x}) != model {mapped}"));
            }
            if mapped {
                g.split_at(s);
                g.split_at(e);
                let starts: Vec<u64> = g.overlapping(s, e).iter().map(|m| m.start).collect();
                for st in &starts {
                    g.get_mut(*st).expect("listed").tag = tag;
                }
                for st in starts.iter().rev() {
                    if g.get_mut(*st).is_some() {
                        g.merge_around(*st);
                    }
                }
                for va in (s..e).step_by(PAGE as usize) {
                    model.get_mut(&va).expect("mapped").0 = tag;
                }
            }
        }
        Op::Fault { page } => {
            let va = base + page * PAGE;
            let g = r.lock_range(va, va + PAGE);
            let got = g.find(va).map(|m| (m.tag, m.off + (va - m.start) / PAGE));
            if got != model.get(&va).copied() {
                return Err(format!(
                    "find({va:#x}) = {got:?}, model {:?}",
                    model.get(&va)
                ));
            }
        }
        Op::FindFree { pages } => {
            let (lo, hi) = (base, base + WINDOW * PAGE);
            let got = r
                .lock_range(lo, hi)
                .find_free_top_down(pages * PAGE, lo, hi);
            let want = (0..=WINDOW.saturating_sub(pages))
                .rev()
                .map(|p| base + p * PAGE)
                .find(|&s| {
                    (s..s + pages * PAGE)
                        .step_by(PAGE as usize)
                        .all(|va| !model.contains_key(&va))
                });
            if got != want {
                return Err(format!("find_free({pages}) = {got:?}, model {want:?}"));
            }
        }
    }
    check_window(r, model, base)
}

/// The pieces of the window agree with the model page by page, lie in one
/// partition each, do not overlap, and the joined view covers the same.
fn check_window(r: &R, model: &Model, base: u64) -> Result<(), String> {
    let (lo, hi) = (base, base + WINDOW * PAGE);
    let g = r.lock_range(lo, hi);
    let mut seen = Model::new();
    let mut last_end = 0;
    for m in g.overlapping(lo, hi) {
        if m.start < last_end || m.start >= m.end {
            return Err(format!("pieces overlap or are empty at {:#x}", m.start));
        }
        last_end = m.end;
        if m.parts(r.part_size()) > 1 {
            return Err(format!("piece {m:?} crosses a partition boundary"));
        }
        for va in (m.start.max(lo)..m.end.min(hi)).step_by(PAGE as usize) {
            seen.insert(va, (m.tag, m.off + (va - m.start) / PAGE));
        }
    }
    let expect: Model = model.range(lo..hi).map(|(k, v)| (*k, *v)).collect();
    if seen != expect {
        return Err(format!("pieces {seen:?} != model {expect:?}"));
    }
    let mut joined = 0;
    for m in g.merged(lo, hi) {
        joined += (m.end.min(hi) - m.start.max(lo)) / PAGE;
    }
    if joined != expect.len() as u64 {
        return Err(format!(
            "merged view covers {joined} pages, model {}",
            expect.len()
        ));
    }
    Ok(())
}

impl M {
    /// Partitions of `part` bytes this piece touches.
    fn parts(&self, part: u64) -> u64 {
        (self.end - 1) / part - self.start / part + 1
    }
}

/// Window `i`: back to back, starting 5 pages into a partition, so windows
/// straddle boundaries and neighbours share partitions and stripes.
fn window(i: u64) -> u64 {
    0x10_0000 + 5 * PAGE + i * WINDOW * PAGE
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn partitioned_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..150)) {
        let r = R::new(STRIPES, SHIFT, Spin::new);
        let mut model = Model::new();
        for op in &ops {
            if let Err(e) = apply(&r, &mut model, window(0), op) {
                prop_assert!(false, "{:?}: {}", op, e);
            }
        }
    }

    #[test]
    fn one_stripe_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..150)) {
        // `locks=global`: one stripe, one partition.
        let r = R::new(1, 64, Spin::new);
        let mut model = Model::new();
        for op in &ops {
            if let Err(e) = apply(&r, &mut model, window(0), op) {
                prop_assert!(false, "{:?}: {}", op, e);
            }
        }
    }
}

#[test]
fn threads_on_neighbouring_windows_match_their_models() {
    const THREADS: u64 = 4;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(16));
    let strategy =
        proptest::collection::vec(proptest::collection::vec(op(), 200), THREADS as usize);
    runner
        .run(&strategy, |plans| {
            let r = R::new(STRIPES, SHIFT, Spin::new);
            let start = Barrier::new(THREADS as usize);
            let results: Vec<Result<(), String>> = std::thread::scope(|s| {
                let handles: Vec<_> = plans
                    .iter()
                    .enumerate()
                    .map(|(t, plan)| {
                        let (r, start) = (&r, &start);
                        s.spawn(move || {
                            let mut model = Model::new();
                            start.wait();
                            for op in plan {
                                apply(r, &mut model, window(t as u64), op)
                                    .map_err(|e| format!("thread {t}, {op:?}: {e}"))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .collect()
            });
            for res in results {
                prop_assert!(res.is_ok(), "{}", res.unwrap_err());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn different_stripes_share_no_lock() {
    let r = R::new(STRIPES, SHIFT, Spin::new);
    let part = 1u64 << SHIFT;
    // Hold partition 0 (stripe 0) while another thread maps, finds and
    // unmaps in partition 1 (stripe 1): it must finish meanwhile.
    let mut held = r.lock_range(0, part);
    held.insert(M {
        start: 0,
        end: 4 * PAGE,
        tag: 1,
        off: 0,
    });
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = r.lock_range(part, part + 4 * PAGE);
            g.insert(M {
                start: part,
                end: part + 4 * PAGE,
                tag: 2,
                off: 0,
            });
            let found = g.find(part + PAGE).map(|m| m.tag);
            g.remove_range(part, part + 4 * PAGE);
            tx.send(found).expect("receiver alive");
        });
        // A bound against a hang, not a timing assertion.
        let got = rx.recv_timeout(Duration::from_secs(60));
        drop(held);
        assert_eq!(
            got,
            Ok(Some(2)),
            "stripe 1 was blocked by a lock of stripe 0"
        );
    });
    // A range over two partitions takes both stripes: while it is held,
    // partition 0's stripe is busy.
    let both = r.lock_range(part - PAGE, part + PAGE);
    assert!(both.covers(0, 2 * part));
    drop(both);
    assert_eq!(r.lock_all().merged(0, u64::MAX).len(), 1);
}

/// A lock that records its stripe's number on lock (+) and unlock (-).
struct Logged {
    id: usize,
    log: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
}

impl RawLock for Logged {
    fn lock(&self) {
        self.log.lock().unwrap().push(self.id as i64 + 1);
    }
    fn unlock(&self) {
        self.log.lock().unwrap().push(-(self.id as i64 + 1));
    }
}

#[test]
fn guards_take_exactly_their_stripes_up_and_release_them_down() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut next = 0;
    let r: Ranges<Logged, M> = Ranges::new(64, SHIFT, || {
        next += 1;
        Logged {
            id: next - 1,
            log: log.clone(),
        }
    });
    let part = 1u64 << SHIFT;
    let take = |f: &dyn Fn()| {
        log.lock().unwrap().clear();
        f();
        std::mem::take(&mut *log.lock().unwrap())
    };
    // One stripe (the fault path): one lock, one unlock.
    assert_eq!(
        take(&|| drop(r.lock_range(5 * part, 5 * part + PAGE))),
        [6, -6]
    );
    // Partitions 63..=65: stripes 63, 0, 1, taken up and released down.
    assert_eq!(
        take(&|| drop(r.lock_range(63 * part, 66 * part))),
        [1, 2, 64, -64, -2, -1]
    );
    // Two ranges: the union of their stripes.
    assert_eq!(
        take(&|| drop(r.lock_two((3 * part, 3 * part + 1), (40 * part, 40 * part + 1)))),
        [4, 41, -41, -4]
    );
    let all = take(&|| drop(r.lock_all()));
    let up: Vec<i64> = (1..=64).collect();
    let down: Vec<i64> = (1..=64).rev().map(|i| -i).collect();
    assert_eq!(all, [up, down].concat());
}
