//! Disks: the virtio-blk driver, `/dev/vda`, `mount`/`umount2` of ext2,
//! write-back and crash consistency, checked against Debian's e2fsprogs
//! on the host and against Linux in the same virtual machine.
//!
//! - `raw_sectors_*`: `disk_raw` reads a host-made pattern through
//!   `/dev/vda` and writes a few ranges; the host checks the image byte for
//!   byte; Linux prints the same lines.
//! - `host_tree_reads_back`: a tree made on the host, put in an image with
//!   `mke2fs -t ext2 -d`, is listed (paths, modes, sizes, checksums) by
//!   `disk_check` in the guest exactly as on the host, on both systems.
//! - `guest_tree_is_clean_and_linux_reads_it`: our kernel writes a tree
//!   (many files, a big and a sparse file, renames, deep directories, hard
//!   and symbolic links, truncates, unlinks); `e2fsck -fn` finds nothing,
//!   `debugfs rdump` gives the host the same listing, and Linux mounting
//!   that image prints the same listing too.
//! - `ext2_root`: `root=/dev/vda` boots with the image as `/`.
//! - `crash_consistency`: QEMU is killed at seeded random moments of an
//!   fsync-per-file workload; after `e2fsck -fy` (and a clean `-fn`), every
//!   file the guest reported durable before the kill has its data.
//!
//! e2fsprogs missing is a skip, or under `CI` a failure naming it.

use std::path::{Path, PathBuf};
use std::process::Command;

use comparison::qemu::Disk;
use comparison::run::{Echo, RunRequest, RunResult, System, Systems, Verdict};
use comparison::skip::skip_or_fail;
use integration_tests::*;

const TIMEOUT: u64 = 300;

