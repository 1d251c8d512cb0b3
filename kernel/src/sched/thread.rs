//! Kernel threads: the `Thread` record, its kernel stack, `JoinHandle`, and
//! the first and last code every thread runs.
//!
//! Owns: a thread's identity, affinity, scheduling state word, saved stack
//! pointer, kernel stack and exit signal.
//!
//! Invariants:
//! * A thread never frees the stack it runs on: a dead thread's stack is
//!   freed by the *next* thread on its CPU (`finish_switch` ->
//!   `release_after_exit`), which then signals joiners.  So when `join`
//!   returns, the stack is back in the heap.  The `Thread` record itself
//!   lives as long as some `Arc` to it.
//! * `saved_rsp` is written only by `switch_context` on the CPU that switches
//!   the thread out, and read only by the CPU that later switches it in; the
//!   hand-over always goes through a run-queue lock or the state word
//!   (release/acquire), which orders the write before the read.
//! * The lowest `GUARD_BYTES` of each stack are filled with a canary and
//!   never used: the lowest word is checked on every switch-out and the
//!   whole band at the thread's last one, so an overflow is reported with
//!   the thread's name instead of silently corrupting the heap (there is no
//!   unmapped guard page: the stacks come from the heap, whose pages the
//!   scheduler does not own).  A frame larger than a page that jumps over
//!   the lowest word still writes the band: the compiler's stack probes
//!   touch every page a frame spans.
//!
//! * The top `TRAP_FRAME_BYTES` of every kernel stack are reserved for the
//!   user trap frame (`arch::idt::InterruptFrame`): a user thread's
//!   syscalls, interrupts and exceptions from ring 3 all push their frame
//!   exactly there (TSS `rsp0` and the syscall entry use the stack top), so
//!   `proc` finds the user registers of any user thread at a fixed place.
//! * A user thread carries a [`UserContext`] (set at creation, never
//!   changed): the scheduler calls its `switch_out`/`switch_in` around every
//!   switch (FPU state, address space, FS base, TSS `rsp0`).
//! * The affinity is a CPU bit mask (`MAX_CPUS == 64`); it may change while
//!   the thread lives (`set_affinity`), the scheduler re-reads it whenever it
//!   queues or picks the thread.
//!
//! Must not: touch run queues (that is `scheduler.rs`).

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use super::lock::IrqSpinLock;
use super::waitqueue::WaitQueue;

/// Size of every kernel thread stack.  The `fs` crate keeps its per-CPU
/// arrays (8 KiB each) boxed so no superblock is built by value on a
/// kernel stack: the largest frames on a mount are `Fs::new_ext2` and
/// `Fs::with_big`, 8.5 KiB each (measured with objdump: `sub $N,%rsp` in
/// the prologues).  An overflow is caught by the canary below.
pub const STACK_SIZE: usize = 64 * 1024;
/// Written over the lowest `GUARD_BYTES` of every kernel stack; an
/// overflow that reaches the bottom overwrites it.
const STACK_CANARY: u64 = 0x5354_4143_4b5f_4f4b; // "STACK_OK"
/// The band at the bottom of every kernel stack kept for the canary: one
/// page, so that the stack probe of any frame reaching it writes into it.
const GUARD_BYTES: usize = 4096;

/// Scheduling states, stored in `Thread::state`.
///
/// Transitions (who makes them):
/// * `RUNNING -> READY`   the thread itself, yielding or preempted (IF = 0);
/// * `RUNNING -> BLOCKING` the thread itself, about to sleep (IF = 0, and
///   under the wait queue lock when it waits on one);
/// * `BLOCKING -> BLOCKED` the next thread on the same CPU, in `finish_switch`,
///   once the old stack is no longer in use;
/// * `BLOCKING -> WOKEN`  a waker that found the thread still on its CPU; the
///   sleeper's CPU then makes it `READY` in `finish_switch`;
/// * `BLOCKED -> READY`   a waker, which then puts it on a run queue;
/// * `READY -> RUNNING`   the CPU that dequeues it;
/// * `RUNNING -> DEAD`    the thread itself, as its last act.
pub(super) mod state {
    pub const RUNNING: u8 = 0;
    pub const READY: u8 = 1;
    pub const BLOCKING: u8 = 2;
    pub const BLOCKED: u8 = 3;
    pub const WOKEN: u8 = 4;
    pub const DEAD: u8 = 5;
}

/// A heap-allocated kernel stack with a canary at its bottom.
struct KernelStack {
    base: NonNull<u8>,
}

