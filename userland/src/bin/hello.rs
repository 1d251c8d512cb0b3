//! `hello`: the smallest check that a static program starts correctly.
//!
//! Prints its arguments, its environment (sorted), whether it is PID 1, and
//! exits with the code named by an `exit=N` argument (default 0).  The output
//! is the same on any kernel that sets up argv/envp/auxv the Linux way.
//! With a `crash` argument it then writes to NULL instead of exiting, so
//! PID 1 dies of SIGSEGV (status 128 + 11 on both systems).

use userland::say;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    say("hello: started");
    say(&format!("argc: {}", args.len()));
    for (i, arg) in args.iter().enumerate() {
        say(&format!("argv[{i}]: {arg}"));
    }
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    for var in &env {
        say(&format!("env: {var}"));
    }
    say(&format!("pid is 1: {}", std::process::id() == 1));
    // The auxiliary vector: values that must be present and sane.
    // SAFETY: getauxval only reads the process's auxv.
    let (pagesz, random, entry) = unsafe {
        (
            libc::getauxval(libc::AT_PAGESZ),
            libc::getauxval(libc::AT_RANDOM),
            libc::getauxval(libc::AT_ENTRY),
        )
    };
    say(&format!("AT_PAGESZ: {pagesz}"));
    say(&format!("AT_RANDOM present: {}", random != 0));
    say(&format!("AT_ENTRY present: {}", entry != 0));
    let code = args
        .iter()
        .skip(1)
        .find_map(|a| a.strip_prefix("exit="))
        .map(|v| match v.parse::<i32>() {
            Ok(code) => code,
            Err(_) => {
                say(&format!("hello: bad exit code {v:?}"));
                2
            }
        })
        .unwrap_or(0);
    if args.iter().any(|a| a == "crash") {
        say("hello: writing to NULL");
        // SAFETY: deliberately not: the write faults and the kernel must
        // kill this process with SIGSEGV.
        unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
    }
    say(&format!("hello: exiting with {code}"));
    std::process::exit(code);
}
