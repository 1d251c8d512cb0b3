//! What a suite run measures: systems, core counts, workloads, modes, runs,
//! accelerator, interval, output directory, imports; parsing the CLI's
//! comma-separated lists and checking them.
//!
//! Invariants: a checked `SuiteOptions` has at least one system, one core
//! count (1..=64, ascending, no duplicates), one mode and one run; bad input
//! is an error that says what was wrong.  No I/O here.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// A system the suite boots.
///
/// Adding one: a variant here, its arm in `spec` (name, kernel, lock
/// switch, structure, extra kernel command-line words, what it cannot run
/// yet) and its place in `ALL` (display order); add it to `RATIO_BASES` if
/// the tables should give ours/it.  Everything else (parsing, boots,
/// records, tables, plots) goes through `spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SuiteSystem {
    /// This kernel, per-CPU structures (the design).
    Ours,
    /// This kernel with `locks=global` (the ablation).
    OursGlobal,
    /// This kernel with `structure=servers`: file system calls go to the
    /// user-mode file server `fsd` (docs/SERVERS.md); per-CPU locks.
    OursServers,
    /// `ours-servers` with one serving thread per CPU, pinned, each
    /// taking the calls of its own CPU (`servers.placement=percore`).
    OursServersPercore,
    /// `ours-servers` with the serving threads pinned on the last CPU
    /// (`servers.placement=dedicated`; reached by cross-core IPC).
    OursServersDedicated,
    /// `ours-servers` with server-thread migration
    /// (`servers.migrate=on`: the thread follows its busiest callers).
    OursServersMigrate,
    /// `ours-servers` with `servers.copy=two`: `read`/`write` of server
    /// files copy through 8 KiB messages instead of once from the
    /// server's page-cache pages (what sharing the pages buys).
    OursServersCopy2,
    /// Debian's Linux kernel, same VM and initramfs.
    Linux,
    /// The same Linux booted with `mitigations=off` (no Spectre/Meltdown
    /// mitigations: the fair bound for a kernel that has none).
    LinuxNoMitig,
}

/// What defines a suite system: how it is named and booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemSpec {
    /// The name in `--systems`, records, tables and plots.
    pub name: &'static str,
    /// The kernel that runs.
    pub kernel: crate::run::System,
    /// The lock switch (our kernel only; `Global` adds `locks=global`).
    pub locks: crate::run::LockMode,
    /// Our kernel only: monolithic, or with the user-mode servers (the
    /// initramfs then holds `fsd`).
    pub structure: crate::run::Structure,
    /// Extra kernel command-line words.
    pub cmdline: &'static str,
    /// Failures that mean "this system cannot run that yet", not "it
    /// broke": the workload shows as n/a with the reason.
    pub unsupported: &'static [Unsupported],
}

/// A known limit of a system: a workload failure whose wis message holds
/// every one of `needles` is shown as "does not apply" with `why`.  Matched
/// on what the run printed (not on the workload's name), so the workload
/// is measured as soon as the system supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    pub needles: &'static [&'static str],
    pub why: &'static str,
}

/// What `ours-servers` cannot do yet, matched on the error a run printed
/// (docs/SERVERS.md, "What is left").  Empty: file mappings are served by
/// page grants now; a limit found later goes here with its reason.
pub const SERVERS_UNSUPPORTED: &[Unsupported] = &[];

/// The reason of the first limit in `limits` whose needles all occur in
/// `message` (an error a run printed), if any.
pub fn known_limit(limits: &[Unsupported], message: &str) -> Option<&'static str> {
    limits
        .iter()
        .find(|u| u.needles.iter().all(|n| message.contains(n)))
        .map(|u| u.why)
}

