//! A device assigned to a user-mode driver process: in `structure=servers`
//! with `servers.nic=process` the kernel does not start its virtio-net
//! driver; it claims the function here and starts `nicd` from the initramfs
//! (`NICD_PATH`), which drives the card through `dev_ctl` (`abi::dev`,
//! docs/SERVERS.md "The NIC driver process"):
//!
//! * **BARs**: a memory BAR of the function, page aligned, is mapped shared
//!   read/write into the driver (never a BAR holding the MSI-X table or its
//!   pending bits: the kernel owns where interrupts go);
//! * **DMA**: pinned zeroed frames of the kernel's, mapped into the driver,
//!   their physical addresses told to it (user space never names a
//!   physical address; it only learns those of frames it was given);
//! * **interrupts**: MSI-X entry `e` is programmed by the kernel to vector
//!   `DEVICE_VECTOR_BASE + e` (free: the kernel's NIC driver is not
//!   started); its handler ORs `1 << e` into the notification the driver
//!   bound (`ipc::Notification`);
//! * **the ring region**: `RING_PAGES` frames the kernel keeps for its life,
//!   mapped into the driver and the network server: their packet rings
//!   (layout: `userland/src/nicring.rs`), which survive a driver restart;
//!   `DEV_KICK` raises `KICK_BIT` in the other side's notification.
//!
//! **Restart**: a supervisor thread waits for the driver process to end
//! (killed or crashed), resets the device (so it stops DMA into the
//! driver's frames), masks its interrupts, forgets the driver's
//! notifications, takes back its DMA frames (kept in a pool for the next
//! instance, never freed: no frame a device might still write goes back to
//! the allocator) and starts a new instance.
//!
//! Owns: the one claimed function, its MSI-X table, the DMA pool, the ring
//! frames, the interrupt slots.  Shared state and why it is not per-CPU:
//! one device, touched by one driver and one server; the state lock is
//! taken by setup calls and by `DEV_KICK` (to find the peer, no work under
//! it); the interrupt slots are one lock each, taken by the handler.
//!
//! Must not: map anything the device does not own, or a frame it did not
//! allocate here; do more than notify in `on_interrupt`; let a process other
//! than the driver (or, for the ring calls, the network server) use it.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::pci::{self, Bar, Function, MsiX};
use super::virtio_pci::{self, Transport, Windows};
use super::DEVICE_VECTOR_BASE;
use crate::ipc::Notification;
use crate::memory::uaccess::UserAddr;
use crate::memory::vm::{self, PageSource, PROT_READ, PROT_WRITE};
use crate::memory::{self, PhysAddr};
use crate::proc::process::Pid;
use crate::sched::IrqSpinLock;
use abi::dev::*;
use abi::{Errno, SysResult};

/// The NIC driver's program in the initramfs (`comparison` puts it there
/// with `--structure servers`).
pub const NICD_PATH: &str = ".servers/nicd";

/// Largest BAR mapped (the virtio modern BAR of QEMU is 16 KiB).
const MAX_BAR_BYTES: u64 = 16 << 20;
/// How often the supervisor looks whether the driver ended.  There is no
/// exit hook for a parentless process, so it polls; this bounds what polling
/// adds to a restart.
const SUPERVISE_PERIOD_NS: u64 = 1_000_000;
const PAGE: u64 = 4096;

/// Physical pages behind a mapping: a BAR range or a list of frames.
enum Pages {
    Range { base: u64, pages: u64 },
    List(Vec<PhysAddr>),
}

impl PageSource for Pages {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno> {
        match self {
            Pages::Range { base, pages } if index < *pages => {
                Ok(PhysAddr::new(base + index * PAGE))
            }
            Pages::List(frames) => frames.get(index as usize).copied().ok_or(Errno::EFAULT),
            _ => Err(Errno::EFAULT),
        }
    }
}

struct State {
    driver: Option<Pid>,
    net: Option<Pid>,
    driver_peer: Option<Arc<Notification>>,
    net_peer: Option<Arc<Notification>>,
    /// Every DMA frame ever handed out; the first `dma_used` belong to the
    /// current driver instance.
    dma_pool: Vec<PhysAddr>,
    dma_used: usize,
}

struct Device {
    function: Function,
    windows: Windows,
    msix: MsiX,
    /// The kernel's own view of the registers: to reset the device when
    /// its driver is gone.
    transport: Transport,
    /// BARs holding the MSI-X table or pending-bit array: never mapped.
    msix_bars: [bool; 6],
    ring: Vec<PhysAddr>,
    state: spin::Mutex<State>,
    irq: [IrqSpinLock<Option<Arc<Notification>>>; IRQ_ENTRIES as usize],
    starts: AtomicU32,
}

