use std::fmt;
use std::io::Write as _;
use std::process::ExitCode;

use lkg_core::{Classify, FailureKind};

/// The exit codes of every lkg binary, as documented in `docs/exit-codes.md`.
///
/// A script can branch on them without parsing output: `1` means lkg did its
/// job and the answer is "no" (a rollback, a bad signature), which is a
/// different thing from `5`, "lkg could not ask" (the daemon is down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The job succeeded and the verdict is good.
    Ok = 0,
    /// The job ran and the verdict is a failure: an update rolled back, a
    /// signature is invalid, a replay does not match its lock.
    Failed = 1,
    /// Usage error or bad input: unknown flag, malformed file, invalid name.
    Usage = 2,
    /// Held by the safety gate: nothing was changed; an operator must act.
    Held = 3,
    /// Partial: some of the work is done and a re-run is needed to finish (or
    /// revert) it. Never reported as success.
    Partial = 4,
    /// Environment: a daemon or registry is unreachable, or auth was refused.
    Environment = 5,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// A short name for JSON output and logs.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Failed => "failed",
            Exit::Usage => "usage",
            Exit::Held => "held",
            Exit::Partial => "partial",
            Exit::Environment => "environment",
        }
    }
}

impl Exit {
    /// The exit code of a kind of failure: the table of docs/exit-codes.md.
    pub fn of(kind: FailureKind) -> Exit {
        match kind {
            FailureKind::Verdict => Exit::Failed,
            FailureKind::Input => Exit::Usage,
            FailureKind::Held => Exit::Held,
            FailureKind::Partial => Exit::Partial,
            // Environment, and any kind a newer lkg-core adds: lkg could not
            // do its job, so a re-run is the next step.
            _ => Exit::Environment,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// An error as a binary reports it: the exit code, what happened, and
/// (when lkg knows) what to do next.
#[derive(Debug)]
pub struct Failure {
    exit: Exit,
    message: String,
    hint: Option<String>,
}

impl Failure {
    /// A failure with an exit code and a message.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into(), hint: None }
    }

    /// A failure from an error value, rendering its whole `source()` chain so
    /// the cause ("connection refused") is never lost behind the context.
    pub fn from_error(exit: Exit, error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::new(exit, lkg_core::render_chain(error))
    }

    /// A failure from a library error, with the exit code of its kind
    /// ([`Exit::of`]): the one place where kinds become exit codes.
    pub fn of<E: Classify + 'static>(error: &E) -> Failure {
        Failure::from_error(Exit::of(error.kind()), error)
    }

    /// Adds the next step for the reader ("re-run with --revert to ...").
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// The exit code this failure maps to.
    pub fn exit(&self) -> Exit {
        self.exit
    }

    /// The message, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::from_error(Exit::Environment, &error)
    }
}

/// Runs a binary's body and turns its result into the process exit code.
///
/// The body returns the verdict's [`Exit`] on success (a job can succeed at
/// its work and still report `Failed`, e.g. "verified: signature invalid"),
/// or a [`Failure`], which is printed to stderr as `error: ...`.
pub fn run(body: impl FnOnce() -> Result<Exit, Failure>) -> ExitCode {
    match body() {
        Ok(exit) => exit.into(),
        Err(failure) => {
            let program = std::env::args()
                .next()
                .and_then(|arg0| std::path::Path::new(&arg0).file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "lkg".to_owned());
            // The message may quote untrusted text: control characters are shown, not sent.
            let mut stderr = crate::Printable(std::io::stderr().lock());
            let _ = writeln!(stderr, "{program}: error: {failure}");
            failure.exit.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot reach the registry at 127.0.0.1:5000")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn codes_match_the_documented_table() {
        let table: Vec<(u8, &str)> =
            [Exit::Ok, Exit::Failed, Exit::Usage, Exit::Held, Exit::Partial, Exit::Environment]
                .into_iter()
                .map(|e| (e.code(), e.name()))
                .collect();
        assert_eq!(table, [(0, "ok"), (1, "failed"), (2, "usage"), (3, "held"), (4, "partial"), (5, "environment")]);
        let doc = include_str!("../../docs/exit-codes.md");
        for (code, name) in table {
            assert!(
                doc.contains(&format!("| {code} | `{name}` |")),
                "docs/exit-codes.md lacks the row for {code} {name}"
            );
        }
    }

    #[test]
    fn each_kind_of_failure_has_its_documented_exit_code() {
        let table: Vec<(&str, u8)> = [
            FailureKind::Verdict,
            FailureKind::Input,
            FailureKind::Held,
            FailureKind::Partial,
            FailureKind::Environment,
        ]
        .into_iter()
        .map(|kind| (kind.name(), Exit::of(kind).code()))
        .collect();
        assert_eq!(table, [("verdict", 1), ("input", 2), ("held", 3), ("partial", 4), ("environment", 5)]);
    }

    #[derive(Debug)]
    struct Held;
    impl fmt::Display for Held {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the lock of gitea is held by pid 7")
        }
    }
    impl std::error::Error for Held {}
    impl Classify for Held {
        fn kind(&self) -> FailureKind {
            FailureKind::Environment
        }
    }

    #[test]
    fn a_library_error_exits_with_its_kinds_code() {
        let failure = Failure::of(&Held);
        assert_eq!((failure.exit(), failure.message()), (Exit::Environment, "the lock of gitea is held by pid 7"));
    }

    #[test]
    fn failure_keeps_the_root_cause() {
        let err = Outer(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"));
        let failure = Failure::from_error(Exit::Environment, &err).with_hint("start the registry");
        assert_eq!(
            failure.to_string(),
            "cannot reach the registry at 127.0.0.1:5000: connection refused\n  hint: start the registry"
        );
        assert_eq!(failure.exit(), Exit::Environment);
    }
}
