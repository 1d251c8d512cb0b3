//! Boot media: the rendered Limine configuration, the boot bundle for the
//! built-in loader, and the ISO for real Limine.
//!
//! Owns the mapping from "kernel + command line + modules" to files a loader
//! reads (docs/CONTRACTS.md §2).  Both media carry the same rendered
//! configuration, so the kernel sees the same Limine answers on either path.
//! It must not guess at Limine's location beyond `LIMINE_DIR` and
//! `/usr/share/limine` (callers may name another folder), and never
//! downloads anything.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a boot's files live inside the boot medium.
pub const KERNEL_GUEST_PATH: &str = "boot/kernel.elf";

/// A file handed to the kernel as a Limine module.
#[derive(Debug, Clone)]
pub struct Module {
    /// Path inside the boot medium, without a leading slash.
    pub guest_path: String,
    /// The module's command line (Limine "string").
    pub cmdline: String,
    pub data: Vec<u8>,
}

/// Everything a loader needs to start the kernel.
#[derive(Debug, Clone)]
pub struct BootSpec {
    pub kernel_elf: Vec<u8>,
    pub cmdline: String,
    pub modules: Vec<Module>,
}

impl BootSpec {
    pub fn from_kernel_file(kernel: &Path, cmdline: &str) -> Result<Self> {
        let kernel_elf =
            std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?;
        Ok(BootSpec {
            kernel_elf,
            cmdline: cmdline.to_string(),
            modules: Vec::new(),
        })
    }
}

/// Fill the `limine.cfg` template (Limine 7 syntax) for one boot: set the
/// first entry's `CMDLINE` and append one `MODULE_PATH`/`MODULE_CMDLINE`
/// pair per module.
pub fn render_limine_cfg(template: &str, spec: &BootSpec) -> Result<String> {
    if spec.cmdline.contains('\n') {
        bail!("kernel command line must be one line");
    }
    let mut out = String::new();
    let mut cmdline_done = false;
    for line in template.lines() {
        let trimmed = line.trim_start();
        if !cmdline_done && trimmed.starts_with("CMDLINE=") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}CMDLINE={}\n", spec.cmdline));
            for module in &spec.modules {
                if module.cmdline.contains('\n') || module.guest_path.contains('\n') {
                    bail!("module path and command line must be one line");
                }
                out.push_str(&format!(
                    "{indent}MODULE_PATH=boot:///{}\n",
                    module.guest_path
                ));
                out.push_str(&format!("{indent}MODULE_CMDLINE={}\n", module.cmdline));
            }
            cmdline_done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !cmdline_done {
        bail!("limine.cfg has no CMDLINE= line to fill in");
    }
    Ok(out)
}

/// The template committed at the workspace root.
pub fn read_template(workspace_root: &Path) -> Result<String> {
    let path = workspace_root.join("limine.cfg");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Name of the built-in loader's own switches in the boot bundle (see
/// loader/README.md); absent means the defaults.
pub const LOADER_OPTIONS_MEMBER: &str = "loader-options";

/// The boot bundle for the built-in loader: a newc cpio with `limine.conf`
/// (Limine 8 syntax), every file it names, and `loader-options` when
/// `loader_options` is given (e.g. `revision-answer=supported-only`).
pub fn make_bundle(
    limine_cfg: &str,
    spec: &BootSpec,
    loader_options: Option<&str>,
) -> Result<Vec<u8>> {
    let conf = bootfmt::limine_conf::cfg_to_conf(limine_cfg)
        .map_err(|e| anyhow::anyhow!("converting limine.cfg to limine.conf: {e}"))?;
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("limine.conf", 0o644, conf.as_bytes());
    if let Some(options) = loader_options {
        writer.add_file(LOADER_OPTIONS_MEMBER, 0o644, options.as_bytes());
    }
    writer.add_dir("boot", 0o755);
    writer.add_file(KERNEL_GUEST_PATH, 0o755, &spec.kernel_elf);
    for module in &spec.modules {
        writer.add_file(&module.guest_path, 0o644, &module.data);
    }
    Ok(writer.finish())
}

/// True if `dir` holds Limine's BIOS CD files.
pub fn is_limine_dir(dir: &Path) -> bool {
    dir.join("limine-bios.sys").is_file() && dir.join("limine-bios-cd.bin").is_file()
}

/// Limine's BIOS files, if this machine has them: `LIMINE_DIR`, else
/// `/usr/share/limine`.
pub fn find_limine() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("LIMINE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/usr/share/limine")))
        .collect();
    candidates.into_iter().find(|dir| is_limine_dir(dir))
}

