//! The process (thread group): identity, family, shared resources, exit
//! state, credentials and resource limits; and the pid/tid tables.
//!
//! Owns: `Process`, pid/tid allocation (one atomic counter: tids and pids
//! share a space, a process's pid is its first thread's tid), and the
//! hashed tables that map a pid or tid to its object (a lock per bucket;
//! entries are `Weak`, removed when the object goes away).
//!
//! Invariants: `live_threads` counts tasks of the process that have not
//! exited; the one that brings it to zero finishes the process
//! (`exit::finish_process`).  A zombie keeps its `exit_status` until its
//! parent reaps it.  Lock order: `children` before any child's lock;
//! table buckets are leaves.
//!
//! Must not: hold a table bucket lock while calling out.

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use super::files::Files;
use super::signal::ProcessSignals;
use super::task::Task;
use crate::memory::vm::AddressSpace;
use crate::sched::{IrqSpinLock, WaitQueue};

/// A process or thread id (Linux `pid_t`).
pub type Pid = i32;

/// Number of resource limits (`RLIMIT_*`, Linux has 16).
pub const RLIMIT_COUNT: usize = 16;
/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// One resource limit (`struct rlimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Rlimit {
    pub cur: u64,
    pub max: u64,
}

/// Linux's defaults for a fresh init process.
fn default_rlimits() -> [Rlimit; RLIMIT_COUNT] {
    let inf = Rlimit {
        cur: RLIM_INFINITY,
        max: RLIM_INFINITY,
    };
    let mut limits = [inf; RLIMIT_COUNT];
    limits[3] = Rlimit {
        cur: 8 << 20,
        max: RLIM_INFINITY,
    }; // RLIMIT_STACK
    limits[4] = Rlimit {
        cur: 0,
        max: RLIM_INFINITY,
    }; // RLIMIT_CORE
    limits[7] = Rlimit {
        cur: 1024,
        max: 4096,
    }; // RLIMIT_NOFILE
    limits[8] = Rlimit {
        cur: 8 << 20,
        max: 8 << 20,
    }; // RLIMIT_MEMLOCK
    limits
}

/// User and group ids (all root here; `set*id` may change them).
pub struct Creds {
    pub uid: AtomicU32,
    pub euid: AtomicU32,
    pub suid: AtomicU32,
    pub gid: AtomicU32,
    pub egid: AtomicU32,
    pub sgid: AtomicU32,
}

impl Creds {
    fn copy_of(other: &Creds) -> Creds {
        let get = |a: &AtomicU32| AtomicU32::new(a.load(Ordering::Relaxed));
        Creds {
            uid: get(&other.uid),
            euid: get(&other.euid),
            suid: get(&other.suid),
            gid: get(&other.gid),
            egid: get(&other.egid),
            sgid: get(&other.sgid),
        }
    }

    fn root() -> Creds {
        Creds {
            uid: AtomicU32::new(0),
            euid: AtomicU32::new(0),
            suid: AtomicU32::new(0),
            gid: AtomicU32::new(0),
            egid: AtomicU32::new(0),
            sgid: AtomicU32::new(0),
        }
    }
}

/// A process.
pub struct Process {
    pub pid: Pid,
    /// Parent's pid (changes when the parent dies: reparented to 1).
    pub ppid: AtomicI32,
    parent: IrqSpinLock<Weak<Process>>,
    /// Children, alive or zombie (removed when reaped).
    pub children: IrqSpinLock<Vec<Arc<Process>>>,
    /// Woken whenever a child changes state (wait4/waitid sleep here).
    pub child_wait: WaitQueue,
    /// The process's address space (tasks keep their own handle to it
    /// for the switch path; `execve` replaces both).
    aspace: IrqSpinLock<Option<Arc<AddressSpace>>>,
    /// Files and file-system context (`fs` glue).
    pub files: Files,
    /// IPC handles (`crate::ipc`): endpoints, notifications, reply
    /// tokens; per process, inherited at fork, released at exit.
    pub ipc: crate::ipc::HandleTable,
    pub signals: ProcessSignals,
    pub creds: Creds,
    pub rlimits: IrqSpinLock<[Rlimit; RLIMIT_COUNT]>,
    /// The threads (for kill, exit_group, execve).
    pub tasks: IrqSpinLock<Vec<Weak<Task>>>,
    pub live_threads: AtomicUsize,
    /// Set by the first exit_group / fatal signal: the other threads exit.
    pub exiting: AtomicBool,
    /// Wait status (Linux encoding) once the process ended.
    pub exit_status: AtomicI32,
    /// True once every thread exited (a zombie until reaped).
    pub zombie: AtomicBool,
    /// Set once the parent was sent SIGCHLD for this exit (after `zombie`):
    /// a reaper waits for it, so `wait4` never returns before the signal
    /// is pending (`exit::find_zombie`).
    pub exit_notified: AtomicBool,
    /// vfork: the parent sleeps here until this child execs or exits.
    pub vfork_done: AtomicBool,
    pub vfork_wait: WaitQueue,
    /// Program name (argv[0] of the last execve) for logs.
    pub name: IrqSpinLock<String>,
    /// Process group and session ids (`setpgid`, `setsid`), inherited at
    /// fork; PID 1 starts in group 0 and session 0, as on Linux.
    pub pgid: AtomicI32,
    pub sid: AtomicI32,
    /// What `/proc/<pid>` shows of the running program (set by execve).
    pub image: IrqSpinLock<ImageInfo>,
    /// `arch::time::now_ns` when the process was made.
    pub start_ns: u64,
}

