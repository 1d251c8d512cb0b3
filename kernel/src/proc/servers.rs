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
//! is told (argv `initramfs=ADDR,LEN`), and the start-up handshake with
//! its timeout.
//!
//! Must not: start `/init` (the caller does, once this returned), or wait
//! forever (a server that does not register within `REGISTER_TIMEOUT_NS`
//! is an error message, and the boot ends).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::files::Program;
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

/// How long the kernel waits for the server to register.
const REGISTER_TIMEOUT_NS: u64 = 20_000_000_000;

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
    let argv: Vec<Vec<u8>> = vec![
        b"fsd".to_vec(),
        format!("initramfs={ARCHIVE_BASE:x},{}", archive.len()).into_bytes(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
        format!("epoch={epoch}").into_bytes(),
    ];
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
            )
        },
        crate::files::remote::set_server_pid,
    )?;
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

/// Loads and starts the network server from `archive` (after the file
/// server); returns its pid once it registered `SERVICE_NET` and the
/// kernel attached.  The kernel makes the notification for readiness
/// reports, puts a handle to it (notify right only) into the server's
/// table and names it in `Attach { notify }`; it keeps the object itself
/// for its collector thread (`sockets::remote`).
pub fn start_net_server(archive: &'static [u8]) -> Result<super::process::Pid, String> {
    let argv: Vec<Vec<u8>> = vec![
        b"netd".to_vec(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
    ];
    let started = crate::arch::time::now_ns();
    let (pid, process) = start_server(
        archive,
        NETD_PATH,
        abi::ipc::SERVICE_NET,
        &argv,
        |_| Ok(()),
        |_| {},
    )?;
    let notification = alloc::sync::Arc::new(crate::ipc::Notification::new());
    let notify = process
        .ipc
        .insert_or_drop(
            crate::ipc::Object::Notification(notification.clone()),
            abi::ipc::RIGHT_SEND,
            0,
        )
        .map_err(|e| format!("a notification for /{NETD_PATH}: errno {}", e.0))?;
    crate::sockets::remote::attach(pid, notify, notification)
        .map_err(|e| format!("attach to the network server: errno {}", e.0))?;
    log::info!(
        "servers: network server /{} is pid {}, SERVICE_NET registered after {} ms",
        NETD_PATH,
        pid,
        (crate::arch::time::now_ns() - started) / 1_000_000
    );
    Ok(pid)
}

/// Starts the server program `member` of `archive` with `argv` (`prepare`
/// sets up its address space, `started` learns its pid before it can
/// call) and waits until it registered `service`.
fn start_server(
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
    let pid = super::init::spawn_program(&prog, &path, argv, &[], None, prepare)
        .map_err(|e| format!("cannot start /{member}: errno {}", e.0))?;
    started(pid);
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
