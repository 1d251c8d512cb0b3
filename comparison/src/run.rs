//! `run`: one static Linux program as PID 1, on our kernel or on Linux, in
//! the same virtual machine, with the program's output and exit status.
//!
//! Owns: the initramfs of a run (`/init` + extra files and trees, PID 1's
//! argv/envp files, plus `/linux-init` and the virtio modules on Linux), the kernel command lines, streaming only the program's output
//! (the loader's lines, our `[cpuN] ...` log lines, Linux's `[  0.1] ...`
//! lines and its panic block are dropped unless asked for), and the verdict: the program's exit
//! status, or why there is none (kernel panic, boot error, timeout).
//!
//! Invariants: the same archive bytes go to both systems; arguments and the
//! environment reach PID 1 byte for byte through `/.init/argv` and
//! `/.init/envp` in the archive (`initramfs`), never the kernel command
//! line (only a NUL byte is refused); every run has a timeout.

use crate::boot::{self, BootRequest, LoaderChoice};
use crate::build::Artifacts;
use crate::image::Module;
use crate::initramfs::{self, InitramfsFile};
use crate::linux::{self, LinuxEnd, LinuxKernel, OutputFilter};
use crate::qemu::{self, Ending, RunOutcome, VmConfig};
use anyhow::{bail, Context, Result};
/// The lock switch of a run (`RunRequest::locks`), the kernel's own type.
pub use percpu::LockMode;
use std::path::{Path, PathBuf};

/// Exit status of `comparison run` when the system (not the program) failed:
/// kernel panic, loader/initramfs/command-line error, QEMU error, or no exit
/// status from PID 1.
pub const EXIT_SYSTEM_FAILED: u8 = 125;
/// Exit status of `comparison run` when the timeout passed.
pub const EXIT_TIMED_OUT: u8 = 124;

/// Which kernel runs the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Ours,
    Linux,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Ours => "ours",
            System::Linux => "linux",
        }
    }
}

/// How our kernel is structured (`--structure`, the boot option
/// `structure=`; docs/SERVERS.md): the file system in the kernel, or in the
/// user-mode file server `fsd` that the kernel starts before `/init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Structure {
    #[default]
    Monolithic,
    Servers,
}

impl Structure {
    pub fn name(self) -> &'static str {
        match self {
            Structure::Monolithic => "monolithic",
            Structure::Servers => "servers",
        }
    }

    /// The command-line word (none for the default).
    pub fn cmdline_word(self) -> Option<&'static str> {
        match self {
            Structure::Monolithic => None,
            Structure::Servers => Some("structure=servers"),
        }
    }
}

/// Guest path of the file server's program in the initramfs (the kernel
/// loads it from the archive in memory: `kernel/src/servers.rs`).
pub const FSD_GUEST_PATH: &str = "/.servers/fsd";

/// The initramfs member of the file server (built with the userland
/// programs), for `structure=servers`.
pub fn fsd_member() -> Result<InitramfsFile> {
    let userland = crate::userland::build()?;
    InitramfsFile::from_host(&userland.program("fsd")?, FSD_GUEST_PATH)
}

/// Guest path of the network server's program (started after `fsd`).
pub const NETD_GUEST_PATH: &str = "/.servers/netd";

/// Guest path of the NIC driver process's program (started when the VM has
/// a NIC and `servers.nic=process`, the default).
pub const NICD_GUEST_PATH: &str = "/.servers/nicd";

/// The initramfs members of the OS servers of `structure=servers`: the
/// file server, the network server and the NIC driver.
pub fn server_members() -> Result<Vec<InitramfsFile>> {
    let userland = crate::userland::build()?;
    Ok(vec![
        InitramfsFile::from_host(&userland.program("fsd")?, FSD_GUEST_PATH)?,
        InitramfsFile::from_host(&userland.program("netd")?, NETD_GUEST_PATH)?,
        InitramfsFile::from_host(&userland.program("nicd")?, NICD_GUEST_PATH)?,
    ])
}

/// What to print while the run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Nothing (tests read the result).
    Quiet,
    /// The program's output only.
    Program,
    /// The whole serial log, kernel lines included.
    Serial,
}

