//! Servers that never answer, answer a byte at a time, or answer too much:
//! every read is bounded in time and size, and says so as an error.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lkg_registry::{Anonymous, Client, ClientOptions, Reference, RegistryError};

use crate::common::fast_retry;
use crate::servers::{response, serve};

/// A client that gives a document one second and waits one second for bytes.
fn impatient() -> Client {
    Client::new(ClientOptions {
        retry: fast_retry(),
        credentials: Arc::new(Anonymous),
        read_timeout: Duration::from_secs(1),
        document_timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_the_environment_after_the_timeout() {
    // Accepts connections, reads nothing, writes nothing, keeps them open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten().take(16) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let r: Reference = format!("{addr}/silent/app:1").parse().unwrap();
    let started = Instant::now();
    let err = impatient().get_manifest(&r).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, RegistryError::Unreachable { .. }) && err.is_environment(), "{err:?}");
    // Three attempts of one second each, and short backoffs: not a hang.
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_dripped_a_byte_at_a_time_is_given_up_on() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let whole = response(200, &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")], manifest);
                // One byte every 100 ms: each read is quick, the whole takes ~25 s.
                for byte in whole {
                    if stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
    });
    let r: Reference = format!("{addr}/drip/app:1").parse().unwrap();
    let started = Instant::now();
    let err = impatient().get_manifest(&r).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_environment(), "{err:?}");
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_larger_than_4_mib_is_refused_unread() {
    let registry = serve(|_| {
        let body = vec![b' '; (4 << 20) + 1];
        response(200, &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")], &body)
    });
    let r: Reference = format!("{registry}/big/app:1").parse().unwrap();
    let err = impatient().get_manifest(&r).await.unwrap_err();
    assert!(matches!(err, RegistryError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than 4 MiB"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_blob_larger_than_16_mib_is_refused_as_it_arrives() {
    // A config whose digest is right, but far larger than any config: a
    // registry that serves it must not make lkg hold all of it.
    let body = Arc::new(vec![b'{'; lkg_registry::MAX_SMALL_BLOB + (1 << 20)]);
    let digest = lkg_registry::Digest::sha256(&body);
    let served = Arc::clone(&body);
    let registry = serve(move |_| response(200, &[("Content-Type", "application/octet-stream")], &served));
    let r: Reference = format!("{registry}/big/app").parse().unwrap();
    let err = impatient().get_blob(&r, &digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
}
