//! Kernel command line -> `Options` (docs/CONTRACTS.md §3).
//!
//! Owns the meaning of the boot options and their defaults. Pure parsing:
//! no hardware access, no allocation, no logging of its own (unknown keys are
//! handed to a caller-supplied callback). Invariant: a known key with a bad
//! value is an error, never silently replaced by the default, so a typo in
//! `locks=` cannot turn a benchmark into a different experiment.
//!
//! User space (docs/USERSPACE.md): `run=init` runs PID 1 (the default when
//! an initramfs is given and no `run=`), `init=/path` names it (default
//! `/init`), and the words after a lone `--` are its arguments; the kernel
//! does not interpret them.  Arguments of any shape (spaces, empty, any
//! byte but NUL) come instead in the initramfs file `/.init/argv`, the
//! environment in `/.init/envp` (`split_nul_list` reads both).

use core::fmt;
use log::LevelFilter;

/// What the kernel does once every CPU is online (`run=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Functional self-checks, then exit (`selfcheck: pass`/`FAIL`).
    Selfcheck,
    /// Stress for this many seconds, then report.
    Stress { secs: u64 },
    /// Benchmarks, one `bench: {json}` line each.
    Bench,
    /// Panic on purpose (tests the panic path).
    Panic,
    /// Do nothing; stay up until killed.
    Idle,
    /// Checks of the user address-space code (`vmcheck: pass`/`FAIL`).
    VmCheck,
    /// Frame-level NIC test: ARP and ICMP echo with the gateway
    /// (`nettest: pass`/`FAIL`).
    NetTest,
    /// Run PID 1 from the initramfs; its exit status is the kernel's.
    Init,
}

/// The ablation switch (`locks=`) lives in `percpu`; its boot-time value is
/// read through `percpu::lock_mode()` (re-exported here for the modules that
/// still name it `cmdline::lock_mode`).
pub use percpu::{lock_mode, LockMode};

/// Parsed boot options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub run: RunMode,
    /// Whether `run=` was on the command line (else an initramfs makes
    /// the run mode `init`).
    pub run_given: bool,
    pub locks: LockMode,
    pub log: LevelFilter,
    /// `structure=`: where the file system runs.
    pub structure: Structure,
    /// `servers.placement=`: where the OS servers' threads run
    /// (`structure=servers` only; docs/SERVERS.md, "Placement").
    pub placement: Placement,
    /// `servers.migrate=on|off`: whether the kernel moves a single server
    /// thread to the core whose callers waited most (`ipc::migrate`).
    pub migrate: bool,
    /// `servers.copy=`: how file data moves between the file server and
    /// user buffers in `structure=servers`.
    pub server_copy: ServerCopy,
    /// `servers.nic=`: who drives the NIC in `structure=servers`.
    pub nic: NicDriver,
}

/// Where the OS servers' serving threads run (`servers.placement=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One serving thread per server, unpinned (the default).
    Single,
    /// One serving thread per CPU, each pinned to its CPU; a call is
    /// delivered to the receiver waiting on the caller's CPU.
    PerCore,
    /// The serving thread pinned on a core of its own (the last CPU);
    /// with one CPU the servers fall back to `Single` (logged).
    Dedicated,
}

impl Placement {
    /// The spelling on the command line (and in the servers' argv).
    pub fn name(self) -> &'static str {
        match self {
            Placement::Single => "single",
            Placement::PerCore => "percore",
            Placement::Dedicated => "dedicated",
        }
    }

    /// The placement spelled `name`, if any.
    pub fn from_name(name: &str) -> Option<Placement> {
        match name {
            "single" => Some(Placement::Single),
            "percore" => Some(Placement::PerCore),
            "dedicated" => Some(Placement::Dedicated),
            _ => None,
        }
    }
}

