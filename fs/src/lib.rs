//! The VFS, tmpfs and page cache of the kernel: a `no_std` + `alloc` library
//! that the kernel glues in and that `cargo test` exercises on the host.
//!
//! Not written yet: issue "fs/: a per-core scalable VFS" delivers it.  This
//! crate must never depend on `kernel`; it asks for CPU id, pages and time
//! through small traits the kernel implements.
#![no_std]
