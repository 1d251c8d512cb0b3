//! `BiasedRwLock<T>`: a reader-writer spin lock whose readers, while the
//! lock is *read-biased*, write only their own CPU's cache line (the idea
//! of BRAVO, Dice and Kogan, USENIX ATC 2019, on per-CPU slots).
//!
//! Owns the lock word (a `spin::RwLock<()>`), the data, the bias flag, and
//! the process-wide table of *visible readers*: `SLOTS` words per CPU, on
//! that CPU's own line.  A biased reader publishes the lock in its CPU's
//! slot `h(lock)`, then checks that the bias still holds; a writer takes the
//! lock word, clears the bias, and waits until no CPU's slot `h(lock)`
//! names the lock.  A reader that cannot publish (bias off, slot taken by
//! another lock) takes the lock word like a plain `RwLock`.
//!
//! Why it is correct.  A published slot holds `key(lock) | depth`.  Reader:
//! publish (tentative), `SeqCst` fence, load the bias; writer: store
//! bias = false, `SeqCst` fence, load every CPU's slot.  One of them sees
//! the other's store (no store buffering under `SeqCst`): either the reader
//! sees the bias off and withdraws, or the writer sees the slot and waits
//! for it.  The bias is set again only by a reader holding the lock word
//! for reading, so never while a writer holds it.  A reader whose CPU slot
//! already holds a *confirmed* entry for this lock joins it (depth + 1)
//! without looking at the bias: a writer cannot have passed that slot, so it
//! waits for the joiner too, and a nested read never waits for a writer that
//! waits for its outer read.  The release of a slot is `SeqCst`, so the
//! section's reads happen before the writer's load that sees it gone.
//!
//! Policy: bias is allowed per lock (`new(value, biased)`), only outside
//! `LockMode::Global`, and is turned on by a slow-path reader when a
//! second CPU reads the lock (a slow read from another CPU than the one
//! before): a lock only one CPU reads stays a plain lock (its writer never
//! scans the other CPUs' slots), a lock several CPUs read becomes biased.
//! A writer that finds the bias on clears it; it comes back only after
//! `REBIAS_AFTER` such changes of reading CPU (a lock written often stays
//! plain, as BRAVO's inhibition window).
//!
//! Must not: be taken for reading and then for writing by the same holder
//! (deadlock, as with any reader-writer lock), or hand out a biased read
//! without the caller pinning its CPU (`CpuGuard`) for the guard's whole life.

use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::guard::CpuGuard;
use crate::per_cpu::PerCpu;
use crate::{cpu_count, lock_mode, LockMode};

/// Visible-reader slots per CPU (one 64-byte line).
const SLOTS: usize = 8;
/// Low bits of a slot: the nesting depth of the reads it stands for.
const DEPTH: u64 = 0x7fff;
/// Set while a reader has published but not yet confirmed the bias.
const TENTATIVE: u64 = 0x8000;
/// Slow-path reads from changing CPUs before the lock is biased again
/// after a writer revoked the bias.
pub const REBIAS_AFTER: u32 = 16;
/// The same before the first bias: the first read from a second CPU.
const FIRST_BIAS_AFTER: u32 = 1;

/// Per CPU: the biased read locks held there, `key | depth` (0 = free).
static VISIBLE: PerCpu<[AtomicU64; SLOTS]> = crate::per_cpu!([const { AtomicU64::new(0) }; SLOTS]);

/// A reader-writer spin lock with per-CPU biased reads (see the module).
pub struct BiasedRwLock<T: ?Sized> {
    lock: spin::RwLock<()>,
    /// May the lock become read-biased at all.
    allowed: bool,
    /// Readers may publish themselves in `VISIBLE` instead of `lock`.
    bias: AtomicBool,
    /// Slow-path reads from a changed CPU still needed before biasing.
    countdown: AtomicU32,
    /// The CPU of the last slow-path reader, plus one (0: none yet).
    last_cpu: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to readers and `&mut T` to one writer at a time, like `spin::RwLock`.
unsafe impl<T: ?Sized + Send> Send for BiasedRwLock<T> {}
// SAFETY: as above: shared readers need `T: Sync`, the exclusive writer `T: Send`.
unsafe impl<T: ?Sized + Send + Sync> Sync for BiasedRwLock<T> {}

/// A read of a `BiasedRwLock`: through the lock word or a visible slot.
pub struct BiasedReadGuard<'a, T: ?Sized> {
    lock: &'a BiasedRwLock<T>,
    how: How<'a>,
}

