//! Loopback TCP/IP in the guest under load: `net_stress` (a shared listener
//! served by one accept thread per CPU, one client thread per CPU holding 50
//! connections open at once, every byte echoed and checked; then a UDP echo
//! pair per CPU) on 1, 2 and 4 vCPUs, and on 2 vCPUs with the global-lock
//! switch (`locks=global`: one stack instance behind one lock).
//! The same program's output on Linux is compared in `differential.rs`.

use comparison::run::System;
use integration_tests::*;

const TIMEOUT: u64 = 240;

fn stress(cores: usize, locks: LockMode) {
    let result = run_path(
        ours(),
        System::Ours,
        &program("net_stress"),
        cores,
        &[],
        &[],
        TIMEOUT,
        locks,
    );
    expect_pass(&result, "net_stress");
    check_run(
        &result,
        result.output.contains(&format!(
            "tcp: {cores} threads x 50 concurrent connections echoed"
        )),
        "expected the TCP line with one thread per CPU",
    );
}

#[test]
fn net_stress_on_1_cpu() {
    stress(1, LockMode::PerCpu);
}

#[test]
fn net_stress_on_2_cpus() {
    stress(2, LockMode::PerCpu);
}

#[test]
fn net_stress_on_4_cpus() {
    stress(4, LockMode::PerCpu);
}

#[test]
fn net_stress_on_2_cpus_with_global_locks() {
    stress(2, LockMode::Global);
}
