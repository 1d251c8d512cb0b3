//! Differential tests: the same static programs, the same initramfs, the
//! same virtual machine (TCG, same vCPU count), once on Debian's Linux and
//! once on our kernel; the program outputs (kernel lines removed) must be
//! equal line by line and the exit statuses equal.
//!
//! Linux is fetched once with apt (`comparison::linux`).  Only if it cannot
//! be fetched is the Linux side skipped, and then the reason is printed.

use comparison::run::{System, Verdict};
use integration_tests::*;

const TIMEOUT: u64 = 180;

fn same_on_both(name: &str, cores: usize, args: &[&str]) {
    let linux = match linux() {
        Ok(linux) => linux,
        Err(reason) => {
            eprintln!(
                "SKIPPED Linux side of {name}: the Debian kernel cannot be had here: {reason}"
            );
            return;
        }
    };
    let on_linux = run_program(linux, System::Linux, name, cores, args, &[], TIMEOUT);
    // The reference itself must be sane, or the comparison means nothing.
    check_run(
        &on_linux,
        matches!(on_linux.verdict, Verdict::Exited(_)),
        &format!("{name} on Linux gave no exit status"),
    );
    check_run(
        &on_linux,
        !on_linux.output.contains("WRONG"),
        &format!("{name} fails its own checks on Linux"),
    );
    let on_ours = run_program(ours(), System::Ours, name, cores, args, &[], TIMEOUT);
    let (l, o): (Vec<&str>, Vec<&str>) = (
        on_linux.output.lines().collect(),
        on_ours.output.lines().collect(),
    );
    let mut diff = String::new();
    for i in 0..l.len().max(o.len()) {
        let (a, b) = (l.get(i).copied(), o.get(i).copied());
        if a != b {
            diff.push_str(&format!(
                "line {}:\n  linux: {}\n  ours:  {}\n",
                i + 1,
                a.unwrap_or("<none>"),
                b.unwrap_or("<none>")
            ));
        }
    }
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
    same_on_both("hello", 1, &["one", "two", "exit=7"]);
}

#[test]
fn hello_crash() {
    same_on_both("hello", 2, &["crash"]);
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

/// The POSIX file-system cases of the fs/ issue (rename, links, unlink of
/// open files, holes, truncate, symlinks, errno cases, MAP_SHARED mmap):
/// Linux tmpfs and our tmpfs must print the same lines.
#[test]
fn posix_file_system_cases() {
    same_on_both("posix_diff", 1, &[]);
}

#[test]
fn posix_file_system_cases_2_cpus() {
    same_on_both("posix_diff", 2, &[]);
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

/// read/pread/readv of a regular file: page boundaries, end of file, holes,
/// untouched, copy-on-write and file-mapped buffers, inaccessible pages.
#[test]
fn read_path() {
    same_on_both("readpath", 2, &[]);
}
