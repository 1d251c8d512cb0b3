//! `FrameAllocator`: per-CPU block lists over the global buddy allocator,
//! in the style of Linux `per_cpu_pages`, with remote frees sent home in
//! batches (snmalloc / mimalloc style).
//!
//! Owns: the buddy allocator (behind its one lock); per CPU, one list of
//! free blocks for each order `0..=PCP_MAX_ORDER` and one *outbox* (blocks
//! freed on this CPU whose home is another CPU, all for one home), behind a
//! per-CPU lock that only its own CPU takes on the common path (on the
//! host, threads sharing a CPU id may meet there); per CPU, one *inbox*: a
//! lock-free stack that other CPUs push whole batches onto.
//!
//! Home: the buddy records, when it hands a block out, the CPU it went to
//! (`BuddyAllocator::alloc_on`); a per-CPU list keeps its blocks' home.
//! A block freed on its home CPU goes on that CPU's list (past the `high`
//! watermark, `batch` frames go back to the buddy); a block freed
//! elsewhere goes into the freeing CPU's outbox, which is sent to its home's
//! inbox with one compare-and-swap once it holds `batch` frames, or at once
//! when a block for another home arrives.  A CPU takes its whole inbox
//! (one swap) when the list it allocates from is empty, before going to
//! the buddy; the frames it gets are ones it wrote last, so the memory's
//! cache lines stay with one CPU instead of following the free.
//!
//! Nothing is stranded: when the buddy runs dry (an allocation of any
//! order), `drain_all` empties every list, outbox and inbox into the buddy
//! and the allocation is retried once, so parked or in-flight frames never
//! make memory look exhausted; `drain_all` is also what the kernel's
//! `flush_caches` calls.  A CPU that stops allocating thus loses its inbox
//! to the first CPU that runs short, and a CPU that stops freeing its
//! partial outbox likewise.
//!
//! Invariants: a block on a per-CPU list, in an outbox or in an inbox is
//! allocated (with its order) as far as the buddy knows; `free_frames()` =
//! buddy free + every list, outbox and inbox, exact when no alloc/free runs
//! concurrently.  In `LockMode::Global` lists, outboxes and inboxes stay
//! empty and every alloc/free takes the buddy lock.
//!
//! Every lock here is taken under a `CpuGuard` (interrupts off in the
//! kernel), so an interrupt handler that allocates cannot deadlock on a
//! lock its own CPU holds.  Lock order: per-CPU list -> buddy; inboxes
//! take no lock.
//!
//! Must not: take the buddy lock on the common path (order <=
//! `PCP_MAX_ORDER`) in `PerCpu` mode, or write a cache line shared with
//! another CPU there, except the home's inbox once per batch of remote
//! frees.

use core::fmt;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use percpu::{per_cpu, CachePadded, CpuGuard, PerCpu, PerCpuCounter, MAX_CPUS};
use spin::Mutex;

use crate::buddy::{
    meta_base, read_meta, BlockMeta, BuddyAllocator, FreeError, RegionError, MAX_REGIONS,
};
use crate::{FrameMemory, LockMode, Pfn};

const NIL: u64 = u64::MAX;

/// Default refill/drain batch (frames).
pub const DEFAULT_BATCH: usize = 32;
/// Default high watermark of a per-CPU list (frames, per order).
pub const DEFAULT_HIGH: usize = 128;
/// Largest order kept on per-CPU lists (64 KiB blocks: the heap's slabs
/// and its large buffers up to a socket's 64 KiB writes); larger blocks
/// always come from, and go back to, the buddy.
pub const PCP_MAX_ORDER: usize = 4;
const PCP_ORDERS: usize = PCP_MAX_ORDER + 1;

/// The lock mode can only be chosen before memory is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeError;

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lock mode must be chosen before any memory region is added")
    }
}

/// Counters for explaining scaling (read with `FrameAllocator::stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Times the buddy lock was taken.
    pub buddy_locks: i64,
    /// Of those, times it was held by another CPU at first try.
    pub buddy_contended: i64,
    /// Allocations (order <= `PCP_MAX_ORDER`) served by a per-CPU list.
    pub pcp_allocs: i64,
    /// Blocks freed on a CPU other than their home (put in an outbox).
    pub remote_frees: i64,
    /// Outboxes sent to a home's inbox (one atomic push each).
    pub remote_batches: i64,
    /// Frees refused (bad frame number, order or alignment, a block the
    /// buddy does not count as handed out, or one rejected by the buddy
    /// when a list was drained; such a block is lost and counted here).
    pub rejected_frees: usize,
}

