//! `report.md` and the summary table: per accelerator, per workload, ops/s
//! by cores per system (median and min–max over runs), scaling efficiency
//! ops(N)/(N·ops(1)), and the ratios ours/linux and ours/ours-global; the
//! per-structure table (ours, every servers system measured, linux and servers/monolithic,
//! servers/linux per core count) and the null IPC round trip beside
//! getppid.
//!
//! Invariants: each accelerator gets its own section and tables (numbers from
//! KVM and TCG are never side by side); a missing cell prints `–`, never 0;
//! a workload that does not apply on a system prints `n/a` (the reason is
//! listed under "Does not apply"), never a number and never a failure.
//! Pure text generation: no I/O here (the runner writes the files).

use super::plot;
use super::record::Record;
use super::stats::{aggregate, Group, GroupKey};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A rate with a metric prefix: `1.23 M`, `45.6 k`, `789`.
pub fn fmt_rate(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let (v, p) = if x >= 1e9 {
        (x / 1e9, " G")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e3 {
        (x / 1e3, " k")
    } else {
        (x, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{p}")
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

/// The unit a table's numbers are in.
fn unit_label(unit: &str) -> String {
    if unit == "ops" {
        "ops/s".to_string()
    } else {
        format!("{unit}/s")
    }
}

/// Distinct values of one record field, joined for a header line.
fn distinct(records: &[&Record], field: impl Fn(&Record) -> &str) -> String {
    let set: BTreeSet<&str> = records.iter().map(|r| field(r)).collect();
    set.into_iter().collect::<Vec<_>>().join("; ")
}

/// A workload that cannot run on a system (`batch::Outcome::NotApplicable`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotApplicable {
    pub accel: String,
    pub system: String,
    pub workload: String,
    pub mode: String,
    /// Why (one line, as the run said it).
    pub why: String,
}

/// The (system, workload, mode) cells that do not apply, per accelerator.
#[derive(Debug, Clone, Copy)]
pub struct Na<'a>(pub &'a [NotApplicable]);

impl Na<'_> {
    /// Whether `workload` in `mode` does not apply on `system` (on `accel`).
    pub fn has(&self, accel: &str, system: &str, workload: &str, mode: &str) -> bool {
        self.0.iter().any(|n| {
            n.accel == accel && n.system == system && n.workload == workload && n.mode == mode
        })
    }

    /// Systems with a cell that does not apply for this workload and mode.
    fn systems(&self, accel: &str, workload: &str, mode: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|n| n.accel == accel && n.workload == workload && n.mode == mode)
            .map(|n| n.system.clone())
            .collect()
    }

    /// One line per (accelerator, system, workload, mode), with the first
    /// reason given, in that order.
    pub fn lines(&self) -> Vec<String> {
        let mut seen = BTreeMap::new();
        for n in self.0 {
            seen.entry((
                &n.accel,
                system_rank(&n.system),
                &n.system,
                &n.workload,
                &n.mode,
            ))
            .or_insert(&n.why);
        }
        seen.into_iter()
            .map(|((accel, _, system, workload, mode), why)| {
                format!("{accel}: {system} {workload} ({mode}): {why}")
            })
            .collect()
    }
}

use super::options::system_rank;

/// Sort system names in display order and drop duplicates.
fn in_display_order(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|n| (system_rank(n), n.clone()));
    names.dedup();
    names
}

/// A median cell: the rate, `n/a`, or `–`.
fn median_cell(key: &GroupKey, group: Option<&Group>, na: Na, system: &str, cores: u32) -> String {
    match group.and_then(|g| g.get(system, cores)) {
        Some(c) => fmt_rate(c.median),
        None if na.has(&key.accel, system, &key.workload, &key.mode) => "n/a".to_string(),
        None => "–".to_string(),
    }
}

