//! User address spaces from kernel threads (`run=vmcheck`): demand-zero
//! memory, user copies and EFAULT, mmap/munmap/mprotect/mremap/madvise/brk
//! semantics, ELF-style segments, copy-on-write fork, shared anonymous
//! memory, TLB shootdowns only to the CPUs that ran an address space, a
//! multi-CPU stress (threads mapping, faulting, unmapping and forking at
//! once; every CPU faulting one shared region that one of them unmaps),
//! and no frame lost.  On 1, 4 and 8 vCPUs, and once with the global-lock
//! switch.

use integration_tests::*;

fn vmcheck(cores: usize, extra: &str) {
    let out = boot_builtin(cores, &format!("run=vmcheck {extra}"), 240);
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line("vmcheck: pass"),
        "expected `vmcheck: pass`",
    );
    let before = field(&out, "vmcheck: pass", "frames_before");
    let after = field(&out, "vmcheck: pass", "frames_after");
    check(
        &out,
        before.is_some() && before == after,
        "free frames before and after must be equal",
    );
    if cores > 1 {
        // The shootdown and stress parts must really have sent IPIs.
        check(
            &out,
            field(&out, "vmcheck: pass", "shootdown_ipis").unwrap_or(0) > 0,
            "no shootdown IPI was sent",
        );
    }
    expect_guest_exit(&out, 0);
}

#[test]
fn vmcheck_on_1_cpu() {
    vmcheck(1, "");
}

#[test]
fn vmcheck_on_4_cpus() {
    vmcheck(4, "");
}

#[test]
fn vmcheck_on_8_cpus() {
    vmcheck(8, "");
}

#[test]
fn vmcheck_with_global_locks() {
    vmcheck(2, "locks=global");
}
