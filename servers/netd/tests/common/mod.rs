//! Test set-up: a `NetServer` served by real threads over the channel
//! transport, clients, and the kernel-side helpers built on the
//! notification path (no sleeps, no busy waiting).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::thread::JoinHandle;

use abi::Errno;
use net::LockMode;
use netd::channel::{hub, ClientEnd, Connector};
use netd::client::{Client, Readiness};
use netd::{Config, NetServer};
use netproto::{Handle, Kind};

pub const IN: u32 = 0x001 | 0x008 | 0x010 | 0x2000;
pub const OUT: u32 = 0x004 | 0x008 | 0x010;

pub struct Setup {
    pub server: Arc<NetServer>,
    pub conn: Option<Connector>,
    threads: Vec<JoinHandle<()>>,
}

impl Setup {
    pub fn conn(&self) -> &Connector {
        self.conn.as_ref().expect("connector")
    }

    /// A new client (new id) on server thread `worker`, attached.
    pub fn client(&self, worker: usize) -> Client<ClientEnd> {
        Client::attach(self.conn().connect(worker)).expect("attach")
    }

    /// Stops the server threads (every client end must be gone).
    pub fn stop(mut self) {
        self.conn = None;
        for t in self.threads.drain(..) {
            t.join().expect("server thread");
        }
    }
}

pub fn setup_with(config: Config) -> Setup {
    let (ends, conn) = hub(config.workers);
    let server = Arc::new(NetServer::new(config, conn.notifier(), None));
    let threads = ends
        .into_iter()
        .enumerate()
        .map(|(w, mut end)| {
            let s = server.clone();
            std::thread::spawn(move || s.serve(w, &mut end))
        })
        .collect();
    Setup {
        server,
        conn: Some(conn),
        threads,
    }
}

pub fn setup(workers: usize) -> Setup {
    setup_with(Config::new(workers, LockMode::PerCpu))
}

pub fn lo(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// Waits, through the notification path, until `h`'s events meet `mask`
/// (for a single-threaded client: it collects the reports itself).
pub fn wait_ready(c: &Client<ClientEnd>, h: Handle, mask: u32) -> u32 {
    let ev = c.poll(h, mask).expect("poll");
    if ev & mask != 0 {
        return ev;
    }
    loop {
        c.conn().wait_bits();
        for (rh, ev) in c.collect().expect("collect") {
            if rh == h && ev & mask != 0 {
                return ev;
            }
        }
    }
}

/// connect(2) on a blocking socket: EINPROGRESS, wait for OUT, connect again.
pub fn connect(c: &Client<ClientEnd>, h: Handle, to: SocketAddrV4) -> Result<(), Errno> {
    match c.connect(h, to) {
        Err(Errno::EINPROGRESS) => {}
        r => return r,
    }
    wait_ready(c, h, OUT);
    c.connect(h, to)
}

/// accept(2), blocking.
pub fn accept(c: &Client<ClientEnd>, l: Handle) -> (Handle, SocketAddrV4, SocketAddrV4) {
    loop {
        match c.accept(l) {
            Err(Errno::EAGAIN) => {
                wait_ready(c, l, IN);
            }
            r => return r.expect("accept"),
        }
    }
}

/// recv(2), blocking.
pub fn recv(c: &Client<ClientEnd>, h: Handle, len: usize) -> Vec<u8> {
    loop {
        match c.recv(h, len, false) {
            Err(Errno::EAGAIN) => {
                wait_ready(c, h, IN);
            }
            r => return r.expect("recv").data,
        }
    }
}

/// A connected pair through a listener on `port`: (listener, client side,
/// server side).
pub fn pair(a: &Client<ClientEnd>, b: &Client<ClientEnd>, port: u16) -> (Handle, Handle, Handle) {
    let l = a.socket(Kind::Stream).unwrap();
    a.bind(l, lo(port)).unwrap();
    a.listen(l, 16).unwrap();
    let s = b.socket(Kind::Stream).unwrap();
    connect(b, s, lo(port)).unwrap();
    let (acc, _, _) = accept(a, l);
    (l, s, acc)
}

/// A kernel-style notification handler for one client: a thread with its
/// own client end (same id) that collects reports and wakes `Readiness`
/// waiters; it stops when `STOP_BIT` is signalled.
pub const STOP_BIT: u64 = 1 << 63;

pub fn dispatcher(conn: &Connector, id: u64, worker: usize) -> (Arc<Readiness>, JoinHandle<()>) {
    let r = Arc::new(Readiness::default());
    let end = conn.connect_as(id, worker);
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        let c = Client::new(end);
        loop {
            let bits = c.conn().wait_bits();
            if bits & !STOP_BIT != 0 {
                r2.deliver(&c.collect().expect("collect"));
            }
            if bits & STOP_BIT != 0 {
                return;
            }
        }
    });
    (r, t)
}

pub fn stop_dispatcher(conn: &Connector, id: u64, t: JoinHandle<()>) {
    use netd::Signal;
    conn.notifier().signal(id, STOP_BIT);
    t.join().expect("dispatcher");
}
