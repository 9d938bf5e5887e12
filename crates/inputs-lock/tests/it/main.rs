//! Integration tests of `lkg-inputs-lock`: the real OS-image files, tar
//! streams built here and by GNU tar, resolution logic over a hand-written
//! fake resolver, and the real engine, registry and skopeo for an OCI layout
//! of images whose layers docker itself wrote (with whiteouts).
#![allow(clippy::disallowed_methods, reason = "tests write and read their fixtures; a failure panics at the line")]

mod check;
mod diff;
mod document;
mod fake;
mod kernels;
mod layers;
mod real;
mod resolve;

use std::path::{Path, PathBuf};

/// A file under the workspace's `fixtures/`.
pub(crate) fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(path)
}

/// The text of a fixture.
pub(crate) fn fixture_text(path: &str) -> String {
    std::fs::read_to_string(fixture(path)).unwrap_or_else(|e| panic!("read fixture {path}: {e}"))
}

pub(crate) const BASE_DIGEST: &str = "sha256:5cbac4096e2a05ff4f51778a9276064064e548183de98f5130086d4d01c4e021";
pub(crate) const BUILDER_DIGEST: &str = "sha256:6fe782777ea0b6b9058a8bf43dadc505687ce63f52a0f084d5bba1c1230fe09e";
