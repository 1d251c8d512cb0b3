//! `fuzz`: random system calls with random and adversarial arguments, made
//! by forked children pinned on every CPU while PID 1 watches them.
//!
//! Usage: `fuzz [seed=S] [calls=N] [per_child=K] [procs=P] [timeout=SECS]
//! [mem_slack_kib=KIB] [only=N,N..] [skip=N,N..] [verbose=1]` runs until the children
//! have made N calls in all (K per child, P children at a time, default two
//! per CPU); `only=` restricts the calls to the listed numbers (`A-B` is a
//! range), `skip=` never makes the listed ones (both for bisecting a leak or
//! a panic to a few calls; the child's setup calls are always made); `fuzz child=X
//! calls=K [trace=1]` replays the one child whose seed PID 1 printed as X
//! (with `trace=1` it prints each call before making it).
//!
//! Each child has a seed derived from `seed`, its slot and its generation,
//! so a sequence of calls is reproducible; scheduling is not.  Before each
//! call the child writes the number and arguments into a page shared with
//! PID 1, so a child that does not finish within `timeout` is reported with
//! the call it is stuck in and its seed, then killed (a failure).  Children
//! may die of signals (that is not a failure).  Afterwards PID 1 removes the
//! children's files, checks that the system still works (a file, a pipe,
//! fork + wait) and that free memory (`sysinfo(2)` freeram, read the same
//! way on both systems) came back to within `mem_slack_kib` of where it
//! started; then it prints calls/s and `fuzz: pass`.
//!
//! Invariants (the sandbox, see `World`): a child never harms PID 1, its
//! siblings or the shared system on purpose: paths it changes are under its
//! own directory, memory calls touch only its sandbox mappings, signals go
//! to itself or its own children, every file it makes is non-blocking and
//! every wait has a short timeout, so that a child that does not finish is
//! a kernel bug and not the fuzzer waiting for itself.  The calls it never
//! makes are listed in `EXCLUDED` with the reason.  All calls are raw
//! `syscall` instructions (no libc, no errno, no TLS), and the loop does not
//! allocate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use userland::{describe_status, say, signal_name};

// ---- random numbers ---------------------------------------------------------

/// splitmix64: small, fast, and every seed gives a full-period sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True once in `n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of child `generation` in `slot` of the run with `seed`.
fn child_seed(seed: u64, slot: u64, generation: u64) -> u64 {
    let mut r = Rng(seed ^ (slot << 48) ^ generation.wrapping_mul(0x1_0000_0001));
    r.next()
}

// ---- raw system calls -------------------------------------------------------