/// Intrusive singly linked list of free blocks of one order; the next link
/// is stored in the first 8 bytes of each block.
struct PageList {
    head: u64,
    count: usize,
}

impl PageList {
    const fn new() -> Self {
        PageList {
            head: NIL,
            count: 0,
        }
    }

    fn push(&mut self, mem: &impl FrameMemory, pfn: Pfn) {
        // SAFETY: `pfn` is a free block owned by this list from now on;
        // its first 8 bytes (aligned: frames are page aligned) hold the link.
        unsafe { mem.frame_ptr(pfn).cast::<u64>().write(self.head) };
        self.head = pfn as u64;
        self.count += 1;
    }

    fn pop(&mut self, mem: &impl FrameMemory) -> Option<Pfn> {
        if self.head == NIL {
            return None;
        }
        let pfn = self.head as Pfn;
        // SAFETY: `pfn` is on this list, so its first 8 bytes are our link.
        self.head = unsafe { mem.frame_ptr(pfn).cast::<u64>().read() };
        self.count -= 1;
        Some(pfn)
    }
}

/// Header of a block in an outbox or inbox: the link, then the order.
#[repr(C)]
struct SentBlock {
    next: u64,
    order: u64,
}

fn sent(mem: &impl FrameMemory, pfn: Pfn) -> *mut SentBlock {
    mem.frame_ptr(pfn).cast()
}

/// Blocks freed on this CPU for one other home CPU, not yet sent.
struct Outbox {
    home: usize,
    head: u64,
    tail: u64,
    frames: usize,
}

impl Outbox {
    const fn new() -> Self {
        Outbox {
            home: 0,
            head: NIL,
            tail: NIL,
            frames: 0,
        }
    }

    fn push(&mut self, mem: &impl FrameMemory, pfn: Pfn, order: usize) {
        // SAFETY: the block was freed by its owner and is ours until sent;
        // its first 16 bytes hold the link and order.
        unsafe {
            sent(mem, pfn).write(SentBlock {
                next: self.head,
                order: order as u64,
            })
        };
        if self.head == NIL {
            self.tail = pfn as u64;
        }
        self.head = pfn as u64;
        self.frames += 1 << order;
    }

    /// Takes the chain out: (head, tail, frames).
    fn take(&mut self) -> Option<(u64, u64, usize)> {
        if self.head == NIL {
            return None;
        }
        let out = (self.head, self.tail, self.frames);
        *self = Outbox::new();
        Some(out)
    }
}

/// A CPU's private state: its lists and its outbox.
struct CpuFrames {
    lists: [PageList; PCP_ORDERS],
    out: Outbox,
}

/// Where other CPUs return this CPU's blocks.
///
/// Shared state on the free path, and it cannot be per-CPU: it is the one
/// place where CPU A hands memory to CPU B.  A slot per (source, home) pair
/// would cost `MAX_CPUS`² lines and a home would scan them all; one stack
/// per home costs its line once per *batch* of remote frees (one
/// compare-and-swap by the sender, one swap by the home when it runs dry).
struct Inbox {
    head: AtomicU64,
    /// Frames in the stack (for `free_frames`; updated after the push and
    /// after the take, so exact only when nothing runs concurrently).
    frames: AtomicUsize,
}

/// The regions added so far, readable without the buddy lock (appended
/// under it by `add_region`, never changed afterwards): first and one past
/// the last managed frame, and where their metadata starts (`meta_base`).
struct RegionTable {
    count: AtomicUsize,
    bounds: [[AtomicUsize; 2]; MAX_REGIONS],
    meta: [AtomicPtr<u8>; MAX_REGIONS],
}

