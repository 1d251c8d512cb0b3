//! Server replacement: the file server's whole state as a versioned
//! image, made by the running instance and rebuilt by its successor
//! (docs/SERVERS.md "Replacing the file server").
//!
//! Owns the image format and both directions: [`export`] walks the
//! namespace from the root (directories, hard links, file data, symlink
//! targets, device nodes, owners, modes, times, inode numbers) and adds
//! the inodes that only handles reach (open files that were unlinked,
//! removed working directories), then the handle table slot by slot;
//! [`import`] rebuilds a fresh `fs::Fs` from it with the same inode
//! numbers and a handle table in which every number means what it meant
//! (the kernel's handles stay valid, closed ones stay closed).
//!
//! The format is explicit, not a memory dump, so a successor built from
//! other sources (an upgraded server) can read it: a magic, a version
//! (`VERSION`; a reader refuses others with `EPROTO`), then
//! little-endian records.  A malformed image is `EINVAL`, never a panic.
//!
//! Must not: be used while another thread changes the namespace (the
//! server stops serving for the export), or on a server with `Mount`ed
//! superblocks (`EBUSY`: their contents live on devices the image does
//! not carry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use abi::fcntl::{O_CREAT, O_EXCL, O_RDWR};
use abi::Errno;
use fs::{DirCursor, FileType, Fs, Inode, Timespec};

use crate::handles::{Access, Entry, HandleTable, IoUser, SlotImage};
use crate::server::{Config, FileServer};

/// The first bytes of every image.
pub const MAGIC: &[u8; 8] = b"FSDSTATE";
/// The image format version this server writes and reads (2: a kind
/// byte after the device number: full, base or delta image).
pub const VERSION: u32 = 2;
/// A whole state image (`export`).
const KIND_FULL: u8 = 0;
/// The base image sent while the old instance serves on
/// (`export_base`): tree, metadata and data, no handle table.
const KIND_BASE: u8 = 1;
/// The image at the switch (`export_delta`): the inodes that changed
/// since the base and the handle table.
const KIND_DELTA: u8 = 2;

/// The control request the kernel sends on the service endpoint to make
/// the running instance hand over (outside `fsproto`'s operations; only
/// the kernel's badge may send it): w0 = the instance's handle of the
/// successor's hand-over endpoint.  The reply's w0 is the image size, w1
/// the time the export took and w2 the successor's rebuild (ns).
pub const LABEL_HANDOVER: u64 = 0x4856_0001;
/// The control request before `LABEL_HANDOVER`: pre-copy the file data
/// to the successor (w0 as there) while serving on.  Answered, by the
/// pre-copy thread, when done: w0 files, w1 bytes, w2 ns.
pub const LABEL_PRECOPY: u64 = 0x4856_0002;
/// On the hand-over endpoint, old instance to new: one piece of a
/// pre-copied file (w0 inode number, w1 data version, w2 offset, w3 total
/// size; payload the bytes).
pub const LABEL_DATA: u64 = 3;
/// On the hand-over endpoint, old instance to new: one piece of the
/// image (w0 offset, w1 total size; payload the bytes).
pub const LABEL_CHUNK: u64 = 1;
/// On the hand-over endpoint, old instance to new, during the pre-copy:
/// the base image sent as `LABEL_CHUNK`s is complete (w0 total size); the
/// successor builds the namespace from it ahead of the switch and
/// answers 0 or an errno.
pub const LABEL_STAGE: u64 = 4;
/// The image is complete (w0 total size): the successor rebuilds the
/// state and answers 0 (ready to serve) or an errno (the old instance
/// keeps serving).
pub const LABEL_COMMIT: u64 = 2;
/// Bytes per piece: the IPC's largest message (`IPC_MAX_BYTES`).
pub const CHUNK: usize = 64 * 1024;

/// One inode as the image carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRec {
    ino: u64,
    kind: FileType,
    perm: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    atime: Timespec,
    mtime: Timespec,
    /// File data or symlink target.
    data: Vec<u8>,
    /// A regular file whose data the successor already has from the
    /// pre-copy, at this data version (`data` is then empty).
    precopied: Option<u64>,
    /// Directory entries (name, inode number), without `.` and `..`.
    entries: Vec<(String, u64)>,
    /// A regular file's data version when it was recorded (not in the
    /// image; 0 for other kinds and in decoded records).
    version: u64,
}

fn kind_code(k: FileType) -> u8 {
    match k {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
        FileType::CharDevice => 4,
        FileType::BlockDevice => 5,
        FileType::Fifo => 6,
        FileType::Socket => 7,
    }
}

fn code_kind(c: u8) -> Result<FileType, Errno> {
    Ok(match c {
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::Symlink,
        4 => FileType::CharDevice,
        5 => FileType::BlockDevice,
        6 => FileType::Fifo,
        7 => FileType::Socket,
        _ => return Err(Errno::EINVAL),
    })
}

