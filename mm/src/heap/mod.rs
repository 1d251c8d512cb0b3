//! The kernel heap: size classes over slabs, per-CPU magazine caches over a
//! per-class depot (Bonwick), and large allocations straight from frames.
//!
//! Owns: each CPU's pair of magazines per class (behind a per-CPU lock that
//! only its own CPU takes on the common path), each class's slabs and depot
//! (behind the class lock), and, in `LockMode::Global`, the one heap lock.
//!
//! Paths, `LockMode::PerCpu`:
//! * alloc: pop from the loaded magazine; else swap in the previous one if
//!   full; else (class lock) take a full magazine from the depot, or fill
//!   one from the slabs.
//! * free: push onto the loaded magazine; else swap with the previous one if
//!   empty; else (class lock) park the full previous magazine in the depot
//!   (or give its objects back to the slabs if the depot is full).
//!
//! `LockMode::Global`: every small alloc/free takes the one heap lock and
//! goes to the slabs; no per-CPU caching.  Sizes above the largest class
//! (or alignments above it) take `1 << order` frames from the frame
//! allocator in both modes.
//!
//! Invariants: an object is in exactly one place: handed out, in one
//! magazine, in the depot, or on its slab's free list.  All locks are taken
//! under a `CpuGuard`.  Lock order: CPU cache -> class -> frame allocator.
//!
//! Must not: detect every double free (only frees that do not point at an
//! object of the right class are caught and counted), or recurse into
//! itself (magazines need no memory of their own).

mod magazine;
mod slab;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

use percpu::{per_cpu, CachePadded, CpuGuard, PerCpu, PerCpuCounter};
use spin::Mutex;

use crate::{FrameAllocator, FrameMemory, LockMode, FRAME_SIZE, MAX_ORDER};
use magazine::Chain;
use slab::{rounds, slab_of, ClassState};
pub use slab::{slab_capacity, CLASS_SIZES, DEPOT_MAX, NCLASSES};

/// Largest size (and alignment) served by a size class.
pub const MAX_SMALL: usize = CLASS_SIZES[NCLASSES - 1];

/// The size class serving `layout`, or `None` for a large allocation.
pub fn class_of(layout: &Layout) -> Option<usize> {
    let need = layout.size().max(layout.align()).max(CLASS_SIZES[0]);
    if need > MAX_SMALL {
        return None;
    }
    let class = need.next_power_of_two().trailing_zeros() - CLASS_SIZES[0].trailing_zeros();
    Some(class as usize)
}

/// Buddy order of a large allocation, or `None` if above `MAX_ORDER`.
fn large_order(layout: &Layout) -> Option<usize> {
    let bytes = layout.size().max(layout.align());
    let frames = bytes.div_ceil(FRAME_SIZE).max(1);
    let order = frames.next_power_of_two().trailing_zeros() as usize;
    (order <= MAX_ORDER).then_some(order)
}

/// A CPU's magazines: `loaded` and `prev` for every class.
struct CpuCache {
    loaded: [Chain; NCLASSES],
    prev: [Chain; NCLASSES],
}

// SAFETY: the chains hold free objects owned by this cache; they are only
// followed under the per-CPU lock around it.
unsafe impl Send for CpuCache {}

/// Counters for explaining scaling (read with `Heap::stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Times a class lock was taken (depot or slab traffic).
    pub class_locks: i64,
    /// Of those, times it was held by another CPU at first try.
    pub class_contended: i64,
    /// Times the global heap lock (`LockMode::Global`) was found held by
    /// another CPU.
    pub global_contended: i64,
    /// Small allocations served from a CPU's magazines without a shared lock.
    pub cached_allocs: i64,
    /// Frames held by slabs.
    pub slab_frames: usize,
    /// Full magazines parked in the depots.
    pub depot_magazines: usize,
    /// Frames held by large allocations.
    pub large_frames: usize,
    /// Frees refused (pointer not an object of the layout's class, or a
    /// large block the frame allocator refused); the memory is not reused.
    pub bad_frees: usize,
}

/// The kernel heap over a frame allocator.  Implements `GlobalAlloc`.
pub struct Heap<'f, M> {
    frames: &'f FrameAllocator<M>,
    cpus: PerCpu<Mutex<CpuCache>>,
    classes: [CachePadded<Mutex<ClassState>>; NCLASSES],
    global: Mutex<()>,
    class_locks: PerCpuCounter,
    class_contended: PerCpuCounter,
    global_contended: PerCpuCounter,
    cached_allocs: PerCpuCounter,
    large_frames: AtomicUsize,
    bad_frees: AtomicUsize,
}

