//! virtio-net over the modern (virtio 1.x) PCI transport, with MSI-X and
//! one queue pair per CPU when the device offers multiqueue.
//!
//! Owns the one NIC the kernel drives (`nic()`), its virtqueues, its DMA
//! buffers and its counters.  Layout: queue pair `i` is rx queue `2i` and tx
//! queue `2i + 1`; MSI-X entry 0 is the configuration-change interrupt
//! (vector `DEVICE_VECTOR_BASE`, CPU 0), entry `1 + i` the rx interrupt of
//! pair `i` (vector `DEVICE_VECTOR_BASE + 1 + i`, on CPU `i`).  Tx queues
//! raise no interrupt: `transmit` reclaims finished buffers itself.
//!
//! Invariants: every rx descriptor is either posted to the device or held
//! by one `receive` call that reposts it before returning; each queue's ring
//! is touched only under that queue's lock (rx and tx locks are separate, and
//! pairs share nothing written, so CPUs using their own pair never contend);
//! counters are per pair and summed when read.
//!
//! Must not: allocate, block, log or take a lock in `on_interrupt` (it only
//! sets the pair's "rx ready" flag, counts, and calls the glue's callback);
//! block forever in `transmit` (a full ring is an error after one reclaim).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::dma::{DmaFrame, FRAME_BYTES};
use super::pci::{self, Function, MsiX};
use super::virtio_pci::*;
use super::virtqueue::{Virtqueue, DESC_F_NEXT, DESC_F_WRITE, MAX_QUEUE_SIZE};
use super::DEVICE_VECTOR_BASE;
use crate::sched::IrqSpinLock;

/// PCI ids: Red Hat / virtio; 0x1041 is a modern-only network device,
/// 0x1000 the transitional one (used only if it has the modern capabilities).
const VIRTIO_VENDOR: u16 = 0x1af4;
const VIRTIO_NET_MODERN: u16 = 0x1041;
const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;

/// Feature bits.
const F_MAC: u64 = 1 << 5;
const F_CTRL_VQ: u64 = 1 << 17;
const F_MQ: u64 = 1 << 22;

/// Device configuration: MAC at 0, status at 6, max queue pairs at 8.
const NET_CFG_MAX_PAIRS: usize = 8;
const NET_CFG_BYTES: u64 = 10;

/// `struct virtio_net_hdr` with `num_buffers` (always present in 1.x).
pub const NET_HDR_BYTES: usize = 12;
/// Bytes per rx/tx buffer: header + a 1514-byte Ethernet frame, rounded.
const BUFFER_BYTES: usize = 2048;
const BUFFERS_PER_FRAME: usize = FRAME_BYTES / BUFFER_BYTES;
/// Largest Ethernet frame (without FCS) sent or accepted.
pub const MAX_FRAME_BYTES: usize = 1514;
/// Smallest frame `receive` hands on (an Ethernet header).
const MIN_FRAME_BYTES: usize = 14;
/// Queue pairs this driver sets up at most.
pub const MAX_PAIRS: usize = 16;
/// Buffers handed to the callback per lock hold in `receive`.
const RX_BATCH: usize = 32;

/// Control queue: class MQ, command VQ_PAIRS_SET.
const CTRL_CLASS_MQ: u8 = 4;
const CTRL_MQ_VQ_PAIRS_SET: u8 = 0;
const CTRL_QUEUE_SIZE: u16 = 16;
const CTRL_TIMEOUT_NS: u64 = 1_000_000_000;

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// No such queue pair.
    NoSuchQueue,
    /// Shorter than an Ethernet header or longer than `MAX_FRAME_BYTES`.
    BadLength,
    /// Every tx descriptor is still owned by the device (after a reclaim).
    RingFull,
}

/// Counters of one pair, or of the whole NIC (summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Received buffers thrown away (too short, bad descriptor id).
    pub rx_drops: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// `transmit` calls refused with `RingFull`.
    pub tx_ring_full: u64,
    /// Rx interrupts taken.
    pub interrupts: u64,
}

#[derive(Default)]
struct PairCounters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    rx_drops: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_ring_full: AtomicU64,
    interrupts: AtomicU64,
}

struct TxRing {
    vq: Virtqueue,
    /// Descriptor ids the device does not own (capacity = queue size, so
    /// pushes never allocate).
    free: Vec<u16>,
}

