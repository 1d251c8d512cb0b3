//! Glue between the kernel and the `fs` crate: the root tmpfs with `/dev`,
//! `/tmp` (tmpfs) and `/proc` (generated, `procfs`) mounted on it
//! (separate superblocks), the initramfs,
//! open files, descriptor tables, per-process file-system context and pipes.
//!
//! Owns the root `::fs::Fs` and the superblocks mounted on it (created on
//! first use with the boot's lock mode), the kernel's `PageAlloc` (frames
//! through the HHDM) and `Clock` (RTC at boot plus the TSC).  Invariants:
//! every errno from the crate is passed on unchanged (`errno`); device
//! nodes are told apart by their device number only.
//!
//! Must not: touch user memory (the syscall layer copies), or hold a lock
//! of the `fs` crate while blocking (pipes, sockets and epoll block on
//! `pollwait::PollWaiters` only).

#![deny(unsafe_code)]

pub mod blockdev;
pub mod epoll;
mod fdtable;
mod file;
// Unpacking the archive into the kernel's tree: the file server does it in
// the servers image.
#[cfg(feature = "monolithic")]
mod initramfs;
// The one place of this module allowed `unsafe` (frames as `::fs::Page`s).
pub mod mounts;
#[allow(unsafe_code)]
mod pages;
mod pipe;
pub mod pollwait;
pub mod procfs;
pub mod remote;
pub mod remote_io;
pub mod remote_map;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ::fs::{Clock, FileType, Fs, FsConfig, Timespec};

use crate::memory::PhysAddr;
use abi::Errno;

pub use fdtable::{FdCache, FdTable, FileBorrow, FsContext};
pub use file::{File, FileRef, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
#[cfg(feature = "monolithic")]
pub use initramfs::unpack_initramfs;

/// Device numbers of the nodes the kernel serves itself (Linux's).
pub mod dev {
    pub const fn makedev(major: u64, minor: u64) -> u64 {
        (major << 8) | minor
    }
    pub const NULL: u64 = makedev(1, 3);
    pub const ZERO: u64 = makedev(1, 5);
    pub const FULL: u64 = makedev(1, 7);
    pub const RANDOM: u64 = makedev(1, 8);
    pub const URANDOM: u64 = makedev(1, 9);
    pub const TTY: u64 = makedev(5, 0);
    pub const CONSOLE: u64 = makedev(5, 1);
}

/// Pages held by the tmpfs superblocks (root, `/dev`, `/tmp`): Linux's
/// `Shmem` of `/proc/meminfo`.
pub fn tmpfs_pages() -> u64 {
    let root = root_fs().stats().used_pages;
    root + TMPFS.get().map_or(0, |all| {
        all.iter().map(|f| f.stats().used_pages).sum::<u64>()
    })
}

/// Device number of the `/proc` superblock.
static PROC_DEV: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(u64::MAX);

/// Device number of the `/proc` superblock (`statfs` tells it apart).
pub fn proc_dev() -> u64 {
    root_fs();
    PROC_DEV.load(core::sync::atomic::Ordering::Relaxed)
}

/// The tmpfs superblocks, for their statistics.
static TMPFS: spin::Once<Vec<&'static Fs>> = spin::Once::new();

/// The crate's errno as the kernel's (same Linux numbers).
pub fn errno(e: ::fs::Errno) -> Errno {
    Errno(e.0)
}

/// Wall clock: the RTC read once, advanced by the TSC.
struct KernelClock {
    boot_secs: u64,
    boot_ns: u64,
}

impl Clock for KernelClock {
    fn now(&self) -> Timespec {
        let ns = crate::arch::time::now_ns().saturating_sub(self.boot_ns);
        Timespec {
            sec: (self.boot_secs + ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as u32,
        }
    }
}

static FS: spin::Once<Fs> = spin::Once::new();

/// The root file system, made (empty but for `/dev`, `/tmp`, `/proc`) on
/// first use.
pub fn root_fs() -> &'static Fs {
    FS.call_once(make_root)
}

/// Whether the root is the ext2 file system of `root=`.
static ROOT_ON_DISK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether `/` is a disk (`root=/dev/vdX` mounted).
pub fn root_on_disk() -> bool {
    ROOT_ON_DISK.load(core::sync::atomic::Ordering::Acquire)
}

/// The disk `root=/dev/vdX` names, if given and present (else logged).
#[cfg(feature = "monolithic")]
fn disk_root() -> Option<&'static crate::drivers::virtio_blk::Disk> {
    let dev = crate::boot::cmdline()
        .ok()
        .and_then(crate::cmdline::root_device)?;
    let disk = crate::drivers::virtio_blk::disks()
        .iter()
        .find(|d| dev.strip_prefix("/dev/") == Some(d.name()));
    if disk.is_none() {
        log::error!("fs: root={}: no such disk; the root is a tmpfs", dev);
    }
    disk
}

