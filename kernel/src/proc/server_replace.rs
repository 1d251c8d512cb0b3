//! Replacing the running file server without stopping the service
//! (`structure=servers`; docs/SERVERS.md "Replacing the file server").
//!
//! The kernel starts a successor instance (the archive's `/.servers/fsd`,
//! or a program read through the running server: an upgraded binary),
//! gives it a fresh hand-over endpoint and the *same* service endpoint
//! (both with the receive right, inserted before its first instruction,
//! so their numbers are known: a fresh table's first two slots), gives
//! the running instance the send right to the hand-over endpoint, and
//! sends it two control requests on the service endpoint: `LABEL_PRECOPY`
//! (a thread of the old instance sends every file's data, then a base
//! image of the tree and metadata, which the successor builds, while the
//! old instance serves on), then `LABEL_HANDOVER`.
//! The running instance finishes what it took, stops receiving, sends
//! what changed since the base (and its handle table) to the successor
//! and answers once the successor said it is ready; then it exits.  Calls that arrive meanwhile queue on the service
//! endpoint (the successor holds a receive right all along, so nothing
//! fails them) and are served by the successor.  If anything fails the
//! successor is killed and the old instance goes on serving.
//!
//! Owns: the one-at-a-time rule (`REPLACING`), the successor's argv
//! (`handover=FROM,SERVICE`), the timing of the switch, and the
//! `replace=fs@SECONDS` (and `net@SECONDS`, `net_server`) boot option's
//! kernel thread (`comparison run --replace`).
//!
//! Placements: with several serving threads (`percore`) the kernel parks
//! all but one before the hand-over (`LABEL_PARK`: they wait at a gate in
//! the old instance, holding nothing); with request slots (`dedicated`)
//! it takes the slots from the old instance (their owner word) and gives
//! them, the same memory and notifications, to the successor, which runs
//! with the same placement.  Callers meanwhile wait on the endpoint or in
//! their slots; none fails.
//!
//! Must not: replace while a server file is mapped (`EBUSY`: mappings
//! hold the old instance's pinned pages), or hold a lock across the call.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::files::Program;
use super::process::{find_process, Pid};
use crate::ipc::{Endpoint, EndpointRef, Object};
use abi::ipc::{RIGHT_RECV, RIGHT_SEND, SERVICE_FS};
use abi::Errno;

/// The control labels (`fsd::handover::LABEL_HANDOVER`, `LABEL_PRECOPY`;
/// the kernel does not link fsd).
const LABEL_HANDOVER: u64 = 0x4856_0001;
const LABEL_PRECOPY: u64 = 0x4856_0002;
/// Park a serving thread / open the gate again (fsd's `park`, `unpark`).
const LABEL_PARK: u64 = 0x4856_0003;
const LABEL_UNPARK: u64 = 0x4856_0004;

/// How long the request slots may stay busy when they are taken from a
/// server (it answers every request at once: this is a broken server).
const SLOTS_TIMEOUT_NS: u64 = 2_000_000_000;

/// A replacement is under way.
static REPLACING: AtomicBool = AtomicBool::new(false);

/// The base image of the last pre-copy (bytes; for the log line).  One
/// replacement at a time (`REPLACING`), so one value.
static BASE_BYTES: AtomicU64 = AtomicU64::new(0);

/// What a replacement measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replaced {
    /// From sending the hand-over request until the successor was ready
    /// to serve (its own clock reading, passed on by the old instance; the
    /// old instance's answer if it gave none): the service's pause.
    pub switch_ns: u64,
    /// From sending the hand-over request until the old instance's answer
    /// reached this thread (scheduling of the replacer included).
    pub call_ns: u64,
    /// The state image's size.
    pub image_bytes: u64,
    /// The old instance's export time (within `switch_ns`).
    pub export_ns: u64,
    /// Starting the successor (before the switch; service goes on).
    pub start_ns: u64,
    pub old_pid: Pid,
    pub new_pid: Pid,
    /// The pre-copy of file data (before the switch): time and bytes.
    pub precopy_ns: u64,
    pub precopy_bytes: u64,
    /// When the switch began (the kernel's clock, `CLOCK_MONOTONIC`).
    pub switch_begin_ns: u64,
    /// The successor's rebuild (within `switch_ns`).
    pub import_ns: u64,
}

/// The handle numbers a fresh process's first two inserts get
/// (`ipc::handle`: generation 1 in slots 0 and 1).
const FIRST_HANDLES: [u64; 2] = [1 << 12, (1 << 12) | 1];

