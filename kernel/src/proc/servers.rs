//! Starting the OS servers of `structure=servers` (docs/SERVERS.md,
//! "Kernel side / boot"): the file server `fsd` is loaded straight from the
//! initramfs archive in memory (no file system is involved: the file system
//! is what it brings), given a copy of the archive, and waited for until it
//! registered `SERVICE_FS`; then the kernel attaches as its client.  The
//! network server `netd` follows the same way (`SERVICE_NET`), and the
//! kernel gives it the notification for its readiness reports.
//!
//! Owns: where the server's program is in the archive (`FSD_PATH`), where
//! the archive copy goes in its address space (`ARCHIVE_BASE`) and how it
//! is told (argv `initramfs=ADDR,LEN`; `placement=single|percore|dedicated`
//! and `cpus=N` say how many serving threads to start and where to pin
//! them), the start-up handshake with its timeout, and starting the
//! migration of server threads (`servers.migrate=on`, `ipc::migrate`).
//!
//! Must not: start `/init` (the caller does, once this returned), or wait
//! forever (a server that does not register within `REGISTER_TIMEOUT_NS`
//! is an error message, and the boot ends).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use alloc::sync::Arc;

use super::files::Program;
use crate::memory::server_arena::ServerArena;
use abi::Errno;

/// The file server's program in the initramfs (`comparison` puts it
/// there with `--structure servers`).
pub const FSD_PATH: &str = ".servers/fsd";

/// The network server's program in the initramfs.
pub const NETD_PATH: &str = ".servers/netd";

/// Where the copy of the archive is mapped (read-only) in the server; it
/// unmaps it once unpacked.  Below `MMAP_TOP`, far from where `mmap`
/// places mappings (top down) and from a static program's image.
pub const ARCHIVE_BASE: u64 = 0x2000_0000_0000;

/// Where the request slots of a server on a dedicated core go in its
/// address space (`servers.placement=dedicated`, `ipc::ring`; fsd's and
/// netd's, each in its own address space).
pub const RING_BASE: u64 = 0x2100_0000_0000;

/// Request slots of a dedicated server (one bit each in a notification
/// word).
pub const RING_SLOTS: usize = 16;

/// Owner tokens of server instances with request slots (`ring` crate:
/// the slots' owner word names the instance that serves them).
static RING_TOKENS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// The owner token of the next instance with request slots (never 0).
pub fn next_ring_token() -> u32 {
    RING_TOKENS
        .fetch_add(1, core::sync::atomic::Ordering::Relaxed)
        .max(1)
}

/// The `ring=ADDR,SLOTS,TOKEN` argument of a server with request slots.
pub fn ring_arg(token: u32) -> Vec<u8> {
    format!("ring={RING_BASE:x},{RING_SLOTS},{token}").into_bytes()
}

/// A fresh region of request slots: memory the kernel keeps (a
/// `ServerArena`, not the server's), so it outlives the instance that
/// serves it and a successor can map the same slots.
pub fn new_ring_region() -> Arc<ServerArena> {
    Arc::new(ServerArena::new(ring::region_bytes(RING_SLOTS) as u64))
}

/// Maps `region` shared at `RING_BASE` into `aspace` (before the server
/// runs) and returns its frames (made now, so the kernel reaches every
/// page through its direct map).
pub fn map_ring_region(
    aspace: &crate::memory::vm::AddressSpace,
    region: &Arc<ServerArena>,
) -> Result<Vec<crate::memory::PhysAddr>, Errno> {
    use crate::memory::vm::{PageSource, MAP_FIXED, MAP_SHARED, PROT_READ, PROT_WRITE};
    let at = aspace.map_source(
        RING_BASE,
        region.bytes(),
        PROT_READ | PROT_WRITE,
        MAP_SHARED | MAP_FIXED,
        region.clone(),
        0,
    )?;
    if at != RING_BASE {
        return Err(Errno::EIO);
    }
    (0..region.bytes() / 4096).map(|i| region.page(i)).collect()
}

/// Names `token` the owner of the slots in `frames` before their first
/// server runs.
pub fn set_ring_owner(frames: &[crate::memory::PhysAddr], token: u32) -> Result<(), Errno> {
    let mem = crate::ipc::shared_mem::PinnedPages::new(frames);
    let slots = ring::Ring::new(mem, RING_SLOTS).ok_or(Errno::EINVAL)?;
    slots.set_owner(token);
    Ok(())
}

/// How long the kernel waits for the server to register.
const REGISTER_TIMEOUT_NS: u64 = 20_000_000_000;

/// The servers' placement (`servers.placement=`): `dedicated` needs a
/// core to dedicate, so with one CPU it is `single` (logged once, at the
/// file server's start).
pub fn placement() -> crate::cmdline::Placement {
    use crate::cmdline::Placement;
    match crate::cmdline::options().placement {
        Placement::Dedicated if percpu::cpu_count() < 2 => Placement::Single,
        p => p,
    }
}

