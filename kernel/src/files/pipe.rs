//! Pipes: a bounded byte buffer between a read end and a write end.
//!
//! Owns the buffer and the counts of open read and write ends.
//! Invariants: at most `CAPACITY` bytes are buffered; a write of at most
//! `PIPE_BUF` bytes is never interleaved with another; a reader sees end of
//! file only when no writer is left and the buffer is empty; a writer with
//! no reader left gets `EPIPE` and its process SIGPIPE.
//!
//! Blocking: readers and writers wait on the pipe's `PollWaiters` (which
//! also wakes poll/select/epoll subscribers); the state changes under
//! `state` and `notify` runs *after* releasing it (the wait condition takes
//! `state` under the queue lock; see `pollwait`).  A pending signal ends a
//! wait with `EINTR` (or the count done so far).
//!
//! Must not: block while holding `state`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::file::{POLLERR, POLLHUP, POLLIN, POLLOUT};
use super::pollwait::PollWaiters;
use crate::sched::IrqSpinLock;
use abi::Errno;

/// Bytes a pipe buffers (Linux's default, 16 pages).
pub const CAPACITY: usize = 65536;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

struct State {
    buf: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

pub struct Pipe {
    state: IrqSpinLock<State>,
    waiters: PollWaiters,
}

impl Pipe {
    /// A pipe with one read end and one write end open.
    pub fn new() -> Arc<Pipe> {
        Arc::new(Pipe {
            state: IrqSpinLock::new(State {
                buf: VecDeque::new(),
                readers: 1,
                writers: 1,
            }),
            waiters: PollWaiters::new(),
        })
    }

    pub fn read(&self, out: &mut [u8], nonblock: bool) -> Result<usize, Errno> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut s = self.state.lock();
                if !s.buf.is_empty() {
                    let n = out.len().min(s.buf.len());
                    for (dst, src) in out.iter_mut().zip(s.buf.drain(..n)) {
                        *dst = src;
                    }
                    drop(s);
                    self.waiters.notify();
                    return Ok(n);
                }
                if s.writers == 0 {
                    return Ok(0);
                }
                if nonblock {
                    return Err(Errno::EAGAIN);
                }
            }
            if crate::proc::signal_pending() {
                return Err(Errno::EINTR);
            }
            self.waiters.wait_until_deadline(
                || {
                    let s = self.state.lock();
                    !s.buf.is_empty() || s.writers == 0 || crate::proc::signal_pending()
                },
                None,
            );
        }
    }

    pub fn write(&self, src: &[u8], nonblock: bool) -> Result<usize, Errno> {
        let mut done = 0;
        while done < src.len() || src.is_empty() {
            // Small writes go in whole; large ones in whatever room there is.
            let need = if src.len() <= PIPE_BUF {
                src.len() - done
            } else {
                1
            };
            {
                let mut s = self.state.lock();
                if s.readers == 0 {
                    drop(s);
                    if let Some(p) = crate::proc::current() {
                        crate::proc::signal::send_to_process(&p, crate::proc::signal::SIGPIPE);
                    }
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EPIPE)
                    };
                }
                if src.is_empty() {
                    return Ok(0);
                }
                let room = CAPACITY - s.buf.len();
                if room >= need.max(1) {
                    let n = room.min(src.len() - done);
                    s.buf.extend(&src[done..done + n]);
                    done += n;
                    drop(s);
                    self.waiters.notify();
                    continue;
                }
                if nonblock {
                    return if done > 0 {
                        Ok(done)
                    } else {
                        Err(Errno::EAGAIN)
                    };
                }
            }
            if crate::proc::signal_pending() {
                return if done > 0 {
                    Ok(done)
                } else {
                    Err(Errno::EINTR)
                };
            }
            self.waiters.wait_until_deadline(
                || {
                    let s = self.state.lock();
                    CAPACITY - s.buf.len() >= need
                        || s.readers == 0
                        || crate::proc::signal_pending()
                },
                None,
            );
        }
        Ok(done)
    }

    /// Another read end (an open of `/proc/<pid>/fd/N`).
    pub fn open_reader(&self) {
        self.state.lock().readers += 1;
    }

    /// Another write end.
    pub fn open_writer(&self) {
        self.state.lock().writers += 1;
    }

    pub fn close_reader(&self) {
        self.state.lock().readers -= 1;
        self.waiters.notify();
    }

    pub fn close_writer(&self) {
        self.state.lock().writers -= 1;
        self.waiters.notify();
    }

    /// Where readiness changes of this pipe (both ends) are announced.
    pub fn waiters(&self) -> &PollWaiters {
        &self.waiters
    }

    /// Bytes waiting to be read.
    pub fn bytes_buffered(&self) -> usize {
        self.state.lock().buf.len()
    }

    pub fn poll_read(&self) -> i16 {
        let s = self.state.lock();
        let mut r = 0;
        if !s.buf.is_empty() {
            r |= POLLIN;
        }
        if s.writers == 0 {
            r |= POLLHUP;
        }
        r
    }

    pub fn poll_write(&self) -> i16 {
        let s = self.state.lock();
        if s.readers == 0 {
            return POLLERR | POLLOUT;
        }
        if CAPACITY - s.buf.len() >= PIPE_BUF {
            POLLOUT
        } else {
            0
        }
    }
}
