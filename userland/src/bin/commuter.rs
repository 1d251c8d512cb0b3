//! `commuter`: COMMUTER-style pair tests (Clements et al., SOSP 2013).
//! Pairs of system calls that commute (their results and the state they
//! leave do not depend on their order) run on two CPUs from the same
//! starting state, each call in a sharing-plugin window (marker protocol:
//! docs/SHARING.md), so the plugin can say whether the pair's two calls
//! touched a cache line that one of them wrote: a conflict-free pair scales.
//!
//! Usage: `commuter [--reps R] [--only NAME,...] [--list]`.  For each pair
//! (its index in `PAIRS` is its dump label):
//! 1. order A;B, then B;A, each from a fresh starting state, no windows: the
//!    results and the observed end state must be equal for a commuting pair
//!    and differ for a control (`commutes: false`);
//! 2. R times (default 3) concurrently: worker 0 on CPU 0 and worker 1 on
//!    CPU 1 pass a barrier, begin a window, make their call, end it, pass a
//!    barrier; worker 0 then labels and dumps the plugin's table; the
//!    results must be those of a sequential order.
//!
//! Prints one deterministic line per pair: `NAME: RESULT_A RESULT_B
//! commutes|order-dependent` (`<-- WRONG` when the verdict is not the
//! expected one), then `commuter: pass`.  Results are numbers, errno names,
//! or `fd` for a new file descriptor (its number depends on the order in one
//! fd table, as POSIX's lowest-fd rule says; the pair is about the rest).
//! Without the plugin the markers are NOPs, so this is also a differential
//! program.  Needs 2 CPUs.
//!
//! Invariants: inside a window a worker makes exactly its one call (raw
//! `syscall`, no allocation, no lock, no printing), on memory it touched
//! before (its own scratch buffer, a pre-faulted stack), and stores its
//! result only after the window ends.  Main builds and removes each
//! starting state; it must never run a call itself.

use std::ffi::CString;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use userland::marker;
use userland::{errno, errno_name, say};

/// Scratch buffer of each worker (stat results, read data).
const SCRATCH: usize = 64 * 1024;
/// Base directory of the file pairs.
const BASE: &str = "/tmp/commuter";
/// First UDP/TCP port the socket pairs use.
const PORT: u16 = 47100;

/// What a call's raw return value means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ret {
    /// Compare the value itself (or the errno).
    Value,
    /// A new fd: compared as `fd`; main closes it after the run.
    Fd,
    /// Any non-negative value is `ok` (addresses, times).
    Ok,
}

/// The starting state of one run, built by a pair's `setup`.
#[derive(Default)]
struct State {
    dir: String,
    paths: Vec<CString>,
    fds: Vec<i32>,
    /// Base and length of a memory region of the pair (unmapped on drop).
    mem: usize,
    mem_len: usize,
    /// A line both workers of the control write.
    shared: AtomicU64,
}

impl Drop for State {
    fn drop(&mut self) {
        for &fd in &self.fds {
            // SAFETY: closing an fd of ours; EBADF if a call closed it.
            unsafe { libc::close(fd) };
        }
        if self.mem_len != 0 {
            // SAFETY: the region was mapped by setup and nothing points into it.
            unsafe { libc::munmap(self.mem as *mut libc::c_void, self.mem_len) };
        }
        if !self.dir.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

type Setup = fn(&mut State) -> Result<(), String>;
/// Worker t's call on the state, with its scratch buffer: the raw result
/// (negative: -errno).
type Call = fn(&State, usize, &mut [u8]) -> i64;
/// A description of the end state, compared between orders.
type Observe = fn(&State) -> String;

struct Pair {
    name: &'static str,
    /// False for the controls: their results depend on the order.
    commutes: bool,
    ret: Ret,
    setup: Setup,
    call: Call,
    observe: Observe,
}

// ---- raw system calls -----------------------------------------------------

/// `syscall(nr, args...)`: the result, or -errno.
fn sys(nr: i64, a: [usize; 6]) -> i64 {
    // SAFETY: every caller passes arguments that are valid for `nr`
    // (pointers into live buffers of the right size, or plain numbers).
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        -(errno() as i64)
    } else {
        r
    }
}

fn sys0(nr: i64) -> i64 {
    sys(nr, [0; 6])
}
fn sys1(nr: i64, a: usize) -> i64 {
    sys(nr, [a, 0, 0, 0, 0, 0])
}
fn sys2(nr: i64, a: usize, b: usize) -> i64 {
    sys(nr, [a, b, 0, 0, 0, 0])
}
fn sys3(nr: i64, a: usize, b: usize, c: usize) -> i64 {
    sys(nr, [a, b, c, 0, 0, 0])
}
fn sys4(nr: i64, a: usize, b: usize, c: usize, d: usize) -> i64 {
    sys(nr, [a, b, c, d, 0, 0])
}
fn sys6(nr: i64, a: [usize; 6]) -> i64 {
    sys(nr, a)
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in our paths")
}

fn p(s: &State, i: usize) -> usize {
    s.paths[i].as_ptr() as usize
}

// ---- starting states ------------------------------------------------------

fn fresh_dir(s: &mut State) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(BASE);
    std::fs::create_dir_all(BASE).map_err(|e| format!("mkdir {BASE}: {e}"))?;
    s.dir = BASE.to_string();
    Ok(())
}

