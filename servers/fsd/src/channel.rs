//! An in-process transport for tests: each server thread has its own
//! queue (as each core will have its own endpoint), clients connect to
//! one queue and make synchronous calls over it.
//!
//! Owns `hub`, `Connector`, `ServerEnd` (a `Transport`) and `ClientEnd`.
//! Invariants: a call waits for exactly its own reply (each client has a
//! private reply channel); the client id a server sees is the one the
//! connector assigned, which a client cannot choose (the IPC badge).
//!
//! Must not: be used outside tests and host tools (the real transport is
//! the kernel's IPC).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};

use abi::Errno;
use fsproto::Message;

use crate::Transport;

struct Envelope {
    client: u64,
    msg: Message,
    reply: Sender<Message>,
}

/// Hands out client ends bound to one server queue each.
pub struct Connector {
    queues: Vec<Sender<Envelope>>,
    next: AtomicU64,
}

/// The server side of one queue.
pub struct ServerEnd {
    rx: Receiver<Envelope>,
}

/// One client: a synchronous caller on one server queue.
pub struct ClientEnd {
    id: u64,
    to: Sender<Envelope>,
    reply_tx: Sender<Message>,
    reply_rx: Receiver<Message>,
}

/// `workers` server queues and the connector for them.  The server ends
/// see `None` from `recv` once the connector and every client end are
/// dropped.
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
        },
    )
}

impl Connector {
    /// A new client (with a new id) calling server queue `worker`.
    pub fn connect(&self, worker: usize) -> ClientEnd {
        self.connect_as(self.next.fetch_add(1, Ordering::Relaxed), worker)
    }

    /// A client end with a given id on queue `worker`: the same client
    /// calling from another core (its handles work on every queue).
    pub fn connect_as(&self, id: u64, worker: usize) -> ClientEnd {
        let (reply_tx, reply_rx) = channel();
        ClientEnd {
            id,
            to: self.queues[worker % self.queues.len()].clone(),
            reply_tx,
            reply_rx,
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
}

impl Transport for ServerEnd {
    type Caller = Sender<Message>;

    fn recv(&mut self) -> Option<(Sender<Message>, u64, Message)> {
        self.rx.recv().ok().map(|e| (e.reply, e.client, e.msg))
    }

    fn reply(&mut self, caller: Sender<Message>, reply: Message) {
        // A client that stopped waiting is no error of the server's.
        let _ = caller.send(reply);
    }
}
