//! `threads`: N threads, each pinned to its own CPU, synchronising through
//! futexes (std `Mutex`/`Condvar`/`Barrier` and a raw `FUTEX_WAIT`/`WAKE`
//! hand-off), and a counter summed across them.
//!
//! Usage: `threads [N]` (default: the CPUs in our affinity mask).  Thread i
//! pins itself to CPU i with `sched_setaffinity` and reports `sched_getcpu()`;
//! lines come out in thread order, so the output is deterministic.  Exit 0
//! when every check held, 1 otherwise.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use userland::{errno, errno_name, say};

const ROUNDS: u64 = 2000;

fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set` (`cpu` < CPU_SETSIZE).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        Err(errno_name(errno()))
    } else {
        Ok(())
    }
}

fn allowed_cpus() -> usize {
    // SAFETY: as in pin_to; sched_getaffinity fills the set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-pointer of the size we pass.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return 1;
    }
    // SAFETY: CPU_ISSET reads inside `set` for c < CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .count()
}

fn futex(word: &AtomicU32, op: i32, val: u32) -> i64 {
    // SAFETY: `word` is a live, aligned u32; no timeout, no second word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<u8>(),
            0,
            0,
        )
    }
}

/// A raw futex hand-off: the waiter sleeps until the waker flips the word.
fn futex_handoff() -> bool {
    let word = Arc::new(AtomicU32::new(0));
    let w = word.clone();
    let waiter = std::thread::spawn(move || {
        while w.load(Ordering::Acquire) == 0 {
            // EAGAIN when the word already changed; both are fine.
            futex(&w, libc::FUTEX_WAIT, 0);
        }
        w.load(Ordering::Acquire)
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    word.store(7, Ordering::Release);
    futex(&word, libc::FUTEX_WAKE, 1);
    waiter.join().unwrap_or(0) == 7
}

fn main() {
    let n: usize = match userland::args().first() {
        Some(a) => match a.parse() {
            Ok(n) if n >= 1 => n,
            _ => {
                say(&format!("threads: bad thread count {a:?}"));
                std::process::exit(2);
            }
        },
        None => allowed_cpus(),
    };
    say(&format!("threads: {n}"));

    let barrier = Arc::new(Barrier::new(n));
    let counter = Arc::new(Mutex::new(0u64));
    let atomic = Arc::new(AtomicU64::new(0));
    // Each thread waits for its turn (Condvar) to add its CPU to the report,
    // so the report is built in thread order whatever the scheduling.
    let turn = Arc::new((Mutex::new((0usize, Vec::<String>::new())), Condvar::new()));
    let mut handles = Vec::new();
    for i in 0..n {
        let (barrier, counter, atomic, turn) = (
            barrier.clone(),
            counter.clone(),
            atomic.clone(),
            turn.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let pinned = pin_to(i);
            barrier.wait();
            // SAFETY: sched_getcpu has no arguments.
            let cpu = unsafe { libc::sched_getcpu() };
            for _ in 0..ROUNDS {
                *counter.lock().unwrap() += 1;
                atomic.fetch_add(1, Ordering::Relaxed);
            }
            barrier.wait();
            // SAFETY: as above; still pinned, so still on the same CPU.
            let cpu_after = unsafe { libc::sched_getcpu() };
            let (lock, cv) = &*turn;
            let mut state = lock.lock().unwrap();
            while state.0 != i {
                state = cv.wait(state).unwrap();
            }
            let line =
                match pinned {
                    Ok(()) => {
                        format!(
                    "thread {i}: pinned to cpu {i}, runs on cpu {cpu}, still {cpu_after}: {}",
                    if cpu == i as i32 && cpu_after == i as i32 { "ok" } else { "WRONG" }
                )
                    }
                    Err(e) => format!("thread {i}: sched_setaffinity failed: {e}"),
                };
            state.1.push(line);
            state.0 += 1;
            cv.notify_all();
            cpu == i as i32 && cpu_after == i as i32
        }));
    }
    // Join every thread (no short-circuit), then combine.
    let each: Vec<bool> = handles
        .into_iter()
        .map(|h| h.join().unwrap_or(false))
        .collect();
    let all_on_their_cpu = each.iter().all(|&on| on);
    for line in &turn.0.lock().unwrap().1 {
        say(line);
    }
    let expected = n as u64 * ROUNDS;
    let (mutex_sum, atomic_sum) = (*counter.lock().unwrap(), atomic.load(Ordering::Relaxed));
    say(&format!("mutex counter: {mutex_sum} (expected {expected})"));
    say(&format!(
        "atomic counter: {atomic_sum} (expected {expected})"
    ));
    let handoff = futex_handoff();
    say(&format!(
        "futex wait/wake hand-off: {}",
        if handoff { "ok" } else { "FAILED" }
    ));
    // A thread's id differs from the process id; the main thread's equals it.
    // SAFETY: gettid/getpid take no arguments.
    let main_tid_is_pid = unsafe { libc::gettid() == libc::getpid() };
    // SAFETY: as above.
    let other_tid_differs = std::thread::spawn(|| unsafe { libc::gettid() != libc::getpid() })
        .join()
        .unwrap_or(false);
    say(&format!(
        "main tid == pid: {main_tid_is_pid}, other thread tid != pid: {other_tid_differs}"
    ));
    let ok = all_on_their_cpu
        && mutex_sum == expected
        && atomic_sum == expected
        && handoff
        && main_tid_is_pid
        && other_tid_differs;
    say(&format!("threads: {}", if ok { "pass" } else { "FAIL" }));
    std::process::exit(if ok { 0 } else { 1 });
}
