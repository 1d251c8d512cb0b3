//! Syscall coverage: every system call our kernel dispatches is called by
//! at least one differential program.
//!
//! Owns the check only.  The programs are the ones `differential.rs` runs
//! against Linux (found in its source, `same_on_both("NAME", ...)`, so a
//! new differential test joins this check by itself); each runs once on our
//! kernel with the command-line word `syscount`, whose `syscount:` lines
//! (printed at PID 1's exit, `kernel/src/syscall/count.rs`) give the set of
//! dispatched numbers (probed from the dispatch tables themselves) and the
//! calls per number.  The test fails naming every dispatched number that
//! no program called.  Invariant: a program counts only if its run ended
//! with an exit status and printed no `WRONG` (its Linux comparison is
//! `differential.rs`'s job).  Must not: keep a list of syscalls of its own
//! (the names below only label the failure message).

use comparison::run::{RunRequest, RunResult, System, Verdict};
use integration_tests::*;
use std::collections::{BTreeMap, BTreeSet};

const TIMEOUT: u64 = 240;

/// vCPUs for every run (one run per program keeps the test short).
const CORES: usize = 2;

/// The source of the differential tests, whose programs are the ones run.
const DIFFERENTIAL: &str = include_str!("differential.rs");

/// Linux x86_64 syscall names by number (0..=334), to label the failure.
const NAMES: &str = "\
    read write open close stat fstat lstat poll lseek mmap mprotect munmap brk \
    rt_sigaction rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev \
    access pipe select sched_yield mremap msync mincore madvise shmget shmat shmctl \
    dup dup2 pause nanosleep getitimer alarm setitimer getpid sendfile socket \
    connect accept sendto recvfrom sendmsg recvmsg shutdown bind listen getsockname \
    getpeername socketpair setsockopt getsockopt clone fork vfork execve exit wait4 \
    kill uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl fcntl flock \
    fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir \
    rmdir creat link unlink symlink readlink chmod fchmod chown fchown lchown umask \
    gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog getgid \
    setuid setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid \
    getgroups setgroups setresuid getresuid setresgid getresgid getpgid setfsuid \
    setfsgid getsid capget capset rt_sigpending rt_sigtimedwait rt_sigqueueinfo \
    rt_sigsuspend sigaltstack utime mknod uselib personality ustat statfs fstatfs \
    sysfs getpriority setpriority sched_setparam sched_getparam sched_setscheduler \
    sched_getscheduler sched_get_priority_max sched_get_priority_min \
    sched_rr_get_interval mlock munlock mlockall munlockall vhangup modify_ldt \
    pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot sync acct \
    settimeofday mount umount2 swapon swapoff reboot sethostname setdomainname iopl \
    ioperm create_module init_module delete_module get_kernel_syms query_module \
    quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid \
    readahead setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr \
    llistxattr flistxattr removexattr lremovexattr fremovexattr tkill time futex \
    sched_setaffinity sched_getaffinity set_thread_area io_setup io_destroy \
    io_getevents io_submit io_cancel get_thread_area lookup_dcookie epoll_create \
    epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address \
    restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime \
    timer_getoverrun timer_delete clock_settime clock_gettime clock_getres \
    clock_nanosleep exit_group epoll_wait epoll_ctl tgkill utimes vserver mbind \
    set_mempolicy get_mempolicy mq_open mq_unlink mq_timedsend mq_timedreceive \
    mq_notify mq_getsetattr kexec_load waitid add_key request_key keyctl ioprio_set \
    ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat \
    mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat \
    symlinkat readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list \
    get_robust_list splice tee sync_file_range vmsplice move_pages utimensat \
    epoll_pwait signalfd timerfd_create eventfd fallocate timerfd_settime \
    timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2 \
    inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg \
    fanotify_init fanotify_mark prlimit64 name_to_handle_at open_by_handle_at \
    clock_adjtime syncfs sendmmsg setns getcpu process_vm_readv process_vm_writev \
    kcmp finit_module sched_setattr sched_getattr renameat2 seccomp getrandom \
    memfd_create kexec_file_load bpf execveat userfaultfd membarrier mlock2 \
    copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx \
    io_pgetevents rseq ";

/// The name of `nr` (or `nr N` when not in the table).
fn syscall_name(nr: u64) -> String {
    let high = [
        (424, "pidfd_send_signal"),
        (425, "io_uring_setup"),
        (434, "pidfd_open"),
        (435, "clone3"),
        (436, "close_range"),
        (437, "openat2"),
        (439, "faccessat2"),
        (441, "epoll_pwait2"),
    ];
    NAMES
        .split_whitespace()
        .nth(nr as usize)
        .or_else(|| high.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s))
        .map_or_else(|| format!("nr {nr}"), str::to_string)
}

