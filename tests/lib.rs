//! Shared helpers of the QEMU integration tests.
//!
//! Owns: building the bare-metal binaries once per test binary, booting the
//! kernel with a command line on N vCPUs under TCG (never KVM: DESIGN.md §7),
//! building the static test programs of `userland/` and running them as PID 1
//! on our kernel or on Linux (`comparison::run`), and assertions that print
//! the serial log's tail when they fail.  Tests go
//! through the same `comparison` library as the CLI, so they boot exactly
//! what users boot.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::build::Artifacts;
use comparison::qemu::{Accel, Ending, RunOutcome, VmConfig};
pub use comparison::run::LockMode;
use comparison::run::{Echo, RunRequest, RunResult, System, Systems, Verdict};
pub use comparison::skip::{skip_even_in_ci, skip_or_fail};
use comparison::userland::Userland;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// Build kernel and loader once for this test binary.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        comparison::qemu::ensure_available().expect("QEMU is needed: run tools/setup.sh");
        comparison::build::build_bare_metal(true).expect("building kernel and loader")
    })
}

/// The VM every test uses unless it says otherwise: TCG, 512 MiB.
pub fn vm(cores: usize, timeout_secs: u64) -> VmConfig {
    VmConfig {
        cores,
        memory_mib: 512,
        accel: Accel::Tcg,
        timeout: Duration::from_secs(timeout_secs),
        echo: false,
        nic: None,
        disks: Vec::new(),
    }
}

/// Boot the kernel through the built-in loader with `cmdline`.
pub fn boot_builtin(cores: usize, cmdline: &str, timeout_secs: u64) -> RunOutcome {
    let request = BootRequest {
        loader: LoaderChoice::Builtin,
        cmdline: cmdline.to_string(),
        modules: Vec::new(),
        vm: vm(cores, timeout_secs),
    };
    boot::boot(artifacts(), &request).expect("running QEMU")
}

/// Panic with the serial tail unless `cond`.
pub fn check(outcome: &RunOutcome, cond: bool, what: &str) {
    if !cond {
        panic!(
            "{what}\nending: {}\n--- serial (last 60 lines) ---\n{}\n--- QEMU stderr ---\n{}",
            outcome.describe_ending(),
            outcome.tail(60),
            outcome.qemu_stderr
        );
    }
}

/// The kernel ended QEMU itself with `code` and printed its exit line.
pub fn expect_guest_exit(outcome: &RunOutcome, code: u32) {
    check(
        outcome,
        outcome.ending == Ending::GuestExit(code),
        &format!("expected guest exit code {code}"),
    );
    check(
        outcome,
        outcome.kernel_exit_line() == Some(code) || code == 3,
        &format!("expected the line `kernel exit: {code}`"),
    );
}

/// The number printed after `cpus online: `.
pub fn cpus_online(outcome: &RunOutcome) -> Option<usize> {
    outcome.serial.lines().find_map(|line| {
        let at = line.find("cpus online: ")?;
        line[at + "cpus online: ".len()..].trim().parse().ok()
    })
}

/// The value of `key=` on the first line containing `marker`.
pub fn field(outcome: &RunOutcome, marker: &str, key: &str) -> Option<u64> {
    let line = outcome.serial.lines().find(|l| l.contains(marker))?;
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

/// Build the static test programs once for this test binary.
pub fn userland() -> &'static Userland {
    static USERLAND: OnceLock<Userland> = OnceLock::new();
    USERLAND
        .get_or_init(|| comparison::userland::build().expect("building the userland test programs"))
}

/// Host path of test program `name`.
pub fn program(name: &str) -> PathBuf {
    userland().program(name).expect("test program")
}

/// Our kernel, built once.
pub fn ours() -> &'static Systems {
    static OURS: OnceLock<Systems> = OnceLock::new();
    OURS.get_or_init(|| {
        let artifacts = artifacts().clone();
        let scratch = artifacts.scratch_dir();
        Systems {
            artifacts: Some(artifacts),
            linux: None,
            linux_init: None,
            scratch,
            loader: LoaderChoice::Builtin,
        }
    })
}

/// Debian's Linux with `linux-init`, fetched once.  `Err(reason)` only when
/// the kernel image cannot be had (no apt, no network, a bad
/// `COMPARISON_LINUX_KERNEL`); a missing QEMU or a failed userland build
/// panics: those are failures, never skips.  Callers that can do without
/// Linux use `linux_or_skip`.
pub fn linux() -> Result<&'static Systems, String> {
    static LINUX: OnceLock<Result<Systems, String>> = OnceLock::new();
    LINUX
        .get_or_init(|| {
            comparison::qemu::ensure_available().expect("QEMU is needed: run tools/setup.sh");
            userland();
            let root = comparison::build::workspace_root();
            let target = comparison::build::target_dir(&root).expect("cargo's target directory");
            comparison::linux::ensure_kernel(&target).map_err(|e| {
                format!(
                    "the Linux kernel image (Debian's cloud kernel via apt, or {}): {e:#}",
                    comparison::linux::KERNEL_ENV
                )
            })?;
            Ok(Systems::prepare(System::Linux).expect("preparing the Linux side"))
        })
        .as_ref()
        .map_err(|e| e.clone())
}

