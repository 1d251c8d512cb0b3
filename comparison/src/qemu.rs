//! Running QEMU: the command line, the timeout, and reading the serial log.
//!
//! Owns one QEMU process per call.  Invariants: the process always ends
//! (it exits, or it is killed when the timeout passes or, with a
//! `Watchdog`, when no progress line came for its idle time); stdin is closed so QEMU
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

/// The network card of the virtual machine (a virtio-net PCI device,
/// modern only).  Both backends keep all traffic on this machine: user-mode
/// networking runs with `restrict=on` (the guest reaches only QEMU's own
/// gateway and the `hostfwd` ports), and a tap device lives wherever its
/// creator put it (the tests put it in a private network namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nic {
    /// QEMU user-mode networking (slirp) on 10.0.2.0/24; each `(host,
    /// guest)` pair forwards TCP `127.0.0.1:host` to the guest's port.
    ///
    /// Each `guestfwd` pair `(guest, host)` lets the guest reach
    /// `127.0.0.1:host` on this machine at `10.0.2.100:guest` (QEMU opens the
    /// host connection when it starts, so the host side must be listening
    /// first, and it carries one connection).
    User {
        hostfwd: Vec<(u16, u16)>,
        guestfwd: Vec<(u16, u16)>,
    },
    /// An existing tap device with `queues` queue pairs (multiqueue when
    /// more than one).  With `netns`, QEMU runs inside that network
    /// namespace (`ip netns exec`), where the tap must be.
    Tap {
        ifname: String,
        queues: usize,
        netns: Option<String>,
    },
}

impl Nic {
    /// Parses `user[:H=G,...]`, `tap:IFNAME[:QUEUES]` or `none`.
    pub fn parse(spec: &str) -> Result<Option<Nic>> {
        let spec = spec.trim();
        if spec == "none" {
            return Ok(None);
        }
        if spec == "user" {
            return Ok(Some(Nic::User {
                hostfwd: Vec::new(),
                guestfwd: Vec::new(),
            }));
        }
        if let Some(rest) = spec.strip_prefix("user:") {
            let mut hostfwd = Vec::new();
            for pair in rest.split(',') {
                let (host, guest) = pair
                    .split_once('=')
                    .with_context(|| format!("bad port forward {pair:?} (want HOST=GUEST)"))?;
                let port = |text: &str| -> Result<u16> {
                    match text.parse::<u16>() {
                        Ok(p) if p != 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
                        _ => bail!("bad port {text:?} in --nic {spec:?}"),
                    }
                };
                hostfwd.push((port(host)?, port(guest)?));
            }
            return Ok(Some(Nic::User {
                hostfwd,
                guestfwd: Vec::new(),
            }));
        }
        if let Some(rest) = spec.strip_prefix("tap:") {
            let (ifname, queues) = match rest.split_once(':') {
                Some((name, q)) => (
                    name,
                    match q.parse::<usize>() {
                        Ok(n) if (1..=16).contains(&n) && q.bytes().all(|b| b.is_ascii_digit()) => {
                            n
                        }
                        _ => bail!("bad queue count {q:?} in --nic {spec:?} (1..16)"),
                    },
                ),
                None => (rest, 1),
            };
            let valid = !ifname.is_empty()
                && ifname.len() < 16
                && ifname
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !valid {
                bail!("bad tap interface name {ifname:?}");
            }
            return Ok(Some(Nic::Tap {
                ifname: ifname.to_string(),
                queues,
                netns: None,
            }));
        }
        bail!("bad --nic {spec:?} (want user[:HOST=GUEST,...], tap:IFNAME[:QUEUES] or none)")
    }

