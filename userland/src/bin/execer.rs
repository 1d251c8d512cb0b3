//! `execer`: exec each path given as an argument in a child and report how
//! the kernel refused it.
//!
//! For every PATH it forks; the child calls `execve(PATH, [PATH], [])` and,
//! when that fails, prints `PATH: ERRNO` and exits 0.  If the exec succeeds
//! the new program's own output follows; the parent then prints
//! `PATH: child exited N` / `killed by SIG` only when the child did not exit
//! 0.  Finally `execer: done`.  Used with a corpus of malformed ELF files:
//! each must give `ENOEXEC` (or another errno), never a crash of the kernel.

use std::ffi::CString;
use userland::{errno, errno_name, fork_run, say, wait_for};

fn main() {
    for path in userland::args() {
        let c = match CString::new(path.clone()) {
            Ok(c) => c,
            Err(_) => {
                say(&format!("{path}: bad path"));
                continue;
            }
        };
        let child = fork_run(|| {
            let argv = [c.as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: NULL-terminated arrays of live C strings.
            unsafe { libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            say(&format!("{path}: {}", errno_name(errno())));
            0
        });
        match child {
            Ok(pid) => {
                let how = wait_for(pid);
                if how != "exited 0" {
                    say(&format!("{path}: child {how}"));
                }
            }
            Err(e) => say(&format!("{path}: fork failed: {e}")),
        }
    }
    say("execer: done");
}
