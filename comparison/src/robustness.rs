//! Robustness of `ours-servers`: replacing the file server under load
//! (`comparison robustness`, `comparison run --replace fs@SECONDS`).
//!
//! Owns: the `--replace` spec check, the summary of the kernel's
//! replacement log lines, and the robustness table: `replace_check` (a
//! file workload on every core, every operation checked, the file server
//! replaced `rounds` times in each run) booted `runs` times; per
//! replacement the pause (the longest file operation that overlapped the
//! replacement), the switch time (the kernel's: hand-over request until
//! the successor serves), the image size, and the failed or wrong
//! operations; medians with min–max over all replacements.
//!
//! The suite's robustness section ([`Section`]): per server and event
//! (replacement, crash and restart, driver restart) the medians with
//! min–max of the pause, the switch time, the restart gap or the
//! recovery time, and the failed operations, measured by
//! [`measure_section`] (`replace_check`, `crash_check`,
//! `net_replace_check replace|crash`, `nic_restart` with a host client)
//! and rendered as markdown and JSON.  A row is keyed by (server,
//! event); the file- and network-server rows share one parser
//! ([`parse_as`], `crash_lines`) and one row builder each
//! ([`replacement_row`], [`crash_row`]).
//!
//! Must not: report a median of nothing (a run without results is an
//! error), or hide failed operations (they are a column and fail the
//! command).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::qemu::{Accel, VmConfig};
use crate::run::{self, Echo, LockMode, RunExtras, RunRequest, Structure, System, Systems};

/// `fs@SECONDS` or `net@SECONDS` (SECONDS a decimal number); other
/// servers are refused.
pub fn check_replace_spec(spec: &str) -> Result<()> {
    let Some((server, secs)) = spec.split_once('@') else {
        bail!("--replace {spec}: expected fs@SECONDS or net@SECONDS");
    };
    if server != "fs" && server != "net" {
        bail!("--replace {spec}: only the file server (fs) and the network server (net) can be replaced");
    }
    match secs.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 && !secs.contains(['e', 'E', '+', '-']) => Ok(()),
        _ => bail!("--replace {spec}: SECONDS must be a number such as 1 or 0.5"),
    }
}

/// The kernel's replacement lines of a serial log (or a note that none
/// happened).
pub fn replace_summary(serial: &str) -> String {
    let lines: Vec<&str> = serial
        .lines()
        .filter(|l| {
            l.contains("servers: replaced the file server")
                || l.contains("servers: replacing the file server failed")
                || l.contains("servers: injecting a crash")
                || l.contains("servers: file server pid")
                || l.contains("servers: file server restarted")
                || l.contains("servers: restarting the file server failed")
                || l.contains("servers: replaced the network server")
                || l.contains("servers: replacing the network server failed")
                || l.contains("servers: network server pid")
                || l.contains("servers: network server restarted")
                || l.contains("servers: restarting the network server failed")
        })
        .map(str::trim)
        .collect();
    if lines.is_empty() {
        "run: no replacement or crash happened (the program ended first?)".to_string()
    } else {
        lines.join("\n")
    }
}

/// One replacement as `replace_check` printed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replacement {
    pub switch_us: u64,
    pub pause_us: u64,
    pub image_bytes: u64,
    pub export_us: u64,
    pub import_us: u64,
    pub precopy_us: u64,
    pub precopy_bytes: u64,
}

/// One run's result.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub replacements: Vec<Replacement>,
    pub ops: u64,
    pub failed: u64,
    pub wrong: u64,
    pub median_us: u64,
    /// The longest operation that overlapped no replacement call.
    pub max_outside_us: u64,
    pub passed: bool,
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A replacement checker: `replace_check` (the file server) or
/// `net_replace_check replace` (the network server).  Both print one
/// line per replacement, a totals line (`ops= failed= wrong= median_us=
/// max_us_outside=`) and `pass`; they differ in the line prefix and in
/// the round line's fields beyond `switch_us` and `pause_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    Fs,
    Net,
}

