//! Microkernel IPC inside this kernel: the objects that user-mode OS
//! servers (`structure=servers`) and the kernel's system-call delegation
//! talk through.  docs/IPC.md is the user's guide.
//!
//! Owns: endpoints with synchronous call/reply and a direct-switch
//! fastpath (`endpoint.rs`), notifications (`notify.rs`), per-process
//! handle tables (`handle.rs`), each thread's IPC record, the kernel-side
//! client (`kernel_call`) and the registry of named kernel services
//! (`register_service` / `service`).  The system calls are in
//! `syscall/ipc.rs`; their numbers and registers in `abi::ipc`.
//!
//! Invariants: a process reaches an object only through a handle of its
//! own table; nothing a user passes (handle numbers, lengths, replies)
//! can panic the kernel: it gets an errno, and a kernel caller gets `EIO`
//! for a reply it cannot use.  The kernel never waits for a server with a
//! lock held.
//!
//! Per-core: the call path takes the calling process's handle-table lock
//! (per process), the endpoint's lock (per endpoint) and the two threads'
//! records; nothing global.  The service registry is global but written
//! only when a server registers; delegation reads it (see `service`).
//!
//! Must not: use `unsafe` (except `shared_mem.rs`: a server's pinned
//! request slots through the direct map), copy user memory (the
//! system-call layer does, before and after), or trust a server.

#![deny(unsafe_code)]

pub mod endpoint;
pub mod handle;
pub mod migrate;
pub mod migrate_policy;
pub mod notify;
pub mod ring;
pub mod shared_mem;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

pub use endpoint::{Endpoint, Message, ReplyCap, Waiter};
pub use handle::{EndpointRef, HandleTable, Object};
pub use notify::Notification;

use crate::sched::Thread;
use abi::ipc::{IPC_MAX_BYTES, SERVICES_ALL, SERVICE_FS, SERVICE_NET};
use abi::Errno;

/// The badge of calls the kernel makes for a user thread: this bit, plus
/// the pid of the process on whose behalf it calls.  User handles cannot
/// carry it (`mint` refuses badges with it set).
pub const KERNEL_BADGE: u64 = 1 << 63;

/// The calling thread's IPC record (made on first use; a kernel thread
/// without a task gets a fresh one per call).
pub fn current_waiter() -> Result<Arc<Waiter>, Errno> {
    match crate::proc::current_task() {
        Some(task) => task.ipc_waiter().cloned().ok_or(Errno::ESRCH),
        None => {
            let thread = crate::sched::current().ok_or(Errno::ESRCH)?;
            Ok(Waiter::new(&thread))
        }
    }
}

/// The calling user thread's IPC record, borrowed from its task (which
/// outlives the system call): `ENOSYS` in a kernel thread, as the IPC
/// system calls answer there.
pub fn task_waiter() -> Result<&'static Arc<Waiter>, Errno> {
    crate::proc::current_task()
        .ok_or(Errno::ENOSYS)?
        .ipc_waiter()
        .ok_or(Errno::ESRCH)
}

/// Whether the calling thread must stop waiting (a signal, or its process
/// is exiting).
pub fn interrupted() -> bool {
    crate::proc::signal_pending()
}

/// Answers a call with `reply`.  A reply longer than the caller accepts
/// gives the caller `EIO` and the replier `EMSGSIZE`.  Returns the
/// caller's thread when it was waiting for this reply (to hand off to).
pub fn reply(cap: ReplyCap, reply: Message) -> Result<Option<Arc<Thread>>, Errno> {
    if reply.bytes.len() > cap.reply_capacity() {
        if let Some(t) = cap.complete(Err(Errno::EIO)) {
            crate::sched::wake_thread(&t);
        }
        return Err(Errno::EMSGSIZE);
    }
    Ok(cap.complete(Ok(reply)))
}

/// What `kernel_call` returns: the reply's label and words, and how many
/// bytes it wrote into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelReply {
    pub label: u64,
    pub words: [u64; 4],
    pub len: usize,
}

/// The kernel calls a server on behalf of the current user thread (the
/// system-call delegation of `structure=servers`): sends `label`, `words`
/// and `send` on `endpoint` and waits for the reply, whose bytes land in
/// `recv`.  The server sees the badge `KERNEL_BADGE | pid`.
///
/// Errors: `EINVAL` when `send` or `recv` exceed `IPC_MAX_BYTES`; `EPIPE`
/// when no server receives there (or it died before answering); `EINTR`
/// when a signal came first; `EIO` when the server's reply is malformed
/// (too long for `recv`).  Whether the reply's label and words make sense is the caller's to
/// check (and `EIO` too).
pub fn kernel_call(
    endpoint: &Endpoint,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
) -> Result<KernelReply, Errno> {
    kernel_call_in(endpoint, label, words, send, recv, false)
}

