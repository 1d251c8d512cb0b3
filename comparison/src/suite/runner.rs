//! Running the suite: build the kernel, `wis` and (for Linux) `linux-init`
//! and Debian's kernel; choose the accelerator; boot once per (run, system,
//! cores, mode) through `crate::run` with `wis` running the run's workloads
//! in turn (`batch.rs`: order, progress, one outcome per workload), turn
//! each result line into a `Record`; write every result file after every
//! boot; print progress with the time left, then the summary table and
//! where the report is.
//!
//! Several workloads per boot: a Linux boot under TCG takes ~5 s, more than
//! a measurement, so one boot per measurement spent most of the suite
//! booting.  Leftovers between workloads are kept small by wis (each
//! workload has a fresh scratch directory, removed after it, and releases
//! its sockets); the order is shuffled per run (recorded seed, same order
//! for every system of a run), so a workload's place in the boot does not
//! bias one system against another, and varies between runs.  Runs are the
//! outer loop, so an interrupted suite has whole rounds of every cell
//! rather than many runs of a few cells.  `--per-boot 1` gives the old one
//! boot per measurement.
//!
//! Invariants: every boot has a timeout and a progress watchdog (`--timeout`
//! per workload); the KVM probe is bounded (20 s per system); a failed or
//! timed-out workload becomes a line under "Runs without a result", never a
//! record, and the others of its boot still count; the workloads a boot did
//! not reach run in a fresh boot when the boot made progress (so at most
//! one boot per workload); files are replaced atomically (write, then
//! rename), so Ctrl-C never leaves a half-written `results.json`.

use super::batch::{self, BootEnd, Outcome};
use super::options::{default_workloads, AccelChoice, Mode, SuiteOptions, SuiteSystem};
use super::record::{self, Record};
use super::report::{self, ReportInfo};
use super::{interrupt, plot, stats};
use crate::boot::{self, BootRequest, LoaderChoice};
use crate::qemu::{self, Accel, Ending, VmConfig, Watchdog};
use crate::run::{
    self, Echo, LockMode, RunExtras, RunRequest, Structure, System, Systems, Verdict,
};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a KVM probe boot may take before we fall back to TCG.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Environment variable naming a prebuilt `wis` (skips the cargo build).
pub const WIS_ENV: &str = "COMPARISON_WIS";

/// What a finished (or partly failed) suite produced.
#[derive(Debug, Clone)]
pub struct SuiteOutcome {
    pub out_dir: PathBuf,
    pub records: Vec<Record>,
    pub failures: Vec<String>,
    /// The summary table that was printed.
    pub summary: String,
    /// Set when Ctrl-C stopped the suite early: what was left undone.
    pub interrupted: Option<String>,
}

