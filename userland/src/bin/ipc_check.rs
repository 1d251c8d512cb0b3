//! Self-checking test of this kernel's IPC (docs/IPC.md), run by
//! tests/ipc.rs on 1 and 2 vCPUs.
//!
//! Checks: call/reply round trips with a server on the same CPU and (with
//! two CPUs) on the other one; several clients at once; payload bytes both
//! ways up to the limit; forged, closed, never-given and under-privileged
//! handles; a server that exits while its caller waits, and an endpoint
//! nobody receives on; bad buffers; a caller interrupted by a signal or
//! killed while it waits leaves nothing behind; notifications across CPUs;
//! the kernel's own client (`ipc_service_call`) and its `EIO` for a
//! malformed reply.
//!
//! Prints one line per check, `WRONG ...` for a wrong answer, and
//! `ipc_check: pass` at the end when everything was right (exit 0).
//! Synchronises by IPC itself and by pipes, never by sleeping.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use userland::ipc::{self, Received};
use userland::{fork_run, say, wait_for};

use abi::ipc::{IPC_MAX_BYTES, IPC_NONBLOCK, RIGHT_SEND, SERVICE_FS};

static WRONG: AtomicUsize = AtomicUsize::new(0);

fn expect(cond: bool, what: &str) {
    if cond {
        say(&format!("ok: {what}"));
    } else {
        WRONG.fetch_add(1, Ordering::Relaxed);
        say(&format!("WRONG: {what}"));
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, i32>, errno: i32, what: &str) {
    match r {
        Err(e) if e == errno => say(&format!("ok: {what}")),
        other => {
            WRONG.fetch_add(1, Ordering::Relaxed);
            say(&format!(
                "WRONG: {what}: expected {}, got {other:?}",
                userland::errno_name(errno)
            ));
        }
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        WRONG.fetch_add(1, Ordering::Relaxed);
        say(&format!("WRONG: pin to cpu {cpu}"));
    }
}

fn cpus() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// Requests the test server understands.
const ECHO: u64 = 1; // words + label back, +1 each
const FLIP: u64 = 2; // bytes back, each xor 0xff
const QUIT: u64 = 3; // reply, then exit 0
const DIE: u64 = 4; // exit without replying
const HANDLE: u64 = 5; // reply with a handle only the server holds
const LONG: u64 = 6; // reply with more bytes than the caller takes (words[0] bytes)

/// The test server: answers on `ep` until QUIT or DIE.  Exit code: 0, or
/// 1 when a receive failed.
fn serve(ep: u64) -> i32 {
    let mut buf = vec![0u8; IPC_MAX_BYTES];
    let mut out: Vec<u8> = Vec::new();
    let mut got: Received = match ipc::recv(ep, &mut buf) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("WRONG: server recv: {}", userland::errno_name(e)));
            return 1;
        }
    };
    loop {
        if std::env::var_os("IPC_TRACE").is_some() {
            say(&format!("trace: server got {}", got.label));
        }
        let (label, words) = match got.label {
            ECHO => (
                got.label.wrapping_add(1),
                got.words.map(|w| w.wrapping_add(1)),
            ),
            FLIP => {
                out.clear();
                out.extend(buf[..got.len].iter().map(|b| b ^ 0xff));
                (FLIP, [got.len as u64, got.badge, 0, 0])
            }
            QUIT => {
                let _ = ipc::reply(got.token, QUIT, [0; 4], &[]);
                return 0;
            }
            DIE => return 0,
            HANDLE => {
                let mine = ipc::endpoint_create().unwrap_or(0);
                (HANDLE, [mine, 0, 0, 0])
            }
            LONG => {
                out.clear();
                out.resize(got.words[0] as usize, 7);
                let r = ipc::reply(got.token, LONG, [0; 4], &out);
                expect_err(
                    r,
                    libc::EMSGSIZE,
                    "a reply longer than the caller takes: EMSGSIZE to the server",
                );
                out.clear();
                got = match ipc::recv(ep, &mut buf) {
                    Ok(r) => r,
                    Err(_) => return 1,
                };
                continue;
            }
            _ => (0, [0; 4]),
        };
        let reply: &[u8] = if got.label == FLIP { &out } else { &[] };
        got = match ipc::reply_recv(ep, got.token, label, words, reply, &mut buf) {
            Ok(r) => r,
            Err(e) => {
                say(&format!(
                    "WRONG: server reply_recv: {}",
                    userland::errno_name(e)
                ));
                return 1;
            }
        };
    }
}

