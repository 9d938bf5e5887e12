//! The JSON and human forms `lkg-canonical` prints, as snapshots.

use std::time::Duration;

use lkg_canonical::{
    AppName, Canonicals, DomainScheme, PromotionOutcome, PromotionRequest, Run, RunKind, RunResult, Stages, Status,
    Target, table,
};

fn request<'a>(version: &str, commit: &str, run: Run, scheme: &'a DomainScheme, now: &str) -> PromotionRequest<'a> {
    PromotionRequest {
        version: version.into(),
        commit: commit.into(),
        run,
        scheme: Some(scheme),
        volumes: vec!["warm-canon-gitea_ci_example_net_data".into(), "warm-canon-gitea_ci_example_net_config".into()],
        status: Status::Warm,
        now: now.parse().unwrap(),
    }
}

const COLD: Run = Run { kind: RunKind::Cold, stages: Stages::Full, target: Target::Latest, result: RunResult::Green };

/// Gitea's canonical is 3.5.3; a green cold run on 3.6.0 advances it,
/// a quick run does not.
#[test]
#[allow(clippy::too_many_lines)] // one lifecycle told in order; its length is the snapshots
fn the_lifecycle_of_a_canonical_in_json_and_words() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    let app = AppName::new("gitea").unwrap();
    let scheme = DomainScheme::new("ci.example.net").unwrap();
    let lock = canonicals.lock(&app, "test", Duration::ZERO, |_| {}).unwrap();

    let seeded = canonicals
        .promote(&lock, &request("3.5.3+1.24.2-rootless", "5e1f0c2a9b", COLD, &scheme, "2026-06-17T08:39:30Z"))
        .unwrap();
    insta::assert_snapshot!(seeded.to_string(), @"seeded the canonical of gitea: 3.5.3+1.24.2-rootless (5e1f0c2a9b) at warm-canon-gitea.ci.example.net, warm");

    let idle = canonicals.set_status(&lock, Status::Idle, "2026-06-17T09:00:00Z".parse().unwrap()).unwrap();
    insta::assert_json_snapshot!(idle, @r#"
        {
          "schema_version": 1,
          "app": "gitea",
          "domain": "warm-canon-gitea.ci.example.net",
          "version": "3.5.3+1.24.2-rootless",
          "commit": "5e1f0c2a9b",
          "status": "idle",
          "ts": "[TS]",
          "status_since": "[TS]",
          "volumes": [
            "warm-canon-gitea_ci_example_net_data",
            "warm-canon-gitea_ci_example_net_config"
          ]
        }
    "#);
    insta::assert_snapshot!(idle.to_string(), @r#"
        gitea: idle at warm-canon-gitea.ci.example.net
          version   3.5.3+1.24.2-rootless
          commit    5e1f0c2a9b
          promoted  [TS]
          status    idle since [TS]
          volumes   warm-canon-gitea_ci_example_net_data, warm-canon-gitea_ci_example_net_config
    "#);

    let quick = Run { kind: RunKind::Quick, target: Target::Pinned, ..COLD };
    let refused = canonicals
        .promote(&lock, &request("3.6.0+1.24.2-rootless", "77aa01", quick, &scheme, "2026-06-18T00:00:00Z"))
        .unwrap();
    insta::assert_json_snapshot!(refused, @r#"
        {
          "outcome": "refused",
          "version": "3.6.0+1.24.2-rootless",
          "commit": "77aa01",
          "refusals": [
            "quick-run",
            "pinned-ref"
          ],
          "current": {
            "schema_version": 1,
            "app": "gitea",
            "domain": "warm-canon-gitea.ci.example.net",
            "version": "3.5.3+1.24.2-rootless",
            "commit": "5e1f0c2a9b",
            "status": "idle",
            "ts": "[TS]",
            "status_since": "[TS]",
            "volumes": [
              "warm-canon-gitea_ci_example_net_data",
              "warm-canon-gitea_ci_example_net_config"
            ]
          }
        }
    "#);
    insta::assert_snapshot!(refused.to_string(), @r#"
        refused: 3.6.0+1.24.2-rootless (77aa01) may not become the canonical
          - quick-run: a quick run upgrades the canonical itself in place; its data is what was tested, not a fresh known-good, so quick runs never promote
          - pinned-ref: the run tested a pinned ref, not the app's latest version; a canonical tracks the latest release
        the canonical of gitea stays at 3.5.3+1.24.2-rootless (5e1f0c2a9b)
    "#);

    let advanced = canonicals
        .promote(&lock, &request("3.6.0+1.24.2-rootless", "88bb02", COLD, &scheme, "2026-06-18T01:00:00Z"))
        .unwrap();
    assert!(matches!(advanced, PromotionOutcome::Advanced { .. }));
    insta::assert_json_snapshot!(advanced, @r#"
        {
          "outcome": "advanced",
          "previous": {
            "schema_version": 1,
            "app": "gitea",
            "domain": "warm-canon-gitea.ci.example.net",
            "version": "3.5.3+1.24.2-rootless",
            "commit": "5e1f0c2a9b",
            "status": "idle",
            "ts": "[TS]",
            "status_since": "[TS]",
            "volumes": [
              "warm-canon-gitea_ci_example_net_data",
              "warm-canon-gitea_ci_example_net_config"
            ]
          },
          "record": {
            "schema_version": 1,
            "app": "gitea",
            "domain": "warm-canon-gitea.ci.example.net",
            "version": "3.6.0+1.24.2-rootless",
            "commit": "88bb02",
            "status": "warm",
            "ts": "[TS]",
            "volumes": [
              "warm-canon-gitea_ci_example_net_data",
              "warm-canon-gitea_ci_example_net_config"
            ]
          }
        }
    "#);
    insta::assert_snapshot!(advanced.to_string(), @"advanced the canonical of gitea: 3.5.3+1.24.2-rootless (5e1f0c2a9b) -> 3.6.0+1.24.2-rootless (88bb02), warm");
}

#[test]
fn the_table_of_all_canonicals() {
    let records = vec![
        crate::child::record("gitea", "3.5.3+1.24.2-rootless", &["d"]),
        crate::child::record("mumble", "1.0.0+v1.6.870-0", &["d"]),
    ];
    insta::assert_snapshot!(table(&records), @r#"
        APP     STATUS  VERSION                COMMIT        DOMAIN
        gitea   idle    3.5.3+1.24.2-rootless  0123456789ab  warm-canon-gitea.ci.example.net
        mumble  idle    1.0.0+v1.6.870-0       0123456789ab  warm-canon-mumble.ci.example.net
    "#);
    assert_eq!(table(&[]), "no canonicals\n");
}
