//! `nic_restart PORT KILLS`: the guest side of the driver-restart test
//! (`tests/driver_process.rs`; `structure=servers` with the NIC driven by
//! the user-mode driver `nicd`).
//!
//! Listens on 0.0.0.0:PORT (through netd and nicd), prints
//! `nic_restart: listening`, accepts one connection and runs KILLS + 1
//! rounds: read a 64-byte message, echo it; after each round but the last
//! it finds the driver (`/proc/*/comm` = `nicd`), kills it with SIGKILL,
//! notes the time, waits until that process is gone and writes one byte
//! `K` (the host's cue for the next round: it can only arrive through a
//! new driver).  When the next round's echo is written it prints
//! `nic_restart: round R echoed after restart gap_ms=N gap_us=U` (from the kill
//! to the echo, the kernel restarting the driver and TCP retransmitting
//! included) and checks that a new driver process runs.  After the last
//! round it waits for the host to close the connection, then ends with
//! `nic_restart: ok rounds=R kills=K`.
//!
//! Not a differential program (it needs this kernel's driver process): the
//! gap line varies by design and is a measurement, never compared.  Exit 0
//! on success, 1 with `nic_restart: error:` otherwise.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

const MESSAGE: usize = 64;

fn fail(msg: String) -> ! {
    println!("nic_restart: error: {msg}");
    std::process::exit(1);
}

/// The pid of the process named `nicd`, if one runs.
fn driver_pid() -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "nicd" {
            return Some(pid);
        }
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail("usage: nic_restart PORT KILLS".into()));
    let kills: usize = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| fail("usage: nic_restart PORT KILLS".into()));
    let listener = TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(format!("bind 0.0.0.0:{port}: {e}")));
    println!("nic_restart: listening");
    let (mut stream, _) = listener
        .accept()
        .unwrap_or_else(|e| fail(format!("accept: {e}")));
    let _ = stream.set_nodelay(true);
    let mut killed: Option<(i32, Instant)> = None;
    for round in 0..=kills {
        let mut msg = [0u8; MESSAGE];
        stream
            .read_exact(&mut msg)
            .unwrap_or_else(|e| fail(format!("read round {round}: {e}")));
        stream
            .write_all(&msg)
            .unwrap_or_else(|e| fail(format!("echo round {round}: {e}")));
        if let Some((old, at)) = killed.take() {
            let gap = at.elapsed();
            match driver_pid() {
                Some(new) if new != old => {}
                other => fail(format!(
                    "after the kill of pid {old} the driver is {other:?}"
                )),
            }
            println!(
                "nic_restart: round {round} echoed after restart gap_ms={} gap_us={}",
                gap.as_millis(),
                gap.as_micros()
            );
        }
        if round < kills {
            let pid = driver_pid().unwrap_or_else(|| fail("no nicd process in /proc".into()));
            // SAFETY: kill(2) with a pid and a signal number.
            if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
                fail(format!("kill {pid}: {}", std::io::Error::last_os_error()));
            }
            let at = Instant::now();
            // The cue goes out only once the killed driver is gone, so it
            // and the next round can only pass through a new instance.
            while driver_pid() == Some(pid) {
                std::thread::yield_now();
            }
            stream
                .write_all(b"K")
                .unwrap_or_else(|e| fail(format!("cue round {round}: {e}")));
            killed = Some((pid, at));
        }
    }
    // The host closes once it has the last echo: only then may PID 1 end
    // (and the machine with it) without cutting that echo off.
    let mut rest = [0u8; 1];
    match stream.read(&mut rest) {
        Ok(0) => {}
        other => fail(format!("expected the host's close, got {other:?}")),
    }
    println!("nic_restart: ok rounds={} kills={kills}", kills + 1);
}
