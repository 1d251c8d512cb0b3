//! Build script of the kernel binary: hands the linker script to the linker.
//!
//! Owns only the link arguments of the `kernel` binary; it must not generate
//! code or touch anything outside this crate.

use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = dir.join("linker.ld");
    // Only the bare-metal build links with our script; a host `cargo check`
    // of the workspace must not try to place a Linux binary at -2 GiB.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // 4 KiB segment alignment so each PT_LOAD can get its own permissions.
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=0x1000");
    }
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
