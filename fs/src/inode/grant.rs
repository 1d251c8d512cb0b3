//! One-copy I/O grants: a file server hands its client (the kernel) the
//! addresses of the page-cache pages behind a read or write, and the client
//! copies between those pages and its user's buffer itself
//! (docs/SERVERS.md "Copy modes").
//!
//! Owns: `grant_read` (the pages of a range and how many bytes are valid),
//! `grant_write` + `commit_write` (pages made ready for a write, then the
//! size and time updated for the bytes the client copied), the record of
//! write grants not ended yet (`WriteGrant`), and the count of I/O users
//! (`io_open`/`io_close`: the server's open handles).
//!
//! Invariants (page lifetime): a page named by a grant stays a page of
//! this file system (never freed, so never reused for another file) until
//! the last I/O user closes: while a page was granted and a user is open,
//! a truncate retires the pages it cuts off (as for a mapped file) and a
//! disk file does not evict clean pages.  The client copies only while it
//! holds the handle it asked with, so when the count falls to 0 no copy
//! can be running and the retired pages are freed (unless the file is
//! mapped, whose pages stay with the inode).  A write's size change
//! happens at `commit_write`, after the data is in the pages, so a reader
//! never sees the new end before the bytes.
//!
//! Invariants (bytes past the end): outside the range of every write
//! grant not ended yet, the bytes of a file's pages at or past its size
//! are zero, so a file that grows (truncate, a write further on, a
//! commit) shows zeros there without touching them.  A write grant ends
//! at its commit (whatever it commits; `commit_write` with count 0 ends
//! it with nothing), when the last I/O user closes (no copy can run any
//! more: a client that died), or when a file holds `MAX_GRANTS` and a new
//! one comes (the oldest ends; its commit then gets `EAGAIN`).  Each grant
//! records the bytes of its range that were past the end at some time of
//! its life and that no write committed since (`wipe`): when it ends,
//! those it did not commit are zeroed, except where another grant not
//! ended yet covers them (that one may be copying there right now: they
//! join its `wipe` instead).  Growing a file therefore never zeroes a
//! concurrent writer's bytes, and a grant dropped after a copy leaves
//! zeros behind.  A shrinking truncate over a grant's range makes its
//! commit fail with `EAGAIN` (the bytes may have gone with a cut page or
//! the zeroed tail; the client writes that piece again through a
//! message), as does a ticket this instance never handed out.
//!
//! Per-file state, not per-CPU: a grant is asked for and committed from
//! any CPU (the client's thread and the server's workers migrate), and a
//! truncate or write on any CPU must see every grant of the file; the
//! record lives in the file's data under the file lock these calls
//! already take, so the hot path adds a push and a short scan (usually
//! of one entry), no lock and no shared line.
//!
//! Not covered: bytes inside the file that a grant copied and then did
//! not commit keep what was copied (the kernel commits every byte it
//! copied, so only a client that stops between copy and commit leaves
//! them, as a torn write would).
//!
//! Must not: hand out a page it does not own, free a page while a grant
//! of it may be in use, or zero a byte a grant not ended yet covers.

use super::*;
use alloc::vec::Vec;

impl Inode {
    /// A server opened an I/O handle (read or write) of this regular file.
    pub fn io_open(&self) {
        if let Ok(f) = self.file() {
            f.write().io_users += 1;
        }
    }

    /// A server's I/O handle of this file was closed; the last one frees
    /// the pages truncates retired meanwhile (unless the file is mapped).
    pub fn io_close(&self) {
        let Ok(lock) = self.file() else {
            return;
        };
        let mut f = lock.write();
        let was = f.io_users;
        f.io_users = was.saturating_sub(1);
        if was == 1 {
            // No copy can run any more: grants never committed (a client
            // that died, a copy that faulted before its first byte) end.
            while !f.grants.is_empty() {
                f.end_grant(0, (0, 0));
            }
        }
        if f.io_users == 0 && *f.io_granted.get_mut() {
            *f.io_granted.get_mut() = false;
            if !f.mapped {
                for p in core::mem::take(&mut f.retired) {
                    self.shared.free_page(p);
                }
            }
        }
    }

