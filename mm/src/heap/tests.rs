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
fn objects_freed_elsewhere_go_home_in_batches_and_are_reused_there() {
    let h = heap(4096, LockMode::PerCpu);
    let l = layout(256, 8);
    let n = rounds(4) * 4;
    let ptrs: Vec<usize> = std::thread::spawn(move || {
        host::bind_current_thread(3).unwrap();
        (0..n).map(|_| h.alloc(l) as usize).collect()
    })
    .join()
    .unwrap();
    let slabs = h.stats().slab_frames;
    let stats0 = h.stats();
    let freed = ptrs.clone();
    std::thread::spawn(move || {
        host::bind_current_thread(4).unwrap();
        for p in &freed {
            // SAFETY: allocated above with l, freed once.
            unsafe { h.dealloc(*p as *mut u8, l) };
        }
    })
    .join()
    .unwrap();
    let s = h.stats();
    assert_eq!(s.remote_frees - stats0.remote_frees, n as i64);
    assert_eq!(
        s.remote_batches - stats0.remote_batches,
        4,
        "one push per magazine"
    );
    assert_eq!(s.slab_frames, slabs, "CPU 4 made no slab and kept none");
    std::thread::spawn(move || {
        host::bind_current_thread(3).unwrap();
        // CPU 3 gets its own objects back without new slabs.
        let again: Vec<_> = (0..n).map(|_| h.alloc(l) as usize).collect();
        assert_eq!(h.stats().slab_frames, slabs);
        // A magazine's worth from the inbox, then the magazines the inbox
        // filled into the CPU's depot (the rest would go to its slabs).
        assert!(n <= (1 + super::slab::CPU_DEPOT_MAX) * rounds(4));
        let reused = again.iter().filter(|p| ptrs.contains(p)).count();
        assert_eq!(reused, n, "every object came home and was reused");
        for p in again {
            // SAFETY: allocated just above with l.
            unsafe { h.dealloc(p as *mut u8, l) };
        }
    })
    .join()
    .unwrap();
    h.flush();
    assert_eq!(h.frames_held(), 0);
}

#[test]
fn objects_stranded_in_outboxes_and_inboxes_are_reclaimed_under_pressure() {
    // Small memory: CPU 8 fills it with 2048-byte objects, CPU 9 frees all
    // but the last few (full outboxes land in 8's inbox, the rest stays in
    // 9's outbox), and neither allocates again.  CPU 10 must still get
    // (nearly) all of memory: its failed slab allocation flushes everyone.
    let h = heap(96, LockMode::PerCpu);
    let l = layout(2048, 8);
    let ptrs: Vec<usize> = std::thread::spawn(move || {
        host::bind_current_thread(8).unwrap();
        std::iter::from_fn(|| Some(h.alloc(l)).filter(|p| !p.is_null()))
            .map(|p| p as usize)
            .collect()
    })
    .join()
    .unwrap();
    let total = ptrs.len();
    assert!(total > 3 * rounds(7));
    // Slabs pinned by the three objects CPU 8 keeps.
    let mut pinned: Vec<_> = ptrs[..3].iter().map(|p| p & !(16384 - 1)).collect();
    pinned.sort();
    pinned.dedup();
    let freed = ptrs.clone();
    std::thread::spawn(move || {
        host::bind_current_thread(9).unwrap();
        for p in &freed[3..] {
            // SAFETY: allocated above with l, freed once.
            unsafe { h.dealloc(*p as *mut u8, l) };
        }
    })
    .join()
    .unwrap();
    assert!(h.stats().remote_batches > 0);
    std::thread::spawn(move || {
        host::bind_current_thread(10).unwrap();
        let got: Vec<_> =
            std::iter::from_fn(|| Some(h.alloc(l)).filter(|p| !p.is_null())).collect();
        // Everything but the slabs CPU 8's live objects pin.
        assert_eq!(
            got.len() + pinned.len() * slab_capacity(7),
            total,
            "objects lost"
        );
        for p in got {
            // SAFETY: allocated just above with l.
            unsafe { h.dealloc(p, l) };
        }
    })
    .join()
    .unwrap();
    assert_eq!(h.stats().bad_frees, 0);
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
        let n = rounds(7) * (super::slab::CPU_DEPOT_MAX + 10);
        let ptrs: Vec<_> = (0..n).map(|_| h.alloc(l)).collect();
        assert!(ptrs.iter().all(|p| !p.is_null()));
        for p in ptrs {
            // SAFETY: allocated just above with l, freed once.
            unsafe { h.dealloc(p, l) };
        }
        let parked = h.stats().depot_magazines;
        assert!(
            (1..=super::slab::CPU_DEPOT_MAX).contains(&parked),
            "{parked} magazines parked"
        );
    })
    .join()
    .unwrap();
    h.flush();
    assert_eq!(h.frames_held(), 0);
}
