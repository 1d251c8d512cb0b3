//! Property tests: random alloc/free sequences against a simple model (the
//! set of allocated ranges).  After every step the allocators must agree
//! with the model: no two live ranges overlap, every range is aligned as
//! asked, free-frame counts match, and at the end everything comes back.
//! The heap sequences also switch the thread between CPU ids, so objects
//! and frames are freed on CPUs other than their home (remote frees that
//! wait in outboxes and inboxes) and must still all come back.

use std::alloc::Layout;
use std::collections::BTreeMap;

use mm::host::Arena;
use mm::{BuddyAllocator, FrameAllocator, FrameMemory, Heap, LockMode, FRAME_SIZE, MAX_ORDER};
use proptest::prelude::*;

/// Live ranges by start; checks new ranges against their neighbours.
#[derive(Default)]
struct Model {
    live: BTreeMap<usize, usize>,
}

impl Model {
    fn insert(&mut self, start: usize, len: usize) {
        if let Some((&s, &l)) = self.live.range(..=start).next_back() {
            assert!(
                s + l <= start,
                "[{start:#x}, +{len:#x}) overlaps [{s:#x}, +{l:#x})"
            );
        }
        if let Some((&s, _)) = self.live.range(start..).next() {
            assert!(
                start + len <= s,
                "[{start:#x}, +{len:#x}) overlaps block at {s:#x}"
            );
        }
        self.live.insert(start, len);
    }
    fn remove(&mut self, start: usize) {
        assert!(self.live.remove(&start).is_some());
    }
}

#[derive(Debug, Clone)]
enum BuddyOp {
    Alloc(usize),
    Free(usize),
}

fn buddy_ops() -> impl Strategy<Value = Vec<BuddyOp>> {
    prop::collection::vec(
        prop_oneof![
            (0..=MAX_ORDER + 1).prop_map(BuddyOp::Alloc),
            any::<usize>().prop_map(BuddyOp::Free),
        ],
        1..300,
    )
}

#[derive(Debug, Clone)]
enum HeapOp {
    Alloc {
        size: usize,
        align_log2: u32,
    },
    Free(usize),
    Frame,
    FreeFrame(usize),
    /// Continue on another CPU id (the thread is rebound).
    Cpu(usize),
}

fn heap_ops() -> impl Strategy<Value = Vec<HeapOp>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0usize..20_000, 0u32..13).prop_map(|(size, align_log2)| HeapOp::Alloc { size, align_log2 }),
            1 => (0usize..4096, 0u32..4).prop_map(|(size, align_log2)| HeapOp::Alloc { size, align_log2 }),
            4 => any::<usize>().prop_map(HeapOp::Free),
            1 => Just(HeapOp::Frame),
            1 => any::<usize>().prop_map(HeapOp::FreeFrame),
            1 => (0usize..4).prop_map(HeapOp::Cpu),
        ],
        1..400,
    )
}

fn run_heap(ops: Vec<HeapOp>, mode: LockMode) {
    const FRAMES: usize = 4096;
    percpu::host::bind_current_thread(50).unwrap();
    let arena = Arena::leak(FRAMES);
    let frames: &'static FrameAllocator<&Arena> =
        Box::leak(Box::new(FrameAllocator::with_params(arena, 4, 8)));
    frames.set_mode(mode).unwrap();
    frames.add_region(arena.first_pfn(), FRAMES).unwrap();
    let heap = Heap::new(frames);
    let initial = frames.free_frames();
    let mut model = Model::default();
    let mut objs: Vec<(*mut u8, Layout)> = Vec::new();
    let mut pfns: Vec<usize> = Vec::new();
    for op in ops {
        match op {
            HeapOp::Alloc { size, align_log2 } => {
                let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                let p = heap.alloc(layout);
                if !p.is_null() {
                    assert_eq!(p as usize % layout.align(), 0, "misaligned for {layout:?}");
                    model.insert(p as usize, size.max(1));
                    objs.push((p, layout));
                }
            }
            HeapOp::Free(i) if !objs.is_empty() => {
                let (p, layout) = objs.swap_remove(i % objs.len());
                model.remove(p as usize);
                // SAFETY: p came from heap.alloc(layout) and is freed once.
                unsafe { heap.dealloc(p, layout) };
            }
            HeapOp::Frame => {
                if let Some(pfn) = frames.alloc() {
                    model.insert(frames.memory().frame_ptr(pfn) as usize, FRAME_SIZE);
                    pfns.push(pfn);
                }
            }
            HeapOp::FreeFrame(i) if !pfns.is_empty() => {
                let pfn = pfns.swap_remove(i % pfns.len());
                model.remove(frames.memory().frame_ptr(pfn) as usize);
                frames.free(pfn).unwrap();
            }
            HeapOp::Cpu(cpu) => percpu::host::bind_current_thread(50 + cpu).unwrap(),
            _ => {}
        }
    }
    for (p, layout) in objs {
        // SAFETY: as above.
        unsafe { heap.dealloc(p, layout) };
    }
    for pfn in pfns {
        frames.free(pfn).unwrap();
    }
    assert_eq!(heap.stats().bad_frees, 0);
    assert_eq!(frames.stats().rejected_frees, 0);
    heap.flush();
    assert_eq!(heap.frames_held(), 0);
    assert_eq!(frames.free_frames(), initial);
}

