//! Ending threads and processes, and waiting for children.
//!
//! Owns: `exit` (one thread), `exit_group` and fatal signals (the whole
//! process: every other thread is told to exit and woken), the end of a
//! process (files closed, children handed to PID 1, zombie state, SIGCHLD
//! and a wakeup for the parent), `wait4`/`waitid`, and the end of PID 1
//! (`init exit: S`, then the kernel ends QEMU with S).
//!
//! Wait status encoding (Linux): exit code `c` -> `c << 8`; killed by
//! signal `n` -> `n`.
//!
//! Invariants: the first `group_exit` fixes the status; a thread calls
//! `exit_thread_now` only for itself, with no `Arc` left on its stack (it
//! never returns).  Must not: hold a lock across the final switch.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::process::{self, Pid, Process};
use super::signal::{self, SIGCHLD};
use super::task::Task;
use crate::memory::uaccess::UserAddr;
use abi::structs::Rusage;
use abi::{Errno, SysResult};

/// What PID 1's exit prints first (before `init exit:`) from a layer this
/// module must not import: the system-call counters, set once at boot by
/// the system-call entry path (`arch::syscall::init_cpu`).
static INIT_EXIT_REPORT: spin::Once<fn()> = spin::Once::new();

/// Sets the report PID 1's exit prints first; later calls change nothing.
pub fn set_init_exit_report(report: fn()) {
    INIT_EXIT_REPORT.call_once(|| report);
}

/// `wait4`/`waitid` options.
pub const WNOHANG: u64 = 1;
pub const WEXITED: u64 = 4;
pub const WNOWAIT: u64 = 0x0100_0000;
const WAIT_KNOWN: u64 =
    WNOHANG | 2 | WEXITED | 8 | WNOWAIT | 0x2000_0000 | 0x4000_0000 | 0x8000_0000;

/// Starts the end of `process` with wait status `status` (first caller
/// wins): every thread is told to exit and woken.
pub fn group_exit(process: &Process, status: i32) {
    if process.exiting.swap(true, Ordering::AcqRel) {
        return;
    }
    process.exit_status.store(status, Ordering::Release);
    for t in process.task_list() {
        t.must_exit.store(true, Ordering::Release);
        t.kick();
    }
}

/// Ends `process` as if killed by signal `sig`.
pub fn kill_process(process: &Process, sig: i32) {
    group_exit(process, sig & 0x7f);
}

/// The exit code PID 1's status gives the kernel (128 + n for signal n).
fn init_exit_code(status: i32) -> u32 {
    if status & 0x7f != 0 {
        128 + (status & 0x7f) as u32
    } else {
        ((status >> 8) & 0xff) as u32
    }
}

/// Ends the calling thread (`task` must be the caller's task).  The last
/// thread of the process finishes it.
pub fn exit_thread_now(task: &Task) -> ! {
    retire(task);
    crate::sched::exit_current()
}

/// Everything `exit_thread_now` does before the final switch, in a scope
/// of its own so every `Arc` it takes is dropped before the switch.
fn retire(task: &Task) {
    let process = task.process.clone();
    // CLONE_CHILD_CLEARTID / set_tid_address: tell a joiner.
    let ctid = UserAddr(task.clear_child_tid.swap(0, Ordering::AcqRel));
    if !ctid.is_null() && ctid.write::<u32>(&0).is_ok() {
        super::futex::wake_address(task, ctid.raw(), 1);
    }
    process::unregister_task(task.tid);
    process.files.fds.forget(&task.fd_cache);
    if process.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        finish_process(&process);
    }
}

/// The last thread left: close files, hand children to PID 1, become a
/// zombie, tell the parent (or end the kernel for PID 1).
fn finish_process(process: &Arc<Process>) {
    if !process.exiting.swap(true, Ordering::AcqRel) {
        // Last thread ended by `exit`, not `exit_group`: status already
        // stored by `sys_exit`.
    }
    let status = process.exit_status.load(Ordering::Acquire);
    process.files.release();
    // Callers waiting on this process's reply tokens get EPIPE; endpoints
    // it was the last receiver of fail their queued callers.
    process.ipc.release();
    process.set_aspace(None);

    if process.pid == 1 {
        let code = init_exit_code(status);
        if let Some(report) = INIT_EXIT_REPORT.get() {
            report();
        }
        crate::memory::vm::report_if_asked();
        crate::ipc::migrate::report_if_asked();
        // Mounted disks keep what the program wrote (fs/mounts.rs).
        crate::files::mounts::unmount_all_at_exit();
        crate::log::report(format_args!("init exit: {}", code));
        crate::arch::qemu_exit(code);
    }

    // Orphans go to PID 1 (which reaps them when it waits).
    let orphans = core::mem::take(&mut *process.children.lock());
    if !orphans.is_empty() {
        if let Some(init) = process::find_process(1) {
            for child in &orphans {
                child.set_parent(&init);
            }
            init.children.lock().extend(orphans);
            init.child_wait.wake_all();
        }
    }

    // The zombie is visible before SIGCHLD is sent (a shell's handler
    // reaps with WNOHANG when the signal arrives), and `exit_notified`
    // after it: a parent that reaps this child meanwhile waits for it in
    // `find_zombie`, so `wait4` never returns before the signal is
    // pending (on Linux both happen under the tasklist lock).
    process.zombie.store(true, Ordering::Release);
    process.vfork_done.store(true, Ordering::Release);
    process.vfork_wait.wake_all();
    if let Some(parent) = process.parent() {
        signal::send_to_process(&parent, SIGCHLD);
        process.exit_notified.store(true, Ordering::Release);
        parent.child_wait.wake_all();
    } else {
        process.exit_notified.store(true, Ordering::Release);
    }
}

