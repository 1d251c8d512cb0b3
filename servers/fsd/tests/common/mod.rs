//! Test set-up shared by the server's tests: a file server on a fresh
//! tmpfs, its threads (one per simulated core, each bound to that CPU id)
//! serving channel queues, and clients connected to them.
#![allow(dead_code)]

use std::sync::Arc;
use std::thread::JoinHandle;

use fs::host::{HeapPages, SystemClock};
use fs::{Fs, FsConfig, LockMode};
use fsd::channel::{hub, ClientEnd, Connector};
use fsd::client::Client;
use fsd::{Config, FileServer};

pub fn new_fs(mode: LockMode) -> Fs {
    Fs::new(
        FsConfig {
            mode,
            max_pages: 1 << 20,
        },
        HeapPages::new(),
        Arc::new(SystemClock),
    )
}

pub struct Setup {
    pub server: Arc<FileServer>,
    pub conn: Connector,
    threads: Vec<JoinHandle<()>>,
}

impl Setup {
    pub fn new(workers: usize) -> Setup {
        Self::with(new_fs(LockMode::PerCpu), Vec::new(), workers)
    }

    pub fn with(fs: Fs, devices: Vec<Arc<dyn fs::block::BlockDevice>>, workers: usize) -> Setup {
        let server = Arc::new(FileServer::new(
            fs,
            devices,
            Config {
                workers,
                ..Config::default()
            },
        ));
        let (ends, conn) = hub(workers);
        let threads = ends
            .into_iter()
            .enumerate()
            .map(|(w, mut end)| {
                let s = server.clone();
                std::thread::spawn(move || {
                    percpu::host::bind_current_thread(w).unwrap();
                    s.serve(w, &mut end);
                })
            })
            .collect();
        Setup {
            server,
            conn,
            threads,
        }
    }

    /// A new client (new id) on server thread `worker`.
    pub fn client(&self, worker: usize) -> Client<ClientEnd> {
        Client::attach(self.conn.connect(worker)).expect("attach")
    }

    /// Stops the server threads (every client must be dropped first).
    pub fn finish(self) {
        drop(self.conn);
        for t in self.threads {
            t.join().expect("server thread");
        }
    }
}
