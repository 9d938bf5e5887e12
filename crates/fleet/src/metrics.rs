//! Prometheus text exposition of the fleet: written atomically after every
//! round (`--metrics-file`, for `node_exporter`'s textfile collector) and
//! served by `watch --listen` at `/metrics`.

use std::fmt::Write as _;

use crate::file::Fleet;
use crate::state::FleetState;

/// Every state an app can be in after a round, as `lkg_fleet_app_state` labels them.
pub const STATES: &[&str] = &[
    "up_to_date",
    "installed",
    "upgraded",
    "waiting",
    "held",
    "rolled_back",
    "rollback_failed",
    "install_failed",
    "failed",
    "locked",
    "skipped",
];

/// The metrics of `fleet` from its recorded `state`; `running` gives each
/// app's last-good version.
pub fn render(fleet: &Fleet, state: &FleetState, running: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let apps: Vec<(&str, Option<&crate::state::AppRecord>)> =
        fleet.apps.iter().map(|a| (a.name.as_str(), state.apps.get(a.name.as_str()))).collect();
    family(
        "lkg_fleet_app_info",
        "gauge",
        "Each app's running (last-good) and newest available version.",
        apps.iter()
            .map(|(app, record)| {
                let running = running(app).unwrap_or_default();
                let newest = record.and_then(|r| r.newest.clone()).unwrap_or_default();
                (labels(&[("app", app), ("running", &running), ("newest", &newest)]), "1".to_owned())
            })
            .collect(),
    );
    family(
        "lkg_fleet_app_state",
        "gauge",
        "1 for the state the last round left each app in, 0 for the others.",
        apps.iter()
            .flat_map(|(app, record)| {
                let current = record.and_then(|r| r.last_state.clone()).unwrap_or_default();
                STATES.iter().map(move |s| {
                    (labels(&[("app", app), ("state", s)]), if *s == current { "1" } else { "0" }.to_owned())
                })
            })
            .collect(),
    );
    family(
        "lkg_fleet_app_last_success_timestamp_seconds",
        "gauge",
        "When a round last upgraded or installed each app (Unix time; absent if never).",
        apps.iter()
            .filter_map(|(app, record)| {
                let at = (*record)?.last_success?;
                Some((labels(&[("app", app)]), at.as_second().to_string()))
            })
            .collect(),
    );
    for (name, help, get) in [
        (
            "lkg_fleet_app_updates_total",
            "Updates and installs that succeeded.",
            (|r: &crate::state::AppRecord| r.updates) as fn(&crate::state::AppRecord) -> u64,
        ),
        ("lkg_fleet_app_rollbacks_total", "Updates that rolled back or failed.", |r| r.rollbacks),
        ("lkg_fleet_app_holds_total", "Versions the safety gate held.", |r| r.holds),
    ] {
        family(
            name,
            "counter",
            help,
            apps.iter().map(|(app, record)| (labels(&[("app", app)]), record.map_or(0, get).to_string())).collect(),
        );
    }
    if let Some(round) = &state.last_round {
        family(
            "lkg_fleet_round_duration_seconds",
            "gauge",
            "How long the last round took.",
            vec![(String::new(), format!("{}.{:03}", round.duration_ms / 1000, round.duration_ms % 1000))],
        );
        family(
            "lkg_fleet_last_round_timestamp_seconds",
            "gauge",
            "When the last round started (Unix time).",
            vec![(String::new(), round.started.as_second().to_string())],
        );
        family(
            "lkg_fleet_last_round_ok",
            "gauge",
            "1 if the last round's outcome was ok, else 0.",
            vec![(String::new(), if round.outcome == "ok" { "1" } else { "0" }.to_owned())],
        );
    }
    out
}

/// `{a="x",b="y"}` with the exposition format's escapes.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("app", "a\"b\\c\nd")]), r#"{app="a\"b\\c\nd"}"#);
    }
}
