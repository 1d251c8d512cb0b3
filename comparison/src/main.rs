//! `comparison`: the host CLI of the study.
//!
//! `boot` builds the kernel and the built-in loader, boots the kernel in QEMU
//! on N cores and reports whether every CPU came online and the kernel's
//! self-check passed.  Exit status: 0 on success, 1 on any failure, with the
//! tail of the serial log on stderr.
//!
//! `run` boots a static Linux program as PID 1 on our kernel or on Debian's
//! Linux (same initramfs, same VM), streams the program's output and exits
//! with its exit status; 124 on timeout, 125 when the system failed (kernel
//! panic, loader or initramfs error), 1 for a usage or build error.
//!
//! `suite` runs the workload suite (`comparison::suite`) and prints the
//! summary table and where the report is; exit 1 if any run gave no result
//! or the suite could not start.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::qemu::{self, Accel, Ending, VmConfig};
use comparison::run::{self, LockMode};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "comparison",
    about = "Build, boot and measure the per-core kernel in QEMU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the kernel on N cores, wait for every CPU and the self-check.
    Boot(BootArgs),
    /// Run a static Linux program as PID 1 (on our kernel or on Linux) and
    /// exit with its status (124: timeout, 125: kernel panic / boot error).
    Run(RunArgs),
    /// Run the workload suite on ours, ours-global and Linux at each core
    /// count; write results.json/csv, report.md and plots (exit 1 if any run
    /// gave no result).
    Suite(SuiteArgs),
    /// Count the cache lines each operation shares between vCPUs (QEMU TCG
    /// plugin, docs/SHARING.md) for each system, vCPU count and workload;
    /// write sharing.json/csv, sharing.md and plots (exit 1 if any workload
    /// gave no result).
    Sharing(SharingArgs),
    /// COMMUTER-style pair table: run `commuter` under the sharing plugin
    /// on each system and write pairs.md/csv (conflict-free pairs, top
    /// conflict symbol otherwise); exit 1 if a system gave no table.
    Commuter(CommuterArgs),
    /// Replace the file server of ours-servers under a checked file
    /// workload on every core, RUNS boots of ROUNDS replacements each;
    /// print the table (pause, switch time, image size, failed
    /// operations: median and min–max) and write it to OUT (exit 1 on any
    /// failed or wrong operation or a run without result).
    Robustness(RobustnessArgs),
}

#[derive(clap::Args)]
struct RobustnessArgs {
    /// Number of virtual CPUs (one workload thread per CPU).
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Boots.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Replacements per boot.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the table goes (markdown); default target/comparison/robustness.md.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Seconds before QEMU is killed, per boot.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(clap::Args)]
struct CommuterArgs {
    /// Systems, comma-separated: ours, ours-global, ours-servers, linux, linux-nomitig.
    #[arg(long, default_value = "ours,ours-global,linux")]
    systems: String,
    /// Number of virtual CPUs (the pairs use CPUs 0 and 1).
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// Concurrent runs of each pair (the table takes the quietest).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Only these pairs, comma-separated (names as in `commuter --list`).
    #[arg(long)]
    only: Option<String>,
    /// Output directory; default target/comparison/commuter-<cores>.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Seconds before QEMU is killed, per system.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: usize,
    /// Show the whole serial log.
    #[arg(long)]
    serial: bool,
}

