//! The human forms of records and outcomes, as `lkg-canonical` prints them.

use std::fmt::{self, Write as _};

use crate::presence::Presence;
use crate::record::Record;
use crate::store::PromotionOutcome;

impl fmt::Display for Record {
    /// Several lines: the app and where it lives, then one field a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} at {}", self.app, self.status, self.domain)?;
        writeln!(f, "  version   {}", self.version)?;
        writeln!(f, "  commit    {}", self.commit)?;
        writeln!(f, "  promoted  {:.0}", self.ts)?;
        if let Some(since) = self.status_since {
            writeln!(f, "  status    {} since {since:.0}", self.status)?;
        }
        if self.volumes.is_empty() {
            writeln!(f, "  volumes   (none listed)")?;
        } else {
            writeln!(f, "  volumes   {}", self.volumes.join(", "))?;
        }
        if !self.extra.is_empty() {
            let keys: Vec<&str> = self.extra.keys().map(String::as_str).collect();
            writeln!(f, "  other     {} (kept as written)", keys.join(", "))?;
        }
        Ok(())
    }
}

/// One line per record, aligned: app, status, version, commit, domain.
pub fn table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no canonicals\n".to_owned();
    }
    let width = |get: fn(&Record) -> usize, title: &str| records.iter().map(get).max().unwrap_or(0).max(title.len());
    let app_w = width(|r| r.app.as_str().len(), "APP");
    let version_w = width(|r| r.version.len(), "VERSION");
    let commit_w = width(|r| short(&r.commit).len(), "COMMIT");
    let mut text =
        format!("{:<app_w$}  {:<6}  {:<version_w$}  {:<commit_w$}  DOMAIN\n", "APP", "STATUS", "VERSION", "COMMIT");
    for r in records {
        let _ = writeln!(
            text,
            "{:<app_w$}  {:<6}  {:<version_w$}  {:<commit_w$}  {}",
            r.app.as_str(),
            r.status.as_str(),
            r.version,
            short(&r.commit),
            r.domain
        );
    }
    text
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

impl fmt::Display for PromotionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PromotionOutcome::Seeded { record } => writeln!(
                f,
                "seeded the canonical of {}: {} ({}) at {}, {}",
                record.app,
                record.version,
                short(&record.commit),
                record.domain,
                record.status
            ),
            PromotionOutcome::Advanced { previous, record } => writeln!(
                f,
                "advanced the canonical of {}: {} ({}) -> {} ({}), {}",
                record.app,
                previous.version,
                short(&previous.commit),
                record.version,
                short(&record.commit),
                record.status
            ),
            PromotionOutcome::Refused { version, commit, refusals, current } => {
                writeln!(f, "refused: {} ({}) may not become the canonical", version, short(commit))?;
                for refusal in refusals {
                    writeln!(f, "  - {}: {}", refusal.code(), refusal.reason())?;
                }
                match current {
                    Some(r) => writeln!(f, "the canonical of {} stays at {} ({})", r.app, r.version, short(&r.commit)),
                    None => writeln!(f, "the app still has no canonical"),
                }
            }
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}
