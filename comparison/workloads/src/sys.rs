//! Thin checked wrappers over the raw system calls the workloads use.
//!
//! Owns every `unsafe` block of the crate except the shared counter region
//! (`runner.rs`) and the file mapping (`files.rs`).  Each wrapper turns a
//! failed call into a `Fail` carrying the call's name and the errno, so a
//! missing feature (ENOSYS) becomes a clear message, never a panic.
//! It must not allocate in the per-operation wrappers (they run in the
//! measured loop).

use std::ffi::CString;
use std::fmt;

/// A failed system call: what was attempted and the errno it gave.
#[derive(Debug, Clone)]
pub struct Fail {
    pub what: String,
    pub errno: i32,
}

impl Fail {
    /// `what` failed with the calling thread's current errno.
    pub fn last(what: impl Into<String>) -> Fail {
        Fail {
            what: what.into(),
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        }
    }

    /// A failure that is not a system call error (errno 0).
    pub fn msg(what: impl Into<String>) -> Fail {
        Fail {
            what: what.into(),
            errno: 0,
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errno == 0 {
            write!(f, "{}", self.what)
        } else {
            write!(f, "{} failed: {}", self.what, errno_name(self.errno))
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        Fail {
            what: e.to_string(),
            errno: e.raw_os_error().unwrap_or(0),
        }
    }
}

pub type Res<T> = Result<T, Fail>;

/// The Linux name of an errno value, or `errno N`.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS (the system does not implement this call)",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// A path as a C string (paths here never hold NUL bytes).
pub fn cpath(path: &str) -> CString {
    CString::new(path).expect("workload paths hold no NUL byte")
}

fn check(ret: i64, what: &str) -> Res<i64> {
    if ret < 0 {
        Err(Fail::last(what))
    } else {
        Ok(ret)
    }
}

/// Pin the calling thread to `cpu` (sched_setaffinity on itself).
pub fn pin_to_cpu(cpu: usize) -> Res<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(Fail::msg(format!("CPU {cpu} is beyond the CPU set size")));
    }
    // SAFETY: cpu_set_t is plain data (all-zero is the empty set); CPU_SET
    // stays inside the set because cpu < CPU_SETSIZE (checked above), and
    // sched_setaffinity only reads `size_of::<cpu_set_t>()` bytes of it.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    check(ret as i64, &format!("sched_setaffinity to CPU {cpu}")).map(|_| ())
}

/// The first CPU in 0..n that the calling thread may not run on, if any;
/// `None` also when the system cannot say (sched_getaffinity fails).
pub fn first_unusable_cpu(n: usize) -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; the kernel writes at most its size;
    // CPU_ISSET is only asked about CPUs below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        (0..n).find(|&cpu| cpu >= libc::CPU_SETSIZE as usize || !libc::CPU_ISSET(cpu, &set))
    }
}

/// getppid: the null system call.
pub fn getppid() -> i64 {
    // SAFETY: getppid takes no arguments and touches no memory.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

/// open(path, flags, 0644).
pub fn open(path: &CString, flags: i32) -> Res<i32> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            0o644 as libc::c_uint,
        )
    };
    check(fd as i64, "open").map(|fd| fd as i32)
}

/// close(fd).
pub fn close(fd: i32) -> Res<()> {
    // SAFETY: closing a descriptor touches no memory of ours.
    check(unsafe { libc::close(fd) } as i64, "close").map(|_| ())
}

/// unlink(path).
pub fn unlink(path: &CString) -> Res<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    check(unsafe { libc::unlink(path.as_ptr()) } as i64, "unlink").map(|_| ())
}

/// stat(path), discarding the result.
pub fn stat(path: &CString) -> Res<()> {
    // SAFETY: `st` is a plain-data buffer of the right size for the kernel
    // to fill; `path` is a valid NUL-terminated string.
    let ret = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(path.as_ptr(), &mut st)
    };
    check(ret as i64, "stat").map(|_| ())
}

