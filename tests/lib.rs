//! Shared helpers of the QEMU integration tests (being written).