    /// The QEMU arguments for this card.
    pub fn qemu_args(&self) -> Vec<String> {
        let (netdev, device) = match self {
            Nic::User { hostfwd, guestfwd } => {
                let mut netdev = "user,id=n0,net=10.0.2.0/24,restrict=on".to_string();
                for (host, guest) in hostfwd {
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
                }
                for (guest, host) in guestfwd {
                    netdev.push_str(&format!(
                        ",guestfwd=tcp:10.0.2.100:{guest}-tcp:127.0.0.1:{host}"
                    ));
                }
                (
                    netdev,
                    "virtio-net-pci,netdev=n0,disable-legacy=on".to_string(),
                )
            }
            Nic::Tap { ifname, queues, .. } => {
                let mut netdev = format!("tap,id=n0,ifname={ifname},script=no,downscript=no");
                if *queues > 1 {
                    netdev.push_str(&format!(",queues={queues}"));
                }
                (
                    netdev,
                    format!(
                        "virtio-net-pci,netdev=n0,mq=on,vectors={},disable-legacy=on",
                        2 * queues + 2
                    ),
                )
            }
        };
        vec!["-netdev".into(), netdev, "-device".into(), device]
    }
}

/// A disk image the virtual machine sees as a virtio-blk PCI device
/// (modern only, one request queue per vCPU): the N-th is `/dev/vda`,
/// `/dev/vdb`... on both systems.  Raw format; `read_only` makes QEMU
/// refuse writes and offer `VIRTIO_BLK_F_RO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub read_only: bool,
}

impl Disk {
    /// Parses `IMAGE` or `IMAGE:ro`; the image must exist.
    pub fn parse(spec: &str) -> Result<Disk> {
        let (path, read_only) = match spec.strip_suffix(":ro") {
            Some(p) => (p, true),
            None => (spec, false),
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--disk: {} is not a file", path.display());
        }
        if path.to_string_lossy().contains(',') {
            bail!(
                "--disk: {} has a comma (QEMU cannot name it)",
                path.display()
            );
        }
        Ok(Disk { path, read_only })
    }

    /// The QEMU arguments for disk number `index` on a VM of `cores` vCPUs.
    pub fn qemu_args(&self, index: usize, cores: usize) -> Vec<String> {
        let mut drive = format!(
            "file={},if=none,id=vd{index},format=raw,cache=writeback",
            self.path.display()
        );
        if self.read_only {
            drive.push_str(",readonly=on");
        }
        vec![
            "-drive".into(),
            drive,
            "-device".into(),
            format!(
                "virtio-blk-pci,drive=vd{index},num-queues={},disable-legacy=on",
                cores.clamp(1, 8)
            ),
        ]
    }
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
    /// The network card; `None` gives QEMU `-net none`.
    pub nic: Option<Nic>,
    /// Disk images, in `/dev/vda`, `/dev/vdb`... order.
    pub disks: Vec<Disk>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            cores: 1,
            memory_mib: 512,
            accel: Accel::Tcg,
            timeout: Duration::from_secs(60),
            echo: false,
            nic: None,
            disks: Vec::new(),
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
    match &vm.nic {
        Some(nic) => args.extend(nic.qemu_args()),
        None => push(&["-net", "none"]),
    }
    for (i, disk) in vm.disks.iter().enumerate() {
        args.extend(disk.qemu_args(i, vm.cores));
    }
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

/// A progress watchdog for a run that does many things in turn: QEMU is
/// killed (the run ends `TimedOut`) when `idle` passes without a serial
/// line for which `progress` is true (the start of the run counts as one).
/// `vm.timeout` still bounds the whole run.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    pub idle: Duration,
    pub progress: fn(&str) -> bool,
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
    run_watched(args, vm, None, show)
}

