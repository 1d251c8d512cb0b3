//! Sockets over a per-core TCP/IP stack: a `no_std` + `alloc` library that the
//! kernel glues in and that `cargo test` exercises on the host.
//!
//! Not written yet: issue "net/: per-core TCP/IP" delivers it.  This crate
//! must never depend on `kernel`.
#![no_std]
