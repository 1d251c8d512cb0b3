//! `run=selfcheck`: quick functional checks of the scheduler and memory on
//! every CPU (well under a second under TCG with 8 vCPUs).
//!
//! Owns the checks and the `selfcheck: pass` / `selfcheck: FAIL <reason>`
//! line.  Each check returns `Err(reason)`; the first failure is reported.
//!
//! Checks: every CPU runs a thread pinned to it and reports its id; a busy
//! thread is preempted by the timer (on the last CPU, so that with several
//! CPUs a broken timer gives a FAIL line rather than a hang); frame and heap
//! alloc/free with pattern checks on every CPU, with no frame lost; a
//! wait-queue ping-pong between two CPUs; `sleep_ns` sleeps at least as long
//! as asked; a bad affinity is refused; unpinned threads spread over the
//! CPUs (stealing).
//!
//! Must not: leave threads behind on success, or wait without a bound.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::mem::{TestBlock, TestFrame};
use super::{join_all_within, report, Rng};
use crate::arch::time::now_ns;
use crate::sched::{self, SpawnError, WaitQueue};

/// Bound on each phase; generous for 8 vCPUs sharing 2 host cores.
const PHASE_TIMEOUT_NS: u64 = 5_000_000_000;

/// One named check: `Err(reason)` fails the self-check.
type Check = (&'static str, fn() -> Result<(), String>);

pub fn run() -> u32 {
    let checks: [Check; 7] = [
        ("roll call", roll_call),
        ("preemption", preemption),
        ("memory on every cpu", memory_on_every_cpu),
        ("wait queue ping-pong", ping_pong),
        ("sleep", sleep_duration),
        ("bad affinity", bad_affinity),
        ("stealing", unpinned_threads_spread),
    ];
    let start = now_ns();
    for (name, check) in checks {
        if let Err(reason) = check() {
            report(format_args!("selfcheck: FAIL {name}: {reason}"));
            return 1;
        }
    }
    log::info!(
        "selfcheck: all checks done in {} ms",
        (now_ns() - start) / 1_000_000
    );
    report(format_args!("selfcheck: pass"));
    0
}

/// A thread pinned on each CPU writes the id it runs on.
fn roll_call() -> Result<(), String> {
    let cpus = sched::cpu_count();
    let answers: Arc<Vec<AtomicUsize>> =
        Arc::new((0..cpus).map(|_| AtomicUsize::new(usize::MAX)).collect());
    let handles = (0..cpus)
        .map(|cpu| {
            let answers = answers.clone();
            sched::spawn("roll-call", Some(cpu), move || {
                answers[cpu].store(sched::current_cpu(), Ordering::SeqCst);
            })
        })
        .collect();
    join_all_within(handles, PHASE_TIMEOUT_NS)
        .map_err(|stuck| format!("no answer from {stuck}"))?;
    for (cpu, answer) in answers.iter().enumerate() {
        let got = answer.load(Ordering::SeqCst);
        if got != cpu {
            return Err(format!("thread pinned on cpu {cpu} ran on cpu {got}"));
        }
    }
    Ok(())
}

/// A thread that never yields must not keep another thread pinned on the
/// same CPU from running: the timer preempts it.
fn preemption() -> Result<(), String> {
    let cpu = sched::cpu_count() - 1;
    let released = Arc::new(AtomicU64::new(0));
    let spinner = {
        let released = released.clone();
        sched::spawn("spinner", Some(cpu), move || {
            while released.load(Ordering::SeqCst) == 0 {
                core::hint::spin_loop();
            }
        })
    };
    let releaser = {
        let released = released.clone();
        sched::spawn("releaser", Some(cpu), move || {
            released.store(1, Ordering::SeqCst)
        })
    };
    join_all_within(alloc::vec![spinner, releaser], PHASE_TIMEOUT_NS).map_err(|stuck| {
        format!("a busy thread was never preempted on cpu {cpu}: {stuck} still running")
    })
}

/// On each CPU: 64 frames and 64 heap blocks of assorted sizes, filled,
/// verified, freed; afterwards `mm` has as many free frames as before.
fn memory_on_every_cpu() -> Result<(), String> {
    let before = super::mem::free_frames_after_flush();
    memory_round()?;
    let after = super::mem::free_frames_settled(before);
    if after != before {
        return Err(format!(
            "free frames {before} before, {after} after: frames lost"
        ));
    }
    Ok(())
}

fn memory_round() -> Result<(), String> {
    let cpus = sched::cpu_count();
    let errors: Arc<spin::Mutex<Vec<String>>> = Arc::new(spin::Mutex::new(Vec::new()));
    let handles = (0..cpus)
        .map(|cpu| {
            let errors = errors.clone();
            sched::spawn("mem-check", Some(cpu), move || {
                if let Err(e) = exercise_memory(cpu) {
                    errors.lock().push(format!("cpu {cpu}: {e}"));
                }
            })
        })
        .collect();
    join_all_within(handles, PHASE_TIMEOUT_NS)
        .map_err(|stuck| format!("did not finish: {stuck}"))?;
    let first_error = errors.lock().first().cloned();
    first_error.map_or(Ok(()), Err)
}

fn exercise_memory(cpu: usize) -> Result<(), String> {
    const COUNT: usize = 64;
    let mut frames = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let pattern = ((cpu as u64) << 32) | i as u64;
        frames.push(TestFrame::alloc(pattern).ok_or("out of frames")?);
    }
    let mut rng = Rng::new(cpu as u64 + 1);
    let blocks: Vec<TestBlock> = (0..COUNT)
        .map(|i| {
            let words = 1 + rng.below(if i % 8 == 0 { 2048 } else { 64 }) as usize;
            TestBlock::alloc(words, ((cpu as u64) << 40) ^ i as u64)
        })
        .collect();
    let mut result = Ok(());
    // Free everything even after an error, so later checks see clean memory.
    for frame in frames {
        result = result.and(frame.free());
    }
    for block in blocks {
        result = result.and(block.free());
    }
    result
}

