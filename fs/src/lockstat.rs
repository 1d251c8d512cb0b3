//! Lock statistics per lock class and per CPU, and the locks that keep them.
//!
//! Owns: `LockClass`, the per-CPU counters (acquisitions, contended
//! acquisitions, nanoseconds spent waiting), and `RwLock`/`Mutex` wrappers
//! over `spin` (`RwLock`: over `percpu::BiasedRwLock`, read-biased for the
//! classes of `LockClass::read_biased`) that record into them.  An acquisition is *contended* when the
//! first try failed; the wait is then timed with the clock installed by
//! `set_wait_clock` (0 until one is installed).
//!
//! Invariants: every acquisition through these wrappers is counted exactly
//! once, on the CPU that took it; counters only grow.  Updates touch only the
//! local CPU's cache line.
//!
//! Every guard pins its holder to the CPU (`percpu::CpuGuard`: in the
//! kernel, interrupts off), so a lock holder is never preempted while
//! others spin; guards are released in reverse order of acquisition.
//!
//! Must not: sleep, allocate on the lock path, or take another lock.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use percpu::{CpuGuard, PerCpu};

/// Which kind of lock an acquisition was of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum LockClass {
    /// The single lock of `LockMode::Global` (the ablation).
    Global = 0,
    /// A directory hash bucket.
    DirBucket,
    /// An inode's metadata (mode, link count, times).
    InodeMeta,
    /// A regular file's page map and size.
    FileData,
    /// The per-fs lock serializing cross-directory renames.
    Rename,
    /// A per-CPU inode-number range.
    InoRange,
    /// A process's descriptor table (used by the kernel glue).
    FdTable,
    /// A pipe buffer (used by the kernel glue).
    Pipe,
    /// A shard of a block cache (`block`).
    BlockCache,
    /// The allocation and on-disk metadata lock of one disk file system
    /// (`ext2`).
    DiskFs,
}

/// Number of lock classes.
pub const NUM_CLASSES: usize = 10;

/// Every class, in index order.
pub const CLASSES: [LockClass; NUM_CLASSES] = [
    LockClass::Global,
    LockClass::DirBucket,
    LockClass::InodeMeta,
    LockClass::FileData,
    LockClass::Rename,
    LockClass::InoRange,
    LockClass::FdTable,
    LockClass::Pipe,
    LockClass::BlockCache,
    LockClass::DiskFs,
];

impl LockClass {
    /// Whether locks of this class may become read-biased
    /// (`percpu::BiasedRwLock`).  Only file data: every reader of a shared
    /// file would otherwise write its lock word, and its read sections
    /// neither nest with writes of the same lock nor sleep.
    pub const fn read_biased(self) -> bool {
        matches!(self, LockClass::FileData)
    }

    /// Stable name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            LockClass::Global => "global",
            LockClass::DirBucket => "dir_bucket",
            LockClass::InodeMeta => "inode_meta",
            LockClass::FileData => "file_data",
            LockClass::Rename => "rename",
            LockClass::InoRange => "ino_range",
            LockClass::FdTable => "fd_table",
            LockClass::Pipe => "pipe",
            LockClass::BlockCache => "block_cache",
            LockClass::DiskFs => "disk_fs",
        }
    }
}

struct Counters {
    acquired: AtomicU64,
    contended: AtomicU64,
    wait_ns: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            acquired: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
        }
    }
}

static STATS: PerCpu<[Counters; NUM_CLASSES]> =
    percpu::per_cpu!([const { Counters::new() }; NUM_CLASSES]);

static WAIT_CLOCK: spin::Once<fn() -> u64> = spin::Once::new();

/// Installs the monotonic nanosecond clock used to time contended waits.
/// Only the first call has an effect.
pub fn set_wait_clock(clock: fn() -> u64) {
    WAIT_CLOCK.call_once(|| clock);
}

fn now_ns() -> u64 {
    WAIT_CLOCK.get().map_or(0, |f| f())
}

/// Records one acquisition of `class` on this CPU.
pub fn record(class: LockClass, contended: bool, wait_ns: u64) {
    let guard = CpuGuard::new();
    let c = &STATS.get(&guard)[class as usize];
    c.acquired.fetch_add(1, Ordering::Relaxed);
    if contended {
        c.contended.fetch_add(1, Ordering::Relaxed);
        c.wait_ns.fetch_add(wait_ns, Ordering::Relaxed);
    }
}

/// Counters of one class on one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCpuStats {
    pub acquired: u64,
    pub contended: u64,
    pub wait_ns: u64,
}

/// Counters of `class` on CPU `cpu`.
pub fn cpu_stats(class: LockClass, cpu: usize) -> ClassCpuStats {
    let c = &STATS.remote(cpu)[class as usize];
    ClassCpuStats {
        acquired: c.acquired.load(Ordering::Relaxed),
        contended: c.contended.load(Ordering::Relaxed),
        wait_ns: c.wait_ns.load(Ordering::Relaxed),
    }
}

