//! Running `comparison sharing`: for each system and vCPU count, one boot
//! of `wis W1,W2,... --threads N --mark-ops K` with the sharing plugin
//! loaded; each workload's dump (labelled with its index in `wis --list`)
//! becomes one `Cell`; every output file is rewritten after every boot.
//!
//! One boot runs all workloads in turn (boots under the plugin at 32+ vCPUs
//! take minutes); a boot that ends early (timeout, panic) keeps the dumps it
//! wrote (the plugin flushes each one) and the workloads it did not reach
//! run again in a new boot, as long as each boot makes progress (a dump,
//! or the watchdog below naming the workload that stalled).  A boot
//! also ends when no workload finished (or started) for the per-workload
//! timeout (`workload_timeout`: the suite's progress watchdog), so one
//! workload that stalls under the plugin costs that long, not the boot's
//! whole timeout.
//!
//! Invariants: a workload without a dump is a failure line naming the
//! system, the vCPU count and why (wis's own message when it printed one),
//! never a cell; time is never measured or reported here.  Must not parse
//! the plugin's JSON (`plugin` does) or format the report (`report`).

use super::plugin::{self, Record};
use super::report::{self, Cell, SharingInfo, TopLine};
use super::symbols::{self, Symbols};
use crate::qemu::{self, Accel, VmConfig};
use crate::run::{Echo, RunExtras, RunRequest, System, Systems, Verdict};
use crate::suite::options::SuiteSystem;
use crate::suite::runner::{build_wis, git_commit, needs_shell, utc_stamps};
use crate::workloads::list_workloads;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The default vCPU counts (the N).
pub const DEFAULT_CORES: &[usize] = &[1, 2, 4, 8, 16, 32, 64];
/// Marked operations per worker by default.
pub const DEFAULT_OPS: u64 = 20;
/// Guest memory at `cores` vCPUs when `--memory` is not given: 512 MiB up
/// to 16 vCPUs, 32 MiB per vCPU above (1 GiB at 32), at most 2 GiB (the
/// plugin's direct-map translation assumes RAM below QEMU's PCI hole).
/// The file workloads give every worker its own files (seq_read: an 8 MiB
/// file each, on top of the 1 MiB ones), all in the guest's RAM: 32
/// workers need about 300 MiB of files, which with the kernel, wis and
/// the page tables of 32 CPUs did not fit in 512 MiB.
pub fn memory_for(cores: usize) -> usize {
    (32 * cores).clamp(512, 2048)
}

/// The default workloads: the suite's (`spawn_shell` gets Debian's
/// busybox-static as `/bin/sh`, as in the suite).
pub fn default_workloads() -> Vec<String> {
    crate::suite::options::DEFAULT_WORKLOADS
        .iter()
        .map(|w| w.to_string())
        .collect()
}

/// What `comparison sharing` does.
#[derive(Debug, Clone)]
pub struct SharingOptions {
    pub systems: Vec<SuiteSystem>,
    pub cores: Vec<usize>,
    /// `None`: `default_workloads()`; `Some(["all"])`: every workload.
    pub workloads: Option<Vec<String>>,
    /// Marked operations per worker (`wis --mark-ops`).
    pub ops: u64,
    /// Warm-up before the marked operations (`wis --warmup-ms`).
    pub warmup_ms: u64,
    /// Per boot.
    pub timeout: Duration,
    /// Per workload: a boot in which no workload finished for this long
    /// (counting from its start) is killed; the workload it was running
    /// becomes a failure line and the rest run in a new boot.  `None`: only
    /// `timeout` bounds a boot.
    pub workload_timeout: Option<Duration>,
    /// Guest memory; `None`: `memory_for(cores)` for each vCPU count.
    pub memory_mib: Option<usize>,
    pub out: Option<PathBuf>,
    /// Conflict lines kept per cell.
    pub top: usize,
    /// Translate each system's direct map in the plugin (else every
    /// address goes through QEMU's lookup: slower, same counts).
    pub direct: bool,
    pub verbose: bool,
}

impl SharingOptions {
    pub fn check(&self) -> Result<()> {
        if self.systems.is_empty() || self.cores.is_empty() {
            bail!("sharing needs at least one system and one vCPU count");
        }
        if let Some(&n) = self.cores.iter().find(|&&n| n == 0 || n > 64) {
            bail!("--cores: {n} is outside 1..=64 (the plugin's vCPU masks)");
        }
        if self.ops == 0 {
            bail!("--ops must be at least 1");
        }
        Ok(())
    }
}