#[cfg(feature = "monolithic")]
fn clock_now() -> KernelClock {
    KernelClock {
        boot_secs: crate::arch::rtc::read_unix_seconds(),
        boot_ns: crate::arch::time::now_ns(),
    }
}

fn make_root() -> Fs {
    ::fs::lockstat::set_wait_clock(crate::arch::time::now_ns);
    let mode = percpu::lock_mode();
    // tmpfs may use up to half of memory, like Linux's default.
    let max_pages = (crate::memory::total_frames() as u64 / 2).max(1);
    let clock = KernelClock {
        boot_secs: crate::arch::rtc::read_unix_seconds(),
        boot_ns: crate::arch::time::now_ns(),
    };
    let config = FsConfig { mode, max_pages };
    #[cfg(not(feature = "monolithic"))]
    let fs = {
        // The servers image: no ext2 root (`root=` is the monolithic
        // kernel's); `/dev` and `/proc` live on a tmpfs.
        if crate::boot::cmdline()
            .ok()
            .and_then(crate::cmdline::root_device)
            .is_some()
        {
            log::error!("fs: root= needs the monolithic kernel image; the root is a tmpfs");
        }
        Fs::new(config, Arc::new(pages::FramePages), Arc::new(clock))
    };
    #[cfg(feature = "monolithic")]
    let fs = match disk_root() {
        Some(disk) => match Fs::new_ext2(
            config,
            Arc::new(pages::FramePages),
            Arc::new(clock),
            Arc::new(blockdev::DiskDevice(disk)),
            false,
        ) {
            Ok(fs) => {
                ROOT_ON_DISK.store(true, core::sync::atomic::Ordering::Release);
                log::info!("fs: root is the ext2 file system on /dev/{}", disk.name());
                fs
            }
            Err(e) => {
                log::error!(
                    "fs: root=/dev/{}: cannot mount ext2 ({}); the root is a tmpfs",
                    disk.name(),
                    e.reason
                );
                Fs::new(config, Arc::new(pages::FramePages), Arc::new(clock_now()))
            }
        },
        None => Fs::new(config, Arc::new(pages::FramePages), Arc::new(clock)),
    };
    if let Err(e) = make_mounts(&fs, max_pages) {
        // Only ENOSPC/ENOMEM could get here on an empty tmpfs.
        log::error!("fs: mounting /dev, /tmp, /proc failed: errno {}", e.0);
    }
    crate::memory::vm::set_file_source(file_source);
    fs
}