impl KernelStack {
    fn layout() -> Layout {
        // 16-byte alignment is what the ABI needs; page alignment keeps the
        // canary at a predictable place for a debugger.
        Layout::from_size_align(STACK_SIZE, 4096).expect("constant stack layout is valid")
    }

    fn new() -> Option<Self> {
        // SAFETY: the layout has a non-zero size.
        let base = NonNull::new(unsafe { alloc(Self::layout()) })?;
        let words = GUARD_BYTES / 8;
        // SAFETY: the allocation is STACK_SIZE >= GUARD_BYTES bytes and
        // 4096-aligned, and nothing else refers to it yet.
        let stack =
            unsafe { core::slice::from_raw_parts_mut(base.as_ptr().cast::<u64>(), STACK_SIZE / 8) };
        // Every byte is written once, the band with the canary and the rest
        // with zeros.  Besides leaving no stale data on a new stack, this
        // matters under QEMU's TCG: a frame that once held user code keeps
        // its translated blocks until the bytes they came from are written,
        // and until then *every* store to that page (here: every push on
        // the stack) takes TCG's slow self-modifying-code path.  Writing the
        // whole stack drops them at once (measured: pipe ping-pong between
        // two processes went from ~2 k to the threads-mode rate).
        let (band, rest) = stack.split_at_mut(words);
        band.fill(STACK_CANARY);
        rest.fill(0);
        Some(Self { base })
    }

    fn top(&self) -> usize {
        self.base.as_ptr() as usize + STACK_SIZE
    }

    fn canary_intact(&self) -> bool {
        // SAFETY: the first word was initialised in `new` and the stack is
        // alive as long as `self`; a volatile read because a running thread
        // (not the compiler) is what might have changed it.
        unsafe { self.base.as_ptr().cast::<u64>().read_volatile() == STACK_CANARY }
    }

    /// Whether the whole guard band still holds the canary (a page of reads:
    /// done once, at the thread's last switch-out).
    fn guard_intact(&self) -> bool {
        let p = self.base.as_ptr().cast::<u64>();
        (0..GUARD_BYTES / 8).all(|i| {
            // SAFETY: as in `canary_intact`; `i` stays inside the band
            // initialised in `new`.
            unsafe { p.add(i).read_volatile() == STACK_CANARY }
        })
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout; the owning thread
        // is dead or never ran (see the module invariant), so no CPU runs on it.
        unsafe { dealloc(self.base.as_ptr(), Self::layout()) }
    }
}

// SAFETY: a KernelStack is plain memory owned by one Thread; moving the
// owner between CPUs is fine.
unsafe impl Send for KernelStack {}

/// Bytes at the top of every kernel stack reserved for the user trap frame
/// (22 quadwords: 15 registers, vector, error code and the 5-word hardware
/// frame); a multiple of 16 so the stack below stays aligned.
pub const TRAP_FRAME_BYTES: usize = crate::arch::frame::FRAME_BYTES;

/// The user-mode half of a thread, implemented by `proc`.  The scheduler
/// calls these with interrupts disabled, on the CPU doing the switch, and
/// they must not block, allocate or take sleeping locks.
pub trait UserContext: Send + Sync {
    /// The thread leaves the CPU: save what only the CPU holds (FPU/SSE).
    fn switch_out(&self);
    /// The thread gets the CPU: load its FPU/SSE state, FS base, address
    /// space, and point the TSS `rsp0`/syscall stack at `kernel_stack_top`.
    fn switch_in(&self, cpu: usize, kernel_stack_top: u64);
}

/// The closure a spawned thread runs.
type Entry = Box<dyn FnOnce() + Send + 'static>;

/// A kernel thread (ring 0 only for now).
pub struct Thread {
    id: u64,
    name: String,
    /// Bit `n` set: may run on CPU `n`.  All bits: any CPU (can be stolen).
    affinity: AtomicU64,
    /// The user-mode half (`None` for kernel threads).
    user: Option<Arc<dyn UserContext>>,
    /// The per-CPU idle thread (boot stack); never queued, never stolen.
    is_idle: bool,
    /// One of the [`state`] constants.
    pub(super) state: AtomicU8,
    /// CPU whose run queue the thread goes to when it becomes ready
    /// (its affinity, or the CPU it last ran on).
    pub(super) home_cpu: AtomicUsize,
    saved_rsp: UnsafeCell<usize>,
    /// Top of the kernel stack, cached so the switch path needs no lock
    /// to find it.
    stack_top: usize,
    /// `None` for dead threads once `release_after_exit` freed it.  The lock is
    /// never contended: only the owning CPU touches it, with interrupts off.
    stack: spin::Mutex<Option<KernelStack>>,
    entry: IrqSpinLock<Option<Entry>>,
    exited: AtomicBool,
    exit_waiters: WaitQueue,
}

