//! The modern (virtio 1.x) PCI transport's registers (virtio 1.x §4.1):
//! the common configuration window, the device configuration window and
//! the notify window, found by whoever can read PCI configuration space
//! (the kernel: `kernel/src/drivers/virtio_pci.rs`) and mapped by whoever
//! drives the device; feature negotiation and queue setup.
//!
//! Owns no device.  Invariants: every register access is inside a window
//! whose length the constructor's caller vouched for; device memory is
//! accessed with volatile operations of the register's width.
//!
//! Must not: know about any one device type, or allocate (queue memory
//! comes from the caller's `alloc` in `setup_queue`).

use crate::queue::Virtqueue;

/// virtio PCI capability types (`cfg_type`).
pub const CAP_COMMON_CFG: u8 = 1;
pub const CAP_NOTIFY_CFG: u8 = 2;
pub const CAP_DEVICE_CFG: u8 = 4;

/// Feature bit every modern device offers.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_FAILED: u8 = 128;

/// Common configuration registers (virtio 1.x §4.1.4.3).
pub const COMMON_DEVICE_FEATURE_SELECT: usize = 0x00;
pub const COMMON_DEVICE_FEATURE: usize = 0x04;
pub const COMMON_DRIVER_FEATURE_SELECT: usize = 0x08;
pub const COMMON_DRIVER_FEATURE: usize = 0x0C;
pub const COMMON_CONFIG_MSIX_VECTOR: usize = 0x10;
pub const COMMON_NUM_QUEUES: usize = 0x12;
pub const COMMON_DEVICE_STATUS: usize = 0x14;
pub const COMMON_QUEUE_SELECT: usize = 0x16;
pub const COMMON_QUEUE_SIZE: usize = 0x18;
pub const COMMON_QUEUE_MSIX_VECTOR: usize = 0x1A;
pub const COMMON_QUEUE_ENABLE: usize = 0x1C;
pub const COMMON_QUEUE_NOTIFY_OFF: usize = 0x1E;
pub const COMMON_QUEUE_DESC: usize = 0x20;
pub const COMMON_QUEUE_DRIVER: usize = 0x28;
pub const COMMON_QUEUE_DEVICE: usize = 0x30;

/// "No MSI-X vector" for a queue or the configuration interrupt.
pub const NO_VECTOR: u16 = 0xFFFF;

/// The modern transport's register windows of one function.
pub struct Transport {
    common: *mut u8,
    device_cfg: *mut u8,
    notify_base: *mut u8,
    notify_multiplier: u32,
    notify_len: u64,
    device_cfg_len: u64,
}

// SAFETY: the windows are device registers; each driver keeps its transport
// and serialises what needs it (queue setup happens before the queues run).
unsafe impl Send for Transport {}
// SAFETY: as for Send.
unsafe impl Sync for Transport {}

/// Bytes of the common configuration window a transport needs.
pub const COMMON_CFG_BYTES: u64 = 0x38;

impl Transport {
    /// A transport over mapped windows.
    ///
    /// # Safety
    /// `common` maps `COMMON_CFG_BYTES` of the common configuration,
    /// `device_cfg` `device_cfg_len` bytes of the device configuration,
    /// `notify_base` `notify_len` bytes of the notify window, all device
    /// memory of one function that stays mapped while the transport (or a
    /// queue it set up) lives.
    pub unsafe fn new(
        common: *mut u8,
        device_cfg: *mut u8,
        device_cfg_len: u64,
        notify_base: *mut u8,
        notify_multiplier: u32,
        notify_len: u64,
    ) -> Transport {
        Transport {
            common,
            device_cfg,
            notify_base,
            notify_multiplier,
            notify_len,
            device_cfg_len,
        }
    }

    // Register accessors.  SAFETY (all): offsets are inside the common
    // configuration window (`COMMON_CFG_BYTES`) checked by `find`; device
    // memory is accessed with volatile operations of the register's width.
    pub fn r8(&self, off: usize) -> u8 {
        // SAFETY: see above.
        unsafe { self.common.add(off).read_volatile() }
    }
    pub fn w8(&self, off: usize, v: u8) {
        // SAFETY: see above.
        unsafe { self.common.add(off).write_volatile(v) }
    }
    pub fn r16(&self, off: usize) -> u16 {
        // SAFETY: see above.
        unsafe { (self.common.add(off) as *const u16).read_volatile() }
    }
    pub fn w16(&self, off: usize, v: u16) {
        // SAFETY: see above.
        unsafe { (self.common.add(off) as *mut u16).write_volatile(v) }
    }
    pub fn r32(&self, off: usize) -> u32 {
        // SAFETY: see above.
        unsafe { (self.common.add(off) as *const u32).read_volatile() }
    }
    pub fn w32(&self, off: usize, v: u32) {
        // SAFETY: see above.
        unsafe { (self.common.add(off) as *mut u32).write_volatile(v) }
    }
    pub fn w64(&self, off: usize, v: u64) {
        self.w32(off, v as u32);
        self.w32(off + 4, (v >> 32) as u32);
    }

    pub fn device_cfg_u8(&self, off: usize) -> u8 {
        assert!((off as u64) < self.device_cfg_len);
        // SAFETY: inside the device configuration window checked by `find`.
        unsafe { self.device_cfg.add(off).read_volatile() }
    }

