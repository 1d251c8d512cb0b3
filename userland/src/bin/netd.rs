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
//! timer thread runs every instance's timers; `nic=IP/PREFIX[,gw=IP]`
//! when a NIC driver process serves this server; and `ring=ADDR,SLOTS,TOKEN`
//! with `placement=dedicated`: the kernel's calls come through request
//! slots it mapped at ADDR (`ring` crate, as the file server's), polled
//! by a thread on the dedicated CPU serving as worker 0 beside the
//! endpoint's thread (which takes the calls that find no free slot).  A
//! successor gets the same slots (`ringadopt=WAKE,DONE`) and the same
//! placement; before the hand-over the kernel parks every serving thread
//! but one (`LABEL_PARK`) and takes the slots from this instance.
//!
//! Owns: the IPC `Transport` (one endpoint, one per serving thread), the IPC
//! `Signal` (client → notification handle), the timer thread, mapping the
//! kernel's badge to the one client id the server knows.
//!
//! **State arena and replacement** (docs/SERVERS.md "Replacing the
//! network server"): with `arena=BASE,LEN` (the kernel maps the same
//! shared memory at BASE into every instance) this program's global
//! allocator is `userland::netd_arena`: from the start of the stack on,
//! every allocation is in the arena, so the whole server (the `net` stack
//! with its smoltcp sockets, connections and listeners, the handle table,
//! readiness state) lives there.  smoltcp's sockets cannot be serialised,
//! so a successor does not get a copy: it re-attaches to the same memory.
//! For a replacement the kernel starts a successor with
//! `handover=H,SERVICE,NOTIFY`; it answers `LABEL_CHECK` (the arena's
//! layout fingerprint must be this build's, else `EPROTO` and a clear
//! message on stderr: the old instance serves on), and `LABEL_ADOPT`
//! once the running instance has quiesced (`LABEL_NET_HANDOVER` on the
//! service endpoint: the timer and NIC threads park at their checkpoints,
//! outside every lock, the root pointer is published, the instance answers
//! and exits without touching the arena again).  The successor adopts the
//! root, re-attaches the kernel's notification and the NIC's rings under
//! its own handles, starts its threads and serves the same endpoint, where
//! calls queued during the switch wait.  After a crash the kernel starts
//! a fresh instance on a fresh arena (`epoch=N`: handle numbers of the
//! dead instance never match).
//!
//! Must not: make socket calls itself (the kernel would delegate them to
//! this very server), exit while the kernel needs it, or touch the arena
//! after it handed over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use abi::ipc::SERVICE_NET;
use net::LockMode;
use netd::{Config, Incoming, NetServer, Signal, Transport};
use netproto::{Message, MAX_PAYLOAD};
use userland::park_gate::ParkGate;
use userland::{ipc, netd_arena, placement};

#[global_allocator]
static ALLOC: netd_arena::ArenaAlloc = netd_arena::ArenaAlloc;

/// On the service endpoint, from the kernel only: quiesce and hand over
/// (`kernel/src/proc/net_server.rs`).
const LABEL_NET_HANDOVER: u64 = 0x4856_0011;
/// On the hand-over endpoint: may this build adopt the arena?
const LABEL_CHECK: u64 = 0x4856_0012;
/// On the hand-over endpoint: adopt the quiesced state and serve.
const LABEL_ADOPT: u64 = 0x4856_0013;
/// On the service endpoint, from the kernel only, before a hand-over:
/// park this serving thread unless it is the last one receiving (`park`),
/// and open the gate again (the hand-over did not happen).
const LABEL_PARK: u64 = 0x4856_0014;
const LABEL_UNPARK: u64 = 0x4856_0015;

