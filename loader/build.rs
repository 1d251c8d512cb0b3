//! Build script of the loader: links the binary with `loader/linker.ld`
//! (physical address 0x100000, one RWX load segment, a PT_NOTE segment for
//! the Xen PVH entry note).  Must not: affect any other crate.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
}
