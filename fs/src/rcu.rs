//! Read-side critical sections that write only a per-CPU cache line, and
//! deferred freeing after a grace period (a small sleepable-RCU scheme).
//!
//! Owns `Rcu<T>`: per-CPU reader counts in two phases, the current phase,
//! and per-CPU lists of retired objects waiting for a grace period.
//!
//! How it works.  A reader (`read`) loads the phase `p` (a read-mostly
//! line), increments its CPU's counter `readers[cpu][p]` (its own line),
//! and decrements that same counter when the guard drops, even if it read
//! the phase just before a flip.  A writer first makes an object
//! unreachable (unlinks it under its bucket lock), then `retire`s it.  A
//! grace period (`synchronize`) flips the phase and waits until every
//! CPU's counter of the old phase reads zero, twice (once per phase).
//!
//! Why it is correct.  Take an object O unlinked by store U, then retired;
//! the grace period G that frees it starts with a `SeqCst` fence after U,
//! and a reader has a `SeqCst` fence between its increment and its first
//! load.  A reader R that can reach O loads a pointer to O, i.e. a value
//! older than U; by the two fences (store buffering forbidden) G's counter
//! loads then see R's increment.  The decrement is a release and G's loads
//! acquire, so R's accesses to O happen before G returns.
//! R incremented `readers[c][p]` for some p.  G waits, for both phases in
//! turn, until the counter it watches reads zero; a counter reads zero only
//! when every reader whose increment it has seen has also decremented it
//! (each reader pairs its own increment and decrement on one counter).  So
//! when G ends, R has left its section, and O can be freed.  Readers that
//! increment after G's loads start after U and cannot reach O.  Waiting on
//! both phases covers a reader that loaded the phase before an earlier
//! flip and incremented late; flipping before each wait lets new readers
//! go to the other counter, so a grace period ends even under a steady
//! stream of readers.
//!
//! Invariants: a retired object is dropped only after a grace period that
//! started after it was retired; a reader never waits for a writer.
//!
//! Must not: run `synchronize` (or drop a full retire list) inside a read
//! section or while a reader could wait for the caller (a grace period
//! waits for readers; readers never wait here, so it is safe under locks
//! readers do not take).  In `LockMode::Global` every reader and writer
//! holds the one big lock, so retired objects are dropped at once and
//! readers touch no counter.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use percpu::{CachePadded, CpuGuard, PerCpu};

use crate::LockMode;

/// Retired objects a CPU collects before it runs a grace period.
const RETIRE_BATCH: usize = 64;
/// Weight (pages the objects hold) a CPU collects before it runs one.
const RETIRE_WEIGHT: usize = 256;

/// A read-side critical section; objects reachable when it began stay
/// valid until it is dropped.  Pins the CPU (in the kernel: interrupts
/// off), so sections are short and a grace period never waits on a
/// preempted reader.
pub(crate) struct ReadGuard<'a> {
    // Field order is drop order: the count is released before the pin.
    slot: Option<&'a AtomicUsize>,
    _pin: CpuGuard,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One CPU's retired objects and the sum of their weights.
type Retired<T> = (Vec<Box<T>>, usize);

pub(crate) struct Rcu<T: Send> {
    mode: LockMode,
    /// Phase new readers count themselves in (0 or 1).
    phase: CachePadded<AtomicUsize>,
    /// Per CPU: readers inside a section, by the phase they entered in.
    /// (Boxed, as `retired`: per-CPU arrays are 8 KiB each, too big to be
    /// built on a 64 KiB kernel stack inside the superblock.)
    readers: Box<PerCpu<[AtomicUsize; 2]>>,
    /// Serializes grace periods (taken once per `RETIRE_BATCH` retires).
    /// On its own line: every reader loads `mode` and `readers` next to
    /// it, and a grace period on one CPU must not write their line.
    gp: CachePadded<spin::Mutex<()>>,
    /// Per CPU: retired objects waiting for a grace period, and the sum
    /// of their weights.
    retired: Box<PerCpu<spin::Mutex<Retired<T>>>>,
}

impl<T: Send> Rcu<T> {
    pub(crate) fn new(mode: LockMode) -> Self {
        Rcu {
            mode,
            phase: CachePadded::new(AtomicUsize::new(0)),
            readers: Box::new(percpu::per_cpu!([AtomicUsize::new(0), AtomicUsize::new(0)])),
            gp: CachePadded::new(spin::Mutex::new(())),
            retired: Box::new(percpu::per_cpu!(spin::Mutex::new((Vec::new(), 0)))),
        }
    }

