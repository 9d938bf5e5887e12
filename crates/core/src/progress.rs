//! Progress reports: libraries never print; they tell a [`Progress`] what
//! they are doing and the binary decides what to show.
//!
//! Each crate keeps its own event type and takes a
//! `&dyn for<'e> Progress<Event<'e>>`: events borrow from the operation that
//! reports them (a volume name, a verdict), so the receiver must take events
//! of any lifetime.
//!
//! ```
//! use lkg_core::{NoProgress, Progress};
//!
//! /// What copying reports.
//! struct Copied<'a> {
//!     file: &'a str,
//! }
//!
//! fn copy(files: &[String], progress: &dyn for<'e> Progress<Copied<'e>>) {
//!     for file in files {
//!         progress.report(&Copied { file });
//!     }
//! }
//!
//! let files = vec!["a".to_owned(), "b".to_owned()];
//! copy(&files, &NoProgress);
//! let seen = std::sync::Mutex::new(Vec::new());
//! copy(&files, &|event: &Copied<'_>| seen.lock().unwrap().push(event.file.to_owned()));
//! assert_eq!(seen.into_inner().unwrap(), files);
//! ```

/// Receives a library's progress events, in order, from the task that runs
/// the operation. Any `Fn(&E) + Send + Sync` closure is one; a receiver that
/// keeps state (a progress line) holds it behind a lock.
pub trait Progress<E: ?Sized>: Send + Sync {
    /// One event.
    fn report(&self, event: &E);
}

impl<E: ?Sized, F: Fn(&E) + Send + Sync> Progress<E> for F {
    fn report(&self, event: &E) {
        self(event);
    }
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl<E: ?Sized> Progress<E> for NoProgress {
    fn report(&self, _: &E) {}
}
