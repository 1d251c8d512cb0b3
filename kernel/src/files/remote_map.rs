//! File mappings of file-server files (`structure=servers`, docs/SERVERS.md
//! "File mappings"): a remote file is one more `PageSource`, whose pages
//! are **page grants**, the frames of the server's own page cache.
//!
//! Owns: `RemoteFile` (one per mapped server file, found by (device,
//! inode)): the grant table (page index -> pinned frame), the frames
//! retired by truncates, the reverse map of the address spaces mapping the
//! file, and the open file description whose handle asks for pages.
//!
//! How a page comes to be: a fault asks `RemoteFile::page`; a page not
//! granted yet is asked for with `MapPages` (its 16-page aligned window,
//! one call), the server replies with the addresses of the pages in its
//! own address space, and each is pinned there (`AddressSpace::
//! pin_anon_page`: must be private anonymous read/write memory of the
//! server, present; the pin keeps the frame from being freed).  The VM
//! then maps the frame as it maps the kernel's page-cache pages: shared
//! mappings write into the server's page (what `read` through the server
//! returns, and the other way round), private ones copy on write.
//!
//! Invariants: a frame stays pinned while any translation of it may exist
//! (until the `RemoteFile` drops, which is after the last VMA went); a
//! truncate (`truncated`, called by the delegation layer after the server
//! truncated) first moves the grants past the new end out of the table
//! (so later faults ask the server, which says `EFAULT`: SIGBUS) and then
//! drops every translation of those pages in every mapping address space,
//! as `fs::Inode::truncate` does for kernel files.  A grant fetched before
//! a truncate is never entered after it (generation count).
//!
//! Per-core: the table of mapped files is one lock taken at `mmap`, at a
//! truncate of a mapped file and when a mapping's last VMA goes, never on
//! the fault path (a fault uses its `RemoteFile`'s own lock, and no lock
//! once the page is granted and mapped).
//!
//! Must not: call the server with a lock held, block in `Drop` (the file
//! is dropped through `remote::defer_drop`), or use `unsafe`.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use abi::Errno;

use super::file::FileRef;
use super::remote;
use crate::memory::vm::{self, AddressSpace};
use crate::memory::PhysAddr;
use crate::sched::IrqSpinLock;

/// Pages asked for per `MapPages` (the fault-around window).
const WINDOW: u64 = fsproto::MAX_MAP_PAGES as u64;

/// Mapped server files by (device, inode number).  One lock for all: see
/// "Per-core" above (not on the fault path).
static FILES: IrqSpinLock<BTreeMap<(u64, u64), Weak<RemoteFile>>> =
    IrqSpinLock::new(BTreeMap::new());
/// Entries in `FILES` (read without the lock by `truncated`).
static MAPPED_FILES: AtomicUsize = AtomicUsize::new(0);

struct Grants {
    /// Page index -> pinned frame of the server's page cache.
    live: BTreeMap<u64, PhysAddr>,
    /// Frames cut off by truncates: a translation may still exist until
    /// the unmap finished, so they stay pinned until the file goes.
    retired: Vec<PhysAddr>,
}

/// A server file that is mapped somewhere.
pub struct RemoteFile {
    id: (u64, u64),
    /// An open file description of it (readable); its handle asks for
    /// pages.  `None` only while being dropped.
    file: Option<FileRef>,
    grants: IrqSpinLock<Grants>,
    /// Bumped by every truncate: grants fetched before one are not
    /// entered after it.
    generation: AtomicU64,
    /// Address spaces that map (or mapped) the file, weakly.
    rmap: IrqSpinLock<Vec<Weak<AddressSpace>>>,
}

/// The `PageSource` for `mmap` of the server file `file` (a `Kind::Remote`
/// file): `EBADF` for an `O_PATH` descriptor, `EACCES` for one not open for
/// reading (as Linux), `ENODEV` for anything but a regular file.
pub fn source(file: &FileRef) -> Result<Arc<dyn vm::PageSource>, Errno> {
    let r = file.as_remote().ok_or(Errno::ENODEV)?;
    if file.flags() & abi::fcntl::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    if !r.is_regular() {
        return Err(Errno::ENODEV);
    }
    if !file.readable() {
        return Err(Errno::EACCES);
    }
    let id = (r.dev, r.ino);
    let rf = {
        let mut files = FILES.lock();
        match files.get(&id).and_then(Weak::upgrade) {
            Some(rf) => rf,
            None => {
                let rf = Arc::new(RemoteFile {
                    id,
                    file: Some(file.clone()),
                    grants: IrqSpinLock::new(Grants {
                        live: BTreeMap::new(),
                        retired: Vec::new(),
                    }),
                    generation: AtomicU64::new(0),
                    rmap: IrqSpinLock::new(Vec::new()),
                });
                if files.insert(id, Arc::downgrade(&rf)).is_none() {
                    MAPPED_FILES.fetch_add(1, Ordering::Relaxed);
                }
                rf
            }
        }
    };
    // The caller maps it into its own address space (a failed mmap
    // leaves a harmless entry, pruned later).
    if let Some(aspace) = vm::current() {
        vm::PageSource::mapped_into(&*rf, &aspace);
    }
    Ok(rf)
}

