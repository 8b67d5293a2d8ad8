//! The process allocator, with an opt-in huge-page arena for the simulator.
//!
//! A 10,000-member simulation holds 10,000 membership tables of 10,000 records (about 3 GB) and
//! touches them at random, so most events pay a TLB miss on 4 KiB pages. Once `buoy sim` turns
//! the arena on, large allocations are carved from 1 GiB regions advised as transparent huge
//! pages (2 MiB), which cuts those misses. Freed arena blocks are kept on per-size free lists
//! and reused; everything else goes to the system allocator as usual.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Allocations at least this large go to the arena while it is on.
const LARGE: usize = 64 * 1024;
/// The arena grows by regions of this size.
const REGION: usize = 1 << 30;
/// Block sizes are rounded up to this, so freed blocks fit later requests of similar size.
const GRANULE: usize = 64 * 1024;

/// Most regions the arena maps (64 GiB of address space).
const MAX_REGIONS: usize = 64;

thread_local! {
    /// Set while this thread holds the arena, so the arena's own bookkeeping allocations go
    /// to the system allocator instead of waiting on a lock this thread already holds.
    static IN_ARENA: Cell<bool> = const { Cell::new(false) };
}

/// The global allocator: the system's, plus the arena when switched on.
pub struct Allocator {
    on: AtomicBool,
    arena: Mutex<Arena>,
    /// Start of each region mapped so far (each `REGION` long), readable without the lock.
    region_starts: [AtomicUsize; MAX_REGIONS],
    region_count: AtomicUsize,
}

struct Arena {
    /// The next free byte of the current region, and its end.
    next: usize,
    end: usize,
    /// Freed blocks `(address, size)`, reused by exact size.
    free: Vec<(usize, usize)>,
}

impl Allocator {
    pub const fn new() -> Self {
        Allocator {
            on: AtomicBool::new(false),
            arena: Mutex::new(Arena {
                next: 0,
                end: 0,
                free: Vec::new(),
            }),
            region_starts: [const { AtomicUsize::new(0) }; MAX_REGIONS],
            region_count: AtomicUsize::new(0),
        }
    }

    /// Serves large allocations from huge pages from now on (the simulator calls this).
    pub fn use_huge_pages(&self) {
        self.on.store(true, Ordering::Relaxed);
    }

    /// True when `p` lies in one of the arena's regions.
    fn owns(&self, p: usize) -> bool {
        let n = self.region_count.load(Ordering::Acquire);
        self.region_starts[..n].iter().any(|s| {
            let s = s.load(Ordering::Relaxed);
            p >= s && p < s + REGION
        })
    }

    /// Runs `f` on the arena unless this thread is already inside it.
    fn with_arena<R>(&self, f: impl FnOnce(&mut Arena) -> Option<R>) -> Option<R> {
        if IN_ARENA.with(|c| c.replace(true)) {
            return None;
        }
        let r = self.arena.lock().ok().and_then(|mut a| f(&mut a));
        IN_ARENA.with(|c| c.set(false));
        r
    }

    fn take(&self, a: &mut Arena, size: usize, align: usize) -> Option<*mut u8> {
        if align > GRANULE {
            return None;
        }
        let size = size.div_ceil(GRANULE) * GRANULE;
        if let Some(i) = a.free.iter().position(|&(_, s)| s == size) {
            return Some(a.free.swap_remove(i).0 as *mut u8);
        }
        if a.next + size > a.end {
            let n = self.region_count.load(Ordering::Acquire);
            if n == MAX_REGIONS || size > REGION {
                return None;
            }
            // SAFETY: an anonymous private mapping; the result is checked before use.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    REGION,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            // SAFETY: advising a mapping we own; failure only means no huge pages.
            unsafe { libc::madvise(p, REGION, libc::MADV_HUGEPAGE) };
            let start = p as usize;
            self.region_starts[n].store(start, Ordering::Relaxed);
            self.region_count.store(n + 1, Ordering::Release);
            a.next = start;
            a.end = start + REGION;
        }
        let p = a.next;
        a.next += size;
        Some(p as *mut u8)
    }
}

// SAFETY: every block handed out is either the system allocator's or a fresh, unaliased range
// of an arena region of at least the requested size and alignment.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE
            && self.on.load(Ordering::Relaxed)
            && let Some(p) = self.with_arena(|a| self.take(a, layout.size(), layout.align()))
        {
            return p;
        }
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LARGE && self.owns(ptr as usize) {
            let size = layout.size().div_ceil(GRANULE) * GRANULE;
            // A thread inside the arena never frees arena blocks (its bookkeeping is the
            // system's), so this always runs; if it could not, leaking beats a wrong free.
            self.with_arena(|a| {
                a.free.push((ptr as usize, size));
                Some(())
            });
            return;
        }
        // SAFETY: not an arena block, so the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_come_from_the_arena_and_are_reused_after_free() {
        let a = Allocator::new();
        a.use_huge_pages();
        let layout = Layout::from_size_align(200 * 1024, 8).unwrap();
        // SAFETY: blocks are written within their layout and freed with it.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert!(a.owns(p as usize), "a large block must come from the arena");
            p.write_bytes(0xab, layout.size());
            a.dealloc(p, layout);
            let q = a.alloc(layout);
            assert_eq!(p, q, "a freed block of the same size is reused");
            let small = Layout::from_size_align(1024, 8).unwrap();
            let s = a.alloc(small);
            assert!(
                !a.owns(s as usize),
                "small blocks stay with the system allocator"
            );
            a.dealloc(s, small);
            a.dealloc(q, layout);
        }
    }

    #[test]
    fn the_arena_is_off_until_switched_on() {
        let a = Allocator::new();
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: allocated and freed with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!a.owns(p as usize));
            a.dealloc(p, layout);
        }
    }
}
