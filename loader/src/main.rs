//! The built-in Limine-protocol loader for QEMU's direct kernel boot.
//!
//! QEMU starts it as a PVH ELF (`-kernel loader -initrd bundle.cpio`); it
//! reads the boot bundle (newc cpio with `limine.conf` and the files it
//! names, docs/CONTRACTS.md §2), loads the kernel ELF of the first
//! `protocol: limine` entry and its modules, answers the kernel's Limine
//! requests (base revisions 0..=2), starts the APs and parks them, and
//! enters the kernel as the Limine protocol specifies.
//!
//! Invariants: every refusal prints `loader: error: <why>` and ends QEMU
//! with exit code 3; nothing here loops without a bound.  Must not: print
//! more than two lines on success, or leave the kernel any pointer that is
//! not an HHDM address (except where the protocol says physical).
#![no_std]
#![no_main]

mod acpi;
mod cpu;
mod entry;
mod paging;
mod phys;
mod protocol;
mod pvh;
mod serial;
mod smp;

use bootfmt::{cpio, elf, limine_conf};
use core::arch::global_asm;
use paging::{PageTables, NO_EXECUTE, SIZE_2M, WRITABLE};
use phys::{MemType, PhysMem, PAGE};
use protocol::{
    hhdm, Arena, File, Kind, MemmapEntry, MpInfo, MpResponse, Requests, Words, HHDM_OFFSET,
};

/// Name and version in the bootloader info response.
const LOADER_NAME: &str = "percpu-builtin-loader";
const LOADER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Limine's minimum stack for the kernel and every AP.
const MIN_STACK: u64 = 64 * 1024;
/// Refuse kernels whose loaded span exceeds this.
const MAX_KERNEL_SPAN: u64 = 1 << 30;
/// Lowest address of a Limine kernel (the top 2 GiB).
const KERNEL_MIN_VADDR: u64 = 0xffff_ffff_8000_0000;

unsafe extern "C" {
    static __loader_start: u8;
    static __loader_end: u8;
    fn enter_kernel(entry: u64, stack_top: u64, cr3: u64, gdtr: u64) -> !;
}

global_asm!(
    r#"
    /* enter_kernel(entry: rdi, stack_top: rsi, cr3: rdx, gdtr: rcx) -> ! */
    .section .text.enter_kernel, "ax", @progbits
    .global enter_kernel
enter_kernel:
    lgdt (%rcx)
    movq %rdx, %cr3
    movq %rsi, %rsp
    pushq $0x28
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:  movw $0x30, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    pushq $0
    popfq                   /* IF = 0, DF = 0 */
    pushq $0                /* return address 0 */
    pushq %rdi              /* consumed by ret */
    xorl %eax, %eax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %edi, %edi
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

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fail!("internal error: {info}")
}

/// Read a bundle member or refuse with a clear message.
fn bundle_file<'a>(bundle: &'a [u8], path: &str, what: &str) -> &'a [u8] {
    match cpio::find(bundle, path) {
        Ok(Some(e)) if e.is_file() => e.data,
        Ok(Some(_)) => fail!("{what} {path} in the boot bundle is not a regular file"),
        Ok(None) => fail!("{what} {path} not found in the boot bundle"),
        Err(err) => fail!("boot bundle is not a valid cpio archive: {err}"),
    }
}

/// Optional bundle member with the loader's own switches (not Limine's:
/// `limine.conf` stays exactly what real Limine would read).
const OPTIONS_MEMBER: &str = "loader-options";

/// Switches of the built-in loader, read from [`OPTIONS_MEMBER`].
struct LoaderOptions {
    /// Write the loaded revision into the base revision tag's second word
    /// (`revision-answer=full`, the default).  `revision-answer=supported-only`
    /// only zeroes the third word, as Limine 7.x/8.x releases do, so the
    /// kernel's handshake can be tested against their behaviour.
    report_loaded_revision: bool,
}

