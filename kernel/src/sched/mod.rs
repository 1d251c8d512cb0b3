//! Kernel threads and the per-CPU scheduler.
//!
//! Owns: kernel threads (`spawn`, `JoinHandle`), the run queues (one per CPU,
//! or one global queue under `locks=global`), work stealing, timer
//! preemption, sleeping, wait queues with cross-CPU wakeups, the per-CPU
//! idle threads, and the scheduler statistics.
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
//! * Affinity: a thread pinned with `Some(cpu)` runs only on `cpu`; stealing
//!   and the global queue both respect it.
//! * Ablation (`locks=global`): one run queue under one lock replaces the
//!   per-CPU queues; everything else (wakeups, IPIs, preemption) is the same
//!   code, and there is nothing to steal.
//! * Wakeups: a thread made ready goes to its home CPU's queue (affinity, or
//!   where it last ran); if that CPU idles it gets a reschedule IPI, else an
//!   idle CPU (if any) gets one to steal an unpinned thread.
//!
//! Must not: sleep or block from interrupt context or from an idle thread,
//! or call into `mm` from the switch path other than through the heap
//! (dropping a dead thread frees its stack).

mod context;
mod lock;
mod runqueue;
mod scheduler;
mod thread;
mod waitqueue;

use alloc::boxed::Box;

pub use crate::cmdline::LockMode;
pub use thread::{JoinHandle, SpawnError};
pub use waitqueue::WaitQueue;

/// Sets up the scheduler for `cpu_count` CPUs (on the BSP, after `mm::init`,
/// before any `start_*`), with the run-queue layout of `mode`.  A second
/// call changes nothing and returns false.
pub fn init_with_mode(cpu_count: usize, mode: LockMode) -> bool {
    let fresh = scheduler::init(cpu_count, mode);
    if fresh {
        log::info!("sched: {cpu_count} cpus, run queues: {mode}");
    } else {
        log::warn!("sched: init called twice; keeping the first configuration");
    }
    fresh
}

/// Sets up the scheduler with the boot option `locks=` (docs/KERNEL-MODULES.md).
pub fn init(cpu_count: usize) {
    init_with_mode(cpu_count, crate::cmdline::lock_mode());
}

/// Entered by the BSP once every AP is up: the boot stack becomes CPU 0's
/// idle thread and `kernel_main` runs in a new kernel thread ("main"),
/// pinned to CPU 0, with interrupts enabled.
pub fn start_bsp(kernel_main: fn() -> !) -> ! {
    scheduler::start_bsp(kernel_main)
}

/// Entered by each AP after the BSP called `init`: its boot stack becomes
/// its idle thread.
pub fn start_ap() -> ! {
    scheduler::start_ap()
}

/// Called by the timer interrupt handler (after EOI, interrupts disabled).
/// May switch threads; the interrupted thread resumes here later.
pub fn on_timer_tick() {
    scheduler::on_timer_tick()
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

/// Number of CPUs the scheduler was set up for (0 before `init`).
pub fn cpu_count() -> usize {
    scheduler::try_get().map_or(0, |s| s.cpu_count())
}

/// The run-queue layout in use (`PerCpu` before `init`).
pub fn lock_mode() -> LockMode {
    scheduler::try_get().map_or(LockMode::PerCpu, |s| s.mode())
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
}

/// Current totals of the scheduler statistics.
pub fn stats() -> SchedStats {
    let sum = |c: &percpu::PerCpuCounter| c.sum().max(0) as u64;
    SchedStats {
        context_switches: sum(&scheduler::CONTEXT_SWITCHES),
        steals: sum(&scheduler::STEALS),
        ipis_sent: sum(&scheduler::IPIS_SENT),
        idle_halts: sum(&scheduler::IDLE_HALTS),
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
    }
}
