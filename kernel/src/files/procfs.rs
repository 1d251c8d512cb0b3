//! `/proc`: files generated when they are opened, in Linux's formats.
//!
//! Owns the `::fs::Provider` behind the `/proc` mount: the root lists
//! `self`, one directory per process, and `cpuinfo`, `meminfo`, `uptime`,
//! `mounts`, `stat`, `loadavg`, `net/dev` and `lockstat`; a process's
//! directory holds `exe`, `cwd`, `fd/` (magic links: following one yields
//! the open file itself, also for pipes and sockets, through a proxy
//! inode carrying the `File`), `status`, `maps`, `cmdline` and `comm`.
//! Each lookup builds a fresh inode with a stable number (`ino`); a file's
//! text is made once, at open (`File::open_inode` keeps it as a snapshot).
//!
//! Invariants: inode numbers encode (pid, item) so the same name always
//! has the same number; nothing here is kept between lookups.  Per-core
//! rule: reading a file sums per-CPU counters (`sched::cputime`, the
//! scheduler's) and takes no lock that a hot path takes.
//!
//! Must not: touch user memory, or hold a process or table lock while
//! calling into the file system.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use ::fs::{Errno as FsErrno, FileType, FsResult, Gen, Inode, Provider};

use crate::proc::process::{self, Pid, Process};
use crate::proc::Task;

/// Items (low 16 bits of a key; a process's items carry the pid above).
mod item {
    pub const ROOT: u64 = 0;
    pub const CPUINFO: u64 = 1;
    pub const MEMINFO: u64 = 2;
    pub const UPTIME: u64 = 3;
    pub const MOUNTS: u64 = 4;
    pub const STAT: u64 = 5;
    pub const LOADAVG: u64 = 6;
    pub const LOCKSTAT: u64 = 7;
    pub const NET: u64 = 8;
    pub const NET_DEV: u64 = 9;
    pub const SELF: u64 = 10;
    pub const PID_DIR: u64 = 0x10;
    pub const FD_DIR: u64 = 0x11;
    pub const STATUS: u64 = 0x12;
    pub const MAPS: u64 = 0x13;
    pub const CMDLINE: u64 = 0x14;
    pub const COMM: u64 = 0x15;
    pub const EXE: u64 = 0x16;
    pub const CWD: u64 = 0x17;
    pub const PID_STAT: u64 = 0x18;
    /// A magic link whose text is its target's path.
    pub const LINK_PATH: u64 = 0x19;
}

/// The files of the root: (name, item).
const ROOT_FILES: [(&str, u64); 7] = [
    ("cpuinfo", item::CPUINFO),
    ("meminfo", item::MEMINFO),
    ("uptime", item::UPTIME),
    ("mounts", item::MOUNTS),
    ("stat", item::STAT),
    ("loadavg", item::LOADAVG),
    ("lockstat", item::LOCKSTAT),
];

/// The files of a process directory.
const PID_FILES: [(&str, u64); 5] = [
    ("stat", item::PID_STAT),
    ("status", item::STATUS),
    ("maps", item::MAPS),
    ("cmdline", item::CMDLINE),
    ("comm", item::COMM),
];

fn key(pid: Pid, it: u64) -> u64 {
    ((pid as u64) << 16) | it
}

/// Inode number of a key (above the superblock's own numbers).
fn ino(key: u64) -> u64 {
    0x1_0000_0000 + key
}

/// Inode number of `/proc/<pid>/fd/<fd>`.
fn fd_ino(pid: Pid, fd: i32) -> u64 {
    (2 << 40) | ((pid as u64) << 20) | fd as u64
}

pub struct ProcFs;

impl ProcFs {
    fn provider() -> Arc<dyn Provider> {
        static ME: spin::Once<Arc<dyn Provider>> = spin::Once::new();
        ME.call_once(|| Arc::new(ProcFs)).clone()
    }

    fn gen(k: u64) -> Gen {
        Gen {
            provider: Self::provider(),
            key: k,
        }
    }

    /// The provider for `Fs::new_generated_mount`, with the root's key.
    pub fn root() -> (Arc<dyn Provider>, u64) {
        (Self::provider(), item::ROOT)
    }
}

fn caller_pid() -> Option<Pid> {
    crate::proc::current_task().map(|t| t.process.pid)
}

