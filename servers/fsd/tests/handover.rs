//! Server replacement on the host: a server's state image rebuilt by a
//! fresh server answers every later request as the old one would have
//! (same tree, data, inode numbers, handles; closed handles stay closed),
//! and malformed images are refused, never a panic.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use abi::fcntl::*;
use abi::Errno;
use common::new_fs;
use fs::LockMode;
use fsd::client::{Call, Client};
use fsd::{handover, Config, FileServer};
use fsproto::{At, Handle, Message};

/// A connection straight to whichever server is current (swapped by the
/// test in the middle of a client's life, as the kernel's endpoint is).
struct Direct(Rc<RefCell<Arc<FileServer>>>);

impl Call for Direct {
    fn call(&self, msg: Message) -> Result<Message, Errno> {
        Ok(self.0.borrow().handle(0, 7, msg.view()))
    }
}

fn replace(cur: &RefCell<Arc<FileServer>>) {
    let image = handover::export(&cur.borrow(), &handover::Sent::new()).unwrap();
    let new = handover::import(&image, new_fs(LockMode::PerCpu), Config::default()).unwrap();
    *cur.borrow_mut() = Arc::new(new);
}

#[test]
fn state_survives_replacement() {
    let first = Arc::new(FileServer::new(
        new_fs(LockMode::PerCpu),
        Vec::new(),
        Config::default(),
    ));
    let cur = Rc::new(RefCell::new(first));
    let c = Client::attach(Direct(cur.clone())).unwrap();
    let r = c.root();
    c.mkdir(r, "d", 0o750).unwrap();
    let (f, info) = c.open(r, "d/f", O_CREAT | O_RDWR, 0o640).unwrap();
    let data: Vec<u8> = (0..20000u32).map(|i| (i * 7) as u8).collect();
    c.pwrite(f, 0, &data, false).unwrap();
    c.link(r, "d/f", r, "hard", 0).unwrap();
    c.symlink("d/f", r, "sym").unwrap();
    c.mknod(r, "fifo", S_IFIFO | 0o600, 0).unwrap();
    let (gone, _) = c.open(r, "tmpfile", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(gone, 0, b"unlinked but open", false).unwrap();
    c.unlink(r, "tmpfile", 0).unwrap();
    let (closed, _) = c.open(r, "d/f", O_RDONLY, 0).unwrap();
    c.close(closed).unwrap();
    let (ro, _) = c.open(r, "d/f", O_RDONLY, 0).unwrap();
    let before = c.stat(At::path(r, "d/f")).unwrap();
    let dir_before = c.stat(At::path(r, "d")).unwrap();

    replace(&cur);

    // Handles of the old server work, with their access modes.
    assert_eq!(c.pread(f, 0, 20000).unwrap(), data);
    assert_eq!(c.pread(gone, 0, 100).unwrap(), b"unlinked but open");
    assert_eq!(c.pwrite(ro, 0, b"x", false), Err(Errno::EBADF));
    assert_eq!(c.close(closed), Err(Errno::EBADF));
    assert_eq!(c.pread(Handle(f.0 ^ 1 << 40), 0, 1), Err(Errno::EBADF));
    let after = c.stat(At::path(r, "d/f")).unwrap();
    assert_eq!(after.st_ino, info.ino);
    assert_eq!(after.st_nlink, 2);
    assert_eq!(
        (
            after.st_mode,
            after.st_size,
            after.st_mtime,
            after.st_mtime_nsec
        ),
        (
            before.st_mode,
            before.st_size,
            before.st_mtime,
            before.st_mtime_nsec
        )
    );
    let dir_after = c.stat(At::path(r, "d")).unwrap();
    assert_eq!(
        (dir_after.st_ino, dir_after.st_mode, dir_after.st_mtime),
        (dir_before.st_ino, dir_before.st_mode, dir_before.st_mtime)
    );
    assert_eq!(c.readlink(At::path(r, "sym")).unwrap(), "d/f");
    assert_eq!(
        c.stat(At::path(r, "fifo")).unwrap().st_mode,
        S_IFIFO | 0o600
    );
    assert_eq!(
        c.stat(At::path(r, "tmpfile")).map(|_| ()),
        Err(Errno::ENOENT)
    );
    // A hard link is one inode: a write through one name shows in the other.
    c.pwrite(f, 0, b"ZZ", false).unwrap();
    let (h, _) = c.open(r, "hard", O_RDONLY, 0).unwrap();
    assert_eq!(c.pread(h, 0, 2).unwrap(), b"ZZ");
    // New files get numbers no restored inode has.
    let (n, ninfo) = c.open(r, "new", O_CREAT | O_RDWR, 0o600).unwrap();
    assert!(ninfo.ino > info.ino);
    // Twice more, with the new state.
    replace(&cur);
    replace(&cur);
    assert_eq!(c.pread(h, 0, 3).unwrap(), [b'Z', b'Z', data[2]]);
    assert_eq!(c.stat(At::handle(n)).unwrap().st_ino, ninfo.ino);
    for h in [f, gone, ro, h, n] {
        c.close(h).unwrap();
    }
    assert_eq!(cur.borrow().live_handles(), 1); // the root
}

#[test]
fn malformed_images_are_refused() {
    let s = FileServer::new(new_fs(LockMode::PerCpu), Vec::new(), Config::default());
    s.fs().mkdir(&s.fs().root(), "a", 0o755).unwrap();
    let image = handover::export(&s, &handover::Sent::new()).unwrap();
    let mut v = image.clone();
    v[8] = 9; // version
    assert!(matches!(
        handover::import(&v, new_fs(LockMode::PerCpu), Config::default()),
        Err(e) if e == Errno::EPROTO
    ));
    for cut in 0..image.len() {
        assert!(
            handover::import(&image[..cut], new_fs(LockMode::PerCpu), Config::default()).is_err()
        );
    }
    // Random corruption: decodes or fails, never panics.
    let mut seed = 0x1234_5678u64;
    for _ in 0..300 {
        let mut v = image.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % v.len();
            v[i] = (seed >> 32) as u8;
        }
        let _ = handover::import(&v, new_fs(LockMode::PerCpu), Config::default());
    }
}

