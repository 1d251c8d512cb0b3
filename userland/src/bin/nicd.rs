//! nicd: the virtio-net driver as a user-mode process (`structure=servers`
//! with `servers.nic=process`; docs/SERVERS.md "The NIC driver process").
//! The kernel assigned the card to this process (`kernel/src/drivers/
//! userdev.rs`); it maps the card's registers, gets pinned DMA pages with
//! their device addresses, has MSI-X entry 0 (the receive queue) raise bit
//! 0 of its notification, and moves frames between the device's
//! virtqueues and the packet rings it shares with netd
//! (`userland::nicring`).  The queue and register code is the kernel's own
//! (the `virtio` crate).
//!
//! One queue pair: receive queue 0 (interrupt entry 0), transmit queue 1
//! (no interrupt: finished buffers are reclaimed when sending).  One
//! thread: it waits on its notification (receive interrupts and netd's
//! kicks), then drains the receive queue into the receive ring (kicking
//! netd) and the transmit ring into the transmit queue.
//!
//! Restartable: all its state is in the device (which the kernel resets
//! when this process ends) and in the ring region (kept by the kernel); a
//! new instance sets the device up again, continues the rings from their
//! indices and publishes a new generation, which netd notices.
//!
//! Prints nothing on success (the console is PID 1's output); errors go to
//! stderr and end the process (the kernel restarts it).
//!
//! Must not: trust the ring contents (lengths are checked), or block
//! anywhere but in `ipc_wait`.

use abi::dev::{DevInfo, KICK_BIT};
use userland::nicring::{Region as Rings, Ring, Side};
use userland::{dev, ipc};
use virtio::queue::{Region, Virtqueue, DESC_F_WRITE, MAX_QUEUE_SIZE};
use virtio::transport::*;

const F_MAC: u64 = 1 << 5;
/// `struct virtio_net_hdr` with `num_buffers` (virtio 1.x).
const NET_HDR: usize = 12;
const BUFFER: usize = 2048;
const MIN_FRAME: usize = 14;
const MAX_FRAME: usize = 1514;
const PAGE: usize = 4096;

fn fail(what: &str, e: impl std::fmt::Debug) -> ! {
    eprintln!("nicd: {what}: {e:?}");
    std::process::exit(1);
}

/// DMA pages: where they are here and for the device.
struct Dma {
    virt: *mut u8,
    phys: Vec<u64>,
}

impl Dma {
    fn page(&self, i: usize) -> Region {
        Region {
            // SAFETY: page `i` of the mapping (callers stay below its length).
            virt: unsafe { self.virt.add(i * PAGE) },
            phys: self.phys[i],
        }
    }

    /// Buffer `id` of the pages from `first` (two 2 KiB buffers a page).
    fn buffer(&self, first: usize, id: u16) -> (*mut u8, u64) {
        let page = self.page(first + id as usize / 2);
        let off = (id as usize % 2) * BUFFER;
        (page.virt(off), page.phys(off))
    }
}

fn window(bars: &[*mut u8; 6], w: abi::dev::DevWindow) -> *mut u8 {
    // SAFETY: the BAR is mapped whole and the kernel's window lies in it.
    unsafe { bars[w.bar as usize].add(w.offset as usize) }
}

