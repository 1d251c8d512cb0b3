//! The program-starting workloads: `exec_static` (fork + execve + wait of
//! a tiny and of a 2 MiB static executable) and `spawn_shell` (`sh -c true`,
//! lmbench's classic).
//!
//! `exec_static` needs nothing from the system: its set-up writes the two
//! executables (hand-assembled x86_64 ELF files, `ET_EXEC` at 0x400000, one
//! read+execute segment) into the workload's directory.  `spawn_shell` runs
//! `/bin/sh` (the harness puts Debian's busybox-static there).  The forked
//! child only calls `execve` and `_exit` (the worker may be one thread of
//! many), and every argument vector is built before the measured loop.

use crate::sys::{self, Fail, Res};
use crate::workload::{Ctx, Op};

/// Size of the big executable of `exec_static`.
pub const BIG_BYTES: usize = 2 << 20;
/// The big executable reads one byte every this many bytes (32 pages of its
/// 512: about what a small program's start-up touches).
const BIG_STRIDE: u32 = 64 * 1024;
/// Load address of both executables (the classic non-PIE base).
const BASE: u32 = 0x40_0000;

fn small_path(ctx: &Ctx) -> String {
    format!("{}/small", ctx.dir)
}

fn big_path(ctx: &Ctx) -> String {
    format!("{}/big", ctx.dir)
}

/// A static x86_64 executable of `size` bytes (at least its headers and
/// code) that reads one byte at each `stride` from its first byte through
/// its whole image, then calls `exit(0)`.  One `PT_LOAD` maps the whole
/// file read+execute at `BASE`; the rest of the file is zeros.
pub fn static_elf(size: usize, stride: u32) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let code_at = EHDR + PHDR;
    let pages = (size as u32).div_ceil(stride).max(1);
    let mut code = Vec::new();
    code.push(0xbe); // mov esi, BASE
    code.extend_from_slice(&BASE.to_le_bytes());
    code.push(0xb9); // mov ecx, pages
    code.extend_from_slice(&pages.to_le_bytes());
    code.extend_from_slice(&[0x8a, 0x06]); // L: mov al, [rsi]
    code.extend_from_slice(&[0x48, 0x81, 0xc6]); // add rsi, stride
    code.extend_from_slice(&stride.to_le_bytes());
    code.extend_from_slice(&[0xff, 0xc9]); // dec ecx
    code.extend_from_slice(&[0x75, 0xf3]); // jnz L (-13)
    code.extend_from_slice(&[0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    code.extend_from_slice(&[0x31, 0xff]); // xor edi, edi
    code.extend_from_slice(&[0x0f, 0x05]); // syscall
    let size = size.max(code_at + code.len());

    let mut f = vec![0u8; size];
    let entry = u64::from(BASE) + code_at as u64;
    // ELF header.
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // 64-bit
    f[5] = 1; // little endian
    f[6] = 1; // version
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    f[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    f[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
                                                     // The one PT_LOAD: the whole file, R+X.
    let p = &mut f[EHDR..EHDR + PHDR];
    p[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    p[4..8].copy_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    p[16..24].copy_from_slice(&u64::from(BASE).to_le_bytes()); // p_vaddr
    p[24..32].copy_from_slice(&u64::from(BASE).to_le_bytes()); // p_paddr
    p[32..40].copy_from_slice(&(size as u64).to_le_bytes()); // p_filesz
    p[40..48].copy_from_slice(&(size as u64).to_le_bytes()); // p_memsz
    p[48..56].copy_from_slice(&0x1000u64.to_le_bytes()); // p_align
    f[code_at..code_at + code.len()].copy_from_slice(&code);
    f
}

/// Set-up of `exec_static`: the two executables, mode 0755.
pub fn setup_exec(ctx: &Ctx) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    for (path, bytes) in [
        (small_path(ctx), static_elf(0, 4096)),
        (big_path(ctx), static_elf(BIG_BYTES, BIG_STRIDE)),
    ] {
        std::fs::write(&path, &bytes).map_err(|e| Fail::msg(format!("writing {path}: {e}")))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Fail::msg(format!("chmod {path}: {e}")))?;
    }
    Ok(())
}

/// One fork + execve + wait of `program`; the child must exit 0.
fn run_once(program: &sys::Program) -> Res<()> {
    match sys::spawn_wait(program)? {
        0 => Ok(()),
        127 => Err(Fail::msg(format!(
            "{}: execve failed in the child (missing or not executable?)",
            program.path()
        ))),
        code => Err(Fail::msg(format!(
            "{} exited with status {code}",
            program.path()
        ))),
    }
}

/// exec_static: one operation = fork + execve + wait of the small
/// executable, then the same of the 2 MiB one (two programs started).
pub fn exec_static(ctx: &Ctx, _: usize) -> Res<Op> {
    let small = sys::Program::new(&small_path(ctx), &["small"])?;
    let big = sys::Program::new(&big_path(ctx), &["big"])?;
    Ok(Box::new(move || {
        run_once(&small)?;
        run_once(&big)?;
        Ok(1)
    }))
}

/// spawn_shell: one operation = fork + execve of `/bin/sh -c true` + wait.
pub fn spawn_shell(_: &Ctx, _: usize) -> Res<Op> {
    if std::fs::metadata("/bin/sh").is_err() {
        return Err(Fail::msg(
            "/bin/sh is missing (the harness puts busybox-static there)",
        ));
    }
    let sh = sys::Program::new("/bin/sh", &["sh", "-c", "true"])?;
    Ok(Box::new(move || {
        run_once(&sh)?;
        Ok(1)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_layout() {
        let small = static_elf(0, 4096);
        assert!(small.len() < 200);
        assert_eq!(&small[..4], b"\x7fELF");
        let big = static_elf(BIG_BYTES, BIG_STRIDE);
        assert_eq!(big.len(), BIG_BYTES);
        // p_filesz covers the whole file.
        assert_eq!(
            u64::from_le_bytes(big[64 + 32..64 + 40].try_into().unwrap()),
            BIG_BYTES as u64
        );
    }
}
