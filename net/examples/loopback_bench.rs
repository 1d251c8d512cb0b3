//! Host benchmark of the stack logic: 64-byte TCP round trips per second over
//! loopback with T client/server pairs (pair i on "CPU" i) for T = 1, 2, 4,
//! in per-CPU and global mode, and one-pair TCP stream MB/s.  Prints one JSON
//! line per case; asserts nothing.  Run:
//! `cargo run --release -p net --example loopback_bench`.
//! Threads stand in for CPUs but are not pinned: on a host with fewer cores
//! than threads the curve flattens.

use net::consts::*;
use net::{errno, Config, LockMode, Platform, SockType, SocketAddrV4, SocketRef, Stack};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

#[derive(Default)]
struct Waiters {
    generation: Mutex<u64>,
    cv: Condvar,
}

struct BenchPlatform {
    start: Instant,
    rng: AtomicU64,
}

impl Platform for BenchPlatform {
    type Waiters = Waiters;
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn current_cpu(&self) -> usize {
        CPU.with(|c| c.get())
    }
    fn notify(&self, w: &Waiters) {
        *w.generation.lock().unwrap() += 1;
        w.cv.notify_all();
    }
    fn transmit_frame(&self, _frame: &[u8]) {}
    fn random_u64(&self) -> u64 {
        self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }
}

type St = Stack<BenchPlatform>;
type Sock = SocketRef<BenchPlatform>;

fn wait(st: &St, s: &Sock, mask: u32) {
    loop {
        let w = s.waiters();
        let g = *w.generation.lock().unwrap();
        if s.poll_events() & mask != 0 {
            return;
        }
        st.poll(CPU.with(|c| c.get()));
        let guard = w.generation.lock().unwrap();
        if *guard == g {
            let _ = w.cv.wait_timeout(guard, Duration::from_millis(2)).unwrap();
        }
    }
}

fn send_all(st: &St, s: &Sock, mut d: &[u8]) -> bool {
    while !d.is_empty() {
        match s.send(d, None) {
            Ok(n) => d = &d[n..],
            Err(errno::EAGAIN) => wait(st, s, EPOLLOUT | EPOLLERR | EPOLLHUP),
            Err(_) => return false,
        }
    }
    true
}

fn recv_exact(st: &St, s: &Sock, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match s.recv(&mut buf[got..], false) {
            Ok((0, _)) => return false,
            Ok((n, _)) => got += n,
            Err(errno::EAGAIN) => wait(st, s, EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP),
            Err(_) => return false,
        }
    }
    true
}

fn connect(st: &St, addr: SocketAddrV4) -> Sock {
    let s = st.socket(SockType::Stream).unwrap();
    if s.connect(addr) == Err(errno::EINPROGRESS) {
        wait(st, &s, EPOLLOUT | EPOLLERR | EPOLLHUP);
        s.connect(addr).unwrap();
    }
    s.setsockopt(IPPROTO_TCP, TCP_NODELAY, &1i32.to_ne_bytes())
        .unwrap();
    s
}

fn new_stack(cpus: usize, mode: LockMode) -> St {
    Stack::new(
        BenchPlatform {
            start: Instant::now(),
            rng: AtomicU64::new(1),
        },
        Config::new(cpus, mode),
    )
}

fn listener(st: &St, port: u16) -> Sock {
    let l = st.socket(SockType::Stream).unwrap();
    l.bind(SocketAddrV4::new(net::Ipv4Addr::LOCALHOST, port))
        .unwrap();
    l.listen(128).unwrap();
    l
}

fn accept(st: &St, l: &Sock) -> Sock {
    loop {
        match l.accept() {
            Ok((s, _)) => return s,
            Err(_) => wait(st, l, EPOLLIN),
        }
    }
}

fn rr(mode: LockMode, pairs: usize, secs: f64) -> f64 {
    let st = new_stack(pairs.max(1), mode);
    let l = Arc::new(listener(&st, 5000));
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(Barrier::new(pairs + 1));
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for c in 0..pairs {
        let (st2, l2) = (st.clone(), l.clone());
        servers.push(std::thread::spawn(move || {
            CPU.with(|x| x.set(c));
            let s = accept(&st2, &l2);
            let mut b = [0u8; 64];
            while recv_exact(&st2, &s, &mut b) {
                if !send_all(&st2, &s, &b) {
                    break;
                }
            }
        }));
        let (st2, stop2, go2) = (st.clone(), stop.clone(), go.clone());
        clients.push(std::thread::spawn(move || {
            CPU.with(|x| x.set(c));
            let s = connect(&st2, SocketAddrV4::new(net::Ipv4Addr::LOCALHOST, 5000));
            go2.wait();
            let mut ops = 0u64;
            let msg = [1u8; 64];
            let mut b = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) {
                send_all(&st2, &s, &msg);
                recv_exact(&st2, &s, &mut b);
                ops += 1;
            }
            s.close();
            ops
        }));
    }
    go.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = clients.into_iter().map(|h| h.join().unwrap()).sum();
    let el = t0.elapsed().as_secs_f64();
    for h in servers {
        h.join().unwrap();
    }
    ops as f64 / el
}

fn stream(mode: LockMode, secs: f64) -> f64 {
    let st = new_stack(1, mode);
    let l = listener(&st, 5001);
    let st2 = st.clone();
    let rx = std::thread::spawn(move || {
        let s = connect(&st2, SocketAddrV4::new(net::Ipv4Addr::LOCALHOST, 5001));
        let mut b = vec![0u8; 65536];
        let mut total = 0u64;
        loop {
            match s.recv(&mut b, false) {
                Ok((0, _)) => return total,
                Ok((n, _)) => total += n as u64,
                Err(errno::EAGAIN) => wait(&st2, &s, EPOLLIN | EPOLLHUP | EPOLLRDHUP),
                Err(_) => return total,
            }
        }
    });
    let s = accept(&st, &l);
    let chunk = vec![3u8; 65536];
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs {
        send_all(&st, &s, &chunk);
    }
    s.close();
    let total = rx.join().unwrap();
    total as f64 / t0.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let secs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1.0);
    for (mode, name) in [(LockMode::PerCpu, "percpu"), (LockMode::Global, "global")] {
        for t in [1, 2, 4] {
            let ops = rr(mode, t, secs);
            println!(
                "{{\"name\":\"tcp_rr_64\",\"mode\":\"{name}\",\"threads\":{t},\"ops_per_sec\":{ops:.0}}}"
            );
        }
        let mbs = stream(mode, secs);
        println!(
            "{{\"name\":\"tcp_stream\",\"mode\":\"{name}\",\"threads\":1,\"mb_per_sec\":{mbs:.1}}}"
        );
    }
}
