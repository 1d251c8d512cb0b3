//! The entries of one directory hash bucket: a sorted, singly linked list
//! that readers walk without a lock (RCU + a seqlock) and writers change
//! under the bucket lock.
//!
//! Owns `Entry`, `Bucket`, `BucketGuard` and `Unlinked`: all the raw-pointer
//! code of the `fs` crate (the crate denies `unsafe_code`; this module alone
//! is allowed it).  Invariants: an entry is reachable from a bucket only
//! after a release store of its link, is immutable but for `next`, and is
//! freed only through RCU after it was unlinked (`Unlinked`, `retire_all`).
//! Must not: free an entry directly, or hand out a reference that outlives
//! the read section or the writer lock it was found under.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

use super::{Body, Inode};
use crate::lockstat::{LockClass, Mutex};
use crate::rcu::ReadGuard;
use crate::vfs::Shared;

/// One directory entry.  Immutable once published except for `next`; it
/// holds a strong reference to its inode until it is freed, which happens
/// only after an RCU grace period (`rcu`) once it was unlinked.
///
/// One cache line of its own, with a short name inside it: path walks on
/// every CPU read the entries of shared directories (and compare their
/// names), so an entry must not share a line with objects another CPU
/// allocates and writes next to it (create_unlink_private at 8 vCPUs: new
/// entries and names written beside the `pW` entries every worker reads).
#[repr(align(64))]
pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) inode: Arc<Inode>,
    next: AtomicPtr<Entry>,
}

/// Bytes of a name kept inside its `Entry`.
const INLINE_NAME: usize = 46;

/// An entry's name: inline when short, else on the heap.
pub(crate) enum Name {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

impl From<&str> for Name {
    fn from(name: &str) -> Name {
        if name.len() <= INLINE_NAME {
            let mut bytes = [0; INLINE_NAME];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            Name::Inline {
                len: name.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(name.into())
        }
    }
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            // SAFETY: the bytes were copied from a `str`, cut at its length.
            Name::Inline { len, bytes } => unsafe {
                core::str::from_utf8_unchecked(&bytes[..*len as usize])
            },
            Name::Heap(name) => name,
        }
    }
}

/// One hash bucket: a singly linked list of entries sorted by name.
///
/// Writers hold `lock`, bump `seq` to odd, make their one pointer store,
/// and bump `seq` back to even.  Readers (`Dir::lookup`) take no lock:
/// inside an RCU read section they read `seq`, walk the list with acquire
/// loads, and retry if `seq` was odd or changed, so each lookup answers
/// for one instant of the bucket.  Every entry a reader can reach stays
/// allocated until its section ends (entries are freed only after a grace
/// period), and a reader reads only immutable fields and atomic links, so
/// a concurrent writer never makes it read freed or torn memory.
pub(crate) struct Bucket {
    lock: Mutex<()>,
    seq: AtomicU64,
    head: AtomicPtr<Entry>,
}

impl Bucket {
    pub(super) fn new() -> Bucket {
        Bucket {
            lock: Mutex::new(LockClass::DirBucket, ()),
            seq: AtomicU64::new(0),
            head: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// Takes the bucket's writer lock.
    pub(crate) fn write(&self, shared: &'static Shared) -> BucketGuard<'_> {
        BucketGuard {
            bucket: self,
            shared,
            _lock: self.lock.lock(),
        }
    }

    /// One attempt at the writer lock.
    pub(crate) fn try_write(&self, shared: &'static Shared) -> Option<BucketGuard<'_>> {
        Some(BucketGuard {
            bucket: self,
            shared,
            _lock: self.lock.try_lock()?,
        })
    }

    /// Lock-free lookup inside the read section `_rcu`: the entry's inode
    /// stays valid as long as the section.
    pub(super) fn lookup<'g>(&self, _rcu: &'g ReadGuard<'_>, name: &str) -> Option<&'g Arc<Inode>> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let mut found: *const Entry = core::ptr::null();
            let mut cur = self.head.load(Ordering::Acquire);
            while !cur.is_null() {
                // SAFETY: `cur` was published (release store of a link)
                // and is freed only after a grace period that waits for
                // `_rcu`; its name and inode never change.
                let e = unsafe { &*cur };
                match (*e.name).cmp(name) {
                    core::cmp::Ordering::Less => cur = e.next.load(Ordering::Acquire),
                    core::cmp::Ordering::Equal => {
                        found = cur;
                        break;
                    }
                    core::cmp::Ordering::Greater => break,
                }
            }
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            // SAFETY: as above, `found` outlives the read section `'g`.
            return unsafe { found.as_ref() }.map(|e| &e.inode);
        }
    }
}

/// A bucket's writer lock and the mutations made under it.
pub(crate) struct BucketGuard<'a> {
    bucket: &'a Bucket,
    shared: &'static Shared,
    _lock: crate::lockstat::Pinned<spin::MutexGuard<'a, ()>>,
}

/// An entry unlinked from its bucket: its inode can still be read; when
/// dropped, the entry is handed to RCU and freed after a grace period.
/// Drop it after releasing bucket locks (a grace period may run then).
pub(crate) struct Unlinked {
    entry: Option<Box<Entry>>,
    shared: &'static Shared,
}

impl Unlinked {
    pub(crate) fn inode(&self) -> &Arc<Inode> {
        &self.entry.as_ref().expect("entry until dropped").inode
    }
}

impl Drop for Unlinked {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            // Weighted by the pages it may keep alive, so unlinked files'
            // data comes back within a bounded amount (and at once when
            // tmpfs runs out of pages: `Shared::alloc_zeroed_page`).
            let weight = match &e.inode.body {
                Body::File(f) => {
                    let f = f.read();
                    f.pages.len() + f.retired.len()
                }
                _ => 0,
            };
            self.shared.rcu.retire(e, weight);
        }
    }
}

