//! `net_echo`: the guest side of the host↔guest TCP tests.
//!
//! Two modes, both over AF_INET TCP through std's sockets:
//! - `net_echo serve PORT CONNS`: listens on 0.0.0.0:PORT, prints
//!   `net_echo: listening`, then serves CONNS connections one after another,
//!   echoing every byte back until the peer closes, and prints
//!   `net_echo: served CONN bytes=N` for each.
//! - `net_echo call IP PORT ROUNDS`: connects to IP:PORT (retrying refused
//!   connections for up to 20 s, since the host side may start later), sends
//!   ROUNDS messages of growing size (1..=1400 bytes, a pattern that depends on
//!   the round), checks each echo byte for byte, and prints
//!   `net_echo: call ok rounds=ROUNDS bytes=N`.
//!
//! Exit status 0 on success, 1 on any failure (with a `net_echo: error:` line).
//! Must not print anything that varies between runs (no ports chosen by the
//! system, no timings), so the tests can compare lines exactly.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn fail(msg: String) -> ! {
    println!("net_echo: error: {msg}");
    std::process::exit(1);
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fail(format!("missing or bad {what} (argument {i})")))
}

/// The bytes of round `round`: its length and contents depend on the round.
fn message(round: usize) -> Vec<u8> {
    let len = 1 + (round * 97) % 1400;
    (0..len).map(|i| (i * 31 + round * 7) as u8).collect()
}

fn serve(port: u16, conns: usize) {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(format!("bind 0.0.0.0:{port}: {e}")));
    println!("net_echo: listening");
    for conn in 0..conns {
        let (mut stream, _) = listener
            .accept()
            .unwrap_or_else(|e| fail(format!("accept: {e}")));
        let _ = stream.set_nodelay(true);
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => fail(format!("read: {e}")),
            };
            stream
                .write_all(&buf[..n])
                .unwrap_or_else(|e| fail(format!("write: {e}")));
            total += n;
        }
        println!("net_echo: served {conn} bytes={total}");
    }
}

fn connect_with_retry(addr: SocketAddrV4) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => fail(format!("connect {addr}: {e}")),
        }
    }
}

fn call(addr: SocketAddrV4, rounds: usize) {
    let mut stream = connect_with_retry(addr);
    let _ = stream.set_nodelay(true);
    let mut total = 0usize;
    for round in 0..rounds {
        let msg = message(round);
        stream
            .write_all(&msg)
            .unwrap_or_else(|e| fail(format!("write round {round}: {e}")));
        let mut echo = vec![0u8; msg.len()];
        stream
            .read_exact(&mut echo)
            .unwrap_or_else(|e| fail(format!("read round {round}: {e}")));
        if echo != msg {
            fail(format!("round {round}: echo differs"));
        }
        total += msg.len();
    }
    // Not waiting for the peer's EOF: through QEMU's guestfwd the host side
    // is a character device that never closes.
    let _ = stream.shutdown(Shutdown::Write);
    println!("net_echo: call ok rounds={rounds} bytes={total}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(arg(&args, 2, "PORT"), arg(&args, 3, "CONNS")),
        Some("call") => {
            let ip: std::net::Ipv4Addr = arg(&args, 2, "IP");
            call(
                SocketAddrV4::new(ip, arg(&args, 3, "PORT")),
                arg(&args, 4, "ROUNDS"),
            )
        }
        _ => fail("usage: net_echo serve PORT CONNS | net_echo call IP PORT ROUNDS".into()),
    }
}