static DEVICE: spin::Once<Device> = spin::Once::new();

/// Whether a NIC was claimed for a driver process.
pub fn active() -> bool {
    DEVICE.get().is_some()
}

fn alloc_zeroed() -> Option<PhysAddr> {
    let frame = memory::alloc_frame()?;
    // SAFETY: a fresh frame from the allocator, mapped by the HHDM, ours.
    unsafe { core::ptr::write_bytes(memory::phys_to_virt(frame), 0, PAGE as usize) };
    Some(frame)
}

/// Claims `f` (a virtio-net function) for a driver process: bus mastering
/// on, the device reset, MSI-X on with every entry masked, the ring
/// region allocated.  The kernel's own driver must not be started.
pub fn claim(f: &Function) -> Result<(), &'static str> {
    let windows = virtio_pci::windows(f, 10).ok_or("no modern virtio capabilities")?;
    let transport = Transport::find(f, 10).ok_or("virtio windows not in mapped BARs")?;
    let msix = MsiX::new(f).map_err(|_| "no usable MSI-X table")?;
    let cap = f
        .capabilities_with_id(pci::CAP_MSIX)
        .next()
        .ok_or("no MSI-X capability")?;
    let mut msix_bars = [false; 6];
    msix_bars[(f.address.read32(cap + 4) & 7) as usize] = true;
    msix_bars[(f.address.read32(cap + 8) & 7) as usize] = true;
    for w in [windows.common, windows.device_cfg, windows.notify] {
        if msix_bars[w.bar] {
            return Err("a virtio window shares a BAR with the MSI-X table");
        }
    }
    f.enable_bus_master();
    transport.reset()?;
    for e in 0..msix.entries() {
        msix.set_masked(e, true);
    }
    msix.enable();
    let ring = (0..RING_PAGES)
        .map(|_| alloc_zeroed())
        .collect::<Option<Vec<_>>>()
        .ok_or("out of memory for the ring region")?;
    DEVICE.call_once(|| Device {
        function: f.clone(),
        windows,
        msix,
        transport,
        msix_bars,
        ring,
        state: spin::Mutex::new(State {
            driver: None,
            net: None,
            driver_peer: None,
            net_peer: None,
            dma_pool: Vec::new(),
            dma_used: 0,
        }),
        irq: core::array::from_fn(|_| IrqSpinLock::new(None)),
        starts: AtomicU32::new(0),
    });
    log::info!(
        "userdev: virtio-net {} assigned to a driver process (servers.nic=process)",
        f.address
    );
    Ok(())
}

/// Records the network server's pid (it may map the rings and kick).
pub fn set_net_server(pid: Pid) {
    if let Some(d) = DEVICE.get() {
        d.state.lock().net = Some(pid);
    }
}

/// Starts the driver from `archive` and a supervisor that restarts it
/// whenever it ends.  Returns its pid.  Called once, before the network
/// server starts.
pub fn start_driver(archive: &'static [u8]) -> Result<Pid, String> {
    let pid = spawn_driver(archive)?;
    crate::sched::spawn("nicd-supervisor", None, move || supervise(archive, pid));
    Ok(pid)
}

fn spawn_driver(archive: &'static [u8]) -> Result<Pid, String> {
    let d = DEVICE.get().ok_or("no device claimed")?;
    let entry = bootfmt::cpio::find(archive, NICD_PATH)
        .map_err(|e| format!("initramfs: {e}"))?
        .ok_or_else(|| {
            format!("/{NICD_PATH} is not in the initramfs (servers.nic=process needs it)")
        })?;
    let prog = crate::proc::files::Program::Bytes(entry.data);
    let argv = [b"nicd".to_vec()];
    // The pid is chosen and recorded before the process exists, so its
    // first `dev_ctl` finds it (and no lock is held while it is loaded).
    let pid = crate::proc::process::alloc_id();
    d.state.lock().driver = Some(pid);
    let path = format!("/{NICD_PATH}");
    if let Err(e) =
        crate::proc::init::spawn_program(&prog, &path, &argv, &[], Some(pid), |_| Ok(()))
    {
        d.state.lock().driver = None;
        return Err(format!("cannot start /{NICD_PATH}: errno {}", e.0));
    }
    d.starts.fetch_add(1, Ordering::Relaxed);
    Ok(pid)
}

/// A driver that ends this soon after its start counts as failing.
const QUICK_END_NS: u64 = 1_000_000_000;
/// Failing starts in a row after which the supervisor gives up.
const MAX_QUICK_ENDS: u32 = 5;