fn main() {
    let info: DevInfo = dev::info().unwrap_or_else(|e| fail("DEV_INFO", e));
    let mut bars: [*mut u8; 6] = [std::ptr::null_mut(); 6];
    for w in [info.common, info.device_cfg, info.notify] {
        let b = w.bar as usize;
        if b >= 6 || w.offset.saturating_add(w.length) > info.bar_sizes[b] {
            fail("virtio window outside a mappable BAR", w);
        }
        if bars[b].is_null() {
            bars[b] = dev::map_bar(w.bar).unwrap_or_else(|e| fail("DEV_MAP_BAR", e));
        }
    }
    // SAFETY: the windows lie in BARs mapped for this process's life.
    let t = unsafe {
        Transport::new(
            window(&bars, info.common),
            window(&bars, info.device_cfg),
            info.device_cfg.length,
            window(&bars, info.notify),
            info.notify_multiplier,
            info.notify.length,
        )
    };
    let features = t
        .negotiate(|_| F_MAC)
        .unwrap_or_else(|e| fail("negotiate", e));
    t.w16(COMMON_CONFIG_MSIX_VECTOR, NO_VECTOR);

    // Pages: rx ring 0..3, tx ring 3..6, rx buffers 6..134, tx 134..262.
    let size = MAX_QUEUE_SIZE as usize;
    let (rx_first, tx_first) = (6, 6 + size / 2);
    let total = tx_first + size / 2;
    let (virt, phys) = dev::dma_alloc(total).unwrap_or_else(|e| fail("DEV_DMA_ALLOC", e));
    let dma = Dma { virt, phys };
    let dma = &dma;
    let queue = |first: usize| {
        move |index: u16, size: u16| {
            // SAFETY: distinct zeroed DMA pages (each queue its own three),
            // mapped for the process's life and used for nothing else.
            Some(unsafe {
                Virtqueue::new(
                    index,
                    size,
                    dma.page(first),
                    dma.page(first + 1),
                    dma.page(first + 2),
                )
            })
        }
    };
    let mut rx = t
        .setup_queue(0, MAX_QUEUE_SIZE, 0, queue(0))
        .unwrap_or_else(|e| fail("rx queue", e));
    let mut tx = t
        .setup_queue(1, MAX_QUEUE_SIZE, NO_VECTOR, queue(3))
        .unwrap_or_else(|e| fail("tx queue", e));
    tx.suppress_interrupts();

    let notification = ipc::notification_create().unwrap_or_else(|e| fail("notification", e));
    dev::irq_bind(0, notification).unwrap_or_else(|e| fail("DEV_IRQ_BIND", e));
    dev::set_peer(notification).unwrap_or_else(|e| fail("DEV_SET_PEER", e));

    for id in 0..rx.size() {
        let (_, p) = dma.buffer(rx_first, id);
        rx.set_desc(id, p, BUFFER as u32, DESC_F_WRITE, 0);
        rx.push_avail(id);
    }
    t.add_status(STATUS_DRIVER_OK);
    rx.notify();

    let mut mac = [0x02, 0, 0, 0, 0, 0x01];
    if features & F_MAC != 0 {
        for (i, b) in mac.iter_mut().enumerate() {
            *b = t.device_cfg_u8(i);
        }
    }
    let rings = Rings::map().unwrap_or_else(|e| fail("DEV_RING_MAP", e));
    rings.publish_driver(mac);
    let _ = dev::kick();

    let mut free: Vec<u16> = (0..tx.size()).rev().collect();
    let mut frame = [0u8; MAX_FRAME];
    loop {
        // Receive: device → ring.
        let mut received = 0;
        let mut reposted = false;
        while let Some((id, len)) = rx.pop_used() {
            if id == u16::MAX {
                continue;
            }
            let len = len as usize;
            let (v, _) = dma.buffer(rx_first, id);
            if (NET_HDR + MIN_FRAME..=BUFFER).contains(&len) && len - NET_HDR <= MAX_FRAME {
                let n = len - NET_HDR;
                // SAFETY: the device wrote `len` bytes into buffer `id`,
                // which is ours until reposted below.
                unsafe { std::ptr::copy_nonoverlapping(v.add(NET_HDR), frame.as_mut_ptr(), n) };
                if rings.push(Ring::Rx, &frame[..n]) {
                    received += 1;
                }
            }
            rx.push_avail(id);
            reposted = true;
        }
        if reposted {
            rx.notify();
        }
        if received > 0 && rings.needs_kick(Side::Net) {
            let _ = dev::kick();
        }
        // Transmit: ring → device.
        while let Some((id, _)) = tx.pop_used() {
            if id < tx.size() && free.len() < tx.size() as usize {
                free.push(id);
            }
        }
        let mut sent = false;
        while let Some(&id) = free.last() {
            let mut taken = false;
            rings.pop(Ring::Tx, &mut |f: &[u8]| {
                if (MIN_FRAME..=MAX_FRAME).contains(&f.len()) {
                    let (v, p) = dma.buffer(tx_first, id);
                    // SAFETY: buffer `id` is not in the avail ring; header
                    // plus frame fit in its 2 KiB.
                    unsafe {
                        std::ptr::write_bytes(v, 0, NET_HDR);
                        std::ptr::copy_nonoverlapping(f.as_ptr(), v.add(NET_HDR), f.len());
                    }
                    tx.set_desc(id, p, (NET_HDR + f.len()) as u32, 0, 0);
                    tx.push_avail(id);
                    taken = true;
                }
            });
            if taken {
                free.pop();
                sent = true;
            } else if !rings_has(&rings) {
                break;
            }
        }
        if sent {
            tx.notify();
        }
        // Wait for an interrupt or a kick; with frames still waiting for
        // free transmit buffers (no transmit interrupt), look again soon.
        if free.is_empty() && rings_has(&rings) {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        rings.set_sleeping(Side::Driver, true);
        if rings_has(&rings) {
            rings.set_sleeping(Side::Driver, false);
            continue;
        }
        let waited = ipc::wait(notification, 0);
        rings.set_sleeping(Side::Driver, false);
        match waited {
            Ok(bits) if bits & !(1 | KICK_BIT) != 0 => {}
            Ok(_) => {}
            Err(e) if e == libc::EINTR => {}
            Err(e) => fail("ipc_wait", e),
        }
    }
}

/// Whether the transmit ring holds a frame (a peek that consumes nothing).
fn rings_has(rings: &Rings) -> bool {
    rings.pending(Ring::Tx) > 0
}
