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

/// How often freed heap memory is handed back ([`give_back_periodically`]).
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

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

/// Hands the heap's free pages back to the system every [`TRIM_EVERY`],
/// for as long as the runtime runs. glibc returns freed memory on its own
/// only from the top of the heap: after a burst of sessions, a few
/// long-lived objects allocated late pin everything below them, and the
/// server kept the burst's high-water mark. `malloc_trim` releases the
/// free pages wherever they are (`madvise`); it walks the free lists
/// under the allocator's lock, on a blocking thread. Its cost on echo
/// latency under load is measured in the README (wsep-bench with and
/// without `MALLOC_TRIM_THRESHOLD_`, which, set by the operator, turns
/// this off). Does nothing with other C libraries.
pub(crate) async fn give_back_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // The operator's own trimming policy wins.
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some() {
            return;
        }
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate: nothing to give back yet.
        tick.tick().await;
        loop {
            tick.tick().await;
            // On a blocking thread: the walk and the `madvise` calls never
            // hold up a worker's other tasks.
            let trimmed = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only releases free memory; it takes
                // the allocator's own locks.
                unsafe { libc::malloc_trim(0) }
            });
            if trimmed.await.is_err() {
                return;
            }
        }
    }
}
