//! Which address space each CPU runs: the per-CPU `ACTIVE` slots, loading
//! a root table (CR3), the CPU's protection features (SMEP/SMAP/WP/NXE),
//! and `AddressSpace::activate` / `deactivate`.
//!
//! Invariants: a CPU's `ACTIVE` slot is written only by that CPU, with
//! interrupts off; a non-zero slot owns one strong count of the address
//! space (`Arc::into_raw`), so a root table is never freed while some CR3
//! points to it.  A CPU sets its bit in the address space's mask *before*
//! writing CR3 (see `tlb`).
//!
//! Must not: touch VMAs or take a range lock.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use percpu::PerCpu;

use super::AddressSpace;
use crate::arch;
use crate::memory::PhysAddr;

/// The kernel's own root table (the loader's), template of the kernel half.
pub(super) static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the address space whose root is loaded (`Arc::into_raw`), or 0.
static ACTIVE: PerCpu<AtomicUsize> = percpu::per_cpu!(AtomicUsize::new(0));
/// Per CPU: SMEP/SMAP/NXE were switched on.
static FEATURES_ON: PerCpu<AtomicBool> = percpu::per_cpu!(AtomicBool::new(false));

/// Records the boot CPU's root table as the kernel template.  `mm::init`.
pub fn init_kernel_root() {
    let (frame, _) = x86_64::registers::control::Cr3::read_raw();
    KERNEL_ROOT.store(frame.start_address().as_u64(), Ordering::Release);
}

/// Identity (pointer value) of the address space loaded on `cpu`, 0 if none.
pub fn active_id(cpu: usize) -> usize {
    ACTIVE.remote(cpu).load(Ordering::Acquire)
}

/// The address space loaded on this CPU, uncounted (null: none).  Call
/// with interrupts off (else the CPU may change under the read); the
/// caller must know something else keeps it alive (`vm::page_fault`).
pub fn current_ptr() -> Option<*const AddressSpace> {
    let raw = ACTIVE.remote(arch::cpu::id()).load(Ordering::Acquire) as *const AddressSpace;
    (!raw.is_null()).then_some(raw)
}

/// The address space loaded on this CPU (a user thread's own, in a syscall).
pub fn current() -> Option<Arc<AddressSpace>> {
    let saved = arch::irq::save_disable();
    let raw = ACTIVE.remote(arch::cpu::id()).load(Ordering::Acquire) as *const AddressSpace;
    let result = if raw.is_null() {
        None
    } else {
        // SAFETY: a non-zero slot owns one strong count (from `into_raw` in
        // `activate`); with interrupts off nobody on this CPU can replace
        // it, and other CPUs never write our slot.  We add a count for the
        // returned `Arc`.
        unsafe {
            Arc::increment_strong_count(raw);
            Some(Arc::from_raw(raw))
        }
    };
    arch::irq::restore(saved);
    result
}

/// Switches this CPU back to the kernel's root table and drops its
/// reference to the user address space it had loaded (an exiting process
/// calls this so its memory is freed now, not at the next switch).
pub fn deactivate() {
    let saved = arch::irq::save_disable();
    let me = arch::cpu::id();
    let old = ACTIVE.remote(me).swap(0, Ordering::AcqRel);
    if old != 0 {
        load_root(PhysAddr::new(KERNEL_ROOT.load(Ordering::Acquire)));
    }
    arch::irq::restore(saved);
    release_active(old, me);
}

/// Clears this CPU from `old`'s mask and drops the slot's reference.
fn release_active(old: usize, me: usize) {
    if old == 0 {
        return;
    }
    // SAFETY: `old` came from `Arc::into_raw` in `activate` and its slot no
    // longer names it, so this count is ours to give back.
    let old = unsafe { Arc::from_raw(old as *const AddressSpace) };
    old.cpus.fetch_and(!(1u64 << me), Ordering::SeqCst);
    drop(old);
}

fn load_root(root: PhysAddr) {
    // SAFETY: `root` is a valid PML4 whose kernel half equals the kernel's
    // (copied from it), so the code, stack and data in use stay mapped.
    unsafe {
        core::arch::asm!("mov cr3, {}", in(reg) root.as_u64(), options(nostack, preserves_flags))
    };
}

/// CPU feature bits this module cares about.
struct Features {
    smep: bool,
    smap: bool,
    nx: bool,
}

fn features() -> Features {
    // SAFETY: (of the calls) CPUID is available on every x86_64 CPU; leaf 7
    // and 0x80000001 exist on every CPU with long mode worth running.
    #[allow(unused_unsafe)]
    let (l7, ext) = unsafe {
        (
            core::arch::x86_64::__cpuid_count(7, 0),
            core::arch::x86_64::__cpuid(0x8000_0001),
        )
    };
    Features {
        smep: l7.ebx & (1 << 7) != 0,
        smap: l7.ebx & (1 << 20) != 0,
        nx: ext.edx & (1 << 20) != 0,
    }
}

