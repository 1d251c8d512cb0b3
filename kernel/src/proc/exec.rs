//! Program loading: static ELF executables (`ET_EXEC`) and static-pie
//! (`ET_DYN` without `PT_INTERP`), the initial stack, and `execve`.
//!
//! Owns: the checks that make a file acceptable, the placement of a
//! static-pie (load bias `PIE_BASE`; the program relocates itself), the
//! mapping of segments (copy-on-write from the file's page cache, as
//! Linux does: nothing is read at exec, the pages holding the bss start are
//! zeroed past the file bytes; files whose segments share pages or are not
//! page-congruent are copied instead), the
//! stack layout of the x86_64 SysV ABI (argc, argv, envp, auxv, then the
//! strings and AT_RANDOM bytes at the top; `rsp` 16-byte aligned at argc),
//! and the point of no return of `execve`.
//!
//! Invariants: everything that can fail (reading, parsing, mapping,
//! building the stack) happens in a fresh address space before the caller's
//! image is touched, so a failed `execve` returns an error to an intact
//! process; any malformed or unsupported file gives `ENOEXEC`, never a
//! panic.  Must not: write the new image through the caller's page tables
//! (the new address space is written through the HHDM).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use bootfmt::elf::{self, ProgramHeader, ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, PT_INTERP, PT_LOAD};

use super::files::Program;

use super::task::Task;
use crate::arch::idt::InterruptFrame;
use crate::memory::kbuf;
use crate::memory::uaccess::UserAddr;
use crate::memory::vm::{self, AddressSpace, PROT_EXEC, PROT_READ, PROT_WRITE};
use abi::{Errno, SysResult};

/// Where a static-pie is loaded (Linux's ELF_ET_DYN_BASE on x86_64).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// Top of the initial stack (the last page below it is user space too, the
/// page at `USER_TOP` is not).
pub const STACK_TOP: u64 = vm::USER_TOP;
/// Size of the initial stack mapping (it does not grow beyond).
pub const STACK_SIZE: u64 = 8 << 20;
/// Largest span of loadable segments accepted.
const MAX_IMAGE_SPAN: u64 = 1 << 32;
/// Most bytes of argument and environment strings (Linux: a quarter of the
/// stack limit).
const MAX_ARG_BYTES: usize = 2 << 20;
/// Longest single argument or environment string, NUL included (Linux's
/// MAX_ARG_STRLEN, 32 pages).
const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Most argv or envp entries.
const MAX_ARGS: usize = 1 << 16;
/// Longest path.
const PATH_MAX: usize = 4096;

const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
const AT_UID: u64 = 11;
const AT_EUID: u64 = 12;
const AT_GID: u64 = 13;
const AT_EGID: u64 = 14;
const AT_PLATFORM: u64 = 15;
const AT_HWCAP: u64 = 16;
const AT_CLKTCK: u64 = 17;
const AT_SECURE: u64 = 23;
const AT_RANDOM: u64 = 25;
const AT_HWCAP2: u64 = 26;
const AT_EXECFN: u64 = 31;

/// What the loader learned about a loaded image.
#[derive(Debug, Clone, Copy)]
pub struct Image {
    /// Entry point (bias applied).
    pub entry: u64,
    /// Address of the program headers in memory.
    pub phdr: u64,
    pub phnum: u64,
    /// First page after the highest segment (start of the heap).
    pub brk: u64,
}

fn page_up(x: u64) -> Option<u64> {
    x.checked_add(vm::PAGE_SIZE - 1)
        .map(|v| v & !(vm::PAGE_SIZE - 1))
}

/// The parts of an ELF file the loader uses, read from its first bytes.
struct Headers {
    e_type: u16,
    entry: u64,
    phoff: u64,
    phdrs: Vec<ProgramHeader>,
}