/// How `read`/`write` of a server file move data (`servers.copy=`,
/// docs/SERVERS.md "Copy modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCopy {
    /// One copy: between the server's page-cache pages (granted to the
    /// kernel for the call) and the user buffer (the default).
    One,
    /// Two copies: through 8 KiB IPC payloads (server page cache ->
    /// message -> user buffer), for comparison.
    Two,
}

/// Who drives the virtio-net NIC in `structure=servers` (`servers.nic=`,
/// docs/SERVERS.md "The NIC driver process"); the monolithic structure
/// always uses the kernel's driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicDriver {
    /// A user-mode driver process (`nicd`) serving `netd` (the default).
    Process,
    /// Nobody: the kernel's driver runs but no socket reaches it; `netd`
    /// has loopback only.
    None,
}

/// How the kernel is structured (`structure=`, docs/SERVERS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structure {
    /// The file system runs in the kernel (the default).
    Monolithic,
    /// The file system runs in a user-mode file server (`fsd`), started
    /// before `/init`; file-system calls are delegated to it over IPC.
    Servers,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            run: RunMode::Selfcheck,
            run_given: false,
            locks: LockMode::PerCpu,
            log: LevelFilter::Info,
            structure: Structure::Monolithic,
            placement: Placement::Single,
            migrate: false,
            server_copy: ServerCopy::One,
            nic: NicDriver::Process,
        }
    }
}

/// The options parsed at boot (set once by `main`).
static OPTIONS: spin::Once<Options> = spin::Once::new();

/// Records the boot options (first call wins) and installs their lock mode
/// as the one boot-time value (`percpu::lock_mode()`).
pub fn set_options(opts: Options) {
    let opts = *OPTIONS.call_once(|| opts);
    // The first call fixed OPTIONS, so its mode is the one `percpu` holds.
    let _ = percpu::set_lock_mode(opts.locks);
}

/// The boot options; the defaults until `set_options` ran.
pub fn options() -> Options {
    OPTIONS.get().copied().unwrap_or_default()
}

/// A known key with a value we do not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdlineError<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad value {:?} for {}= (expected {})",
            self.value, self.key, self.expected
        )
    }
}

/// The words before the first lone `--` (the kernel's own options).
fn kernel_words(line: &str) -> impl Iterator<Item = &str> {
    line.split_ascii_whitespace().take_while(|w| *w != "--")
}

/// PID 1's arguments: the words after the first lone `--`.
pub fn init_args(line: &str) -> impl Iterator<Item = &str> {
    line.split_ascii_whitespace()
        .skip_while(|w| *w != "--")
        .skip(1)
}

/// The root device (`root=/dev/vdX`): an ext2 disk as `/` instead of the
/// initramfs; `None` when not given.
pub fn root_device(line: &str) -> Option<&str> {
    kernel_words(line)
        .filter_map(|w| w.strip_prefix("root="))
        .last()
}

/// PID 1's path (`init=`, default `/init`); `parse` checked it.
pub fn init_path(line: &str) -> &str {
    kernel_words(line)
        .filter_map(|w| w.strip_prefix("init="))
        .last()
        .unwrap_or("/init")
}

/// The interface address from `net=IP/PREFIX[,gw=IP]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    pub ip: [u8; 4],
    pub prefix_len: u8,
    pub gateway: Option<[u8; 4]>,
}

impl NetConfig {
    /// QEMU user-mode networking's guest address: 10.0.2.15/24 via 10.0.2.2.
    pub const USER_MODE_DEFAULT: NetConfig = NetConfig {
        ip: [10, 0, 2, 15],
        prefix_len: 24,
        gateway: Some([10, 0, 2, 2]),
    };
}

/// Parses a dotted-quad IPv4 address (four decimal bytes, digits only).
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Parses the value of `net=`: `IP/PREFIX` optionally followed by `,gw=IP`.
pub fn parse_net(value: &str) -> Option<NetConfig> {
    let (address, gateway) = match value.split_once(',') {
        Some((address, rest)) => (address, Some(parse_ipv4(rest.strip_prefix("gw=")?)?)),
        None => (value, None),
    };
    let (ip, prefix) = address.split_once('/')?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix_len: u8 = prefix.parse().ok()?;
    (prefix_len <= 32).then_some(())?;
    Some(NetConfig {
        ip: parse_ipv4(ip)?,
        prefix_len,
        gateway,
    })
}

