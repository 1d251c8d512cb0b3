//! Real programs nobody on the team wrote: Debian's `busybox-static` and
//! `bash-static` (glibc, static, non-PIE), fetched with apt and cached
//! (`comparison::debian`), run a shell battery (`tests/shell_battery.sh`:
//! echo/printf, variables, arithmetic, loops, functions, pipes,
//! redirections, here-docs, subshells, `$(...)`, exit statuses, traps,
//! background jobs, find/sort/sed/awk/grep/wc/tar/gzip round trips in /tmp)
//! on Linux and on our kernel, in the same VM; the outputs must be equal
//! line by line and the exit statuses equal (as `differential.rs` does for
//! our own test programs).
//!
//! PID 1 is bash-static in both cases (busybox would take PID 1's `/init`
//! name as its `init` applet): it runs the battery itself, or `exec`s
//! `busybox sh` on it through a two-line wrapper written at test time.
//! Both also run with the file system in the user-mode server
//! (`structure=servers`).  Where a package or Linux cannot be had the test prints SKIPPED, or fails
//! naming it when env `CI` is set.

use comparison::run::{RunResult, Structure, System, Verdict};
use integration_tests::*;
use std::path::PathBuf;

const TIMEOUT: u64 = 300;

/// The battery and a wrapper that runs it under busybox sh, as host files.
fn scripts() -> (PathBuf, PathBuf) {
    let battery = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shell_battery.sh");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("real_programs");
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    let wrapper = dir.join("busybox-battery.sh");
    std::fs::write(&wrapper, "exec /bin/busybox sh /battery.sh\n").expect("writing the wrapper");
    (battery, wrapper)
}

/// Linux's systems, or `None` after saying why (a failure in CI).
fn linux_or_skip(test: &str) -> Option<&'static comparison::run::Systems> {
    match linux() {
        Ok(l) => Some(l),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("{test}: the Debian Linux kernel cannot be had: {reason}")
        }
        Err(reason) => {
            println!("SKIPPED {test}: the Debian Linux kernel cannot be had here: {reason}");
            None
        }
    }
}

/// Runs bash-static as PID 1 with `args` and the battery files on
/// `cores` vCPUs, on Linux and on ours (in `structure`), and compares the
/// outputs.
fn battery_on_both(test: &str, cores: usize, args: &[&str]) {
    battery_in(test, cores, args, Structure::Monolithic);
}

fn battery_in(test: &str, cores: usize, args: &[&str], structure: Structure) {
    let Some(bash) = debian_program(test, comparison::debian::BASH) else {
        return;
    };
    let Some(busybox) = debian_program(test, comparison::debian::BUSYBOX) else {
        return;
    };
    let Some(linux) = linux_or_skip(test) else {
        return;
    };
    let (battery, wrapper) = scripts();
    let files = [
        (busybox, "/bin/busybox"),
        (bash.clone(), "/bin/bash"),
        (battery, "/battery.sh"),
        (wrapper, "/busybox-battery.sh"),
    ];
    let on_linux = run_path(
        linux,
        System::Linux,
        &bash,
        cores,
        args,
        &files,
        TIMEOUT,
        LockMode::PerCpu,
    );
    check_sane(&on_linux, &format!("{test} on Linux"));
    let on_ours = run_structure(&bash, cores, args, &files, TIMEOUT, structure, None);
    let diff = line_diff(&on_linux.output, &on_ours.output);
    check_run(
        &on_ours,
        diff.is_empty(),
        &format!("{test} on {cores} vCPUs ({structure:?}): outputs differ from Linux:\n{diff}"),
    );
    check_run(
        &on_ours,
        on_ours.verdict == on_linux.verdict,
        &format!(
            "{test}: status differs: linux {:?}, ours {:?}",
            on_linux.verdict, on_ours.verdict
        ),
    );
}

/// The reference run must itself be sane: it exited 0 and reached the end.
fn check_sane(result: &RunResult, what: &str) {
    check_run(
        result,
        result.verdict == Verdict::Exited(0),
        &format!("{what}: the battery did not exit 0"),
    );
    check_run(
        result,
        result.output.lines().any(|l| l.trim_end() == "== done"),
        &format!("{what}: the battery did not reach its end"),
    );
}

#[test]
fn battery_under_bash() {
    battery_on_both("battery_under_bash", 2, &["/battery.sh"]);
}

#[test]
fn battery_under_busybox_sh() {
    battery_on_both("battery_under_busybox_sh", 2, &["/busybox-battery.sh"]);
}

#[test]
fn battery_under_bash_1_cpu() {
    battery_on_both("battery_under_bash_1_cpu", 1, &["/battery.sh"]);
}

/// The same battery with the file system and AF_INET in the user-mode
/// servers (`structure=servers`): a real shell's fork/exec/pipe/redirect
/// mix goes through delegation, and must still print what Linux prints.
#[test]
fn battery_under_bash_servers() {
    battery_in(
        "battery_under_bash_servers",
        2,
        &["/battery.sh"],
        Structure::Servers,
    );
}

#[test]
fn battery_under_busybox_sh_servers() {
    battery_in(
        "battery_under_busybox_sh_servers",
        1,
        &["/busybox-battery.sh"],
        Structure::Servers,
    );
}

/// The checker finds differences (so the tests above can fail).
#[test]
fn line_diff_reports_differences() {
    assert_eq!(line_diff("a\nb\n", "a\nb\n"), "");
    assert!(line_diff("a\nb\n", "a\nc\n").contains("line 2"));
    assert!(line_diff("a\n", "a\nextra\n").contains("<none>"));
}
