//! Unit tests of the heap on a host arena.

use super::*;
use crate::host::Arena;
use percpu::host;

fn heap(frames: usize, mode: LockMode) -> &'static Heap<'static, &'static Arena> {
    let arena = Arena::leak(frames);
    let fa = Box::leak(Box::new(FrameAllocator::new(arena)));
    fa.set_mode(mode).unwrap();
    fa.add_region(arena.first_pfn(), frames).unwrap();
    Box::leak(Box::new(Heap::new(fa)))
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn classes_cover_sizes_and_alignments() {
    assert_eq!(class_of(&layout(0, 1)), Some(0));
    assert_eq!(class_of(&layout(16, 8)), Some(0));
    assert_eq!(class_of(&layout(17, 1)), Some(1));
    assert_eq!(class_of(&layout(8, 256)), Some(4));
    assert_eq!(class_of(&layout(2048, 8)), Some(NCLASSES - 1));
    assert_eq!(class_of(&layout(2049, 8)), None);
    assert_eq!(class_of(&layout(8, 4096)), None);
    assert_eq!(large_order(&layout(4096, 8)), Some(0));
    assert_eq!(large_order(&layout(4097, 8)), Some(1));
    assert_eq!(
        large_order(&layout(FRAME_SIZE << MAX_ORDER, 8)),
        Some(MAX_ORDER)
    );
    assert_eq!(large_order(&layout((FRAME_SIZE << MAX_ORDER) + 1, 8)), None);
    for class in 0..NCLASSES {
        assert!(slab_capacity(class) >= 7, "class {class}");
    }
}

fn roundtrip(mode: LockMode) {
    std::thread::spawn(move || {
        host::bind_current_thread(1).unwrap();
        let h = heap(8192, mode);
        let before = h.frames().free_frames();
        let mut live = Vec::new();
        for (i, size) in [1, 8, 16, 24, 100, 500, 1000, 2048, 3000, 5000, 70000]
            .iter()
            .cycle()
            .take(500)
            .enumerate()
        {
            let align = [1, 8, 64, 4096][i % 4];
            let l = layout(*size, align);
            let p = h.alloc(l);
            assert!(!p.is_null(), "size {size}");
            assert_eq!(p as usize % align, 0);
            // SAFETY: p has l.size() writable bytes.
            unsafe { p.write_bytes(i as u8, l.size()) };
            live.push((p, l, i as u8));
        }
        for (p, l, fill) in &live {
            // SAFETY: p is live with l.size() bytes.
            let bytes = unsafe { core::slice::from_raw_parts(*p, l.size()) };
            assert!(bytes.iter().all(|b| b == fill), "object overwritten");
        }
        for (p, l, _) in live {
            // SAFETY: p came from h.alloc(l).
            unsafe { h.dealloc(p, l) };
        }
        assert_eq!(h.stats().bad_frees, 0);
        h.flush();
        assert_eq!(h.frames_held(), 0);
        assert_eq!(h.frames().free_frames(), before);
    })
    .join()
    .unwrap();
}

#[test]
fn roundtrip_percpu() {
    roundtrip(LockMode::PerCpu);
}

#[test]
fn roundtrip_global() {
    roundtrip(LockMode::Global);
}

#[test]
fn common_path_takes_no_class_lock() {
    std::thread::spawn(|| {
        host::bind_current_thread(2).unwrap();
        let h = heap(1024, LockMode::PerCpu);
        let l = layout(64, 8);
        let p = h.alloc(l);
        let locks = h.stats().class_locks;
        // SAFETY: p came from h.alloc(l).
        unsafe { h.dealloc(p, l) };
        for _ in 0..1000 {
            let q = h.alloc(l);
            // SAFETY: q came from h.alloc(l).
            unsafe { h.dealloc(q, l) };
        }
        assert_eq!(h.stats().class_locks, locks);
        assert!(h.stats().cached_allocs >= 1001);
    })
    .join()
    .unwrap();
}

#[test]
fn depot_moves_magazines_between_cpus() {
    let h = heap(4096, LockMode::PerCpu);
    let l = layout(256, 8);
    let n = rounds(4) * 4;
    let ptrs: Vec<usize> = std::thread::spawn(move || {
        host::bind_current_thread(3).unwrap();
        (0..n).map(|_| h.alloc(l) as usize).collect()
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        host::bind_current_thread(4).unwrap();
        for p in &ptrs {
            // SAFETY: allocated above with l, freed once.
            unsafe { h.dealloc(*p as *mut u8, l) };
        }
        let parked = h.stats().depot_magazines;
        assert!(parked >= 1, "full magazines parked");
        let slabs_before = h.stats().slab_frames;
        // CPU 4 reuses what it freed without new slabs.
        let again: Vec<_> = (0..n).map(|_| h.alloc(l)).collect();
        assert_eq!(h.stats().slab_frames, slabs_before);
        assert!(
            h.stats().depot_magazines < parked,
            "magazines taken back out of the depot"
        );
        for p in again {
            // SAFETY: allocated just above with l.
            unsafe { h.dealloc(p, l) };
        }
    })
    .join()
    .unwrap();
    h.flush();
    assert_eq!(h.frames_held(), 0);
}

