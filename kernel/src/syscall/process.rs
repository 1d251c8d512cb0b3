//! Process and thread system calls that are thin over `proc`: identity
//! (getpid, gettid, getppid, uid/gid families), set_tid_address,
//! set_robust_list, arch_prctl, resource limits, scheduling (yield,
//! affinity).  fork/clone/execve/exit/wait live in `proc` and are called
//! from the table directly.
//!
//! Per-core rule: getpid and gettid read the running task through the
//! per-CPU area; no lock.  Must not: change another process's state
//! without a permission check (everyone is root here, so the check is the
//! existence of the target).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::memory::uaccess::UserAddr;
use crate::proc::process::{self, Rlimit, RLIMIT_COUNT};
use crate::proc::{current_task, Task};
use crate::sched;
use abi::{Errno, SysResult};

/// The calling task (syscalls only come from user tasks).
fn me() -> Result<&'static Task, Errno> {
    current_task().ok_or(Errno::ENOSYS)
}

pub fn sys_getpid() -> SysResult {
    Ok(me()?.process.pid as usize)
}

pub fn sys_gettid() -> SysResult {
    Ok(me()?.tid as usize)
}

pub fn sys_getppid() -> SysResult {
    Ok(me()?.process.ppid.load(Ordering::Acquire) as usize)
}

/// Which id of `Creds` a get call reads.
pub enum Id {
    Uid,
    Euid,
    Gid,
    Egid,
}

pub fn sys_getid(which: Id) -> SysResult {
    let c = &me()?.process.creds;
    let v = match which {
        Id::Uid => &c.uid,
        Id::Euid => &c.euid,
        Id::Gid => &c.gid,
        Id::Egid => &c.egid,
    };
    Ok(v.load(Ordering::Relaxed) as usize)
}

/// `setuid`/`setgid`: root may set all three ids; others only to a value
/// they already hold.
pub fn sys_setid(id: u32, group: bool) -> SysResult {
    let c = &me()?.process.creds;
    let (real, eff, saved) = if group {
        (&c.gid, &c.egid, &c.sgid)
    } else {
        (&c.uid, &c.euid, &c.suid)
    };
    if c.euid.load(Ordering::Relaxed) == 0 {
        real.store(id, Ordering::Relaxed);
        eff.store(id, Ordering::Relaxed);
        saved.store(id, Ordering::Relaxed);
        return Ok(0);
    }
    if id == real.load(Ordering::Relaxed) || id == saved.load(Ordering::Relaxed) {
        eff.store(id, Ordering::Relaxed);
        return Ok(0);
    }
    Err(Errno::EPERM)
}

/// `setresuid`/`setresgid` (-1 keeps a value).
pub fn sys_setresid(r: u32, e: u32, s: u32, group: bool) -> SysResult {
    let c = &me()?.process.creds;
    let (real, eff, saved): (&AtomicU32, &AtomicU32, &AtomicU32) = if group {
        (&c.gid, &c.egid, &c.sgid)
    } else {
        (&c.uid, &c.euid, &c.suid)
    };
    let root = c.euid.load(Ordering::Relaxed) == 0;
    let held = [
        real.load(Ordering::Relaxed),
        eff.load(Ordering::Relaxed),
        saved.load(Ordering::Relaxed),
    ];
    for v in [r, e, s] {
        if v != u32::MAX && !root && !held.contains(&v) {
            return Err(Errno::EPERM);
        }
    }
    for (slot, v) in [(real, r), (eff, e), (saved, s)] {
        if v != u32::MAX {
            slot.store(v, Ordering::Relaxed);
        }
    }
    Ok(0)
}

