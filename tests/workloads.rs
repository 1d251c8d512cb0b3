//! The shared workload suite (`wis`, comparison/WORKLOADS.md) on our kernel
//! under TCG: every file and system workload runs for 100 ms with 1 and 2
//! workers (threads, and processes for 2) and must print exactly one
//! well-formed result line with ops > 0 and exit 0.  The network workloads
//! run the same way on Linux (same VM) and on our kernel (which has
//! sockets: a `socket` failure is a test failure).  Not a timing test: no rate is compared with
//! anything.  Also checks, on the host, that bad arguments give clear
//! errors.

use comparison::run::System;
use integration_tests::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const TIMEOUT: u64 = 300;

/// `wis`, built once for this test binary.
fn wis() -> &'static PathBuf {
    static WIS: OnceLock<PathBuf> = OnceLock::new();
    WIS.get_or_init(|| comparison::workloads::build_workloads().expect("building the workloads"))
}

/// `wis --list`, run on the host (the binary is a static Linux program).
fn names() -> Vec<String> {
    comparison::workloads::list_workloads(wis()).expect("wis --list on the host")
}

/// One result line, checked field by field against the documented format:
/// `{"workload":N,"mode":M,"workers":T,"ops":N,"seconds":S,"ops_per_sec":X}`
/// optionally with `,"unit":"bytes"` last.  Returns (workload, ops) or why not.
fn parse_line(line: &str, mode: &str, workers: usize) -> Result<(String, u64), String> {
    let body = line
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .ok_or("not a JSON object")?;
    let fields: Vec<(&str, &str)> = body
        .split(',')
        .map(|f| f.split_once(':').ok_or("a field without `:`"))
        .collect::<Result<_, _>>()?;
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let mut want = vec![
        "\"workload\"",
        "\"mode\"",
        "\"workers\"",
        "\"ops\"",
        "\"seconds\"",
        "\"ops_per_sec\"",
    ];
    if keys.len() == 7 {
        want.push("\"unit\"");
        if fields[6].1 != "\"bytes\"" {
            return Err("unit is not \"bytes\"".into());
        }
    }
    if keys != want {
        return Err(format!("keys {keys:?}, expected {want:?}"));
    }
    let name = fields[0]
        .1
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or("workload is not a string")?;
    if fields[1].1 != format!("\"{mode}\"") {
        return Err(format!("mode {} instead of {mode}", fields[1].1));
    }
    if fields[2].1 != workers.to_string() {
        return Err(format!("workers {} instead of {workers}", fields[2].1));
    }
    let ops: u64 = fields[3].1.parse().map_err(|_| "ops is not an integer")?;
    let seconds: f64 = fields[4].1.parse().map_err(|_| "seconds is not a number")?;
    let rate: f64 = fields[5]
        .1
        .parse()
        .map_err(|_| "ops_per_sec is not a number")?;
    if ops == 0 {
        return Err("ops is 0".into());
    }
    if !(seconds > 0.05 && seconds < 60.0) {
        return Err(format!(
            "seconds {seconds} is not about the 0.1 s asked for"
        ));
    }
    if rate.is_nan()
        || rate <= 0.0
        || ((rate * seconds) - ops as f64).abs() > ops as f64 * 0.01 + 1.0
    {
        return Err(format!("ops_per_sec {rate} does not match ops / seconds"));
    }
    Ok((name.to_string(), ops))
}

/// The network workloads (they need sockets).
fn is_network(name: &str) -> bool {
    name.starts_with("tcp_") || name.starts_with("udp_")
}

/// The workloads that start programs (`program_workloads_on_both`).
fn starts_programs(name: &str) -> bool {
    name == "exec_static" || name == "spawn_shell"
}

/// Run the `network` (or all other) workloads on `system` with `workers`
/// workers on as many vCPUs; each must print its line.  Returns false,
/// without checking, only if Linux cannot be had (after `skip_or_fail`).
fn workloads_run(system: System, network: bool, workers: usize, procs: bool) -> bool {
    let names: Vec<String> = names()
        .into_iter()
        .filter(|n| is_network(n) == network && !starts_programs(n))
        .collect();
    if network {
        assert_eq!(
            names,
            ["tcp_rr", "tcp_stream", "tcp_connect", "udp_rr"],
            "the network workloads"
        );
    } else {
        assert!(names.len() >= 16, "wis --list names only {names:?}");
    }
    let list = names.join(",");
    let threads = workers.to_string();
    let systems = match system {
        System::Ours => ours(),
        System::Linux => match linux_or_skip("the workloads on Linux") {
            Some(linux) => linux,
            None => return false,
        },
    };
    let mut args = vec![
        list.as_str(),
        "--threads",
        &threads,
        "--warmup-ms",
        "20",
        "--ms",
        "100",
    ];
    if procs {
        args.push("--procs");
    }
    let result = run_path(
        systems,
        system,
        wis(),
        workers,
        &args,
        &[],
        TIMEOUT,
        LockMode::PerCpu,
    );
    expect_exit(&result, 0);
    let mode = if procs { "procs" } else { "threads" };
    let lines: Vec<&str> = result
        .output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut seen = Vec::new();
    for line in &lines {
        match parse_line(line, mode, workers) {
            Ok((name, _)) => seen.push(name),
            Err(why) => check_run(&result, false, &format!("bad result line `{line}`: {why}")),
        }
    }
    check_run(
        &result,
        seen == names,
        &format!("expected one line per workload, in order: {names:?}, got {seen:?}"),
    );
    true
}

#[test]
fn every_workload_with_1_thread() {
    workloads_run(System::Ours, false, 1, false);
}

#[test]
fn every_workload_with_2_threads() {
    workloads_run(System::Ours, false, 2, false);
}

