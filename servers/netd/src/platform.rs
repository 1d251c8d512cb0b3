//! The `net::Platform` of the user-mode server: a monotonic clock, the
//! server thread's index as the CPU (server thread `i` runs on core `i`
//! and owns loopback instance `i`), readiness notifications routed to the
//! readiness tracker, randomness, and the NIC's frame path.
//!
//! Owns `ServerPlatform`, `Tag` (the per-socket "waiters" of `net`: here
//! not a wait queue but a link to the socket's readiness watch, set once
//! the socket has a handle), the thread-local worker index and the
//! `FrameSink` trait.
//!
//! Must not: block or call into `net` from `notify` (it only flips an
//! atomic and may queue a report and raise a notification bit).

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use crate::readiness::Watch;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread server thread `worker` (its "CPU" for `net`).
pub fn set_worker(worker: usize) {
    WORKER.with(|w| w.set(worker));
}

/// The calling thread's worker index (0 for threads that never set one).
pub fn worker() -> usize {
    WORKER.with(|w| w.get())
}

/// The NIC's transmit path.  The real server fills it with its network
/// driver (a virtio-net device the kernel hands over, or frames passed to
/// the kernel's driver over IPC) and feeds received frames to
/// `NetServer::receive_frame`; without a NIC the stack is loopback only.
pub trait FrameSink: Send + Sync {
    /// One Ethernet frame out; may drop it when the ring is full (TCP
    /// retransmits).  Must not block for long or call into the server.
    fn transmit(&self, frame: &[u8]);
}

/// Per-socket link from `net`'s notify to the socket's watch.
#[derive(Default)]
pub struct Tag {
    watch: OnceLock<Arc<Watch>>,
}

impl Tag {
    /// Links the socket to its watch (once; later calls are ignored).
    pub fn link(&self, w: Arc<Watch>) {
        let _ = self.watch.set(w);
    }
}

/// The platform.
pub struct ServerPlatform {
    start: Instant,
    rng: AtomicU64,
    /// Swappable: a successor instance that adopted this platform gives it
    /// its own mapping of the NIC's rings (`replace_nic`).
    nic: RwLock<Option<Arc<dyn FrameSink>>>,
    /// A clock that moves only when told (tests, simulations); `None`:
    /// the monotonic clock.
    manual: Option<Arc<AtomicU64>>,
}

impl ServerPlatform {
    pub fn new(nic: Option<Arc<dyn FrameSink>>) -> ServerPlatform {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x6e65_7464);
        ServerPlatform {
            start: Instant::now(),
            rng: AtomicU64::new(h.finish() | 1),
            nic: RwLock::new(nic),
            manual: None,
        }
    }

    /// Puts `nic` in place of the frame path and returns the old one (a
    /// successor instance: the old sink names the previous process's
    /// mapping, which the caller must not drop into this one's unmap).
    pub fn replace_nic(&self, nic: Option<Arc<dyn FrameSink>>) -> Option<Arc<dyn FrameSink>> {
        std::mem::replace(
            &mut *self.nic.write().unwrap_or_else(|p| p.into_inner()),
            nic,
        )
    }

    /// A platform whose clock reads `ms` (milliseconds), for runs that
    /// must not depend on timing (the differential test).
    pub fn with_manual_clock(nic: Option<Arc<dyn FrameSink>>, ms: Arc<AtomicU64>) -> Self {
        ServerPlatform {
            manual: Some(ms),
            ..ServerPlatform::new(nic)
        }
    }
}

impl net::Platform for ServerPlatform {
    type Waiters = Tag;

    fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::Acquire),
            None => self.start.elapsed().as_millis() as u64,
        }
    }

    fn current_cpu(&self) -> usize {
        worker()
    }

    fn notify(&self, tag: &Tag) {
        if let Some(w) = tag.watch.get() {
            w.fire();
        }
    }

    fn transmit_frame(&self, frame: &[u8]) {
        let nic = self.nic.read().unwrap_or_else(|p| p.into_inner());
        if let Some(nic) = &*nic {
            nic.transmit(frame);
        }
    }

    fn random_u64(&self) -> u64 {
        // splitmix64 over a per-process random seed.
        let mut x = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}
