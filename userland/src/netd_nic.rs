//! netd's NIC backend in `structure=servers` with `servers.nic=process`:
//! the network server's side of the packet rings it shares with the NIC
//! driver process `nicd` (`nicring`, kernel side `kernel/src/drivers/
//! userdev.rs`).  `attach` maps the rings, registers netd's notification
//! for the driver's kicks and waits for a driver to publish its MAC;
//! `RingSink` is the stack's `FrameSink` (frames into the transmit ring,
//! then a kick if the driver said it sleeps); `receive_loop` feeds the receive ring to the stack.
//!
//! Driver restarts: the rings live in kernel-kept memory, so nothing is
//! torn down; a new driver publishes a new generation, which the receive
//! loop notices (it then kicks the driver so that frames queued while no
//! driver ran go out).
//!
//! Owns: the mapped region, the notification handle, the transmit lock
//! (the stack transmits from several threads; the ring has one producer).
//!
//! Must not: block in `transmit` (a full ring drops the frame: TCP
//! retransmits), or call into the server from `transmit`.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::nicring::{Region, Ring, Side};
use crate::{dev, ipc};

/// How long netd waits for the first driver to come up.
const DRIVER_WAIT: Duration = Duration::from_secs(10);

/// The rings, attached.
pub struct Attached {
    rings: Arc<Region>,
    notification: u64,
    /// The interface: the driver's MAC with the kernel's `net=` address.
    pub eth: net::EthConfig,
}

/// Parses `IP/PREFIX[,gw=IP]` (what the kernel passes as `nic=`).
fn parse_net(text: &str) -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
    let (address, gateway) = match text.split_once(',') {
        Some((a, rest)) => (a, Some(rest.strip_prefix("gw=")?.parse().ok()?)),
        None => (text, None),
    };
    let (ip, prefix) = address.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|&p| p <= 32)?;
    Some((ip.parse().ok()?, prefix, gateway))
}

/// Maps the rings and waits (bounded) for a driver.  `net` is the `nic=`
/// argument.
pub fn attach(net: &str) -> Result<Attached, String> {
    let (addr, prefix_len, gateway) =
        parse_net(net).ok_or_else(|| format!("bad nic= argument {net:?}"))?;
    let rings = Region::map().map_err(|e| format!("DEV_RING_MAP: errno {e}"))?;
    let notification =
        ipc::notification_create().map_err(|e| format!("notification: errno {e}"))?;
    dev::set_peer(notification).map_err(|e| format!("DEV_SET_PEER: errno {e}"))?;
    // The handshake: the driver publishes its generation, then kicks.
    let begin = Instant::now();
    while rings.generation() == 0 {
        if begin.elapsed() > DRIVER_WAIT {
            return Err("no NIC driver came up".into());
        }
        match ipc::wait(notification, abi::ipc::IPC_NONBLOCK) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let eth = net::EthConfig {
        mac: rings.mac(),
        addr,
        prefix_len,
        gateway,
    };
    Ok(Attached {
        rings: Arc::new(rings),
        notification,
        eth,
    })
}

/// Frames out through the transmit ring.
pub struct RingSink {
    rings: Arc<Region>,
    producer: Mutex<()>,
}

impl netd::FrameSink for RingSink {
    fn transmit(&self, frame: &[u8]) {
        let pushed = {
            let _one = self.producer.lock().unwrap_or_else(|p| p.into_inner());
            self.rings.push(Ring::Tx, frame)
        };
        if pushed && self.rings.needs_kick(Side::Driver) {
            let _ = dev::kick();
        }
    }
}

impl Attached {
    /// The stack's frame sink.
    pub fn sink(&self) -> Arc<dyn netd::FrameSink> {
        Arc::new(RingSink {
            rings: self.rings.clone(),
            producer: Mutex::new(()),
        })
    }

    /// Feeds received frames to `receive` for ever (a thread of its own).
    pub fn receive_loop(self, receive: impl Fn(&[u8])) -> ! {
        self.receive_loop_with(receive, || {})
    }

    /// The notification this side waits on (raising a bit in it wakes the
    /// receive loop, e.g. so that it sees a request to park).
    pub fn notification(&self) -> u64 {
        self.notification
    }

    /// As `receive_loop`, calling `checkpoint` before each round, where
    /// the loop holds nothing (netd parks the thread there for a
    /// replacement).
    pub fn receive_loop_with(self, receive: impl Fn(&[u8]), checkpoint: impl Fn()) -> ! {
        let mut generation = self.rings.generation();
        loop {
            checkpoint();
            while self.rings.pop(Ring::Rx, &mut |f: &[u8]| receive(f)) {}
            let now = self.rings.generation();
            if now != generation {
                // A new driver instance: re-attached; let it send what
                // waited while none ran.
                generation = now;
                let _ = dev::kick();
            }
            self.rings.set_sleeping(Side::Net, true);
            if self.rings.pending(Ring::Rx) == 0 {
                let _ = ipc::wait(self.notification, 0);
            }
            self.rings.set_sleeping(Side::Net, false);
        }
    }
}
