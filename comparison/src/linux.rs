//! The Linux reference system: Debian's cloud kernel image, fetched once with
//! apt and cached, its command line, and reading its serial output.
//!
//! Owns: choosing and extracting the kernel (`apt-get download
//! linux-image-<ver>-cloud-amd64`, `dpkg-deb -x`), the cache under
//! `<target>/linux/`, and turning Linux's console output into the program's
//! output plus PID 1's exit status (from `Kernel panic - not syncing:
//! Attempted to kill init! exitcode=0x...`).  `COMPARISON_LINUX_KERNEL=PATH`
//! names a bzImage to use instead (machines without apt or network).
//!
//! With a NIC, Linux also needs the package's virtio modules (`virtio_pci`,
//! `virtio_net` and what they depend on): they are kept in the cache as
//! `modules-<package>/<release>/kernel/...` plus a `modules.dep` made here
//! from each module's `depends=` (the package has no `modules.dep`; depmod
//! makes it on install), and go into the Linux initramfs, where `linux-init`
//! loads them.  `COMPARISON_LINUX_MODULES=DIR` names a `lib/modules/<release>`
//! tree to use with `COMPARISON_LINUX_KERNEL`.
//!
//! `linux-init` prints Linux's `/sys/devices/system/cpu/vulnerabilities/*`
//! lines with the prefix `VULN_PREFIX`: `vulnerabilities` extracts them and
//! the output filter drops them.
//!
//! It must never fall back silently: if no kernel can be had, the error says
//! why.  It only ever downloads that one package.

use crate::initramfs::{Content, InitramfsFile};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The command line Linux gets (the program's arguments are in the initramfs).
///
/// `no_timer_check`: Linux's boot-time check that the IO-APIC routes the
/// timer interrupt times it against a busy loop; on a loaded host under TCG
/// the vCPU can be descheduled through it and Linux panics ("IO-APIC + timer
/// doesn't work"), seen in differential tests at load average ~30.  The
/// option only skips that check (cloud images set it for the same reason).
pub const BASE_APPEND: &str = "console=ttyS0 quiet panic=-1 no_timer_check rdinit=/linux-init";

/// The environment variable naming a `lib/modules/<release>` directory for
/// the kernel of `KERNEL_ENV` (needed only with a NIC).
pub const MODULES_ENV: &str = "COMPARISON_LINUX_MODULES";

/// The modules a virtio-net NIC needs (their dependencies come along).
pub const NET_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// The modules virtio disks need; plus `ext4` (which serves `-t ext2`) when
/// the package has it as a module rather than built in.
pub const BLK_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
const OPTIONAL_BLK_MODULES: &[&str] = &["ext4", "ext2"];

/// Prefix of `linux-init`'s lines that give one CPU vulnerability file:
/// `linux-init: vulnerability: NAME: TEXT`.
pub const VULN_PREFIX: &str = "linux-init: vulnerability: ";

/// The environment variable naming a bzImage to use instead of Debian's.
pub const KERNEL_ENV: &str = "COMPARISON_LINUX_KERNEL";

/// A Linux kernel ready to boot.
#[derive(Debug, Clone)]
pub struct LinuxKernel {
    pub vmlinuz: PathBuf,
    /// E.g. `linux-image-6.1.0-56-cloud-amd64` (or the env override path).
    pub package: String,
}

/// The cached kernel, fetching it on first use.
pub fn ensure_kernel(target_dir: &Path) -> Result<LinuxKernel> {
    if let Some(path) = std::env::var_os(KERNEL_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{KERNEL_ENV}={} is not a file", path.display());
        }
        return Ok(LinuxKernel {
            package: path.display().to_string(),
            vmlinuz: path,
        });
    }
    let cache = target_dir.join("linux");
    if let Some(found) = cached(&cache)? {
        return Ok(found);
    }
    fetch(&cache)
}

/// The newest kernel already in the cache (`vmlinuz-<package>` files).
fn cached(cache: &Path) -> Result<Option<LinuxKernel>> {
    let Ok(dir) = std::fs::read_dir(cache) else {
        return Ok(None);
    };
    let mut found: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    found.sort_by_key(|name| version_key(name));
    Ok(found.pop().map(|package| LinuxKernel {
        vmlinuz: cache.join(format!("vmlinuz-{package}")),
        package,
    }))
}

