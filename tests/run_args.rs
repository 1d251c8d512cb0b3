//! `comparison run` as a user runs real programs: argv and the environment
//! of any shape reach PID 1 byte for byte on both systems (through
//! `/.init/argv` and `/.init/envp` in the initramfs), `--env` and `--dir`
//! work, a malformed argv file is a clear kernel error, PID 1 starts with
//! default signal dispositions and an empty mask on both systems (SIGPIPE
//! kills a writer to a closed pipe), and `--nic` works with Linux too.
//!
//! The Linux side needs Debian's kernel: where it cannot be had the Linux
//! cases say SKIPPED, and fail instead when `CI` is set.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::image::Module;
use comparison::qemu::{Nic, RunOutcome};
use comparison::run::{Echo, RunExtras, RunRequest, RunResult, System, Systems, Verdict};
use integration_tests::*;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TIMEOUT: u64 = 180;

/// Linux, or `None` after printing SKIPPED (a failure under `CI`).
fn linux_or_skip(what: &str) -> Option<&'static Systems> {
    match linux() {
        Ok(linux) => Some(linux),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("{what}: the Debian Linux kernel is required under CI: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "SKIPPED Linux side of {what}: the Debian kernel cannot be had here: {reason}"
            );
            None
        }
    }
}

fn run(
    systems: &Systems,
    system: System,
    name: &str,
    args: &[&str],
    extras: &RunExtras,
    nic: Option<Nic>,
) -> RunResult {
    let mut vm = vm(1, TIMEOUT);
    vm.nic = nic;
    let request = RunRequest {
        system,
        program: program(name),
        files: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks: LockMode::PerCpu,
        extra_cmdline: String::new(),
        vm,
        echo: Echo::Quiet,
    };
    comparison::run::run_with(systems, &request, extras).expect("running the program")
}

/// The two outputs are identical, line by line (else the differing lines).
fn expect_same(linux: &RunResult, ours: &RunResult, what: &str) {
    let diff = line_diff(&linux.output, &ours.output);
    check_run(
        ours,
        diff.is_empty(),
        &format!("{what}: outputs differ from Linux:\n{diff}"),
    );
}