/// What a `comparison sharing` run produced.
#[derive(Debug, Clone)]
pub struct SharingOutcome {
    pub out_dir: PathBuf,
    pub cells: Vec<Cell>,
    pub failures: Vec<String>,
    pub summary: String,
}

/// Workloads whose operation costs far more under the plugin than the
/// others and grows with the vCPUs: each operation forks the whole
/// multi-threaded `wis` (copy-on-write) and starts programs, so that at 32
/// vCPUs 32 workers x 3 marked operations of exec_static did not finish in
/// a 1500 s boot.  They mark `ops_for` operations per worker.
pub const SLOW_WORKLOADS: &[&str] = &["exec_static", "spawn_shell"];

/// Marked operations per worker of `workload` at `cores` vCPUs: `ops`,
/// but for `SLOW_WORKLOADS` about `2 * ops` in all whatever the vCPUs
/// (`ops` per worker at 2 vCPUs, a quarter at 8, at least 1).  Fewer
/// operations leave conflicts/op an average over all of them; only the
/// spread grows.
pub fn ops_for(workload: &str, cores: usize, ops: u64) -> u64 {
    if SLOW_WORKLOADS.contains(&workload) {
        (ops * 2 / cores.max(1) as u64).clamp(1, ops)
    } else {
        ops
    }
}

/// The `wis` arguments of one boot.
pub fn wis_args(workloads: &[String], threads: usize, ops: u64, warmup_ms: u64) -> Vec<String> {
    let mut args = vec![
        workloads.join(","),
        "--threads".into(),
        threads.to_string(),
        "--mark-ops".into(),
        ops.to_string(),
        "--warmup-ms".into(),
        warmup_ms.to_string(),
        // The interval is not used: time does not matter here.
        "--ms".into(),
        "10".into(),
    ];
    for w in workloads {
        let n = ops_for(w, threads, ops);
        if n != ops {
            args.push("--mark-ops-of".into());
            args.push(format!("{w}={n}"));
        }
    }
    args
}

/// The cell of one dump, with writer PCs named.
pub fn cell_of(
    system: &str,
    cores: usize,
    workload: &str,
    record: &Record,
    names: &Symbols,
) -> Cell {
    Cell {
        system: system.to_string(),
        cores,
        workload: workload.to_string(),
        ops: record.ops,
        cpus: record.cpus,
        lines_touched: record.lines_touched,
        conflict_lines: record.conflict_lines,
        shared_written_lines: record.shared_written_lines,
        conflict_op_lines: record.conflict_op_lines,
        shared_written_op_lines: record.shared_written_op_lines,
        top: record
            .lines
            .iter()
            .map(|l| TopLine {
                pa: l.pa,
                readers: l.readers,
                writers: l.writers,
                ops: l.ops,
                writer_symbols: l
                    .writer_pcs
                    .iter()
                    .map(|&pc| symbols::name_pc(names, pc))
                    .collect(),
            })
            .collect(),
    }
}

/// Where, among the workloads of `order` without a dump (in order), the
/// one a boot was running when it ended is: the first after the last
/// workload that dumped (wis runs them in order and goes on after one
/// fails), else the first.
fn stuck_index(order: &[String], done: &[String]) -> usize {
    let last_done = order.iter().rposition(|w| done.contains(w));
    let undone: Vec<&String> = order.iter().filter(|w| !done.contains(w)).collect();
    match last_done {
        Some(last) => undone
            .iter()
            .position(|w| order.iter().position(|o| o == *w) > Some(last))
            .unwrap_or(0),
        None => 0,
    }
}

/// wis's message about `workload` in a run's output, if it printed one.
fn wis_message(output: &str, workload: &str) -> Option<String> {
    let prefix = format!("wis: {workload}:");
    output
        .lines()
        .find(|l| l.contains(&prefix))
        .map(|l| l.trim().to_string())
}

fn out_dir(opts: &SharingOptions, target_dir: &Path, stamp: &str) -> Result<PathBuf> {
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        return Ok(dir.clone());
    }
    let base = target_dir.join("comparison").join("sharing");
    let dir = base.join(stamp);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let link = base.join("latest");
    if std::fs::symlink_metadata(&link).is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(stamp, &link)
        .with_context(|| format!("linking {}", link.display()))?;
    Ok(dir)
}

