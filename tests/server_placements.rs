//! Replacement and crash restart of the OS servers in every placement
//! (`servers.placement=percore|dedicated`; docs/SERVERS.md "Replacing the
//! file server", "Replacing the network server", "Placement and
//! migration"): with several serving threads the kernel parks all but one
//! before the hand-over, with request slots it hands the slots (the same
//! memory and notifications) to the successor by their owner word.
//!
//! Checked: `replace_check` (files) and `net_replace_check replace` (TCP
//! echo) pass with every operation checked and no failed or wrong one
//! while the server is replaced, on 1, 2 and 4 vCPUs; the kernel logged
//! each replacement; with request slots the calls went through them
//! (`ipcstat: ... ring_calls=N`, N > 0).  A server with request slots
//! that crashes (`crash_check`, `net_replace_check crash`) fails the
//! callers waiting in its slots instead of leaving them waiting, and is
//! restarted.  The guests trigger replacements and crashes themselves
//! after a number of checked operations (handshakes, never sleeps).

use comparison::run::{RunResult, Structure};
use integration_tests::*;

const TIMEOUT: u64 = 600;

fn run(name: &str, cores: usize, args: &[&str], placement: &str) -> RunResult {
    run_structure_cmdline(
        &program(name),
        cores,
        args,
        &[],
        TIMEOUT,
        Structure::Servers,
        None,
        &format!("servers.placement={placement} vmstat"),
    )
}

/// `name` passed with no failed and no wrong operation and the kernel
/// logged `rounds` lines containing `replaced`.
fn replaced(result: &RunResult, name: &str, rounds: usize, replaced: &str) {
    expect_pass(result, name);
    check_run(
        result,
        result.output.contains("failed=0 wrong=0"),
        "expected no failed and no wrong operation",
    );
    check_run(
        result,
        log_lines(&result.outcome.serial, replaced) == rounds,
        &format!("expected the kernel to log {rounds} lines `{replaced}`"),
    );
    check_run(
        result,
        !result.outcome.serial.contains("KERNEL PANIC"),
        "the kernel must not panic",
    );
}

/// Calls went through the request slots (`ipcstat: ... ring_calls=N`).
fn ring_calls(result: &RunResult) -> u64 {
    result
        .outcome
        .serial
        .lines()
        .find_map(|l| l.split("ring_calls=").nth(1))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

const FS_REPLACED: &str = "servers: replaced the file server";
const NET_REPLACED: &str = "servers: replaced the network server";

fn fs_replacement(cores: usize, placement: &str) -> RunResult {
    let r = run(
        "replace_check",
        cores,
        &["--rounds", "2", "--ops", "30"],
        placement,
    );
    replaced(&r, "replace_check", 2, FS_REPLACED);
    r
}

fn net_replacement(cores: usize, placement: &str) -> RunResult {
    let r = run(
        "net_replace_check",
        cores,
        &["replace", "--rounds", "2", "--ops", "25", "--conns", "3"],
        placement,
    );
    replaced(&r, "net_replace_check", 2, NET_REPLACED);
    r
}

#[test]
fn fs_replacement_percore_2_cores() {
    fs_replacement(2, "percore");
}

#[test]
fn fs_replacement_percore_4_cores() {
    fs_replacement(4, "percore");
}

#[test]
fn fs_replacement_percore_1_core() {
    fs_replacement(1, "percore");
}

#[test]
fn fs_replacement_dedicated_2_cores() {
    let r = fs_replacement(2, "dedicated");
    check_run(&r, ring_calls(&r) > 0, "expected calls through the slots");
}

#[test]
fn fs_replacement_dedicated_4_cores() {
    let r = fs_replacement(4, "dedicated");
    check_run(&r, ring_calls(&r) > 0, "expected calls through the slots");
}

#[test]
fn net_replacement_percore_2_cores() {
    net_replacement(2, "percore");
}

#[test]
fn net_replacement_percore_4_cores() {
    net_replacement(4, "percore");
}

#[test]
fn net_replacement_dedicated_2_cores() {
    let r = net_replacement(2, "dedicated");
    check_run(&r, ring_calls(&r) > 0, "expected calls through the slots");
}

#[test]
fn net_replacement_dedicated_4_cores() {
    let r = net_replacement(4, "dedicated");
    check_run(&r, ring_calls(&r) > 0, "expected calls through the slots");
}

/// A file server with request slots killed at seeded points: the callers
/// in its slots fail (no hang), the kernel restarts it each time.
#[test]
fn fs_crash_with_request_slots() {
    let r = run(
        "crash_check",
        2,
        &["--rounds", "2", "--ops", "40", "--seed", "17"],
        "dedicated",
    );
    expect_pass(&r, "crash_check");
    check_run(
        &r,
        log_lines(&r.outcome.serial, "servers: file server restarted as pid") == 2,
        "expected the kernel to restart the file server 2 times",
    );
    check_run(
        &r,
        log_lines(&r.outcome.serial, "reached through 16 request slots") >= 4,
        "expected every instance to get request slots",
    );
}

/// A network server with request slots killed at a seeded point: every
/// caller gets a clean error, the kernel restarts it, a new connection
/// echoes.
#[test]
fn net_crash_with_request_slots() {
    let r = run(
        "net_replace_check",
        2,
        &["crash", "--ops", "30", "--seed", "5"],
        "dedicated",
    );
    expect_pass(&r, "net_replace_check");
    check_run(
        &r,
        log_lines(
            &r.outcome.serial,
            "servers: network server restarted as pid",
        ) == 1,
        "expected the kernel to restart the network server once",
    );
    check_run(
        &r,
        !r.outcome.serial.contains("KERNEL PANIC"),
        "the kernel must survive",
    );
}