impl BucketGuard<'_> {
    /// The link that points at the first entry whose name is not below
    /// `name`, and that entry (null at the end).
    fn find(&self, name: &str) -> (&AtomicPtr<Entry>, *mut Entry) {
        let mut link = &self.bucket.head;
        loop {
            let cur = link.load(Ordering::Acquire);
            if cur.is_null() {
                return (link, cur);
            }
            // SAFETY: entries reachable under the writer lock are live (only
            // lock holders unlink, and freeing waits a grace period).
            let e = unsafe { &*cur };
            if *e.name >= *name {
                return (link, cur);
            }
            link = &e.next;
        }
    }

    /// Publishes `to` in `link` as one seqlock-protected store.
    fn publish(&self, link: &AtomicPtr<Entry>, to: *mut Entry) {
        let s = self.bucket.seq.load(Ordering::Relaxed);
        self.bucket.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        link.store(to, Ordering::Release);
        self.bucket.seq.store(s + 2, Ordering::Release);
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Inode>> {
        let (_, cur) = self.find(name);
        // SAFETY: as in `find`; the entry lives while we hold the lock.
        let e = unsafe { cur.as_ref() }?;
        (*e.name == *name).then_some(&e.inode)
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bucket.head.load(Ordering::Acquire).is_null()
    }

    /// Adds `name -> inode`, replacing an entry of that name (returned).
    pub(crate) fn insert(&mut self, name: &str, inode: Arc<Inode>) -> Option<Unlinked> {
        let (link, cur) = self.find(name);
        // SAFETY: as in `find`.
        let replaced = unsafe { cur.as_ref() }.is_some_and(|e| *e.name == *name);
        let next = if replaced {
            // SAFETY: as in `find`.
            unsafe { &*cur }.next.load(Ordering::Acquire)
        } else {
            cur
        };
        let fresh = Box::into_raw(Box::new(Entry {
            name: name.into(),
            inode,
            next: AtomicPtr::new(next),
        }));
        self.publish(link, fresh);
        replaced.then(|| Unlinked {
            // SAFETY: `cur` came from `Box::into_raw` and is now unlinked;
            // readers may still see it, which `Unlinked` defers freeing for.
            entry: Some(unsafe { Box::from_raw(cur) }),
            shared: self.shared,
        })
    }

    /// Unlinks the entry `name`.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Unlinked> {
        let (link, cur) = self.find(name);
        // SAFETY: as in `find`.
        let e = unsafe { cur.as_ref() }?;
        if *e.name != *name {
            return None;
        }
        self.publish(link, e.next.load(Ordering::Acquire));
        Some(Unlinked {
            // SAFETY: as in `insert`.
            entry: Some(unsafe { Box::from_raw(cur) }),
            shared: self.shared,
        })
    }

    /// Entries in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        let mut cur = self.bucket.head.load(Ordering::Acquire);
        core::iter::from_fn(move || {
            // SAFETY: as in `find`.
            let e = unsafe { cur.as_ref() }?;
            cur = e.next.load(Ordering::Acquire);
            Some(e)
        })
    }
}

impl Bucket {
    /// Unlinks every entry of a directory being dropped and hands them to
    /// RCU (readers may still be walking them).
    pub(super) fn retire_all(&self, shared: &'static Shared) {
        let mut cur = self.head.swap(core::ptr::null_mut(), Ordering::AcqRel);
        while !cur.is_null() {
            // SAFETY: each entry came from `Box::into_raw` and is now
            // unreachable; RCU frees it after a grace period.
            let e = unsafe { Box::from_raw(cur) };
            cur = e.next.load(Ordering::Acquire);
            shared.rcu.retire(e, 0);
        }
    }
}

/// The root of the file system mounted on a directory: one detached
/// `Entry` (name unused), published with a release store, read without a
/// lock inside RCU read sections, and retired through RCU at umount, so a
/// reader may use the root for its section without taking a count.
pub(crate) struct MountSlot(AtomicPtr<Entry>);

impl MountSlot {
    pub(crate) fn new() -> MountSlot {
        MountSlot(AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Whether nothing is mounted here.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.load(Ordering::Acquire).is_null()
    }

    /// The root mounted here, borrowed for the read section `_rcu`.
    pub(crate) fn get<'g>(&self, _rcu: &'g ReadGuard<'_>) -> Option<&'g Arc<Inode>> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: a published mount entry is freed only after a grace
        // period that waits for `_rcu` (`retire` hands it to RCU).
        unsafe { p.as_ref() }.map(|e| &e.inode)
    }

    /// Publishes `root`.  The caller holds the mount-table lock and saw
    /// the slot empty.
    pub(crate) fn publish(&self, root: Arc<Inode>) {
        let entry = Box::into_raw(Box::new(Entry {
            name: "".into(),
            inode: root,
            next: AtomicPtr::new(core::ptr::null_mut()),
        }));
        self.0.store(entry, Ordering::Release);
    }

    /// Unpublishes the mounted root and hands its entry to RCU.
    pub(crate) fn retire(&self, shared: &'static Shared) {
        let entry = self.0.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !entry.is_null() {
            // SAFETY: `entry` came from `Box::into_raw` in `publish` and is
            // unpublished now; RCU frees it after readers are done.
            let e = unsafe { Box::from_raw(entry) };
            shared.rcu.retire(e, 0);
        }
    }
}