/// The supervisor: waits for the driver to end, cleans up, restarts it
/// (giving up after `MAX_QUICK_ENDS` instances in a row that ended within
/// `QUICK_END_NS`: a driver that cannot start would otherwise loop).
fn supervise(archive: &'static [u8], mut pid: Pid) {
    let mut started = crate::arch::time::now_ns();
    let mut quick_ends = 0;
    loop {
        loop {
            let gone = crate::proc::process::find_process(pid)
                .is_none_or(|p| p.zombie.load(Ordering::Acquire));
            if gone {
                break;
            }
            crate::sched::sleep_ns(SUPERVISE_PERIOD_NS);
        }
        let ended = crate::arch::time::now_ns();
        reset_after_driver();
        quick_ends = if ended - started < QUICK_END_NS {
            quick_ends + 1
        } else {
            0
        };
        if quick_ends >= MAX_QUICK_ENDS {
            log::error!(
                "userdev: driver pid {} ended; {} instances in a row ended within {} ms of starting, not restarting",
                pid,
                quick_ends,
                QUICK_END_NS / 1_000_000
            );
            return;
        }
        started = crate::arch::time::now_ns();
        match spawn_driver(archive) {
            Ok(new) => {
                log::info!(
                    "userdev: driver pid {} ended; device reset, driver restarted as pid {} in {} us",
                    pid,
                    new,
                    (crate::arch::time::now_ns() - ended) / 1000
                );
                pid = new;
            }
            Err(msg) => {
                log::error!(
                    "userdev: driver pid {} ended and cannot restart: {}",
                    pid,
                    msg
                );
                return;
            }
        }
    }
}

/// After the driver ended: the device stops (reset), its interrupts are
/// masked and unbound, its DMA frames go back to the pool.
fn reset_after_driver() {
    let Some(d) = DEVICE.get() else { return };
    if let Err(e) = d.transport.reset() {
        log::warn!("userdev: device reset failed: {}", e);
    }
    for e in 0..d.msix.entries() {
        d.msix.set_masked(e, true);
    }
    for slot in &d.irq {
        slot.lock().take();
    }
    let mut st = d.state.lock();
    st.driver = None;
    st.driver_peer = None;
    st.dma_used = 0;
}

/// Interrupt entry for device vector `index` (= MSI-X entry).  Interrupt
/// context: no allocation, no log; one lock, held to notify.
pub fn on_interrupt(index: u8) {
    let Some(d) = DEVICE.get() else { return };
    if let Some(slot) = d.irq.get(index as usize) {
        if let Some(n) = slot.lock().as_ref() {
            n.notify(1 << index);
        }
    }
}

/// Who is calling: the driver, the network server, or neither.
#[derive(PartialEq, Eq)]
enum Caller {
    Driver,
    Net,
}

fn caller(d: &Device) -> Result<Caller, Errno> {
    let pid = crate::proc::current_task().ok_or(Errno::EPERM)?.process.pid;
    let st = d.state.lock();
    if st.driver == Some(pid) {
        Ok(Caller::Driver)
    } else if st.net == Some(pid) {
        Ok(Caller::Net)
    } else {
        Err(Errno::EPERM)
    }
}

fn map(pages: Pages, count: u64) -> SysResult {
    let aspace = crate::proc::task::current_aspace_ref().ok_or(Errno::ENOSYS)?;
    let addr = aspace.map_source(
        0,
        count * PAGE,
        PROT_READ | PROT_WRITE,
        vm::MAP_SHARED,
        Arc::new(pages),
        0,
    )?;
    Ok(addr as usize)
}

fn notification(handle: u64) -> Result<Arc<Notification>, Errno> {
    let task = crate::proc::current_task().ok_or(Errno::ENOSYS)?;
    task.process.ipc.notification(handle, abi::ipc::RIGHT_RECV)
}

