//! Processes and user threads (the Linux model: a process is a thread group
//! sharing an address space, files and signal handlers; each thread is a
//! `Task` running on its own scheduler thread).
//!
//! Files: `task.rs` (the user thread, its switch hooks, `current_task`),
//! `process.rs` (the process, pid/tid tables, credentials, limits),
//! `exec.rs` (ELF loading and the initial stack), `clone.rs` (fork, vfork,
//! clone), `exit.rs` (exit, exit_group, wait), `signal.rs` (actions,
//! masks, delivery, signal frames), `futex.rs` (hashed futex buckets),
//! `files.rs` (the adapter to the fs glue), `init.rs` (PID 1).
//!
//! Per-core rules: the running task is found through the per-CPU area
//! (`arch::cpu::current_task`, one `gs:` load), so getpid/gettid and the
//! signal fast path take no shared lock; pids and tids come from one atomic
//! counter; the pid/tid tables and futexes are hashed with a lock per
//! bucket.
//!
//! Must not: touch page tables directly (`memory::vm` does), or hold a
//! spin lock across anything that can block.

#![deny(unsafe_code)]

pub mod clone;
pub mod exec;
pub mod exit;
pub mod files;
pub mod futex;
pub mod init;
pub mod itimer;
pub mod net_server;
pub mod process;
pub mod server_replace;
pub mod server_restart;
pub mod servers;
pub mod signal;
// The per-task cells (address space, FPU image) and the `gs:` task
// pointer: the one module of `proc` allowed `unsafe`.
#[allow(unsafe_code)]
pub mod task;

use alloc::sync::Arc;

use crate::arch::idt::InterruptFrame;
pub use process::Process;
pub use task::{current_task, Task};

/// The process of the calling thread (`None` in kernel threads).
#[allow(dead_code)] // interface for the fs glue (docs/USERSPACE.md)
pub fn current() -> Option<Arc<Process>> {
    current_task().map(|t| t.process.clone())
}

/// Whether the calling thread has a signal to handle (blocking calls then
/// return `EINTR`).  False in kernel threads.
pub fn signal_pending() -> bool {
    current_task().is_some_and(signal::has_deliverable)
}

/// Work done on every way back to ring 3 (after a syscall, an exception or
/// an interrupt that arrived in user mode): act on pending signals (run a
/// handler, or end the thread/process).  `frame` is the thread's trap
/// frame, changed in place when a handler is set up.
pub fn return_to_user(frame: &mut InterruptFrame) {
    let Some(task) = current_task() else {
        return;
    };
    if !task.needs_attention() {
        return;
    }
    // May block (exit) or fault on the user stack: interrupts on.  We came
    // from ring 3 or a syscall, so no lock is held.
    let were_enabled = crate::arch::irq::save_disable();
    crate::arch::irq::enable();
    signal::deliver_pending(task, frame);
    if !were_enabled {
        crate::arch::irq::disable();
    }
}