/// The pre-copy: files sent while the old server still serves, then
/// changed, removed, created, unlinked while open; the final image sends
/// only what changed and the rebuilt server has every file's current data.
#[test]
fn precopy_then_changes() {
    let first = Arc::new(FileServer::new(
        new_fs(LockMode::PerCpu),
        Vec::new(),
        Config::default(),
    ));
    let cur = Rc::new(RefCell::new(first));
    let c = Client::attach(Direct(cur.clone())).unwrap();
    let r = c.root();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut hs = Vec::new();
    for (i, name) in ["same", "changed", "removed", "opened", "big"]
        .iter()
        .enumerate()
    {
        let (h, _) = c.open(r, name, O_CREAT | O_RDWR, 0o644).unwrap();
        let data = if *name == "big" {
            big.clone()
        } else {
            vec![i as u8; 100 + i]
        };
        c.pwrite(h, 0, &data, false).unwrap();
        hs.push(h);
    }
    c.link(r, "same", r, "same2", 0).unwrap();
    let mut rx = handover::Receiver::new(new_fs(LockMode::PerCpu));
    let mut pieces = 0;
    let sent = handover::precopy(&cur.borrow(), |ino, v, off, total, b| {
        pieces += 1;
        rx.data(ino, v, off, total, b)
    })
    .unwrap();
    assert_eq!(sent.len(), 5);
    assert!(pieces >= 5 + 3); // "big" takes several pieces
                              // Changes after the pre-copy.
    c.pwrite(hs[1], 50, b"NEW", false).unwrap();
    c.unlink(r, "removed", 0).unwrap();
    c.close(hs[2]).unwrap();
    c.unlink(r, "opened", 0).unwrap();
    let (n, _) = c.open(r, "created", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(n, 0, b"fresh", false).unwrap();
    let image = handover::export(&cur.borrow(), &sent).unwrap();
    let full = handover::export(&cur.borrow(), &handover::Sent::new()).unwrap();
    assert!(
        image.len() + 200_000 < full.len(),
        "the image must not carry pre-copied data"
    );
    let new = rx.finish(&image, Config::default()).unwrap();
    *cur.borrow_mut() = Arc::new(new);
    assert_eq!(c.pread(hs[0], 0, 1000).unwrap(), vec![0u8; 100]);
    let mut want = vec![1u8; 101];
    want[50..53].copy_from_slice(b"NEW");
    assert_eq!(c.pread(hs[1], 0, 1000).unwrap(), want);
    assert_eq!(c.pread(hs[3], 0, 1000).unwrap(), vec![3u8; 103]);
    assert_eq!(c.pread(hs[4], 0, 300_000).unwrap(), big);
    assert_eq!(c.pread(n, 0, 100).unwrap(), b"fresh");
    assert_eq!(c.stat(At::path(r, "same2")).unwrap().st_nlink, 2);
    assert_eq!(
        c.stat(At::path(r, "removed")).map(|_| ()),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        c.stat(At::path(r, ".fsd-precopy")).map(|_| ()),
        Err(Errno::ENOENT)
    );
    let (d, _) = c.open(r, "/", O_RDONLY | O_DIRECTORY, 0).unwrap();
    let (names, _) = c.list(d, 8192).unwrap();
    let mut names: Vec<String> = names.into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(
        names,
        [".", "..", "big", "changed", "created", "same", "same2"]
    );
}

/// Every name below the root with what it names: (path, inode number,
/// mode, size, nlink, data or symlink target).
fn dump(s: &FileServer) -> Vec<(String, u64, u32, u64, u32, Vec<u8>)> {
    let fs = s.fs();
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), fs.root())];
    while let Some((path, dir)) = stack.pop() {
        let mut names = Vec::new();
        let mut cursor = fs::DirCursor::default();
        dir.readdir(&mut cursor, |name, _, _, _| {
            if name != "." && name != ".." {
                names.push(name.to_string());
            }
            true
        })
        .unwrap();
        for name in names {
            let child = fs.lookup(&dir, &name, false).unwrap();
            let st = child.stat();
            let p = format!("{path}/{name}");
            let data = match child.kind() {
                fs::FileType::Regular => {
                    let mut b = vec![0u8; child.size() as usize];
                    let n = child.read_at(0, &mut b).unwrap();
                    b.truncate(n);
                    b
                }
                fs::FileType::Symlink => child.symlink_target().unwrap_or("").as_bytes().to_vec(),
                _ => Vec::new(),
            };
            out.push((p.clone(), child.ino(), st.mode, st.size, st.nlink, data));
            if child.is_dir() {
                stack.push((p, child));
            }
        }
    }
    out.sort();
    out
}

