//! `timeclock`: clocks and sleeps — clock_gettime (monotonic never goes
//! back, advances across a sleep), clock_getres, gettimeofday agreeing with
//! CLOCK_REALTIME, nanosleep/clock_nanosleep sleeping at least the asked
//! time, sched_yield.
//!
//! Prints booleans only, never times, so that the output is the same on any
//! kernel and any host speed.  Exit 0 when every check held.

use userland::say;

fn now(clock: libc::clockid_t) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts
}

fn ns(ts: libc::timespec) -> i128 {
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

fn main() {
    let mut ok = true;
    let mut expect = |what: &str, got: bool| {
        say(&format!(
            "{what}: {got}{}",
            if got { "" } else { "  <-- WRONG" }
        ));
        ok &= got;
    };

    let mut prev = ns(now(libc::CLOCK_MONOTONIC));
    let mut monotonic = true;
    for _ in 0..10_000 {
        let t = ns(now(libc::CLOCK_MONOTONIC));
        monotonic &= t >= prev;
        prev = t;
    }
    expect("CLOCK_MONOTONIC never goes back (10000 reads)", monotonic);
    let t = now(libc::CLOCK_MONOTONIC);
    expect(
        "tv_nsec below 1e9",
        t.tv_nsec >= 0 && t.tv_nsec < 1_000_000_000,
    );

    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `res` is a valid out-pointer.
    let r = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut res) };
    expect(
        "clock_getres MONOTONIC is positive and at most 1 ms",
        r == 0 && ns(res) > 0 && ns(res) <= 1_000_000,
    );

    // nanosleep 50 ms: at least 50 ms pass on the monotonic clock.
    let before = ns(now(libc::CLOCK_MONOTONIC));
    let req = libc::timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    // SAFETY: valid request, no remainder asked for.
    let r = unsafe { libc::nanosleep(&req, std::ptr::null_mut()) };
    let slept = ns(now(libc::CLOCK_MONOTONIC)) - before;
    expect("nanosleep 50 ms returns 0", r == 0);
    expect("nanosleep slept at least 50 ms", slept >= 50_000_000);
    expect("nanosleep slept less than 5 s", slept < 5_000_000_000);

    // clock_nanosleep, relative and absolute.
    let before = ns(now(libc::CLOCK_MONOTONIC));
    let req = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    // SAFETY: as above.
    let r = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, std::ptr::null_mut()) };
    expect(
        "clock_nanosleep relative 20 ms",
        r == 0 && ns(now(libc::CLOCK_MONOTONIC)) - before >= 20_000_000,
    );
    let target = ns(now(libc::CLOCK_MONOTONIC)) + 30_000_000;
    let abs = libc::timespec {
        tv_sec: (target / 1_000_000_000) as i64,
        tv_nsec: (target % 1_000_000_000) as i64,
    };
    // SAFETY: as above.
    let r = unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &abs,
            std::ptr::null_mut(),
        )
    };
    expect(
        "clock_nanosleep absolute reaches its deadline",
        r == 0 && ns(now(libc::CLOCK_MONOTONIC)) >= target,
    );
    // A bad request is refused.
    let bad = libc::timespec {
        tv_sec: 0,
        tv_nsec: 2_000_000_000,
    };
    // SAFETY: as above; the kernel refuses tv_nsec >= 1e9.
    let r = unsafe { libc::nanosleep(&bad, std::ptr::null_mut()) };
    expect(
        "nanosleep with tv_nsec >= 1e9 gives EINVAL",
        r == -1 && userland::errno() == libc::EINVAL,
    );

    // std's sleep and Instant agree.
    let i = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(30));
    expect(
        "thread::sleep 30 ms measured by Instant",
        i.elapsed() >= std::time::Duration::from_millis(30),
    );

    // Wall clock: after 2020, and gettimeofday agrees with CLOCK_REALTIME.
    let real = now(libc::CLOCK_REALTIME);
    expect(
        "CLOCK_REALTIME is after 2020-01-01",
        real.tv_sec > 1_577_836_800,
    );
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    // SAFETY: valid out-pointer, no timezone.
    unsafe { libc::gettimeofday(&mut tv, std::ptr::null_mut()) };
    expect(
        "gettimeofday within 2 s of CLOCK_REALTIME",
        (tv.tv_sec - real.tv_sec).abs() <= 2,
    );

    // SAFETY: no arguments.
    expect("sched_yield returns 0", unsafe { libc::sched_yield() } == 0);
    say(&format!("timeclock: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
