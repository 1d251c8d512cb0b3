//! Every operation of the protocol through the channel transport and the
//! server, with its error paths: what a delegated system call would see.

mod common;

use abi::fcntl::*;
use abi::Errno;
use common::Setup;
use fsproto::{At, Cred, Handle, Message, MountKind, Op, Time, MAX_PATH, MAX_PAYLOAD};

const ROOT: Cred = Cred { uid: 0, gid: 0 };

#[test]
fn open_create_read_write_close() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, info) = c.open(r, "/f", O_CREAT | O_RDWR, 0o640).unwrap();
    assert_eq!(info.mode, S_IFREG | 0o640);
    assert_eq!(c.pwrite(h, 0, b"hello world", false).unwrap(), (11, 11));
    assert_eq!(c.pread(h, 6, 100).unwrap(), b"world");
    assert_eq!(c.pread(h, 11, 100).unwrap(), b"");
    // O_APPEND: the server writes at the end and says where that was.
    assert_eq!(c.pwrite(h, 0, b"!", true).unwrap(), (1, 12));
    // O_EXCL on an existing name; O_TRUNC empties.
    assert_eq!(
        c.open(r, "f", O_CREAT | O_EXCL | O_WRONLY, 0o600),
        Err(Errno::EEXIST)
    );
    let (t, _) = c.open(r, "f", O_TRUNC | O_WRONLY, 0).unwrap();
    assert_eq!(c.stat(At::handle(h)).unwrap().st_size, 0);
    // Access modes: no read on O_WRONLY, no write on O_RDONLY, nothing on
    // O_PATH (EBADF, as for the fd).
    assert_eq!(c.pread(t, 0, 1), Err(Errno::EBADF));
    let (ro, _) = c.open(r, "f", O_RDONLY, 0).unwrap();
    assert_eq!(c.pwrite(ro, 0, b"x", false), Err(Errno::EBADF));
    let (p, _) = c.open(r, "f", O_PATH, 0).unwrap();
    assert_eq!(c.pread(p, 0, 1), Err(Errno::EBADF));
    assert!(c.stat(At::handle(p)).is_ok());
    // Missing names, files as directories, directories as files.
    assert_eq!(c.open(r, "nope", O_RDONLY, 0), Err(Errno::ENOENT));
    assert_eq!(c.open(r, "f/x", O_RDONLY, 0), Err(Errno::ENOTDIR));
    assert_eq!(
        c.open(r, "f", O_RDONLY | O_DIRECTORY, 0),
        Err(Errno::ENOTDIR)
    );
    c.mkdir(r, "d", 0o755).unwrap();
    assert_eq!(c.open(r, "d", O_RDWR, 0), Err(Errno::EISDIR));
    let (d, info) = c.open(r, "d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(info.mode & S_IFMT, S_IFDIR);
    assert_eq!(c.pread(d, 0, 1), Err(Errno::EISDIR));
    // Relative to a directory handle.
    let (inner, _) = c.open(d, "inner", O_CREAT | O_WRONLY, 0o600).unwrap();
    assert!(c.stat(At::path(r, "d/inner")).is_ok());
    // A symlink with O_NOFOLLOW; through it without.
    c.symlink("f", r, "l").unwrap();
    assert_eq!(c.open(r, "l", O_RDONLY | O_NOFOLLOW, 0), Err(Errno::ELOOP));
    assert!(c.open(r, "l", O_RDONLY, 0).is_ok());
    for h in [h, t, ro, p, d, inner] {
        c.close(h).unwrap();
    }
    assert_eq!(c.close(h), Err(Errno::EBADF));
    drop(c);
    s.finish();
}

#[test]
fn bad_flags_and_modes_are_einval() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    assert_eq!(c.open(r, "a", 3, 0), Err(Errno::EINVAL));
    assert_eq!(
        c.open(r, "a", O_CREAT | O_DIRECTORY, 0o755),
        Err(Errno::EINVAL)
    );
    assert_eq!(c.open(r, "a", O_CREAT | (1 << 29), 0), Err(Errno::EINVAL));
    assert_eq!(c.open(r, "a", O_CREAT, 0o170644), Err(Errno::EINVAL));
    assert_eq!(
        c.rename(r, "a", r, "b", RENAME_WHITEOUT),
        Err(Errno::EINVAL)
    );
    assert_eq!(c.unlink(r, "a", AT_SYMLINK_NOFOLLOW), Err(Errno::EINVAL));
    assert_eq!(c.chmod(At::path(r, "a"), 0o10000), Err(Errno::EINVAL));
    assert_eq!(
        c.stat(At {
            dir: r,
            path: "a",
            flags: AT_REMOVEDIR
        }),
        Err(Errno::EINVAL)
    );
    // The same checks hold for raw messages (a client that skips them).
    let m = Message {
        label: Op::Open as u64,
        words: [r.0, (O_RDWR | O_WRONLY) as u64, 0, 0],
        payload: b"a".to_vec(),
    };
    assert_eq!(c.raw(m).unwrap(), Message::error(Errno::EINVAL));
    let m = Message {
        label: 999,
        ..Message::default()
    };
    assert_eq!(c.raw(m).unwrap(), Message::error(Errno::ENOSYS));
    drop(c);
    s.finish();
}

#[test]
fn names_too_long() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let comp = "n".repeat(256);
    assert_eq!(c.mkdir(r, &comp, 0o755), Err(Errno::ENAMETOOLONG));
    assert_eq!(
        c.open(r, &comp, O_CREAT | O_RDWR, 0o644),
        Err(Errno::ENAMETOOLONG)
    );
    assert!(c.mkdir(r, &"n".repeat(255), 0o755).is_ok());
    // A path of PATH_MAX bytes is refused by the encoder and, sent raw,
    // by the server.
    let long = "a/".repeat(PATH_MAX / 2);
    assert_eq!(c.stat(At::path(r, &long)), Err(Errno::ENAMETOOLONG));
    let m = Message {
        label: Op::Stat as u64,
        words: [r.0, 0, 0, 0],
        payload: long.into_bytes(),
    };
    assert_eq!(c.raw(m).unwrap(), Message::error(Errno::ENAMETOOLONG));
    // The longest path that travels reaches the VFS (which walks it).
    let deep = "./".repeat(MAX_PATH / 2) + "x";
    assert_eq!(deep.len(), MAX_PATH);
    assert_eq!(c.stat(At::path(r, &deep)), Err(Errno::ENOENT));
    drop(c);
    s.finish();
}

