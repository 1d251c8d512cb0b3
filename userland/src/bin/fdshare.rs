//! `fdshare`: descriptors that change while the threads of the process use
//! them (the cases the kernel's per-task descriptor cache must get right,
//! `files::FdTable::borrow`): a number reopened on another file, `dup2`
//! over a descriptor another thread just used, a pipe's write end closed
//! while a thread that wrote through it is blocked reading the other end
//! (it must see end of file), a read end closed under a blocked reader,
//! a thread's exit releasing what it looked up, and `fork`.
//!
//! Usage: `fdshare`.  One line per case (`NAME: ok` or `NAME: WRONG ...`),
//! then `fdshare: pass` or `fdshare: FAIL`; exit 0 when every case held.
//! The output does not depend on scheduling.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use userland::{errno, say};

/// Rounds of the cases whose interesting interleaving is not forced.
const ROUNDS: usize = 20;

fn open(path: &str, flags: i32) -> i32 {
    let c = std::ffi::CString::new(path).unwrap_or_default();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    unsafe { libc::open(c.as_ptr(), flags, 0o644) }
}

/// Makes `path` holding 4096 copies of `byte`; its descriptor (read-only).
fn file_of(path: &str, byte: u8) -> i32 {
    let fd = open(path, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC);
    let data = [byte; 4096];
    // SAFETY: `data` is valid for its length.
    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: plain descriptor call.
    unsafe { libc::close(fd) };
    open(path, libc::O_RDONLY)
}

/// The byte at offset 0 of `fd`, or the errno.
fn first_byte(fd: i32) -> Result<u8, i32> {
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for one byte.
    match unsafe { libc::pread(fd, b.as_mut_ptr().cast(), 1, 0) } {
        1 => Ok(b[0]),
        _ => Err(errno()),
    }
}

fn read1(fd: i32) -> (isize, u8) {
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for one byte.
    let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
    (n, b[0])
}

fn write1(fd: i32, byte: u8) -> isize {
    // SAFETY: `byte` is valid for one byte.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) }
}

fn close(fd: i32) -> i32 {
    // SAFETY: plain descriptor call.
    unsafe { libc::close(fd) }
}

fn pipe() -> (i32, i32) {
    let mut p = [0i32; 2];
    // SAFETY: `p` has room for two descriptors.
    unsafe { libc::pipe(p.as_mut_ptr()) };
    (p[0], p[1])
}

/// Waits (yielding) until `flag` reads `value`.
fn wait_for(flag: &AtomicU32, value: u32) {
    while flag.load(Ordering::Acquire) != value {
        std::thread::yield_now();
    }
}

fn report(name: &str, wrong: Option<String>) {
    match wrong {
        None => say(&format!("{name}: ok")),
        Some(w) => say(&format!("{name}: WRONG {w}")),
    }
}

/// A number closed and reopened on another file reads the new file.
fn reopen_same_number() -> Option<String> {
    let fd = file_of("/tmp/fdshare_a", b'a');
    if first_byte(fd) != Ok(b'a') {
        return Some(format!("first read of a: {:?}", first_byte(fd)));
    }
    close(fd);
    let again = file_of("/tmp/fdshare_b", b'b');
    if again != fd {
        return Some(format!("reopened as {again}, not {fd}"));
    }
    let got = first_byte(again);
    close(again);
    (got != Ok(b'b')).then(|| format!("reopened fd reads {got:?}, not b"))
}

/// `dup2` over a descriptor both threads just read: after it returns,
/// both read the new file.
fn dup2_over_in_use() -> Option<String> {
    let fd = file_of("/tmp/fdshare_a", b'a');
    let other = file_of("/tmp/fdshare_b", b'b');
    let step = Arc::new(AtomicU32::new(0));
    let s = step.clone();
    let t = std::thread::spawn(move || {
        let before = first_byte(fd);
        s.store(1, Ordering::Release);
        wait_for(&s, 2);
        (before, first_byte(fd))
    });
    let main_before = first_byte(fd);
    wait_for(&step, 1);
    // SAFETY: plain descriptor call.
    unsafe { libc::dup2(other, fd) };
    let main_after = first_byte(fd);
    step.store(2, Ordering::Release);
    let (t_before, t_after) = t.join().unwrap_or((Err(0), Err(0)));
    close(fd);
    close(other);
    let got = [main_before, t_before, main_after, t_after];
    (got != [Ok(b'a'), Ok(b'a'), Ok(b'b'), Ok(b'b')])
        .then(|| format!("main a, thread a, main b, thread b expected; got {got:?}"))
}

