//! The Limine configuration file: reading the first `protocol: limine` entry
//! of a Limine 8 `limine.conf`, mapping `boot():/` URIs to bundle paths, and
//! (with `alloc`) converting a Limine 7 `limine.cfg` to Limine 8 syntax.
//!
//! Limine 8 syntax, as far as this module needs it: `key: value` lines
//! (keys are case-insensitive), `#` comments, and entries that start with a
//! line `/Name` (`//Name` for a sub-entry).  Keys before the first entry are
//! global.  Limine 7 syntax uses `KEY=value` and `:Name` instead.
//!
//! Invariants: the reader borrows every string from the input and needs no
//! heap (the loader uses it); at most [`MAX_MODULES`] modules are kept, more
//! is an error rather than a silent truncation.  Must not: resolve paths
//! against a file system, or accept an entry without a kernel path.

use core::fmt;

/// Most modules one entry may list.
pub const MAX_MODULES: usize = 16;

/// One `module_path:` of an entry with the `module_cmdline:` following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModuleSpec<'a> {
    /// The module URI as written, e.g. `boot():/boot/initramfs.cpio`.
    pub path: &'a str,
    /// The module's command line ("" when none was given).
    pub cmdline: &'a str,
}

/// The boot entry the loader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootEntry<'a> {
    /// Entry name (the text after the slashes).
    pub name: &'a str,
    /// Kernel URI from `path:` or `kernel_path:`.
    pub kernel_path: &'a str,
    /// Kernel command line from `cmdline:` or `kernel_cmdline:` ("" if absent).
    pub cmdline: &'a str,
    module_list: [ModuleSpec<'a>; MAX_MODULES],
    module_count: usize,
}

impl<'a> BootEntry<'a> {
    /// The modules in the order the entry lists them.
    pub fn modules(&self) -> &[ModuleSpec<'a>] {
        &self.module_list[..self.module_count]
    }
}

/// Why a configuration could not be used.  `line` numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfError {
    /// No entry has `protocol: limine`.
    NoLimineEntry,
    /// The chosen entry has no `path:`/`kernel_path:`.
    MissingKernelPath { entry_line: usize },
    /// More than [`MAX_MODULES`] `module_path:` lines in the entry.
    TooManyModules { line: usize },
    /// `module_cmdline:` before any `module_path:`.
    ModuleCmdlineWithoutPath { line: usize },
    /// A non-empty, non-comment line that is neither `key: value` nor an entry.
    Syntax { line: usize },
    /// A URI this loader cannot resolve (only `boot():/...` and `boot:///...`).
    UnsupportedUri,
    /// A `boot():` / `boot:///` URI with an empty path.
    EmptyPath,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfError::NoLimineEntry => {
                write!(f, "limine.conf: no entry with \"protocol: limine\"")
            }
            ConfError::MissingKernelPath { entry_line } => write!(
                f,
                "limine.conf: the entry at line {entry_line} has no \"path:\" (or \"kernel_path:\")"
            ),
            ConfError::TooManyModules { line } => write!(
                f,
                "limine.conf: line {line}: more than {MAX_MODULES} modules in one entry"
            ),
            ConfError::ModuleCmdlineWithoutPath { line } => write!(
                f,
                "limine.conf: line {line}: module_cmdline before any module_path"
            ),
            ConfError::Syntax { line } => {
                write!(
                    f,
                    "limine.conf: line {line}: expected \"key: value\" or \"/Entry name\""
                )
            }
            ConfError::UnsupportedUri => write!(
                f,
                "limine.conf: unsupported URI (only boot():/PATH and boot:///PATH are supported)"
            ),
            ConfError::EmptyPath => write!(f, "limine.conf: URI with an empty path"),
        }
    }
}

/// One classified line of a Limine 8 config.
enum Line<'a> {
    Blank,
    /// `/Name`, `//Name`, ...
    Entry {
        name: &'a str,
    },
    Key {
        key: &'a str,
        value: &'a str,
    },
}

fn classify(raw: &str, line: usize) -> Result<Line<'_>, ConfError> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(Line::Blank);
    }
    if let Some(rest) = text.strip_prefix('/') {
        let name = rest.trim_start_matches('/');
        // A leading '+' marks a directory entry that starts expanded.
        let name = name.strip_prefix('+').unwrap_or(name).trim();
        return Ok(Line::Entry { name });
    }
    match text.split_once(':') {
        Some((key, value)) if !key.trim().is_empty() && !key.contains(char::is_whitespace) => {
            Ok(Line::Key {
                key: key.trim(),
                value: value.trim(),
            })
        }
        _ => Err(ConfError::Syntax { line }),
    }
}