/// One rx/tx queue pair; cache-line aligned so pairs on different CPUs
/// share no written line.
#[repr(align(64))]
struct QueuePair {
    rx: IrqSpinLock<Virtqueue>,
    tx: IrqSpinLock<TxRing>,
    /// Immutable after init: buffer `id` is at frame `id / 2`, half `id % 2`.
    rx_buffers: Vec<DmaFrame>,
    tx_buffers: Vec<DmaFrame>,
    rx_ready: AtomicBool,
    counters: PairCounters,
}

fn buffer_slot(frames: &[DmaFrame], id: u16) -> (DmaFrame, usize) {
    let id = id as usize;
    (
        frames[id / BUFFERS_PER_FRAME],
        (id % BUFFERS_PER_FRAME) * BUFFER_BYTES,
    )
}

/// The network card.
pub struct Nic {
    mac: [u8; 6],
    pairs: Vec<QueuePair>,
    /// MSI-X table (kept for mask/unmask).
    msix: MsiX,
    /// `fn(usize)` called from the rx interrupt, stored as an address (0: none).
    rx_callback: AtomicUsize,
    config_interrupts: AtomicU64,
    /// Where the device was found, for log lines.
    pub pci_address: pci::Address,
    /// Queue pairs the device offers (1 without multiqueue).
    pub device_pairs: usize,
}

static NIC: spin::Once<Nic> = spin::Once::new();

/// The NIC, once `init` found and started one.
pub fn nic() -> Option<&'static Nic> {
    NIC.get()
}

impl Nic {
    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Queue pairs in use (one per CPU up to what the device offers).
    pub fn queues(&self) -> usize {
        self.pairs.len()
    }

