//! The page-cache read path: `Inode::read_with` (pieces straight from the
//! page cache, what the kernel copies to user memory) and `read_at` on top
//! of it, at page boundaries, at and past the end of the file, over holes,
//! and with a sink that stops short.  Both lock modes.

use std::sync::Arc;

use fs::host::{HeapPages, SystemClock};
use fs::oflags::*;
use fs::{Errno, Fs, FsConfig, Inode, LockMode, PAGE_SIZE};

fn both(f: impl Fn(&Fs)) {
    for mode in [LockMode::PerCpu, LockMode::Global] {
        let fs = Fs::new(
            FsConfig {
                mode,
                max_pages: 1 << 16,
            },
            HeapPages::new(),
            Arc::new(SystemClock),
        );
        f(&fs);
    }
}

fn create(fs: &Fs, path: &str) -> Arc<Inode> {
    fs.open(&fs.root(), path, O_CREAT | O_RDWR, 0o644).unwrap()
}

/// Byte `i` of the test pattern (period 251, prime: no page lines up).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 + 1).collect()
}

/// Reads through `read_with`, checking each piece stays inside one page;
/// returns the bytes and the count `read_with` reported.
fn read_pieces(f: &Inode, offset: u64, len: usize) -> (Vec<u8>, usize) {
    let mut got = Vec::new();
    let n = f
        .read_with(offset, len, |piece| {
            let at = offset as usize + got.len();
            assert!(!piece.is_empty(), "empty piece at {at}");
            assert!(
                at % PAGE_SIZE + piece.len() <= PAGE_SIZE,
                "piece at {at} of {} crosses a page",
                piece.len()
            );
            got.extend_from_slice(piece);
            piece.len()
        })
        .unwrap();
    (got, n)
}

#[test]
fn pieces_match_the_file_at_every_page_boundary() {
    both(|fs| {
        let size = 3 * PAGE_SIZE + 100;
        let data = pattern(size);
        let f = create(fs, "/f");
        assert_eq!(f.write_at(0, &data, false).unwrap().0, size);
        let offsets = [0, 1, 4095, 4096, 4097, 8191, 8192, 12288, 12387];
        let lens = [0, 1, 63, 64, 4095, 4096, 4097, 8192, 3 * PAGE_SIZE + 200];
        for &off in &offsets {
            for &len in &lens {
                let want = len.min(size - off);
                let (got, n) = read_pieces(&f, off as u64, len);
                assert_eq!(n, want, "count at {off}+{len}");
                assert_eq!(got, data[off..off + want], "bytes at {off}+{len}");
                let mut buf = vec![0xeeu8; len];
                assert_eq!(f.read_at(off as u64, &mut buf).unwrap(), want);
                assert_eq!(buf[..want], data[off..off + want]);
                assert!(buf[want..].iter().all(|&b| b == 0xee), "past the count");
            }
        }
    });
}

#[test]
fn at_and_past_the_end_nothing_is_read() {
    both(|fs| {
        let f = create(fs, "/f");
        f.write_at(0, &pattern(5000), false).unwrap();
        for off in [5000u64, 5001, 8192, 1 << 40, u64::MAX] {
            let n = f
                .read_with(off, 4096, |_| panic!("sink called at {off}"))
                .unwrap();
            assert_eq!(n, 0, "at {off}");
        }
        // Short read at the end: 4999..5000 is one byte.
        assert_eq!(read_pieces(&f, 4999, 4096), (vec![pattern(5000)[4999]], 1));
        let empty = create(fs, "/empty");
        assert_eq!(empty.read_with(0, 4096, |_| panic!("empty")).unwrap(), 0);
    });
}

#[test]
fn holes_and_truncated_tails_read_as_zeros() {
    both(|fs| {
        let f = create(fs, "/sparse");
        // Pages 0..=2 are a hole; page 3 holds 10 bytes.
        f.write_at(3 * PAGE_SIZE as u64, b"0123456789", false)
            .unwrap();
        let (got, n) = read_pieces(&f, 100, 4 * PAGE_SIZE);
        assert_eq!(n, 3 * PAGE_SIZE + 10 - 100);
        assert!(got[..3 * PAGE_SIZE - 100].iter().all(|&b| b == 0));
        assert_eq!(&got[3 * PAGE_SIZE - 100..], b"0123456789");
        // Cut inside a page, then grow past it: the cut-off bytes are zero.
        let g = create(fs, "/cut");
        g.write_at(0, &pattern(2 * PAGE_SIZE), false).unwrap();
        g.truncate(PAGE_SIZE as u64 + 7).unwrap();
        g.write_at(2 * PAGE_SIZE as u64, b"x", false).unwrap();
        let (got, n) = read_pieces(&g, 0, 3 * PAGE_SIZE);
        assert_eq!(n, 2 * PAGE_SIZE + 1);
        assert_eq!(got[..PAGE_SIZE + 7], pattern(PAGE_SIZE + 7)[..]);
        assert!(got[PAGE_SIZE + 7..2 * PAGE_SIZE].iter().all(|&b| b == 0));
        assert_eq!(got[2 * PAGE_SIZE], b'x');
    });
}

#[test]
fn a_short_sink_ends_the_read_with_its_count() {
    both(|fs| {
        let f = create(fs, "/f");
        let data = pattern(3 * PAGE_SIZE);
        f.write_at(0, &data, false).unwrap();
        // Takes the first piece, half of the second, then must not be
        // called again.
        let mut calls = 0;
        let mut got = Vec::new();
        let n = f
            .read_with(10, 3 * PAGE_SIZE, |piece| {
                calls += 1;
                assert!(calls <= 2, "called after a short count");
                let take = if calls == 1 {
                    piece.len()
                } else {
                    piece.len() / 2
                };
                got.extend_from_slice(&piece[..take]);
                take
            })
            .unwrap();
        assert_eq!(n, PAGE_SIZE - 10 + PAGE_SIZE / 2);
        assert_eq!(got, data[10..10 + n]);
        // A sink that takes nothing reads nothing; one that claims more
        // than it was given is held to the piece.
        assert_eq!(f.read_with(0, 100, |_| 0).unwrap(), 0);
        assert_eq!(f.read_with(0, 100, |p| p.len() + 50).unwrap(), 100);
    });
}

#[test]
fn only_regular_files_are_read() {
    both(|fs| {
        let d = fs.mkdir(&fs.root(), "/d", 0o755).unwrap();
        assert_eq!(
            d.read_with(0, 10, |_| panic!("dir")).unwrap_err(),
            Errno::EISDIR
        );
    });
}