/// Every system, in display order (tables, plots, `--systems` help).
pub const ALL: &[SuiteSystem] = &[
    SuiteSystem::Ours,
    SuiteSystem::OursGlobal,
    SuiteSystem::OursServers,
    SuiteSystem::OursServersPercore,
    SuiteSystem::OursServersDedicated,
    SuiteSystem::OursServersMigrate,
    SuiteSystem::OursServersCopy2,
    SuiteSystem::Linux,
    SuiteSystem::LinuxNoMitig,
];

/// The systems of the default suite (`--systems`), in display order.
pub const DEFAULT_SYSTEMS: &str = "ours,ours-global,ours-servers,linux";

/// The tables give ours/X for each of these that was measured, in this order.
pub const RATIO_BASES: &[SuiteSystem] = &[
    SuiteSystem::Linux,
    SuiteSystem::LinuxNoMitig,
    SuiteSystem::OursGlobal,
];

impl SuiteSystem {
    /// The one place that says what each system is.
    pub fn spec(self) -> SystemSpec {
        use crate::run::{LockMode, Structure, System};
        let plain = |name, kernel, locks| SystemSpec {
            name,
            kernel,
            locks,
            structure: Structure::Monolithic,
            cmdline: "",
            unsupported: &[],
        };
        let servers = |name, cmdline| SystemSpec {
            structure: Structure::Servers,
            unsupported: SERVERS_UNSUPPORTED,
            cmdline,
            ..plain(name, System::Ours, LockMode::PerCpu)
        };
        match self {
            SuiteSystem::Ours => plain("ours", System::Ours, LockMode::PerCpu),
            SuiteSystem::OursGlobal => plain("ours-global", System::Ours, LockMode::Global),
            SuiteSystem::OursServers => servers("ours-servers", ""),
            SuiteSystem::OursServersPercore => {
                servers("ours-servers-percore", "servers.placement=percore")
            }
            SuiteSystem::OursServersDedicated => {
                servers("ours-servers-dedicated", "servers.placement=dedicated")
            }
            SuiteSystem::OursServersMigrate => {
                servers("ours-servers-migrate", "servers.migrate=on")
            }
            SuiteSystem::OursServersCopy2 => servers("ours-servers-copy2", "servers.copy=two"),
            SuiteSystem::Linux => plain("linux", System::Linux, LockMode::PerCpu),
            SuiteSystem::LinuxNoMitig => SystemSpec {
                cmdline: "mitigations=off",
                ..plain("linux-nomitig", System::Linux, LockMode::PerCpu)
            },
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The kernel that runs (`linux-nomitig` is Linux with other options).
    pub fn kernel(self) -> crate::run::System {
        self.spec().kernel
    }

    /// The lock switch this system runs with (`ours-global`: the ablation).
    pub fn locks(self) -> crate::run::LockMode {
        self.spec().locks
    }

    /// Extra kernel command-line words of this system.
    pub fn extra_cmdline(self) -> &'static str {
        self.spec().cmdline
    }

    /// How our kernel is structured on this system (monolithic for Linux).
    pub fn structure(self) -> crate::run::Structure {
        self.spec().structure
    }

    /// Why a workload failure with wis message `message` means the workload
    /// does not apply on this system yet, if it is one of its known limits.
    pub fn unsupported_reason(self, message: &str) -> Option<&'static str> {
        known_limit(self.spec().unsupported, message)
    }

    pub fn parse(s: &str) -> Result<SuiteSystem> {
        match ALL.iter().find(|sys| sys.name() == s) {
            Some(&sys) => Ok(sys),
            None => {
                let names: Vec<&str> = ALL.iter().map(|sys| sys.name()).collect();
                bail!(
                    "unknown system `{s}` (expected one of {})",
                    names.join(", ")
                )
            }
        }
    }
}

/// Display rank of a system name: its place in `ALL`, other (imported)
/// names after them.
pub fn system_rank(name: &str) -> usize {
    ALL.iter()
        .position(|s| s.name() == name)
        .unwrap_or(ALL.len())
}

/// `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM if a bounded probe boot with KVM succeeds, else TCG.
    Auto,
    Tcg,
    Kvm,
}

