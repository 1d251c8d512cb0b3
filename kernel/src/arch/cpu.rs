//! The GS-based per-CPU area and CPU numbering.
//!
//! Owns `CpuLocal` (one cache-line-aligned record per CPU, reached through
//! `IA32_GS_BASE`) and the dense CPU ids: the BSP is 0, APs are 1..count in
//! the order of the Limine MP response. Invariants: a CPU's GS base points at
//! its own record from `install` on and is never changed afterwards; `id()`
//! is a single `gs:`-relative load. Must not: be used on a CPU before its
//! `install` (GS base 0 would fault), or hold anything that needs a lock.
//!
//! User mode: while the kernel runs, GS base is the kernel's record and
//! `IA32_KERNEL_GS_BASE` holds the user's GS base (always 0: user programs
//! get TLS through FS); every entry from ring 3 (`syscall`, interrupts,
//! exceptions) does `swapgs` first and every exit does it last.  The
//! syscall entry reaches the running thread's kernel stack top through
//! `gs:[KERNEL_RSP_OFFSET]` and parks the user stack pointer in
//! `gs:[USER_RSP_OFFSET]`; the scheduler updates the former (and the TSS
//! `rsp0`) whenever it switches in a user thread.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
use x86_64::VirtAddr;

/// Most CPUs this kernel drives (the `percpu` crate's bound); extra CPUs in
/// the MP response stay parked.
pub use percpu::MAX_CPUS;

/// Offset of `CpuLocal::kernel_rsp` (used by the syscall entry assembly).
pub const KERNEL_RSP_OFFSET: usize = core::mem::offset_of!(CpuLocal, kernel_rsp);
/// Offset of `CpuLocal::user_rsp` (scratch slot of the syscall entry).
pub const USER_RSP_OFFSET: usize = core::mem::offset_of!(CpuLocal, user_rsp);

/// Per-CPU record. `#[repr(C)]` fixes the offsets the `gs:` loads use; the
/// assembly takes them from `offset_of!` (`const` operands), never as
/// literals.
#[repr(C, align(64))]
pub struct CpuLocal {
    /// Address of this record (so `gs:[0]` yields a normal pointer).
    self_ptr: AtomicUsize,
    /// Dense CPU id.
    id: AtomicUsize,
    /// Top of the running thread's kernel stack: where `syscall` switches to.
    kernel_rsp: AtomicU64,
    /// The user stack pointer, parked by the syscall entry for a moment.
    user_rsp: AtomicU64,
    /// The `proc` task running on this CPU (0 for kernel threads); set by
    /// the scheduler on switch-in, read by `proc::current_task()`.
    current_task: AtomicUsize,
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
            kernel_rsp: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
            current_task: AtomicUsize::new(0),
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

/// Each record in its own `CachePadded` slot: no two CPUs' records share a
/// cache line (nor an adjacent-line prefetch pair).
static CPUS: percpu::PerCpu<CpuLocal> = percpu::per_cpu!(CpuLocal::new());

/// Points this CPU's GS base at record `id` and fills it in. Called once per
/// CPU, by that CPU, before anything calls `id()` on it.
pub fn install(id: usize, lapic_id: u32) {
    assert!(id < MAX_CPUS, "cpu id {} beyond MAX_CPUS", id);
    let rec = CPUS.remote(id);
    rec.self_ptr
        .store(rec as *const CpuLocal as usize, Ordering::Relaxed);
    rec.id.store(id, Ordering::Relaxed);
    rec.lapic_id.store(lapic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(rec));
    // The "other" GS base is the user's while the kernel runs (module doc):
    // user programs start with GS base 0.
    KernelGsBase::write(VirtAddr::zero());
}

/// Records the kernel stack top of the thread being switched in (for the
/// syscall entry).  Called by the scheduler with interrupts off.
pub fn set_kernel_rsp(top: u64) {
    this().kernel_rsp.store(top, Ordering::Relaxed);
}

/// Records the `proc` task being switched in (0: a kernel thread).
pub fn set_current_task(task: usize) {
    this().current_task.store(task, Ordering::Relaxed);
}

/// The `proc` task running on this CPU (0 for kernel threads): one
/// `gs:`-relative load, no lock.
#[inline(always)]
pub fn current_task() -> usize {
    let task: usize;
    // SAFETY: `install` pointed GS at a `CpuLocal`; the offset is that of
    // its `current_task`; reading it has no side effects.
    unsafe {
        asm!(
            "mov {}, gs:[{off}]",
            out(reg) task,
            off = const core::mem::offset_of!(CpuLocal, current_task),
            options(nostack, preserves_flags, readonly)
        )
    };
    task
}

/// Marks this CPU online: its GDT/IDT/APIC are ready for IPIs and NMIs.
pub fn set_online() {
    this().online.store(true, Ordering::Release);
}

/// Records the local APIC id of CPU `id` (the BSP learns it after `install`).
pub fn set_lapic_id(id: usize, lapic_id: u32) {
    CPUS.remote(id).lapic_id.store(lapic_id, Ordering::Relaxed);
}

/// This CPU's dense id, one `gs:`-relative load.
#[inline(always)]
pub fn id() -> usize {
    let id: usize;
    // SAFETY: `install` pointed GS at a `CpuLocal`; the offset is that of
    // its `id`; reading it has no side effects.
    unsafe {
        asm!(
            "mov {}, gs:[{off}]",
            out(reg) id,
            off = const core::mem::offset_of!(CpuLocal, id),
            options(nostack, preserves_flags, readonly)
        )
    };
    id
}

/// This CPU's record.
#[inline(always)]
pub fn this() -> &'static CpuLocal {
    let ptr: usize;
    // SAFETY: `self_ptr` of the installed record holds its own address.
    unsafe {
        asm!(
            "mov {}, gs:[{off}]",
            out(reg) ptr,
            off = const core::mem::offset_of!(CpuLocal, self_ptr),
            options(nostack, preserves_flags, readonly)
        )
    };
    // SAFETY: the pointer was stored by `install` from a `&'static CpuLocal`.
    unsafe { &*(ptr as *const CpuLocal) }
}

/// Record of CPU `id` (for cross-CPU reads such as tick counts).
pub fn get(id: usize) -> &'static CpuLocal {
    CPUS.remote(id)
}

/// CPUs in the system: 1 until SMP bring-up starts, then the number of CPUs
/// being started (ids `0..count` are valid from then on), fixed afterwards.
/// The one count lives in `percpu` (`smp::start_aps` sets it); this is its
/// name inside `arch`.
pub use percpu::cpu_count as count;

/// The `percpu` crate's view of this machine: ids from GS, and pinning by
/// turning interrupts off (no preemption, no interrupt handler on this CPU
/// while a `CpuGuard` lives).
struct KernelPlatform;

impl percpu::Platform for KernelPlatform {
    fn cpu_id(&self) -> usize {
        id()
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
    percpu::set_platform(&PLATFORM);
}
