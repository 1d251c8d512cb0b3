//! The virtio-net driver as a user-mode process (`structure=servers`,
//! `servers.nic=process`, the default there; docs/SERVERS.md "The NIC
//! driver process"): the kernel assigns the card to `nicd`, which serves
//! `netd` through shared packet rings.  Over QEMU user networking
//! (`restrict=on`, nothing leaves this machine):
//!
//! * a host client echoes through a guest `net_echo serve` (host → guest),
//!   and a guest `net_echo call` through a host echo server (guest → host),
//!   both with the kernel's own NIC driver off;
//! * the driver is killed three times in the middle of one host↔guest TCP
//!   connection (`nic_restart`): the kernel resets the card and starts a
//!   new instance, netd re-attaches, and the echo resumes on the same
//!   connection; the gaps (kill → next echo) are printed, not asserted;
//! * `servers.nic=none` leaves the card to the kernel's driver (netd has
//!   loopback only) and starts no driver process.
//!
//! Every step is a handshake: the host waits for the guest's bytes, the
//! guest cues the host only once the killed driver is gone.

use comparison::qemu::Nic;
use comparison::run::{Echo, RunExtras, RunRequest, RunResult, Structure, System};
use integration_tests::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
const GUEST_PORT: u16 = 7;
const KILLS: usize = 3;

/// Runs `program ARGS` as PID 1 in `structure=servers` on 2 vCPUs with
/// `nic` and the extra command-line words `cmdline`.
fn run_servers(program_name: &str, nic: Nic, cmdline: &str, args: &[&str]) -> RunResult {
    let mut vm = vm(2, 180);
    vm.nic = Some(nic);
    let request = RunRequest {
        system: System::Ours,
        program: program(program_name),
        files: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks: LockMode::PerCpu,
        extra_cmdline: cmdline.to_string(),
        vm,
        echo: Echo::Quiet,
    };
    let extras = RunExtras {
        structure: Structure::Servers,
        ..Default::default()
    };
    comparison::run::run_with(ours(), &request, &extras).expect("running the program")
}

fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn user_nic(hostfwd: Vec<(u16, u16)>, guestfwd: Vec<(u16, u16)>) -> Nic {
    Nic::User { hostfwd, guestfwd }
}

/// The card went to the driver process, not to the kernel's driver.
fn expect_driver_process(result: &RunResult) {
    let serial = &result.outcome.serial;
    check_run(
        result,
        serial.contains("userdev: virtio-net 00:")
            && serial.contains("servers: NIC driver /.servers/nicd is pid"),
        "expected the card assigned to /.servers/nicd",
    );
    check_run(
        result,
        !serial.contains("virtio-net: 00:"),
        "the kernel's own virtio-net driver must not start",
    );
}

fn expected_bytes() -> usize {
    (0..ROUNDS).map(|r| echo_message(r).len()).sum()
}

/// Host client, retrying until the guest listens or the run ended (`done`:
/// the building of the boot media and a TCG boot on a loaded host take
/// an unknown time, so the only bound is the run itself).
fn host_client(addr: SocketAddr, done: Arc<AtomicBool>) -> JoinHandle<Result<usize, String>> {
    std::thread::spawn(move || loop {
        match echo_session(addr, ROUNDS) {
            Ok(total) => return Ok(total),
            Err((true, _)) if !done.load(Ordering::Acquire) => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err((_, why)) => return Err(why),
        }
    })
}

#[test]
fn host_client_to_guest_echo_server_through_the_driver_process() {
    let host_port = free_local_port();
    let done = Arc::new(AtomicBool::new(false));
    let client = host_client(SocketAddr::from(([127, 0, 0, 1], host_port)), done.clone());
    let result = run_servers(
        "net_echo",
        user_nic(vec![(host_port, GUEST_PORT)], Vec::new()),
        "",
        &["serve", &GUEST_PORT.to_string(), "1"],
    );
    done.store(true, Ordering::Release);
    let client = client.join().expect("client thread");
    expect_driver_process(&result);
    check_run(
        &result,
        client.as_ref().is_ok_and(|&n| n == expected_bytes()),
        &format!("host client: {client:?}"),
    );
    check_run(
        &result,
        result
            .output
            .contains(&format!("net_echo: served 0 bytes={}", expected_bytes())),
        "expected the guest's `served` line",
    );
    expect_exit(&result, 0);
}

