//! Creating threads and processes: `clone`, `fork`, `vfork`, and starting
//! any new task on its own scheduler thread.
//!
//! Owns: the clone flag checks, what a child shares or copies (address
//! space: shared with CLONE_VM, else a copy-on-write `fork_cow`; files,
//! signal actions: per process), the child's first user frame (the
//! parent's, with rax = 0 and the new stack/TLS), CLONE_PARENT_SETTID /
//! CHILD_SETTID / CHILD_CLEARTID, and the vfork wait.
//!
//! Invariants: a child's task is registered and counted in its process
//! before its thread can run; it inherits the parent thread's CPU
//! affinity.  Must not: start the child before its frame is fixed (the
//! child's own first code, in kernel mode, writes its frame).

use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::process::{self, Process};
use super::task::Task;
use crate::arch::idt::InterruptFrame;
use crate::memory::uaccess::UserAddr;
use crate::sched;
use abi::{Errno, SysResult};

pub const CSIGNAL: u64 = 0x0000_00ff;
pub const CLONE_VM: u64 = 0x0000_0100;
pub const CLONE_FS: u64 = 0x0000_0200;
pub const CLONE_FILES: u64 = 0x0000_0400;
pub const CLONE_SIGHAND: u64 = 0x0000_0800;
pub const CLONE_VFORK: u64 = 0x0000_4000;
pub const CLONE_PARENT: u64 = 0x0000_8000;
pub const CLONE_THREAD: u64 = 0x0001_0000;
pub const CLONE_SYSVSEM: u64 = 0x0004_0000;
pub const CLONE_SETTLS: u64 = 0x0008_0000;
pub const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
pub const CLONE_DETACHED: u64 = 0x0040_0000;
pub const CLONE_UNTRACED: u64 = 0x0080_0000;
pub const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
pub const CLONE_IO: u64 = 0x8000_0000;

/// Flags this kernel implements (or may ignore harmlessly).
const SUPPORTED: u64 = CSIGNAL
    | CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_VFORK
    | CLONE_PARENT
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED
    | CLONE_UNTRACED
    | CLONE_CHILD_SETTID
    | CLONE_IO;

/// Starts `task` on a new scheduler thread: it begins in kernel mode,
/// writes its first user frame (`frame`) and CHILD_SETTID word, then
/// enters user mode.
pub fn start_task(
    task: Arc<Task>,
    frame: InterruptFrame,
    settid: Option<UserAddr>,
    mask: u64,
) -> Result<(), Errno> {
    let name = {
        let mut n = String::from("user/");
        n.push_str(&task.process.name.lock());
        n
    };
    task.process.add_task(&task);
    process::register_task(&task);
    let tid = task.tid;
    let thread = sched::spawn_user(&name, mask, task.clone(), move || {
        let (Some(me), Some(thread)) = (super::current_task(), sched::current()) else {
            return;
        };
        // The parent records the thread too, but may not have yet.
        me.set_thread(&thread);
        drop(thread);
        sched::write_own_trap_frame(frame);
        if let Some(addr) = settid {
            // A bad pointer is ignored, as on Linux.
            let _ = addr.write::<i32>(&tid);
        }
    });
    match thread {
        Ok(thread) => {
            task.set_thread(&thread);
            Ok(())
        }
        Err(e) => {
            log::warn!("proc: cannot start a thread: {}", e);
            process::unregister_task(tid);
            task.process.live_threads.fetch_sub(1, Ordering::AcqRel);
            Err(Errno::EAGAIN)
        }
    }
}

/// The CPUs the calling thread may run on (a child inherits them).
fn current_mask() -> u64 {
    sched::current().map_or(u64::MAX, |t| t.affinity_mask())
}

