//! `comparison suite` end to end: a short suite (two workloads, 1 and 2
//! cores, ours and Linux, one run, 200 ms) under TCG writes results.json
//! with sane numbers for every cell, results.csv, report.md and the SVG
//! and PNG plots, and merges an imported system's records; both workloads
//! of a (system, cores) share one boot; Ctrl-C (SIGINT) after the first
//! result stops the suite and leaves every file for what finished; a
//! workload that outlives `--timeout` is reported as timed out and the
//! next runs in a fresh boot; bad arguments and bad import files are
//! refused before anything boots; `ours-servers` boots with the file
//! server and its per-structure table is written, and a workload that does
//! not apply (ipc_call on Linux) is n/a, neither a number nor a failure.

use std::path::{Path, PathBuf};
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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "comparison-suite-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn short_suite_writes_results_report_and_plots() {
    let dir = scratch("e2e");
    let out = dir.join("out");
    // Another system's results, as a microkernel design would feed them in.
    let import = dir.join("mk.json");
    std::fs::write(
        &import,
        r#"[{"system":"mk","workload":"getppid","mode":"threads","cores":1,"accel":"tcg","ops_per_sec":1000.0},
            {"system":"mk","workload":"getppid","mode":"threads","cores":2,"accel":"tcg","ops_per_sec":1500.0}]"#,
    )
    .unwrap();
    let (ok, stdout, stderr) = comparison(&[
        "suite",
        "--systems",
        "ours,linux",
        "--cores",
        "1,2",
        "--workloads",
        "getppid,open_close_private",
        "--runs",
        "1",
        "--ms",
        "200",
        "--accel",
        "tcg",
        "--out",
        out.to_str().unwrap(),
        "--import",
        import.to_str().unwrap(),
    ]);
    assert!(ok, "suite failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("[8/8]"),
        "progress lines count the runs:\n{stderr}"
    );
    assert!(
        stdout.contains("| getppid | threads | ops/s | 2 |"),
        "summary table printed:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("report: {}", out.join("report.md").display())),
        "{stdout}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&read(&out.join("results.json"))).expect("results.json is JSON");
    let records = json.as_array().expect("results.json is an array");
    assert_eq!(records.len(), 10, "8 measured + 2 imported records");
    for system in ["ours", "linux"] {
        for workload in ["getppid", "open_close_private"] {
            for cores in [1u64, 2] {
                let r = records
                    .iter()
                    .find(|r| {
                        r["system"] == system && r["workload"] == workload && r["cores"] == cores
                    })
                    .unwrap_or_else(|| panic!("no record for {system} {workload} {cores} cores"));
                let rate = r["ops_per_sec"].as_f64().unwrap();
                assert!(rate > 0.0 && rate.is_finite(), "{r}");
                assert_eq!(r["workers"], cores);
                assert_eq!(r["accel"], "tcg");
                assert_eq!(r["cpu_model"], "max");
                assert_eq!(r["mode"], "threads");
                assert!(r["qemu_version"].as_str().unwrap().contains("QEMU"), "{r}");
                assert!(!r["commit"].as_str().unwrap().is_empty());
                assert!(!r["kernel_options"].as_str().unwrap().is_empty());
            }
        }
    }
    let csv = read(&out.join("results.csv"));
    assert_eq!(csv.lines().count(), 11, "header + 10 rows:\n{csv}");

    let report = read(&out.join("report.md"));
    for needle in [
        "## Accelerator: tcg",
        "### getppid (threads, ops/s)",
        "### open_close_private",
        "ours/linux",
        "eff. ours",
        "mk median",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    assert!(!report.contains("Runs without a result"), "{report}");
    assert!(
        report.contains("- boots made: 4; 4 boots planned for 8 measurements"),
        "two workloads per boot:\n{report}"
    );
    assert!(
        stderr.contains("suite: 8 of 8 measurements in 4 boots"),
        "{stderr}"
    );
    // Each boot ran both workloads: one at place 0, the other at place 1.
    for system in ["ours", "linux"] {
        for cores in [1u64, 2] {
            let mut places: Vec<u64> = records
                .iter()
                .filter(|r| r["system"] == system && r["cores"] == cores)
                .map(|r| {
                    r["position"]
                        .as_u64()
                        .expect("a measured record has a position")
                })
                .collect();
            places.sort_unstable();
            assert_eq!(places, [0, 1], "{system} {cores} cores");
        }
    }
    for plot in [
        "tcg-getppid-threads.svg",
        "tcg-open_close_private-threads.svg",
        "tcg-summary.svg",
    ] {
        let svg = read(&out.join("plots").join(plot));
        assert!(
            svg.contains("<svg") && svg.trim_end().ends_with("</svg>"),
            "{plot} is not an SVG"
        );
        assert!(
            svg.contains("ours") && svg.contains("linux"),
            "{plot} lacks a system"
        );
    }
    assert!(
        read(&out.join("plots/tcg-getppid-threads.svg")).contains("mk"),
        "imported system is plotted"
    );
    for plot in ["tcg-getppid-threads.png", "tcg-summary.png"] {
        assert_png(&out.join("plots").join(plot));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The file is a PNG of the plots' size that decodes.
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut reader = png::Decoder::new(&bytes[..])
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
    let info = reader.info();
    assert_eq!(
        (info.width, info.height),
        comparison::suite::plot::SIZE,
        "{}",
        path.display()
    );
}

#[test]
fn ctrl_c_keeps_what_was_measured() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = scratch("ctrlc");
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_comparison"))
        .args([
            "suite",
            "--systems",
            "ours",
            "--cores",
            "1",
            "--workloads",
            "getppid,stat_private",
            "--runs",
            "20",
            "--ms",
            "200",
            "--accel",
            "tcg",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the suite");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    // Wait for the first result, then press Ctrl-C.
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("the suite ended before its first result:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("[1/40]") {
            break;
        }
    }
    // SAFETY: kill only sends a signal to our own child process.
    let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(killed, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit status\nstderr:\n{seen}");
    assert!(seen.contains("Ctrl-C"), "{seen}");
    assert!(seen.contains("interrupted"), "{seen}");
    assert!(stdout.contains("report: "), "summary printed:\n{stdout}");

    let json: serde_json::Value =
        serde_json::from_str(&read(&out.join("results.json"))).expect("results.json is JSON");
    let records = json.as_array().expect("an array");
    assert!(
        !records.is_empty() && records.len() < 40,
        "{} records",
        records.len()
    );
    for r in records {
        assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(
        read(&out.join("results.csv")).lines().count(),
        records.len() + 1
    );
    let report = read(&out.join("report.md"));
    assert!(
        report.contains("**Interrupted:** stopped by Ctrl-C after"),
        "{report}"
    );
    assert!(
        !report.contains("Runs without a result"),
        "the killed run is no failure:\n{report}"
    );
    assert!(read(&out.join("plots/tcg-getppid-threads.svg")).contains("</svg>"));
    assert_png(&out.join("plots/tcg-getppid-threads.png"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each workload's interval (8 s) is longer than `--timeout 4`, so the
/// watchdog kills each boot while its first workload runs: that workload
/// is reported as timed out, the other one runs in a fresh boot (and times
/// out too); the suite goes on to the end and exits 1.
#[test]
fn a_workload_that_outlives_the_timeout_fails_alone() {
    let dir = scratch("timeout");
    let out = dir.join("out");
    let (ok, stdout, stderr) = comparison(&[
        "suite",
        "--systems",
        "ours",
        "--cores",
        "1",
        "--workloads",
        "getppid,page_fault",
        "--runs",
        "1",
        "--ms",
        "8000",
        "--warmup-ms",
        "0",
        "--timeout",
        "4",
        "--accel",
        "tcg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok,
        "the suite reported success\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report = read(&out.join("report.md"));
    assert!(report.contains("Runs without a result"), "{report}");
    for w in ["getppid", "page_fault"] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("- ours {w} 1 cores threads run 1: ")))
            .unwrap_or_else(|| panic!("no failure line for {w}:\n{report}"));
        assert!(
            line.contains("timed out") && line.contains("while it ran"),
            "{line}"
        );
    }
    assert!(
        report.contains("- boots made: 2;"),
        "the second workload got a fresh boot:\n{report}"
    );
    assert!(stderr.contains("go to a fresh boot"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn servers_structure_and_workloads_that_do_not_apply() {
    let dir = scratch("servers");
    let out = dir.join("out");
    let (ok, stdout, stderr) = comparison(&[
        "suite",
        "--systems",
        "ours,ours-servers,linux",
        "--cores",
        "1",
        "--workloads",
        "getppid,ipc_call,open_close_private,mmap_read_shared",
        "--runs",
        "1",
        "--ms",
        "100",
        "--warmup-ms",
        "50",
        "--accel",
        "tcg",
        "--out",
        out.to_str().unwrap(),
    ]);
    // n/a is not a failure: the suite succeeds.
    assert!(ok, "suite failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&read(&out.join("results.json"))).expect("results.json is JSON");
    let records = json.as_array().expect("an array");
    let find = |system: &str, workload: &str| {
        records
            .iter()
            .find(|r| r["system"] == system && r["workload"] == workload)
    };
    for system in ["ours", "ours-servers"] {
        for workload in ["getppid", "ipc_call", "open_close_private"] {
            let r = find(system, workload)
                .unwrap_or_else(|| panic!("no record for {system} {workload}:\n{stderr}"));
            assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    // ours-servers booted our kernel with the file server.
    let servers = find("ours-servers", "open_close_private").unwrap();
    assert!(
        servers["kernel_options"]
            .as_str()
            .unwrap()
            .contains("structure=servers"),
        "{servers}"
    );
    assert!(!find("ours", "getppid").unwrap()["kernel_options"]
        .as_str()
        .unwrap()
        .contains("structure="));
    assert!(find("linux", "getppid").is_some());
    assert!(
        find("linux", "ipc_call").is_none(),
        "ipc_call on Linux is never a number"
    );
    let report = read(&out.join("report.md"));
    for needle in [
        "## Per structure: monolithic, servers, Linux",
        "| ours-servers/ours | ours-servers/linux |",
        "## Null IPC round trip vs getppid",
        "## Does not apply",
        "- tcg: linux ipc_call (threads): ipc_call: worker 0: ipc_call does not apply on this system",
    ] {
        assert!(report.contains(needle), "report lacks {needle}:\n{report}");
    }
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("| ipc_call | threads | ops/s | 1 |") && l.contains("| n/a |")),
        "{report}"
    );
    // File mappings are delegated (page grants): measured, never n/a.
    assert!(
        find("ours-servers", "mmap_read_shared").is_some(),
        "{report}"
    );
    assert!(!report.contains("Runs without a result"), "{report}");
    assert!(stdout.contains("per structure:"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_suite_arguments_are_refused_before_booting() {
    for (args, needle) in [
        (vec!["suite", "--systems", "ours,bsd"], "bsd"),
        (vec!["suite", "--cores", "0"], "between 1 and 64"),
        (vec!["suite", "--cores", "1,1"], "twice"),
        (vec!["suite", "--runs", "0"], "--runs"),
        (vec!["suite", "--accel", "hvf"], "hvf"),
        (vec!["suite", "--workloads", "a b"], "not a workload name"),
    ] {
        let (ok, _, stderr) = comparison(&args);
        assert!(!ok, "{args:?} was accepted");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    let dir = scratch("badimport");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"system":"mk","cores":1,"accel":"tcg","ops_per_sec":1}]"#,
    )
    .unwrap();
    let (ok, _, stderr) = comparison(&["suite", "--import", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("workload") && stderr.contains("bad.json"),
        "{stderr}"
    );
    let (ok, _, stderr) = comparison(&[
        "suite",
        "--import",
        dir.join("missing.json").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("missing.json"), "{stderr}");
    let (ok, _, stderr) = comparison(&[
        "suite",
        "--workloads",
        "no_such_workload",
        "--systems",
        "ours",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown workload `no_such_workload`"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
