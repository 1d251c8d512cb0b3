//! `files`: the file system calls a program makes, in `/tmp`, with the errno
//! cases Linux gives printed by name.
//!
//! Covers create/write/read/seek/pread/pwrite/stat/fstat/rename/unlink/
//! mkdir/rmdir/readdir/ftruncate/dup2/O_APPEND/O_EXCL/getcwd/chdir and
//! /dev/null, /dev/zero.  Prints only sizes, contents, types and errno
//! names (never inode numbers or times).  Exit 0 when every check held.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use userland::{errno, errno_name, say};

struct Checker {
    ok: bool,
}

impl Checker {
    fn expect(&mut self, what: &str, got: impl ToString, want: &str) {
        let got = got.to_string();
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        self.ok &= good;
    }
}

/// `ok` or the errno name of an io::Result.
fn res<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    }
}

fn raw(path: &str, f: impl FnOnce(*const libc::c_char) -> i32) -> String {
    let c = CString::new(path).unwrap();
    if f(c.as_ptr()) < 0 {
        errno_name(errno())
    } else {
        "ok".to_string()
    }
}

fn main() {
    let mut c = Checker { ok: true };
    let dir = "/tmp/files-test";
    let _ = std::fs::remove_dir_all(dir);
    c.expect("mkdir", res(std::fs::create_dir(dir)), "ok");
    c.expect("mkdir again", res(std::fs::create_dir(dir)), "EEXIST");
    let a = format!("{dir}/a.txt");

    // Create, write, read back, seek.
    let mut f = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(0o644)
        .open(&a)
    {
        Ok(f) => f,
        Err(e) => {
            say(&format!(
                "create {a}: {}",
                errno_name(e.raw_os_error().unwrap_or(0))
            ));
            std::process::exit(1);
        }
    };
    c.expect(
        "write",
        f.write(b"hello world")
            .map(|n| n.to_string())
            .unwrap_or_else(|e| e.to_string()),
        "11",
    );
    c.expect(
        "seek to 6",
        f.seek(SeekFrom::Start(6))
            .map(|n| n.to_string())
            .unwrap_or_default(),
        "6",
    );
    let mut buf = String::new();
    let _ = f.read_to_string(&mut buf);
    c.expect("read after seek", &buf, "world");
    c.expect(
        "seek end",
        f.seek(SeekFrom::End(-5))
            .map(|n| n.to_string())
            .unwrap_or_default(),
        "6",
    );
    c.expect(
        "seek before start",
        res(f.seek(SeekFrom::Current(-100))),
        "EINVAL",
    );
    let mut four = [0u8; 4];
    c.expect(
        "pread at 2",
        f.read_at(&mut four, 2)
            .map(|n| String::from_utf8_lossy(&four[..n]).into_owned())
            .unwrap_or_default(),
        "llo ",
    );
    c.expect(
        "pwrite at 0",
        f.write_at(b"J", 0)
            .map(|n| n.to_string())
            .unwrap_or_default(),
        "1",
    );
    let meta = f.metadata();
    c.expect(
        "fstat size",
        meta.as_ref().map(|m| m.len()).unwrap_or(0),
        "11",
    );
    c.expect(
        "fstat is file",
        meta.as_ref().map(|m| m.is_file()).unwrap_or(false),
        "true",
    );
    c.expect(
        "mode",
        meta.as_ref()
            .map(|m| {
                format!(
                    "{:o}",
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
                )
            })
            .unwrap_or_default(),
        "644",
    );
    c.expect("ftruncate to 5", res(f.set_len(5)), "ok");
    drop(f);
    c.expect(
        "contents after truncate",
        std::fs::read_to_string(&a).unwrap_or_default(),
        "Jello",
    );

    // O_APPEND and O_EXCL.
    let mut app = std::fs::OpenOptions::new()
        .append(true)
        .open(&a)
        .expect("open append");
    let _ = app.write(b"!!");
    drop(app);
    c.expect(
        "after append",
        std::fs::read_to_string(&a).unwrap_or_default(),
        "Jello!!",
    );
    c.expect(
        "O_EXCL on existing",
        res(std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&a)),
        "EEXIST",
    );

    // stat / rename / unlink.
    let b = format!("{dir}/b.txt");
    c.expect(
        "stat size",
        std::fs::metadata(&a).map(|m| m.len()).unwrap_or(0),
        "7",
    );
    c.expect("rename", res(std::fs::rename(&a, &b)), "ok");
    c.expect("open old name", res(std::fs::File::open(&a)), "ENOENT");
    c.expect(
        "stat missing",
        res(std::fs::metadata(format!("{dir}/nope"))),
        "ENOENT",
    );
    c.expect(
        "read renamed",
        std::fs::read_to_string(&b).unwrap_or_default(),
        "Jello!!",
    );

    // Directories.
    c.expect(
        "mkdir sub",
        res(std::fs::create_dir(format!("{dir}/sub"))),
        "ok",
    );
    std::fs::write(format!("{dir}/sub/inner"), b"x").ok();
    std::fs::write(format!("{dir}/c.txt"), b"").ok();
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => vec![format!("readdir failed: {e}")],
    };
    names.sort();
    c.expect("readdir", names.join(","), "b.txt,c.txt,sub");
    c.expect(
        "rmdir non-empty",
        res(std::fs::remove_dir(format!("{dir}/sub"))),
        "ENOTEMPTY",
    );
    c.expect(
        "unlink a directory",
        res(std::fs::remove_file(format!("{dir}/sub"))),
        "EISDIR",
    );
    c.expect("rmdir a file", res(std::fs::remove_dir(&b)), "ENOTDIR");
    c.expect(
        "open dir for writing",
        res(std::fs::OpenOptions::new().write(true).open(dir)),
        "EISDIR",
    );
    c.expect(
        "file as a directory",
        res(std::fs::metadata(format!("{b}/x"))),
        "ENOTDIR",
    );
    c.expect(
        "create in missing dir",
        res(std::fs::File::create(format!("{dir}/missing/x"))),
        "ENOENT",
    );

    // getcwd / chdir / relative paths.
    c.expect(
        "chdir",
        res(std::env::set_current_dir(format!("{dir}/sub"))),
        "ok",
    );
    c.expect(
        "getcwd",
        std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        "/tmp/files-test/sub",
    );
    c.expect(
        "relative read",
        std::fs::read_to_string("inner").unwrap_or_default(),
        "x",
    );
    c.expect(
        "relative ..",
        std::fs::read_to_string("../b.txt").unwrap_or_default(),
        "Jello!!",
    );
    let _ = std::env::set_current_dir("/");

    // Descriptors: bad fd, dup2, read on a write-only fd.
    // SAFETY: closing and writing to an fd number that is not open is harmless.
    c.expect(
        "close bad fd",
        if unsafe { libc::close(999) } < 0 {
            errno_name(errno())
        } else {
            "ok".into()
        },
        "EBADF",
    );
    let wo = std::fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .expect("open write-only");
    let mut one = [0u8; 1];
    c.expect("read write-only fd", res((&wo).read(&mut one)), "EBADF");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&wo);
    // SAFETY: dup2 onto an unused number, then close it.
    let d = unsafe { libc::dup2(fd, 50) };
    c.expect("dup2", d, "50");
    // SAFETY: 50 is ours now.
    unsafe { libc::close(50) };
    drop(wo);

    // Devices.
    c.expect(
        "write /dev/null",
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .and_then(|mut f| f.write(b"abc"))
            .map(|n| n.to_string())
            .unwrap_or_else(|e| e.to_string()),
        "3",
    );
    let mut z = [1u8; 8];
    c.expect(
        "read /dev/zero",
        std::fs::File::open("/dev/zero")
            .and_then(|mut f| f.read(&mut z))
            .map(|n| format!("{n} {:?}", &z[..n]))
            .unwrap_or_else(|e| e.to_string()),
        "8 [0, 0, 0, 0, 0, 0, 0, 0]",
    );
    c.expect(
        "read /dev/null",
        std::fs::File::open("/dev/null")
            .and_then(|mut f| f.read(&mut z))
            .map(|n| n.to_string())
            .unwrap_or_else(|e| e.to_string()),
        "0",
    );
    c.expect(
        "lseek on a pipe",
        {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for two descriptors; both are closed after.
            unsafe {
                libc::pipe(fds.as_mut_ptr());
                let r = if libc::lseek(fds[0], 0, libc::SEEK_SET) < 0 {
                    errno_name(errno())
                } else {
                    "ok".into()
                };
                libc::close(fds[0]);
                libc::close(fds[1]);
                r
            }
        },
        "ESPIPE",
    );
    // SAFETY: `p` is a valid C string for the duration of the call.
    c.expect(
        "access existing",
        raw(&b, |p| unsafe { libc::access(p, libc::F_OK) }),
        "ok",
    );
    c.expect(
        "access missing",
        // SAFETY: `p` is a NUL-terminated path.
        raw("/tmp/none", |p| unsafe { libc::access(p, libc::F_OK) }),
        "ENOENT",
    );
    c.expect(
        "name too long",
        res(std::fs::metadata(format!("/tmp/{}", "x".repeat(300)))),
        "ENAMETOOLONG",
    );

    // Clean up.
    c.expect("unlink", res(std::fs::remove_file(&b)), "ok");
    c.expect("unlink again", res(std::fs::remove_file(&b)), "ENOENT");
    c.expect("remove tree", res(std::fs::remove_dir_all(dir)), "ok");
    c.expect("dir gone", res(std::fs::metadata(dir)), "ENOENT");
    say(&format!("files: {}", if c.ok { "pass" } else { "FAIL" }));
    std::process::exit(if c.ok { 0 } else { 1 });
}
