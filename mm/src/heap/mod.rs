//! The kernel heap: size classes over per-CPU slabs, per-CPU magazine
//! caches (Bonwick), remote frees sent home in batches (snmalloc /
//! mimalloc style), and large allocations straight from frames.
//!
//! Owns, in `LockMode::PerCpu`: per CPU (behind a per-CPU lock that only
//! its own CPU takes on the common path) a pair of magazines per class,
//! the CPU's own slabs and a small depot per class, and an *outbox* per
//! class (objects freed on this CPU whose slab belongs to another CPU, all
//! for one home); per CPU, an *inbox* per class, a lock-free stack other
//! CPUs push whole outboxes onto.  In `LockMode::Global`: the one heap
//! lock and one set of shared slabs (the class states behind their locks).
//!
//! Home: every slab belongs to the CPU that made it (its header says
//! which), and only that CPU carves objects from it or gives objects back
//! to it, so a slab header is written by one CPU only.
//!
//! Paths, `LockMode::PerCpu`:
//! * alloc: pop from the loaded magazine; else swap in the previous one if
//!   full; else take the class's inbox (objects of this CPU's slabs freed
//!   elsewhere) into the loaded magazine; else take a full magazine from
//!   the CPU's depot, or fill one from the CPU's slabs.  No shared lock.
//! * free of an object whose slab is this CPU's: push onto the loaded
//!   magazine; else swap with the previous one if empty; else park the
//!   full previous magazine in the CPU's depot (or give its objects back
//!   to the slabs if the depot is full).  No shared lock.
//! * free of another CPU's object: into the class's outbox; the outbox is
//!   sent to its home's inbox (one compare-and-swap) when it holds a
//!   magazine's worth, or at once when an object of another home arrives.
//!
//! Nothing is stranded: when a CPU cannot get frames for a slab or a large
//! block it calls `flush` (which every caller may do), which sends every
//! outbox home, then for every CPU takes its inbox, gives its magazines and
//! depot back to its slabs and its empty slabs back to the frame allocator;
//! then it retries once.  A CPU that stops allocating thus loses its inbox
//! and cached objects to the first CPU that runs short of memory.
//!
//! `LockMode::Global`: every small alloc/free takes the one heap lock and
//! goes to the shared slabs; no per-CPU caching, no remote frees.  Sizes
//! above the largest class (or alignments above it) take `1 << order`
//! frames from the frame allocator in both modes (which sends a block freed
//! on another CPU home in its own batches).
//!
//! Invariants: an object is in exactly one place: handed out, in one
//! magazine, depot, outbox or inbox, or on its slab's free list; an object
//! in a magazine, depot or slab list of CPU c belongs to a slab of CPU c.
//! All locks are taken under a `CpuGuard`.  Lock order: CPU cache ->
//! frame allocator; Global: heap lock -> class -> frame allocator; no CPU
//! cache lock is taken while another one is held.
//!
//! Must not: detect every double free (only frees that do not point at an
//! object of the right class are caught and counted), or recurse into
//! itself (magazines, outboxes and inboxes need no memory of their own).

mod magazine;
mod slab;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use percpu::{per_cpu, CachePadded, CpuGuard, PerCpu, PerCpuCounter};
use spin::Mutex;

use crate::{FrameAllocator, FrameMemory, LockMode, FRAME_SIZE, MAX_ORDER};
use magazine::{Chain, FreeObj, Outbox};
use slab::{rounds, slab_of, ClassState, CPU_DEPOT_MAX};
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

/// A CPU's private heap state: magazines, slabs, depot and outbox per class.
struct CpuCache {
    loaded: [Chain; NCLASSES],
    prev: [Chain; NCLASSES],
    slabs: [ClassState; NCLASSES],
    out: [Outbox; NCLASSES],
}

// SAFETY: the chains hold free objects owned by this cache; they are only
// followed under the per-CPU lock around it.
unsafe impl Send for CpuCache {}

/// Where other CPUs return objects of this CPU's slabs, one stack per class.
///
/// Shared state on the free path, and it cannot be per-CPU: it is where
/// CPU A hands objects to CPU B.  A slot per (source, home) pair would cost
/// `MAX_CPUS`² lines and a home would have to scan them; one stack per
/// (home, class) costs its line once per *batch* of remote frees (one
/// compare-and-swap by the sender, one swap by the home when it runs dry).
struct Inbox {
    heads: [AtomicPtr<FreeObj>; NCLASSES],
}

