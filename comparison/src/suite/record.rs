//! One measured result of the suite, and its files: `results.json` (an array
//! of records), `results.csv`, and the workload's own output line.
//!
//! Owns the record's fields and their names (the JSON keys are the contract
//! with `--import` and with other systems that feed results in), parsing a
//! `wis` output line, and reading imported files.
//!
//! Invariants: a record always has a system, a workload, a core count, an
//! accelerator and a finite, non-negative `ops_per_sec`; bad input is an
//! error naming the file and the field, never a panic.  It must not run
//! anything: the runner (`runner.rs`) measures, this module only holds data.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// One (system, workload, mode, cores, run) measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `ours`, `ours-global`, `linux`, or an imported system's name.
    pub system: String,
    pub workload: String,
    /// `threads` or `procs`.
    pub mode: String,
    /// vCPUs of the virtual machine.
    pub cores: u32,
    /// Workers the workload ran (one per core in the suite).
    pub workers: u32,
    /// Index of the repetition, 0-based.
    pub run: u32,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// `ops` unless the workload counts something else (`bytes`).
    pub unit: String,
    pub accel: String,
    pub qemu_version: String,
    pub cpu_model: String,
    pub commit: String,
    /// The kernel command line (ours) or Linux's `-append` plus its package.
    pub kernel_options: String,
    /// Linux: its `/sys/devices/system/cpu/vulnerabilities/*` lines
    /// (`NAME: TEXT`, joined by ` | `: the texts hold `;`) as that boot reported them; empty for ours.
    pub vulnerabilities: String,
    /// Place of the workload in its boot's order (0: first after the
    /// boot); `None` for imported records that do not say.
    pub position: Option<u32>,
}

/// What one `wis` run printed: its JSON result line.
#[derive(Debug, Clone, PartialEq)]
pub struct WisLine {
    pub workload: String,
    pub mode: String,
    pub workers: u32,
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub unit: String,
}

/// The last line of `output` that is a `wis` result object.
pub fn parse_wis_output(output: &str) -> Result<WisLine> {
    let line = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{') && l.contains("\"workload\""))
        .with_context(|| {
            format!(
                "no JSON result line in the workload's output:\n{}",
                tail(output, 10)
            )
        })?;
    let v: Value =
        serde_json::from_str(line).with_context(|| format!("bad JSON result line: {line}"))?;
    let rate = get_f64(&v, "ops_per_sec")?;
    Ok(WisLine {
        workload: get_str(&v, "workload")?,
        mode: v
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("threads")
            .to_string(),
        workers: get_u64(&v, "workers")? as u32,
        ops: v.get("ops").and_then(Value::as_u64).unwrap_or(0),
        seconds: v.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
        ops_per_sec: rate,
        unit: v
            .get("unit")
            .and_then(Value::as_str)
            .unwrap_or("ops")
            .to_string(),
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn get_str(v: &Value, key: &str) -> Result<String> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => bail!("field `{key}` is missing or not a non-empty string"),
    }
}

fn get_u64(v: &Value, key: &str) -> Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("field `{key}` is missing or not a whole number"))
}

fn get_f64(v: &Value, key: &str) -> Result<f64> {
    let x = v
        .get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("field `{key}` is missing or not a number"))?;
    if !x.is_finite() || x < 0.0 {
        bail!("field `{key}` is {x}: must be a finite number >= 0");
    }
    Ok(x)
}

impl Record {
    pub fn to_json(&self) -> Value {
        json!({
            "system": self.system,
            "workload": self.workload,
            "mode": self.mode,
            "cores": self.cores,
            "workers": self.workers,
            "run": self.run,
            "ops": self.ops,
            "seconds": self.seconds,
            "ops_per_sec": self.ops_per_sec,
            "unit": self.unit,
            "accel": self.accel,
            "qemu_version": self.qemu_version,
            "cpu_model": self.cpu_model,
            "commit": self.commit,
            "kernel_options": self.kernel_options,
            "vulnerabilities": self.vulnerabilities,
            "position": self.position,
        })
    }

