//! Property tests of `PageRadix` (the VM's per-page CPU sets) against a
//! simple model (a map from page to word): random `fetch_or` / `get` /
//! `union` / `take_range` sequences, alone and from several host threads
//! at once (on their own ranges, and all on the same pages), and every node
//! given back when the tree is dropped.

use std::collections::BTreeMap;
use std::sync::Barrier;

use mm::host::HeapNodes;
use mm::radix::PageRadix;
use proptest::prelude::*;

const PAGE: u64 = 4096;

/// Bases of the regions the tests use: they straddle leaf (2 MiB), level-2
/// (1 GiB) and level-3 (512 GiB) node boundaries and reach the top of the
/// user half.
const BASES: [u64; 4] = [
    0x1_0000,
    0x3fff_f000 - 8 * PAGE,
    0x7f_ffff_0000,
    0x7fff_ffff_f000 - 64 * PAGE,
];

#[derive(Debug, Clone)]
enum Op {
    Set { page: u64, bits: u64 },
    Get { page: u64 },
    Union { first: u64, pages: u64 },
    Take { first: u64, pages: u64 },
}

fn va(region: usize, page: u64) -> u64 {
    BASES[region] + page * PAGE
}

fn op() -> impl Strategy<Value = (usize, Op)> {
    let page = 0..64u64;
    (
        0..BASES.len(),
        prop_oneof![
            (page.clone(), any::<u64>()).prop_map(|(page, bits)| Op::Set { page, bits }),
            page.clone().prop_map(|page| Op::Get { page }),
            (page.clone(), 1..64u64).prop_map(|(first, pages)| Op::Union { first, pages }),
            (page, 1..64u64).prop_map(|(first, pages)| Op::Take { first, pages }),
        ],
    )
}

/// The model's OR over `[start, end)`, clearing it when `take`.
fn model_range(model: &mut BTreeMap<u64, u64>, start: u64, end: u64, take: bool) -> u64 {
    let mut union = 0;
    for (_, w) in model.range_mut(start..end) {
        union |= *w;
        if take {
            *w = 0;
        }
    }
    union
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn agrees_with_a_map(ops in proptest::collection::vec(op(), 1..200)) {
        let nodes = HeapNodes::default();
        {
            let tree = PageRadix::new(&nodes).unwrap();
            let mut model = BTreeMap::<u64, u64>::new();
            for (region, op) in ops {
                match op {
                    Op::Set { page, bits } => {
                        let old = tree.fetch_or(va(region, page), bits).unwrap();
                        let m = model.entry(va(region, page)).or_default();
                        prop_assert_eq!(old, *m);
                        *m |= bits;
                    }
                    Op::Get { page } => {
                        let want = model.get(&va(region, page)).copied().unwrap_or(0);
                        prop_assert_eq!(tree.get(va(region, page)), want);
                    }
                    Op::Union { first, pages } | Op::Take { first, pages } => {
                        let take = matches!(op, Op::Take { .. });
                        let (s, e) = (va(region, first), va(region, first + pages));
                        let got = if take { tree.take_range(s, e) } else { tree.union(s, e) };
                        prop_assert_eq!(got, model_range(&mut model, s, e, take));
                    }
                }
            }
            for (&page, &w) in &model {
                prop_assert_eq!(tree.get(page), w);
            }
        }
        prop_assert_eq!(nodes.live(), 0, "nodes left after drop");
    }
}

/// Threads on their own ranges (each in a different leaf node, all under
/// shared upper nodes they race to create) each match their own model.
#[test]
fn threads_on_own_ranges_match_their_models() {
    const THREADS: usize = 8;
    let nodes = HeapNodes::default();
    {
        let tree = PageRadix::new(&nodes).unwrap();
        let start = Barrier::new(THREADS);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (tree, start) = (&tree, &start);
                s.spawn(move || {
                    // 2 MiB apart: a leaf node each, created concurrently.
                    let base = 0x4000_0000 + t as u64 * 0x20_0000;
                    let mut model = BTreeMap::<u64, u64>::new();
                    let mut rng = (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    let mut next = move || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    start.wait();
                    for _ in 0..20_000 {
                        let page = base + next() % 32 * PAGE;
                        match next() % 3 {
                            0 | 1 => {
                                let bits = 1u64 << (next() % 64);
                                let old = tree.fetch_or(page, bits).unwrap();
                                let m = model.entry(page).or_default();
                                assert_eq!(old, *m, "thread {t}: word of {page:#x}");
                                *m |= bits;
                            }
                            _ => {
                                let end = page + (1 + next() % 8) * PAGE;
                                let got = tree.take_range(page, end);
                                assert_eq!(got, model_range(&mut model, page, end, true));
                            }
                        }
                    }
                    for (&page, &w) in &model {
                        assert_eq!(tree.get(page), w, "thread {t}: final word of {page:#x}");
                    }
                });
            }
        });
        // 1 root + 1 level-3 + 1 level-2 node + one leaf per thread.
        assert_eq!(tree.nodes(), 3 + THREADS, "a node per range, none twice");
    }
    assert_eq!(nodes.live(), 0, "nodes left after drop");
}

/// Threads setting their own bit on the same pages while others take:
/// every bit set is either taken by some `take_range` or still there (the
/// shootdown invariant: a CPU that installed a translation is found).
#[test]
fn no_bit_is_lost_under_contention() {
    const THREADS: usize = 8;
    const PAGES: u64 = 16;
    let base = 0x7fff_0000_0000;
    let nodes = HeapNodes::default();
    {
        let tree = PageRadix::new(&nodes).unwrap();
        let start = Barrier::new(THREADS);
        let results: Vec<(Vec<u64>, Vec<u64>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (tree, start) = (&tree, &start);
                    s.spawn(move || {
                        // Per page: did this thread set its bit, and what
                        // did its takes of that page return.
                        let mut set = vec![0u64; PAGES as usize];
                        let mut taken = vec![0u64; PAGES as usize];
                        start.wait();
                        for i in 0..20_000u64 {
                            let p = (i * 7 + t as u64) % PAGES;
                            let page = base + p * PAGE;
                            if (i + t as u64).is_multiple_of(3) {
                                taken[p as usize] |= tree.take_range(page, page + PAGE);
                            } else {
                                tree.fetch_or(page, 1 << t).unwrap();
                                set[p as usize] |= 1 << t;
                            }
                        }
                        (set, taken)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for p in 0..PAGES as usize {
            let set = results.iter().fold(0, |m, r| m | r.0[p]);
            let taken = results.iter().fold(0, |m, r| m | r.1[p]);
            let left = tree.get(base + p as u64 * PAGE);
            assert_eq!(taken | left, set, "page {p}: a CPU bit vanished");
        }
    }
    assert_eq!(nodes.live(), 0, "nodes left after drop");
}
