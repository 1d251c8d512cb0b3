//! Magazines: bounded chains of free objects, and the per-CPU pair of them
//! (Bonwick's "loaded" and "previous"); outboxes: chains of objects freed
//! on one CPU for another (their slabs' home), sent there whole.
//!
//! A magazine here is intrusive: the free objects themselves are linked
//! through their first word, so an empty magazine costs nothing and no
//! memory is needed to hold magazines.  In the depot, a magazine's first
//! object also stores the link to the next magazine (second word); depot
//! magazines are always full, so their length is known.
//!
//! Invariants: every object in a chain is a free object of one size class;
//! `count` is the chain's length.  In a CPU's cache, `prev` is either empty
//! or full (Bonwick's invariant), which bounds depot traffic to one full
//! magazine per `rounds` operations.
//!
//! An outbox's objects all belong to slabs of its `home`; it also keeps
//! its tail, so that a whole outbox is pushed onto the home's inbox (a
//! stack linked through `next`) with one compare-and-swap.
//!
//! Must not: lock, or follow a link of an object it does not own.

use core::ptr::null_mut;

/// The words a free object lends to the allocator (16 bytes: the
/// smallest class).  `next` links objects within a chain; `next_mag` is
/// used only in the first object of a full magazine parked in the depot.
#[repr(C)]
pub struct FreeObj {
    pub next: *mut FreeObj,
    pub next_mag: *mut FreeObj,
}

/// A chain of free objects (a magazine's rounds).
pub struct Chain {
    head: *mut FreeObj,
    count: usize,
}

impl Chain {
    pub const fn new() -> Self {
        Chain {
            head: null_mut(),
            count: 0,
        }
    }

    pub fn from_raw(head: *mut FreeObj, count: usize) -> Self {
        Chain { head, count }
    }

    pub fn into_raw(self) -> (*mut FreeObj, usize) {
        (self.head, self.count)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a free object.
    ///
    /// # Safety
    /// `obj` is a free, unused object of this chain's class, at least
    /// `size_of::<FreeObj>()` bytes, aligned for it; the chain owns it now.
    pub unsafe fn push(&mut self, obj: *mut u8) {
        let obj = obj.cast::<FreeObj>();
        // SAFETY: per the caller's promise the object is ours to write.
        unsafe { (*obj).next = self.head };
        self.head = obj;
        self.count += 1;
    }

    /// Takes a free object.
    pub fn pop(&mut self) -> Option<*mut u8> {
        if self.head.is_null() {
            return None;
        }
        let obj = self.head;
        // SAFETY: objects in the chain are owned by it and were written by
        // `push`.
        self.head = unsafe { (*obj).next };
        self.count -= 1;
        Some(obj.cast())
    }
}

/// Objects freed on this CPU whose slabs belong to CPU `home`.
pub struct Outbox {
    home: usize,
    head: *mut FreeObj,
    tail: *mut FreeObj,
    count: usize,
}

impl Outbox {
    pub const fn new() -> Self {
        Outbox {
            home: 0,
            head: null_mut(),
            tail: null_mut(),
            count: 0,
        }
    }

    /// The CPU whose objects this outbox gathers.
    pub fn home(&self) -> usize {
        self.home
    }

    /// Gathers objects of `home` from now on; only when empty.
    pub fn set_home(&mut self, home: usize) {
        debug_assert_eq!(self.count, 0);
        self.home = home;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds a freed object of `home`'s slabs.
    ///
    /// # Safety
    /// As `Chain::push`.
    pub unsafe fn push(&mut self, obj: *mut u8) {
        let obj = obj.cast::<FreeObj>();
        // SAFETY: per the caller's promise the object is ours to write.
        unsafe { (*obj).next = self.head };
        if self.head.is_null() {
            self.tail = obj;
        }
        self.head = obj;
        self.count += 1;
    }

    /// Takes the chain out (head, tail), leaving the outbox empty.
    pub fn take(&mut self) -> Option<(*mut FreeObj, *mut FreeObj)> {
        if self.count == 0 {
            return None;
        }
        let out = (self.head, self.tail);
        self.head = null_mut();
        self.tail = null_mut();
        self.count = 0;
        Some(out)
    }
}