/// Bytes read at once when copying segments.
const CHUNK: usize = 64 * 1024;
/// Most program headers accepted.
const MAX_PHNUM: u64 = 512;

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Reads and checks the ELF header and program header table with the same
/// rules as `bootfmt::elf::parse` (which needs the whole file in one
/// slice): magic, class, byte order, version, machine, table inside the
/// file, each segment inside the file, `filesz <= memsz`, no wrapping and
/// no overlapping PT_LOAD.  The whole file is parsed by `bootfmt` when it is
/// small enough to read at once.
fn read_headers(prog: &Program) -> Result<Headers, Errno> {
    let len = prog.len();
    let mut ehdr = [0u8; 64];
    if len < 64 {
        return Err(Errno::ENOEXEC);
    }
    prog.read_at(0, &mut ehdr)?;
    if len <= CHUNK as u64 {
        // Small file: the shared parser checks it whole.
        let mut whole = vec![0u8; len as usize];
        prog.read_at(0, &mut whole)?;
        let file = elf::parse(&whole).map_err(|e| {
            log::debug!("exec: {}", e);
            Errno::ENOEXEC
        })?;
        return Ok(Headers {
            e_type: file.e_type,
            entry: file.entry,
            phoff: u64_at(&ehdr, 32),
            phdrs: file.program_headers().collect(),
        });
    }
    if &ehdr[..4] != b"\x7fELF"
        || ehdr[4] != 2
        || ehdr[5] != 1
        || ehdr[6] != 1
        || u32_at(&ehdr, 20) != 1
    {
        return Err(Errno::ENOEXEC);
    }
    if u16_at(&ehdr, 18) != elf::EM_X86_64 {
        return Err(Errno::ENOEXEC);
    }
    let phoff = u64_at(&ehdr, 32);
    let phnum = u64::from(u16_at(&ehdr, 56));
    if phnum == 0 || phnum > MAX_PHNUM || usize::from(u16_at(&ehdr, 54)) != ProgramHeader::SIZE {
        return Err(Errno::ENOEXEC);
    }
    let entry_size = ProgramHeader::SIZE as u64;
    let table_end = phoff
        .checked_add(phnum * entry_size)
        .ok_or(Errno::ENOEXEC)?;
    if table_end > len {
        return Err(Errno::ENOEXEC);
    }
    let mut table = vec![0u8; (phnum * entry_size) as usize];
    prog.read_at(phoff, &mut table)?;
    let phdrs: Vec<ProgramHeader> = table
        .chunks_exact(ProgramHeader::SIZE)
        .map(ProgramHeader::from_bytes)
        .collect();
    for ph in &phdrs {
        let inside = ph
            .offset
            .checked_add(ph.filesz)
            .is_some_and(|end| end <= len);
        let wraps = ph.p_type == PT_LOAD && ph.vaddr.checked_add(ph.memsz).is_none();
        if !inside || ph.filesz > ph.memsz || wraps {
            return Err(Errno::ENOEXEC);
        }
    }
    let loads: Vec<&ProgramHeader> = phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.memsz > 0)
        .collect();
    for (i, a) in loads.iter().enumerate() {
        if loads[i + 1..]
            .iter()
            .any(|b| a.vaddr < b.vaddr_end() && b.vaddr < a.vaddr_end())
        {
            return Err(Errno::ENOEXEC);
        }
    }
    Ok(Headers {
        e_type: u16_at(&ehdr, 16),
        entry: u64_at(&ehdr, 24),
        phoff,
        phdrs,
    })
}

