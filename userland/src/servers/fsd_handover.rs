//! fsd's side of server replacement (docs/SERVERS.md "Replacing the file
//! server"), included by `bin/fsd.rs`: the running instance sends its
//! state image to its successor over the hand-over endpoint the kernel
//! gave both; the successor receives it, rebuilds the server and then
//! serves the same service endpoint (callers that arrived meanwhile are
//! queued there and are served by it).
//!
//! Owns the transfer: first the pre-copy of file data (`LABEL_DATA`,
//! sent by a thread of the old instance while it goes on serving) and
//! the base image (`LABEL_CHUNK`s, then `LABEL_STAGE`: the successor
//! builds the namespace before the switch), then, with the service
//! paused, the delta image (what changed since the base, and the handle
//! table) in pieces of at
//! most `handover::CHUNK` bytes (`LABEL_CHUNK`), then `LABEL_COMMIT`, which the successor answers only
//! once it is ready to serve (0) or failed (an errno: the old instance
//! keeps serving, nothing is lost).
//!
//! Must not: serve anything but the transfer on the hand-over endpoint,
//! or return to the service endpoint after a successful hand-over (the
//! old instance answers the kernel and exits).

use fs::Fs;
use fsd::handover::{Sent, Staged};
use fsd::{handover, Config, FileServer};
use userland::ipc;

/// The pre-copy (on a thread of its own, while the server serves): every
/// file's data to the successor, then the base image (tree, metadata, the
/// data the pre-copy missed), which the successor builds before the
/// switch.  Returns what the successor has, (files, bytes, ns, base image
/// bytes).
pub fn precopy(server: &FileServer, to: u64) -> Result<(Sent, Staged, [u64; 4]), i32> {
    let t0 = std::time::Instant::now();
    let mut bytes = 0u64;
    let sent = handover::precopy(server, |ino, version, off, total, data| {
        let r = ipc::call(
            to,
            handover::LABEL_DATA,
            [ino, version, off, total],
            data,
            &mut [],
        )
        .map_err(abi::Errno)?;
        if r.label != 0 {
            return Err(abi::Errno(r.label as i32));
        }
        bytes += data.len() as u64;
        Ok(())
    })
    .map_err(|e| e.0)?;
    let staged = handover::export_base(server, &sent)
        .map_err(|e| e.0)
        .and_then(|(image, mut staged)| {
            send_image(to, &image, handover::LABEL_STAGE)?;
            // Rounds of what changed meanwhile, while serving on, until
            // one is small: the switch then sends only the last round's.
            for _ in 0..ROUNDS {
                let round = handover::export_round(server, &sent, &mut staged).map_err(|e| e.0)?;
                send_image(to, &round, handover::LABEL_STAGE)?;
                if round.len() <= SMALL_ROUND {
                    break;
                }
            }
            Ok((image.len() as u64, staged))
        });
    let (base_bytes, staged) = match staged {
        Ok(x) => x,
        Err(e) => {
            // No switch follows: the change log must not grow on.
            let _ = server.fs().take_changes(true);
            return Err(e);
        }
    };
    let n = sent.len() as u64;
    Ok((
        sent,
        staged,
        [n, bytes, t0.elapsed().as_nanos() as u64, base_bytes],
    ))
}

/// Rounds before the switch at most, and the delta size (bytes) after
/// which no further round is worth it.
const ROUNDS: usize = 3;
const SMALL_ROUND: usize = 4096;

/// `image` in pieces, then `last` (`LABEL_STAGE` or `LABEL_COMMIT`);
/// returns the successor's answer's words.
fn send_image(to: u64, image: &[u8], last: u64) -> Result<[u64; 4], i32> {
    let total = image.len() as u64;
    let mut off = 0;
    while off < image.len() {
        let end = (off + handover::CHUNK).min(image.len());
        let r = ipc::call(
            to,
            handover::LABEL_CHUNK,
            [off as u64, total, 0, 0],
            &image[off..end],
            &mut [],
        )?;
        if r.label != 0 {
            return Err(r.label as i32);
        }
        off = end;
    }
    let r = ipc::call(to, last, [total, 0, 0, 0], &[], &mut [])?;
    if r.label != 0 {
        return Err(r.label as i32);
    }
    Ok(r.words)
}

