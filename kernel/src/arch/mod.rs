//! x86_64 support: CPU tables, interrupts, APIC, ACPI, time, SMP, exit.
//!
//! Owns the privileged instructions of the kernel (except the scheduler's
//! stack switch): the rest of the kernel uses the safe functions here (see
//! docs/KERNEL-MODULES.md, "arch -> everyone"). Must not: call into `sched`
//! or `selftest` except through the two hooks in `interrupts`.

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod exceptions;
pub mod frame;
pub mod gdt;
pub mod idt;
pub mod interrupts;
pub mod irq;
pub mod rtc;
pub mod serial;
pub mod smp;
pub mod syscall;
pub mod time;
pub mod usermode;

use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::instructions::port::Port;

/// Scheduler tick rate of the per-CPU APIC timers.
pub const TICK_HZ: u64 = 100;

/// APIC timer interrupt.
pub const TIMER_VECTOR: u8 = 0x20;
/// Legacy 8259 PICs are remapped here (then masked) so a stray PIC interrupt
/// can never be mistaken for an exception.
pub const PIC_BASE_VECTOR: u8 = 0xE0;
/// Reschedule IPI: `sched::on_resched_ipi()` runs on the target CPU.
pub const RESCHED_VECTOR: u8 = 0xF0;
/// Plain "are you alive" IPI (`smp::ping_all`); the target counts it in its
/// `CpuLocal`.
pub const CALL_VECTOR: u8 = 0xF1;
/// Local APIC internal error.
pub const APIC_ERROR_VECTOR: u8 = 0xFE;
/// Local APIC spurious interrupt (no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

/// Set when the system is going down (panic, or an exit that did not end
/// QEMU): an NMI then means "halt here" instead of a hardware error.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// True once `stop_other_cpus` was called.
pub fn is_stopping() -> bool {
    STOPPING.load(Ordering::Acquire)
}

/// Halts every other CPU (by NMI, so it works even where interrupts are
/// off). Returns without waiting for them.
pub fn stop_other_cpus() {
    STOPPING.store(true, Ordering::Release);
    apic::send_nmi_to_others();
}

/// Disables interrupts and halts this CPU forever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Added to the exit code written to `isa-debug-exit` (docs/CONTRACTS.md §5).
const DEBUG_EXIT_CODE_OFFSET: u32 = 16;

/// Prints `kernel exit: CODE` and ends QEMU through the isa-debug-exit device
/// (QEMU then exits with status `(CODE + 16) << 1 | 1`). Without that device
/// the write does nothing; then every CPU halts with interrupts off.
pub fn qemu_exit(code: u32) -> ! {
    if ::log::log_enabled!(::log::Level::Debug) {
        let uptime_ms = time::now_ns() / 1_000_000;
        for id in (0..cpu::count()).filter(|&id| cpu::get(id).is_online()) {
            let ticks = cpu::get(id).ticks.load(Ordering::Relaxed);
            ::log::debug!(
                "time: cpu {} took {} timer ticks in {} ms since calibration",
                id,
                ticks,
                uptime_ms
            );
        }
    }
    crate::log::print_always(log::Level::Info, format_args!("kernel exit: {}", code));
    // The device ends QEMU with status ((value << 1) | 1); the offset keeps
    // guest codes apart from QEMU's own status 1 (docs/CONTRACTS.md §5).
    let value = code.saturating_add(DEBUG_EXIT_CODE_OFFSET);
    // SAFETY: port 0xf4 is the debug-exit device (or nothing); writing it has
    // no memory effect.
    unsafe { Port::<u32>::new(0xf4).write(value) };
    stop_other_cpus();
    halt_forever();
}
