//! Threaded stress of the frame allocator and the heap: 8 threads, each
//! bound to its own CPU id, allocate and free frames and heap objects at
//! random.  Every frame handed out is marked in a shared bitmap (a second
//! hand-out of a marked frame fails the test), every block is filled with a
//! per-owner pattern that is checked before it is freed (overlaps fail the
//! test), and at the end every frame is back: `free_frames()` equals its
//! initial value and the heap holds no frames.

use std::alloc::Layout;
use std::sync::atomic::{AtomicU64, Ordering};

use mm::host::Arena;
use mm::{FrameAllocator, Heap, LockMode, FRAME_SIZE};
use percpu::host;

const THREADS: usize = 8;
const STEPS: usize = 20_000;
const FRAMES: usize = 32 * 1024;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One bit per frame: set while the frame is handed out by the frame
/// allocator directly.
struct Bitmap(Vec<AtomicU64>);

impl Bitmap {
    fn new(bits: usize) -> Self {
        Bitmap((0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect())
    }
    fn set(&self, i: usize) -> bool {
        let old = self.0[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
        old & (1 << (i % 64)) == 0
    }
    fn clear(&self, i: usize) -> bool {
        let old = self.0[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
        old & (1 << (i % 64)) != 0
    }
}

fn fill(p: *mut u8, len: usize, tag: u8) {
    // SAFETY: p is a live block of at least len bytes owned by the caller.
    unsafe { p.write_bytes(tag, len) };
}

fn check(p: *mut u8, len: usize, tag: u8) {
    // SAFETY: as in fill.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    assert!(
        bytes.iter().all(|&b| b == tag),
        "block at {p:?} was overwritten by someone else"
    );
}

fn stress(mode: LockMode) {
    let arena = Arena::leak(FRAMES);
    let frames: &'static FrameAllocator<&Arena> = Box::leak(Box::new(FrameAllocator::new(arena)));
    frames.set_mode(mode).unwrap();
    frames.add_region(arena.first_pfn(), FRAMES).unwrap();
    let heap: &'static Heap<&Arena> = Box::leak(Box::new(Heap::new(frames)));
    let initial = frames.free_frames();
    let first = arena.first_pfn();
    let bitmap = Bitmap::new(FRAMES);

    std::thread::scope(|s| {
        for cpu in 0..THREADS {
            let bitmap = &bitmap;
            s.spawn(move || {
                host::bind_current_thread(cpu).unwrap();
                let mem = *frames.memory();
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ ((cpu as u64 + 1) * 0x1234_5678_9abc_def1));
                let mut my_frames: Vec<(usize, u8)> = Vec::new();
                let mut my_objs: Vec<(*mut u8, Layout, u8)> = Vec::new();
                for step in 0..STEPS {
                    let tag = (cpu * 31 + step) as u8;
                    match rng.below(4) {
                        0 if my_frames.len() < 64 => {
                            if let Some(pfn) = frames.alloc() {
                                assert!(bitmap.set(pfn - first), "frame {pfn} handed out twice");
                                fill(mem_ptr(&mem, pfn), FRAME_SIZE, tag);
                                my_frames.push((pfn, tag));
                            }
                        }
                        1 if !my_frames.is_empty() => {
                            let (pfn, tag) = my_frames.swap_remove(rng.below(my_frames.len()));
                            check(mem_ptr(&mem, pfn), FRAME_SIZE, tag);
                            assert!(
                                bitmap.clear(pfn - first),
                                "frame {pfn} freed but not marked"
                            );
                            frames.free(pfn).unwrap();
                        }
                        2 if my_objs.len() < 256 => {
                            let size = match rng.below(10) {
                                0 => 2049 + rng.below(3 * FRAME_SIZE),
                                _ => 1 + rng.below(2048),
                            };
                            let align = 1 << rng.below(8);
                            let layout = Layout::from_size_align(size, align).unwrap();
                            let p = heap.alloc(layout);
                            if !p.is_null() {
                                assert_eq!(p as usize % align, 0, "misaligned");
                                fill(p, size, tag);
                                my_objs.push((p, layout, tag));
                            }
                        }
                        3 if !my_objs.is_empty() => {
                            let (p, layout, tag) = my_objs.swap_remove(rng.below(my_objs.len()));
                            check(p, layout.size(), tag);
                            // SAFETY: p came from heap.alloc(layout), freed once.
                            unsafe { heap.dealloc(p, layout) };
                        }
                        _ => {}
                    }
                }
                for (pfn, tag) in my_frames {
                    check(mem_ptr(&mem, pfn), FRAME_SIZE, tag);
                    assert!(bitmap.clear(pfn - first));
                    frames.free(pfn).unwrap();
                }
                for (p, layout, tag) in my_objs {
                    check(p, layout.size(), tag);
                    // SAFETY: as above.
                    unsafe { heap.dealloc(p, layout) };
                }
            });
        }
    });

    let stats = heap.stats();
    assert_eq!(stats.bad_frees, 0);
    assert_eq!(frames.stats().rejected_frees, 0);
    heap.flush();
    assert_eq!(heap.frames_held(), 0, "heap kept frames after flush");
    assert_eq!(frames.free_frames(), initial, "frames lost or duplicated");
    frames.drain_all();
    assert_eq!(frames.free_frames(), initial);
    // Everything coalesced back: the largest block is allocatable again.
    let big = frames
        .alloc_order(mm::MAX_ORDER)
        .expect("memory did not coalesce");
    frames.free_order(big, mm::MAX_ORDER).unwrap();
}

fn mem_ptr(mem: &&Arena, pfn: usize) -> *mut u8 {
    use mm::FrameMemory;
    mem.frame_ptr(pfn)
}

#[test]
fn stress_percpu_mode() {
    stress(LockMode::PerCpu);
}

#[test]
fn stress_global_mode() {
    stress(LockMode::Global);
}