/// One `syscall` instruction.
///
/// # Safety
/// The arguments may name any memory; the caller must be ready for any
/// effect of the call on its own process (the fuzz child is).
unsafe fn raw(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract; the asm only clobbers what it declares.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// fork, vfork, clone, clone3: a new child (return value 0) leaves at once
/// with `exit(0)` in the same instructions, touching neither memory nor the
/// stack, so it is safe whatever the flags (shared memory, a random stack,
/// a random TLS, vfork's borrowed stack).
///
/// # Safety
/// As for `raw`.
unsafe fn raw_forklike(nr: u64, a: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: as for `raw`; the child path ends in `exit`.
    unsafe {
        core::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov eax, 60",
            "xor edi, edi",
            "syscall",
            "ud2",
            "2:",
            inlateout("rax") nr as i64 => ret,
            inlateout("rdi") a[0] => _, in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `rt_sigreturn` with the stack pointer at `frame`: the kernel restores
/// whatever the fuzzer wrote there.  Never returns here (a successful
/// restore goes to the frame's rip; a failed one reaches `ud2`).
///
/// # Safety
/// Ends the calling process's sane control flow.
unsafe fn sigreturn_from(frame: u64) -> ! {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!(
            "mov rsp, {f}",
            "mov eax, 15",
            "syscall",
            "ud2",
            f = in(reg) frame,
            options(noreturn),
        );
    }
}

// Where a crafted sigreturn frame may send the child: exit 77 at once.
// A signal restorer for handlers the fuzzer installs.
core::arch::global_asm!(
    ".globl fuzz_landing",
    "fuzz_landing:",
    "mov eax, 60",
    "mov edi, 77",
    "syscall",
    "ud2",
    ".globl fuzz_restorer",
    "fuzz_restorer:",
    "mov eax, 15",
    "syscall",
    "ud2",
);

unsafe extern "C" {
    fn fuzz_landing();
    fn fuzz_restorer();
}

extern "C" fn on_signal(_sig: i32) {}

// ---- what PID 1 and a child share -----------------------------------------

/// One child's record in the page shared with PID 1 (MAP_SHARED).
#[repr(C)]
struct Slot {
    /// Calls finished.
    calls: AtomicU64,
    /// The call being made (number and arguments), for a hang report.
    nr: AtomicU64,
    args: [AtomicU64; 6],
    /// 0: setting up, 1: in a call, 2: between calls, 3: done.
    phase: AtomicU64,
    _pad: [u64; 7],
}

const MAX_SLOTS: usize = 64;

// ---- the excluded calls -----------------------------------------------------

/// System calls the fuzzer never makes, and why.  Everything else from 0 to
/// 450 is made (with sandboxed arguments where noted in `World::args`),
/// plus numbers no kernel implements.
const EXCLUDED: &[(u64, &str)] = &[
    (34, "pause: waits for a signal nobody sends"),
    (130, "rt_sigsuspend: waits for a signal nobody sends"),
    (29, "SysV IPC objects outlive the process"),
    (30, "SysV IPC"),
    (31, "SysV IPC"),
    (64, "SysV IPC"),
    (65, "SysV IPC (semop blocks)"),
    (66, "SysV IPC"),
    (67, "SysV IPC"),
    (68, "SysV IPC"),
    (69, "SysV IPC"),
    (70, "SysV IPC (msgrcv blocks)"),
    (71, "SysV IPC"),
    (220, "SysV IPC (semtimedop)"),
    (240, "POSIX message queues outlive the process"),
    (241, "POSIX mqueue"),
    (242, "POSIX mqueue"),
    (243, "POSIX mqueue (receive blocks)"),
    (244, "POSIX mqueue"),
    (245, "POSIX mqueue"),
    (101, "ptrace: could stop PID 1 or a sibling"),
    (103, "syslog: could silence the console the harness reads"),
    (
        151,
        "mlockall: would populate the terabyte mappings left untouched",
    ),
    (153, "vhangup: hangs up PID 1's console"),
    (155, "pivot_root: changes the shared mount namespace"),
    (165, "mount: changes the shared mount namespace"),
    (166, "umount2: changes the shared mount namespace"),
    (428, "mount API"),
    (429, "mount API"),
    (430, "mount API"),
    (431, "mount API"),
    (432, "mount API"),
    (433, "mount API"),
    (442, "mount_setattr"),
    (159, "adjtimex: changes the clock PID 1 times children with"),
    (164, "settimeofday: changes the clocks"),
    (227, "clock_settime: changes the clocks"),
    (305, "clock_adjtime: changes the clocks"),
    (163, "acct: system-wide"),
    (167, "swapon: system-wide"),
    (168, "swapoff: system-wide"),
    (169, "reboot: ends the test"),
    (175, "init_module: system-wide"),
    (176, "delete_module: system-wide"),
    (313, "finit_module: system-wide"),
    (246, "kexec_load: ends the test"),
    (320, "kexec_file_load: ends the test"),
    (179, "quotactl: system-wide"),
    (443, "quotactl_fd: system-wide"),
    (208, "io_getevents: may wait without a timeout"),
    (333, "io_pgetevents: may wait without a timeout"),
    (248, "keys outlive the process"),
    (249, "keys outlive the process"),
    (250, "keys outlive the process"),
    (
        300,
        "fanotify: permission events block every other process's open",
    ),
    (301, "fanotify"),
    (298, "perf_event_open: root-only tracing, out of scope"),
    (321, "bpf: root-only in-kernel programs, out of scope"),
    (
        304,
        "open_by_handle_at: opens any file, outside the sandbox",
    ),
    (323, "userfaultfd: a fault waits for a handler by design"),
    (
        425,
        "io_uring: waits without a timeout; its threads outlive the call",
    ),
    (426, "io_uring"),
    (427, "io_uring"),
];

/// The `only=` and `skip=` lists, set by PID 1 before the first fork (read,
/// never changed, by the children).
static ONLY: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
static SKIP: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();

/// Whether the `only=` / `skip=` lists let the fuzzer make `nr`.
fn allowed(nr: u64) -> bool {
    ONLY.get().is_none_or(|l| l.contains(&nr)) && SKIP.get().is_none_or(|l| !l.contains(&nr))
}

/// Parses `N,N,A-B,...` (decimal) for `only=` / `skip=`.
fn parse_list(v: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<u64>().ok()?..=b.parse::<u64>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Numbers the kernels here implement (ours, from its dispatch tables): made
/// more often than the rest.
const OURS: &[u64] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
    28, 32, 33, 35, 39, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    61, 62, 63, 72, 74, 75, 76, 77, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 95, 96, 97,
    99, 102, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114, 117, 118, 119, 120, 121, 124,
    127, 131, 133, 158, 160, 186, 200, 202, 203, 204, 213, 217, 218, 228, 229, 230, 232, 233, 234,
    247, 257, 258, 259, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271, 273, 280, 281, 288, 291,
    292, 293, 302, 309, 316, 318, 332, 439,
];

/// Calls that return a new descriptor (made non-blocking and kept).
const FD_MAKERS: &[u64] = &[
    2, 32, 33, 41, 43, 85, 213, 253, 257, 282, 283, 284, 288, 289, 290, 291, 292, 294, 317, 319,
    434, 437, 438, 444, 447,
];

// Constants (x86_64 Linux).
const O_NONBLOCK: u64 = 0o4000;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const PAGE: u64 = 4096;
const DATA_LEN: u64 = 192 * 1024;
const STRUCT_LEN: u64 = 256 * 1024;
const SANDBOX_LEN: u64 = 16 << 20;
/// Largest mapping the fuzzer keeps and reads into (with up to 8 of them
/// per child and 2 children per CPU, the fuzzer's own memory stays far
/// below the VM's; running the kernel out of memory is a different test).
const MAP_LIMIT: u64 = 4 << 20;
const MAX_MAPS: usize = 8;

// ---- the child's world -----------------------------------------------------

/// Everything a fuzz child draws arguments from.
struct World {
    rng: Rng,
    /// General buffer (input and output), then the struct area, then a
    /// PROT_NONE guard page.
    data: u64,
    structs: u64,
    guard: u64,
    /// The struct area is handed out afresh for each call: from its start
    /// (`bump`), and at most once from its last page, so that a struct ends
    /// exactly at the guard page.  Structs of one call never overlap (a
    /// timeout overwritten by a pointer would make a long wait).
    bump: u64,
    end_used: bool,
    /// A read-only page.
    ro: u64,
    /// A PROT_NONE reservation inside which MAP_FIXED, munmap, mprotect &c.
    /// may do anything.
    sandbox: u64,
    /// Mappings the fuzzer made (address, length), all outside any region
    /// above.
    maps: Vec<(u64, u64)>,
    /// Paths under the child's own directory (may be changed), and paths
    /// anywhere (only looked at).
    own: Vec<u64>,
    any: Vec<u64>,
    /// Strings that are not usable paths: too long, unterminated.
    bad_strs: Vec<u64>,
    /// The child's own descriptors.
    fds: Vec<i32>,
    /// Children of the child.
    kids: Vec<i32>,
    pid: u64,
    brk: u64,
    fs_base: u64,
}

/// Addresses no pointer may use.  From index 3 to 10 they are also never
/// mapped by anyone (the memory calls may aim at them); the last two are
/// the top of the user address space, where the stack may be.
const BAD_ADDRS: &[u64] = &[
    0,
    1,
    0xfff,
    0xffff_8000_0000_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_ffff_f000,
    0xffff_ffff_ffff_ffff,
    0x0000_8000_0000_0000,
    0x8000_0000_0000_0000,
    0x1234_5678_9abc_def0,
    0x0000_0100_0000_0000,
    0x0000_7fff_ffff_f000,
    0x0000_7fff_ffff_fffc,
];

impl World {
    /// Writes `v` at `addr` in the data or struct area.
    fn put<T: Copy>(&self, addr: u64, v: T) {
        debug_assert!(addr >= self.data && addr + size_of::<T>() as u64 <= self.guard);
        // SAFETY: `addr` is inside the child's own read-write data mapping
        // (checked by the callers' arithmetic); unaligned writes are fine.
        unsafe { (addr as *mut T).write_unaligned(v) }
    }

    fn get<T: Copy>(&self, addr: u64) -> T {
        // SAFETY: as for `put`.
        unsafe { (addr as *const T).read_unaligned() }
    }

    fn in_data(&self, addr: u64, len: u64) -> bool {
        addr >= self.data && addr.saturating_add(len) <= self.guard
    }

    /// `len` bytes in the struct area; sometimes ending exactly at the
    /// guard page, so that reading past what was written faults.
    fn alloc(&mut self, len: u64) -> u64 {
        if len <= PAGE && !self.end_used && self.rng.one_in(8) {
            self.end_used = true;
            return self.guard - len;
        }
        let len = len.min(STRUCT_LEN - PAGE);
        if self.bump + len > STRUCT_LEN - PAGE {
            self.bump = 0; // not reached: a call uses far less
        }
        let at = self.structs + self.bump;
        self.bump = (self.bump + len + 7) & !7;
        at
    }

    /// Fills `len` bytes at `addr` with random bytes.
    fn fill(&mut self, addr: u64, len: u64) {
        let mut at = addr;
        while at + 8 <= addr + len {
            let v = self.rng.next();
            self.put(at, v);
            at += 8;
        }
    }

    fn bad(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => self.guard + self.rng.below(PAGE),
            1 => self.sandbox + self.rng.below(SANDBOX_LEN),
            2 => self.rng.next(),
            _ => self.rng.pick(BAD_ADDRS),
        }
    }

    /// An address nothing is ever mapped at (the guard page, kernel and
    /// non-canonical addresses): unlike `bad`, never memory the fuzzer may
    /// have mapped since (a timeout read from there could be long).
    fn unreadable(&mut self) -> u64 {
        if self.rng.one_in(2) {
            self.guard + self.rng.below(PAGE - 16)
        } else {
            self.rng.pick(&BAD_ADDRS[3..10])
        }
    }

    /// A pointer for the kernel to read or write: mostly good.
    fn ptr(&mut self) -> u64 {
        match self.rng.below(16) {
            0..=6 => self.data + self.rng.below(DATA_LEN),
            7 => self.data + (self.rng.below(DATA_LEN / 8) * 8),
            8 => self.guard - 1 - self.rng.below(64),
            9 => self.ro + self.rng.below(PAGE),
            10 => 0,
            11 if !self.maps.is_empty() => {
                let (a, l) = self.rng.pick(&self.maps);
                a + self.rng.below(l)
            }
            _ => self.bad(),
        }
    }

    /// A length: small, page-ish, or huge.
    fn len(&mut self) -> u64 {
        match self.rng.below(14) {
            0 => 0,
            1 => 1,
            2..=5 => self.rng.below(4096),
            6 => self.rng.below(DATA_LEN + STRUCT_LEN + PAGE),
            7 => PAGE * self.rng.below(64),
            8 => self.rng.pick(&[
                0x7fff_ffff,
                0x8000_0000,
                0xffff_ffff,
                0x1_0000_0000,
                0x1_0000_0001,
                1 << 40,
                isize::MAX as u64,
                u64::MAX,
                1 << 63,
            ]),
            9 => self.rng.next(),
            10 => self.rng.next() >> self.rng.below(64),
            _ => self.rng.below(256),
        }
    }

    /// An integer argument: flags, counts, modes, commands.
    fn int(&mut self) -> u64 {
        match self.rng.below(12) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => self.rng.below(64),
            4 => 1 << self.rng.below(64),
            5 => (1 << self.rng.below(32)) | (1 << self.rng.below(32)),
            6 => self.rng.next() & 0xffff_ffff,
            7 => self.rng.next(),
            8 => 0x8000_0000,
            9 => 0x7fff_ffff,
            _ => self.rng.below(4096),
        }
    }

    /// A descriptor: mostly one of ours.
    fn fd(&mut self) -> u64 {
        match self.rng.below(12) {
            0..=7 if !self.fds.is_empty() => self.rng.pick(&self.fds) as u64,
            8 => self.rng.below(1100),
            9 => (-100i64) as u64, // AT_FDCWD
            10 => self
                .rng
                .pick(&[u64::MAX, 0x7fff_ffff, 0x8000_0000, 1 << 40, 1024, 1023]),
            _ => self.rng.below(16),
        }
    }

    /// A signal number; the stop signals become SIGCONT (a stopped child
    /// would look hung; PID 1 continues stopped children anyway).
    fn sig(&mut self) -> u64 {
        let s = match self.rng.below(8) {
            0 => self.int(),
            1 => 0,
            _ => self.rng.below(66),
        };
        if matches!(s, 19..=22) {
            18
        } else {
            s
        }
    }

    /// A process id for calls that act on a process: this child, its own
    /// children, or none at all.  Never -1, 1 or a sibling (by design).
    fn pid(&mut self) -> u64 {
        match self.rng.below(8) {
            0 | 1 => 0,
            2 | 3 => self.pid,
            4 if !self.kids.is_empty() => self.rng.pick(&self.kids) as u64,
            5 => (-(self.pid as i64)) as u64,
            6 => self
                .rng
                .pick(&[0x3fff_fff0u64, 0x7fff_ffff, 0x8000_0000, 4_000_000]),
            _ => 0x3fff_ff00 + self.rng.below(128),
        }
    }

    fn path_own(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => self.ptr_or_bad_str(),
            _ => self.rng.pick(&self.own),
        }
    }

    fn path_any(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => self.ptr_or_bad_str(),
            1..=4 => self.rng.pick(&self.own),
            _ => self.rng.pick(&self.any),
        }
    }

    fn ptr_or_bad_str(&mut self) -> u64 {
        if self.rng.one_in(2) {
            self.rng.pick(&self.bad_strs)
        } else {
            self.ptr()
        }
    }

    /// An address for the memory calls, with the most bytes from it that
    /// stay inside the sandbox or one of the fuzzer's own mappings.
    fn mm_addr(&mut self) -> (u64, u64) {
        match self.rng.below(10) {
            0..=4 => {
                let off = self.rng.below(SANDBOX_LEN / PAGE) * PAGE;
                (self.sandbox + off, SANDBOX_LEN - off)
            }
            5..=7 if !self.maps.is_empty() => self.rng.pick(&self.maps),
            8 => {
                let off = self.rng.below(SANDBOX_LEN);
                (self.sandbox + off, SANDBOX_LEN - off)
            }
            // Kernel, non-canonical, and a never-mapped user address.
            _ => (self.rng.pick(&BAD_ADDRS[3..11]), u64::MAX),
        }
    }

    /// A length for the memory calls: within `room`, or so large that
    /// `addr + len` leaves the user address space (must fail).
    fn mm_len(&mut self, room: u64) -> u64 {
        match self.rng.below(6) {
            0 => 0,
            1 => self
                .rng
                .pick(&[1 << 47, 1 << 63, u64::MAX, u64::MAX - 0xfff, 1 << 56]),
            2 => self.rng.below(room.min(MAP_LIMIT) + 1),
            _ => PAGE * (1 + self.rng.below(room.min(MAP_LIMIT) / PAGE)),
        }
    }

    /// A timespec pointer that never means a long wait: a short valid time,
    /// an invalid one, or a bad pointer.  Never NULL (NULL is "forever").
    fn ts(&mut self) -> u64 {
        if self.rng.one_in(6) {
            return self.unreadable();
        }
        let at = self.alloc(16);
        let (s, ns): (i64, i64) = match self.rng.below(6) {
            0 => (0, 0),
            1 => (0, self.rng.below(1_000_000) as i64),
            2 => (-1, 0),
            3 => (0, 1_000_000_000),
            4 => (0, -1),
            _ => (0, self.rng.below(100_000) as i64),
        };
        self.put(at, s);
        self.put(at + 8, ns);
        at
    }

    /// An itimerspec / itimerval of short times (or garbage).
    fn itimer(&mut self) -> u64 {
        if self.rng.one_in(6) {
            return self.bad();
        }
        let at = self.alloc(32);
        for i in 0..4 {
            let v = match self.rng.below(4) {
                0 => 0,
                1 => self.rng.below(2_000_000),
                2 => self.int(),
                _ => self.rng.below(1000),
            };
            // The seconds fields stay small: a long timer is harmless, but
            // a short one exercises expiry.
            let v = if i % 2 == 0 { v % 3 } else { v };
            self.put(at + i * 8, v);
        }
        at
    }

    fn sigset(&mut self) -> u64 {
        if self.rng.one_in(6) {
            return self.ptr();
        }
        let at = self.alloc(16);
        let v = self.int();
        self.put(at, v);
        at
    }

    /// An iovec array: (pointer, count).  Lengths are small, zero, or large
    /// enough that they add up to gigabytes or terabytes.
    fn iov(&mut self) -> (u64, u64) {
        let n = match self.rng.below(10) {
            0 => 0,
            1 => self.rng.below(1025),
            _ => self.rng.below(9),
        };
        let at = self.alloc(n * 16);
        let n = n.min((self.guard - at) / 16);
        let huge = self.rng.one_in(3);
        for i in 0..n {
            let base = self.ptr();
            let len = if huge {
                match self.rng.below(4) {
                    0 => 1 << (30 + self.rng.below(12)),
                    1 => 0x8000_0000 + self.rng.below(2),
                    2 => (isize::MAX as u64) / (n.max(1) + self.rng.below(4)),
                    _ => self.rng.below(1 << 42),
                }
            } else {
                self.len()
                    .min(if self.rng.one_in(4) { u64::MAX } else { 65536 })
            };
            self.put(at + i * 16, base);
            self.put(at + i * 16 + 8, len);
        }
        let count = match self.rng.below(10) {
            0 => n + 1 + self.rng.below(4),
            1 => self.rng.pick(&[1024, 1025, u64::MAX, 1 << 32, 0x8000_0000]),
            _ => n,
        };
        let ptr = if self.rng.one_in(12) { self.bad() } else { at };
        (ptr, count)
    }

    /// A socket address: (pointer, length).
    fn sockaddr(&mut self) -> (u64, u64) {
        let at = self.alloc(128);
        self.fill(at, 128);
        let family: u16 = self.rng.pick(&[1, 1, 2, 2, 10, 0, 16, 17, 0xffff]);
        self.put(at, family);
        match (family, self.rng.below(3)) {
            (1, 0) => {
                // The child's own socket path (the first own path is the
                // directory; `sock` is under it).
                let path = self.own[self.own.len() - 1];
                for i in 0..108 {
                    let b: u8 = self.get(path + i);
                    self.put(at + 2 + i, b);
                    if b == 0 {
                        break;
                    }
                }
            }
            (1, 1) => {
                self.put(at + 2, 0u8); // abstract
                self.put(at + 3, b'f');
            }
            (2, _) => {
                let port: u16 = self.rng.pick(&[0, 7, 80, 1234, 0xffff]);
                self.put(at + 2, port.to_be());
                let ip: [u8; 4] = self.rng.pick(&[
                    [127, 0, 0, 1],
                    [0, 0, 0, 0],
                    [10, 0, 2, 2],
                    [255, 255, 255, 255],
                ]);
                self.put(at + 4, ip);
            }
            _ => {}
        }
        let len = match self.rng.below(8) {
            0 => 0,
            1 => 2,
            2 => 16,
            3 => 110,
            4 => 128,
            5 => 129,
            6 => self.int(),
            _ => self.rng.below(130),
        };
        let ptr = if self.rng.one_in(8) { self.bad() } else { at };
        (ptr, len)
    }

    /// A `struct msghdr`.
    fn msghdr(&mut self) -> u64 {
        let (name, namelen) = self.sockaddr();
        let (iov, iovlen) = self.iov();
        let at = self.alloc(56);
        let control = self.ptr();
        let controllen = self.len();
        let v = if self.rng.one_in(3) { 0 } else { name };
        self.put(at, v);
        self.put(at + 8, namelen as u32);
        self.put(at + 16, iov);
        self.put(at + 24, iovlen);
        let v = if self.rng.one_in(2) { 0 } else { control };
        self.put(at + 32, v);
        self.put(at + 40, controllen);
        let v = self.rng.next() as u32;
        self.put(at + 48, v);
        if self.rng.one_in(10) {
            self.bad()
        } else {
            at
        }
    }

    /// A NULL-terminated (or not) array of string pointers (argv, envp).
    fn strv(&mut self) -> u64 {
        let n = match self.rng.below(8) {
            0 => 3000,
            1 => self.rng.below(300),
            _ => self.rng.below(6),
        };
        let at = self.alloc(8 * (n + 1));
        let n = n.min((self.guard - at) / 8 - 1);
        let long = self.bad_strs[0];
        for i in 0..n {
            let p = match self.rng.below(8) {
                0 => self.bad(),
                1 => long,
                _ => self.path_any(),
            };
            self.put(at + i * 8, p);
        }
        if !self.rng.one_in(8) {
            self.put(at + n * 8, 0u64);
        }
        match self.rng.below(10) {
            0 => 0,
            1 => self.bad(),
            _ => at,
        }
    }

    fn any(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.ptr(),
            1 => self.len(),
            2 => self.fd(),
            _ => self.int(),
        }
    }

    /// The next system call: its number and arguments.
    fn next_call(&mut self) -> (u64, [u64; 6]) {
        self.bump = 0;
        self.end_used = false;
        loop {
            let nr = match self.rng.below(100) {
                0..=59 => self.rng.pick(OURS),
                60..=64 if ONLY.get().is_none() => {
                    return (self.unknown_nr(), self.generic());
                }
                60..=64 => continue,
                _ => self.rng.below(451),
            };
            if EXCLUDED.iter().any(|&(n, _)| n == nr) || !allowed(nr) {
                continue;
            }
            if matches!(nr, 60 | 231 | 15) && !self.rng.one_in(20) {
                continue; // ends the child: rarely
            }
            return (nr, self.args(nr));
        }
    }

    /// A number no kernel here implements (checked on the low 32 bits,
    /// which are all Linux looks at).
    fn unknown_nr(&mut self) -> u64 {
        let low = match self.rng.below(4) {
            0 => 335 + self.rng.below(89),
            1 => 471 + self.rng.below(4096 - 471),
            2 => 0x8000_0000 + self.rng.below(0x8000_0000),
            _ => 0xffff_ffff,
        };
        let high = if self.rng.one_in(3) {
            self.rng.next() << 32
        } else {
            0
        };
        high | low
    }

    fn generic(&mut self) -> [u64; 6] {
        [
            self.any(),
            self.any(),
            self.any(),
            self.any(),
            self.any(),
            self.any(),
        ]
    }

    /// Arguments for `nr`, sandboxed where a free choice would harm PID 1,
    /// a sibling, the shared system, or make the child wait forever.
    fn args(&mut self, nr: u64) -> [u64; 6] {
        let r = &mut *self;
        let mut a = r.generic();
        match nr {
            // read, write, pread64, pwrite64
            0 | 1 | 17 | 18 => {
                a = [r.fd(), r.ptr(), r.len(), r.len(), 0, 0];
            }
            // open, creat
            2 => a = [r.path_any(), r.int() | O_NONBLOCK, r.int(), 0, 0, 0],
            85 => a = [r.path_own(), r.int(), 0, 0, 0, 0],
            // openat
            257 => a = [r.fd(), r.path_any(), r.int() | O_NONBLOCK, r.int(), 0, 0],
            // openat2: struct open_how { flags, mode, resolve }
            437 => {
                let how = r.alloc(24);
                r.fill(how, 24);
                let flags = r.int() | O_NONBLOCK;
                r.put(how, flags);
                let size = r.pick_size(&[24, 0, 8, 32, 4096]);
                a = [r.fd(), r.path_any(), how, size, 0, 0];
            }
            3 | 5 | 74 | 75 | 81 | 306 => a[0] = r.fd(),
            4 | 6 | 137 => a = [r.path_any(), r.ptr(), 0, 0, 0, 0],
            262 | 332 => a = [r.fd(), r.path_any(), r.int(), r.int(), r.ptr(), 0],
            // poll, ppoll
            7 | 271 => {
                let n = r.rng.below(12);
                let at = r.alloc(n * 8);
                let n = n.min((r.guard - at) / 8);
                for i in 0..n {
                    let fd = r.fd() as i32;
                    r.put(at + i * 8, fd);
                    let v = r.rng.next() as u32;
                    r.put(at + i * 8 + 4, v);
                }
                let count = if r.rng.one_in(6) { r.len() } else { n };
                let ptr = if r.rng.one_in(10) { r.bad() } else { at };
                a = if nr == 7 {
                    [ptr, count, r.rng.below(2), 0, 0, 0]
                } else {
                    [ptr, count, r.ts(), r.sigset(), r.pick_size(&[8, 0, 16]), 0]
                };
            }
            8 => a = [r.fd(), r.len(), r.int(), 0, 0, 0],
            // mmap
            9 => {
                let flags = r.int() & !0x40_0000_0000 | r.pick_size(&[0x22, 0x21, 0x02, 0x01, 0]);
                let fixed = flags & (0x10 | 0x10_0000) != 0;
                let (addr, room) = if fixed || r.rng.one_in(2) {
                    r.mm_addr()
                } else {
                    (r.ptr(), u64::MAX)
                };
                // A terabyte (lazily, never touched) only where it cannot
                // replace the child's own memory.
                let len = if !fixed && r.rng.one_in(8) {
                    1 << 40
                } else {
                    r.mm_len(room)
                };
                a = [
                    addr,
                    len,
                    r.int() & 0xf,
                    flags,
                    r.fd(),
                    r.pick_size(&[0, 4096, 1 << 40]),
                ];
            }
            // mprotect, munmap, madvise, msync, mlock, munlock, mlock2,
            // pkey_mprotect, remap_file_pages, mincore, mbind, map_shadow_stack
            10 | 11 | 26 | 28 | 149 | 150 | 325 | 329 | 216 | 27 | 237 => {
                let (addr, room) = r.mm_addr();
                let len = r.mm_len(room);
                let mut third = r.int();
                if nr == 28 && matches!(third, 100 | 101) {
                    third = 4; // MADV_HWPOISON / SOFT_OFFLINE lose pages for good
                }
                if nr == 27 {
                    third = r.ptr();
                }
                a = [addr, len, third, r.int(), r.int(), r.int()];
            }
            // brk: only grows (shrinking could take the allocator's heap)
            12 => {
                a[0] = match r.rng.below(4) {
                    0 => 0,
                    1 => r.bad(),
                    _ => r.brk + r.rng.below(64 << 20),
                };
            }
            // mremap
            25 => {
                let (addr, room) = r.mm_addr();
                let old = r.mm_len(room);
                let (dst, dst_room) = r.mm_addr();
                let new = r.mm_len(dst_room);
                a = [addr, old, new, r.int() & 7, dst, 0];
            }
            // rt_sigaction
            13 => {
                let act = r.alloc(32);
                let handler = match r.rng.below(6) {
                    0 => 0,
                    1 | 2 => 1,
                    3 => on_signal as *const () as u64,
                    4 => fuzz_landing as *const () as u64,
                    _ => r.bad(),
                };
                let flags = r.int() | 0x0400_0000; // SA_RESTORER
                let restorer = if r.rng.one_in(8) {
                    r.bad()
                } else {
                    fuzz_restorer as *const () as u64
                };
                r.put(act, handler);
                r.put(act + 8, flags);
                r.put(act + 16, restorer);
                let v = r.rng.next();
                r.put(act + 24, v);
                let act = if r.rng.one_in(8) { r.ptr() } else { act };
                a = [r.sig(), act, r.ptr(), r.pick_size(&[8, 8, 8, 0, 16]), 0, 0];
            }
            14 => {
                a = [
                    r.int() % 4,
                    r.sigset(),
                    r.ptr(),
                    r.pick_size(&[8, 8, 0, 16]),
                    0,
                    0,
                ]
            }
            // ioctl: FIONBIO only ever turns non-blocking on
            16 => {
                let cmd = r.pick_size(&[
                    0x5421, 0x541b, 0x5401, 0x5402, 0x5413, 0x540f, 0x5410, 0x5451, 0x5450, 0x8912,
                    0x541c,
                ]);
                let cmd = if r.rng.one_in(3) { r.int() } else { cmd };
                let arg = if cmd as u32 == 0x5421 {
                    let at = r.alloc(4);
                    r.put(at, 1u32);
                    at
                } else {
                    r.ptr()
                };
                a = [r.fd(), cmd, arg, 0, 0, 0];
            }
            // readv, writev, preadv, pwritev, preadv2, pwritev2, vmsplice
            19 | 20 | 295 | 296 | 327 | 328 | 278 => {
                let (iov, n) = r.iov();
                let f = if nr == 278 { r.int() | 2 } else { r.int() };
                a = [r.fd(), iov, n, r.len(), r.len(), f];
            }
            21 => a = [r.path_any(), r.int(), 0, 0, 0, 0],
            269 | 439 => a = [r.fd(), r.path_any(), r.int(), r.int(), 0, 0],
            // pipe: the descriptors land where `after` can read them back
            // (to make them non-blocking), or nowhere (a bad pointer).
            22 => a[0] = r.fd_out(),
            293 => a = [r.fd_out(), r.int() | O_NONBLOCK, 0, 0, 0, 0],
            // select, pselect6: never NULL timeouts
            23 | 270 => {
                let sets = [r.ptr(), r.ptr(), r.ptr()];
                let n = r.pick_size(&[0, 1, 16, 64, 1024, 1025, u64::MAX]);
                let tmo = r.ts();
                if nr == 23 && r.in_data(tmo, 16) {
                    // A timeval: Linux takes any microseconds and carries
                    // them into seconds (1e9 of them is 1000 s), so keep
                    // them below a second; negative ones stay (EINVAL).
                    let usec: i64 = r.get(tmo + 8);
                    r.put(tmo + 8, usec % 1_000_000);
                }
                let mask = r.alloc(16);
                let v = r.sigset();
                r.put(mask, v);
                r.put(mask + 8, 8u64);
                a = [n, sets[0], sets[1], sets[2], tmo, mask];
            }
            32 => a[0] = r.fd(),
            33 => a = [r.fd(), r.fd(), 0, 0, 0, 0],
            292 => a = [r.fd(), r.fd(), r.int(), 0, 0, 0],
            // nanosleep, clock_nanosleep: short
            35 => a = [r.ts(), r.ptr(), 0, 0, 0, 0],
            230 => a = [r.int() % 12, r.int() & 1, r.ts(), r.ptr(), 0, 0],
            36 | 224 | 225 | 226 => a = [r.int() % 4, r.ptr(), 0, 0, 0, 0],
            37 => a[0] = r.int() % 3,
            38 => a = [r.int() % 4, r.itimer(), r.ptr(), 0, 0, 0],
            // sendfile, copy_file_range, splice, tee: bounded lengths (a
            // sparse terabyte file would otherwise fill memory).
            40 => {
                let n = r.bounded_len();
                a = [r.fd(), r.fd(), r.ptr(), n, 0, 0];
            }
            326 | 275 => {
                let n = r.bounded_len();
                a = [r.fd(), r.ptr(), r.fd(), r.ptr(), n, r.int() | 2];
            }
            276 => {
                let n = r.bounded_len();
                a = [r.fd(), r.fd(), n, r.int() | 2, 0, 0];
            }
            285 => {
                let n = r.bounded_len();
                a = [r.fd(), r.int() & 0x7f, r.len(), n, 0, 0];
            }
            // sockets
            41 => a = [r.domain(), r.int() | O_NONBLOCK, r.int() % 300, 0, 0, 0],
            53 => {
                a = [
                    r.domain(),
                    r.int() | O_NONBLOCK,
                    r.int() % 300,
                    r.fd_out(),
                    0,
                    0,
                ]
            }
            42 | 49 => {
                let (sa, len) = r.sockaddr();
                a = [r.fd(), sa, len, 0, 0, 0];
            }
            43 | 51 | 52 => a = [r.fd(), r.ptr(), r.addrlen_ptr(), 0, 0, 0],
            288 => a = [r.fd(), r.ptr(), r.addrlen_ptr(), r.int() | O_NONBLOCK, 0, 0],
            44 => {
                let (sa, len) = r.sockaddr();
                let sa = if r.rng.one_in(3) { 0 } else { sa };
                a = [r.fd(), r.ptr(), r.len(), r.int(), sa, len];
            }
            45 => a = [r.fd(), r.ptr(), r.len(), r.int(), r.ptr(), r.addrlen_ptr()],
            46 | 47 => a = [r.fd(), r.msghdr(), r.int(), 0, 0, 0],
            // sendmmsg, recvmmsg (never a NULL timeout on receive)
            307 | 299 => {
                let n = r.rng.below(5);
                let at = r.alloc(64 * n.max(1));
                for i in 0..n.min((r.guard - at) / 64) {
                    let m = r.msghdr();
                    for w in 0..7 {
                        let v: u64 = if r.in_data(m, 56) {
                            r.get(m + w * 8)
                        } else {
                            0
                        };
                        r.put(at + i * 64 + w * 8, v);
                    }
                }
                let vlen = if r.rng.one_in(5) { r.int() } else { n };
                a = [r.fd(), at, vlen, r.int(), r.ts(), 0];
            }
            48 | 50 => a = [r.fd(), r.int(), 0, 0, 0, 0],
            54 => a = [r.fd(), r.int() % 300, r.int() % 80, r.ptr(), r.len(), 0],
            55 => {
                a = [
                    r.fd(),
                    r.int() % 300,
                    r.int() % 80,
                    r.ptr(),
                    r.addrlen_ptr(),
                    0,
                ]
            }
            // clone: any flags; the exit signal is never a stop signal
            56 => {
                let flags = (r.int() & !0xff) | r.sig();
                a = [flags, r.ptr(), r.ptr(), r.ptr(), r.rng.next(), 0];
            }
            435 => {
                let at = r.alloc(88);
                r.fill(at, 88);
                let v = r.int() & !0xff;
                r.put(at, v);
                for w in [1u64, 2, 3, 5, 8] {
                    let v = r.ptr();
                    r.put(at + w * 8, v);
                }
                let v = r.sig();
                r.put(at + 32, v);
                let v = r.len();
                r.put(at + 48, v);
                let v = r.pick_size(&[0, 1, 32, 1 << 40]);
                r.put(at + 72, v);
                let v = r.fd();
                r.put(at + 80, v);
                a = [at, r.pick_size(&[88, 64, 80, 0, 4096, 1 << 33]), 0, 0, 0, 0];
            }
            // execve, execveat: paths are never executables (the child
            // makes files with random bytes, which must fail to exec)
            59 => a = [r.path_any(), r.strv(), r.strv(), 0, 0, 0],
            322 => a = [r.fd(), r.path_any(), r.strv(), r.strv(), r.int(), 0],
            60 | 231 => a[0] = r.int(),
            // wait4, waitid: never block
            61 => a = [r.wait_pid(), r.ptr(), r.int() | 1, r.ptr(), 0, 0],
            247 => a = [r.int() % 4, r.wait_pid(), r.ptr(), r.int() | 1, r.ptr(), 0],
            // kill and friends: only this child and its children
            62 => a = [r.pid(), r.sig(), 0, 0, 0, 0],
            200 => a = [r.pid(), r.sig(), 0, 0, 0, 0],
            234 => a = [r.pid(), r.pid(), r.sig(), 0, 0, 0],
            129 => a = [r.pid(), r.sig(), r.ptr(), 0, 0, 0],
            297 => a = [r.pid(), r.pid(), r.sig(), r.ptr(), 0, 0],
            424 => a = [r.fd(), r.sig(), r.ptr(), r.int(), 0, 0],
            // fcntl: never clears O_NONBLOCK, never waits for a lock
            72 => {
                let mut cmd = r.pick_size(&[
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 36, 37, 38, 1024, 1025, 1026, 1030, 1031,
                    1032, 1033, 1034,
                ]);
                if r.rng.one_in(4) {
                    cmd = r.int();
                }
                // The kernel reads the command as a 32-bit int: sandbox by
                // the low half.
                cmd = match cmd as u32 {
                    7 => 6,
                    38 => 37,
                    _ => cmd,
                };
                let arg = match cmd as u32 {
                    4 => r.int() | O_NONBLOCK,
                    5 | 6 | 36 | 37 => {
                        let at = r.alloc(32);
                        r.fill(at, 32);
                        at
                    }
                    8 => r.pid(),
                    10 => r.sig(),
                    _ => r.any(),
                };
                a = [r.fd(), cmd, arg, 0, 0, 0];
            }
            73 => a = [r.fd(), r.int() | 4, 0, 0, 0, 0], // LOCK_NB
            76 => a = [r.path_own(), r.len(), 0, 0, 0, 0],
            77 => a = [r.fd(), r.len(), 0, 0, 0, 0],
            78 | 217 => a = [r.fd(), r.ptr(), r.len(), 0, 0, 0],
            79 => a = [r.ptr(), r.len(), 0, 0, 0, 0],
            80 | 161 => a[0] = r.path_any(),
            // changes to names: all under the child's own directory
            82 => a = [r.path_own(), r.path_own(), 0, 0, 0, 0],
            264 => a = [r.fd(), r.path_own(), r.fd(), r.path_own(), 0, 0],
            316 => a = [r.fd(), r.path_own(), r.fd(), r.path_own(), r.int(), 0],
            83 => a = [r.path_own(), r.int(), 0, 0, 0, 0],
            258 => a = [r.fd(), r.path_own(), r.int(), 0, 0, 0],
            84 | 87 => a = [r.path_own(), 0, 0, 0, 0, 0],
            263 => a = [r.fd(), r.path_own(), r.int(), 0, 0, 0],
            86 => a = [r.path_own(), r.path_own(), 0, 0, 0, 0],
            265 => a = [r.fd(), r.path_own(), r.fd(), r.path_own(), r.int(), 0],
            88 => a = [r.path_own(), r.path_own(), 0, 0, 0, 0],
            266 => a = [r.path_own(), r.fd(), r.path_own(), 0, 0, 0],
            89 => a = [r.path_any(), r.ptr(), r.len(), 0, 0, 0],
            267 => a = [r.fd(), r.path_any(), r.ptr(), r.len(), 0, 0],
            90 | 92 | 94 | 132 | 235 => a = [r.path_own(), r.int(), r.int(), 0, 0, 0],
            268 | 260 | 261 | 452 => a = [r.fd(), r.path_own(), r.int(), r.int(), r.int(), 0],
            280 => {
                let p = if r.rng.one_in(3) { 0 } else { r.path_own() };
                a = [r.fd(), p, r.ptr(), r.int(), 0, 0];
            }
            // mknod: FIFOs, sockets, files, and only harmless devices
            133 | 259 => {
                let kind = r.pick_size(&[0o010000, 0o140000, 0o100000, 0o020000, 0o060000, 0]);
                let mode = kind | (r.int() & 0o7777);
                let dev = r.pick_size(&[0, 0x103, 0x105, 0x3e8_0001, 0xfff_00000]);
                a = if nr == 133 {
                    [r.path_own(), mode, dev, 0, 0, 0]
                } else {
                    [r.fd(), r.path_own(), mode, dev, 0, 0]
                };
            }
            // xattrs: on own paths when changing
            188 | 189 => {
                a = [
                    r.path_own(),
                    r.xattr_name(),
                    r.ptr(),
                    r.len() % 70000,
                    r.int(),
                    0,
                ]
            }
            190 => a = [r.fd(), r.xattr_name(), r.ptr(), r.len() % 70000, r.int(), 0],
            191 | 192 => a = [r.path_any(), r.xattr_name(), r.ptr(), r.len(), 0, 0],
            193 => a = [r.fd(), r.xattr_name(), r.ptr(), r.len(), 0, 0],
            194 | 195 => a = [r.path_any(), r.ptr(), r.len(), 0, 0, 0],
            197 | 198 => a = [r.path_own(), r.xattr_name(), 0, 0, 0, 0],
            199 => a = [r.fd(), r.xattr_name(), 0, 0, 0, 0],
            // process attributes: this child or its children only
            109 => a = [r.pid(), r.pid(), 0, 0, 0, 0],
            121 | 124 | 143 | 145 | 148 => a = [r.pid(), r.ptr(), 0, 0, 0, 0],
            140 => a = [r.int() % 3, r.pid(), 0, 0, 0, 0],
            141 => a = [r.int() % 2, r.pid(), r.int(), 0, 0, 0],
            142 => a = [r.pid(), r.ptr(), 0, 0, 0, 0],
            // sched_setscheduler / sched_setattr: never a real-time policy
            // (a spinning FIFO child would starve PID 1 on its CPU)
            144 => {
                let policy = r.pick_size(&[0, 3, 5, 7, 0x4000_0000, u64::MAX]);
                a = [r.pid(), policy, r.ptr(), 0, 0, 0];
            }
            314 => {
                let at = r.alloc(56);
                r.fill(at, 56);
                let v = r.pick_size(&[48, 56, 0, 4096]) as u32;
                r.put(at, v);
                let v = r.pick_size(&[0, 3, 5, 7]) as u32;
                r.put(at + 4, v);
                a = [r.pid(), at, r.int(), 0, 0, 0];
            }
            315 => a = [r.pid(), r.ptr(), r.len(), r.int(), 0, 0],
            203 | 204 => a = [r.pid(), r.len(), r.ptr(), 0, 0, 0],
            251 => a = [1 + r.int() % 2, r.pid(), r.int(), 0, 0, 0],
            252 => a = [r.int() % 4, r.pid(), 0, 0, 0, 0],
            302 => a = [r.pid(), r.int() % 20, r.ptr(), r.ptr(), 0, 0],
            274 => a = [r.pid(), r.ptr(), r.ptr(), 0, 0, 0],
            256 => a = [r.pid(), r.len(), r.ptr(), r.ptr(), 0, 0],
            279 => a = [r.pid(), r.len(), r.ptr(), r.ptr(), r.ptr(), r.int()],
            310 | 311 => {
                let (l, ln) = r.iov();
                let (rv, rn) = r.iov();
                a = [r.pid(), l, ln, rv, rn, r.int()];
            }
            312 => a = [r.pid(), r.pid(), r.int() % 10, r.fd(), r.fd(), 0],
            434 => a = [r.pid(), r.int(), 0, 0, 0, 0],
            440 => {
                let (iov, n) = r.iov();
                let mut advice = r.int();
                if matches!(advice, 100 | 101) {
                    advice = 4;
                }
                a = [r.fd(), iov, n, advice, r.int(), 0];
            }
            // prctl: not PR_SET_MM (it can move brk under the allocator),
            // and only a short timer slack
            157 => {
                let mut op = if r.rng.one_in(4) {
                    r.int()
                } else {
                    r.rng.below(80)
                };
                if op as u32 == 35 {
                    op = 36;
                }
                a = [op, r.any(), r.any(), r.any(), r.any(), 0];
                // PR_SET_TIMERSLACK: Linux adds the slack to every sleep,
                // so a random one turns a 1 ms timeout into hours.
                if op as u32 == 29 {
                    a[1] = r.rng.below(1_000_000);
                }
            }
            // arch_prctl: FS stays where TLS is
            158 => {
                let code = r.pick_size(&[
                    0x1001, 0x1002, 0x1003, 0x1004, 0x1011, 0x1012, 0x2001, 0x3001,
                ]);
                let code = if r.rng.one_in(4) { r.int() } else { code };
                let arg = if code == 0x1002 { r.fs_base } else { r.ptr() };
                a = [code, arg, 0, 0, 0, 0];
            }
            // futex: every wait has a short timeout
            202 => {
                let op = (r.int() % 14) | (r.int() & 0x180);
                a = [r.ptr(), op, r.int(), r.ts(), r.ptr(), r.int()];
            }
            449 => {
                let n = r.rng.below(4);
                let at = r.alloc(24 * n.max(1));
                r.fill(at, 24 * n.max(1));
                for i in 0..n {
                    let v = r.ptr();
                    r.put(at + i * 24 + 8, v);
                }
                a = [at, r.len() % 200, r.int(), r.ts(), r.int() % 12, 0];
            }
            // epoll: short timeouts
            232 => a = [r.fd(), r.ptr(), r.int(), r.rng.below(2), 0, 0],
            281 => a = [r.fd(), r.ptr(), r.int(), r.rng.below(2), r.sigset(), 8],
            441 => a = [r.fd(), r.ptr(), r.int(), r.ts(), r.sigset(), 8],
            233 => {
                let ev = r.alloc(12);
                r.fill(ev, 12);
                a = [r.fd(), r.int() % 5, r.fd(), ev, 0, 0];
            }
            128 => a = [r.sigset(), r.ptr(), r.ts(), r.pick_size(&[8, 0, 16]), 0, 0],
            131 => {
                let ss = r.alloc(24);
                let v = r.ptr();
                r.put(ss, v);
                let v = r.int() as u32;
                r.put(ss + 8, v);
                let v = r.len();
                r.put(ss + 16, v);
                a = [if r.rng.one_in(3) { 0 } else { ss }, r.ptr(), 0, 0, 0, 0];
            }
            // fd makers with flags: always non-blocking
            213 | 291 => a = [r.int(), 0, 0, 0, 0, 0],
            282 => a = [r.fd(), r.sigset(), 8, 0, 0, 0],
            289 => a = [r.fd(), r.sigset(), 8, r.int() | O_NONBLOCK, 0, 0],
            283 => a = [r.int() % 12, r.int() | O_NONBLOCK, 0, 0, 0, 0],
            290 => a = [r.int(), r.int() | O_NONBLOCK, 0, 0, 0, 0],
            294 => a = [r.int() | O_NONBLOCK, 0, 0, 0, 0, 0],
            286 => a = [r.fd(), r.int(), r.itimer(), r.ptr(), 0, 0],
            223 => a = [r.int(), r.int(), r.itimer(), r.ptr(), 0, 0],
            222 => {
                let ev = r.alloc(64);
                r.fill(ev, 64);
                let v = r.sig() as u32;
                r.put(ev + 8, v);
                let v = r.int() as u32 % 5;
                r.put(ev + 12, v);
                let v = r.pid() as u32;
                r.put(ev + 16, v);
                a = [r.int() % 12, ev, r.ptr(), 0, 0, 0];
            }
            254 => a = [r.fd(), r.path_any(), r.int(), 0, 0, 0],
            319 => a = [r.path_any(), r.int(), 0, 0, 0, 0],
            // process and id calls with harmless free arguments stay generic
            // (setuid &c. only change this child).
            273 => a = [r.ptr(), r.len(), 0, 0, 0, 0],
            218 | 205 | 211 => a[0] = r.ptr(),
            334 => a = [r.ptr(), r.len(), r.int(), r.int(), 0, 0],
            318 => a = [r.ptr(), r.len(), r.int(), 0, 0, 0],
            303 => a = [r.fd(), r.path_any(), r.ptr(), r.ptr(), r.int(), 0],
            170 | 171 => a = [r.ptr(), r.len(), 0, 0, 0, 0],
            _ => {}
        }
        a
    }

    /// Where pipe/socketpair put their two descriptors: the data area, or a
    /// bad pointer (then the kernel keeps none).
    fn fd_out(&mut self) -> u64 {
        if self.rng.one_in(5) {
            self.bad().max(1)
        } else {
            self.data + self.rng.below(DATA_LEN - 8)
        }
    }

    fn pick_size(&mut self, items: &[u64]) -> u64 {
        self.rng.pick(items)
    }

    /// A length for calls that move data from file to file: at most 1 MiB,
    /// or so large that it must be refused.
    fn bounded_len(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.rng.pick(&[u64::MAX, 1 << 63, isize::MAX as u64]),
            _ => self.rng.below(1 << 20),
        }
    }

    fn domain(&mut self) -> u64 {
        // AF_UNIX, AF_INET, AF_INET6, and families nobody has; never
        // netlink or packet sockets (root could reconfigure the network).
        self.pick_size(&[1, 1, 2, 2, 10, 0, 46, 47, 0xffff, 0x8000_0000])
    }

    fn addrlen_ptr(&mut self) -> u64 {
        if self.rng.one_in(4) {
            return self.ptr();
        }
        let at = self.alloc(4);
        let v = self.pick_size(&[0, 2, 16, 110, 128, 0xffff_ffff, 0x8000_0000]) as u32;
        self.put(at, v);
        at
    }

    fn wait_pid(&mut self) -> u64 {
        if self.rng.one_in(3) {
            (-1i64) as u64
        } else {
            self.pid()
        }
    }

    fn xattr_name(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.ptr_or_bad_str(),
            _ => self.rng.pick(&self.bad_strs[2..]),
        }
    }

    /// Bookkeeping after a call: keep new descriptors (made non-blocking),
    /// new children, new small mappings.
    fn after(&mut self, nr: u64, a: &[u64; 6], r: i64) {
        if r < 0 {
            return;
        }
        let fd_result = FD_MAKERS.contains(&nr) || (nr == 72 && matches!(a[1] as u32, 0 | 1030));
        if fd_result && r < 1024 {
            self.keep_fd(r as i32);
        }
        if matches!(nr, 22 | 293 | 53) && r == 0 {
            let p = if nr == 53 { a[3] } else { a[0] };
            if self.in_data(p, 8) {
                let pair: [i32; 2] = self.get(p);
                for fd in pair {
                    if (0..1024).contains(&fd) {
                        self.keep_fd(fd);
                    }
                }
            }
        }
        if matches!(nr, 56 | 57 | 58 | 435) && r > 0 {
            if self.kids.len() >= 16 {
                self.kids.remove(0);
            }
            self.kids.push(r as i32);
        }
        if nr == 9 && a[1] > 0 && a[1] <= MAP_LIMIT && (r as u64) < (1 << 47) {
            if self.maps.len() >= MAX_MAPS {
                self.maps.remove(0);
            }
            self.maps.push((r as u64, a[1]));
        }
        if nr == 12 && (r as u64) > self.brk && (r as u64) < (1 << 47) {
            self.brk = r as u64;
        }
    }

    fn keep_fd(&mut self, fd: i32) {
        // SAFETY: fcntl on our own descriptor.
        let fl = unsafe { raw(72, [fd as u64, F_GETFL, 0, 0, 0, 0]) };
        if fl >= 0 {
            // SAFETY: as above.
            unsafe { raw(72, [fd as u64, F_SETFL, fl as u64 | O_NONBLOCK, 0, 0, 0]) };
        }
        if !self.fds.contains(&fd) {
            if self.fds.len() >= 48 {
                let i = self.rng.below(48) as usize;
                self.fds[i] = fd;
            } else {
                self.fds.push(fd);
            }
        }
    }

    /// The crafted frame for `rt_sigreturn`: random registers, and a rip
    /// that is non-canonical, in the kernel, NULL, or the landing pad.
    fn sigreturn_frame(&mut self) -> u64 {
        let at = self.alloc(1024);
        let at = (at + 15) & !15;
        let n = ((self.guard - at) / 8).min(120);
        self.fill(at, n * 8);
        let rip = match self.rng.below(5) {
            0 => fuzz_landing as *const () as u64,
            1 => 0x0000_8000_0000_0000,
            2 => 0xffff_ffff_8000_0000,
            3 => 0,
            _ => self.rng.next(),
        };
        // ucontext: flags, link, stack (24), then the registers r8..r15,
        // rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip (index 16), eflags,
        // cs/gs/fs/ss.
        let regs = at + 40;
        self.put(regs + 16 * 8, rip);
        if self.rng.one_in(2) {
            self.put(regs + 15 * 8, self.data + DATA_LEN / 2); // rsp
            self.put(regs + 18 * 8, 0x2bu64 << 48 | 0x33); // ss, cs as Linux
        }
        if self.rng.one_in(2) {
            self.put(regs + 23 * 8, 0u64); // no fpstate
        }
        at
    }
}

