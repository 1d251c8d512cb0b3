//! Information system calls: uname, sysinfo, getcpu, getrandom.
//!
//! Owns: what the kernel says about itself (`uname`: a Linux-looking
//! release so C libraries that check the version are content), the
//! random source (`RDRAND` when the CPU has it, else a per-CPU xorshift
//! generator seeded from the TSC), and `getcpu` (per-CPU id, no lock).
//!
//! Must not: block in `getrandom` (the generator never runs dry).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::uaccess::{copy_to_user, write_user};
use crate::syscall::errno::{Errno, SysResult};

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

/// Per-CPU generator state for CPUs without RDRAND.
static STATE: percpu::PerCpu<AtomicU64> = percpu::per_cpu!(AtomicU64::new(0));

fn has_rdrand() -> bool {
    let r = core::arch::x86_64::__cpuid(1);
    r.ecx & (1 << 30) != 0
}

fn rdrand() -> Option<u64> {
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: RDRAND only writes its output register and CF; callers
        // checked CPUID first.
        unsafe {
            core::arch::asm!("rdrand {0}", "setc {1}", out(reg) value, out(reg_byte) ok, options(nomem, nostack));
        }
        if ok != 0 {
            return Some(value);
        }
    }
    None
}

/// The next 64 random bits of this CPU's fallback generator (xorshift64*
/// over a TSC-seeded state; good enough for AT_RANDOM and hash seeds, not
/// for cryptography).
fn fallback_next() -> u64 {
    let saved = crate::arch::irq::save_disable();
    let slot = STATE.remote(crate::arch::cpu::id());
    let mut x = slot.load(Ordering::Relaxed);
    if x == 0 {
        x = crate::arch::time::rdtsc()
            ^ 0x9e37_79b9_7f4a_7c15
            ^ ((crate::arch::cpu::id() as u64) << 56)
            | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    slot.store(x, Ordering::Relaxed);
    crate::arch::irq::restore(saved);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Fills `buf` with random bytes.
pub fn fill_random(buf: &mut [u8]) {
    let hw = has_rdrand();
    for chunk in buf.chunks_mut(8) {
        let v = if hw {
            rdrand().unwrap_or_else(fallback_next)
        } else {
            fallback_next()
        };
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
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
