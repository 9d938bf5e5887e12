//! `lkg-reconcile update` and `lkg-snap` of a stateful app on the three-node
//! swarm of `scripts/testenv up --nodes 3`: the data's node is found through
//! the manager, an app that could start on an empty volume elsewhere is
//! refused before anything changes, `--pin-to-data-node` holds it there, and
//! data on a worker is snapshotted and restored there by lkg's agent, with
//! the registry on the bridge as the store. docs/multi-node.md.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lkg_testkit::{App, MultiNode, Node, free_port, http_get, http_request, multi_node, unique_name, wait_until};

use crate::common::{json, text};

/// A stateful fixture app on the multi-node swarm, removed (stack and
/// volumes on every node) on drop.
pub(crate) struct NodeApp {
    pub(crate) nodes: &'static MultiNode,
    pub(crate) name: String,
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
    pub(crate) fn new(prefix: &str) -> NodeApp {
        let nodes = multi_node();
        for version in ["1.0.0", "1.1.0"] {
            nodes.import(&App::new(version));
        }
        NodeApp { nodes, name: unique_name(prefix), port: free_port(), dir: tempfile::tempdir().unwrap() }
    }

    /// Writes lkg's compose file (the version comes in as `${LKG_VERSION_TAG}`).
    pub(crate) fn write_compose(&self, constraint: Option<&str>) {
        std::fs::write(self.compose(), compose(self.port, "lkg-fixture/app:${LKG_VERSION_TAG}", constraint)).unwrap();
    }