/// `n` echo round trips; whether every answer was right.
fn echo_rounds(ep: u64, n: u64, seed: u64) -> bool {
    let mut none = [0u8; 0];
    (0..n).all(|i| {
        if std::env::var_os("IPC_TRACE").is_some() {
            say(&format!("trace: echo {i}"));
        }
        let w = [seed + i, seed * 2 + i, i, u64::MAX - 1 - i];
        match ipc::call(ep, ECHO, w, &[], &mut none) {
            Ok(r) => {
                r.len == 0
                    && r.label == ECHO + 1
                    && r.words == [w[0] + 1, w[1] + 1, w[2] + 1, w[3].wrapping_add(1)]
            }
            Err(_) => false,
        }
    })
}

fn quit(ep: u64) -> bool {
    ipc::call(ep, QUIT, [0; 4], &[], &mut []).is_ok_and(|r| r.label == QUIT)
}

/// Round trips with a server on `server_cpu`, the client on CPU 0.
fn round_trips(ep: u64, server_cpu: usize, what: &str) {
    pin(0);
    let server = fork_run(move || {
        pin(server_cpu);
        serve(ep)
    });
    let Ok(server) = server else {
        expect(false, "fork a server");
        return;
    };
    expect(
        echo_rounds(ep, 2000, 7),
        &format!("{what}: 2000 echo round trips"),
    );
    // Bulk both ways, at sizes around page and limit boundaries.
    for size in [1usize, 4095, 4096, 4097, 65536] {
        let send: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let mut back = vec![0u8; size];
        let r = ipc::call(ep, FLIP, [0; 4], &send, &mut back);
        let right = r.is_ok_and(|r| r.len == size && r.words[0] == size as u64)
            && back.iter().zip(&send).all(|(b, s)| *b == s ^ 0xff);
        expect(right, &format!("{what}: {size} bytes each way"));
    }
    expect(quit(ep), &format!("{what}: server quits"));
    expect(
        wait_for(server) == "exited 0",
        &format!("{what}: server exit 0"),
    );
}

fn many_clients(ep: u64) {
    let server = fork_run(move || serve(ep));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        clients.push(fork_run(move || {
            pin(c as usize % cpus());
            if echo_rounds(ep, 300, c * 1000) {
                0
            } else {
                1
            }
        }));
    }
    let all = clients
        .into_iter()
        .all(|c| c.is_ok_and(|pid| wait_for(pid) == "exited 0"));
    expect(
        all,
        "4 clients x 300 calls on one server, every answer right",
    );
    expect(quit(ep), "server quits after the clients");
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "server exit 0");
    }
}