    /// The pages behind a read of at most `len` bytes at `offset`: the
    /// bytes that can be read (`min(len, size - offset)`, 0 at or past the
    /// end) and the address (`Page::phys`) of each page they span, in
    /// order, 0 for a hole (reads as zeros).
    pub fn grant_read(&self, offset: u64, len: usize) -> FsResult<(usize, Vec<u64>)> {
        let _big = self.shared.big();
        self.shared.stats.reads.inc();
        let lock = self.file()?;
        let f = loop {
            let f = lock.read();
            match crate::ext2::missing(self, &f, offset, len) {
                None => break f,
                Some((first, end)) => {
                    drop(f);
                    crate::ext2::fill(self, &mut lock.write(), first, end)?;
                }
            }
        };
        if offset >= f.size || len == 0 {
            return Ok((0, Vec::new()));
        }
        let n = (len as u64).min(f.size - offset) as usize;
        let ps = PAGE_SIZE as u64;
        let (first, end) = (offset / ps, (offset + n as u64).div_ceil(ps));
        // One walk of the range (not a lookup per page: a read-ahead
        // grant names up to 257 pages).
        let mut addrs = alloc::vec![0u64; (end - first) as usize];
        for (&i, p) in f.pages.range(first..end) {
            addrs[(i - first) as usize] = p.phys();
        }
        if addrs.iter().any(|&a| a != 0) {
            // Under the read lock: a truncate (write lock) sees it.
            f.io_granted.store(true, Ordering::Relaxed);
        }
        Ok((n, addrs))
    }

    /// Makes the pages for a write of at most `len` (> 0) bytes at
    /// `offset` ready (holes below and past the end get zeroed pages, a
    /// disk file's pages are read in): the bytes the client may copy
    /// (fewer when the file system is out of pages or at its largest
    /// file; `ENOSPC` / `EFBIG` when none), the page addresses, and the
    /// grant's ticket to hand to `commit_write`, which ends the grant.
    /// The size is unchanged.
    pub fn grant_write(&self, offset: u64, len: usize) -> FsResult<(usize, Vec<u64>, u64)> {
        let _big = self.shared.big();
        self.writable()?;
        let mut f = self.file()?.write();
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(len as u64).ok_or(Errno::EFBIG)?;
        let max = self.shared.max_file_size();
        if offset >= max {
            return Err(Errno::EFBIG);
        }
        let ps = PAGE_SIZE as u64;
        let end = end.min(max);
        let (first, last) = (offset / ps, end.div_ceil(ps));
        crate::ext2::fill(self, &mut f, first, last)?;
        let mut addrs = Vec::with_capacity((last - first) as usize);
        for index in first..last {
            if let Some(p) = f.pages.get(&index) {
                addrs.push(p.phys());
                continue;
            }
            let mut page = self.shared.alloc_zeroed_page();
            if page.is_none() && f.evict_clean(self.shared, index, last, 64) > 0 {
                page = self.shared.alloc_zeroed_page();
            }
            match page {
                Some(p) => {
                    addrs.push(p.phys());
                    f.pages.insert(index, p);
                }
                None if addrs.is_empty() => return Err(Errno::ENOSPC),
                None => break,
            }
        }
        *f.io_granted.get_mut() = true;
        // The client writes into these pages from now until its
        // `commit_write` (which bumps it again): a copy of the data read
        // meanwhile is not current (`data_version`, the replacement's
        // pre-copy).
        f.version += 1;
        let covered = (first + addrs.len() as u64) * ps;
        let n = (end.min(covered) - offset) as usize;
        if f.grants.len() >= MAX_GRANTS {
            f.end_grant(0, (0, 0));
        }
        let ticket = f.tickets;
        f.tickets = f.tickets.wrapping_add(1);
        let grant_end = offset + n as u64;
        let mut wipe = Ranges::default();
        wipe.add(offset.max(f.size), grant_end);
        f.grants.push(WriteGrant {
            ticket,
            start: offset,
            end: grant_end,
            stale: false,
            wipe,
        });
        Ok((n, addrs, ticket))
    }

    /// The client copied `count` bytes at `offset` into the pages the
    /// `grant_write` that returned `ticket` named: the file grows to cover
    /// them, a disk file marks them dirty, mtime and ctime change, and the
    /// grant ends (its bytes past the end not committed are zeroed, see
    /// the module comment; `count` 0 only ends it).  Returns the offset
    /// after the bytes.  `EAGAIN` when the grant is no longer valid: a
    /// truncate cut into its range in between (the bytes may have gone
    /// with a cut page), it was ended already or never handed out here
    /// (another server instance's); `EINVAL` for a range no grant could
    /// have given.
    pub fn commit_write(&self, offset: u64, count: usize, ticket: u64) -> FsResult<u64> {
        let _big = self.shared.big();
        self.shared.stats.writes.inc();
        self.writable()?;
        let mut f = self.file()?.write();
        let end = offset.checked_add(count as u64).ok_or(Errno::EINVAL)?;
        if end > self.shared.max_file_size() {
            return Err(Errno::EINVAL);
        }
        let ps = PAGE_SIZE as u64;
        let (first, last) = (offset / ps, end.div_ceil(ps));
        // Every page must still be there (only a truncate removes pages,
        // and that ends the grant's validity; a forged commit finds a hole).
        let holes = (first..last).any(|i| !f.pages.contains_key(&i));
        let Some(at) = f.grants.iter().position(|g| g.ticket == ticket) else {
            return match count {
                0 => Ok(offset),
                _ if holes => Err(Errno::EINVAL),
                _ => Err(Errno::EAGAIN),
            };
        };
        let g = &f.grants[at];
        if count > 0 && (offset < g.start || end > g.end) {
            return Err(Errno::EINVAL);
        }
        if g.stale {
            f.end_grant(at, (0, 0));
            return Err(Errno::EAGAIN);
        }
        if count == 0 {
            f.end_grant(at, (0, 0));
            return Ok(offset);
        }
        if holes {
            return Err(Errno::EINVAL);
        }
        if self.shared.disk.is_some() {
            f.dirty.extend(first..last);
        }
        f.version += 1;
        if end > f.size {
            f.size = end;
        }
        f.grants_written(offset, end, Some(at));
        f.end_grant(at, (offset, end));
        drop(f);
        self.touch_modified();
        Ok(end)
    }
}

