//! Local APIC (x2APIC when CPUID offers it, else xAPIC through the HHDM),
//! the legacy 8259 PICs (remapped and masked), the APIC timer, and IPIs.
//!
//! Owns each CPU's `x2apic::LocalApic` handle (one slot per CPU, touched only
//! by that CPU with interrupts off) and the global APIC mode. The `x2apic`
//! crate does the setup, EOI, timer and fixed IPIs; the few registers it does
//! not expose (LINT masking, error status, NMI IPIs for the panic path) are
//! reached through `Reg` below. Must not: send IPIs before `init_bsp`, or
//! NMI a CPU that is not online (a parked AP has no IDT of ours).

use core::arch::x86_64::__cpuid;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x2apic::lapic::{LocalApic, LocalApicBuilder, TimerDivide, TimerMode};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use percpu::PerCpu;

use super::cpu::{self, MAX_CPUS};
use super::{irq, APIC_ERROR_VECTOR, PIC_BASE_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};

const IA32_APIC_BASE: u32 = 0x1B;

/// Whether the local APICs run in x2APIC mode (MSR access, 32-bit ids).
static X2APIC: AtomicBool = AtomicBool::new(false);
/// HHDM virtual address of the xAPIC MMIO page (xAPIC mode only).
static XAPIC_VIRT: AtomicU64 = AtomicU64::new(0);
/// Set once the BSP chose the mode; before that no IPI can be sent.
static READY: AtomicBool = AtomicBool::new(false);

struct ApicSlot(UnsafeCell<Option<LocalApic>>);
// SAFETY: slot `n` is used only by CPU `n` with interrupts disabled (see
// `with_local`), so there is never concurrent access.
unsafe impl Sync for ApicSlot {}

static LOCAL: PerCpu<ApicSlot> = percpu::per_cpu!(ApicSlot(UnsafeCell::new(None)));

/// Runs `f` on this CPU's local APIC handle with interrupts disabled.
/// Returns `None` if this CPU's APIC is not initialised yet.
fn with_local<R>(f: impl FnOnce(&mut LocalApic) -> R) -> Option<R> {
    let was_enabled = irq::save_disable();
    // SAFETY: only this CPU uses its slot, and with interrupts off no handler
    // on this CPU can re-enter here while the reference is alive.
    let slot = unsafe { &mut *LOCAL.remote(cpu::id()).0.get() };
    let result = slot.as_mut().map(f);
    irq::restore(was_enabled);
    result
}

/// A local APIC register the `x2apic` crate does not expose.
#[derive(Clone, Copy)]
struct Reg {
    msr: u32,
    mmio_offset: u64,
}

const REG_ESR: Reg = Reg {
    msr: 0x828,
    mmio_offset: 0x280,
};
const REG_ICR_LOW: Reg = Reg {
    msr: 0x830,
    mmio_offset: 0x300,
};
const REG_ICR_HIGH: Reg = Reg {
    msr: 0x831,
    mmio_offset: 0x310,
};
const REG_LVT_LINT0: Reg = Reg {
    msr: 0x835,
    mmio_offset: 0x350,
};
const REG_LVT_LINT1: Reg = Reg {
    msr: 0x836,
    mmio_offset: 0x360,
};
const LVT_MASKED: u32 = 1 << 16;

impl Reg {
    fn write(self, value: u32) {
        if X2APIC.load(Ordering::Relaxed) {
            // SAFETY: x2APIC mode is on, so this is an architectural APIC MSR.
            unsafe { Msr::new(self.msr).write(value as u64) };
        } else {
            let addr = XAPIC_VIRT.load(Ordering::Relaxed) + self.mmio_offset;
            // SAFETY: the xAPIC page is mapped by the HHDM (Limine base
            // revision 2 maps the first 4 GiB there) and this is a register.
            unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
        }
    }