fn handles(ep: u64) {
    let mut none = [0u8; 0];
    expect_err(
        ipc::call(ep ^ 0x5a5a_0000, ECHO, [0; 4], &[], &mut none),
        libc::EBADF,
        "a forged handle: EBADF",
    );
    expect_err(
        ipc::call(0, ECHO, [0; 4], &[], &mut none),
        libc::EBADF,
        "handle 0: EBADF",
    );
    expect_err(
        ipc::call(u64::MAX, ECHO, [0; 4], &[], &mut none),
        libc::EBADF,
        "handle 2^64-1: EBADF",
    );
    let gone = ipc::endpoint_create().unwrap_or(0);
    expect(ipc::close(gone).is_ok(), "close an endpoint");
    expect_err(
        ipc::call(gone, ECHO, [0; 4], &[], &mut none),
        libc::EBADF,
        "a closed handle: EBADF",
    );
    expect_err(ipc::close(gone), libc::EBADF, "closing it twice: EBADF");
    let again = ipc::endpoint_create().unwrap_or(0);
    expect(
        again != gone,
        "a reused slot gets a new number (stale ones stay dead)",
    );
    let _ = ipc::close(again);

    let send_only = ipc::mint(ep, RIGHT_SEND, 42).unwrap_or(0);
    expect_err(
        ipc::recv(send_only, &mut none),
        libc::EPERM,
        "recv on a send-only handle: EPERM",
    );
    expect_err(
        ipc::mint(send_only, RIGHT_SEND, 1),
        libc::EPERM,
        "mint without the mint right: EPERM",
    );
    expect_err(
        ipc::notify(ep, 1),
        libc::EBADF,
        "notify on an endpoint: EBADF",
    );
    expect_err(
        ipc::reply(send_only, 0, [0; 4], &[]),
        libc::EBADF,
        "reply with a non-token: EBADF",
    );
    expect_err(
        ipc::reply_recv(ep, 0x7777, 0, [0; 4], &[], &mut none),
        libc::EBADF,
        "reply_recv with a forged token: EBADF",
    );

    // A handle the server made for itself means nothing here; the badge
    // of the minted handle reaches the server.
    let server = fork_run(move || serve(ep));
    let theirs = ipc::call(send_only, HANDLE, [0; 4], &[], &mut none).map(|r| r.words[0]);
    expect(
        theirs.is_ok_and(|h| h != 0),
        "server made a handle of its own",
    );
    if let Ok(h) = theirs {
        expect_err(
            ipc::call(h, ECHO, [0; 4], &[], &mut none),
            libc::EBADF,
            "a handle never given: EBADF",
        );
    }
    let mut back = [0u8; 3];
    let badge = ipc::call(send_only, FLIP, [0; 4], b"abc", &mut back).map(|r| r.words[1]);
    expect(
        badge == Ok(42),
        "the server sees the badge of the caller's handle",
    );
    // Reply tokens are one-shot and never leave the server.
    expect(quit(ep), "server quits");
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "server exit 0");
    }
    let _ = ipc::close(send_only);
}

fn bad_buffers(ep: u64) {
    let mut none = [0u8; 0];
    expect_err(
        ipc::call_raw(ep, ECHO, [0; 4], (0x1000, 16), (0, 0)),
        libc::EFAULT,
        "unmapped send buffer: EFAULT",
    );
    expect_err(
        ipc::call_raw(ep, ECHO, [0; 4], (0xffff_8000_0000_0000, 16), (0, 0)),
        libc::EFAULT,
        "kernel send buffer: EFAULT",
    );
    expect_err(
        ipc::call_raw(ep, ECHO, [0; 4], (0, 0), (0xffff_8000_0000_0000, 16)),
        libc::EFAULT,
        "kernel reply buffer: EFAULT",
    );
    expect_err(
        ipc::recv_raw(ep, (0xffff_ffff_ffff_f000, 64)),
        libc::EFAULT,
        "kernel receive buffer: EFAULT",
    );
    let big = vec![0u8; IPC_MAX_BYTES + 1];
    expect_err(
        ipc::call(ep, FLIP, [0; 4], &big, &mut none),
        libc::EMSGSIZE,
        "a request above the limit: EMSGSIZE",
    );
    let server = fork_run(move || serve(ep));
    // The reply lands in an unmapped page: the caller hears EFAULT.
    expect_err(
        ipc::call_raw(ep, FLIP, [0; 4], (b"xyz".as_ptr() as u64, 3), (0x1000, 16)),
        libc::EFAULT,
        "unmapped reply buffer: EFAULT",
    );
    let mut small = [0u8; 4];
    expect_err(
        ipc::call(ep, LONG, [100, 0, 0, 0], &[], &mut small),
        libc::EIO,
        "a server's reply longer than the reply buffer: EIO to the caller",
    );
    expect(
        echo_rounds(ep, 10, 3),
        "the server still serves after bad buffers",
    );
    expect(quit(ep), "server quits");
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "server exit 0");
    }
}

