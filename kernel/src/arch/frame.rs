//! The trap frame: the one definition of `InterruptFrame` and of the
//! assembly that saves and restores it.
//!
//! Owns the layout every way into the kernel builds on the kernel stack
//! (interrupt and exception stubs in `idt`, the `syscall` entry in
//! `syscall`, the first entry to ring 3 in `usermode`) and the assembly
//! text that stores the general-purpose registers into it and loads them
//! back.  That text addresses every register by its field's
//! `core::mem::offset_of!`, passed as `const` operands (`frame_global_asm!`
//! adds them), so reordering, adding or removing a field changes all three
//! paths at once or fails to build.
//!
//! Invariants (checked at compile time below): the general-purpose
//! registers come first (15 distinct 8-byte slots below `vector`); then
//! `vector`, `error_code` and the five quadwords the CPU pushes (`rip`,
//! `cs`, `rflags`, `rsp`, `ss`), contiguous and in that order, ending the
//! frame; the size is a multiple of 16 (the stack stays ABI-aligned for the
//! call into Rust).
//!
//! Must not: contain anything but the frame and its register text (the
//! entry paths themselves stay with their owners).

/// Everything the entry path saved, lowest address first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct InterruptFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    // Pushed by the CPU:
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Bytes of the whole frame.
pub const FRAME_BYTES: usize = core::mem::size_of::<InterruptFrame>();
/// Bytes of the general-purpose register area at the bottom of the frame
/// (what the entry assembly stores after the vector is pushed).
pub const GPR_BYTES: usize = core::mem::offset_of!(InterruptFrame, vector);
/// Offset of `vector`: where the stack pointer is before the registers are
/// saved (and after they are restored).
pub const VECTOR: usize = core::mem::offset_of!(InterruptFrame, vector);
/// Offset of `error_code`.
pub const ERROR_CODE: usize = core::mem::offset_of!(InterruptFrame, error_code);
/// Offset of `rip`, the first quadword the CPU pushes.
pub const RIP: usize = core::mem::offset_of!(InterruptFrame, rip);
/// Offset of `cs`.
pub const CS: usize = core::mem::offset_of!(InterruptFrame, cs);
/// Offset of `rflags`.
pub const RFLAGS: usize = core::mem::offset_of!(InterruptFrame, rflags);
/// Offset of `rsp`.
pub const RSP: usize = core::mem::offset_of!(InterruptFrame, rsp);
/// Offset of `ss`.
pub const SS: usize = core::mem::offset_of!(InterruptFrame, ss);

/// Offsets of the 15 general-purpose registers, in field order.
const GPR_OFFSETS: [usize; 15] = [
    core::mem::offset_of!(InterruptFrame, rax),
    core::mem::offset_of!(InterruptFrame, rbx),
    core::mem::offset_of!(InterruptFrame, rcx),
    core::mem::offset_of!(InterruptFrame, rdx),
    core::mem::offset_of!(InterruptFrame, rsi),
    core::mem::offset_of!(InterruptFrame, rdi),
    core::mem::offset_of!(InterruptFrame, rbp),
    core::mem::offset_of!(InterruptFrame, r8),
    core::mem::offset_of!(InterruptFrame, r9),
    core::mem::offset_of!(InterruptFrame, r10),
    core::mem::offset_of!(InterruptFrame, r11),
    core::mem::offset_of!(InterruptFrame, r12),
    core::mem::offset_of!(InterruptFrame, r13),
    core::mem::offset_of!(InterruptFrame, r14),
    core::mem::offset_of!(InterruptFrame, r15),
];