/// A regular file's whole data.
fn read_all(inode: &Inode) -> Result<Vec<u8>, Errno> {
    let mut data = vec![0; inode.size() as usize];
    let mut done = 0;
    while done < data.len() {
        let n = inode.read_at(done as u64, &mut data[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    data.truncate(done);
    Ok(data)
}

fn record(fs: &Fs, inode: &Arc<Inode>, sent: &Sent) -> Result<NodeRec, Errno> {
    let st = inode.stat();
    let kind = inode.kind();
    let mut data = Vec::new();
    let mut entries = Vec::new();
    let mut precopied = None;
    let mut data_version = 0;
    match kind {
        FileType::Regular => {
            let (version, mapped) = inode.data_version().ok_or(Errno::EINVAL)?;
            data_version = version;
            if mapped {
                // Its pages are pinned in the old instance's address
                // space for a mapping: they cannot follow.
                return Err(Errno::EBUSY);
            }
            if sent.get(&inode.ino()) == Some(&version) {
                precopied = Some(version);
            } else {
                data = read_all(inode)?;
            }
        }
        FileType::Symlink => {
            data = inode.symlink_target().unwrap_or("").as_bytes().to_vec();
        }
        FileType::Directory => {
            let mut names = Vec::new();
            let mut cursor = DirCursor::default();
            inode.readdir(&mut cursor, |name, ino, _, _| {
                if name != "." && name != ".." {
                    names.push((name.to_string(), ino));
                }
                true
            })?;
            // A child that went between the listing and now is left out.
            for (name, _) in names {
                if let Ok(child) = fs.lookup(inode, &name, false) {
                    entries.push((name, child.ino()));
                }
            }
        }
        _ => {}
    }
    let (uid, gid) = inode.owner();
    Ok(NodeRec {
        ino: inode.ino(),
        kind,
        perm: st.mode & 0o7777,
        uid,
        gid,
        rdev: inode.rdev(),
        atime: st.atime,
        mtime: st.mtime,
        data,
        precopied,
        entries,
        version: data_version,
    })
}

/// What the pre-copy sent: inode number -> data version.
pub type Sent = HashMap<u64, u64>;

/// The pre-copy, run on a thread of its own while the server goes on
/// serving: every regular file reachable from the root, read between two
/// reads of its data version, handed to `send(ino, version, offset,
/// total, bytes)` in pieces of at most `CHUNK` bytes (an empty file is one
/// empty piece).  A file written meanwhile is left out (the export sends
/// it).  Returns what was sent.
pub fn precopy(
    server: &FileServer,
    mut send: impl FnMut(u64, u64, u64, u64, &[u8]) -> Result<(), Errno>,
) -> Result<Sent, Errno> {
    let fs = &server.fs;
    let mut sent = Sent::new();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let mut stack = vec![fs.root()];
    while let Some(dir) = stack.pop() {
        let mut names = Vec::new();
        let mut cursor = DirCursor::default();
        dir.readdir(&mut cursor, |name, _, _, _| {
            if name != "." && name != ".." {
                names.push(name.to_string());
            }
            true
        })?;
        for name in names {
            let Ok(child) = fs.lookup(&dir, &name, false) else {
                continue; // removed meanwhile
            };
            if seen.insert(child.ino(), ()).is_some() {
                continue;
            }
            if child.is_dir() {
                stack.push(child);
                continue;
            }
            let Some((v1, false)) = child.data_version() else {
                continue;
            };
            let data = read_all(&child)?;
            if child.data_version() != Some((v1, false)) {
                continue;
            }
            let total = data.len() as u64;
            let mut off = 0;
            loop {
                let end = (off + CHUNK).min(data.len());
                send(child.ino(), v1, off as u64, total, &data[off..end])?;
                off = end;
                if off >= data.len() {
                    break;
                }
            }
            sent.insert(child.ino(), v1);
        }
    }
    Ok(sent)
}

/// The state image of `server`, without the data of files `sent` (by the
/// pre-copy) at their current version.  `EBUSY` while superblocks are
/// mounted in it or a file's pages are mapped.
pub fn export(server: &FileServer, sent: &Sent) -> Result<Vec<u8>, Errno> {
    check_mounts(server)?;
    let (nodes, seen) = walk(server, sent, false)?;
    let mut nodes = nodes;
    let mut seen = seen;
    let slots = server.handles.export();
    for shard in &slots {
        for (_, e) in shard {
            if let Some(e) = e {
                if seen.insert(e.inode.ino(), ()).is_none() {
                    nodes.push(record(&server.fs, &e.inode, sent)?);
                }
            }
        }
    }
    Ok(write_image(KIND_FULL, &server.fs, &nodes, &slots))
}

fn check_mounts(server: &FileServer) -> Result<(), Errno> {
    if server
        .mounts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        Ok(())
    } else {
        Err(Errno::EBUSY)
    }
}

/// Every inode reachable from the root, each once.  `tolerant`: the
/// namespace may change meanwhile (the base image, made while the server
/// serves): an entry that went is left out, and a directory met a second
/// time (moved during the walk) is left out of its second parent; the
/// change log covers both.
fn walk(
    server: &FileServer,
    sent: &Sent,
    tolerant: bool,
) -> Result<(Vec<NodeRec>, HashMap<u64, ()>), Errno> {
    let fs = &server.fs;
    let root = fs.root();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let mut nodes = Vec::new();
    let mut stack = vec![root.clone()];
    seen.insert(root.ino(), ());
    while let Some(dir) = stack.pop() {
        let mut rec = record(fs, &dir, sent)?;
        let mut keep = Vec::with_capacity(rec.entries.len());
        for (name, ino) in std::mem::take(&mut rec.entries) {
            if seen.contains_key(&ino) {
                if tolerant && fs.lookup(&dir, &name, false).is_ok_and(|c| c.is_dir()) {
                    continue;
                }
                keep.push((name, ino)); // a hard link to a node already recorded
                continue;
            }
            let child = match fs.lookup(&dir, &name, false) {
                Ok(c) if c.ino() == ino => c,
                Ok(_) | Err(_) if tolerant => continue,
                Ok(_) => return Err(Errno::EAGAIN),
                Err(e) => return Err(e),
            };
            seen.insert(ino, ());
            if child.is_dir() {
                stack.push(child);
            } else {
                nodes.push(record(fs, &child, sent)?);
            }
            keep.push((name, ino));
        }
        rec.entries = keep;
        nodes.push(rec);
    }
    Ok((nodes, seen))
}

/// What the successor holds once it built the base image: inode number ->
/// the data version of a regular file (`None` for other kinds).
#[derive(Debug, Default)]
pub struct Staged {
    known: HashMap<u64, Option<u64>>,
}

impl Staged {
    /// Inodes the successor has.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// The base image, made while the server serves on (after the data
/// pre-copy): the namespace with metadata, and the data of files not
/// `sent` at their current version; no handle table.  Starts the change
/// log first, so that [`export_delta`] sends whatever changed since.
pub fn export_base(server: &FileServer, sent: &Sent) -> Result<(Vec<u8>, Staged), Errno> {
    check_mounts(server)?;
    server.fs.start_change_log();
    let (nodes, _) = walk(server, sent, true)?;
    let known = nodes
        .iter()
        .map(|n| (n.ino, (n.kind == FileType::Regular).then_some(n.version)))
        .collect();
    Ok((
        write_image(KIND_BASE, &server.fs, &nodes, &[]),
        Staged { known },
    ))
}

/// The image at the switch (the server no longer serves): every inode
/// the change log names (its metadata, its entries if a directory, its
/// data unless the successor has it at the current version), every inode
/// the successor does not know that those entries or a handle reach, and
/// the handle table.  Ends the change log.
pub fn export_delta(server: &FileServer, sent: &Sent, staged: &Staged) -> Result<Vec<u8>, Errno> {
    delta(server, sent, staged, true)
}

/// One more round before the switch, while the server serves on: what
/// changed since the base or the last round, as [`export_delta`] makes it
/// but without the handle table, tolerant of changes meanwhile (the log
/// goes on and covers them), so that the delta left for the switch is
/// only what changed during the last round.  `staged` learns what the
/// successor will have once it applied it ([`Receiver::stage`]).
pub fn export_round(
    server: &FileServer,
    sent: &Sent,
    staged: &mut Staged,
) -> Result<Vec<u8>, Errno> {
    let image = delta(server, sent, staged, false)?;
    let img = decode(&image)?;
    for n in &img.nodes {
        let v = match n.kind {
            FileType::Regular => Some(n.precopied.unwrap_or(n.version)),
            _ => None,
        };
        staged.known.insert(n.ino, v);
    }
    Ok(image)
}

fn delta(server: &FileServer, sent: &Sent, staged: &Staged, last: bool) -> Result<Vec<u8>, Errno> {
    check_mounts(server)?;
    let fs = &server.fs;
    let mut have = sent.clone();
    for (ino, v) in &staged.known {
        if let Some(v) = v {
            have.insert(*ino, *v);
        }
    }
    let mut done: HashMap<u64, ()> = HashMap::new();
    let mut nodes = Vec::new();
    let mut work: Vec<Arc<Inode>> = fs.take_changes(last);
    let slots = if last {
        server.handles.export()
    } else {
        Vec::new()
    };
    for shard in &slots {
        for (_, e) in shard.iter() {
            if let Some(e) = e {
                if !staged.known.contains_key(&e.inode.ino()) {
                    work.push(e.inode.clone());
                }
            }
        }
    }
    if !staged.known.contains_key(&fs.root().ino()) {
        return Err(Errno::EINVAL);
    }
    while let Some(inode) = work.pop() {
        if done.insert(inode.ino(), ()).is_some() {
            continue;
        }
        let mut rec = record(fs, &inode, &have)?;
        if rec.kind == FileType::Directory {
            let mut keep = Vec::with_capacity(rec.entries.len());
            for (name, ino) in std::mem::take(&mut rec.entries) {
                if !staged.known.contains_key(&ino) && !done.contains_key(&ino) {
                    match fs.lookup(&inode, &name, false) {
                        Ok(c) if c.ino() == ino => work.push(c),
                        // Changed since the listing: logged, the next
                        // round or the switch has it.
                        Ok(_) | Err(_) if !last => continue,
                        Ok(_) => return Err(Errno::EAGAIN),
                        Err(e) => return Err(e),
                    }
                }
                keep.push((name, ino));
            }
            rec.entries = keep;
        }
        nodes.push(rec);
    }
    Ok(write_image(KIND_DELTA, fs, &nodes, &slots))
}

fn write_image(
    kind: u8,
    fs: &Fs,
    nodes: &[NodeRec],
    slots: &[Vec<(u32, Option<Entry>)>],
) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    w.u64(fs.dev());
    w.0.push(kind);
    w.u64(fs.root().ino());
    w.u64(nodes.len() as u64);
    for n in nodes {
        w.u64(n.ino);
        w.0.push(kind_code(n.kind));
        w.u32(n.perm);
        w.u32(n.uid);
        w.u32(n.gid);
        w.u64(n.rdev);
        for t in [n.atime, n.mtime] {
            w.u64(t.sec as u64);
            w.u32(t.nsec);
        }
        match n.precopied {
            Some(v) => {
                w.0.push(1);
                w.u64(v);
            }
            None => {
                w.0.push(0);
                w.bytes(&n.data);
            }
        }
        w.u64(n.entries.len() as u64);
        for (name, ino) in &n.entries {
            w.bytes(name.as_bytes());
            w.u64(*ino);
        }
    }
    w.u64(slots.len() as u64);
    for shard in slots {
        w.u64(shard.len() as u64);
        for (seq, e) in shard {
            w.u32(*seq);
            match e {
                None => w.0.push(0),
                Some(e) => {
                    w.0.push(
                        1 | u8::from(e.access.read) << 1
                            | u8::from(e.access.write) << 2
                            | u8::from(e.access.path_only) << 3,
                    );
                    w.u64(e.client);
                    w.u64(e.inode.ino());
                }
            }
        }
    }
    w.0
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        if self.0.len() < n {
            return Err(Errno::EINVAL);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Errno> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Errno> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Errno> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A count of items of at least `min` bytes each: never more than the
    /// bytes left could hold (a forged count allocates nothing).
    fn count(&mut self, min: usize) -> Result<usize, Errno> {
        let n = self.u64()?;
        if n > (self.0.len() / min.max(1)) as u64 {
            return Err(Errno::EINVAL);
        }
        Ok(n as usize)
    }
    fn bytes(&mut self) -> Result<&'a [u8], Errno> {
        let n = self.count(1)?;
        self.take(n)
    }
}

/// A slot of the image: sequence number and (access flags, client,
/// inode number) of its entry.
type SlotRec = (u32, Option<(u8, u64, u64)>);
/// What the rebuild made: inode number -> (inode, a directory holding it
/// and its name there).
type Made = HashMap<u64, (Arc<Inode>, Option<(Arc<Inode>, String)>)>;

struct Image {
    kind: u8,
    root: u64,
    nodes: Vec<NodeRec>,
    slots: Vec<Vec<SlotRec>>,
}

fn decode(bytes: &[u8]) -> Result<Image, Errno> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return Err(Errno::EINVAL);
    }
    if r.u32()? != VERSION {
        return Err(Errno::EPROTO);
    }
    let _dev = r.u64()?; // checked by the caller (`image_dev`)
    let kind = r.u8()?;
    if kind > KIND_DELTA {
        return Err(Errno::EINVAL);
    }
    let root = r.u64()?;
    let n = r.count(50)?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let ino = r.u64()?;
        let kind = code_kind(r.u8()?)?;
        let perm = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let rdev = r.u64()?;
        let mut t = [Timespec::default(); 2];
        for x in &mut t {
            x.sec = r.u64()? as i64;
            x.nsec = r.u32()?;
        }
        let (data, precopied) = match r.u8()? {
            0 => (r.bytes()?.to_vec(), None),
            1 if kind == FileType::Regular => (Vec::new(), Some(r.u64()?)),
            _ => return Err(Errno::EINVAL),
        };
        let ne = r.count(16)?;
        let mut entries = Vec::with_capacity(ne);
        for _ in 0..ne {
            let name = std::str::from_utf8(r.bytes()?).map_err(|_| Errno::EINVAL)?;
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(Errno::EINVAL);
            }
            entries.push((name.to_string(), r.u64()?));
        }
        if perm > 0o7777 || ino == 0 {
            return Err(Errno::EINVAL);
        }
        nodes.push(NodeRec {
            ino,
            kind,
            perm,
            uid,
            gid,
            rdev,
            atime: t[0],
            mtime: t[1],
            data,
            precopied,
            entries,
            version: 0,
        });
    }
    let ns = r.count(8)?;
    let mut slots = Vec::with_capacity(ns);
    for _ in 0..ns {
        let n = r.count(5)?;
        let mut shard = Vec::with_capacity(n);
        for _ in 0..n {
            let seq = r.u32()?;
            let flags = r.u8()?;
            if flags & 1 == 0 {
                shard.push((seq, None));
            } else {
                let client = r.u64()?;
                let ino = r.u64()?;
                shard.push((seq, Some((flags, client, ino))));
            }
        }
        slots.push(shard);
    }
    if !r.0.is_empty() {
        return Err(Errno::EINVAL);
    }
    Ok(Image {
        kind,
        root,
        nodes,
        slots,
    })
}

