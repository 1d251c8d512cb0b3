//! A corpus of malformed ELF files, made here from a real static program
//! (`hello`): each is exec'd by `execer` on our kernel and must fail with
//! `ENOEXEC` (or, where noted, another errno), while the kernel keeps running
//! and a good program still runs afterwards.
//!
//! The basic malformations (bad magic, wrong machine/type, truncated, empty,
//! bad program-header size) are also checked on Linux, to show the corpus is what it claims.
//! Linux is lenient about the others (it maps what it can and lets the
//! process crash later), so for those only our kernel's answer is checked.

use comparison::run::{System, Verdict};
use integration_tests::*;
use std::path::PathBuf;

const TIMEOUT: u64 = 180;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

/// Offsets of the program headers of type `kind`.
fn phdrs(elf: &[u8], kind: u32) -> Vec<usize> {
    let (phoff, phentsize, phnum) = (
        u64_at(elf, 0x20) as usize,
        u16_at(elf, 0x36) as usize,
        u16_at(elf, 0x38) as usize,
    );
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&at| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == kind)
        .collect()
}

/// (name, bytes, errnos accepted on our kernel, also checked on Linux)
fn corpus(good: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static [&'static str], bool)> {
    assert_eq!(&good[..4], b"\x7fELF", "hello is not ELF");
    let loads = phdrs(good, PT_LOAD);
    assert!(
        loads.len() >= 2,
        "hello should have at least two PT_LOAD segments"
    );
    let mut out = Vec::new();
    let mut mutate =
        |name, accept: &'static [&'static str], linux: bool, f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.to_vec();
            f(&mut b);
            out.push((name, b, accept, linux));
        };
    const NOEXEC: &[&str] = &["ENOEXEC"];
    mutate("empty", NOEXEC, true, &|b| b.clear());
    mutate("truncated-header", NOEXEC, true, &|b| b.truncate(40));
    mutate("bad-magic", NOEXEC, true, &|b| b[1] = b'X');
    // Linux's x86-64 loader checks only e_machine, not e_ident's class and
    // byte order, and runs these two anyway: ours must refuse them.
    mutate("class-32bit", NOEXEC, false, &|b| b[4] = 1);
    mutate("big-endian", NOEXEC, false, &|b| b[5] = 2);
    mutate("wrong-machine", NOEXEC, true, &|b| put_u16(b, 0x12, 183)); // EM_AARCH64
    mutate("relocatable-type", NOEXEC, true, &|b| put_u16(b, 0x10, 1)); // ET_REL
    mutate("phentsize-wrong", NOEXEC, true, &|b| put_u16(b, 0x36, 32));
    mutate("phdrs-outside-file", NOEXEC, false, &|b| {
        let len = b.len() as u64;
        put_u64(b, 0x20, len + 4096)
    });
    mutate("truncated-in-segments", NOEXEC, false, &|b| {
        b.truncate(0x6000)
    });
    // PT_INTERP: the first non-LOAD header becomes an interpreter request
    // naming a string appended to the file.  Linux would look the
    // interpreter up (ENOENT); a static-only loader refuses with ENOEXEC.
    mutate("has-interp", &["ENOEXEC", "ENOENT"], false, &|b| {
        let at = phdrs(b, 4)[0]; // PT_NOTE
        let off = b.len() as u64;
        b.extend_from_slice(b"/lib/ld-musl-x86_64.so.1\0");
        put_u32(b, at, PT_INTERP);
        put_u64(b, at + 8, off);
        put_u64(b, at + 0x20, 25);
        put_u64(b, at + 0x28, 25);
    });
    mutate("segment-outside-file", NOEXEC, false, &|b| {
        let at = phdrs(b, PT_LOAD)[1];
        let off = u64_at(b, at + 8) + (b.len() as u64 + 0x10_0000) / 0x1000 * 0x1000;
        put_u64(b, at + 8, off);
    });
    mutate("overlapping-segments", NOEXEC, false, &|b| {
        let (first, second) = (phdrs(b, PT_LOAD)[0], phdrs(b, PT_LOAD)[1]);
        // The second segment now starts inside the first one's pages.
        let vaddr = u64_at(b, first + 0x10);
        put_u64(b, second + 0x10, vaddr);
        put_u64(b, second + 0x18, vaddr);
        put_u64(b, second + 8, 0);
    });
    mutate(
        "huge-memsz",
        &["ENOEXEC", "ENOMEM", "EINVAL"],
        false,
        &|b| {
            let at = *phdrs(b, PT_LOAD).last().unwrap();
            put_u64(b, at + 0x28, 0x0000_7fff_ffff_0000);
        },
    );
    mutate("memsz-below-filesz", NOEXEC, false, &|b| {
        let at = phdrs(b, PT_LOAD)[1];
        let filesz = u64_at(b, at + 0x20);
        put_u64(b, at + 0x28, filesz / 2);
    });
    mutate("entry-outside-segments", NOEXEC, false, &|b| {
        let end = phdrs(b, PT_LOAD)
            .iter()
            .map(|&at| u64_at(b, at + 0x10) + u64_at(b, at + 0x28))
            .max()
            .unwrap();
        put_u64(b, 0x18, end + 0x10_0000);
    });
    mutate("entry-in-non-exec-segment", NOEXEC, false, &|b| {
        let at = phdrs(b, PT_LOAD)[0]; // read-only, not executable
        let entry = u64_at(b, at + 0x10) + 0x100;
        put_u64(b, 0x18, entry);
    });
    out
}

