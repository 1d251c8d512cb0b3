//! The kernel: entry point and boot sequence of the BSP.
//!
//! Owns the order in which subsystems come up (docs/KERNEL-MODULES.md):
//! per-CPU area -> serial log -> Limine handshake -> command line -> GDT/IDT
//! -> mm -> ACPI/APIC/timer calibration -> APs -> sched -> run mode -> exit.
//! Invariants: nothing logs before the BSP's GS base is set (lines carry the
//! CPU id); every failure here ends QEMU with a clear message and a
//! non-zero code, never a hang. Must not: contain hardware details (those
//! live in `arch`) or policy of the run modes (that lives in `selftest`).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod cmdline;
mod drivers;
mod files;
mod ipc;
mod log;
mod memory;
mod panic;
mod proc;
mod random;
mod sched;
mod selftest;
mod sockets;
mod syscall;
mod time;

use ::log::{info, warn, LevelFilter};

use cmdline::Options;

/// How long the BSP waits for the APs to come online.
const AP_BOOT_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long the BSP waits for every CPU to answer a test IPI.
const IPI_CHECK_TIMEOUT_NS: u64 = 1_000_000_000;
/// Memory-map entries handed to `mm` (the rest are ignored, with a warning).
const MAX_MEMORY_REGIONS: usize = 256;

/// Exit code of a failed boot or self-check (docs/CONTRACTS.md §5).
const EXIT_FAILURE: u32 = 1;

/// BSP entry point (the ELF entry; `linker.ld` names it). The loader gives
/// us its stack, its GDT, interrupts off.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry() -> ! {
    // The per-CPU area first: the logger prints `cpu::id()` from GS.
    arch::cpu::install(0, 0);
    arch::cpu::install_percpu_platform();
    log::init(LevelFilter::Info);

    let handshake = match boot::check_revision() {
        Ok(h) => h,
        Err(e) => fail(format_args!("boot: error: {}", e)),
    };
    info!("boot: {}", handshake);
    let revision = handshake.revision();

    let mut opts = read_cmdline();
    // An initramfs without `run=` means: run PID 1 (docs/USERSPACE.md).
    if !opts.run_given
        && boot::modules()
            .iter()
            .any(|m| m.string().to_bytes() == b"initramfs")
    {
        opts.run = cmdline::RunMode::Init;
    }
    log::set_level(opts.log);
    cmdline::set_options(opts);

    arch::gdt::init(0);
    arch::idt::init();
    arch::idt::load();

    let hhdm = boot::hhdm_offset().unwrap_or_else(|e| fail(format_args!("boot: error: {}", e)));
    log_boot_info(revision, hhdm, &opts);
    init_memory(hhdm);

    // Interrupt controllers and time.
    match boot::rsdp_address() {
        Some(rsdp) => match arch::acpi::scan_madt(rsdp, hhdm) {
            Ok(m) => info!(
                "acpi: MADT lists {} CPUs, {} IOAPIC(s), {} override(s), local APIC at {:#x}, 8259 {}",
                m.cpus,
                m.ioapic_count,
                m.overrides,
                m.local_apic_address,
                if m.has_8259 { "present (masked)" } else { "absent" }
            ),
            Err(e) => warn!("acpi: cannot read the MADT ({:?}); using the MP response only", e),
        },
        None => warn!("acpi: loader gave no RSDP; using the MP response only"),
    }
    let x2apic = arch::apic::init_bsp(hhdm);
    let mp = boot::mp();
    let hw = arch::apic::local_id();
    arch::cpu::set_lapic_id(0, hw);
    match mp {
        Some(mp) if mp.bsp_lapic_id() != hw => {
            warn!(
                "apic: BSP APIC id is {} but the MP response says {}",
                hw,
                mp.bsp_lapic_id()
            )
        }
        Some(_) => {}
        None => warn!("smp: loader gave no MP response; running on the BSP only"),
    }
    info!(
        "apic: {} mode, BSP APIC id {}",
        if x2apic { "x2APIC" } else { "xAPIC" },
        hw
    );
    match arch::time::calibrate() {
        Ok((tsc_hz, per_tick)) => info!(
            "time: TSC {}.{:03} MHz, APIC timer {} counts per {} Hz tick",
            tsc_hz / 1_000_000,
            (tsc_hz / 1000) % 1000,
            per_tick,
            arch::TICK_HZ
        ),
        Err(e) => fail(format_args!("time: error: calibration failed: {}", e)),
    }
    arch::time::start_tick();
    arch::smp::mark_online();

    // Application processors.
    let expected = mp.map_or(1, arch::smp::start_aps);
    arch::irq::enable();
    let online = arch::smp::wait_online(expected, AP_BOOT_TIMEOUT_NS);
    if online != expected {
        fail(format_args!(
            "smp: FAIL only {} of {} CPUs came online within {} s",
            online,
            expected,
            AP_BOOT_TIMEOUT_NS / 1_000_000_000
        ));
    }

    if let Err(cpu) = arch::smp::ping_all(IPI_CHECK_TIMEOUT_NS) {
        fail(format_args!("smp: FAIL cpu {} does not answer IPIs", cpu));
    }

    // Scheduler: every boot stack becomes its CPU's idle thread, and
    // `kernel_main` runs as the first kernel thread.
    sched::init();
    arch::smp::release_aps(sched::start_ap);
    sched::start_bsp(kernel_main)
}

