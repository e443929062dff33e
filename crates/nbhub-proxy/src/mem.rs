//! Allocator settings for the proxy's buffer pattern (glibc only; elsewhere these do nothing).
//!
//! Each upstream connection reads responses into a buffer that hyper grows to 128 KiB and
//! more for large bodies and hands out in pieces (`Bytes`); a buffer still referenced by a
//! piece being written to the client when the next read comes is replaced by a new one. With
//! glibc's defaults these buffers sit at its (dynamic) mmap threshold and the top of an arena
//! is given back to the kernel as soon as twice that is free, so under load the same pages are
//! returned (`madvise`) and faulted in again: ~1.5 page faults per 64 KiB response, and ~14 %
//! of the proxy's CPU per 64 KiB request (30 → 26 µs in bench/proxy's setup once removed).
//! [`tune`] keeps allocations below 1 MiB on the heap and lets up to 8 MiB stay free at the top
//! of an arena; [`trim`] gives free memory back once a worker has no connections left (and on
//! the pool's idle sweep), so an idle proxy stays small.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Buffers below this come from the heap rather than a fresh mmap each.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1 << 20;
/// Free memory at the top of an arena kept (not given back) while busy.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 8 << 20;
/// At most one trim per this interval and thread, however often a worker goes idle.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Set the allocator's thresholds; call once at startup, before the worker threads start.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's malloc parameters; it is called before any worker
    // thread exists and takes the malloc lock itself.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Give free heap memory back to the kernel (at most once a second per thread).
pub fn trim() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(t) if now.duration_since(t) < TRIM_INTERVAL => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if !due {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it takes each arena's lock) and frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
