//! `structure=servers` (docs/SERVERS.md "Kernel side / boot"): the kernel
//! starts the user-mode file server `fsd` from the initramfs, waits until
//! it registered `SERVICE_FS`, and runs `/init` read through it; file
//! system calls outside `/dev` and `/proc` are delegated to it.
//!
//! Checked: `hello`, `files`, `fs_stress` and `posix_diff` on 1 and 2
//! vCPUs; `files` and `posix_diff` print the same lines as in the
//! monolithic structure (file mappings included: page grants of the
//! server's page cache); `readpath` passes and `mapcoherence` (shared
//! mappings against `write`/`read` of another process through the server,
//! truncates under mappings) passes with the monolithic output, on 1 and 2
//! vCPUs; `files`, `posix_diff` and `mapcoherence` also with
//! `servers.copy=two` (file data through messages instead of one copy
//! from granted page-cache pages; every run checks the kernel logged the
//! mode it booted with); Debian's busybox-static runs `sh -c 'echo a; ls /'` with its
//! root listed by the server.  Sockets (the network server `netd`):
//! `net_diff` and `sockets` print the same lines as in the monolithic
//! structure on 1 and 2 vCPUs, `net_stress` passes on both, and AF_INET
//! sockets were made by netd.  Placement (`servers.placement=percore` and
//! `dedicated`, 2 vCPUs): `posix_diff` and `net_diff` print the monolithic
//! lines, `fs_stress` and `net_stress` pass; `dedicated` on 1 vCPU falls
//! back to single; with `servers.migrate=on` a skewed load (`wis
//! open_close_skewed`) runs without an error while the file server's
//! thread moves after its callers.  On 4 vCPUs (twice this host's cores):
//! each placement's differential and stress runs, `posix_diff` and
//! `mapcoherence` with two copies, and `sockets`.  A kernel panic, a missing `servers:`
//! start line or any other difference fails.

use comparison::run::{Structure, Verdict};
use integration_tests::*;

const TIMEOUT: u64 = 300;

fn servers(name: &str, cores: usize) -> comparison::run::RunResult {
    servers_copy(name, cores, Copy::One)
}

/// How `read`/`write` of server files move data (`servers.copy=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Copy {
    /// Once, from the server's granted page-cache pages (the default).
    One,
    /// Twice, through 8 KiB messages.
    Two,
}

fn servers_copy(name: &str, cores: usize, copy: Copy) -> comparison::run::RunResult {
    let cmdline = match copy {
        Copy::One => "",
        Copy::Two => "servers.copy=two",
    };
    let result = run_structure_cmdline(
        &program(name),
        cores,
        &[],
        &[],
        TIMEOUT,
        Structure::Servers,
        None,
        cmdline,
    );
    check_run(
        &result,
        result
            .outcome
            .serial
            .contains("servers: file server /.servers/fsd is pid"),
        "expected the kernel to start the file server",
    );
    check_run(
        &result,
        result
            .outcome
            .serial
            .contains("servers: network server /.servers/netd is pid"),
        "expected the kernel to start the network server",
    );
    check_run(
        &result,
        result.outcome.serial.contains("kernel: servers ("),
        "expected the servers kernel image (comparison::build::KernelImage)",
    );
    let mode = match copy {
        Copy::One => "(servers.copy=one)",
        Copy::Two => "(servers.copy=two)",
    };
    check_run(
        &result,
        result.outcome.serial.contains(mode),
        &format!("expected the kernel to log {mode}"),
    );
    result
}

/// The kernel logs the first AF_INET socket the network server made: the
/// sockets of a run went there, not to the kernel's own stack.
fn expect_net_delegated(result: &comparison::run::RunResult) {
    check_run(
        result,
        result
            .outcome
            .serial
            .contains("servers: first AF_INET socket made by the network server"),
        "expected AF_INET sockets to be delegated to netd",
    );
}

fn monolithic(name: &str, cores: usize) -> comparison::run::RunResult {
    let result = run_structure(
        &program(name),
        cores,
        &[],
        &[],
        TIMEOUT,
        Structure::Monolithic,
        None,
    );
    check_run(
        &result,
        result.outcome.serial.contains("kernel: monolithic image"),
        "expected the monolithic kernel image",
    );
    result
}

/// `ours` (servers) must print `base`'s (monolithic) lines.
fn same_output(base: &str, ours: &str) -> Result<(), String> {
    let keep = |text: &str| -> Vec<String> { text.lines().map(str::to_string).collect() };
    let (a, b) = (keep(base), keep(ours));
    if a == b {
        Ok(())
    } else {
        Err(line_diff(&a.join("\n"), &b.join("\n")))
    }
}

