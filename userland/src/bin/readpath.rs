//! `readpath`: `read`/`pread`/`readv` of a regular file in every shape the
//! kernel's direct page-cache-to-user copy must get right: page-aligned and
//! unaligned offsets and buffers, short reads at the end of the file, holes,
//! buffers never touched before (demand paging), a buffer in a private or
//! shared mapping of the file being read (the fault needs the file), a
//! copy-on-write buffer after fork, a buffer running into an inaccessible
//! page (the bytes before it count, as on Linux), and bad pointers.  Each
//! line states one fact; a wrong one is marked.  Exit 0 when all held.

use std::ffi::CString;

use userland::{fork_run, outcome, say, wait_for};

const PAGE: usize = 4096;
/// The file: three pages and 100 bytes.
const SIZE: usize = 3 * PAGE + 100;

/// Byte `i` of the file (period 251: no page lines up with it).
fn byte(i: usize) -> u8 {
    (i % 251) as u8 + 1
}

fn pread(fd: i32, buf: *mut u8, len: usize, off: usize) -> i64 {
    // SAFETY: the kernel checks `buf`; some calls pass bad pointers on
    // purpose, and valid ones point at `len` writable bytes.
    unsafe { libc::pread(fd, buf.cast(), len, off as i64) as i64 }
}

fn read(fd: i32, buf: *mut u8, len: usize) -> i64 {
    // SAFETY: as in `pread`.
    unsafe { libc::read(fd, buf.cast(), len) as i64 }
}

/// Whether `len` bytes at `p` are the file's bytes from `off`.
fn matches(p: *const u8, len: usize, off: usize) -> bool {
    // SAFETY: callers pass memory they mapped or allocated, `len` long.
    let got = unsafe { std::slice::from_raw_parts(p, len) };
    got.iter().enumerate().all(|(i, &b)| b == byte(off + i))
}

fn map(len: usize, prot: i32, flags: i32, fd: i32) -> *mut u8 {
    // SAFETY: a fresh mapping; nothing else refers to it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    assert!(p != libc::MAP_FAILED, "mmap failed");
    p.cast()
}

fn open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::open(c.as_ptr(), flags, 0o644) }
}

