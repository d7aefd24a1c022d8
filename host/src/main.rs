//! The `comfyume` binary: see [`comfyume::cli`].

/// mimalloc instead of glibc's malloc: glibc kept the freed buffers of a
/// workshop's bursts (every argon2 login passes 19 MiB through the heap,
/// every prompt a few parsed copies) in its arenas, and a host holding
/// 4,000 waiting prompts sat at 1.8-2.2 GB of which little was live; with
/// mimalloc the same host holds ~230 MiB (debug build), and ~155 MiB with
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0` in its
/// environment. `cargo bench --bench memory`; docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    comfyume::cli::main()
}
