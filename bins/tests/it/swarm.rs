//! `lkg-swarm` as a script runs it, against the real swarm of the test
//! environment: the `--json` documents, the human reports, and above all the
//! exit codes a CI step branches on (docs/exit-codes.md). The verdict logic
//! itself is tested in `crates/swarm`; here it is the command line's job to
//! carry it out unchanged.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lkg_testkit::{APP_HEALTHCHECK, App, Behaviour, env, unique_name};

use crate::common::{code, json, text};

fn swarm_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-swarm"));
    command.args(args).env("DOCKER_HOST", &env().docker_host).stdin(Stdio::null());
    command
}

fn swarm(args: &[&str]) -> Output {
    swarm_command(args).output().expect("run lkg-swarm")
}

fn image(version: &str, behaviour: Behaviour) -> String {
    App::new(version).behaviour(behaviour).import(env())
}

/// A stack a test deploys with `lkg-swarm`; removed with its volumes when dropped.
struct TestStack {
    name: String,
    dir: tempfile::TempDir,
}

impl TestStack {
    fn new(prefix: &str) -> TestStack {
        TestStack { name: unique_name(prefix), dir: tempfile::tempdir().expect("a temp dir for compose files") }
    }

    /// Writes `text` as `file` in the test's directory and returns its path.
    fn file(&self, file: &str, text: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write a compose file");
        path.display().to_string()
    }

