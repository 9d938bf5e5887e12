//! The wall clock, behind a trait, so that decisions and records that carry a
//! time can be tested at a chosen one.

use jiff::Timestamp;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// The current time in whole seconds: what state files record, so that
    /// a value read back equals the one written.
    fn now_seconds(&self) -> Timestamp {
        let now = self.now();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that always says the same time (for tests and replays).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_record_whole_seconds() {
        let clock = FixedClock("2026-12-04T17:30:05.123456789Z".parse().unwrap());
        assert_eq!(clock.now_seconds().to_string(), "2026-12-04T17:30:05Z");
        assert_eq!(clock.now().subsec_nanosecond(), 123_456_789);
        let system = SystemClock.now_seconds();
        assert_eq!(system.subsec_nanosecond(), 0);
    }
}
