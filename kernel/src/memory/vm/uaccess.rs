//! Copies between kernel memory and user memory of the loaded address space.
//!
//! Owns: the only kernel code allowed to touch user pages (assembly
//! routines: a block copy, the same copy that never pages in, `rep
//! stosb`), the exception table that lets a
//! fault inside them return an error instead of panicking, and the SMAP
//! bracket (`stac` before, `clac` after) around them.
//!
//! Typed user memory (after Hubris's `USlice`): a user address arrives as a
//! [`UserAddr`], which is only what user space *alleges* and has no way to
//! touch memory; [`UserAddr::slice`] / [`UserAddr::ptr`] check the range and
//! give a [`UserSlice`] / [`UserPtr<T>`], and only those reach the copy
//! routines.  A `UserPtr<T>` reads and writes `T: Pod` (plain data, every
//! byte pattern valid, no padding).  System-call handlers receive
//! `UserAddr`s from the table (`syscall/table.rs`) and never a bare integer
//! that could reach a copy; the `UserAddr` shorthands (`read`, `write`,
//! `read_bytes`, `write_bytes`, `read_cstr`, ...) go through a `UserPtr` /
//! `UserSlice` too.  No function here takes a `u64` user address.
//!
//! Invariants: a `UserSlice`/`UserPtr` exists only for a range checked
//! against `USER_END` (with overflow), so a user pointer can never make
//! the kernel read or write kernel memory; a fault inside a copy first goes
//! through demand paging / copy-on-write (`vm::page_fault`) and, when that
//! fails, resumes at the routine's fixup, which reports failure.
//!
//! Must not: be called with a kernel pointer as the "user" side, or hold a
//! VM lock (a fault inside the copy takes a range lock).

use alloc::string::String;
use alloc::vec::Vec;
use core::arch::{asm, global_asm};
use core::marker::PhantomData;
use core::mem::{size_of, size_of_val, MaybeUninit};

use super::{aspace, PinnedFrame, USER_END};
use abi::Errno;

// The copy: 64-byte blocks through eight registers, then the tail in
// quadwords and bytes.  Not one `rep movsb`: under QEMU's TCG (where the
// comparison runs) every iteration of a `rep` string instruction is a
// separate trip through the translated block, so a byte-wise `rep movsb` of
// 4 KiB costs 4096 trips and this loop 64.  On hardware it is Linux's
// `copy_user_generic_unrolled` shape, as fast as `rep movsb` for aligned
// page copies.
macro_rules! copy_body {
    ($name:literal) => {
        concat!(
            "    mov rcx, rdx\n",
            "    shr rcx, 6\n",
            "    jz ",
            $name,
            "_tail\n",
            $name,
            "_block:\n",
            "    mov rax, [rsi]\n",
            "    mov r8, [rsi + 8]\n",
            "    mov r9, [rsi + 16]\n",
            "    mov r10, [rsi + 24]\n",
            "    mov [rdi], rax\n",
            "    mov [rdi + 8], r8\n",
            "    mov [rdi + 16], r9\n",
            "    mov [rdi + 24], r10\n",
            "    mov rax, [rsi + 32]\n",
            "    mov r8, [rsi + 40]\n",
            "    mov r9, [rsi + 48]\n",
            "    mov r10, [rsi + 56]\n",
            "    mov [rdi + 32], rax\n",
            "    mov [rdi + 40], r8\n",
            "    mov [rdi + 48], r9\n",
            "    mov [rdi + 56], r10\n",
            "    add rsi, 64\n",
            "    add rdi, 64\n",
            "    dec rcx\n",
            "    jnz ",
            $name,
            "_block\n",
            $name,
            "_tail:\n",
            "    mov rcx, rdx\n",
            "    and ecx, 63\n",
            "    shr ecx, 3\n",
            "    rep movsq\n",
            "    mov ecx, edx\n",
            "    and ecx, 7\n",
            "    rep movsb\n",
        )
    };
}