/// The handle number of a fresh process's insert number `k`.
pub(super) const fn fresh_handle(k: u64) -> u64 {
    (1 << 12) | k
}

/// Parks every serving thread of the instance behind `service` but one
/// (`park`: each thread that takes it answers and waits at its gate
/// unless it is the last one receiving, which answers 1), so one thread
/// serves while the state moves (`servers.placement=percore`); one call
/// with a single serving thread.  Control calls go to the endpoint, not
/// the request slots.
pub(super) fn park_serving_threads(service: &Endpoint, park: u64) -> Result<(), Errno> {
    for _ in 0..percpu::cpu_count() + 2 {
        let r = crate::ipc::kernel_call_endpoint(service, park, [0; 4], &[], &mut [])?;
        if r.label != 0 {
            return Err(Errno(r.label.clamp(1, 4095) as i32));
        }
        if r.words[0] <= 1 {
            return Ok(());
        }
    }
    Err(Errno::EBUSY)
}

/// Opens the parked threads' gate (the hand-over did not happen).
pub(super) fn unpark_serving_threads(service: &Endpoint, unpark: u64) {
    if let Err(e) = crate::ipc::kernel_call_endpoint(service, unpark, [0; 4], &[], &mut []) {
        log::warn!(
            "servers: unparking the serving threads failed: errno {}",
            e.0
        );
    }
}

/// The request slots of the instance behind `service`, handed to its
/// successor (`servers.placement=dedicated`): the successor maps the same
/// slots and gets the same two notifications; the owner word moves from
/// `old` to `new` at the switch (`ring` crate).
pub(super) struct SlotHandover {
    pub ring: Arc<crate::ipc::ring::KernelRing>,
    pub old: u32,
    pub new: u32,
}

impl SlotHandover {
    /// Of `service`'s endpoint, if it has slots.
    pub fn of(service: &Endpoint) -> Option<SlotHandover> {
        let ring = service.ring()?.clone();
        let old = ring.owner();
        Some(SlotHandover {
            ring,
            old,
            new: super::servers::next_ring_token(),
        })
    }

    /// The successor's slot arguments, its handles of the notifications
    /// being its inserts number `first` and `first + 1`.
    pub fn args(&self, first: u64) -> [Vec<u8>; 2] {
        [
            super::servers::ring_arg(self.new),
            format!(
                "ringadopt={},{}",
                fresh_handle(first),
                fresh_handle(first + 1)
            )
            .into_bytes(),
        ]
    }

