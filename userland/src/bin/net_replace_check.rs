//! net_replace_check: replaces or crashes the network server
//! (`structure=servers`) while a TCP echo with open connections runs, and
//! checks every byte.
//!
//! Both ends of every connection are sockets of netd (loopback): an echo
//! server (a listener on 127.0.0.1 and one thread per accepted connection)
//! and `--conns` client threads, each with one connection open for the
//! whole run, sending messages of 1..=3000 bytes whose contents derive
//! from (client, sequence) and checking each echo byte for byte; every
//! 8th round a client also opens a short-lived second connection (the
//! listener must keep accepting).  Every round trip is timed.
//!
//! `replace` (default): the main thread waits (a handshake on counters,
//! no sleeping) until every client did `--ops` rounds, replaces the
//! server (`ipc_service_replace(SERVICE_NET)`), and repeats `--rounds`
//! times; then every client does `--ops` more.  Prints per replacement
//! `net_replace_check: round R switch_us=S pause_us=P quiesce_us=Q
//! adopt_us=A arena_kib=K call_us=C` (pause: the longest round trip that
//! overlapped the switch as the kernel timed it, `CLOCK_MONOTONIC`), then
//! `net_replace_check: ops=N failed=F wrong=W median_us=M
//! max_us_outside=X` and `net_replace_check: pass` or `FAIL`.
//!
//! `crash`: after a number of rounds drawn from `--seed` (1..=2 `--ops`)
//! it kills netd (SIGKILL).  Every client and echo thread must then see a
//! clean error (`ECONNRESET`, `EPIPE`, `EIO`, or end of file) instead of
//! hanging; then it retries (no sleeping: a failed attempt is retried at
//! once, bounded by a deadline) until a new listener and connection echo
//! again, and prints `net_replace_check: crash after_ops=N
//! errors=NAME:COUNT,.. recovery_us=R` (kill to the first good echo), then
//! `pass` or `FAIL`.
//!
//! `nic PORT BYTES replace|crash CONNS` (host↔guest, through the NIC):
//! listens on 0.0.0.0:PORT and echoes CONNS connections one after
//! another; once the first connection echoed BYTES bytes it replaces
//! (or kills) netd, then goes on echoing; a listener or connection that
//! fails (after a crash) is made again.  Prints `net_replace_check: nic
//! conn N bytes=B end=OK|ERRNO` per connection, then `pass`.  The host
//! side checks the bytes.
//!
//! Must not: sleep to synchronise, or report a pass with any failed or
//! wrong operation (replace) or an unclean error (crash).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use abi::ipc::SERVICE_NET;
use userland::ipc;

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn message(client: usize, seq: u64) -> Vec<u8> {
    let len = 1 + ((seq * 2654435761 + client as u64 * 977) % 3000) as usize;
    (0..len)
        .map(|i| (i as u64 * 31 + seq * 7 + client as u64 * 13) as u8)
        .collect()
}

struct Shared {
    stop: AtomicBool,
    /// Clients still running (one that failed ends early).
    alive: std::sync::atomic::AtomicUsize,
    done: Vec<AtomicU64>,
    port: u16,
}

#[derive(Default)]
struct Outcome {
    ops: Vec<(u64, u64)>,
    failed: Vec<String>,
    wrong: Vec<String>,
    /// The error that ended the connection (crash mode).
    ended: Option<String>,
}

fn error_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => userland::errno_name(n),
        None => format!("{:?}", e.kind()),
    }
}

/// The echo server: accepts until the listener fails, one thread per
/// connection echoing until EOF or an error (recorded in `ends`).
fn echo_server(listener: TcpListener, ends: Arc<Mutex<Vec<String>>>) {
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                let ends = ends.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => {
                                if let Err(e) = s.write_all(&buf[..n]) {
                                    ends.lock().unwrap().push(error_name(&e));
                                    return;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(e) => {
                                ends.lock().unwrap().push(error_name(&e));
                                return;
                            }
                        }
                    }
                });
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                ends.lock()
                    .unwrap()
                    .push(format!("accept:{}", error_name(&e)));
                return;
            }
        }
    }
}

