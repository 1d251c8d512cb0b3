//! A platform installed before the host one wins: `host::install` then
//! reports `false` and the per-CPU API keeps answering from the first
//! platform.  Its own test binary, because the platform is set once per
//! process.

use percpu::{PinToken, Platform};

struct Fixed;

impl Platform for Fixed {
    fn cpu_id(&self) -> usize {
        7
    }
    fn pin(&self) -> PinToken {
        PinToken::new(0)
    }
    fn unpin(&self, _token: PinToken) {}
}

static FIXED: Fixed = Fixed;

#[test]
fn host_install_refuses_to_replace_another_platform() {
    assert!(percpu::set_platform(&FIXED));
    assert!(
        !percpu::host::install(),
        "the host platform must not claim to be installed"
    );
    assert!(!percpu::set_platform(&FIXED), "a platform is set once");
    assert_eq!(percpu::cpu_id(), 7);
    // The count is not the platform's to answer: it has one owner.
    assert_eq!(percpu::cpu_count(), 1);
    percpu::set_cpu_count(8);
    assert_eq!(percpu::cpu_count(), 8);
}
