//! Signals: actions, masks, pending sets, delivery and the x86_64
//! `rt_sigframe` (Linux layout), plus the user-fault -> signal mapping.
//!
//! Owns: per-process actions and shared pending set (`ProcessSignals`),
//! per-thread mask, pending set, alternate stack and last fault
//! (`TaskSignals`), sending (`send_to_task`, `send_to_process`,
//! `force_signal`), and `deliver_pending`, which runs on the way back to
//! ring 3 and either builds a handler frame on the user stack or applies
//! the default action (ignore, or end the process with the signal as its
//! wait status).
//!
//! Invariants: SIGKILL and SIGSTOP are never blocked, caught or ignored;
//! pending sets and masks are atomics (the fast check in
//! `has_deliverable` takes no lock); a thread runs at most one new handler
//! per return to user mode.  Frame layout (from the handler's rsp up):
//! return address (`sa_restorer`), `ucontext` (304 bytes: flags, link,
//! stack_t, sigcontext, sigmask), `siginfo` (128 bytes); the 512-byte
//! FXSAVE image sits above, 64-byte aligned, named by `sigcontext.fpstate`.
//!
//! SA_RESTART: a call interrupted with EINTR is restarted after the
//! handler (rip back over `syscall`, rax = the number again) when it is
//! one Linux restarts (`restartable`); others return EINTR.
//! Not done: queued real-time signals (a pending set holds each signal
//! once).
//!
//! Must not: trust anything read back from user space in `rt_sigreturn`
//! (selectors and flags are forced to ring-3 values on the way out).

pub use abi::signal::{
    MINSIGSTKSZ, NSIG, SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SA_RESTORER, SEGV_ACCERR,
    SEGV_MAPERR, SIGBUS, SIGCHLD, SIGCONT, SIGFPE, SIGILL, SIGKILL, SIGPIPE, SIGSEGV, SIGSTOP,
    SIGTRAP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH, SIG_DFL, SIG_IGN, SS_DISABLE, SS_ONSTACK,
};
use abi::signal::{SI_TKILL, SI_USER};
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::task::Task;
use crate::arch::idt::InterruptFrame;
use crate::arch::usermode::FpuState;
use crate::memory::uaccess::UserAddr;
use crate::sched::IrqSpinLock;
use abi::{Errno, SysResult};

/// Bytes of the frame pieces (module doc).
const UCONTEXT_BYTES: u64 = 304;
const SIGINFO_BYTES: u64 = 128;
const FRAME_BYTES: u64 = 8 + UCONTEXT_BYTES + SIGINFO_BYTES;
const FPSTATE_BYTES: u64 = 512;
/// The x86_64 ABI's red zone below the user stack pointer.
const RED_ZONE: u64 = 128;

/// The bit of signal `sig` in a set.
pub const fn bit(sig: u32) -> u64 {
    1u64 << (sig - 1)
}

/// Signals that can never be blocked.
const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// `struct kernel_sigaction` (x86_64): handler, flags, restorer, mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `stack_t`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub pad: i32,
    pub size: u64,
}

/// Signal state shared by the threads of a process.
pub struct ProcessSignals {
    actions: IrqSpinLock<[SigAction; NSIG]>,
    /// Process-directed pending signals (any thread may take them).
    pending: AtomicU64,
    /// Pid of the last sender of each pending signal (`si_pid`).
    senders: [AtomicI32; NSIG],
}

impl ProcessSignals {
    pub fn new() -> ProcessSignals {
        ProcessSignals {
            actions: IrqSpinLock::new([SigAction::default(); NSIG]),
            pending: AtomicU64::new(0),
            senders: [const { AtomicI32::new(0) }; NSIG],
        }
    }

    /// A fork's copy: same actions, nothing pending.
    pub fn fork_copy(&self) -> ProcessSignals {
        ProcessSignals {
            actions: IrqSpinLock::new(*self.actions.lock()),
            pending: AtomicU64::new(0),
            senders: [const { AtomicI32::new(0) }; NSIG],
        }
    }

