//! A deliberate kernel panic on any CPU stops every CPU, prints the panic on
//! serial and ends QEMU with the failure code 2 (docs/CONTRACTS.md §5).

use integration_tests::*;

#[test]
fn panic_ends_qemu_with_failure_and_message() {
    let out = boot_builtin(2, "run=panic", 120);
    check(
        &out,
        out.has_line("KERNEL PANIC on cpu"),
        "expected `KERNEL PANIC on cpu N: ...`",
    );
    check(
        &out,
        !out.has_line("selfcheck: pass"),
        "panic mode must not report a pass",
    );
    expect_guest_exit(&out, 2);
}

#[test]
fn panic_on_single_cpu_also_ends_qemu() {
    let out = boot_builtin(1, "run=panic", 120);
    check(
        &out,
        out.has_line("KERNEL PANIC on cpu 0:"),
        "expected `KERNEL PANIC on cpu 0: ...`",
    );
    expect_guest_exit(&out, 2);
}