#[test]
fn every_workload_with_2_processes() {
    workloads_run(System::Ours, false, 2, true);
}

#[test]
fn network_workloads_on_linux() {
    for (workers, procs) in [(1, false), (2, false), (2, true)] {
        if !workloads_run(System::Linux, true, workers, procs) {
            return;
        }
    }
}

#[test]
fn network_workloads_on_ours() {
    for (workers, procs) in [(1, false), (2, false), (2, true)] {
        assert!(workloads_run(System::Ours, true, workers, procs));
    }
}

/// exec_static and spawn_shell (`/bin/sh` is Debian's busybox-static, as
/// the suite puts it) on our kernel and on Linux, with 1 and 2 threads and
/// 2 processes: one well-formed line each, exit 0.
#[test]
fn program_workloads_on_both() {
    let Some(busybox) = debian_program("program_workloads_on_both", comparison::debian::BUSYBOX)
    else {
        return;
    };
    let names: Vec<String> = names().into_iter().filter(|n| starts_programs(n)).collect();
    assert_eq!(
        names,
        ["exec_static", "spawn_shell"],
        "the program workloads"
    );
    let list = names.join(",");
    let files = [(busybox, "/bin/sh")];
    let mut systems = vec![(System::Ours, ours())];
    match linux() {
        Ok(linux) => systems.push((System::Linux, linux)),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("the Debian Linux kernel cannot be had: {reason}")
        }
        Err(reason) => {
            println!("SKIPPED the Linux side: the Debian kernel cannot be had here: {reason}")
        }
    }
    for (system, systems) in systems {
        for (workers, procs) in [(1, false), (2, false), (2, true)] {
            let threads = workers.to_string();
            let mut args = vec![
                list.as_str(),
                "--threads",
                &threads,
                "--warmup-ms",
                "20",
                "--ms",
                "100",
            ];
            if procs {
                args.push("--procs");
            }
            let result = run_path(
                systems,
                system,
                wis(),
                workers,
                &args,
                &files,
                TIMEOUT,
                LockMode::PerCpu,
            );
            expect_exit(&result, 0);
            let mode = if procs { "procs" } else { "threads" };
            let seen: Vec<String> = result
                .output
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|line| match parse_line(line, mode, workers) {
                    Ok((name, _)) => name,
                    Err(why) => {
                        check_run(&result, false, &format!("bad result line `{line}`: {why}"));
                        unreachable!()
                    }
                })
                .collect();
            check_run(
                &result,
                seen == names,
                &format!("{}: expected {names:?}, got {seen:?}", system.name()),
            );
        }
    }
}

/// The parser above rejects what it must (so the tests above can fail).
#[test]
fn result_line_checker_rejects_bad_lines() {
    let good = r#"{"workload":"getppid","mode":"threads","workers":2,"ops":100,"seconds":0.1,"ops_per_sec":1000.0}"#;
    assert_eq!(
        parse_line(good, "threads", 2),
        Ok(("getppid".to_string(), 100))
    );
    let bytes = r#"{"workload":"seq_read","mode":"procs","workers":1,"ops":6553600,"seconds":0.1,"ops_per_sec":65536000.0,"unit":"bytes"}"#;
    assert!(parse_line(bytes, "procs", 1).is_ok());
    for bad in [
        r#"{"workload":"getppid","mode":"threads","workers":2,"ops":0,"seconds":0.1,"ops_per_sec":0.0}"#,
        r#"{"workload":"getppid","mode":"procs","workers":2,"ops":100,"seconds":0.1,"ops_per_sec":1000.0}"#,
        r#"{"workload":"getppid","mode":"threads","workers":1,"ops":100,"seconds":0.1,"ops_per_sec":1000.0}"#,
        r#"{"workload":"getppid","mode":"threads","workers":2,"ops":100,"seconds":0.1,"ops_per_sec":5.0}"#,
        r#"{"workload":"getppid","mode":"threads","workers":2,"ops":100,"seconds":0.1}"#,
        r#"{"workload":"x","mode":"threads","workers":2,"ops":100,"seconds":0.1,"ops_per_sec":1000.0,"unit":"ops"}"#,
        "wis: getppid: worker 0: sched_setaffinity to CPU 0 failed: ENOSYS",
    ] {
        assert!(parse_line(bad, "threads", 2).is_err(), "accepted `{bad}`");
    }
}

/// Bad arguments exit 2, too many workers exit 1, each with a message on
/// stderr and nothing on stdout (run on the host).
#[test]
fn bad_arguments_give_clear_errors() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let too_many = (cpus + 1).to_string();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["nosuch", "--threads", "1"], 2, "unknown workload"),
        (vec!["getppid"], 2, "--threads T is required"),
        (vec!["getppid", "--threads", "0"], 2, "outside"),
        (vec!["getppid", "--threads", "x"], 2, "not a number"),
        (
            vec!["getppid", "--threads", "1", "--bogus"],
            2,
            "unknown option",
        ),
        (
            vec!["getppid", "--threads", "1", "--dir", "relative"],
            2,
            "absolute",
        ),
        (
            vec!["getppid,nosuch", "--threads", "1"],
            2,
            "unknown workload `nosuch`",
        ),
        (
            vec!["getppid", "--threads", &too_many, "--ms", "10"],
            1,
            "may not use",
        ),
    ];
    for (args, code, message) in cases {
        let out = Command::new(wis())
            .args(&args)
            .output()
            .expect("running wis");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "wis {args:?}: stderr {stderr}"
        );
        assert!(
            stderr.contains(message),
            "wis {args:?}: expected `{message}` in stderr: {stderr}"
        );
        assert!(out.stdout.is_empty(), "wis {args:?} printed on stdout");
    }
}
