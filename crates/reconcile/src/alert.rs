//! Alerts: one JSON file per alert under `<state-dir>/alerts/`, written
//! atomically, listed and acknowledged by `lkg-reconcile alerts`, and
//! optionally sent to a webhook as a JSON `POST`.
//!
//! The file is the alert. A webhook is a courtesy on top: it is tried a
//! bounded number of times after the file is written, and its failure is
//! recorded in the file, never instead of it: a webhook that is down or
//! misconfigured cannot make a hold or a rollback go unrecorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use lkg_core::Clock;
use serde::{Deserialize, Serialize};

use crate::error::ReconcileError;
use crate::files::{read_json, state_io, write_json};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AlertKind {
    /// The gate held a major update; nothing was touched.
    HeldMajor,
    /// The gate held an update whose release notes mark a manual migration.
    HeldManualMigration,
    /// The target failed; lkg rolled back to last-good (see `recovered`).
    Rollback,
    /// The rollback itself failed: the app is not known to run its last-good.
    RollbackFailed,
    /// A first install failed; its stack was undeployed (volumes kept).
    InstallFailed,
}

impl AlertKind {
    /// The name used in files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::HeldMajor => "held-major",
            AlertKind::HeldManualMigration => "held-manual-migration",
            AlertKind::Rollback => "rollback",
            AlertKind::RollbackFailed => "rollback-failed",
            AlertKind::InstallFailed => "install-failed",
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert, as written to `<state-dir>/alerts/<id>.json` and sent to the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Alert {
    /// `<UTC time>-<app>-<kind>-<4 hex>`, also the file name.
    pub id: String,
    /// What it is about.
    pub kind: AlertKind,
    /// The app.
    pub app: String,
    /// Its swarm stack.
    pub stack: String,
    /// The version lkg tried (the target or candidate).
    pub attempted: String,
    /// The last-good version (none for a first install).
    pub last_good: Option<String>,
    /// Whether the app runs its last-good version again and passed its
    /// health checks; `null` for a hold, which touched nothing.
    pub recovered: Option<bool>,
    /// Why: `rolled_back`, `unhealthy`, `deploy_error`, `major`, ... (see docs/reconcile.md).
    pub reason: String,
    /// What happened, in words, with what to do next.
    pub detail: String,
    /// The release notes of the attempted version, when there are any.
    pub notes: Option<String>,
    /// When.
    #[serde(with = "ts")]
    pub ts: Timestamp,
    /// The webhook delivery, once tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// What the fields of a new alert are; the id and time are added by [`Alert::new`].
#[derive(Debug, Clone)]
pub struct AlertFacts {
    /// What it is about.
    pub kind: AlertKind,
    /// The app.
    pub app: String,
    /// Its stack.
    pub stack: String,
    /// The version tried.
    pub attempted: String,
    /// The last-good version.
    pub last_good: Option<String>,
    /// Whether last-good runs healthy again (`None` for holds).
    pub recovered: Option<bool>,
    /// The reason code.
    pub reason: String,
    /// The words.
    pub detail: String,
    /// The release notes.
    pub notes: Option<String>,
}

impl Alert {
    /// A new alert, stamped `ts` with a fresh id.
    pub fn new(facts: AlertFacts, ts: Timestamp) -> Alert {
        let id = format!("{}-{}-{}-{:04x}", compact(ts), facts.app, facts.kind, crate::random_u64() & 0xffff);
        Alert {
            id,
            kind: facts.kind,
            app: facts.app,
            stack: facts.stack,
            attempted: facts.attempted,
            last_good: facts.last_good,
            recovered: facts.recovered,
            reason: facts.reason,
            detail: facts.detail,
            notes: facts.notes,
            ts,
            delivery: None,
        }
    }
}

/// The outcome of posting an alert to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook URL.
    pub url: String,
    /// Whether it answered 2xx.
    pub delivered: bool,
    /// Requests made.
    pub attempts: u32,
    /// The last error, when not delivered.
    pub error: Option<String>,
    /// When the last attempt ended.
    #[serde(with = "ts")]
    pub at: Timestamp,
}

/// An alert as listed: where it is and whether it was acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct ListedAlert {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// Its file.
    pub path: PathBuf,
    /// Whether it was acknowledged (moved to `alerts/acked/`).
    pub acked: bool,
}

