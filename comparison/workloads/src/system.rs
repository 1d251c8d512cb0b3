//! The system workloads: null system call, null IPC round trip (this
//! kernel's own IPC), context switch, page fault.
//!
//! Nothing here is shared between workers: each worker has its own pipes,
//! partner and mappings, so these measure how the kernel's paths scale when
//! the work itself is private.  It must not touch files.

use crate::sys::{self, Fail, Res};
use crate::workload::{Ctx, Op};

/// getppid: one operation = one getppid system call.
pub fn getppid(_: &Ctx, _: usize) -> Res<Op> {
    if sys::getppid() < 0 {
        return Err(Fail::last("getppid"));
    }
    Ok(Box::new(|| {
        sys::getppid();
        Ok(1)
    }))
}

/// The label that ends the `ipc_call` server.
const IPC_QUIT: u64 = 1;

/// The worker's end of `ipc_call`: its endpoint and server process, which
/// is told to quit and reaped when the worker's operation is dropped.
struct IpcPair {
    handle: u64,
    server: i32,
}

impl IpcPair {
    /// One null round trip.  A method, so the operation closure captures
    /// (and keeps alive) the whole pair, not a copy of its handle.
    fn round_trip(&self) -> Res<()> {
        sys::ipc_call_null(self.handle, 0)
    }
}

impl Drop for IpcPair {
    fn drop(&mut self) {
        let _ = sys::ipc_call_null(self.handle, IPC_QUIT);
        let _ = sys::wait_child(self.server);
    }
}

/// ipc_call: one operation = one null IPC round trip (this kernel's
/// `ipc_call` with no words or bytes, answered by `ipc_reply_recv`) to a
/// server process on the worker's CPU: the IPC counterpart of getppid.
/// On a system without this kernel's IPC (Linux) the endpoint cannot be
/// made and the workload fails with ENOSYS: it does not apply there.
pub fn ipc_call(_: &Ctx, _: usize) -> Res<Op> {
    ipc_pair(None)
}

/// ipc_call_remote: ipc_call with the server process pinned to the next
/// worker's CPU (w + 1 mod T): every round trip crosses cores (with one
/// worker it is ipc_call).
pub fn ipc_call_remote(ctx: &Ctx, w: usize) -> Res<Op> {
    ipc_pair(Some((w + 1) % ctx.workers.max(1)))
}

/// A null round-trip pair whose server runs on `cpu` (None: the worker's).
fn ipc_pair(cpu: Option<usize>) -> Res<Op> {
    let handle = sys::ipc_endpoint_create().map_err(|f| Fail {
        what: "ipc_call does not apply on this system (it has no such IPC): ipc_endpoint_create"
            .into(),
        errno: f.errno,
    })?;
    // The child runs raw system calls only, then `_exit`: safe after a
    // fork from a threaded worker (no allocation, no lock).  It inherits
    // the worker's CPU affinity (worker w is pinned to CPU w), so the
    // server runs on the worker's CPU.
    let server = match sys::fork()? {
        0 => {
            if let Some(cpu) = cpu {
                if !sys::pin_to_cpu_raw(cpu) {
                    sys::exit_now(1);
                }
            }
            sys::ipc_serve_null(handle, IPC_QUIT);
            sys::exit_now(0);
        }
        pid => pid,
    };
    let pair = IpcPair { handle, server };
    // One call before measuring: the server is there and answers.
    pair.round_trip()?;
    Ok(Box::new(move || {
        pair.round_trip()?;
        Ok(1)
    }))
}

/// A partner that echoes bytes from one pipe into another on the worker's
/// CPU: a thread (threads mode) or a forked process (processes mode).  It
/// ends when the worker closes its end of the first pipe (EOF).
struct PingPong {
    to_partner: i32,
    from_partner: i32,
    thread: Option<std::thread::JoinHandle<()>>,
    child: Option<i32>,
}

impl PingPong {
    /// One round trip.  A method, so the operation closure captures (and
    /// keeps alive) the whole pair, not copies of its descriptors.
    fn round_trip(&self, b: &mut [u8; 1]) -> Res<()> {
        sys::write(self.to_partner, b)?;
        if sys::read(self.from_partner, b)? != 1 {
            return Err(Fail::msg("the ping-pong partner went away"));
        }
        Ok(())
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        let _ = sys::close(self.to_partner);
        let _ = sys::close(self.from_partner);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(pid) = self.child.take() {
            let _ = sys::wait_child(pid);
        }
    }
}

