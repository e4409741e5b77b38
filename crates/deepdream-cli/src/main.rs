//! The `deepdream` binary: the command line of [`deepdream_cli`].

use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse: the dream allocates and frees tensors of tens of
/// megabytes every step, and the system allocator hands each one back to the kernel, so every
/// step paid again for page faults (a VGG16 step at 512x512 took 1.5x as long on 2 cores).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    deepdream::timeline::start();
    deepdream_cli::keep_freed_memory();
    ExitCode::from(deepdream_cli::run_args(std::env::args_os()))
}