/// The `net=` setting (the last one wins; `parse` checked them all), or
/// `None` when the command line has none.
pub fn net_config(line: &str) -> Option<NetConfig> {
    kernel_words(line)
        .filter_map(|w| w.strip_prefix("net="))
        .last()
        .and_then(parse_net)
}

/// Where a run's harness puts PID 1's argument vector inside the initramfs
/// (docs/USERSPACE.md "Boot to PID 1"): the whole argv, argv[0] included.
pub const INIT_ARGV_FILE: &str = "/.init/argv";
/// Where it puts PID 1's whole environment.
pub const INIT_ENVP_FILE: &str = "/.init/envp";
/// The directory holding both (removed once read, when empty).
pub const INIT_ARGS_DIR: &str = "/.init";

/// A malformed `/.init/argv` or `/.init/envp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NulListError {
    /// The last entry has no terminating NUL byte (a truncated file).
    Unterminated,
    /// The file holds no entry (argv needs at least argv[0]).
    Empty,
}

impl fmt::Display for NulListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NulListError::Unterminated => "the last entry lacks its terminating NUL byte",
            NulListError::Empty => "no entries (argv[0] at least is needed)",
        })
    }
}

/// Splits the contents of an argv/envp file: every entry is a byte string
/// followed by one NUL byte, as in Linux's `/proc/PID/cmdline` (so an empty
/// argument is a lone NUL, and any other byte, spaces and UTF-8 included,
/// is kept as is).  An empty file is an empty list; `nonempty` refuses it.
pub fn split_nul_list(
    data: &[u8],
    nonempty: bool,
) -> Result<impl Iterator<Item = &[u8]>, NulListError> {
    if nonempty && data.is_empty() {
        return Err(NulListError::Empty);
    }
    let body = match data.split_last() {
        None => data,
        Some((0, body)) => body,
        Some(_) => return Err(NulListError::Unterminated),
    };
    // `split` of an empty slice yields one empty item: skip it for an empty file.
    Ok(body
        .split(|b| *b == 0)
        .take(if data.is_empty() { 0 } else { usize::MAX }))
}

/// Known words without a value: `syscount` (PID 1's exit prints the
/// per-syscall call counts, `syscall::count`), `vmstat` (PID 1's exit
/// prints the VM's fault and shootdown counters, `memory::vm`).
const FLAGS: &[&str] = &["syscount", "vmstat"];

/// Whether the kernel's own words (before `--`) include `word`.
pub fn has_word(line: &str, word: &str) -> bool {
    kernel_words(line).any(|w| w == word)
}

