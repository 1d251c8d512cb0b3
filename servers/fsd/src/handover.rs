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
/// The image format version this server writes and reads.
pub const VERSION: u32 = 1;

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
    match kind {
        FileType::Regular => {
            let (version, mapped) = inode.data_version().ok_or(Errno::EINVAL)?;
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
    if !server
        .mounts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
    {
        return Err(Errno::EBUSY);
    }
    let fs = &server.fs;
    let root = fs.root();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let mut nodes = Vec::new();
    let mut stack = vec![root.clone()];
    seen.insert(root.ino(), ());
    while let Some(dir) = stack.pop() {
        let rec = record(fs, &dir, sent)?;
        for (name, ino) in &rec.entries {
            if seen.insert(*ino, ()).is_some() {
                continue; // a hard link to a node already recorded
            }
            let child = fs.lookup(&dir, name, false)?;
            if child.is_dir() {
                stack.push(child);
            } else {
                nodes.push(record(fs, &child, sent)?);
            }
        }
        nodes.push(rec);
    }
    let slots = server.handles.export();
    for shard in &slots {
        for (_, e) in shard {
            if let Some(e) = e {
                if seen.insert(e.inode.ino(), ()).is_none() {
                    nodes.push(record(fs, &e.inode, sent)?);
                }
            }
        }
    }
    let mut w = Writer(Vec::new());
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    w.u64(fs.dev());
    w.u64(root.ino());
    w.u64(nodes.len() as u64);
    for n in &nodes {
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
    for shard in &slots {
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
    Ok(w.0)
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
    Ok(Image { root, nodes, slots })
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
}

impl Receiver {
    /// A receiver building on `fs` (fresh: nothing but its root).
    pub fn new(fs: Fs) -> Receiver {
        Receiver {
            fs,
            hidden: None,
            files: HashMap::new(),
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

    /// The server rebuilt from `image`: the same tree, data, inode numbers
    /// and handles.  `EPROTO` for another image version, `EINVAL` for a
    /// malformed or inconsistent image (one naming pre-copied data this
    /// receiver does not have at that version, too).
    pub fn finish(mut self, image: &[u8], config: Config) -> Result<FileServer, Errno> {
        let img = decode(image)?;
        let fs = &self.fs;
        // Pre-copied files the image does not take as they are go first,
        // so their numbers are free for what the image has instead.
        if let Some(hidden) = &self.hidden {
            let keep: HashMap<u64, u64> = img
                .nodes
                .iter()
                .filter_map(|n| Some((n.ino, n.precopied?)))
                .collect();
            let stale: Vec<u64> = self
                .files
                .iter()
                .filter(|(ino, (v, _, _))| keep.get(ino) != Some(v))
                .map(|(ino, _)| *ino)
                .collect();
            for ino in stale {
                self.files.remove(&ino);
                fs.unlink(hidden, &ino.to_string())?;
            }
        }
        let by_ino: HashMap<u64, &NodeRec> = img.nodes.iter().map(|n| (n.ino, n)).collect();
        let root_rec = *by_ino.get(&img.root).ok_or(Errno::EINVAL)?;
        if root_rec.kind != FileType::Directory {
            return Err(Errno::EINVAL);
        }
        let precopied = |rec: &NodeRec| -> Result<Option<Arc<Inode>>, Errno> {
            match rec.precopied {
                None => Ok(None),
                Some(v) => match self.files.get(&rec.ino) {
                    Some((fv, f, _)) if *fv == v => Ok(Some(f.clone())),
                    _ => Err(Errno::EINVAL),
                },
            }
        };
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
                let node = match precopied(child)? {
                    Some(f) => {
                        let hidden = self.hidden.as_ref().ok_or(Errno::EINVAL)?;
                        fs.link(hidden, &ino.to_string(), &dir, name, false)?;
                        f
                    }
                    None => create(fs, &dir, name, child)?,
                };
                made.insert(*ino, (node.clone(), Some((dir.clone(), name.clone()))));
                if child.kind == FileType::Directory {
                    stack.push((node, child));
                }
            }
        }
        // Inodes only handles reach: made in the root, then removed again
        // (a pre-copied one just loses its hidden name below).
        for rec in &img.nodes {
            if made.contains_key(&rec.ino) {
                continue;
            }
            if !rec.entries.is_empty() {
                return Err(Errno::EINVAL);
            }
            if let Some(f) = precopied(rec)? {
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
        if let Some(hidden) = self.hidden.take() {
            for ino in self.files.keys() {
                fs.unlink(&hidden, &ino.to_string())?;
            }
            drop(hidden);
            fs.rmdir(&fs.root(), HIDDEN)?;
        }
        self.files.clear();
        let fs = self.fs;
        // Metadata last: creating entries changed the directories' times.
        for rec in &img.nodes {
            let node = &made.get(&rec.ino).ok_or(Errno::EINVAL)?.0;
            node.set_owner(Some(rec.uid), Some(rec.gid));
            node.set_perm(rec.perm);
            node.set_times(Some(rec.atime), Some(rec.mtime));
        }
        let mut shards: Vec<Vec<SlotImage>> = Vec::with_capacity(img.slots.len());
        for shard in img.slots {
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
                        let io = (inode.kind() == FileType::Regular
                            && (access.read || access.write))
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
        let handles = HandleTable::restore(
            shards,
            config.workers,
            config.handles_per_worker,
            config.handle_epoch,
        )?;
        Ok(FileServer {
            fs,
            handles,
            devices: Vec::new(),
            mounts: Mutex::new(Vec::new()),
            config,
        })
    }
}

/// A server rebuilt from `image` alone (no pre-copy) on the fresh
/// namespace `fs`.
pub fn import(image: &[u8], fs: Fs, config: Config) -> Result<FileServer, Errno> {
    Receiver::new(fs).finish(image, config)
}
