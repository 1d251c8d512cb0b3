//! POSIX semantics of the VFS and tmpfs, one case per test, in both lock
//! modes where the mode could matter.

use std::sync::Arc;

use fs::host::{HeapPages, SystemClock, TickClock};
use fs::oflags::*;
use fs::{Errno, FileType, Fs, FsConfig, LockMode, PAGE_SIZE};

fn new_fs(mode: LockMode) -> (Fs, Arc<HeapPages>) {
    let pages = HeapPages::new();
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 20,
        },
        pages.clone(),
        Arc::new(SystemClock),
    );
    (fs, pages)
}

fn both(f: impl Fn(&Fs)) {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let (fs, pages) = new_fs(mode);
        f(&fs);
        drop(fs);
        let _ = pages;
    }
}

fn create(fs: &Fs, path: &str) -> Arc<fs::Inode> {
    fs.open(&fs.root(), path, O_CREAT | O_RDWR, 0o644).unwrap()
}

#[test]
fn create_write_read_and_stat() {
    both(|fs| {
        let f = create(fs, "/a");
        assert_eq!(f.write_at(0, b"hello", false).unwrap(), (5, 5));
        let mut buf = [0u8; 16];
        assert_eq!(f.read_at(0, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(f.read_at(5, &mut buf).unwrap(), 0);
        let st = f.stat();
        assert_eq!(st.mode, 0o100644);
        assert_eq!(st.size, 5);
        assert_eq!(st.nlink, 1);
        assert_eq!(st.blocks, 8);
        assert_eq!(st.blksize, 4096);
        let again = fs.lookup(&fs.root(), "a", true).unwrap();
        assert!(Arc::ptr_eq(&again, &f));
    });
}

#[test]
fn open_flags() {
    both(|fs| {
        let r = fs.root();
        assert_eq!(
            fs.open(&r, "/nope", O_RDONLY, 0).unwrap_err(),
            Errno::ENOENT
        );
        create(fs, "/f").write_at(0, b"data", false).unwrap();
        assert_eq!(
            fs.open(&r, "/f", O_CREAT | O_EXCL | O_WRONLY, 0o600)
                .unwrap_err(),
            Errno::EEXIST
        );
        assert_eq!(
            fs.open(&r, "/f", O_DIRECTORY, 0).unwrap_err(),
            Errno::ENOTDIR
        );
        assert_eq!(fs.open(&r, "/", O_WRONLY, 0).unwrap_err(), Errno::EISDIR);
        assert_eq!(
            fs.open(&r, "/", O_CREAT | O_RDWR, 0).unwrap_err(),
            Errno::EISDIR
        );
        assert_eq!(fs.open(&r, "/f/", O_RDONLY, 0).unwrap_err(), Errno::ENOTDIR);
        // A directory opens read-only (O_DIRECTORY or not); O_CREAT naming
        // an existing directory is EISDIR even read-only.
        fs.mkdir(&r, "/dir", 0o755).unwrap();
        assert!(fs.open(&r, "/dir", O_RDONLY, 0).unwrap().is_dir());
        assert!(fs
            .open(&r, "/dir", O_RDONLY | O_DIRECTORY, 0)
            .unwrap()
            .is_dir());
        assert_eq!(
            fs.open(&r, "/dir", O_CREAT | O_RDONLY, 0o644).unwrap_err(),
            Errno::EISDIR
        );
        assert_eq!(
            fs.open(&r, "/f/x", O_RDONLY, 0).unwrap_err(),
            Errno::ENOTDIR
        );
        // O_TRUNC with read-only access leaves the data.
        fs.open(&r, "/f", O_RDONLY | O_TRUNC, 0).unwrap();
        assert_eq!(fs.lookup(&r, "/f", true).unwrap().size(), 4);
        let f = fs.open(&r, "/f", O_WRONLY | O_TRUNC, 0).unwrap();
        assert_eq!(f.size(), 0);
        // Append writes at the end whatever the offset.
        f.write_at(0, b"ab", false).unwrap();
        assert_eq!(f.write_at(0, b"cd", true).unwrap(), (2, 4));
        let mut b = [0; 4];
        f.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"abcd");
        fs.symlink("/f", &r, "/l").unwrap();
        assert_eq!(
            fs.open(&r, "/l", O_RDONLY | O_NOFOLLOW, 0).unwrap_err(),
            Errno::ELOOP
        );
        assert!(Arc::ptr_eq(&fs.open(&r, "/l", O_RDONLY, 0).unwrap(), &f));
        assert_eq!(
            fs.open(&r, "/l", O_CREAT | O_EXCL | O_RDWR, 0).unwrap_err(),
            Errno::EEXIST
        );
        // O_CREAT on an existing symlink opens what it names (and
        // truncates that), or with O_NOFOLLOW refuses it.
        let via = fs
            .open(&r, "/l", O_CREAT | O_RDWR | O_TRUNC, 0o600)
            .unwrap();
        assert!(Arc::ptr_eq(&via, &f));
        assert_eq!(f.size(), 0);
        assert_eq!(
            fs.open(&r, "/l", O_CREAT | O_NOFOLLOW | O_RDWR, 0o600)
                .unwrap_err(),
            Errno::ELOOP
        );
    });
}

#[test]
fn sparse_files_holes_and_truncate() {
    both(|fs| {
        let f = create(fs, "/sparse");
        let off = 10 * PAGE_SIZE as u64 + 100;
        f.write_at(off, b"xyz", false).unwrap();
        let st = f.stat();
        assert_eq!(st.size, off + 3);
        assert_eq!(st.blocks, 8, "only one page is held");
        let mut buf = vec![0xffu8; 2 * PAGE_SIZE];
        assert_eq!(f.read_at(PAGE_SIZE as u64, &mut buf).unwrap(), buf.len());
        assert!(buf.iter().all(|&b| b == 0), "holes read as zeros");
        // Shrink into the page: the tail is zeroed, so growing again reads zeros.
        f.truncate(off + 1).unwrap();
        f.truncate(off + 3).unwrap();
        let mut t = [9u8; 3];
        f.read_at(off, &mut t).unwrap();
        assert_eq!(t, [b'x', 0, 0]);
        f.truncate(0).unwrap();
        assert_eq!(f.stat().blocks, 0);
        assert_eq!(fs.stats().used_pages, 0);
        f.truncate(1 << 30).unwrap();
        assert_eq!(f.size(), 1 << 30);
        assert_eq!(f.stat().blocks, 0);
        assert_eq!(f.truncate(fs::MAX_FILE_SIZE + 1).unwrap_err(), Errno::EFBIG);
        // The largest file itself is allowed (a hole), the byte before
        // its end writable, the end itself not.
        f.truncate(fs::MAX_FILE_SIZE).unwrap();
        assert_eq!(f.size(), fs::MAX_FILE_SIZE);
        assert_eq!(
            f.write_at(fs::MAX_FILE_SIZE - 1, b"ab", false).unwrap(),
            (1, fs::MAX_FILE_SIZE)
        );
        assert_eq!(
            f.write_at(fs::MAX_FILE_SIZE, b"a", false).unwrap_err(),
            Errno::EFBIG
        );
        f.truncate(0).unwrap();
        assert_eq!(fs.stats().used_pages, 0);
    });
}

#[test]
fn large_file_round_trips() {
    let (fs, pages) = new_fs(LockMode::PerCpu);
    let f = create(&fs, "/big");
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..64u64 {
        f.write_at(i << 20, &chunk, false).unwrap();
    }
    assert_eq!(f.size(), 64 << 20);
    let mut back = vec![0; 1 << 20];
    f.read_at(37 << 20, &mut back).unwrap();
    assert_eq!(back, chunk);
    assert_eq!(pages.live(), 64 * 256);
    fs.unlink(&fs.root(), "/big").unwrap();
    assert_eq!(pages.live(), 64 * 256, "still open");
    drop(f);
    assert_eq!(pages.live(), 0, "last reference frees the pages");
}

#[test]
fn enospc_bound_and_partial_write() {
    let pages = HeapPages::new();
    let fs = Fs::new(
        FsConfig {
            mode: LockMode::PerCpu,
            max_pages: 4,
        },
        pages.clone(),
        Arc::new(SystemClock),
    );
    let f = create(&fs, "/f");
    let data = vec![1u8; 6 * PAGE_SIZE];
    assert_eq!(
        f.write_at(0, &data, false).unwrap(),
        (4 * PAGE_SIZE, 4 * PAGE_SIZE as u64)
    );
    assert_eq!(
        f.write_at(4 * PAGE_SIZE as u64, &data, false).unwrap_err(),
        Errno::ENOSPC
    );
    // Rewriting held pages needs no new page.
    f.write_at(0, &data[..PAGE_SIZE], false).unwrap();
    f.truncate(PAGE_SIZE as u64).unwrap();
    assert_eq!(fs.stats().used_pages, 1);
    f.write_at(PAGE_SIZE as u64, &data[..PAGE_SIZE], false)
        .unwrap();
    // The allocator running out is ENOSPC too.
    let tiny = HeapPages::with_cap(1);
    let fs2 = Fs::new(
        FsConfig {
            mode: LockMode::PerCpu,
            max_pages: 100,
        },
        tiny,
        Arc::new(SystemClock),
    );
    let g = create(&fs2, "/g");
    assert_eq!(g.write_at(0, &data, false).unwrap().0, PAGE_SIZE);
    assert_eq!(
        g.write_at(PAGE_SIZE as u64, &data, false).unwrap_err(),
        Errno::ENOSPC
    );
}

#[test]
fn directories_nlink_and_rmdir() {
    both(|fs| {
        let r = fs.root();
        assert_eq!(r.nlink(), 2);
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        assert_eq!(r.nlink(), 3);
        assert_eq!(d.stat().mode, 0o040755);
        fs.mkdir(&r, "/d/e", 0o700).unwrap();
        assert_eq!(d.nlink(), 3);
        assert_eq!(fs.mkdir(&r, "/d", 0o755).unwrap_err(), Errno::EEXIST);
        assert_eq!(fs.mkdir(&r, "/", 0o755).unwrap_err(), Errno::EEXIST);
        assert_eq!(fs.mkdir(&r, "/x/y", 0o755).unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.rmdir(&r, "/d").unwrap_err(), Errno::ENOTEMPTY);
        assert_eq!(fs.rmdir(&r, "/d/e/.").unwrap_err(), Errno::EINVAL);
        assert_eq!(fs.rmdir(&r, "/d/e/..").unwrap_err(), Errno::ENOTEMPTY);
        assert_eq!(fs.unlink(&r, "/d").unwrap_err(), Errno::EISDIR);
        create(fs, "/d/file");
        assert_eq!(fs.rmdir(&r, "/d/file").unwrap_err(), Errno::ENOTDIR);
        fs.unlink(&r, "/d/file").unwrap();
        let e = fs.lookup(&r, "/d/e", true).unwrap();
        fs.rmdir(&r, "/d/e").unwrap();
        assert_eq!(e.nlink(), 0);
        assert_eq!(d.nlink(), 2);
        // A removed directory accepts no new entries and lists nothing.
        assert_eq!(
            fs.open(&e, "new", O_CREAT | O_RDWR, 0o644).unwrap_err(),
            Errno::ENOENT
        );
        assert_eq!(fs.path_of(&e).unwrap_err(), Errno::ENOENT);
        fs.rmdir(&r, "/d/").unwrap();
        assert_eq!(r.nlink(), 2);
        assert_eq!(fs.rmdir(&r, "/").unwrap_err(), Errno::EBUSY);
    });
}

#[test]
fn dot_dot_and_relative_paths() {
    both(|fs| {
        let r = fs.root();
        let a = fs.mkdir(&r, "a", 0o755).unwrap();
        let b = fs.mkdir(&a, "b", 0o755).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&b, "..", true).unwrap(), &a));
        assert!(Arc::ptr_eq(&fs.lookup(&b, "../..", true).unwrap(), &r));
        assert!(Arc::ptr_eq(
            &fs.lookup(&b, "../../../..", true).unwrap(),
            &r
        ));
        assert!(Arc::ptr_eq(
            &fs.lookup(&r, "/a/./b/../b/.", true).unwrap(),
            &b
        ));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "//a///b//", true).unwrap(), &b));
        assert_eq!(fs.path_of(&b).unwrap(), "/a/b");
        assert_eq!(fs.path_of(&r).unwrap(), "/");
        assert_eq!(fs.lookup(&r, "", true).unwrap_err(), Errno::ENOENT);
        let f = create(fs, "/a/f");
        assert_eq!(fs.lookup(&f, "x", true).unwrap_err(), Errno::ENOTDIR);
    });
}

