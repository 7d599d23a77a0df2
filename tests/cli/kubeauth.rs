//! The kubeauth command, for the end-to-end tests of `cli/`: the same `kubeauth_cli::main` as the released
//! binary.

fn main() -> std::process::ExitCode {
    kubeauth_cli::main()
}
