//! Per-CPU data: `PerCpu<T>`, per-CPU and sloppy counters, CPU guards.
//! (Being written; see docs/CONTRACTS.md.)
#![no_std]
