//! Test support (feature `test-support`, and this crate's own unit tests):
//! `Quiet`, a `Platform` that does nothing, for tests that drive a `Stack`
//! single-threaded and deterministically.
//!
//! Invariants: the clock never moves, every caller is CPU 0, nothing is
//! ever woken or sent on a NIC, and the random bits are one constant, so
//! two stacks on `Quiet` given the same calls behave the same.
//!
//! Must not: be used outside tests (nothing waits or transmits).

use crate::Platform;

/// A platform that does nothing: no clock movement, no waiters, one CPU,
/// no NIC, constant "random" bits.
pub struct Quiet;

impl Platform for Quiet {
    type Waiters = ();
    fn now_ms(&self) -> u64 {
        0
    }
    fn current_cpu(&self) -> usize {
        0
    }
    fn notify(&self, _: &()) {}
    fn transmit_frame(&self, _: &[u8]) {}
    fn random_u64(&self) -> u64 {
        7
    }
}
