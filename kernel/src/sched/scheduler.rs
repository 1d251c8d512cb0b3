//! The scheduler proper: per-CPU state, picking the next thread, switching,
//! waking, sleeping, stealing, and the idle loop.
//!
//! Owns: the global `Scheduler` (run queues, per-CPU state), every thread's
//! state transitions except RUNNING -> BLOCKING (done by the thread itself in
//! `waitqueue.rs` / `sleep`), and the statistics counters.
//!
//! Per-CPU state (`Local`) is touched only by its own CPU with interrupts
//! disabled, and no reference to it is held across `switch_context` (the
//! next thread on this CPU takes its own).  Remote CPUs only read the
//! `idle` flag and use the run queues, which have their own locks.
//!
//! Must not: hold a run-queue lock while taking another one, hold any lock
//! across `switch_context`, or free a thread's stack while it runs (dead
//! threads are released by the next thread, in `finish_switch`).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use percpu::{PerCpu, PerCpuCounter};

use super::runqueue::RunQueue;
use super::thread::{state, SpawnError, Thread};
use super::{context, LockMode};
use crate::arch;

/// Timer ticks a thread may run before it is preempted (if others wait).
pub const TIME_SLICE_TICKS: u32 = 2;
/// Initial room in each run queue and sleeper list (they grow if needed).
const QUEUE_RESERVED: usize = 64;
const SLEEPERS_RESERVED: usize = 64;

// Statistics: bumped on the local CPU only, summed when read.
pub(super) static CONTEXT_SWITCHES: PerCpuCounter = PerCpuCounter::new();
pub(super) static STEALS: PerCpuCounter = PerCpuCounter::new();
pub(super) static IPIS_SENT: PerCpuCounter = PerCpuCounter::new();
pub(super) static IDLE_HALTS: PerCpuCounter = PerCpuCounter::new();
pub(super) static HANDOFFS: PerCpuCounter = PerCpuCounter::new();

/// A thread sleeping until `deadline_ns` (`arch::time::now_ns` clock).
struct Sleeper {
    deadline_ns: u64,
    thread: Arc<Thread>,
}

/// What only the owning CPU touches, with interrupts disabled.
struct Local {
    /// The thread running on this CPU (`None` before `start_*`).
    current: Option<Arc<Thread>>,
    /// This CPU's idle thread.
    idle: Option<Arc<Thread>>,
    /// The thread just switched away from, handed to `finish_switch`.
    prev: Option<Arc<Thread>>,
    /// Ticks left in the current thread's time slice.
    slice_left: u32,
    /// Threads in `sleep_ns` on this CPU, unordered (few of them).
    sleepers: Vec<Sleeper>,
}

struct CpuState {
    /// True while this CPU runs its idle thread (read by wakers to decide
    /// whether an IPI is needed; SeqCst, see `make_ready`).
    idle: AtomicBool,
    local: UnsafeCell<Local>,
}

// SAFETY: `local` is only accessed by the CPU owning the slot with
// interrupts disabled, never concurrently (see `with_local`); `idle` is atomic.
unsafe impl Sync for CpuState {}

/// The CPU count and the run-queue layout are not kept here: they are read
/// from their one owner, `percpu::cpu_count()` and `percpu::lock_mode()`,
/// both fixed before `init`.
pub(super) struct Scheduler {
    /// Per-CPU run queues (used under `LockMode::PerCpu`).
    queues: PerCpu<RunQueue>,
    /// The single run queue (used under `LockMode::Global`).
    global_queue: RunQueue,
    cpus: PerCpu<CpuState>,
    /// CPUs that entered the scheduler (`start_bsp` / `start_ap`).
    online: AtomicUsize,
}

/// Set once by `init` to a leaked `Box<Scheduler>`; never freed.
static SCHEDULER: AtomicPtr<Scheduler> = AtomicPtr::new(core::ptr::null_mut());

pub(super) fn try_get() -> Option<&'static Scheduler> {
    let ptr = SCHEDULER.load(Ordering::Acquire);
    // SAFETY: non-null only after `init` stored a leaked, never-freed Box.
    unsafe { ptr.as_ref() }
}