/// A file of `len` bytes (byte i is i % 251) at `name` under the pair dir.
fn make_file(s: &State, name: &str, len: usize) -> Result<(), String> {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(format!("{}/{name}", s.dir), data).map_err(|e| format!("write {name}: {e}"))
}

fn path(s: &mut State, name: &str) {
    let full = format!("{}/{name}", s.dir);
    s.paths.push(cstr(&full));
}

fn open_fd(s: &mut State, name: &str, flags: i32) -> Result<(), String> {
    let c = cstr(&format!("{}/{name}", s.dir));
    // SAFETY: `c` is a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(format!("open {name}: {}", errno_name(errno())));
    }
    s.fds.push(fd);
    Ok(())
}

fn no_setup(_: &mut State) -> Result<(), String> {
    Ok(())
}

/// Directory with files f0 and f1 (16 KiB each), paths[0..2] naming them.
fn two_files(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    for name in ["f0", "f1"] {
        make_file(s, name, 16384)?;
        path(s, name);
    }
    Ok(())
}

/// As `two_files`, with paths[2..4] = n0, n1 (not existing).
fn files_and_new_names(s: &mut State) -> Result<(), String> {
    two_files(s)?;
    path(s, "n0");
    path(s, "n1");
    Ok(())
}

/// As `two_files`, with fds[0..2] open read-write on f0 and f1.
fn two_open_files(s: &mut State) -> Result<(), String> {
    two_files(s)?;
    open_fd(s, "f0", libc::O_RDWR)?;
    open_fd(s, "f1", libc::O_RDWR)
}

/// One file f0 (paths[0]) open twice read-write (fds[0], fds[1]).
fn one_file_two_fds(s: &mut State) -> Result<(), String> {
    two_files(s)?;
    open_fd(s, "f0", libc::O_RDWR)?;
    open_fd(s, "f0", libc::O_RDWR)
}

/// An empty directory with paths[0..2] = n0, n1 (not existing).
fn two_new_names(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    path(s, "n0");
    path(s, "n1");
    Ok(())
}

/// An empty directory with paths[0] = paths[1] = n0.
fn one_new_name(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    path(s, "n0");
    path(s, "n0");
    Ok(())
}

/// Directories d0 and d1, each with file x; paths: d0/x, d0/y, d1/x, d1/y.
fn two_dirs(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    for d in ["d0", "d1"] {
        std::fs::create_dir(format!("{}/{d}", s.dir)).map_err(|e| format!("mkdir {d}: {e}"))?;
        make_file(s, &format!("{d}/x"), 100)?;
        path(s, &format!("{d}/x"));
        path(s, &format!("{d}/y"));
    }
    Ok(())
}

/// Files a and c in one directory; paths: a, b, c, d.
fn one_dir_renames(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    make_file(s, "a", 100)?;
    make_file(s, "c", 100)?;
    for n in ["a", "b", "c", "d"] {
        path(s, n);
    }
    Ok(())
}

/// Empty directories e0 and e1 (paths[0..2]).
fn two_empty_dirs(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    for d in ["e0", "e1"] {
        std::fs::create_dir(format!("{}/{d}", s.dir)).map_err(|e| format!("mkdir {d}: {e}"))?;
        path(s, d);
    }
    Ok(())
}

/// Two pipes, each with 64 bytes queued: fds = [r0, w0, r1, w1].
fn two_pipes(s: &mut State) -> Result<(), String> {
    for _ in 0..2 {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two fds pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe2: {}", errno_name(errno())));
        }
        // SAFETY: writing 64 bytes from a live buffer.
        unsafe { libc::write(fds[1], [7u8; 64].as_ptr() as *const libc::c_void, 64) };
        s.fds.extend(fds);
    }
    Ok(())
}

fn map(len: usize, prot: i32, flags: i32, fd: i32) -> Result<usize, String> {
    // SAFETY: a new mapping; no existing memory is affected.
    let m = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if m == libc::MAP_FAILED {
        Err(format!("mmap: {}", errno_name(errno())))
    } else {
        Ok(m as usize)
    }
}

/// Distance between the two workers' pages in the memory pairs: 16 pages,
/// so their page-table entries lie in different cache lines.
const STRIDE: usize = 16 * 4096;

fn touch(s: &State) {
    for off in (0..s.mem_len).step_by(4096) {
        // SAFETY: inside the read-write region setup mapped.
        unsafe { std::ptr::write_volatile((s.mem + off) as *mut u8, 1) };
    }
}

/// A PROT_NONE reservation of 2 strides (the workers map over it).
fn reserved(s: &mut State) -> Result<(), String> {
    s.mem_len = 2 * STRIDE;
    s.mem = map(
        s.mem_len,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )?;
    Ok(())
}

/// A touched private anonymous region of 2 strides.
fn touched_anon(s: &mut State) -> Result<(), String> {
    s.mem_len = 2 * STRIDE;
    s.mem = map(
        s.mem_len,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )?;
    touch(s);
    Ok(())
}

fn untouched(s: &mut State, flags: i32) -> Result<(), String> {
    s.mem_len = 2 * STRIDE;
    s.mem = map(s.mem_len, libc::PROT_READ | libc::PROT_WRITE, flags, -1)?;
    Ok(())
}

