//! A few seconds of threads on every CPU allocating, freeing and switching:
//! no frame may be lost and the per-CPU counters must sum to the per-thread
//! totals (the kernel checks both and prints `stress: pass ...`).  Run on 1, 2,
//! 4 and 8 vCPUs, and once with the global-lock switch on.

use integration_tests::*;

fn stress(cores: usize, extra: &str) {
    let out = boot_builtin(cores, &format!("run=stress:3 {extra}"), 240);
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line("stress: pass"),
        "expected `stress: pass`",
    );
    let before = field(&out, "stress: pass", "frames_before");
    let after = field(&out, "stress: pass", "frames_after");
    check(
        &out,
        before.is_some() && before == after,
        "free frames before and after must be equal",
    );
    check(
        &out,
        field(&out, "stress: pass", "ops").unwrap_or(0) > 0,
        "the stress run did no work",
    );
    check(
        &out,
        field(&out, "stress: pass", "threads").unwrap_or(0) >= cores as u64,
        "fewer threads than CPUs",
    );
    expect_guest_exit(&out, 0);
}

#[test]
fn stress_on_1_cpu() {
    stress(1, "");
}

#[test]
fn stress_on_2_cpus() {
    stress(2, "");
}

#[test]
fn stress_on_4_cpus() {
    stress(4, "");
}

#[test]
fn stress_on_8_cpus() {
    stress(8, "");
}

#[test]
fn stress_with_global_locks() {
    stress(2, "locks=global");
}