/// The server truncated file (`dev`, `ino`) to `size` bytes: if it is
/// mapped, its grants past the end are retired and every translation of
/// those pages (private copies included) goes, so a later touch faults
/// and gets SIGBUS.  Cheap when nothing is mapped.
pub fn truncated(dev: u64, ino: u64, size: u64) {
    if MAPPED_FILES.load(Ordering::Relaxed) == 0 {
        return;
    }
    let Some(rf) = FILES.lock().get(&(dev, ino)).and_then(Weak::upgrade) else {
        return;
    };
    let first_gone = size.div_ceil(vm::PAGE_SIZE);
    {
        let mut g = rf.grants.lock();
        rf.generation.fetch_add(1, Ordering::AcqRel);
        let gone = g.live.split_off(&first_gone);
        g.retired.extend(gone.into_values());
    }
    let mappers: Vec<Arc<AddressSpace>> = {
        let mut rmap = rf.rmap.lock();
        rmap.retain(|w| w.strong_count() > 0);
        rmap.iter().filter_map(Weak::upgrade).collect()
    };
    let key = vm::PageSource::object_key(&*rf);
    for a in mappers {
        a.unmap_source_pages(key, first_gone);
    }
}

/// Whether any server file is mapped (the delegation layer then finds the
/// inode a path truncate or an `O_TRUNC` open acts on).
pub fn any_mapped() -> bool {
    MAPPED_FILES.load(Ordering::Relaxed) != 0
}

impl RemoteFile {
    /// Asks the server for the window of pages around `index` and pins
    /// them; returns the frame of `index`.
    fn fetch(&self, index: u64) -> Result<PhysAddr, Errno> {
        let handle = self
            .file
            .as_ref()
            .and_then(|f| f.as_remote())
            .ok_or(Errno::EIO)?
            .handle;
        let generation = self.generation.load(Ordering::Acquire);
        let lo = index - index % WINDOW;
        let addrs = remote::map_pages(handle, lo, WINDOW as u32)?;
        let server = crate::proc::process::find_process(remote::server_pid())
            .and_then(|p| p.aspace())
            .ok_or(Errno::EIO)?;
        let mut wanted = Err(Errno::EFAULT);
        for (i, addr) in (lo..).zip(addrs) {
            // Pages of the window granted before (the file grew, or a
            // truncate kept them) are not pinned again.
            if let Some(&have) = self.grants.lock().live.get(&i) {
                if i == index {
                    wanted = Ok(have);
                }
                continue;
            }
            let frame = match server.pin_anon_page(addr) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!(
                        "servers: MapPages named {addr:#x}, not a page of the server ({e:?})"
                    );
                    if i == index {
                        return Err(Errno::EIO);
                    }
                    continue;
                }
            };
            let mut g = self.grants.lock();
            let current = self.generation.load(Ordering::Acquire) == generation;
            let frame = match g.live.get(&i) {
                // Granted meanwhile by another fault: keep that one.
                Some(&have) => {
                    g.retired.push(frame);
                    have
                }
                None if current => {
                    g.live.insert(i, frame);
                    frame
                }
                // A truncate came in between: this fault may still use
                // the page (as a fault racing a truncate on a kernel
                // file), later ones ask again.
                None => {
                    g.retired.push(frame);
                    frame
                }
            };
            if i == index {
                wanted = Ok(frame);
            }
        }
        wanted
    }
}

impl vm::PageSource for RemoteFile {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno> {
        if let Some(&frame) = self.grants.lock().live.get(&index) {
            return Ok(frame);
        }
        self.fetch(index)
    }

    fn object_key(&self) -> usize {
        self as *const RemoteFile as usize
    }

    fn mapped_into(&self, aspace: &Arc<AddressSpace>) {
        let mut rmap = self.rmap.lock();
        rmap.retain(|w| w.strong_count() > 0);
        let weak = Arc::downgrade(aspace);
        if !rmap.iter().any(|w| Weak::ptr_eq(w, &weak)) {
            rmap.push(weak);
        }
    }

    fn file_id(&self) -> Option<(u64, u64)> {
        Some(self.id)
    }

    fn fault_around(&self) -> bool {
        true
    }
}

impl Drop for RemoteFile {
    fn drop(&mut self) {
        // The last VMA is gone, with its translations: the pins go.
        let mut g = self.grants.lock();
        for (_, frame) in core::mem::take(&mut g.live) {
            vm::unpin_frame(frame);
        }
        for frame in core::mem::take(&mut g.retired) {
            vm::unpin_frame(frame);
        }
        drop(g);
        {
            let mut files = FILES.lock();
            if files.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
                files.remove(&self.id);
                MAPPED_FILES.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Closing the description may call the server: not from here.
        if let Some(file) = self.file.take() {
            remote::defer_drop(Box::new(file));
        }
    }
}
