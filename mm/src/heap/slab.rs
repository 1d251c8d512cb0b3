//! The slab layer and the magazine depot of one size class.
//!
//! Owns, per class: the slabs (naturally aligned blocks of frames whose
//! first bytes hold a `SlabHeader`, the rest cut into equal objects), the
//! list of slabs that have free objects, and the depot of full magazines.
//! A `ClassState` is one CPU's (inside its cache, `LockMode::PerCpu`) or
//! the shared one behind its class lock (`LockMode::Global`); nothing here
//! locks.  A slab's header records its home CPU (the owner of the
//! `ClassState` that made it); the header's first cache line (magic,
//! class, home) is written only when the slab is made or freed, so CPUs
//! that free an object into an outbox read it without sharing a written
//! line with the home, which alone writes the second (counts, links).
//!
//! Invariants: a slab is on the partial list iff its free list is not
//! empty; at most `KEEP_EMPTY` slabs whose objects are all free are kept
//! (so that a class hovering around a slab boundary does not make and free
//! a slab on every other call); further empty slabs go back to the frame
//! allocator at once; the depot holds only full magazines;
//! `in_use` counts the slab's objects that are not on its free list
//! (handed out, or cached in a magazine or the depot).
//!
//! Must not: touch an object that is not free, or hand a slab's frames back
//! while any of its objects is in use.

use core::mem::size_of;
use core::ptr::null_mut;

use super::magazine::{Chain, FreeObj};
use crate::{FrameAllocator, FrameMemory, FRAME_SIZE};

/// Object sizes of the classes.
pub const CLASS_SIZES: [usize; NCLASSES] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Number of size classes.
pub const NCLASSES: usize = 8;
/// Buddy order of each class's slabs (at least 7 objects per slab).
const SLAB_ORDERS: [usize; NCLASSES] = [0, 0, 0, 0, 0, 1, 2, 2];
/// Most full magazines the shared depot of a class keeps
/// (`LockMode::Global`); more go back to slabs.
pub const DEPOT_MAX: usize = 16;
/// Most full magazines a CPU's own depot of a class keeps: as many as the
/// shared depot of `LockMode::Global` (fewer made a CPU that frees in
/// bursts give objects back to its slabs and carve them again, measurably
/// more instructions per operation on one CPU).  What depots hold is given
/// back when memory runs short (`Heap::flush`).
pub const CPU_DEPOT_MAX: usize = DEPOT_MAX;

/// Objects per magazine of class `class`: more for small objects, at least
/// 8, and at most 16 KiB of objects per magazine.
pub fn rounds(class: usize) -> usize {
    (16384 / CLASS_SIZES[class]).clamp(8, 64)
}

/// Empty slabs a class keeps instead of freeing them.
const KEEP_EMPTY: usize = 1;

const SLAB_MAGIC: u64 = 0x51ab_c0de_5eed_0001;

/// Bytes of a slab of class `class`.
pub fn slab_bytes(class: usize) -> usize {
    FRAME_SIZE << SLAB_ORDERS[class]
}

/// Where the first object starts: the header rounded up to the object size,
/// so every object is aligned to its (power-of-two) size.
fn first_object_offset(class: usize) -> usize {
    size_of::<SlabHeader>().next_multiple_of(CLASS_SIZES[class])
}

/// Objects per slab of class `class`.
pub fn slab_capacity(class: usize) -> usize {
    (slab_bytes(class) - first_object_offset(class)) / CLASS_SIZES[class]
}

/// Start of every slab; objects follow at `first_object_offset`.  The
/// first 64 bytes are read-mostly (see the module comment), the rest is
/// written by the home CPU only.
#[repr(C)]
pub struct SlabHeader {
    magic: u64,
    pfn: usize,
    class: usize,
    home: usize,
    _read_mostly: [u64; 4],
    in_use: usize,
    free: *mut FreeObj,
    next: *mut SlabHeader,
    prev: *mut SlabHeader,
}

/// The slab containing `obj`, if `obj` looks like an object of `class`
/// (header magic and class match, `obj` on an object boundary).
///
/// # Safety
/// `obj` must point into memory handed out by a heap over this frame memory
/// (the slab header address computed from it must be readable).
pub unsafe fn slab_of(obj: *mut u8, class: usize) -> Option<*mut SlabHeader> {
    let bytes = slab_bytes(class);
    let base = (obj as usize) & !(bytes - 1);
    let offset = obj as usize - base;
    let first = first_object_offset(class);
    if offset < first || !(offset - first).is_multiple_of(CLASS_SIZES[class]) {
        return None;
    }
    let slab = base as *mut SlabHeader;
    // SAFETY: per the caller's promise the slab header is readable.
    let (magic, slab_class) = unsafe { ((*slab).magic, (*slab).class) };
    (magic == SLAB_MAGIC && slab_class == class).then_some(slab)
}

