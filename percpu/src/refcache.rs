//! `RefCache`: reference counts whose increments and decrements touch only
//! the calling CPU's cache line, reconciled lazily (Refcache, Clements,
//! Kaashoek, Zeldovich, EuroSys 2013, as RadixVM uses it for the lifetimes
//! of pages and mappings).
//!
//! Owns: one small direct-mapped cache of *deltas* per CPU (object address
//! -> net change not yet applied), the review list of objects whose
//! reconciled count reached zero, and the epoch counter.  The objects own
//! their [`RefObj`] (reconciled count, review flags, list link, release
//! function).
//!
//! How: `inc`/`dec` add to the slot of the object in the caller's CPU
//! cache (a slot taken by another object is first applied to that object:
//! eviction).  `reconcile` (run by anyone, one at a time, rarely: the
//! kernel's idle loop and mapping calls) starts epoch `p`, applies and
//! clears every CPU's cache, then reviews the list.  An object whose
//! reconciled count becomes zero joins the list stamped with the epoch in
//! force; any later application of a delta to it, even a zero one, marks
//! it *dirty*.  At the end of pass `p` an object stamped before `p` with
//! count zero and not dirty is released: pass `p` began after the stamp
//! and flushed every cache, so every delta that existed when the count was
//! seen at zero has been applied since, and none did; a true count of zero
//! cannot rise again (a new reference needs an old one).  A dirty object is
//! cleaned and restamped; one whose count is no longer zero leaves the list.
//!
//! Invariants: an object's true count is its reconciled count plus every
//! cached delta for it; `release` runs exactly once per object, only after
//! its true count reached zero, and after which no cache holds its address.
//! Lock order: a CPU cache, then the review lock.
//!
//! Must not: allocate (the caches are fixed arrays inside the `RefCache`,
//! usable in a `static`), or call a release function while holding a lock
//! (it may free memory, take locks, or drop other counted objects).

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, Ordering};

use crate::guard::CpuGuard;
use crate::per_cpu::PerCpu;
use crate::MAX_CPUS;

/// Slots of one CPU's delta cache (direct-mapped by object address).
pub const WAYS: usize = 32;

/// `state` flag: on the review list.
const REVIEW: i64 = 1;
/// `state` flag: a delta was applied since it was (re)stamped.
const DIRTY: i64 = 2;
/// The count sits above the two flag bits.
const ONE: i64 = 4;

/// The counted part of an object; embed it and keep the object at one
/// address from its creation until `release` is called.
pub struct RefObj {
    /// `count * ONE | DIRTY? | REVIEW?` (the reconciled count).
    state: AtomicI64,
    /// Epoch in force when it joined (or was last restamped on) the list.
    stamp: AtomicU64,
    /// Review list link (under the review lock).
    next: AtomicPtr<RefObj>,
    /// Called once, with this object, when its true count reached zero.
    release: unsafe fn(*const RefObj),
}

impl RefObj {
    /// An object holding `count` references (usually 1: its creator's),
    /// released by `release` (which typically frees the containing object).
    pub const fn new(count: i64, release: unsafe fn(*const RefObj)) -> Self {
        RefObj {
            state: AtomicI64::new(count * ONE),
            stamp: AtomicU64::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
            release,
        }
    }

    /// The reconciled count (not counting deltas still in CPU caches).
    pub fn reconciled(&self) -> i64 {
        self.state.load(Ordering::Acquire) >> 2
    }
}

/// A spin lock around `T` (this crate has no lock crate; every holder here
/// is short and never blocks).
struct Spin<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only by the holder of `locked`.
unsafe impl<T: Send> Sync for Spin<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Spin<T> {}

