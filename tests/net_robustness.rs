//! Robustness of the network server (`structure=servers`; docs/SERVERS.md
//! "Replacing the network server", "When the network server crashes").
//!
//! Checked: `net_replace_check` (a TCP echo over netd with open
//! connections, both ends netd's sockets, every byte checked, a listener
//! accepting throughout) passes with 3 replacements on 2 vCPUs and 2 on 1
//! vCPU, and with replacements at seeded random points, with no failed and
//! no wrong round trip; the kernel logged each replacement.  Crashes:
//! `net_replace_check crash` kills netd at a seeded point; every client
//! and echo thread gets a clean error (ECONNRESET, EPIPE, EIO, EOF)
//! instead of hanging, the kernel survives and restarts netd, and a new
//! listener and connection echo again.  Host↔guest: a TCP connection from
//! the host through the NIC driver process survives a replacement byte for
//! byte; after a crash the host's connection fails and a new one echoes.
//! A replacement in the monolithic structure is refused.  The guest
//! triggers replacements and crashes itself after a number of echoed
//! rounds (handshakes, never sleeps).

use comparison::qemu::Nic;
use comparison::run::{Echo, RunExtras, RunRequest, RunResult, Structure, System};
use integration_tests::*;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: u64 = 600;

fn replace_check(cores: usize, args: &[&str], rounds: usize) {
    replacement_checked(
        "net_replace_check",
        cores,
        args,
        TIMEOUT,
        rounds,
        "servers: replaced the network server",
    );
}

#[test]
fn net_replacement_under_echo_load_2_cores() {
    replace_check(2, &["replace", "--rounds", "3", "--ops", "40"], 3);
}

#[test]
fn net_replacement_under_echo_load_1_core() {
    replace_check(
        1,
        &["replace", "--rounds", "2", "--ops", "30", "--conns", "3"],
        2,
    );
}

#[test]
fn net_replacement_at_seeded_points() {
    for seed in ["11", "4242"] {
        replace_check(
            2,
            &["replace", "--rounds", "3", "--ops", "25", "--seed", seed],
            3,
        );
    }
}

#[test]
fn net_crash_at_seeded_points() {
    for (cores, seed) in [(2, "5"), (1, "77"), (2, "1234")] {
        let result = run_structure(
            &program("net_replace_check"),
            cores,
            &["crash", "--ops", "30", "--seed", seed],
            &[],
            TIMEOUT,
            Structure::Servers,
            None,
        );
        expect_pass(&result, "net_replace_check");
        let serial = &result.outcome.serial;
        check_run(
            &result,
            log_lines(serial, "servers: network server restarted as pid") == 1,
            "expected the kernel to restart the network server once",
        );
        check_run(
            &result,
            result.output.contains("errors=") && result.output.contains("ECONNRESET"),
            "expected the open connections to be reset",
        );
        check_run(
            &result,
            !serial.contains("panic"),
            "the kernel must survive",
        );
    }
}

#[test]
fn net_replacement_is_refused_in_the_monolithic_structure() {
    let result = run_structure(
        &program("srvctl"),
        1,
        &["replace", "net"],
        &[],
        TIMEOUT,
        Structure::Monolithic,
        None,
    );
    expect_exit(&result, 1);
    check_run(
        &result,
        result.output.contains("srvctl: replace net: errno 95"),
        "expected EOPNOTSUPP (95)",
    );
}

const ROUNDS: usize = 20;
const GUEST_PORT: u16 = 7;

fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// The guest's `net_replace_check nic` with the host's port forwarded to
/// it, and the host's sessions run by `host` meanwhile.
fn nic_run(
    action: &str,
    host: impl FnOnce(SocketAddr, &AtomicBool) -> Result<(), String> + Send + 'static,
) -> (RunResult, Result<(), String>) {
    let host_port = free_local_port();
    let before: usize = (0..ROUNDS / 2).map(|r| echo_message(r).len()).sum();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let client =
        std::thread::spawn(move || host(SocketAddr::from(([127, 0, 0, 1], host_port)), &flag));
    let mut vm = vm(2, 240);
    vm.nic = Some(Nic::User {
        hostfwd: vec![(host_port, GUEST_PORT)],
        guestfwd: Vec::new(),
    });
    let request = RunRequest {
        system: System::Ours,
        program: program("net_replace_check"),
        files: Vec::new(),
        args: vec![
            "nic".into(),
            GUEST_PORT.to_string(),
            before.to_string(),
            action.into(),
            "2".into(),
        ],
        locks: LockMode::PerCpu,
        extra_cmdline: String::new(),
        vm,
        echo: Echo::Quiet,
    };
    let extras = RunExtras {
        structure: Structure::Servers,
        ..Default::default()
    };
    let result = comparison::run::run_with(ours(), &request, &extras).expect("running the program");
    done.store(true, Ordering::Release);
    let client = client.join().expect("host thread");
    (result, client)
}

/// A session, retried while the guest is not listening (first round) and
/// the run goes on (building and booting may take minutes).
fn session(addr: SocketAddr, done: &AtomicBool) -> Result<usize, (bool, String)> {
    loop {
        match echo_session(addr, ROUNDS) {
            Err((true, why)) if !done.load(Ordering::Acquire) => {
                let _ = why;
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

#[test]
fn host_connection_survives_a_net_replacement() {
    let total: usize = (0..ROUNDS).map(|r| echo_message(r).len()).sum();
    let (result, host) = nic_run("replace", move |addr, done| {
        for n in 1..=2 {
            match session(addr, done) {
                Ok(t) if t == total => {}
                other => return Err(format!("session {n}: {other:?}")),
            }
        }
        Ok(())
    });
    expect_pass(&result, "net_replace_check");
    check_run(&result, host.is_ok(), &format!("host: {host:?}"));
    check_run(
        &result,
        log_lines(
            &result.outcome.serial,
            "servers: replaced the network server",
        ) == 1,
        "expected one network-server replacement",
    );
    check_run(
        &result,
        result
            .output
            .contains(&format!("nic conn 1 bytes={total} end=OK")),
        "the guest must echo every byte of the connection across the switch",
    );
}

#[test]
fn host_echo_resumes_after_a_net_crash() {
    let total: usize = (0..ROUNDS).map(|r| echo_message(r).len()).sum();
    let (result, host) = nic_run("crash", move |addr, done| {
        // The first session dies with the server (after half its rounds).
        match session(addr, done) {
            Err((false, _)) => {}
            other => return Err(format!("session 1 should fail: {other:?}")),
        }
        match session(addr, done) {
            Ok(t) if t == total => Ok(()),
            other => Err(format!("session 2: {other:?}")),
        }
    });
    expect_pass(&result, "net_replace_check");
    check_run(&result, host.is_ok(), &format!("host: {host:?}"));
    check_run(
        &result,
        log_lines(
            &result.outcome.serial,
            "servers: network server restarted as pid",
        ) == 1,
        "expected one network-server restart",
    );
}
