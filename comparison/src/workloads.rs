//! Building `wis`, the shared workload suite of `comparison/workloads/`
//! (static, for `x86_64-unknown-linux-musl`), and finding it.
//!
//! Owns the one `cargo build` command for the workloads package.  The binary
//! is a build product in cargo's target directory, never committed.  It must
//! not build anything else (the test programs are `userland.rs`, the
//! bare-metal binaries `build.rs`).

use crate::userland::{bin_dir, USER_TARGET};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the workload binary.
pub const WIS: &str = "wis";

/// Build the `workloads` package (release) and return the path of `wis`.
/// cargo's messages are shown only if the build fails.
pub fn build_workloads() -> Result<PathBuf> {
    let root = crate::build::workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "workloads",
            "--target",
            USER_TARGET,
        ])
        .current_dir(&root)
        .output()
        .context("running cargo to build the workloads")?;
    if !out.status.success() {
        bail!(
            "building the workloads for {USER_TARGET} failed (run tools/setup.sh to add the target):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = bin_dir(&crate::build::target_dir(&root)?).join(WIS);
    if !path.is_file() {
        bail!("the workloads build left no {}", path.display());
    }
    Ok(path)
}

/// The ready workloads, as `wis --list` prints them (run on the host: the
/// binary is a static Linux program).
pub fn list_workloads(wis: &Path) -> Result<Vec<String>> {
    let out = Command::new(wis)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", wis.display()))?;
    if !out.status.success() {
        bail!(
            "{} --list failed: {}",
            wis.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = parse_list(&String::from_utf8_lossy(&out.stdout));
    if names.is_empty() {
        bail!("{} --list printed no workloads", wis.display());
    }
    Ok(names)
}

/// The names in `wis --list` output: the first word of each non-blank line
/// (a line may carry a description after the name).
fn parse_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_list;

    #[test]
    fn list_takes_the_first_word_of_non_blank_lines() {
        assert_eq!(
            parse_list("stat\n  getppid  one call\n\n   \npipe\r\n"),
            ["stat", "getppid", "pipe"]
        );
        assert!(parse_list("").is_empty());
    }
}