/// Makes node `rec` as `name` in `dir` with its own inode number.
fn create(fs: &Fs, dir: &Arc<Inode>, name: &str, rec: &NodeRec) -> Result<Arc<Inode>, Errno> {
    fs.with_ino(rec.ino, || match rec.kind {
        FileType::Directory => fs.mkdir(dir, name, rec.perm),
        FileType::Regular => {
            let f = fs.open(dir, name, O_CREAT | O_EXCL | O_RDWR, rec.perm)?;
            let mut done = 0;
            while done < rec.data.len() {
                let (n, _) = f.write_at(done as u64, &rec.data[done..], false)?;
                if n == 0 {
                    return Err(Errno::ENOSPC);
                }
                done += n;
            }
            Ok(f)
        }
        FileType::Symlink => {
            let target = std::str::from_utf8(&rec.data).map_err(|_| Errno::EINVAL)?;
            fs.symlink(target, dir, name)
        }
        k => fs.mknod(dir, name, k, rec.perm, rec.rdev),
    })
}

/// The device number the image's namespace had (`st_dev`): the real
/// server checks that its new namespace got the same one, since the
/// kernel keys mapped files and socket names by (dev, ino).
pub fn image_dev(image: &[u8]) -> Result<u64, Errno> {
    let mut r = Reader(image);
    if r.take(8)? != MAGIC {
        return Err(Errno::EINVAL);
    }
    if r.u32()? != VERSION {
        return Err(Errno::EPROTO);
    }
    r.u64()
}

