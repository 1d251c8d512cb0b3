//! The file-service protocol: the messages the kernel (the client, acting
//! for a user thread) and the user-mode file server (`servers/fsd`)
//! exchange when the kernel delegates file-system calls (`structure=servers`).
//!
//! Owns: the message shape ([`Message`], [`MsgRef`]: a label, four `u64`
//! words and a payload of at most [`MAX_PAYLOAD`] bytes, the shape of one
//! synchronous IPC call or reply), the operations ([`Op`], [`Request`]),
//! the replies ([`Reply`]), their encoding and their checked decoding, and
//! the byte layouts that travel in payloads (`struct stat`, `struct
//! statfs`, `linux_dirent64`, directory cursors).  docs/SERVERS.md is the
//! description of the protocol for readers; this file is the definition.
//!
//! Invariants: every decoder takes any label, words and bytes and returns
//! either a well-formed value or an errno (`EINVAL` for a malformed
//! message, `ENOSYS` for an unknown operation, `ENAMETOOLONG` for a path
//! of `PATH_MAX` bytes or more); none panics.  Unused words must be zero
//! and unknown flag bits are refused, so later versions can give them a
//! meaning.  `decode(encode(x)) == x` for every value the encoder accepts.
//! Multi-byte values in payloads are little-endian (x86_64's order, so a
//! `struct stat` payload is the bytes a user program expects).
//!
//! Must not: allocate in decoders (requests and replies borrow the
//! message's payload), use `unsafe`, or know how either side is built
//! (the kernel's fd table, the server's handle table).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use abi::fcntl::*;
use abi::structs::{Stat, Statfs};
use abi::Errno;

mod layout;
pub use layout::{
    decode_stat, decode_statfs, encode_stat, encode_statfs, put_dirent, Dirent, Dirents,
    DIRENT_HEADER, STATFS_SIZE, STAT_SIZE,
};

/// Largest payload of a request or reply, in bytes.  Two paths of
/// `PATH_MAX - 1` bytes (rename, link, symlink) fit; reads and writes move
/// at most this much per message (the client splits larger ones).
pub const MAX_PAYLOAD: usize = 8192;

/// Longest path a request carries (`PATH_MAX` counts the C string's NUL).
pub const MAX_PATH: usize = PATH_MAX - 1;

/// Largest `max` of a `Getdents` request: the reply holds the entries and
/// the cursor's resume name (at most `NAME_MAX` bytes).
pub const MAX_DENTS: usize = MAX_PAYLOAD - 256;

/// Reply label of success; any other reply label is an errno (1..=4095).
pub const LABEL_OK: u64 = 0;

/// Largest errno a reply label may carry (Linux's `MAX_ERRNO`).
pub const MAX_ERRNO: u64 = 4095;

/// Most pages one `MapPages` request asks for (and its reply names): the
/// fault-around window of the kernel's file mappings (64 KiB).
pub const MAX_MAP_PAGES: usize = 16;

/// Page size of `MapPages` addresses.
pub const PAGE_SIZE: u64 = 4096;

/// Largest `len` of a `ReadPages` or `WritePages` request (1 MiB): one
/// call serves a read or write of up to this many bytes (one copy, see
/// `Request::ReadPages`).
pub const MAX_IO_BYTES: u64 = 1 << 20;

/// Most page addresses a `ReadPages`/`WritePages` reply names: the pages
/// `MAX_IO_BYTES` at any offset can touch.
pub const MAX_IO_PAGES: usize = (MAX_IO_BYTES / PAGE_SIZE) as usize + 1;

/// Pages the byte range `offset .. offset + len` touches (0 for `len`
/// 0): how many addresses a grant reply for it names.
pub fn pages_spanned(offset: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let end = offset.saturating_add(len);
    end.div_ceil(PAGE_SIZE) - offset / PAGE_SIZE
}

/// One message as it travels: what the IPC copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub label: u64,
    pub words: [u64; 4],
    pub payload: Vec<u8>,
}

/// A received message, borrowed (the decoders' input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgRef<'a> {
    pub label: u64,
    pub words: [u64; 4],
    pub payload: &'a [u8],
}

impl Message {
    pub fn view(&self) -> MsgRef<'_> {
        MsgRef {
            label: self.label,
            words: self.words,
            payload: &self.payload,
        }
    }

    /// An error reply.
    pub fn error(e: Errno) -> Message {
        let code = e.0 as u64;
        // Codes outside 1..=MAX_ERRNO cannot travel; EIO stands in.
        let label = if (1..=MAX_ERRNO).contains(&code) {
            code
        } else {
            Errno::EIO.0 as u64
        };
        Message {
            label,
            ..Message::default()
        }
    }
}

/// A handle the server gave out for an inode it holds (an open file, a
/// directory a `*at` call starts from, the client's root or working
/// directory).  Opaque to the client; the server checks every one it is
/// given (`EBADF` if closed, never given, or given to another client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u64);

/// The operations, as request labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    Attach = 1,
    Open = 2,
    Close = 3,
    Read = 4,
    Write = 5,
    Stat = 6,
    Truncate = 7,
    Mkdir = 8,
    Mknod = 9,
    Unlink = 10,
    Rename = 11,
    Link = 12,
    Symlink = 13,
    Readlink = 14,
    Getdents = 15,
    Chmod = 16,
    Chown = 17,
    Utimens = 18,
    Statfs = 19,
    Fsync = 20,
    Sync = 21,
    Access = 22,
    PathOf = 23,
    Mount = 24,
    Umount = 25,
    MapPages = 26,
    ReadPages = 27,
    WritePages = 28,
    WriteDone = 29,
}

impl Op {
    /// Every operation, in label order.
    pub const ALL: [Op; 29] = [
        Op::Attach,
        Op::Open,
        Op::Close,
        Op::Read,
        Op::Write,
        Op::Stat,
        Op::Truncate,
        Op::Mkdir,
        Op::Mknod,
        Op::Unlink,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Readlink,
        Op::Getdents,
        Op::Chmod,
        Op::Chown,
        Op::Utimens,
        Op::Statfs,
        Op::Fsync,
        Op::Sync,
        Op::Access,
        Op::PathOf,
        Op::Mount,
        Op::Umount,
        Op::MapPages,
        Op::ReadPages,
        Op::WritePages,
        Op::WriteDone,
    ];

