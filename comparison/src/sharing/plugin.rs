//! The sharing plugin from the harness's side: building it, the QEMU
//! arguments that load it, each system's direct map, and reading its
//! records (docs/SHARING.md has the marker protocol and the record).
//!
//! Owns the one `cargo build` of `tools/sharing-plugin` (a host `cdylib`,
//! never committed) and the parse of its JSON lines.  Invariants: a
//! record that does not parse is an error naming the file and line, never
//! skipped; the plugin's path is checked to exist.  Must not: run QEMU
//! (`super::runner` does) or interpret the counts.

use crate::run::System;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming a prebuilt plugin (skips the cargo build).
pub const PLUGIN_ENV: &str = "COMPARISON_SHARING_PLUGIN";
/// The plugin's package and file name.
pub const PACKAGE: &str = "sharing-plugin";
pub const FILE_NAME: &str = "libsharing_plugin.so";

/// Our kernel's direct map (the built-in loader's and Limine's HHDM at
/// 4-level paging).
pub const OURS_DIRECT_MAP: u64 = 0xffff_8000_0000_0000;
/// Linux's direct map (`page_offset_base`) with `nokaslr`, 4-level paging.
pub const LINUX_DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
/// Linux command-line word that fixes the direct map and the kernel's
/// text at their `System.map` addresses.
pub const LINUX_NOKASLR: &str = "nokaslr";

/// Build the plugin (release) and return its path, or take the one
/// `COMPARISON_SHARING_PLUGIN` names.
pub fn build_plugin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PLUGIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{PLUGIN_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let root = crate::build::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "-p", PACKAGE])
        .current_dir(&root)
        .output()
        .context("running cargo to build the sharing plugin")?;
    if !out.status.success() {
        bail!(
            "building the sharing plugin ({PACKAGE}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = crate::build::target_dir(&root)?
        .join("release")
        .join(FILE_NAME);
    if !path.is_file() {
        bail!("the plugin build left no {}", path.display());
    }
    Ok(path)
}

/// The direct map of `system` over `memory_mib` of RAM, which the plugin
/// translates itself.
pub fn direct_map(system: System, memory_mib: usize) -> (u64, u64) {
    let base = match system {
        System::Ours => OURS_DIRECT_MAP,
        System::Linux => LINUX_DIRECT_MAP,
    };
    (base, (memory_mib as u64) << 20)
}

/// QEMU's `-plugin` arguments: records to `out`, `direct` as the linear
/// map `(base, guest RAM bytes)` (or every address through QEMU's lookup
/// when `None`).  The map's size is the RAM, so that device memory seen
/// through the direct map (the local APIC at 0xfee00000) goes through
/// QEMU's lookup, which leaves I/O out.
pub fn qemu_args(
    plugin: &Path,
    out: &Path,
    direct: Option<(u64, u64)>,
    top: usize,
) -> Result<Vec<String>> {
    let (p, o) = (plugin.to_string_lossy(), out.to_string_lossy());
    if p.contains(',') || o.contains(',') {
        bail!("the plugin path and the output path may not contain a comma (QEMU's option syntax)");
    }
    let mut spec = format!("{p},arg=out={o},arg=top={top}");
    if let Some((base, size)) = direct {
        spec.push_str(&format!(",arg=direct={base:#x}:{size:#x}"));
    }
    Ok(vec!["-plugin".into(), spec])
}

/// One conflict line of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub pa: u64,
    pub readers: u64,
    pub writers: u64,
    /// Operations that touched the line.
    pub ops: u64,
    pub writer_pcs: Vec<u64>,
}

/// One dump record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub label: u32,
    pub seq: u64,
    pub ops: u64,
    pub cpus: u32,
    pub lines_touched: u64,
    pub conflict_lines: u64,
    pub shared_written_lines: u64,
    /// Sum over conflict lines of the operations touching each.
    pub conflict_op_lines: u64,
    /// Sum over lines written by 2+ vCPUs of the operations touching each.
    pub shared_written_op_lines: u64,
    pub at_exit: bool,
    pub lines: Vec<Line>,
}

fn hex(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// Parse one record line.
pub fn parse_record(text: &str) -> Result<Record> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    let num = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("field {k:?} missing or not a number"))
    };
    let mut lines = Vec::new();
    for l in v["lines"].as_array().context("field \"lines\" missing")? {
        lines.push(Line {
            pa: hex(&l["pa"]).context("line without a hex \"pa\"")?,
            readers: l["readers"].as_u64().context("line without \"readers\"")?,
            writers: l["writers"].as_u64().context("line without \"writers\"")?,
            ops: l["ops"].as_u64().context("line without \"ops\"")?,
            writer_pcs: l["writer_pcs"]
                .as_array()
                .context("line without \"writer_pcs\"")?
                .iter()
                .map(|pc| hex(pc).context("a writer PC is not hex"))
                .collect::<Result<_>>()?,
        });
    }
    Ok(Record {
        label: num("label")? as u32,
        seq: num("seq")?,
        ops: num("ops")?,
        cpus: num("cpus")? as u32,
        lines_touched: num("lines_touched")?,
        conflict_lines: num("conflict_lines")?,
        shared_written_lines: num("shared_written_lines")?,
        conflict_op_lines: num("conflict_op_lines")?,
        shared_written_op_lines: num("shared_written_op_lines")?,
        at_exit: v["at_exit"].as_bool().unwrap_or(false),
        lines,
    })
}

/// Every record in the plugin's file (none if it does not exist).
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_record(l).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse() {
        let r = parse_record(
            r#"{"label":3,"seq":0,"ops":2,"cpus":2,"lines_touched":5,"conflict_lines":1,"shared_written_lines":1,"conflict_op_lines":2,"shared_written_op_lines":2,"lines":[{"pa":"0x1040","readers":0,"writers":3,"ops":2,"writer_pcs":["0x401000","0xffffffff80001234"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (r.label, r.ops, r.conflict_lines, r.at_exit),
            (3, 2, 1, false)
        );
        assert_eq!(r.lines[0].pa, 0x1040);
        assert_eq!(r.lines[0].writer_pcs[1], 0xffff_ffff_8000_1234);
        assert!(parse_record(r#"{"label":1}"#).is_err());
    }

    #[test]
    fn plugin_arguments() {
        let args = qemu_args(
            Path::new("/p.so"),
            Path::new("/o"),
            Some(direct_map(System::Ours, 512)),
            8,
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "-plugin",
                "/p.so,arg=out=/o,arg=top=8,arg=direct=0xffff800000000000:0x20000000"
            ]
        );
        assert!(qemu_args(Path::new("/a,b"), Path::new("/o"), None, 8).is_err());
    }
}
