//! Information system calls: uname, sysinfo, getcpu, getrandom.
//!
//! Owns: what the kernel says about itself (`uname`: a Linux-looking
//! release so C libraries that check the version are content), `getrandom`
//! (over `crate::random`), and `getcpu` (per-CPU id, no lock).
//!
//! Must not: block in `getrandom` (the generator never runs dry).

use crate::memory::uaccess::UserAddr;
use crate::random::fill_random;
use abi::structs::{Utsname, UTSNAME_LEN};
use abi::{Errno, SysResult};

/// `value` as a NUL-terminated `utsname` field (cut to fit).
fn field(value: &str) -> [u8; UTSNAME_LEN] {
    let mut f = [0u8; UTSNAME_LEN];
    let n = value.len().min(UTSNAME_LEN - 1);
    f[..n].copy_from_slice(&value.as_bytes()[..n]);
    f
}

/// `uname(buf)`.
pub fn sys_uname(buf: UserAddr) -> SysResult {
    let u = Utsname {
        sysname: field("Linux"),
        nodename: field("percpu"),
        release: field("6.1.0-percpu"),
        version: field("#1 SMP percpu-kernel"),
        machine: field("x86_64"),
        domainname: field("(none)"),
    };
    buf.ptr()?.write(&u)?;
    Ok(0)
}

/// `getcpu(cpu, node, cache)`.
pub fn sys_getcpu(cpu: UserAddr, node: UserAddr) -> SysResult {
    let id = crate::arch::cpu::id() as u32;
    if !cpu.is_null() {
        cpu.ptr()?.write(&id)?;
    }
    if !node.is_null() {
        node.ptr()?.write(&0u32)?;
    }
    Ok(0)
}

/// `sysinfo(info)`.
pub fn sys_sysinfo(info: UserAddr) -> SysResult {
    // struct sysinfo (x86_64): uptime, loads[3], totalram, freeram,
    // sharedram, bufferram, totalswap, freeswap (all long), procs (u16),
    // pad, totalhigh, freehigh, mem_unit (u32), padding: 112 bytes.
    let mut b = [0u8; 112];
    let put = |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, crate::arch::time::now_ns() / 1_000_000_000);
    put(&mut b, 32, (crate::memory::total_frames() as u64) * 4096);
    put(&mut b, 40, (crate::memory::free_frames() as u64) * 4096);
    b[80..82]
        .copy_from_slice(&(crate::proc::process::live_processes().min(65535) as u16).to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    info.slice(b.len())?.write_from(&b)?;
    Ok(0)
}

/// `getrandom(buf, len, flags)`.
pub fn sys_getrandom(buf: UserAddr, len: u64, flags: u32) -> SysResult {
    const KNOWN: u32 = 0x1 | 0x2 | 0x4; // GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.min(1 << 25) as usize;
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(chunk.len());
        fill_random(&mut chunk[..n]);
        buf.offset(done as u64).slice(n)?.write_from(&chunk[..n])?;
        done += n;
    }
    Ok(len)
}
