//! TCP between the guest and this machine's own Linux stack, both ways: a
//! host client talks to an echo server in the guest (`net_echo serve`), and
//! a client in the guest (`net_echo call`) talks to an echo server on the
//! host.  Over QEMU user-mode networking (`hostfwd` for host→guest,
//! `guestfwd` for guest→host, always with `restrict=on`), and, when this
//! machine allows it (root, /dev/net/tun), over a tap device in a network
//! namespace the test creates and deletes, with the host side running in a
//! thread that entered that namespace; over the tap, the host also throws
//! thousands of malformed frames at the guest (raw AF_PACKET) before the
//! echo, which must then still work, and pings the guest's stack (raw ICMP
//! socket).  No packet leaves this machine.

use comparison::qemu::Nic;
use comparison::run::{Echo, RunRequest, RunResult, System};
use integration_tests::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ROUNDS: usize = 20;
const GUEST_PORT: u16 = 7;

/// Runs `net_echo ARGS` as PID 1 of our kernel on 2 vCPUs with `nic`.
fn run_guest(nic: Nic, cmdline: &str, args: &[&str]) -> RunResult {
    let mut vm = vm(2, 120);
    vm.nic = Some(nic);
    let request = RunRequest {
        system: System::Ours,
        program: program("net_echo"),
        files: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        locks: LockMode::PerCpu,
        extra_cmdline: cmdline.to_string(),
        vm,
        echo: Echo::Quiet,
    };
    comparison::run::run(ours(), &request).expect("running the program")
}

/// Client side, retrying until the guest listens (at most 90 s).
fn host_client(addr: SocketAddr) -> JoinHandle<Result<usize, String>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            match echo_session(addr, ROUNDS) {
                Ok(total) => return Ok(total),
                Err((true, why)) if start.elapsed() < Duration::from_secs(90) => {
                    let _ = why;
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err((_, why)) => return Err(why),
            }
        }
    })
}

/// Server side: serves one connection, echoing until the peer stops
/// sending, and returns the bytes echoed.
fn host_server(listener: TcpListener) -> JoinHandle<Result<usize, String>> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let expected: usize = (0..ROUNDS).map(|r| echo_message(r).len()).sum();
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < expected {
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            stream
                .write_all(&buf[..n])
                .map_err(|e| format!("write: {e}"))?;
            total += n;
        }
        Ok(total)
    })
}

fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn expected_bytes() -> usize {
    (0..ROUNDS).map(|r| echo_message(r).len()).sum()
}

/// The guest exited 0 and the host side moved every byte of the session.
fn expect_echoed(result: &RunResult, host: &Result<usize, String>, who: &str) {
    check_run(
        result,
        host.as_ref().is_ok_and(|&n| n == expected_bytes()),
        &format!("{who}: {host:?}"),
    );
    expect_exit(result, 0);
}

#[test]
fn host_client_to_guest_echo_server_over_user_networking() {
    let host_port = free_local_port();
    let client = host_client(SocketAddr::from(([127, 0, 0, 1], host_port)));
    let result = run_guest(
        Nic::User {
            hostfwd: vec![(host_port, GUEST_PORT)],
            guestfwd: Vec::new(),
        },
        "",
        &["serve", &GUEST_PORT.to_string(), "1"],
    );
    let client = client.join().expect("client thread");
    expect_echoed(&result, &client, "host client");
    check_run(
        &result,
        result
            .output
            .contains(&format!("net_echo: served 0 bytes={}", expected_bytes())),
        "expected the guest's `served` line",
    );
}

#[test]
fn guest_client_to_host_echo_server_over_user_networking() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("host listener");
    let host_port = listener.local_addr().unwrap().port();
    let server = host_server(listener);
    let result = run_guest(
        Nic::User {
            hostfwd: Vec::new(),
            guestfwd: vec![(GUEST_PORT, host_port)],
        },
        "",
        &[
            "call",
            "10.0.2.100",
            &GUEST_PORT.to_string(),
            &ROUNDS.to_string(),
        ],
    );
    let server = server.join().expect("server thread");
    expect_echoed(&result, &server, "host server");
    check_run(
        &result,
        result.output.contains(&format!(
            "net_echo: call ok rounds={ROUNDS} bytes={}",
            expected_bytes()
        )),
        "expected the guest's `call ok` line",
    );
}

