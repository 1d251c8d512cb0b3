//! The workload table: names, what each counts, and how to set one up.
//!
//! Owns the list `wis --list` prints and the slots of the network workloads
//! that are not written yet.  A workload is two plain functions: `setup`
//! (run once by the main thread before any worker starts: directories and
//! files every worker needs) and `worker` (run in worker w after it is pinned:
//! opens its own files and returns the operation closure).  An operation
//! returns how much it did (1, or bytes for byte-rate workloads).  It must
//! not measure time or print (runner.rs and main.rs do).

use crate::sys::Res;
use crate::{files, system};

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

/// How a workload is run, or why it cannot be yet.
pub enum Kind {
    Ready {
        setup: fn(&Ctx) -> Res<()>,
        worker: fn(&Ctx, usize) -> Res<Op>,
    },
    /// A slot reserved for a workload that needs a part the systems lack
    /// so far (the network workloads, until net/ lands).
    NotYet(&'static str),
}

pub struct Workload {
    pub name: &'static str,
    pub unit: Unit,
    pub kind: Kind,
}

impl Workload {
    pub fn make_worker(&self, ctx: &Ctx, w: usize) -> Res<Op> {
        match &self.kind {
            Kind::Ready { worker, .. } => worker(ctx, w),
            Kind::NotYet(why) => Err(crate::sys::Fail::msg(*why)),
        }
    }
}

const NET_NOT_YET: &str = "not yet: the network workloads join when the kernel's net/ lands";

/// Every workload, in the order `wis --list` prints the ready ones.
pub static WORKLOADS: &[Workload] = &[
    // system
    Workload {
        name: "getppid",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: no_setup,
            worker: system::getppid,
        },
    },
    Workload {
        name: "context_switch",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: no_setup,
            worker: system::context_switch,
        },
    },
    Workload {
        name: "page_fault",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: no_setup,
            worker: system::page_fault,
        },
    },
    // file metadata
    Workload {
        name: "open_close_private",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::open_close_private,
        },
    },
    Workload {
        name: "open_close_shared",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::open_close_shared,
        },
    },
    Workload {
        name: "create_unlink_private",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::create_unlink_private,
        },
    },
    Workload {
        name: "create_unlink_shared",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::create_unlink_shared,
        },
    },
    Workload {
        name: "stat_private",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::stat_private,
        },
    },
    Workload {
        name: "stat_shared",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::stat_shared,
        },
    },
    Workload {
        name: "readdir_1000",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_dir_1000,
            worker: files::readdir_1000,
        },
    },
    // file data
    Workload {
        name: "pread4k_private",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::pread4k_private,
        },
    },
    Workload {
        name: "pread4k_shared",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::pread4k_shared,
        },
    },
    Workload {
        name: "append4k",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::append4k,
        },
    },
    Workload {
        name: "seq_write",
        unit: Unit::Bytes,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::seq_write,
        },
    },
    Workload {
        name: "seq_read",
        unit: Unit::Bytes,
        kind: Kind::Ready {
            setup: files::setup_big,
            worker: files::seq_read,
        },
    },
    Workload {
        name: "mmap_read_shared",
        unit: Unit::Ops,
        kind: Kind::Ready {
            setup: files::setup_small,
            worker: files::mmap_read_shared,
        },
    },
    // network (slots; see WORKLOADS.md)
    Workload {
        name: "tcp_rr",
        unit: Unit::Ops,
        kind: Kind::NotYet(NET_NOT_YET),
    },
    Workload {
        name: "tcp_stream",
        unit: Unit::Bytes,
        kind: Kind::NotYet(NET_NOT_YET),
    },
    Workload {
        name: "tcp_connect",
        unit: Unit::Ops,
        kind: Kind::NotYet(NET_NOT_YET),
    },
    Workload {
        name: "udp_rr",
        unit: Unit::Ops,
        kind: Kind::NotYet(NET_NOT_YET),
    },
];

fn no_setup(_: &Ctx) -> Res<()> {
    Ok(())
}

/// The workload called `name`.
pub fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}
