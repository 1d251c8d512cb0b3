//! Run modes of the kernel (docs/CONTRACTS.md §3/§4): `selfcheck`,
//! `stress:SECS`, `bench`, `panic`, `idle`, and `init` (handed to
//! `proc::init`: PID 1 from the initramfs).
//!
//! Owns: the tests and benchmarks that run in the main kernel thread once
//! every CPU is online, and the result lines the host parses
//! (`selfcheck: ...`, `stress: ...`, `bench: {json}`).
//!
//! Invariants: a test never hangs on a broken kernel when it can avoid it
//! (joins are bounded and report which part did not finish); result lines
//! are printed whatever the log level; benchmarks never fail on a number.
//!
//! Must not: call into arch beyond time and CPU ids, or leave threads
//! running after a pass (every spawned thread is joined before reporting).

mod bench;
mod mem;
mod nettest;
mod selfcheck;
mod stress;
mod vmcheck;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::cmdline::RunMode;
use crate::sched::{self, JoinHandle};

/// Runs `mode`; returns the exit code (0 = pass).  `panic` and `idle` never
/// return.
pub fn run(mode: RunMode) -> u32 {
    match mode {
        RunMode::Selfcheck => selfcheck::run(),
        RunMode::Stress { secs } => stress::run(secs),
        RunMode::Bench => bench::run(),
        RunMode::Panic => panic_on_another_cpu(),
        RunMode::Idle => idle_forever(),
        RunMode::VmCheck => vmcheck::run(),
        RunMode::NetTest => nettest::run(),
        RunMode::Init => crate::proc::init::run_init(),
    }
}

/// Prints a result line the host reads, at any log level.
fn report(args: fmt::Arguments<'_>) {
    crate::log::report(args);
}

/// `run=panic`: panics in a thread pinned on the last CPU (a non-boot CPU
/// when there is more than one), so the host sees the panic path stop every
/// CPU and end QEMU with code 2.
fn panic_on_another_cpu() -> ! {
    let cpus = sched::cpu_count();
    let target = cpus - 1;
    report(format_args!(
        "panic: deliberate panic on cpu {target} of {cpus}"
    ));
    let handle = sched::spawn("panic-test", Some(target), move || {
        panic!(
            "deliberate panic (run=panic) on cpu {}",
            sched::current_cpu()
        );
    });
    handle.join();
    // The panic handler halts the machine; reaching this line means it
    // returned, which is itself a bug worth a panic on this CPU.
    panic!("run=panic: the panicking thread finished without stopping the kernel");
}

/// `run=idle`: stays up (every CPU halts between ticks) until QEMU is killed.
fn idle_forever() -> ! {
    report(format_args!(
        "idle: kernel is up; nothing to run, sleeping until killed"
    ));
    loop {
        sched::sleep_ns(1_000_000_000);
    }
}

/// Waits for every handle, polling, for at most `timeout_ns`.  On timeout
/// returns the names of the threads still running (they are left running:
/// the caller reports a failure and the kernel exits).
fn join_all_within(handles: Vec<JoinHandle>, timeout_ns: u64) -> Result<(), String> {
    let deadline = crate::arch::time::now_ns().saturating_add(timeout_ns);
    loop {
        if handles.iter().all(JoinHandle::is_finished) {
            // All finished: `join` returns at once, and frees their records.
            handles.into_iter().for_each(JoinHandle::join);
            return Ok(());
        }
        if crate::arch::time::now_ns() >= deadline {
            let mut stuck = String::new();
            for h in handles.iter().filter(|h| !h.is_finished()) {
                if !stuck.is_empty() {
                    stuck.push(',');
                }
                stuck.push_str(h.thread().name());
            }
            return Err(stuck);
        }
        sched::sleep_ns(1_000_000);
    }
}

/// Small, fast pseudo-random generator (xorshift64*): tests need varied,
/// reproducible sequences, not quality randomness.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // Never zero (xorshift's fixed point); mix the seed a little.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..bound` (`bound > 0`).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}
