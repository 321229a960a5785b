//! The `idnode` binary: see `idnode --help` and the README.

// mimalloc: the allocator DESIGN.md chose for the hot path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    idnode_cli::main()
}
