//! Building the bare-metal binaries (kernel and built-in loader) with cargo.
//!
//! Owns: finding the workspace root and cargo's target directory, and the one
//! `cargo build` command for `x86_64-unknown-none`.  It must not build host
//! crates or change the toolchain: `tools/setup.sh` installs that.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Build kernel and loader (release profile) and return their paths.
/// cargo's own output goes to our stderr unless `quiet`.
pub fn build_bare_metal(quiet: bool) -> Result<Artifacts> {
    let root = workspace_root();
    let mut cmd = Command::new(cargo());
    cmd.args([
        "build",
        "--release",
        "-p",
        "kernel",
        "-p",
        "loader",
        "--target",
        BARE_METAL_TARGET,
    ])
    .current_dir(&root);
    if quiet {
        cmd.arg("--quiet");
    }
    let out = cmd
        .output()
        .context("running cargo to build the kernel and loader")?;
    if !quiet {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    if !out.status.success() {
        bail!(
            "building kernel and loader failed (is the toolchain installed? run tools/setup.sh):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
