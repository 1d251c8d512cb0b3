//! `fs::initramfs::unpack`, the unpacker the kernel and the file server
//! share: modes, mtimes, parents, symlinks, existing directories, the `keep`
//! filter, skipped member types, and malformed archives (an error, never a
//! panic).

use std::sync::Arc;

use bootfmt::cpio::NewcWriter;
use fs::host::{HeapPages, SystemClock};
use fs::{Fs, FsConfig, LockMode};

fn new_fs() -> Fs {
    Fs::new(
        FsConfig {
            mode: LockMode::PerCpu,
            max_pages: 1 << 12,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    )
}

fn archive() -> Vec<u8> {
    let mut w = NewcWriter::new();
    w.add_dir("etc", 0o750);
    w.add_file("etc/motd", 0o640, b"hello\n");
    // A member whose parents are not in the archive.
    w.add_file("./deep/er/file", 0o600, b"x");
    w.add_symlink("link", 0o777, "etc/motd");
    w.add_dir("dev", 0o700);
    w.finish()
}

#[test]
fn members_keep_their_modes_and_data() {
    let fs = new_fs();
    fs.mkdir(&fs.root(), "/dev", 0o755).unwrap();
    let done = fs::initramfs::unpack(&fs, &archive(), |_| true).unwrap();
    assert_eq!(done.stored, 5);
    assert_eq!(done.skipped, 0);
    let root = fs.root();
    let stat = |p: &str| fs.stat_path(&root, p, false).unwrap();
    assert_eq!(stat("/etc").mode & 0o7777, 0o750);
    assert_eq!(stat("/etc/motd").mode & 0o7777, 0o640);
    assert_eq!(stat("/etc/motd").size, 6);
    assert_eq!(stat("/deep/er").mode & 0o7777, 0o755, "a made parent");
    assert_eq!(fs.readlink(&root, "/link").unwrap(), "etc/motd");
    // An existing directory is kept and takes the member's mode.
    assert_eq!(stat("/dev").mode & 0o7777, 0o700);
    let f = fs.lookup(&root, "/link", true).unwrap();
    let mut buf = [0u8; 16];
    let n = f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello\n");
}

#[test]
fn keep_filters_members() {
    let fs = new_fs();
    let done = fs::initramfs::unpack(&fs, &archive(), |name| name.starts_with("etc")).unwrap();
    assert_eq!(done.stored, 2);
    assert!(fs.lookup(&fs.root(), "/deep", false).is_err());
}

#[test]
fn malformed_archives_are_errors() {
    let good = archive();
    for cut in [1, 6, 50, 110, good.len() / 2] {
        let fs = new_fs();
        assert!(
            fs::initramfs::unpack(&fs, &good[..cut], |_| true).is_err(),
            "an archive cut at {cut} bytes was accepted"
        );
    }
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(fs::initramfs::unpack(&new_fs(), &bad, |_| true).is_err());
}

/// `archive` with the 8-hex-digit header field at `offset` of the member
/// named `name` set to `value` (newc: mode at 14, mtime at 46).
fn patch_field(mut archive: Vec<u8>, name: &str, offset: usize, value: u32) -> Vec<u8> {
    let needle: Vec<u8> = name.bytes().chain([0]).collect();
    let at = archive
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("member in the archive")
        - 110;
    archive[at + offset..at + offset + 8].copy_from_slice(format!("{value:08X}").as_bytes());
    archive
}

#[test]
fn other_member_types_are_skipped_and_counted() {
    let mut w = NewcWriter::new();
    w.add_file("dev-null", 0o666, b"");
    w.add_file("fifo", 0o600, b"");
    w.add_file("kept", 0o644, b"");
    // A character device (S_IFCHR) and a FIFO (S_IFIFO).
    let archive = patch_field(w.finish(), "dev-null", 14, 0o020666);
    let archive = patch_field(archive, "fifo", 14, 0o010600);
    let fs = new_fs();
    let done = fs::initramfs::unpack(&fs, &archive, |_| true).unwrap();
    assert_eq!(
        done,
        fs::initramfs::Unpacked {
            stored: 1,
            skipped: 2
        }
    );
    assert!(fs.lookup(&fs.root(), "/dev-null", false).is_err());
    assert!(fs.lookup(&fs.root(), "/fifo", false).is_err());
    assert_eq!(fs.stat_path(&fs.root(), "/kept", false).unwrap().size, 0);
}

#[test]
fn members_keep_their_mtime() {
    let mut w = NewcWriter::new();
    w.add_file("f", 0o644, b"data");
    w.add_dir("d", 0o755);
    let archive = patch_field(w.finish(), "f", 46, 1_000_000_000);
    let archive = patch_field(archive, "d", 46, 7);
    let fs = new_fs();
    fs::initramfs::unpack(&fs, &archive, |_| true).unwrap();
    let stat = |p: &str| fs.stat_path(&fs.root(), p, false).unwrap();
    assert_eq!(stat("/f").mtime.sec, 1_000_000_000);
    assert_eq!(stat("/d").mtime.sec, 7);
}

#[test]
fn dot_and_prefixes_are_stripped() {
    let mut w = NewcWriter::new();
    w.add_dir(".", 0o700);
    w.add_file(".//./a", 0o644, b"1");
    w.add_file("/b", 0o644, b"22");
    let fs = new_fs();
    let root_mode = fs.stat_path(&fs.root(), "/", false).unwrap().mode;
    let done = fs::initramfs::unpack(&fs, &w.finish(), |_| true).unwrap();
    assert_eq!(done.stored, 2, "`.` is not a member to store");
    let stat = |p: &str| fs.stat_path(&fs.root(), p, false).unwrap();
    assert_eq!(stat("/a").size, 1);
    assert_eq!(stat("/b").size, 2);
    assert_eq!(stat("/").mode, root_mode, "the root keeps its mode");
}

#[test]
fn a_directory_over_a_file_and_a_bad_symlink_are_errors() {
    let mut w = NewcWriter::new();
    w.add_file("x", 0o644, b"");
    w.add_dir("x", 0o755);
    assert!(fs::initramfs::unpack(&new_fs(), &w.finish(), |_| true).is_err());
    // A file under a file: its parent cannot be made.
    let mut w = NewcWriter::new();
    w.add_file("y", 0o644, b"");
    w.add_file("y/z", 0o644, b"");
    assert!(fs::initramfs::unpack(&new_fs(), &w.finish(), |_| true).is_err());
    // A symlink whose target is not UTF-8.
    let mut w = NewcWriter::new();
    w.add_symlink("l", 0o777, "ab");
    let mut archive = w.finish();
    let pos = archive
        .windows(2)
        .rposition(|s| s == b"ab")
        .expect("target bytes");
    archive[pos] = 0xff;
    assert!(fs::initramfs::unpack(&new_fs(), &archive, |_| true).is_err());
}

#[test]
fn a_file_member_replaces_an_existing_file() {
    let fs = new_fs();
    let mut w = NewcWriter::new();
    w.add_file("f", 0o600, b"long old contents");
    fs::initramfs::unpack(&fs, &w.finish(), |_| true).unwrap();
    let mut w = NewcWriter::new();
    w.add_file("f", 0o640, b"new");
    fs::initramfs::unpack(&fs, &w.finish(), |_| true).unwrap();
    let st = fs.stat_path(&fs.root(), "/f", false).unwrap();
    assert_eq!((st.size, st.mode & 0o7777), (3, 0o640));
}

/// A file member named like a symlink made earlier in the archive does not
/// write through the link (`O_NOFOLLOW`): an archive cannot overwrite a
/// file outside what it names.
#[test]
fn a_file_member_does_not_write_through_a_symlink() {
    let fs = new_fs();
    let mut w = NewcWriter::new();
    w.add_file("target", 0o644, b"keep");
    w.add_symlink("s", 0o777, "target");
    w.add_file("s", 0o644, b"overwritten");
    assert!(fs::initramfs::unpack(&fs, &w.finish(), |_| true).is_err());
    let f = fs.lookup(&fs.root(), "/target", false).unwrap();
    let mut buf = [0u8; 16];
    let n = f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"keep");
}

/// A parent that cannot be made is reported as such (not as the member's
/// own creation failing later).
#[test]
fn a_parent_that_cannot_be_made_is_named_in_the_error() {
    let mut w = NewcWriter::new();
    w.add_file("y", 0o644, b"");
    w.add_file("y/z/w", 0o644, b"");
    let err = fs::initramfs::unpack(&new_fs(), &w.finish(), |_| true).unwrap_err();
    assert!(err.contains("mkdir of a parent"), "{err}");
}