#[test]
fn big_reads_and_writes_are_split() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "big", O_CREAT | O_RDWR, 0o644).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 4096) as u8).collect();
    assert_eq!(
        c.pwrite(h, 5, &data, false).unwrap(),
        (data.len(), 5 + data.len() as u64)
    );
    assert_eq!(
        c.stat(At::handle(h)).unwrap().st_size as usize,
        5 + data.len()
    );
    let back = c.pread(h, 5, data.len() + 1000).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "data differs");
    // A hole reads as zeros; an unaligned middle piece across pieces.
    assert_eq!(c.pread(h, 0, 5).unwrap(), vec![0; 5]);
    let mid = c
        .pread(h, 5 + MAX_PAYLOAD as u64 - 3, 2 * MAX_PAYLOAD + 7)
        .unwrap();
    assert_eq!(mid, &data[MAX_PAYLOAD - 3..3 * MAX_PAYLOAD + 4]);
    drop(c);
    s.finish();
}

#[test]
fn stat_lstat_fstat_and_truncate() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, info) = c.open(r, "f", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(h, 0, b"12345678", false).unwrap();
    c.symlink("f", r, "l").unwrap();
    let st = c.stat(At::path(r, "l")).unwrap();
    assert_eq!(
        (st.st_ino, st.st_size, st.st_mode),
        (info.ino, 8, S_IFREG | 0o600)
    );
    assert_eq!(st.st_dev, info.dev);
    let lst = c.stat(At::nofollow(r, "l")).unwrap();
    assert_eq!((lst.st_mode & S_IFMT, lst.st_size), (S_IFLNK, 1));
    assert_eq!(c.stat(At::handle(h)).unwrap(), st);
    // An empty path needs AT_EMPTY_PATH.
    assert_eq!(c.stat(At::path(h, "")), Err(Errno::ENOENT));
    // truncate by path (follows), ftruncate by handle.
    c.truncate(At::path(r, "l"), 3).unwrap();
    assert_eq!(c.pread(h, 0, 100).unwrap(), b"123");
    c.truncate(At::handle(h), 10).unwrap();
    assert_eq!(c.pread(h, 0, 100).unwrap(), b"123\0\0\0\0\0\0\0");
    let (ro, _) = c.open(r, "f", O_RDONLY, 0).unwrap();
    assert_eq!(c.truncate(At::handle(ro), 0), Err(Errno::EINVAL));
    c.mkdir(r, "d", 0o755).unwrap();
    assert_eq!(c.truncate(At::path(r, "d"), 0), Err(Errno::EISDIR));
    assert_eq!(c.truncate(At::path(r, "missing"), 0), Err(Errno::ENOENT));
    drop(c);
    s.finish();
}

#[test]
fn namespace_operations() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "a", 0o755).unwrap();
    c.mkdir(r, "b", 0o700).unwrap();
    assert_eq!(c.mkdir(r, "a", 0o755), Err(Errno::EEXIST));
    assert_eq!(c.mkdir(r, "x/y", 0o755), Err(Errno::ENOENT));
    let (f, _) = c.open(r, "a/f", O_CREAT | O_WRONLY, 0o644).unwrap();
    c.pwrite(f, 0, b"data", false).unwrap();
    // Rename across directories keeps the inode; the old name is gone.
    let ino = c.stat(At::path(r, "a/f")).unwrap().st_ino;
    c.rename(r, "a/f", r, "b/g", 0).unwrap();
    assert_eq!(c.stat(At::path(r, "b/g")).unwrap().st_ino, ino);
    assert_eq!(c.stat(At::path(r, "a/f")), Err(Errno::ENOENT));
    // ...relative to two different directory handles.
    let (ha, _) = c.open(r, "a", O_PATH | O_DIRECTORY, 0).unwrap();
    let (hb, _) = c.open(r, "b", O_PATH | O_DIRECTORY, 0).unwrap();
    c.rename(hb, "g", ha, "h", 0).unwrap();
    assert_eq!(c.stat(At::path(r, "a/h")).unwrap().st_ino, ino);
    // NOREPLACE and EXCHANGE.
    c.open(hb, "other", O_CREAT | O_WRONLY, 0o644).unwrap();
    assert_eq!(
        c.rename(ha, "h", hb, "other", RENAME_NOREPLACE),
        Err(Errno::EEXIST)
    );
    c.rename(ha, "h", hb, "other", RENAME_EXCHANGE).unwrap();
    assert_eq!(c.stat(At::path(r, "b/other")).unwrap().st_ino, ino);
    assert_eq!(
        c.rename(ha, "missing", hb, "other", RENAME_EXCHANGE),
        Err(Errno::ENOENT)
    );
    // A directory into its own subtree; a directory over a file.
    c.mkdir(r, "a/sub", 0o755).unwrap();
    assert_eq!(c.rename(r, "a", r, "a/sub/a", 0), Err(Errno::EINVAL));
    assert_eq!(c.rename(r, "a/sub", r, "b/other", 0), Err(Errno::ENOTDIR));
    assert_eq!(c.rename(r, "b/other", r, "a/sub", 0), Err(Errno::EISDIR));
    // Links.
    c.link(r, "b/other", r, "a/hard", 0).unwrap();
    assert_eq!(c.stat(At::path(r, "a/hard")).unwrap().st_nlink, 2);
    assert_eq!(c.link(r, "a", r, "a2", 0), Err(Errno::EPERM));
    assert_eq!(c.link(r, "b/other", r, "a/hard", 0), Err(Errno::EEXIST));
    // Symlinks, with and without AT_SYMLINK_FOLLOW for link.
    c.symlink("/b/other", r, "s").unwrap();
    assert_eq!(c.readlink(At::path(r, "s")).unwrap(), "/b/other");
    assert_eq!(c.readlink(At::path(r, "a")), Err(Errno::EINVAL));
    let (sh, _) = c.open(r, "s", O_PATH | O_NOFOLLOW, 0).unwrap();
    assert_eq!(c.readlink(At::handle(sh)).unwrap(), "/b/other");
    c.link(r, "s", r, "s2", 0).unwrap();
    assert_eq!(
        c.stat(At::nofollow(r, "s2")).unwrap().st_mode & S_IFMT,
        S_IFLNK
    );
    c.link(r, "s", r, "s3", AT_SYMLINK_FOLLOW).unwrap();
    assert_eq!(c.stat(At::nofollow(r, "s3")).unwrap().st_ino, ino);
    assert_eq!(c.symlink("", r, "e"), Err(Errno::ENOENT));
    // Unlink and rmdir.
    assert_eq!(c.unlink(r, "a", 0), Err(Errno::EISDIR));
    assert_eq!(c.unlink(r, "a", AT_REMOVEDIR), Err(Errno::ENOTEMPTY));
    assert_eq!(c.unlink(r, "s", AT_REMOVEDIR), Err(Errno::ENOTDIR));
    assert_eq!(c.unlink(r, "nope", 0), Err(Errno::ENOENT));
    c.unlink(r, "a/sub", AT_REMOVEDIR).unwrap();
    c.unlink(r, "s", 0).unwrap();
    assert_eq!(c.stat(At::nofollow(r, "s")), Err(Errno::ENOENT));
    // mknod: a FIFO, a device; a directory is EPERM.
    c.mknod(r, "fifo", S_IFIFO | 0o644, 0).unwrap();
    assert_eq!(
        c.stat(At::path(r, "fifo")).unwrap().st_mode,
        S_IFIFO | 0o644
    );
    c.mknod(r, "null", S_IFCHR | 0o666, 0x103).unwrap();
    assert_eq!(c.stat(At::path(r, "null")).unwrap().st_rdev, 0x103);
    assert_eq!(c.mknod(r, "dd", S_IFDIR | 0o755, 0), Err(Errno::EPERM));
    assert_eq!(c.mknod(r, "fifo", S_IFIFO | 0o644, 0), Err(Errno::EEXIST));
    // path_of (getcwd) of a directory handle, and of a removed one.
    let (deep, _) = c.open(r, "b", O_PATH | O_DIRECTORY, 0).unwrap();
    assert_eq!(c.path_of(deep).unwrap(), "/b");
    assert_eq!(c.path_of(r).unwrap(), "/");
    c.mkdir(r, "gone", 0o755).unwrap();
    let (g, _) = c.open(r, "gone", O_PATH | O_DIRECTORY, 0).unwrap();
    c.unlink(r, "gone", AT_REMOVEDIR).unwrap();
    assert_eq!(c.path_of(g), Err(Errno::ENOENT));
    // A file handle as the start of a relative path.
    let (fh, _) = c.open(r, "b/other", O_RDONLY, 0).unwrap();
    assert_eq!(c.stat(At::path(fh, "x")), Err(Errno::ENOTDIR));
    drop(c);
    s.finish();
}

