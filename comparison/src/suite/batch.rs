//! Several workloads per boot: the order of one boot's workloads (shuffled
//! per run from a recorded seed), the watchdog's idea of progress, and
//! turning one boot's output into one outcome per workload.
//!
//! A boot runs `wis W1,W2,... --announce`: wis prints `wis: running W`
//! on stderr before each workload, then the workload's JSON result line on
//! stdout, or its `wis: W: ...` error lines on stderr; each workload has
//! its own fresh scratch directory (wis makes and removes it).  `settle`
//! reads that back: a workload with a result line is measured; one that
//! printed errors and no result failed with wis's first error; the one that
//! was running when the boot ended early (timeout, panic) failed with why
//! the boot ended; those not started by then go to a fresh boot, as long
//! as the boot made progress (so retries are bounded by the workload count).
//! `classify` turns a failure that means "this system cannot run that"
//! (wis says `does not apply on this system`, or a system's known limit
//! matches) into its own outcome, shown as n/a and never as a number.
//!
//! Invariants: every workload of a boot gets exactly one outcome or goes
//! to the retry list, never both; a result line is only accepted for the
//! workload, mode and worker count that were asked for.  Pure functions:
//! no I/O, no clock (the runner boots and records).

use super::options::Mode;
use super::record::{parse_wis_output, WisLine};
use anyhow::{bail, Result};

/// What wis prints on stderr before each workload with `--announce`
/// (comparison/workloads/src/main.rs).
pub const ANNOUNCE: &str = "wis: running ";

/// The order of the workloads in the boots of run `run`: a Fisher–Yates
/// shuffle driven by splitmix64 from (`seed`, `run`).  Every system and
/// core count of a run gets the same order, so systems are compared with
/// each workload at the same place; runs differ, so no workload always
/// comes first (or right after the same neighbour).
pub fn order_for_run(workloads: &[String], seed: u64, run: u32) -> Vec<String> {
    let mut state = seed
        ^ u64::from(run)
            .wrapping_add(1)
            .wrapping_mul(0xA076_1D64_78BD_642F);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order = workloads.to_vec();
    for i in (1..order.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// `order` cut into boots of at most `per_boot` workloads (0: all in one).
pub fn boots_of(order: &[String], per_boot: usize) -> Vec<Vec<String>> {
    if order.is_empty() {
        return Vec::new();
    }
    let size = if per_boot == 0 { order.len() } else { per_boot };
    order.chunks(size).map(<[String]>::to_vec).collect()
}

/// A line that shows a multi-workload boot is moving: an announcement, a
/// result or an error line of wis (the watchdog restarts its clock).
pub fn is_progress(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("wis: ") || (line.starts_with('{') && line.contains("\"workload\""))
}

/// How a boot ended, as far as `settle` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootEnd {
    /// wis (PID 1) exited with this status.
    Exited(u32),
    /// The boot ended otherwise: why (`timed out ...`, `system failed: ...`).
    Ended(String),
}

/// One workload's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(WisLine),
    /// Why there is no result (one line).
    Failed(String),
    /// The workload cannot run on this system (one line: why).  Not a
    /// failure and never a number: the report shows "n/a" and the reason.
    NotApplicable(String),
}

/// What a workload prints (in its `wis: NAME: ...` error) when the system
/// lacks what it measures, e.g. `ipc_call` on Linux
/// (comparison/workloads/src/system.rs).
pub const DOES_NOT_APPLY: &str = "does not apply on this system";

/// A failure that means the workload does not apply: wis said so
/// (`DOES_NOT_APPLY`), or `known` (the system's known limits,
/// `SuiteSystem::unsupported_reason`) recognises the message.  Other
/// outcomes are returned unchanged.
pub fn classify(outcome: Outcome, known: impl Fn(&str) -> Option<&'static str>) -> Outcome {
    match outcome {
        Outcome::Failed(why) if why.contains(DOES_NOT_APPLY) => Outcome::NotApplicable(
            why.strip_prefix("wis: ")
                .unwrap_or(why.as_str())
                .to_string(),
        ),
        Outcome::Failed(why) => match known(&why) {
            Some(reason) => Outcome::NotApplicable(format!("{reason} (`{why}`)")),
            None => Outcome::Failed(why),
        },
        other => other,
    }
}

/// What one boot settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// (workload, its place in the boot, outcome), in the boot's order.
    pub outcomes: Vec<(String, usize, Outcome)>,
    /// Workloads the boot did not reach: run them in a fresh boot.
    pub retry: Vec<String>,
}

