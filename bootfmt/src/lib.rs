//! Boot-time formats shared by the built-in loader, the kernel and the host CLI:
//! newc cpio archives ([`cpio`]), the Limine configuration file
//! ([`limine_conf`]) and ELF64 executables ([`elf`]).
//!
//! Invariants: every parser works on borrowed bytes, validates every offset
//! and length before use, and reports bad input as an error value; no input
//! may make it panic or loop forever (checked by the proptest suites).
//! Must not: allocate on the reading side (the loader runs without a heap),
//! or touch hardware.  The `alloc` feature adds the writing side.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod cpio;
pub mod elf;
pub mod limine_conf;
