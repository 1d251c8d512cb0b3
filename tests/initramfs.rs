//! A malformed initramfs gives a clear `initramfs: error:` line and exit code
//! 1, never a panic or a hang; a well-formed one missing `/init` says that.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::image::Module;
use comparison::qemu::RunOutcome;
use integration_tests::*;

fn boot_with_initramfs(bytes: Vec<u8>) -> RunOutcome {
    let request = BootRequest {
        loader: LoaderChoice::Builtin,
        cmdline: "run=init".into(),
        modules: vec![Module {
            guest_path: "boot/initramfs.cpio".into(),
            cmdline: "initramfs".into(),
            data: bytes,
        }],
        vm: vm(1, 60),
    };
    boot::boot(artifacts(), &request).expect("running QEMU")
}

fn expect_initramfs_error(out: &RunOutcome) {
    check(
        out,
        out.has_line("initramfs: error:"),
        "expected an `initramfs: error:` line",
    );
    check(
        out,
        !out.has_line("KERNEL PANIC"),
        "a bad archive must not panic the kernel",
    );
    expect_guest_exit(out, 1);
}

#[test]
fn garbage_initramfs_is_refused() {
    expect_initramfs_error(&boot_with_initramfs(
        b"not a cpio archive, only some text\n".repeat(10),
    ));
}

#[test]
fn truncated_initramfs_is_refused() {
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("init", 0o755, &[0x7f; 5000]);
    let mut archive = writer.finish();
    archive.truncate(3000); // inside the file's data, before the trailer
    expect_initramfs_error(&boot_with_initramfs(archive));
}

#[test]
fn initramfs_without_init_says_so() {
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("hello.txt", 0o644, b"hi\n");
    let out = boot_with_initramfs(writer.finish());
    check(
        &out,
        out.has_line("/init"),
        "the kernel should name the missing /init",
    );
    check(
        &out,
        !out.has_line("KERNEL PANIC"),
        "a missing /init must not panic the kernel",
    );
    check(
        &out,
        out.kernel_exit_line().is_some_and(|c| c != 0),
        "a missing /init must end with a failure code",
    );
}
