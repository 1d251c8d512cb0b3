//! An in-process transport for tests: each server thread has its own
//! queue (as each core will have its own endpoint), clients make
//! synchronous calls over one queue, and each client id has a
//! notification word (as each client will have a notification object).
//!
//! Owns `hub`, `Connector`, `ServerEnd` (a `Transport`), `ClientEnd` and
//! `Notifier` (a `Signal`).  Invariants: a call waits for exactly its own
//! reply (a private reply channel per client end); the client id a server
//! sees is the one the connector assigned (the IPC badge); signalled bits
//! accumulate until the client takes them.
//!
//! Must not: be used outside tests and host tools (the real transport is
//! the kernel's IPC).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use abi::Errno;
use netproto::Message;

use crate::{Incoming, Signal, Transport};

struct Envelope {
    client: u64,
    msg: Message,
    reply: Sender<Message>,
}

/// One client's notification word.
#[derive(Default)]
struct Word {
    bits: Mutex<u64>,
    cv: Condvar,
}

/// The notification words of all clients: the server's `Signal`.
#[derive(Default)]
pub struct Notifier {
    words: Mutex<HashMap<u64, Arc<Word>>>,
    /// Signals sent (tests check that unarmed sockets cause none).
    pub signals: AtomicU64,
}

impl Notifier {
    fn word(&self, client: u64) -> Arc<Word> {
        self.words
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(client)
            .or_default()
            .clone()
    }
}

impl Signal for Notifier {
    fn signal(&self, client: u64, bits: u64) {
        self.signals.fetch_add(1, Ordering::Relaxed);
        let w = self.word(client);
        *w.bits.lock().unwrap_or_else(|p| p.into_inner()) |= bits;
        w.cv.notify_all();
    }
}

/// Hands out client ends bound to one server queue each.
pub struct Connector {
    queues: Vec<Sender<Envelope>>,
    next: AtomicU64,
    notifier: Arc<Notifier>,
}

/// The server side of one queue.
pub struct ServerEnd {
    rx: Receiver<Envelope>,
}

/// One client: a synchronous caller on one server queue, and the
/// client's notification word.
pub struct ClientEnd {
    id: u64,
    to: Sender<Envelope>,
    reply_tx: Sender<Message>,
    reply_rx: Receiver<Message>,
    word: Arc<Word>,
}

/// `workers` server queues and the connector for them.  The server ends
/// see `Closed` once the connector and every client end are dropped.
pub fn hub(workers: usize) -> (Vec<ServerEnd>, Connector) {
    let (ends, queues) = (0..workers.max(1))
        .map(|_| {
            let (tx, rx) = channel();
            (ServerEnd { rx }, tx)
        })
        .unzip();
    (
        ends,
        Connector {
            queues,
            next: AtomicU64::new(1),
            notifier: Arc::new(Notifier::default()),
        },
    )
}

impl Connector {
    /// The `Signal` to give the server.
    pub fn notifier(&self) -> Arc<Notifier> {
        self.notifier.clone()
    }

    /// A new client (with a new id) calling server queue `worker`.
    pub fn connect(&self, worker: usize) -> ClientEnd {
        self.connect_as(self.next.fetch_add(1, Ordering::Relaxed), worker)
    }

    /// A client end with a given id on queue `worker`: the same client
    /// calling from another core or thread (same handles, same word).
    pub fn connect_as(&self, id: u64, worker: usize) -> ClientEnd {
        let (reply_tx, reply_rx) = channel();
        ClientEnd {
            id,
            to: self.queues[worker % self.queues.len()].clone(),
            reply_tx,
            reply_rx,
            word: self.notifier.word(id),
        }
    }
}

impl ClientEnd {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends `msg` and waits for its reply; `EPIPE` if the server is gone.
    pub fn call(&self, msg: Message) -> Result<Message, Errno> {
        self.to
            .send(Envelope {
                client: self.id,
                msg,
                reply: self.reply_tx.clone(),
            })
            .map_err(|_| Errno::EPIPE)?;
        self.reply_rx.recv().map_err(|_| Errno::EPIPE)
    }

    /// Waits until some notification bit is set, and takes them all.
    pub fn wait_bits(&self) -> u64 {
        let mut b = self.word.bits.lock().unwrap_or_else(|p| p.into_inner());
        while *b == 0 {
            b = self.word.cv.wait(b).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut *b)
    }

    /// Takes the bits set so far (0 if none), without waiting.
    pub fn take_bits(&self) -> u64 {
        std::mem::take(&mut *self.word.bits.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Transport for ServerEnd {
    type Caller = Sender<Message>;

    fn recv(&mut self, timeout_ms: Option<u64>) -> Incoming<Sender<Message>> {
        let got = match timeout_ms {
            Some(ms) => self.rx.recv_timeout(Duration::from_millis(ms)),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(e) => Incoming::Request(e.reply, e.client, e.msg),
            Err(RecvTimeoutError::Timeout) => Incoming::Timeout,
            Err(RecvTimeoutError::Disconnected) => Incoming::Closed,
        }
    }

    fn reply(&mut self, caller: Sender<Message>, reply: Message) {
        // A client that stopped waiting is no error of the server's.
        let _ = caller.send(reply);
    }
}
