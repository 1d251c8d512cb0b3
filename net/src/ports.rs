//! The port table: which (protocol, port) pairs are bound, by whom, with which
//! reuse flags; ephemeral port allocation.
//!
//! One short spin lock guards the whole table.  Why not partitioned: it is
//! only taken by `bind`, `listen`, `connect` of an unbound socket, the first
//! `sendto` of an unbound UDP socket and `close` — never on the data path
//! (send/recv/poll) — and it is held for a map lookup/insert, not across any
//! other lock or any smoltcp call.  Ephemeral ports for TCP connects are still
//! chosen per CPU (the flow must hash to the caller's instance), so the lock
//! only serialises the bookkeeping.
//!
//! Invariants: an entry exists while its owner socket holds the binding;
//! `release` removes exactly the owner's entry.  Must not call out of the
//! crate or take any other lock while held.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::errno::EADDRINUSE;
use crate::Errno;

pub(crate) const EPHEMERAL_FIRST: u16 = 32768;
pub(crate) const EPHEMERAL_LAST: u16 = 60999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug)]
struct Binding {
    owner: u64,
    addr: Ipv4Addr,
    reuse_addr: bool,
    reuse_port: bool,
    listening: bool,
}

#[derive(Default)]
pub(crate) struct PortTable {
    map: BTreeMap<(Proto, u16), Vec<Binding>>,
    cursor: u16,
}

fn overlaps(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a.is_unspecified() || b.is_unspecified() || a == b
}

impl PortTable {
    fn conflicts(&self, proto: Proto, port: u16, addr: Ipv4Addr, ra: bool, rp: bool) -> bool {
        let Some(list) = self.map.get(&(proto, port)) else {
            return false;
        };
        list.iter().any(|b| {
            if !overlaps(b.addr, addr) {
                return false;
            }
            if rp && b.reuse_port {
                return false;
            }
            // SO_REUSEADDR on both: allowed unless the other one listens (TCP).
            !(ra && b.reuse_addr && (proto == Proto::Udp || !b.listening))
        })
    }

    /// Bind `port` (non-zero) for `owner`.
    pub fn bind(
        &mut self,
        proto: Proto,
        port: u16,
        addr: Ipv4Addr,
        owner: u64,
        reuse_addr: bool,
        reuse_port: bool,
    ) -> Result<(), Errno> {
        if self.conflicts(proto, port, addr, reuse_addr, reuse_port) {
            return Err(EADDRINUSE);
        }
        self.map.entry((proto, port)).or_default().push(Binding {
            owner,
            addr,
            reuse_addr,
            reuse_port,
            listening: false,
        });
        Ok(())
    }

    /// Bind a free ephemeral port for which `wanted(port)` holds.
    pub fn bind_ephemeral(
        &mut self,
        proto: Proto,
        addr: Ipv4Addr,
        owner: u64,
        wanted: impl Fn(u16) -> bool,
    ) -> Result<u16, Errno> {
        let span = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
        let start = u32::from(self.cursor) % span;
        for i in 0..span {
            let port = EPHEMERAL_FIRST + ((start + i) % span) as u16;
            if self.map.contains_key(&(proto, port)) || !wanted(port) {
                continue;
            }
            self.cursor = ((start + i + 1) % span) as u16;
            self.bind(proto, port, addr, owner, false, false)?;
            return Ok(port);
        }
        Err(crate::errno::EADDRNOTAVAIL)
    }

    /// Mark `owner`'s TCP binding of `port` as listening.  `EADDRINUSE` if
    /// another listener on an overlapping address exists without SO_REUSEPORT
    /// on both (Linux checks this at listen time too).
    pub fn set_listening(&mut self, port: u16, owner: u64) -> Result<(), Errno> {
        let Some(list) = self.map.get_mut(&(Proto::Tcp, port)) else {
            return Err(crate::errno::EINVAL);
        };
        let Some(me) = list.iter().find(|b| b.owner == owner).copied() else {
            return Err(crate::errno::EINVAL);
        };
        if list.iter().any(|b| {
            b.owner != owner
                && b.listening
                && overlaps(b.addr, me.addr)
                && !(b.reuse_port && me.reuse_port)
        }) {
            return Err(EADDRINUSE);
        }
        for b in list.iter_mut().filter(|b| b.owner == owner) {
            b.listening = true;
        }
        Ok(())
    }

    /// Drop `owner`'s binding of `port`.
    pub fn release(&mut self, proto: Proto, port: u16, owner: u64) {
        if let Some(list) = self.map.get_mut(&(proto, port)) {
            list.retain(|b| b.owner != owner);
            if list.is_empty() {
                self.map.remove(&(proto, port));
            }
        }
    }