    fn read(self) -> u32 {
        if X2APIC.load(Ordering::Relaxed) {
            // SAFETY: as in `write`.
            unsafe { Msr::new(self.msr).read() as u32 }
        } else {
            let addr = XAPIC_VIRT.load(Ordering::Relaxed) + self.mmio_offset;
            // SAFETY: as in `write`.
            unsafe { core::ptr::read_volatile(addr as *const u32) }
        }
    }
}

/// Whether this CPU model has x2APIC (CPUID.1:ECX bit 21).
fn cpu_has_x2apic() -> bool {
    // CPUID leaf 1 exists on every x86_64 CPU.
    let leaf1 = __cpuid(1);
    leaf1.ecx & (1 << 21) != 0
}

/// Remaps both 8259 PICs to `PIC_BASE_VECTOR..+16` and masks every line.
fn disable_legacy_pic() {
    // SAFETY: the standard 8259 initialisation sequence on its fixed ports;
    // it only affects the (unused) legacy interrupt controllers.
    unsafe {
        let mut cmd1 = Port::<u8>::new(0x20);
        let mut data1 = Port::<u8>::new(0x21);
        let mut cmd2 = Port::<u8>::new(0xA0);
        let mut data2 = Port::<u8>::new(0xA1);
        cmd1.write(0x11); // ICW1: init, ICW4 follows
        cmd2.write(0x11);
        data1.write(PIC_BASE_VECTOR); // ICW2: vector base
        data2.write(PIC_BASE_VECTOR + 8);
        data1.write(4); // ICW3: slave on IRQ2
        data2.write(2);
        data1.write(0x01); // ICW4: 8086 mode
        data2.write(0x01);
        data1.write(0xFF); // mask all
        data2.write(0xFF);
    }
}

/// Chooses the APIC mode (x2APIC if available), masks the legacy PICs and
/// sets up the BSP's local APIC. Returns whether x2APIC mode is used.
pub fn init_bsp(hhdm_offset: u64) -> bool {
    disable_legacy_pic();
    let x2 = cpu_has_x2apic();
    X2APIC.store(x2, Ordering::Relaxed);
    if !x2 {
        // SAFETY: reading IA32_APIC_BASE has no side effects.
        let phys = unsafe { Msr::new(IA32_APIC_BASE).read() } & 0x000F_FFFF_FFFF_F000;
        XAPIC_VIRT.store(hhdm_offset + phys, Ordering::Relaxed);
    }
    READY.store(true, Ordering::Release);
    init_local();
    x2
}

/// Enables this CPU's local APIC (timer stopped until `start_timer`).
/// Called once per CPU after `init_bsp` ran on the BSP.
pub fn init_local() {
    let mut builder = LocalApicBuilder::new();
    builder
        .timer_vector(TIMER_VECTOR as usize)
        .error_vector(APIC_ERROR_VECTOR as usize)
        .spurious_vector(SPURIOUS_VECTOR as usize)
        .timer_mode(TimerMode::OneShot)
        .timer_divide(TimerDivide::Div16)
        .timer_initial(0);
    if !X2APIC.load(Ordering::Relaxed) {
        builder.set_xapic_base(XAPIC_VIRT.load(Ordering::Relaxed));
    }
    let mut lapic = match builder.build() {
        Ok(l) => l,
        Err(e) => panic!("local APIC setup failed on cpu {}: {}", cpu::id(), e),
    };
    let was_enabled = irq::save_disable();
    // SAFETY: the vectors are ours and have IDT entries; enabling the APIC
    // with a stopped timer (initial count 0) raises no interrupt by itself.
    unsafe { lapic.enable() };
    // The crate leaves LINT0/LINT1 unmasked with vector 0; nothing is wired
    // to them that we use, so mask both.
    REG_LVT_LINT0.write(LVT_MASKED);
    REG_LVT_LINT1.write(LVT_MASKED);
    // SAFETY: this CPU's slot, interrupts off (see `with_local`).
    unsafe { *LOCAL.remote(cpu::id()).0.get() = Some(lapic) };
    irq::restore(was_enabled);
}

