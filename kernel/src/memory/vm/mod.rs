//! Virtual memory of user processes: address spaces, VMAs, demand paging,
//! copy-on-write, user copies and TLB shootdowns (docs/USERSPACE.md,
//! "vm -> everyone").
//!
//! Files: `aspace/` (AddressSpace and every operation on it: `cpu.rs`
//! activation, `map.rs` mapping calls, `fault.rs` faults, `fork.rs`),
//! `vma.rs` (VMAs, `PageSource`, shared anonymous memory), `paging.rs`
//! (page-table walks over the HHDM), `refcount.rs` (per-frame counts of
//! COW-shared frames), `source_ref.rs` (how VMAs and faults hold a
//! `PageSource`: an `Arc` per mapping, RefCache loans per fault), `tlb.rs` (batched, targeted shootdowns), `lock.rs`
//! (the range locks of address spaces), `uaccess.rs` (user copies with fault
//! fixups), and this file: the user-half layout, the Linux `MAP_*`,
//! `MREMAP_*`, `MADV_*`, `MS_*` constants and the page-fault entry.
//!
//! Invariants: user addresses are below `USER_END`; a fault in kernel mode
//! on a user address is legal only inside a user copy (`uaccess`), where
//! an unresolvable fault becomes `EFAULT`.  Must not: let a user-supplied
//! value reach a panic; touch the kernel half of any page table.

pub mod aspace;
mod lock;
mod paging;
mod refcount;
pub mod source_ref;
pub mod tlb;
pub mod uaccess;
pub mod vma;

use alloc::sync::Arc;

pub use aspace::{
    current, deactivate, init_cpu, live_count, unpin_frame, AddressSpace, Fault, PinnedFrame,
};
pub use lock::{holding as holds_vm_lock, lock_stats};
pub use vma::{PageSource, PROT_EXEC, PROT_READ, PROT_WRITE};

use crate::arch::idt::InterruptFrame;
use abi::Errno;

/// First address that is not user space (canonical lower half end).
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// Highest end of a user mapping (Linux's TASK_SIZE: the last page of the
/// lower half stays unmapped, as on Linux).
pub const USER_TOP: u64 = USER_END - 0x1000;
/// Lowest address a mapping may use (Linux's default `mmap_min_addr`).
pub const MMAP_MIN: u64 = 0x1_0000;
/// Top of the area searched (top down) for mappings without MAP_FIXED;
/// the space above is left for the initial stack.
pub const MMAP_TOP: u64 = 0x7f00_0000_0000;
/// Page size.
pub const PAGE_SIZE: u64 = 4096;

pub const MAP_SHARED: u32 = 0x01;
pub const MAP_PRIVATE: u32 = 0x02;
pub const MAP_SHARED_VALIDATE: u32 = 0x03;
pub const MAP_TYPE: u32 = 0x0f;
pub const MAP_FIXED: u32 = 0x10;
pub const MAP_ANONYMOUS: u32 = 0x20;
pub const MAP_32BIT: u32 = 0x40;
pub const MAP_GROWSDOWN: u32 = 0x100;
pub const MAP_DENYWRITE: u32 = 0x800;
pub const MAP_EXECUTABLE: u32 = 0x1000;
pub const MAP_LOCKED: u32 = 0x2000;
pub const MAP_NORESERVE: u32 = 0x4000;
pub const MAP_POPULATE: u32 = 0x8000;
pub const MAP_NONBLOCK: u32 = 0x10000;
pub const MAP_STACK: u32 = 0x20000;
pub const MAP_HUGETLB: u32 = 0x40000;
pub const MAP_FIXED_NOREPLACE: u32 = 0x100000;
/// Flags MAP_SHARED_VALIDATE accepts (MAP_SYNC, for DAX files, is not:
/// EOPNOTSUPP as on Linux for ordinary files).
pub const MAP_KNOWN: u32 = MAP_TYPE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_32BIT
    | MAP_GROWSDOWN
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_FIXED_NOREPLACE;

