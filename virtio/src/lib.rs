//! The host-independent half of the virtio drivers: the split virtqueue
//! (`queue`) and the modern PCI transport's register windows (`transport`).
//! The kernel's drivers (`kernel/src/drivers/virtio_*.rs`) and the
//! user-mode NIC driver (`userland/src/bin/nicd.rs`) both use it; each
//! brings its own memory: the kernel its HHDM pointers and frames, the
//! driver process the BAR and DMA mappings the kernel gave it.
//!
//! Owns no memory and no device.  Invariants: everything here touches only
//! the pointers its constructor was given (whose validity is the caller's
//! `unsafe` promise), with volatile accesses of the register's width.
//!
//! Must not: allocate, know where the memory comes from, or know any one
//! device type (device configuration layouts belong to the drivers).
#![no_std]

pub mod queue;
pub mod transport;