/// Where the successor keeps pre-copied files (in its root) until the
/// image names them; removed before it serves.
const HIDDEN: &str = ".fsd-precopy";

/// The successor's side: a fresh namespace, the pre-copied files in it
/// (each with its own inode number, under `HIDDEN`), then the image.
pub struct Receiver {
    fs: Fs,
    hidden: Option<Arc<Inode>>,
    /// Inode number -> (data version, inode, bytes received).
    files: HashMap<u64, (u64, Arc<Inode>, u64)>,
    /// After [`Receiver::stage`]: what the base image built (inode number
    /// -> inode and where one of its names is now), and the root's
    /// metadata (re-applied last: the rebuild's own names change it).
    staged: Option<(Made, NodeRec)>,
    /// The root's metadata between a round and its re-staging.
    staged_root: Option<NodeRec>,
}

impl Receiver {
    /// A receiver building on `fs` (fresh: nothing but its root).
    pub fn new(fs: Fs) -> Receiver {
        Receiver {
            fs,
            hidden: None,
            files: HashMap::new(),
            staged: None,
            staged_root: None,
        }
    }

    /// The namespace being built.
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    /// One piece of a pre-copied file (`precopy`'s `send`): offset 0
    /// starts the file (replacing an older version), later pieces must
    /// follow on.  `EINVAL` for pieces out of order.
    pub fn data(
        &mut self,
        ino: u64,
        version: u64,
        offset: u64,
        total: u64,
        bytes: &[u8],
    ) -> Result<(), Errno> {
        if ino == 0 || ino == self.fs.root().ino() {
            return Err(Errno::EINVAL);
        }
        let name = ino.to_string();
        if offset == 0 {
            let hidden = match &self.hidden {
                Some(h) => h.clone(),
                None => {
                    let h = self.fs.mkdir(&self.fs.root(), HIDDEN, 0o700)?;
                    self.hidden = Some(h.clone());
                    h
                }
            };
            if self.files.remove(&ino).is_some() {
                self.fs.unlink(&hidden, &name)?;
            }
            let f = self.fs.with_ino(ino, || {
                self.fs
                    .open(&hidden, &name, O_CREAT | O_EXCL | O_RDWR, 0o600)
            })?;
            self.files.insert(ino, (version, f, 0));
        }
        let e = self.files.get_mut(&ino).ok_or(Errno::EINVAL)?;
        if e.0 != version || e.2 != offset || offset + bytes.len() as u64 > total {
            return Err(Errno::EINVAL);
        }
        let mut done = 0;
        while done < bytes.len() {
            let (n, _) = e.1.write_at(offset + done as u64, &bytes[done..], false)?;
            if n == 0 {
                return Err(Errno::ENOSPC);
            }
            done += n;
        }
        e.2 += bytes.len() as u64;
        Ok(())
    }