impl Checker {
    fn prefix(self) -> &'static str {
        match self {
            Checker::Fs => "replace_check: ",
            Checker::Net => "net_replace_check: ",
        }
    }

    /// One round line (after the prefix).  netd's hand-over has no
    /// pre-copy: its quiesce is the export, its successor's adoption of
    /// the shared arena the rebuild, and the arena the state image.
    fn round(self, rest: &str) -> Result<Replacement> {
        let num = |key: &str| field(rest, key).with_context(|| key.to_string());
        Ok(match self {
            Checker::Fs => Replacement {
                switch_us: num("switch_us")?,
                pause_us: num("pause_us")?,
                image_bytes: num("image_bytes")?,
                export_us: num("export_us")?,
                import_us: num("import_us")?,
                precopy_us: num("precopy_us")?,
                precopy_bytes: num("precopy_bytes")?,
            },
            Checker::Net => Replacement {
                switch_us: num("switch_us")?,
                pause_us: num("pause_us")?,
                image_bytes: num("arena_kib")? * 1024,
                export_us: num("quiesce_us")?,
                import_us: num("adopt_us")?,
                precopy_us: 0,
                precopy_bytes: 0,
            },
        })
    }
}

/// Parses `replace_check`'s output.
pub fn parse(output: &str) -> Result<RunStats> {
    parse_as(Checker::Fs, output)
}

/// Parses the output of `checker`.
pub fn parse_as(checker: Checker, output: &str) -> Result<RunStats> {
    let prefix = checker.prefix();
    let mut replacements = Vec::new();
    let mut totals = None;
    for l in output.lines() {
        let Some(rest) = l.strip_prefix(prefix) else {
            continue;
        };
        if rest.starts_with("round ") {
            replacements.push(checker.round(rest)?);
        } else if rest.starts_with("ops=") {
            totals = Some((
                field(rest, "ops").context("ops")?,
                field(rest, "failed").context("failed")?,
                field(rest, "wrong").context("wrong")?,
                field(rest, "median_us").context("median_us")?,
                field(rest, "max_us_outside").context("max_us_outside")?,
            ));
        }
    }
    let (ops, failed, wrong, median_us, max_outside_us) = totals
        .with_context(|| format!("{} printed no totals line", prefix.trim_end_matches(": ")))?;
    Ok(RunStats {
        replacements,
        ops,
        failed,
        wrong,
        median_us,
        max_outside_us,
        passed: output
            .lines()
            .any(|l| l.strip_prefix(prefix) == Some("pass")),
    })
}

/// Median, min and max.
fn spread(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    match (v.first(), v.last()) {
        (Some(&lo), Some(&hi)) => (v[v.len() / 2], lo, hi),
        _ => (0, 0, 0),
    }
}

/// The table of `runs` (markdown).
pub fn table(runs: &[RunStats], cores: usize) -> String {
    let all: Vec<Replacement> = runs.iter().flat_map(|r| r.replacements.clone()).collect();
    let row = |name: &str, unit: &str, v: Vec<u64>| {
        let (m, lo, hi) = spread(v);
        format!("| {name} | {m} {unit} | {lo}–{hi} {unit} |\n")
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "File-server replacement under load (ours-servers, {cores} vCPUs, TCG): {} runs, {} replacements; guest clock",
        runs.len(),
        all.len()
    );
    s.push('\n');
    s.push_str("| measure | median | min–max |\n|---|---:|---:|\n");
    s.push_str(&row(
        "pause (longest file operation across a replacement)",
        "µs",
        all.iter().map(|r| r.pause_us).collect(),
    ));
    s.push_str(&row(
        "switch time (hand-over request → successor serving)",
        "µs",
        all.iter().map(|r| r.switch_us).collect(),
    ));
    s.push_str(&row(
        "of which export of the state image",
        "µs",
        all.iter().map(|r| r.export_us).collect(),
    ));
    s.push_str(&row(
        "of which the successor's rebuild",
        "µs",
        all.iter().map(|r| r.import_us).collect(),
    ));
    s.push_str(&row(
        "state image at the switch",
        "bytes",
        all.iter().map(|r| r.image_bytes).collect(),
    ));
    s.push_str(&row(
        "pre-copy before the switch (service goes on)",
        "µs",
        all.iter().map(|r| r.precopy_us).collect(),
    ));
    s.push_str(&row(
        "pre-copied file data",
        "bytes",
        all.iter().map(|r| r.precopy_bytes).collect(),
    ));
    s.push_str(&row(
        "median file operation (whole run)",
        "µs",
        runs.iter().map(|r| r.median_us).collect(),
    ));
    s.push_str(&row(
        "longest file operation outside replacements (per run)",
        "µs",
        runs.iter().map(|r| r.max_outside_us).collect(),
    ));
    let ops: u64 = runs.iter().map(|r| r.ops).sum();
    let failed: u64 = runs.iter().map(|r| r.failed).sum();
    let wrong: u64 = runs.iter().map(|r| r.wrong).sum();
    let _ = writeln!(
        s,
        "| operations checked / failed / wrong | {ops} / {failed} / {wrong} | |"
    );
    s
}

