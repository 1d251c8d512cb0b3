//! The interface ioctls of sockets (`SIOCGIF*`): what `ifconfig` and
//! friends read about `lo` and, when there is a NIC, `eth0` — names,
//! indexes, flags, IPv4 address, netmask and broadcast (from `net=`),
//! MTU, hardware address.
//!
//! Owns only the translation into Linux's `struct ifreq` / `struct
//! ifconf`.  Invariants: the interface list is the one `/proc/net/dev`
//! shows; an unknown name gives `ENODEV`.  Must not: change anything (the
//! `SIOCS*` calls are not served: `ENOTTY` from the caller).

use alloc::vec::Vec;

use crate::memory::uaccess::UserAddr;
use abi::{Errno, SysResult};

const SIOCGIFNAME: u32 = 0x8910;
const SIOCGIFCONF: u32 = 0x8912;
const SIOCGIFFLAGS: u32 = 0x8913;
const SIOCGIFADDR: u32 = 0x8915;
const SIOCGIFBRDADDR: u32 = 0x8919;
const SIOCGIFNETMASK: u32 = 0x891b;
const SIOCGIFMETRIC: u32 = 0x891d;
const SIOCGIFMTU: u32 = 0x8921;
const SIOCGIFHWADDR: u32 = 0x8927;
const SIOCGIFINDEX: u32 = 0x8933;
const SIOCGIFTXQLEN: u32 = 0x8942;
const SIOCGIFMAP: u32 = 0x8970;

const IFF_UP: u16 = 0x1;
const IFF_BROADCAST: u16 = 0x2;
const IFF_LOOPBACK: u16 = 0x8;
const IFF_RUNNING: u16 = 0x40;
const IFF_MULTICAST: u16 = 0x1000;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const AF_INET: u16 = 2;
/// `sizeof(struct ifreq)`.
const IFREQ: usize = 40;

struct Iface {
    name: &'static str,
    index: i32,
    flags: u16,
    addr: [u8; 4],
    mask: [u8; 4],
    broadcast: [u8; 4],
    mtu: i32,
    hwtype: u16,
    mac: [u8; 6],
}

/// The interfaces: `lo`, and `eth0` with the NIC.
fn interfaces() -> Vec<Iface> {
    let mut v = Vec::new();
    v.push(Iface {
        name: "lo",
        index: 1,
        flags: IFF_UP | IFF_LOOPBACK | IFF_RUNNING,
        addr: [127, 0, 0, 1],
        mask: [255, 0, 0, 0],
        broadcast: [0; 4],
        mtu: 65536,
        hwtype: ARPHRD_LOOPBACK,
        mac: [0; 6],
    });
    if let Some(nic) = crate::drivers::virtio_net::nic() {
        let c = crate::drivers::net_config();
        let mask = u32::MAX
            .checked_shl(32 - c.prefix_len as u32)
            .unwrap_or(0)
            .to_be_bytes();
        let ip = u32::from_be_bytes(c.ip);
        let broadcast = (ip | !u32::from_be_bytes(mask)).to_be_bytes();
        v.push(Iface {
            name: "eth0",
            index: 2,
            flags: IFF_UP | IFF_BROADCAST | IFF_RUNNING | IFF_MULTICAST,
            addr: c.ip,
            mask,
            broadcast,
            mtu: 1500,
            hwtype: ARPHRD_ETHER,
            mac: nic.mac(),
        });
    }
    v
}

/// A `struct sockaddr_in` for `addr` (16 bytes).
fn sockaddr_in(addr: [u8; 4]) -> [u8; 16] {
    let mut s = [0u8; 16];
    s[..2].copy_from_slice(&AF_INET.to_ne_bytes());
    s[4..8].copy_from_slice(&addr);
    s
}

/// Serves interface ioctl `cmd` on a socket; `None` for other commands.
pub fn ioctl(cmd: u32, arg: UserAddr) -> Option<SysResult> {
    Some(match cmd {
        SIOCGIFCONF => ifconf(arg),
        SIOCGIFNAME | SIOCGIFFLAGS | SIOCGIFADDR | SIOCGIFBRDADDR | SIOCGIFNETMASK
        | SIOCGIFMETRIC | SIOCGIFMTU | SIOCGIFHWADDR | SIOCGIFINDEX | SIOCGIFTXQLEN
        | SIOCGIFMAP => ifreq(cmd, arg),
        _ => return None,
    })
}

/// `SIOCGIFCONF`: one `ifreq` (name, address) per interface, as many as
/// fit in `ifc_len`; with a null buffer, the length needed.
fn ifconf(arg: UserAddr) -> SysResult {
    let len: i32 = arg.read()?;
    let buf = UserAddr(arg.offset(8).read()?);
    let all = interfaces();
    if buf.is_null() {
        arg.write(&((all.len() * IFREQ) as i32))?;
        return Ok(0);
    }
    let fit = (len.max(0) as usize / IFREQ).min(all.len());
    for (i, iface) in all.iter().take(fit).enumerate() {
        let mut req = [0u8; IFREQ];
        req[..iface.name.len()].copy_from_slice(iface.name.as_bytes());
        req[16..32].copy_from_slice(&sockaddr_in(iface.addr));
        buf.offset((i * IFREQ) as u64).write_bytes(&req)?;
    }
    arg.write(&((fit * IFREQ) as i32))?;
    Ok(0)
}

/// The `ifreq` calls: the interface named in `ifr_name` (or, for
/// `SIOCGIFNAME`, numbered by `ifr_ifindex`).
fn ifreq(cmd: u32, arg: UserAddr) -> SysResult {
    let mut req = [0u8; IFREQ];
    arg.read_bytes(&mut req)?;
    let all = interfaces();
    let iface = if cmd == SIOCGIFNAME {
        let index = i32::from_ne_bytes([req[16], req[17], req[18], req[19]]);
        all.iter().find(|i| i.index == index)
    } else {
        let end = req[..16].iter().position(|&b| b == 0).unwrap_or(16);
        all.iter().find(|i| i.name.as_bytes() == &req[..end])
    }
    .ok_or(Errno::ENODEV)?;
    let mut out = [0u8; 24];
    match cmd {
        SIOCGIFNAME => {
            req[..16].fill(0);
            req[..iface.name.len()].copy_from_slice(iface.name.as_bytes());
        }
        SIOCGIFFLAGS => out[..2].copy_from_slice(&iface.flags.to_ne_bytes()),
        SIOCGIFADDR => out[..16].copy_from_slice(&sockaddr_in(iface.addr)),
        SIOCGIFNETMASK => out[..16].copy_from_slice(&sockaddr_in(iface.mask)),
        SIOCGIFBRDADDR => out[..16].copy_from_slice(&sockaddr_in(iface.broadcast)),
        SIOCGIFMTU => out[..4].copy_from_slice(&iface.mtu.to_ne_bytes()),
        SIOCGIFINDEX => out[..4].copy_from_slice(&iface.index.to_ne_bytes()),
        SIOCGIFTXQLEN => out[..4].copy_from_slice(&1000i32.to_ne_bytes()),
        SIOCGIFHWADDR => {
            out[..2].copy_from_slice(&iface.hwtype.to_ne_bytes());
            out[2..8].copy_from_slice(&iface.mac);
        }
        // SIOCGIFMETRIC (0), SIOCGIFMAP (no I/O resources).
        _ => {}
    }
    if cmd != SIOCGIFNAME {
        req[16..].copy_from_slice(&out);
    }
    arg.write_bytes(&req).map(|_| 0)
}