// ---- the child --------------------------------------------------------------

/// mmap helper for the child's setup: exits with `code` on failure.
fn map(len: u64, prot: u64, code: i32) -> u64 {
    // SAFETY: an anonymous private mapping chosen by the kernel.
    let r = unsafe { raw(9, [0, len, prot, 0x22, u64::MAX, 0]) };
    if r < 0 {
        child_exit(code);
    }
    r as u64
}

fn child_exit(code: i32) -> ! {
    // SAFETY: ends the child.
    unsafe { raw(231, [code as u64, 0, 0, 0, 0, 0]) };
    unreachable!()
}

/// A NUL-terminated copy of `s` in the strings area at `*at`.
fn put_str(at: &mut u64, s: &[u8]) -> u64 {
    let p = *at;
    // SAFETY: the strings area was sized for every string put here.
    unsafe {
        core::ptr::copy_nonoverlapping(s.as_ptr(), p as *mut u8, s.len());
        *((p + s.len() as u64) as *mut u8) = 0;
    }
    *at += s.len() as u64 + 1;
    p
}

/// The fuzz child: set up, make `calls` calls, exit 0.  Never returns.
/// Where `trace=1` (with `child=`) writes each call before making it: a
/// high descriptor the fuzzer is unlikely to close (debugging only).
const TRACE_FD: u64 = 1013;