/// Hardware id of this CPU's local APIC.
pub fn local_id() -> u32 {
    // SAFETY: reading the id register has no side effects.
    let raw = with_local(|l| unsafe { l.id() }).expect("local APIC not initialised");
    if X2APIC.load(Ordering::Relaxed) {
        raw
    } else {
        raw >> 24
    }
}

/// Signals end of interrupt to this CPU's local APIC.
pub fn eoi() {
    // SAFETY: called from an interrupt handler of an APIC-delivered vector.
    with_local(|l| unsafe { l.end_of_interrupt() });
}

/// Reads (and clears) the error status register.
pub fn read_error_status() -> u32 {
    // The ESR latches on a write (xAPIC requires it before a read).
    REG_ESR.write(0);
    REG_ESR.read()
}

/// Starts the timer: one-shot with `count` ticks (at divide 16) when
/// `periodic` is false, else periodic.
pub fn start_timer(count: u32, periodic: bool) {
    with_local(|l| {
        // SAFETY: reprogramming our own timer; its vector has a handler.
        unsafe {
            l.set_timer_divide(TimerDivide::Div16);
            l.set_timer_mode(if periodic {
                TimerMode::Periodic
            } else {
                TimerMode::OneShot
            });
            l.set_timer_initial(count);
            l.enable_timer();
        }
    })
    .expect("local APIC not initialised");
}

/// Masks and stops this CPU's timer.
pub fn stop_timer() {
    // SAFETY: masking and zeroing our own timer has no other effect.
    with_local(|l| unsafe {
        l.disable_timer();
        l.set_timer_initial(0);
    });
}

/// Current count of this CPU's timer.
pub fn timer_current() -> u32 {
    // SAFETY: a read of the current-count register.
    with_local(|l| unsafe { l.timer_current() }).unwrap_or(0)
}

/// Destination field value for `lapic_id` in the crate's 64-bit ICR layout
/// (bits 32..63): x2APIC takes the whole id there, xAPIC wants it in bits
/// 56..63 (bits 24..31 of the high ICR register).
fn icr_destination(lapic_id: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        lapic_id
    } else {
        lapic_id << 24
    }
}

/// Sends a fixed IPI with `vector` to CPU `cpu` (dense id).
pub fn send_ipi(cpu: usize, vector: u8) {
    assert!(
        READY.load(Ordering::Acquire),
        "send_ipi before the APIC was set up"
    );
    assert!(
        cpu < MAX_CPUS && cpu::get(cpu).is_online(),
        "send_ipi to cpu {} which is not online",
        cpu
    );
    let dest = icr_destination(cpu::get(cpu).lapic_id());
    // SAFETY: a fixed IPI to an online CPU, whose IDT handles `vector`.
    with_local(|l| unsafe { l.send_ipi(vector, dest) }).expect("local APIC not initialised");
}

/// Sends an NMI to every other online CPU (the panic/exit "stop" signal).
/// Raw register writes, no `LocalApic` borrow: this runs on the panic path,
/// possibly while this CPU was inside `with_local`.
pub fn send_nmi_to_others() {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    let me = cpu::id();
    for id in 0..MAX_CPUS {
        let target = cpu::get(id);
        if id == me || !target.is_online() {
            continue;
        }
        // Delivery mode NMI (0b100 << 8), level assert (1 << 14), physical
        // destination, no shorthand.
        let low = (0b100 << 8) | (1 << 14);
        if X2APIC.load(Ordering::Relaxed) {
            let value = ((target.lapic_id() as u64) << 32) | low as u64;
            // SAFETY: writing the x2APIC ICR sends the IPI; nothing else.
            unsafe { Msr::new(REG_ICR_LOW.msr).write(value) };
        } else {
            REG_ICR_HIGH.write(target.lapic_id() << 24);
            REG_ICR_LOW.write(low);
            // Wait (bounded) for the xAPIC to accept it before the next one.
            let mut spins = 0;
            while REG_ICR_LOW.read() & (1 << 12) != 0 && spins < 1_000_000 {
                core::hint::spin_loop();
                spins += 1;
            }
        }
    }
}