/// Run `comparison sharing`.  An `Err` only before the first boot (build,
/// QEMU, options) or when the output cannot be written.
pub fn run_sharing(opts: &SharingOptions) -> Result<SharingOutcome> {
    opts.check()?;
    crate::suite::plot::font()?;
    qemu::ensure_available()?;
    let qemu_version = qemu::version()?;
    let root = crate::build::workspace_root();
    let target_dir = crate::build::target_dir(&root)?;
    eprintln!("sharing: building the plugin and the workloads ...");
    let plugin_path = plugin::build_plugin()?;
    let wis = build_wis()?;
    let available = list_workloads(&wis)?;
    let workloads = match &opts.workloads {
        None => default_workloads()
            .into_iter()
            .filter(|w| available.contains(w))
            .collect(),
        Some(list) if list.len() == 1 && list[0] == "all" => available.clone(),
        Some(list) => {
            for w in list {
                if !available.contains(w) {
                    bail!(
                        "unknown workload `{w}`; wis knows: {}",
                        available.join(", ")
                    );
                }
            }
            list.clone()
        }
    };
    let label_of = |w: &str| available.iter().position(|a| a == w).map(|i| i as u32);
    // Debian's busybox-static as /bin/sh for the workloads that start a
    // shell; when it cannot be had they are reported without a result.
    let mut failures: Vec<String> = Vec::new();
    let shell: Option<PathBuf> = if workloads.iter().any(|w| needs_shell(w)) {
        match crate::debian::busybox(&target_dir) {
            Ok(path) => Some(path),
            Err(e) => {
                failures.push(format!(
                    "no /bin/sh (busybox-static) for the shell workloads: {e:#}"
                ));
                None
            }
        }
    } else {
        None
    };
    let workloads: Vec<String> = workloads
        .into_iter()
        .filter(|w| shell.is_some() || !needs_shell(w))
        .collect();
    let shell_files: Vec<(PathBuf, String)> = shell
        .into_iter()
        .map(|p| (p, "/bin/sh".to_string()))
        .collect();

    let wants_ours = opts.systems.iter().any(|s| s.kernel() == System::Ours);
    let wants_linux = opts.systems.iter().any(|s| s.kernel() == System::Linux);
    let mut systems = Systems {
        artifacts: None,
        linux: None,
        linux_init: None,
        scratch: target_dir.join("comparison").join("media"),
        loader: crate::boot::LoaderChoice::Builtin,
    };
    let mut our_symbols = Symbols::default();
    let mut linux_symbols = Symbols::default();
    let mut servers_symbols = Symbols::default();
    if wants_ours {
        eprintln!("sharing: building our kernel and loader ...");
        let ours = Systems::prepare(System::Ours)?;
        if let Some(a) = &ours.artifacts {
            our_symbols = symbols::ours(&a.kernel).unwrap_or_else(|e| {
                eprintln!("sharing: our kernel's symbols: {e:#}; writer PCs stay hex");
                Symbols::default()
            });
        }
        if opts
            .systems
            .iter()
            .any(|s| s.structure() == crate::run::Structure::Servers)
        {
            // `structure=servers` boots the servers image: its own symbols.
            servers_symbols = crate::build::build_servers_kernel(true)
                .and_then(|p| symbols::ours(&p))
                .unwrap_or_else(|e| {
                    eprintln!("sharing: the servers image's symbols: {e:#}; writer PCs stay hex");
                    Symbols::default()
                });
        }
        systems.artifacts = ours.artifacts;
    }
    if wants_linux {
        eprintln!("sharing: preparing Linux (test programs, Debian's kernel, its symbols) ...");
        let linux = Systems::prepare(System::Linux)?;
        systems.linux = linux.linux;
        systems.linux_init = linux.linux_init;
        linux_symbols = match symbols::linux(&target_dir, &systems) {
            Ok((s, from)) => {
                eprintln!("sharing: Linux's symbols from {from}");
                s
            }
            Err(e) => {
                eprintln!("sharing: Linux's symbols: {e:#}; writer PCs stay hex");
                Symbols::default()
            }
        };
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (stamp, date) = utc_stamps(now);
    let out_dir = out_dir(opts, &target_dir, &stamp)?;
    let raw_dir = out_dir.join("raw");
    std::fs::create_dir_all(&raw_dir).with_context(|| format!("creating {}", raw_dir.display()))?;
    let info = SharingInfo {
        date,
        commit: git_commit(&root),
        qemu: qemu_version,
        linux: systems.linux.as_ref().map(|l| l.package.clone()),
        ops_per_worker: opts.ops,
        warmup_ms: opts.warmup_ms,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut cells: Vec<Cell> = Vec::new();
    report::write_outputs(&out_dir, &cells, &failures, &info)?;
    eprintln!(
        "sharing: {} systems x vCPUs {:?} x {} workloads, {} marked ops per worker; results in {}",
        opts.systems.len(),
        opts.cores,
        workloads.len(),
        opts.ops,
        out_dir.display()
    );

    let started = Instant::now();
    for &system in &opts.systems {
        let kernel = system.kernel();
        let names = match kernel {
            System::Ours if system.structure() == crate::run::Structure::Servers => {
                &servers_symbols
            }
            System::Ours => &our_symbols,
            System::Linux => &linux_symbols,
        };
        for &cores in &opts.cores {
            let mut remaining = workloads.clone();
            let mut boot = 0;
            while !remaining.is_empty() {
                boot += 1;
                let raw = raw_dir.join(format!("{}-{cores}-{boot}.jsonl", system.name()));
                let _ = std::fs::remove_file(&raw);
                let memory_mib = opts.memory_mib.unwrap_or_else(|| memory_for(cores));
                let direct = opts.direct.then(|| plugin::direct_map(kernel, memory_mib));
                let qemu_args = plugin::qemu_args(&plugin_path, &raw, direct, opts.top)?;
                let mut cmdline = system.extra_cmdline().to_string();
                if kernel == System::Linux {
                    // `no_timer_check` is in every Linux boot already
                    // (`linux::BASE_APPEND`).
                    cmdline = format!("{cmdline} {}", plugin::LINUX_NOKASLR);
                }
                let request = RunRequest {
                    system: kernel,
                    program: wis.clone(),
                    files: if remaining.iter().any(|w| needs_shell(w)) {
                        shell_files.clone()
                    } else {
                        vec![]
                    },
                    args: wis_args(&remaining, cores, opts.ops, opts.warmup_ms),
                    locks: system.locks(),
                    extra_cmdline: cmdline.trim().to_string(),
                    vm: VmConfig {
                        disks: Vec::new(),
                        cores,
                        memory_mib,
                        accel: Accel::Tcg,
                        timeout: opts.timeout,
                        echo: false,
                        nic: None,
                    },
                    echo: if opts.verbose {
                        Echo::Serial
                    } else {
                        Echo::Quiet
                    },
                };
                eprintln!(
                    "sharing: [{}] {} at {cores} vCPUs: {} ...",
                    crate::suite::runner::fmt_duration(started.elapsed()),
                    system.name(),
                    remaining.join(",")
                );
                let t0 = Instant::now();
                let result = crate::run::run_with_qemu_args(
                    &systems,
                    &request,
                    &RunExtras {
                        structure: system.structure(),
                        watchdog: opts.workload_timeout.map(|idle| qemu::Watchdog {
                            idle,
                            // wis's announcement, result and error lines.
                            progress: crate::suite::batch::is_progress,
                        }),
                        ..RunExtras::default()
                    },
                    &qemu_args,
                );
                let records = plugin::read_records(&raw).unwrap_or_else(|e| {
                    failures.push(format!(
                        "{} {cores} vCPUs: unreadable plugin records: {e:#}",
                        system.name()
                    ));
                    Vec::new()
                });
                let (verdict, output) = match &result {
                    Ok(r) => (Some(r.verdict.clone()), r.output.clone()),
                    Err(e) => {
                        failures.push(format!("{} {cores} vCPUs: {e:#}", system.name()));
                        (None, String::new())
                    }
                };
                let mut done = Vec::new();
                for w in &remaining {
                    let label = label_of(w);
                    // The last dump with this label (a retried workload
                    // may have dumped before its boot ended).
                    if let Some(r) = records
                        .iter()
                        .rev()
                        .find(|r| !r.at_exit && Some(r.label) == label)
                    {
                        cells.push(cell_of(system.name(), cores, w, r, names));
                        done.push(w.clone());
                    }
                }
                eprintln!(
                    "sharing:   {} of {} dumped in {:.0} s ({})",
                    done.len(),
                    remaining.len(),
                    t0.elapsed().as_secs_f64(),
                    match &verdict {
                        Some(v) => format!("{v:?}"),
                        None => "no run".into(),
                    }
                );
                let ended_early = !matches!(verdict, Some(Verdict::Exited(_)));
                // The per-workload watchdog, not the boot's timeout, ended
                // a boot that timed out before `timeout`: wis was running
                // and its current workload stalled (the first, when none
                // dumped), so the rest may go on without it.
                let watchdog_fired = matches!(verdict, Some(Verdict::TimedOut))
                    && opts.workload_timeout.is_some()
                    && t0.elapsed() + Duration::from_secs(5) < opts.timeout;
                let progressed = !done.is_empty() || watchdog_fired;
                let stuck_at = stuck_index(&remaining, &done);
                remaining.retain(|w| !done.contains(w));
                if ended_early && progressed && !remaining.is_empty() {
                    // Leave out the workload that was running when the boot
                    // ended: the first one without a dump after the last
                    // one with a dump (one before it failed in wis, which
                    // went on; it runs again in the next boot).
                    let stuck = remaining.remove(stuck_at);
                    failures.push(format!(
                        "{} {cores} vCPUs {stuck}: no dump; the boot ended with {:?}",
                        system.name(),
                        verdict
                    ));
                    continue;
                }
                for w in &remaining {
                    let why = wis_message(&output, w).unwrap_or_else(|| match &verdict {
                        Some(Verdict::Exited(s)) => format!("no dump (wis exited with {s})"),
                        Some(v) => format!("no dump; the boot ended with {v:?}"),
                        None => "no dump; QEMU did not run".into(),
                    });
                    failures.push(format!("{} {cores} vCPUs {w}: {why}", system.name()));
                }
                remaining.clear();
            }
            report::write_outputs(&out_dir, &cells, &failures, &info)?;
        }
    }
    let summary = report::summary_table(&cells);
    Ok(SharingOutcome {
        out_dir,
        cells,
        failures,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wis_is_asked_for_marked_operations() {
        let args = wis_args(&["getppid".into(), "page_fault".into()], 8, 20, 100);
        assert_eq!(
            args.join(" "),
            "getppid,page_fault --threads 8 --mark-ops 20 --warmup-ms 100 --ms 10"
        );
        let args = wis_args(&["getppid".into(), "exec_static".into()], 32, 20, 100);
        assert_eq!(
            args.join(" "),
            "getppid,exec_static --threads 32 --mark-ops 20 --warmup-ms 100 --ms 10 \
             --mark-ops-of exec_static=1"
        );
    }

    #[test]
    fn slow_workloads_mark_fewer_operations_at_many_vcpus() {
        assert_eq!(ops_for("exec_static", 2, 20), 20);
        assert_eq!(ops_for("exec_static", 8, 20), 5);
        assert_eq!(ops_for("spawn_shell", 32, 20), 1);
        assert_eq!(ops_for("exec_static", 1, 3), 3);
        assert_eq!(ops_for("getppid", 32, 20), 20);
        assert_eq!(memory_for(2), 512);
        assert_eq!(memory_for(32), 1024);
        assert_eq!(memory_for(64), 2048);
    }

    #[test]
    fn options_are_checked() {
        let mut o = SharingOptions {
            systems: vec![SuiteSystem::Ours],
            cores: vec![2],
            workloads: None,
            ops: 1,
            warmup_ms: 0,
            timeout: Duration::from_secs(1),
            workload_timeout: None,
            memory_mib: None,
            out: None,
            top: 8,
            direct: true,
            verbose: false,
        };
        assert!(o.check().is_ok());
        o.cores = vec![65];
        assert!(o.check().is_err());
        o.cores = vec![2];
        o.ops = 0;
        assert!(o.check().is_err());
        assert!(default_workloads().iter().any(|w| w == "spawn_shell"));
    }

    #[test]
    fn the_stuck_workload_is_the_one_after_the_last_dump() {
        let order: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let done = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        // b failed in wis (no dump), c dumped, d was running: d is index 1
        // among the undone [b, d, e].
        assert_eq!(stuck_index(&order, &done(&["a", "c"])), 1);
        assert_eq!(stuck_index(&order, &done(&["a", "b"])), 0);
        assert_eq!(stuck_index(&order, &done(&[])), 0);
        // Everything after the last dump failed: the first undone.
        assert_eq!(stuck_index(&order, &done(&["e"])), 0);
    }

    #[test]
    fn wis_messages_are_found() {
        let out = "x\nwis: tcp_rr: worker 1: connect: ECONNREFUSED\n";
        assert_eq!(
            wis_message(out, "tcp_rr").as_deref(),
            Some("wis: tcp_rr: worker 1: connect: ECONNREFUSED")
        );
        assert_eq!(wis_message(out, "udp_rr"), None);
    }
}