#[test]
fn getdents_cursor_over_many_entries() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "d", 0o755).unwrap();
    let (d, _) = c.open(r, "d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    let mut want: Vec<String> = (0..1500)
        .map(|i| format!("entry-{i:05}-{}", "x".repeat(i % 40)))
        .collect();
    for n in &want {
        let (h, _) = c.open(d, n, O_CREAT | O_WRONLY, 0o644).unwrap();
        c.close(h).unwrap();
    }
    want.push(".".into());
    want.push("..".into());
    want.sort();
    // Small buffers: many calls, each resuming from the kept cursor.
    for max in [72, 200, 1024, fsproto::MAX_DENTS] {
        let (entries, calls) = c.list(d, max).unwrap();
        let mut names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        names.sort();
        assert_eq!(names, want, "listing with max {max}");
        assert!(calls > 1);
    }
    // d_off grows by one per entry; kinds are right.
    let (entries, _) = c.list(d, 4096).unwrap();
    let first = c.getdents(d, &Default::default(), 4096).unwrap();
    let offs: Vec<u64> = fsproto::Dirents::new(&first.0)
        .map(|e| e.unwrap().off)
        .collect();
    assert_eq!(offs, (1..=offs.len() as u64).collect::<Vec<_>>());
    assert!(entries
        .iter()
        .all(|e| e.kind == if e.name.starts_with('.') { 4 } else { 8 }));
    // A buffer too small for one entry; a forged cursor; not a directory.
    assert_eq!(
        c.getdents(d, &Default::default(), 8).unwrap_err(),
        Errno::EINVAL
    );
    let forged = fsclient_cursor(0, 99);
    assert_eq!(c.getdents(d, &forged, 4096).unwrap_err(), Errno::EINVAL);
    let (f, _) = c.open(d, "entry-00001-x", O_RDONLY, 0).unwrap();
    assert_eq!(
        c.getdents(f, &Default::default(), 4096).unwrap_err(),
        Errno::ENOTDIR
    );
    let (p, _) = c.open(r, "d", O_PATH, 0).unwrap();
    assert_eq!(
        c.getdents(p, &Default::default(), 4096).unwrap_err(),
        Errno::EBADF
    );
    // Entries removed between calls do not disturb the others.
    let (part, cur) = c.getdents(d, &Default::default(), 2048).unwrap();
    let seen: Vec<String> = fsproto::Dirents::new(&part)
        .map(|e| e.unwrap().name.to_string())
        .collect();
    for n in want.iter().filter(|n| !n.starts_with('.')).take(100) {
        if !seen.contains(n) {
            c.unlink(d, n, 0).unwrap();
        }
    }
    let mut rest = Vec::new();
    let mut cur = cur;
    loop {
        let (recs, next) = c.getdents(d, &cur, 2048).unwrap();
        if recs.is_empty() {
            break;
        }
        rest.extend(fsproto::Dirents::new(&recs).map(|e| e.unwrap().name.to_string()));
        cur = next;
    }
    let mut all: Vec<String> = seen.into_iter().chain(rest).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "an entry came twice");
    drop(c);
    s.finish();
}

fn fsclient_cursor(position: u64, stage: u64) -> fsd::client::OwnedCursor {
    fsd::client::OwnedCursor {
        position,
        state: stage,
        after: String::new(),
    }
}