    /// The operation a label names; `ENOSYS` for an unknown one.
    pub fn from_label(label: u64) -> Result<Op, Errno> {
        match label {
            1..=29 => Ok(Op::ALL[label as usize - 1]),
            _ => Err(Errno::ENOSYS),
        }
    }
}

/// What a path-taking call names: `path` resolved from directory `dir`
/// (absolute paths from the server's root), or with `AT_EMPTY_PATH` and an
/// empty path the inode of `dir` itself (any kind: `fstat`, `fchmod`,
/// `ftruncate` of an open file).  With `AT_SYMLINK_NOFOLLOW` a final
/// symlink is not followed.  An empty path without `AT_EMPTY_PATH` is
/// `ENOENT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At<'a> {
    pub dir: Handle,
    pub path: &'a str,
    pub flags: u32,
}

impl<'a> At<'a> {
    /// The handle itself (`AT_EMPTY_PATH` with an empty path).
    pub fn handle(h: Handle) -> At<'a> {
        At {
            dir: h,
            path: "",
            flags: AT_EMPTY_PATH,
        }
    }

    /// `path` from `dir`, following a final symlink.
    pub fn path(dir: Handle, path: &'a str) -> At<'a> {
        At {
            dir,
            path,
            flags: 0,
        }
    }

    /// `path` from `dir`, not following a final symlink.
    pub fn nofollow(dir: Handle, path: &'a str) -> At<'a> {
        At {
            dir,
            path,
            flags: AT_SYMLINK_NOFOLLOW,
        }
    }

    /// Whether a final symlink is followed.
    pub fn follow(&self) -> bool {
        self.flags & AT_SYMLINK_NOFOLLOW == 0
    }
}

/// `AT_*` flags an `At` may carry.
pub const AT_FLAGS: u32 = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH;

/// Open flags a request may carry: every flag Linux's `open` knows of
/// here.  The server acts on the access mode, `O_CREAT`, `O_EXCL`,
/// `O_TRUNC`, `O_DIRECTORY`, `O_NOFOLLOW` and `O_PATH`; the others are the
/// open file's status (the kernel keeps them) and are accepted unread.
pub const OPEN_FLAGS: u32 = O_ACCMODE
    | O_CREAT
    | O_EXCL
    | O_NOCTTY
    | O_TRUNC
    | O_APPEND
    | O_NONBLOCK
    | O_DSYNC
    | O_DIRECT
    | O_LARGEFILE
    | O_DIRECTORY
    | O_NOFOLLOW
    | O_NOATIME
    | O_CLOEXEC
    | O_PATH;

/// The credentials a permission check needs (the caller's ids: real or
/// effective, as the call says; the kernel picks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
}

impl Cred {
    fn word(self) -> u64 {
        self.uid as u64 | (self.gid as u64) << 32
    }
    fn from_word(w: u64) -> Cred {
        Cred {
            uid: w as u32,
            gid: (w >> 32) as u32,
        }
    }
}

/// One timestamp of `utimensat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// `UTIME_NOW`: the server's clock.
    Now,
    /// `UTIME_OMIT`: unchanged.
    Omit,
    /// A time: seconds and nanoseconds (0..1e9) since the epoch.
    At { sec: i64, nsec: u32 },
}

impl Time {
    fn encode(self) -> [i64; 2] {
        match self {
            Time::Now => [0, UTIME_NOW],
            Time::Omit => [0, UTIME_OMIT],
            Time::At { sec, nsec } => [sec, nsec as i64],
        }
    }
    fn decode(sec: i64, nsec: i64) -> Result<Time, Errno> {
        // The seconds of a special are zero on the wire (one encoding
        // per value); the client drops what the caller put there.
        match nsec {
            UTIME_NOW if sec == 0 => Ok(Time::Now),
            UTIME_OMIT if sec == 0 => Ok(Time::Omit),
            0..=999_999_999 => Ok(Time::At {
                sec,
                nsec: nsec as u32,
            }),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// A file-system type for `Mount`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A new tmpfs whose page cache may hold `max_pages` pages.
    Tmpfs { max_pages: u64 },
    /// The ext2 image on the server's block device number `device` (the
    /// devices the server was started with).
    Ext2 { device: u32, read_only: bool },
}

/// Where a directory listing stands.  The client keeps it between
/// `Getdents` calls (with the open directory's offset) and treats it as
/// opaque; the zero cursor (`Cursor::START`) starts a listing.  `position`
/// is the `d_off` of the last entry returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor<'a> {
    pub position: u64,
    pub state: u64,
    /// Name to resume after; empty for none.
    pub after: &'a str,
}

impl Cursor<'_> {
    pub const START: Cursor<'static> = Cursor {
        position: 0,
        state: 0,
        after: "",
    };
}

