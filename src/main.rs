//! The `consort` command: one binary for operators, members and developers.

mod cli;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    cli::main()
}

/// glibc gives threads up to eight malloc arenas per core, and each keeps the
/// memory freed into it: a node's many short-lived blocking threads spread
/// its allocations over them. Two arenas cut a validator's peak resident
/// memory under load by about a fifth (measured with `consort bench`) at no
/// measured cost in throughput. `MALLOC_ARENA_MAX` in the environment still
/// overrides it.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it runs before any
        // thread is started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
