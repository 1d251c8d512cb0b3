//! The user-facing command, end to end: `comparison boot` builds, boots
//! under TCG, prints `cpus online: N` and exits 0; a failing run exits
//! non-zero and shows the serial log's tail.  `comparison run` streams only
//! the program's output and exits with its status, on our kernel and on
//! Linux; bad input is refused with a clear message before anything boots.

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
    assert!(
        stdout.lines().any(|l| l == "cpus online: 2"),
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "selfcheck: pass"),
        "stdout:\n{stdout}"
    );
}

#[test]
fn failing_boot_exits_nonzero_with_the_serial_tail() {
    let (ok, stdout, stderr) = comparison(&[
        "boot", "--cores", "1", "--loader", "builtin", "--run", "panic",
    ]);
    assert!(
        !ok,
        "a kernel panic must fail the command\nstdout:\n{stdout}"
    );
    assert!(stderr.contains("FAILED"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("KERNEL PANIC on cpu 0"),
        "the serial tail should show the panic:\n{stderr}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, _, stderr) = comparison(&["boot", "--cores", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--cores"), "stderr:\n{stderr}");
}

/// Path of a userland test program, built for the musl target.
fn user_program(name: &str) -> std::path::PathBuf {
    comparison::userland::build()
        .expect("building userland")
        .program(name)
        .expect("program")
}

fn comparison_status(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_comparison"))
        .args(args)
        .output()
        .expect("running the comparison binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_on_ours_streams_only_the_program_and_exits_with_its_status() {
    let hello = user_program("hello");
    let (code, stdout, stderr) = comparison_status(&[
        "run",
        "--cores",
        "2",
        hello.to_str().unwrap(),
        "--",
        "x",
        "exit=9",
    ]);
    assert_eq!(code, Some(9), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.starts_with("hello: started\nargc: 3\nargv[0]: /init\nargv[1]: x\n"),
        "stdout:\n{stdout}"
    );
    assert!(
        !stdout.contains("[cpu"),
        "kernel log lines leaked into the program output:\n{stdout}"
    );
    assert!(
        !stdout.contains("loader:"),
        "loader lines leaked into the program output:\n{stdout}"
    );
}

#[test]
fn run_with_serial_shows_the_kernel_log_too() {
    let hello = user_program("hello");
    let (code, stdout, _) = comparison_status(&["run", "--serial", hello.to_str().unwrap()]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}");
    assert!(
        stdout.contains("[cpu0]") && stdout.contains("init exit: 0"),
        "stdout:\n{stdout}"
    );
}

/// `run --system linux` and `run` (ours) print the same output and exit
/// with the same status.
#[test]
fn run_on_linux_gives_the_same_output() {
    let hello = user_program("hello");
    let root = comparison::build::workspace_root();
    let target = comparison::build::target_dir(&root).expect("cargo's target directory");
    if let Err(e) = comparison::linux::ensure_kernel(&target) {
        comparison::skip::skip_or_fail(&format!(
            "`run --system linux` needs the Linux kernel image: {e:#}"
        ));
        return;
    }
    let run = |system: &str| {
        comparison_status(&[
            "run",
            "--system",
            system,
            "--cores",
            "2",
            hello.to_str().unwrap(),
            "--",
            "x",
            "exit=9",
        ])
    };
    let (code, linux, stderr) = run("linux");
    assert_eq!(code, Some(9), "stdout:\n{linux}\nstderr:\n{stderr}");
    assert!(
        linux.starts_with("hello: started\nargc: 3\nargv[0]: /init\nargv[1]: x\n"),
        "stdout:\n{linux}"
    );
    assert!(
        !linux.contains("Kernel panic") && !linux.contains('\r'),
        "stdout:\n{linux}"
    );
    let (code, ours, stderr) = run("ours");
    assert_eq!(code, Some(9), "stdout:\n{ours}\nstderr:\n{stderr}");
    assert_eq!(ours, linux, "our kernel's output differs from Linux's");
}

#[test]
fn run_timeout_exits_124() {
    let hello = user_program("hello");
    let (code, _, stderr) = comparison_status(&["run", "--timeout", "0", hello.to_str().unwrap()]);
    assert_eq!(code, Some(124), "stderr:\n{stderr}");
    assert!(stderr.contains("TIMED OUT"), "stderr:\n{stderr}");
}

#[test]
fn run_refuses_bad_input_clearly() {
    let hello = user_program("hello");
    let hello = hello.to_str().unwrap();
    let (code, _, stderr) = comparison_status(&["run", "/nonexistent/program"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("does not exist"), "stderr:\n{stderr}");
    let (code, _, stderr) = comparison_status(&["run", env!("CARGO_MANIFEST_DIR")]);
    assert_eq!(code, Some(1), "a directory is not a program: {stderr}");
    let (code, _, stderr) = comparison_status(&["run", "--file", "nocolon", hello]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HOST_PATH:GUEST_PATH"), "stderr:\n{stderr}");
    let (code, _, stderr) = comparison_status(&["run", "--file", "/etc/hostname:relative", hello]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("absolute"), "stderr:\n{stderr}");
    // Arguments may hold spaces (they go through the initramfs); a bad
    // `--env` or `--dir` is refused before anything boots.
    let (code, _, stderr) = comparison_status(&["run", "--env", "NOEQUALS", hello]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("KEY=VALUE"), "stderr:\n{stderr}");
    let (code, _, stderr) = comparison_status(&["run", "--dir", "/tmp:relative", hello]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("HOST_DIR:GUEST_DIR"), "stderr:\n{stderr}");
    let cargo_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let (code, _, stderr) = comparison_status(&["run", cargo_toml]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not an ELF"), "stderr:\n{stderr}");
}
