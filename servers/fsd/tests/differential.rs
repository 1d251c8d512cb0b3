//! Differential property test: random sequences of file operations, run
//! once through the protocol (client, channel transport, server) and once
//! directly on an `fs::Fs`, must give the same results step by step:
//! the same values and the same errnos, stale handles included.

mod common;

use std::sync::Arc;

use abi::fcntl::*;
use abi::Errno;
use common::{new_fs, Setup};
use fs::vfs::RenameMode;
use fs::{DirCursor, FileType, Fs, Inode, LockMode};
use fsd::channel::ClientEnd;
use fsd::client::Client;
use fsproto::{At, Handle};
use proptest::prelude::*;

const PATHS: &[&str] = &[
    "x", "y", "a", "a/x", "a/y", "b", "b/x", "a/c", "a/c/x", "l", "a/l", "x/", "a/", "/b/x", ".",
];

#[derive(Clone, Debug)]
enum Step {
    Open(usize, u32),
    Close(usize),
    Write(usize, u64, usize, u8, bool),
    Read(usize, u64, usize),
    /// One-copy read and write through page grants (`ReadPages`,
    /// `WritePages` + `WriteDone`), copied as the kernel does; the direct
    /// side reads and writes as for `Read` and `Write`.
    GrantRead(usize, u64, usize),
    GrantWrite(usize, u64, usize, u8),
    Stat(usize, bool),
    Fstat(usize),
    Truncate(usize, u64),
    Ftruncate(usize, u64),
    Mkdir(usize),
    Mkfifo(usize),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize, u32),
    Link(usize, usize, bool),
    Symlink(usize, usize),
    Readlink(usize),
    List(usize),
    Chmod(usize, u32),
    PathOf(usize),
}

fn path() -> impl Strategy<Value = usize> {
    0..PATHS.len()
}

fn open_flags() -> impl Strategy<Value = u32> {
    (
        prop::sample::select(vec![O_RDONLY, O_WRONLY, O_RDWR]),
        prop::sample::select(vec![0, O_CREAT, O_CREAT | O_EXCL]),
        prop::sample::select(vec![0, O_TRUNC, O_DIRECTORY, O_NOFOLLOW, O_PATH]),
    )
        .prop_map(|(a, b, c)| a | b | c)
        // The protocol refuses a directory create before the VFS sees it
        // (Linux does too); the direct run would not.
        .prop_filter("O_CREAT|O_DIRECTORY", |f| {
            f & O_CREAT == 0 || f & O_DIRECTORY == 0
        })
}

fn step() -> impl Strategy<Value = Step> {
    let slot = 0usize..8;
    let off = prop_oneof![0u64..100, 4090u64..4100, 20_000u64..20_010];
    let len = prop_oneof![0usize..50, 4000usize..9000, 16_000usize..20_000];
    prop_oneof![
        4 => (path(), open_flags()).prop_map(|(p, f)| Step::Open(p, f)),
        2 => slot.clone().prop_map(Step::Close),
        4 => (slot.clone(), off.clone(), len.clone(), any::<u8>(), any::<bool>())
            .prop_map(|(s, o, l, b, a)| Step::Write(s, o, l, b, a)),
        3 => (slot.clone(), off.clone(), len.clone()).prop_map(|(s, o, l)| Step::Read(s, o, l)),
        2 => (slot.clone(), off.clone(), len.clone()).prop_map(|(s, o, l)| Step::GrantRead(s, o, l)),
        2 => (slot.clone(), off.clone(), len, any::<u8>())
            .prop_map(|(s, o, l, b)| Step::GrantWrite(s, o, l, b)),
        2 => (path(), any::<bool>()).prop_map(|(p, f)| Step::Stat(p, f)),
        1 => slot.clone().prop_map(Step::Fstat),
        1 => (path(), off.clone()).prop_map(|(p, o)| Step::Truncate(p, o)),
        1 => (slot.clone(), off).prop_map(|(s, o)| Step::Ftruncate(s, o)),
        2 => path().prop_map(Step::Mkdir),
        1 => path().prop_map(Step::Mkfifo),
        2 => path().prop_map(Step::Unlink),
        1 => path().prop_map(Step::Rmdir),
        2 => (path(), path(), prop::sample::select(vec![0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
            .prop_map(|(a, b, f)| Step::Rename(a, b, f)),
        1 => (path(), path(), any::<bool>()).prop_map(|(a, b, f)| Step::Link(a, b, f)),
        1 => (path(), path()).prop_map(|(t, p)| Step::Symlink(t, p)),
        1 => path().prop_map(Step::Readlink),
        1 => path().prop_map(Step::List),
        1 => (path(), 0u32..0o10000).prop_map(|(p, m)| Step::Chmod(p, m)),
        1 => slot.prop_map(Step::PathOf),
    ]
}

/// What a step gives, on either side.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Unit,
    Opened(u32),
    Data(Vec<u8>),
    Wrote(usize, u64),
    Stat { mode: u32, size: u64, nlink: u64 },
    Names(Vec<(String, u8)>),
    Text(String),
    NoSlot,
    Err(Errno),
}

fn res<T>(r: Result<T, Errno>, f: impl FnOnce(T) -> Out) -> Out {
    match r {
        Ok(v) => f(v),
        Err(e) => Out::Err(e),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i / 7) as u8)).collect()
}

