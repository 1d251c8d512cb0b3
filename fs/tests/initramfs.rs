//! `fs::initramfs::unpack`, the unpacker the kernel and the file server
//! share: modes, parents, symlinks, existing directories, the `keep`
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