fn main() {
    let mut ok = true;
    let mut fact = |what: &str, good: bool, got: String| {
        say(&format!(
            "{what}: {got}{}",
            if good { "" } else { "  <-- WRONG" }
        ));
        ok &= good;
    };
    let dir = "/tmp/readpath";
    let _ = std::fs::create_dir_all(dir);
    let path = format!("{dir}/f");
    let data: Vec<u8> = (0..SIZE).map(byte).collect();
    std::fs::write(&path, &data).unwrap();
    let fd = open(&path, libc::O_RDWR);

    // Offsets and lengths around page boundaries and the end; an unaligned
    // heap buffer, so copies cross destination pages too.
    let mut heap = vec![0u8; 5 * PAGE];
    let buf = heap[17..].as_mut_ptr();
    for off in [0, 1, 4095, 4096, 8191, 12288, SIZE - 1, SIZE, SIZE + 5000] {
        for len in [1, 100, 4096, 4097, 9000] {
            let r = pread(fd, buf, len, off);
            let want = len.min(SIZE.saturating_sub(off));
            let good = r == want as i64 && matches(buf, want, off);
            fact(&format!("pread {off}+{len}"), good, outcome(r));
        }
    }

    // Sequential reads of odd sizes to the end, then 0, offset at the end.
    // SAFETY: rewinding our own descriptor.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    let (mut total, mut good) = (0usize, true);
    loop {
        let r = read(fd, buf, 1000);
        if r <= 0 {
            good &= r == 0;
            break;
        }
        good &= matches(buf, r as usize, total);
        total += r as usize;
    }
    // SAFETY: querying our own descriptor.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    fact(
        "read 1000 at a time",
        good && total == SIZE && pos == SIZE as i64,
        format!("{total} bytes, offset {pos}"),
    );

    // readv over two buffers, the first ending mid-page of the file.
    let mut a = [0u8; 5000];
    let mut b = [0u8; 3000];
    let iov = [
        libc::iovec {
            iov_base: a.as_mut_ptr().cast(),
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        },
    ];
    // SAFETY: rewinding, then two valid iovecs.
    let r = unsafe {
        libc::lseek(fd, 100, libc::SEEK_SET);
        libc::readv(fd, iov.as_ptr(), 2) as i64
    };
    fact(
        "readv 5000+3000 at 100",
        r == 8000 && matches(a.as_ptr(), 5000, 100) && matches(b.as_ptr(), 3000, 5100),
        outcome(r),
    );

    // A buffer never touched: every page is paged in by the read.
    let fresh = map(
        4 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    );
    let r = pread(fd, fresh, SIZE, 0);
    fact(
        "pread into untouched memory",
        r == SIZE as i64 && matches(fresh, SIZE, 0),
        outcome(r),
    );

    // Into a private mapping of the same file (its fault reads the file).
    let private = map(
        SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE,
        fd,
    );
    let r = pread(fd, private, 2 * PAGE, PAGE);
    let mut back = vec![0u8; SIZE];
    let again = pread(fd, back.as_mut_ptr(), SIZE, 0);
    fact(
        "pread into a private mapping of the file",
        r == 2 * PAGE as i64
            && matches(private, 2 * PAGE, PAGE)
            && again == SIZE as i64
            && back == data,
        outcome(r),
    );

    // Into a shared mapping of the same file: the read writes the file.
    let shared = map(
        SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
    );
    // SAFETY: the shared mapping is SIZE long; page 2 starts inside it.
    let r = pread(fd, unsafe { shared.add(2 * PAGE) }, 100, 0);
    let again = pread(fd, back.as_mut_ptr(), 100, 2 * PAGE);
    fact(
        "pread into a shared mapping of the file",
        r == 100 && again == 100 && matches(back.as_ptr(), 100, 0),
        outcome(r),
    );
    // Put the file back as it was.
    // SAFETY: 100 bytes of `data` from page 2 (the file has 3 pages + 100).
    let w = unsafe { libc::pwrite(fd, data[2 * PAGE..].as_ptr().cast(), 100, (2 * PAGE) as i64) };
    fact("file restored", w == 100, outcome(w as i64));

    // Copy-on-write: a child reads into a buffer it shares with us.
    heap.fill(0xaa);
    let child = fork_run(|| {
        let r = pread(fd, heap.as_mut_ptr(), 2 * PAGE, 10);
        i32::from(!(r == 2 * PAGE as i64 && matches(heap.as_ptr(), 2 * PAGE, 10)))
    });
    let status = match child {
        Ok(pid) => wait_for(pid),
        Err(e) => e,
    };
    fact(
        "pread in a forked child (copy-on-write buffer)",
        status == "exited 0" && heap.iter().all(|&x| x == 0xaa),
        status,
    );

    // A buffer that runs into an inaccessible page: the bytes before it.
    let two = map(
        2 * PAGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    );
    // SAFETY: changing protection of our own mapping.
    unsafe { libc::mprotect(two.add(PAGE).cast(), PAGE, libc::PROT_NONE) };
    // SAFETY: `two + PAGE - 10` is inside the mapping.
    let edge = unsafe { two.add(PAGE - 10) };
    let r = pread(fd, edge, 100, 0);
    fact(
        "pread running into PROT_NONE",
        r == 10 && matches(edge, 10, 0),
        outcome(r),
    );
    // SAFETY: as above.
    unsafe { libc::lseek(fd, 5, libc::SEEK_SET) };
    let r = read(fd, edge, 100);
    // SAFETY: querying our own descriptor.
    let pos = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    fact(
        "read running into PROT_NONE",
        r == 10 && matches(edge, 10, 5) && pos == 15,
        format!("{}, offset {pos}", outcome(r)),
    );
    // SAFETY: the inaccessible page of the mapping; the kernel checks it.
    let r = pread(fd, unsafe { two.add(PAGE) }, 100, 0);
    fact("pread into PROT_NONE", r == -1, outcome(r));
    let ro = map(
        PAGE,
        libc::PROT_READ,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
    );
    let r = pread(fd, ro, 100, 0);
    fact("pread into a read-only page", r == -1, outcome(r));
    for (name, addr) in [("NULL", 0usize), ("kernel address", 0xffff_ffff_8000_0000)] {
        let r = pread(fd, addr as *mut u8, 100, 0);
        fact(&format!("pread into {name}"), r == -1, outcome(r));
    }
    let r = pread(fd, std::ptr::null_mut(), 0, 0);
    fact("pread of 0 bytes into NULL", r == 0, outcome(r));

    // Holes: grow the file by truncation; the new pages read as zeros.
    // SAFETY: our own descriptor.
    let t = unsafe { libc::ftruncate(fd, (6 * PAGE) as i64) };
    let r = pread(fd, buf, 2 * PAGE, 4 * PAGE - 50);
    // SAFETY: `buf` holds at least 2 pages.
    let got = unsafe { std::slice::from_raw_parts(buf, 2 * PAGE) };
    let good = t == 0 && r == 2 * PAGE as i64 && got.iter().all(|&x| x == 0);
    fact("pread over a hole", good, outcome(r));
    let r = pread(fd, buf, 100, SIZE - 50);
    // SAFETY: `buf` holds 100 bytes.
    let got = unsafe { std::slice::from_raw_parts(buf, 100) };
    fact(
        "pread across the old end",
        r == 100 && matches(buf, 50, SIZE - 50) && got[50..].iter().all(|&x| x == 0),
        outcome(r),
    );

    // A stream through a file larger than the kept read grants (6 MiB in
    // 64 KiB reads, twice: read-ahead windows past the 4 MiB a description
    // keeps), with another descriptor overwriting a page ahead of the
    // reader inside its window: the reader sees the new bytes there and
    // the old ones everywhere else.
    let big_path = format!("{dir}/big");
    let big_len = 6 << 20;
    let big: Vec<u8> = (0..big_len).map(byte).collect();
    std::fs::write(&big_path, &big).unwrap();
    let reader = open(&big_path, libc::O_RDONLY);
    let writer = open(&big_path, libc::O_WRONLY);
    let block = 64 * 1024;
    let mut chunk = vec![0u8; block];
    // Ahead of the reader by 4 blocks, within the 1 MiB window its read at
    // 5 MiB - 64 KiB asked for (first pass only).
    let poke = 5 * (1 << 20) + 3 * block + 123;
    let (mut good, mut total) = (true, 0usize);
    // The first wrong byte: (pass, offset, value).
    let mut bad = None;
    for pass in 0..2 {
        // SAFETY: rewinding our own descriptor.
        unsafe { libc::lseek(reader, 0, libc::SEEK_SET) };
        let mut at = 0usize;
        loop {
            let r = read(reader, chunk.as_mut_ptr(), block);
            if r <= 0 {
                good &= r == 0;
                break;
            }
            let n = r as usize;
            // The poked byte (0: `byte` never gives it) is read only after
            // the write (it lies past 5 MiB), in both passes.
            for (k, &x) in chunk[..n].iter().enumerate() {
                let i = at + k;
                if x != if i == poke { 0 } else { byte(i) } && bad.is_none() {
                    bad = Some((pass, i, x));
                }
            }
            at += n;
            total += n;
            if pass == 0 && at == 5 << 20 {
                // SAFETY: one byte of ours, at an offset inside the file.
                let w = unsafe { libc::pwrite(writer, [0u8].as_ptr().cast(), 1, poke as i64) };
                good &= w == 1;
                // The reader's next blocks: the poked one must show it.
                let r = pread(reader, chunk.as_mut_ptr(), block, poke - 123);
                good &= r == block as i64 && chunk[123] == 0;
            }
        }
        good &= at == big_len;
    }
    fact(
        "stream of 64 KiB reads through 6 MiB twice, a byte written ahead of the reader",
        good && bad.is_none() && total == 2 * big_len,
        match bad {
            None => format!("{total} bytes"),
            Some((p, i, x)) => format!("{total} bytes, pass {p}: byte {i} is {x}"),
        },
    );
    // SAFETY: closing our own descriptors.
    unsafe {
        libc::close(reader);
        libc::close(writer);
    }
    let _ = std::fs::remove_file(&big_path);

    // A directory is not read.
    let d = open(dir, libc::O_RDONLY | libc::O_DIRECTORY);
    let r = pread(d, buf, 10, 0);
    fact("pread of a directory", r == -1, outcome(r));

    let _ = std::fs::remove_file(&path);
    say(if ok {
        "readpath: pass"
    } else {
        "readpath: FAIL"
    });
    std::process::exit(if ok { 0 } else { 1 });
}
