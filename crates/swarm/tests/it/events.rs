//! The watch when the engine's event stream fails: it goes on by polling,
//! subscribes again, and still decides as fast as events allow.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lkg_swarm::{DeployRequest, ProgressEvent, Swarm, Verdict, WatchOptions};
use lkg_testkit::Behaviour;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use crate::{ROLLBACK_STOP_FIRST, TestStack, app_compose, image};

/// A unix-socket proxy in front of the engine that cuts the first `cuts`
/// connections asking for `/events`, `after` the request.
struct EventCutter {
    socket: PathBuf,
    events_requests: Arc<AtomicU32>,
    _dir: tempfile::TempDir,
}

impl EventCutter {
    fn start(engine: &Path, cuts: u32, after: Duration) -> EventCutter {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let events_requests = Arc::new(AtomicU32::new(0));
        let (engine, counter) = (engine.to_owned(), Arc::clone(&events_requests));
        tokio::spawn(async move {
            // Bounded: a test makes a few dozen connections.
            for _ in 0..10_000 {
                let Ok((client, _)) = listener.accept().await else { return };
                let (engine, counter) = (engine.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let Ok(upstream) = UnixStream::connect(&engine).await else { return };
                    relay(client, upstream, &counter, cuts, after).await;
                });
            }
        });
        EventCutter { socket, events_requests, _dir: dir }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// Copies both ways; once a request for `/events` passes and fewer than
/// `cuts` were seen before it, drops the connection `after` later.
async fn relay(client: UnixStream, upstream: UnixStream, counter: &AtomicU32, cuts: u32, after: Duration) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut upstream_read, &mut client_write).await });
    let mut cut_at: Option<tokio::time::Instant> = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let deadline = cut_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            read = client_read.read(&mut buf) => {
                let n = match read { Ok(0) | Err(_) => break, Ok(n) => n };
                let chunk = &buf[..n];
                if cut_at.is_none()
                    && chunk.starts_with(b"GET ")
                    && chunk.windows(7).any(|w| w == b"/events")
                    && counter.fetch_add(1, Ordering::SeqCst) < cuts
                {
                    cut_at = Some(tokio::time::Instant::now() + after);
                }
                if upstream_write.write_all(chunk).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    down.abort(); // dropping both halves closes the client's connection mid-stream
}

#[tokio::test]
async fn a_cut_event_stream_is_subscribed_again_and_the_verdict_still_comes_from_events() {
    let stack = TestStack::new("evcut");
    let v1 = stack.file("v1.yml", &app_compose(&image("1.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    stack.deploy(&[v1], Duration::from_secs(90)).await;

    let engine = stack.env.socket_path().expect("the test engine listens on a unix socket");
    let cutter = EventCutter::start(&engine, 1, Duration::from_millis(300));
    let swarm = Swarm::new(lkg_swarm::docker::connect_to(&cutter.host()).await.unwrap());
    // Polling alone would re-inspect only after two minutes, past the
    // deploy's 90 s deadline: a verdict well before that came from the
    // events of the second subscription.
    let poll_interval = Duration::from_secs(120);
    let v2 = stack.file("v2.yml", &app_compose(&image("2.0.0", Behaviour::Healthy), ROLLBACK_STOP_FIRST, ""));
    let request = DeployRequest { watch: WatchOptions { poll_interval }, ..DeployRequest::new(&stack.name, [v2]) }
        .timeout(Duration::from_secs(90));
    let seen = Mutex::new(Vec::new());
    let progress = |event: &ProgressEvent<'_>| match event {
        ProgressEvent::EventsUnavailable { .. } => seen.lock().unwrap().push("unavailable"),
        ProgressEvent::EventsResumed => seen.lock().unwrap().push("resumed"),
        _ => {}
    };
    let started = Instant::now();
    let report = swarm.deploy(&stack.deployer(), &request, &progress).await.unwrap();
    let took = started.elapsed();
    let seen = seen.into_inner().unwrap();

    assert_eq!(report.verdict.verdict, Verdict::Converged, "{:#?}", report.verdict);
    assert_eq!(seen, ["unavailable", "resumed"], "the cut was seen and the watch subscribed again");
    assert_eq!(cutter.events_requests.load(Ordering::SeqCst), 2, "one cut subscription, one that lasted");
    assert!(took < Duration::from_secs(60), "the verdict took {took:?}: it waited for a poll, not for events");
}
