//! Thin checked wrappers over the raw system calls the workloads use.
//!
//! Owns every `unsafe` block of the crate except the shared counter region
//! (`runner.rs`) and the file mapping (`files.rs`), including the socket
//! calls of the network workloads (`net.rs`).  Each wrapper turns a
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
    match abi::Errno(e) {
        abi::Errno::ENOSYS => "ENOSYS (the system does not implement this call)".to_string(),
        errno => match errno.name() {
            Some(name) => name.to_string(),
            None => format!("errno {e}"),
        },
    }
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

/// `pin_to_cpu` without allocating (for a child forked from a threaded
/// worker): whether it worked.
pub fn pin_to_cpu_raw(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: as in `pin_to_cpu`.
    let ret = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    ret == 0
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

/// This kernel's `ipc_endpoint_create` (abi::ipc; `ENOSYS` on Linux, which
/// has no such call: the `ipc_call` workload then reports that it does not
/// apply).
pub fn ipc_endpoint_create() -> Res<u64> {
    // SAFETY: the call takes no arguments and touches no user memory.
    let r = unsafe { libc::syscall(abi::ipc::SYS_IPC_ENDPOINT_CREATE as libc::c_long) };
    check(r, "ipc_endpoint_create").map(|h| h as u64)
}

/// A message-passing IPC call with no payload: `nr` with `rdi`, `rsi`
/// (label) and the four words zero, no buffers (r12..r15 zero); returns
/// `rax`, `rdi` (a receive's reply token) and `rsi` (its label).
fn ipc_null(nr: u64, rdi: u64, label: u64) -> (i64, u64, u64) {
    let rax: i64;
    let out_rdi: u64;
    let out_rsi: u64;
    // SAFETY: with zero buffer lengths the IPC calls touch no user memory;
    // they change only the registers named here (rcx and r11 by
    // `syscall` itself).
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => rax,
            inlateout("rdi") rdi => out_rdi,
            inlateout("rsi") label => out_rsi,
            inlateout("rdx") 0u64 => _,
            inlateout("r10") 0u64 => _,
            inlateout("r8") 0u64 => _,
            inlateout("r9") 0u64 => _,
            inlateout("r12") 0u64 => _,
            inlateout("r13") 0u64 => _,
            inlateout("r14") 0u64 => _,
            inlateout("r15") 0u64 => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rax, out_rdi, out_rsi)
}

/// `ipc_call(handle, label)` with no words or bytes: the null round trip.
pub fn ipc_call_null(handle: u64, label: u64) -> Res<()> {
    let (rax, _, _) = ipc_null(abi::ipc::SYS_IPC_CALL, handle, label);
    if (-4095..0).contains(&rax) {
        return Err(Fail {
            what: "ipc_call".into(),
            errno: -rax as i32,
        });
    }
    Ok(())
}

/// The null server: answers every call on `handle` with an empty reply
/// (`ipc_reply_recv`: one system call per request) until a call labelled
/// `quit` (answered too) or an error.  Raw system calls only, so it is
/// safe in a child forked from a threaded process.
pub fn ipc_serve_null(handle: u64, quit: u64) {
    let mut token = 0u64;
    loop {
        let (rax, rdi, label) = ipc_null(abi::ipc::SYS_IPC_REPLY_RECV, (token << 32) | handle, 0);
        if rax < 0 {
            return;
        }
        token = rdi;
        if label == quit {
            let _ = ipc_null(abi::ipc::SYS_IPC_REPLY, token, 0);
            return;
        }
    }
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

/// pwrite(fd, buf, offset): bytes written.
pub fn pwrite(fd: i32, buf: &[u8], offset: u64) -> Res<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from `buf`.
    let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
    check(n as i64, "pwrite").map(|n| n as usize)
}

/// fsync(fd).
pub fn fsync(fd: i32) -> Res<()> {
    // SAFETY: fsync touches no memory of ours.
    check(unsafe { libc::fsync(fd) } as i64, "fsync").map(|_| ())
}

/// Makes `dir` (and its parents) and mounts the ext2 file system on `dev`
/// there (`--mount`).
pub fn mount_ext2(dev: &str, dir: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    let (d, t, k) = (cpath(dev), cpath(dir), cpath("ext2"));
    // SAFETY: valid C strings; no mount data.
    let r = unsafe { libc::mount(d.as_ptr(), t.as_ptr(), k.as_ptr(), 0, std::ptr::null()) };
    check(r as i64, "mount")
        .map(|_| ())
        .map_err(|f| f.to_string())
}

