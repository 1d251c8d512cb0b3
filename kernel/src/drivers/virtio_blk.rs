//! virtio-blk over the modern (virtio 1.x) PCI transport, with MSI-X and
//! one request queue per CPU when the device offers `num-queues`.
//!
//! Owns every virtio disk found at boot (`disks()`, named `vda`, `vdb`, ...
//! in PCI scan order, as Linux names them), their request queues, DMA
//! bounce buffers and counters.  Queue `q` of disk `d` raises MSI-X entry
//! `q` (vector `BLK_VECTOR_BASE + d * MAX_QUEUES + q`) on CPU `q`; a request
//! goes to the queue of the CPU that submits it, so its completion interrupt
//! comes back to that CPU.  The configuration-change interrupt is not used.
//!
//! A caller with interrupts disabled (every lock of the `fs` crate keeps
//! them off, and ext2 reads and writes under its locks) cannot sleep: it
//! polls its queue's used ring instead (`reap`), with the same timeout.
//!
//! A request owns one *slot* of its queue from submission to completion: a
//! fixed descriptor chain (header, up to `SEGMENTS` 4 KiB data frames,
//! status byte) and its bounce frames.  At most `slots` requests per queue
//! are in flight (bounded by the ring size and `MAX_SLOTS`); a caller that
//! finds none free sleeps on the queue's `slot_wait`.  A caller whose
//! request is in flight sleeps on `done_wait`; the interrupt marks finished
//! slots and wakes the waiters.  A device status other than OK, or no
//! answer within `REQUEST_TIMEOUT_NS`, is `EIO` for the caller (a timed-out
//! slot is never reused: the device may still write it).
//!
//! Invariants: each ring and its slot states are touched only under that
//! queue's `IrqSpinLock`; lock order is wait queue -> ring (a wait
//! condition may take the ring lock; nothing holding a ring lock touches a
//! wait queue).  Queues of different CPUs share no written line.
//!
//! Must not: allocate, block or log in `on_interrupt` (it pops the used
//! ring under the queue lock, records statuses and wakes waiters); panic on
//! anything the device or a caller does; write a read-only device (`EROFS`).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use ::fs::Errno;

use super::dma::{DmaFrame, FRAME_BYTES};
use super::pci::{self, Function, MsiX};
use super::virtio_pci::*;
use super::virtqueue::{Virtqueue, DESC_F_NEXT, DESC_F_WRITE, MAX_QUEUE_SIZE};
use crate::sched::{IrqSpinLock, WaitQueue};

/// PCI ids: 0x1042 is a modern-only block device, 0x1001 the transitional
/// one (used only if it has the modern capabilities).
const VIRTIO_VENDOR: u16 = 0x1af4;
const VIRTIO_BLK_MODERN: u16 = 0x1042;
const VIRTIO_BLK_TRANSITIONAL: u16 = 0x1001;

/// Feature bits (virtio 1.x §5.2.3).
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_MQ: u64 = 1 << 12;

/// Device configuration: capacity (sectors) at 0, num_queues at 34.
const BLK_CFG_CAPACITY: usize = 0;
const BLK_CFG_NUM_QUEUES: usize = 34;
const BLK_CFG_BYTES: u64 = 36;

/// Request types and statuses (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const S_OK: u8 = 0;

/// Bytes per sector (the virtio-blk unit, whatever the device's block size).
pub const SECTOR_BYTES: usize = 512;
/// Disks this driver starts at most.
pub const MAX_DISKS: usize = 8;
/// Request queues per disk at most.
pub const MAX_QUEUES: usize = 8;
/// MSI-X vectors the disks may use (one per queue).
pub const VECTORS_USED: u8 = (MAX_DISKS * MAX_QUEUES) as u8;
/// Data frames per request (so at most 32 KiB per request; larger
/// transfers are split).
const SEGMENTS: usize = 8;
const MAX_REQUEST_BYTES: usize = SEGMENTS * FRAME_BYTES;
/// Descriptors per slot: header, data segments, status.
const SLOT_DESCS: usize = SEGMENTS + 2;
/// Requests in flight per queue at most.
const MAX_SLOTS: usize = 16;
/// Header (16 bytes) and status byte of slot `s` in the queue's header frame.
const SLOT_HEADER_BYTES: usize = 32;
const STATUS_OFFSET: usize = 16;
/// A request the device has not answered in this long is an `EIO`.
const REQUEST_TIMEOUT_NS: u64 = 30_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    InFlight,
    /// The device returned the chain with this status byte.
    Done(u8),
    /// Timed out: the device may still own it; never reused.
    Lost,
}

