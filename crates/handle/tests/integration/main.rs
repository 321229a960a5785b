//! Integration tests of the Handle codec: wire vectors, round trips,
//! hostile input, request digests, the hierarchy vectors (certified
//! answers, site records, server keys), and the admin authentication
//! vectors (admin requests, challenges, answers, HS_ADMIN, sessions).
//!
//! Run: `CARGO_TARGET_DIR=/tmp/target-handle cargo test -p idnode-handle`.

// The counting allocator below needs `unsafe impl GlobalAlloc`; it only
// forwards to the system allocator.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod auth;
mod digest;
mod hierarchy;
mod hostile;
mod round_trip;
mod vectors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread, so tests can assert that
/// a decoder allocates nothing, or nothing proportional to a claimed length.
struct Counting;

thread_local! {
    /// (number of allocations, largest allocation in bytes)
    static ALLOCATIONS: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only a const-initialized thread-local `Cell`, which never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    let _ = ALLOCATIONS.try_with(|a| {
        let (n, max) = a.get();
        a.set((n + 1, max.max(size)));
    });
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with (allocations, largest allocation)
/// made by this thread meanwhile.
pub fn allocations<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    ALLOCATIONS.with(|a| a.set((0, 0)));
    let out = f();
    let (n, max) = ALLOCATIONS.with(|a| a.get());
    (out, n, max)
}

/// Parses a vector file: hex digits, whitespace and `#` comments ignored.
pub fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).expect("vector files hold hex digits")
}

pub const SITE_REQUEST: &str = include_str!("../vectors/cnri-9.2-resolution-request-site.hex");
pub const DIRECT_REQUEST: &str = include_str!("../vectors/cnri-9.2-resolution-request-direct.hex");
pub const RESOLUTION_RESPONSE: &str = include_str!("../vectors/idnode-resolution-response.hex");
pub const ERROR_RESPONSE: &str = include_str!("../vectors/idnode-error-response.hex");

/// The `now` of the hand-built responses (also the vectors' expiration).
pub const NOW: u32 = 0x6553_f100;

#[test]
fn the_allocation_counter_counts() {
    let (v, n, largest) = allocations(|| vec![0u8; 1000]);
    assert_eq!(v.len(), 1000);
    assert!(n >= 1 && largest >= 1000);
    let ((), n, _) = allocations(|| ());
    assert_eq!(n, 0);
}
