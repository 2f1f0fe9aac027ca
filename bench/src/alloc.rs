//! A counting global allocator: per-thread allocation count, live bytes and peak live bytes.
//!
//! Counters are thread-local, so the operator under test, which runs alone on its own thread
//! (a current-thread tokio runtime), is measured without the API server's or the harness's
//! allocations. Memory freed on another thread than the one that allocated it would skew the
//! live figure; on a current-thread runtime nearly everything is allocated and freed on it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

/// The counting allocator (wraps the system allocator).
pub struct Counting;

fn grew(bytes: i64, count: bool) {
    let _ = ALLOCS.try_with(|a| {
        if count {
            a.set(a.get() + 1)
        }
    });
    let _ = LIVE.try_with(|l| {
        let v = l.get() + bytes;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: forwards every call to `System` unchanged; only bookkeeping is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as i64, true);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as i64, true);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grew(-(layout.size() as i64), false);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as i64 - layout.size() as i64, true);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// This thread's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Allocations (and reallocations) made by this thread so far.
    pub allocs: u64,
    /// Bytes allocated by this thread and not yet freed by it.
    pub live: i64,
    /// The highest `live` since the last [`reset_peak`].
    pub peak: i64,
}

/// This thread's counters.
pub fn snapshot() -> Snapshot {
    Snapshot {
        allocs: ALLOCS.with(Cell::get),
        live: LIVE.with(Cell::get),
        peak: PEAK.with(Cell::get),
    }
}

/// Starts a new peak window at the current live bytes (this thread).
pub fn reset_peak() {
    PEAK.with(|p| p.set(LIVE.with(Cell::get)));
}