struct Ring {
    vq: Virtqueue,
    state: [SlotState; MAX_SLOTS],
}

impl Ring {
    fn take_free(&mut self, slots: usize) -> Option<usize> {
        let s = self.state[..slots]
            .iter()
            .position(|s| *s == SlotState::Free)?;
        self.state[s] = SlotState::InFlight;
        Some(s)
    }
}

#[derive(Default)]
struct QueueCounters {
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    errors: AtomicU64,
    interrupts: AtomicU64,
}

/// One request queue; cache-line aligned so queues of different CPUs
/// share no written line.
#[repr(align(64))]
struct Queue {
    ring: IrqSpinLock<Ring>,
    /// Threads waiting for a free slot.
    slot_wait: WaitQueue,
    /// Threads whose request is in flight.
    done_wait: WaitQueue,
    /// Slot headers and status bytes (`SLOT_HEADER_BYTES` each).
    headers: DmaFrame,
    /// Bounce frames of each slot (immutable after init).
    data: Vec<[DmaFrame; SEGMENTS]>,
    /// Usable slots (`<= MAX_SLOTS`, limited by the ring size).
    slots: usize,
    counters: QueueCounters,
}

/// Counters of one disk (summed over its queues).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
    pub interrupts: u64,
}

/// One virtio disk.
pub struct Disk {
    name: [u8; 3],
    index: usize,
    sectors: u64,
    read_only: bool,
    has_flush: bool,
    queues: Vec<Queue>,
    /// Kept so the entries stay programmed (and for masking).
    #[allow(dead_code)]
    msix: MsiX,
    /// Where the device was found, for log lines.
    pub pci_address: pci::Address,
    /// Queues the device offers (1 without `VIRTIO_BLK_F_MQ`).
    pub device_queues: usize,
}

static DISKS: spin::Once<Vec<Disk>> = spin::Once::new();

/// Every disk started at boot (empty before `probe` or without disks).
pub fn disks() -> &'static [Disk] {
    DISKS.get().map_or(&[], |d| d.as_slice())
}

/// Direction of a data transfer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

