//! Differential test program: exercises POSIX file-system cases
//! through Rust std and prints one line per case.  Built as a
//! static Linux executable and run as PID 1 both on this kernel and on
//! Linux (tmpfs); the outputs must be identical.
//!
//!   cargo build --release -p userland --bin posix_diff --target x86_64-unknown-linux-musl
//!
//! Works in a fresh directory `/fsdiff` (or the first argument).  Prints
//! errors as errno names, never panics on an unexpected result: a wrong
//! answer shows up as a different line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};

fn errno_name(e: &io::Error) -> String {
    let n = e.raw_os_error().unwrap_or(-1);
    match abi::Errno(n).name() {
        Some(name) => name.to_string(),
        None => format!("errno{n}"),
    }
}

fn show<T: std::fmt::Debug>(r: io::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(e) => errno_name(&e),
    }
}

fn case(name: &str, r: impl std::fmt::Display) {
    println!("{name}: {r}");
}

fn meta(p: &str) -> String {
    match fs::symlink_metadata(p) {
        Ok(m) => format!(
            "mode={:o} nlink={} size={} blocks={}",
            m.mode(),
            m.nlink(),
            if m.is_dir() { 0 } else { m.size() },
            m.blocks()
        ),
        Err(e) => errno_name(&e),
    }
}

fn names(dir: &str) -> String {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v.join(",")
        }
        Err(e) => errno_name(&e),
    }
}

/// mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0) by raw
/// system call (the example has no libc crate).
fn mmap_shared(fd: i32, len: usize) -> io::Result<usize> {
    let ret: isize;
    // SAFETY: system call 9 creates a new mapping chosen by the kernel; it
    // reads no memory of ours.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") 9isize => ret, in("rdi") 0usize, in("rsi") len,
            in("rdx") 3usize, in("r10") 1usize, in("r8") fd as isize, in("r9") 0usize,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    if ret < 0 && ret > -4096 {
        Err(io::Error::from_raw_os_error(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

/// The address a SIGBUS must report (set by the child that expects one).
static BUS_EXPECTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// SIGBUS handler: exits with 100 + si_code, plus 50 if si_addr is not the
/// address touched.
extern "C" fn on_sigbus(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // `_exit` is async-signal-safe.
    unsafe {
        let addr = (*info).si_addr() as usize;
        let wrong = if addr == BUS_EXPECTED.load(std::sync::atomic::Ordering::Relaxed) {
            0
        } else {
            50
        };
        libc::_exit(100 + (*info).si_code + wrong)
    }
}

fn munmap(addr: usize, len: usize) {
    // SAFETY: unmaps a mapping this program made and no longer uses.
    unsafe {
        let _ret: isize;
        std::arch::asm!("syscall", inlateout("rax") 11isize => _ret, in("rdi") addr, in("rsi") len,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/fsdiff".to_string());
    let p = |s: &str| format!("{base}/{s}");
    case("mkdir base", show(fs::create_dir(&base)));
    case("mkdir again", show(fs::create_dir(&base)));

    // Create, write, stat.
    case("write", show(fs::write(p("f"), b"hello")));
    case("stat f", meta(&p("f")));
    case("read f", show(fs::read_to_string(p("f"))));
    case(
        "excl",
        show(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p("f"))
                .map(|_| ()),
        ),
    );
    case("open missing", show(File::open(p("missing")).map(|_| ())));
    case(
        "o_directory on file",
        show(
            OpenOptions::new()
                .read(true)
                .custom_flags(0o200000)
                .open(p("f"))
                .map(|_| ()),
        ),
    );
    case(
        "open dir for write",
        show(OpenOptions::new().write(true).open(&base).map(|_| ())),
    );
    case("path through file", meta(&p("f/x")));
    case("trailing slash on file", meta(&p("f/")));

    // O_APPEND and O_TRUNC.
    let r = (|| -> io::Result<String> {
        let mut f = OpenOptions::new().append(true).open(p("f"))?;
        f.write_all(b" world")?;
        f.seek(SeekFrom::Start(0))?;
        f.write_all(b"!")?;
        fs::read_to_string(p("f"))
    })();
    case("append", show(r));
    let r = (|| -> io::Result<u64> {
        OpenOptions::new().write(true).truncate(true).open(p("f"))?;
        Ok(fs::metadata(p("f"))?.len())
    })();
    case("truncate on open", show(r));

    // Sparse files, holes, ftruncate.
    let r = (|| -> io::Result<String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("sparse"))?;
        f.write_at(b"end", 1 << 20)?;
        let mut hole = vec![1u8; 4096];
        f.read_exact_at(&mut hole, 4096)?;
        let m = f.metadata()?;
        f.set_len(10)?;
        let m2 = f.metadata()?;
        f.set_len(8192)?;
        let mut tail = [9u8; 4];
        f.read_exact_at(&mut tail, 8)?;
        Ok(format!(
            "size={} blocks={} hole_zero={} shrunk={} blocks={} tail={:?}",
            m.len(),
            m.blocks(),
            hole.iter().all(|&b| b == 0),
            m2.len(),
            m2.blocks(),
            tail
        ))
    })();
    case("sparse", show(r));
    let r = (|| -> io::Result<(u64, u64)> {
        let mut f = File::open(p("sparse"))?;
        Ok((f.seek(SeekFrom::End(0))?, f.seek(SeekFrom::Current(-8))?))
    })();
    case("lseek", show(r));
    case(
        "lseek negative",
        show(File::open(p("sparse")).and_then(|mut f| f.seek(SeekFrom::Current(-1)))),
    );

    // Hard links and unlink while open.
    case("link", show(fs::hard_link(p("sparse"), p("hard"))));
    case("stat linked", meta(&p("hard")));
    case("link exists", show(fs::hard_link(p("sparse"), p("hard"))));
    case("link dir", show(fs::hard_link(&base, p("dirlink"))));
    let r = (|| -> io::Result<String> {
        fs::write(p("open"), b"still here")?;
        let mut f = File::open(p("open"))?;
        fs::remove_file(p("open"))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(format!("{s} nlink={}", f.metadata()?.nlink()))
    })();
    case("unlink while open", show(r));
    case("unlink missing", show(fs::remove_file(p("open"))));

    // Directories.
    case("mkdir d", show(fs::create_dir(p("d"))));
    case("mkdir d/sub", show(fs::create_dir(p("d/sub"))));
    case("stat d", meta(&p("d")));
    case("rmdir nonempty", show(fs::remove_dir(p("d"))));
    case("rmdir file", show(fs::remove_dir(p("f"))));
    case("unlink dir", show(fs::remove_file(p("d"))));
    case("mkdir in missing", show(fs::create_dir(p("nope/x"))));

    // Rename.
    fs::write(p("a"), b"A").ok();
    fs::write(p("b"), b"B").ok();
    case("rename over file", show(fs::rename(p("a"), p("b"))));
    case("renamed content", show(fs::read_to_string(p("b"))));
    case("old name gone", meta(&p("a")));
    case(
        "rename into own subtree",
        show(fs::rename(p("d"), p("d/sub/x"))),
    );
    case("rename dir over file", show(fs::rename(p("d"), p("b"))));
    case("rename file over dir", show(fs::rename(p("b"), p("d"))));
    fs::create_dir(p("e")).ok();
    case("rename dir over nonempty", show(fs::rename(p("e"), p("d"))));
    case("rename dir over empty", show(fs::rename(p("d"), p("e"))));
    case("after rename", names(&p("e")));
    case("rename missing", show(fs::rename(p("zzz"), p("yyy"))));
    case(
        "rename same links",
        show(fs::rename(p("sparse"), p("hard"))),
    );
    case("both links remain", names(&base));

    // Symlinks.
    case("symlink", show(symlink("b", p("sym"))));
    case("readlink", show(fs::read_link(p("sym"))));
    case("lstat sym", meta(&p("sym")));
    case("follow sym", show(fs::read_to_string(p("sym"))));
    case("readlink file", show(fs::read_link(p("b"))));
    symlink("loop2", p("loop1")).ok();
    symlink("loop1", p("loop2")).ok();
    case("loop", show(fs::read(p("loop1"))));
    symlink("nowhere", p("dangling")).ok();
    case("dangling", show(fs::read(p("dangling"))));
    case(
        "nofollow",
        show(
            OpenOptions::new()
                .read(true)
                .custom_flags(0o400000)
                .open(p("sym"))
                .map(|_| ()),
        ),
    );
    symlink("e", p("dirsym")).ok();
    case("through dir symlink", names(&p("dirsym/")));

    // Name limits.
    case("name 255", show(fs::write(p(&"n".repeat(255)), b"")));
    case("name 256", show(fs::write(p(&"n".repeat(256)), b"")));

    // Mode bits with the default umask (022).
    let r = (|| -> io::Result<String> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o777)
            .open(p("modes"))?;
        let m1 = fs::metadata(p("modes"))?.mode();
        fs::set_permissions(p("modes"), fs::Permissions::from_mode(0o4711))?;
        Ok(format!("{:o} {:o}", m1, fs::metadata(p("modes"))?.mode()))
    })();
    case("modes", show(r));

    // pread/pwrite at offsets, and the offset they leave alone.
    let r = (|| -> io::Result<String> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("pio"))?;
        f.write_all(b"0123456789")?;
        f.write_at(b"ab", 3)?;
        let mut b = [0u8; 4];
        f.read_at(&mut b, 2)?;
        Ok(format!(
            "{} pos={}",
            String::from_utf8_lossy(&b),
            f.stream_position()?
        ))
    })();
    case("pread pwrite", show(r));

    // cwd.
    let r = (|| -> io::Result<String> {
        std::env::set_current_dir(p("e"))?;
        fs::write("rel", b"r")?;
        let cwd = std::env::current_dir()?;
        std::env::set_current_dir("..")?;
        Ok(format!(
            "{} {}",
            cwd.display(),
            fs::read_to_string(p("e/rel"))?
        ))
    })();
    case("cwd", show(r));

    // Pipes.
    let r = (|| -> io::Result<String> {
        let (mut rd, mut wr) = io::pipe()?;
        wr.write_all(b"through the pipe")?;
        drop(wr);
        let mut s = String::new();
        rd.read_to_string(&mut s)?;
        Ok(s)
    })();
    case("pipe", show(r));
    let r = (|| -> io::Result<usize> {
        let (rd, mut wr) = io::pipe()?;
        drop(rd);
        wr.write(b"x")
    })();
    case("pipe no reader", show(r));

    // Devices.
    let r = (|| -> io::Result<String> {
        let mut n = Vec::new();
        File::open("/dev/null")?.read_to_end(&mut n)?;
        let mut z = [1u8; 8];
        File::open("/dev/zero")?.read_exact(&mut z)?;
        OpenOptions::new()
            .write(true)
            .open("/dev/null")?
            .write_all(b"gone")?;
        Ok(format!("null={} zero={:?}", n.len(), z))
    })();
    case("devices", show(r));

    // File mmap: MAP_SHARED maps the page cache itself, so stores through
    // the mapping are what read() returns and the other way round.
    let r = (|| -> io::Result<String> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("mapped"))?;
        f.write_all_at(b"page cache", 0)?;
        f.set_len(8192)?;
        let addr = mmap_shared(f.as_raw_fd(), 8192)?;
        // SAFETY: `addr` is a fresh 8 KiB read/write shared mapping of `f`,
        // unmapped below and not used after.
        let (seen, back) = unsafe {
            let m = std::slice::from_raw_parts_mut(addr as *mut u8, 8192);
            let seen = String::from_utf8_lossy(&m[..10]).into_owned();
            m[4096..4100].copy_from_slice(b"MMAP");
            f.write_all_at(b"PAGE", 0)?;
            let back = String::from_utf8_lossy(&m[..4]).into_owned();
            (seen, back)
        };
        munmap(addr, 8192);
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 4096)?;
        Ok(format!(
            "mapped={seen} write_seen={back} store_read={}",
            String::from_utf8_lossy(&b)
        ))
    })();
    case("mmap shared", show(r));

    // Truncation under a mapping: a page wholly past the new end of the
    // file gives SIGBUS (si_code BUS_ADRERR, si_addr the address touched);
    // the partial last page stays accessible.
    let r = (|| -> io::Result<String> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("shrunk"))?;
        f.set_len(8192)?;
        let addr = mmap_shared(f.as_raw_fd(), 8192)?;
        f.set_len(100)?;
        let touch = |off: usize| {
            // SAFETY: `addr` is a live 8 KiB mapping; a read past the end
            // of the file kills this (child) process with SIGBUS.
            move || unsafe { std::ptr::read_volatile((addr + off) as *const u8) as i32 }
        };
        let inside = userland::fork_run(touch(200)).map(userland::wait_for);
        let past = userland::fork_run(touch(4096)).map(userland::wait_for);
        let info = userland::fork_run(move || {
            BUS_EXPECTED.store(addr + 4100, std::sync::atomic::Ordering::Relaxed);
            if userland::set_handler(
                libc::SIGBUS,
                on_sigbus as *const () as usize,
                libc::SA_SIGINFO,
            )
            .is_err()
            {
                return 99;
            }
            touch(4100)()
        })
        .map(userland::wait_for);
        munmap(addr, 8192);
        let s = |r: Result<String, String>| r.unwrap_or_else(|e| e);
        Ok(format!(
            "inside={} past={} handler={}",
            s(inside),
            s(past),
            s(info)
        ))
    })();
    case("mmap past eof", show(r));

    // Truncation of pages already mapped and touched: the translations of
    // pages past the new end go away in every address space (here, a fork
    // child that inherited the mapping before the truncate, and the
    // parent), so a later touch gives SIGBUS.  Linux drops private
    // copy-on-write copies past the end too.
    let r = (|| -> io::Result<String> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("shrunk_mapped"))?;
        f.set_len(8192)?;
        let shared = mmap_shared(f.as_raw_fd(), 8192)?;
        // SAFETY: a new private mapping chosen by the kernel.
        let private = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if private == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let private = private as usize;
        // SAFETY: both mappings are live and 8 KiB long: fault in both
        // pages of each, the private page 1 as a copy-on-write copy.
        unsafe {
            std::ptr::write_volatile((shared + 4096) as *mut u8, b'S');
            std::ptr::write_volatile(shared as *mut u8, b's');
            std::ptr::write_volatile((private + 4096) as *mut u8, b'P');
            let _ = std::ptr::read_volatile(private as *const u8);
        }
        let mut go = [0i32; 2];
        // SAFETY: `go` is a valid out-array of two descriptors.
        if unsafe { libc::pipe(go.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Inherits the mapping, then touches it after the parent truncated.
        let waiter = userland::fork_run(move || {
            let mut b = [0u8; 1];
            // SAFETY: reads one byte from the pipe into `b`.
            unsafe { libc::read(go[0], b.as_mut_ptr() as *mut libc::c_void, 1) };
            // SAFETY: page 1 of the inherited mapping; SIGBUS once cut off.
            unsafe { std::ptr::read_volatile((shared + 4096) as *const u8) as i32 }
        });
        f.set_len(100)?;
        // SAFETY: writes one byte to the pipe the child waits on.
        unsafe { libc::write(go[1], b"g".as_ptr() as *const libc::c_void, 1) };
        let child_after = waiter.map(userland::wait_for);
        // SAFETY: closes the two pipe descriptors made above.
        unsafe {
            libc::close(go[0]);
            libc::close(go[1]);
        }
        let touch = |at: usize| {
            // SAFETY: `at` lies in a live 8 KiB mapping; past the end of
            // the file this (child) process gets SIGBUS.
            move || unsafe { std::ptr::read_volatile(at as *const u8) as i32 }
        };
        let s = |r: Result<String, String>| r.unwrap_or_else(|e| e);
        let out = format!(
            "shared_first={} shared_cut={} private_first={} private_copy_cut={} forked_cut={}",
            s(userland::fork_run(touch(shared)).map(userland::wait_for)),
            s(userland::fork_run(touch(shared + 4096)).map(userland::wait_for)),
            s(userland::fork_run(touch(private)).map(userland::wait_for)),
            s(userland::fork_run(touch(private + 4096)).map(userland::wait_for)),
            s(child_after),
        );
        munmap(shared, 8192);
        munmap(private, 8192);
        Ok(out)
    })();
    case("truncate under mapping", show(r));

    // msync: tmpfs has no backing store, so it only validates (flags,
    // alignment, a fully mapped range) and data stays where read() sees it.
    let r = (|| -> io::Result<String> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("synced"))?;
        f.set_len(3 * 4096)?;
        let addr = mmap_shared(f.as_raw_fd(), 3 * 4096)?;
        // SAFETY: `addr` is a fresh 12 KiB read/write shared mapping of `f`.
        unsafe { std::ptr::copy_nonoverlapping(b"synced".as_ptr(), addr as *mut u8, 6) };
        let sync = |at: usize, len: usize, flags: i32| {
            // SAFETY: msync reads no memory of ours; bad ranges give errors.
            let r = unsafe { libc::msync(at as *mut libc::c_void, len, flags) };
            if r == 0 {
                "0".to_string()
            } else {
                errno_name(&io::Error::last_os_error())
            }
        };
        let (s, a, i) = (libc::MS_SYNC, libc::MS_ASYNC, libc::MS_INVALIDATE);
        let mut out = vec![
            format!("sync={}", sync(addr, 3 * 4096, s)),
            format!("async={}", sync(addr, 3 * 4096, a)),
            format!("invalidate={}", sync(addr, 4096, i)),
            format!("sync_inval={}", sync(addr, 4096, s | i)),
            format!("none={}", sync(addr, 4096, 0)),
            format!("both={}", sync(addr, 4096, s | a)),
            format!("badflag={}", sync(addr, 4096, 8)),
            format!("unaligned={}", sync(addr + 1, 4096, s)),
            format!("len0={}", sync(addr, 0, s)),
            format!("shortlen={}", sync(addr + 4096, 100, s)),
        ];
        munmap(addr + 4096, 4096);
        out.push(format!("hole={}", sync(addr, 3 * 4096, s)));
        out.push(format!("hole_async={}", sync(addr, 3 * 4096, a)));
        out.push(format!("before_hole={}", sync(addr, 4096, s)));
        out.push(format!("in_hole={}", sync(addr + 4096, 4096, s)));
        munmap(addr, 3 * 4096);
        out.push(format!("unmapped={}", sync(addr, 4096, s)));
        let mut b = [0u8; 6];
        f.read_exact_at(&mut b, 0)?;
        out.push(format!("read={}", String::from_utf8_lossy(&b)));
        Ok(out.join(" "))
    })();
    case("msync", show(r));

    // MAP_PRIVATE is copy on write: a store through it is seen neither by
    // read() nor by a shared mapping; pages not written still show the
    // file's later changes.
    let r = (|| -> io::Result<String> {
        use std::os::fd::AsRawFd;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p("private"))?;
        f.write_all_at(b"original", 0)?;
        f.write_all_at(b"second", 4096)?;
        f.set_len(8192)?;
        // SAFETY: a new private mapping chosen by the kernel.
        let private = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if private == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let private = private as usize;
        let shared = mmap_shared(f.as_raw_fd(), 8192)?;
        let text = |at: usize, n: usize| {
            // SAFETY: `at .. at + n` lies in one of the live 8 KiB mappings.
            String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(at as *const u8, n) })
                .into_owned()
        };
        let before = text(private + 4096, 6);
        // SAFETY: page 0 of the private read/write mapping.
        unsafe { std::ptr::copy_nonoverlapping(b"PRIVATE!".as_ptr(), private as *mut u8, 8) };
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, 0)?;
        let read = String::from_utf8_lossy(&b).into_owned();
        let via_shared = text(shared, 8);
        let stored = text(private, 8);
        f.write_all_at(b"CHANGED!", 0)?;
        f.write_all_at(b"LATER!", 4096)?;
        let out = format!(
            "private={stored} read={read} shared={via_shared} after_write: private={} untouched={} (was {before}) shared={}",
            text(private, 8),
            text(private + 4096, 6),
            text(shared, 8)
        );
        munmap(private, 8192);
        munmap(shared, 8192);
        Ok(out)
    })();
    case("mmap private", show(r));

    // Large transfers in one call (more than one message or grant), a
    // hole inside one, and the end of the file.
    let r = (|| -> io::Result<String> {
        const BIG: usize = 3 * (1 << 20) + 5000;
        let data: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(p("big"))?;
        let wrote = f.write(&data)?;
        f.seek(SeekFrom::Start(0))?;
        let mut back = vec![0u8; BIG + 4096];
        let read = f.read(&mut back)?;
        let eof = f.read(&mut back)?;
        let mut cross = vec![0u8; 10_000];
        let got = f.read_at(&mut cross, (1 << 20) - 3)?;
        let cross_ok = cross[..got] == data[(1 << 20) - 3..(1 << 20) - 3 + got];
        // A hole of 2 MiB between two writes, read in one call.
        f.write_all_at(b"tail", BIG as u64 + (2 << 20))?;
        let mut holes = vec![1u8; (2 << 20) + 100];
        let hole_read = f.read_at(&mut holes, BIG as u64 - 10)?;
        let hole_ok = holes[..10] == data[BIG - 10..]
            && holes[10..hole_read - 4].iter().all(|&b| b == 0)
            && &holes[hole_read - 4..hole_read] == b"tail";
        Ok(format!(
            "wrote={wrote} read={read} equal={} eof={eof} cross={got}/{cross_ok} hole_read={hole_read}/{hole_ok}",
            back[..read] == data[..]
        ))
    })();
    case("large io", show(r));
    // A read into a buffer that runs into unmapped memory: the bytes
    // before the unmapped page, then EFAULT.
    let r = (|| -> io::Result<String> {
        let mut f = File::open(p("big"))?;
        // SAFETY: a fresh private anonymous mapping of two pages; the second
        // is unmapped at once, the first is only written by the kernel.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base as usize;
        munmap(base + 4096, 4096);
        let read_into = |f: &mut File, at: usize, len: usize| -> io::Result<usize> {
            use std::os::fd::AsRawFd;
            // SAFETY: the kernel checks the buffer; nothing of ours is there
            // but the mapping made above.
            let n = unsafe { libc::read(f.as_raw_fd(), at as *mut libc::c_void, len) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        };
        let short = read_into(&mut f, base + 4096 - 100, 1000);
        let pos = f.stream_position()?;
        let bad = read_into(&mut f, base + 4096, 10);
        // SAFETY: the first page of the mapping, written by the read above.
        let first = unsafe { std::slice::from_raw_parts((base + 4096 - 100) as *const u8, 4) };
        let out = format!(
            "short={} pos={pos} bytes={first:?} bad={}",
            show(short),
            show(bad)
        );
        munmap(base, 4096);
        Ok(out)
    })();
    case("read into partly unmapped buffer", show(r));

    // Mounts.  The harness's Linux mounts devtmpfs on /dev and proc on
    // /proc, but /tmp is a plain directory there, so the cases use /dev and
    // /proc; only whether device numbers differ is printed.
    let dev_of = |path: &str| fs::metadata(path).map(|m| m.dev());
    let r = (|| -> io::Result<String> {
        let root = dev_of("/")?;
        Ok(format!(
            "dev_differs={} proc_differs={} same_in_base={}",
            dev_of("/dev")? != root,
            dev_of("/proc")? != root,
            dev_of(&p("b"))? == dev_of(&base)?
        ))
    })();
    case("st_dev across mounts", show(r));
    let r = (|| -> io::Result<String> {
        let (up, root) = (fs::metadata("/dev/..")?, fs::metadata("/")?);
        Ok(format!(
            "dotdot_is_root={}",
            up.ino() == root.ino() && up.dev() == root.dev()
        ))
    })();
    case("dotdot out of mount", show(r));
    let in_dev = "/dev/posix_diff_x";
    case("create in /dev", show(fs::write(in_dev, b"x")));
    case(
        "rename /dev/x to /",
        show(fs::rename(in_dev, p("from_dev"))),
    );
    case(
        "rename to /dev",
        show(fs::rename(p("b"), "/dev/posix_diff_b")),
    );
    case(
        "link /dev/x to /",
        show(fs::hard_link(in_dev, p("from_dev"))),
    );
    case(
        "link to /dev",
        show(fs::hard_link(p("b"), "/dev/posix_diff_b")),
    );
    case(
        "rename within /dev",
        show(fs::rename(in_dev, "/dev/posix_diff_y")),
    );
    case("unlink in /dev", show(fs::remove_file("/dev/posix_diff_y")));
    case("rmdir mount point", show(fs::remove_dir("/proc")));
    case(
        "rename mount point",
        show(fs::rename("/dev", "/posix_diff_dev")),
    );
    case("rename over mount point", show(fs::rename(p("e"), "/dev")));
    let r = (|| -> io::Result<String> {
        std::env::set_current_dir("/dev")?;
        let inside = std::env::current_dir()?;
        std::env::set_current_dir("..")?;
        let up = std::env::current_dir()?;
        std::env::set_current_dir(&base)?;
        Ok(format!("{} {}", inside.display(), up.display()))
    })();
    case("cwd across mount", show(r));

    // Listing.
    case("listing", names(&base));
    println!("done");
}