global_asm!(
    ".section .text.vm_uaccess, \"ax\"",
    // vm_uaccess_copy(dst: rdi, src: rsi, len: rdx) -> rax: 0 ok, 1 fault
    ".global vm_uaccess_copy",
    "vm_uaccess_copy:",
    "vm_uaccess_copy_insn:",
    copy_body!("vm_uaccess_copy"),
    "vm_uaccess_copy_end:",
    "    xor eax, eax",
    "    ret",
    "vm_uaccess_copy_fixup:",
    "    mov eax, 1",
    "    ret",
    // vm_uaccess_copy_nofault: the same copy, but a fault in it is never
    // resolved (no demand paging, no copy-on-write): it goes straight to
    // the fixup (`no_paging`).  For callers that hold locks a fault
    // handler might take.
    ".global vm_uaccess_copy_nofault",
    "vm_uaccess_copy_nofault:",
    "vm_uaccess_copy_nofault_insn:",
    copy_body!("vm_uaccess_copy_nofault"),
    "vm_uaccess_copy_nofault_end:",
    "    xor eax, eax",
    "    ret",
    "vm_uaccess_copy_nofault_fixup:",
    "    mov eax, 1",
    "    ret",
    r#"
    // vm_uaccess_strncpy(dst: rdi, src: rsi, n: rdx) -> rax: the index of
    // the first NUL among the n bytes at src (copied up to and including
    // it), n when there is none (all n copied), u64::MAX on a fault.
    // Bytes until src is 8-aligned, then aligned quadwords (an aligned
    // read never crosses a page, so nothing past the NUL's page is
    // touched) tested for a zero byte with the (v - 0x01..) & !v & 0x80..
    // trick, then bytes again for the word holding the NUL and the tail.
    // No `rep` (see the copy above): a 30-byte path is ~5 words.
    .global vm_uaccess_strncpy
vm_uaccess_strncpy:
vm_uaccess_strncpy_insn:
    xor eax, eax
.Lstrncpy_head:
    cmp rax, rdx
    jae .Lstrncpy_done
    lea rcx, [rsi + rax]
    test cl, 7
    jz .Lstrncpy_words
    movzx ecx, byte ptr [rsi + rax]
    mov [rdi + rax], cl
    test ecx, ecx
    jz .Lstrncpy_done
    inc rax
    jmp .Lstrncpy_head
.Lstrncpy_words:
    mov r9, 0x0101010101010101
    mov r10, 0x8080808080808080
.Lstrncpy_word:
    lea rcx, [rax + 8]
    cmp rcx, rdx
    ja .Lstrncpy_tail
    mov r8, [rsi + rax]
    mov rcx, r8
    sub rcx, r9
    mov r11, r8
    not r11
    and rcx, r11
    test rcx, r10
    jnz .Lstrncpy_tail
    mov [rdi + rax], r8
    add rax, 8
    jmp .Lstrncpy_word
.Lstrncpy_tail:
    cmp rax, rdx
    jae .Lstrncpy_done
    movzx ecx, byte ptr [rsi + rax]
    mov [rdi + rax], cl
    test ecx, ecx
    jz .Lstrncpy_done
    inc rax
    jmp .Lstrncpy_tail
.Lstrncpy_done:
vm_uaccess_strncpy_end:
    ret
vm_uaccess_strncpy_fixup:
    mov rax, -1
    ret

    // vm_uaccess_zero(dst: rdi, len: rsi) -> rax: 0 ok, 1 fault
    .global vm_uaccess_zero
vm_uaccess_zero:
    mov rcx, rsi
    xor eax, eax
vm_uaccess_zero_insn:
    rep stosb
vm_uaccess_zero_end:
    ret
vm_uaccess_zero_fixup:
    mov eax, 1
    ret

    // The exception table: (first byte, end, fixup) of each faulting range.
    // The no-paging copy is entry 2 (`no_paging`).
    .section .rodata.vm_uaccess, "a"
    .balign 8
    .global vm_uaccess_table
vm_uaccess_table:
    .quad vm_uaccess_copy_insn, vm_uaccess_copy_end, vm_uaccess_copy_fixup
    .quad vm_uaccess_zero_insn, vm_uaccess_zero_end, vm_uaccess_zero_fixup
    .quad vm_uaccess_copy_nofault_insn, vm_uaccess_copy_nofault_end, vm_uaccess_copy_nofault_fixup
    .quad vm_uaccess_strncpy_insn, vm_uaccess_strncpy_end, vm_uaccess_strncpy_fixup
    "#
);

