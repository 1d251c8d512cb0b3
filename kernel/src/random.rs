//! The kernel's random source: `RDRAND` when the CPU has it, else a per-CPU
//! xorshift generator seeded from the TSC.
//!
//! Owns: the per-CPU fallback generator state.  Invariants: a CPU only
//! touches its own slot, with interrupts off.  Must not: block (the
//! generator never runs dry), or be used for cryptography.

use core::sync::atomic::{AtomicU64, Ordering};

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