/// An inode "opened" on the direct side: (inode, read, write, path only).
type Opened = (Arc<Inode>, bool, bool, bool);

/// The direct side: an `fs::Fs` and the inodes "opened" on it.
struct Direct {
    fs: Fs,
    root: Arc<Inode>,
    /// `None` once closed.
    slots: Vec<Option<Opened>>,
}

impl Direct {
    fn slot(&self, i: usize) -> Option<Result<&Opened, Errno>> {
        if self.slots.is_empty() {
            return None;
        }
        Some(
            self.slots[i % self.slots.len()]
                .as_ref()
                .ok_or(Errno::EBADF),
        )
    }

    fn stat_out(st: fs::Stat) -> Out {
        Out::Stat {
            mode: st.mode,
            size: st.size,
            nlink: st.nlink as u64,
        }
    }

    fn run(&mut self, s: &Step) -> Out {
        let r = &self.root.clone();
        let fs = &self.fs;
        match *s {
            Step::Open(p, flags) => match fs.open(r, PATHS[p], flags, 0o644) {
                Ok(i) => {
                    let mode = i.stat().mode;
                    let acc = flags & O_ACCMODE;
                    let po = flags & O_PATH != 0;
                    self.slots.push(Some((
                        i,
                        !po && acc != O_WRONLY,
                        !po && acc != O_RDONLY,
                        po,
                    )));
                    Out::Opened(mode)
                }
                Err(e) => Out::Err(e),
            },
            Step::Close(i) => {
                if self.slots.is_empty() {
                    return Out::NoSlot;
                }
                let n = self.slots.len();
                match self.slots[i % n].take() {
                    Some(_) => Out::Unit,
                    None => Out::Err(Errno::EBADF),
                }
            }
            Step::Write(i, off, len, seed, append) => match self.slot(i) {
                None => Out::NoSlot,
                Some(Err(e)) => Out::Err(e),
                Some(Ok((_, _, false, _))) => Out::Err(Errno::EBADF),
                Some(Ok((inode, ..))) => {
                    // Written in pieces as the client does, to compare
                    // short counts too.
                    let data = pattern(len, seed);
                    res(inode.write_at(off, &data, append), |(n, e)| {
                        Out::Wrote(n, e)
                    })
                }
            },
            Step::GrantWrite(i, off, len, seed) => self.run(&Step::Write(i, off, len, seed, false)),
            Step::GrantRead(i, off, len) => self.run(&Step::Read(i, off, len)),
            Step::Read(i, off, len) => match self.slot(i) {
                None => Out::NoSlot,
                Some(Err(e)) => Out::Err(e),
                Some(Ok((_, false, ..))) => Out::Err(Errno::EBADF),
                Some(Ok((inode, ..))) => {
                    let mut buf = vec![0u8; len];
                    res(inode.read_at(off, &mut buf), |n| {
                        buf.truncate(n);
                        Out::Data(buf)
                    })
                }
            },
            Step::Stat(p, follow) => res(fs.stat_path(r, PATHS[p], follow), Self::stat_out),
            Step::Fstat(i) => match self.slot(i) {
                None => Out::NoSlot,
                Some(Err(e)) => Out::Err(e),
                Some(Ok((inode, ..))) => Self::stat_out(inode.stat()),
            },
            Step::Truncate(p, size) => res(
                fs.lookup(r, PATHS[p], true).and_then(|i| match i.kind() {
                    FileType::Regular => i.truncate(size),
                    FileType::Directory => Err(Errno::EISDIR),
                    _ => Err(Errno::EINVAL),
                }),
                |_| Out::Unit,
            ),
            Step::Ftruncate(i, size) => match self.slot(i) {
                None => Out::NoSlot,
                Some(Err(e)) => Out::Err(e),
                Some(Ok((_, _, _, true))) => Out::Err(Errno::EBADF),
                Some(Ok((_, _, false, _))) => Out::Err(Errno::EINVAL),
                Some(Ok((inode, ..))) => res(
                    match inode.kind() {
                        FileType::Regular => inode.truncate(size),
                        FileType::Directory => Err(Errno::EISDIR),
                        _ => Err(Errno::EINVAL),
                    },
                    |_| Out::Unit,
                ),
            },
            Step::Mkdir(p) => res(fs.mkdir(r, PATHS[p], 0o755), |_| Out::Unit),
            Step::Mkfifo(p) => res(fs.mknod(r, PATHS[p], FileType::Fifo, 0o600, 0), |_| {
                Out::Unit
            }),
            Step::Unlink(p) => res(fs.unlink(r, PATHS[p]), |_| Out::Unit),
            Step::Rmdir(p) => res(fs.rmdir(r, PATHS[p]), |_| Out::Unit),
            Step::Rename(a, b, f) => {
                let mode = match f {
                    RENAME_NOREPLACE => RenameMode::NoReplace,
                    RENAME_EXCHANGE => RenameMode::Exchange,
                    _ => RenameMode::Replace,
                };
                res(fs.rename_with(r, PATHS[a], r, PATHS[b], mode), |_| {
                    Out::Unit
                })
            }
            Step::Link(a, b, follow) => {
                res(fs.link(r, PATHS[a], r, PATHS[b], follow), |_| Out::Unit)
            }
            Step::Symlink(t, p) => res(fs.symlink(PATHS[t], r, PATHS[p]), |_| Out::Unit),
            Step::Readlink(p) => res(fs.readlink(r, PATHS[p]), Out::Text),
            Step::List(p) => res(
                fs.lookup(r, PATHS[p], true).and_then(|d| {
                    if !d.is_dir() {
                        return Err(Errno::ENOTDIR);
                    }
                    let mut names = Vec::new();
                    d.readdir(&mut DirCursor::default(), |n, _, k, _| {
                        names.push((n.to_string(), k.dirent_type()));
                        true
                    })?;
                    names.sort();
                    Ok(names)
                }),
                Out::Names,
            ),
            Step::Chmod(p, m) => res(fs.lookup(r, PATHS[p], true).map(|i| i.set_perm(m)), |_| {
                Out::Unit
            }),
            Step::PathOf(i) => match self.slot(i) {
                None => Out::NoSlot,
                Some(Err(e)) => Out::Err(e),
                Some(Ok((inode, ..))) => res(fs.path_of(inode), Out::Text),
            },
        }
    }
}