impl Disk {
    /// `vda`, `vdb`, ...
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name).unwrap_or("vd?")
    }

    /// Position in `disks()` (the minor number is `16 * index`, as Linux's).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Size in 512-byte sectors.
    pub fn sector_count(&self) -> u64 {
        self.sectors
    }

    /// The device refuses writes (`VIRTIO_BLK_F_RO`).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Request queues in use.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Reads `buf.len() / 512` sectors starting at `lba` (`buf.len()` a
    /// multiple of 512).  Sleeps until the device answered.
    pub fn read_sectors(&self, lba: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.check_range(lba, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_REQUEST_BYTES);
            let sector = lba + (done / SECTOR_BYTES) as u64;
            self.transfer(
                Dir::Read,
                sector,
                &mut Chunk::Read(&mut buf[done..done + n]),
            )?;
            done += n;
        }
        Ok(())
    }

    /// Writes `buf` (a multiple of 512 bytes) at sector `lba`.  Returns once
    /// the device has it (in its cache: `flush` makes it durable).
    pub fn write_sectors(&self, lba: u64, buf: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        self.check_range(lba, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(MAX_REQUEST_BYTES);
            let sector = lba + (done / SECTOR_BYTES) as u64;
            self.transfer(Dir::Write, sector, &mut Chunk::Write(&buf[done..done + n]))?;
            done += n;
        }
        Ok(())
    }

    /// Makes every completed write durable (`VIRTIO_BLK_T_FLUSH`); a no-op
    /// on a device without a volatile cache (no `VIRTIO_BLK_F_FLUSH`).
    pub fn flush(&self) -> Result<(), Errno> {
        if !self.has_flush || self.read_only {
            return Ok(());
        }
        self.transfer(Dir::Write, 0, &mut Chunk::Flush)
    }

    fn check_range(&self, lba: u64, len: usize) -> Result<(), Errno> {
        if !len.is_multiple_of(SECTOR_BYTES) {
            return Err(Errno::EINVAL);
        }
        let end = lba
            .checked_add((len / SECTOR_BYTES) as u64)
            .ok_or(Errno::EIO)?;
        if end > self.sectors {
            return Err(Errno::EIO);
        }
        Ok(())
    }

    fn queue(&self) -> &Queue {
        &self.queues[crate::sched::current_cpu() % self.queues.len()]
    }

    /// One request of at most `MAX_REQUEST_BYTES`: take a slot, fill it,
    /// submit, sleep until it is done, copy out, give the slot back.
    fn transfer(&self, dir: Dir, sector: u64, chunk: &mut Chunk<'_>) -> Result<(), Errno> {
        let q = self.queue();
        // A caller with interrupts off (the `fs` crate's locks keep them
        // off, and ext2 reads under them) cannot sleep: it polls the ring.
        let may_sleep = x86_64::instructions::interrupts::are_enabled();
        let mut slot = None;
        if may_sleep {
            q.slot_wait.wait_until(|| {
                slot = q.ring.lock().take_free(q.slots);
                slot.is_some()
            });
        } else {
            // Slots are given back by their owners; with interrupts off here
            // an owner on this CPU cannot run, so this spins only while the
            // owners on other CPUs finish (the ext2 code does its I/O under
            // its locks, so polled requests are the common case).
            while slot.is_none() {
                let mut ring = q.ring.lock();
                reap(q, &mut ring);
                slot = ring.take_free(q.slots);
                drop(ring);
                if slot.is_none() {
                    core::hint::spin_loop();
                }
            }
        }
        let Some(s) = slot else {
            return Err(Errno::EIO);
        };
        let frames = &q.data[s];
        let len = chunk.len();
        if let Chunk::Write(data) = chunk {
            for (i, piece) in data.chunks(FRAME_BYTES).enumerate() {
                // SAFETY: slot `s` is ours (InFlight, not yet offered to the
                // device); `piece` fits in one frame.
                unsafe {
                    core::ptr::copy_nonoverlapping(piece.as_ptr(), frames[i].virt(0), piece.len())
                };
            }
        }
        let kind = match (dir, &chunk) {
            (_, Chunk::Flush) => T_FLUSH,
            (Dir::Read, _) => T_IN,
            (Dir::Write, _) => T_OUT,
        };
        let header = s * SLOT_HEADER_BYTES;
        // SAFETY: this slot's header and status bytes in the header frame,
        // not visible to the device until `push_avail`.
        unsafe {
            (q.headers.virt(header) as *mut u32).write_volatile(kind);
            (q.headers.virt(header + 4) as *mut u32).write_volatile(0);
            (q.headers.virt(header + 8) as *mut u64).write_volatile(sector);
            q.headers.virt(header + STATUS_OFFSET).write_volatile(0xFF);
        }
        {
            let mut ring = q.ring.lock();
            let first = (s * SLOT_DESCS) as u16;
            let mut id = first;
            ring.vq
                .set_desc(id, q.headers.phys(header), 16, DESC_F_NEXT, id + 1);
            id += 1;
            let device_writes = if dir == Dir::Read { DESC_F_WRITE } else { 0 };
            let mut left = len;
            let mut i = 0;
            while left > 0 {
                let n = left.min(FRAME_BYTES);
                ring.vq.set_desc(
                    id,
                    frames[i].phys(0),
                    n as u32,
                    device_writes | DESC_F_NEXT,
                    id + 1,
                );
                id += 1;
                left -= n;
                i += 1;
            }
            ring.vq.set_desc(
                id,
                q.headers.phys(header + STATUS_OFFSET),
                1,
                DESC_F_WRITE,
                0,
            );
            ring.vq.push_avail(first);
            ring.vq.notify();
        }
        let deadline = crate::arch::time::now_ns() + REQUEST_TIMEOUT_NS;
        let mut status = None;
        let finished = if may_sleep {
            q.done_wait.wait_until_deadline(
                || match q.ring.lock().state[s] {
                    SlotState::Done(st) => {
                        status = Some(st);
                        true
                    }
                    _ => false,
                },
                Some(deadline),
            )
        } else {
            loop {
                let mut ring = q.ring.lock();
                if reap(q, &mut ring) > 0 {
                    // Others' requests may have finished too.
                    drop(ring);
                    wake_done(q);
                    ring = q.ring.lock();
                }
                if let SlotState::Done(st) = ring.state[s] {
                    status = Some(st);
                    break true;
                }
                drop(ring);
                if crate::arch::time::now_ns() > deadline {
                    break false;
                }
                core::hint::spin_loop();
            }
        };
        let c = &q.counters;
        if !finished {
            let mut ring = q.ring.lock();
            // It may have finished between the timeout and this lock.
            if let SlotState::Done(st) = ring.state[s] {
                status = Some(st);
            } else {
                ring.state[s] = SlotState::Lost;
                drop(ring);
                c.errors.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "virtio-blk {}: request on slot {} timed out; slot retired",
                    self.name(),
                    s
                );
                return Err(Errno::EIO);
            }
        }
        let status = status.unwrap_or(0xFF);
        if status == S_OK {
            if let Chunk::Read(out) = chunk {
                for (i, piece) in out.chunks_mut(FRAME_BYTES).enumerate() {
                    // SAFETY: the device finished with slot `s` (Done), which
                    // we still own; `piece` fits in one frame.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            frames[i].virt(0),
                            piece.as_mut_ptr(),
                            piece.len(),
                        )
                    };
                }
            }
        }
        q.ring.lock().state[s] = SlotState::Free;
        q.slot_wait.wake_one();
        if status != S_OK {
            c.errors.fetch_add(1, Ordering::Relaxed);
            return Err(Errno::EIO);
        }
        match chunk {
            Chunk::Read(_) => {
                c.reads.fetch_add(1, Ordering::Relaxed);
                c.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
            }
            Chunk::Write(_) => {
                c.writes.fetch_add(1, Ordering::Relaxed);
                c.bytes_written.fetch_add(len as u64, Ordering::Relaxed);
            }
            Chunk::Flush => {
                c.flushes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Counters summed over the queues.
    pub fn counters(&self) -> DiskCounters {
        let mut t = DiskCounters::default();
        for q in &self.queues {
            let c = &q.counters;
            t.reads += c.reads.load(Ordering::Relaxed);
            t.writes += c.writes.load(Ordering::Relaxed);
            t.flushes += c.flushes.load(Ordering::Relaxed);
            t.bytes_read += c.bytes_read.load(Ordering::Relaxed);
            t.bytes_written += c.bytes_written.load(Ordering::Relaxed);
            t.errors += c.errors.load(Ordering::Relaxed);
            t.interrupts += c.interrupts.load(Ordering::Relaxed);
        }
        t
    }
}

/// The data of one request.
enum Chunk<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
    Flush,
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        match self {
            Chunk::Read(b) => b.len(),
            Chunk::Write(b) => b.len(),
            Chunk::Flush => 0,
        }
    }
}