/// Counters of `class` summed over all CPUs.
pub fn total(class: LockClass) -> ClassCpuStats {
    let mut t = ClassCpuStats::default();
    for cpu in 0..percpu::MAX_CPUS {
        let s = cpu_stats(class, cpu);
        t.acquired += s.acquired;
        t.contended += s.contended;
        t.wait_ns += s.wait_ns;
    }
    t
}

/// Text report, one line per class and CPU that took a lock of that class:
/// `lock class=NAME cpu=N acquired=A contended=C wait_ns=W`, then one
/// `lock class=NAME cpu=all ...` line per class.
pub fn report() -> String {
    let mut out = String::new();
    for class in CLASSES {
        for cpu in 0..percpu::MAX_CPUS {
            let s = cpu_stats(class, cpu);
            if s.acquired != 0 {
                let _ = writeln!(
                    out,
                    "lock class={} cpu={} acquired={} contended={} wait_ns={}",
                    class.name(),
                    cpu,
                    s.acquired,
                    s.contended,
                    s.wait_ns
                );
            }
        }
        let t = total(class);
        let _ = writeln!(
            out,
            "lock class={} cpu=all acquired={} contended={} wait_ns={}",
            class.name(),
            t.acquired,
            t.contended,
            t.wait_ns
        );
    }
    out
}

/// Snapshot of every class's total, in `CLASSES` order.
pub fn totals() -> Vec<(LockClass, ClassCpuStats)> {
    CLASSES.iter().map(|&c| (c, total(c))).collect()
}

/// Records one acquisition on the CPU `pin` holds.
fn record_pinned(pin: &CpuGuard, class: LockClass, contended: bool, wait_ns: u64) {
    let c = &STATS.get(pin)[class as usize];
    c.acquired.fetch_add(1, Ordering::Relaxed);
    if contended {
        c.contended.fetch_add(1, Ordering::Relaxed);
        c.wait_ns.fetch_add(wait_ns, Ordering::Relaxed);
    }
}

/// A lock guard that also pins its holder to the CPU (in the kernel:
/// interrupts off, so the holder is never preempted while others spin).
/// Guards must be released in the reverse order of acquisition, like the
/// pins they hold.
pub struct Pinned<G> {
    // Field order is drop order: the lock is released before the pin.
    guard: G,
    _pin: CpuGuard,
}

impl<G: core::ops::Deref> core::ops::Deref for Pinned<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: core::ops::DerefMut> core::ops::DerefMut for Pinned<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

/// Takes a lock through `try_take`/`take`, pinned, and counts it.
fn acquire<G>(
    class: LockClass,
    try_take: impl FnOnce() -> Option<G>,
    take: impl FnOnce() -> G,
) -> Pinned<G> {
    let pin = CpuGuard::new();
    if let Some(guard) = try_take() {
        record_pinned(&pin, class, false, 0);
        return Pinned { guard, _pin: pin };
    }
    let start = now_ns();
    let guard = take();
    record_pinned(&pin, class, true, now_ns().saturating_sub(start));
    Pinned { guard, _pin: pin }
}

/// Reader-writer spin lock that counts its acquisitions under a class and
/// pins the holder while held.
///
/// Locks of a class for which `LockClass::read_biased` holds are
/// `percpu::BiasedRwLock`s that may become read-biased: once several CPUs
/// read one, a read writes only the reader's CPU line instead of the lock
/// word every reader shares (a file every core reads: `pread4k_shared`).
/// The statistics stay per CPU (`record_pinned`), so a biased read writes
/// no shared line at all.  Other classes behave as a plain spin `RwLock`.
pub struct RwLock<T> {
    inner: percpu::BiasedRwLock<T>,
    class: LockClass,
}

/// A read guard of `RwLock`.
pub type ReadGuard<'a, T> = Pinned<percpu::BiasedReadGuard<'a, T>>;
/// A write guard of `RwLock`.
pub type WriteGuard<'a, T> = Pinned<percpu::BiasedWriteGuard<'a, T>>;

impl<T> RwLock<T> {
    pub const fn new(class: LockClass, value: T) -> Self {
        RwLock {
            inner: percpu::BiasedRwLock::new(value, class.read_biased()),
            class,
        }
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        let pin = CpuGuard::new();
        if let Some(guard) = self.inner.try_read(&pin) {
            record_pinned(&pin, self.class, false, 0);
            return Pinned { guard, _pin: pin };
        }
        let start = now_ns();
        let guard = self.inner.read(&pin);
        record_pinned(&pin, self.class, true, now_ns().saturating_sub(start));
        Pinned { guard, _pin: pin }
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        acquire(self.class, || self.inner.try_write(), || self.inner.write())
    }

