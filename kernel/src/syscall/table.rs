//! The system call table: one row per Linux x86_64 number, from which the
//! dispatch (`route`), the names for logs and `ENOSYS` messages
//! (`name_of`) and the served set `count` probes all come.
//!
//! Owns: the rows.  A row is `NUMBER name;` (not served: `ENOSYS`, logged
//! once) or `NUMBER name => handler(args);`, where the handler expression
//! sees `a` (the six argument registers rdi, rsi, rdx, r10, r8, r9; `int`
//! arguments are the low 32 bits, `fd(a, i)`), `frame` (the saved user
//! registers) and `nr`.  Invariants: numbers appear once, in order;
//! names are Linux's (`arch/x86/entry/syscalls/syscall_64.tbl`), except
//! this kernel's IPC calls from 1000 on (`abi::ipc`).  Must
//! not: decide anything from a name (names are for people to read).

use super::{aspace, fd, info, memory, process, signal, socket, time, unsupported};
use super::{count, file, ipc, mount};
use crate::arch::idt::InterruptFrame;
use crate::memory::uaccess::UserAddr;
use abi::SysResult;
use process::Id;

/// One row's body: a served row runs its handler, except while `count`
/// probes the table (then it answers `PROBE_SERVED` without running); an
/// unserved row is `unsupported`.
macro_rules! row {
    ($nr:ident) => {
        unsupported($nr)
    };
    ($nr:ident, $e:expr) => {
        if count::probing() {
            Ok(count::PROBE_SERVED)
        } else {
            $e
        }
    };
}

/// Expands the rows into `name_of` and `route`.
macro_rules! syscall_table {
    (|$a:ident, $frame:ident, $nr:ident| { $( $n:literal $name:ident $(=> $e:expr)? ; )* }) => {
        /// The Linux name of syscall `nr` (`"unknown"` for a number Linux
        /// does not have).
        pub fn name_of(nr: u64) -> &'static str {
            match nr {
                $( $n => stringify!($name), )*
                _ => "unknown",
            }
        }

        /// Runs the call `frame` describes (number in `rax`) and puts the
        /// result in `rax` (the value, or `-errno`).  `dispatch` without the
        /// count; `count::served` runs it to learn which numbers are served.
        pub(super) fn route($frame: &mut InterruptFrame) {
            let $nr = $frame.rax;
            let $a = [
                $frame.rdi, $frame.rsi, $frame.rdx, $frame.r10, $frame.r8, $frame.r9,
            ];
            let result: SysResult = match $nr {
                $( $n => row!($nr $(, $e)?), )*
                _ => unsupported($nr),
            };
            $frame.rax = match result {
                Ok(v) => v as u64,
                Err(e) => e.to_return() as u64,
            };
        }
    };
}

