//! The IPC system calls (numbers and registers in `abi::ipc`, objects in
//! `crate::ipc`, user's guide in docs/IPC.md).
//!
//! Owns: reading a call's registers from the trap frame and writing the
//! answer's back (label and words travel in registers both ways), and the
//! copies of payload bytes between user memory and the message (before a
//! call is sent, after it is received, before a reply, after it arrives).
//!
//! Invariants: every handle goes through the calling process's table
//! (`EBADF` for anything it does not hold, `EPERM` for a missing right);
//! every user pointer through `memory::uaccess` (`EFAULT`); a length above
//! `IPC_MAX_BYTES` is `EMSGSIZE`.  A receiver that cannot take a request
//! (buffer too small, bad buffer, no room for the token) answers that
//! caller with an error instead of losing it.
//!
//! Must not: use `unsafe`, or hold a lock across a copy or a wait.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::arch::idt::InterruptFrame;
use crate::ipc::{self, Endpoint, EndpointRef, HandleTable, Message, Notification, Object};
use crate::memory::uaccess::UserAddr;
use crate::sched::{self, Thread};
use abi::ipc::{IPC_MAX_BYTES, IPC_NONBLOCK, RIGHTS_ALL, RIGHT_RECV, RIGHT_SEND};
use abi::{Errno, SysResult};

/// The calling process's handle table.
fn table() -> Result<&'static HandleTable, Errno> {
    Ok(&crate::proc::current_task()
        .ok_or(Errno::ENOSYS)?
        .process
        .ipc)
}

/// Reads `len` bytes of user memory at `addr` (none: no allocation).
fn read_payload(addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > IPC_MAX_BYTES as u64 {
        return Err(Errno::EMSGSIZE);
    }
    let slice = UserAddr(addr).slice(len as usize)?;
    let mut bytes = vec![0u8; len as usize];
    slice.read_into(&mut bytes)?;
    Ok(bytes)
}

/// The words of a message in `rdx r10 r8 r9`.
fn words_in(frame: &InterruptFrame) -> [u64; 4] {
    [frame.rdx, frame.r10, frame.r8, frame.r9]
}

/// Puts a message's label and words in the registers the caller reads.
fn message_out(frame: &mut InterruptFrame, label: u64, words: [u64; 4]) {
    frame.rsi = label;
    frame.rdx = words[0];
    frame.r10 = words[1];
    frame.r8 = words[2];
    frame.r9 = words[3];
}

/// A receive buffer (`r14`, `r15`): the capacity is clamped to the most a
/// message carries; the range must lie in user memory.
fn receive_buffer(frame: &InterruptFrame) -> Result<(u64, usize), Errno> {
    let cap = frame.r15.min(IPC_MAX_BYTES as u64) as usize;
    UserAddr(frame.r14).slice(cap)?;
    Ok((frame.r14, cap))
}

/// `ipc_call`.
pub fn sys_ipc_call(frame: &mut InterruptFrame) -> SysResult {
    let (endpoint, badge) = table()?.endpoint(frame.rdi, RIGHT_SEND)?;
    let (buf, cap) = receive_buffer(frame)?;
    let msg = Message {
        label: frame.rsi,
        words: words_in(frame),
        bytes: read_payload(frame.r12, frame.r13)?,
    };
    let me = ipc::task_waiter()?;
    let reply = endpoint.call(me, msg, badge, cap, &ipc::interrupted)?;
    deliver_reply(frame, buf, &reply)
}

/// Writes a reply's bytes to the caller's buffer and its label and words
/// to its registers; returns the byte count.
fn deliver_reply(frame: &mut InterruptFrame, buf: u64, reply: &Message) -> SysResult {
    if !reply.bytes.is_empty() {
        UserAddr(buf)
            .slice(reply.bytes.len())?
            .write_from(&reply.bytes)?;
    }
    message_out(frame, reply.label, reply.words);
    Ok(reply.bytes.len())
}

