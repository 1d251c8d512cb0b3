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

use crate::handles::{Access, Entry, HandleTable, SlotImage};
use crate::server::{Config, FileServer};

/// The first bytes of every image.
pub const MAGIC: &[u8; 8] = b"FSDSTATE";
/// The image format version this server writes and reads.
pub const VERSION: u32 = 1;

/// The control request the kernel sends on the service endpoint to make
/// the running instance hand over (outside `fsproto`'s operations; only
/// the kernel's badge may send it): w0 = the instance's handle of the
/// successor's hand-over endpoint.  The reply's w0 is the image size and
/// w1 the time the export took (ns).
pub const LABEL_HANDOVER: u64 = 0x4856_0001;
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

fn record(fs: &Fs, inode: &Arc<Inode>) -> Result<NodeRec, Errno> {
    let st = inode.stat();
    let kind = inode.kind();
    let mut data = Vec::new();
    let mut entries = Vec::new();
    match kind {
        FileType::Regular => {
            data = vec![0; st.size as usize];
            let mut done = 0;
            while done < data.len() {
                let n = inode.read_at(done as u64, &mut data[done..])?;
                if n == 0 {
                    break;
                }
                done += n;
            }
            data.truncate(done);
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
        entries,
    })
}

/// The state image of `server`.  `EBUSY` while superblocks are mounted
/// in it.
pub fn export(server: &FileServer) -> Result<Vec<u8>, Errno> {
    if !server.mounts.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
        return Err(Errno::EBUSY);
    }
    let fs = &server.fs;
    let root = fs.root();
    let mut seen: HashMap<u64, ()> = HashMap::new();
    let mut nodes = Vec::new();
    let mut stack = vec![root.clone()];
    seen.insert(root.ino(), ());
    while let Some(dir) = stack.pop() {
        let rec = record(fs, &dir)?;
        for (name, ino) in &rec.entries {
            if seen.insert(*ino, ()).is_some() {
                continue; // a hard link to a node already recorded
            }
            let child = fs.lookup(&dir, name, false)?;
            if child.is_dir() {
                stack.push(child);
            } else {
                nodes.push(record(fs, &child)?);
            }
        }
        nodes.push(rec);
    }
    let slots = server.handles.export();
    for shard in &slots {
        for (_, e) in shard {
            if let Some(e) = e {
                if seen.insert(e.inode.ino(), ()).is_none() {
                    nodes.push(record(fs, &e.inode)?);
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
        w.bytes(&n.data);
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

struct Image {
    root: u64,
    nodes: Vec<NodeRec>,
    slots: Vec<Vec<(u32, Option<(u8, u64, u64)>)>>,
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
        let data = r.bytes()?.to_vec();
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
    Ok(Image {
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

/// A server rebuilt from `image` on the fresh namespace `fs` (nothing in
/// it but its root): the same tree, data, inode numbers and handles.
/// `EPROTO` for another image version, `EINVAL` for a malformed or
/// inconsistent image.
pub fn import(image: &[u8], fs: Fs, config: Config) -> Result<FileServer, Errno> {
    let img = decode(image)?;
    let by_ino: HashMap<u64, &NodeRec> = img.nodes.iter().map(|n| (n.ino, n)).collect();
    let root_rec = *by_ino.get(&img.root).ok_or(Errno::EINVAL)?;
    if root_rec.kind != FileType::Directory {
        return Err(Errno::EINVAL);
    }
    // Inode number -> (inode, a directory holding it, its name there).
    let mut made: HashMap<u64, (Arc<Inode>, Option<(Arc<Inode>, String)>)> = HashMap::new();
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
            let node = create(&fs, &dir, name, child)?;
            made.insert(*ino, (node.clone(), Some((dir.clone(), name.clone()))));
            if child.kind == FileType::Directory {
                stack.push((node, child));
            }
        }
    }
    // Inodes only handles reach: made in the root, then removed again.
    for rec in &img.nodes {
        if made.contains_key(&rec.ino) {
            continue;
        }
        if !rec.entries.is_empty() {
            return Err(Errno::EINVAL);
        }
        let root = fs.root();
        let name = format!(".fsd-handover-{}", rec.ino);
        let node = create(&fs, &root, &name, rec)?;
        if rec.kind == FileType::Directory {
            fs.rmdir(&root, &name)?;
        } else {
            fs.unlink(&root, &name)?;
        }
        made.insert(rec.ino, (node, None));
    }
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
                Some((flags, client, ino)) => Some(Entry {
                    inode: made.get(&ino).ok_or(Errno::EINVAL)?.0.clone(),
                    client,
                    access: Access {
                        read: flags & 2 != 0,
                        write: flags & 4 != 0,
                        path_only: flags & 8 != 0,
                    },
                }),
            };
            out.push((seq, entry));
        }
        shards.push(out);
    }
    let handles = HandleTable::restore(shards, config.workers, config.handles_per_worker)?;
    Ok(FileServer {
        fs,
        handles,
        devices: Vec::new(),
        mounts: Mutex::new(Vec::new()),
        config,
    })
}
