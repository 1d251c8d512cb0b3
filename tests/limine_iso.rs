//! The real-Limine path: an ISO made with xorriso boots the same kernel with
//! the same answers.  Limine is not packaged by Debian, so this test runs
//! only where `LIMINE_DIR` or `/usr/share/limine` holds Limine's BIOS files;
//! elsewhere it says so and passes without booting.

use comparison::boot::{self, BootRequest, LoaderChoice};
use integration_tests::*;

#[test]
fn boots_from_limine_iso_when_limine_is_present() {
    if comparison::image::find_limine().is_none() {
        eprintln!("SKIPPED: Limine not found (set LIMINE_DIR to run this test)");
        return;
    }
    let request = BootRequest {
        loader: LoaderChoice::Limine,
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
        vm: vm(2, 120),
    };
    let out = boot::boot(artifacts(), &request).expect("running QEMU");
    check(
        &out,
        cpus_online(&out) == Some(2),
        "expected `cpus online: 2`",
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);
}