/// The partner's loop: read one byte, write it back, until EOF or error.
fn echo(from: i32, to: i32) {
    let mut b = [0u8; 1];
    while let Ok(1) = sys::read(from, &mut b) {
        if sys::write(to, &b).is_err() {
            break;
        }
    }
}

/// context_switch: one operation = one round trip of one byte through two
/// pipes between the worker and its partner on the same CPU (two switches).
pub fn context_switch(ctx: &Ctx, w: usize) -> Res<Op> {
    let (a_read, a_write) = sys::pipe()?;
    let (b_read, b_write) = sys::pipe()?;
    let mut pair = PingPong {
        to_partner: a_write,
        from_partner: b_read,
        thread: None,
        child: None,
    };
    if ctx.procs {
        // The worker process is single-threaded here, so fork is safe.
        match sys::fork()? {
            0 => {
                let _ = sys::close(a_write);
                let _ = sys::close(b_read);
                echo(a_read, b_write);
                sys::exit_now(0);
            }
            pid => pair.child = Some(pid),
        }
        sys::close(a_read)?;
        sys::close(b_write)?;
    } else {
        let handle = std::thread::Builder::new()
            .name(format!("partner{w}"))
            .spawn(move || {
                // Pinned like its worker; if pinning fails the pair still
                // works, only on two CPUs, so the worker reports it below.
                let _ = sys::pin_to_cpu(w);
                echo(a_read, b_write);
                let _ = sys::close(a_read);
                let _ = sys::close(b_write);
            })
            .map_err(|e| Fail {
                what: format!("spawning the partner thread: {e}"),
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        pair.thread = Some(handle);
    }
    let mut b = [7u8; 1];
    Ok(Box::new(move || {
        pair.round_trip(&mut b)?;
        Ok(1)
    }))
}

/// Size of the page_fault mapping.
const FAULT_BYTES: usize = 64 * 1024;

/// page_fault: one operation = mmap 64 KiB anonymous private memory, write
/// one byte in each of its 16 pages (16 faults), munmap it.
pub fn page_fault(_: &Ctx, _: usize) -> Res<Op> {
    Ok(Box::new(|| {
        let p = sys::mmap(
            FAULT_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
        )?;
        for page in (0..FAULT_BYTES).step_by(4096) {
            // SAFETY: `p` is a fresh private read-write mapping of
            // FAULT_BYTES bytes that nothing else references.
            unsafe { p.add(page).write_volatile(1) };
        }
        sys::munmap(p, FAULT_BYTES)?;
        Ok(1)
    }))
}

/// Pages of the munmap_shared_region mapping, and how many of them
/// worker 0 replaces in each of its operations.
const SHARED_PAGES: usize = 16;
const REPLACED_PAGES: usize = 8;

/// The munmap_shared_region mapping (made by the set-up, before workers).
static SHARED_REGION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// munmap_shared_region set-up: one 64 KiB anonymous private read-write
/// mapping that every worker touches.
pub fn setup_shared_region(_: &Ctx) -> Res<()> {
    let p = sys::mmap(
        SHARED_PAGES * 4096,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    )?;
    SHARED_REGION.store(p as usize, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// munmap_shared_region: one operation = write one byte in each of the 16
/// pages of the shared mapping (a fault for each page that is not mapped
/// for this worker any more), then replace its first 8 pages with fresh
/// memory (`mmap` MAP_FIXED, which unmaps the old pages: every other CPU
/// that faulted them since must drop its translations, the case that
/// needs IPIs).  Replacing instead of munmap + mmap keeps the
/// range mapped at every instant, so the other workers never touch a hole
/// and nothing waits for anything.  Threads share the one mapping; with
/// `--procs` each process has its own copy (nothing is shared).
pub fn munmap_shared_region(_: &Ctx, w: usize) -> Res<Op> {
    let base = SHARED_REGION.load(std::sync::atomic::Ordering::SeqCst) as *mut u8;
    Ok(Box::new(move || {
        for page in 0..SHARED_PAGES {
            // SAFETY: the set-up mapped SHARED_PAGES read-write pages at
            // `base` for the whole run; the replacement below keeps the
            // range mapped read-write at every instant.  Bytes written
            // here are never read as Rust values.
            unsafe { base.add(page * 4096 + w % 4096).write_volatile(1) };
        }
        // SAFETY: MAP_FIXED over the start of the workload's own mapping,
        // which no Rust reference points into.
        let p = unsafe {
            libc::mmap(
                base.cast(),
                REPLACED_PAGES * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Fail::last("mmap MAP_FIXED"));
        }
        Ok(1)
    }))
}
