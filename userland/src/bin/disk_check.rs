//! `disk_check`: mounts, lists, writes and unmounts file trees on a disk,
//! the same on any kernel (and on the host, for `list`).
//!
//! Arguments are steps, run in order:
//! - `mount:DEV:DIR` / `mount-ro:DEV:DIR`: `mount(DEV, DIR, "ext2")`,
//!   read-write or `MS_RDONLY`; `mount-tmpfs:DIR`.
//! - `list:DIR`: every entry below DIR, sorted by path, one line each:
//!   `TYPE PERM SIZE PATH [-> TARGET | CHECKSUM]` (`f` files with an FNV-1a
//!   checksum of their bytes, `d` directories without a size, `l` symlinks
//!   with their target); `lost+found` is left out (mke2fs makes it, a
//!   debugfs dump may not).  Then `entries: N`.
//! - `write:DIR:SEED`: makes a tree under DIR (created): many small files
//!   in several directories, a 3 MiB file, a sparse file with data at 0 and
//!   past 40 MiB, a 40-deep directory chain, renames within and across
//!   directories, hard links, fast and slow symlinks, truncates (grow and
//!   shrink), unlinks; contents from SEED.  Prints `wrote: N files`.
//! - `crash:DIR:SEED`: the crash-test workload: creates files of seeded
//!   sizes one after another, forever; after each file's `fsync` and its
//!   directory's `fsync` it prints `durable: NAME SIZE CHECKSUM`, which the
//!   host (that kills the VM at a random point) checks after `e2fsck -fy`.
//! - `fsync-dir:DIR`, `sync`, `umount:DIR`.
//!
//! A failing step prints `STEP: ERRNO <-- WRONG` and the program exits 1;
//! the last line is `disk_check: pass` otherwise.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use userland::{errno, errno_name, say};

/// FNV-1a, 64 bits.
fn fnv(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Deterministic bytes: `len` bytes of stream `(seed, salt)`.
fn bytes(seed: u64, salt: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn fail(step: &str, what: &str) -> ! {
    say(&format!("{step}: {what} <-- WRONG"));
    std::process::exit(1);
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in arguments")
}

fn checksum_file(path: &Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    let mut h = FNV_START;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            return Ok(h);
        }
        h = fnv(&buf[..n], h);
    }
}

fn list(step: &str, root: &Path) {
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| fail(step, &e.to_string()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| fail(step, &e.to_string()));
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            if rel == "lost+found" {
                continue;
            }
            let md =
                std::fs::symlink_metadata(&path).unwrap_or_else(|e| fail(step, &e.to_string()));
            let perm = md.permissions().mode() & 0o7777;
            let ft = md.file_type();
            if ft.is_dir() {
                lines.push(format!("d {perm:04o} - {rel}"));
                stack.push(path);
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(&path).unwrap_or_else(|e| fail(step, &e.to_string()));
                lines.push(format!(
                    "l {perm:04o} {} {rel} -> {}",
                    md.len(),
                    target.display()
                ));
            } else if ft.is_file() {
                let sum =
                    checksum_file(&path).unwrap_or_else(|e| fail(step, &format!("{rel}: {e}")));
                lines.push(format!("f {perm:04o} {} {rel} {sum:016x}", md.len()));
            } else {
                lines.push(format!(
                    "? {perm:04o} {} {rel} mode {:o}",
                    md.len(),
                    md.mode()
                ));
            }
        }
    }
    lines.sort_by(|a, b| a.split(' ').nth(3).cmp(&b.split(' ').nth(3)));
    for l in &lines {
        say(l);
    }
    say(&format!("entries: {}", lines.len()));
}

fn io<T>(step: &str, what: &str, r: std::io::Result<T>) -> T {
    r.unwrap_or_else(|e| fail(step, &format!("{what}: {e}")))
}

fn write_file(step: &str, path: &Path, data: &[u8]) {
    io(
        step,
        &path.display().to_string(),
        std::fs::write(path, data),
    );
}

