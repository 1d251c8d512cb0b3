//! `cargo run -p comparison --example fetch_linux`: fetch (once) and cache
//! the Linux kernel image exactly as the tests and `comparison run --system
//! linux` do (`comparison::linux::ensure_kernel`), and print its path.
//! `tools/setup.sh` runs it so no test has to skip for want of Linux.
//! Exit 1, saying why, if it cannot be had.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = comparison::build::workspace_root();
    let found = comparison::build::target_dir(&root)
        .and_then(|target| comparison::linux::ensure_kernel(&target));
    match found {
        Ok(kernel) => {
            println!("{} ({})", kernel.vmlinuz.display(), kernel.package);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fetch_linux: {e:#}");
            ExitCode::FAILURE
        }
    }
}
