//! `comparison sharing`: cache lines shared between CPUs per operation,
//! counted by the QEMU TCG plugin of `tools/sharing-plugin` inside windows
//! that the workload binary marks (docs/SHARING.md).
//!
//! Owns the plugin's harness side (`plugin`), naming writer PCs
//! (`symbols`), the runs (`runner`) and the output files (`report`).  Must
//! not time anything: only the access pattern matters here.

pub mod pairs;
pub mod plugin;
pub mod report;
pub mod runner;
pub mod symbols;

pub use runner::{run_sharing, SharingOptions, SharingOutcome};
