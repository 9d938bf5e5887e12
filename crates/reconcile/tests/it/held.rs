//! The safety gate on the real swarm: a held update touches nothing (same
//! tasks, no snapshot, no journal) and its alert carries the release notes,
//! to the alerts directory and to a webhook.

use std::sync::{Arc, Mutex};

use lkg_reconcile::{GateDecision, HoldKind, Outcome};
use lkg_testkit::Behaviour;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Service, TestApp, images};

/// A loopback webhook: answers 500 to the first POST, 200 afterwards, and
/// keeps every body.
async fn webhook() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    tokio::spawn(async move {
        let mut answered = 0;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // Read the head, then as many body bytes as Content-Length says.
            let body = loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body.to_owned());
                    }
                }
            };
            let status = if answered == 0 { "500 Internal Server Error" } else { "200 OK" };
            answered += 1;
            if let Some(body) = body {
                seen.lock().unwrap().push(body);
            }
            let _ = socket
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .await;
        }
    });
    (url, bodies)
}

#[tokio::test]
async fn held_updates_touch_nothing_and_their_alerts_carry_the_notes() {
    images(&[("1.0.0", Behaviour::Healthy)]);
    let app = TestApp::new("rchold").await;
    let (hook, received) = webhook().await;
    let mut spec = app.spec(Service::Plain, true);
    spec.webhook = Some(hook);
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
        assert_eq!(alert["delivery"]["delivered"], true, "{alert:#}");
    }
    assert_eq!(alerts.iter().map(|a| a["delivery"]["attempts"].as_u64().unwrap()).sum::<u64>(), 3);
    let bodies = received.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "one refused and two delivered POSTs");
    let posted: serde_json::Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
    assert!(alerts.iter().any(|a| a["id"] == posted["id"] && a["notes"] == posted["notes"]));
}

#[tokio::test]
async fn an_unreachable_webhook_never_hides_the_alert_file() {
    images(&[("1.0.0", Behaviour::Healthy)]);
    let app = TestApp::new("rchook").await;
    let mut spec = app.spec(Service::Plain, true);
    assert_eq!(app.update(&spec, "1.0.0").await.outcome, Outcome::Installed);
    spec.webhook = Some(format!("http://127.0.0.1:{}/nobody", lkg_testkit::free_port()));
    let report = app.update(&spec, "2.0.0").await;
    assert_eq!(report.outcome, Outcome::Held);
    let delivery = report.alert.as_ref().and_then(|a| a.delivery.clone()).expect("a delivery was tried");
    assert_eq!((delivery.delivered, delivery.attempts), (false, 3));
    let alert = &app.alerts()[0];
    assert_eq!(alert["kind"], "held-major");
    assert_eq!(alert["delivery"]["delivered"], false);
}
