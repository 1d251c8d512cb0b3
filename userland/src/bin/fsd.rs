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
//! and `locks=percpu|global` (the boot's lock mode, for the ablation);
//! or, for a successor replacing a running instance, `handover=FROM,SERVICE`
//! (its handles of the hand-over endpoint and of the service endpoint;
//! `servers/fsd_handover.rs`); `epoch=N` for an instance restarted after
//! a crash (its handles never equal a dead instance's).
//!
//! Owns: the IPC `Transport` (one endpoint, one server thread in M1),
//! mapping the kernel's badge to the one client id the server knows.
//!
//! Must not: make file-system calls outside `/dev` and `/proc` (the kernel
//! would delegate them to this very server, which refuses: `EDEADLK`), or
//! exit while the kernel needs it (it never returns from serving).

use std::sync::Arc;

use abi::ipc::SERVICE_FS;
use fs::host::{HeapPages, SystemClock};
use fs::{Fs, FsConfig};
use fsd::{Config, FileServer, Transport};
use fsproto::{Message, MAX_PAYLOAD};
use percpu::LockMode;
use userland::ipc;

#[path = "../servers/fsd_handover.rs"]
mod handover;

/// The badge bit of calls the kernel makes for user threads
/// (`kernel/src/ipc/mod.rs` `KERNEL_BADGE`).  All of them are one client:
/// the kernel, whatever process it acts for.
const KERNEL_BADGE: u64 = 1 << 63;
/// The client id of the kernel in the handle table.
const KERNEL_CLIENT: u64 = 1;

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

impl Transport for IpcTransport {
    type Caller = u64;

    fn recv(&mut self) -> Option<(u64, u64, Message)> {
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
                    let msg = Message {
                        label: r.label,
                        words: r.words,
                        payload: self.buf[..r.len.min(self.buf.len())].to_vec(),
                    };
                    return Some((r.token, client, msg));
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
    let mut mode = LockMode::PerCpu;
    for arg in std::env::args().skip(1) {
        if let Some(v) = arg.strip_prefix("handover=") {
            successor = v
                .split_once(',')
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        } else if let Some(v) = arg.strip_prefix("epoch=") {
            epoch = v.parse().unwrap_or(0);
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
    if let Some((from, endpoint)) = successor {
        // Replacing a running instance: its state, then its endpoint.
        let config = Config {
            handle_epoch: epoch,
            ..Config::default()
        };
        let server = handover::receive(from, fs, config);
        serve(&server, endpoint);
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
    let server = FileServer::new(
        fs,
        Vec::new(),
        Config {
            handle_epoch: epoch,
            ..Config::default()
        },
    );
    let endpoint = match ipc::endpoint_create() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fsd: ipc_endpoint_create failed: errno {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = ipc::register_service(endpoint, SERVICE_FS) {
        eprintln!("fsd: ipc_register_service failed: errno {e}");
        std::process::exit(1);
    }
    serve(&server, endpoint);
}

/// Serves `endpoint` until it closes, or until the kernel asks this
/// instance to hand over to a successor (then it answers and exits).
fn serve(server: &FileServer, endpoint: u64) -> ! {
    let mut transport = IpcTransport {
        endpoint,
        buf: vec![0; MAX_PAYLOAD],
        pending: None,
    };
    // What the pre-copy thread sent, for the hand-over's image.
    let sent = std::sync::Mutex::new(fsd::handover::Sent::new());
    std::thread::scope(|scope| {
        while let Some((caller, client, msg)) = transport.recv() {
            if client == KERNEL_CLIENT && msg.label == fsd::handover::LABEL_PRECOPY {
                // Answered by the pre-copy thread when done; serve on.
                let to = msg.words[0];
                let sent = &sent;
                scope.spawn(move || match handover::precopy(server, to) {
                    Ok((s, stats)) => {
                        *sent.lock().unwrap_or_else(|p| p.into_inner()) = s;
                        let _ = ipc::reply(caller, 0, [stats[0], stats[1], stats[2], 0], &[]);
                    }
                    Err(e) => {
                        let _ = ipc::reply(caller, e as u64, [0; 4], &[]);
                    }
                });
                continue;
            }
            if client == KERNEL_CLIENT && msg.label == fsd::handover::LABEL_HANDOVER {
                let s = std::mem::take(&mut *sent.lock().unwrap_or_else(|p| p.into_inner()));
                match handover::send(server, msg.words[0], &s) {
                    Ok((bytes, export, import)) => {
                        let _ = ipc::reply(caller, 0, [bytes, export, import, 0], &[]);
                        std::process::exit(0);
                    }
                    Err(e) => transport.reply(caller, Message::error(fs::Errno(e))),
                }
                continue;
            }
            let reply = server.handle(0, client, msg.view());
            transport.reply(caller, reply);
        }
    });
    eprintln!("fsd: endpoint closed, exiting");
    std::process::exit(1);
}
