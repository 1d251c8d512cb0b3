//! Ctrl-C during a suite: the first SIGINT sets a flag and kills the QEMU
//! this process is running (its direct children whose name starts with
//! `qemu`), so the runner finishes the current step at once, writes every
//! result file for what was measured and says so; a second SIGINT exits
//! immediately with status 130.
//!
//! Invariants: only our own QEMU children are signalled, found by their
//! parent pid in /proc; the handler is installed at most once per process
//! and only by `install` (the suite calls it when measuring starts, so a
//! Ctrl-C while cargo builds still stops everything at once).  It must not
//! write files: the runner does, after it sees `interrupted()`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C (SIGINT) was received since `install`.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Install the SIGINT handler (once per process; later calls do nothing).
/// Fails only if another handler was installed through `ctrlc` already.
pub fn install() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            ctrlc::set_handler(|| {
                if INTERRUPTED.swap(true, Ordering::SeqCst) {
                    eprintln!("\nsuite: second Ctrl-C: exiting now");
                    std::process::exit(130);
                }
                eprintln!(
                    "\nsuite: Ctrl-C: stopping the running QEMU, then writing what was measured \
                     (Ctrl-C again to quit at once)"
                );
                for pid in qemu_children(std::process::id()) {
                    // SAFETY: kill touches no memory.  `pid` was our QEMU
                    // child when /proc was read; another process could only
                    // be hit if QEMU were reaped and its pid reused in the
                    // instant between that read and this call.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
            })
            .map_err(|e| format!("installing the Ctrl-C handler: {e}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The process ids of `parent`'s children whose command name starts with
/// `qemu`, from /proc/<pid>/stat.
pub fn qemu_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(comm, ppid)| ppid == parent && comm.starts_with("qemu"))
        })
        .collect()
}

/// (command name, parent pid) of a /proc/<pid>/stat line.  The name is in
/// parentheses and may itself hold spaces and parentheses, so the fields
/// after it are found from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        assert_eq!(
            parse_stat("1234 (qemu-system-x86) S 99 1234 1 0 -1"),
            Some(("qemu-system-x86".to_string(), 99))
        );
        assert_eq!(
            parse_stat("7 (a) b (c)) R 42 7"),
            Some(("a) b (c)".to_string(), 42))
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn children_are_found_by_parent_and_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawning sleep");
        // A child named `sleep` is not QEMU; nothing of ours is either.
        assert!(!qemu_children(std::process::id()).contains(&child.id()));
        assert!(qemu_children(std::process::id()).is_empty());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