/// Two threads on different CPUs (when there are two) hand a token back and
/// forth through one wait queue.
fn ping_pong() -> Result<(), String> {
    const ROUNDS: u64 = 200;
    let cpus = sched::cpu_count();
    let turn = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(WaitQueue::new());
    let player = |parity: u64, cpu: usize| {
        let turn = turn.clone();
        let queue = queue.clone();
        sched::spawn("ping-pong", Some(cpu), move || {
            for _ in 0..ROUNDS {
                queue.wait_until(|| turn.load(Ordering::SeqCst) % 2 == parity);
                turn.fetch_add(1, Ordering::SeqCst);
                queue.wake_all();
            }
        })
    };
    let handles = alloc::vec![player(0, 0), player(1, cpus - 1)];
    join_all_within(handles, PHASE_TIMEOUT_NS).map_err(|stuck| {
        format!(
            "stuck after {} of {} passes: {stuck}",
            turn.load(Ordering::SeqCst),
            2 * ROUNDS
        )
    })?;
    let passes = turn.load(Ordering::SeqCst);
    if passes != 2 * ROUNDS {
        return Err(format!("{passes} passes, expected {}", 2 * ROUNDS));
    }
    Ok(())
}

fn sleep_duration() -> Result<(), String> {
    const ASKED_NS: u64 = 20_000_000;
    let start = now_ns();
    sched::sleep_ns(ASKED_NS);
    let slept = now_ns() - start;
    if slept < ASKED_NS {
        return Err(format!("sleep_ns({ASKED_NS}) returned after {slept} ns"));
    }
    Ok(())
}

fn bad_affinity() -> Result<(), String> {
    let cpus = sched::cpu_count();
    match sched::try_spawn("bad-affinity", Some(cpus), || {}) {
        Err(SpawnError::NoSuchCpu { cpu, .. }) if cpu == cpus => Ok(()),
        Err(other) => Err(format!(
            "affinity {cpus} refused with the wrong error: {other}"
        )),
        Ok(handle) => {
            handle.join();
            Err(format!(
                "a thread pinned on cpu {cpus} (of {cpus}) was accepted"
            ))
        }
    }
}

/// Unpinned busy threads, all spawned from this CPU, end up running on more
/// than one CPU (idle CPUs steal them).  Trivially true on one CPU.
fn unpinned_threads_spread() -> Result<(), String> {
    let cpus = sched::cpu_count();
    if cpus == 1 {
        return Ok(());
    }
    // Bit `c` set: some thread ran on cpu `c` (64 CPUs at most).
    let seen = Arc::new(AtomicU64::new(0));
    let handles = (0..2 * cpus)
        .map(|_| {
            let seen = seen.clone();
            sched::spawn("spread", None, move || {
                let until = now_ns() + 20_000_000;
                while now_ns() < until {
                    seen.fetch_or(1 << sched::current_cpu(), Ordering::SeqCst);
                    core::hint::spin_loop();
                }
            })
        })
        .collect();
    join_all_within(handles, PHASE_TIMEOUT_NS)
        .map_err(|stuck| format!("did not finish: {stuck}"))?;
    let used = seen.load(Ordering::SeqCst).count_ones();
    if used < 2 {
        return Err(format!("{} unpinned threads all ran on one cpu", 2 * cpus));
    }
    Ok(())
}
