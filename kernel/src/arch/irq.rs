//! Interrupt-enable flag of the current CPU.
//!
//! Owns the `cli`/`sti` discipline: `save_disable`/`restore` nest, and
//! `enable_and_halt` is the only way to sleep until an interrupt (`sti; hlt`
//! back to back, so a wakeup cannot slip in between). Must not be used to
//! protect data shared between CPUs (that needs a lock as well).

use x86_64::instructions::interrupts;

/// Disables interrupts; returns whether they were enabled before.
#[inline]
pub fn save_disable() -> bool {
    let was_enabled = interrupts::are_enabled();
    interrupts::disable();
    was_enabled
}

/// Re-enables interrupts if `was_enabled` (from `save_disable`) says so.
#[inline]
pub fn restore(was_enabled: bool) {
    if was_enabled {
        interrupts::enable();
    }
}

/// Enables interrupts.
#[inline]
pub fn enable() {
    interrupts::enable();
}

/// Disables interrupts.
#[inline]
pub fn disable() {
    interrupts::disable();
}

/// `sti; hlt`: enables interrupts and sleeps until the next one arrives.
#[inline]
pub fn enable_and_halt() {
    interrupts::enable_and_hlt();
}
