//! The built-in loader refuses bad input with a clear message on serial and
//! the loader's failure code (3), never a hang or a triple fault
//! (docs/CONTRACTS.md §4–5).  Broken kernels are made by patching a copy of
//! the real kernel ELF, so each test breaks exactly one thing.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::qemu::{Ending, RunOutcome};
use integration_tests::*;

const BASE_REVISION_MAGIC: [u64; 2] = [0xf9562b2d5c95a6c8, 0x6a7b384944536bdc];
const REQUEST_MAGIC: [u64; 2] = [0xc7b1dd30df4c8b88, 0x0a82e883a194f07b];

fn real_kernel() -> Vec<u8> {
    std::fs::read(&artifacts().kernel).expect("reading the kernel ELF")
}

fn boot_kernel_bytes(kernel: Vec<u8>) -> RunOutcome {
    let request = BootRequest {
        loader: LoaderChoice::Builtin,
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
        vm: vm(1, 60),
    };
    boot::boot_with_kernel_bytes(artifacts(), &request, kernel).expect("running QEMU")
}

/// The loader printed `loader: error:` with `what` in the message and ended
/// QEMU with code 3.
fn expect_refusal(out: &RunOutcome, what: &str) {
    let line = out.serial.lines().find(|l| l.contains("loader: error:"));
    check(out, line.is_some(), "expected a `loader: error:` line");
    let line = line.unwrap().to_lowercase();
    check(
        out,
        line.contains(what),
        &format!("the loader's error should mention `{what}`"),
    );
    check(
        out,
        out.ending == Ending::GuestExit(3),
        "expected the loader's exit code 3",
    );
    check(
        out,
        !out.has_line("cpus online"),
        "the kernel must not have run",
    );
}

/// Byte offsets of every 8-byte-aligned occurrence of the two magic words.
fn find_magic(image: &[u8], magic: [u64; 2]) -> Vec<usize> {
    let a = magic[0].to_le_bytes();
    let b = magic[1].to_le_bytes();
    (0..image.len().saturating_sub(16))
        .step_by(8)
        .filter(|&i| image[i..i + 8] == a && image[i + 8..i + 16] == b)
        .collect()
}

