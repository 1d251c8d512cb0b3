//! What each interrupt vector does (called from the entry stubs in `idt`).
//!
//! Owns the vector -> handler mapping and the two hooks into the scheduler
//! (`sched::on_timer_tick` after the timer EOI, `sched::on_resched_ipi`
//! after the reschedule EOI), plus the device hook (`drivers::handle_interrupt`
//! after the EOI of an MSI-X vector in the drivers' range). Runs with
//! interrupts disabled. Must not:
//! block, allocate, or log on the timer/IPI fast paths.

use core::sync::atomic::Ordering;

use super::idt::InterruptFrame;
use super::{apic, cpu, exceptions};
use super::{
    APIC_ERROR_VECTOR, CALL_VECTOR, PIC_BASE_VECTOR, RESCHED_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR,
};

/// Routes one interrupt to its handler.
pub fn dispatch(frame: &mut InterruptFrame) {
    let vector = frame.vector as u8;
    match vector {
        2 => nmi(frame),
        0..=31 => exceptions::handle(frame),
        TIMER_VECTOR => {
            cpu::this().ticks.fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            crate::sched::cputime::account_tick(
                cpu::id(),
                frame.cs & 3 == 3,
                crate::sched::running_idle(),
            );
            on_timer_tick();
        }
        RESCHED_VECTOR => {
            apic::eoi();
            on_resched_ipi();
        }
        CALL_VECTOR => {
            cpu::this().call_ipis.fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            // TLB shootdown requests ride on this IPI (memory::vm::tlb).
            crate::memory::vm::tlb::on_call_ipi();
        }
        APIC_ERROR_VECTOR => {
            let status = apic::read_error_status();
            apic::eoi();
            log::warn!("local APIC error, status {:#x}", status);
        }
        // Device MSI-X messages (drivers: acknowledge and flag only).
        v if (crate::drivers::DEVICE_VECTOR_BASE
            ..crate::drivers::DEVICE_VECTOR_BASE + crate::drivers::DEVICE_VECTOR_COUNT)
            .contains(&v) =>
        {
            apic::eoi();
            crate::drivers::handle_interrupt(v);
        }
        // A spurious APIC interrupt is not in service: no EOI.
        SPURIOUS_VECTOR => {}
        // The masked 8259s can still raise spurious IRQ 7/15; they never went
        // through the local APIC, so no EOI either.
        v if (PIC_BASE_VECTOR..PIC_BASE_VECTOR + 16).contains(&v) => {}
        _ => {
            apic::eoi();
            log::warn!("unexpected interrupt vector {:#x}", vector);
        }
    }
    // An interrupt or exception that arrived in ring 3 returns there:
    // pending signals (a fault, a kill, an exit_group) take effect now.
    if vector != 2 && frame.cs & 3 == 3 {
        crate::proc::return_to_user(frame);
    }
}

/// NMI: the panic/exit path uses it to stop CPUs; otherwise it is a hardware
/// problem and fatal.
fn nmi(frame: &InterruptFrame) {
    if super::is_stopping() {
        crate::panic::stopped_here();
    }
    exceptions::fatal(frame);
}

/// Scheduler hook for the timer tick (a no-op on a CPU not yet scheduling).
fn on_timer_tick() {
    crate::sched::on_timer_tick();
}

/// Scheduler hook for the reschedule IPI.
fn on_resched_ipi() {
    crate::sched::on_resched_ipi();
}
