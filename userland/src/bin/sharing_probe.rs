//! `sharing_probe`: a known pattern of cache-line sharing between two CPUs,
//! marked for the sharing plugin (docs/SHARING.md), so the plugin's
//! counting can be checked: one window per CPU per phase, then a label and
//! a dump marker.  The markers are NOPs, so it runs the same without the
//! plugin, on any system.
//!
//! Phases (label = phase number; each has 2 operations):
//!   1 both CPUs write one line          -> 1 conflict line, 1 shared-written
//!   2 each CPU writes its own line      -> 0
//!   3 both CPUs read one line           -> 0
//!   4 CPU 0 writes a line, CPU 1 reads  -> 1 conflict line, 0 shared-written
//!
//! Thread A runs on CPU 0, thread B on CPU 1 (both alive throughout, so
//! their stacks stay distinct); the main thread hands the turn A, B, main
//! with one atomic step word.  Every line is written once before the
//! threads start, so no window takes a page fault.  Prints `cpu A: 0`,
//! `cpu B: 1`, one line per phase and `sharing_probe: pass`; needs 2 CPUs.

use std::arch::asm;
use std::sync::atomic::{AtomicU64, Ordering};
use userland::{errno, errno_name};

#[repr(C, align(64))]
struct Line([AtomicU64; 8]);

impl Line {
    const fn new() -> Line {
        Line([const { AtomicU64::new(0) }; 8])
    }
}

static SHARED: Line = Line::new();
static PRIVATE_A: Line = Line::new();
static PRIVATE_B: Line = Line::new();
static READ_ONLY: Line = Line::new();
static ONE_WRITER: Line = Line::new();
/// The turn: 3 * phase + 0 (A), + 1 (B), + 2 (main).
static STEP: AtomicU64 = AtomicU64::new(0);
static SINK: AtomicU64 = AtomicU64::new(0);

const PHASES: u64 = 4;

macro_rules! marker {
    ($disp:literal) => {
        // SAFETY: a multi-byte NOP (`0F 1F 80 disp32`): it reads no memory
        // (the address is never accessed) and changes no register or flag.
        // Not `nomem`: the compiler must not move memory accesses across a
        // marker (out of or into a window).
        unsafe {
            asm!(
                concat!("nop dword ptr [rax + ", $disp, "]"),
                options(nostack, preserves_flags)
            )
        }
    };
}

fn begin() {
    marker!("0x5CA10001");
}
fn end() {
    marker!("0x5CA10002");
}
fn dump(label: u64) {
    // The label marker's displacement must be a constant: one per phase.
    match label {
        1 => marker!("0x5CA20001"),
        2 => marker!("0x5CA20002"),
        3 => marker!("0x5CA20003"),
        _ => marker!("0x5CA20004"),
    }
    marker!("0x5CA10003");
}

fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` (it checks `cpu`).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(errno_name(errno()));
    }
    // SAFETY: no arguments; returns the CPU or -1.
    let now = unsafe { libc::sched_getcpu() };
    if now != cpu as i32 {
        return Err(format!("running on CPU {now} after pinning to {cpu}"));
    }
    Ok(())
}

/// A store the compiler keeps where it is (a write-only static's plain
/// stores would be removed).
fn store(word: &AtomicU64, v: u64) {
    // SAFETY: `word` is a live, aligned u64; concurrent access to it is
    // only through atomics or these volatile accesses of the same size.
    unsafe { std::ptr::write_volatile(word.as_ptr(), v) }
}

fn load(word: &AtomicU64) -> u64 {
    // SAFETY: as in `store`.
    unsafe { std::ptr::read_volatile(word.as_ptr()) }
}

fn wait_for(step: u64) {
    while STEP.load(Ordering::Acquire) != step {
        std::thread::yield_now();
    }
}

/// One CPU's part of `phase` (0: A on CPU 0, 1: B on CPU 1), in a window.
fn act(phase: u64, who: usize) {
    let v = phase * 10 + who as u64;
    match (phase, who) {
        (1, _) => {
            begin();
            store(&SHARED.0[who], v);
            end();
        }
        (2, 0) => {
            begin();
            store(&PRIVATE_A.0[0], v);
            end();
        }
        (2, _) => {
            begin();
            store(&PRIVATE_B.0[0], v);
            end();
        }
        (3, _) => {
            begin();
            let x = load(&READ_ONLY.0[who]);
            end();
            SINK.fetch_add(x, Ordering::Relaxed);
        }
        (_, 0) => {
            begin();
            store(&ONE_WRITER.0[0], v);
            end();
        }
        _ => {
            begin();
            let x = load(&ONE_WRITER.0[1]);
            end();
            SINK.fetch_add(x, Ordering::Relaxed);
        }
    }
}

/// Takes its turns even when pinning failed (without acting), so the
/// hand-off never stalls.
fn worker(who: usize) -> Result<(), String> {
    let pinned = pin_to(who);
    for phase in 1..=PHASES {
        wait_for(3 * phase + who as u64);
        if pinned.is_ok() {
            act(phase, who);
        }
        STEP.store(3 * phase + who as u64 + 1, Ordering::Release);
    }
    pinned
}

fn main() {
    for line in [&SHARED, &PRIVATE_A, &PRIVATE_B, &READ_ONLY, &ONE_WRITER] {
        for word in &line.0 {
            word.store(1, Ordering::Relaxed);
        }
    }
    let a = std::thread::spawn(|| worker(0));
    let b = std::thread::spawn(|| worker(1));
    let mut ok = true;
    for phase in 1..=PHASES {
        STEP.store(3 * phase, Ordering::Release);
        wait_for(3 * phase + 2);
        dump(phase);
        println!("phase {phase}: dumped");
    }
    for (name, cpu, handle) in [("A", 0, a), ("B", 1, b)] {
        match handle.join() {
            Ok(Ok(())) => println!("cpu {name}: {cpu}"),
            Ok(Err(e)) => {
                println!("cpu {name}: {e} <-- WRONG");
                ok = false;
            }
            Err(_) => {
                println!("cpu {name}: panicked <-- WRONG");
                ok = false;
            }
        }
    }
    println!("sharing_probe: {}", if ok { "pass" } else { "FAIL" });
    std::process::exit(if ok { 0 } else { 1 });
}