fn get() -> &'static Scheduler {
    try_get().expect("sched: used before sched::init")
}

/// Creates the run queues and per-CPU state for `percpu::cpu_count()` CPUs.
/// Returns false (and changes nothing) if called twice.
pub(super) fn init() -> bool {
    let cpu_count = percpu::cpu_count();
    assert!(
        (1..=percpu::MAX_CPUS).contains(&cpu_count),
        "sched::init: cpu_count {cpu_count} not in 1..={}",
        percpu::MAX_CPUS
    );
    let scheduler = Box::new(Scheduler {
        queues: PerCpu::from_fn(|cpu| {
            RunQueue::with_capacity(if cpu < cpu_count { QUEUE_RESERVED } else { 0 })
        }),
        global_queue: RunQueue::with_capacity(QUEUE_RESERVED * cpu_count),
        cpus: PerCpu::from_fn(|cpu| CpuState {
            idle: AtomicBool::new(false),
            local: UnsafeCell::new(Local {
                current: None,
                idle: None,
                prev: None,
                slice_left: TIME_SLICE_TICKS,
                // Reserved up front so that normal use never grows it:
                // memory that a scheduler structure grabs in the middle of
                // a test would look like a leak to its frame accounting.
                sleepers: Vec::with_capacity(if cpu < cpu_count {
                    SLEEPERS_RESERVED
                } else {
                    0
                }),
            }),
        }),
        online: AtomicUsize::new(0),
    });
    let ptr = Box::into_raw(scheduler);
    if SCHEDULER
        .compare_exchange(
            core::ptr::null_mut(),
            ptr,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_err()
    {
        // SAFETY: `ptr` came from Box::into_raw above and was not published.
        drop(unsafe { Box::from_raw(ptr) });
        return false;
    }
    true
}

/// Runs `f` on this CPU's `Local`, pinned (interrupts off) for the call.
///
/// `f` must not call back into anything that uses `with_local` (that would
/// create a second `&mut Local`); everything in this file respects that by
/// only moving values in and out inside `f`.
///
/// The pin is the kernel's own (interrupts off, the CPU id from `gs`), not
/// a `percpu::CpuGuard`: this runs several times per context switch, and
/// the guard's dynamic platform dispatch cost about 65 instructions each
/// time (a fifth of an IPC round trip).  Same effect: the kernel platform
/// pins by disabling interrupts, and `gs` is set up on every CPU before
/// the scheduler starts there.
#[inline]
fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> R {
    let interrupts_were_enabled = arch::irq::save_disable();
    let slot = get().cpus.remote(arch::cpu::id());
    // SAFETY: interrupts are off, so nothing else runs on this CPU while
    // `f` runs, and only this CPU accesses its own `local` (module doc);
    // the reference does not escape `f`.
    let result = f(unsafe { &mut *slot.local.get() });
    arch::irq::restore(interrupts_were_enabled);
    result
}

/// Bumps this CPU's slot of a statistics counter (interrupts are off
/// wherever the scheduler counts, so the CPU id cannot go stale).
#[inline]
fn count(counter: &PerCpuCounter) {
    counter.add_on(arch::cpu::id(), 1);
}

impl Scheduler {
    fn cpu_count(&self) -> usize {
        percpu::cpu_count()
    }

    pub(super) fn online(&self) -> usize {
        self.online.load(Ordering::Acquire)
    }

    /// The run queue threads homed on `cpu` go to.
    fn queue_for(&self, cpu: usize) -> &RunQueue {
        match percpu::lock_mode() {
            LockMode::PerCpu => self.queues.remote(cpu),
            LockMode::Global => &self.global_queue,
        }
    }

    /// Bit mask of the CPUs this scheduler runs on.
    fn cpu_mask(&self) -> u64 {
        let cpu_count = self.cpu_count();
        if cpu_count >= 64 {
            u64::MAX
        } else {
            (1u64 << cpu_count) - 1
        }
    }

    fn is_idle(&self, cpu: usize) -> bool {
        self.cpus.remote(cpu).idle.load(Ordering::SeqCst)
    }

    fn send_resched(&self, cpu: usize) {
        arch::apic::send_ipi(cpu, arch::RESCHED_VECTOR);
        IPIS_SENT.inc();
    }

    /// Puts a READY thread on the queue of its home CPU and makes sure some
    /// CPU that may run it will look: the home CPU if it is idle, else (for
    /// an unpinned thread) any idle CPU, which will steal it.
    ///
    /// Idle protocol (no lost wakeup): an idle CPU sets its `idle` flag, then
    /// looks at the queues; we push, then read the flags; all SeqCst.  So
    /// either the idle CPU sees the thread, or we see the flag and send the
    /// IPI, whose delivery ends its `hlt` (`enable_and_halt` is `sti; hlt`,
    /// so an IPI pending from before cannot be lost in between).
    fn make_ready(&self, thread: Arc<Thread>) {
        debug_assert_eq!(thread.state.load(Ordering::SeqCst), state::READY);
        let mask = thread.affinity_mask() & self.cpu_mask();
        let last = thread.home_cpu.load(Ordering::Relaxed);
        // Stay where it last ran when allowed (warm caches), else the first
        // allowed CPU.
        let home = if mask & (1 << last) != 0 {
            last
        } else {
            mask.trailing_zeros() as usize
        };
        let pinned = (mask.count_ones() == 1).then_some(home);
        thread.home_cpu.store(home, Ordering::Relaxed);
        self.queue_for(home).push(thread);

        let me = arch::cpu::id();
        if home != me && self.is_idle(home) {
            self.send_resched(home);
            return;
        }
        if pinned.is_none() {
            let cpu_count = self.cpu_count();
            let stealer = (1..cpu_count)
                .map(|i| (me + i) % cpu_count)
                .find(|&cpu| cpu != home && mask & (1 << cpu) != 0 && self.is_idle(cpu));
            if let Some(cpu) = stealer {
                self.send_resched(cpu);
            }
        }
    }

    /// Next thread for `cpu`: its own queue first, then (when `may_steal`
    /// and queues are per-CPU) one stolen from the busiest other CPU.
    fn pick_next(&self, cpu: usize, may_steal: bool) -> Option<Arc<Thread>> {
        if let Some(thread) = self.queue_for(cpu).pop_for(cpu) {
            return Some(thread);
        }
        if may_steal && percpu::lock_mode() == LockMode::PerCpu {
            return self.steal(cpu);
        }
        None
    }

    /// Takes an unpinned thread from another CPU's queue: the longest queue
    /// first, then any other non-empty one.  Pinned threads are never taken.
    fn steal(&self, thief: usize) -> Option<Arc<Thread>> {
        let cpu_count = self.cpu_count();
        let victims = (1..cpu_count).map(|i| (thief + i) % cpu_count);
        let busiest = victims
            .clone()
            .map(|cpu| (self.queues.remote(cpu).len_hint(), cpu))
            .filter(|&(len, _)| len > 0)
            .max_by_key(|&(len, _)| len)?
            .1;
        let stolen = self.queues.remote(busiest).steal(thief).or_else(|| {
            victims
                .filter(|&cpu| cpu != busiest && self.queues.remote(cpu).len_hint() > 0)
                .find_map(|cpu| self.queues.remote(cpu).steal(thief))
        });
        if stolen.is_some() {
            count(&STEALS);
        }
        stolen
    }
}

/// Why `schedule` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The thread offers the CPU but stays runnable.
    Yield,
    /// Its time slice ran out (timer interrupt).
    Preempt,
    /// It set itself BLOCKING and must not run until woken.
    Block,
    /// It is DEAD and never runs again.
    Exit,
    /// The idle thread looks for work.
    Idle,
}