#[test]
fn metadata_operations() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "f", O_CREAT | O_RDWR, 0o644).unwrap();
    c.chmod(At::path(r, "f"), 0o4711).unwrap();
    assert_eq!(c.stat(At::handle(h)).unwrap().st_mode, S_IFREG | 0o4711);
    c.chmod(At::handle(h), 0o600).unwrap();
    assert_eq!(c.stat(At::path(r, "f")).unwrap().st_mode, S_IFREG | 0o600);
    // chown: root sets anything; the owner only its own group; others
    // nothing.
    c.chown(At::path(r, "f"), Some(1000), Some(100), ROOT)
        .unwrap();
    let st = c.stat(At::path(r, "f")).unwrap();
    assert_eq!((st.st_uid, st.st_gid), (1000, 100));
    let owner = Cred { uid: 1000, gid: 50 };
    c.chown(At::handle(h), None, Some(50), owner).unwrap();
    assert_eq!(c.stat(At::handle(h)).unwrap().st_gid, 50);
    assert_eq!(
        c.chown(At::handle(h), None, Some(7), owner),
        Err(Errno::EPERM)
    );
    assert_eq!(
        c.chown(At::handle(h), Some(0), None, owner),
        Err(Errno::EPERM)
    );
    let other = Cred { uid: 1001, gid: 50 };
    assert_eq!(c.chown(At::handle(h), None, None, other), Err(Errno::EPERM));
    // access: bits by owner / group / other; root; F_OK of a missing name.
    c.chmod(At::handle(h), 0o640).unwrap();
    let f = At::path(r, "f");
    assert!(c.access(f, R_OK | W_OK, owner).is_ok());
    assert_eq!(c.access(f, X_OK, owner), Err(Errno::EACCES));
    assert!(c.access(f, R_OK, Cred { uid: 5, gid: 50 }).is_ok());
    assert_eq!(
        c.access(f, W_OK, Cred { uid: 5, gid: 50 }),
        Err(Errno::EACCES)
    );
    assert_eq!(
        c.access(f, R_OK, Cred { uid: 5, gid: 5 }),
        Err(Errno::EACCES)
    );
    assert!(c.access(f, R_OK | W_OK, ROOT).is_ok());
    assert_eq!(c.access(f, X_OK, ROOT), Err(Errno::EACCES));
    assert_eq!(
        c.access(At::path(r, "nope"), F_OK, ROOT),
        Err(Errno::ENOENT)
    );
    // utimensat: set, omit, now.
    let t = |sec| Time::At { sec, nsec: 5 };
    c.utimens(f, t(100), t(200)).unwrap();
    let st = c.stat(f).unwrap();
    assert_eq!((st.st_atime, st.st_atime_nsec, st.st_mtime), (100, 5, 200));
    c.utimens(f, Time::Omit, t(300)).unwrap();
    let st = c.stat(f).unwrap();
    assert_eq!((st.st_atime, st.st_mtime), (100, 300));
    c.utimens(At::handle(h), Time::Now, Time::Omit).unwrap();
    let st = c.stat(f).unwrap();
    assert!(st.st_atime > 1_000_000 && st.st_mtime == 300);
    // statfs of tmpfs; fsync, syncfs, sync (nothing to write on tmpfs).
    let sf = c.statfs(At::path(r, "f")).unwrap();
    assert_eq!(sf.f_type, TMPFS_MAGIC);
    assert_eq!(sf.f_namelen, 255);
    assert!(sf.f_bfree <= sf.f_blocks && sf.f_blocks > 0);
    c.fsync(h, false).unwrap();
    c.fsync(h, true).unwrap();
    c.sync().unwrap();
    drop(c);
    s.finish();
}

#[test]
fn stale_and_foreign_handles_are_ebadf() {
    let s = Setup::new(2);
    let mut a = s.client(0);
    let b = s.client(1);
    let r = a.root();
    let (h, _) = a.open(r, "f", O_CREAT | O_RDWR, 0o644).unwrap();
    // Another client cannot use it (nor close it), from any thread.
    assert_eq!(b.pread(h, 0, 1), Err(Errno::EBADF));
    assert_eq!(b.close(h), Err(Errno::EBADF));
    assert_eq!(b.stat(At::path(r, "f")), Err(Errno::EBADF));
    // The same client from the other server thread can.
    let a2 = fsd::client::Client::attach(s.conn.connect_as(a.conn().id(), 1));
    // (attaching again is a new generation: the old handles go stale)
    let a2 = a2.unwrap();
    assert_eq!(a.pread(h, 0, 1), Err(Errno::EBADF));
    assert_eq!(a.stat(At::handle(r)), Err(Errno::EBADF));
    let (h2, _) = a2.open(a2.root(), "f", O_RDWR, 0).unwrap();
    assert!(
        a.pwrite(h2, 0, b"x", false).is_ok(),
        "same client, other queue"
    );
    // Closed handles, reused slots, forged numbers.
    a.close(h2).unwrap();
    assert_eq!(a.pread(h2, 0, 1), Err(Errno::EBADF));
    let (h3, _) = a2.open(a2.root(), "f", O_RDWR, 0).unwrap();
    assert_eq!(h3.0 & 0xffff_ffff, h2.0 & 0xffff_ffff, "the slot is reused");
    assert_ne!(h3, h2);
    assert_eq!(a.pread(h2, 0, 1), Err(Errno::EBADF));
    for forged in [
        0,
        1,
        u64::MAX,
        h3.0 ^ (1 << 40),
        h3.0 + 1,
        h3.0 | (200 << 24),
    ] {
        assert_eq!(
            a.pread(Handle(forged), 0, 1),
            Err(Errno::EBADF),
            "{forged:#x}"
        );
    }
    // Re-attaching gives a fresh root and drops the rest.
    let live = s.server.live_handles();
    let root = a.reattach().unwrap();
    assert!(s.server.live_handles() < live);
    assert!(a.stat(At::handle(root)).is_ok());
    assert_eq!(a.pread(h3, 0, 1), Err(Errno::EBADF));
    drop((a, a2, b));
    s.finish();
}