/// Parses space-separated `key=value` words (up to a lone `--`). Words
/// that are not known keys (including words without `=`) go to
/// `on_unknown` and are otherwise ignored. A later occurrence of a key
/// overrides an earlier one.
pub fn parse<'a>(
    line: &'a str,
    mut on_unknown: impl FnMut(&'a str),
) -> Result<Options, CmdlineError<'a>> {
    let mut opts = Options::default();
    for word in kernel_words(line) {
        let Some((key, value)) = word.split_once('=') else {
            if !FLAGS.contains(&word) {
                on_unknown(word);
            }
            continue;
        };
        match key {
            "run" => {
                opts.run = parse_run(value).ok_or(CmdlineError {
                    key,
                    value,
                    expected:
                        "selfcheck, stress:SECS, bench, panic, idle, vmcheck, nettest or init",
                })?;
                opts.run_given = true;
            }
            "init" => {
                if !value.starts_with('/') || value.len() < 2 {
                    return Err(CmdlineError {
                        key,
                        value,
                        expected: "an absolute path such as /init",
                    });
                }
            }
            // `replace=fs@SECONDS`, `inject=crash:fs@SECONDS`: read by
            // `proc::server_replace` and `proc::server_restart`.
            "replace" | "inject" => {}
            "net" => {
                if parse_net(value).is_none() {
                    return Err(CmdlineError {
                        key,
                        value,
                        expected: "IP/PREFIX or IP/PREFIX,gw=IP such as 10.0.2.15/24,gw=10.0.2.2",
                    });
                }
            }
            "locks" => {
                opts.locks = match LockMode::from_name(value) {
                    Some(mode) => mode,
                    None => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "percpu or global",
                        })
                    }
                }
            }
            "structure" => {
                opts.structure = match value {
                    "monolithic" => Structure::Monolithic,
                    "servers" => Structure::Servers,
                    _ => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "monolithic or servers",
                        })
                    }
                }
            }
            "servers.placement" => {
                opts.placement = Placement::from_name(value).ok_or(CmdlineError {
                    key,
                    value,
                    expected: "single, percore or dedicated",
                })?;
            }
            "servers.migrate" => {
                opts.migrate = match value {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "on or off",
                        })
                    }
                }
            }
            "servers.nic" => {
                opts.nic = match value {
                    "process" => NicDriver::Process,
                    "none" => NicDriver::None,
                    _ => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "process or none",
                        })
                    }
                }
            }
            "servers.copy" => {
                opts.server_copy = match value {
                    "one" => ServerCopy::One,
                    "two" => ServerCopy::Two,
                    _ => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "one or two",
                        })
                    }
                }
            }
            "log" => {
                opts.log = match value {
                    "error" => LevelFilter::Error,
                    "warn" => LevelFilter::Warn,
                    "info" => LevelFilter::Info,
                    "debug" => LevelFilter::Debug,
                    "trace" => LevelFilter::Trace,
                    _ => {
                        return Err(CmdlineError {
                            key,
                            value,
                            expected: "error, warn, info, debug or trace",
                        })
                    }
                }
            }
            _ => on_unknown(word),
        }
    }
    Ok(opts)
}

fn parse_run(value: &str) -> Option<RunMode> {
    match value {
        "selfcheck" => Some(RunMode::Selfcheck),
        "bench" => Some(RunMode::Bench),
        "panic" => Some(RunMode::Panic),
        "idle" => Some(RunMode::Idle),
        "vmcheck" => Some(RunMode::VmCheck),
        "nettest" => Some(RunMode::NetTest),
        "init" => Some(RunMode::Init),
        _ => {
            let secs = value.strip_prefix("stress:")?;
            // Digits only: `u64::from_str` would also accept a leading '+'.
            if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let secs: u64 = secs.parse().ok()?;
            (secs > 0).then_some(RunMode::Stress { secs })
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunMode::Selfcheck => f.write_str("selfcheck"),
            RunMode::Stress { secs } => write!(f, "stress:{}", secs),
            RunMode::Bench => f.write_str("bench"),
            RunMode::Panic => f.write_str("panic"),
            RunMode::Idle => f.write_str("idle"),
            RunMode::VmCheck => f.write_str("vmcheck"),
            RunMode::NetTest => f.write_str("nettest"),
            RunMode::Init => f.write_str("init"),
        }
    }
}

/// The `log=` spelling of a level filter (lower case, as on the command line).
pub fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

