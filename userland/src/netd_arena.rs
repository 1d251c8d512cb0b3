//! netd's state arena (docs/SERVERS.md "Replacing the network server"):
//! a global allocator that, once switched on, takes every allocation of
//! the process from the shared memory the kernel maps at a fixed address
//! into every netd instance, so a successor instance finds the running
//! one's heap (the `net` stack with its smoltcp sockets, TCP connections
//! and listeners, the handle table) at the same addresses and adopts it.
//!
//! Layout: a header page (magic, format version, the build's layout
//! fingerprint, the state word, the root pointer, the allocator's lock,
//! bump pointer and free lists), then the heap.  The allocator is a
//! power-of-two size-class allocator (16 B .. 64 MiB) whose whole state is
//! in the header, so it goes on in the successor exactly where it was.
//! Blocks are never returned to the bump pointer (no coalescing): the
//! arena is sized for netd's working set, not for fragmentation-free use.
//!
//! States: `EMPTY` (a fresh, zeroed arena) → `LIVE` (an instance serves
//! from it) → `HANDED_OVER` (the instance parked all its threads outside
//! every lock and published its root; it exits next) → `LIVE` (the
//! successor adopted it).
//!
//! Invariants: allocation before `switch_on` uses the process's own heap
//! (`System`), after it only the arena (never a fallback: a pointer into a
//! private heap would dangle in the successor), except inside `private`:
//! memory of this instance alone that nothing in the state may point to
//! (its threads' bookkeeping, its serving loops' buffers), which would
//! otherwise stay allocated in the arena after the instance exited, a
//! leak per replacement; a free (and a realloc) goes wherever the block's
//! address says.  The successor must be the same build (same code
//! and data layout: vtables and function pointers are stored in the
//! arena); the fingerprint is how it tells, and it refuses another one.
//!
//! Must not: allocate while holding the arena lock, or be switched on in
//! a process that may still have another instance touching the arena.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// `NETDAREN`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"NETDAREN");
/// The header's format version.
pub const VERSION: u32 = 1;

pub const EMPTY: u32 = 0;
pub const LIVE: u32 = 1;
pub const HANDED_OVER: u32 = 2;

const MIN_CLASS: usize = 4; // 16 bytes
const CLASSES: usize = 23; // up to 64 MiB
const HEADER_BYTES: usize = 4096;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    fingerprint: AtomicU64,
    root: AtomicUsize,
    lock: AtomicBool,
    bump: AtomicUsize,
    end: AtomicUsize,
    in_use: AtomicUsize,
    free: [AtomicUsize; CLASSES],
}

/// The arena's place in this process (0 until `map`).
static BASE: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
/// Whether new allocations go to the arena (per process).
static ON: AtomicBool = AtomicBool::new(false);

std::thread_local! {
    /// Depth of `private` scopes on this thread: allocations go to the
    /// process's own heap meanwhile (const-initialised, no destructor: the
    /// allocator may read it at any time without allocating).
    static PRIVATE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with this thread's allocations in the process's own heap, not
/// in the arena: for memory that belongs to this instance only and that
/// nothing in the state points to (a thread's bookkeeping when it is
/// spawned, a serving loop's receive buffer).  The arena then holds only
/// what a successor adopts, and a replacement leaks nothing there.  A
/// block made here is freed (or grown) in the heap it came from, whatever
/// scope that happens in.
pub fn private<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let _ = PRIVATE.try_with(|p| p.set(p.get().saturating_sub(1)));
        }
    }
    let _ = PRIVATE.try_with(|p| p.set(p.get() + 1));
    let _leave = Leave;
    f()
}

/// Whether this thread is in a `private` scope.
fn in_private() -> bool {
    PRIVATE.try_with(|p| p.get() != 0).unwrap_or(false)
}

/// Bytes of the arena in live blocks (size classes, rounded up).
pub fn in_use() -> usize {
    header().map_or(0, |h| h.in_use.load(Ordering::Relaxed))
}

fn header() -> Option<&'static Header> {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 {
        return None;
    }
    // SAFETY: `map` checked that the kernel mapped `LEN` >= a header page of
    // shared read-write memory at `base` for the process's lifetime; the
    // header is only accessed through atomics.
    Some(unsafe { &*(base as *const Header) })
}