#[test]
fn hello_on_one_cpu() {
    let result = servers("hello", 1);
    expect_exit(&result, 0);
    check_run(
        &result,
        result.output.contains("hello: exiting with 0"),
        "expected hello's output",
    );
}

#[test]
fn hello_on_two_cpus() {
    let result = servers("hello", 2);
    expect_exit(&result, 0);
}

#[test]
fn files_matches_monolithic_on_one_cpu() {
    files_matches_monolithic(Copy::One);
}

#[test]
fn files_matches_monolithic_with_two_copies() {
    files_matches_monolithic(Copy::Two);
}

fn files_matches_monolithic(copy: Copy) {
    let ours = servers_copy("files", 1, copy);
    expect_pass(&ours, "files");
    let base = monolithic("files", 1);
    expect_pass(&base, "files");
    if let Err(diff) = same_output(&base.output, &ours.output) {
        check_run(
            &ours,
            false,
            &format!("files ({copy:?} copy) differs from monolithic:\n{diff}"),
        );
    }
}

#[test]
fn files_on_two_cpus() {
    let result = servers("files", 2);
    expect_pass(&result, "files");
}

#[test]
fn fs_stress_on_two_cpus() {
    let result = servers("fs_stress", 2);
    expect_exit(&result, 0);
    check_run(
        &result,
        result
            .output
            .lines()
            .any(|l| l.starts_with("fs_stress: pass")),
        "expected `fs_stress: pass`",
    );
}

#[test]
fn posix_diff_matches_monolithic() {
    for cores in [1, 2] {
        posix_diff_same(cores, Copy::One);
    }
}

/// The two-copy path (`servers.copy=two`) still gives the same lines.
#[test]
fn posix_diff_matches_monolithic_with_two_copies() {
    posix_diff_same(1, Copy::Two);
}

fn posix_diff_same(cores: usize, copy: Copy) {
    let ours = servers_copy("posix_diff", cores, copy);
    expect_exit(&ours, 0);
    let base = monolithic("posix_diff", cores);
    expect_exit(&base, 0);
    if let Err(diff) = same_output(&base.output, &ours.output) {
        check_run(
            &ours,
            false,
            &format!(
                "posix_diff on {cores} vCPUs ({copy:?} copy) differs from monolithic:\n{diff}"
            ),
        );
    }
}

#[test]
fn readpath_passes() {
    let result = servers("readpath", 1);
    expect_pass(&result, "readpath");
}

/// Mappings of server files against `write`/`read` of another process
/// through the server, other mappings and truncates: the monolithic
/// kernel's lines (which are Linux's).
#[test]
fn mapcoherence_matches_monolithic() {
    for (cores, copy) in [(1, Copy::One), (2, Copy::One), (1, Copy::Two)] {
        let ours = servers_copy("mapcoherence", cores, copy);
        expect_pass(&ours, "mapcoherence");
        let base = monolithic("mapcoherence", cores);
        expect_pass(&base, "mapcoherence");
        if let Err(diff) = same_output(&base.output, &ours.output) {
            check_run(
                &ours,
                false,
                &format!(
                    "mapcoherence on {cores} vCPUs ({copy:?} copy) differs from monolithic:\n{diff}"
                ),
            );
        }
    }
}

/// `name` prints the same lines in both structures on `cores` vCPUs.
fn same_as_monolithic(name: &str, cores: usize) -> comparison::run::RunResult {
    let ours = servers(name, cores);
    expect_pass(&ours, name);
    let base = monolithic(name, cores);
    expect_pass(&base, name);
    if let Err(diff) = same_output(&base.output, &ours.output) {
        check_run(
            &ours,
            false,
            &format!("{name} on {cores} vCPUs differs from monolithic:\n{diff}"),
        );
    }
    ours
}

#[test]
fn net_diff_matches_monolithic() {
    for cores in [1, 2] {
        let ours = same_as_monolithic("net_diff", cores);
        expect_net_delegated(&ours);
    }
}

/// Mostly AF_UNIX (which stays in the kernel; path names are socket
/// nodes on the file server) plus AF_INET errnos and epoll on sockets.
#[test]
fn sockets_matches_monolithic() {
    for cores in [1, 2] {
        same_as_monolithic("sockets", cores);
    }
}

#[test]
fn net_stress_on_one_and_two_cpus() {
    for cores in [1, 2] {
        let result = servers("net_stress", cores);
        expect_pass(&result, "net_stress");
        check_run(
            &result,
            result.output.contains(&format!(
                "tcp: {cores} threads x 50 concurrent connections echoed"
            )),
            "expected the TCP line with one thread per CPU",
        );
        expect_net_delegated(&result);
    }
}

