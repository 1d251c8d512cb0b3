//! `comparison commuter`: the COMMUTER-style pair table.  Boots each system
//! at N vCPUs (default 2) with the sharing plugin, runs the `commuter` test
//! program (userland/src/bin/commuter.rs), maps each dump's label to its
//! pair (the label is the pair's index in `commuter --list`), and writes
//! `pairs.md` and `pairs.csv`: per pair and system, whether the pair is
//! conflict-free, and otherwise its conflict lines and the top symbol that
//! wrote them.
//!
//! A pair runs `--reps` times together, each in its own dump; the table
//! takes the run with the fewest conflict lines (a timer tick or a
//! first-use allocation inside one run is not the pair's sharing) and says
//! the range.  Invariants: a system whose run fails, or a pair without a
//! record, is reported as such, never as conflict-free; the program's own
//! verdict line (`commutes`, `order-dependent`, `<-- WRONG`) is kept next
//! to the counts.  Must not: change the plugin's records or time anything.

use super::plugin::{self, Record};
use super::symbols;
use crate::qemu::{Accel, VmConfig};
use crate::run::{self, Echo, RunExtras, RunRequest, System, Systems, Verdict};
use crate::suite::options::SuiteSystem;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What `comparison commuter` was asked to do.
pub struct PairsOptions {
    pub systems: Vec<SuiteSystem>,
    pub cores: usize,
    /// Concurrent runs of each pair (`commuter --reps`).
    pub reps: u32,
    /// Only these pairs (`commuter --only`), all when `None`.
    pub only: Option<String>,
    pub out: PathBuf,
    pub timeout: Duration,
    pub memory_mib: usize,
    pub verbose: bool,
}

/// One pair on one system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The program's line for the pair, after `NAME: ` (empty if missing).
    pub verdict: String,
    /// Concurrent runs the plugin dumped.
    pub runs: usize,
    /// Fewest and most conflict lines over those runs.
    pub min_conflicts: u64,
    pub max_conflicts: u64,
    /// Lines written by both CPUs in the run with the fewest conflicts.
    pub shared_written: u64,
    /// Writers of that run's conflict lines, most lines first:
    /// (symbol, conflict lines it wrote).
    pub top: Vec<(String, usize)>,
}

impl Cell {
    pub fn conflict_free(&self) -> bool {
        self.runs > 0 && self.min_conflicts == 0
    }
}

/// One system's column of the table.
#[derive(Debug, Clone)]
pub struct Column {
    pub system: String,
    /// Why the system gave no table, if it did not.
    pub failure: Option<String>,
    /// By pair name.
    pub cells: BTreeMap<String, Cell>,
}

/// The whole table.
pub struct PairsOutcome {
    /// Pair names in label order.
    pub pairs: Vec<String>,
    pub columns: Vec<Column>,
    pub cores: usize,
    pub markdown: String,
    pub csv: String,
}

/// Pair names in label order: `commuter --list` on the host (it is a
/// static Linux x86_64 binary, like the harness's host).
pub fn pair_names(commuter: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(commuter)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", commuter.display()))?;
    if !out.status.success() {
        bail!("{} --list failed", commuter.display());
    }
    parse_list(&String::from_utf8_lossy(&out.stdout))
}

/// `INDEX NAME` lines, indices 0, 1, 2, ... in order.
pub fn parse_list(text: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (i, name) = line
            .split_once(' ')
            .with_context(|| format!("bad `commuter --list` line `{line}`"))?;
        if i.parse::<usize>().ok() != Some(names.len()) {
            bail!("`commuter --list` line `{line}` is out of order");
        }
        names.push(name.trim().to_string());
    }
    Ok(names)
}

/// The program's `NAME: ...` lines, by name.
pub fn verdicts(output: &str, names: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in output.lines() {
        if let Some((name, rest)) = line.split_once(": ") {
            if names.iter().any(|n| n == name) {
                out.insert(name.to_string(), rest.trim().to_string());
            }
        }
    }
    out
}

/// Names for guest PCs.
pub trait Symbolize {
    fn symbol(&self, pc: u64) -> String;
}

/// Kernel PCs through `symbols` as function names (no offset, generic
/// arguments dropped for the table); every user PC is `user` (the test program is a static PIE
/// loaded at a base the records do not carry).
pub struct KernelSymbols(pub symbols::Symbols);

