//! Mounts: crossing into a mounted superblock, `..` out of it, `st_dev`
//! per superblock, `EXDEV` for `link`/`rename` across mounts, `EBUSY` for
//! removing or renaming a mount point, `path_of` across mounts, and creates
//! charged to the superblock they happen in.  Both lock modes.

use std::sync::Arc;

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{Errno, Fs, FsConfig, LockMode};

/// A root with `/tmp` mounted as its own superblock; returns (root, tmp).
fn with_tmp(mode: LockMode) -> (Fs, Fs) {
    let root = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 16,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    );
    root.mkdir(&root.root(), "/tmp", 0o777).unwrap();
    let tmp = root.new_mount(1 << 16);
    root.mount(&root.root(), "/tmp", &tmp).unwrap();
    (root, tmp)
}

fn both(f: impl Fn(&Fs, &Fs)) {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let (root, tmp) = with_tmp(mode);
        f(&root, &tmp);
    }
}

#[test]
fn lookup_crosses_into_the_mount_and_dotdot_leaves_it() {
    both(|fs, tmp| {
        let r = fs.root();
        let t = fs.lookup(&r, "/tmp", true).unwrap();
        assert!(
            Arc::ptr_eq(&t, &tmp.root()),
            "/tmp resolves to the mounted root"
        );
        assert!(Arc::ptr_eq(
            &fs.lookup(&r, "/tmp/", true).unwrap(),
            &tmp.root()
        ));
        assert!(Arc::ptr_eq(&fs.lookup(&t, "..", true).unwrap(), &r));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/tmp/..", true).unwrap(), &r));
        assert!(Arc::ptr_eq(
            &fs.lookup(&r, "/tmp/../tmp/.", true).unwrap(),
            &t
        ));
        fs.mkdir(&r, "/tmp/d", 0o755).unwrap();
        let d = fs.lookup(&r, "/tmp/d", true).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&d, "../..", true).unwrap(), &r));
        // `..` at the namespace root stays there.
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/..", true).unwrap(), &r));
        // A relative path from the root crosses too.
        assert!(Arc::ptr_eq(&fs.lookup(&r, "tmp/d", true).unwrap(), &d));
    });
}

#[test]
fn st_dev_differs_between_mounts_and_creates_use_the_directory_superblock() {
    both(|fs, tmp| {
        let r = fs.root();
        assert_ne!(fs.dev(), tmp.dev());
        assert_eq!(r.stat().dev, fs.dev());
        assert_eq!(fs.lookup(&r, "/tmp", true).unwrap().stat().dev, tmp.dev());
        let f = fs.open(&r, "/tmp/f", O_CREAT | O_RDWR, 0o644).unwrap();
        assert_eq!(f.stat().dev, tmp.dev());
        f.write_at(0, b"hello", false).unwrap();
        assert_eq!(tmp.stats().used_pages, 1, "the page is charged to /tmp");
        assert_eq!(fs.stats().used_pages, 0);
        let g = fs.open(&r, "/g", O_CREAT | O_RDWR, 0o644).unwrap();
        assert_eq!(g.stat().dev, fs.dev());
        // The new file is found through the tmp superblock as well.
        assert!(Arc::ptr_eq(
            &tmp.lookup(&tmp.root(), "f", true).unwrap(),
            &f
        ));
    });
}

#[test]
fn link_and_rename_across_mounts_give_exdev() {
    both(|fs, _tmp| {
        let r = fs.root();
        fs.open(&r, "/tmp/x", O_CREAT | O_RDWR, 0o644).unwrap();
        fs.open(&r, "/y", O_CREAT | O_RDWR, 0o644).unwrap();
        assert_eq!(fs.rename(&r, "/tmp/x", &r, "/x"), Err(Errno::EXDEV));
        assert_eq!(fs.rename(&r, "/y", &r, "/tmp/y"), Err(Errno::EXDEV));
        assert_eq!(fs.link(&r, "/tmp/x", &r, "/x", false), Err(Errno::EXDEV));
        assert_eq!(fs.link(&r, "/y", &r, "/tmp/y", false), Err(Errno::EXDEV));
        // An existing target name is reported first, as on Linux.
        assert_eq!(fs.link(&r, "/tmp/x", &r, "/y", false), Err(Errno::EEXIST));
        // Nothing moved.
        assert!(fs.lookup(&r, "/tmp/x", true).is_ok());
        assert_eq!(fs.lookup(&r, "/x", true).err(), Some(Errno::ENOENT));
        assert_eq!(fs.lookup(&r, "/tmp/y", true).err(), Some(Errno::ENOENT));
        // Within the mount, link and rename work.
        fs.link(&r, "/tmp/x", &r, "/tmp/x2", false).unwrap();
        fs.rename(&r, "/tmp/x2", &r, "/tmp/x3").unwrap();
        assert_eq!(fs.lookup(&r, "/tmp/x", true).unwrap().nlink(), 2);
    });
}