/// `kernel_call` on the endpoint itself, never through its request
/// slots: the control requests of a replacement (they are for a serving
/// thread of the endpoint, and the slots change hands meanwhile).
pub fn kernel_call_endpoint(
    endpoint: &Endpoint,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
) -> Result<KernelReply, Errno> {
    if send.len() > IPC_MAX_BYTES || recv.len() > IPC_MAX_BYTES {
        return Err(Errno::EINVAL);
    }
    endpoint_call(endpoint, label, words, send, recv, false)
}

/// `kernel_call`; with `killable_once_sent`, a signal ends the wait only
/// while the request is still queued (the server has not seen it); once a
/// server thread took it, only a fatal signal (the process is being
/// killed) does.  So a call that returns `EINTR` was not done, as Linux's
/// regular-file I/O is never interrupted half done: an `Open` does not
/// leak a handle, an `O_APPEND` write does not append twice when retried.
fn kernel_call_in(
    endpoint: &Endpoint,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
    killable_once_sent: bool,
) -> Result<KernelReply, Errno> {
    if send.len() > IPC_MAX_BYTES || recv.len() > IPC_MAX_BYTES {
        return Err(Errno::EINVAL);
    }
    if let Some(ring) = endpoint.ring() {
        if let Some(result) = ring.call(label, words, send, recv) {
            return result;
        }
    }
    endpoint_call(endpoint, label, words, send, recv, killable_once_sent)
}

/// The synchronous part of `kernel_call_in` (lengths checked).
fn endpoint_call(
    endpoint: &Endpoint,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
    killable_once_sent: bool,
) -> Result<KernelReply, Errno> {
    let msg = Message {
        label,
        words,
        bytes: send.to_vec(),
    };
    let reply = synchronous_call(endpoint, msg, recv.len(), killable_once_sent)?;
    let Some(dst) = recv.get_mut(..reply.bytes.len()) else {
        return Err(Errno::EIO);
    };
    dst.copy_from_slice(&reply.bytes);
    Ok(KernelReply {
        label: reply.label,
        words: reply.words,
        len: reply.bytes.len(),
    })
}

/// `kernel_call_in` with the request and the reply moved, not copied:
/// `msg`'s payload travels to the server as it is, and the reply (at
/// most `reply_cap` bytes) comes back as the message the server's reply
/// made, so a call needs no receive buffer of the largest reply size
/// (the delegation's hot path: no zeroed 8 KiB and no copy per call).
fn kernel_call_msg(
    endpoint: &Endpoint,
    msg: Message,
    reply_cap: usize,
    killable_once_sent: bool,
) -> Result<Message, Errno> {
    if msg.bytes.len() > IPC_MAX_BYTES || reply_cap > IPC_MAX_BYTES {
        return Err(Errno::EINVAL);
    }
    if let Some(ring) = endpoint.ring() {
        let mut recv = alloc::vec![0u8; reply_cap];
        if let Some(result) = ring.call(msg.label, msg.words, &msg.bytes, &mut recv) {
            let r = result?;
            recv.truncate(r.len);
            return Ok(Message {
                label: r.label,
                words: r.words,
                bytes: recv,
            });
        }
    }
    synchronous_call(endpoint, msg, reply_cap, killable_once_sent)
}

/// The synchronous call of `kernel_call_in` and `kernel_call_msg` (no
/// request slots): the reply as the server made it, at most `reply_cap`
/// bytes (checked by `reply`).
fn synchronous_call(
    endpoint: &Endpoint,
    msg: Message,
    reply_cap: usize,
    killable_once_sent: bool,
) -> Result<Message, Errno> {
    let me = current_waiter()?;
    let pid = crate::proc::current_task().map_or(0, |t| t.process.pid as u32 as u64);
    let killable = || {
        if me.awaits_reply() {
            crate::proc::current_task().is_some_and(|t| t.must_exit.load(Ordering::Acquire))
        } else {
            interrupted()
        }
    };
    let stop: &dyn Fn() -> bool = if killable_once_sent {
        &killable
    } else {
        &interrupted
    };
    let reply = endpoint.call(&me, msg, KERNEL_BADGE | pid, reply_cap, stop)?;
    if reply.bytes.len() > reply_cap {
        return Err(Errno::EIO);
    }
    Ok(reply)
}

