//! The COMMUTER pair table (`comparison commuter`, comparison/src/sharing/
//! pairs.rs) on our kernel at 2 vCPUs under the sharing plugin: the table
//! files are written, a pair that the per-CPU design makes conflict-free
//! (getpid || getpid) has no conflict line, and the non-commuting controls
//! (two CPUs writing one user line; two creates of one name) have at least
//! one.  A plugin that does not build or load is a failure, never a skip.

use comparison::sharing::pairs::{run_pairs, PairsOptions};
use comparison::suite::options::SuiteSystem;
use std::time::Duration;

#[test]
fn pair_table_on_our_kernel_separates_commuting_pairs_from_controls() {
    let root = comparison::build::workspace_root();
    let out = comparison::build::target_dir(&root)
        .unwrap()
        .join("sharing-tests")
        .join("commuter");
    let _ = std::fs::remove_dir_all(&out);
    let outcome = run_pairs(&PairsOptions {
        systems: vec![SuiteSystem::Ours],
        cores: 2,
        reps: 3,
        only: Some(
            "getpid,stat_same_file,control_shared_user_line,control_create_same_name".into(),
        ),
        out: out.clone(),
        timeout: Duration::from_secs(300),
        memory_mib: 512,
        verbose: false,
    })
    .expect("running the pair table");
    let column = &outcome.columns[0];
    assert_eq!(
        column.failure, None,
        "ours gave no table:\n{}",
        outcome.markdown
    );
    for file in [
        "pairs.md",
        "pairs.csv",
        "records-ours.jsonl",
        "output-ours.txt",
    ] {
        assert!(out.join(file).is_file(), "{file} was not written");
    }
    let cell = |name: &str| {
        column
            .cells
            .get(name)
            .unwrap_or_else(|| panic!("no cell for {name}:\n{}", outcome.markdown))
    };
    for name in [
        "getpid",
        "stat_same_file",
        "control_shared_user_line",
        "control_create_same_name",
    ] {
        let c = cell(name);
        assert_eq!(
            c.runs, 3,
            "{name}: one record per concurrent run:\n{}",
            outcome.markdown
        );
        assert!(!c.verdict.contains("WRONG"), "{name}: {}", c.verdict);
    }
    assert!(
        cell("getpid").conflict_free(),
        "getpid || getpid conflicts on ours:\n{}",
        outcome.markdown
    );
    for control in ["control_shared_user_line", "control_create_same_name"] {
        let c = cell(control);
        assert!(
            c.verdict.ends_with("order-dependent"),
            "{control}: {}",
            c.verdict
        );
        assert!(
            c.min_conflicts >= 1,
            "{control} shows no conflict line:\n{}",
            outcome.markdown
        );
    }
    // The user-line control is written by user code on both CPUs.
    assert_eq!(cell("control_shared_user_line").top[0].0, "user");
    assert!(
        outcome.markdown.contains("| getpid | 0 |"),
        "{}",
        outcome.markdown
    );
}