impl AccelChoice {
    pub fn parse(s: &str) -> Result<AccelChoice> {
        Ok(match s {
            "auto" => AccelChoice::Auto,
            "tcg" => AccelChoice::Tcg,
            "kvm" => AccelChoice::Kvm,
            other => bail!("unknown accelerator `{other}` (expected auto, tcg or kvm)"),
        })
    }
}

/// Worker kind of a workload run: `wis --threads T` or `wis --threads T --procs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Threads,
    Procs,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Threads => "threads",
            Mode::Procs => "procs",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "threads" => Mode::Threads,
            "procs" => Mode::Procs,
            other => bail!("unknown mode `{other}` (expected threads or procs)"),
        })
    }
}

/// The workloads of the default suite: sized, with the other defaults
/// below, so that `./run-comparison.sh` (`DEFAULT_SYSTEMS` at 1 and 2
/// cores, 3 runs: 24 boots of 17 workloads each, 18 with the servers'
/// `MIGRATION_WORKLOAD`) stays under 10 minutes
/// under TCG on a 2-core host.
/// One or two of each kind: system (and the null IPC round trip beside
/// getppid), program start, file metadata (private and shared), file data,
/// network (all four).  `--workloads all` runs every workload `wis --list`
/// names.
pub const DEFAULT_WORKLOADS: &[&str] = &[
    "getppid",
    "ipc_call",
    "context_switch",
    "page_fault",
    "exec_static",
    "spawn_shell",
    "open_close_private",
    "open_close_shared",
    "create_unlink_private",
    "create_unlink_shared",
    "pread4k_shared",
    "seq_write",
    "seq_read",
    "tcp_rr",
    "tcp_stream",
    "tcp_connect",
    "udp_rr",
];

/// The migration workload (`open_close_skewed`: the load moves from core
/// to core; fixed placements against `ours-servers-migrate`,
/// docs/SERVERS.md "Placement and migration").  The default suite adds it
/// when it measures a servers system, so the per-structure table has its
/// row.
pub const MIGRATION_WORKLOAD: &str = "open_close_skewed";

/// The workloads a suite without `--workloads` runs on `systems`:
/// `DEFAULT_WORKLOADS`, plus `MIGRATION_WORKLOAD` when one of them is a
/// servers system.
pub fn default_workloads(systems: &[SuiteSystem]) -> Vec<&'static str> {
    let mut list = DEFAULT_WORKLOADS.to_vec();
    if systems
        .iter()
        .any(|s| s.structure() == crate::run::Structure::Servers)
    {
        list.push(MIGRATION_WORKLOAD);
    }
    list
}

/// Default repetitions of every measurement.
pub const DEFAULT_RUNS: u32 = 3;
/// Default measured interval of each run (`wis --ms`).
pub const DEFAULT_MS: u64 = 300;
/// Default warm-up of each run (`wis --warmup-ms`).
pub const DEFAULT_WARMUP_MS: u64 = 100;

/// Everything a suite run needs to know.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub systems: Vec<SuiteSystem>,
    pub cores: Vec<usize>,
    /// `None`: `DEFAULT_WORKLOADS`; `Some(["all"])`: every workload
    /// `wis --list` names.
    pub workloads: Option<Vec<String>>,
    pub modes: Vec<Mode>,
    pub runs: u32,
    pub accel: AccelChoice,
    /// Measured interval per run (`wis --ms`).
    pub ms: u64,
    /// Warm-up per run (`wis --warmup-ms`); `None`: the workload's default.
    pub warmup_ms: Option<u64>,
    /// `None`: `<target>/comparison/<UTC timestamp>` plus a `latest` link.
    pub out: Option<PathBuf>,
    pub imports: Vec<PathBuf>,
    /// QEMU is killed after this, per run.
    pub timeout: Duration,
    pub memory_mib: usize,
    /// Print the whole serial log of every run.
    pub verbose: bool,
    /// Which loader boots our kernel (`auto` is resolved once, with a probe).
    pub loader: crate::boot::LoaderChoice,
    /// Disk images every run gets (`--disk`), on every system.
    pub disks: Vec<crate::qemu::Disk>,
    /// Seed of the per-run workload order (`--seed`); `None`: from the clock.
    pub seed: Option<u64>,
    /// Workloads per boot (`--per-boot`); 0: all of a run in one boot.
    pub per_boot: usize,
    /// Repetitions of each robustness measurement (fs replacement, fs
    /// crash, NIC driver restart) when `ours-servers` is measured
    /// (`--robustness-reps`); 0: none (`--no-robustness`).
    pub robustness_reps: usize,
}

