//! Boot on 1, 2, 4 and 8 vCPUs: every CPU comes online and the kernel's
//! self-check passes (frames, heap, threads on every CPU, cross-CPU wakeups).

use integration_tests::*;

fn boots_with(cores: usize) {
    let out = boot_builtin(cores, "run=selfcheck", 120);
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);
    // Every CPU logged something under its own prefix.
    for cpu in 0..cores {
        check(
            &out,
            out.serial.contains(&format!("[cpu{cpu}]")),
            &format!("no line from cpu{cpu}"),
        );
    }
}

#[test]
fn boots_on_1_cpu() {
    boots_with(1);
}

#[test]
fn boots_on_2_cpus() {
    boots_with(2);
}

#[test]
fn boots_on_4_cpus() {
    boots_with(4);
}

#[test]
fn boots_on_8_cpus() {
    boots_with(8);
}

#[test]
fn boots_with_global_locks() {
    let out = boot_builtin(2, "run=selfcheck locks=global", 120);
    check(
        &out,
        cpus_online(&out) == Some(2),
        "expected `cpus online: 2`",
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);
}