/// Moves the calling thread into network namespace `name` (setns affects
/// only this thread).
fn enter_netns(name: &str) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{name}"))
        .map_err(|e| format!("open /run/netns/{name}: {e}"))?;
    // SAFETY: setns only reads the descriptor and changes this thread's
    // namespace; the file stays open across the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A namespace with a tap at 10.0.3.1/24, or `None` after `skip_or_fail`.
fn tap_namespace(tag: &str) -> Option<(Namespace, String)> {
    let name = format!("pck{tag}{}", std::process::id());
    let tap = format!("{tag}tap0");
    tap_namespace_or_skip(&name, &tap, 1).map(|ns| (ns, tap))
}

fn tap_nic(ns: &Namespace, tap: &str) -> Nic {
    Nic::Tap {
        ifname: tap.to_string(),
        queues: 1,
        netns: Some(ns.name.clone()),
    }
}

#[test]
fn host_client_to_guest_echo_server_over_tap() {
    let Some((ns, tap)) = tap_namespace("hc") else {
        return;
    };
    let ns_name = ns.name.clone();
    let client = std::thread::spawn(move || {
        enter_netns(&ns_name)?;
        host_client(SocketAddr::from(([10, 0, 3, 2], GUEST_PORT)))
            .join()
            .expect("client thread")
    });
    let result = run_guest(
        tap_nic(&ns, &tap),
        "net=10.0.3.2/24",
        &["serve", &GUEST_PORT.to_string(), "1"],
    );
    let client = client.join().expect("client thread");
    expect_echoed(&result, &client, "host client in the namespace");
    drop(ns);
}

#[test]
fn guest_client_to_host_echo_server_over_tap() {
    let Some((ns, tap)) = tap_namespace("gc") else {
        return;
    };
    let ns_name = ns.name.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || -> Result<usize, String> {
        enter_netns(&ns_name)?;
        let listener = TcpListener::bind("10.0.3.1:7007").map_err(|e| format!("bind: {e}"))?;
        let _ = ready_tx.send(());
        host_server(listener).join().expect("server thread")
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(10));
    let result = run_guest(
        tap_nic(&ns, &tap),
        "net=10.0.3.2/24",
        &["call", "10.0.3.1", "7007", &ROUNDS.to_string()],
    );
    let server = server.join().expect("server thread");
    expect_echoed(&result, &server, "host server in the namespace");
    drop(ns);
}

/// A small deterministic generator for the garbage frames.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Malformed frames for the guest at 10.0.3.2, all sent to the broadcast
/// MAC so that the guest's stack looks at them: random bytes, IPv4 headers
/// with random version/IHL/lengths, TCP and UDP to the echo port with
/// random headers and checksums, truncated and odd ARP.
fn garbage_frames(count: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut frames = Vec::new();
    for i in 0..count {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
        match i % 5 {
            0 => {
                let len = 2 + (rng.next() % 1498) as usize;
                f.extend(rng.bytes(len));
            }
            1..=3 => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut ip = rng.bytes(20);
                ip[0] = if i % 5 == 1 { rng.next() as u8 } else { 0x45 };
                if i % 5 != 1 {
                    // A plausible total length half the time.
                    if rng.next().is_multiple_of(2) {
                        let total = 20 + 20 + (rng.next() % 200) as u16;
                        ip[2..4].copy_from_slice(&total.to_be_bytes());
                    }
                    ip[9] = if i % 5 == 2 { 6 } else { 17 };
                }
                ip[12..16].copy_from_slice(&[10, 0, 3, 1]);
                ip[16..20].copy_from_slice(&[10, 0, 3, 2]);
                f.extend(ip);
                let l4_len = (rng.next() % 220) as usize;
                let mut l4 = rng.bytes(l4_len);
                if l4.len() >= 4 && rng.next().is_multiple_of(2) {
                    l4[2..4].copy_from_slice(&GUEST_PORT.to_be_bytes());
                }
                f.extend(l4);
            }
            _ => {
                f.extend_from_slice(&[0x08, 0x06]);
                let len = (rng.next() % 40) as usize;
                f.extend(rng.bytes(len));
            }
        }
        frames.push(f);
    }
    frames
}