#[test]
fn stat_by_path_sees_every_change_of_names() {
    // `Stat` by path answers from the server's path cache once it has
    // walked a path; every change of names must still show.
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "d", 0o755).unwrap();
    let (h, _) = c.open(r, "d/f", O_RDWR | O_CREAT, 0o644).unwrap();
    c.close(h).unwrap();
    let ino = |p: &str| c.stat(At::path(r, p)).map(|st| st.st_ino);
    let f1 = ino("d/f").unwrap();
    assert_eq!(ino("/d/f"), Ok(f1));
    assert_eq!(ino("d/f"), Ok(f1), "again, from the cache");
    // Rename away, then a new file under the old name.
    c.rename(r, "d/f", r, "d/g", 0).unwrap();
    assert_eq!(ino("d/f"), Err(Errno::ENOENT));
    assert_eq!(ino("d/g"), Ok(f1));
    let (h, _) = c.open(r, "d/f", O_RDWR | O_CREAT, 0o644).unwrap();
    c.close(h).unwrap();
    let f2 = ino("d/f").unwrap();
    assert_ne!(f2, f1);
    // Unlink; a directory renamed over; a symlink in the path.
    c.unlink(r, "d/g", 0).unwrap();
    assert_eq!(ino("d/g"), Err(Errno::ENOENT));
    c.mkdir(r, "e", 0o755).unwrap();
    c.rename(r, "d", r, "e2", 0).unwrap();
    assert_eq!(ino("d/f"), Err(Errno::ENOENT));
    assert_eq!(ino("e2/f"), Ok(f2));
    c.symlink("e2", r, "d").unwrap();
    assert_eq!(ino("d/f"), Ok(f2));
    c.unlink(r, "d", 0).unwrap();
    c.symlink("e", r, "d").unwrap();
    assert_eq!(ino("d/f"), Err(Errno::ENOENT));
    // Relative to a directory handle, and without following.
    let (dh, _) = c.open(r, "e2", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(ino_at(&c, dh, "f"), Ok(f2));
    c.unlink(dh, "f", 0).unwrap();
    assert_eq!(ino_at(&c, dh, "f"), Err(Errno::ENOENT));
    let nofollow = c
        .stat(At {
            dir: r,
            path: "d",
            flags: AT_SYMLINK_NOFOLLOW,
        })
        .unwrap();
    assert_eq!(nofollow.st_mode & S_IFMT, 0o120000);
    c.close(dh).unwrap();
    drop(c);
    s.finish();
}

#[test]
fn open_by_path_sees_every_change_of_names() {
    // A plain read-only `Open` walks through the same path cache as
    // `Stat` (their entries are shared): every change of names must show,
    // and the checks after the walk are `Fs::open`'s.
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "d", 0o755).unwrap();
    let (h, _) = c.open(r, "d/f", O_RDWR | O_CREAT, 0o644).unwrap();
    c.close(h).unwrap();
    let open = |p: &str, flags: u32| {
        c.open(r, p, flags, 0).map(|(h, info)| {
            c.close(h).unwrap();
            info
        })
    };
    let ino = |p: &str| open(p, O_RDONLY).map(|i| i.ino);
    let f1 = c.stat(At::path(r, "d/f")).unwrap().st_ino;
    assert_eq!(ino("d/f"), Ok(f1), "cached by Stat");
    assert_eq!(ino("d/f"), Ok(f1), "again");
    assert_eq!(open("d/f", O_RDONLY | O_DIRECTORY), Err(Errno::ENOTDIR));
    assert!(open("d", O_RDONLY | O_DIRECTORY).is_ok());
    // Rename away, then a new file under the old name.
    c.rename(r, "d/f", r, "d/g", 0).unwrap();
    assert_eq!(ino("d/f"), Err(Errno::ENOENT));
    assert_eq!(ino("d/g"), Ok(f1));
    let (h, _) = c.open(r, "d/f", O_RDWR | O_CREAT, 0o644).unwrap();
    c.close(h).unwrap();
    let f2 = ino("d/f").unwrap();
    assert_ne!(f2, f1);
    c.unlink(r, "d/g", 0).unwrap();
    assert_eq!(ino("d/g"), Err(Errno::ENOENT));
    // A symlink: followed, refused with O_NOFOLLOW, named with O_PATH.
    c.symlink("d/f", r, "l").unwrap();
    assert_eq!(ino("l"), Ok(f2));
    assert_eq!(open("l", O_RDONLY | O_NOFOLLOW), Err(Errno::ELOOP));
    let link = open("l", O_PATH | O_NOFOLLOW).unwrap();
    assert_eq!(link.mode & S_IFMT, 0o120000);
    assert_eq!(ino("l"), Ok(f2), "the follow flag is part of the key");
    c.unlink(r, "l", 0).unwrap();
    c.symlink("d", r, "l").unwrap();
    assert_eq!(
        open("l", O_RDONLY | O_DIRECTORY).map(|i| i.mode & S_IFMT),
        Ok(0o040000)
    );
    // A truncating or writing open still truncates and checks.
    let (h, _) = c.open(r, "d/f", O_WRONLY, 0).unwrap();
    assert_eq!(c.pwrite(h, 0, b"abc", false), Ok((3, 3)));
    c.close(h).unwrap();
    assert_eq!(c.stat(At::path(r, "d/f")).unwrap().st_size, 3);
    assert!(open("d/f", O_RDONLY).is_ok());
    let (h, _) = c.open(r, "d/f", O_WRONLY | O_TRUNC, 0).unwrap();
    c.close(h).unwrap();
    assert_eq!(c.stat(At::path(r, "d/f")).unwrap().st_size, 0);
    drop(c);
    s.finish();
}

fn ino_at(
    c: &fsd::client::Client<fsd::channel::ClientEnd>,
    dir: Handle,
    p: &str,
) -> Result<u64, Errno> {
    c.stat(At::path(dir, p)).map(|st| st.st_ino)
}

