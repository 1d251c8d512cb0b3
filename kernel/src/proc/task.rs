//! The user thread (`Task`): what a scheduler thread needs to run in ring 3.
//!
//! Owns: a thread's tid, its address-space handle, FPU/SSE image, FS base,
//! `clear_child_tid`/robust list words, signal mask and pending set, and
//! the hooks the scheduler calls around a switch (`sched::UserContext`).
//!
//! Invariants:
//! * `aspace` and `fpu` are written only by the task itself or by the
//!   scheduler on the CPU switching it, always with interrupts off, so no
//!   two CPUs ever touch them at once (a task runs on one CPU at a time).
//! * While a task runs, its CPU's per-CPU area points at it
//!   (`arch::cpu::current_task`); `AddressSpace::activate` keeps an `Arc`
//!   of the address space in CR3 per CPU, so page tables are never freed
//!   under a CPU.
//!
//! Must not: block or allocate in `switch_in`/`switch_out` (interrupts are
//! off, the scheduler is mid-switch).

use alloc::sync::{Arc, Weak};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use x86_64::registers::model_specific::FsBase;
use x86_64::VirtAddr;

use super::process::{Pid, Process};
use super::signal::TaskSignals;
use crate::arch;
use crate::arch::usermode::FpuState;
use crate::memory::vm::AddressSpace;
use crate::sched::{self, Thread};