/// Blocks up to `PCP_MAX_ORDER` from per-CPU lists, larger ones from the
/// buddy.
pub struct FrameAllocator<M> {
    mem: M,
    /// On its own cache line(s): every refill/drain writes the lock word,
    /// which must not invalidate the read-mostly fields below (`mode`,
    /// `regions`, `total`) that every allocation reads.
    buddy: CachePadded<Mutex<BuddyAllocator<M>>>,
    pcp: PerCpu<Mutex<CpuFrames>>,
    inbox: PerCpu<Inbox>,
    mode: AtomicU8,
    batch: usize,
    high: usize,
    /// Read on every free (home and state of the block); written only by
    /// `add_region`.
    regions: CachePadded<RegionTable>,
    /// Frames managed, as the buddy counts them (written only by
    /// `add_region`, under the buddy lock): `total_frames` reads it without
    /// the buddy lock, so mmap's overcommit check shares no written line.
    total: AtomicUsize,
    buddy_locks: PerCpuCounter,
    buddy_contended: PerCpuCounter,
    pcp_allocs: PerCpuCounter,
    remote_frees: PerCpuCounter,
    remote_batches: PerCpuCounter,
    rejected_frees: AtomicUsize,
}

const MODE_PERCPU: u8 = 0;
const MODE_GLOBAL: u8 = 1;

impl<M: FrameMemory + Copy> FrameAllocator<M> {
    /// An allocator with no memory, `PerCpu` mode, default batch and high.
    pub const fn new(mem: M) -> Self {
        Self::with_params(mem, DEFAULT_BATCH, DEFAULT_HIGH)
    }