impl Symbolize for KernelSymbols {
    fn symbol(&self, pc: u64) -> String {
        if pc >= 0xffff_8000_0000_0000 {
            let name = symbols::name_pc(&self.0, pc);
            // The function, not the instruction: writers are counted per function.
            let function = match name.rsplit_once("+0x") {
                Some((f, _)) if !f.is_empty() => f,
                _ => &name,
            };
            drop_generics(function)
        } else {
            "user".to_string()
        }
    }
}

/// `a::B<T>::c` as `a::B::c`: generic arguments after a name go (the
/// `<X as Y>` of a trait method stays).
pub fn drop_generics(name: &str) -> String {
    let mut out = String::new();
    let mut skip = 0usize;
    let mut prev = ' ';
    for c in name.chars() {
        match c {
            '<' if skip > 0 || prev.is_alphanumeric() || prev == '_' => skip += 1,
            '>' if skip > 0 => skip -= 1,
            _ if skip > 0 => {}
            _ => out.push(c),
        }
        prev = c;
    }
    out
}

/// One pair's cell from its records (all with its label).
pub fn cell(verdict: String, records: &[&Record], symbols: &dyn Symbolize) -> Cell {
    let best = records.iter().min_by_key(|r| r.conflict_lines);
    let mut top: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(best) = best {
        for line in &best.lines {
            let mut seen = Vec::new();
            for &pc in &line.writer_pcs {
                let name = symbols.symbol(pc);
                if !seen.contains(&name) {
                    seen.push(name);
                }
            }
            for name in seen {
                *top.entry(name).or_default() += 1;
            }
        }
    }
    let mut top: Vec<(String, usize)> = top.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Cell {
        verdict,
        runs: records.len(),
        min_conflicts: best.map_or(0, |r| r.conflict_lines),
        max_conflicts: records.iter().map(|r| r.conflict_lines).max().unwrap_or(0),
        shared_written: best.map_or(0, |r| r.shared_written_lines),
        top,
    }
}

/// A column from the program's output and the plugin's records.
pub fn column(
    system: &str,
    names: &[String],
    output: &str,
    records: &[Record],
    symbols: &dyn Symbolize,
) -> Column {
    let verdicts = verdicts(output, names);
    let mut cells = BTreeMap::new();
    for (label, name) in names.iter().enumerate() {
        let Some(verdict) = verdicts.get(name) else {
            continue;
        };
        let mine: Vec<&Record> = records
            .iter()
            .filter(|r| r.label as usize == label && !r.at_exit)
            .collect();
        cells.insert(name.clone(), cell(verdict.clone(), &mine, symbols));
    }
    Column {
        system: system.to_string(),
        failure: None,
        cells,
    }
}

fn cell_text(cell: Option<&Cell>) -> String {
    let Some(c) = cell else {
        return "—".into();
    };
    if c.runs == 0 {
        return "no record".into();
    }
    if c.conflict_free() {
        return if c.max_conflicts == 0 {
            "0".into()
        } else {
            format!("0 (≤{})", c.max_conflicts)
        };
    }
    let range = if c.max_conflicts != c.min_conflicts {
        format!("{}–{}", c.min_conflicts, c.max_conflicts)
    } else {
        c.min_conflicts.to_string()
    };
    match c.top.first() {
        Some((sym, n)) => format!("{range}: {sym} ({n})"),
        None => range,
    }
}

