//! `meta.json`: what a snapshot holds and how to check it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::name::{AppName, NameError, check_object_name};

/// The version of the `meta.json` format this crate writes and reads.
/// Any change in meaning bumps it; a reader refuses formats it does not know.
pub const FORMAT: u32 = 1;

/// A snapshot's `meta.json`: which app and stack it belongs to, what was
/// deployed when it was taken, and one record per volume archive.
///
/// ```json
/// {"format": 1, "app": "gitea", "stack": "gitea", "domain": "gitea.example.org",
///  "version": "1.2.0+1.21.4", "commit": "0a1b2c3", "ts": "2026-05-29T00:55:10Z",
///  "volumes": [{"name": "gitea_data", "bytes": 10240, "sha256": "…", "driver": "local",
///               "options": {}, "labels": {"com.docker.stack.namespace": "gitea"}}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Meta {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The app whose last-known-good this is.
    pub app: AppName,
    /// The swarm stack whose volumes were taken.
    pub stack: String,
    /// The app's domain, if the caller gave one.
    pub domain: Option<String>,
    /// The app version that was deployed on this data, if given.
    pub version: Option<String>,
    /// The commit of that version, if given.
    pub commit: Option<String>,
    /// When the snapshot was taken (UTC, whole seconds).
    #[serde(with = "ts_serde")]
    pub ts: Timestamp,
    /// One record per volume, sorted by name.
    pub volumes: Vec<VolumeRecord>,
}

