//! Build a boot bundle (newc cpio) for the built-in loader from files on
//! disk: `mkbundle OUT.cpio NAME=PATH...`, e.g.
//! `mkbundle bundle.cpio limine.conf=limine.conf boot/kernel.elf=target/.../kernel`.
//! Directories named by the members are added first.  Must not: overwrite
//! anything but OUT.

use bootfmt::cpio::NewcWriter;
use std::{collections::BTreeSet, env, fs, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: mkbundle OUT.cpio NAME=PATH...");
        return ExitCode::from(2);
    }
    let mut members = Vec::new();
    for arg in &args[1..] {
        let Some((name, path)) = arg.split_once('=') else {
            eprintln!("mkbundle: {arg:?} is not NAME=PATH");
            return ExitCode::from(2);
        };
        match fs::read(path) {
            Ok(data) => members.push((name.trim_start_matches('/').to_string(), data)),
            Err(e) => {
                eprintln!("mkbundle: cannot read {path}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let mut dirs = BTreeSet::new();
    for (name, _) in &members {
        let mut prefix = String::new();
        for part in name
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            dirs.insert(prefix.clone());
        }
    }
    let mut w = NewcWriter::new();
    for d in &dirs {
        w.add_dir(d, 0o755);
    }
    for (name, data) in &members {
        w.add_file(name, 0o644, data);
    }
    if let Err(e) = fs::write(&args[0], w.finish()) {
        eprintln!("mkbundle: cannot write {}: {e}", args[0]);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
