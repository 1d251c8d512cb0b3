//! Boot media: the rendered Limine configuration, the boot bundle for the
//! built-in loader, and the ISO for real Limine.
//!
//! Owns the mapping from "kernel + command line + modules" to files a loader
//! reads (docs/CONTRACTS.md §2).  Both media carry the same rendered
//! configuration, so the kernel sees the same Limine answers on either path.
//! It must not guess at Limine's location beyond `LIMINE_DIR` and
//! `/usr/share/limine`, and never downloads anything.

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

/// The boot bundle for the built-in loader: a newc cpio with `limine.conf`
/// (Limine 8 syntax) and every file it names.
pub fn make_bundle(limine_cfg: &str, spec: &BootSpec) -> Result<Vec<u8>> {
    let conf = bootfmt::limine_conf::cfg_to_conf(limine_cfg)
        .map_err(|e| anyhow::anyhow!("converting limine.cfg to limine.conf: {e}"))?;
    let mut writer = bootfmt::cpio::NewcWriter::new();
    writer.add_file("limine.conf", 0o644, conf.as_bytes());
    writer.add_dir("boot", 0o755);
    writer.add_file(KERNEL_GUEST_PATH, 0o755, &spec.kernel_elf);
    for module in &spec.modules {
        writer.add_file(&module.guest_path, 0o644, &module.data);
    }
    Ok(writer.finish())
}

/// Limine's BIOS files, if this machine has them: `LIMINE_DIR`, else
/// `/usr/share/limine`.
pub fn find_limine() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("LIMINE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/usr/share/limine")))
        .collect();
    candidates.into_iter().find(|dir| {
        dir.join("limine-bios.sys").is_file() && dir.join("limine-bios-cd.bin").is_file()
    })
}

/// Build a BIOS-bootable ISO with real Limine: `boot/limine/` holds Limine's
/// files with both `limine.cfg` (Limine 7) and `limine.conf` (Limine 8+).
pub fn make_iso(limine_dir: &Path, limine_cfg: &str, spec: &BootSpec, iso: &Path) -> Result<()> {
    let root = iso.with_extension("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).ok();
    }
    let limine_sub = root.join("boot").join("limine");
    std::fs::create_dir_all(&limine_sub)?;
    for name in ["limine-bios.sys", "limine-bios-cd.bin"] {
        std::fs::copy(limine_dir.join(name), limine_sub.join(name))
            .with_context(|| format!("copying {name} from {}", limine_dir.display()))?;
    }
    let conf = bootfmt::limine_conf::cfg_to_conf(limine_cfg)
        .map_err(|e| anyhow::anyhow!("converting limine.cfg to limine.conf: {e}"))?;
    std::fs::write(limine_sub.join("limine.cfg"), limine_cfg)?;
    std::fs::write(limine_sub.join("limine.conf"), conf)?;
    std::fs::write(root.join(KERNEL_GUEST_PATH), &spec.kernel_elf)?;
    for module in &spec.modules {
        let dest = root.join(&module.guest_path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, &module.data)?;
    }
    let status = Command::new("xorriso")
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
        .status()
        .context("running xorriso (install it with tools/setup.sh)")?;
    if !status.success() {
        bail!("xorriso failed with {status}");
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
        let bundle = make_bundle(&cfg, &s).unwrap();
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
    }
}
