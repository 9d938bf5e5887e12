//! What kind of failure an error is, so that every binary maps it to the
//! same exit code, and one way to render an error with its causes.

/// The kind of a failure, as a caller must act on it.
///
/// Every lkg crate's error type says which kind each of its variants is
/// ([`Classify`]); the binaries map kinds to exit codes in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// lkg did its job and the answer is "no": an update rolled back, a
    /// signature is invalid, a replay does not match its lock.
    Verdict,
    /// The input is wrong: a malformed file, an invalid name, a missing
    /// argument. Fix the input; a re-run as it is fails the same way.
    Input,
    /// The safety gate held the work: nothing was changed; an operator must act.
    Held,
    /// Some of the work is done: a re-run is needed to finish or revert it.
    /// Never reported as success.
    Partial,
    /// lkg could not do its job: a daemon or registry is unreachable, auth was
    /// refused, a file could not be written. A re-run may succeed.
    Environment,
}

impl FailureKind {
    /// A short name for JSON output and logs.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Verdict => "verdict",
            FailureKind::Input => "input",
            FailureKind::Held => "held",
            FailureKind::Partial => "partial",
            FailureKind::Environment => "environment",
        }
    }
}

/// An error that knows its [`FailureKind`].
pub trait Classify: std::error::Error {
    /// What kind of failure this is.
    fn kind(&self) -> FailureKind;
}

impl Classify for crate::AppNameError {
    fn kind(&self) -> FailureKind {
        FailureKind::Input
    }
}

impl Classify for crate::StateFileError {
    fn kind(&self) -> FailureKind {
        match self {
            crate::StateFileError::Io { .. } => FailureKind::Environment,
            // A state file lkg did not write (or a damaged one): the input.
            _ => FailureKind::Input,
        }
    }
}

/// Renders an error and its causes as `outer: inner: root`.
///
/// A cause whose text the message so far already contains is skipped, so an
/// error written as `#[error("...: {source}")]` is not printed twice; lkg's
/// own errors leave their causes to this renderer.
pub fn render_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the registry at 127.0.0.1:5000")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write journal.json: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn the_chain_keeps_the_root_cause_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(render_chain(&Outer(refused())), "cannot reach the registry at 127.0.0.1:5000: connection refused");
        assert_eq!(render_chain(&Repeats(refused())), "cannot write journal.json: connection refused");
    }
}
