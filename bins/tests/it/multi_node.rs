//! `lkg-reconcile update` of a stateful app on the three-node swarm of
//! `scripts/testenv up --nodes 3`: the data's node is found through the
//! manager, an app that could start on an empty volume elsewhere is refused
//! before anything changes, and `--pin-to-data-node` holds it there.
//! docs/multi-node.md.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lkg_testkit::{App, MultiNode, Node, free_port, http_get, http_request, multi_node, unique_name, wait_until};

use crate::common::{json, text};

/// A stateful fixture app on the multi-node swarm, removed (stack and
/// volumes on every node) on drop.
struct NodeApp {
    nodes: &'static MultiNode,
    name: String,
    port: u16,
    dir: tempfile::TempDir,
}

/// The app's compose file: one replica with a volume, a `mode: host` port
/// and `endpoint_mode: dnsrr` (no VIPs without `ip_vs`); `constraint`, when
/// given, is its only placement constraint.
fn compose(port: u16, image: &str, constraint: Option<&str>) -> String {
    let placement = constraint.map(|c| format!("      placement: {{constraints: [\"{c}\"]}}\n")).unwrap_or_default();
    format!(
        r#"version: "3.8"
services:
  app:
    image: {image}
    stop_grace_period: 1s
    ports: [{{target: 8080, published: {port}, protocol: tcp, mode: host}}]
    volumes: [data:/data]
    deploy:
      endpoint_mode: dnsrr
      update_config: {{order: stop-first, failure_action: rollback, monitor: 1s}}
{placement}volumes:
  data:
"#
    )
}

impl NodeApp {
    fn new(prefix: &str) -> NodeApp {
        let nodes = multi_node();
        for version in ["1.0.0", "1.1.0"] {
            nodes.import(&App::new(version));
        }
        NodeApp { nodes, name: unique_name(prefix), port: free_port(), dir: tempfile::tempdir().unwrap() }
    }

    /// Writes lkg's compose file (the version comes in as `${LKG_VERSION_TAG}`).
    fn write_compose(&self, constraint: Option<&str>) {
        std::fs::write(self.compose(), compose(self.port, "lkg-fixture/app:${LKG_VERSION_TAG}", constraint)).unwrap();
    }

    /// Deploys 1.0.0 with the docker CLI (not lkg), held on `node`: the app
    /// as an operator left it, its data on that node.
    fn seed_on(&self, node: &Node) {
        let seed = self.dir.path().join("seed.yml");
        std::fs::write(&seed, compose(self.port, "lkg-fixture/app:1.0.0", Some(&node.constraint()))).unwrap();
        self.nodes.docker(&[
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            &seed.display().to_string(),
            &self.name,
        ]);
        self.serving_on(node, "1.0.0");
        let put = http_request("PUT", &self.url(node, "/marker"), Some(b"known-good")).unwrap();
        assert_eq!(put.status, 200, "{}", put.body);
    }