/// umount2(dir, 0): writes the file system back and unmounts it.
pub fn umount(dir: &str) -> Result<(), String> {
    let t = cpath(dir);
    // SAFETY: a valid C string.
    let r = unsafe { libc::umount2(t.as_ptr(), 0) };
    check(r as i64, "umount2")
        .map(|_| ())
        .map_err(|f| f.to_string())
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
    check(
        // SAFETY: the kernel writes two ints into `fds`.
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

/// A program to start: its path and argument vector, built once so that
/// starting it allocates nothing.
pub struct Program {
    path: CString,
    _args: Vec<CString>,
    /// `_args` as a NULL-terminated pointer array (points into `_args`).
    argv: Vec<*const libc::c_char>,
}

impl Program {
    pub fn new(path: &str, args: &[&str]) -> Res<Program> {
        let cstr = |s: &str| CString::new(s).map_err(|_| Fail::msg(format!("NUL in `{s}`")));
        let path = cstr(path)?;
        let args: Vec<CString> = args.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        Ok(Program {
            path,
            _args: args,
            argv,
        })
    }

    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

/// fork, `execve(program)` with an empty environment in the child (exit
/// status 127 if that fails), and wait: the child's exit code.  The child
/// makes only these two system calls, so this is safe from any thread.
pub fn spawn_wait(program: &Program) -> Res<i32> {
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child runs only execve and _exit (async-signal-safe);
    // every pointer passed is a NUL-terminated string or NULL-terminated
    // array that `program` and `envp` keep alive across the call.
    let pid = check(unsafe { libc::fork() } as i64, "fork")? as i32;
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            libc::execve(program.path.as_ptr(), program.argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
    }
    wait_child(pid)
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

/// socket(AF_INET, kind | SOCK_CLOEXEC | extra_flags, 0).
pub fn socket_inet(kind: i32, extra_flags: i32) -> Res<i32> {
    let what = if kind == libc::SOCK_STREAM {
        "socket(AF_INET, SOCK_STREAM)"
    } else {
        "socket(AF_INET, SOCK_DGRAM)"
    };
    // SAFETY: socket touches no memory of ours.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC | extra_flags, 0) };
    check(fd as i64, what).map(|fd| fd as i32)
}

/// 127.0.0.1:`port` as a sockaddr_in.
fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    sa
}

const SOCKADDR_IN_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// bind(fd, 127.0.0.1:0) and return the port the system chose.
pub fn bind_loopback_ephemeral(fd: i32) -> Res<u16> {
    let sa = loopback(0);
    // SAFETY: `sa` is a valid sockaddr_in of the length passed.
    let ret = unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    };
    check(ret as i64, "bind to 127.0.0.1:0")?;
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut out: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = SOCKADDR_IN_LEN;
    // SAFETY: the kernel writes at most `len` bytes into `out` and updates `len`.
    let ret =
        unsafe { libc::getsockname(fd, (&mut out as *mut libc::sockaddr_in).cast(), &mut len) };
    check(ret as i64, "getsockname")?;
    let port = u16::from_be(out.sin_port);
    if port == 0 {
        return Err(Fail::msg("getsockname after bind to port 0 gave port 0"));
    }
    Ok(port)
}

/// listen(fd, backlog).
pub fn listen(fd: i32, backlog: i32) -> Res<()> {
    // SAFETY: listen touches no memory of ours.
    check(unsafe { libc::listen(fd, backlog) } as i64, "listen").map(|_| ())
}

/// connect(fd, 127.0.0.1:port).
pub fn connect_loopback(fd: i32, port: u16) -> Res<()> {
    let sa = loopback(port);
    // SAFETY: `sa` is a valid sockaddr_in of the length passed.
    let ret = unsafe {
        libc::connect(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    };
    check(ret as i64, "connect to 127.0.0.1").map(|_| ())
}

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): the new connection.
pub fn accept(fd: i32) -> Res<i32> {
    // SAFETY: with NULL address pointers the kernel writes no memory of ours.
    let c = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    check(c as i64, "accept4").map(|c| c as i32)
}

/// setsockopt(fd, level, name, &value, sizeof(int)).
pub fn set_int_option(fd: i32, level: i32, name: i32, value: i32, what: &str) -> Res<()> {
    // SAFETY: the kernel reads one int from `value`.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    check(ret as i64, what).map(|_| ())
}

/// setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, ms).
pub fn set_receive_timeout(fd: i32, ms: u64) -> Res<()> {
    // SAFETY: timeval is plain data; all-zero is a valid value.
    let mut tv: libc::timeval = unsafe { std::mem::zeroed() };
    tv.tv_sec = (ms / 1000) as _;
    tv.tv_usec = (ms % 1000 * 1000) as _;
    // SAFETY: the kernel reads one timeval from `tv`.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    check(ret as i64, "setsockopt(SO_RCVTIMEO)").map(|_| ())
}

/// poll(fds, -1) on descriptors for reading: which of them are readable
/// (or in error/hang-up), as a bit mask of their positions.
pub fn poll_readable(fds: &[i32]) -> Res<u32> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: the kernel reads and writes `pfds.len()` pollfd entries.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            break;
        }
        let fail = Fail::last("poll");
        if fail.errno != libc::EINTR {
            return Err(fail);
        }
    }
    Ok(pfds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .fold(0, |mask, (i, _)| mask | 1 << i))
}

/// send(fd, buf, MSG_NOSIGNAL): bytes sent (a zero-length datagram for an
/// empty `buf` on a UDP socket).
pub fn send(fd: i32, buf: &[u8]) -> Res<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from `buf`.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    check(n as i64, "send").map(|n| n as usize)
}