/// `run_streaming` with an optional progress watchdog.
pub fn run_watched(
    args: &[String],
    vm: &VmConfig,
    watchdog: Option<Watchdog>,
    show: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<RunOutcome> {
    let start = Instant::now();
    // A tap in a network namespace: QEMU must run inside that namespace.
    let mut command = match &vm.nic {
        Some(Nic::Tap {
            netns: Some(ns), ..
        }) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, QEMU]);
            c
        }
        _ => Command::new(QEMU),
    };
    let mut child = command
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
    let last_progress = std::cell::Cell::new(start);
    let mut take = |line: &str, serial: &mut String| {
        if watchdog.is_some_and(|w| (w.progress)(line)) {
            last_progress.set(Instant::now());
        }
        emit(show, line);
        serial.push_str(line);
    };
    let status = loop {
        while let Ok(line) = line_rx.try_recv() {
            take(&line, &mut serial);
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        let now = Instant::now();
        let idle_passed = watchdog.is_some_and(|w| now >= last_progress.get() + w.idle);
        if now >= deadline || idle_passed {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(20)) {
            take(&line, &mut serial);
        }
    };
    let _ = reader.join();
    for line in line_rx.try_iter() {
        take(&line, &mut serial);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_specs_parse() {
        assert_eq!(Nic::parse("none").unwrap(), None);
        assert_eq!(
            Nic::parse("user").unwrap(),
            Some(Nic::User {
                hostfwd: vec![],
                guestfwd: vec![]
            })
        );
        assert_eq!(
            Nic::parse("user:8080=80,2222=22").unwrap(),
            Some(Nic::User {
                hostfwd: vec![(8080, 80), (2222, 22)],
                guestfwd: vec![]
            })
        );
        assert_eq!(
            Nic::parse("tap:tap0:2").unwrap(),
            Some(Nic::Tap {
                ifname: "tap0".into(),
                queues: 2,
                netns: None
            })
        );
        for bad in [
            "",
            "usr",
            "user:",
            "user:80",
            "user:0=1",
            "user:1=70000",
            "tap:",
            "tap:t:0",
            "tap:a b",
            "tap:t:x",
        ] {
            assert!(Nic::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn disk_arguments() {
        let dir = std::env::temp_dir().join(format!("qemu-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("a.img");
        std::fs::write(&image, [0u8; 512]).unwrap();
        let spec = image.to_string_lossy().to_string();
        let rw = Disk::parse(&spec).unwrap();
        assert!(!rw.read_only);
        let ro = Disk::parse(&format!("{spec}:ro")).unwrap();
        assert!(ro.read_only && ro.path == image);
        assert!(Disk::parse(&dir.join("missing.img").to_string_lossy()).is_err());
        let vm = VmConfig {
            cores: 2,
            disks: vec![rw, ro],
            ..VmConfig::default()
        };
        let args = machine_args(&vm);
        let drive0 = format!("file={spec},if=none,id=vd0,format=raw,cache=writeback");
        let drive1 = format!("file={spec},if=none,id=vd1,format=raw,cache=writeback,readonly=on");
        assert!(args.windows(2).any(|w| w == ["-drive", drive0.as_str()]));
        assert!(args.windows(2).any(|w| w == ["-drive", drive1.as_str()]));
        assert!(
            args.contains(&"virtio-blk-pci,drive=vd1,num-queues=2,disable-legacy=on".to_string())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nic_arguments() {
        let vm = VmConfig::default();
        assert!(machine_args(&vm).windows(2).any(|w| w == ["-net", "none"]));
        let vm = VmConfig {
            nic: Some(Nic::User {
                hostfwd: vec![(5555, 7)],
                guestfwd: vec![(80, 8080)],
            }),
            ..VmConfig::default()
        };
        let args = machine_args(&vm);
        assert!(!args.windows(2).any(|w| w == ["-net", "none"]));
        assert!(args.contains(
            &"user,id=n0,net=10.0.2.0/24,restrict=on,hostfwd=tcp:127.0.0.1:5555-:7,\
              guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:8080"
                .to_string()
        ));
        assert!(args.contains(&"virtio-net-pci,netdev=n0,disable-legacy=on".to_string()));
        let tap = Nic::Tap {
            ifname: "tap0".into(),
            queues: 2,
            netns: None,
        };
        assert_eq!(
            tap.qemu_args(),
            [
                "-netdev",
                "tap,id=n0,ifname=tap0,script=no,downscript=no,queues=2",
                "-device",
                "virtio-net-pci,netdev=n0,mq=on,vectors=6,disable-legacy=on"
            ]
        );
    }
}