/// One round trip of `msg` on `s`: Ok(true) echoed right, Ok(false) wrong.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<bool> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    let mut got = 0;
    while got < back.len() {
        match s.read(&mut back[got..])? {
            0 => return Err(std::io::Error::from(ErrorKind::UnexpectedEof)),
            n => got += n,
        }
    }
    Ok(back == msg)
}

fn client(id: usize, shared: &Shared, crash: bool) -> Outcome {
    let mut out = Outcome::default();
    let mut s = match TcpStream::connect(("127.0.0.1", shared.port)) {
        Ok(s) => s,
        Err(e) => {
            out.failed.push(format!("client {id}: connect: {e}"));
            return out;
        }
    };
    let _ = s.set_nodelay(true);
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        let msg = message(id, seq);
        let t0 = mono_ns();
        let r = round_trip(&mut s, &msg);
        let t1 = mono_ns();
        out.ops.push((t0, t1 - t0));
        match r {
            Ok(true) => {}
            Ok(false) => out
                .wrong
                .push(format!("client {id} round {seq}: wrong echo")),
            Err(e) if crash => {
                out.ended = Some(match e.kind() {
                    ErrorKind::UnexpectedEof => "EOF".into(),
                    _ => error_name(&e),
                });
                return out;
            }
            Err(e) => {
                out.failed.push(format!("client {id} round {seq}: {e}"));
                return out;
            }
        }
        if seq % 8 == 7 && !crash {
            // A short-lived second connection through the listener.
            let t0 = mono_ns();
            let r = TcpStream::connect(("127.0.0.1", shared.port)).and_then(|mut c| {
                let ok = round_trip(&mut c, &message(id + 1000, seq))?;
                let _ = c.shutdown(Shutdown::Both);
                Ok(ok)
            });
            out.ops.push((t0, mono_ns() - t0));
            match r {
                Ok(true) => {}
                Ok(false) => out
                    .wrong
                    .push(format!("client {id} side {seq}: wrong echo")),
                Err(e) => out.failed.push(format!("client {id} side {seq}: {e}")),
            }
        }
        seq += 1;
        shared.done[id].fetch_add(1, Ordering::Release);
    }
    out
}

fn wait_rounds(shared: &Shared, target: &[u64], deadline: Instant) -> bool {
    loop {
        if shared
            .done
            .iter()
            .zip(target)
            .all(|(d, t)| d.load(Ordering::Acquire) >= *t)
        {
            return true;
        }
        if Instant::now() > deadline || shared.alive.load(Ordering::Acquire) == 0 {
            return false;
        }
        std::thread::yield_now();
    }
}

fn netd_pid() -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Name:", "netd"])
        {
            return Some(pid);
        }
    }
    None
}