/// An alert file that could not be read (damaged, or not lkg's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableAlert {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The alerts directory, `<state-dir>/alerts/` (acknowledged ones in `acked/`).
#[derive(Debug, Clone)]
pub struct Alerts {
    dir: PathBuf,
}

impl Alerts {
    /// The alerts under `state_dir`.
    pub fn new(state_dir: &Path) -> Alerts {
        Alerts { dir: state_dir.join("alerts") }
    }

    /// `<state-dir>/alerts`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where alert `id` is written.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes (or rewrites) `alert` atomically; returns its path.
    pub fn write(&self, alert: &Alert) -> Result<PathBuf, ReconcileError> {
        let path = self.path(&alert.id);
        write_json(&path, alert)?;
        Ok(path)
    }

    /// The alerts, oldest first; `app` filters, `acked` includes the
    /// acknowledged ones. A file that cannot be read is passed over (see
    /// [`Alerts::list_checked`] to be told which).
    pub fn list(&self, app: Option<&str>, acked: bool) -> Result<Vec<ListedAlert>, ReconcileError> {
        Ok(self.list_checked(app, acked)?.0)
    }

    /// [`Alerts::list`], and the alert files that could not be read: one
    /// damaged file never hides the others.
    pub fn list_checked(
        &self,
        app: Option<&str>,
        acked: bool,
    ) -> Result<(Vec<ListedAlert>, Vec<UnreadableAlert>), ReconcileError> {
        let mut unreadable = Vec::new();
        let mut listed = Alerts::list_dir(&self.dir, false, &mut unreadable)?;
        if acked {
            listed.extend(Alerts::list_dir(&self.dir.join("acked"), true, &mut unreadable)?);
        }
        listed.retain(|l| app.is_none_or(|a| l.alert.app == a));
        listed.sort_by(|a, b| a.alert.ts.cmp(&b.alert.ts).then_with(|| a.alert.id.cmp(&b.alert.id)));
        Ok((listed, unreadable))
    }

    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    fn list_dir(
        dir: &Path,
        acked: bool,
        unreadable: &mut Vec<UnreadableAlert>,
    ) -> Result<Vec<ListedAlert>, ReconcileError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(state_io("list", dir, source)),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| state_io("list", dir, source))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Temp files of a write in progress start with a dot.
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match read_json::<Alert>(&path) {
                Ok(Some(alert)) => listed.push(ListedAlert { alert, path, acked }),
                Ok(None) => {}
                Err(e) => unreadable.push(UnreadableAlert { path, reason: lkg_core::render_chain(&e) }),
            }
        }
        Ok(listed)
    }

    /// Acknowledges the alerts with these ids: moves them to `alerts/acked/`.
    /// Returns the ids moved; an id already acknowledged or unknown is skipped.
    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    pub fn ack(&self, ids: &[String]) -> Result<Vec<String>, ReconcileError> {
        let acked_dir = self.dir.join("acked");
        fs_err::create_dir_all(&acked_dir).map_err(|source| state_io("create", &acked_dir, source))?;
        let mut moved = Vec::new();
        for id in ids {
            let from = self.path(id);
            let to = acked_dir.join(format!("{id}.json"));
            match std::fs::rename(&from, &to) {
                Ok(()) => moved.push(id.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(state_io("move", &from, source)),
            }
        }
        for dir in [&self.dir, &acked_dir] {
            fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| state_io("sync", dir, source))?;
        }
        Ok(moved)
    }
}

/// A webhook that receives each alert as a JSON POST.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    attempts: u32,
    timeout: Duration,
    backoff: Duration,
    client: reqwest::Client,
}