/// Registered kernel services, by bit of `SERVICES_ALL`.
///
/// Global, not per-CPU: it is written when a server registers (rare) and
/// read by delegation on every delegated call; the read takes the lock in
/// shared mode.  A per-CPU cache validated by a generation number is the
/// next step once delegation measures it (docs/IPC.md).
static SERVICES: spin::RwLock<[Option<Arc<Endpoint>>; 2]> = spin::RwLock::new([None, None]);

fn service_slot(service: u32) -> Option<usize> {
    match service {
        SERVICE_FS => Some(0),
        SERVICE_NET => Some(1),
        _ => None,
    }
}

/// Makes `endpoint` the server of every service in `services` (bits of
/// `SERVICES_ALL`), replacing an earlier one.  `EINVAL` for no or unknown
/// bits.
pub fn register_service(endpoint: &Arc<Endpoint>, services: u32) -> Result<(), Errno> {
    if services == 0 || services & !SERVICES_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let mut table = SERVICES.write();
    for bit in [SERVICE_FS, SERVICE_NET] {
        if services & bit != 0 {
            if let Some(slot) = service_slot(bit) {
                table[slot] = Some(endpoint.clone());
            }
        }
    }
    Ok(())
}

/// One delegated call to the server registered as `service` (the file
/// and network clients, `files::remote` and `sockets::remote`, both go
/// through here): the reply's label, words and bytes (in `recv`).  A
/// signal is `EINTR` for the caller while the server has not taken the
/// call (then it was not made); any other failure of the call (no
/// server, a dead one, a reply too long) is `EIO`, logged at debug with
/// `what` (the operation).
pub fn delegate_call<'a>(
    service_bit: u32,
    what: &dyn core::fmt::Debug,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &'a mut [u8],
) -> Result<(u64, [u64; 4], &'a [u8]), Errno> {
    let endpoint = service(service_bit).ok_or(Errno::EIO)?;
    // A call the server took is waited for (only a fatal signal ends the
    // wait): its result stands, as on Linux, where a send that completed
    // is not reported as `EINTR`.  Both servers answer every request at
    // once (a blocking socket call waits in the kernel's socket layer
    // between non-blocking calls, `sockets::socket::retry_blocking`, where
    // a signal gives `EINTR`), so this wait is short.
    match kernel_call_in(&endpoint, label, words, send, recv, true) {
        Ok(r) => Ok((r.label, r.words, recv.get(..r.len).ok_or(Errno::EIO)?)),
        Err(e) if e == Errno::EINTR => Err(e),
        Err(e) => {
            log::debug!("servers: call {what:?} failed: errno {}", e.0);
            Err(Errno::EIO)
        }
    }
}

/// `delegate_call` with the request's payload moved to the server and
/// the reply returned as the server's message (at most `reply_cap`
/// bytes): no receive buffer and no copy of the reply (`files::remote`).
pub fn delegate_call_msg(
    service_bit: u32,
    what: &dyn core::fmt::Debug,
    msg: Message,
    reply_cap: usize,
) -> Result<Message, Errno> {
    // No `alive` check (`service`): a call to an endpoint nobody receives
    // on fails with `EPIPE` by itself, which is `EIO` here as well.
    let endpoint = service_slot(service_bit)
        .and_then(|slot| SERVICES.read()[slot].clone())
        .ok_or(Errno::EIO)?;
    // As `delegate_call`: a call the server took is waited for.
    match kernel_call_msg(&endpoint, msg, reply_cap, true) {
        Ok(m) => Ok(m),
        Err(e) if e == Errno::EINTR => Err(e),
        Err(e) => {
            log::debug!("servers: call {what:?} failed: errno {}", e.0);
            Err(Errno::EIO)
        }
    }
}

/// The endpoint registered for `service` (one bit), alive or not (the
/// crash watchers fail its request slots' callers).
pub fn registered(service: u32) -> Option<Arc<Endpoint>> {
    let slot = service_slot(service)?;
    SERVICES.read()[slot].clone()
}

/// The server registered for `service` died: callers waiting in its
/// request slots get `EPIPE` (`ring::KernelRing::server_gone`; the last
/// receive right going away does it too).
pub fn server_gone(service: u32) {
    if let Some(ring) = registered(service).and_then(|e| e.ring().cloned()) {
        ring.server_gone();
    }
}

/// The endpoint registered for `service` (one bit), if any and if some
/// server still receives on it.
pub fn service(service: u32) -> Option<Arc<Endpoint>> {
    let slot = service_slot(service)?;
    let endpoint = SERVICES.read()[slot].clone()?;
    endpoint.alive().then_some(endpoint)
}
