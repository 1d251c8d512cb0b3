//! The panic handler: stop every other CPU, report, end QEMU with code 2.
//!
//! Owns the "panicking" state. Invariants: only the first panic reports; a
//! later panic on another CPU halts that CPU (it is about to be stopped
//! anyway); a panic while reporting (same CPU) skips straight to the exit.
//! Must not: allocate, wait for other CPUs, or take a lock without a bound.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch;

/// CPU id + 1 of the CPU that owns the panic; 0 = no panic yet.
static PANIC_CPU: AtomicUsize = AtomicUsize::new(0);

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
