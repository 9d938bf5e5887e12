//! Maintenance windows: `Sat,Sun 02:00-05:00 UTC`, `Mon-Fri 22:00-02:00 +01:00`,
//! `03:00-04:00` (every day, UTC).
//!
//! A window that ends before it starts runs past midnight; its days are the
//! days it starts on. The zone is `UTC` (the default) or a fixed offset:
//! lkg carries no time zone database, so a window in a zone with daylight
//! saving time is written as the offset in force (or in UTC).

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

/// One maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    text: String,
    /// Bit `d` set: the window starts on weekday `d` (0 = Monday).
    days: u8,
    /// Minutes after midnight.
    start: u16,
    end: u16,
    /// Minutes east of UTC.
    offset: i32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    /// Whether `now` falls inside the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.as_second() + i64::from(self.offset) * 60;
        let minute = u16::try_from(local.rem_euclid(86_400) / 60).unwrap_or(0);
        // 1970-01-01 was a Thursday (weekday 3 with Monday = 0).
        let weekday = |days: i64| u8::try_from((days + 3).rem_euclid(7)).unwrap_or(0);
        let today = weekday(local.div_euclid(86_400));
        let yesterday = weekday(local.div_euclid(86_400) - 1);
        let on = |day: u8| self.days & (1 << day) != 0;
        if self.start < self.end {
            on(today) && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: the evening part today, the morning part of a window that started yesterday.
            (on(today) && minute >= self.start) || (on(yesterday) && minute < self.end)
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Window, String> {
        let bad = |why: &str| {
            format!("window {text:?}: {why} (write e.g. \"Sat,Sun 02:00-05:00 UTC\" or \"Mon-Fri 22:00-02:00 +01:00\")")
        };
        let mut parts: Vec<&str> = text.split_whitespace().collect();
        let offset = match parts.last() {
            Some(&"UTC" | &"utc" | &"Z") => {
                parts.pop();
                0
            }
            Some(zone) if zone.starts_with(['+', '-']) => {
                let offset = parse_offset(zone).ok_or_else(|| bad("the offset must be +HH:MM or -HH:MM"))?;
                parts.pop();
                offset
            }
            _ => 0,
        };
        let (days, times) = match parts.as_slice() {
            [times] => (0x7f, *times),
            [days, times] => (parse_days(days).ok_or_else(|| bad("days are Mon..Sun, as a list or a range"))?, *times),
            _ => return Err(bad("expected [DAYS] HH:MM-HH:MM [ZONE]")),
        };
        let (start, end) = times.split_once('-').ok_or_else(|| bad("the times must be HH:MM-HH:MM"))?;
        let start = parse_time(start).ok_or_else(|| bad("a time must be HH:MM, 00:00 to 24:00"))?;
        let end = parse_time(end).ok_or_else(|| bad("a time must be HH:MM, 00:00 to 24:00"))?;
        if start == end {
            return Err(bad("it starts and ends at the same time"));
        }
        Ok(Window { text: text.trim().to_owned(), days, start, end, offset })
    }
}

fn parse_time(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
}

fn parse_offset(text: &str) -> Option<i32> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let (h, m) = text[1..].split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

fn parse_days(text: &str) -> Option<u8> {
    let day = |name: &str| DAYS.iter().position(|d| name.len() >= 3 && d.starts_with(&name[..3].to_ascii_lowercase()));
    let mut days = 0u8;
    for item in text.split(',') {
        match item.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(item)?,
        }
    }
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn weekend_nights_in_utc() {
        let w: Window = "Sat,Sun 02:00-05:00 UTC".parse().unwrap();
        // 2026-12-05 is a Saturday.
        assert!(w.contains(at("2026-12-05T02:00:00Z")));
        assert!(w.contains(at("2026-12-06T04:59:59Z")));
        assert!(!w.contains(at("2026-12-05T05:00:00Z")));
        assert!(!w.contains(at("2026-12-04T03:00:00Z")), "a Friday");
    }

    #[test]
    fn windows_past_midnight_belong_to_their_start_day() {
        let w: Window = "Fri 22:00-02:00".parse().unwrap();
        assert!(w.contains(at("2026-12-04T23:00:00Z")));
        assert!(w.contains(at("2026-12-05T01:30:00Z")), "Saturday morning, started Friday");
        assert!(!w.contains(at("2026-12-06T01:30:00Z")), "Sunday morning");
        assert!(!w.contains(at("2026-12-04T01:30:00Z")), "Friday morning started Thursday");
    }

    #[test]
    fn offsets_and_ranges() {
        let w: Window = "Mon-Fri 09:00-17:00 +01:00".parse().unwrap();
        assert!(w.contains(at("2026-12-04T08:00:00Z")), "09:00 in +01:00 on a Friday");
        assert!(!w.contains(at("2026-12-05T10:00:00Z")), "Saturday");
        let every: Window = "03:00-04:00".parse().unwrap();
        assert!(every.contains(at("2026-12-06T03:10:00Z")));
        let wrap: Window = "Sat-Mon 00:00-24:00".parse().unwrap();
        assert!(wrap.contains(at("2026-12-07T12:00:00Z")), "Monday");
        assert!(!wrap.contains(at("2026-12-08T12:00:00Z")), "Tuesday");
    }

    #[test]
    fn bad_windows_say_how_to_write_one() {
        for bad in ["", "Caturday 02:00-03:00", "02:00", "25:00-26:00", "02:00-02:00", "Mon 02:00-03:00 Europe/Paris"] {
            let e = bad.parse::<Window>().unwrap_err();
            assert!(e.contains("write e.g."), "{bad}: {e}");
        }
    }
}
