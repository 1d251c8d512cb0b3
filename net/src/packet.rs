//! Just enough IPv4 parsing to steer a packet to an instance: addresses,
//! protocol, ports and TCP flags, and the symmetric flow hash.
//!
//! Invariants: never panics on any byte string (every index is checked);
//! `flow_hash(a, b) == flow_hash(b, a)`, so both directions of a connection
//! land on the same instance.  Must not allocate.

use core::net::Ipv4Addr;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_ACK: u8 = 0x10;

/// The steering-relevant fields of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowInfo {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Ports and TCP flags, present for unfragmented TCP/UDP packets.
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub has_ports: bool,
}

impl FlowInfo {
    /// A TCP SYN without ACK (a connection request).
    pub fn is_tcp_syn(&self) -> bool {
        self.proto == PROTO_TCP
            && self.has_ports
            && self.tcp_flags & TCP_SYN != 0
            && self.tcp_flags & TCP_ACK == 0
    }
}

/// Parse an IPv4 packet (no link header).  `None` if it is not plausible.
pub(crate) fn parse_ipv4(p: &[u8]) -> Option<FlowInfo> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let proto = p[9];
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let frag = u16::from_be_bytes([p[6], p[7]]);
    let first_fragment_whole = frag & 0x3fff == 0;
    let mut info = FlowInfo {
        src,
        dst,
        proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        has_ports: false,
    };
    if first_fragment_whole && (proto == PROTO_TCP || proto == PROTO_UDP) && p.len() >= ihl + 4 {
        info.src_port = u16::from_be_bytes([p[ihl], p[ihl + 1]]);
        info.dst_port = u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]);
        info.has_ports = true;
        if proto == PROTO_TCP {
            if p.len() < ihl + 14 {
                info.has_ports = false;
            } else {
                info.tcp_flags = p[ihl + 13];
            }
        }
    }
    Some(info)
}

/// Symmetric hash of a flow's two endpoints.
pub(crate) fn flow_hash(a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> u32 {
    let ka = (u64::from(a.0.to_bits()) << 16) | u64::from(a.1);
    let kb = (u64::from(b.0.to_bits()) << 16) | u64::from(b.1);
    let (lo, hi) = if ka <= kb { (ka, kb) } else { (kb, ka) };
    // splitmix64 finaliser over the ordered pair: cheap and well mixed.
    let mut x = lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi.rotate_left(29);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_symmetric() {
        let a = (Ipv4Addr::new(127, 0, 0, 1), 40000);
        let b = (Ipv4Addr::new(127, 0, 0, 1), 80);
        assert_eq!(flow_hash(a, b), flow_hash(b, a));
    }

    /// An 80-byte IPv4 buffer (tests cut it): header of `ihl` 32-bit words,
    /// protocol `proto`, 127.0.0.1 -> 127.0.0.2, ports 1000 -> 2000 and
    /// TCP flags SYN right after the header (where they fit).
    fn packet(ihl: u8, proto: u8) -> [u8; 80] {
        let mut p = [0u8; 80];
        p[0] = 0x40 | ihl;
        p[9] = proto;
        p[12..16].copy_from_slice(&[127, 0, 0, 1]);
        p[16..20].copy_from_slice(&[127, 0, 0, 2]);
        let h = usize::from(ihl) * 4;
        if h >= 20 {
            p[h..h + 4].copy_from_slice(&[0x03, 0xe8, 0x07, 0xd0]);
            p[h + 13] = TCP_SYN;
        }
        p
    }

    /// Every length bound of `parse_ipv4`, at the bound and one below it.
    #[test]
    fn parse_ipv4_bounds() {
        // Header only: 20 bytes parse, 19 do not.
        let p = packet(5, 1);
        let info = parse_ipv4(&p[..20]).expect("a bare 20-byte header");
        assert_eq!(info.src, Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(info.dst, Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(info.proto, 1);
        assert!(!info.has_ports);
        assert_eq!(parse_ipv4(&p[..19]), None);
        // IHL below 5 words is not IPv4; 5 is.
        for ihl in 0..5 {
            assert_eq!(parse_ipv4(&packet(ihl, PROTO_UDP)[..40]), None, "ihl {ihl}");
        }
        // Options: a 24-byte header needs all 24 bytes, and no more.
        let p = packet(6, 1);
        assert_eq!(parse_ipv4(&p[..23]), None);
        assert!(parse_ipv4(&p[..24]).is_some());
        // Not version 4.
        let mut v6 = packet(5, PROTO_UDP);
        v6[0] = 0x65;
        assert_eq!(parse_ipv4(&v6[..40]), None);
        // UDP: ports need 4 bytes after the header (with and without options).
        for ihl in [5u8, 6] {
            let h = usize::from(ihl) * 4;
            let p = packet(ihl, PROTO_UDP);
            let info = parse_ipv4(&p[..h + 4]).unwrap();
            assert!(info.has_ports, "ihl {ihl}");
            assert_eq!((info.src_port, info.dst_port), (1000, 2000));
            assert_eq!(info.tcp_flags, 0);
            let info = parse_ipv4(&p[..h + 3]).unwrap();
            assert!(!info.has_ports);
            assert_eq!((info.src_port, info.dst_port), (0, 0));
        }
        // TCP: ports and flags need 14 bytes after the header.
        for ihl in [5u8, 6] {
            let h = usize::from(ihl) * 4;
            let p = packet(ihl, PROTO_TCP);
            let info = parse_ipv4(&p[..h + 14]).unwrap();
            assert!(info.has_ports && info.is_tcp_syn(), "ihl {ihl}");
            assert_eq!((info.src_port, info.dst_port), (1000, 2000));
            assert_eq!(info.tcp_flags, TCP_SYN);
            assert!(!parse_ipv4(&p[..h + 13]).unwrap().has_ports);
            assert!(!parse_ipv4(&p[..h + 4]).unwrap().has_ports);
        }
        // Other protocols carry no ports, whatever follows the header.
        assert!(!parse_ipv4(&packet(5, 1)[..40]).unwrap().has_ports);
        // Fragments: only a whole packet (offset 0, no MF) has ports; DF
        // (0x4000) does not make a fragment.
        for (frag, whole) in [
            (0x0000u16, true),
            (0x4000, true),
            (0x2000, false),
            (0x0001, false),
            (0x1fff, false),
        ] {
            let mut p = packet(5, PROTO_UDP);
            p[6..8].copy_from_slice(&frag.to_be_bytes());
            assert_eq!(
                parse_ipv4(&p[..40]).unwrap().has_ports,
                whole,
                "frag {frag:#x}"
            );
        }
    }

    #[test]
    fn short_and_garbage_packets_do_not_panic() {
        for len in 0..64 {
            let buf = [0x45u8; 64];
            let _ = parse_ipv4(&buf[..len]);
            let buf = [0x4fu8; 64];
            let _ = parse_ipv4(&buf[..len]);
        }
    }
}