#[test]
fn a_close_rides_on_the_next_open() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h1, _) = c.open(r, "f", O_RDWR | O_CREAT, 0o644).unwrap();
    let live = s.server.live_handles();
    // The open succeeds and the carried handle is gone.
    let (h2, _) = c.open_closing(r, "f", O_RDONLY, 0, h1).unwrap();
    assert_eq!(s.server.live_handles(), live);
    assert_eq!(c.pread(h1, 0, 1), Err(Errno::EBADF));
    assert_eq!(c.pread(h2, 0, 1), Ok(Vec::new()));
    // A failed open still drops it; a stale or forged one is ignored.
    assert_eq!(
        c.open_closing(r, "missing", O_RDONLY, 0, h2),
        Err(Errno::ENOENT)
    );
    assert_eq!(s.server.live_handles(), live - 1);
    assert_eq!(c.pread(h2, 0, 1), Err(Errno::EBADF));
    let (h3, _) = c.open_closing(r, "f", O_RDONLY, 0, h2).unwrap();
    let (h4, _) = c
        .open_closing(r, "f", O_RDONLY, 0, Handle(u64::MAX))
        .unwrap();
    assert_eq!(s.server.live_handles(), live + 1);
    c.close(h3).unwrap();
    c.close(h4).unwrap();
    drop(c);
    s.finish();
}

#[test]
fn mount_and_umount_tmpfs() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "mnt", 0o755).unwrap();
    let root_dev = c.stat(At::path(r, "/")).unwrap().st_dev;
    c.mount(r, "mnt", MountKind::Tmpfs { max_pages: 64 })
        .unwrap();
    let st = c.stat(At::path(r, "mnt")).unwrap();
    assert_ne!(st.st_dev, root_dev);
    let (h, _) = c.open(r, "mnt/f", O_CREAT | O_RDWR, 0o644).unwrap();
    // The page bound of the mount: 64 pages, then ENOSPC (a short write).
    let big = vec![1u8; 65 * 4096];
    let (n, _) = c.pwrite(h, 0, &big, false).unwrap();
    assert_eq!(n, 64 * 4096);
    let sf = c.statfs(At::path(r, "mnt")).unwrap();
    assert_eq!((sf.f_blocks, sf.f_bfree), (64, 0));
    // Busy while a handle holds a file there; cross-device link.
    assert_eq!(c.umount(r, "mnt"), Err(Errno::EBUSY));
    assert_eq!(c.link(r, "mnt/f", r, "g", 0), Err(Errno::EXDEV));
    assert_eq!(
        c.mount(r, "mnt", MountKind::Tmpfs { max_pages: 1 }),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        c.mount(
            r,
            "mnt",
            MountKind::Ext2 {
                device: 3,
                read_only: true
            }
        ),
        Err(Errno::ENODEV)
    );
    c.close(h).unwrap();
    c.umount(r, "mnt").unwrap();
    assert_eq!(c.stat(At::path(r, "mnt/f")), Err(Errno::ENOENT));
    assert_eq!(c.umount(r, "mnt"), Err(Errno::EINVAL));
    drop(c);
    s.finish();
}

/// `mke2fs`, or `None` when e2fsprogs is missing (a failure under `CI`).
fn mke2fs() -> Option<std::path::PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = std::path::Path::new(dir).join("mke2fs");
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("mke2fs (e2fsprogs) is missing: install e2fsprogs (tools/setup.sh)");
    }
    eprintln!("skipping: mke2fs (e2fsprogs) is not installed");
    None
}