/// `clone(flags, newsp, parent_tid, child_tid, tls)` (x86_64 order).
pub fn sys_clone(
    frame: &InterruptFrame,
    flags: u64,
    newsp: u64,
    parent_tid: UserAddr,
    child_tid: UserAddr,
    tls: u64,
) -> SysResult {
    let parent = super::current_task().ok_or(Errno::ENOSYS)?;
    if flags & !SUPPORTED != 0 {
        log::debug!("proc: clone flags {:#x} not supported", flags & !SUPPORTED);
        return Err(Errno::EINVAL);
    }
    // Linux's consistency rules.
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }

    let tid = process::alloc_id();
    let aspace = if flags & CLONE_VM != 0 {
        parent.aspace()
    } else {
        parent.aspace().fork_cow()?
    };
    let process: Arc<Process> = if flags & CLONE_THREAD != 0 {
        parent.process.clone()
    } else {
        let files = parent.process.files.fork_copy();
        let signals = parent.process.signals.fork_copy();
        let name = parent.process.name.lock().clone();
        let real_parent = if flags & CLONE_PARENT != 0 {
            parent
                .process
                .parent()
                .unwrap_or_else(|| parent.process.clone())
        } else {
            parent.process.clone()
        };
        let child = Process::new(
            tid,
            Some(&real_parent),
            aspace.clone(),
            files,
            signals,
            name,
        );
        *child.image.lock() = parent.process.image.lock().clone();
        child.ipc.inherit(&parent.process.ipc);
        child
    };
    if process.exiting.load(Ordering::Acquire) {
        return Err(Errno::EAGAIN);
    }

    let task = Arc::new(Task::new(
        tid,
        process.clone(),
        aspace,
        parent.fpu_snapshot(),
    ));
    task.signals
        .set_mask(parent.signals.mask.load(Ordering::Acquire));
    *task.comm.lock() = *parent.comm.lock();
    task.fs_base.store(
        if flags & CLONE_SETTLS != 0 {
            tls
        } else {
            parent.fs_base.load(Ordering::Acquire)
        },
        Ordering::Release,
    );
    if flags & CLONE_CHILD_CLEARTID != 0 {
        task.clear_child_tid
            .store(child_tid.raw(), Ordering::Release);
    }
    if flags & CLONE_PARENT_SETTID != 0 {
        // Linux ignores a bad pointer here too (`put_user` unchecked).  An
        // early return would also leave a new process that never runs in
        // its parent's children: a zombie never, so never reaped (the
        // fuzzer's leak of about 450 bytes of heap and a copied address
        // space per such clone).
        let _ = parent_tid.write::<i32>(&tid);
    }

    let mut child_frame = *frame;
    child_frame.rax = 0;
    if newsp != 0 {
        child_frame.rsp = newsp;
    }
    let settid = (flags & CLONE_CHILD_SETTID != 0).then_some(child_tid);
    if let Err(e) = start_task(task, child_frame, settid, current_mask()) {
        if flags & CLONE_THREAD == 0 {
            abandon(&process);
        }
        return Err(e);
    }

    if flags & CLONE_VFORK != 0 && flags & CLONE_THREAD == 0 {
        process
            .vfork_wait
            .wait_until(|| process.vfork_done.load(Ordering::Acquire));
    }
    Ok(tid as usize)
}

/// Undoes `Process::new` for a child whose first thread could not start:
/// out of its parent's children and the pid table, its files and address
/// space released (nobody will ever reap it).
fn abandon(process: &Arc<Process>) {
    if let Some(parent) = process.parent() {
        parent.children.lock().retain(|c| !Arc::ptr_eq(c, process));
    }
    process::unregister_process(process.pid);
    process.files.release();
    process.ipc.release();
    process.set_aspace(None);
}

/// `fork()`: a copy-on-write child process.
pub fn sys_fork(frame: &InterruptFrame) -> SysResult {
    sys_clone(frame, 17 /* SIGCHLD */, 0, UserAddr(0), UserAddr(0), 0)
}

/// `vfork()`: the child shares memory; the parent waits until it execs or
/// exits.
pub fn sys_vfork(frame: &InterruptFrame) -> SysResult {
    sys_clone(
        frame,
        CLONE_VM | CLONE_VFORK | 17,
        0,
        UserAddr(0),
        UserAddr(0),
        0,
    )
}