/// Writes `call I: NR [ARGS]` to `TRACE_FD` without allocating.
fn trace(i: u64, nr: u64, a: &[u64; 6]) {
    struct Buf([u8; 256], usize);
    impl std::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let n = s.len().min(self.0.len() - self.1);
            self.0[self.1..self.1 + n].copy_from_slice(&s.as_bytes()[..n]);
            self.1 += n;
            Ok(())
        }
    }
    let mut b = Buf([0; 256], 0);
    let mut si = [0u64; 14];
    // SAFETY: sysinfo fills our 112-byte buffer.
    unsafe { raw(99, [si.as_mut_ptr() as u64, 0, 0, 0, 0, 0]) };
    let _ = std::fmt::Write::write_fmt(
        &mut b,
        format_args!(
            "call {i}: {nr} [{:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}] free {} KiB\n",
            a[0],
            a[1],
            a[2],
            a[3],
            a[4],
            a[5],
            si[5] / 1024
        ),
    );
    // SAFETY: a write of our own buffer.
    unsafe { raw(1, [TRACE_FD, b.0.as_ptr() as u64, b.1 as u64, 0, 0, 0]) };
}

/// Writes ` = R` after a traced call.
fn trace_result(r: i64) {
    let mut b = [0u8; 32];
    let mut n = 0;
    for c in b" = " {
        b[n] = *c;
        n += 1;
    }
    let neg = r < 0;
    let mut v = r.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut d = 0;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        b[n] = b'-';
        n += 1;
    }
    while d > 0 {
        d -= 1;
        b[n] = digits[d];
        n += 1;
    }
    b[n] = b'\n';
    n += 1;
    // SAFETY: a write of our own buffer.
    unsafe { raw(1, [TRACE_FD, b.as_ptr() as u64, n as u64, 0, 0, 0]) };
}