/// Takes the arena the kernel mapped at `base` (`len` bytes) for this
/// process: `arena=BASE,LEN` of netd's argv, both hex.
pub fn map(arg: &str) -> Result<(), String> {
    let (b, l) = arg
        .split_once(',')
        .ok_or_else(|| format!("bad arena= argument {arg:?}"))?;
    let base = usize::from_str_radix(b, 16).map_err(|_| format!("bad arena base {b:?}"))?;
    let len = usize::from_str_radix(l, 16).map_err(|_| format!("bad arena length {l:?}"))?;
    if base == 0 || len < 2 * HEADER_BYTES || base % HEADER_BYTES != 0 {
        return Err(format!("arena {base:#x}+{len:#x} is not usable"));
    }
    LEN.store(len, Ordering::Release);
    BASE.store(base, Ordering::Release);
    Ok(())
}

/// The header's (magic, version, state, fingerprint).
pub fn describe() -> Option<(u64, u32, u32, u64)> {
    let h = header()?;
    Some((
        h.magic.load(Ordering::Acquire),
        h.version.load(Ordering::Acquire),
        h.state.load(Ordering::Acquire),
        h.fingerprint.load(Ordering::Acquire),
    ))
}

/// Whether a successor of this build (`fingerprint`) may adopt the arena:
/// `Err` says why not, for the log.
pub fn compatible(fingerprint: u64) -> Result<(), String> {
    let (magic, version, state, fp) = describe().ok_or("no arena mapped")?;
    if magic != MAGIC {
        return Err(format!("arena magic {magic:#x}, not {MAGIC:#x}"));
    }
    if version != VERSION {
        return Err(format!(
            "arena format version {version}, this build reads {VERSION}"
        ));
    }
    if fp != fingerprint {
        return Err(format!(
            "arena layout fingerprint {fp:#018x}, this build's is {fingerprint:#018x} (another build: its state cannot be adopted)"
        ));
    }
    if state != LIVE && state != HANDED_OVER {
        return Err(format!("arena state {state}: no instance's state in it"));
    }
    Ok(())
}

/// A fresh arena: writes the header and switches allocation to it.
pub fn init(fingerprint: u64) -> Result<(), String> {
    let h = header().ok_or("no arena mapped")?;
    if h.magic.load(Ordering::Acquire) != 0 {
        return Err("the arena is not fresh".into());
    }
    let base = BASE.load(Ordering::Acquire);
    h.bump.store(base + HEADER_BYTES, Ordering::Relaxed);
    h.end
        .store(base + LEN.load(Ordering::Acquire), Ordering::Relaxed);
    h.version.store(VERSION, Ordering::Relaxed);
    h.fingerprint.store(fingerprint, Ordering::Relaxed);
    h.state.store(LIVE, Ordering::Relaxed);
    h.magic.store(MAGIC, Ordering::Release);
    ON.store(true, Ordering::Release);
    Ok(())
}

fn hand_over(root: usize) {
    if let Some(h) = header() {
        h.root.store(root, Ordering::Relaxed);
        h.state.store(HANDED_OVER, Ordering::Release);
    }
}

/// The successor: takes the handed-over arena (allocation goes there from
/// now on) and returns the root pointer.
fn adopt(fingerprint: u64) -> Result<usize, String> {
    compatible(fingerprint)?;
    let h = header().ok_or("no arena mapped")?;
    if h.state.load(Ordering::Acquire) != HANDED_OVER {
        return Err("the running instance did not hand over".into());
    }
    let root = h.root.load(Ordering::Relaxed);
    if root == 0 {
        return Err("no root in the arena".into());
    }
    ON.store(true, Ordering::Release);
    h.state.store(LIVE, Ordering::Release);
    Ok(root)
}

/// Bytes of the arena handed out (bump pointer from the heap's start).
pub fn used() -> usize {
    header().map_or(0, |h| {
        h.bump.load(Ordering::Relaxed) - BASE.load(Ordering::Relaxed) - HEADER_BYTES
    })
}

fn class(layout: &Layout) -> Option<usize> {
    if layout.align() > 4096 {
        return None;
    }
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    let k = size.next_power_of_two().trailing_zeros() as usize - MIN_CLASS;
    (k < CLASSES).then_some(k)
}

