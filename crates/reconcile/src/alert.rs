//! Alerts: one JSON file per alert under `<state-dir>/alerts/`, written
//! atomically, listed and acknowledged by `lkg-reconcile alerts`, and sent
//! to every notification channel of the app (lkg-notify: ntfy, Slack,
//! Discord, mail, generic JSON webhooks).
//!
//! The file is the alert. Channels are a courtesy on top: each is tried a
//! bounded number of times after the file is written, and how that went is
//! recorded in the file, never instead of it: a channel that is down or
//! misconfigured cannot make a hold or a rollback go unrecorded.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use lkg_notify::{Delivery, Message, Severity};
use serde::{Deserialize, Deserializer, Serialize};

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

/// One alert, as written to `<state-dir>/alerts/<id>.json` and posted by
/// the generic channel.
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
    /// How each notification channel took it, once tried (older files
    /// have one `delivery` object: read as a list of one).
    #[serde(default, alias = "delivery", deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
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
            deliveries: Vec::new(),
        }
    }

    /// What the notification channels are sent: a one-line title per kind,
    /// the detail (already redacted), the reason and, for a hold, the
    /// release notes; the generic channel posts the alert itself.
    pub fn message(&self) -> Message {
        let app = &self.app;
        let attempted = &self.attempted;
        let last_good = self.last_good.as_deref().unwrap_or("nothing");
        let (title, severity) = match self.kind {
            AlertKind::HeldMajor => {
                (format!("lkg: {app} held at {last_good}: {attempted} is a major update"), Severity::Warning)
            }
            AlertKind::HeldManualMigration => {
                (format!("lkg: {app} held at {last_good}: {attempted} needs a manual migration"), Severity::Warning)
            }
            AlertKind::Rollback => (format!("lkg: {app} rolled back {attempted} → {last_good}"), Severity::Warning),
            AlertKind::RollbackFailed => (
                format!("lkg: {app} ROLLBACK FAILED: {attempted} → {last_good}; {last_good} is not known to run"),
                Severity::Critical,
            ),
            AlertKind::InstallFailed => (format!("lkg: {app} install of {attempted} failed"), Severity::Warning),
        };
        let mut text = format!(
            "{}\n\nreason: {}\nstack: {}\nalert: {} ({})",
            self.detail, self.reason, self.stack, self.id, self.kind
        );
        if let Some(notes) = self.notes.as_deref().filter(|n| !n.trim().is_empty()) {
            text.push_str("\n\nrelease notes of ");
            text.push_str(attempted);
            text.push_str(":\n");
            text.push_str(notes.trim_end());
        }
        let json = serde_json::to_value(self).unwrap_or_default();
        Message { title, text, severity, json }
    }
}

/// A list that older files wrote as one value (or `null`): reads either.
pub(crate) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
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
    pub fn ack(&self, ids: &[String]) -> Result<Vec<String>, ReconcileError> {
        let files: Vec<(String, PathBuf)> = ids.iter().map(|id| (id.clone(), self.path(id))).collect();
        self.ack_files(&files)
    }

    /// Acknowledges the open alerts [`Alerts::list`] returned, by their files
    /// (whatever the files are named). Returns the ids moved; one acknowledged
    /// meanwhile by another process is skipped.
    pub fn ack_listed(&self, listed: &[ListedAlert]) -> Result<Vec<String>, ReconcileError> {
        let files: Vec<(String, PathBuf)> =
            listed.iter().filter(|l| !l.acked).map(|l| (l.alert.id.clone(), l.path.clone())).collect();
        self.ack_files(&files)
    }

    #[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
    fn ack_files(&self, files: &[(String, PathBuf)]) -> Result<Vec<String>, ReconcileError> {
        let acked_dir = self.dir.join("acked");
        fs_err::create_dir_all(&acked_dir).map_err(|source| state_io("create", &acked_dir, source))?;
        let mut moved = Vec::new();
        for (id, from) in files {
            let Some(name) = from.file_name() else { continue };
            let to = acked_dir.join(name);
            match std::fs::rename(from, &to) {
                Ok(()) => moved.push(id.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(state_io("move", from, source)),
            }
        }
        for dir in [&self.dir, &acked_dir] {
            fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| state_io("sync", dir, source))?;
        }
        Ok(moved)
    }
}