/// Starts server-thread migration (`servers.migrate=on`) over the
/// registered services, once both servers run.  Only with the single
/// placement: per-core and dedicated threads are placed on purpose
/// (logged and ignored there).
pub fn start_migration() {
    use crate::cmdline::Placement;
    if !crate::cmdline::options().migrate {
        return;
    }
    if placement() != Placement::Single {
        log::info!(
            "servers: servers.migrate=on ignored with servers.placement={}",
            placement().name()
        );
        return;
    }
    let services = [
        ("fsd", abi::ipc::SERVICE_FS),
        ("netd", abi::ipc::SERVICE_NET),
    ]
    .into_iter()
    .filter_map(|(name, s)| crate::ipc::service(s).map(|ep| (name, ep)))
    .collect();
    crate::ipc::migrate::start(services);
}

/// File-server instances started so far (boot, crash restarts,
/// replacements): each gets its number as `instance=N`, from which it
/// makes its write-grant epochs unique (`fs::Fs::set_write_epoch_base`),
/// so a one-copy write granted by one instance never commits in another.
static FSD_INSTANCES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The `instance=N` argument of the next file-server instance.
pub fn next_fsd_instance() -> Vec<u8> {
    let n = FSD_INSTANCES.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    format!("instance={n}").into_bytes()
}

/// Loads and starts the file server from `archive`; returns its pid once
/// it registered `SERVICE_FS` and the kernel attached.  Errors are
/// messages for `servers: error: ...`.
pub fn start_file_server(archive: &'static [u8]) -> Result<super::process::Pid, String> {
    let pid = start_file_server_epoch(archive, 0)?;
    super::server_restart::watch(archive);
    Ok(pid)
}

