//! The daemon's heap and glibc's allocator: one arena, and memory given
//! back after a burst.
//!
//! The daemon runs for weeks, mostly idle, with bursts (a start-up on
//! thousands of sessions, `source-file` of hundreds). glibc keeps what a
//! burst freed for the next allocation; these two calls keep the daemon's
//! RSS near what it holds. Elsewhere than glibc both do nothing.

/// Keeps the heap in glibc's one main arena. By default glibc gives each
/// thread that allocates an arena of its own (up to eight per core), and
/// what one arena has freed serves no other: at 1,000 sessions the
/// daemon's runtime and SQLite threads held five, 9.8 MiB in all, and 8.2
/// MiB in one (figure 11; `MALLOC_ARENA_MAX=1` in the bench's
/// environment). Figure 10's delivery rate did not move: glibc's
/// per-thread caches take most allocations without the arena's lock. Must
/// run before any thread is started.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; the caller runs
    // it before any thread exists, so none is allocating meanwhile.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the pages the heap holds free back to the kernel
/// (`malloc_trim`): called when a burst is over (every open call
/// delivered), when what it freed will not be asked for again soon.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arena's lock like any allocation; it
    // only releases pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
