//! One-copy I/O grants: a file server hands its client (the kernel) the
//! addresses of the page-cache pages behind a read or write, and the client
//! copies between those pages and its user's buffer itself
//! (docs/SERVERS.md "Copy modes").
//!
//! Owns: `grant_read` (the pages of a range and how many bytes are valid),
//! `grant_write` + `commit_write` (pages made ready for a write, then the
//! size and time updated for the bytes the client copied), and the count
//! of I/O users (`io_open`/`io_close`: the server's open handles).
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
//! never sees the new end before the bytes; a truncate between
//! `grant_write` and `commit_write` is seen (`epoch`) and the commit
//! refused with `EAGAIN` (the client writes that piece again).
//!
//! Must not: hand out a page it does not own, or free a page while a
//! grant of it may be in use.

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
        f.io_users = f.io_users.saturating_sub(1);
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
    /// truncate epoch to hand to `commit_write`.  The size is unchanged.
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
        Ok((n, addrs, f.epoch))
    }

    /// The client copied `count` bytes at `offset` into the pages
    /// `grant_write` (which returned `epoch`) named: the file grows to
    /// cover them, a disk file marks them dirty, mtime and ctime change.
    /// Returns the offset after the bytes.  `EAGAIN` when a truncate came
    /// in between (the bytes may have gone with a cut page), `EINVAL`
    /// for a range no grant could have given.
    pub fn commit_write(&self, offset: u64, count: usize, epoch: u64) -> FsResult<u64> {
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
        if f.epoch != epoch {
            return Err(Errno::EAGAIN);
        }
        if count == 0 {
            return Ok(offset);
        }
        // Every page must still be there (only a truncate removes pages,
        // and that changes the epoch; a forged commit finds a hole).
        if (first..last).any(|i| !f.pages.contains_key(&i)) {
            return Err(Errno::EINVAL);
        }
        if self.shared.disk.is_some() {
            f.dirty.extend(first..last);
        }
        f.version += 1;
        if end > f.size {
            f.size = end;
        }
        drop(f);
        self.touch_modified();
        Ok(end)
    }
}
