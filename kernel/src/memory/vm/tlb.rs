//! TLB shootdowns: batched, and sent only to CPUs that ran the address space
//! (per-core mode: only to those of them whose own tables hold copies of
//! the range, `AddressSpace::invalidate` -> `flush_on`).
//!
//! Owns: one mailbox per CPU of pending flush requests, the handler run by
//! the `CALL_VECTOR` IPI (`on_call_ipi`), and the statistics.
//!
//! Protocol: the initiator changes the PTEs (under the range locks),
//! then reads the address space's CPU mask (SeqCst, after the PTE stores),
//! posts one request per target CPU, sends `CALL_VECTOR`, flushes locally,
//! and waits until every target acknowledged.  A CPU sets its bit in the
//! mask *before* loading the root table (`aspace::activate`), so a CPU the
//! initiator does not see loads the new PTEs anyway.  A target that no
//! longer has the address space loaded has nothing to flush (its CR3 write
//! flushed every non-global entry) and just acknowledges.
//!
//! No deadlock: whoever spins with interrupts off in vm code (waiting for
//! acknowledgements, or for a range lock) serves its own mailbox
//! meanwhile, so two CPUs shooting at each other both progress.
//!
//! Must not: allocate or take a range lock in the IPI handler;
//! free a frame before the shootdown that unmapped it has completed (the
//! callers' job: they free after `flush`).

use core::sync::atomic::{AtomicUsize, Ordering};

use percpu::{PerCpu, PerCpuCounter};

use super::aspace::{self, AddressSpace};
use super::paging::PAGE;
use crate::arch;
use crate::arch::cpu::MAX_CPUS;

/// Above this many pages a flush reloads CR3 instead of `invlpg` per page.
const INVLPG_LIMIT: u64 = 32;
/// Requests a mailbox holds; an initiator finding it full serves its own
/// mailbox and retries.
const SLOTS: usize = 8;

/// One flush request: which address space, which range, whom to tell.
#[derive(Clone, Copy)]
struct Request {
    /// `AddressSpace` identity (pointer value; never dereferenced).
    aspace: usize,
    start: u64,
    end: u64,
    /// Acknowledgement counter on the initiator's stack (it waits for it).
    done: *const AtomicUsize,
}

// SAFETY: `done` points at an `AtomicUsize` that the initiator keeps alive
// (on its stack) until every target has acknowledged; it is only used
// atomically.
unsafe impl Send for Request {}

struct Mailbox {
    slots: spin::Mutex<[Option<Request>; SLOTS]>,
}

static MAILBOXES: PerCpu<Mailbox> = percpu::per_cpu!(Mailbox {
    slots: spin::Mutex::new([None; SLOTS]),
});

/// Shootdown IPIs sent (counted on the sending CPU).
static IPIS_SENT: PerCpuCounter = PerCpuCounter::new();
/// Requests served (counted on the serving CPU).
static REQUESTS_SERVED: PerCpuCounter = PerCpuCounter::new();
/// Local flushes (counted on the flushing CPU).
static LOCAL_FLUSHES: PerCpuCounter = PerCpuCounter::new();
/// Nanoseconds initiators spent waiting for acknowledgements.
static WAIT_NS: PerCpuCounter = PerCpuCounter::new();

/// Shootdown counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlbStats {
    pub ipis_sent: u64,
    pub requests_served: u64,
    pub local_flushes: u64,
    pub wait_ns: u64,
}

/// Totals over all CPUs.
pub fn stats() -> TlbStats {
    TlbStats {
        ipis_sent: IPIS_SENT.sum().max(0) as u64,
        requests_served: REQUESTS_SERVED.sum().max(0) as u64,
        local_flushes: LOCAL_FLUSHES.sum().max(0) as u64,
        wait_ns: WAIT_NS.sum().max(0) as u64,
    }
}

/// Requests served by `cpu` so far (tests check that CPUs which never ran
/// an address space are never asked).
pub fn served_by(cpu: usize) -> u64 {
    REQUESTS_SERVED.local_value(cpu).max(0) as u64
}

/// A range of one address space whose stale translations must go; grows as
/// an operation unmaps or write-protects pages, flushed once at its end.
pub struct TlbBatch {
    start: u64,
    end: u64,
}

impl TlbBatch {
    pub const fn new() -> Self {
        TlbBatch {
            start: u64::MAX,
            end: 0,
        }
    }

    /// Adds the page at `va`.
    pub fn add_page(&mut self, va: u64) {
        self.add_range(va, va + PAGE);
    }

    /// Adds `[start, end)`.
    pub fn add_range(&mut self, start: u64, end: u64) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Drops the collected range's translations on every CPU that may hold
    /// them (`AddressSpace::invalidate`), and returns once all did.
    pub fn flush(self, aspace: &AddressSpace) {
        if !self.is_empty() {
            aspace.invalidate(self.start, self.end);
        }
    }
}

/// Invalidates `[start, start + len)` of `aspace` on every CPU that ran it
/// since it last switched away (and on this one), and returns once they all
/// did.  Under `locks=global` every online CPU is asked (the ablation).
pub fn flush_range(aspace: &AddressSpace, start: u64, len: u64) {
    let all = match crate::cmdline::lock_mode() {
        crate::cmdline::LockMode::PerCpu => u64::MAX,
        crate::cmdline::LockMode::Global => online_mask(),
    };
    flush_on(aspace, start, len, all);
}