#[test]
fn mount_points_are_busy() {
    both(|fs, _tmp| {
        let r = fs.root();
        assert_eq!(fs.rmdir(&r, "/tmp"), Err(Errno::EBUSY));
        assert_eq!(fs.rmdir(&r, "/tmp/"), Err(Errno::EBUSY));
        assert_eq!(fs.unlink(&r, "/tmp"), Err(Errno::EISDIR));
        assert_eq!(fs.rename(&r, "/tmp", &r, "/tmp2"), Err(Errno::EBUSY));
        fs.mkdir(&r, "/e", 0o755).unwrap();
        assert_eq!(fs.rename(&r, "/e", &r, "/tmp"), Err(Errno::EBUSY));
        // Still mounted and usable.
        fs.mkdir(&r, "/tmp/still", 0o755).unwrap();
        // No stacking, no second mount of a superblock, not on "/".
        let other = fs.new_mount(16);
        assert_eq!(fs.mount(&r, "/tmp", &other), Err(Errno::EBUSY));
        assert_eq!(fs.mount(&r, "/", &other), Err(Errno::EBUSY));
        fs.mount(&r, "/e", &other).unwrap();
        assert_eq!(fs.mount(&r, "/tmp/still", &other), Err(Errno::EBUSY));
        fs.open(&r, "/g", O_CREAT | O_RDWR, 0o644).unwrap();
        assert_eq!(fs.mount(&r, "/g", &fs.new_mount(16)), Err(Errno::ENOTDIR));
        assert_eq!(fs.mount(&r, "/nope", &fs.new_mount(16)), Err(Errno::ENOENT));
    });
}

#[test]
fn path_of_crosses_mounts() {
    both(|fs, tmp| {
        let r = fs.root();
        fs.mkdir(&r, "/tmp/a", 0o755).unwrap();
        let b = fs.mkdir(&r, "/tmp/a/b", 0o755).unwrap();
        assert_eq!(fs.path_of(&b).unwrap(), "/tmp/a/b");
        assert_eq!(fs.path_of(&tmp.root()).unwrap(), "/tmp");
        assert_eq!(fs.path_of(&r).unwrap(), "/");
    });
}

#[test]
fn symlinks_cross_mounts() {
    both(|fs, _tmp| {
        let r = fs.root();
        fs.open(&r, "/tmp/f", O_CREAT | O_RDWR, 0o644).unwrap();
        fs.symlink("/tmp/f", &r, "/l").unwrap();
        fs.symlink("../l", &r, "/tmp/back").unwrap();
        let f = fs.lookup(&r, "/tmp/f", true).unwrap();
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/l", true).unwrap(), &f));
        assert!(Arc::ptr_eq(&fs.lookup(&r, "/tmp/back", true).unwrap(), &f));
    });
}

#[test]
fn concurrent_lookups_and_creates_across_a_mount() {
    let (fs, tmp) = with_tmp(LockMode::PerCpu);
    let fs = Arc::new(fs);
    let tmp_dev = tmp.dev();
    std::thread::scope(|s| {
        for t in 0..8 {
            let fs = fs.clone();
            s.spawn(move || {
                let r = fs.root();
                let dir = format!("/tmp/t{t}");
                fs.mkdir(&r, &dir, 0o755).unwrap();
                for i in 0..200 {
                    let p = format!("{dir}/f{i}");
                    let f = fs.open(&r, &p, O_CREAT | O_EXCL | O_RDWR, 0o644).unwrap();
                    assert_eq!(f.stat().dev, tmp_dev);
                    let back = fs.lookup(&r, &format!("{dir}/../t{t}/f{i}"), true).unwrap();
                    assert!(Arc::ptr_eq(&f, &back));
                    assert!(Arc::ptr_eq(
                        &fs.lookup(&r, &format!("{dir}/../.."), true).unwrap(),
                        &r
                    ));
                    if i % 2 == 0 {
                        fs.unlink(&r, &p).unwrap();
                    }
                }
            });
        }
    });
    assert!(fs.stats().creates + tmp.stats().creates >= 8 * 200);
    for t in 0..8 {
        let d = fs.lookup(&fs.root(), &format!("/tmp/t{t}"), true).unwrap();
        let mut names = 0;
        d.readdir(&mut Default::default(), |n, _, _, _| {
            if n != "." && n != ".." {
                names += 1;
            }
            true
        })
        .unwrap();
        assert_eq!(names, 100);
    }
}