/// `pairs.md` and `pairs.csv`.
pub fn render(names: &[String], columns: &[Column], cores: usize) -> (String, String) {
    let mut md = String::new();
    let _ = writeln!(md, "# COMMUTER pair table, {cores} vCPUs\n");
    let _ = writeln!(
        md,
        "Conflict lines (64-byte lines written by one CPU and touched by the other \
         inside the pair's windows), fewest over the concurrent runs (range when \
         runs differ), and the top writer symbol with the number of conflict lines \
         it wrote. `0` = conflict-free. `control_*` pairs do not commute and must \
         conflict.\n"
    );
    for c in columns {
        if let Some(why) = &c.failure {
            let _ = writeln!(md, "- **{}**: no table: {why}", c.system);
        }
    }
    let _ = write!(md, "\n| pair |");
    for c in columns {
        let _ = write!(md, " {} |", c.system);
    }
    let _ = write!(md, "\n|---|");
    for _ in columns {
        let _ = write!(md, "---|");
    }
    md.push('\n');
    for name in names {
        if columns.iter().all(|c| !c.cells.contains_key(name)) {
            continue;
        }
        let _ = write!(md, "| {name} |");
        for c in columns {
            let _ = write!(md, " {} |", cell_text(c.cells.get(name)));
        }
        md.push('\n');
    }
    md.push('\n');
    for c in columns.iter().filter(|c| c.failure.is_none()) {
        let commuting: Vec<&Cell> = c
            .cells
            .iter()
            .filter(|(n, _)| !n.starts_with("control_"))
            .map(|(_, cell)| cell)
            .collect();
        let free = commuting.iter().filter(|c| c.conflict_free()).count();
        let wrong = c
            .cells
            .values()
            .filter(|c| c.verdict.contains("WRONG"))
            .count();
        let _ = writeln!(
            md,
            "- {}: {free} of {} commuting pairs conflict-free{}",
            c.system,
            commuting.len(),
            if wrong > 0 {
                format!("; {wrong} pairs failed their own check")
            } else {
                String::new()
            }
        );
    }
    let mut csv = String::from(
        "pair,system,conflict_free,min_conflict_lines,max_conflict_lines,shared_written_lines,runs,top_symbol,top_symbol_lines,verdict\n",
    );
    for name in names {
        for c in columns {
            let Some(cell) = c.cells.get(name) else {
                continue;
            };
            let (sym, n) = cell
                .top
                .first()
                .map_or((String::new(), 0), |(s, n)| (s.clone(), *n));
            let _ = writeln!(
                csv,
                "{name},{},{},{},{},{},{},\"{}\",{n},\"{}\"",
                c.system,
                cell.conflict_free(),
                cell.min_conflicts,
                cell.max_conflicts,
                cell.shared_written,
                cell.runs,
                sym.replace('"', "'"),
                cell.verdict.replace('"', "'")
            );
        }
    }
    (md, csv)
}

/// Kernel symbols of `system`: our kernel's ELF, or Linux's kallsyms
/// (`symbols::linux`, one extra boot the first time, then cached).
fn kernel_symbols(systems: &Systems) -> Result<symbols::Symbols> {
    if let Some(a) = &systems.artifacts {
        return symbols::ours(&a.kernel);
    }
    let target = crate::build::target_dir(&crate::build::workspace_root())?;
    Ok(symbols::linux(&target, systems)?.0)
}