    /// Builds the namespace of a base image (`export_base`) ahead of the
    /// switch, while the old instance still serves; [`Receiver::finish`]
    /// then takes the delta image.  `EINVAL` for another kind of image or
    /// a second base.
    pub fn stage(&mut self, image: &[u8]) -> Result<(), Errno> {
        let img = decode(image)?;
        if !img.slots.is_empty() {
            return Err(Errno::EINVAL);
        }
        if img.kind == KIND_DELTA && self.staged.is_some() {
            // A round before the switch (`export_round`).
            let made = self.apply_delta(&img, false)?;
            let root = self.staged_root.take().ok_or(Errno::EINVAL)?;
            self.staged = Some((made, root));
            return Ok(());
        }
        if img.kind != KIND_BASE || self.staged.is_some() {
            return Err(Errno::EINVAL);
        }
        // Pre-copied files the base has at another version go first (their
        // numbers are taken by what the base has instead); the others stay
        // for a delta that may name them.
        self.drop_stale(&img.nodes, false)?;
        let made = self.build_tree(&img)?;
        for rec in &img.nodes {
            if !made.contains_key(&rec.ino) {
                return Err(Errno::EINVAL); // a base names only reachable inodes
            }
        }
        // The pre-copied files the base linked into place lose their hidden
        // names now, so the switch does not pay for them.
        if let Some(hidden) = &self.hidden {
            let used: Vec<u64> = self
                .files
                .keys()
                .filter(|ino| made.contains_key(ino))
                .copied()
                .collect();
            for ino in used {
                self.files.remove(&ino);
                self.fs.unlink(hidden, &ino.to_string())?;
            }
        }
        apply_meta(&made, &img.nodes)?;
        let root = img
            .nodes
            .iter()
            .find(|n| n.ino == img.root)
            .ok_or(Errno::EINVAL)?
            .clone();
        self.staged = Some((made, root));
        Ok(())
    }