/// `setreuid`/`setregid` (-1 keeps a value).  Unprivileged, the real id
/// may become the effective one and the effective id any of the three;
/// as on Linux, the saved id becomes the new effective id whenever the real
/// id is set or the effective id is set to something other than the old
/// real id.
pub fn sys_setreid(r: u32, e: u32, group: bool) -> SysResult {
    let c = &me()?.process.creds;
    let (real, eff, saved): (&AtomicU32, &AtomicU32, &AtomicU32) = if group {
        (&c.gid, &c.egid, &c.sgid)
    } else {
        (&c.uid, &c.euid, &c.suid)
    };
    let root = c.euid.load(Ordering::Relaxed) == 0;
    let (old_r, old_e, old_s) = (
        real.load(Ordering::Relaxed),
        eff.load(Ordering::Relaxed),
        saved.load(Ordering::Relaxed),
    );
    if !root {
        if r != u32::MAX && r != old_r && r != old_e {
            return Err(Errno::EPERM);
        }
        if e != u32::MAX && e != old_r && e != old_e && e != old_s {
            return Err(Errno::EPERM);
        }
    }
    let new_e = if e != u32::MAX { e } else { old_e };
    if r != u32::MAX {
        real.store(r, Ordering::Relaxed);
    }
    eff.store(new_e, Ordering::Relaxed);
    if r != u32::MAX || (e != u32::MAX && e != old_r) {
        saved.store(new_e, Ordering::Relaxed);
    }
    Ok(0)
}

/// `getresuid`/`getresgid`.
pub fn sys_getresid(r: UserAddr, e: UserAddr, s: UserAddr, group: bool) -> SysResult {
    let c = &me()?.process.creds;
    let (real, eff, saved) = if group {
        (&c.gid, &c.egid, &c.sgid)
    } else {
        (&c.uid, &c.euid, &c.suid)
    };
    r.write(&real.load(Ordering::Relaxed))?;
    e.write(&eff.load(Ordering::Relaxed))?;
    s.write(&saved.load(Ordering::Relaxed))?;
    Ok(0)
}

/// The process `pid` names (0: the caller's), or ESRCH.
fn process_of(pid: i32) -> Result<alloc::sync::Arc<process::Process>, Errno> {
    let t = me()?;
    if pid == 0 || pid == t.process.pid {
        return Ok(t.process.clone());
    }
    process::find_process(pid).ok_or(Errno::ESRCH)
}

/// `getpgid(pid)` / `getpgrp()` (pid 0): the process group of `pid`.
pub fn sys_getpgid(pid: i32) -> SysResult {
    Ok(process_of(pid)?.pgid.load(Ordering::Acquire) as usize)
}

/// `getsid(pid)`: the session of `pid`.
pub fn sys_getsid(pid: i32) -> SysResult {
    Ok(process_of(pid)?.sid.load(Ordering::Acquire) as usize)
}

/// `setpgid(pid, pgid)` (0 = the caller / the target's own pid), with
/// Linux's rules: the target is the caller or one of its children, in the
/// caller's session and not a session leader; the group joined is a new
/// one named by the target or one that exists in that session.  (Not
/// checked: EACCES for a child that has already called execve.)
pub fn sys_setpgid(pid: i32, pgid: i32) -> SysResult {
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let caller = me()?.process.clone();
    let target = process_of(pid)?;
    if !alloc::sync::Arc::ptr_eq(&target, &caller)
        && target.ppid.load(Ordering::Acquire) != caller.pid
    {
        return Err(Errno::ESRCH);
    }
    let sid = caller.sid.load(Ordering::Acquire);
    if target.sid.load(Ordering::Acquire) == target.pid {
        return Err(Errno::EPERM); // a session leader stays in its group
    }
    if target.sid.load(Ordering::Acquire) != sid {
        return Err(Errno::EPERM);
    }
    let pgid = if pgid == 0 { target.pid } else { pgid };
    if pgid != target.pid
        && !process::any_process(|p| {
            p.pgid.load(Ordering::Acquire) == pgid && p.sid.load(Ordering::Acquire) == sid
        })
    {
        return Err(Errno::EPERM);
    }
    target.pgid.store(pgid, Ordering::Release);
    Ok(0)
}

/// `setsid()`: the caller leads a new session and group named by its pid,
/// unless a process group with that id exists (EPERM), as on Linux.  The
/// check and the store are not one atomic step against a concurrent
/// `setpgid` into that id (there is no process-table lock to hold; Linux
/// holds `tasklist_lock`).
pub fn sys_setsid() -> SysResult {
    let caller = me()?.process.clone();
    let pid = caller.pid;
    if process::any_process(|p| p.pgid.load(Ordering::Acquire) == pid) {
        return Err(Errno::EPERM);
    }
    caller.sid.store(pid, Ordering::Release);
    caller.pgid.store(pid, Ordering::Release);
    Ok(pid as usize)
}