/// One run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub system: System,
    /// Host path of the static Linux executable that becomes `/init`.
    pub program: PathBuf,
    /// Extra files: (host path, absolute guest path).
    pub files: Vec<(PathBuf, String)>,
    /// PID 1's argv[1..].
    pub args: Vec<String>,
    /// Our kernel only: the lock switch (`Global` adds `locks=global`, the
    /// ablation).
    pub locks: LockMode,
    /// Extra kernel command-line words (e.g. `log=debug` for ours,
    /// `mitigations=off` for Linux; `net=IP/PREFIX[,gw=IP]` for both).
    pub extra_cmdline: String,
    pub vm: VmConfig,
    pub echo: Echo,
}

/// What a run takes besides its `RunRequest` (kept apart so that callers
/// that build a `RunRequest` literally need not change): `--env` and `--dir`.
#[derive(Debug, Clone, Default)]
pub struct RunExtras {
    /// `KEY=VALUE` entries added to (or replacing in) the default environment.
    pub env: Vec<String>,
    /// Host directory trees: (host dir, absolute guest dir, `/` allowed).
    pub dirs: Vec<(PathBuf, String)>,
    /// argv[0] instead of `/init` (e.g. `sh` for a multi-call busybox).
    pub argv0: Option<String>,
    /// Kill the run when the program makes no progress for a while (the
    /// suite's boots that run many workloads in turn); `vm.timeout` still
    /// bounds the whole run.
    pub watchdog: Option<qemu::Watchdog>,
    /// Our kernel only: monolithic, or the file system in a user-mode
    /// server (`--structure servers`; the archive then holds `fsd`).
    pub structure: Structure,
}

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// PID 1 ended with this status (128 + N if killed by signal N).
    Exited(u32),
    /// The kernel panicked (ours: `KERNEL PANIC ...`; Linux: a panic other
    /// than PID 1's exit).
    KernelPanic(String),
    /// The loader, initramfs or command line was refused, or QEMU failed.
    SystemError(String),
    TimedOut,
}

impl Verdict {
    /// The exit status `comparison run` ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Exited(s) => (*s).min(255) as u8,
            Verdict::KernelPanic(_) | Verdict::SystemError(_) => EXIT_SYSTEM_FAILED,
            Verdict::TimedOut => EXIT_TIMED_OUT,
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The program's output (kernel lines removed, no `\r`).
    pub output: String,
    pub verdict: Verdict,
    /// The raw run: whole serial log, QEMU's ending, elapsed time.
    pub outcome: RunOutcome,
}

/// What a run needs besides the request: built binaries and the Linux kernel.
#[derive(Debug, Clone)]
pub struct Systems {
    /// Our kernel and loader (for `System::Ours`).
    pub artifacts: Option<Artifacts>,
    /// Linux (for `System::Linux`).
    pub linux: Option<LinuxKernel>,
    /// `linux-init` (for `System::Linux`).
    pub linux_init: Option<PathBuf>,
    /// Where scratch files go.
    pub scratch: PathBuf,
    /// Which loader boots our kernel (resolved: see `prepare_with_loader`).
    pub loader: LoaderChoice,
}

impl Systems {
    /// Build/fetch what `system` needs; our kernel boots with the built-in loader.
    pub fn prepare(system: System) -> Result<Systems> {
        Systems::prepare_with_loader(system, LoaderChoice::Builtin)
    }

    /// Like `prepare`, with the loader for our kernel resolved once here
    /// (`auto` probes Limine: `boot::resolve_loader`).
    pub fn prepare_with_loader(system: System, loader: LoaderChoice) -> Result<Systems> {
        let root = crate::build::workspace_root();
        let target_dir = crate::build::target_dir(&root)?;
        let scratch = target_dir.join("comparison").join("media");
        match system {
            System::Ours => {
                let artifacts = crate::build::build_bare_metal(true)?;
                let loader = boot::resolve_loader(&artifacts, &loader)?;
                Ok(Systems {
                    artifacts: Some(artifacts),
                    linux: None,
                    linux_init: None,
                    scratch,
                    loader,
                })
            }
            System::Linux => {
                let userland = crate::userland::build()?;
                let linux_init = userland.program("linux-init")?;
                let linux = linux::ensure_kernel(&target_dir)?;
                Ok(Systems {
                    artifacts: None,
                    linux: Some(linux),
                    linux_init: Some(linux_init),
                    scratch,
                    loader,
                })
            }
        }
    }
}

