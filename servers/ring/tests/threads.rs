//! The slot protocol with real threads: clients on several threads
//! (claiming, publishing, sleeping until done) and one server thread
//! (polling, then sleeping), the notifications modelled by condition
//! variables.  Every request gets its own reply exactly once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ring::{region_bytes, Head, RawMem, Ring, PAYLOAD_MAX};

/// A notification word: bits ORed in, taken by a waiter.
#[derive(Default)]
struct Note {
    word: Mutex<u64>,
    cv: Condvar,
}

impl Note {
    fn notify(&self, bits: u64) {
        *self.word.lock().unwrap() |= bits;
        self.cv.notify_all();
    }
    fn wait(&self) -> u64 {
        let mut w = self.word.lock().unwrap();
        while *w == 0 {
            w = self.cv.wait(w).unwrap();
        }
        std::mem::take(&mut *w)
    }
}

fn region(slots: usize) -> (Vec<u64>, Ring<RawMem>) {
    let mut mem = vec![0u64; region_bytes(slots) / 8];
    // SAFETY: the vector is 8-byte aligned, of that length, and outlives
    // the ring (returned together; the test drops the ring first).
    let raw = unsafe { RawMem::new(mem.as_mut_ptr() as *mut u8, region_bytes(slots)) };
    (mem, Ring::new(raw, slots).unwrap())
}

