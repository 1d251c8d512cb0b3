//! The decision of server-thread migration (`ipc::migrate`), pure so
//! that the host tests compile this file alone (tests/kernel_cmdline.rs).
//!
//! Owns: the thresholds and `choose`.  Must not: touch kernel state.

/// Least waiting (summed over CPUs) in an interval that moves a thread.
pub const MIN_WAIT_NS: u64 = 200_000;
/// The busiest CPU must beat the current one by this (percent).
pub const HYSTERESIS_PCT: u64 = 150;

/// Where a thread with affinity `mask` is pinned (one bit), if it is.
pub fn pinned_cpu(mask: u64) -> Option<usize> {
    (mask.count_ones() == 1).then_some(mask.trailing_zeros() as usize)
}

/// The CPU to move to, given the nanoseconds callers on each CPU waited
/// this interval and the CPU the thread is pinned to (None: not pinned);
/// None: stay.  The busiest CPU wins when the total is at least
/// `MIN_WAIT_NS` and it beats the current CPU by `HYSTERESIS_PCT`.
pub fn choose(waited: &[u64], current: Option<usize>) -> Option<usize> {
    let total: u64 = waited.iter().sum();
    if total < MIN_WAIT_NS {
        return None;
    }
    let (best, &most) = waited.iter().enumerate().max_by_key(|(_, &w)| w)?;
    match current {
        Some(c) if c == best => None,
        Some(c) => {
            let here = waited.get(c).copied().unwrap_or(0);
            (most.saturating_mul(100) > here.saturating_mul(HYSTERESIS_PCT)).then_some(best)
        }
        None => Some(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        // Idle: stay.
        assert_eq!(choose(&[0, 100], Some(0)), None);
        // All the waiting on CPU 1: go there (pinned or not).
        assert_eq!(choose(&[0, 5_000_000], Some(0)), Some(1));
        assert_eq!(choose(&[0, 5_000_000], None), Some(1));
        // Already there.
        assert_eq!(choose(&[0, 5_000_000], Some(1)), None);
        // Close loads: stay (hysteresis); a clear winner: move.
        assert_eq!(choose(&[4_000_000, 5_000_000], Some(0)), None);
        assert_eq!(choose(&[1_000_000, 5_000_000], Some(0)), Some(1));
        // The load moved back.
        assert_eq!(choose(&[3_000_000, 0], Some(1)), Some(0));
        assert_eq!(pinned_cpu(0b100), Some(2));
        assert_eq!(pinned_cpu(0b110), None);
        assert_eq!(pinned_cpu(u64::MAX), None);
    }
}
