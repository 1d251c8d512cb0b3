//! The server side of the request slots that `servers.placement=dedicated`
//! gives an OS server (fsd, netd): the kernel maps the slot region into the
//! server before it starts (`ring=ADDR,SLOTS` in its argv) and puts callers'
//! requests there instead of sending them to the endpoint.
//!
//! Owns: attaching the region, the two notifications published in its
//! header (or, in a successor, the predecessor's, `ringadopt=`), the one
//! thread that serves it, and that thread's polling policy (spin, yield
//! now and then, then sleep on the wake notification; only while the
//! region's owner word is this instance's token, `ring=ADDR,SLOTS,TOKEN`).
//!
//! Must not: decode or answer requests itself (the server's `handle` does),
//! or return to the server when the region cannot be attached (a server the
//! kernel gave slots to cannot serve its callers without them: it exits).

use fsproto::{Message, MsgRef};

use crate::{ipc, placement};

/// How many empty scans of the request slots before the thread sleeps;
/// it yields the CPU every `RING_YIELD` scans, so a thread of the server or
/// a caller on the same CPU (which sleeps at once) is not kept waiting by
/// the polling.
const RING_SPIN: usize = 2000;
const RING_YIELD: usize = 64;

/// The request slots the kernel gave this instance: `ring=ADDR,SLOTS,TOKEN`
/// (address in hex; `TOKEN`: the instance's owner token, `ring` crate)
/// and, for a successor taking over its predecessor's slots,
/// `ringadopt=WAKE,DONE` (its handles of the predecessor's two
/// notifications, which the kernel put into its table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotArgs {
    pub addr: usize,
    pub count: usize,
    pub token: u32,
    pub adopt: Option<(u64, u64)>,
}

/// The `ring=` and `ringadopt=` arguments among `args`: `Ok(None)` when
/// there are none, `Err` naming a malformed one.
pub fn parse_args(args: &[String]) -> Result<Option<SlotArgs>, String> {
    let mut slots = None;
    let mut adopt = None;
    for arg in args {
        if let Some(v) = arg.strip_prefix("ring=") {
            let parts: Vec<&str> = v.split(',').collect();
            let parsed = match parts[..] {
                [a, n, t] => (|| {
                    Some(SlotArgs {
                        addr: usize::from_str_radix(a.trim_start_matches("0x"), 16).ok()?,
                        count: n.parse().ok()?,
                        token: t.parse().ok().filter(|&t| t != 0)?,
                        adopt: None,
                    })
                })(),
                _ => None,
            };
            slots = Some(parsed.ok_or_else(|| format!("bad argument {arg}"))?);
        } else if let Some(v) = arg.strip_prefix("ringadopt=") {
            adopt = Some(
                v.split_once(',')
                    .and_then(|(w, d)| Some((w.parse().ok()?, d.parse().ok()?)))
                    .ok_or_else(|| format!("bad argument {arg}"))?,
            );
        }
    }
    Ok(slots.map(|s| SlotArgs { adopt, ..s }))
}

/// Attaches the slots `slots` names and starts the thread `name` that
/// serves them, pinned to `cpu`.  A fresh instance makes the two
/// notifications and publishes them in the header (call this before the
/// service is registered: the kernel reads them then); a successor uses
/// the predecessor's (`adopt`) and leaves the header alone.  The thread
/// runs `on_start` first, then answers every request with `handle` while
/// the slots' owner is its token (the kernel hands the slots from an
/// instance to its successor by the owner word; meanwhile it only looks).
/// `server` names the program in error messages.
pub fn start(
    server: &'static str,
    name: &str,
    cpu: Option<usize>,
    slots: SlotArgs,
    on_start: impl FnOnce() + Send + 'static,
    handle: impl FnMut(MsgRef<'_>) -> Message + Send + 'static,
) {
    let fail = |what: &str| -> ! {
        eprintln!("{server}: request slots: {what}");
        std::process::exit(1);
    };
    let SlotArgs {
        addr,
        count,
        token,
        adopt,
    } = slots;
    if addr % 4096 != 0 || count == 0 || count > ring::MAX_SLOTS {
        fail("bad address or count");
    }
    // SAFETY: the kernel mapped `region_bytes(count)` read-write bytes at
    // `addr` (page aligned, checked above) before the program started,
    // nothing in the program maps over them, and the kernel touches them
    // only by the slot protocol.
    let mem = unsafe { ring::RawMem::new(addr as *mut u8, ring::region_bytes(count)) };
    let Some(slots) = ring::Ring::new(mem, count) else {
        fail("bad count")
    };
    let (wake, done) = match adopt {
        Some(handles) => handles,
        None => {
            let (Ok(wake), Ok(done)) = (ipc::notification_create(), ipc::notification_create())
            else {
                fail("no notifications")
            };
            slots.server_init(wake, done);
            (wake, done)
        }
    };
    // The thread's bookkeeping and its buffer are this instance's, not a
    // netd state arena's (`netd_arena::private`; a no-op for fsd).
    let spawned = crate::netd_arena::private(|| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = placement::pin(cpu) {
                        eprintln!("{server}: cannot pin the slot thread to cpu {cpu}: errno {e}");
                    }
                }
                on_start();
                serve(server, &slots, token, wake, done, handle)
            })
    });
    if spawned.is_err() {
        fail("cannot start the thread");
    }
}

/// Serves the slots: polls them (`RING_SPIN` empty scans, yielding now
/// and then), then sleeps on `wake` until the kernel fills one; answers
/// each with `handle` and notifies `done` when the caller sleeps.
fn serve(
    server: &str,
    slots: &ring::Ring<ring::RawMem>,
    token: u32,
    wake: u64,
    done: u64,
    mut handle: impl FnMut(MsgRef<'_>) -> Message,
) -> ! {
    let mut buf = crate::netd_arena::private(|| vec![0u8; ring::PAYLOAD_MAX]);
    let mut next = 0;
    loop {
        if slots.owner() != token {
            // Not (or no longer, or not yet) the serving instance: a
            // replacement is under way.  Look again now and then; the
            // notification is the owner's.
            std::thread::sleep(std::time::Duration::from_micros(500));
            continue;
        }
        let Some(i) = (0..RING_SPIN).find_map(|k| {
            let got = slots.next_request_as(next, token);
            if got.is_none() {
                if k % RING_YIELD == RING_YIELD - 1 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            got
        }) else {
            if slots.owner() == token && !slots.prepare_sleep_as(token) {
                // EINTR: look again.  The kernel raises it also when it
                // takes the slots away (owner word).
                let _ = ipc::wait(wake, 0);
            }
            slots.awake_as(token);
            continue;
        };
        next = i + 1;
        let reply = match slots.request(i, &mut buf) {
            Some(h) => handle(MsgRef {
                label: h.label,
                words: h.words,
                payload: &buf[..h.len.min(buf.len())],
            }),
            None => Message::error(abi::Errno::EINVAL),
        };
        let head = ring::Head {
            label: reply.label,
            words: reply.words,
            len: reply.payload.len(),
        };
        if slots.complete(i, head, &reply.payload) {
            if let Err(e) = ipc::notify(done, 1 << i) {
                eprintln!("{server}: ipc_notify of a done slot failed: errno {e}");
            }
        }
    }
}
