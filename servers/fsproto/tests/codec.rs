//! The codec: every request and reply the encoder accepts decodes to
//! itself; random labels, words and bytes decode to a value or an errno,
//! never a panic, and whatever decodes re-encodes to the same message;
//! malformed messages are refused with the documented errno.

use abi::fcntl::*;
use abi::structs::{Stat, Statfs};
use abi::Errno;
use fsproto::*;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._]{1,12}"
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::collection::vec(name(), 1..5).prop_map(|v| v.join("/")),
        prop::collection::vec(name(), 1..5).prop_map(|v| format!("/{}", v.join("/"))),
    ]
}

fn handle() -> impl Strategy<Value = Handle> {
    any::<u64>().prop_map(Handle)
}

fn at_flags() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH, AT_FLAGS])
}

fn time() -> impl Strategy<Value = Time> {
    prop_oneof![
        Just(Time::Now),
        Just(Time::Omit),
        (any::<i64>(), 0u32..1_000_000_000).prop_map(|(sec, nsec)| Time::At { sec, nsec }),
    ]
}

/// A request, with owned strings (the borrowed form is built in the test).
#[derive(Clone, Debug)]
struct Owned {
    op: u8,
    h: [Handle; 2],
    p: [String; 2],
    n: [u64; 3],
    f: u32,
    data: Vec<u8>,
    t: [Time; 2],
}

fn owned() -> impl Strategy<Value = Owned> {
    (
        0u8..29,
        [handle(), handle()],
        [path(), path()],
        [any::<u64>(), any::<u64>(), any::<u64>()],
        at_flags(),
        prop::collection::vec(any::<u8>(), 0..64),
        [time(), time()],
    )
        .prop_map(|(op, h, p, n, f, data, t)| Owned {
            op,
            h,
            p,
            n,
            f,
            data,
            t,
        })
}

fn request(o: &Owned) -> Request<'_> {
    let at = At {
        dir: o.h[0],
        path: &o.p[0],
        flags: o.f,
    };
    let [n0, n1, n2] = o.n;
    match o.op {
        0 => Request::Attach,
        1 => Request::Open {
            dir: o.h[0],
            path: &o.p[0],
            flags: (n0 as u32) & (O_CREAT | O_EXCL | O_TRUNC | O_NOFOLLOW | O_RDWR),
            mode: (n1 as u32) & 0o7777,
            close: o.h[1],
        },
        2 => Request::Close { handle: o.h[0] },
        3 => Request::Read {
            handle: o.h[0],
            offset: n0,
            len: (n1 % (MAX_PAYLOAD as u64 + 1)) as u32,
        },
        4 => Request::Write {
            handle: o.h[0],
            offset: n0,
            append: n1 % 2 == 0,
            data: &o.data,
        },
        5 => Request::Stat { at },
        6 => Request::Truncate { at, size: n0 >> 1 },
        7 => Request::Mkdir {
            dir: o.h[0],
            path: &o.p[0],
            mode: n0 as u32 & 0o7777,
        },
        8 => Request::Mknod {
            dir: o.h[0],
            path: &o.p[0],
            mode: n0 as u32,
            rdev: n1,
        },
        9 => Request::Unlink {
            dir: o.h[0],
            path: &o.p[0],
            flags: if n0 % 2 == 0 { AT_REMOVEDIR } else { 0 },
        },
        10 => Request::Rename {
            old_dir: o.h[0],
            old: &o.p[0],
            new_dir: o.h[1],
            new: &o.p[1],
            flags: [0, RENAME_NOREPLACE, RENAME_EXCHANGE][(n0 % 3) as usize],
        },
        11 => Request::Link {
            old_dir: o.h[0],
            old: &o.p[0],
            new_dir: o.h[1],
            new: &o.p[1],
            flags: n0 as u32 & (AT_SYMLINK_FOLLOW | AT_EMPTY_PATH),
        },
        12 => Request::Symlink {
            target: &o.p[1],
            dir: o.h[0],
            path: &o.p[0],
        },
        13 => Request::Readlink { at },
        14 => Request::Getdents {
            handle: o.h[0],
            cursor: Cursor {
                position: n0,
                state: n1,
                after: o.p[0].rsplit('/').next().unwrap_or(""),
            },
            max: (n2 % (MAX_DENTS as u64 + 1)) as u32,
        },
        15 => Request::Chmod {
            at,
            mode: n0 as u32 & 0o7777,
        },
        16 => Request::Chown {
            at,
            uid: (n0 % 3 != 0).then_some(n0 as u32 >> 1),
            gid: (n1 % 3 != 0).then_some(n1 as u32 >> 1),
            cred: Cred {
                uid: n2 as u32,
                gid: (n2 >> 32) as u32,
            },
        },
        17 => Request::Utimens {
            at,
            atime: o.t[0],
            mtime: o.t[1],
        },
        18 => Request::Statfs { at },
        19 => Request::Fsync {
            handle: o.h[0],
            whole_fs: n0 % 2 == 0,
        },
        20 => Request::Sync,
        21 => Request::Access {
            at,
            mode: n0 as u32 & 7,
            cred: Cred {
                uid: n1 as u32,
                gid: n2 as u32,
            },
        },
        22 => Request::PathOf { handle: o.h[0] },
        23 => Request::Mount {
            dir: o.h[0],
            path: &o.p[0],
            kind: if n0 % 2 == 0 {
                MountKind::Tmpfs { max_pages: n1 }
            } else {
                MountKind::Ext2 {
                    device: n1 as u32,
                    read_only: n2 % 2 == 0,
                }
            },
        },
        24 => Request::Umount {
            dir: o.h[0],
            path: &o.p[0],
        },
        25 => Request::MapPages {
            handle: o.h[0],
            index: n0 % (1 << 40),
            count: 1 + (n1 % MAX_MAP_PAGES as u64) as u32,
        },
        26 => Request::ReadPages {
            handle: o.h[0],
            offset: n0 % (1 << 60),
            len: n1 % (MAX_IO_BYTES + 1),
        },
        27 => Request::WritePages {
            handle: o.h[0],
            offset: n0 % (1 << 60),
            len: 1 + n1 % MAX_IO_BYTES,
        },
        _ => Request::WriteDone {
            handle: o.h[0],
            offset: n0 % (1 << 60),
            count: n1 % (MAX_IO_BYTES + 1),
            epoch: n2,
        },
    }
}

