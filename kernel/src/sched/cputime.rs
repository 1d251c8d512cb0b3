//! Where each CPU's time goes, in timer ticks (Linux's `USER_HZ` is 100,
//! like `arch::TICK_HZ`): user, system and idle, per CPU, as `/proc/stat`
//! reports them; and a load average sampled from them (`/proc/loadavg`).
//!
//! Owns the tick counters and the load average.  Invariants: each tick is
//! counted once, on the CPU it interrupted, in exactly one of the three
//! classes.  Per-core rule: the tick path writes only its own CPU's slots;
//! the load average is written by CPU 0 alone, once every 5 s.
//!
//! Must not: take a lock or allocate (it runs in the timer interrupt).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use percpu::PerCpuCounter;

use crate::arch::TICK_HZ;

pub static USER: PerCpuCounter = PerCpuCounter::new();
pub static SYSTEM: PerCpuCounter = PerCpuCounter::new();
pub static IDLE: PerCpuCounter = PerCpuCounter::new();

/// Per CPU: whether its last tick found it busy (read by CPU 0's sampler;
/// each CPU writes only its own flag).
static BUSY: percpu::PerCpu<AtomicBool> = percpu::per_cpu!(AtomicBool::new(false));

/// Load averages over 1, 5 and 15 minutes, fixed point with 11 bits of
/// fraction (Linux's `FSHIFT`).
static LOAD: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
const FSHIFT: u32 = 11;
const FIXED_1: u64 = 1 << FSHIFT;
/// Linux's decay factors for a 5 s sample: 2048 / e^(5/60), e^(5/300),
/// e^(5/900).
const EXP: [u64; 3] = [1884, 2014, 2037];
const SAMPLE_TICKS: u64 = 5 * TICK_HZ;
static TICKS0: AtomicU64 = AtomicU64::new(0);

/// Counts one timer tick on this CPU: `user` when it interrupted ring 3,
/// else idle when the idle thread ran, else system.
pub fn account_tick(cpu: usize, user: bool, idle: bool) {
    if user {
        USER.inc();
    } else if idle {
        IDLE.inc();
    } else {
        SYSTEM.inc();
    }
    if let Some(task) = crate::proc::current_task().filter(|_| !idle) {
        let which = if user { &task.utime } else { &task.stime };
        which.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(b) = BUSY.try_remote(cpu) {
        b.store(!idle, Ordering::Relaxed);
    }
    if cpu == 0 && TICKS0.fetch_add(1, Ordering::Relaxed) % SAMPLE_TICKS == SAMPLE_TICKS - 1 {
        let busy = BUSY.iter().filter(|b| b.load(Ordering::Relaxed)).count() as u64;
        for (load, exp) in LOAD.iter().zip(EXP) {
            let old = load.load(Ordering::Relaxed);
            let new = (old * exp + busy * FIXED_1 * (FIXED_1 - exp)) / FIXED_1;
            load.store(new, Ordering::Relaxed);
        }
    }
}

/// (user, system, idle) ticks of `cpu`.
pub fn cpu_ticks(cpu: usize) -> (u64, u64, u64) {
    let get = |c: &PerCpuCounter| c.local_value(cpu).max(0) as u64;
    (get(&USER), get(&SYSTEM), get(&IDLE))
}

/// The load averages as Linux prints them: hundredths.
pub fn load_hundredths() -> [u64; 3] {
    core::array::from_fn(|i| (LOAD[i].load(Ordering::Relaxed) * 100 + FIXED_1 / 2) / FIXED_1)
}

/// CPUs whose last tick found them running something other than idle.
pub fn busy_cpus() -> usize {
    BUSY.iter().filter(|b| b.load(Ordering::Relaxed)).count()
}
