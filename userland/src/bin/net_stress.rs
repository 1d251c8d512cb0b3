//! `net_stress`: loopback TCP and UDP under load, with threads on every CPU.
//!
//! `net_stress [THREADS] [CONNS]` (defaults: one thread per CPU, 50
//! connections each).  One shared TCP listener on 127.0.0.1 is served by
//! THREADS accept-and-echo threads; THREADS client threads, each pinned to
//! its own CPU, open CONNS connections each, all of them held open at once
//! (THREADS × CONNS concurrent connections), send a pattern that depends on
//! the thread and connection over every connection, check every echo byte,
//! then close them.  Then every thread runs a UDP echo pair of its own.
//! Prints one line per phase and `net_stress: pass`, or `WRONG:` lines and
//! exit status 1.  No output varies between runs or systems.
//!
//! Handshakes, no timing: a client opens its next connection only once the
//! server has accepted the last one (the echo thread's first byte,
//! `ACCEPTED`), so at most THREADS connections wait in the listen backlog
//! (std's 128) however many are open: on Linux an overflowing backlog drops SYNs
//! and final ACKs, and the connect then waits out retransmission timers of
//! 1, 2, 4 … s or ends in a reset.  The accept threads stop on the first
//! connection they accept after the clients are done (`done`; one wake-up
//! connection per accept thread), however many client connections failed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn pin_to(cpu: usize) {
    // SAFETY: the set lives on this stack and is fully initialised before
    // the call; sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The first byte of every echo connection: the server accepted it.
const ACCEPTED: u8 = b'+';

fn pattern(thread: usize, conn: usize) -> Vec<u8> {
    let len = 100 + (thread * 131 + conn * 17) % 3000;
    (0..len)
        .map(|i| (i + thread * 7 + conn * 3) as u8)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(cpus);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let wrong = Arc::new(AtomicUsize::new(0));

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let listener = Arc::new(listener);
    // Set once every client thread has ended: the next connection an
    // accept thread takes is a wake-up, and it stops.
    let done = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for t in 0..threads {
        let listener = listener.clone();
        let done = done.clone();
        let wrong = wrong.clone();
        servers.push(std::thread::spawn(move || {
            pin_to(t % cpus);
            let mut echoers = Vec::new();
            loop {
                let (mut stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(e) => {
                        println!("WRONG: accept: {e}");
                        wrong.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                };
                if done.load(Ordering::SeqCst) {
                    break;
                }
                echoers.push(std::thread::spawn(move || {
                    if stream.write_all(&[ACCEPTED]).is_err() {
                        return;
                    }
                    let mut buf = [0u8; 2048];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }));
            }
            for e in echoers {
                let _ = e.join();
            }
        }));
    }

    let mut clients = Vec::new();
    for t in 0..threads {
        let wrong = wrong.clone();
        clients.push(std::thread::spawn(move || {
            pin_to(t % cpus);
            let mut streams = Vec::new();
            for c in 0..conns {
                // Connected and accepted (the server's first byte) before
                // the next connect: the backlog never overflows.
                let mut accepted = [0u8; 1];
                match TcpStream::connect(addr).and_then(|mut s| {
                    s.read_exact(&mut accepted)?;
                    Ok(s)
                }) {
                    Ok(s) if accepted[0] == ACCEPTED => streams.push(s),
                    Ok(_) => {
                        println!("WRONG: thread {t} connection {c}: no accept byte");
                        wrong.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        println!("WRONG: thread {t} connect {c}: {e}");
                        wrong.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
            for (c, s) in streams.iter_mut().enumerate() {
                let msg = pattern(t, c);
                let mut echo = vec![0u8; msg.len()];
                if s.write_all(&msg)
                    .and_then(|_| s.read_exact(&mut echo))
                    .is_err()
                    || echo != msg
                {
                    println!("WRONG: thread {t} connection {c}: echo differs or failed");
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for c in clients {
        let _ = c.join();
    }
    // Every client connection is closed: one wake-up connection per accept
    // thread (each stops at the first connection it takes from here on,
    // so each takes exactly one; any left in the backlog close with it).
    done.store(true, Ordering::SeqCst);
    for _ in 0..threads {
        let _ = TcpStream::connect(addr);
    }
    for s in servers {
        let _ = s.join();
    }
    println!("tcp: {threads} threads x {conns} concurrent connections echoed");

    let mut udp = Vec::new();
    for t in 0..threads {
        let wrong = wrong.clone();
        udp.push(std::thread::spawn(move || {
            pin_to(t % cpus);
            let server = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            let client = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            client
                .connect(server.local_addr().unwrap())
                .expect("udp connect");
            let mut buf = [0u8; 1500];
            for round in 0..200usize {
                let msg: Vec<u8> = (0..64).map(|i| (i + round + t) as u8).collect();
                client.send(&msg).expect("udp send");
                let (n, from) = server.recv_from(&mut buf).expect("udp recv_from");
                server.send_to(&buf[..n], from).expect("udp send_to");
                let n = client.recv(&mut buf).expect("udp recv");
                if buf[..n] != msg[..] {
                    println!("WRONG: udp thread {t} round {round}");
                    wrong.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }));
    }
    for u in udp {
        let _ = u.join();
    }
    println!("udp: {threads} threads x 200 datagrams echoed");
    if wrong.load(Ordering::SeqCst) == 0 {
        println!("net_stress: pass");
    } else {
        std::process::exit(1);
    }
}