/// Write the corpus under the target directory; return (host, guest, name, accepted, on linux).
fn write_corpus() -> Vec<(PathBuf, String, &'static str, &'static [&'static str], bool)> {
    let good = std::fs::read(program("hello")).expect("reading hello");
    let dir = ours()
        .scratch
        .join(format!("elf-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("corpus dir");
    corpus(&good)
        .into_iter()
        .map(|(name, bytes, accept, linux)| {
            let host = dir.join(name);
            std::fs::write(&host, bytes).expect("writing corpus file");
            // Executable bits, so that only the contents are wrong.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
            (host, format!("/bad/{name}"), name, accept, linux)
        })
        .collect()
}

fn run_corpus(systems: &comparison::run::Systems, system: System, only_linux_cases: bool) {
    let corpus: Vec<_> = write_corpus()
        .into_iter()
        .filter(|c| !only_linux_cases || c.4)
        .collect();
    let mut files: Vec<(PathBuf, &str)> = corpus
        .iter()
        .map(|(h, g, ..)| (h.clone(), g.as_str()))
        .collect();
    let hello = program("hello");
    files.push((hello, "/good"));
    let mut args: Vec<&str> = corpus.iter().map(|c| c.1.as_str()).collect();
    args.push("/good");
    let result = run_program(systems, system, "execer", 2, &args, &files, TIMEOUT);
    check_run(
        &result,
        result.verdict == Verdict::Exited(0),
        "execer must exit 0: the kernel survives every file",
    );
    for (_, guest, name, accept, _) in &corpus {
        let line = result
            .output
            .lines()
            .find(|l| l.starts_with(&format!("{guest}: ")));
        let errno = line.map(|l| l[guest.len() + 2..].to_string());
        check_run(
            &result,
            errno.as_deref().is_some_and(|e| accept.contains(&e)),
            &format!("{name}: expected one of {accept:?}, got {:?}", line),
        );
    }
    check_run(
        &result,
        result
            .output
            .contains("hello: started\nargc: 1\nargv[0]: /good\n"),
        "the good program must still run",
    );
    check_run(
        &result,
        result.output.contains("execer: done"),
        "expected `execer: done`",
    );
}

#[test]
fn our_kernel_refuses_every_malformed_elf() {
    run_corpus(ours(), System::Ours, false);
}

#[test]
fn linux_refuses_the_basic_malformations_too() {
    if let Some(linux) = linux_or_skip("the Linux check of the corpus") {
        run_corpus(linux, System::Linux, true);
    }
}

#[test]
fn corpus_mutations_change_what_they_claim() {
    let good = std::fs::read(program("hello")).expect("reading hello");
    let corpus = corpus(&good);
    assert!(corpus.len() >= 15);
    for (name, bytes, _, _) in &corpus {
        assert_ne!(bytes, &good, "{name} is identical to the good program");
    }
    let by = |n: &str| corpus.iter().find(|c| c.0 == n).unwrap().1.clone();
    assert_eq!(by("class-32bit")[4], 1);
    assert!(!phdrs(&by("has-interp"), PT_INTERP).is_empty());
    assert!(by("empty").is_empty());
}