/// The process with `pid` while it has not been reaped.
fn process(pid: Pid) -> FsResult<Arc<Process>> {
    process::find_process(pid).ok_or(FsErrno::ENOENT)
}

/// The process's main thread (or any thread left).
fn leader(p: &Process) -> Option<Arc<Task>> {
    let tasks = p.task_list();
    tasks
        .iter()
        .find(|t| t.tid == p.pid)
        .or(tasks.first())
        .cloned()
}

impl Provider for ProcFs {
    fn lookup(&self, dir: &Arc<Inode>, k: u64, name: &str) -> FsResult<Arc<Inode>> {
        let (pid, it) = ((k >> 16) as Pid, k & 0xffff);
        match it {
            item::ROOT => {
                if let Some(&(_, f)) = ROOT_FILES.iter().find(|(n, _)| *n == name) {
                    return Ok(dir.gen_file(ino(f), 0o444, Self::gen(f)));
                }
                match name {
                    "self" => {
                        let me = caller_pid().ok_or(FsErrno::ENOENT)?;
                        Ok(dir.gen_symlink(ino(item::SELF), format!("{me}")))
                    }
                    "net" => Ok(dir.gen_dir(ino(item::NET), 0o555, Self::gen(item::NET))),
                    _ => {
                        let pid: Pid = name.parse().map_err(|_| FsErrno::ENOENT)?;
                        if pid <= 0 || format!("{pid}") != name {
                            return Err(FsErrno::ENOENT);
                        }
                        process(pid)?;
                        let k = key(pid, item::PID_DIR);
                        Ok(dir.gen_dir(ino(k), 0o555, Self::gen(k)))
                    }
                }
            }
            item::NET => match name {
                "dev" => Ok(dir.gen_file(ino(item::NET_DEV), 0o444, Self::gen(item::NET_DEV))),
                _ => Err(FsErrno::ENOENT),
            },
            item::PID_DIR => {
                let p = process(pid)?;
                if let Some(&(_, f)) = PID_FILES.iter().find(|(n, _)| *n == name) {
                    let k = key(pid, f);
                    return Ok(dir.gen_file(ino(k), 0o444, Self::gen(k)));
                }
                match name {
                    "fd" => {
                        let k = key(pid, item::FD_DIR);
                        Ok(dir.gen_dir(ino(k), 0o500, Self::gen(k)))
                    }
                    "exe" => {
                        let image = p.image.lock();
                        let target = image.exe_inode.clone().ok_or(FsErrno::ENOENT)?;
                        // The path is worked out when read, outside the walk.
                        let text = (!image.exe.is_empty()).then(|| image.exe.clone());
                        let gen = Some(Self::gen(key(pid, item::EXE)));
                        Ok(dir.gen_magic(ino(key(pid, item::EXE)), 0o777, target, text, gen))
                    }
                    "cwd" => {
                        let cwd = p.files.ctx.cwd();
                        let gen = Some(Self::gen(item::LINK_PATH));
                        Ok(dir.gen_magic(ino(key(pid, item::CWD)), 0o777, cwd, None, gen))
                    }
                    _ => Err(FsErrno::ENOENT),
                }
            }
            item::FD_DIR => {
                let fd: i32 = name.parse().map_err(|_| FsErrno::ENOENT)?;
                if format!("{fd}") != name {
                    return Err(FsErrno::ENOENT);
                }
                let p = process(pid)?;
                let file = p.files.fds.get(fd).map_err(|_| FsErrno::ENOENT)?;
                fd_link(dir, pid, fd, file)
            }
            _ => Err(FsErrno::ENOTDIR),
        }
    }