fn word() -> BoxedStrategy<u64> {
    prop_oneof![Just(0u64), 0u64..64, 0u64..0o10000, any::<u64>()].boxed()
}

fn any_msg() -> impl Strategy<Value = Message> {
    (
        prop_oneof![0u64..30, any::<u64>()],
        [word(), word(), word(), word()],
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(label, words, payload)| Message {
            label,
            words,
            payload,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn requests_round_trip(o in owned()) {
        let r = request(&o);
        let m = r.encode().expect("a well-formed request encodes");
        prop_assert_eq!(m.label, r.op() as u64);
        prop_assert!(m.payload.len() <= MAX_PAYLOAD);
        prop_assert_eq!(Request::decode(m.view()), Ok(r));
    }

    #[test]
    fn random_requests_decode_or_fail(m in any_msg()) {
        // Whatever decodes is a request whose encoding is this message.
        if let Ok(r) = Request::decode(m.view()) {
            prop_assert_eq!(r.encode().expect("a decoded request encodes"), m);
        }
    }

    #[test]
    fn mutated_requests_decode_or_fail(o in owned(), which in 0usize..6, v in any::<u64>(), at in any::<usize>()) {
        // Near-valid messages: one field of a good one changed.
        let mut m = request(&o).encode().unwrap();
        match which {
            0 => m.label = v % 30,
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
    fn random_replies_decode_or_fail(m in any_msg(), op in 0usize..29) {
        let op = Op::ALL[op];
        if let Ok(Ok(r)) = Reply::decode(op, m.view()) {
            prop_assert_eq!(r.encode().expect("a decoded reply encodes"), m);
        }
    }

    #[test]
    fn random_dirents_parse_or_fail(b in prop::collection::vec(any::<u8>(), 0..200)) {
        for d in Dirents::new(&b) {
            if d.is_err() {
                break;
            }
        }
    }

    #[test]
    fn dirents_round_trip(names in prop::collection::vec(("[a-zA-Z0-9._-]{1,40}", any::<u64>(), any::<u8>()), 0..40)) {
        let mut out = Vec::new();
        for (n, ino, kind) in &names {
            prop_assert!(put_dirent(&mut out, usize::MAX, *ino, 7, *kind, n));
        }
        let back: Vec<_> = Dirents::new(&out).map(|d| d.unwrap()).collect();
        prop_assert_eq!(back.len(), names.len());
        for (d, (n, ino, kind)) in back.iter().zip(&names) {
            prop_assert_eq!((d.name, d.ino, d.kind, d.off), (n.as_str(), *ino, *kind, 7));
        }
    }

    #[test]
    fn stat_and_statfs_round_trip(v in prop::collection::vec(any::<u64>(), 30)) {
        let st = Stat {
            st_dev: v[0], st_ino: v[1], st_nlink: v[2], st_mode: v[3] as u32,
            st_uid: v[4] as u32, st_gid: v[5] as u32, __pad0: 0, st_rdev: v[6],
            st_size: v[7] as i64, st_blksize: v[8] as i64, st_blocks: v[9] as i64,
            st_atime: v[10] as i64, st_atime_nsec: v[11] as i64,
            st_mtime: v[12] as i64, st_mtime_nsec: v[13] as i64,
            st_ctime: v[14] as i64, st_ctime_nsec: v[15] as i64, __unused: [0; 3],
        };
        prop_assert_eq!(decode_stat(&encode_stat(&st)), Ok(st));
        let sf = Statfs {
            f_type: v[16] as i64, f_bsize: v[17] as i64, f_blocks: v[18], f_bfree: v[19],
            f_bavail: v[20], f_files: v[21], f_ffree: v[22],
            f_fsid: [v[23] as i32, v[24] as i32], f_namelen: v[25] as i64,
            f_frsize: v[26] as i64, f_flags: v[27] as i64, f_spare: [0; 4],
        };
        prop_assert_eq!(decode_statfs(&encode_statfs(&sf)), Ok(sf));
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
    for label in [0, 30, 1000, u64::MAX] {
        assert_eq!(raw(label, [0; 4], b""), Err(Errno::ENOSYS));
    }
}

#[test]
fn malformed_requests_are_refused() {
    let open = Op::Open as u64;
    // Unknown open flag bit, both access bits, O_CREAT|O_DIRECTORY, a mode
    // with type bits; w3 is the handle to close first (any value).
    assert_eq!(raw(open, [1, 1 << 30, 0, 0], b"a"), Err(Errno::EINVAL));
    assert_eq!(raw(open, [1, 3, 0, 0], b"a"), Err(Errno::EINVAL));
    assert_eq!(
        raw(open, [1, (O_CREAT | O_DIRECTORY) as u64, 0, 0], b"a"),
        Err(Errno::EINVAL)
    );
    assert_eq!(raw(open, [1, 0, 0o100644, 0], b"a"), Err(Errno::EINVAL));
    assert!(matches!(
        raw(open, [1, 0, 0, 9], b"a"),
        Ok(Request::Open {
            close: Handle(9),
            ..
        })
    ));
    // Paths: NUL inside, bad UTF-8, too long.
    assert_eq!(raw(open, [1, 0, 0, 0], b"a\0b"), Err(Errno::EINVAL));
    assert_eq!(raw(open, [1, 0, 0, 0], &[0xff, 0xfe]), Err(Errno::EINVAL));
    let long = vec![b'a'; PATH_MAX];
    assert_eq!(raw(open, [1, 0, 0, 0], &long), Err(Errno::ENAMETOOLONG));
    assert!(raw(open, [1, 0, 0, 0], &long[..MAX_PATH]).is_ok());
    // Reads longer than a payload; a payload over the limit.
    let read = Op::Read as u64;
    assert_eq!(
        raw(read, [1, 0, MAX_PAYLOAD as u64 + 1, 0], b""),
        Err(Errno::EINVAL)
    );
    let big = vec![0u8; MAX_PAYLOAD + 1];
    assert_eq!(
        raw(Op::Write as u64, [1, 0, 0, 0], &big),
        Err(Errno::EINVAL)
    );
    // Two paths whose split point is past the payload.
    assert_eq!(
        raw(Op::Rename as u64, [1, 1, 0, 5], b"abc"),
        Err(Errno::EINVAL)
    );
    // Unknown rename mode (RENAME_WHITEOUT) and unlink flag.
    assert_eq!(
        raw(Op::Rename as u64, [1, 1, RENAME_WHITEOUT as u64, 1], b"ab"),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        raw(
            Op::Unlink as u64,
            [1, AT_SYMLINK_NOFOLLOW as u64, 0, 0],
            b"a"
        ),
        Err(Errno::EINVAL)
    );
    // utimensat: short time block, nanoseconds out of range.
    assert_eq!(
        raw(Op::Utimens as u64, [1, 0, 0, 0], &[0; 31]),
        Err(Errno::EINVAL)
    );
    let mut t = vec![0u8; 32];
    t[8..16].copy_from_slice(&1_000_000_000i64.to_le_bytes());
    assert_eq!(
        raw(Op::Utimens as u64, [1, 0, 0, 0], &t),
        Err(Errno::EINVAL)
    );
    // Encoders refuse what decoders refuse.
    let long = "a".repeat(PATH_MAX);
    assert_eq!(
        Request::Mkdir {
            dir: Handle(1),
            path: &long,
            mode: 0o755
        }
        .encode(),
        Err(Errno::ENAMETOOLONG)
    );
    let big = vec![0u8; MAX_PAYLOAD + 1];
    assert_eq!(
        Request::Write {
            handle: Handle(1),
            offset: 0,
            append: false,
            data: &big
        }
        .encode(),
        Err(Errno::EINVAL)
    );
}

#[test]
fn two_longest_paths_fit() {
    let a = "a".repeat(MAX_PATH);
    let b = "b".repeat(MAX_PATH);
    let r = Request::Rename {
        old_dir: Handle(1),
        old: &a,
        new_dir: Handle(2),
        new: &b,
        flags: 0,
    };
    let m = r.encode().unwrap();
    assert_eq!(Request::decode(m.view()), Ok(r));
}

#[test]
fn error_replies() {
    let m = Message::error(Errno::ENOENT);
    assert_eq!(Reply::decode(Op::Open, m.view()), Ok(Err(Errno::ENOENT)));
    // An errno outside the range travels as EIO.
    assert_eq!(Message::error(Errno(99_999)).label, Errno::EIO.0 as u64);
    // An error label with words or payload is malformed, and so is a
    // label past MAX_ERRNO.
    let mut bad = m.clone();
    bad.words[0] = 1;
    assert_eq!(Reply::decode(Op::Open, bad.view()), Err(Errno::EINVAL));
    let bad = Message {
        label: MAX_ERRNO + 1,
        ..Message::default()
    };
    assert_eq!(Reply::decode(Op::Open, bad.view()), Err(Errno::EINVAL));
    // A read reply whose length word disagrees with its payload.
    let bad = Message {
        label: 0,
        words: [3, 0, 0, 0],
        payload: vec![1, 2],
    };
    assert_eq!(Reply::decode(Op::Read, bad.view()), Err(Errno::EINVAL));
}

#[test]
fn map_pages_requests_and_replies() {
    let r = Request::MapPages {
        handle: Handle(7),
        index: 3,
        count: MAX_MAP_PAGES as u32,
    };
    let m = r.encode().unwrap();
    assert_eq!(Request::decode(m.view()), Ok(r));
    // No pages, too many, or an index whose end no offset can name.
    for (index, count) in [(0, 0), (0, MAX_MAP_PAGES as u64 + 1), (u64::MAX - 1, 1)] {
        let bad = Message {
            label: Op::MapPages as u64,
            words: [7, index, count, 0],
            payload: Vec::new(),
        };
        assert_eq!(Request::decode(bad.view()), Err(Errno::EINVAL));
    }
    let addrs = [0x1000u64, 0x7f00_0000_3000];
    let p = encode_page_addrs(&addrs);
    let m = Reply::Pages(&p).encode().unwrap();
    let Ok(Ok(Reply::Pages(back))) = Reply::decode(Op::MapPages, m.view()) else {
        panic!("a pages reply decodes");
    };
    assert_eq!(page_addrs(back).collect::<Vec<_>>(), addrs);
    // Unaligned, zero, a count that disagrees, none at all: malformed.
    for (n, addrs) in [
        (1, vec![0x1001u64]),
        (1, vec![0]),
        (2, vec![0x1000]),
        (0, vec![]),
    ] {
        let bad = Message {
            label: 0,
            words: [n, 0, 0, 0],
            payload: encode_page_addrs(&addrs),
        };
        assert_eq!(Reply::decode(Op::MapPages, bad.view()), Err(Errno::EINVAL));
    }
    assert_eq!(Reply::Pages(&[]).encode(), Err(Errno::EINVAL));
}

#[test]
fn grants_round_trip_and_refuse_what_no_server_sends() {
    for r in [
        Request::ReadPages {
            handle: Handle(3),
            offset: 4095,
            len: MAX_IO_BYTES,
        },
        Request::WritePages {
            handle: Handle(3),
            offset: 0,
            len: 1,
        },
        Request::WriteDone {
            handle: Handle(3),
            offset: 10,
            count: 0,
            epoch: u64::MAX,
        },
    ] {
        let m = r.encode().unwrap();
        assert_eq!(Request::decode(m.view()), Ok(r));
    }
    // Too long, an empty write grant, a range past the largest offset,
    // a stray word or payload.
    for (op, words, payload) in [
        (Op::ReadPages, [1, 0, MAX_IO_BYTES + 1, 0], vec![]),
        (Op::WritePages, [1, 0, 0, 0], vec![]),
        (Op::WritePages, [1, i64::MAX as u64, 1, 0], vec![]),
        (Op::WriteDone, [1, u64::MAX, 1, 0], vec![]),
        (Op::ReadPages, [1, 0, 1, 1], vec![]),
        (Op::ReadPages, [1, 0, 1, 0], vec![0]),
    ] {
        let bad = Message {
            label: op as u64,
            words,
            payload,
        };
        assert_eq!(
            Request::decode(bad.view()),
            Err(Errno::EINVAL),
            "{op:?} {words:?}"
        );
    }
    assert_eq!(pages_spanned(4095, 2), 2);
    assert_eq!(pages_spanned(4096, 4096), 1);
    assert_eq!(pages_spanned(7, 0), 0);
    assert_eq!(pages_spanned(0, MAX_IO_BYTES), MAX_IO_PAGES as u64 - 1);
    assert_eq!(pages_spanned(1, MAX_IO_BYTES), MAX_IO_PAGES as u64);
    // Replies: holes only in a read, an epoch only from a write, pages
    // exactly when there are bytes.
    let p = encode_page_addrs(&[0, 0x2000]);
    let m = Reply::Grant {
        len: 5000,
        epoch: 0,
        pages: &p,
    }
    .encode()
    .unwrap();
    let Ok(Ok(Reply::Grant {
        len: 5000, pages, ..
    })) = Reply::decode(Op::ReadPages, m.view())
    else {
        panic!("a read grant decodes");
    };
    assert_eq!(page_addrs(pages).collect::<Vec<_>>(), [0, 0x2000]);
    assert_eq!(Reply::decode(Op::WritePages, m.view()), Err(Errno::EINVAL));
    for (words, addrs) in [
        ([1u64, 5, 1, 0], vec![0x1000u64]),
        ([1, 0, 1, 0], vec![0x1001]),
        ([0, 0, 1, 0], vec![0x1000]),
        ([1, 0, 0, 0], vec![]),
        ([1, 0, 2, 0], vec![0x1000]),
        ([MAX_IO_BYTES + 1, 0, 1, 0], vec![0x1000]),
    ] {
        let bad = Message {
            label: 0,
            words,
            payload: encode_page_addrs(&addrs),
        };
        assert_eq!(
            Reply::decode(Op::ReadPages, bad.view()),
            Err(Errno::EINVAL),
            "{words:?}"
        );
    }
    let empty = Reply::Grant {
        len: 0,
        epoch: 0,
        pages: &[],
    }
    .encode()
    .unwrap();
    assert!(matches!(
        Reply::decode(Op::ReadPages, empty.view()),
        Ok(Ok(Reply::Grant { len: 0, .. }))
    ));
    assert_eq!(
        Reply::Grant {
            len: 1,
            epoch: 0,
            pages: &[]
        }
        .encode(),
        Err(Errno::EINVAL)
    );
}