/// Boots `replace_check` `runs` times on `cores` vCPUs (each run replaces
/// the file server `rounds` times) and returns the results.  Errors when
/// a run gives no result.
pub fn measure(
    systems: &Systems,
    userland: &Path,
    cores: usize,
    runs: usize,
    rounds: usize,
    timeout: Duration,
) -> Result<Vec<RunStats>> {
    let mut out = Vec::new();
    for i in 0..runs {
        let request = RunRequest {
            system: System::Ours,
            program: userland.to_path_buf(),
            files: Vec::new(),
            args: vec!["--rounds".into(), rounds.to_string()],
            locks: LockMode::PerCpu,
            extra_cmdline: String::new(),
            vm: VmConfig {
                cores,
                memory_mib: 512,
                accel: Accel::Tcg,
                timeout,
                echo: false,
                nic: None,
                disks: Vec::new(),
            },
            echo: Echo::Quiet,
        };
        let extras = RunExtras {
            structure: Structure::Servers,
            ..Default::default()
        };
        let r = run::run_with(systems, &request, &extras)?;
        let stats = parse(&r.output).with_context(|| {
            format!(
                "run {}: no result ({:?})\n{}\n{}",
                i + 1,
                r.verdict,
                r.output,
                r.outcome.tail(30)
            )
        })?;
        eprintln!(
            "robustness: run {}/{runs}: {} replacements, pause {:?} us, failed {}, wrong {}",
            i + 1,
            stats.replacements.len(),
            stats
                .replacements
                .iter()
                .map(|r| r.pause_us)
                .collect::<Vec<_>>(),
            stats.failed,
            stats.wrong
        );
        out.push(stats);
    }
    Ok(out)
}

/// What happened to the server in a [`Row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Replaced by a new instance while a workload runs.
    Replacement,
    /// Killed (an injected crash) and restarted by the kernel.
    CrashRestart,
    /// The driver process killed and restarted.
    DriverRestart,
}

impl Event {
    /// The name in `robustness.json`.
    pub fn name(self) -> &'static str {
        match self {
            Event::Replacement => "replacement",
            Event::CrashRestart => "crash_restart",
            Event::DriverRestart => "driver_restart",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Event::Replacement => "replacement under load",
            Event::CrashRestart => "crash + restart",
            Event::DriverRestart => "driver process killed + restarted",
        }
    }
}

/// One (server, event) of the robustness section: the samples of each
/// measure (µs; one per repetition), and the operations checked across
/// it.  An empty sample list is a measure that does not apply (`–`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `fs`, `net`, `nic`.
    pub server: String,
    /// The process that serves it (`fsd`, `netd`, `nicd`).
    pub process: String,
    pub event: Event,
    /// Longest client operation across the switch.
    pub pause_us: Vec<u64>,
    /// Hand-over request until the successor serves.
    pub switch_us: Vec<u64>,
    /// Kill until the service answers again (crash recovery, driver
    /// restart gap).
    pub recovery_us: Vec<u64>,
    /// Operations checked, and those that failed or read wrong data
    /// (`None`: not counted by this measurement).
    pub ops: Option<u64>,
    pub failed_ops: Option<u64>,
    /// Clean errors clients saw by design (a crash: `EIO`, `EBADF`).
    pub clean_errors: Option<u64>,
}

/// The robustness section of a suite report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub system: String,
    pub accel: String,
    pub cores: usize,
    /// Repetitions asked for per row.
    pub repetitions: usize,
    pub rows: Vec<Row>,
    /// Measurements that gave no result, one line each.
    pub failures: Vec<String>,
}

/// The line the report says for the monolithic kernel.
pub const MONOLITHIC_NOTE: &str = "The monolithic kernel (ours, ours-global) cannot survive these faults by design: its file system, network stack and NIC driver run in the kernel, so a crash there is a kernel panic, and replacing them means a reboot. Linux likewise.";

/// `median (min–max)` in ms with three decimals, `–` without samples.
fn ms_cell(v: &[u64]) -> String {
    if v.is_empty() {
        return "–".to_string();
    }
    let (m, lo, hi) = spread(v.to_vec());
    let f = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    format!("{} ({}–{})", f(m), f(lo), f(hi))
}

