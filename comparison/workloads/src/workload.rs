//! The workload table: names, what each counts, and how to set one up.
//!
//! Owns the list `wis --list` prints.  A workload is two plain functions: `setup`
//! (run once by the main thread before any worker starts: directories and
//! files every worker needs) and `worker` (run in worker w after it is pinned:
//! opens its own files and returns the operation closure).  An operation
//! returns how much it did (1, or bytes for byte-rate workloads).  It must
//! not measure time or print (runner.rs and main.rs do).

use crate::sys::Res;
use crate::{files, net, spawn, system};

/// One operation of a worker: returns the amount to count.
pub type Op = Box<dyn FnMut() -> Res<u64>>;

/// What a run's `ops` counts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unit {
    /// Operations (the default; no `unit` field in the output).
    Ops,
    /// Bytes (`"unit":"bytes"`; `ops_per_sec` is bytes per second).
    Bytes,
}

/// Parameters every workload sees.
pub struct Ctx {
    /// Number of workers T (worker w runs on CPU w).
    pub workers: usize,
    /// Workers are processes (`--procs`) rather than threads.
    pub procs: bool,
    /// This workload's own directory (`--dir`/NAME), made fresh by main.rs.
    pub dir: String,
    /// Size of each file of the sequential read/write workloads, in bytes.
    pub big_file_bytes: u64,
}

pub struct Workload {
    pub name: &'static str,
    pub unit: Unit,
    /// Run once by the main thread before any worker starts.
    pub setup: fn(&Ctx) -> Res<()>,
    /// Run in worker w after it is pinned: returns its operation.
    pub worker: fn(&Ctx, usize) -> Res<Op>,
}

impl Workload {
    pub fn make_worker(&self, ctx: &Ctx, w: usize) -> Res<Op> {
        (self.worker)(ctx, w)
    }
}

/// Every workload, in the order `wis --list` prints the ready ones.
pub static WORKLOADS: &[Workload] = &[
    // system
    Workload {
        name: "getppid",
        unit: Unit::Ops,
        setup: no_setup,
        worker: system::getppid,
    },
    Workload {
        name: "ipc_call",
        unit: Unit::Ops,
        setup: no_setup,
        worker: system::ipc_call,
    },
    Workload {
        name: "ipc_call_remote",
        unit: Unit::Ops,
        setup: no_setup,
        worker: system::ipc_call_remote,
    },
    Workload {
        name: "context_switch",
        unit: Unit::Ops,
        setup: no_setup,
        worker: system::context_switch,
    },
    Workload {
        name: "page_fault",
        unit: Unit::Ops,
        setup: no_setup,
        worker: system::page_fault,
    },
    Workload {
        name: "munmap_shared_region",
        unit: Unit::Ops,
        setup: system::setup_shared_region,
        worker: system::munmap_shared_region,
    },
    Workload {
        name: "exec_static",
        unit: Unit::Ops,
        setup: spawn::setup_exec,
        worker: spawn::exec_static,
    },
    Workload {
        name: "spawn_shell",
        unit: Unit::Ops,
        setup: no_setup,
        worker: spawn::spawn_shell,
    },
    // file metadata
    Workload {
        name: "open_close_private",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::open_close_private,
    },
    Workload {
        name: "open_close_shared",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::open_close_shared,
    },
    Workload {
        name: "open_close_skewed",
        unit: Unit::Ops,
        setup: files::setup_skewed,
        worker: files::open_close_skewed,
    },
    Workload {
        name: "create_unlink_private",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::create_unlink_private,
    },
    Workload {
        name: "create_unlink_shared",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::create_unlink_shared,
    },
    Workload {
        name: "stat_private",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::stat_private,
    },
    Workload {
        name: "stat_shared",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::stat_shared,
    },
    Workload {
        name: "readdir_1000",
        unit: Unit::Ops,
        setup: files::setup_dir_1000,
        worker: files::readdir_1000,
    },
    // file data
    Workload {
        name: "pread4k_private",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::pread4k_private,
    },
    Workload {
        name: "pread4k_shared",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::pread4k_shared,
    },
    Workload {
        name: "append4k",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::append4k,
    },
    Workload {
        name: "write4k_fsync",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::write4k_fsync,
    },
    Workload {
        name: "seq_write",
        unit: Unit::Bytes,
        setup: files::setup_small,
        worker: files::seq_write,
    },
    Workload {
        name: "seq_read",
        unit: Unit::Bytes,
        setup: files::setup_big,
        worker: files::seq_read,
    },
    Workload {
        name: "mmap_read_shared",
        unit: Unit::Ops,
        setup: files::setup_small,
        worker: files::mmap_read_shared,
    },
    // network (loopback)
    Workload {
        name: "tcp_rr",
        unit: Unit::Ops,
        setup: no_setup,
        worker: net::tcp_rr,
    },
    Workload {
        name: "tcp_stream",
        unit: Unit::Bytes,
        setup: no_setup,
        worker: net::tcp_stream,
    },
    Workload {
        name: "tcp_connect",
        unit: Unit::Ops,
        setup: net::setup_shared_listener,
        worker: net::tcp_connect,
    },
    Workload {
        name: "udp_rr",
        unit: Unit::Ops,
        setup: no_setup,
        worker: net::udp_rr,
    },
];

fn no_setup(_: &Ctx) -> Res<()> {
    Ok(())
}

/// Release what a workload's set-up keeps for its workers beyond its
/// directory (tcp_connect's shared listener), so nothing of one workload
/// is left when the next starts.  main.rs calls it after every workload.
pub fn release() {
    net::close_shared_listener();
}

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// The position of `w` in `WORKLOADS` (the `--mark-ops` dump label).
pub fn index(w: &Workload) -> u16 {
    WORKLOADS
        .iter()
        .position(|x| std::ptr::eq(x, w))
        .expect("a workload of the table") as u16
}