// SAFETY: every field is Sync except `saved_rsp`, whose accesses are
// serialised by the hand-over protocol described in the module doc (only
// the CPU switching the thread out writes it, only the CPU switching it in
// reads it, with a release/acquire edge in between).
unsafe impl Sync for Thread {}
// SAFETY: as above; a Thread owns no CPU-local resource.
unsafe impl Send for Thread {}

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// Why a thread could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The affinity names a CPU that does not exist.
    NoSuchCpu { cpu: usize, cpu_count: usize },
    /// The kernel heap could not provide a stack.
    OutOfMemory,
    /// `sched::init` has not run yet.
    NotInitialized,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NoSuchCpu { cpu, cpu_count } => {
                write!(f, "affinity cpu {cpu} does not exist ({cpu_count} CPUs)")
            }
            SpawnError::OutOfMemory => write!(f, "out of memory for a kernel stack"),
            SpawnError::NotInitialized => write!(f, "scheduler not initialised"),
        }
    }
}

impl Thread {
    /// A new thread that will run `entry` on a fresh stack; state READY.
    pub(super) fn new_spawned(
        name: &str,
        affinity: u64,
        home_cpu: usize,
        user: Option<Arc<dyn UserContext>>,
        entry: Entry,
    ) -> Result<Arc<Thread>, SpawnError> {
        let stack = KernelStack::new().ok_or(SpawnError::OutOfMemory)?;
        // SAFETY: the stack is fresh, STACK_SIZE bytes long, and unused; the
        // trap frame area above the start point stays untouched.
        let rsp = unsafe { super::context::prepare_new_stack(stack.top() - TRAP_FRAME_BYTES) };
        Ok(Arc::new(Thread {
            id: NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
            name: String::from(name),
            affinity: AtomicU64::new(affinity),
            user,
            is_idle: false,
            state: AtomicU8::new(state::READY),
            home_cpu: AtomicUsize::new(home_cpu),
            saved_rsp: UnsafeCell::new(rsp),
            stack_top: stack.top(),
            stack: spin::Mutex::new(Some(stack)),
            entry: IrqSpinLock::new(Some(entry)),
            exited: AtomicBool::new(false),
            exit_waiters: WaitQueue::new(),
        }))
    }

