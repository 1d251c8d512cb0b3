//! The smoltcp `Device` of an instance: two packet queues.  Received packets
//! are pushed into `rx` by the stack (loopback routing or `receive_frame`);
//! whatever smoltcp transmits lands in `tx`, which the stack drains after
//! each poll and routes.
//!
//! Invariants: owned by one instance and only touched under its lock; never
//! blocks; `tx` holds at most `TX_QUEUE_MAX` packets (smoltcp is told the
//! device is busy beyond that, so a poll cannot grow memory without bound).

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

const TX_QUEUE_MAX: usize = 1024;

pub(crate) struct QueueDevice {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    medium: Medium,
    mtu: usize,
}

impl QueueDevice {
    pub fn new(medium: Medium, mtu: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            medium,
            mtu,
        }
    }
}

pub(crate) struct RxTok(Vec<u8>);
pub(crate) struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxTok, TxTok<'_>)> {
        if self.tx.len() >= TX_QUEUE_MAX {
            return None;
        }
        let p = self.rx.pop_front()?;
        Some((RxTok(p), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxTok<'_>> {
        if self.tx.len() >= TX_QUEUE_MAX {
            return None;
        }
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = self.mtu;
        if self.medium == Medium::Ip {
            // Loopback never corrupts packets (Linux `lo` skips checksums too).
            caps.checksum = ChecksumCapabilities::ignored();
        }
        caps
    }
}
