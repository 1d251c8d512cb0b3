//! The platform hook: how this crate learns the current CPU id and pins the
//! current task to its CPU.
//!
//! Owns the single, set-once reference to the installed `Platform`, and the
//! one CPU count of the machine (`cpu_count`, fixed by the kernel's SMP
//! bring-up with `set_cpu_count`).  Until `set_platform` is called, a
//! built-in boot platform answers: CPU 0, pinning does nothing (early boot
//! runs on one CPU with interrupts off); the count is 1 until set.
//!
//! Must not: allow the platform to change once set (guards and per-CPU slots
//! rely on ids staying meaningful), or block.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::MAX_CPUS;

/// What the per-CPU structures need from the machine.
///
/// The kernel implements it with the GS per-CPU area (`cpu_id`) and "save the
/// interrupt flag, then `cli`" / "restore it" (`pin` / `unpin`), so neither
/// preemption nor an interrupt handler runs on this CPU while pinned.
pub trait Platform: Sync {
    /// Dense id of the CPU running the caller, `0..cpu_count()`.
    fn cpu_id(&self) -> usize;
    /// Pins the caller to its current CPU; returns what `unpin` must restore.
    fn pin(&self) -> PinToken;
    /// Undoes the matching `pin`.  Pins nest: tokens are given back in
    /// reverse order of the `pin` calls that returned them.
    fn unpin(&self, token: PinToken);
}

/// Opaque state saved by `Platform::pin` and given back to `Platform::unpin`
/// (the kernel stores whether interrupts were enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinToken(usize);

impl PinToken {
    /// Wraps platform-defined saved state.
    pub const fn new(raw: usize) -> Self {
        PinToken(raw)
    }
    /// The platform-defined saved state.
    pub const fn raw(self) -> usize {
        self.0
    }
}

/// The platform used until one is installed: a single CPU, id 0.
struct BootPlatform;

impl Platform for BootPlatform {
    fn cpu_id(&self) -> usize {
        0
    }
    fn pin(&self) -> PinToken {
        PinToken(0)
    }
    fn unpin(&self, _token: PinToken) {}
}

static BOOT: BootPlatform = BootPlatform;

const UNSET: u8 = 0;
const SETTING: u8 = 1;
const SET: u8 = 2;

/// Set-once cell holding the installed platform.  Written exactly once, by
/// the caller that moved `STATE` from `UNSET` to `SETTING`; read only after
/// `STATE` is seen as `SET` with acquire ordering.
struct PlatformSlot(UnsafeCell<Option<&'static dyn Platform>>);

// SAFETY: the slot is written once before `STATE` becomes `SET` (release) and
// only read after observing `SET` (acquire), so no read races the write.
unsafe impl Sync for PlatformSlot {}

static STATE: AtomicU8 = AtomicU8::new(UNSET);
static SLOT: PlatformSlot = PlatformSlot(UnsafeCell::new(None));

/// Installs the platform.  Only the first call takes effect; it returns
/// `true`, later calls leave the installed platform in place and return
/// `false`.
pub fn set_platform(p: &'static dyn Platform) -> bool {
    if STATE
        .compare_exchange(UNSET, SETTING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    // SAFETY: we won the UNSET -> SETTING transition, so we are the only
    // writer, and no reader looks at the slot before STATE is SET.
    unsafe { *SLOT.0.get() = Some(p) };
    STATE.store(SET, Ordering::Release);
    true
}

/// The installed platform, or the boot platform (CPU 0 of 1) before that.
pub(crate) fn platform() -> &'static dyn Platform {
    if STATE.load(Ordering::Acquire) == SET {
        // SAFETY: STATE is SET, so the slot was written and is never written
        // again.
        if let Some(p) = unsafe { *SLOT.0.get() } {
            return p;
        }
    }
    &BOOT
}

/// Id of the CPU running the caller.  Without a `CpuGuard` the answer may be
/// stale as soon as it is returned (the task may migrate); use it for
/// statistics and hints only.
pub fn cpu_id() -> usize {
    platform().cpu_id()
}

/// The machine's CPU count: ids `0..cpu_count()` are valid.  1 until
/// `set_cpu_count`; the one place every module reads it from.
static CPU_COUNT: AtomicUsize = AtomicUsize::new(1);

/// Number of CPUs (1 before `set_cpu_count`).  A plain atomic load, cheap
/// enough for hot paths (work stealing walks `0..cpu_count()`).
#[inline]
pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Acquire)
}

/// Fixes the CPU count: the kernel's SMP bring-up, once it knows how many
/// CPUs it starts (before any of them uses its id).  Values are clamped to
/// `1..=MAX_CPUS`.
pub fn set_cpu_count(n: usize) {
    CPU_COUNT.store(n.clamp(1, MAX_CPUS), Ordering::Release);
}

/// Raises the count to at least `n` (the host platform, as threads bind to
/// higher ids).
#[cfg(any(test, feature = "host"))]
pub(crate) fn raise_cpu_count(n: usize) {
    CPU_COUNT.fetch_max(n.clamp(1, MAX_CPUS), Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_platform_is_cpu_zero_of_one() {
        assert_eq!(BOOT.cpu_id(), 0);
        let t = BOOT.pin();
        BOOT.unpin(t);
    }

    #[test]
    fn pin_token_round_trips() {
        assert_eq!(PinToken::new(0x200).raw(), 0x200);
    }
}
