//! Memory that outlives a server process: the network server's state
//! arena (docs/SERVERS.md "Replacing the network server").
//!
//! Owns `ServerArena`, a `PageSource` of zero-filled frames made on first
//! touch and kept until the arena itself is dropped (not when a process
//! that mapped it exits): the kernel maps one arena, shared, at the same
//! fixed address into every instance of netd, so a successor finds the
//! running instance's heap (sockets, connections, listeners) where it was.
//!
//! Invariants: a frame handed out by `page` stays the arena's until the
//! arena is dropped, and a VMA keeps its source alive, so no frame is
//! freed while a page table may still point at it.  Must not: free a
//! frame before `Drop`, or grow past `pages`.

use alloc::vec::Vec;

use super::vm::PageSource;
use super::PhysAddr;
use abi::Errno;

/// A lazily backed, fixed-size, shared memory object.
pub struct ServerArena {
    pages: u64,
    frames: spin::Mutex<Vec<Option<PhysAddr>>>,
}

impl ServerArena {
    /// An arena of `bytes` (rounded up to pages); nothing allocated yet.
    pub fn new(bytes: u64) -> ServerArena {
        let pages = bytes.div_ceil(4096);
        ServerArena {
            pages,
            frames: spin::Mutex::new(Vec::new()),
        }
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.pages * 4096
    }
}

impl PageSource for ServerArena {
    fn page(&self, index: u64) -> Result<PhysAddr, Errno> {
        if index >= self.pages {
            return Err(Errno::EFAULT);
        }
        let mut frames = self.frames.lock();
        let i = index as usize;
        if frames.len() <= i {
            frames.resize(i + 1, None);
        }
        if let Some(f) = frames[i] {
            return Ok(f);
        }
        let f = super::alloc_frame().ok_or(Errno::ENOMEM)?;
        // SAFETY: a fresh frame from the allocator, mapped by the HHDM, ours.
        unsafe { core::ptr::write_bytes(super::phys_to_virt(f), 0, 4096) };
        frames[i] = Some(f);
        Ok(f)
    }
}

impl Drop for ServerArena {
    fn drop(&mut self) {
        for f in self.frames.get_mut().drain(..).flatten() {
            super::free_frame(f);
        }
    }
}