/// `dev_ctl(op, a1, a2)` (`abi::dev`).
pub fn sys_dev_ctl(op: u64, a1: u64, a2: u64) -> SysResult {
    let d = DEVICE.get().ok_or(Errno::ENODEV)?;
    let who = caller(d)?;
    let driver_only = || {
        if who == Caller::Driver {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    };
    match op {
        DEV_INFO => {
            driver_only()?;
            if a2 < core::mem::size_of::<DevInfo>() as u64 {
                return Err(Errno::EINVAL);
            }
            let window = |w: virtio_pci::Window| DevWindow {
                bar: w.bar as u32,
                _pad: 0,
                offset: w.offset,
                length: w.length,
            };
            let mut info = DevInfo {
                vendor: d.function.vendor,
                device: d.function.device,
                msix_entries: d.msix.entries(),
                common: window(d.windows.common),
                device_cfg: window(d.windows.device_cfg),
                notify: window(d.windows.notify),
                notify_multiplier: d.windows.notify_multiplier,
                restarts: d.starts.load(Ordering::Relaxed).saturating_sub(1),
                ..DevInfo::default()
            };
            for (i, size) in info.bar_sizes.iter_mut().enumerate() {
                *size = mappable_bar(d, i).map_or(0, |(_, s)| s);
            }
            UserAddr(a1).write(&info)?;
            Ok(0)
        }
        DEV_MAP_BAR => {
            driver_only()?;
            let (base, size) = mappable_bar(d, usize::try_from(a1).map_err(|_| Errno::EINVAL)?)
                .ok_or(Errno::EINVAL)?;
            let pages = size.div_ceil(PAGE);
            map(Pages::Range { base, pages }, pages)
        }
        DEV_DMA_ALLOC => {
            driver_only()?;
            if a1 == 0 {
                return Err(Errno::EINVAL);
            }
            let out = UserAddr(a2).slice((a1 as usize).checked_mul(8).ok_or(Errno::EINVAL)?)?;
            let frames = {
                let mut st = d.state.lock();
                if st.dma_used as u64 + a1 > DMA_MAX_PAGES {
                    return Err(Errno::ENOMEM);
                }
                let mut frames = Vec::with_capacity(a1 as usize);
                for _ in 0..a1 {
                    let frame = if st.dma_used < st.dma_pool.len() {
                        let f = st.dma_pool[st.dma_used];
                        // SAFETY: a pool frame no instance holds now (the
                        // device was reset when its last holder ended).
                        unsafe {
                            core::ptr::write_bytes(memory::phys_to_virt(f), 0, PAGE as usize)
                        };
                        f
                    } else {
                        let f = alloc_zeroed().ok_or(Errno::ENOMEM)?;
                        st.dma_pool.push(f);
                        f
                    };
                    st.dma_used += 1;
                    frames.push(frame);
                }
                frames
            };
            let phys: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.as_u64().to_le_bytes())
                .collect();
            let mapped = out
                .write_from(&phys)
                .and_then(|()| map(Pages::List(frames), a1));
            if mapped.is_err() {
                // Not given out after all: back to the pool's free part
                // (the last ones taken, so the pool stays a prefix).
                d.state.lock().dma_used -= a1 as usize;
            }
            mapped
        }
        DEV_IRQ_BIND => {
            driver_only()?;
            if a1 >= IRQ_ENTRIES.min(u64::from(d.msix.entries())) {
                return Err(Errno::EINVAL);
            }
            let n = notification(a2)?;
            let entry = a1 as u16;
            let cpus = crate::sched::cpu_count();
            let apic = crate::arch::cpu::get(entry as usize % cpus).lapic_id();
            *d.irq[entry as usize].lock() = Some(n);
            d.msix
                .program(entry, apic, DEVICE_VECTOR_BASE + entry as u8);
            d.msix.set_masked(entry, false);
            Ok(0)
        }
        DEV_RING_MAP => map(Pages::List(d.ring.clone()), RING_PAGES),
        DEV_SET_PEER => {
            let n = notification(a1)?;
            let mut st = d.state.lock();
            match who {
                Caller::Driver => st.driver_peer = Some(n),
                Caller::Net => st.net_peer = Some(n),
            }
            Ok(0)
        }
        DEV_KICK => {
            let peer = {
                let st = d.state.lock();
                match who {
                    Caller::Driver => st.net_peer.clone(),
                    Caller::Net => st.driver_peer.clone(),
                }
            };
            if let Some(n) = peer {
                n.notify(KICK_BIT);
            }
            Ok(0)
        }
        _ => {
            log::warn!("userdev: dev_ctl op {} unknown", op);
            Err(Errno::EINVAL)
        }
    }
}

/// `(address, size)` of BAR `i` if the driver may map it: an assigned,
/// page-aligned memory BAR of at most `MAX_BAR_BYTES` without the MSI-X
/// table or pending bits.
fn mappable_bar(d: &Device, i: usize) -> Option<(u64, u64)> {
    match d.function.bars.get(i)? {
        Bar::Memory { address, size, .. }
            if *address != 0
                && address % PAGE == 0
                && *size >= PAGE
                && *size <= MAX_BAR_BYTES
                && !d.msix_bars[i] =>
        {
            Some((*address, *size))
        }
        _ => None,
    }
}