impl<T> Spin<T> {
    const fn new(value: T) -> Self {
        Spin {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: we hold the lock, so no other reference to `value` exists.
        let r = f(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        r
    }
}

#[derive(Clone, Copy)]
struct Slot {
    obj: *const RefObj,
    delta: i64,
}

// SAFETY: a slot names an object that stays alive until the slot is
// flushed (module invariant); it is only used under its cache's lock.
unsafe impl Send for Slot {}

struct Cache {
    slots: [Slot; WAYS],
}

const EMPTY: Slot = Slot {
    obj: ptr::null(),
    delta: 0,
};

/// Head of the review list (linked through `RefObj::next`).
struct Review {
    head: *const RefObj,
}

// SAFETY: the list is reached only under the review lock; its objects are
// alive while listed (they are unlinked before release).
unsafe impl Send for Review {}

/// Counters for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefCacheStats {
    /// Reconciliation passes completed.
    pub passes: u64,
    /// Cached deltas applied because another object needed their slot.
    pub evictions: u64,
    /// Objects released.
    pub released: u64,
}

/// Per-CPU delta caches, the review list and the epoch.
pub struct RefCache {
    caches: PerCpu<Spin<Cache>>,
    review: Spin<Review>,
    /// Epoch of the pass in progress or last begun (changed under the
    /// review lock).
    epoch: AtomicU64,
    /// One reconciliation at a time.
    reconciling: AtomicBool,
    passes: AtomicU64,
    evictions: crate::PerCpuCounter,
    released: AtomicU64,
}

impl Default for RefCache {
    fn default() -> Self {
        Self::new()
    }
}

impl RefCache {
    /// Empty caches; usable in a `static`.
    pub const fn new() -> Self {
        RefCache {
            caches: crate::per_cpu!(Spin::new(Cache {
                slots: [EMPTY; WAYS],
            })),
            review: Spin::new(Review { head: ptr::null() }),
            epoch: AtomicU64::new(0),
            reconciling: AtomicBool::new(false),
            passes: AtomicU64::new(0),
            evictions: crate::PerCpuCounter::new(),
            released: AtomicU64::new(0),
        }
    }

    /// One more reference to `obj`.
    ///
    /// # Safety
    /// The caller holds a reference to `obj` (so its true count is above
    /// zero) and `obj` is released only through its release function.
    pub unsafe fn inc(&self, obj: &RefObj) {
        // SAFETY: forwarded contract.
        unsafe { self.add(obj, 1) }
    }

    /// Gives up one reference to `obj`; it is released (later, by some
    /// `reconcile`) once no reference is left.
    ///
    /// # Safety
    /// As [`inc`](Self::inc); the caller's reference is gone afterwards.
    pub unsafe fn dec(&self, obj: &RefObj) {
        // SAFETY: forwarded contract.
        unsafe { self.add(obj, -1) }
    }

    /// Adds `delta` to `obj`'s count in this CPU's cache.
    ///
    /// # Safety
    /// As [`inc`](Self::inc).
    pub unsafe fn add(&self, obj: &RefObj, delta: i64) {
        let guard = CpuGuard::new();
        let p = obj as *const RefObj;
        let victim = self.caches.get(&guard).with(|cache| {
            let slot = &mut cache.slots[Self::way(p)];
            if slot.obj == p {
                slot.delta += delta;
                return None;
            }
            let old = *slot;
            *slot = Slot { obj: p, delta };
            (!old.obj.is_null()).then_some(old)
        });
        if let Some(old) = victim {
            self.evictions.add_local(&guard, 1);
            // SAFETY: an object in a cache slot is alive until that slot is
            // applied (it cannot reach a true count of zero and be released
            // before this delta is applied: see the module comment).
            unsafe { self.apply(old) };
        }
    }

    fn way(p: *const RefObj) -> usize {
        // Objects are at least 8-byte aligned; mix the higher bits in.
        let a = p as usize >> 4;
        (a ^ (a >> 5) ^ (a >> 11)) % WAYS
    }