/// The home CPU of a slab found by `slab_of`.
///
/// # Safety
/// `slab` is a live slab header (from `slab_of`).
pub unsafe fn home_of(slab: *mut SlabHeader) -> usize {
    // SAFETY: per the caller's promise the header is readable; `home` is
    // written only when the slab is made.
    unsafe { (*slab).home }
}

/// One class's slabs and depot; kept behind the class lock.
pub struct ClassState {
    class: usize,
    partial: *mut SlabHeader,
    slabs: usize,
    /// Slabs on the partial list with no object in use.
    empty: usize,
    depot: *mut FreeObj,
    depot_len: usize,
    depot_max: usize,
}

// SAFETY: the raw pointers refer to slab memory owned by this class; they
// are only followed by whoever holds the class lock around this state.
unsafe impl Send for ClassState {}

impl ClassState {
    /// An empty class whose depot keeps at most `depot_max` magazines.
    pub const fn new(class: usize, depot_max: usize) -> Self {
        ClassState {
            class,
            partial: null_mut(),
            slabs: 0,
            empty: 0,
            depot: null_mut(),
            depot_len: 0,
            depot_max,
        }
    }

    /// One empty state per class.
    pub const fn per_class(depot_max: usize) -> [ClassState; NCLASSES] {
        [
            ClassState::new(0, depot_max),
            ClassState::new(1, depot_max),
            ClassState::new(2, depot_max),
            ClassState::new(3, depot_max),
            ClassState::new(4, depot_max),
            ClassState::new(5, depot_max),
            ClassState::new(6, depot_max),
            ClassState::new(7, depot_max),
        ]
    }

    /// Frames held by this class's slabs.
    pub fn frames(&self) -> usize {
        self.slabs << SLAB_ORDERS[self.class]
    }

    /// Full magazines in the depot.
    pub fn depot_len(&self) -> usize {
        self.depot_len
    }

    /// Takes a full magazine from the depot.
    pub fn take_full(&mut self) -> Option<Chain> {
        let head = self.depot;
        if head.is_null() {
            return None;
        }
        // SAFETY: depot magazines are chains of free objects of this class;
        // a magazine's first object holds the link to the next magazine.
        let next = unsafe { (*head).next_mag };
        self.depot = next;
        self.depot_len -= 1;
        Some(Chain::from_raw(head, rounds(self.class)))
    }

    /// Puts a full magazine (`rounds(class)` objects) into the depot; gives
    /// it back when the depot is full or the magazine is not.
    pub fn put_full(&mut self, mag: Chain) -> Result<(), Chain> {
        if self.depot_len >= self.depot_max || mag.len() != rounds(self.class) {
            return Err(mag);
        }
        let (head, _) = mag.into_raw();
        // SAFETY: `head` is the first free object of a non-empty chain we
        // now own; its second word is ours to use.
        unsafe { (*head).next_mag = self.depot };
        self.depot = head;
        self.depot_len += 1;
        Ok(())
    }

    /// Moves up to `n` objects from the slabs into `chain`, making slabs
    /// (with home `home`) as needed; stops early when frames run out.
    pub fn fill<M: FrameMemory + Copy>(
        &mut self,
        frames: &FrameAllocator<M>,
        chain: &mut Chain,
        n: usize,
        home: usize,
    ) {
        while chain.len() < n {
            match self.alloc_obj(frames, home) {
                // SAFETY: the object just left its slab; it is free memory
                // of this class, now owned by `chain`.
                Some(obj) => unsafe { chain.push(obj) },
                None => break,
            }
        }
    }

    /// Gives every object of `chain` back to its slab.
    pub fn release<M: FrameMemory + Copy>(
        &mut self,
        frames: &FrameAllocator<M>,
        chain: &mut Chain,
    ) {
        while let Some(obj) = chain.pop() {
            // SAFETY: objects in a chain of this class came from this
            // class's slabs and are unused.
            unsafe { self.free_obj(frames, obj) };
        }
    }

    /// Gives every magazine in the depot back to the slabs.
    pub fn release_depot<M: FrameMemory + Copy>(&mut self, frames: &FrameAllocator<M>) {
        while let Some(mut mag) = self.take_full() {
            self.release(frames, &mut mag);
        }
    }

    /// Takes one object from a slab with free objects, making a slab (with
    /// home `home`) if there is none.
    pub fn alloc_obj<M: FrameMemory + Copy>(
        &mut self,
        frames: &FrameAllocator<M>,
        home: usize,
    ) -> Option<*mut u8> {
        if self.partial.is_null() && !self.new_slab(frames, home) {
            return None;
        }
        let slab = self.partial;
        // SAFETY: slabs on the partial list are live slabs of this class
        // with a non-empty free list.
        unsafe {
            let obj = (*slab).free;
            (*slab).free = (*obj).next;
            if (*slab).in_use == 0 {
                self.empty -= 1;
            }
            (*slab).in_use += 1;
            if (*slab).free.is_null() {
                self.unlink(slab);
            }
            Some(obj.cast())
        }
    }

