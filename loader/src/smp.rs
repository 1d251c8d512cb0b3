//! Starting the application processors (INIT-SIPI-SIPI through the local
//! APIC) and parking them until the kernel writes their `goto_address`.
//!
//! Each AP runs the real-mode trampoline copied to [`TRAMPOLINE`] (below
//! 1 MiB, as SIPI requires), which enters long mode with the kernel's page
//! tables and the AP's own stack and calls [`ap_main`].  There the AP
//! switches to x2APIC mode if asked, reports that it runs, and spins with
//! `pause` on its `limine_mp_info.goto_address`.  APs are started one at a
//! time: the trampoline's data words are per-start.
//!
//! Invariants: an AP that does not report within [`AP_TIMEOUT_MS`] is left
//! out of the MP response (and a warning is printed).  Must not: rely on
//! interrupts (IF stays 0 on every CPU).

use crate::cpu::{self, inb, outb, rdmsr, wrmsr};
use crate::phys;
use crate::protocol::{hhdm, MpInfo};
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// Physical address of the AP trampoline page (SIPI vector 0x08).
pub const TRAMPOLINE: u64 = 0x8000;
const AP_TIMEOUT_MS: u32 = 1000;
const IA32_APIC_BASE: u32 = 0x1b;
const X2APIC_ICR: u32 = 0x830;
const X2APIC_ID: u32 = 0x802;