/// Sends what changed since the base image (`staged`; without one, the
/// whole image) through `to` (the old instance's handle of the
/// successor's hand-over endpoint).  Returns (image bytes, ns the export
/// took, ns the successor's rebuild took) once the successor is ready; an
/// errno if it is not.  The fourth value: when the successor was ready
/// to serve (`CLOCK_MONOTONIC` ns, the kernel's clock).
pub fn send(
    server: &FileServer,
    to: u64,
    sent: &Sent,
    staged: Option<&Staged>,
) -> Result<(u64, u64, u64, u64), i32> {
    let t0 = std::time::Instant::now();
    let image = match staged {
        Some(st) => handover::export_delta(server, sent, st),
        None => handover::export(server, sent),
    }
    .map_err(|e| e.0)?;
    let export_ns = t0.elapsed().as_nanos() as u64;
    let words = send_image(to, &image, handover::LABEL_COMMIT)?;
    let _ = ipc::close(to);
    Ok((image.len() as u64, export_ns, words[0], words[1]))
}

/// The successor: receives the image on `from` and rebuilds the server on
/// `fs` (fresh: nothing but its root).  Exits the program on any failure
/// (the old instance then keeps serving).
pub fn receive(from: u64, fs: Fs, config: Config) -> FileServer {
    let mut buf = vec![0u8; handover::CHUNK];
    let mut image: Vec<u8> = Vec::new();
    let mut rx = handover::Receiver::new(fs);
    loop {
        let m = match ipc::recv(from, &mut buf) {
            Ok(m) => m,
            Err(e) if e == libc::EINTR => continue,
            Err(e) => fail(&format!("receive: errno {e}")),
        };
        match m.label {
            handover::LABEL_DATA => {
                let w = m.words;
                let label = match rx.data(w[0], w[1], w[2], w[3], &buf[..m.len.min(buf.len())]) {
                    Ok(()) => 0,
                    Err(e) => e.0 as u64,
                };
                let _ = ipc::reply(m.token, label, [0; 4], &[]);
                if label != 0 {
                    fail(&format!("pre-copied data: errno {label}"));
                }
            }
            handover::LABEL_CHUNK if m.words[0] == image.len() as u64 => {
                if image.is_empty() {
                    image.reserve(m.words[1] as usize);
                }
                image.extend_from_slice(&buf[..m.len.min(buf.len())]);
                let _ = ipc::reply(m.token, 0, [0; 4], &[]);
            }
            handover::LABEL_STAGE if m.words[0] == image.len() as u64 => {
                let t0 = std::time::Instant::now();
                let dev = rx.fs().dev();
                let staged = match handover::image_dev(&image) {
                    Ok(d) if d == dev => rx.stage(&image),
                    Ok(_) => Err(abi::Errno::EXDEV),
                    Err(e) => Err(e),
                };
                image.clear();
                let label = staged.err().map_or(0, |e| e.0 as u64);
                let ns = t0.elapsed().as_nanos() as u64;
                let _ = ipc::reply(m.token, label, [ns, 0, 0, 0], &[]);
                if label != 0 {
                    fail(&format!("staging the base image: errno {label}"));
                }
            }
            handover::LABEL_COMMIT if m.words[0] == image.len() as u64 => {
                let t0 = std::time::Instant::now();
                let dev = rx.fs().dev();
                let built = match handover::image_dev(&image) {
                    Ok(d) if d == dev => rx.finish(&image, config),
                    Ok(_) => Err(abi::Errno::EXDEV),
                    Err(e) => Err(e),
                };
                match built {
                    Ok(server) => {
                        // Ready: the old instance may go; queued calls are
                        // served from the next receive on.
                        let ns = t0.elapsed().as_nanos() as u64;
                        let _ = ipc::reply(m.token, 0, [ns, mono_ns(), 0, 0], &[]);
                        let _ = ipc::close(from);
                        return server;
                    }
                    Err(e) => {
                        let _ = ipc::reply(m.token, e.0 as u64, [0; 4], &[]);
                        fail(&format!("rebuild: errno {}", e.0));
                    }
                }
            }
            _ => {
                let _ = ipc::reply(m.token, libc::EINVAL as u64, [0; 4], &[]);
                fail("unexpected message");
            }
        }
    }
}

/// `CLOCK_MONOTONIC` in ns (the kernel's clock: it times the switch in it).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn fail(what: &str) -> ! {
    eprintln!("fsd: hand-over: {what}");
    std::process::exit(1);
}
