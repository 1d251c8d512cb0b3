//! The initramfs of a `run`: a newc cpio with the program as `/init` and the
//! extra files the user named, identical for our kernel and for Linux (the
//! Linux one only adds `/linux-init`).
//!
//! Owns the mapping "host files -> archive members": guest paths are absolute,
//! normalised (no `.`/`..`, no empty components), their parent directories
//! are created once each (mode 0755), and files keep their host permission
//! bits (`/init` is always 0755).  Bad input (a relative or `..` guest path,
//! a duplicate, an unreadable file) is an error, never a panic.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

/// One member to put in the archive.
#[derive(Debug, Clone)]
pub struct InitramfsFile {
    /// Absolute path inside the guest, e.g. `/data/input.txt`.
    pub guest_path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl InitramfsFile {
    /// Read a host file; permission bits come from the host file.
    pub fn from_host(host: &Path, guest_path: &str) -> Result<Self> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(host)?.permissions().mode() & 0o7777
        };
        Ok(InitramfsFile {
            guest_path: guest_path.to_string(),
            mode,
            data,
        })
    }
}

/// Parse a `--file HOST_PATH:GUEST_PATH` value.
pub fn parse_file_arg(value: &str) -> Result<(std::path::PathBuf, String)> {
    let Some((host, guest)) = value.rsplit_once(':') else {
        bail!("--file {value:?}: expected HOST_PATH:GUEST_PATH");
    };
    if host.is_empty() || guest.is_empty() {
        bail!("--file {value:?}: expected HOST_PATH:GUEST_PATH");
    }
    normalise(guest).with_context(|| format!("--file {value:?}"))?;
    Ok((host.into(), guest.to_string()))
}

/// `/a//b/` -> `a/b` (the archive stores names without the leading slash).
fn normalise(guest: &str) -> Result<String> {
    if !guest.starts_with('/') {
        bail!("guest path {guest:?} must be absolute");
    }
    let parts: Vec<&str> = guest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        bail!("guest path {guest:?} names the root directory, not a file");
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        bail!("guest path {guest:?} must not contain `.` or `..`");
    }
    Ok(parts.join("/"))
}

/// Build the archive: `/init` = `program` (mode 0755) plus `files`.
pub fn build(program: &[u8], files: &[InitramfsFile]) -> Result<Vec<u8>> {
    let mut writer = bootfmt::cpio::NewcWriter::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    names.insert("init".to_string());
    writer.add_file("init", 0o755, program);
    for file in files {
        let name = normalise(&file.guest_path)?;
        if !names.insert(name.clone()) {
            bail!(
                "guest path {} is given twice (or is /init)",
                file.guest_path
            );
        }
        // Parents first, each once.
        let components: Vec<&str> = name.split('/').collect();
        for depth in 1..components.len() {
            let dir = components[..depth].join("/");
            if names.contains(&dir) {
                bail!(
                    "guest path {} needs {dir} to be a directory, but it is a file",
                    file.guest_path
                );
            }
            if dirs.insert(dir.clone()) {
                writer.add_dir(&dir, 0o755);
            }
        }
        if dirs.contains(&name) {
            bail!(
                "guest path {} is also a directory of another file",
                file.guest_path
            );
        }
        writer.add_file(&name, file.mode, &file.data);
    }
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> InitramfsFile {
        InitramfsFile {
            guest_path: path.into(),
            mode: 0o644,
            data: data.to_vec(),
        }
    }

    #[test]
    fn init_and_files_with_parents() {
        let cpio = build(b"ELF", &[file("/a/b/c.txt", b"x"), file("/a/d", b"yy")]).unwrap();
        let names: Vec<(String, bool)> = bootfmt::cpio::entries(&cpio)
            .map(|e| e.unwrap())
            .map(|e| (e.name.to_string(), e.is_dir()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("init".into(), false),
                ("a".into(), true),
                ("a/b".into(), true),
                ("a/b/c.txt".into(), false),
                ("a/d".into(), false)
            ]
        );
        let init = bootfmt::cpio::find(&cpio, "init").unwrap().unwrap();
        assert_eq!(init.data, b"ELF");
        assert_eq!(init.mode & 0o7777, 0o755);
    }

    #[test]
    fn bad_guest_paths_are_refused() {
        assert!(build(b"", &[file("rel", b"")]).is_err());
        assert!(build(b"", &[file("/a/../b", b"")]).is_err());
        assert!(build(b"", &[file("/", b"")]).is_err());
        assert!(build(b"", &[file("/init", b"")]).is_err());
        assert!(build(b"", &[file("/x", b""), file("/x/y", b"")]).is_err());
        assert!(build(b"", &[file("/x/y", b""), file("/x", b"")]).is_err());
        assert!(parse_file_arg("nocolon").is_err());
        assert!(parse_file_arg("host:relative").is_err());
        assert_eq!(
            parse_file_arg("h:/g").unwrap(),
            ("h".into(), "/g".to_string())
        );
    }
}
