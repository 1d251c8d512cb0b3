//! The real-Limine path: ISOs made with xorriso boot the same kernel through
//! Limine's own, unmodified binary releases 7 (reading `limine.cfg`) and 8
//! (reading `limine.conf`), on 1, 2 and 8 vCPUs, and `run` a test program
//! with its initramfs module through each.
//!
//! Where the releases are found: `LIMINE_DIR` (a release folder, or a folder
//! of release folders), else `../shared/limine` next to the repository, else
//! `/work/shared/limine`; the major version is read from `limine-bios.sys`.
//! Where a release is absent the test prints `SKIPPED ...` and passes, unless
//! `CI` is set (then it fails, naming what is missing).  Nothing here copies
//! Limine into the repository: the ISOs are scratch files under `target/`.

use comparison::boot::{self, BootRequest, LoaderChoice};
use comparison::image;
use comparison::run::{System, Systems};
use integration_tests::*;
use std::path::PathBuf;

/// Every Limine release folder the tests can see, in search order.
fn limine_releases() -> Vec<PathBuf> {
    let repo = comparison::build::workspace_root();
    let roots: Vec<PathBuf> = std::env::var_os("LIMINE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo.join("..").join("shared").join("limine"),
            PathBuf::from("/work/shared/limine"),
        ])
        .collect();
    let mut found = Vec::new();
    for root in roots {
        if image::is_limine_dir(&root) {
            found.push(root.clone());
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        subdirs.sort();
        found.extend(subdirs.into_iter().filter(|d| image::is_limine_dir(d)));
    }
    found
}

/// The first release folder of Limine `major`, or `None` after skipping.
fn limine(major: u32) -> Option<PathBuf> {
    let dir = limine_releases()
        .into_iter()
        .find(|d| image::limine_version(d).as_deref().and_then(image::major) == Some(major));
    if dir.is_none() {
        skip(&format!(
            "Limine {major} not found (set LIMINE_DIR to a folder with Limine {major}'s \
             limine-bios.sys and limine-bios-cd.bin, e.g. its v{major}.x-binary branch)"
        ));
    }
    dir
}

/// The one place this file skips.  Limine is not packaged anywhere a fresh
/// machine can install from (Debian, crates.io, PyPI, npm), so its absence is
/// a counted skip even under CI (`comparison::skip`).
fn skip(reason: &str) {
    skip_even_in_ci(reason);
}

/// Boot Limine `major` on `cores` vCPUs with the self-check.
fn boot_through(major: u32, cores: usize) {
    let Some(dir) = limine(major) else { return };
    let version = image::limine_version(&dir).expect("version read above");
    let request = BootRequest {
        loader: LoaderChoice::LimineAt(dir.clone()),
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
        vm: vm(cores, 240),
    };
    let out = boot::boot(artifacts(), &request).expect("running QEMU");
    let what = format!("Limine {version} from {}", dir.display());
    check(
        &out,
        out.has_line(&format!("boot: loader Limine {version}")),
        &format!("{what}: expected the kernel to name the loader"),
    );
    check(
        &out,
        out.has_line("boot: base revision 2 supported"),
        &format!("{what}: expected the base revision handshake line"),
    );
    check(
        &out,
        cpus_online(&out) == Some(cores),
        &format!("{what}: expected `cpus online: {cores}`"),
    );
    check(
        &out,
        out.has_line("selfcheck: pass"),
        &format!("{what}: expected `selfcheck: pass`"),
    );
    expect_guest_exit(&out, 0);
}

#[test]
fn limine7_boots_on_1_cpu() {
    boot_through(7, 1);
}

#[test]
fn limine7_boots_on_2_cpus() {
    boot_through(7, 2);
}

#[test]
fn limine7_boots_on_8_cpus() {
    boot_through(7, 8);
}

#[test]
fn limine8_boots_on_1_cpu() {
    boot_through(8, 1);
}

#[test]
fn limine8_boots_on_2_cpus() {
    boot_through(8, 2);
}

#[test]
fn limine8_boots_on_8_cpus() {
    boot_through(8, 8);
}

/// `run` through Limine `major`: the program and a data file travel in the
/// initramfs module; argv and the exit status come back.
fn run_through(major: u32) {
    let Some(dir) = limine(major) else { return };
    let systems = Systems {
        loader: LoaderChoice::LimineAt(dir),
        ..ours().clone()
    };
    let data = std::env::temp_dir().join(format!("limine-run-{major}-{}", std::process::id()));
    std::fs::write(&data, "a file in the initramfs\n").expect("writing the data file");
    let result = run_program(
        &systems,
        System::Ours,
        "hello",
        2,
        &["one", "two", "exit=3"],
        &[(data.clone(), "/data/in.txt")],
        240,
    );
    let _ = std::fs::remove_file(&data);
    expect_exit(&result, 3);
    for line in ["argv[1]: one", "argv[2]: two", "argv[3]: exit=3"] {
        check_run(
            &result,
            result.output.lines().any(|l| l == line),
            &format!("expected `{line}`"),
        );
    }
    check_run(
        &result,
        result.outcome.has_line("initramfs: ") && result.outcome.has_line("entries unpacked"),
        "expected the kernel to unpack the initramfs module",
    );
}

#[test]
fn limine7_runs_a_program_from_its_initramfs() {
    run_through(7);
}

#[test]
fn limine8_runs_a_program_from_its_initramfs() {
    run_through(8);
}