#[test]
fn name_and_path_limits() {
    both(|fs| {
        let r = fs.root();
        let ok = "n".repeat(255);
        fs.open(&r, &ok, O_CREAT | O_RDWR, 0o644).unwrap();
        let long = "n".repeat(256);
        assert_eq!(
            fs.open(&r, &long, O_CREAT | O_RDWR, 0o644).unwrap_err(),
            Errno::ENAMETOOLONG
        );
        assert_eq!(
            fs.lookup(&r, &format!("/{long}/x"), true).unwrap_err(),
            Errno::ENAMETOOLONG
        );
        let path = "a/".repeat(2048);
        assert_eq!(path.len(), 4096);
        assert_eq!(fs.lookup(&r, &path, true).unwrap_err(), Errno::ENAMETOOLONG);
        assert_eq!(
            fs.symlink(&"t".repeat(4096), &r, "s").unwrap_err(),
            Errno::ENAMETOOLONG
        );
    });
}

#[test]
fn symlinks_and_loops() {
    both(|fs| {
        let r = fs.root();
        fs.mkdir(&r, "/dir", 0o755).unwrap();
        let f = create(fs, "/dir/f");
        fs.symlink("dir", &r, "/rel").unwrap();
        fs.symlink("/dir/f", &r, "/abs").unwrap();
        fs.symlink("../dir/f", &r, "/dir/up").unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/rel/f", true).unwrap(), &f));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/abs", true).unwrap(), &f));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/rel/up", true).unwrap(), &f));
        let l = fs.lookup(&r, "/abs", false).unwrap();
        assert_eq!(l.kind(), FileType::Symlink);
        assert_eq!(l.stat().mode, 0o120777);
        assert_eq!(l.stat().size, 6);
        assert_eq!(fs.readlink(&r, "/abs").unwrap(), "/dir/f");
        assert_eq!(fs.readlink(&r, "/dir/f").unwrap_err(), Errno::EINVAL);
        fs.symlink("loop2", &r, "/loop1").unwrap();
        fs.symlink("loop1", &r, "/loop2").unwrap();
        assert_eq!(fs.lookup(&r, "/loop1", true).unwrap_err(), Errno::ELOOP);
        assert_eq!(fs.lookup(&r, "/loop1/x", true).unwrap_err(), Errno::ELOOP);
        fs.symlink("/nowhere", &r, "/dangling").unwrap();
        assert_eq!(fs.lookup(&r, "/dangling", true).unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.symlink("", &r, "/empty").unwrap_err(), Errno::ENOENT);
        // A new name with a trailing slash must be a directory: ENOENT.
        assert_eq!(fs.symlink("dir", &r, "/slash/").unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.lookup(&r, "/slash", false).unwrap_err(), Errno::ENOENT);
        // A chain of 40 links resolves; 41 does not.
        for i in 0..41 {
            fs.symlink(&format!("c{}", i + 1), &r, &format!("/c{i}"))
                .unwrap();
        }
        create(fs, "/c41");
        assert!(fs.lookup(&r, "/c1", true).is_ok());
        assert_eq!(fs.lookup(&r, "/c0", true).unwrap_err(), Errno::ELOOP);
    });
}

