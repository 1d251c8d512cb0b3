//! The user-facing command, end to end: `comparison boot` builds, boots
//! under TCG, prints `cpus online: N` and exits 0; a failing run exits
//! non-zero and shows the serial log's tail.

use std::process::Command;

fn comparison(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_comparison"))
        .args(args)
        .output()
        .expect("running the comparison binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn boot_reports_every_cpu_online_and_exits_zero() {
    let (ok, stdout, stderr) = comparison(&["boot", "--cores", "2", "--loader", "builtin"]);
    assert!(ok, "boot failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.lines().any(|l| l == "cpus online: 2"), "stdout:\n{stdout}");
    assert!(stdout.lines().any(|l| l == "selfcheck: pass"), "stdout:\n{stdout}");
}

#[test]
fn failing_boot_exits_nonzero_with_the_serial_tail() {
    let (ok, stdout, stderr) = comparison(&["boot", "--cores", "1", "--loader", "builtin", "--run", "panic"]);
    assert!(!ok, "a kernel panic must fail the command\nstdout:\n{stdout}");
    assert!(stderr.contains("FAILED"), "stderr:\n{stderr}");
    assert!(stderr.contains("KERNEL PANIC on cpu 0"), "the serial tail should show the panic:\n{stderr}");
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, _, stderr) = comparison(&["boot", "--cores", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--cores"), "stderr:\n{stderr}");
}
