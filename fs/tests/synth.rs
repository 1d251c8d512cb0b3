//! Generated inodes (`fs::synth`): a provider answers the names of a
//! generated mount; its files' bytes come at open; magic links follow to
//! the inode they hold (even one in another superblock); proxies report
//! the stat they were given; nothing can be created in a generated
//! directory; `..` and `path_of` work through it.  Both lock modes.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{DirCursor, Errno, FileType, Fs, FsConfig, FsResult, Gen, Inode, LockMode, Provider};

const ROOT: u64 = 0;
const SUB: u64 = 1;
const FILE: u64 = 2;

/// A provider with `file`, `sub/`, `link` -> `file`, `magic` -> `/data`,
/// `proxy`; `opens` counts the contents made.
struct Test {
    target: Arc<Inode>,
    opens: AtomicU64,
    me: std::sync::OnceLock<std::sync::Weak<Test>>,
}

impl Test {
    fn gen(&self, key: u64) -> Gen {
        let me: Arc<dyn Provider> = self.me.get().unwrap().upgrade().unwrap();
        Gen { provider: me, key }
    }
}

impl Provider for Test {
    fn lookup(&self, dir: &Arc<Inode>, key: u64, name: &str) -> FsResult<Arc<Inode>> {
        match (key, name) {
            (ROOT, "file") => Ok(dir.gen_file(100, 0o444, self.gen(FILE))),
            (ROOT, "sub") => Ok(dir.gen_dir(101, 0o555, self.gen(SUB))),
            (ROOT, "link") => Ok(dir.gen_symlink(102, "file".into())),
            (ROOT, "magic") => {
                Ok(dir.gen_magic(103, 0o777, self.target.clone(), None, Some(self.gen(9))))
            }
            (ROOT, "proxy") => {
                let mut st = self.target.stat();
                st.mode = 0o010600;
                st.ino = 104;
                let payload: Arc<dyn Any + Send + Sync> = Arc::new(7u32);
                Ok(dir.gen_proxy(st, payload))
            }
            (SUB, "file") => Ok(dir.gen_file(105, 0o444, self.gen(FILE))),
            // A magic link to the directory holding it (like
            // `/proc/self/cwd` in the cwd): each hop counts as a link.
            (ROOT, "here") => Ok(dir.gen_magic(106, 0o777, dir.clone(), Some("/gen".into()), None)),
            _ => Err(Errno::ENOENT),
        }
    }

    fn list(&self, key: u64) -> Vec<(String, u64, FileType)> {
        match key {
            ROOT => vec![
                ("file".into(), 100, FileType::Regular),
                ("sub".into(), 101, FileType::Directory),
                ("link".into(), 102, FileType::Symlink),
            ],
            _ => vec![("file".into(), 105, FileType::Regular)],
        }
    }

    fn link_text(&self, key: u64, target: &Arc<Inode>) -> String {
        assert_eq!(key, 9);
        assert!(Arc::ptr_eq(target, &self.target));
        "/data".into()
    }

    fn contents(&self, key: u64) -> FsResult<Vec<u8>> {
        assert_eq!(key, FILE);
        let n = self.opens.fetch_add(1, Ordering::Relaxed);
        Ok(format!("open {n}\n").into_bytes())
    }
}

fn setup(mode: LockMode) -> (Fs, Arc<Test>) {
    let fs = Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 12,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    );
    let data = fs
        .open(&fs.root(), "/data", O_CREAT | O_RDWR, 0o644)
        .unwrap();
    data.write_at(0, b"real data", false).unwrap();
    fs.mkdir(&fs.root(), "/gen", 0o555).unwrap();
    let test = Arc::new(Test {
        target: data,
        opens: AtomicU64::new(0),
        me: std::sync::OnceLock::new(),
    });
    test.me.set(Arc::downgrade(&test)).unwrap();
    let gen = fs.new_generated_mount(test.clone(), ROOT);
    fs.mount(&fs.root(), "/gen", &gen).unwrap();
    (fs, test)
}

fn both(f: impl Fn(&Fs, &Test)) {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let (fs, test) = setup(mode);
        f(&fs, &test);
    }
}

#[test]
fn names_come_from_the_provider_with_stable_numbers() {
    both(|fs, _| {
        let r = fs.root();
        let f = fs.lookup(&r, "/gen/file", true).unwrap();
        assert_eq!(f.kind(), FileType::Regular);
        assert_eq!(f.ino(), 100);
        assert_eq!(fs.lookup(&r, "/gen/file", true).unwrap().ino(), 100);
        assert_eq!(fs.lookup(&r, "/gen/sub/file", true).unwrap().ino(), 105);
        assert_eq!(fs.lookup(&r, "/gen/none", true).unwrap_err(), Errno::ENOENT);
        assert_eq!(fs.lookup(&r, "/gen/sub/../file", true).unwrap().ino(), 100);
        assert_eq!(fs.lookup(&r, "/gen/../data", true).unwrap().size(), 9);
        let sub = fs.lookup(&r, "/gen/sub", true).unwrap();
        assert_eq!(fs.path_of(&sub).unwrap(), "/gen/sub");
    });
}