unsafe extern "C" {
    fn vm_uaccess_copy(dst: *mut u8, src: *const u8, len: usize) -> u64;
    fn vm_uaccess_copy_nofault(dst: *mut u8, src: *const u8, len: usize) -> u64;
    fn vm_uaccess_zero(dst: *mut u8, len: usize) -> u64;
    fn vm_uaccess_strncpy(dst: *mut u8, src: *const u8, n: usize) -> u64;
    static vm_uaccess_table: [[u64; 3]; 4];
}

/// Whether a fault at `rip` is in the copy that must not page in
/// (`UserSlice::write_from_nofault`): the fault handler then goes straight to the
/// fixup.
pub fn no_paging(rip: u64) -> bool {
    // SAFETY: a read-only table written by the assembler above.
    let e = unsafe { &vm_uaccess_table[2] };
    e[0] <= rip && rip < e[1]
}

/// Where to resume when a fault hits `rip` inside a user copy.
pub fn fixup_for(rip: u64) -> Option<u64> {
    // SAFETY: a read-only table written by the assembler above.
    let table = unsafe { &vm_uaccess_table };
    table
        .iter()
        .find(|e| e[0] <= rip && rip < e[1])
        .map(|e| e[2])
}

/// Checks that `[addr, addr + len)` lies in the user half.
fn check_range(addr: u64, len: usize) -> Result<(), Errno> {
    match addr.checked_add(len as u64) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Errno::EFAULT),
    }
}

/// The kernel address of bytes `offset .. offset + len` of a pinned frame
/// (`EFAULT` when they leave it).
fn frame_range(frame: &PinnedFrame, offset: usize, len: usize) -> Result<*mut u8, Errno> {
    match offset.checked_add(len) {
        Some(end) if end <= super::PAGE_SIZE as usize => {
            Ok(crate::memory::phys_to_virt(frame.frame()).wrapping_add(offset))
        }
        _ => Err(Errno::EFAULT),
    }
}

