//! `cargo run --release -p comparison --example sharing_cost [-- SYSTEM [WORKLOAD]]`:
//! what the sharing plugin costs the guest (docs/SHARING.md), on our
//! kernel (default) or `linux`, 2 vCPUs, TCG, with `wis WORKLOAD` (default
//! getppid):
//!
//! - outside windows: `wis` ops/s over 3 s without the plugin and with it
//!   loaded (no marker runs, so every memory callback returns at once);
//! - inside windows: the time for 2 x 3000 marked operations (`--mark-ops`)
//!   beyond a boot that runs nothing (`wis --list`), without the plugin
//!   (the markers are NOPs), with it and the direct map, and with it and
//!   every address through QEMU's lookup.
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
            direct.then(|| plugin::direct_map(system)),
            8,
        )
        .unwrap()
    };
    let none: Vec<String> = Vec::new();
    let w = workload.as_str();

    let free = ["--threads", "2", "--warmup-ms", "300", "--ms", "3000"];
    let args: Vec<&str> = [w].into_iter().chain(free).collect();
    let base = ops_per_sec(&run(&systems, system, &wis, &args, &none).1);
    let loaded = ops_per_sec(&run(&systems, system, &wis, &args, &with(true)).1);
    println!(
        "outside windows: {w} {base:.0} ops/s without the plugin, {loaded:.0} with it: slowdown {:.2}x",
        base / loaded
    );

    let marked = [
        "--threads",
        "2",
        "--warmup-ms",
        "0",
        "--ms",
        "10",
        "--mark-ops",
        "3000",
    ];
    let args: Vec<&str> = [w].into_iter().chain(marked).collect();
    let mut line = String::from("inside windows (2 x 3000 marked ops beyond an empty boot):");
    let mut times = Vec::new();
    for (name, pa) in [
        ("no plugin", &none),
        ("direct map", &with(true)),
        ("QEMU lookup", &with(false)),
    ] {
        let (boot, _) = run(&systems, system, &wis, &["--list"], pa);
        let (total, _) = run(&systems, system, &wis, &args, pa);
        let work = (total - boot).max(0.001);
        times.push(work);
        line.push_str(&format!(" {name} {work:.2} s;"));
    }
    println!("{line}");
    println!(
        "inside windows: slowdown {:.1}x with the direct map, {:.1}x with QEMU's lookup",
        times[1] / times[0],
        times[2] / times[0]
    );
}
