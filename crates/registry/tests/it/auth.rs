use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use lkg_registry::copy::{CopyOptions, copy};
use lkg_registry::{Credential, Digest, DockerConfig, RegistryError, StaticCredentials};

use crate::common::{client, client_with, env, reference, small_image};
use crate::servers::{OwnRegistry, TokenServer, response, serve};

pub fn basic(registry: &str, user: &str, password: &str) -> Arc<StaticCredentials> {
    let mut m = BTreeMap::new();
    m.insert(registry.to_owned(), Credential::Basic { username: user.to_owned(), password: password.to_owned() });
    Arc::new(StaticCredentials(m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_registry_needs_the_credentials_from_a_docker_config() {
    let env = env();
    let src = reference(&env.registry_a, "basic", "src", "1");
    let m = small_image(&client(), &src, 71, &[]).await;
    let dst = reference(&env.registry_auth, "basic", "dst", "1");

    let anonymous = copy(&client(), &src, &dst, &CopyOptions::default()).await.unwrap_err();
    assert!(matches!(anonymous, RegistryError::Unauthorized { .. }), "{anonymous}");
    assert!(anonymous.is_environment());

    let wrong = copy(&client_with(basic(&env.registry_auth, "lkg", "wrong")), &src, &dst, &CopyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(wrong, RegistryError::Unauthorized { .. }), "{wrong}");
    assert!(!wrong.to_string().contains("wrong"), "a password in an error message: {wrong}");

    // Credentials as docker/podman store them, in a file like REGISTRY_AUTH_FILE.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", env.registry_auth_user, env.registry_auth_password));
    std::fs::write(&file, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, env.registry_auth)).unwrap();
    let authed = client_with(Arc::new(DockerConfig::from_files(vec![file])));
    let report = copy(&authed, &src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&m.digest));
    assert_eq!(authed.resolve(&dst).await.unwrap(), m.digest);
    assert!(!format!("{authed:?}").contains(&env.registry_auth_password), "Debug leaks the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_cover_both_repositories_of_a_mount_and_are_cached() {
    let tokens = TokenServer::start("ci-bot", "token-test-password");
    let registry = OwnRegistry::start(&format!("http://{}/token", tokens.addr));
    let client = client_with(basic(&registry.addr, "ci-bot", "token-test-password"));

    let src = reference(&registry.addr, "bearer", "src", "1");
    let m = small_image(&client, &src, 81, &[]).await;
    let dst = reference(&registry.addr, "bearer", "dst", "1");
    let report = copy(&client, &src, &dst, &CopyOptions::default()).await.unwrap();
    assert_eq!(report.digest.as_ref(), Some(&m.digest));
    assert_eq!((report.blobs_mounted, report.bytes_uploaded), (3, 0), "{report:?}");

    let asked = tokens.requests.lock().unwrap().clone();
    assert!(asked.iter().all(|r| r.authorized && r.service.as_deref() == Some("lkg-silly")), "{asked:?}");
    let push_dst = format!("repository:{}:pull,push", dst.repository());
    let pull_src = format!("repository:{}:pull", src.repository());
    assert!(
        asked.iter().any(|r| r.scopes.contains(&push_dst) && r.scopes.contains(&pull_src)),
        "no multi-scope token for the mount: {asked:?}"
    );
    // One token per scope set: pull src, push src, pull dst, push dst, mount (push dst + pull src).
    assert!(asked.len() <= 5, "tokens are not cached: {} requests: {asked:?}", asked.len());

    // A wrong password is refused by the token server, and the error never shows a token.
    let wrong = client_with(basic(&registry.addr, "ci-bot", "nope"));
    let err = wrong.resolve(&src).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    for r in tokens.requests.lock().unwrap().iter() {
        if let Some(t) = &r.token {
            assert!(!err.to_string().contains(t.as_str()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_never_carries_the_authorization() {
    let content = b"blob content behind a redirect".to_vec();
    let digest = Digest::sha256(&content);
    let seen: Arc<std::sync::Mutex<Vec<Option<String>>>> = Arc::default();
    let storage = {
        let seen = Arc::clone(&seen);
        let content = content.clone();
        serve(move |req| {
            seen.lock().unwrap().push(req.header("authorization").map(str::to_owned));
            response(200, &[], &content)
        })
    };
    let registry = serve(move |req| {
        if req.header("authorization").is_none() {
            response(401, &[("WWW-Authenticate", r#"Basic realm="redirecting""#)], b"")
        } else {
            response(307, &[("Location", &format!("http://{storage}/storage/blob"))], b"")
        }
    });
    let client = client_with(basic(&registry, "u", "secret-password"));
    let repo: lkg_registry::Reference = format!("{registry}/r/blob:1").parse().unwrap();
    let got = client.get_blob(&repo, &digest).await.unwrap();
    assert_eq!(got, content);
    assert_eq!(*seen.lock().unwrap(), vec![None], "the storage host saw the registry's Authorization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_after_retry_after() {
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let content = b"{}".to_vec();
    let digest = Digest::sha256(&content);
    let registry = {
        let calls = Arc::clone(&calls);
        serve(move |_| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                response(429, &[("Retry-After", "1")], b"slow down")
            } else {
                response(200, &[], &content)
            }
        })
    };
    let repo: lkg_registry::Reference = format!("{registry}/r/x:1").parse().unwrap();
    let start = std::time::Instant::now();
    client().get_blob(&repo, &digest).await.unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_millis(900), "Retry-After was not honoured");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
