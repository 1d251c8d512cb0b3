//! `wis`: the shared workload suite in one static Linux binary, in the
//! will-it-scale style (comparison/WORKLOADS.md says what each workload does).
//!
//!   wis --list
//!   wis WORKLOAD --threads T [--procs] [--warmup-ms W] [--ms M] [--dir D] [--file-mib F] [--mark-ops N]
//!       [--mark-ops-of NAME=N]...   (NAME marks N operations per worker instead)
//!       [--mount DEV:DIR]   (mounts ext2 from DEV at DIR first, unmounts at the end)
//!   wis all --threads T ...        every workload in turn
//!   wis A,B,C --threads T ...      the named workloads in turn
//!   wis A,B,C --threads T --announce ...   and `wis: running NAME` on
//!                                  stderr before each (for harnesses)
//!
//! Each workload runs in its own fresh scratch directory (`--dir`/NAME,
//! made before it and removed after it) and releases what it shared with
//! its workers (`workload::release`), so one workload's files and sockets
//! never reach the next; a workload that fails prints `wis: NAME: ...` on
//! stderr and the others still run.
//!
//! Prints one JSON line per workload run, and nothing else on stdout:
//!   {"workload":NAME,"mode":"threads|procs","workers":T,"ops":N,"seconds":S,"ops_per_sec":X}
//! with `,"unit":"bytes"` before the `}` when the workload counts bytes.
//! Exit status 0 on success; 1 (message on stderr) if the system lacks
//! something or an operation failed; 2 for bad arguments.
//!
//! Runs unchanged on Linux, on this project's kernel and on any system with
//! the Linux x86_64 system-call ABI.  It must not print anything on stdout
//! but result lines, so harnesses can parse it line by line.

mod files;
mod marker;
mod net;
mod runner;
mod spawn;
mod sys;
mod system;
mod workload;

use std::time::Duration;
use workload::{Ctx, Unit, Workload, WORKLOADS};

/// `--announce`'s line before each workload (the suite's harness parses it:
/// comparison/src/suite/batch.rs).
const ANNOUNCE: &str = "wis: running ";

const USAGE: &str = "usage: wis --list
       wis WORKLOAD[,WORKLOAD...]|all --threads T [--procs] [--warmup-ms W] [--ms M] [--dir D] [--file-mib F]
  --threads T    workers, worker w pinned to CPU w (1..=1024)
  --procs        workers are processes (default: threads)
  --warmup-ms W  warm-up before measuring (default 200)
  --ms M         measured interval (default 1000)
  --dir D        scratch directory for the file workloads (default /tmp/wis)
  --file-mib F   size of the sequential read/write files (default 8)
  --mark-ops N   after the warm-up, each worker wraps its next N operations in
                 sharing-plugin windows; worker 0 then dumps the table labelled
                 with the workload's index in `wis --list` (docs/SHARING.md);
                 the markers are NOPs without the plugin
  --mark-ops-of NAME=N  workload NAME marks N operations per worker instead
                 of --mark-ops' N (repeatable; for slow workloads at many workers)
  --mount DEV:DIR  mount the ext2 file system on DEV at DIR before the runs,
                 unmount it (writing it back) after them
  --announce     print `wis: running NAME` on stderr before each workload";

struct Args {
    workload: String,
    threads: usize,
    procs: bool,
    warmup: Duration,
    interval: Duration,
    dir: String,
    file_mib: u64,
    /// `--mark-ops`: operations each worker marks (0: no markers).
    mark_ops: u64,
    /// `--mark-ops-of NAME=N`: the marked operations of one workload, in
    /// place of `--mark-ops` (slow workloads mark fewer at many workers).
    mark_ops_of: Vec<(String, u64)>,
    /// `--mount DEV:DIR`.
    mount: Option<(String, String)>,
    /// `--announce`: `wis: running NAME` on stderr before each workload.
    announce: bool,
}

fn parse_number(flag: &str, value: Option<String>, min: u64, max: u64) -> Result<u64, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    let n: u64 = value
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
    if n < min || n > max {
        return Err(format!("{flag}: {n} is outside {min}..={max}"));
    }
    Ok(n)
}

/// Parse the command line; `Ok(None)` for `--list`.
fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        workload: String::new(),
        threads: 0,
        procs: false,
        warmup: Duration::from_millis(200),
        interval: Duration::from_millis(1000),
        dir: "/tmp/wis".to_string(),
        file_mib: 8,
        mark_ops: 0,
        mark_ops_of: Vec::new(),
        mount: None,
        announce: false,
    };
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--list" => return Ok(None),
            "--threads" => args.threads = parse_number("--threads", argv.next(), 1, 1024)? as usize,
            "--procs" => args.procs = true,
            "--announce" => args.announce = true,
            "--warmup-ms" => {
                args.warmup =
                    Duration::from_millis(parse_number("--warmup-ms", argv.next(), 0, 3_600_000)?)
            }
            "--ms" => {
                args.interval =
                    Duration::from_millis(parse_number("--ms", argv.next(), 1, 3_600_000)?)
            }
            "--dir" => {
                args.dir = argv.next().ok_or("--dir needs a value")?;
                if !args.dir.starts_with('/') || args.dir.contains('\0') {
                    return Err(format!("--dir: `{}` is not an absolute path", args.dir));
                }
            }
            "--file-mib" => args.file_mib = parse_number("--file-mib", argv.next(), 1, 4096)?,
            "--mark-ops" => args.mark_ops = parse_number("--mark-ops", argv.next(), 1, 1 << 20)?,
            "--mark-ops-of" => {
                let v = argv.next().ok_or("--mark-ops-of needs NAME=N")?;
                let (name, n) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--mark-ops-of: `{v}` is not NAME=N"))?;
                let n = parse_number("--mark-ops-of", Some(n.to_string()), 1, 1 << 20)?;
                args.mark_ops_of.push((name.to_string(), n));
            }
            "--mount" => {
                let v = argv.next().ok_or("--mount needs DEV:DIR")?;
                let (dev, dir) = v
                    .split_once(':')
                    .filter(|(d, m)| d.starts_with('/') && m.starts_with('/'))
                    .ok_or_else(|| format!("--mount: `{v}` is not DEV:DIR (absolute paths)"))?;
                args.mount = Some((dev.to_string(), dir.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name if args.workload.is_empty() => args.workload = name.to_string(),
            extra => {
                return Err(format!(
                    "unexpected argument `{extra}` (name workloads as A,B,C, or `all`)"
                ))
            }
        }
    }
    if args.workload.is_empty() {
        return Err("no workload named (see wis --list)".into());
    }
    if args.threads == 0 {
        return Err("--threads T is required".into());
    }
    if !args.mark_ops_of.is_empty() && args.mark_ops == 0 {
        return Err("--mark-ops-of needs --mark-ops".into());
    }
    Ok(Some(args))
}