/// `20260529T005510Z`: UTC to the second, the form alert and run ids start
/// with, so that their file names sort by time.
pub(crate) fn compact(ts: Timestamp) -> String {
    ts.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 3339 in UTC, whole seconds: lkg-core's one form.
pub(crate) use lkg_core::rfc3339 as ts;

#[cfg(test)]
mod tests {
    use super::*;
    use lkg_core::{Clock, SystemClock};

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
    fn listed_alerts_are_acked_by_their_files_whatever_their_names() {
        let state = tempfile::tempdir().unwrap();
        let alerts = Alerts::new(state.path());
        let b = Alert::new(facts("app-b", AlertKind::Rollback), SystemClock.now_seconds());
        let c = Alert::new(facts("app-c", AlertKind::HeldMajor), SystemClock.now_seconds());
        alerts.write(&b).unwrap();
        alerts.write(&c).unwrap();
        std::fs::rename(alerts.path(&c.id), alerts.path("renamed-by-hand")).unwrap();
        let open: Vec<ListedAlert> = alerts.list(None, false).unwrap();
        assert_eq!(open.len(), 2);
        let mut acked = alerts.ack_listed(&open).unwrap();
        acked.sort();
        let mut want = vec![b.id.clone(), c.id.clone()];
        want.sort();
        assert_eq!(acked, want, "every listed alert, the renamed one too");
        assert!(alerts.list(None, false).unwrap().is_empty());
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

    #[test]
    fn old_alert_files_with_one_delivery_still_read() {
        let old = r#"{"id": "20260529T005510Z-shop-rollback-3f2a", "kind": "rollback", "app": "shop",
            "stack": "shop", "attempted": "1.2.0", "last_good": "1.1.0", "recovered": true,
            "reason": "unhealthy", "detail": "GET /health answered 503", "notes": null,
            "ts": "2026-05-29T00:55:10Z",
            "delivery": {"url": "https://alerts.example.net/hook", "delivered": true, "attempts": 1,
                         "error": null, "at": "2026-05-29T00:55:11Z"}}"#;
        let alert: Alert = serde_json::from_str(old).unwrap();
        assert_eq!(alert.deliveries.len(), 1);
        assert_eq!(alert.deliveries[0].channel, "https://alerts.example.net/hook");
        assert!(alert.deliveries[0].delivered);
        let none: Alert = serde_json::from_str(&old.replace(r#""delivery": {"#, r#""x": {"#)).unwrap();
        assert!(none.deliveries.is_empty());
        let rewritten = serde_json::to_value(&alert).unwrap();
        assert_eq!(rewritten["deliveries"][0]["channel"], "https://alerts.example.net/hook");
        assert!(rewritten.get("delivery").is_none());
    }

    #[test]
    fn messages_say_what_happened_per_kind() {
        let ts: Timestamp = "2026-05-29T00:55:10Z".parse().unwrap();
        let rollback = Alert::new(facts("shop", AlertKind::Rollback), ts);
        let m = rollback.message();
        assert_eq!(m.title, "lkg: shop rolled back 1.2.0 → 1.1.0");
        assert_eq!(m.severity, Severity::Warning);
        assert!(
            m.text.starts_with("GET /health answered 503\n\nreason: unhealthy\nstack: shop\nalert: "),
            "{}",
            m.text
        );
        assert_eq!(m.json["id"], rollback.id.as_str());
        assert!(m.json.get("deliveries").is_none());
        let failed = Alert::new(facts("shop", AlertKind::RollbackFailed), ts).message();
        assert_eq!(failed.severity, Severity::Critical);
        assert!(failed.title.contains("ROLLBACK FAILED"), "{}", failed.title);
        let mut held = facts("shop", AlertKind::HeldMajor);
        held.notes = Some("# 2.0.0\n\nThe data format changed.\n".into());
        held.attempted = "2.0.0".into();
        let held = Alert::new(held, ts).message();
        assert_eq!(held.title, "lkg: shop held at 1.1.0: 2.0.0 is a major update");
        assert!(held.text.ends_with("release notes of 2.0.0:\n# 2.0.0\n\nThe data format changed."), "{}", held.text);
        let install = Alert::new(facts("shop", AlertKind::InstallFailed), ts).message();
        assert_eq!(install.title, "lkg: shop install of 1.2.0 failed");
    }
}