/// Run `commuter` on one system with the plugin; its column.
fn run_system(
    opts: &PairsOptions,
    system: SuiteSystem,
    plugin_so: &Path,
    commuter: &Path,
    names: &[String],
) -> Result<Column> {
    let kernel = system.kernel();
    let systems = Systems::prepare(kernel)?;
    let out = opts.out.join(format!("records-{}.jsonl", system.name()));
    let _ = std::fs::remove_file(&out);
    let qemu_args = plugin::qemu_args(
        plugin_so,
        &out,
        Some(plugin::direct_map(kernel, opts.memory_mib)),
        16,
    )?;
    let mut cmdline = system.extra_cmdline().to_string();
    if kernel == System::Linux {
        // (`no_timer_check` is in every Linux boot: `linux::BASE_APPEND`.)
        cmdline = format!("{cmdline} {}", plugin::LINUX_NOKASLR)
            .trim()
            .to_string();
    }
    let mut args = vec!["--reps".to_string(), opts.reps.to_string()];
    if let Some(only) = &opts.only {
        args.extend(["--only".to_string(), only.clone()]);
    }
    let request = RunRequest {
        system: kernel,
        program: commuter.to_path_buf(),
        files: vec![],
        args,
        locks: system.locks(),
        extra_cmdline: cmdline,
        vm: VmConfig {
            disks: Vec::new(),
            cores: opts.cores,
            memory_mib: opts.memory_mib,
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
    let result = run::run_with_qemu_args(
        &systems,
        &request,
        &RunExtras {
            structure: system.structure(),
            ..RunExtras::default()
        },
        &qemu_args,
    )?;
    std::fs::write(
        opts.out.join(format!("output-{}.txt", system.name())),
        &result.output,
    )?;
    if result.verdict != Verdict::Exited(0) {
        bail!(
            "commuter ended {:?}; last lines:\n{}",
            result.verdict,
            result.outcome.tail(15)
        );
    }
    let records = plugin::read_records(&out)?;
    let symbols = KernelSymbols(kernel_symbols(&systems)?);
    Ok(column(
        system.name(),
        names,
        &result.output,
        &records,
        &symbols,
    ))
}

/// Run the pair table on every system; write `pairs.md` and `pairs.csv`
/// into `opts.out`.  A system that fails gets a column with its failure.
pub fn run_pairs(opts: &PairsOptions) -> Result<PairsOutcome> {
    std::fs::create_dir_all(&opts.out).with_context(|| format!("making {}", opts.out.display()))?;
    let plugin_so = plugin::build_plugin()?;
    let commuter = crate::userland::build()?.program("commuter")?;
    let names = pair_names(&commuter)?;
    let mut columns = Vec::new();
    for &system in &opts.systems {
        eprintln!("commuter: {} at {} vCPUs ...", system.name(), opts.cores);
        match run_system(opts, system, &plugin_so, &commuter, &names) {
            Ok(c) => columns.push(c),
            Err(e) => {
                eprintln!("commuter: {}: {e:#}", system.name());
                columns.push(Column {
                    system: system.name().to_string(),
                    failure: Some(format!("{e:#}").lines().next().unwrap_or("").to_string()),
                    cells: BTreeMap::new(),
                });
            }
        }
    }
    let (markdown, csv) = render(&names, &columns, opts.cores);
    std::fs::write(opts.out.join("pairs.md"), &markdown)?;
    std::fs::write(opts.out.join("pairs.csv"), &csv)?;
    Ok(PairsOutcome {
        pairs: names,
        columns,
        cores: opts.cores,
        markdown,
        csv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharing::plugin::Line;

    fn record(label: u32, conflicts: u64, pcs: &[u64]) -> Record {
        Record {
            label,
            seq: 0,
            ops: 2,
            cpus: 2,
            lines_touched: 10,
            conflict_lines: conflicts,
            shared_written_lines: 0,
            conflict_op_lines: conflicts,
            shared_written_op_lines: 0,
            at_exit: false,
            lines: pcs
                .iter()
                .map(|&pc| Line {
                    pa: 0x1000,
                    readers: 1,
                    writers: 2,
                    ops: 2,
                    writer_pcs: vec![pc],
                })
                .collect(),
        }
    }

    #[test]
    fn list_and_verdicts_parse() {
        let names = parse_list("0 getpid\n1 control_x\n").unwrap();
        assert_eq!(names, ["getpid", "control_x"]);
        assert!(parse_list("1 getpid\n").is_err());
        let v = verdicts(
            "getpid: 1 1 commutes\nnoise\ncontrol_x: 0 1 order-dependent\n",
            &names,
        );
        assert_eq!(v["getpid"], "1 1 commutes");
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn cells_take_the_quietest_run_and_name_its_writer() {
        let map = KernelSymbols(symbols::Symbols::from_system_map(
            "ffffffff81000000 T lock_acquire\nffffffff81000100 T other\n",
        ));
        let records = [
            record(0, 2, &[0xffff_ffff_8100_0010, 0xffff_ffff_8100_0020]),
            record(0, 1, &[0xffff_ffff_8100_0110]),
            record(1, 0, &[]),
        ];
        let names = vec!["a".to_string(), "b".to_string()];
        let col = column(
            "ours",
            &names,
            "a: 0 0 commutes\nb: 1 1 commutes\n",
            &records,
            &map,
        );
        let a = &col.cells["a"];
        assert_eq!((a.runs, a.min_conflicts, a.max_conflicts), (2, 1, 2));
        assert_eq!(a.top, [("other".to_string(), 1)]);
        assert!(!a.conflict_free());
        assert!(col.cells["b"].conflict_free());
        let (md, csv) = render(&names, &[col], 2);
        assert!(md.contains("| a | 1–2: other (1) |"), "{md}");
        assert!(md.contains("| b | 0 |"), "{md}");
        assert!(
            csv.contains("a,ours,false,1,2,0,2,\"other\",1,\"0 0 commutes\""),
            "{csv}"
        );
    }

    #[test]
    fn a_pair_without_records_is_not_conflict_free() {
        let none = KernelSymbols(symbols::Symbols::default());
        let c = cell("0 0 commutes".into(), &[], &none);
        assert!(!c.conflict_free());
        assert_eq!(cell_text(Some(&c)), "no record");
    }

    #[test]
    fn generic_arguments_drop() {
        assert_eq!(
            drop_generics("alloc::btree::node::Handle<NodeRef<Mut,K>,Edge>::insert_recursing"),
            "alloc::btree::node::Handle::insert_recursing"
        );
        assert_eq!(
            drop_generics("<kernel::lock::VmGuard<T> as core::ops::drop::Drop>::drop"),
            "<kernel::lock::VmGuard as core::ops::drop::Drop>::drop"
        );
        let none = KernelSymbols(symbols::Symbols::default());
        assert_eq!(none.symbol(0x5555_5555_0000), "user");
    }
}