impl Webhook {
    /// POSTs to `url` (http or https), up to 3 attempts of 5 s each, 1 s then
    /// 2 s apart.
    pub fn new(url: &str) -> Result<Webhook, ReconcileError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ReconcileError::Invalid(format!(
                "webhook {:?} is not an http:// or https:// URL",
                lkg_core::redact::url(url)
            )));
        }
        Ok(Webhook {
            url: url.to_owned(),
            attempts: 3,
            timeout: Duration::from_secs(5),
            backoff: Duration::from_secs(1),
            client: crate::probe::http_client()?,
        })
    }

    /// Sets the number of attempts (at least 1) and the first pause between
    /// them (doubled after each attempt).
    #[must_use]
    pub fn retries(mut self, attempts: u32, backoff: Duration) -> Webhook {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts `alert`; never fails, the outcome says what happened and
    /// when (by `clock`).
    pub async fn deliver(&self, alert: &Alert, clock: &dyn Clock) -> Delivery {
        let body = serde_json::to_vec(alert).unwrap_or_default();
        let mut error = None;
        let mut pause = self.backoff;
        for attempt in 1..=self.attempts {
            let sent = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .timeout(self.timeout)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    return Delivery {
                        url: lkg_core::redact::url(&self.url),
                        delivered: true,
                        attempts: attempt,
                        error: None,
                        at: clock.now_seconds(),
                    };
                }
                Ok(response) => error = Some(format!("HTTP {}", response.status().as_u16())),
                Err(e) => error = Some(lkg_core::redact::text(&lkg_core::render_chain(&e))),
            }
            if attempt < self.attempts {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        Delivery {
            url: lkg_core::redact::url(&self.url),
            delivered: false,
            attempts: self.attempts,
            error,
            at: clock.now_seconds(),
        }
    }
}

/// `20260529T005510Z`: UTC to the second, the form alert and run ids start
/// with, so that their file names sort by time.
pub(crate) fn compact(ts: Timestamp) -> String {
    ts.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 3339 in UTC, whole seconds.
pub(crate) mod ts {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&ts.strftime("%Y-%m-%dT%H:%M:%SZ"))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lkg_core::SystemClock;

    fn facts(app: &str, kind: AlertKind) -> AlertFacts {
        AlertFacts {
            kind,
            app: app.into(),
            stack: app.into(),
            attempted: "1.2.0".into(),
            last_good: Some("1.1.0".into()),
            recovered: Some(true),
            reason: "unhealthy".into(),
            detail: "GET /health answered 503".into(),
            notes: None,
        }
    }

    #[test]
    fn alerts_are_files_that_list_and_ack() {
        let state = tempfile::tempdir().unwrap();
        let alerts = Alerts::new(state.path());
        let a = Alert::new(facts("shop", AlertKind::Rollback), SystemClock.now_seconds());
        let b = Alert::new(facts("blog", AlertKind::HeldMajor), SystemClock.now_seconds());
        let path = alerts.write(&a).unwrap();
        alerts.write(&b).unwrap();
        assert!(path.file_name().unwrap().to_string_lossy().contains("-shop-rollback-"));
        let read: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let keys: Vec<&str> = read.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["id", "kind", "app", "stack", "attempted", "last_good", "recovered", "reason", "detail", "notes", "ts"]
        );
        assert_eq!(alerts.list(None, false).unwrap().len(), 2);
        assert_eq!(alerts.list(Some("shop"), false).unwrap()[0].alert, a);

        assert_eq!(alerts.ack(&[a.id.clone(), "nope".into()]).unwrap(), std::slice::from_ref(&a.id));
        let open: Vec<String> = alerts.list(None, false).unwrap().into_iter().map(|l| l.alert.id).collect();
        assert_eq!(open, std::slice::from_ref(&b.id));
        let all = alerts.list(None, true).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|l| l.acked && l.alert.id == a.id));
    }

    #[test]
    fn ids_differ_and_name_the_time_app_and_kind() {
        let a = Alert::new(facts("shop", AlertKind::RollbackFailed), SystemClock.now_seconds());
        let b = Alert::new(facts("shop", AlertKind::RollbackFailed), SystemClock.now_seconds());
        assert_ne!(a.id, b.id);
        let redacted = lkg_testkit::redact(&a.id);
        assert!(redacted.starts_with("[TS]-shop-rollback-failed-"), "{redacted}");
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_reported_not_fatal() {
        let port = lkg_testkit::free_port();
        let hook =
            Webhook::new(&format!("http://127.0.0.1:{port}/hook")).unwrap().retries(2, Duration::from_millis(10));
        let delivery = hook
            .deliver(&Alert::new(facts("shop", AlertKind::Rollback), SystemClock.now_seconds()), &SystemClock)
            .await;
        assert!(!delivery.delivered);
        assert_eq!(delivery.attempts, 2);
        assert!(delivery.error.is_some());
        assert!(Webhook::new("ftp://x").is_err());
    }
}
