//! One boot of this kernel: choose the loader, make the medium, run QEMU.
//!
//! Owns the policy "which loader": `auto` takes real Limine only when its
//! files are on this machine *and* a probe boot showed that this Limine
//! boots this kernel (the verdict is cached under `target/`, keyed by the
//! Limine files and the kernel image); otherwise the built-in loader, with a
//! one-line note.  Media files are named per process and per boot so that
//! parallel tests never share one.

use crate::build::Artifacts;
use crate::image::{self, BootSpec, Module};
use crate::qemu::{self, Accel, Ending, Medium, RunOutcome, VmConfig};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Which loader boots the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderChoice {
    /// Real Limine if found and seen to boot this kernel, else the built-in
    /// loader.
    Auto,
    /// The built-in loader (answers the base revision tag in full: third
    /// word zeroed, second word set to the loaded revision).
    Builtin,
    /// The built-in loader answering the base revision tag as Limine's
    /// 7.x/8.x releases do: third word zeroed, second word left alone.
    BuiltinSupportedOnly,
    /// Real Limine from `LIMINE_DIR` or `/usr/share/limine`.
    Limine,
    /// Real Limine from this folder (holding `limine-bios.sys` and
    /// `limine-bios-cd.bin`).
    LimineAt(PathBuf),
}

impl LoaderChoice {
    /// True for real Limine (either form).
    pub fn is_limine(&self) -> bool {
        matches!(self, LoaderChoice::Limine | LoaderChoice::LimineAt(_))
    }

    /// What boots the kernel, for messages: `builtin`, or `Limine 8.2.0
    /// (/path)` once resolved.
    pub fn describe(&self) -> String {
        match self {
            LoaderChoice::Auto => "auto".into(),
            LoaderChoice::Builtin => "builtin".into(),
            LoaderChoice::BuiltinSupportedOnly => {
                "builtin (answering the base revision as Limine 7/8 releases do)".into()
            }
            LoaderChoice::Limine => "limine".into(),
            LoaderChoice::LimineAt(dir) => describe_limine(dir),
        }
    }
}

/// `Limine 8.2.0 (/dir)`, or `Limine, version unknown (/dir)`.
pub fn describe_limine(dir: &Path) -> String {
    match image::limine_version(dir) {
        Some(v) => format!("Limine {v} ({})", dir.display()),
        None => format!("Limine, version unknown ({})", dir.display()),
    }
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

/// Resolve a choice to a concrete loader: `Builtin`, `BuiltinSupportedOnly`
/// or `LimineAt(dir)`.  `Auto` probes Limine (once per Limine release and
/// kernel image, see [`limine_boots`]) and falls back to the built-in loader
/// with a one-line note on stderr when the probe fails.
pub fn resolve_loader(artifacts: &Artifacts, choice: &LoaderChoice) -> Result<LoaderChoice> {
    match choice {
        LoaderChoice::Auto => Ok(match image::find_limine() {
            None => LoaderChoice::Builtin,
            Some(dir) => match limine_boots(artifacts, &dir) {
                Ok(()) => LoaderChoice::LimineAt(dir),
                Err(why) => {
                    eprintln!(
                        "note: loader auto: {} did not boot this kernel ({why}); using the built-in loader",
                        describe_limine(&dir)
                    );
                    LoaderChoice::Builtin
                }
            },
        }),
        LoaderChoice::Limine => match image::find_limine() {
            Some(dir) => Ok(LoaderChoice::LimineAt(dir)),
            None => bail!(
                "Limine's files were not found (set LIMINE_DIR to a directory holding \
                 limine-bios.sys and limine-bios-cd.bin, or install them in /usr/share/limine)"
            ),
        },
        LoaderChoice::LimineAt(dir) if !image::is_limine_dir(dir) => bail!(
            "{} does not hold limine-bios.sys and limine-bios-cd.bin",
            dir.display()
        ),
        other => Ok(other.clone()),
    }
}

/// Longest a probe boot may take (one vCPU, self-check, under TCG).
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);

/// Verdicts of this process, by cache key.
static PROBES: Mutex<Option<HashMap<u64, Result<(), String>>>> = Mutex::new(None);