/// `exit(code)`: ends the calling thread; the process's status is `code`
/// if it is the last thread.
pub fn sys_exit(code: i32) -> ! {
    let task = super::current_task().expect("exit from a user task");
    if task.process.live_threads.load(Ordering::Acquire) == 1
        && !task.process.exiting.load(Ordering::Acquire)
    {
        task.process
            .exit_status
            .store((code & 0xff) << 8, Ordering::Release);
    }
    exit_thread_now(task)
}

/// `exit_group(code)`.
pub fn sys_exit_group(code: i32) -> ! {
    let task = super::current_task().expect("exit_group from a user task");
    group_exit(&task.process, (code & 0xff) << 8);
    exit_thread_now(task)
}

/// Which children a wait call accepts.
#[derive(Clone, Copy)]
enum Which {
    Any,
    Pid(Pid),
    /// Children in this process group (read at each check: a child may
    /// move while we wait).
    Group(Pid),
}

impl Which {
    fn matches(self, child: &Process) -> bool {
        match self {
            Which::Any => true,
            Which::Pid(p) => child.pid == p,
            Which::Group(g) => child.pgid.load(Ordering::Acquire) == g,
        }
    }
}

/// The caller's process group (for wait4(0) and waitid(P_PGID, 0)).
fn own_group() -> Pid {
    super::current_task().map_or(0, |t| t.process.pgid.load(Ordering::Acquire))
}

/// Takes a matching zombie child (or only looks, `consume == false`).
/// `Err(ECHILD)` when no child matches at all.
fn find_zombie(
    parent: &Process,
    which: Which,
    consume: bool,
) -> Result<Option<Arc<Process>>, Errno> {
    let mut children = parent.children.lock();
    if !children.iter().any(|c| which.matches(c)) {
        return Err(Errno::ECHILD);
    }
    let Some(index) = children
        .iter()
        .position(|c| which.matches(c) && c.zombie.load(Ordering::Acquire))
    else {
        return Ok(None);
    };
    let child = if consume {
        let child = children.remove(index);
        process::unregister_process(child.pid);
        child
    } else {
        children[index].clone()
    };
    drop(children);
    // The exit is a few instructions from having sent SIGCHLD (it may
    // have been preempted there: yield, not spin).
    while !child.exit_notified.load(Ordering::Acquire) {
        crate::sched::yield_now();
    }
    Ok(Some(child))
}

/// Waits for a zombie child; `Ok(None)` for WNOHANG with none ready.
fn wait_for_child(
    which: Which,
    nohang: bool,
    consume: bool,
) -> Result<Option<Arc<Process>>, Errno> {
    let task = super::current_task().ok_or(Errno::ECHILD)?;
    let parent = task.process.clone();
    loop {
        if let Some(child) = find_zombie(&parent, which, consume)? {
            return Ok(Some(child));
        }
        if nohang {
            return Ok(None);
        }
        parent.child_wait.wait_until(|| {
            super::signal::has_deliverable(task)
                || parent
                    .children
                    .lock()
                    .iter()
                    .any(|c| which.matches(c) && c.zombie.load(Ordering::Acquire))
        });
        if super::signal::has_deliverable(task) {
            return Err(Errno::EINTR);
        }
    }
}

/// `wait4(pid, wstatus, options, rusage)`.
pub fn sys_wait4(pid: i32, wstatus: UserAddr, options: u64, rusage: UserAddr) -> SysResult {
    if options & !WAIT_KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    let which = match pid {
        -1 => Which::Any,
        0 => Which::Group(own_group()),
        p if p > 0 => Which::Pid(p),
        p => Which::Group(p.checked_neg().ok_or(Errno::ESRCH)?),
    };
    let Some(child) = wait_for_child(which, options & WNOHANG != 0, true)? else {
        return Ok(0);
    };
    let status = child.exit_status.load(Ordering::Acquire);
    if !wstatus.is_null() {
        wstatus.write::<i32>(&status)?;
    }
    if !rusage.is_null() {
        rusage.write(&Rusage::default())?;
    }
    Ok(child.pid as usize)
}

/// `waitid(idtype, id, infop, options, rusage)`.
pub fn sys_waitid(
    idtype: u32,
    id: i32,
    infop: UserAddr,
    options: u64,
    rusage: UserAddr,
) -> SysResult {
    if options & !WAIT_KNOWN != 0 || options & WEXITED == 0 {
        return Err(Errno::EINVAL);
    }
    let which = match idtype {
        0 => Which::Any,                           // P_ALL
        1 if id > 0 => Which::Pid(id),             // P_PID
        2 if id == 0 => Which::Group(own_group()), // P_PGID
        2 if id > 0 => Which::Group(id),
        _ => return Err(Errno::EINVAL),
    };
    let child = wait_for_child(which, options & WNOHANG != 0, options & WNOWAIT == 0)?;
    let mut info = [0u8; 128];
    if let Some(child) = &child {
        let status = child.exit_status.load(Ordering::Acquire);
        let (code, value) = if status & 0x7f != 0 {
            (2i32, status & 0x7f)
        } else {
            (1, (status >> 8) & 0xff)
        };
        info[0..4].copy_from_slice(&(SIGCHLD as i32).to_le_bytes());
        info[8..12].copy_from_slice(&code.to_le_bytes());
        info[16..20].copy_from_slice(&child.pid.to_le_bytes());
        info[24..28].copy_from_slice(&value.to_le_bytes());
    }
    if !infop.is_null() {
        infop.write_bytes(&info)?;
    }
    if !rusage.is_null() {
        rusage.write(&Rusage::default())?;
    }
    Ok(0)
}