/// Invalidates `[start, start + len)` of `aspace` on the CPUs of `cpus`
/// that have it loaded (its mask, read after the caller's PTE stores), on
/// this one if it has it loaded, and returns once they all did.  Per-core
/// mode passes the range's CPU set: a range only this CPU touched costs no
/// IPI.
pub fn flush_on(aspace: &AddressSpace, start: u64, len: u64, cpus: u64) {
    if len == 0 {
        return;
    }
    let end = start.saturating_add(len);
    let id = aspace as *const AddressSpace as usize;
    let interrupts_were_enabled = arch::irq::save_disable();
    let me = arch::cpu::id();
    // After the caller's PTE stores (SeqCst pairs with `activate`).
    core::sync::atomic::fence(Ordering::SeqCst);
    let mask = match crate::cmdline::lock_mode() {
        crate::cmdline::LockMode::PerCpu => aspace.cpu_mask() & cpus,
        crate::cmdline::LockMode::Global => cpus,
    };
    let done = AtomicUsize::new(0);
    let mut targets = 0;
    // The set bits of the mask only (often none but this CPU).
    let mut rest = mask & !(1u64 << me);
    while rest != 0 {
        let cpu = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        if cpu >= MAX_CPUS {
            break;
        }
        post(
            cpu,
            Request {
                aspace: id,
                start,
                end,
                done: &done,
            },
        );
        arch::apic::send_ipi(cpu, arch::CALL_VECTOR);
        IPIS_SENT.add_on(me, 1);
        targets += 1;
    }
    if aspace::active_id(me) == id {
        flush_local(start, end);
    }
    // Waiting: with interrupts on whenever the caller (or the outermost VM
    // lock it holds) had them on, so that while a target vCPU the host
    // descheduled keeps us waiting, this CPU still takes its timer ticks,
    // device interrupts and other CPUs' shootdown IPIs (its thread is not
    // preempted while it holds a VM lock: `lock::holding`).  The frames
    // stay allocated until the wait is over (the callers free after us).
    if targets > 0 {
        let may_enable = super::lock::may_enable_interrupts(interrupts_were_enabled);
        let start = arch::time::now_ns();
        while done.load(Ordering::Acquire) < targets {
            // Our own mailbox with interrupts off (the IPI handler takes
            // the same lock).
            service_pending();
            if may_enable {
                arch::irq::enable();
                for _ in 0..64 {
                    if done.load(Ordering::Acquire) >= targets {
                        break;
                    }
                    core::hint::spin_loop();
                }
                arch::irq::disable();
            } else {
                core::hint::spin_loop();
            }
        }
        WAIT_NS.add(arch::time::now_ns().saturating_sub(start) as i64);
    }
    arch::irq::restore(interrupts_were_enabled);
}

/// Every online CPU, as a mask.
fn online_mask() -> u64 {
    (0..arch::cpu::count().min(MAX_CPUS))
        .filter(|&c| arch::cpu::get(c).is_online())
        .fold(0, |m, c| m | 1u64 << c)
}

/// Puts `req` in `cpu`'s mailbox, serving our own while it is full.
fn post(cpu: usize, req: Request) {
    loop {
        {
            let mut slots = MAILBOXES.remote(cpu).slots.lock();
            if let Some(free) = slots.iter_mut().find(|s| s.is_none()) {
                *free = Some(req);
                return;
            }
        }
        service_pending();
        core::hint::spin_loop();
    }
}

/// Serves this CPU's mailbox.  Call with interrupts disabled.
pub fn service_pending() {
    let me = arch::cpu::id();
    let active = aspace::active_id(me);
    loop {
        let req = {
            let mut slots = MAILBOXES.remote(me).slots.lock();
            slots.iter_mut().find_map(|s| s.take())
        };
        let Some(req) = req else { return };
        if req.aspace == active {
            flush_local(req.start, req.end);
        }
        REQUESTS_SERVED.add_on(me, 1);
        // SAFETY: the initiator keeps `done` alive until it counted every
        // acknowledgement, which includes this one (see `Request`).
        unsafe { (*req.done).fetch_add(1, Ordering::Release) };
    }
}

/// The `CALL_VECTOR` hook (interrupts disabled, after EOI).  Also makes
/// sure this CPU's protections (SMEP/SMAP/WP/NXE) are on: the boot's
/// `smp::ping_all` sends this IPI to every CPU, so each gets them at boot
/// even if it never loads a user address space (`init_cpu` is idempotent).
pub fn on_call_ipi() {
    super::init_cpu();
    service_pending();
}

/// Flushes `[start, end)` from this CPU's TLB.
/// Call with interrupts off (its counter is updated without a pin).
fn flush_local(start: u64, end: u64) {
    LOCAL_FLUSHES.add_on(arch::cpu::id(), 1);
    if (end - start) / PAGE > INVLPG_LIMIT {
        flush_all_local();
        return;
    }
    let mut va = start;
    while va < end {
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(va));
        va += PAGE;
    }
}

/// Drops every non-global translation of this CPU (CR3 reload).
fn flush_all_local() {
    x86_64::instructions::tlb::flush_all();
}