impl Section {
    /// The markdown of the section (`## Robustness` and its table).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## Robustness ({})\n", self.system);
        let _ = writeln!(
            s,
            "{} vCPUs, {}, guest clock; each cell the median (min–max) over the repetitions (n), in ms. \
             pause: the longest client operation across the switch; switch: hand-over request until the \
             successor serves; recovery: kill until the service answers again (for the driver: the TCP \
             echo's gap). Failed: operations that failed or read wrong data, of those checked.\n",
            self.cores, self.accel
        );
        s.push_str(
            "| server | event | n | pause | switch | recovery / gap | failed / checked ops |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let n = r
                .pause_us
                .len()
                .max(r.switch_us.len())
                .max(r.recovery_us.len());
            let failed = match (r.failed_ops, r.ops, r.clean_errors) {
                (Some(f), Some(o), _) => format!("{f} / {o}"),
                (_, _, Some(e)) => format!("{e} clean errors (by design)"),
                _ => "–".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} ({}) | {} | {n} | {} | {} | {} | {failed} |",
                r.server,
                r.process,
                r.event.label(),
                ms_cell(&r.pause_us),
                ms_cell(&r.switch_us),
                ms_cell(&r.recovery_us),
            );
        }
        let _ = writeln!(s, "\n{MONOLITHIC_NOTE}\n");
        for f in &self.failures {
            let _ = writeln!(s, "- no result: {f}");
        }
        if !self.failures.is_empty() {
            s.push('\n');
        }
        s
    }

    /// The section as JSON (`robustness.json`).
    pub fn json(&self) -> String {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let stat = |v: &[u64]| {
                    if v.is_empty() {
                        return serde_json::Value::Null;
                    }
                    let (m, lo, hi) = spread(v.to_vec());
                    serde_json::json!({"median": m, "min": lo, "max": hi})
                };
                serde_json::json!({
                    "server": r.server,
                    "process": r.process,
                    "event": r.event.name(),
                    "pause_us": r.pause_us,
                    "switch_us": r.switch_us,
                    "recovery_us": r.recovery_us,
                    "pause": stat(&r.pause_us),
                    "switch": stat(&r.switch_us),
                    "recovery": stat(&r.recovery_us),
                    "ops": r.ops,
                    "failed_ops": r.failed_ops,
                    "clean_errors": r.clean_errors,
                })
            })
            .collect();
        let v = serde_json::json!({
            "system": self.system,
            "accel": self.accel,
            "cores": self.cores,
            "repetitions": self.repetitions,
            "rows": rows,
            "failures": self.failures,
            "monolithic": MONOLITHIC_NOTE,
        });
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".to_string())
    }

    /// Whether any measured operation failed or a measurement gave no
    /// result.
    pub fn bad(&self) -> bool {
        !self.failures.is_empty() || self.rows.iter().any(|r| r.failed_ops.unwrap_or(0) > 0)
    }
}

/// The replacement row of `server` (served by `process`) from a
/// checker's runs (`replace_check` for `fs`, `net_replace_check replace`
/// for `net`).
pub fn replacement_row(server: &str, process: &str, runs: &[RunStats]) -> Row {
    let all: Vec<Replacement> = runs.iter().flat_map(|r| r.replacements.clone()).collect();
    Row {
        server: server.into(),
        process: process.into(),
        event: Event::Replacement,
        pause_us: all.iter().map(|r| r.pause_us).collect(),
        switch_us: all.iter().map(|r| r.switch_us).collect(),
        recovery_us: Vec::new(),
        ops: Some(runs.iter().map(|r| r.ops).sum()),
        failed_ops: Some(runs.iter().map(|r| r.failed + r.wrong).sum()),
        clean_errors: None,
    }
}

/// The crash row of `server` from its crashes: (recovery µs, clean
/// errors the clients saw) each.
pub fn crash_row(server: &str, process: &str, crashes: &[(u64, u64)]) -> Row {
    Row {
        server: server.into(),
        process: process.into(),
        event: Event::CrashRestart,
        pause_us: Vec::new(),
        switch_us: Vec::new(),
        recovery_us: crashes.iter().map(|r| r.0).collect(),
        ops: None,
        failed_ops: None,
        clean_errors: Some(crashes.iter().map(|r| r.1).sum()),
    }
}

