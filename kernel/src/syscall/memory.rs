//! Memory system calls: mmap, munmap, mprotect, mremap, madvise, msync,
//! brk (rows of `table.rs`).
//!
//! Owns: decoding the raw register arguments (Linux x86_64 ABI: `int`
//! arguments use the low 32 bits) into calls on the caller's
//! `AddressSpace`.  The semantics and errno values live in
//! `memory::vm::aspace`; this file only translates.  The dispatcher passes the
//! calling process's address space explicitly.
//!
//! Must not: touch page tables or VMAs itself, or trust any argument.

use crate::memory::vm::{self, AddressSpace};
use abi::SysResult;

/// mmap(addr, length, prot, flags, fd, offset) — syscall 9.
pub fn sys_mmap(
    aspace: &AddressSpace,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: u64,
    offset: u64,
) -> SysResult {
    let (prot, flags, fd) = (prot as u32, flags as u32, fd as i32);
    let addr = if flags & vm::MAP_ANONYMOUS != 0 {
        aspace.mmap(addr, len, prot, flags, None)?
    } else {
        // Validate what needs no file first, as Linux does (EINVAL before EBADF).
        if len == 0 || offset % vm::PAGE_SIZE != 0 {
            return Err(abi::Errno::EINVAL);
        }
        let source = vm::file_source(fd)?;
        aspace.mmap(addr, len, prot, flags, Some((source, offset)))?
    };
    Ok(addr as usize)
}

/// munmap(addr, length) — syscall 11.
pub fn sys_munmap(aspace: &AddressSpace, addr: u64, len: u64) -> SysResult {
    aspace.unmap(addr, len).map(|()| 0)
}

/// mprotect(addr, length, prot) — syscall 10.
pub fn sys_mprotect(aspace: &AddressSpace, addr: u64, len: u64, prot: u64) -> SysResult {
    aspace.protect(addr, len, prot as u32).map(|()| 0)
}

/// mremap(old_address, old_size, new_size, flags, new_address) — syscall 25.
pub fn sys_mremap(
    aspace: &AddressSpace,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    new_addr: u64,
) -> SysResult {
    aspace
        .remap(old, old_len, new_len, flags as u32, new_addr)
        .map(|a| a as usize)
}

/// madvise(addr, length, advice) — syscall 28.
pub fn sys_madvise(aspace: &AddressSpace, addr: u64, len: u64, advice: u64) -> SysResult {
    aspace.advise(addr, len, advice as u32).map(|()| 0)
}

/// msync(addr, length, flags) — syscall 26.
pub fn sys_msync(aspace: &AddressSpace, addr: u64, len: u64, flags: u64) -> SysResult {
    aspace.sync(addr, len, flags as u32).map(|()| 0)
}

/// brk(addr) — syscall 12: returns the break in force (never an error).
pub fn sys_brk(aspace: &AddressSpace, addr: u64) -> SysResult {
    Ok(aspace.brk(addr) as usize)
}
