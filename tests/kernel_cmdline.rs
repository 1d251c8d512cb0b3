//! Host run of the kernel command-line parser's unit tests.
//!
//! `kernel/src/cmdline.rs` is plain `core` + `log` code, but the kernel crate
//! builds only for bare metal, so its `#[cfg(test)]` tests are compiled and
//! run here by including the file itself (nothing is copied).

#[allow(dead_code)]
#[path = "../kernel/src/cmdline.rs"]
mod cmdline;