fn child(slot: &Slot, seed: u64, cpu: usize, dir: &str, calls: u64, tracing: bool) -> ! {
    // Own session, so that "my process group" means this child only.
    // SAFETY: raw calls on this process.
    unsafe {
        raw(112, [0; 6]);
        let mut mask = [0u64; 16];
        mask[cpu / 64] |= 1 << (cpu % 64);
        raw(203, [0, 128, mask.as_ptr() as u64, 0, 0, 0]);
        if tracing {
            raw(33, [1, TRACE_FD, 0, 0, 0, 0]);
        }
        // No output from a child: its standard descriptors go, and so does
        // every other inherited one, so that a replay numbers its
        // descriptors the same way.
        for fd in 0..1024 {
            if fd != TRACE_FD {
                raw(3, [fd, 0, 0, 0, 0, 0]);
            }
        }
        // Most signals ignored at first, so that the first kill of itself
        // does not end the run of calls (the fuzzer may change this).
        for sig in 1..=64u64 {
            if !matches!(sig, 9 | 19 | 32 | 33 | 34) {
                let act = [1u64, 0x0400_0000, fuzz_restorer as *const () as u64, 0];
                raw(13, [sig, act.as_ptr() as u64, 0, 8, 0, 0]);
            }
        }
    }
    let data = map(DATA_LEN + STRUCT_LEN + PAGE, 3, 101);
    let guard = data + DATA_LEN + STRUCT_LEN;
    let ro = map(PAGE, 3, 102);
    let strs = map(5 * PAGE, 3, 103);
    let sandbox = map(SANDBOX_LEN, 0, 104);
    // SAFETY: our own fresh mappings.
    unsafe {
        raw(10, [guard, PAGE, 0, 0, 0, 0]);
        raw(10, [strs + 4 * PAGE, PAGE, 0, 0, 0, 0]);
    }
    let mut w = World {
        rng: Rng(seed),
        data,
        structs: data + DATA_LEN,
        guard,
        bump: 0,
        end_used: false,
        ro,
        sandbox,
        maps: Vec::with_capacity(MAX_MAPS),
        own: Vec::new(),
        any: Vec::new(),
        bad_strs: Vec::new(),
        fds: Vec::with_capacity(48),
        kids: Vec::with_capacity(16),
        pid: 0,
        brk: 0,
        fs_base: 0,
    };
    w.fill(data, DATA_LEN + STRUCT_LEN);
    // SAFETY: fill the read-only page, then make it read-only.
    unsafe {
        for i in 0..PAGE / 8 {
            *((ro + i * 8) as *mut u64) = w.rng.next();
        }
        raw(10, [ro, PAGE, 1, 0, 0, 0]);
    }
    // Strings: a path longer than PATH_MAX, the xattr names, the paths.
    let mut at = strs;
    let long = put_str(&mut at, &[b'a'; 5000]);
    let unterminated = strs + 4 * PAGE - 64;
    w.bad_strs = vec![long, unterminated];
    for name in [
        &b"user.a"[..],
        b"user.b",
        b"trusted.x",
        b"security.x",
        b"",
        b"user.",
    ] {
        w.bad_strs.push(put_str(&mut at, name));
    }
    let name_300 = [b'n'; 300];
    w.bad_strs.push(put_str(&mut at, &name_300));
    let mut own = Vec::new();
    for sub in [
        "", "/f0", "/f1", "/f2", "/f3", "/d0", "/d0/x", "/d1", "/fifo", "/link", "/new", "/f0/",
        "/d0/", "/..",
    ] {
        own.push(put_str(&mut at, format!("{dir}{sub}").as_bytes()));
    }
    let mut long_name = format!("{dir}/");
    long_name.push_str(&"z".repeat(300));
    own.push(put_str(&mut at, long_name.as_bytes()));
    own.push(put_str(&mut at, format!("{dir}/sock").as_bytes()));
    w.own = own;
    for p in [
        "/",
        ".",
        "..",
        "",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/proc/meminfo",
        "/proc/self/maps",
        "/nonexistent/x",
        "/tmp",
        "//",
        "/dev/",
    ] {
        w.any.push(put_str(&mut at, p.as_bytes()));
    }
    // SAFETY: the unterminated string fills the last bytes before the guard.
    unsafe { core::ptr::write_bytes(unterminated as *mut u8, b'u', 64) };

    // SAFETY: raw calls on this process.
    unsafe {
        w.pid = raw(39, [0; 6]) as u64;
        w.brk = raw(12, [0; 6]) as u64;
        let mut fs = 0u64;
        raw(158, [0x1003, &mut fs as *mut u64 as u64, 0, 0, 0, 0]);
        w.fs_base = fs;
    }
    // The child's descriptors: its files, devices, a pipe, sockets, epoll.
    let opens: [(u64, u64); 8] = [
        (w.own[1], 0o102 | O_NONBLOCK),    // f0 O_CREAT|O_RDWR
        (w.own[2], 0o101 | O_NONBLOCK),    // f1 O_CREAT|O_WRONLY
        (w.own[0], 0o200000 | O_NONBLOCK), // the directory
        (w.any[4], 2 | O_NONBLOCK),        // /dev/null
        (w.any[5], O_NONBLOCK),            // /dev/zero
        (w.own[1], O_NONBLOCK),            // f0 again, read-only
        (w.any[0], 0o200000 | O_NONBLOCK), // /
        (w.any[6], O_NONBLOCK),            // /dev/urandom
    ];
    // SAFETY: raw calls with our own strings and buffers.
    unsafe {
        raw(83, [w.own[5], 0o755, 0, 0, 0, 0]); // d0
        for (path, flags) in opens {
            let fd = raw(2, [path, flags, 0o644, 0, 0, 0]);
            if fd >= 0 {
                w.keep_fd(fd as i32);
            }
        }
        if let Some(&f0) = w.fds.first() {
            raw(1, [f0 as u64, data, 8192, 0, 0, 0]);
        }
        let mut pair = [-1i32; 2];
        for (nr, args) in [
            (293u64, [pair.as_mut_ptr() as u64, O_NONBLOCK, 0, 0, 0, 0]),
            (53, [1, 1 | O_NONBLOCK, 0, pair.as_mut_ptr() as u64, 0, 0]),
            (53, [1, 2 | O_NONBLOCK, 0, pair.as_mut_ptr() as u64, 0, 0]),
        ] {
            if raw(nr, args) == 0 {
                w.keep_fd(pair[0]);
                w.keep_fd(pair[1]);
            }
        }
        for (domain, kind) in [(2u64, 2u64), (2, 1), (1, 1)] {
            let fd = raw(41, [domain, kind | O_NONBLOCK, 0, 0, 0, 0]);
            if fd >= 0 {
                w.keep_fd(fd as i32);
            }
        }
        let ep = raw(291, [0; 6]);
        if ep >= 0 {
            w.keep_fd(ep as i32);
        }
    }

    slot.phase.store(2, Ordering::Release);
    for i in 0..calls {
        let (nr, a) = w.next_call();
        if tracing {
            trace(i, nr, &a);
        }
        slot.nr.store(nr, Ordering::Relaxed);
        for (s, v) in slot.args.iter().zip(a) {
            s.store(v, Ordering::Relaxed);
        }
        slot.phase.store(1, Ordering::Release);
        // SAFETY: the point of the program; the sandbox rules in `World`
        // keep the effects inside this child.
        let r = unsafe {
            match nr {
                15 => sigreturn_from(w.sigreturn_frame()),
                56 | 57 | 58 | 435 => raw_forklike(nr, a),
                _ => raw(nr, a),
            }
        };
        slot.calls.fetch_add(1, Ordering::AcqRel);
        slot.phase.store(2, Ordering::Release);
        if tracing {
            trace_result(r);
        }
        w.after(nr, &a, r);
    }
    slot.phase.store(3, Ordering::Release);
    child_exit(0)
}

