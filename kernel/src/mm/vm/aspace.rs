//! `AddressSpace`: one user address space — its page tables, its VMAs, its
//! program break — and the operations on it (mmap and friends, page
//! faults, copy-on-write fork, activation on a CPU).
//!
//! Invariants:
//! * Every VMA and page-table change happens under `inner` (a `VmLock`);
//!   the root table never changes.
//! * A leaf entry holds a frame iff it is present or `PTE_PROTNONE`; a frame
//!   with `PTE_ANON` is counted in `refcount`, others belong to the VMA's
//!   `PageSource`.  A private VMA's page is writable in hardware only when
//!   it is anonymous with count 1 (else the first write copies it).
//! * Frames leave an address space (unmap, COW break, zap) only after the
//!   TLB shootdown of their old translation has completed.
//! * `cpus` has bit `n` set while CPU `n` has this root loaded, or may
//!   still cache translations from it (set before CR3 is written, cleared
//!   after another root replaced it).  Each CPU keeps a strong reference to
//!   the address space it has loaded (`ACTIVE`), so a root table is never
//!   freed while some CR3 points to it.
//!
//! Must not: call a `PageSource` while holding `inner` (it may block), or
//! touch the kernel half of the tables.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::lock::VmLock;
use super::paging::{
    self, frame_of, holds_frame, PAGE, PTE_ANON, PTE_NX, PTE_P, PTE_PROTNONE, PTE_U, PTE_W,
};
use super::refcount;
use super::tlb::{self, TlbBatch};
use super::vma::{Backing, PageSource, SharedAnon, Vma, VmaMap, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::*;
use crate::arch;
use crate::arch::cpu::MAX_CPUS;
use crate::mm::PhysAddr;
use crate::syscall::errno::Errno;

/// Linux's EOVERFLOW (not in the shared errno list).
const EOVERFLOW: Errno = Errno(75);
/// Linux's EOPNOTSUPP (== ENOTSUP on x86_64).
const EOPNOTSUPP: Errno = Errno::ENOTSUP;

/// The kernel's own root table (the loader's), template of the kernel half.
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the address space whose root is loaded (`Arc::into_raw`), or 0.
static ACTIVE: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Per CPU: SMEP/SMAP/NXE were switched on.
static FEATURES_ON: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Address spaces alive (for leak checks in tests).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Why a page fault could not be resolved (the signal and si_code the
/// faulting thread gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No mapping at the address (SIGSEGV, SEGV_MAPERR).
    MapErr,
    /// A mapping that forbids the access (SIGSEGV, SEGV_ACCERR).
    AccErr,
    /// Out of memory while resolving it.
    NoMemory,
    /// The mapping's `PageSource` has no page there, e.g. a file mapping
    /// past the end of the file (SIGBUS, BUS_ADRERR, as on Linux).
    BusErr,
}

impl Fault {
    /// The Linux `si_code` for the signal (`SEGV_*`, or `BUS_ADRERR`).
    pub fn si_code(self) -> i32 {
        match self {
            Fault::MapErr | Fault::NoMemory => 1,
            Fault::AccErr => 2,
            Fault::BusErr => 2,
        }
    }
}

/// Records the boot CPU's root table as the kernel template.  `mm::init`.
pub fn init_kernel_root() {
    let (frame, _) = x86_64::registers::control::Cr3::read_raw();
    KERNEL_ROOT.store(frame.start_address().as_u64(), Ordering::Release);
}

/// Identity (pointer value) of the address space loaded on `cpu`, 0 if none.
pub fn active_id(cpu: usize) -> usize {
    ACTIVE[cpu].load(Ordering::Acquire)
}

/// The address space loaded on this CPU (a user thread's own, in a syscall).
pub fn current() -> Option<Arc<AddressSpace>> {
    let saved = arch::irq::save_disable();
    let raw = ACTIVE[arch::cpu::id()].load(Ordering::Acquire) as *const AddressSpace;
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

/// Number of address spaces alive.
pub fn live_count() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Switches this CPU back to the kernel's root table and drops its
/// reference to the user address space it had loaded (an exiting process
/// calls this so its memory is freed now, not at the next switch).
pub fn deactivate() {
    let saved = arch::irq::save_disable();
    let me = arch::cpu::id();
    let old = ACTIVE[me].swap(0, Ordering::AcqRel);
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
    if FEATURES_ON[me].load(Ordering::Relaxed) {
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
    FEATURES_ON[me].store(true, Ordering::Relaxed);
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
    FEATURES_ON[cpu].load(Ordering::Relaxed)
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

/// Protection/flags → leaf entry for `frame`.  `writable` is the hardware
/// write permission (false for copy-on-write pages).
fn make_leaf(frame: PhysAddr, anon: bool, prot: u32, writable: bool) -> u64 {
    let anon_bit = if anon { PTE_ANON } else { 0 };
    if prot & (PROT_READ | PROT_WRITE | PROT_EXEC) == 0 {
        return frame.as_u64() | PTE_PROTNONE | anon_bit;
    }
    let mut e = frame.as_u64() | PTE_P | PTE_U | anon_bit;
    if writable && prot & PROT_WRITE != 0 {
        e |= PTE_W;
    }
    if prot & PROT_EXEC == 0 {
        e |= PTE_NX;
    }
    e
}

/// Hardware write permission a page of `vma` may have now.
fn may_write(vma: &Vma, pte: u64) -> bool {
    if vma.prot & PROT_WRITE == 0 {
        return false;
    }
    if vma.shared {
        return true;
    }
    pte & PTE_ANON != 0 && refcount::get(frame_of(pte)) == 1
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Rounds `len` up to pages; `None` when it overflows the user half.
fn page_len(len: u64) -> Option<u64> {
    let l = len.checked_add(PAGE - 1)? & !(PAGE - 1);
    (l <= USER_TOP).then_some(l)
}

/// Pages mapped around a read fault in a private file mapping (Linux's
/// default `fault_around_bytes`: 64 KiB).
const FAULT_AROUND_PAGES: u64 = 16;

/// Result of one locked step of fault handling.
enum Step {
    /// The page is mapped; its frame.
    Done(PhysAddr),
    /// A `PageSource` must provide page `index` first (without the lock).
    NeedSource(Arc<dyn PageSource>, u64),
}

struct Inner {
    vmas: VmaMap,
    brk_base: u64,
    brk: u64,
}

/// One line of `/proc/<pid>/maps`.
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    /// Offset in the file (bytes) for file mappings.
    pub offset: u64,
    /// (device, inode) of the mapped file.
    pub file: Option<(u64, u64)>,
    /// Inside the `brk` area.
    pub heap: bool,
    /// The initial stack.
    pub stack: bool,
}

/// One user address space.
pub struct AddressSpace {
    root: PhysAddr,
    inner: VmLock<Inner>,
    cpus: AtomicU64,
}

impl AddressSpace {
    /// An empty address space (the kernel half shared with every other).
    pub fn new_user() -> Result<Arc<AddressSpace>, Errno> {
        let kernel_root = KERNEL_ROOT.load(Ordering::Acquire);
        if kernel_root == 0 || !refcount::ready() {
            log::error!("vm: address space requested before mm::init set up the VM");
            return Err(Errno::ENOMEM);
        }
        let root = paging::new_root(PhysAddr::new(kernel_root))?;
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(AddressSpace {
            root,
            inner: VmLock::new(Inner {
                vmas: VmaMap::new(),
                brk_base: 0,
                brk: 0,
            }),
            cpus: AtomicU64::new(0),
        }))
    }

    /// CPUs that may cache translations of this address space.
    pub fn cpu_mask(&self) -> u64 {
        self.cpus.load(Ordering::SeqCst)
    }

    /// Loads this address space on the calling CPU (CR3) and marks the CPU
    /// in its mask.  The CPU keeps a reference until another address space
    /// (or `deactivate`) replaces it.  Cheap when already loaded.
    pub fn activate(self: &Arc<Self>) {
        init_cpu();
        let saved = arch::irq::save_disable();
        let me = arch::cpu::id();
        let id = Arc::as_ptr(self) as usize;
        let old = ACTIVE[me].load(Ordering::Acquire);
        if old == id {
            arch::irq::restore(saved);
            return;
        }
        // Mask first, then CR3: see `tlb` (a shootdown that misses us ran
        // before we read the tables).
        self.cpus.fetch_or(1u64 << me, Ordering::SeqCst);
        ACTIVE[me].store(Arc::into_raw(self.clone()) as usize, Ordering::Release);
        load_root(self.root);
        arch::irq::restore(saved);
        release_active(old, me);
    }

    /// Number of VMAs (tests, /proc-like reports).
    pub fn vma_count(&self) -> usize {
        self.inner.lock().vmas.len()
    }

    /// The mappings in address order, as `/proc/<pid>/maps` lists them.
    pub fn map_report(&self) -> alloc::vec::Vec<MapLine> {
        let g = self.inner.lock();
        g.vmas
            .iter()
            .map(|v| {
                let (offset, file) = match &v.backing {
                    super::vma::Backing::Anon => (0, None),
                    super::vma::Backing::Source { source, pgoff } => {
                        (pgoff * 4096, source.file_id())
                    }
                };
                MapLine {
                    start: v.start,
                    end: v.end,
                    prot: v.prot,
                    shared: v.shared,
                    offset,
                    file,
                    heap: file.is_none()
                        && g.brk_base != 0
                        && v.start >= g.brk_base
                        && v.start < g.brk.next_multiple_of(4096),
                    stack: v.end == super::USER_TOP,
                }
            })
            .collect()
    }

    /// Leaf entries holding a frame in `[start, end)` (tests).
    pub fn resident_pages(&self, start: u64, end: u64) -> usize {
        let _g = self.inner.lock();
        let mut n = 0;
        paging::for_each_leaf(self.root, start, end, |_, e| {
            if holds_frame(e.load(Ordering::Relaxed)) {
                n += 1;
            }
        });
        n
    }

    // ----- mmap ---------------------------------------------------------

    /// `mmap` of anonymous memory (private, or shared with fork children):
    /// `hint`, `len`, `prot` and `flags` as Linux takes them.
    pub fn map_anonymous(&self, hint: u64, len: u64, prot: u32, flags: u32) -> Result<u64, Errno> {
        self.mmap(hint, len, prot, flags | MAP_ANONYMOUS, None)
    }

    /// `mmap` of `source` pages from page `pgoff` (file mappings).
    pub fn map_source(
        &self,
        hint: u64,
        len: u64,
        prot: u32,
        flags: u32,
        source: Arc<dyn PageSource>,
        offset: u64,
    ) -> Result<u64, Errno> {
        self.mmap(
            hint,
            len,
            prot,
            flags & !MAP_ANONYMOUS,
            Some((source, offset)),
        )
    }

    /// The common part of `mmap` (Linux semantics and errno values).
    pub fn mmap(
        &self,
        hint: u64,
        len: u64,
        prot: u32,
        flags: u32,
        source: Option<(Arc<dyn PageSource>, u64)>,
    ) -> Result<u64, Errno> {
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        let shared = match flags & MAP_TYPE {
            MAP_SHARED => true,
            MAP_PRIVATE => false,
            MAP_SHARED_VALIDATE => {
                if flags & !MAP_KNOWN != 0 {
                    return Err(EOPNOTSUPP);
                }
                true
            }
            _ => return Err(Errno::EINVAL),
        };
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_HUGETLB != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_len(len).ok_or(Errno::ENOMEM)?;
        let backing = match source {
            _ if flags & MAP_ANONYMOUS != 0 => {
                if shared {
                    Backing::Source {
                        source: SharedAnon::new(),
                        pgoff: 0,
                    }
                } else {
                    Backing::Anon
                }
            }
            Some((source, offset)) => {
                if offset % PAGE != 0 {
                    return Err(Errno::EINVAL);
                }
                offset.checked_add(len).ok_or(EOVERFLOW)?;
                Backing::Source {
                    source,
                    pgoff: offset / PAGE,
                }
            }
            None => return Err(Errno::EBADF),
        };
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        if fixed && hint % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        let mut g = self.inner.lock();
        let start = if fixed {
            let end = hint.checked_add(len).ok_or(Errno::ENOMEM)?;
            if end > USER_TOP {
                return Err(Errno::ENOMEM);
            }
            if hint < MMAP_MIN {
                return Err(Errno::EPERM);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 && !g.vmas.is_free(hint, end) {
                return Err(Errno::EEXIST);
            }
            hint
        } else {
            let (low, high) = if flags & MAP_32BIT != 0 {
                (MMAP_MIN.max(0x4000_0000), 0x8000_0000)
            } else {
                (MMAP_MIN, MMAP_TOP)
            };
            let wanted = hint.checked_add(PAGE - 1).map(page_down).unwrap_or(0);
            if wanted >= MMAP_MIN
                && wanted.checked_add(len).is_some_and(|e| e <= USER_TOP)
                && g.vmas.is_free(wanted, wanted + len)
            {
                wanted
            } else {
                g.vmas
                    .find_free_top_down(len, low, high)
                    .ok_or(Errno::ENOMEM)?
            }
        };
        let end = start + len;
        // Linux's default overcommit heuristic (`vm.overcommit_memory=0`):
        // a mapping that commits memory (shared anonymous, or private
        // writable; not MAP_NORESERVE) larger than all RAM is refused with
        // ENOMEM.  Without it a 1 TiB shared MAP_POPULATE mapping (found by
        // the fuzzer) took every free frame and the kernel then panicked
        // on its next allocation.  Checked here, after the address checks,
        // as Linux does it in `mmap_region`.
        let commits = flags & MAP_NORESERVE == 0
            && if shared {
                flags & MAP_ANONYMOUS != 0
            } else {
                prot & PROT_WRITE != 0
            };
        if commits && len / PAGE > crate::mm::total_frames() as u64 {
            return Err(Errno::ENOMEM);
        }
        // MAP_FIXED replaces whatever was there.
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let removed = g.vmas.remove_range(start, end);
        if !removed.is_empty() {
            self.zap(start, end, &mut batch, &mut frames);
        }
        g.vmas.insert(Vma {
            start,
            end,
            prot,
            shared,
            backing,
        });
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        drop(removed);
        if flags & MAP_POPULATE != 0 && prot != 0 {
            // Best effort, like Linux: a failure leaves pages to demand faults.
            // It also stops while a reserve of free frames (1/16 of RAM) is
            // left: populating must not starve the kernel's own allocations
            // (they panic when memory is out).  Checked every 64 pages.
            let write = prot & PROT_WRITE != 0;
            let reserve = crate::mm::total_frames() / 16;
            let mut va = start;
            while va < end {
                if (va - start) / PAGE % 64 == 0 && crate::mm::free_frames() < reserve {
                    break;
                }
                if self.resolve(va, write, false, false).is_err() {
                    break;
                }
                va += PAGE;
            }
        }
        Ok(start)
    }

    /// Maps an ELF segment: `[vaddr, vaddr + memsz)` private anonymous with
    /// `prot`, the first `data.len()` bytes from `data`, the rest zero.
    /// Pages shared with an earlier segment keep their contents and get the
    /// union of both protections.  Works on an address space that is not
    /// loaded (writes go through the HHDM).
    pub fn map_fixed_with_data(
        &self,
        vaddr: u64,
        memsz: u64,
        data: &[u8],
        prot: u32,
    ) -> Result<(), Errno> {
        if data.len() as u64 > memsz || prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        if memsz == 0 {
            return Ok(());
        }
        let end = vaddr
            .checked_add(memsz)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::ENOMEM)?;
        let (start, end) = (page_down(vaddr), page_len(end).ok_or(Errno::ENOMEM)?);
        if start < MMAP_MIN {
            return Err(Errno::EPERM);
        }
        {
            let mut g = self.inner.lock();
            // Fill the holes with the new mapping; widen what is there.
            let mut at = start;
            let existing: Vec<(u64, u64, u32)> = g
                .vmas
                .overlapping(start, end)
                .map(|v| (v.start, v.end, v.prot))
                .collect();
            for (s, e, p) in existing {
                if s > at {
                    g.vmas.insert(Vma {
                        start: at,
                        end: s,
                        prot,
                        shared: false,
                        backing: Backing::Anon,
                    });
                }
                if p | prot != p {
                    let (lo, hi) = (s.max(start), e.min(end));
                    drop(g);
                    self.protect(lo, hi - lo, p | prot)?;
                    g = self.inner.lock();
                }
                at = e;
            }
            if at < end {
                g.vmas.insert(Vma {
                    start: at,
                    end,
                    prot,
                    shared: false,
                    backing: Backing::Anon,
                });
            }
        }
        self.write_bytes(vaddr, data)?;
        // Zero the tail (bss) in pages that existed before.
        let zero_from = vaddr + data.len() as u64;
        self.zero_bytes(zero_from, vaddr + memsz - zero_from)
    }

    /// Writes `data` at user address `va` through the HHDM, ignoring the
    /// mapping's protection (the pages must be mapped; they are populated
    /// and made private as needed).  For exec (segments, initial stack).
    pub fn write_bytes(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        self.each_page(va, data.len() as u64, true, |frame, off, range| {
            paging::write_frame(frame, off, &data[range]);
        })
    }

    /// Zeroes `len` bytes at user address `va` (like `write_bytes`).
    pub fn zero_bytes(&self, va: u64, len: u64) -> Result<(), Errno> {
        self.each_page(va, len, true, |frame, off, range| {
            paging::zero_frame(frame, off, range.len())
        })
    }

    /// Reads user memory at `va` through the HHDM (populating it).
    pub fn read_bytes(&self, va: u64, out: &mut [u8]) -> Result<(), Errno> {
        let len = out.len() as u64;
        self.each_page(va, len, false, |frame, off, range| {
            paging::read_frame(frame, off, &mut out[range])
        })
    }

    /// Calls `f(frame, offset_in_page, range_of_the_buffer)` for each page of
    /// `[va, va + len)`, after making it resident (and private when `write`).
    fn each_page(
        &self,
        va: u64,
        len: u64,
        write: bool,
        mut f: impl FnMut(PhysAddr, usize, core::ops::Range<usize>),
    ) -> Result<(), Errno> {
        let end = va
            .checked_add(len)
            .filter(|&e| e <= USER_END)
            .ok_or(Errno::EFAULT)?;
        let mut at = va;
        while at < end {
            let page = page_down(at);
            let chunk_end = end.min(page + PAGE);
            let frame = self
                .resolve(page, write, false, true)
                .map_err(|_| Errno::EFAULT)?;
            f(
                frame,
                (at - page) as usize,
                (at - va) as usize..(chunk_end - va) as usize,
            );
            at = chunk_end;
        }
        Ok(())
    }

    // ----- munmap, mprotect, mremap, madvise, brk ------------------------

    /// `munmap`: unmapping nothing is fine; EINVAL for a bad range.
    pub fn unmap(&self, addr: u64, len: u64) -> Result<(), Errno> {
        if addr % PAGE != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_len(len).ok_or(Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let mut g = self.inner.lock();
        let removed = g.vmas.remove_range(addr, end);
        for v in &removed {
            self.zap(v.start, v.end, &mut batch, &mut frames);
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        drop(removed);
        Ok(())
    }

    /// `mprotect`: ENOMEM when part of the range is not mapped.
    pub fn protect(&self, addr: u64, len: u64, prot: u32) -> Result<(), Errno> {
        if addr % PAGE != 0 || prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_len(len).ok_or(Errno::ENOMEM)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::ENOMEM)?;
        let mut batch = TlbBatch::new();
        let mut g = self.inner.lock();
        if !g.vmas.fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        g.vmas.split_at(addr);
        g.vmas.split_at(end);
        let starts: Vec<u64> = g.vmas.overlapping(addr, end).map(|v| v.start).collect();
        for s in &starts {
            let vma = g.vmas.get_mut(*s).expect("listed above");
            vma.prot = prot;
            let vma = vma.clone();
            paging::for_each_leaf(self.root, vma.start, vma.end, |va, e| {
                let cur = e.load(Ordering::Relaxed);
                if holds_frame(cur) {
                    let anon = cur & PTE_ANON != 0;
                    e.store(
                        make_leaf(frame_of(cur), anon, prot, may_write(&vma, cur)),
                        Ordering::Release,
                    );
                    batch.add_page(va);
                }
            });
        }
        for s in starts.iter().rev() {
            if g.vmas.get_mut(*s).is_some() {
                g.vmas.merge_around(*s);
            }
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        Ok(())
    }

    /// `mremap` (flags: MREMAP_MAYMOVE, MREMAP_FIXED).
    pub fn remap(
        &self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u32,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 || old % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_DONTUNMAP != 0 {
            // Not supported here; Linux also refuses it for most mappings.
            return Err(Errno::EINVAL);
        }
        let old_len = page_len(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_len(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 || old_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_end = old
            .checked_add(old_len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let fixed_target = if flags & MREMAP_FIXED != 0 {
            if new_addr % PAGE != 0 {
                return Err(Errno::EINVAL);
            }
            let e = new_addr
                .checked_add(new_len)
                .filter(|&e| e <= USER_TOP)
                .ok_or(Errno::EINVAL)?;
            if new_addr < old_end && old < e {
                return Err(Errno::EINVAL);
            }
            Some(new_addr)
        } else {
            None
        };
        let vma = {
            let g = self.inner.lock();
            let vma = g.vmas.find(old).cloned().ok_or(Errno::EFAULT)?;
            if old_end > vma.end {
                return Err(Errno::EFAULT);
            }
            vma
        };
        if let Some(target) = fixed_target {
            self.unmap(target, new_len)?;
            return self.move_pages(&vma, old, old_len, new_len, target);
        }
        if new_len <= old_len {
            if new_len < old_len {
                self.unmap(old + new_len, old_len - new_len)?;
            }
            return Ok(old);
        }
        let new_end = old.checked_add(new_len).filter(|&e| e <= USER_TOP);
        {
            let mut g = self.inner.lock();
            if let Some(new_end) = new_end {
                if old_end == vma.end && g.vmas.is_free(old_end, new_end) {
                    let start = g.vmas.find(old).map(|v| v.start).ok_or(Errno::EFAULT)?;
                    g.vmas.get_mut(start).expect("found").end = new_end;
                    g.vmas.merge_around(start);
                    return Ok(old);
                }
            }
            if flags & MREMAP_MAYMOVE == 0 {
                return Err(Errno::ENOMEM);
            }
        }
        let target = {
            let g = self.inner.lock();
            g.vmas
                .find_free_top_down(new_len, MMAP_MIN, MMAP_TOP)
                .ok_or(Errno::ENOMEM)?
        };
        self.move_pages(&vma, old, old_len, new_len, target)
    }

    /// Moves `[old, old + old_len)` (inside `vma`) to `target`, growing it
    /// to `new_len`; page-table entries move, frames stay.
    fn move_pages(
        &self,
        vma: &Vma,
        old: u64,
        old_len: u64,
        new_len: u64,
        target: u64,
    ) -> Result<u64, Errno> {
        let mut g = self.inner.lock();
        // The range may have changed since the caller looked.
        match g.vmas.find(old) {
            Some(v) if v.start == vma.start && v.end >= old + old_len => {}
            _ => return Err(Errno::EFAULT),
        }
        if !g.vmas.is_free(target, target + new_len) {
            return Err(Errno::ENOMEM);
        }
        let keep = old_len.min(new_len);
        // Tables for the destination first, so nothing moves on ENOMEM.
        let mut missing = Ok(());
        paging::for_each_leaf(self.root, old, old + keep, |va, e| {
            if missing.is_ok() && holds_frame(e.load(Ordering::Relaxed)) {
                missing = paging::leaf_alloc(self.root, target + (va - old)).map(|_| ());
            }
        });
        missing?;
        let mut pieces = g.vmas.remove_range(old, old + old_len);
        let mut moved = pieces.remove(0);
        let mut batch = TlbBatch::new();
        paging::for_each_leaf(self.root, old, old + keep, |va, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) {
                let dst = paging::leaf(self.root, target + (va - old)).expect("allocated above");
                dst.store(cur, Ordering::Release);
                batch.add_page(va);
            }
        });
        // Pages beyond `keep` (shrinking move) are dropped.
        let mut frames = Vec::new();
        if old_len > keep {
            self.zap(old + keep, old + old_len, &mut batch, &mut frames);
        }
        if let Backing::Source { pgoff, .. } = &mut moved.backing {
            *pgoff += (old - moved.start) / PAGE;
        }
        moved.start = target;
        moved.end = target + new_len;
        g.vmas.insert(moved);
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        Ok(target)
    }

    /// `msync`: the page cache is the file's only copy (tmpfs), so there is
    /// nothing to write back or invalidate; validates as Linux does.
    /// Errors: `EINVAL` for unknown flags, MS_SYNC with MS_ASYNC or an
    /// unaligned `addr`; `ENOMEM` if part of the range is unmapped (or the
    /// rounded range wraps).  A length that rounds to 0 succeeds.
    pub fn sync(&self, addr: u64, len: u64, flags: u32) -> Result<(), Errno> {
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || addr % PAGE != 0
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        // Linux rounds with wrap-around: a huge length may round to 0.
        let len = len.wrapping_add(PAGE - 1) & !(PAGE - 1);
        let end = addr.wrapping_add(len);
        if end < addr {
            return Err(Errno::ENOMEM);
        }
        if end == addr {
            return Ok(());
        }
        if self.inner.lock().vmas.fully_mapped(addr, end) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// `madvise`: DONTNEED/FREE drop the pages (private anonymous memory
    /// reads back as zeros); the other known advices are accepted hints.
    pub fn advise(&self, addr: u64, len: u64, advice: u32) -> Result<(), Errno> {
        if addr % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        let drop_pages = match advice {
            MADV_DONTNEED | MADV_FREE => true,
            0..=3 | 10..=21 => false,
            _ => return Err(Errno::EINVAL),
        };
        if len == 0 {
            return Ok(());
        }
        let len = page_len(len).ok_or(Errno::EINVAL)?;
        let end = addr
            .checked_add(len)
            .filter(|&e| e <= USER_TOP)
            .ok_or(Errno::EINVAL)?;
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let g = self.inner.lock();
        let mapped = g.vmas.fully_mapped(addr, end);
        if drop_pages {
            let ranges: Vec<(u64, u64)> = g
                .vmas
                .overlapping(addr, end)
                .map(|v| (v.start.max(addr), v.end.min(end)))
                .collect();
            for (s, e) in ranges {
                self.zap(s, e, &mut batch, &mut frames);
            }
        }
        // Flushed before unlocking: once the lock is free, nobody may
        // still use the old translations.
        batch.flush(self);
        drop(g);
        release(frames);
        if mapped {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Sets the start of the program break (exec: end of the data segment).
    pub fn set_brk_base(&self, base: u64) {
        let mut g = self.inner.lock();
        g.brk_base = base;
        g.brk = base;
    }

    /// `brk`: moves the break to `new` when possible; returns the break in
    /// force afterwards (Linux semantics: failure returns the old one).
    pub fn brk(&self, new: u64) -> u64 {
        let mut g = self.inner.lock();
        let cur = g.brk;
        if new == 0 || new < g.brk_base || g.brk_base == 0 || new > MMAP_TOP {
            return cur;
        }
        let (old_top, new_top) = (
            page_len(cur).unwrap_or(USER_TOP),
            page_len(new).unwrap_or(USER_TOP),
        );
        if new_top > old_top {
            if !g.vmas.is_free(old_top, new_top) {
                return cur;
            }
            g.vmas.insert(Vma {
                start: old_top,
                end: new_top,
                prot: PROT_READ | PROT_WRITE,
                shared: false,
                backing: Backing::Anon,
            });
        } else if new_top < old_top {
            let mut batch = TlbBatch::new();
            let mut frames = Vec::new();
            let removed = g.vmas.remove_range(new_top, old_top);
            self.zap(new_top, old_top, &mut batch, &mut frames);
            g.brk = new;
            batch.flush(self);
            drop(g);
            release(frames);
            drop(removed);
            return new;
        }
        g.brk = new;
        new
    }

    // ----- faults --------------------------------------------------------

    /// Resolves a fault at `addr` (`write`: a write access; `exec`: an
    /// instruction fetch; `user`: on behalf of user mode, so protections
    /// apply).  Ok when the access can be retried.
    pub fn handle_fault(
        &self,
        addr: u64,
        write: bool,
        user: bool,
        exec: bool,
    ) -> Result<(), Fault> {
        if addr >= USER_END {
            return Err(Fault::MapErr);
        }
        self.resolve(page_down(addr), write, exec, !user)
            .map(|_| ())
    }

    /// Makes the page at `va` present for the access; returns its frame.
    /// `kernel_write`: the kernel writes through the HHDM whatever the
    /// protection (exec setting up a read-only segment).
    fn resolve(
        &self,
        va: u64,
        write: bool,
        exec: bool,
        kernel_write: bool,
    ) -> Result<PhysAddr, Fault> {
        let mut fetched: Option<(Arc<dyn PageSource>, u64, PhysAddr)> = None;
        let mut from_source = None;
        loop {
            let step = {
                let mut g = self.inner.lock();
                self.resolve_locked(&mut g, va, write, exec, kernel_write, fetched.take())?
            };
            match step {
                Step::Done(frame) => {
                    if let Some(source) = from_source {
                        if !write && !kernel_write {
                            self.fault_around(va, &source);
                        }
                    }
                    return Ok(frame);
                }
                Step::NeedSource(source, index) => {
                    let frame = source.page(index).map_err(|_| Fault::BusErr)?;
                    from_source = Some(source.clone());
                    fetched = Some((source, index, frame));
                }
            }
        }
    }

    /// After a read or execute fault filled page `va` of a private mapping
    /// of `source`: maps the other pages of its `FAULT_AROUND_PAGES`-page
    /// aligned window (inside the VMA) that have no entry yet, read-only
    /// (a write still faults and copies), as Linux's fault-around does, so
    /// a program's start-up takes one fault per window instead of one per
    /// page.  Only for sources that say it is cheap (`PageSource::
    /// fault_around`: page-cache pages that exist anyway).  The source is
    /// called without the lock; entries are filled only where still empty
    /// and the VMA still maps the same source pages.
    fn fault_around(&self, va: u64, source: &Arc<dyn PageSource>) {
        if !source.fault_around() {
            return;
        }
        const WINDOW: u64 = FAULT_AROUND_PAGES * PAGE;
        let lo = va & !(WINDOW - 1);
        // Which pages of the window to fetch: same VMA, no entry yet.
        let mut wanted = [None::<u64>; FAULT_AROUND_PAGES as usize];
        {
            let g = self.inner.lock();
            let Some(vma) = g.vmas.find(va) else {
                return;
            };
            if vma.shared || vma.prot & (PROT_READ | PROT_EXEC) == 0 {
                return;
            }
            match &vma.backing {
                Backing::Source { source: s, .. } if Arc::ptr_eq(s, source) => {}
                _ => return,
            }
            for (i, slot) in wanted.iter_mut().enumerate() {
                let at = lo + i as u64 * PAGE;
                let empty =
                    paging::leaf(self.root, at).is_none_or(|e| e.load(Ordering::Acquire) == 0);
                if at != va && vma.contains(at) && empty {
                    *slot = vma.source_index(at).map(|(_, index)| index);
                }
            }
        }
        let mut frames = [None::<(u64, PhysAddr)>; FAULT_AROUND_PAGES as usize];
        for (slot, index) in frames.iter_mut().zip(wanted) {
            if let Some(index) = index {
                // Past the end of the file: leave it to a real fault.
                *slot = source.page(index).ok().map(|f| (index, f));
            }
        }
        let g = self.inner.lock();
        for (i, got) in frames.iter().enumerate() {
            let Some((index, frame)) = *got else {
                continue;
            };
            let at = lo + i as u64 * PAGE;
            let Some(vma) = g.vmas.find(at) else {
                continue;
            };
            let same = !vma.shared
                && vma
                    .source_index(at)
                    .is_some_and(|(s, ix)| Arc::ptr_eq(&s, source) && ix == index);
            if !same || vma.prot & (PROT_READ | PROT_EXEC) == 0 {
                continue;
            }
            let Ok(entry) = paging::leaf_alloc(self.root, at) else {
                break;
            };
            // Filling an empty entry needs no TLB flush.
            let _ = entry.compare_exchange(
                0,
                make_leaf(frame, false, vma.prot, false),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    fn resolve_locked(
        &self,
        g: &mut Inner,
        va: u64,
        write: bool,
        exec: bool,
        kernel_write: bool,
        fetched: Option<(Arc<dyn PageSource>, u64, PhysAddr)>,
    ) -> Result<Step, Fault> {
        let vma = g.vmas.find(va).ok_or(Fault::MapErr)?;
        if !kernel_write {
            let denied = vma.prot == 0
                || (write && vma.prot & PROT_WRITE == 0)
                || (exec && vma.prot & PROT_EXEC == 0);
            if denied {
                return Err(Fault::AccErr);
            }
        }
        let entry = paging::leaf_alloc(self.root, va).map_err(|_| Fault::NoMemory)?;
        let cur = entry.load(Ordering::Acquire);
        if holds_frame(cur) {
            let frame = frame_of(cur);
            let anon = cur & PTE_ANON != 0;
            let private_copy_needed = write && !vma.shared && !(anon && refcount::get(frame) == 1);
            if !private_copy_needed {
                // Present already (another CPU won the race, a stale TLB
                // entry, or PROT_NONE lifted): refresh the entry.
                let fresh = make_leaf(frame, anon, vma.prot, may_write(vma, cur));
                if fresh != cur & !(1 << 5 | 1 << 6) {
                    entry.store(fresh, Ordering::Release);
                }
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(va));
                return Ok(Step::Done(frame));
            }
            // Copy on write: a private copy for this address space.
            let copy = paging::alloc_copy_frame(frame).map_err(|_| Fault::NoMemory)?;
            refcount::set_one(copy);
            entry.store(make_leaf(copy, true, vma.prot, true), Ordering::Release);
            tlb::flush_range(self, va, PAGE);
            if anon {
                refcount::dec_and_free(frame);
            }
            return Ok(Step::Done(copy));
        }
        let frame = match &vma.backing {
            Backing::Anon => {
                let frame = paging::alloc_zeroed_frame().map_err(|_| Fault::NoMemory)?;
                refcount::set_one(frame);
                entry.store(make_leaf(frame, true, vma.prot, true), Ordering::Release);
                frame
            }
            Backing::Source { .. } => {
                let (source, index) = vma.source_index(va).expect("source backing");
                let frame = match fetched {
                    Some((s, i, f)) if Arc::ptr_eq(&s, &source) && i == index => f,
                    _ => return Ok(Step::NeedSource(source, index)),
                };
                if vma.shared || !write {
                    entry.store(
                        make_leaf(frame, false, vma.prot, vma.shared),
                        Ordering::Release,
                    );
                    frame
                } else {
                    let copy = paging::alloc_copy_frame(frame).map_err(|_| Fault::NoMemory)?;
                    refcount::set_one(copy);
                    entry.store(make_leaf(copy, true, vma.prot, true), Ordering::Release);
                    copy
                }
            }
        };
        Ok(Step::Done(frame))
    }

    // ----- fork ------------------------------------------------------------

    /// A copy of this address space for a fork child: the same VMAs; private
    /// pages shared copy-on-write (write-protected in both), shared pages
    /// shared.
    pub fn fork_cow(&self) -> Result<Arc<AddressSpace>, Errno> {
        let mut child = AddressSpace::new_user()?;
        let mut batch = TlbBatch::new();
        let result = {
            let g = self.inner.lock();
            // The child is ours alone: no lock (and no nested global lock).
            let cg = Arc::get_mut(&mut child)
                .expect("fresh address space")
                .inner
                .get_mut();
            cg.vmas = g.vmas.clone();
            cg.brk_base = g.brk_base;
            cg.brk = g.brk;
            let mut result = Ok(());
            for vma in g.vmas.iter() {
                paging::for_each_leaf(self.root, vma.start, vma.end, |va, e| {
                    if result.is_err() {
                        return;
                    }
                    let cur = e.load(Ordering::Acquire);
                    if !holds_frame(cur) {
                        return;
                    }
                    let slot = match paging::leaf_alloc(child.root, va) {
                        Ok(s) => s,
                        Err(err) => {
                            result = Err(err);
                            return;
                        }
                    };
                    let mut shared_entry = cur;
                    if cur & PTE_ANON != 0 {
                        shared_entry = cur & !PTE_W;
                        if cur & PTE_W != 0 {
                            e.store(shared_entry, Ordering::Release);
                            batch.add_page(va);
                        }
                        refcount::inc(frame_of(cur));
                    }
                    slot.store(shared_entry, Ordering::Release);
                });
                if result.is_err() {
                    break;
                }
            }
            // Write-protect everywhere before the parent may run on: a
            // stale writable entry would leak its writes into the child.
            batch.flush(self);
            result
        };
        result?;
        // The child maps the same files: enter it in their reverse maps so
        // a truncate unmaps there too.
        // Sources are called without the lock held (module rule).
        let sources: Vec<Arc<dyn PageSource>> = child
            .inner
            .lock()
            .vmas
            .iter()
            .filter_map(|vma| match &vma.backing {
                Backing::Source { source, .. } => Some(source.clone()),
                Backing::Anon => None,
            })
            .collect();
        for source in sources {
            source.mapped_into(&child);
        }
        Ok(child)
    }

    // ----- truncate --------------------------------------------------------

    /// Drops the translations of source pages `first_gone` and later of
    /// every VMA whose source has `object_key() == key` (a file shrank):
    /// shared pages and private copy-on-write copies alike, as Linux's
    /// truncate does, so a later touch faults and gets SIGBUS.  The TLB
    /// shootdown completes before this returns; anonymous copies are
    /// released after it.  Must be called with no file-system lock held.
    pub fn unmap_source_pages(&self, key: usize, first_gone: u64) {
        let mut batch = TlbBatch::new();
        let mut frames = Vec::new();
        let g = self.inner.lock();
        for vma in g.vmas.iter() {
            let Backing::Source { source, pgoff } = &vma.backing else {
                continue;
            };
            if key == 0 || source.object_key() != key {
                continue;
            }
            let pages = (vma.end - vma.start) / PAGE;
            if first_gone >= pgoff + pages {
                continue;
            }
            let from = vma.start + first_gone.saturating_sub(*pgoff) * PAGE;
            self.zap(from, vma.end, &mut batch, &mut frames);
        }
        batch.flush(self);
        drop(g);
        release(frames);
    }

    // ----- helpers -----------------------------------------------------------

    /// Clears the leaf entries of `[start, end)`: their pages join `batch`,
    /// their anonymous frames `frames` (released after the flush).
    fn zap(&self, start: u64, end: u64, batch: &mut TlbBatch, frames: &mut Vec<PhysAddr>) {
        paging::for_each_leaf(self.root, start, end, |va, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) {
                if cur & PTE_ANON != 0 {
                    frames.push(frame_of(cur));
                }
                batch.add_page(va);
            }
        });
    }
}

/// Drops one reference of each anonymous frame (after the shootdown).
fn release(frames: Vec<PhysAddr>) {
    for f in frames {
        refcount::dec_and_free(f);
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // No CPU has this root loaded (each would hold a reference), and a
        // CR3 switch flushed their translations: free everything.
        let root = self.root;
        let inner = self.inner.get_mut();
        paging::for_each_leaf(root, 0, USER_END, |_, e| {
            let cur = e.swap(0, Ordering::AcqRel);
            if holds_frame(cur) && cur & PTE_ANON != 0 {
                refcount::dec_and_free(frame_of(cur));
            }
        });
        paging::free_tables(root);
        inner.vmas = VmaMap::new();
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}