/// The release of the Limine in `dir` (e.g. `8.2.0`), read from the version
/// string `limine-bios.sys` carries (`Limine 8.2.0 (x86-64, BIOS)`).
pub fn limine_version(dir: &Path) -> Option<String> {
    let data = std::fs::read(dir.join("limine-bios.sys")).ok()?;
    let needle = b"Limine ";
    data.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .find_map(|(at, _)| {
            let rest = &data[at + needle.len()..];
            let len = rest
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b'.')
                .count();
            let version = std::str::from_utf8(&rest[..len]).ok()?;
            let parts: Vec<&str> = version.split('.').collect();
            let ok = parts.len() >= 2 && parts.iter().all(|p| !p.is_empty());
            ok.then(|| version.to_string())
        })
}

/// Major release number of a version string (`"8.2.0"` gives 8).
pub fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// Which configuration files go on the ISO for Limine release `version`:
/// Limine 7 reads `limine.cfg`; Limine 8 reads `limine.conf` with
/// `kernel_path:`/`kernel_cmdline:`; later releases name those keys
/// `path:`/`cmdline:`.  Unknown releases get `limine.cfg` and the Limine 8
/// `limine.conf`.  Returns (file name, contents) pairs.
pub fn iso_configs(limine_cfg: &str, version: Option<&str>) -> Result<Vec<(&'static str, String)>> {
    let conf = bootfmt::limine_conf::cfg_to_conf(limine_cfg)
        .map_err(|e| anyhow::anyhow!("converting limine.cfg to limine.conf: {e}"))?;
    Ok(match version.and_then(major) {
        Some(7) => vec![("limine.cfg", limine_cfg.to_string())],
        Some(8) => vec![("limine.conf", conf)],
        Some(m) if m > 8 => {
            let renamed: String = conf
                .lines()
                .map(|line| {
                    let text = line.trim_start();
                    let indent = &line[..line.len() - text.len()];
                    let text = if let Some(v) = text.strip_prefix("kernel_path:") {
                        format!("path:{v}")
                    } else if let Some(v) = text.strip_prefix("kernel_cmdline:") {
                        format!("cmdline:{v}")
                    } else {
                        text.to_string()
                    };
                    format!("{indent}{text}\n")
                })
                .collect();
            vec![("limine.conf", renamed)]
        }
        _ => vec![
            ("limine.cfg", limine_cfg.to_string()),
            ("limine.conf", conf),
        ],
    })
}