    /// Before the successor's first instruction: maps the slots into it
    /// and inserts the two notifications (its inserts number `first` and
    /// `first + 1`, checked).
    pub fn prepare(&self, p: &Arc<super::process::Process>, first: u64) -> Result<(), Errno> {
        super::servers::map_ring_region(&*p.aspace().ok_or(Errno::ESRCH)?, self.ring.region())?;
        let (wake, done) = self.ring.notifications();
        for (k, n) in [wake, done].into_iter().enumerate() {
            let h = p.ipc.insert_or_drop(
                Object::Notification(n),
                abi::ipc::RIGHT_SEND | RIGHT_RECV,
                0,
            )?;
            if h != fresh_handle(first + k as u64) {
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }

    /// Takes the slots from the old instance (none works on one after).
    pub fn stop_old(&self) -> Result<(), Errno> {
        self.ring.take_from_server(self.old, SLOTS_TIMEOUT_NS)
    }

    /// The switch failed: the old instance serves the slots again.
    pub fn back_to_old(&self) {
        self.ring.give_to(self.old);
    }

    /// The switch is done: the successor serves the slots.
    pub fn to_new(&self) {
        self.ring.give_to(self.new);
    }
}

/// Replaces the file server by a new instance of `program` (`None`: the
/// archive's `/.servers/fsd`).  `EOPNOTSUPP` without a file server,
/// `EBUSY` while another replacement runs or a server file is mapped,
/// `EPIPE` when no server is registered; an errno from the old instance
/// (export) or the successor (rebuild) leaves the old one serving.
pub fn replace_file_server(program: Option<Program>) -> Result<Replaced, Errno> {
    if !crate::files::remote::active() {
        return Err(Errno::EOPNOTSUPP);
    }
    if REPLACING.swap(true, Ordering::AcqRel) {
        return Err(Errno::EBUSY);
    }
    let r = replace(program);
    REPLACING.store(false, Ordering::Release);
    match &r {
        Ok(x) => log::info!(
            "servers: replaced the file server: pid {} -> pid {}, switch {} us (delta image {} bytes, export {} us, rebuild {} us; the call returned after {} us); before it, start {} us, pre-copy {} bytes and a base image of {} bytes in {} us",
            x.old_pid,
            x.new_pid,
            x.switch_ns / 1000,
            x.image_bytes,
            x.export_ns / 1000,
            x.import_ns / 1000,
            x.call_ns / 1000,
            x.start_ns / 1000,
            x.precopy_bytes,
            BASE_BYTES.load(Ordering::Relaxed),
            x.precopy_ns / 1000
        ),
        Err(e) => log::warn!("servers: replacing the file server failed: errno {}", e.0),
    }
    r
}

/// Runs `f` as the one replacement under way (`EBUSY` if another runs):
/// the network server's replacement (`net_server`) shares the rule.
pub(super) fn exclusive<T>(f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    if REPLACING.swap(true, Ordering::AcqRel) {
        return Err(Errno::EBUSY);
    }
    let r = f();
    REPLACING.store(false, Ordering::Release);
    r
}

/// Whether a replacement is under way (its old instance exits on purpose:
/// no crash).
pub fn replacing() -> bool {
    REPLACING.load(Ordering::Acquire)
}

fn replace(program: Option<Program>) -> Result<Replaced, Errno> {
    if crate::files::remote_map::any_mapped() {
        return Err(Errno::EBUSY);
    }
    let service = crate::ipc::service(SERVICE_FS).ok_or(Errno::EPIPE)?;
    // The request slots (dedicated placement) go to the successor.
    let slots = SlotHandover::of(&service);
    let old_pid = crate::files::remote::server_pid();
    let old = find_process(old_pid).ok_or(Errno::ESRCH)?;
    let program = match program {
        Some(p) => p,
        None => {
            let archive = super::init::initramfs_archive().ok_or(Errno::ENOENT)?;
            let entry = bootfmt::cpio::find(archive, super::servers::FSD_PATH)
                .map_err(|_| Errno::EINVAL)?
                .ok_or(Errno::ENOENT)?;
            Program::Bytes(entry.data)
        }
    };
    let started = crate::arch::time::now_ns();
    let handover = Endpoint::new();
    // The successor serves as its predecessor did: the same placement
    // (as many serving threads and handle shards), the same slots.
    let mut argv: Vec<Vec<u8>> = vec![
        b"fsd".to_vec(),
        format!("handover={},{}", FIRST_HANDLES[0], FIRST_HANDLES[1]).into_bytes(),
        format!("epoch={}", super::server_restart::epoch()).into_bytes(),
        format!("locks={}", percpu::lock_mode().name()).into_bytes(),
        format!("placement={}", super::servers::placement().name()).into_bytes(),
        format!("cpus={}", percpu::cpu_count()).into_bytes(),
        super::servers::next_fsd_instance(),
    ];
    if let Some(s) = &slots {
        argv.extend(s.args(2));
    }
    let path = format!("/{}", super::servers::FSD_PATH);
    let new_pid = super::init::spawn_server_program(&program, &path, &argv, |p| {
        if receive_endpoints(p, &handover, &service)? != FIRST_HANDLES {
            return Err(Errno::EIO);
        }
        match &slots {
            Some(s) => s.prepare(p, 2),
            None => Ok(()),
        }
    })?;
    drop(program);
    let give_up = |e: Errno| {
        if let Some(p) = find_process(new_pid) {
            super::exit::kill_process(&p, 9);
        }
        e
    };
    let to = old
        .ipc
        .insert_or_drop(
            Object::Endpoint(EndpointRef::new(handover.clone(), false)),
            RIGHT_SEND,
            0,
        )
        .map_err(give_up)?;
    // The pre-copy: the old instance sends its files' data while it
    // serves on; then the switch, which sends only what changed since.
    let pre = crate::arch::time::now_ns();
    let precopy = match crate::ipc::kernel_call_endpoint(
        &service,
        LABEL_PRECOPY,
        [to, 0, 0, 0],
        &[],
        &mut [],
    ) {
        Ok(reply) if reply.label == 0 => {
            BASE_BYTES.store(reply.words[3], Ordering::Relaxed);
            reply.words
        }
        other => {
            let _ = old.ipc.close(to);
            return Err(give_up(match other {
                Ok(reply) => Errno(reply.label.clamp(1, 4095) as i32),
                Err(e) => e,
            }));
        }
    };
    let begin = crate::arch::time::now_ns();
    // One-copy calls in flight finish with the old instance, and the ones
    // after go through messages until the successor is known: a grant
    // names pages of one instance, so none may straddle the switch.
    // First: a call in flight may need the slots or any serving thread.
    crate::files::remote_io::suspend();
    // One serving thread from here on (the others wait at their gate),
    // and none on the request slots: nothing changes the state but the
    // hand-over.
    let stopped = park_serving_threads(&service, LABEL_PARK)
        .and_then(|()| slots.as_ref().map_or(Ok(()), SlotHandover::stop_old));
    if let Err(e) = stopped {
        unpark_serving_threads(&service, LABEL_UNPARK);
        crate::files::remote_io::resume();
        let _ = old.ipc.close(to);
        return Err(give_up(e));
    }
    let r = crate::ipc::kernel_call_endpoint(&service, LABEL_HANDOVER, [to, 0, 0, 0], &[], &mut []);
    let end = crate::arch::time::now_ns();
    match r {
        Ok(reply) if reply.label == 0 => {
            if let Some(s) = &slots {
                s.to_new();
            }
            crate::files::remote::set_server_pid(new_pid);
            // Read grants kept by open files name the old instance's
            // pages: drop them (`remote_io::ReadCache`).
            crate::files::remote::data_changed();
            crate::files::remote_io::resume();
            // The successor's "ready" reading: service resumed then, even if
            // this thread ran only later.
            let ready = reply.words[3];
            let switch_end = if ready > begin && ready <= end {
                ready
            } else {
                end
            };
            Ok(Replaced {
                switch_ns: switch_end - begin,
                call_ns: end - begin,
                image_bytes: reply.words[0],
                export_ns: reply.words[1],
                start_ns: pre - started,
                old_pid,
                new_pid,
                precopy_ns: begin - pre,
                precopy_bytes: precopy[1],
                switch_begin_ns: begin,
                import_ns: reply.words[2],
            })
        }
        other => {
            // The old instance keeps serving (its threads were unparked by
            // the one that refused); it no longer needs `to`.
            if let Some(s) = &slots {
                s.back_to_old();
            }
            unpark_serving_threads(&service, LABEL_UNPARK);
            crate::files::remote_io::resume();
            let _ = old.ipc.close(to);
            Err(give_up(match other {
                Ok(reply) => Errno(reply.label.clamp(1, 4095) as i32),
                Err(e) => e,
            }))
        }
    }
}

/// The program at `path`, read through the running file server (an
/// upgraded server binary).
pub fn program_at(path: &str) -> Result<Program, Errno> {
    crate::files::remote::read_program(crate::files::remote::root(), path).map(Program::Pieces)
}

/// `replace=fs@SECONDS` on the command line: a kernel thread replaces the
/// file server SECONDS after the call (once `/init` runs).
pub fn schedule_from_cmdline(line: &str) {
    let Some(spec) = line
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("replace="))
    else {
        return;
    };
    let (net, secs) = match (spec.strip_prefix("fs@"), spec.strip_prefix("net@")) {
        (Some(s), _) => (false, parse_secs(s)),
        (_, Some(s)) => (true, parse_secs(s)),
        _ => (false, None),
    };
    let Some(secs) = secs else {
        log::warn!("servers: replace={spec}: expected fs@SECONDS or net@SECONDS");
        return;
    };
    // Detached: the thread ends after the one replacement.
    let _ = crate::sched::spawn("srv-replace", None, move || {
        crate::sched::sleep_ns(secs);
        if net {
            let _ = super::net_server::replace_net_server(None);
        } else {
            let _ = replace_file_server(None);
        }
    });
}

/// `1`, `0.5`, `2.25` seconds as ns.
pub(crate) fn parse_secs(s: &str) -> Option<u64> {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let whole: u64 = if i.is_empty() { 0 } else { i.parse().ok()? };
    let mut frac = 0u64;
    let mut scale = 100_000_000u64;
    for c in f.bytes().take(9) {
        frac += u64::from(c.checked_sub(b'0').filter(|d| *d <= 9)?) * scale;
        scale /= 10;
    }
    whole.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// Gives a successor server, before its first instruction, its first two
/// handles: receive rights on the hand-over endpoint and on the service
/// endpoint (the file and the network server alike).
pub(super) fn receive_endpoints(
    p: &Arc<super::process::Process>,
    handover: &Arc<Endpoint>,
    service: &Arc<Endpoint>,
) -> Result<[u64; 2], Errno> {
    let mut handles = [0; 2];
    for (slot, endpoint) in handles.iter_mut().zip([handover, service]) {
        *slot = p.ipc.insert_or_drop(
            Object::Endpoint(EndpointRef::new(endpoint.clone(), true)),
            RIGHT_RECV,
            0,
        )?;
    }
    Ok(handles)
}