#[test]
fn mount_ext2_write_sync_and_read_back() {
    let Some(mk) = mke2fs() else { return };
    let img = std::env::temp_dir().join(format!("fsd-ext2-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&img);
    let out = std::process::Command::new(mk)
        .args(["-q", "-F", "-t", "ext2", "-b", "1024"])
        .arg(&img)
        .arg("4096k")
        .output()
        .expect("run mke2fs");
    assert!(out.status.success(), "mke2fs: {out:?}");
    let bytes = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_file(&img);
    let disk = fs::block::MemDisk::new(bytes, false);
    let s = Setup::with(common::new_fs(fs::LockMode::PerCpu), vec![disk.clone()], 1);
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "disk", 0o755).unwrap();
    c.mount(
        r,
        "disk",
        MountKind::Ext2 {
            device: 0,
            read_only: false,
        },
    )
    .unwrap();
    let sf = c.statfs(At::path(r, "disk")).unwrap();
    assert_eq!((sf.f_type, sf.f_bsize), (EXT2_SUPER_MAGIC, 1024));
    assert!(c.stat(At::path(r, "disk/lost+found")).is_ok());
    let (h, _) = c.open(r, "disk/hello", O_CREAT | O_RDWR, 0o644).unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    assert_eq!(c.pwrite(h, 0, &data, false).unwrap().0, data.len());
    c.fsync(h, false).unwrap();
    c.close(h).unwrap();
    c.sync().unwrap();
    // The same device cannot be mounted twice.
    c.mkdir(r, "again", 0o755).unwrap();
    assert_eq!(
        c.mount(
            r,
            "again",
            MountKind::Ext2 {
                device: 0,
                read_only: true
            }
        ),
        Err(Errno::EBUSY)
    );
    c.umount(r, "disk").unwrap();
    drop(c);
    s.finish();
    // A new server on the written image reads the file back.
    let s = Setup::with(
        common::new_fs(fs::LockMode::PerCpu),
        vec![fs::block::MemDisk::new(disk.contents(), false)],
        1,
    );
    let c = s.client(0);
    let r = c.root();
    c.mkdir(r, "d", 0o755).unwrap();
    c.mount(
        r,
        "d",
        MountKind::Ext2 {
            device: 0,
            read_only: true,
        },
    )
    .unwrap();
    let (h, _) = c.open(r, "d/hello", O_RDONLY, 0).unwrap();
    assert!(c.pread(h, 0, 60_000).unwrap() == data);
    assert_eq!(
        c.open(r, "d/new", O_CREAT | O_WRONLY, 0o644),
        Err(Errno::EROFS)
    );
    assert_eq!(
        c.access(At::path(r, "d/hello"), W_OK, ROOT),
        Err(Errno::EROFS)
    );
    c.close(h).unwrap();
    drop(c);
    s.finish();
}

/// Reads `n` bytes at `addr` in this process (the in-process server's
/// page-cache page that `map_pages` named).
fn peek(addr: u64, n: usize) -> Vec<u8> {
    // SAFETY: `addr` is a page-cache page of the in-process server, kept
    // by the file while the handle is open (the test holds it open), and
    // `n` is at most a page; only read while no write is in flight.
    unsafe { std::slice::from_raw_parts(addr as *const u8, n).to_vec() }
}

#[test]
fn map_pages_names_the_page_cache() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "m", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(h, 0, b"first", false).unwrap();
    c.pwrite(h, 4096, b"second", false).unwrap();
    // Two pages below the end, however many are asked for.
    let pages = c.map_pages(h, 0, 16).unwrap();
    assert_eq!(pages.len(), 2);
    assert!(pages.iter().all(|a| a % 4096 == 0));
    assert_eq!(peek(pages[0], 5), b"first");
    assert_eq!(peek(pages[1], 6), b"second");
    // The same pages again; writes land in them.
    assert_eq!(c.map_pages(h, 1, 1).unwrap(), vec![pages[1]]);
    c.pwrite(h, 4096, b"SECOND", false).unwrap();
    assert_eq!(peek(pages[1], 6), b"SECOND");
    // At or past the end: EFAULT (the kernel's SIGBUS).
    assert_eq!(c.map_pages(h, 2, 1), Err(Errno::EFAULT));
    // A hole below the end gets a zeroed page.
    c.truncate(At::handle(h), 5 * 4096).unwrap();
    let hole = c.map_pages(h, 3, 1).unwrap();
    assert_eq!(peek(hole[0], 4096), vec![0u8; 4096]);
    // A truncate retires mapped pages (their memory stays the file's):
    // growing again gives a new page, the old one is not reused.
    c.truncate(At::handle(h), 4096).unwrap();
    assert_eq!(c.map_pages(h, 1, 1), Err(Errno::EFAULT));
    c.truncate(At::handle(h), 2 * 4096).unwrap();
    let again = c.map_pages(h, 1, 1).unwrap();
    assert_ne!(again[0], pages[1]);
    assert_eq!(peek(again[0], 6), vec![0u8; 6]);
    // Access: O_PATH is EBADF, write-only EACCES, a directory ENODEV.
    let (p, _) = c.open(r, "m", O_PATH, 0).unwrap();
    assert_eq!(c.map_pages(p, 0, 1), Err(Errno::EBADF));
    let (wo, _) = c.open(r, "m", O_WRONLY, 0).unwrap();
    assert_eq!(c.map_pages(wo, 0, 1), Err(Errno::EACCES));
    c.mkdir(r, "d", 0o755).unwrap();
    let (d, _) = c.open(r, "d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(c.map_pages(d, 0, 1), Err(Errno::ENODEV));
    for x in [h, p, wo, d] {
        c.close(x).unwrap();
    }
    drop(c);
    s.finish();
}

/// Writes `data` at `addr` (a page named by a write grant of the
/// in-process server), as the kernel's one-copy write does.
fn poke(addr: u64, at: usize, data: &[u8]) {
    assert!(at + data.len() <= 4096);
    // SAFETY: `addr` is a page-cache page the server just granted for a
    // write (kept while the handle is open); the range stays in the page.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (addr as *mut u8).add(at), data.len()) }
}

/// A one-copy read as the kernel does it: grant, then copy from the pages.
fn grant_read_all(
    c: &fsd::client::Client<fsd::channel::ClientEnd>,
    h: Handle,
    offset: u64,
    len: u64,
) -> Vec<u8> {
    let (n, epoch, pages) = c.read_grant(h, offset, len).unwrap();
    assert_eq!(epoch, 0);
    assert_eq!(pages.len() as u64, fsproto::pages_spanned(offset, n));
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < offset + n {
        let page = pages[(pos / 4096 - offset / 4096) as usize];
        let in_page = (pos % 4096) as usize;
        let take = (4096 - in_page).min((offset + n - pos) as usize);
        if page == 0 {
            out.extend(std::iter::repeat_n(0u8, take));
        } else {
            out.extend_from_slice(&peek(page, in_page + take)[in_page..]);
        }
        pos += take as u64;
    }
    out
}

#[test]
fn grants_read_and_write_the_page_cache() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "g", O_CREAT | O_RDWR, 0o600).unwrap();
    // A write grant across a page boundary: pages, no size change yet.
    let (n, epoch, pages) = c.write_grant(h, 4000, 200).unwrap();
    assert_eq!((n, pages.len()), (200, 2));
    assert!(pages.iter().all(|&a| a != 0 && a % 4096 == 0));
    assert_eq!(c.stat(At::handle(h)).unwrap().st_size, 0);
    poke(pages[0], 4000, &[b'a'; 96]);
    poke(pages[1], 0, &[b'b'; 104]);
    assert_eq!(c.write_done(h, 4000, 200, epoch).unwrap(), (200, 4200));
    assert_eq!(c.stat(At::handle(h)).unwrap().st_size, 4200);
    // What messages read is what the grant wrote, and the other way round.
    let msg = c.pread(h, 0, 5000).unwrap();
    assert_eq!(msg.len(), 4200);
    assert!(msg[..4000].iter().all(|&b| b == 0));
    assert_eq!(&msg[4000..4096], &[b'a'; 96][..]);
    assert_eq!(&msg[4096..], &[b'b'; 104][..]);
    assert_eq!(grant_read_all(&c, h, 0, 1 << 20), msg);
    assert_eq!(grant_read_all(&c, h, 4090, 20), msg[4090..4110].to_vec());
    // At and past the end: nothing, no pages.
    assert_eq!(c.read_grant(h, 4200, 10).unwrap(), (0, 0, vec![]));
    assert_eq!(c.read_grant(h, 1 << 40, 10).unwrap(), (0, 0, vec![]));
    assert_eq!(c.read_grant(h, 0, 0).unwrap(), (0, 0, vec![]));
    // A hole reads as address 0; a write grant fills it with a zeroed page.
    c.truncate(At::handle(h), 5 * 4096).unwrap();
    let (n, _, holes) = c.read_grant(h, 0, 5 * 4096).unwrap();
    assert_eq!(n, 5 * 4096);
    assert_eq!(&holes[2..], &[0, 0, 0]);
    let (_, _, filled) = c.write_grant(h, 3 * 4096, 1).unwrap();
    assert_eq!(peek(filled[0], 4096), vec![0u8; 4096]);
    // An uncommitted grant changes nothing visible: still a hole's zeros,
    // size unchanged.
    assert_eq!(c.stat(At::handle(h)).unwrap().st_size, 5 * 4096);
    c.close(h).unwrap();
    drop(c);
    s.finish();
}

