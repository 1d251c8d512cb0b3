//! The Linux x86_64 user ABI, in one place: what the kernel, the `fs` and
//! `net` libraries and the static test programs must agree on.
//!
//! Owns: the errno table (values and names, [`Errno`]), the flag and
//! constant sets that cross the system-call boundary ([`fcntl`], [`mman`],
//! [`signal`], [`socket`], [`poll`], [`time`]) and the `#[repr(C)]`
//! structures user programs pass by pointer ([`structs`]), each checked at
//! compile time against the size Linux gives it.
//!
//! Invariants: every number is Linux's for x86_64 (the values of
//! `asm-generic/errno*.h`, `asm-generic/fcntl.h`, `asm/stat.h`, ...), so a
//! static Linux program sees the same behaviour here as on Linux; every
//! structure has its padding spelled out as named fields, so it has no
//! implicit padding bytes and can be copied to user memory byte for byte.
//!
//! The exceptions to "Linux's numbers": [`ipc`], this kernel's own IPC
//! calls (numbered above Linux's), which its user programs must share too,
//! and [`dev`], its device-driver call.
//!
//! Must not: depend on anything, use `unsafe`, or grow kernel-private codes
//! or structures (those live with their owner).
#![no_std]
#![forbid(unsafe_code)]

pub mod dev;
pub mod fcntl;
pub mod ipc;
pub mod mman;
pub mod poll;
pub mod signal;
pub mod socket;
pub mod structs;
mod table;
pub mod time;

pub use table::{errno, Errno};

/// What a system call handler returns: the value for `rax`, or the error
/// whose negation goes there.
pub type SysResult = Result<usize, Errno>;
