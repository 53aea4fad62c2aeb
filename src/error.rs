//! Exit codes and the error kinds that map onto them.

use std::fmt;

/// Exit codes are part of the interface (CONTRACT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Quarantined = 3,
    /// `--dry-run --detailed-exitcode`: the account differs from the plan.
    ChangesPending = 4,
}

/// A usage error or missing input: exit code 2. The message says what to pass.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error from anywhere.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code an error maps to.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if err.chain().any(|e| e.downcast_ref::<UsageError>().is_some()) {
        Exit::Usage
    } else {
        Exit::Failure
    }
}