/// The protocol side: a client of a server on its own `Fs`.
struct Remote<'s> {
    c: fsd::client::Client<fsd::channel::ClientEnd>,
    slots: Vec<(Handle, bool)>,
    _s: &'s Setup,
}

impl Remote<'_> {
    fn slot(&self, i: usize) -> Option<Handle> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.slots[i % self.slots.len()].0)
    }

    fn stat_out(st: abi::structs::Stat) -> Out {
        Out::Stat {
            mode: st.st_mode,
            size: st.st_size as u64,
            nlink: st.st_nlink,
        }
    }

    fn run(&mut self, s: &Step) -> Out {
        let c = &self.c;
        let r = c.root();
        match *s {
            Step::Open(p, flags) => match c.open(r, PATHS[p], flags, 0o644) {
                Ok((h, info)) => {
                    self.slots.push((h, true));
                    Out::Opened(info.mode)
                }
                Err(e) => Out::Err(e),
            },
            Step::Close(i) => {
                if self.slots.is_empty() {
                    return Out::NoSlot;
                }
                let n = self.slots.len();
                let (h, live) = &mut self.slots[i % n];
                let out = res(c.close(*h), |_| Out::Unit);
                // A stale handle must say so.
                assert_eq!(out == Out::Unit, *live, "close of {h:?}");
                *live = false;
                out
            }
            Step::Write(i, off, len, seed, append) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(c.pwrite(h, off, &pattern(len, seed), append), |(n, e)| {
                    Out::Wrote(n, e)
                }),
            },
            Step::Read(i, off, len) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(c.pread(h, off, len), Out::Data),
            },
            Step::GrantRead(i, off, len) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(grant_read(c, h, off, len), Out::Data),
            },
            Step::GrantWrite(i, off, len, seed) => match self.slot(i) {
                None => Out::NoSlot,
                // The kernel sends no empty grant: an empty write is a
                // message.
                Some(h) if len == 0 => res(c.pwrite(h, off, &[], false), |(n, e)| Out::Wrote(n, e)),
                Some(h) => res(grant_write(c, h, off, &pattern(len, seed)), |(n, e)| {
                    Out::Wrote(n, e)
                }),
            },
            Step::Stat(p, follow) => {
                let at = if follow {
                    At::path(r, PATHS[p])
                } else {
                    At::nofollow(r, PATHS[p])
                };
                res(c.stat(at), Self::stat_out)
            }
            Step::Fstat(i) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(c.stat(At::handle(h)), Self::stat_out),
            },
            Step::Truncate(p, size) => res(c.truncate(At::path(r, PATHS[p]), size), |_| Out::Unit),
            Step::Ftruncate(i, size) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(c.truncate(At::handle(h), size), |_| Out::Unit),
            },
            Step::Mkdir(p) => res(c.mkdir(r, PATHS[p], 0o755), |_| Out::Unit),
            Step::Mkfifo(p) => res(c.mknod(r, PATHS[p], S_IFIFO | 0o600, 0), |_| Out::Unit),
            Step::Unlink(p) => res(c.unlink(r, PATHS[p], 0), |_| Out::Unit),
            Step::Rmdir(p) => res(c.unlink(r, PATHS[p], AT_REMOVEDIR), |_| Out::Unit),
            Step::Rename(a, b, f) => res(c.rename(r, PATHS[a], r, PATHS[b], f), |_| Out::Unit),
            Step::Link(a, b, follow) => res(
                c.link(
                    r,
                    PATHS[a],
                    r,
                    PATHS[b],
                    if follow { AT_SYMLINK_FOLLOW } else { 0 },
                ),
                |_| Out::Unit,
            ),
            Step::Symlink(t, p) => res(c.symlink(PATHS[t], r, PATHS[p]), |_| Out::Unit),
            Step::Readlink(p) => res(c.readlink(At::path(r, PATHS[p])), Out::Text),
            Step::List(p) => {
                let listed = c
                    .open(r, PATHS[p], O_RDONLY | O_DIRECTORY, 0)
                    .and_then(|(h, _)| {
                        // Small calls: the cursor crosses many of them.
                        let l = c.list(h, 80);
                        c.close(h)?;
                        l
                    });
                res(listed, |(entries, _)| {
                    let mut v: Vec<_> = entries.into_iter().map(|e| (e.name, e.kind)).collect();
                    v.sort();
                    Out::Names(v)
                })
            }
            Step::Chmod(p, m) => res(c.chmod(At::path(r, PATHS[p]), m), |_| Out::Unit),
            Step::PathOf(i) => match self.slot(i) {
                None => Out::NoSlot,
                Some(h) => res(c.path_of(h), Out::Text),
            },
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn protocol_and_direct_agree(steps in prop::collection::vec(step(), 1..60)) {
        let fs = new_fs(LockMode::PerCpu);
        let mut d = Direct { root: fs.root(), fs, slots: Vec::new() };
        let setup = Setup::new(1);
        let mut remote = Remote { c: setup.client(0), slots: Vec::new(), _s: &setup };
        for (i, s) in steps.iter().enumerate() {
            let want = d.run(s);
            let got = remote.run(s);
            // A directory opened with O_DIRECTORY (`List`) is an extra
            // step on the remote side only: it must fail the same way.
            if let (Step::List(_), Out::Err(Errno::ENOTDIR), Out::Err(e)) = (s, &got, &want) {
                prop_assert_eq!(*e, Errno::ENOTDIR);
                continue;
            }
            prop_assert_eq!(&got, &want, "step {} {:?}", i, s);
        }
        drop(remote);
        setup.finish();
    }
}

