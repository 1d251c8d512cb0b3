//! Device drivers: PCI enumeration, the virtio-net NIC and virtio-blk disks.
//!
//! Owns the device interrupt vectors `DEVICE_VECTOR_BASE ..
//! DEVICE_VECTOR_BASE + DEVICE_VECTOR_COUNT` (MSI-X targets) and the one
//! probe at boot (`init`), which logs every PCI function and whether a NIC
//! was found, then starts every virtio disk.  The network glue reaches the card through `net::nic()`
//! (docs/KERNEL-MODULES.md, "drivers -> net glue").
//!
//! Must not: fail the boot (a missing or broken NIC is logged, and the
//! kernel runs without one); do more than acknowledge-and-flag work in
//! `handle_interrupt`.

pub mod dma;
mod mcfg;
pub mod pci;
pub mod userdev;
pub mod virtio_blk;
pub mod virtio_net;
mod virtio_pci;
pub mod virtqueue;

/// First interrupt vector for device MSI-X messages.
pub const DEVICE_VECTOR_BASE: u8 = 0x40;
/// First vector of the disks (one per request queue of each disk).
const BLK_VECTOR_BASE: u8 = DEVICE_VECTOR_BASE + virtio_net::VECTORS_USED;
/// Vectors reserved for devices (config + one per rx queue of the NIC,
/// then the disks' queues).
pub const DEVICE_VECTOR_COUNT: u8 = virtio_net::VECTORS_USED + virtio_blk::VECTORS_USED;

/// The interface the network glue uses.
pub mod net {
    pub use super::virtio_net::{nic, Nic, NicCounters, TxError, MAX_FRAME_BYTES};
}

/// The interface address: `net=` from the command line, else QEMU
/// user-mode networking's 10.0.2.15/24 via 10.0.2.2.
pub fn net_config() -> crate::cmdline::NetConfig {
    crate::boot::cmdline()
        .ok()
        .and_then(crate::cmdline::net_config)
        .unwrap_or(crate::cmdline::NetConfig::USER_MODE_DEFAULT)
}

/// Scans PCI and starts the NIC and the disks.  Thread context, after
/// every CPU is online (MSI-X targets need their APIC ids) and before the
/// run mode starts.
pub fn init() {
    pci::init_config_access();
    let functions = pci::scan();
    if nic_for_process() {
        // structure=servers with servers.nic=process: the NIC goes to the
        // user-mode driver (`userdev`), the kernel's driver stays off.
        if let Some(f) = functions.iter().find(|f| virtio_net::is_nic(f)) {
            match userdev::claim(f) {
                Ok(()) => {
                    virtio_blk::probe(&functions, BLK_VECTOR_BASE);
                    return;
                }
                Err(e) => log::warn!(
                    "userdev: virtio-net not assigned ({}); the kernel drives it",
                    e
                ),
            }
        }
    }
    match virtio_net::probe(&functions) {
        Ok(Some(_)) => {}
        Ok(None) => log::info!("net: no NIC found (no virtio-net PCI function)"),
        Err(e) => log::warn!("net: virtio-net found but not started: {}", e),
    }
    virtio_blk::probe(&functions, BLK_VECTOR_BASE);
}

/// Whether the NIC goes to a driver process (`structure=servers`,
/// `servers.nic=process`, running PID 1: only then are the servers
/// started; other run modes such as `nettest` keep the kernel's driver).
fn nic_for_process() -> bool {
    let o = crate::cmdline::options();
    o.structure == crate::cmdline::Structure::Servers
        && o.nic == crate::cmdline::NicDriver::Process
        && o.run == crate::cmdline::RunMode::Init
}

/// Called by `arch::interrupts::dispatch` after the EOI for a vector in the
/// device range.  Interrupt context: no allocation, blocking or logging.
pub fn handle_interrupt(vector: u8) {
    if vector >= BLK_VECTOR_BASE {
        virtio_blk::on_interrupt(vector - BLK_VECTOR_BASE);
    } else {
        // At most one of the two drives the NIC; the other returns at once.
        virtio_net::on_interrupt(vector - DEVICE_VECTOR_BASE);
        userdev::on_interrupt(vector - DEVICE_VECTOR_BASE);
    }
}
