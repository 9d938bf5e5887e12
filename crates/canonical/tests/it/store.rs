//! Records on disk: atomic replacement under a crash, preserved fields,
//! malformed and future records.

use std::time::Duration;

use lkg_canonical::{
    AppName, Canonicals, DomainScheme, PromoteError, PromotionOutcome, PromotionRequest, Reserved, Run, RunKind,
    RunResult, Stages, Status, StoreError, Target,
};

use crate::child::{Part, record};

#[test]
fn a_writer_killed_between_write_and_rename_leaves_the_old_record() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("mumble").unwrap();
    let old = record("mumble", "1.0.0+v1.6.870-0", &["warm-canon-mumble_data"]);
    let lock = canonicals.lock(&app, "seed", Duration::ZERO, |_| {}).unwrap();
    canonicals.put(&lock, &old).unwrap();
    lock.release().unwrap();

    let writer = Part::start("stage", state.path(), "mumble");
    let temp = writer.expect("STAGED");
    let staged: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&temp).unwrap()).unwrap();
    assert_eq!(staged["version"], "9.9.9+crash", "the new record was fully written before the kill");
    writer.kill();

    assert_eq!(canonicals.get(&app).unwrap().unwrap(), old);
    // The next writer (under the lock) clears the dead writer's temp file.
    let lock = canonicals.lock(&app, "next", Duration::ZERO, |_| {}).unwrap();
    assert!(lock.took_over_from().is_some());
    canonicals.set_status(&lock, Status::Warm, "2026-06-18T00:00:00Z".parse().unwrap()).unwrap();
    assert!(!std::path::Path::new(&temp).exists(), "stale temp file {temp} was not removed");
    let leftovers: Vec<_> = std::fs::read_dir(canonicals.app_dir(&app))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| std::path::Path::new(n).extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn cold_green() -> Run {
    Run { kind: RunKind::Cold, stages: Stages::Full, target: Target::Latest, result: RunResult::Green }
}

#[test]
fn promotion_keeps_fields_it_does_not_know() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    std::fs::create_dir_all(canonicals.app_dir(&app)).unwrap();
    std::fs::write(
        canonicals.record_path(&app),
        r#"{"schema_version": 1, "app": "gitea", "domain": "warm-canon-gitea.ci.example.net",
            "version": "3.5.3+1.24.2-rootless", "commit": "aaaa", "status": "idle", "ts": "2026-06-17T08:39:30Z",
            "volumes": ["warm-canon-gitea_data"], "snapshot": {"sha256": "abc"}, "operator": "ana"}"#,
    )
    .unwrap();
    let scheme = DomainScheme::new("ci.example.net").unwrap();
    let lock = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap();
    let outcome = canonicals
        .promote(
            &lock,
            &PromotionRequest {
                version: "3.6.0+1.24.2-rootless".into(),
                commit: "bbbb".into(),
                run: cold_green(),
                scheme: Some(&scheme),
                volumes: vec![],
                status: Status::Warm,
                now: "2026-06-18T01:00:00Z".parse().unwrap(),
            },
        )
        .unwrap();
    assert!(matches!(outcome, PromotionOutcome::Advanced { .. }), "{outcome:?}");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(canonicals.record_path(&app)).unwrap()).unwrap();
    assert_eq!(on_disk["snapshot"], serde_json::json!({"sha256": "abc"}));
    assert_eq!(on_disk["operator"], "ana");
    assert_eq!(on_disk["version"], "3.6.0+1.24.2-rootless");
    assert_eq!(on_disk["volumes"], serde_json::json!(["warm-canon-gitea_data"]), "volumes kept when none given");
}

#[test]
fn promotion_never_moves_or_collides_a_canonical() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let keycloak = AppName::new("keycloak").unwrap();
    let live = Reserved::parse("warm-keycloak.ci.example.net=live keycloak SSO").unwrap();
    let old_scheme = DomainScheme::new("ci.example.net")
        .unwrap()
        .namespace(lkg_canonical::Namespace::new("warm").unwrap())
        .reserve(live.clone());
    let lock = canonicals.lock(&keycloak, "promote", Duration::ZERO, |_| {}).unwrap();
    let request = |scheme| PromotionRequest {
        version: "10.7.1+26.6.2".into(),
        commit: "cccc".into(),
        run: cold_green(),
        scheme: Some(scheme),
        volumes: vec!["warm-canon-keycloak_mariadb".into()],
        status: Status::Warm,
        now: "2026-06-18T01:00:00Z".parse().unwrap(),
    };
    let err = canonicals.promote(&lock, &request(&old_scheme)).unwrap_err();
    assert!(matches!(err, PromoteError::Domain(lkg_canonical::DomainError::Collision { .. })), "{err:?}");
    assert!(canonicals.get(&keycloak).unwrap().is_none(), "nothing written on a collision");

    let scheme = DomainScheme::new("ci.example.net").unwrap().reserve(live);
    let outcome = canonicals.promote(&lock, &request(&scheme)).unwrap();
    let PromotionOutcome::Seeded { record } = outcome else { panic!("{outcome:?}") };
    assert_eq!(record.domain, "warm-canon-keycloak.ci.example.net");

    let moved = DomainScheme::new("ci2.example.net").unwrap();
    let err = canonicals.promote(&lock, &request(&moved)).unwrap_err();
    assert!(
        matches!(&err, PromoteError::DomainMoved { recorded, derived, .. }
            if recorded == "warm-canon-keycloak.ci.example.net" && derived == "warm-canon-keycloak.ci2.example.net"),
        "{err:?}"
    );
}

