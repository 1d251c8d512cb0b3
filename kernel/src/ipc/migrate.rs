//! Server-thread migration (`servers.migrate=on`, docs/IPC.md
//! "Placement and migration"): a kernel thread that moves a service's
//! server thread to the core whose callers waited most for it.
//!
//! Policy.  Every `INTERVAL_NS` the thread reads, for each registered
//! service endpoint, how many nanoseconds the callers on each CPU spent
//! in calls there during the interval (`Endpoint::cpu_stats`, counted by
//! the callers on their own CPU) and resets the counts.  The busiest CPU
//! is the one with the most waiting; each server thread of the endpoint
//! (a thread that received there) is pinned to it (`sched::set_affinity`,
//! a one-bit mask; the thread moves at its next pass through the
//! scheduler, i.e. when it next waits for a call) if
//! (`migrate_policy::choose`)
//! - its callers waited at least `MIN_WAIT_NS` in the interval (an idle
//!   server stays where it is), and
//! - the thread is not pinned there yet and the busiest CPU's waiting is
//!   more than `HYSTERESIS_PCT` percent of the waiting on its current CPU
//!   (so two CPUs with the same load do not make it bounce).
//!
//! Only for `servers.placement=single` (percore and dedicated threads are
//! placed on purpose).  Every move is counted (`moves`, printed with the
//! `vmstat` word as `ipcstat: ... migrations=N`) and logged at debug
//! level.
//!
//! Owns: the migration thread, the move counter.  Must not: hold a lock
//! while it sleeps, or move a thread that is not a server of the endpoint.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::Endpoint;
use crate::sched;

/// How often the policy runs.
pub const INTERVAL_NS: u64 = 20_000_000;
use super::migrate_policy::choose;

/// Moves made so far (a counter for `vmstat`; written by the one
/// migration thread only, read at exit: no per-CPU need).
static MOVES: AtomicU64 = AtomicU64::new(0);

/// Moves made so far.
pub fn moves() -> u64 {
    MOVES.load(Ordering::Relaxed)
}

use super::migrate_policy::pinned_cpu;

/// One pass of the policy over `endpoint` (service `name`).
fn step(name: &str, endpoint: &Endpoint) {
    let stats = endpoint.cpu_stats(true);
    let waited: Vec<u64> = stats.iter().map(|s| s.waited_ns).collect();
    let calls: u64 = stats.iter().map(|s| s.calls).sum();
    for thread in endpoint.server_threads() {
        let current = pinned_cpu(thread.affinity_mask());
        let Some(target) = choose(&waited, current) else {
            continue;
        };
        if sched::set_affinity(&thread, 1u64 << target).is_ok() {
            MOVES.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "ipc: migrate: {} server thread {} cpu {:?} -> {} ({} calls, callers waited {:?} ns per cpu)",
                name,
                thread.id(),
                current,
                target,
                calls,
                waited
            );
        }
    }
}

/// Starts the migration thread over `services` (name, endpoint); the
/// endpoints' callers start timing their calls.
pub fn start(services: Vec<(&'static str, Arc<Endpoint>)>) {
    for (_, ep) in &services {
        ep.set_timed(true);
    }
    log::info!(
        "ipc: server migration on: every {} ms, to the cpu whose callers waited most",
        INTERVAL_NS / 1_000_000
    );
    sched::spawn("ipc-migrate", None, move || loop {
        sched::sleep_ns(INTERVAL_NS);
        for (name, ep) in &services {
            step(name, ep);
        }
    });
}

/// With the kernel command-line word `vmstat`, prints at PID 1's exit
/// `ipcstat: local_calls=N ring_calls=N migrations=N`: calls of the
/// registered services delivered on the caller's own CPU without the
/// endpoint lock, calls through a dedicated server's request slots
/// (`ipc::ring`), and server-thread moves.
pub fn report_if_asked() {
    let asked = crate::boot::cmdline().is_ok_and(|line| crate::cmdline::has_word(line, "vmstat"));
    if !asked {
        return;
    }
    let endpoints: Vec<Arc<Endpoint>> = [abi::ipc::SERVICE_FS, abi::ipc::SERVICE_NET]
        .iter()
        .filter_map(|&s| super::service(s))
        .collect();
    let local: u64 = endpoints
        .iter()
        .flat_map(|ep| ep.cpu_stats(false))
        .map(|s| s.local)
        .sum();
    let ring: u64 = endpoints
        .iter()
        .filter_map(|ep| ep.ring())
        .map(|r| r.calls())
        .sum();
    crate::log::report(format_args!(
        "ipcstat: local_calls={} ring_calls={} migrations={}",
        local,
        ring,
        moves()
    ));
}
