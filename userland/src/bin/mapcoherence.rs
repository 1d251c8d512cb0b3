//! `mapcoherence`: shared file mappings stay coherent with `read`/`write`
//! between processes that opened the file on their own (in
//! `structure=servers` the writer goes through the file server and the
//! mapper through page grants of the server's page cache), and with other
//! mappings of it; truncates by path, by descriptor and by `O_TRUNC` take
//! the pages away (SIGBUS); a mapping outlives the unlink of its file.
//! Each line states one fact; a wrong one is marked.  Exit 0 when all held.

use std::ffi::CString;

use userland::{fork_run, say, wait_for};

const PAGE: usize = 4096;
/// The file: 20 pages, more than one fault-around window (16 pages).
const PAGES: usize = 20;
const SIZE: usize = PAGES * PAGE;

fn open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::open(c.as_ptr(), flags, 0o644) }
}

fn map(len: usize, prot: i32, flags: i32, fd: i32) -> usize {
    // SAFETY: a fresh mapping chosen by the kernel; nothing refers to it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    assert!(p != libc::MAP_FAILED, "mmap failed: {}", userland::errno());
    p as usize
}

fn pwrite(fd: i32, data: &[u8], off: usize) -> bool {
    // SAFETY: `data` is a valid buffer of its length.
    unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off as i64) == data.len() as isize }
}

fn pread(fd: i32, n: usize, off: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    // SAFETY: `b` is a valid buffer of `n` bytes.
    let r = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), n, off as i64) };
    b.truncate(r.max(0) as usize);
    b
}

/// `n` bytes of a live mapping at `at`.
fn peek(at: usize, n: usize) -> Vec<u8> {
    // SAFETY: callers pass addresses inside a live readable mapping.
    unsafe { std::slice::from_raw_parts(at as *const u8, n).to_vec() }
}

