use std::io::{self, Write};

use serde::Serialize;

use crate::{Exit, Failure};

/// Where a job's result goes: a human report or one JSON document, on stdout.
///
/// Progress and diagnostics never go to stdout, so `--json` output can be piped
/// straight into `jq`. A reader that closes the pipe early (`| head`) is not an
/// error: the rest of the output is dropped and the job's exit code stands.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// `json` selects the machine format.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Whether `--json` was asked for.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Prints `value` as pretty JSON when `--json` was given, otherwise runs
    /// `human` to write the human report.
    pub fn emit<T: Serialize + ?Sized>(
        self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), Failure> {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        let written = if self.json {
            // `From` keeps an I/O error's kind, so a closed pipe stays
            // `BrokenPipe` and `finish` lets it pass (`io::Error::other` hid it).
            serde_json::to_writer_pretty(&mut lock, value).map_err(io::Error::from).and_then(|()| lock.write_all(b"\n"))
        } else {
            human(&mut lock)
        };
        finish(written.and_then(|()| lock.flush()))
    }

    /// Writes human text only (nothing in `--json` mode), e.g. a hint after the report.
    pub fn human(self, human: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), Failure> {
        if self.json {
            return Ok(());
        }
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        finish(human(&mut lock).and_then(|()| lock.flush()))
    }
}

fn finish(result: io::Result<()>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        // `lkg-x ... | head`: the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(Exit::Environment, format!("cannot write to stdout: {e}"))),
    }
}