#[test]
fn file_bytes_are_made_at_each_open() {
    both(|fs, _| {
        let f = fs.lookup(&fs.root(), "/gen/file", true).unwrap();
        assert_eq!(f.generated_contents().unwrap().unwrap(), b"open 0\n");
        assert_eq!(f.generated_contents().unwrap().unwrap(), b"open 1\n");
        assert_eq!(f.size(), 0);
        let real = fs.lookup(&fs.root(), "/data", true).unwrap();
        assert!(real.generated_contents().is_none());
    });
}

#[test]
fn links_and_magic_links() {
    both(|fs, test| {
        let r = fs.root();
        assert_eq!(fs.lookup(&r, "/gen/link", true).unwrap().ino(), 100);
        let magic = fs.lookup(&r, "/gen/magic", false).unwrap();
        assert_eq!(magic.kind(), FileType::Symlink);
        assert_eq!(magic.stat().size, 64);
        assert_eq!(fs.readlink(&r, "/gen/magic").unwrap(), "/data");
        let followed = fs.lookup(&r, "/gen/magic", true).unwrap();
        assert!(Arc::ptr_eq(&followed, &test.target));
        // Opening through it opens the inode held, not its text.
        let opened = fs.open(&r, "/gen/magic", O_RDONLY, 0).unwrap();
        assert!(Arc::ptr_eq(&opened, &test.target));
        let st = fs.stat_path(&r, "/gen/proxy", true).unwrap();
        assert_eq!((st.mode, st.ino), (0o010600, 104));
        let proxy = fs.lookup(&r, "/gen/proxy", true).unwrap();
        assert_eq!(proxy.kind(), FileType::Fifo);
        let payload = proxy.payload().unwrap().clone();
        assert_eq!(*payload.downcast::<u32>().unwrap(), 7);
    });
}

#[test]
fn magic_links_count_towards_the_symlink_limit() {
    both(|fs, _| {
        let r = fs.root();
        let hops = |n: u32| format!("/gen/{}file", "here/".repeat(n as usize));
        let max = fs::MAX_SYMLINKS;
        assert_eq!(fs.lookup(&r, &hops(max), true).unwrap().ino(), 100);
        assert_eq!(
            fs.lookup(&r, &hops(max + 1), true).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            fs.open(&r, &hops(max + 1), O_RDONLY, 0).unwrap_err(),
            Errno::ELOOP
        );
    });
}

#[test]
fn listing_and_no_creation() {
    both(|fs, _| {
        let r = fs.root();
        let dir = fs.lookup(&r, "/gen", true).unwrap();
        let mut names = Vec::new();
        let mut cursor = DirCursor::default();
        let mut offs = Vec::new();
        dir.readdir(&mut cursor, |n, ino, kind, off| {
            names.push((n.to_string(), ino, kind));
            offs.push(off);
            true
        })
        .unwrap();
        // Each entry's d_off is the position after it, generated ones too.
        assert_eq!(offs, [1, 2, 3, 4, 5]);
        assert_eq!(cursor.position, 5);
        let got: Vec<&str> = names.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(got, [".", "..", "file", "sub", "link"]);
        // Resuming after a partial listing (the entry refused is not
        // consumed) neither repeats nor skips entries.
        let mut cursor = DirCursor::default();
        let mut first = Vec::new();
        dir.readdir(&mut cursor, |n, _, _, _| {
            first.push(n.to_string());
            first.len() < 3
        })
        .unwrap();
        // Kept as plain data between the calls (as the file server does).
        let (pos, state, after) = cursor.to_parts();
        let mut cursor = DirCursor::from_parts(pos, state, after).unwrap();
        let mut rest = Vec::new();
        dir.readdir(&mut cursor, |n, _, _, _| {
            rest.push(n.to_string());
            true
        })
        .unwrap();
        assert_eq!(first, [".", "..", "file"]);
        assert_eq!(rest, ["file", "sub", "link"]);
        // Stopping after generated entries resumes after them.
        let mut cursor = DirCursor::default();
        let mut n = 0;
        dir.readdir(&mut cursor, |_, _, _, _| {
            n += 1;
            n <= 4
        })
        .unwrap();
        let mut rest = Vec::new();
        dir.readdir(&mut cursor, |n, _, _, _| {
            rest.push(n.to_string());
            true
        })
        .unwrap();
        assert_eq!(rest, ["link"]);
        assert_eq!(
            fs.open(&r, "/gen/new", O_CREAT | O_WRONLY, 0o644)
                .unwrap_err(),
            Errno::EACCES
        );
        assert_eq!(
            fs.mkdir(&r, "/gen/sub/d", 0o755).unwrap_err(),
            Errno::EACCES
        );
    });
}
