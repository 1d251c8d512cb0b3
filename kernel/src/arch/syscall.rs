//! The `syscall`/`sysret` entry from ring 3.
//!
//! Owns the syscall MSRs (EFER.SCE, STAR, LSTAR, FMASK) and the entry
//! assembly.  The entry `swapgs`es to the kernel GS base, parks the user
//! stack pointer in the per-CPU area, switches to the running thread's
//! kernel stack top (`arch::cpu` keeps it, the scheduler updates it), and
//! builds an `InterruptFrame` there exactly like an interrupt from ring 3
//! would (vector `SYSCALL_VECTOR`, error code = the syscall number), so
//! `proc` sees one frame layout for every way into the kernel.
//!
//! Return: by `sysretq` when the frame allows it exactly (rcx == rip and
//! r11 == rflags, as the `syscall` instruction left them, and rip a
//! canonical user address), else by `iretq` (after `rt_sigreturn`, a new
//! signal frame, `execve`), which restores every register.
//!
//! Invariants: FMASK clears IF, DF, TF, AC and NT on entry, so the entry
//! runs with interrupts off until the Rust side enables them; the Rust side
//! disables them again before the exit path.  Must not: touch the stack
//! before switching to the kernel stack (the user stack is untrusted).

use x86_64::registers::model_specific::{Efer, EferFlags, LStar, Msr, SFMask};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use super::cpu::{KERNEL_RSP_OFFSET, USER_RSP_OFFSET};
use super::frame::{self, frame_global_asm, restore_gprs_for_sysret, save_gprs, InterruptFrame};
use super::gdt::{KERNEL_CODE, USER_CODE, USER_DATA};

/// The `vector` of a frame built by the syscall entry (not a real vector).
pub const SYSCALL_VECTOR: u64 = 0x1_0000;
/// `IA32_STAR`.
const MSR_STAR: u32 = 0xC000_0081;
/// Highest user address `sysretq` may return to: a non-canonical rcx would
/// make it fault in ring 0 (on Intel), so such returns go through `iretq`.
const SYSRET_RIP_LIMIT: u64 = 0x0000_7fff_ffff_f000;

// The register save/restore text and its offsets come from `frame`; the
// five quadwords pushed first are what an interrupt from ring 3 would have
// pushed, in the order `frame` asserts (ss, rsp, rflags, cs, rip), then the
// error code (the syscall number) and the vector.
frame_global_asm!(
    r#"
    .text
    .global syscall_entry
syscall_entry:
    swapgs
    mov gs:[{user_rsp}], rsp
    mov rsp, gs:[{kernel_rsp}]
    push {user_ss}
    push qword ptr gs:[{user_rsp}]
    push r11
    push {user_cs}
    push rcx
    push rax
    push {vector}
"#,
    save_gprs!(),
    r#"
    mov rdi, rsp
    cld
    call {handler}
    test al, al
    jnz 1f
    // sysret path: rcx/r11 come from the frame's rip/rflags, rsp from its rsp.
"#,
    restore_gprs_for_sysret!(),
    r#"
    swapgs
    sysretq
1:
    jmp user_iret_from_frame
    "#;
    user_rsp = const USER_RSP_OFFSET,
    kernel_rsp = const KERNEL_RSP_OFFSET,
    user_ss = const USER_DATA.0 as u64,
    user_cs = const USER_CODE.0 as u64,
    vector = const SYSCALL_VECTOR,
    handler = sym syscall_from_user,
    f_rip = const frame::RIP,
    f_rflags = const frame::RFLAGS,
    f_rsp = const frame::RSP,
);

unsafe extern "C" {
    /// Defined by the assembly above; only its address is used (LSTAR).
    fn syscall_entry();
}

/// Programs this CPU's syscall MSRs.  Called by `usermode::init_cpu`.
pub fn init_cpu() {
    crate::proc::exit::set_init_exit_report(crate::syscall::count::report_if_asked);
    // STAR: kernel CS at 47:32 (SS = CS + 8); for sysret, bits 63:48 hold a
    // base such that base + 16 = user CS and base + 8 = user SS (the GDT
    // layout in `gdt` is built for this: 0x18 user data, 0x20 user code).
    let sysret_base = u64::from(USER_DATA.0 & !3) - 8;
    let star = (sysret_base << 48) | (u64::from(KERNEL_CODE.0) << 32);
    // SAFETY: enabling SYSCALL and pointing it at our entry; the selectors
    // match this CPU's GDT (`gdt::init` ran before), and FMASK makes the
    // entry start with interrupts off.
    unsafe {
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        Msr::new(MSR_STAR).write(star);
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
    }
}

/// Rust side of the entry: runs the call with interrupts on, then the
/// return-to-user work (signals), then decides how to return.  Returns
/// true when the exit must use `iretq`.
extern "C" fn syscall_from_user(frame: &mut InterruptFrame) -> bool {
    super::irq::enable();
    crate::syscall::dispatch(frame);
    crate::proc::return_to_user(frame);
    super::irq::disable();
    let exact_sysret = frame.rcx == frame.rip
        && frame.r11 == frame.rflags
        && frame.rip < SYSRET_RIP_LIMIT
        && frame.cs == u64::from(USER_CODE.0)
        && frame.ss == u64::from(USER_DATA.0);
    if !exact_sysret {
        super::usermode::sanitize(frame);
    }
    !exact_sysret
}
