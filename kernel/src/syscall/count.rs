//! Per-syscall call counts and the set of dispatched numbers (`syscount`).
//!
//! Owns: one counter per syscall number per CPU (bumped by `dispatch` on
//! every call), and the probe that asks the syscall table (`table.rs`)
//! which numbers it serves (so the "dispatched" set follows the table, with
//! no second list).  With
//! the kernel command-line word `syscount`, PID 1's exit prints (before
//! `init exit:`) `syscount: dispatched=N,N,...` and
//! `syscount: called=N:COUNT,...`; the syscall-coverage test reads them.
//!
//! Invariants: the hot path writes only the calling CPU's own counter line
//! (a migration between reading the CPU id and the add only makes that one
//! add land on another CPU's line, still atomically); numbers at or above
//! `COUNTED` are not counted.  A probe runs no handler: while the probing
//! task runs the table, every served row answers `PROBE_SERVED` without
//! running, and `unsupported` (unserved rows) answers `PROBE_UNSERVED`
//! without logging; any other answer means a row bypassed the table's
//! probe check, and the report names those numbers
//! (`syscount: unprobed=`).
//!
//! Must not: take a lock or allocate on the counting path; change what any
//! call does outside a probe.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use percpu::PerCpu;

use crate::arch::idt::InterruptFrame;

/// Numbers below this are counted (Linux x86_64 numbers end near 460).
pub const COUNTED: usize = 512;

/// Calls per number, one array per CPU (each on its own cache lines).
static COUNTS: PerCpu<[AtomicU64; COUNTED]> =
    percpu::per_cpu!([const { AtomicU64::new(0) }; COUNTED]);

/// Counts one call of `nr` on this CPU.  The hot path: one relaxed add to
/// this CPU's own slot.
#[inline]
pub fn record(nr: u64) {
    if let Some(slot) = COUNTS.remote(crate::arch::cpu::id()).get(nr as usize) {
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Calls of `nr` summed over every CPU.
pub fn calls(nr: usize) -> u64 {
    COUNTS.iter().map(|c| c[nr].load(Ordering::Relaxed)).sum()
}

/// The probing task (its `current_task` pointer with bit 0 set), or 0.
///
/// Shared, not per-CPU, because a probe belongs to a task, not a CPU (a
/// thread preempted between reading a per-CPU flag and acting on it could
/// see another CPU's probe).  It is written twice per boot, and only in a
/// `syscount` run at PID 1's exit, so on the hot path it is a read of a
/// line nobody writes: it never bounces between CPUs.
static PROBER: AtomicUsize = AtomicUsize::new(0);

/// This task's identity for `PROBER` (task pointers are aligned, so bit 0
/// is free; syscalls only come from tasks, never from kernel threads).
fn me() -> usize {
    crate::arch::cpu::current_task() | 1
}

/// Whether the calling task is probing the table (then no handler runs).
#[inline]
pub fn probing() -> bool {
    let prober = PROBER.load(Ordering::Relaxed);
    prober != 0 && prober == me()
}

/// What a served arm answers during a probe (a value no real call returns
/// through this path: the probe's fake frame never reaches user space).
pub const PROBE_SERVED: usize = 0x5359_5343_4f55_4e54; // "SYSCOUNT"

/// What `unsupported` (the end of the chain) answers during a probe.
pub const PROBE_UNSERVED: usize = 0x554e_5345_5256_4544; // "UNSERVED"

/// Whether `dispatch` serves `nr` (asks every table, runs no handler);
/// `None` when the answer was neither: a table not written with
/// table row ran a real handler (with zero arguments), which the
/// report names so that the coverage test fails.  Must be called from a
/// task (PID 1's exit path is one).
// The one exception to `syscall/`'s `deny(unsafe_code)`: a blank frame.
#[allow(unsafe_code)]
fn served(nr: u64) -> Option<bool> {
    // SAFETY: `InterruptFrame` is `repr(C)` and all `u64`: all-zero is a
    // valid value.
    let mut frame: InterruptFrame = unsafe { core::mem::zeroed() };
    frame.rax = nr;
    super::table::route(&mut frame);
    match frame.rax as usize {
        PROBE_SERVED => Some(true),
        PROBE_UNSERVED => Some(false),
        _ => None,
    }
}

/// Prints the `syscount:` lines when the command line asks for them.
/// Called on PID 1's exit, before `init exit:`.
pub fn report_if_asked() {
    let asked = crate::boot::cmdline().is_ok_and(|line| crate::cmdline::has_word(line, "syscount"));
    if !asked {
        return;
    }
    PROBER.store(me(), Ordering::Relaxed);
    let mut dispatched = alloc::string::String::new();
    let mut unprobed = alloc::string::String::new();
    for nr in 0..COUNTED as u64 {
        let list = match served(nr) {
            Some(true) => &mut dispatched,
            Some(false) => continue,
            None => &mut unprobed,
        };
        let sep = if list.is_empty() { "" } else { "," };
        list.push_str(&alloc::format!("{sep}{nr}"));
    }
    PROBER.store(0, Ordering::Relaxed);
    if !unprobed.is_empty() {
        crate::log::report(format_args!(
            "syscount: unprobed={unprobed} (a table row without the probe check)"
        ));
    }
    let mut called = alloc::string::String::new();
    for nr in 0..COUNTED {
        let n = calls(nr);
        if n != 0 {
            let sep = if called.is_empty() { "" } else { "," };
            called.push_str(&alloc::format!("{sep}{nr}:{n}"));
        }
    }
    crate::log::report(format_args!("syscount: dispatched={dispatched}"));
    crate::log::report(format_args!("syscount: called={called}"));
}
