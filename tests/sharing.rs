//! The sharing plugin (tools/sharing-plugin, docs/SHARING.md) on a tiny
//! guest with a known pattern (`sharing_probe`): two CPUs writing one line
//! give exactly one conflict line, private lines and shared reads none,
//! one writer and one reader one conflict; on our kernel and on Linux.
//! Then one small `comparison sharing` run (2 vCPUs, one workload).
//!
//! A plugin that does not build or does not load is a failure, never a
//! skip; only Linux's kernel image may be missing (a failure under `CI`).

use comparison::qemu::Accel;
use comparison::run::{Echo, RunExtras, RunRequest, System, Systems};
use comparison::sharing::plugin::{self, Record};
use integration_tests::{check_run, expect_pass, linux_or_skip, ours, program, vm};
use std::path::PathBuf;

fn plugin_path() -> PathBuf {
    plugin::build_plugin().expect("building the sharing plugin (tools/sharing-plugin)")
}

/// Run `sharing_probe` on 2 vCPUs with the plugin; its records.
fn probe(systems: &Systems, system: System, direct: bool) -> Vec<Record> {
    let root = comparison::build::workspace_root();
    let dir = comparison::build::target_dir(&root)
        .unwrap()
        .join("sharing-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("probe-{}-{direct}.jsonl", system.name()));
    let _ = std::fs::remove_file(&out);
    let direct = direct.then(|| plugin::direct_map(system, 512));
    let qemu_args = plugin::qemu_args(&plugin_path(), &out, direct, 16).unwrap();
    let request = RunRequest {
        system,
        program: program("sharing_probe"),
        files: vec![],
        args: vec![],
        locks: percpu::LockMode::PerCpu,
        extra_cmdline: if system == System::Linux {
            plugin::LINUX_NOKASLR.into()
        } else {
            String::new()
        },
        vm: vm(2, 240),
        echo: Echo::Quiet,
    };
    assert_eq!(request.vm.accel, Accel::Tcg);
    let result =
        comparison::run::run_with_qemu_args(systems, &request, &RunExtras::default(), &qemu_args)
            .expect("running sharing_probe");
    expect_pass(&result, "sharing_probe");
    let records = plugin::read_records(&out).expect("the plugin's records");
    check_run(
        &result,
        records.iter().filter(|r| !r.at_exit).count() == 4,
        &format!("expected 4 dumps from the plugin, got {records:?}"),
    );
    records
}

fn check_pattern(records: &[Record], who: &str) {
    let by_label = |label: u32| {
        records
            .iter()
            .find(|r| r.label == label && !r.at_exit)
            .unwrap_or_else(|| panic!("{who}: no record for label {label}: {records:?}"))
    };
    // (label, conflict lines, shared-written lines)
    for (label, conflicts, shared_written) in [(1, 1, 1), (2, 0, 0), (3, 0, 0), (4, 1, 0)] {
        let r = by_label(label);
        assert_eq!(r.ops, 2, "{who}: label {label}: {r:?}");
        assert_eq!(r.cpus, 2, "{who}: label {label}: {r:?}");
        assert_eq!(
            (r.conflict_lines, r.shared_written_lines),
            (conflicts, shared_written),
            "{who}: label {label}: {r:?}"
        );
    }
    let shared = &by_label(1).lines[0];
    assert_eq!((shared.readers, shared.writers), (0, 0b11), "{who}");
    assert_eq!(shared.writer_pcs.len(), 2, "{who}: one store per CPU");
    let one = &by_label(4).lines[0];
    assert_eq!((one.readers, one.writers), (0b10, 0b01), "{who}");
}

#[test]
fn plugin_counts_a_known_pattern_on_our_kernel() {
    check_pattern(&probe(ours(), System::Ours, true), "ours, direct map");
    check_pattern(&probe(ours(), System::Ours, false), "ours, QEMU lookup");
}

#[test]
fn plugin_counts_a_known_pattern_on_linux() {
    let Some(linux) = linux_or_skip("the plugin's Linux probe") else {
        return;
    };
    check_pattern(&probe(linux, System::Linux, true), "linux, direct map");
}

/// One small `comparison sharing` run: our kernel, 2 vCPUs, `getppid`
/// (a system call that shares nothing on this kernel), 10 marked
/// operations per worker; every output file is written.
#[test]
fn a_small_sharing_run_writes_its_outputs() {
    if let Err(e) = comparison::suite::plot::font() {
        integration_tests::skip_or_fail(&format!("the plots' font: {e:#}"));
        return;
    }
    let root = comparison::build::workspace_root();
    let out = comparison::build::target_dir(&root)
        .unwrap()
        .join("sharing-tests")
        .join("small-run");
    let _ = std::fs::remove_dir_all(&out);
    let opts = comparison::sharing::SharingOptions {
        systems: vec![comparison::suite::options::SuiteSystem::Ours],
        cores: vec![2],
        workloads: Some(vec!["getppid".into()]),
        ops: 10,
        warmup_ms: 50,
        timeout: std::time::Duration::from_secs(300),
        workload_timeout: None,
        memory_mib: None,
        out: Some(out.clone()),
        top: 8,
        direct: true,
        verbose: false,
    };
    let outcome = comparison::sharing::run_sharing(&opts).expect("comparison sharing");
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(outcome.cells.len(), 1, "{:?}", outcome.cells);
    let cell = &outcome.cells[0];
    assert_eq!(
        (cell.system.as_str(), cell.cores, cell.workload.as_str()),
        ("ours", 2, "getppid")
    );
    assert_eq!(cell.ops, 20, "2 workers x 10 marked operations: {cell:?}");
    assert_eq!(cell.cpus, 2, "{cell:?}");
    assert!(cell.lines_touched > 0, "{cell:?}");
    // getppid shares no line on this kernel; a timer tick in a window
    // may add a fraction, never one line per operation.
    assert!(cell.conflicts_per_op() < 0.5, "{cell:?}");
    for file in [
        "sharing.json",
        "sharing.csv",
        "sharing.md",
        "plots/sharing-ours.svg",
        "plots/sharing-ours.png",
        "plots/sharing-workload-getppid.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    let md = std::fs::read_to_string(out.join("sharing.md")).unwrap();
    assert!(md.contains("| getppid |"), "{md}");
}