/// The crash lines `PROGRAM: MARKER... recovery_us=R errors=E` of a
/// checker's output as (R, clean errors from E by `errors`); an error
/// without a `PROGRAM: pass` line.
fn crash_lines(
    output: &str,
    program: &str,
    marker: &str,
    errors: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<(u64, u64)>> {
    let rounds: Vec<(u64, u64)> = output
        .lines()
        .filter_map(|l| {
            l.strip_prefix(program)?
                .strip_prefix(": ")?
                .strip_prefix(marker)
        })
        .map(|l| {
            Ok((
                field(l, "recovery_us").context("recovery_us")?,
                errors(l).context("errors")?,
            ))
        })
        .collect::<Result<_>>()?;
    let pass = format!("{program}: pass");
    if rounds.is_empty() || !output.lines().any(|l| l == pass) {
        bail!("{program} did not pass");
    }
    Ok(rounds)
}

/// `crash_check`'s rounds: (recovery µs, clean errors) each; an error
/// without a `crash_check: pass` line.
pub fn parse_crash(output: &str) -> Result<Vec<(u64, u64)>> {
    crash_lines(output, "crash_check", "round ", |l| field(l, "errors"))
}

/// `net_replace_check crash`'s crash: (kill → first echo on a new
/// connection in µs, clean errors the clients and echo threads saw: the
/// sum of `errors=NAME:COUNT,..`); an error without its `pass` line.
pub fn parse_net_crash(output: &str) -> Result<(u64, u64)> {
    let counts = |l: &str| -> Option<u64> {
        let list = l
            .split_whitespace()
            .find_map(|w| w.strip_prefix("errors="))?;
        list.split(',')
            .filter(|e| !e.is_empty())
            .map(|e| e.rsplit_once(':')?.1.parse::<u64>().ok())
            .sum()
    };
    let crashes = crash_lines(output, "net_replace_check", "crash ", counts)?;
    match crashes[..] {
        [one] => Ok(one),
        _ => bail!("net_replace_check printed {} crash lines", crashes.len()),
    }
}

/// `nic_restart`'s gaps (µs: `gap_us=`, else `gap_ms=`); an error without
/// its `ok` line.
pub fn parse_nic_restart(output: &str) -> Result<Vec<u64>> {
    let gaps: Vec<u64> = output
        .lines()
        .filter(|l| l.contains("echoed after restart"))
        .filter_map(|l| field(l, "gap_us").or_else(|| Some(field(l, "gap_ms")? * 1000)))
        .collect();
    if gaps.is_empty() || !output.lines().any(|l| l.starts_with("nic_restart: ok ")) {
        bail!("nic_restart did not end with its ok line");
    }
    Ok(gaps)
}

/// The machine of every robustness boot: ours-servers with `cores` vCPUs
/// under `accel`, each boot cut off after `timeout`.
struct Machine<'a> {
    systems: &'a Systems,
    cores: usize,
    accel: Accel,
    timeout: Duration,
}

impl Machine<'_> {
    /// One boot of `program ARGS`.
    fn boot(
        &self,
        program: &Path,
        args: &[&str],
        nic: Option<crate::qemu::Nic>,
    ) -> Result<run::RunResult> {
        let request = RunRequest {
            system: System::Ours,
            program: program.to_path_buf(),
            files: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            locks: LockMode::PerCpu,
            extra_cmdline: String::new(),
            vm: VmConfig {
                cores: self.cores,
                memory_mib: 512,
                accel: self.accel,
                timeout: self.timeout,
                echo: false,
                nic,
                disks: Vec::new(),
            },
            echo: Echo::Quiet,
        };
        let extras = RunExtras {
            structure: Structure::Servers,
            ..Default::default()
        };
        run::run_with(self.systems, &request, &extras)
    }

    /// One boot of `program ARGS` without a NIC (`program` as the userland
    /// found it, maybe not built), its output read by `parse`; a parse
    /// error carries the verdict and the output's last lines.
    fn parsed<T>(
        &self,
        program: &Result<PathBuf>,
        args: &[&str],
        parse: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let program = program.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let r = self.boot(program, args, None)?;
        parse(&r.output).with_context(|| format!("{:?}: {}", r.verdict, r.outcome.tail(10)))
    }
}

/// The 64-byte message of round `r` of the driver-restart session.
fn nic_message(r: usize) -> [u8; 64] {
    std::array::from_fn(|i| (i * 7 + r * 13) as u8)
}

/// The host side of `nic_restart PORT KILLS`: connect (retrying until
/// the guest listens or `done`), echo round 0, then after each `K` cue
/// one more round; then close (the guest's cue to end).
pub fn nic_restart_client(
    addr: std::net::SocketAddr,
    kills: usize,
    done: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let mut stream = loop {
        let attempt = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).and_then(
            |mut s| {
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                s.write_all(&nic_message(0))?;
                let mut echo = [0u8; 64];
                s.read_exact(&mut echo)?;
                if echo != nic_message(0) {
                    return Err(std::io::Error::other("round 0: echo differs"));
                }
                Ok(s)
            },
        );
        match attempt {
            Ok(s) => break s,
            Err(_) if !done.load(Ordering::Acquire) => {
                std::thread::sleep(Duration::from_millis(250))
            }
            Err(e) => bail!("round 0: {e}"),
        }
    };
    for r in 1..=kills {
        let mut cue = [0u8; 1];
        stream
            .read_exact(&mut cue)
            .with_context(|| format!("cue before round {r}"))?;
        if &cue != b"K" {
            bail!("cue before round {r}: {cue:?}");
        }
        let mut echo = [0u8; 64];
        stream
            .write_all(&nic_message(r))
            .and_then(|_| stream.read_exact(&mut echo))
            .with_context(|| format!("round {r}"))?;
        if echo != nic_message(r) {
            bail!("round {r}: echo differs");
        }
    }
    Ok(())
}

