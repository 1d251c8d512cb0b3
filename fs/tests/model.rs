//! Property test: random sequences of namespace and data operations give
//! the same results (values and errno) as a simple in-memory model, and the
//! final tree, link counts and file contents agree.

use std::collections::BTreeMap;
use std::sync::Arc;

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{DirCursor, Errno, Fs, FsConfig, LockMode};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum MNode {
    Dir(BTreeMap<String, MNode>),
    File(usize),
}

#[derive(Default)]
struct Model {
    root: BTreeMap<String, MNode>,
    data: Vec<Vec<u8>>,
    nlink: Vec<u32>,
}

type R<T> = Result<T, Errno>;

impl Model {
    fn dir_mut(&mut self, comps: &[String]) -> R<&mut BTreeMap<String, MNode>> {
        let mut cur = &mut self.root;
        for c in comps {
            match cur.get_mut(c) {
                None => return Err(Errno::ENOENT),
                Some(MNode::File(_)) => return Err(Errno::ENOTDIR),
                Some(MNode::Dir(d)) => cur = d,
            }
        }
        Ok(cur)
    }
    fn get(&mut self, p: &[String]) -> R<MNode> {
        let (last, parent) = p.split_last().unwrap();
        self.dir_mut(parent)?
            .get(last)
            .cloned()
            .ok_or(Errno::ENOENT)
    }
    fn create(&mut self, p: &[String]) -> R<()> {
        let id = self.data.len();
        let (last, parent) = p.split_last().unwrap();
        let d = self.dir_mut(parent)?;
        if d.contains_key(last) {
            return Err(Errno::EEXIST);
        }
        d.insert(last.clone(), MNode::File(id));
        self.data.push(Vec::new());
        self.nlink.push(1);
        Ok(())
    }
    fn mkdir(&mut self, p: &[String]) -> R<()> {
        let (last, parent) = p.split_last().unwrap();
        let d = self.dir_mut(parent)?;
        if d.contains_key(last) {
            return Err(Errno::EEXIST);
        }
        d.insert(last.clone(), MNode::Dir(BTreeMap::new()));
        Ok(())
    }
    fn unlink(&mut self, p: &[String]) -> R<()> {
        let (last, parent) = p.split_last().unwrap();
        let d = self.dir_mut(parent)?;
        match d.get(last) {
            None => Err(Errno::ENOENT),
            Some(MNode::Dir(_)) => Err(Errno::EISDIR),
            Some(MNode::File(id)) => {
                let id = *id;
                d.remove(last);
                self.nlink[id] -= 1;
                Ok(())
            }
        }
    }
    fn rmdir(&mut self, p: &[String]) -> R<()> {
        let (last, parent) = p.split_last().unwrap();
        let d = self.dir_mut(parent)?;
        match d.get(last) {
            None => Err(Errno::ENOENT),
            Some(MNode::File(_)) => Err(Errno::ENOTDIR),
            Some(MNode::Dir(c)) if !c.is_empty() => Err(Errno::ENOTEMPTY),
            Some(MNode::Dir(_)) => {
                d.remove(last);
                Ok(())
            }
        }
    }
    fn link(&mut self, a: &[String], b: &[String]) -> R<()> {
        let id = match self.get(a)? {
            MNode::Dir(_) => return Err(Errno::EPERM),
            MNode::File(id) => id,
        };
        let (last, parent) = b.split_last().unwrap();
        let d = self.dir_mut(parent)?;
        if d.contains_key(last) {
            return Err(Errno::EEXIST);
        }
        d.insert(last.clone(), MNode::File(id));
        self.nlink[id] += 1;
        Ok(())
    }
    fn rename(&mut self, a: &[String], b: &[String]) -> R<()> {
        let (al, ap) = a.split_last().unwrap();
        let (bl, bp) = b.split_last().unwrap();
        self.dir_mut(ap)?;
        self.dir_mut(bp)?;
        let src = self.dir_mut(ap)?.get(al).cloned().ok_or(Errno::ENOENT)?;
        if matches!(src, MNode::Dir(_)) && ap != bp && bp.len() >= a.len() && bp[..a.len()] == *a {
            return Err(Errno::EINVAL);
        }
        let dst = self.dir_mut(bp)?.get(bl).cloned();
        if let Some(dst) = &dst {
            match (&src, dst) {
                (MNode::File(x), MNode::File(y)) if x == y => return Ok(()),
                _ if a == b => return Ok(()),
                (MNode::Dir(_), MNode::File(_)) => return Err(Errno::ENOTDIR),
                (MNode::File(_), MNode::Dir(_)) => return Err(Errno::EISDIR),
                (MNode::Dir(_), MNode::Dir(c)) if !c.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
            if let MNode::File(y) = dst {
                self.nlink[*y] -= 1;
            }
        }
        let moved = self.dir_mut(ap)?.remove(al).unwrap();
        self.dir_mut(bp)?.insert(bl.clone(), moved);
        Ok(())
    }
    fn file(&mut self, p: &[String]) -> R<usize> {
        match self.get(p)? {
            MNode::Dir(_) => Err(Errno::EISDIR),
            MNode::File(id) => Ok(id),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create(Vec<String>),
    Mkdir(Vec<String>),
    Unlink(Vec<String>),
    Rmdir(Vec<String>),
    Link(Vec<String>, Vec<String>),
    Rename(Vec<String>, Vec<String>),
    Write(Vec<String>, u16, u16, u8),
    Truncate(Vec<String>, u16),
    Read(Vec<String>),
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
        1..4,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => path().prop_map(Op::Create),
        3 => path().prop_map(Op::Mkdir),
        2 => path().prop_map(Op::Unlink),
        2 => path().prop_map(Op::Rmdir),
        1 => (path(), path()).prop_map(|(a, b)| Op::Link(a, b)),
        3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), 0..20000u16, 1..6000u16, any::<u8>()).prop_map(|(p, o, l, b)| Op::Write(p, o, l, b)),
        1 => (path(), 0..20000u16).prop_map(|(p, s)| Op::Truncate(p, s)),
        2 => path().prop_map(Op::Read),
    ]
}