/// The first entry of `text` with `protocol: limine`.
pub fn first_limine_entry(text: &str) -> Result<BootEntry<'_>, ConfError> {
    // State of the entry being read.
    struct Current<'a> {
        entry: BootEntry<'a>,
        line: usize,
        is_limine: bool,
        kernel_seen: bool,
        /// Line of the first `module_path:` beyond `MAX_MODULES`.
        too_many_at: Option<usize>,
    }
    fn finish<'a>(cur: Current<'a>) -> Result<Option<BootEntry<'a>>, ConfError> {
        if !cur.is_limine {
            return Ok(None);
        }
        if let Some(line) = cur.too_many_at {
            return Err(ConfError::TooManyModules { line });
        }
        if !cur.kernel_seen {
            return Err(ConfError::MissingKernelPath {
                entry_line: cur.line,
            });
        }
        Ok(Some(cur.entry))
    }

    let mut current: Option<Current<'_>> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        match classify(raw, line)? {
            Line::Blank => {}
            Line::Entry { name } => {
                if let Some(cur) = current.take() {
                    if let Some(entry) = finish(cur)? {
                        return Ok(entry);
                    }
                }
                current = Some(Current {
                    entry: BootEntry {
                        name,
                        kernel_path: "",
                        cmdline: "",
                        module_list: [ModuleSpec::default(); MAX_MODULES],
                        module_count: 0,
                    },
                    line,
                    is_limine: false,
                    kernel_seen: false,
                    too_many_at: None,
                });
            }
            Line::Key { key, value } => {
                // Global keys (before any entry) do not matter to the loader.
                let Some(cur) = current.as_mut() else {
                    continue;
                };
                let e = &mut cur.entry;
                if key.eq_ignore_ascii_case("protocol") {
                    cur.is_limine = value.eq_ignore_ascii_case("limine");
                } else if key.eq_ignore_ascii_case("path")
                    || key.eq_ignore_ascii_case("kernel_path")
                {
                    e.kernel_path = value;
                    cur.kernel_seen = true;
                } else if key.eq_ignore_ascii_case("cmdline")
                    || key.eq_ignore_ascii_case("kernel_cmdline")
                {
                    e.cmdline = value;
                } else if key.eq_ignore_ascii_case("module_path") {
                    if e.module_count == MAX_MODULES {
                        // Only an error if this turns out to be the entry we boot.
                        cur.too_many_at.get_or_insert(line);
                        continue;
                    }
                    e.module_list[e.module_count] = ModuleSpec {
                        path: value,
                        cmdline: "",
                    };
                    e.module_count += 1;
                } else if key.eq_ignore_ascii_case("module_cmdline")
                    || key.eq_ignore_ascii_case("module_string")
                {
                    if e.module_count == 0 {
                        return Err(ConfError::ModuleCmdlineWithoutPath { line });
                    }
                    e.module_list[e.module_count - 1].cmdline = value;
                }
            }
        }
    }
    match current {
        Some(cur) => finish(cur)?.ok_or(ConfError::NoLimineEntry),
        None => Err(ConfError::NoLimineEntry),
    }
}

/// Map a boot-volume URI to a path inside the boot bundle:
/// `boot():/boot/kernel.elf` (Limine 8) and `boot:///boot/kernel.elf`
/// (Limine 7) both give `boot/kernel.elf`.  A partition number
/// (`boot(1):/x`) is accepted and ignored: the bundle is one volume.
pub fn boot_uri_path(uri: &str) -> Result<&str, ConfError> {
    let uri = uri.trim();
    let rest = if let Some(rest) = uri.strip_prefix("boot(") {
        let (partition, rest) = rest.split_once("):").ok_or(ConfError::UnsupportedUri)?;
        if !partition.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfError::UnsupportedUri);
        }
        rest
    } else if let Some(rest) = uri.strip_prefix("boot://") {
        // Limine 7: boot://PARTITION/path, the partition may be empty.
        let (partition, rest) = rest.split_once('/').ok_or(ConfError::UnsupportedUri)?;
        if !partition.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfError::UnsupportedUri);
        }
        rest
    } else {
        return Err(ConfError::UnsupportedUri);
    };
    // Drop a `#hash` suffix (Limine's checksum syntax) and leading slashes.
    let rest = rest.split('#').next().unwrap_or("");
    let path = rest.trim_start_matches('/');
    if path.is_empty() {
        return Err(ConfError::EmptyPath);
    }
    Ok(path)
}