/// Checks the program and maps its loadable segments into `aspace`.
pub fn load_elf(aspace: &Arc<AddressSpace>, prog: &Program) -> Result<Image, Errno> {
    let h = read_headers(prog)?;
    if h.e_type != ET_EXEC && h.e_type != ET_DYN {
        return Err(Errno::ENOEXEC);
    }
    if h.phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        log::debug!("exec: dynamically linked programs (PT_INTERP) are not supported");
        return Err(Errno::ENOEXEC);
    }
    let loads = || {
        h.phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD && p.memsz > 0)
    };
    let lo = loads().map(|p| p.vaddr).min().ok_or(Errno::ENOEXEC)?;
    let hi = loads().map(|p| p.vaddr_end()).max().ok_or(Errno::ENOEXEC)?;
    if hi - lo > MAX_IMAGE_SPAN {
        return Err(Errno::ENOEXEC);
    }
    let bias = if h.e_type == ET_DYN {
        PIE_BASE - (lo & !(vm::PAGE_SIZE - 1))
    } else {
        0
    };
    let (lo_b, hi_b) = (
        lo.checked_add(bias).ok_or(Errno::ENOEXEC)?,
        hi.checked_add(bias).ok_or(Errno::ENOEXEC)?,
    );
    if lo_b < vm::MMAP_MIN || hi_b > vm::MMAP_TOP {
        log::debug!(
            "exec: segments at {:#x}..{:#x} are outside user space",
            lo_b,
            hi_b
        );
        return Err(Errno::ENOEXEC);
    }
    let entry = h.entry.checked_add(bias).ok_or(Errno::ENOEXEC)?;
    if !loads().any(|p| p.flags & PF_X != 0 && h.entry >= p.vaddr && h.entry < p.vaddr_end()) {
        log::debug!(
            "exec: entry point {:#x} is not in an executable segment",
            h.entry
        );
        return Err(Errno::ENOEXEC);
    }

    let segments: Vec<&ProgramHeader> = loads().collect();
    if let (true, Some(source)) = (can_map_lazily(&segments), prog.pages()) {
        for ph in &segments {
            map_segment(aspace, &source, ph, bias).map_err(load_errno)?;
        }
        // Enter the new address space in the file's reverse map, so that
        // truncating the program unmaps its pages here too.
        source.mapped_into(aspace);
    } else {
        let mut buf = vec![0u8; CHUNK];
        for ph in &segments {
            copy_segment(aspace, prog, ph, bias, &mut buf)?;
        }
    }

    // Where the program headers are in memory: PT_PHDR, else inside the
    // segment that maps the file offset of the table.
    let phdr = h
        .phdrs
        .iter()
        .find(|p| p.p_type == PT_PHDR)
        .map(|p| p.vaddr)
        .or_else(|| {
            loads()
                .find(|p| h.phoff >= p.offset && h.phoff < p.offset + p.filesz)
                .map(|p| p.vaddr + (h.phoff - p.offset))
        })
        .map_or(0, |v| v + bias);
    let brk = page_up(hi_b).ok_or(Errno::ENOEXEC)?;
    Ok(Image {
        entry,
        phdr,
        phnum: h.phdrs.len() as u64,
        brk,
    })
}