pub const MREMAP_MAYMOVE: u32 = 1;
pub const MREMAP_FIXED: u32 = 2;
pub const MREMAP_DONTUNMAP: u32 = 4;

pub const MS_ASYNC: u32 = 1;
pub const MS_INVALIDATE: u32 = 2;
pub const MS_SYNC: u32 = 4;

pub const MADV_DONTNEED: u32 = 4;
pub const MADV_FREE: u32 = 8;

/// Sets up the VM on the BSP: the kernel root table template, the
/// per-frame reference counts for frames below `max_pfn`, this CPU's
/// protection features.  Called by `mm::init` once frames can be allocated.
pub fn init(max_pfn: u64) -> Result<(), &'static str> {
    aspace::init_kernel_root();
    init_cpu();
    let chunks = refcount::init(max_pfn)?;
    log::info!(
        "vm: reference counts for {} frames in {} frames",
        max_pfn,
        chunks
    );
    Ok(())
}

/// What the exception code does after `page_fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// Resolved, or a SIGBUS queued for the thread: return to user mode
    /// (the signal, if any, is acted on first).
    Handled,
    /// A user copy faulted: resume at this address (it returns EFAULT).
    Fixup(u64),
    /// User mode touched memory it may not: SIGSEGV with this `si_code`.
    UserSegv { addr: u64, code: i32 },
    /// A kernel bug (kernel access to a bad address outside a user copy,
    /// or corrupted tables): report and panic.
    KernelBug,
}

/// The #PF handler proper (`arch::exceptions` calls it first).  Runs on the
/// faulting thread's stack; interrupts are enabled while the fault is
/// resolved when the faulting context had them enabled.
pub fn page_fault(frame: &InterruptFrame, cr2: u64, error_code: u64) -> FaultOutcome {
    const ERR_WRITE: u64 = 1 << 1;
    const ERR_RESERVED: u64 = 1 << 3;
    const ERR_FETCH: u64 = 1 << 4;
    const SEGV_MAPERR: i32 = 1;
    let user_mode = frame.cs & 3 == 3;
    let fixup = uaccess::fixup_for(frame.rip);
    if error_code & ERR_RESERVED != 0 || (!user_mode && fixup.is_none()) {
        return FaultOutcome::KernelBug;
    }
    let fail = |code: i32| match fixup {
        Some(rip) if !user_mode => FaultOutcome::Fixup(rip),
        _ => FaultOutcome::UserSegv { addr: cr2, code },
    };
    if cr2 >= USER_END {
        // User copies never pass a kernel address as the user side
        // (`uaccess::check_range`): in kernel mode this is a bad kernel
        // buffer, a bug to report, not an EFAULT to hide.
        return if user_mode {
            fail(SEGV_MAPERR)
        } else {
            FaultOutcome::KernelBug
        };
    }
    // The no-paging copy (its caller holds file-system locks) gets EFAULT
    // at once; it retries the ordinary way.
    if !user_mode && uaccess::no_paging(frame.rip) {
        return fail(SEGV_MAPERR);
    }
    // A fault from user mode borrows the address space without touching
    // its reference count (a line every faulting CPU of the process would
    // write): the faulting task holds its own `Arc` of the address space
    // it runs (`proc::Task`), which only the task itself replaces (execve,
    // never during a fault), so the one loaded here outlives this call.
    // A kernel-mode fault (a user copy, maybe by a kernel thread that
    // borrowed whatever was loaded) takes a counted reference.
    let counted;
    let aspace: &AddressSpace = if user_mode {
        let Some(ptr) = aspace::current_ptr() else {
            return fail(SEGV_MAPERR);
        };
        // SAFETY: see above: the current task keeps this address space
        // alive until after the fault returns.
        unsafe { &*ptr }
    } else {
        let Some(a) = current() else {
            return fail(SEGV_MAPERR);
        };
        counted = a;
        &counted
    };
    let interrupts = frame.rflags & (1 << 9) != 0;
    // Still with interrupts off: no pin needed for the counter.
    FAULTS.add_on(crate::arch::cpu::id(), 1);
    if interrupts {
        crate::arch::irq::enable();
    }
    let result = aspace.handle_fault(
        cr2,
        error_code & ERR_WRITE != 0,
        true,
        error_code & ERR_FETCH != 0,
    );
    if interrupts {
        crate::arch::irq::disable();
    }
    match result {
        Ok(()) => FaultOutcome::Handled,
        // Past the end of a file mapping in user mode: SIGBUS, queued here
        // and delivered on the way back to ring 3 (`proc::return_to_user`)
        // before the faulting instruction can run again.
        // A page source interrupted by a signal: back to user mode, where
        // the signal is acted on and the access then faults again.
        Err(Fault::Interrupted) if user_mode => FaultOutcome::Handled,
        Err(f @ Fault::BusErr) if user_mode => {
            crate::proc::signal::user_bus_error(cr2, f.si_code());
            FaultOutcome::Handled
        }
        Err(f) => fail(f.si_code()),
    }
}