/// The table of one group (markdown).
pub fn group_table(key: &GroupKey, group: &Group, na: Na) -> String {
    let mut names = group.systems();
    names.extend(na.systems(&key.accel, &key.workload, &key.mode));
    let systems = in_display_order(names);
    let mut out = String::new();
    let mut head = vec!["cores".to_string()];
    head.extend(
        systems
            .iter()
            .map(|s| format!("{s} median (min–max, runs)")),
    );
    head.extend(systems.iter().map(|s| format!("eff. {s}")));
    let has = |s: &str| systems.iter().any(|x| x == s);
    let ratios = ratio_pairs(&has);
    head.extend(ratios.iter().map(|(a, b)| format!("{a}/{b}")));
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for cores in group.core_counts() {
        let mut row = vec![cores.to_string()];
        for s in &systems {
            row.push(match group.get(s, cores) {
                Some(c) => format!(
                    "{} ({}–{}, {})",
                    fmt_rate(c.median),
                    fmt_rate(c.min),
                    fmt_rate(c.max),
                    c.runs
                ),
                None => median_cell(key, Some(group), na, s, cores),
            });
        }
        for s in &systems {
            row.push(fmt_opt(group.efficiency(s, cores), 2));
        }
        for (a, b) in &ratios {
            row.push(fmt_opt(group.ratio(a, b, cores), 2));
        }
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// The ratio columns: ours/X for each X of `options::RATIO_BASES`, when
/// both were measured (`has`).
fn ratio_pairs(has: &dyn Fn(&str) -> bool) -> Vec<(&'static str, &'static str)> {
    let ours = super::options::SuiteSystem::Ours.name();
    super::options::RATIO_BASES
        .iter()
        .map(|b| (ours, b.name()))
        .filter(|(a, b)| has(a) && has(b))
        .collect()
}

/// One line per group at its largest core count: the summary table (markdown).
pub fn summary_table(groups: &BTreeMap<GroupKey, Group>, na: Na) -> String {
    let mut out = String::new();
    let accels: BTreeSet<&str> = groups.keys().map(|k| k.accel.as_str()).collect();
    for accel in accels {
        let in_accel: Vec<(&GroupKey, &Group)> =
            groups.iter().filter(|(k, _)| k.accel == accel).collect();
        let mut names: Vec<String> = in_accel.iter().flat_map(|(_, g)| g.systems()).collect();
        names.extend(
            na.0.iter()
                .filter(|n| n.accel == accel)
                .map(|n| n.system.clone()),
        );
        let systems = in_display_order(names);
        let has = |s: &str| systems.iter().any(|x| x == s);
        let _ = writeln!(
            out,
            "accel {accel}: median rate at the largest core count; eff. = ops(N)/(N·ops(1))\n"
        );
        let mut head = vec![
            "workload".to_string(),
            "mode".into(),
            "unit".into(),
            "cores".into(),
        ];
        head.extend(systems.iter().cloned());
        if has("ours") {
            head.push("eff. ours".into());
        }
        let ratios = ratio_pairs(&has);
        head.extend(ratios.iter().map(|(a, b)| format!("{a}/{b}")));
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for (key, group) in in_accel {
            let Some(&cores) = group.core_counts().last() else {
                continue;
            };
            let mut row = vec![
                key.workload.clone(),
                key.mode.clone(),
                unit_label(&key.unit),
                cores.to_string(),
            ];
            for s in &systems {
                row.push(median_cell(key, Some(group), na, s, cores));
            }
            if has("ours") {
                row.push(fmt_opt(group.efficiency("ours", cores), 2));
            }
            for (a, b) in &ratios {
                row.push(fmt_opt(group.ratio(a, b, cores), 2));
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    out
}

/// The monolithic system and the Linux system of the per-structure table
/// (the servers systems stand between them, `servers_systems`).
pub const STRUCTURE_ENDS: (&str, &str) = ("ours", "linux");

/// The servers systems of the per-structure table, in `options::ALL`
/// order: the classic single thread, each placement, migration and each
/// copy mode (every suite system with `structure=servers`, so a new one
/// gets its column without a change here).
pub fn servers_systems() -> Vec<&'static str> {
    super::options::ALL
        .iter()
        .filter(|s| s.structure() == crate::run::Structure::Servers)
        .map(|s| s.name())
        .collect()
}

/// The per-structure table (markdown), one per accelerator that has
/// results or n/a cells of any servers system: a row per workload, mode
/// and core count; the medians of ours (monolithic), each servers system
/// measured on that accelerator (`servers_systems`) and linux; and for
/// each servers system X, X/monolithic and X/linux (rates: above 1 the
/// servers are faster).  Empty when no servers system was measured.
pub fn structure_table(groups: &BTreeMap<GroupKey, Group>, na: Na) -> String {
    let (mono, linux) = STRUCTURE_ENDS;
    let all_servers = servers_systems();
    let measured = |accel: &str, s: &str| {
        groups
            .iter()
            .any(|(k, g)| k.accel == accel && g.cells.contains_key(s))
            || na.0.iter().any(|n| n.accel == accel && n.system == s)
    };
    let mut out = String::new();
    let accels: BTreeSet<&str> = groups
        .keys()
        .map(|k| k.accel.as_str())
        .chain(na.0.iter().map(|n| n.accel.as_str()))
        .filter(|a| all_servers.iter().any(|s| measured(a, s)))
        .collect();
    for accel in accels {
        let servers: Vec<&str> = all_servers
            .iter()
            .copied()
            .filter(|s| measured(accel, s))
            .collect();
        let named = if servers.len() == 1 {
            servers[0].to_string()
        } else {
            "X".to_string()
        };
        let _ = writeln!(
            out,
            "accel {accel}: median rates; {named}/{mono} and {named}/{linux} are ratios of rates \
             at the same core count (above 1: the servers are faster)\n"
        );
        let mut head = vec![
            "workload".to_string(),
            "mode".into(),
            "unit".into(),
            "cores".into(),
            format!("{mono} (monolithic)"),
        ];
        head.extend(servers.iter().map(|s| s.to_string()));
        head.push(linux.into());
        for s in &servers {
            head.push(format!("{s}/{mono}"));
            head.push(format!("{s}/{linux}"));
        }
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for (key, group) in groups.iter().filter(|(k, _)| k.accel == accel) {
            for cores in group.core_counts() {
                let mut row = vec![
                    key.workload.clone(),
                    key.mode.clone(),
                    unit_label(&key.unit),
                    cores.to_string(),
                ];
                for s in core::iter::once(mono)
                    .chain(servers.iter().copied())
                    .chain(core::iter::once(linux))
                {
                    row.push(median_cell(key, Some(group), na, s, cores));
                }
                for s in &servers {
                    for base in [mono, linux] {
                        row.push(fmt_opt(group.ratio(s, base, cores), 2));
                    }
                }
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        out.push('\n');
    }
    out
}

/// The goal of the null IPC round trip (the design target of the OS-server structure): at most this many
/// getppid round trips.
pub const IPC_GOAL: f64 = 2.0;

/// The null IPC round trip beside getppid (markdown), per accelerator and
/// mode that has either: a row per system and core count with both medians
/// and ipc/getppid, the time of one IPC round trip in getppid round trips
/// (getppid rate / ipc_call rate; the goal is at most `IPC_GOAL`).  Empty
/// when neither was measured.
pub fn ipc_table(groups: &BTreeMap<GroupKey, Group>, na: Na) -> String {
    const GETPPID: &str = "getppid";
    const IPC: &str = "ipc_call";
    let mut out = String::new();
    let find = |accel: &str, mode: &str, workload: &str| {
        groups
            .iter()
            .find(|(k, _)| k.accel == accel && k.mode == mode && k.workload == workload)
    };
    // (accel, mode) pairs with an ipc_call result or n/a.
    let mut pairs: BTreeSet<(String, String)> = groups
        .keys()
        .filter(|k| k.workload == IPC)
        .map(|k| (k.accel.clone(), k.mode.clone()))
        .collect();
    pairs.extend(
        na.0.iter()
            .filter(|n| n.workload == IPC)
            .map(|n| (n.accel.clone(), n.mode.clone())),
    );
    for (accel, mode) in pairs {
        let ipc = find(&accel, &mode, IPC);
        let getppid = find(&accel, &mode, GETPPID);
        let mut names: Vec<String> = [ipc, getppid]
            .iter()
            .flatten()
            .flat_map(|(_, g)| g.systems())
            .collect();
        names.extend(na.systems(&accel, IPC, &mode));
        names.extend(na.systems(&accel, GETPPID, &mode));
        let systems = in_display_order(names);
        let mut cores: Vec<u32> = [ipc, getppid]
            .iter()
            .flatten()
            .flat_map(|(_, g)| g.core_counts())
            .collect();
        cores.sort_unstable();
        cores.dedup();
        let _ = writeln!(
            out,
            "accel {accel}, {mode}: median rates; ipc/getppid = getppid rate / ipc_call rate, the \
             time of one null IPC round trip in getppid round trips (goal: at most {IPC_GOAL:.0})\n"
        );
        let _ = writeln!(
            out,
            "| system | cores | {GETPPID} ops/s | {IPC} ops/s | ipc/getppid | goal met |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        let key_of = |workload: &str| GroupKey {
            accel: accel.clone(),
            workload: workload.to_string(),
            mode: mode.clone(),
            unit: "ops".into(),
        };
        for system in &systems {
            for &c in &cores {
                let rate = |g: Option<(&GroupKey, &Group)>| {
                    g.and_then(|(_, g)| g.get(system, c)).map(|s| s.median)
                };
                let ratio = match (rate(getppid), rate(ipc)) {
                    (Some(g), Some(i)) => super::stats::ratio(g, i),
                    _ => None,
                };
                let met = match ratio {
                    Some(r) if r <= IPC_GOAL => "yes",
                    Some(_) => "no",
                    None => "–",
                };
                let _ = writeln!(
                    out,
                    "| {system} | {c} | {} | {} | {} | {met} |",
                    median_cell(&key_of(GETPPID), getppid.map(|(_, g)| g), na, system, c),
                    median_cell(&key_of(IPC), ipc.map(|(_, g)| g), na, system, c),
                    fmt_opt(ratio, 2),
                );
            }
        }
        out.push('\n');
    }
    out
}

/// What the report says besides the records.
#[derive(Debug, Clone, Default)]
pub struct ReportInfo {
    /// UTC date and time of the suite.
    pub date: String,
    /// Runs that produced no record, one line each.
    pub failures: Vec<String>,
    /// Files of `--import` records.
    pub imports: Vec<String>,
    /// Set when the suite was stopped early (Ctrl-C): what was left undone.
    pub interrupted: Option<String>,
    /// How the measurements were spread over boots (order, seed).
    pub schedule: Option<String>,
    /// Boots made so far.
    pub boots: usize,
    /// Disk images every run had (`--disk`), as the user named them.
    pub disks: Vec<String>,
    /// Workloads that cannot run on a system (shown as n/a).
    pub not_applicable: Vec<NotApplicable>,
    /// The robustness section (ours-servers measured, not turned off).
    pub robustness: Option<crate::robustness::Section>,
}

/// The whole `report.md`.  Plot paths are relative to the report.
pub fn report_markdown(records: &[Record], info: &ReportInfo) -> String {
    let groups = aggregate(records);
    let mut out = String::new();
    let _ = writeln!(out, "# Workload suite report\n");
    let all: Vec<&Record> = records.iter().collect();
    let _ = writeln!(out, "- date (UTC): {}", info.date);
    let _ = writeln!(out, "- accelerators: {}", distinct(&all, |r| &r.accel));
    let _ = writeln!(out, "- QEMU: {}", distinct(&all, |r| &r.qemu_version));
    let _ = writeln!(out, "- git commit: {}", distinct(&all, |r| &r.commit));
    let _ = writeln!(out, "- records: {}", records.len());
    if let Some(schedule) = &info.schedule {
        let _ = writeln!(out, "- boots made: {}; {schedule}", info.boots);
    }
    for disk in &info.disks {
        let _ = writeln!(
            out,
            "- disk: `{disk}` (the file workloads ran on it, mounted as ext2 at /mnt/disk)"
        );
    }
    for file in &info.imports {
        let _ = writeln!(out, "- imported: `{file}`");
    }
    if let Some(why) = &info.interrupted {
        let _ = writeln!(
            out,
            "\n**Interrupted:** {why}.  The tables hold only the runs that finished.\n"
        );
    }
    out.push_str(
        "\nCells give the median rate over runs with (min–max, number of runs). \
         Scaling efficiency is ops(N)/(N·ops(1)) of the medians (1.00 = perfect). \
         Ratios compare medians at the same core count. \
         Numbers from different accelerators are in separate sections and never compared. \
         `n/a`: the workload does not apply on that system (see \"Does not apply\").\n\n",
    );
    let na = Na(&info.not_applicable);
    if !records.is_empty() {
        let _ = writeln!(out, "## Summary\n");
        out.push_str(&summary_table(&groups, na));
    }
    let structure = structure_table(&groups, na);
    if !structure.is_empty() {
        let _ = writeln!(out, "## Per structure: monolithic, servers, Linux\n");
        out.push_str(
            "The same kernel with the file system linked in (`ours`) and in the user-mode file \
             server (`ours-servers`, `structure=servers`: file system calls are delegated by IPC; \
             docs/SERVERS.md; its placements `-percore`, `-dedicated`, `-migrate` and its \
             two-copy mode `-copy2`, a column each when measured), and Linux, with the same \
             workload binaries; `open_close_skewed` is the migration workload.\n\n",
        );
        out.push_str(&structure);
    }
    let ipc = ipc_table(&groups, na);
    if !ipc.is_empty() {
        let _ = writeln!(out, "## Null IPC round trip vs getppid\n");
        out.push_str(&ipc);
    }
    if let Some(section) = &info.robustness {
        out.push_str(&section.markdown());
    }
    let accels: BTreeSet<&str> = groups.keys().map(|k| k.accel.as_str()).collect();
    for accel in accels {
        let in_accel: Vec<&Record> = records.iter().filter(|r| r.accel == accel).collect();
        let _ = writeln!(out, "## Accelerator: {accel}\n");
        let _ = writeln!(
            out,
            "- CPU model: {}",
            distinct(&in_accel, |r| &r.cpu_model)
        );
        let _ = writeln!(out, "- QEMU: {}", distinct(&in_accel, |r| &r.qemu_version));
        let mut systems: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in &in_accel {
            systems
                .entry(r.system.as_str())
                .or_default()
                .insert(r.kernel_options.as_str());
        }
        for (system, options) in systems {
            if options.iter().all(|o| o.is_empty()) {
                continue;
            }
            let opts: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
            let _ = writeln!(out, "- {system} kernel options: {}", opts.join(", "));
        }
        let mut vulns: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in in_accel.iter().filter(|r| !r.vulnerabilities.is_empty()) {
            vulns
                .entry(r.system.as_str())
                .or_default()
                .insert(r.vulnerabilities.as_str());
        }
        for (system, lines) in vulns {
            for line in lines {
                let _ = writeln!(
                    out,
                    "- {system} CPU vulnerabilities (/sys/devices/system/cpu/vulnerabilities): {line}"
                );
            }
        }
        let _ = writeln!(
            out,
            "\n![summary](plots/{})\n",
            plot::summary_file_name(accel)
        );
        for (key, group) in groups.iter().filter(|(k, _)| k.accel == accel) {
            let _ = writeln!(
                out,
                "### {} ({}, {})\n",
                key.workload,
                key.mode,
                unit_label(&key.unit)
            );
            let _ = writeln!(
                out,
                "![{}](plots/{})\n",
                key.workload,
                plot::group_file_name(key)
            );
            out.push_str(&group_table(key, group, na));
            out.push('\n');
        }
    }
    let na_lines = na.lines();
    if !na_lines.is_empty() {
        let _ = writeln!(out, "## Does not apply\n");
        out.push_str("Workloads that cannot run on a system (shown as `n/a`; not failures):\n\n");
        for line in na_lines {
            let _ = writeln!(out, "- {line}");
        }
        out.push('\n');
    }
    if !info.failures.is_empty() {
        let _ = writeln!(out, "## Runs without a result\n");
        for f in &info.failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::*;

    #[test]
    fn rates_are_formatted_with_prefixes() {
        assert_eq!(fmt_rate(1_020_000.0), "1.02 M");
        assert_eq!(fmt_rate(45_100.0), "45.1 k");
        assert_eq!(fmt_rate(789.0), "789");
        assert_eq!(fmt_rate(2.5), "2.50");
    }

    fn records() -> Vec<Record> {
        vec![
            sample("ours", "getppid", 1, 0, 1000.0),
            sample("ours", "getppid", 1, 1, 1200.0),
            sample("ours", "getppid", 2, 0, 1800.0),
            sample("ours-global", "getppid", 1, 0, 900.0),
            sample("ours-global", "getppid", 2, 0, 900.0),
            sample("linux", "getppid", 1, 0, 500.0),
            sample("linux", "getppid", 2, 0, 1000.0),
        ]
    }

    #[test]
    fn group_table_has_medians_spread_efficiency_and_ratios() {
        let groups = aggregate(&records());
        let (key, group) = groups.iter().next().unwrap();
        let table = group_table(key, group, Na(&[]));
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("ours median")
                && lines[0].contains("ours/linux")
                && lines[0].contains("ours/ours-global")
        );
        // 1 core: ours median of 1000 and 1200 = 1100.
        assert!(
            lines[2].starts_with("| 1 | 1.10 k (1.00 k–1.20 k, 2) |"),
            "{}",
            lines[2]
        );
        // 2 cores: eff ours = 1800/(2*1100) = 0.82, ours/linux = 1.80, ours/global = 2.00.
        assert!(lines[3].contains("| 0.82 |"), "{}", lines[3]);
        assert!(lines[3].ends_with("| 1.80 | 2.00 |"), "{}", lines[3]);
    }

    #[test]
    fn report_separates_accelerators_and_lists_failures() {
        let mut recs = records();
        let mut k = sample("ours", "getppid", 1, 0, 5.0);
        k.accel = "kvm".into();
        recs.push(k);
        let info = ReportInfo {
            date: "2026-01-01 00:00".into(),
            failures: vec!["linux stat 2 cores: timed out".into()],
            imports: vec![],
            interrupted: Some("stopped by Ctrl-C after 3 of 12 runs".into()),
            schedule: Some("2 boots planned; seed 5".into()),
            boots: 2,
            disks: vec!["/tmp/d.img".into()],
            not_applicable: vec![],
            robustness: None,
        };
        let md = report_markdown(&recs, &info);
        assert!(md.contains("## Accelerator: tcg") && md.contains("## Accelerator: kvm"));
        assert!(md.contains("accel kvm:") && md.contains("accel tcg:"));
        assert!(md.contains("plots/tcg-getppid-threads.svg"));
        assert!(md.contains("linux stat 2 cores: timed out"));
        assert!(md.contains("**Interrupted:** stopped by Ctrl-C after 3 of 12 runs"));
        assert!(md.contains("- boots made: 2; 2 boots planned; seed 5"));
        assert!(md.contains("- disk: `/tmp/d.img`"));
        assert!(md.contains("QEMU emulator version 7.2.0") && md.contains("abc123"));
        let summary = summary_table(&aggregate(&records()), Na(&[]));
        assert!(
            summary.contains(
                "| getppid | threads | ops/s | 2 | 1.80 k | 900 | 1.00 k | 0.82 | 1.80 | 2.00 |"
            ),
            "{summary}"
        );
    }

    fn na(system: &str, workload: &str, why: &str) -> NotApplicable {
        NotApplicable {
            accel: "tcg".into(),
            system: system.into(),
            workload: workload.into(),
            mode: "threads".into(),
            why: why.into(),
        }
    }

    /// ours, ours-servers and linux on a file workload and on getppid and
    /// ipc_call; ipc_call does not apply on Linux, mmap_read_shared not on
    /// ours-servers.
    fn structures() -> (Vec<Record>, Vec<NotApplicable>) {
        let recs = vec![
            sample("ours", "stat_private", 1, 0, 1000.0),
            sample("ours", "stat_private", 2, 0, 2000.0),
            sample("ours-servers", "stat_private", 1, 0, 500.0),
            sample("ours-servers", "stat_private", 2, 0, 800.0),
            sample("linux", "stat_private", 1, 0, 250.0),
            sample("linux", "stat_private", 2, 0, 400.0),
            sample("ours", "getppid", 1, 0, 3000.0),
            sample("ours-servers", "getppid", 1, 0, 3000.0),
            sample("linux", "getppid", 1, 0, 900.0),
            sample("ours", "ipc_call", 1, 0, 2000.0),
            sample("ours-servers", "ipc_call", 1, 0, 1000.0),
            sample("ours", "mmap_read_shared", 1, 0, 70.0),
        ];
        let na = vec![
            na(
                "linux",
                "ipc_call",
                "ipc_call: worker 0: ipc_call does not apply on this system",
            ),
            na(
                "linux",
                "ipc_call",
                "ipc_call: worker 1: ipc_call does not apply on this system",
            ),
            na(
                "ours-servers",
                "mmap_read_shared",
                "file mmap is not delegated",
            ),
        ];
        (recs, na)
    }

    #[test]
    fn structure_table_gives_each_structure_and_the_servers_ratios() {
        let (recs, not) = structures();
        let table = structure_table(&aggregate(&recs), Na(&not));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("accel tcg:"), "{table}");
        assert_eq!(
            lines[2],
            "| workload | mode | unit | cores | ours (monolithic) | ours-servers | linux | ours-servers/ours | ours-servers/linux |"
        );
        let row = |prefix: &str| {
            *lines
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no row {prefix} in\n{table}"))
        };
        // servers/mono = 500/1000, servers/linux = 500/250; at 2 cores 0.40 and 2.00.
        assert_eq!(
            row("| stat_private | threads | ops/s | 1 |"),
            "| stat_private | threads | ops/s | 1 | 1.00 k | 500 | 250 | 0.50 | 2.00 |"
        );
        assert!(row("| stat_private | threads | ops/s | 2 |").ends_with("| 0.40 | 2.00 |"));
        // Does not apply: n/a, and no ratio; never a number.
        assert_eq!(
            row("| ipc_call |"),
            "| ipc_call | threads | ops/s | 1 | 2.00 k | 1.00 k | n/a | 0.50 | – |"
        );
        assert_eq!(
            row("| mmap_read_shared |"),
            "| mmap_read_shared | threads | ops/s | 1 | 70.0 | n/a | – | – | – |"
        );
        // Without ours-servers there is no per-structure table.
        let mono: Vec<Record> = recs
            .iter()
            .filter(|r| r.system != "ours-servers")
            .cloned()
            .collect();
        assert_eq!(structure_table(&aggregate(&mono), Na(&[])), "");
    }

    #[test]
    fn structure_table_adds_each_measured_placement() {
        let (mut recs, not) = structures();
        recs.push(sample("ours-servers-percore", "stat_private", 2, 0, 1600.0));
        let table = structure_table(&aggregate(&recs), Na(&not));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| workload | mode | unit | cores | ours (monolithic) | ours-servers | ours-servers-percore | linux \
             | ours-servers/ours | ours-servers/linux | ours-servers-percore/ours | ours-servers-percore/linux |"
        );
        let row = lines
            .iter()
            .find(|l| l.starts_with("| stat_private | threads | ops/s | 2 |"))
            .unwrap();
        // percore: 1600/2000 of ours, 1600/400 of linux; not measured at 1 core.
        assert!(row.ends_with("| 0.40 | 2.00 | 0.80 | 4.00 |"), "{row}");
        // ours-servers-dedicated was not measured: no column.
        assert!(!table.contains("dedicated"), "{table}");
    }

    /// A full result set (every default workload of a suite with servers,
    /// the migration workload among them, on monolithic, every servers
    /// system and Linux, at 1 and 2 vCPUs) renders a per-structure row per
    /// workload and core count, with a number in every column.
    #[test]
    fn structure_table_renders_every_system_and_default_workload() {
        use crate::suite::options::{default_workloads, SuiteSystem, ALL, MIGRATION_WORKLOAD};
        let servers = servers_systems();
        for s in [
            "ours-servers",
            "ours-servers-percore",
            "ours-servers-dedicated",
            "ours-servers-migrate",
            "ours-servers-copy2",
        ] {
            assert!(servers.contains(&s), "{s} missing from {servers:?}");
        }
        let workloads = default_workloads(ALL);
        assert!(workloads.contains(&MIGRATION_WORKLOAD));
        assert!(!default_workloads(&[SuiteSystem::Ours]).contains(&MIGRATION_WORKLOAD));
        let systems: Vec<&str> = core::iter::once("ours")
            .chain(servers.iter().copied())
            .chain(core::iter::once("linux"))
            .collect();
        let mut recs = Vec::new();
        for (w, workload) in workloads.iter().enumerate() {
            for (i, system) in systems.iter().enumerate() {
                for cores in [1, 2] {
                    // Distinct rates: 1000 + 100·system + 10·cores + workload.
                    let rate = 1000.0 + 100.0 * i as f64 + 10.0 * cores as f64 + w as f64;
                    recs.push(sample(system, workload, cores, 0, rate));
                }
            }
        }
        let table = structure_table(&aggregate(&recs), Na(&[]));
        let lines: Vec<&str> = table.lines().collect();
        let head: Vec<&str> = lines[2]
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        // 4 key columns, the systems, then two ratios per servers system.
        assert_eq!(
            head.len(),
            4 + systems.len() + 2 * servers.len(),
            "{}",
            lines[2]
        );
        assert_eq!(head[4], "ours (monolithic)");
        assert_eq!(&head[5..4 + systems.len()], &systems[1..]);
        assert!(
            head.contains(&"ours-servers-copy2/ours") && head.contains(&"ours-servers-copy2/linux")
        );
        for (w, workload) in workloads.iter().enumerate() {
            for cores in [1u32, 2] {
                let prefix = format!("| {workload} | threads | ops/s | {cores} |");
                let row = lines
                    .iter()
                    .find(|l| l.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("no row {prefix} in\n{table}"));
                let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
                assert_eq!(cells.len(), head.len(), "{row}");
                assert!(!cells.contains(&"–") && !cells.contains(&"n/a"), "{row}");
                // Each system's own median, in column order.
                for (i, _) in systems.iter().enumerate() {
                    let rate = 1000.0 + 100.0 * i as f64 + 10.0 * cores as f64 + w as f64;
                    assert_eq!(cells[4 + i], fmt_rate(rate), "{row}");
                }
                // copy2 / monolithic is its rate over ours'.
                let copy2 = systems
                    .iter()
                    .position(|s| *s == "ours-servers-copy2")
                    .unwrap();
                let col = head
                    .iter()
                    .position(|h| *h == "ours-servers-copy2/ours")
                    .unwrap();
                let base = 1000.0 + 10.0 * cores as f64 + w as f64;
                let want = (base + 100.0 * copy2 as f64) / base;
                assert_eq!(cells[col], format!("{want:.2}"), "{row}");
            }
        }
    }

    #[test]
    fn ipc_table_sets_the_round_trip_beside_getppid() {
        let (recs, not) = structures();
        let table = ipc_table(&aggregate(&recs), Na(&not));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("goal: at most 2"), "{table}");
        // ours: 3000/2000 = 1.5 getppid round trips (goal met); servers: 3.0 (not met).
        assert!(
            lines.contains(&"| ours | 1 | 3.00 k | 2.00 k | 1.50 | yes |"),
            "{table}"
        );
        assert!(
            lines.contains(&"| ours-servers | 1 | 3.00 k | 1.00 k | 3.00 | no |"),
            "{table}"
        );
        assert!(
            lines.contains(&"| linux | 1 | 900 | n/a | – | – |"),
            "{table}"
        );
        // No ipc_call anywhere: no table.
        let plain: Vec<Record> = recs
            .iter()
            .filter(|r| r.workload != "ipc_call")
            .cloned()
            .collect();
        assert_eq!(ipc_table(&aggregate(&plain), Na(&[])), "");
    }

    #[test]
    fn report_has_the_robustness_section() {
        use crate::robustness::{Event, Row, Section};
        let (recs, _) = structures();
        let section = Section {
            system: "ours-servers".into(),
            accel: "tcg".into(),
            cores: 2,
            repetitions: 3,
            rows: vec![Row {
                server: "fs".into(),
                process: "fsd".into(),
                event: Event::Replacement,
                pause_us: vec![3000, 1000, 2000],
                switch_us: vec![500, 700, 600],
                recovery_us: vec![],
                ops: Some(90),
                failed_ops: Some(0),
                clean_errors: None,
            }],
            failures: vec![],
        };
        let mut section = section;
        section.rows.push(crate::robustness::replacement_row(
            "net",
            "netd",
            &[crate::robustness::parse_as(
                crate::robustness::Checker::Net,
                "net_replace_check: round 1 switch_us=4000 pause_us=50000 quiesce_us=30 adopt_us=500 arena_kib=3000 call_us=9\n\
                 net_replace_check: ops=500 failed=0 wrong=0 median_us=18000 max_us_outside=90000\n\
                 net_replace_check: pass\n",
            )
            .unwrap()],
        ));
        section.rows.push(crate::robustness::crash_row(
            "net",
            "netd",
            &[(230000, 9), (250000, 7)],
        ));
        let info = ReportInfo {
            robustness: Some(section),
            ..ReportInfo::default()
        };
        let md = report_markdown(&recs, &info);
        assert!(md.contains("## Robustness (ours-servers)"), "{md}");
        assert!(
            md.contains("| fs (fsd) | replacement under load | 3 | 2.000 (1.000–3.000) | 0.600 (0.500–0.700) | – | 0 / 90 |"),
            "{md}"
        );
        assert!(
            md.contains("| net (netd) | replacement under load | 1 | 50.000 (50.000–50.000) | 4.000 (4.000–4.000) | – | 0 / 500 |"),
            "{md}"
        );
        assert!(
            md.contains("| net (netd) | crash + restart | 2 | – | – | 250.000 (230.000–250.000) | 16 clean errors (by design) |"),
            "{md}"
        );
        assert!(md.contains("cannot survive these faults by design"));
        let without = report_markdown(&recs, &ReportInfo::default());
        assert!(!without.contains("## Robustness"));
    }

    #[test]
    fn report_shows_not_applicable_apart_from_failures() {
        let (recs, not) = structures();
        let info = ReportInfo {
            not_applicable: not,
            failures: vec!["ours-servers seq_read 1 cores threads run 1: EIO".into()],
            ..ReportInfo::default()
        };
        let md = report_markdown(&recs, &info);
        assert!(md.contains("## Per structure: monolithic, servers, Linux"));
        assert!(md.contains("## Null IPC round trip vs getppid"));
        let na_section = &md[md.find("## Does not apply").expect("a section")..];
        let failures = md.find("## Runs without a result").unwrap();
        assert!(md.find("## Does not apply").unwrap() < failures);
        // One line per system and workload (the first reason), not per run.
        assert!(na_section.contains(
            "- tcg: ours-servers mmap_read_shared (threads): file mmap is not delegated\n"
        ));
        assert!(na_section.contains(
            "- tcg: linux ipc_call (threads): ipc_call: worker 0: ipc_call does not apply on this system\n"
        ));
        assert!(!na_section.contains("worker 1"));
        // The ipc_call group table and the summary print n/a for Linux.
        let group = &md[md.find("### ipc_call").unwrap()..];
        let group = &group[..group.find("\n### ").unwrap()];
        assert!(
            group
                .lines()
                .any(|l| l.starts_with("| 1 |") && l.contains("| n/a |")),
            "{group}"
        );
        let summary = summary_table(&aggregate(&recs), Na(&info.not_applicable));
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with("| ipc_call |") && l.contains("n/a")),
            "{summary}"
        );
    }
}