    /// A record from a JSON object.  Required: `system`, `workload`,
    /// `cores`, `accel`, `ops_per_sec`; the rest has defaults (mode
    /// `threads`, workers = cores, run 0, unit `ops`, texts `unknown`).
    pub fn from_json(v: &Value) -> Result<Record> {
        let obj: &Map<String, Value> = v.as_object().context("a record must be a JSON object")?;
        let text = |key: &str| {
            obj.get(key)
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string()
        };
        let cores = get_u64(v, "cores")?;
        if cores == 0 || cores > 1024 {
            bail!("field `cores` is {cores}: must be 1..=1024");
        }
        Ok(Record {
            system: get_str(v, "system")?,
            workload: get_str(v, "workload")?,
            mode: obj
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("threads")
                .to_string(),
            cores: cores as u32,
            workers: obj.get("workers").and_then(Value::as_u64).unwrap_or(cores) as u32,
            run: obj.get("run").and_then(Value::as_u64).unwrap_or(0) as u32,
            ops: obj.get("ops").and_then(Value::as_u64).unwrap_or(0),
            seconds: obj.get("seconds").and_then(Value::as_f64).unwrap_or(0.0),
            ops_per_sec: get_f64(v, "ops_per_sec")?,
            unit: obj
                .get("unit")
                .and_then(Value::as_str)
                .unwrap_or("ops")
                .to_string(),
            accel: get_str(v, "accel")?,
            qemu_version: text("qemu_version"),
            cpu_model: text("cpu_model"),
            commit: text("commit"),
            kernel_options: obj
                .get("kernel_options")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            vulnerabilities: obj
                .get("vulnerabilities")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            position: obj
                .get("position")
                .and_then(Value::as_u64)
                .map(|p| p as u32),
        })
    }
}

/// Records from JSON text: an array of records, or one record per line.
pub fn parse_records(text: &str) -> Result<Vec<Record>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(text).context("not a JSON array of records")?;
        let items = v.as_array().context("not a JSON array")?;
        items
            .iter()
            .enumerate()
            .map(|(i, r)| Record::from_json(r).with_context(|| format!("record {i}")))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let v: Value =
                    serde_json::from_str(l).with_context(|| format!("line {}: not JSON", i + 1))?;
                Record::from_json(&v).with_context(|| format!("line {}", i + 1))
            })
            .collect()
    }
}

/// Read an `--import` file.
pub fn import(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records = parse_records(&text).with_context(|| format!("importing {}", path.display()))?;
    if records.is_empty() {
        bail!("importing {}: no records", path.display());
    }
    Ok(records)
}

/// `results.json`: a pretty-printed array.
pub fn to_json_text(records: &[Record]) -> String {
    let array = Value::Array(records.iter().map(Record::to_json).collect());
    serde_json::to_string_pretty(&array).expect("records serialise") + "\n"
}

/// The CSV header, in the column order of `to_csv`.
pub const CSV_HEADER: &str = "system,workload,mode,cores,workers,run,ops,seconds,ops_per_sec,unit,accel,qemu_version,cpu_model,commit,kernel_options,vulnerabilities,position";