    pub fn device_cfg_u16(&self, off: usize) -> u16 {
        assert!((off as u64) + 2 <= self.device_cfg_len);
        // SAFETY: as in `device_cfg_u8`.
        unsafe { (self.device_cfg.add(off) as *const u16).read_volatile() }
    }

    pub fn device_cfg_u32(&self, off: usize) -> u32 {
        assert!((off as u64) + 4 <= self.device_cfg_len);
        // SAFETY: as in `device_cfg_u8`.
        unsafe { (self.device_cfg.add(off) as *const u32).read_volatile() }
    }

    /// A 64-bit configuration field, read as two halves until stable
    /// (the device may change it between the reads: §4.1.3.1).
    pub fn device_cfg_u64(&self, off: usize) -> u64 {
        loop {
            let low = self.device_cfg_u32(off) as u64;
            let high = self.device_cfg_u32(off + 4) as u64;
            if self.device_cfg_u32(off) as u64 == low {
                return high << 32 | low;
            }
        }
    }

    /// Writes 0 to the device status and waits (bounded) until the device
    /// reads back 0: the device stops using every queue (virtio 1.x
    /// §4.1.4.3.2).
    pub fn reset(&self) -> Result<(), &'static str> {
        self.w8(COMMON_DEVICE_STATUS, 0);
        let mut spins = 0;
        while self.r8(COMMON_DEVICE_STATUS) != 0 {
            spins += 1;
            if spins > 1_000_000 {
                return Err("device does not reset");
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// Resets the device and sets ACKNOWLEDGE | DRIVER; then offers
    /// `choose(offered)` (plus VERSION_1) and checks FEATURES_OK.  Returns
    /// the accepted features; on failure the device is marked FAILED.
    pub fn negotiate(&self, choose: impl FnOnce(u64) -> u64) -> Result<u64, &'static str> {
        self.reset()?;
        self.add_status(STATUS_ACKNOWLEDGE);
        self.add_status(STATUS_DRIVER);
        let offered = self.device_features();
        if offered & F_VERSION_1 == 0 {
            self.add_status(STATUS_FAILED);
            return Err("device does not offer VIRTIO_F_VERSION_1");
        }
        let wanted = (choose(offered) & offered) | F_VERSION_1;
        self.set_driver_features(wanted);
        self.add_status(STATUS_FEATURES_OK);
        if self.r8(COMMON_DEVICE_STATUS) & STATUS_FEATURES_OK == 0 {
            self.add_status(STATUS_FAILED);
            return Err("device refused our features");
        }
        Ok(wanted)
    }

    pub fn add_status(&self, bits: u8) {
        let status = self.r8(COMMON_DEVICE_STATUS);
        self.w8(COMMON_DEVICE_STATUS, status | bits);
    }

    pub fn device_features(&self) -> u64 {
        self.w32(COMMON_DEVICE_FEATURE_SELECT, 0);
        let low = self.r32(COMMON_DEVICE_FEATURE) as u64;
        self.w32(COMMON_DEVICE_FEATURE_SELECT, 1);
        let high = self.r32(COMMON_DEVICE_FEATURE) as u64;
        high << 32 | low
    }

    pub fn set_driver_features(&self, features: u64) {
        self.w32(COMMON_DRIVER_FEATURE_SELECT, 0);
        self.w32(COMMON_DRIVER_FEATURE, features as u32);
        self.w32(COMMON_DRIVER_FEATURE_SELECT, 1);
        self.w32(COMMON_DRIVER_FEATURE, (features >> 32) as u32);
    }

    /// Sets up queue `index` with up to `max_size` entries and MSI-X entry
    /// `vector` (`NO_VECTOR`: none); enables it.
    /// `alloc(index, size)` makes the queue's memory (`Virtqueue::new`).
    pub fn setup_queue(
        &self,
        index: u16,
        max_size: u16,
        vector: u16,
        alloc: impl FnOnce(u16, u16) -> Option<Virtqueue>,
    ) -> Result<Virtqueue, &'static str> {
        self.w16(COMMON_QUEUE_SELECT, index);
        let device_max = self.r16(COMMON_QUEUE_SIZE);
        if device_max == 0 {
            return Err("queue not available");
        }
        let mut size = device_max.min(max_size);
        // Power of two (split rings want it), rounded down.
        size = 1 << (15 - size.leading_zeros());
        let mut vq = alloc(index, size).ok_or("out of memory for a ring")?;
        self.w16(COMMON_QUEUE_SIZE, size);
        self.w16(COMMON_QUEUE_MSIX_VECTOR, vector);
        if self.r16(COMMON_QUEUE_MSIX_VECTOR) != vector {
            return Err("device refused the queue's MSI-X vector");
        }
        let (desc, avail, used) = vq.addresses();
        self.w64(COMMON_QUEUE_DESC, desc);
        self.w64(COMMON_QUEUE_DRIVER, avail);
        self.w64(COMMON_QUEUE_DEVICE, used);
        let notify_off = self.r16(COMMON_QUEUE_NOTIFY_OFF) as u64 * self.notify_multiplier as u64;
        if notify_off + 2 > self.notify_len {
            return Err("notify offset outside the notify window");
        }
        // SAFETY: inside the notify window (checked just above).
        vq.set_notify(unsafe { self.notify_base.add(notify_off as usize) }.cast());
        self.w16(COMMON_QUEUE_ENABLE, 1);
        Ok(vq)
    }
}