/// Interrupt entry for the disks' vectors (`index` = vector - the disks'
/// first vector).  Interrupt context: only the queue's ring lock (held by
/// others with interrupts off, so never by this CPU now), no allocation,
/// no log.
pub fn on_interrupt(index: u8) {
    let disk = index as usize / MAX_QUEUES;
    let queue = index as usize % MAX_QUEUES;
    let Some(q) = DISKS
        .get()
        .and_then(|d| d.get(disk))
        .and_then(|d| d.queues.get(queue))
    else {
        return;
    };
    q.counters.interrupts.fetch_add(1, Ordering::Relaxed);
    let finished = reap(q, &mut q.ring.lock());
    if finished > 0 {
        wake_done(q);
    }
}

/// Pops every chain the device returned on `q`, records its status in its
/// slot, and returns how many requests finished.  Under the ring lock.
fn reap(q: &Queue, ring: &mut Ring) -> usize {
    let mut finished = 0;
    while let Some((id, _len)) = ring.vq.pop_used() {
        let s = id as usize / SLOT_DESCS;
        if id == u16::MAX || !(id as usize).is_multiple_of(SLOT_DESCS) || s >= q.slots {
            q.counters.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if ring.state[s] != SlotState::InFlight {
            // A retired (timed-out) slot coming back late stays retired.
            continue;
        }
        // SAFETY: the status byte of slot `s`, written by the device
        // before it returned the chain.
        let status = unsafe {
            q.headers
                .virt(s * SLOT_HEADER_BYTES + STATUS_OFFSET)
                .read_volatile()
        };
        ring.state[s] = SlotState::Done(status);
        finished += 1;
    }
    finished
}

/// Wakes the threads sleeping on `q`'s requests.  At most `slots` threads
/// wait there (one per slot in flight), each once: waking that many wakes
/// every one whose slot is done.  Not under the ring lock.
fn wake_done(q: &Queue) {
    for _ in 0..q.slots {
        if !q.done_wait.wake_one() {
            break;
        }
    }
}

/// Finds every virtio-blk function among `functions` and starts it; logs
/// one line per disk.  A disk that fails to start is logged and skipped.
pub fn probe(functions: &[Function], first_vector: u8) {
    let mut started = Vec::new();
    for f in functions.iter().filter(|f| {
        f.vendor == VIRTIO_VENDOR
            && (f.device == VIRTIO_BLK_MODERN || f.device == VIRTIO_BLK_TRANSITIONAL)
    }) {
        if started.len() == MAX_DISKS {
            log::warn!(
                "virtio-blk: {} ignored (at most {} disks)",
                f.address,
                MAX_DISKS
            );
            continue;
        }
        let index = started.len();
        match start(f, index, first_vector) {
            Ok(disk) => started.push(disk),
            Err(e) => log::warn!("virtio-blk: {} not started: {}", f.address, e),
        }
    }
    if started.is_empty() {
        return;
    }
    let disks = DISKS.call_once(|| started);
    for d in disks {
        for q in 0..d.queues.len() {
            d.msix.set_masked(q as u16, false);
        }
        log::info!(
            "virtio-blk: {} is /dev/{}: {} sectors ({} MiB){}, {} queue(s) of {} offered, {} requests in flight per queue, flush {}",
            d.pci_address,
            d.name(),
            d.sectors,
            d.sectors / 2048,
            if d.read_only { ", read-only" } else { "" },
            d.queues.len(),
            d.device_queues,
            d.queues[0].slots,
            if d.has_flush { "yes" } else { "no (write-through)" },
        );
    }
}

fn start(f: &Function, index: usize, first_vector: u8) -> Result<Disk, &'static str> {
    let transport = Transport::find(f, BLK_CFG_BYTES)
        .ok_or("no modern virtio capabilities (common/notify/device config) in mapped BARs")?;
    let msix = MsiX::new(f).map_err(|e| match e {
        pci::MsiXError::NoCapability => "no MSI-X capability",
        pci::MsiXError::TableNotMapped => "MSI-X table not in a mapped BAR",
    })?;
    f.enable_bus_master();
    let features = transport.negotiate(|_| F_RO | F_FLUSH | F_MQ)?;
    let fail = |e: &'static str| {
        transport.add_status(STATUS_FAILED);
        e
    };
    let device_queues = if features & F_MQ != 0 {
        (transport.device_cfg_u16(BLK_CFG_NUM_QUEUES) as usize).max(1)
    } else {
        1
    };
    let sectors = transport.device_cfg_u64(BLK_CFG_CAPACITY);
    let cpus = crate::sched::cpu_count();
    let queues = device_queues
        .min(cpus)
        .min(MAX_QUEUES)
        .min(msix.entries() as usize)
        .min(transport.r16(COMMON_NUM_QUEUES) as usize);
    if queues == 0 {
        return Err(fail("no request queue or MSI-X entry"));
    }
    transport.w16(COMMON_CONFIG_MSIX_VECTOR, NO_VECTOR);
    for q in 0..queues {
        let apic = crate::arch::cpu::get(q % cpus).lapic_id();
        let vector = first_vector + (index * MAX_QUEUES + q) as u8;
        msix.program(q as u16, apic, vector);
    }
    msix.enable();
    let mut list = Vec::with_capacity(queues);
    for q in 0..queues {
        let vq = transport
            .setup_queue(q as u16, MAX_QUEUE_SIZE, q as u16)
            .map_err(fail)?;
        let slots = (vq.size() as usize / SLOT_DESCS).min(MAX_SLOTS);
        if slots == 0 {
            return Err(fail("ring too small for one request"));
        }
        let headers = DmaFrame::alloc().ok_or_else(|| fail("out of memory for headers"))?;
        let mut data = Vec::with_capacity(slots);
        for _ in 0..slots {
            let mut frames = [headers; SEGMENTS];
            for frame in frames.iter_mut() {
                *frame = DmaFrame::alloc().ok_or_else(|| fail("out of memory for buffers"))?;
            }
            data.push(frames);
        }
        list.push(Queue {
            ring: IrqSpinLock::new(Ring {
                vq,
                state: [SlotState::Free; MAX_SLOTS],
            }),
            slot_wait: WaitQueue::new(),
            done_wait: WaitQueue::new(),
            headers,
            data,
            slots,
            counters: QueueCounters::default(),
        });
    }
    transport.add_status(STATUS_DRIVER_OK);
    Ok(Disk {
        name: [b'v', b'd', b'a' + index as u8],
        index,
        sectors,
        read_only: features & F_RO != 0,
        has_flush: features & F_FLUSH != 0,
        queues: list,
        msix,
        pci_address: f.address,
        device_queues,
    })
}