/// Read [`OPTIONS_MEMBER`] (whitespace-separated `key=value` words); an
/// unknown word stops the boot rather than being ignored.
fn loader_options(bundle: &[u8]) -> LoaderOptions {
    let mut options = LoaderOptions {
        report_loaded_revision: true,
    };
    let data = match cpio::find(bundle, OPTIONS_MEMBER) {
        Ok(None) => return options,
        Ok(Some(e)) if e.is_file() => e.data,
        Ok(Some(_)) => fail!("{OPTIONS_MEMBER} in the boot bundle is not a regular file"),
        Err(err) => fail!("boot bundle is not a valid cpio archive: {err}"),
    };
    let Ok(text) = core::str::from_utf8(data) else {
        fail!("{OPTIONS_MEMBER} is not UTF-8 text")
    };
    for word in text.split_whitespace() {
        match word {
            "revision-answer=full" => options.report_loaded_revision = true,
            "revision-answer=supported-only" => options.report_loaded_revision = false,
            other => fail!("{OPTIONS_MEMBER}: unknown option {other:?}"),
        }
    }
    options
}

/// Called by the PVH stub in long mode with the start info address.
#[unsafe(no_mangle)]
extern "C" fn loader_main(start_info: u32) -> ! {
    serial::init();
    let info = pvh::StartInfo::read(u64::from(start_info));
    let nx = cpu::cpuid(0x8000_0001).3 & (1 << 20) != 0;

    // Physical memory: claim everything already in use before allocating.
    let mut mem = PhysMem::new(info.memory_map());
    mem.claim(0, PAGE, MemType::Reserved);
    // Addresses of the linker's image bounds (taking them needs no unsafe).
    let (img_start, img_end) = (
        &raw const __loader_start as u64,
        &raw const __loader_end as u64,
    );
    mem.claim(
        img_start,
        img_end - img_start,
        MemType::BootloaderReclaimable,
    );
    info.claim_structures(&mut mem);
    let Some((bundle_addr, bundle_len)) = info.bundle else {
        fail!("no boot bundle: start QEMU with -initrd <bundle.cpio>")
    };
    mem.claim(bundle_addr, bundle_len, MemType::BootloaderReclaimable);
    let trampoline_ok = mem.fw().iter().any(|r| {
        r.kind == MemType::Usable
            && r.base <= smp::TRAMPOLINE
            && smp::TRAMPOLINE + PAGE <= r.base + r.len
    });
    if trampoline_ok {
        mem.claim(smp::TRAMPOLINE, PAGE, MemType::BootloaderReclaimable);
    }
    // SAFETY: QEMU loaded the initrd there; the loader only reads it.
    let bundle = unsafe { phys::bytes(bundle_addr, bundle_len) };

    // Configuration and kernel file.
    let conf_bytes = bundle_file(bundle, "limine.conf", "configuration");
    let Ok(conf_text) = core::str::from_utf8(conf_bytes) else {
        fail!("limine.conf is not UTF-8 text")
    };
    let entry = limine_conf::first_limine_entry(conf_text).unwrap_or_else(|e| fail!("{e}"));
    let options = loader_options(bundle);
    let kernel_path = limine_conf::boot_uri_path(entry.kernel_path)
        .unwrap_or_else(|e| fail!("kernel path {:?}: {e}", entry.kernel_path));
    let kernel_file = bundle_file(bundle, kernel_path, "kernel");
    let kernel = elf::parse(kernel_file).unwrap_or_else(|e| fail!("kernel {kernel_path}: {e}"));
    match kernel.e_type {
        elf::ET_EXEC => {}
        elf::ET_DYN => fail!("kernel {kernel_path}: position-independent (ET_DYN) kernels are not supported; link it non-PIE"),
        t => fail!("kernel {kernel_path}: ELF type {t} is not an executable"),
    }

    // Load the kernel's segments into one physically contiguous block.
    let Some((lo, hi)) = kernel.load_span() else {
        fail!("kernel {kernel_path}: no loadable segments")
    };
    if lo < KERNEL_MIN_VADDR {
        fail!("kernel {kernel_path}: segment at {lo:#x} is below {KERNEL_MIN_VADDR:#x} (lower-half kernels are not supported)");
    }
    let vbase = phys::align_down(lo, PAGE);
    let span = hi
        .checked_add(PAGE - 1)
        .map(|e| phys::align_down(e, PAGE) - vbase)
        .unwrap_or(u64::MAX);
    if span > MAX_KERNEL_SPAN {
        fail!("kernel {kernel_path}: loaded size {span:#x} is larger than {MAX_KERNEL_SPAN:#x}");
    }
    if !(lo..hi).contains(&kernel.entry) {
        fail!(
            "kernel {kernel_path}: entry point {:#x} is outside its segments",
            kernel.entry
        );
    }
    let kphys = mem.alloc(span, MemType::ExecutableAndModules);
    for seg in kernel.load_segments() {
        let data = kernel.segment_data(&seg);
        // SAFETY: inside the block just allocated (segment within span).
        unsafe { phys::bytes_mut(kphys + (seg.vaddr - vbase), data.len() as u64) }
            .copy_from_slice(data);
    }

    // Requests.
    let req = Requests::scan(kphys, span);
    if req.base_revision_tag.is_none() && req.count() == 0 && req.unknown == 0 {
        fail!("kernel {kernel_path} has no Limine base revision tag and no Limine requests");
    }
    let revision = req.accept_base_revision(options.report_loaded_revision);

    // Kernel and AP stacks.
    let stack_size = phys::align_up(
        req.field(Kind::StackSize, 0).unwrap_or(0).max(MIN_STACK),
        PAGE,
    );
    if stack_size > 64 << 20 {
        fail!("requested stack size {stack_size:#x} is larger than 64 MiB");
    }
    let bsp_stack = mem.alloc(stack_size, MemType::BootloaderReclaimable);

    // Modules: copied to page-aligned memory.
    let mut module_phys = [(0u64, 0u64); limine_conf::MAX_MODULES];
    for (i, m) in entry.modules().iter().enumerate() {
        let path = limine_conf::boot_uri_path(m.path)
            .unwrap_or_else(|e| fail!("module path {:?}: {e}", m.path));
        let data = bundle_file(bundle, path, "module");
        let at = mem.alloc(data.len() as u64, MemType::ExecutableAndModules);
        // SAFETY: freshly allocated block of at least data.len() bytes.
        unsafe { phys::bytes_mut(at, data.len() as u64) }.copy_from_slice(data);
        module_phys[i] = (at, data.len() as u64);
    }

    // CPUs from the MADT (BSP alone when ACPI says nothing usable).
    let rsdp = acpi::find_rsdp(info.rsdp_paddr);
    let madt = rsdp.and_then(acpi::read_madt);
    let mp_wanted = req.get(Kind::Mp).is_some();
    let lapic = smp::Lapic::init(mp_wanted && req.field(Kind::Mp, 0).unwrap_or(0) & 1 != 0);
    let bsp_id = lapic.id();

    // Responses (the memory map is filled last, its space reserved now).
    // One slot per MADT CPU plus one, in case the MADT omits the BSP.
    let cpu_cap = madt.as_ref().map_or(1, |m| m.cpu_count + 1) as u64;
    let mut arena = Arena::new(
        &mut mem,
        64 * 1024 + cpu_cap * (64 + 8 + 48) + phys::MAX_MAP as u64 * 32,
    );
    let gdt = arena.put(protocol::LIMINE_GDT);
    let gdtr = arena.alloc(10, 16);
    // SAFETY: 10 fresh arena bytes: limit (u16) then base (u64, HHDM).
    unsafe {
        (gdtr as *mut u16).write((protocol::LIMINE_GDT.len() * 8 - 1) as u16);
        ((gdtr + 2) as *mut u64).write_unaligned(hhdm(gdt));
    }
    let memmap_entries = arena.alloc(phys::MAX_MAP as u64 * 24, 16);
    let memmap_ptrs = arena.alloc(phys::MAX_MAP as u64 * 8, 16);
    let memmap_resp = arena.alloc(24, 16);

    // Page tables: HHDM + identity of all RAM (at least 4 GiB), the kernel.
    let mut pt = PageTables::new(&mut mem, nx);
    let mapped = phys::align_up(mem.top_of_ram().max(1 << 32), 1 << 30);
    for p in (0..mapped).step_by(SIZE_2M as usize) {
        pt.map(&mut mem, HHDM_OFFSET + p, p, SIZE_2M, WRITABLE | NO_EXECUTE);
        if p != 0 {
            pt.map(&mut mem, p, p, SIZE_2M, WRITABLE);
        }
    }
    for p in (PAGE..SIZE_2M).step_by(PAGE as usize) {
        pt.map(&mut mem, p, p, PAGE, WRITABLE);
    }
    for off in (0..span).step_by(PAGE as usize) {
        let (page_lo, page_hi) = (vbase + off, vbase + off + PAGE);
        let mut covered = false;
        let mut flags = NO_EXECUTE;
        for seg in kernel
            .load_segments()
            .filter(|s| s.memsz > 0 && s.vaddr < page_hi && page_lo < s.vaddr_end())
        {
            covered = true;
            if seg.flags & elf::PF_W != 0 {
                flags |= WRITABLE;
            }
            if seg.flags & elf::PF_X != 0 {
                flags &= !NO_EXECUTE;
            }
        }
        if covered {
            pt.map(&mut mem, page_lo, kphys + off, PAGE, flags);
        }
    }

    // Simple responses.
    let s = |arena: &mut Arena, text: &str| hhdm(arena.put_str(text));
    let r = Words {
        revision: 0,
        fields: [s(&mut arena, LOADER_NAME), s(&mut arena, LOADER_VERSION)],
    };
    req.respond(Kind::BootloaderInfo, arena.put(r));
    req.respond(
        Kind::FirmwareType,
        arena.put(Words {
            revision: 0,
            fields: [0u64],
        }),
    ); // x86 BIOS
    req.respond(
        Kind::StackSize,
        arena.put(Words {
            revision: 0,
            fields: [0u64; 0],
        }),
    );
    req.respond(
        Kind::Hhdm,
        arena.put(Words {
            revision: 0,
            fields: [HHDM_OFFSET],
        }),
    );
    req.respond(
        Kind::PagingMode,
        arena.put(Words {
            revision: 0,
            fields: [0u64],
        }),
    ); // 4-level
    req.respond(
        Kind::ExecutableAddress,
        arena.put(Words {
            revision: 0,
            fields: [kphys, vbase],
        }),
    );
    let cmdline = s(&mut arena, entry.cmdline);
    req.respond(
        Kind::ExecutableCmdline,
        arena.put(Words {
            revision: 0,
            fields: [cmdline],
        }),
    );
    let mut path_buf = [0u8; 256];
    let slash_path = |buf: &mut [u8; 256], p: &str| -> usize {
        let n = (p.len() + 1).min(buf.len());
        buf[0] = b'/';
        buf[1..n].copy_from_slice(&p.as_bytes()[..n - 1]);
        n
    };
    let n = slash_path(&mut path_buf, kernel_path);
    let kpath = s(
        &mut arena,
        core::str::from_utf8(&path_buf[..n]).unwrap_or(kernel_path),
    );
    let kfile = arena.put(File::new(
        hhdm(kernel_file.as_ptr() as u64),
        kernel_file.len() as u64,
        kpath,
        cmdline,
    ));
    req.respond(
        Kind::ExecutableFile,
        arena.put(Words {
            revision: 0,
            fields: [hhdm(kfile)],
        }),
    );
    if req.get(Kind::EntryPoint).is_some() {
        req.respond(
            Kind::EntryPoint,
            arena.put(Words {
                revision: 0,
                fields: [0u64; 0],
            }),
        );
    }
    if let Some(rsdp) = rsdp {
        req.respond(
            Kind::Rsdp,
            arena.put(Words {
                revision: 0,
                fields: [hhdm(rsdp)],
            }),
        );
    }
    let modules = entry.modules();
    let mod_ptrs = arena.alloc(modules.len().max(1) as u64 * 8, 16);
    for (i, m) in modules.iter().enumerate() {
        let path = limine_conf::boot_uri_path(m.path).unwrap_or("");
        let n = slash_path(&mut path_buf, path);
        let mpath = s(
            &mut arena,
            core::str::from_utf8(&path_buf[..n]).unwrap_or(path),
        );
        let mstring = s(&mut arena, m.cmdline);
        let (at, len) = module_phys[i];
        let f = arena.put(File::new(hhdm(at), len, mpath, mstring));
        // SAFETY: slot i of the pointer array allocated above.
        unsafe { ((mod_ptrs + i as u64 * 8) as *mut u64).write(hhdm(f)) };
    }
    req.respond(
        Kind::Modules,
        arena.put(Words {
            revision: 0,
            fields: [modules.len() as u64, hhdm(mod_ptrs)],
        }),
    );

    // Mask the legacy PIC and every I/O APIC input: the kernel starts with
    // no interrupt source armed.
    // SAFETY: PIC data ports; masking all lines.
    unsafe {
        cpu::outb(0x21, 0xff);
        cpu::outb(0xa1, 0xff);
    }
    if let Some(m) = &madt {
        for &base in &m.ioapics[..m.ioapic_count] {
            mask_ioapic(base);
        }
    }

    // MP: start every AP named by the MADT and park it.
    let mut cpu_count = 1u64;
    if mp_wanted {
        let cpus_ptrs = arena.alloc(cpu_cap * 8, 16);
        let add_cpu = |arena: &mut Arena, n: u64, lapic_id: u32| -> u64 {
            let info = arena.put(MpInfo {
                processor_id: n as u32,
                lapic_id,
                reserved: 0,
                goto_address: 0,
                extra_argument: 0,
            });
            // SAFETY: slot n < cpu_cap of the pointer array allocated above.
            unsafe { ((cpus_ptrs + n * 8) as *mut u64).write(hhdm(info)) };
            info
        };
        add_cpu(&mut arena, 0, bsp_id);
        let aps = madt
            .as_ref()
            .map_or(&[][..], |m| &m.lapic_ids[..m.cpu_count]);
        if aps.iter().any(|&id| id != bsp_id) && !trampoline_ok {
            fail!(
                "cannot start APs: page {:#x} is not usable RAM for the trampoline",
                smp::TRAMPOLINE
            );
        }
        for &id in aps.iter().filter(|&&id| id != bsp_id) {
            if cpu_count == cpu_cap {
                break;
            }
            let stack = mem.alloc(stack_size, MemType::BootloaderReclaimable);
            let info_phys = add_cpu(&mut arena, cpu_count, id);
            let boot = arena.put(smp::ApBoot {
                info_phys,
                stack_top: stack + stack_size,
                gdtr_phys: gdtr,
                x2apic: lapic.x2apic as u32,
                started: core::sync::atomic::AtomicU32::new(0),
            });
            if smp::start_ap(&lapic, id, boot, pt.pml4, nx) {
                cpu_count += 1;
            } else {
                say!("warning: CPU with local APIC id {id} did not start; left out");
            }
        }
        let flags = if lapic.x2apic { 1 } else { 0 };
        let r = MpResponse {
            revision: 0,
            flags,
            bsp_lapic_id: bsp_id,
            cpu_count,
            cpus: hhdm(cpus_ptrs),
        };
        req.respond(Kind::Mp, arena.put(r));
    }

    // Memory map: no allocation may follow this.
    if req.get(Kind::MemoryMap).is_some() {
        let mut map = [phys::FwRegion {
            base: 0,
            len: 0,
            kind: MemType::Reserved,
        }; phys::MAX_MAP];
        let n = mem.build_map(&mut map);
        for (i, r) in map[..n].iter().enumerate() {
            let e = memmap_entries + i as u64 * 24;
            // SAFETY: slot i < MAX_MAP of the arrays reserved in the arena.
            unsafe {
                (e as *mut MemmapEntry).write(MemmapEntry {
                    base: r.base,
                    length: r.len,
                    kind: r.kind as u64,
                });
                ((memmap_ptrs + i as u64 * 8) as *mut u64).write(hhdm(e));
            }
        }
        // SAFETY: the 24-byte response slot reserved in the arena.
        unsafe {
            (memmap_resp as *mut Words<2>).write(Words {
                revision: 0,
                fields: [n as u64, hhdm(memmap_ptrs)],
            })
        };
        req.respond(Kind::MemoryMap, memmap_resp);
    }

    let entry_point = match req.field(Kind::EntryPoint, 0) {
        Some(e) if e != 0 => e,
        _ => kernel.entry,
    };
    say!(
        "booting {kernel_path} (base revision {revision}{}, {cpu_count} cpu{}, {} module{})",
        if options.report_loaded_revision {
            ""
        } else {
            " supported, loaded revision not reported"
        },
        if cpu_count == 1 { "" } else { "s" },
        modules.len(),
        if modules.len() == 1 { "" } else { "s" }
    );
    // SAFETY: the page tables map the kernel, the HHDM and the loader
    // (identity); the stack is reclaimable loader memory; the GDTR image
    // describes the Limine GDT.
    unsafe { enter_kernel(entry_point, bsp_stack + stack_size, pt.pml4, gdtr) }
}

/// Mask every redirection entry of the I/O APIC at physical `base`.
fn mask_ioapic(base: u64) {
    if base == 0 || base + 0x20 > phys::IDENTITY_LIMIT {
        return;
    }
    let sel = base as *mut u32;
    let win = (base + 0x10) as *mut u32;
    // SAFETY: the MADT names this I/O APIC; its two registers are
    // identity-mapped MMIO, accessed volatile.
    unsafe {
        sel.write_volatile(1);
        let max = (win.read_volatile() >> 16) & 0xff;
        for i in 0..=max {
            sel.write_volatile(0x10 + 2 * i);
            let low = win.read_volatile();
            win.write_volatile(low | (1 << 16));
        }
    }
}