/// The `nic` mode (see the file's comment).
fn nic_mode(args: &[String]) -> ! {
    let num = |i: usize| -> u64 {
        args.get(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            println!("net_replace_check: FAIL usage: nic PORT BYTES replace|crash CONNS");
            std::process::exit(2)
        })
    };
    let (port, bytes, conns) = (num(1) as u16, num(2), num(4));
    let crash = args.get(3).map(String::as_str) == Some("crash");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acted = false;
    let mut served = 0;
    while served < conns {
        let listener = match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::yield_now();
                continue;
            }
            Err(e) => {
                println!("net_replace_check: FAIL bind: {e}");
                std::process::exit(1);
            }
        };
        println!("net_replace_check: nic listening");
        while served < conns {
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut total = 0u64;
            let mut buf = vec![0u8; 4096];
            let end = loop {
                match s.read(&mut buf) {
                    Ok(0) => break "OK".to_string(),
                    Ok(n) => {
                        if let Err(e) = s.write_all(&buf[..n]) {
                            break error_name(&e);
                        }
                        total += n as u64;
                        if !acted && total >= bytes {
                            acted = true;
                            if crash {
                                match netd_pid() {
                                    // SAFETY: kill(2) with a pid and a signal number.
                                    Some(pid) => unsafe {
                                        libc::kill(pid, libc::SIGKILL);
                                    },
                                    None => println!("net_replace_check: FAIL no netd"),
                                }
                            } else if let Err(e) = ipc::service_replace(SERVICE_NET, "") {
                                println!("net_replace_check: FAIL replace: errno {e}");
                                std::process::exit(1);
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => break error_name(&e),
                }
            };
            served += 1;
            println!("net_replace_check: nic conn {served} bytes={total} end={end}");
        }
    }
    println!("net_replace_check: pass");
    std::process::exit(0);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("nic") {
        nic_mode(&args);
    }
    let mut mode = "replace".to_string();
    let mut conns = 4usize;
    let mut rounds = 3usize;
    let mut ops = 100u64;
    let mut seed = 0u64;
    let mut port = 7700u16;
    let mut i = 0;
    while i < args.len() {
        let val = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    println!("net_replace_check: FAIL bad value for {}", args[i]);
                    std::process::exit(2)
                })
        };
        match args[i].as_str() {
            "replace" | "crash" => {
                mode = args[i].clone();
                i += 1;
                continue;
            }
            "--conns" => conns = val(i).max(1) as usize,
            "--rounds" => rounds = val(i) as usize,
            "--ops" => ops = val(i).max(1),
            "--seed" => seed = val(i),
            "--port" => port = val(i) as u16,
            other => {
                println!("net_replace_check: FAIL unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let crash = mode == "crash";
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            println!("net_replace_check: FAIL bind: {e}");
            std::process::exit(1);
        }
    };
    let ends = Arc::new(Mutex::new(Vec::new()));
    {
        let ends = ends.clone();
        std::thread::spawn(move || echo_server(listener, ends));
    }
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        alive: std::sync::atomic::AtomicUsize::new(conns),
        done: (0..conns).map(|_| AtomicU64::new(0)).collect(),
        port,
    });
    let workers: Vec<_> = (0..conns)
        .map(|id| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let o = client(id, &shared, crash);
                shared.alive.fetch_sub(1, Ordering::AcqRel);
                o
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut draw = |max: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + (rng >> 33) % max
    };
    let mut fail = Vec::new();
    if crash {
        let after = if seed == 0 { ops } else { draw(2 * ops) };
        if !wait_rounds(&shared, &vec![after; conns], deadline) {
            fail.push("clients did not reach the crash point".to_string());
        }
        let Some(pid) = netd_pid() else {
            println!("net_replace_check: FAIL no netd process found");
            std::process::exit(1);
        };
        let killed = mono_ns();
        // SAFETY: kill(2) with a pid and a signal number.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            println!("net_replace_check: FAIL kill: errno {}", userland::errno());
            std::process::exit(1);
        }
        // Every client must end with a clean error (joining proves none hung).
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        for w in workers {
            let o = w.join().unwrap_or_default();
            fail.extend(o.failed);
            fail.extend(o.wrong);
            match o.ended {
                Some(e) => *errors.entry(e).or_default() += 1,
                None => fail.push("a client ended without an error".into()),
            }
        }
        for e in ends.lock().unwrap().iter() {
            *errors.entry(format!("server:{e}")).or_default() += 1;
        }
        let clean = ["ECONNRESET", "EPIPE", "EIO", "EOF", "EBADF", "ECONNABORTED"];
        for name in errors.keys() {
            let bare = name
                .trim_start_matches("server:")
                .trim_start_matches("accept:");
            if !clean.contains(&bare) {
                fail.push(format!("unclean error {name}"));
            }
        }
        // Recovery: a new listener and connection must echo again.
        let recovered = loop {
            let attempt = TcpListener::bind(("127.0.0.1", port + 1)).and_then(|l| {
                let t = std::thread::spawn(move || -> std::io::Result<()> {
                    let (mut s, _) = l.accept()?;
                    let mut buf = vec![0u8; 1400];
                    let n = s.read(&mut buf)?;
                    s.write_all(&buf[..n])
                });
                let mut c = TcpStream::connect(("127.0.0.1", port + 1))?;
                let ok = round_trip(
                    &mut c,
                    &message(99, 1).into_iter().take(1400).collect::<Vec<_>>(),
                )?;
                t.join()
                    .map_err(|_| std::io::Error::from(ErrorKind::Other))??;
                Ok(ok)
            });
            match attempt {
                Ok(true) => break Some(mono_ns()),
                Ok(false) => {
                    fail.push("wrong echo after the restart".into());
                    break None;
                }
                Err(_) if Instant::now() < deadline => std::thread::yield_now(),
                Err(e) => {
                    fail.push(format!("no echo after the restart: {e}"));
                    break None;
                }
            }
        };
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!(
            "net_replace_check: crash after_ops={after} errors={} recovery_us={}",
            list.join(","),
            recovered.map_or(0, |t| (t - killed) / 1000)
        );
    } else {
        let mut windows = Vec::new();
        let mut target = vec![0u64; conns];
        for round in 1..=rounds {
            let step = if seed == 0 { ops } else { draw(2 * ops) };
            for (t, d) in target.iter_mut().zip(&shared.done) {
                *t = d.load(Ordering::Acquire) + step;
            }
            if !wait_rounds(&shared, &target, deadline) {
                fail.push(format!("round {round}: clients stalled"));
                break;
            }
            let c0 = mono_ns();
            match ipc::service_replace(SERVICE_NET, "") {
                Ok(s) => {
                    let c1 = mono_ns();
                    windows.push((
                        s.switch_begin_ns,
                        s.switch_begin_ns + s.switch_ns,
                        s,
                        c0,
                        c1,
                    ));
                }
                Err(e) => fail.push(format!("round {round}: replace: errno {e}")),
            }
        }
        for (t, d) in target.iter_mut().zip(&shared.done) {
            *t = d.load(Ordering::Acquire) + ops;
        }
        if !wait_rounds(&shared, &target, deadline) {
            fail.push("after the last round: clients stalled".into());
        }
        shared.stop.store(true, Ordering::Release);
        let mut all = Vec::new();
        let mut wrong = 0;
        let mut failed = 0;
        for w in workers {
            let o = w.join().unwrap_or_default();
            failed += o.failed.len();
            wrong += o.wrong.len();
            fail.extend(o.failed);
            fail.extend(o.wrong);
            all.extend(o.ops);
        }
        for (r, (b, e, s, c0, c1)) in windows.iter().enumerate() {
            let pause = all
                .iter()
                .filter(|(t, d)| *t < *e && t + d > *b)
                .map(|(_, d)| *d)
                .max()
                .unwrap_or(0);
            println!(
                "net_replace_check: round {} switch_us={} pause_us={} quiesce_us={} adopt_us={} arena_kib={} call_us={}",
                r + 1,
                s.switch_ns / 1000,
                pause / 1000,
                s.export_ns / 1000,
                s.import_ns / 1000,
                s.image_bytes / 1024,
                (c1 - c0) / 1000
            );
        }
        let mut lat: Vec<u64> = all.iter().map(|(_, d)| *d).collect();
        lat.sort_unstable();
        let median = lat.get(lat.len() / 2).copied().unwrap_or(0);
        let outside = all
            .iter()
            .filter(|(t, d)| {
                windows
                    .iter()
                    .all(|(_, _, _, c0, c1)| t + d < *c0 || *t > *c1)
            })
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(0);
        println!(
            "net_replace_check: ops={} failed={failed} wrong={wrong} median_us={} max_us_outside={}",
            all.len(),
            median / 1000,
            outside / 1000
        );
    }
    if fail.is_empty() {
        println!("net_replace_check: pass");
    } else {
        for f in fail.iter().take(20) {
            println!("net_replace_check: FAIL {f}");
        }
        std::process::exit(1);
    }
}