#[test]
fn hard_links_and_unlink_while_open() {
    both(|fs| {
        let r = fs.root();
        let f = create(fs, "/f");
        f.write_at(0, b"keep", false).unwrap();
        fs.link(&r, "/f", &r, "/g", false).unwrap();
        assert_eq!(f.nlink(), 2);
        assert_eq!(
            fs.link(&r, "/f", &r, "/g", false).unwrap_err(),
            Errno::EEXIST
        );
        fs.mkdir(&r, "/d", 0o755).unwrap();
        assert_eq!(
            fs.link(&r, "/d", &r, "/d2", false).unwrap_err(),
            Errno::EPERM
        );
        fs.unlink(&r, "/f").unwrap();
        assert_eq!(f.nlink(), 1);
        fs.unlink(&r, "/g").unwrap();
        assert_eq!(f.nlink(), 0);
        assert_eq!(fs.lookup(&r, "/g", true).unwrap_err(), Errno::ENOENT);
        let mut b = [0; 4];
        f.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"keep", "data lives until the last close");
        assert_eq!(fs.unlink(&r, "/g").unwrap_err(), Errno::ENOENT);
        create(fs, "/h");
        assert_eq!(fs.unlink(&r, "/h/").unwrap_err(), Errno::ENOTDIR);
    });
}

