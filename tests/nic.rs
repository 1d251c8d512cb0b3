//! The virtio-net driver at the frame level (`run=nettest`): ARP and ICMP
//! echo with QEMU's user-mode gateway on 1 and 2 vCPUs, a boot without a
//! NIC, and (when this machine lets us: root and /dev/net/tun) the same
//! exchange with the host's own Linux stack over a multiqueue tap device in
//! a private network namespace.  No frame ever leaves this machine: user
//! networking runs with `restrict=on`, and the tap lives in a namespace the
//! test creates and deletes.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::qemu::{Nic, RunOutcome};
use integration_tests::*;

fn boot_with_nic(cores: usize, cmdline: &str, nic: Option<Nic>) -> RunOutcome {
    let mut vm = vm(cores, 120);
    vm.nic = nic;
    let request = BootRequest {
        loader: LoaderChoice::Builtin,
        cmdline: cmdline.to_string(),
        modules: Vec::new(),
        vm,
    };
    boot::boot(artifacts(), &request).expect("running QEMU")
}

fn expect_nettest_pass(out: &RunOutcome, peer_line: &str) {
    check(
        out,
        out.has_line("virtio-net: 00:"),
        "expected the driver's `virtio-net:` line",
    );
    check(
        out,
        out.has_line(peer_line),
        &format!("expected `{peer_line}`"),
    );
    check(
        out,
        out.has_line("nettest: icmp echo reply"),
        "expected `nettest: icmp echo reply`",
    );
    check(
        out,
        out.has_line("nettest: flood sent=1000"),
        "expected the flood line",
    );
    check(
        out,
        out.has_line("nettest: pass"),
        "expected `nettest: pass`",
    );
    expect_guest_exit(out, 0);
}

fn user_networking(cores: usize) {
    let out = boot_with_nic(
        cores,
        "run=nettest",
        Some(Nic::User {
            hostfwd: Vec::new(),
            guestfwd: Vec::new(),
        }),
    );
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line("pci: 00:") && out.has_line("1af4:1041 virtio-net"),
        "expected the PCI scan to list the virtio-net function",
    );
    expect_nettest_pass(
        &out,
        "nettest: arp reply from 10.0.2.2 at 52:55:0a:00:02:02",
    );
}

#[test]
fn nettest_user_networking_1_cpu() {
    user_networking(1);
}

#[test]
fn nettest_user_networking_2_cpus() {
    user_networking(2);
}

#[test]
fn no_nic_is_logged_and_selfcheck_still_passes() {
    let out = boot_with_nic(2, "run=selfcheck", None);
    check(
        &out,
        out.has_line("net: no NIC found"),
        "expected `net: no NIC found`",
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);

    let out = boot_with_nic(1, "run=nettest", None);
    check(
        &out,
        out.has_line("nettest: FAIL no NIC"),
        "expected `nettest: FAIL no NIC`",
    );
    expect_guest_exit(&out, 1);
}

#[test]
fn bad_net_option_is_a_cmdline_error() {
    let out = boot_with_nic(1, "run=nettest net=10.0.2.15", None);
    check(
        &out,
        out.has_line("cmdline: error: bad value \"10.0.2.15\" for net="),
        "expected a cmdline error for net=",
    );
    expect_guest_exit(&out, 1);
}

#[test]
fn nettest_tap_multiqueue_with_host_linux() {
    let name = format!("pcknic{}", std::process::id());
    let tap = "nictap0";
    let Some(ns) = tap_namespace_or_skip(&name, tap, 2) else {
        return;
    };
    let out = boot_with_nic(
        2,
        "run=nettest net=10.0.3.2/24",
        Some(Nic::Tap {
            ifname: tap.to_string(),
            queues: 2,
            netns: Some(ns.name.clone()),
        }),
    );
    check(
        &out,
        out.has_line("2 queue pair(s) of 2 offered (multiqueue"),
        "expected two queue pairs (one per CPU)",
    );
    expect_nettest_pass(&out, "nettest: arp reply from 10.0.3.1 at ");
    drop(ns);
}
