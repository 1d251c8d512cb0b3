//! The network server's life cycle (`structure=servers`; docs/SERVERS.md
//! "Replacing the network server" and "When the network server
//! crashes"): its state arena, replacement without stopping the
//! service, and restart after a crash.
//!
//! **State arena.**  netd's heap (the stack, its sockets, TCP connections
//! and listeners, the handle table) lives in a `ServerArena` the kernel
//! maps shared at `ARENA_BASE` into every instance.  smoltcp's sockets
//! cannot be serialised, so a successor does not rebuild the state: it
//! re-attaches to the same memory (netd checks a layout fingerprint in
//! the arena's header and refuses an incompatible build, `EPROTO`).
//!
//! **Replacement** (`replace_net_server`, `srvctl replace net`, boot option
//! `replace=net@SECONDS`): the successor is started with the hand-over
//! endpoint, the service endpoint and the readiness notification in its
//! first three handle slots and the *same* arena mapped; the kernel asks
//! it to check the arena (`LABEL_CHECK`: a refusal kills it and the old
//! instance serves on), then asks the old instance to quiesce
//! (`LABEL_NET_HANDOVER` on the service endpoint: it parks its timer and
//! NIC threads outside every lock, publishes its root pointer, answers
//! and exits), then tells the successor to adopt (`LABEL_ADOPT`).  Calls
//! made meanwhile queue on the service endpoint and are served by the
//! successor: none fails.
//!
//! **Crash restart** (`watch`, boot option `inject=crash:net@SECONDS`): a
//! dead netd (not being replaced) makes every socket of it stale
//! (`sockets::remote::server_died`: connected ones get `ECONNRESET`/`EPIPE`,
//! others `EIO`; blocked callers are woken), then a fresh instance with a
//! fresh arena and the next epoch is started and attached with the same
//! notification.  Nothing of the dead instance's state is kept: its arena
//! may be what crashed it.
//!
//! Owns: the current arena, the epoch counter, the watcher thread.  Must
//! not: restart during a replacement (the old instance exits on purpose),
//! or hold a lock across a call to a server.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::files::Program;
use super::process::{find_process, Pid};
use super::server_replace::{park_serving_threads, unpark_serving_threads, Replaced, SlotHandover};
use crate::ipc::{Endpoint, Notification, Object};
use crate::memory::server_arena::ServerArena;
use abi::ipc::{RIGHT_SEND, SERVICE_NET};
use abi::Errno;

/// Where netd's arena is mapped in every instance (netd checks it).
pub const ARENA_BASE: u64 = 0x2200_0000_0000;
/// Its size: virtual, backed on first touch.
pub const ARENA_BYTES: u64 = 256 << 20;

/// On the service endpoint (kernel badge only): quiesce and hand over
/// (`userland::netd_arena`).  Reply w0: ns the quiesce took.
const LABEL_NET_HANDOVER: u64 = 0x4856_0011;
/// On the hand-over endpoint: check the arena's fingerprint (0 or
/// `EPROTO`).
const LABEL_CHECK: u64 = 0x4856_0012;
/// On the hand-over endpoint: adopt the quiesced state and serve.  Reply
/// w0: ns the adoption took, w1 bytes of the arena in use.
const LABEL_ADOPT: u64 = 0x4856_0013;

/// On the service endpoint (kernel badge only): park a serving thread
/// unless it is the last one receiving / open the gate again (netd's
/// `park`, `unpark`; as the file server's).
const LABEL_PARK: u64 = 0x4856_0014;
const LABEL_UNPARK: u64 = 0x4856_0015;

/// The handle numbers a fresh process's first three inserts get.
const FIRST_HANDLES: [u64; 3] = [1 << 12, (1 << 12) | 1, (1 << 12) | 2];

/// How often the watcher looks (as the file server's).
const POLL_NS: u64 = 10_000_000;

/// Instances started after crashes (0 at boot).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// What every instance shares with the kernel.
struct Shared {
    archive: &'static [u8],
    arena: Arc<ServerArena>,
    notification: Arc<Notification>,
}

static SHARED: spin::Mutex<Option<Shared>> = spin::Mutex::new(None);