/// Whether `stac`/`clac` exist (SMAP in CPUID); set by `init_cpu`.
static SMAP: AtomicBool = AtomicBool::new(false);

/// True when the CPU has SMAP (user copies bracket themselves with stac/clac).
pub fn smap_enabled() -> bool {
    SMAP.load(Ordering::Relaxed)
}

/// Turns on SMEP, SMAP (CR4) and NXE (EFER) on this CPU, as far as CPUID
/// offers them.  Idempotent; `activate` calls it, so every CPU that ever
/// runs user code has them; `mm::init` calls it for the BSP.
pub fn init_cpu() {
    let me = arch::cpu::id();
    if FEATURES_ON.remote(me).load(Ordering::Relaxed) {
        return;
    }
    let f = features();
    SMAP.store(f.smap, Ordering::Relaxed);
    let saved = arch::irq::save_disable();
    // SAFETY: CR0.WP only makes the kernel obey read-only PTEs; CR4.SMEP/SMAP only restricts supervisor access to
    // user pages, which the kernel touches only through `uaccess` (stac);
    // EFER.NXE makes the NX bit meaningful (the loader sets it already when
    // present).  Both bits are set only when CPUID reports them.
    unsafe {
        use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
        // Supervisor writes must honour read-only user pages (copy-on-write).
        Cr0::update(|c| *c |= Cr0Flags::WRITE_PROTECT);
        use x86_64::registers::model_specific::{Efer, EferFlags};
        let mut cr4 = Cr4::read();
        if f.smep {
            cr4 |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
        }
        if f.smap {
            cr4 |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
        }
        Cr4::write(cr4);
        if f.nx {
            Efer::update(|e| *e |= EferFlags::NO_EXECUTE_ENABLE);
        }
    }
    FEATURES_ON.remote(me).store(true, Ordering::Relaxed);
    arch::irq::restore(saved);
    if me == 0 {
        log::info!(
            "vm: cpu features SMEP {} SMAP {} NX {}",
            f.smep,
            f.smap,
            f.nx
        );
    }
}

/// Whether CPU `cpu` switched the features on (tests).
pub fn cpu_features_on(cpu: usize) -> bool {
    FEATURES_ON.remote(cpu).load(Ordering::Relaxed)
}

/// Reads this CPU's control registers: true when every protection CPUID
/// offers is in force (CR4.SMEP, CR4.SMAP, CR0.WP, EFER.NXE).  For tests.
pub fn protections_in_force() -> bool {
    use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
    use x86_64::registers::model_specific::{Efer, EferFlags};
    let f = features();
    let cr4 = Cr4::read();
    (!f.smep || cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION))
        && (!f.smap || cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION))
        && Cr0::read().contains(Cr0Flags::WRITE_PROTECT)
        && (!f.nx || Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE))
}

impl AddressSpace {
    /// CPUs that may cache translations of this address space.
    pub fn cpu_mask(&self) -> u64 {
        self.cpus.load(Ordering::SeqCst)
    }

    /// Loads this address space on the calling CPU (CR3) and marks the CPU
    /// in its mask.  The CPU keeps a reference until another address space
    /// (or `deactivate`) replaces it.  Cheap when already loaded.
    /// The table CPU `me` loads: the shared one (`locks=global`), or its
    /// own, allocated on its first activation (per-core).  If that
    /// allocation fails the CPU loads the canonical table and the address
    /// space falls back to shooting down every CPU that runs it.  Called
    /// with interrupts off on CPU `me` (the only writer of its slot).
    fn root_for(&self, me: usize) -> PhysAddr {
        if !self.per_core {
            return self.root;
        }
        let slot = self.core_roots.remote(me);
        let cur = slot.load(Ordering::Acquire);
        if cur != 0 {
            return PhysAddr::new(cur);
        }
        match super::paging::new_root(PhysAddr::new(KERNEL_ROOT.load(Ordering::Acquire))) {
            Ok(root) => {
                slot.store(root.as_u64(), Ordering::Release);
                root
            }
            Err(_) => {
                log::warn!("vm: no frame for a per-core table; shared table on cpu {me}");
                self.canonical_loaded.store(true, Ordering::SeqCst);
                self.root
            }
        }
    }

    pub fn activate(self: &Arc<Self>) {
        init_cpu();
        let saved = arch::irq::save_disable();
        let me = arch::cpu::id();
        let id = Arc::as_ptr(self) as usize;
        let old = ACTIVE.remote(me).load(Ordering::Acquire);
        if old == id {
            arch::irq::restore(saved);
            return;
        }
        let root = self.root_for(me);
        // Mask first, then CR3: see `tlb` (a shootdown that misses us ran
        // before we read the tables).
        self.cpus.fetch_or(1u64 << me, Ordering::SeqCst);
        ACTIVE
            .remote(me)
            .store(Arc::into_raw(self.clone()) as usize, Ordering::Release);
        load_root(root);
        arch::irq::restore(saved);
        release_active(old, me);
    }
}
