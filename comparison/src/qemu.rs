//! Running QEMU: the command line, the timeout, and reading the serial log.
//!
//! Owns one QEMU process per call.  Invariants: the process always ends
//! (it exits, or it is killed when the timeout passes); stdin is closed so QEMU
//! never waits on a terminal; the serial log is kept whole in memory and,
//! when asked, echoed line by line as it arrives (all of it, or the view a
//! caller's filter makes of it: `run_streaming`).  The guest's verdict comes
//! from `isa-debug-exit` (docs/CONTRACTS.md §5) plus its `kernel exit:` line.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The QEMU binary every run uses.
pub const QEMU: &str = "qemu-system-x86_64";

/// Which accelerator QEMU uses.  Numbers from different accelerators are
/// never compared (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// What QEMU boots from.
#[derive(Debug, Clone)]
pub enum Medium {
    /// The built-in loader (`-kernel`) with a boot bundle (`-initrd`).
    Builtin { loader: PathBuf, bundle: PathBuf },
    /// A Limine ISO (`-cdrom`).
    Iso(PathBuf),
}

/// How to run the virtual machine.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub cores: usize,
    pub memory_mib: usize,
    pub accel: Accel,
    pub timeout: Duration,
    /// Echo the serial log to our stdout as it arrives.
    pub echo: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            cores: 1,
            memory_mib: 512,
            accel: Accel::Tcg,
            timeout: Duration::from_secs(60),
            echo: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guest wrote this code to `isa-debug-exit`.
    GuestExit(u32),
    /// QEMU ended some other way (triple fault with `-no-reboot`, a QEMU
    /// error, a signal).
    QemuExit(Option<i32>),
    /// Killed after the timeout.
    TimedOut,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub serial: String,
    pub ending: Ending,
    pub elapsed: Duration,
    pub qemu_stderr: String,
}

impl RunOutcome {
    /// The code of the `kernel exit: CODE` line, if the kernel printed one.
    pub fn kernel_exit_line(&self) -> Option<u32> {
        self.serial.lines().rev().find_map(|line| {
            let at = line.find("kernel exit: ")?;
            line[at + "kernel exit: ".len()..].trim().parse().ok()
        })
    }

    /// The last `n` lines of the serial log, for error reports.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True if some serial line contains `needle`.
    pub fn has_line(&self, needle: &str) -> bool {
        self.serial.lines().any(|l| l.contains(needle))
    }

    /// A one-line description of how the run ended.
    pub fn describe_ending(&self) -> String {
        match &self.ending {
            Ending::GuestExit(code) => format!("guest exit code {code}"),
            Ending::QemuExit(Some(status)) => {
                format!("QEMU exited with status {status} (no guest exit code)")
            }
            Ending::QemuExit(None) => "QEMU was killed by a signal".to_string(),
            Ending::TimedOut => "timed out".to_string(),
        }
    }
}

/// The QEMU version line, recorded with every result.
pub fn version() -> Result<String> {
    let out = Command::new(QEMU)
        .arg("--version")
        .output()
        .with_context(|| {
            format!("{QEMU} not found: run tools/setup.sh (installs Debian's qemu-system-x86)")
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The full QEMU argument list for a run.
pub fn command_args(medium: &Medium, vm: &VmConfig) -> Vec<String> {
    let mut args = machine_args(vm);
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    match medium {
        Medium::Builtin { loader, bundle } => {
            push(&[
                "-kernel",
                &loader.to_string_lossy(),
                "-initrd",
                &bundle.to_string_lossy(),
            ]);
        }
        Medium::Iso(iso) => push(&["-cdrom", &iso.to_string_lossy(), "-boot", "d"]),
    }
    args
}

/// The QEMU arguments for booting a Linux bzImage with an initramfs and a
/// command line, on the same virtual machine as our kernel gets.
pub fn linux_command_args(
    kernel: &Path,
    initrd: &Path,
    append: &str,
    vm: &VmConfig,
) -> Vec<String> {
    let mut args = machine_args(vm);
    for item in [
        "-kernel",
        &kernel.to_string_lossy(),
        "-initrd",
        &initrd.to_string_lossy(),
        "-append",
        append,
    ] {
        args.push(item.to_string());
    }
    args
}

/// The machine every boot uses (accelerator, CPUs, memory, serial, exit
/// device), whatever it boots.
fn machine_args(vm: &VmConfig) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    match vm.accel {
        Accel::Tcg => push(&["-accel", "tcg,thread=multi", "-cpu", "max"]),
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
    }
    push(&[
        "-smp",
        &vm.cores.to_string(),
        "-m",
        &format!("{}M", vm.memory_mib),
    ]);
    push(&[
        "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio",
    ]);
    push(&[
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]);
    push(&["-net", "none"]);
    args
}

/// Run QEMU until it exits or the timeout passes.
pub fn run(medium: &Medium, vm: &VmConfig) -> Result<RunOutcome> {
    run_with_args(&command_args(medium, vm), vm)
}

/// Run QEMU with an explicit argument list (used for Linux boots too).
/// With `vm.echo` every serial line is printed as it arrives.
pub fn run_with_args(args: &[String], vm: &VmConfig) -> Result<RunOutcome> {
    let echo = vm.echo;
    run_streaming(args, vm, &mut |line: &str| {
        if echo {
            Some(line.to_string())
        } else {
            None
        }
    })
}

/// Run QEMU with an explicit argument list; `show` sees every serial line
/// (without `\r`, with its `\n`) as it arrives and returns what to print on
/// our stdout for it, if anything.  The whole log is kept in the outcome
/// either way.  (`vm.echo` is ignored here: `show` decides.)
pub fn run_streaming(
    args: &[String],
    vm: &VmConfig,
    show: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<RunOutcome> {
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {QEMU}: run tools/setup.sh to install QEMU"))?;

    // Serial bytes arrive on stdout; a reader thread forwards lines so the
    // timeout can be enforced here without blocking on a read.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).replace('\r', "");
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });

    let mut serial = String::new();
    let deadline = start + vm.timeout;
    let status = loop {
        while let Ok(line) = line_rx.try_recv() {
            emit(show, &line);
            serial.push_str(&line);
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(20)) {
            emit(show, &line);
            serial.push_str(&line);
        }
    };
    let _ = reader.join();
    for line in line_rx.try_iter() {
        emit(show, &line);
        serial.push_str(&line);
    }
    let qemu_stderr = stderr_reader.join().unwrap_or_default();
    let ending = match status {
        None => Ending::TimedOut,
        Some(status) => match status.code() {
            // isa-debug-exit: the guest writes CODE + 16 and QEMU exits with
            // ((CODE + 16) << 1) | 1 (docs/CONTRACTS.md §5).
            Some(status) if status >= 33 && status % 2 == 1 => {
                Ending::GuestExit((status as u32 - 33) / 2)
            }
            other => Ending::QemuExit(other),
        },
    };
    Ok(RunOutcome {
        serial,
        ending,
        elapsed: start.elapsed(),
        qemu_stderr,
    })
}

/// Print what `show` makes of one serial line, at once.
fn emit(show: &mut dyn FnMut(&str) -> Option<String>, line: &str) {
    if let Some(text) = show(line) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// Check that QEMU can be started at all, with a helpful message if not.
pub fn ensure_available() -> Result<()> {
    match Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "{QEMU} is not installed: run tools/setup.sh (it installs Debian's qemu-system-x86)"
        ),
    }
}

/// Write `bytes` to `dir/name`, creating `dir`.
pub fn write_media(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
