//! Thin wrappers over this kernel's IPC system calls (`abi::ipc`,
//! docs/IPC.md) for user programs: servers, clients and tests.
//!
//! Owns: the register convention on the user side (one `syscall`
//! instruction per call; label and words in registers both ways).  Every
//! wrapper returns `Err(errno)` (a positive Linux errno value) instead of
//! panicking; on Linux every call is `Err(ENOSYS)`.
//!
//! Must not: keep state (handles are plain numbers the caller owns).

use abi::ipc::*;
use std::arch::asm;

/// An answer to `call`: the reply's label and words and how many bytes
/// landed in the reply buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
    pub label: u64,
    pub words: [u64; 4],
}

/// A request as `recv` gives it: bytes in the buffer, the reply token,
/// label, words and the badge of the caller's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub token: u64,
    pub label: u64,
    pub words: [u64; 4],
    pub badge: u64,
}

fn result(rax: i64) -> Result<u64, i32> {
    if (-4095..0).contains(&rax) {
        Err(-rax as i32)
    } else {
        Ok(rax as u64)
    }
}

/// The full-register system call of the message-passing calls: in and out
/// `rdi rsi rdx r10 r8 r9 r12`, in `r13 r14 r15`.
#[inline(always)]
fn raw(nr: u64, regs: &mut [u64; 7], r13: u64, r14: u64, r15: u64) -> i64 {
    let rax: i64;
    // SAFETY: the IPC calls read the buffers named by r12/r13 and r14/r15
    // (checked by the kernel, EFAULT on a bad one), write only into the
    // r14/r15 buffer, and change only the registers listed here (rcx and
    // r11 by the `syscall` instruction itself).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as i64 => rax,
            inlateout("rdi") regs[0] => regs[0],
            inlateout("rsi") regs[1] => regs[1],
            inlateout("rdx") regs[2] => regs[2],
            inlateout("r10") regs[3] => regs[3],
            inlateout("r8") regs[4] => regs[4],
            inlateout("r9") regs[5] => regs[5],
            inlateout("r12") regs[6] => regs[6],
            inlateout("r13") r13 => _,
            inlateout("r14") r14 => _,
            inlateout("r15") r15 => _,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rax
}

/// A plain system call with up to three arguments.
fn raw3(nr: u64, a: u64, b: u64, c: u64) -> Result<u64, i32> {
    // SAFETY: `libc::syscall` with integer arguments; the IPC calls taking
    // them touch no user memory.
    let r = unsafe { libc::syscall(nr as libc::c_long, a, b, c) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as u64)
    }
}

/// `ipc_call` with raw buffer addresses (for tests of bad pointers).
pub fn call_raw(
    handle: u64,
    label: u64,
    words: [u64; 4],
    send: (u64, u64),
    recv: (u64, u64),
) -> Result<Reply, i32> {
    let mut regs = [
        handle, label, words[0], words[1], words[2], words[3], send.0,
    ];
    let len = result(raw(SYS_IPC_CALL, &mut regs, send.1, recv.0, recv.1))?;
    Ok(Reply {
        len: len as usize,
        label: regs[1],
        words: [regs[2], regs[3], regs[4], regs[5]],
    })
}

/// `ipc_call`: sends `label`, `words` and `send` on `handle`; the reply's
/// bytes land in `recv`.
pub fn call(
    handle: u64,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
) -> Result<Reply, i32> {
    call_raw(
        handle,
        label,
        words,
        (send.as_ptr() as u64, send.len() as u64),
        (recv.as_mut_ptr() as u64, recv.len() as u64),
    )
}

/// `ipc_service_call`: the kernel's own client calls the server registered
/// for `service` for us.
pub fn service_call(
    service: u32,
    label: u64,
    words: [u64; 4],
    send: &[u8],
    recv: &mut [u8],
) -> Result<Reply, i32> {
    let mut regs = [
        u64::from(service),
        label,
        words[0],
        words[1],
        words[2],
        words[3],
        send.as_ptr() as u64,
    ];
    let len = result(raw(
        SYS_IPC_SERVICE_CALL,
        &mut regs,
        send.len() as u64,
        recv.as_mut_ptr() as u64,
        recv.len() as u64,
    ))?;
    Ok(Reply {
        len: len as usize,
        label: regs[1],
        words: [regs[2], regs[3], regs[4], regs[5]],
    })
}

