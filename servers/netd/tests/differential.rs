//! Differential property test: random sequences of socket operations run
//! through the protocol and the server (`Client` → `NetServer`) and
//! directly on a `net::Stack` must give the same results step by step
//! (values, data, addresses, events and errnos).  Both stacks have one
//! instance and a clock that does not move, so timers cannot make them
//! differ; the comparison is of the protocol layer, not of timing.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use abi::Errno;
use net::consts::*;
use net::test_support::Quiet;
use net::{LockMode, SockType, SocketRef, Stack};
use netd::channel::Notifier;
use netd::client::{Call, Client};
use netd::{Config, NetServer, ServerPlatform};
use netproto::{Handle, Kind, Message, EVENT_BITS, MAX_RECV};
use proptest::prelude::*;

/// Calls straight into the server (single-threaded, deterministic).
struct Direct {
    server: Arc<NetServer>,
    id: u64,
}

impl Call for Direct {
    fn call(&self, msg: Message) -> Result<Message, Errno> {
        Ok(self.server.handle(self.id, msg.view()))
    }
}

#[derive(Clone, Debug)]
enum Op {
    New(bool),
    Close(usize),
    Bind(usize, u8),
    Listen(usize, i32),
    Accept(usize),
    Connect(usize, u8),
    Send(usize, usize, Option<u8>, u8),
    Recv(usize, usize, bool),
    Shutdown(usize, u32),
    SockName(usize),
    PeerName(usize),
    SetOpt(usize, bool, bool),
    GetOpt(usize, u8),
    Poll(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0usize..8;
    prop_oneof![
        2 => any::<bool>().prop_map(Op::New),
        1 => s.clone().prop_map(Op::Close),
        2 => (s.clone(), 0u8..4).prop_map(|(a, p)| Op::Bind(a, p)),
        2 => (s.clone(), -1i32..4).prop_map(|(a, b)| Op::Listen(a, b)),
        2 => s.clone().prop_map(Op::Accept),
        3 => (s.clone(), 0u8..4).prop_map(|(a, p)| Op::Connect(a, p)),
        4 => (s.clone(), prop_oneof![0usize..100, 0usize..8192, 8193usize..14000], prop::option::of(0u8..4), any::<u8>())
            .prop_map(|(a, n, d, seed)| Op::Send(a, n, d, seed)),
        4 => (s.clone(), prop_oneof![0usize..50, 0usize..20000], any::<bool>()).prop_map(|(a, n, p)| Op::Recv(a, n, p)),
        1 => (s.clone(), 0u32..3).prop_map(|(a, h)| Op::Shutdown(a, h)),
        1 => s.clone().prop_map(Op::SockName),
        1 => s.clone().prop_map(Op::PeerName),
        1 => (s.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, w, v)| Op::SetOpt(a, w, v)),
        1 => (s.clone(), 0u8..4).prop_map(|(a, w)| Op::GetOpt(a, w)),
        2 => s.prop_map(Op::Poll),
    ]
}

/// Ports: 0 (ephemeral / refused), and three fixed ones.
fn port(p: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, [0, 6100, 6101, 6102][p as usize % 4])
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Unit,
    Count(usize),
    Addr(SocketAddrV4),
    Accepted(SocketAddrV4, SocketAddrV4),
    Data(Vec<u8>, Option<SocketAddrV4>),
    Value(Vec<u8>),
    Events(u32),
    Err(Errno),
    Skip,
}

fn out<T>(r: Result<T, Errno>, f: impl FnOnce(T) -> Out) -> Out {
    match r {
        Ok(v) => f(v),
        Err(e) => Out::Err(e),
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_add(seed)).collect()
}

fn opt(which: u8) -> (i32, i32) {
    match which % 4 {
        0 => (SOL_SOCKET, SO_ERROR),
        1 => (SOL_SOCKET, SO_TYPE),
        2 => (SOL_SOCKET, SO_REUSEADDR),
        _ => (IPPROTO_TCP, TCP_NODELAY),
    }
}

