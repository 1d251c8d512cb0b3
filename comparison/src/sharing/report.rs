//! The output of `comparison sharing`: `sharing.json` (every cell with its
//! top conflict lines), `sharing.csv` (one row per cell), `sharing.md` (the
//! report section), and plots of conflict lines per operation against the
//! vCPU count, one per system (a line per workload) and one per workload (a
//! line per system), as SVG and PNG.  When the output directory also holds
//! the suite's `report.md`, the section is appended to it (once).
//!
//! Invariants: files are replaced whole (write, then rename); a cell with no
//! operations reports 0 per operation, never NaN; the plots come last (they
//! need a font).  Must not run anything.

use crate::suite::plot::{clean, color, draw_system_line, err, to_png, to_svg};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One conflict line of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLine {
    pub pa: u64,
    pub readers: u64,
    pub writers: u64,
    /// Operations that touched it.
    pub ops: u64,
    pub writer_symbols: Vec<String>,
}

/// One (system, vCPUs, workload) result: one plugin dump.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub system: String,
    pub cores: usize,
    pub workload: String,
    pub ops: u64,
    pub cpus: u32,
    pub lines_touched: u64,
    pub conflict_lines: u64,
    pub shared_written_lines: u64,
    pub conflict_op_lines: u64,
    pub shared_written_op_lines: u64,
    pub top: Vec<TopLine>,
}

fn per_op(n: u64, ops: u64) -> f64 {
    if ops == 0 {
        0.0
    } else {
        n as f64 / ops as f64
    }
}

impl Cell {
    /// Conflict lines an average operation touched.
    pub fn conflicts_per_op(&self) -> f64 {
        per_op(self.conflict_op_lines, self.ops)
    }

    /// Lines written by 2+ vCPUs an average operation touched.
    pub fn shared_written_per_op(&self) -> f64 {
        per_op(self.shared_written_op_lines, self.ops)
    }

    fn to_json(&self) -> Value {
        json!({
            "system": self.system,
            "cores": self.cores,
            "workload": self.workload,
            "ops": self.ops,
            "cpus": self.cpus,
            "lines_touched": self.lines_touched,
            "conflict_lines": self.conflict_lines,
            "shared_written_lines": self.shared_written_lines,
            "conflict_op_lines": self.conflict_op_lines,
            "shared_written_op_lines": self.shared_written_op_lines,
            "conflicts_per_op": self.conflicts_per_op(),
            "shared_written_per_op": self.shared_written_per_op(),
            "top": self.top.iter().map(|l| json!({
                "pa": format!("{:#x}", l.pa),
                "readers": l.readers,
                "writers": l.writers,
                "ops": l.ops,
                "writer_symbols": l.writer_symbols,
            })).collect::<Vec<_>>(),
        })
    }
}

/// What the report says about the run.
#[derive(Debug, Clone, Default)]
pub struct SharingInfo {
    pub date: String,
    pub commit: String,
    pub qemu: String,
    pub linux: Option<String>,
    pub ops_per_worker: u64,
    pub warmup_ms: u64,
    pub command: String,
}

/// `sharing.json`: `{"info":..., "cells":[...], "failures":[...]}`.
pub fn to_json_text(cells: &[Cell], failures: &[String], info: &SharingInfo) -> String {
    let v = json!({
        "info": {
            "date": info.date,
            "commit": info.commit,
            "qemu": info.qemu,
            "linux": info.linux,
            "ops_per_worker": info.ops_per_worker,
            "warmup_ms": info.warmup_ms,
            "command": info.command,
        },
        "cells": cells.iter().map(Cell::to_json).collect::<Vec<_>>(),
        "failures": failures,
    });
    serde_json::to_string_pretty(&v).expect("cells serialise") + "\n"
}

