//! Thin wrappers over the x86 instructions the loader needs: port I/O, MSRs,
//! CPUID, `pause`, `hlt`.
//!
//! Invariants: each wrapper is one instruction; callers decide whether the
//! port or MSR is safe to touch (the wrappers are `unsafe` where the
//! instruction can change machine state).  Must not: hold any state.

use core::arch::asm;

/// Write a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device whose reaction the caller expects.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Read a byte from an I/O port.
///
/// # Safety
/// The port must belong to a device whose reaction the caller expects.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Write a 32-bit value to an I/O port.
///
/// # Safety
/// The port must belong to a device whose reaction the caller expects.
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Read a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Write a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    // CPUID exists on every x86_64 CPU and has no side effects (safe intrinsic).
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Spin-loop hint.
pub fn pause() {
    core::hint::spin_loop();
}

/// Stop this CPU for good (interrupts off).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt only stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}