fn in_arena(p: usize) -> bool {
    let base = BASE.load(Ordering::Relaxed);
    base != 0 && p >= base && p < base + LEN.load(Ordering::Relaxed)
}

fn lock(h: &Header) {
    let mut spins = 0u32;
    while h
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins > 64 {
            // SAFETY: sched_yield has no arguments and cannot fail harmfully.
            unsafe { libc::sched_yield() };
        } else {
            std::hint::spin_loop();
        }
    }
}

fn arena_alloc(h: &Header, layout: &Layout) -> *mut u8 {
    let Some(k) = class(layout) else {
        return std::ptr::null_mut();
    };
    let size = 1usize << (k + MIN_CLASS);
    lock(h);
    let head = h.free[k].load(Ordering::Relaxed);
    let p = if head != 0 {
        // SAFETY: `head` is a free block of this class in the arena; its
        // first word holds the next free block (written by `arena_free`).
        let next = unsafe { *(head as *const usize) };
        h.free[k].store(next, Ordering::Relaxed);
        head
    } else {
        let align = size.min(4096);
        let at = (h.bump.load(Ordering::Relaxed) + align - 1) & !(align - 1);
        if at + size > h.end.load(Ordering::Relaxed) {
            h.lock.store(false, Ordering::Release);
            return std::ptr::null_mut();
        }
        h.bump.store(at + size, Ordering::Relaxed);
        at
    };
    h.in_use.fetch_add(size, Ordering::Relaxed);
    h.lock.store(false, Ordering::Release);
    p as *mut u8
}

fn arena_free(h: &Header, p: *mut u8, layout: &Layout) {
    let Some(k) = class(layout) else { return };
    lock(h);
    // SAFETY: `p` is a block of class `k` this allocator handed out, no
    // longer used by its owner: its first word may hold the list link.
    unsafe { *(p as *mut usize) = h.free[k].load(Ordering::Relaxed) };
    h.free[k].store(p as usize, Ordering::Relaxed);
    h.in_use.fetch_sub(1 << (k + MIN_CLASS), Ordering::Relaxed);
    h.lock.store(false, Ordering::Release);
}

/// The process's global allocator (netd sets it with `#[global_allocator]`).
pub struct ArenaAlloc;