/// A server that exits holding a call; an endpoint with no receiver left.
fn server_death() {
    let Ok(ep) = ipc::endpoint_create() else {
        expect(false, "endpoint for the death test");
        return;
    };
    let send = ipc::mint(ep, RIGHT_SEND, 0).unwrap_or(0);
    let server = fork_run(move || {
        let _ = ipc::close(send);
        serve(ep)
    });
    // Only the child may receive now.
    let _ = ipc::close(ep);
    let mut none = [0u8; 0];
    expect_err(
        ipc::call(send, DIE, [0; 4], &[], &mut none),
        libc::EPIPE,
        "the server exits while the caller waits: EPIPE",
    );
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "dying server exit 0");
    }
    expect_err(
        ipc::call(send, ECHO, [0; 4], &[], &mut none),
        libc::EPIPE,
        "an endpoint nobody can receive on: EPIPE",
    );
    let _ = ipc::close(send);
}

static ALARMED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_alarm(_: libc::c_int) {
    ALARMED.store(true, Ordering::Relaxed);
}

/// Callers that stop waiting (a signal, SIGKILL) leave no message behind.
fn interrupted_callers(ep: u64) {
    let mut none = [0u8; 0];
    // A signal handler without SA_RESTART: the call returns EINTR.
    let _ = userland::set_handler(libc::SIGALRM, on_alarm as *const () as usize, 0);
    let tick = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        },
    };
    // SAFETY: valid itimerval; the old value is not asked for.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &tick, std::ptr::null_mut()) };
    // Nobody receives yet (the parent holds the receive right): the call
    // waits until the timer's signal.
    let r = ipc::call(ep, 99, [0; 4], &[], &mut none);
    let stop = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    // SAFETY: as above.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &stop, std::ptr::null_mut()) };
    expect_err(r, libc::EINTR, "a signal interrupts a waiting call: EINTR");
    expect(ALARMED.load(Ordering::Relaxed), "the handler ran");

    // A client killed while queued (same CPU: it notifies, then calls and
    // blocks before we run again).
    pin(0);
    let n = ipc::notification_create().unwrap_or(0);
    let victim = fork_run(move || {
        pin(0);
        let _ = ipc::notify(n, 1);
        let _ = ipc::call(ep, 98, [0; 4], &[], &mut []);
        0
    });
    expect(ipc::wait(n, 0) == Ok(1), "victim announced its call");
    if let Ok(v) = victim {
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(v, libc::SIGKILL) };
        expect(
            wait_for(v) == "killed by SIGKILL",
            "victim killed while calling",
        );
    }
    // A client killed while its call is held by the server.
    let held = fork_run(move || {
        let _ = ipc::call(ep, 97, [0; 4], &[], &mut []);
        0
    });
    let mut buf = [0u8; 16];
    let got = ipc::recv(ep, &mut buf);
    expect(
        got.is_ok_and(|g| g.label == 97),
        "server holds the next live call (not the killed or interrupted ones)",
    );
    if let Ok(h) = held {
        // SAFETY: as above.
        unsafe { libc::kill(h, libc::SIGKILL) };
        expect(wait_for(h) == "killed by SIGKILL", "held caller killed");
    }
    if let Ok(g) = got {
        expect(
            ipc::reply(g.token, 0, [0; 4], &[]).is_ok(),
            "a reply to a caller that is gone is harmless",
        );
        expect_err(
            ipc::reply(g.token, 0, [0; 4], &[]),
            libc::EBADF,
            "a token answers once: EBADF",
        );
    }
    let _ = ipc::close(n);
    // Nothing stale is left: the next call is the first one served.
    let server = fork_run(move || serve(ep));
    expect(echo_rounds(ep, 5, 11), "fresh calls still work");
    expect(quit(ep), "server quits");
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "server exit 0");
    }
}

