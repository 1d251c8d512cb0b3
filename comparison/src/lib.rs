//! Host side of the study: build the bare-metal binaries and the static test
//! programs, make boot media and initramfs archives, run QEMU with our kernel
//! or with Debian's Linux, and read what the kernel and the program print.
//!
//! The CLI (`src/main.rs`) and the QEMU integration tests (`tests/`) both use
//! this library, so a test boots the kernel exactly as a user does.
//!
//! Invariants: every QEMU run has a timeout and is killed when it expires;
//! nothing here talks to the network except `linux`, which fetches Debian's
//! kernel package once with apt (and says so), and `debian`, which fetches
//! busybox-static and bash-static the same way; the kernel's verdict is read from its
//! exit code *and* its serial markers (docs/CONTRACTS.md §4–5), never from
//! one alone.

pub mod boot;
pub mod build;
pub mod debian;
pub mod image;
pub mod initramfs;
pub mod linux;
pub mod qemu;
pub mod robustness;
pub mod run;
pub mod sharing;
pub mod skip;
pub mod suite;
pub mod userland;
pub mod workloads;