    /// Deploys 1.0.0 with the docker CLI (not lkg), held on `node`: the app
    /// as an operator left it, its data on that node.
    pub(crate) fn seed_on(&self, node: &Node) {
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

    pub(crate) fn compose(&self) -> PathBuf {
        self.dir.path().join("compose.yml")
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn url(&self, node: &Node, path: &str) -> String {
        format!("http://{}:{}{path}", node.addr, self.port)
    }

    /// Waits until the app answers `version` on `node`'s address.
    pub(crate) fn serving_on(&self, node: &Node, version: &str) {
        wait_until(
            &format!("{version} to answer on {}", node.name),
            Duration::from_secs(60),
            Duration::from_millis(250),
            || http_get(&self.url(node, "/version")).ok().filter(|r| r.status == 200 && r.body.trim() == version),
        );
    }

    /// `lkg-reconcile update` against the manager, health checked on `node`.
    pub(crate) fn update(&self, node: &Node, target: &str, extra: &[&str]) -> Output {
        self.update_command(node, target, "90", extra).output().expect("run lkg-reconcile")
    }

    /// The command of [`NodeApp::update`], each deploy given `deploy_timeout`
    /// seconds, its output piped: to be spawned.
    pub(crate) fn update_command(&self, node: &Node, target: &str, deploy_timeout: &str, extra: &[&str]) -> Command {
        let health = self.url(node, "/health");
        let compose = self.compose().display().to_string();
        let mut args = vec!["update", "--app", &self.name, "-c", &compose, "--target", target, "--health", &health];
        args.extend(["--health-passes", "2", "--health-interval", "0.3", "--health-deadline", "20"]);
        args.extend(["--deploy-timeout", deploy_timeout, "--resolve-image", "never", "--json"]);
        args.extend_from_slice(extra);
        let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-reconcile"));
        command
            .arg("--state-dir")
            .arg(self.state())
            .args(&args)
            .envs(self.nodes.vars())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub(crate) fn service(&self) -> String {
        format!("{}_app", self.name)
    }

    /// The service's spec version: it changes with any update lkg makes.
    pub(crate) fn spec_version(&self) -> String {
        self.nodes.docker(&["service", "inspect", &self.service(), "--format", "{{.Version.Index}}"])
    }

    pub(crate) fn marker(&self, node: &Node) -> String {
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
    app.assert_untouched(&before);

    // Pinned, but with the local store: the worker cannot reach this
    // machine's snapshots, so lkg's agent could not keep them there. Refused,
    // saying which store would do.
    let out = app.update(worker, "1.1.0", &["--last-good", "1.0.0", "--pin-to-data-node"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("is not constrained"), "{stderr}");
    assert!(stderr.contains(&format!("the data is on node {}", worker.node_id)), "{stderr}");
    assert!(stderr.contains("pass --store oci://"), "{stderr}");
    app.assert_untouched(&before);
    app.serving_on(worker, "1.0.0");
    assert_eq!(app.marker(worker), "known-good");

    // Pinned, with a registry store: lkg's agent snapshots the data on the
    // worker, and the upgrade runs there.
    let store = app.store_args();
    let mut args = vec!["--last-good", "1.0.0", "--pin-to-data-node"];
    args.extend(store.iter().map(String::as_str));
    let out = app.update(worker, "1.1.0", &args);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "upgraded", "{report:#}");
    app.serving_on(worker, "1.1.0");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&worker.node_id));
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
    app.install_with_data(manager, &with_store);

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

impl NodeApp {
    /// The registry store every node reaches, one repository per test.
    pub(crate) fn store(&self) -> String {
        format!("oci://{}/lkg/{}", self.nodes.registry, self.name)
    }

    pub(crate) fn store_args(&self) -> Vec<String> {
        vec!["--store".into(), self.store(), "--insecure-registry".into(), self.nodes.registry.clone()]
    }

    /// `lkg-snap ARGS --json` against the manager, with the registry store.
    pub(crate) fn snap(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lkg-snap"))
            .arg("--state-dir")
            .arg(self.state())
            .args(self.store_args())
            .args(args)
            .arg("--json")
            .envs(self.nodes.vars())
            .stdin(Stdio::null())
            .output()
            .expect("run lkg-snap")
    }

    pub(crate) fn volume(&self) -> String {
        format!("{}_data", self.name)
    }

    /// Removes the stack (not its volumes) and waits until none of its containers runs.
    pub(crate) fn undeploy(&self) {
        self.nodes.docker(&["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        wait_until("the stack's containers to go", Duration::from_secs(60), Duration::from_millis(250), || {
            self.nodes.nodes.iter().all(|n| n.docker(&["ps", "-q", "--filter", &label]).is_empty()).then_some(())
        });
    }

    /// Every file of the volume on `node`: type and mode, owner, size,
    /// mtime, link count, link target, and each file's SHA-256.
    pub(crate) fn listing(&self, node: &Node) -> String {
        let script = "cd /data && find . | sort | while read -r p; do stat -c '%n %f %u:%g %s %Y %h %N' \"$p\"; done \
                      && find . -type f | sort | xargs sha256sum";
        let mount = format!("{}:/data", self.volume());
        node.docker(&["run", "--rm", "-v", &mount, &self.nodes.busybox_image, "sh", "-c", script])
    }

    /// Installs 1.0.0 on `node` with lkg (`extra` options) and puts the
    /// data marker `known-good` in its volume there.
    pub(crate) fn install_with_data(&self, node: &Node, extra: &[&str]) {
        let out = self.update(node, "1.0.0", extra);
        assert_eq!(out.status.code(), Some(0), "install: {}", text(&out.stderr));
        self.serving_on(node, "1.0.0");
        let put = http_request("PUT", &self.url(node, "/marker"), Some(b"known-good")).unwrap();
        assert_eq!(put.status, 200, "{}", put.body);
    }

    /// lkg's agent jobs of this app still on the swarm.
    pub(crate) fn agent_jobs(&self) -> String {
        self.nodes.docker(&["service", "ls", "-q", "--filter", &format!("label=org.lkg.warmsnap.helper={}", self.name)])
    }
}

#[test]
fn multi_node_a_stateful_app_on_a_worker_upgrades_and_rolls_back_there_through_the_agent() {
    let app = NodeApp::new("mn-agent");
    app.nodes.import(&App::new("1.1.0").behaviour(lkg_testkit::Behaviour::Unhealthy));
    let worker = app.nodes.node(2);
    app.write_compose(Some(&worker.constraint()));
    let store = app.store_args();
    let with_store: Vec<&str> = store.iter().map(String::as_str).collect();
    app.install_with_data(worker, &with_store);

    // A healthy target: the agent snapshots the worker's volume into the
    // registry, and the upgrade runs on the worker with the data.
    let out = app.update(worker, "1.1.0", &with_store);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "upgraded", "{report:#}");
    assert!(report["notes"].to_string().contains(&format!("is on node {}", worker.node_id)), "{report:#}");
    let tags = http_get(&format!("http://{}/v2/lkg/{}/tags/list", app.nodes.registry, app.name)).unwrap();
    assert!(tags.body.contains(&format!("\"{}-last-good\"", app.name)), "{}", tags.body);
    app.serving_on(worker, "1.1.0");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&worker.node_id));
    assert_eq!(app.marker(worker), "known-good");
    assert!(app.agent_jobs().is_empty(), "the agent's jobs are removed: {}", app.agent_jobs());
    assert!(
        app.nodes.manager().docker(&["volume", "ls", "-q", "--filter", &format!("name={}", app.volume())]).is_empty()
    );

    // A broken target that writes to the data before it is found unhealthy:
    // the rollback restores the snapshot on the worker.
    let child = app.update_command(worker, "1.1.0-unhealthy", "90", &with_store).spawn().expect("run lkg-reconcile");
    wait_until("the broken target to answer", Duration::from_secs(60), Duration::from_millis(100), || {
        http_get(&app.url(worker, "/health")).ok().filter(|r| r.status == 503)
    });
    let put = http_request("PUT", &app.url(worker, "/marker"), Some(b"written-by-the-broken-target")).unwrap();
    assert_eq!(put.status, 200);
    let out = child.wait_with_output().unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(1), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["outcome"], "rolled_back", "{report:#}");
    assert_eq!(report["data_restored"], true, "{report:#}");
    app.serving_on(worker, "1.1.0");
    assert_eq!(app.marker(worker), "known-good", "the data came back from the registry, on the worker");
    assert_eq!(app.nodes.task_nodes(&app.service()), std::slice::from_ref(&worker.node_id));
    assert!(app.agent_jobs().is_empty(), "{}", app.agent_jobs());
    assert!(!app.state().join("apps").join(&app.name).join("snapshot").exists(), "nothing kept locally");
}

