//! This kernel's device-driver call (`abi::dev`, `kernel/src/drivers/
//! userdev.rs`): thin wrappers for the NIC driver `nicd` and the network
//! server `netd`.  On Linux every call is `ENOSYS`.
//!
//! Owns nothing.  Must not: interpret the results (the callers check
//! sizes against `DevInfo`).

use abi::dev::*;

fn dev_ctl(op: u64, a1: u64, a2: u64) -> Result<u64, i32> {
    // SAFETY: `dev_ctl` writes only into the buffers it is given (checked
    // by the kernel: EFAULT) and maps new memory; it changes nothing else
    // of this process.
    let r = unsafe { libc::syscall(SYS_DEV_CTL as libc::c_long, op, a1, a2) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as u64)
    }
}

/// What the kernel says about the assigned device.
pub fn info() -> Result<DevInfo, i32> {
    let mut info = DevInfo::default();
    dev_ctl(
        DEV_INFO,
        &mut info as *mut DevInfo as u64,
        core::mem::size_of::<DevInfo>() as u64,
    )?;
    Ok(info)
}

/// Maps memory BAR `bar` (its whole size, `DevInfo::bar_sizes`).
pub fn map_bar(bar: u32) -> Result<*mut u8, i32> {
    dev_ctl(DEV_MAP_BAR, u64::from(bar), 0).map(|a| a as *mut u8)
}

/// `pages` pinned zeroed pages: their address here and each page's device
/// address.
pub fn dma_alloc(pages: usize) -> Result<(*mut u8, Vec<u64>), i32> {
    let mut phys = vec![0u64; pages];
    let addr = dev_ctl(DEV_DMA_ALLOC, pages as u64, phys.as_mut_ptr() as u64)?;
    Ok((addr as *mut u8, phys))
}

/// MSI-X entry `entry` raises `1 << entry` in `notification`.
pub fn irq_bind(entry: u16, notification: u64) -> Result<(), i32> {
    dev_ctl(DEV_IRQ_BIND, u64::from(entry), notification).map(|_| ())
}

/// Maps the shared ring region (`RING_PAGES` pages).
pub fn ring_map() -> Result<*mut u8, i32> {
    dev_ctl(DEV_RING_MAP, 0, 0).map(|a| a as *mut u8)
}

/// The other side's kicks raise `KICK_BIT` in `notification`.
pub fn set_peer(notification: u64) -> Result<(), i32> {
    dev_ctl(DEV_SET_PEER, notification, 0).map(|_| ())
}

/// Raises `KICK_BIT` in the other side's notification.
pub fn kick() -> Result<(), i32> {
    dev_ctl(DEV_KICK, 0, 0).map(|_| ())
}