/// netd's argv (without the hand-over part); `token`: the owner token of
/// its request slots (with `dedicated()`).
fn argv(epoch: u32, token: u32) -> Vec<Vec<u8>> {
    let mut argv: Vec<Vec<u8>> = vec![
        b"netd".to_vec(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
        format!("placement={}", super::servers::placement().name()).into_bytes(),
        format!("cpus={}", percpu::cpu_count()).into_bytes(),
        format!("arena={ARENA_BASE:x},{ARENA_BYTES:x}").into_bytes(),
        format!("epoch={epoch}").into_bytes(),
    ];
    if dedicated() {
        argv.push(super::servers::ring_arg(token));
    }
    if crate::drivers::userdev::active() {
        // The NIC is the driver process's: netd reaches it through the
        // shared rings, with the interface address of `net=`.
        let c = crate::drivers::net_config();
        let gw = c.gateway.map_or(String::new(), |g| {
            format!(",gw={}.{}.{}.{}", g[0], g[1], g[2], g[3])
        });
        argv.push(
            format!(
                "nic={}.{}.{}.{}/{}{gw}",
                c.ip[0], c.ip[1], c.ip[2], c.ip[3], c.prefix_len
            )
            .into_bytes(),
        );
    }
    argv
}

fn map_arena(
    aspace: &crate::memory::vm::AddressSpace,
    arena: &Arc<ServerArena>,
) -> Result<(), Errno> {
    use crate::memory::vm::{MAP_FIXED, MAP_SHARED, PROT_READ, PROT_WRITE};
    let at = aspace.map_source(
        ARENA_BASE,
        arena.bytes(),
        PROT_READ | PROT_WRITE,
        MAP_SHARED | MAP_FIXED,
        arena.clone(),
        0,
    )?;
    if at != ARENA_BASE {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// Boot: starts netd (instance 0) with a fresh arena, attaches, and
/// starts the crash watcher.  Returns its pid.
pub fn start(archive: &'static [u8]) -> Result<Pid, String> {
    let notification = Arc::new(Notification::new());
    let pid = start_instance(archive, 0, &notification)?;
    crate::sched::try_spawn("netd-watch", None, watch)
        .map_err(|_| String::from("cannot start the netd watcher"))?;
    Ok(pid)
}

/// Whether netd runs on a dedicated CPU and is reached through request
/// slots (`servers.placement=dedicated` with at least 2 CPUs).
fn dedicated() -> bool {
    super::servers::placement() == crate::cmdline::Placement::Dedicated
}

/// Starts a fresh instance `epoch` with a fresh arena and attaches to it
/// (with `dedicated()`, through request slots mapped into it as the file
/// server's: `servers::attach_ring`).
fn start_instance(
    archive: &'static [u8],
    epoch: u32,
    notification: &Arc<Notification>,
) -> Result<Pid, String> {
    let arena = Arc::new(ServerArena::new(ARENA_BYTES));
    *SHARED.lock() = Some(Shared {
        archive,
        arena: arena.clone(),
        notification: notification.clone(),
    });
    let started = crate::arch::time::now_ns();
    let mut frames = Vec::new();
    let token = super::servers::next_ring_token();
    let region = super::servers::new_ring_region();
    let (pid, process) = super::servers::start_server(
        archive,
        super::servers::NETD_PATH,
        SERVICE_NET,
        &argv(epoch, token),
        |aspace| {
            map_arena(aspace, &arena)?;
            if dedicated() {
                // Kernel-kept memory mapped shared into the server, this
                // instance its owner (as the file server's).
                frames = super::servers::map_ring_region(aspace, &region)?;
                super::servers::set_ring_owner(&frames, token)?;
            }
            Ok(())
        },
        crate::drivers::userdev::set_net_server,
    )?;
    if dedicated() {
        super::servers::attach_ring(pid, region, &frames, SERVICE_NET, "network server")?;
    }
    let notify = process
        .ipc
        .insert_or_drop(Object::Notification(notification.clone()), RIGHT_SEND, 0)
        .map_err(|e| format!("a notification for netd: errno {}", e.0))?;
    // One report notification per CPU with per-core placement.
    let mut shard_notify = Vec::new();
    for n in crate::sockets::remote::shard_notifications() {
        let h = process
            .ipc
            .insert_or_drop(Object::Notification(n.clone()), RIGHT_SEND, 0)
            .map_err(|e| format!("a report notification for netd: errno {}", e.0))?;
        shard_notify.push(h);
    }
    crate::sockets::remote::attach(pid, notify, notification.clone(), &shard_notify)
        .map_err(|e| format!("attach to the network server: errno {}", e.0))?;
    log::info!(
        "servers: network server /{} is pid {}, SERVICE_NET registered after {} ms",
        super::servers::NETD_PATH,
        pid,
        (crate::arch::time::now_ns() - started) / 1_000_000
    );
    Ok(pid)
}

/// The crash watcher: a netd that died without a replacement under way
/// is restarted (fresh state, next epoch).
fn watch() {
    loop {
        crate::sched::sleep_ns(POLL_NS);
        let pid = crate::sockets::remote::server_pid();
        let dead = find_process(pid).is_none_or(|p| p.zombie.load(Ordering::Acquire));
        if !dead
            || super::server_replace::replacing()
            || pid != crate::sockets::remote::server_pid()
        {
            continue;
        }
        let began = crate::arch::time::now_ns();
        let stale = crate::sockets::remote::server_died();
        // Callers waiting in its request slots get `EPIPE` (then the
        // stale socket's error), as the endpoint's callers do.
        crate::ipc::server_gone(SERVICE_NET);
        // The dead instance's endpoint goes with its handles; register
        // the new one only after (a lookup must not find the old one).
        while crate::ipc::service(SERVICE_NET).is_some() {
            crate::sched::sleep_ns(1_000_000);
        }
        let epoch = EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
        log::warn!(
            "servers: network server pid {pid} died; {stale} sockets reset; restarting it (epoch {epoch})"
        );
        let (archive, notification) = {
            let g = SHARED.lock();
            let Some(s) = g.as_ref() else { return };
            (s.archive, s.notification.clone())
        };
        match start_instance(archive, epoch, &notification) {
            Ok(new) => log::info!(
                "servers: network server restarted as pid {new} after {} us (state: none; sockets of pid {pid} reset)",
                (crate::arch::time::now_ns() - began) / 1000
            ),
            Err(msg) => {
                log::error!("servers: restarting the network server failed: {msg}");
                return;
            }
        }
    }
}

/// Kills netd (SIGKILL): `inject=crash:net@SECONDS`.
pub fn inject_crash() {
    let pid = crate::sockets::remote::server_pid();
    if let Some(p) = find_process(pid) {
        log::warn!("servers: injecting a crash: killing the network server pid {pid}");
        super::exit::kill_process(&p, 9);
    }
}

/// Replaces netd by a new instance of `program` (`None`: the archive's)
/// that adopts the running instance's state arena.  Errors as the file
/// server's replacement; `EPROTO` when the successor refuses the arena
/// (another layout): the old instance serves on.
pub fn replace_net_server(program: Option<Program>) -> Result<Replaced, Errno> {
    if !crate::sockets::remote::active() {
        return Err(Errno::EOPNOTSUPP);
    }
    super::server_replace::exclusive(|| replace(program)).inspect(|x| {
        log::info!(
            "servers: replaced the network server: pid {} -> pid {}, switch {} us (quiesce {} us, adopt {} us, arena {} KiB in use); before it, start {} us",
            x.old_pid,
            x.new_pid,
            x.switch_ns / 1000,
            x.export_ns / 1000,
            x.import_ns / 1000,
            x.image_bytes / 1024,
            x.start_ns / 1000
        )
    })
    .inspect_err(|e| log::warn!("servers: replacing the network server failed: errno {}", e.0))
}

fn replace(program: Option<Program>) -> Result<Replaced, Errno> {
    let service = crate::ipc::service(SERVICE_NET).ok_or(Errno::EPIPE)?;
    let old_pid = crate::sockets::remote::server_pid();
    let (archive, arena, notification) = {
        let g = SHARED.lock();
        let s = g.as_ref().ok_or(Errno::EPIPE)?;
        (s.archive, s.arena.clone(), s.notification.clone())
    };
    let program = match program {
        Some(p) => p,
        None => {
            let entry = bootfmt::cpio::find(archive, super::servers::NETD_PATH)
                .map_err(|_| Errno::EINVAL)?
                .ok_or(Errno::ENOENT)?;
            Program::Bytes(entry.data)
        }
    };
    let started = crate::arch::time::now_ns();
    let handover = Endpoint::new();
    // The request slots (dedicated placement) go to the successor, which
    // runs with the same placement (the same workers over the arena).
    let slots = SlotHandover::of(&service);
    let mut args = argv(
        EPOCH.load(Ordering::Acquire),
        slots.as_ref().map_or(0, |s| s.new),
    );
    args.push(
        format!(
            "handover={},{},{}",
            FIRST_HANDLES[0], FIRST_HANDLES[1], FIRST_HANDLES[2]
        )
        .into_bytes(),
    );
    if let Some(s) = &slots {
        args.extend(s.args(3));
    }
    let path = format!("/{}", super::servers::NETD_PATH);
    let new_pid = super::init::spawn_server_program(&program, &path, &args, |p| {
        let [a, b] = super::server_replace::receive_endpoints(p, &handover, &service)?;
        let c = p
            .ipc
            .insert_or_drop(Object::Notification(notification.clone()), RIGHT_SEND, 0)?;
        if [a, b, c] != FIRST_HANDLES {
            return Err(Errno::EIO);
        }
        map_arena(&*p.aspace().ok_or(Errno::ESRCH)?, &arena)?;
        match &slots {
            Some(s) => s.prepare(p, 3),
            None => Ok(()),
        }
    })?;
    drop(program);
    let give_up = |e: Errno| {
        if let Some(p) = find_process(new_pid) {
            super::exit::kill_process(&p, 9);
        }
        e
    };
    let status = |r: Result<crate::ipc::KernelReply, Errno>| match r {
        Ok(reply) if reply.label == 0 => Ok(reply.words),
        Ok(reply) => Err(Errno(reply.label.clamp(1, 4095) as i32)),
        Err(e) => Err(e),
    };
    // The successor looks at the arena before anything stops: a build it
    // cannot adopt leaves the old instance serving.
    status(crate::ipc::kernel_call(
        &handover,
        LABEL_CHECK,
        [0; 4],
        &[],
        &mut [],
    ))
    .map_err(give_up)?;
    let begin = crate::arch::time::now_ns();
    // One serving thread from here on (the others wait at their gate,
    // outside the arena's locks), and none on the request slots.
    let stopped = park_serving_threads(&service, LABEL_PARK)
        .and_then(|()| slots.as_ref().map_or(Ok(()), SlotHandover::stop_old));
    if let Err(e) = stopped {
        unpark_serving_threads(&service, LABEL_UNPARK);
        return Err(give_up(e));
    }
    let quiesced = match status(crate::ipc::kernel_call_endpoint(
        &service,
        LABEL_NET_HANDOVER,
        [0; 4],
        &[],
        &mut [],
    )) {
        Ok(w) => w,
        Err(e) => {
            // The old instance serves on, with all its threads and slots.
            if let Some(s) = &slots {
                s.back_to_old();
            }
            unpark_serving_threads(&service, LABEL_UNPARK);
            return Err(give_up(e));
        }
    };
    // The old instance is parked for good (it exits now): the NIC's rings
    // and the kernel's calls are the successor's from here.
    crate::drivers::userdev::set_net_server(new_pid);
    crate::sockets::remote::set_server_pid(new_pid);
    let adopted = match status(crate::ipc::kernel_call(
        &handover,
        LABEL_ADOPT,
        [0; 4],
        &[],
        &mut [],
    )) {
        Ok(w) => w,
        Err(e) => {
            // Nothing serves the state now: the watcher restarts netd
            // (sockets reset) once this replacement is over.
            log::error!(
                "servers: the network server's successor failed to adopt: errno {}",
                e.0
            );
            return Err(give_up(e));
        }
    };
    if let Some(s) = &slots {
        s.to_new();
    }
    let end = crate::arch::time::now_ns();
    Ok(Replaced {
        switch_ns: end - begin,
        call_ns: end - begin,
        image_bytes: adopted[1],
        export_ns: quiesced[0],
        start_ns: begin - started,
        old_pid,
        new_pid,
        precopy_ns: 0,
        precopy_bytes: 0,
        switch_begin_ns: begin,
        import_ns: adopted[0],
    })
}
