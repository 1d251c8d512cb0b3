//! Kernel threads and the per-CPU scheduler.
//!
//! Owns: kernel threads (`spawn`, `JoinHandle`), the run queues (one per CPU,
//! or one global queue under `locks=global`), work stealing, timer
//! preemption, sleeping, wait queues with cross-CPU wakeups, the direct
//! hand-off switch of synchronous IPC (`wait_once`), the per-CPU idle
//! threads, and the scheduler statistics.
//!
//! Files: `thread.rs` (thread record, stack, join), `context.rs` (the only
//! assembly: stack switch), `runqueue.rs`, `waitqueue.rs`, `lock.rs`
//! (interrupt-disabling spin lock), `scheduler.rs` (everything else).
//!
//! # Rules every part follows
//! * Interrupt flag: every context switch happens with interrupts disabled.
//!   Each thread's interrupt state lives on its own stack, saved by the code
//!   that disabled interrupts before entering the scheduler and restored by
//!   the same code once the thread is switched back in (for the timer and
//!   IPI paths, the interrupt gate clears IF and `iretq` restores it).  New
//!   threads start with interrupts enabled.
//! * A thread's stack is freed by another thread (never by itself): see
//!   `thread.rs`.
//! * Lock order: a wait-queue lock may be held while touching this CPU's
//!   per-CPU state, never while taking a run-queue lock; no code holds two
//!   run-queue locks; no lock is held across a switch.
//! * Affinity: a CPU bit mask per thread (`spawn`'s `Some(cpu)` is a
//!   one-bit mask; `set_affinity` changes it, e.g. `sched_setaffinity`); a
//!   thread runs only on CPUs of its mask, and leaves a CPU the mask no
//!   longer allows at its next pass through the scheduler; stealing
//!   and the global queue both respect it.
//! * Ablation (`locks=global`): one run queue under one lock replaces the
//!   per-CPU queues; everything else (wakeups, IPIs, preemption) is the same
//!   code, and there is nothing to steal.
//! * Direct hand-off (`wait_once` with a target, the IPC fastpath): a
//!   blocking thread may switch straight to a BLOCKED thread it woke,
//!   claiming it by compare-and-swap BLOCKED -> RUNNING (so no waker or
//!   queue can hold it), only when the target's affinity allows this CPU;
//!   interrupts are off and no lock is held, as for any switch, and the
//!   target inherits the rest of the time slice.
//! * Wakeups: a thread made ready goes to its home CPU's queue (affinity, or
//!   where it last ran); if that CPU idles it gets a reschedule IPI, else an
//!   idle CPU (if any) gets one to steal an unpinned thread.
//!
//! * User threads (`spawn_user`) carry a `UserContext` whose hooks the
//!   scheduler calls around every switch (FPU state, address space, TSS
//!   `rsp0`); the top `TRAP_FRAME_BYTES` of every kernel stack hold the
//!   user trap frame.  Idle threads run on heap stacks too (the CPU moves
//!   off the loader's boot stack in `start_*`), because the boot stack may
//!   be identity-mapped low memory that user address spaces do not map.
//!
//! Must not: sleep or block from interrupt context or from an idle thread,
//! or call into `mm` from the switch path other than through the heap
//! (dropping a dead thread frees its stack).

mod context;
pub mod cputime;
mod lock;
mod runqueue;
mod scheduler;
mod thread;
mod waitqueue;

use alloc::boxed::Box;

use alloc::sync::Arc;
pub use lock::IrqSpinLock;
pub use percpu::{cpu_count, LockMode};
pub use thread::{JoinHandle, SpawnError, Thread, UserContext, TRAP_FRAME_BYTES};
pub use waitqueue::WaitQueue;

/// Sets up the scheduler (on the BSP, after `mm::init`, before any
/// `start_*`) for `percpu::cpu_count()` CPUs, with the run-queue layout of
/// the boot option `locks=` (`percpu::lock_mode()`,
/// docs/KERNEL-MODULES.md).  A second call changes nothing and returns
/// false.
pub fn init() -> bool {
    let fresh = scheduler::init();
    if fresh {
        log::info!(
            "sched: {} cpus, run queues: {}",
            cpu_count(),
            percpu::lock_mode()
        );
    } else {
        log::warn!("sched: init called twice; keeping the first configuration");
    }
    fresh
}