    /// Removes pre-copied files whose number `nodes` uses without their
    /// pre-copied version (`all`: also those `nodes` does not name).
    fn drop_stale(&mut self, nodes: &[NodeRec], all: bool) -> Result<(), Errno> {
        let Some(hidden) = &self.hidden else {
            return Ok(());
        };
        let named: HashMap<u64, Option<u64>> = nodes.iter().map(|n| (n.ino, n.precopied)).collect();
        let stale: Vec<u64> = self
            .files
            .iter()
            .filter(|(ino, (v, _, _))| match named.get(ino) {
                Some(p) => *p != Some(*v),
                None => all,
            })
            .map(|(ino, _)| *ino)
            .collect();
        for ino in stale {
            self.files.remove(&ino);
            self.fs.unlink(hidden, &ino.to_string())?;
        }
        Ok(())
    }

    /// The pre-copied file `rec` names, if it names one.
    fn precopied(&self, rec: &NodeRec) -> Result<Option<Arc<Inode>>, Errno> {
        match rec.precopied {
            None => Ok(None),
            Some(v) => match self.files.get(&rec.ino) {
                Some((fv, f, _)) if *fv == v => Ok(Some(f.clone())),
                _ => Err(Errno::EINVAL),
            },
        }
    }

    /// Makes `rec` (not made yet) as `name` in `dir`: the pre-copied file
    /// linked into place, or created; a new directory with its entries.
    fn attach_new(
        &self,
        made: &mut Made,
        dir: &Arc<Inode>,
        name: &str,
        rec: &NodeRec,
    ) -> Result<Arc<Inode>, Errno> {
        let fs = &self.fs;
        let node = match self.precopied(rec)? {
            Some(f) => {
                let hidden = self.hidden.as_ref().ok_or(Errno::EINVAL)?;
                fs.link(hidden, &rec.ino.to_string(), dir, name, false)?;
                f
            }
            None => create(fs, dir, name, rec)?,
        };
        made.insert(
            rec.ino,
            (node.clone(), Some((dir.clone(), name.to_string()))),
        );
        Ok(node)
    }

    /// The tree of a full or base image below the (fresh) root.
    fn build_tree(&self, img: &Image) -> Result<Made, Errno> {
        let fs = &self.fs;
        let by_ino: HashMap<u64, &NodeRec> = img.nodes.iter().map(|n| (n.ino, n)).collect();
        let root_rec = *by_ino.get(&img.root).ok_or(Errno::EINVAL)?;
        if root_rec.kind != FileType::Directory {
            return Err(Errno::EINVAL);
        }
        // Inode number -> (inode, a directory holding it, its name there).
        let mut made: Made = HashMap::new();
        let root = fs.root();
        made.insert(img.root, (root.clone(), None));
        let mut stack = vec![(root, root_rec)];
        while let Some((dir, rec)) = stack.pop() {
            for (name, ino) in &rec.entries {
                let child = *by_ino.get(ino).ok_or(Errno::EINVAL)?;
                if let Some((_, at)) = made.get(ino) {
                    let (odir, oname) = at.clone().ok_or(Errno::EINVAL)?;
                    if child.kind == FileType::Directory {
                        return Err(Errno::EINVAL); // no hard links to directories
                    }
                    fs.link(&odir, &oname, &dir, name, false)?;
                    continue;
                }
                let node = self.attach_new(&mut made, &dir, name, child)?;
                if child.kind == FileType::Directory {
                    stack.push((node, child));
                }
            }
        }
        Ok(made)
    }

    /// Inodes only handles reach, not made yet: made in the root, then
    /// removed again (a pre-copied one just loses its hidden name later).
    fn make_unreachable(&self, made: &mut Made, nodes: &[NodeRec]) -> Result<(), Errno> {
        let fs = &self.fs;
        for rec in nodes {
            if made.contains_key(&rec.ino) {
                continue;
            }
            if !rec.entries.is_empty() {
                return Err(Errno::EINVAL);
            }
            if let Some(f) = self.precopied(rec)? {
                made.insert(rec.ino, (f, None));
                continue;
            }
            let root = fs.root();
            let name = format!(".fsd-handover-{}", rec.ino);
            let node = create(fs, &root, &name, rec)?;
            if rec.kind == FileType::Directory {
                fs.rmdir(&root, &name)?;
            } else {
                fs.unlink(&root, &name)?;
            }
            made.insert(rec.ino, (node, None));
        }
        Ok(())
    }

    /// Removes the hidden directory of pre-copied files.
    fn drop_hidden(&mut self) -> Result<(), Errno> {
        if let Some(hidden) = self.hidden.take() {
            for ino in self.files.keys() {
                self.fs.unlink(&hidden, &ino.to_string())?;
            }
            drop(hidden);
            self.fs.rmdir(&self.fs.root(), HIDDEN)?;
        }
        self.files.clear();
        Ok(())
    }