/// `PROT_*` bits of a segment.
fn segment_prot(ph: &ProgramHeader) -> u32 {
    let mut prot = 0;
    if ph.flags & PF_R != 0 {
        prot |= PROT_READ;
    }
    if ph.flags & PF_W != 0 {
        prot |= PROT_WRITE;
    }
    if ph.flags & PF_X != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// A mapping failure as exec reports it: ENOMEM stays, the rest means the
/// file asked for something impossible.
fn load_errno(e: Errno) -> Errno {
    if e == Errno::ENOMEM {
        Errno::ENOMEM
    } else {
        Errno::ENOEXEC
    }
}

/// Whether every segment can be a private mapping of the file's pages, as
/// Linux maps them: file offset and address congruent modulo the page size,
/// and no page shared by two segments (which would need both contents).
fn can_map_lazily(segments: &[&ProgramHeader]) -> bool {
    let pages = |p: &ProgramHeader| {
        (
            p.vaddr & !(vm::PAGE_SIZE - 1),
            page_up(p.vaddr_end()).unwrap_or(u64::MAX),
        )
    };
    segments.iter().enumerate().all(|(i, a)| {
        let (a_lo, a_hi) = pages(a);
        a.vaddr % vm::PAGE_SIZE == a.offset % vm::PAGE_SIZE
            && segments[i + 1..].iter().all(|b| {
                let (b_lo, b_hi) = pages(b);
                a_hi <= b_lo || b_hi <= a_lo
            })
    })
}

/// Maps one segment copy-on-write from the file's page cache (nothing is
/// read now; pages come in on first touch): the pages holding file bytes
/// from `source`, the rest of the last such page zeroed (that page becomes
/// a private copy), and a larger bss as anonymous memory.
fn map_segment(
    aspace: &AddressSpace,
    source: &Arc<dyn vm::PageSource>,
    ph: &ProgramHeader,
    bias: u64,
) -> Result<(), Errno> {
    let prot = segment_prot(ph);
    let flags = vm::MAP_FIXED | vm::MAP_PRIVATE;
    let vaddr = ph.vaddr.checked_add(bias).ok_or(Errno::ENOEXEC)?;
    let start = vaddr & !(vm::PAGE_SIZE - 1);
    let file_end = vaddr + ph.filesz;
    let seg_end = vaddr + ph.memsz;
    let mut anon_from = start;
    if ph.filesz > 0 {
        let data_end = page_up(file_end).ok_or(Errno::ENOEXEC)?;
        let offset = ph.offset & !(vm::PAGE_SIZE - 1);
        aspace.map_source(start, data_end - start, prot, flags, source.clone(), offset)?;
        if ph.memsz > ph.filesz && file_end < data_end {
            // The bss starts inside the last file page: zero that page's
            // tail, as Linux does (`padzero`).
            aspace.zero_bytes(file_end, data_end - file_end)?;
        }
        anon_from = data_end;
    }
    let anon_end = page_up(seg_end).ok_or(Errno::ENOEXEC)?;
    if anon_end > anon_from {
        aspace.map_anonymous(
            anon_from,
            anon_end - anon_from,
            prot,
            flags | vm::MAP_ANONYMOUS,
        )?;
    }
    Ok(())
}

/// Maps one segment as anonymous memory and copies its file bytes in (for
/// files whose segments cannot be mapped from the page cache).
fn copy_segment(
    aspace: &AddressSpace,
    prog: &Program,
    ph: &ProgramHeader,
    bias: u64,
    buf: &mut [u8],
) -> Result<(), Errno> {
    let prot = segment_prot(ph);
    // The pages holding file bytes are mapped (zeroed) and filled now; a
    // larger bss is an anonymous mapping, populated on demand.
    let vaddr = ph.vaddr + bias;
    let data_end = page_up(vaddr + ph.filesz).ok_or(Errno::ENOEXEC)?;
    let seg_end = vaddr + ph.memsz;
    aspace
        .map_fixed_with_data(vaddr, seg_end.min(data_end) - vaddr, &[], prot)
        .and_then(|()| {
            if seg_end > data_end {
                let len = page_up(seg_end).ok_or(Errno::ENOEXEC)? - data_end;
                let flags = vm::MAP_FIXED | vm::MAP_PRIVATE | vm::MAP_ANONYMOUS;
                aspace.map_anonymous(data_end, len, prot, flags).map(|_| ())
            } else {
                Ok(())
            }
        })
        .map_err(load_errno)?;
    let mut done = 0u64;
    while done < ph.filesz {
        let n = (ph.filesz - done).min(buf.len() as u64) as usize;
        prog.read_at(ph.offset + done, &mut buf[..n])?;
        aspace.write_bytes(vaddr + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// CPUID leaf 1 EDX (what Linux reports as AT_HWCAP on x86).
fn hwcap() -> u64 {
    let r = core::arch::x86_64::__cpuid(1);
    u64::from(r.edx)
}

/// Writes the initial stack (module doc) and returns the stack pointer.
pub fn build_stack(
    aspace: &AddressSpace,
    image: &Image,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<u64, Errno> {
    aspace.map_anonymous(
        STACK_TOP - STACK_SIZE,
        STACK_SIZE,
        PROT_READ | PROT_WRITE,
        vm::MAP_FIXED | vm::MAP_PRIVATE | vm::MAP_ANONYMOUS | vm::MAP_GROWSDOWN,
    )?;

    // Strings block: argv strings, envp strings, execfn, "x86_64", random.
    // Sized by the caller's strings (bounded by MAX_ARG_BYTES and MAX_ARGS
    // when they came from a user), so every buffer is reserved fallibly up
    // front (ENOMEM, not a panic) and the pushes below never reallocate.
    let len_of = |v: &[Vec<u8>]| v.iter().map(|s| s.len() + 1).sum::<usize>();
    let strings_len = len_of(argv) + len_of(envp) + execfn.len() + 1 + 7 + 15 + 16;
    if strings_len > MAX_ARG_BYTES + PATH_MAX + 64 {
        return Err(Errno::E2BIG);
    }
    let mut strings: Vec<u8> = kbuf::with_capacity(strings_len, strings_len)?;
    let args_bytes = (argv.len() + envp.len()) * 8;
    let mut argv_off: Vec<usize> = kbuf::with_capacity(argv.len(), args_bytes)?;
    for a in argv {
        argv_off.push(strings.len());
        strings.extend_from_slice(a);
        strings.push(0);
    }
    let mut envp_off: Vec<usize> = kbuf::with_capacity(envp.len(), args_bytes)?;
    for e in envp {
        envp_off.push(strings.len());
        strings.extend_from_slice(e);
        strings.push(0);
    }
    let execfn_off = strings.len();
    strings.extend_from_slice(execfn);
    strings.push(0);
    let platform_off = strings.len();
    strings.extend_from_slice(b"x86_64\0");
    while strings.len() % 16 != 0 {
        strings.push(0);
    }
    let random_off = strings.len();
    let mut random = [0u8; 16];
    crate::random::fill_random(&mut random);
    strings.extend_from_slice(&random);
    if strings.len() > MAX_ARG_BYTES {
        return Err(Errno::E2BIG);
    }
    let strings_at = (STACK_TOP - strings.len() as u64) & !15;
    let at = |off: usize| strings_at + off as u64;

    let creds = (0u64, 0u64, 0u64, 0u64);
    let auxv: [(u64, u64); 19] = [
        (AT_PHDR, image.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, image.phnum),
        (AT_PAGESZ, vm::PAGE_SIZE),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, image.entry),
        (AT_UID, creds.0),
        (AT_EUID, creds.1),
        (AT_GID, creds.2),
        (AT_EGID, creds.3),
        (AT_PLATFORM, at(platform_off)),
        (AT_HWCAP, hwcap()),
        (AT_CLKTCK, crate::arch::TICK_HZ),
        (AT_SECURE, 0),
        (AT_RANDOM, at(random_off)),
        (AT_HWCAP2, 0),
        (AT_EXECFN, at(execfn_off)),
        (AT_NULL, 0),
    ];
    let nwords = 3 + argv.len() + envp.len() + 2 * auxv.len();
    let mut words: Vec<u64> = kbuf::with_capacity(nwords, nwords * 8)?;
    words.push(argv.len() as u64);
    words.extend(argv_off.iter().map(|&o| at(o)));
    words.push(0);
    words.extend(envp_off.iter().map(|&o| at(o)));
    words.push(0);
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    let sp = (strings_at - 8 * words.len() as u64) & !15;
    if STACK_TOP - sp > STACK_SIZE / 2 {
        return Err(Errno::E2BIG);
    }
    let block_len = (STACK_TOP - sp) as usize;
    let mut block: Vec<u8> = kbuf::with_capacity(block_len, block_len)?;
    block.resize(block_len, 0);
    for (i, w) in words.iter().enumerate() {
        block[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let s = (strings_at - sp) as usize;
    block[s..s + strings.len()].copy_from_slice(&strings);
    aspace.write_bytes(sp, &block)?;
    Ok(sp)
}

/// A loaded program, ready to run: its address space, entry and stack.
pub struct Loaded {
    pub aspace: Arc<AddressSpace>,
    pub entry: u64,
    pub sp: u64,
}

/// `p_type` of the program header table itself.
const PT_PHDR: u32 = 6;

/// Builds a new address space holding `prog` with its initial stack.
pub fn load_program(
    prog: &Program,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    execfn: &[u8],
) -> Result<Loaded, Errno> {
    let aspace = AddressSpace::new_user()?;
    let image = load_elf(&aspace, prog)?;
    aspace.set_brk_base(image.brk);
    let sp = build_stack(&aspace, &image, argv, envp, execfn)?;

    Ok(Loaded {
        aspace,
        entry: image.entry,
        sp,
    })
}

/// Reads a NULL-terminated array of user string pointers.
fn read_string_array(mut ptr: UserAddr, total: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if ptr.is_null() {
        return Ok(out);
    }
    loop {
        let p = UserAddr(ptr.read()?);
        if p.is_null() {
            return Ok(out);
        }
        if out.len() >= MAX_ARGS {
            return Err(Errno::E2BIG);
        }
        // Linux: a string longer than MAX_ARG_STRLEN, or one past the total,
        // is E2BIG; only what is left of the total is ever read.
        let room = MAX_ARG_STRLEN.min(MAX_ARG_BYTES.saturating_sub(*total));
        let s = match p.read_cstr_bytes(room.saturating_sub(1)) {
            Err(Errno::ENAMETOOLONG) => return Err(Errno::E2BIG),
            r => r?,
        };
        *total += s.len() + 1;
        if *total > MAX_ARG_BYTES {
            return Err(Errno::E2BIG);
        }
        out.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        out.push(s);
        ptr = UserAddr(ptr.raw().checked_add(8).ok_or(Errno::EFAULT)?);
    }
}

/// `execve(path, argv, envp)`.  On success the frame is the new program's
/// first user frame.
pub fn sys_execve(
    frame: &mut InterruptFrame,
    path: UserAddr,
    argv: UserAddr,
    envp: UserAddr,
) -> SysResult {
    let task = super::current_task().ok_or(Errno::ENOSYS)?;
    let path = path.read_cstr(PATH_MAX)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let mut total = 0;
    let argv = read_string_array(argv, &mut total)?;
    let envp = read_string_array(envp, &mut total)?;
    let prog = super::files::open_program(&task.process.files, &path)?;
    let loaded = load_program(&prog, &argv, &envp, path.as_bytes())?;
    drop(prog);
    let name = argv
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_else(|| path.clone());
    let (entry, sp) = (loaded.entry, loaded.sp);
    commit(task, loaded, name);
    *frame = crate::arch::usermode::initial_frame(entry, sp);
    Ok(0)
}

/// The point of no return: the calling task switches to the new image.
fn commit(task: &Task, loaded: Loaded, name: String) {
    let process = &task.process;
    // Other threads go away (they exit at their next return to user mode).
    for t in process.task_list() {
        if t.tid != task.tid {
            t.must_exit.store(true, Ordering::Release);
            t.kick();
        }
    }
    task.replace_aspace(loaded.aspace.clone());
    process.set_aspace(Some(loaded.aspace));
    process.files.close_on_exec();
    process.signals.reset_on_exec();
    *task.signals.altstack.lock() = super::signal::AltStack {
        sp: 0,
        flags: super::signal::SS_DISABLE,
        pad: 0,
        size: 0,
    };
    task.fs_base.store(0, Ordering::Release);
    x86_64::registers::model_specific::FsBase::write(x86_64::VirtAddr::zero());
    task.fpu_load(&crate::arch::usermode::FpuState::initial());
    *process.name.lock() = name;
    process.vfork_done.store(true, Ordering::Release);
    process.vfork_wait.wake_all();
}
