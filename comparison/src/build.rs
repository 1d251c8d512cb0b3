//! Building the bare-metal binaries (kernel and built-in loader) with cargo.
//!
//! Owns: finding the workspace root and cargo's target directory, the
//! `cargo build` commands for `x86_64-unknown-none`, and which kernel image
//! a boot uses: the monolithic image (`release/kernel`, default features)
//! or the servers image (`servers-image/kernel`: feature `monolithic` off,
//! for `structure=servers`; docs/SERVERS.md, "The servers kernel image").
//! The servers image is built only when a boot needs it, at most once per
//! process; cargo's own fingerprints make a rebuild with nothing changed a
//! no-op, and its own profile directory keeps the two binaries apart (so a
//! servers build never replaces the monolithic kernel another boot reads).
//!
//! It must not build host crates or change the toolchain: `tools/setup.sh`
//! installs that.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The cargo profile of the servers image (workspace Cargo.toml: release's
/// code generation, its own output directory).
pub const SERVERS_PROFILE: &str = "servers-image";

/// Which kernel image a boot runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelImage {
    /// Default features: the file system, ext2 and the TCP/IP stack in the
    /// kernel (and the delegation to servers, for `structure=servers`).
    Monolithic,
    /// Feature `monolithic` off: boots only with `structure=servers`; no
    /// `net` crate, smoltcp, ext2 or initramfs unpacking inside.
    Servers,
}

impl KernelImage {
    /// The image for a kernel command line: the servers image when its
    /// last `structure=` word says `servers` (the kernel reads the last).
    pub fn for_cmdline(cmdline: &str) -> KernelImage {
        match cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("structure="))
            .next_back()
        {
            Some("servers") => KernelImage::Servers,
            _ => KernelImage::Monolithic,
        }
    }
}

/// The bare-metal target both binaries are built for.
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub workspace_root: PathBuf,
    pub target_dir: PathBuf,
    pub kernel: PathBuf,
    pub loader: PathBuf,
}

impl Artifacts {
    /// Scratch directory for boot media (bundles, ISOs) of this run.
    pub fn scratch_dir(&self) -> PathBuf {
        self.target_dir.join("comparison").join("media")
    }

    /// The kernel ELF of `image`, building the servers image first if this
    /// process has not yet.
    pub fn kernel_image(&self, image: KernelImage) -> Result<PathBuf> {
        match image {
            KernelImage::Monolithic => Ok(self.kernel.clone()),
            KernelImage::Servers => build_servers_kernel(true),
        }
    }

    /// The kernel ELF a boot with `cmdline` runs (`KernelImage::for_cmdline`).
    pub fn kernel_for_cmdline(&self, cmdline: &str) -> Result<PathBuf> {
        self.kernel_image(KernelImage::for_cmdline(cmdline))
    }
}

/// The workspace root (the directory holding `limine.cfg`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("comparison/ sits inside the workspace")
        .to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// cargo's target directory for this workspace (honours `CARGO_TARGET_DIR`
/// and `.cargo/config.toml`).
pub fn target_dir(root: &Path) -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root)
        .output()
        .context("running `cargo metadata`")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `cargo metadata` output")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` gave no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The servers image built by this process (each process asks cargo once;
/// cargo's fingerprints decide whether anything is compiled).
static SERVERS_KERNEL: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Builds the servers kernel image (`cargo build --profile servers-image -p
/// kernel --no-default-features`) once per process and returns its path.
pub fn build_servers_kernel(quiet: bool) -> Result<PathBuf> {
    let mut built = SERVERS_KERNEL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let root = workspace_root();
    cargo_build(
        &root,
        &[
            "--profile",
            SERVERS_PROFILE,
            "-p",
            "kernel",
            "--no-default-features",
            "--target",
            BARE_METAL_TARGET,
        ],
        quiet,
        "the servers kernel image",
    )?;
    let path = target_dir(&root)?
        .join(BARE_METAL_TARGET)
        .join(SERVERS_PROFILE)
        .join("kernel");
    if !path.is_file() {
        bail!("cargo succeeded but {} is missing", path.display());
    }
    *built = Some(path.clone());
    Ok(path)
}

/// `cargo build ARGS` in the workspace `root`; cargo's own output goes to
/// our stderr unless `quiet`; a failure names `what` and gives cargo's
/// output.
fn cargo_build(root: &Path, args: &[&str], quiet: bool, what: &str) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.arg("build").args(args).current_dir(root);
    if quiet {
        cmd.arg("--quiet");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running cargo to build {what}"))?;
    if !quiet {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    if !out.status.success() {
        bail!(
            "building {what} failed (is the toolchain installed? run tools/setup.sh):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Build kernel and loader (release profile) and return their paths.
/// cargo's own output goes to our stderr unless `quiet`.
pub fn build_bare_metal(quiet: bool) -> Result<Artifacts> {
    let root = workspace_root();
    cargo_build(
        &root,
        &[
            "--release",
            "-p",
            "kernel",
            "-p",
            "loader",
            "--target",
            BARE_METAL_TARGET,
        ],
        quiet,
        "the kernel and loader",
    )?;
    let target_dir = target_dir(&root)?;
    let bin_dir = target_dir.join(BARE_METAL_TARGET).join("release");
    let artifacts = Artifacts {
        kernel: bin_dir.join("kernel"),
        loader: bin_dir.join("loader"),
        workspace_root: root,
        target_dir,
    };
    for path in [&artifacts.kernel, &artifacts.loader] {
        if !path.is_file() {
            bail!("cargo succeeded but {} is missing", path.display());
        }
    }
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::KernelImage;

    #[test]
    fn image_follows_the_last_structure_word() {
        assert_eq!(
            KernelImage::for_cmdline("run=init"),
            KernelImage::Monolithic
        );
        assert_eq!(
            KernelImage::for_cmdline("run=init structure=servers log=debug"),
            KernelImage::Servers
        );
        assert_eq!(
            KernelImage::for_cmdline("structure=servers structure=monolithic"),
            KernelImage::Monolithic
        );
        assert_eq!(
            KernelImage::for_cmdline("structure=servers2"),
            KernelImage::Monolithic
        );
    }
}