/// Check a parsed `wis` line against what was asked.
pub fn check_line(line: &WisLine, workload: &str, mode: Mode, threads: usize) -> Result<()> {
    if line.workload != workload {
        bail!(
            "wis reported workload `{}`, expected `{workload}`",
            line.workload
        );
    }
    if line.mode != mode.name() {
        bail!(
            "wis reported mode `{}`, expected `{}`",
            line.mode,
            mode.name()
        );
    }
    if line.workers as usize != threads {
        bail!("wis reported {} workers, expected {threads}", line.workers);
    }
    Ok(())
}

/// The workload a `wis: NAME: ...` line is about, if it is one of `batch`.
fn message_of<'a>(line: &str, batch: &'a [String]) -> Option<&'a String> {
    let rest = line.strip_prefix("wis: ")?;
    let (name, _) = rest.split_once(':')?;
    batch.iter().find(|w| *w == name)
}

/// One outcome per workload of `batch` (in that order) from the program
/// output of its boot, plus the workloads to run again.
pub fn settle(
    batch: &[String],
    output: &str,
    end: &BootEnd,
    mode: Mode,
    threads: usize,
) -> Settled {
    let mut begun: Vec<usize> = Vec::new();
    let mut results: Vec<Option<Result<WisLine, String>>> = vec![None; batch.len()];
    let mut messages: Vec<Option<String>> = vec![None; batch.len()];
    // wis's own error before or outside any workload (bad CPU count, mount).
    let mut general: Option<String> = None;
    let index = |name: &str| batch.iter().position(|w| w == name);
    for line in output.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix(ANNOUNCE) {
            if let Some(i) = index(name.trim()) {
                if !begun.contains(&i) {
                    begun.push(i);
                }
            }
        } else if line.starts_with('{') && line.contains("\"workload\"") {
            let parsed = parse_wis_output(line).map_err(|e| format!("{e:#}"));
            let name = match &parsed {
                Ok(l) => l.workload.clone(),
                Err(_) => match begun.last() {
                    Some(&i) => batch[i].clone(),
                    None => continue,
                },
            };
            let Some(i) = index(&name) else { continue };
            let checked = parsed.and_then(|l| {
                check_line(&l, &batch[i], mode, threads)
                    .map(|()| l)
                    .map_err(|e| format!("{e:#}"))
            });
            results[i] = Some(if results[i].is_some() {
                Err(format!("wis printed two result lines for {name}"))
            } else {
                checked
            });
        } else if let Some(w) = message_of(line, batch) {
            let i = index(w).expect("a workload of the batch");
            messages[i].get_or_insert_with(|| line.to_string());
        } else if line.starts_with("wis: ") && general.is_none() {
            general = Some(line.to_string());
        }
    }
    let last_begun = begun.last().copied();
    let progressed = !begun.is_empty();
    let mut settled = Settled {
        outcomes: Vec::new(),
        retry: Vec::new(),
    };
    for (i, w) in batch.iter().enumerate() {
        let message = messages[i].clone();
        let outcome = match (&results[i], end) {
            (Some(Ok(line)), _) => Outcome::Measured(line.clone()),
            (Some(Err(why)), _) => Outcome::Failed(why.clone()),
            (None, BootEnd::Ended(why)) if Some(i) == last_begun => {
                Outcome::Failed(match message {
                    Some(m) => format!("{why} while it ran (after `{m}`)"),
                    None => format!("{why} while it ran"),
                })
            }
            (None, _) if begun.contains(&i) => Outcome::Failed(message.unwrap_or_else(|| {
                let how = match end {
                    BootEnd::Exited(s) => format!("wis exited with status {s}"),
                    BootEnd::Ended(why) => why.clone(),
                };
                format!("no result line and no message ({how})")
            })),
            (None, BootEnd::Ended(_)) if progressed => {
                settled.retry.push(w.clone());
                continue;
            }
            (None, BootEnd::Ended(why)) => {
                Outcome::Failed(format!("{why} before any workload started"))
            }
            (None, BootEnd::Exited(s)) => Outcome::Failed(match message.or(general.clone()) {
                Some(m) => m,
                None => format!("wis exited with status {s} without running it"),
            }),
        };
        settled.outcomes.push((w.clone(), i, outcome));
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn result(name: &str, workers: u32, rate: f64) -> String {
        format!(
            "{{\"workload\":\"{name}\",\"mode\":\"threads\",\"workers\":{workers},\"ops\":10,\"seconds\":0.3,\"ops_per_sec\":{rate}}}"
        )
    }

    fn rate(o: &Outcome) -> Option<f64> {
        match o {
            Outcome::Measured(l) => Some(l.ops_per_sec),
            Outcome::Failed(_) | Outcome::NotApplicable(_) => None,
        }
    }

    fn failure(o: &Outcome) -> &str {
        match o {
            Outcome::Failed(why) => why,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn does_not_apply_is_its_own_outcome() {
        // What wis prints for ipc_call on Linux, between two measured workloads.
        let batch = names(&["getppid", "ipc_call", "seq_read"]);
        let out = format!(
            "wis: running getppid\n{}\nwis: running ipc_call\nwis: ipc_call: worker 0: ipc_call does not apply on this system (it has no such IPC): ipc_endpoint_create failed: ENOSYS\nwis: ipc_call: a worker failed (see above)\nwis: running seq_read\n{}\n",
            result("getppid", 1, 1.0),
            result("seq_read", 1, 2.0)
        );
        let s = settle(&batch, &out, &BootEnd::Exited(1), Mode::Threads, 1);
        let none = |_: &str| None;
        let got: Vec<Outcome> = s
            .outcomes
            .into_iter()
            .map(|(_, _, o)| classify(o, none))
            .collect();
        assert_eq!(rate(&got[0]), Some(1.0));
        assert_eq!(
            got[1],
            Outcome::NotApplicable(
                "ipc_call: worker 0: ipc_call does not apply on this system (it has no such IPC): ipc_endpoint_create failed: ENOSYS".into()
            )
        );
        assert_eq!(rate(&got[2]), Some(2.0));
        // A system's known limit: only the messages it names.
        let servers = |m: &str| {
            (m.contains("mmap") && m.contains("ENODEV")).then_some("file mmap is not delegated")
        };
        let mmap = "wis: mmap_read_shared: worker 0: mmap of /tmp/x failed: ENODEV";
        assert_eq!(
            classify(Outcome::Failed(mmap.into()), servers),
            Outcome::NotApplicable(format!("file mmap is not delegated (`{mmap}`)"))
        );
        let other = "wis: seq_read: worker 0: read failed: EIO";
        assert_eq!(
            classify(Outcome::Failed(other.into()), servers),
            Outcome::Failed(other.into())
        );
        let measured = Outcome::Measured(parse_wis_output(&result("a", 1, 3.0)).unwrap());
        assert_eq!(classify(measured.clone(), servers), measured);
    }

    #[test]
    fn order_is_a_reproducible_permutation_that_changes_per_run() {
        let all = names(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        let first = order_for_run(&all, 42, 0);
        assert_eq!(first, order_for_run(&all, 42, 0), "same seed, same order");
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, all, "a permutation");
        let runs: Vec<Vec<String>> = (0..6).map(|r| order_for_run(&all, 42, r)).collect();
        assert!(runs.windows(2).any(|w| w[0] != w[1]), "runs differ");
        // Over many runs every workload is first at least once.
        let firsts: std::collections::BTreeSet<String> = (0..200)
            .map(|r| order_for_run(&all, 7, r)[0].clone())
            .collect();
        assert_eq!(firsts.len(), all.len(), "{firsts:?}");
        assert_ne!(order_for_run(&all, 1, 0), order_for_run(&all, 2, 0));
        assert!(order_for_run(&[], 1, 0).is_empty());
        assert_eq!(order_for_run(&names(&["x"]), 1, 3), names(&["x"]));
    }

    #[test]
    fn boots_cut_the_order() {
        let all = names(&["a", "b", "c"]);
        assert_eq!(boots_of(&all, 0), vec![all.clone()]);
        assert_eq!(boots_of(&all, 2), vec![names(&["a", "b"]), names(&["c"])]);
        assert_eq!(boots_of(&all, 1).len(), 3);
        assert!(boots_of(&[], 0).is_empty());
    }

    #[test]
    fn progress_lines() {
        assert!(is_progress("wis: running getppid\n"));
        assert!(is_progress("wis: tcp_rr: worker 1: connect: ECONNREFUSED"));
        assert!(is_progress(&result("getppid", 1, 5.0)));
        assert!(!is_progress("[cpu0] INFO init exit: 0"));
        assert!(!is_progress("[    1.234] random: crng init done"));
    }

    #[test]
    fn every_workload_of_a_clean_boot_is_measured_in_order() {
        let batch = names(&["b", "a"]);
        let out = format!(
            "wis: running b\n{}\nwis: running a\n{}\n",
            result("b", 2, 20.0),
            result("a", 2, 10.0)
        );
        let s = settle(&batch, &out, &BootEnd::Exited(0), Mode::Threads, 2);
        assert!(s.retry.is_empty());
        let got: Vec<(&str, usize, Option<f64>)> = s
            .outcomes
            .iter()
            .map(|(w, p, o)| (w.as_str(), *p, rate(o)))
            .collect();
        assert_eq!(got, vec![("b", 0, Some(20.0)), ("a", 1, Some(10.0))]);
    }

    #[test]
    fn a_failing_workload_fails_alone() {
        let batch = names(&["a", "b", "c"]);
        let out = format!(
            "wis: running a\n{}\nwis: running b\nwis: b: worker 1: socket: EAFNOSUPPORT\nwis: b: a worker failed (see above)\nwis: running c\n{}\n",
            result("a", 1, 1.0),
            result("c", 1, 3.0)
        );
        let s = settle(&batch, &out, &BootEnd::Exited(1), Mode::Threads, 1);
        assert!(s.retry.is_empty());
        assert_eq!(rate(&s.outcomes[0].2), Some(1.0));
        assert_eq!(
            failure(&s.outcomes[1].2),
            "wis: b: worker 1: socket: EAFNOSUPPORT"
        );
        assert_eq!(rate(&s.outcomes[2].2), Some(3.0));
    }

    #[test]
    fn a_hang_fails_the_running_workload_and_retries_the_rest() {
        let batch = names(&["a", "b", "c", "d"]);
        let out = format!("wis: running a\n{}\nwis: running b\n", result("a", 1, 1.0));
        let end = BootEnd::Ended("timed out: no progress for 120 s".into());
        let s = settle(&batch, &out, &end, Mode::Threads, 1);
        assert_eq!(s.outcomes.len(), 2);
        assert_eq!(rate(&s.outcomes[0].2), Some(1.0));
        assert_eq!(
            failure(&s.outcomes[1].2),
            "timed out: no progress for 120 s while it ran"
        );
        assert_eq!(s.retry, names(&["c", "d"]));
    }

    #[test]
    fn a_boot_that_never_starts_a_workload_fails_them_all_without_retry() {
        let batch = names(&["a", "b"]);
        let end = BootEnd::Ended("system failed: KERNEL PANIC on cpu 0: boom".into());
        let s = settle(&batch, "", &end, Mode::Threads, 1);
        assert!(s.retry.is_empty());
        assert_eq!(s.outcomes.len(), 2);
        assert!(failure(&s.outcomes[1].2).contains("before any workload started"));
        // wis refused to start: its message is every workload's reason.
        let out = "wis: --threads 4: worker 3 must run on CPU 3, which this process may not use\n";
        let s = settle(&batch, out, &BootEnd::Exited(1), Mode::Threads, 4);
        assert!(s.retry.is_empty());
        for (_, _, o) in &s.outcomes {
            assert!(failure(o).contains("worker 3 must run on CPU 3"));
        }
    }

    #[test]
    fn a_crash_between_workloads_retries_the_rest() {
        let batch = names(&["a", "b"]);
        let out = format!("wis: running a\n{}\n", result("a", 1, 1.0));
        let end = BootEnd::Ended("system failed: KERNEL PANIC".into());
        let s = settle(&batch, &out, &end, Mode::Threads, 1);
        assert_eq!(s.outcomes.len(), 1);
        assert_eq!(s.retry, names(&["b"]));
    }

    #[test]
    fn wrong_or_doubled_result_lines_are_failures() {
        let batch = names(&["a", "b", "c"]);
        let out = format!(
            "wis: running a\n{}\nwis: running b\n{}\n{}\nwis: running c\n{{\"workload\":\"c\",\"workers\":1}}\n",
            result("a", 2, 1.0),
            result("b", 1, 1.0),
            result("b", 1, 1.0)
        );
        let s = settle(&batch, &out, &BootEnd::Exited(0), Mode::Threads, 1);
        assert!(failure(&s.outcomes[0].2).contains("2 workers, expected 1"));
        assert!(failure(&s.outcomes[1].2).contains("two result lines"));
        assert!(failure(&s.outcomes[2].2).contains("ops_per_sec"));
        // A line for a workload not in the boot is ignored.
        let other = format!("wis: running a\n{}\n", result("zz", 1, 1.0));
        let s = settle(
            &names(&["a"]),
            &other,
            &BootEnd::Exited(0),
            Mode::Threads,
            1,
        );
        assert!(failure(&s.outcomes[0].2).contains("no result line"));
    }

    #[test]
    fn check_line_compares_what_was_asked() {
        let line = parse_wis_output(
            "{\"workload\":\"stat\",\"mode\":\"procs\",\"workers\":2,\"ops_per_sec\":1}",
        )
        .unwrap();
        assert!(check_line(&line, "stat", Mode::Procs, 2).is_ok());
        assert!(check_line(&line, "stat", Mode::Threads, 2).is_err());
        assert!(check_line(&line, "stat", Mode::Procs, 1).is_err());
        assert!(check_line(&line, "getppid", Mode::Procs, 2).is_err());
    }
}