/// Measures the robustness section on ours-servers: `reps` file-server
/// replacements (`replace_check`), `reps` crashes of the file server
/// (`crash_check`), `reps` network-server replacements
/// (`net_replace_check replace`), `reps` network-server crashes
/// (`net_replace_check crash`, one short boot each) and `reps` kills of
/// the NIC driver process (`nic_restart`, with a QEMU user NIC and a
/// host client); the others one boot each.  A measurement without a
/// result is a line in `failures`.
pub fn measure_section(
    systems: &Systems,
    userland: &crate::userland::Userland,
    cores: usize,
    reps: usize,
    accel: Accel,
    timeout: Duration,
) -> Section {
    let mut section = Section {
        system: "ours-servers".into(),
        accel: accel.name().to_string(),
        cores,
        repetitions: reps,
        ..Default::default()
    };
    let machine = Machine {
        systems,
        cores,
        accel,
        timeout,
    };
    let reps_arg = reps.to_string();
    let t0 = std::time::Instant::now();
    let replace = machine.parsed(
        &userland.program("replace_check"),
        &["--rounds", &reps_arg, "--ops", "100"],
        parse,
    );
    match replace {
        Ok(stats) => section.rows.push(replacement_row("fs", "fsd", &[stats])),
        Err(e) => section.failures.push(format!("fs replacement: {e:#}")),
    }
    eprintln!(
        "suite: robustness: fs replacement in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = std::time::Instant::now();
    let crash = machine.parsed(
        &userland.program("crash_check"),
        &["--rounds", &reps_arg, "--ops", "40", "--seed", "3"],
        parse_crash,
    );
    match crash {
        Ok(rounds) => section.rows.push(crash_row("fs", "fsd", &rounds)),
        Err(e) => section.failures.push(format!("fs crash: {e:#}")),
    }
    eprintln!(
        "suite: robustness: fs crashes in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // The network server: replaced `reps` times in one boot under a
    // loopback TCP echo (every byte checked), then killed once in each of
    // `reps` short boots (netd's crash ends every connection, so one
    // kill per boot; seeds vary the crash point).
    let t0 = std::time::Instant::now();
    let net = userland.program("net_replace_check");
    let replace = machine.parsed(
        &net,
        &["replace", "--rounds", &reps_arg, "--ops", "50"],
        |out| parse_as(Checker::Net, out),
    );
    match replace {
        Ok(stats) => section.rows.push(replacement_row("net", "netd", &[stats])),
        Err(e) => section.failures.push(format!("net replacement: {e:#}")),
    }
    eprintln!(
        "suite: robustness: net replacement in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = std::time::Instant::now();
    let mut crashes = Vec::new();
    for rep in 1..=reps {
        let crash = machine.parsed(
            &net,
            &["crash", "--ops", "20", "--seed", &rep.to_string()],
            parse_net_crash,
        );
        match crash {
            Ok(c) => crashes.push(c),
            Err(e) => section
                .failures
                .push(format!("net crash {rep}/{reps}: {e:#}")),
        }
    }
    if !crashes.is_empty() {
        section.rows.push(crash_row("net", "netd", &crashes));
    }
    eprintln!(
        "suite: robustness: net crashes in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let t0 = std::time::Instant::now();
    let nic = userland.program("nic_restart").and_then(|p| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let client = std::thread::spawn(move || {
            nic_restart_client(
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                reps,
                &flag,
            )
        });
        let r = machine.boot(
            &p,
            &["7", &reps_arg],
            Some(crate::qemu::Nic::User {
                hostfwd: vec![(port, 7)],
                guestfwd: Vec::new(),
            }),
        );
        done.store(true, std::sync::atomic::Ordering::Release);
        let client = client
            .join()
            .map_err(|_| anyhow::anyhow!("the host client panicked"))?;
        let r = r?;
        client.context("host client")?;
        parse_nic_restart(&r.output)
            .with_context(|| format!("{:?}: {}", r.verdict, r.outcome.tail(10)))
    });
    match nic {
        Ok(gaps) => section.rows.push(Row {
            server: "nic".into(),
            process: "nicd".into(),
            event: Event::DriverRestart,
            pause_us: Vec::new(),
            switch_us: Vec::new(),
            recovery_us: gaps,
            ops: None,
            failed_ops: None,
            clean_errors: None,
        }),
        Err(e) => section.failures.push(format!("nic driver restart: {e:#}")),
    }
    eprintln!(
        "suite: robustness: NIC driver restarts in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(check_replace_spec("fs@1").is_ok());
        assert!(check_replace_spec("fs@0.25").is_ok());
        assert!(check_replace_spec("net@1").is_ok());
        assert!(check_replace_spec("disk@1").is_err());
        assert!(check_replace_spec("fs").is_err());
        assert!(check_replace_spec("fs@-1").is_err());
        assert!(check_replace_spec("fs@1e3").is_err());
    }

    #[test]
    fn parses_and_tabulates() {
        let out = "replace_check: round 0 switch_us=900 pause_us=1000 image_bytes=5000 export_us=100 import_us=50 start_us=1 precopy_us=9 precopy_bytes=10 call_us=2 pids=2->7\n\
                   replace_check: round 1 switch_us=700 pause_us=800 image_bytes=5100 export_us=90 import_us=40 start_us=1 precopy_us=9 precopy_bytes=10 call_us=2 pids=7->8\n\
                   replace_check: ops=100 failed=0 wrong=0 median_us=30 max_us_outside=50 threads=2 rounds=2\n\
                   replace_check: pass\n";
        let s = parse(out).unwrap();
        assert!(s.passed);
        assert_eq!(s.replacements.len(), 2);
        assert_eq!(s.replacements[1].pause_us, 800);
        let t = table(&[s.clone(), s], 2);
        assert!(t.contains("| 1000 µs | 800–1000 µs |"), "{t}");
        assert!(t.contains("200 / 0 / 0"), "{t}");
        assert!(parse("replace_check: round 0 switch_us=1\n").is_err());
    }

    /// The suite's section from a known result set: rows, cells, the
    /// monolithic line, JSON; the network server's replacement and crash rows
    /// from its checker's output, through the same parsers and row builders.
    #[test]
    fn section_renders_known_results() {
        let out = "replace_check: round 0 switch_us=4000 pause_us=6000 image_bytes=900 export_us=100 import_us=50 start_us=1 precopy_us=9 precopy_bytes=10 call_us=2 pids=2->7\n\
                   replace_check: round 1 switch_us=2000 pause_us=5000 image_bytes=900 export_us=90 import_us=40 start_us=1 precopy_us=9 precopy_bytes=10 call_us=2 pids=7->8\n\
                   replace_check: round 2 switch_us=3000 pause_us=9000 image_bytes=900 export_us=90 import_us=40 start_us=1 precopy_us=9 precopy_bytes=10 call_us=2 pids=8->9\n\
                   replace_check: ops=300 failed=0 wrong=0 median_us=30 max_us_outside=50 threads=2 rounds=3\n\
                   replace_check: pass\n";
        let crash = "crash_check: round 0 recovery_us=400000 errors=3 old_fd=EBADF\n\
                     crash_check: round 1 recovery_us=500000 errors=1 old_fd=EBADF\n\
                     crash_check: round 2 recovery_us=450000 errors=2 old_fd=EBADF\n\
                     crash_check: pass\n";
        let nic = "nic_restart: listening\n\
                   nic_restart: round 1 echoed after restart gap_ms=9\n\
                   nic_restart: round 2 echoed after restart gap_ms=148 gap_us=148000\n\
                   nic_restart: round 3 echoed after restart gap_ms=20\n\
                   nic_restart: ok rounds=4 kills=3\n";
        let net = "net_replace_check: round 1 switch_us=4593 pause_us=54242 quiesce_us=31 adopt_us=539 arena_kib=3268 call_us=34814\n\
                   net_replace_check: round 2 switch_us=29734 pause_us=83650 quiesce_us=47 adopt_us=610 arena_kib=3270 call_us=64640\n\
                   net_replace_check: round 3 switch_us=2792 pause_us=63155 quiesce_us=27 adopt_us=538 arena_kib=3282 call_us=111914\n\
                   net_replace_check: ops=973 failed=0 wrong=1 median_us=18065 max_us_outside=94446\n\
                   net_replace_check: FAIL client 0 round 9: wrong echo\n";
        let net_crash = |us: u64| {
            format!(
                "net_replace_check: crash after_ops=44 errors=ECONNRESET:3,EPIPE:1,server:ECONNRESET:4,server:accept:EIO:1 recovery_us={us}\n\
                 net_replace_check: pass\n"
            )
        };
        let rounds = parse_crash(crash).unwrap();
        let net_stats = parse_as(Checker::Net, net).unwrap();
        assert!(!net_stats.passed);
        assert_eq!(net_stats.replacements[0].image_bytes, 3268 * 1024);
        assert_eq!(net_stats.replacements[2].export_us, 27);
        // The fs parser does not take the net checker's lines, nor the
        // reverse.
        assert!(parse(net).is_err());
        assert!(parse_as(Checker::Net, out).is_err());
        let net_crashes: Vec<(u64, u64)> = [231907, 180000, 305000]
            .iter()
            .map(|&us| parse_net_crash(&net_crash(us)).unwrap())
            .collect();
        assert_eq!(net_crashes[0], (231907, 9));
        let mut section = Section {
            system: "ours-servers".into(),
            accel: "tcg".into(),
            cores: 2,
            repetitions: 3,
            rows: vec![replacement_row("fs", "fsd", &[parse(out).unwrap()])],
            failures: vec![],
        };
        section.rows.push(crash_row("fs", "fsd", &rounds));
        section
            .rows
            .push(replacement_row("net", "netd", &[net_stats]));
        section.rows.push(crash_row("net", "netd", &net_crashes));
        section.rows.push(Row {
            server: "nic".into(),
            process: "nicd".into(),
            event: Event::DriverRestart,
            pause_us: vec![],
            switch_us: vec![],
            recovery_us: parse_nic_restart(nic).unwrap(),
            ops: None,
            failed_ops: None,
            clean_errors: None,
        });
        let md = section.markdown();
        assert!(md.contains("## Robustness (ours-servers)"), "{md}");
        assert!(
            md.contains("| fs (fsd) | replacement under load | 3 | 6.000 (5.000–9.000) | 3.000 (2.000–4.000) | – | 0 / 300 |"),
            "{md}"
        );
        assert!(
            md.contains("| fs (fsd) | crash + restart | 3 | – | – | 450.000 (400.000–500.000) | 6 clean errors (by design) |"),
            "{md}"
        );
        assert!(
            md.contains("| nic (nicd) | driver process killed + restarted | 3 | – | – | 20.000 (9.000–148.000) | – |"),
            "{md}"
        );
        assert!(
            md.contains("| net (netd) | replacement under load | 3 | 63.155 (54.242–83.650) | 4.593 (2.792–29.734) | – | 1 / 973 |"),
            "{md}"
        );
        assert!(
            md.contains("| net (netd) | crash + restart | 3 | – | – | 231.907 (180.000–305.000) | 27 clean errors (by design) |"),
            "{md}"
        );
        assert!(md.contains("cannot survive these faults by design"), "{md}");
        // The wrong echo in the net replacement is a failed operation.
        assert!(section.bad());
        let json: serde_json::Value = serde_json::from_str(&section.json()).unwrap();
        assert_eq!(json["rows"][0]["event"], "replacement");
        assert_eq!(json["rows"][0]["pause"]["median"], 6000);
        assert_eq!(json["rows"][0]["pause_us"][2], 9000);
        assert_eq!(json["rows"][2]["server"], "net");
        assert_eq!(json["rows"][2]["switch"]["median"], 4593);
        assert_eq!(json["rows"][2]["failed_ops"], 1);
        assert_eq!(json["rows"][3]["event"], "crash_restart");
        assert_eq!(json["rows"][3]["recovery"]["max"], 305000);
        assert_eq!(json["rows"][3]["clean_errors"], 27);
        assert_eq!(json["rows"][4]["server"], "nic");
        section.rows[2].failed_ops = Some(0);
        assert!(!section.bad());
        section.failures.push("fs crash: no result".into());
        assert!(section.bad());
        assert!(section
            .markdown()
            .contains("- no result: fs crash: no result"));
        assert!(parse_crash("crash_check: round 0 recovery_us=1 errors=0 old_fd=x\n").is_err());
        assert!(parse_nic_restart("nic_restart: round 1 echoed after restart gap_ms=3\n").is_err());
        // A net crash without its pass line (an unclean error) is no result.
        assert!(parse_net_crash(
            "net_replace_check: crash after_ops=4 errors=EAGAIN:1 recovery_us=9\nnet_replace_check: FAIL unclean error EAGAIN\n"
        )
        .is_err());
    }
}
