//! Real programs from Debian for the tests and the suite: `busybox-static`
//! and `bash-static`, fetched once with `apt-get download` (as `linux`
//! fetches the kernel), one file extracted with `dpkg-deb -x`, and cached as
//! `<target>/debian/<package>/<file name>`.
//!
//! Owns the download, the extraction (also for `linux`) and the cache.
//! Parallel first uses are safe: one fetch at a time per process, each
//! process in its own scratch directory, the file renamed into the cache
//! atomically.  It never falls back silently: when a program cannot be had
//! the error names the package and says why.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's statically linked busybox (glibc, non-PIE; about 2 MB).
pub const BUSYBOX: (&str, &str) = ("busybox-static", "bin/busybox");
/// Debian's statically linked bash (glibc, non-PIE; about 2.3 MB).
pub const BASH: (&str, &str) = ("bash-static", "bin/bash-static");

/// The cached busybox-static executable, fetching it on first use.
pub fn busybox(target_dir: &Path) -> Result<PathBuf> {
    ensure_file(target_dir, BUSYBOX.0, BUSYBOX.1)
}

/// The cached bash-static executable, fetching it on first use.
pub fn bash(target_dir: &Path) -> Result<PathBuf> {
    ensure_file(target_dir, BASH.0, BASH.1)
}

/// File `path` (relative, as inside the package) of Debian package
/// `package`, from the cache or fetched and extracted now.
pub fn ensure_file(target_dir: &Path, package: &str, path: &str) -> Result<PathBuf> {
    let name = Path::new(path)
        .file_name()
        .with_context(|| format!("{path} names no file"))?;
    let cache = target_dir.join("debian").join(package);
    let dest = cache.join(name);
    if dest.is_file() {
        return Ok(dest);
    }
    // Test threads of one process fetch at once: one fetch at a time per
    // process (the work folder is per process), then look again.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    eprintln!(
        "debian: fetching {package} (once; cached in {}) ...",
        cache.display()
    );
    let work = cache.join(format!("fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = fetch(package, path, &work, &dest);
    let _ = std::fs::remove_dir_all(&work);
    result.with_context(|| format!("getting Debian package {package}"))?;
    Ok(dest)
}

fn fetch(package: &str, path: &str, work: &Path, dest: &Path) -> Result<()> {
    let root = download_package(package, work)?;
    let file = root.join(path);
    if !file.is_file() {
        bail!("{package} has no /{path}");
    }
    std::fs::rename(&file, dest).with_context(|| format!("moving {path} to {}", dest.display()))
}

/// `apt-get download` `package` into `work` (after an `apt-get update` if the
/// first try fails: a fresh machine may have empty package lists) and
/// extract it with `dpkg-deb -x`; returns the extracted root, `work/root`.
/// Also how `linux` gets Debian's kernel package.
pub fn download_package(package: &str, work: &Path) -> Result<PathBuf> {
    let download = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(work)
            .output()
            .context("running apt-get download (is this a Debian machine?)")
    };
    let mut out = download()?;
    if !out.status.success() {
        eprintln!("debian: apt-get download {package} failed; running apt-get update ...");
        let status = Command::new("apt-get")
            .args(["update", "-q"])
            .status()
            .context("running apt-get update")?;
        if status.success() {
            out = download()?;
        }
    }
    if !out.status.success() {
        bail!(
            "apt-get download {package} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let deb = std::fs::read_dir(work)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb file"))?;
    let root = work.join("root");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed ({status})", deb.display());
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_file_is_used_without_fetching() {
        let dir = std::env::temp_dir().join(format!("debian-cache-{}", std::process::id()));
        let cache = dir.join("debian").join("no-such-package-xyz");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("prog"), b"x").unwrap();
        let got = ensure_file(&dir, "no-such-package-xyz", "bin/prog").unwrap();
        assert_eq!(got, cache.join("prog"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