#[test]
fn guest_client_to_host_echo_server_through_the_driver_process() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let host_port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || -> Result<usize, String> {
        let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < expected_bytes() {
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("write: {e}"))?;
            total += n;
        }
        Ok(total)
    });
    let result = run_servers(
        "net_echo",
        user_nic(Vec::new(), vec![(GUEST_PORT, host_port)]),
        "",
        &[
            "call",
            "10.0.2.100",
            &GUEST_PORT.to_string(),
            &ROUNDS.to_string(),
        ],
    );
    let server = server.join().expect("server thread");
    expect_driver_process(&result);
    check_run(
        &result,
        server.as_ref().is_ok_and(|&n| n == expected_bytes()),
        &format!("host server: {server:?}"),
    );
    check_run(
        &result,
        result.output.contains(&format!(
            "net_echo: call ok rounds={ROUNDS} bytes={}",
            expected_bytes()
        )),
        "expected the guest's `call ok` line",
    );
    expect_exit(&result, 0);
}

/// The round-`r` message of the restart session.
fn restart_message(r: usize) -> [u8; 64] {
    std::array::from_fn(|i| (i * 7 + r * 13) as u8)
}

/// Host side of `nic_restart`: connect (retrying until the guest listens or
/// the run ended), then KILLS + 1 rounds, each after the guest's `K` cue
/// but the first; then close (the guest's cue to end).
fn restart_client(addr: SocketAddr, done: Arc<AtomicBool>) -> Result<Vec<Duration>, String> {
    let mut stream = loop {
        let attempt =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                s.write_all(&restart_message(0))?;
                let mut echo = [0u8; 64];
                s.read_exact(&mut echo)?;
                if echo != restart_message(0) {
                    return Err(std::io::Error::other("round 0: echo differs"));
                }
                Ok(s)
            });
        match attempt {
            Ok(s) => break s,
            Err(_) if !done.load(Ordering::Acquire) => {
                std::thread::sleep(Duration::from_millis(250))
            }
            Err(e) => return Err(format!("round 0: {e}")),
        }
    };
    let mut gaps = Vec::new();
    for r in 1..=KILLS {
        let mut cue = [0u8; 1];
        stream
            .read_exact(&mut cue)
            .map_err(|e| format!("cue before round {r}: {e}"))?;
        if &cue != b"K" {
            return Err(format!("cue before round {r}: {cue:?}"));
        }
        let sent = Instant::now();
        let mut echo = [0u8; 64];
        stream
            .write_all(&restart_message(r))
            .and_then(|_| stream.read_exact(&mut echo))
            .map_err(|e| format!("round {r}: {e}"))?;
        if echo != restart_message(r) {
            return Err(format!("round {r}: echo differs"));
        }
        gaps.push(sent.elapsed());
    }
    // Tells the guest it may end (it waits for this close).
    drop(stream);
    Ok(gaps)
}

#[test]
fn killed_driver_restarts_and_the_echo_resumes() {
    let host_port = free_local_port();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let client = std::thread::spawn(move || {
        restart_client(SocketAddr::from(([127, 0, 0, 1], host_port)), flag)
    });
    let result = run_servers(
        "nic_restart",
        user_nic(vec![(host_port, GUEST_PORT)], Vec::new()),
        "",
        &[&GUEST_PORT.to_string(), &KILLS.to_string()],
    );
    done.store(true, Ordering::Release);
    let client = client.join().expect("client thread");
    expect_driver_process(&result);
    check_run(&result, client.is_ok(), &format!("host client: {client:?}"));
    let restarts = result
        .outcome
        .serial
        .matches("userdev: driver pid ")
        .count();
    check_run(
        &result,
        restarts == KILLS,
        &format!("expected {KILLS} driver restarts in the kernel log, saw {restarts}"),
    );
    let gaps: Vec<&str> = result
        .output
        .lines()
        .filter(|l| l.contains("echoed after restart gap_ms="))
        .collect();
    check_run(
        &result,
        gaps.len() == KILLS,
        &format!("expected {KILLS} `echoed after restart` lines"),
    );
    check_run(
        &result,
        result.output.contains(&format!(
            "nic_restart: ok rounds={} kills={KILLS}",
            KILLS + 1
        )),
        "expected the guest's `ok` line",
    );
    // Measurements for the record (never asserted).
    for line in gaps {
        eprintln!("driver restart (guest, kill to echo): {line}");
    }
    eprintln!("driver restart (host, cue to echo): {:?}", client.unwrap());
    expect_exit(&result, 0);
}

#[test]
fn servers_nic_none_keeps_the_kernel_driver_and_starts_no_driver_process() {
    let result = run_servers(
        "hello",
        user_nic(Vec::new(), Vec::new()),
        "servers.nic=none",
        &[],
    );
    let serial = &result.outcome.serial;
    check_run(
        &result,
        serial.contains("virtio-net: 00:") && !serial.contains("/.servers/nicd"),
        "expected the kernel's driver and no driver process",
    );
    expect_exit(&result, 0);
}
