//! A protocol client: the calls the kernel will make on behalf of user
//! threads, over any `Call` (the channel transport in tests), with typed
//! results.  It splits reads and writes into `MAX_PAYLOAD` pieces and
//! keeps directory cursors, as the kernel's side will.
//!
//! Owns `Call` and `Client`.  Invariants: a reply that is not one the
//! operation can have is `EIO` (a broken server never becomes a panic or
//! a wrong value).
//!
//! Must not: keep state besides the root handle (offsets and cursors are
//! the caller's, as they are the kernel's open files').

use abi::structs::{Stat, Statfs};
use abi::Errno;
use fsproto::{
    At, Cred, Cursor, Dirents, Handle, Message, MountKind, NodeInfo, Reply, Request, Time,
    MAX_DENTS, MAX_PAYLOAD,
};

use crate::channel::ClientEnd;

/// One synchronous call: a request message out, its reply back.
pub trait Call {
    fn call(&self, msg: Message) -> Result<Message, Errno>;
}

impl Call for ClientEnd {
    fn call(&self, msg: Message) -> Result<Message, Errno> {
        ClientEnd::call(self, msg)
    }
}

/// A directory entry as `list` returns it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub name: String,
    pub ino: u64,
    pub kind: u8,
}

/// A cursor the client keeps between `Getdents` calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedCursor {
    pub position: u64,
    pub state: u64,
    pub after: String,
}

/// A client of the file server.
pub struct Client<C: Call> {
    conn: C,
    root: Handle,
}

impl<C: Call> Client<C> {
    /// Attaches (a new client generation) and keeps the root handle.
    pub fn attach(conn: C) -> Result<Client<C>, Errno> {
        let mut c = Client {
            conn,
            root: Handle(0),
        };
        c.root = c.reattach()?;
        Ok(c)
    }

    /// Attaches again: every handle held so far goes stale.
    pub fn reattach(&mut self) -> Result<Handle, Errno> {
        let (h, _) = self.handle_reply(&Request::Attach)?;
        self.root = h;
        Ok(h)
    }

    pub fn root(&self) -> Handle {
        self.root
    }

    pub fn conn(&self) -> &C {
        &self.conn
    }

    /// Sends a raw message (malformed-message tests).
    pub fn raw(&self, msg: Message) -> Result<Message, Errno> {
        self.conn.call(msg)
    }

    /// Runs `req` and hands the decoded reply to `f`.
    fn with<T>(
        &self,
        req: &Request<'_>,
        f: impl FnOnce(Reply<'_>) -> Option<T>,
    ) -> Result<T, Errno> {
        let m = req.encode()?;
        let r = self.conn.call(m)?;
        match Reply::decode(req.op(), r.view()) {
            Ok(Ok(reply)) => f(reply).ok_or(Errno::EIO),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Errno::EIO),
        }
    }

    fn done(&self, req: &Request<'_>) -> Result<(), Errno> {
        self.with(req, |r| matches!(r, Reply::Done).then_some(()))
    }

    fn handle_reply(&self, req: &Request<'_>) -> Result<(Handle, NodeInfo), Errno> {
        self.with(req, |r| match r {
            Reply::Handle { handle, info } => Some((handle, info)),
            _ => None,
        })
    }

    pub fn open(
        &self,
        dir: Handle,
        path: &str,
        flags: u32,
        mode: u32,
    ) -> Result<(Handle, NodeInfo), Errno> {
        self.open_closing(dir, path, flags, mode, Handle(0))
    }

    /// `open` that first drops `close` (0: none) at the server, as the
    /// kernel sends a deferred close with its next open.
    pub fn open_closing(
        &self,
        dir: Handle,
        path: &str,
        flags: u32,
        mode: u32,
        close: Handle,
    ) -> Result<(Handle, NodeInfo), Errno> {
        self.handle_reply(&Request::Open {
            dir,
            path,
            flags,
            mode,
            close,
        })
    }

    pub fn close(&self, handle: Handle) -> Result<(), Errno> {
        self.done(&Request::Close { handle })
    }

