//! Time: TSC-based `now_ns()` and the APIC timer rate, both calibrated once
//! on the BSP against the legacy PIT (channel 2 read back by latching, no
//! IRQ).
//!
//! Owns the calibration results. Invariants: after `calibrate`, `tsc_hz` and
//! `apic_ticks_per_tick` never change; `now_ns()` counts from calibration and
//! all CPUs agree on it (QEMU's TSC is shared by all vCPUs; on hardware this
//! assumes an invariant, synchronised TSC). Must not: be used for the APIC
//! timer before `calibrate` (the rate would be 0).

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

use super::{apic, TICK_HZ};

/// PIT input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// Length of one calibration window.
const CALIBRATION_MS: u64 = 10;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static APIC_TICKS_PER_TICK: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// PIT channel 2 as a free-running down-counter (mode 0 from 0xFFFF: one
/// pass takes about 55 ms), read by latching. Its input clock is exact, so
/// the count read back measures elapsed time with ~0.8 us resolution.
struct Pit2 {
    saved_gate: u8,
}

impl Pit2 {
    fn start() -> Pit2 {
        // SAFETY: ports 0x42/0x43/0x61 are PIT channel 2 and its gate; the
        // speaker output stays disabled (bit 1 of 0x61 cleared).
        unsafe {
            let mut gate = Port::<u8>::new(0x61);
            let saved_gate = gate.read();
            gate.write(saved_gate & !0x03); // gate low, speaker off
            Port::<u8>::new(0x43).write(0b1011_0000); // ch 2, lo/hi byte, mode 0, binary
            let mut ch2 = Port::<u8>::new(0x42);
            ch2.write(0xFF);
            ch2.write(0xFF);
            gate.write((saved_gate & !0x02) | 0x01); // gate high: count
            Pit2 { saved_gate }
        }
    }

    /// Current count (counts down).
    fn read(&self) -> u16 {
        // SAFETY: latch command for channel 2, then two reads of its data
        // port; no effect beyond the PIT.
        unsafe {
            Port::<u8>::new(0x43).write(0b1000_0000);
            let mut ch2 = Port::<u8>::new(0x42);
            let lo = ch2.read() as u16;
            let hi = ch2.read() as u16;
            (hi << 8) | lo
        }
    }
}

impl Drop for Pit2 {
    fn drop(&mut self) {
        // SAFETY: restores the gate/speaker bits found at `start`.
        unsafe { Port::<u8>::new(0x61).write(self.saved_gate & !0x02) };
    }
}

/// One simultaneous reading of the three clocks.
#[derive(Clone, Copy)]
struct Sample {
    pit: u16,
    tsc: u64,
    apic: u32,
}

/// Reads PIT, APIC timer and TSC as close together as possible: of a few
/// tries, keeps the one where the bracketing TSC reads were nearest (under
/// TCG the vCPU may be descheduled between two instructions; that try is
/// discarded instead of skewing the result).
fn sample(pit: &Pit2) -> Sample {
    let mut best: Option<(u64, Sample)> = None;
    for _ in 0..5 {
        let before = rdtsc();
        let p = pit.read();
        let a = apic::timer_current();
        let after = rdtsc();
        let spread = after.wrapping_sub(before);
        if best.is_none_or(|(s, _)| spread < s) {
            best = Some((
                spread,
                Sample {
                    pit: p,
                    tsc: before + spread / 2,
                    apic: a,
                },
            ));
        }
    }
    best.expect("at least one try").1
}

/// One calibration window of about `CALIBRATION_MS`: returns (TSC Hz, APIC
/// timer Hz), or None if the PIT does not count.
fn window(pit: &Pit2) -> Option<(u64, u64)> {
    let target = PIT_HZ * CALIBRATION_MS / 1000;
    let start = sample(pit);
    let mut polls: u64 = 0;
    loop {
        let now = pit.read();
        if start.pit.wrapping_sub(now) as u64 >= target {
            break;
        }
        polls += 1;
        if polls > 10_000_000 {
            return None;
        }
    }
    let end = sample(pit);
    let pit_ticks = start.pit.wrapping_sub(end.pit) as u64;
    let tsc_ticks = end.tsc.wrapping_sub(start.tsc);
    let apic_ticks = start.apic.wrapping_sub(end.apic) as u64;
    if pit_ticks == 0 {
        return None;
    }
    Some((
        tsc_ticks * PIT_HZ / pit_ticks,
        apic_ticks * PIT_HZ / pit_ticks,
    ))
}

/// Median of three.
fn median3(mut v: [u64; 3]) -> u64 {
    v.sort_unstable();
    v[1]
}

/// Measures the TSC and the local APIC timer rate against the PIT (median
/// of three windows). BSP only, with the BSP's local APIC initialised and
/// interrupts off. Returns `(tsc_hz, apic timer counts per scheduler tick)`.
pub fn calibrate() -> Result<(u64, u64), &'static str> {
    apic::start_timer(u32::MAX, false);
    let pit = Pit2::start();
    let mut tsc = [0u64; 3];
    let mut apic_hz = [0u64; 3];
    let mut ok = true;
    for i in 0..3 {
        match window(&pit) {
            Some((t, a)) => {
                tsc[i] = t;
                apic_hz[i] = a;
            }
            None => ok = false,
        }
    }
    drop(pit);
    apic::stop_timer();
    if !ok {
        return Err("PIT channel 2 does not count");
    }
    let (tsc_hz, apic_hz) = (median3(tsc), median3(apic_hz));
    if tsc_hz == 0 || apic_hz == 0 {
        return Err("TSC or APIC timer did not advance during calibration");
    }
    let per_tick = (apic_hz / TICK_HZ).max(1);
    if per_tick > u32::MAX as u64 {
        return Err("APIC timer too fast for a 32-bit period at divide 16");
    }
    TSC_BASE.store(rdtsc(), Ordering::Relaxed);
    TSC_HZ.store(tsc_hz, Ordering::Release);
    APIC_TICKS_PER_TICK.store(per_tick, Ordering::Release);
    Ok((tsc_hz, per_tick))
}

/// Starts this CPU's periodic scheduler tick (`TICK_HZ`).
pub fn start_tick() {
    let per_tick = APIC_TICKS_PER_TICK.load(Ordering::Acquire);
    assert!(per_tick != 0, "start_tick before time::calibrate");
    apic::start_timer(per_tick as u32, true);
}

/// Nanoseconds since calibration; monotonic, and all CPUs agree.
/// 0 before calibration.
pub fn now_ns() -> u64 {
    let hz = TSC_HZ.load(Ordering::Acquire);
    if hz == 0 {
        return 0;
    }
    let delta = rdtsc().saturating_sub(TSC_BASE.load(Ordering::Relaxed));
    ((delta as u128 * 1_000_000_000) / hz as u128) as u64
}

/// The TSC rate measured at boot (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Acquire)
}