    fn service(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    /// `lkg-swarm deploy --stack NAME -c FILE... ARGS` (`--timeout 90` unless
    /// ARGS give one, as in lkg-swarm's own tests: swarm's rollback of a
    /// crashing update takes about 10 s alone and four times that under the
    /// whole suite); fixture images exist only in the engine, so no registry
    /// is asked.
    fn deploy(&self, files: &[&str], args: &[&str]) -> Output {
        let mut all = vec!["deploy", "--stack", &self.name, "--resolve-image", "never"];
        if !args.contains(&"--timeout") {
            all.extend(["--timeout", "90"]);
        }
        for file in files {
            all.extend(["-c", file]);
        }
        all.extend(args);
        swarm(&all)
    }

    /// A label of a service's spec, as the docker CLI (an independent peer) reads it.
    fn spec(&self, service: &str, template: &str) -> String {
        env().docker(&["service", "inspect", "--format", template, &self.service(service)])
    }

    fn services(&self) -> String {
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        env().docker(&["service", "ls", "--filter", &label, "--format", "{{.Name}}"])
    }

    /// Replaces the stack name, which the shared redactions leave alone in
    /// `<stack>_<service>` (no word boundary before `_`).
    fn redact(&self, text: &str) -> String {
        text.replace(&self.name, "[STACK]")
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        env().remove_stack(&self.name);
    }
}

/// One fixture app service `app` with short swarm timings (1 s health checks
/// and monitor) that rolls back a failed update. `deploy_extra` goes under
/// `deploy:`, `service_extra` under the service, `top_extra` at the top level.
fn app_compose(image: &str, deploy_extra: &str, service_extra: &str, top_extra: &str) -> String {
    format!(
        r#"version: "3.8"
services:
  app:
    image: {image}
{APP_HEALTHCHECK}    stop_grace_period: 1s
{service_extra}    deploy:
{deploy_extra}      update_config:
        failure_action: rollback
        monitor: 1s
        order: stop-first
      rollback_config:
        monitor: 1s
        order: stop-first
{top_extra}"#
    )
}

#[test]
fn deploy_reports_converged_no_change_and_a_rollback_with_their_exit_codes() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let stack = TestStack::new("swcli");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), "", "", ""));

    // Created and converged: exit 0, one JSON document.
    let out = stack.deploy(&[&v1], &["--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let created = json(&out);
    assert_eq!(stack.spec("app", "{{index .Spec.Labels \"lkg.deploy-id\"}}"), created["deploy_id"].as_str().unwrap());
    insta::assert_snapshot!(stack.redact(&serde_json::to_string_pretty(&created).unwrap()), @r#"
    {
      "stack": "[STACK]",
      "deploy_id": "deploy-[ID]",
      "deployer": "docker stack deploy",
      "started_at": "[TS]",
      "verdict": "converged",
      "services": [
        {
          "service": "[STACK]_app",
          "verdict": "converged",
          "reason": "the service was created and all 1/1 tasks of this deploy's spec stayed up for one monitor period (1.0s)",
          "update_state": null,
          "update_message": null,
          "running": 1,
          "desired": 1,
          "task_errors": [],
          "decided_at": "[TS]"
        }
      ]
    }
    "#);

    // The same compose again: no_change, at once, not a wait for an update swarm never starts.
    let started = Instant::now();
    let out = stack.deploy(&[&v1], &[]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(started.elapsed() < Duration::from_secs(20), "no_change took {:?}", started.elapsed());
    let same_id = stack.spec("app", "{{index .Spec.Labels \"lkg.deploy-id\"}}");
    assert_ne!(same_id, created["deploy_id"].as_str().unwrap());
    insta::assert_snapshot!(stack.redact(&text(&out.stdout)), @r"
    stack [STACK]: no_change (deploy deploy-[ID])
      [STACK]_app: no_change - the deploy changed nothing but its deploy id; 1/1 tasks running, none replaced
    ");

    // An image that cannot start: swarm rolls the update back. `docker stack
    // deploy` exits 0 here (docker/cli#6752); lkg-swarm exits 1 and says why.
    let bad = stack.file("bad.yml", &app_compose(&image("1.0.0", Behaviour::Crash), "", "", ""));
    let out = stack.deploy(&[&bad], &[]);
    assert_eq!(code(&out), (Some(1), String::new()), "a verdict is a report, not an error");
    let report = stack.redact(&text(&out.stdout));
    assert!(report.starts_with("stack [STACK]: rolled_back (deploy deploy-"), "{report}");
    assert!(
        // swarm's reason ("update rolled back due to failure or early
        // termination of task X") is there when lkg saw `rollback_started`.
        report.contains("  [STACK]_app: rolled_back - swarm rolled the update back: "),
        "{report}"
    );
    // swarm restored the previous spec: the no_change deploy's id and image.
    assert_eq!(stack.spec("app", "{{index .Spec.Labels \"lkg.deploy-id\"}}"), same_id);
    assert_eq!(stack.spec("app", "{{.Spec.TaskTemplate.ContainerSpec.Image}}"), "lkg-fixture/app:1.0.0");

    // `status` shows what swarm left behind without waiting.
    let out = swarm(&["status", "--stack", &stack.name, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let status = json(&out);
    let app = &status["services"][0];
    assert_eq!(app["service"], stack.service("app").as_str());
    assert_eq!(app["deploy_id"], same_id.as_str());
    assert_eq!(app["image"], "lkg-fixture/app:1.0.0");
    assert_eq!(app["update"]["state"], "rollback_completed");
    let out = swarm(&["status", "--stack", &stack.name]);
    let human = stack.redact(&text(&out.stdout));
    assert!(human.starts_with("[STACK]_app  "), "{human}");
    assert!(human.contains("  rollback_completed (rollback completed)  lkg-fixture/app:1.0.0  deploy-"), "{human}");
}

#[test]
fn identity_prune_volumes_and_undeploy_from_the_command_line() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let env = env();
    let stack = TestStack::new("swid");
    let labels = format!(
        "      labels:\n        coop-cloud.{s}.recipe: discourse\n        coop-cloud.{s}.version: 1.0.0+3.5.3\n        coop-cloud.{s}.chaos-version: 7ae7b0f7+U\n",
        s = stack.name
    );
    let app =
        app_compose(&image("1.0.0", Behaviour::Healthy), &labels, "    volumes: [data:/data]\n", "volumes:\n  data:\n");
    let worker = format!(
        "  worker:\n    image: {}\n    command: [\"sleep\", \"600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{ monitor: 1s }}\n",
        env.busybox_image
    );
    let both = stack.file("both.yml", &app.replace("volumes:\n  data:\n", &format!("{worker}volumes:\n  data:\n")));
    let out = stack.deploy(&[&both], &[]);
    assert_eq!(code(&out), (Some(0), String::new()), "{}", text(&out.stdout));

    // Identity: a full commit matches the short one deployed, by prefix.
    let out = swarm(&["identity", "--stack", &stack.name, "--expect-commit", "7ae7b0f76efb1c9d2a3b4c5d", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(stack.redact(&serde_json::to_string_pretty(&json(&out)).unwrap()), @r#"
    {
      "identity": {
        "service": "[STACK]_app",
        "recipe": "discourse",
        "version": "1.0.0+3.5.3",
        "chaos_version": "7ae7b0f7+U",
        "commit": "7ae7b0f7",
        "dirty": true
      },
      "commit_check": {
        "result": "match",
        "deployed": "7ae7b0f7",
        "expected": "7ae7b0f76efb1c9d2a3b4c5d"
      }
    }
    "#);
    // Another commit: exit 1, naming both.
    let out = swarm(&["identity", "--stack", &stack.name, "--expect-commit", "eb96de94"]);
    assert_eq!(code(&out), (Some(1), String::new()));
    insta::assert_snapshot!(stack.redact(&text(&out.stdout)), @r"
    service:       [STACK]_app
    recipe:        discourse
    version:       1.0.0+3.5.3
    chaos version: 7ae7b0f7+U
    dirty:         yes (+U)
    commit:        MISMATCH: deployed 7ae7b0f7, expected eb96de94
    ");
    // A reader that closed the pipe (`| head -0`) changes neither the verdict nor stderr.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = swarm_command(&["identity", "--stack", &stack.name, "--expect-commit", "eb96de94"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(code(&out), (Some(1), String::new()), "a closed stdout is not an error");
    let out = swarm(&["identity", "--stack", &stack.name, "--service", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("stack {} has no service nope", stack.name)), "{}", text(&out.stderr));

    // Prune: the new compose drops `worker`; only it goes.
    let app_only = stack.file("app.yml", &app);
    let out = swarm(&["prune", "--stack", &stack.name, "-c", &app_only]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(stack.redact(&text(&out.stdout)), "removed [STACK]_worker\n1 removed, 1 kept\n");
    assert_eq!(stack.services(), stack.service("app"));

    let volume = stack.service("data");
    let out = swarm(&["volumes", "--stack", &stack.name]);
    assert_eq!((code(&out), text(&out.stdout)), ((Some(0), String::new()), format!("{volume}\n")));
    let out = swarm(&["volumes", "--stack", &stack.name, "--json"]);
    assert_eq!(json(&out), serde_json::json!([volume]));

    // A wait too short for swarm to stop the tasks: partial (4), and the hint says what to do.
    let out = swarm(&["undeploy", "--stack", &stack.name, "--wait", "--timeout", "0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains(&format!("stack {} was not gone after 0s", stack.name)), "{stderr}");
    assert!(stderr.contains("hint: the services are removed; re-run `lkg-swarm undeploy --wait`"), "{stderr}");
    // The re-run finishes: nothing of the stack is left but its volume.
    let out = swarm(&["undeploy", "--stack", &stack.name, "--wait", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let report = json(&out);
    assert_eq!(report["kept_volumes"], serde_json::json!([volume]));
    assert_eq!(report["left"], serde_json::json!([]));
    assert_eq!(report["waited"], true);
    let label = format!("label=com.docker.stack.namespace={}", stack.name);
    assert_eq!(env.docker(&["ps", "-aq", "--filter", &label]), "");
    assert_eq!(env.docker(&["network", "ls", "-q", "--filter", &label]), "");
    assert_eq!(env.docker(&["volume", "ls", "-q", "--filter", &label]), volume);
    let out = swarm(&["status", "--stack", &stack.name]);
    assert_eq!(stack.redact(&text(&out.stdout)), "stack [STACK] has no services\n");
}

#[test]
fn a_deployer_that_fails_after_applying_is_partial_and_a_rerun_finishes() {
    let stack = TestStack::new("swpart");
    let compose = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), "", "", ""));
    // Like an `abra app deploy` wrapper whose deploy went through but which
    // then failed: lkg's overlay is applied, so the service carries the id.
    let script = stack.file(
        "deploy.sh",
        "set -eu\nargs=\"\"\nIFS=:\nfor f in $1; do args=\"$args -c $f\"; done\nunset IFS\n\
         docker stack deploy --resolve-image never $args \"$2\" >/dev/null\n\
         echo 'lost the registry after the update' >&2\nexit 3\n",
    );
    let command = format!("sh {script} {{compose}} {{stack}}");
    let out = stack.deploy(&[&compose], &["--deploy-command", &command]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("lost the registry after the update"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "these services were already updated by this deploy: {}; re-run the deploy",
            stack.service("app")
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no verdict was reached: {}", text(&out.stdout));
    assert_eq!(stack.services(), stack.service("app"));

    let out = stack.deploy(&[&compose], &["--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let verdict = json(&out)["verdict"].as_str().unwrap().to_owned();
    assert!(verdict == "converged" || verdict == "no_change", "{verdict}");
}

#[test]
fn an_unmet_placement_is_deadline_exceeded_within_the_timeout() {
    let stack = TestStack::new("swdead");
    let placement = "      placement:\n        constraints: [node.labels.nonexistent == x]\n";
    let compose = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), placement, "", ""));
    let started = Instant::now();
    let out = stack.deploy(&[&compose], &["--timeout", "2", "--json"]);
    let took = started.elapsed();
    assert_eq!(code(&out), (Some(1), String::new()));
    let report = json(&out);
    assert_eq!(report["verdict"], "deadline_exceeded");
    let app = &report["services"][0];
    assert_eq!(app["verdict"], "deadline_exceeded");
    assert!(app["reason"].as_str().unwrap().contains("0/1 tasks running"), "{app}");
    assert!(app["task_errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("pending")), "{app}");
    // The deadline counts from the end of `docker stack deploy`; swarm itself would wait forever.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn bad_input_and_a_missing_engine_or_deployer_change_nothing() {
    let stack = TestStack::new("swbad");
    let good = stack.file("c.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), "", "", ""));
    let broken = stack.file("broken.yml", "services: [app]\n");
    let missing = stack.dir.path().join("missing.yml").display().to_string();
    let cases: &[(&[&str], i32, &str)] = &[
        // 2: bad input.
        (&["-c", &broken], 2, "is not a compose file: `services` is a list, not a mapping"),
        (&["-c", &missing], 2, "cannot read compose file"),
        (&["-c", &good, "--deploy-command", ""], 2, "--deploy-command is empty"),
        (&["-c", &good, "--env", "NOVALUE"], 2, "\"NOVALUE\" is not KEY=VALUE"),
        (&["-c", &good, "--no-such-flag"], 2, "unexpected argument '--no-such-flag'"),
        // 5: the deployer cannot be run at all.
        (&["-c", &good, "--docker", "/nonexistent/docker"], 5, "cannot run /nonexistent/docker"),
        // 1: the deployer ran and refused.
        (&["-c", &good, "--deploy-command", "false"], 1, "failed (exit status: 1)"),
    ];
    for (args, expected, message) in cases {
        let mut all = vec!["deploy", "--stack", &stack.name];
        all.extend(*args);
        let out = swarm(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*expected), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
    let out = swarm(&["deploy", "--stack", "no spaces!", "-c", &good]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid stack name \"no spaces!\""), "{}", text(&out.stderr));
    let out = swarm(&["deploy", "--stack", &stack.name, "-c", &good, "--docker", "/nonexistent/docker"]);
    assert!(text(&out.stderr).contains("\n  no service was changed"), "{}", text(&out.stderr));

    // An unreadable compose prunes nothing, and says so on stdout (exit 2).
    let out = swarm(&["prune", "--stack", &stack.name, "-c", &broken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).starts_with("removed nothing: compose file "), "{}", text(&out.stdout));

    // 5: the engine is unreachable.
    let out = swarm_command(&["deploy", "--stack", &stack.name, "-c", &good])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(stack.services(), "", "none of these deployed anything");
}

#[test]
fn help_names_the_commands_options_and_exit_codes() {
    let out = swarm(&["--help"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let help = text(&out.stdout);
    for word in ["deploy", "status", "identity", "prune", "volumes", "undeploy", "--json", "--state-dir", "exit 1"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = swarm(&["deploy", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for word in ["--stack", "--compose-file", "--prune", "--timeout", "--resolve-image", "--deploy-command", "--env"] {
        assert!(help.contains(word), "deploy --help lacks {word}:\n{help}");
    }
    let out = swarm(&["identity", "--help"]);
    assert!(text(&out.stdout).contains("--expect-commit"), "{}", text(&out.stdout));
    let out = swarm(&[]);
    assert_eq!(out.status.code(), Some(2), "no command is a usage error");
}