/// Set by the quiescing serving thread: helper threads park at their
/// next checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);
/// Helper threads parked.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Helper threads that park at checkpoints (the NIC receive thread).
static HELPERS: AtomicUsize = AtomicUsize::new(0);
/// The timer thread is running timers (it touches the arena only then):
/// with `STOP`, a Dekker pair, so a hand-over never waits for its sleep.
static IN_TICK: AtomicBool = AtomicBool::new(false);
/// The NIC receive thread's notification (0: no NIC).
static NIC_NOTIFY: AtomicU64 = AtomicU64::new(0);
/// The server (in the arena), for the hand-over.
static SERVER: OnceLock<Arc<NetServer>> = OnceLock::new();
/// Serving threads receiving on the endpoint, and the gate parked ones
/// wait at during a hand-over.
static PARK: ParkGate = ParkGate::new();

/// The kernel's `LABEL_PARK` (before a hand-over with several serving
/// threads): unless it is the last one receiving, this thread answers and
/// waits at the gate, outside every lock and touching nothing of the
/// arena, until the gate opens (`ParkGate::park`); the last one answers
/// w0 = 1 and serves on, to take the hand-over.
fn park(token: u64) -> Option<Message> {
    (!PARK.park(token)).then(|| Message {
        label: 0,
        words: [1, 0, 0, 0],
        payload: Vec::new(),
    })
}

