//! Host (std) platform: real threads stand in for CPUs.
//!
//! Owns the host `Platform`: each thread binds itself to a CPU id with
//! [`bind_current_thread`] (unbound threads are CPU 0, like early boot).
//! Pinning does not stop anything on the host; it only counts nesting depth
//! per thread so that tests can check that guards are balanced and released
//! in order.
//!
//! Must not: be used in the kernel (it needs std thread-locals), or be taken
//! as giving exclusive access to a slot: two threads may bind the same id.

use std::cell::Cell;
use std::fmt;

use crate::platform::{set_platform, PinToken, Platform};
use crate::MAX_CPUS;

std::thread_local! {
    static CPU: Cell<usize> = const { Cell::new(0) };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

struct HostPlatform;

static HOST: HostPlatform = HostPlatform;

impl Platform for HostPlatform {
    fn cpu_id(&self) -> usize {
        CPU.with(Cell::get)
    }
    fn pin(&self) -> PinToken {
        DEPTH.with(|d| {
            let depth = d.get();
            d.set(depth + 1);
            PinToken::new(depth)
        })
    }
    fn unpin(&self, token: PinToken) {
        DEPTH.with(|d| {
            assert_eq!(
                d.get(),
                token.raw() + 1,
                "percpu::host: CpuGuards dropped out of order"
            );
            d.set(token.raw());
        })
    }
}

/// A CPU id outside `0..MAX_CPUS` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOutOfRange(pub usize);

impl fmt::Display for CpuOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu id {} out of range (MAX_CPUS = {})",
            self.0, MAX_CPUS
        )
    }
}

impl std::error::Error for CpuOutOfRange {}

/// Installs the host platform (idempotent).  Returns `false` if some other
/// platform was installed first.
pub fn install() -> bool {
    set_platform(&HOST) || is_installed()
}

fn is_installed() -> bool {
    // The host platform is the installed one iff its answers are ours: the
    // installed platform's `cpu_id` reads our thread-local.
    core::ptr::eq(
        crate::platform::platform() as *const dyn Platform as *const (),
        &HOST as *const HostPlatform as *const (),
    )
}

/// Installs the host platform if needed and makes the calling thread CPU
/// `cpu` from now on.
pub fn bind_current_thread(cpu: usize) -> Result<(), CpuOutOfRange> {
    if cpu >= MAX_CPUS {
        return Err(CpuOutOfRange(cpu));
    }
    install();
    CPU.with(|c| c.set(cpu));
    // The count is the highest id bound so far, plus one.
    crate::platform::raise_cpu_count(cpu + 1);
    Ok(())
}

/// How many `CpuGuard`s the calling thread holds right now.
pub fn pin_depth() -> usize {
    DEPTH.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuGuard;

    #[test]
    fn out_of_range_cpu_is_refused() {
        assert_eq!(bind_current_thread(MAX_CPUS), Err(CpuOutOfRange(MAX_CPUS)));
    }

    #[test]
    fn guards_are_counted_and_balanced() {
        std::thread::spawn(|| {
            bind_current_thread(2).unwrap();
            assert_eq!(pin_depth(), 0);
            let a = CpuGuard::new();
            let b = CpuGuard::new();
            assert_eq!(pin_depth(), 2);
            drop(b);
            drop(a);
            assert_eq!(pin_depth(), 0);
            assert!(crate::cpu_count() >= 3);
        })
        .join()
        .unwrap();
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn out_of_order_release_is_caught() {
        bind_current_thread(1).unwrap();
        let a = CpuGuard::new();
        let b = CpuGuard::new();
        drop(a);
        drop(b);
    }

    #[test]
    fn install_is_idempotent() {
        assert!(install());
        assert!(
            install(),
            "a second install of the host platform is not a refusal"
        );
        assert!(is_installed());
    }

    #[test]
    fn bound_thread_reports_its_cpu_id() {
        std::thread::spawn(|| {
            bind_current_thread(5).unwrap();
            assert_eq!(crate::cpu_id(), 5);
            bind_current_thread(2).unwrap();
            assert_eq!(crate::cpu_id(), 2);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn binding_the_last_id_counts_every_cpu() {
        std::thread::spawn(|| {
            bind_current_thread(MAX_CPUS - 1).unwrap();
            assert_eq!(crate::cpu_count(), MAX_CPUS);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn out_of_range_error_names_the_id() {
        let msg = CpuOutOfRange(MAX_CPUS + 3).to_string();
        assert!(msg.contains(&(MAX_CPUS + 3).to_string()), "{msg}");
        assert!(msg.contains("out of range"), "{msg}");
    }
}