#[test]
fn multi_node_a_snapshot_taken_on_a_worker_is_restored_onto_another_node() {
    let app = NodeApp::new("mn-move");
    let (from, to) = (app.nodes.node(2), app.nodes.node(3));
    app.seed_on(from);
    app.undeploy();
    // Owners, modes (setuid too), a symlink, a hard link, an old mtime.
    let script = "mkdir -p /data/d/e && echo x > /data/d/f && chown 1234:5678 /data/d/f && chmod 4750 /data/d/f \
                  && ln -s ../marker /data/d/link && ln /data/d/f /data/d/hard && chmod 700 /data/d/e \
                  && touch -d @1000000000 /data/d/f && dd if=/dev/urandom of=/data/big bs=1M count=8 2>/dev/null";
    let mount = format!("{}:/data", app.volume());
    from.docker(&["run", "--rm", "-v", &mount, &app.nodes.busybox_image, "sh", "-c", script]);
    let before = app.listing(from);
    assert!(before.contains("./d/link") && before.contains("1234:5678"), "{before}");

    // The manager cannot list the worker's volumes: without a last-good to
    // take their names from, lkg asks for them.
    let out = app.snap(&["take", "--app", &app.name, "--stack", &app.name, "--node", &from.node_id]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--volume"), "{}", text(&out.stderr));
    // A volume the node does not have is refused, not snapshotted empty.
    let missing = format!("{}_nothere", app.name);
    let out =
        app.snap(&["take", "--app", &app.name, "--stack", &app.name, "--node", &from.node_id, "--volume", &missing]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("volume {missing} does not exist on this node")), "{stderr}");
    assert!(stderr.contains(&format!("lkg's agent on node {}", from.node_id)), "{stderr}");

    // A job a killed run left (it would write beside the next one) is
    // removed before the take's own starts.
    let label = format!("org.lkg.warmsnap.helper={}", app.name);
    let (constraint, leftover) = (from.constraint(), format!("{}-leftover", app.name));
    app.nodes.docker(&[
        "service",
        "create",
        "--detach",
        "--mode",
        "replicated-job",
        "--restart-condition",
        "none",
        "--label",
        &label,
        "--constraint",
        &constraint,
        "--name",
        &leftover,
        &app.nodes.busybox_image,
        "sleep",
        "600",
    ]);
    assert!(!app.agent_jobs().is_empty());
    let out = app.snap(&[
        "take",
        "--app",
        &app.name,
        "--stack",
        &app.name,
        "--node",
        &from.node_id,
        "--volume",
        &app.volume(),
    ]);
    assert!(app.agent_jobs().is_empty(), "the leftover job is gone: {}", app.agent_jobs());
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["volumes"][0]["name"], app.volume(), "{report:#}");
    assert!(report["volumes"][0]["summary"]["bytes"].as_u64().unwrap() > 8 << 20, "{report:#}");
    assert!(report["uploaded_bytes"].as_u64().unwrap() > 8 << 20, "{report:#}");
    // Unchanged: taken again on the node, nothing uploaded again (the
    // names now come from the last-known-good).
    let out = app.snap(&["take", "--app", &app.name, "--stack", &app.name, "--node", &from.node_id]);
    let again = json(&out);
    assert_eq!(out.status.code(), Some(0), "{again:#}\n{}", text(&out.stderr));
    assert_eq!(again["uploaded_bytes"], 0, "{again:#}");
    assert_eq!(again["volumes"][0]["summary"]["sha256"], report["volumes"][0]["summary"]["sha256"]);

    // Node 2 is lost: its last-known-good goes onto node 3.
    let out = app.snap(&["restore", "--app", &app.name, "--node", &to.node_id]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["volumes"][0]["existed"], false, "created on node 3: {report:#}");
    assert_eq!(app.listing(to), before, "node 3 holds exactly the data");
    let labels = to.docker(&["volume", "inspect", &app.volume(), "--format", "{{json .Labels}}"]);
    assert!(labels.contains(&format!("\"com.docker.stack.namespace\":\"{}\"", app.name)), "{labels}");

    // Restoring again over the existing volume replaces its content exactly.
    to.docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &app.nodes.busybox_image,
        "sh",
        "-c",
        "rm -rf /data/d && echo junk > /data/extra",
    ]);
    let out = app.snap(&["restore", "--app", &app.name, "--node", &to.node_id]);
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["volumes"][0]["existed"], true, "{report:#}");
    assert_eq!(app.listing(to), before, "the extra file is gone, the removed ones are back");

    // The app deployed on node 3 serves the data.
    let seed = app.dir.path().join("on-3.yml");
    std::fs::write(&seed, compose(app.port, "lkg-fixture/app:1.0.0", Some(&to.constraint()))).unwrap();
    app.nodes.docker(&["stack", "deploy", "--resolve-image", "never", "-c", &seed.display().to_string(), &app.name]);
    app.serving_on(to, "1.0.0");
    assert_eq!(app.marker(to), "known-good");
    assert!(app.agent_jobs().is_empty(), "{}", app.agent_jobs());
}
