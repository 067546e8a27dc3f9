//! How a server binary's memory allocator gives memory back.
//!
//! glibc's allocator keeps what a burst of sessions freed: buffers of a
//! MiB or so (a terminal's replay, an oversized message read whole) move
//! from `mmap` to its heap once one of them has been freed (its mmap
//! threshold grows to the largest freed chunk), and each thread that
//! allocates gets an arena of its own, where freed memory stays. A server
//! that served a busy minute then held that minute's high-water mark for
//! good: wsep settled at 20-25 MiB after the 10,000-session soak in the
//! README. With the threshold fixed and one arena it settled at 12-13 MiB
//! (fresh: 6), within 8-17 % of its warmed-up start; tokio's worker
//! threads still allocate small objects from glibc's per-thread
//! caches, so one arena did not cost throughput in `wsep-bench`.

/// Large allocations keep coming from `mmap`, so freeing one returns it.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Makes freed memory go back to the system: call once at the start of a
/// server binary, before its runtime starts. Settings the operator made
/// with glibc's own environment variables (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`) win. Does nothing with other C libraries.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str, param: libc::c_int, value: libc::c_int| {
            if std::env::var_os(var).is_some() {
                return;
            }
            // SAFETY: mallopt only changes the allocator's parameters; it
            // is called before any other thread exists.
            if unsafe { libc::mallopt(param, value) } != 1 {
                tracing::debug!(var, "mallopt refused");
            }
        };
        set(
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        );
        set("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 1);
    }
}
