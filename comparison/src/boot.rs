//! One boot of this kernel: choose the loader, make the medium, run QEMU.
//!
//! Owns the policy "which loader": `auto` takes real Limine when its files
//! are on this machine and the built-in loader otherwise.  Media files are
//! named per process and per boot so that parallel tests never share one.

use crate::build::Artifacts;
use crate::image::{self, BootSpec, Module};
use crate::qemu::{self, Medium, RunOutcome, VmConfig};
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which loader boots the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderChoice {
    /// Real Limine if found, else the built-in loader.
    Auto,
    Builtin,
    Limine,
}

/// Everything that varies between boots.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub loader: LoaderChoice,
    pub cmdline: String,
    pub modules: Vec<Module>,
    pub vm: VmConfig,
}

static MEDIA_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Resolve `Auto` to a concrete loader.
pub fn resolve_loader(choice: LoaderChoice) -> Result<LoaderChoice> {
    match choice {
        LoaderChoice::Auto => Ok(if image::find_limine().is_some() {
            LoaderChoice::Limine
        } else {
            LoaderChoice::Builtin
        }),
        LoaderChoice::Limine if image::find_limine().is_none() => bail!(
            "Limine's files were not found (set LIMINE_DIR to a directory holding \
             limine-bios.sys and limine-bios-cd.bin, or install them in /usr/share/limine)"
        ),
        other => Ok(other),
    }
}

/// Make the boot medium for `request` with the given kernel image bytes.
pub fn make_medium(
    artifacts: &Artifacts,
    request: &BootRequest,
    kernel_elf: Vec<u8>,
) -> Result<Medium> {
    let spec = BootSpec {
        kernel_elf,
        cmdline: request.cmdline.clone(),
        modules: request.modules.clone(),
    };
    let template = image::read_template(&artifacts.workspace_root)?;
    let cfg = image::render_limine_cfg(&template, &spec)?;
    let n = MEDIA_COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = format!("boot-{}-{n}", std::process::id());
    let dir = artifacts.scratch_dir();
    match resolve_loader(request.loader)? {
        LoaderChoice::Limine => {
            let limine_dir = image::find_limine().expect("resolve_loader checked");
            std::fs::create_dir_all(&dir)?;
            let iso = dir.join(format!("{stem}.iso"));
            image::make_iso(&limine_dir, &cfg, &spec, &iso)?;
            Ok(Medium::Iso(iso))
        }
        _ => {
            let bundle = image::make_bundle(&cfg, &spec)?;
            let bundle = qemu::write_media(&dir, &format!("{stem}.cpio"), &bundle)?;
            Ok(Medium::Builtin {
                loader: artifacts.loader.clone(),
                bundle,
            })
        }
    }
}

/// Boot the built kernel once and wait for QEMU to end.
pub fn boot(artifacts: &Artifacts, request: &BootRequest) -> Result<RunOutcome> {
    let kernel_elf = std::fs::read(&artifacts.kernel)?;
    boot_with_kernel_bytes(artifacts, request, kernel_elf)
}

/// Boot with a given kernel image (tests hand in deliberately broken ones).
pub fn boot_with_kernel_bytes(
    artifacts: &Artifacts,
    request: &BootRequest,
    kernel_elf: Vec<u8>,
) -> Result<RunOutcome> {
    let medium = make_medium(artifacts, request, kernel_elf)?;
    let outcome = qemu::run(&medium, &request.vm);
    // The media are scratch files: remove them whatever happened.
    match &medium {
        Medium::Builtin { bundle, .. } => {
            let _ = std::fs::remove_file(bundle);
        }
        Medium::Iso(iso) => {
            let _ = std::fs::remove_file(iso);
            let _ = std::fs::remove_dir_all(iso.with_extension("root"));
        }
    }
    outcome
}

/// Boot with a raw bundle (tests of the built-in loader's input checks).
pub fn boot_raw_bundle(artifacts: &Artifacts, bundle: &[u8], vm: &VmConfig) -> Result<RunOutcome> {
    let n = MEDIA_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = qemu::write_media(
        &artifacts.scratch_dir(),
        &format!("raw-{}-{n}.cpio", std::process::id()),
        bundle,
    )?;
    let medium = Medium::Builtin {
        loader: artifacts.loader.clone(),
        bundle: path.clone(),
    };
    let outcome = qemu::run(&medium, vm);
    let _ = std::fs::remove_file(path);
    outcome
}