/// The staged switch: the successor builds the base image while the old
/// server serves on; what changes afterwards (data, new and removed
/// files and directories, renames of files and whole directories across
/// directories, hard links, modes, a file unlinked while open, a
/// directory removed after its contents moved out) reaches it through a
/// round while serving and the delta image at the switch, which is much
/// smaller than the whole image, and the rebuilt tree equals the old one
/// name by name.
#[test]
fn staged_base_then_delta() {
    let first = Arc::new(FileServer::new(
        new_fs(LockMode::PerCpu),
        Vec::new(),
        Config::default(),
    ));
    let cur = Rc::new(RefCell::new(first));
    let c = Client::attach(Direct(cur.clone())).unwrap();
    let r = c.root();
    let mut hs = Vec::new();
    for d in ["a", "b", "a/x", "a/x/y", "keep"] {
        c.mkdir(r, d, 0o755).unwrap();
    }
    for (i, f) in [
        "a/f1",
        "a/x/f2",
        "a/x/y/f3",
        "b/f4",
        "keep/big",
        "keep/same",
    ]
    .iter()
    .enumerate()
    {
        let (h, _) = c.open(r, f, O_CREAT | O_RDWR, 0o644).unwrap();
        let n = if f.ends_with("big") { 300_000 } else { 50 + i };
        c.pwrite(h, 0, &vec![i as u8 + 1; n], false).unwrap();
        hs.push(h);
    }
    c.link(r, "keep/same", r, "b/same-link", 0).unwrap();
    c.symlink("a/f1", r, "sym").unwrap();
    let mut rx = handover::Receiver::new(new_fs(LockMode::PerCpu));
    let sent = handover::precopy(&cur.borrow(), |ino, v, off, total, b| {
        rx.data(ino, v, off, total, b)
    })
    .unwrap();
    // A change between the data pre-copy and the base.
    c.pwrite(hs[0], 0, b"between", false).unwrap();
    let (base, staged) = handover::export_base(&cur.borrow(), &sent).unwrap();
    rx.stage(&base).unwrap();
    assert!(!staged.is_empty());
    // Changes while the successor holds the base.
    c.pwrite(hs[1], 10, b"CHANGED", false).unwrap();
    c.rename(r, "a/x", r, "b/x-moved", 0).unwrap(); // a directory with a subtree
    c.rename(r, "b/f4", r, "keep/f4", 0).unwrap();
    c.mkdir(r, "new", 0o700).unwrap();
    c.mkdir(r, "new/deeper", 0o711).unwrap();
    let (n, _) = c.open(r, "new/deeper/n", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(n, 0, b"fresh", false).unwrap();
    let (empty, _) = c.open(r, "new/empty", O_CREAT | O_RDWR, 0o600).unwrap();
    c.link(r, "a/f1", r, "new/f1-link", 0).unwrap();
    c.unlink(r, "a/f1", 0).unwrap();
    c.chmod(At::path(r, "keep"), 0o700).unwrap();
    c.rename(r, "b/x-moved/y", r, "y-top", 0).unwrap();
    c.rename(r, "y-top/f3", r, "f3-top", 0).unwrap();
    c.unlink(r, "y-top", AT_REMOVEDIR).unwrap();
    c.unlink(r, "keep/big", 0).unwrap(); // open: hs[4] keeps it
    c.rename(r, "sym", r, "b/sym", 0).unwrap();
    // A round while serving (`export_round`), then more changes, some to
    // what the round made.
    let mut staged = staged;
    let round = handover::export_round(&cur.borrow(), &sent, &mut staged).unwrap();
    rx.stage(&round).unwrap();
    c.rename(r, "new/deeper", r, "b/deeper2", 0).unwrap();
    c.pwrite(n, 0, b"FRESH!", false).unwrap();
    c.unlink(r, "new/f1-link", 0).unwrap();
    let (late, _) = c
        .open(r, "b/deeper2/late", O_CREAT | O_RDWR, 0o640)
        .unwrap();
    c.pwrite(late, 0, b"late", false).unwrap();
    c.link(r, "keep/same", r, "new/same3", 0).unwrap();
    let want = dump(&cur.borrow());
    let delta = handover::export_delta(&cur.borrow(), &sent, &staged).unwrap();
    let full = handover::export(&cur.borrow(), &handover::Sent::new()).unwrap();
    assert!(
        delta.len() * 10 < full.len(),
        "delta {} bytes, full {}",
        delta.len(),
        full.len()
    );
    let new = rx.finish(&delta, Config::default()).unwrap();
    *cur.borrow_mut() = Arc::new(new);
    assert_eq!(dump(&cur.borrow()), want);
    assert_eq!(c.pread(hs[4], 0, 400_000).unwrap(), vec![5u8; 300_000]);
    assert_eq!(c.pread(n, 0, 100).unwrap(), b"FRESH!");
    assert_eq!(c.pread(late, 0, 100).unwrap(), b"late");
    assert_eq!(c.pread(empty, 0, 100).unwrap(), b"");
    let mut f1 = vec![1u8; 50];
    f1[..7].copy_from_slice(b"between");
    // a/f1's last name went: the open handle still reads it.
    assert_eq!(c.pread(hs[0], 0, 100).unwrap(), f1);
    assert_eq!(c.stat(At::path(r, "keep")).unwrap().st_mode & 0o7777, 0o700);
}