fn write_tree(step: &str, dir: &Path, seed: u64) {
    let mut files = 0;
    io(step, "mkdir", std::fs::create_dir_all(dir));
    // Many small files in several directories (some of them past one
    // directory block).
    for d in 0..8u64 {
        let sub = dir.join(format!("d{d}"));
        io(step, "mkdir", std::fs::create_dir(&sub));
        for i in 0..(10 + d * 12) {
            let len = (bytes(seed, d * 1000 + i, 8)[0] as usize * 37 + i as usize) % 9000;
            write_file(
                step,
                &sub.join(format!("file-{i:03}-with-a-longer-name")),
                &bytes(seed, d * 1000 + i, len),
            );
            files += 1;
        }
    }
    // A big file (indirect and double-indirect blocks at 1 KiB blocks).
    write_file(
        step,
        &dir.join("big"),
        &bytes(seed, 1, 3 * 1024 * 1024 + 123),
    );
    files += 1;
    // A sparse file: data at 0, a hole, data past 40 MiB.
    {
        use std::os::unix::fs::FileExt;
        let f = io(step, "sparse", std::fs::File::create(dir.join("sparse")));
        io(step, "sparse", f.write_all_at(&bytes(seed, 2, 5000), 0));
        io(
            step,
            "sparse",
            f.write_all_at(&bytes(seed, 3, 7000), 40 * 1024 * 1024 + 777),
        );
        files += 1;
    }
    // A deep chain of directories.
    let mut deep = dir.join("deep");
    for level in 0..40 {
        deep = deep.join(format!("level{level}"));
    }
    io(step, "deep", std::fs::create_dir_all(&deep));
    write_file(step, &deep.join("bottom"), b"at the bottom\n");
    files += 1;
    // Renames: within a directory, across directories, over an existing
    // name, and of a directory.
    io(
        step,
        "rename",
        std::fs::rename(
            dir.join("d0/file-000-with-a-longer-name"),
            dir.join("d0/renamed"),
        ),
    );
    io(
        step,
        "rename",
        std::fs::rename(
            dir.join("d1/file-001-with-a-longer-name"),
            dir.join("d2/moved-here"),
        ),
    );
    io(
        step,
        "rename",
        std::fs::rename(
            dir.join("d3/file-002-with-a-longer-name"),
            dir.join("d3/file-003-with-a-longer-name"),
        ),
    );
    files -= 1;
    io(
        step,
        "rename",
        std::fs::rename(dir.join("d4"), dir.join("d0/d4-moved")),
    );
    // Hard links and symlinks (fast: short target in the inode; slow: a
    // target longer than 60 bytes, in a block).
    io(
        step,
        "link",
        std::fs::hard_link(dir.join("big"), dir.join("d5/big-link")),
    );
    io(
        step,
        "symlink",
        std::os::unix::fs::symlink("../big", dir.join("d5/fast-link")),
    );
    let long = format!("{}/target", "a-rather-long-directory-name".repeat(4));
    io(
        step,
        "symlink",
        std::os::unix::fs::symlink(&long, dir.join("d5/slow-link")),
    );
    // Truncates: shrink, grow (a hole at the end), to zero.
    {
        let f = io(
            step,
            "truncate",
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("d6/file-000-with-a-longer-name")),
        );
        io(step, "truncate", f.set_len(100));
        let f = io(
            step,
            "truncate",
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("d6/file-001-with-a-longer-name")),
        );
        io(step, "truncate", f.set_len(300_000));
        let f = io(
            step,
            "truncate",
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("d6/file-002-with-a-longer-name")),
        );
        io(step, "truncate", f.set_len(0));
    }
    // Unlinks, and an rmdir.
    for i in 3..10 {
        io(
            step,
            "unlink",
            std::fs::remove_file(dir.join(format!("d7/file-{i:03}-with-a-longer-name"))),
        );
        files -= 1;
    }
    io(step, "mkdir", std::fs::create_dir(dir.join("gone")));
    io(step, "rmdir", std::fs::remove_dir(dir.join("gone")));
    // Permissions.
    io(
        step,
        "chmod",
        std::fs::set_permissions(dir.join("d5"), std::fs::Permissions::from_mode(0o750)),
    );
    io(
        step,
        "chmod",
        std::fs::set_permissions(dir.join("big"), std::fs::Permissions::from_mode(0o600)),
    );
    say(&format!("wrote: {files} files"));
}