/// Page faults on user addresses taken (counted on the faulting CPU).
static FAULTS: percpu::PerCpuCounter = percpu::PerCpuCounter::new();

/// `munmap` calls (counted on the calling CPU).
pub(crate) static MUNMAPS: percpu::PerCpuCounter = percpu::PerCpuCounter::new();

/// With the kernel command-line word `vmstat`, prints on PID 1's exit
/// (before `init exit:`) one line of VM counters summed over CPUs:
/// `vmstat: faults=N munmaps=N shootdown_ipis=N requests_served=N
/// local_flushes=N ipis_per_munmap=X shootdown_wait_us=N lock_acquired=N
/// lock_contended=N lock_wait_us=N` (munmaps: calls of munmap; the lock
/// counters are those of the range locks).
pub fn report_if_asked() {
    let asked = crate::boot::cmdline().is_ok_and(|line| crate::cmdline::has_word(line, "vmstat"));
    if !asked {
        return;
    }
    let t = tlb::stats();
    let l = lock_stats();
    let munmaps = MUNMAPS.sum().max(0) as u64;
    let per = (t.ipis_sent * 1000).checked_div(munmaps).unwrap_or(0);
    crate::log::report(format_args!(
        "vmstat: faults={} munmaps={} shootdown_ipis={} requests_served={} local_flushes={} ipis_per_munmap={}.{:03} shootdown_wait_us={} lock_acquired={} lock_contended={} lock_wait_us={}",
        FAULTS.sum().max(0),
        munmaps,
        t.ipis_sent,
        t.requests_served,
        t.local_flushes,
        per / 1000,
        per % 1000,
        t.wait_ns / 1000,
        l.acquired,
        l.contended,
        l.wait_ns / 1000
    ));
}

/// Resolves a file descriptor to the pages `mmap` maps (set by the file
/// system glue; without it, file mappings fail with ENODEV).
pub type FileSourceFn = fn(fd: i32) -> Result<Arc<dyn PageSource>, Errno>;

static FILE_SOURCE: spin::Once<FileSourceFn> = spin::Once::new();

/// Installs the fd -> `PageSource` resolver (once; later calls are ignored).
#[allow(dead_code)] // called by the fs glue (issue 4)
pub fn set_file_source(f: FileSourceFn) {
    FILE_SOURCE.call_once(|| f);
}

/// The pages of file descriptor `fd`, for `mmap`.
pub fn file_source(fd: i32) -> Result<Arc<dyn PageSource>, Errno> {
    match FILE_SOURCE.get() {
        Some(f) => f(fd),
        None if fd < 0 => Err(Errno::EBADF),
        None => Err(Errno::ENODEV),
    }
}