    /// The server rebuilt from `image`: the same tree, data, inode numbers
    /// and handles.  `EPROTO` for another image version, `EINVAL` for a
    /// malformed or inconsistent image (one naming pre-copied data this
    /// receiver does not have at that version, too).  After
    /// [`Receiver::stage`] `image` is the delta (`export_delta`), applied
    /// to the staged namespace; else a full image (`export`).
    pub fn finish(mut self, image: &[u8], config: Config) -> Result<FileServer, Errno> {
        let img = decode(image)?;
        let made = match (img.kind, self.staged.is_some()) {
            (KIND_FULL, false) => {
                self.drop_stale(&img.nodes, true)?;
                let mut made = self.build_tree(&img)?;
                self.make_unreachable(&mut made, &img.nodes)?;
                self.drop_hidden()?;
                // Metadata last: creating entries changed the directories' times.
                apply_meta(&made, &img.nodes)?;
                made
            }
            (KIND_DELTA, true) => self.apply_delta(&img, true)?,
            _ => return Err(Errno::EINVAL),
        };
        let handles = restore_handles(&made, img.slots, &config)?;
        Ok(FileServer {
            fs: self.fs,
            handles,
            devices: Vec::new(),
            mounts: Mutex::new(Vec::new()),
            paths: crate::pathcache::PathCache::new(config.workers),
            config,
        })
    }

    /// Brings the staged namespace to the delta's state: names that
    /// changed in a changed directory move aside (to `LIMBO`), then each
    /// changed directory gets its entries (moved back, linked, or made
    /// new), changed files their data, and what stayed aside is removed.
    fn apply_delta(&mut self, img: &Image, last: bool) -> Result<Made, Errno> {
        let (mut made, mut root_meta) = self.staged.take().ok_or(Errno::EINVAL)?;
        let by_ino: HashMap<u64, &NodeRec> = img.nodes.iter().map(|n| (n.ino, n)).collect();
        // Pre-copied files whose numbers a new inode of the delta takes.
        let fresh: Vec<NodeRec> = img
            .nodes
            .iter()
            .filter(|n| !made.contains_key(&n.ino))
            .cloned()
            .collect();
        if let Some(hidden) = self.hidden.clone() {
            for rec in &fresh {
                if let Some((v, _, _)) = self.files.get(&rec.ino) {
                    if rec.precopied != Some(*v) {
                        self.files.remove(&rec.ino);
                        self.fs.unlink(&hidden, &rec.ino.to_string())?;
                    }
                }
            }
        }
        let fs = &self.fs;
        let root = fs.root();
        let limbo = fs.mkdir(&root, LIMBO, 0o700)?;
        // Where each made inode has a name now (updated as names move).
        let mut at: HashMap<u64, (Arc<Inode>, String)> = made
            .iter()
            .filter_map(|(ino, (_, a))| Some((*ino, a.clone()?)))
            .collect();
        // 1. Names of changed directories that the delta does not have.
        for rec in &img.nodes {
            if rec.kind != FileType::Directory {
                continue;
            }
            let Some((dir, _)) = made.get(&rec.ino) else {
                continue;
            };
            let dir = dir.clone();
            let want: HashMap<&str, u64> =
                rec.entries.iter().map(|(n, i)| (n.as_str(), *i)).collect();
            for (name, ino) in list(&dir)? {
                if rec.ino == img.root && (name == HIDDEN || name == LIMBO) {
                    continue;
                }
                if want.get(name.as_str()) == Some(&ino) {
                    continue;
                }
                let aside = ino.to_string();
                let is_loc = at
                    .get(&ino)
                    .is_some_and(|(d, n)| Arc::ptr_eq(d, &dir) && *n == name);
                let in_limbo = fs.lookup(&limbo, &aside, false).is_ok();
                if is_loc && !in_limbo {
                    fs.rename(&dir, &name, &limbo, &aside)?;
                    at.insert(ino, (limbo.clone(), aside));
                } else {
                    fs.unlink(&dir, &name)?;
                    if is_loc {
                        at.insert(ino, (limbo.clone(), aside)); // its other name
                    }
                }
            }
        }
        // 2. The names the delta has that are missing.
        for rec in &img.nodes {
            if rec.kind != FileType::Directory {
                continue;
            }
            let Some((dir, _)) = made.get(&rec.ino) else {
                continue; // a new directory: made with its entries below
            };
            let dir = dir.clone();
            let mut stack = vec![(dir, rec)];
            while let Some((dir, rec)) = stack.pop() {
                for (name, ino) in &rec.entries {
                    if fs.lookup(&dir, name, false).is_ok_and(|c| c.ino() == *ino) {
                        continue;
                    }
                    if let Some((node, _)) = made.get(ino) {
                        let node = node.clone();
                        let (odir, oname) = at.get(ino).cloned().ok_or(Errno::EINVAL)?;
                        if node.is_dir() {
                            fs.rename(&odir, &oname, &dir, name)?;
                            at.insert(*ino, (dir.clone(), name.clone()));
                        } else {
                            fs.link(&odir, &oname, &dir, name, false)?;
                            if Arc::ptr_eq(&odir, &limbo) {
                                at.insert(*ino, (dir.clone(), name.clone()));
                            }
                        }
                        continue;
                    }
                    let child = *by_ino.get(ino).ok_or(Errno::EINVAL)?;
                    let node = self.attach_new(&mut made, &dir, name, child)?;
                    at.insert(*ino, (dir.clone(), name.clone()));
                    if child.kind == FileType::Directory {
                        stack.push((node, child));
                    }
                }
            }
        }
        if last {
            self.make_unreachable(&mut made, &img.nodes)?;
        }
        // 3. Data of changed files the successor has at an older version.
        for rec in &img.nodes {
            if rec.kind != FileType::Regular || rec.precopied.is_some() {
                continue;
            }
            let Some((node, _)) = made.get(&rec.ino) else {
                continue;
            };
            if fresh.iter().any(|f| f.ino == rec.ino) {
                continue; // created with its data
            }
            node.truncate(0)?;
            let mut done = 0;
            while done < rec.data.len() {
                let (n, _) = node.write_at(done as u64, &rec.data[done..], false)?;
                if n == 0 {
                    return Err(Errno::ENOSPC);
                }
                done += n;
            }
        }
        // 4. What stayed aside is gone (handles keep what they still name).
        // Each made inode remembers where a name of it is now.
        for (ino, entry) in made.iter_mut() {
            entry.1 = match at.get(ino) {
                Some((d, _)) if Arc::ptr_eq(d, &limbo) => None,
                Some(loc) => Some(loc.clone()),
                None => entry.1.take(),
            };
        }
        remove_all(fs, &limbo)?;
        drop(limbo);
        fs.rmdir(&root, LIMBO)?;
        if last {
            self.drop_hidden()?;
        }
        // A node a round made or changed may not be reachable at all.
        let changed: Vec<NodeRec> = img
            .nodes
            .iter()
            .filter(|n| made.contains_key(&n.ino))
            .cloned()
            .collect();
        apply_meta(&made, &changed)?;
        if let Some(r) = by_ino.get(&img.root) {
            root_meta = (*r).clone();
        }
        apply_meta(&made, std::slice::from_ref(&root_meta))?;
        if !last {
            self.staged_root = Some(root_meta);
        }
        Ok(made)
    }
}