    /// Number of bound (protocol, port) pairs.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_conflicts_like_linux() {
        let any = Ipv4Addr::UNSPECIFIED;
        let lo = Ipv4Addr::LOCALHOST;
        let mut t = PortTable::default();
        t.bind(Proto::Tcp, 80, any, 1, false, false).unwrap();
        assert_eq!(t.bind(Proto::Tcp, 80, lo, 2, false, false), Err(EADDRINUSE));
        t.bind(Proto::Udp, 80, lo, 3, false, false).unwrap();
        t.release(Proto::Tcp, 80, 1);
        t.bind(Proto::Tcp, 80, lo, 2, true, false).unwrap();
        t.bind(Proto::Tcp, 80, lo, 4, true, false).unwrap();
        t.set_listening(80, 2).unwrap();
        assert_eq!(t.bind(Proto::Tcp, 80, lo, 5, true, false), Err(EADDRINUSE));
    }

    #[test]
    fn distinct_addresses_and_reuse_port_on_both() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut t = PortTable::default();
        // Different specific addresses never conflict; the wildcard does.
        t.bind(Proto::Tcp, 80, a, 1, false, false).unwrap();
        t.bind(Proto::Tcp, 80, b, 2, false, false).unwrap();
        assert_eq!(
            t.bind(Proto::Tcp, 80, Ipv4Addr::UNSPECIFIED, 3, false, false),
            Err(EADDRINUSE)
        );
        // SO_REUSEPORT must be set on both sides.
        t.bind(Proto::Udp, 53, a, 4, false, true).unwrap();
        assert_eq!(t.bind(Proto::Udp, 53, a, 5, false, false), Err(EADDRINUSE));
        t.bind(Proto::Udp, 53, a, 6, false, true).unwrap();
        t.bind(Proto::Udp, 54, a, 7, false, false).unwrap();
        assert_eq!(t.bind(Proto::Udp, 54, a, 8, false, true), Err(EADDRINUSE));
        // SO_REUSEADDR on both is enough for UDP, not on one side only.
        t.bind(Proto::Udp, 55, a, 9, true, false).unwrap();
        assert_eq!(t.bind(Proto::Udp, 55, a, 10, false, false), Err(EADDRINUSE));
        t.bind(Proto::Udp, 55, a, 11, true, false).unwrap();
    }

    #[test]
    fn listening_needs_reuse_port_on_both() {
        let lo = Ipv4Addr::LOCALHOST;
        let mut t = PortTable::default();
        t.bind(Proto::Tcp, 80, lo, 1, true, true).unwrap();
        t.bind(Proto::Tcp, 80, lo, 2, true, true).unwrap();
        t.bind(Proto::Tcp, 81, lo, 3, true, false).unwrap();
        t.bind(Proto::Tcp, 81, lo, 4, true, false).unwrap();
        t.set_listening(80, 1).unwrap();
        t.set_listening(80, 2).unwrap();
        t.set_listening(81, 3).unwrap();
        assert_eq!(t.set_listening(81, 4), Err(EADDRINUSE));
        // SO_REUSEPORT on the listener only is not enough either.
        t.bind(Proto::Tcp, 83, lo, 5, true, true).unwrap();
        t.bind(Proto::Tcp, 83, lo, 6, true, false).unwrap();
        t.set_listening(83, 5).unwrap();
        assert_eq!(t.set_listening(83, 6), Err(EADDRINUSE));
        t.release(Proto::Tcp, 83, 5);
        t.release(Proto::Tcp, 83, 6);
        assert_eq!(t.set_listening(82, 4), Err(crate::errno::EINVAL));
        assert_eq!(t.set_listening(80, 9), Err(crate::errno::EINVAL));
        assert_eq!(t.len(), 2);
        t.release(Proto::Tcp, 80, 1);
        t.release(Proto::Tcp, 80, 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn ephemeral_range_is_inclusive_and_exhaustible() {
        let lo = Ipv4Addr::LOCALHOST;
        let mut t = PortTable::default();
        let edge = |p| p == EPHEMERAL_FIRST || p == EPHEMERAL_LAST;
        let a = t.bind_ephemeral(Proto::Udp, lo, 1, edge).unwrap();
        let b = t.bind_ephemeral(Proto::Udp, lo, 2, edge).unwrap();
        let mut got = [a, b];
        got.sort();
        assert_eq!(got, [EPHEMERAL_FIRST, EPHEMERAL_LAST]);
        assert_eq!(
            t.bind_ephemeral(Proto::Udp, lo, 3, edge),
            Err(crate::errno::EADDRNOTAVAIL)
        );
        // The other protocol has its own ports.
        assert!(t.bind_ephemeral(Proto::Tcp, lo, 4, edge).is_ok());
    }

    #[test]
    fn ephemeral_ports_are_distinct_and_filtered() {
        let mut t = PortTable::default();
        let a = t
            .bind_ephemeral(Proto::Tcp, Ipv4Addr::LOCALHOST, 1, |p| p % 2 == 0)
            .unwrap();
        let b = t
            .bind_ephemeral(Proto::Tcp, Ipv4Addr::LOCALHOST, 2, |p| p % 2 == 0)
            .unwrap();
        assert_ne!(a, b);
        assert!(a % 2 == 0 && b % 2 == 0);
    }
}
