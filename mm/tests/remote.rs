//! Remote frees with real threads standing in for CPUs: blocks allocated
//! on one CPU and freed on another go back to their home CPU in batches,
//! nothing is handed out twice, nothing is lost, and frames that a CPU
//! parked or that were sent to a CPU that never allocates again are still
//! reusable by every other CPU.

use std::alloc::Layout;
use std::collections::HashSet;
use std::sync::mpsc;

use mm::host::Arena;
use mm::{FrameAllocator, FrameMemory, Heap, LockMode, FRAME_SIZE};
use percpu::host;

fn frames(
    n: usize,
    batch: usize,
    high: usize,
    mode: LockMode,
) -> &'static FrameAllocator<&'static Arena> {
    let arena = Arena::leak(n);
    let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, batch, high)));
    fa.set_mode(mode).unwrap();
    fa.add_region(arena.first_pfn(), n).unwrap();
    fa
}

/// Allocates every frame one at a time on the calling CPU; panics on a
/// frame handed out twice.
fn take_everything(fa: &FrameAllocator<&Arena>) -> Vec<usize> {
    let all: Vec<_> = std::iter::from_fn(|| fa.alloc()).collect();
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a frame was handed out twice");
    all
}

#[test]
fn a_frame_freed_elsewhere_goes_home_in_batches_and_is_reused_there() {
    let fa = frames(1024, 8, 16, LockMode::PerCpu);
    let total = fa.total_frames();
    let (to_b, from_a) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let a = std::thread::spawn(move || {
        host::bind_current_thread(20).unwrap();
        let mine: Vec<_> = (0..16).map(|_| fa.alloc().unwrap()).collect();
        to_b.send(mine.clone()).unwrap();
        done_rx.recv().unwrap();
        assert_eq!(fa.cpu_in_flight(20).1, 16, "two batches of 8 in the inbox");
        // Empty the list this CPU refilled, then the next allocation takes
        // the inbox: a frame this CPU allocated before.
        while fa.cpu_list_len(20) > 0 {
            fa.alloc().unwrap();
        }
        let again = fa.alloc().unwrap();
        assert!(mine.contains(&again), "a remote-freed frame came home");
        assert_eq!(fa.cpu_in_flight(20).1, 0, "the inbox was taken whole");
    });
    let b = std::thread::spawn(move || {
        host::bind_current_thread(21).unwrap();
        let stats0 = fa.stats();
        for pfn in from_a.recv().unwrap() {
            fa.free(pfn).unwrap();
        }
        let stats = fa.stats();
        assert_eq!(stats.remote_frees - stats0.remote_frees, 16);
        assert_eq!(stats.remote_batches - stats0.remote_batches, 2);
        assert_eq!(fa.cpu_list_len(21), 0, "nothing kept on the freeing CPU");
        assert_eq!(fa.cpu_in_flight(21).0, 0, "both batches sent");
        done_tx.send(()).unwrap();
    });
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(fa.stats().rejected_frees, 0);
    // Frames still handed out: those A took after the remote frees.
    fa.drain_all();
    assert!(fa.free_frames() <= total);
}

#[test]
fn frames_stranded_in_outboxes_and_inboxes_are_reusable_under_pressure() {
    let fa = frames(256, 8, 16, LockMode::PerCpu);
    let total = fa.total_frames();
    // CPU 30 takes everything and hands it to CPU 31, which frees it all
    // (full batches land in 30's inbox, the rest stays in 31's outbox);
    // neither ever allocates again.
    let all = std::thread::spawn(move || {
        host::bind_current_thread(30).unwrap();
        take_everything(fa)
    })
    .join()
    .unwrap();
    assert_eq!(all.len(), total);
    std::thread::spawn(move || {
        host::bind_current_thread(31).unwrap();
        for pfn in all.into_iter().take(total - 3) {
            fa.free(pfn).unwrap();
        }
    })
    .join()
    .unwrap();
    let (out31, _) = fa.cpu_in_flight(31);
    let (_, in30) = fa.cpu_in_flight(30);
    assert!(out31 > 0 && in30 > 0, "outbox {out31}, inbox {in30}");
    assert_eq!(
        fa.free_frames(),
        total - 3,
        "in-flight frames count as free"
    );
    // A third CPU runs dry, drains everyone, and gets every free frame.
    std::thread::spawn(move || {
        host::bind_current_thread(32).unwrap();
        let got = take_everything(fa);
        assert_eq!(got.len(), total - 3);
        assert_eq!(fa.cpu_in_flight(31).0, 0);
        assert_eq!(fa.cpu_in_flight(30).1, 0);
        for pfn in got {
            fa.free(pfn).unwrap();
        }
    })
    .join()
    .unwrap();
    assert_eq!(fa.stats().rejected_frees, 0);
}

#[test]
fn bad_frees_are_refused_before_they_reach_an_outbox() {
    let fa = frames(256, 8, 16, LockMode::PerCpu);
    let (p, q) = std::thread::spawn(move || {
        host::bind_current_thread(40).unwrap();
        (fa.alloc_order(2).unwrap(), fa.alloc().unwrap())
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        host::bind_current_thread(41).unwrap();
        assert_eq!(
            fa.free_order(p, 1),
            Err(mm::FreeError::NotAllocated),
            "wrong order"
        );
        assert_eq!(
            fa.free_order(p + 1, 0),
            Err(mm::FreeError::NotAllocated),
            "tail"
        );
        assert_eq!(fa.free_order(p + 2, 2), Err(mm::FreeError::Misaligned));
        assert_eq!(fa.cpu_in_flight(41).0, 0);
        fa.free_order(p, 2).unwrap();
        fa.free(q).unwrap();
        assert_eq!(fa.cpu_in_flight(41).0, 5);
        fa.drain_all();
        // Back in the buddy now: a second free is refused at once.
        assert_eq!(fa.free(q), Err(mm::FreeError::NotAllocated));
    })
    .join()
    .unwrap();
    assert_eq!(fa.stats().rejected_frees, 4);
    assert_eq!(fa.free_frames(), fa.total_frames());
}