/// `results.csv` (RFC 4180 quoting where needed, by the `csv` crate).
pub fn to_csv(records: &[Record]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut write = |fields: &[&str]| {
        out.write_record(fields)
            .expect("writing CSV to memory cannot fail")
    };
    write(&CSV_HEADER.split(',').collect::<Vec<_>>());
    for r in records {
        let numbers = [
            r.cores.to_string(),
            r.workers.to_string(),
            r.run.to_string(),
            r.ops.to_string(),
            format!("{:.6}", r.seconds),
            format!("{:.3}", r.ops_per_sec),
            r.position.map(|p| p.to_string()).unwrap_or_default(),
        ];
        write(&[
            &r.system,
            &r.workload,
            &r.mode,
            &numbers[0],
            &numbers[1],
            &numbers[2],
            &numbers[3],
            &numbers[4],
            &numbers[5],
            &r.unit,
            &r.accel,
            &r.qemu_version,
            &r.cpu_model,
            &r.commit,
            &r.kernel_options,
            &r.vulnerabilities,
            &numbers[6],
        ]);
    }
    let bytes = out
        .into_inner()
        .expect("flushing CSV to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

#[cfg(test)]
pub(crate) fn sample(system: &str, workload: &str, cores: u32, run: u32, rate: f64) -> Record {
    Record {
        system: system.into(),
        workload: workload.into(),
        mode: "threads".into(),
        cores,
        workers: cores,
        run,
        ops: rate as u64,
        seconds: 1.0,
        ops_per_sec: rate,
        unit: "ops".into(),
        accel: "tcg".into(),
        qemu_version: "QEMU emulator version 7.2.0".into(),
        cpu_model: "max".into(),
        commit: "abc123".into(),
        kernel_options: "run=init".into(),
        vulnerabilities: String::new(),
        position: Some(run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wis_line_is_found_among_other_output() {
        let out = "starting\n{\"workload\":\"getppid\",\"mode\":\"threads\",\"workers\":2,\"ops\":2000,\"seconds\":0.5,\"ops_per_sec\":4000.0}\nbye\n";
        let l = parse_wis_output(out).unwrap();
        assert_eq!(l.workload, "getppid");
        assert_eq!(l.workers, 2);
        assert_eq!(l.ops, 2000);
        assert_eq!(l.ops_per_sec, 4000.0);
        assert_eq!(l.unit, "ops");
        let bytes = "{\"workload\":\"seq_write\",\"mode\":\"procs\",\"workers\":1,\"ops\":9,\"seconds\":1,\"ops_per_sec\":9,\"unit\":\"bytes\"}";
        let l = parse_wis_output(bytes).unwrap();
        assert_eq!(
            (l.mode.as_str(), l.unit.as_str(), l.ops_per_sec),
            ("procs", "bytes", 9.0)
        );
    }

    #[test]
    fn bad_wis_output_is_an_error() {
        assert!(parse_wis_output("").is_err());
        assert!(parse_wis_output("no json here").is_err());
        assert!(parse_wis_output("{\"workload\":\"x\",").is_err());
        assert!(parse_wis_output("{\"workload\":\"x\",\"workers\":1,\"ops_per_sec\":-1}").is_err());
        assert!(parse_wis_output("{\"workload\":\"x\",\"workers\":1}").is_err());
        assert!(parse_wis_output("{\"workload\":\"\",\"workers\":1,\"ops_per_sec\":1}").is_err());
    }

    #[test]
    fn records_round_trip_through_json() {
        let recs = vec![
            sample("ours", "getppid", 1, 0, 10.5),
            sample("linux", "stat", 2, 1, 3.0),
        ];
        let back = parse_records(&to_json_text(&recs)).unwrap();
        assert_eq!(back, recs);
        let lines: String = recs
            .iter()
            .map(|r| r.to_json().to_string() + "\n")
            .collect();
        assert_eq!(parse_records(&lines).unwrap(), recs);
    }

    #[test]
    fn imports_fill_defaults_and_refuse_bad_records() {
        let minimal =
            r#"[{"system":"mk","workload":"getppid","cores":2,"accel":"tcg","ops_per_sec":5}]"#;
        let r = &parse_records(minimal).unwrap()[0];
        assert_eq!(
            (r.mode.as_str(), r.workers, r.run, r.commit.as_str()),
            ("threads", 2, 0, "unknown")
        );
        for bad in [
            r#"[{"workload":"getppid","cores":2,"accel":"tcg","ops_per_sec":5}]"#,
            r#"[{"system":"mk","workload":"getppid","cores":0,"accel":"tcg","ops_per_sec":5}]"#,
            r#"[{"system":"mk","workload":"getppid","cores":2,"ops_per_sec":5}]"#,
            r#"[{"system":"mk","workload":"getppid","cores":2,"accel":"tcg","ops_per_sec":"fast"}]"#,
            r#"[1]"#,
            "[",
            "garbage\n",
        ] {
            assert!(parse_records(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn csv_has_a_header_and_quotes_commas() {
        let mut r = sample("ours", "getppid", 1, 0, 1.0);
        r.kernel_options = "a,b \"c\"".into();
        let csv = to_csv(&[r]);
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        let row = lines.next().unwrap();
        assert!(row.starts_with("ours,getppid,threads,1,1,0,1,"), "{row}");
        // kernel_options, the (empty) vulnerabilities column, the position.
        assert!(row.ends_with(",\"a,b \"\"c\"\"\",,0"), "{row}");
    }
}
