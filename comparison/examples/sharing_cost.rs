//! `cargo run --release -p comparison --example sharing_cost [-- SYSTEM [WORKLOAD]]`:
//! what the sharing plugin costs the guest (docs/SHARING.md), on our
//! kernel (default) or `linux`, 2 vCPUs, TCG, with `wis WORKLOAD` (default
//! getppid):
//!
//! - outside windows: QEMU's CPU time per `wis` operation over 3 s (less a
//!   boot that runs nothing) without the plugin and with it loaded (no
//!   marker runs, so every memory callback returns at once);
//! - inside windows: QEMU's CPU time for 2 x 50000 marked operations
//!   (`--mark-ops`) beyond a boot that runs nothing (`wis --list`), without
//!   the plugin (the markers are NOPs), with it and the direct map, and
//!   with it and every address through QEMU's lookup.
//!
//! Prints one line per measurement and the ratios.  Timing under TCG on a
//! shared host is noisy: run it on an idle machine, more than once.

use comparison::qemu::VmConfig;
use comparison::run::{Echo, RunExtras, RunRequest, System, Systems, Verdict};
use comparison::sharing::plugin;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn run(
    systems: &Systems,
    system: System,
    wis: &Path,
    args: &[&str],
    plugin_args: &[String],
) -> (f64, String) {
    let request = RunRequest {
        system,
        program: wis.to_path_buf(),
        files: vec![],
        args: args.iter().map(|s| s.to_string()).collect(),
        locks: percpu::LockMode::PerCpu,
        extra_cmdline: if system == System::Linux {
            plugin::LINUX_NOKASLR.into()
        } else {
            String::new()
        },
        vm: VmConfig {
            cores: 2,
            timeout: Duration::from_secs(900),
            ..Default::default()
        },
        echo: Echo::Quiet,
    };
    let r =
        comparison::run::run_with_qemu_args(systems, &request, &RunExtras::default(), plugin_args)
            .expect("running wis");
    assert_eq!(r.verdict, Verdict::Exited(0), "{}", r.outcome.tail(30));
    (r.outcome.elapsed.as_secs_f64(), r.output)
}

/// CPU seconds (user + system) the children of this process used in `f`.
fn cpu_seconds<T>(f: impl FnOnce() -> T) -> f64 {
    let used = || {
        // SAFETY: `rusage` is plain data; all zeroes is a valid value.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only fills the struct we pass.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    let before = used();
    f();
    used() - before
}

fn ops_per_sec(output: &str) -> f64 {
    output
        .lines()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["ops_per_sec"].as_f64()
        })
        .expect("a wis result line")
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let system = match argv.first().map(String::as_str) {
        Some("linux") => System::Linux,
        _ => System::Ours,
    };
    let workload = argv.get(1).cloned().unwrap_or_else(|| "getppid".into());
    let plugin_path = plugin::build_plugin().expect("building the plugin");
    let wis = comparison::suite::runner::build_wis().expect("building wis");
    let systems = Systems::prepare(system).expect("preparing the system");
    let root = comparison::build::workspace_root();
    let out: PathBuf = comparison::build::target_dir(&root)
        .unwrap()
        .join("sharing-cost.jsonl");
    let with = |direct: bool| {
        plugin::qemu_args(
            &plugin_path,
            &out,
            direct.then(|| plugin::direct_map(system, 512)),
            8,
        )
        .unwrap()
    };
    let none: Vec<String> = Vec::new();
    let w = workload.as_str();

    // Outside windows: QEMU CPU time per operation over a 3 s interval
    // (less a boot that runs nothing), without and with the plugin.
    let free = ["--threads", "2", "--warmup-ms", "300", "--ms", "3000"];
    let args: Vec<&str> = [w].into_iter().chain(free).collect();
    let mut per_op = Vec::new();
    for pa in [&none, &with(true)] {
        let boot = cpu_seconds(|| run(&systems, system, &wis, &["--list"], pa));
        let mut out = String::new();
        let total = cpu_seconds(|| out = run(&systems, system, &wis, &args, pa).1);
        let ops = ops_per_sec(&out) * 3.0;
        per_op.push(((total - boot).max(0.01) / ops * 1e9, ops / 3.0));
    }
    println!(
        "outside windows: {w} {:.0} ns of QEMU CPU per op ({:.0} ops/s) without the plugin, {:.0} ns ({:.0} ops/s) with it: slowdown {:.2}x",
        per_op[0].0,
        per_op[0].1,
        per_op[1].0,
        per_op[1].1,
        per_op[1].0 / per_op[0].0
    );

    // A fixed amount of work: 2 x 50000 marked getppid (and the boot),
    // less a boot that runs nothing; measured as QEMU's CPU time, which the
    // other processes of a loaded host disturb less than wall time.
    let marked = [
        "--threads",
        "2",
        "--warmup-ms",
        "0",
        "--ms",
        "10",
        "--mark-ops",
        "50000",
    ];
    let args: Vec<&str> = [w].into_iter().chain(marked).collect();
    let mut cpu = Vec::new();
    for pa in [&none, &with(true), &with(false)] {
        let boot = cpu_seconds(|| run(&systems, system, &wis, &["--list"], pa));
        let total = cpu_seconds(|| run(&systems, system, &wis, &args, pa));
        cpu.push((total - boot).max(0.01));
    }
    println!(
        "inside windows: {w} 2 x 50000 marked ops cost {:.2} s of QEMU CPU time without the plugin, {:.2} s with the direct map, {:.2} s with QEMU's lookup: slowdown {:.1}x and {:.1}x",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[1] / cpu[0],
        cpu[2] / cpu[0]
    );
}