/// Every register slot lies in the register area, 8-aligned, and no two
/// share a slot (so the 15 stores fill the area exactly).
const fn gprs_fill_their_area() -> bool {
    if GPR_BYTES != GPR_OFFSETS.len() * 8 {
        return false;
    }
    let mut i = 0;
    while i < GPR_OFFSETS.len() {
        if GPR_OFFSETS[i] % 8 != 0 || GPR_OFFSETS[i] >= GPR_BYTES {
            return false;
        }
        let mut j = i + 1;
        while j < GPR_OFFSETS.len() {
            if GPR_OFFSETS[i] == GPR_OFFSETS[j] {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const _: () = assert!(gprs_fill_their_area(), "InterruptFrame: register area");
// The part pushed by the stub and the CPU: fixed order, contiguous, last.
const _: () = assert!(ERROR_CODE == VECTOR + 8, "InterruptFrame: error_code");
const _: () = assert!(RIP == ERROR_CODE + 8, "InterruptFrame: rip");
const _: () = assert!(CS == RIP + 8, "InterruptFrame: cs");
const _: () = assert!(RFLAGS == CS + 8, "InterruptFrame: rflags");
const _: () = assert!(RSP == RFLAGS + 8, "InterruptFrame: rsp");
const _: () = assert!(SS == RSP + 8, "InterruptFrame: ss");
const _: () = assert!(FRAME_BYTES == SS + 8, "InterruptFrame: ss ends it");
// The CPU aligns RSP to 16 before pushing its 5 quadwords; a frame that is
// a multiple of 16 leaves RSP aligned for the call into Rust.
const _: () = assert!(FRAME_BYTES % 16 == 0, "InterruptFrame: alignment");

/// Assembly text: with RSP at the frame's `vector`, makes room for the
/// register area and stores all 15 general-purpose registers into it
/// (RSP then points at the whole frame).  Flags are clobbered.
macro_rules! save_gprs {
    () => {
        concat!(
            "sub rsp, {gpr_bytes}\n",
            "mov [rsp + {f_rax}], rax\n",
            "mov [rsp + {f_rbx}], rbx\n",
            "mov [rsp + {f_rcx}], rcx\n",
            "mov [rsp + {f_rdx}], rdx\n",
            "mov [rsp + {f_rsi}], rsi\n",
            "mov [rsp + {f_rdi}], rdi\n",
            "mov [rsp + {f_rbp}], rbp\n",
            "mov [rsp + {f_r8}], r8\n",
            "mov [rsp + {f_r9}], r9\n",
            "mov [rsp + {f_r10}], r10\n",
            "mov [rsp + {f_r11}], r11\n",
            "mov [rsp + {f_r12}], r12\n",
            "mov [rsp + {f_r13}], r13\n",
            "mov [rsp + {f_r14}], r14\n",
            "mov [rsp + {f_r15}], r15\n",
        )
    };
}

/// Assembly text: with RSP at a whole frame, loads the 15 general-purpose
/// registers from it and drops the register area (RSP then points at the
/// frame's `vector`).  Flags are clobbered.
macro_rules! restore_gprs {
    () => {
        concat!(
            "mov rax, [rsp + {f_rax}]\n",
            "mov rbx, [rsp + {f_rbx}]\n",
            "mov rcx, [rsp + {f_rcx}]\n",
            "mov rdx, [rsp + {f_rdx}]\n",
            "mov rsi, [rsp + {f_rsi}]\n",
            "mov rdi, [rsp + {f_rdi}]\n",
            "mov rbp, [rsp + {f_rbp}]\n",
            "mov r8, [rsp + {f_r8}]\n",
            "mov r9, [rsp + {f_r9}]\n",
            "mov r10, [rsp + {f_r10}]\n",
            "mov r11, [rsp + {f_r11}]\n",
            "mov r12, [rsp + {f_r12}]\n",
            "mov r13, [rsp + {f_r13}]\n",
            "mov r14, [rsp + {f_r14}]\n",
            "mov r15, [rsp + {f_r15}]\n",
            "add rsp, {gpr_bytes}\n",
        )
    };
}

/// Assembly text for `sysretq`: with RSP at a whole frame, loads the
/// registers `sysretq` does not take from elsewhere, then RCX from `rip`
/// and R11 from `rflags` (what `sysretq` returns to), and last RSP from
/// `rsp`.  After it only `swapgs; sysretq` may follow (the kernel stack is
/// no longer addressed).
macro_rules! restore_gprs_for_sysret {
    () => {
        concat!(
            "mov rax, [rsp + {f_rax}]\n",
            "mov rbx, [rsp + {f_rbx}]\n",
            "mov rdx, [rsp + {f_rdx}]\n",
            "mov rsi, [rsp + {f_rsi}]\n",
            "mov rdi, [rsp + {f_rdi}]\n",
            "mov rbp, [rsp + {f_rbp}]\n",
            "mov r8, [rsp + {f_r8}]\n",
            "mov r9, [rsp + {f_r9}]\n",
            "mov r10, [rsp + {f_r10}]\n",
            "mov r12, [rsp + {f_r12}]\n",
            "mov r13, [rsp + {f_r13}]\n",
            "mov r14, [rsp + {f_r14}]\n",
            "mov r15, [rsp + {f_r15}]\n",
            "mov rcx, [rsp + {f_rip}]\n",
            "mov r11, [rsp + {f_rflags}]\n",
            "mov rsp, [rsp + {f_rsp}]\n",
        )
    };
}

/// `global_asm!` with the frame's register offsets as `const` operands:
/// `f_<reg>` for each general-purpose register and `gpr_bytes` (the
/// register area).  Every template must use all of them (the compiler
/// rejects an unused operand), which `save_gprs!` or `restore_gprs!` does;
/// the entry's own operands (e.g. `f_rip = const frame::RIP`) follow the
/// templates after a `;`, each ending with a comma.
macro_rules! frame_global_asm {
    ($($template:expr),+ ; $($operands:tt)*) => {
        core::arch::global_asm!(
            $($template),+,
            $($operands)*
            f_rax = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rax),
            f_rbx = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rbx),
            f_rcx = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rcx),
            f_rdx = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rdx),
            f_rsi = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rsi),
            f_rdi = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rdi),
            f_rbp = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, rbp),
            f_r8 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r8),
            f_r9 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r9),
            f_r10 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r10),
            f_r11 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r11),
            f_r12 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r12),
            f_r13 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r13),
            f_r14 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r14),
            f_r15 = const core::mem::offset_of!($crate::arch::frame::InterruptFrame, r15),
            gpr_bytes = const $crate::arch::frame::GPR_BYTES,
        );
    };
}

pub(crate) use {frame_global_asm, restore_gprs, restore_gprs_for_sysret, save_gprs};