/// The main kernel thread: announce, run the selected mode, exit.
fn kernel_main() -> ! {
    let online = match sched::wait_for_all_cpus(AP_BOOT_TIMEOUT_NS) {
        Ok(n) => n,
        Err(n) => fail(format_args!(
            "sched: FAIL only {} of {} CPUs entered the scheduler",
            n,
            sched::cpu_count()
        )),
    };
    log::report(format_args!("cpus online: {}", online));
    // Which image this is (docs/SERVERS.md, "The servers kernel image").
    info!(
        "kernel: {} image",
        if cfg!(feature = "monolithic") {
            "monolithic"
        } else {
            "servers (no in-kernel TCP/IP stack, ext2 or initramfs unpacking)"
        }
    );
    drivers::init();
    let run = cmdline::options().run;
    // The TCP/IP stack serves user programs.  The self-test modes run
    // without it: `nettest` owns the NIC's queues at the frame level, and
    // `stress`/`selfcheck` account for every frame, which the stack's
    // threads would allocate behind their back.
    // The servers image has no in-kernel stack: AF_INET is netd's.
    #[cfg(feature = "monolithic")]
    if run == cmdline::RunMode::Init {
        sockets::inet::init();
    }
    let code = selftest::run(run);
    arch::qemu_exit(code)
}

/// Hands the usable memory to `mm` (in the mode chosen by `locks=`, which
/// `cmdline::set_options` installed as `percpu::lock_mode()`).
fn init_memory(hhdm: u64) {
    let mode = percpu::lock_mode();
    if let Err(e) = memory::set_mode(mode) {
        fail(format_args!(
            "mm: error: cannot set mode {:?}: {:?}",
            mode, e
        ));
    }
    let entries = boot::memory_map().unwrap_or_else(|e| fail(format_args!("boot: error: {}", e)));
    // No heap yet: copy the map into a fixed array on the boot stack.
    let mut regions = [memory::MemRegion {
        base: 0,
        len: 0,
        usable: false,
    }; MAX_MEMORY_REGIONS];
    if entries.len() > MAX_MEMORY_REGIONS {
        warn!(
            "mm: memory map has {} entries; only the first {} are used",
            entries.len(),
            MAX_MEMORY_REGIONS
        );
    }
    let n = entries.len().min(MAX_MEMORY_REGIONS);
    for (region, e) in regions.iter_mut().zip(entries.iter()) {
        *region = memory::MemRegion {
            base: e.base,
            len: e.length,
            usable: e.entry_type == limine::memory_map::EntryType::USABLE,
        };
    }
    if let Err(e) = memory::init(&regions[..n], hhdm) {
        fail(format_args!("mm: error: {}", e));
    }
}

/// Parses the command line; a bad value for a known key ends the boot.
fn read_cmdline() -> Options {
    let line = match boot::cmdline() {
        Ok(l) => l,
        Err(_) => fail(format_args!(
            "cmdline: error: the kernel command line is not valid UTF-8"
        )),
    };
    info!("cmdline: {:?}", line);
    match cmdline::parse(line, |word| {
        warn!("cmdline: ignoring unknown option {:?}", word)
    }) {
        Ok(o) => o,
        Err(e) => fail(format_args!("cmdline: error: {}", e)),
    }
}

/// Logs what the loader told us.
fn log_boot_info(revision: u64, hhdm: u64, opts: &Options) {
    match boot::bootloader() {
        Some((name, version)) => info!(
            "boot: loader {} {}, Limine base revision {}",
            name, version, revision
        ),
        None => info!("boot: unnamed loader, Limine base revision {}", revision),
    }
    info!(
        "boot: options run={} locks={} log={}",
        opts.run,
        opts.locks,
        cmdline::level_name(opts.log)
    );
    info!("boot: HHDM at {:#x}", hhdm);
    if let Some((phys, virt)) = boot::kernel_address() {
        info!("boot: kernel at phys {:#x}, virt {:#x}", phys, virt);
    }
    match boot::memory_map() {
        Ok(entries) => {
            let usable: u64 = entries
                .iter()
                .filter(|e| e.entry_type == limine::memory_map::EntryType::USABLE)
                .map(|e| e.length)
                .sum();
            let top = entries.iter().map(|e| e.base + e.length).max().unwrap_or(0);
            info!(
                "boot: memory {} MiB usable in {} map entries, top of map {:#x}",
                usable >> 20,
                entries.len(),
                top
            );
        }
        Err(e) => fail(format_args!("boot: error: {}", e)),
    }
    for m in boot::modules() {
        info!(
            "boot: module {:?} ({:?}), {} bytes",
            m.path(),
            m.string(),
            m.size()
        );
    }
    if let Some(mp) = boot::mp() {
        info!(
            "boot: {} CPUs in the MP response, BSP APIC id {}",
            mp.cpus().len(),
            mp.bsp_lapic_id()
        );
    }
}

/// Prints an error line and ends QEMU with the failure code.
fn fail(args: core::fmt::Arguments<'_>) -> ! {
    log::print_always(::log::Level::Error, args);
    arch::qemu_exit(EXIT_FAILURE)
}
