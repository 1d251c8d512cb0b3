//! Differential tests: the same static programs, the same initramfs, the
//! same virtual machine (TCG, same vCPU count), once on Debian's Linux and
//! once on our kernel; the program outputs (kernel lines removed) must be
//! equal line by line and the exit statuses equal.
//!
//! Our kernel always runs and must pass on its own: the expected exit
//! status, the program's closing line (`NAME: pass` for the self-checking
//! programs), no `WRONG`.  Linux is fetched once with apt
//! (`comparison::linux`) and must do the same; only if it cannot be had is
//! the Linux side skipped (`skip_or_fail`: a failure under `CI`).

use comparison::run::{RunResult, System, Verdict};
use integration_tests::*;

const TIMEOUT: u64 = 180;

/// What a run must end with on either system.
struct Expect {
    status: u32,
    /// A line the output must contain (the program's closing line).
    line: String,
}

impl Expect {
    /// A self-checking program: exit 0 and `NAME: pass`.
    fn pass(name: &str) -> Expect {
        Expect {
            status: 0,
            line: format!("{name}: pass"),
        }
    }
}

/// `result` (on `system`) ended as `expect` says, with no `WRONG` line.
fn check_alone(result: &RunResult, system: &str, name: &str, expect: &Expect) {
    check_run(
        result,
        result.verdict == Verdict::Exited(expect.status),
        &format!("{name} on {system}: expected exit status {}", expect.status),
    );
    check_run(
        result,
        result.output.lines().any(|l| l == expect.line),
        &format!("{name} on {system}: expected the line `{}`", expect.line),
    );
    check_run(
        result,
        !result.output.contains("WRONG"),
        &format!("{name} fails its own checks on {system}"),
    );
}

fn same_on_both(name: &str, cores: usize, args: &[&str]) {
    expect_on_both(name, cores, args, Expect::pass(name));
}

fn expect_on_both(name: &str, cores: usize, args: &[&str], expect: Expect) {
    let on_ours = run_program(ours(), System::Ours, name, cores, args, &[], TIMEOUT);
    check_alone(&on_ours, "our kernel", name, &expect);
    let Some(linux) = linux_or_skip(&format!("the Linux side of {name}")) else {
        return;
    };
    let on_linux = run_program(linux, System::Linux, name, cores, args, &[], TIMEOUT);
    // The reference itself must be sane, or the comparison means nothing.
    check_alone(&on_linux, "Linux", name, &expect);
    let diff = line_diff(&on_linux.output, &on_ours.output);
    check_run(
        &on_ours,
        diff.is_empty(),
        &format!("{name} on {cores} vCPUs: outputs differ from Linux:\n{diff}"),
    );
    check_run(
        &on_ours,
        on_ours.verdict == on_linux.verdict,
        &format!(
            "{name}: status differs: linux {:?}, ours {:?}",
            on_linux.verdict, on_ours.verdict
        ),
    );
}

#[test]
fn hello() {
    let expect = Expect {
        status: 7,
        line: "hello: exiting with 7".into(),
    };
    expect_on_both("hello", 1, &["one", "two", "exit=7"], expect);
}

#[test]
fn hello_crash() {
    // Killed by SIGSEGV: 128 + 11, after its last line.
    let expect = Expect {
        status: 139,
        line: "hello: writing to NULL".into(),
    };
    expect_on_both("hello", 2, &["crash"], expect);
}

#[test]
fn threads_1_cpu() {
    same_on_both("threads", 1, &[]);
}

#[test]
fn threads_2_cpus() {
    same_on_both("threads", 2, &[]);
}

#[test]
fn threads_4_cpus() {
    same_on_both("threads", 4, &[]);
}

#[test]
fn procs() {
    same_on_both("procs", 2, &[]);
}

#[test]
fn files() {
    same_on_both("files", 2, &[]);
}

#[test]
fn memory() {
    same_on_both("memory", 2, &[]);
}

#[test]
fn signals() {
    same_on_both("signals", 2, &[]);
}

#[test]
fn timeclock() {
    same_on_both("timeclock", 1, &[]);
}

/// AF_UNIX socket pairs, poll/select/epoll: the same lines as Linux.
#[test]
fn sockets() {
    same_on_both("sockets", 2, &[]);
}

#[test]
fn badptr() {
    same_on_both("badptr", 2, &[]);
}

/// `posix_diff` checks nothing itself (Linux is its reference): it must
/// reach its last line, `done`, and exit 0.
fn posix_diff_done() -> Expect {
    Expect {
        status: 0,
        line: "done".into(),
    }
}

/// The POSIX file-system cases of the fs/ issue (rename, links, unlink of
/// open files, holes, truncate, symlinks, errno cases, MAP_SHARED mmap):
/// Linux tmpfs and our tmpfs must print the same lines.
#[test]
fn posix_file_system_cases() {
    expect_on_both("posix_diff", 1, &[], posix_diff_done());
}

#[test]
fn posix_file_system_cases_2_cpus() {
    expect_on_both("posix_diff", 2, &[], posix_diff_done());
}

/// AF_INET over loopback (TCP and UDP, the errno cases of the net/ issue,
/// socket options, non-blocking connect, epoll on a socket): Linux's stack
/// and our per-core stack must print the same lines.
#[test]
fn net_loopback_cases() {
    same_on_both("net_diff", 2, &[]);
}

#[test]
fn net_loopback_cases_1_cpu() {
    same_on_both("net_diff", 1, &[]);
}

/// Many concurrent loopback connections with a thread on every CPU.
#[test]
fn net_stress_4_cpus() {
    same_on_both("net_stress", 4, &[]);
}

/// The system calls no other program reaches: ids, groups and
/// sessions, limits, waitid, vfork, signal waits, the *at file calls.
#[test]
fn sysgaps() {
    same_on_both("sysgaps", 2, &[]);
}

/// time, alarm, itimers, sendfile, the chown family, prctl, rseq, /proc and /dev
/// files, interface ioctls.
#[test]
fn sysmisc() {
    same_on_both("sysmisc", 2, &[]);
}

/// Descriptors changed while the threads of the process use them: reopen,
/// dup2 over, a write end closed under a blocked reader (EOF), a read end
/// closed under one, thread exit, fork (the per-task descriptor cache).
#[test]
fn fd_sharing() {
    same_on_both("fdshare", 2, &[]);
}

/// read/pread/readv of a regular file: page boundaries, end of file, holes,
/// untouched, copy-on-write and file-mapped buffers, inaccessible pages.
#[test]
fn read_path() {
    same_on_both("readpath", 2, &[]);
}

/// Shared file mappings against write/read of another process, other
/// mappings, truncates by path, descriptor and O_TRUNC under them, unlink.
#[test]
fn map_coherence() {
    same_on_both("mapcoherence", 2, &[]);
}

/// COMMUTER-style pairs (userland/src/bin/commuter.rs): each pair's results
/// in both orders and together on CPUs 0 and 1; the sharing markers are
/// NOPs without the plugin.
#[test]
fn commuter_pairs() {
    same_on_both("commuter", 2, &[]);
}