/// Scratch directory for this test's images.
fn scratch(name: &str) -> PathBuf {
    let root = comparison::build::workspace_root();
    let dir = comparison::build::target_dir(&root)
        .expect("cargo's target directory")
        .join("disk-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// e2fsprogs' tools, or `false` after a skip (a failure under `CI`).
fn have_e2fsprogs() -> bool {
    for tool in ["mke2fs", "e2fsck", "debugfs"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty());
        if !found {
            skip_or_fail(&format!(
                "{tool} from Debian's e2fsprogs (run tools/setup.sh)"
            ));
            return false;
        }
    }
    true
}

fn sh(cmd: &mut Command) -> std::process::Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// An empty (or, with `tree`, filled) ext2 image of `mib` MiB, 1 KiB
/// blocks (so files use indirect, double- and triple-indirect blocks).
fn mke2fs(image: &Path, mib: u64, tree: Option<&Path>) {
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-q", "-F", "-t", "ext2", "-b", "1024"]);
    if let Some(t) = tree {
        cmd.arg("-d").arg(t);
    }
    cmd.arg(image).arg(format!("{mib}M"));
    let out = sh(&mut cmd);
    assert!(
        out.status.success(),
        "mke2fs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `e2fsck -fn`: exit status and output.
fn fsck_check(image: &Path) -> (i32, String) {
    let out = sh(Command::new("e2fsck").arg("-fn").arg(image));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `debugfs -R "rdump FROM TO"`: copies a directory of the image out.
fn rdump(image: &Path, from: &str, to: &Path) {
    std::fs::create_dir_all(to).expect("rdump target");
    let out = sh(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump {from} {}", to.display()))
        .arg(image));
    assert!(
        out.status.success(),
        "debugfs rdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `disk_check` run on the host (it is a static Linux binary).
fn host_disk_check(args: &[String]) -> String {
    let out = sh(Command::new(program("disk_check")).args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "disk_check on the host failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs test program `name` with `disks` on `cores` vCPUs, killed after
/// `timeout_secs`.
fn run_with_disks(
    systems: &Systems,
    system: System,
    name: &str,
    args: &[&str],
    disks: &[Disk],
    cores: usize,
    timeout_secs: u64,
) -> RunResult {
    run_with_cmdline(systems, system, name, args, disks, cores, timeout_secs, "")
}

/// `run_with_disks` with extra kernel command-line words.
#[allow(clippy::too_many_arguments)]
fn run_with_cmdline(
    systems: &Systems,
    system: System,
    name: &str,
    args: &[&str],
    disks: &[Disk],
    cores: usize,
    timeout_secs: u64,
    cmdline: &str,
) -> RunResult {
    let mut vm = vm(cores, timeout_secs);
    vm.disks = disks.to_vec();
    let request = RunRequest {
        system,
        program: program(name),
        files: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks: percpu::LockMode::PerCpu,
        extra_cmdline: cmdline.to_string(),
        vm,
        echo: Echo::Quiet,
    };
    comparison::run::run(systems, &request).expect("running the program")
}

fn disk(path: &Path, read_only: bool) -> Disk {
    Disk {
        path: path.to_path_buf(),
        read_only,
    }
}

/// The lines of a `disk_check` output that `list` printed.
fn listing(output: &str) -> String {
    output
        .lines()
        .filter(|l| !l.ends_with(": ok") && !l.starts_with("wrote: ") && *l != "disk_check: pass")
        .map(|l| format!("{l}\n"))
        .collect()
}

// ---- raw sectors ------------------------------------------------------------

/// Byte `offset` of the pattern with `seed` (as `disk_raw`'s `pattern`).
fn pattern(seed: u64, offset: u64) -> u8 {
    let x = (offset >> 3)
        .wrapping_add(seed.wrapping_mul(0x1000_0000_01b3))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> (8 * (offset & 7))) as u8
}

const RAW_BYTES: u64 = 4 << 20;

/// The ranges `disk_raw` writes with seed 2 (as its `writes`).
fn raw_writes(size: u64) -> Vec<(u64, u64)> {
    vec![
        (0, 512),
        (1000, 3),
        (3 * 4096 + 17, 70_000),
        (200_000, 4096),
        (size - 5, 5),
    ]
}

fn pattern_image(path: &Path) {
    let data: Vec<u8> = (0..RAW_BYTES).map(|o| pattern(1, o)).collect();
    std::fs::write(path, data).expect("writing the pattern image");
}

/// Offsets where the image differs from what `disk_raw` must leave.
fn raw_mismatches(path: &Path) -> usize {
    let data = std::fs::read(path).expect("reading the image");
    let writes = raw_writes(RAW_BYTES);
    data.iter()
        .enumerate()
        .filter(|&(o, &b)| {
            let o = o as u64;
            let seed = if writes.iter().any(|&(at, len)| o >= at && o < at + len) {
                2
            } else {
                1
            };
            b != pattern(seed, o)
        })
        .count()
}

#[test]
fn raw_sectors_same_on_both() {
    let dir = scratch("raw");
    let image = dir.join("ours.img");
    pattern_image(&image);
    let ours = run_with_disks(
        ours(),
        System::Ours,
        "disk_raw",
        &[],
        &[disk(&image, false)],
        2,
        TIMEOUT,
    );
    expect_pass(&ours, "disk_raw");
    assert_eq!(
        raw_mismatches(&image),
        0,
        "the image after our kernel's writes"
    );
    let Some(linux) = linux_or_skip("raw_sectors_same_on_both") else {
        return;
    };
    let image = dir.join("linux.img");
    pattern_image(&image);
    let theirs = run_with_disks(
        linux,
        System::Linux,
        "disk_raw",
        &[],
        &[disk(&image, false)],
        2,
        TIMEOUT,
    );
    expect_pass(&theirs, "disk_raw");
    assert_eq!(raw_mismatches(&image), 0, "the image after Linux's writes");
    let diff = line_diff(&theirs.output, &ours.output);
    assert!(diff.is_empty(), "outputs differ:\n{diff}");
}

#[test]
fn raw_read_only_same_on_both() {
    let dir = scratch("raw-ro");
    let image = dir.join("ro.img");
    pattern_image(&image);
    let ours = run_with_disks(
        ours(),
        System::Ours,
        "disk_raw",
        &["ro"],
        &[disk(&image, true)],
        1,
        TIMEOUT,
    );
    expect_pass(&ours, "disk_raw");
    let Some(linux) = linux_or_skip("raw_read_only_same_on_both") else {
        return;
    };
    let theirs = run_with_disks(
        linux,
        System::Linux,
        "disk_raw",
        &["ro"],
        &[disk(&image, true)],
        1,
        TIMEOUT,
    );
    expect_pass(&theirs, "disk_raw");
    let diff = line_diff(&theirs.output, &ours.output);
    assert!(diff.is_empty(), "outputs differ:\n{diff}");
    let data = std::fs::read(&image).expect("image");
    assert!(
        data.iter()
            .enumerate()
            .all(|(o, &b)| b == pattern(1, o as u64)),
        "a read-only disk changed"
    );
}

// ---- ext2 trees -------------------------------------------------------------

#[test]
fn host_tree_reads_back() {
    if !have_e2fsprogs() {
        return;
    }
    let dir = scratch("host-tree");
    let tree = dir.join("tree");
    host_disk_check(&[format!("write:{}/w:7", tree.display())]);
    let host = listing(&host_disk_check(&[format!("list:{}", tree.display())]));
    let image = dir.join("tree.img");
    mke2fs(&image, 64, Some(&tree));
    let steps = [
        "mkdir:/mnt",
        "mount-ro:/dev/vda:/mnt",
        "list:/mnt",
        "umount:/mnt",
    ];
    let ours = run_with_disks(
        ours(),
        System::Ours,
        "disk_check",
        &steps,
        &[disk(&image, true)],
        2,
        TIMEOUT,
    );
    expect_pass(&ours, "disk_check");
    let diff = line_diff(&host, &listing(&ours.output));
    assert!(
        diff.is_empty(),
        "our listing differs from the host's (\"linux\" = host):\n{diff}"
    );
    let Some(linux) = linux_or_skip("host_tree_reads_back") else {
        return;
    };
    let theirs = run_with_disks(
        linux,
        System::Linux,
        "disk_check",
        &steps,
        &[disk(&image, true)],
        2,
        TIMEOUT,
    );
    expect_pass(&theirs, "disk_check");
    let diff = line_diff(&theirs.output, &ours.output);
    assert!(diff.is_empty(), "outputs differ:\n{diff}");
}

#[test]
fn guest_tree_is_clean_and_linux_reads_it() {
    if !have_e2fsprogs() {
        return;
    }
    let dir = scratch("guest-tree");
    let image = dir.join("guest.img");
    mke2fs(&image, 96, None);
    let steps = [
        "mkdir:/mnt",
        "mount:/dev/vda:/mnt",
        "write:/mnt/w:11",
        "list:/mnt",
        "umount:/mnt",
    ];
    let ours = run_with_disks(
        ours(),
        System::Ours,
        "disk_check",
        &steps,
        &[disk(&image, false)],
        2,
        TIMEOUT,
    );
    expect_pass(&ours, "disk_check");
    let (code, report) = fsck_check(&image);
    assert_eq!(
        code, 0,
        "e2fsck -fn after our kernel wrote the tree:\n{report}"
    );
    // What debugfs sees is what the guest listed.
    let dumped = dir.join("dump");
    rdump(&image, "/w", &dumped);
    let host = listing(&host_disk_check(&[format!("list:{}", dumped.display())]));
    // `rdump /w DIR` makes DIR/w, as the guest listed /mnt with its w/.
    let guest = listing(&ours.output);
    let diff = line_diff(&host, &guest);
    assert!(
        diff.is_empty(),
        "debugfs' copy differs from the guest's listing (\"linux\" = debugfs):\n{diff}"
    );
    let Some(linux) = linux_or_skip("guest_tree_is_clean_and_linux_reads_it") else {
        return;
    };
    let read = [
        "mkdir:/mnt",
        "mount-ro:/dev/vda:/mnt",
        "list:/mnt",
        "umount:/mnt",
    ];
    let theirs = run_with_disks(
        linux,
        System::Linux,
        "disk_check",
        &read,
        &[disk(&image, true)],
        2,
        TIMEOUT,
    );
    expect_pass(&theirs, "disk_check");
    let diff = line_diff(&listing(&theirs.output), &listing(&ours.output));
    assert!(
        diff.is_empty(),
        "Linux lists our image differently:\n{diff}"
    );
    let (code, report) = fsck_check(&image);
    assert_eq!(code, 0, "e2fsck -fn at the end:\n{report}");
}

/// `root=/dev/vda`: the ext2 image is `/`, PID 1 is its `/init` (the
/// initramfs gives only the arguments), what it writes stays on the image.
#[test]
fn ext2_root() {
    if !have_e2fsprogs() {
        return;
    }
    let dir = scratch("root");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).expect("tree");
    std::fs::copy(program("disk_check"), tree.join("init")).expect("copying /init");
    host_disk_check(&[format!("write:{}/w:3", tree.display())]);
    let host = listing(&host_disk_check(&[format!("list:{}/w", tree.display())]));
    let image = dir.join("root.img");
    mke2fs(&image, 128, Some(&tree));
    // `hello` is the initramfs's /init, which a disk root ignores.
    let steps = ["list:/w", "write:/new:5", "sync"];
    let ours = run_with_cmdline(
        ours(),
        System::Ours,
        "hello",
        &steps,
        &[disk(&image, false)],
        2,
        TIMEOUT,
        "root=/dev/vda",
    );
    expect_pass(&ours, "disk_check");
    let diff = line_diff(&host, &listing(&ours.output));
    assert!(
        diff.is_empty(),
        "the disk root lists /w differently from the host (\"linux\" = host):\n{diff}"
    );
    let (code, report) = fsck_check(&image);
    assert_eq!(
        code, 0,
        "e2fsck -fn after running on a disk root:\n{report}"
    );
    let dumped = dir.join("dump");
    rdump(&image, "/new", &dumped);
    let written = host_disk_check(&[format!("list:{}", dumped.display())]);
    assert!(written.contains("entries: "), "debugfs found /new");
}

// ---- crash consistency ----------------------------------------------------------

/// xorshift64*: the test's seeded choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// FNV-1a, as `disk_check` computes it.
fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn crash_consistency() {
    if !have_e2fsprogs() {
        return;
    }
    let runs: u64 = std::env::var("DISK_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let seed: u64 = std::env::var("DISK_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261207);
    let mut rng = Rng(seed | 1);
    let dir = scratch("crash");
    let (mut kills, mut checked, mut lost) = (0, 0, 0);
    let mut report = String::new();
    for run in 0..runs {
        let image = dir.join(format!("crash-{run}.img"));
        mke2fs(&image, 64, None);
        // Boot takes a few seconds under TCG; the kill lands somewhere in
        // the workload (or, rarely, before it wrote anything).
        let kill_after = 6 + rng.next() % 14;
        let workload_seed = rng.next() % 1000;
        let steps = [
            "mkdir:/mnt".to_string(),
            "mount:/dev/vda:/mnt".to_string(),
            format!("crash:/mnt/c:{workload_seed}"),
        ];
        let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
        let result = run_with_disks(
            ours(),
            System::Ours,
            "disk_check",
            &steps,
            &[disk(&image, false)],
            2,
            kill_after,
        );
        check_run(
            &result,
            result.verdict == Verdict::TimedOut,
            "the crash workload runs until QEMU is killed",
        );
        kills += 1;
        // Files the workload announced it would unlink (it keeps a window
        // so the disk never fills) are no longer checked.
        let retired: std::collections::HashSet<&str> = result
            .output
            .lines()
            .filter_map(|l| l.strip_prefix("retired: "))
            .collect();
        let durable: Vec<(String, usize, u64)> = result
            .output
            .lines()
            .filter(|l| {
                l.strip_prefix("durable: ")
                    .and_then(|rest| rest.split(' ').next())
                    .is_some_and(|name| !retired.contains(name))
            })
            .filter_map(|l| {
                let mut w = l.strip_prefix("durable: ")?.split(' ');
                let name = w.next()?.to_string();
                let size = w.next()?.parse().ok()?;
                let sum = u64::from_str_radix(w.next()?, 16).ok()?;
                // A line cut by the kill has no complete checksum.
                Some((name, size, sum))
            })
            .collect();
        // e2fsck may repair (exit 1) what an unjournaled ext2 leaves
        // behind; 4 and above would be errors left uncorrected.
        let out = sh(Command::new("e2fsck").arg("-fy").arg(&image));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code < 4,
            "run {run}: e2fsck -fy left errors ({code}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let (clean, text) = fsck_check(&image);
        assert_eq!(clean, 0, "run {run}: e2fsck -fn after the repair:\n{text}");
        let dumped = dir.join(format!("dump-{run}"));
        let _ = std::fs::remove_dir_all(&dumped);
        if !durable.is_empty() {
            rdump(&image, "/c", &dumped);
        }
        let mut run_lost = 0;
        for (name, size, sum) in &durable {
            checked += 1;
            match std::fs::read(dumped.join("c").join(name)) {
                Ok(data) if data.len() == *size && fnv(&data) == *sum => {}
                Ok(data) => {
                    run_lost += 1;
                    report.push_str(&format!("run {run}: {name}: {} bytes, checksum {:016x}; expected {size}, {sum:016x}\n", data.len(), fnv(&data)));
                }
                Err(e) => {
                    run_lost += 1;
                    report.push_str(&format!("run {run}: {name}: {e}\n"));
                }
            }
        }
        lost += run_lost;
        println!(
            "crash run {run}: killed after {kill_after} s, e2fsck -fy exit {code}, {} durable files checked ({} retired), {run_lost} lost",
            durable.len(),
            retired.len()
        );
    }
    println!("crash consistency: {runs} runs, {kills} kills, {checked} files checked, {lost} lost (seed {seed})");
    assert!(
        checked > 0,
        "no run reported a durable file before its kill (boot too slow?)"
    );
    assert_eq!(lost, 0, "fsync'd files lost or damaged:\n{report}");
}