/// A thread writes through a pipe's write end, then blocks reading the
/// read end; closing the write end (the only one) must end its read
/// with end of file.
fn eof_to_blocked_reader() -> Option<String> {
    for round in 0..ROUNDS {
        let (r, w) = pipe();
        let step = Arc::new(AtomicU32::new(0));
        let s = step.clone();
        let t = std::thread::spawn(move || {
            let wrote = write1(w, b'x');
            let first = read1(r);
            s.store(1, Ordering::Release);
            (wrote, first, read1(r).0)
        });
        wait_for(&step, 1);
        // Give the thread time to block (not needed for the result).
        for _ in 0..100 {
            std::thread::yield_now();
        }
        close(w);
        let got = t.join().unwrap_or((-1, (-1, 0), -1));
        close(r);
        if got != (1, (1, b'x'), 0) {
            return Some(format!(
                "round {round}: (write, first read, read after close) = {got:?}"
            ));
        }
    }
    None
}

/// The read end is closed while a thread is (probably) blocked reading
/// it: that read either had not started (EBADF) or goes on and gets the
/// byte written after the close; a later read of the number fails.
fn close_under_blocked_reader() -> Option<String> {
    for round in 0..ROUNDS {
        let (r, w) = pipe();
        let step = Arc::new(AtomicU32::new(0));
        let s = step.clone();
        let t = std::thread::spawn(move || {
            s.store(1, Ordering::Release);
            let (n, b) = read1(r);
            (n, b, if n < 0 { errno() } else { 0 })
        });
        wait_for(&step, 1);
        for _ in 0..100 {
            std::thread::yield_now();
        }
        close(r);
        write1(w, b'y');
        let got = t.join().unwrap_or((-2, 0, 0));
        let after = read1(r).0;
        let after_errno = errno();
        close(w);
        let fine = got == (1, b'y', 0) || got == (-1, 0, libc::EBADF);
        if !fine || after != -1 || after_errno != libc::EBADF {
            return Some(format!(
                "round {round}: blocked read gave {got:?}, later read {after} errno {after_errno}"
            ));
        }
    }
    None
}

/// A thread that wrote through the write end exits; then the write end's
/// last descriptor is closed: the reader gets the byte, then end of file.
fn thread_exit_releases() -> Option<String> {
    let (r, w) = pipe();
    let wrote = std::thread::spawn(move || write1(w, b'z'))
        .join()
        .unwrap_or(-1);
    close(w);
    let first = read1(r);
    let second = read1(r).0;
    close(r);
    (wrote != 1 || first != (1, b'z') || second != 0)
        .then(|| format!("write {wrote}, reads {first:?} then {second}"))
}

/// A forked child closes and reopens an inherited number; the parent's
/// descriptor still reads its own file.
fn fork_keeps_parent() -> Option<String> {
    let fd = file_of("/tmp/fdshare_a", b'a');
    let before = first_byte(fd);
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let inherited = first_byte(fd);
        close(fd);
        let again = open("/tmp/fdshare_b", libc::O_RDONLY);
        let ok = inherited == Ok(b'a') && again == fd && first_byte(again) == Ok(b'b');
        // SAFETY: ends the child.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: `status` is valid for the call.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let after = first_byte(fd);
    close(fd);
    (before != Ok(b'a') || status != 0 || after != Ok(b'a'))
        .then(|| format!("parent {before:?} then {after:?}, child status {status:#x}"))
}

/// A case: `None` when it held, else what was wrong.
type Case = fn() -> Option<String>;

fn main() {
    let cases: [(&str, Case); 6] = [
        ("reopen same number", reopen_same_number),
        ("dup2 over an fd in use", dup2_over_in_use),
        ("EOF to a blocked reader", eof_to_blocked_reader),
        ("close under a blocked reader", close_under_blocked_reader),
        ("thread exit releases", thread_exit_releases),
        ("fork keeps the parent's", fork_keeps_parent),
    ];
    let mut ok = true;
    for (name, case) in cases {
        let wrong = case();
        ok &= wrong.is_none();
        report(name, wrong);
    }
    say(&format!("fdshare: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
