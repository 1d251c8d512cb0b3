//! Starting the OS servers of `structure=servers` (docs/SERVERS.md,
//! "Kernel side / boot"): the file server `fsd` is loaded straight from the
//! initramfs archive in memory (no file system is involved: the file system
//! is what it brings), given a copy of the archive, and waited for until it
//! registered `SERVICE_FS`; then the kernel attaches as its client.
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
    let entry = bootfmt::cpio::find(archive, FSD_PATH)
        .map_err(|e| format!("initramfs: {e}"))?
        .ok_or_else(|| {
            format!("/{FSD_PATH} is not in the initramfs (structure=servers needs it)")
        })?;
    let prog = Program::Bytes(entry.data);
    let argv: Vec<Vec<u8>> = vec![
        b"fsd".to_vec(),
        format!("initramfs={ARCHIVE_BASE:x},{}", archive.len()).into_bytes(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
    ];
    let path = format!("/{FSD_PATH}");
    let started = crate::arch::time::now_ns();
    let pid = super::init::spawn_program(&prog, &path, &argv, &[], None, |aspace| {
        aspace.map_fixed_with_data(
            ARCHIVE_BASE,
            archive.len() as u64,
            archive,
            crate::mm::vm::PROT_READ,
        )
    })
    .map_err(|e| format!("cannot start /{FSD_PATH}: errno {}", e.0))?;
    crate::fs::remote::set_server_pid(pid);
    let process = super::process::find_process(pid)
        .ok_or_else(|| format!("/{FSD_PATH} (pid {pid}) is gone at once"))?;
    // The handshake: the server registers once its root is populated.
    loop {
        if crate::ipc::service(abi::ipc::SERVICE_FS).is_some() {
            break;
        }
        if process.zombie.load(core::sync::atomic::Ordering::Acquire) {
            return Err(format!(
                "/{FSD_PATH} (pid {pid}) exited (status {:#x}) before it registered SERVICE_FS",
                process
                    .exit_status
                    .load(core::sync::atomic::Ordering::Acquire)
            ));
        }
        if crate::arch::time::now_ns() - started > REGISTER_TIMEOUT_NS {
            return Err(format!(
                "/{FSD_PATH} (pid {pid}) did not register SERVICE_FS within {} s",
                REGISTER_TIMEOUT_NS / 1_000_000_000
            ));
        }
        crate::sched::sleep_ns(1_000_000);
    }
    crate::fs::remote::attach().map_err(|e| format!("attach to the file server: errno {}", e.0))?;
    log::info!(
        "servers: file server /{} is pid {}, SERVICE_FS registered after {} ms",
        FSD_PATH,
        pid,
        (crate::arch::time::now_ns() - started) / 1_000_000
    );
    Ok(pid)
}

/// The contents of archive member `name` (`/.init/argv` and `/.init/envp`
/// are read from the archive in this structure), `None` if absent.
pub fn archive_member(archive: &'static [u8], name: &str) -> Result<Option<&'static [u8]>, Errno> {
    bootfmt::cpio::find(archive, name)
        .map(|e| e.map(|e| e.data))
        .map_err(|_| Errno::EINVAL)
}