/// Linux, or `None` after `skip_or_fail` said why not (a failure under `CI`).
pub fn linux_or_skip(what: &str) -> Option<&'static Systems> {
    match linux() {
        Ok(linux) => Some(linux),
        Err(reason) => {
            skip_or_fail(&format!("{what} needs {reason}"));
            None
        }
    }
}

/// Run test program `name` as PID 1 with `args` and extra `files` on
/// `cores` vCPUs (TCG).
pub fn run_program(
    systems: &Systems,
    system: System,
    name: &str,
    cores: usize,
    args: &[&str],
    files: &[(PathBuf, &str)],
    timeout_secs: u64,
) -> RunResult {
    run_path(
        systems,
        system,
        &program(name),
        cores,
        args,
        files,
        timeout_secs,
        LockMode::PerCpu,
    )
}

/// Like `run_program`, with a program path and the lock switch.
#[allow(clippy::too_many_arguments)]
pub fn run_path(
    systems: &Systems,
    system: System,
    program: &std::path::Path,
    cores: usize,
    args: &[&str],
    files: &[(PathBuf, &str)],
    timeout_secs: u64,
    locks: LockMode,
) -> RunResult {
    let request = RunRequest {
        system,
        program: program.to_path_buf(),
        files: files
            .iter()
            .map(|(h, g)| (h.clone(), g.to_string()))
            .collect(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks,
        extra_cmdline: String::new(),
        vm: vm(cores, timeout_secs),
        echo: Echo::Quiet,
    };
    comparison::run::run(systems, &request).expect("running the program")
}

/// Like `run_path` on our kernel in `structure` (`--structure`), with
/// argv[0] `argv0` when given.
pub fn run_structure(
    program: &std::path::Path,
    cores: usize,
    args: &[&str],
    files: &[(PathBuf, &str)],
    timeout_secs: u64,
    structure: comparison::run::Structure,
    argv0: Option<&str>,
) -> RunResult {
    run_structure_cmdline(
        program,
        cores,
        args,
        files,
        timeout_secs,
        structure,
        argv0,
        "",
    )
}

/// `run_structure` with extra kernel command-line words (e.g.
/// `servers.placement=percore`).
#[allow(clippy::too_many_arguments)]
pub fn run_structure_cmdline(
    program: &std::path::Path,
    cores: usize,
    args: &[&str],
    files: &[(PathBuf, &str)],
    timeout_secs: u64,
    structure: comparison::run::Structure,
    argv0: Option<&str>,
    extra_cmdline: &str,
) -> RunResult {
    let request = RunRequest {
        system: System::Ours,
        program: program.to_path_buf(),
        files: files
            .iter()
            .map(|(h, g)| (h.clone(), g.to_string()))
            .collect(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks: LockMode::PerCpu,
        extra_cmdline: extra_cmdline.to_string(),
        vm: vm(cores, timeout_secs),
        echo: Echo::Quiet,
    };
    let extras = comparison::run::RunExtras {
        structure,
        argv0: argv0.map(str::to_string),
        ..Default::default()
    };
    comparison::run::run_with(ours(), &request, &extras).expect("running the program")
}

/// Panic with the program's output and the serial tail unless `cond`.
pub fn check_run(result: &RunResult, cond: bool, what: &str) {
    if !cond {
        panic!(
            "{what}\nverdict: {:?}; {}\n--- program output ---\n{}\n--- serial (last 60 lines) ---\n{}\n--- QEMU stderr ---\n{}",
            result.verdict,
            result.outcome.describe_ending(),
            result.output,
            result.outcome.tail(60),
            result.outcome.qemu_stderr
        );
    }
}

/// The program exited with `status`, and no kernel panic was seen.
pub fn expect_exit(result: &RunResult, status: u32) {
    check_run(
        result,
        result.verdict == Verdict::Exited(status),
        &format!("expected the program to exit with {status}"),
    );
}

/// How many lines of `serial` (the kernel's log) contain `what`.
pub fn log_lines(serial: &str, what: &str) -> usize {
    serial.lines().filter(|l| l.contains(what)).count()
}

/// A server-replacement checker (`replace_check`, `net_replace_check`)
/// run with `args` in `structure=servers` on `cores` vCPUs: it passed, no
/// operation failed or read wrong data, and the kernel logged `rounds`
/// lines containing `replaced`.
pub fn replacement_checked(
    name: &str,
    cores: usize,
    args: &[&str],
    timeout_secs: u64,
    rounds: usize,
    replaced: &str,
) {
    let result = run_structure(
        &program(name),
        cores,
        args,
        &[],
        timeout_secs,
        comparison::run::Structure::Servers,
        None,
    );
    expect_pass(&result, name);
    check_run(
        &result,
        result.output.contains("failed=0 wrong=0"),
        "expected no failed and no wrong operation",
    );
    check_run(
        &result,
        log_lines(&result.outcome.serial, replaced) == rounds,
        &format!("expected the kernel to log {rounds} lines `{replaced}`"),
    );
}

/// A self-checking program passed: exit 0, its `NAME: pass` line, no `WRONG`.
pub fn expect_pass(result: &RunResult, name: &str) {
    expect_exit(result, 0);
    check_run(
        result,
        result.output.lines().any(|l| l == format!("{name}: pass")),
        &format!("expected `{name}: pass`"),
    );
    check_run(
        result,
        !result.output.contains("WRONG"),
        "a check printed WRONG",
    );
}

/// A network namespace with a multiqueue tap at 10.0.3.1/24; deleted (with
/// the tap) on drop.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn create(name: &str, tap: &str, queues: usize) -> Result<Namespace, String> {
        let run = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        // A leftover from a killed run would make `add` fail.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .output();
        run(&["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        let mut tuntap = vec![
            "netns", "exec", name, "ip", "tuntap", "add", "dev", tap, "mode", "tap",
        ];
        if queues > 1 {
            tuntap.push("multi_queue");
        }
        run(&tuntap)?;
        run(&[
            "netns",
            "exec",
            name,
            "ip",
            "addr",
            "add",
            "10.0.3.1/24",
            "dev",
            tap,
        ])?;
        run(&["netns", "exec", name, "ip", "link", "set", tap, "up"])?;
        run(&["netns", "exec", name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Why the tap test cannot run here, if it cannot.
pub fn tap_unavailable() -> Option<String> {
    // The effective user, through `id -u` (no libc needed).
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root (creating a network namespace and a tap needs it)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is missing".into());
    }
    None
}

/// A namespace with tap `tap` (see `Namespace::create`), or `None` after
/// `skip_or_fail` named what is missing (not root, no /dev/net/tun, no
/// `ip`, or the namespace could not be made): a failure under `CI`.
pub fn tap_namespace_or_skip(name: &str, tap: &str, queues: usize) -> Option<Namespace> {
    if let Some(why) = tap_unavailable() {
        skip_or_fail(&format!("the tap test needs {why}"));
        return None;
    }
    match Namespace::create(name, tap, queues) {
        Ok(ns) => Some(ns),
        Err(why) => {
            skip_or_fail(&format!("the tap test cannot set up its namespace: {why}"));
            None
        }
    }
}

/// A program from a Debian package (`comparison::debian::BUSYBOX`, `BASH`),
/// fetched once and cached under `target/debian/`.  Where it cannot be had:
/// `None` after `skip_or_fail` (a counted skip; a failure naming the package
/// when env `CI` is set).
pub fn debian_program(test: &str, (package, path): (&str, &str)) -> Option<PathBuf> {
    let got = comparison::build::target_dir(&comparison::build::workspace_root())
        .and_then(|target| comparison::debian::ensure_file(&target, package, path));
    match got {
        Ok(file) => Some(file),
        Err(e) => {
            skip_or_fail(&format!("{test} needs Debian package {package}: {e:#}"));
            None
        }
    }
}

/// The lines in which two program outputs differ, as `line N:` with the
/// Linux line and ours (`<none>` past the end of one); empty when equal.
pub fn line_diff(linux: &str, ours: &str) -> String {
    let (l, o): (Vec<&str>, Vec<&str>) = (linux.lines().collect(), ours.lines().collect());
    let mut diff = String::new();
    for i in 0..l.len().max(o.len()) {
        let (a, b) = (l.get(i).copied(), o.get(i).copied());
        if a != b {
            diff.push_str(&format!(
                "line {}:\n  linux: {}\n  ours:  {}\n",
                i + 1,
                a.unwrap_or("<none>"),
                b.unwrap_or("<none>")
            ));
        }
    }
    diff
}

/// The bytes of host<->guest echo round `round`, as `net_echo` makes them.
pub fn echo_message(round: usize) -> Vec<u8> {
    let len = 1 + (round * 97) % 1400;
    (0..len).map(|i| (i * 31 + round * 7) as u8).collect()
}

/// One TCP echo session from the host against a guest `net_echo serve`:
/// `rounds` messages, each echo must match; returns the bytes echoed.
/// `Err((retryable, why))`: errors in the first round are retryable (the
/// guest may not be listening yet).
pub fn echo_session(addr: std::net::SocketAddr, rounds: usize) -> Result<usize, (bool, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| (true, format!("connect {addr}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| (true, e.to_string()))?;
    let mut total = 0;
    for round in 0..rounds {
        let msg = echo_message(round);
        let mut echo = vec![0u8; msg.len()];
        let io = stream
            .write_all(&msg)
            .and_then(|_| stream.read_exact(&mut echo));
        if let Err(e) = io {
            return Err((round == 0, format!("round {round}: {e}")));
        }
        if echo != msg {
            return Err((false, format!("round {round}: echo differs")));
        }
        total += msg.len();
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(total)
}
