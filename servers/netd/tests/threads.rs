//! Concurrent clients on real threads: 8 clients on a 2-thread server,
//! each with a notification handler thread (the kernel's model), block on
//! accept and recv through `Readiness` while the others connect and send.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use netd::client::Client;
use netproto::Kind;

const CLIENTS: usize = 8;
const ROUNDS: usize = 20;

#[test]
fn concurrent_clients_echo_through_each_other() {
    let st = setup(2);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut threads = Vec::new();
    for i in 0..CLIENTS {
        let worker = i % 2;
        let end = st.conn().connect(worker);
        let id = end.id();
        let (ready, disp) = dispatcher(st.conn(), id, worker);
        let barrier = barrier.clone();
        threads.push((
            id,
            disp,
            std::thread::spawn(move || {
                let c = Client::attach(end).unwrap();
                // Serve: a listener on our port; connect to the next client's.
                let l = c.socket(Kind::Stream).unwrap();
                c.bind(l, lo(9000 + i as u16)).unwrap();
                c.listen(l, 8).unwrap();
                barrier.wait();
                let s = c.socket(Kind::Stream).unwrap();
                let to = lo(9000 + ((i + 1) % CLIENTS) as u16);
                match c.connect(s, to) {
                    Err(abi::Errno::EINPROGRESS) => {}
                    r => panic!("connect: {r:?}"),
                }
                ready
                    .block_on(&c, s, OUT, || match c.connect(s, to) {
                        Err(abi::Errno::EALREADY) => Err(abi::Errno::EAGAIN),
                        r => r,
                    })
                    .unwrap();
                let (acc, _, _) = ready.block_on(&c, l, IN, || c.accept(l)).unwrap();
                for r in 0..ROUNDS {
                    let msg = format!("client {i} round {r}");
                    assert_eq!(c.send_stream(s, msg.as_bytes()).unwrap(), msg.len());
                    // Echo what the previous client sends us.
                    let mut got = Vec::new();
                    let want = format!("client {} round {r}", (i + CLIENTS - 1) % CLIENTS);
                    while got.len() < want.len() {
                        let d = ready
                            .block_on(&c, acc, IN, || c.recv(acc, want.len() - got.len(), false))
                            .unwrap()
                            .data;
                        assert!(!d.is_empty(), "early EOF");
                        got.extend(d);
                    }
                    assert_eq!(got, want.as_bytes());
                    c.send_stream(acc, &got).unwrap();
                    // Our own message comes back from the next client.
                    let mut back = Vec::new();
                    while back.len() < msg.len() {
                        back.extend(
                            ready
                                .block_on(&c, s, IN, || c.recv(s, msg.len() - back.len(), false))
                                .unwrap()
                                .data,
                        );
                    }
                    assert_eq!(back, msg.as_bytes());
                }
                barrier.wait();
                for h in [s, acc, l] {
                    c.close(h).unwrap();
                }
            }),
        ));
    }
    for (id, disp, t) in threads {
        t.join().expect("client thread");
        stop_dispatcher(st.conn(), id, disp);
    }
    assert_eq!(st.server.live_handles(), 0);
    assert_eq!(st.server.stack().stats().open_sockets, 0);
    st.stop();
}