    fn compose(&self) -> PathBuf {
        self.dir.path().join("compose.yml")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn url(&self, node: &Node, path: &str) -> String {
        format!("http://{}:{}{path}", node.addr, self.port)
    }

    /// Waits until the app answers `version` on `node`'s address.
    fn serving_on(&self, node: &Node, version: &str) {
        wait_until(
            &format!("{version} to answer on {}", node.name),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || http_get(&self.url(node, "/version")).ok().filter(|r| r.status == 200 && r.body.trim() == version),
        );
    }

    /// `lkg-reconcile update` against the manager, health checked on `node`.
    fn update(&self, node: &Node, target: &str, extra: &[&str]) -> Output {
        let health = self.url(node, "/health");
        let compose = self.compose().display().to_string();
        let mut args = vec![
            "update",
            "--app",
            &self.name,
            "-c",
            &compose,
            "--target",
            target,
            "--health",
            &health,
            "--health-passes",
            "2",
            "--health-interval",
            "0.3",
            "--health-deadline",
            "20",
            "--deploy-timeout",
            "90",
            "--resolve-image",
            "never",
            "--json",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_lkg-reconcile"))
            .arg("--state-dir")
            .arg(self.state())
            .args(&args)
            .envs(self.nodes.vars())
            .stdin(Stdio::null())
            .output()
            .expect("run lkg-reconcile")
    }

    fn service(&self) -> String {
        format!("{}_app", self.name)
    }

    /// The service's spec version: it changes with any update lkg makes.
    fn spec_version(&self) -> String {
        self.nodes.docker(&["service", "inspect", &self.service(), "--format", "{{.Version.Index}}"])
    }

    fn marker(&self, node: &Node) -> String {
        http_get(&self.url(node, "/marker")).expect("GET /marker").body
    }

    /// Nothing of a run is left: no journal, no snapshot, the spec as it was.
    fn assert_untouched(&self, spec_version: &str) {
        let app_state = self.state().join("apps").join(&self.name);
        assert!(!app_state.join("reconcile/journal.json").exists(), "a refused run journals nothing");
        assert!(!app_state.join("snapshot").exists(), "a refused run snapshots nothing");
        assert_eq!(self.spec_version(), spec_version, "a refused run does not touch the service");
    }
}

impl Drop for NodeApp {
    fn drop(&mut self) {
        self.nodes.remove_stack(&self.name);
    }
}

#[test]
fn multi_node_environment_has_a_manager_two_workers_and_the_fixture_images() {
    let nodes = multi_node();
    let listed = nodes.docker(&["node", "ls", "--format", "{{.ID}} {{.Status}} {{.Availability}} {{.ManagerStatus}}"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    for node in &nodes.nodes {
        let line = listed.lines().find(|l| l.starts_with(&node.node_id)).unwrap_or_else(|| panic!("{listed}"));
        assert!(line.contains("Ready Active"), "{line}");
        assert_eq!(line.contains("Leader"), node.manager, "{line}");
        assert_eq!(node.docker(&["info", "--format", "{{.Swarm.NodeID}}"]), node.node_id);
        let label =
            nodes.docker(&["node", "inspect", &node.node_id, "--format", "{{index .Spec.Labels \"lkg-test.node\"}}"]);
        assert_eq!(label, node.name);
        node.docker(&["image", "inspect", &nodes.app_image, "--format", "{{.Id}}"]);
        node.docker(&["image", "inspect", &nodes.busybox_image, "--format", "{{.Id}}"]);
    }
    // Every node reaches the registry on the bridge (it is in each daemon's
    // insecure-registries).
    let info = nodes.node(2).docker(&["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"]);
    assert!(info.contains(&nodes.registry), "{info}");
}

#[test]
fn multi_node_a_stateful_update_held_on_its_data_node_upgrades_it_there() {
    let app = NodeApp::new("mn-held");
    let manager = app.nodes.manager();
    app.write_compose(Some(&manager.constraint()));
    let out = app.update(manager, "1.0.0", &[]);
    assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
    app.serving_on(manager, "1.0.0");
    let put = http_request("PUT", &app.url(manager, "/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);

    let out = app.update(manager, "1.1.0", &[]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "upgraded", "{report:#}");
    let notes = report["notes"].to_string();
    assert!(notes.contains(&format!("is on node {}", manager.node_id)), "{notes}");
    app.serving_on(manager, "1.1.0");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&manager.node_id));
    assert_eq!(app.marker(manager), "known-good", "the data came through the update");
    // The data is on one node only: no task ran anywhere else.
    for worker in &app.nodes.nodes[1..] {
        let volumes = worker.docker(&["volume", "ls", "-q", "--filter", &format!("name={}_data", app.name)]);
        assert!(volumes.is_empty(), "{} has a copy of the volume: {volumes}", worker.name);
    }
}

#[test]
fn multi_node_an_unconstrained_stateful_update_is_refused_then_pinned_with_the_flag() {
    let app = NodeApp::new("mn-pin");
    let manager = app.nodes.manager();
    app.seed_on(manager);
    // lkg's files do not hold the service anywhere: the target could start
    // on any of the three nodes, two of which have no data.
    app.write_compose(None);
    let before = app.spec_version();

    let out = app.update(manager, "1.1.0", &["--last-good", "1.0.0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused as bad input: {stderr}");
    assert!(stderr.contains(&format!("is not constrained to its data's node {}", manager.node_id)), "{stderr}");
    assert!(stderr.contains(&format!("`node.id == {}`", manager.node_id)), "names the constraint: {stderr}");
    assert!(stderr.contains("the target's compose files"), "{stderr}");
    assert!(stderr.contains("--pin-to-data-node"), "says what to do: {stderr}");
    app.assert_untouched(&before);
    app.serving_on(manager, "1.0.0");

    let out = app.update(manager, "1.1.0", &["--last-good", "1.0.0", "--pin-to-data-node"]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "upgraded", "{report:#}");
    app.serving_on(manager, "1.1.0");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&manager.node_id));
    let constraints = app.nodes.docker(&[
        "service",
        "inspect",
        &app.service(),
        "--format",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
    ]);
    assert!(constraints.contains(&manager.constraint()), "pinned through lkg's overlay: {constraints}");
    assert_eq!(app.marker(manager), "known-good");
}

#[test]
fn multi_node_data_on_a_worker_is_refused_before_anything_changes() {
    let app = NodeApp::new("mn-worker");
    let worker = app.nodes.node(2);
    app.seed_on(worker);
    app.write_compose(None);
    let before = app.spec_version();

    let out = app.update(worker, "1.1.0", &["--last-good", "1.0.0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("is not constrained to its data's node {}", worker.node_id)), "{stderr}");
    assert!(stderr.contains(&format!("`node.id == {}`", worker.node_id)), "{stderr}");
    // lkg snapshots through the engine it talks to (the manager's): it says
    // it cannot reach the worker's volume rather than snapshot nothing.
    assert!(stderr.contains(&format!("the data is on node {}", worker.node_id)), "{stderr}");
    app.assert_untouched(&before);

    // Pinning does not make the worker's volume reachable: still refused.
    let out = app.update(worker, "1.1.0", &["--last-good", "1.0.0", "--pin-to-data-node"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("is not constrained"), "{stderr}");
    assert!(stderr.contains("snapshots and restores reach volumes only through that engine"), "{stderr}");
    app.assert_untouched(&before);
    app.serving_on(worker, "1.0.0");
    assert_eq!(app.marker(worker), "known-good");
}

#[test]
fn multi_node_a_failed_update_rolls_back_with_the_snapshot_from_the_registry_store() {
    let app = NodeApp::new("mn-store");
    app.nodes.import(&App::new("1.1.0").behaviour(lkg_testkit::Behaviour::Unhealthy));
    let manager = app.nodes.manager();
    app.write_compose(Some(&manager.constraint()));
    // The registry on the bridge, which every node reaches: where a lost
    // node's last-known-good would survive.
    let store = format!("oci://{}/lkg/{}", app.nodes.registry, app.name);
    let with_store = ["--store", store.as_str(), "--insecure-registry", app.nodes.registry.as_str()];
    let out = app.update(manager, "1.0.0", &with_store);
    assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
    app.serving_on(manager, "1.0.0");
    let put = http_request("PUT", &app.url(manager, "/marker"), Some(b"known-good")).unwrap();
    assert_eq!(put.status, 200);

    let out = app.update(manager, "1.1.0-unhealthy", &with_store);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "rolled_back", "{report:#}");
    app.serving_on(manager, "1.0.0");
    assert_eq!(app.marker(manager), "known-good", "the data came back from the registry");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&manager.node_id));
    // The snapshot is in the registry, not under the state dir.
    assert!(!app.state().join("apps").join(&app.name).join("snapshot").exists(), "nothing kept locally");
    let tags = http_get(&format!("http://{}/v2/lkg/{}/tags/list", app.nodes.registry, app.name)).unwrap();
    assert!(tags.body.contains(&format!("\"{}-last-good\"", app.name)), "{}", tags.body);
}