/// Entered by the BSP once every AP is up: CPU 0 moves to a fresh stack
/// and becomes its idle thread and `kernel_main` runs in a new kernel thread ("main"),
/// pinned to CPU 0, with interrupts enabled.
pub fn start_bsp(kernel_main: fn() -> !) -> ! {
    crate::arch::usermode::init_cpu();
    scheduler::start_bsp(kernel_main)
}

/// Entered by each AP after the BSP called `init`: it sets up user mode
/// (`arch::usermode::init_cpu`), moves to a fresh stack and becomes its
/// idle thread.
pub fn start_ap() -> ! {
    crate::arch::usermode::init_cpu();
    scheduler::start_ap()
}

/// Called by the timer interrupt handler (after EOI, interrupts disabled).
/// May switch threads; the interrupted thread resumes here later.
pub fn on_timer_tick() {
    scheduler::on_timer_tick()
}

/// Whether this CPU runs its idle thread now (interrupts off: for the
/// tick's time accounting, `cputime`).
pub fn running_idle() -> bool {
    scheduler::running_idle()
}

/// Whether the current context may block (`wait_once`): interrupts are
/// on and this is not a CPU's idle thread.  False in the scheduler's own
/// paths (`finish_switch` drops the last reference of a dead thread, and
/// with it maybe a process's last file), in interrupt handlers and under
/// an interrupt-disabling lock: work that would wait there is deferred.
pub fn may_block() -> bool {
    let enabled = crate::arch::irq::save_disable();
    let idle = scheduler::running_idle();
    crate::arch::irq::restore(enabled);
    enabled && !idle
}

/// Called by the reschedule IPI handler (after EOI, interrupts disabled).
pub fn on_resched_ipi() {
    scheduler::on_resched_ipi()
}

/// Starts a kernel thread running `f`.  `affinity: Some(cpu)` pins it to
/// `cpu`; `None` lets it run anywhere (and be stolen by idle CPUs).
///
/// Panics when the affinity names a CPU that does not exist or no stack can
/// be allocated; use [`try_spawn`] to handle those as errors.
pub fn spawn(name: &str, affinity: Option<usize>, f: impl FnOnce() + Send + 'static) -> JoinHandle {
    match try_spawn(name, affinity, f) {
        Ok(handle) => handle,
        Err(err) => panic!("sched::spawn({name:?}): {err}"),
    }
}