#[derive(clap::Args)]
struct SharingArgs {
    /// Systems, comma-separated: ours, ours-global, ours-servers, linux, linux-nomitig.
    #[arg(long, default_value = "ours,ours-global,linux")]
    systems: String,
    /// vCPU counts, comma-separated or ranges (1..=64).
    #[arg(long, default_value = "1,2,4,8,16,32,64")]
    cores: String,
    /// Workloads, comma-separated, or `all`; default: the suite's default
    /// workloads but spawn_shell.
    #[arg(long)]
    workloads: Option<String>,
    /// Marked operations per worker (`wis --mark-ops`).
    #[arg(long, default_value_t = comparison::sharing::runner::DEFAULT_OPS)]
    ops: u64,
    /// Warm-up before the marked operations, in milliseconds.
    #[arg(long, default_value_t = 100)]
    warmup_ms: u64,
    /// Seconds before QEMU is killed, per boot (one boot per system and
    /// vCPU count runs every workload).
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// Seconds a boot may go without finishing a workload (from its start,
    /// so the first one includes the boot); then QEMU is killed, that
    /// workload gets a failure line and the rest run in a new boot.  0: off.
    #[arg(long, default_value_t = 600)]
    workload_timeout: u64,
    /// Guest memory in MiB; default 512 up to 16 vCPUs, 32 per vCPU above
    /// (1024 at 32), at most 2048.
    #[arg(long)]
    memory: Option<usize>,
    /// Output directory; default target/comparison/sharing/<UTC timestamp>
    /// plus a `latest` link.  A directory holding the suite's report.md gets
    /// the section appended to it.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Conflict lines kept per workload.
    #[arg(long, default_value_t = 8)]
    top: usize,
    /// Every address through QEMU's physical-address lookup (slower; the
    /// default computes the kernel's direct map in the plugin).
    #[arg(long)]
    no_direct_map: bool,
    /// Show the whole serial log of every boot.
    #[arg(long)]
    serial: bool,
}