struct ModelSide {
    stack: Stack<Quiet>,
    socks: Vec<Option<SocketRef<Quiet>>>,
}

impl ModelSide {
    fn run(&mut self, op: &Op) -> Out {
        let n = self.socks.len();
        let get =
            |socks: &Vec<Option<SocketRef<Quiet>>>, i: usize| -> Result<SocketRef<Quiet>, Errno> {
                socks[i % n].clone().ok_or(Errno::EBADF)
            };
        if n == 0 && !matches!(op, Op::New(_)) {
            return Out::Skip;
        }
        match *op {
            Op::New(stream) => {
                let t = if stream {
                    SockType::Stream
                } else {
                    SockType::Dgram
                };
                out(self.stack.socket(t), |s| {
                    self.socks.push(Some(s));
                    Out::Unit
                })
            }
            Op::Close(i) => match self.socks[i % n].take() {
                Some(s) => {
                    s.close();
                    Out::Unit
                }
                None => Out::Err(Errno::EBADF),
            },
            Op::Bind(i, p) => out(get(&self.socks, i).and_then(|s| s.bind(port(p))), |_| {
                Out::Unit
            }),
            Op::Listen(i, b) => out(get(&self.socks, i).and_then(|s| s.listen(b)), |_| Out::Unit),
            Op::Accept(i) => match get(&self.socks, i).and_then(|s| s.accept()) {
                Ok((new, peer)) => {
                    let local = new.local_addr().unwrap();
                    self.socks.push(Some(new));
                    Out::Accepted(peer, local)
                }
                Err(e) => Out::Err(e),
            },
            Op::Connect(i, p) => out(get(&self.socks, i).and_then(|s| s.connect(port(p))), |_| {
                Out::Unit
            }),
            Op::Send(i, len, dest, seed) => {
                let r = get(&self.socks, i).and_then(|s| {
                    let d = data(len, seed);
                    match s.kind() {
                        // The client splits a stream into messages; keep
                        // the comparison to sends of one message.
                        SockType::Stream => s.send(&d[..len.min(8192)], None),
                        SockType::Dgram => s.send(&d, dest.map(port)),
                    }
                });
                out(r, Out::Count)
            }
            Op::Recv(i, len, peek) => {
                let r = get(&self.socks, i).and_then(|s| {
                    let mut buf = vec![0; len.min(MAX_RECV)];
                    let (n, from) = s.recv(&mut buf, peek)?;
                    buf.truncate(n);
                    Ok((buf, from))
                });
                out(r, |(d, f)| Out::Data(d, f))
            }
            Op::Shutdown(i, how) => out(
                get(&self.socks, i).and_then(|s| s.shutdown(how as i32)),
                |_| Out::Unit,
            ),
            Op::SockName(i) => out(get(&self.socks, i).and_then(|s| s.local_addr()), Out::Addr),
            Op::PeerName(i) => out(get(&self.socks, i).and_then(|s| s.peer_addr()), Out::Addr),
            Op::SetOpt(i, which, v) => {
                let (l, o) = if which {
                    (SOL_SOCKET, SO_REUSEADDR)
                } else {
                    (IPPROTO_TCP, TCP_NODELAY)
                };
                out(
                    get(&self.socks, i).and_then(|s| s.setsockopt(l, o, &(v as i32).to_ne_bytes())),
                    |_| Out::Unit,
                )
            }
            Op::GetOpt(i, w) => {
                let (l, o) = opt(w);
                let r = get(&self.socks, i).and_then(|s| {
                    let mut b = [0u8; 16];
                    let n = s.getsockopt(l, o, &mut b)?;
                    Ok(b[..n].to_vec())
                });
                out(r, Out::Value)
            }
            Op::Poll(i) => out(
                get(&self.socks, i).map(|s| s.poll_events() & EVENT_BITS),
                Out::Events,
            ),
        }
    }
}

struct ServerSide {
    client: Client<Direct>,
    socks: Vec<(Handle, Kind)>,
}

