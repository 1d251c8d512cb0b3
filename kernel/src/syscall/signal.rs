//! Signal system calls: rt_sigaction, rt_sigprocmask, rt_sigreturn,
//! sigaltstack, kill, tgkill, tkill, rt_sigpending.
//!
//! Owns the argument checks (Linux's errno for a bad signal number, a bad
//! `how`, a wrong sigset size); the semantics live in `proc::signal`.
//! Must not: let SIGKILL or SIGSTOP be caught, ignored or blocked.

use core::sync::atomic::Ordering;

use crate::arch::idt::InterruptFrame;
use crate::memory::uaccess::UserAddr;
use crate::proc::signal::{
    self, AltStack, SigAction, MINSIGSTKSZ, NSIG, SIGKILL, SIGSTOP, SS_DISABLE, SS_ONSTACK,
};
use crate::proc::{current_task, process, Task};
use abi::{Errno, SysResult};

fn me() -> Result<&'static Task, Errno> {
    current_task().ok_or(Errno::ENOSYS)
}

fn valid(sig: i32) -> Result<u32, Errno> {
    if sig >= 1 && sig as usize <= NSIG {
        Ok(sig as u32)
    } else {
        Err(Errno::EINVAL)
    }
}

/// `rt_sigaction(sig, act, oldact, sigsetsize)`.
pub fn sys_rt_sigaction(sig: i32, act: UserAddr, old: UserAddr, sigsetsize: u64) -> SysResult {
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = valid(sig)?;
    let t = me()?;
    let new: Option<SigAction> = if !act.is_null() {
        Some(from_user_action(act.read()?))
    } else {
        None
    };
    if new.is_some() && (sig == SIGKILL || sig == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let previous = t.process.signals.action(sig);
    if let Some(mut a) = new {
        a.mask &= !(signal::bit(SIGKILL) | signal::bit(SIGSTOP));
        t.process.signals.set_action(sig, a);
    }
    if !old.is_null() {
        old.write(&to_user_action(&previous))?;
    }
    Ok(0)
}

/// The user's `struct sigaction` as the process keeps it.
fn from_user_action(a: abi::structs::Sigaction) -> SigAction {
    SigAction {
        handler: a.sa_handler,
        flags: a.sa_flags,
        restorer: a.sa_restorer,
        mask: a.sa_mask,
    }
}

/// A kept action as the user's `struct sigaction`.
fn to_user_action(a: &SigAction) -> abi::structs::Sigaction {
    abi::structs::Sigaction {
        sa_handler: a.handler,
        sa_flags: a.flags,
        sa_restorer: a.restorer,
        sa_mask: a.mask,
    }
}

const SIG_BLOCK: i32 = 0;
const SIG_UNBLOCK: i32 = 1;
const SIG_SETMASK: i32 = 2;

/// `rt_sigprocmask(how, set, oldset, sigsetsize)`.
pub fn sys_rt_sigprocmask(how: i32, set: UserAddr, old: UserAddr, sigsetsize: u64) -> SysResult {
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let t = me()?;
    let current = t.signals.mask.load(Ordering::Acquire);
    if !set.is_null() {
        let s: u64 = set.read()?;
        let new = match how {
            SIG_BLOCK => current | s,
            SIG_UNBLOCK => current & !s,
            SIG_SETMASK => s,
            _ => return Err(Errno::EINVAL),
        };
        t.signals.set_mask(new);
    }
    if !old.is_null() {
        old.write(&current)?;
    }
    Ok(0)
}

/// `rt_sigpending(set, sigsetsize)`: like Linux, any size up to the
/// kernel's 8-byte set is accepted and that many bytes are written.
pub fn sys_rt_sigpending(set: UserAddr, sigsetsize: u64) -> SysResult {
    if sigsetsize > 8 {
        return Err(Errno::EINVAL);
    }
    // Pending-and-blocked signals: the deliverable ones are taken on the
    // way out of this very call, so report what stays blocked.
    let t = me()?;
    let blocked = signal::pending_set(t) & t.signals.mask.load(Ordering::Acquire);
    set.write_bytes(&blocked.to_le_bytes()[..sigsetsize as usize])?;
    Ok(0)
}

/// Sleeps until a signal is deliverable (the caller's thread is kicked by
/// every sender); returns EINTR, as `pause` and `rt_sigsuspend` do.
fn wait_for_signal(t: &Task) -> SysResult {
    let queue = crate::sched::WaitQueue::new();
    queue.wait_until(|| signal::has_deliverable(t));
    Err(Errno::EINTR)
}

/// `pause()`.
pub fn sys_pause() -> SysResult {
    wait_for_signal(me()?)
}

/// `rt_sigsuspend(mask, sigsetsize)`: waits with `mask` in force; the
/// handler's frame records the old mask, so it is back after the handler.
pub fn sys_rt_sigsuspend(mask: UserAddr, sigsetsize: u64) -> SysResult {
    if sigsetsize != 8 {
        return Err(Errno::EINVAL);
    }
    let t = me()?;
    let new: u64 = mask.read()?;
    let old = t.signals.mask.load(Ordering::Acquire);
    signal::set_temporary_mask(t, new, old);
    wait_for_signal(t)
}

/// `rt_sigreturn()`.
pub fn sys_rt_sigreturn(frame: &mut InterruptFrame) -> SysResult {
    signal::sigreturn(me()?, frame)
}

/// `sigaltstack(ss, old)`.
pub fn sys_sigaltstack(frame: &InterruptFrame, ss: UserAddr, old: UserAddr) -> SysResult {
    let t = me()?;
    let current = *t.signals.altstack.lock();
    let on_stack = current.flags & SS_DISABLE == 0
        && frame.rsp > current.sp
        && frame.rsp <= current.sp.wrapping_add(current.size);
    if !old.is_null() {
        let mut report = current;
        report.flags = if on_stack {
            SS_ONSTACK
        } else {
            current.flags & SS_DISABLE
        };
        let user = abi::structs::StackT {
            ss_sp: report.sp,
            ss_flags: report.flags,
            __pad0: report.pad as u32,
            ss_size: report.size,
        };
        old.write(&user)?;
    }
    if !ss.is_null() {
        let user: abi::structs::StackT = ss.read()?;
        let new = AltStack {
            sp: user.ss_sp,
            flags: user.ss_flags,
            pad: user.__pad0 as i32,
            size: user.ss_size,
        };
        if on_stack {
            return Err(Errno::EPERM);
        }
        // SS_AUTODISARM (1 << 31) is accepted and ignored.
        let flags = new.flags & !(1 << 31);
        let stored = match flags {
            SS_DISABLE => AltStack {
                sp: 0,
                flags: SS_DISABLE,
                pad: 0,
                size: 0,
            },
            0 | SS_ONSTACK => {
                if new.size < MINSIGSTKSZ {
                    return Err(Errno::ENOMEM);
                }
                AltStack {
                    sp: new.sp,
                    flags: 0,
                    pad: 0,
                    size: new.size,
                }
            }
            _ => return Err(Errno::EINVAL),
        };
        *t.signals.altstack.lock() = stored;
    }
    Ok(0)
}

/// `kill(pid, sig)`: pid > 0 a process; 0 the caller's process group,
/// < -1 the group -pid (ESRCH when it has no member); -1 (every process)
/// is refused with EPERM.
pub fn sys_kill(pid: i32, sig: i32) -> SysResult {
    let t = me()?;
    let sig_num = if sig == 0 { 0 } else { valid(sig)? };
    let target = match pid {
        p if p > 0 => process::find_process(p).ok_or(Errno::ESRCH)?,
        -1 => return Err(Errno::EPERM),
        p => {
            let group = if p == 0 {
                t.process.pgid.load(Ordering::Acquire)
            } else {
                p.checked_neg().ok_or(Errno::ESRCH)?
            };
            // Zombies are still members (as on Linux) but get nothing.
            let members = process::processes_where(|m| m.pgid.load(Ordering::Acquire) == group);
            if members.is_empty() {
                return Err(Errno::ESRCH);
            }
            if sig_num != 0 {
                for m in members.iter().filter(|m| !m.zombie.load(Ordering::Acquire)) {
                    signal::send_to_process(m, sig_num);
                }
            }
            return Ok(0);
        }
    };
    if target.zombie.load(Ordering::Acquire) {
        return Ok(0);
    }
    if sig_num != 0 {
        signal::send_to_process(&target, sig_num);
    }
    Ok(0)
}

/// `tgkill(tgid, tid, sig)`.
pub fn sys_tgkill(tgid: i32, tid: i32, sig: i32) -> SysResult {
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let sig_num = if sig == 0 { 0 } else { valid(sig)? };
    let task = process::find_task(tid).ok_or(Errno::ESRCH)?;
    if task.process.pid != tgid {
        return Err(Errno::ESRCH);
    }
    if sig_num != 0 {
        signal::send_to_task(&task, sig_num);
    }
    Ok(0)
}

/// `tkill(tid, sig)`.
pub fn sys_tkill(tid: i32, sig: i32) -> SysResult {
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let sig_num = if sig == 0 { 0 } else { valid(sig)? };
    let task = process::find_task(tid).ok_or(Errno::ESRCH)?;
    if sig_num != 0 {
        signal::send_to_task(&task, sig_num);
    }
    Ok(0)
}
