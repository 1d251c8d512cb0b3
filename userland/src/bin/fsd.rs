//! fsd: the user-mode file server of `structure=servers` (docs/SERVERS.md,
//! "Kernel side / boot").  The kernel starts it before `/init` with the
//! initramfs copied into its address space; it unpacks the archive into a
//! fresh tmpfs (the same `fs` crate the monolithic kernel links), creates
//! an endpoint, registers it as `SERVICE_FS` and answers the kernel's
//! delegated file-system calls (`fsproto` messages) in an
//! `ipc_reply_recv` loop.
//!
//! Arguments (the kernel writes them): `initramfs=ADDR,LEN` (hex address
//! and decimal length of the archive, read-only, unmapped once unpacked)
//! and `locks=percpu|global` (the boot's lock mode, for the ablation),
//! `placement=single|percore|dedicated` and `cpus=N`: the serving
//! threads (`userland::placement::plan`: one unpinned; one per CPU, each
//! pinned to its CPU; one pinned to the last CPU), all receiving on the
//! one endpoint, thread `i` serving as worker `i` (its handle shard);
//! or, for a successor replacing a running instance, `handover=FROM,SERVICE`
//! (its handles of the hand-over endpoint and of the service endpoint;
//! `servers/fsd_handover.rs`; a successor serves with the threads of its
//! placement, as its predecessor did);
//! `instance=N` (the kernel's count of file-server instances: write-grant
//! epochs start at N << 40); `epoch=N` for an instance restarted after a crash (its handles never
//! equal a dead instance's).  Before a hand-over the kernel parks every
//! serving thread but one (`LABEL_PARK`, `park`); the hand-over is
//! refused (`EBUSY`) while another thread receives.
//!
//! With `ring=ADDR,SLOTS,TOKEN` (dedicated placement) the kernel's calls
//! come through request slots in memory it shares with this process
//! (`ring` crate; served while their owner word is `TOKEN`); a thread on
//! the dedicated CPU polls them, and the endpoint is served as well (the
//! kernel's `Attach`, and calls that find no free slot).  A successor
//! gets its predecessor's slots (`ringadopt=WAKE,DONE`,
//! `userland::slot_server`).
//!
//! Owns: the IPC transport (one endpoint, one per serving thread),
//! mapping the kernel's badge to the one client id the server knows.
//!
//! Must not: make file-system calls outside `/dev` and `/proc` (the kernel
//! would delegate them to this very server, which refuses: `EDEADLK`), or
//! exit while the kernel needs it (it never returns from serving).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use abi::ipc::SERVICE_FS;
use fs::host::{HeapPages, SystemClock};
use fs::{Fs, FsConfig};
use fsd::{Config, FileServer};
use fsproto::{Message, MsgRef, MAX_PAYLOAD};
use percpu::LockMode;
use userland::park_gate::ParkGate;
use userland::{ipc, placement};

#[path = "../servers/fsd_handover.rs"]
mod handover;

/// The badge bit of calls the kernel makes for user threads
/// (`kernel/src/ipc/mod.rs` `KERNEL_BADGE`).  All of them are one client:
/// the kernel, whatever process it acts for.
const KERNEL_BADGE: u64 = 1 << 63;
/// The client id of the kernel in the handle table.
const KERNEL_CLIENT: u64 = 1;

/// On the service endpoint, from the kernel only, before a hand-over:
/// park this serving thread unless it is the last one receiving (`park`);
/// and open the gate again (the hand-over did not happen).  The kernel's
/// `server_replace` has the same numbers.
const LABEL_PARK: u64 = 0x4856_0003;
const LABEL_UNPARK: u64 = 0x4856_0004;

/// tmpfs page bound: 4 GiB (the machine's memory bounds it first).
const MAX_PAGES: u64 = 1 << 20;

/// The server's endpoint: requests in, replies out through
/// `ipc_reply_recv` (a reply is sent with the next receive).
struct IpcTransport {
    endpoint: u64,
    buf: Vec<u8>,
    /// The reply waiting for the next `recv`: token, message.
    pending: Option<(u64, Message)>,
}

impl IpcTransport {
    /// Sends the pending reply and receives the next request, whose
    /// payload stays in `buf` (the first `len` bytes): the serving loop
    /// decodes it there, with no copy per request.  Caller token, client,
    /// label, words, payload length.
    fn next(&mut self) -> Option<(u64, u64, u64, [u64; 4], usize)> {
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
                        // Nobody else holds a handle to this endpoint;
                        // keep other callers apart from the kernel.
                        r.badge | 1 << 62
                    };
                    let len = r.len.min(self.buf.len());
                    return Some((r.token, client, r.label, r.words, len));
                }
                // A signal, or a caller that gave up: wait again.
                Err(e) if e == libc::EINTR || e == libc::EPIPE => continue,
                Err(e) => {
                    eprintln!("fsd: ipc_reply_recv failed: errno {e}");
                    return None;
                }
            }
        }
    }

    /// The reply to `caller`, sent with the next receive.
    fn reply(&mut self, caller: u64, reply: Message) {
        self.pending = Some((caller, reply));
    }
}

