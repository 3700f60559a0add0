//! glibc's malloc settings for a server: keep freed memory instead of handing it back to
//! the kernel at once.
//!
//! By default glibc returns the free top of a heap to the kernel as soon as it passes
//! 128 KiB, so a server that allocates and frees in waves faults the same pages back in,
//! each one zeroed by the kernel, on every wave. Measured with `perf` on `plaza serve`
//! fanning chat out to 10,000 live viewers: 16 % of its CPU was the kernel clearing
//! those pages (`clear_page_erms` under page faults in `memmove`); with the thresholds
//! below it was none, and the server used about a quarter less CPU for the same chat.
//!
//! glibc reads these settings only from `GLIBC_TUNABLES` when a process starts (or from
//! `mallopt`, a C call the workspace's `unsafe_code = "forbid"` rules out), so a server
//! started without that variable executes itself again, once, with it set: same pid,
//! same arguments, before any thread or descriptor exists. An operator who sets
//! `GLIBC_TUNABLES` (even empty) keeps their own; elsewhere than glibc nothing happens.

/// Trim and pad the heap top at 64 MiB and 16 MiB; allocations of 4 MiB and more are
/// mapped on their own and returned when freed (uploads' buffers, a big JSON body).
pub const TUNABLES: &str =
    "glibc.malloc.trim_threshold=67108864:glibc.malloc.top_pad=16777216:glibc.malloc.mmap_threshold=4194304";

/// Re-executes this process with [`TUNABLES`] unless `GLIBC_TUNABLES` is already set.
/// Returns only if it did not (already set, not glibc, or the exec failed).
pub fn reexec_with_tunables() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("GLIBC_TUNABLES").is_some() {
            return;
        }
        let mut arguments = std::env::args_os();
        let program = arguments.next().unwrap_or_default();
        let error = std::process::Command::new("/proc/self/exe")
            .arg0(program)
            .args(arguments)
            .env("GLIBC_TUNABLES", TUNABLES)
            .exec();
        // Still this process: it runs with glibc's defaults, which work, only less well.
        eprintln!("plaza: could not restart with glibc's malloc settings ({error}); running with the defaults");
    }
}