fn received(len: u64, regs: &[u64; 7]) -> Received {
    Received {
        len: len as usize,
        token: regs[0],
        label: regs[1],
        words: [regs[2], regs[3], regs[4], regs[5]],
        badge: regs[6],
    }
}

/// `ipc_recv` into a raw buffer address.
pub fn recv_raw(handle: u64, buf: (u64, u64)) -> Result<Received, i32> {
    let mut regs = [handle, 0, 0, 0, 0, 0, 0];
    let len = result(raw(SYS_IPC_RECV, &mut regs, 0, buf.0, buf.1))?;
    Ok(received(len, &regs))
}

/// `ipc_recv`: waits for a call on `handle`; its bytes land in `buf`.
pub fn recv(handle: u64, buf: &mut [u8]) -> Result<Received, i32> {
    recv_raw(handle, (buf.as_mut_ptr() as u64, buf.len() as u64))
}

/// `ipc_reply_recv`: answers `token` (0: nothing to answer) with `label`,
/// `words` and `reply`, then waits for the next call on `handle`.
pub fn reply_recv(
    handle: u64,
    token: u64,
    label: u64,
    words: [u64; 4],
    reply: &[u8],
    buf: &mut [u8],
) -> Result<Received, i32> {
    let mut regs = [
        (token << 32) | (handle & 0xffff_ffff),
        label,
        words[0],
        words[1],
        words[2],
        words[3],
        reply.as_ptr() as u64,
    ];
    let len = result(raw(
        SYS_IPC_REPLY_RECV,
        &mut regs,
        reply.len() as u64,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
    ))?;
    Ok(received(len, &regs))
}

/// `ipc_reply`: answers `token` and returns at once.
pub fn reply(token: u64, label: u64, words: [u64; 4], reply: &[u8]) -> Result<(), i32> {
    let mut regs = [
        token,
        label,
        words[0],
        words[1],
        words[2],
        words[3],
        reply.as_ptr() as u64,
    ];
    result(raw(SYS_IPC_REPLY, &mut regs, reply.len() as u64, 0, 0)).map(|_| ())
}

/// `ipc_endpoint_create`: a new endpoint, all rights.
pub fn endpoint_create() -> Result<u64, i32> {
    raw3(SYS_IPC_ENDPOINT_CREATE, 0, 0, 0)
}

/// `ipc_notification_create`.
pub fn notification_create() -> Result<u64, i32> {
    raw3(SYS_IPC_NOTIFICATION_CREATE, 0, 0, 0)
}

/// `ipc_close`.
pub fn close(handle: u64) -> Result<(), i32> {
    raw3(SYS_IPC_CLOSE, handle, 0, 0).map(|_| ())
}

/// `ipc_mint`: a new handle on the same object with fewer rights and a
/// badge.
pub fn mint(handle: u64, rights: u32, badge: u64) -> Result<u64, i32> {
    raw3(SYS_IPC_MINT, handle, u64::from(rights), badge)
}

/// `ipc_notify`.
pub fn notify(handle: u64, bits: u64) -> Result<(), i32> {
    raw3(SYS_IPC_NOTIFY, handle, bits, 0).map(|_| ())
}

/// `ipc_wait`: the bits, cleared (`IPC_NONBLOCK`: `EAGAIN` when none).
pub fn wait(handle: u64, flags: u64) -> Result<u64, i32> {
    raw3(SYS_IPC_WAIT, handle, flags, 0)
}

/// `ipc_register_service`.
pub fn register_service(handle: u64, services: u32) -> Result<(), i32> {
    raw3(SYS_IPC_REGISTER_SERVICE, handle, u64::from(services), 0).map(|_| ())
}

/// `ipc_service_replace`: replaces the server of `service` by a new
/// instance of `program` (empty: the program it was started from) and
/// returns what the kernel measured.
pub fn service_replace(service: u32, program: &str) -> Result<ReplaceStats, i32> {
    let mut stats = ReplaceStats::default();
    // SAFETY: the kernel reads `program.len()` bytes at its pointer and
    // writes one `ReplaceStats` into `stats`, which outlives the call.
    let r = unsafe {
        libc::syscall(
            SYS_IPC_SERVICE_REPLACE as libc::c_long,
            u64::from(service),
            program.as_ptr() as u64,
            program.len() as u64,
            &mut stats as *mut ReplaceStats as u64,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    } else {
        Ok(stats)
    }
}
