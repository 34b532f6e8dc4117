//! The SDK's allocator: blocks of 2^k bytes (8 bytes to 1 GiB), one free list per size, carved
//! in turn from memory grown at the end of the instance's.
//!
//! The SDK allocates little and briefly (frames, ids, a queued publish) from one thread, so a
//! block is never split or merged: a freed block goes on the list of its size and the next
//! allocation of that size takes it back. Strings and vectors grow by doubling, which lands on
//! these sizes. What a connection used stays for the next ones (wasm memory never shrinks
//! anyway). It is a few hundred bytes smaller than a general allocator (lol_alloc's free list,
//! before), which is the point (sdk/README.md, Size).
//!
//! Natively the tests run it on memory of their own.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::null_mut;

/// The smallest block (2^3 bytes: a free block holds the next one's address), which is also the
/// alignment of every block.
const MIN_CLASS: u32 = 3;
const ALIGN: usize = 1 << MIN_CLASS;
/// Blocks of up to 2^30 bytes; larger allocations fail.
const CLASSES: usize = 31;
pub const PAGE: usize = 65_536;

/// Where blocks come from.
pub trait Memory {
    /// Grows the memory by `pages` pages: the address where the new ones start, or `None`.
    fn grow(&self, pages: usize) -> Option<usize>;
}

/// The instance's own memory.
#[cfg(target_arch = "wasm32")]
pub struct Wasm;

#[cfg(target_arch = "wasm32")]
impl Memory for Wasm {
    fn grow(&self, pages: usize) -> Option<usize> {
        let old = core::arch::wasm32::memory_grow(0, pages);
        (old != usize::MAX).then(|| old * PAGE)
    }
}

pub struct Heap<M> {
    /// Per size, the first free block (0: none); each free block holds the next one's address.
    free: [Cell<usize>; CLASSES],
    /// Where the next new block starts, and where the memory grown for blocks ends.
    next: Cell<usize>,
    end: Cell<usize>,
    memory: M,
}

// SAFETY: wasm32-unknown-unknown without the atomics feature runs one thread (and the native tests
// use a heap from one thread only).
unsafe impl<M> Sync for Heap<M> {}

impl<M> Heap<M> {
    pub const fn new(memory: M) -> Heap<M> {
        Heap { free: [const { Cell::new(0) }; CLASSES], next: Cell::new(0), end: Cell::new(0), memory }
    }
}

/// The size class of `layout`: blocks of 2^class bytes hold its size and meet its alignment.
fn class(layout: Layout) -> usize {
    let size = layout.size().max(layout.align()).max(ALIGN);
    (usize::BITS - (size - 1).leading_zeros()) as usize
}