    /// Exclusive access without locking (the caller owns the lock).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// One attempt at the write lock (counted only when it succeeds).
    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        let pin = CpuGuard::new();
        let guard = self.inner.try_write()?;
        record_pinned(&pin, self.class, false, 0);
        Some(Pinned { guard, _pin: pin })
    }

    /// Whether reads currently go through per-CPU slots (tests, reports).
    pub fn is_read_biased(&self) -> bool {
        self.inner.is_biased()
    }
}

/// Spin mutex that counts its acquisitions under a class and pins the
/// holder while held.
pub struct Mutex<T> {
    inner: spin::Mutex<T>,
    class: LockClass,
}

impl<T> Mutex<T> {
    pub const fn new(class: LockClass, value: T) -> Self {
        Mutex {
            inner: spin::Mutex::new(value),
            class,
        }
    }

    pub fn lock(&self) -> Pinned<spin::MutexGuard<'_, T>> {
        acquire(self.class, || self.inner.try_lock(), || self.inner.lock())
    }

    /// One attempt at the lock (counted only when it succeeds).
    pub fn try_lock(&self) -> Option<Pinned<spin::MutexGuard<'_, T>>> {
        let pin = CpuGuard::new();
        let guard = self.inner.try_lock()?;
        record_pinned(&pin, self.class, false, 0);
        Some(Pinned { guard, _pin: pin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use core::sync::atomic::AtomicU64;

    std::thread_local! {
        /// Set on the thread that contends for the lock in the test.
        static CONTENDER: Cell<bool> = const { Cell::new(false) };
    }
    /// When the contender started waiting (its first clock reading after a
    /// failed `try_lock`); 0 = not yet.
    static WAIT_STARTED: AtomicU64 = AtomicU64::new(0);

    /// The host clock, noting when the contender starts to wait: the
    /// handshake that tells the test the contender is blocked.
    fn handshake_clock() -> u64 {
        let now = crate::host::monotonic_ns().max(1);
        if CONTENDER.with(Cell::get) {
            let _ = WAIT_STARTED.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        }
        now
    }

    /// File data read from two CPUs becomes read-biased (and its reads
    /// are still counted, on the reader's CPU); other classes never do; a
    /// write after biasing is seen by later reads.
    #[test]
    fn file_data_reads_from_two_cpus_are_biased_and_counted() {
        let file: &'static RwLock<u64> = Box::leak(Box::new(RwLock::new(LockClass::FileData, 1)));
        let table: &'static RwLock<u64> = Box::leak(Box::new(RwLock::new(LockClass::FdTable, 1)));
        let before = cpu_stats(LockClass::FileData, 41);
        for cpu in [40, 41, 40, 41] {
            std::thread::spawn(move || {
                percpu::host::bind_current_thread(cpu).unwrap();
                assert_eq!(*file.read(), 1);
                assert_eq!(*table.read(), 1);
            })
            .join()
            .unwrap();
        }
        assert!(file.is_read_biased());
        assert!(!table.is_read_biased());
        assert_eq!(
            cpu_stats(LockClass::FileData, 41).acquired - before.acquired,
            2
        );
        *file.write() = 2;
        assert!(!file.is_read_biased());
        assert_eq!(*file.read(), 2);
    }

    #[test]
    fn contended_acquisition_is_counted_with_wait_time() {
        const HELD_NS: u64 = 20_000_000;
        set_wait_clock(handshake_clock);
        let lock = Mutex::new(LockClass::Rename, 0u32);
        let cpu = 37;
        let before = cpu_stats(LockClass::Rename, cpu);
        std::thread::scope(|s| {
            let g = lock.lock();
            let h = s.spawn(|| {
                percpu::host::bind_current_thread(cpu).unwrap();
                CONTENDER.with(|c| c.set(true));
                *lock.lock() += 1;
            });
            // Wait (bounded) until the contender is waiting for the lock,
            // then keep holding it for HELD_NS of its wait.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let started = loop {
                match WAIT_STARTED.load(Ordering::SeqCst) {
                    0 if std::time::Instant::now() < deadline => std::thread::yield_now(),
                    0 => panic!("the contender never started waiting for the lock (30 s)"),
                    t => break t,
                }
            };
            while crate::host::monotonic_ns() < started + HELD_NS {
                std::thread::yield_now();
            }
            drop(g);
            h.join().unwrap();
        });
        let after = cpu_stats(LockClass::Rename, cpu);
        assert_eq!(after.acquired - before.acquired, 1);
        assert_eq!(after.contended - before.contended, 1);
        assert!(after.wait_ns - before.wait_ns >= HELD_NS, "{after:?}");
        assert!(report().contains("lock class=rename cpu=37"));
    }
}