    /// Sends one Ethernet frame (no FCS) on `queue`.  Callable from thread
    /// context on any CPU; never waits for the device.
    pub fn transmit(&self, queue: usize, frame: &[u8]) -> Result<(), TxError> {
        let pair = self.pairs.get(queue).ok_or(TxError::NoSuchQueue)?;
        if frame.len() < MIN_FRAME_BYTES || frame.len() > MAX_FRAME_BYTES {
            return Err(TxError::BadLength);
        }
        let mut tx = pair.tx.lock();
        while let Some((id, _)) = tx.vq.pop_used() {
            let size = tx.vq.size();
            if id < size && tx.free.len() < size as usize {
                tx.free.push(id);
            }
        }
        let Some(id) = tx.free.pop() else {
            pair.counters.tx_ring_full.fetch_add(1, Ordering::Relaxed);
            return Err(TxError::RingFull);
        };
        let (buffer, offset) = buffer_slot(&pair.tx_buffers, id);
        let at = buffer.virt(offset);
        // SAFETY: buffer `id` is ours (not in the avail ring); header plus
        // frame fit in its BUFFER_BYTES (checked length above).
        unsafe {
            core::ptr::write_bytes(at, 0, NET_HDR_BYTES);
            core::ptr::copy_nonoverlapping(frame.as_ptr(), at.add(NET_HDR_BYTES), frame.len());
        }
        let len = (NET_HDR_BYTES + frame.len()) as u32;
        tx.vq.set_desc(id, buffer.phys(offset), len, 0, 0);
        tx.vq.push_avail(id);
        tx.vq.notify();
        drop(tx);
        pair.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
        pair.counters
            .tx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Hands every frame received on `queue` to `f` (without the virtio
    /// header), reposts the buffers, and returns how many frames `f` saw.
    /// `f` runs without the queue lock held.
    pub fn receive(&self, queue: usize, f: &mut dyn FnMut(&[u8])) -> usize {
        let Some(pair) = self.pairs.get(queue) else {
            return 0;
        };
        pair.rx_ready.store(false, Ordering::Relaxed);
        let mut delivered = 0;
        loop {
            let mut batch = [(0u16, 0u32); RX_BATCH];
            let mut taken = 0;
            {
                let mut rx = pair.rx.lock();
                while taken < RX_BATCH {
                    match rx.pop_used() {
                        Some((u16::MAX, _)) => {
                            pair.counters.rx_drops.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(entry) => {
                            batch[taken] = entry;
                            taken += 1;
                        }
                        None => break,
                    }
                }
            }
            if taken == 0 {
                break;
            }
            for &(id, len) in &batch[..taken] {
                let len = len as usize;
                if !(NET_HDR_BYTES + MIN_FRAME_BYTES..=BUFFER_BYTES).contains(&len) {
                    pair.counters.rx_drops.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let (buffer, offset) = buffer_slot(&pair.rx_buffers, id);
                // SAFETY: the device returned buffer `id` and wrote `len`
                // bytes; it is not reposted until after `f` returns.
                let frame = unsafe {
                    core::slice::from_raw_parts(
                        buffer.virt(offset + NET_HDR_BYTES),
                        len - NET_HDR_BYTES,
                    )
                };
                f(frame);
                delivered += 1;
                pair.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
                pair.counters
                    .rx_bytes
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
            let mut rx = pair.rx.lock();
            for &(id, _) in &batch[..taken] {
                rx.push_avail(id);
            }
            rx.notify();
        }
        delivered
    }

    /// True if an rx interrupt came for `queue` since the last `receive`.
    pub fn rx_ready(&self, queue: usize) -> bool {
        self.pairs
            .get(queue)
            .is_some_and(|p| p.rx_ready.load(Ordering::Relaxed))
    }

    /// Installs the function the rx interrupt calls with its queue number
    /// (in interrupt context: it must not block, allocate or log).
    pub fn set_rx_callback(&self, cb: fn(queue: usize)) {
        self.rx_callback.store(cb as usize, Ordering::Release);
    }

    /// Masks or unmasks the rx interrupt of `queue`.
    #[allow(dead_code)] // API for the network glue (docs/KERNEL-MODULES.md); no caller yet
    pub fn set_rx_interrupt_masked(&self, queue: usize, masked: bool) {
        if queue < self.pairs.len() {
            self.msix.set_masked(1 + queue as u16, masked);
        }
    }

    /// Counters of one pair.
    pub fn queue_counters(&self, queue: usize) -> NicCounters {
        let Some(p) = self.pairs.get(queue) else {
            return NicCounters::default();
        };
        let c = &p.counters;
        NicCounters {
            rx_frames: c.rx_frames.load(Ordering::Relaxed),
            rx_bytes: c.rx_bytes.load(Ordering::Relaxed),
            rx_drops: c.rx_drops.load(Ordering::Relaxed),
            tx_frames: c.tx_frames.load(Ordering::Relaxed),
            tx_bytes: c.tx_bytes.load(Ordering::Relaxed),
            tx_ring_full: c.tx_ring_full.load(Ordering::Relaxed),
            interrupts: c.interrupts.load(Ordering::Relaxed),
        }
    }

    /// Counters summed over all pairs.
    pub fn counters(&self) -> NicCounters {
        (0..self.pairs.len()).map(|q| self.queue_counters(q)).fold(
            NicCounters::default(),
            |a, b| NicCounters {
                rx_frames: a.rx_frames + b.rx_frames,
                rx_bytes: a.rx_bytes + b.rx_bytes,
                rx_drops: a.rx_drops + b.rx_drops,
                tx_frames: a.tx_frames + b.tx_frames,
                tx_bytes: a.tx_bytes + b.tx_bytes,
                tx_ring_full: a.tx_ring_full + b.tx_ring_full,
                interrupts: a.interrupts + b.interrupts,
            },
        )
    }

    /// Configuration-change interrupts taken.
    #[allow(dead_code)] // API for the network glue (docs/KERNEL-MODULES.md); no caller yet
    pub fn config_interrupts(&self) -> u64 {
        self.config_interrupts.load(Ordering::Relaxed)
    }
}

/// Interrupt entry for the NIC's vectors (`index` = vector - base).
/// Interrupt context: no allocation, no lock, no log.
pub fn on_interrupt(index: u8) {
    let Some(nic) = NIC.get() else {
        return;
    };
    if index == 0 {
        nic.config_interrupts.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let queue = index as usize - 1;
    let Some(pair) = nic.pairs.get(queue) else {
        return;
    };
    pair.counters.interrupts.fetch_add(1, Ordering::Relaxed);
    pair.rx_ready.store(true, Ordering::Release);
    let cb = nic.rx_callback.load(Ordering::Acquire);
    if cb != 0 {
        // SAFETY: `set_rx_callback` is the only writer and stores a
        // `fn(usize)` pointer; 0 means none.
        let cb: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(cb) };
        cb(queue);
    }
}

/// MSI-X vectors the NIC may use: config + one per pair.
pub const VECTORS_USED: u8 = 1 + MAX_PAIRS as u8;

/// Whether `f` is a virtio-net function this driver (or the user-mode one)
/// knows.
pub fn is_nic(f: &Function) -> bool {
    f.vendor == VIRTIO_VENDOR
        && (f.device == VIRTIO_NET_MODERN || f.device == VIRTIO_NET_TRANSITIONAL)
}

/// Finds the first virtio-net function among `functions` and starts it.
/// Logs what it did; returns an error message on failure (the kernel then
/// runs without a NIC).
pub fn probe(functions: &[Function]) -> Result<Option<&'static Nic>, &'static str> {
    let Some(f) = functions.iter().find(|f| is_nic(f)) else {
        return Ok(None);
    };
    let transport = Transport::find(f, NET_CFG_BYTES)
        .ok_or("no modern virtio capabilities (common/notify/device config) in mapped BARs")?;
    let msix = MsiX::new(f).map_err(|e| match e {
        pci::MsiXError::NoCapability => "no MSI-X capability",
        pci::MsiXError::TableNotMapped => "MSI-X table not in a mapped BAR",
    })?;
    f.enable_bus_master();

    // Reset, then ACKNOWLEDGE | DRIVER.
    transport.w8(COMMON_DEVICE_STATUS, 0);
    let mut spins = 0;
    while transport.r8(COMMON_DEVICE_STATUS) != 0 {
        spins += 1;
        if spins > 1_000_000 {
            return Err("device does not reset");
        }
        core::hint::spin_loop();
    }
    transport.add_status(STATUS_ACKNOWLEDGE);
    transport.add_status(STATUS_DRIVER);

    let offered = transport.device_features();
    if offered & F_VERSION_1 == 0 {
        transport.add_status(STATUS_FAILED);
        return Err("device does not offer VIRTIO_F_VERSION_1");
    }
    let mut wanted = F_VERSION_1 | (offered & F_MAC);
    let multiqueue = offered & (F_MQ | F_CTRL_VQ) == (F_MQ | F_CTRL_VQ);
    if multiqueue {
        wanted |= F_MQ | F_CTRL_VQ;
    }
    transport.set_driver_features(wanted);
    transport.add_status(STATUS_FEATURES_OK);
    if transport.r8(COMMON_DEVICE_STATUS) & STATUS_FEATURES_OK == 0 {
        transport.add_status(STATUS_FAILED);
        return Err("device refused our features");
    }

    let device_pairs = if multiqueue {
        (transport.device_cfg_u16(NET_CFG_MAX_PAIRS) as usize).max(1)
    } else {
        1
    };
    let cpus = crate::sched::cpu_count();
    let vectors_for_queues = (msix.entries() as usize).saturating_sub(1);
    let pairs = device_pairs
        .min(cpus)
        .min(MAX_PAIRS)
        .min(vectors_for_queues);
    if pairs == 0 {
        transport.add_status(STATUS_FAILED);
        return Err("MSI-X table too small (needs config + one rx entry)");
    }
    if (transport.r16(COMMON_NUM_QUEUES) as usize) < 2 * pairs {
        transport.add_status(STATUS_FAILED);
        return Err("device has fewer queues than its queue pairs need");
    }

    // MSI-X: entry 0 -> config vector on CPU 0; entry 1 + i -> rx of pair i
    // on CPU i.  All masked until the rings are ready.
    let bsp_apic = crate::arch::cpu::get(0).lapic_id();
    msix.program(0, bsp_apic, DEVICE_VECTOR_BASE);
    for i in 0..pairs {
        let apic = crate::arch::cpu::get(i % cpus).lapic_id();
        msix.program(1 + i as u16, apic, DEVICE_VECTOR_BASE + 1 + i as u8);
    }
    msix.enable();
    transport.w16(COMMON_CONFIG_MSIX_VECTOR, 0);
    if transport.r16(COMMON_CONFIG_MSIX_VECTOR) != 0 {
        transport.add_status(STATUS_FAILED);
        return Err("device refused the configuration MSI-X vector");
    }

    let mut queue_pairs = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let rx = transport
            .setup_queue(2 * i as u16, MAX_QUEUE_SIZE, 1 + i as u16)
            .inspect_err(|_| transport.add_status(STATUS_FAILED))?;
        let mut tx = transport
            .setup_queue(2 * i as u16 + 1, MAX_QUEUE_SIZE, NO_VECTOR)
            .inspect_err(|_| transport.add_status(STATUS_FAILED))?;
        tx.suppress_interrupts();
        let frames_for = |size: u16| -> Option<Vec<DmaFrame>> {
            (0..(size as usize).div_ceil(BUFFERS_PER_FRAME))
                .map(|_| DmaFrame::alloc())
                .collect()
        };
        let rx_buffers = frames_for(rx.size()).ok_or("out of memory for rx buffers")?;
        let tx_buffers = frames_for(tx.size()).ok_or("out of memory for tx buffers")?;
        let mut free = Vec::with_capacity(tx.size() as usize);
        free.extend((0..tx.size()).rev());
        queue_pairs.push(QueuePair {
            rx: IrqSpinLock::new(rx),
            tx: IrqSpinLock::new(TxRing { vq: tx, free }),
            rx_buffers,
            tx_buffers,
            rx_ready: AtomicBool::new(false),
            counters: PairCounters::default(),
        });
    }
    let mut ctrl = if multiqueue {
        Some(
            transport
                .setup_queue(2 * device_pairs as u16, CTRL_QUEUE_SIZE, NO_VECTOR)
                .inspect_err(|_| transport.add_status(STATUS_FAILED))?,
        )
    } else {
        None
    };

    // Post every rx buffer before the device may deliver.
    for pair in &queue_pairs {
        let mut rx = pair.rx.lock();
        for id in 0..rx.size() {
            let (buffer, offset) = buffer_slot(&pair.rx_buffers, id);
            rx.set_desc(
                id,
                buffer.phys(offset),
                BUFFER_BYTES as u32,
                DESC_F_WRITE,
                0,
            );
            rx.push_avail(id);
        }
    }
    transport.add_status(STATUS_DRIVER_OK);
    for pair in &queue_pairs {
        pair.rx.lock().notify();
    }

    if let Some(ctrl) = ctrl.as_mut() {
        if pairs > 1 {
            set_queue_pairs(ctrl, pairs as u16)?;
        }
    }

    let mut mac = [0u8; 6];
    if wanted & F_MAC != 0 {
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = transport.device_cfg_u8(i);
        }
    } else {
        // Locally administered address when the device has none to give.
        mac = [0x02, 0, 0, 0, 0, 0x01];
    }

    let nic = NIC.call_once(|| Nic {
        mac,
        pairs: queue_pairs,
        msix,
        rx_callback: AtomicUsize::new(0),
        config_interrupts: AtomicU64::new(0),
        pci_address: f.address,
        device_pairs,
    });
    for i in 0..=nic.pairs.len() {
        nic.msix.set_masked(i as u16, false);
    }
    log::info!(
        "virtio-net: {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} queue pair(s) of {} offered ({}), rx ring {} entries, MSI-X {} entries, vectors {:#x}..={:#x}",
        f.address,
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        nic.pairs.len(),
        device_pairs,
        if multiqueue {
            "multiqueue: one pair per CPU"
        } else {
            "no multiqueue"
        },
        nic.pairs[0].rx.lock().size(),
        nic.msix.entries(),
        DEVICE_VECTOR_BASE,
        DEVICE_VECTOR_BASE + nic.pairs.len() as u8
    );
    Ok(Some(nic))
}

/// Sends VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET on the control queue and waits
/// (bounded) for the device's answer.
fn set_queue_pairs(ctrl: &mut Virtqueue, pairs: u16) -> Result<(), &'static str> {
    let buffer = DmaFrame::alloc().ok_or("out of memory for the control queue")?;
    // Layout in the frame: command header at 0, argument at 16, ack at 32.
    // SAFETY: offsets inside the fresh frame; the device sees it only after
    // `push_avail`.
    unsafe {
        buffer.virt(0).write_volatile(CTRL_CLASS_MQ);
        buffer.virt(1).write_volatile(CTRL_MQ_VQ_PAIRS_SET);
        (buffer.virt(16) as *mut u16).write_volatile(pairs);
        buffer.virt(32).write_volatile(0xFF);
    }
    ctrl.set_desc(0, buffer.phys(0), 2, DESC_F_NEXT, 1);
    ctrl.set_desc(1, buffer.phys(16), 2, DESC_F_NEXT, 2);
    ctrl.set_desc(2, buffer.phys(32), 1, DESC_F_WRITE, 0);
    ctrl.push_avail(0);
    ctrl.notify();
    let deadline = crate::arch::time::now_ns() + CTRL_TIMEOUT_NS;
    loop {
        if ctrl.pop_used().is_some() {
            break;
        }
        if crate::arch::time::now_ns() > deadline {
            return Err("no answer to VQ_PAIRS_SET on the control queue");
        }
        crate::sched::yield_now();
    }
    // SAFETY: the ack byte, written by the device before it used the chain.
    let ack = unsafe { buffer.virt(32).read_volatile() };
    if ack != 0 {
        return Err("device refused VQ_PAIRS_SET");
    }
    Ok(())
}