/// Mounts the kernel's file systems below the root tmpfs, each its own
/// superblock (own `st_dev`, inode numbers and page bound): `/dev` with the
/// device nodes and the `/proc/self/fd` links, `/tmp` (mode 1777) and
/// `/proc` (`procfs`).
fn make_mounts(fs: &Fs, max_pages: u64) -> Result<(), ::fs::Errno> {
    let root = fs.root();
    // /dev holds only device nodes and links: a few pages are plenty.
    const SMALL: u64 = 64;
    mkdir_if_missing(fs, &root, "/dev", 0o755)?;
    let dev_fs: &'static Fs = alloc::boxed::Box::leak(alloc::boxed::Box::new(fs.new_mount(SMALL)));
    fs.mount(&root, "/dev", dev_fs)?;
    fs.mknod(&root, "/dev/null", FileType::CharDevice, 0o666, dev::NULL)?;
    fs.mknod(&root, "/dev/zero", FileType::CharDevice, 0o666, dev::ZERO)?;
    fs.mknod(&root, "/dev/full", FileType::CharDevice, 0o666, dev::FULL)?;
    fs.mknod(
        &root,
        "/dev/random",
        FileType::CharDevice,
        0o666,
        dev::RANDOM,
    )?;
    fs.mknod(
        &root,
        "/dev/urandom",
        FileType::CharDevice,
        0o666,
        dev::URANDOM,
    )?;
    fs.symlink("/proc/self/fd", &root, "/dev/fd")?;
    fs.symlink("/proc/self/fd/0", &root, "/dev/stdin")?;
    fs.symlink("/proc/self/fd/1", &root, "/dev/stdout")?;
    fs.symlink("/proc/self/fd/2", &root, "/dev/stderr")?;
    fs.mknod(
        &root,
        "/dev/console",
        FileType::CharDevice,
        0o600,
        dev::CONSOLE,
    )?;
    fs.mknod(&root, "/dev/tty", FileType::CharDevice, 0o666, dev::TTY)?;
    // The virtio disks probed at boot (drivers run before the root exists).
    for disk in crate::drivers::virtio_blk::disks() {
        let path = alloc::format!("/dev/{}", disk.name());
        let rdev = blockdev::rdev_of(disk.index());
        fs.mknod(&root, &path, FileType::BlockDevice, 0o660, rdev)?;
    }
    mkdir_if_missing(fs, &root, "/tmp", 0o777)?;
    let tmp_fs: &'static Fs =
        alloc::boxed::Box::leak(alloc::boxed::Box::new(fs.new_mount(max_pages)));
    fs.mount(&root, "/tmp", tmp_fs)?;
    // The mounted root carries the mode, as for Linux's `mode=1777`.
    fs.lookup(&root, "/tmp", true)?.set_perm(0o1777);
    mkdir_if_missing(fs, &root, "/proc", 0o555)?;
    let (provider, key) = procfs::ProcFs::root();
    let proc_fs = fs.new_generated_mount(provider, key);
    PROC_DEV.store(proc_fs.dev(), core::sync::atomic::Ordering::Relaxed);
    fs.mount(&root, "/proc", &proc_fs)?;
    TMPFS.call_once(|| alloc::vec![dev_fs, tmp_fs]);
    Ok(())
}

