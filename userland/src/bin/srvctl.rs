//! srvctl: control of the OS servers of `structure=servers`.
//!
//! `srvctl replace fs [PROGRAM]` replaces the running file server by a
//! new instance (of PROGRAM, read through the file server, or of the
//! program it was started from) while the service goes on
//! (docs/SERVERS.md "Replacing the file server"), and prints what the
//! kernel measured:
//! `srvctl: replaced fs: pid A -> B, switch N us, image N bytes, export N us, start N us`.
//! `srvctl replace net [PROGRAM]` does the same for the network server
//! (docs/SERVERS.md "Replacing the network server": the successor adopts
//! the state arena): `srvctl: replaced net: pid A -> B, switch N us,
//! quiesce N us, adopt N us, arena N KiB, start N us`.
//!
//! Exit status: 0 on success, 1 when the kernel refused (the errno is
//! printed; the old server keeps serving), 2 for a usage error.
//!
//! Must not: retry on its own (a refusal is reported as it is).

use abi::ipc::{SERVICE_FS, SERVICE_NET};
use userland::ipc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (net, program) = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["replace", "fs"] => (false, ""),
        ["replace", "fs", p] => (false, p),
        ["replace", "net"] => (true, ""),
        ["replace", "net", p] => (true, p),
        _ => {
            eprintln!("usage: srvctl replace fs|net [PROGRAM]");
            std::process::exit(2);
        }
    };
    if net {
        match ipc::service_replace(SERVICE_NET, program) {
            Ok(s) => println!(
                "srvctl: replaced net: pid {} -> {}, switch {} us, quiesce {} us, adopt {} us, arena {} KiB, start {} us",
                s.old_pid,
                s.new_pid,
                s.switch_ns / 1000,
                s.export_ns / 1000,
                s.import_ns / 1000,
                s.image_bytes / 1024,
                s.start_ns / 1000
            ),
            Err(e) => {
                eprintln!("srvctl: replace net: errno {e}");
                std::process::exit(1);
            }
        }
        return;
    }
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