#[test]
fn rename_cases() {
    both(|fs| {
        let r = fs.root();
        let a = create(fs, "/a");
        let b = create(fs, "/b");
        fs.rename(&r, "/a", &r, "/b").unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/b", true).unwrap(), &a));
        assert_eq!(b.nlink(), 0, "replaced target loses its link");
        assert_eq!(fs.lookup(&r, "/a", true).unwrap_err(), Errno::ENOENT);
        // Same inode under both names: nothing happens.
        fs.link(&r, "/b", &r, "/b2", false).unwrap();
        fs.rename(&r, "/b", &r, "/b2").unwrap();
        assert!(fs.lookup(&r, "/b", true).is_ok() && fs.lookup(&r, "/b2", true).is_ok());
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        fs.mkdir(&r, "/d/sub", 0o755).unwrap();
        fs.mkdir(&r, "/e", 0o755).unwrap();
        assert_eq!(
            fs.rename(&r, "/d", &r, "/d/sub/x").unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(fs.rename(&r, "/d", &r, "/d/x").unwrap_err(), Errno::EINVAL);
        assert_eq!(fs.rename(&r, "/d", &r, "/b").unwrap_err(), Errno::ENOTDIR);
        assert_eq!(fs.rename(&r, "/b", &r, "/d").unwrap_err(), Errno::EISDIR);
        assert_eq!(fs.rename(&r, "/e", &r, "/d").unwrap_err(), Errno::ENOTEMPTY);
        assert_eq!(fs.rename(&r, "/nope", &r, "/z").unwrap_err(), Errno::ENOENT);
        // Onto its own (non-empty) parent.
        assert_eq!(
            fs.rename(&r, "/d/sub", &r, "/d").unwrap_err(),
            Errno::ENOTEMPTY
        );
        assert_eq!(fs.rename(&r, "/b/", &r, "/z").unwrap_err(), Errno::ENOTDIR);
        assert_eq!(fs.rename(&r, "/d/.", &r, "/z").unwrap_err(), Errno::EBUSY);
        // Directory over an empty directory, across parents.
        let nlink_root = r.nlink();
        fs.rename(&r, "/d", &r, "/e").unwrap();
        assert_eq!(r.nlink(), nlink_root - 1);
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/e", true).unwrap(), &d));
        fs.rename(&r, "/e/sub", &r, "/sub").unwrap();
        assert_eq!(d.nlink(), 2);
        assert_eq!(r.nlink(), nlink_root);
        let sub = fs.lookup(&r, "/sub", true).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&sub, "..", true).unwrap(), &r));
        assert_eq!(fs.path_of(&sub).unwrap(), "/sub");
        // Same-directory rename of a directory.
        fs.rename(&r, "/sub", &r, "/sub2/").unwrap();
        assert_eq!(fs.path_of(&sub).unwrap(), "/sub2");
    });
}

#[test]
fn readdir_lists_every_entry_once_and_resumes() {
    both(|fs| {
        let r = fs.root();
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        for i in 0..500 {
            create(fs, &format!("/d/f{i}"));
        }
        fs.mkdir(&r, "/d/sub", 0o755).unwrap();
        assert_eq!(d.stat().size, 40 + 20 * 501);
        let mut cursor = fs::DirCursor::default();
        let mut names = Vec::new();
        // Small batches, to exercise resumption.
        loop {
            let before = names.len();
            let mut batch = 0;
            d.readdir(&mut cursor, |name, ino, kind, off| {
                if batch == 7 {
                    return false;
                }
                batch += 1;
                assert!(ino != 0);
                assert_eq!(off as usize, names.len() + 1);
                names.push((name.to_string(), kind));
                true
            })
            .unwrap();
            if names.len() == before {
                break;
            }
        }
        assert_eq!(names.len(), 503);
        assert_eq!(names[0].0, ".");
        assert_eq!(names[1].0, "..");
        let mut sorted: Vec<_> = names.iter().map(|n| n.0.clone()).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 503, "no duplicates");
        assert!(names.contains(&("sub".to_string(), FileType::Directory)));
        let f = create(fs, "/x");
        let mut c = fs::DirCursor::default();
        assert_eq!(
            f.readdir(&mut c, |_, _, _, _| true).unwrap_err(),
            Errno::ENOTDIR
        );
    });
}

