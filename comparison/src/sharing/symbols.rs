//! Naming the writer PCs of conflict lines: our kernel's ELF symbol table,
//! Linux's text symbols as `/proc/kallsyms` of the same kernel gives them
//! (Debian's `System.map` is a stub; see `linux`), cached under
//! `target/linux/`, and user PCs as `user:0x...` (static-PIE binaries load
//! at a random base on Linux).
//!
//! Owns the symbol tables and a small demangler for Rust's legacy symbols.
//! Invariants: a lookup never fails: an address no symbol covers prints as
//! hex.  Must not run QEMU.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// Lowest kernel-half address (canonical upper half).
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Sorted `(address, size or 0, name)`.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    entries: Vec<(u64, u64, String)>,
}

impl Symbols {
    fn from_entries(mut entries: Vec<(u64, u64, String)>) -> Symbols {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by_key(|e| e.0);
        Symbols { entries }
    }

    /// Function symbols of an ELF file's `.symtab`.
    pub fn from_elf(bytes: &[u8]) -> Result<Symbols> {
        Ok(Symbols::from_entries(elf_entries(bytes)?))
    }

    /// Every function and data symbol's demangled name in an ELF file's
    /// `.symtab`, without merging symbols that share an address (what
    /// `tests/kernel_image.rs` checks for crates that must be absent).
    pub fn names_in_elf(bytes: &[u8]) -> Result<Vec<String>> {
        Ok(elf_entries(bytes)?.into_iter().map(|e| e.2).collect())
    }

    /// A `System.map`: `ADDRESS TYPE NAME` lines; text symbols only.
    pub fn from_system_map(text: &str) -> Symbols {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let kind = w.next()?;
                let name = w.next()?;
                matches!(kind, "T" | "t" | "W" | "w" | "D" | "d" | "B" | "b")
                    .then(|| (addr, 0, name.to_string()))
            })
            .collect();
        Symbols::from_entries(entries)
    }

    /// `name+0xOFF` for `pc`, or `None` if no symbol covers it.
    pub fn lookup(&self, pc: u64) -> Option<String> {
        let i = self.entries.partition_point(|e| e.0 <= pc);
        let (addr, size, name) = self.entries.get(i.checked_sub(1)?)?;
        // A sized symbol covers only its bytes; System.map's run to the next.
        if *size != 0 && pc - addr >= *size {
            return None;
        }
        // Past the last sized symbol by far: not this table's address.
        if *size == 0 && pc - addr > 1 << 20 {
            return None;
        }
        Some(if pc == *addr {
            name.clone()
        } else {
            format!("{name}+{:#x}", pc - addr)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `(address, size, demangled name)` of every STT_FUNC and STT_OBJECT
/// symbol with an address in an ELF file's `.symtab`.
fn elf_entries(bytes: &[u8]) -> Result<Vec<(u64, u64, String)>> {
    let elf = bootfmt::elf::parse(bytes).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let sections: Vec<_> = elf
        .sections()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .collect();
    let Some((index, symtab)) = sections.iter().enumerate().find(|(_, s)| s.sh_type == 2) else {
        bail!("no .symtab (stripped?)");
    };
    let _ = index;
    // The string table is the symtab's sh_link; bootfmt does not keep
    // it, and `.strtab` is its name in every linker's output.
    let strtab = sections
        .iter()
        .find(|s| s.name == ".strtab")
        .context("no .strtab")?;
    let slice = |off: u64, len: u64| -> Option<&[u8]> {
        bytes.get(usize::try_from(off).ok()?..usize::try_from(off.checked_add(len)?).ok()?)
    };
    let syms = slice(symtab.offset, symtab.size).context(".symtab out of the file")?;
    let names = slice(strtab.offset, strtab.size).context(".strtab out of the file")?;
    let mut entries = Vec::new();
    for s in syms.chunks_exact(24) {
        let name_off = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
        let kind = s[4] & 0xf;
        let value = u64::from_le_bytes(s[8..16].try_into().unwrap());
        let size = u64::from_le_bytes(s[16..24].try_into().unwrap());
        // STT_FUNC (2) and STT_OBJECT (1): code and data both.
        if !(kind == 1 || kind == 2) || value == 0 {
            continue;
        }
        let name = names
            .get(name_off..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .map(|n| demangle(&String::from_utf8_lossy(n)))
            .unwrap_or_default();
        if !name.is_empty() {
            entries.push((value, size, name));
        }
    }
    Ok(entries)
}

/// `kernel` symbols for kernel-half PCs; `user+0x...` (the offset in its
/// page) for the rest.
pub fn name_pc(kernel: &Symbols, pc: u64) -> String {
    if pc >= KERNEL_HALF {
        kernel.lookup(pc).unwrap_or_else(|| format!("{pc:#x}"))
    } else {
        format!("user:{pc:#x}")
    }
}

/// Rust's legacy mangling `_ZN3foo3bar17h0123456789abcdefE` as
/// `foo::bar`; anything else unchanged.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return name.to_string();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return name.to_string();
        };
        parts.push(part);
        rest = &rest[digits + len..];
    }
    if parts
        .last()
        .is_some_and(|p| p.len() == 17 && p.starts_with('h'))
    {
        parts.pop();
    }
    let joined = parts.join("::");
    let mut out = joined
        .replace("$LT$", "<")
        .replace("$GT$", ">")
        .replace("$RF$", "&")
        .replace("$BP$", "*")
        .replace("$C$", ",")
        .replace("$u20$", " ")
        .replace("$u27$", "'")
        .replace("$u5b$", "[")
        .replace("$u5d$", "]")
        .replace("$u7b$", "{")
        .replace("$u7d$", "}")
        .replace("$u7e$", "~")
        .replace("..", "::");
    if out.starts_with('_') && out[1..].starts_with('<') {
        out.remove(0);
    }
    out
}

/// Our kernel's symbols.
pub fn ours(kernel_elf: &Path) -> Result<Symbols> {
    let bytes =
        std::fs::read(kernel_elf).with_context(|| format!("reading {}", kernel_elf.display()))?;
    Symbols::from_elf(&bytes).with_context(|| format!("symbols of {}", kernel_elf.display()))
}

/// Linux's text symbols for Debian package `package`.  Debian's
/// `System.map` is a stub (the real one is in the `-dbg` package, hundreds
/// of MB), so the symbols come from the kernel itself: one boot with
/// `nokaslr` (the addresses the sharing runs have) running busybox's
/// `grep -i " t " /proc/kallsyms`; cached as `kallsyms-<package>` next to
/// the kernel image.  Returns the symbols and where they came from.
pub fn linux(target_dir: &Path, systems: &crate::run::Systems) -> Result<(Symbols, String)> {
    let linux = systems
        .linux
        .as_ref()
        .context("no Linux kernel (Systems::prepare(Linux))")?;
    let file = linux.package.replace('/', "_");
    let cache = target_dir.join("linux").join(format!("kallsyms-{file}"));
    let text = match std::fs::read_to_string(&cache) {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            let text = kallsyms_from_guest(target_dir, systems)?;
            std::fs::create_dir_all(target_dir.join("linux"))?;
            std::fs::write(&cache, &text)
                .with_context(|| format!("writing {}", cache.display()))?;
            text
        }
    };
    let symbols = Symbols::from_system_map(&text);
    if symbols.is_empty() {
        bail!("{} holds no symbols", cache.display());
    }
    Ok((symbols, cache.display().to_string()))
}