/// Receives on `endpoint` into the buffer of `frame` (`r14`/`r15`),
/// waking (or switching to) `hand_off` first.  Out: `rdi` token, `rsi`
/// label, words, `r12` badge; the byte count.
fn receive_into(
    frame: &mut InterruptFrame,
    table: &HandleTable,
    endpoint: &Endpoint,
    hand_off: Option<Arc<Thread>>,
) -> SysResult {
    let mut hand_off = hand_off;
    let ready = receive_buffer(frame).and_then(|b| Ok((b, ipc::task_waiter()?)));
    let ((buf, cap), me) = match ready {
        Ok(ready) => ready,
        Err(e) => {
            // The caller just answered must not wait for nothing.
            if let Some(t) = hand_off.take() {
                sched::wake_thread(&t);
            }
            return Err(e);
        }
    };
    loop {
        let (request, reply) = endpoint.receive(me, hand_off.take(), &ipc::interrupted)?;
        let len = request.msg.bytes.len();
        if len > cap {
            // The caller sent more than this receiver takes: it hears so,
            // and the receiver waits for the next call.
            if let Some(t) = reply.complete(Err(Errno::EMSGSIZE)) {
                sched::wake_thread(&t);
            }
            continue;
        }
        if len != 0 {
            let copied = UserAddr(buf)
                .slice(len)
                .and_then(|s| s.write_from(&request.msg.bytes));
            if let Err(e) = copied {
                if let Some(t) = reply.complete(Err(Errno::EIO)) {
                    sched::wake_thread(&t);
                }
                return Err(e);
            }
        }
        let token = match table.insert(Object::Reply(reply), 0, 0) {
            Ok(token) => token,
            Err((e, Object::Reply(reply))) => {
                if let Some(t) = reply.complete(Err(Errno::EIO)) {
                    sched::wake_thread(&t);
                }
                return Err(e);
            }
            Err((e, _)) => return Err(e),
        };
        frame.rdi = token;
        frame.r12 = request.badge;
        message_out(frame, request.msg.label, request.msg.words);
        return Ok(len);
    }
}

/// `ipc_recv`.
pub fn sys_ipc_recv(frame: &mut InterruptFrame) -> SysResult {
    let table = table()?;
    let (endpoint, _) = table.endpoint(frame.rdi, RIGHT_RECV)?;
    receive_into(frame, table, &endpoint, None)
}

/// Takes the reply token `token` and answers with the message in `frame`
/// (`rsi`, words, `r12`/`r13`).  The caller's thread when it waited.
fn answer(
    frame: &InterruptFrame,
    table: &HandleTable,
    token: u64,
) -> Result<Option<Arc<Thread>>, Errno> {
    // Bytes first: a bad buffer leaves the token for another try.
    let bytes = read_payload(frame.r12, frame.r13)?;
    let cap = table.take_reply(token)?;
    ipc::reply(
        cap,
        Message {
            label: frame.rsi,
            words: words_in(frame),
            bytes,
        },
    )
}

/// `ipc_reply_recv`: `rdi` = token << 32 | handle (token 0: nothing to
/// answer).  The server's half of the fastpath: the endpoint and the
/// token come out of the table under one lock, after the buffers are
/// checked (a bad receive buffer or reply payload is refused before the
/// reply is spent, and the token stays for another try).
pub fn sys_ipc_reply_recv(frame: &mut InterruptFrame) -> SysResult {
    let table = table()?;
    let handle = frame.rdi & 0xffff_ffff;
    let token = frame.rdi >> 32;
    receive_buffer(frame)?;
    let bytes = if token == 0 {
        Vec::new()
    } else {
        read_payload(frame.r12, frame.r13)?
    };
    let (endpoint, _, cap) = table.endpoint_and_reply(handle, RIGHT_RECV, token)?;
    let hand_off = match cap {
        None => None,
        Some(cap) => ipc::reply(
            cap,
            Message {
                label: frame.rsi,
                words: words_in(frame),
                bytes,
            },
        )?,
    };
    receive_into(frame, table, &endpoint, hand_off)
}

/// `ipc_reply`.
pub fn sys_ipc_reply(frame: &mut InterruptFrame) -> SysResult {
    let table = table()?;
    if let Some(t) = answer(frame, table, frame.rdi)? {
        sched::wake_thread(&t);
    }
    Ok(0)
}

/// `ipc_endpoint_create`.
pub fn sys_ipc_endpoint_create() -> SysResult {
    let endpoint = EndpointRef::new(Endpoint::new(), true);
    Ok(table()?.insert_or_drop(Object::Endpoint(endpoint), RIGHTS_ALL, 0)? as usize)
}

/// `ipc_notification_create`.
pub fn sys_ipc_notification_create() -> SysResult {
    let n = Arc::new(Notification::new());
    Ok(table()?.insert_or_drop(Object::Notification(n), RIGHTS_ALL, 0)? as usize)
}

/// `ipc_close`.
pub fn sys_ipc_close(handle: u64) -> SysResult {
    table()?.close(handle).map(|()| 0)
}

/// `ipc_mint`: badges with `ipc::KERNEL_BADGE` are the kernel's.
pub fn sys_ipc_mint(handle: u64, rights: u64, badge: u64) -> SysResult {
    if rights & !u64::from(RIGHTS_ALL) != 0 || badge & ipc::KERNEL_BADGE != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(table()?.mint(handle, rights as u32, badge)? as usize)
}

/// `ipc_notify`: bit 63 is refused (the word comes back in `rax`, where it
/// must not look like an error).
pub fn sys_ipc_notify(handle: u64, bits: u64) -> SysResult {
    if bits >> 63 != 0 {
        return Err(Errno::EINVAL);
    }
    table()?.notification(handle, RIGHT_SEND)?.notify(bits);
    Ok(0)
}