syscall_table!(|a, frame, nr| {
    0 read => file::sys_read(fd(a, 0), UserAddr(a[1]), a[2]);
    1 write => file::sys_write(fd(a, 0), UserAddr(a[1]), a[2]);
    2 open => file::sys_open(UserAddr(a[0]), a[1] as u32, a[2] as u32);
    3 close => file::sys_close(fd(a, 0));
    4 stat => file::sys_stat(UserAddr(a[0]), UserAddr(a[1]));
    5 fstat => file::sys_fstat(fd(a, 0), UserAddr(a[1]));
    6 lstat => file::sys_lstat(UserAddr(a[0]), UserAddr(a[1]));
    7 poll => file::sys_poll(UserAddr(a[0]), a[1], a[2] as i32);
    8 lseek => file::sys_lseek(fd(a, 0), a[1] as i64, a[2] as u32);
    9 mmap => aspace().and_then(|sp| memory::sys_mmap(&sp, a[0], a[1], a[2], a[3], a[4], a[5]));
    10 mprotect => aspace().and_then(|sp| memory::sys_mprotect(&sp, a[0], a[1], a[2]));
    11 munmap => aspace().and_then(|sp| memory::sys_munmap(&sp, a[0], a[1]));
    12 brk => aspace().and_then(|sp| memory::sys_brk(&sp, a[0]));
    13 rt_sigaction => signal::sys_rt_sigaction(a[0] as i32, UserAddr(a[1]), UserAddr(a[2]), a[3]);
    14 rt_sigprocmask => signal::sys_rt_sigprocmask(a[0] as i32, UserAddr(a[1]), UserAddr(a[2]), a[3]);
    15 rt_sigreturn => signal::sys_rt_sigreturn(frame);
    16 ioctl => file::sys_ioctl(fd(a, 0), a[1] as u32, UserAddr(a[2]));
    17 pread64 => file::sys_pread64(fd(a, 0), UserAddr(a[1]), a[2], a[3] as i64);
    18 pwrite64 => file::sys_pwrite64(fd(a, 0), UserAddr(a[1]), a[2], a[3] as i64);
    19 readv => file::sys_readv(fd(a, 0), UserAddr(a[1]), a[2]);
    20 writev => file::sys_writev(fd(a, 0), UserAddr(a[1]), a[2]);
    21 access => file::sys_access(UserAddr(a[0]), a[1] as u32);
    22 pipe => file::sys_pipe(UserAddr(a[0]));
    23 select => file::sys_select(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), UserAddr(a[3]), UserAddr(a[4]));
    24 sched_yield => process::sys_sched_yield();
    25 mremap => aspace().and_then(|sp| memory::sys_mremap(&sp, a[0], a[1], a[2], a[3], a[4]));
    26 msync => aspace().and_then(|sp| memory::sys_msync(&sp, a[0], a[1], a[2]));
    27 mincore;
    28 madvise => aspace().and_then(|sp| memory::sys_madvise(&sp, a[0], a[1], a[2]));
    29 shmget;
    30 shmat;
    31 shmctl;
    32 dup => file::sys_dup(fd(a, 0));
    33 dup2 => file::sys_dup2(fd(a, 0), fd(a, 1));
    34 pause => signal::sys_pause();
    35 nanosleep => time::sys_nanosleep(UserAddr(a[0]), UserAddr(a[1]));
    36 getitimer => time::sys_getitimer(a[0] as u32, UserAddr(a[1]));
    37 alarm => time::sys_alarm(a[0] as u32);
    38 setitimer => time::sys_setitimer(a[0] as u32, UserAddr(a[1]), UserAddr(a[2]));
    39 getpid => process::sys_getpid();
    40 sendfile => file::sys_sendfile(fd(a, 0), fd(a, 1), UserAddr(a[2]), a[3]);
    41 socket => socket::sys_socket(a[0] as u32, a[1] as u32, a[2] as u32);
    42 connect => socket::sys_connect(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    43 accept => socket::sys_accept4(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), 0);
    44 sendto => socket::sys_sendto(fd(a, 0), UserAddr(a[1]), a[2], a[3] as u32, UserAddr(a[4]), a[5] as u32);
    45 recvfrom => socket::sys_recvfrom(fd(a, 0), UserAddr(a[1]), a[2], a[3] as u32, UserAddr(a[4]), UserAddr(a[5]));
    46 sendmsg => socket::sys_sendmsg(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    47 recvmsg => socket::sys_recvmsg(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    48 shutdown => socket::sys_shutdown(fd(a, 0), a[1] as u32);
    49 bind => socket::sys_bind(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    50 listen => socket::sys_listen(fd(a, 0), a[1] as i32);
    51 getsockname => socket::sys_getsockname(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]));
    52 getpeername => socket::sys_getpeername(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]));
    53 socketpair => socket::sys_socketpair(a[0] as u32, a[1] as u32, a[2] as u32, UserAddr(a[3]));
    54 setsockopt => socket::sys_setsockopt(fd(a, 0), a[1] as i32, a[2] as i32, UserAddr(a[3]), a[4] as i32);
    55 getsockopt => socket::sys_getsockopt(fd(a, 0), a[1] as i32, a[2] as i32, UserAddr(a[3]), UserAddr(a[4]));
    56 clone => crate::proc::clone::sys_clone(frame, a[0], a[1], UserAddr(a[2]), UserAddr(a[3]), a[4]);
    57 fork => crate::proc::clone::sys_fork(frame);
    58 vfork => crate::proc::clone::sys_vfork(frame);
    59 execve => process::sys_execve(frame, UserAddr(a[0]), UserAddr(a[1]), UserAddr(a[2]));
    60 exit => crate::proc::exit::sys_exit(a[0] as i32);
    61 wait4 => crate::proc::exit::sys_wait4(a[0] as i32, UserAddr(a[1]), a[2], UserAddr(a[3]));
    62 kill => signal::sys_kill(a[0] as i32, a[1] as i32);
    63 uname => info::sys_uname(UserAddr(a[0]));
    64 semget;
    65 semop;
    66 semctl;
    67 shmdt;
    68 msgget;
    69 msgsnd;
    70 msgrcv;
    71 msgctl;
    72 fcntl => file::sys_fcntl(fd(a, 0), a[1] as u32, a[2]);
    73 flock;
    74 fsync => mount::sys_fsync(fd(a, 0));
    75 fdatasync => mount::sys_fsync(fd(a, 0));
    76 truncate => file::sys_truncate(UserAddr(a[0]), a[1] as i64);
    77 ftruncate => file::sys_ftruncate(fd(a, 0), a[1] as i64);
    78 getdents;
    79 getcwd => file::sys_getcwd(UserAddr(a[0]), a[1]);
    80 chdir => file::sys_chdir(UserAddr(a[0]));
    81 fchdir => file::sys_fchdir(fd(a, 0));
    82 rename => file::sys_rename(UserAddr(a[0]), UserAddr(a[1]));
    83 mkdir => file::sys_mkdir(UserAddr(a[0]), a[1] as u32);
    84 rmdir => file::sys_rmdir(UserAddr(a[0]));
    85 creat => file::sys_creat(UserAddr(a[0]), a[1] as u32);
    86 link => file::sys_link(UserAddr(a[0]), UserAddr(a[1]));
    87 unlink => file::sys_unlink(UserAddr(a[0]));
    88 symlink => file::sys_symlink(UserAddr(a[0]), UserAddr(a[1]));
    89 readlink => file::sys_readlink(UserAddr(a[0]), UserAddr(a[1]), a[2] as i64);
    90 chmod => file::sys_chmod(UserAddr(a[0]), a[1] as u32);
    91 fchmod => file::sys_fchmod(fd(a, 0), a[1] as u32);
    92 chown => file::sys_chown(UserAddr(a[0]), a[1] as u32, a[2] as u32);
    93 fchown => file::sys_fchown(fd(a, 0), a[1] as u32, a[2] as u32);
    94 lchown => file::sys_lchown(UserAddr(a[0]), a[1] as u32, a[2] as u32);
    95 umask => file::sys_umask(a[0] as u32);
    96 gettimeofday => time::sys_gettimeofday(UserAddr(a[0]), UserAddr(a[1]));
    97 getrlimit => process::sys_getrlimit(a[0] as u32, UserAddr(a[1]));
    98 getrusage;
    99 sysinfo => info::sys_sysinfo(UserAddr(a[0]));
    100 times;
    101 ptrace;
    102 getuid => process::sys_getid(Id::Uid);
    103 syslog;
    104 getgid => process::sys_getid(Id::Gid);
    105 setuid => process::sys_setid(a[0] as u32, false);
    106 setgid => process::sys_setid(a[0] as u32, true);
    107 geteuid => process::sys_getid(Id::Euid);
    108 getegid => process::sys_getid(Id::Egid);
    109 setpgid => process::sys_setpgid(a[0] as i32, a[1] as i32);
    110 getppid => process::sys_getppid();
    111 getpgrp => process::sys_getpgid(0);
    112 setsid => process::sys_setsid();
    113 setreuid => process::sys_setreid(a[0] as u32, a[1] as u32, false);
    114 setregid => process::sys_setreid(a[0] as u32, a[1] as u32, true);
    115 getgroups;
    116 setgroups;
    117 setresuid => process::sys_setresid(a[0] as u32, a[1] as u32, a[2] as u32, false);
    118 getresuid => process::sys_getresid(UserAddr(a[0]), UserAddr(a[1]), UserAddr(a[2]), false);
    119 setresgid => process::sys_setresid(a[0] as u32, a[1] as u32, a[2] as u32, true);
    120 getresgid => process::sys_getresid(UserAddr(a[0]), UserAddr(a[1]), UserAddr(a[2]), true);
    121 getpgid => process::sys_getpgid(a[0] as i32);
    122 setfsuid;
    123 setfsgid;
    124 getsid => process::sys_getsid(a[0] as i32);
    125 capget;
    126 capset;
    127 rt_sigpending => signal::sys_rt_sigpending(UserAddr(a[0]), a[1]);
    128 rt_sigtimedwait;
    129 rt_sigqueueinfo;
    130 rt_sigsuspend => signal::sys_rt_sigsuspend(UserAddr(a[0]), a[1]);
    131 sigaltstack => signal::sys_sigaltstack(frame, UserAddr(a[0]), UserAddr(a[1]));
    132 utime;
    133 mknod => file::sys_mknod(UserAddr(a[0]), a[1] as u32, a[2]);
    134 uselib;
    135 personality;
    136 ustat;
    137 statfs => file::sys_statfs(UserAddr(a[0]), UserAddr(a[1]));
    138 fstatfs => file::sys_fstatfs(fd(a, 0), UserAddr(a[1]));
    139 sysfs;
    140 getpriority;
    141 setpriority;
    142 sched_setparam;
    143 sched_getparam;
    144 sched_setscheduler;
    145 sched_getscheduler;
    146 sched_get_priority_max;
    147 sched_get_priority_min;
    148 sched_rr_get_interval;
    149 mlock;
    150 munlock;
    151 mlockall;
    152 munlockall;
    153 vhangup;
    154 modify_ldt;
    155 pivot_root;
    156 _sysctl;
    157 prctl => process::sys_prctl(a[0] as u32, UserAddr(a[1]));
    158 arch_prctl => process::sys_arch_prctl(a[0], UserAddr(a[1]));
    159 adjtimex;
    160 setrlimit => process::sys_setrlimit(a[0] as u32, UserAddr(a[1]));
    161 chroot;
    162 sync => mount::sys_sync();
    163 acct;
    164 settimeofday;
    165 mount => mount::sys_mount(UserAddr(a[0]), UserAddr(a[1]), UserAddr(a[2]), a[3], UserAddr(a[4]));
    166 umount2 => mount::sys_umount2(UserAddr(a[0]), a[1]);
    167 swapon;
    168 swapoff;
    169 reboot;
    170 sethostname;
    171 setdomainname;
    172 iopl;
    173 ioperm;
    174 create_module;
    175 init_module;
    176 delete_module;
    177 get_kernel_syms;
    178 query_module;
    179 quotactl;
    180 nfsservctl;
    181 getpmsg;
    182 putpmsg;
    183 afs_syscall;
    184 tuxcall;
    185 security;
    186 gettid => process::sys_gettid();
    187 readahead;
    188 setxattr;
    189 lsetxattr;
    190 fsetxattr;
    191 getxattr;
    192 lgetxattr;
    193 fgetxattr;
    194 listxattr;
    195 llistxattr;
    196 flistxattr;
    197 removexattr;
    198 lremovexattr;
    199 fremovexattr;
    200 tkill => signal::sys_tkill(a[0] as i32, a[1] as i32);
    201 time => time::sys_time(UserAddr(a[0]));
    202 futex => crate::proc::futex::sys_futex(UserAddr(a[0]), a[1] as u32, a[2] as u32, a[3], UserAddr(a[4]), a[5] as u32);
    203 sched_setaffinity => process::sys_sched_setaffinity(a[0] as i32, a[1], UserAddr(a[2]));
    204 sched_getaffinity => process::sys_sched_getaffinity(a[0] as i32, a[1], UserAddr(a[2]));
    205 set_thread_area;
    206 io_setup;
    207 io_destroy;
    208 io_getevents;
    209 io_submit;
    210 io_cancel;
    211 get_thread_area;
    212 lookup_dcookie;
    213 epoll_create => socket::sys_epoll_create(a[0] as i32);
    214 epoll_ctl_old;
    215 epoll_wait_old;
    216 remap_file_pages;
    217 getdents64 => file::sys_getdents64(fd(a, 0), UserAddr(a[1]), a[2]);
    218 set_tid_address => process::sys_set_tid_address(UserAddr(a[0]));
    219 restart_syscall;
    220 semtimedop;
    221 fadvise64;
    222 timer_create;
    223 timer_settime;
    224 timer_gettime;
    225 timer_getoverrun;
    226 timer_delete;
    227 clock_settime;
    228 clock_gettime => time::sys_clock_gettime(a[0] as u32, UserAddr(a[1]));
    229 clock_getres => time::sys_clock_getres(a[0] as u32, UserAddr(a[1]));
    230 clock_nanosleep => time::sys_clock_nanosleep(a[0] as u32, a[1] as u32, UserAddr(a[2]), UserAddr(a[3]));
    231 exit_group => crate::proc::exit::sys_exit_group(a[0] as i32);
    232 epoll_wait => socket::sys_epoll_wait(fd(a, 0), UserAddr(a[1]), a[2] as i32, a[3] as i32);
    233 epoll_ctl => socket::sys_epoll_ctl(fd(a, 0), a[1] as i32, fd(a, 2), UserAddr(a[3]));
    234 tgkill => signal::sys_tgkill(a[0] as i32, a[1] as i32, a[2] as i32);
    235 utimes;
    236 vserver;
    237 mbind;
    238 set_mempolicy;
    239 get_mempolicy;
    240 mq_open;
    241 mq_unlink;
    242 mq_timedsend;
    243 mq_timedreceive;
    244 mq_notify;
    245 mq_getsetattr;
    246 kexec_load;
    247 waitid => crate::proc::exit::sys_waitid(a[0] as u32, a[1] as i32, UserAddr(a[2]), a[3], UserAddr(a[4]));
    248 add_key;
    249 request_key;
    250 keyctl;
    251 ioprio_set;
    252 ioprio_get;
    253 inotify_init;
    254 inotify_add_watch;
    255 inotify_rm_watch;
    256 migrate_pages;
    257 openat => file::sys_openat(fd(a, 0), UserAddr(a[1]), a[2] as u32, a[3] as u32);
    258 mkdirat => file::sys_mkdirat(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    259 mknodat => file::sys_mknodat(fd(a, 0), UserAddr(a[1]), a[2] as u32, a[3]);
    260 fchownat => file::sys_fchownat(fd(a, 0), UserAddr(a[1]), a[2] as u32, a[3] as u32, a[4] as u32);
    261 futimesat;
    262 newfstatat => file::sys_newfstatat(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), a[3] as u32);
    263 unlinkat => file::sys_unlinkat(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    264 renameat => file::sys_renameat2(fd(a, 0), UserAddr(a[1]), fd(a, 2), UserAddr(a[3]), 0);
    265 linkat => file::sys_linkat(fd(a, 0), UserAddr(a[1]), fd(a, 2), UserAddr(a[3]), a[4] as u32);
    266 symlinkat => file::sys_symlinkat(UserAddr(a[0]), fd(a, 1), UserAddr(a[2]));
    267 readlinkat => file::sys_readlinkat(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), a[3] as i64);
    268 fchmodat => file::sys_fchmodat(fd(a, 0), UserAddr(a[1]), a[2] as u32);
    269 faccessat => file::sys_faccessat2(fd(a, 0), UserAddr(a[1]), a[2] as u32, 0);
    270 pselect6 => file::sys_pselect6(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), UserAddr(a[3]), UserAddr(a[4]), UserAddr(a[5]));
    271 ppoll => file::sys_ppoll(UserAddr(a[0]), a[1], UserAddr(a[2]), UserAddr(a[3]), a[4]);
    272 unshare;
    273 set_robust_list => process::sys_set_robust_list(UserAddr(a[0]), a[1]);
    274 get_robust_list;
    275 splice;
    276 tee;
    277 sync_file_range;
    278 vmsplice;
    279 move_pages;
    280 utimensat => file::sys_utimensat(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), a[3] as u32);
    281 epoll_pwait => socket::sys_epoll_pwait(fd(a, 0), UserAddr(a[1]), a[2] as i32, a[3] as i32, UserAddr(a[4]), a[5]);
    282 signalfd;
    283 timerfd_create;
    284 eventfd;
    285 fallocate;
    286 timerfd_settime;
    287 timerfd_gettime;
    288 accept4 => socket::sys_accept4(fd(a, 0), UserAddr(a[1]), UserAddr(a[2]), a[3] as u32);
    289 signalfd4;
    290 eventfd2;
    291 epoll_create1 => socket::sys_epoll_create1(a[0] as u32);
    292 dup3 => file::sys_dup3(fd(a, 0), fd(a, 1), a[2] as u32);
    293 pipe2 => file::sys_pipe2(UserAddr(a[0]), a[1] as u32);
    294 inotify_init1;
    295 preadv;
    296 pwritev;
    297 rt_tgsigqueueinfo;
    298 perf_event_open;
    299 recvmmsg;
    300 fanotify_init;
    301 fanotify_mark;
    302 prlimit64 => process::sys_prlimit64(a[0] as i32, a[1] as u32, UserAddr(a[2]), UserAddr(a[3]));
    303 name_to_handle_at;
    304 open_by_handle_at;
    305 clock_adjtime;
    306 syncfs => mount::sys_syncfs(fd(a, 0));
    307 sendmmsg;
    308 setns;
    309 getcpu => info::sys_getcpu(UserAddr(a[0]), UserAddr(a[1]));
    310 process_vm_readv;
    311 process_vm_writev;
    312 kcmp;
    313 finit_module;
    314 sched_setattr;
    315 sched_getattr;
    316 renameat2 => file::sys_renameat2(fd(a, 0), UserAddr(a[1]), fd(a, 2), UserAddr(a[3]), a[4] as u32);
    317 seccomp;
    318 getrandom => info::sys_getrandom(UserAddr(a[0]), a[1], a[2] as u32);
    319 memfd_create;
    320 kexec_file_load;
    321 bpf;
    322 execveat;
    323 userfaultfd;
    324 membarrier;
    325 mlock2;
    326 copy_file_range;
    327 preadv2;
    328 pwritev2;
    329 pkey_mprotect;
    330 pkey_alloc;
    331 pkey_free;
    332 statx => file::sys_statx(fd(a, 0), UserAddr(a[1]), a[2] as u32, a[3] as u32, UserAddr(a[4]));
    333 io_pgetevents;
    // Linux built without CONFIG_RSEQ answers ENOSYS; glibc then runs
    // without restartable sequences (`__rseq_size` 0).  Served (so
    // counted as dispatched) with that answer.
    334 rseq => unsupported(nr);
    424 pidfd_send_signal;
    425 io_uring_setup;
    426 io_uring_enter;
    427 io_uring_register;
    434 pidfd_open;
    435 clone3;
    436 close_range;
    437 openat2;
    438 pidfd_getfd;
    439 faccessat2 => file::sys_faccessat2(fd(a, 0), UserAddr(a[1]), a[2] as u32, a[3] as u32);
    441 epoll_pwait2;
    448 process_mrelease;
    449 futex_waitv;
    // This kernel's own IPC (abi::ipc, docs/IPC.md): above every Linux
    // number, so Linux answers these with ENOSYS.
    1000 ipc_call => ipc::sys_ipc_call(frame);
    1001 ipc_recv => ipc::sys_ipc_recv(frame);
    1002 ipc_reply_recv => ipc::sys_ipc_reply_recv(frame);
    1003 ipc_reply => ipc::sys_ipc_reply(frame);
    1004 ipc_endpoint_create => ipc::sys_ipc_endpoint_create();
    1005 ipc_close => ipc::sys_ipc_close(a[0]);
    1006 ipc_mint => ipc::sys_ipc_mint(a[0], a[1], a[2]);
    1007 ipc_notification_create => ipc::sys_ipc_notification_create();
    1008 ipc_notify => ipc::sys_ipc_notify(a[0], a[1]);
    1009 ipc_wait => ipc::sys_ipc_wait(a[0], a[1]);
    1010 ipc_register_service => ipc::sys_ipc_register_service(a[0], a[1]);
    1011 ipc_service_call => ipc::sys_ipc_service_call(frame);
    // The device-driver call (abi::dev, drivers/userdev.rs).
    1012 dev_ctl => crate::drivers::userdev::sys_dev_ctl(a[0], a[1], a[2]);
    1013 ipc_service_replace => ipc::sys_ipc_service_replace(a[0], a[1], a[2], a[3]);
});
