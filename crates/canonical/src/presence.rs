//! `has_canonical`: a record *and* every volume it lists still there.
//!
//! A record alone is not a canonical: the swarm CI harness's canonical is
//! the data in its volumes, and a volume can be removed behind lkg's back
//! (`docker volume prune`, a cold-run teardown that matched too much). A quick
//! run that reattached a canonical without its data would test an empty app
//! and call it an upgrade.

use std::future::Future;

use serde::Serialize;

use crate::record::Record;
use crate::store::{Canonicals, StoreError};
use lkg_core::AppName;

/// Asks whether a volume exists. The `docker` feature provides
/// `EngineVolumes`, over the Docker engine; tests of
/// pure logic can use a set.
pub trait VolumeLookup {
    /// Why the lookup failed (not "the volume is absent", which is `Ok(false)`).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether the volume `name` exists.
    fn volume_exists(&self, name: &str) -> impl Future<Output = Result<bool, Self::Error>> + Send;
}

/// Whether an app has a usable canonical, and if not, why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "presence", rename_all = "kebab-case")]
pub enum Presence {
    /// The record exists and every volume it lists is present.
    Present {
        /// The volumes checked.
        volumes: Vec<String>,
    },
    /// There is no record.
    NoRecord,
    /// The record lists no volumes, so its data cannot be checked (a record
    /// written by the swarm CI harness, or by hand).
    NoVolumesListed,
    /// Some listed volumes are gone.
    MissingVolumes {
        /// The volumes that are gone.
        missing: Vec<String>,
        /// The volumes still there.
        present: Vec<String>,
    },
}

impl Presence {
    /// The decision over a record and the volumes found, without I/O.
    pub fn of(record: Option<&Record>, exists: impl Fn(&str) -> bool) -> Presence {
        let Some(record) = record else { return Presence::NoRecord };
        if record.volumes.is_empty() {
            return Presence::NoVolumesListed;
        }
        let (present, missing): (Vec<String>, Vec<String>) = record.volumes.iter().cloned().partition(|v| exists(v));
        if missing.is_empty() {
            Presence::Present { volumes: present }
        } else {
            Presence::MissingVolumes { missing, present }
        }
    }

    /// Whether the canonical can be used.
    pub fn is_present(&self) -> bool {
        matches!(self, Presence::Present { .. })
    }

    /// One line for the operator.
    pub fn describe(&self) -> String {
        match self {
            Presence::Present { volumes } => format!("present: record and volumes {}", volumes.join(", ")),
            Presence::NoRecord => "absent: no canonical record".to_owned(),
            Presence::NoVolumesListed => {
                "absent: the record lists no volumes, so its data cannot be checked; promote it again with its \
                 volumes"
                    .to_owned()
            }
            Presence::MissingVolumes { missing, .. } => {
                format!("absent: the record lists volumes that are gone: {}", missing.join(", "))
            }
        }
    }
}

/// Why presence could not be decided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The record could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A volume could not be looked up.
    #[error("cannot tell whether volume {volume} exists")]
    Lookup {
        /// The volume.
        volume: String,
        /// The lookup's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Canonicals {
    /// Whether `app` has a canonical: a record and every volume it lists.
    pub async fn presence<L: VolumeLookup>(&self, app: &AppName, volumes: &L) -> Result<Presence, PresenceError> {
        let record = self.get(app)?;
        let mut found = Vec::new();
        for volume in record.iter().flat_map(|r| &r.volumes) {
            let exists = volumes
                .volume_exists(volume)
                .await
                .map_err(|e| PresenceError::Lookup { volume: volume.clone(), source: Box::new(e) })?;
            if exists {
                found.push(volume.clone());
            }
        }
        Ok(Presence::of(record.as_ref(), |v| found.iter().any(|f| f == v)))
    }

    /// `presence(..).is_present()`: true only with a record *and* every
    /// volume it lists.
    pub async fn has_canonical<L: VolumeLookup>(&self, app: &AppName, volumes: &L) -> Result<bool, PresenceError> {
        Ok(self.presence(app, volumes).await?.is_present())
    }
}

impl lkg_core::Classify for PresenceError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            PresenceError::Store(e) => lkg_core::Classify::kind(e),
            // The engine could not be asked.
            _ => lkg_core::FailureKind::Environment,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;

    fn record(volumes: &[&str]) -> Record {
        Record::new(
            AppName::new("gitea").unwrap(),
            "warm-canon-gitea.ci.example.net".into(),
            "3.5.3+1.24.2-rootless".into(),
            "0123abcd".into(),
            Status::Idle,
            "2026-06-17T08:39:30Z".parse().unwrap(),
            volumes.iter().map(|v| (*v).to_owned()).collect(),
        )
    }

    #[test]
    fn every_listed_volume_must_exist() {
        let all = |_: &str| true;
        let only_data = |v: &str| v == "data";
        assert_eq!(Presence::of(None, all), Presence::NoRecord);
        assert_eq!(Presence::of(Some(&record(&[])), all), Presence::NoVolumesListed);
        assert!(Presence::of(Some(&record(&["data", "config"])), all).is_present());
        assert_eq!(
            Presence::of(Some(&record(&["data", "config"])), only_data),
            Presence::MissingVolumes { missing: vec!["config".into()], present: vec!["data".into()] }
        );
    }
}