fn poke(at: usize, data: &[u8]) {
    // SAFETY: callers pass addresses inside a live writable mapping.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut u8, data.len()) };
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A pipe: (read end, write end).
fn pipe() -> (i32, i32) {
    let mut p = [0i32; 2];
    // SAFETY: `p` is a valid out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    (p[0], p[1])
}

fn send(fd: i32) {
    // SAFETY: writes one byte from a valid buffer.
    unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
}

fn recv(fd: i32) {
    let mut b = [0u8; 1];
    // SAFETY: reads one byte into a valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
}

/// How a child that reads one byte at `at` ends.
fn touch(at: usize) -> String {
    // SAFETY: `at` lies in a live mapping; past the end of the file the
    // child dies of SIGBUS, which is what is asked.
    fork_run(move || unsafe { std::ptr::read_volatile(at as *const u8) } as i32)
        .map(wait_for)
        .unwrap_or_else(|e| e)
}

/// One `write`/`read` of 8 and 4 pages whose buffer is a `MAP_SHARED`
/// mapping of the same file (not yet touched: the copy faults on it), and
/// a hole that a mapping reads as zeros and then sees written.
fn big_transfers(path: &str, fact: &mut impl FnMut(&str, bool, String)) {
    const BIG: usize = 80;
    let fd = open(path, libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC);
    let pattern: Vec<u8> = (0..64 * PAGE).map(|i| (i * 13 % 253) as u8).collect();
    // SAFETY: `pattern` is a valid buffer of its length.
    let wrote = unsafe { libc::write(fd, pattern.as_ptr().cast(), pattern.len()) };
    // SAFETY: a plain call on our descriptor.
    let grown = unsafe { libc::ftruncate(fd, (BIG * PAGE) as i64) };
    let m = map(
        BIG * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
    );
    // File pages 0..8 to pages 32..40, from the mapping.
    // SAFETY: the source is 8 pages of our mapping, inside the file.
    let w = unsafe { libc::pwrite(fd, m as *const libc::c_void, 8 * PAGE, (32 * PAGE) as i64) };
    let copied = pread(fd, 8 * PAGE, 32 * PAGE) == pattern[..8 * PAGE]
        && peek(m + 32 * PAGE, 8 * PAGE) == pattern[..8 * PAGE];
    fact(
        "write() from a mapping of the file, 8 pages",
        wrote == pattern.len() as isize && grown == 0 && w == (8 * PAGE) as isize && copied,
        format!("wrote {w}, copy seen by read and mapping: {copied}"),
    );
    // File pages 0..4 into the mapping at pages 48..52, by read().
    // SAFETY: the destination is 4 pages of our mapping, inside the file.
    let r = unsafe { libc::pread(fd, (m + 48 * PAGE) as *mut libc::c_void, 4 * PAGE, 0) };
    let landed = pread(fd, 4 * PAGE, 48 * PAGE) == pattern[..4 * PAGE];
    fact(
        "read() into a mapping of the file, 4 pages",
        r == (4 * PAGE) as isize && landed,
        format!("read {r}, seen by read: {landed}"),
    );
    // A hole (pages 64..80) read through the mapping, then written.
    let zero = peek(m + 70 * PAGE, 8) == [0u8; 8];
    let hw = pwrite(fd, b"hole", 70 * PAGE + 5);
    let seen = text(&peek(m + 70 * PAGE + 5, 4));
    fact(
        "a hole read through the mapping, then written by write()",
        zero && hw && seen == "hole",
        format!("zeros first: {zero}, then {seen}"),
    );
    // Reads through one descriptor, changes through another: every read
    // sees the file as it is (growth, overwrite, shrink, a hole filled).
    let rfd = open(path, libc::O_RDONLY);
    let before = pread(rfd, 8, BIG * PAGE - 4).len();
    let grew = pwrite(fd, b"longer!!", BIG * PAGE);
    let after = text(&pread(rfd, 8, BIG * PAGE));
    let over = pwrite(fd, b"NEW", 2);
    let again = text(&pread(rfd, 3, 2));
    // SAFETY: a plain call on our descriptor.
    let shrunk = unsafe { libc::ftruncate(fd, (3 * PAGE) as i64) };
    let short = pread(rfd, 2 * PAGE, 2 * PAGE).len();
    let hole = pread(rfd, 4, 2 * PAGE + 5000);
    // SAFETY: a plain call on our descriptor.
    let regrown = unsafe { libc::ftruncate(fd, (8 * PAGE) as i64) };
    let zeros = pread(rfd, 4, 6 * PAGE) == [0u8; 4];
    let filled = pwrite(fd, b"fill", 6 * PAGE);
    let seen_fill = text(&pread(rfd, 4, 6 * PAGE));
    fact(
        "reads of one descriptor follow writes and truncates of another",
        before == 4
            && grew
            && after == "longer!!"
            && over
            && again == "NEW"
            && shrunk == 0
            && short == PAGE
            && hole.is_empty()
            && regrown == 0
            && zeros
            && filled
            && seen_fill == "fill",
        format!(
            "{before} {after} {again} {short} {} {zeros} {seen_fill}",
            hole.len()
        ),
    );
    // SAFETY: our own mapping and descriptors.
    unsafe {
        libc::munmap(m as *mut libc::c_void, BIG * PAGE);
        libc::close(fd);
        libc::close(rfd);
    }
}

fn main() {
    let mut ok = true;
    let mut fact = |what: &str, good: bool, got: String| {
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };
    let dir = "/tmp/mapcoherence";
    let c = CString::new(dir).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::mkdir(c.as_ptr(), 0o755) };
    let path = format!("{dir}/file");
    let fd = open(&path, libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC);
    assert!(fd >= 0, "open failed");
    let pattern: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8 + 1).collect();
    assert!(pwrite(fd, &pattern, 0));

    // A child opens and maps the file on its own; the parent writes with
    // write() on its own descriptor, the child stores through its mapping.
    let (ready_r, ready_w) = pipe();
    let (go_r, go_w) = pipe();
    let (done_r, done_w) = pipe();
    let child_path = path.clone();
    let child = fork_run(move || {
        let cfd = open(&child_path, libc::O_RDWR);
        if cfd < 0 {
            return 90;
        }
        let m = map(
            SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            cfd,
        );
        // Fault in every page before the parent writes.
        let mut sum = 0u32;
        for p in 0..PAGES {
            sum = sum.wrapping_add(peek(m + p * PAGE, 1)[0] as u32);
        }
        std::hint::black_box(sum);
        send(ready_w);
        recv(go_r);
        let seen = peek(m + 5 * PAGE, 12) == b"written-by-B";
        let seen_far = peek(m + 17 * PAGE + 7, 3) == b"far";
        poke(m + 9 * PAGE + 100, b"stored-by-A");
        send(done_w);
        // Stays mapped until the parent has read and truncated by path.
        recv(go_r);
        let after_truncate = touch(m + 12 * PAGE);
        let inside = touch(m + 3 * PAGE);
        say(&format!(
            "child after truncate by path: page 12 {after_truncate}, page 3 {inside}"
        ));
        i32::from(!seen)
            | i32::from(!seen_far) << 1
            | i32::from(after_truncate != "killed by SIGBUS") << 2
            | i32::from(!inside.starts_with("exited")) << 3
    });
    let child = match child {
        Ok(pid) => pid,
        Err(e) => {
            fact("fork", false, e);
            std::process::exit(1);
        }
    };
    let wfd = open(&path, libc::O_RDWR);
    recv(ready_r);
    let wrote = pwrite(wfd, b"written-by-B", 5 * PAGE) && pwrite(wfd, b"far", 17 * PAGE + 7);
    send(go_w);
    recv(done_r);
    let got = text(&pread(wfd, 11, 9 * PAGE + 100));
    fact(
        "read() sees the other process's store through its mapping",
        wrote && got == "stored-by-A",
        got,
    );
    // A second, read-only shared mapping of another descriptor, and a
    // private one: both see the store (the private page is untouched).
    let rfd = open(&path, libc::O_RDONLY);
    let shared = map(SIZE, libc::PROT_READ, libc::MAP_SHARED, rfd);
    let private = map(
        SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        rfd,
    );
    let s = text(&peek(shared + 9 * PAGE + 100, 11));
    let p = text(&peek(private + 9 * PAGE + 100, 11));
    fact(
        "other mappings see it",
        s == "stored-by-A" && p == "stored-by-A",
        format!("shared={s} private={p}"),
    );
    let unchanged = (0..PAGES).all(|pg| {
        let off = pg * PAGE + 2000;
        peek(shared + off, 16) == pattern[off..off + 16]
    });
    fact(
        "every page of the read-only mapping holds the file's bytes",
        unchanged,
        unchanged.to_string(),
    );
    // Large transfers whose user buffer is a shared mapping of the file
    // itself (faults during the copy), and a hole filled by write() under
    // a mapping that already faulted it in.
    big_transfers(&format!("{dir}/big"), &mut fact);
    // Truncate by path while the child still maps all 20 pages.
    let c = CString::new(path.as_str()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let t = unsafe { libc::truncate(c.as_ptr(), (10 * PAGE) as i64) };
    send(go_w);
    let status = wait_for(child);
    fact(
        "the mapping child saw the writes and ended",
        t == 0 && status == "exited 0",
        status,
    );
    let (a, b) = (touch(shared + 12 * PAGE), touch(private + 12 * PAGE));
    fact(
        "truncate by path: page 12 of our mappings",
        a == "killed by SIGBUS" && b == "killed by SIGBUS",
        format!("shared {a} private {b}"),
    );
    // O_TRUNC empties the file: every page goes.
    let tfd = open(&path, libc::O_RDWR | libc::O_TRUNC);
    let first = touch(shared);
    fact(
        "after O_TRUNC, page 0",
        tfd >= 0 && first == "killed by SIGBUS",
        first,
    );
    // Growing again with write(): a new page, seen by the mapping.
    let grew = pwrite(wfd, b"again", 0);
    let again = text(&peek(shared, 5));
    fact(
        "written again after the truncate, seen through the mapping",
        grew && again == "again",
        again,
    );
    // ftruncate to one page, then a page past it; unlink keeps the pages.
    // SAFETY: a plain call on our descriptor.
    let t = unsafe { libc::ftruncate(wfd, PAGE as i64) };
    let past = touch(shared + PAGE);
    fact(
        "after ftruncate, page 1",
        t == 0 && past == "killed by SIGBUS",
        past,
    );
    // SAFETY: a valid NUL-terminated path.
    let u = unsafe { libc::unlink(c.as_ptr()) };
    let kept = text(&peek(shared, 5));
    fact(
        "an unlinked file's mapping keeps its data",
        u == 0 && kept == "again",
        kept,
    );
    // SAFETY: unmapping our own mappings; closing our descriptors.
    unsafe {
        libc::munmap(shared as *mut libc::c_void, SIZE);
        libc::munmap(private as *mut libc::c_void, SIZE);
        for f in [fd, wfd, rfd, tfd] {
            libc::close(f);
        }
    }
    say(if ok {
        "mapcoherence: pass"
    } else {
        "mapcoherence: FAIL"
    });
    std::process::exit(i32::from(!ok));
}