/// Starts instance `epoch` of the file server (0 at boot; a restart after
/// a crash counts up, see `server_restart`).
pub fn start_file_server_epoch(
    archive: &'static [u8],
    epoch: u32,
) -> Result<super::process::Pid, String> {
    let dedicated = placement() == crate::cmdline::Placement::Dedicated;
    let mut argv: Vec<Vec<u8>> = vec![
        b"fsd".to_vec(),
        format!("initramfs={ARCHIVE_BASE:x},{}", archive.len()).into_bytes(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
        format!("placement={}", placement().name()).into_bytes(),
        format!("cpus={}", percpu::cpu_count()).into_bytes(),
        format!("epoch={epoch}").into_bytes(),
        next_fsd_instance(),
    ];
    let token = next_ring_token();
    if dedicated {
        argv.push(ring_arg(token));
    }
    let region = new_ring_region();
    let mut frames = Vec::new();
    if crate::cmdline::options().placement != placement() {
        log::info!("servers: servers.placement=dedicated needs 2 cpus; using single");
    }
    let started = crate::arch::time::now_ns();
    let (pid, _) = start_server(
        archive,
        FSD_PATH,
        abi::ipc::SERVICE_FS,
        &argv,
        |aspace| {
            aspace.map_fixed_with_data(
                ARCHIVE_BASE,
                archive.len() as u64,
                archive,
                crate::memory::vm::PROT_READ,
            )?;
            if dedicated {
                // The request slots: kernel-kept memory mapped shared into
                // the server (`ipc::shared_mem`), this instance their owner.
                frames = map_ring_region(aspace, &region)?;
                set_ring_owner(&frames, token)?;
            }
            Ok(())
        },
        crate::files::remote::set_server_pid,
    )?;
    if dedicated {
        attach_ring(pid, region, &frames, abi::ipc::SERVICE_FS, "file server")?;
    }
    crate::files::remote::attach()
        .map_err(|e| format!("attach to the file server: errno {}", e.0))?;
    log::info!(
        "servers: file server /{} is pid {}, SERVICE_FS registered after {} ms",
        FSD_PATH,
        pid,
        (crate::arch::time::now_ns() - started) / 1_000_000
    );
    Ok(pid)
}

/// Attaches a dedicated server's request slots (in `frames`) to the
/// endpoint of `service` (`who` names the server in messages): the server
/// published its two notification handles in the slots' header before it
/// registered.
pub fn attach_ring(
    pid: super::process::Pid,
    region: Arc<ServerArena>,
    frames: &[crate::memory::PhysAddr],
    service: u32,
    who: &str,
) -> Result<(), String> {
    use abi::ipc::RIGHT_SEND;
    let mem = crate::ipc::shared_mem::PinnedPages::new(frames);
    let slots = ring::Ring::new(mem, RING_SLOTS).ok_or("request slots: bad count")?;
    let (server_h, done_h) = slots
        .client_handles()
        .ok_or(format!("the {who} did not set up its request slots"))?;
    let process = super::process::find_process(pid).ok_or(format!("the {who} is gone"))?;
    let server_notify = process
        .ipc
        .notification(server_h, RIGHT_SEND)
        .map_err(|e| format!("the {who}'s slot notification: errno {}", e.0))?;
    let done = process
        .ipc
        .notification(done_h, RIGHT_SEND)
        .map_err(|e| format!("the {who}'s done notification: errno {}", e.0))?;
    let endpoint = crate::ipc::service(service).ok_or(format!("no service for the {who}"))?;
    let kring = Arc::new(crate::ipc::ring::KernelRing::new(
        slots,
        region,
        server_notify,
        done.clone(),
        percpu::cpu_count() - 1,
    ));
    let waker = kring.clone();
    if !done.set_hook(alloc::boxed::Box::new(move |bits| waker.wake(bits))) {
        return Err(format!("the {who}'s done notification is in use"));
    }
    endpoint.attach_ring(kring);
    log::info!(
        "servers: {who} on cpu {} reached through {} request slots",
        percpu::cpu_count() - 1,
        RING_SLOTS
    );
    Ok(())
}

/// Loads and starts the network server from `archive` (after the file
/// server); returns its pid once it registered `SERVICE_NET` and the
/// kernel attached (`net_server`: its state arena, replacement and
/// crash restart).
pub fn start_net_server(archive: &'static [u8]) -> Result<super::process::Pid, String> {
    super::net_server::start(archive)
}

/// Starts the NIC's user-mode driver (`drivers::userdev`) when the NIC
/// was assigned to one; it restarts by itself.  Not waited for: netd waits
/// on the shared rings for the driver to come up.
pub fn start_nic_driver(archive: &'static [u8]) -> Result<(), String> {
    if crate::drivers::userdev::active() {
        let pid = crate::drivers::userdev::start_driver(archive)?;
        log::info!(
            "servers: NIC driver /{} is pid {}",
            crate::drivers::userdev::NICD_PATH,
            pid
        );
    }
    Ok(())
}

/// Starts the server program `member` of `archive` with `argv` (`prepare`
/// sets up its address space, `started` learns its pid before it can
/// call) and waits until it registered `service`.
pub(super) fn start_server(
    archive: &'static [u8],
    member: &str,
    service: u32,
    argv: &[Vec<u8>],
    prepare: impl FnOnce(&crate::memory::vm::AddressSpace) -> Result<(), Errno>,
    started: impl FnOnce(super::process::Pid),
) -> Result<
    (
        super::process::Pid,
        alloc::sync::Arc<super::process::Process>,
    ),
    String,
> {
    let entry = bootfmt::cpio::find(archive, member)
        .map_err(|e| format!("initramfs: {e}"))?
        .ok_or_else(|| format!("/{member} is not in the initramfs (structure=servers needs it)"))?;
    let prog = Program::Bytes(entry.data);
    let path = format!("/{member}");
    let begin = crate::arch::time::now_ns();
    // `started` runs before the server's first instruction: queued, it may
    // run on another CPU at once and call with the pid it needs known (the
    // network server's first device call, `userdev::set_net_server`).
    let pid = super::init::spawn_program_with_setup(&prog, &path, argv, prepare, |p| {
        started(p.pid);
        Ok(())
    })
    .map_err(|e| format!("cannot start /{member}: errno {}", e.0))?;
    let process = super::process::find_process(pid)
        .ok_or_else(|| format!("/{member} (pid {pid}) is gone at once"))?;
    // The handshake: the server registers once it is ready to serve.
    loop {
        if crate::ipc::service(service).is_some() {
            break;
        }
        if process.zombie.load(core::sync::atomic::Ordering::Acquire) {
            return Err(format!(
                "/{member} (pid {pid}) exited (status {:#x}) before it registered service {service}",
                process
                    .exit_status
                    .load(core::sync::atomic::Ordering::Acquire)
            ));
        }
        if crate::arch::time::now_ns() - begin > REGISTER_TIMEOUT_NS {
            return Err(format!(
                "/{member} (pid {pid}) did not register service {service} within {} s",
                REGISTER_TIMEOUT_NS / 1_000_000_000
            ));
        }
        crate::sched::sleep_ns(1_000_000);
    }
    Ok((pid, process))
}

/// The contents of archive member `name` (`/.init/argv` and `/.init/envp`
/// are read from the archive in this structure), `None` if absent.
pub fn archive_member(archive: &'static [u8], name: &str) -> Result<Option<&'static [u8]>, Errno> {
    bootfmt::cpio::find(archive, name)
        .map(|e| e.map(|e| e.data))
        .map_err(|_| Errno::EINVAL)
}
