//! Information system calls: uname, sysinfo, getcpu, getrandom.
//!
//! Owns: what the kernel says about itself (`uname`: a Linux-looking
//! release so C libraries that check the version are content), `getrandom`
//! (over `crate::random`), and `getcpu` (per-CPU id, no lock).
//!
//! Must not: block in `getrandom` (the generator never runs dry).

use crate::mm::uaccess::{copy_to_user, write_user};
use crate::random::fill_random;
use abi::{Errno, SysResult};

/// `struct utsname` field length.
const UTS_LEN: usize = 65;

fn put_field(buf: &mut [u8], index: usize, value: &str) {
    let field = &mut buf[index * UTS_LEN..(index + 1) * UTS_LEN];
    let n = value.len().min(UTS_LEN - 1);
    field[..n].copy_from_slice(&value.as_bytes()[..n]);
}

/// `uname(buf)`.
pub fn sys_uname(buf: u64) -> SysResult {
    let mut u = [0u8; UTS_LEN * 6];
    put_field(&mut u, 0, "Linux");
    put_field(&mut u, 1, "percpu");
    put_field(&mut u, 2, "6.1.0-percpu");
    put_field(&mut u, 3, "#1 SMP percpu-kernel");
    put_field(&mut u, 4, "x86_64");
    put_field(&mut u, 5, "(none)");
    copy_to_user(buf, &u)?;
    Ok(0)
}

/// `getcpu(cpu, node, cache)`.
pub fn sys_getcpu(cpu: u64, node: u64) -> SysResult {
    let id = crate::arch::cpu::id() as u32;
    if cpu != 0 {
        write_user(cpu, &id)?;
    }
    if node != 0 {
        write_user(node, &0u32)?;
    }
    Ok(0)
}

/// `sysinfo(info)`.
pub fn sys_sysinfo(info: u64) -> SysResult {
    // struct sysinfo (x86_64): uptime, loads[3], totalram, freeram,
    // sharedram, bufferram, totalswap, freeswap (all long), procs (u16),
    // pad, totalhigh, freehigh, mem_unit (u32), padding: 112 bytes.
    let mut b = [0u8; 112];
    let put = |b: &mut [u8], off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, crate::arch::time::now_ns() / 1_000_000_000);
    put(&mut b, 32, (crate::mm::total_frames() as u64) * 4096);
    put(&mut b, 40, (crate::mm::free_frames() as u64) * 4096);
    b[80..82]
        .copy_from_slice(&(crate::proc::process::live_processes().min(65535) as u16).to_le_bytes());
    b[104..108].copy_from_slice(&1u32.to_le_bytes());
    copy_to_user(info, &b)?;
    Ok(0)
}

/// `getrandom(buf, len, flags)`.
pub fn sys_getrandom(buf: u64, len: u64, flags: u32) -> SysResult {
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
        copy_to_user(buf + done as u64, &chunk[..n])?;
        done += n;
    }
    Ok(len)
}