#[test]
fn busybox_shell_lists_the_servers_root() {
    let Some(busybox) = debian_program(
        "busybox_shell_lists_the_servers_root",
        comparison::debian::BUSYBOX,
    ) else {
        return;
    };
    let result = run_structure(
        &busybox,
        1,
        &["-c", "echo a; ls /"],
        &[],
        TIMEOUT,
        Structure::Servers,
        Some("sh"),
    );
    check_run(
        &result,
        result.verdict == Verdict::Exited(0),
        "expected busybox sh to exit with 0",
    );
    let lines: Vec<&str> = result.output.lines().map(str::trim).collect();
    check_run(&result, lines.first() == Some(&"a"), "expected `a` first");
    for name in ["init", "tmp", "dev", "proc"] {
        check_run(
            &result,
            result.output.split_whitespace().any(|w| w == name),
            &format!("expected `ls /` to list {name}"),
        );
    }
}

/// `name` in `structure=servers` on `cores` vCPUs with the kernel words
/// `cmdline` (a placement), its servers started.
fn placed(name: &str, cores: usize, cmdline: &str) -> comparison::run::RunResult {
    placed_program(&program(name), cores, &[], cmdline)
}

fn placed_program(
    path: &std::path::Path,
    cores: usize,
    args: &[&str],
    cmdline: &str,
) -> comparison::run::RunResult {
    let result = run_structure_cmdline(
        path,
        cores,
        args,
        &[],
        TIMEOUT,
        Structure::Servers,
        None,
        cmdline,
    );
    for (line, what) in [
        ("servers: file server /.servers/fsd is pid", "file"),
        ("servers: network server /.servers/netd is pid", "network"),
    ] {
        check_run(
            &result,
            result.outcome.serial.contains(line),
            &format!("expected the kernel to start the {what} server ({cmdline})"),
        );
    }
    result
}

/// The number after `key=` in the `ipcstat:` line (kernel word `vmstat`).
fn ipcstat(result: &comparison::run::RunResult, key: &str) -> u64 {
    let value = result
        .outcome
        .serial
        .lines()
        .filter_map(|l| l.split("ipcstat: ").nth(1))
        .flat_map(|rest| rest.split_whitespace())
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_string));
    match value.and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => {
            check_run(result, false, &format!("expected `ipcstat: ... {key}=N`"));
            0
        }
    }
}

/// The differential programs print the monolithic lines with the servers
/// placed by `cmdline` on `cores` vCPUs; the stress programs pass.
fn placement_on(cores: usize, cmdline: &str) {
    for name in ["posix_diff", "net_diff"] {
        let ours = placed(name, cores, cmdline);
        expect_exit(&ours, 0);
        let base = monolithic(name, cores);
        expect_exit(&base, 0);
        if let Err(diff) = same_output(&base.output, &ours.output) {
            check_run(
                &ours,
                false,
                &format!("{name} with {cmdline} on {cores} vCPUs differs from monolithic:\n{diff}"),
            );
        }
    }
    let words = format!("{cmdline} vmstat");
    let stress = placed("fs_stress", cores, &words);
    expect_exit(&stress, 0);
    check_run(
        &stress,
        stress
            .output
            .lines()
            .any(|l| l.starts_with("fs_stress: pass")),
        "expected `fs_stress: pass`",
    );
    if cmdline.contains("dedicated") {
        // The file calls went through the request slots.
        check_run(
            &stress,
            stress.outcome.serial.contains(&format!(
                "servers: file server on cpu {} reached through",
                cores - 1
            )),
            "expected the request slots to be attached on the last CPU",
        );
        check_run(
            &stress,
            ipcstat(&stress, "ring_calls") > 0,
            "expected calls through the request slots",
        );
    } else if cmdline.contains("percore") {
        // Some calls found a server thread on their own CPU.
        check_run(
            &stress,
            ipcstat(&stress, "local_calls") > 0,
            "expected same-core deliveries",
        );
    }
    let net = placed("net_stress", cores, cmdline);
    expect_pass(&net, "net_stress");
    expect_net_delegated(&net);
}

/// One serving thread per CPU, pinned; calls go to the caller's CPU.
#[test]
fn percore_placement_on_two_cpus() {
    placement_on(2, "servers.placement=percore");
}