#[test]
fn bad_frees_are_counted_not_followed() {
    let h = heap(1024, LockMode::PerCpu);
    let small = layout(32, 8);
    let p = h.alloc(small);
    // Wrong class (64 instead of 32): refused.
    // SAFETY: p is heap memory; the heap must detect the class mismatch.
    unsafe { h.dealloc(p, layout(64, 8)) };
    // Interior pointer: refused.
    // SAFETY: as above, detected by the object-boundary check.
    unsafe { h.dealloc(p.wrapping_add(1), small) };
    // Large free of a non-block: refused by the frame allocator.
    let big = layout(8192, 8);
    let q = h.alloc(big);
    // SAFETY: q is a live large block; freeing with a wrong order is detected.
    unsafe { h.dealloc(q, layout(16384, 8)) };
    assert_eq!(h.stats().bad_frees, 3);
    // SAFETY: the right frees.
    unsafe {
        h.dealloc(p, small);
        h.dealloc(q, big);
    }
    h.flush();
    assert_eq!(h.frames_held(), 0);
}

#[test]
fn out_of_memory_gives_null() {
    let h = heap(64, LockMode::PerCpu);
    assert!(
        h.alloc(layout(1 << 20, 8)).is_null(),
        "more frames than exist"
    );
    assert!(
        h.alloc(layout((FRAME_SIZE << MAX_ORDER) * 2, 8)).is_null(),
        "above MAX_ORDER"
    );
    let mut got = Vec::new();
    loop {
        let p = h.alloc(layout(2048, 8));
        if p.is_null() {
            break;
        }
        got.push(p);
    }
    assert!(!got.is_empty());
    for p in got {
        // SAFETY: allocated above.
        unsafe { h.dealloc(p, layout(2048, 8)) };
    }
    h.flush();
    assert_eq!(h.frames().free_frames(), h.frames().total_frames());
}

#[test]
fn frames_held_counts_slabs_and_large_blocks() {
    let h = heap(1024, LockMode::Global);
    let fa_free = |h: &Heap<'static, &'static Arena>| h.frames.free_frames();
    let free0 = fa_free(h);
    let small = layout(1024, 8); // slabs of order 2
    let p = h.alloc(small);
    let big = layout(4 * FRAME_SIZE, 8);
    let q = h.alloc(big);
    assert!(!p.is_null() && !q.is_null());
    let s = h.stats();
    assert_eq!(s.slab_frames, 4, "one order-2 slab: {s:?}");
    assert_eq!(s.large_frames, 4, "{s:?}");
    assert_eq!(h.frames_held(), s.slab_frames + 4);
    assert_eq!(
        h.frames_held(),
        free0 - fa_free(h),
        "every frame taken is held"
    );
    // SAFETY: both are live allocations with their own layouts.
    unsafe {
        h.dealloc(p, small);
        h.dealloc(q, big);
    }
    h.flush();
    assert_eq!(h.frames_held(), 0);
    assert_eq!(fa_free(h), free0);
}

#[test]
fn magazine_rounds_hold_at_most_16_kib_and_8_to_64_objects() {
    let got: Vec<_> = (0..NCLASSES).map(rounds).collect();
    // 16, 32, 64, 128, 256 bytes: capped at 64; then 16 KiB / size.
    assert_eq!(got, [64, 64, 64, 64, 64, 32, 16, 8]);
}

#[test]
fn depot_keeps_at_most_depot_max_magazines() {
    let h = heap(4096, LockMode::PerCpu);
    std::thread::spawn(move || {
        host::bind_current_thread(5).unwrap();
        let l = layout(2048, 8);
        let n = rounds(7) * (super::slab::DEPOT_MAX + 10);
        let ptrs: Vec<_> = (0..n).map(|_| h.alloc(l)).collect();
        assert!(ptrs.iter().all(|p| !p.is_null()));
        for p in ptrs {
            // SAFETY: allocated just above with l, freed once.
            unsafe { h.dealloc(p, l) };
        }
        let parked = h.stats().depot_magazines;
        assert!(
            (1..=super::slab::DEPOT_MAX).contains(&parked),
            "{parked} magazines parked"
        );
    })
    .join()
    .unwrap();
    h.flush();
    assert_eq!(h.frames_held(), 0);
}