// ---- PID 1 -------------------------------------------------------------------

struct Config {
    seed: u64,
    calls: u64,
    per_child: u64,
    procs: usize,
    timeout: Duration,
    mem_slack_kib: u64,
    child: Option<u64>,
    verbose: bool,
    trace: bool,
    /// With `trace=1` in a whole run: the child whose calls are traced.
    verbose_child: Option<u64>,
}

fn parse_args() -> Config {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut c = Config {
        seed: 1,
        calls: 20_000,
        per_child: 1000,
        procs: (2 * cpus).min(MAX_SLOTS),
        timeout: Duration::from_secs(60),
        mem_slack_kib: 4096,
        child: None,
        verbose: false,
        trace: false,
        verbose_child: None,
    };
    for arg in userland::args() {
        let Some((k, v)) = arg.split_once('=') else {
            say(&format!("fuzz: unknown argument {arg:?}"));
            std::process::exit(2);
        };
        let num = || -> u64 {
            let r = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            r.unwrap_or_else(|_| {
                say(&format!("fuzz: {k}= needs a number, not {v:?}"));
                std::process::exit(2)
            })
        };
        match k {
            "seed" => c.seed = num(),
            "calls" => c.calls = num(),
            "per_child" => c.per_child = num().max(1),
            "procs" => c.procs = (num() as usize).clamp(1, MAX_SLOTS),
            "timeout" => c.timeout = Duration::from_secs(num().max(1)),
            "mem_slack_kib" => c.mem_slack_kib = num(),
            "child" => c.child = Some(num()),
            "verbose" => c.verbose = num() != 0,
            "trace" => c.trace = num() != 0,
            "only" | "skip" => {
                let Some(list) = parse_list(v) else {
                    say(&format!(
                        "fuzz: {k}= needs numbers like 0,1,9-11, not {v:?}"
                    ));
                    std::process::exit(2)
                };
                let _ = if k == "only" { &ONLY } else { &SKIP }.set(list);
            }
            "trace_child" => {
                c.trace = true;
                c.verbose_child = Some(num());
            }
            _ => {
                say(&format!("fuzz: unknown argument {arg:?}"));
                std::process::exit(2);
            }
        }
    }
    if !(0..451).any(|nr| allowed(nr) && !EXCLUDED.iter().any(|&(n, _)| n == nr)) {
        say("fuzz: only=/skip= leave no call to make");
        std::process::exit(2);
    }
    c
}