/// Runs `f` with supervisor access to user pages allowed (SMAP).
fn with_user_access(f: impl FnOnce() -> u64) -> Result<(), Errno> {
    let smap = aspace::smap_enabled();
    if smap {
        // SAFETY: `stac` only sets RFLAGS.AC (allowing supervisor access to
        // user pages); it exists because CPUID reported SMAP.
        unsafe { asm!("stac", options(nostack)) };
    }
    let faulted = f();
    if smap {
        // SAFETY: `clac` clears RFLAGS.AC again.
        unsafe { asm!("clac", options(nostack)) };
    }
    if faulted == 0 {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// A user address as a system call received it: an allegation, not yet
/// checked, with no way to reach memory.  `slice`/`ptr` check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserAddr(pub u64);

impl UserAddr {
    /// Whether user space passed NULL.
    pub fn is_null(self) -> bool {
        self.0 == 0
    }

    /// `len` bytes at this address, if they lie in the user half (`EFAULT`
    /// otherwise).
    pub fn slice(self, len: usize) -> Result<UserSlice, Errno> {
        UserSlice::new(self.0, len)
    }

    /// One `T` at this address, if it lies in the user half.
    pub fn ptr<T: Pod>(self) -> Result<UserPtr<T>, Errno> {
        UserPtr::new(self.0)
    }

    /// This address plus `bytes` (wrapping is caught when it is checked).
    pub fn offset(self, bytes: u64) -> UserAddr {
        UserAddr(self.0.wrapping_add(bytes))
    }

    /// The alleged number itself (for arithmetic, alignment checks and
    /// `mmap`-style calls that name addresses without touching them).
    pub fn raw(self) -> u64 {
        self.0
    }

    /// Reads one `T` here: `self.ptr::<T>()?.read()`.
    pub fn read<T: Pod>(self) -> Result<T, Errno> {
        self.ptr::<T>()?.read()
    }

    /// Writes one `T` here: `self.ptr::<T>()?.write(value)`.
    pub fn write<T: Pod>(self, value: &T) -> Result<(), Errno> {
        self.ptr::<T>()?.write(value)
    }

    /// Writes the array `values` here (one copy).
    pub fn write_array<T: Pod>(self, values: &[T]) -> Result<(), Errno> {
        // SAFETY: `Pod` values have no padding, so every byte of the slice
        // is initialised; viewed as bytes for the duration of the copy.
        let bytes = unsafe {
            core::slice::from_raw_parts(values.as_ptr() as *const u8, size_of_val(values))
        };
        self.write_bytes(bytes)
    }

    /// Fills `dst` from the `dst.len()` bytes here.
    pub fn read_bytes(self, dst: &mut [u8]) -> Result<(), Errno> {
        self.slice(dst.len())?.read_into(dst)
    }

    /// Copies `src` here.
    pub fn write_bytes(self, src: &[u8]) -> Result<(), Errno> {
        self.slice(src.len())?.write_from(src)
    }

    /// Zeroes `len` bytes here.
    pub fn zero(self, len: usize) -> Result<(), Errno> {
        self.slice(len)?.zero()
    }

    /// The NUL-terminated string here, at most `max` bytes (NUL excluded),
    /// as raw bytes.  `ENAMETOOLONG` when no NUL comes within `max`.
    pub fn read_cstr_bytes(self, max: usize) -> Result<Vec<u8>, Errno> {
        read_cstr_bytes(self, max)
    }

    /// Like `read_cstr_bytes`, as UTF-8 (`EINVAL` when it is not).
    pub fn read_cstr(self, max: usize) -> Result<String, Errno> {
        String::from_utf8(read_cstr_bytes(self, max)?).map_err(|_| Errno::EINVAL)
    }
}

/// A checked range of user memory: `[addr, addr + len)` lies below
/// `USER_END`.  The only way to the copy routines.  The pages may still be
/// unmapped: a copy then returns `EFAULT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSlice {
    addr: u64,
    len: usize,
}

impl UserSlice {
    /// The one constructor: refuses a range that wraps or reaches the
    /// kernel half.
    pub fn new(addr: u64, len: usize) -> Result<UserSlice, Errno> {
        check_range(addr, len)?;
        Ok(UserSlice { addr, len })
    }

    /// Copies the slice's bytes into `dst` (`dst.len() == self.len()`).
    pub fn read_into(&self, dst: &mut [u8]) -> Result<(), Errno> {
        if dst.len() != self.len {
            return Err(Errno::EFAULT);
        }
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: `dst` is a valid kernel buffer; `addr..addr+len` is in the
        // user half (checked when `self` was made), where a fault is caught
        // by the exception table.
        with_user_access(|| unsafe {
            vm_uaccess_copy(dst.as_mut_ptr(), self.addr as *const u8, dst.len())
        })
    }

    /// Copies `src` into the slice (`src.len() == self.len()`).
    pub fn write_from(&self, src: &[u8]) -> Result<(), Errno> {
        if src.len() != self.len {
            return Err(Errno::EFAULT);
        }
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: as in `read_into`, directions swapped.
        with_user_access(|| unsafe {
            vm_uaccess_copy(self.addr as *mut u8, src.as_ptr(), src.len())
        })
    }

    /// Like `write_from`, without paging in: a destination page that is
    /// not mapped writable now (not yet faulted in, copy-on-write, swapped
    /// by another thread's munmap) gives `EFAULT` and leaves the copy partly
    /// done, instead of running the fault handler.  For callers that hold
    /// file-system locks (the page-cache read path), which a fault on a file
    /// mapping would take again; they retry the rest the ordinary way
    /// (`fault_in_writable`).
    pub fn write_from_nofault(&self, src: &[u8]) -> Result<(), Errno> {
        if src.len() != self.len {
            return Err(Errno::EFAULT);
        }
        if src.is_empty() {
            return Ok(());
        }
        // SAFETY: as in `write_from`; a fault is never resolved, only fixed
        // up (`no_paging`), so the copy takes no lock.
        with_user_access(|| unsafe {
            vm_uaccess_copy_nofault(self.addr as *mut u8, src.as_ptr(), src.len())
        })
    }

    /// Copies the slice's length of bytes from byte `offset` of the
    /// pinned frame `frame` into the slice (one-copy reads of server
    /// files).  `EFAULT` when the range leaves the frame or the user pages
    /// fault.
    pub fn write_from_frame(&self, frame: &PinnedFrame, offset: usize) -> Result<(), Errno> {
        let src = frame_range(frame, offset, self.len)?;
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: `src..src+len` lies in one HHDM-mapped frame that the pin
        // keeps allocated; the user range is checked, faults are caught.
        with_user_access(|| unsafe { vm_uaccess_copy(self.addr as *mut u8, src, self.len) })
    }

    /// Copies the slice into the pinned frame `frame` from byte `offset`
    /// (one-copy writes of server files).  `EFAULT` as `write_from_frame`.
    pub fn read_into_frame(&self, frame: &PinnedFrame, offset: usize) -> Result<(), Errno> {
        let dst = frame_range(frame, offset, self.len)?;
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: as in `write_from_frame`, directions swapped; the frame is
        // the file server's page-cache page that it granted for this write.
        with_user_access(|| unsafe { vm_uaccess_copy(dst, self.addr as *const u8, self.len) })
    }

    /// Zeroes the slice.
    pub fn zero(&self) -> Result<(), Errno> {
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: user-half range (checked); faults are caught.
        with_user_access(|| unsafe { vm_uaccess_zero(self.addr as *mut u8, self.len) })
    }
}

/// Plain data that may be copied to and from user memory byte for byte.
///
/// # Safety
/// Implement only for types with no padding bytes, no pointers or
/// references, and for which every byte pattern is a valid value (integers,
/// arrays of them, `#[repr(C)]` structures of them with padding spelled out,
/// as in the `abi` crate).
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: integers and the `abi` structures (every padding byte a
        // named field, sizes asserted there) are plain data.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
pod!(
    abi::structs::Timespec,
    abi::structs::Timeval,
    abi::structs::Itimerval,
    abi::structs::Itimerspec,
    abi::structs::Stat,
    abi::structs::StatxTimestamp,
    abi::structs::Statx,
    abi::structs::Statfs,
    abi::structs::Iovec,
    abi::structs::SockaddrIn,
    abi::structs::SockaddrUn,
    abi::structs::Msghdr,
    abi::structs::Cmsghdr,
    abi::structs::Sigaction,
    abi::structs::StackT,
    abi::structs::EpollEvent,
    abi::structs::Pollfd,
    abi::structs::Rlimit,
    abi::structs::Rusage,
    abi::structs::Winsize,
    abi::structs::Utsname,
    abi::dev::DevInfo,
);
// SAFETY: an array of plain data is plain data (no padding between elements
// of a `Pod` type, whose size is a multiple of its alignment).
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// A checked user address of one `T`: `[addr, addr + size_of::<T>())` lies
/// in the user half.
pub struct UserPtr<T> {
    addr: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for UserPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for UserPtr<T> {}

impl<T: Pod> UserPtr<T> {
    /// The one constructor: refuses a range that wraps or reaches the
    /// kernel half.  No alignment is required (x86 user pointers need none).
    pub fn new(addr: u64) -> Result<UserPtr<T>, Errno> {
        check_range(addr, size_of::<T>())?;
        Ok(UserPtr {
            addr,
            _t: PhantomData,
        })
    }

    fn bytes(&self) -> UserSlice {
        UserSlice {
            addr: self.addr,
            len: size_of::<T>(),
        }
    }

    /// Reads the `T`.
    pub fn read(&self) -> Result<T, Errno> {
        let mut value = MaybeUninit::<T>::uninit();
        // SAFETY: the bytes of a `MaybeUninit<T>` may be written freely.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(value.as_mut_ptr() as *mut u8, size_of::<T>())
        };
        self.bytes().read_into(bytes)?;
        // SAFETY: every byte was written, and any byte pattern is a valid
        // `T` (`Pod`).
        Ok(unsafe { value.assume_init() })
    }

    /// Writes `value`.
    pub fn write(&self, value: &T) -> Result<(), Errno> {
        // SAFETY: a `Pod` value has no padding, so all its bytes are
        // initialised; viewed as bytes for the duration of the copy.
        let bytes =
            unsafe { core::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>()) };
        self.bytes().write_from(bytes)
    }
}

/// Makes the user page holding `addr` present and writable, as a write
/// fault there would (demand paging, copy-on-write, a file page), for a
/// caller whose `UserSlice::write_from_nofault` stopped there and that
/// holds no lock now.  `EFAULT` where a write would fault for good.
pub fn fault_in_writable(addr: UserAddr) -> Result<(), Errno> {
    let addr = addr.slice(1)?.addr;
    let aspace = super::current().ok_or(Errno::EFAULT)?;
    aspace
        .handle_fault(addr, true, true, false)
        .map_err(|_| Errno::EFAULT)
}

/// First capacity of a string read from user memory: most paths fit, so
/// they are copied once, straight into the buffer the caller keeps (and a
/// delegated call sends as its payload).
const CSTR_FIRST: usize = 128;

/// Reads a NUL-terminated string of at most `max` bytes (NUL excluded) at
/// `addr` as raw bytes.  `ENAMETOOLONG` when no NUL comes within `max`.
///
/// One pass: `vm_uaccess_strncpy` finds the NUL and copies in the same
/// loop, into the returned vector's own memory; a string longer than the
/// capacity doubles it (the vector moves what it holds) and goes on.
fn read_cstr_bytes(addr: UserAddr, max: usize) -> Result<Vec<u8>, Errno> {
    if addr.0 >= USER_END {
        return Err(Errno::EFAULT);
    }
    // At most `max` bytes and the NUL, and never past the user half.
    let limit = max
        .saturating_add(1)
        .min(usize::try_from(USER_END - addr.0).unwrap_or(usize::MAX));
    let mut out: Vec<u8> = Vec::new();
    let mut want = limit.min(CSTR_FIRST);
    loop {
        let done = out.len();
        // `max` is the caller's bound (up to exec's 2 MiB): grow fallibly,
        // so a heap that cannot give it is ENOMEM, not a panic.
        out.try_reserve_exact(want - done)
            .map_err(|_| Errno::ENOMEM)?;
        let n = want - done;
        let src = addr.0 + done as u64;
        let mut got = 0;
        let faulted = with_user_access(|| {
            // SAFETY: the destination is the vector's spare capacity, at
            // least `n` bytes (reserved above); `src .. src + n` lies in
            // the user half (`limit`), where a fault is caught by the
            // exception table.
            got = unsafe { vm_uaccess_strncpy(out.as_mut_ptr().add(done), src as *const u8, n) };
            u64::from(got == u64::MAX)
        });
        faulted?;
        let got = got as usize;
        let nul = got < n;
        // SAFETY: the routine initialised the `got` bytes (or all `n`)
        // after `done`, within the reserved capacity.
        unsafe { out.set_len(done + if nul { got } else { n }) };
        if nul {
            return Ok(out);
        }
        if out.len() > max {
            return Err(Errno::ENAMETOOLONG);
        }
        if want == limit {
            // Stopped by the end of the user half, not by `max`.
            return Err(Errno::EFAULT);
        }
        want = want.saturating_mul(2).min(limit);
    }
}