fn untouched_private(s: &mut State) -> Result<(), String> {
    untouched(s, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
}

fn untouched_shared(s: &mut State) -> Result<(), String> {
    untouched(s, libc::MAP_SHARED | libc::MAP_ANONYMOUS)
}

/// File f0 (2 strides long, read once so it is cached) mapped `flags`,
/// untouched; fds[0] is the file.
fn file_mapping(s: &mut State, flags: i32) -> Result<(), String> {
    fresh_dir(s)?;
    make_file(s, "f0", 2 * STRIDE)?;
    path(s, "f0");
    open_fd(s, "f0", libc::O_RDWR)?;
    s.mem_len = 2 * STRIDE;
    s.mem = map(
        s.mem_len,
        libc::PROT_READ | libc::PROT_WRITE,
        flags,
        s.fds[0],
    )?;
    Ok(())
}

fn file_shared(s: &mut State) -> Result<(), String> {
    file_mapping(s, libc::MAP_SHARED)
}

fn file_private(s: &mut State) -> Result<(), String> {
    file_mapping(s, libc::MAP_PRIVATE)
}

/// File f0 of 2 strides open (fds[0]) and a reservation to map it over.
fn file_and_reservation(s: &mut State) -> Result<(), String> {
    fresh_dir(s)?;
    make_file(s, "f0", 2 * STRIDE)?;
    open_fd(s, "f0", libc::O_RDWR)?;
    reserved(s)
}

fn udp_socket() -> Result<i32, String> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(format!("socket: {}", errno_name(errno())))
    } else {
        Ok(fd)
    }
}

fn tcp_socket() -> Result<i32, String> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(format!("socket: {}", errno_name(errno())))
    } else {
        Ok(fd)
    }
}

fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    a
}

const ADDR_LEN: usize = std::mem::size_of::<libc::sockaddr_in>();

fn bind_to(fd: i32, port: u16) -> Result<(), String> {
    let a = loopback(port);
    // SAFETY: `a` is a sockaddr_in of the length we pass.
    let r = unsafe { libc::bind(fd, &a as *const _ as *const libc::sockaddr, ADDR_LEN as u32) };
    if r != 0 {
        Err(format!("bind {port}: {}", errno_name(errno())))
    } else {
        Ok(())
    }
}

/// Two unbound UDP sockets (fds[0..2]).
fn two_udp(s: &mut State) -> Result<(), String> {
    s.fds = vec![udp_socket()?, udp_socket()?];
    Ok(())
}

/// Two unbound TCP sockets.
fn two_tcp(s: &mut State) -> Result<(), String> {
    s.fds = vec![tcp_socket()?, tcp_socket()?];
    Ok(())
}

/// Two TCP sockets bound to PORT and PORT+1.
fn two_bound_tcp(s: &mut State) -> Result<(), String> {
    two_tcp(s)?;
    bind_to(s.fds[0], PORT)?;
    bind_to(s.fds[1], PORT + 1)
}

/// fds = [receiver0 on PORT, receiver1 on PORT+1, sender0, sender1].
fn udp_two_flows(s: &mut State) -> Result<(), String> {
    s.fds = vec![udp_socket()?, udp_socket()?, udp_socket()?, udp_socket()?];
    bind_to(s.fds[0], PORT)?;
    bind_to(s.fds[1], PORT + 1)
}

/// As `udp_two_flows`, with one 64-byte datagram queued on each receiver.
fn udp_two_queued(s: &mut State) -> Result<(), String> {
    udp_two_flows(s)?;
    for t in 0..2 {
        let a = loopback(PORT + t as u16);
        // SAFETY: a 64-byte buffer and a sockaddr_in of the given length.
        let r = unsafe {
            libc::sendto(
                s.fds[2 + t],
                [9u8; 64].as_ptr() as *const libc::c_void,
                64,
                0,
                &a as *const _ as *const libc::sockaddr,
                ADDR_LEN as u32,
            )
        };
        if r != 64 {
            return Err(format!("sendto: {}", errno_name(errno())));
        }
    }
    Ok(())
}

/// One UDP socket bound to PORT (fds[0]).
fn one_bound_udp(s: &mut State) -> Result<(), String> {
    s.fds = vec![udp_socket()?];
    bind_to(s.fds[0], PORT)
}

// ---- observations of the end state -----------------------------------------

fn nothing(_: &State) -> String {
    String::new()
}

/// Sorted names and sizes under the pair directory (one level of subdirs).
fn listing(s: &State) -> String {
    fn walk(dir: &str, prefix: &str, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            out.push(format!("{prefix}?"));
            return;
        };
        for e in rd.flatten() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            match e.metadata() {
                Ok(m) if m.is_dir() => {
                    out.push(format!("{name}/"));
                    walk(&e.path().to_string_lossy(), &format!("{name}/"), out);
                }
                Ok(m) => out.push(format!("{name}:{}", m.len())),
                Err(_) => out.push(format!("{name}:?")),
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.dir, "", &mut out);
    out.sort();
    out.join(",")
}

