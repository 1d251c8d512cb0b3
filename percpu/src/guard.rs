//! `CpuGuard`: proof that the holder is pinned to one CPU.
//!
//! Owns nothing but the pin: creating a guard pins the task through the
//! platform and records the CPU id; dropping it unpins.  Guards nest (each
//! one saves and restores its own state), and are not `Send`: a pin belongs
//! to the task and CPU that took it.
//!
//! Must not: be moved to another thread, or outlive the code that needs the
//! pin (interrupts are off in the kernel while a guard lives).

use core::marker::PhantomData;

use crate::platform::{platform, PinToken, Platform};
use crate::MAX_CPUS;

/// Pins the current task to its CPU while alive.
pub struct CpuGuard {
    /// The platform that pinned us: unpinning must go to the same one, even
    /// if a platform was installed in between (early boot).
    platform: &'static dyn Platform,
    token: PinToken,
    cpu: usize,
    /// Not `Send`/`Sync`: the pin is a property of this CPU and task.
    _not_send: PhantomData<*mut ()>,
}

impl CpuGuard {
    /// Pins the caller and records its CPU id.
    ///
    /// Panics if the platform reports an id `>= MAX_CPUS` (a platform bug:
    /// the kernel refuses to start more CPUs than that).
    pub fn new() -> Self {
        let platform = platform();
        let token = platform.pin();
        let cpu = platform.cpu_id();
        if cpu >= MAX_CPUS {
            platform.unpin(token);
            panic!("percpu: platform reported cpu id {cpu}, but MAX_CPUS is {MAX_CPUS}");
        }
        CpuGuard {
            platform,
            token,
            cpu,
            _not_send: PhantomData,
        }
    }

    /// The CPU the holder is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl Default for CpuGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for CpuGuard {
    fn drop(&mut self) {
        self.platform.unpin(self.token);
    }
}