impl<'f, M: FrameMemory + Copy> Heap<'f, M> {
    /// A heap taking its memory from `frames`; follows `frames.mode()`.
    pub const fn new(frames: &'f FrameAllocator<M>) -> Self {
        Heap {
            frames,
            cpus: per_cpu!(Mutex::new(CpuCache {
                loaded: [const { Chain::new() }; NCLASSES],
                prev: [const { Chain::new() }; NCLASSES],
            })),
            classes: [
                CachePadded::new(Mutex::new(ClassState::new(0))),
                CachePadded::new(Mutex::new(ClassState::new(1))),
                CachePadded::new(Mutex::new(ClassState::new(2))),
                CachePadded::new(Mutex::new(ClassState::new(3))),
                CachePadded::new(Mutex::new(ClassState::new(4))),
                CachePadded::new(Mutex::new(ClassState::new(5))),
                CachePadded::new(Mutex::new(ClassState::new(6))),
                CachePadded::new(Mutex::new(ClassState::new(7))),
            ],
            global: Mutex::new(()),
            class_locks: PerCpuCounter::new(),
            class_contended: PerCpuCounter::new(),
            global_contended: PerCpuCounter::new(),
            cached_allocs: PerCpuCounter::new(),
            large_frames: AtomicUsize::new(0),
            bad_frees: AtomicUsize::new(0),
        }
    }

