//! CPU exceptions (vectors 0..31): report everything, then panic.
//!
//! Owns the exception names and the fatal report. Nothing is recoverable yet
//! (no user mode, no demand paging), so every exception ends in a kernel
//! panic. Must not: return to the faulting code.

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