/// The program a process runs, as `/proc/<pid>/{exe,cmdline}` show it.
#[derive(Clone, Default)]
pub struct ImageInfo {
    /// Absolute path of the executable without symlinks ("" when unknown
    /// or not worked out yet from `exe_request`).
    pub exe: String,
    /// The (cwd, path) execve was given, until `exe` is worked out.
    pub exe_request: Option<(Arc<::fs::Inode>, String)>,
    /// The arguments, each followed by a NUL.
    pub cmdline: Vec<u8>,
    /// The executable's inode (`/proc/<pid>/exe` leads to it).
    pub exe_inode: Option<Arc<::fs::Inode>>,
}

impl Process {
    /// A new process.  `parent` is `None` only for PID 1.
    pub fn new(
        pid: Pid,
        parent: Option<&Arc<Process>>,
        aspace: Arc<AddressSpace>,
        files: Files,
        signals: ProcessSignals,
        name: String,
    ) -> Arc<Process> {
        let (ppid, weak_parent, creds, rlimits) = match parent {
            Some(p) => (
                p.pid,
                Arc::downgrade(p),
                Creds::copy_of(&p.creds),
                *p.rlimits.lock(),
            ),
            None => (0, Weak::new(), Creds::root(), default_rlimits()),
        };
        let (pgid, sid) = parent.map_or((0, 0), |p| {
            (
                p.pgid.load(Ordering::Acquire),
                p.sid.load(Ordering::Acquire),
            )
        });
        let process = Arc::new(Process {
            pid,
            ppid: AtomicI32::new(ppid),
            parent: IrqSpinLock::new(weak_parent),
            children: IrqSpinLock::new(Vec::new()),
            child_wait: WaitQueue::new(),
            aspace: IrqSpinLock::new(Some(aspace)),
            files,
            ipc: crate::ipc::HandleTable::new(),
            signals,
            creds,
            rlimits: IrqSpinLock::new(rlimits),
            tasks: IrqSpinLock::new(Vec::new()),
            live_threads: AtomicUsize::new(0),
            exiting: AtomicBool::new(false),
            exit_status: AtomicI32::new(0),
            zombie: AtomicBool::new(false),
            exit_notified: AtomicBool::new(false),
            vfork_done: AtomicBool::new(false),
            vfork_wait: WaitQueue::new(),
            // A fork copies its parent's (`clone.rs`); PID 1 starts with
            // what its name says.
            image: IrqSpinLock::new(if parent.is_none() {
                image_of_first(&name)
            } else {
                ImageInfo::default()
            }),
            name: IrqSpinLock::new(name),
            pgid: AtomicI32::new(pgid),
            sid: AtomicI32::new(sid),
            start_ns: crate::arch::time::now_ns(),
        });
        LIVE.fetch_add(1, Ordering::Relaxed);
        register_process(&process);
        if let Some(p) = parent {
            p.children.lock().push(process.clone());
        }
        process
    }

    /// The parent, if it still exists.
    pub fn parent(&self) -> Option<Arc<Process>> {
        self.parent.lock().upgrade()
    }

    /// Makes `new_parent` the parent (the old one died).
    pub fn set_parent(&self, new_parent: &Arc<Process>) {
        *self.parent.lock() = Arc::downgrade(new_parent);
        self.ppid.store(new_parent.pid, Ordering::Release);
    }

    /// The address space (shared by the process's tasks); `None` once the
    /// process ended.
    #[allow(dead_code)] // interface for other subsystems (docs/USERSPACE.md)
    pub fn aspace(&self) -> Option<Arc<AddressSpace>> {
        self.aspace.lock().clone()
    }

    /// Records the address space installed by `execve`, or drops it
    /// (`None`) when the process ends.
    pub fn set_aspace(&self, aspace: Option<Arc<AddressSpace>>) {
        let old = core::mem::replace(&mut *self.aspace.lock(), aspace);
        drop(old);
    }

    /// Adds a task (before it first runs).
    pub fn add_task(&self, task: &Arc<Task>) {
        self.tasks.lock().push(Arc::downgrade(task));
        self.live_threads.fetch_add(1, Ordering::AcqRel);
    }

