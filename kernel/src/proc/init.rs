//! PID 1: from the kernel command line to the first user process.
//!
//! Owns the `run=init` mode: set up the root file system with the
//! initramfs (`fs::init_root`), start `init=` (default `/init`) with its
//! argv and environment, then let the main kernel thread sleep; the end of
//! PID 1 ends the kernel (`exit::finish_process`).
//!
//! argv and envp come from the initramfs files `/.init/argv` and
//! `/.init/envp` when present (NUL-terminated entries, byte for byte; read,
//! then removed so the program sees only its own files), else from the words
//! after `--` on the command line and the standard environment.
//!
//! Must not: return while PID 1 runs, or start it when the initramfs or its
//! argv/envp files are malformed (`initramfs: error: ...`, exit code 1).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use alloc::format;

use super::clone::start_task;
use super::exec::load_program;
use super::files::{open_program, Files, Program};
use super::process::{self, Pid, Process};
use super::signal::ProcessSignals;
use super::task::Task;
use crate::arch::usermode::{initial_frame, FpuState};
use abi::Errno;

/// PID 1's environment (docs/USERSPACE.md).
const INIT_ENV: [&str; 3] = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"];

/// Exit code when PID 1 cannot be started.
const EXIT_FAILURE: u32 = 1;

/// Starts `path` as PID 1 with `argv` and `envp` (pid `pid` when one was
/// set aside, else the next).
pub fn spawn_init(
    path: &str,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    pid: Option<Pid>,
) -> Result<Pid, Errno> {
    let files = Files::new_console();
    let prog = open_program(&files, path)?;
    spawn_with_files(
        &prog,
        path,
        argv,
        envp,
        pid,
        files,
        true,
        |_| Ok(()),
        |_| Ok(()),
    )
}

/// Starts `prog` as a new process without a parent (fds 0-2 on the
/// console, cwd `/`); `prepare` may map more into its address space
/// before it runs (the file server's copy of the initramfs).
pub fn spawn_program(
    prog: &Program,
    path: &str,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    pid: Option<Pid>,
    prepare: impl FnOnce(&crate::memory::vm::AddressSpace) -> Result<(), Errno>,
) -> Result<Pid, Errno> {
    spawn_with_files(
        prog,
        path,
        argv,
        envp,
        pid,
        Files::new_console(),
        false,
        prepare,
        |_| Ok(()),
    )
}

/// As `spawn_program` with a fresh pid, and `setup` runs on the new
/// process before its first instruction (a boot-time server's pid is made
/// known there: on another CPU it may run as soon as it is queued).
pub fn spawn_program_with_setup(
    prog: &Program,
    path: &str,
    argv: &[Vec<u8>],
    prepare: impl FnOnce(&crate::memory::vm::AddressSpace) -> Result<(), Errno>,
    setup: impl FnOnce(&Arc<Process>) -> Result<(), Errno>,
) -> Result<Pid, Errno> {
    spawn_with_files(
        prog,
        path,
        argv,
        &[],
        None,
        Files::new_console(),
        false,
        prepare,
        setup,
    )
}

/// As `spawn_program`, and `setup` runs on the new process before its
/// first instruction (a replacement server gets its IPC handles there).
pub fn spawn_server_program(
    prog: &Program,
    path: &str,
    argv: &[Vec<u8>],
    setup: impl FnOnce(&Arc<Process>) -> Result<(), Errno>,
) -> Result<Pid, Errno> {
    spawn_program_with_setup(prog, path, argv, |_| Ok(()), setup)
}

#[allow(clippy::too_many_arguments)] // private; each argument is one part of the new process
fn spawn_with_files(
    prog: &Program,
    path: &str,
    argv: &[Vec<u8>],
    envp: &[Vec<u8>],
    pid: Option<Pid>,
    files: Files,
    announce: bool,
    prepare: impl FnOnce(&crate::memory::vm::AddressSpace) -> Result<(), Errno>,
    setup: impl FnOnce(&Arc<Process>) -> Result<(), Errno>,
) -> Result<Pid, Errno> {
    let loaded = load_program(prog, argv, envp, path.as_bytes())?;
    prepare(&loaded.aspace)?;
    let pid = pid.unwrap_or_else(process::alloc_id);
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
    setup(&process)?;
    let task = Arc::new(Task::new(pid, process, loaded.aspace, FpuState::initial()));
    if announce {
        // Before it runs: a log line written while /init prints would cut
        // one of its output lines in two (the console is shared).
        log::info!("init: started {} as pid {}", path, pid);
    }
    start_task(task, initial_frame(loaded.entry, loaded.sp), None, u64::MAX)?;
    Ok(pid)
}