/// Bytes `at .. at + n` of the file as the granted pages `pages` (0: a
/// hole) hold them, or `data` copied into them: the kernel's one copy.
fn copy_pages(pages: &[u64], at: u64, n: usize, mut data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut done = 0usize;
    while done < n {
        let pos = at + done as u64;
        let page = pages[(pos / 4096 - at / 4096) as usize];
        let in_page = (pos % 4096) as usize;
        let take = (4096 - in_page).min(n - done);
        match data.as_mut() {
            Some(d) => {
                // SAFETY: a page the in-process server granted for this
                // write (never 0), kept while the handle is open; the
                // range stays inside it.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        d[done..].as_ptr(),
                        (page as *mut u8).add(in_page),
                        take,
                    )
                }
            }
            None if page == 0 => out.extend(std::iter::repeat_n(0u8, take)),
            // SAFETY: a page the server granted for this read, kept while
            // the handle is open; the range stays inside it.
            None => out.extend_from_slice(unsafe {
                std::slice::from_raw_parts((page as *const u8).add(in_page), take)
            }),
        }
        done += take;
    }
    out
}

fn grant_read(c: &Client<ClientEnd>, h: Handle, off: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let (n, _, pages) = c.read_grant(h, off, len as u64)?;
    assert!(n <= len as u64);
    assert_eq!(pages.len() as u64, fsproto::pages_spanned(off, n));
    Ok(copy_pages(&pages, off, n as usize, None))
}

fn grant_write(
    c: &Client<ClientEnd>,
    h: Handle,
    off: u64,
    data: &[u8],
) -> Result<(usize, u64), Errno> {
    let (n, epoch, pages) = c.write_grant(h, off, data.len() as u64)?;
    assert!(n <= data.len() as u64);
    copy_pages(&pages, off, n as usize, Some(data));
    let (count, end) = c.write_done(h, off, n, epoch)?;
    Ok((count as usize, end))
}