/// Where the successor puts names that changed while it applies a delta;
/// removed before it serves.
const LIMBO: &str = ".fsd-limbo";

/// A directory's entries (name, inode number) without `.` and `..`.
fn list(dir: &Arc<Inode>) -> Result<Vec<(String, u64)>, Errno> {
    let mut names = Vec::new();
    let mut cursor = DirCursor::default();
    dir.readdir(&mut cursor, |name, ino, _, _| {
        if name != "." && name != ".." {
            names.push((name.to_string(), ino));
        }
        true
    })?;
    Ok(names)
}

/// Removes everything below `dir`.
fn remove_all(fs: &Fs, dir: &Arc<Inode>) -> Result<(), Errno> {
    for (name, _) in list(dir)? {
        let child = fs.lookup(dir, &name, false)?;
        if child.is_dir() {
            remove_all(fs, &child)?;
            fs.rmdir(dir, &name)?;
        } else {
            fs.unlink(dir, &name)?;
        }
    }
    Ok(())
}

/// Owners, modes and times of `nodes` (after their entries were made).
fn apply_meta(made: &Made, nodes: &[NodeRec]) -> Result<(), Errno> {
    for rec in nodes {
        let node = &made.get(&rec.ino).ok_or(Errno::EINVAL)?.0;
        node.set_owner(Some(rec.uid), Some(rec.gid));
        node.set_perm(rec.perm);
        node.set_times(Some(rec.atime), Some(rec.mtime));
    }
    Ok(())
}

/// The handle table of an image, every entry naming a made inode.
fn restore_handles(
    made: &Made,
    slots: Vec<Vec<SlotRec>>,
    config: &Config,
) -> Result<HandleTable, Errno> {
    let mut shards: Vec<Vec<SlotImage>> = Vec::with_capacity(slots.len());
    for shard in slots {
        let mut out = Vec::with_capacity(shard.len());
        for (seq, e) in shard {
            let entry = match e {
                None => None,
                Some((flags, client, ino)) => {
                    let inode = made.get(&ino).ok_or(Errno::EINVAL)?.0.clone();
                    let access = Access {
                        read: flags & 2 != 0,
                        write: flags & 4 != 0,
                        path_only: flags & 8 != 0,
                    };
                    // An I/O handle counts among its inode's I/O users
                    // here as in `FileServer::new_handle` (one-copy
                    // grants stay the file's while it lives).
                    let io = (inode.kind() == FileType::Regular && (access.read || access.write))
                        .then(|| IoUser::new(inode.clone()));
                    Some(Entry {
                        inode,
                        client,
                        access,
                        io,
                    })
                }
            };
            out.push((seq, entry));
        }
        shards.push(out);
    }
    HandleTable::restore(
        shards,
        config.workers,
        config.handles_per_worker,
        config.handle_epoch,
    )
}

/// A server rebuilt from `image` alone (no pre-copy) on the fresh
/// namespace `fs`.
pub fn import(image: &[u8], fs: Fs, config: Config) -> Result<FileServer, Errno> {
    Receiver::new(fs).finish(image, config)
}