fn notifications() {
    let (Ok(ping), Ok(pong)) = (ipc::notification_create(), ipc::notification_create()) else {
        expect(false, "notifications created");
        return;
    };
    expect_err(
        ipc::wait(ping, IPC_NONBLOCK),
        libc::EAGAIN,
        "nothing pending: EAGAIN",
    );
    expect(
        ipc::notify(ping, 1).is_ok() && ipc::notify(ping, 4).is_ok(),
        "notify twice",
    );
    expect(
        ipc::wait(ping, IPC_NONBLOCK) == Ok(5),
        "bits accumulate and are taken together",
    );
    expect_err(
        ipc::wait(ping, IPC_NONBLOCK),
        libc::EAGAIN,
        "taking clears them",
    );
    expect_err(ipc::notify(ping, 1 << 63), libc::EINVAL, "bit 63: EINVAL");
    let other = cpus() - 1;
    let peer = fork_run(move || {
        pin(other);
        for round in 0..200u64 {
            match ipc::wait(ping, 0) {
                Ok(bits) if bits == round + 1 => {}
                _ => return 1,
            }
            if ipc::notify(pong, round + 1).is_err() {
                return 1;
            }
        }
        0
    });
    pin(0);
    let all = (0..200u64)
        .all(|round| ipc::notify(ping, round + 1).is_ok() && ipc::wait(pong, 0) == Ok(round + 1));
    expect(
        all,
        &format!("200 notification ping-pongs with cpu {other}"),
    );
    if let Ok(p) = peer {
        expect(wait_for(p) == "exited 0", "notification peer exit 0");
    }
}

fn kernel_client(ep: u64) {
    let mut none = [0u8; 0];
    expect(
        ipc::register_service(ep, SERVICE_FS).is_ok(),
        "register an endpoint as the fs service",
    );
    expect_err(
        ipc::register_service(ep, 1 << 20),
        libc::EINVAL,
        "an unknown service: EINVAL",
    );
    let send_only = ipc::mint(ep, RIGHT_SEND, 0).unwrap_or(0);
    expect_err(
        ipc::register_service(send_only, SERVICE_FS),
        libc::EPERM,
        "registering without the receive right: EPERM",
    );
    let _ = ipc::close(send_only);
    let server = fork_run(move || serve(ep));
    let w = [1, 2, 3, 4];
    let r = ipc::service_call(SERVICE_FS, ECHO, w, &[], &mut none);
    expect(
        r.is_ok_and(|r| r.label == ECHO + 1 && r.words == [2, 3, 4, 5]),
        "the kernel's client: echo",
    );
    let mut back = [0u8; 5];
    let r = ipc::service_call(SERVICE_FS, FLIP, [0; 4], b"hello", &mut back);
    let badge = r.map(|r| r.words[1]).unwrap_or(0);
    expect(
        r.is_ok_and(|r| r.len == 5) && back == *b"hello".map(|b| b ^ 0xff).as_slice(),
        "the kernel's client: bytes both ways",
    );
    // SAFETY: getpid has no arguments.
    let pid = unsafe { libc::getpid() } as u64;
    expect(
        badge == (1 << 63) | pid,
        "the server sees the kernel's badge with our pid",
    );
    let mut small = [0u8; 8];
    expect_err(
        ipc::service_call(SERVICE_FS, LONG, [64, 0, 0, 0], &[], &mut small),
        libc::EIO,
        "a malformed (too long) reply to the kernel's client: EIO",
    );
    expect(quit(ep), "server quits");
    if let Ok(s) = server {
        expect(wait_for(s) == "exited 0", "server exit 0");
    }
}

fn main() {
    let ep = match ipc::endpoint_create() {
        Ok(ep) => ep,
        Err(e) => {
            say(&format!(
                "ipc_check: no IPC here ({})",
                userland::errno_name(e)
            ));
            std::process::exit(2);
        }
    };
    let n = cpus();
    say(&format!("cpus: {}", if n > 1 { "several" } else { "one" }));
    round_trips(ep, 0, "same cpu");
    if n > 1 {
        round_trips(ep, 1, "cross cpu");
    }
    many_clients(ep);
    handles(ep);
    bad_buffers(ep);
    server_death();
    interrupted_callers(ep);
    notifications();
    kernel_client(ep);
    if WRONG.load(Ordering::Relaxed) == 0 {
        say("ipc_check: pass");
    } else {
        say("ipc_check: fail");
        std::process::exit(1);
    }
}