/// Build `wis` (`crate::workloads`), or take the one `COMPARISON_WIS` names.
pub fn build_wis() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(WIS_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{WIS_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    crate::workloads::build_workloads()
}

/// `git rev-parse HEAD` of the workspace, or `unknown`.
pub fn git_commit(root: &Path) -> String {
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// (`20260126-134501`, `2026-01-26 13:45:01`) for a Unix time in seconds
/// (UTC; a time beyond jiff's range, year 9999, is clamped to its maximum).
pub fn utc_stamps(unix: u64) -> (String, String) {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    let t = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::MAX);
    (
        t.strftime("%Y%m%d-%H%M%S").to_string(),
        t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// `m:ss` or `h:mm:ss`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Write every output file for `records` into `dir`: results.json,
/// results.csv, report.md, then plots/*.svg and plots/*.png.  The plots
/// come last: without a font (`plot::font`) they are an error, and the
/// results and the report are already written then.
pub fn write_outputs(dir: &Path, records: &[Record], info: &ReportInfo) -> Result<()> {
    std::fs::create_dir_all(dir.join("plots"))
        .with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &dir.join("results.json"),
        record::to_json_text(records).as_bytes(),
    )?;
    write_atomic(&dir.join("results.csv"), record::to_csv(records).as_bytes())?;
    if let Some(section) = &info.robustness {
        write_atomic(&dir.join("robustness.json"), section.json().as_bytes())?;
    }
    write_atomic(
        &dir.join("report.md"),
        report::report_markdown(records, info).as_bytes(),
    )?;
    let groups = stats::aggregate(records);
    for (key, group) in &groups {
        let svg = dir.join("plots").join(plot::group_file_name(key));
        write_atomic(&svg, plot::group_svg(key, group)?.as_bytes())?;
        write_atomic(&svg.with_extension("png"), &plot::group_png(key, group)?)?;
    }
    let accels: std::collections::BTreeSet<&str> =
        groups.keys().map(|k| k.accel.as_str()).collect();
    for accel in accels {
        let svg = dir.join("plots").join(plot::summary_file_name(accel));
        write_atomic(&svg, plot::summary_svg(accel, &groups)?.as_bytes())?;
        write_atomic(
            &svg.with_extension("png"),
            &plot::summary_png(accel, &groups)?,
        )?;
    }
    Ok(())
}

/// The default output directory, with `latest` pointing at it.
fn default_out_dir(target_dir: &Path, stamp: &str) -> Result<PathBuf> {
    let base = target_dir.join("comparison");
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

fn vm(cores: usize, accel: Accel, opts: &SuiteOptions, timeout: Duration) -> VmConfig {
    VmConfig {
        cores,
        memory_mib: opts.memory_mib,
        accel,
        timeout,
        echo: false,
        nic: None,
        disks: opts.disks.clone(),
    }
}

/// Choose the accelerator.  `auto`: one bounded KVM boot per kind of system
/// selected (ours: self-check; Linux: `wis --list`); any failure means TCG.
fn resolve_accel(opts: &SuiteOptions, systems: &Systems, wis: &Path) -> Result<Accel> {
    match opts.accel {
        AccelChoice::Tcg => return Ok(Accel::Tcg),
        AccelChoice::Kvm => return Ok(Accel::Kvm),
        AccelChoice::Auto => {}
    }
    if !Path::new("/dev/kvm").exists() {
        eprintln!("suite: accel auto: /dev/kvm is absent, using TCG");
        return Ok(Accel::Tcg);
    }
    let start = Instant::now();
    if let Some(artifacts) = &systems.artifacts {
        eprintln!(
            "suite: accel auto: probing KVM with our kernel (at most {} s) ...",
            KVM_PROBE_TIMEOUT.as_secs()
        );
        let req = BootRequest {
            loader: systems.loader.clone(),
            cmdline: "run=selfcheck".into(),
            modules: Vec::new(),
            vm: vm(1, Accel::Kvm, opts, KVM_PROBE_TIMEOUT),
        };
        let ok = boot::boot(artifacts, &req)
            .map(|o| o.ending == Ending::GuestExit(0) && o.has_line("selfcheck: pass"));
        if !matches!(ok, Ok(true)) {
            eprintln!(
                "suite: accel auto: KVM probe with our kernel failed ({:.1} s), using TCG",
                start.elapsed().as_secs_f64()
            );
            return Ok(Accel::Tcg);
        }
    }
    if systems.linux.is_some() {
        eprintln!(
            "suite: accel auto: probing KVM with Linux (at most {} s) ...",
            KVM_PROBE_TIMEOUT.as_secs()
        );
        let req = RunRequest {
            system: System::Linux,
            program: wis.to_path_buf(),
            files: vec![],
            args: vec!["--list".into()],
            locks: LockMode::PerCpu,
            extra_cmdline: String::new(),
            vm: vm(1, Accel::Kvm, opts, KVM_PROBE_TIMEOUT),
            echo: Echo::Quiet,
        };
        if !matches!(
            run::run(systems, &req).map(|r| r.verdict),
            Ok(Verdict::Exited(0))
        ) {
            eprintln!(
                "suite: accel auto: KVM probe with Linux failed ({:.1} s), using TCG",
                start.elapsed().as_secs_f64()
            );
            return Ok(Accel::Tcg);
        }
    }
    eprintln!(
        "suite: accel auto: KVM works ({:.1} s), using KVM",
        start.elapsed().as_secs_f64()
    );
    Ok(Accel::Kvm)
}

/// Whether workload `name` starts `/bin/sh`.
pub fn needs_shell(name: &str) -> bool {
    name == "spawn_shell"
}

/// Extra initramfs files of one run of `workload`: busybox-static as
/// `/bin/sh` for the shell workloads (`shell`: where it is, or why it
/// cannot be had).
fn run_files(
    workload: &str,
    shell: Option<&Result<PathBuf, String>>,
) -> Result<Vec<(PathBuf, String)>> {
    if !needs_shell(workload) {
        return Ok(vec![]);
    }
    match shell {
        Some(Ok(path)) => Ok(vec![(path.clone(), "/bin/sh".to_string())]),
        Some(Err(why)) => bail!("no /bin/sh for {workload}: {why}"),
        None => bail!("no /bin/sh for {workload}"),
    }
}

/// What `wis` gets besides `wis_args` when the suite has `--disk`: mount
/// the first disk (ext2) and put the file workloads' directory on it.
pub const DISK_WIS_ARGS: &[&str] = &["--mount", "/dev/vda:/mnt/disk", "--dir", "/mnt/disk/wis"];

/// The `wis` arguments of one measurement.
pub fn wis_args(
    workload: &str,
    threads: usize,
    mode: Mode,
    warmup_ms: Option<u64>,
    ms: u64,
) -> Vec<String> {
    let mut args = vec![
        workload.to_string(),
        "--threads".into(),
        threads.to_string(),
    ];
    if mode == Mode::Procs {
        args.push("--procs".into());
    }
    if let Some(w) = warmup_ms {
        args.extend(["--warmup-ms".into(), w.to_string()]);
    }
    args.extend(["--ms".into(), ms.to_string()]);
    args
}

/// The system's kernel command line without the program's arguments (they
/// are in the record's own fields), plus Linux's package name.
fn kernel_options(req: &RunRequest, structure: Structure, linux_package: &str) -> String {
    match req.system {
        System::Ours => {
            let bare = RunRequest {
                args: Vec::new(),
                ..req.clone()
            };
            run::our_cmdline_for(&bare, structure)
                .trim_end_matches(" --")
                .to_string()
        }
        System::Linux => format!("{} ({linux_package})", run::linux_append(req)),
    }
}

/// `wis`'s own warm-up when `--warmup-ms` is not given.
const WIS_DEFAULT_WARMUP_MS: u64 = 200;

/// A first guess of one measurement's duration before any of `system` is
/// measured: its share of the boot and shutdown (measured on an idle 2-core
/// host under TCG: ~0.6 s for ours, ~5 s for Linux; the accelerator is not
/// used, since KVM boots are not faster on nested KVM) when `per_boot`
/// workloads share a boot, plus the warm-up and interval (`interval_ms`)
/// and the workload's set-up.
pub fn prior_run_seconds(
    system: SuiteSystem,
    _accel: Accel,
    interval_ms: u64,
    per_boot: usize,
) -> f64 {
    let boot = match system.kernel() {
        System::Ours => 0.6,
        System::Linux => 5.0,
    };
    boot / per_boot.max(1) as f64 + interval_ms as f64 / 1000.0 + 0.2
}

/// How a boot ended, for `batch::settle`.
pub fn boot_end(verdict: &Verdict, per_workload: Duration) -> BootEnd {
    match verdict {
        Verdict::Exited(s) => BootEnd::Exited(*s),
        Verdict::TimedOut => BootEnd::Ended(format!(
            "timed out (no progress for {} s, or the boot's whole time)",
            per_workload.as_secs()
        )),
        Verdict::KernelPanic(m) | Verdict::SystemError(m) => {
            BootEnd::Ended(format!("system failed: {m}"))
        }
    }
}

/// Time left: for each remaining run, the mean duration of the finished
/// runs of the same system (systems differ: Linux boots take seconds longer
/// than ours), or `prior(system)` while none of that system has finished.
/// `None` only when there is neither a finished run nor a remaining one.
pub fn eta_by_system(
    durations: &[(SuiteSystem, Duration)],
    remaining: &[SuiteSystem],
    prior: impl Fn(SuiteSystem) -> f64,
) -> Option<Duration> {
    if durations.is_empty() && remaining.is_empty() {
        return None;
    }
    let mean = |of: SuiteSystem| -> f64 {
        let v: Vec<f64> = durations
            .iter()
            .filter(|(s, _)| *s == of)
            .map(|(_, d)| d.as_secs_f64())
            .collect();
        if v.is_empty() {
            prior(of)
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let secs: f64 = remaining.iter().map(|s| mean(*s)).sum();
    Some(Duration::from_secs_f64(secs))
}

/// Run the whole suite.  Returns what was measured; an `Err` only for
/// problems before the first boot (bad import, build failure, no QEMU) or
/// when the output cannot be written.
pub fn run_suite(opts: &SuiteOptions) -> Result<SuiteOutcome> {
    opts.check()?;
    // The plots need a font; say so before anything is built or booted.
    plot::font()?;
    let mut imported = Vec::new();
    for path in &opts.imports {
        imported.extend(record::import(path)?);
    }
    qemu::ensure_available()?;
    let qemu_version = qemu::version()?;
    let root = crate::build::workspace_root();
    let target_dir = crate::build::target_dir(&root)?;
    let commit = git_commit(&root);

    eprintln!("suite: building the workloads (wis) ...");
    let wis = build_wis()?;
    let available = crate::workloads::list_workloads(&wis)?;
    let workloads = match &opts.workloads {
        None => default_workloads(&opts.systems)
            .iter()
            .filter(|w| available.iter().any(|a| a == *w))
            .map(|w| w.to_string())
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

    let wants_ours = opts.systems.iter().any(|s| s.kernel() == System::Ours);
    let wants_linux = opts.systems.iter().any(|s| s.kernel() == System::Linux);
    let mut systems = Systems {
        artifacts: None,
        linux: None,
        linux_init: None,
        scratch: target_dir.join("comparison").join("media"),
        loader: LoaderChoice::Builtin,
    };
    if wants_ours {
        eprintln!("suite: building our kernel and loader ...");
        let ours = Systems::prepare_with_loader(System::Ours, opts.loader.clone())?;
        eprintln!("suite: our kernel boots with {}", ours.loader.describe());
        systems.artifacts = ours.artifacts;
        systems.loader = ours.loader;
        if opts
            .systems
            .iter()
            .any(|s| s.structure() == crate::run::Structure::Servers)
        {
            // Built now rather than at the first servers boot, so the
            // measurements' progress and time estimates hold.
            eprintln!("suite: building the servers kernel image ...");
            crate::build::build_servers_kernel(true)?;
        }
    }
    if wants_linux {
        eprintln!("suite: preparing Linux (test programs, Debian's kernel) ...");
        let linux = Systems::prepare(System::Linux)?;
        systems.linux = linux.linux;
        systems.linux_init = linux.linux_init;
    }
    let accel = resolve_accel(opts, &systems, &wis)?;
    let cpu_model = match accel {
        Accel::Tcg => "max",
        Accel::Kvm => "host",
    };

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (stamp, date) = utc_stamps(now);
    let out_dir = match &opts.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => default_out_dir(&target_dir, &stamp)?,
    };
    let mut info = ReportInfo {
        date,
        failures: Vec::new(),
        imports: opts
            .imports
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        interrupted: None,
        schedule: None,
        boots: 0,
        disks: opts
            .disks
            .iter()
            .map(|d| {
                format!(
                    "{}{}",
                    d.path.display(),
                    if d.read_only { ":ro" } else { "" }
                )
            })
            .collect(),
        not_applicable: Vec::new(),
        robustness: None,
    };
    let mut records = imported;
    write_outputs(&out_dir, &records, &info)?;

    let total = opts.total_runs(workloads.len());
    let seed = opts
        .seed
        .unwrap_or(now ^ u64::from(std::process::id()).rotate_left(32));
    let per_boot = if opts.per_boot == 0 {
        workloads.len()
    } else {
        opts.per_boot.min(workloads.len())
    };
    let planned_boots = opts.total_boots(workloads.len());
    eprintln!(
        "suite: {total} measurements ({} systems x cores {:?} x {} workloads x {} modes x {} runs) in {planned_boots} boots of up to {per_boot} workloads (order shuffled per run, --seed {seed}), accel {}, {} ms each; results in {}",
        opts.systems.len(),
        opts.cores,
        workloads.len(),
        opts.modes.len(),
        opts.runs,
        accel.name(),
        opts.ms,
        out_dir.display()
    );
    let linux_package = systems
        .linux
        .as_ref()
        .map(|l| l.package.clone())
        .unwrap_or_default();
    // The order of the loops below, flattened: which system each measurement uses.
    let mut schedule: Vec<SuiteSystem> = Vec::with_capacity(total);
    for _ in 0..opts.runs {
        for &system in &opts.systems {
            schedule.extend(std::iter::repeat_n(
                system,
                opts.cores.len() * workloads.len() * opts.modes.len(),
            ));
        }
    }
    // Debian's busybox-static as /bin/sh, for the workloads that start it.
    let shell: Option<Result<PathBuf, String>> = workloads
        .iter()
        .any(|w| needs_shell(w))
        .then(|| crate::debian::busybox(&target_dir).map_err(|e| format!("{e:#}")));
    let interval = opts.ms + opts.warmup_ms.unwrap_or(WIS_DEFAULT_WARMUP_MS);
    let prior = |s: SuiteSystem| prior_run_seconds(s, accel, interval, per_boot);
    if let Some(all) = eta_by_system(&[], &schedule, prior) {
        eprintln!("suite: expected to take about {}", fmt_duration(all));
    }
    let sharing = if per_boot == 1 {
        "one boot per measurement".to_string()
    } else {
        format!(
            "each boot runs up to {per_boot} workloads in turn, each in a fresh scratch directory"
        )
    };
    info.schedule = Some(format!(
        "{planned_boots} boots planned for {total} measurements: {sharing}; the order is \
         shuffled per run (the same for every system and core count of a run) with seed {seed} \
         (`--seed {seed}` repeats it)"
    ));
    interrupt::install()?;
    let mut durations: Vec<(SuiteSystem, Duration)> = Vec::with_capacity(total);
    let mut done = 0usize;
    let mut boots = 0usize;
    let echo = if opts.verbose {
        Echo::Serial
    } else {
        Echo::Quiet
    };
    'measuring: for run_index in 0..opts.runs {
        let order = batch::order_for_run(&workloads, seed, run_index);
        for &system in &opts.systems {
            for &cores in &opts.cores {
                for &mode in &opts.modes {
                    for planned in batch::boots_of(&order, per_boot) {
                        let what = |w: &str| {
                            format!(
                                "{} {w} {cores} cores {} run {}",
                                system.name(),
                                mode.name(),
                                run_index + 1
                            )
                        };
                        // A workload that cannot have its /bin/sh fails alone, unbooted.
                        let mut pending = Vec::new();
                        for w in planned {
                            match run_files(&w, shell.as_ref()) {
                                Ok(_) => pending.push(w),
                                Err(e) => {
                                    done += 1;
                                    eprintln!("[{done}/{total}] {}: FAILED: {e:#}", what(&w));
                                    info.failures.push(format!("{}: {e:#}", what(&w)));
                                }
                            }
                        }
                        while !pending.is_empty() {
                            if interrupt::interrupted() {
                                break 'measuring;
                            }
                            let mut args =
                                wis_args(&pending.join(","), cores, mode, opts.warmup_ms, opts.ms);
                            args.push("--announce".into());
                            if !opts.disks.is_empty() {
                                // The file workloads run on the first disk (ext2).
                                args.extend(DISK_WIS_ARGS.iter().map(|a| a.to_string()));
                            }
                            let files = match pending.iter().find(|w| needs_shell(w)) {
                                Some(w) => run_files(w, shell.as_ref()).unwrap_or_default(),
                                None => Vec::new(),
                            };
                            // The watchdog gives each workload `timeout`; the
                            // whole boot is bounded by one more for the boot.
                            let boot_timeout = opts.timeout * (pending.len() as u32 + 1);
                            let req = RunRequest {
                                system: system.kernel(),
                                program: wis.clone(),
                                files,
                                args,
                                locks: system.locks(),
                                extra_cmdline: system.extra_cmdline().to_string(),
                                vm: vm(cores, accel, opts, boot_timeout),
                                echo,
                            };
                            let extras = RunExtras {
                                watchdog: Some(Watchdog {
                                    idle: opts.timeout,
                                    progress: batch::is_progress,
                                }),
                                // ours-servers: `structure=servers` and fsd in the initramfs.
                                structure: system.structure(),
                                ..RunExtras::default()
                            };
                            let kernel_options =
                                kernel_options(&req, extras.structure, &linux_package);
                            boots += 1;
                            let t0 = Instant::now();
                            let (output, end, vulnerabilities) =
                                match run::run_with(&systems, &req, &extras) {
                                    Ok(res) => (
                                        res.output,
                                        boot_end(&res.verdict, opts.timeout),
                                        crate::linux::vulnerabilities(&res.outcome.serial)
                                            .join(" | "),
                                    ),
                                    Err(e) => (
                                        String::new(),
                                        BootEnd::Ended(format!("could not boot: {e:#}")),
                                        String::new(),
                                    ),
                                };
                            let elapsed = t0.elapsed();
                            let settled = batch::settle(&pending, &output, &end, mode, cores);
                            // QEMU killed by the Ctrl-C handler: what finished
                            // counts, the rest is not a failure.
                            let stopped = interrupt::interrupted();
                            let share = elapsed / settled.outcomes.len().max(1) as u32;
                            for (w, position, outcome) in settled.outcomes {
                                let outcome =
                                    batch::classify(outcome, |m| system.unsupported_reason(m));
                                if stopped && matches!(outcome, Outcome::Failed(_)) {
                                    continue;
                                }
                                done += 1;
                                durations.push((system, share));
                                let left =
                                    eta_by_system(&durations, &schedule[done.min(total)..], prior)
                                        .map(fmt_duration)
                                        .unwrap_or_default();
                                match outcome {
                                    Outcome::Measured(line) => {
                                        eprintln!(
                                            "[{done}/{total}] {}: {} {}/s; about {left} left",
                                            what(&w),
                                            report::fmt_rate(line.ops_per_sec),
                                            line.unit,
                                        );
                                        records.push(Record {
                                            system: system.name().to_string(),
                                            workload: line.workload,
                                            mode: line.mode,
                                            cores: cores as u32,
                                            workers: line.workers,
                                            run: run_index,
                                            ops: line.ops,
                                            seconds: line.seconds,
                                            ops_per_sec: line.ops_per_sec,
                                            unit: line.unit,
                                            accel: accel.name().to_string(),
                                            qemu_version: qemu_version.clone(),
                                            cpu_model: cpu_model.to_string(),
                                            commit: commit.clone(),
                                            kernel_options: kernel_options.clone(),
                                            vulnerabilities: vulnerabilities.clone(),
                                            position: Some(position as u32),
                                        });
                                    }
                                    Outcome::Failed(why) => {
                                        eprintln!(
                                            "[{done}/{total}] {}: FAILED: {why}; about {left} left",
                                            what(&w)
                                        );
                                        info.failures.push(format!("{}: {why}", what(&w)));
                                    }
                                    Outcome::NotApplicable(why) => {
                                        eprintln!(
                                            "[{done}/{total}] {}: n/a: {why}; about {left} left",
                                            what(&w)
                                        );
                                        info.not_applicable.push(report::NotApplicable {
                                            accel: accel.name().to_string(),
                                            system: system.name().to_string(),
                                            workload: w.clone(),
                                            mode: mode.name().to_string(),
                                            why,
                                        });
                                    }
                                }
                            }
                            eprintln!(
                                "suite: boot {boots} ({} {cores} cores {} run {}): {} workloads in {:.1} s",
                                system.name(),
                                mode.name(),
                                run_index + 1,
                                pending.len() - settled.retry.len(),
                                elapsed.as_secs_f64()
                            );
                            info.boots = boots;
                            write_outputs(&out_dir, &records, &info)?;
                            if stopped {
                                eprintln!("suite: interrupted during boot {boots}");
                                break 'measuring;
                            }
                            if !settled.retry.is_empty() {
                                eprintln!(
                                    "suite: the boot ended early; {} workloads it did not reach go to a fresh boot",
                                    settled.retry.len()
                                );
                            }
                            pending = settled.retry;
                        }
                    }
                }
            }
        }
    }
    info.boots = boots;
    eprintln!("suite: {done} of {total} measurements in {boots} boots");
    if opts.measures_robustness() && !interrupt::interrupted() {
        // On the largest core count asked for: a workload on every core.
        let cores = opts.cores.iter().copied().max().unwrap_or(1);
        eprintln!(
            "suite: robustness of ours-servers: {} x fs replacement, fs crash, net replacement, net crash, NIC driver restart ({cores} cores, {} boots)",
            opts.robustness_reps,
            4 + opts.robustness_reps
        );
        let section = crate::userland::build().map(|userland| {
            crate::robustness::measure_section(
                &systems,
                &userland,
                cores,
                opts.robustness_reps,
                accel,
                opts.timeout.max(Duration::from_secs(300)),
            )
        });
        let section = match section {
            Ok(s) => s,
            Err(e) => crate::robustness::Section {
                system: "ours-servers".into(),
                failures: vec![format!("building the test programs: {e:#}")],
                ..Default::default()
            },
        };
        for f in &section.failures {
            info.failures.push(format!("robustness: {f}"));
        }
        if let Some(r) = section.rows.iter().find(|r| r.failed_ops.unwrap_or(0) > 0) {
            info.failures.push(format!(
                "robustness: {} {}: {} failed operations",
                r.server,
                r.event.name(),
                r.failed_ops.unwrap_or(0)
            ));
        }
        boots += 3;
        info.boots = boots;
        info.robustness = Some(section);
        write_outputs(&out_dir, &records, &info)?;
    }
    if interrupt::interrupted() {
        info.interrupted = Some(format!(
            "stopped by Ctrl-C after {done} of {total} measurements ({boots} boots)"
        ));
        write_outputs(&out_dir, &records, &info)?;
    }
    let groups = stats::aggregate(&records);
    let na = report::Na(&info.not_applicable);
    let mut summary = report::summary_table(&groups, na);
    let robustness = info
        .robustness
        .as_ref()
        .map(|s| s.markdown())
        .unwrap_or_default();
    for (title, table) in [
        ("per structure", report::structure_table(&groups, na)),
        ("robustness", robustness),
        (
            "null IPC round trip vs getppid",
            report::ipc_table(&groups, na),
        ),
    ] {
        if !table.is_empty() {
            summary.push_str(&format!("{title}:\n\n{table}"));
        }
    }
    Ok(SuiteOutcome {
        out_dir,
        records,
        failures: info.failures,
        summary,
        interrupted: info.interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(
            utc_stamps(0),
            ("19700101-000000".into(), "1970-01-01 00:00:00".into())
        );
        // 2000-02-29 12:34:56 UTC (a leap day in a year divisible by 400).
        assert_eq!(utc_stamps(951_827_696).1, "2000-02-29 12:34:56");
        // 2026-11-26 13:50:00 UTC.
        assert_eq!(utc_stamps(1_795_701_000).0, "20261126-135000");
    }

    #[test]
    fn time_left_and_durations() {
        use SuiteSystem::*;
        let secs = Duration::from_secs;
        let prior = |s: SuiteSystem| if s == Linux { 5.0 } else { 1.0 };
        assert_eq!(eta_by_system(&[], &[], prior), None);
        // Nothing measured yet: the priors.
        let first = eta_by_system(&[], &[Ours, Linux, Linux], prior).unwrap();
        assert!((first.as_secs_f64() - 11.0).abs() < 1e-6, "{first:?}");
        let done = [(Ours, secs(1)), (Ours, secs(3)), (Linux, secs(6))];
        // 2 ours at 2 s, 1 linux at 6 s, 1 ours-global at its prior 1 s.
        let left = eta_by_system(&done, &[Ours, Ours, Linux, OursGlobal], prior).unwrap();
        assert!(
            (left.as_secs_f64() - (4.0 + 6.0 + 1.0)).abs() < 1e-6,
            "{left:?}"
        );
        assert_eq!(eta_by_system(&done, &[], prior), Some(Duration::ZERO));
        let tcg = prior_run_seconds(Linux, Accel::Tcg, 400, 1);
        assert!(tcg > prior_run_seconds(Ours, Accel::Tcg, 400, 1) && tcg > 0.4);
        // Sixteen workloads share one boot: a sixteenth of it each.
        let shared = prior_run_seconds(Linux, Accel::Tcg, 400, 16);
        assert!((tcg - shared - 5.0 * 15.0 / 16.0).abs() < 1e-9, "{shared}");
        assert_eq!(fmt_duration(Duration::from_secs(75)), "1:15");
        assert_eq!(fmt_duration(Duration::from_secs(3725)), "1:02:05");
    }

    #[test]
    fn wis_arguments() {
        assert_eq!(
            wis_args("getppid", 2, Mode::Threads, None, 200),
            vec!["getppid", "--threads", "2", "--ms", "200"]
        );
        assert_eq!(
            wis_args("stat", 1, Mode::Procs, Some(50), 300),
            vec![
                "stat",
                "--threads",
                "1",
                "--procs",
                "--warmup-ms",
                "50",
                "--ms",
                "300"
            ]
        );
        let mut req = RunRequest {
            system: System::Ours,
            program: "wis".into(),
            files: vec![],
            args: wis_args("stat", 2, Mode::Threads, None, 100),
            locks: LockMode::Global,
            extra_cmdline: String::new(),
            vm: VmConfig::default(),
            echo: Echo::Quiet,
        };
        let mono = Structure::Monolithic;
        assert_eq!(
            kernel_options(&req, mono, ""),
            "run=init init=/init locks=global"
        );
        // ours-servers: its record says structure=servers.
        let servers = SuiteSystem::OursServers;
        req.locks = servers.locks();
        assert_eq!(
            kernel_options(&req, servers.structure(), ""),
            "run=init init=/init structure=servers"
        );
        req.locks = LockMode::Global;
        req.system = System::Linux;
        let linux = kernel_options(&req, mono, "linux-image-x");
        assert!(
            linux.ends_with("rdinit=/linux-init (linux-image-x)") && !linux.contains("stat"),
            "{linux}"
        );
        req.extra_cmdline = SuiteSystem::LinuxNoMitig.extra_cmdline().to_string();
        assert_eq!(SuiteSystem::LinuxNoMitig.kernel(), System::Linux);
        let nomitig = kernel_options(&req, mono, "linux-image-x");
        assert!(
            nomitig.ends_with("rdinit=/linux-init mitigations=off (linux-image-x)"),
            "{nomitig}"
        );
    }

    #[test]
    fn outputs_are_written_for_synthetic_records() {
        let dir = std::env::temp_dir().join(format!("suite-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let recs = vec![
            sample("ours", "getppid", 1, 0, 100.0),
            sample("ours", "getppid", 2, 0, 190.0),
            sample("linux", "getppid", 1, 0, 90.0),
            sample("linux", "getppid", 2, 0, 170.0),
            // The default suite's four systems share the plots.
            sample("ours-global", "getppid", 1, 0, 95.0),
            sample("ours-global", "getppid", 2, 0, 100.0),
            sample("ours-servers", "getppid", 1, 0, 98.0),
            sample("ours-servers", "getppid", 2, 0, 185.0),
        ];
        write_outputs(&dir, &recs, &ReportInfo::default()).unwrap();
        let back =
            record::parse_records(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(back, recs);
        assert_eq!(
            std::fs::read_to_string(dir.join("results.csv"))
                .unwrap()
                .lines()
                .count(),
            9
        );
        assert!(std::fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .contains("### getppid"));
        assert!(
            std::fs::read_to_string(dir.join("plots/tcg-getppid-threads.svg"))
                .unwrap()
                .contains("</svg>")
        );
        assert!(std::fs::read_to_string(dir.join("plots/tcg-summary.svg"))
            .unwrap()
            .contains("</svg>"));
        for png in ["plots/tcg-getppid-threads.png", "plots/tcg-summary.png"] {
            let bytes = std::fs::read(dir.join(png)).unwrap();
            let info = png::Decoder::new(&bytes[..]).read_info().unwrap();
            assert_eq!((info.info().width, info.info().height), plot::SIZE, "{png}");
        }
        assert!(!dir.join("results.tmp").exists());
        assert!(!dir.join("robustness.json").exists());
        // With the robustness section: robustness.json and the report's section.
        let info = ReportInfo {
            robustness: Some(crate::robustness::Section {
                system: "ours-servers".into(),
                accel: "tcg".into(),
                cores: 2,
                repetitions: 3,
                rows: vec![],
                failures: vec!["fs crash: no result".into()],
            }),
            ..ReportInfo::default()
        };
        write_outputs(&dir, &recs, &info).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("robustness.json")).unwrap())
                .unwrap();
        assert_eq!(json["failures"][0], "fs crash: no result");
        assert!(std::fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .contains("## Robustness (ours-servers)"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