    fn list(&self, k: u64) -> Vec<(String, u64, FileType)> {
        let (pid, it) = ((k >> 16) as Pid, k & 0xffff);
        let mut out: Vec<(String, u64, FileType)> = Vec::new();
        match it {
            item::ROOT => {
                for (n, f) in ROOT_FILES {
                    out.push((n.into(), ino(f), FileType::Regular));
                }
                out.push(("net".into(), ino(item::NET), FileType::Directory));
                out.push(("self".into(), ino(item::SELF), FileType::Symlink));
                for pid in process::all_pids() {
                    let k = key(pid, item::PID_DIR);
                    out.push((format!("{pid}"), ino(k), FileType::Directory));
                }
            }
            item::NET => out.push(("dev".into(), ino(item::NET_DEV), FileType::Regular)),
            item::PID_DIR => {
                for (n, f) in PID_FILES {
                    out.push((n.into(), ino(key(pid, f)), FileType::Regular));
                }
                out.push((
                    "fd".into(),
                    ino(key(pid, item::FD_DIR)),
                    FileType::Directory,
                ));
                out.push(("exe".into(), ino(key(pid, item::EXE)), FileType::Symlink));
                out.push(("cwd".into(), ino(key(pid, item::CWD)), FileType::Symlink));
            }
            item::FD_DIR => {
                if let Ok(p) = process(pid) {
                    for fd in p.files.fds.open_fds() {
                        out.push((format!("{fd}"), fd_ino(pid, fd), FileType::Symlink));
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn link_text(&self, k: u64, target: &Arc<Inode>) -> String {
        if k & 0xffff == item::EXE {
            return process((k >> 16) as Pid)
                .map(|p| exe_path(&p))
                .unwrap_or_default();
        }
        if target.is_dir() {
            super::root_fs().path_of(target).ok()
        } else {
            path_of_file(target)
        }
        .unwrap_or_else(|| format!("/ (inode {})", target.ino()))
    }

    fn contents(&self, k: u64) -> FsResult<Vec<u8>> {
        let (pid, it) = ((k >> 16) as Pid, k & 0xffff);
        let text = match it {
            item::CPUINFO => cpuinfo(),
            item::MEMINFO => meminfo(),
            item::UPTIME => uptime(),
            item::MOUNTS => mounts(),
            item::STAT => stat(),
            item::LOADAVG => loadavg(),
            item::LOCKSTAT => ::fs::lockstat::report(),
            item::NET_DEV => net_dev(),
            item::STATUS => status(&process(pid)?),
            item::MAPS => maps(&process(pid)?),
            item::PID_STAT => pid_stat(&process(pid)?),
            item::CMDLINE => return Ok(process(pid)?.image.lock().cmdline.clone()),
            item::COMM => {
                let p = process(pid)?;
                let comm = leader(&p).map_or([0; 16], |t| *t.comm.lock());
                let n = comm.iter().position(|&b| b == 0).unwrap_or(16);
                let mut v = comm[..n].to_vec();
                v.push(b'\n');
                return Ok(v);
            }
            _ => return Err(FsErrno::EINVAL),
        };
        Ok(text.into_bytes())
    }
}

/// `/proc/<pid>/fd/<fd>`: a magic link to the open file: its inode for
/// files, directories and devices, a proxy carrying the `File` for pipes,
/// sockets and epoll instances (Linux's `pipe:[ino]`, `socket:[ino]`,
/// `anon_inode:[eventpoll]` texts).
fn fd_link(dir: &Arc<Inode>, pid: Pid, fd: i32, file: super::FileRef) -> FsResult<Arc<Inode>> {
    let n = fd_ino(pid, fd);
    let perm = {
        let f = file.flags();
        let acc = f & ::fs::oflags::O_ACCMODE;
        let r = if acc != ::fs::oflags::O_WRONLY {
            0o400
        } else {
            0
        };
        let w = if acc != ::fs::oflags::O_RDONLY {
            0o200
        } else {
            0
        };
        r | w
    };
    if let Some(inode) = &file.inode {
        // The path is found when the link is read, outside the walk.
        let gen = Some(ProcFs::gen(item::LINK_PATH));
        return Ok(dir.gen_magic(n, perm, inode.clone(), None, gen));
    }
    let st = file.stat();
    let text = match st.mode & 0o170000 {
        0o010000 => format!("pipe:[{}]", st.ino),
        0o140000 => format!("socket:[{}]", st.ino),
        _ => String::from("anon_inode:[eventpoll]"),
    };
    let proxy = dir.gen_proxy(st, file);
    Ok(dir.gen_magic(n, perm, proxy, Some(text), None))
}

/// The path of a non-directory inode: found by searching the directories
/// it could be in (the process's cwd, then the whole tree, bounded).
fn path_of_file(inode: &Arc<Inode>) -> Option<String> {
    let root = super::root_fs();
    let mut stack: Vec<(Arc<Inode>, String)> = Vec::new();
    stack.push((root.root(), String::new()));
    let mut visited = 0;
    while let Some((dir, path)) = stack.pop() {
        visited += 1;
        if visited > 4096 {
            return None;
        }
        let mut cursor = ::fs::DirCursor::default();
        let mut entries: Vec<String> = Vec::new();
        let _ = dir.readdir(&mut cursor, |name, _, _, _| {
            if name != "." && name != ".." {
                entries.push(name.into());
            }
            true
        });
        for name in entries {
            // The generated /proc tree is skipped: nothing there is a file
            // an fd could name.
            if path.is_empty() && name == "proc" {
                continue;
            }
            let child_path = format!("{path}/{name}");
            let Ok(child) = root.lookup(&dir, &name, false) else {
                continue;
            };
            if Arc::ptr_eq(&child, inode) {
                return Some(child_path);
            }
            if child.is_dir() {
                stack.push((child, child_path));
            }
        }
    }
    None
}

/// The canonical path of `p`'s executable, worked out (once) from the
/// path and cwd execve was given.  Not to be called inside a file-system
/// walk (it resolves paths).
pub fn exe_path(p: &Process) -> String {
    let request = {
        let image = p.image.lock();
        if !image.exe.is_empty() {
            return image.exe.clone();
        }
        image.exe_request.clone()
    };
    let Some((cwd, name)) = request else {
        return String::new();
    };
    let exe = canonical_path(&cwd, &name).unwrap_or_default();
    p.image.lock().exe = exe.clone();
    exe
}

/// The absolute path without symlinks of the file `path` names from
/// `cwd` (through a magic link such as `/proc/self/exe`: the path of the
/// file it leads to).
fn canonical_path(cwd: &Arc<::fs::Inode>, path: &str) -> Option<String> {
    let root = super::root_fs();
    let mut path = String::from(path);
    let mut start = cwd.clone();
    for _ in 0..::fs::MAX_SYMLINKS {
        let (dir, last) = match path.rsplit_once('/') {
            Some(("", last)) => (String::from("/"), String::from(last)),
            Some((dir, last)) => (String::from(dir), String::from(last)),
            None => (String::from("."), path.clone()),
        };
        let dir = root.lookup(&start, &dir, true).ok()?;
        let node = root.lookup(&dir, &last, false).ok()?;
        // A magic link's text may itself be worked out by this function
        // (`/proc/self/exe`): its target's path is found directly instead.
        if let Some(target) = node.magic_target() {
            return if target.is_dir() {
                root.path_of(target).ok()
            } else {
                path_of_file(target)
            };
        }
        match node.symlink_target() {
            Some(target) if target.starts_with('/') => {
                path = String::from(target);
                start = root.root();
            }
            Some(target) => {
                path = String::from(target);
                start = dir;
            }
            None => {
                let base = root.path_of(&dir).ok()?;
                return Some(format!("{}/{}", base.trim_end_matches('/'), last));
            }
        }
    }
    None
}

// ---- the generated files ---------------------------------------------------

fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn cpuinfo() -> String {
    let max = cpuid(0, 0);
    let vendor: Vec<u8> = [max[1], max[3], max[2]]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let vendor = String::from_utf8_lossy(&vendor).into_owned();
    let sig = cpuid(1, 0);
    let (eax, ecx, edx) = (sig[0], sig[2], sig[3]);
    let mut family = (eax >> 8) & 0xf;
    let mut model = (eax >> 4) & 0xf;
    if family == 0xf {
        family += (eax >> 20) & 0xff;
    }
    if family == 0x6 || family >= 0xf {
        model |= ((eax >> 16) & 0xf) << 4;
    }
    let stepping = eax & 0xf;
    let clflush = ((sig[1] >> 8) & 0xff) * 8;
    let ext_max = cpuid(0x8000_0000, 0)[0];
    let name = if ext_max >= 0x8000_0004 {
        let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004u32)
            .flat_map(|l| cpuid(l, 0))
            .flat_map(|r| r.to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).trim().into()
    } else {
        String::from("unknown")
    };
    let bits = if ext_max >= 0x8000_0008 {
        cpuid(0x8000_0008, 0)[0]
    } else {
        0x3028
    };
    const EDX: [(u32, &str); 16] = [
        (0, "fpu"),
        (1, "vme"),
        (2, "de"),
        (3, "pse"),
        (4, "tsc"),
        (5, "msr"),
        (6, "pae"),
        (8, "cx8"),
        (9, "apic"),
        (11, "sep"),
        (15, "cmov"),
        (19, "clflush"),
        (23, "mmx"),
        (24, "fxsr"),
        (25, "sse"),
        (26, "sse2"),
    ];
    const ECX: [(u32, &str); 11] = [
        (0, "pni"),
        (1, "pclmulqdq"),
        (9, "ssse3"),
        (13, "cx16"),
        (19, "sse4_1"),
        (20, "sse4_2"),
        (22, "movbe"),
        (23, "popcnt"),
        (25, "aes"),
        (28, "avx"),
        (30, "rdrand"),
    ];
    let mut flags: Vec<&str> = Vec::new();
    flags.extend(
        EDX.iter()
            .filter(|(b, _)| edx & (1 << b) != 0)
            .map(|(_, n)| *n),
    );
    flags.extend(
        ECX.iter()
            .filter(|(b, _)| ecx & (1 << b) != 0)
            .map(|(_, n)| *n),
    );
    if ecx & (1 << 31) != 0 {
        flags.push("hypervisor");
    }
    let mhz = crate::arch::time::tsc_hz() / 1000;
    let cpus = crate::sched::cpu_count().max(1);
    let mut s = String::new();
    for cpu in 0..cpus {
        let _ = write!(
            s,
            "processor\t: {cpu}\n\
             vendor_id\t: {vendor}\n\
             cpu family\t: {family}\n\
             model\t\t: {model}\n\
             model name\t: {name}\n\
             stepping\t: {stepping}\n\
             cpu MHz\t\t: {}.{:03}\n\
             physical id\t: 0\n\
             siblings\t: {cpus}\n\
             core id\t\t: {cpu}\n\
             cpu cores\t: {cpus}\n\
             apicid\t\t: {cpu}\n\
             initial apicid\t: {cpu}\n\
             fpu\t\t: yes\n\
             fpu_exception\t: yes\n\
             cpuid level\t: {}\n\
             wp\t\t: yes\n\
             flags\t\t: {}\n\
             clflush size\t: {clflush}\n\
             cache_alignment\t: {clflush}\n\
             address sizes\t: {} bits physical, {} bits virtual\n\
             power management:\n\n",
            mhz / 1000,
            mhz % 1000,
            max[0],
            flags.join(" "),
            bits & 0xff,
            (bits >> 8) & 0xff,
        );
    }
    s
}

/// `Key:` padded to 16 columns, the value in kB right-aligned in 8.
fn kb_line(s: &mut String, key: &str, kb: u64) {
    let _ = writeln!(s, "{:<16}{:>8} kB", format!("{key}:"), kb);
}

fn meminfo() -> String {
    let total = crate::memory::total_frames() as u64 * 4;
    let free = crate::memory::free_frames() as u64 * 4;
    let shmem = super::tmpfs_pages() * 4;
    let mut s = String::new();
    kb_line(&mut s, "MemTotal", total);
    kb_line(&mut s, "MemFree", free);
    // tmpfs pages cannot be dropped, so what is free is what is available.
    kb_line(&mut s, "MemAvailable", free);
    kb_line(&mut s, "Buffers", 0);
    kb_line(&mut s, "Cached", shmem);
    kb_line(&mut s, "SwapCached", 0);
    kb_line(&mut s, "SwapTotal", 0);
    kb_line(&mut s, "SwapFree", 0);
    kb_line(&mut s, "Shmem", shmem);
    // The kernel heap's frames (slabs and large blocks), as Linux's Slab
    // counts its slab caches: with MemFree, it tells a heap leak from a
    // frame leak (the fuzzer prints both).
    let heap = crate::memory::heap_stats();
    kb_line(
        &mut s,
        "Slab",
        (heap.slab_frames + heap.large_frames) as u64 * 4,
    );
    s
}

fn hundredths(ticks: u64) -> String {
    let hz = crate::arch::TICK_HZ;
    let centi = ticks * 100 / hz;
    format!("{}.{:02}", centi / 100, centi % 100)
}

fn uptime() -> String {
    let up_centi = crate::arch::time::now_ns() / 10_000_000;
    let idle: u64 = (0..crate::sched::cpu_count())
        .map(|c| crate::sched::cputime::cpu_ticks(c).2)
        .sum();
    format!(
        "{}.{:02} {}\n",
        up_centi / 100,
        up_centi % 100,
        hundredths(idle)
    )
}

fn mounts() -> String {
    String::from(
        "rootfs / rootfs rw 0 0\n\
         devtmpfs /dev devtmpfs rw 0 0\n\
         tmpfs /tmp tmpfs rw 0 0\n\
         proc /proc proc rw 0 0\n",
    )
}

fn stat() -> String {
    let cpus = crate::sched::cpu_count().max(1);
    let per: Vec<(u64, u64, u64)> = (0..cpus).map(crate::sched::cputime::cpu_ticks).collect();
    let (u, sy, i) = per
        .iter()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    let mut s = String::new();
    let _ = writeln!(s, "cpu  {u} 0 {sy} {i} 0 0 0 0 0 0");
    for (n, (u, sy, i)) in per.iter().enumerate() {
        let _ = writeln!(s, "cpu{n} {u} 0 {sy} {i} 0 0 0 0 0 0");
    }
    let _ = writeln!(s, "ctxt {}", crate::sched::stats().context_switches);
    let btime = crate::time::realtime_offset_ns() / 1_000_000_000;
    let _ = writeln!(s, "btime {btime}");
    let _ = writeln!(s, "processes {}", process::ids_allocated());
    let _ = writeln!(
        s,
        "procs_running {}",
        crate::sched::cputime::busy_cpus().max(1)
    );
    s
}

fn loadavg() -> String {
    let l = crate::sched::cputime::load_hundredths();
    format!(
        "{}.{:02} {}.{:02} {}.{:02} {}/{} {}\n",
        l[0] / 100,
        l[0] % 100,
        l[1] / 100,
        l[1] % 100,
        l[2] / 100,
        l[2] % 100,
        crate::sched::cputime::busy_cpus().max(1),
        process::live_processes(),
        process::ids_allocated(),
    )
}

fn net_dev() -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    let mut line = |name: &str, rb: u64, rp: u64, rd: u64, tb: u64, tp: u64| {
        let _ = writeln!(
            s,
            "{:>6}:{:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {:>8} {:>7} {:>4} {:>4} {:>4} {:>5} {:>7} {:>10}",
            name, rb, rp, 0, rd, 0, 0, 0, 0, tb, tp, 0, 0, 0, 0, 0, 0
        );
    };
    // Loopback traffic stays inside the TCP/IP stack, which keeps no
    // per-interface counters for it.
    line("lo", 0, 0, 0, 0, 0);
    if let Some(nic) = crate::drivers::virtio_net::nic() {
        let c = nic.counters();
        line(
            "eth0",
            c.rx_bytes,
            c.rx_frames,
            c.rx_drops,
            c.tx_bytes,
            c.tx_frames,
        );
    }
    s
}

fn status(p: &Arc<Process>) -> String {
    let leader = leader(p);
    let comm = leader.as_ref().map_or([0; 16], |t| *t.comm.lock());
    let n = comm.iter().position(|&b| b == 0).unwrap_or(16);
    let name = String::from_utf8_lossy(&comm[..n]).into_owned();
    let me = caller_pid() == Some(p.pid);
    let state = if p.zombie.load(Ordering::Acquire) {
        "Z (zombie)"
    } else if me {
        "R (running)"
    } else {
        "S (sleeping)"
    };
    let c = &p.creds;
    let id = |a: &core::sync::atomic::AtomicU32| a.load(Ordering::Relaxed);
    let (sigpnd, shdpnd, sigign, sigcgt) = leader
        .as_ref()
        .map_or((0, 0, 0, 0), |t| crate::proc::signal::status_sets(t));
    let sigblk = leader
        .as_ref()
        .map_or(0, |t| t.signals.mask.load(Ordering::Acquire));
    let threads = p.task_list().len();
    let sigq_limit = p.rlimits.lock()[11].cur;
    let mut s = String::new();
    let _ = write!(
        s,
        "Name:\t{name}\n\
         Umask:\t{:04o}\n\
         State:\t{state}\n\
         Tgid:\t{pid}\n\
         Ngid:\t0\n\
         Pid:\t{pid}\n\
         PPid:\t{}\n\
         TracerPid:\t0\n\
         Uid:\t{}\t{}\t{}\t{}\n\
         Gid:\t{}\t{}\t{}\t{}\n\
         FDSize:\t{}\n\
         Groups:\t \n\
         Threads:\t{threads}\n\
         SigQ:\t{}/{}\n\
         SigPnd:\t{sigpnd:016x}\n\
         ShdPnd:\t{shdpnd:016x}\n\
         SigBlk:\t{sigblk:016x}\n\
         SigIgn:\t{sigign:016x}\n\
         SigCgt:\t{sigcgt:016x}\n",
        p.files.ctx.umask(),
        p.ppid.load(Ordering::Acquire),
        id(&c.uid),
        id(&c.euid),
        id(&c.suid),
        id(&c.euid),
        id(&c.gid),
        id(&c.egid),
        id(&c.sgid),
        id(&c.egid),
        p.files.fds.capacity(),
        (sigpnd | shdpnd).count_ones(),
        sigq_limit as i64,
        pid = p.pid,
    );
    s
}

/// `/proc/<pid>/stat`: Linux's 52 fields.  Times are the ticks the
/// process's live threads were found running (`sched::cputime`); children's
/// times, fault counts and scheduling fields that this kernel does not keep
/// are 0; there are no process groups (pgrp and session are the pid).
fn pid_stat(p: &Arc<Process>) -> String {
    let leader = leader(p);
    let comm = leader.as_ref().map_or([0; 16], |t| *t.comm.lock());
    let n = comm.iter().position(|&b| b == 0).unwrap_or(16);
    let name = String::from_utf8_lossy(&comm[..n]).into_owned();
    let state = if p.zombie.load(Ordering::Acquire) {
        'Z'
    } else if caller_pid() == Some(p.pid) {
        'R'
    } else {
        'S'
    };
    let tasks = p.task_list();
    let utime: u64 = tasks.iter().map(|t| t.utime.load(Ordering::Relaxed)).sum();
    let stime: u64 = tasks.iter().map(|t| t.stime.load(Ordering::Relaxed)).sum();
    let start = p.start_ns / (1_000_000_000 / crate::arch::TICK_HZ);
    let (vsize, rss) = p.aspace().map_or((0, 0), |a| {
        let v: u64 = a.map_report().iter().map(|m| m.end - m.start).sum();
        (v, a.resident_pages(0, crate::memory::vm::USER_TOP) as u64)
    });
    let (_, _, ign, cgt) = leader
        .as_ref()
        .map_or((0, 0, 0, 0), |t| crate::proc::signal::status_sets(t));
    let (pending, blocked) = leader.as_ref().map_or((0, 0), |t| {
        (
            crate::proc::signal::pending_set(t),
            t.signals.mask.load(Ordering::Acquire),
        )
    });
    let pid = p.pid;
    format!(
        "{pid} ({name}) {state} {} {pid} {pid} 0 -1 0 0 0 0 0 {utime} {stime} 0 0 20 0 {} 0 {start} {vsize} {rss} 18446744073709551615 0 0 0 0 0 {pending} {blocked} {ign} {cgt} 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        p.ppid.load(Ordering::Acquire),
        tasks.len().max(1),
    )
}

fn maps(p: &Arc<Process>) -> String {
    let Some(aspace) = p.aspace() else {
        return String::new();
    };
    // The executable's identity, to name its mappings.
    let exe_id = p
        .image
        .lock()
        .exe_inode
        .as_ref()
        .map(|i| (i.dev(), i.ino()));
    let exe = exe_path(p);
    let mut s = String::new();
    for m in aspace.map_report() {
        let (dev, inode) = m.file.unwrap_or((0, 0));
        let r = |bit: u32, c: char| if m.prot & bit != 0 { c } else { '-' };
        let line_start = s.len();
        let _ = write!(
            s,
            "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {} ",
            m.start,
            m.end,
            r(crate::memory::vm::PROT_READ, 'r'),
            r(crate::memory::vm::PROT_WRITE, 'w'),
            r(crate::memory::vm::PROT_EXEC, 'x'),
            if m.shared { 's' } else { 'p' },
            m.offset,
            dev >> 8,
            dev & 0xff,
            inode,
        );
        let name = if m.file.is_some() && m.file == exe_id {
            Some(exe.as_str())
        } else if m.heap {
            Some("[heap]")
        } else if m.stack {
            Some("[stack]")
        } else {
            None
        };
        if let Some(name) = name {
            // Linux pads the name to column 73.
            while s.len() - line_start < 72 {
                s.push(' ');
            }
            s.push(' ');
            s.push_str(name);
        }
        s.push('\n');
    }
    s
}