    /// The live tasks.
    pub fn task_list(&self) -> Vec<Arc<Task>> {
        let mut tasks = self.tasks.lock();
        tasks.retain(|w| w.strong_count() > 0);
        tasks.iter().filter_map(Weak::upgrade).collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Processes in existence (zombies included).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// What PID 1 shows in `/proc` before any execve: its program, by the
/// absolute name it was started with (its arguments are not kept).
fn image_of_first(name: &str) -> ImageInfo {
    let root = crate::files::root_fs();
    let exe_inode = if name.starts_with('/') {
        root.lookup(root.root_ref(), name, true).ok()
    } else {
        None
    };
    ImageInfo {
        exe: if exe_inode.is_some() {
            String::from(name)
        } else {
            String::new()
        },
        exe_request: None,
        cmdline: name.bytes().chain([0]).collect(),
        exe_inode,
    }
}

/// Ids handed out so far (Linux's `processes` of `/proc/stat`: forks
/// and clones since boot, plus PID 1).
pub fn ids_allocated() -> u64 {
    (NEXT_ID.load(Ordering::Relaxed) - 1) as u64
}

/// The pids of every process in existence (zombies included), ascending.
pub fn all_pids() -> Vec<Pid> {
    let mut pids: Vec<Pid> = PROCESSES
        .iter()
        .flat_map(|b| {
            b.lock()
                .iter()
                .filter(|(_, w)| w.strong_count() > 0)
                .map(|(pid, _)| *pid)
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Number of processes in existence (for `sysinfo`).
pub fn live_processes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Next pid/tid (1 is PID 1).
static NEXT_ID: AtomicI32 = AtomicI32::new(1);

/// A fresh pid/tid.
pub fn alloc_id() -> Pid {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Buckets of the pid and tid tables.
const BUCKETS: usize = 64;

type Bucket<T> = IrqSpinLock<Vec<(Pid, Weak<T>)>>;

static PROCESSES: [Bucket<Process>; BUCKETS] = [const { IrqSpinLock::new(Vec::new()) }; BUCKETS];
static TASKS: [Bucket<Task>; BUCKETS] = [const { IrqSpinLock::new(Vec::new()) }; BUCKETS];

fn bucket_of(id: Pid) -> usize {
    (id as u32 as usize) % BUCKETS
}

fn insert<T>(table: &[Bucket<T>; BUCKETS], id: Pid, item: &Arc<T>) {
    let mut bucket = table[bucket_of(id)].lock();
    bucket.retain(|(_, w)| w.strong_count() > 0);
    bucket.push((id, Arc::downgrade(item)));
}

fn lookup<T>(table: &[Bucket<T>; BUCKETS], id: Pid) -> Option<Arc<T>> {
    if id <= 0 {
        return None;
    }
    let bucket = table[bucket_of(id)].lock();
    bucket
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, w)| w.upgrade())
}

fn remove<T>(table: &[Bucket<T>; BUCKETS], id: Pid) {
    table[bucket_of(id)]
        .lock()
        .retain(|(i, w)| *i != id && w.strong_count() > 0);
}

fn register_process(p: &Arc<Process>) {
    insert(&PROCESSES, p.pid, p);
}

/// Records a task in the tid table.
pub fn register_task(t: &Arc<Task>) {
    insert(&TASKS, t.tid, t);
}

/// Removes a task from the tid table (it exited).
pub fn unregister_task(tid: Pid) {
    remove(&TASKS, tid);
}

/// Removes a reaped process from the pid table.
pub fn unregister_process(pid: Pid) {
    remove(&PROCESSES, pid);
}

/// The process with this pid (alive or zombie).
pub fn find_process(pid: Pid) -> Option<Arc<Process>> {
    lookup(&PROCESSES, pid)
}

/// Whether some process (alive or zombie) satisfies `pred` (walks every
/// bucket: for the rare process-group checks of setsid/setpgid).
pub fn any_process(pred: impl Fn(&Process) -> bool) -> bool {
    PROCESSES.iter().any(|bucket| {
        bucket
            .lock()
            .iter()
            .any(|(_, w)| w.upgrade().is_some_and(|p| pred(&p)))
    })
}

/// Every process (alive or zombie) that satisfies `pred`, e.g. the
/// members of a process group for `kill(-pgid)`.
pub fn processes_where(pred: impl Fn(&Process) -> bool) -> Vec<Arc<Process>> {
    let mut out = Vec::new();
    for bucket in PROCESSES.iter() {
        out.extend(
            bucket
                .lock()
                .iter()
                .filter_map(|(_, w)| w.upgrade())
                .filter(|p| pred(p)),
        );
    }
    out
}

/// The live task with this tid.
pub fn find_task(tid: Pid) -> Option<Arc<Task>> {
    lookup(&TASKS, tid)
}