/// A request, borrowing the message it was decoded from.  How each maps
/// onto words and payload is written at `Request::encode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Starts a client generation: the server drops every handle this
    /// client held and replies with a handle of the root directory.
    Attach,
    /// `openat`: resolves (and with `O_CREAT` creates, with permission bits
    /// `mode`, already masked by the umask) `path` from `dir`; replies with
    /// a new handle.  `O_PATH` makes a handle for `*at` calls and `fstat`
    /// only (what `chdir` and `O_PATH` opens need).  `close` (not 0) is
    /// a handle the client let go of earlier: the server drops it first,
    /// whatever becomes of the open (a close riding on the next open
    /// saves the client a round trip per `open`+`close`; an unknown
    /// handle there is ignored, as the client has nobody to tell).
    Open {
        dir: Handle,
        path: &'a str,
        flags: u32,
        mode: u32,
        close: Handle,
    },
    /// Drops a handle (the client's last reference to it went away).
    Close { handle: Handle },
    /// `pread`: at most `len` (≤ `MAX_PAYLOAD`) bytes from `offset`.
    Read {
        handle: Handle,
        offset: u64,
        len: u32,
    },
    /// `pwrite`, or with `append` a write at the end (`O_APPEND`); the
    /// reply gives the count and the offset after the data.
    Write {
        handle: Handle,
        offset: u64,
        append: bool,
        data: &'a [u8],
    },
    /// `stat`, `lstat`, `fstat`, `newfstatat`.
    Stat { at: At<'a> },
    /// `truncate`, `ftruncate` (`At::handle`).
    Truncate { at: At<'a>, size: u64 },
    /// `mkdirat`; `mode` already masked by the umask.
    Mkdir {
        dir: Handle,
        path: &'a str,
        mode: u32,
    },
    /// `mknodat`: `mode` holds the type (`S_IFREG`/0, `S_IFCHR`,
    /// `S_IFBLK`, `S_IFIFO`, `S_IFSOCK`) and the masked permissions.
    Mknod {
        dir: Handle,
        path: &'a str,
        mode: u32,
        rdev: u64,
    },
    /// `unlinkat`; with `AT_REMOVEDIR` it is `rmdir`.
    Unlink {
        dir: Handle,
        path: &'a str,
        flags: u32,
    },
    /// `renameat2` with `flags` 0, `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
    Rename {
        old_dir: Handle,
        old: &'a str,
        new_dir: Handle,
        new: &'a str,
        flags: u32,
    },
    /// `linkat`; `AT_SYMLINK_FOLLOW` follows a final symlink of `old`.
    Link {
        old_dir: Handle,
        old: &'a str,
        new_dir: Handle,
        new: &'a str,
        flags: u32,
    },
    /// `symlinkat(target, dir, path)`.
    Symlink {
        target: &'a str,
        dir: Handle,
        path: &'a str,
    },
    /// `readlinkat` (never follows the final component); the whole target
    /// comes back, the client truncates to the caller's buffer.
    Readlink { at: At<'a> },
    /// `getdents64` on a directory handle from `cursor`, filling at most
    /// `max` (≤ `MAX_DENTS`) bytes of `linux_dirent64` records.
    Getdents {
        handle: Handle,
        cursor: Cursor<'a>,
        max: u32,
    },
    /// `fchmodat`, `fchmod`: permission bits (≤ 0o7777).
    Chmod { at: At<'a>, mode: u32 },
    /// `fchownat`, `fchown`, `lchown`: `None` leaves an id; `cred` holds
    /// the caller's effective ids (root may set any ids, an owner only
    /// its own group).
    Chown {
        at: At<'a>,
        uid: Option<u32>,
        gid: Option<u32>,
        cred: Cred,
    },
    /// `utimensat`, `futimens` (`times == NULL` is two `Time::Now`).
    Utimens {
        at: At<'a>,
        atime: Time,
        mtime: Time,
    },
    /// `statfs`, `fstatfs`.
    Statfs { at: At<'a> },
    /// `fsync`, `fdatasync`; with `whole_fs`, `syncfs`.
    Fsync { handle: Handle, whole_fs: bool },
    /// `sync`: every superblock the server has.
    Sync,
    /// `faccessat2`: `mode` is `F_OK` or bits of `R_OK|W_OK|X_OK`, `cred`
    /// the real or effective ids (`AT_EACCESS` is the kernel's choice).
    Access { at: At<'a>, mode: u32, cred: Cred },
    /// The absolute path of a directory handle (`getcwd`).
    PathOf { handle: Handle },
    /// `mount` of a new file system on the directory `path`.
    Mount {
        dir: Handle,
        path: &'a str,
        kind: MountKind,
    },
    /// `umount2` of the file system whose root `path` names; `flags` 0.
    Umount { dir: Handle, path: &'a str },
    /// Page grants for file mappings (`mmap`): the server's own virtual
    /// addresses of the page-cache pages `index .. index + count` of the
    /// regular file `handle` (`count` in `1..=MAX_MAP_PAGES`), allocating
    /// zeroed pages for holes below the end of the file.  The reply names
    /// the pages below the end (at least one: `EFAULT` when `index` is at
    /// or past it).  The kernel maps the frames behind those addresses into
    /// its clients; the server keeps each page where it is while the
    /// handle is open (a truncate retires pages instead of reusing them).
    MapPages {
        handle: Handle,
        index: u64,
        count: u32,
    },
    /// One-copy `pread` (`servers.copy=one`): the page-cache pages behind
    /// at most `len` (≤ `MAX_IO_BYTES`) bytes at `offset` of the regular
    /// file `handle` (open for reading).  The reply (`Reply::Grant`) says
    /// how many bytes are readable (fewer only at the end of the file) and
    /// names, in the server's address space, each page they span (0 for a
    /// hole: zeros).  The client copies from those pages itself; the
    /// server keeps every page it named a page of this file system until
    /// the handle is closed (a truncate retires pages instead of freeing
    /// them, see `fs::Inode::grant_read`).
    ReadPages {
        handle: Handle,
        offset: u64,
        len: u64,
    },
    /// First half of a one-copy `pwrite`: makes the pages for at most
    /// `len` (1..=`MAX_IO_BYTES`) bytes at `offset` ready (holes filled
    /// with zeroed pages) without changing the size; the reply names them
    /// (never 0), how many bytes the client may copy into them, and the
    /// truncate epoch for `WriteDone`.  The handle must be open for writing.
    WritePages {
        handle: Handle,
        offset: u64,
        len: u64,
    },
    /// Second half: the client copied `count` (≤ `MAX_IO_BYTES`) bytes to
    /// `offset`; the server extends the size over them and updates the
    /// times (`Reply::Written`).  `EAGAIN` when a truncate came after the
    /// `WritePages` that returned `epoch` (the client writes again).
    WriteDone {
        handle: Handle,
        offset: u64,
        count: u64,
        epoch: u64,
    },
}

/// What `Open` and `Attach` say about the inode behind the new handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub ino: u64,
    pub dev: u64,
}

/// A successful reply, borrowing its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Most operations: nothing to say.
    Done,
    /// `Attach`, `Open`: the new handle and what it names.
    Handle { handle: Handle, info: NodeInfo },
    /// `Read`: the bytes (fewer than asked at the end of the file).
    Data(&'a [u8]),
    /// `Write`: bytes written and the offset after them.
    Written { count: u64, end: u64 },
    /// `Stat`.
    Stat(Stat),
    /// `Statfs`.
    Statfs(Statfs),
    /// `Getdents`: `linux_dirent64` records (empty at the end) and the
    /// cursor after them.
    Dents {
        records: &'a [u8],
        cursor: Cursor<'a>,
    },
    /// `Readlink`, `PathOf`.
    Text(&'a str),
    /// `MapPages`: the page addresses (little-endian `u64`s, each page
    /// aligned and not 0; 1..=`MAX_MAP_PAGES` of them), see `page_addrs`.
    Pages(&'a [u8]),
    /// `ReadPages`, `WritePages`: bytes the client may copy, the truncate
    /// epoch (`WritePages`; 0 for `ReadPages`), and the addresses of the
    /// pages those bytes span (little-endian `u64`s, page aligned; 0 is a
    /// hole, only in a `ReadPages` reply), see `page_addrs`.
    Grant {
        len: u64,
        epoch: u64,
        pages: &'a [u8],
    },
}

/// The addresses of a `Reply::Pages` payload, in page order.
pub fn page_addrs(p: &[u8]) -> impl Iterator<Item = u64> + '_ {
    p.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        u64::from_le_bytes(b)
    })
}

/// A `Reply::Pages` payload for `addrs`.
pub fn encode_page_addrs(addrs: &[u64]) -> Vec<u8> {
    addrs.iter().flat_map(|a| a.to_le_bytes()).collect()
}

/// The checks every message of this protocol and of the network protocol
/// (`netproto`, which shares the message shape) makes on the wire.
pub mod wire {
    use super::{Message, MsgRef, LABEL_OK, MAX_ERRNO, MAX_PAYLOAD};
    use abi::Errno;
    use alloc::vec::Vec;

    /// A word that must hold a `u32`.
    pub fn u32_word(w: u64) -> Result<u32, Errno> {
        u32::try_from(w).map_err(|_| Errno::EINVAL)
    }

    /// An `i32` travels as its 32 bits, zero-extended.
    pub fn i32_word(w: u64) -> Result<i32, Errno> {
        Ok(u32_word(w)? as i32)
    }

    /// Words a message must leave zero.
    pub fn zero(words: &[u64]) -> Result<(), Errno> {
        if words.iter().all(|&w| w == 0) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// A message that must carry no payload.
    pub fn no_payload(p: &[u8]) -> Result<(), Errno> {
        if p.is_empty() {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// Checks a payload fits, and builds the message.
    pub fn msg(label: u64, words: [u64; 4], payload: Vec<u8>) -> Result<Message, Errno> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        Ok(Message {
            label,
            words,
            payload,
        })
    }

    /// The status of a reply: `Ok(Ok(()))` for a success whose payload
    /// fits, `Ok(Err(errno))` for a well-formed error reply (no words, no
    /// payload), `Err(EINVAL)` for anything else.
    pub fn reply_status(m: &MsgRef<'_>) -> Result<Result<(), Errno>, Errno> {
        if m.label != LABEL_OK {
            if m.label > MAX_ERRNO {
                return Err(Errno::EINVAL);
            }
            zero(&m.words)?;
            no_payload(m.payload)?;
            return Ok(Err(Errno(m.label as i32)));
        }
        if m.payload.len() > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        Ok(Ok(()))
    }
}

// ---- helpers ------------------------------------------------------------

use wire::{msg, no_payload, u32_word, zero};

/// A path from payload bytes: UTF-8 without NUL, shorter than `PATH_MAX`.
pub fn path_from(bytes: &[u8]) -> Result<&str, Errno> {
    if bytes.len() > MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    if bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    core::str::from_utf8(bytes).map_err(|_| Errno::EINVAL)
}

/// Two paths: the first `first_len` bytes and the rest.
fn two_paths(p: &[u8], first_len: u64) -> Result<(&str, &str), Errno> {
    let n = usize::try_from(first_len).map_err(|_| Errno::EINVAL)?;
    if n > p.len() {
        return Err(Errno::EINVAL);
    }
    let (a, b) = p.split_at(n);
    Ok((path_from(a)?, path_from(b)?))
}

fn at_flags(w: u64) -> Result<u32, Errno> {
    let f = u32_word(w)?;
    if f & !AT_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(f)
}

fn perm(w: u64) -> Result<u32, Errno> {
    let m = u32_word(w)?;
    if m & !0o7777 != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(m)
}

fn at_of(dir: u64, flags: u64, payload: &[u8]) -> Result<At<'_>, Errno> {
    Ok(At {
        dir: Handle(dir),
        flags: at_flags(flags)?,
        path: path_from(payload)?,
    })
}

fn check_path(p: &str) -> Result<(), Errno> {
    path_from(p.as_bytes()).map(|_| ())
}

fn concat(a: &str, b: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a.as_bytes());
    v.extend_from_slice(b.as_bytes());
    v
}

impl<'a> Request<'a> {
    pub fn op(&self) -> Op {
        match self {
            Request::Attach => Op::Attach,
            Request::Open { .. } => Op::Open,
            Request::Close { .. } => Op::Close,
            Request::Read { .. } => Op::Read,
            Request::Write { .. } => Op::Write,
            Request::Stat { .. } => Op::Stat,
            Request::Truncate { .. } => Op::Truncate,
            Request::Mkdir { .. } => Op::Mkdir,
            Request::Mknod { .. } => Op::Mknod,
            Request::Unlink { .. } => Op::Unlink,
            Request::Rename { .. } => Op::Rename,
            Request::Link { .. } => Op::Link,
            Request::Symlink { .. } => Op::Symlink,
            Request::Readlink { .. } => Op::Readlink,
            Request::Getdents { .. } => Op::Getdents,
            Request::Chmod { .. } => Op::Chmod,
            Request::Chown { .. } => Op::Chown,
            Request::Utimens { .. } => Op::Utimens,
            Request::Statfs { .. } => Op::Statfs,
            Request::Fsync { .. } => Op::Fsync,
            Request::Sync => Op::Sync,
            Request::Access { .. } => Op::Access,
            Request::PathOf { .. } => Op::PathOf,
            Request::Mount { .. } => Op::Mount,
            Request::Umount { .. } => Op::Umount,
            Request::MapPages { .. } => Op::MapPages,
            Request::ReadPages { .. } => Op::ReadPages,
            Request::WritePages { .. } => Op::WritePages,
            Request::WriteDone { .. } => Op::WriteDone,
        }
    }

    /// The message for this request.  Refuses (with the errno the server
    /// would give) what `decode` would refuse: a path of `PATH_MAX` bytes
    /// or more or with a NUL (`ENAMETOOLONG`, `EINVAL`), unknown flags,
    /// out-of-range modes or lengths (`EINVAL`), data over `MAX_PAYLOAD`.
    pub fn encode(&self) -> Result<Message, Errno> {
        if let Some((words, path)) = self.path_only() {
            let (label, words) = self.checked(words, path)?;
            return Ok(Message {
                label,
                words,
                payload: path.as_bytes().into(),
            });
        }
        let label = self.op() as u64;
        let m = match *self {
            Request::Attach => msg(label, [0; 4], Vec::new())?,
            // w0 handle.
            Request::Close { handle } => msg(label, [handle.0, 0, 0, 0], Vec::new())?,
            // w0 handle, w1 offset, w2 len.
            Request::Read {
                handle,
                offset,
                len,
            } => msg(label, [handle.0, offset, len as u64, 0], Vec::new())?,
            // w0 handle, w1 offset, w2 bit 0 append; payload data.
            Request::Write {
                handle,
                offset,
                append,
                data,
            } => msg(label, [handle.0, offset, append as u64, 0], data.into())?,
            Request::Open { .. }
            | Request::Stat { .. }
            | Request::Readlink { .. }
            | Request::Statfs { .. } => unreachable!("encoded by path_only above"),
            // w0 dir, w1 at-flags, w2 size or mode; payload path.
            Request::Truncate { at, size: x } => {
                check_path(at.path)?;
                msg(
                    label,
                    [at.dir.0, at.flags as u64, x, 0],
                    at.path.as_bytes().into(),
                )?
            }
            Request::Chmod { at, mode } => {
                check_path(at.path)?;
                msg(
                    label,
                    [at.dir.0, at.flags as u64, mode as u64, 0],
                    at.path.as_bytes().into(),
                )?
            }
            // w0 dir, w1 mode; payload path.
            Request::Mkdir { dir, path, mode } => {
                check_path(path)?;
                msg(label, [dir.0, mode as u64, 0, 0], path.as_bytes().into())?
            }
            // w0 dir, w1 mode, w2 rdev; payload path.
            Request::Mknod {
                dir,
                path,
                mode,
                rdev,
            } => {
                check_path(path)?;
                msg(label, [dir.0, mode as u64, rdev, 0], path.as_bytes().into())?
            }
            // w0 dir, w1 flags; payload path.
            Request::Unlink { dir, path, flags } => {
                check_path(path)?;
                msg(label, [dir.0, flags as u64, 0, 0], path.as_bytes().into())?
            }
            // w0 old dir, w1 new dir, w2 flags, w3 length of old; payload
            // old ++ new.
            Request::Rename {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            }
            | Request::Link {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                check_path(old)?;
                check_path(new)?;
                msg(
                    label,
                    [old_dir.0, new_dir.0, flags as u64, old.len() as u64],
                    concat(old, new),
                )?
            }
            // w0 dir, w3 length of target; payload target ++ path.
            Request::Symlink { target, dir, path } => {
                check_path(target)?;
                check_path(path)?;
                msg(
                    label,
                    [dir.0, 0, 0, target.len() as u64],
                    concat(target, path),
                )?
            }
            // w0 handle, w1 position, w2 state, w3 max; payload resume name.
            Request::Getdents {
                handle,
                cursor,
                max,
            } => {
                check_path(cursor.after)?;
                msg(
                    label,
                    [handle.0, cursor.position, cursor.state, max as u64],
                    cursor.after.as_bytes().into(),
                )?
            }
            // w0 dir, w1 at-flags, w2 uid | gid << 32 (u32::MAX: unchanged),
            // w3 cred; payload path.
            Request::Chown { at, uid, gid, cred } => {
                check_path(at.path)?;
                let ids = uid.unwrap_or(u32::MAX) as u64 | (gid.unwrap_or(u32::MAX) as u64) << 32;
                msg(
                    label,
                    [at.dir.0, at.flags as u64, ids, cred.word()],
                    at.path.as_bytes().into(),
                )?
            }
            // w0 dir, w1 at-flags; payload atime (sec, nsec), mtime (sec,
            // nsec) as four little-endian i64, then the path.
            Request::Utimens { at, atime, mtime } => {
                check_path(at.path)?;
                let mut p = Vec::with_capacity(32 + at.path.len());
                for v in atime.encode().iter().chain(mtime.encode().iter()) {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                p.extend_from_slice(at.path.as_bytes());
                msg(label, [at.dir.0, at.flags as u64, 0, 0], p)?
            }
            // w0 handle, w1 bit 0 whole file system.
            Request::Fsync { handle, whole_fs } => {
                msg(label, [handle.0, whole_fs as u64, 0, 0], Vec::new())?
            }
            Request::Sync => msg(label, [0; 4], Vec::new())?,
            // w0 dir, w1 at-flags, w2 mode, w3 cred; payload path.
            Request::Access { at, mode, cred } => {
                check_path(at.path)?;
                msg(
                    label,
                    [at.dir.0, at.flags as u64, mode as u64, cred.word()],
                    at.path.as_bytes().into(),
                )?
            }
            Request::PathOf { handle } => msg(label, [handle.0, 0, 0, 0], Vec::new())?,
            // w0 dir, w1 kind (1 tmpfs, 2 ext2), w2 max pages or device,
            // w3 bit 0 read-only; payload path.
            Request::Mount { dir, path, kind } => {
                check_path(path)?;
                let (k, arg, ro) = match kind {
                    MountKind::Tmpfs { max_pages } => (1, max_pages, false),
                    MountKind::Ext2 { device, read_only } => (2, device as u64, read_only),
                };
                msg(label, [dir.0, k, arg, ro as u64], path.as_bytes().into())?
            }
            Request::Umount { dir, path } => {
                check_path(path)?;
                msg(label, [dir.0, 0, 0, 0], path.as_bytes().into())?
            }
            // w0 handle, w1 first page index, w2 count.
            Request::MapPages {
                handle,
                index,
                count,
            } => msg(label, [handle.0, index, count as u64, 0], Vec::new())?,
            // w0 handle, w1 offset, w2 length.
            Request::ReadPages {
                handle,
                offset,
                len,
            }
            | Request::WritePages {
                handle,
                offset,
                len,
            } => msg(label, [handle.0, offset, len, 0], Vec::new())?,
            // w0 handle, w1 offset, w2 count, w3 epoch.
            Request::WriteDone {
                handle,
                offset,
                count,
                epoch,
            } => msg(label, [handle.0, offset, count, epoch], Vec::new())?,
        };
        // What the encoder produced must be what the decoder accepts.
        Request::decode(m.view())?;
        Ok(m)
    }

    /// The words of a request whose payload is exactly one path, and
    /// that path: `Open` (w0 dir, w1 flags, w2 mode, w3 a handle to close
    /// first, 0: none) and the `At` requests without other arguments,
    /// `Stat`, `Readlink`, `Statfs` (w0 dir, w1 at-flags).  `None` for the
    /// others.
    fn path_only(&self) -> Option<([u64; 4], &'a str)> {
        Some(match *self {
            Request::Open {
                dir,
                path,
                flags,
                mode,
                close,
            } => ([dir.0, flags as u64, mode as u64, close.0], path),
            Request::Stat { at } | Request::Readlink { at } | Request::Statfs { at } => {
                ([at.dir.0, at.flags as u64, 0, 0], at.path)
            }
            _ => return None,
        })
    }

    /// Label and words, refused as `decode` would refuse the message.
    fn checked(&self, words: [u64; 4], path: &str) -> Result<(u64, [u64; 4]), Errno> {
        let label = self.op() as u64;
        Request::decode(MsgRef {
            label,
            words,
            payload: path.as_bytes(),
        })?;
        Ok((label, words))
    }

    /// For the requests whose payload is exactly one path (`Open`,
    /// `Stat`, `Readlink`, `Statfs`): the label and words `encode` makes,
    /// checked the same way, so a client whose path already sits in a
    /// buffer it owns sends that buffer as the payload, without a copy
    /// (the kernel reads a path from user memory straight into it).
    /// `None` for other requests (use `encode`).
    pub fn path_words(&self) -> Option<Result<(u64, [u64; 4]), Errno>> {
        let (words, path) = self.path_only()?;
        Some(self.checked(words, path))
    }

    /// The request a message carries, or why it is malformed.
    pub fn decode(m: MsgRef<'a>) -> Result<Request<'a>, Errno> {
        let op = Op::from_label(m.label)?;
        let [w0, w1, w2, w3] = m.words;
        let p = m.payload;
        if p.len() > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        Ok(match op {
            Op::Attach => {
                zero(&m.words)?;
                no_payload(p)?;
                Request::Attach
            }
            Op::Open => {
                let flags = u32_word(w1)?;
                if flags & !OPEN_FLAGS != 0 || flags & O_ACCMODE == O_ACCMODE {
                    return Err(Errno::EINVAL);
                }
                // Linux refuses a directory create (since 6.4).
                if flags & O_CREAT != 0 && flags & O_DIRECTORY != 0 {
                    return Err(Errno::EINVAL);
                }
                Request::Open {
                    dir: Handle(w0),
                    path: path_from(p)?,
                    flags,
                    mode: perm(w2)?,
                    close: Handle(w3),
                }
            }
            Op::Close => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Request::Close { handle: Handle(w0) }
            }
            Op::Read => {
                zero(&[w3])?;
                no_payload(p)?;
                if w2 > MAX_PAYLOAD as u64 {
                    return Err(Errno::EINVAL);
                }
                Request::Read {
                    handle: Handle(w0),
                    offset: w1,
                    len: w2 as u32,
                }
            }
            Op::Write => {
                zero(&[w3])?;
                if w2 > 1 {
                    return Err(Errno::EINVAL);
                }
                Request::Write {
                    handle: Handle(w0),
                    offset: w1,
                    append: w2 == 1,
                    data: p,
                }
            }
            Op::Stat => {
                zero(&[w2, w3])?;
                Request::Stat {
                    at: at_of(w0, w1, p)?,
                }
            }
            Op::Readlink => {
                zero(&[w2, w3])?;
                Request::Readlink {
                    at: at_of(w0, w1, p)?,
                }
            }
            Op::Statfs => {
                zero(&[w2, w3])?;
                Request::Statfs {
                    at: at_of(w0, w1, p)?,
                }
            }
            Op::Truncate => {
                zero(&[w3])?;
                if w2 > i64::MAX as u64 {
                    return Err(Errno::EINVAL);
                }
                Request::Truncate {
                    at: at_of(w0, w1, p)?,
                    size: w2,
                }
            }
            Op::Chmod => {
                zero(&[w3])?;
                Request::Chmod {
                    at: at_of(w0, w1, p)?,
                    mode: perm(w2)?,
                }
            }
            Op::Mkdir => {
                zero(&[w2, w3])?;
                Request::Mkdir {
                    dir: Handle(w0),
                    path: path_from(p)?,
                    mode: perm(w1)?,
                }
            }
            Op::Mknod => {
                zero(&[w3])?;
                Request::Mknod {
                    dir: Handle(w0),
                    path: path_from(p)?,
                    mode: u32_word(w1)?,
                    rdev: w2,
                }
            }
            Op::Unlink => {
                zero(&[w2, w3])?;
                let flags = u32_word(w1)?;
                if flags & !AT_REMOVEDIR != 0 {
                    return Err(Errno::EINVAL);
                }
                Request::Unlink {
                    dir: Handle(w0),
                    path: path_from(p)?,
                    flags,
                }
            }
            Op::Rename => {
                let flags = u32_word(w2)?;
                if !matches!(flags, 0 | RENAME_NOREPLACE | RENAME_EXCHANGE) {
                    return Err(Errno::EINVAL);
                }
                let (old, new) = two_paths(p, w3)?;
                Request::Rename {
                    old_dir: Handle(w0),
                    old,
                    new_dir: Handle(w1),
                    new,
                    flags,
                }
            }
            Op::Link => {
                let flags = u32_word(w2)?;
                if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
                    return Err(Errno::EINVAL);
                }
                let (old, new) = two_paths(p, w3)?;
                Request::Link {
                    old_dir: Handle(w0),
                    old,
                    new_dir: Handle(w1),
                    new,
                    flags,
                }
            }
            Op::Symlink => {
                zero(&[w1, w2])?;
                let (target, path) = two_paths(p, w3)?;
                Request::Symlink {
                    target,
                    dir: Handle(w0),
                    path,
                }
            }
            Op::Getdents => {
                if w3 > MAX_DENTS as u64 {
                    return Err(Errno::EINVAL);
                }
                if p.len() > NAME_MAX {
                    return Err(Errno::EINVAL);
                }
                Request::Getdents {
                    handle: Handle(w0),
                    cursor: Cursor {
                        position: w1,
                        state: w2,
                        after: path_from(p)?,
                    },
                    max: w3 as u32,
                }
            }
            Op::Chown => {
                let id = |v: u32| (v != u32::MAX).then_some(v);
                Request::Chown {
                    at: at_of(w0, w1, p)?,
                    uid: id(w2 as u32),
                    gid: id((w2 >> 32) as u32),
                    cred: Cred::from_word(w3),
                }
            }
            Op::Utimens => {
                zero(&[w2, w3])?;
                if p.len() < 32 {
                    return Err(Errno::EINVAL);
                }
                let (times, path) = p.split_at(32);
                let t = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&times[i * 8..i * 8 + 8]);
                    i64::from_le_bytes(b)
                };
                Request::Utimens {
                    at: at_of(w0, w1, path)?,
                    atime: Time::decode(t(0), t(1))?,
                    mtime: Time::decode(t(2), t(3))?,
                }
            }
            Op::Fsync => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                if w1 > 1 {
                    return Err(Errno::EINVAL);
                }
                Request::Fsync {
                    handle: Handle(w0),
                    whole_fs: w1 == 1,
                }
            }
            Op::Sync => {
                zero(&m.words)?;
                no_payload(p)?;
                Request::Sync
            }
            Op::Access => {
                if w2 & !7 != 0 {
                    return Err(Errno::EINVAL);
                }
                Request::Access {
                    at: at_of(w0, w1, p)?,
                    mode: w2 as u32,
                    cred: Cred::from_word(w3),
                }
            }
            Op::PathOf => {
                zero(&[w1, w2, w3])?;
                no_payload(p)?;
                Request::PathOf { handle: Handle(w0) }
            }
            Op::Mount => {
                let kind = match (w1, w3) {
                    (1, 0) => MountKind::Tmpfs { max_pages: w2 },
                    (2, 0 | 1) => MountKind::Ext2 {
                        device: u32_word(w2)?,
                        read_only: w3 == 1,
                    },
                    _ => return Err(Errno::EINVAL),
                };
                Request::Mount {
                    dir: Handle(w0),
                    path: path_from(p)?,
                    kind,
                }
            }
            Op::Umount => {
                zero(&[w1, w2, w3])?;
                Request::Umount {
                    dir: Handle(w0),
                    path: path_from(p)?,
                }
            }
            Op::MapPages => {
                zero(&[w3])?;
                no_payload(p)?;
                if w2 == 0 || w2 > MAX_MAP_PAGES as u64 {
                    return Err(Errno::EINVAL);
                }
                // The last page must have an offset `lseek` could name.
                if w1
                    .checked_add(w2)
                    .is_none_or(|e| e > i64::MAX as u64 / PAGE_SIZE)
                {
                    return Err(Errno::EINVAL);
                }
                Request::MapPages {
                    handle: Handle(w0),
                    index: w1,
                    count: w2 as u32,
                }
            }
            Op::ReadPages | Op::WritePages | Op::WriteDone => {
                no_payload(p)?;
                if op != Op::WriteDone {
                    zero(&[w3])?;
                }
                // Lengths are bounded; a write must move something; the
                // range must end where `lseek` can name an offset.
                if w2 > MAX_IO_BYTES
                    || (op == Op::WritePages && w2 == 0)
                    || w1.checked_add(w2).is_none_or(|e| e > i64::MAX as u64)
                {
                    return Err(Errno::EINVAL);
                }
                let handle = Handle(w0);
                match op {
                    Op::ReadPages => Request::ReadPages {
                        handle,
                        offset: w1,
                        len: w2,
                    },
                    Op::WritePages => Request::WritePages {
                        handle,
                        offset: w1,
                        len: w2,
                    },
                    _ => Request::WriteDone {
                        handle,
                        offset: w1,
                        count: w2,
                        epoch: w3,
                    },
                }
            }
        })
    }
}

impl<'a> Reply<'a> {
    /// The reply message of a successful call.  `Data`, `Dents` and `Text`
    /// must fit `MAX_PAYLOAD` (`EINVAL` otherwise: a server bug).
    pub fn encode(&self) -> Result<Message, Errno> {
        let ok = LABEL_OK;
        let fits = |n: usize| {
            if n > MAX_PAYLOAD {
                Err(Errno::EINVAL)
            } else {
                Ok(())
            }
        };
        Ok(match *self {
            Reply::Done => Message::default(),
            // w0 handle, w1 st_mode, w2 ino, w3 dev.
            Reply::Handle { handle, info } => Message {
                label: ok,
                words: [handle.0, info.mode as u64, info.ino, info.dev],
                payload: Vec::new(),
            },
            // w0 length; payload data.
            Reply::Data(d) => {
                fits(d.len())?;
                Message {
                    label: ok,
                    words: [d.len() as u64, 0, 0, 0],
                    payload: d.into(),
                }
            }
            // w0 count, w1 offset after.
            Reply::Written { count, end } => Message {
                label: ok,
                words: [count, end, 0, 0],
                payload: Vec::new(),
            },
            Reply::Stat(st) => Message {
                label: ok,
                words: [STAT_SIZE as u64, 0, 0, 0],
                payload: encode_stat(&st).into(),
            },
            Reply::Statfs(sf) => Message {
                label: ok,
                words: [STATFS_SIZE as u64, 0, 0, 0],
                payload: encode_statfs(&sf).into(),
            },
            // w0 record bytes, w1 position, w2 state, w3 resume-name
            // length; payload records ++ resume name.
            Reply::Dents { records, cursor } => {
                fits(records.len() + cursor.after.len())?;
                Message {
                    label: ok,
                    words: [
                        records.len() as u64,
                        cursor.position,
                        cursor.state,
                        cursor.after.len() as u64,
                    ],
                    payload: concat_bytes(records, cursor.after.as_bytes()),
                }
            }
            // w0 count; payload the addresses.
            Reply::Pages(p) => {
                if p.is_empty() || p.len() % 8 != 0 || p.len() > MAX_MAP_PAGES * 8 {
                    return Err(Errno::EINVAL);
                }
                Message {
                    label: ok,
                    words: [(p.len() / 8) as u64, 0, 0, 0],
                    payload: p.into(),
                }
            }
            // w0 length, w1 epoch, w2 page count; payload the addresses.
            Reply::Grant { len, epoch, pages } => {
                if pages.len() % 8 != 0
                    || pages.len() > MAX_IO_PAGES * 8
                    || len > MAX_IO_BYTES
                    || (len == 0) != pages.is_empty()
                {
                    return Err(Errno::EINVAL);
                }
                Message {
                    label: ok,
                    words: [len, epoch, (pages.len() / 8) as u64, 0],
                    payload: pages.into(),
                }
            }
            // w0 length; payload text.
            Reply::Text(t) => {
                fits(t.len())?;
                Message {
                    label: ok,
                    words: [t.len() as u64, 0, 0, 0],
                    payload: t.as_bytes().into(),
                }
            }
        })
    }

    /// The reply to a request of operation `op`: `Ok(Ok(reply))`,
    /// `Ok(Err(errno))` for an error reply, or `Err` when the message is
    /// not a reply `op` can have (a broken server).
    pub fn decode(op: Op, m: MsgRef<'a>) -> Result<Result<Reply<'a>, Errno>, Errno> {
        let [w0, w1, w2, w3] = m.words;
        let p = m.payload;
        if let Err(errno) = wire::reply_status(&m)? {
            return Ok(Err(errno));
        }
        let len_is = |n: u64| {
            if n == p.len() as u64 {
                Ok(())
            } else {
                Err(Errno::EINVAL)
            }
        };
        let r = match op {
            Op::Attach | Op::Open => {
                no_payload(p)?;
                Reply::Handle {
                    handle: Handle(w0),
                    info: NodeInfo {
                        mode: u32_word(w1)?,
                        ino: w2,
                        dev: w3,
                    },
                }
            }
            Op::Read => {
                zero(&[w1, w2, w3])?;
                len_is(w0)?;
                Reply::Data(p)
            }
            Op::Write | Op::WriteDone => {
                zero(&[w2, w3])?;
                no_payload(p)?;
                Reply::Written { count: w0, end: w1 }
            }
            Op::ReadPages | Op::WritePages => {
                zero(&[w3])?;
                let n = usize::try_from(w2).map_err(|_| Errno::EINVAL)?;
                if n > MAX_IO_PAGES || p.len() != n * 8 || w0 > MAX_IO_BYTES {
                    return Err(Errno::EINVAL);
                }
                // Pages exactly for the bytes (none for none); holes only
                // in a read.
                if (w0 == 0) != (n == 0) || (op == Op::ReadPages && w1 != 0) {
                    return Err(Errno::EINVAL);
                }
                if page_addrs(p).any(|a| a % PAGE_SIZE != 0 || (a == 0 && op == Op::WritePages)) {
                    return Err(Errno::EINVAL);
                }
                Reply::Grant {
                    len: w0,
                    epoch: w1,
                    pages: p,
                }
            }
            Op::Stat => {
                zero(&[w1, w2, w3])?;
                len_is(w0)?;
                Reply::Stat(decode_stat(p)?)
            }
            Op::Statfs => {
                zero(&[w1, w2, w3])?;
                len_is(w0)?;
                Reply::Statfs(decode_statfs(p)?)
            }
            Op::Getdents => {
                let n = usize::try_from(w0).map_err(|_| Errno::EINVAL)?;
                let a = usize::try_from(w3).map_err(|_| Errno::EINVAL)?;
                if n.checked_add(a) != Some(p.len()) || a > NAME_MAX {
                    return Err(Errno::EINVAL);
                }
                let (records, after) = p.split_at(n);
                // The records must parse, so a client can copy them out.
                for d in Dirents::new(records) {
                    d?;
                }
                Reply::Dents {
                    records,
                    cursor: Cursor {
                        position: w1,
                        state: w2,
                        after: path_from(after)?,
                    },
                }
            }
            Op::Readlink | Op::PathOf => {
                zero(&[w1, w2, w3])?;
                len_is(w0)?;
                Reply::Text(core::str::from_utf8(p).map_err(|_| Errno::EINVAL)?)
            }
            Op::MapPages => {
                zero(&[w1, w2, w3])?;
                let n = usize::try_from(w0).map_err(|_| Errno::EINVAL)?;
                if n == 0 || n > MAX_MAP_PAGES || p.len() != n * 8 {
                    return Err(Errno::EINVAL);
                }
                if page_addrs(p).any(|a| a == 0 || a % PAGE_SIZE != 0) {
                    return Err(Errno::EINVAL);
                }
                Reply::Pages(p)
            }
            _ => {
                zero(&m.words)?;
                no_payload(p)?;
                Reply::Done
            }
        };
        Ok(Ok(r))
    }
}

fn concat_bytes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    v
}

/// The reply message for a server's result.
pub fn reply_message(r: Result<Reply<'_>, Errno>) -> Message {
    match r.and_then(|r| r.encode()) {
        Ok(m) => m,
        Err(e) => Message::error(e),
    }
}
