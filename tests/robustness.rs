//! Robustness of `structure=servers`: the file server is replaced while a
//! file workload runs on every core (docs/SERVERS.md "Replacing the file
//! server").
//!
//! Checked: `replace_check` (every operation checked: no failed call, no
//! wrong read, the long-lived descriptors and inode numbers survive)
//! passes with 3 replacements on 2 vCPUs and 2 on 1 vCPU, and with
//! replacements at seeded random points; the kernel logged each
//! replacement and never panicked; `srvctl replace fs` works from user
//! space, with the successor's program read through the file server
//! itself (the path an upgraded binary takes); a replacement in the
//! monolithic structure is refused.  Replacements are synchronised with
//! the workload by handshakes (operation counters), never by sleeping.
//! Crashes: `crash_check` kills the file server at seeded points on 1 and
//! 2 vCPUs; calls fail cleanly and never hang, the kernel restarts the
//! server every time and files work again.
//! The suite's robustness section: `measure_section` (the path `comparison
//! suite` takes for ours-servers) measures every row (file- and
//! network-server replacement pause and switch, their crash recovery,
//! NIC driver restart gap) with no failed operation and renders them; the successor builds a base image before
//! each switch, which then sends only a delta.

use comparison::run::Structure;
use integration_tests::*;

const TIMEOUT: u64 = 600;

const FS_REPLACED: &str = "servers: replaced the file server";

fn replaced_count(serial: &str) -> usize {
    log_lines(serial, FS_REPLACED)
}

fn replace_check(cores: usize, args: &[&str], rounds: usize) {
    replacement_checked("replace_check", cores, args, TIMEOUT, rounds, FS_REPLACED);
}

#[test]
fn replacement_under_load_2_cores() {
    replace_check(2, &["--rounds", "3", "--ops", "100"], 3);
}

#[test]
fn replacement_under_load_1_core() {
    replace_check(1, &["--rounds", "2", "--ops", "100"], 2);
}

#[test]
fn replacement_at_seeded_points() {
    for seed in ["7", "1234"] {
        replace_check(2, &["--rounds", "3", "--ops", "60", "--seed", seed], 3);
    }
}

#[test]
fn srvctl_replaces_with_a_program_read_through_the_server() {
    let result = run_structure(
        &program("srvctl"),
        1,
        &["replace", "fs", "/.servers/fsd"],
        &[],
        TIMEOUT,
        Structure::Servers,
        None,
    );
    expect_exit(&result, 0);
    check_run(
        &result,
        result.output.contains("srvctl: replaced fs: pid 2 -> "),
        "expected srvctl to report the replacement",
    );
    check_run(
        &result,
        replaced_count(&result.outcome.serial) == 1,
        "expected the kernel to log the replacement",
    );
}

#[test]
fn replacement_is_refused_without_a_file_server() {
    let result = run_structure(
        &program("srvctl"),
        1,
        &["replace", "fs"],
        &[],
        TIMEOUT,
        Structure::Monolithic,
        None,
    );
    expect_exit(&result, 1);
    check_run(
        &result,
        result.output.contains("srvctl: replace fs: errno 95"),
        "expected EOPNOTSUPP (95)",
    );
}

/// Crash isolation: `crash_check` kills the file server at seeded points;
/// every call after a crash fails cleanly (EIO / EBADF / ENOENT) instead of
/// hanging, the kernel survives and restarts the server each time, and
/// files work again afterwards.
#[test]
fn crashes_at_seeded_points() {
    for (cores, seed) in [(2, "3"), (1, "99")] {
        let result = run_structure(
            &program("crash_check"),
            cores,
            &["--rounds", "3", "--ops", "40", "--seed", seed],
            &[],
            TIMEOUT,
            Structure::Servers,
            None,
        );
        expect_pass(&result, "crash_check");
        let restarts = log_lines(
            &result.outcome.serial,
            "servers: file server restarted as pid",
        );
        check_run(
            &result,
            restarts == 3,
            "expected the kernel to restart the file server 3 times",
        );
    }
}

/// The suite's robustness section, measured as `comparison suite` does
/// (2 repetitions each here): every row has its samples, no operation
/// failed, and the kernel logged delta images smaller than their base.
#[test]
fn suite_robustness_section_is_measured() {
    use comparison::robustness::{measure_section, Event};
    let section = measure_section(
        ours(),
        userland(),
        2,
        2,
        comparison::qemu::Accel::Tcg,
        std::time::Duration::from_secs(TIMEOUT),
    );
    assert!(section.failures.is_empty(), "{:?}", section.failures);
    let row = |server: &str, e: Event| {
        section
            .rows
            .iter()
            .find(|r| r.server == server && r.event == e)
            .unwrap_or_else(|| panic!("no {server} {e:?} row: {section:?}"))
    };
    for server in ["fs", "net"] {
        let rep = row(server, Event::Replacement);
        assert_eq!((rep.pause_us.len(), rep.switch_us.len()), (2, 2), "{rep:?}");
        assert_eq!(rep.failed_ops, Some(0), "{rep:?}");
        assert!(rep.ops.unwrap_or(0) > 0, "{rep:?}");
        let crash = row(server, Event::CrashRestart);
        assert_eq!(crash.recovery_us.len(), 2, "{crash:?}");
        assert!(crash.recovery_us.iter().all(|&us| us > 0), "{crash:?}");
    }
    // netd's crash ends every open connection: the clients saw clean errors.
    assert!(row("net", Event::CrashRestart).clean_errors.unwrap_or(0) > 0);
    assert_eq!(row("nic", Event::DriverRestart).recovery_us.len(), 2);
    let md = section.markdown();
    assert!(
        md.contains("| fs (fsd) | replacement under load | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("| net (netd) | replacement under load | 2 |"),
        "{md}"
    );
    assert!(md.contains("| net (netd) | crash + restart | 2 |"), "{md}");
    assert!(md.contains("cannot survive these faults by design"), "{md}");
    assert!(!section.bad());
}

/// The successor built a base image (tree and metadata) before each
/// switch, so the switch sends only a delta: the kernel logs both sizes
/// (the host test `staged_base_then_delta` checks the delta's contents
/// and that it is much smaller than a whole image).
#[test]
fn switch_follows_a_staged_base() {
    let result = run_structure(
        &program("replace_check"),
        2,
        &["--rounds", "2", "--ops", "60"],
        &[],
        TIMEOUT,
        Structure::Servers,
        None,
    );
    expect_pass(&result, "replace_check");
    let mut seen = 0;
    for l in result
        .outcome
        .serial
        .lines()
        .filter(|l| l.contains("servers: replaced the file server"))
    {
        let num = |key: &str| -> Option<u64> {
            l.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        };
        check_run(
            &result,
            num("delta image ").is_some_and(|d| d > 0)
                && num("a base image of ").is_some_and(|b| b > 0),
            &format!("expected a base image before the switch and a delta at it: {l}"),
        );
        seen += 1;
    }
    check_run(&result, seen == 2, "expected 2 replacement lines");
}