fn read_u64(image: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

fn read_u16(image: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(image[at..at + 2].try_into().unwrap())
}

#[test]
fn bundle_that_is_not_a_cpio_archive() {
    let out = boot::boot_raw_bundle(
        artifacts(),
        b"this is not a cpio archive at all, just text\n",
        &vm(1, 60),
    )
    .expect("running QEMU");
    expect_refusal(&out, "cpio");
}

#[test]
fn bundle_without_limine_conf() {
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("boot/kernel.elf", 0o755, &real_kernel());
    let out =
        boot::boot_raw_bundle(artifacts(), &writer.finish(), &vm(1, 60)).expect("running QEMU");
    expect_refusal(&out, "limine.conf");
}

#[test]
fn kernel_that_is_not_elf64() {
    let out = boot_kernel_bytes(b"#!/bin/sh\necho not an ELF\n".to_vec());
    expect_refusal(&out, "elf");
    let mut elf32 = real_kernel();
    elf32[4] = 1; // EI_CLASS = ELFCLASS32
    let out = boot_kernel_bytes(elf32);
    expect_refusal(&out, "elf");
}

#[test]
fn truncated_kernel() {
    let mut kernel = real_kernel();
    kernel.truncate(200);
    let out = boot_kernel_bytes(kernel);
    check(
        &out,
        out.has_line("loader: error:"),
        "expected a `loader: error:` line",
    );
    check(
        &out,
        out.ending == Ending::GuestExit(3),
        "expected the loader's exit code 3",
    );
}

/// An ELF with no Limine tag at all is not a Limine kernel: the loader says so.
#[test]
fn kernel_without_limine_requests() {
    let mut kernel = real_kernel();
    let hits: Vec<usize> = find_magic(&kernel, REQUEST_MAGIC)
        .into_iter()
        .chain(find_magic(&kernel, BASE_REVISION_MAGIC))
        .collect();
    assert!(
        hits.len() > 1,
        "the real kernel has Limine requests and a base revision tag"
    );
    for at in hits {
        kernel[at..at + 16].fill(0);
    }
    let out = boot_kernel_bytes(kernel);
    expect_refusal(&out, "request");
}

/// A kernel that keeps its base revision tag but lost its requests is valid
/// Limine input (as with real Limine); the kernel itself must then refuse to
/// go on, clearly, instead of faulting on a missing response.
#[test]
fn kernel_whose_requests_were_removed_refuses_to_boot() {
    let mut kernel = real_kernel();
    for at in find_magic(&kernel, REQUEST_MAGIC) {
        kernel[at..at + 16].fill(0);
    }
    let out = boot_kernel_bytes(kernel);
    check(
        &out,
        out.has_line("boot: error:"),
        "expected the kernel's `boot: error:` line",
    );
    check(
        &out,
        !out.has_line("cpus online"),
        "the kernel must stop before bringing up CPUs",
    );
    expect_guest_exit(&out, 1);
}

#[test]
fn kernel_with_unsupported_base_revision() {
    let mut kernel = real_kernel();
    let hits = find_magic(&kernel, BASE_REVISION_MAGIC);
    assert_eq!(hits.len(), 1, "the real kernel has one base revision tag");
    kernel[hits[0] + 16..hits[0] + 24].copy_from_slice(&99u64.to_le_bytes());
    let out = boot_kernel_bytes(kernel);
    expect_refusal(&out, "revision");
}

#[test]
fn kernel_with_overlapping_segments() {
    let mut kernel = real_kernel();
    let phoff = read_u64(&kernel, 0x20) as usize;
    let phentsize = read_u16(&kernel, 0x36) as usize;
    let phnum = read_u16(&kernel, 0x38) as usize;
    let loads: Vec<usize> = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32::from_le_bytes(kernel[ph..ph + 4].try_into().unwrap()) == 1)
        .collect();
    assert!(
        loads.len() >= 2,
        "the real kernel has several PT_LOAD segments"
    );
    // Move the second segment onto the first one (vaddr and paddr).
    let first_vaddr = read_u64(&kernel, loads[0] + 0x10);
    let first_paddr = read_u64(&kernel, loads[0] + 0x18);
    kernel[loads[1] + 0x10..loads[1] + 0x18].copy_from_slice(&first_vaddr.to_le_bytes());
    kernel[loads[1] + 0x18..loads[1] + 0x20].copy_from_slice(&first_paddr.to_le_bytes());
    let out = boot_kernel_bytes(kernel);
    expect_refusal(&out, "overlap");
}

/// A position-independent kernel (ET_DYN) is refused: the loader places
/// kernels only at their link address (loader/README.md).
#[test]
fn position_independent_kernel() {
    let mut kernel = real_kernel();
    kernel[0x10..0x12].copy_from_slice(&3u16.to_le_bytes()); // e_type = ET_DYN
    let out = boot_kernel_bytes(kernel);
    expect_refusal(&out, "et_dyn");
}

/// QEMU started without `-initrd`: there is no boot bundle to read.
#[test]
fn no_boot_bundle_at_all() {
    let vm = vm(1, 60);
    let mut args = comparison::qemu::command_args(
        &comparison::qemu::Medium::Builtin {
            loader: artifacts().loader.clone(),
            bundle: "unused".into(),
        },
        &vm,
    );
    let initrd = args
        .iter()
        .position(|a| a == "-initrd")
        .expect("-initrd in the QEMU arguments");
    args.drain(initrd..initrd + 2);
    let out = comparison::qemu::run_with_args(&args, &vm).expect("running QEMU");
    expect_refusal(&out, "no boot bundle");
}

