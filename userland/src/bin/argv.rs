//! `argv`: prints the argument vector and the environment it was started
//! with, one entry a line, so a test can compare what reached PID 1 on our
//! kernel and on Linux byte for byte (`comparison run PROGRAM -- ARGS`,
//! `--env`, `--dir`).
//!
//! Each entry is printed with Rust's `{:?}` quoting (quotes, backslashes and
//! control characters escaped; UTF-8 text as is; invalid UTF-8 as `\xNN`
//! bytes), in the order received.  With `ARGV_TREE=/path` in the
//! environment it also lists that directory tree (sorted; type, permission
//! bits, size and a byte sum of each file, link targets).  Prints
//! nothing that varies between runs; ends with `argv: pass`.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `{:?}` of the bytes as text, invalid UTF-8 bytes as `\xNN`.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        let text = format!("{:?}", chunk.valid());
        out.push_str(&text[1..text.len() - 1]);
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

fn list_tree(dir: &Path) {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(|e| e.ok()).collect(),
        Err(e) => {
            println!("tree: {} unreadable: {e} <-- WRONG", dir.display());
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            println!("tree: {} no metadata <-- WRONG", path.display());
            continue;
        };
        let perm = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            println!(
                "tree: {} symlink -> {}",
                quote(path.as_os_str().as_bytes()),
                quote(target.as_os_str().as_bytes())
            );
        } else if kind.is_dir() {
            println!("tree: {} dir {perm:o}", quote(path.as_os_str().as_bytes()));
            list_tree(&path);
        } else {
            let data = std::fs::read(&path).unwrap_or_default();
            let sum: u64 = data.iter().map(|b| *b as u64).sum();
            let wrong = if data.len() as u64 != meta.size() {
                " <-- WRONG"
            } else {
                ""
            };
            println!(
                "tree: {} file {perm:o} {} bytes sum {sum}{wrong}",
                quote(path.as_os_str().as_bytes()),
                data.len()
            );
        }
    }
}

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    println!("argc: {}", args.len());
    for (i, a) in args.iter().enumerate() {
        println!("argv[{i}]: {}", quote(a.as_bytes()));
    }
    let env: Vec<_> = std::env::vars_os().collect();
    println!("envc: {}", env.len());
    for (i, (k, v)) in env.iter().enumerate() {
        let mut entry = k.as_bytes().to_vec();
        entry.push(b'=');
        entry.extend_from_slice(v.as_bytes());
        println!("env[{i}]: {}", quote(&entry));
    }
    let wrong = if Path::new("/.init").exists() {
        " <-- WRONG"
    } else {
        ""
    };
    println!(
        "/.init removed before start: {}{wrong}",
        !Path::new("/.init").exists()
    );
    if let Some(tree) = std::env::var_os("ARGV_TREE") {
        list_tree(Path::new(&tree));
    }
    println!("argv: pass");
}