    /// The frame allocator underneath.
    pub fn frames(&self) -> &'f FrameAllocator<M> {
        self.frames
    }

    /// Allocates memory for `layout`; null when out of memory or when the
    /// layout needs more than `MAX_ORDER` frames.  A zero size is served
    /// as the smallest class.
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        let guard = CpuGuard::new();
        match class_of(&layout) {
            Some(class) => match self.frames.mode() {
                LockMode::PerCpu => self.alloc_cached(&guard, class),
                LockMode::Global => {
                    let _heap = self.lock_global(&guard);
                    self.lock_class(&guard, class)
                        .alloc_obj(self.frames)
                        .unwrap_or(null_mut())
                }
            },
            None => self.alloc_large(&layout),
        }
    }

    /// Frees memory from `alloc(layout)` with the same layout.  A pointer
    /// that is not an object of the layout's class is refused and counted
    /// (`HeapStats::bad_frees`); null is ignored.
    ///
    /// # Safety
    /// `ptr` came from this heap's `alloc` with `layout` and is not used
    /// after this call.
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr.is_null() {
            return;
        }
        let guard = CpuGuard::new();
        let Some(class) = class_of(&layout) else {
            self.free_large(ptr, &layout);
            return;
        };
        // SAFETY: per our caller, `ptr` came from this heap, so the slab
        // header it would belong to is readable memory of ours.
        if unsafe { slab_of(ptr, class) }.is_none() {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.frames.mode() {
            // SAFETY: `ptr` is a live object of `class`, given up by caller.
            LockMode::PerCpu => unsafe { self.free_cached(&guard, class, ptr) },
            LockMode::Global => {
                let _heap = self.lock_global(&guard);
                // SAFETY: as above.
                unsafe { self.lock_class(&guard, class).free_obj(self.frames, ptr) };
            }
        }
    }

    fn alloc_cached(&self, guard: &CpuGuard, class: usize) -> *mut u8 {
        let mut cache = self.cpus.get(guard).lock();
        let CpuCache { loaded, prev } = &mut *cache;
        let (loaded, prev) = (&mut loaded[class], &mut prev[class]);
        if loaded.is_empty() {
            if !prev.is_empty() {
                core::mem::swap(loaded, prev);
            } else {
                let mut depot = self.lock_class(guard, class);
                match depot.take_full() {
                    Some(full) => *loaded = full,
                    None => depot.fill(self.frames, loaded, rounds(class)),
                }
            }
        }
        match loaded.pop() {
            Some(obj) => {
                self.cached_allocs.add_local(guard, 1);
                obj
            }
            None => null_mut(),
        }
    }

    /// # Safety
    /// `obj` is a live object of `class` that its owner gives up.
    unsafe fn free_cached(&self, guard: &CpuGuard, class: usize, obj: *mut u8) {
        let mut cache = self.cpus.get(guard).lock();
        let CpuCache { loaded, prev } = &mut *cache;
        let (loaded, prev) = (&mut loaded[class], &mut prev[class]);
        if loaded.len() >= rounds(class) {
            if prev.is_empty() {
                core::mem::swap(loaded, prev);
            } else {
                // Both full: park the previous magazine, the loaded one
                // becomes previous, start an empty loaded one.
                let full = core::mem::replace(prev, core::mem::replace(loaded, Chain::new()));
                let mut depot = self.lock_class(guard, class);
                if let Err(mut full) = depot.put_full(full) {
                    depot.release(self.frames, &mut full);
                }
            }
        }
        // SAFETY: the caller gives `obj` up; it is an object of `class`.
        unsafe { loaded.push(obj) };
    }

    fn alloc_large(&self, layout: &Layout) -> *mut u8 {
        let Some(order) = large_order(layout) else {
            return null_mut();
        };
        match self.frames.alloc_order(order) {
            Some(pfn) => {
                self.large_frames.fetch_add(1 << order, Ordering::Relaxed);
                self.frames.memory().frame_ptr(pfn)
            }
            None => null_mut(),
        }
    }

    fn free_large(&self, ptr: *mut u8, layout: &Layout) {
        let Some(order) = large_order(layout) else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let pfn = self.frames.memory().pfn_of(ptr);
        let aligned = self.frames.memory().frame_ptr(pfn) == ptr;
        if aligned && self.frames.free_order(pfn, order).is_ok() {
            self.large_frames.fetch_sub(1 << order, Ordering::Relaxed);
        } else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives every cached object (all CPUs' magazines and the depots) back
    /// to the slabs, then every slab with no object in use back to the
    /// frame allocator.  Call it
    /// when memory is short or to account for frames in tests.
    pub fn flush(&self) {
        let guard = CpuGuard::new();
        for cpu in self.cpus.iter() {
            let mut cache = cpu.lock();
            let CpuCache { loaded, prev } = &mut *cache;
            for class in 0..NCLASSES {
                let mut state = self.lock_class(&guard, class);
                state.release(self.frames, &mut loaded[class]);
                state.release(self.frames, &mut prev[class]);
            }
        }
        for class in 0..NCLASSES {
            let mut state = self.lock_class(&guard, class);
            state.release_depot(self.frames);
            state.release_empty(self.frames);
        }
    }

    /// Counters and holdings so far.
    pub fn stats(&self) -> HeapStats {
        let guard = CpuGuard::new();
        let (mut slab_frames, mut depot_magazines) = (0, 0);
        for class in &self.classes {
            let state = class.lock();
            slab_frames += state.frames();
            depot_magazines += state.depot_len();
        }
        drop(guard);
        HeapStats {
            depot_magazines,
            class_locks: self.class_locks.sum(),
            class_contended: self.class_contended.sum(),
            global_contended: self.global_contended.sum(),
            cached_allocs: self.cached_allocs.sum(),
            slab_frames,
            large_frames: self.large_frames.load(Ordering::Relaxed),
            bad_frees: self.bad_frees.load(Ordering::Relaxed),
        }
    }

    /// Frames taken from the frame allocator and not given back (slabs and
    /// large allocations).
    pub fn frames_held(&self) -> usize {
        let s = self.stats();
        s.slab_frames + s.large_frames
    }

    fn lock_class(&self, guard: &CpuGuard, class: usize) -> spin::MutexGuard<'_, ClassState> {
        self.class_locks.add_local(guard, 1);
        let lock = &self.classes[class];
        lock.try_lock().unwrap_or_else(|| {
            self.class_contended.add_local(guard, 1);
            lock.lock()
        })
    }

    fn lock_global(&self, guard: &CpuGuard) -> spin::MutexGuard<'_, ()> {
        self.global.try_lock().unwrap_or_else(|| {
            self.global_contended.add_local(guard, 1);
            self.global.lock()
        })
    }
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes
// aligned to `layout.align()` (power-of-two classes in naturally aligned
// slabs; large blocks naturally aligned to their size), not handed out
// again until `dealloc`.
unsafe impl<M: FrameMemory + Copy> GlobalAlloc for Heap<'_, M> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Heap::alloc(self, layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract is ours.
        unsafe { Heap::dealloc(self, ptr, layout) }
    }
}

#[cfg(test)]
mod tests;