/// Producer/consumer storm: each of `PAIRS` producer CPUs allocates frames
/// of orders 0..=5 and heap objects of many sizes, writes a pattern into
/// them, and passes them to its consumer CPU, which checks the pattern and
/// frees them there.  Both sides also allocate and free locally.  At the
/// end every frame is back and a single CPU can allocate all of memory.
fn storm(mode: LockMode) {
    const PAIRS: usize = 3;
    const ROUNDS: usize = 3000;
    const FRAMES: usize = 8192;
    let fa = frames(FRAMES, 16, 64, mode);
    let heap: &'static Heap<'static, &Arena> = Box::leak(Box::new(Heap::new(fa)));
    let total = fa.total_frames();
    enum Item {
        Block(usize, usize, u64),
        Obj(usize, Layout, u64),
    }
    struct Batch(Vec<Item>);
    // SAFETY: blocks and objects are plain memory handed from one thread
    // to another, owned by the receiver.
    unsafe impl Send for Batch {}
    let mut threads = Vec::new();
    for pair in 0..PAIRS {
        let (tx, rx) = mpsc::sync_channel::<Batch>(4);
        threads.push(std::thread::spawn(move || {
            host::bind_current_thread(2 * pair).unwrap();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ pair as u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            for round in 0..ROUNDS {
                let mut batch = Vec::new();
                for _ in 0..4 {
                    let tag = next();
                    if tag % 3 == 0 {
                        let order = (tag >> 8) as usize % 6;
                        if let Some(pfn) = fa.alloc_order(order) {
                            let ptr = fa.memory().frame_ptr(pfn).cast::<u64>();
                            // SAFETY: the block is ours; it is at least 8
                            // bytes (its last word too).
                            unsafe {
                                ptr.write(tag);
                                ptr.add((FRAME_SIZE << order) / 8 - 1).write(tag);
                            }
                            batch.push(Item::Block(pfn, order, tag));
                        }
                    } else {
                        let size = 1 + (tag >> 8) as usize % 9000;
                        let layout = Layout::from_size_align(size.max(8), 8).unwrap();
                        let p = heap.alloc(layout);
                        if !p.is_null() {
                            // SAFETY: the object is ours, at least 8 bytes.
                            unsafe { p.cast::<u64>().write(tag) };
                            batch.push(Item::Obj(p as usize, layout, tag));
                        }
                    }
                }
                // A local alloc/free too, so home lists are busy.
                if round % 2 == 0 {
                    if let Some(pfn) = fa.alloc() {
                        fa.free(pfn).unwrap();
                    }
                }
                tx.send(Batch(batch)).unwrap();
            }
        }));
        threads.push(std::thread::spawn(move || {
            host::bind_current_thread(2 * pair + 1).unwrap();
            while let Ok(Batch(items)) = rx.recv() {
                for item in items {
                    match item {
                        Item::Block(pfn, order, tag) => {
                            let ptr = fa.memory().frame_ptr(pfn).cast::<u64>();
                            // SAFETY: handed to us by the producer.
                            let (first, last) = unsafe {
                                (ptr.read(), ptr.add((FRAME_SIZE << order) / 8 - 1).read())
                            };
                            assert_eq!((first, last), (tag, tag), "block {pfn} overwritten");
                            fa.free_order(pfn, order).unwrap();
                        }
                        Item::Obj(p, layout, tag) => {
                            // SAFETY: handed to us by the producer.
                            let got = unsafe { (p as *const u64).read() };
                            assert_eq!(got, tag, "object {p:#x} overwritten");
                            // SAFETY: from heap.alloc(layout), freed once.
                            unsafe { heap.dealloc(p as *mut u8, layout) };
                        }
                    }
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let stats = fa.stats();
    assert_eq!(stats.rejected_frees, 0);
    assert_eq!(heap.stats().bad_frees, 0);
    if mode == LockMode::PerCpu {
        assert!(
            stats.remote_frees > 0 && stats.remote_batches > 0,
            "{stats:?}"
        );
    } else {
        assert_eq!(stats.remote_frees, 0);
    }
    heap.flush();
    assert_eq!(heap.frames_held(), 0);
    fa.drain_all();
    assert_eq!(fa.free_frames(), total, "frames lost");
    std::thread::spawn(move || {
        host::bind_current_thread(63).unwrap();
        let all = take_everything(fa);
        assert_eq!(all.len(), total);
        for pfn in all {
            fa.free(pfn).unwrap();
        }
        let big = fa
            .alloc_order(mm::MAX_ORDER)
            .expect("memory coalesces again");
        fa.free_order(big, mm::MAX_ORDER).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn cross_cpu_free_storm_percpu() {
    storm(LockMode::PerCpu);
}

#[test]
fn cross_cpu_free_storm_global() {
    storm(LockMode::Global);
}
