use std::process::ExitCode;

/// Why the command failed, and so its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A wrong config or wrong usage: exit code 2.
    Config(String),
    /// A failure at run time: exit code 1.
    Runtime(String),
}

impl Failure {
    /// A config failure from any error, with its sources.
    pub(crate) fn config(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Config(kubeauth::report(error))
    }

    /// A run-time failure from any error, with its sources.
    pub(crate) fn runtime(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Runtime(kubeauth::report(error))
    }
}

/// Prints the failure on stderr and gives its exit code.
pub(crate) fn exit(failure: Failure) -> ExitCode {
    let (message, code) = match failure {
        Failure::Config(m) => (m, 2),
        Failure::Runtime(m) => (m, 1),
    };
    eprintln!("kubeauth: {message}");
    ExitCode::from(code)
}