impl ServerSide {
    fn run(&mut self, op: &Op) -> Out {
        let n = self.socks.len();
        if n == 0 && !matches!(op, Op::New(_)) {
            return Out::Skip;
        }
        let c = &self.client;
        let h = |i: usize| self.socks[i % n].0;
        match *op {
            Op::New(stream) => {
                let k = if stream { Kind::Stream } else { Kind::Dgram };
                out(c.socket(k), |h| {
                    self.socks.push((h, k));
                    Out::Unit
                })
            }
            Op::Close(i) => out(c.close(h(i)), |_| Out::Unit),
            Op::Bind(i, p) => out(c.bind(h(i), port(p)), |_| Out::Unit),
            Op::Listen(i, b) => out(c.listen(h(i), b), |_| Out::Unit),
            Op::Accept(i) => match c.accept(h(i)) {
                Ok((new, peer, local)) => {
                    self.socks.push((new, Kind::Stream));
                    Out::Accepted(peer, local)
                }
                Err(e) => Out::Err(e),
            },
            Op::Connect(i, p) => out(c.connect(h(i), port(p)), |_| Out::Unit),
            Op::Send(i, len, dest, seed) => {
                let (hh, kind) = self.socks[i % n];
                let d = data(len, seed);
                let r = match kind {
                    Kind::Stream => c.send(kind, hh, &d[..len.min(8192)], None),
                    Kind::Dgram => c.send(kind, hh, &d, dest.map(port)),
                };
                out(r, Out::Count)
            }
            Op::Recv(i, len, peek) => out(c.recv(h(i), len, peek), |r| Out::Data(r.data, r.from)),
            Op::Shutdown(i, how) => out(c.shutdown(h(i), how), |_| Out::Unit),
            Op::SockName(i) => out(c.sock_name(h(i)), Out::Addr),
            Op::PeerName(i) => out(c.peer_name(h(i)), Out::Addr),
            Op::SetOpt(i, which, v) => {
                let (l, o) = if which {
                    (SOL_SOCKET, SO_REUSEADDR)
                } else {
                    (IPPROTO_TCP, TCP_NODELAY)
                };
                out(c.setsockopt(h(i), l, o, &(v as i32).to_ne_bytes()), |_| {
                    Out::Unit
                })
            }
            Op::GetOpt(i, w) => {
                let (l, o) = opt(w);
                out(c.getsockopt(h(i), l, o, 16), Out::Value)
            }
            Op::Poll(i) => out(c.poll(h(i), 0), Out::Events),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn protocol_and_server_agree_with_the_stack(ops in prop::collection::vec(op(), 1..80)) {
        let mut model = ModelSide {
            stack: Stack::new(Quiet, net::Config::new(1, LockMode::PerCpu)),
            socks: Vec::new(),
        };
        let clock = Arc::new(AtomicU64::new(0));
        let server = Arc::new(NetServer::with_platform(
            Config::new(1, LockMode::PerCpu),
            Arc::new(Notifier::default()),
            ServerPlatform::with_manual_clock(None, clock),
        ));
        let mut remote = ServerSide {
            client: Client::attach(Direct { server: server.clone(), id: 7 }).unwrap(),
            socks: Vec::new(),
        };
        // A connected TCP pair (slots 1, 2 under listener 0) and two bound
        // UDP sockets (3, 4) first, so random steps find traffic to make.
        let prelude = [
            Op::New(true),
            Op::Bind(0, 1),
            Op::Listen(0, 4),
            Op::New(true),
            Op::Connect(1, 1),
            Op::Accept(0),
            Op::New(false),
            Op::Bind(3, 2),
            Op::New(false),
            Op::Bind(4, 3),
        ];
        for (step, op) in prelude.iter().chain(ops.iter()).enumerate() {
            let want = model.run(op);
            let got = remote.run(op);
            prop_assert_eq!(&got, &want, "step {}: {:?}", step, op);
        }
        // Everything closes on both sides.
        remote.client.reattach().unwrap();
        prop_assert_eq!(server.live_handles(), 0);
        prop_assert_eq!(server.stack().stats().open_sockets, 0);
    }
}