    /// As `new`, with the per-CPU lists' refill/drain `batch` and `high`
    /// watermark in frames (`batch` at least 1, `high` at least `batch`);
    /// `batch` is also how many frames an outbox gathers before it is sent.
    pub const fn with_params(mem: M, batch: usize, high: usize) -> Self {
        let batch = if batch == 0 { 1 } else { batch };
        let high = if high < batch { batch } else { high };
        FrameAllocator {
            mem,
            buddy: CachePadded::new(Mutex::new(BuddyAllocator::new(mem))),
            pcp: per_cpu!(Mutex::new(CpuFrames {
                lists: [const { PageList::new() }; PCP_ORDERS],
                out: Outbox::new(),
            })),
            inbox: per_cpu!(Inbox {
                head: AtomicU64::new(NIL),
                frames: AtomicUsize::new(0),
            }),
            mode: AtomicU8::new(MODE_PERCPU),
            batch,
            high,
            regions: CachePadded::new(RegionTable {
                count: AtomicUsize::new(0),
                bounds: [const { [const { AtomicUsize::new(0) }; 2] }; MAX_REGIONS],
                meta: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_REGIONS],
            }),
            total: AtomicUsize::new(0),
            buddy_locks: PerCpuCounter::new(),
            buddy_contended: PerCpuCounter::new(),
            pcp_allocs: PerCpuCounter::new(),
            remote_frees: PerCpuCounter::new(),
            remote_batches: PerCpuCounter::new(),
            rejected_frees: AtomicUsize::new(0),
        }
    }

    /// Chooses the lock mode; only before the first `add_region`.
    pub fn set_mode(&self, mode: LockMode) -> Result<(), ModeError> {
        let _pin = CpuGuard::new();
        let buddy = self.buddy.lock();
        if buddy.total_frames() != 0 {
            return Err(ModeError);
        }
        let raw = match mode {
            LockMode::PerCpu => MODE_PERCPU,
            LockMode::Global => MODE_GLOBAL,
        };
        self.mode.store(raw, Ordering::Relaxed);
        Ok(())
    }

    /// The lock mode in force.
    pub fn mode(&self) -> LockMode {
        match self.mode.load(Ordering::Relaxed) {
            MODE_GLOBAL => LockMode::Global,
            _ => LockMode::PerCpu,
        }
    }

    /// The frame memory frames are reached through.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Adds frames `start..start + count` (see `BuddyAllocator::add_region`).
    pub fn add_region(&self, start: Pfn, count: usize) -> Result<usize, RegionError> {
        let _pin = CpuGuard::new();
        let mut buddy = self.lock_buddy();
        let added = buddy.add_region(start, count)?;
        self.total.store(buddy.total_frames(), Ordering::Release);
        // Find the new region among the buddy's (sorted) ones and append
        // its bounds to our table.
        let table = &self.regions;
        let n = table.count.load(Ordering::Relaxed);
        let new = (0..buddy.region_count())
            .map(|i| buddy.region_bounds(i))
            .find(|&(_, end, meta)| meta == start && end == start + count);
        if let Some((s, e, m)) = new {
            table.bounds[n][0].store(s, Ordering::Relaxed);
            table.bounds[n][1].store(e, Ordering::Relaxed);
            table.meta[n].store(meta_base(&self.mem, s, m), Ordering::Relaxed);
            table.count.store(n + 1, Ordering::Release);
        }
        drop(buddy);
        Ok(added)
    }

    /// Metadata of the block at `pfn`, if it is a managed frame.
    #[inline]
    fn meta(&self, pfn: Pfn) -> Option<BlockMeta> {
        let table = &self.regions;
        let n = table.count.load(Ordering::Acquire);
        // Newest first: the kernel adds its largest region last.
        for i in (0..n).rev() {
            let [start, end] = &table.bounds[i];
            let start = start.load(Ordering::Relaxed);
            if pfn >= start && pfn < end.load(Ordering::Relaxed) {
                let base = table.meta[i].load(Ordering::Relaxed);
                // SAFETY: `base` is region i's metadata, and `pfn` is in it.
                return Some(unsafe { read_meta(base, pfn - start) });
            }
        }
        None
    }

    /// Allocates one frame.  When the buddy is empty, frames parked on
    /// other CPUs' lists, outboxes and inboxes are drained back and the
    /// allocation retried once, so memory is never reported exhausted while
    /// some CPU holds frames.
    pub fn alloc(&self) -> Option<Pfn> {
        self.alloc_block(0)
    }

    /// Takes a block of `order` from this CPU's list, refilling the list
    /// first from the CPU's inbox, else from the buddy.
    #[inline(always)]
    fn alloc_local(&self, guard: &CpuGuard, order: usize) -> Option<Pfn> {
        let mut me = self.pcp.get(guard).lock();
        if me.lists[order].count == 0 {
            self.take_inbox(guard, &mut me);
        }
        if me.lists[order].count == 0 {
            let mut buddy = self.lock_buddy_local(guard);
            let list = &mut me.lists[order];
            for _ in 0..(self.batch >> order).max(1) {
                // `MAX_CPUS` (64) fits a byte.
                match buddy.alloc_on(order, guard.cpu() as u8) {
                    Some(pfn) => list.push(&self.mem, pfn),
                    None => break,
                }
            }
        }
        let pfn = me.lists[order].pop(&self.mem)?;
        self.pcp_allocs.add_local(guard, 1);
        Some(pfn)
    }

    /// Moves every block other CPUs sent to this one onto its lists,
    /// giving what passes the `high` watermark back to the buddy.
    fn take_inbox(&self, guard: &CpuGuard, me: &mut CpuFrames) {
        let inbox = self.inbox.get(guard);
        if inbox.head.load(Ordering::Relaxed) == NIL {
            return;
        }
        let mut pfn = inbox.head.swap(NIL, Ordering::Acquire);
        let mut frames = 0;
        while pfn != NIL {
            // SAFETY: blocks in the stack were pushed whole by `send`
            // (Release), and we took the stack (Acquire): they are ours.
            let SentBlock { next, order } = unsafe { sent(&self.mem, pfn as Pfn).read() };
            let order = order as usize;
            me.lists[order].push(&self.mem, pfn as Pfn);
            frames += 1 << order;
            pfn = next;
        }
        inbox.frames.fetch_sub(frames, Ordering::Relaxed);
        for order in 0..PCP_ORDERS {
            self.trim(guard, &mut me.lists[order], order);
        }
    }

    /// Frees one frame from `alloc` (or `alloc_order(0)`).
    ///
    /// In `PerCpu` mode the frame must be managed and, as far as the buddy
    /// knows, handed out; a double free of a frame still parked on a
    /// per-CPU list is caught only when the list is drained to the buddy
    /// (then it is dropped and counted in `FrameStats::rejected_frees`).
    pub fn free(&self, pfn: Pfn) -> Result<(), FreeError> {
        self.free_block(pfn, 0)
    }

    /// Puts a block freed on this CPU where it belongs: this CPU's list if
    /// this is its home, else the outbox (sent home when full).
    #[inline(always)]
    fn free_local(&self, guard: &CpuGuard, pfn: Pfn, order: usize, home: usize) {
        let cpu = guard.cpu();
        let mut me = self.pcp.get(guard).lock();
        if home == cpu || home >= MAX_CPUS {
            let list = &mut me.lists[order];
            list.push(&self.mem, pfn);
            self.trim(guard, list, order);
            return;
        }
        self.remote_frees.add_local(guard, 1);
        if me.out.home != home {
            if let Some(chain) = me.out.take() {
                self.send(guard, me.out.home, chain);
            }
            me.out.home = home;
        }
        me.out.push(&self.mem, pfn, order);
        if me.out.frames >= self.batch {
            let chain = me.out.take();
            if let Some(chain) = chain {
                self.send(guard, home, chain);
            }
        }
    }

    /// Pushes a chain of blocks onto `home`'s inbox: one compare-and-swap.
    fn send(&self, guard: &CpuGuard, home: usize, (head, tail, frames): (u64, u64, usize)) {
        let inbox = self.inbox.remote(home);
        let mut old = inbox.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is ours until the swap publishes it; the
            // tail's link is its first word.
            unsafe { (*sent(&self.mem, tail as Pfn)).next = old };
            match inbox
                .head
                .compare_exchange_weak(old, head, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        inbox.frames.fetch_add(frames, Ordering::Relaxed);
        self.remote_batches.add_local(guard, 1);
    }

    /// Gives `batch` frames of `list` back to the buddy if it holds more
    /// than `high` frames.
    #[inline(always)]
    fn trim(&self, guard: &CpuGuard, list: &mut PageList, order: usize) {
        if list.count << order > self.high {
            self.trim_slow(guard, list, order);
        }
    }

    #[cold]
    fn trim_slow(&self, guard: &CpuGuard, list: &mut PageList, order: usize) {
        let mut buddy = self.lock_buddy_local(guard);
        for _ in 0..(self.batch >> order).max(1) {
            let Some(pfn) = list.pop(&self.mem) else {
                break;
            };
            if buddy.free(pfn, order).is_err() {
                self.reject();
            }
        }
    }

    /// Allocates `1 << order` contiguous, naturally aligned frames; orders
    /// up to `PCP_MAX_ORDER` use the per-CPU lists.
    pub fn alloc_order(&self, order: usize) -> Option<Pfn> {
        self.alloc_block(order)
    }

    /// `alloc_order`, inlined into `alloc` so that order 0 folds.
    #[inline(always)]
    fn alloc_block(&self, order: usize) -> Option<Pfn> {
        let guard = CpuGuard::new();
        if self.mode() == LockMode::Global {
            return self.lock_buddy_local(&guard).alloc(order);
        }
        let first = if order <= PCP_MAX_ORDER {
            self.alloc_local(&guard, order)
        } else {
            // A local, so the buddy guard drops before `guard` (see
            // `free_order`).
            let block = self
                .lock_buddy_local(&guard)
                .alloc_on(order, guard.cpu() as u8);
            block
        };
        first.or_else(|| {
            // Frames parked on per-CPU lists or in flight may be what is
            // missing, or what keeps a block from coalescing: give them
            // back and try once more.
            self.drain_all();
            if order <= PCP_MAX_ORDER {
                self.alloc_local(&guard, order)
            } else {
                let block = self
                    .lock_buddy_local(&guard)
                    .alloc_on(order, guard.cpu() as u8);
                block
            }
        })
    }

    /// Frees a block from `alloc_order(order)`.
    pub fn free_order(&self, pfn: Pfn, order: usize) -> Result<(), FreeError> {
        self.free_block(pfn, order)
    }

    /// `free_order`, inlined into `free` so that order 0 folds.
    #[inline(always)]
    fn free_block(&self, pfn: Pfn, order: usize) -> Result<(), FreeError> {
        let guard = CpuGuard::new();
        if self.mode() == LockMode::Global || order > PCP_MAX_ORDER {
            // Bound to a local, not the block's tail expression: a tail
            // expression's temporaries (here the buddy guard) are dropped
            // after the block's locals (edition 2021), so `guard` would turn
            // interrupts back on while the lock is still held, and a timer
            // preemption there left the buddy locked with its holder off-CPU
            // (every CPU then spun on it: the fuzzer's 4-vCPU stall).
            let freed = self.lock_buddy_local(&guard).free(pfn, order);
            return freed.inspect_err(|_| self.reject());
        }
        let checked = if !pfn.is_multiple_of(1 << order) {
            Err(FreeError::Misaligned)
        } else {
            match self.meta(pfn) {
                None => Err(FreeError::NotManaged),
                Some(meta) if !meta.allocated_as(order) => Err(FreeError::NotAllocated),
                Some(meta) => Ok(meta.home as usize),
            }
        };
        match checked {
            Ok(home) => {
                self.free_local(&guard, pfn, order, home);
                Ok(())
            }
            Err(e) => {
                self.reject();
                Err(e)
            }
        }
    }

    /// Free frames: buddy plus every per-CPU list, outbox and inbox.  Exact
    /// when no allocation or free runs concurrently.
    pub fn free_frames(&self) -> usize {
        let _pin = CpuGuard::new();
        let buddy = self.lock_buddy().free_frames();
        let parked: usize = self
            .pcp
            .iter()
            .map(|cpu| {
                let cpu = cpu.lock();
                let lists: usize = (0..PCP_ORDERS).map(|k| cpu.lists[k].count << k).sum();
                lists + cpu.out.frames
            })
            .sum();
        let inboxes: usize = self
            .inbox
            .iter()
            .map(|i| i.frames.load(Ordering::Relaxed))
            .sum();
        buddy + parked + inboxes
    }

    /// Frames on the order-0 list of CPU `cpu`.
    pub fn cpu_list_len(&self, cpu: usize) -> usize {
        let _pin = CpuGuard::new();
        // A local, so the list guard drops before `_pin` (see `free_order`).
        let count = self.pcp.remote(cpu).lock().lists[0].count;
        count
    }

    /// Frames freed on CPU `cpu` waiting in its outbox, and frames sent to
    /// CPU `cpu` waiting in its inbox.
    pub fn cpu_in_flight(&self, cpu: usize) -> (usize, usize) {
        let _pin = CpuGuard::new();
        let out = self.pcp.remote(cpu).lock().out.frames;
        (out, self.inbox.remote(cpu).frames.load(Ordering::Relaxed))
    }

    /// Frames managed (free or not).  One load, no lock: the count
    /// changes only in `add_region` (mmap's overcommit check calls this on
    /// every writable mapping; taking the buddy lock there was the one
    /// cache line every `page_fault` operation shared between CPUs).
    pub fn total_frames(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Gives every per-CPU list, outbox and inbox back to the buddy (so
    /// that its free blocks coalesce), e.g. before an allocation fails or
    /// at the end of a test.  Any CPU may call it: this is how memory a
    /// CPU parked, or that was sent to a CPU that no longer allocates,
    /// becomes reusable by the others.
    pub fn drain_all(&self) {
        let _pin = CpuGuard::new();
        for (cpu, inbox) in self.pcp.iter().zip(self.inbox.iter()) {
            let mut cpu = cpu.lock();
            let out = cpu.out.take();
            let taken = match inbox.head.load(Ordering::Relaxed) {
                NIL => NIL,
                _ => inbox.head.swap(NIL, Ordering::Acquire),
            };
            let busy = out.is_some() || taken != NIL || cpu.lists.iter().any(|l| l.count > 0);
            if !busy {
                continue;
            }
            let mut buddy = self.lock_buddy();
            for (order, list) in cpu.lists.iter_mut().enumerate() {
                while let Some(pfn) = list.pop(&self.mem) {
                    if buddy.free(pfn, order).is_err() {
                        self.reject();
                    }
                }
            }
            let mut frames_in = 0;
            for (mut pfn, from_inbox) in [(out.map_or(NIL, |o| o.0), false), (taken, true)] {
                while pfn != NIL {
                    // SAFETY: an outbox's or a taken inbox's blocks are ours
                    // (see `take_inbox`); the last link of an outbox is NIL.
                    let SentBlock { next, order } = unsafe { sent(&self.mem, pfn as Pfn).read() };
                    if from_inbox {
                        frames_in += 1 << order;
                    }
                    if buddy.free(pfn as Pfn, order as usize).is_err() {
                        self.reject();
                    }
                    pfn = next;
                }
            }
            inbox.frames.fetch_sub(frames_in, Ordering::Relaxed);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            buddy_locks: self.buddy_locks.sum(),
            buddy_contended: self.buddy_contended.sum(),
            pcp_allocs: self.pcp_allocs.sum(),
            remote_frees: self.remote_frees.sum(),
            remote_batches: self.remote_batches.sum(),
            rejected_frees: self.rejected_frees.load(Ordering::Relaxed),
        }
    }

    fn reject(&self) {
        self.rejected_frees.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the buddy lock, counting the acquisition and whether it was
    /// contended.  Callers hold a `CpuGuard` for as long as the lock is
    /// held, so that (in the kernel) no interrupt handler on this CPU can
    /// try to take it again (nor preempt the holder).  The returned guard
    /// must be dropped before that `CpuGuard`: never leave it as a
    /// temporary of a block's tail expression (see `free_order`).
    fn lock_buddy(&self) -> spin::MutexGuard<'_, BuddyAllocator<M>> {
        let guard = CpuGuard::new();
        self.lock_buddy_local(&guard)
    }

    fn lock_buddy_local(&self, guard: &CpuGuard) -> spin::MutexGuard<'_, BuddyAllocator<M>> {
        self.buddy_locks.add_local(guard, 1);
        match self.buddy.try_lock() {
            Some(locked) => locked,
            None => {
                self.buddy_contended.add_local(guard, 1);
                self.buddy.lock()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Arena;
    use percpu::host;

    fn frames(n: usize, mode: LockMode) -> &'static FrameAllocator<&'static Arena> {
        let arena = Arena::leak(n);
        let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
        fa.set_mode(mode).unwrap();
        fa.add_region(arena.first_pfn(), n).unwrap();
        fa
    }

    #[test]
    fn high_below_batch_is_raised_to_batch() {
        std::thread::spawn(|| {
            host::bind_current_thread(11).unwrap();
            let arena = Arena::leak(256);
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 2)));
            fa.add_region(arena.first_pfn(), 256).unwrap();
            let p = fa.alloc().unwrap();
            assert_eq!(fa.cpu_list_len(11), 7, "refilled 8, handed out 1");
            fa.free(p).unwrap();
            assert_eq!(fa.cpu_list_len(11), 8, "high is 8 (= batch), not 2");
            assert!(!ModeError.to_string().is_empty());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_block_held_up_by_parked_frames_is_still_found() {
        std::thread::spawn(|| {
            host::bind_current_thread(13).unwrap();
            // Memory is exactly one aligned 16-frame block.
            let arena = Arena::leak(64);
            let s = (arena.first_pfn() + 16 + 15) & !15;
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
            assert_eq!(fa.add_region(s - 1, 17), Ok(16));
            let p = fa.alloc().unwrap();
            fa.free(p).unwrap();
            assert_eq!(fa.cpu_list_len(13), 8, "half the block parked on this CPU");
            assert_eq!(fa.alloc_order(4), Some(s), "lists drained for the block");
            assert_eq!(fa.cpu_list_len(13), 0);
            assert_eq!(fa.alloc_order(4), None);
            fa.free_order(s, 4).unwrap();
            assert_eq!(fa.free_frames(), 16);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn total_frames_follows_regions_without_the_buddy_lock() {
        std::thread::spawn(|| {
            host::bind_current_thread(17).unwrap();
            let arena = Arena::leak(256);
            let fa = Box::leak(Box::new(FrameAllocator::with_params(arena, 8, 16)));
            assert_eq!(fa.total_frames(), 0);
            let a = fa.add_region(arena.first_pfn(), 100).unwrap();
            assert_eq!(fa.total_frames(), a);
            let b = fa.add_region(arena.first_pfn() + 128, 100).unwrap();
            assert_eq!(fa.total_frames(), a + b);
            let locks = fa.stats().buddy_locks;
            for _ in 0..10 {
                assert_eq!(fa.total_frames(), a + b);
            }
            assert_eq!(fa.stats().buddy_locks, locks, "no buddy lock taken");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn mode_is_fixed_once_memory_exists() {
        let fa = frames(64, LockMode::Global);
        assert_eq!(fa.mode(), LockMode::Global);
        assert_eq!(fa.set_mode(LockMode::PerCpu), Err(ModeError));
    }

    #[test]
    fn percpu_path_refills_in_batches_and_skips_the_buddy() {
        std::thread::spawn(|| {
            host::bind_current_thread(4).unwrap();
            let fa = frames(1024, LockMode::PerCpu);
            let total = fa.total_frames();
            let locks0 = fa.stats().buddy_locks;
            let a = fa.alloc().unwrap();
            assert_eq!(fa.cpu_list_len(4), 7, "refilled 8, handed out 1");
            let locks1 = fa.stats().buddy_locks;
            assert_eq!(locks1, locks0 + 1);
            let more: Vec<_> = (0..7).map(|_| fa.alloc().unwrap()).collect();
            assert_eq!(fa.stats().buddy_locks, locks1, "served from the list");
            assert_eq!(fa.free_frames(), total - 8);
            fa.free(a).unwrap();
            for p in more {
                fa.free(p).unwrap();
            }
            assert_eq!(fa.free_frames(), total);
            assert!(fa.cpu_list_len(4) <= 16);
            fa.drain_all();
            assert_eq!(fa.cpu_list_len(4), 0);
            assert_eq!(fa.free_frames(), total);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn list_is_drained_past_high() {
        std::thread::spawn(|| {
            host::bind_current_thread(6).unwrap();
            let fa = frames(1024, LockMode::PerCpu);
            let got: Vec<_> = (0..100).map(|_| fa.alloc().unwrap()).collect();
            for p in got {
                fa.free(p).unwrap();
                assert!(fa.cpu_list_len(6) <= 16);
            }
            assert_eq!(fa.free_frames(), fa.total_frames());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn frames_parked_on_other_cpus_are_not_lost_to_allocation() {
        let fa = frames(64, LockMode::PerCpu);
        let total = fa.total_frames();
        std::thread::spawn(move || {
            host::bind_current_thread(10).unwrap();
            let all: Vec<_> = std::iter::from_fn(|| fa.alloc()).collect();
            assert_eq!(all.len(), total);
            for p in all {
                fa.free(p).unwrap();
            }
            assert!(fa.cpu_list_len(10) > 0, "some frames stay parked on cpu 10");
        })
        .join()
        .unwrap();
        std::thread::spawn(move || {
            host::bind_current_thread(11).unwrap();
            let all: Vec<_> = std::iter::from_fn(|| fa.alloc()).collect();
            assert_eq!(all.len(), total, "cpu 11 must get cpu 10's parked frames");
            for p in all {
                fa.free(p).unwrap();
            }
            fa.drain_all();
        })
        .join()
        .unwrap();
        assert_eq!(fa.free_frames(), total);
        std::thread::spawn(move || {
            host::bind_current_thread(12).unwrap();
            let p = fa.alloc().unwrap();
            fa.free(p).unwrap();
            let big = fa
                .alloc_order(4)
                .expect("parked frames drained for a block");
            fa.free_order(big, 4).unwrap();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn global_mode_uses_the_buddy_and_checks_frees() {
        let fa = frames(256, LockMode::Global);
        let p = fa.alloc().unwrap();
        assert!(fa
            .pcp
            .iter()
            .all(|l| l.lock().lists.iter().all(|l| l.count == 0)));
        fa.free(p).unwrap();
        assert_eq!(fa.free(p), Err(FreeError::NotAllocated));
        assert_eq!(fa.stats().rejected_frees, 1);
    }

    #[test]
    fn out_of_range_free_is_refused_in_percpu_mode() {
        let fa = frames(256, LockMode::PerCpu);
        assert_eq!(fa.free(3), Err(FreeError::NotManaged));
        assert_eq!(fa.free(usize::MAX), Err(FreeError::NotManaged));
        // Just outside the region on either side.
        let first = fa.memory().first_pfn();
        assert_eq!(fa.free(first + 256), Err(FreeError::NotManaged));
        assert_eq!(fa.free(first - 1), Err(FreeError::NotManaged));
        assert_eq!(fa.stats().rejected_frees, 4);
        assert_eq!(fa.free_frames(), fa.total_frames());
    }

    #[test]
    fn higher_orders_come_from_the_buddy_aligned() {
        let fa = frames(4096, LockMode::PerCpu);
        let p = fa.alloc_order(4).unwrap();
        assert_eq!(p % 16, 0);
        assert_eq!(fa.free_order(p, 3), Err(FreeError::NotAllocated));
        fa.free_order(p, 4).unwrap();
        assert_eq!(fa.alloc_order(crate::MAX_ORDER + 1), None);
        assert_eq!(fa.free_frames(), fa.total_frames());
    }
}
