//! Memory probes for the tests: frames and heap blocks that carry a pattern
//! unique to their owner, so that corruption or a double hand-out (two
//! owners of the same memory) shows up as a pattern mismatch on free.
//!
//! Owns: the only raw-memory access of the self-tests (writing and reading a
//! frame through the HHDM, in `fill`/`verify`).
//!
//! Invariants: a `TestFrame` is the only reference to its frame between
//! `alloc` and `free`; its pattern is written in full before anyone reads it.
//!
//! Must not: free a frame twice (`free` consumes the probe), or touch a frame
//! it does not own.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::memory;

const WORDS_PER_FRAME: usize = 4096 / 8;

/// Word `i` of a block or frame carrying `pattern`.
fn pattern_word(pattern: u64, i: usize) -> u64 {
    pattern ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A frame from `mm`, filled with a pattern.
pub struct TestFrame {
    phys: memory::PhysAddr,
    pattern: u64,
}

impl TestFrame {
    /// Allocates a frame and fills it; `None` when memory is exhausted.
    pub fn alloc(pattern: u64) -> Option<TestFrame> {
        let phys = memory::alloc_frame()?;
        let frame = TestFrame { phys, pattern };
        frame.fill();
        Some(frame)
    }

    fn words(&self) -> *mut u64 {
        memory::phys_to_virt(self.phys).cast::<u64>()
    }

    fn fill(&self) {
        let words = self.words();
        for i in 0..WORDS_PER_FRAME {
            // SAFETY: we own this frame (just allocated, not yet freed); the
            // HHDM maps all 4096 bytes, and frames are 4096-aligned, so every
            // u64 slot is in bounds and aligned.  Volatile so the test really
            // writes memory even if the compiler could prove otherwise.
            unsafe { words.add(i).write_volatile(pattern_word(self.pattern, i)) };
        }
    }

    /// Checks the whole frame still carries its pattern.
    pub fn verify(&self) -> Result<(), String> {
        let words = self.words();
        for i in 0..WORDS_PER_FRAME {
            // SAFETY: as in `fill`: our frame, mapped, aligned, in bounds.
            let found = unsafe { words.add(i).read_volatile() };
            let expected = pattern_word(self.pattern, i);
            if found != expected {
                return Err(format!(
                    "frame {:#x} word {i}: found {found:#x}, expected {expected:#x} (corrupted or handed out twice)",
                    phys_as_u64(self.phys)
                ));
            }
        }
        Ok(())
    }

    /// Verifies, then gives the frame back to `mm` (even when corrupted, so
    /// the count of free frames stays meaningful).
    pub fn free(self) -> Result<(), String> {
        let result = self.verify();
        memory::free_frame(self.phys);
        result
    }
}

/// A heap block of `len` words filled with a pattern.
pub struct TestBlock {
    words: Vec<u64>,
    pattern: u64,
}

impl TestBlock {
    pub fn alloc(len_words: usize, pattern: u64) -> TestBlock {
        let words = (0..len_words).map(|i| pattern_word(pattern, i)).collect();
        TestBlock { words, pattern }
    }

    pub fn verify(&self) -> Result<(), String> {
        for (i, &found) in self.words.iter().enumerate() {
            let expected = pattern_word(self.pattern, i);
            if found != expected {
                return Err(format!(
                    "heap block at {:p} ({} words) word {i}: found {found:#x}, expected {expected:#x}",
                    self.words.as_ptr(),
                    self.words.len()
                ));
            }
        }
        Ok(())
    }

    /// Verifies, then drops the block.
    pub fn free(self) -> Result<(), String> {
        self.verify()
    }
}

/// Frames not in use: `mm` first gives every cached heap object, empty slab
/// and per-CPU page list back, so that caches warmed up by a test do not
/// look like lost frames.  Call only while no other thread allocates.
pub fn free_frames_after_flush() -> usize {
    memory::flush_caches();
    memory::free_frames()
}

/// Like [`free_frames_after_flush`], but gives late frees up to a second to
/// land when the count is not yet `expected`: after a join, the last
/// reference to a thread record may be dropped a moment later on another
/// CPU.  A real leak stays a leak; the caller reports the returned count.
pub fn free_frames_settled(expected: usize) -> usize {
    let deadline = crate::arch::time::now_ns() + 1_000_000_000;
    loop {
        let free = free_frames_after_flush();
        if free == expected || crate::arch::time::now_ns() >= deadline {
            return free;
        }
        crate::sched::sleep_ns(10_000_000);
    }
}

/// Raw frame alloc+free for the benchmark (no pattern, no touching).
/// Returns false when memory is exhausted.
pub fn frame_alloc_free_once() -> bool {
    match memory::alloc_frame() {
        Some(phys) => {
            memory::free_frame(core::hint::black_box(phys));
            true
        }
        None => false,
    }
}

fn phys_as_u64(phys: memory::PhysAddr) -> u64 {
    phys.into()
}