    /// Applies a cached delta to its object's reconciled count.
    ///
    /// # Safety
    /// `slot.obj` is alive (it was in a cache until now).
    unsafe fn apply(&self, slot: Slot) {
        // SAFETY: by the caller.
        let obj = unsafe { &*slot.obj };
        let prev = obj
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let mut n = s + slot.delta * ONE;
                if s & REVIEW != 0 {
                    n |= DIRTY;
                } else if n >> 2 == 0 {
                    n |= REVIEW;
                }
                Some(n)
            })
            .unwrap_or_else(|s| s);
        let now = prev + slot.delta * ONE;
        if prev & REVIEW == 0 && now >> 2 == 0 {
            // We put it on review: link it, stamped with the epoch now in
            // force (read under the review lock, so ordered with passes).
            self.review.with(|r| {
                obj.stamp
                    .store(self.epoch.load(Ordering::Acquire), Ordering::Relaxed);
                obj.next.store(r.head as *mut RefObj, Ordering::Relaxed);
                r.head = obj;
            });
        }
    }

    /// One reconciliation pass: applies every CPU's cached deltas, then
    /// releases the objects whose count stayed at zero since before the
    /// pass began.  Returns the number released, or `None` when another
    /// pass was running (it will do the work).  Calls release functions,
    /// so call it where they may run (no locks their code takes).
    pub fn reconcile(&self) -> Option<usize> {
        if self
            .reconciling
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // Pinned (interrupts off in the kernel) while any lock is held, so
        // an interrupt on this CPU can never spin on a lock we hold; the
        // release functions run after the pin.
        let pin = CpuGuard::new();
        let pass = self
            .review
            .with(|_| self.epoch.fetch_add(1, Ordering::AcqRel) + 1);
        for cpu in 0..MAX_CPUS {
            let mut taken = [EMPTY; WAYS];
            self.caches.remote(cpu).with(|cache| {
                core::mem::swap(&mut taken, &mut cache.slots);
            });
            for slot in taken.into_iter().filter(|s| !s.obj.is_null()) {
                // SAFETY: it was in a cache until now.
                unsafe { self.apply(slot) };
            }
        }
        // Unlink the released ones into a private list (linked the same
        // way), release them after the lock.
        let mut freed: *const RefObj = ptr::null();
        self.review.with(|r| {
            let mut link: *mut *const RefObj = &mut r.head;
            // SAFETY: listed objects are alive; `link` points at the head
            // or at the `next` field of a listed object.
            unsafe {
                while !(*link).is_null() {
                    let obj = &**link;
                    let next = obj.next.load(Ordering::Relaxed) as *const RefObj;
                    if obj.stamp.load(Ordering::Relaxed) >= pass {
                        link = obj.next.as_ptr() as *mut *const RefObj;
                        continue;
                    }
                    let verdict = obj
                        .state
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                            Some(if s & DIRTY != 0 {
                                s & !DIRTY
                            } else if s >> 2 != 0 {
                                s & !REVIEW
                            } else {
                                s
                            })
                        })
                        .unwrap_or_else(|s| s);
                    if verdict & DIRTY != 0 {
                        // Touched since: look again after a whole pass.
                        obj.stamp.store(pass, Ordering::Relaxed);
                        link = obj.next.as_ptr() as *mut *const RefObj;
                    } else {
                        // Unlink: referenced again, or truly free.
                        *link = next;
                        if verdict >> 2 == 0 {
                            obj.next.store(freed as *mut RefObj, Ordering::Relaxed);
                            freed = obj;
                        }
                    }
                }
            }
        });
        drop(pin);
        let mut n = 0;
        while !freed.is_null() {
            // SAFETY: unlinked above, so nothing else reaches it; the
            // release function may free it, so read `next` first.
            unsafe {
                let obj = &*freed;
                let next = obj.next.load(Ordering::Relaxed) as *const RefObj;
                let release = obj.release;
                release(freed);
                freed = next;
            }
            n += 1;
        }
        self.released.fetch_add(n as u64, Ordering::Relaxed);
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.reconciling.store(false, Ordering::Release);
        Some(n)
    }

    /// Objects waiting on the review list (each needs up to two more
    /// passes).
    pub fn reviewing(&self) -> usize {
        let _pin = CpuGuard::new();
        self.review.with(|r| {
            let mut n = 0;
            let mut p = r.head;
            while !p.is_null() {
                n += 1;
                // SAFETY: listed objects are alive.
                p = unsafe { (*p).next.load(Ordering::Relaxed) as *const RefObj };
            }
            n
        })
    }

    /// Passes until nothing is on review and no cache holds a delta (at
    /// most `max` passes); true when quiet.  For leak checks and teardown.
    pub fn quiesce(&self, max: usize) -> bool {
        for _ in 0..max {
            self.reconcile();
            if self.reviewing() == 0 && self.cached() == 0 {
                return true;
            }
        }
        false
    }

    /// Cached deltas over all CPUs (slots in use).
    pub fn cached(&self) -> usize {
        let _pin = CpuGuard::new();
        (0..MAX_CPUS)
            .map(|c| {
                self.caches
                    .remote(c)
                    .with(|cache| cache.slots.iter().filter(|s| !s.obj.is_null()).count())
            })
            .sum()
    }

    pub fn stats(&self) -> RefCacheStats {
        RefCacheStats {
            passes: self.passes.load(Ordering::Relaxed),
            evictions: self.evictions.sum().max(0) as u64,
            released: self.released.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    /// A counted test object: its id indexes the model.
    #[repr(C)]
    struct Obj {
        rc: RefObj,
        id: usize,
        model: Arc<Model>,
    }

    /// The model: true counts (changed with each inc/dec, under a lock)
    /// and how many times each object was released.
    struct Model {
        counts: Mutex<Vec<i64>>,
        released: Vec<AtomicUsize>,
    }

    unsafe fn release_obj(p: *const RefObj) {
        // SAFETY: every `RefObj` of these tests is the first field of a
        // leaked `Box<Obj>` (repr(C)).
        let obj = unsafe { Box::from_raw(p as *mut Obj) };
        let true_count = obj.model.counts.lock().unwrap()[obj.id];
        assert_eq!(
            true_count, 0,
            "object {} released at count {}",
            obj.id, true_count
        );
        let before = obj.model.released[obj.id].fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "object {} released twice", obj.id);
    }

    fn model(n: usize) -> Arc<Model> {
        Arc::new(Model {
            counts: Mutex::new(vec![0; n]),
            released: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// A reference held by a test thread.
    struct Handle {
        obj: *const Obj,
    }
    // SAFETY: the object is shared by design; the handle is one reference.
    unsafe impl Send for Handle {}

    impl Handle {
        fn new(rc: &RefCache, m: &Arc<Model>, id: usize) -> Handle {
            let _ = rc;
            m.counts.lock().unwrap()[id] = 1;
            let obj = Box::into_raw(Box::new(Obj {
                rc: RefObj::new(1, release_obj),
                id,
                model: m.clone(),
            }));
            Handle { obj }
        }
        fn obj(&self) -> &Obj {
            // SAFETY: a handle is a reference: the object is not released.
            unsafe { &*self.obj }
        }
        fn clone_in(&self, rc: &RefCache) -> Handle {
            let o = self.obj();
            assert_eq!(
                o.model.released[o.id].load(Ordering::SeqCst),
                0,
                "use after release"
            );
            o.model.counts.lock().unwrap()[o.id] += 1;
            // SAFETY: we hold a reference.
            unsafe { rc.inc(&o.rc) };
            Handle { obj: self.obj }
        }
        fn drop_in(self, rc: &RefCache) {
            let o = self.obj();
            assert_eq!(
                o.model.released[o.id].load(Ordering::SeqCst),
                0,
                "use after release"
            );
            o.model.counts.lock().unwrap()[o.id] -= 1;
            // SAFETY: we hold a reference, given up here (the model first:
            // after `dec` the object may go at the next passes).
            unsafe { rc.dec(&o.rc) };
        }
    }

    #[test]
    fn release_waits_for_two_passes_and_happens_once() {
        std::thread::spawn(|| {
            host::bind_current_thread(5).unwrap();
            let rc = Box::leak(Box::new(RefCache::new()));
            let m = model(1);
            let h = Handle::new(rc, &m, 0);
            let h2 = h.clone_in(rc);
            h.drop_in(rc);
            assert_eq!(rc.reconcile(), Some(0));
            assert_eq!(m.released[0].load(Ordering::SeqCst), 0, "still referenced");
            h2.drop_in(rc);
            assert_eq!(rc.cached(), 1, "the decrement sits in cpu 5's cache");
            assert_eq!(rc.reconcile(), Some(0), "seen at zero: reviewed next pass");
            assert_eq!(rc.reviewing(), 1);
            assert_eq!(rc.reconcile(), Some(1));
            assert_eq!(m.released[0].load(Ordering::SeqCst), 1);
            assert_eq!(rc.reconcile(), Some(0));
            assert_eq!(rc.stats().released, 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_transient_zero_is_not_a_release() {
        // CPU 1 holds +1 in its cache while CPU 2's -1 reaches the
        // reconciled count first (through eviction): the count reads zero
        // but the object is referenced.
        let rc: &'static RefCache = Box::leak(Box::new(RefCache::new()));
        let m = model(1);
        let h = Handle::new(rc, &m, 0);
        let (h, h2) = std::thread::spawn(move || {
            host::bind_current_thread(1).unwrap();
            let h2 = h.clone_in(rc); // +1 cached on cpu 1
            (h, h2)
        })
        .join()
        .unwrap();
        let obj = h.obj as usize;
        std::thread::spawn(move || {
            host::bind_current_thread(2).unwrap();
            h.drop_in(rc); // -1 cached on cpu 2
                           // Fill cpu 2's cache until that slot is evicted (applied).
                           // SAFETY: `h2` keeps the object alive.
            let rcobj = unsafe { &(*(obj as *const Obj)).rc };
            let mut made = 0;
            while rcobj.reconciled() != 0 {
                let filler = Box::leak(Box::new(RefObj::new(1, noop)));
                // SAFETY: leaked objects never go away.
                unsafe { rc.inc(filler) };
                made += 1;
                assert!(made < 100 * WAYS, "the slot was never evicted");
            }
        })
        .join()
        .unwrap();
        assert_eq!(rc.reviewing(), 1, "the transient zero put it on review");
        for _ in 0..4 {
            rc.reconcile();
            assert_eq!(
                m.released[0].load(Ordering::SeqCst),
                0,
                "released while cpu 1 holds it"
            );
        }
        assert_eq!(rc.reviewing(), 0, "cpu 1's +1 took it off review");
        h2.drop_in(rc);
        assert!(rc.quiesce(8));
        assert_eq!(m.released[0].load(Ordering::SeqCst), 1);
    }

    unsafe fn noop(_: *const RefObj) {}

    /// Real threads on several CPU ids (two per id for some) take, pass and
    /// drop references to objects through a shared table while another
    /// thread reconciles; the model's true count must be zero at each
    /// release, no object may be used after it, and at the end every
    /// object is released exactly once.
    #[test]
    fn threads_against_a_model() {
        const OBJECTS: usize = 400;
        const THREADS: usize = 6;
        const STEPS: usize = 20_000;
        let rc: &'static RefCache = Box::leak(Box::new(RefCache::new()));
        let m = model(OBJECTS);
        // Table slots hold references; a thread may clone one it finds.
        let table: Arc<Vec<Mutex<Option<Handle>>>> =
            Arc::new((0..64).map(|_| Mutex::new(None)).collect());
        let next_id = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reconciler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                host::bind_current_thread(7).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    rc.reconcile();
                    std::thread::yield_now();
                }
            })
        };
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (m, table, next_id) = (m.clone(), table.clone(), next_id.clone());
                std::thread::spawn(move || {
                    // Threads 4 and 5 share CPU ids with 0 and 1.
                    host::bind_current_thread(t % 4).unwrap();
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    let mut rand = move || {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed
                    };
                    let mut held: Vec<Handle> = Vec::new();
                    for _ in 0..STEPS {
                        let r = rand();
                        let slot = &table[(r >> 8) as usize % table.len()];
                        match r % 6 {
                            0 => {
                                let id = next_id.fetch_add(1, Ordering::SeqCst);
                                if id < OBJECTS {
                                    held.push(Handle::new(rc, &m, id));
                                }
                            }
                            1 | 2 => {
                                if let Some(h) = slot.lock().unwrap().as_ref() {
                                    held.push(h.clone_in(rc));
                                }
                            }
                            3 => {
                                if let Some(h) = held.pop() {
                                    if let Some(old) = slot.lock().unwrap().replace(h) {
                                        old.drop_in(rc);
                                    }
                                }
                            }
                            4 => {
                                if let Some(h) = slot.lock().unwrap().take() {
                                    h.drop_in(rc);
                                }
                            }
                            _ => {
                                if !held.is_empty() {
                                    let i = (r >> 20) as usize % held.len();
                                    held.swap_remove(i).drop_in(rc);
                                }
                            }
                        }
                    }
                    for h in held {
                        h.drop_in(rc);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        for slot in table.iter() {
            if let Some(h) = slot.lock().unwrap().take() {
                h.drop_in(rc);
            }
        }
        stop.store(true, Ordering::SeqCst);
        reconciler.join().unwrap();
        assert!(rc.quiesce(8), "still reviewing after 8 passes");
        let made = next_id.load(Ordering::SeqCst).min(OBJECTS);
        assert!(made > 50, "only {made} objects made");
        for id in 0..made {
            assert_eq!(m.counts.lock().unwrap()[id], 0);
            assert_eq!(m.released[id].load(Ordering::SeqCst), 1, "object {id}");
        }
        assert!(rc.stats().evictions > 0, "the caches never overflowed");
    }
}
