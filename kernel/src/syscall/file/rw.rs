//! read, write, pread64/pwrite64, readv/writev, lseek, sendfile:
//! bytes between user buffers and open files, in bounded chunks.
//!
//! Must not: hold an fs lock while copying to or from user memory.

#[allow(unused_imports)]
use super::*;

fn do_read(f: &File, buf: UserAddr, count: u64, offset: Option<u64>) -> SysResult {
    let count = count.min(isize::MAX as u64 & !0xfff) as usize;
    if count == 0 {
        return match offset {
            Some(o) => f.read_at(&mut [], o),
            None => f.read(&mut []),
        };
    }
    if let Some(res) = read_regular(f, buf, count, offset) {
        return res;
    }
    if let Some(r) = f.as_remote() {
        // At the file offset: one reader or writer of the description at a
        // time (Linux's `f_pos_lock`; `remote::PosLock`).
        let _pos = offset.is_none().then(|| r.pos_lock.lock());
        if crate::files::remote::one_copy() {
            if let Some(res) =
                crate::files::remote_io::read(f, r.handle, &r.cache, buf, count, offset)
            {
                return res;
            }
        }
        return read_remote(f, buf, count, offset);
    }
    let mut kbuf = crate::memory::kbuf::zeroed(count.min(CHUNK))?;
    let mut done = 0;
    while done < count {
        let want = (count - done).min(kbuf.len());
        let res = match offset {
            Some(o) => f.read_at(&mut kbuf[..want], o + done as u64),
            None => f.read(&mut kbuf[..want]),
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if let Err(e) = buf.offset(done as u64).write_bytes(&kbuf[..n]) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        done += n;
        // Only regular files and disks fill a long read from several chunks; a pipe
        // returns what it has.
        if n < want || !(f.is_plain() || f.as_disk().is_some() || f.as_remote().is_some()) {
            break;
        }
    }
    Ok(done)
}

/// `read`/`pread64` of a file-server file: pieces read through the server
/// into a kernel buffer and copied out one destination page at a time, so
/// that a buffer running into memory that cannot be written gives the
/// bytes before that page (and `read` advances the offset by them), or
/// `EFAULT`, as for the kernel's own files.
fn read_remote(f: &File, buf: UserAddr, count: usize, offset: Option<u64>) -> SysResult {
    const PAGE: u64 = 4096;
    let mut kbuf = crate::memory::kbuf::zeroed(count.min(CHUNK))?;
    let mut done = 0;
    while done < count {
        let want = (count - done).min(kbuf.len());
        let res = f.read_remote(offset.map(|o| o + done as u64), &mut kbuf[..want], |data| {
            let mut took = 0;
            while took < data.len() {
                let dst = buf.offset((done + took) as u64);
                let n = ((PAGE - dst.raw() % PAGE) as usize).min(data.len() - took);
                if dst.write_bytes(&data[took..took + n]).is_err() {
                    break;
                }
                took += n;
            }
            took
        });
        let (n, took) = match res {
            Some(Ok(r)) => r,
            Some(Err(e)) if done == 0 => return Err(e),
            Some(Err(_)) => break,
            None => return Err(Errno::EBADF),
        };
        done += took;
        if took < n {
            return if done == 0 {
                Err(Errno::EFAULT)
            } else {
                Ok(done)
            };
        }
        if n < want {
            break;
        }
    }
    Ok(done)
}

/// `read`/`pread64` of a regular file (`None` for anything else): one
/// copy, from the page cache straight to the user buffer, with no kernel
/// buffer.  That copy runs under the file's lock, so it never pages in
/// (`copy_to_user_nofault`): where the destination page is not mapped
/// writable yet (never touched, copy-on-write, a file mapping), the lock
/// is dropped, the page is faulted in as a user write would, and the read
/// goes on from there.  As on Linux, a buffer that runs into memory that
/// cannot be written gives the bytes copied before it, or `EFAULT`.
fn read_regular(f: &File, buf: UserAddr, count: usize, offset: Option<u64>) -> Option<SysResult> {
    /// Rounds in a row that may fault in a page and still copy nothing
    /// (another thread unmapping it again meanwhile) before giving up.
    const MAX_STUCK: u32 = 4;
    const PAGE: u64 = 4096;
    let mut done = 0;
    let mut stuck = 0;
    loop {
        let before = done;
        let mut faulted = false;
        let res = f.read_direct(offset.map(|o| o + done as u64), count - done, |piece| {
            // One copy per destination page, so that a fault leaves every
            // byte before that page copied and counted (as Linux counts).
            let mut took = 0;
            while took < piece.len() {
                let dst = buf.offset(done as u64);
                let room = (PAGE - dst.raw() % PAGE) as usize;
                let n = room.min(piece.len() - took);
                let copied = dst
                    .slice(n)
                    .and_then(|d| d.write_from_nofault(&piece[took..took + n]));
                if copied.is_err() {
                    faulted = true;
                    break;
                }
                took += n;
                done += n;
            }
            took
        })?;
        if let Err(e) = res {
            return Some(if done == 0 { Err(e) } else { Ok(done) });
        }
        if !faulted || done == count {
            return Some(Ok(done));
        }
        stuck = if done == before { stuck + 1 } else { 0 };
        if stuck > MAX_STUCK || fault_in_writable(buf.offset(done as u64)).is_err() {
            return Some(if done == 0 {
                Err(Errno::EFAULT)
            } else {
                Ok(done)
            });
        }
    }
}

fn do_write(f: &File, buf: UserAddr, count: u64, offset: Option<u64>) -> SysResult {
    let count = count.min(isize::MAX as u64 & !0xfff) as usize;
    if count == 0 {
        return match offset {
            Some(o) => f.write_at(&[], o, false).map(|(n, _)| n),
            None => f.write(&[]),
        };
    }
    if let Some(r) = f.as_remote() {
        // At the file offset: one reader or writer of the description at
        // a time (Linux's `f_pos_lock`; `remote::PosLock`), held until the
        // last piece is written.
        let _pos = offset.is_none().then(|| r.pos_lock.lock());
        if crate::files::remote::one_copy() {
            if let Some(res) = crate::files::remote_io::write(f, r.handle, buf, count, offset) {
                return res;
            }
        }
        return write_pieces(f, buf, count, offset);
    }
    write_pieces(f, buf, count, offset)
}

/// `write`/`pwrite64` through a kernel buffer, `CHUNK` bytes at a time.
#[inline(always)]
fn write_pieces(f: &File, buf: UserAddr, count: usize, offset: Option<u64>) -> SysResult {
    let mut kbuf = crate::memory::kbuf::zeroed(count.min(CHUNK))?;
    let mut done = 0;
    while done < count {
        let want = (count - done).min(kbuf.len());
        if let Err(e) = buf.offset(done as u64).read_bytes(&mut kbuf[..want]) {
            return if done == 0 { Err(e) } else { Ok(done) };
        }
        let res = match offset {
            Some(o) => f
                .write_at(&kbuf[..want], o + done as u64, false)
                .map(|(n, _)| n),
            None => f.write(&kbuf[..want]),
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if n < want {
            break;
        }
    }
    Ok(done)
}

pub fn sys_read(fd: i32, buf: UserAddr, count: u64) -> SysResult {
    do_read(&*borrowed(fd)?, buf, count, None)
}

pub fn sys_write(fd: i32, buf: UserAddr, count: u64) -> SysResult {
    do_write(&*borrowed(fd)?, buf, count, None)
}

pub fn sys_pread64(fd: i32, buf: UserAddr, count: u64, offset: i64) -> SysResult {
    let f = borrowed(fd)?;
    if offset < 0 {
        return Err(Errno::EINVAL);
    }
    f.check_positional()?;
    do_read(&f, buf, count, Some(offset as u64))
}

pub fn sys_pwrite64(fd: i32, buf: UserAddr, count: u64, offset: i64) -> SysResult {
    let f = borrowed(fd)?;
    if offset < 0 {
        return Err(Errno::EINVAL);
    }
    f.check_positional()?;
    do_write(&f, buf, count, Some(offset as u64))
}

fn iovecs(iov: UserAddr, cnt: u64) -> Result<Vec<(UserAddr, u64)>, Errno> {
    if cnt > MAX_VEC {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for i in 0..cnt {
        let one: Iovec = iov.offset(i * size_of::<Iovec>() as u64).read()?;
        let (base, len) = (UserAddr(one.iov_base), one.iov_len);
        total = total
            .checked_add(len)
            .filter(|&t| t <= isize::MAX as u64)
            .ok_or(Errno::EINVAL)?;
        v.push((base, len));
    }
    Ok(v)
}

/// readv/writev: `transfer` each buffer in turn; stop at the first short
/// transfer; an error after some progress returns the progress (as Linux).
fn vectored(
    fd: i32,
    iov: UserAddr,
    cnt: u64,
    transfer: fn(&File, UserAddr, u64, Option<u64>) -> SysResult,
) -> SysResult {
    let f = borrowed(fd)?;
    let mut total = 0;
    for (base, len) in iovecs(iov, cnt)? {
        match transfer(&f, base, len, None) {
            Ok(n) => {
                total += n;
                if (n as u64) < len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

pub fn sys_readv(fd: i32, iov: UserAddr, cnt: u64) -> SysResult {
    vectored(fd, iov, cnt, do_read)
}

pub fn sys_writev(fd: i32, iov: UserAddr, cnt: u64) -> SysResult {
    vectored(fd, iov, cnt, do_write)
}

pub fn sys_lseek(fd: i32, offset: i64, whence: u32) -> SysResult {
    borrowed(fd)?.seek(offset, whence).map(|p| p as usize)
}

/// `sendfile(out_fd, in_fd, offset, count)`: copies from a regular file
/// (at `*offset`, updated, or at its file position, advanced) to any
/// writable file or socket; stops at the first short write.  Errors in
/// Linux's order: `EFAULT` for `offset`, `EBADF` for a descriptor not
/// open for reading / writing, `ESPIPE`/`EINVAL` for an input that is
/// not a seekable file, `EINVAL` for an `O_APPEND` output.
pub fn sys_sendfile(out_fd: i32, in_fd: i32, offset: UserAddr, count: u64) -> SysResult {
    const MAX_RW_COUNT: u64 = 0x7fff_f000;
    let start: Option<i64> = if !offset.is_null() {
        Some(offset.read()?)
    } else {
        None
    };
    let input = borrowed(in_fd)?;
    if !input.readable() {
        return Err(Errno::EBADF);
    }
    if start.is_some() && input.check_positional().is_err() {
        return Err(Errno::ESPIPE);
    }
    let output = borrowed(out_fd)?;
    if !output.writable() {
        return Err(Errno::EBADF);
    }
    if output.flags() & O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    let regular = input
        .inode
        .as_ref()
        .is_some_and(|i| i.kind() == FileType::Regular)
        || input.as_remote().is_some_and(|r| r.is_regular());
    if !regular {
        return Err(Errno::EINVAL);
    }
    let mut pos = match start {
        Some(p) if p < 0 => return Err(Errno::EINVAL),
        Some(p) => p as u64,
        None => input.seek(0, SEEK_CUR)?,
    };
    let count = count.min(MAX_RW_COUNT) as usize;
    let mut kbuf = vec![0u8; count.clamp(1, CHUNK)];
    let mut done = 0usize;
    let mut failure = None;
    while done < count {
        let want = (count - done).min(kbuf.len());
        let n = match input.read_at(&mut kbuf[..want], pos) {
            Ok(n) => n,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if n == 0 {
            break;
        }
        let w = match output.write(&kbuf[..n]) {
            Ok(w) => w,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        done += w;
        pos += w as u64;
        if w < n {
            break;
        }
    }
    if done == 0 {
        if let Some(e) = failure {
            return Err(e);
        }
    }
    match start {
        Some(_) => offset.write(&(pos as i64))?,
        None => {
            input.seek(pos as i64, 0)?;
        }
    }
    Ok(done)
}
