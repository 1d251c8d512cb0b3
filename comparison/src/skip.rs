//! Skipped tests, never silent: the one place a test gives up for lack of a
//! prerequisite.
//!
//! Owns: the rule "under `CI`, a missing prerequisite is a failure" and the
//! skip log `<target>/test-skips.log` (one line per skip, `SKIPPED <test>:
//! <reason>`), which `run-tests.sh` clears before `cargo test` and counts
//! after it.  cargo captures the stdout of passing tests, so the log is how
//! a skip reaches the person running the suite.
//!
//! Invariants: under `CI` (set and not empty) `skip_or_fail` panics naming
//! what is missing; `skip_even_in_ci` is only for what `tools/setup.sh`
//! cannot install on any machine (Limine without `../shared/limine`).  Both
//! always print the line on stdout as well.  Must not: decide by itself
//! that something is missing; callers check and pass the reason.

use std::io::Write;
use std::path::PathBuf;

/// File name of the skip log in cargo's target directory.
pub const LOG_NAME: &str = "test-skips.log";

/// True when env `CI` is set to something other than the empty string.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The skip log: `<target>/test-skips.log`.
pub fn log_path() -> PathBuf {
    let root = crate::build::workspace_root();
    crate::build::target_dir(&root)
        .unwrap_or_else(|_| root.join("target"))
        .join(LOG_NAME)
}

/// `<test binary>::<test>` of the running test: libtest runs each test on
/// a thread named after it, and the binary is `<name>-<hash>`.
pub fn current_test() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
        .unwrap_or_else(|| "?".to_string());
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("?"))
}

/// The prerequisite `what_is_missing` is absent: under `CI` this panics
/// (the test fails, naming it); otherwise the skip is printed and logged,
/// and the caller returns without checking its subject.
#[track_caller]
pub fn skip_or_fail(what_is_missing: &str) {
    skip_or_fail_in(in_ci(), what_is_missing);
}

#[track_caller]
fn skip_or_fail_in(ci: bool, what_is_missing: &str) {
    if ci {
        panic!(
            "CI is set, so this test may not skip: {what_is_missing} \
             (tools/setup.sh installs what the tests need)"
        );
    }
    record(what_is_missing);
}

/// A counted skip even under `CI`: only for what setup cannot provide on
/// every machine (Limine's binaries are not packaged; see tools/setup.sh).
pub fn skip_even_in_ci(reason: &str) {
    record(reason);
}

fn record(reason: &str) {
    let line = format!("SKIPPED {}: {}", current_test(), reason.replace('\n', " "));
    println!("{line}");
    let path = log_path();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = written {
        eprintln!("(could not log the skip in {}: {e})", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_test_names_binary_and_thread() {
        let name = current_test();
        assert!(
            name.ends_with("::skip::tests::current_test_names_binary_and_thread"),
            "{name}"
        );
        assert!(!name.contains('-'), "{name}");
    }

    #[test]
    #[should_panic(expected = "CI is set, so this test may not skip: the moon")]
    fn under_ci_a_missing_prerequisite_fails_naming_it() {
        skip_or_fail_in(true, "the moon");
    }
}