    /// Enters a read section.  Writes only this CPU's counter line.
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        let pin = CpuGuard::new();
        if self.mode == LockMode::Global {
            return ReadGuard {
                slot: None,
                _pin: pin,
            };
        }
        let phase = self.phase.load(Ordering::SeqCst) & 1;
        let slot = &self.readers.get(&pin)[phase];
        slot.fetch_add(1, Ordering::SeqCst);
        // Orders the increment before every load of the section (the
        // store-buffering pattern against the fence in `synchronize`).
        fence(Ordering::SeqCst);
        ReadGuard {
            slot: Some(slot),
            _pin: pin,
        }
    }

    /// Drops `object` once no reader can hold it.  The caller made it
    /// unreachable first.  `weight` is the memory (in pages) it keeps
    /// alive: a CPU runs a grace period after `RETIRE_BATCH` objects or
    /// `RETIRE_WEIGHT` pages, whichever comes first.
    pub(crate) fn retire(&self, object: Box<T>, weight: usize) {
        if self.mode == LockMode::Global {
            // Every reader holds the big lock, as does the caller.
            drop(object);
            return;
        }
        let batch = {
            let pin = CpuGuard::new();
            let mut list = self.retired.get(&pin).lock();
            list.0.push(object);
            list.1 += weight;
            if list.0.len() >= RETIRE_BATCH || list.1 >= RETIRE_WEIGHT {
                list.1 = 0;
                core::mem::take(&mut list.0)
            } else {
                Vec::new()
            }
        };
        if !batch.is_empty() {
            self.synchronize();
            drop(batch);
        }
    }

    /// Runs a grace period and drops everything retired before it, on
    /// every CPU (used when memory runs short, and by tests).
    pub(crate) fn flush(&self) {
        if self.mode == LockMode::Global {
            return;
        }
        let mut all = Vec::new();
        for list in self.retired.iter() {
            let mut list = list.lock();
            list.1 = 0;
            all.append(&mut list.0);
        }
        if !all.is_empty() {
            self.synchronize();
        }
        drop(all);
    }

    /// Waits until every read section that began before the call has
    /// ended (see the module comment for why this suffices).
    fn synchronize(&self) {
        let _gp = loop {
            match self.gp.try_lock() {
                Some(g) => break g,
                None => wait_a_little(),
            }
        };
        fence(Ordering::SeqCst);
        for _ in 0..2 {
            let old = self.phase.fetch_xor(1, Ordering::SeqCst) & 1;
            for cpu in self.readers.iter() {
                while cpu[old].load(Ordering::SeqCst) != 0 {
                    wait_a_little();
                }
            }
        }
    }
}

#[cfg(any(test, feature = "host"))]
fn wait_a_little() {
    // Host threads may be preempted inside a section: let them run.
    std::thread::yield_now();
}

#[cfg(not(any(test, feature = "host")))]
fn wait_a_little() {
    core::hint::spin_loop();
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicBool;

    struct Canary(Arc<AtomicBool>);
    impl Drop for Canary {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn retired_object_outlives_open_read_section() {
        percpu::host::install();
        let rcu: &'static Rcu<Canary> = Box::leak(Box::new(Rcu::new(LockMode::PerCpu)));
        let dropped = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _g = rcu.read();
            entered_tx.send(()).unwrap();
            leave_rx.recv().unwrap();
        });
        entered_rx.recv().unwrap();
        let d2 = dropped.clone();
        let writer = std::thread::spawn(move || rcu.retire(Box::new(Canary(d2)), RETIRE_WEIGHT));
        // Handshake: the writer's grace period flips the phase, then waits
        // for the reader's counter.  Wait (bounded) for the flip.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while rcu.phase.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never started a grace period (30 s)"
            );
            std::thread::yield_now();
        }
        // The writer is inside its grace period: it may not finish, nor
        // free the object, while the reader stays in its section.
        for _ in 0..1000 {
            assert!(!dropped.load(Ordering::SeqCst), "freed under a reader");
            assert!(!writer.is_finished(), "grace period ended under a reader");
            std::thread::yield_now();
        }
        leave_tx.send(()).unwrap();
        reader.join().unwrap();
        writer.join().unwrap();
        assert!(dropped.load(Ordering::SeqCst));
    }
}