/// Split a comma-separated list; empty items are an error.
pub fn split_list(what: &str, s: &str) -> Result<Vec<String>> {
    let items: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
    if items.iter().any(String::is_empty) {
        bail!("--{what} `{s}`: empty item in the comma-separated list");
    }
    Ok(items)
}

/// `--systems ours,linux`: known names, each once, in the order given.
pub fn parse_systems(s: &str) -> Result<Vec<SuiteSystem>> {
    let mut out = Vec::new();
    for item in split_list("systems", s)? {
        let sys = SuiteSystem::parse(&item)?;
        if out.contains(&sys) {
            bail!("--systems: `{item}` given twice");
        }
        out.push(sys);
    }
    Ok(out)
}

/// `--cores 1,2,4` (or a range `1-4`): 1..=64, sorted, no duplicates.
pub fn parse_cores(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for item in split_list("cores", s)? {
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (parse_core(a)?, parse_core(b)?),
            None => (parse_core(&item)?, parse_core(&item)?),
        };
        if lo > hi {
            bail!("--cores: range `{item}` runs backwards");
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    let before = out.len();
    out.dedup();
    if out.len() != before {
        bail!("--cores `{s}`: a core count is given twice");
    }
    Ok(out)
}

fn parse_core(s: &str) -> Result<usize> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => bail!("--cores: `{s}` is not a core count between 1 and 64"),
    }
}

/// `--workloads a,b`: names made of letters, digits, `_` and `-`.
pub fn parse_workloads(s: &str) -> Result<Vec<String>> {
    let items = split_list("workloads", s)?;
    for w in &items {
        if !w
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("--workloads: `{w}` is not a workload name");
        }
    }
    let mut seen = items.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != items.len() {
        bail!("--workloads `{s}`: a workload is given twice");
    }
    Ok(items)
}