#[cfg(feature = "alloc")]
pub use convert::cfg_to_conf;

#[cfg(feature = "alloc")]
mod convert {
    use super::ConfError;
    use alloc::string::String;
    use core::fmt::Write;

    /// Convert a Limine 7 `limine.cfg` to Limine 8 `limine.conf` syntax.
    ///
    /// `KEY=value` becomes `key: value` (indented inside entries), `:Name`
    /// becomes `/Name` (`::Name` becomes `//Name`), `KERNEL_PATH`/`PATH`
    /// become `kernel_path` and `CMDLINE`/`KERNEL_CMDLINE` become
    /// `kernel_cmdline` (the names Limine 8 reads: 8.2.0 ignores `path:` and
    /// `cmdline:`, which later releases use), `boot:///x` URIs become
    /// `boot():/x`; comments and blank lines are kept.
    pub fn cfg_to_conf(limine_cfg_v7: &str) -> Result<String, ConfError> {
        let mut out = String::new();
        let mut in_entry = false;
        for (index, raw) in limine_cfg_v7.lines().enumerate() {
            let line = index + 1;
            let text = raw.trim();
            if text.is_empty() {
                out.push('\n');
                continue;
            }
            if text.starts_with('#') {
                let indent = if in_entry { "    " } else { "" };
                let _ = writeln!(out, "{indent}{text}");
                continue;
            }
            if text.starts_with(':') {
                let depth = text.bytes().take_while(|&b| b == b':').count();
                let name = text[depth..].trim();
                for _ in 0..depth {
                    out.push('/');
                }
                let _ = writeln!(out, "{name}");
                in_entry = true;
                continue;
            }
            let (key, value) = text.split_once('=').ok_or(ConfError::Syntax { line })?;
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ConfError::Syntax { line });
            }
            let value = value.trim();
            let mut lower = String::with_capacity(key.len());
            for c in key.chars() {
                lower.push(c.to_ascii_lowercase());
            }
            let new_key = match lower.as_str() {
                "kernel_path" | "path" => "kernel_path",
                "kernel_cmdline" | "cmdline" => "kernel_cmdline",
                other => other,
            };
            let indent = if in_entry { "    " } else { "" };
            let _ = write!(out, "{indent}{new_key}: ");
            if let Some(path) = value.strip_prefix("boot://") {
                // boot://N/path -> boot(N):/path
                let (partition, path) = path.split_once('/').ok_or(ConfError::UnsupportedUri)?;
                let _ = writeln!(out, "boot({partition}):/{path}");
            } else {
                let _ = writeln!(out, "{value}");
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "\
timeout: 0
serial: yes

# a comment
/other
    protocol: linux
    path: boot():/vmlinuz

/percpu-kernel
    protocol: limine
    path: boot():/boot/kernel.elf
    cmdline: run=selfcheck locks=percpu
    module_path: boot():/boot/initramfs.cpio
    module_cmdline: initramfs
    module_path: boot():/boot/extra
    module_string: extra one

/later
    protocol: limine
    path: boot():/boot/other.elf
";

    #[test]
    fn picks_first_limine_entry() {
        let e = first_limine_entry(CONF).unwrap();
        assert_eq!(e.name, "percpu-kernel");
        assert_eq!(e.kernel_path, "boot():/boot/kernel.elf");
        assert_eq!(e.cmdline, "run=selfcheck locks=percpu");
        assert_eq!(
            e.modules(),
            &[
                ModuleSpec {
                    path: "boot():/boot/initramfs.cpio",
                    cmdline: "initramfs"
                },
                ModuleSpec {
                    path: "boot():/boot/extra",
                    cmdline: "extra one"
                },
            ]
        );
    }

    #[test]
    fn kernel_path_and_kernel_cmdline_aliases() {
        let e = first_limine_entry(
            "/k\nPROTOCOL: limine\nKERNEL_PATH: boot():/k\nkernel_cmdline: a=b\n",
        )
        .unwrap();
        assert_eq!((e.kernel_path, e.cmdline), ("boot():/k", "a=b"));
        assert!(e.modules().is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(first_limine_entry(""), Err(ConfError::NoLimineEntry));
        assert_eq!(
            first_limine_entry("/x\nprotocol: linux\npath: boot():/a\n"),
            Err(ConfError::NoLimineEntry)
        );
        assert_eq!(
            first_limine_entry("timeout: 0\n/x\n protocol: limine\n"),
            Err(ConfError::MissingKernelPath { entry_line: 2 })
        );
        assert_eq!(
            first_limine_entry("/x\nprotocol: limine\npath: boot():/a\nmodule_cmdline: q\n"),
            Err(ConfError::ModuleCmdlineWithoutPath { line: 4 })
        );
        assert_eq!(
            first_limine_entry("/x\nthis is not a key\n"),
            Err(ConfError::Syntax { line: 2 })
        );
        // A key must be non-empty and one word.
        assert_eq!(
            first_limine_entry("/x\n  : value\n"),
            Err(ConfError::Syntax { line: 2 })
        );
        assert_eq!(
            first_limine_entry("/x\nprotocol: limine\nkernel path: boot():/k\n"),
            Err(ConfError::Syntax { line: 3 })
        );
        let mut many = [0u8; 1024];
        let mut len = 0;
        for chunk in core::iter::once(&b"/x\nprotocol: limine\npath: boot():/k\n"[..])
            .chain(core::iter::repeat_n(&b"module_path: boot():/m\n"[..], 17))
        {
            many[len..len + chunk.len()].copy_from_slice(chunk);
            len += chunk.len();
        }
        let text = core::str::from_utf8(&many[..len]).unwrap();
        assert_eq!(
            first_limine_entry(text),
            Err(ConfError::TooManyModules { line: 20 })
        );
    }

    #[test]
    fn errors_display_their_lines() {
        extern crate std;
        use std::string::ToString;
        let m = ConfError::Syntax { line: 42 }.to_string();
        assert!(m.starts_with("limine.conf: ") && m.contains("42"), "{m}");
        let m = ConfError::MissingKernelPath { entry_line: 9 }.to_string();
        assert!(m.contains('9') && m.contains("path"), "{m}");
    }

    #[test]
    fn uris() {
        assert_eq!(
            boot_uri_path("boot():/boot/kernel.elf"),
            Ok("boot/kernel.elf")
        );
        assert_eq!(
            boot_uri_path("boot:///boot/kernel.elf"),
            Ok("boot/kernel.elf")
        );
        assert_eq!(boot_uri_path("boot(1):/a#abcdef"), Ok("a"));
        assert_eq!(boot_uri_path("boot():/"), Err(ConfError::EmptyPath));
        assert_eq!(boot_uri_path("hdd(1:2):/a"), Err(ConfError::UnsupportedUri));
        assert_eq!(
            boot_uri_path("/boot/kernel.elf"),
            Err(ConfError::UnsupportedUri)
        );
        assert_eq!(boot_uri_path("boot(x):/a"), Err(ConfError::UnsupportedUri));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn converts_limine7_config() {
        let cfg = "\
# generated
TIMEOUT=0
SERIAL=yes

:percpu-kernel
    PROTOCOL=limine
    KERNEL_PATH=boot:///boot/kernel.elf
    CMDLINE=run=selfcheck locks=global
    MODULE_PATH=boot:///boot/initramfs.cpio
    MODULE_CMDLINE=initramfs
";
        let conf = cfg_to_conf(cfg).unwrap();
        assert_eq!(
            conf,
            "\
# generated
timeout: 0
serial: yes

/percpu-kernel
    protocol: limine
    kernel_path: boot():/boot/kernel.elf
    kernel_cmdline: run=selfcheck locks=global
    module_path: boot():/boot/initramfs.cpio
    module_cmdline: initramfs
"
        );
        let e = first_limine_entry(&conf).unwrap();
        assert_eq!(boot_uri_path(e.kernel_path), Ok("boot/kernel.elf"));
        assert_eq!(e.cmdline, "run=selfcheck locks=global");
        assert_eq!(e.modules()[0].cmdline, "initramfs");
        assert_eq!(
            cfg_to_conf("TIMEOUT 0\n"),
            Err(ConfError::Syntax { line: 1 })
        );
        // An empty key, or a key of two words, is refused too.
        assert_eq!(cfg_to_conf("=0\n"), Err(ConfError::Syntax { line: 1 }));
        assert_eq!(
            cfg_to_conf(":x\nKERNEL PATH=boot:///k\n"),
            Err(ConfError::Syntax { line: 2 })
        );
    }
}
