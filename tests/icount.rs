//! Deterministic guest time (`tools/icount/qemu-system-x86_64`: QEMU with
//! `-icount shift=0,sleep=off` and single-threaded TCG, one host thread
//! running the vCPUs in turn) on 2 vCPUs: a program whose threads
//! spin-wait with `sched_yield` for a thread on the other vCPU must finish.
//! Regression test for the hang after `init: started` on exactly 2 vCPUs
//! (the yielding vCPU kept the other from running; see
//! `sched::scheduler::yield_now`).  Not a timing test: it checks the exit
//! status and the result line, never a rate.
//!
//! This binary puts the wrapper first in PATH for its QEMU runs (the only
//! test in this file, so no other test sees the change).

use comparison::run::System;
use integration_tests::*;
use std::path::PathBuf;

/// Generous: the run takes a few seconds; before the fix it never ended.
const TIMEOUT: u64 = 120;

#[test]
fn two_vcpus_under_icount_spin_waiting_with_sched_yield() {
    // Canonical: the wrapper skips its own directory in PATH by that name
    // (with `tests/..` in it, it would find and run itself forever).
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/icount")
        .canonicalize()
        .expect("tools/icount");
    let wrapper = tools.join("qemu-system-x86_64");
    assert!(wrapper.is_file(), "missing {}", wrapper.display());
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![tools];
    dirs.extend(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(dirs).expect("PATH"));

    let wis = comparison::workloads::build_workloads().expect("building the workloads");
    // Worker w is pinned to CPU w and yields until the main thread (which
    // sleeps in 1 ms steps) says go: worker 0's sched_yield loop on vCPU 0
    // used to keep vCPU 1 from ever running again.
    let args = [
        "getppid",
        "--threads",
        "2",
        "--warmup-ms",
        "20",
        "--ms",
        "100",
    ];
    let result = run_path(
        ours(),
        System::Ours,
        &wis,
        2,
        &args,
        &[],
        TIMEOUT,
        LockMode::PerCpu,
    );
    expect_exit(&result, 0);
    let line = result
        .output
        .lines()
        .find(|l| l.starts_with("{\"workload\":\"getppid\""));
    check_run(
        &result,
        line.is_some_and(|l| l.contains("\"workers\":2") && !l.contains("\"ops\":0,")),
        "expected one getppid result line with 2 workers and ops > 0",
    );
}
