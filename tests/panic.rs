//! A deliberate kernel panic on any CPU stops every CPU, prints the panic on
//! serial and ends QEMU with the failure code 2 (docs/CONTRACTS.md §5).
//!
//! `run=panic` panics on the last CPU; the report must name that CPU, and
//! every other online CPU must have acknowledged the stop NMI (the kernel's
//! `panic: other cpus stopped: K of N (ids)` line).

use integration_tests::*;

/// Boot `run=panic` on `cores` vCPUs and check who panicked and who stopped.
fn panic_stops_every_other_cpu(cores: usize) {
    let out = boot_builtin(cores, "run=panic", 180);
    let target = cores - 1;
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line(&format!(
            "KERNEL PANIC on cpu {target}: deliberate panic (run=panic) on cpu {target}"
        )),
        &format!("expected the panic on the CPU asked for, cpu {target}"),
    );
    let others: Vec<String> = (0..target).map(|id| id.to_string()).collect();
    check(
        &out,
        out.has_line(&format!(
            "panic: other cpus stopped: {n} of {n} ({})",
            others.join(" "),
            n = others.len()
        )),
        &format!("expected every other CPU ({others:?}) to acknowledge the stop"),
    );
    check(
        &out,
        out.serial.matches("KERNEL PANIC").count() == 1,
        "expected exactly one panic report",
    );
    check(
        &out,
        !out.has_line("selfcheck: pass"),
        "panic mode must not report a pass",
    );
    expect_guest_exit(&out, 2);
}

#[test]
fn panic_ends_qemu_with_failure_and_message() {
    panic_stops_every_other_cpu(2);
}

#[test]
fn panic_on_4_cpus_stops_the_other_3() {
    panic_stops_every_other_cpu(4);
}

#[test]
fn panic_on_single_cpu_also_ends_qemu() {
    panic_stops_every_other_cpu(1);
}
