//! Crash isolation of the file server (`structure=servers`;
//! docs/SERVERS.md "When the file server crashes"): a kernel thread
//! notices that the file server died (killed, crashed, exited) without a
//! replacement under way, starts a fresh instance from the archive and
//! attaches to it.
//!
//! What the kernel promises meanwhile: callers never hang (calls queued
//! at the dead server fail with `EPIPE`, which the client turns into
//! `EIO`; calls while no server is registered are `EIO`); the kernel goes
//! on.  What survives a crash: **only the initramfs** (the new instance
//! unpacks the archive again; every file written since boot is gone,
//! as with a tmpfs after a reboot).  Handles the kernel held (open files,
//! working directories) belong to the dead instance: the new one starts
//! its handle numbers in a new epoch (`epoch=N`, `fsd::handles`), so they
//! fail with `EBADF` and can never name another file.
//!
//! Owns: the epoch counter and the watcher thread.  Must not: restart
//! during a replacement (the old instance exits on purpose then), or hold
//! a lock across the restart.

use core::sync::atomic::{AtomicU32, Ordering};

/// Instances started since boot, minus one (0 at boot).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// How often the watcher looks (a death costs at most this much more):
/// one 10 ms tick, so the idle watcher costs next to nothing.  (Waiting on
/// the process's exit instead of looking is the better way; no such wait
/// exists for a kernel thread yet.)
const POLL_NS: u64 = 10_000_000;

/// The current file server's epoch.
pub fn epoch() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// Starts the watcher (once, at boot, after the first instance attached).
pub fn watch(archive: &'static [u8]) {
    let _ = crate::sched::spawn("fsd-watch", None, move || loop {
        crate::sched::sleep_ns(POLL_NS);
        let pid = crate::files::remote::server_pid();
        let dead =
            super::process::find_process(pid).is_none_or(|p| p.zombie.load(Ordering::Acquire));
        if !dead || super::server_replace::replacing() || pid != crate::files::remote::server_pid()
        {
            continue;
        }
        let began = crate::arch::time::now_ns();
        // Callers waiting in its request slots (dedicated placement) get
        // `EPIPE` as the endpoint's do (done already if its last receive
        // right went with its handles).
        crate::ipc::server_gone(abi::ipc::SERVICE_FS);
        // The dead instance's endpoint goes with its handles; register
        // the new one only after (a lookup must not find the old one).
        while crate::ipc::service(abi::ipc::SERVICE_FS).is_some() {
            crate::sched::sleep_ns(POLL_NS);
        }
        let epoch = EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
        log::warn!("servers: file server pid {pid} died; restarting it (epoch {epoch})");
        match super::servers::start_file_server_epoch(archive, epoch) {
            Ok(new) => log::info!(
                "servers: file server restarted as pid {new} after {} us (state: the initramfs only)",
                (crate::arch::time::now_ns() - began) / 1000
            ),
            Err(msg) => {
                log::error!("servers: restarting the file server failed: {msg}");
                return;
            }
        }
    });
}

/// `inject=crash:fs@SECONDS` on the command line: a kernel thread kills
/// the file server (SIGKILL) SECONDS after the call (once `/init` runs),
/// to show the isolation (`comparison run --inject`).
pub fn inject_from_cmdline(line: &str) {
    let Some(spec) = line
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("inject="))
    else {
        return;
    };
    let (net, ns) = match (
        spec.strip_prefix("crash:fs@"),
        spec.strip_prefix("crash:net@"),
    ) {
        (Some(s), _) => (false, super::server_replace::parse_secs(s)),
        (_, Some(s)) => (true, super::server_replace::parse_secs(s)),
        _ => (false, None),
    };
    let Some(ns) = ns else {
        log::warn!("servers: inject={spec}: expected crash:fs@SECONDS or crash:net@SECONDS");
        return;
    };
    let _ = crate::sched::spawn("srv-inject", None, move || {
        crate::sched::sleep_ns(ns);
        if net {
            super::net_server::inject_crash();
            return;
        }
        let pid = crate::files::remote::server_pid();
        if let Some(p) = super::process::find_process(pid) {
            log::warn!("servers: injecting a crash: killing the file server pid {pid}");
            super::exit::kill_process(&p, 9);
        }
    });
}
