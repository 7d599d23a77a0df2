//! The `kubeauth` binary.

use std::process::ExitCode;

/// jemalloc, whose background thread gives memory freed after a burst of load back to the system.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    kubeauth_cli::main()
}