/// `--modes threads,procs`.
pub fn parse_modes(s: &str) -> Result<Vec<Mode>> {
    let mut out = Vec::new();
    for item in split_list("modes", s)? {
        let m = Mode::parse(&item)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Host cores as the default core list: 1..=N.
pub fn default_cores() -> Vec<usize> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(64);
    (1..=n).collect()
}

impl SuiteOptions {
    /// Check the numbers that the parsers cannot see.
    pub fn check(&self) -> Result<()> {
        if self.systems.is_empty() {
            bail!("--systems: give at least one system");
        }
        if self.cores.is_empty() {
            bail!("--cores: give at least one core count");
        }
        if self.modes.is_empty() {
            bail!("--modes: give at least one mode");
        }
        if self.runs == 0 || self.runs > 1000 {
            bail!("--runs must be between 1 and 1000");
        }
        if self.ms == 0 || self.ms > 3_600_000 {
            bail!("--ms must be between 1 and 3600000");
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be at least 1 second");
        }
        if self.robustness_reps > 100 {
            bail!("--robustness-reps must be at most 100");
        }
        if self.memory_mib < 64 {
            bail!("--memory must be at least 64 MiB");
        }
        Ok(())
    }

    /// How many measurements the suite makes for `workloads` workloads.
    /// Whether the robustness section is measured: `ours-servers` is among
    /// the systems and it is not turned off.
    pub fn measures_robustness(&self) -> bool {
        self.robustness_reps > 0 && self.systems.contains(&SuiteSystem::OursServers)
    }

    pub fn total_runs(&self, workloads: usize) -> usize {
        self.systems.len() * self.cores.len() * workloads * self.modes.len() * self.runs as usize
    }

    /// How many boots the suite plans for `workloads` workloads (one per
    /// run, system, core count and mode, or more with `--per-boot`; a boot
    /// that ends early adds one for the workloads it did not reach).
    pub fn total_boots(&self, workloads: usize) -> usize {
        let per_boot = if self.per_boot == 0 {
            workloads.max(1)
        } else {
            self.per_boot
        };
        self.systems.len()
            * self.cores.len()
            * self.modes.len()
            * self.runs as usize
            * workloads.div_ceil(per_boot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems_parse_and_refuse_unknown_or_twice() {
        assert_eq!(
            parse_systems("ours,ours-global,linux").unwrap(),
            vec![
                SuiteSystem::Ours,
                SuiteSystem::OursGlobal,
                SuiteSystem::Linux
            ]
        );
        assert_eq!(parse_systems(" linux ").unwrap(), vec![SuiteSystem::Linux]);
        assert_eq!(
            parse_systems("linux,linux-nomitig").unwrap(),
            vec![SuiteSystem::Linux, SuiteSystem::LinuxNoMitig]
        );
        assert!(parse_systems("ours,bsd")
            .unwrap_err()
            .to_string()
            .contains("bsd"));
        assert!(parse_systems("ours,ours").is_err());
        assert!(parse_systems("ours,").is_err());
        assert!(parse_systems("").is_err());
    }

    #[test]
    fn every_system_is_listed_once_and_parses_back_by_name() {
        use crate::run::{LockMode, Structure, System};
        for (i, &sys) in ALL.iter().enumerate() {
            assert_eq!(SuiteSystem::parse(sys.name()).unwrap(), sys);
            assert_eq!(system_rank(sys.name()), i);
            assert_eq!(ALL.iter().filter(|s| s.name() == sys.name()).count(), 1);
        }
        assert_eq!(system_rank("mk"), ALL.len(), "imported names come last");
        assert!(RATIO_BASES.iter().all(|b| ALL.contains(b)));
        let msg = SuiteSystem::parse("bsd").unwrap_err().to_string();
        assert!(
            msg.contains("ours-global") && msg.contains("linux-nomitig"),
            "{msg}"
        );
        let global = SuiteSystem::OursGlobal.spec();
        assert_eq!(
            (global.kernel, global.locks, global.cmdline),
            (System::Ours, LockMode::Global, "")
        );
        let nomitig = SuiteSystem::LinuxNoMitig.spec();
        assert_eq!(
            (nomitig.kernel, nomitig.cmdline),
            (System::Linux, "mitigations=off")
        );
        let servers = SuiteSystem::parse("ours-servers").unwrap().spec();
        assert_eq!(
            (servers.kernel, servers.locks, servers.structure),
            (System::Ours, LockMode::PerCpu, Structure::Servers)
        );
        // The servers systems differ only in their placement and copy options.
        for (sys, cmdline) in [
            (SuiteSystem::OursServers, ""),
            (SuiteSystem::OursServersPercore, "servers.placement=percore"),
            (
                SuiteSystem::OursServersDedicated,
                "servers.placement=dedicated",
            ),
            (SuiteSystem::OursServersMigrate, "servers.migrate=on"),
            (SuiteSystem::OursServersCopy2, "servers.copy=two"),
        ] {
            let spec = sys.spec();
            assert_eq!(
                (spec.kernel, spec.locks, spec.structure, spec.cmdline),
                (System::Ours, LockMode::PerCpu, Structure::Servers, cmdline),
                "{sys:?}"
            );
            assert_eq!(SuiteSystem::parse(spec.name).unwrap(), sys);
        }
        for sys in ALL.iter().filter(|s| !s.name().starts_with("ours-servers")) {
            assert_eq!(sys.structure(), Structure::Monolithic, "{sys:?}");
        }
        assert!(!DEFAULT_SYSTEMS
            .split(',')
            .any(|n| n.starts_with("ours-servers-")));
        // The default systems parse, in display order.
        let defaults = parse_systems(DEFAULT_SYSTEMS).unwrap();
        assert!(defaults.contains(&SuiteSystem::OursServers) && defaults.len() == 4);
        assert!(defaults
            .windows(2)
            .all(|w| system_rank(w[0].name()) < system_rank(w[1].name())));
    }

    #[test]
    fn known_limits_are_matched_on_the_message() {
        const LIMITS: &[Unsupported] = &[Unsupported {
            needles: &["mmap", "ENODEV"],
            why: "file mmap is not delegated",
        }];
        let enodev = "wis: mmap_read_shared: worker 0: mmap of /tmp/wis/x/f failed: ENODEV";
        assert_eq!(
            known_limit(LIMITS, enodev),
            Some("file mmap is not delegated")
        );
        // Another error of the same workload is a failure.
        let eio = "wis: mmap_read_shared: worker 0: mmap of /tmp/wis/x/f failed: EIO";
        assert_eq!(known_limit(LIMITS, eio), None);
        // No system has a known limit today: every error is a failure.
        for sys in ALL {
            assert_eq!(sys.unsupported_reason(enodev), None, "{sys:?}");
        }
    }

    #[test]
    fn cores_parse_lists_and_ranges() {
        assert_eq!(parse_cores("1,2").unwrap(), vec![1, 2]);
        assert_eq!(parse_cores("4,1-2").unwrap(), vec![1, 2, 4]);
        assert_eq!(parse_cores("64").unwrap(), vec![64]);
        for bad in ["0", "65", "1,1", "a", "2-1", "1,,2", "-1", "1-2,2"] {
            assert!(parse_cores(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn workloads_and_modes_parse() {
        assert_eq!(
            parse_workloads("getppid,open_close_private").unwrap(),
            vec!["getppid", "open_close_private"]
        );
        assert!(parse_workloads("a b").is_err());
        assert!(parse_workloads("a,a").is_err());
        assert!(parse_workloads("../x").is_err());
        assert_eq!(
            parse_modes("threads,procs,threads").unwrap(),
            vec![Mode::Threads, Mode::Procs]
        );
        assert!(parse_modes("fibers").is_err());
        assert_eq!(AccelChoice::parse("auto").unwrap(), AccelChoice::Auto);
        assert!(AccelChoice::parse("hvf").is_err());
    }

    #[test]
    fn options_are_checked() {
        let mut o = SuiteOptions {
            systems: vec![SuiteSystem::Ours],
            cores: vec![1, 2],
            workloads: None,
            modes: vec![Mode::Threads],
            runs: 3,
            accel: AccelChoice::Tcg,
            ms: 500,
            warmup_ms: None,
            out: None,
            imports: vec![],
            timeout: Duration::from_secs(120),
            memory_mib: 512,
            verbose: false,
            loader: crate::boot::LoaderChoice::Builtin,
            disks: vec![],
            seed: None,
            per_boot: 0,
            robustness_reps: 3,
        };
        assert!(o.check().is_ok());
        assert_eq!(o.total_runs(5), 30);
        assert_eq!(o.total_boots(5), 6, "one boot per run and core count");
        o.per_boot = 2;
        assert_eq!(o.total_boots(5), 18, "5 workloads in boots of 2, 3, ...");
        o.per_boot = 1;
        assert_eq!(o.total_boots(5), 30, "one boot per measurement");
        o.runs = 0;
        assert!(o.check().is_err());
        o.runs = 1;
        o.ms = 0;
        assert!(o.check().is_err());
        o.ms = 1;
        o.systems.clear();
        assert!(o.check().is_err());
    }
}
