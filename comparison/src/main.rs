//! `comparison`: the host CLI of the study.
//!
//! `boot` builds the kernel and the built-in loader, boots the kernel in QEMU
//! on N cores and reports whether every CPU came online and the kernel's
//! self-check passed.  (The workload suite and Linux runs join as later
//! subcommands.)  Exit status: 0 on success, 1 on any failure, with the tail of
//! the serial log on stderr.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::qemu::{self, Accel, Ending, VmConfig};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "comparison", about = "Build, boot and measure the per-core kernel in QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the kernel on N cores, wait for every CPU and the self-check.
    Boot(BootArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum LoaderArg {
    /// Real Limine when LIMINE_DIR or /usr/share/limine has it, else builtin.
    Auto,
    /// The project's own loader through QEMU's -kernel (PVH).
    Builtin,
    /// Real Limine from an ISO.
    Limine,
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Tcg,
    Kvm,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LocksArg {
    /// Per-CPU caches and partitioned locks (the design).
    Percpu,
    /// One global lock each: the ablation.
    Global,
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
    #[arg(long, value_enum, default_value = "percpu")]
    locks: LocksArg,
    /// What the kernel runs once all CPUs are online:
    /// selfcheck, stress:SECS, bench, panic, idle.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(args) => boot_command(args),
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
    let host_cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cores = args.cores.unwrap_or(host_cores);
    if cores == 0 || cores > 64 {
        anyhow::bail!("--cores must be between 1 and 64");
    }
    qemu::ensure_available()?;
    let loader = match args.loader {
        LoaderArg::Auto => LoaderChoice::Auto,
        LoaderArg::Builtin => LoaderChoice::Builtin,
        LoaderArg::Limine => LoaderChoice::Limine,
    };
    let loader = boot::resolve_loader(loader)?;
    let accel = match args.accel {
        AccelArg::Tcg => Accel::Tcg,
        AccelArg::Kvm => Accel::Kvm,
    };
    let idle = args.run == "idle";
    let mut cmdline = format!("run={}", args.run);
    if args.locks == LocksArg::Global {
        cmdline.push_str(" locks=global");
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
    eprintln!(
        "booting: {cores} cores, loader {}, accel {}, {} MiB, cmdline \"{cmdline}\"",
        if loader == LoaderChoice::Limine { "limine" } else { "builtin" },
        accel.name(),
        args.memory
    );
    let request = BootRequest {
        loader,
        cmdline,
        modules: Vec::new(),
        vm: VmConfig { cores, memory_mib: args.memory, accel, timeout, echo: args.serial || idle },
    };
    let outcome = boot::boot(&artifacts, &request)?;

    let online = cpus_online(&outcome.serial);
    let check = args.run.split(':').next().unwrap_or("").to_string();
    let (pass, fail) = (format!("{check}: pass"), format!("{check}: FAIL"));
    let verdict_line =
        outcome.serial.lines().find(|l| l.contains(&pass) || l.contains(&fail)).map(str::to_string);
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
        eprintln!("ok: {} in {:.2} s", outcome.describe_ending(), outcome.elapsed.as_secs_f64());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "FAILED: {}; cpus online: {}; expected {cores}",
            outcome.describe_ending(),
            online.map_or("never printed".to_string(), |n| n.to_string())
        );
        if !request.vm.echo {
            eprintln!("--- last serial lines ---\n{}\n---", outcome.tail(40));
        }
        if !outcome.qemu_stderr.trim().is_empty() {
            eprintln!("--- QEMU stderr ---\n{}", outcome.qemu_stderr.trim());
        }
        Ok(ExitCode::FAILURE)
    }
}