/// `ipc_wait`.
pub fn sys_ipc_wait(handle: u64, flags: u64) -> SysResult {
    if flags & !IPC_NONBLOCK != 0 {
        return Err(Errno::EINVAL);
    }
    let n = table()?.notification(handle, RIGHT_RECV)?;
    let bits = if flags & IPC_NONBLOCK != 0 {
        match n.poll() {
            0 => return Err(Errno::EAGAIN),
            bits => bits,
        }
    } else {
        n.wait(&ipc::interrupted)?
    };
    Ok(bits as usize)
}

/// `ipc_register_service`: root only; the handle must be able to receive.
pub fn sys_ipc_register_service(handle: u64, services: u64) -> SysResult {
    let task = crate::proc::current_task().ok_or(Errno::ENOSYS)?;
    if task
        .process
        .creds
        .euid
        .load(core::sync::atomic::Ordering::Relaxed)
        != 0
    {
        return Err(Errno::EPERM);
    }
    let services = u32::try_from(services).map_err(|_| Errno::EINVAL)?;
    let (endpoint, _) = task.process.ipc.endpoint(handle, RIGHT_RECV)?;
    ipc::register_service(&endpoint, services)?;
    Ok(0)
}

/// `ipc_service_call`: the kernel-side client (`ipc::kernel_call`) run for
/// the calling thread, as system-call delegation runs it: `rdi` service,
/// then registers as `ipc_call`.  `EPIPE` when no server is registered.
pub fn sys_ipc_service_call(frame: &mut InterruptFrame) -> SysResult {
    let service = u32::try_from(frame.rdi).map_err(|_| Errno::EINVAL)?;
    if service.count_ones() != 1 {
        return Err(Errno::EINVAL);
    }
    let endpoint = ipc::service(service).ok_or(Errno::EPIPE)?;
    let (buf, cap) = receive_buffer(frame)?;
    let send = read_payload(frame.r12, frame.r13)?;
    let mut recv = vec![0u8; cap];
    let reply = ipc::kernel_call(&endpoint, frame.rsi, words_in(frame), &send, &mut recv)?;
    let bytes = recv.get(..reply.len).ok_or(Errno::EIO)?;
    if !bytes.is_empty() {
        UserAddr(buf).slice(bytes.len())?.write_from(bytes)?;
    }
    message_out(frame, reply.label, reply.words);
    Ok(reply.len)
}

/// `ipc_service_replace(service, path, path_len, stats)`: replaces the
/// file server (`proc::server_replace`) or the network server
/// (`proc::net_server`); root only (`EPERM`), `SERVICE_FS` or
/// `SERVICE_NET` (`EINVAL` for others).  The stats are written after the switch (`EFAULT`
/// then means only that they could not be).
pub fn sys_ipc_service_replace(service: u64, path: u64, len: u64, stats: u64) -> SysResult {
    let task = crate::proc::current_task().ok_or(Errno::ENOSYS)?;
    if task
        .process
        .creds
        .euid
        .load(core::sync::atomic::Ordering::Relaxed)
        != 0
    {
        return Err(Errno::EPERM);
    }
    let net = service == u64::from(abi::ipc::SERVICE_NET);
    if service != u64::from(abi::ipc::SERVICE_FS) && !net {
        return Err(Errno::EINVAL);
    }
    if len > 4096 {
        return Err(Errno::ENAMETOOLONG);
    }
    if stats != 0 {
        UserAddr(stats).slice(core::mem::size_of::<abi::ipc::ReplaceStats>())?;
    }
    let program = if len == 0 {
        None
    } else {
        let bytes = read_payload(path, len)?;
        let p = core::str::from_utf8(&bytes).map_err(|_| Errno::EINVAL)?;
        Some(crate::proc::server_replace::program_at(p)?)
    };
    let r = if net {
        crate::proc::net_server::replace_net_server(program)?
    } else {
        crate::proc::server_replace::replace_file_server(program)?
    };
    if stats != 0 {
        let out = abi::ipc::ReplaceStats {
            switch_ns: r.switch_ns,
            image_bytes: r.image_bytes,
            export_ns: r.export_ns,
            start_ns: r.start_ns,
            old_pid: r.old_pid as u64,
            new_pid: r.new_pid as u64,
            precopy_ns: r.precopy_ns,
            precopy_bytes: r.precopy_bytes,
            switch_begin_ns: r.switch_begin_ns,
            import_ns: r.import_ns,
        };
        let words = [
            out.switch_ns,
            out.image_bytes,
            out.export_ns,
            out.start_ns,
            out.old_pid,
            out.new_pid,
            out.precopy_ns,
            out.precopy_bytes,
            out.switch_begin_ns,
            out.import_ns,
        ];
        let mut b = Vec::with_capacity(80);
        for w in words {
            b.extend_from_slice(&w.to_le_bytes());
        }
        UserAddr(stats).slice(b.len())?.write_from(&b)?;
    }
    Ok(0)
}