/// Build a BIOS-bootable ISO with real Limine: `boot/limine/` holds Limine's
/// files with the configuration that release reads ([`iso_configs`]).
pub fn make_iso(limine_dir: &Path, limine_cfg: &str, spec: &BootSpec, iso: &Path) -> Result<()> {
    let root = iso.with_extension("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    let limine_sub = root.join("boot").join("limine");
    std::fs::create_dir_all(&limine_sub)?;
    for name in ["limine-bios.sys", "limine-bios-cd.bin"] {
        // Copy the bytes, not the mode: the files may be read-only.
        let data = std::fs::read(limine_dir.join(name))
            .with_context(|| format!("reading {name} from {}", limine_dir.display()))?;
        std::fs::write(limine_sub.join(name), data)?;
    }
    let version = limine_version(limine_dir);
    for (name, text) in iso_configs(limine_cfg, version.as_deref())? {
        std::fs::write(limine_sub.join(name), text)?;
    }
    std::fs::write(root.join(KERNEL_GUEST_PATH), &spec.kernel_elf)?;
    for module in &spec.modules {
        let dest = root.join(&module.guest_path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, &module.data)?;
    }
    let out = Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-b",
            "boot/limine/limine-bios-cd.bin",
            "-no-emul-boot",
        ])
        .args(["-boot-load-size", "4", "-boot-info-table"])
        .arg(&root)
        .arg("-o")
        .arg(iso)
        .output()
        .context("running xorriso (install it with tools/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "xorriso failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmdline: &str, modules: usize) -> BootSpec {
        BootSpec {
            kernel_elf: b"\x7fELF-not-really".to_vec(),
            cmdline: cmdline.into(),
            modules: (0..modules)
                .map(|i| Module {
                    guest_path: format!("boot/mod{i}.bin"),
                    cmdline: format!("m{i}"),
                    data: vec![i as u8; 10 + i],
                })
                .collect(),
        }
    }

    #[test]
    fn render_fills_cmdline_and_modules() {
        let template = read_template(&crate::build::workspace_root()).unwrap();
        let cfg = render_limine_cfg(&template, &spec("run=selfcheck locks=global", 2)).unwrap();
        assert!(
            cfg.contains("    CMDLINE=run=selfcheck locks=global\n"),
            "{cfg}"
        );
        assert!(cfg.contains("    MODULE_PATH=boot:///boot/mod1.bin\n    MODULE_CMDLINE=m1\n"));
        assert_eq!(cfg.matches("CMDLINE=").count(), 3);
    }

    #[test]
    fn render_rejects_multiline_cmdline() {
        let template = read_template(&crate::build::workspace_root()).unwrap();
        assert!(render_limine_cfg(&template, &spec("a\nb", 0)).is_err());
        assert!(render_limine_cfg("TIMEOUT=0\n", &spec("a", 0)).is_err());
    }

    #[test]
    fn bundle_holds_conf_kernel_and_modules() {
        let template = read_template(&crate::build::workspace_root()).unwrap();
        let s = spec("run=idle", 1);
        let cfg = render_limine_cfg(&template, &s).unwrap();
        let bundle = make_bundle(&cfg, &s, None).unwrap();
        let conf = bootfmt::cpio::find(&bundle, "limine.conf")
            .unwrap()
            .expect("limine.conf");
        let conf = std::str::from_utf8(conf.data).unwrap();
        let entry = bootfmt::limine_conf::first_limine_entry(conf).unwrap();
        assert_eq!(entry.cmdline, "run=idle");
        let kernel_path = bootfmt::limine_conf::boot_uri_path(entry.kernel_path).unwrap();
        let kernel = bootfmt::cpio::find(&bundle, kernel_path)
            .unwrap()
            .expect("kernel");
        assert_eq!(kernel.data, &s.kernel_elf[..]);
        let module = bootfmt::cpio::find(&bundle, "boot/mod0.bin")
            .unwrap()
            .expect("module");
        assert_eq!(module.data, &s.modules[0].data[..]);
        assert!(bootfmt::cpio::find(&bundle, LOADER_OPTIONS_MEMBER)
            .unwrap()
            .is_none());
        let bundle = make_bundle(&cfg, &s, Some("revision-answer=supported-only")).unwrap();
        let options = bootfmt::cpio::find(&bundle, LOADER_OPTIONS_MEMBER)
            .unwrap()
            .expect("loader-options");
        assert_eq!(options.data, b"revision-answer=supported-only");
    }

    #[test]
    fn iso_gets_the_config_its_limine_reads() {
        let template = read_template(&crate::build::workspace_root()).unwrap();
        let cfg = render_limine_cfg(&template, &spec("run=idle", 0)).unwrap();
        let names = |v: Option<&str>| -> Vec<&str> {
            iso_configs(&cfg, v)
                .unwrap()
                .iter()
                .map(|(n, _)| *n)
                .collect()
        };
        assert_eq!(names(Some("7.13.3")), ["limine.cfg"]);
        assert_eq!(names(Some("8.2.0")), ["limine.conf"]);
        assert_eq!(names(None), ["limine.cfg", "limine.conf"]);
        let v8 = &iso_configs(&cfg, Some("8.2.0")).unwrap()[0].1;
        assert!(
            v8.contains("    kernel_path: boot():/boot/kernel.elf\n"),
            "{v8}"
        );
        assert!(v8.contains("    kernel_cmdline: run=idle\n"), "{v8}");
        let v9 = &iso_configs(&cfg, Some("9.0.0")).unwrap()[0].1;
        assert!(v9.contains("    path: boot():/boot/kernel.elf\n"), "{v9}");
        assert!(v9.contains("    cmdline: run=idle\n"), "{v9}");
        assert_eq!(major("10.1.2"), Some(10));
    }

    #[test]
    fn limine_version_is_read_from_the_bios_file() {
        let dir = std::env::temp_dir().join(format!("limine-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("limine-bios.sys"),
            b"\0\0Limine v\0Limine 8.2.0 (x86-64, BIOS)\0",
        )
        .unwrap();
        assert_eq!(limine_version(&dir).as_deref(), Some("8.2.0"));
        std::fs::write(dir.join("limine-bios.sys"), b"no version here").unwrap();
        assert_eq!(limine_version(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
