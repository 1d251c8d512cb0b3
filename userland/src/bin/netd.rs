//! netd: the user-mode network server of `structure=servers`
//! (docs/SERVERS.md, "Network service" and "Sockets in servers mode").
//! The kernel starts it after the file server and before `/init`; it runs
//! the same `net` crate the monolithic kernel links (loopback, and the NIC
//! when the kernel passes `nic=`: frames then go through the rings of the
//! NIC driver process, `userland::netd_nic`), creates an endpoint, registers it
//! as `SERVICE_NET` and answers the kernel's delegated AF_INET socket
//! calls (`netproto` messages) in an `ipc_reply_recv` loop.
//!
//! Readiness reports go to the notification the kernel put into this
//! process's handle table and named in `Attach { notify }`: `ipc_notify`
//! raises the ready bit there, and the kernel's collector thread answers
//! with `PollChanged`.
//!
//! Timers: the kernel's IPC has no receive timeout, so a second thread
//! (the timer thread) sleeps until the stack's next timer (at most one
//! 10 ms tick) and runs it (`NetServer::tick`).  `net::Stack` is shared
//! by design (its instances are locked; the kernel's net threads run
//! timers while system calls on other CPUs use the same instances), so
//! the timer thread and the server thread may use instance 0 at once.
//!
//! Arguments (the kernel writes them): `locks=percpu|global`,
//! `placement=single|percore|dedicated` and `cpus=N`: the serving threads
//! (`userland::placement::plan`), all on the one endpoint, thread `i`
//! serving as worker `i` (loopback instance `i`, handle shard `i`); the
//! timer thread runs every instance's timers; and `nic=IP/PREFIX[,gw=IP]`
//! when a NIC driver process serves this server.
//!
//! Owns: the IPC `Transport` (one endpoint, one per serving thread), the IPC
//! `Signal` (client → notification handle), the timer thread, mapping the
//! kernel's badge to the one client id the server knows.
//!
//! Must not: make socket calls itself (the kernel would delegate them to
//! this very server), or exit while the kernel needs it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi::ipc::SERVICE_NET;
use net::LockMode;
use netd::{Config, Incoming, NetServer, Signal, Transport};
use netproto::{Message, MAX_PAYLOAD};
use userland::{ipc, placement};

/// The badge bit of calls the kernel makes for user threads
/// (`kernel/src/ipc/mod.rs` `KERNEL_BADGE`).  All of them are one client.
const KERNEL_BADGE: u64 = 1 << 63;
/// The client id of the kernel.
const KERNEL_CLIENT: u64 = 1;

/// The server's endpoint: requests in, replies out through
/// `ipc_reply_recv` (a reply is sent with the next receive).  The
/// timeout `serve` asks for is not honoured (no receive timeout in the
/// IPC): the timer thread runs the timers instead.
struct IpcTransport {
    endpoint: u64,
    buf: Vec<u8>,
    pending: Option<(u64, Message)>,
}

impl Transport for IpcTransport {
    type Caller = u64;

    fn recv(&mut self, _timeout_ms: Option<u64>) -> Incoming<u64> {
        loop {
            let (token, reply) = self.pending.take().unwrap_or((0, Message::default()));
            let got = ipc::reply_recv(
                self.endpoint,
                token,
                reply.label,
                reply.words,
                &reply.payload,
                &mut self.buf,
            );
            match got {
                Ok(r) => {
                    let client = if r.badge & KERNEL_BADGE != 0 {
                        KERNEL_CLIENT
                    } else {
                        r.badge | 1 << 62
                    };
                    let msg = Message {
                        label: r.label,
                        words: r.words,
                        payload: self.buf[..r.len.min(self.buf.len())].to_vec(),
                    };
                    return Incoming::Request(r.token, client, msg);
                }
                Err(e) if e == libc::EINTR || e == libc::EPIPE => continue,
                Err(e) => {
                    eprintln!("netd: ipc_reply_recv failed: errno {e}");
                    return Incoming::Closed;
                }
            }
        }
    }

    fn reply(&mut self, caller: u64, reply: Message) {
        self.pending = Some((caller, reply));
    }
}

/// Readiness signals through IPC notifications: each client's handle,
/// given by its `Attach`.
#[derive(Default)]
struct IpcSignal {
    handles: Mutex<HashMap<u64, u64>>,
}