    /// The idle thread of `cpu`, with a fresh kernel stack that the CPU
    /// moves onto right after (`scheduler::start_*`): the loader's boot
    /// stack may live in identity-mapped low memory, which user address
    /// spaces do not map.
    pub(super) fn new_idle(cpu: usize) -> Arc<Thread> {
        let stack = KernelStack::new().expect("sched: no memory for an idle stack at boot");
        let mut name = String::from("idle/");
        // `cpu` has at most a few digits; formatting into a String cannot fail.
        let _ = fmt::write(&mut name, format_args!("{cpu}"));
        Arc::new(Thread {
            id: NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
            name,
            affinity: AtomicU64::new(1 << cpu),
            user: None,
            is_idle: true,
            state: AtomicU8::new(state::RUNNING),
            home_cpu: AtomicUsize::new(cpu),
            saved_rsp: UnsafeCell::new(0),
            stack_top: stack.top(),
            stack: spin::Mutex::new(Some(stack)),
            entry: IrqSpinLock::new(None),
            exited: AtomicBool::new(false),
            exit_waiters: WaitQueue::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CPUs the thread may run on (bit `n` = CPU `n`).
    pub fn affinity_mask(&self) -> u64 {
        self.affinity.load(Ordering::Acquire)
    }

    /// Changes the CPUs the thread may run on (the caller checked the mask
    /// is non-empty and names online CPUs).  A running thread moves at its
    /// next pass through the scheduler (`sched::set_affinity` forces it).
    pub(super) fn set_affinity_mask(&self, mask: u64) {
        self.affinity.store(mask, Ordering::Release);
    }

    /// The user-mode half, if this is a user thread.
    pub fn user_context(&self) -> Option<&Arc<dyn UserContext>> {
        self.user.as_ref()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.is_idle
    }

    /// Top of the thread's kernel stack (what the TSS `rsp0` must hold
    /// while it runs, once user mode exists); `None` for idle threads and
    /// dead threads whose stack was freed.
    pub fn kernel_stack_top(&self) -> Option<usize> {
        self.stack.lock().as_ref().map(KernelStack::top)
    }

    /// Top of the kernel stack as allocated; the user trap frame sits
    /// right below it (`TRAP_FRAME_BYTES`).
    pub fn stack_top(&self) -> usize {
        self.stack_top
    }

    /// May this thread run on `cpu`?
    pub(super) fn can_run_on(&self, cpu: usize) -> bool {
        cpu < 64 && self.affinity_mask() & (1 << cpu) != 0
    }

    /// Where `switch_context` stores this thread's stack pointer.
    pub(super) fn saved_rsp_slot(&self) -> *mut usize {
        self.saved_rsp.get()
    }

    /// The stack pointer to resume this thread with.
    ///
    /// # Safety
    /// The thread is switched out (not running on any CPU) and the caller
    /// acquired it through the hand-over protocol (module doc).
    pub(super) unsafe fn saved_rsp(&self) -> usize {
        // SAFETY: per the caller's promise no CPU writes it concurrently.
        unsafe { *self.saved_rsp.get() }
    }

    /// Panics with the thread's name when its stack overflowed.  Called with
    /// the thread switched in, just before it is switched out.
    /// `last`: the thread is exiting, so the whole guard band is checked.
    pub(super) fn check_stack(&self, last: bool) {
        if let Some(stack) = &*self.stack.lock() {
            if !stack.canary_intact() || (last && !stack.guard_intact()) {
                panic!(
                    "kernel stack overflow in thread {} ({})",
                    self.id, self.name
                );
            }
        }
    }

    pub(super) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Frees the stack of a DEAD thread and wakes its joiners.  Called by
    /// the next thread on the same CPU, once nothing runs on that stack.
    pub(super) fn release_after_exit(&self) {
        debug_assert_eq!(self.state.load(Ordering::SeqCst), state::DEAD);
        let stack = self.stack.lock().take();
        drop(stack);
        self.exited.store(true, Ordering::Release);
        self.exit_waiters.wake_all();
    }
}

/// Handle to wait for a spawned thread's end.  Dropping it detaches the
/// thread (it still runs to completion and is freed then).
pub struct JoinHandle {
    thread: Arc<Thread>,
}

impl JoinHandle {
    pub(super) fn new(thread: Arc<Thread>) -> Self {
        Self { thread }
    }

    /// Blocks until the thread's closure returned and its stack was freed.
    pub fn join(self) {
        let thread = &self.thread;
        thread.exit_waiters.wait_until(|| thread.has_exited());
    }

    pub fn is_finished(&self) -> bool {
        self.thread.has_exited()
    }

    pub fn thread(&self) -> &Arc<Thread> {
        &self.thread
    }
}

/// First Rust code of every spawned thread (called by the trampoline right
/// after the first switch to it, with interrupts still disabled).
pub(super) extern "C" fn thread_start() -> ! {
    // Finish the switch that brought us here (re-queue or retire the
    // previous thread), then this thread starts with interrupts enabled:
    // a new thread has no saved interrupt flag of its own, and kernel
    // threads always run preemptible.
    super::scheduler::finish_switch();
    crate::arch::irq::enable();

    run_entry_and_exit()
}

/// Runs the closure, then leaves the CPU for good (the next thread frees
/// the stack and signals joiners) or, for a user thread, enters user mode
/// with the trap frame the closure prepared at the top of the stack.
fn run_entry_and_exit() -> ! {
    let user_frame = {
        // Scoped so that this `Arc` is dropped before the final switch (or
        // the jump to user mode): the stack must hold no reference (it
        // would never be released).
        let me = super::scheduler::current_thread();
        let entry = me.entry.lock().take();
        if let Some(entry) = entry {
            entry();
        }
        me.user_context()
            .is_some()
            .then(|| (me.stack_top() - TRAP_FRAME_BYTES) as *mut crate::arch::idt::InterruptFrame)
    };
    if let Some(frame) = user_frame {
        // SAFETY: the frame area at the top of this thread's own stack is
        // reserved (module invariant) and was filled by the closure; no
        // reference to it exists elsewhere while this thread runs.
        let frame = unsafe { &mut *frame };
        // Pending signals or an exit request take effect before the first
        // user instruction.
        crate::proc::return_to_user(frame);
        crate::arch::usermode::enter_user(frame);
    }
    super::scheduler::exit_current()
}
