//! Entering ring 3, and the FPU/SSE state of user threads.
//!
//! Owns: the per-CPU control-register setup for user mode (FPU/SSE enabled
//! for user code: CR0.MP set, CR0.EM/TS clear, CR4.OSFXSR/OSXMMEXCPT set,
//! and the `syscall` MSRs through `arch::syscall`), the 512-byte FXSAVE
//! image of a user thread (`FpuState`), and the one way into user mode for
//! a thread that is not returning from a syscall or interrupt:
//! `enter_user(frame)`, which loads a whole `InterruptFrame` and `iretq`s.
//!
//! Invariants: the kernel is built soft-float and never touches x87/SSE
//! registers, so the registers always hold the state of the last user
//! thread that ran on this CPU; the scheduler saves them at switch-out and
//! loads the next user thread's at switch-in (`proc` does it through the
//! `sched::UserContext` hooks).  Every frame that leaves by `iretq` and
//! was changed by the kernel has user selectors (RPL 3), IF set and
//! canonical rip/rsp: `sanitize` enforces it.
//!
//! Must not: return to ring 3 with the kernel GS base active (the exit path
//! always ends in `swapgs; iretq`), or let a user frame choose its own
//! privilege level or IOPL.

use core::arch::asm;

use super::frame::{self, frame_global_asm, restore_gprs, InterruptFrame};
use super::gdt::{USER_CODE, USER_DATA};

/// RFLAGS bits a user program may set for itself: CF PF AF ZF SF TF DF OF
/// AC ID (and the always-one bit 1).  IF is forced on, IOPL/NT/RF/VM off.
const USER_RFLAGS_MASK: u64 =
    0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x40000 | 0x200000;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 0x200;
/// Bit 1 of RFLAGS always reads as one.
const RFLAGS_FIXED: u64 = 0x2;

/// Sets up this CPU for user mode: FPU/SSE usable (for user code only) and
/// the `syscall` entry.  Every CPU, once, before its first user thread.
pub fn init_cpu() {
    // SAFETY: CR0/CR4 writes that only enable FPU/SSE instructions (the
    // kernel is soft-float and does not execute them); the other bits are
    // kept as they are.
    unsafe {
        let mut cr0: u64;
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
        cr0 |= 1 << 1; // MP: WAIT/FWAIT honour TS
        cr0 &= !(1 << 2); // EM: no x87 emulation
        cr0 &= !(1 << 3); // TS: no lazy switching (we switch eagerly)
        cr0 |= 1 << 5; // NE: native x87 error reporting (#MF)
        asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack, preserves_flags));
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        cr4 |= (1 << 9) | (1 << 10); // OSFXSR, OSXMMEXCPT
        asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack, preserves_flags));
        // A clean x87/SSE state, so the first FXSAVE on this CPU saves
        // defined values.
        asm!("fninit", options(nomem, nostack));
    }
    super::syscall::init_cpu();
}

/// The FXSAVE image of one user thread (x87, MMX, SSE registers, MXCSR).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpuState([u8; 512]);

impl FpuState {
    /// The state a new program starts with: x87 control word 0x37f (all
    /// exceptions masked, 64-bit precision), MXCSR 0x1f80, registers zero.
    pub fn initial() -> FpuState {
        let mut image = [0u8; 512];
        image[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        image[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        image[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
        FpuState(image)
    }

    /// Saves this CPU's FPU/SSE registers into `self`.
    pub fn save(&mut self) {
        // SAFETY: FXSAVE64 writes exactly 512 bytes to a 16-byte aligned
        // address, which `self` is (repr align 16); CR4.OSFXSR is set by
        // `init_cpu` on every CPU.
        unsafe {
            asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack, preserves_flags))
        };
    }

    /// Loads `self` into this CPU's FPU/SSE registers.
    pub fn restore(&self) {
        // SAFETY: as in `save`; the image came from `initial`, `save` or a
        // user signal frame whose reserved MXCSR bits were cleared by
        // `sanitize_mxcsr` (FXRSTOR faults on them).
        unsafe {
            asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, preserves_flags))
        };
    }

    /// The raw 512-byte image (signal frames carry it to user space).
    pub fn bytes(&self) -> &[u8; 512] {
        &self.0
    }

    /// Replaces the image with one from user space (`rt_sigreturn`),
    /// clearing MXCSR bits the CPU would refuse.
    pub fn set_bytes(&mut self, bytes: &[u8; 512]) {
        self.0.copy_from_slice(bytes);
        let mut mxcsr = u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]]);
        mxcsr &= 0xffff; // bits 16..31 are reserved (the QEMU MXCSR_MASK)
        self.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    }
}

/// Whether `addr` is canonical (bits 63..47 all equal).
fn canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// Forces a frame that is about to go to ring 3 to be a ring-3 frame: user
/// code and stack selectors, IF on, IOPL 0, and canonical rip/rsp (`iretq`
/// to a non-canonical address faults in ring 0; address 0 instead faults
/// in ring 3, which becomes a SIGSEGV for the program).
pub fn sanitize(frame: &mut InterruptFrame) {
    frame.cs = u64::from(USER_CODE.0);
    frame.ss = u64::from(USER_DATA.0);
    frame.rflags = (frame.rflags & USER_RFLAGS_MASK) | RFLAGS_IF | RFLAGS_FIXED;
    if !canonical(frame.rip) {
        frame.rip = 0;
    }
    if !canonical(frame.rsp) {
        frame.rsp = 0;
    }
}

/// A fresh user frame: all registers zero, at `rip` with stack `rsp`.
pub fn initial_frame(rip: u64, rsp: u64) -> InterruptFrame {
    let mut frame = InterruptFrame {
        rax: 0,
        rbx: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        rbp: 0,
        r8: 0,
        r9: 0,
        r10: 0,
        r11: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        vector: 0,
        error_code: 0,
        rip,
        cs: 0,
        rflags: 0,
        rsp,
        ss: 0,
    };
    sanitize(&mut frame);
    frame
}

// The register restore text and its offsets come from `frame`.
frame_global_asm!(
    r#"
    .text
    .global user_iret_from_frame
    // rsp points at an InterruptFrame with user selectors; interrupts off,
    // kernel GS base active.  Loads every register and returns to ring 3.
user_iret_from_frame:
"#,
    restore_gprs!(),
    r#"
    add rsp, {hw_from_vector}
    swapgs
    iretq
    "#;
    hw_from_vector = const frame::RIP - frame::VECTOR,
);

unsafe extern "C" {
    /// Defined by the assembly above; reached by `jmp` only.
    fn user_iret_from_frame();
}

/// Enters user mode with the registers of `*frame` (sanitized first).
/// The frame must be the calling thread's trap frame area (top of its
/// kernel stack), so the stack below it can be abandoned: nothing of the
/// caller survives, and every value it still owns is leaked — drop them
/// before calling.
pub fn enter_user(frame: &mut InterruptFrame) -> ! {
    sanitize(frame);
    super::irq::disable();
    let ptr = frame as *mut InterruptFrame;
    // SAFETY: interrupts are off; `ptr` is a complete, sanitized user frame
    // in this thread's trap frame area (so later entries from ring 3 land
    // on the same kernel stack top); `user_iret_from_frame` pops it, swaps
    // to the user GS base and irets to ring 3.  Nothing returns here.
    unsafe {
        asm!(
            "mov rsp, {0}",
            "jmp {1}",
            in(reg) ptr,
            sym user_iret_from_frame,
            options(noreturn)
        )
    }
}