/// Offsets of fds[0] and fds[1].
fn offsets(s: &State) -> String {
    s.fds
        .iter()
        .take(2)
        .map(|&fd| {
            // SAFETY: lseek takes no pointers.
            (unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }).to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The first byte of each worker's page of the region.
fn region_bytes(s: &State) -> String {
    (0..2)
        .map(|t| {
            // SAFETY: reading the region setup mapped readable (the memory
            // pairs leave both pages readable).
            unsafe { std::ptr::read_volatile((s.mem + t * STRIDE) as *const u8) }.to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Bytes queued on each receiver (UDP pairs; non-blocking reads).
fn queued(s: &State) -> String {
    (0..2)
        .map(|t| {
            let mut buf = [0u8; 256];
            // SAFETY: reading into a live 256-byte buffer.
            let r = unsafe {
                libc::recv(
                    s.fds[t],
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                errno_name(errno())
            } else {
                r.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn shared_value(s: &State) -> String {
    s.shared.load(Ordering::Relaxed).to_string()
}

/// The sigaction handlers of SIGUSR1 and SIGUSR2 (ignored or default).
fn handlers(_: &State) -> String {
    [libc::SIGUSR1, libc::SIGUSR2]
        .iter()
        .map(|&sig| {
            // SAFETY: sigaction writes the old action into `old`.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
            (if old.sa_sigaction == libc::SIG_IGN {
                "ign"
            } else {
                "dfl"
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ---- the pairs -------------------------------------------------------------

macro_rules! pair {
    ($name:literal, $ret:ident, $setup:expr, $observe:expr, |$s:ident, $t:ident, $buf:ident| $call:expr) => {
        Pair {
            name: $name,
            commutes: true,
            ret: Ret::$ret,
            setup: $setup,
            call: |$s, $t, $buf| {
                let _ = (&$s, &$t, &$buf);
                $call
            },
            observe: $observe,
        }
    };
}

macro_rules! control {
    ($name:literal, $ret:ident, $setup:expr, $observe:expr, |$s:ident, $t:ident, $buf:ident| $call:expr) => {
        Pair {
            commutes: false,
            ..pair!($name, $ret, $setup, $observe, |$s, $t, $buf| $call)
        }
    };
}

const O_NEW: usize = (libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC) as usize;
const O_RD: usize = (libc::O_RDONLY | libc::O_CLOEXEC) as usize;

fn buf_ptr(buf: &mut [u8]) -> usize {
    buf.as_mut_ptr() as usize
}

/// `st_size` from a stat buffer written by the kernel into `buf`.
fn st_size(r: i64, buf: &[u8]) -> i64 {
    if r < 0 {
        return r;
    }
    // SAFETY: the kernel filled a `struct stat` at the start of `buf`, which
    // is large enough and aligned (a page-aligned allocation).
    unsafe { (*(buf.as_ptr() as *const libc::stat)).st_size }
}

/// Every pair, in label order (a pair's index is its dump label).
static PAIRS: &[Pair] = &[
    // ---- files: names in one directory
    pair!(
        "create_diff_names",
        Fd,
        two_new_names,
        listing,
        |s, t, b| sys3(libc::SYS_open, p(s, t), O_NEW, 0o644)
    ),
    pair!("unlink_diff_names", Value, two_files, listing, |s, t, b| {
        sys1(libc::SYS_unlink, p(s, t))
    }),
    pair!(
        "mkdir_diff_names",
        Value,
        two_new_names,
        listing,
        |s, t, b| sys2(libc::SYS_mkdir, p(s, t), 0o755)
    ),
    pair!(
        "rmdir_diff_dirs",
        Value,
        two_empty_dirs,
        listing,
        |s, t, b| sys1(libc::SYS_rmdir, p(s, t))
    ),
    pair!(
        "link_diff_names",
        Value,
        files_and_new_names,
        listing,
        |s, t, b| sys2(libc::SYS_link, p(s, t), p(s, 2 + t))
    ),
    pair!(
        "rename_in_diff_dirs",
        Value,
        two_dirs,
        listing,
        |s, t, b| sys2(libc::SYS_rename, p(s, 2 * t), p(s, 2 * t + 1))
    ),
    pair!(
        "rename_diff_names_one_dir",
        Value,
        one_dir_renames,
        listing,
        |s, t, b| sys2(libc::SYS_rename, p(s, 2 * t), p(s, 2 * t + 1))
    ),
    // ---- files: lookups and data
    pair!("open_diff_files", Fd, two_files, listing, |s, t, b| {
        sys2(libc::SYS_open, p(s, t), O_RD)
    }),
    pair!("open_same_file", Fd, two_files, listing, |s, t, b| {
        sys2(libc::SYS_open, p(s, 0), O_RD)
    }),
    pair!("stat_same_file", Value, two_files, listing, |s, t, b| {
        st_size(sys2(libc::SYS_stat, p(s, 0), buf_ptr(b)), b)
    }),
    pair!("stat_diff_files", Value, two_files, listing, |s, t, b| {
        st_size(sys2(libc::SYS_stat, p(s, t), buf_ptr(b)), b)
    }),
    pair!("access_same_file", Value, two_files, listing, |s, t, b| {
        sys2(libc::SYS_access, p(s, 0), libc::R_OK as usize)
    }),
    pair!(
        "fstat_same_fd",
        Value,
        two_open_files,
        listing,
        |s, t, b| st_size(sys2(libc::SYS_fstat, s.fds[0] as usize, buf_ptr(b)), b)
    ),
    pair!(
        "fstat_diff_fds",
        Value,
        two_open_files,
        listing,
        |s, t, b| st_size(sys2(libc::SYS_fstat, s.fds[t] as usize, buf_ptr(b)), b)
    ),
    pair!(
        "pread_same_fd",
        Value,
        two_open_files,
        listing,
        |s, t, b| sys4(libc::SYS_pread64, s.fds[0] as usize, buf_ptr(b), 4096, 4096)
    ),
    pair!(
        "pread_diff_files",
        Value,
        two_open_files,
        listing,
        |s, t, b| sys4(libc::SYS_pread64, s.fds[t] as usize, buf_ptr(b), 4096, 4096)
    ),
    pair!(
        "pwrite_diff_files",
        Value,
        two_open_files,
        listing,
        |s, t, b| {
            sys4(
                libc::SYS_pwrite64,
                s.fds[t] as usize,
                buf_ptr(b),
                4096,
                16384,
            )
        }
    ),
    pair!(
        "write_diff_files",
        Value,
        two_open_files,
        listing,
        |s, t, b| sys3(libc::SYS_write, s.fds[t] as usize, buf_ptr(b), 4096)
    ),
    pair!(
        "read_diff_fds_one_file",
        Value,
        one_file_two_fds,
        offsets,
        |s, t, b| sys3(libc::SYS_read, s.fds[t] as usize, buf_ptr(b), 4096)
    ),
    pair!(
        "lseek_diff_fds_one_file",
        Value,
        one_file_two_fds,
        offsets,
        |s, t, b| {
            sys3(
                libc::SYS_lseek,
                s.fds[t] as usize,
                100 * (t + 1),
                libc::SEEK_SET as usize,
            )
        }
    ),
    pair!(
        "ftruncate_diff_files",
        Value,
        two_open_files,
        listing,
        |s, t, b| sys2(libc::SYS_ftruncate, s.fds[t] as usize, 8192)
    ),
    pair!(
        "close_diff_fds",
        Value,
        two_open_files,
        listing,
        |s, t, b| sys1(libc::SYS_close, s.fds[t] as usize)
    ),
    pair!("dup_diff_fds", Fd, two_open_files, listing, |s, t, b| {
        sys1(libc::SYS_dup, s.fds[t] as usize)
    }),
    pair!("read_diff_pipes", Value, two_pipes, nothing, |s, t, b| {
        sys3(libc::SYS_read, s.fds[2 * t] as usize, buf_ptr(b), 64)
    }),
    pair!("write_diff_pipes", Value, two_pipes, nothing, |s, t, b| {
        sys3(libc::SYS_write, s.fds[2 * t + 1] as usize, buf_ptr(b), 64)
    }),
    // ---- memory
    pair!(
        "mmap_anon_diff_regions",
        Ok,
        reserved,
        nothing,
        |s, t, b| {
            sys6(
                libc::SYS_mmap,
                [
                    s.mem + t * STRIDE,
                    4096,
                    (libc::PROT_READ | libc::PROT_WRITE) as usize,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as usize,
                    usize::MAX,
                    0,
                ],
            )
        }
    ),
    pair!(
        "mmap_file_diff_regions",
        Ok,
        file_and_reservation,
        nothing,
        |s, t, b| {
            sys6(
                libc::SYS_mmap,
                [
                    s.mem + t * STRIDE,
                    4096,
                    libc::PROT_READ as usize,
                    (libc::MAP_SHARED | libc::MAP_FIXED) as usize,
                    s.fds[0] as usize,
                    t * STRIDE,
                ],
            )
        }
    ),
    pair!(
        "munmap_diff_regions",
        Value,
        touched_anon,
        nothing,
        |s, t, b| sys2(libc::SYS_munmap, s.mem + t * STRIDE, 4096)
    ),
    pair!(
        "mprotect_diff_regions",
        Value,
        touched_anon,
        region_bytes,
        |s, t, b| {
            sys3(
                libc::SYS_mprotect,
                s.mem + t * STRIDE,
                4096,
                libc::PROT_READ as usize,
            )
        }
    ),
    pair!(
        "fault_anon_private_diff_pages",
        Value,
        untouched_private,
        region_bytes,
        |s, t, b| {
            // SAFETY: the page lies inside the read-write region of setup.
            unsafe { std::ptr::write_volatile((s.mem + t * STRIDE) as *mut u8, 1 + t as u8) };
            0
        }
    ),
    pair!(
        "fault_anon_shared_diff_pages",
        Value,
        untouched_shared,
        region_bytes,
        |s, t, b| {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile((s.mem + t * STRIDE) as *mut u8, 1 + t as u8) };
            0
        }
    ),
    pair!(
        "fault_file_shared_read_diff_pages",
        Value,
        file_shared,
        region_bytes,
        |s, t, b| {
            // SAFETY: the page lies inside the file mapping of setup.
            unsafe { std::ptr::read_volatile((s.mem + t * STRIDE + 1) as *const u8) as i64 }
        }
    ),
    pair!(
        "fault_file_shared_write_diff_pages",
        Value,
        file_shared,
        region_bytes,
        |s, t, b| {
            // SAFETY: as above (mapped read-write, shared).
            unsafe { std::ptr::write_volatile((s.mem + t * STRIDE) as *mut u8, 1 + t as u8) };
            0
        }
    ),
    pair!(
        "fault_file_private_read_same_page",
        Value,
        file_private,
        region_bytes,
        |s, t, b| {
            // SAFETY: as above.
            unsafe { std::ptr::read_volatile((s.mem + 1) as *const u8) as i64 }
        }
    ),
    // ---- process
    pair!("getpid", Value, no_setup, nothing, |s, t, b| sys0(
        libc::SYS_getpid
    )),
    pair!("getppid", Value, no_setup, nothing, |s, t, b| sys0(
        libc::SYS_getppid
    )),
    pair!("getuid", Value, no_setup, nothing, |s, t, b| sys0(
        libc::SYS_getuid
    )),
    pair!("uname", Value, no_setup, nothing, |s, t, b| {
        sys1(libc::SYS_uname, buf_ptr(b))
    }),
    pair!("getrlimit_nofile", Value, no_setup, nothing, |s, t, b| {
        sys2(
            libc::SYS_getrlimit,
            libc::RLIMIT_NOFILE as usize,
            buf_ptr(b),
        )
    }),
    pair!(
        "clock_gettime_monotonic",
        Ok,
        no_setup,
        nothing,
        |s, t, b| {
            sys2(
                libc::SYS_clock_gettime,
                libc::CLOCK_MONOTONIC as usize,
                buf_ptr(b),
            )
        }
    ),
    pair!(
        "sigprocmask_own_threads",
        Value,
        no_setup,
        nothing,
        |s, t, b| {
            // The set (SIGUSR1 blocked) was put at the start of the scratch
            // buffer by the worker; each thread changes its own mask.
            sys4(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK as usize,
                buf_ptr(b),
                0,
                8,
            )
        }
    ),
    pair!(
        "sigaction_diff_signals",
        Value,
        no_setup,
        handlers,
        |s, t, b| {
            // Scratch holds a kernel sigaction with SIG_IGN at offset 1024.
            sys4(
                libc::SYS_rt_sigaction,
                (libc::SIGUSR1 + t as i32) as usize,
                buf_ptr(b) + 1024,
                0,
                8,
            )
        }
    ),
    pair!(
        "sched_getaffinity_self",
        Value,
        no_setup,
        nothing,
        |s, t, b| sys3(libc::SYS_sched_getaffinity, 0, 128, buf_ptr(b))
    ),
    // ---- sockets
    pair!("socket_udp", Fd, no_setup, nothing, |s, t, b| {
        sys3(
            libc::SYS_socket,
            libc::AF_INET as usize,
            (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as usize,
            0,
        )
    }),
    pair!("socket_tcp", Fd, no_setup, nothing, |s, t, b| {
        sys3(
            libc::SYS_socket,
            libc::AF_INET as usize,
            (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as usize,
            0,
        )
    }),
    pair!("close_diff_sockets", Value, two_udp, nothing, |s, t, b| {
        sys1(libc::SYS_close, s.fds[t] as usize)
    }),
    pair!("bind_udp_diff_ports", Value, two_udp, nothing, |s, t, b| {
        // The worker's scratch holds sockaddr_in for PORT + t at offset 2048.
        sys3(
            libc::SYS_bind,
            s.fds[t] as usize,
            buf_ptr(b) + 2048,
            ADDR_LEN,
        )
    }),
    pair!(
        "listen_tcp_diff_sockets",
        Value,
        two_bound_tcp,
        nothing,
        |s, t, b| sys2(libc::SYS_listen, s.fds[t] as usize, 8)
    ),
    pair!(
        "sendto_udp_diff_sockets",
        Value,
        udp_two_flows,
        queued,
        |s, t, b| {
            sys6(
                libc::SYS_sendto,
                [
                    s.fds[2 + t] as usize,
                    buf_ptr(b),
                    64,
                    0,
                    buf_ptr(b) + 2048,
                    ADDR_LEN,
                ],
            )
        }
    ),
    pair!(
        "recv_udp_diff_sockets",
        Value,
        udp_two_queued,
        queued,
        |s, t, b| {
            sys6(
                libc::SYS_recvfrom,
                [
                    s.fds[t] as usize,
                    buf_ptr(b),
                    256,
                    libc::MSG_DONTWAIT as usize,
                    0,
                    0,
                ],
            )
        }
    ),
    pair!(
        "getsockname_same_socket",
        Value,
        one_bound_udp,
        nothing,
        |s, t, b| {
            // Scratch offset 4096 holds the length (in/out), 4104 the address.
            sys3(
                libc::SYS_getsockname,
                s.fds[0] as usize,
                buf_ptr(b) + 4104,
                buf_ptr(b) + 4096,
            )
        }
    ),
    // ---- controls: order-dependent, must conflict
    control!(
        "control_shared_user_line",
        Value,
        no_setup,
        shared_value,
        |s, t, b| s.shared.fetch_add(1 + t as u64, Ordering::Relaxed) as i64
    ),
    control!(
        "control_create_same_name",
        Fd,
        one_new_name,
        listing,
        |s, t, b| sys3(libc::SYS_open, p(s, t), O_NEW, 0o644)
    ),
    control!(
        "control_bind_same_port",
        Value,
        two_udp,
        nothing,
        |s, t, b| {
            // Scratch offset 3072 holds sockaddr_in for PORT (both workers).
            sys3(
                libc::SYS_bind,
                s.fds[t] as usize,
                buf_ptr(b) + 3072,
                ADDR_LEN,
            )
        }
    ),
];

// ---- the two workers ---------------------------------------------------------

/// How a run orders the two calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Worker 0's call, then worker 1's.
    AB,
    /// Worker 1's call, then worker 0's.
    BA,
    /// Both at once, each in a window; worker 0 dumps afterwards.
    Together,
}

/// One cache line (so the workers' result slots share none).
#[repr(align(64))]
#[derive(Default)]
struct Line<T>(T);

/// What main and the two workers share.  Each run: main fills `job`,
/// everyone passes `go`; the workers call and store their result slot;
/// everyone passes `done`.
struct Shared {
    go: Barrier,
    done: Barrier,
    job: Mutex<Option<(usize, Order, Arc<State>)>>,
    /// Calls made in this run (orders AB and BA take turns on it).
    turn: Line<AtomicU32>,
    results: [Line<AtomicI64>; 2],
    quit: Line<AtomicU32>,
}

/// Pin the calling thread to `cpu`.
fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it (cpu < 2).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        Err(errno_name(errno()))
    } else {
        Ok(())
    }
}

/// Put the structures some calls read into worker t's scratch buffer: a
/// fixed pattern, the signal set {SIGUSR1} at 0, a kernel sigaction
/// (SIG_IGN) at 1024, sockaddr_in 127.0.0.1:PORT+t at 2048 and
/// 127.0.0.1:PORT at 3072, a socklen of 16 at 4096.
fn prepare(buf: &mut [u8], t: usize) {
    for (i, b) in buf[..8192].iter_mut().enumerate() {
        *b = (i % 253) as u8;
    }
    let set: u64 = 1 << (libc::SIGUSR1 - 1);
    buf[..8].copy_from_slice(&set.to_ne_bytes());
    let sigaction: [u64; 4] = [libc::SIG_IGN as u64, 0, 0, 0];
    for (i, w) in sigaction.iter().enumerate() {
        buf[1024 + 8 * i..1032 + 8 * i].copy_from_slice(&w.to_ne_bytes());
    }
    let as_bytes = |a: libc::sockaddr_in| {
        // SAFETY: sockaddr_in is plain data of ADDR_LEN bytes.
        unsafe { std::slice::from_raw_parts(&a as *const _ as *const u8, ADDR_LEN) }.to_vec()
    };
    buf[2048..2048 + ADDR_LEN].copy_from_slice(&as_bytes(loopback(PORT + t as u16)));
    buf[3072..3072 + ADDR_LEN].copy_from_slice(&as_bytes(loopback(PORT)));
    buf[4096..4100].copy_from_slice(&(ADDR_LEN as u32).to_ne_bytes());
}

/// Touch `bytes` of stack below the caller, so calls in a window do not
/// fault on fresh stack pages.
#[inline(never)]
fn fault_in_stack() {
    let mut probe = [0u8; 32 * 1024];
    for i in (0..probe.len()).step_by(4096) {
        // SAFETY: writing inside a live local array.
        unsafe { std::ptr::write_volatile(&mut probe[i], 1) };
    }
    std::hint::black_box(&probe);
}

fn worker(shared: &Shared, t: usize) {
    if let Err(e) = pin_to(t) {
        say(&format!(
            "commuter: worker {t} cannot run on CPU {t}: {e} <-- WRONG"
        ));
        std::process::exit(1);
    }
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        shared.go.wait();
        if shared.quit.0.load(Ordering::Acquire) != 0 {
            return;
        }
        let (index, order, state) = shared
            .job
            .lock()
            .unwrap()
            .clone()
            .expect("main sets the job before go");
        let pair = &PAIRS[index];
        prepare(&mut scratch, t);
        fault_in_stack();
        // errno lives in this thread's TLS: write it before any window.
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = 0 };
        let result = match order {
            Order::Together => {
                marker::begin();
                let r = (pair.call)(&state, t, &mut scratch);
                marker::end();
                r
            }
            Order::AB | Order::BA => {
                let my_turn = if (order == Order::AB) == (t == 0) {
                    0
                } else {
                    1
                };
                while shared.turn.0.load(Ordering::Acquire) != my_turn {
                    std::hint::spin_loop();
                    // SAFETY: sched_yield takes no arguments.
                    unsafe { libc::sched_yield() };
                }
                let r = (pair.call)(&state, t, &mut scratch);
                shared.turn.0.fetch_add(1, Ordering::AcqRel);
                r
            }
        };
        shared.results[t].0.store(result, Ordering::Release);
        drop(state);
        shared.done.wait();
        if order == Order::Together && t == 0 {
            marker::label(index as u16);
            marker::dump();
        }
    }
}

/// The outcome of one run: normalised results and the observed end state.
#[derive(Clone, PartialEq, Eq)]
struct Outcome {
    results: [String; 2],
    state: String,
}

fn describe(ret: Ret, r: i64) -> String {
    if r < 0 {
        return errno_name(-r as i32);
    }
    match ret {
        Ret::Value => r.to_string(),
        Ret::Fd => "fd".to_string(),
        Ret::Ok => "ok".to_string(),
    }
}

/// One run of pair `index` in `order` from a fresh starting state.
fn run(shared: &Shared, index: usize, order: Order) -> Result<Outcome, String> {
    let pair = &PAIRS[index];
    let mut state = State::default();
    (pair.setup)(&mut state).map_err(|e| format!("setup: {e}"))?;
    let state = Arc::new(state);
    shared.turn.0.store(0, Ordering::Release);
    *shared.job.lock().unwrap() = Some((index, order, state.clone()));
    shared.go.wait();
    shared.done.wait();
    *shared.job.lock().unwrap() = None;
    let raw = [0, 1].map(|t| shared.results[t].0.load(Ordering::Acquire));
    if pair.ret == Ret::Fd {
        for &fd in raw.iter().filter(|&&r| r >= 0) {
            // SAFETY: closing an fd the call made.
            unsafe { libc::close(fd as i32) };
        }
    }
    let outcome = Outcome {
        results: raw.map(|r| describe(pair.ret, r)),
        state: (pair.observe)(&state),
    };
    // The workers dropped their references before `done`.
    drop(state);
    Ok(outcome)
}

/// Run pair `index` in both orders and `reps` times together; print its line.
fn check_pair(shared: &Shared, index: usize, reps: usize) -> bool {
    let pair = &PAIRS[index];
    let outcome = (|| -> Result<(Outcome, Outcome, Vec<Outcome>), String> {
        let ab = run(shared, index, Order::AB)?;
        let ba = run(shared, index, Order::BA)?;
        let mut together = Vec::new();
        for _ in 0..reps {
            together.push(run(shared, index, Order::Together)?);
        }
        Ok((ab, ba, together))
    })();
    let (ab, ba, together) = match outcome {
        Ok(o) => o,
        Err(e) => {
            say(&format!("{}: {e} <-- WRONG", pair.name));
            return false;
        }
    };
    let commutes = ab == ba;
    let mut wrong = Vec::new();
    if commutes != pair.commutes {
        wrong.push(if pair.commutes {
            format!(
                "expected to commute; B;A gave {} {} [{}] vs [{}]",
                ba.results[0], ba.results[1], ba.state, ab.state
            )
        } else {
            "expected to depend on the order".to_string()
        });
    }
    if let Some(o) = together.iter().find(|o| **o != ab && **o != ba) {
        wrong.push(format!(
            "together gave {} {} [{}], no sequential order does",
            o.results[0], o.results[1], o.state
        ));
    }
    say(&format!(
        "{}: {} {} {}{}",
        pair.name,
        ab.results[0],
        ab.results[1],
        if commutes {
            "commutes"
        } else {
            "order-dependent"
        },
        if wrong.is_empty() {
            String::new()
        } else {
            format!(" ({}) <-- WRONG", wrong.join("; "))
        }
    ));
    wrong.is_empty()
}

fn main() {
    let mut reps = 3;
    let mut only: Option<Vec<String>> = None;
    let mut argv = userland::args().into_iter();
    while let Some(a) = argv.next() {
        match a.as_str() {
            "--list" => {
                for (i, pair) in PAIRS.iter().enumerate() {
                    println!("{i} {}", pair.name);
                }
                return;
            }
            "--reps" => match argv.next().and_then(|v| v.parse().ok()) {
                Some(n) if (1..=100).contains(&n) => reps = n,
                _ => {
                    eprintln!("commuter: --reps needs a number 1..=100");
                    std::process::exit(2);
                }
            },
            "--only" => match argv.next() {
                Some(v) => only = Some(v.split(',').map(str::to_string).collect()),
                None => {
                    eprintln!("commuter: --only needs NAME[,NAME...]");
                    std::process::exit(2);
                }
            },
            other => {
                eprintln!("commuter: unknown argument {other}");
                eprintln!("usage: commuter [--reps R] [--only NAME,...] [--list]");
                std::process::exit(2);
            }
        }
    }
    if let Some(names) = &only {
        if let Some(bad) = names.iter().find(|n| !PAIRS.iter().any(|p| p.name == *n)) {
            eprintln!("commuter: no pair named {bad} (see --list)");
            std::process::exit(2);
        }
    }
    assert!(PAIRS.len() <= marker::LABELS as usize);
    let shared = Shared {
        go: Barrier::new(3),
        done: Barrier::new(3),
        job: Mutex::new(None),
        turn: Line::default(),
        results: Default::default(),
        quit: Line::default(),
    };
    let mut all_ok = true;
    std::thread::scope(|scope| {
        for t in 0..2 {
            let shared = &shared;
            scope.spawn(move || worker(shared, t));
        }
        for (index, pair) in PAIRS.iter().enumerate() {
            if only
                .as_ref()
                .is_some_and(|names| !names.iter().any(|n| n == pair.name))
            {
                continue;
            }
            all_ok &= check_pair(&shared, index, reps);
        }
        shared.quit.0.store(1, Ordering::Release);
        shared.go.wait();
    });
    let _ = std::fs::remove_dir_all(BASE);
    if all_ok {
        say("commuter: pass");
    } else {
        say("commuter: FAIL");
        std::process::exit(1);
    }
}
