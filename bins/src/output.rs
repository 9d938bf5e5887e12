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
            human(&mut Printable(&mut lock))
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
        finish(human(&mut Printable(&mut lock)).and_then(|()| lock.flush()))
    }
}

/// A writer that shows control characters instead of sending them to the
/// terminal: human output quotes untrusted text (tar entry names, task
/// errors, alert details, versions), and an escape sequence in it must not
/// recolour, move or rewrite what the reader sees. Newlines and tabs pass;
/// every other C0 or C1 control character and DEL is written as `\x..`
/// (`\u{..}` for C1). JSON output needs none of this: serde escapes them.
#[derive(Debug)]
pub struct Printable<W>(pub W);

impl<W: Write> Write for Printable<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            let c1 = b == 0xc2 && buf.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n));
            if (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f || c1 {
                self.0.write_all(&buf[start..i])?;
                if c1 {
                    write!(self.0, "\\u{{{:x}}}", buf[i + 1])?;
                    i += 2;
                } else {
                    write!(self.0, "\\x{b:02x}")?;
                    i += 1;
                }
                start = i;
            } else {
                i += 1;
            }
        }
        self.0.write_all(&buf[start..])?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        let mut out = Vec::new();
        write!(Printable(&mut out), "vol\u{1b}[31mred\r\x07 ok\tok\nnext \u{9b}2J é").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "vol\\x1b[31mred\\x0d\\x07 ok\tok\nnext \\u{9b}2J é");
    }
}