    /// `pread` of up to `len` bytes, in `MAX_PAYLOAD` pieces; stops at the
    /// end of the file.  A zero-length read is one call (the handle and
    /// its access mode are checked).
    pub fn pread(&self, handle: Handle, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::with_capacity(len);
        // At least one call, so a zero-length read still checks the handle.
        loop {
            let want = (len - out.len()).min(MAX_PAYLOAD);
            let at = offset.saturating_add(out.len() as u64);
            let piece = self.with(
                &Request::Read {
                    handle,
                    offset: at,
                    len: want as u32,
                },
                |r| match r {
                    Reply::Data(d) if d.len() <= want => Some(d.to_vec()),
                    _ => None,
                },
            );
            match piece {
                Ok(p) => {
                    let short = p.len() < want;
                    out.extend_from_slice(&p);
                    if short || out.len() >= len {
                        break;
                    }
                }
                // An error after some bytes is a short read, as on Linux.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `pwrite` (or with `append`, a write at the end), in `MAX_PAYLOAD`
    /// pieces; returns the bytes written and the offset after them.
    pub fn pwrite(
        &self,
        handle: Handle,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(usize, u64), Errno> {
        let mut done = 0usize;
        let mut end = offset;
        if data.is_empty() {
            return self
                .write_piece(handle, offset, data, append)
                .map(|(_, e)| (0, e));
        }
        while done < data.len() {
            let piece = &data[done..(done + MAX_PAYLOAD).min(data.len())];
            match self.write_piece(handle, end, piece, append) {
                Ok((n, e)) => {
                    done += n;
                    end = e;
                    if n < piece.len() {
                        break;
                    }
                }
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok((done, end))
    }

    fn write_piece(
        &self,
        handle: Handle,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> Result<(usize, u64), Errno> {
        self.with(
            &Request::Write {
                handle,
                offset,
                append,
                data,
            },
            |r| match r {
                Reply::Written { count, end } if count as usize <= data.len() => {
                    Some((count as usize, end))
                }
                _ => None,
            },
        )
    }

    pub fn stat(&self, at: At<'_>) -> Result<Stat, Errno> {
        self.with(&Request::Stat { at }, |r| match r {
            Reply::Stat(s) => Some(s),
            _ => None,
        })
    }

    pub fn truncate(&self, at: At<'_>, size: u64) -> Result<(), Errno> {
        self.done(&Request::Truncate { at, size })
    }

    pub fn mkdir(&self, dir: Handle, path: &str, mode: u32) -> Result<(), Errno> {
        self.done(&Request::Mkdir { dir, path, mode })
    }

    pub fn mknod(&self, dir: Handle, path: &str, mode: u32, rdev: u64) -> Result<(), Errno> {
        self.done(&Request::Mknod {
            dir,
            path,
            mode,
            rdev,
        })
    }

    pub fn unlink(&self, dir: Handle, path: &str, flags: u32) -> Result<(), Errno> {
        self.done(&Request::Unlink { dir, path, flags })
    }

    pub fn rename(
        &self,
        old_dir: Handle,
        old: &str,
        new_dir: Handle,
        new: &str,
        flags: u32,
    ) -> Result<(), Errno> {
        self.done(&Request::Rename {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        })
    }

    pub fn link(
        &self,
        old_dir: Handle,
        old: &str,
        new_dir: Handle,
        new: &str,
        flags: u32,
    ) -> Result<(), Errno> {
        self.done(&Request::Link {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        })
    }

    pub fn symlink(&self, target: &str, dir: Handle, path: &str) -> Result<(), Errno> {
        self.done(&Request::Symlink { target, dir, path })
    }

    pub fn readlink(&self, at: At<'_>) -> Result<String, Errno> {
        self.with(&Request::Readlink { at }, |r| match r {
            Reply::Text(t) => Some(t.to_string()),
            _ => None,
        })
    }

    /// One `getdents64` call: the records and the cursor after them.
    pub fn getdents(
        &self,
        handle: Handle,
        cursor: &OwnedCursor,
        max: usize,
    ) -> Result<(Vec<u8>, OwnedCursor), Errno> {
        self.with(
            &Request::Getdents {
                handle,
                cursor: Cursor {
                    position: cursor.position,
                    state: cursor.state,
                    after: &cursor.after,
                },
                max: max.min(MAX_DENTS) as u32,
            },
            |r| match r {
                Reply::Dents { records, cursor } => Some((
                    records.to_vec(),
                    OwnedCursor {
                        position: cursor.position,
                        state: cursor.state,
                        after: cursor.after.to_string(),
                    },
                )),
                _ => None,
            },
        )
    }

    /// The whole listing of a directory handle ("." and ".." included),
    /// in calls of at most `max` bytes each; also returns the number of
    /// calls it took.
    pub fn list(&self, handle: Handle, max: usize) -> Result<(Vec<Entry>, usize), Errno> {
        let mut cursor = OwnedCursor::default();
        let mut out = Vec::new();
        let mut calls = 0;
        loop {
            let (records, next) = self.getdents(handle, &cursor, max)?;
            calls += 1;
            if records.is_empty() {
                return Ok((out, calls));
            }
            for d in Dirents::new(&records) {
                let d = d.map_err(|_| Errno::EIO)?;
                out.push(Entry {
                    name: d.name.to_string(),
                    ino: d.ino,
                    kind: d.kind,
                });
            }
            cursor = next;
        }
    }

    pub fn chmod(&self, at: At<'_>, mode: u32) -> Result<(), Errno> {
        self.done(&Request::Chmod { at, mode })
    }

    pub fn chown(
        &self,
        at: At<'_>,
        uid: Option<u32>,
        gid: Option<u32>,
        cred: Cred,
    ) -> Result<(), Errno> {
        self.done(&Request::Chown { at, uid, gid, cred })
    }

    pub fn utimens(&self, at: At<'_>, atime: Time, mtime: Time) -> Result<(), Errno> {
        self.done(&Request::Utimens { at, atime, mtime })
    }

    pub fn statfs(&self, at: At<'_>) -> Result<Statfs, Errno> {
        self.with(&Request::Statfs { at }, |r| match r {
            Reply::Statfs(s) => Some(s),
            _ => None,
        })
    }

    pub fn fsync(&self, handle: Handle, whole_fs: bool) -> Result<(), Errno> {
        self.done(&Request::Fsync { handle, whole_fs })
    }

    pub fn sync(&self) -> Result<(), Errno> {
        self.done(&Request::Sync)
    }

    pub fn access(&self, at: At<'_>, mode: u32, cred: Cred) -> Result<(), Errno> {
        self.done(&Request::Access { at, mode, cred })
    }

    pub fn path_of(&self, handle: Handle) -> Result<String, Errno> {
        self.with(&Request::PathOf { handle }, |r| match r {
            Reply::Text(t) => Some(t.to_string()),
            _ => None,
        })
    }

    pub fn mount(&self, dir: Handle, path: &str, kind: MountKind) -> Result<(), Errno> {
        self.done(&Request::Mount { dir, path, kind })
    }

    pub fn umount(&self, dir: Handle, path: &str) -> Result<(), Errno> {
        self.done(&Request::Umount { dir, path })
    }

    /// `ReadPages`: (readable bytes, 0, page addresses with 0 for holes)
    /// for at most `len` bytes at `offset`.
    pub fn read_grant(
        &self,
        handle: Handle,
        offset: u64,
        len: u64,
    ) -> Result<(u64, u64, Vec<u64>), Errno> {
        self.grant(&Request::ReadPages {
            handle,
            offset,
            len,
        })
    }

    /// `WritePages`: (bytes the client may copy, truncate epoch, page
    /// addresses) for at most `len` bytes at `offset`.
    pub fn write_grant(
        &self,
        handle: Handle,
        offset: u64,
        len: u64,
    ) -> Result<(u64, u64, Vec<u64>), Errno> {
        self.grant(&Request::WritePages {
            handle,
            offset,
            len,
        })
    }

    fn grant(&self, req: &Request<'_>) -> Result<(u64, u64, Vec<u64>), Errno> {
        self.with(req, |r| match r {
            Reply::Grant { len, epoch, pages } => {
                Some((len, epoch, fsproto::page_addrs(pages).collect()))
            }
            _ => None,
        })
    }

    /// `WriteDone`: (count, offset after the bytes).
    pub fn write_done(
        &self,
        handle: Handle,
        offset: u64,
        count: u64,
        epoch: u64,
    ) -> Result<(u64, u64), Errno> {
        self.with(
            &Request::WriteDone {
                handle,
                offset,
                count,
                epoch,
            },
            |r| match r {
                Reply::Written { count, end } => Some((count, end)),
                _ => None,
            },
        )
    }

    /// The server's addresses of pages `index ..` (at most `count`, fewer
    /// at the end of the file) of the regular file `handle`.
    pub fn map_pages(&self, handle: Handle, index: u64, count: u32) -> Result<Vec<u64>, Errno> {
        self.with(
            &Request::MapPages {
                handle,
                index,
                count,
            },
            |r| match r {
                Reply::Pages(p) => Some(fsproto::page_addrs(p).collect()),
                _ => None,
            },
        )
    }
}
