//! This kernel's IPC (docs/IPC.md): `ipc_check` runs as PID 1 on 1 and 2
//! vCPUs (and on 2 with `locks=global`) and checks every answer itself:
//! round trips on one CPU and across CPUs, many clients, payloads both
//! ways, bad handles and buffers, server death, interrupted and killed
//! callers, notifications, the kernel's own client.  Any `WRONG` line, a
//! missing `ipc_check: pass`, an exit other than 0 or a kernel panic fails.

use comparison::run::System;
use integration_tests::*;

const TIMEOUT: u64 = 300;

#[test]
fn ipc_check_on_one_cpu() {
    let result = run_program(ours(), System::Ours, "ipc_check", 1, &[], &[], TIMEOUT);
    expect_pass(&result, "ipc_check");
    check_run(
        &result,
        result.output.contains("cpus: one"),
        "expected one CPU",
    );
}

#[test]
fn ipc_check_on_two_cpus() {
    let result = run_program(ours(), System::Ours, "ipc_check", 2, &[], &[], TIMEOUT);
    expect_pass(&result, "ipc_check");
    check_run(
        &result,
        result
            .output
            .contains("ok: cross cpu: 2000 echo round trips"),
        "expected the cross-CPU round trips to run",
    );
}

#[test]
fn ipc_check_with_global_locks() {
    let result = run_path(
        ours(),
        System::Ours,
        &program("ipc_check"),
        2,
        &[],
        &[],
        TIMEOUT,
        percpu::LockMode::Global,
    );
    expect_pass(&result, "ipc_check");
}
