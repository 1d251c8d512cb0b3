//! The initramfs of a `run`: a newc cpio with the program as `/init`, the
//! extra files and directory trees the user named, and PID 1's argv and
//! environment, identical for our kernel and for Linux (the Linux one only
//! adds `/linux-init`, and virtio modules when there is a NIC).
//!
//! Owns the mapping "host files -> archive members": guest paths are absolute,
//! normalised (no `.`/`..`, no empty components), their parent directories
//! are created once each (mode 0755) unless given, and members keep their
//! host permission bits (`/init` is always 0755).  Bad input (a relative or
//! `..` guest path, a duplicate, an unreadable file, a NUL byte in an
//! argument) is an error, never a panic.
//!
//! argv/envp format (read by our kernel's `proc::init` and by `linux-init`):
//! `/.init/argv` holds the whole argv (argv[0] = `/init` included) and
//! `/.init/envp` the whole environment, each entry followed by one NUL byte,
//! exactly like Linux's `/proc/PID/cmdline` and `/proc/PID/environ`.  Both
//! readers remove the files before the program starts.

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Guest path of PID 1's argv (kernel/src/cmdline.rs `INIT_ARGV_FILE`).
pub const ARGV_FILE: &str = "/.init/argv";
/// Guest path of PID 1's environment (`INIT_ENVP_FILE`).
pub const ENVP_FILE: &str = "/.init/envp";

/// PID 1's environment unless `--env` changes it (docs/USERSPACE.md).
pub const DEFAULT_ENV: [&str; 3] = ["HOME=/", "TERM=linux", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"];

/// What an archive member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File(Vec<u8>),
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
}

/// One member to put in the archive.
#[derive(Debug, Clone)]
pub struct InitramfsFile {
    /// Absolute path inside the guest, e.g. `/data/input.txt`.
    pub guest_path: String,
    /// Permission bits (type bits come from `content`).
    pub mode: u32,
    pub content: Content,
}

impl InitramfsFile {
    /// Read a host file; permission bits come from the host file.
    pub fn from_host(host: &Path, guest_path: &str) -> Result<Self> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        Ok(InitramfsFile {
            guest_path: guest_path.to_string(),
            mode: host_mode(&std::fs::metadata(host)?),
            content: Content::File(data),
        })
    }

    /// A regular file with these bytes.
    pub fn file(guest_path: &str, mode: u32, data: Vec<u8>) -> Self {
        InitramfsFile {
            guest_path: guest_path.to_string(),
            mode,
            content: Content::File(data),
        }
    }
}

fn host_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// A host directory tree as members below `guest` (`/` puts its entries at
/// the top): directories, regular files and symbolic links (not followed,
/// target kept as is), permission bits kept, entries sorted by name so the
/// archive is reproducible.  Other file types are an error.
pub fn tree_from_host(host: &Path, guest: &str) -> Result<Vec<InitramfsFile>> {
    let meta = std::fs::symlink_metadata(host)
        .with_context(|| format!("--dir: reading {}", host.display()))?;
    if !meta.is_dir() {
        bail!("--dir: {} is not a directory", host.display());
    }
    let base = guest.trim_end_matches('/');
    let mut out = Vec::new();
    if !base.is_empty() {
        out.push(InitramfsFile {
            guest_path: base.to_string(),
            mode: host_mode(&meta),
            content: Content::Dir,
        });
    }
    walk(host, base, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, guest: &str, out: &mut Vec<InitramfsFile>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("--dir: reading {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("--dir: reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("--dir: {n:?} in {}: name is not UTF-8", dir.display()))?;
        let guest_path = format!("{guest}/{name}");
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("--dir: reading {}", path.display()))?;
        let mode = host_mode(&meta);
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push(InitramfsFile {
                guest_path: guest_path.clone(),
                mode,
                content: Content::Dir,
            });
            walk(&path, &guest_path, out)?;
        } else if kind.is_file() {
            let data = std::fs::read(&path)
                .with_context(|| format!("--dir: reading {}", path.display()))?;
            out.push(InitramfsFile {
                guest_path,
                mode,
                content: Content::File(data),
            });
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path)
                .with_context(|| format!("--dir: reading link {}", path.display()))?;
            let target = target.into_os_string().into_string().map_err(|t| {
                anyhow::anyhow!("--dir: {}: link target {t:?} is not UTF-8", path.display())
            })?;
            out.push(InitramfsFile {
                guest_path,
                mode: 0o777,
                content: Content::Symlink(target),
            });
        } else {
            bail!(
                "--dir: {} is not a regular file, directory or symbolic link",
                path.display()
            );
        }
    }
    Ok(())
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

/// Parse a `--dir HOST_DIR:GUEST_DIR` value (`GUEST_DIR` may be `/`).
pub fn parse_dir_arg(value: &str) -> Result<(PathBuf, String)> {
    let Some((host, guest)) = value.rsplit_once(':') else {
        bail!("--dir {value:?}: expected HOST_DIR:GUEST_DIR");
    };
    if host.is_empty() || !guest.starts_with('/') {
        bail!("--dir {value:?}: expected HOST_DIR:GUEST_DIR with an absolute GUEST_DIR");
    }
    if guest.trim_matches('/').is_empty() {
        return Ok((host.into(), "/".to_string()));
    }
    normalise(guest).with_context(|| format!("--dir {value:?}"))?;
    Ok((host.into(), guest.to_string()))
}

