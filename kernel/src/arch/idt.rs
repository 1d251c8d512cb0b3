//! The IDT, the interrupt entry stubs, and dispatch to Rust handlers.
//!
//! Owns the single IDT all CPUs load, and 256 assembly entry stubs (stable
//! Rust: `global_asm!`, no `abi_x86_interrupt`). Each stub pushes a dummy
//! error code where the CPU does not, then its vector, then the common path
//! saves all general-purpose registers into an `InterruptFrame` and calls
//! `interrupt_dispatch`. Invariants: stubs are 16 bytes apart starting at
//! `isr_stubs`; the IDT is written once on the BSP before any CPU loads it.
//! Must not: allocate or take sleeping locks in dispatch (it runs with
//! interrupts off, possibly on an IST stack).

use core::cell::UnsafeCell;

use super::frame::{self, frame_global_asm, restore_gprs, save_gprs};
use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CODE};

pub use super::frame::InterruptFrame;

impl InterruptFrame {
    /// Logs every saved register, one `[cpuN] ERROR` line per row.
    pub fn log_registers(&self) {
        log::error!(
            "  rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}",
            self.rip,
            self.cs,
            self.rflags,
            self.rsp,
            self.ss
        );
        log::error!(
            "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
            self.rax,
            self.rbx,
            self.rcx,
            self.rdx
        );
        log::error!(
            "  rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
            self.rsi,
            self.rdi,
            self.rbp,
            self.r8
        );
        log::error!(
            "  r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
            self.r9,
            self.r10,
            self.r11,
            self.r12
        );
        log::error!(
            "  r13={:#018x} r14={:#018x} r15={:#018x}",
            self.r13,
            self.r14,
            self.r15
        );
    }
}

// Vectors where the CPU pushes an error code: #DF 8, #TS 10, #NP 11, #SS 12,
// #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
// The register save/restore text and its offsets come from `frame`.
frame_global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set isr_vec, 0
    .rept 256
    .balign 16
    .if (isr_vec == 8) || (isr_vec == 10) || (isr_vec == 11) || (isr_vec == 12) || (isr_vec == 13) || (isr_vec == 14) || (isr_vec == 17) || (isr_vec == 21) || (isr_vec == 29) || (isr_vec == 30)
    .else
    push 0
    .endif
    push isr_vec
    jmp isr_common
    .set isr_vec, isr_vec + 1
    .endr

isr_common:
    // Stack: vector, error code, rip, cs, rflags, rsp, ss.
    // Coming from user mode (CS.RPL != 0) the GS bases must be swapped.
    test qword ptr [rsp + {cs_from_vector}], 3
    jz 1f
    swapgs
1:
"#,
    save_gprs!(),
    r#"
    // RSP is 16-byte aligned here (frame::FRAME_BYTES is a multiple of 16
    // and the CPU aligned RSP before pushing), as the ABI wants for a call.
    mov rdi, rsp
    cld
    call {dispatch}
"#,
    restore_gprs!(),
    r#"
    test qword ptr [rsp + {cs_from_vector}], 3
    jz 2f
    swapgs
2:
    add rsp, {hw_from_vector}
    iretq
    "#;
    cs_from_vector = const frame::CS - frame::VECTOR,
    hw_from_vector = const frame::RIP - frame::VECTOR,
    dispatch = sym interrupt_dispatch,
);

unsafe extern "C" {
    /// First of the 256 entry stubs (defined in the `global_asm!` above).
    static isr_stubs: [u8; 256 * 16];
}

/// Bytes between consecutive stubs (`.balign 16`).
const STUB_STRIDE: usize = 16;

#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct GateDescriptor {
    offset_low: u16,
    selector: u16,
    /// Bits 0..2: IST index; the rest zero.
    ist: u8,
    /// Present, DPL 0, 64-bit interrupt gate (0x8E).
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl GateDescriptor {
    const MISSING: GateDescriptor = GateDescriptor {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn interrupt_gate(handler: u64, ist: u8) -> GateDescriptor {
        GateDescriptor {
            offset_low: handler as u16,
            selector: KERNEL_CODE.0,
            ist,
            type_attr: 0x8E,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

struct Idt(UnsafeCell<[GateDescriptor; 256]>);
// SAFETY: written only by `init` on the BSP before any CPU loads or another
// CPU could read it; read-only afterwards.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([GateDescriptor::MISSING; 256]));

/// Fills the IDT: every vector goes to its stub; #DF, NMI and #MC get their
/// own IST stacks. BSP only, before `load`.
pub fn init() {
    // Taking the address of an extern static does not read it.
    let base = core::ptr::addr_of!(isr_stubs) as u64;
    // SAFETY: see `Idt`'s Sync justification: no one else uses the IDT yet.
    let idt = unsafe { &mut *IDT.0.get() };
    for (vector, gate) in idt.iter_mut().enumerate() {
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => 0,
        };
        *gate = GateDescriptor::interrupt_gate(base + (vector * STUB_STRIDE) as u64, ist);
    }
}

/// Loads the IDT on this CPU.
pub fn load() {
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<[GateDescriptor; 256]>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(IDT.0.get()),
    };
    // SAFETY: the IDT is a static filled by `init`, valid for the kernel's life.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Called by `isr_common` with interrupts disabled.
extern "C" fn interrupt_dispatch(frame: &mut InterruptFrame) {
    super::interrupts::dispatch(frame);
}