/// `mkdir`, where an existing directory is fine (a disk root has them).
fn mkdir_if_missing(
    fs: &Fs,
    root: &Arc<::fs::Inode>,
    path: &str,
    mode: u32,
) -> Result<(), ::fs::Errno> {
    match fs.mkdir(root, path, mode) {
        Err(e) if e == ::fs::Errno::EEXIST => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Makes the root file system and unpacks the initramfs module (cmdline
/// `initramfs`) into it, if there is one.  Returns the number of archive
/// members unpacked; a malformed archive is an error message for
/// `initramfs: error: ...`.
pub fn init_root() -> Result<usize, String> {
    root_fs();
    if remote::active() {
        // The file server unpacks the archive into its own root.
        return Ok(0);
    }
    #[cfg(not(feature = "monolithic"))]
    {
        Err(String::from(
            "this kernel image has no in-kernel file system for the archive \
             (built without the `monolithic` feature): boot it with structure=servers",
        ))
    }
    #[cfg(feature = "monolithic")]
    init_root_monolithic()
}

/// `init_root` of the monolithic structure: the archive (or, with a disk
/// root, PID 1's files) into the kernel's own tree.
#[cfg(feature = "monolithic")]
fn init_root_monolithic() -> Result<usize, String> {
    if root_on_disk() {
        mounts::start_flusher();
    }
    let Some(module) = crate::boot::modules()
        .iter()
        .find(|m| m.string().to_bytes() == b"initramfs")
    else {
        return Ok(0);
    };
    let archive = crate::boot::module_bytes(module);
    if root_on_disk() {
        // The disk is the root: only PID 1's argv and environment files
        // come from the archive (init removes them before it starts).
        return initramfs::unpack_matching(archive, |name| {
            name == ".init" || name.starts_with(".init/")
        });
    }
    unpack_initramfs(archive)
}

/// The whole contents of a regular file.
#[allow(dead_code)] // interface (docs/USERSPACE.md); exec reads through `open_exec`
pub fn read_whole_file(ctx: &FsContext, path: &str) -> Result<Vec<u8>, Errno> {
    let inode = root_fs().lookup(&ctx.cwd(), path, true).map_err(errno)?;
    if inode.kind() != FileType::Regular {
        return Err(Errno::EACCES);
    }
    let size = inode.size();
    let len = usize::try_from(size).map_err(|_| Errno::ENOMEM)?;
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    data.resize(len, 0);
    let n = inode.read_at(0, &mut data).map_err(errno)?;
    data.truncate(n);
    Ok(data)
}

/// The regular file at `path` for `execve`: `EACCES` for a directory, a
/// non-regular file or one without any execute bit (as for Linux's root).
pub fn open_exec(ctx: &FsContext, path: &str) -> Result<Arc<::fs::Inode>, Errno> {
    let inode = root_fs().lookup(&ctx.cwd(), path, true).map_err(errno)?;
    if inode.kind() != FileType::Regular || inode.stat().mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(inode)
}

/// The page-cache pages of a regular file, for file `mmap`.
struct FilePages(Arc<::fs::Inode>);

impl crate::memory::vm::vma::PageSource for FilePages {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno> {
        self.0.page_phys(index).map(PhysAddr::new).map_err(errno)
    }

    fn object_key(&self) -> usize {
        self.0.map_key()
    }

    fn file_id(&self) -> Option<(u64, u64)> {
        Some((self.0.dev(), self.0.ino()))
    }

    fn fault_around(&self) -> bool {
        true
    }

    fn resident(&self, index: u64) -> Option<PhysAddr> {
        self.0.page_phys_resident(index).map(PhysAddr::new)
    }

    fn mapped_into(&self, aspace: &Arc<crate::memory::vm::AddressSpace>) {
        let weak: alloc::sync::Weak<dyn ::fs::FileMapper> =
            Arc::downgrade(aspace) as alloc::sync::Weak<dyn ::fs::FileMapper>;
        // Only regular files reach here, so this cannot fail.
        let _ = self.0.register_mapper(weak);
    }
}

/// The page-cache pages of the program file `inode`, for `execve` to map
/// its segments privately (copy-on-write) instead of copying them.
pub fn program_pages(inode: &Arc<::fs::Inode>) -> Arc<dyn crate::memory::vm::vma::PageSource> {
    Arc::new(FilePages(inode.clone()))
}

/// Address spaces are what file truncates unmap from (the reverse map of
/// each file holds them weakly).
impl ::fs::FileMapper for crate::memory::vm::AddressSpace {
    fn unmap_file_pages(&self, file_key: usize, first_gone: u64) {
        self.unmap_source_pages(file_key, first_gone);
    }
}

/// `mmap` of descriptor `fd` of the calling process.
fn file_source(fd: i32) -> Result<Arc<dyn crate::memory::vm::vma::PageSource>, Errno> {
    let file = with_files(|fds, _| fds.get(fd))??;
    match &file.inode {
        Some(inode) if inode.kind() == FileType::Regular && file.is_plain() => {
            let source = FilePages(inode.clone());
            // The caller maps it into its own address space: enter that
            // in the file's reverse map (a failed mmap leaves a harmless
            // entry, pruned when the address space dies).
            if let Some(aspace) = crate::memory::vm::current() {
                crate::memory::vm::vma::PageSource::mapped_into(&source, &aspace);
            }
            Ok(Arc::new(source))
        }
        Some(inode) if inode.is_dir() => Err(Errno::ENODEV),
        // A file-server file: page grants (docs/SERVERS.md).
        None if file.as_remote().is_some() => remote_map::source(&file),
        _ => Err(Errno::ENODEV),
    }
}

/// Runs `f` on the calling process's descriptor table and fs context.
/// `EBADF` in a kernel thread (no process).
pub fn with_files<R>(f: impl FnOnce(&FdTable, &FsContext) -> R) -> Result<R, Errno> {
    let p = crate::proc::current().ok_or(Errno::EBADF)?;
    Ok(f(&p.files.fds, &p.files.ctx))
}
