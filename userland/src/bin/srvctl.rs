//! srvctl: control of the OS servers of `structure=servers`.
//!
//! `srvctl replace fs [PROGRAM]` replaces the running file server by a
//! new instance (of PROGRAM, read through the file server, or of the
//! program it was started from) while the service goes on
//! (docs/SERVERS.md "Replacing the file server"), and prints what the
//! kernel measured:
//! `srvctl: replaced fs: pid A -> B, switch N us, image N bytes, export N us, start N us`.
//!
//! Exit status: 0 on success, 1 when the kernel refused (the errno is
//! printed; the old server keeps serving), 2 for a usage error.
//!
//! Must not: retry on its own (a refusal is reported as it is).

use abi::ipc::SERVICE_FS;
use userland::ipc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let program = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["replace", "fs"] => "",
        ["replace", "fs", p] => p,
        ["replace", "net", ..] => {
            eprintln!("srvctl: replacing the network server is not supported (ENOSYS)");
            std::process::exit(1);
        }
        _ => {
            eprintln!("usage: srvctl replace fs [PROGRAM]");
            std::process::exit(2);
        }
    };
    match ipc::service_replace(SERVICE_FS, program) {
        Ok(s) => println!(
            "srvctl: replaced fs: pid {} -> {}, switch {} us, image {} bytes, export {} us, start {} us, pre-copy {} bytes in {} us",
            s.old_pid,
            s.new_pid,
            s.switch_ns / 1000,
            s.image_bytes,
            s.export_ns / 1000,
            s.start_ns / 1000,
            s.precopy_bytes,
            s.precopy_ns / 1000
        ),
        Err(e) => {
            eprintln!("srvctl: replace fs: errno {e}");
            std::process::exit(1);
        }
    }
}
