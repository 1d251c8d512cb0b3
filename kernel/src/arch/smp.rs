//! SMP bring-up through the Limine MP response.
//!
//! Owns the dense numbering of CPUs (BSP 0, then the APs in response order,
//! stored in each `mp::Cpu.extra` before the AP is released) and the AP entry
//! path: per-CPU area, GDT/TSS, IDT, local APIC, timer, "online", then wait
//! for the BSP's go-ahead and hand the CPU to `ap_main`. Must not: start more
//! than `MAX_CPUS` CPUs, or let an AP run kernel code before its GS base,
//! GDT and IDT are loaded.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use limine::mp::Cpu;
use limine::response::MpResponse;

use super::cpu::{self, MAX_CPUS};
use super::{apic, gdt, idt, irq, time};

/// Set by the BSP when APs may leave their bring-up wait.
static RELEASE: AtomicBool = AtomicBool::new(false);
/// What each AP runs once released (the BSP stores it before releasing).
static AP_MAIN: AtomicUsize = AtomicUsize::new(0);

/// Number of CPUs that are online (BSP included): those of `0..count()`
/// whose record says so (no separate counter to keep in step).
pub fn online_count() -> usize {
    (0..cpu::count())
        .filter(|&id| cpu::get(id).is_online())
        .count()
}

/// Marks the calling CPU online (lets IPIs/NMIs target it; `online_count`
/// sees it).
pub fn mark_online() {
    cpu::set_online();
}

/// Releases the parked APs into `ap_main` (which must not return).
pub fn release_aps(ap_main: fn() -> !) {
    AP_MAIN.store(ap_main as usize, Ordering::Release);
    RELEASE.store(true, Ordering::Release);
}

/// Starts every AP in the MP response (up to `MAX_CPUS` in total) and fixes
/// `cpu::count()`. Returns the number of CPUs expected online, the BSP
/// included. The BSP must be id 0 already, with its APIC id recorded.
pub fn start_aps(mp: &MpResponse) -> usize {
    // The BSP's own id, as its APIC reports it (recorded by `main`).
    let bsp_lapic = cpu::get(0).lapic_id();
    let aps = mp.cpus().iter().filter(|c| c.lapic_id != bsp_lapic);
    let listed = 1 + aps.clone().count();
    let total = listed.min(MAX_CPUS);
    let skipped = listed - total;
    // Ids 0..total are valid from now on (APs use `count()` right away).
    percpu::set_cpu_count(total);
    for (id, ap) in (1..total).zip(aps) {
        cpu::set_lapic_id(id, ap.lapic_id);
        ap.extra.store(id as u64, Ordering::Relaxed);
        // The goto write is SeqCst, so the AP sees `extra` and its CpuLocal.
        ap.goto_address.write(ap_entry);
    }
    if skipped > 0 {
        log::warn!(
            "smp: {} CPUs beyond MAX_CPUS={} stay parked",
            skipped,
            MAX_CPUS
        );
    }
    total
}

/// Waits until `expected` CPUs are online or `timeout_ns` passes; returns
/// the number online at the end.
pub fn wait_online(expected: usize, timeout_ns: u64) -> usize {
    let deadline = time::now_ns().saturating_add(timeout_ns);
    loop {
        let n = online_count();
        if n >= expected || time::now_ns() >= deadline {
            return n;
        }
        core::hint::spin_loop();
    }
}

/// Sends a `CALL_VECTOR` IPI to every other online CPU and waits (bounded)
/// until each has taken it: proves the APIC route to every CPU works.
/// Call with interrupts enabled on every CPU. Returns the first CPU that
/// did not answer in time.
pub fn ping_all(timeout_ns: u64) -> Result<(), usize> {
    let n = cpu::count();
    let me = cpu::id();
    let mut before = [0u64; MAX_CPUS];
    for (id, b) in before.iter_mut().enumerate().take(n) {
        *b = cpu::get(id).call_ipis.load(Ordering::Acquire);
    }
    for id in (0..n).filter(|&id| id != me) {
        apic::send_ipi(id, super::CALL_VECTOR);
    }
    let deadline = time::now_ns().saturating_add(timeout_ns);
    loop {
        let silent = (0..n)
            .find(|&id| id != me && cpu::get(id).call_ipis.load(Ordering::Acquire) == before[id]);
        match silent {
            None => return Ok(()),
            Some(id) if time::now_ns() >= deadline => return Err(id),
            Some(_) => core::hint::spin_loop(),
        }
    }
}

/// AP entry from the loader: own stack, interrupts off, loader's GDT.
/// (`unsafe extern "C"` because that is the type `GotoAddress::write` takes.)
unsafe extern "C" fn ap_entry(info: &Cpu) -> ! {
    let id = info.extra.load(Ordering::Relaxed) as usize;
    cpu::install(id, info.lapic_id);
    gdt::init(id);
    idt::load();
    apic::init_local();
    let hw_id = apic::local_id();
    if hw_id != info.lapic_id {
        log::warn!(
            "smp: cpu {} has APIC id {} but the MP response says {}",
            id,
            hw_id,
            info.lapic_id
        );
    }
    time::start_tick();
    mark_online();
    log::info!("smp: cpu {} online (APIC id {})", id, hw_id);
    // Park with interrupts on (ticks and IPIs are served) until released.
    while !RELEASE.load(Ordering::Acquire) {
        irq::enable_and_halt();
    }
    irq::disable();
    let entry = AP_MAIN.load(Ordering::Acquire);
    // SAFETY: `release_aps` stored a valid `fn() -> !` before setting RELEASE.
    let ap_main: fn() -> ! = unsafe { core::mem::transmute::<usize, fn() -> !>(entry) };
    ap_main()
}
