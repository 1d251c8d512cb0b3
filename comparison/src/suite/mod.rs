//! The workload suite: run the shared workloads (`wis`) on this kernel, on
//! it with global locks (`ours-global`), on it with the file system in a
//! user-mode server (`ours-servers`) and on Linux, at each core count,
//! repeated; collect records; write `results.json`, `results.csv`,
//! `report.md` and plots (SVG and PNG).
//!
//! Files: `options.rs` (what the user asked for, parsed and checked),
//! `record.rs` (one result and the result files), `stats.rs` (median,
//! spread, efficiency, ratios), `report.rs` (markdown), `plot.rs` (SVG and
//! PNG), `interrupt.rs` (Ctrl-C),
//! `batch.rs` (several workloads per boot: order, progress, one outcome
//! per workload), `runner.rs` (builds, probes the accelerator, boots,
//! measures, writes).
//!
//! Invariants: numbers from different accelerators never share a table or a
//! plot; results are written after every run, so an interrupted suite leaves
//! what it measured; a run that fails is reported, never turned into a
//! number.  It must not change how `comparison run` boots a system: it goes
//! through `crate::run` like a user does.

pub mod batch;
pub mod interrupt;
pub mod options;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;
pub mod stats;

pub use options::{AccelChoice, SuiteOptions, SuiteSystem};
pub use record::Record;
pub use runner::{run_suite, SuiteOutcome};