    /// Gives an object back to its slab; frees the slab when it empties.
    ///
    /// # Safety
    /// `obj` is an object of this class's slabs (see `slab_of`) that nobody
    /// uses any more and that is not already free.
    pub unsafe fn free_obj<M: FrameMemory + Copy>(
        &mut self,
        frames: &FrameAllocator<M>,
        obj: *mut u8,
    ) {
        let bytes = slab_bytes(self.class);
        let slab = ((obj as usize) & !(bytes - 1)) as *mut SlabHeader;
        // SAFETY: per the caller's promise, `slab` is the live slab that
        // holds `obj`, and `obj` is ours to overwrite.
        unsafe {
            let was_full = (*slab).free.is_null();
            let obj = obj.cast::<FreeObj>();
            (*obj).next = (*slab).free;
            (*slab).free = obj;
            (*slab).in_use -= 1;
            if was_full {
                self.link(slab);
            }
            if (*slab).in_use == 0 {
                if self.empty < KEEP_EMPTY {
                    self.empty += 1;
                } else {
                    self.unlink(slab);
                    self.free_slab(frames, slab);
                }
            }
        }
    }

    /// Gives every empty slab back to the frame allocator.
    pub fn release_empty<M: FrameMemory + Copy>(&mut self, frames: &FrameAllocator<M>) {
        let mut slab = self.partial;
        while !slab.is_null() {
            // SAFETY: slabs on the partial list are live slabs of this class.
            let (next, in_use) = unsafe { ((*slab).next, (*slab).in_use) };
            if in_use == 0 {
                self.unlink(slab);
                self.empty -= 1;
                // SAFETY: no object of it is in use and it is off the list.
                unsafe { self.free_slab(frames, slab) };
            }
            slab = next;
        }
    }

    /// # Safety
    /// `slab` is a live slab of this class, off the partial list, with no
    /// object in use.
    unsafe fn free_slab<M: FrameMemory + Copy>(
        &mut self,
        frames: &FrameAllocator<M>,
        slab: *mut SlabHeader,
    ) {
        // SAFETY: per the caller's promise the header is ours.
        let pfn = unsafe {
            (*slab).magic = 0;
            (*slab).pfn
        };
        self.slabs -= 1;
        // The slab came from `alloc_order` with this order, so the free
        // cannot be refused; if it were, the frame allocator would count it
        // in its rejected frees.
        let _ = frames.free_order(pfn, SLAB_ORDERS[self.class]);
    }

    fn new_slab<M: FrameMemory + Copy>(&mut self, frames: &FrameAllocator<M>, home: usize) -> bool {
        let Some(pfn) = frames.alloc_order(SLAB_ORDERS[self.class]) else {
            return false;
        };
        let base = frames.memory().frame_ptr(pfn);
        // A new slab is written whole once (Linux's init_on_alloc does the
        // same for every page): no stale data reaches an object, and under
        // QEMU's TCG the frame sheds any translated code it held as a user
        // page, without which every store to it would take TCG's slow
        // self-modifying-code path for as long as the slab lives.
        // SAFETY: the block is ours (just allocated) and `slab_bytes` long.
        unsafe { base.write_bytes(0, slab_bytes(self.class)) };
        let size = CLASS_SIZES[self.class];
        let first = first_object_offset(self.class);
        let mut free: *mut FreeObj = null_mut();
        for i in (0..slab_capacity(self.class)).rev() {
            let obj = base.wrapping_add(first + i * size).cast::<FreeObj>();
            // SAFETY: the block is ours (just allocated), `slab_bytes` long
            // and naturally aligned (FrameMemory contract); objects are
            // inside it and aligned to `size >= 16`.
            unsafe { (*obj).next = free };
            free = obj;
        }
        let slab = base.cast::<SlabHeader>();
        // SAFETY: the header fits before the first object of our block.
        unsafe {
            slab.write(SlabHeader {
                magic: SLAB_MAGIC,
                pfn,
                class: self.class,
                home,
                _read_mostly: [0; 4],
                in_use: 0,
                free,
                next: null_mut(),
                prev: null_mut(),
            });
        }
        self.link(slab);
        self.slabs += 1;
        self.empty += 1;
        true
    }

    fn link(&mut self, slab: *mut SlabHeader) {
        // SAFETY: `slab` is a live slab of this class not on the list; the
        // list head, if any, is a live slab too.
        unsafe {
            (*slab).prev = null_mut();
            (*slab).next = self.partial;
            if !self.partial.is_null() {
                (*self.partial).prev = slab;
            }
        }
        self.partial = slab;
    }

    fn unlink(&mut self, slab: *mut SlabHeader) {
        // SAFETY: `slab` is on the partial list, so its neighbours are live
        // slabs on it as well.
        unsafe {
            let (next, prev) = ((*slab).next, (*slab).prev);
            if prev.is_null() {
                self.partial = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
        }
    }
}