/// Like [`spawn`], but reports a bad affinity or memory exhaustion.
pub fn try_spawn(
    name: &str,
    affinity: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle, SpawnError> {
    scheduler::spawn(name, affinity, Box::new(f)).map(JoinHandle::new)
}

/// Starts a thread that runs `entry` in the kernel and then (by `entry`'s
/// own choice) in user mode, with `user`'s hooks called around every
/// switch.  `mask`: the CPUs it may run on (bit n = CPU n; restricted to
/// existing CPUs, must not end up empty).  The thread's trap frame area is
/// the top `TRAP_FRAME_BYTES` of its kernel stack (`Thread::stack_top`).
pub fn spawn_user(
    name: &str,
    mask: u64,
    user: Arc<dyn UserContext>,
    entry: impl FnOnce() + Send + 'static,
) -> Result<Arc<Thread>, SpawnError> {
    scheduler::spawn_with_mask(name, mask, Some(user), Box::new(entry))
}

/// The thread running on this CPU (`None` before the scheduler runs here).
pub fn current() -> Option<Arc<Thread>> {
    scheduler::try_get()?;
    Some(scheduler::current_thread())
}

/// Fills the calling thread's own trap frame area (the top
/// `TRAP_FRAME_BYTES` of its kernel stack) with `frame`: what a new user
/// thread's entry closure does before it enters user mode.  Does nothing
/// outside a thread or in a thread without a user context.
pub fn write_own_trap_frame(frame: crate::arch::idt::InterruptFrame) {
    let Some(me) = current().filter(|t| t.user_context().is_some()) else {
        return;
    };
    let ptr = (me.stack_top() - TRAP_FRAME_BYTES) as *mut crate::arch::idt::InterruptFrame;
    drop(me);
    // SAFETY: the frame area at the top of this (the calling) thread's own
    // kernel stack is reserved for it (thread.rs invariant) and is not in
    // use while the thread runs kernel code before entering user mode;
    // nothing else refers to it.
    unsafe { ptr.write(frame) };
}

/// Makes `thread` runnable if it is blocked (a "kick": it re-checks the
/// condition it waits for).  Does nothing to a running or ready thread.
pub fn wake_thread(thread: &Arc<Thread>) {
    scheduler::wake(thread.clone())
}

/// One wait for a condition that some other thread makes true and then
/// announces with [`wake_thread`] (the primitive of synchronous IPC, which
/// keeps its own queues).  Sets the caller BLOCKING, then evaluates
/// `done` (interrupts off: it must be short and not block; it reads the
/// condition under the lock its waker writes it under).  When `done`
/// holds, returns true at once.  Otherwise blocks until woken (by the
/// condition's waker, or a kick such as a signal) and returns false: the
/// caller re-checks and loops.
///
/// `hand_off`: a thread the caller just gave work to (an IPC server it
/// sent a message, a client it replied to).  It is woken in every case;
/// when it is fully blocked and may run on this CPU, this CPU switches
/// straight to it instead of passing through the run queues (the IPC
/// fastpath), donating the rest of the caller's time slice.
///
/// Must be called with interrupts enabled and no spin lock held.
pub fn wait_once(done: &dyn Fn() -> bool, hand_off: Option<Arc<Thread>>) -> bool {
    scheduler::wait_once(done, hand_off)
}

/// Changes the CPUs `thread` may run on (bit n = CPU n).  Err when no
/// existing CPU is left in `mask`.  The caller moves at once if its CPU is
/// no longer allowed.
pub fn set_affinity(thread: &Arc<Thread>, mask: u64) -> Result<(), ()> {
    scheduler::set_affinity(thread, mask)
}

/// Ends the calling thread now (its stack is freed by the next thread on
/// this CPU).  Every `Arc` the caller still holds on its stack leaks: drop
/// them first.
pub fn exit_current() -> ! {
    scheduler::exit_current()
}

/// Lets other ready threads on this CPU run first.
pub fn yield_now() {
    scheduler::yield_now()
}

/// Blocks the calling thread for at least `ns` nanoseconds (resolution: one
/// timer tick, `1e9 / arch::TICK_HZ` ns).  `sleep_ns(0)` just yields.
pub fn sleep_ns(ns: u64) {
    scheduler::sleep_ns(ns)
}

/// The CPU the caller runs on.  Without pinning (or interrupts disabled) it
/// may be stale by the time it is used: a hint, except for pinned threads.
pub fn current_cpu() -> usize {
    crate::arch::cpu::id()
}

/// Number of CPUs that entered the scheduler so far.
pub fn cpus_online() -> usize {
    scheduler::try_get().map_or(0, |s| s.online())
}

/// Waits until every CPU runs the scheduler (for the main thread, before it
/// prints `cpus online: N`), at most `timeout_ns`.  Returns the number
/// online: `Ok(all)`, or `Err(fewer)` on timeout.
pub fn wait_for_all_cpus(timeout_ns: u64) -> Result<usize, usize> {
    let expected = cpu_count();
    let deadline = crate::arch::time::now_ns().saturating_add(timeout_ns);
    loop {
        let online = cpus_online();
        if online >= expected {
            return Ok(online);
        }
        if crate::arch::time::now_ns() >= deadline {
            return Err(online);
        }
        sleep_ns(1_000_000);
    }
}

/// Scheduler statistics, summed over CPUs (per-CPU counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedStats {
    pub context_switches: u64,
    pub steals: u64,
    pub ipis_sent: u64,
    pub idle_halts: u64,
    /// Direct IPC hand-offs (`wait_once` switching straight to its target).
    pub handoffs: u64,
}

/// Current totals of the scheduler statistics.
pub fn stats() -> SchedStats {
    let sum = |c: &percpu::PerCpuCounter| c.sum().max(0) as u64;
    SchedStats {
        context_switches: sum(&scheduler::CONTEXT_SWITCHES),
        steals: sum(&scheduler::STEALS),
        ipis_sent: sum(&scheduler::IPIS_SENT),
        idle_halts: sum(&scheduler::IDLE_HALTS),
        handoffs: sum(&scheduler::HANDOFFS),
    }
}

/// The statistics of one CPU.
pub fn cpu_stats(cpu: usize) -> SchedStats {
    let local = |c: &percpu::PerCpuCounter| c.local_value(cpu).max(0) as u64;
    SchedStats {
        context_switches: local(&scheduler::CONTEXT_SWITCHES),
        steals: local(&scheduler::STEALS),
        ipis_sent: local(&scheduler::IPIS_SENT),
        idle_halts: local(&scheduler::IDLE_HALTS),
        handoffs: local(&scheduler::HANDOFFS),
    }
}
