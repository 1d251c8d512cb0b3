//! Physical frame allocator and kernel heap logic, host-testable.
//! (Being written.)
#![no_std]