/// Numbers in a package name, for "newest" comparisons (6.1.0-56 > 6.1.0-9).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Package names of the form `linux-image-<X.Y.Z-N>-cloud-amd64` in
/// `apt-cache search` output (meta-packages like `linux-image-6.12-cloud-amd64`
/// hold no kernel and are skipped).
pub fn pick_package(search_output: &str) -> Option<String> {
    let mut names: Vec<&str> = search_output
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix("linux-image-")
                .and_then(|v| v.strip_suffix("-cloud-amd64"))
                .is_some_and(|v| {
                    let mut parts = v.splitn(2, '-');
                    let (ver, abi) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    ver.split('.').count() == 3
                        && ver
                            .split('.')
                            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                        && !abi.is_empty()
                        && abi.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .collect();
    names.sort_by_key(|name| version_key(name));
    names.pop().map(str::to_string)
}

fn apt_search() -> Result<String> {
    let out = Command::new("apt-cache")
        .args([
            "search",
            "--names-only",
            "^linux-image-[0-9.-]+-cloud-amd64$",
        ])
        .output()
        .context("running apt-cache (is this a Debian machine?)")?;
    if !out.status.success() {
        bail!(
            "apt-cache search failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Download and extract the newest Debian cloud kernel into `cache`.
fn fetch(cache: &Path) -> Result<LinuxKernel> {
    let mut package = pick_package(&apt_search()?);
    if package.is_none() {
        eprintln!("linux: no cloud kernel in the apt lists; running apt-get update ...");
        let status = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("running apt-get update")?;
        if !status.success() {
            bail!("apt-get update failed ({status}); set {KERNEL_ENV} to a bzImage instead");
        }
        package = pick_package(&apt_search()?);
    }
    let Some(package) = package else {
        bail!("apt-cache knows no linux-image-<ver>-cloud-amd64 package; set {KERNEL_ENV} to a bzImage instead");
    };
    eprintln!(
        "linux: fetching {package} (once; cached in {}) ...",
        cache.display()
    );
    // Per-process scratch directory, then an atomic rename into the cache, so
    // that parallel first uses never see a half-written kernel.
    let work = cache.join(format!("fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = download_and_extract(&package, &work, cache);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn download_and_extract(package: &str, work: &Path, cache: &Path) -> Result<LinuxKernel> {
    let root = download_package(package, work)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))
        .with_context(|| format!("{package} has no /boot directory"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no /boot/vmlinuz-*"))?;
    store_modules(&root, package, work, cache)?;
    let dest = cache.join(format!("vmlinuz-{package}"));
    std::fs::rename(&vmlinuz, &dest)
        .with_context(|| format!("moving the kernel to {}", dest.display()))?;
    Ok(LinuxKernel {
        vmlinuz: dest,
        package: package.to_string(),
    })
}

/// `apt-get download` `package` into `work` and extract it
/// (`debian::download_package`); returns the extracted root.
fn download_package(package: &str, work: &Path) -> Result<PathBuf> {
    crate::debian::download_package(package, work)
        .with_context(|| format!("set {KERNEL_ENV} to a bzImage instead"))
}

/// Copy `NET_MODULES` and their dependencies from an extracted package
/// (`root`) into `<cache>/modules-<package>/<release>/`, with a `modules.dep`.
fn store_modules(root: &Path, package: &str, work: &Path, cache: &Path) -> Result<()> {
    let lib = root.join("lib/modules");
    let release = std::fs::read_dir(&lib)
        .with_context(|| format!("{package} has no /lib/modules"))?
        .filter_map(|e| e.ok())
        .find(|e| e.path().join("kernel").is_dir())
        .with_context(|| format!("{package} has no /lib/modules/<release>/kernel"))?
        .file_name();
    let src = lib.join(&release);
    let mut modules = select_modules(&src, NET_MODULES)?;
    for m in select_modules(&src, BLK_MODULES)?
        .into_iter()
        .chain(optional_modules(&src))
    {
        if !modules.iter().any(|x| x.name == m.name) {
            modules.push(m);
        }
    }
    let staged = work.join("modules").join(&release);
    for m in &modules {
        let to = staged.join(&m.path);
        std::fs::create_dir_all(to.parent().expect("module paths have a parent"))?;
        std::fs::copy(src.join(&m.path), &to).with_context(|| format!("copying {}", m.path))?;
    }
    std::fs::write(staged.join("modules.dep"), modules_dep(&modules))?;
    let dest = cache.join(format!("modules2-{package}"));
    // Atomic: a parallel first use may have put them there already.
    match std::fs::rename(work.join("modules"), &dest) {
        Err(_) if dest.is_dir() => Ok(()),
        other => other.with_context(|| format!("moving the modules to {}", dest.display())),
    }
}

/// `OPTIONAL_BLK_MODULES` (with their dependencies) that exist as modules
/// under `dir`; built-in ones are simply absent.
fn optional_modules(dir: &Path) -> Vec<KernelModule> {
    let mut out: Vec<KernelModule> = Vec::new();
    for name in OPTIONAL_BLK_MODULES {
        for m in select_modules(dir, &[name]).unwrap_or_default() {
            if !out.iter().any(|x| x.name == m.name) {
                out.push(m);
            }
        }
    }
    out
}

/// One kernel module: its path below `lib/modules/<release>/` and the
/// names of the modules it depends on (its `.modinfo` `depends=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModule {
    pub name: String,
    pub path: String,
    pub depends: Vec<String>,
}

/// The `depends=` entry of a module's `.modinfo` section: NUL-separated
/// `key=value` strings, found by their text (a `depends=` string preceded by
/// a NUL byte occurs nowhere else in a module).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &ko[at + KEY.len()..];
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.replace('-', "_"))
        .collect()
}

/// `wanted` and every module they depend on, found under `dir`
/// (`lib/modules/<release>`), dependencies before their users.
pub fn select_modules(dir: &Path, wanted: &[&str]) -> Result<Vec<KernelModule>> {
    let mut index = std::collections::BTreeMap::new();
    index_modules(dir, &dir.join("kernel"), &mut index)?;
    let mut out: Vec<KernelModule> = Vec::new();
    fn visit(
        name: &str,
        dir: &Path,
        index: &std::collections::BTreeMap<String, String>,
        out: &mut Vec<KernelModule>,
        stack: &mut Vec<String>,
    ) -> Result<()> {
        if out.iter().any(|m| m.name == name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            bail!("module dependency cycle through {name}");
        }
        let Some(path) = index.get(name) else {
            bail!("kernel module {name} not found in {}", dir.display());
        };
        if !path.ends_with(".ko") {
            bail!("kernel module {path} is compressed; only plain .ko modules are supported");
        }
        let data = std::fs::read(dir.join(path)).with_context(|| format!("reading {path}"))?;
        let depends = modinfo_depends(&data);
        stack.push(name.to_string());
        for d in &depends {
            visit(d, dir, index, out, stack)?;
        }
        stack.pop();
        out.push(KernelModule {
            name: name.to_string(),
            path: path.clone(),
            depends,
        });
        Ok(())
    }
    for name in wanted {
        visit(name, dir, &index, &mut out, &mut Vec::new())?;
    }
    Ok(out)
}

/// name (with `_` for `-`) -> path below `base` of every `.ko[.xz|.zst|.gz]`.
fn index_modules(
    base: &Path,
    dir: &Path,
    index: &mut std::collections::BTreeMap<String, String>,
) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(base, &path, index)?;
            continue;
        }
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find_map(|ext| file.strip_suffix(ext));
        if let (Some(stem), Ok(rel)) = (stem, path.strip_prefix(base)) {
            index.insert(stem.replace('-', "_"), rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// `modules.dep` lines (`path: dep-path ...`, dependencies as paths, direct
/// ones only; `linux-init` follows them recursively).
pub fn modules_dep(modules: &[KernelModule]) -> String {
    let mut out = String::new();
    for m in modules {
        out.push_str(&m.path);
        out.push(':');
        for d in &m.depends {
            if let Some(dep) = modules.iter().find(|x| &x.name == d) {
                out.push(' ');
                out.push_str(&dep.path);
            }
        }
        out.push('\n');
    }
    out
}

/// The `lib/modules/<release>` directory holding the NIC modules of `linux`.
fn modules_dir(linux: &LinuxKernel) -> Result<PathBuf> {
    if std::env::var_os(KERNEL_ENV).is_some() {
        let Some(dir) = std::env::var_os(MODULES_ENV) else {
            bail!("--nic with {KERNEL_ENV}: set {MODULES_ENV} to that kernel's lib/modules/<release> directory (with virtio_pci and virtio_net)");
        };
        return Ok(PathBuf::from(dir));
    }
    let cache = linux
        .vmlinuz
        .parent()
        .context("the kernel path has no directory")?;
    // `modules2-`: the set with the disk modules (a `modules-` cache has
    // the NIC's only).
    let base = cache.join(format!("modules2-{}", linux.package));
    if !base.is_dir() {
        // A cache from before modules were kept: fetch the package again.
        eprintln!(
            "linux: fetching the modules of {} (once) ...",
            linux.package
        );
        let work = cache.join(format!("fetch-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let result = (|| {
            let root = download_package(&linux.package, &work)?;
            store_modules(&root, &linux.package, &work, cache)
        })();
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    let release = std::fs::read_dir(&base)
        .with_context(|| format!("reading {}", base.display()))?
        .filter_map(|e| e.ok())
        .next()
        .with_context(|| format!("{} is empty", base.display()))?;
    Ok(release.path())
}

/// The initramfs members that give Linux a virtio-net NIC:
/// `/lib/modules/<release>/{kernel/...,modules.dep}` (`linux-init` loads
/// every module listed in `modules.dep`, dependencies first).
pub fn net_modules(linux: &LinuxKernel) -> Result<Vec<InitramfsFile>> {
    modules_for(linux, true, false)
}

/// The initramfs members for a NIC (`net`), disks (`disks`: virtio_blk,
/// and ext4 where it is a module) or both, as for `net_modules`.
pub fn modules_for(linux: &LinuxKernel, net: bool, disks: bool) -> Result<Vec<InitramfsFile>> {
    let dir = modules_dir(linux)?;
    let release = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("module directory name is not UTF-8")?
        .to_string();
    let mut modules: Vec<KernelModule> = Vec::new();
    let mut wanted = Vec::new();
    if net {
        wanted.extend(select_modules(&dir, NET_MODULES)?);
    }
    if disks {
        wanted.extend(select_modules(&dir, BLK_MODULES)?);
        wanted.extend(optional_modules(&dir));
    }
    for m in wanted {
        if !modules.iter().any(|x| x.name == m.name) {
            modules.push(m);
        }
    }
    let base = format!("/lib/modules/{release}");
    let mut out = Vec::new();
    for m in &modules {
        let data =
            std::fs::read(dir.join(&m.path)).with_context(|| format!("reading {}", m.path))?;
        out.push(InitramfsFile::file(
            &format!("{base}/{}", m.path),
            0o644,
            data,
        ));
    }
    out.push(InitramfsFile {
        guest_path: format!("{base}/modules.dep"),
        mode: 0o644,
        content: Content::File(modules_dep(&modules).into_bytes()),
    });
    Ok(out)
}

/// Linux's CPU vulnerability lines (`NAME: TEXT`) that `linux-init` printed.
pub fn vulnerabilities(serial: &str) -> Vec<String> {
    serial
        .lines()
        .filter_map(|l| {
            l.find(VULN_PREFIX)
                .map(|at| l[at + VULN_PREFIX.len()..].trim().to_string())
        })
        .collect()
}

/// What Linux's console output says about PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinuxEnd {
    /// PID 1 exited with this status (128 + N when killed by signal N).
    Init(u32),
    /// Linux panicked for another reason (the panic message).
    Panic(String),
    /// No panic line (yet).
    Unknown,
}

/// Find the `Attempted to kill init! exitcode=0x0000XX00` line.
pub fn parse_end(serial: &str) -> LinuxEnd {
    for line in serial.lines() {
        let Some(at) = line.find("Kernel panic - not syncing: ") else {
            continue;
        };
        let msg = line[at + "Kernel panic - not syncing: ".len()..].trim();
        if let Some(code) = msg.strip_prefix("Attempted to kill init! exitcode=0x") {
            if let Ok(code) = u32::from_str_radix(code.trim(), 16) {
                let signal = code & 0x7f;
                return LinuxEnd::Init(if signal != 0 {
                    128 + signal
                } else {
                    (code >> 8) & 0xff
                });
            }
        }
        return LinuxEnd::Panic(msg.to_string());
    }
    LinuxEnd::Unknown
}

/// A filter over console lines (without `\r`) that keeps only what the
/// program printed: drops Linux's own log lines (`[    0.123456] ...`) and
/// everything from the panic that ends the run.
#[derive(Debug, Default)]
pub struct OutputFilter {
    ended: bool,
}

impl OutputFilter {
    /// The part of `line` to show, if any.
    pub fn keep(&mut self, line: &str) -> Option<String> {
        if self.ended {
            return None;
        }
        if line.contains("Kernel panic - not syncing") || line.contains("---[ end Kernel panic") {
            self.ended = true;
            return None;
        }
        if is_kernel_log_line(line) || line.starts_with(VULN_PREFIX) {
            return None;
        }
        Some(line.to_string())
    }
}

/// `[    1.234567] message`: a printk line with its timestamp.
pub fn is_kernel_log_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let Some(close) = rest.find(']') else {
        return false;
    };
    let stamp = rest[..close].trim();
    !stamp.is_empty()
        && stamp.contains('.')
        && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_newest_real_package() {
        let search = "linux-image-6.1.0-9-cloud-amd64 - Linux 6.1\n\
                      linux-image-6.1.0-56-cloud-amd64 - Linux 6.1\n\
                      linux-image-6.12-cloud-amd64 - meta\n\
                      linux-image-6.1.0-48-cloud-amd64 - Linux 6.1\n";
        assert_eq!(
            pick_package(search).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(pick_package("linux-image-6.12-cloud-amd64 - meta\n"), None);
        assert_eq!(pick_package(""), None);
    }

    #[test]
    fn reads_init_exit_status() {
        let ok =
            "[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000700\n";
        assert_eq!(parse_end(ok), LinuxEnd::Init(7));
        let zero = "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000";
        assert_eq!(parse_end(zero), LinuxEnd::Init(0));
        let segv = "[ 1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b";
        assert_eq!(parse_end(segv), LinuxEnd::Init(128 + 11));
        let other = "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs";
        assert_eq!(
            parse_end(other),
            LinuxEnd::Panic("VFS: Unable to mount root fs".into())
        );
        assert_eq!(parse_end("hello\n"), LinuxEnd::Unknown);
    }

    #[test]
    fn filter_keeps_program_lines_only() {
        let mut f = OutputFilter::default();
        assert_eq!(f.keep("[    0.000000] Linux version 6.1\n"), None);
        assert_eq!(
            f.keep("hello: started\n").as_deref(),
            Some("hello: started\n")
        );
        assert_eq!(
            f.keep("[x] not a timestamp\n").as_deref(),
            Some("[x] not a timestamp\n")
        );
        assert_eq!(
            f.keep("[    2.5] Kernel panic - not syncing: Attempted to kill init!\n"),
            None
        );
        assert_eq!(f.keep("CPU: 0 PID: 1 Comm: init\n"), None);
        let mut f = OutputFilter::default();
        let vuln = "linux-init: vulnerability: spectre_v2: Mitigation: Retpolines\n";
        assert_eq!(f.keep(vuln), None);
        assert_eq!(
            vulnerabilities(&format!("x\n{vuln}y\n")),
            ["spectre_v2: Mitigation: Retpolines"]
        );
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio_ring,net-failover\0intree=Y\0";
        assert_eq!(modinfo_depends(ko), ["virtio_ring", "net_failover"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn modules_come_with_their_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("linux-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kernel/net")).unwrap();
        std::fs::create_dir_all(dir.join("kernel/virtio")).unwrap();
        let ko = |deps: &str| format!("\x7fELF\0name=x\0depends={deps}\0vermagic=6\0").into_bytes();
        std::fs::write(
            dir.join("kernel/net/virtio_net.ko"),
            ko("virtio,net-failover"),
        )
        .unwrap();
        std::fs::write(dir.join("kernel/net/net_failover.ko"), ko("failover")).unwrap();
        std::fs::write(dir.join("kernel/net/failover.ko"), ko("")).unwrap();
        std::fs::write(dir.join("kernel/virtio/virtio.ko"), ko("")).unwrap();
        std::fs::write(dir.join("kernel/virtio/virtio_pci.ko"), ko("virtio")).unwrap();
        std::fs::write(dir.join("kernel/virtio/packed.ko.xz"), b"xz").unwrap();
        let mods = select_modules(&dir, NET_MODULES).unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net"
            ]
        );
        let dep = modules_dep(&mods);
        assert!(
            dep.contains(
                "kernel/net/virtio_net.ko: kernel/virtio/virtio.ko kernel/net/net_failover.ko\n"
            ),
            "{dep}"
        );
        assert!(dep.contains("kernel/virtio/virtio.ko:\n"), "{dep}");
        assert!(select_modules(&dir, &["missing"]).is_err());
        let err = select_modules(&dir, &["packed"]).unwrap_err().to_string();
        assert!(err.contains("compressed"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