/// `ADDR,LEN` of the archive.
fn archive_arg(value: &str) -> Option<(usize, usize)> {
    let (a, l) = value.split_once(',')?;
    let addr = usize::from_str_radix(a.trim_start_matches("0x"), 16).ok()?;
    Some((addr, l.parse().ok()?))
}

fn main() {
    let mut archive = None;
    let mut successor = None;
    let mut epoch = 0u32;
    let mut instance = 0u64;
    let mut mode = LockMode::PerCpu;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (place, cpus) = placement::from_args(&args);
    let slots = match userland::slot_server::parse_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fsd: {e}");
            std::process::exit(2);
        }
    };
    for arg in args {
        if let Some(v) = arg.strip_prefix("handover=") {
            successor = v
                .split_once(',')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        } else if let Some(v) = arg.strip_prefix("epoch=") {
            epoch = v.parse().unwrap_or(0);
        } else if let Some(v) = arg.strip_prefix("instance=") {
            instance = v.parse().unwrap_or(0);
        } else if let Some(v) = arg.strip_prefix("initramfs=") {
            archive = archive_arg(v);
            if archive.is_none() {
                eprintln!("fsd: bad argument {arg}");
                std::process::exit(2);
            }
        } else if let Some(v) = arg.strip_prefix("locks=") {
            mode = LockMode::from_name(v).unwrap_or(LockMode::PerCpu);
        }
    }
    let _ = percpu::set_lock_mode(mode);
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: MAX_PAGES,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    );
    // Write grants of another instance (a predecessor's, still in the
    // kernel's hands at the switch) never match this one's epochs: their
    // commits get EAGAIN and the kernel sends the bytes again.
    fs.set_write_epoch_base(instance << 40);
    // One handle-table shard per serving thread: thread i is worker i;
    // the request-slot thread (dedicated placement) is the last worker.
    let plan = placement::plan(place, cpus);
    let config = Config {
        workers: plan.len() + usize::from(slots.is_some()),
        handle_epoch: epoch,
        ..Config::default()
    };
    if let Some((from, endpoint)) = successor {
        // Replacing a running instance: its state, then its endpoint (and
        // its request slots), served by as many threads as it had.
        SUCCESSOR.store(true, Ordering::Relaxed);
        let server = Arc::new(handover::receive(from, fs, config));
        start_serving(server, &plan, slots, endpoint);
    }
    if let Some((addr, len)) = archive {
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: the kernel mapped `len` readable bytes at `addr` in
            // this address space before the program started, and nothing
            // unmaps them until the `munmap` below, after the last use.
            unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
        };
        match fsd::initramfs::unpack(&fs, bytes, |_| true) {
            // Quiet on success: the console is the program's output.
            Ok(_) => {}
            Err(e) => {
                eprintln!("fsd: initramfs: error: {e}");
                std::process::exit(1);
            }
        }
        if len > 0 {
            // SAFETY: the range is the kernel's mapping of the archive,
            // used by nothing else from here on.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        }
    }
    // The directories every root has: `/tmp` for everyone (mode 1777),
    // `/dev` and `/proc` for listings (the kernel serves what is in them).
    let root = fs.root();
    for (dir, mode) in [("/tmp", 0o1777), ("/dev", 0o755), ("/proc", 0o555)] {
        match fs.mkdir(&root, dir, mode) {
            Ok(d) => d.set_perm(mode),
            Err(e) if e == fs::Errno::EEXIST => {}
            Err(e) => eprintln!("fsd: mkdir {dir}: errno {}", e.0),
        }
    }
    let server = Arc::new(FileServer::new(fs, Vec::new(), config));
    let endpoint = match ipc::endpoint_create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fsd: ipc_endpoint_create failed: errno {e}");
            std::process::exit(1);
        }
    };
    start_serving(server, &plan, slots, endpoint);
}

/// Starts the request-slot thread (with `slots`), then the serving
/// threads of `plan` on `endpoint` (this thread is worker 0).  A fresh
/// instance registers `SERVICE_FS` in between (the kernel reads the
/// slots' header then); a successor (`ringadopt=`) was given the endpoint
/// and does not.
fn start_serving(
    server: Arc<FileServer>,
    plan: &[Option<usize>],
    slots: Option<userland::slot_server::SlotArgs>,
    endpoint: u64,
) -> ! {
    let fresh = slots.is_none_or(|s| s.adopt.is_none());
    let successor = SUCCESSOR.load(Ordering::Relaxed);
    if let Some(slots) = slots {
        // The slot thread is the last worker, on the first plan's CPU.
        let worker = plan.len();
        let slot_server = server.clone();
        userland::slot_server::start(
            "fsd",
            "fsd-slots",
            plan[0],
            slots,
            || {},
            move |msg| slot_server.handle(worker, KERNEL_CLIENT, msg),
        );
    }
    PARK.set_receiving(plan.len());
    // Every serving thread receives on the one endpoint; the kernel gives
    // a call to the thread waiting on the caller's CPU.
    for (worker, &cpu) in plan.iter().enumerate().skip(1) {
        let server = server.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fsd-{worker}"))
            .spawn(move || serve(&server, worker, cpu, endpoint));
        if let Err(e) = spawned {
            eprintln!("fsd: cannot start serving thread {worker}: {e}");
            std::process::exit(1);
        }
    }
    if fresh && !successor {
        if let Err(e) = ipc::register_service(endpoint, SERVICE_FS) {
            eprintln!("fsd: ipc_register_service failed: errno {e}");
            std::process::exit(1);
        }
    }
    serve(&server, 0, plan[0], endpoint);
}

