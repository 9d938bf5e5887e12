//! `lkg-registry` as the OS-image pipeline runs it, against the real
//! registries of the test environment: promotion reports and their exit
//! codes (complete, unchanged, partial and its re-run, fail closed), cosign
//! verification verdicts, and the errors a script must tell apart. Images
//! are pushed with the docker CLI and read back with skopeo, both
//! independent of lkg.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lkg_testkit::{App, env, unique_name};

use crate::common::{code, json, text};

fn registry_command(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-registry"));
    command
        .arg("--state-dir")
        .arg(state)
        .args(args)
        // No credentials from the machine: the loopback registries need none.
        .env("DOCKER_CONFIG", state.join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("COSIGN_PASSWORD")
        .stdin(Stdio::null());
    command
}

fn registry(state: &Path, args: &[&str]) -> Output {
    registry_command(state, args).output().expect("run lkg-registry")
}

fn key(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/registry").join(name).display().to_string()
}

/// `127.0.0.1:PORT/lkgt-<prefix>-<id>`: a namespace of repositories no other test uses.
fn namespace(registry: &str, prefix: &str) -> String {
    format!("{registry}/{}", unique_name(prefix))
}

/// Pushes fixture app `version` as `reference` with the docker CLI; returns its digest.
fn push(version: &str, reference: &str) -> String {
    let env = env();
    let local = App::new(version).import(env);
    env.docker(&["tag", &local, reference]);
    let out = env.docker(&["push", reference]);
    // Only the tag goes; the image stays for other tests.
    env.docker(&["rmi", reference]);
    out.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_owned()
}

/// The digest `reference` names, as skopeo reads it; `None` if it names nothing.
fn digest_of(reference: &str) -> Option<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--no-tags", &format!("docker://{reference}")])
        .output()
        .expect("skopeo is installed (scripts/testenv up installs it)");
    if !out.status.success() {
        let stderr = text(&out.stderr);
        assert!(stderr.contains("manifest unknown") || stderr.contains("name unknown"), "skopeo: {stderr}");
        return None;
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(doc["Digest"].as_str().unwrap().to_owned())
}

fn replace_all(text: &str, pairs: &[(&str, &str)]) -> String {
    pairs.iter().fold(text.to_owned(), |acc, (from, to)| acc.replace(from, to))
}

#[test]
#[allow(clippy::too_many_lines)] // one promotion told in order; its length is the snapshot
fn promotion_moves_every_tag_signs_then_reruns_unchanged_and_reverts() {
    let _guard = lkg_testkit::settings().bind_to_scope();
    let env = env();
    let ns = namespace(&env.registry_a, "regprom");
    let (image_cand, image_stable) = (format!("{ns}/kinoite-candidate:43"), format!("{ns}/kinoite:latest"));
    let (akmods_cand, akmods_stable) = (format!("{ns}/akmods-candidate:main-43"), format!("{ns}/akmods:main-43"));
    let c1 = push("1.0.0", &image_cand);
    let p1 = push("2.0.0", &image_stable);
    let c2 = push("3.0.0", &akmods_cand);
    let state = tempfile::tempdir().unwrap();
    let artifacts = [
        "--artifact".to_owned(),
        format!("{image_cand}={image_stable},stable-20260522"),
        "--artifact".to_owned(),
        format!("{akmods_cand}={akmods_stable}"),
    ];
    let promote = |extra: &[&str]| {
        let mut args = vec!["promote"];
        args.extend(artifacts.iter().map(String::as_str));
        args.extend(extra);
        registry(state.path(), &args)
    };
    let digests = [(c1.as_str(), "[CANDIDATE-1]"), (c2.as_str(), "[CANDIDATE-2]"), (p1.as_str(), "[PREVIOUS-1]")];

    let signing_key = key("signing-key.pem");
    let out = promote(&["--sign-key", &signing_key, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let report = serde_json::to_string_pretty(&json(&out)).unwrap();
    insta::assert_snapshot!(replace_all(&report, &digests), @r#"
    {
      "action": "promote",
      "state": "complete",
      "outcome": "ok",
      "resumed": false,
      "artifacts": [
        {
          "source": "127.0.0.1:[PORT]/lkgt-regprom-[ID]/kinoite-candidate:43",
          "stable": "127.0.0.1:[PORT]/lkgt-regprom-[ID]/kinoite:latest",
          "digest": "[CANDIDATE-1]",
          "previous_digest": "[PREVIOUS-1]",
          "tags_moved": [
            "latest",
            "stable-20260522"
          ],
          "tags": [
            {
              "tag": "latest",
              "previous": "[PREVIOUS-1]",
              "moved": true
            },
            {
              "tag": "stable-20260522",
              "previous": null,
              "moved": true
            }
          ],
          "referrers": [],
          "signed": true
        },
        {
          "source": "127.0.0.1:[PORT]/lkgt-regprom-[ID]/akmods-candidate:main-43",
          "stable": "127.0.0.1:[PORT]/lkgt-regprom-[ID]/akmods:main-43",
          "digest": "[CANDIDATE-2]",
          "previous_digest": null,
          "tags_moved": [
            "main-43"
          ],
          "tags": [
            {
              "tag": "main-43",
              "previous": null,
              "moved": true
            }
          ],
          "referrers": [],
          "signed": true
        }
      ],
      "bytes_uploaded": 0,
      "mismatches": [],
      "error": null,
      "notes": [],
      "journal": "[TMP]"
    }
    "#);
    // The registry agrees, read by skopeo.
    assert_eq!(digest_of(&image_stable).as_deref(), Some(c1.as_str()));
    assert_eq!(digest_of(&format!("{ns}/kinoite:stable-20260522")).as_deref(), Some(c1.as_str()));
    assert_eq!(digest_of(&akmods_stable).as_deref(), Some(c2.as_str()));
    // Signed in the stable repository, verifiable by tag.
    let out = registry(state.path(), &["verify", &image_stable, "--key", &key("signing-key.pub")]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let shown = text(&out.stdout);
    assert!(shown.starts_with(&format!("verified: {ns}/kinoite@{c1} is signed by this key\n")), "{shown}");
    // In both formats (--sign-format both, the default): cosign 3 and cosign 2 each find theirs.
    assert!(shown.contains("  bundle  1 of 1 Sigstore bundle referrer(s) verify"), "{shown}");
    assert!(shown.contains("verified (bundle v0.3, dsse-envelope)"), "{shown}");
    assert!(shown.contains("  legacy  1 of 1 signature(s) in sha256-"), "{shown}");

    // The same command again: nothing to move, exit 0, and it says so.
    let out = promote(&["--sign-key", &signing_key]);
    assert_eq!(code(&out), (Some(0), String::new()));
    insta::assert_snapshot!(replace_all(&text(&out.stdout), &digests), @r"
    promote unchanged
      127.0.0.1:[PORT]/lkgt-regprom-[ID]/kinoite-candidate:43 -> 127.0.0.1:[PORT]/lkgt-regprom-[ID]/kinoite:latest
        digest    [CANDIDATE-1]
        previous  [CANDIDATE-1]
        moved     none  (signed)
      127.0.0.1:[PORT]/lkgt-regprom-[ID]/akmods-candidate:main-43 -> 127.0.0.1:[PORT]/lkgt-regprom-[ID]/akmods:main-43
        digest    [CANDIDATE-2]
        previous  [CANDIDATE-2]
        moved     none  (signed)
      blob bytes uploaded: 0
    ");

    // --revert puts back what stable named before the promotion.
    let out = promote(&["--revert", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let reverted = json(&out);
    assert_eq!((reverted["action"].as_str(), reverted["state"].as_str()), (Some("revert"), Some("complete")));
    assert_eq!(digest_of(&image_stable).as_deref(), Some(p1.as_str()));
}

#[test]
fn verify_exits_1_on_no_signature_and_on_a_wrong_key() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let image = format!("{}/app:1", namespace(&env.registry_a, "regsig"));
    let digest = push("1.0.0", &image);
    let public = key("signing-key.pub");

    let out = registry(state.path(), &["verify", &image, "--key", &public, "--json"]);
    assert_eq!(code(&out), (Some(1), String::new()), "a verdict is a report, not an error");
    let verdict = json(&out);
    assert_eq!((verdict["verified"].as_bool(), verdict["reason"].as_str()), (Some(false), Some("no_signature")));
    let out = registry(state.path(), &["verify", &image, "--key", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("NOT verified: no signature for "), "{}", text(&out.stdout));
    // A reader that closed the pipe changes neither the verdict nor stderr, in either form.
    for json_flag in [None, Some("--json")] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut args = vec!["verify", &image, "--key", &public];
        args.extend(json_flag);
        let out = registry_command(state.path(), &args).stdout(writer).output().unwrap();
        assert_eq!(code(&out), (Some(1), String::new()), "{args:?}: a closed stdout is not an error");
    }

    let out = registry(state.path(), &["sign", &image, "--key", &key("signing-key.pem"), "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let signed = json(&out);
    assert_eq!(signed["added"], true, "{signed}");
    assert_eq!((signed["legacy"]["added"].as_bool(), signed["legacy"]["signatures"].as_u64()), (Some(true), Some(1)));
    assert_eq!(signed["bundle"]["added"], true, "{signed}");
    assert_eq!(signed["digest"], digest.as_str());
    let out = registry(state.path(), &["sign", &image, "--key", &key("signing-key.pem")]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert!(text(&out.stdout).starts_with("already signed by this key: "), "{}", text(&out.stdout));

    let out = registry(state.path(), &["verify", &image, "--key", &public, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let verdict = json(&out);
    assert_eq!(verdict["verified"], true);
    assert_eq!(verdict["legacy"]["report"]["verified"].as_array().unwrap().len(), 1, "{verdict}");
    assert_eq!(verdict["bundle"]["candidates"].as_array().unwrap().len(), 1, "{verdict}");
    assert!(verdict["bundle"]["candidates"][0]["verified"].is_object(), "{verdict}");
    let out = registry(state.path(), &["verify", &image, "--key", &key("other-key.pub"), "--json"]);
    assert_eq!(code(&out), (Some(1), String::new()));
    let verdict = json(&out);
    assert_eq!(verdict["reason"], "wrong_key");
    assert!(verdict["error"].as_str().unwrap().contains("is not signed by this key"), "{verdict}");
}

#[test]
fn a_bundle_only_signature_verifies_unless_only_legacy_is_accepted() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let image = format!("{}/app:1", namespace(&env.registry_a, "regbundle"));
    push("1.0.0", &image);
    let public = key("signing-key.pub");

    // As cosign 3 signs: a bundle referrer, no .sig tag.
    let out = registry(state.path(), &["sign", &image, "--key", &key("signing-key.pem"), "--format", "bundle"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("signed ") && shown.contains("  bundle  added: referrer sha256:"), "{shown}");
    assert!(!shown.contains("legacy"), "{shown}");

    let out = registry(state.path(), &["verify", &image, "--key", &public, "--accept", "bundle", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let verdict = json(&out);
    assert_eq!((verdict["accept"].as_str(), verdict["legacy"].is_null()), (Some("bundle"), true), "{verdict}");

    let out = registry(state.path(), &["verify", &image, "--key", &public, "--accept", "legacy"]);
    assert_eq!(code(&out), (Some(1), String::new()), "no .sig tag: legacy alone does not verify");
    assert!(text(&out.stdout).starts_with("NOT verified: no signature for "), "{}", text(&out.stdout));

    let out = registry(state.path(), &["verify", &image, "--key", &key("other-key.pub")]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("NOT verified: bundle sha256:"), "the bundle's verdict, naming it: {shown}");
    assert!(shown.contains("  bundle  0 of 1 Sigstore bundle referrer(s) verify"), "{shown}");

    let out = registry(state.path(), &["sign", &image, "--key", &key("signing-key.pem"), "--format", "nope"]);
    assert_eq!(out.status.code(), Some(2), "an unknown format is a usage error");
}

#[test]
fn attach_adds_a_referrer_that_referrers_lists() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let image = format!("{}/app:1", namespace(&env.registry_a, "regattach"));
    let digest = push("1.0.0", &image);
    let sbom = state.path().join("sbom.json");
    std::fs::write(&sbom, r#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    let sbom = sbom.display().to_string();
    let args = ["attach", &image, "--artifact-type", "application/spdx+json", "--file", &sbom];

    let mut with_note = args.to_vec();
    with_note.extend(["--annotation", "org.example.build=43", "--json"]);
    let out = registry(state.path(), &with_note);
    assert_eq!(code(&out), (Some(0), String::new()));
    let pushed = json(&out);
    assert_eq!((pushed["subject"].as_str(), pushed["via"].as_str()), (Some(digest.as_str()), Some("tag_schema")));

    let out = registry(state.path(), &["referrers", &image, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let listed = json(&out);
    let manifests = listed["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{listed}");
    assert_eq!(manifests[0]["digest"], pushed["digest"]);
    assert_eq!(manifests[0]["artifactType"], "application/spdx+json");
    assert_eq!(manifests[0]["annotations"]["org.example.build"], "43");

    let mut bad = args.to_vec();
    bad.extend(["--annotation", "no-equals-sign"]);
    let out = registry(state.path(), &bad);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("expected KEY=VALUE"), "{}", text(&out.stderr));
    let missing = state.path().join("missing.json").display().to_string();
    let out = registry(state.path(), &["attach", &image, "--artifact-type", "t/x", "--file", &missing]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("missing.json"), "the file is named: {}", text(&out.stderr));
    // An endless file, and one over the limit: refused at 64 MiB, not read to the end.
    let big = state.path().join("big.bin");
    std::fs::File::create(&big).unwrap().set_len(65 << 20).unwrap();
    for file in ["/dev/zero".to_owned(), big.display().to_string()] {
        let out = registry(state.path(), &["attach", &image, "--artifact-type", "t/x", "--file", &file]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("more than the 64 MiB"), "{file}: {}", text(&out.stderr));
    }
    let out = registry(state.path(), &["referrers", &image, "--json"]);
    assert_eq!(json(&out)["manifests"].as_array().unwrap().len(), 1, "refused attaches added nothing");
}

/// `scripts/demo images` (pin inputs, build, promote through a fault, re-run,
/// sign in both formats, verify) with this build's binaries: every step ends
/// as the story says and stable is safe.
#[cfg(feature = "inputs")]
#[test]
fn the_images_demo_tells_its_story() {
    env();
    let state = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lkg-registry")).parent().unwrap();
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo"))
        .args(["images", "--json"])
        .env("LKG_BIN_DIR", bin_dir)
        .env("LKG_STATE_DIR", state.path())
        .env("DOCKER_CONFIG", state.path().join("no-docker-config"))
        .env_remove("REGISTRY_AUTH_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", text(&out.stderr));
    assert_eq!(report["stable_safe"], true, "{report:#}");
    let steps = report["steps"].as_array().unwrap();
    for step in steps {
        assert_eq!(step["outcome"], step["expected"], "{step:#}");
    }
    let step = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name}"));
    assert_eq!(
        (step("promote through a fault")["outcome"].as_str(), step("promote through a fault")["exit"].as_i64()),
        (Some("partial"), Some(4))
    );
    let verified = step("verify stable")["detail"].as_str().unwrap();
    assert!(verified.contains("(cosign 3 bundle + legacy .sig)"), "both formats on stable: {verified}");
}

#[test]
fn a_broken_credentials_file_is_bad_input_naming_the_file() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let auth = state.path().join("auth.json");
    let image = format!("{}/{}/app:1", env.registry_auth, unique_name("regauthfile"));
    for (content, says) in [(&b"{\"auths\": {"[..], "not valid JSON"), (&b"\xff\xfe{}"[..], "not UTF-8")] {
        std::fs::write(&auth, content).unwrap();
        let out =
            registry_command(state.path(), &["inspect", &image]).env("REGISTRY_AUTH_FILE", &auth).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains(&auth.display().to_string()) && err.contains(says), "{err}");
    }
}

#[test]
fn a_missing_candidate_exits_2_and_touches_nothing() {
    let env = env();
    let ns = namespace(&env.registry_a, "regmiss");
    let stable = format!("{ns}/app:latest");
    let previous = push("2.0.0", &stable);
    let candidate = push("1.0.0", &format!("{ns}/app-candidate:43"));
    let state = tempfile::tempdir().unwrap();
    let out = registry(
        state.path(),
        &[
            "promote",
            "--artifact",
            &format!("{ns}/app-candidate:43={stable}"),
            "--artifact",
            &format!("{ns}/akmods-candidate:44={ns}/akmods:44"),
            "--json",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("candidate {ns}/akmods-candidate:44 not found")), "{stderr}");
    assert!(stderr.contains("nothing was promoted (fail closed)"), "{stderr}");
    assert!(stderr.contains("hint: stable tags were not touched"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(digest_of(&stable), Some(previous));
    assert_eq!(digest_of(&format!("{ns}/app@{candidate}")), None, "not even copied");
    let journals: Vec<PathBuf> = fs_err::read_dir(state.path().join("registry/promotions"))
        .map(|dir| dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
        .unwrap_or_default();
    assert_eq!(journals, Vec::<PathBuf>::new(), "no journal: there is nothing to finish or revert");
}

#[test]
fn a_promotion_cut_between_tag_moves_is_partial_until_a_rerun_completes_it() {
    let env = env();
    // The second artifact goes through a proxy that refuses to move its
    // stable tag: the first artifact's tag has moved by then.
    let proxy = RefusingProxy::start(&env.registry_a, "/akmods/manifests/stable");
    let unique = unique_name("regpart");
    let direct = format!("{}/{unique}", env.registry_a);
    let proxied = format!("{}/{unique}", proxy.addr);
    let c1 = push("1.0.0", &format!("{direct}/image-candidate:1"));
    let p1 = push("2.0.0", &format!("{direct}/image:stable"));
    let c2 = push("3.0.0", &format!("{direct}/akmods-candidate:1"));
    let p2 = push("2.0.0", &format!("{direct}/akmods:stable"));
    let state = tempfile::tempdir().unwrap();
    let image = format!("{direct}/image-candidate:1={direct}/image:stable");
    let akmods = format!("{proxied}/akmods-candidate:1={proxied}/akmods:stable");
    let promote = |extra: &[&str]| {
        let mut args = vec!["promote", "--artifact", &image, "--artifact", &akmods];
        args.extend(extra);
        registry(state.path(), &args)
    };

    let out = promote(&["--json"]);
    assert_eq!(code(&out), (Some(4), String::new()), "partial is a report on stdout, exit 4");
    let report = json(&out);
    assert_eq!((report["state"].as_str(), report["outcome"].as_str()), (Some("partial"), Some("partial")), "{report}");
    assert_eq!(report["artifacts"][0]["tags_moved"], serde_json::json!(["stable"]));
    assert_eq!(report["artifacts"][1]["tags_moved"], serde_json::json!([]));
    assert!(
        report["error"].as_str().is_some_and(|e| e.contains("akmods")),
        "the error names what stopped it: {report}"
    );
    // Half-promoted, exactly as the report says.
    assert_eq!(digest_of(&format!("{direct}/image:stable")), Some(c1.clone()));
    assert_eq!(digest_of(&format!("{direct}/akmods:stable")), Some(p2.clone()));

    // Still refused: the human report says what to do next.
    let out = promote(&[]);
    assert_eq!(code(&out), (Some(4), String::new()));
    let human = text(&out.stdout);
    assert!(human.starts_with("promote PARTIAL (resumed an earlier run)\n"), "{human}");
    assert!(
        human.contains("stable is half-promoted. Next: re-run this exact command to finish, or add --revert"),
        "{human}"
    );

    // The registry answers again: the same command finishes the promotion.
    proxy.refusing.store(false, Ordering::SeqCst);
    let out = promote(&["--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let report = json(&out);
    assert_eq!((report["state"].as_str(), report["resumed"].as_bool()), (Some("complete"), Some(true)), "{report}");
    assert_eq!(report["artifacts"][1]["tags_moved"], serde_json::json!(["stable"]));
    assert_eq!(report["artifacts"][0]["previous_digest"], p1.as_str(), "the journal kept what stable was");
    assert_eq!(digest_of(&format!("{direct}/image:stable")), Some(c1));
    assert_eq!(digest_of(&format!("{direct}/akmods:stable")), Some(c2));
}

#[test]
fn inspect_and_copy_across_registries() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let source = format!("{}/app:1.0.0", namespace(&env.registry_a, "regcopy"));
    let digest = push("1.0.0", &source);

    let out = registry(state.path(), &["inspect", &source, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let info = json(&out);
    assert_eq!(info["digest"], digest.as_str());
    assert_eq!(info["media_type"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(info["platforms"].as_array().unwrap().len(), 1);
    assert_eq!(info["platforms"][0]["platform"], "linux/amd64");
    assert!(info["labels"]["org.lkg.fixture.sha256"].is_string(), "{info}");
    let out = registry(state.path(), &["inspect", &source]);
    let human = text(&out.stdout);
    assert!(human.starts_with(&format!("{source}\n  digest      {digest}\n")), "{human}");
    assert!(human.contains("  platform    linux/amd64\n") && human.contains("org.lkg.fixture.sha256="), "{human}");

    let destination = format!("{}/app:copied", namespace(&env.registry_b, "regcopy"));
    let out = registry(state.path(), &["copy", &source, &destination, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let copied = json(&out);
    assert_eq!(copied["digest"], digest.as_str());
    assert!(copied["blobs_uploaded"].as_u64().unwrap() >= 2, "config and layer streamed across: {copied}");
    assert_eq!(digest_of(&destination), Some(digest.clone()), "the same digest, read by skopeo");
    // Again: everything is there, nothing is sent.
    let out = registry(state.path(), &["copy", &source, &destination]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let human = text(&out.stdout);
    assert!(human.contains("manifests  0 written, 1 already there"), "{human}");
    assert!(human.contains("0 uploaded (0 B)"), "{human}");
}

#[test]
fn bad_input_exits_2_and_an_unreachable_registry_exits_5() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let image = format!("{}/app:1", namespace(&env.registry_a, "regbad"));
    let cases: &[(&[&str], i32, &str)] = &[
        (&["inspect", "Not/A:Ref!!"], 2, "invalid image reference \"Not/A:Ref!!\""),
        (&["promote", "--artifact", "no-equals-sign"], 2, "expected CANDIDATE=STABLE[,EXTRA_TAG...]"),
        (&["promote", "--artifact", &format!("{image}={image}-stable"), "--revert"], 2, "nothing to revert"),
        (&["sign", &image, "--key", "/nonexistent/cosign.key"], 2, "cannot read key /nonexistent/cosign.key"),
        (&["copy", &image, &image, "--platform", "bogus"], 2, "invalid platform \"bogus\""),
        (&["promote"], 2, "--artifact <SPEC>"),
        (&["inspect", &format!("{image}-never-pushed")], 2, "not found"),
    ];
    for (args, expected, message) in cases {
        let out = registry(state.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*expected), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    // Nothing listens there: lkg could not ask, which is not a "no".
    let down = format!("127.0.0.1:{}", lkg_testkit::free_port());
    let out = registry(state.path(), &["inspect", &format!("{down}/app:1")]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("cannot reach the registry {down}")), "{}", text(&out.stderr));
    let out = registry(state.path(), &["promote", "--artifact", &format!("{down}/app:1={down}/app:stable")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("hint: stable tags were not touched"), "{stderr}");
}

/// Attaches an artifact of `artifact_type` to `image` (by tag) with the library.
fn attach(image: &str, artifact_type: &str, content: &str) -> String {
    let rt = lkg_registry::runtime().unwrap();
    let client = lkg_registry::Client::new(lkg_registry::ClientOptions {
        credentials: Arc::new(lkg_registry::Anonymous),
        ..lkg_registry::ClientOptions::default()
    })
    .unwrap();
    let r: lkg_registry::Reference = image.parse().unwrap();
    rt.block_on(async {
        let digest = client.resolve(&r).await.unwrap();
        let layers = [(artifact_type.to_owned(), content.as_bytes().to_vec().into())];
        let pushed = lkg_registry::referrers::attach(&client, &r, &digest, artifact_type, &layers, None).await.unwrap();
        pushed.digest.to_string()
    })
}

#[test]
fn referrers_are_listed_filtered_and_carried_by_promote_and_copy() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    let ns = namespace(&env.registry_a, "regrefs");
    let (candidate, stable) = (format!("{ns}/app-candidate:1"), format!("{ns}/app:stable"));
    let digest = push("1.0.0", &candidate);
    let sbom = attach(&candidate, "application/spdx+json", r#"{"spdxVersion":"SPDX-2.3"}"#);
    let signature = attach(&candidate, "application/vnd.dev.sigstore.bundle.v0.3+json", r#"{"mediaType":"x"}"#);

    let out = registry(state.path(), &["referrers", &candidate, "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let listed = json(&out);
    assert_eq!((listed["subject"].as_str(), listed["via"].as_str()), (Some(digest.as_str()), Some("tag_schema")));
    assert_eq!(listed["manifests"].as_array().unwrap().len(), 2, "{listed}");
    let out = registry(state.path(), &["referrers", &candidate, "--artifact-type", "application/spdx+json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let human = text(&out.stdout);
    let hex = digest.trim_start_matches("sha256:");
    assert!(human.starts_with("1 referrer(s) of "), "{human}");
    assert!(human.contains(&format!("(from the referrers tag sha256-{hex})")), "{human}");
    assert!(human.contains(&format!("  {sbom}  application/spdx+json")), "{human}");

    // --no-referrers: stable gets the image and nothing attached to it.
    let artifact = format!("{candidate}={stable}");
    let out = registry(state.path(), &["promote", "--artifact", &artifact, "--no-referrers", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let report = json(&out);
    assert_eq!(report["artifacts"][0]["referrers"].as_array().unwrap().len(), 0, "{report}");
    let out = registry(state.path(), &["referrers", &stable, "--json"]);
    assert_eq!(json(&out)["manifests"].as_array().unwrap().len(), 0);

    // The same plan with referrers (the default): nothing to move, the referrers follow.
    let out = registry(state.path(), &["promote", "--artifact", &artifact]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let human = text(&out.stdout);
    assert!(human.starts_with("promote unchanged"), "{human}");
    assert!(human.contains("referrers 2 carried"), "{human}");
    assert_eq!(report["bytes_uploaded"], 0);
    let out = registry(state.path(), &["referrers", &stable, "--json"]);
    let on_stable: Vec<String> =
        json(&out)["manifests"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap().to_owned()).collect();
    assert!(on_stable.contains(&sbom) && on_stable.contains(&signature) && on_stable.len() == 2, "{on_stable:?}");

    // Across registries, with copy --referrers.
    let mirror = format!("{}/app:1", namespace(&env.registry_b, "regrefs"));
    let out = registry(state.path(), &["copy", &candidate, &mirror, "--referrers", "--json"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    assert_eq!(json(&out)["referrers"].as_array().unwrap().len(), 2);
    let out = registry(state.path(), &["referrers", &mirror, "--json"]);
    assert_eq!(json(&out)["manifests"].as_array().unwrap().len(), 2);
    // Without --referrers, copy carries none.
    let bare = format!("{}/app:1", namespace(&env.registry_b, "regrefs"));
    let out = registry(state.path(), &["copy", &candidate, &bare, "--json"]);
    assert_eq!(json(&out)["referrers"].as_array().unwrap().len(), 0);
    let out = registry(state.path(), &["referrers", &bare, "--json"]);
    assert_eq!(json(&out)["manifests"].as_array().unwrap().len(), 0);
}

#[test]
fn help_names_the_commands_options_and_exit_codes() {
    let state = tempfile::tempdir().unwrap();
    let out = registry(state.path(), &["--help"]);
    assert_eq!(code(&out), (Some(0), String::new()));
    let help = text(&out.stdout);
    for word in [
        "inspect",
        "copy",
        "referrers",
        "promote",
        "sign",
        "verify",
        "--insecure-registry",
        "--json",
        "--state-dir",
        "Exit codes",
        "XDG_RUNTIME_DIR",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = registry(state.path(), &["promote", "--help"]);
    let help = text(&out.stdout);
    for word in [
        "--artifact",
        "--sign-key",
        "--revert",
        "--no-referrers",
        "--sign-format",
        "COSIGN_PASSWORD",
        "4 partial",
        "5 registry unreachable",
    ] {
        assert!(help.contains(word), "promote --help lacks {word}:\n{help}");
    }
    let out = registry(state.path(), &["verify", "--help"]);
    let help = text(&out.stdout);
    for word in ["exit 1 if it does not verify", "--accept", "Sigstore bundles", "sha256-<hex>.sig", "Keyless"] {
        assert!(help.contains(word), "verify --help lacks {word}:\n{help}");
    }
    let out = registry(state.path(), &["sign", "--help"]);
    let help = text(&out.stdout);
    for word in ["--format", "bundle", "legacy", "both", "cosign 3"] {
        assert!(help.contains(word), "sign --help lacks {word}:\n{help}");
    }
}

/// A loopback proxy in front of a registry that answers 503 to every `PUT`
/// whose path ends with `refuse` while `refusing` is set: a registry that
/// fails at one step of a promotion. One request per connection.
struct RefusingProxy {
    addr: String,
    refusing: Arc<AtomicBool>,
}

impl RefusingProxy {
    fn start(upstream: &str, refuse: &str) -> RefusingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let refusing = Arc::new(AtomicBool::new(true));
        let (upstream, refuse, flag) = (upstream.to_owned(), refuse.to_owned(), Arc::clone(&refusing));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, refuse, flag) = (upstream.clone(), refuse.clone(), Arc::clone(&flag));
                std::thread::spawn(move || proxy_one(client, &upstream, &refuse, &flag));
            }
        });
        RefusingProxy { addr, refusing }
    }
}

fn proxy_one(client: TcpStream, upstream: &str, refuse: &str, refusing: &AtomicBool) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == b"\r\n" {
            break;
        }
        // Every request is forwarded with `Connection: close`, so the
        // upstream's answer ends at EOF.
        if !line.to_ascii_lowercase().starts_with(b"connection:") {
            head.extend_from_slice(&line);
        }
    }
    let head_text = text(&head);
    assert!(!head_text.to_ascii_lowercase().contains("transfer-encoding"), "a chunked request: {head_text}");
    let length: usize = head_text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut request_line = head_text.split_whitespace();
    let (method, path) = (request_line.next().unwrap_or(""), request_line.next().unwrap_or(""));
    let mut client = client;
    if method == "PUT" && path.ends_with(refuse) && refusing.load(Ordering::SeqCst) {
        let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"injected outage"}]}"#;
        let head =
            format!("HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = client.write_all(head.as_bytes()).and_then(|()| client.write_all(body));
        return;
    }
    let mut up = TcpStream::connect(upstream).expect("the registry behind the proxy answers");
    up.write_all(&head).unwrap();
    up.write_all(b"Connection: close\r\n\r\n").unwrap();
    up.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = up.read_to_end(&mut answer);
    let _ = client.write_all(&answer);
}

/// A key "file" that never ends (`/dev/zero`) is refused after 64 KiB, at
/// once, instead of growing until the kernel kills lkg.
#[test]
fn an_endless_key_file_is_refused_at_once() {
    let state = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = registry(state.path(), &["verify", "127.0.0.1:9/app:1", "--key", "/dev/zero"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read key /dev/zero") && stderr.contains("larger than 64 KiB"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// A reference no registry can serve is bad input at once (exit 2), not an
/// unreachable registry after retries.
#[test]
fn impossible_references_exit_2_at_once() {
    let state = tempfile::tempdir().unwrap();
    let long = format!("127.0.0.1:5000/{}:1", "a".repeat(5000));
    for (reference, says) in [("127.0.0.1:99999/app:1", "is not a port"), (long.as_str(), "at most 255")] {
        let started = std::time::Instant::now();
        let out = registry(state.path(), &["inspect", reference]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(stderr.len() < 1_000, "the 5,000 characters are not repeated: {} bytes", stderr.len());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
