//! `PageRadix`: a concurrent radix tree keyed by virtual page address, one
//! 64-bit word per page, shaped like an x86_64 page table (4 levels of 512
//! slots, 4 KiB nodes), in the manner of RadixVM's radix tree (Clements,
//! Kaashoek, Zeldovich, EuroSys 2013).
//!
//! The kernel keeps per-page CPU sets of an address space in one (which
//! CPUs' own page tables hold a copy of the page's translation): a fault
//! sets its CPU's bit (`fetch_or`), an unmap takes the union of a range
//! and clears it (`take_range`).  Operations on different ranges touch
//! different leaf nodes: no common lock, no common written cache line
//! (beyond the upper-level nodes, which are written once, when created).
//!
//! Invariants: an interior slot is 0 or the handle of a child node, and
//! once non-zero it never changes until the tree is dropped, so lookups
//! are lock-free (acquire loads down the tree) and never see a freed
//! node.  Missing nodes are created with a compare-and-swap; a loser frees
//! its own fresh node.  Leaf words are only changed atomically, so a bit
//! set by `fetch_or` is either still in the tree or was returned by
//! exactly one `take_range` (no bit is lost: the shootdown invariant).
//!
//! Must not: free a node before the tree is dropped; use the memory it
//! gets from `NodeMemory` for anything but nodes.  Keys must be below
//! 2^48 (higher bits are ignored).

use core::sync::atomic::{AtomicU64, Ordering};

/// Slots per node.
pub const SLOTS: usize = 512;

/// Where nodes live: frames through the kernel's direct map, or host memory.
///
/// # Safety
/// `alloc_node` must return a handle of a zeroed node of `SLOTS` words that
/// nothing else uses, non-zero, until `free_node` gets it back; `slots` must
/// give that node's words for any handle `alloc_node` returned and not yet
/// freed.
pub unsafe trait NodeMemory {
    /// A fresh zeroed node, or `None` when out of memory.
    fn alloc_node(&self) -> Option<u64>;
    /// Gives back a node (no reference to it remains).
    fn free_node(&self, node: u64);
    /// The words of a live node.
    fn slots(&self, node: u64) -> &[AtomicU64; SLOTS];
}

/// Out of memory for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoMemory;

/// The tree (see the module documentation).
pub struct PageRadix<M: NodeMemory> {
    root: u64,
    mem: M,
}

/// Index of `va` in a node at `level` (1 = leaf nodes, 4 = the root).
fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & (SLOTS as u64 - 1)) as usize
}

/// Bytes covered by one slot of a node at `level`.
fn span(level: u32) -> u64 {
    1u64 << (12 + 9 * (level - 1))
}

impl<M: NodeMemory> PageRadix<M> {
    /// An empty tree (one root node).
    pub fn new(mem: M) -> Result<Self, NoMemory> {
        let root = mem.alloc_node().ok_or(NoMemory)?;
        Ok(PageRadix { root, mem })
    }

    /// The word of page `va`, creating missing nodes when `create`.
    /// `Ok(None)` when absent and not created.
    fn word(&self, va: u64, create: bool) -> Result<Option<&AtomicU64>, NoMemory> {
        let mut node = self.root;
        for level in (2..=4).rev() {
            let slot = &self.mem.slots(node)[index(va, level)];
            let mut child = slot.load(Ordering::Acquire);
            if child == 0 {
                if !create {
                    return Ok(None);
                }
                let fresh = self.mem.alloc_node().ok_or(NoMemory)?;
                child = match slot.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => fresh,
                    Err(existing) => {
                        self.mem.free_node(fresh);
                        existing
                    }
                };
            }
            node = child;
        }
        Ok(Some(&self.mem.slots(node)[index(va, 1)]))
    }

    /// The word of page `va` (0 when never set).  Lock-free.
    pub fn get(&self, va: u64) -> u64 {
        match self.word(va, false) {
            Ok(Some(w)) => w.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// ORs `bits` into the word of page `va`; returns the old word.
    pub fn fetch_or(&self, va: u64, bits: u64) -> Result<u64, NoMemory> {
        let w = self.word(va, true)?.ok_or(NoMemory)?;
        Ok(w.fetch_or(bits, Ordering::AcqRel))
    }

    /// Clears the words of the pages in `[start, end)` and returns the OR
    /// of what they held.
    pub fn take_range(&self, start: u64, end: u64) -> u64 {
        let mut union = 0;
        self.for_each(start, end, &mut |_, w| {
            if w.load(Ordering::Relaxed) != 0 {
                union |= w.swap(0, Ordering::AcqRel);
            }
        });
        union
    }

    /// The OR of the words of the pages in `[start, end)` (not cleared).
    pub fn union(&self, start: u64, end: u64) -> u64 {
        let mut union = 0;
        self.for_each(start, end, &mut |_, w| union |= w.load(Ordering::Acquire));
        union
    }

    /// Calls `f(va, word)` for every page of `[start, end)` whose leaf node
    /// exists (absent subtrees are skipped whole).
    pub fn for_each(&self, start: u64, end: u64, f: &mut dyn FnMut(u64, &AtomicU64)) {
        self.walk(self.root, 4, 0, start, end, f);
    }

    fn walk(
        &self,
        node: u64,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        f: &mut dyn FnMut(u64, &AtomicU64),
    ) {
        let span = span(level);
        let first = if start > base {
            ((start - base) / span) as usize
        } else {
            0
        };
        for (i, slot) in self.mem.slots(node).iter().enumerate().skip(first) {
            let lo = base + i as u64 * span;
            if lo >= end {
                break;
            }
            if level == 1 {
                f(lo, slot);
                continue;
            }
            let child = slot.load(Ordering::Acquire);
            if child != 0 {
                self.walk(child, level - 1, lo, start, end, f);
            }
        }
    }

    /// Nodes in the tree (root included), for tests and leak checks.
    pub fn nodes(&self) -> usize {
        self.count(self.root, 4)
    }

    fn count(&self, node: u64, level: u32) -> usize {
        if level == 1 {
            return 1;
        }
        1 + self
            .mem
            .slots(node)
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&c| c != 0)
            .map(|c| self.count(c, level - 1))
            .sum::<usize>()
    }

    fn free(&self, node: u64, level: u32) {
        if level > 1 {
            for slot in self.mem.slots(node).iter() {
                let child = slot.load(Ordering::Acquire);
                if child != 0 {
                    self.free(child, level - 1);
                }
            }
        }
        self.mem.free_node(node);
    }
}

impl<M: NodeMemory> Drop for PageRadix<M> {
    fn drop(&mut self) {
        self.free(self.root, 4);
    }
}