fn kallsyms_from_guest(target_dir: &Path, systems: &crate::run::Systems) -> Result<String> {
    use crate::run::{Echo, RunExtras, RunRequest, System, Verdict};
    eprintln!("sharing: reading Linux's /proc/kallsyms (one boot, nokaslr) ...");
    let busybox = crate::debian::busybox(target_dir)?;
    let request = RunRequest {
        system: System::Linux,
        program: busybox,
        files: vec![],
        args: vec!["-i".into(), " t ".into(), "/proc/kallsyms".into()],
        locks: percpu::LockMode::PerCpu,
        extra_cmdline: super::plugin::LINUX_NOKASLR.into(),
        vm: crate::qemu::VmConfig {
            cores: 1,
            timeout: std::time::Duration::from_secs(300),
            ..Default::default()
        },
        echo: Echo::Quiet,
    };
    let extras = RunExtras {
        argv0: Some("grep".into()),
        ..Default::default()
    };
    let result = crate::run::run_with(systems, &request, &extras)?;
    if result.verdict != Verdict::Exited(0) {
        bail!(
            "grep /proc/kallsyms on Linux ended with {:?}",
            result.verdict
        );
    }
    if result
        .output
        .lines()
        .take(10)
        .all(|l| l.starts_with("0000000000000000"))
    {
        bail!("Linux hid the addresses in /proc/kallsyms (kptr_restrict)");
    }
    Ok(result.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rust_symbols_demangle() {
        assert_eq!(
            demangle("_ZN6kernel2mm5frame10alloc_page17h0123456789abcdefE"),
            "kernel::mm::frame::alloc_page"
        );
        assert_eq!(
            demangle("_ZN64_$LT$spin..mutex..Mutex$LT$T$GT$$u20$as$u20$core..fmt..Debug$GT$3fmt17h0123456789abcdefE"),
            "<spin::mutex::Mutex<T> as core::fmt::Debug>::fmt"
        );
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(demangle("_ZN3bad"), "_ZN3bad");
    }

    #[test]
    fn system_map_lookup() {
        let s = Symbols::from_system_map(
            "ffffffff81000000 T _stext\nffffffff81000100 T do_thing\nffffffff82000000 D some_data\n",
        );
        assert_eq!(
            s.lookup(0xffff_ffff_8100_0104).as_deref(),
            Some("do_thing+0x4")
        );
        assert_eq!(s.lookup(0xffff_ffff_8100_0000).as_deref(), Some("_stext"));
        assert_eq!(s.lookup(0xffff_ffff_8000_0000), None);
        assert_eq!(name_pc(&s, 0x40_1000), "user:0x401000");
    }

    #[test]
    fn our_kernel_has_symbols_when_built() {
        // The test binary itself is an ELF with a symbol table.
        let me = std::env::current_exe().unwrap();
        let s = ours(&me).unwrap();
        assert!(!s.is_empty());
    }
}
