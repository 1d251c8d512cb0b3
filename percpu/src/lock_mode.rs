//! The ablation switch `locks=`: per-CPU structures (the design) or one
//! global lock each (the baseline), in one type for every crate.
//!
//! Owns `LockMode`, its spelling on the kernel command line (`locks=percpu`,
//! `locks=global`) and the one boot-time value the kernel reads through
//! [`lock_mode`].  The host harness builds the command-line word with
//! [`LockMode::cmdline_word`], the kernel parses it with
//! [`LockMode::from_name`], so both sides agree by construction.
//!
//! Invariants: the value is set once at boot, before any structure that
//! depends on it is built (`set_lock_mode` refuses a second, different
//! value); until then it reads `PerCpu`.  Library crates (`mm`, `fs`, `net`)
//! take a `LockMode` in their configuration instead of reading the global,
//! so host tests can build both kinds side by side.
//!
//! Must not: change after boot, allocate, or block.

use core::fmt;
use core::str::FromStr;
use core::sync::atomic::{AtomicU8, Ordering};

/// Which locking every per-CPU structure uses (the ablation switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum LockMode {
    /// Per-CPU caches and partitioned locks (the design under study).
    #[default]
    PerCpu = 0,
    /// One global lock / cache / instance per structure (the baseline).
    Global = 1,
}

impl LockMode {
    /// The command-line key (`locks=...`).
    pub const KEY: &'static str = "locks";
    /// Every mode, design first.
    pub const ALL: [LockMode; 2] = [LockMode::PerCpu, LockMode::Global];

    /// The value's spelling: `percpu` or `global`.
    pub const fn name(self) -> &'static str {
        match self {
            LockMode::PerCpu => "percpu",
            LockMode::Global => "global",
        }
    }

    /// Parses `percpu` or `global` (exact spelling, as the kernel requires).
    pub fn from_name(name: &str) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The kernel command-line word that selects this mode, or `None` for
    /// the default (`PerCpu` adds nothing, so command lines stay as short
    /// as they always were): `Some("locks=global")`.
    pub const fn cmdline_word(self) -> Option<&'static str> {
        match self {
            LockMode::PerCpu => None,
            LockMode::Global => Some("locks=global"),
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `locks=` value that is neither `percpu` nor `global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLockMode;

impl fmt::Display for BadLockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected percpu or global")
    }
}

impl FromStr for LockMode {
    type Err = BadLockMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LockMode::from_name(s).ok_or(BadLockMode)
    }
}

/// Not set yet: reads as `PerCpu`, any first value is accepted.
const UNSET: u8 = u8::MAX;

/// The boot-time mode (`LockMode as u8`), or `UNSET`.
static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// A second `set_lock_mode` asked for a different mode than the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockModeAlreadySet(pub LockMode);

/// Records the boot-time mode (the kernel's `main`, right after parsing the
/// command line).  Setting the same value again is accepted; a different
/// value is refused and the first one stays.
pub fn set_lock_mode(mode: LockMode) -> Result<(), LockModeAlreadySet> {
    match MODE.compare_exchange(UNSET, mode as u8, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(old) if old == mode as u8 => Ok(()),
        Err(_) => Err(LockModeAlreadySet(lock_mode())),
    }
}

/// The mode chosen at boot (`PerCpu` until `set_lock_mode` ran).  The one
/// accessor every kernel module reads.
#[inline]
pub fn lock_mode() -> LockMode {
    if MODE.load(Ordering::Acquire) == LockMode::Global as u8 {
        LockMode::Global
    } else {
        LockMode::PerCpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in LockMode::ALL {
            assert_eq!(LockMode::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<LockMode>(), Ok(m));
        }
        assert_eq!(LockMode::from_name("Global"), None);
        assert_eq!("both".parse::<LockMode>(), Err(BadLockMode));
        assert_eq!(LockMode::default(), LockMode::PerCpu);
    }

    #[test]
    fn cmdline_word_is_what_the_kernel_parses() {
        assert_eq!(LockMode::PerCpu.cmdline_word(), None);
        let word = LockMode::Global.cmdline_word().unwrap();
        let (key, value) = word.split_once('=').unwrap();
        assert_eq!(key, LockMode::KEY);
        assert_eq!(LockMode::from_name(value), Some(LockMode::Global));
    }

    #[test]
    fn set_once() {
        // The only test touching the global: it runs in one order.
        assert_eq!(lock_mode(), LockMode::PerCpu);
        assert_eq!(set_lock_mode(LockMode::Global), Ok(()));
        assert_eq!(lock_mode(), LockMode::Global);
        assert_eq!(set_lock_mode(LockMode::Global), Ok(()));
        assert_eq!(
            set_lock_mode(LockMode::PerCpu),
            Err(LockModeAlreadySet(LockMode::Global))
        );
        assert_eq!(lock_mode(), LockMode::Global);
    }
}
