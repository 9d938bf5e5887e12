//! What every job's command-line tests read from a finished run: its text,
//! its `--json` document, and its exit code with stderr beside it.
// A job's module is compiled only with its feature; with fewer features
// some of these go unused.
#![allow(dead_code)]

use std::process::Output;

/// Bytes a binary printed, as text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `--json` document on stdout; panics showing stdout and stderr when it is not JSON.
pub(crate) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)))
}

/// `(exit code, stderr)`, for assertions that show stderr when the code is wrong.
pub(crate) fn code(out: &Output) -> (Option<i32>, String) {
    (out.status.code(), text(&out.stderr))
}
