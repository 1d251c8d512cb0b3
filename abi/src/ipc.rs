//! The IPC system calls of this kernel (not Linux's): their numbers, the
//! registers they use, rights, service ids and limits, shared by the
//! kernel (`kernel/src/syscall/ipc.rs`) and user programs
//! (`userland/src/ipc.rs`).  docs/IPC.md explains the objects.
//!
//! Numbers start at 1000, above every Linux x86_64 number (Linux ends
//! near 460), so the same binary on Linux gets `ENOSYS` and can say the
//! call does not apply.
//!
//! Register convention (the `syscall` instruction; `rcx` and `r11` are
//! clobbered as for every call):
//! * `IPC_CALL`: in `rdi` handle, `rsi` label, `rdx r10 r8 r9` words 0..3,
//!   `r12`/`r13` send buffer and length, `r14`/`r15` reply buffer and
//!   capacity.  Out `rax` reply byte count or `-errno`, `rsi` reply label,
//!   `rdx r10 r8 r9` reply words.
//! * `IPC_RECV`: in `rdi` handle, `r14`/`r15` receive buffer and capacity.
//!   Out `rax` request byte count or `-errno`, `rdi` reply token, `rsi`
//!   label, `rdx r10 r8 r9` words, `r12` badge of the caller's handle.
//! * `IPC_REPLY_RECV`: in `rdi` = `token << 32 | handle`, `rsi` reply
//!   label, `rdx r10 r8 r9` reply words, `r12`/`r13` reply buffer and
//!   length, `r14`/`r15` receive buffer and capacity.  Out as `IPC_RECV`.
//! * `IPC_REPLY`: in `rdi` token, `rsi` label, `rdx r10 r8 r9` words,
//!   `r12`/`r13` reply buffer and length.  Out `rax` 0 or `-errno`.
//! * The others take ordinary arguments (`rdi rsi rdx`) and return a
//!   value in `rax` like any Linux call.
//!
//! Must not: depend on anything (this is the `abi` crate).

/// `ipc_call(handle, label, w0..w3, send, reply)`: send a message on an
/// endpoint and wait for its reply.
pub const SYS_IPC_CALL: u64 = 1000;
/// `ipc_recv(handle, buf)`: wait for a message on an endpoint.
pub const SYS_IPC_RECV: u64 = 1001;
/// `ipc_reply_recv(token|handle, reply, buf)`: reply, then wait for the
/// next message (one system call per request on a server's loop).
pub const SYS_IPC_REPLY_RECV: u64 = 1002;
/// `ipc_reply(token, reply)`: reply without waiting for the next message.
pub const SYS_IPC_REPLY: u64 = 1003;
/// `ipc_endpoint_create() -> handle` (all rights, badge 0).
pub const SYS_IPC_ENDPOINT_CREATE: u64 = 1004;
/// `ipc_close(handle)`: a handle (endpoint, notification, or an unused
/// reply token: its caller then gets `EPIPE`).
pub const SYS_IPC_CLOSE: u64 = 1005;
/// `ipc_mint(handle, rights, badge) -> handle`: a new handle on the same
/// object with at most the rights of `handle` and the given badge.
pub const SYS_IPC_MINT: u64 = 1006;
/// `ipc_notification_create() -> handle`.
pub const SYS_IPC_NOTIFICATION_CREATE: u64 = 1007;
/// `ipc_notify(handle, bits)`: OR `bits` into the notification word and
/// wake a waiter.
pub const SYS_IPC_NOTIFY: u64 = 1008;
/// `ipc_wait(handle, flags) -> bits`: wait until the word is non-zero,
/// return it and clear it (`IPC_NONBLOCK`: `EAGAIN` instead of waiting).
pub const SYS_IPC_WAIT: u64 = 1009;
/// `ipc_register_service(handle, service)`: make an endpoint the kernel's
/// server for `service` (PID 1 and its descendants' privilege: root).
pub const SYS_IPC_REGISTER_SERVICE: u64 = 1010;
/// `ipc_service_call(service, label, w0..w3, send, reply)`: the kernel
/// calls the server registered for `service` (one bit) on the caller's
/// behalf, through its own client (`ipc::kernel_call`, what system-call
/// delegation uses); registers as `IPC_CALL` with `rdi` the service.
pub const SYS_IPC_SERVICE_CALL: u64 = 1011;
/// `ipc_service_replace(service, path, path_len, stats)`: replace the
/// server of `service` (`SERVICE_FS` only) by a new instance of the
/// program at `path` (`path_len` 0: the one it was started from), handing
/// its state over while callers wait (docs/SERVERS.md); root only.
/// `stats` (or 0) receives `ReplaceStats`.
pub const SYS_IPC_SERVICE_REPLACE: u64 = 1013;
/// First and last IPC number.
pub const SYS_IPC_FIRST: u64 = SYS_IPC_CALL;
pub const SYS_IPC_LAST: u64 = SYS_IPC_SERVICE_REPLACE;

/// What `ipc_service_replace` measured (all times in ns of the kernel's
/// clock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaceStats {
    /// Hand-over request sent until the successor was ready: the pause.
    pub switch_ns: u64,
    /// Size of the state image.
    pub image_bytes: u64,
    /// The old instance's export (part of the switch).
    pub export_ns: u64,
    /// Starting the successor (before the switch; the service goes on).
    pub start_ns: u64,
    pub old_pid: u64,
    pub new_pid: u64,
    /// The pre-copy of file data (before the switch; the service goes
    /// on): its time and bytes.
    pub precopy_ns: u64,
    pub precopy_bytes: u64,
    /// When the switch began (`CLOCK_MONOTONIC`): the pause is
    /// `switch_begin_ns .. switch_begin_ns + switch_ns`.
    pub switch_begin_ns: u64,
    /// The successor's rebuild from the image (part of the switch).
    pub import_ns: u64,
}

/// Right to call (send on) an endpoint.
pub const RIGHT_SEND: u32 = 1;
/// Right to receive on an endpoint.
pub const RIGHT_RECV: u32 = 2;
/// Right to mint new handles from this one (badge, fewer rights).
pub const RIGHT_MINT: u32 = 4;
/// Right to notify / wait on a notification (both: `SEND` notifies,
/// `RECV` waits).
pub const RIGHTS_ALL: u32 = RIGHT_SEND | RIGHT_RECV | RIGHT_MINT;

/// `ipc_wait` flag: do not block.
pub const IPC_NONBLOCK: u64 = 1;

/// Most bytes one message (request or reply) carries.
pub const IPC_MAX_BYTES: usize = 64 * 1024;
/// Most handles one process holds.
pub const IPC_MAX_HANDLES: usize = 4096;

/// Service ids for `ipc_register_service` (a bit each, so one endpoint can
/// serve several).
pub const SERVICE_FS: u32 = 1;
pub const SERVICE_NET: u32 = 2;
/// Every service id the kernel knows.
pub const SERVICES_ALL: u32 = SERVICE_FS | SERVICE_NET;