/// `run=init`: starts PID 1 and sleeps; returns an exit code only when PID
/// 1 could not be started.
pub fn run_init() -> u32 {
    let servers = crate::cmdline::options().structure == crate::cmdline::Structure::Servers;
    if servers {
        // Before the root is made: the archive is the file server's.
        crate::files::remote::set_active(crate::cmdline::options().server_copy);
    }
    // The root tmpfs with /dev and /tmp, and the initramfs unpacked in it.
    match crate::files::init_root() {
        Ok(n) => log::info!("initramfs: {} entries unpacked", n),
        Err(e) => {
            crate::log::report(format_args!("initramfs: error: {}", e));
            return EXIT_FAILURE;
        }
    }
    crate::time::init_realtime();
    // structure=servers: the file server first (PID 1 stays /init's).
    let mut init_pid = None;
    if servers {
        let archive = initramfs_archive().unwrap_or(&[]);
        init_pid = Some(process::alloc_id());
        if let Err(msg) = super::servers::start_file_server(archive)
            .and_then(|_| super::servers::start_nic_driver(archive))
            .and_then(|_| super::servers::start_net_server(archive))
        {
            crate::log::report(format_args!("servers: error: {}", msg));
            return EXIT_FAILURE;
        }
        super::servers::start_migration();
    }
    let line = crate::boot::cmdline().unwrap_or("");
    let path = crate::cmdline::init_path(line);
    let (argv, envp) = match init_vectors(line, path) {
        Ok(vectors) => vectors,
        Err(msg) => {
            crate::log::report(format_args!("initramfs: error: {}", msg));
            return EXIT_FAILURE;
        }
    };
    match spawn_init(path, &argv, &envp, init_pid) {
        Ok(_) if servers => {
            super::server_replace::schedule_from_cmdline(line);
            super::server_restart::inject_from_cmdline(line);
        }
        Ok(_) => {}
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

/// The initramfs module's bytes, if there is one.
pub(crate) fn initramfs_archive() -> Option<&'static [u8]> {
    crate::boot::modules()
        .iter()
        .find(|m| m.string().to_bytes() == b"initramfs")
        .map(|m| crate::boot::module_bytes(m))
}

/// The contents of `path` in the root, `None` if it does not exist (with
/// the file server, from the archive: the kernel has no copy of it).
fn read_optional(path: &str) -> Result<Option<Vec<u8>>, String> {
    if crate::files::remote::active() {
        let archive = initramfs_archive().unwrap_or(&[]);
        return super::servers::archive_member(archive, path)
            .map(|d| d.map(<[u8]>::to_vec))
            .map_err(|_| format!("{path}: the initramfs is malformed"));
    }
    let ctx = crate::files::FsContext::new_root();
    match crate::files::read_whole_file(&ctx, path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e == Errno::ENOENT => Ok(None),
        Err(e) if e == Errno::EACCES => Err(format!("{path}: not a regular file")),
        Err(e) => Err(format!("{path}: cannot be read (errno {})", e.0)),
    }
}

/// One NUL-list file (`/.init/argv` or `/.init/envp`) as owned entries.
fn nul_list(path: &str, data: &[u8], nonempty: bool) -> Result<Vec<Vec<u8>>, String> {
    let entries =
        crate::cmdline::split_nul_list(data, nonempty).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for entry in entries {
        let mut owned = Vec::new();
        owned
            .try_reserve_exact(entry.len())
            .map_err(|_| format!("{path}: out of memory"))?;
        owned.extend_from_slice(entry);
        out.try_reserve(1)
            .map_err(|_| format!("{path}: out of memory"))?;
        out.push(owned);
    }
    Ok(out)
}

/// An argument or environment vector (each entry without its NUL).
type Vector = Vec<Vec<u8>>;

/// PID 1's argv and envp: from `/.init/argv` and `/.init/envp` when the
/// initramfs has them (then the command line may not also give arguments),
/// else `path` plus the words after `--`, and `INIT_ENV`.
fn init_vectors(line: &str, path: &str) -> Result<(Vector, Vector), String> {
    use crate::cmdline::{INIT_ARGS_DIR, INIT_ARGV_FILE, INIT_ENVP_FILE};
    let argv_file = read_optional(INIT_ARGV_FILE)?;
    let envp_file = read_optional(INIT_ENVP_FILE)?;
    let argv = match &argv_file {
        Some(data) => {
            if crate::cmdline::init_args(line).next().is_some() {
                return Err(format!(
                    "{INIT_ARGV_FILE} and arguments after `--` on the command line: give only one"
                ));
            }
            nul_list(INIT_ARGV_FILE, data, true)?
        }
        None => {
            let mut argv: Vec<Vec<u8>> = Vec::new();
            argv.push(path.as_bytes().to_vec());
            argv.extend(crate::cmdline::init_args(line).map(|a| a.as_bytes().to_vec()));
            argv
        }
    };
    let envp = match &envp_file {
        Some(data) => nul_list(INIT_ENVP_FILE, data, false)?,
        None => INIT_ENV.iter().map(|e| e.as_bytes().to_vec()).collect(),
    };
    // The files were for us: the program sees only its own. The directory
    // stays if the user put other files in it.
    if crate::files::remote::active() {
        let root = crate::files::remote::root();
        if argv_file.is_some() {
            let _ = crate::files::remote::unlink(root, INIT_ARGV_FILE, 0);
        }
        if envp_file.is_some() {
            let _ = crate::files::remote::unlink(root, INIT_ENVP_FILE, 0);
        }
        if argv_file.is_some() || envp_file.is_some() {
            let _ = crate::files::remote::unlink(root, INIT_ARGS_DIR, abi::fcntl::AT_REMOVEDIR);
        }
        return Ok((argv, envp));
    }
    let fs = crate::files::root_fs();
    let root = fs.root();
    if argv_file.is_some() {
        let _ = fs.unlink(&root, INIT_ARGV_FILE);
    }
    if envp_file.is_some() {
        let _ = fs.unlink(&root, INIT_ENVP_FILE);
    }
    if argv_file.is_some() || envp_file.is_some() {
        let _ = fs.rmdir(&root, INIT_ARGS_DIR);
    }
    Ok((argv, envp))
}