global_asm!(
    r#"
    .set TRAMP, 0x8000
    .section .text.ap_trampoline, "ax", @progbits
    .global ap_tramp_start, ap_tramp_end
    .global tramp_cr3, tramp_efer, tramp_stack, tramp_arg, tramp_entry
    .code16
ap_tramp_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl (TRAMP + tramp_gdt_desc - ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(TRAMP + tramp_pm32 - ap_tramp_start)

    .code32
tramp_pm32:
    movw $0x20, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                         /* PAE */
    movl %eax, %cr4
    movl (TRAMP + tramp_cr3 - ap_tramp_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl (TRAMP + tramp_efer - ap_tramp_start), %eax   /* LME (+ NXE) */
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax                   /* PG | WP */
    movl %eax, %cr0
    ljmpl $0x28, $(TRAMP + tramp_lm64 - ap_tramp_start)

    .code64
tramp_lm64:
    movw $0x30, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movq (TRAMP + tramp_stack - ap_tramp_start), %rsp
    movq (TRAMP + tramp_arg - ap_tramp_start), %rdi
    movq (TRAMP + tramp_entry - ap_tramp_start), %rax
    xorl %ebp, %ebp
    callq *%rax
1:  cli
    hlt
    jmp 1b

    .balign 16
tramp_gdt:
    .quad 0
    .quad 0x00009b000000ffff
    .quad 0x000093000000ffff
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00af9b000000ffff
    .quad 0x00cf93000000ffff
tramp_gdt_end:
tramp_gdt_desc:
    .word tramp_gdt_end - tramp_gdt - 1
    .long TRAMP + tramp_gdt - ap_tramp_start
    .balign 8
tramp_cr3:   .quad 0
tramp_efer:  .quad 0
tramp_stack: .quad 0
tramp_arg:   .quad 0
tramp_entry: .quad 0
ap_tramp_end:

    /* ap_enter_kernel(goto: rdi, stack_top: rsi, info: rdx) -> ! */
    .section .text.ap_enter_kernel, "ax", @progbits
    .global ap_enter_kernel
ap_enter_kernel:
    movq %rsi, %rsp
    pushq $0
    popfq                   /* IF = 0, DF = 0 */
    pushq $0                /* return address 0 */
    pushq %rdi              /* consumed by ret */
    movq %rdx, %rdi
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    xorl %r8d, %r8d
    xorl %r9d, %r9d
    xorl %r10d, %r10d
    xorl %r11d, %r11d
    xorl %r12d, %r12d
    xorl %r13d, %r13d
    xorl %r14d, %r14d
    xorl %r15d, %r15d
    ret
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
    static tramp_cr3: u8;
    static tramp_efer: u8;
    static tramp_stack: u8;
    static tramp_arg: u8;
    static tramp_entry: u8;
    fn ap_enter_kernel(goto: u64, stack_top: u64, info: u64) -> !;
}

/// What one AP needs, written by the BSP before starting it.
#[repr(C)]
pub struct ApBoot {
    /// Physical address of the AP's `limine_mp_info`.
    pub info_phys: u64,
    pub stack_top: u64,
    /// Physical address of the GDTR image (limit, HHDM base) to load.
    pub gdtr_phys: u64,
    pub x2apic: u32,
    /// Set to 1 by the AP once it runs in long mode.
    pub started: AtomicU32,
}

/// Wait `us` microseconds with PIT channel 2 (one-shot, polled).
pub fn delay_us(us: u32) {
    let mut left = us;
    while left > 0 {
        let chunk = left.min(50_000);
        left -= chunk;
        let ticks = (u64::from(chunk) * 1_193_182 / 1_000_000).clamp(1, 0xffff) as u16;
        // SAFETY: PIT channel 2 and port 0x61 are standard PC hardware; the
        // speaker output stays off (bit 1 of port 0x61 cleared).
        unsafe {
            let gate = (inb(0x61) & 0xfc) | 0x01;
            outb(0x61, gate & 0xfe);
            outb(0x43, 0xb0); // channel 2, lo/hi byte, mode 0
            outb(0x42, ticks as u8);
            outb(0x42, (ticks >> 8) as u8);
            outb(0x61, gate);
            let mut spins = 0u32;
            while inb(0x61) & 0x20 == 0 && spins < 50_000_000 {
                spins += 1;
                cpu::pause();
            }
        }
    }
}

/// The BSP's local APIC, in xAPIC (MMIO) or x2APIC (MSR) mode.
pub struct Lapic {
    mmio: u64,
    pub x2apic: bool,
}

impl Lapic {
    /// Use x2APIC mode when `want_x2apic` and the CPU supports it.
    pub fn init(want_x2apic: bool) -> Lapic {
        // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU with an APIC.
        let base = unsafe { rdmsr(IA32_APIC_BASE) };
        let x2apic = want_x2apic && x2apic_supported();
        if x2apic {
            // SAFETY: CPUID says x2APIC exists; EN (bit 11) and EXTD (bit 10).
            unsafe { wrmsr(IA32_APIC_BASE, base | (1 << 11) | (1 << 10)) };
        }
        Lapic {
            mmio: base & 0x000f_ffff_ffff_f000,
            x2apic,
        }
    }

    pub fn id(&self) -> u32 {
        if self.x2apic {
            // SAFETY: x2APIC mode is on.
            unsafe { rdmsr(X2APIC_ID) as u32 }
        } else {
            cpu::cpuid(1).1 >> 24
        }
    }

    /// Send an IPI: `low` is the ICR low word (vector, delivery mode, level).
    fn send(&self, dest: u32, low: u32) {
        if self.x2apic {
            // SAFETY: x2APIC mode is on; writing the ICR sends the IPI.
            unsafe { wrmsr(X2APIC_ICR, (u64::from(dest) << 32) | u64::from(low)) };
            return;
        }
        let icr_low = (self.mmio + 0x300) as *mut u32;
        let icr_high = (self.mmio + 0x310) as *mut u32;
        // SAFETY: the xAPIC registers are identity-mapped MMIO (below 4 GiB);
        // volatile accesses as the APIC requires.
        unsafe {
            icr_high.write_volatile(dest << 24);
            icr_low.write_volatile(low);
            let mut spins = 0u32;
            while icr_low.read_volatile() & (1 << 12) != 0 && spins < 1_000_000 {
                spins += 1;
                cpu::pause();
            }
        }
    }
}

pub fn x2apic_supported() -> bool {
    cpu::cpuid(1).2 & (1 << 21) != 0
}

/// Start the AP with local APIC id `lapic_id`; `boot` (physical, loader
/// memory) tells it where to go.  Returns whether it reported running.
pub fn start_ap(lapic: &Lapic, lapic_id: u32, boot: u64, cr3: u64, nx: bool) -> bool {
    // Taking the address of an extern static needs no unsafe.
    let (start, end) = (
        &raw const ap_tramp_start as u64,
        &raw const ap_tramp_end as u64,
    );
    let field = |sym: *const u8| TRAMPOLINE + (sym as u64 - start);
    // SAFETY: the trampoline page was claimed by the loader (reclaimable,
    // below 1 MiB); the code bytes are the loader's own image.
    unsafe {
        let code = phys::bytes(start, end - start);
        phys::bytes_mut(TRAMPOLINE, end - start).copy_from_slice(code);
        let efer_bits: u64 = (1 << 8) | if nx { 1 << 11 } else { 0 };
        (field(&raw const tramp_cr3) as *mut u64).write_volatile(cr3);
        (field(&raw const tramp_efer) as *mut u64).write_volatile(efer_bits);
        let ap = &*(boot as *const ApBoot);
        (field(&raw const tramp_stack) as *mut u64).write_volatile(ap.stack_top);
        (field(&raw const tramp_arg) as *mut u64).write_volatile(boot);
        (field(&raw const tramp_entry) as *mut u64).write_volatile(ap_main as *const () as u64);
    }
    core::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: `boot` points to the ApBoot the caller filled in.
    let started = unsafe { &(*(boot as *const ApBoot)).started };
    let vector = (TRAMPOLINE >> 12) as u32;
    lapic.send(lapic_id, 0x4500); // INIT, level assert
    delay_us(10_000);
    for _ in 0..2 {
        lapic.send(lapic_id, 0x4600 | vector); // STARTUP
        delay_us(200);
        if started.load(Ordering::Acquire) != 0 {
            return true;
        }
    }
    for _ in 0..AP_TIMEOUT_MS {
        if started.load(Ordering::Acquire) != 0 {
            return true;
        }
        delay_us(1000);
    }
    false
}

/// First Rust code on an AP (called by the trampoline, stack = its own).
extern "C" fn ap_main(boot: *const ApBoot) -> ! {
    // SAFETY: the BSP filled this ApBoot before sending SIPI and keeps it.
    let boot = unsafe { &*boot };
    if boot.x2apic != 0 {
        // SAFETY: the BSP only asks for x2APIC when CPUID reports it.
        unsafe {
            wrmsr(
                IA32_APIC_BASE,
                rdmsr(IA32_APIC_BASE) | (1 << 11) | (1 << 10),
            )
        };
    }
    // SAFETY: the GDTR image points to the loader's Limine-layout GDT with
    // the same selectors the trampoline used, so no segment reload is needed.
    unsafe { core::arch::asm!("lgdt [{}]", in(reg) boot.gdtr_phys, options(nostack)) };
    let info = boot.info_phys as *const MpInfo;
    let stack_top = boot.stack_top;
    boot.started.store(1, Ordering::Release);
    loop {
        // SAFETY: the MpInfo is reclaimable loader memory the kernel writes
        // through the HHDM; read volatile since another CPU writes it.
        let goto = unsafe { (&raw const (*info).goto_address).read_volatile() };
        if goto != 0 {
            // SAFETY: the kernel asked this CPU to jump to `goto`; the stack
            // is this AP's own, the argument is its MpInfo (HHDM address).
            unsafe { ap_enter_kernel(goto, stack_top, hhdm(info as u64)) }
        }
        cpu::pause();
    }
}