/// Switches this CPU to another thread if there is one (or must be one).
/// Returns whether a switch happened (when it returns after a switch, the
/// calling thread has been switched back in, possibly on another CPU).
///
/// Interrupt-flag rule: called with interrupts disabled, and every switch
/// happens with them disabled.  The interrupt state is a property of each
/// thread, saved on its own stack by whoever disabled interrupts before
/// calling here (`yield_now`, `WaitQueue::wait_until`, the interrupt gate of
/// the timer/IPI handler, which `iretq` undoes) and restored by that same
/// code after `schedule` returns in the resumed thread.  A new thread has no
/// saved state: `thread_start` enables interrupts after `finish_switch`.
fn schedule(reason: Reason) -> bool {
    let scheduler = get();
    let cpu = arch::cpu::id();
    let current = with_local(|l| l.current.clone()).expect("sched: schedule() before start");

    if reason == Reason::Block
        && current
            .state
            .compare_exchange(
                state::WOKEN,
                state::RUNNING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
    {
        // Woken between queueing itself and getting here: keep running.
        return false;
    }

    // A thread whose affinity no longer allows this CPU must leave it even
    // when nothing else is ready here (it is re-queued on an allowed CPU).
    let must_leave = !current.is_idle() && !current.can_run_on(cpu);
    let may_steal = matches!(reason, Reason::Block | Reason::Exit | Reason::Idle);
    let next = match scheduler.pick_next(cpu, may_steal) {
        Some(next) => next,
        None => match reason {
            Reason::Yield | Reason::Preempt if must_leave => {
                with_local(|l| l.idle.clone()).expect("sched: cpu has no idle thread")
            }
            Reason::Yield | Reason::Preempt | Reason::Idle => {
                with_local(|l| l.slice_left = TIME_SLICE_TICKS);
                return false;
            }
            Reason::Block | Reason::Exit => {
                with_local(|l| l.idle.clone()).expect("sched: cpu has no idle thread")
            }
        },
    };

    if matches!(reason, Reason::Yield | Reason::Preempt) {
        current.state.store(state::READY, Ordering::SeqCst);
    }
    switch_to(scheduler, cpu, current, next, false);
    true
}

/// The switch itself, from `current` (already READY, BLOCKING, WOKEN or
/// DEAD, or the idle thread) to `next` (claimed: RUNNING, off every run
/// queue).  `donate`: `next` runs on what is left of `current`'s time
/// slice (a direct hand-off) instead of a fresh one.  Returns on
/// `current`'s stack once some CPU switches it back in.
fn switch_to(
    scheduler: &Scheduler,
    cpu: usize,
    current: Arc<Thread>,
    next: Arc<Thread>,
    donate: bool,
) {
    let exiting = current.state.load(Ordering::SeqCst) == state::DEAD;
    if current.is_idle() {
        scheduler
            .cpus
            .remote(cpu)
            .idle
            .store(false, Ordering::SeqCst);
    }
    next.state.store(state::RUNNING, Ordering::SeqCst);
    if !next.is_idle() {
        next.home_cpu.store(cpu, Ordering::Relaxed);
    }
    current.check_stack(exiting);
    // User-mode state: the CPU holds the old thread's FPU registers until
    // the new thread's are loaded; the kernel itself never touches them.
    if let Some(user) = current.user_context() {
        user.switch_out();
    }
    match next.user_context() {
        Some(user) => user.switch_in(cpu, next.stack_top() as u64),
        None => arch::cpu::set_current_task(0),
    }

    let save_to = current.saved_rsp_slot();
    // SAFETY: `next` came off a run queue (READY, switched out, hand-over by
    // the queue lock) or is this CPU's idle thread, which is switched out
    // whenever another thread runs here.
    let load = unsafe { next.saved_rsp() };
    // Move both references into per-CPU state instead of keeping them on
    // this stack: a dying thread's stack is never unwound, so an `Arc`
    // left here would leak.  `Local` keeps both threads alive meanwhile.
    drop(current);
    with_local(|l| {
        let previous = l.current.take();
        assert!(l.prev.is_none(), "sched: previous switch not finished");
        l.prev = previous;
        l.current = Some(next);
        if !donate {
            l.slice_left = TIME_SLICE_TICKS;
        }
    });
    count(&CONTEXT_SWITCHES);

    // SAFETY: interrupts are off (rule above); `save_to` belongs to the
    // thread in `l.prev`, which stays alive until `finish_switch` and is not
    // visible to other CPUs before then; `load` is the saved stack of the
    // thread now in `l.current`, which runs nowhere else.
    unsafe { context::switch_context(save_to, load) };

    finish_switch();
}

/// The direct hand-off of synchronous IPC (`sched::wait_once`): the
/// calling thread is BLOCKING (or already WOKEN) and `target` is a thread
/// it just gave work to.  When `target` is fully switched out (BLOCKED)
/// and may run on this CPU, this CPU switches straight to it, without a
/// run-queue pass, and `target` runs on the rest of the caller's time
/// slice (so two threads handing off to each other cannot starve the
/// others: the slice still ends).  Otherwise `target` is woken the normal
/// way (its home CPU's queue, an IPI if that CPU idles) and the caller
/// blocks.  `current` is the calling thread (`wait_once` has it already).
/// Interrupts must be disabled.
fn block_and_hand_off(current: Arc<Thread>, target: Arc<Thread>) {
    let cpu = arch::cpu::id();
    let claimed = !target.is_idle()
        && target.can_run_on(cpu)
        && target
            .state
            .compare_exchange(
                state::BLOCKED,
                state::RUNNING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
    if !claimed {
        drop(current);
        wake(target);
        block_current();
        return;
    }
    // `target` is ours now: RUNNING, on no queue, its stack switched out
    // (BLOCKED is only set once its CPU finished the switch), and no waker
    // acts on a RUNNING thread.
    count(&HANDOFFS);
    switch_to(get(), cpu, current, target, true);
}

/// One wait of `sched::wait_once` (see there).
pub(super) fn wait_once(done: &dyn Fn() -> bool, hand_off: Option<Arc<Thread>>) -> bool {
    let interrupts_were_enabled = arch::irq::save_disable();
    assert!(
        interrupts_were_enabled,
        "sched: wait_once with interrupts disabled (a spin lock held?)"
    );
    let me = current_thread();
    assert!(!me.is_idle(), "sched: the idle thread must never block");
    // Dekker with the waker: we publish BLOCKING, then look; the waker
    // publishes its condition, then looks at our state (both SeqCst, and
    // the condition is read and written under a lock or SeqCst itself).
    me.state.store(state::BLOCKING, Ordering::SeqCst);
    if done() {
        // A waker may have turned BLOCKING into WOKEN meanwhile: either
        // way we keep running.
        me.state.store(state::RUNNING, Ordering::SeqCst);
        drop(me);
        if let Some(target) = hand_off {
            wake(target);
        }
        arch::irq::restore(interrupts_were_enabled);
        return true;
    }
    match hand_off {
        // `me` goes on to the switch (no second look-up of this thread).
        Some(target) => block_and_hand_off(me, target),
        None => {
            drop(me);
            block_current()
        }
    }
    arch::irq::restore(interrupts_were_enabled);
    false
}

/// Completes a switch on the thread that was just switched in: hands the
/// previous thread to wherever it goes now that its stack is free.
pub(super) fn finish_switch() {
    let scheduler = get();
    let Some(prev) = with_local(|l| l.prev.take()) else {
        return;
    };
    if prev.is_idle() {
        return;
    }
    match prev.state.load(Ordering::SeqCst) {
        state::READY => scheduler.make_ready(prev),
        state::BLOCKING => {
            if prev
                .state
                .compare_exchange(
                    state::BLOCKING,
                    state::BLOCKED,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_err()
            {
                // A waker saw it still on this CPU and marked it WOKEN.
                prev.state.store(state::READY, Ordering::SeqCst);
                scheduler.make_ready(prev);
            }
        }
        state::WOKEN => {
            prev.state.store(state::READY, Ordering::SeqCst);
            scheduler.make_ready(prev);
        }
        // Its stack is freed here, on a stack that is not its own; then
        // joiners are told.  The record goes with the last `Arc`.
        state::DEAD => prev.release_after_exit(),
        other => panic!(
            "sched: thread {} switched out in state {other}",
            prev.name()
        ),
    }
}

/// Makes a blocked thread runnable again (from any CPU).  Waking a thread
/// that is not blocked does nothing.
pub(super) fn wake(thread: Arc<Thread>) {
    loop {
        match thread.state.load(Ordering::SeqCst) {
            state::BLOCKING => {
                if thread
                    .state
                    .compare_exchange(
                        state::BLOCKING,
                        state::WOKEN,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
                {
                    // Its CPU re-queues it in `finish_switch` (or it never
                    // leaves, see `schedule`).
                    return;
                }
            }
            state::BLOCKED => {
                if thread
                    .state
                    .compare_exchange(
                        state::BLOCKED,
                        state::READY,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
                {
                    get().make_ready(thread);
                    return;
                }
            }
            _ => return,
        }
    }
}

/// The thread running on this CPU.
pub(super) fn current_thread() -> Arc<Thread> {
    with_local(|l| l.current.clone())
        .expect("sched: no current thread (scheduler not started on this cpu)")
}

/// Blocks the current thread, which has set itself BLOCKING and put itself
/// where a waker will find it.  Interrupts must be disabled.
pub(super) fn block_current() {
    schedule(Reason::Block);
}

/// Offers the CPU to another ready thread (nothing to do before the
/// scheduler runs on this CPU).
///
/// When nothing else is ready here the caller keeps the CPU, and a caller
/// that yields in a loop is spin-waiting for something another CPU must do
/// (wis workers yield until the main thread says go).  Such a yield ends
/// with `pause`, the spin-wait hint, so that the other CPU can make
/// progress when CPUs share an execution engine: an SMT sibling on
/// hardware, and QEMU's single-threaded TCG, where one host thread runs
/// every vCPU in turn and `pause` ends the running vCPU's turn ("let
/// another CPU run").  Under `-icount` (tools/icount) its absence was a
/// hang after `init: started` on 2 vCPUs: worker 0's sched_yield loop on
/// vCPU 0 kept vCPU 1 from running at all (the QEMU monitor showed vCPU 1
/// parked for tens of seconds on the first instruction of the
/// reschedule-IPI handler it had just entered, interrupts off, while vCPU
/// 0 went round its yield loop), so nothing vCPU 1 had to do (worker 1 is
/// pinned there) happened and worker 0 waited forever.  Even idle, vCPU 1 took 2 timer
/// ticks in 2.26 s while vCPU 0 was busy (226 on vCPU 0).
pub(super) fn yield_now() {
    if !started_here() {
        return;
    }
    let interrupts_were_enabled = arch::irq::save_disable();
    let switched = schedule(Reason::Yield);
    arch::irq::restore(interrupts_were_enabled);
    if !switched {
        // The spin-wait hint (see above): lets a CPU sharing our execution
        // engine (SMT sibling, a vCPU of single-threaded TCG) run.
        core::hint::spin_loop();
    }
}

/// Blocks the current thread for at least `ns` nanoseconds (tick
/// granularity: it is woken by the first timer tick past the deadline).
/// Before the scheduler runs on this CPU (early boot) it busy-waits.
pub(super) fn sleep_ns(ns: u64) {
    if ns == 0 {
        yield_now();
        return;
    }
    let deadline_ns = arch::time::now_ns().saturating_add(ns);
    if !started_here() {
        while arch::time::now_ns() < deadline_ns {
            core::hint::spin_loop();
        }
        return;
    }
    while arch::time::now_ns() < deadline_ns {
        let interrupts_were_enabled = arch::irq::save_disable();
        assert!(
            interrupts_were_enabled,
            "sched: sleep_ns with interrupts disabled (a spin lock held?)"
        );
        let me = current_thread();
        assert!(!me.is_idle(), "sched: the idle thread must never sleep");
        me.state.store(state::BLOCKING, Ordering::SeqCst);
        with_local(|l| {
            l.sleepers.push(Sleeper {
                deadline_ns,
                thread: me,
            })
        });
        block_current();
        arch::irq::restore(interrupts_were_enabled);
    }
}

/// Ends the current thread (its closure returned).
pub(super) fn exit_current() -> ! {
    arch::irq::save_disable();
    let me = current_thread();
    me.state.store(state::DEAD, Ordering::SeqCst);
    drop(me);
    schedule(Reason::Exit);
    unreachable!("sched: a dead thread was resumed");
}

/// Creates a thread and makes it runnable.
pub(super) fn spawn(
    name: &str,
    affinity: Option<usize>,
    entry: Box<dyn FnOnce() + Send + 'static>,
) -> Result<Arc<Thread>, SpawnError> {
    let scheduler = try_get().ok_or(SpawnError::NotInitialized)?;
    let mask = match affinity {
        Some(cpu) if cpu >= scheduler.cpu_count() => {
            return Err(SpawnError::NoSuchCpu {
                cpu,
                cpu_count: scheduler.cpu_count(),
            });
        }
        Some(cpu) => 1u64 << cpu,
        None => u64::MAX,
    };
    spawn_with_mask(name, mask, None, entry)
}

/// Creates a thread allowed on the CPUs of `mask` (restricted to existing
/// CPUs; an empty result is an error), optionally a user thread.
pub(super) fn spawn_with_mask(
    name: &str,
    mask: u64,
    user: Option<Arc<dyn super::thread::UserContext>>,
    entry: Box<dyn FnOnce() + Send + 'static>,
) -> Result<Arc<Thread>, SpawnError> {
    let scheduler = try_get().ok_or(SpawnError::NotInitialized)?;
    let mask = mask & scheduler.cpu_mask();
    if mask == 0 {
        return Err(SpawnError::NoSuchCpu {
            cpu: 64,
            cpu_count: scheduler.cpu_count(),
        });
    }
    let affinity = (mask.count_ones() == 1).then(|| mask.trailing_zeros() as usize);
    // Threads start on the spawning CPU when allowed; idle CPUs steal them.
    let me = arch::cpu::id();
    let home = if mask & (1 << me) != 0 {
        me
    } else {
        mask.trailing_zeros() as usize
    };
    let thread = Thread::new_spawned(
        name,
        if mask == scheduler.cpu_mask() {
            u64::MAX
        } else {
            mask
        },
        home,
        user,
        entry,
    )?;
    log::debug!(
        "sched: spawned thread {} {:?}, affinity {:?}, stack top {:#x}",
        thread.id(),
        thread.name(),
        affinity,
        thread.kernel_stack_top().unwrap_or(0)
    );
    scheduler.make_ready(thread.clone());
    Ok(thread)
}

/// Creates this CPU's idle thread and makes it current; returns the top of
/// its stack, which the caller moves onto.
fn become_idle() -> usize {
    let interrupts_were_enabled = arch::irq::save_disable();
    let cpu = arch::cpu::id();
    let idle = Thread::new_idle(cpu);
    let top = idle.stack_top();
    with_local(|l| {
        assert!(l.current.is_none(), "sched: cpu {cpu} started twice");
        l.idle = Some(idle.clone());
        l.current = Some(idle);
    });
    get().online.fetch_add(1, Ordering::AcqRel);
    arch::irq::restore(interrupts_were_enabled);
    top
}

/// The idle thread: run whatever is ready (local, else stolen), else halt
/// until the next interrupt (timer tick or reschedule IPI).
fn idle_loop() -> ! {
    let scheduler = get();
    // The idle thread is pinned: this id stays right.
    let cpu = arch::cpu::id();
    loop {
        arch::irq::save_disable();
        // Flag first, then look (idle protocol in `make_ready`).
        scheduler
            .cpus
            .remote(cpu)
            .idle
            .store(true, Ordering::SeqCst);
        if schedule(Reason::Idle) {
            // Back because the thread(s) we ran blocked or exited: look again.
            continue;
        }
        count(&IDLE_HALTS);
        arch::irq::enable_and_halt();
    }
}

/// `kernel_main`, handed from `start_bsp` to `bsp_idle_entry` across the
/// stack change.
static KERNEL_MAIN: AtomicUsize = AtomicUsize::new(0);

pub(super) fn start_bsp(kernel_main: fn() -> !) -> ! {
    KERNEL_MAIN.store(kernel_main as usize, Ordering::Release);
    let top = become_idle();
    // SAFETY: the idle thread's stack is fresh and lives as long as the
    // thread (forever); nothing on the boot stack is needed any more.
    unsafe { context::run_on_stack(top, bsp_idle_entry) }
}

extern "C" fn bsp_idle_entry() -> ! {
    let raw = KERNEL_MAIN.load(Ordering::Acquire);
    // SAFETY: stored by `start_bsp` from a `fn() -> !` just before.
    let kernel_main: fn() -> ! = unsafe { core::mem::transmute::<usize, fn() -> !>(raw) };
    // Pinned to the boot CPU: the lines it prints come from CPU 0, and a
    // test that wants "another CPU" can rely on it not being there.
    if let Err(err) = spawn("main", Some(0), Box::new(move || kernel_main())) {
        panic!("sched: cannot start the main kernel thread: {err}");
    }
    idle_loop()
}

pub(super) fn start_ap() -> ! {
    let top = become_idle();
    // SAFETY: as in `start_bsp`.
    unsafe { context::run_on_stack(top, ap_idle_entry) }
}

extern "C" fn ap_idle_entry() -> ! {
    idle_loop()
}

/// True once this CPU runs the scheduler (it has a current thread).
fn started_here() -> bool {
    try_get().is_some() && with_local(|l| l.current.is_some())
}

/// Whether this CPU runs its idle thread (false before it schedules).
pub(super) fn running_idle() -> bool {
    try_get().is_some() && with_local(|l| l.current.as_ref().is_none_or(|t| t.is_idle()))
}

/// Timer tick (interrupts disabled, on the interrupted thread's stack).
pub(super) fn on_timer_tick() {
    if !started_here() {
        return;
    }
    let now = arch::time::now_ns();
    // Wake expired sleepers one at a time, so that `wake` (which may take
    // run-queue locks and send IPIs) runs outside `with_local`.
    while let Some(thread) = with_local(|l| {
        let index = l.sleepers.iter().position(|s| s.deadline_ns <= now)?;
        Some(l.sleepers.swap_remove(index).thread)
    }) {
        wake(thread);
    }
    let slice_over = with_local(|l| {
        let running_idle = l.current.as_ref().is_some_and(|t| t.is_idle());
        if running_idle {
            // The idle loop re-checks the queues as soon as `hlt` returns.
            return false;
        }
        l.slice_left = l.slice_left.saturating_sub(1);
        l.slice_left == 0
    });
    // Not while the thread holds a VM range lock: it may wait for TLB
    // shootdown acknowledgements with interrupts on (memory::vm::lock);
    // the slice stays over, so the next tick after the unlock preempts.
    if slice_over && !crate::memory::vm::holds_vm_lock() {
        schedule(Reason::Preempt);
    }
}

/// Reschedule IPI (interrupts disabled).  Its job is done by arriving: it
/// ends the target's `hlt`, and the idle loop then looks at the queues.  A
/// busy CPU picks the new thread up at the end of the current time slice.
pub(super) fn on_resched_ipi() {}

/// Arms a timer wakeup of the current thread at `deadline_ns` (it must be
/// about to block with interrupts off).  The entry may outlive the wait:
/// a late wakeup of a thread that is no longer blocked does nothing, and a
/// thread blocked on something else re-checks its condition (every wait
/// loops), so a stale entry costs at most one spurious wakeup.
pub(super) fn arm_wakeup(deadline_ns: u64, thread: Arc<Thread>) {
    with_local(|l| {
        l.sleepers.push(Sleeper {
            deadline_ns,
            thread,
        })
    });
}

/// Changes a thread's allowed CPUs (`mask` restricted to existing CPUs;
/// empty is refused).  The calling thread moves at once when its CPU is no
/// longer allowed; another thread moves when it next passes the scheduler.
pub(super) fn set_affinity(thread: &Arc<Thread>, mask: u64) -> Result<(), ()> {
    let scheduler = get();
    let mask = mask & scheduler.cpu_mask();
    if mask == 0 || thread.is_idle() {
        return Err(());
    }
    thread.set_affinity_mask(if mask == scheduler.cpu_mask() {
        u64::MAX
    } else {
        mask
    });
    let me = current_thread();
    if Arc::ptr_eq(&me, thread) && !me.can_run_on(arch::cpu::id()) {
        drop(me);
        yield_now();
    }
    Ok(())
}
