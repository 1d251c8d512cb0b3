//! The context switch: the only assembly of the scheduler.
//!
//! Owns: the layout of a switched-out thread's stack (its "switch frame") and
//! the first frame of a new thread.
//!
//! A switched-out thread is described by one word, its saved stack pointer.
//! At that address sit, from low to high: r15, r14, r13, r12, rbx, rbp and
//! the return address into the code that called `switch_context`.  Only the
//! callee-saved registers of the System V ABI need saving, because the switch
//! is an ordinary function call: the compiler already assumes every other
//! general register is clobbered.
//!
//! FPU/SSE state is NOT saved: the kernel is built for `x86_64-unknown-none`,
//! a soft-float target whose code never touches x87/SSE/AVX registers, so
//! kernel threads have no FPU state to lose.  When user threads arrive, their
//! FPU state must be saved on the kernel entry path (XSAVE), not here.
//!
//! Invariants: `switch_context` is called with interrupts disabled (see the
//! interrupt-flag rule in `sched/mod.rs`); the direction flag is clear (ABI).
//!
//! Must not: allocate, take locks, or touch any scheduler data: the caller
//! prepares everything, this module only swaps stacks.

use core::arch::global_asm;

global_asm!(
    r#"
    .text
    .global sched_switch_context
    // sched_switch_context(save_rsp_to: *mut usize [rdi], load_rsp: usize [rsi])
sched_switch_context:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global sched_run_on_stack
    // sched_run_on_stack(stack_top: rdi, entry: rsi) -> !
    // Moves this CPU onto another stack for good and calls `entry` there.
sched_run_on_stack:
    mov rsp, rdi
    xor ebp, ebp
    call rsi
    ud2

    .global sched_thread_trampoline
    // First "return address" of every new thread.  Reached by the `ret` of
    // sched_switch_context with rsp 16-byte aligned, so after the `call` the
    // entry function sees the ABI's alignment (rsp % 16 == 8 at entry).
sched_thread_trampoline:
    call {entry}
    ud2
    "#,
    entry = sym super::thread::thread_start,
);

// The two symbols defined by the assembly above; only reachable through
// the two wrappers below, which state their contracts.
unsafe extern "C" {
    fn sched_switch_context(save_rsp_to: *mut usize, load_rsp: usize);
    fn sched_thread_trampoline();
    fn sched_run_on_stack(stack_top: usize, entry: extern "C" fn() -> !) -> !;
}

/// Abandons the current stack and runs `entry` on the stack ending at
/// `stack_top` (16-byte aligned).  Used once per CPU to move its idle
/// thread from the loader's boot stack (which may be identity-mapped low
/// memory, absent from user address spaces) to a kernel heap stack.
///
/// # Safety
/// `stack_top` ends a writable, unused stack that lives forever; nothing
/// on the current stack is used again (its values are leaked).
pub(super) unsafe fn run_on_stack(stack_top: usize, entry: extern "C" fn() -> !) -> ! {
    // SAFETY: the caller's promise; the assembly never returns.
    unsafe { sched_run_on_stack(stack_top & !0xf, entry) }
}

/// Number of words in a switch frame: six callee-saved registers + return.
const SWITCH_FRAME_WORDS: usize = 7;

/// Saves the current callee-saved registers and stack pointer to
/// `*save_rsp_to`, then resumes the thread whose saved stack pointer is
/// `load_rsp`.  Returns when some CPU switches back to the saved thread.
///
/// # Safety
/// * Interrupts are disabled.
/// * `save_rsp_to` is valid for a write and stays reserved for this thread
///   until it is resumed (nobody reads it before the write happened).
/// * `load_rsp` is a value produced by an earlier save of a thread that is
///   not running anywhere now, or by [`prepare_new_stack`], and the stack it
///   points into is still allocated.
pub(super) unsafe fn switch_context(save_rsp_to: *mut usize, load_rsp: usize) {
    // SAFETY: the caller guarantees both stack descriptions are valid; the
    // assembly preserves every callee-saved register of the calling thread.
    unsafe { sched_switch_context(save_rsp_to, load_rsp) }
}

/// Writes the first switch frame of a new thread on the stack that ends at
/// `stack_top` and returns the stack pointer to hand to `switch_context`.
/// The thread starts in `thread::thread_start` with rbp = 0 (end of the
/// frame-pointer chain, so backtraces stop there).
///
/// # Safety
/// `stack_top` is the end of a writable stack of at least 64 bytes that no
/// thread is running on.
pub(super) unsafe fn prepare_new_stack(stack_top: usize) -> usize {
    let top = stack_top & !0xf;
    // The return address goes right below `top`, so that after `ret` pops it
    // rsp == top, which is 16-byte aligned.
    let frame = top - SWITCH_FRAME_WORDS * 8;
    let words = frame as *mut usize;
    for i in 0..SWITCH_FRAME_WORDS - 1 {
        // SAFETY: `frame..top` lies inside the stack (caller's promise).
        unsafe { words.add(i).write(0) };
    }
    // SAFETY: as above; the last word is the return address slot.
    unsafe {
        words
            .add(SWITCH_FRAME_WORDS - 1)
            .write(sched_thread_trampoline as *const () as usize)
    };
    frame
}