#[test]
fn seeding_needs_a_scheme_and_volumes() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    let lock = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap();
    let scheme = DomainScheme::new("ci.example.net").unwrap();
    let mut request = PromotionRequest {
        version: "3.6.0+1.24.2-rootless".into(),
        commit: "bbbb".into(),
        run: cold_green(),
        scheme: None,
        volumes: vec!["v".into()],
        status: Status::Warm,
        now: "2026-06-18T01:00:00Z".parse().unwrap(),
    };
    assert!(matches!(canonicals.promote(&lock, &request), Err(PromoteError::NoScheme { .. })));
    request.scheme = Some(&scheme);
    request.volumes.clear();
    assert!(matches!(canonicals.promote(&lock, &request), Err(PromoteError::NoVolumes { .. })));
    assert!(canonicals.get(&app).unwrap().is_none());

    // A harness record lists no volumes: advancing it must name them.
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/canonical/harness-canonical.json"),
        canonicals.record_path(&app),
    )
    .unwrap();
    let mut legacy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(canonicals.record_path(&app)).unwrap()).unwrap();
    legacy["recipe"] = "gitea".into();
    legacy["domain"] = "warm-canon-gitea.ci.example.net".into();
    std::fs::write(canonicals.record_path(&app), legacy.to_string()).unwrap();
    assert!(matches!(canonicals.promote(&lock, &request), Err(PromoteError::NoVolumes { .. })));
    request.volumes = vec!["warm-canon-gitea_data".into()];
    assert!(matches!(canonicals.promote(&lock, &request), Ok(PromotionOutcome::Advanced { .. })));
}

#[test]
fn a_change_needs_the_apps_own_lock() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let other = canonicals.lock(&AppName::new("other").unwrap(), "x", Duration::ZERO, |_| {}).unwrap();
    let err = canonicals.put(&other, &record("gitea", "1.0.0+1", &["v"])).unwrap_err();
    assert!(matches!(err, StoreError::WrongLock { .. }), "{err:?}");
}

#[test]
fn broken_and_future_records_are_refused_with_a_way_out() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    std::fs::create_dir_all(canonicals.app_dir(&app)).unwrap();
    let path = canonicals.record_path(&app);

    std::fs::write(&path, "{\"app\": \"gitea\", ").unwrap();
    let err = canonicals.get(&app).unwrap_err();
    assert!(matches!(err, StoreError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("lkg-canonical forget gitea"), "{err}");
    let lock = canonicals.lock(&app, "forget", Duration::ZERO, |_| {}).unwrap();
    assert_eq!(canonicals.forget(&lock).unwrap(), None);
    assert!(!path.exists());

    std::fs::write(&path, r#"{"schema_version": 2, "app": "gitea"}"#).unwrap();
    let err = canonicals.get(&app).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 2, supported: 1, .. }), "{err:?}");

    let mut wrong = serde_json::to_value(record("mumble", "1.0.0+1", &["v"])).unwrap();
    wrong["schema_version"] = 1.into();
    std::fs::write(&path, wrong.to_string()).unwrap();
    assert!(matches!(canonicals.get(&app), Err(StoreError::WrongApp { .. })));
}

#[test]
fn the_harness_record_is_read_and_upgraded_on_write() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("custom-html").unwrap();
    std::fs::create_dir_all(canonicals.app_dir(&app)).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/canonical/harness-canonical.json"),
        canonicals.record_path(&app),
    )
    .unwrap();
    let record = canonicals.get(&app).unwrap().unwrap();
    assert_eq!((record.schema_version, record.version.as_str()), (0, "1.11.0+1.29.0"));
    let lock = canonicals.lock(&app, "set-status", Duration::ZERO, |_| {}).unwrap();
    canonicals.set_status(&lock, Status::Warm, "2026-06-18T00:00:00Z".parse().unwrap()).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(canonicals.record_path(&app)).unwrap()).unwrap();
    assert_eq!(on_disk["schema_version"], 1);
    assert_eq!(on_disk["app"], "custom-html");
    assert!(on_disk.get("recipe").is_none(), "`recipe` became `app`");
    assert_eq!(on_disk["status"], "warm");
}

#[test]
fn all_lists_records_by_app_and_passes_over_forgotten_ones() {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    for (app, version) in [("mumble", "1.0.0+v1.6.870-0"), ("gitea", "3.5.3+1.24.2-rootless"), ("keycloak", "1.0.0+1")]
    {
        let lock = canonicals.lock(&AppName::new(app).unwrap(), "seed", Duration::ZERO, |_| {}).unwrap();
        canonicals.put(&lock, &record(app, version, &["v"])).unwrap();
    }
    let lock = canonicals.lock(&AppName::new("keycloak").unwrap(), "forget", Duration::ZERO, |_| {}).unwrap();
    assert_eq!(canonicals.forget(&lock).unwrap().unwrap().version, "1.0.0+1");
    std::fs::create_dir_all(state.path().join("apps/Not_An_App")).unwrap();
    let apps: Vec<String> = canonicals.all().unwrap().into_iter().map(|r| r.app.to_string()).collect();
    assert_eq!(apps, ["gitea", "mumble"]);
}