/// One volume archive of a snapshot (`volumes/<name>.tar`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VolumeRecord {
    /// The Docker volume name (`<stack>_<volume>` for stack volumes).
    pub name: String,
    /// Size of the archive file in bytes.
    pub bytes: u64,
    /// SHA-256 of the archive file, lowercase hex (what `sha256sum` prints).
    pub sha256: String,
    /// The volume driver, to recreate a volume that was removed.
    pub driver: String,
    /// The driver options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The volume labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Why a `meta.json` cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// Not JSON, or not the shape of a format-1 `meta.json`.
    #[error("not a valid meta.json")]
    Json(#[source] serde_json::Error),
    /// Written by a newer (or older, incompatible) lkg.
    #[error("meta.json has format {found}; this lkg reads format {FORMAT}")]
    Format {
        /// The format in the file.
        found: u32,
    },
    /// The file names another app than the one it is stored for.
    #[error("meta.json is for app {found:?} but is stored as app {expected:?}")]
    App {
        /// The app the store holds it for.
        expected: String,
        /// The app it names.
        found: String,
    },
    /// A stack or volume name that Docker would refuse (or that is a path).
    #[error(transparent)]
    Name(#[from] NameError),
    /// A snapshot of nothing.
    #[error("meta.json lists no volumes")]
    NoVolumes,
    /// One volume listed twice.
    #[error("meta.json lists volume {name:?} twice")]
    DuplicateVolume {
        /// The volume.
        name: String,
    },
    /// A checksum that is not 64 lowercase hex digits.
    #[error("meta.json has an invalid sha256 for volume {volume:?}: {value:?}")]
    Digest {
        /// The volume.
        volume: String,
        /// The value found.
        value: String,
    },
}

impl Meta {
    /// A new format-1 record.
    #[allow(clippy::too_many_arguments)] // the fields of the format, each named at the call site by its type
    pub fn new(
        app: AppName,
        stack: &str,
        domain: Option<String>,
        version: Option<String>,
        commit: Option<String>,
        ts: Timestamp,
        mut volumes: Vec<VolumeRecord>,
    ) -> Meta {
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Meta { format: FORMAT, app, stack: stack.to_owned(), domain, version, commit, ts, volumes }
    }

    /// Parses and checks a `meta.json` stored for `app`.
    pub fn parse(text: &[u8], app: &AppName) -> Result<Meta, MetaError> {
        let meta: Meta = serde_json::from_slice(text).map_err(MetaError::Json)?;
        meta.check(app)?;
        Ok(meta)
    }

    /// The pretty JSON written to disk, with a final newline.
    ///
    /// # Panics
    ///
    /// Never: every field is a string, a number or a string map.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).expect("a Meta always serializes");
        text.push(b'\n');
        text
    }

    /// Checks everything that later becomes a path or an engine request.
    pub fn check(&self, app: &AppName) -> Result<(), MetaError> {
        if self.format != FORMAT {
            return Err(MetaError::Format { found: self.format });
        }
        if &self.app != app {
            return Err(MetaError::App { expected: app.to_string(), found: self.app.to_string() });
        }
        check_object_name("stack", &self.stack)?;
        if self.volumes.is_empty() {
            return Err(MetaError::NoVolumes);
        }
        let mut seen = BTreeSet::new();
        for volume in &self.volumes {
            check_object_name("volume", &volume.name)?;
            if !seen.insert(volume.name.as_str()) {
                return Err(MetaError::DuplicateVolume { name: volume.name.clone() });
            }
            if !is_sha256_hex(&volume.sha256) {
                return Err(MetaError::Digest { volume: volume.name.clone(), value: volume.sha256.clone() });
            }
        }
        Ok(())
    }

    /// The record of one volume.
    pub fn volume(&self, name: &str) -> Option<&VolumeRecord> {
        self.volumes.iter().find(|v| v.name == name)
    }

    /// Total size of the archives.
    pub fn total_bytes(&self) -> u64 {
        self.volumes.iter().map(|v| v.bytes).sum()
    }
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// RFC 3339 in UTC, whole seconds: `2026-05-29T00:55:10Z`.
pub(crate) mod ts_serde {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(ts)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new(
            AppName::new("gitea").unwrap(),
            "gitea",
            Some("gitea.example.org".to_owned()),
            Some("1.2.0+1.21.4".to_owned()),
            None,
            "2026-05-29T00:55:10Z".parse().unwrap(),
            vec![VolumeRecord {
                name: "gitea_data".to_owned(),
                bytes: 10240,
                sha256: "ab".repeat(32),
                driver: "local".to_owned(),
                options: BTreeMap::new(),
                labels: BTreeMap::from([("com.docker.stack.namespace".to_owned(), "gitea".to_owned())]),
            }],
        )
    }

    #[test]
    fn round_trips_in_the_documented_shape() {
        let meta = meta();
        let json = String::from_utf8(meta.to_json()).unwrap();
        insta::assert_snapshot!(json, @r#"
        {
          "format": 1,
          "app": "gitea",
          "stack": "gitea",
          "domain": "gitea.example.org",
          "version": "1.2.0+1.21.4",
          "commit": null,
          "ts": "2026-05-29T00:55:10Z",
          "volumes": [
            {
              "name": "gitea_data",
              "bytes": 10240,
              "sha256": "abababababababababababababababababababababababababababababababab",
              "driver": "local",
              "options": {},
              "labels": {
                "com.docker.stack.namespace": "gitea"
              }
            }
          ]
        }
        "#);
        assert_eq!(Meta::parse(json.as_bytes(), &meta.app).unwrap(), meta);
    }

    fn tampered(edit: impl FnOnce(&mut serde_json::Value)) -> MetaError {
        let mut value: serde_json::Value = serde_json::from_slice(&meta().to_json()).unwrap();
        edit(&mut value);
        Meta::parse(value.to_string().as_bytes(), &AppName::new("gitea").unwrap()).unwrap_err()
    }

    #[test]
    fn refuses_tampered_fields() {
        let err = tampered(|v| v["volumes"][0]["name"] = "../../etc/passwd".into());
        assert!(matches!(err, MetaError::Name(NameError { kind: "volume", .. })), "{err}");
        let err = tampered(|v| v["app"] = "other".into());
        assert!(matches!(err, MetaError::App { .. }), "{err}");
        let err = tampered(|v| v["volumes"][0]["sha256"] = "ABAB".into());
        assert!(matches!(err, MetaError::Digest { .. }), "{err}");
        let err = tampered(|v| v["format"] = 2.into());
        assert!(matches!(err, MetaError::Format { found: 2 }), "{err}");
        let err = tampered(|v| v["volumes"] = serde_json::json!([]));
        assert!(matches!(err, MetaError::NoVolumes), "{err}");
        let err = tampered(|v| {
            let first = v["volumes"][0].clone();
            v["volumes"].as_array_mut().unwrap().push(first);
        });
        assert!(matches!(err, MetaError::DuplicateVolume { .. }), "{err}");
        let err = tampered(|v| v["extra"] = true.into());
        assert!(matches!(err, MetaError::Json(_)), "{err}");
        let err = tampered(|v| v["stack"] = "a/b".into());
        assert!(matches!(err, MetaError::Name(NameError { kind: "stack", .. })), "{err}");
    }
}
