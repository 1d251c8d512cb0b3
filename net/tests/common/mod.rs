//! Host test shim: a `Platform` whose "CPU" is a thread-local set by each
//! test thread, whose waiters are a Condvar, and whose NIC records frames.
//! Also blocking helpers built the way the kernel glue must build them:
//! read the waiters' generation, check `poll_events`, wait for a change.
#![allow(dead_code)]

use net::consts::*;
use net::{errno, Config, Errno, LockMode, Platform, SockType, SocketAddrV4, SocketRef, Stack};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
}

/// Make the calling thread "run on" `cpu`.
pub fn set_cpu(cpu: usize) {
    CPU.with(|c| c.set(cpu));
}

pub fn cpu() -> usize {
    CPU.with(|c| c.get())
}

#[derive(Default)]
pub struct Waiters {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Waiters {
    /// How many times these waiters were notified.
    pub fn generation(&self) -> u64 {
        *self.generation.lock().unwrap()
    }
}

pub struct TestPlatform {
    start: Instant,
    rng: AtomicU64,
    pub frames: Mutex<Vec<Vec<u8>>>,
    /// Added to the clock: tests move time forward with it.
    pub skew_ms: AtomicU64,
    /// Set by `freeze`: the clock reads `skew_ms` only, so no timer fires
    /// unless the test calls `advance` (tests that count what happens
    /// before a retransmission, whatever the host's load).
    pub frozen: AtomicBool,
}

impl TestPlatform {
    pub fn new() -> Self {
        TestPlatform {
            start: Instant::now(),
            rng: AtomicU64::new(0x1234_5678_9abc_def1),
            frames: Mutex::new(Vec::new()),
            skew_ms: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
        }
    }
}

impl Platform for TestPlatform {
    type Waiters = Waiters;
    fn now_ms(&self) -> u64 {
        let skew = self.skew_ms.load(Ordering::Relaxed);
        if self.frozen.load(Ordering::Acquire) {
            return skew;
        }
        self.start.elapsed().as_millis() as u64 + skew
    }
    fn current_cpu(&self) -> usize {
        cpu()
    }
    fn notify(&self, w: &Waiters) {
        *w.generation.lock().unwrap() += 1;
        w.cv.notify_all();
    }
    fn transmit_frame(&self, frame: &[u8]) {
        let mut f = self.frames.lock().unwrap();
        if f.len() < 10_000 {
            f.push(frame.to_vec());
        }
    }
    fn random_u64(&self) -> u64 {
        let mut x = self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        x ^= x >> 31;
        x.wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
}

pub type S = Stack<TestPlatform>;
pub type Sock = SocketRef<TestPlatform>;

pub fn stack(cpus: usize, mode: LockMode) -> S {
    Stack::new(TestPlatform::new(), Config::new(cpus, mode))
}

pub fn lo(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(net::Ipv4Addr::LOCALHOST, port)
}

/// Block until `poll_events() & mask != 0` (polling the timers of this CPU
/// as the kernel's tick would).  Panics after 20 s.
pub fn wait(st: &S, s: &Sock, mask: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = s.waiters();
        let g = *w.generation.lock().unwrap();
        let ev = s.poll_events();
        if ev & mask != 0 {
            return ev;
        }
        st.poll(cpu());
        if cpu() != 0 {
            st.poll(0);
        }
        let guard = w.generation.lock().unwrap();
        if *guard == g {
            let _ = w.cv.wait_timeout(guard, Duration::from_millis(5)).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for events {mask:#x}"
        );
    }
}

pub fn so_error(s: &Sock) -> i32 {
    let mut b = [0u8; 4];
    s.getsockopt(SOL_SOCKET, SO_ERROR, &mut b).unwrap();
    i32::from_ne_bytes(b)
}

pub fn connect(st: &S, addr: SocketAddrV4) -> Result<Sock, Errno> {
    let s = st.socket(SockType::Stream)?;
    match s.connect(addr) {
        Ok(()) => return Ok(s),
        Err(errno::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // What the kernel's blocking connect does: wait, then connect again,
    // which reports completion (Ok) or the error, as Linux.
    wait(st, &s, EPOLLOUT | EPOLLERR | EPOLLHUP);
    s.connect(addr).map(|()| s.clone())
}

pub fn listener(st: &S, port: u16, backlog: i32) -> Sock {
    let l = st.socket(SockType::Stream).unwrap();
    l.setsockopt(SOL_SOCKET, SO_REUSEADDR, &1i32.to_ne_bytes())
        .unwrap();
    l.bind(lo(port)).unwrap();
    l.listen(backlog).unwrap();
    l
}

pub fn accept(st: &S, l: &Sock) -> (Sock, SocketAddrV4) {
    loop {
        match l.accept() {
            Ok(r) => return r,
            Err(errno::EAGAIN) => {
                wait(st, l, EPOLLIN);
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

pub fn send_all(st: &S, s: &Sock, mut data: &[u8]) {
    while !data.is_empty() {
        match s.send(data, None) {
            Ok(n) => data = &data[n..],
            Err(errno::EAGAIN) => {
                wait(st, s, EPOLLOUT | EPOLLERR | EPOLLHUP);
            }
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Read exactly `buf.len()` bytes; false on EOF first.
pub fn recv_exact(st: &S, s: &Sock, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match s.recv(&mut buf[got..], false) {
            Ok((0, _)) => return false,
            Ok((n, _)) => got += n,
            Err(errno::EAGAIN) => {
                wait(st, s, EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP);
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    true
}

/// Poll every CPU until `cond` holds (connections finishing in the
/// background); panics after 20 s.
pub fn settle(st: &S, cond: impl Fn(&S) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond(st) {
        for c in 0..st.config().cpus {
            st.poll(c);
        }
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            Instant::now() < deadline,
            "did not settle: {:?}",
            st.stats()
        );
    }
}

/// Stop the stack's clock where it is (only `advance` moves it on).
pub fn freeze(st: &S) {
    let p = st.platform();
    let now = p.start.elapsed().as_millis() as u64;
    p.skew_ms.fetch_add(now, Ordering::Relaxed);
    p.frozen.store(true, Ordering::Release);
}

/// Move the stack's clock forward.
pub fn advance(st: &S, ms: u64) {
    st.platform().skew_ms.fetch_add(ms, Ordering::Relaxed);
}