enum How<'a> {
    Word(#[allow(dead_code)] spin::RwLockReadGuard<'a, ()>),
    Slot(&'a AtomicU64),
}

/// The write side of a `BiasedRwLock` (no biased reader is inside).
pub struct BiasedWriteGuard<'a, T: ?Sized> {
    lock: &'a BiasedRwLock<T>,
    _word: spin::RwLockWriteGuard<'a, ()>,
}

impl<T> BiasedRwLock<T> {
    /// A lock over `value`; `biased`: it may become read-biased.
    pub const fn new(value: T, biased: bool) -> Self {
        BiasedRwLock {
            lock: spin::RwLock::new(()),
            allowed: biased,
            bias: AtomicBool::new(false),
            countdown: AtomicU32::new(FIRST_BIAS_AFTER),
            last_cpu: AtomicU32::new(0),
            data: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> BiasedRwLock<T> {
    /// This lock's key in a slot (the address's low 48 bits, above the
    /// depth bits).
    fn key(&self) -> u64 {
        ((self as *const Self as *const () as usize as u64) & 0xffff_ffff_ffff) << 16
    }

    fn slot_index(&self) -> usize {
        ((self as *const Self as *const () as usize) >> 6) % SLOTS
    }

    /// Whether readers currently publish themselves per CPU.
    pub fn is_biased(&self) -> bool {
        self.bias.load(Ordering::Relaxed)
    }

    /// Read access, if it is free now (a biased read always is).
    pub fn try_read(&self, pin: &CpuGuard) -> Option<BiasedReadGuard<'_, T>> {
        if let Some(slot) = self.publish(pin) {
            return Some(BiasedReadGuard {
                lock: self,
                how: How::Slot(slot),
            });
        }
        let word = self.lock.try_read()?;
        self.slow_read(pin);
        Some(BiasedReadGuard {
            lock: self,
            how: How::Word(word),
        })
    }

    /// Read access, spinning until it is granted.
    pub fn read(&self, pin: &CpuGuard) -> BiasedReadGuard<'_, T> {
        loop {
            if let Some(g) = self.try_read(pin) {
                return g;
            }
            core::hint::spin_loop();
        }
    }

    /// Write access if the lock word is free and no biased reader is
    /// inside (then the bias is off afterwards); never waits.
    pub fn try_write(&self) -> Option<BiasedWriteGuard<'_, T>> {
        let word = self.lock.try_write()?;
        if !self.revoke(false) {
            return None;
        }
        Some(BiasedWriteGuard {
            lock: self,
            _word: word,
        })
    }

    /// Write access, spinning until the lock word is free and every biased
    /// reader has left.
    pub fn write(&self) -> BiasedWriteGuard<'_, T> {
        let word = self.lock.write();
        self.revoke(true);
        BiasedWriteGuard {
            lock: self,
            _word: word,
        }
    }

    /// Exclusive access without locking (the caller owns the lock).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The biased read path: a slot of this CPU, or `None`.
    fn publish(&self, pin: &CpuGuard) -> Option<&'static AtomicU64> {
        if !self.allowed {
            return None;
        }
        let key = self.key();
        let slot = &VISIBLE.get(pin)[self.slot_index()];
        let cur = slot.load(Ordering::Relaxed);
        if cur != 0 {
            // Join a confirmed read of this lock on this CPU (nested).
            let joinable = cur & !DEPTH == key && cur & DEPTH < DEPTH;
            return (joinable
                && slot
                    .compare_exchange(cur, cur + 1, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok())
            .then_some(slot);
        }
        if !self.bias.load(Ordering::Relaxed) {
            return None;
        }
        slot.compare_exchange(0, key | TENTATIVE | 1, Ordering::SeqCst, Ordering::Relaxed)
            .ok()?;
        fence(Ordering::SeqCst);
        if self.bias.load(Ordering::SeqCst) {
            slot.store(key | 1, Ordering::SeqCst);
            Some(slot)
        } else {
            slot.store(0, Ordering::SeqCst);
            None
        }
    }

    /// A read through the lock word (held): counts towards biasing.
    fn slow_read(&self, pin: &CpuGuard) {
        if !self.allowed || self.bias.load(Ordering::Relaxed) || lock_mode() == LockMode::Global {
            return;
        }
        let me = pin.cpu() as u32 + 1;
        let last = self.last_cpu.load(Ordering::Relaxed);
        if last == me {
            return;
        }
        self.last_cpu.store(me, Ordering::Relaxed);
        if last == 0 {
            return;
        }
        let before = self
            .countdown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if before == Ok(1) {
            // Safe while the word is read-held: no writer is inside, and a
            // writer that takes it next sees the bias and revokes it.
            self.bias.store(true, Ordering::SeqCst);
        }
    }

    /// Called holding the lock word for writing: turns the bias off and
    /// waits (`wait`) for the biased readers to leave; without `wait`,
    /// `false` if one is inside.
    fn revoke(&self, wait: bool) -> bool {
        if !self.bias.load(Ordering::Relaxed) {
            return true;
        }
        self.bias.store(false, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.countdown.store(REBIAS_AFTER, Ordering::Relaxed);
        let key = self.key();
        let index = self.slot_index();
        for cpu in 0..cpu_count() {
            let slot = &VISIBLE.remote(cpu)[index];
            while slot.load(Ordering::SeqCst) & !(DEPTH | TENTATIVE) == key {
                if !wait {
                    return false;
                }
                core::hint::spin_loop();
            }
        }
        true
    }
}

