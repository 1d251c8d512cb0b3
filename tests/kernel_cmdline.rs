//! Host run of the kernel command-line parser's unit tests.
//!
//! `kernel/src/cmdline.rs` is plain `core` + `log` code, but the kernel crate
//! builds only for bare metal, so its `#[cfg(test)]` tests are compiled and
//! run here by including the file itself (nothing is copied); so are the
//! tests of the server-migration policy (`kernel/src/ipc/migrate_policy.rs`).

#[allow(dead_code)]
#[path = "../kernel/src/cmdline.rs"]
mod cmdline;

/// The server-thread migration policy (`kernel/src/ipc/migrate_policy.rs`,
/// pure code as well) runs its tests here too.
#[allow(dead_code)]
#[path = "../kernel/src/ipc/migrate_policy.rs"]
mod migrate_policy;