fn fsync_path(step: &str, path: &Path) {
    let f = io(step, "open for fsync", std::fs::File::open(path));
    io(step, "fsync", f.sync_all());
}

/// Files the crash workload keeps at once (about 14 MiB at 35 KB each).
const CRASH_WINDOW: u64 = 400;

/// Creates, writes, fsyncs and announces files until the machine is killed;
/// each `durable:` line is printed only once the file and its directory
/// entry are on disk.
fn crash_workload(step: &str, dir: &Path, seed: u64) -> ! {
    io(step, "mkdir", std::fs::create_dir_all(dir));
    fsync_path(step, dir);
    if let Some(parent) = dir.parent() {
        fsync_path(step, parent);
    }
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        // Keep at most CRASH_WINDOW files so a fast machine never fills the
        // disk before the kill: the oldest is announced, then unlinked (the
        // test stops checking it from the announcement on).
        if let Some(old) = i.checked_sub(CRASH_WINDOW) {
            let old = format!("f{old:05}");
            let _ = writeln!(out, "retired: {old}");
            let _ = out.flush();
            io(step, "unlink", std::fs::remove_file(dir.join(&old)));
        }
        let len =
            (bytes(seed, i, 8)[0] as usize * 331 + bytes(seed, i, 8)[1] as usize) % 70_000 + 1;
        let data = bytes(seed, 100 + i, len);
        let name = format!("f{i:05}");
        let path = dir.join(&name);
        let mut f = io(step, "create", std::fs::File::create(&path));
        io(step, "write", f.write_all(&data));
        io(step, "fsync", f.sync_all());
        drop(f);
        fsync_path(step, dir);
        let _ = writeln!(out, "durable: {name} {len} {:016x}", fnv(&data, FNV_START));
        let _ = out.flush();
    }
    unreachable!()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for step in &args {
        let parts: Vec<&str> = step.split(':').collect();
        match parts.as_slice() {
            ["mount" | "mount-ro", dev, dir] => {
                let ro = parts[0] == "mount-ro";
                let (d, t, k) = (cstr(dev), cstr(dir), cstr("ext2"));
                let flags = if ro { libc::MS_RDONLY } else { 0 };
                // SAFETY: valid C strings; no data.
                let r = unsafe {
                    libc::mount(d.as_ptr(), t.as_ptr(), k.as_ptr(), flags, std::ptr::null())
                };
                if r != 0 {
                    fail(step, &errno_name(errno()));
                }
                say(&format!("{}: ok", parts[0]));
            }
            ["mount-tmpfs", dir] => {
                let (d, t, k) = (cstr("none"), cstr(dir), cstr("tmpfs"));
                // SAFETY: valid C strings; no data.
                let r =
                    unsafe { libc::mount(d.as_ptr(), t.as_ptr(), k.as_ptr(), 0, std::ptr::null()) };
                if r != 0 {
                    fail(step, &errno_name(errno()));
                }
                say("mount-tmpfs: ok");
            }
            ["umount", dir] => {
                let t = cstr(dir);
                // SAFETY: a valid C string.
                if unsafe { libc::umount2(t.as_ptr(), 0) } != 0 {
                    fail(step, &errno_name(errno()));
                }
                say("umount: ok");
            }
            ["sync"] => {
                // SAFETY: no arguments.
                unsafe { libc::sync() };
                say("sync: ok");
            }
            ["fsync-dir", dir] => {
                fsync_path(step, Path::new(dir));
                say("fsync-dir: ok");
            }
            ["list", dir] => list(step, Path::new(dir)),
            ["write", dir, seed] => write_tree(
                step,
                Path::new(dir),
                seed.parse().unwrap_or_else(|_| fail(step, "bad seed")),
            ),
            ["crash", dir, seed] => crash_workload(
                step,
                Path::new(dir),
                seed.parse().unwrap_or_else(|_| fail(step, "bad seed")),
            ),
            ["mkdir", dir] => {
                io(step, "mkdir", std::fs::create_dir_all(dir));
                say("mkdir: ok");
            }
            _ => fail(step, "unknown step"),
        }
    }
    say("disk_check: pass");
}
