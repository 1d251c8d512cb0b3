//! The panic handler: stop every other CPU, report, end QEMU with code 2.
//!
//! Owns the "panicking" state and the record of which CPUs took the stop
//! NMI. Invariants: only the first panic reports; a later panic on another
//! CPU halts that CPU (it is about to be stopped anyway); a panic while
//! reporting (same CPU) skips straight to the exit. The report says which
//! other CPUs acknowledged the stop (`panic: other cpus stopped: K of N
//! (ids)`), so a test can check that every CPU stopped.
//! Must not: allocate, wait for other CPUs without a bound, or take a lock
//! without a bound.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::arch;
use crate::arch::cpu::MAX_CPUS;

/// CPU id + 1 of the CPU that owns the panic; 0 = no panic yet.
static PANIC_CPU: AtomicUsize = AtomicUsize::new(0);

/// Bit n: CPU n took the stop NMI and is halted. Shared by design: it is
/// written once per CPU, only while the machine goes down.
static STOPPED: AtomicU64 = AtomicU64::new(0);

/// How long the panicking CPU waits for the others to acknowledge the stop.
const STOP_WAIT_NS: u64 = 2_000_000_000;
/// The same bound in spins, for a panic before the TSC is calibrated.
const STOP_WAIT_SPINS: u64 = 200_000_000;

const _: () = assert!(MAX_CPUS <= 64, "STOPPED is one 64-bit mask");

/// The NMI handler's "halt here" while the system goes down: records that
/// this CPU stopped, then halts it for good.
pub fn stopped_here() -> ! {
    STOPPED.fetch_or(1 << arch::cpu::id(), Ordering::AcqRel);
    arch::halt_forever();
}

/// Waits (bounded) until every other online CPU acknowledged the stop NMI;
/// returns (online others, those that stopped) as masks.
fn wait_for_others(me: usize) -> (u64, u64) {
    let others = (0..MAX_CPUS)
        .filter(|&id| id != me && arch::cpu::get(id).is_online())
        .fold(0u64, |mask, id| mask | 1 << id);
    let start = arch::time::now_ns();
    let mut spins = 0u64;
    loop {
        let stopped = STOPPED.load(Ordering::Acquire) & others;
        let waited = arch::time::now_ns().saturating_sub(start);
        if stopped == others || waited >= STOP_WAIT_NS || spins >= STOP_WAIT_SPINS {
            return (others, stopped);
        }
        core::hint::spin_loop();
        spins += 1;
    }
}

/// `panic: other cpus stopped: K of N (ids)`, ids in increasing order.
fn report_stopped(others: u64, stopped: u64) {
    struct Ids(u64);
    impl core::fmt::Display for Ids {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            let mut first = true;
            for id in (0..64).filter(|id| self.0 & (1 << id) != 0) {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{id}")?;
                first = false;
            }
            Ok(())
        }
    }
    crate::log::print_always(
        log::Level::Error,
        format_args!(
            "panic: other cpus stopped: {} of {} ({})",
            stopped.count_ones(),
            others.count_ones(),
            Ids(stopped)
        ),
    );
}

/// Exit code of a kernel panic (docs/CONTRACTS.md §5).
pub const PANIC_EXIT_CODE: u32 = 2;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    arch::irq::disable();
    let me = arch::cpu::id();
    if let Err(owner) = PANIC_CPU.compare_exchange(0, me + 1, Ordering::AcqRel, Ordering::Acquire) {
        if owner == me + 1 {
            // Panicked while reporting a panic: don't try to print again.
            arch::qemu_exit(PANIC_EXIT_CODE);
        }
        arch::halt_forever();
    }
    arch::stop_other_cpus();
    let (others, stopped) = wait_for_others(me);
    crate::log::print_always(
        log::Level::Error,
        format_args!("KERNEL PANIC on cpu {}: {}", me, info.message()),
    );
    match info.location() {
        Some(loc) => crate::log::print_always(
            log::Level::Error,
            format_args!("  at {}:{}:{}", loc.file(), loc.line(), loc.column()),
        ),
        None => crate::log::print_always(log::Level::Error, format_args!("  at unknown location")),
    }
    report_stopped(others, stopped);
    print_backtrace();
    arch::qemu_exit(PANIC_EXIT_CODE);
}

/// Prints return addresses by walking frame pointers (the kernel is built
/// with `force-frame-pointers`). Bounded and checked: stops at a null,
/// misaligned or non-kernel frame pointer.
fn print_backtrace() {
    let mut fp: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    for depth in 0..16 {
        // Kernel stacks and statics are in the higher half; anything else
        // means the chain ended or is corrupt.
        if fp < 0xffff_8000_0000_0000 || !fp.is_multiple_of(8) {
            break;
        }
        // SAFETY: fp is a canonical higher-half, aligned address that the
        // frame chain points at: [fp] = caller's fp, [fp+8] = return address.
        let (next, ret) = unsafe { (*(fp as *const u64), *((fp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        crate::log::print_always(
            log::Level::Error,
            format_args!("  #{} {:#018x}", depth, ret),
        );
        if next <= fp {
            break;
        }
        fp = next;
    }
}