/// Most write grants a file keeps (a client that asks and never commits
/// cannot grow the record without bound): a new one ends the oldest.
const MAX_GRANTS: usize = 64;

/// One write grant handed out and not ended yet.
pub(crate) struct WriteGrant {
    /// What `grant_write` returned and `commit_write` names.
    ticket: u64,
    /// The bytes the client may copy.
    start: u64,
    end: u64,
    /// A shrinking truncate cut into the range: the commit is refused.
    stale: bool,
    /// Bytes of the range that were at or past the end of the file at
    /// some time of the grant's life and that no write committed since:
    /// zeroed when the grant ends without committing them.
    wipe: Ranges,
}

/// A set of byte offsets as sorted, disjoint, non-empty half-open ranges
/// (a grant's needs one or two).
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Adds `[a, b)`, merging with the ranges it touches.
    pub(crate) fn add(&mut self, a: u64, b: u64) {
        if a >= b {
            return;
        }
        let (mut lo, mut hi) = (a, b);
        self.0.retain(|&(x, y)| {
            if y < lo || x > hi {
                return true;
            }
            lo = lo.min(x);
            hi = hi.max(y);
            false
        });
        let at = self.0.partition_point(|&(x, _)| x < lo);
        self.0.insert(at, (lo, hi));
    }

    /// Removes `[a, b)`.
    pub(crate) fn remove(&mut self, a: u64, b: u64) {
        if a >= b || self.0.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(x, y) in &self.0 {
            if y <= a || x >= b {
                out.push((x, y));
                continue;
            }
            if x < a {
                out.push((x, a));
            }
            if y > b {
                out.push((b, y));
            }
        }
        self.0 = out;
    }

    /// The part inside `[a, b)`.
    pub(crate) fn within(&self, a: u64, b: u64) -> Ranges {
        Ranges(
            self.0
                .iter()
                .map(|&(x, y)| (x.max(a), y.min(b)))
                .filter(|&(x, y)| x < y)
                .collect(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }
}

impl FileData {
    /// The bytes `[a, b)` were written and committed (`write_at`, or the
    /// commit of grant `by`): no other grant zeroes them when it ends.
    pub(super) fn grants_written(&mut self, a: u64, b: u64, by: Option<usize>) {
        for (i, g) in self.grants.iter_mut().enumerate() {
            if Some(i) != by {
                g.wipe.remove(a, b);
            }
        }
    }

    /// A truncate shrank the file to `size`: every grant reaching past it
    /// may have lost bytes (cut pages, the zeroed tail), so its commit
    /// will be refused, and what it copies past the end from now on must
    /// be zeroed when it ends.
    pub(super) fn grants_cut(&mut self, size: u64) {
        for g in self.grants.iter_mut().filter(|g| g.end > size) {
            g.stale = true;
            g.wipe.add(g.start.max(size), g.end);
        }
    }

    /// Ends grant `at`, which committed `[c0, c1)`: the rest of its `wipe`
    /// is zeroed, except what another grant covers (added to that one's).
    pub(super) fn end_grant(&mut self, at: usize, (c0, c1): (u64, u64)) {
        let g = self.grants.remove(at);
        let mut zero = g.wipe;
        zero.remove(c0, c1);
        if zero.is_empty() {
            return;
        }
        for h in self.grants.iter_mut() {
            let shared = zero.within(h.start, h.end);
            for (x, y) in shared.iter() {
                h.wipe.add(x, y);
            }
            zero.remove(h.start, h.end);
        }
        let ps = PAGE_SIZE as u64;
        for (x, y) in zero.iter() {
            for (&i, p) in self.pages.range(x / ps..y.div_ceil(ps)) {
                let lo = x.max(i * ps);
                let hi = y.min((i + 1) * ps);
                p.zero((lo - i * ps) as usize, (hi - lo) as usize);
            }
        }
    }
}