/// A user thread.
pub struct Task {
    pub tid: Pid,
    pub process: Arc<Process>,
    aspace: UnsafeCell<Arc<AddressSpace>>,
    /// Live `AspaceRef`s of this task (written only by the task itself:
    /// loads and stores, no shared read-modify-write).  `replace_aspace`
    /// requires zero.
    aspace_borrows: AtomicU32,
    fpu: UnsafeCell<FpuState>,
    /// FS base (TLS pointer, `arch_prctl(ARCH_SET_FS)` / `CLONE_SETTLS`).
    pub fs_base: AtomicU64,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID`: zeroed and futex-woken
    /// when the thread exits.
    pub clear_child_tid: AtomicU64,
    /// `set_robust_list` head (recorded; the list is not walked).
    pub robust_list: AtomicU64,
    pub signals: TaskSignals,
    /// Set when the thread must end at its next return to user mode
    /// (exit_group, fatal signal, execve of another thread).
    pub must_exit: AtomicBool,
    /// The scheduler thread running this task (set right after spawning).
    thread: spin::Once<Weak<Thread>>,
    /// The thread's name (Linux `comm`: `prctl(PR_SET_NAME)`, the
    /// executable's base name after execve), NUL-padded, at most 15 bytes.
    pub comm: spin::Mutex<[u8; 16]>,
    /// Timer ticks that found this thread in user mode / in the kernel
    /// (`sched::cputime`; written only by the CPU running it).
    pub utime: AtomicU64,
    pub stime: AtomicU64,
    /// The thread's IPC record (`crate::ipc`), made on its first IPC.
    ipc: spin::Once<Arc<crate::ipc::Waiter>>,
    /// The files this thread's system calls borrowed from the process's
    /// table (`files::FdTable::borrow`); emptied at exit.
    pub fd_cache: Arc<crate::files::FdCache>,
}

/// `comm` for a program path or name: its base name, cut to 15 bytes.
pub fn comm_of(path: &str) -> [u8; 16] {
    let base = path.rsplit('/').next().unwrap_or(path).as_bytes();
    let mut comm = [0u8; 16];
    let n = base.len().min(15);
    comm[..n].copy_from_slice(&base[..n]);
    comm
}

// SAFETY: `aspace` and `fpu` follow the access rule of the module
// invariant (one CPU at a time, interrupts off); all else is Sync.
unsafe impl Sync for Task {}
// SAFETY: as above.
unsafe impl Send for Task {}

impl Task {
    /// A new task of `process` on `aspace`, with the given FPU image.
    pub fn new(tid: Pid, process: Arc<Process>, aspace: Arc<AddressSpace>, fpu: FpuState) -> Task {
        let comm = comm_of(&process.name.lock());
        Task {
            tid,
            process,
            aspace: UnsafeCell::new(aspace),
            aspace_borrows: AtomicU32::new(0),
            fpu: UnsafeCell::new(fpu),
            fs_base: AtomicU64::new(0),
            clear_child_tid: AtomicU64::new(0),
            robust_list: AtomicU64::new(0),
            signals: TaskSignals::new(),
            must_exit: AtomicBool::new(false),
            thread: spin::Once::new(),
            comm: spin::Mutex::new(comm),
            utime: AtomicU64::new(0),
            stime: AtomicU64::new(0),
            ipc: spin::Once::new(),
            fd_cache: crate::files::FdCache::new(),
        }
    }

    /// The thread's IPC record (`None` before its scheduler thread exists).
    /// Borrowed: the task keeps it, so the IPC fastpath pays no
    /// reference count for it.
    pub fn ipc_waiter(&self) -> Option<&Arc<crate::ipc::Waiter>> {
        if let Some(w) = self.ipc.get() {
            return Some(w);
        }
        let thread = self.thread()?;
        Some(self.ipc.call_once(|| crate::ipc::Waiter::new(&thread)))
    }

    /// Records the scheduler thread (once, right after `sched::spawn_user`).
    pub fn set_thread(&self, thread: &Arc<Thread>) {
        self.thread.call_once(|| Arc::downgrade(thread));
    }

    /// The scheduler thread, while it exists.
    pub fn thread(&self) -> Option<Arc<Thread>> {
        self.thread.get().and_then(Weak::upgrade)
    }

    /// Makes the thread re-check its state if it is blocked (signals).
    pub fn kick(&self) {
        if let Some(t) = self.thread() {
            sched::wake_thread(&t);
        }
    }

    /// The task's address space.
    pub fn aspace(&self) -> Arc<AddressSpace> {
        let saved = arch::irq::save_disable();
        // SAFETY: module invariant: writers run with interrupts off on the
        // CPU running the task; a reader on another CPU only races with
        // `replace_aspace`, which only the task itself calls while running
        // (so a remote reader sees either Arc, both valid: the swap below
        // happens under interrupts-off on that CPU, and remote readers are
        // not used by this kernel).
        let a = unsafe { (*self.aspace.get()).clone() };
        arch::irq::restore(saved);
        a
    }

    /// The identity (pointer value) of the task's address space, without
    /// a reference count (futex keys).  Called by the task itself.
    pub fn aspace_id(&self) -> usize {
        let saved = arch::irq::save_disable();
        // SAFETY: as in `aspace`: only the task itself replaces the `Arc`.
        let id = unsafe { Arc::as_ptr(&*self.aspace.get()) } as usize;
        arch::irq::restore(saved);
        id
    }

    /// Switches the calling task to a new address space (execve).  Must be
    /// called by the task itself, with no `AspaceRef` of it alive.
    pub fn replace_aspace(&self, new: Arc<AddressSpace>) {
        assert_eq!(
            self.aspace_borrows.load(Ordering::Relaxed),
            0,
            "replace_aspace under a borrow of the old address space"
        );
        let saved = arch::irq::save_disable();
        new.activate();
        // SAFETY: the task runs here with interrupts off (invariant).
        let old = unsafe { core::mem::replace(&mut *self.aspace.get(), new) };
        arch::irq::restore(saved);
        drop(old);
    }

    /// Copies the live FPU/SSE registers of the calling task (it must be
    /// the running task): for fork and signal frames.
    pub fn fpu_snapshot(&self) -> FpuState {
        let saved = arch::irq::save_disable();
        let mut image = FpuState::initial();
        image.save();
        arch::irq::restore(saved);
        image
    }

    /// Loads `image` into the live FPU/SSE registers of the calling task.
    pub fn fpu_load(&self, image: &FpuState) {
        let saved = arch::irq::save_disable();
        image.restore();
        arch::irq::restore(saved);
    }

    /// Whether the task must do something before returning to user mode.
    pub fn needs_attention(&self) -> bool {
        super::signal::has_deliverable(self)
    }
}

impl sched::UserContext for Task {
    fn switch_out(&self) {
        // SAFETY: interrupts are off and this CPU runs (ran) the task:
        // nobody else touches its FPU image now (module invariant).
        unsafe { (*self.fpu.get()).save() };
    }

    fn switch_in(&self, cpu: usize, kernel_stack_top: u64) {
        // SAFETY: as in `switch_out`; the task is not running anywhere.
        let (fpu, aspace) = unsafe { (&*self.fpu.get(), &*self.aspace.get()) };
        fpu.restore();
        FsBase::write(VirtAddr::new_truncate(self.fs_base.load(Ordering::Relaxed)));
        // Cheap when already loaded; keeps the CPU's own reference.
        aspace.activate();
        arch::gdt::set_kernel_stack(cpu, kernel_stack_top);
        arch::cpu::set_kernel_rsp(kernel_stack_top);
        arch::cpu::set_current_task(self as *const Task as usize);
    }
}

/// The task running on this CPU (`None` in kernel threads).  One `gs:`
/// load, no lock.
///
/// The reference is valid while the calling thread runs (its scheduler
/// thread holds an `Arc` of the task); it must not be handed to another
/// thread or kept after the task exits.
pub fn current_task() -> Option<&'static Task> {
    let ptr = arch::cpu::current_task() as *const Task;
    // SAFETY: the scheduler sets this slot in `switch_in` to the task it
    // switches in, which its thread keeps alive while running; kernel
    // threads have 0.  The calling thread is that task's thread.
    unsafe { ptr.as_ref() }
}

/// The calling task's address space, borrowed for (part of) a system call
/// without writing its reference count: the threads of a process share
/// one `AddressSpace`, so an `Arc` clone per `mmap`/`munmap`/`brk` would
/// be one cache line that every core running them writes.
///
/// Sound because only the task itself replaces its `aspace` (execve,
/// `replace_aspace`), which checks that no borrow is alive, and the task
/// keeps the `Arc` (so the address space) until then.  Not `Send`: it
/// lives on the calling thread's stack.
pub struct AspaceRef {
    task: &'static Task,
    _not_send: PhantomData<*const ()>,
}

impl core::ops::Deref for AspaceRef {
    type Target = Arc<AddressSpace>;

    fn deref(&self) -> &Arc<AddressSpace> {
        // SAFETY: the `Arc` is replaced only by `replace_aspace`, which
        // the task runs itself and which refuses while `aspace_borrows`
        // counts this borrow; the scheduler only reads it (`switch_in`).
        unsafe { &*self.task.aspace.get() }
    }
}

impl Drop for AspaceRef {
    fn drop(&mut self) {
        let n = self.task.aspace_borrows.load(Ordering::Relaxed);
        self.task.aspace_borrows.store(n - 1, Ordering::Relaxed);
    }
}

/// Borrows the calling task's address space (`None` in kernel threads).
pub fn current_aspace_ref() -> Option<AspaceRef> {
    let task = current_task()?;
    // Only this task writes its count (and it runs here), so a load and a
    // store suffice: no atomic read-modify-write.
    let n = task.aspace_borrows.load(Ordering::Relaxed);
    task.aspace_borrows.store(n + 1, Ordering::Relaxed);
    Some(AspaceRef {
        task,
        _not_send: PhantomData,
    })
}
