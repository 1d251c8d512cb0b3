//! System calls: the dispatch table by Linux x86_64 number.
//!
//! Owns: the mapping from syscall number to handler, the decoding of the
//! six argument registers (rdi, rsi, rdx, r10, r8, r9; `int` arguments are
//! the low 32 bits), the result convention (`rax` = value, or `-errno`),
//! and the log of each unsupported call, once per number (by name from
//! `names.rs`).
//!
//! Files: `errno.rs` (shared), `process.rs`, `signal.rs`, `time.rs`,
//! `info.rs` (engineer "proc"); `mm.rs` (engineer "vm"); `fs.rs`
//! (engineer "fs").  fork/clone/execve/exit/wait and futex are in `proc`.
//!
//! Invariants: every number without a handler returns `ENOSYS`; a handler
//! never sees an unchecked user pointer dereferenced (they go through
//! `mm::uaccess`).  Must not: block with interrupts off (the entry enables
//! them before `dispatch`).

pub mod count;
pub mod errno;
pub mod fs;
pub mod info;
pub mod mm;
pub mod mount;
pub mod names;
pub mod net;
pub mod process;
pub mod signal;
pub mod time;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::idt::InterruptFrame;
use errno::{Errno, SysResult};
use process::Id;

/// One bit per syscall number below 512: already logged as unsupported.
static LOGGED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// ENOSYS, logged once per number with its name and the first caller
/// (`comparison run` gathers these lines into its summary).
fn unsupported(nr: u64) -> SysResult {
    if count::probing() {
        return Ok(count::PROBE_UNSERVED); // a probe, not a call: no log
    }
    let first = if nr < 512 {
        let bit = 1u64 << (nr % 64);
        LOGGED[(nr / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit == 0
    } else {
        LOGGED[7].fetch_or(1 << 63, Ordering::Relaxed) & (1 << 63) == 0
    };
    if first {
        let pid = crate::proc::current_task().map_or(0, |t| t.process.pid);
        log::warn!(
            "syscall: unsupported: {} {} (first call from pid {})",
            nr,
            names::name_of(nr),
            pid
        );
    }
    Err(Errno::ENOSYS)
}

/// The calling process's address space (for the `mm` calls).
fn aspace() -> Result<alloc::sync::Arc<crate::mm::vm::AddressSpace>, Errno> {
    crate::proc::task::current_aspace().ok_or(Errno::ENOSYS)
}

/// Runs the system call described by `frame` (number in `rax`) and puts
/// the result in `rax`.
pub fn dispatch(frame: &mut InterruptFrame) {
    count::record(frame.rax);
    route(frame);
}

/// The dispatch table: `dispatch` without the count (`count::served` runs
/// it to learn which numbers are served).  Every table in the chain is a
/// `count::syscall_match!`.
fn route(frame: &mut InterruptFrame) {
    let nr = frame.rax;
    let (a0, a1, a2, a3, a4, a5) = (
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    );
    let result: SysResult = count::syscall_match!(nr, {
        // Memory (engineer "vm").
        9 => aspace().and_then(|a| mm::sys_mmap(&a, a0, a1, a2, a3, a4, a5)),
        10 => aspace().and_then(|a| mm::sys_mprotect(&a, a0, a1, a2)),
        11 => aspace().and_then(|a| mm::sys_munmap(&a, a0, a1)),
        12 => aspace().and_then(|a| mm::sys_brk(&a, a0)),
        25 => aspace().and_then(|a| mm::sys_mremap(&a, a0, a1, a2, a3, a4)),
        26 => aspace().and_then(|a| mm::sys_msync(&a, a0, a1, a2)),
        28 => aspace().and_then(|a| mm::sys_madvise(&a, a0, a1, a2)),

        // Signals.
        13 => signal::sys_rt_sigaction(a0 as i32, a1, a2, a3),
        14 => signal::sys_rt_sigprocmask(a0 as i32, a1, a2, a3),
        15 => signal::sys_rt_sigreturn(frame),
        34 => signal::sys_pause(),
        62 => signal::sys_kill(a0 as i32, a1 as i32),
        127 => signal::sys_rt_sigpending(a0, a1),
        130 => signal::sys_rt_sigsuspend(a0, a1),
        131 => signal::sys_sigaltstack(frame, a0, a1),
        200 => signal::sys_tkill(a0 as i32, a1 as i32),
        234 => signal::sys_tgkill(a0 as i32, a1 as i32, a2 as i32),

        // Processes and threads.
        24 => process::sys_sched_yield(),
        39 => process::sys_getpid(),
        56 => crate::proc::clone::sys_clone(frame, a0, a1, a2, a3, a4),
        57 => crate::proc::clone::sys_fork(frame),
        58 => crate::proc::clone::sys_vfork(frame),
        59 => process::sys_execve(frame, a0, a1, a2),
        60 => crate::proc::exit::sys_exit(a0 as i32),
        61 => crate::proc::exit::sys_wait4(a0 as i32, a1, a2, a3),
        97 => process::sys_getrlimit(a0 as u32, a1),
        102 => process::sys_getid(Id::Uid),
        104 => process::sys_getid(Id::Gid),
        105 => process::sys_setid(a0 as u32, false),
        106 => process::sys_setid(a0 as u32, true),
        107 => process::sys_getid(Id::Euid),
        108 => process::sys_getid(Id::Egid),
        109 => process::sys_setpgid(a0 as i32, a1 as i32),
        110 => process::sys_getppid(),
        111 => process::sys_getpgid(0),
        112 => process::sys_setsid(),
        113 => process::sys_setreid(a0 as u32, a1 as u32, false),
        114 => process::sys_setreid(a0 as u32, a1 as u32, true),
        117 => process::sys_setresid(a0 as u32, a1 as u32, a2 as u32, false),
        118 => process::sys_getresid(a0, a1, a2, false),
        119 => process::sys_setresid(a0 as u32, a1 as u32, a2 as u32, true),
        120 => process::sys_getresid(a0, a1, a2, true),
        121 => process::sys_getpgid(a0 as i32),
        124 => process::sys_getsid(a0 as i32),
        158 => process::sys_arch_prctl(a0, a1),
        160 => process::sys_setrlimit(a0 as u32, a1),
        186 => process::sys_gettid(),
        202 => crate::proc::futex::sys_futex(a0, a1 as u32, a2 as u32, a3, a4, a5 as u32),
        203 => process::sys_sched_setaffinity(a0 as i32, a1, a2),
        204 => process::sys_sched_getaffinity(a0 as i32, a1, a2),
        218 => process::sys_set_tid_address(a0),
        231 => crate::proc::exit::sys_exit_group(a0 as i32),
        247 => crate::proc::exit::sys_waitid(a0 as u32, a1 as i32, a2, a3, a4),
        273 => process::sys_set_robust_list(a0, a1),
        302 => process::sys_prlimit64(a0 as i32, a1 as u32, a2, a3),
        157 => process::sys_prctl(a0 as u32, a1),
        // Linux built without CONFIG_RSEQ answers ENOSYS; glibc then runs
        // without restartable sequences (`__rseq_size` 0).
        334 => unsupported(nr),

        // Time.
        35 => time::sys_nanosleep(a0, a1),
        96 => time::sys_gettimeofday(a0, a1),
        228 => time::sys_clock_gettime(a0 as u32, a1),
        229 => time::sys_clock_getres(a0 as u32, a1),
        230 => time::sys_clock_nanosleep(a0 as u32, a1 as u32, a2, a3),
        201 => time::sys_time(a0),
        36 => time::sys_getitimer(a0 as u32, a1),
        37 => time::sys_alarm(a0 as u32),
        38 => time::sys_setitimer(a0 as u32, a1, a2),

        // Information.
        63 => info::sys_uname(a0),
        99 => info::sys_sysinfo(a0),
        309 => info::sys_getcpu(a0, a1),
        318 => info::sys_getrandom(a0, a1, a2 as u32),

        // Mounts and write-back (mount.rs).
        74 | 75 => mount::sys_fsync(a0 as i32),
        162 => mount::sys_sync(),
        306 => mount::sys_syncfs(a0 as i32),
        165 => mount::sys_mount(a0, a1, a2, a3, a4),
        166 => mount::sys_umount2(a0, a1),

        _ => fs_call(nr, frame),
    });
    frame.rax = match result {
        Ok(v) => v as u64,
        Err(e) => e.to_return() as u64,
    };
}

/// The file calls (engineer "fs": `syscall::fs::dispatch`); ENOSYS for
/// every number nobody serves.
fn fs_call(nr: u64, frame: &InterruptFrame) -> SysResult {
    let args = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    fs::dispatch(nr, args)
        .or_else(|| net::dispatch(nr, args))
        .unwrap_or_else(|| unsupported(nr))
}
