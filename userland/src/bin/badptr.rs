//! `badptr`: attacks the kernel through bad pointers.  Every system call gets
//! NULL, kernel addresses, non-canonical and unmapped addresses, or a
//! read-only buffer to write into; each must fail with `EFAULT` (printed by
//! name).  Then children touch kernel memory, NULL, and jump into kernel
//! space; each must die of SIGSEGV while this process (and the kernel) keeps
//! running.  Raw `syscall()` is used throughout so that no libc or vDSO code
//! touches the pointers in user space.  Exit 0 when every check held.

use userland::{fork_run, say, wait_for};

/// Addresses no user pointer may reach.
const BAD: [(&str, u64); 5] = [
    ("NULL", 0),
    ("kernel text", 0xffff_ffff_8000_0000),
    ("kernel direct map", 0xffff_8000_0000_0000),
    ("non-canonical", 0x0000_8000_0000_0000),
    ("unmapped user page", 0x0000_0100_0000_0000),
];

fn sys(nr: i64, a: [u64; 4]) -> String {
    // SAFETY: the point of this program: the kernel must check the pointers.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) };
    userland::outcome(r)
}

fn main() {
    let mut ok = true;
    let mut expect = |what: &str, got: String, want: &str| {
        let good = got == want;
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };
    let path = std::ffi::CString::new("/").unwrap();
    let zero = std::ffi::CString::new("/dev/zero").unwrap();
    // SAFETY: opening /dev/zero read-only.
    let zfd = unsafe { libc::open(zero.as_ptr(), libc::O_RDONLY) } as u64;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    unsafe { libc::pipe(fds.as_mut_ptr()) };
    let (prd, pwr) = (fds[0] as u64, fds[1] as u64);

    for (name, addr) in BAD {
        expect(
            &format!("write(pipe, {name})"),
            sys(libc::SYS_write, [pwr, addr, 16, 0]),
            "EFAULT",
        );
        expect(
            &format!("read(/dev/zero, {name})"),
            sys(libc::SYS_read, [zfd, addr, 16, 0]),
            "EFAULT",
        );
        expect(
            &format!("open({name})"),
            sys(libc::SYS_open, [addr, libc::O_RDONLY as u64, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("stat({name}, buf)"),
            {
                let mut st = [0u8; 256];
                sys(libc::SYS_stat, [addr, st.as_mut_ptr() as u64, 0, 0])
            },
            "EFAULT",
        );
        expect(
            &format!("stat(\"/\", {name})"),
            sys(libc::SYS_stat, [path.as_ptr() as u64, addr, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("fstat(0, {name})"),
            sys(libc::SYS_fstat, [0, addr, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("clock_gettime({name})"),
            sys(
                libc::SYS_clock_gettime,
                [libc::CLOCK_MONOTONIC as u64, addr, 0, 0],
            ),
            "EFAULT",
        );
        expect(
            &format!("uname({name})"),
            sys(libc::SYS_uname, [addr, 0, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("pipe({name})"),
            sys(libc::SYS_pipe, [addr, 0, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("getcwd({name})"),
            sys(libc::SYS_getcwd, [addr, 64, 0, 0]),
            "EFAULT",
        );
        if addr != 0 {
            // (A NULL action is a valid query.)
            expect(
                &format!("rt_sigaction(SIGUSR1, {name})"),
                sys(libc::SYS_rt_sigaction, [libc::SIGUSR1 as u64, addr, 0, 8]),
                "EFAULT",
            );
        }
        expect(
            &format!("writev(pipe, iov={name})"),
            sys(libc::SYS_writev, [pwr, addr, 1, 0]),
            "EFAULT",
        );
        let iov = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 16,
        };
        expect(
            &format!("writev(pipe, iov.base={name})"),
            sys(libc::SYS_writev, [pwr, &iov as *const _ as u64, 1, 0]),
            "EFAULT",
        );
        expect(
            &format!("nanosleep({name})"),
            sys(libc::SYS_nanosleep, [addr, 0, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("futex({name}, WAIT)"),
            sys(libc::SYS_futex, [addr, libc::FUTEX_WAIT as u64, 0, 0]),
            "EFAULT",
        );
        expect(
            &format!("execve({name})"),
            sys(libc::SYS_execve, [addr, 0, 0, 0]),
            "EFAULT",
        );
    }
    // A string that runs off the end of a mapping.
    // SAFETY: one fresh page; we fill it completely with non-NUL bytes, so a
    // path read from it runs into the unmapped page after it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        ) as *mut u8;
        libc::munmap(p.add(4096).cast(), 4096);
        std::ptr::write_bytes(p, b'a', 4096);
        expect(
            "open(path running into an unmapped page)",
            sys(libc::SYS_open, [p as u64 + 4000, 0, 0, 0]),
            "EFAULT",
        );
        // Writing into a read-only page from the kernel.
        libc::mprotect(p.cast(), 4096, libc::PROT_READ);
        expect(
            "read(/dev/zero) into a read-only page",
            sys(libc::SYS_read, [zfd, p as u64, 16, 0]),
            "EFAULT",
        );
        expect(
            "clock_gettime into a read-only page",
            sys(
                libc::SYS_clock_gettime,
                [libc::CLOCK_MONOTONIC as u64, p as u64, 0, 0],
            ),
            "EFAULT",
        );
        libc::munmap(p.cast(), 4096);
    }
    // The pipe still works after all that.
    let msg = b"still fine";
    let mut back = [0u8; 10];
    // SAFETY: valid buffers.
    unsafe {
        libc::write(pwr as i32, msg.as_ptr().cast(), msg.len());
        libc::read(prd as i32, back.as_mut_ptr().cast(), back.len());
    }
    expect(
        "pipe after the attacks",
        String::from_utf8_lossy(&back).replace('\0', "\\0"),
        "still fine",
    );

    // Children that touch what they must not: each dies of SIGSEGV.
    // SAFETY (all five): deliberately unsound accesses, each in a forked
    // child; the kernel must kill the child, which is what is tested.
    let cases: [(&str, fn()); 5] = [
        // SAFETY: deliberately unsound, in a forked child (see above).
        ("child reads kernel text", || unsafe {
            std::ptr::read_volatile(0xffff_ffff_8000_0000 as *const u64);
        }),
        // SAFETY: deliberately unsound, in a forked child (see above).
        ("child writes the kernel direct map", || unsafe {
            std::ptr::write_volatile(0xffff_8000_0000_1000 as *mut u64, 1);
        }),
        // SAFETY: deliberately unsound, in a forked child (see above).
        ("child writes NULL", || unsafe {
            std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1);
        }),
        // SAFETY: deliberately unsound, in a forked child (see above).
        ("child jumps into the kernel", || unsafe {
            let f: extern "C" fn() = std::mem::transmute(0xffff_ffff_8000_0000usize);
            f();
        }),
        // SAFETY: deliberately unsound, in a forked child (see above).
        ("child executes a non-executable page", || unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            *(p as *mut u8) = 0xc3; // ret
            let f: extern "C" fn() = std::mem::transmute(p);
            f();
        }),
    ];
    for (what, touch) in cases {
        match fork_run(move || {
            touch();
            0
        }) {
            Ok(pid) => expect(what, wait_for(pid), "killed by SIGSEGV"),
            Err(e) => expect(what, e, "ok"),
        }
    }
    say("badptr: survived");
    say(&format!("badptr: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