#[derive(clap::Args)]
struct SuiteArgs {
    /// Systems, comma-separated: ours, ours-global, ours-servers (our
    /// kernel with `structure=servers`), ours-servers-percore,
    /// ours-servers-dedicated, ours-servers-migrate (its server placements,
    /// docs/SERVERS.md "Placement"), ours-servers-copy2 (file data through
    /// messages: `servers.copy=two`), linux, linux-nomitig (Linux booted
    /// with `mitigations=off`).
    #[arg(long, default_value = comparison::suite::options::DEFAULT_SYSTEMS)]
    systems: String,
    /// Core counts, comma-separated or ranges (1,2,4 or 1-4); default 1..host cores.
    #[arg(long)]
    cores: Option<String>,
    /// Workloads, comma-separated, or `all` (every workload `wis --list`
    /// names); default: the 17 of the default suite (a few minutes), and
    /// the migration workload open_close_skewed when a servers system runs.
    #[arg(long)]
    workloads: Option<String>,
    /// Worker kinds, comma-separated: threads, procs.
    #[arg(long, default_value = "threads")]
    modes: String,
    /// Repetitions of every measurement (median and min-max are reported).
    #[arg(long, default_value_t = comparison::suite::options::DEFAULT_RUNS)]
    runs: u32,
    /// auto: KVM if a bounded probe boot with KVM works, else TCG.
    #[arg(long, default_value = "auto")]
    accel: String,
    /// Measured interval of each run, in milliseconds.
    #[arg(long, default_value_t = comparison::suite::options::DEFAULT_MS)]
    ms: u64,
    /// Warm-up before each interval, in milliseconds.
    #[arg(long, default_value_t = comparison::suite::options::DEFAULT_WARMUP_MS)]
    warmup_ms: u64,
    /// Output directory; default target/comparison/<UTC timestamp> plus a `latest` link.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Add another system's records (same JSON) to tables and plots (repeatable).
    #[arg(long = "import", value_name = "FILE")]
    imports: Vec<std::path::PathBuf>,
    /// Seconds one workload may take (the first of a boot: with the boot);
    /// QEMU is killed when a boot makes no progress for that long.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Workloads per boot; 0: all workloads of a (run, system, cores, mode)
    /// in one boot; 1: one boot per measurement.
    #[arg(long, default_value_t = 0)]
    per_boot: usize,
    /// Seed of the workload order within boots (shuffled per run); default
    /// from the clock; the report names it.
    #[arg(long)]
    seed: Option<u64>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: usize,
    /// Show the whole serial log of every run.
    #[arg(long)]
    serial: bool,
    /// Which loader boots our kernel (as for `boot`; `auto` probes Limine once).
    #[arg(long, value_enum, default_value = "builtin")]
    loader: LoaderArg,
    /// Disk image as a virtio-blk device on every run, on every system
    /// (IMAGE or IMAGE:ro; repeatable: /dev/vda, /dev/vdb...).
    #[arg(long = "disk", value_name = "IMAGE[:ro]")]
    disks: Vec<String>,
    /// Repetitions of each robustness measurement when ours-servers is
    /// measured (file- and network-server replacement in one boot each,
    /// file-server crash and NIC driver restart in one boot each, one
    /// network-server crash boot per repetition): the report's
    /// "Robustness" section.
    #[arg(long, default_value_t = 3)]
    robustness_reps: usize,
    /// Skip the robustness measurements (no "Robustness" section).
    #[arg(long)]
    no_robustness: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SystemArg {
    /// This project's kernel.
    Ours,
    /// Debian's Linux cloud kernel (fetched with apt on first use).
    Linux,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Number of virtual CPUs (1..=64).
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Extra file for the initramfs: HOST_PATH:GUEST_PATH (repeatable).
    #[arg(long = "file", value_name = "HOST_PATH:GUEST_PATH")]
    files: Vec<String>,
    /// A host directory tree for the initramfs: HOST_DIR:GUEST_DIR
    /// (repeatable; files, directories, symlinks, modes kept; GUEST_DIR may be /).
    #[arg(long = "dir", value_name = "HOST_DIR:GUEST_DIR")]
    dirs: Vec<String>,
    /// Set a variable in the program's environment (repeatable; adds to or
    /// replaces HOME=/ TERM=linux PATH=/bin:/sbin:/usr/bin:/usr/sbin).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// argv[0] of the program (default /init; e.g. `sh` to run busybox's shell).
    #[arg(long)]
    argv0: Option<String>,
    #[arg(long, value_enum, default_value = "ours")]
    system: SystemArg,
    /// Our kernel only: which loader boots it (as for `boot`).
    #[arg(long, value_enum, default_value = "auto")]
    loader: LoaderArg,
    /// Our kernel only: the lock ablation switch.
    #[arg(long, default_value = "percpu", value_parser = locks_parser())]
    locks: LockMode,
    /// Our kernel only: the file system in the kernel (monolithic) or in
    /// the user-mode file server fsd, started before /init (servers).
    #[arg(long, value_enum, default_value = "monolithic")]
    structure: StructureArg,
    /// With --structure servers: read/write of server files copy once from
    /// the server's page-cache pages (one) or twice through messages
    /// (two): the boot option `servers.copy=`.
    #[arg(long, value_enum, default_value = "one")]
    servers_copy: ServersCopyArg,
    #[arg(long, value_enum, default_value = "tcg")]
    accel: AccelArg,
    /// Seconds before QEMU is killed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: usize,
    /// Extra kernel command-line words (e.g. "log=debug" for ours,
    /// "mitigations=off" for Linux, "net=IP/PREFIX,gw=IP" for both).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Show the whole serial log (kernel lines too), not just the program's output.
    #[arg(long, visible_alias = "verbose")]
    serial: bool,
    /// Network card: user[:HOST=GUEST,...] (QEMU user networking, restrict=on,
    /// TCP 127.0.0.1:HOST forwarded to guest port GUEST), tap:IFNAME[:QUEUES]
    /// (an existing tap device; multiqueue with QUEUES > 1), or none.
    #[arg(long, default_value = "none")]
    nic: String,
    /// Disk image (raw, e.g. made by `mke2fs`) as a virtio-blk device:
    /// IMAGE or IMAGE:ro (read-only); repeatable: /dev/vda, /dev/vdb...
    #[arg(long = "disk", value_name = "IMAGE[:ro]")]
    disks: Vec<String>,
    /// Replace the file server (fs@SECONDS, e.g. fs@1.5) or the network
    /// server (net@SECONDS) SECONDS after /init started (needs --structure
    /// servers): the kernel starts a new instance, hands the state over
    /// while callers wait, and logs the switch (docs/SERVERS.md "Replacing
    /// the file server", "Replacing the network server").
    #[arg(long, value_name = "fs|net@SECONDS")]
    replace: Option<String>,
    /// Kill the file server (crash:fs@SECONDS) or the network server
    /// (crash:net@SECONDS) SECONDS after /init started (needs --structure
    /// servers): the kernel survives, callers get EIO (ECONNRESET/EPIPE on
    /// connected sockets), and the kernel restarts the server
    /// (docs/SERVERS.md "When the file server crashes", "When the network
    /// server crashes").
    #[arg(long, value_name = "crash:fs|net@SECONDS")]
    inject: Option<String>,
    /// Host path of a static Linux executable; it becomes /init.
    program: std::path::PathBuf,
    /// Arguments for the program (after `--`), passed byte for byte.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LoaderArg {
    /// Real Limine when LIMINE_DIR or /usr/share/limine has it and a probe
    /// boot (cached) showed it boots this kernel, else builtin.
    Auto,
    /// The project's own loader through QEMU's -kernel (PVH).
    Builtin,
    /// The built-in loader answering the base revision tag as Limine 7.x/8.x
    /// releases do (supported, loaded revision not reported).
    BuiltinSupportedOnly,
    /// Real Limine from an ISO (LIMINE_DIR or /usr/share/limine).
    Limine,
}

impl LoaderArg {
    fn choice(self) -> LoaderChoice {
        match self {
            LoaderArg::Auto => LoaderChoice::Auto,
            LoaderArg::Builtin => LoaderChoice::Builtin,
            LoaderArg::BuiltinSupportedOnly => LoaderChoice::BuiltinSupportedOnly,
            LoaderArg::Limine => LoaderChoice::Limine,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StructureArg {
    /// The file system runs in the kernel.
    Monolithic,
    /// The file system runs in the user-mode file server (docs/SERVERS.md).
    Servers,
}

impl StructureArg {
    fn structure(self) -> run::Structure {
        match self {
            StructureArg::Monolithic => run::Structure::Monolithic,
            StructureArg::Servers => run::Structure::Servers,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServersCopyArg {
    /// One copy, between the server's granted pages and the user buffer.
    One,
    /// Two copies, through 8 KiB IPC messages.
    Two,
}

impl ServersCopyArg {
    /// The command-line word (none for the default), checked against the
    /// structure it needs.
    fn cmdline_word(self, structure: run::Structure) -> Result<Option<&'static str>> {
        match (self, structure) {
            (ServersCopyArg::One, _) => Ok(None),
            (ServersCopyArg::Two, run::Structure::Servers) => Ok(Some("servers.copy=two")),
            (ServersCopyArg::Two, _) => {
                anyhow::bail!("--servers-copy two needs --structure servers")
            }
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Tcg,
    Kvm,
}

/// `--locks`: the kernel's own `LockMode` and spelling (percpu, global).
fn locks_parser() -> impl clap::builder::TypedValueParser<Value = LockMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(LockMode::ALL.map(LockMode::name))
        .map(|name| name.parse::<LockMode>().expect("a possible value"))
}

#[derive(clap::Args)]
struct BootArgs {
    /// Number of virtual CPUs (1..=64); default: this machine's core count.
    #[arg(long)]
    cores: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    loader: LoaderArg,
    /// TCG works everywhere; KVM only where it is not nested (DESIGN.md §7).
    #[arg(long, value_enum, default_value = "tcg")]
    accel: AccelArg,
    /// Per-CPU caches and partitioned locks (the design), or one global lock
    /// each (the ablation).
    #[arg(long, default_value = "percpu", value_parser = locks_parser())]
    locks: LockMode,
    /// The file system in the kernel (monolithic) or in the user-mode file
    /// server (servers: `structure=servers`, the fsd program in an
    /// initramfs; the kernel starts it with `--run init` only).
    #[arg(long, value_enum, default_value = "monolithic")]
    structure: StructureArg,
    /// With --structure servers: one copy or two for read/write of server
    /// files (the boot option `servers.copy=`).
    #[arg(long, value_enum, default_value = "one")]
    servers_copy: ServersCopyArg,
    /// What the kernel runs once all CPUs are online:
    /// selfcheck, stress:SECS, bench, panic, idle, vmcheck, nettest.
    #[arg(long, default_value = "selfcheck")]
    run: String,
    /// Extra kernel command-line words (e.g. "log=debug").
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: usize,
    /// Seconds before QEMU is killed (default: 120, none with --run idle).
    #[arg(long)]
    timeout: Option<u64>,
    /// Print the whole serial log as it arrives.
    #[arg(long)]
    serial: bool,
    /// Network card: user[:HOST=GUEST,...] (QEMU user networking, restrict=on,
    /// TCP 127.0.0.1:HOST forwarded to guest port GUEST), tap:IFNAME[:QUEUES]
    /// (an existing tap device; multiqueue with QUEUES > 1), or none.
    #[arg(long, default_value = "none")]
    nic: String,
    /// Disk image (raw, e.g. made by `mke2fs`) as a virtio-blk device:
    /// IMAGE or IMAGE:ro (read-only); repeatable: /dev/vda, /dev/vdb...
    #[arg(long = "disk", value_name = "IMAGE[:ro]")]
    disks: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(args) => boot_command(args),
        Command::Run(args) => run_command(args),
        Command::Suite(args) => suite_command(args),
        Command::Sharing(args) => sharing_command(args),
        Command::Commuter(args) => commuter_command(args),
        Command::Robustness(args) => robustness_command(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The number after `cpus online: ` in the serial log, if printed.
fn cpus_online(serial: &str) -> Option<usize> {
    serial.lines().find_map(|line| {
        let at = line.find("cpus online: ")?;
        line[at + "cpus online: ".len()..].trim().parse().ok()
    })
}

fn boot_command(args: BootArgs) -> Result<ExitCode> {
    let host_cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cores = args.cores.unwrap_or(host_cores);
    if cores == 0 || cores > 64 {
        anyhow::bail!("--cores must be between 1 and 64");
    }
    qemu::ensure_available()?;
    let accel = match args.accel {
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Kvm => Accel::Kvm,
    };
    let idle = args.run == "idle";
    let mut cmdline = format!("run={}", args.run);
    if let Some(word) = args.locks.cmdline_word() {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    let structure = args.structure.structure();
    if let Some(word) = structure.cmdline_word() {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    if let Some(word) = args.servers_copy.cmdline_word(structure)? {
        cmdline.push(' ');
        cmdline.push_str(word);
    }
    if !args.cmdline.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(args.cmdline.trim());
    }
    let timeout = match (args.timeout, idle) {
        (Some(secs), _) => Duration::from_secs(secs),
        (None, true) => Duration::from_secs(u64::MAX / 4),
        (None, false) => Duration::from_secs(120),
    };

    eprintln!("building kernel and loader ...");
    let artifacts = comparison::build::build_bare_metal(true)?;
    let loader = boot::resolve_loader(&artifacts, &args.loader.choice())?;
    eprintln!(
        "booting: {cores} cores, loader {}, accel {}, {} MiB, cmdline \"{cmdline}\"",
        loader.describe(),
        accel.name(),
        args.memory
    );
    let modules = match structure {
        run::Structure::Monolithic => Vec::new(),
        run::Structure::Servers => vec![comparison::image::Module {
            guest_path: "boot/initramfs.cpio".into(),
            cmdline: "initramfs".into(),
            data: comparison::initramfs::build_members(&run::server_members()?)?,
        }],
    };
    let request = BootRequest {
        loader,
        cmdline,
        modules,
        vm: VmConfig {
            cores,
            memory_mib: args.memory,
            accel,
            timeout,
            echo: args.serial || idle,
            nic: qemu::Nic::parse(&args.nic)?,
            disks: parse_disks(&args.disks)?,
        },
    };
    let outcome = boot::boot(&artifacts, &request)?;

    let online = cpus_online(&outcome.serial);
    let check = args.run.split(':').next().unwrap_or("").to_string();
    let (pass, fail) = (format!("{check}: pass"), format!("{check}: FAIL"));
    let verdict_line = outcome
        .serial
        .lines()
        .find(|l| l.contains(&pass) || l.contains(&fail))
        .map(str::to_string);
    let passed = outcome.ending == Ending::GuestExit(0)
        && online == Some(cores)
        && verdict_line.as_deref().is_none_or(|l| l.contains(&pass))
        && (check == "bench" || verdict_line.is_some());

    if let Some(n) = online {
        println!("cpus online: {n}");
    }
    if let Some(line) = &verdict_line {
        if let Some(at) = line.find(&format!("{check}: ")) {
            println!("{}", &line[at..]);
        }
    }
    for line in outcome.serial.lines().filter(|l| l.contains("bench: ")) {
        if let Some(at) = line.find("bench: ") {
            println!("{}", &line[at..]);
        }
    }
    if passed {
        eprintln!(
            "ok: {} in {:.2} s",
            outcome.describe_ending(),
            outcome.elapsed.as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "FAILED: {}; cpus online: {}; expected {cores}; loader {}",
            outcome.describe_ending(),
            online.map_or("never printed".to_string(), |n| n.to_string()),
            request.loader.describe()
        );
        if !request.vm.echo {
            match outcome.tail(40) {
                tail if tail.trim().is_empty() => eprintln!("--- the serial log is empty ---"),
                tail => eprintln!("--- last serial lines ---\n{tail}\n---"),
            }
        }
        if !outcome.qemu_stderr.trim().is_empty() {
            eprintln!("--- QEMU stderr ---\n{}", outcome.qemu_stderr.trim());
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The `--disk` arguments, in order.
fn parse_disks(specs: &[String]) -> Result<Vec<qemu::Disk>> {
    specs.iter().map(|s| qemu::Disk::parse(s)).collect()
}

fn robustness_command(args: RobustnessArgs) -> Result<ExitCode> {
    use comparison::robustness;
    if args.cores == 0 || args.cores > 64 || args.runs == 0 || args.rounds == 0 {
        anyhow::bail!("--cores must be 1..64, --runs and --rounds at least 1");
    }
    qemu::ensure_available()?;
    let userland = comparison::userland::build()?;
    let program = userland.program("replace_check")?;
    let systems = run::Systems::prepare(run::System::Ours)?;
    let runs = robustness::measure(
        &systems,
        &program,
        args.cores,
        args.runs,
        args.rounds,
        Duration::from_secs(args.timeout),
    )?;
    let table = robustness::table(&runs, args.cores);
    let out = args
        .out
        .unwrap_or_else(|| std::path::PathBuf::from("target/comparison/robustness.md"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &table)?;
    println!("{table}");
    println!("robustness: table written to {}", out.display());
    let bad = runs
        .iter()
        .any(|r| !r.passed || r.failed != 0 || r.wrong != 0);
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_command(args: RunArgs) -> Result<ExitCode> {
    use comparison::run::{self, Echo, RunRequest, System, Systems, Verdict};
    if args.cores == 0 || args.cores > 64 {
        anyhow::bail!("--cores must be between 1 and 64");
    }
    if !args.program.is_file() {
        anyhow::bail!("program {} does not exist", args.program.display());
    }
    run::read_program(&args.program)?;
    run::check_args(&args.args)?;
    let files = args
        .files
        .iter()
        .map(|f| comparison::initramfs::parse_file_arg(f))
        .collect::<Result<Vec<_>>>()?;
    let dirs = args
        .dirs
        .iter()
        .map(|d| comparison::initramfs::parse_dir_arg(d))
        .collect::<Result<Vec<_>>>()?;
    for (host, _) in &dirs {
        if !host.is_dir() {
            anyhow::bail!("--dir: {} is not a directory", host.display());
        }
    }
    comparison::initramfs::environment(&args.env)?;
    let mut cmdline = args.cmdline.clone();
    if let Some(spec) = &args.replace {
        comparison::robustness::check_replace_spec(spec)?;
        if args.structure.structure() != run::Structure::Servers {
            anyhow::bail!("--replace needs --structure servers");
        }
        cmdline = format!("{cmdline} replace={spec}").trim().to_string();
    }
    if let Some(spec) = &args.inject {
        let Some(rest) = spec.strip_prefix("crash:") else {
            anyhow::bail!("--inject {spec}: expected crash:fs@SECONDS or crash:net@SECONDS");
        };
        comparison::robustness::check_replace_spec(rest)
            .map_err(|e| anyhow::anyhow!("--inject {spec}: {e}"))?;
        if args.structure.structure() != run::Structure::Servers {
            anyhow::bail!("--inject needs --structure servers");
        }
        cmdline = format!("{cmdline} inject={spec}").trim().to_string();
    }
    let extras = run::RunExtras {
        env: args.env.clone(),
        dirs,
        argv0: args.argv0.clone(),
        watchdog: None,
        structure: args.structure.structure(),
    };
    let system = match args.system {
        SystemArg::Ours => System::Ours,
        SystemArg::Linux => System::Linux,
    };
    if system == System::Linux && args.locks != LockMode::PerCpu {
        anyhow::bail!("--locks applies to our kernel only, not to --system linux");
    }
    if system == System::Linux && extras.structure != run::Structure::Monolithic {
        anyhow::bail!("--structure applies to our kernel only, not to --system linux");
    }
    let mut extra_cmdline = cmdline;
    if let Some(word) = args.servers_copy.cmdline_word(extras.structure)? {
        extra_cmdline = format!("{extra_cmdline} {word}").trim().to_string();
    }
    qemu::ensure_available()?;
    let accel = match args.accel {
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Kvm => Accel::Kvm,
    };
    eprintln!("run: preparing {} ...", system.name());
    let systems = Systems::prepare_with_loader(system, args.loader.choice())?;
    let request = RunRequest {
        system,
        program: args.program.clone(),
        files,
        args: args.args,
        locks: args.locks,
        extra_cmdline,
        vm: VmConfig {
            cores: args.cores,
            memory_mib: args.memory,
            accel,
            timeout: Duration::from_secs(args.timeout),
            echo: false,
            nic: qemu::Nic::parse(&args.nic)?,
            disks: parse_disks(&args.disks)?,
        },
        echo: if args.serial {
            Echo::Serial
        } else {
            Echo::Program
        },
    };
    eprintln!(
        "run: {} on {}, {} cores, accel {}{}",
        args.program.display(),
        match &systems.linux {
            Some(linux) => linux.package.clone(),
            None => format!("ours (loader {})", systems.loader.describe()),
        },
        args.cores,
        accel.name(),
        match request.locks.cmdline_word() {
            Some(word) => format!(", {word}"),
            None => String::new(),
        }
    );
    let result = run::run_with(&systems, &request, &extras)?;
    if args.replace.is_some() || args.inject.is_some() {
        eprintln!(
            "{}",
            comparison::robustness::replace_summary(&result.outcome.serial)
        );
    }
    if let Some(summary) = run::unsupported_summary(&result.outcome.serial) {
        eprintln!("{summary}");
    }
    match &result.verdict {
        Verdict::Exited(status) => {
            eprintln!(
                "run: program exited with status {status} ({:.2} s)",
                result.outcome.elapsed.as_secs_f64()
            )
        }
        Verdict::TimedOut => eprintln!(
            "run: TIMED OUT after {} s (exit {})",
            args.timeout,
            run::EXIT_TIMED_OUT
        ),
        Verdict::KernelPanic(msg) | Verdict::SystemError(msg) => {
            eprintln!(
                "run: SYSTEM FAILED: {msg} (exit {})",
                run::EXIT_SYSTEM_FAILED
            )
        }
    }
    if !matches!(result.verdict, Verdict::Exited(_)) && request.echo != Echo::Serial {
        eprintln!(
            "--- last serial lines ---\n{}\n---",
            result.outcome.tail(40)
        );
        if !result.outcome.qemu_stderr.trim().is_empty() {
            eprintln!("--- QEMU stderr ---\n{}", result.outcome.qemu_stderr.trim());
        }
    }
    Ok(ExitCode::from(result.verdict.exit_code()))
}

fn suite_command(args: SuiteArgs) -> Result<ExitCode> {
    use comparison::suite::{options, AccelChoice, SuiteOptions};
    let opts = SuiteOptions {
        systems: options::parse_systems(&args.systems)?,
        cores: match &args.cores {
            Some(list) => options::parse_cores(list)?,
            None => options::default_cores(),
        },
        workloads: args
            .workloads
            .as_deref()
            .map(options::parse_workloads)
            .transpose()?,
        modes: options::parse_modes(&args.modes)?,
        runs: args.runs,
        accel: AccelChoice::parse(&args.accel)?,
        ms: args.ms,
        warmup_ms: Some(args.warmup_ms),
        out: args.out,
        imports: args.imports,
        timeout: Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        verbose: args.serial,
        loader: args.loader.choice(),
        disks: parse_disks(&args.disks)?,
        seed: args.seed,
        per_boot: args.per_boot,
        robustness_reps: if args.no_robustness {
            0
        } else {
            args.robustness_reps
        },
    };
    let outcome = comparison::suite::run_suite(&opts)?;
    println!("{}", outcome.summary);
    println!("report: {}", outcome.out_dir.join("report.md").display());
    println!(
        "plots:  {} (SVG and PNG)",
        outcome.out_dir.join("plots").display()
    );
    if let Some(why) = &outcome.interrupted {
        eprintln!("suite: interrupted: {why}; the files above hold what finished");
        return Ok(ExitCode::from(130));
    }
    if outcome.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "suite: {} measurements gave no result (listed in the report):",
            outcome.failures.len()
        );
        for f in &outcome.failures {
            eprintln!("  {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn sharing_command(args: SharingArgs) -> Result<ExitCode> {
    use comparison::suite::options;
    let opts = comparison::sharing::SharingOptions {
        systems: options::parse_systems(&args.systems)?,
        cores: options::parse_cores(&args.cores)?,
        workloads: args
            .workloads
            .as_deref()
            .map(options::parse_workloads)
            .transpose()?,
        ops: args.ops,
        warmup_ms: args.warmup_ms,
        timeout: Duration::from_secs(args.timeout),
        workload_timeout: (args.workload_timeout > 0)
            .then_some(Duration::from_secs(args.workload_timeout)),
        memory_mib: args.memory,
        out: args.out,
        top: args.top,
        direct: !args.no_direct_map,
        verbose: args.serial,
    };
    let outcome = comparison::sharing::run_sharing(&opts)?;
    println!("{}", outcome.summary);
    println!("report: {}", outcome.out_dir.join("sharing.md").display());
    println!(
        "plots:  {} (SVG and PNG)",
        outcome.out_dir.join("plots").display()
    );
    if outcome.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "sharing: {} workloads gave no result:",
            outcome.failures.len()
        );
        for f in &outcome.failures {
            eprintln!("  {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn commuter_command(args: CommuterArgs) -> Result<ExitCode> {
    use comparison::sharing::pairs::{run_pairs, PairsOptions};
    if args.cores < 2 || args.cores > 64 {
        anyhow::bail!("--cores must be between 2 and 64 (the pairs use CPUs 0 and 1)");
    }
    qemu::ensure_available()?;
    let out = match args.out {
        Some(dir) => dir,
        None => comparison::build::target_dir(&comparison::build::workspace_root())?
            .join("comparison")
            .join(format!("commuter-{}", args.cores)),
    };
    let outcome = run_pairs(&PairsOptions {
        systems: comparison::suite::options::parse_systems(&args.systems)?,
        cores: args.cores,
        reps: args.reps,
        only: args.only,
        out: out.clone(),
        timeout: Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        verbose: args.serial,
    })?;
    println!("{}", outcome.markdown);
    println!("table: {}", out.join("pairs.md").display());
    Ok(if outcome.columns.iter().any(|c| c.failure.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