/// Where a helper thread holds nothing: parks it while a hand-over is
/// under way (for good once it succeeded: the process exits).
fn checkpoint() {
    if STOP.load(Ordering::Acquire) {
        PARKED.fetch_add(1, Ordering::AcqRel);
        checkpoint_wait();
        PARKED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits while a hand-over is under way (touching nothing of the arena).
fn checkpoint_wait() {
    while STOP.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// This build's layout fingerprint: the arena stores vtable and function
/// pointers and the layouts of the server's types, so only a successor
/// with the same code addresses and type sizes may adopt it.  (An upgraded
/// build with other code must move state explicitly instead.)
fn fingerprint() -> u64 {
    let parts: [u64; 9] = [
        u64::from(netd_arena::VERSION),
        std::mem::size_of::<NetServer>() as u64,
        std::mem::size_of::<netd::server::Sock>() as u64,
        std::mem::size_of::<net::Stack<netd::ServerPlatform>>() as u64,
        main as *const () as usize as u64,
        checkpoint as *const () as usize as u64,
        <IpcSignal as Signal>::signal as *const () as usize as u64,
        NetServer::handle as *const () as usize as u64,
        netd::server::TICK_MS,
    ];
    // FNV-1a over the parts and the package version.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in parts
        .iter()
        .flat_map(|p| p.to_le_bytes())
        .chain(env!("CARGO_PKG_VERSION").bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

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
                Ok(r) if r.label == LABEL_NET_HANDOVER && r.badge & KERNEL_BADGE != 0 => {
                    // Returns only if the hand-over was refused.
                    let e = quiesce(r.token);
                    PARK.unpark();
                    self.pending = Some((r.token, Message::error(abi::Errno(e))));
                }
                Ok(r) if r.label == LABEL_PARK && r.badge & KERNEL_BADGE != 0 => {
                    if let Some(reply) = park(r.token) {
                        self.pending = Some((r.token, reply));
                    }
                }
                Ok(r) if r.label == LABEL_UNPARK && r.badge & KERNEL_BADGE != 0 => {
                    PARK.unpark();
                    self.pending = Some((r.token, Message::default()));
                }
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
/// given by its `Attach`, and per report shard the handle its
/// `NotifyShard` gave (one collector per CPU in the kernel).
#[derive(Default)]
struct IpcSignal {
    /// (client, shard) → notification handle; shard `None`: the client's.
    handles: Mutex<HashMap<(u64, Option<usize>), u64>>,
}

impl IpcSignal {
    fn notify(&self, client: u64, shard: Option<usize>, bits: u64) {
        let h = {
            let map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
            shard
                .and_then(|s| map.get(&(client, Some(s))))
                .or_else(|| map.get(&(client, None)))
                .copied()
        };
        if let Some(h) = h {
            if let Err(e) = ipc::notify(h, bits) {
                eprintln!("netd: ipc_notify({h:#x}) failed: errno {e}");
            }
        }
    }
}

impl Signal for IpcSignal {
    fn signal(&self, client: u64, bits: u64) {
        self.notify(client, None, bits);
    }

    fn signal_shard(&self, client: u64, shard: usize, bits: u64) {
        self.notify(client, Some(shard), bits);
    }

    fn attach(&self, client: u64, notify: u64) {
        let mut map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        // A new generation (or a successor's own handle numbers): the
        // client names its shard notifications again if it has any.
        map.retain(|&(c, _), _| c != client);
        if notify != 0 {
            map.insert((client, None), notify);
        }
    }

    fn attach_shard(&self, client: u64, shard: usize, notify: u64) -> Result<(), abi::Errno> {
        let mut map = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if notify == 0 {
            map.remove(&(client, Some(shard)));
        } else {
            map.insert((client, Some(shard)), notify);
        }
        Ok(())
    }
}

/// The running instance hands over (the serving thread that took the
/// kernel's request): parks the helpers, publishes the root, answers and
/// exits.  Returns an errno (and serves on) if it cannot.
fn quiesce(token: u64) -> i32 {
    let Some(server) = SERVER.get() else {
        return libc::EOPNOTSUPP;
    };
    if PARK.receiving() != 1 {
        // The kernel parks the other serving threads first (`LABEL_PARK`);
        // and takes the request slots from this instance (owner word).
        eprintln!("netd: hand-over refused: other serving threads are not parked");
        return libc::EBUSY;
    }
    if netd_arena::describe().is_none() {
        eprintln!("netd: hand-over refused: no state arena");
        return libc::EOPNOTSUPP;
    }
    let t0 = Instant::now();
    STOP.store(true, Ordering::SeqCst);
    let nic = NIC_NOTIFY.load(Ordering::Acquire);
    if nic != 0 {
        let _ = ipc::notify(nic, 1 << 40);
    }
    while PARKED.load(Ordering::Acquire) < HELPERS.load(Ordering::Acquire)
        || IN_TICK.load(Ordering::SeqCst)
    {
        if t0.elapsed() > Duration::from_secs(2) {
            eprintln!("netd: hand-over refused: a helper thread did not park");
            STOP.store(false, Ordering::Release);
            return libc::EBUSY;
        }
        std::thread::yield_now();
    }
    let ns = t0.elapsed().as_nanos() as u64;
    netd_arena::hand_over_root(server.clone());
    // From here on nothing may touch the arena: answer and go.
    let _ = ipc::reply(token, 0, [ns, 0, 0, 0], &[]);
    // SAFETY: _exit ends the process at once (no destructors, no flush of
    // buffers that live in the arena).
    unsafe { libc::_exit(0) }
}

/// The timer thread: runs every instance's timers.  It touches the arena
/// only between setting and clearing `IN_TICK` (not while it sleeps).
fn start_timers(server: Arc<NetServer>, workers: usize) {
    // The thread's bookkeeping in this instance's own heap (it goes with
    // the instance, not with the state: `netd_arena::private`).
    let spawned = netd_arena::private(|| {
        std::thread::Builder::new()
            .name("netd-timers".into())
            .spawn(move || {
                let mut wait = 1;
                loop {
                    std::thread::sleep(Duration::from_millis(wait));
                    IN_TICK.store(true, Ordering::SeqCst);
                    if STOP.load(Ordering::SeqCst) {
                        IN_TICK.store(false, Ordering::SeqCst);
                        checkpoint_wait();
                        continue;
                    }
                    for w in 0..workers {
                        server.tick(w);
                    }
                    let now = net::Platform::now_ms(server.stack().platform());
                    wait = (0..workers)
                        .filter_map(|w| server.stack().next_poll_ms(w))
                        .min()
                        .map_or(netd::server::TICK_MS, |t| {
                            t.saturating_sub(now).min(netd::server::TICK_MS)
                        })
                        .max(1);
                    IN_TICK.store(false, Ordering::Release);
                }
            })
    });
    if let Err(e) = spawned {
        eprintln!("netd: cannot start the timer thread: {e}");
        std::process::exit(1);
    }
}

/// The NIC receive thread.
fn start_nic(server: Arc<NetServer>, nic: userland::netd_nic::Attached) {
    HELPERS.fetch_add(1, Ordering::AcqRel);
    NIC_NOTIFY.store(nic.notification(), Ordering::Release);
    let spawned = netd_arena::private(|| {
        std::thread::Builder::new()
            .name("netd-nic-rx".into())
            .spawn(move || nic.receive_loop_with(|frame| server.receive_frame(frame), checkpoint))
    });
    if let Err(e) = spawned {
        eprintln!("netd: cannot start the NIC receive thread: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let mut mode = LockMode::PerCpu;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (place, cpus) = placement::from_args(&args);
    let mut nic_arg = None;
    let mut arena_arg = None;
    let ring_arg = match userland::slot_server::parse_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netd: {e}");
            std::process::exit(2);
        }
    };
    let mut handover = None;
    let mut epoch = 0u32;
    for arg in args {
        if let Some(v) = arg.strip_prefix("locks=") {
            mode = LockMode::from_name(v).unwrap_or(LockMode::PerCpu);
        } else if let Some(v) = arg.strip_prefix("nic=") {
            nic_arg = Some(v.to_string());
        } else if let Some(v) = arg.strip_prefix("arena=") {
            arena_arg = Some(v.to_string());
        } else if let Some(v) = arg.strip_prefix("epoch=") {
            epoch = v.parse().unwrap_or(0);
        } else if let Some(v) = arg.strip_prefix("handover=") {
            let h: Vec<u64> = v.split(',').filter_map(|x| x.parse().ok()).collect();
            if h.len() == 3 {
                handover = Some([h[0], h[1], h[2]]);
            }
        }
    }
    let _ = percpu::set_lock_mode(mode);
    if let Some(a) = &arena_arg {
        if let Err(e) = netd_arena::map(a) {
            eprintln!("netd: {e}");
            std::process::exit(1);
        }
    }
    // One loopback instance and handle shard per serving thread.
    let plan = placement::plan(place, cpus);
    if let Some([from, endpoint, notify]) = handover {
        successor(from, endpoint, notify, nic_arg, &plan, ring_arg);
    }
    if arena_arg.is_some() {
        if let Err(e) = netd_arena::init(fingerprint()) {
            eprintln!("netd: state arena: {e}");
            std::process::exit(1);
        }
    }
    let workers = plan.len();
    let mut config = Config::new(workers, mode);
    config.epoch = epoch;
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
    let _ = SERVER.set(server.clone());
    if let Some(nic) = nic {
        start_nic(server.clone(), nic);
    }
    let endpoint = match ipc::endpoint_create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("netd: ipc_endpoint_create failed: errno {e}");
            std::process::exit(1);
        }
    };
    start_timers(server.clone(), workers);
    start_serving(server, &plan, ring_arg, endpoint, true);
}

/// Starts the request-slot thread (with `slots`; worker 0, beside the
/// endpoint's thread there), then the serving threads of `plan` on
/// `endpoint` (this thread is worker 0); `register`: a fresh instance
/// registers `SERVICE_NET` in between (the kernel reads the slots'
/// header then).
fn start_serving(
    server: Arc<NetServer>,
    plan: &[Option<usize>],
    slots: Option<userland::slot_server::SlotArgs>,
    endpoint: u64,
    register: bool,
) -> ! {
    if let Some(slots) = slots {
        let slot_server = server.clone();
        userland::slot_server::start(
            "netd",
            "netd-slots",
            plan[0],
            slots,
            || netd::platform::set_worker(0),
            move |msg| slot_server.handle(KERNEL_CLIENT, msg),
        );
    }
    PARK.set_receiving(plan.len());
    // Every serving thread receives on the one endpoint; the kernel gives
    // a call to the thread waiting on the caller's CPU.
    for (worker, &cpu) in plan.iter().enumerate().skip(1) {
        let server = server.clone();
        let spawned = netd_arena::private(|| {
            std::thread::Builder::new()
                .name(format!("netd-{worker}"))
                .spawn(move || serve(&server, worker, cpu, endpoint))
        });
        if let Err(e) = spawned {
            eprintln!("netd: cannot start serving thread {worker}: {e}");
            std::process::exit(1);
        }
    }
    if register {
        if let Err(e) = ipc::register_service(endpoint, SERVICE_NET) {
            eprintln!("netd: ipc_register_service failed: errno {e}");
            std::process::exit(1);
        }
    }
    serve(&server, 0, plan[0], endpoint);
}

/// A successor instance: answers the kernel's check, waits until told to
/// adopt the running instance's state, then serves the service endpoint.
fn successor(
    from: u64,
    endpoint: u64,
    notify: u64,
    nic_arg: Option<String>,
    plan: &[Option<usize>],
    slots: Option<userland::slot_server::SlotArgs>,
) -> ! {
    let mut buf = vec![0u8; 64];
    loop {
        let m = match ipc::recv(from, &mut buf) {
            Ok(m) => m,
            Err(e) if e == libc::EINTR => continue,
            Err(e) => fail(&format!("receive: errno {e}")),
        };
        match m.label {
            LABEL_CHECK => match netd_arena::compatible(fingerprint()) {
                Ok(()) => {
                    let _ = ipc::reply(m.token, 0, [0; 4], &[]);
                }
                Err(why) => {
                    let _ = ipc::reply(m.token, libc::EPROTO as u64, [0; 4], &[]);
                    fail(&format!("refusing the state arena: {why}"));
                }
            },
            LABEL_ADOPT => {
                let t0 = Instant::now();
                let server: Arc<NetServer> = match netd_arena::adopt_root(fingerprint()) {
                    Ok(s) => s,
                    Err(why) => {
                        let _ = ipc::reply(m.token, libc::EPROTO as u64, [0; 4], &[]);
                        fail(&format!("cannot adopt the state arena: {why}"));
                    }
                };
                // The kernel's notification, under this process's handle.
                server.signal().attach(KERNEL_CLIENT, notify);
                if let Some(a) = nic_arg {
                    match userland::netd_nic::attach(&a) {
                        Ok(nic) => {
                            // The old sink names the old process's mapping
                            // of the rings: never dropped here (its unmap
                            // would hit this process's address space).
                            std::mem::forget(
                                server.stack().platform().replace_nic(Some(nic.sink())),
                            );
                            start_nic(server.clone(), nic);
                        }
                        Err(e) => eprintln!("netd: no NIC after the hand-over: {e}"),
                    }
                }
                let _ = SERVER.set(server.clone());
                let ns = t0.elapsed().as_nanos() as u64;
                let _ = ipc::reply(m.token, 0, [ns, netd_arena::used() as u64, 0, 0], &[]);
                // After the answer: the switch does not wait for a thread
                // to start (timers late by that much are harmless).
                start_timers(server.clone(), server.config().workers);
                let _ = ipc::close(from);
                if plan.len() != server.config().workers {
                    // The placement decides the workers; the kernel gives
                    // a successor its predecessor's placement.
                    eprintln!(
                        "netd: hand-over: {} serving threads for {} workers",
                        plan.len(),
                        server.config().workers
                    );
                }
                let plan: Vec<Option<usize>> = plan
                    .iter()
                    .copied()
                    .take(server.config().workers.max(1))
                    .collect();
                start_serving(server, &plan, slots, endpoint, false);
            }
            _ => {
                let _ = ipc::reply(m.token, libc::EINVAL as u64, [0; 4], &[]);
            }
        }
    }
}

fn fail(what: &str) -> ! {
    eprintln!("netd: hand-over: {what}");
    std::process::exit(1);
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
    // The receive buffer is this instance's, not the state's.
    let mut transport = IpcTransport {
        endpoint,
        buf: netd_arena::private(|| vec![0; MAX_PAYLOAD]),
        pending: None,
    };
    server.serve(worker, &mut transport);
    eprintln!("netd: endpoint closed, exiting");
    std::process::exit(1);
}