// The kernel binary has no test harness (bare metal); these tests run on the
// host by compiling this file into a scratch crate (`#[path]` module).
#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(line: &str) -> Options {
        parse(line, |_| {}).expect("valid command line")
    }

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(parse_ok(""), Options::default());
        assert_eq!(parse_ok("   "), Options::default());
        assert_eq!(Options::default().run, RunMode::Selfcheck);
        assert_eq!(Options::default().locks, LockMode::PerCpu);
        assert_eq!(Options::default().log, LevelFilter::Info);
    }

    #[test]
    fn every_key_and_value() {
        let o = parse_ok("run=stress:30 locks=global log=debug");
        assert_eq!(
            o,
            Options {
                run: RunMode::Stress { secs: 30 },
                run_given: true,
                locks: LockMode::Global,
                log: LevelFilter::Debug,
                structure: Structure::Monolithic,
                placement: Placement::Single,
                migrate: false,
                server_copy: ServerCopy::One,
                nic: NicDriver::Process,
            }
        );
        assert_eq!(parse_ok("structure=servers").structure, Structure::Servers);
        assert_eq!(parse_ok("servers.nic=none").nic, NicDriver::None);
        assert_eq!(parse_ok("servers.nic=process").nic, NicDriver::Process);
        assert!(parse("servers.nic=kernel", |_| {}).is_err());
        assert!(parse("structure=micro", |_| {}).is_err());
        let o = parse_ok("structure=servers servers.copy=two");
        assert_eq!(
            (o.structure, o.server_copy),
            (Structure::Servers, ServerCopy::Two)
        );
        assert_eq!(parse_ok("servers.copy=one").server_copy, ServerCopy::One);
        assert!(parse("servers.copy=zero", |_| {}).is_err());
        assert!(parse("servers.copy=", |_| {}).is_err());
        assert_eq!(parse_ok("run=bench").run, RunMode::Bench);
        assert_eq!(parse_ok("run=panic").run, RunMode::Panic);
        assert_eq!(parse_ok("run=idle").run, RunMode::Idle);
        assert_eq!(parse_ok("run=vmcheck").run, RunMode::VmCheck);
        assert_eq!(parse_ok("log=trace").log, LevelFilter::Trace);
        assert_eq!(parse_ok("log=error").log, LevelFilter::Error);
        assert_eq!(parse_ok("locks=percpu").locks, LockMode::PerCpu);
    }

    #[test]
    fn init_options_and_arguments() {
        let line = "run=init init=/bin/prog locks=global -- -v  run=bench --";
        let o = parse_ok(line);
        assert_eq!(
            (o.run, o.run_given, o.locks),
            (RunMode::Init, true, LockMode::Global)
        );
        assert_eq!(init_path(line), "/bin/prog");
        assert_eq!(
            init_args(line).collect::<Vec<_>>(),
            ["-v", "run=bench", "--"]
        );
        assert_eq!(init_path("log=debug"), "/init");
        assert_eq!(init_args("log=debug").count(), 0);
        assert!(!parse_ok("log=debug").run_given);
        for bad in ["init=", "init=init", "init=/"] {
            assert_eq!(parse(bad, |_| {}).unwrap_err().key, "init", "{}", bad);
        }
    }

    #[test]
    fn net_option() {
        assert_eq!(parse_ok("run=nettest").run, RunMode::NetTest);
        let line = "net=10.0.3.2/24 run=nettest";
        parse_ok(line);
        assert_eq!(
            net_config(line),
            Some(NetConfig {
                ip: [10, 0, 3, 2],
                prefix_len: 24,
                gateway: None
            })
        );
        assert_eq!(
            net_config("net=10.0.2.15/24,gw=10.0.2.2"),
            Some(NetConfig::USER_MODE_DEFAULT)
        );
        assert_eq!(net_config("log=debug"), None);
        for bad in [
            "net=",
            "net=10.0.2.15",
            "net=10.0.2.15/33",
            "net=10.0.2/24",
            "net=10.0.2.256/24",
            "net=10.0.2.15/24,gw=",
            "net=10.0.2.15/24,gateway=10.0.2.2",
            "net=10.0.2.15/24,gw=10.0.2.2.1",
            "net=+1.0.2.15/24",
        ] {
            assert_eq!(parse(bad, |_| {}).unwrap_err().key, "net", "{}", bad);
        }
    }

    #[test]
    fn nul_separated_argument_files() {
        fn list(d: &[u8], ne: bool) -> Result<Vec<&[u8]>, NulListError> {
            split_nul_list(d, ne).map(|it| it.collect())
        }
        assert_eq!(
            list(b"/init\0a b\0\0x\"y\0\xc3\xa9\0", true).unwrap(),
            [&b"/init"[..], b"a b", b"", b"x\"y", "\u{e9}".as_bytes()]
        );
        assert_eq!(list(b"\0", true).unwrap(), [&b""[..]]);
        assert_eq!(list(b"", false).unwrap(), Vec::<&[u8]>::new());
        assert_eq!(list(b"", true).unwrap_err(), NulListError::Empty);
        assert_eq!(
            list(b"/init\0a", true).unwrap_err(),
            NulListError::Unterminated
        );
        assert_eq!(
            list(b"HOME=/", false).unwrap_err(),
            NulListError::Unterminated
        );
    }

    #[test]
    fn server_placement_and_migration() {
        assert_eq!(Options::default().placement, Placement::Single);
        assert!(!Options::default().migrate);
        for p in [Placement::Single, Placement::PerCore, Placement::Dedicated] {
            let line = format!("servers.placement={}", p.name());
            assert_eq!(parse_ok(&line).placement, p);
            assert_eq!(Placement::from_name(p.name()), Some(p));
        }
        let o = parse_ok("structure=servers servers.placement=percore servers.migrate=on");
        assert_eq!(
            (o.structure, o.placement, o.migrate),
            (Structure::Servers, Placement::PerCore, true)
        );
        assert!(!parse_ok("servers.migrate=on servers.migrate=off").migrate);
        for bad in [
            "servers.placement=",
            "servers.placement=PerCore",
            "servers.placement=all",
            "servers.migrate=yes",
            "servers.migrate=",
        ] {
            let e = parse(bad, |_| {}).expect_err(bad);
            assert_eq!(bad.split_once('=').unwrap().0, e.key, "{}", bad);
        }
        // Words after `--` are PID 1's.
        assert_eq!(
            parse_ok("-- servers.placement=bogus").placement,
            Placement::Single
        );
    }

    #[test]
    fn later_words_override_earlier_ones() {
        assert_eq!(
            parse_ok("locks=global locks=percpu").locks,
            LockMode::PerCpu
        );
    }

    #[test]
    fn unknown_words_are_reported_not_fatal() {
        let mut seen = [""; 4];
        let mut n = 0;
        let o = parse("quiet foo=bar run=bench  console=ttyS0", |w| {
            seen[n] = w;
            n += 1;
        })
        .unwrap();
        assert_eq!(o.run, RunMode::Bench);
        assert_eq!(&seen[..n], &["quiet", "foo=bar", "console=ttyS0"]);
    }

    #[test]
    fn syscount_is_a_known_word() {
        let mut unknown = 0;
        parse("syscount run=init -- syscount", |_| unknown += 1).unwrap();
        assert_eq!(unknown, 0, "`syscount` is not reported as unknown");
        assert!(has_word("log=debug syscount", "syscount"));
        assert!(
            !has_word("run=init -- syscount", "syscount"),
            "PID 1's word"
        );
        assert!(!has_word("syscounts", "syscount"));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "run=",
            "run=fast",
            "run=stress",
            "run=stress:",
            "run=stress:0",
            "run=stress:+5",
            "run=stress:-1",
            "run=stress:1x",
            "run=stress:99999999999999999999999",
            "locks=globl",
            "locks=",
            "log=loud",
            "log=INFO",
        ] {
            let e = parse(bad, |_| {}).expect_err(bad);
            assert_eq!(bad.split_once('=').unwrap().0, e.key, "{}", bad);
        }
        let e = parse("run=selfcheck locks=both", |_| {}).unwrap_err();
        assert_eq!((e.key, e.value), ("locks", "both"));
    }

    #[test]
    fn set_options_installs_the_one_lock_mode() {
        set_options(parse_ok("locks=global"));
        assert_eq!(lock_mode(), LockMode::Global);
        assert_eq!(percpu::lock_mode(), LockMode::Global);
    }
}