    /// execve: caught signals go back to the default action (ignored ones
    /// stay ignored).
    pub fn reset_on_exec(&self) {
        for a in self.actions.lock().iter_mut() {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
    }

    pub fn action(&self, sig: u32) -> SigAction {
        self.actions.lock()[(sig - 1) as usize]
    }

    pub fn set_action(&self, sig: u32, action: SigAction) {
        self.actions.lock()[(sig - 1) as usize] = action;
    }
}

impl Default for ProcessSignals {
    fn default() -> Self {
        Self::new()
    }
}

/// Signal state of one thread.
pub struct TaskSignals {
    pub mask: AtomicU64,
    pending: AtomicU64,
    pub altstack: IrqSpinLock<AltStack>,
    /// Address and `si_code` of the last fault forced on this thread.
    fault: IrqSpinLock<(u64, i32)>,
    /// Pid of the last sender of each pending signal (`si_pid`).
    senders: [AtomicI32; NSIG],
    /// `rt_sigsuspend`: the mask to restore after the next handler (the
    /// signal frame records it), valid while `suspended` is set.
    saved_mask: AtomicU64,
    suspended: core::sync::atomic::AtomicBool,
}

impl TaskSignals {
    pub fn new() -> TaskSignals {
        TaskSignals {
            mask: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            altstack: IrqSpinLock::new(AltStack {
                sp: 0,
                flags: SS_DISABLE,
                pad: 0,
                size: 0,
            }),
            fault: IrqSpinLock::new((0, 0)),
            senders: [const { AtomicI32::new(0) }; NSIG],
            saved_mask: AtomicU64::new(0),
            suspended: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sets the mask (SIGKILL/SIGSTOP are silently kept unblocked).
    pub fn set_mask(&self, mask: u64) {
        self.mask.store(mask & !UNBLOCKABLE, Ordering::Release);
    }
}

impl Default for TaskSignals {
    fn default() -> Self {
        Self::new()
    }
}

/// True when `task` has a pending signal it does not block, or must exit
/// (exit_group, a fatal signal, execve elsewhere): blocking calls then end
/// early.  Lock-free.
pub fn has_deliverable(task: &Task) -> bool {
    if task.must_exit.load(Ordering::Acquire) {
        return true;
    }
    let pending = task.signals.pending.load(Ordering::Acquire)
        | task.process.signals.pending.load(Ordering::Acquire);
    pending & !task.signals.mask.load(Ordering::Acquire) != 0
}

/// `rt_sigsuspend`: `mask` is in force until the next handler runs; the
/// handler's frame then carries `old`, which `rt_sigreturn` restores.
pub fn set_temporary_mask(task: &Task, mask: u64, old: u64) {
    task.signals.saved_mask.store(old, Ordering::Release);
    task.signals.suspended.store(true, Ordering::Release);
    task.signals.set_mask(mask);
}

/// The mask a new signal frame records: the one saved by `rt_sigsuspend`
/// (consumed), else the current mask.
fn mask_for_frame(task: &Task) -> u64 {
    if task.signals.suspended.swap(false, Ordering::AcqRel) {
        task.signals.saved_mask.load(Ordering::Acquire)
    } else {
        task.signals.mask.load(Ordering::Acquire)
    }
}

/// Every pending signal of `task` (thread- and process-directed).
pub fn pending_set(task: &Task) -> u64 {
    task.signals.pending.load(Ordering::Acquire)
        | task.process.signals.pending.load(Ordering::Acquire)
}

/// Whether `sig` would be ignored by `process` (SIG_IGN, or the default
/// action is to ignore): such a signal is discarded when sent, as on
/// Linux, so it never interrupts a blocking call.
fn ignored(process: &super::Process, sig: u32) -> bool {
    if sig == SIGKILL {
        return false;
    }
    match process.signals.action(sig).handler {
        SIG_IGN => true,
        SIG_DFL => default_ignores(sig),
        _ => false,
    }
}

/// The pid `si_pid` names for a signal sent now (0: the kernel).
fn sender_pid() -> i32 {
    super::current_task().map_or(0, |t| t.process.pid)
}

/// Makes signal `sig` pending for one thread and wakes it if it sleeps.
pub fn send_to_task(task: &Task, sig: u32) {
    if sig == SIGKILL {
        super::exit::kill_process(&task.process, SIGKILL as i32);
        return;
    }
    if ignored(&task.process, sig) {
        return;
    }
    task.signals.senders[(sig - 1) as usize].store(sender_pid(), Ordering::Relaxed);
    task.signals.pending.fetch_or(bit(sig), Ordering::AcqRel);
    task.kick();
}

/// Makes signal `sig` pending for a process: one thread that does not
/// block it is woken to take it.  SIGKILL ends the process at once.
pub fn send_to_process(process: &super::Process, sig: u32) {
    if sig == SIGKILL {
        super::exit::kill_process(process, SIGKILL as i32);
        return;
    }
    if ignored(process, sig) {
        return;
    }
    process.signals.senders[(sig - 1) as usize].store(sender_pid(), Ordering::Relaxed);
    process.signals.pending.fetch_or(bit(sig), Ordering::AcqRel);
    let tasks = process.task_list();
    let taker = tasks
        .iter()
        .find(|t| t.signals.mask.load(Ordering::Acquire) & bit(sig) == 0)
        .or(tasks.first());
    if let Some(t) = taker {
        t.kick();
    }
}

/// A synchronous fault signal for the calling thread: it cannot be blocked
/// or ignored (if it is, the action is reset to the default, as on Linux).
pub fn force_signal(task: &Task, sig: u32, addr: u64, code: i32) {
    let action = task.process.signals.action(sig);
    let blocked = task.signals.mask.load(Ordering::Acquire) & bit(sig) != 0;
    if blocked || action.handler == SIG_IGN {
        task.process.signals.set_action(sig, SigAction::default());
        task.signals.mask.fetch_and(!bit(sig), Ordering::AcqRel);
    }
    *task.signals.fault.lock() = (addr, code);
    task.signals.senders[(sig - 1) as usize].store(0, Ordering::Relaxed);
    task.signals.pending.fetch_or(bit(sig), Ordering::AcqRel);
}

/// SIGSEGV for the calling thread at `addr` (for kernel code that finds a
/// user fault outside the exception path; docs/USERSPACE.md).
#[allow(dead_code)]
pub fn force_sigsegv(addr: u64) {
    if let Some(task) = super::current_task() {
        force_signal(task, SIGSEGV, addr, SEGV_MAPERR);
    }
}

/// A ring-3 page fault that `memory::vm` could not resolve: SIGSEGV with the
/// address and `si_code` (`SEGV_MAPERR`/`SEGV_ACCERR`) it determined.
pub fn user_page_fault(addr: u64, code: i32) {
    if let Some(task) = super::current_task() {
        log::debug!(
            "proc: pid {} tid {} page fault at {:#x}: SIGSEGV code {}",
            task.process.pid,
            task.tid,
            addr,
            code
        );
        force_signal(task, SIGSEGV, addr, code);
    }
}

/// A ring-3 access to a mapping whose object has no page there (a file
/// mapping past the end of the file): SIGBUS with `addr` and `code`
/// (`BUS_ADRERR`), as Linux.  Called by `memory::vm::page_fault`.
pub fn user_bus_error(addr: u64, code: i32) {
    if let Some(task) = super::current_task() {
        log::debug!(
            "proc: pid {} tid {} page fault at {:#x}: SIGBUS code {}",
            task.process.pid,
            task.tid,
            addr,
            code
        );
        force_signal(task, SIGBUS, addr, code);
    }
}

/// An exception raised in ring 3 (vector in `frame.vector`): queue the
/// matching signal; it is delivered on the way back to user mode.
pub fn user_exception(frame: &mut InterruptFrame) {
    let Some(task) = super::current_task() else {
        return;
    };
    let (sig, addr, code) = match frame.vector {
        0 => (SIGFPE, frame.rip, 1),      // FPE_INTDIV
        1 | 3 => (SIGTRAP, frame.rip, 1), // TRAP_BRKPT
        4 | 5 => (SIGSEGV, frame.rip, SEGV_MAPERR),
        6 => (SIGILL, frame.rip, 2), // ILL_ILLOPN
        7 | 16 | 19 => (SIGFPE, frame.rip, 0),
        14 => {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            let code = if frame.error_code & 1 != 0 {
                SEGV_ACCERR
            } else {
                SEGV_MAPERR
            };
            log::debug!(
                "proc: pid {} tid {} page fault at {:#x} (rip {:#x}, error {:#x}): SIGSEGV",
                task.process.pid,
                task.tid,
                cr2,
                frame.rip,
                frame.error_code
            );
            (SIGSEGV, cr2, code)
        }
        17 => (SIGBUS, frame.rip, 1), // BUS_ADRALN
        _ => (SIGSEGV, 0, 0x80),      // #GP, #SS, ...: SI_KERNEL
    };
    if frame.vector != 14 {
        log::debug!(
            "proc: pid {} tid {} exception {} at rip {:#x}: signal {}",
            task.process.pid,
            task.tid,
            frame.vector,
            frame.rip,
            sig
        );
    }
    force_signal(task, sig, addr, code);
}

/// Removes and returns the lowest pending, unblocked signal of `task`
/// (thread-directed first), with whether it was thread-directed.
fn take_signal(task: &Task) -> Option<(u32, bool)> {
    let mask = task.signals.mask.load(Ordering::Acquire);
    for (set, own) in [
        (&task.signals.pending, true),
        (&task.process.signals.pending, false),
    ] {
        loop {
            let pending = set.load(Ordering::Acquire);
            let ready = pending & !mask;
            if ready == 0 {
                break;
            }
            let sig = ready.trailing_zeros() + 1;
            if set
                .compare_exchange(
                    pending,
                    pending & !bit(sig),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Some((sig, own));
            }
        }
    }
    None
}

/// Whether the default action of `sig` is to ignore it (there is no job
/// control here, so stop signals are ignored too).
fn default_ignores(sig: u32) -> bool {
    matches!(
        sig,
        SIGCHLD | SIGURG | SIGWINCH | SIGCONT | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU
    )
}

/// Acts on pending signals before returning to ring 3 (see module doc).
/// Interrupts on.  May not return (the thread or process ends).
pub fn deliver_pending(task: &Task, frame: &mut InterruptFrame) {
    if task.must_exit.load(Ordering::Acquire) {
        super::exit::exit_thread_now(task);
    }
    while let Some((sig, own)) = take_signal(task) {
        let action = task.process.signals.action(sig);
        match action.handler {
            SIG_IGN if sig != SIGKILL => continue,
            SIG_DFL | SIG_IGN => {
                if default_ignores(sig) {
                    continue;
                }
                log::debug!("proc: pid {} killed by signal {}", task.process.pid, sig);
                super::exit::kill_process(&task.process, sig as i32);
                super::exit::exit_thread_now(task);
            }
            _ => {
                let (fault_addr, fault_code) = *task.signals.fault.lock();
                let senders = if own {
                    &task.signals.senders
                } else {
                    &task.process.signals.senders
                };
                let pid = senders[(sig - 1) as usize].load(Ordering::Relaxed);
                let info = match sig {
                    SIGSEGV | SIGBUS | SIGFPE | SIGILL | SIGTRAP if pid == 0 => Info::Fault {
                        addr: fault_addr,
                        code: fault_code,
                    },
                    _ => Info::Sender {
                        pid,
                        code: if own { SI_TKILL } else { SI_USER },
                    },
                };
                if action.flags & SA_RESTART != 0 {
                    restart_if_interrupted(frame);
                }
                if setup_frame(task, frame, sig, &action, info).is_err() {
                    // No room for the frame: the process dies of SIGSEGV.
                    log::debug!(
                        "proc: pid {} cannot take signal {}: bad stack",
                        task.process.pid,
                        sig
                    );
                    super::exit::kill_process(&task.process, SIGSEGV as i32);
                    super::exit::exit_thread_now(task);
                }
                if action.flags & SA_RESETHAND != 0 {
                    task.process.signals.set_action(sig, SigAction::default());
                }
                let mut add = action.mask;
                if action.flags & SA_NODEFER == 0 {
                    add |= bit(sig);
                }
                let old = task.signals.mask.load(Ordering::Acquire);
                task.signals.set_mask(old | add);
                return;
            }
        }
    }
}

/// Calls Linux restarts after an SA_RESTART handler when they were
/// interrupted (ERESTARTSYS there): read, write, pread64, pwrite64,
/// readv, writev, wait4, waitid, futex, open, openat.  Not pause,
/// sigsuspend, sleeps, poll or select (those report EINTR).
fn restartable(nr: u64) -> bool {
    matches!(nr, 0 | 1 | 2 | 17 | 18 | 19 | 20 | 61 | 202 | 247 | 257)
}

/// If `frame` is a syscall that just failed with EINTR and may be
/// restarted, rewinds it so the call runs again when the handler returns.
fn restart_if_interrupted(frame: &mut InterruptFrame) {
    let eintr = abi::Errno::EINTR.to_return() as u64;
    if frame.vector == crate::arch::syscall::SYSCALL_VECTOR
        && frame.rax == eintr
        && restartable(frame.error_code)
    {
        frame.rax = frame.error_code;
        // `syscall` is two bytes long (0f 05).
        frame.rip -= 2;
        frame.rcx = frame.rip;
    }
}

fn put(buf: &mut [u8], offset: usize, value: u64) {
    buf[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get(buf: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[offset..offset + 8]);
    u64::from_le_bytes(b)
}

/// Offsets inside the ucontext of the general registers, in the order of
/// `struct sigcontext` (r8 .. rip).
const SC_BASE: usize = 40;

fn save_registers(uc: &mut [u8], f: &InterruptFrame) {
    let regs = [
        f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15, f.rdi, f.rsi, f.rbp, f.rbx, f.rdx,
        f.rax, f.rcx, f.rsp, f.rip, f.rflags,
    ];
    for (i, r) in regs.iter().enumerate() {
        put(uc, SC_BASE + i * 8, *r);
    }
    // cs, gs, fs, ss as four u16.
    let selectors = (f.cs & 0xffff) | ((f.ss & 0xffff) << 48);
    put(uc, SC_BASE + 144, selectors);
    put(uc, SC_BASE + 152, f.error_code); // err
    put(uc, SC_BASE + 160, f.vector.min(255)); // trapno
}

fn load_registers(uc: &[u8], f: &mut InterruptFrame) {
    let r = |i: usize| get(uc, SC_BASE + i * 8);
    f.r8 = r(0);
    f.r9 = r(1);
    f.r10 = r(2);
    f.r11 = r(3);
    f.r12 = r(4);
    f.r13 = r(5);
    f.r14 = r(6);
    f.r15 = r(7);
    f.rdi = r(8);
    f.rsi = r(9);
    f.rbp = r(10);
    f.rbx = r(11);
    f.rdx = r(12);
    f.rax = r(13);
    f.rcx = r(14);
    f.rsp = r(15);
    f.rip = r(16);
    f.rflags = r(17);
    // Selectors and privileged flags are forced by `usermode::sanitize`.
    crate::arch::usermode::sanitize(f);
}

/// Builds the handler frame on the user (or alternate) stack and points
/// `frame` at the handler.
/// What the `siginfo` of a delivered signal says.
#[derive(Clone, Copy)]
enum Info {
    /// A fault: address and `si_code`.
    Fault { addr: u64, code: i32 },
    /// Sent by a process (`kill`, `tgkill`; pid 0 for the kernel).
    Sender { pid: i32, code: i32 },
}

fn setup_frame(
    task: &Task,
    frame: &mut InterruptFrame,
    sig: u32,
    action: &SigAction,
    info: Info,
) -> Result<(), Errno> {
    let fault_addr = match info {
        Info::Fault { addr, .. } => addr,
        Info::Sender { .. } => 0,
    };
    if action.flags & SA_RESTORER == 0 || action.restorer == 0 {
        // x86_64 has no kernel-provided return trampoline (no vDSO here).
        return Err(Errno::EFAULT);
    }
    let alt = *task.signals.altstack.lock();
    let on_alt =
        alt.flags & SS_DISABLE == 0 && frame.rsp > alt.sp && frame.rsp <= alt.sp + alt.size;
    let mut sp = if action.flags & SA_ONSTACK != 0 && alt.flags & SS_DISABLE == 0 && !on_alt {
        alt.sp + alt.size
    } else {
        frame.rsp.wrapping_sub(RED_ZONE)
    };
    sp = sp.wrapping_sub(FPSTATE_BYTES) & !63;
    let fpstate = sp;
    // After the handler's `ret`-less entry, (rsp + 8) must be 16-aligned.
    let frame_addr = ((fpstate - FRAME_BYTES) & !15) - 8;

    let mut buf = [0u8; FRAME_BYTES as usize];
    put(&mut buf, 0, action.restorer);
    {
        let uc = &mut buf[8..8 + UCONTEXT_BYTES as usize];
        put(uc, 16, alt.sp);
        put(
            uc,
            24,
            (if on_alt { SS_ONSTACK } else { alt.flags }) as u32 as u64,
        );
        put(uc, 32, alt.size);
        save_registers(uc, frame);
        let saved_mask = mask_for_frame(task);
        put(uc, SC_BASE + 168, saved_mask); // oldmask
        put(
            uc,
            SC_BASE + 176,
            if sig == SIGSEGV || sig == SIGBUS {
                fault_addr
            } else {
                0
            },
        ); // cr2
        put(uc, SC_BASE + 184, fpstate);
        put(uc, 296, saved_mask);
    }
    {
        let si = &mut buf[(8 + UCONTEXT_BYTES) as usize..];
        si[0..4].copy_from_slice(&(sig as i32).to_le_bytes());
        match info {
            Info::Fault { addr, code } => {
                si[8..12].copy_from_slice(&code.to_le_bytes());
                put(si, 16, addr);
            }
            Info::Sender { pid, code } => {
                si[8..12].copy_from_slice(&code.to_le_bytes());
                si[16..20].copy_from_slice(&pid.to_le_bytes());
                // si_uid stays 0 (everyone is root here).
            }
        }
    }
    let fpu = task.fpu_snapshot();
    // Both addresses come from the user's stack pointer (or its
    // sigaltstack): allegations, checked by the copies.
    UserAddr(fpstate).write_bytes(fpu.bytes())?;
    UserAddr(frame_addr).write_bytes(&buf)?;

    frame.rsp = frame_addr;
    frame.rip = action.handler;
    frame.rdi = u64::from(sig);
    frame.rsi = frame_addr + 8 + UCONTEXT_BYTES;
    frame.rdx = frame_addr + 8;
    frame.rax = 0;
    // The handler starts with DF and TF clear, as the ABI expects; the
    // handler address is the program's choice, so the frame is checked
    // like any other that goes back by `iretq`.
    frame.rflags &= !(0x400 | 0x100);
    crate::arch::usermode::sanitize(frame);
    task.fpu_load(&FpuState::initial());
    Ok(())
}

/// `rt_sigreturn`: restores the context saved by `setup_frame` (the user
/// stack pointer points just past the return address, at the ucontext).
pub fn sigreturn(task: &Task, frame: &mut InterruptFrame) -> SysResult {
    let uc_addr = frame.rsp;
    let mut uc = [0u8; UCONTEXT_BYTES as usize];
    if UserAddr(uc_addr).read_bytes(&mut uc).is_err() {
        super::exit::kill_process(&task.process, SIGSEGV as i32);
        super::exit::exit_thread_now(task);
    }
    load_registers(&uc, frame);
    task.signals.set_mask(get(&uc, 296));
    let fpstate = get(&uc, SC_BASE + 184);
    if fpstate != 0 {
        let mut image = [0u8; FPSTATE_BYTES as usize];
        if UserAddr(fpstate).read_bytes(&mut image).is_ok() {
            let mut state = FpuState::initial();
            state.set_bytes(&image);
            task.fpu_load(&state);
        }
    }
    Ok(frame.rax as usize)
}

/// (thread-directed, process-directed) pending signals of `task`, and
/// (ignored, caught) of its process, as `/proc/<pid>/status` shows them
/// (bit n-1 for signal n).
pub fn status_sets(task: &Task) -> (u64, u64, u64, u64) {
    let mut ignored = 0;
    let mut caught = 0;
    for sig in 1..=NSIG as u32 {
        match task.process.signals.action(sig).handler {
            SIG_DFL => {}
            SIG_IGN => ignored |= bit(sig),
            _ => caught |= bit(sig),
        }
    }
    (
        task.signals.pending.load(Ordering::Acquire),
        task.process.signals.pending.load(Ordering::Acquire),
        ignored,
        caught,
    )
}
