//! Host side of the study: build the bare-metal binaries, make boot media,
//! run QEMU and read what the kernel prints.
//!
//! The CLI (`src/main.rs`) and the QEMU integration tests (`tests/`) both use
//! this library, so a test boots the kernel exactly as a user does.
//!
//! Invariants: every QEMU run has a timeout and is killed when it expires;
//! nothing here talks to the network; the kernel's verdict is read from its
//! exit code *and* its serial markers (docs/CONTRACTS.md §4–5), never from
//! one alone.

pub mod boot;
pub mod build;
pub mod image;
pub mod qemu;