/// Run one workload in a fresh scratch directory and print its line.
fn run_one(w: &Workload, args: &Args) -> Result<(), String> {
    let ctx = Ctx {
        workers: args.threads,
        procs: args.procs,
        dir: format!("{}/{}", args.dir.trim_end_matches('/'), w.name),
        big_file_bytes: args.file_mib << 20,
    };
    // A directory left by an interrupted run would make creates fail.
    let _ = std::fs::remove_dir_all(&ctx.dir);
    std::fs::create_dir_all(&ctx.dir)
        .map_err(|e| format!("{}: making {}: {e}", w.name, ctx.dir))?;
    let ops = args
        .mark_ops_of
        .iter()
        .rev()
        .find(|(name, _)| name == w.name)
        .map_or(args.mark_ops, |&(_, n)| n);
    let marking = (args.mark_ops > 0).then(|| runner::Marking {
        ops,
        label: workload::index(w),
    });
    if marking.is_some_and(|m| m.label >= marker::LABELS) {
        return Err(format!("{}: no marker label for its index", w.name));
    }
    let result =
        (w.setup)(&ctx).and_then(|()| runner::run(w, &ctx, args.warmup, args.interval, marking));
    workload::release();
    let _ = std::fs::remove_dir_all(&ctx.dir);
    let m = result.map_err(|f| format!("{}: {f}", w.name))?;
    let rate = if m.seconds > 0.0 {
        m.ops as f64 / m.seconds
    } else {
        0.0
    };
    let unit = if w.unit == Unit::Bytes {
        ",\"unit\":\"bytes\""
    } else {
        ""
    };
    println!(
        "{{\"workload\":\"{}\",\"mode\":\"{}\",\"workers\":{},\"ops\":{},\"seconds\":{:.6},\"ops_per_sec\":{:.1}{unit}}}",
        w.name,
        if args.procs { "procs" } else { "threads" },
        args.threads,
        m.ops,
        m.seconds,
        rate
    );
    Ok(())
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            for w in WORKLOADS {
                println!("{}", w.name);
            }
            return;
        }
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("wis: {msg}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let chosen: Vec<&Workload> = if args.workload == "all" {
        WORKLOADS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in args.workload.split(',') {
            match workload::find(name) {
                Some(w) => chosen.push(w),
                None => {
                    eprintln!("wis: unknown workload `{name}` (see wis --list)");
                    std::process::exit(2);
                }
            }
        }
        chosen
    };
    if let Some(cpu) = sys::first_unusable_cpu(args.threads) {
        eprintln!(
            "wis: --threads {}: worker {cpu} must run on CPU {cpu}, which this process may not use (too few CPUs?)",
            args.threads
        );
        std::process::exit(1);
    }
    if let Some((dev, dir)) = &args.mount {
        if let Err(msg) = sys::mount_ext2(dev, dir) {
            eprintln!("wis: --mount {dev}:{dir}: {msg}");
            std::process::exit(1);
        }
    }
    let mut failed = 0;
    for w in chosen {
        if args.announce {
            eprintln!("{ANNOUNCE}{}", w.name);
        }
        if let Err(msg) = run_one(w, &args) {
            eprintln!("wis: {msg}");
            failed += 1;
        }
    }
    // Each run removed its own directory; the base goes too if now empty.
    let _ = std::fs::remove_dir(&args.dir);
    if let Some((_, dir)) = &args.mount {
        if let Err(msg) = sys::umount(dir) {
            eprintln!("wis: unmounting {dir}: {msg}");
            failed += 1;
        }
    }
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Option<Args>, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn mark_ops_of_overrides_one_workload() {
        let a = parse_str("a,exec_static --threads 4 --mark-ops 3 --mark-ops-of exec_static=1")
            .unwrap()
            .unwrap();
        assert_eq!(a.mark_ops, 3);
        assert_eq!(a.mark_ops_of, vec![("exec_static".to_string(), 1)]);
        assert!(parse_str("a --threads 4 --mark-ops-of a=1").is_err());
        assert!(parse_str("a --threads 4 --mark-ops 3 --mark-ops-of a").is_err());
        assert!(parse_str("a --threads 4 --mark-ops 3 --mark-ops-of a=0").is_err());
    }
}
