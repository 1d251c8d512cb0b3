//! PID 1: from the kernel command line to the first user process.
//!
//! Owns the `run=init` mode: set up the root file system with the
//! initramfs (`fs::init_root`), start `init=`
//! (default `/init`) with the arguments after `--` and the standard
//! environment, then let the main kernel thread sleep; the end of PID 1
//! ends the kernel (`exit::finish_process`).
//!
//! Must not: return while PID 1 runs, or start it when the initramfs is
//! malformed (`initramfs: error: ...`, exit code 1).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::clone::start_task;
use super::exec::load_program;
use super::files::{open_program, Files};
use super::process::{self, Pid, Process};
use super::signal::ProcessSignals;
use super::task::Task;
use crate::arch::usermode::{initial_frame, FpuState};
use crate::syscall::errno::Errno;

/// PID 1's environment (docs/USERSPACE.md).
const INIT_ENV: [&str; 3] = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"];

/// Exit code when PID 1 cannot be started.
const EXIT_FAILURE: u32 = 1;

/// Starts `path` as PID 1 with `argv` and `envp`.
pub fn spawn_init(path: &str, argv: &[Vec<u8>], envp: &[Vec<u8>]) -> Result<Pid, Errno> {
    let files = Files::new_console();
    let prog = open_program(&files, path)?;
    let loaded = load_program(&prog, argv, envp, path.as_bytes())?;
    drop(prog);
    let pid = process::alloc_id();
    let name = argv
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_else(|| String::from(path));
    let process: Arc<Process> = Process::new(
        pid,
        None,
        loaded.aspace.clone(),
        files,
        ProcessSignals::new(),
        name,
    );
    let task = Arc::new(Task::new(pid, process, loaded.aspace, FpuState::initial()));
    start_task(task, initial_frame(loaded.entry, loaded.sp), None, u64::MAX)?;
    Ok(pid)
}

/// `run=init`: starts PID 1 and sleeps; returns an exit code only when PID
/// 1 could not be started.
pub fn run_init() -> u32 {
    // The root tmpfs with /dev and /tmp, and the initramfs unpacked in it.
    match crate::fs::init_root() {
        Ok(n) => log::info!("initramfs: {} entries unpacked", n),
        Err(e) => {
            crate::log::report(format_args!("initramfs: error: {}", e));
            return EXIT_FAILURE;
        }
    }
    crate::syscall::time::init_realtime();
    let line = crate::boot::cmdline().unwrap_or("");
    let path = crate::cmdline::init_path(line);
    let mut argv: Vec<Vec<u8>> = Vec::new();
    argv.push(path.as_bytes().to_vec());
    argv.extend(crate::cmdline::init_args(line).map(|a| a.as_bytes().to_vec()));
    let envp: Vec<Vec<u8>> = INIT_ENV.iter().map(|e| e.as_bytes().to_vec()).collect();
    match spawn_init(path, &argv, &envp) {
        Ok(pid) => log::info!("init: started {} as pid {}", path, pid),
        Err(e) => {
            crate::log::report(format_args!(
                "init: error: cannot run {}: errno {}",
                path, e.0
            ));
            return EXIT_FAILURE;
        }
    }
    loop {
        crate::sched::sleep_ns(1_000_000_000);
    }
}
