//! `connprobe`: latency of `tcp_connect`'s operation (socket, connect to a
//! shared listener on 127.0.0.1, read until EOF, close) with one accept
//! thread per CPU, as the workload runs it; prints the slowest operations
//! and which step was slow.  Usage: `connprobe [ops=N] [workers=W]
//! [mode=pipe]`; `mode=pipe` times the same wakeup pattern without the
//! network (a byte to a partner thread over a pipe and one back), as the
//! control that tells network delays from scheduling ones.
//! A diagnostic for the connect stall of `wis tcp_connect`; it must not
//! be used as a benchmark (it times each step).

use std::time::Instant;
use userland::say;

fn check(r: i32, what: &str) -> i32 {
    if r < 0 {
        say(&format!(
            "connprobe: {what}: {}  <-- WRONG",
            userland::errno_name(userland::errno())
        ));
        std::process::exit(1);
    }
    r
}

fn addr(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    }
}

fn main() {
    let mut ops = 2000usize;
    let mut workers = 2usize;
    let mut pipe_mode = false;
    let mut nb = false;
    for a in userland::args() {
        if let Some(v) = a.strip_prefix("ops=") {
            ops = v.parse().unwrap_or(ops);
        } else if a == "mode=nb" {
            nb = true;
        } else if a == "mode=pipe" {
            pipe_mode = true;
        } else if let Some(v) = a.strip_prefix("workers=") {
            workers = v.parse().unwrap_or(workers);
        }
    }
    // SAFETY: plain socket calls with valid arguments throughout.
    let (listener, port) = unsafe {
        let l = check(
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
            "socket",
        );
        let one = 1i32;
        libc::setsockopt(
            l,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const i32 as *const _,
            4,
        );
        let a = addr(0);
        check(
            libc::bind(l, &a as *const _ as *const libc::sockaddr, 16),
            "bind",
        );
        check(libc::listen(l, 128), "listen");
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut len = 16u32;
        libc::getsockname(l, &mut got as *mut _ as *mut libc::sockaddr, &mut len);
        (l, u16::from_be(got.sin_port))
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut partners = Vec::new();
    for _ in 0..workers {
        let stop = stop.clone();
        partners.push(std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = libc::pollfd {
                    fd: listener,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 50) };
                // SAFETY: accept on our listener.
                let c =
                    unsafe { libc::accept(listener, std::ptr::null_mut(), std::ptr::null_mut()) };
                if c >= 0 {
                    // SAFETY: our descriptor.
                    unsafe { libc::close(c) };
                }
            }
        }));
    }
    let mut clients = Vec::new();
    for w in 0..workers {
        // The pipe control: to the partner and back.
        let (mut to, mut back) = ([0i32; 2], [0i32; 2]);
        // SAFETY: two fresh pipes.
        unsafe {
            check(libc::pipe(to.as_mut_ptr()), "pipe");
            check(libc::pipe(back.as_mut_ptr()), "pipe");
        }
        if pipe_mode {
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                // SAFETY: our pipes.
                while unsafe { libc::read(to[0], b.as_mut_ptr() as *mut _, 1) } == 1 {
                    // SAFETY: our pipe, a one-byte buffer.
                    unsafe { libc::write(back[1], b.as_ptr() as *const _, 1) };
                }
            });
        }
        clients.push(std::thread::spawn(move || {
            let mut cpu = [0u64; 16];
            cpu[0] = 1 << w;
            // SAFETY: pin this thread.
            unsafe { libc::sched_setaffinity(0, 128, cpu.as_ptr() as *const libc::cpu_set_t) };
            let mut slow: Vec<(u128, u128, u128)> = Vec::new();
            let mut in_progress = 0usize;
            for _ in 0..ops {
                let t0 = Instant::now();
                if pipe_mode {
                    let mut b = [0u8; 1];
                    // SAFETY: our pipes.
                    unsafe {
                        libc::write(to[1], b.as_ptr() as *const _, 1);
                        let t1 = Instant::now();
                        libc::read(back[0], b.as_mut_ptr() as *mut _, 1);
                        let total = t0.elapsed().as_micros();
                        slow.push((total, (t1 - t0).as_micros(), total));
                    }
                    continue;
                }
                // SAFETY: plain socket calls on our own descriptors and
                // buffers.
                unsafe {
                    let s = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
                    let a = addr(port);
                    if nb {
                        // Non-blocking connect: did the handshake finish
                        // within the call?
                        libc::fcntl(s, libc::F_SETFL, libc::O_NONBLOCK);
                        let r = libc::connect(s, &a as *const _ as *const libc::sockaddr, 16);
                        if r != 0 {
                            in_progress += 1;
                            let mut p = libc::pollfd {
                                fd: s,
                                events: libc::POLLOUT,
                                revents: 0,
                            };
                            libc::poll(&mut p, 1, -1);
                        }
                        libc::fcntl(s, libc::F_SETFL, 0);
                    } else {
                        check(
                            libc::connect(s, &a as *const _ as *const libc::sockaddr, 16),
                            "connect",
                        );
                    }
                    let t1 = Instant::now();
                    let mut b = [0u8; 1];
                    check(libc::read(s, b.as_mut_ptr() as *mut _, 1) as i32, "read");
                    let t2 = Instant::now();
                    libc::close(s);
                    let c = (t1 - t0).as_micros();
                    let r = (t2 - t1).as_micros();
                    let total = t0.elapsed().as_micros();
                    slow.push((total, c, r));
                }
            }
            slow.sort();
            if nb {
                say(&format!(
                    "connprobe: worker {w}: {in_progress} connects in progress after the call"
                ));
            }
            slow
        }));
    }
    for (w, c) in clients.into_iter().enumerate() {
        let v = c.join().unwrap();
        let n = v.len();
        let med = v[n / 2].0;
        let worst: Vec<String> = v
            .iter()
            .rev()
            .take(5)
            .map(|(t, c, r)| format!("{t}us(connect {c} read {r})"))
            .collect();
        let over = |us: u128| v.iter().filter(|o| o.0 > us).count();
        say(&format!(
            "connprobe: worker {w}: {n} ops, median {med}us, over 10ms {}, over 50ms {}, worst {}",
            over(10_000),
            over(50_000),
            worst.join(" ")
        ));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in partners {
        let _ = p.join();
    }
    say("connprobe: pass");
}
