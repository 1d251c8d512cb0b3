//! Unpacking the initramfs into the root tmpfs: the kernel's side of
//! `fs::initramfs` (the rules are there, shared with the file server).
//!
//! Owns nothing after it returns.  Must not: panic on any archive (a
//! malformed one is an error message).

use alloc::string::String;

use super::root_fs;

/// Unpacks `archive` into the root; returns the number of members stored.
pub fn unpack_initramfs(archive: &[u8]) -> Result<usize, String> {
    unpack_matching(archive, |_| true)
}

/// Unpacks only the members whose name (without a leading `/` or `./`)
/// `keep` accepts (`root=`: just PID 1's `/.init/` files).
pub fn unpack_matching(archive: &[u8], keep: impl Fn(&str) -> bool) -> Result<usize, String> {
    let done = ::fs::initramfs::unpack(root_fs(), archive, keep)?;
    if done.skipped > 0 {
        log::warn!(
            "initramfs: {} member(s) of other file types skipped",
            done.skipped
        );
    }
    Ok(done.stored)
}