/// PID 1's environment: `DEFAULT_ENV` with each `KEY=VALUE` of `extra`
/// replacing the entry of the same key in place, or appended.
pub fn environment(extra: &[String]) -> Result<Vec<String>> {
    let mut env: Vec<String> = DEFAULT_ENV.iter().map(|s| s.to_string()).collect();
    for item in extra {
        let Some((key, _)) = item.split_once('=') else {
            bail!("--env {item:?}: expected KEY=VALUE");
        };
        if key.is_empty() || item.contains('\0') {
            bail!("--env {item:?}: expected KEY=VALUE with a non-empty KEY and no NUL byte");
        }
        match env
            .iter_mut()
            .find(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
        {
            Some(slot) => *slot = item.clone(),
            None => env.push(item.clone()),
        }
    }
    Ok(env)
}

/// Entries in the `/.init/argv` format: each followed by one NUL byte.
pub fn nul_list(entries: &[String]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        if entry.contains('\0') {
            bail!("{entry:?}: a NUL byte cannot be passed in argv or the environment");
        }
        out.extend_from_slice(entry.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// The `/.init/argv` and `/.init/envp` members for argv = `argv0`, `args`.
pub fn argv_files(argv0: &str, args: &[String], env: &[String]) -> Result<Vec<InitramfsFile>> {
    let mut argv = vec![argv0.to_string()];
    argv.extend(args.iter().cloned());
    Ok(vec![
        InitramfsFile::file(ARGV_FILE, 0o644, nul_list(&argv)?),
        InitramfsFile::file(ENVP_FILE, 0o644, nul_list(env)?),
    ])
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

/// Build the archive: `/init` = `program` (mode 0755) plus `files`, in
/// order (a directory member must come before its contents; one made as
/// a parent cannot be given again).
pub fn build(program: &[u8], files: &[InitramfsFile]) -> Result<Vec<u8>> {
    let mut all = Vec::with_capacity(files.len() + 1);
    all.push(InitramfsFile::file("/init", 0o755, program.to_vec()));
    all.extend_from_slice(files);
    build_members(&all)
}

/// Build an archive of exactly `files` (as `build`, without `/init`).
pub fn build_members(files: &[InitramfsFile]) -> Result<Vec<u8>> {
    let mut writer = bootfmt::cpio::NewcWriter::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for file in files {
        let name = normalise(&file.guest_path)?;
        if names.contains(&name) || dirs.contains(&name) {
            bail!(
                "guest path {} is given twice (or is /init, or a directory of another file)",
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
        match &file.content {
            Content::File(data) => {
                names.insert(name.clone());
                writer.add_file(&name, file.mode, data);
            }
            Content::Symlink(target) => {
                names.insert(name.clone());
                writer.add_symlink(&name, file.mode, target);
            }
            Content::Dir => {
                dirs.insert(name.clone());
                writer.add_dir(&name, file.mode);
            }
        }
    }
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> InitramfsFile {
        InitramfsFile::file(path, 0o644, data.to_vec())
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

    #[test]
    fn argv_and_env_files() {
        let args = vec!["a b".to_string(), String::new(), "x\"y".into(), "é".into()];
        let files = argv_files(
            "/init",
            &args,
            &environment(&["TERM=dumb".into(), "K=v=w".into()]).unwrap(),
        )
        .unwrap();
        assert_eq!(files[0].guest_path, ARGV_FILE);
        assert_eq!(
            files[0].content,
            Content::File(b"/init\0a b\0\0x\"y\0\xc3\xa9\0".to_vec())
        );
        assert_eq!(
            files[1].content,
            Content::File(
                b"HOME=/\0TERM=dumb\0PATH=/bin:/sbin:/usr/bin:/usr/sbin\0K=v=w\0".to_vec()
            )
        );
        assert!(argv_files("/init", &["a\0b".into()], &[]).is_err());
        let sh = argv_files("sh", &[], &[]).unwrap();
        assert_eq!(sh[0].content, Content::File(b"sh\0".to_vec()));
        assert!(environment(&["NOEQUALS".into()]).is_err());
        assert!(environment(&["=v".into()]).is_err());
        assert_eq!(environment(&["E=".into()]).unwrap()[3], "E=");
    }

    #[test]
    fn directory_trees_keep_types_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("initramfs-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub/empty")).unwrap();
        std::fs::write(dir.join("sub/run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.join("sub/run.sh"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::fs::write(dir.join("a.txt"), b"A").unwrap();
        std::os::unix::fs::symlink("sub/run.sh", dir.join("link")).unwrap();
        let tree = tree_from_host(&dir, "/data").unwrap();
        let cpio = build(b"ELF", &tree).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let got: Vec<(String, u32, Vec<u8>)> = bootfmt::cpio::entries(&cpio)
            .map(|e| e.unwrap())
            .map(|e| (e.name.to_string(), e.mode, e.data.to_vec()))
            .collect();
        let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "init",
                "data",
                "data/a.txt",
                "data/link",
                "data/sub",
                "data/sub/empty",
                "data/sub/run.sh"
            ]
        );
        assert_eq!(got[3].1, 0o120777);
        assert_eq!(got[3].2, b"sub/run.sh");
        assert_eq!(got[5].1 & 0o170000, 0o040000);
        assert_eq!(got[6].1, 0o100750);
        assert_eq!(got[2].2, b"A");
        assert!(parse_dir_arg("h:rel").is_err());
        assert_eq!(parse_dir_arg("h:/").unwrap(), ("h".into(), "/".to_string()));
        // A tree at the root: no member for `/` itself.
        assert!(build(
            b"",
            &[
                InitramfsFile {
                    guest_path: "/x".into(),
                    mode: 0o755,
                    content: Content::Dir
                },
                InitramfsFile::file("/x/f", 0o644, vec![])
            ]
        )
        .is_ok());
        assert!(build(
            b"",
            &[
                InitramfsFile::file("/x/f", 0o644, vec![]),
                InitramfsFile {
                    guest_path: "/x".into(),
                    mode: 0o755,
                    content: Content::Dir
                }
            ]
        )
        .is_err());
    }
}
