//! Per-CPU GDT and TSS, with interrupt stacks (IST) for the exceptions that
//! must not run on a possibly broken stack.
//!
//! Owns one `{GDT, TSS}` pair and its IST stacks per CPU (statics, so no heap
//! is needed this early). Layout (fixed, `syscall`/`sysret`-compatible):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user data, 0x20 user code,
//! 0x28 TSS. Invariant: CPU `n`'s slot is written only by CPU `n`: once in
//! `init` before it is loaded, then only its TSS `rsp0` by
//! `set_kernel_stack` (with interrupts off), which is the stack the CPU
//! switches to when an interrupt or exception arrives in ring 3. Must not: touch the FS/GS selectors (loading
//! them would clobber the GS base the per-CPU area relies on).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::{PrivilegeLevel, VirtAddr};

use percpu::PerCpu;

/// IST slot (1-based, as the IDT encodes it) of the double-fault stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST slot of the NMI stack (also the "stop this CPU" path of a panic).
pub const IST_NMI: u8 = 2;
/// IST slot of the machine-check stack.
pub const IST_MACHINE_CHECK: u8 = 3;
const IST_STACKS: usize = 3;
const IST_STACK_SIZE: usize = 16 * 1024;

pub const KERNEL_CODE: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);
pub const KERNEL_DATA: SegmentSelector = SegmentSelector::new(2, PrivilegeLevel::Ring0);
pub const USER_DATA: SegmentSelector = SegmentSelector::new(3, PrivilegeLevel::Ring3);
pub const USER_CODE: SegmentSelector = SegmentSelector::new(4, PrivilegeLevel::Ring3);
pub const TSS: SegmentSelector = SegmentSelector::new(5, PrivilegeLevel::Ring0);

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    ist: [IstStack; IST_STACKS],
}

/// One slot per CPU; see the module invariant for why sharing is sound.
struct TablesSlot(UnsafeCell<MaybeUninit<CpuTables>>);
// SAFETY: slot `n` is only ever accessed by CPU `n` (module invariant).
unsafe impl Sync for TablesSlot {}

static TABLES: PerCpu<TablesSlot> =
    percpu::per_cpu!(TablesSlot(UnsafeCell::new(MaybeUninit::uninit())));

/// Builds and loads CPU `cpu`'s GDT and TSS, reloads CS/DS/ES/SS.
/// Must be called once per CPU, on that CPU.
pub fn init(cpu: usize) {
    let slot = TABLES.remote(cpu).0.get();
    // SAFETY: this CPU is the only one touching slot `cpu`, and it does so once
    // (module invariant); the statics live forever, so `'static` is right.
    let tables: &'static mut CpuTables = unsafe {
        let t = &mut *slot;
        // Zeroed memory is a valid (empty) GDT, TSS and stack.
        core::ptr::write_bytes(t.as_mut_ptr(), 0, 1);
        t.assume_init_mut()
    };
    tables.tss = TaskStateSegment::new();
    for (i, stack) in tables.ist.iter().enumerate() {
        let top = VirtAddr::from_ptr(stack.0.as_ptr()) + IST_STACK_SIZE as u64;
        tables.tss.interrupt_stack_table[i] = top;
    }

    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let udata = gdt.append(Descriptor::user_data_segment());
    let ucode = gdt.append(Descriptor::user_code_segment());
    // SAFETY: the TSS lives in a static slot that is never freed or moved.
    let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(&tables.tss) });
    debug_assert!(code == KERNEL_CODE && data == KERNEL_DATA && tss == TSS);
    debug_assert!(udata == USER_DATA && ucode == USER_CODE);
    tables.gdt = gdt;

    let gdt: &'static GlobalDescriptorTable = &tables.gdt;
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, with the
    // right types (code for CS, data for the others, an available TSS).
    unsafe {
        CS::set_reg(KERNEL_CODE);
        SS::set_reg(KERNEL_DATA);
        DS::set_reg(KERNEL_DATA);
        ES::set_reg(KERNEL_DATA);
        load_tss(TSS);
    }
}

/// Sets this CPU's TSS `rsp0`: the kernel stack an interrupt or exception
/// from ring 3 lands on.  The scheduler calls it (interrupts off) whenever
/// it switches in a user thread, with that thread's kernel stack top.
pub fn set_kernel_stack(cpu: usize, top: u64) {
    let slot = TABLES.remote(cpu).0.get();
    // SAFETY: slot `cpu` belongs to the calling CPU (`cpu` is its own id)
    // and was initialised by `init`; interrupts are off, so nothing else on
    // this CPU reads the TSS while the field changes (the CPU itself reads
    // it only on a ring change, which cannot happen in the middle here).
    unsafe {
        let tables = (*slot).assume_init_mut();
        tables.tss.privilege_stack_table[0] = VirtAddr::new(top);
    }
}