/// Boot the real kernel through `loader` on one vCPU with the self-check.
fn boot_with(loader: LoaderChoice) -> RunOutcome {
    let request = BootRequest {
        loader,
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
        vm: vm(1, 90),
    };
    boot::boot(artifacts(), &request).expect("running QEMU")
}

/// The default answer (third word zeroed, second word = loaded revision):
/// the kernel says the loader reported the revision.
#[test]
fn full_revision_answer_is_logged_as_reported() {
    let out = boot_with(LoaderChoice::Builtin);
    check(
        &out,
        out.has_line("boot: base revision 2 supported (loader reported loaded revision 2)"),
        "expected the handshake line with the reported revision",
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);
}

/// The answer of Limine's 7.x/8.x releases (third word zeroed, second word
/// left alone): the kernel boots and says the revision was not reported.
#[test]
fn supported_only_revision_answer_boots_like_limine_releases() {
    let out = boot_with(LoaderChoice::BuiltinSupportedOnly);
    check(
        &out,
        out.has_line("base revision 2 supported, loaded revision not reported"),
        "expected the loader to say it answered in the releases' way",
    );
    check(
        &out,
        out.has_line("boot: base revision 2 supported (loader did not report the loaded revision)"),
        "expected the handshake line without a reported revision",
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        "expected `selfcheck: pass`",
    );
    expect_guest_exit(&out, 0);
}

/// A base revision tag the loader never answered (here: the loader cannot
/// find it, its first magic word is broken) stops the kernel with NotLimine.
#[test]
fn unanswered_base_revision_tag_stops_the_kernel() {
    let mut kernel = real_kernel();
    let hits = find_magic(&kernel, BASE_REVISION_MAGIC);
    assert_eq!(hits.len(), 1, "the real kernel has one base revision tag");
    kernel[hits[0]..hits[0] + 8].fill(0);
    let out = boot_kernel_bytes(kernel);
    check(
        &out,
        out.has_line("boot: error: loader did not answer the Limine base revision tag"),
        "expected the kernel's NotLimine error",
    );
    check(
        &out,
        !out.has_line("cpus online"),
        "the kernel must stop at once",
    );
    expect_guest_exit(&out, 1);
}

/// A loader that reports a loaded revision without marking ours supported
/// (simulated: the tag is hidden from the loader and its second word says 1)
/// stops the kernel with RevisionUnsupported, naming that revision.
#[test]
fn reported_revision_without_support_stops_the_kernel() {
    let mut kernel = real_kernel();
    let hits = find_magic(&kernel, BASE_REVISION_MAGIC);
    assert_eq!(hits.len(), 1, "the real kernel has one base revision tag");
    kernel[hits[0]..hits[0] + 8].fill(0);
    kernel[hits[0] + 8..hits[0] + 16].copy_from_slice(&1u64.to_le_bytes());
    let out = boot_kernel_bytes(kernel);
    check(
        &out,
        out.has_line(
            "does not support Limine base revision 2 (it loaded the kernel with revision 1)",
        ),
        "expected the kernel's RevisionUnsupported error",
    );
    check(
        &out,
        !out.has_line("cpus online"),
        "the kernel must stop at once",
    );
    expect_guest_exit(&out, 1);
}

/// An unknown word in the bundle's `loader-options` is refused, not ignored.
#[test]
fn unknown_loader_option_is_refused() {
    let template = comparison::image::read_template(&artifacts().workspace_root).unwrap();
    let spec = comparison::image::BootSpec {
        kernel_elf: real_kernel(),
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
    };
    let cfg = comparison::image::render_limine_cfg(&template, &spec).unwrap();
    let bundle =
        comparison::image::make_bundle(&cfg, &spec, Some("revision-answer=maybe")).unwrap();
    let out = boot::boot_raw_bundle(artifacts(), &bundle, &vm(1, 60)).expect("running QEMU");
    expect_refusal(&out, "loader-options");
}