// SAFETY: blocks of one class never overlap (each is handed out from `next` once, and comes back
// only through `dealloc`), every block is 8-aligned (`next` starts at a page boundary and moves by
// powers of two of at least 8) and alignments above 8 are refused, and a block is at least as
// large as the layout it serves.
unsafe impl<M: Memory> GlobalAlloc for Heap<M> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let k = class(layout);
        let Some(head) = self.free.get(k).filter(|_| layout.align() <= ALIGN) else { return null_mut() };
        let block = head.get();
        if block != 0 {
            // SAFETY: a free block of this class holds the next free one's address.
            head.set(unsafe { *(block as *const usize) });
            return block as *mut u8;
        }
        let bytes = 1 << k;
        let start = self.next.get();
        if self.end.get() - start >= bytes {
            self.next.set(start + bytes);
            return start as *mut u8;
        }
        let pages = bytes.div_ceil(PAGE);
        let Some(grown) = self.memory.grow(pages) else { return null_mut() };
        if grown != self.end.get() {
            // The first growth (or memory someone else grew in between): new blocks start there.
            self.next.set(grown);
        }
        self.end.set(grown + pages * PAGE);
        // SAFETY: as for this call; it now fits.
        unsafe { self.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(head) = self.free.get(class(layout)) {
            // SAFETY: the block is free again, 8-aligned and at least 8 bytes long.
            unsafe { *(ptr as *mut usize) = head.get() };
            head.set(ptr as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// `pages` pages of memory, grown one request at a time, at most `limit` pages in all.
    struct Fake {
        base: usize,
        used: Cell<usize>,
        limit: usize,
    }

    impl Fake {
        fn new(limit: usize) -> Fake {
            // leaked: the heap's blocks point into it for the test's whole run
            let words: &'static mut [u64] = Box::leak(std::vec![0u64; limit * PAGE / 8].into_boxed_slice());
            Fake { base: words.as_mut_ptr() as usize, used: Cell::new(0), limit }
        }
    }

    impl Memory for Fake {
        fn grow(&self, pages: usize) -> Option<usize> {
            let old = self.used.get();
            (old + pages <= self.limit).then(|| {
                self.used.set(old + pages);
                self.base + old * PAGE
            })
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_are_the_powers_of_two_that_hold_size_and_alignment() {
        assert_eq!(class(layout(0, 1)), 3);
        assert_eq!(class(layout(1, 1)), 3);
        assert_eq!(class(layout(8, 8)), 3);
        assert_eq!(class(layout(9, 1)), 4);
        assert_eq!(class(layout(16, 1)), 4);
        assert_eq!(class(layout(17, 1)), 5);
        assert_eq!(class(layout(1, 16)), 4);
        assert_eq!(class(layout(1 << 30, 1)), 30);
        assert_eq!(class(layout((1 << 30) + 1, 1)), 31);
    }

    /// A seeded sequence of allocations, frees and growths (by realloc) of random sizes: every
    /// live block keeps its own bytes (none overlaps another), blocks are aligned, and freed
    /// blocks are used again.
    #[test]
    fn live_blocks_never_overlap_and_keep_their_bytes() {
        let heap = Heap::new(Fake::new(256));
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let check = |(p, l, v): &(*mut u8, Layout, u8)| {
            // SAFETY: a live block of l.size() bytes.
            let bytes = unsafe { core::slice::from_raw_parts(*p, l.size()) };
            assert!(bytes.iter().all(|b| b == v), "block at {p:?} was overwritten");
        };
        let mut reused = 0;
        for step in 0..5_000u32 {
            let r = next();
            if live.len() < 50 && r % 3 != 0 {
                let size = (next() % 3_000) as usize + if r % 7 == 0 { 30_000 } else { 0 };
                let align = [1, 2, 4, 8][(next() % 4) as usize];
                let l = layout(size, align);
                // SAFETY: a non-zero-sized layout (size 0 has a block too, never written).
                let before = heap.next.get();
                let p = unsafe { heap.alloc(l) };
                reused += usize::from(heap.next.get() == before);
                assert!(!p.is_null());
                assert_eq!(p as usize % 8, 0);
                if live.iter().any(|(q, _, _)| *q == p) {
                    panic!("block {p:?} handed out twice");
                }
                let v = step as u8;
                // SAFETY: the block holds l.size() bytes.
                unsafe { core::ptr::write_bytes(p, v, l.size()) };
                live.push((p, l, v));
            } else if !live.is_empty() {
                let i = (next() % live.len() as u64) as usize;
                let block = live.swap_remove(i);
                check(&block);
                if r % 5 == 0 {
                    // grown or shrunk: the bytes both sizes hold survive
                    let (p, l, v) = block;
                    let new_size = (next() % 5_000) as usize;
                    // SAFETY: a live block with its layout.
                    let q = unsafe { heap.realloc(p, l, new_size) };
                    assert!(!q.is_null());
                    let kept = l.size().min(new_size);
                    // SAFETY: the new block holds new_size bytes.
                    let bytes = unsafe { core::slice::from_raw_parts(q, kept) };
                    assert!(bytes.iter().all(|b| *b == v));
                    let l = layout(new_size, l.align());
                    unsafe { core::ptr::write_bytes(q, v, new_size) };
                    live.push((q, l, v));
                } else {
                    // SAFETY: a live block with its layout.
                    unsafe { heap.dealloc(block.0, block.1) };
                }
            }
            if step % 50 == 0 {
                live.iter().for_each(check);
            }
        }
        assert!(reused > 500, "freed blocks are taken again ({reused})");
    }

    #[test]
    fn a_freed_block_is_the_next_one_of_its_size() {
        let heap = Heap::new(Fake::new(4));
        let l = layout(100, 8);
        unsafe {
            let a = heap.alloc(l);
            let b = heap.alloc(l);
            assert_eq!(b as usize - a as usize, 128);
            heap.dealloc(a, l);
            // another size does not take it
            let c = heap.alloc(layout(40, 8));
            assert_ne!(c, a);
            assert_eq!(heap.alloc(layout(120, 1)), a);
        }
    }

    #[test]
    fn it_fails_cleanly_when_memory_cannot_grow_or_the_layout_is_unusual() {
        let heap = Heap::new(Fake::new(2));
        unsafe {
            // a block larger than a page takes several
            assert!(!heap.alloc(layout(PAGE + 1, 8)).is_null());
            assert!(heap.alloc(layout(1, 8)).is_null(), "the two pages went to the first block");
            assert!(heap.alloc(layout(8, 16)).is_null(), "alignment above 8");
            assert!(heap.alloc(layout((1 << 30) + 1, 8)).is_null(), "over the largest class");
        }
    }
}
