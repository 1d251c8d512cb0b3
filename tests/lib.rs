//! Shared helpers of the QEMU integration tests.
//!
//! Owns: building the bare-metal binaries once per test binary, booting the
//! kernel with a command line on N vCPUs under TCG (never KVM: DESIGN.md §7),
//! and assertions that print the serial log's tail when they fail.  Tests go
//! through the same `comparison` library as the CLI, so they boot exactly
//! what users boot.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::build::Artifacts;
use comparison::qemu::{Accel, Ending, RunOutcome, VmConfig};
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
    check(outcome, outcome.ending == Ending::GuestExit(code), &format!("expected guest exit code {code}"));
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
