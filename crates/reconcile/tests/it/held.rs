//! The safety gate on the real swarm: a held update touches nothing (same
//! tasks, no snapshot, no journal) and its alert carries the release notes,
//! to the alerts directory and to every notification channel.

use std::time::Duration;

use lkg_reconcile::{GateDecision, HoldKind, NoProgress, Outcome, UpdateRequest};
use lkg_testkit::{Behaviour, HttpReceiver};

use crate::{Service, TestApp, images};

#[tokio::test]
async fn held_updates_touch_nothing_and_their_alerts_carry_the_notes() {
    images(&[("1.0.0", Behaviour::Healthy)]);
    let app = TestApp::new("rchold").await;
    // A webhook that refuses the first POST and takes the rest.
    let receiver = HttpReceiver::start(&[500, 200]);
    let mut spec = app.spec(Service::Plain, true);
    spec.notify = vec![receiver.url("/hook")];
    let notes_dir = app.recipe().join("releaseNotes");
    std::fs::create_dir_all(&notes_dir).unwrap();
    std::fs::write(notes_dir.join("4.0.0.md"), "# 4.0.0\n\nThe data format changed; see the upgrade guide.\n").unwrap();
    std::fs::write(notes_dir.join("1.0.1.md"), "# 1.0.1\n\nManual migration required: run `app migrate` first.\n")
        .unwrap();
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    app.put_marker("known-good");
    let tasks = app.tasks();
    assert_eq!(tasks.len(), 1);
    let snapshot = app.state().join("apps").join(&app.name).join("snapshot");
    assert!(!snapshot.exists(), "a first install takes no snapshot");

    let major = app.update(&spec, "4.0.0").await;
    assert_eq!(major.outcome, Outcome::Held, "{major:#?}");
    let Some(GateDecision::Hold { kind: HoldKind::Major, reason, .. }) = &major.gate else { panic!("{major:#?}") };
    assert_eq!(reason, "1.0.0 -> 4.0.0 is a major update (major 1 -> 4)");
    assert!(major.timeline.steps.is_empty(), "a hold runs no step");

    let manual = app.update(&spec, "1.0.1").await;
    assert_eq!(manual.outcome, Outcome::Held, "{manual:#?}");
    assert!(matches!(&manual.gate, Some(GateDecision::Hold { kind: HoldKind::ManualMigration, .. })), "{manual:#?}");

    // Untouched: the same task, no snapshot, no journal, last-good as it was.
    assert_eq!(app.tasks(), tasks);
    assert!(!snapshot.exists(), "a hold takes no snapshot");
    assert!(!app.journal_exists());
    assert_eq!(manual.last_good.as_deref(), Some("1.0.0"));
    assert_eq!(app.get("/marker").body, "known-good");

    let alerts = app.alerts();
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&"held-major") && kinds.contains(&"held-manual-migration"), "{kinds:?}");
    for alert in &alerts {
        let expected_notes =
            if alert["kind"] == "held-major" { "data format changed" } else { "Manual migration required" };
        assert!(alert["notes"].as_str().unwrap().contains(expected_notes), "{alert:#}");
        assert_eq!(alert["recovered"], serde_json::Value::Null, "a hold recovers nothing: nothing was touched");
        // The webhook refused the first POST; the bounded retry delivered it.
        assert_eq!(alert["deliveries"][0]["delivered"], true, "{alert:#}");
    }
    assert_eq!(alerts.iter().map(|a| a["deliveries"][0]["attempts"].as_u64().unwrap()).sum::<u64>(), 3);
    assert_eq!(receiver.requests().len(), 3, "one refused and two delivered POSTs");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2, "each alert delivered once");
    // The generic channel POSTs the alert as it was written before sending.
    let posted = accepted.last().unwrap().json();
    assert!(alerts.iter().any(|a| a["id"] == posted["id"] && a["notes"] == posted["notes"]));
    assert!(posted.get("deliveries").is_none(), "{posted:#}");
}

#[tokio::test]
async fn an_unreachable_channel_never_hides_the_alert_file_nor_changes_the_outcome() {
    images(&[("1.0.0", Behaviour::Healthy)]);
    let app = TestApp::new("rchook").await;
    let mut spec = app.spec(Service::Plain, true);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    // Two channels: a Slack-compatible webhook that takes the alert, and
    // an ntfy server nobody runs.
    let slack = HttpReceiver::start(&[]);
    let dead = format!("ntfy://ops:NTFYPASS@127.0.0.1:{}/TOPICSECRET?scheme=http", lkg_testkit::free_port());
    spec.notify = vec![slack.url("/hooks/SLACKKEY").replacen("http://", "slack+http://", 1), dead];
    let request = UpdateRequest { target: "2.0.0".to_owned(), ..UpdateRequest::default() };
    let report =
        Box::pin(app.reconciler(&NoProgress).notify_retries(3, Duration::from_millis(10)).update(&spec, &request))
            .await
            .expect("a dead channel is no error of the run");
    assert_eq!(report.outcome, Outcome::Held, "the outcome a hold always has");
    let deliveries = &report.alert.as_ref().expect("an alert").deliveries;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!((deliveries[0].delivered, deliveries[0].attempts), (true, 1), "{deliveries:?}");
    assert_eq!((deliveries[1].delivered, deliveries[1].attempts), (false, 3), "{deliveries:?}");
    assert!(deliveries[1].error.is_some());
    let slack_text = slack.accepted()[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        slack_text.contains(&format!("*lkg: {} held at 1.0.0: 2.0.0 is a major update*", app.name)),
        "{slack_text}"
    );

    let alert = &app.alerts()[0];
    assert_eq!(alert["kind"], "held-major");
    assert_eq!(alert["deliveries"].as_array().unwrap().len(), 2, "{alert:#}");
    assert_eq!(alert["deliveries"][1]["delivered"], false);
    let shown = format!("{report:?}{alert}");
    for secret in ["NTFYPASS", "TOPICSECRET", "SLACKKEY"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}