/// Check arguments: any string but one with a NUL byte (argv cannot hold it).
pub fn check_args(args: &[String]) -> Result<()> {
    initramfs::nul_list(args).map(|_| ())
}

/// Check that `program` is a readable ELF file; returns its bytes.
pub fn read_program(program: &Path) -> Result<Vec<u8>> {
    let data =
        std::fs::read(program).with_context(|| format!("reading program {}", program.display()))?;
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", program.display());
    }
    Ok(data)
}

/// The archive bytes shared by both systems: `/init`, the `--file`s, the
/// `--dir` trees, then `/.init/argv` and `/.init/envp`.
pub fn make_initramfs(req: &RunRequest, extras: &RunExtras) -> Result<Vec<u8>> {
    let data = read_program(&req.program)?;
    let mut files = req
        .files
        .iter()
        .map(|(host, guest)| InitramfsFile::from_host(host, guest))
        .collect::<Result<Vec<_>>>()?;
    for (host, guest) in &extras.dirs {
        files.extend(initramfs::tree_from_host(host, guest)?);
    }
    if extras.structure == Structure::Servers && req.system == System::Ours {
        files.extend(server_members()?);
    }
    let env = initramfs::environment(&extras.env)?;
    let argv0 = extras.argv0.as_deref().unwrap_or("/init");
    files.extend(initramfs::argv_files(argv0, &req.args, &env)?);
    initramfs::build(&data, &files)
}

/// Our kernel's command line for a run.
pub fn our_cmdline(req: &RunRequest) -> String {
    our_cmdline_for(req, Structure::Monolithic)
}

