//! The network workloads over the loopback interface (127.0.0.1): TCP
//! request/response, TCP stream, TCP connection churn on one shared port,
//! UDP request/response.
//!
//! Every worker gets a *partner* (the server side) on its own CPU: a thread
//! pinned to the worker's CPU with `--threads`, a forked process (which
//! inherits the worker's pinning) with `--procs`.  Connections, listeners
//! and partners are made in the worker set-up (`make_worker`), so listen,
//! bind and connect are never measured; `tcp_connect`'s one shared listening
//! socket is made by the main thread in `setup_shared_listener`.
//! Invariants: an operation allocates nothing; a worker's partner ends when
//! the worker's operation closure is dropped (EOF on the connection, an empty
//! UDP datagram, or the stop pipe), and is joined or waited for there, so no
//! partner outlives its worker.  It must not print except to report a
//! partner's failure on stderr.

use crate::sys::{self, Fail, Res};
use crate::workload::{Ctx, Op};
use std::sync::atomic::{AtomicI32, Ordering};

/// Size of a request and of a response in `tcp_rr` and `udp_rr`.
pub const MESSAGE_BYTES: usize = 64;
/// Size of each write in `tcp_stream` (and of the partner's reads).
pub const STREAM_BLOCK: usize = 64 * 1024;
/// `udp_rr`: a response that takes longer than this is an error (a lost
/// datagram would otherwise stall the worker for ever).
const UDP_RESPONSE_LIMIT_MS: u64 = 2000;
/// Backlog of the listening sockets.
const BACKLOG: i32 = 128;

/// The server side of one worker.
enum Partner {
    Thread(std::thread::JoinHandle<()>),
    Process(i32),
}

