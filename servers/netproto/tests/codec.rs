//! The codec: every request and reply the encoder accepts decodes to
//! itself; random labels, words and bytes decode to a value or an errno,
//! never a panic, and whatever decodes re-encodes to the same message;
//! malformed messages are refused with the documented errno.

use std::net::{Ipv4Addr, SocketAddrV4};

use abi::Errno;
use netproto::*;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(Ipv4Addr::from(ip), port))
}

/// A request's fields, owned (the borrowed request is built from them).
#[derive(Clone, Debug)]
struct Owned {
    op: usize,
    h: Handle,
    a: SocketAddrV4,
    n: [u64; 3],
    b: [bool; 2],
    data: Vec<u8>,
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        0usize..18,
        any::<u64>().prop_map(Handle),
        addr(),
        [any::<u64>(), any::<u64>(), any::<u64>()],
        [any::<bool>(), any::<bool>()],
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(op, h, a, n, b, data)| Owned {
            op,
            h,
            a,
            n,
            b,
            data,
        })
}

fn request(o: &Owned) -> Request<'_> {
    let handle = o.h;
    let [x, y, z] = o.n;
    match Op::ALL[o.op] {
        Op::Attach => Request::Attach { notify: x },
        Op::Socket => Request::Socket {
            kind: if o.b[0] { Kind::Stream } else { Kind::Dgram },
            protocol: x as u32,
        },
        Op::Close => Request::Close { handle },
        Op::Bind => Request::Bind { handle, addr: o.a },
        Op::Listen => Request::Listen {
            handle,
            backlog: x as i32,
        },
        Op::Accept => Request::Accept {
            handle,
            arm: z as u32 & EVENT_BITS,
        },
        Op::Connect => Request::Connect { handle, addr: o.a },
        Op::Send => {
            let more = o.b[0];
            Request::Send {
                handle,
                dest: (!more && o.b[1]).then_some(o.a),
                more,
                offset: (y % (MAX_DATAGRAM as u64 - 200)) as u32,
                data: &o.data,
                arm: z as u32 & EVENT_BITS,
            }
        }
        Op::Recv => Request::Recv {
            handle,
            len: (x % (MAX_RECV as u64 + 1)) as u32,
            peek: o.b[0],
            arm: z as u32 & EVENT_BITS,
        },
        Op::RecvMore => Request::RecvMore {
            handle,
            token: x.max(1),
            offset: (y % (MAX_RECV as u64 + 1)) as u32,
        },
        Op::Shutdown => Request::Shutdown {
            handle,
            how: (x % 3) as u32,
        },
        Op::SockName => Request::SockName { handle },
        Op::PeerName => Request::PeerName { handle },
        Op::SetOpt => Request::SetOpt {
            handle,
            level: x as i32,
            name: y as i32,
            value: &o.data[..o.data.len().min(MAX_OPT)],
        },
        Op::GetOpt => Request::GetOpt {
            handle,
            level: x as i32,
            name: y as i32,
            len: (z % (MAX_OPT as u64 + 1)) as u32,
        },
        Op::Poll => Request::Poll {
            handle,
            arm: x as u32 & EVENT_BITS,
        },
        Op::PollChanged => Request::PollChanged {
            max: (x % MAX_CHANGES as u64) as u32 + 1,
            shard: o.b[0].then_some(y as u32),
        },
        Op::NotifyShard => Request::NotifyShard {
            shard: y as u32,
            notify: x,
        },
    }
}

fn word() -> BoxedStrategy<u64> {
    prop_oneof![Just(0u64), 0u64..4, 0u64..70000, any::<u64>()].boxed()
}

fn any_msg() -> impl Strategy<Value = Message> {
    (
        prop_oneof![0u64..20, any::<u64>()],
        [word(), word(), word(), word()],
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            (0usize..20).prop_map(|n| vec![0u8; n * CHANGE_RECORD]),
        ],
    )
        .prop_map(|(label, words, payload)| Message {
            label,
            words,
            payload,
        })
}

