use std::process::Command;

use lkg_testkit::{App, env, unique_name};

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (scripts/testenv up installs it)")
}

/// Pushes a fixture image to registry `a` with the docker CLI; returns (reference, digest).
fn push_fixture() -> (String, String) {
    let env = env();
    let local = App::new("1.0.0").import(env);
    let remote = format!("{}/{}/app:1.0.0", env.registry_a, unique_name("smoke"));
    env.docker(&["tag", &local, &remote]);
    let out = env.docker(&["push", &remote]);
    let digest = out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .to_owned();
    (remote, digest)
}

#[test]
fn pushed_image_is_read_back_by_skopeo_with_the_same_digest() {
    let (remote, digest) = push_fixture();
    let out = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{remote}")]);
    assert!(out.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["Digest"], digest.as_str());
    assert_eq!(json["Layers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn htpasswd_registry_refuses_anonymous_push_and_accepts_the_test_user() {
    let env = env();
    let (src, digest) = push_fixture();
    let dst = format!("docker://{}/{}/app:1.0.0", env.registry_auth, unique_name("smoke"));
    let src = format!("docker://{src}");

    let anonymous = skopeo(&["copy", "--src-tls-verify=false", "--dest-tls-verify=false", &src, &dst]);
    assert!(!anonymous.status.success(), "an anonymous push to the htpasswd registry succeeded");
    let stderr = String::from_utf8_lossy(&anonymous.stderr).to_lowercase();
    assert!(stderr.contains("unauthorized") || stderr.contains("authentication required"), "{stderr}");

    let creds = format!("{}:{}", env.registry_auth_user, env.registry_auth_password);
    let authed =
        skopeo(&["copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds", &creds, &src, &dst]);
    assert!(authed.status.success(), "{}", String::from_utf8_lossy(&authed.stderr));

    let read = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &dst]);
    assert!(read.status.success(), "{}", String::from_utf8_lossy(&read.stderr));
    let json: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(json["Digest"], digest.as_str());

    let anonymous_read = skopeo(&["inspect", "--tls-verify=false", &dst]);
    assert!(!anonymous_read.status.success(), "an anonymous read of the htpasswd registry succeeded");
}