/// The file server on the last CPU, reached through request slots in
/// shared memory (netd: the synchronous call to its thread there).
#[test]
fn dedicated_placement_on_two_cpus() {
    placement_on(2, "servers.placement=dedicated");
}

/// The 4-vCPU column of the matrix (issues 19 and 20): each placement's
/// differential and stress runs on 4 vCPUs (more vCPUs than this host has
/// cores: servers and callers are descheduled at any point).
#[test]
fn single_placement_on_four_cpus() {
    placement_on(4, "servers.placement=single");
}

#[test]
fn percore_placement_on_four_cpus() {
    placement_on(4, "servers.placement=percore");
}

#[test]
fn dedicated_placement_on_four_cpus() {
    placement_on(4, "servers.placement=dedicated");
}

/// Two copies on 4 vCPUs: `posix_diff` and `mapcoherence` print the
/// monolithic lines; `sockets` too.
#[test]
fn copy_modes_and_sockets_on_four_cpus() {
    // One copy: `single_placement_on_four_cpus`.
    posix_diff_same(4, Copy::Two);
    let ours = servers_copy("mapcoherence", 4, Copy::Two);
    expect_exit(&ours, 0);
    let base = monolithic("mapcoherence", 4);
    expect_exit(&base, 0);
    if let Err(diff) = same_output(&base.output, &ours.output) {
        check_run(
            &ours,
            false,
            &format!("mapcoherence on 4 vCPUs (two copies) differs from monolithic:\n{diff}"),
        );
    }
    same_as_monolithic("sockets", 4);
}

/// With one CPU there is no core to dedicate: single placement, logged.
#[test]
fn dedicated_placement_on_one_cpu_falls_back() {
    let result = placed("files", 1, "servers.placement=dedicated");
    expect_pass(&result, "files");
    check_run(
        &result,
        result
            .outcome
            .serial
            .contains("servers.placement=dedicated needs 2 cpus; using single"),
        "expected the fall-back to be logged",
    );
}

/// Migration under load loses no request: callers take turns on the two
/// CPUs (`open_close_skewed`), the kernel moves the file server's thread
/// after them (at least once), and every open and close of the run
/// succeeds (wis fails on any error; a lost call would hang it).
#[test]
fn migration_under_skewed_load_loses_no_request() {
    let wis = comparison::workloads::build_workloads().expect("building the workloads");
    let result = placed_program(
        &wis,
        2,
        &[
            "open_close_skewed",
            "--threads",
            "2",
            "--warmup-ms",
            "100",
            "--ms",
            "1500",
        ],
        "servers.migrate=on vmstat",
    );
    expect_exit(&result, 0);
    check_run(
        &result,
        result
            .output
            .lines()
            .any(|l| l.contains("\"workload\":\"open_close_skewed\"") && !l.contains("\"ops\":0,")),
        "expected a result line with operations",
    );
    check_run(
        &result,
        result.outcome.serial.contains("ipc: server migration on"),
        "expected migration to be on",
    );
    check_run(
        &result,
        ipcstat(&result, "migrations") >= 1,
        "expected the server thread to move after its callers",
    );
}

/// Threads sharing one open file description `read` and `write` at its
/// offset at once: each call takes its own range (`remote::PosLock`, as
/// Linux's `f_pos_lock` and the monolithic kernel's offset lock), on 2
/// vCPUs so the threads really run together.
#[test]
fn shared_offset_on_two_cpus() {
    let result = servers("offsetrace", 2);
    expect_pass(&result, "offsetrace");
}

/// `mount`/`umount2` on the file server's tree are the server's
/// (docs/SERVERS.md, "Mounts"): `sysgaps`' mount cases (a tmpfs on a new
/// directory, write-back calls on it, busy and not-a-mount-point unmounts,
/// an unknown type, a bad pointer) give Linux's answers.  Before the
/// delegation the mount went to the kernel's own tree (`ENOENT`).
#[test]
fn mounts_are_delegated() {
    let result = servers("sysgaps", 1);
    for case in [
        "mkdir mnt:",
        "mount tmpfs on mnt:",
        "mnt/f after mount:",
        "fsync on tmpfs:",
        "syncfs on tmpfs:",
        "umount2 busy (open file):",
        "umount2 mnt:",
        "mnt/f after umount:",
        "umount2 not a mount point:",
        "mount unknown type:",
        "mount bad target pointer:",
        "rmdir mnt:",
    ] {
        let line = result.output.lines().find(|l| l.starts_with(case));
        check_run(
            &result,
            line.is_some_and(|l| !l.contains("WRONG")),
            &format!("sysgaps case `{case}` in servers mode: {line:?}"),
        );
    }
}