impl Signal for IpcSignal {
    fn signal(&self, client: u64, bits: u64) {
        let h = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .copied();
        if let Some(h) = h {
            if let Err(e) = ipc::notify(h, bits) {
                eprintln!("netd: ipc_notify({h:#x}) failed: errno {e}");
            }
        }
    }

    fn attach(&self, client: u64, notify: u64) {
        let mut map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if notify == 0 {
            map.remove(&client);
        } else {
            map.insert(client, notify);
        }
    }
}

fn main() {
    let mut mode = LockMode::PerCpu;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (place, cpus) = placement::from_args(&args);
    let mut nic_arg = None;
    for arg in args {
        if let Some(v) = arg.strip_prefix("locks=") {
            mode = LockMode::from_name(v).unwrap_or(LockMode::PerCpu);
        } else if let Some(v) = arg.strip_prefix("nic=") {
            nic_arg = Some(v.to_string());
        }
    }
    let _ = percpu::set_lock_mode(mode);
    // One loopback instance and handle shard per serving thread.
    let plan = placement::plan(place, cpus);
    let workers = plan.len();
    let mut config = Config::new(workers, mode);
    let nic = nic_arg.and_then(|a| match userland::netd_nic::attach(&a) {
        Ok(attached) => Some(attached),
        Err(e) => {
            eprintln!("netd: no NIC: {e}");
            None
        }
    });
    config.stack.eth = nic.as_ref().map(|n| n.eth);
    let server = Arc::new(NetServer::new(
        config,
        Arc::new(IpcSignal::default()),
        nic.as_ref().map(|n| n.sink()),
    ));
    if let Some(nic) = nic {
        let rx = server.clone();
        let spawned = std::thread::Builder::new()
            .name("netd-nic-rx".into())
            .spawn(move || nic.receive_loop(|frame| rx.receive_frame(frame)));
        if let Err(e) = spawned {
            eprintln!("netd: cannot start the NIC receive thread: {e}");
            std::process::exit(1);
        }
    }
    let endpoint = match ipc::endpoint_create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("netd: ipc_endpoint_create failed: errno {e}");
            std::process::exit(1);
        }
    };
    let timers = server.clone();
    let spawned = std::thread::Builder::new()
        .name("netd-timers".into())
        .spawn(move || loop {
            let now = net::Platform::now_ms(timers.stack().platform());
            let wait = (0..workers)
                .filter_map(|w| timers.stack().next_poll_ms(w))
                .min()
                .map_or(netd::server::TICK_MS, |t| {
                    t.saturating_sub(now).min(netd::server::TICK_MS)
                })
                .max(1);
            std::thread::sleep(Duration::from_millis(wait));
            for w in 0..workers {
                timers.tick(w);
            }
        });
    if let Err(e) = spawned {
        eprintln!("netd: cannot start the timer thread: {e}");
        std::process::exit(1);
    }
    // Every serving thread receives on the one endpoint; the kernel gives
    // a call to the thread waiting on the caller's CPU.
    for (worker, &cpu) in plan.iter().enumerate().skip(1) {
        let server = server.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("netd-{worker}"))
            .spawn(move || serve(&server, worker, cpu, endpoint));
        if let Err(e) = spawned {
            eprintln!("netd: cannot start serving thread {worker}: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = ipc::register_service(endpoint, SERVICE_NET) {
        eprintln!("netd: ipc_register_service failed: errno {e}");
        std::process::exit(1);
    }
    serve(&server, 0, plan[0], endpoint);
}

/// One serving thread: pinned to `cpu` (if any), serves as `worker` (its
/// loopback instance and handle shard) until the endpoint closes, then
/// ends the server.
fn serve(server: &NetServer, worker: usize, cpu: Option<usize>, endpoint: u64) -> ! {
    if let Some(cpu) = cpu {
        if let Err(e) = placement::pin(cpu) {
            eprintln!("netd: cannot pin serving thread {worker} to cpu {cpu}: errno {e}");
        }
    }
    let mut transport = IpcTransport {
        endpoint,
        buf: vec![0; MAX_PAYLOAD],
        pending: None,
    };
    server.serve(worker, &mut transport);
    eprintln!("netd: endpoint closed, exiting");
    std::process::exit(1);
}