/// Start `body` as worker `w`'s partner: a thread pinned to CPU `w`, or a
/// forked process.  `worker_fds` are the worker's descriptors (a forked
/// partner closes its copies); `partner_fds` are the partner's (the worker
/// closes its copies after a fork; a thread partner closes them when done).
fn spawn_partner(
    ctx: &Ctx,
    w: usize,
    name: &'static str,
    worker_fds: &[i32],
    partner_fds: &[i32],
    body: impl FnOnce() -> Res<()> + Send + 'static,
) -> Res<Partner> {
    let report = move |r: Res<()>| {
        if let Err(f) = r {
            eprintln!("wis: {name}: worker {w}'s partner: {f}");
            false
        } else {
            true
        }
    };
    if ctx.procs {
        // The worker process is single-threaded here, so fork is safe.
        match sys::fork()? {
            0 => {
                for &fd in worker_fds {
                    let _ = sys::close(fd);
                }
                let ok = report(body());
                sys::exit_now(if ok { 0 } else { 1 });
            }
            pid => {
                for &fd in partner_fds {
                    let _ = sys::close(fd);
                }
                Ok(Partner::Process(pid))
            }
        }
    } else {
        let fds = partner_fds.to_vec();
        let handle = std::thread::Builder::new()
            .name(format!("partner{w}"))
            .spawn(move || {
                // Pinned like its worker; if pinning fails the pair still
                // works (on two CPUs), as in context_switch.
                let _ = sys::pin_to_cpu(w);
                report(body());
                for fd in fds {
                    let _ = sys::close(fd);
                }
            })
            .map_err(|e| Fail {
                what: format!("spawning the partner thread: {e}"),
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        Ok(Partner::Thread(handle))
    }
}

/// What a worker's operation closure owns: its descriptors and its partner.
/// Dropping it tells the partner to end (`farewell`), closes the
/// descriptors, and joins or waits for the partner.
struct Pair {
    fds: Vec<i32>,
    partner: Option<Partner>,
    farewell: Option<fn(&Pair)>,
}

impl Pair {
    /// The pair of one worker once its partner was (or failed to be)
    /// started: on failure both descriptors are closed here, so that every
    /// workload's set-up has one cleanup path.
    fn start(
        partner: Res<Partner>,
        worker_fd: i32,
        partner_fd: i32,
        farewell: Option<fn(&Pair)>,
    ) -> Res<Pair> {
        match partner {
            Ok(partner) => Ok(Pair {
                fds: vec![worker_fd],
                partner: Some(partner),
                farewell,
            }),
            Err(f) => {
                let _ = sys::close(worker_fd);
                let _ = sys::close(partner_fd);
                Err(f)
            }
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(f) = self.farewell {
            f(self);
        }
        for &fd in &self.fds {
            let _ = sys::close(fd);
        }
        match self.partner.take() {
            Some(Partner::Thread(t)) => {
                let _ = t.join();
            }
            Some(Partner::Process(pid)) => {
                let _ = sys::wait_child(pid);
            }
            None => {}
        }
    }
}

/// Read exactly `buf.len()` bytes; `Ok(false)` on EOF before the first byte.
fn read_exact(fd: i32, buf: &mut [u8]) -> Res<bool> {
    let mut got = 0;
    while got < buf.len() {
        let n = sys::read(fd, &mut buf[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(Fail::msg(format!(
                "the peer closed the connection after {got} of {} bytes",
                buf.len()
            )));
        }
        got += n;
    }
    Ok(true)
}

/// Write all of `buf`.
fn write_all(fd: i32, buf: &[u8]) -> Res<()> {
    let mut put = 0;
    while put < buf.len() {
        let n = sys::write(fd, &buf[put..])?;
        if n == 0 {
            return Err(Fail::msg("write to a socket returned 0"));
        }
        put += n;
    }
    Ok(())
}

/// A connected loopback TCP pair made through a private listener:
/// (client, server).  The listener is closed before returning.
fn tcp_pair(nodelay: bool) -> Res<(i32, i32)> {
    let listener = sys::socket_inet(libc::SOCK_STREAM, 0)?;
    let result = (|| {
        let port = sys::bind_loopback_ephemeral(listener)?;
        sys::listen(listener, 1)?;
        let client = sys::socket_inet(libc::SOCK_STREAM, 0)?;
        // connect completes through the backlog before accept is called.
        if let Err(f) = sys::connect_loopback(client, port) {
            let _ = sys::close(client);
            return Err(f);
        }
        let server = match sys::accept(listener) {
            Ok(s) => s,
            Err(f) => {
                let _ = sys::close(client);
                return Err(f);
            }
        };
        if nodelay {
            for fd in [client, server] {
                if let Err(f) = sys::set_int_option(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    1,
                    "setsockopt(TCP_NODELAY)",
                ) {
                    let _ = sys::close(client);
                    let _ = sys::close(server);
                    return Err(f);
                }
            }
        }
        Ok((client, server))
    })();
    let _ = sys::close(listener);
    result
}

/// tcp_rr: one operation = a 64-byte request from the worker and a 64-byte
/// response from its partner over their own loopback TCP connection
/// (TCP_NODELAY on both ends).
pub fn tcp_rr(ctx: &Ctx, w: usize) -> Res<Op> {
    let (client, server) = tcp_pair(true)?;
    let partner = spawn_partner(ctx, w, "tcp_rr", &[client], &[server], move || {
        let mut buf = [0u8; MESSAGE_BYTES];
        while read_exact(server, &mut buf)? {
            write_all(server, &buf)?;
        }
        Ok(())
    });
    let pair = Pair::start(partner, client, server, None)?;
    let request = [w as u8; MESSAGE_BYTES];
    let mut response = [0u8; MESSAGE_BYTES];
    Ok(Box::new(move || {
        let fd = pair.fds[0];
        write_all(fd, &request)?;
        if !read_exact(fd, &mut response)? {
            return Err(Fail::msg("the tcp_rr partner closed the connection"));
        }
        Ok(1)
    }))
}

/// tcp_stream: one operation = one `write` of a 64 KiB block to the
/// worker's loopback TCP connection; the partner reads and discards.
/// Counts the bytes the write accepted.
pub fn tcp_stream(ctx: &Ctx, w: usize) -> Res<Op> {
    let (client, server) = tcp_pair(false)?;
    let partner = spawn_partner(ctx, w, "tcp_stream", &[client], &[server], move || {
        let mut buf = vec![0u8; STREAM_BLOCK];
        while sys::read(server, &mut buf)? > 0 {}
        Ok(())
    });
    let pair = Pair::start(partner, client, server, None)?;
    let block = vec![0x5au8; STREAM_BLOCK];
    Ok(Box::new(move || {
        let n = sys::write(pair.fds[0], &block)?;
        if n == 0 {
            return Err(Fail::msg("write to the tcp_stream connection returned 0"));
        }
        Ok(n as u64)
    }))
}

/// The shared listening socket of `tcp_connect` (-1: none) and its port.
static SHARED_LISTENER: AtomicI32 = AtomicI32::new(-1);
static SHARED_PORT: AtomicI32 = AtomicI32::new(0);

/// Close tcp_connect's shared listener, if there is one (after its run;
/// connections still queued on it go with it).
pub fn close_shared_listener() {
    let old = SHARED_LISTENER.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        let _ = sys::close(old);
    }
}

/// tcp_connect's set-up (main thread, before any worker): one non-blocking
/// listening socket on 127.0.0.1, an ephemeral port, SO_REUSEADDR.  Workers
/// (threads, or processes forked later) all use it.  A listener left by an
/// earlier run in this process (`wis all`) is closed first.
pub fn setup_shared_listener(_: &Ctx) -> Res<()> {
    close_shared_listener();
    let fd = sys::socket_inet(libc::SOCK_STREAM, libc::SOCK_NONBLOCK)?;
    let made = (|| {
        sys::set_int_option(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            1,
            "setsockopt(SO_REUSEADDR)",
        )?;
        let port = sys::bind_loopback_ephemeral(fd)?;
        sys::listen(fd, BACKLOG)?;
        Ok(port)
    })();
    match made {
        Ok(port) => {
            SHARED_PORT.store(i32::from(port), Ordering::SeqCst);
            SHARED_LISTENER.store(fd, Ordering::SeqCst);
            Ok(())
        }
        Err(f) => {
            let _ = sys::close(fd);
            Err(f)
        }
    }
}

/// The accept loop of a tcp_connect partner: wait (poll) until the shared
/// listener has a connection or the stop pipe is closed; accept and close
/// at once.  Other partners race for the same connections (the listener is
/// non-blocking, so the losers see EAGAIN and poll again).
fn accept_loop(listener: i32, stop: i32) -> Res<()> {
    loop {
        let ready = sys::poll_readable(&[listener, stop])?;
        if ready & 0b10 != 0 {
            return Ok(());
        }
        if ready & 0b01 != 0 {
            match sys::accept(listener) {
                Ok(conn) => sys::close(conn)?,
                Err(f) if f.errno == libc::EAGAIN || f.errno == libc::ECONNABORTED => {}
                Err(f) => return Err(f),
            }
        }
    }
}

/// tcp_connect: one operation = `socket`, `connect` to the one shared
/// listening port, `read` until EOF (the server side accepted the
/// connection and closed it), `close`.  Each worker's partner is one accept
/// loop on the shared listener; any partner may accept any worker's
/// connection.
pub fn tcp_connect(ctx: &Ctx, w: usize) -> Res<Op> {
    let listener = SHARED_LISTENER.load(Ordering::SeqCst);
    let port = SHARED_PORT.load(Ordering::SeqCst) as u16;
    if listener < 0 {
        return Err(Fail::msg("tcp_connect: the shared listener was not set up"));
    }
    let (stop_read, stop_write) = sys::pipe()?;
    let partner = spawn_partner(
        ctx,
        w,
        "tcp_connect",
        &[stop_write],
        &[stop_read],
        move || accept_loop(listener, stop_read),
    );
    // Closing the pipe's write end (Pair's drop) ends the accept loop.
    let pair = Pair::start(partner, stop_write, stop_read, None)?;
    let mut byte = [0u8; 1];
    Ok(Box::new(move || {
        let _owned_until_the_worker_ends = &pair;
        let s = sys::socket_inet(libc::SOCK_STREAM, 0)?;
        let result = sys::connect_loopback(s, port).and_then(|()| sys::read(s, &mut byte));
        let closed = sys::close(s);
        match result? {
            0 => {}
            _ => return Err(Fail::msg("the tcp_connect server sent data")),
        }
        closed?;
        Ok(1)
    }))
}

/// udp_rr's farewell: an empty datagram tells the partner to end.
fn udp_farewell(pair: &Pair) {
    let _ = sys::send(pair.fds[0], &[]);
}

/// udp_rr: one operation = a 64-byte datagram from the worker's socket to
/// its partner's and a 64-byte datagram back (two UDP sockets on
/// 127.0.0.1, each `connect`ed to the other).
pub fn udp_rr(ctx: &Ctx, w: usize) -> Res<Op> {
    let client = sys::socket_inet(libc::SOCK_DGRAM, 0)?;
    let server = match sys::socket_inet(libc::SOCK_DGRAM, 0) {
        Ok(s) => s,
        Err(f) => {
            let _ = sys::close(client);
            return Err(f);
        }
    };
    let made = (|| {
        let client_port = sys::bind_loopback_ephemeral(client)?;
        let server_port = sys::bind_loopback_ephemeral(server)?;
        sys::connect_loopback(client, server_port)?;
        sys::connect_loopback(server, client_port)?;
        // A safety net only: a system without SO_RCVTIMEO still runs the
        // workload (a lost datagram would then stall it until killed).
        match sys::set_receive_timeout(client, UDP_RESPONSE_LIMIT_MS) {
            Err(f) if f.errno == libc::ENOPROTOOPT || f.errno == libc::EINVAL => Ok(()),
            other => other,
        }
    })()
    .and_then(|()| {
        spawn_partner(ctx, w, "udp_rr", &[client], &[server], move || {
            let mut buf = [0u8; MESSAGE_BYTES];
            loop {
                match sys::read(server, &mut buf)? {
                    0 => return Ok(()),
                    n => {
                        if sys::write(server, &buf[..n])? != n {
                            return Err(Fail::msg("a short UDP write"));
                        }
                    }
                }
            }
        })
    });
    let pair = Pair::start(made, client, server, Some(udp_farewell))?;
    let request = [w as u8; MESSAGE_BYTES];
    let mut response = [0u8; MESSAGE_BYTES];
    Ok(Box::new(move || {
        let fd = pair.fds[0];
        if sys::write(fd, &request)? != MESSAGE_BYTES {
            return Err(Fail::msg("a short UDP write"));
        }
        match sys::read(fd, &mut response) {
            Ok(MESSAGE_BYTES) => Ok(1),
            Ok(n) => Err(Fail::msg(format!(
                "a UDP response of {n} bytes instead of {MESSAGE_BYTES}"
            ))),
            Err(f) if f.errno == libc::EAGAIN => Err(Fail::msg(format!(
                "no UDP response within {UDP_RESPONSE_LIMIT_MS} ms (a datagram was lost)"
            ))),
            Err(f) => Err(f),
        }
    }))
}