#[derive(Debug, Clone)]
enum FrameOp {
    Alloc(usize),
    Free(usize),
    Cpu(usize),
    Drain,
}

fn frame_ops() -> impl Strategy<Value = Vec<FrameOp>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0..=6usize).prop_map(FrameOp::Alloc),
            4 => any::<usize>().prop_map(FrameOp::Free),
            2 => (0usize..3).prop_map(FrameOp::Cpu),
            1 => Just(FrameOp::Drain),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The per-CPU frame allocator with remote frees against the model:
    /// after every step the free count is exact (one thread: nothing runs
    /// concurrently) and no two live blocks overlap; a block allocated on
    /// one CPU id and freed on another waits in an outbox or inbox and still
    /// counts as free; at the end memory coalesces into maximal blocks.
    #[test]
    fn frames_with_remote_frees_match_model(ops in frame_ops()) {
        const FRAMES: usize = 2048;
        percpu::host::bind_current_thread(56).unwrap();
        let arena = Arena::leak(FRAMES);
        let frames: &'static FrameAllocator<&Arena> =
            Box::leak(Box::new(FrameAllocator::with_params(arena, 4, 8)));
        frames.add_region(arena.first_pfn(), FRAMES).unwrap();
        let total = frames.total_frames();
        let mut model = Model::default();
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut used = 0;
        let mut refused = 0;
        for op in ops {
            match op {
                FrameOp::Alloc(order) => {
                    if let Some(pfn) = frames.alloc_order(order) {
                        prop_assert_eq!(pfn % (1 << order), 0, "misaligned");
                        model.insert(pfn, 1 << order);
                        live.push((pfn, order));
                        used += 1 << order;
                    }
                }
                FrameOp::Free(i) if !live.is_empty() => {
                    let (pfn, order) = live.swap_remove(i % live.len());
                    model.remove(pfn);
                    if order > 0 {
                        prop_assert!(frames.free_order(pfn, order - 1).is_err(), "wrong order accepted");
                        refused += 1;
                    }
                    frames.free_order(pfn, order).unwrap();
                    used -= 1 << order;
                }
                FrameOp::Cpu(cpu) => percpu::host::bind_current_thread(56 + cpu).unwrap(),
                FrameOp::Drain => frames.drain_all(),
                _ => {}
            }
            prop_assert_eq!(frames.free_frames(), total - used);
        }
        for (pfn, order) in live {
            frames.free_order(pfn, order).unwrap();
        }
        prop_assert_eq!(frames.free_frames(), total);
        frames.drain_all();
        let mut blocks = 0;
        while let Some(pfn) = frames.alloc_order(MAX_ORDER) {
            prop_assert_eq!(pfn % (1 << MAX_ORDER), 0);
            blocks += 1;
        }
        // The arena is 2048 frames from an aligned start, less the metadata
        // frame: one maximal block survives.
        prop_assert_eq!(blocks, 1);
        prop_assert_eq!(frames.stats().rejected_frees, refused);
    }

    #[test]
    fn buddy_matches_model(ops in buddy_ops()) {
        const FRAMES: usize = 3000;
        let arena = Arena::leak(FRAMES);
        let mut buddy = BuddyAllocator::new(arena);
        // Two regions with a gap, at an odd offset, to exercise edges.
        let first = arena.first_pfn();
        buddy.add_region(first + 3, 1200).unwrap();
        buddy.add_region(first + 1300, FRAMES - 1300).unwrap();
        let total = buddy.total_frames();
        let mut model = Model::default();
        let mut live: Vec<(usize, usize)> = Vec::new();
        let mut used = 0;
        for op in ops {
            match op {
                BuddyOp::Alloc(order) => match buddy.alloc(order) {
                    Some(pfn) => {
                        prop_assert!(order <= MAX_ORDER);
                        prop_assert_eq!(pfn % (1 << order), 0, "misaligned");
                        model.insert(pfn, 1 << order);
                        live.push((pfn, order));
                        used += 1 << order;
                    }
                    None => prop_assert!(
                        order > MAX_ORDER || (order..=MAX_ORDER).all(|k| buddy.free_blocks(k) == 0),
                        "alloc({}) failed with a free block of that order or larger", order
                    ),
                },
                BuddyOp::Free(i) if !live.is_empty() => {
                    let (pfn, order) = live.swap_remove(i % live.len());
                    model.remove(pfn);
                    if order > 0 {
                        prop_assert!(buddy.free(pfn, order - 1).is_err(), "wrong order accepted");
                    }
                    buddy.free(pfn, order).unwrap();
                    prop_assert!(buddy.free(pfn, order).is_err(), "double free accepted");
                    used -= 1 << order;
                }
                _ => {}
            }
            prop_assert_eq!(buddy.free_frames(), total - used);
        }
        for (pfn, order) in live {
            buddy.free(pfn, order).unwrap();
        }
        prop_assert_eq!(buddy.free_frames(), total);
    }

    #[test]
    fn heap_percpu_matches_model(ops in heap_ops()) {
        run_heap(ops, LockMode::PerCpu);
    }

    #[test]
    fn heap_global_matches_model(ops in heap_ops()) {
        run_heap(ops, LockMode::Global);
    }
}
