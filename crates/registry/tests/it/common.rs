//! Shared helpers: clients bound to the test environment, fixture images,
//! skopeo.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use lkg_registry::{
    Anonymous, Client, ClientOptions, CredentialSource, Digest, Manifest, Platform, Reference, RetryPolicy,
};
use lkg_testkit::{App, Env, unique_name};

use crate::random::push_random_image;

pub fn env() -> &'static Env {
    lkg_testkit::env()
}

/// Fast retries: tests inject faults and should not wait seconds for them.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { attempts: 3, initial_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(50) }
}

pub fn client() -> Client {
    client_with(Arc::new(Anonymous))
}

pub fn client_with(credentials: Arc<dyn CredentialSource>) -> Client {
    Client::new(ClientOptions { retry: fast_retry(), credentials, ..ClientOptions::default() }).unwrap()
}

/// `registry/lkgt-<prefix>-<id>/<name>:<tag>`.
pub fn reference(registry: &str, prefix: &str, name: &str, tag: &str) -> Reference {
    format!("{registry}/{}/{name}:{tag}", unique_name(prefix)).parse().unwrap()
}

pub fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

/// A small random image with labels, pushed to `r`.
pub async fn small_image(client: &Client, r: &Reference, seed: u64, labels: &[(&str, &str)]) -> Manifest {
    push_random_image(client, r, seed, &[4096, 20_000], labels, &amd64()).await.unwrap()
}

/// Pushes fixture app `version` to `dst` with the docker CLI; returns its digest.
pub fn push_fixture(version: &str, dst: &Reference) -> Digest {
    let env = env();
    let local = App::new(version).import(env);
    let remote = dst.to_string();
    env.docker(&["tag", &local, &remote]);
    let out = env.docker(&["push", &remote]);
    out.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"))
        .parse()
        .unwrap()
}

pub fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo is installed (scripts/testenv up installs it)")
}

pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let out = skopeo(args);
    assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn docker_ref(r: &Reference) -> String {
    format!("docker://{r}")
}