/// Our kernel's command line for a run in `structure`.
pub fn our_cmdline_for(req: &RunRequest, structure: Structure) -> String {
    let mut cmdline = String::from("run=init init=/init");
    if let Some(word) = structure.cmdline_word() {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    if let Some(word) = req.locks.cmdline_word() {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    if !req.extra_cmdline.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(req.extra_cmdline.trim());
    }
    cmdline
}

/// Linux's command line for a run: the base plus `extra_cmdline`.
pub fn linux_append(req: &RunRequest) -> String {
    let mut append = linux::BASE_APPEND.to_string();
    if !req.extra_cmdline.trim().is_empty() {
        append.push(' ');
        append.push_str(req.extra_cmdline.trim());
    }
    append
}

/// True for our kernel's own log lines (`[cpuN] LEVEL ...`).
pub fn is_our_log_line(line: &str) -> bool {
    line.strip_prefix("[cpu")
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The message after `marker` on our first kernel log line holding it.
fn our_marker(serial: &str, marker: &str) -> Option<String> {
    serial.lines().filter(|l| is_our_log_line(l)).find_map(|l| {
        l.find(marker)
            .map(|at| l[at + marker.len()..].trim().to_string())
    })
}

/// The system calls our kernel answered `ENOSYS` because it lacks them,
/// from its log lines `syscall: unsupported: NR NAME (first call ...)`
/// (one per number): `run: unsupported system calls: rseq(334), ...`, or
/// `None` when there were none.
pub fn unsupported_summary(serial: &str) -> Option<String> {
    let calls: Vec<String> = serial
        .lines()
        .filter(|l| is_our_log_line(l))
        .filter_map(|l| {
            let rest = &l[l.find("syscall: unsupported: ")? + 22..];
            let mut words = rest.split_whitespace();
            let (nr, name) = (words.next()?, words.next()?);
            Some(format!("{name}({nr})"))
        })
        .collect();
    (!calls.is_empty()).then(|| format!("run: unsupported system calls: {}", calls.join(", ")))
}

/// Run one program.
pub fn run(systems: &Systems, req: &RunRequest) -> Result<RunResult> {
    run_with(systems, req, &RunExtras::default())
}

/// Run one program with `--env`/`--dir` extras.
pub fn run_with(systems: &Systems, req: &RunRequest, extras: &RunExtras) -> Result<RunResult> {
    run_with_qemu_args(systems, req, extras, &[])
}

/// Run one program with extras and extra QEMU arguments after the
/// machine's (`-plugin ...` for `comparison sharing`).
pub fn run_with_qemu_args(
    systems: &Systems,
    req: &RunRequest,
    extras: &RunExtras,
    qemu_args: &[String],
) -> Result<RunResult> {
    check_args(&req.args)?;
    let cpio = make_initramfs(req, extras)?;
    match req.system {
        System::Ours => run_ours(systems, req, extras, cpio, qemu_args, extras.watchdog),
        System::Linux => run_linux(systems, req, cpio, qemu_args, extras.watchdog),
    }
}

fn run_ours(
    systems: &Systems,
    req: &RunRequest,
    extras: &RunExtras,
    cpio: Vec<u8>,
    qemu_args: &[String],
    watchdog: Option<qemu::Watchdog>,
) -> Result<RunResult> {
    let artifacts = systems
        .artifacts
        .as_ref()
        .context("our kernel was not built (Systems::prepare(Ours))")?;
    let request = BootRequest {
        loader: systems.loader.clone(),
        cmdline: our_cmdline_for(req, extras.structure),
        modules: vec![Module {
            guest_path: "boot/initramfs.cpio".into(),
            cmdline: "initramfs".into(),
            data: cpio,
        }],
        vm: req.vm.clone(),
    };
    // `structure=servers` boots the servers image (build::KernelImage).
    let kernel = artifacts.kernel_for_cmdline(&request.cmdline)?;
    let medium = boot::make_medium(artifacts, &request, std::fs::read(kernel)?)?;
    let mut args = qemu::command_args(&medium, &req.vm);
    args.extend_from_slice(qemu_args);
    let echo = req.echo;
    let mut output = String::new();
    // Before the kernel's first log line only the loader speaks.
    let mut kernel_started = false;
    let result = qemu::run_watched(&args, &req.vm, watchdog, &mut |line: &str| {
        let kernel_line = is_our_log_line(line);
        kernel_started |= kernel_line;
        let program_line = kernel_started && !kernel_line;
        if program_line {
            output.push_str(line);
        }
        match echo {
            Echo::Serial => Some(line.to_string()),
            Echo::Program if program_line => Some(line.to_string()),
            _ => None,
        }
    });
    boot::remove_medium(&medium);
    let outcome = result?;
    let verdict = with_loader(our_verdict(&outcome), &outcome, &request.loader);
    Ok(RunResult {
        output,
        verdict,
        outcome,
    })
}

/// A failed boot through real Limine names that Limine (version, folder);
/// a timeout before the kernel's first log line is Limine's failure.
fn with_loader(verdict: Verdict, outcome: &RunOutcome, loader: &LoaderChoice) -> Verdict {
    if !loader.is_limine() {
        return verdict;
    }
    let loader = loader.describe();
    match verdict {
        Verdict::SystemError(msg) => Verdict::SystemError(format!("{msg} (loader: {loader})")),
        Verdict::KernelPanic(msg) => Verdict::KernelPanic(format!("{msg} (loader: {loader})")),
        Verdict::TimedOut if !outcome.serial.lines().any(is_our_log_line) => Verdict::SystemError(
            format!("{loader} did not start the kernel: no kernel log line before the timeout"),
        ),
        other => other,
    }
}

/// Our kernel's verdict from its exit code and its serial markers.
pub fn our_verdict(outcome: &RunOutcome) -> Verdict {
    let serial = &outcome.serial;
    if let Some(msg) = our_marker(serial, "KERNEL PANIC") {
        return Verdict::KernelPanic(format!("KERNEL PANIC{msg}"));
    }
    for marker in ["loader: error: ", "initramfs: error: ", "cmdline: error: "] {
        if let Some(msg) = serial
            .lines()
            .find_map(|l| l.find(marker).map(|at| l[at..].trim().to_string()))
        {
            return Verdict::SystemError(msg);
        }
    }
    let init_exit = our_marker(serial, "init exit: ").and_then(|s| s.parse::<u32>().ok());
    match (&outcome.ending, init_exit) {
        (ending, Some(status)) if *ending == qemu_ending_for(status) => Verdict::Exited(status),
        (ending, Some(status)) => Verdict::SystemError(format!(
            "PID 1 exited with {status} but QEMU ended with {ending:?} (expected {:?})",
            qemu_ending_for(status)
        )),
        (Ending::TimedOut, _) => Verdict::TimedOut,
        (_, _) => Verdict::SystemError(format!(
            "no `init exit:` line; {}",
            outcome.describe_ending()
        )),
    }
}

/// How QEMU ends when the kernel writes `status` to isa-debug-exit
/// (docs/CONTRACTS.md §5).  QEMU's own exit status has 8 bits, so statuses
/// from 112 up wrap around (139 reads as guest code 11): the full value
/// comes from the `init exit:` line, and this only checks they agree.
pub fn qemu_ending_for(status: u32) -> Ending {
    let raw = (((status as u64 + 16) << 1) | 1) & 0xff;
    if raw >= 33 {
        Ending::GuestExit(((raw - 33) / 2) as u32)
    } else {
        Ending::QemuExit(Some(raw as i32))
    }
}

fn run_linux(
    systems: &Systems,
    req: &RunRequest,
    cpio: Vec<u8>,
    qemu_args: &[String],
    watchdog: Option<qemu::Watchdog>,
) -> Result<RunResult> {
    let linux = systems
        .linux
        .as_ref()
        .context("no Linux kernel (Systems::prepare(Linux))")?;
    let init_path = systems
        .linux_init
        .as_ref()
        .context("no linux-init (Systems::prepare(Linux))")?;
    // The identical archive plus /linux-init: cpio archives concatenate (the
    // Linux unpacker reads members past a trailer), so the program's bytes
    // are exactly those our kernel gets.
    let mut initrd = cpio;
    let mut extra = bootfmt::cpio::NewcWriter::new();
    let init =
        std::fs::read(init_path).with_context(|| format!("reading {}", init_path.display()))?;
    extra.add_file("linux-init", 0o755, &init);
    initrd.extend_from_slice(&extra.finish());
    // A NIC or a disk needs Debian's virtio modules, which linux-init loads.
    if req.vm.nic.is_some() || !req.vm.disks.is_empty() {
        let modules = linux::modules_for(linux, req.vm.nic.is_some(), !req.vm.disks.is_empty())?;
        initrd.extend_from_slice(&initramfs::build_members(&modules)?);
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = qemu::write_media(
        &systems.scratch,
        &format!("linux-{}-{n}.cpio", std::process::id()),
        &initrd,
    )?;
    let mut args = qemu::linux_command_args(&linux.vmlinuz, &path, &linux_append(req), &req.vm);
    args.extend_from_slice(qemu_args);
    let echo = req.echo;
    let mut output = String::new();
    let mut filter = OutputFilter::default();
    let result = qemu::run_watched(&args, &req.vm, watchdog, &mut |line: &str| {
        let kept = filter.keep(line);
        if let Some(text) = &kept {
            output.push_str(text);
        }
        match echo {
            Echo::Serial => Some(line.to_string()),
            Echo::Program => kept,
            Echo::Quiet => None,
        }
    });
    let _ = std::fs::remove_file(&path);
    let outcome = result?;
    let verdict = match linux::parse_end(&outcome.serial) {
        LinuxEnd::Init(status) => Verdict::Exited(status),
        LinuxEnd::Panic(msg) => Verdict::KernelPanic(format!("Linux: {msg}")),
        LinuxEnd::Unknown if outcome.ending == Ending::TimedOut => Verdict::TimedOut,
        LinuxEnd::Unknown => Verdict::SystemError(format!(
            "Linux printed no panic line; {}",
            outcome.describe_ending()
        )),
    };
    Ok(RunResult {
        output,
        verdict,
        outcome,
    })
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_log_lines_are_recognised() {
        assert!(is_our_log_line("[cpu0] INFO init exit: 0\n"));
        assert!(is_our_log_line("[cpu12] WARN x"));
        assert!(!is_our_log_line("[cpu] x"));
        assert!(!is_our_log_line("hello [cpu0] x"));
        assert!(!is_our_log_line("[cpux] y"));
    }

    #[test]
    fn command_lines_carry_the_arguments() {
        let req = RunRequest {
            system: System::Ours,
            program: "p".into(),
            files: vec![],
            args: vec!["a".into(), "exit=3".into()],
            locks: LockMode::Global,
            extra_cmdline: "log=debug".into(),
            vm: VmConfig::default(),
            echo: Echo::Quiet,
        };
        assert_eq!(
            our_cmdline(&req),
            "run=init init=/init locks=global log=debug"
        );
        assert_eq!(
            linux_append(&req),
            format!("{} log=debug", linux::BASE_APPEND)
        );
        assert!(check_args(&["a b".to_string(), String::new()]).is_ok());
        assert!(check_args(&["a\0b".to_string()]).is_err());
        let cpio = make_initramfs(
            &RunRequest {
                program: std::env::current_exe().unwrap(),
                args: vec!["a b".into(), String::new()],
                ..req.clone()
            },
            &RunExtras {
                env: vec!["X=1".into()],
                dirs: vec![],
                argv0: None,
                watchdog: None,
                structure: Structure::Monolithic,
            },
        )
        .unwrap();
        let argv = bootfmt::cpio::find(&cpio, ".init/argv").unwrap().unwrap();
        assert_eq!(argv.data, b"/init\0a b\0\0");
        let envp = bootfmt::cpio::find(&cpio, ".init/envp").unwrap().unwrap();
        assert!(envp.data.ends_with(b"\0X=1\0"));
    }

    fn outcome(serial: &str, ending: Ending) -> RunOutcome {
        RunOutcome {
            serial: serial.into(),
            ending,
            elapsed: Default::default(),
            qemu_stderr: String::new(),
        }
    }

    #[test]
    fn verdicts_of_our_kernel() {
        let ok = outcome(
            "hi\n[cpu0] INFO init exit: 3\n[cpu0] INFO kernel exit: 3\n",
            Ending::GuestExit(3),
        );
        assert_eq!(our_verdict(&ok), Verdict::Exited(3));
        let segv = outcome("[cpu0] INFO init exit: 139\n", Ending::GuestExit(11));
        assert_eq!(our_verdict(&segv), Verdict::Exited(139));
        let wrapped = outcome("[cpu0] INFO init exit: 112\n", Ending::QemuExit(Some(1)));
        assert_eq!(our_verdict(&wrapped), Verdict::Exited(112));
        let wrong = outcome("[cpu0] INFO init exit: 5\n", Ending::GuestExit(1));
        assert!(matches!(our_verdict(&wrong), Verdict::SystemError(_)));
        assert_eq!(qemu_ending_for(0), Ending::GuestExit(0));
        assert_eq!(qemu_ending_for(111), Ending::GuestExit(111));
        let panic = outcome(
            "[cpu1] ERROR KERNEL PANIC on cpu 1: boom\n",
            Ending::GuestExit(2),
        );
        assert!(matches!(our_verdict(&panic), Verdict::KernelPanic(m) if m.contains("boom")));
        let fake = outcome("init exit: 0\n", Ending::GuestExit(0));
        assert!(matches!(our_verdict(&fake), Verdict::SystemError(_)));
        let loader = outcome("loader: error: no bundle\n", Ending::GuestExit(3));
        assert!(matches!(our_verdict(&loader), Verdict::SystemError(m) if m.contains("no bundle")));
        assert_eq!(
            our_verdict(&outcome("", Ending::TimedOut)),
            Verdict::TimedOut
        );
        assert_eq!(Verdict::TimedOut.exit_code(), EXIT_TIMED_OUT);
        assert_eq!(
            Verdict::KernelPanic(String::new()).exit_code(),
            EXIT_SYSTEM_FAILED
        );
        assert_eq!(Verdict::Exited(7).exit_code(), 7);
    }

    #[test]
    fn unsupported_calls_are_summed_up() {
        let serial = "[cpu0] WARN syscall: unsupported: 334 rseq (first call from pid 1)\n\
                      hello\n\
                      [cpu1] WARN syscall: unsupported: 425 io_uring_setup (first call from pid 7)\n";
        assert_eq!(
            unsupported_summary(serial).as_deref(),
            Some("run: unsupported system calls: rseq(334), io_uring_setup(425)")
        );
        assert_eq!(unsupported_summary("hello\n"), None);
    }
}
