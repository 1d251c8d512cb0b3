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
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::registers::model_specific::FsBase;
use x86_64::VirtAddr;

use super::process::{Pid, Process};
use super::signal::TaskSignals;
use crate::arch;
use crate::arch::usermode::FpuState;
use crate::mm::vm::AddressSpace;
use crate::sched::{self, Thread};

/// A user thread.
pub struct Task {
    pub tid: Pid,
    pub process: Arc<Process>,
    aspace: UnsafeCell<Arc<AddressSpace>>,
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
        }
    }

    /// The thread's IPC record (`None` before its scheduler thread exists).
    pub fn ipc_waiter(&self) -> Option<Arc<crate::ipc::Waiter>> {
        if let Some(w) = self.ipc.get() {
            return Some(w.clone());
        }
        let thread = self.thread()?;
        Some(
            self.ipc
                .call_once(|| crate::ipc::Waiter::new(&thread))
                .clone(),
        )
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

    /// Switches the calling task to a new address space (execve).  Must be
    /// called by the task itself.
    pub fn replace_aspace(&self, new: Arc<AddressSpace>) {
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

/// The calling task's address space (no lock; `None` in kernel threads).
pub fn current_aspace() -> Option<Arc<AddressSpace>> {
    current_task().map(Task::aspace)
}
