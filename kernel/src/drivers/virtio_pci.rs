//! The modern (virtio 1.x) PCI transport of the kernel's virtio drivers:
//! finding a function's common/notify/device configuration windows through
//! its vendor capabilities (`windows`, also what the user-mode driver is
//! told by `drivers::userdev`) and the transport over their HHDM mappings;
//! the registers, negotiation and queue setup are the `virtio` crate's.
//!
//! Owns no device: each driver keeps its `Transport` for its function.
//! Invariants: every window handed to `virtio::transport::Transport::new`
//! lies inside an assigned memory BAR mapped by the HHDM (`bar_pointer`
//! checks).
//!
//! Must not: know about any one device type (device configuration layouts
//! belong to the drivers).

use super::pci::{self, Function};
use super::virtqueue::Virtqueue;
pub use virtio::transport::*;

/// One configuration window: BAR index, offset in the BAR, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub bar: usize,
    pub offset: u64,
    pub length: u64,
}

/// The three windows of a modern virtio function, and the notify offset
/// multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub common: Window,
    pub device_cfg: Window,
    pub notify: Window,
    pub notify_multiplier: u32,
}

/// Reads `f`'s virtio vendor capabilities: the first common window of at
/// least `COMMON_CFG_BYTES`, device window of at least `device_cfg_len`
/// (cut to that length) and notify window.
pub fn windows(f: &Function, device_cfg_len: u64) -> Option<Windows> {
    let (mut common, mut device_cfg, mut notify) = (None, None, None);
    for cap in f.capabilities_with_id(pci::CAP_VENDOR) {
        let a = f.address;
        let cfg_type = a.read8(cap + 3);
        let bar = a.read8(cap + 4) as usize;
        let offset = a.read32(cap + 8) as u64;
        let length = a.read32(cap + 12) as u64;
        match cfg_type {
            CAP_COMMON_CFG if common.is_none() && length >= COMMON_CFG_BYTES => {
                common = Some(Window {
                    bar,
                    offset,
                    length: COMMON_CFG_BYTES,
                })
            }
            CAP_DEVICE_CFG if device_cfg.is_none() && length >= device_cfg_len => {
                device_cfg = Some(Window {
                    bar,
                    offset,
                    length: device_cfg_len,
                })
            }
            CAP_NOTIFY_CFG if notify.is_none() => {
                let multiplier = a.read32(cap + 16);
                notify = Some((
                    Window {
                        bar,
                        offset,
                        length,
                    },
                    multiplier,
                ));
            }
            _ => {}
        }
    }
    let (notify, notify_multiplier) = notify?;
    Some(Windows {
        common: common?,
        device_cfg: device_cfg?,
        notify,
        notify_multiplier,
    })
}

/// The transport of one function, over the HHDM.
pub struct Transport(virtio::transport::Transport);

impl core::ops::Deref for Transport {
    type Target = virtio::transport::Transport;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Transport {
    /// The windows of `f`, with a device configuration of at least
    /// `device_cfg_len` bytes.
    pub fn find(f: &Function, device_cfg_len: u64) -> Option<Transport> {
        let w = windows(f, device_cfg_len)?;
        let ptr = |w: Window| f.bar_pointer(w.bar, w.offset, w.length);
        let (common, device_cfg, notify) = (ptr(w.common)?, ptr(w.device_cfg)?, ptr(w.notify)?);
        // SAFETY: `bar_pointer` checked each window lies in an assigned
        // memory BAR of `f` mapped by the HHDM for the kernel's life.
        Some(Transport(unsafe {
            virtio::transport::Transport::new(
                common,
                device_cfg,
                w.device_cfg.length,
                notify,
                w.notify_multiplier,
                w.notify.length,
            )
        }))
    }

    /// Sets up queue `index` with up to `max_size` entries and MSI-X entry
    /// `vector` (`NO_VECTOR`: none), in fresh DMA frames; enables it.
    pub fn setup_queue(
        &self,
        index: u16,
        max_size: u16,
        vector: u16,
    ) -> Result<Virtqueue, &'static str> {
        self.0
            .setup_queue(index, max_size, vector, super::virtqueue::alloc)
    }
}
