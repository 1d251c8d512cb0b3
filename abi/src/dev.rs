//! The device-driver system call of this kernel (not Linux's): how a
//! user-mode driver process (`nicd`, `structure=servers` with
//! `servers.nic=process`) gets at the one device the kernel assigned to it,
//! and how the network server reaches the driver's shared packet rings.
//! Kernel side: `kernel/src/drivers/userdev.rs`; docs/SERVERS.md ("The NIC
//! driver process").
//!
//! `dev_ctl(op, a1, a2)` (number `SYS_DEV_CTL`, arguments in `rdi rsi rdx`,
//! result in `rax` or `-errno`):
//!
//! | op | caller | a1, a2 | result |
//! |---|---|---|---|
//! | `DEV_INFO` | driver | pointer, length of a `DevInfo` | 0 |
//! | `DEV_MAP_BAR` | driver | BAR index | address of the whole BAR, mapped shared read/write |
//! | `DEV_DMA_ALLOC` | driver | pages (1..=`DMA_MAX_PAGES` in all), pointer to that many `u64` | address; the array gets each page's device (physical) address |
//! | `DEV_IRQ_BIND` | driver | MSI-X entry, notification handle | 0; the entry's interrupt ORs `1 << entry` into it |
//! | `DEV_RING_MAP` | driver or network server | – | address of the shared ring region (`RING_PAGES` pages) |
//! | `DEV_SET_PEER` | driver or network server | notification handle | 0; the other side's `DEV_KICK` ORs `KICK_BIT` into it |
//! | `DEV_KICK` | driver or network server | – | 0 (also when the other side has no notification now) |
//!
//! Errors: `EPERM` for a process that is not the driver (or, for the ring
//! calls, the network server); `ENODEV` when no device is assigned;
//! `EINVAL` for a BAR that is not a memory BAR or holds the MSI-X table or
//! pending-bit array, an entry out of range, an unknown op; `ENOMEM` past
//! `DMA_MAX_PAGES`; `EBADF`/`EPERM` for a handle that is not a
//! notification the caller may wait on; `EFAULT` for bad pointers.
//!
//! Must not: depend on anything (this is the `abi` crate).

/// `dev_ctl(op, a1, a2)`.
pub const SYS_DEV_CTL: u64 = 1012;

pub const DEV_INFO: u64 = 1;
pub const DEV_MAP_BAR: u64 = 2;
pub const DEV_DMA_ALLOC: u64 = 3;
pub const DEV_IRQ_BIND: u64 = 4;
pub const DEV_RING_MAP: u64 = 5;
pub const DEV_SET_PEER: u64 = 6;
pub const DEV_KICK: u64 = 7;

/// Pinned DMA pages one driver instance may hold.
pub const DMA_MAX_PAGES: u64 = 1024;
/// Pages of the shared ring region (kept by the kernel across driver
/// restarts; layout: `userland/src/nicring.rs`).
pub const RING_PAGES: u64 = 257;
/// The bit `DEV_KICK` raises in the other side's notification.
pub const KICK_BIT: u64 = 1 << 32;
/// MSI-X entries a driver may bind (their bits are `1 << entry`).
pub const IRQ_ENTRIES: u64 = 16;

/// One virtio configuration window: memory BAR, offset, length.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevWindow {
    pub bar: u32,
    pub _pad: u32,
    pub offset: u64,
    pub length: u64,
}

/// What `DEV_INFO` tells the driver about its device.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevInfo {
    pub vendor: u16,
    pub device: u16,
    /// MSI-X table entries (the kernel owns the table).
    pub msix_entries: u16,
    pub _pad: u16,
    /// Sizes of the memory BARs (0: not a mappable memory BAR).
    pub bar_sizes: [u64; 6],
    /// The virtio modern transport's windows.
    pub common: DevWindow,
    pub device_cfg: DevWindow,
    pub notify: DevWindow,
    pub notify_multiplier: u32,
    /// How many driver instances were started before this one (0 first).
    pub restarts: u32,
}

const _: () = assert!(core::mem::size_of::<DevWindow>() == 24);
const _: () = assert!(core::mem::size_of::<DevInfo>() == 8 + 48 + 72 + 8);