#[test]
fn timestamps_and_mode_bits() {
    let fs = Fs::new(
        FsConfig {
            mode: LockMode::PerCpu,
            max_pages: 100,
        },
        HeapPages::new(),
        TickClock::new(),
    );
    let r = fs.root();
    let d = fs.mkdir(&r, "/d", 0o755).unwrap();
    let before = d.stat();
    let f = fs.open(&r, "/d/f", O_CREAT | O_RDWR, 0o640).unwrap();
    let st = f.stat();
    assert_eq!(st.mode & 0o7777, 0o640);
    assert!(
        d.stat().mtime > before.mtime,
        "create changes the directory"
    );
    f.write_at(0, b"x", false).unwrap();
    assert!(f.stat().mtime > st.mtime);
    let before = f.stat();
    fs.link(&r, "/d/f", &r, "/d/g", false).unwrap();
    assert!(f.stat().ctime > before.ctime, "link changes ctime");
    assert_eq!(f.stat().mtime, before.mtime);
    f.set_perm(0o4755);
    assert_eq!(f.stat().mode, 0o104755);
    assert_eq!(
        fs.mknod(&r, "/null", FileType::CharDevice, 0o666, 0x103)
            .unwrap()
            .stat()
            .rdev,
        0x103
    );
    assert_eq!(fs.lookup(&r, "/null", true).unwrap().stat().mode, 0o020666);
}

#[test]
fn page_phys_maps_pages_and_refuses_past_end() {
    let (fs, _) = new_fs(LockMode::PerCpu);
    let f = create(&fs, "/m");
    f.truncate(2 * PAGE_SIZE as u64 + 1).unwrap();
    let p0 = f.page_phys(0).unwrap();
    assert_eq!(p0, f.page_phys(0).unwrap(), "stable");
    assert!(f.page_phys(2).is_ok());
    assert_eq!(f.page_phys(3).unwrap_err(), Errno::EFAULT);
    // The mapped page is the page read and write use.
    f.write_at(5, b"shared", false).unwrap();
    let mut b = [0u8; 6];
    // SAFETY: on the host the "physical" address is the heap address of a
    // live page of this file, which holds at least 11 bytes.
    unsafe { std::ptr::copy_nonoverlapping((p0 + 5) as *const u8, b.as_mut_ptr(), 6) };
    assert_eq!(&b, b"shared");
    // Truncation under a mapping keeps the page alive (a process may still
    // map it) until the inode goes; reads see the new size.
    let live = fs.stats().used_pages;
    f.truncate(0).unwrap();
    assert_eq!(fs.stats().used_pages, live);
    assert_eq!(f.page_phys(0).unwrap_err(), Errno::EFAULT);
    fs.unlink(&fs.root(), "/m").unwrap();
    drop(f);
    // The unlinked entry is freed after an RCU grace period.
    fs.flush_deferred();
    assert_eq!(fs.stats().used_pages, 0);
}

/// `stat_path` (no reference taken) agrees with `lookup(..).stat()`,
/// follows or not a final symlink, and gives the same errors.
#[test]
fn stat_path_matches_lookup() {
    both(|fs| {
        let r = fs.root();
        fs.mkdir(&r, "/d", 0o755).unwrap();
        let f = create(fs, "/d/f");
        f.write_at(0, b"abc", false).unwrap();
        fs.symlink("/d/f", &r, "/d/link").unwrap();
        for (path, follow) in [
            ("/d/f", true),
            ("/d/link", true),
            ("/d/link", false),
            ("d", true),
        ] {
            assert_eq!(
                fs.stat_path(&r, path, follow).unwrap(),
                fs.lookup(&r, path, follow).unwrap().stat(),
                "{path} follow={follow}"
            );
        }
        assert_eq!(fs.stat_path(&r, "/d/link", true).unwrap().size, 3);
        assert_eq!(fs.stat_path(&r, "/d/missing", true), Err(Errno::ENOENT));
        assert_eq!(fs.stat_path(&r, "/d/f/x", true), Err(Errno::ENOTDIR));
    });
}

/// renameat2's RENAME_NOREPLACE and RENAME_EXCHANGE (`rename_with`).
#[test]
fn rename_noreplace_and_exchange() {
    use fs::vfs::RenameMode::{Exchange, NoReplace};
    both(|fs| {
        let r = fs.root();
        let a = create(fs, "/a");
        let b = create(fs, "/b");
        assert_eq!(
            fs.rename_with(&r, "/a", &r, "/b", NoReplace).unwrap_err(),
            Errno::EEXIST
        );
        fs.rename_with(&r, "/a", &r, "/b", Exchange).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/b", true).unwrap(), &a));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/a", true).unwrap(), &b));
        assert_eq!((a.nlink(), b.nlink()), (1, 1), "nobody loses a link");
        assert_eq!(
            fs.rename_with(&r, "/a", &r, "/c", Exchange).unwrap_err(),
            Errno::ENOENT
        );
        fs.rename_with(&r, "/a", &r, "/c", NoReplace).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/c", true).unwrap(), &b));
        // A directory and a file in different directories swap; the
        // directory's parent and the link counts follow.
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        let sub = fs.mkdir(&r, "/d/sub", 0o755).unwrap();
        fs.rename_with(&r, "/d/sub", &r, "/c", Exchange).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/c", true).unwrap(), &sub));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/d/sub", true).unwrap(), &b));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/c/..", true).unwrap(), &r));
        assert_eq!(d.nlink(), 2, "/d lost the subdirectory's `..`");
        // A directory cannot be swapped into its own subtree.
        assert_eq!(
            fs.rename_with(&r, "/c", &r, "/d/sub", Exchange).map(|_| ()),
            Ok(()),
            "siblings' subtrees are fine"
        );
        fs.mkdir(&r, "/d/sub/in", 0o755).unwrap();
        assert_eq!(
            fs.rename_with(&r, "/d", &r, "/d/sub/in", Exchange)
                .unwrap_err(),
            Errno::EINVAL
        );
        // Nor when the other name is the directory, two levels up: the
        // check climbs every parent, not only the first.  (cargo-mutants:
        // `dst.is_dir() && cross` -> `||` in that check is equivalent: in
        // one directory the other name is a child of `op.dir`, never one
        // of its ancestors, so the climb finds nothing.)
        create(fs, "/d/sub/in/f");
        for (a, b) in [("/d/sub/in/f", "/d"), ("/d", "/d/sub/in/f")] {
            assert_eq!(
                fs.rename_with(&r, a, &r, b, Exchange).unwrap_err(),
                Errno::EINVAL,
                "{a} <-> {b}"
            );
        }
        assert!(fs.lookup(&r, "/d/sub/in/f", true).is_ok());
    });
}

