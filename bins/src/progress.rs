use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress lines on stderr, shown only when stderr is a terminal.
///
/// Libraries report progress through callbacks; a binary forwards them here.
/// In CI logs (not a TTY) progress is silent, so logs hold results, not a
/// thousand redraws. Updates are rate-limited to ten a second.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last: Option<Instant>,
    dirty: bool,
}

impl Progress {
    /// Progress that shows itself only on a terminal.
    pub fn stderr() -> Progress {
        Progress::with_enabled(io::stderr().is_terminal())
    }

    /// Progress that is on or off regardless of the terminal (tests, `--quiet`).
    pub fn with_enabled(enabled: bool) -> Progress {
        Progress { enabled, last: None, dirty: false }
    }

    /// Whether anything will be shown.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Replaces the current progress line (rate-limited).
    pub fn update(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return;
        }
        self.last = Some(now);
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.dirty = true;
    }

    /// Prints a line that stays (a finished step), above the progress line.
    pub fn step(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        self.clear();
        let _ = writeln!(io::stderr().lock(), "{line}");
    }

    /// Removes the progress line.
    pub fn clear(&mut self) {
        if self.enabled && self.dirty {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
            self.dirty = false;
        }
    }

    /// Formats a byte count for progress lines (`1.5 MiB`).
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        #[allow(clippy::cast_precision_loss)] // display only
        let mut value = n as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn bytes_are_human() {
        assert_eq!(Progress::bytes(512), "512 B");
        assert_eq!(Progress::bytes(1536), "1.5 KiB");
        assert_eq!(Progress::bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn disabled_progress_prints_nothing_and_does_not_panic() {
        let mut p = Progress::with_enabled(false);
        p.update("x");
        p.step("y");
        assert!(!p.is_enabled());
    }
}