#[test]
fn requests_and_replies_across_threads() {
    const SLOTS: usize = 4;
    const CLIENTS: usize = 6;
    const CALLS: u64 = 2000;
    let (_mem, ring) = region(SLOTS);
    let ring = Arc::new(ring);
    let server_note = Arc::new(Note::default());
    let done_note = Arc::new(Note::default());
    // Per-slot wake-ups of sleeping clients (the kernel's waiter table).
    let woken: Arc<Vec<Note>> = Arc::new((0..SLOTS).map(|_| Note::default()).collect());
    ring.server_init(11, 22);
    assert_eq!(ring.client_handles(), Some((11, 22)));
    let served = Arc::new(AtomicU64::new(0));

    // The "kernel" side of done notifications: bit i wakes slot i's client.
    let waker = {
        let (done_note, woken) = (done_note.clone(), woken.clone());
        std::thread::spawn(move || loop {
            let bits = done_note.wait();
            if bits & 1 << 63 != 0 {
                return;
            }
            for i in 0..SLOTS {
                if bits & 1 << i != 0 {
                    woken[i].notify(1);
                }
            }
        })
    };
    let server = {
        let (ring, server_note, done_note, served) = (
            ring.clone(),
            server_note.clone(),
            done_note.clone(),
            served.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; PAYLOAD_MAX];
            let mut next = 0;
            loop {
                let mut got = None;
                for _ in 0..100 {
                    got = ring.next_request(next);
                    if got.is_some() {
                        break;
                    }
                    std::hint::spin_loop();
                }
                let Some(i) = got else {
                    if !ring.prepare_sleep() && server_note.wait() & 1 << 63 != 0 {
                        return;
                    }
                    ring.awake();
                    continue;
                };
                next = i + 1;
                let head = ring.request(i, &mut buf).expect("well-formed request");
                // Reply: the payload reversed, label + 1, words doubled.
                let mut reply = buf[..head.len].to_vec();
                reply.reverse();
                let out = Head {
                    label: head.label + 1,
                    words: head.words.map(|w| w * 2),
                    len: reply.len(),
                };
                served.fetch_add(1, Ordering::Relaxed);
                if ring.complete(i, out, &reply) {
                    done_note.notify(1 << i);
                }
            }
        })
    };
    let clients: Vec<_> = (0..CLIENTS as u64)
        .map(|c| {
            let (ring, server_note, woken) = (ring.clone(), server_note.clone(), woken.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; PAYLOAD_MAX];
                for n in 0..CALLS {
                    let i = loop {
                        if let Some(i) = ring.claim(c as usize) {
                            break i;
                        }
                        std::thread::yield_now();
                    };
                    let payload: Vec<u8> = (0..(n % 50) as u8).map(|b| b ^ c as u8).collect();
                    let head = Head {
                        label: c << 32 | n,
                        words: [c, n, 3, 4],
                        len: payload.len(),
                    };
                    if ring.publish(i, head, &payload) {
                        server_note.notify(1);
                    }
                    // Spin a little, then sleep until done.
                    let mut spins = 0;
                    while !ring.is_done(i) {
                        spins += 1;
                        if spins > 50 {
                            if !ring.prepare_wait(i) {
                                woken[i].wait();
                            }
                            spins = 0;
                        }
                    }
                    let r = ring.take_reply(i, &mut buf).expect("well-formed reply");
                    assert_eq!(r.label, (c << 32 | n) + 1);
                    assert_eq!(r.words, [2 * c, 2 * n, 6, 8]);
                    let mut expect = payload.clone();
                    expect.reverse();
                    assert_eq!(&buf[..r.len], &expect[..]);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(served.load(Ordering::Relaxed), CLIENTS as u64 * CALLS);
    server_note.notify(1 << 63);
    done_note.notify(1 << 63);
    server.join().unwrap();
    waker.join().unwrap();
}

#[test]
fn lengths_are_checked_and_slots_bounded() {
    let (_mem, ring) = region(2);
    assert!(Ring::new(scratch_mem(), 0).is_none());
    // No handles before the server filled the header.
    assert_eq!(ring.client_handles(), None);
    let a = ring.claim(0).unwrap();
    let b = ring.claim(0).unwrap();
    assert_ne!(a, b);
    assert_eq!(ring.claim(0), None, "two slots, both claimed");
    ring.publish(a, Head::default(), &[1, 2, 3]);
    let i = ring.next_request(0).unwrap();
    assert_eq!(i, a);
    // A receive buffer shorter than the message: refused, not truncated.
    let mut small = [0u8; 2];
    assert_eq!(ring.request(i, &mut small), None);
    let mut buf = [0u8; 8];
    assert_eq!(ring.request(i, &mut buf).unwrap().len, 3);
    ring.complete(i, Head::default(), &[9; 5]);
    assert!(ring.is_done(a) && !ring.is_done(b));
    assert_eq!(ring.take_reply(a, &mut buf).unwrap().len, 5);
    assert_eq!(ring.claim(0), Some(a), "freed");
}

/// A small region of its own (for `Ring::new`'s refusal only).
fn scratch_mem() -> RawMem {
    let mut m = vec![0u64; 8];
    // SAFETY: a fresh aligned buffer, leaked for the test's life.
    let raw = unsafe { RawMem::new(m.as_mut_ptr() as *mut u8, 64) };
    std::mem::forget(m);
    raw
}

/// A request the server has not taken can be withdrawn (the server then
/// never sees it, and the slot is free again); one it took cannot (its
/// reply comes as usual).
#[test]
fn withdraw_only_before_the_server_takes_the_request() {
    let (_mem, ring) = region(2);
    ring.server_init(1, 2);
    let head = Head {
        label: 7,
        words: [1, 2, 3, 4],
        len: 3,
    };
    let i = ring.claim(0).unwrap();
    ring.publish(i, head, b"abc");
    assert!(ring.withdraw(i));
    assert!(!ring.withdraw(i), "withdrawn twice");
    assert_eq!(
        ring.next_request(0),
        None,
        "the server saw a withdrawn request"
    );
    // The slot is free: claimed again first.
    assert_eq!(ring.claim(i), Some(i));
    ring.publish(i, head, b"abc");
    assert_eq!(ring.next_request(0), Some(i));
    assert!(!ring.withdraw(i), "withdrew a request the server holds");
    ring.complete(i, head, b"xy");
    assert!(ring.is_done(i));
    let mut buf = [0u8; 8];
    assert_eq!(ring.take_reply(i, &mut buf).map(|h| h.len), Some(2));
    assert_eq!(ring.claim(i), Some(i));
}

/// A switch of the serving instance (replacement): clients call all along
/// while the "kernel" takes the slots from instance 1 (`set_owner(0)`,
/// waits until no slot is busy) and gives them to instance 2.  Every call
/// gets exactly its own reply; while nobody owns the slots nobody answers;
/// after the switch only instance 2 does.
#[test]
fn owner_switch_hands_the_slots_over() {
    const SLOTS: usize = 4;
    const CLIENTS: usize = 4;
    const CALLS: u64 = 1500;
    let (_mem, ring) = region(SLOTS);
    let ring = Arc::new(ring);
    ring.set_owner(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Answers by instance, and answers seen while nobody owned the slots.
    let by = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let during_switch = Arc::new(AtomicU64::new(0));
    let switched = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let servers: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|token: u32| {
            let (ring, stop, by, during_switch, switched) = (
                ring.clone(),
                stop.clone(),
                by.clone(),
                during_switch.clone(),
                switched.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; PAYLOAD_MAX];
                let mut next = 0;
                while !stop.load(Ordering::Acquire) {
                    let Some(i) = ring.next_request_as(next, token) else {
                        std::thread::yield_now();
                        continue;
                    };
                    next = i + 1;
                    let h = ring.request(i, &mut buf).unwrap();
                    if ring.owner() == 0 {
                        during_switch.fetch_add(1, Ordering::Relaxed);
                    }
                    if token == 1 && switched.load(Ordering::Acquire) {
                        during_switch.fetch_add(1, Ordering::Relaxed);
                    }
                    by[token as usize - 1].fetch_add(1, Ordering::Relaxed);
                    let reply = Head {
                        label: h.label + 1,
                        words: [u64::from(token), 0, 0, 0],
                        len: 0,
                    };
                    ring.complete(i, reply, &[]);
                }
            })
        })
        .collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; PAYLOAD_MAX];
                for n in 0..CALLS {
                    let label = (c as u64) << 32 | n;
                    let i = loop {
                        if let Some(i) = ring.claim(c) {
                            break i;
                        }
                        std::thread::yield_now();
                    };
                    let head = Head {
                        label,
                        words: [0; 4],
                        len: 0,
                    };
                    ring.publish(i, head, &[]);
                    while !ring.is_done(i) {
                        std::thread::yield_now();
                    }
                    let r = ring.take_reply(i, &mut buf).unwrap();
                    assert_eq!(r.label, label + 1, "a reply to another call");
                }
            })
        })
        .collect();
    // The switch, once instance 1 has served a while.
    while by[0].load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    ring.set_owner(0);
    while ring.any_busy() {
        std::thread::yield_now();
    }
    switched.store(true, Ordering::Release);
    let frozen = by[0].load(Ordering::Relaxed) + by[1].load(Ordering::Relaxed);
    for _ in 0..200 {
        std::thread::yield_now();
    }
    assert_eq!(
        by[0].load(Ordering::Relaxed) + by[1].load(Ordering::Relaxed),
        frozen,
        "a request was answered while nobody owned the slots"
    );
    ring.set_owner(2);
    for c in clients {
        c.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    for s in servers {
        s.join().unwrap();
    }
    assert_eq!(during_switch.load(Ordering::Relaxed), 0);
    assert_eq!(
        by[0].load(Ordering::Relaxed) + by[1].load(Ordering::Relaxed),
        CLIENTS as u64 * CALLS
    );
    assert!(by[1].load(Ordering::Relaxed) > 0, "instance 2 served");
}
