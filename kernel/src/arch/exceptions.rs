//! CPU exceptions (vectors 0..31): route them, or report and panic.
//!
//! Owns the exception names, the routing of exceptions and the fatal
//! report.  An exception raised in ring 3 becomes a signal for the current
//! process (`proc::signal::user_exception`), never a panic; one raised in
//! the kernel is fatal (after the page-fault hook of `memory::vm`, when that
//! exists, had its chance).  Must not: return to faulting kernel code that
//! no handler repaired.

use super::idt::InterruptFrame;

/// Mnemonic and name of exception `vector`.
pub fn name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point error"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection"),
        28 => ("#HV", "hypervisor injection"),
        29 => ("#VC", "VMM communication"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved exception"),
    }
}

/// Handles exception `frame.vector`: user-mode faults become signals (the
/// frame is then the one to return to user mode with); kernel faults are
/// fatal.
pub fn handle(frame: &mut InterruptFrame) {
    if frame.vector == 2 {
        fatal(frame);
    }
    // #PF: demand paging, copy-on-write and user-copy fixups first (memory::vm);
    // what it cannot resolve in ring 3 goes on to become a SIGSEGV below.
    if frame.vector == 14 {
        use crate::memory::vm::FaultOutcome;
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        match crate::memory::vm::page_fault(frame, cr2, frame.error_code) {
            FaultOutcome::Handled => return,
            FaultOutcome::Fixup(rip) => {
                frame.rip = rip;
                return;
            }
            // The vm layer knows the faulting address and si_code (CR2 may
            // have changed since: interrupts are on while it runs).
            FaultOutcome::UserSegv { addr, code } if frame.cs & 3 == 3 => {
                crate::proc::signal::user_page_fault(addr, code);
                return;
            }
            FaultOutcome::UserSegv { .. } => fatal(frame),
            FaultOutcome::KernelBug => fatal(frame),
        }
    }
    if frame.cs & 3 == 3 {
        crate::proc::signal::user_exception(frame);
        return;
    }
    fatal(frame)
}

/// Prints the exception and all registers, then panics.
pub fn fatal(frame: &InterruptFrame) -> ! {
    let (mnemonic, what) = name(frame.vector);
    let cpu = super::cpu::id();
    if frame.vector == 14 {
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        log::error!(
            "exception {} ({}) on cpu {}: rip={:#x} error={:#x} cr2={:#x} ({}{}{})",
            mnemonic,
            what,
            cpu,
            frame.rip,
            frame.error_code,
            cr2,
            if frame.error_code & 1 != 0 {
                "protection violation"
            } else {
                "not present"
            },
            if frame.error_code & 2 != 0 {
                ", write"
            } else {
                ", read"
            },
            if frame.error_code & 16 != 0 {
                ", instruction fetch"
            } else {
                ""
            },
        );
    } else {
        log::error!(
            "exception {} ({}) on cpu {}: rip={:#x} error={:#x}",
            mnemonic,
            what,
            cpu,
            frame.rip,
            frame.error_code
        );
    }
    frame.log_registers();
    panic!(
        "unhandled exception {} ({}) at rip {:#x}",
        mnemonic, what, frame.rip
    );
}