#[test]
fn grant_errors_are_errnos() {
    let s = Setup::new(1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "e", O_CREAT | O_RDWR, 0o600).unwrap();
    c.pwrite(h, 0, b"data", false).unwrap();
    // Access modes: no read grant on O_WRONLY, no write grant on O_RDONLY,
    // nothing on O_PATH; a directory is EISDIR (as `read`).
    let (wo, _) = c.open(r, "e", O_WRONLY, 0).unwrap();
    let (ro, _) = c.open(r, "e", O_RDONLY, 0).unwrap();
    let (p, _) = c.open(r, "e", O_PATH, 0).unwrap();
    assert_eq!(c.read_grant(wo, 0, 1), Err(Errno::EBADF));
    assert_eq!(c.write_grant(ro, 0, 1), Err(Errno::EBADF));
    assert_eq!(c.write_done(ro, 0, 1, 0), Err(Errno::EBADF));
    assert_eq!(c.read_grant(p, 0, 1), Err(Errno::EBADF));
    assert_eq!(c.write_grant(p, 0, 1), Err(Errno::EBADF));
    c.mkdir(r, "d", 0o755).unwrap();
    let (d, _) = c.open(r, "d", O_RDONLY | O_DIRECTORY, 0).unwrap();
    assert_eq!(c.read_grant(d, 0, 1), Err(Errno::EISDIR));
    // Closed, forged and foreign handles.
    c.close(wo).unwrap();
    assert_eq!(c.write_grant(wo, 0, 1), Err(Errno::EBADF));
    assert_eq!(c.read_grant(Handle(0xdead_beef), 0, 1), Err(Errno::EBADF));
    let other = s.client(0);
    assert_eq!(other.read_grant(h, 0, 1), Err(Errno::EBADF));
    assert_eq!(other.write_done(h, 0, 1, 0), Err(Errno::EBADF));
    // Lengths: over MAX_IO_BYTES, a write of nothing, a range past the
    // largest offset: EINVAL (the client never asks for these).
    let big = fsproto::MAX_IO_BYTES + 1;
    assert_eq!(c.read_grant(h, 0, big), Err(Errno::EINVAL));
    assert_eq!(c.write_grant(h, 0, big), Err(Errno::EINVAL));
    assert_eq!(c.write_grant(h, 0, 0), Err(Errno::EINVAL));
    assert_eq!(c.read_grant(h, i64::MAX as u64, 1), Err(Errno::EINVAL));
    assert_eq!(c.read_grant(h, u64::MAX, 1), Err(Errno::EINVAL));
    assert_eq!(c.write_done(h, u64::MAX - 1, 2, 0), Err(Errno::EINVAL));
    // Raw messages: unused words, payloads.
    let raw = |label: Op, words: [u64; 4], payload: Vec<u8>| {
        let m = c.raw(Message {
            label: label as u64,
            words,
            payload,
        });
        m.map(|m| m.label)
    };
    assert_eq!(
        raw(Op::ReadPages, [h.0, 0, 1, 5], vec![]),
        Ok(Errno::EINVAL.0 as u64)
    );
    assert_eq!(
        raw(Op::WritePages, [h.0, 0, 1, 0], vec![1]),
        Ok(Errno::EINVAL.0 as u64)
    );
    assert_eq!(
        raw(Op::WriteDone, [h.0, 0, 1, 0], vec![1, 2]),
        Ok(Errno::EINVAL.0 as u64)
    );
    // A commit no grant could have given: a range with no pages.
    let (_, epoch, _) = c.write_grant(h, 0, 1).unwrap();
    assert_eq!(c.write_done(h, 1 << 30, 10, epoch), Err(Errno::EINVAL));
    // A commit with a stale epoch (a truncate came between): EAGAIN, and
    // the size stays what the truncate made it.
    let (_, epoch, _) = c.write_grant(h, 0, 4).unwrap();
    c.truncate(At::handle(h), 0).unwrap();
    assert_eq!(c.write_done(h, 0, 4, epoch), Err(Errno::EAGAIN));
    assert_eq!(c.stat(At::handle(h)).unwrap().st_size, 0);
    for x in [h, ro, p, d] {
        c.close(x).unwrap();
    }
    drop(other);
    drop(c);
    s.finish();
}

/// A page named by a read grant stays the file system's while a handle
/// of the file is open, even if a truncate cuts it off (a copy may still
/// run): it keeps its bytes and is not reused by a later write; the last
/// close frees it.
#[test]
fn granted_pages_outlive_a_truncate_until_the_last_close() {
    let pages = fs::host::HeapPages::new();
    let fs = fs::Fs::new(
        fs::FsConfig {
            mode: fs::LockMode::PerCpu,
            max_pages: 1 << 20,
        },
        pages.clone(),
        std::sync::Arc::new(fs::host::SystemClock),
    );
    let s = Setup::with(fs, Vec::new(), 1);
    let c = s.client(0);
    let r = c.root();
    let (h, _) = c.open(r, "t", O_CREAT | O_RDWR, 0o600).unwrap();
    let (h2, _) = c.open(r, "t", O_RDONLY, 0).unwrap();
    c.pwrite(h, 0, &[7u8; 8192], false).unwrap();
    let base = pages.live();
    let (_, _, granted) = c.read_grant(h2, 0, 8192).unwrap();
    c.truncate(At::handle(h), 0).unwrap();
    // Retired, not freed: the bytes are still there.
    assert_eq!(pages.live(), base);
    assert_eq!(peek(granted[1], 4096), vec![7u8; 4096]);
    c.pwrite(h, 0, &[9u8; 8192], false).unwrap();
    let (_, _, now) = c.read_grant(h, 0, 8192).unwrap();
    assert!(now.iter().all(|a| !granted.contains(a)));
    assert_eq!(peek(granted[0], 4096), vec![7u8; 4096]);
    // One handle closed: still kept; the last close frees them.
    c.close(h2).unwrap();
    assert_eq!(pages.live(), base + 2);
    c.close(h).unwrap();
    assert_eq!(pages.live(), base);
    drop(c);
    s.finish();
}