/// read(fd, buf): bytes read.
pub fn read(fd: i32, buf: &mut [u8]) -> Res<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    check(n as i64, "read").map(|n| n as usize)
}

/// write(fd, buf): bytes written.
pub fn write(fd: i32, buf: &[u8]) -> Res<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from `buf`.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    check(n as i64, "write").map(|n| n as usize)
}

/// pread(fd, buf, offset): bytes read.
pub fn pread(fd: i32, buf: &mut [u8], offset: u64) -> Res<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into `buf`.
    let n = unsafe {
        libc::pread(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    };
    check(n as i64, "pread").map(|n| n as usize)
}

/// lseek(fd, 0, SEEK_SET).
pub fn rewind(fd: i32) -> Res<()> {
    // SAFETY: lseek touches no memory of ours.
    check(unsafe { libc::lseek(fd, 0, libc::SEEK_SET) }, "lseek").map(|_| ())
}

/// ftruncate(fd, 0).
pub fn truncate_to_zero(fd: i32) -> Res<()> {
    // SAFETY: ftruncate touches no memory of ours.
    check(unsafe { libc::ftruncate(fd, 0) } as i64, "ftruncate").map(|_| ())
}

/// getdents64(fd, buf): bytes of directory records, 0 at the end.
pub fn getdents64(fd: i32, buf: &mut [u8]) -> Res<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into `buf`.
    let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
    check(n, "getdents64").map(|n| n as usize)
}

/// Count the records in a getdents64 buffer of `len` bytes.
pub fn count_dirents(buf: &[u8], len: usize) -> Res<usize> {
    // Record layout (linux_dirent64): d_ino u64, d_off i64, d_reclen u16, ...
    let mut at = 0;
    let mut count = 0;
    while at < len {
        if at + 18 > len {
            return Err(Fail::msg("getdents64 returned a truncated record"));
        }
        let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
        if reclen == 0 {
            return Err(Fail::msg("getdents64 returned a record of length 0"));
        }
        at += reclen;
        count += 1;
    }
    Ok(count)
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe() -> Res<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: the kernel writes two ints into `fds`.
    check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as i64,
        "pipe2",
    )?;
    Ok((fds[0], fds[1]))
}

/// fork(): 0 in the child, the child's pid in the parent.
pub fn fork() -> Res<i32> {
    // SAFETY: callers fork only to run code that is safe after fork (raw
    // system calls and `_exit` in the child, or a single-threaded parent).
    check(unsafe { libc::fork() } as i64, "fork").map(|p| p as i32)
}

/// End this process now, without running destructors or atexit handlers
/// (what a forked child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// waitpid(pid): the child's exit code (128 + N if killed by signal N).
pub fn wait_child(pid: i32) -> Res<i32> {
    let mut status = 0;
    loop {
        // SAFETY: the kernel writes one int into `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            break;
        }
        let fail = Fail::last("waitpid");
        if fail.errno != libc::EINTR {
            return Err(fail);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Ok(128 + libc::WTERMSIG(status))
    } else {
        Ok(255)
    }
}

/// mmap of `len` bytes (anonymous when `fd` is -1), returning the address.
pub fn mmap(len: usize, prot: i32, flags: i32, fd: i32) -> Res<*mut u8> {
    // SAFETY: a mapping at an address the kernel chooses cannot overlap any
    // memory Rust owns; the caller decides how the new mapping is used.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        Err(Fail::last("mmap"))
    } else {
        Ok(p.cast())
    }
}

/// munmap of a mapping made by `mmap` that nothing references any more.
pub fn munmap(addr: *mut u8, len: usize) -> Res<()> {
    // SAFETY: callers pass a mapping of their own that holds no live Rust
    // references (its pointers are not used after this call).
    check(unsafe { libc::munmap(addr.cast(), len) } as i64, "munmap").map(|_| ())
}

/// sched_yield().
pub fn yield_cpu() {
    // SAFETY: sched_yield touches no memory.
    unsafe { libc::sched_yield() };
}