/// This instance replaces a running one (`handover=`): it was given the
/// service endpoint, registered already.
static SUCCESSOR: AtomicBool = AtomicBool::new(false);

/// Serving threads receiving on the endpoint, and the gate parked ones
/// wait at during a hand-over.
static PARK: ParkGate = ParkGate::new();

/// What the pre-copy thread sent, for the hand-over's image (whichever
/// serving thread takes the hand-over).
#[allow(clippy::type_complexity)]
static SENT: Mutex<Option<(fsd::handover::Sent, Option<fsd::handover::Staged>)>> = Mutex::new(None);

/// The kernel's `LABEL_PARK` (before a hand-over with several serving
/// threads): unless it is the last one receiving, this thread answers
/// and waits at the gate, holding nothing, until the gate opens
/// (`ParkGate::park`); the last one answers w0 = 1 and serves on, to take
/// the hand-over.  So no other thread serves while the state moves.
fn park(caller: u64) -> Option<Message> {
    (!PARK.park(caller)).then(|| Message {
        label: 0,
        words: [1, 0, 0, 0],
        payload: Vec::new(),
    })
}

/// One serving thread: pinned to `cpu` (if any), serves as `worker`
/// until the endpoint closes (then ends the server), or until the kernel
/// asks this instance to hand over to a successor (`can_hand_over`: the
/// only serving thread; then it answers and exits).
fn serve(server: &FileServer, worker: usize, cpu: Option<usize>, endpoint: u64) -> ! {
    if let Some(cpu) = cpu {
        if let Err(e) = placement::pin(cpu) {
            eprintln!("fsd: cannot pin serving thread {worker} to cpu {cpu}: errno {e}");
        }
    }
    let mut transport = IpcTransport {
        endpoint,
        buf: vec![0; MAX_PAYLOAD],
        pending: None,
    };
    std::thread::scope(|scope| {
        while let Some((caller, client, label, words, len)) = transport.next() {
            let msg = MsgRef {
                label,
                words,
                payload: &transport.buf[..len],
            };
            if client == KERNEL_CLIENT && msg.label == LABEL_PARK {
                if let Some(reply) = park(caller) {
                    transport.reply(caller, reply);
                }
                continue;
            }
            if client == KERNEL_CLIENT && msg.label == LABEL_UNPARK {
                PARK.unpark();
                transport.reply(caller, Message::default());
                continue;
            }
            if client == KERNEL_CLIENT && msg.label == fsd::handover::LABEL_PRECOPY {
                // Answered by the pre-copy thread when done; serve on.
                let to = msg.words[0];
                scope.spawn(move || match handover::precopy(server, to) {
                    Ok((s, staged, stats)) => {
                        *SENT.lock().unwrap_or_else(|p| p.into_inner()) = Some((s, Some(staged)));
                        let _ = ipc::reply(caller, 0, stats, &[]);
                    }
                    Err(e) => {
                        let _ = ipc::reply(caller, e as u64, [0; 4], &[]);
                    }
                });
                continue;
            }
            if client == KERNEL_CLIENT && msg.label == fsd::handover::LABEL_HANDOVER {
                if PARK.receiving() != 1 {
                    // Another thread would go on serving while the state
                    // moves: the kernel parks them first (`LABEL_PARK`).
                    transport.reply(caller, Message::error(fs::Errno::EBUSY));
                    continue;
                }
                let (s, staged) = SENT
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_else(|| (fsd::handover::Sent::new(), None));
                match handover::send(server, msg.words[0], &s, staged.as_ref()) {
                    Ok((bytes, export, import, ready)) => {
                        let _ = ipc::reply(caller, 0, [bytes, export, import, ready], &[]);
                        std::process::exit(0);
                    }
                    Err(e) => {
                        // The old instance serves on, with all its threads.
                        PARK.unpark();
                        transport.reply(caller, Message::error(fs::Errno(e)));
                    }
                }
                continue;
            }
            let reply = server.handle(worker, client, msg);
            transport.reply(caller, reply);
        }
    });
    eprintln!("fsd: endpoint closed, exiting");
    std::process::exit(1);
}