/// Threads that open one new name with `O_CREAT` at once all get the same
/// file: the loser of the race between the lock-free lookup and the
/// insert sees `EEXIST` inside `open` and must retry as an open, not fail.
/// The race is made likely, not certain: many rounds, a barrier before
/// each; a failure is recorded, not panicked on, so no thread is left
/// waiting at the barrier.
#[test]
fn racing_o_creat_of_one_name_all_open_the_same_file() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 3000;
    let (fs, _pages) = new_fs(LockMode::PerCpu);
    let barrier = std::sync::Barrier::new(THREADS);
    let got: Vec<Vec<fs::FsResult<Arc<fs::Inode>>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (fs, barrier) = (&fs, &barrier);
                s.spawn(move || {
                    percpu::host::bind_current_thread(t).unwrap();
                    (0..ROUNDS)
                        .map(|i| {
                            barrier.wait();
                            fs.open(&fs.root(), &format!("/r{i}"), O_CREAT | O_RDWR, 0o644)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..ROUNDS {
        let f = fs.lookup(&fs.root(), &format!("/r{i}"), true).unwrap();
        for t in &got {
            let mine = t[i].as_ref().unwrap_or_else(|e| panic!("round {i}: {e:?}"));
            assert!(Arc::ptr_eq(mine, &f), "round {i}: two files");
        }
        assert_eq!(f.nlink(), 1);
    }
}

/// `rmdir` of an empty directory, and `rename` over one, must not fail
/// while another thread holds one of its bucket locks for a moment (here
/// by unlinking a name that is not there): the busy bucket makes the
/// emptiness check retry (`EAGAIN` inside), never an error for the caller.
#[test]
fn rmdir_and_rename_over_an_empty_directory_retry_past_busy_buckets() {
    const ROUNDS: usize = 3000;
    let (fs, _pages) = new_fs(LockMode::PerCpu);
    let r = fs.root();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failures: Vec<String> = std::thread::scope(|s| {
        s.spawn(|| {
            percpu::host::bind_current_thread(1).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for name in ["/v/a", "/v/b", "/v/c", "/v/d"] {
                    let e = fs.unlink(&fs.root(), name).unwrap_err();
                    assert_eq!(e, Errno::ENOENT);
                }
            }
        });
        let mut failures = Vec::new();
        for i in 0..ROUNDS {
            fs.mkdir(&r, "/v", 0o755).unwrap();
            for _ in 0..3 {
                fs.mkdir(&r, "/s", 0o755).unwrap();
                if let Err(e) = fs.rename(&r, "/s", &r, "/v") {
                    failures.push(format!("round {i}: rename over empty dir: {e:?}"));
                    fs.rmdir(&r, "/s").unwrap();
                }
            }
            while let Err(e) = fs.rmdir(&r, "/v") {
                failures.push(format!("round {i}: rmdir: {e:?}"));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        failures
    });
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Lists `dir` one entry per call, the cursor passed between calls as
/// plain data (`to_parts`/`from_parts`, as the file server keeps it).
fn list_through_parts(dir: &fs::Inode) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut parts: (u64, u64, Option<String>) = (0, 0, None);
    // Bounded: a cursor that stops advancing fails here instead of hanging.
    for _ in 0..100_000 {
        let mut c = fs::DirCursor::from_parts(parts.0, parts.1, parts.2.as_deref()).unwrap();
        let before = out.len();
        let mut took = false;
        dir.readdir(&mut c, |name, _, _, off| {
            if took {
                return false;
            }
            took = true;
            out.push((name.to_string(), off));
            true
        })
        .unwrap();
        let (pos, state, after) = c.to_parts();
        parts = (pos, state, after.map(String::from));
        if out.len() == before {
            return out;
        }
    }
    panic!("the listing did not end: {} entries so far", out.len());
}

/// The cursor as plain data resumes exactly where it stood, and
/// `from_parts` refuses state words and names `to_parts` cannot make.
/// (cargo-mutants: `|` -> `^` in `to_parts` is equivalent: stage, bucket
/// and generated index occupy disjoint bits.)
#[test]
fn dir_cursor_survives_to_parts_and_refuses_forged_parts() {
    use fs::DirCursor;
    both(|fs| {
        let r = fs.root();
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        for i in 0..200 {
            create(fs, &format!("/d/f{i}"));
        }
        let mut whole = Vec::new();
        d.readdir(&mut DirCursor::default(), |name, _, _, off| {
            whole.push((name.to_string(), off));
            true
        })
        .unwrap();
        assert_eq!(whole.len(), 202);
        assert_eq!(list_through_parts(&d), whole);
        // A finished cursor stays finished through its parts.
        let mut done = DirCursor::default();
        d.readdir(&mut done, |_, _, _, _| true).unwrap();
        let (pos, state, after) = done.to_parts();
        assert_eq!(pos, 202);
        let mut again = DirCursor::from_parts(pos, state, after).unwrap();
        d.readdir(&mut again, |n, _, _, _| panic!("{n} after the end"))
            .unwrap();
    });
    // Stage 0..=4 and bucket 0..=32 (32: past the last) are what
    // `to_parts` makes; the generated index has 32 bits.
    for ok in [0u64, 4, 32 << 8, 2 | (32 << 8), (0xffff_ffff << 16) | 4] {
        assert!(DirCursor::from_parts(0, ok, None).is_ok(), "{ok:#x}");
    }
    for bad in [5u64, 0xff, 33 << 8, 0xff << 8, 1 << 48, 1 << 63] {
        assert_eq!(
            DirCursor::from_parts(0, bad, None).unwrap_err(),
            Errno::EINVAL,
            "{bad:#x}"
        );
    }
    let long = "n".repeat(fs::NAME_MAX);
    assert!(DirCursor::from_parts(0, 2, Some(&long)).is_ok());
    assert!(DirCursor::from_parts(0, 2, Some("x")).is_ok());
    for bad in [String::new(), "n".repeat(fs::NAME_MAX + 1)] {
        assert_eq!(
            DirCursor::from_parts(0, 2, Some(&bad)).unwrap_err(),
            Errno::EINVAL
        );
    }
    let c = DirCursor::from_parts(7, 2 | (5 << 8) | (9 << 16), Some("x")).unwrap();
    assert_eq!(c.to_parts(), (7, 2 | (5 << 8) | (9 << 16), Some("x")));
}

/// One-copy I/O grants (`inode/grant.rs`): the pages behind a read (0 for
/// a hole), pages made ready for a write and the size changed only at the
/// commit, a truncate in between refusing the commit, forged commits, and
/// the page lifetime rule (cut-off pages wait for the last I/O user only
/// when a grant was given while a user is open).
#[test]
fn one_copy_grants() {
    const P: u64 = PAGE_SIZE as u64;
    both(|fs| {
        let f = create(fs, "/g");
        f.write_at(0, &[7u8; 5000], false).unwrap();
        let (n, a) = f.grant_read(0, 10_000).unwrap();
        assert_eq!(n, 5000);
        assert_eq!(a.len(), 2);
        assert!(a[0] != 0 && a[1] != 0 && a[0] != a[1], "{a:?}");
        assert_eq!(f.grant_read(P, 100).unwrap(), (100, vec![a[1]]));
        assert_eq!(f.grant_read(4000, 200).unwrap(), (200, a.clone()));
        assert_eq!(f.grant_read(4999, 10).unwrap(), (1, vec![a[1]]));
        assert_eq!(f.grant_read(5000, 10).unwrap(), (0, vec![]));
        assert_eq!(f.grant_read(0, 0).unwrap(), (0, vec![]));
        // A hole reads as page 0.
        f.truncate(3 * P).unwrap();
        assert_eq!(
            f.grant_read(2 * P, PAGE_SIZE).unwrap(),
            (PAGE_SIZE, vec![0])
        );
        // A write grant fills the hole; the size waits for the commit.
        assert_eq!(f.grant_write(0, 0).unwrap_err(), Errno::EINVAL);
        let v0 = f.data_version().unwrap().0;
        let (n, w, epoch) = f.grant_write(2 * P + 10, 100).unwrap();
        assert_eq!(n, 100);
        assert_eq!(w.len(), 1);
        assert!(w[0] != 0);
        assert!(
            f.data_version().unwrap().0 > v0,
            "a write grant bumps the version"
        );
        assert_eq!(f.grant_read(2 * P, 1).unwrap(), (1, w.clone()));
        assert_eq!(f.size(), 3 * P);
        let v1 = f.data_version().unwrap().0;
        assert_eq!(f.commit_write(2 * P + 10, 100, epoch).unwrap(), 2 * P + 110);
        assert!(
            f.data_version().unwrap().0 > v1,
            "a commit bumps the version"
        );
        assert_eq!(f.size(), 3 * P, "a commit inside the file keeps its size");
        // Past the end: two pages, the size grows at the commit only.
        let (n, w, epoch) = f.grant_write(3 * P, PAGE_SIZE + 5).unwrap();
        assert_eq!((n, w.len()), (PAGE_SIZE + 5, 2));
        assert_eq!(
            f.grant_write(3 * P, PAGE_SIZE + 5).unwrap().1,
            w,
            "same pages"
        );
        assert_eq!(f.size(), 3 * P);
        assert_eq!(
            f.commit_write(3 * P, PAGE_SIZE + 5, epoch).unwrap(),
            4 * P + 5
        );
        assert_eq!(f.size(), 4 * P + 5);
        assert_eq!(f.commit_write(3 * P, 0, epoch).unwrap(), 3 * P);
        // A truncate into the granted range between grant and commit:
        // EAGAIN; one that ends past it changes nothing for the grant.
        let (_, _, epoch) = f.grant_write(0, 10).unwrap();
        f.truncate(P + 1).unwrap();
        assert_eq!(f.commit_write(0, 10, epoch).unwrap(), 10);
        let (_, _, epoch) = f.grant_write(0, 10).unwrap();
        f.truncate(5).unwrap();
        assert_eq!(f.commit_write(0, 10, epoch).unwrap_err(), Errno::EAGAIN);
        assert_eq!(
            f.commit_write(0, 10, epoch).unwrap_err(),
            Errno::EAGAIN,
            "ended"
        );
        f.truncate(P + 1).unwrap();
        let (_, _, epoch) = f.grant_write(0, 10).unwrap();
        assert_eq!(f.commit_write(0, 10, epoch).unwrap(), 10);
        // Forged commits: a range over a hole, past the largest file.
        assert_eq!(f.commit_write(8 * P, 10, epoch).unwrap_err(), Errno::EINVAL);
        assert_eq!(
            f.commit_write(fs::MAX_FILE_SIZE - 5, 10, epoch)
                .unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(
            f.commit_write(u64::MAX, 10, epoch).unwrap_err(),
            Errno::EINVAL
        );
        assert_eq!(f.size(), P + 1);
        // Limits of a write grant.
        assert_eq!(
            f.grant_write(fs::MAX_FILE_SIZE, 1).unwrap_err(),
            Errno::EFBIG
        );
        assert_eq!(f.grant_write(u64::MAX - 1, 10).unwrap_err(), Errno::EFBIG);
        let (n, w, _) = f.grant_write(fs::MAX_FILE_SIZE - 10, 100).unwrap();
        assert_eq!((n, w.len()), (10, 1));
        f.truncate(0).unwrap();
        assert_eq!(fs.stats().used_pages, 0);

        // Page lifetime.  Granted while a user is open: a truncate keeps
        // the pages until the last user closes.
        let used = || fs.stats().used_pages;
        f.write_at(0, &[1u8; 2 * PAGE_SIZE], false).unwrap();
        f.io_open();
        f.io_open();
        f.grant_read(0, 2 * PAGE_SIZE).unwrap();
        f.truncate(0).unwrap();
        assert_eq!(used(), 2, "retired while granted");
        f.io_close();
        assert_eq!(used(), 2, "one user still open");
        f.io_close();
        assert_eq!(used(), 0, "freed by the last close");
        // A user open but nothing granted: freed at once.
        f.write_at(0, &[1u8; 2 * PAGE_SIZE], false).unwrap();
        f.io_open();
        f.truncate(0).unwrap();
        assert_eq!(used(), 0);
        f.io_close();
        // Granted with no user open: freed at once.
        f.write_at(0, &[1u8; 2 * PAGE_SIZE], false).unwrap();
        f.grant_read(0, 10).unwrap();
        f.truncate(0).unwrap();
        assert_eq!(used(), 0);
        // A write grant counts as a grant.
        f.write_at(0, &[1u8; 2 * PAGE_SIZE], false).unwrap();
        f.io_open();
        f.grant_write(0, 10).unwrap();
        f.truncate(0).unwrap();
        assert_eq!(used(), 2);
        f.io_close();
        assert_eq!(used(), 0);
        // Not for directories.
        assert_eq!(fs.root().grant_read(0, 1).unwrap_err(), Errno::EISDIR);
    });
    // Out of pages: a short grant, then ENOSPC.
    let fs = Fs::new(
        FsConfig {
            mode: LockMode::PerCpu,
            max_pages: 4,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    );
    let f = create(&fs, "/f");
    let (n, w, _) = f.grant_write(P / 2, 8 * PAGE_SIZE).unwrap();
    assert_eq!((n, w.len()), (4 * PAGE_SIZE - PAGE_SIZE / 2, 4));
    assert_eq!(f.grant_write(4 * P, 1).unwrap_err(), Errno::ENOSPC);
    assert_eq!(f.grant_write(P, 10).unwrap().0, 10, "held pages need none");
}

/// `chown` sets what it is given and keeps the rest; on a non-directory it
/// clears set-user-ID always and set-group-ID only with group execute
/// (set-group-ID without it is mandatory locking, kept), and never
/// touches a directory's bits.
#[test]
fn chown_sets_owner_and_clears_set_id_bits_as_linux() {
    both(|fs| {
        let r = fs.root();
        let f = create(fs, "/f");
        let d = fs.mkdir(&r, "/d", 0o755).unwrap();
        assert_eq!(f.owner(), (0, 0));
        f.set_owner(Some(5), None);
        assert_eq!(f.owner(), (5, 0));
        f.set_owner(None, Some(6));
        assert_eq!(f.owner(), (5, 6));
        f.set_owner(Some(7), Some(8));
        assert_eq!(f.owner(), (7, 8));
        for (before, after) in [
            (0o6755, 0o0755),
            (0o6745, 0o2745),
            (0o4700, 0o0700),
            (0o2710, 0o0710),
            (0o2700, 0o2700),
            (0o1777, 0o1777),
            (0o0644, 0o0644),
        ] {
            f.set_perm(before);
            let c = f.stat().ctime;
            f.set_owner(None, None);
            assert_eq!(f.stat().mode & 0o7777, after, "{before:o}");
            assert!(f.stat().ctime >= c);
            d.set_perm(before);
            d.set_owner(Some(1), None);
            assert_eq!(d.stat().mode & 0o7777, before, "dir {before:o}");
        }
    });
}