/// Sends `frames` out of `ifname` through a raw AF_PACKET socket (this
/// thread must be in the interface's namespace).  Returns how many went.
fn send_raw_frames(ifname: &str, frames: &[Vec<u8>]) -> Result<usize, String> {
    let name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls on a socket this function owns, with
    // buffers that outlive each call.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(format!("if_nametoindex({ifname}) failed"));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto);
        if fd < 0 {
            return Err(format!(
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto as u16;
        addr.sll_ifindex = index as i32;
        let mut sent = 0;
        for frame in frames {
            let n = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if n > 0 {
                sent += 1;
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}

#[test]
fn malformed_frames_then_echo_over_tap() {
    let Some((ns, tap)) = tap_namespace("mf") else {
        return;
    };
    let ns_name = ns.name.clone();
    let tap_name = tap.clone();
    let host = std::thread::spawn(move || -> Result<(usize, usize), String> {
        enter_netns(&ns_name)?;
        // The guest answers ARP once it is up: wait for that by connecting
        // (refused or not), then throw the garbage, then the real echo.
        let start = Instant::now();
        while TcpStream::connect_timeout(
            &SocketAddr::from(([10, 0, 3, 2], 9)),
            Duration::from_secs(2),
        )
        .is_err_and(|e| e.kind() != std::io::ErrorKind::ConnectionRefused)
        {
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the guest never answered".into());
            }
        }
        let sent = send_raw_frames(&tap_name, &garbage_frames(5000))?;
        let echoed = host_client(SocketAddr::from(([10, 0, 3, 2], GUEST_PORT)))
            .join()
            .expect("client thread")?;
        Ok((sent, echoed))
    });
    let result = run_guest(
        tap_nic(&ns, &tap),
        "net=10.0.3.2/24",
        &["serve", &GUEST_PORT.to_string(), "1"],
    );
    let host = host.join().expect("host thread");
    check_run(
        &result,
        host.as_ref()
            .is_ok_and(|&(sent, echoed)| sent > 4000 && echoed == expected_bytes()),
        &format!("host side (frames sent, bytes echoed): {host:?}"),
    );
    expect_exit(&result, 0);
    drop(ns);
}

/// The Internet checksum of `data`.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends ICMP echo requests to `dst` (raw socket; this thread must be in
/// the right namespace) until one is answered or `timeout` passes.
/// Returns the sequence number that was answered.
fn icmp_echo(dst: [u8; 4], timeout: Duration) -> Result<u16, String> {
    const ID: u16 = 0x5a5a;
    // SAFETY: plain libc calls on a socket this function owns, with
    // buffers that outlive each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Err(format!(
                "raw ICMP socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 500_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let mut to: libc::sockaddr_in = std::mem::zeroed();
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes(dst);
        let start = Instant::now();
        let mut seq: u16 = 0;
        let result = loop {
            if start.elapsed() > timeout {
                break Err(format!("no ICMP echo reply from {dst:?}"));
            }
            seq += 1;
            let mut req = vec![8u8, 0, 0, 0];
            req.extend_from_slice(&ID.to_be_bytes());
            req.extend_from_slice(&seq.to_be_bytes());
            req.extend_from_slice(b"percpu-kernel ping payload");
            let sum = inet_checksum(&req);
            req[2..4].copy_from_slice(&sum.to_be_bytes());
            libc::sendto(
                fd,
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            let mut buf = [0u8; 1500];
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 28 {
                continue;
            }
            // The raw socket gives the IP header first.
            let ihl = ((buf[0] & 0x0f) as usize) * 4;
            let icmp = &buf[ihl..n as usize];
            if buf[12..16] == dst
                && icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == ID.to_be_bytes()
                && icmp[8..] == req[8..]
            {
                break Ok(u16::from_be_bytes([icmp[6], icmp[7]]));
            }
        };
        libc::close(fd);
        result
    }
}

/// The guest's stack answers ping on its NIC address (ICMP echo by the
/// stack itself, not the frame-level self-test).
#[test]
fn guest_answers_ping_over_tap() {
    let Some((ns, tap)) = tap_namespace("pg") else {
        return;
    };
    let ns_name = ns.name.clone();
    let host = std::thread::spawn(move || -> Result<u16, String> {
        enter_netns(&ns_name)?;
        let seq = icmp_echo([10, 0, 3, 2], Duration::from_secs(90))?;
        // The guest's echo server is waiting for one connection: give it
        // one, so it exits.
        host_client(SocketAddr::from(([10, 0, 3, 2], GUEST_PORT)))
            .join()
            .expect("client thread")?;
        Ok(seq)
    });
    let result = run_guest(
        tap_nic(&ns, &tap),
        "net=10.0.3.2/24",
        &["serve", &GUEST_PORT.to_string(), "1"],
    );
    let host = host.join().expect("host thread");
    check_run(
        &result,
        host.is_ok(),
        &format!("ping from the host: {host:?}"),
    );
    expect_exit(&result, 0);
    drop(ns);
}