impl<T: ?Sized> core::ops::Deref for BiasedReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read is held (lock word or a visible slot the writers wait for): no `&mut T` exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for BiasedReadGuard<'_, T> {
    fn drop(&mut self) {
        if let How::Slot(slot) = self.how {
            let mut cur = slot.load(Ordering::Relaxed);
            loop {
                let new = if cur & DEPTH == 1 { 0 } else { cur - 1 };
                match slot.compare_exchange(cur, new, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
        }
    }
}

impl<T: ?Sized> core::ops::Deref for BiasedWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held and no biased reader is inside.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> core::ops::DerefMut for BiasedWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held and no biased reader is inside.
        unsafe { &mut *self.lock.data.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Reads from two CPUs bias the lock; then reads write no lock word
    /// (a writer would see the word free) and a writer waits for them.
    #[test]
    fn becomes_biased_and_writer_waits_for_biased_reader() {
        crate::host::bind_current_thread(0).unwrap();
        let lock: &'static BiasedRwLock<u64> = Box::leak(Box::new(BiasedRwLock::new(7, true)));
        for i in 0..2 * REBIAS_AFTER as usize + 2 {
            let cpu = i % 2;
            std::thread::spawn(move || {
                crate::host::bind_current_thread(cpu).unwrap();
                let pin = CpuGuard::new();
                assert_eq!(*lock.read(&pin), 7);
            })
            .join()
            .unwrap();
        }
        assert!(lock.is_biased());
        // A biased read on CPU 1, held; nested reads join it.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            crate::host::bind_current_thread(1).unwrap();
            let pin = CpuGuard::new();
            let g = lock.read(&pin);
            assert!(matches!(g.how, How::Slot(_)));
            let nested = lock.read(&pin);
            assert!(matches!(nested.how, How::Slot(_)));
            drop(nested);
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            *g
        });
        held_rx.recv().unwrap();
        // The word is free, but a write cannot start under the reader.
        assert!(lock.try_write().is_none());
        assert!(!lock.is_biased());
        static WROTE: AtomicUsize = AtomicUsize::new(0);
        let (bias_tx, bias_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            // Bias on again (slow reads from changing CPUs), then write.
            for i in 0..2 * REBIAS_AFTER as usize + 2 {
                crate::host::bind_current_thread(i % 2 + 2).unwrap();
                let pin = CpuGuard::new();
                drop(lock.read(&pin));
            }
            bias_tx.send(lock.is_biased()).unwrap();
            let mut w = lock.write();
            *w = 8;
            WROTE.store(1, Ordering::SeqCst);
        });
        // The reader still holds its slot: the writer's revocation (the
        // bias was turned on again) cannot finish before it leaves.
        let _ = bias_rx.recv().unwrap();
        for _ in 0..1000 {
            assert_eq!(WROTE.load(Ordering::SeqCst), 0, "write under a biased read");
            std::thread::yield_now();
        }
        go_tx.send(()).unwrap();
        assert_eq!(reader.join().unwrap(), 7);
        writer.join().unwrap();
        let pin = CpuGuard::new();
        assert_eq!(*lock.read(&pin), 8);
    }

    /// A lock read from one CPU only never becomes biased.
    #[test]
    fn private_lock_stays_plain() {
        crate::host::bind_current_thread(3).unwrap();
        let lock = BiasedRwLock::new(1u32, true);
        for _ in 0..10 * REBIAS_AFTER {
            let pin = CpuGuard::new();
            drop(lock.read(&pin));
        }
        assert!(!lock.is_biased());
        *lock.write() += 1;
        let pin = CpuGuard::new();
        assert_eq!(*lock.read(&pin), 2);
    }
}