/// 64-bit FNV-1a over several byte strings (a cache key, not a checksum
/// anyone relies on for security).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.iter().chain((part.len() as u64).to_le_bytes().iter()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Has this Limine been seen to boot this kernel?  One probe boot (1 vCPU,
/// `run=selfcheck`) decides; its verdict is kept in
/// `<target>/comparison/limine-probe/<key>` where the key hashes Limine's two
/// files and the kernel image (a kernel fixed later gets a new probe).  A
/// failed verdict is cached too (also a timeout, which may have been load:
/// falling back to the built-in loader is always safe); deleting the file
/// probes again.
pub fn limine_boots(artifacts: &Artifacts, dir: &Path) -> Result<(), String> {
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()));
    let kernel = read(artifacts.kernel.clone())?;
    let sys = read(dir.join("limine-bios.sys"))?;
    let cd = read(dir.join("limine-bios-cd.bin"))?;
    let key = fnv1a(&[&sys, &cd, &kernel]);
    if let Some(verdict) = PROBES
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|m| m.get(&key).cloned())
    {
        return verdict;
    }
    let cache_dir = artifacts.target_dir.join("comparison").join("limine-probe");
    let cache = cache_dir.join(format!("{key:016x}"));
    let verdict = match std::fs::read_to_string(&cache) {
        Ok(text) if text.trim() == "ok" => Ok(()),
        Ok(text) => Err(format!(
            "{} (verdict cached in {}; delete it to probe again)",
            text.trim(),
            cache.display()
        )),
        Err(_) => {
            eprintln!(
                "loader auto: probing {} with one boot ...",
                describe_limine(dir)
            );
            let (verdict, keep) = probe(artifacts, dir);
            if keep {
                let text = match &verdict {
                    Ok(()) => "ok".to_string(),
                    Err(why) => why.clone(),
                };
                let _ = std::fs::create_dir_all(&cache_dir);
                let _ = std::fs::write(&cache, format!("{text}\n"));
            }
            verdict
        }
    };
    PROBES
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, verdict.clone());
    verdict
}

/// One probe boot; returns the verdict and whether it may be cached.
fn probe(artifacts: &Artifacts, dir: &Path) -> (Result<(), String>, bool) {
    let request = BootRequest {
        loader: LoaderChoice::LimineAt(dir.to_path_buf()),
        cmdline: "run=selfcheck".into(),
        modules: Vec::new(),
        vm: VmConfig {
            cores: 1,
            memory_mib: 512,
            accel: Accel::Tcg,
            timeout: PROBE_TIMEOUT,
            echo: false,
            nic: None,
            disks: Vec::new(),
        },
    };
    match boot(artifacts, &request) {
        Err(e) => (Err(format!("probe boot failed to start: {e:#}")), false),
        Ok(out) if out.ending == Ending::GuestExit(0) && out.has_line("selfcheck: pass") => {
            (Ok(()), true)
        }
        Ok(out) => {
            let last = out
                .serial
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("nothing on serial")
                .trim()
                .to_string();
            (
                Err(format!(
                    "probe boot: {}; last serial line: {last}",
                    out.describe_ending()
                )),
                true,
            )
        }
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
    let loader = resolve_loader(artifacts, &request.loader)?;
    match &loader {
        LoaderChoice::LimineAt(limine_dir) => {
            std::fs::create_dir_all(&dir)?;
            let iso = dir.join(format!("{stem}.iso"));
            image::make_iso(limine_dir, &cfg, &spec, &iso)
                .with_context(|| format!("making the ISO for {}", loader.describe()))?;
            Ok(Medium::Iso(iso))
        }
        _ => {
            let options = (loader == LoaderChoice::BuiltinSupportedOnly)
                .then_some("revision-answer=supported-only");
            let bundle = image::make_bundle(&cfg, &spec, options)?;
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
    // `structure=servers` boots the servers image (build::KernelImage).
    let kernel_elf = std::fs::read(artifacts.kernel_for_cmdline(&request.cmdline)?)?;
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
    remove_medium(&medium);
    outcome
}

/// Remove a medium's scratch files (the bundle, or the ISO and its tree).
pub fn remove_medium(medium: &Medium) {
    match medium {
        Medium::Builtin { bundle, .. } => {
            let _ = std::fs::remove_file(bundle);
        }
        Medium::Iso(iso) => {
            let _ = std::fs::remove_file(iso);
            let _ = std::fs::remove_dir_all(iso.with_extension("root"));
        }
    }
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
