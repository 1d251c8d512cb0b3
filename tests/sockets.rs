//! The socket layer and readiness waiting (AF_UNIX pairs, poll/select,
//! epoll) on our kernel: the `sockets` program as PID 1 under TCG on 1, 2
//! and 4 vCPUs, with the global-lock switch, and repeated on 2 vCPUs so
//! that a lost wakeup (a wait that never ends) shows up as a timeout.
//! Its comparison with Linux is in `differential.rs`.

use comparison::run::System;
use integration_tests::*;

const TIMEOUT: u64 = 180;

fn sockets(cores: usize, locks: LockMode) {
    let result = run_path(
        ours(),
        System::Ours,
        &program("sockets"),
        cores,
        &[],
        &[],
        TIMEOUT,
        locks,
    );
    expect_pass(&result, "sockets");
}

#[test]
fn sockets_on_1_2_4_cpus() {
    for cores in [1, 2, 4] {
        sockets(cores, LockMode::PerCpu);
    }
}

#[test]
fn sockets_with_global_locks() {
    sockets(2, LockMode::Global);
}

#[test]
fn sockets_repeated_on_2_cpus() {
    for _ in 0..3 {
        sockets(2, LockMode::PerCpu);
    }
}