/// A host tree with a nested directory, an empty one, modes and a symlink.
fn make_tree() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("run-args-tree-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub/empty")).unwrap();
    std::fs::create_dir_all(dir.join("with space")).unwrap();
    std::fs::write(dir.join("sub/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("sub/empty"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(dir.join("with space/é.txt"), "données\n").unwrap();
    std::fs::write(
        dir.join("big.bin"),
        (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/run.sh", dir.join("link")).unwrap();
    dir
}

const ARGS: &[&str] = &[
    "a b",
    "",
    "x\"y",
    "é ü 日本",
    "tab\there",
    "--",
    "-x",
    "back\\slash",
];

#[test]
fn argv_env_and_dir_reach_pid1_byte_for_byte_on_both_systems() {
    let tree = make_tree();
    let extras = RunExtras {
        env: vec![
            "TERM=dumb".into(),
            "ARGV_TREE=/data".into(),
            "EMPTY=".into(),
            "SPACED=a b  c".into(),
        ],
        dirs: vec![(tree.clone(), "/data".into())],
        argv0: Some("my prog".into()),
        ..Default::default()
    };
    let ours = run(ours(), System::Ours, "argv", ARGS, &extras, None);
    expect_pass(&ours, "argv");
    let expected_head = [
        "argc: 9",
        "argv[0]: \"my prog\"",
        "argv[1]: \"a b\"",
        "argv[2]: \"\"",
        "argv[3]: \"x\\\"y\"",
        "argv[4]: \"é ü 日本\"",
        "argv[5]: \"tab\\there\"",
        "argv[6]: \"--\"",
        "argv[7]: \"-x\"",
        "argv[8]: \"back\\\\slash\"",
        "envc: 6",
        "env[0]: \"HOME=/\"",
        "env[1]: \"TERM=dumb\"",
        "env[2]: \"PATH=/bin:/sbin:/usr/bin:/usr/sbin\"",
        "env[3]: \"ARGV_TREE=/data\"",
        "env[4]: \"EMPTY=\"",
        "env[5]: \"SPACED=a b  c\"",
        "/.init removed before start: true",
        "tree: \"/data/big.bin\" file 644 100000 bytes sum 12492401",
        "tree: \"/data/link\" symlink -> \"sub/run.sh\"",
        "tree: \"/data/sub\" dir 755",
        "tree: \"/data/sub/empty\" dir 700",
        "tree: \"/data/sub/run.sh\" file 750 18 bytes sum 1370",
        "tree: \"/data/with space\" dir 755",
        "tree: \"/data/with space/é.txt\" file 644 9 bytes sum 1021",
        "argv: pass",
    ];
    let got: Vec<&str> = ours.output.lines().collect();
    check_run(
        &ours,
        got == expected_head,
        &format!("ours: expected exactly\n{}", expected_head.join("\n")),
    );
    if let Some(linux) = linux_or_skip("argv") {
        let on_linux = run(linux, System::Linux, "argv", ARGS, &extras, None);
        expect_pass(&on_linux, "argv");
        expect_same(
            &on_linux,
            &ours,
            "argv with spaces, empty, quotes, UTF-8, --env, --dir",
        );
    }
    let _ = std::fs::remove_dir_all(&tree);
}

#[test]
fn old_callers_without_extras_get_the_default_environment() {
    let ours = run(
        ours(),
        System::Ours,
        "argv",
        &["one", "two words"],
        &RunExtras::default(),
        None,
    );
    expect_pass(&ours, "argv");
    for line in [
        "argc: 3",
        "argv[2]: \"two words\"",
        "envc: 3",
        "env[1]: \"TERM=linux\"",
    ] {
        check_run(
            &ours,
            ours.output.lines().any(|l| l == line),
            &format!("expected `{line}`"),
        );
    }
}

fn boot_with_initramfs(cmdline: &str, bytes: Vec<u8>) -> RunOutcome {
    let request = BootRequest {
        loader: LoaderChoice::Builtin,
        cmdline: cmdline.into(),
        modules: vec![Module {
            guest_path: "boot/initramfs.cpio".into(),
            cmdline: "initramfs".into(),
            data: bytes,
        }],
        vm: vm(1, 60),
    };
    boot::boot(artifacts(), &request).expect("running QEMU")
}

fn archive_with_argv(argv: &[u8]) -> Vec<u8> {
    let hello = std::fs::read(program("hello")).unwrap();
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("init", 0o755, &hello);
    writer.add_dir(".init", 0o755);
    writer.add_file(".init/argv", 0o644, argv);
    writer.finish()
}

fn expect_argv_error(out: &RunOutcome, message: &str) {
    check(
        out,
        out.has_line(&format!("initramfs: error: /.init/argv: {message}")),
        &format!("expected `initramfs: error: /.init/argv: {message}`"),
    );
    check(
        out,
        !out.has_line("KERNEL PANIC"),
        "a malformed argv file must not panic the kernel",
    );
    expect_guest_exit(out, 1);
}

#[test]
fn malformed_argv_file_is_a_clear_kernel_error() {
    expect_argv_error(
        &boot_with_initramfs("run=init", archive_with_argv(b"/init\0unterminated")),
        "the last entry lacks its terminating NUL byte",
    );
    expect_argv_error(
        &boot_with_initramfs("run=init", archive_with_argv(b"")),
        "no entries (argv[0] at least is needed)",
    );
    let both = boot_with_initramfs("run=init -- extra", archive_with_argv(b"/init\0"));
    check(
        &both,
        both.has_line("initramfs: error: /.init/argv and arguments after `--`"),
        "argv file and `--` words together must be refused",
    );
    expect_guest_exit(&both, 1);
}

#[test]
fn pid1_starts_with_default_signals_on_both_systems() {
    let ours = run(
        ours(),
        System::Ours,
        "sigstart",
        &[],
        &RunExtras::default(),
        None,
    );
    expect_pass(&ours, "sigstart");
    check_run(
        &ours,
        ours.output
            .contains("child writing to a closed pipe: killed by SIGPIPE"),
        "SIGPIPE must kill the writer on ours",
    );
    let Some(linux) = linux_or_skip("sigstart") else {
        return;
    };
    let on_linux = run(
        linux,
        System::Linux,
        "sigstart",
        &[],
        &RunExtras::default(),
        None,
    );
    expect_pass(&on_linux, "sigstart");
    for line in [
        "ignored at start: none",
        "blocked at start: none",
        "/proc/self/status SigIgn: 0000000000000000",
        "/proc/self/status SigBlk: 0000000000000000",
        "child writing to a closed pipe: killed by SIGPIPE",
    ] {
        check_run(
            &on_linux,
            on_linux.output.lines().any(|l| l == line),
            &format!("Linux: expected `{line}`"),
        );
    }
    // Lines both systems print must agree (ours may lack /proc/self/status).
    let common = |r: &RunResult| -> Vec<String> {
        r.output
            .lines()
            .filter(|l| !l.starts_with("/proc/self/status"))
            .map(str::to_string)
            .collect()
    };
    check_run(
        &ours,
        common(&ours) == common(&on_linux),
        &format!("signal state differs from Linux:\n{}", on_linux.output),
    );
}

#[test]
fn linux_results_carry_cpu_vulnerability_lines() {
    let Some(linux) = linux_or_skip("vulnerabilities") else {
        return;
    };
    let result = run(
        linux,
        System::Linux,
        "hello",
        &[],
        &RunExtras::default(),
        None,
    );
    expect_exit(&result, 0);
    let vulns = comparison::linux::vulnerabilities(&result.outcome.serial);
    check_run(
        &result,
        vulns.iter().any(|v| v.starts_with("spectre_v2: ")),
        &format!("expected a spectre_v2 line, got {vulns:?}"),
    );
    check_run(
        &result,
        !result.output.contains("linux-init: vulnerability"),
        "vulnerability lines must not reach the program's output",
    );
}

const ROUNDS: usize = 10;

#[test]
fn linux_with_nic_serves_a_tcp_port_the_host_reaches() {
    let Some(linux) = linux_or_skip("--nic user with Linux") else {
        return;
    };
    let host_port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let guest_port = 8080u16;
    let addr = SocketAddr::from(([127, 0, 0, 1], host_port));
    // QEMU accepts on the forwarded port before the guest listens; a
    // refused or reset first round is retried until the guest's server is up.
    let client = std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            match echo_session(addr, ROUNDS) {
                Ok(total) => return Ok(total),
                Err((true, _)) if start.elapsed() < Duration::from_secs(150) => {
                    std::thread::sleep(Duration::from_millis(300))
                }
                Err((_, why)) => return Err(why),
            }
        }
    });
    let result = run(
        linux,
        System::Linux,
        "net_echo",
        &["serve", &guest_port.to_string(), "1"],
        &RunExtras::default(),
        Some(Nic::User {
            hostfwd: vec![(host_port, guest_port)],
            guestfwd: Vec::new(),
        }),
    );
    let client = client.join().expect("client thread");
    let expected: usize = (0..ROUNDS).map(|r| echo_message(r).len()).sum();
    check_run(
        &result,
        client.as_ref().is_ok_and(|&n| n == expected),
        &format!("host client: {client:?}"),
    );
    expect_exit(&result, 0);
    check_run(
        &result,
        result
            .output
            .contains(&format!("net_echo: served 0 bytes={expected}")),
        "expected the guest's `served` line",
    );
    check_run(
        &result,
        result.verdict == Verdict::Exited(0),
        "Linux must exit 0",
    );
}