pub const CSV_HEADER: &str = "system,workload,cores,ops,cpus,lines_touched,conflict_lines,shared_written_lines,conflict_op_lines,shared_written_op_lines,conflicts_per_op,shared_written_per_op,top_symbol";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `sharing.csv`.
pub fn to_csv(cells: &[Cell]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for c in cells {
        let top = c
            .top
            .first()
            .and_then(|l| l.writer_symbols.first())
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{:.4},{:.4},{}",
            csv_field(&c.system),
            csv_field(&c.workload),
            c.cores,
            c.ops,
            c.cpus,
            c.lines_touched,
            c.conflict_lines,
            c.shared_written_lines,
            c.conflict_op_lines,
            c.shared_written_op_lines,
            c.conflicts_per_op(),
            c.shared_written_per_op(),
            csv_field(&top)
        );
    }
    out
}

/// Systems in first-seen order, workloads in first-seen order, vCPU
/// counts ascending.
fn axes(cells: &[Cell]) -> (Vec<String>, Vec<String>, Vec<usize>) {
    let mut systems = Vec::new();
    let mut workloads = Vec::new();
    let mut cores = BTreeSet::new();
    for c in cells {
        if !systems.contains(&c.system) {
            systems.push(c.system.clone());
        }
        if !workloads.contains(&c.workload) {
            workloads.push(c.workload.clone());
        }
        cores.insert(c.cores);
    }
    (systems, workloads, cores.into_iter().collect())
}

fn find<'a>(cells: &'a [Cell], system: &str, workload: &str, cores: usize) -> Option<&'a Cell> {
    cells
        .iter()
        .find(|c| c.system == system && c.workload == workload && c.cores == cores)
}

/// The table printed at the end: conflict lines per operation, one row per
/// workload, one column per (system, vCPUs).
pub fn summary_table(cells: &[Cell]) -> String {
    let (systems, workloads, cores) = axes(cells);
    let mut cols = Vec::new();
    for n in &cores {
        for s in &systems {
            cols.push((s.clone(), *n));
        }
    }
    let width = workloads.iter().map(|w| w.len()).max().unwrap_or(8).max(8);
    let mut out = format!("{:width$}", "conflicts/op");
    for (s, n) in &cols {
        let _ = write!(out, " {:>14}", format!("{s}@{n}"));
    }
    out.push('\n');
    for w in &workloads {
        let _ = write!(out, "{w:width$}");
        for (s, n) in &cols {
            let v = find(cells, s, w, *n)
                .map(|c| format!("{:.3}", c.conflicts_per_op()))
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, " {v:>14}");
        }
        out.push('\n');
    }
    out
}

