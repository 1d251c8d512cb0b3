//! The servers kernel image (`structure=servers`, kernel feature
//! `monolithic` off) does not contain the file-system and network code
//! that the user-mode servers run (issue 19; docs/SERVERS.md, "The servers
//! kernel image").
//!
//! Two independent looks at each ELF, both against the monolithic image
//! as the control (every pattern must be found there, so a pattern that no
//! longer names anything fails here instead of passing vacuously):
//! - symbols: every function and data symbol of `.symtab`, demangled; a
//!   path token starting with a forbidden crate or module fails;
//! - source files: the file and directory names of the line tables and the
//!   panic locations (`debug = "line-tables-only"`), which name code even
//!   where it was inlined into a kernel function and so has no symbol of
//!   its own.
//!
//! No QEMU: it builds both images (`comparison::build`) and reads them.

use comparison::sharing::symbols::Symbols;

/// Crates and modules only the servers run, as symbol path prefixes.
/// `fs::ext2::MountError` is the stand-in's error type (`fs/src/ext2_absent.rs`,
/// no code behind it) and is allowed.
const SYMBOL_PREFIXES: &[&str] = &[
    "smoltcp::",
    "net::",
    "fs::ext2::",
    "fs::block::",
    "fs::initramfs::",
    "kernel::sockets::inet::",
    "kernel::files::initramfs::",
    "kernel::files::blockdev::DiskDevice",
];

/// Allowed despite a forbidden prefix (no code of the left-out module):
/// the servers image's own `sockets::inet::create` (in `sockets/mod.rs`,
/// it hands AF_INET to the network server; the compiler may or may not
/// inline it).
const SYMBOL_ALLOWED: &[&str] = &["fs::ext2::MountError", "kernel::sockets::inet::create"];

/// Source paths (workspace-relative, or the registry's crate directory)
/// that must not appear in the servers image: the compilation units and
/// inlined code of those modules name them.
const SOURCE_PATHS: &[&str] = &[
    "smoltcp-",
    "net/src",
    "fs/src/ext2",
    "fs/src/block.rs",
    "fs/src/initramfs.rs",
    "kernel/src/sockets/inet.rs",
    "kernel/src/files/initramfs.rs",
];

/// The symbol-path tokens of a demangled name (`<a::B as c::D>::f` gives
/// `a::B`, `c::D`, `::f`).
fn tokens(name: &str) -> impl Iterator<Item = &str> {
    name.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| !t.is_empty())
}

/// The symbols of `names` that match `prefix` (and are not allowed).
fn matching<'a>(names: &'a [String], prefix: &str) -> Vec<&'a str> {
    names
        .iter()
        .filter(|n| {
            tokens(n)
                .any(|t| t.starts_with(prefix) && !SYMBOL_ALLOWED.iter().any(|a| t.starts_with(a)))
        })
        .map(String::as_str)
        .collect()
}

/// Whether `path` occurs in `bytes` as a whole path component sequence:
/// at the start of a string (after a NUL) or after a `/`.
fn has_path(bytes: &[u8], path: &str) -> bool {
    let p = path.as_bytes();
    bytes
        .windows(p.len())
        .enumerate()
        .any(|(i, w)| w == p && (i == 0 || matches!(bytes[i - 1], 0 | b'/')))
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn servers_image_lacks_the_servers_code() {
    let mono_path = comparison::build::build_bare_metal(true)
        .expect("building the monolithic kernel")
        .kernel;
    let servers_path =
        comparison::build::build_servers_kernel(true).expect("building the servers kernel image");
    assert_ne!(mono_path, servers_path, "the two images must be two files");
    let mono = read(&mono_path);
    let servers = read(&servers_path);
    let mono_names = Symbols::names_in_elf(&mono).expect("symbols of the monolithic kernel");
    let servers_names = Symbols::names_in_elf(&servers).expect("symbols of the servers kernel");
    // Both are whole kernels (the servers image is no empty stub).
    for needed in [
        "kernel::files::remote::",
        "kernel::sockets::remote::",
        "kernel::ipc::",
        "fs::vfs::",
    ] {
        for (what, names) in [("monolithic", &mono_names), ("servers", &servers_names)] {
            assert!(
                names.iter().any(|n| n.starts_with(needed)),
                "{needed} missing from the {what} image ({} symbols)",
                names.len()
            );
        }
    }
    let mut problems = Vec::new();
    for prefix in SYMBOL_PREFIXES {
        if matching(&mono_names, prefix).is_empty() {
            problems.push(format!(
                "control: no `{prefix}` symbol in the monolithic image (update the list)"
            ));
        }
        let found = matching(&servers_names, prefix);
        if !found.is_empty() {
            problems.push(format!(
                "servers image has {} `{prefix}` symbol(s), e.g. {:?}",
                found.len(),
                &found[..found.len().min(5)]
            ));
        }
    }
    for path in SOURCE_PATHS {
        if !has_path(&mono, path) {
            problems.push(format!(
                "control: source path `{path}` not in the monolithic image (update the list)"
            ));
        }
        if has_path(&servers, path) {
            problems.push(format!("servers image names source path `{path}`"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} ({}) vs {} ({}):\n{}",
        mono_path.display(),
        mono.len(),
        servers_path.display(),
        servers.len(),
        problems.join("\n")
    );
    eprintln!(
        "kernel_image: monolithic {} bytes, {} symbols; servers {} bytes, {} symbols",
        mono.len(),
        mono_names.len(),
        servers.len(),
        servers_names.len()
    );
}

#[test]
fn the_checks_see_what_they_look_for() {
    let names = vec![
        "<net::socket::Sock as core::fmt::Debug>::fmt".to_string(),
        "core::net::ip_addr::Ipv4Addr::new".to_string(),
        "<fs::ext2::MountError as core::fmt::Debug>::fmt".to_string(),
        "fs::ext2::disk::Ext2::open".to_string(),
    ];
    assert_eq!(matching(&names, "net::").len(), 1);
    assert_eq!(
        matching(&names, "fs::ext2::"),
        vec!["fs::ext2::disk::Ext2::open"]
    );
    assert!(has_path(b"x\0net/src\0", "net/src"));
    assert!(has_path(b"/w/net/src/lib.rs", "net/src"));
    assert!(!has_path(b"/w/servers/netd/src", "net/src"));
    assert!(!has_path(b"kernel/src", "net/src"));
}
