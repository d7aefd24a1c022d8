//! The `comfyume` binary: see [`comfyume::cli`].

fn main() -> std::process::ExitCode {
    comfyume::cli::main()
}