/// The markdown section.
pub fn report_markdown(cells: &[Cell], failures: &[String], info: &SharingInfo) -> String {
    let (systems, workloads, cores) = axes(cells);
    let mut md = String::from("## Sharing: cache lines shared between CPUs per operation\n\n");
    let _ = writeln!(
        md,
        "Counted by the QEMU TCG plugin `tools/sharing-plugin` (docs/SHARING.md) in windows \
         around {} marked operations per worker (`wis --mark-ops {}`, after {} ms of warm-up), \
         under TCG; time is not measured. A *conflict line* is a 64-byte guest-physical line \
         written by one vCPU and read or written by another during the workload's windows; \
         **conflicts/op** is the number of conflict lines an average operation touched \
         (0 means the operation scales on real hardware, whatever this host). \
         *shared-written/op* counts only lines that two or more vCPUs wrote. \
         The slow workloads ({}) mark fewer per worker at many vCPUs: about {} in all \
         (`wis --mark-ops-of`, at least 1 per worker); each cell's record keeps its \
         operation count.\n",
        info.ops_per_worker,
        info.ops_per_worker,
        info.warmup_ms,
        super::runner::SLOW_WORKLOADS.join(", "),
        2 * info.ops_per_worker
    );
    let _ = writeln!(
        md,
        "Date {} UTC, commit `{}`, {}{}. Command: `{}`.\n",
        info.date,
        info.commit,
        info.qemu,
        info.linux
            .as_ref()
            .map(|l| format!(", Linux {l} (nokaslr)"))
            .unwrap_or_default(),
        info.command
    );
    for n in &cores {
        let _ = writeln!(md, "### {n} vCPUs: conflicts/op (shared-written/op)\n");
        md.push_str("| workload |");
        for s in &systems {
            let _ = write!(md, " {s} |");
        }
        md.push_str("\n|---|");
        for _ in &systems {
            md.push_str("---:|");
        }
        md.push('\n');
        for w in &workloads {
            let _ = write!(md, "| {w} |");
            for s in &systems {
                match find(cells, s, w, *n) {
                    Some(c) => {
                        let _ = write!(
                            md,
                            " {:.3} ({:.3}) |",
                            c.conflicts_per_op(),
                            c.shared_written_per_op()
                        );
                    }
                    None => md.push_str(" – |"),
                }
            }
            md.push('\n');
        }
        md.push('\n');
    }
    md.push_str("### Top conflict lines (largest vCPU count measured)\n\n");
    md.push_str("Per system and workload: the lines most operations touched, with the code that wrote them.\n\n");
    md.push_str("| system | workload | vCPUs | line (pa) | ops | readers/writers | writers' code |\n|---|---|---:|---|---:|---|---|\n");
    for s in &systems {
        for w in &workloads {
            let Some(c) = cores.iter().rev().find_map(|n| find(cells, s, w, *n)) else {
                continue;
            };
            for l in c.top.iter().take(3) {
                let _ = writeln!(
                    md,
                    "| {s} | {w} | {} | {:#x} | {} | {}/{} | {} |",
                    c.cores,
                    l.pa,
                    l.ops,
                    l.readers.count_ones(),
                    l.writers.count_ones(),
                    functions(&l.writer_symbols)
                        .iter()
                        .take(3)
                        .map(|s| format!("`{}`", s.replace('|', "\\|")))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    md.push('\n');
    md.push_str("Plots: `plots/sharing-<system>.svg` (a line per workload) and `plots/sharing-workload-<workload>.svg` (a line per system).\n\n");
    if !failures.is_empty() {
        md.push_str("### Workloads without a result\n\n");
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    md
}

/// `name` with every generic argument list shortened to `<..>`.
pub fn short_name(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for (i, ch) in name.char_indices() {
        match ch {
            // A leading `<` opens a qualified path (`<T as Trait>::f`): keep it.
            '<' if i > 0 => {
                if depth == 0 {
                    out.push_str("<..>");
                }
                depth += 1;
            }
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

/// The distinct functions (offsets dropped, generics shortened) of
/// `symbols`, in first-seen order.
pub fn functions(symbols: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in symbols {
        let base = s.rsplit_once("+0x").map_or(s.as_str(), |(b, _)| b);
        let name = short_name(base);
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// The marker line that opens the section in the suite's `report.md`.
const SECTION_MARK: &str = "<!-- comparison sharing -->";

/// Write every output file into `dir`.
pub fn write_outputs(
    dir: &Path,
    cells: &[Cell],
    failures: &[String],
    info: &SharingInfo,
) -> Result<()> {
    std::fs::create_dir_all(dir.join("plots"))
        .with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &dir.join("sharing.json"),
        to_json_text(cells, failures, info).as_bytes(),
    )?;
    write_atomic(&dir.join("sharing.csv"), to_csv(cells).as_bytes())?;
    let md = report_markdown(cells, failures, info);
    write_atomic(&dir.join("sharing.md"), md.as_bytes())?;
    // Merged into the suite's report when both ran into this directory:
    // whatever followed an earlier merge is replaced.
    let suite_report = dir.join("report.md");
    if let Ok(text) = std::fs::read_to_string(&suite_report) {
        let head = text.split(SECTION_MARK).next().unwrap_or("");
        let merged = format!("{}\n{SECTION_MARK}\n{md}", head.trim_end());
        write_atomic(&suite_report, merged.as_bytes())?;
    }
    let (systems, workloads, _) = axes(cells);
    for s in &systems {
        let series: Vec<(String, Vec<(f64, f64)>)> = workloads
            .iter()
            .map(|w| (w.clone(), points(cells, s, w)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let title = format!("{s}: conflict lines per operation");
        let svg = dir.join("plots").join(format!("sharing-{}.svg", clean(s)));
        write_atomic(&svg, to_svg(|r| draw(r, &title, &series))?.as_bytes())?;
        write_atomic(
            &svg.with_extension("png"),
            &to_png(|r| draw(r, &title, &series))?,
        )?;
    }
    for w in &workloads {
        let series: Vec<(String, Vec<(f64, f64)>)> = systems
            .iter()
            .map(|s| (s.clone(), points(cells, s, w)))
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let title = format!("{w}: conflict lines per operation");
        let svg = dir
            .join("plots")
            .join(format!("sharing-workload-{}.svg", clean(w)));
        write_atomic(&svg, to_svg(|r| draw(r, &title, &series))?.as_bytes())?;
        write_atomic(
            &svg.with_extension("png"),
            &to_png(|r| draw(r, &title, &series))?,
        )?;
    }
    Ok(())
}

/// (vCPUs, conflicts/op) of one system and workload, ascending.
fn points(cells: &[Cell], system: &str, workload: &str) -> Vec<(f64, f64)> {
    let mut by: BTreeMap<usize, f64> = BTreeMap::new();
    for c in cells
        .iter()
        .filter(|c| c.system == system && c.workload == workload)
    {
        by.insert(c.cores, c.conflicts_per_op());
    }
    by.into_iter().map(|(n, v)| (n as f64, v)).collect()
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let max_cores = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max);
    let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5f64..(max_cores + 0.5), 0.0f64..y_top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("vCPUs")
        .y_desc("conflict lines / operation")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_labels((max_cores as usize + 1).min(16))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        draw_system_line(&mut chart, name, color(i), pts.clone())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(system: &str, cores: usize, workload: &str, conflict_op_lines: u64) -> Cell {
        Cell {
            system: system.into(),
            cores,
            workload: workload.into(),
            ops: 40,
            cpus: cores as u32,
            lines_touched: 100,
            conflict_lines: 2,
            shared_written_lines: 1,
            conflict_op_lines,
            shared_written_op_lines: 0,
            top: vec![TopLine {
                pa: 0x1000,
                readers: 1,
                writers: 2,
                ops: 40,
                writer_symbols: vec!["kernel::mm::frame::alloc".into()],
            }],
        }
    }

    #[test]
    fn outputs_hold_every_cell() {
        let cells = vec![
            cell("ours", 2, "getppid", 0),
            cell("ours-global", 2, "getppid", 40),
            cell("ours", 8, "getppid", 0),
        ];
        assert_eq!(cells[1].conflicts_per_op(), 1.0);
        let csv = to_csv(&cells);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.contains(
            "ours-global,getppid,2,40,2,100,2,1,40,0,1.0000,0.0000,kernel::mm::frame::alloc"
        ));
        let md = report_markdown(
            &cells,
            &["linux 2 vCPUs x: y".into()],
            &SharingInfo::default(),
        );
        assert!(
            md.contains("| getppid | 0.000 (0.000) | 1.000 (0.000) |"),
            "{md}"
        );
        assert!(md.contains("- linux 2 vCPUs x: y"));
        let table = summary_table(&cells);
        assert!(table.contains("ours-global@2"), "{table}");
        let json: Value =
            serde_json::from_str(&to_json_text(&cells, &[], &SharingInfo::default())).unwrap();
        assert_eq!(json["cells"].as_array().unwrap().len(), 3);
        let empty = Cell {
            ops: 0,
            ..cells[0].clone()
        };
        assert_eq!(
            functions(&[
                "a::Handle<x::Y<Z>,W>::insert+0x10".into(),
                "a::Handle<Q>::insert+0x20".into(),
                "<T as core::Foo>::f".into()
            ]),
            vec![
                "a::Handle<..>::insert".to_string(),
                "<T as core::Foo>::f".into()
            ]
        );
        assert_eq!(empty.conflicts_per_op(), 0.0);
    }
}