fn s(p: &[String]) -> String {
    format!("/{}", p.join("/"))
}

fn check_tree(fs: &Fs, dir: &Arc<fs::Inode>, m: &BTreeMap<String, MNode>, model: &Model) {
    let mut names = Vec::new();
    dir.readdir(&mut DirCursor::default(), |n, _, _, _| {
        names.push(n.to_string());
        true
    })
    .unwrap();
    names.retain(|n| n != "." && n != "..");
    names.sort();
    let want: Vec<String> = m.keys().cloned().collect();
    assert_eq!(names, want);
    let mut subdirs = 0;
    for (name, node) in m {
        let c = fs.lookup(dir, name, false).unwrap();
        match node {
            MNode::Dir(sub) => {
                subdirs += 1;
                check_tree(fs, &c, sub, model);
            }
            MNode::File(id) => {
                assert_eq!(c.nlink(), model.nlink[*id]);
                let mut buf = vec![0; model.data[*id].len() + 10];
                let n = c.read_at(0, &mut buf).unwrap();
                assert_eq!(&buf[..n], &model.data[*id][..]);
                assert_eq!(c.stat().size as usize, model.data[*id].len());
            }
        }
    }
    assert_eq!(dir.nlink(), 2 + subdirs);
}

fn run(ops: Vec<Op>, mode: LockMode) {
    let pages = HeapPages::new();
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 16,
        },
        pages.clone(),
        Arc::new(SystemClock),
    );
    let r = fs.root();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Create(p) => {
                let got = fs
                    .open(&r, &s(&p), O_CREAT | O_EXCL | O_RDWR, 0o644)
                    .map(|_| ());
                assert_eq!(got, m.create(&p), "create {p:?}");
            }
            Op::Mkdir(p) => assert_eq!(
                fs.mkdir(&r, &s(&p), 0o755).map(|_| ()),
                m.mkdir(&p),
                "mkdir {p:?}"
            ),
            Op::Unlink(p) => assert_eq!(fs.unlink(&r, &s(&p)), m.unlink(&p), "unlink {p:?}"),
            Op::Rmdir(p) => assert_eq!(fs.rmdir(&r, &s(&p)), m.rmdir(&p), "rmdir {p:?}"),
            Op::Link(a, b) => assert_eq!(
                fs.link(&r, &s(&a), &r, &s(&b), false),
                m.link(&a, &b),
                "link {a:?} {b:?}"
            ),
            Op::Rename(a, b) => assert_eq!(
                fs.rename(&r, &s(&a), &r, &s(&b)),
                m.rename(&a, &b),
                "rename {a:?} {b:?}"
            ),
            Op::Write(p, off, len, byte) => {
                let got = fs
                    .open(&r, &s(&p), O_RDWR, 0)
                    .and_then(|f| f.write_at(off as u64, &vec![byte; len as usize], false));
                let want = m.file(&p).map(|id| {
                    let d = &mut m.data[id];
                    let end = off as usize + len as usize;
                    if d.len() < end {
                        d.resize(end, 0);
                    }
                    d[off as usize..end].fill(byte);
                    (len as usize, end as u64)
                });
                assert_eq!(got, want, "write {p:?}");
            }
            Op::Truncate(p, size) => {
                let got = fs
                    .open(&r, &s(&p), O_RDWR, 0)
                    .and_then(|f| f.truncate(size as u64));
                let want = m.file(&p).map(|id| m.data[id].resize(size as usize, 0));
                assert_eq!(got, want, "truncate {p:?}");
            }
            Op::Read(p) => {
                let got = fs.open(&r, &s(&p), O_RDONLY, 0).and_then(|f| {
                    let mut b = vec![0; 30000];
                    let n = f.read_at(0, &mut b)?;
                    b.truncate(n);
                    Ok(b)
                });
                let want = match m.get(&p) {
                    Ok(MNode::File(id)) => Ok(m.data[id].clone()),
                    Ok(MNode::Dir(_)) => Err(Errno::EISDIR),
                    Err(e) => Err(e),
                };
                match (&got, &want) {
                    // Reading a directory: open(O_RDONLY) works, read fails.
                    (Err(g), Err(w)) if *w == Errno::EISDIR => assert_eq!(*g, Errno::EISDIR),
                    _ => assert_eq!(got, want, "read {p:?}"),
                }
            }
        }
    }
    check_tree(&fs, &r, &m.root, &m);
    let held: usize = {
        let mut total = 0;
        fn count(n: &BTreeMap<String, MNode>, ids: &mut std::collections::BTreeSet<usize>) {
            for v in n.values() {
                match v {
                    MNode::Dir(d) => count(d, ids),
                    MNode::File(id) => {
                        ids.insert(*id);
                    }
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        count(&m.root, &mut ids);
        for id in ids {
            total += m.data[id].len().div_ceil(4096);
        }
        total
    };
    // Reachable files hold at most one page per 4 KiB (holes hold none);
    // unreachable ones hold none (once their entries' grace period ran).
    fs.flush_deferred();
    assert!(
        fs.stats().used_pages as usize <= held,
        "{} > {held}",
        fs.stats().used_pages
    );
    drop(r);
    drop(fs);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_model_percpu(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, LockMode::PerCpu);
    }

    #[test]
    fn matches_model_global(ops in prop::collection::vec(op(), 1..40)) {
        run(ops, LockMode::Global);
    }
}