/// `procs` and Slab at the baseline (printed with the memory check).
static PROCS_BEFORE: AtomicU64 = AtomicU64::new(0);
static SLAB_BEFORE: AtomicU64 = AtomicU64::new(0);

/// Processes in existence (sysinfo's `procs`).
fn procs_now() -> u64 {
    // SAFETY: sysinfo fills the struct it is given.
    unsafe {
        let mut si: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut si) != 0 {
            return 0;
        }
        u64::from(si.procs)
    }
}

/// `Slab:` of /proc/meminfo in kB (0 when absent).
fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Slab:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Free memory in bytes, by sysinfo(2) (the same call on both systems).
fn free_bytes() -> u64 {
    // SAFETY: sysinfo fills the struct it is given.
    unsafe {
        let mut si: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut si) != 0 {
            return 0;
        }
        si.freeram as u64 * si.mem_unit.max(1) as u64
    }
}

/// The system still works: a file, a pipe, fork + wait.  `Err` names what
/// did not.
fn system_check() -> Result<(), String> {
    use std::io::{Read, Write};
    let path = "/tmp/fuzz-check";
    let text: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(path, &text).map_err(|e| format!("write {path}: {e}"))?;
    let back = std::fs::read(path).map_err(|e| format!("read {path}: {e}"))?;
    if back != text {
        return Err(format!("{path} read back differs"));
    }
    std::fs::remove_file(path).map_err(|e| format!("unlink {path}: {e}"))?;
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: two fresh descriptors owned here.
    let (mut rd, mut wr) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    wr.write_all(b"through the pipe")
        .map_err(|e| format!("pipe write: {e}"))?;
    drop(wr);
    let mut got = String::new();
    rd.read_to_string(&mut got)
        .map_err(|e| format!("pipe read: {e}"))?;
    if got != "through the pipe" {
        return Err(format!("pipe gave {got:?}"));
    }
    let pid = userland::fork_run(|| 42).map_err(|e| format!("fork: {e}"))?;
    let how = userland::wait_for(pid);
    if how != "exited 42" {
        return Err(format!("fork + wait: child {how}"));
    }
    Ok(())
}

/// Removes `path` and everything under it, whatever the fuzzer did to the
/// modes (this runs as root, and tries chmod once where removal fails).
fn remove_tree(path: &str) {
    match std::fs::symlink_metadata(path) {
        Err(_) => return, // nothing there
        // A child may empty its directory, remove it and create a file (or
        // a FIFO, a socket, a link) by the same name.
        Ok(m) if !m.is_dir() => {
            if let Err(e) = std::fs::remove_file(path) {
                say(&format!("fuzz: cannot remove {path}: {e}"));
            }
            return;
        }
        Ok(_) => {}
    }
    if std::fs::remove_dir_all(path).is_err() {
        use std::os::unix::fs::PermissionsExt;
        fn open_up(p: &std::path::Path) {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        open_up(&e.path());
                    }
                }
            }
        }
        open_up(std::path::Path::new(path));
        if let Err(e) = std::fs::remove_dir_all(path) {
            // Say what is left, for the failure that follows.
            say(&format!("fuzz: cannot remove {path}: {e}"));
            fn show(p: &std::path::Path, depth: usize) {
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten().take(20) {
                        let kind = e.file_type().map(|t| format!("{t:?}")).unwrap_or_default();
                        let err = if e.file_type().is_ok_and(|t| t.is_dir()) {
                            std::fs::remove_dir(e.path()).err()
                        } else {
                            std::fs::remove_file(e.path()).err()
                        };
                        say(&format!("fuzz:   left: {:?} {kind} {err:?}", e.path()));
                        if depth < 3 && e.file_type().is_ok_and(|t| t.is_dir()) {
                            show(&e.path(), depth + 1);
                        }
                    }
                }
            }
            show(std::path::Path::new(path), 0);
        }
    }
}

struct Running {
    pid: i32,
    seed: u64,
    quota: u64,
    started: Instant,
    killed: Option<Instant>,
}

