//! What take, verify and restore report: the library never prints; it tells
//! an [`lkg_core::Progress<Event>`](lkg_core::Progress) what it is doing and
//! the caller decides what to show. Reports come from the task that runs the
//! operation, a few times a second at most per volume, plus once when each
//! volume is done.
//!
//! ```
//! use lkg_warmsnap::{Event, Progress};
//! let quiet = |_: &Event<'_>| {};
//! let _: &dyn for<'e> Progress<Event<'e>> = &quiet;
//! ```

/// What a long operation is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Copying a volume into the staging snapshot.
    Take,
    /// Re-reading an archive and checking its checksum and entries.
    Verify,
    /// Uploading an archive into a recreated volume.
    Restore,
}

impl Phase {
    /// A verb for progress lines: `taking`, `verifying`, `restoring`.
    pub fn verb(self) -> &'static str {
        match self {
            Phase::Take => "taking",
            Phase::Verify => "verifying",
            Phase::Restore => "restoring",
        }
    }
}

/// One progress report: `phase` of volume `index` of `count`, `bytes` done so
/// far (of `total`, when known). `done` is set once, on the last report of a
/// volume in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// What is being done.
    pub phase: Phase,
    /// The volume.
    pub volume: &'a str,
    /// Its position, from 1.
    pub index: usize,
    /// How many volumes this phase covers.
    pub count: usize,
    /// Bytes done in this volume.
    pub bytes: u64,
    /// The volume's archive size, when known (verify, restore).
    pub total: Option<u64>,
    /// This volume is finished in this phase.
    pub done: bool,
}
