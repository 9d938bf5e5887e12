//! `canonical.json`: what an app's canonical is.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use lkg_core::AppName;

/// The `schema_version` this crate writes. Records without one (the swarm CI
/// harness's, which say `recipe` instead of `app`) are read as version 0 and
/// written back as this version; records from a newer lkg are refused rather
/// than rewritten without the fields this version does not know.
pub const SCHEMA_VERSION: u32 = 1;

/// Whether the canonical is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Status {
    /// Deployed at its domain.
    Warm,
    /// Undeployed; its volumes are kept, so it can be reattached.
    Idle,
}

impl Status {
    /// `warm` or `idle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Warm => "warm",
            Status::Idle => "idle",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s {
            "warm" => Ok(Status::Warm),
            "idle" => Ok(Status::Idle),
            other => Err(format!("status {other:?} is neither `warm` nor `idle`")),
        }
    }
}

/// One app's canonical: `<state-dir>/apps/<app>/canonical.json`.
///
/// Fields this version does not know are kept in [`Record::extra`] and
/// written back unchanged, so an older lkg never drops what a newer tool (or
/// an operator) added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The record format, [`SCHEMA_VERSION`] when written by this crate.
    #[serde(default)]
    pub schema_version: u32,
    /// The app (`recipe` in the swarm CI harness's records).
    #[serde(alias = "recipe")]
    pub app: AppName,
    /// The stable domain the canonical is deployed at.
    pub domain: String,
    /// The version the canonical runs, e.g. `3.5.3+1.24.2-rootless`.
    pub version: String,
    /// The recipe commit of that version.
    pub commit: String,
    /// Deployed or not.
    pub status: Status,
    /// When this version became the canonical (its last promotion).
    #[serde(with = "ts_serde")]
    pub ts: Timestamp,
    /// When `status` last changed, if it changed after the promotion.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "ts_opt")]
    pub status_since: Option<Timestamp>,
    /// The volumes holding the canonical's data. `has_canonical` needs every
    /// one of them to still exist.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Fields this version does not know, preserved.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Record {
    /// A record as this crate writes it.
    pub fn new(
        app: AppName,
        domain: String,
        version: String,
        commit: String,
        status: Status,
        ts: Timestamp,
        volumes: Vec<String>,
    ) -> Record {
        Record {
            schema_version: SCHEMA_VERSION,
            app,
            domain,
            version,
            commit,
            status,
            ts,
            status_since: None,
            volumes,
            extra: Map::new(),
        }
    }
}

/// Timestamps are written as RFC 3339 in UTC with whole seconds; reading also
/// accepts the compact form the harness used in file names (`20260617T180501Z`).
pub(crate) mod ts_serde {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{ts:.0}"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<Timestamp, String> {
        if let Ok(ts) = text.parse::<Timestamp>() {
            return Ok(ts);
        }
        jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", text)
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
            .ok_or_else(|| format!("{text:?} is not a timestamp (RFC 3339, e.g. 2026-06-17T18:05:01Z)"))
    }
}

mod ts_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    // serde's `with` hands `&Option<T>`, so the reference is not ours to change.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(ts: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => super::ts_serde::serialize(ts, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| super::ts_serde::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"schema_version":1,"app":"gitea","domain":"warm-canon-gitea.ci.example.net",
            "version":"3.5.3+1.24.2-rootless","commit":"0123abcd","status":"idle","ts":"2026-06-17T08:39:30Z",
            "volumes":["warm-canon-gitea_data"],"snapshot":{"path":"/srv/snap","bytes":42},"owner_note":"x"}"#;
        let record: Record = serde_json::from_str(text).unwrap();
        assert_eq!(record.extra.len(), 2);
        let back: Value = serde_json::to_value(&record).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn reads_the_harness_record_format() {
        // Shape of the swarm CI harness's canonical.json: `recipe` for `app`,
        // no schema version, no volumes, a compact timestamp.
        let text = r#"{"recipe":"custom-html","domain":"warm-custom-html.ci.commoninternet.net",
            "version":"1.11.0+1.29.0","commit":"wc2proof","status":"idle","ts":"20260529T005510Z"}"#;
        let record: Record = serde_json::from_str(text).unwrap();
        assert_eq!(record.schema_version, 0);
        assert_eq!(record.app.as_str(), "custom-html");
        assert_eq!(record.ts.to_string(), "2026-05-29T00:55:10Z");
        assert!(record.volumes.is_empty());
        assert!(record.extra.is_empty());
    }

    #[test]
    fn timestamps_are_whole_seconds() {
        let ts: Timestamp = "2026-06-17T18:05:01.123456789Z".parse().unwrap();
        let record =
            Record::new(AppName::new("mumble").unwrap(), "d".into(), "v".into(), "c".into(), Status::Warm, ts, vec![]);
        assert_eq!(serde_json::to_value(&record).unwrap()["ts"], "2026-06-17T18:05:01Z");
    }
}