/// Every distinct program of `differential.rs`, with the arguments of its
/// first `same_on_both("NAME", CORES, &["ARG", ...])` or
/// `expect_on_both("NAME", ...)` call.
fn differential_programs() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for call in DIFFERENTIAL.split("_on_both(").skip(1) {
        let Some(rest) = call.trim_start().strip_prefix('"') else {
            continue; // a definition `fn same_on_both(name: ...` or a call by variable
        };
        let Some((name, rest)) = rest.split_once('"') else {
            continue;
        };
        // The arguments: the string literals inside the first `&[...]`
        // before the call's closing `)`.
        let call_end = rest.find(')').unwrap_or(rest.len());
        let args = match rest[..call_end].split_once("&[") {
            Some((_, list)) => list
                .split(']')
                .next()
                .unwrap_or("")
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_string(), args));
        }
    }
    out
}

/// The numbers after `syscount: KEY=` (`N` or `N:COUNT`, comma-separated)
/// on our kernel's serial log.
fn syscount(run: &RunResult, key: &str) -> Option<BTreeMap<u64, u64>> {
    let marker = format!("syscount: {key}=");
    let line = run.outcome.serial.lines().find(|l| l.contains(&marker))?;
    let list = &line[line.find(&marker)? + marker.len()..];
    list.trim()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let (nr, n) = w.split_once(':').unwrap_or((w, "1"));
            Some((nr.parse().ok()?, n.parse().ok()?))
        })
        .collect()
}

/// Runs `name` with `args` on our kernel with `syscount`.
fn run_counted(name: &str, args: &[String]) -> RunResult {
    let request = RunRequest {
        system: System::Ours,
        program: program(name),
        files: Vec::new(),
        args: args.to_vec(),
        locks: LockMode::PerCpu,
        extra_cmdline: "syscount".into(),
        vm: vm(CORES, TIMEOUT),
        echo: comparison::run::Echo::Quiet,
    };
    comparison::run::run(ours(), &request).expect("running the program")
}

#[test]
fn every_dispatched_syscall_is_called_by_a_differential_program() {
    let programs = differential_programs();
    assert!(
        programs.len() >= 10,
        "found only {programs:?} in differential.rs: has `same_on_both(\"NAME\", ...)` changed?"
    );
    let mut dispatched: Option<BTreeSet<u64>> = None;
    let mut called: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (name, args) in &programs {
        let run = run_counted(name, args);
        check_run(
            &run,
            matches!(run.verdict, Verdict::Exited(_)) && !run.output.contains("WRONG"),
            &format!("{name} did not run cleanly on our kernel"),
        );
        // Every table answered the probe (none ran a handler instead).
        if let Some(line) = run
            .outcome
            .serial
            .lines()
            .find(|l| l.contains("syscount: unprobed="))
        {
            panic!("{name}: {line}");
        }
        let served: BTreeSet<u64> = syscount(&run, "dispatched")
            .unwrap_or_else(|| panic!("{name}: no `syscount: dispatched=` line"))
            .into_keys()
            .collect();
        let counts = syscount(&run, "called")
            .unwrap_or_else(|| panic!("{name}: no `syscount: called=` line"));
        // The probe and the counters work: the basics are served and used.
        for nr in [0, 1, 60, 231] {
            assert!(
                served.contains(&nr),
                "{name}: {} not dispatched?",
                syscall_name(nr)
            );
        }
        assert!(
            counts.get(&1).is_some_and(|&n| n > 0),
            "{name}: no write counted"
        );
        match &dispatched {
            Some(d) => assert_eq!(d, &served, "{name}: the dispatched set changed"),
            None => dispatched = Some(served),
        }
        for (nr, n) in counts {
            if n > 0 {
                called.entry(nr).or_default().push(name);
            }
        }
        println!("{name}: {} numbers called", called.len());
    }
    let dispatched = dispatched.expect("at least one program");
    let missing: Vec<String> = dispatched
        .iter()
        .filter(|nr| !called.contains_key(nr))
        .map(|&nr| format!("{nr} {}", syscall_name(nr)))
        .collect();
    println!(
        "{} numbers dispatched, {} called by {} programs",
        dispatched.len(),
        dispatched
            .iter()
            .filter(|nr| called.contains_key(nr))
            .count(),
        programs.len()
    );
    assert!(
        missing.is_empty(),
        "{} dispatched system calls are called by no differential program ({}):\n  {}",
        missing.len(),
        programs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        missing.join("\n  ")
    );
}

#[test]
fn the_program_list_is_read_from_differential_rs() {
    let programs = differential_programs();
    let hello = programs.iter().find(|(n, _)| n == "hello").expect("hello");
    assert_eq!(hello.1, ["one", "two", "exit=7"]);
    assert!(programs
        .iter()
        .any(|(n, a)| n == "posix_diff" && a.is_empty()));
    assert_eq!(
        programs.iter().filter(|(n, _)| n == "threads").count(),
        1,
        "one run per program"
    );
}