fn main() {
    let cfg = parse_args();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The page shared with every child.
    // SAFETY: a fresh shared anonymous mapping, zeroed by the kernel.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            MAX_SLOTS * size_of::<Slot>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if shared == libc::MAP_FAILED {
        say("fuzz: mmap of the shared page failed  <-- WRONG");
        std::process::exit(1);
    }
    // SAFETY: MAX_SLOTS zeroed `Slot`s (atomics of zero are valid).
    let slots: &[Slot] = unsafe { std::slice::from_raw_parts(shared as *const Slot, MAX_SLOTS) };
    let _ = std::fs::create_dir("/tmp");
    remove_tree("/tmp/fuzz");
    if let Err(e) = std::fs::create_dir("/tmp/fuzz") {
        say(&format!("fuzz: mkdir /tmp/fuzz: {e}  <-- WRONG"));
        std::process::exit(1);
    }
    let dir_of = |slot: usize| format!("/tmp/fuzz/{slot}");

    if let Some(seed) = cfg.child {
        // Replay one child's sequence, on CPU 0, with the same watchdog.
        say(&format!("fuzz child={seed:#x} calls={}", cfg.calls));
        let _ = std::fs::create_dir(dir_of(0));
        let pid = spawn(&slots[0], seed, 0, &dir_of(0), cfg.calls, cfg.trace);
        let (code, ok) = watch_one(pid, &slots[0], cfg.timeout);
        say(&format!(
            "fuzz: child {code}, calls={}",
            slots[0].calls.load(Ordering::Acquire)
        ));
        remove_tree("/tmp/fuzz");
        if !ok {
            std::process::exit(1);
        }
        finish_checks(None, &cfg);
        return;
    }

    say(&format!(
        "fuzz seed={} calls={} per_child={} procs={} cpus={} timeout={}s",
        cfg.seed,
        cfg.calls,
        cfg.per_child,
        cfg.procs,
        cpus,
        cfg.timeout.as_secs()
    ));
    if let Some(l) = ONLY.get() {
        say(&format!("fuzz: only {l:?}"));
    }
    if let Some(l) = SKIP.get() {
        say(&format!("fuzz: skip {l:?}"));
    }
    // Warm up what a first fork and the check allocate for good, then take
    // the memory baseline.
    if let Err(e) = system_check() {
        say(&format!(
            "fuzz: system check before fuzzing: {e}  <-- WRONG"
        ));
        std::process::exit(1);
    }
    let free_before = settle_free(None, 0);
    PROCS_BEFORE.store(procs_now(), Ordering::Relaxed);
    SLAB_BEFORE.store(slab_kib(), Ordering::Relaxed);

    let start = Instant::now();
    let mut running: Vec<Option<Running>> = (0..cfg.procs).map(|_| None).collect();
    let mut generation = vec![0u64; cfg.procs];
    let mut total_calls = 0u64;
    let mut launched = 0u64; // calls handed out to live children (their quotas)
    let mut children = 0u64;
    let mut failures: Vec<String> = Vec::new();
    let mut deaths: std::collections::BTreeMap<String, u64> = Default::default();
    let mut setup_failures = 0u64;
    loop {
        // Start children while calls remain.
        for s in 0..cfg.procs {
            if running[s].is_none() && total_calls + launched < cfg.calls && failures.len() < 5 {
                let quota = cfg.per_child.min(cfg.calls - total_calls - launched);
                let seed = child_seed(cfg.seed, s as u64, generation[s]);
                generation[s] += 1;
                let dir = dir_of(s);
                remove_tree(&dir);
                if let Err(e) = std::fs::create_dir(&dir) {
                    failures.push(format!("mkdir {dir}: {e}"));
                    continue;
                }
                slots[s].calls.store(0, Ordering::Release);
                slots[s].phase.store(0, Ordering::Release);
                let tracing = cfg.trace && cfg.verbose_child == Some(seed);
                let pid = spawn(&slots[s], seed, s % cpus, &dir, quota, tracing);
                if pid < 0 {
                    failures.push("fork failed".to_string());
                    continue;
                }
                launched += quota;
                children += 1;
                if cfg.verbose {
                    say(&format!(
                        "fuzz: slot {s} cpu {} child={seed:#x} pid {pid}",
                        s % cpus
                    ));
                }
                running[s] = Some(Running {
                    pid,
                    seed,
                    quota,
                    started: Instant::now(),
                    killed: None,
                });
            }
        }
        if running.iter().all(Option::is_none) {
            break;
        }
        // Reap whatever ended (children and the children they left).
        loop {
            let mut status = 0;
            // SAFETY: plain wait4 with an out-pointer.
            let pid = unsafe {
                libc::wait4(
                    -1,
                    &mut status,
                    libc::WNOHANG | libc::WUNTRACED | libc::__WALL,
                    std::ptr::null_mut(),
                )
            };
            if pid <= 0 {
                break;
            }
            let Some(s) = running
                .iter()
                .position(|r| r.as_ref().is_some_and(|r| r.pid == pid))
            else {
                continue; // a grandchild, reparented
            };
            if libc::WIFSTOPPED(status) {
                // SAFETY: continuing our own child.
                unsafe { libc::kill(pid, libc::SIGCONT) };
                continue;
            }
            let r = running[s].take().expect("slot is running");
            let done = slots[s].calls.load(Ordering::Acquire);
            total_calls += done;
            launched -= r.quota;
            let how = describe_status(status);
            if slots[s].phase.load(Ordering::Acquire) == 0 {
                setup_failures += 1;
                say(&format!(
                    "fuzz: child seed={:#x} failed to set up: {how}",
                    r.seed
                ));
            }
            if r.killed.is_none() {
                let key = if libc::WIFSIGNALED(status) {
                    format!("killed by {}", signal_name(libc::WTERMSIG(status)))
                } else {
                    how
                };
                *deaths.entry(key).or_default() += 1;
            }
        }
        // Watch the clock.
        for s in 0..cfg.procs {
            let Some(r) = running[s].as_mut() else {
                continue;
            };
            match r.killed {
                None if r.started.elapsed() > cfg.timeout => {
                    let slot = &slots[s];
                    let args: Vec<String> = slot
                        .args
                        .iter()
                        .map(|a| format!("{:#x}", a.load(Ordering::Acquire)))
                        .collect();
                    let line = format!(
                        "HANG: child seed={:#x} (slot {s}) did not finish in {}s: {} after {} calls, syscall {} args [{}]",
                        r.seed,
                        cfg.timeout.as_secs(),
                        ["setting up", "in a call", "between calls", "done"]
                            [slot.phase.load(Ordering::Acquire).min(3) as usize],
                        slot.calls.load(Ordering::Acquire),
                        slot.nr.load(Ordering::Acquire),
                        args.join(", ")
                    );
                    say(&format!("fuzz: {line}  <-- WRONG"));
                    failures.push(line);
                    // SAFETY: killing our own child.
                    unsafe { libc::kill(r.pid, libc::SIGKILL) };
                    r.killed = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(30) => {
                    let line = format!("child seed={:#x} survives SIGKILL for 30 s", r.seed);
                    say(&format!("fuzz: {line}  <-- WRONG"));
                    failures.push(line);
                    launched -= r.quota;
                    running[s] = None; // given up on
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(5)); // the watchdog's tick
    }
    let elapsed = start.elapsed();
    // Reap what is left (children of children, reparented here).
    let reap_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: plain wait4.
        let pid = unsafe {
            libc::wait4(
                -1,
                std::ptr::null_mut(),
                libc::WNOHANG | libc::__WALL,
                std::ptr::null_mut(),
            )
        };
        if pid < 0 || Instant::now() > reap_deadline {
            break;
        }
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let rate = total_calls as f64 / elapsed.as_secs_f64().max(1e-9);
    say(&format!(
        "fuzz: calls={total_calls} children={children} elapsed_ms={} calls_per_s={rate:.0}",
        elapsed.as_millis()
    ));
    for (how, n) in &deaths {
        say(&format!("fuzz: children {how}: {n}"));
    }
    if setup_failures * 2 > children.max(1) {
        failures.push(format!(
            "{setup_failures} of {children} children failed to set up"
        ));
    }
    remove_tree("/tmp/fuzz");
    if !failures.is_empty() {
        for f in &failures {
            say(&format!("fuzz: failure: {f}  <-- WRONG"));
        }
        say(&format!(
            "fuzz: replay with `fuzz seed={} calls={}` (or `child=SEED`)",
            cfg.seed, cfg.calls
        ));
        std::process::exit(1);
    }
    if total_calls < cfg.calls {
        say(&format!(
            "fuzz: only {total_calls} of {} calls were made  <-- WRONG",
            cfg.calls
        ));
        std::process::exit(1);
    }
    finish_checks(Some(free_before), &cfg);
}

/// The system check and the memory check after the run; prints `fuzz: pass`
/// or exits 1.
fn finish_checks(free_before: Option<u64>, cfg: &Config) {
    if let Err(e) = system_check() {
        say(&format!("fuzz: system check after fuzzing: {e}  <-- WRONG"));
        std::process::exit(1);
    }
    if let Some(before) = free_before {
        let after = settle_free(Some(before), cfg.mem_slack_kib);
        let lost_kib = before.saturating_sub(after) / 1024;
        // Where it went (for a leak hunt): processes in existence and the
        // kernel heap's share, as sysinfo and /proc/meminfo's Slab say.
        say(&format!(
            "fuzz: procs before={} after={}; Slab before={} kB after={} kB",
            PROCS_BEFORE.load(Ordering::Relaxed),
            procs_now(),
            SLAB_BEFORE.load(Ordering::Relaxed),
            slab_kib()
        ));
        let ok = lost_kib <= cfg.mem_slack_kib;
        say(&format!(
            "fuzz: free memory before={} KiB after={} KiB lost={lost_kib} KiB (bound {} KiB){}",
            before / 1024,
            after / 1024,
            cfg.mem_slack_kib,
            if ok { "" } else { "  <-- WRONG" }
        ));
        if !ok {
            std::process::exit(1);
        }
    }
    say("fuzz: pass");
}

/// Free memory once it has settled: freed objects can come back after an
/// RCU grace period or deferred work, so poll for up to 5 s until the loss
/// is within the bound (or, for the baseline, until two reads agree).
fn settle_free(before: Option<u64>, slack_kib: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = free_bytes();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = free_bytes();
        let settled = match before {
            Some(b) => b.saturating_sub(now) / 1024 <= slack_kib,
            None => now == last,
        };
        if settled || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Forks a fuzz child; returns its pid (or -1).
fn spawn(slot: &Slot, seed: u64, cpu: usize, dir: &str, calls: u64, tracing: bool) -> i32 {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: PID 1 is single-threaded; the child runs `child` and never
    // returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child(slot, seed, cpu, dir, calls, tracing);
    }
    pid
}

/// For `child=`: wait for one child with the watchdog; (description, ok).
fn watch_one(pid: i32, slot: &Slot, timeout: Duration) -> (String, bool) {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: plain wait4.
        let r = unsafe {
            libc::wait4(
                pid,
                &mut status,
                libc::WNOHANG | libc::__WALL,
                std::ptr::null_mut(),
            )
        };
        if r == pid {
            return (describe_status(status), true);
        }
        if start.elapsed() > timeout {
            let args: Vec<String> = slot
                .args
                .iter()
                .map(|a| format!("{:#x}", a.load(Ordering::Acquire)))
                .collect();
            say(&format!(
                "fuzz: HANG after {} calls in syscall {} args [{}]  <-- WRONG",
                slot.calls.load(Ordering::Acquire),
                slot.nr.load(Ordering::Acquire),
                args.join(", ")
            ));
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return ("hung".into(), false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