/// `set_tid_address(tidptr)`: returns the caller's tid.
pub fn sys_set_tid_address(tidptr: UserAddr) -> SysResult {
    let t = me()?;
    t.clear_child_tid.store(tidptr.raw(), Ordering::Release);
    Ok(t.tid as usize)
}

/// `set_robust_list(head, len)`: recorded (the list is not walked at exit).
pub fn sys_set_robust_list(head: UserAddr, len: u64) -> SysResult {
    if len != 24 {
        return Err(Errno::EINVAL);
    }
    me()?.robust_list.store(head.raw(), Ordering::Release);
    Ok(0)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// `arch_prctl(code, addr)`: FS base (TLS); GS is not supported.
pub fn sys_arch_prctl(code: u64, addr: UserAddr) -> SysResult {
    let t = me()?;
    match code {
        ARCH_SET_FS => {
            // A base, not memory the kernel touches: the number itself.
            let base = addr.raw();
            if base >= crate::memory::vm::USER_END {
                return Err(Errno::EPERM);
            }
            let saved = crate::arch::irq::save_disable();
            t.fs_base.store(base, Ordering::Release);
            x86_64::registers::model_specific::FsBase::write(x86_64::VirtAddr::new_truncate(base));
            crate::arch::irq::restore(saved);
            Ok(0)
        }
        ARCH_GET_FS => {
            addr.write(&t.fs_base.load(Ordering::Acquire))?;
            Ok(0)
        }
        ARCH_GET_GS => {
            addr.write(&0u64)?;
            Ok(0)
        }
        ARCH_SET_GS => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

/// RLIMIT_NOFILE: the descriptor table enforces its soft limit.
const RLIMIT_NOFILE: usize = 7;

/// `prlimit64(pid, resource, new, old)`.
pub fn sys_prlimit64(pid: i32, resource: u32, new: UserAddr, old: UserAddr) -> SysResult {
    let t = me()?;
    let resource = resource as usize;
    if resource >= RLIMIT_COUNT {
        return Err(Errno::EINVAL);
    }
    let target = if pid == 0 || pid == t.process.pid {
        t.process.clone()
    } else {
        process::find_process(pid).ok_or(Errno::ESRCH)?
    };
    let new_limit = if !new.is_null() {
        let raw: abi::structs::Rlimit = new.read()?;
        let lim = Rlimit {
            cur: raw.rlim_cur,
            max: raw.rlim_max,
        };
        if lim.cur > lim.max {
            return Err(Errno::EINVAL);
        }
        Some(lim)
    } else {
        None
    };
    let previous = {
        let mut limits = target.rlimits.lock();
        let previous = limits[resource];
        if let Some(lim) = new_limit {
            if lim.max > previous.max && target.creds.euid.load(Ordering::Relaxed) != 0 {
                return Err(Errno::EPERM);
            }
            limits[resource] = lim;
            if resource == RLIMIT_NOFILE {
                target.files.fds.set_limit(lim.cur);
            }
        }
        previous
    };
    if !old.is_null() {
        old.write(&abi::structs::Rlimit {
            rlim_cur: previous.cur,
            rlim_max: previous.max,
        })?;
    }
    Ok(0)
}

pub fn sys_getrlimit(resource: u32, old: UserAddr) -> SysResult {
    sys_prlimit64(0, resource, UserAddr(0), old)
}

pub fn sys_setrlimit(resource: u32, new: UserAddr) -> SysResult {
    sys_prlimit64(0, resource, new, UserAddr(0))
}

pub fn sys_sched_yield() -> SysResult {
    sched::yield_now();
    Ok(0)
}

/// The scheduler thread of task `tid` (0 = the caller).
fn thread_of(tid: i32) -> Result<alloc::sync::Arc<sched::Thread>, Errno> {
    let t = me()?;
    let task = if tid == 0 || tid == t.tid {
        return sched::current().ok_or(Errno::ESRCH);
    } else {
        process::find_task(tid).ok_or(Errno::ESRCH)?
    };
    task.thread().ok_or(Errno::ESRCH)
}

/// `sched_getaffinity(pid, len, mask)`: returns the bytes written (8).
pub fn sys_sched_getaffinity(tid: i32, len: u64, mask: UserAddr) -> SysResult {
    if len < 8 || len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let thread = thread_of(tid)?;
    let cpus = sched::cpu_count();
    let all = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    let m = thread.affinity_mask() & all;
    mask.write(&m)?;
    Ok(8)
}

/// `sched_setaffinity(pid, len, mask)`: honoured by the scheduler (the
/// caller moves at once when its CPU is no longer allowed).
pub fn sys_sched_setaffinity(tid: i32, len: u64, mask: UserAddr) -> SysResult {
    let mut raw = [0u8; 8];
    let n = (len as usize).min(8);
    if n == 0 {
        return Err(Errno::EINVAL);
    }
    mask.read_bytes(&mut raw[..n])?;
    let m = u64::from_le_bytes(raw);
    let thread = thread_of(tid)?;
    sched::set_affinity(&thread, m).map_err(|_| Errno::EINVAL)?;
    Ok(0)
}

/// `prctl(option, ...)`: the thread name (`PR_SET_NAME`, `PR_GET_NAME`,
/// which Rust std and glibc use); every other option is `EINVAL`, as
/// Linux answers options it does not know.
pub fn sys_prctl(option: u32, arg2: UserAddr) -> SysResult {
    const PR_SET_NAME: u32 = 15;
    const PR_GET_NAME: u32 = 16;
    let task = me()?;
    match option {
        PR_SET_NAME => {
            // Up to 15 bytes, stopping at a NUL (Linux copies at most
            // `TASK_COMM_LEN - 1` and terminates).
            let mut comm = [0u8; 16];
            for (i, slot) in comm.iter_mut().take(15).enumerate() {
                let b: u8 = arg2.offset(i as u64).read()?;
                if b == 0 {
                    break;
                }
                *slot = b;
            }
            *task.comm.lock() = comm;
            Ok(0)
        }
        PR_GET_NAME => {
            let comm = *task.comm.lock();
            arg2.write_bytes(&comm).map(|_| 0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `execve`, recording what `/proc/<pid>/{exe,cmdline,status}` show of
/// the new program: its inode and the path it was started by, its
/// arguments (read back from the new stack) and its name.
pub fn sys_execve(
    frame: &mut crate::arch::idt::InterruptFrame,
    path: UserAddr,
    argv: UserAddr,
    envp: UserAddr,
) -> SysResult {
    let name = path.read_cstr(4095)?;
    let task = me()?;
    crate::proc::exec::sys_execve(frame, path, argv, envp)?;
    // The new image runs: its stack starts with argc, then argv pointers.
    let cwd = task.process.files.ctx.cwd();
    // One lock-free lookup now; the canonical path is worked out only
    // when `/proc` is asked for it (`files::procfs::exe_path`).
    let exe_inode = crate::files::root_fs().lookup(&cwd, &name, true).ok();
    let cmdline = read_cmdline(UserAddr(frame.rsp)).unwrap_or_default();
    *task.comm.lock() = crate::proc::task::comm_of(&name);
    *task.process.image.lock() = crate::proc::process::ImageInfo {
        exe: alloc::string::String::new(),
        exe_request: Some((cwd, name)),
        cmdline,
        exe_inode,
    };
    Ok(0)
}

/// The argument strings of a fresh stack at `sp` (argc, argv[]), each
/// followed by a NUL; at most one page, as Linux shows at most that much
/// of a long command line in one read here.
fn read_cmdline(sp: UserAddr) -> Result<alloc::vec::Vec<u8>, Errno> {
    let argc: u64 = sp.read()?;
    let mut out = alloc::vec::Vec::new();
    for i in 0..argc.min(1024) {
        let ptr = UserAddr(sp.offset(8 + i * 8).read()?);
        let arg = ptr.read_cstr_bytes(128 * 1024)?;
        out.extend_from_slice(&arg);
        out.push(0);
        if out.len() >= 4096 {
            break;
        }
    }
    Ok(out)
}
