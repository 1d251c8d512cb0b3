//! The GS-based per-CPU area and CPU numbering.
//!
//! Owns `CpuLocal` (one cache-line-aligned record per CPU, reached through
//! `IA32_GS_BASE`) and the dense CPU ids: the BSP is 0, APs are 1..count in
//! the order of the Limine MP response. Invariants: a CPU's GS base points at
//! its own record from `install` on and is never changed afterwards; `id()`
//! is a single `gs:`-relative load. Must not: be used on a CPU before its
//! `install` (GS base 0 would fault), or hold anything that needs a lock.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
use x86_64::VirtAddr;

/// Most CPUs this kernel drives; extra CPUs in the MP response stay parked.
pub const MAX_CPUS: usize = 64;

/// Per-CPU record. `#[repr(C)]` fixes the offsets the `gs:` loads use:
/// `self_ptr` at 0, `id` at 8.
#[repr(C, align(64))]
pub struct CpuLocal {
    /// Address of this record (so `gs:[0]` yields a normal pointer).
    self_ptr: AtomicUsize,
    /// Dense CPU id.
    id: AtomicUsize,
    /// Local APIC id (from the MP response / MADT).
    lapic_id: AtomicU32,
    /// Timer interrupts taken on this CPU.
    pub ticks: AtomicU64,
    /// `CALL_VECTOR` IPIs taken on this CPU (the boot self-check counts them).
    pub call_ipis: AtomicU64,
    /// Set by the CPU itself once its tables, IDT and APIC are up.
    online: AtomicBool,
}

impl CpuLocal {
    const fn new() -> Self {
        CpuLocal {
            self_ptr: AtomicUsize::new(0),
            id: AtomicUsize::new(0),
            lapic_id: AtomicU32::new(0),
            ticks: AtomicU64::new(0),
            call_ipis: AtomicU64::new(0),
            online: AtomicBool::new(false),
        }
    }

    /// Whether the CPU finished its bring-up (it can take IPIs and NMIs).
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Local APIC id of the CPU that owns this record.
    pub fn lapic_id(&self) -> u32 {
        self.lapic_id.load(Ordering::Relaxed)
    }
}

static CPUS: [CpuLocal; MAX_CPUS] = [const { CpuLocal::new() }; MAX_CPUS];

/// CPUs in the system: 1 until SMP bring-up starts, then the number of CPUs
/// being started (ids `0..count` are valid from then on), fixed afterwards.
static COUNT: AtomicUsize = AtomicUsize::new(1);

/// Points this CPU's GS base at record `id` and fills it in. Called once per
/// CPU, by that CPU, before anything calls `id()` on it.
pub fn install(id: usize, lapic_id: u32) {
    assert!(id < MAX_CPUS, "cpu id {} beyond MAX_CPUS", id);
    let rec = &CPUS[id];
    rec.self_ptr
        .store(rec as *const CpuLocal as usize, Ordering::Relaxed);
    rec.id.store(id, Ordering::Relaxed);
    rec.lapic_id.store(lapic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(rec));
    // The "other" GS base is what `swapgs` brings in when entering from user
    // mode; kernel-only for now, so it mirrors the kernel value.
    KernelGsBase::write(VirtAddr::from_ptr(rec));
}

/// Marks this CPU online: its GDT/IDT/APIC are ready for IPIs and NMIs.
pub fn set_online() {
    this().online.store(true, Ordering::Release);
}

/// Records the local APIC id of CPU `id` (the BSP learns it after `install`).
pub fn set_lapic_id(id: usize, lapic_id: u32) {
    CPUS[id].lapic_id.store(lapic_id, Ordering::Relaxed);
}

/// This CPU's dense id, one `gs:`-relative load.
#[inline(always)]
pub fn id() -> usize {
    let id: usize;
    // SAFETY: `install` pointed GS at a `CpuLocal` whose field at offset 8 is
    // `id`; reading it has no side effects.
    unsafe { asm!("mov {}, gs:[8]", out(reg) id, options(nostack, preserves_flags, readonly)) };
    id
}

/// This CPU's record.
#[inline(always)]
pub fn this() -> &'static CpuLocal {
    let ptr: usize;
    // SAFETY: offset 0 of the installed record is its own address.
    unsafe { asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, preserves_flags, readonly)) };
    // SAFETY: the pointer was stored by `install` from a `&'static CpuLocal`.
    unsafe { &*(ptr as *const CpuLocal) }
}

/// Record of CPU `id` (for cross-CPU reads such as tick counts).
pub fn get(id: usize) -> &'static CpuLocal {
    &CPUS[id]
}

/// CPUs online (fixed once boot finished).
pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// Fixes the CPU count once every CPU is online.
pub fn set_count(n: usize) {
    COUNT.store(n, Ordering::Release);
}

/// The `percpu` crate's view of this machine: ids from GS, and pinning by
/// turning interrupts off (no preemption, no interrupt handler on this CPU
/// while a `CpuGuard` lives).
struct KernelPlatform;

impl percpu::Platform for KernelPlatform {
    fn cpu_id(&self) -> usize {
        id()
    }

    fn cpu_count(&self) -> usize {
        count()
    }

    fn pin(&self) -> percpu::PinToken {
        percpu::PinToken::new(super::irq::save_disable() as usize)
    }

    fn unpin(&self, token: percpu::PinToken) {
        super::irq::restore(token.raw() != 0);
    }
}

static PLATFORM: KernelPlatform = KernelPlatform;

/// Installs the kernel platform into `percpu`. BSP, right after `install`.
pub fn install_percpu_platform() {
    assert_eq!(
        MAX_CPUS,
        percpu::MAX_CPUS,
        "arch and percpu disagree on MAX_CPUS"
    );
    percpu::set_platform(&PLATFORM);
}