// SAFETY: every block handed out is at least `layout.size()` bytes aligned
// to `layout.align()` (class sizes are powers of two >= both, placed at
// multiples of min(size, 4096) >= align), owned by the caller until freed,
// and freed to the allocator its address belongs to.
unsafe impl GlobalAlloc for ArenaAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match header() {
            Some(h) if ON.load(Ordering::Acquire) && !in_private() => arena_alloc(h, &layout),
            // SAFETY: forwarded as received.
            _ => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match header() {
            Some(h) if in_arena(ptr as usize) => arena_free(h, ptr, &layout),
            // SAFETY: not an arena block: one of `System`'s.
            _ => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr as usize) {
            // A block of the process's own heap stays there (`private`).
            // SAFETY: `ptr` is one of `System`'s, allocated with `layout`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if ON.load(Ordering::Acquire) {
            // SAFETY: as the trait demands, `new_size` with `layout.align()`
            // is a valid layout.
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            if class(&new).is_some() && class(&new) == class(&layout) {
                return ptr;
            }
        }
        // SAFETY: as the trait demands, `new_size` with `layout.align()`
        // is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a valid, non-zero layout.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least min(old, new) bytes and
            // distinct; the old one is freed once copied.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// The running instance, quiesced: publishes `root` (kept alive by the
/// arena for the successor) and marks the arena handed over.  Nothing of
/// this process may touch the arena after.
pub fn hand_over_root<T>(root: std::sync::Arc<T>) {
    hand_over(std::sync::Arc::into_raw(root) as usize);
}

/// The successor: takes the handed-over arena and the root the running
/// instance published with `hand_over_root::<T>`.
pub fn adopt_root<T>(fingerprint: u64) -> Result<std::sync::Arc<T>, String> {
    let root = adopt(fingerprint)?;
    // SAFETY: the fingerprint matched, so the arena was written by this
    // very build, whose `hand_over_root::<T>` stored an `Arc<T>`'s raw
    // pointer (one strong count handed to us); the memory is mapped at the
    // same address here.
    Ok(unsafe { std::sync::Arc::from_raw(root as *const T) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test (the arena's place is process-global): header, refusal of
    /// another build, allocation, reuse, realloc, hand-over and adoption.
    #[test]
    fn arena_life_cycle() {
        const LEN: usize = 4 << 20;
        let layout = Layout::from_size_align(LEN, 4096).unwrap();
        // SAFETY: a non-zero layout; the block lives for the whole test
        // process (the arena is never unmapped).
        let base = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
        assert!(map("zz,1").is_err());
        map(&format!("{base:x},{LEN:x}")).unwrap();
        assert!(compatible(1).is_err(), "no header yet");
        init(0xfeed).unwrap();
        assert!(init(0xfeed).is_err(), "not fresh any more");
        assert!(compatible(0xfeed).is_ok());
        let why = compatible(0xbeef).unwrap_err();
        assert!(why.contains("fingerprint"), "{why}");

        let a = ArenaAlloc;
        let mut blocks = Vec::new();
        for (size, align) in [(1, 1), (24, 8), (100, 16), (4096, 4096), (70_000, 64)] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero layouts; freed below with the same layout.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            assert!(in_arena(p as usize) && (p as usize) % align == 0);
            // SAFETY: the block is `size` bytes, ours.
            unsafe { std::ptr::write_bytes(p, 0xab, size) };
            blocks.push((p, l));
        }
        let (p, l) = blocks[1];
        // SAFETY: `p` was allocated with `l`; the new size keeps the align.
        let q = unsafe { a.realloc(p, l, 5000) };
        // SAFETY: the first 24 bytes were copied over.
        assert_eq!(unsafe { *q.add(23) }, 0xab);
        blocks[1] = (q, Layout::from_size_align(5000, 8).unwrap());
        for &(p, l) in &blocks {
            // SAFETY: each block once, with its layout.
            unsafe { a.dealloc(p, l) };
        }
        // A freed block of the class comes back first.
        let l = Layout::from_size_align(100, 16).unwrap();
        // SAFETY: a non-zero layout.
        let again = unsafe { a.alloc(l) };
        assert_eq!(again, blocks[2].0);
        // Inside `private`: the process's own heap, also when it grows,
        // and freed there; the arena's live bytes do not change.
        let before = in_use();
        let l = Layout::from_size_align(300, 8).unwrap();
        // SAFETY: a non-zero layout; freed below with the layout it has.
        let p = private(|| unsafe { a.alloc(l) });
        assert!(!p.is_null() && !in_arena(p as usize));
        // SAFETY: the block is 300 bytes, ours.
        unsafe { std::ptr::write_bytes(p, 7, 300) };
        // Grown outside the scope: still the process's heap.
        // SAFETY: `p` was allocated with `l`; the new size keeps the align.
        let q = unsafe { a.realloc(p, l, 5300) };
        assert!(!q.is_null() && !in_arena(q as usize));
        // SAFETY: the first 300 bytes were copied over.
        assert_eq!(unsafe { *q.add(299) }, 7);
        // SAFETY: `q` with its current layout, once.
        unsafe { a.dealloc(q, Layout::from_size_align(5300, 8).unwrap()) };
        assert_eq!(in_use(), before);
        // SAFETY: a non-zero layout; freed at once with it.
        let w = unsafe { a.alloc(l) };
        assert!(in_arena(w as usize), "outside the scope: the arena");
        // SAFETY: as above.
        unsafe { a.dealloc(w, l) };
        assert_eq!(in_use(), before);

        // Too big for any class: null, never a fallback to the private heap.
        let huge = Layout::from_size_align(128 << 20, 8).unwrap();
        // SAFETY: a valid layout; null is the expected answer.
        assert!(unsafe { a.alloc(huge) }.is_null());

        let root = std::sync::Arc::new(41u64);
        let copy = root.clone();
        hand_over_root(root);
        assert_eq!(describe().unwrap().2, HANDED_OVER);
        assert!(adopt_root::<u64>(0xbeef).is_err(), "another build refused");
        let adopted = adopt_root::<u64>(0xfeed).unwrap();
        assert!(std::sync::Arc::ptr_eq(&adopted, &copy));
        assert_eq!(describe().unwrap().2, LIVE);
        ON.store(false, Ordering::Release);
    }
}