/// Counters for explaining scaling (read with `Heap::stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Times a class lock was taken (`LockMode::Global` only: per-CPU
    /// slabs need none).
    pub class_locks: i64,
    /// Of those, times it was held by another CPU at first try.
    pub class_contended: i64,
    /// Times the global heap lock (`LockMode::Global`) was found held by
    /// another CPU.
    pub global_contended: i64,
    /// Small allocations served from a CPU's magazines without a shared lock.
    pub cached_allocs: i64,
    /// Small objects freed on a CPU other than their slab's (into an outbox).
    pub remote_frees: i64,
    /// Outboxes sent to a home's inbox (one atomic push each).
    pub remote_batches: i64,
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
    inbox: PerCpu<Inbox>,
    /// The shared slabs of `LockMode::Global`.
    classes: [CachePadded<Mutex<ClassState>>; NCLASSES],
    global: Mutex<()>,
    class_locks: PerCpuCounter,
    class_contended: PerCpuCounter,
    global_contended: PerCpuCounter,
    cached_allocs: PerCpuCounter,
    remote_frees: PerCpuCounter,
    remote_batches: PerCpuCounter,
    /// Per CPU, not one atomic: every large alloc/free changes it (a
    /// socket's 64 KiB buffers), and one shared counter was the last line
    /// every tcp_stream operation wrote on all CPUs.  Read by summing.
    large_frames: PerCpuCounter,
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
                slabs: ClassState::per_class(CPU_DEPOT_MAX),
                out: [const { Outbox::new() }; NCLASSES],
            })),
            inbox: per_cpu!(Inbox {
                heads: [const { AtomicPtr::new(null_mut()) }; NCLASSES],
            }),
            classes: [
                CachePadded::new(Mutex::new(ClassState::new(0, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(1, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(2, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(3, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(4, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(5, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(6, DEPOT_MAX))),
                CachePadded::new(Mutex::new(ClassState::new(7, DEPOT_MAX))),
            ],
            global: Mutex::new(()),
            class_locks: PerCpuCounter::new(),
            class_contended: PerCpuCounter::new(),
            global_contended: PerCpuCounter::new(),
            cached_allocs: PerCpuCounter::new(),
            remote_frees: PerCpuCounter::new(),
            remote_batches: PerCpuCounter::new(),
            large_frames: PerCpuCounter::new(),
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
                LockMode::PerCpu => {
                    let obj = self.alloc_cached(&guard, class);
                    if !obj.is_null() {
                        return obj;
                    }
                    self.alloc_after_flush(&guard, class)
                }
                LockMode::Global => {
                    let _heap = self.lock_global(&guard);
                    self.lock_class(&guard, class)
                        .alloc_obj(self.frames, 0)
                        .unwrap_or(null_mut())
                }
            },
            None => {
                let block = self.alloc_large(&guard, &layout);
                if !block.is_null() || self.frames.mode() == LockMode::Global {
                    return block;
                }
                self.flush();
                self.alloc_large(&guard, &layout)
            }
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
            self.free_large(&guard, ptr, &layout);
            return;
        };
        // SAFETY: per our caller, `ptr` came from this heap, so the slab
        // header it would belong to is readable memory of ours.
        let Some(slab) = (unsafe { slab_of(ptr, class) }) else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.frames.mode() {
            LockMode::PerCpu => {
                // SAFETY: `slab_of` found a live slab header.
                let home = unsafe { slab::home_of(slab) };
                // SAFETY: `ptr` is a live object of `class`, given up by
                // the caller.
                unsafe { self.free_cached(&guard, class, ptr, home) }
            }
            LockMode::Global => {
                let _heap = self.lock_global(&guard);
                // SAFETY: as above.
                unsafe { self.lock_class(&guard, class).free_obj(self.frames, ptr) };
            }
        }
    }

    /// Out of frames for a slab: reclaims what every CPU caches or has in
    /// flight, and tries once more.
    #[cold]
    #[inline(never)]
    fn alloc_after_flush(&self, guard: &CpuGuard, class: usize) -> *mut u8 {
        self.flush();
        self.alloc_cached(guard, class)
    }

    #[inline(always)]
    fn alloc_cached(&self, guard: &CpuGuard, class: usize) -> *mut u8 {
        let mut cache = self.cpus.get(guard).lock();
        if cache.loaded[class].is_empty() {
            self.refill(guard, &mut cache, class);
        }
        match cache.loaded[class].pop() {
            Some(obj) => {
                self.cached_allocs.add_local(guard, 1);
                obj
            }
            None => null_mut(),
        }
    }

    /// Loads the (empty) loaded magazine: the previous one if full, else
    /// the inbox, else a full magazine of the depot, else from the slabs.
    #[inline(never)]
    fn refill(&self, guard: &CpuGuard, cache: &mut CpuCache, class: usize) {
        let CpuCache {
            loaded,
            prev,
            slabs,
            ..
        } = cache;
        let (loaded, prev, slabs) = (&mut loaded[class], &mut prev[class], &mut slabs[class]);
        if !prev.is_empty() {
            core::mem::swap(loaded, prev);
            return;
        }
        self.take_inbox(guard.cpu(), class, loaded, slabs);
        if loaded.is_empty() {
            match slabs.take_full() {
                Some(full) => *loaded = full,
                None => slabs.fill(self.frames, loaded, rounds(class), guard.cpu()),
            }
        }
    }

    /// Moves the objects other CPUs sent to `cpu` for `class` into the
    /// (empty) `loaded` magazine, then whole magazines into the CPU's
    /// depot while it has room; the rest go back to their slabs.  Called
    /// by `cpu` itself, or by `flush` with `cpu`'s cache locked.
    fn take_inbox(&self, cpu: usize, class: usize, loaded: &mut Chain, slabs: &mut ClassState) {
        let head = &self.inbox.remote(cpu).heads[class];
        if head.load(Ordering::Relaxed).is_null() {
            return;
        }
        let mut taken = head.swap(null_mut(), Ordering::Acquire);
        let mut spare = Chain::new();
        while !taken.is_null() {
            // SAFETY: the stack's objects were pushed whole by `send`
            // (Release) and we took the stack (Acquire): they are ours,
            // free objects of `cpu`'s slabs of `class`, linked by `next`.
            let next = unsafe { (*taken).next };
            let into = if loaded.len() < rounds(class) {
                &mut *loaded
            } else {
                &mut spare
            };
            // SAFETY: as above.
            unsafe { into.push(taken.cast()) };
            if spare.len() == rounds(class) {
                if let Err(mut full) = slabs.put_full(core::mem::replace(&mut spare, Chain::new()))
                {
                    slabs.release(self.frames, &mut full);
                }
            }
            taken = next;
        }
        slabs.release(self.frames, &mut spare);
    }

    /// # Safety
    /// `obj` is a live object of `class` that its owner gives up, in a slab
    /// of CPU `home`.
    #[inline(always)]
    unsafe fn free_cached(&self, guard: &CpuGuard, class: usize, obj: *mut u8, home: usize) {
        let mut cache = self.cpus.get(guard).lock();
        if home != guard.cpu() {
            // SAFETY: as ours.
            unsafe { self.free_remote(guard, &mut cache, class, obj, home) };
            return;
        }
        let CpuCache {
            loaded,
            prev,
            slabs,
            ..
        } = &mut *cache;
        let (loaded, prev, slabs) = (&mut loaded[class], &mut prev[class], &mut slabs[class]);
        if loaded.len() >= rounds(class) {
            if prev.is_empty() {
                core::mem::swap(loaded, prev);
            } else {
                // Both full: park the previous magazine, the loaded one
                // becomes previous, start an empty loaded one.
                let full = core::mem::replace(prev, core::mem::replace(loaded, Chain::new()));
                if let Err(mut full) = slabs.put_full(full) {
                    slabs.release(self.frames, &mut full);
                }
            }
        }
        // SAFETY: the caller gives `obj` up; it is an object of `class`.
        unsafe { loaded.push(obj) };
    }

    /// Puts an object of CPU `home`'s slabs into this CPU's outbox of
    /// `class`, sending the outbox home when it is full or gathers for
    /// another home.
    ///
    /// # Safety
    /// As `free_cached`.
    #[inline(never)]
    unsafe fn free_remote(
        &self,
        guard: &CpuGuard,
        cache: &mut CpuCache,
        class: usize,
        obj: *mut u8,
        home: usize,
    ) {
        self.remote_frees.add_local(guard, 1);
        let out = &mut cache.out[class];
        if out.home() != home {
            if let Some(chain) = out.take() {
                self.send(guard, out.home(), class, chain);
            }
            out.set_home(home);
        }
        // SAFETY: the caller gives `obj` up.
        unsafe { out.push(obj) };
        if out.len() >= rounds(class) {
            if let Some(chain) = out.take() {
                self.send(guard, home, class, chain);
            }
        }
    }

    /// Pushes an outbox's chain onto `home`'s inbox of `class`: one
    /// compare-and-swap.
    fn send(
        &self,
        guard: &CpuGuard,
        home: usize,
        class: usize,
        (head, tail): (*mut FreeObj, *mut FreeObj),
    ) {
        let inbox = &self.inbox.remote(home).heads[class];
        let mut old = inbox.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is ours until the swap publishes it.
            unsafe { (*tail).next = old };
            match inbox.compare_exchange_weak(old, head, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        self.remote_batches.add_local(guard, 1);
    }

    fn alloc_large(&self, guard: &CpuGuard, layout: &Layout) -> *mut u8 {
        let Some(order) = large_order(layout) else {
            return null_mut();
        };
        match self.frames.alloc_order(order) {
            Some(pfn) => {
                self.large_frames.add_local(guard, 1 << order);
                self.frames.memory().frame_ptr(pfn)
            }
            None => null_mut(),
        }
    }

    fn free_large(&self, guard: &CpuGuard, ptr: *mut u8, layout: &Layout) {
        let Some(order) = large_order(layout) else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let pfn = self.frames.memory().pfn_of(ptr);
        let aligned = self.frames.memory().frame_ptr(pfn) == ptr;
        if aligned && self.frames.free_order(pfn, order).is_ok() {
            self.large_frames.add_local(guard, -(1 << order));
        } else {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives every cached object back to its slab (every CPU's outboxes are
    /// sent home first, then every CPU's inboxes, magazines and depots go
    /// back to its slabs), then every slab with no object in use back to
    /// the frame allocator.  Any CPU may call it: when memory is short (the
    /// heap does, before it gives up), or to account for frames in tests.
    /// Call it with no CPU cache lock held.
    pub fn flush(&self) {
        let guard = CpuGuard::new();
        for cpu in self.cpus.iter() {
            let mut cache = cpu.lock();
            for class in 0..NCLASSES {
                let out = &mut cache.out[class];
                let home = out.home();
                if let Some(chain) = out.take() {
                    self.send(&guard, home, class, chain);
                }
            }
        }
        for (n, cpu) in self.cpus.iter().enumerate() {
            let mut cache = cpu.lock();
            let CpuCache {
                loaded,
                prev,
                slabs,
                ..
            } = &mut *cache;
            for class in 0..NCLASSES {
                let state = &mut slabs[class];
                state.release(self.frames, &mut loaded[class]);
                state.release(self.frames, &mut prev[class]);
                self.take_inbox(n, class, &mut loaded[class], state);
                state.release(self.frames, &mut loaded[class]);
                state.release_depot(self.frames);
                state.release_empty(self.frames);
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
        for cpu in self.cpus.iter() {
            let cache = cpu.lock();
            for state in &cache.slabs {
                slab_frames += state.frames();
                depot_magazines += state.depot_len();
            }
        }
        drop(guard);
        HeapStats {
            depot_magazines,
            class_locks: self.class_locks.sum(),
            class_contended: self.class_contended.sum(),
            global_contended: self.global_contended.sum(),
            cached_allocs: self.cached_allocs.sum(),
            remote_frees: self.remote_frees.sum(),
            remote_batches: self.remote_batches.sum(),
            slab_frames,
            // Per-CPU parts may be negative (freed elsewhere); the sum is
            // exact when nothing runs concurrently.
            large_frames: self.large_frames.sum().max(0) as usize,
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
