//! Building the static Linux test programs of `userland/` for
//! `x86_64-unknown-linux-musl`, and finding them.
//!
//! Owns the one `cargo build` command for that target.  The binaries are
//! build products in cargo's target directory, never committed.  It must not
//! build anything else (the bare-metal build is `build.rs`).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the test programs (and workloads) are built for.
pub const USER_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where the built programs are.
#[derive(Debug, Clone)]
pub struct Userland {
    pub bin_dir: PathBuf,
}

impl Userland {
    /// The path of program `name`, checked to exist.
    pub fn program(&self, name: &str) -> Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.is_file() {
            bail!(
                "test program {name} was not built ({} is missing)",
                path.display()
            );
        }
        Ok(path)
    }
}

/// Build every program of the `userland` package (release) and return where
/// they are.  cargo's messages are shown only if the build fails.
pub fn build() -> Result<Userland> {
    let root = crate::build::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "userland",
            "--target",
            USER_TARGET,
        ])
        .current_dir(&root)
        .output()
        .context("running cargo to build the userland test programs")?;
    if !out.status.success() {
        bail!(
            "building the userland programs for {USER_TARGET} failed (run tools/setup.sh to add the target):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let target_dir = crate::build::target_dir(&root)?;
    Ok(Userland {
        bin_dir: bin_dir(&target_dir),
    })
}

/// `<target>/x86_64-unknown-linux-musl/release`.
pub fn bin_dir(target_dir: &Path) -> PathBuf {
    target_dir.join(USER_TARGET).join("release")
}