/// A successful reply for operation index `op`, from owned fields.
fn reply(o: &Owned, records: &[u8]) -> (Op, Message) {
    let op = Op::ALL[o.op];
    let [x, y, _] = o.n;
    let r = match op {
        Op::Socket => Reply::Handle(o.h),
        Op::Accept => Reply::Accepted {
            handle: o.h,
            peer: o.a,
            local: SocketAddrV4::new(Ipv4Addr::LOCALHOST, y as u16),
        },
        Op::Send => Reply::Sent { count: x },
        Op::Recv => Reply::Received {
            len: o.data.len() as u64,
            from: o.b[0].then_some(o.a),
            data: &o.data,
            token: 0,
        },
        Op::RecvMore => Reply::More {
            data: &o.data,
            left: y % (MAX_RECV as u64),
        },
        Op::SockName | Op::PeerName => Reply::Addr(o.a),
        Op::GetOpt => Reply::Value(&o.data[..o.data.len().min(MAX_OPT)]),
        Op::Poll => Reply::Events(x as u32 & EVENT_BITS),
        Op::PollChanged => Reply::Changed {
            changes: Changes::new(records).unwrap(),
            more: o.b[1],
        },
        _ => Reply::Done,
    };
    (op, r.encode().expect("a well-formed reply encodes"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn requests_round_trip(o in owned()) {
        let r = request(&o);
        let m = r.encode().expect("a well-formed request encodes");
        prop_assert_eq!(m.label, r.op() as u64);
        prop_assert_eq!(Request::decode(m.view()), Ok(r));
    }

    #[test]
    fn replies_round_trip(o in owned(), evs in prop::collection::vec((any::<u64>(), any::<u32>()), 0..40)) {
        let mut records = Vec::new();
        for (h, e) in &evs {
            put_change(&mut records, Handle(*h), *e);
        }
        let (op, m) = reply(&o, &records);
        let r = Reply::decode(op, m.view()).expect("a reply of its op").expect("success");
        prop_assert_eq!(r.encode().unwrap(), m.clone());
        if let Reply::Changed { changes, .. } = r {
            let got: Vec<_> = changes.iter().collect();
            let want: Vec<_> = evs.iter().map(|&(h, e)| (Handle(h), e & EVENT_BITS)).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn random_requests_decode_or_fail(m in any_msg()) {
        if let Ok(r) = Request::decode(m.view()) {
            prop_assert_eq!(r.encode().expect("a decoded request encodes"), m);
        }
    }

    #[test]
    fn mutated_requests_decode_or_fail(o in owned(), which in 0usize..6, v in any::<u64>(), at in any::<usize>()) {
        let mut m = request(&o).encode().unwrap();
        match which {
            0 => m.label = v % 20,
            1..=4 => m.words[which - 1] = v,
            _ if !m.payload.is_empty() => {
                let i = at % m.payload.len();
                m.payload[i] = v as u8;
            }
            _ => m.payload.push(v as u8),
        }
        if let Ok(r) = Request::decode(m.view()) {
            prop_assert_eq!(r.encode().expect("a decoded request encodes"), m);
        }
    }

    #[test]
    fn random_replies_decode_or_fail(m in any_msg(), op in 0usize..18) {
        let op = Op::ALL[op];
        if let Ok(Ok(r)) = Reply::decode(op, m.view()) {
            prop_assert_eq!(r.encode().expect("a decoded reply encodes"), m);
        }
    }

    #[test]
    fn address_words_round_trip(a in addr()) {
        prop_assert_eq!(word_addr(addr_word(a)), Ok(a));
    }
}

fn raw(label: u64, words: [u64; 4], payload: &[u8]) -> Result<Request<'_>, Errno> {
    Request::decode(MsgRef {
        label,
        words,
        payload,
    })
}

#[test]
fn unknown_operations_are_enosys() {
    for label in [0, 19, 1000, u64::MAX] {
        assert_eq!(raw(label, [0; 4], &[]), Err(Errno::ENOSYS));
    }
}

#[test]
fn malformed_requests_are_refused() {
    let e = Err(Errno::EINVAL);
    // Unused words must be zero; payloads only where an operation has one.
    assert_eq!(raw(Op::Attach as u64, [1, 2, 0, 0], &[]), e);
    assert_eq!(raw(Op::Close as u64, [5, 0, 0, 1], &[]), e);
    assert_eq!(raw(Op::Accept as u64, [5, 0, 0, 0], b"x"), e);
    // Socket kinds other than stream and datagram.
    assert_eq!(raw(Op::Socket as u64, [3, 0, 0, 0], &[]), e);
    assert_eq!(raw(Op::Socket as u64, [1, 1 << 32, 0, 0], &[]), e);
    // An address word with bits above the port.
    assert_eq!(raw(Op::Bind as u64, [5, 1 << 48, 0, 0], &[]), e);
    // Send: unknown flags, a destination word without the flag, a
    // destination on a staged piece, a staged datagram over 65507 bytes.
    assert_eq!(raw(Op::Send as u64, [5, 0, 4, 0], &[]), e);
    assert_eq!(raw(Op::Send as u64, [5, 7, 0, 0], &[]), e);
    assert_eq!(
        raw(Op::Send as u64, [5, 7, SEND_DEST | SEND_MORE, 0], &[]),
        e
    );
    assert_eq!(
        raw(
            Op::Send as u64,
            [5, 0, SEND_MORE, MAX_DATAGRAM as u64],
            b"x"
        ),
        Err(Errno::EMSGSIZE)
    );
    assert!(raw(
        Op::Send as u64,
        [5, 0, SEND_MORE, MAX_DATAGRAM as u64 - 1],
        b"x"
    )
    .is_ok());
    // Recv over MAX_RECV, unknown flags; RecvMore without a token.
    assert_eq!(raw(Op::Recv as u64, [5, MAX_RECV as u64 + 1, 0, 0], &[]), e);
    assert_eq!(raw(Op::Recv as u64, [5, 10, 2, 0], &[]), e);
    assert_eq!(raw(Op::RecvMore as u64, [5, 0, 0, 0], &[]), e);
    // Shutdown beyond SHUT_RDWR; option values and buffers over MAX_OPT.
    assert_eq!(raw(Op::Shutdown as u64, [5, 3, 0, 0], &[]), e);
    assert_eq!(raw(Op::SetOpt as u64, [5, 1, 2, 0], &[0; MAX_OPT + 1]), e);
    assert_eq!(
        raw(Op::GetOpt as u64, [5, 1, 2, MAX_OPT as u64 + 1], &[]),
        e
    );
    // Poll: arming bits that are not readiness (EPOLLET, EPOLLONESHOT).
    assert_eq!(raw(Op::Poll as u64, [5, 1 << 31, 0, 0], &[]), e);
    assert_eq!(raw(Op::Poll as u64, [5, 1 << 30, 0, 0], &[]), e);
    // The same for the bits Recv, Send and Accept arm on EAGAIN.
    assert_eq!(raw(Op::Recv as u64, [5, 10, 0, 1 << 31], &[]), e);
    assert_eq!(raw(Op::Accept as u64, [5, 1 << 30, 0, 0], &[]), e);
    assert_eq!(raw(Op::Send as u64, [5, 0, 1 << 62, 0], &[]), e);
    assert!(raw(Op::Send as u64, [5, 0, 1 << 32, 0], &[]).is_ok());
    // A PollChanged shard beyond u32; NotifyShard's unused words.
    assert_eq!(raw(Op::PollChanged as u64, [1, 1 << 33, 0, 0], &[]), e);
    assert_eq!(raw(Op::NotifyShard as u64, [7, 1, 1, 0], &[]), e);
    // PollChanged of 0 or more than a reply holds.
    assert_eq!(raw(Op::PollChanged as u64, [0, 0, 0, 0], &[]), e);
    assert_eq!(
        raw(
            Op::PollChanged as u64,
            [MAX_CHANGES as u64 + 1, 0, 0, 0],
            &[]
        ),
        e
    );
    // Any payload over MAX_PAYLOAD.
    assert_eq!(
        raw(Op::Send as u64, [5, 0, 0, 0], &vec![0; MAX_PAYLOAD + 1]),
        e
    );
}

#[test]
fn malformed_replies_are_refused() {
    let dec = |op: Op, words: [u64; 4], payload: &[u8]| {
        Reply::decode(
            op,
            MsgRef {
                label: 0,
                words,
                payload,
            },
        )
        .map(|r| r.map(|_| ()))
    };
    // A receive whose payload is not the head, or a token without a rest.
    assert!(dec(Op::Recv, [10, 0, 0, 0], &[0; 9]).is_err());
    assert!(dec(Op::Recv, [10, 0, 0, 7], &[0; 10]).is_err());
    assert!(dec(
        Op::Recv,
        [MAX_PAYLOAD as u64 + 1, 0, 0, 0],
        &[0; MAX_PAYLOAD]
    )
    .is_err());
    assert!(dec(
        Op::Recv,
        [MAX_PAYLOAD as u64 + 1, 0, 0, 3],
        &[0; MAX_PAYLOAD]
    )
    .is_ok());
    // Change records: a count that disagrees, a reserved word, bad events.
    let mut rec = Vec::new();
    put_change(&mut rec, Handle(9), 1);
    assert!(dec(Op::PollChanged, [1, 0, 0, 0], &rec).is_ok());
    assert!(dec(Op::PollChanged, [2, 0, 0, 0], &rec).is_err());
    let mut bad = rec.clone();
    bad[15] = 1;
    assert!(dec(Op::PollChanged, [1, 0, 0, 0], &bad).is_err());
    let mut bad = rec.clone();
    bad[11] = 0x80;
    assert!(dec(Op::PollChanged, [1, 0, 0, 0], &bad).is_err());
    // Error replies: errno range, no words, no payload.
    let err = |label, words, payload: &[u8]| {
        Reply::decode(
            Op::Send,
            MsgRef {
                label,
                words,
                payload,
            },
        )
        .map(|r| r.map(|_| ()))
    };
    assert_eq!(err(11, [0; 4], &[]), Ok(Err(Errno::EAGAIN)));
    assert!(err(MAX_ERRNO + 1, [0; 4], &[]).is_err());
    assert!(err(11, [1, 0, 0, 0], &[]).is_err());
    assert!(err(11, [0; 4], b"x").is_err());
}
