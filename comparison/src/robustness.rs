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
//! Must not: report a median of nothing (a run without results is an
//! error), or hide failed operations (they are a column and fail the
//! command).

use std::fmt::Write as _;
use std::path::Path;
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

/// Parses `replace_check`'s output.
pub fn parse(output: &str) -> Result<RunStats> {
    let mut replacements = Vec::new();
    let mut totals = None;
    for l in output.lines() {
        let Some(rest) = l.strip_prefix("replace_check: ") else {
            continue;
        };
        if rest.starts_with("round ") {
            replacements.push(Replacement {
                switch_us: field(rest, "switch_us").context("switch_us")?,
                pause_us: field(rest, "pause_us").context("pause_us")?,
                image_bytes: field(rest, "image_bytes").context("image_bytes")?,
                export_us: field(rest, "export_us").context("export_us")?,
                import_us: field(rest, "import_us").context("import_us")?,
                precopy_us: field(rest, "precopy_us").context("precopy_us")?,
                precopy_bytes: field(rest, "precopy_bytes").context("precopy_bytes")?,
            });
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
    let (ops, failed, wrong, median_us, max_outside_us) =
        totals.context("replace_check printed no totals line")?;
    Ok(RunStats {
        replacements,
        ops,
        failed,
        wrong,
        median_us,
        max_outside_us,
        passed: output.lines().any(|l| l == "replace_check: pass"),
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
}
