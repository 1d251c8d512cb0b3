//! Serial console and the `log` backend: every line is `[cpuN] LEVEL message`.
//!
//! Owns the console lock that keeps lines whole across CPUs. Invariants: the
//! lock is held with interrupts off (an interrupt handler that logs cannot
//! deadlock against its own CPU), and a waiter gives up waiting after a
//! bounded time and writes anyway ("busts" the lock), so a CPU that died
//! holding it, or a panic on the holder's CPU, can never silence the panic
//! report. Must not: allocate, or block without bound.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use log::{Level, LevelFilter, Metadata, Record};

use crate::arch::{cpu, irq, serial, time};

/// Owner of the console: 0 = free, else cpu id + 1.
static OWNER: AtomicUsize = AtomicUsize::new(0);
/// How long a waiter waits for the console lock before taking it over.
const BUST_AFTER_NS: u64 = 200_000_000;
/// The same bound in spins, for early boot before the TSC is calibrated.
const BUST_AFTER_SPINS: u64 = 20_000_000;

/// Proof of holding (or having busted) the console.
struct Console {
    /// Whether we took the lock and must release it.
    owned: bool,
    irq_was_enabled: bool,
}

impl Console {
    fn lock() -> Console {
        let irq_was_enabled = irq::save_disable();
        let me = cpu::id() + 1;
        if OWNER.load(Ordering::Relaxed) == me {
            // Re-entered on this CPU (a fault or panic while printing):
            // write through on a fresh line (the outer one may be half
            // written), and leave the outer holder's release alone.
            serial::write_str("\n");
            return Console {
                owned: false,
                irq_was_enabled,
            };
        }
        let start_ns = time::now_ns();
        let mut spins: u64 = 0;
        loop {
            if OWNER
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Console {
                    owned: true,
                    irq_was_enabled,
                };
            }
            spins += 1;
            // `now_ns` is 0 until calibrated; then the time bound applies.
            let timed_out = if start_ns == 0 {
                spins >= BUST_AFTER_SPINS
            } else {
                spins.is_multiple_of(1024)
                    && time::now_ns().saturating_sub(start_ns) >= BUST_AFTER_NS
            };
            if timed_out {
                // The holder is stuck or dead (e.g. stopped by a panic in
                // mid-line): take the console over, on a fresh line.
                OWNER.store(me, Ordering::Release);
                serial::write_str("\n");
                return Console {
                    owned: true,
                    irq_was_enabled,
                };
            }
            core::hint::spin_loop();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        serial::write_str(s);
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.owned {
            let me = cpu::id() + 1;
            // Release only if nobody busted the lock from under us.
            let _ = OWNER.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
        }
        irq::restore(self.irq_was_enabled);
    }
}

/// Writes one `[cpuN] LEVEL message` line, whatever the level filter says.
/// For lines the host must always see (`kernel exit`, panics).
pub fn print_always(level: Level, args: fmt::Arguments<'_>) {
    let mut console = Console::lock();
    let _ = writeln!(console, "[cpu{}] {} {}", cpu::id(), level, args);
}

/// Prints a line the host reads (`cpus online: N`, `selfcheck: pass`, ...)
/// as `[cpuN] INFO ...`, even when `log=` filters INFO out.
pub fn report(args: fmt::Arguments<'_>) {
    print_always(Level::Info, args);
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            print_always(record.level(), *record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: SerialLogger = SerialLogger;

/// Sets up COM1 and installs the logger at `level`. Once, on the BSP, after
/// its per-CPU area exists (lines carry the CPU id).
pub fn init(level: LevelFilter) {
    serial::init();
    // A second call would fail harmlessly; the first logger stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the level filter (after the command line was read).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}
