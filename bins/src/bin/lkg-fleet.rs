//! `lkg-fleet`: keep every app of a fleet on its newest safe version, by itself.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary prints
#![allow(clippy::doc_markdown)] // doc comments are the --help text, where backticks would show

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_fleet::{AppRound, AppState, Fleet, FleetError, FleetEvent, FleetState, Fleeter, RoundOutcome, RoundReport};
use lkg_warmsnap::remote::Agent;
use lkg_warmsnap::{AnyStore, StoreArgs};

/// Keep every app of a fleet on its newest safe version, by itself.
///
/// Reads a fleet file (fleet.yml, docs/fleet.md): each app with what
/// lkg-reconcile update needs, where its new versions come from (its recipe's
/// git tags, an image repository's tags, or the digest a floating tag such
/// as latest points to: source: {registry: REPO, floating: latest}, deployed
/// pinned as REPO@${LKG_DIGEST}, each new digest an update the source opted
/// into) and a policy (allow patch or minor; a major always goes to the
/// safety gate, which holds it; cooldown; skip versions that rolled back;
/// maintenance windows; `after` for order).
///
/// plan: what each app runs, what is available, what a round would do and
/// why; touches nothing. run: one round — discover, decide, then for each
/// app in order lkg-reconcile's update (safety gate, snapshot, health gate,
/// rollback with the data) under the app's lock; an app whose lock another
/// process holds is left alone; a run killed earlier is finished first.
/// watch: rounds forever; SIGTERM/SIGINT let the app being updated finish,
/// then exit 0. status: the fleet at a glance, from recorded state. retry:
/// forget an app's rolled-back and held versions.
///
/// Exit codes (run, and each round of watch when it exits): 0 every app up
/// to date, updated or waiting for its time; 1 an update rolled back or
/// failed; 2 bad input (fleet file, flags; nothing touched); 3 only holds;
/// 4 partial (an app locked by another process, or skipped because its
/// dependency failed or is held); 5 environment (engine, registry, state).
#[derive(Parser)]
#[command(name = "lkg-fleet", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// Where stateful apps' snapshots go (every app of the fleet).
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a round would do for each app, and why; touches nothing.
    Plan {
        /// The fleet file.
        #[arg(short = 'f', long = "file", value_name = "FLEET.YML", env = "LKG_FLEET_FILE")]
        file: PathBuf,
    },
    /// Run one round: discover, decide, update each app in order.
    Run {
        /// The fleet file.
        #[arg(short = 'f', long = "file", value_name = "FLEET.YML", env = "LKG_FLEET_FILE")]
        file: PathBuf,
        /// Write Prometheus metrics here after the round (atomically; for
        /// node_exporter's textfile collector).
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
    },
    /// Run rounds forever, INTERVAL apart (from the end of one to the start
    /// of the next).
    Watch {
        /// The fleet file (re-read before every round: a bad edit skips the
        /// round with an error, the previous file is not used).
        #[arg(short = 'f', long = "file", value_name = "FLEET.YML", env = "LKG_FLEET_FILE")]
        file: PathBuf,
        /// Time between rounds: 90s, 30m, 1h, 1d.
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        interval: String,
        /// Write Prometheus metrics here after every round.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// Serve /metrics and /healthz on this address (e.g. 127.0.0.1:9817).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Stop after N rounds (0: never).
        #[arg(long, value_name = "N", default_value_t = 0)]
        rounds: u64,
    },
    /// The fleet at a glance: running, last-good, newest, state, last round.
    Status {
        /// The fleet file.
        #[arg(short = 'f', long = "file", value_name = "FLEET.YML", env = "LKG_FLEET_FILE")]
        file: PathBuf,
    },
    /// Forget APP's versions that rolled back or were held: the next round
    /// tries its newest version again.
    Retry {
        /// The fleet file.
        #[arg(short = 'f', long = "file", value_name = "FLEET.YML", env = "LKG_FLEET_FILE")]
        file: PathBuf,
        /// The app.
        app: String,
    },
}

fn main() -> std::process::ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        let out = Output::new(cli.common.json);
        let state = cli.common.state_dir()?;
        lkg_cli::block_on(run(cli.command, &state, &cli.store, out))?
    })
}

async fn run(command: Command, state: &Path, store: &StoreArgs, out: Output) -> Result<Exit, Failure> {
    let observer = Observer { progress: Mutex::new(Progress::stderr()) };
    match command {
        Command::Plan { file } => {
            let fleet = load(&file)?;
            let plan = Fleeter::new(state, &observer).plan(&fleet).await.map_err(|e| Failure::of(&e))?;
            observer.clear();
            out.emit(&serde_json::json!({"apps": plan}), |w| print_apps(w, &plan, true))?;
            Ok(if plan.iter().any(|a| a.state == AppState::Failed) { Exit::Environment } else { Exit::Ok })
        }
        Command::Run { file, metrics_file } => {
            let fleet = load(&file)?;
            let agent = store.agent();
            let store = store.open(state).map_err(|e| Failure::of(&e))?;
            let platform = lkg_reconcile::SwarmPlatform::connect(state)
                .await
                .map_err(|e| Failure::of(&e))?
                .with_store(store)
                .with_agent(agent);
            let report =
                Box::pin(Fleeter::new(state, &observer).round(&fleet, &platform)).await.map_err(|e| Failure::of(&e))?;
            observer.clear();
            if let Some(path) = &metrics_file {
                write_metrics(path, &fleet, state)?;
            }
            print_round(&report, out)?;
            Ok(exit_of(report.outcome))
        }
        Command::Watch { file, interval, metrics_file, listen, rounds } => {
            let interval = lkg_fleet::parse_duration(&interval)
                .map_err(|e| Failure::new(Exit::Usage, format!("--interval: {e}")))?;
            let at = (store.open(state).map_err(|e| Failure::of(&e))?, store.agent());
            watch(&file, state, &at, interval, metrics_file.as_deref(), listen.as_deref(), rounds, &observer, out).await
        }
        Command::Status { file } => {
            let fleet = load(&file)?;
            status(&fleet, state, out)
        }
        Command::Retry { file, app } => {
            let fleet = load(&file)?;
            if fleet.app(&app).is_none() {
                return Err(Failure::new(
                    Exit::Usage,
                    format!("{:?} is not an app of {}", lkg_core::clip(&app), file.display()),
                ));
            }
            let (rolled_back, held) = lkg_fleet::retry(state, &app).map_err(|e| Failure::of(&e))?;
            out.emit(&serde_json::json!({"app": app, "forgot_rolled_back": rolled_back, "forgot_held": held}), |w| {
                if rolled_back.is_empty() && held.is_empty() {
                    writeln!(w, "app {app}: no rolled-back or held version to forget")
                } else {
                    writeln!(
                        w,
                        "app {app}: the next round may try again: {}",
                        rolled_back.iter().chain(&held).cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            })?;
            Ok(Exit::Ok)
        }
    }
}

fn load(file: &Path) -> Result<Fleet, Failure> {
    Fleet::load(file).map_err(|e| Failure::of(&e))
}

fn exit_of(outcome: RoundOutcome) -> Exit {
    match outcome {
        RoundOutcome::Ok => Exit::Ok,
        RoundOutcome::Failed => Exit::Failed,
        RoundOutcome::Held => Exit::Held,
        RoundOutcome::Partial => Exit::Partial,
        RoundOutcome::Environment => Exit::Environment,
    }
}

#[allow(clippy::too_many_arguments, reason = "the flags of watch, passed through")]
async fn watch(
    file: &Path,
    state: &Path,
    (store, agent): &(AnyStore, Agent),
    interval: Duration,
    metrics_file: Option<&Path>,
    listen: Option<&str>,
    rounds: u64,
    observer: &Observer,
    out: Output,
) -> Result<Exit, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let woken = Arc::new(tokio::sync::Notify::new());
    {
        let (stop, woken) = (Arc::clone(&stop), Arc::clone(&woken));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Failure::new(Exit::Environment, format!("cannot handle SIGTERM: {e}")))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            eprintln!("lkg-fleet: stopping: the app being updated finishes, no other starts");
            stop.store(true, Ordering::SeqCst);
            woken.notify_waiters();
        });
    }
    // What the last rounds recorded, served until this process's first round ends.
    let initial = Fleet::load(file).map(|fleet| metrics_text(&fleet, state)).unwrap_or_default();
    let served = Arc::new(Mutex::new(initial));
    if let Some(addr) = listen {
        serve(addr, Arc::clone(&served)).await?;
    }
    // The platform connects once; a round that cannot reach the engine reports it and the next tries again.
    let mut last = Exit::Ok;
    let mut done = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match Fleet::load(file) {
            Err(e) => {
                let failure = Failure::of(&e);
                eprintln!("lkg-fleet: round skipped: {}", lkg_core::render_chain(&e));
                last = failure.exit();
            }
            Ok(fleet) => {
                match lkg_reconcile::SwarmPlatform::connect(state)
                    .await
                    .map(|p| p.with_store(store.clone()).with_agent(agent.clone()))
                {
                    Err(e) => {
                        eprintln!("lkg-fleet: round skipped: {}", lkg_core::render_chain(&e));
                        last = Exit::Environment;
                    }
                    Ok(platform) => {
                        let fleeter = Fleeter::new(state, observer).stop_flag(&stop);
                        match Box::pin(fleeter.round(&fleet, &platform)).await {
                            Ok(report) => {
                                observer.clear();
                                print_round(&report, out)?;
                                last = exit_of(report.outcome);
                            }
                            Err(e) => {
                                observer.clear();
                                eprintln!("lkg-fleet: round failed: {}", lkg_core::render_chain(&e));
                                last = Failure::of(&e).exit();
                            }
                        }
                        if let Some(path) = metrics_file {
                            write_metrics(path, &fleet, state)?;
                        }
                        *served.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = metrics_text(&fleet, state);
                    }
                }
            }
        }
        done += 1;
        if rounds > 0 && done >= rounds || stop.load(Ordering::SeqCst) {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = woken.notified() => {}
        }
    }
    // Stopped by a signal: a clean exit.
    Ok(if stop.load(Ordering::SeqCst) { Exit::Ok } else { last })
}

fn metrics_text(fleet: &Fleet, state: &Path) -> String {
    let recorded = FleetState::load(state).unwrap_or_default();
    let running = |app: &str| -> Option<String> {
        let name = lkg_reconcile::AppName::new(app).ok()?;
        lkg_reconcile::app_status(state, &name).ok()?.last_good.map(|l| l.version)
    };
    lkg_fleet::metrics::render(fleet, &recorded, &running)
}

fn write_metrics(path: &Path, fleet: &Fleet, state: &Path) -> Result<(), Failure> {
    let text = metrics_text(fleet, state);
    lkg_core::state_file::write(path, text.as_bytes()).map_err(|e| Failure::of(&e))
}

/// Serves `/metrics` and `/healthz` on `addr` until the process ends.
async fn serve(addr: &str, metrics: Arc<Mutex<String>>) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Failure::of(&FleetError::Listen { addr: addr.to_owned(), source }))?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // The whole request head (a client may send it in pieces: answering
                // and closing after the first one resets its connection), at most
                // 8 KiB, within 5 s.
                let mut buf = Vec::with_capacity(1024);
                let read_head = async {
                    let mut chunk = [0u8; 1024];
                    while buf.len() < 8192 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                };
                if tokio::time::timeout(Duration::from_secs(5), read_head).await.is_err() || buf.is_empty() {
                    return;
                }
                let request = String::from_utf8_lossy(&buf);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, kind, body) = match path {
                    "/metrics" => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
                    ),
                    "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
                    _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

fn print_round(report: &RoundReport, out: Output) -> Result<(), Failure> {
    out.emit(report, |w| {
        print_apps(w, &report.apps, false)?;
        writeln!(w, "round: {} in {}", report.outcome.as_str(), seconds(report.duration_ms))
    })
}

fn print_apps(w: &mut dyn Write, apps: &[AppRound], plan: bool) -> std::io::Result<()> {
    for a in apps {
        let running = a.running.as_deref().map_or_else(|| "-".to_owned(), lkg_reconcile::short_version);
        let newest = a.newest.as_deref().map_or_else(|| "-".to_owned(), lkg_reconcile::short_version);
        let what = match (&a.decision, plan) {
            (Some(d), true) if d.acts() => format!("would {}", describe(d)),
            _ => a.state.as_str().replace('_', " "),
        };
        write!(w, "{:<20} {what:<28} running {running:<14} newest {newest}", a.app)?;
        match &a.reason {
            Some(reason) => writeln!(w, "\n{:<20} {}", "", lkg_core::clip(reason))?,
            None => writeln!(w)?,
        }
    }
    Ok(())
}

fn describe(decision: &lkg_fleet::Decision) -> String {
    match decision {
        lkg_fleet::Decision::Install { target } => format!("install {}", lkg_reconcile::short_version(target)),
        lkg_fleet::Decision::Update { target, level } => {
            format!("update to {} ({level})", lkg_reconcile::short_version(target))
        }
        other => format!("{other:?}"),
    }
}

fn status(fleet: &Fleet, state: &Path, out: Output) -> Result<Exit, Failure> {
    let recorded = FleetState::load(state).map_err(|e| Failure::of(&e))?;
    let mut rows = Vec::new();
    for app in &fleet.apps {
        let status = lkg_reconcile::app_status(state, &app.name).map_err(|e| Failure::of(&e))?;
        let record = recorded.apps.get(app.name.as_str()).cloned().unwrap_or_default();
        let state_name = if let Some(holder) = &status.lock {
            format!("locked ({holder})")
        } else if let Some(journal) = &status.journal {
            format!("interrupted at {} (next round or lkg-reconcile recover finishes it)", journal.step)
        } else {
            match record.last_state.as_deref() {
                None => "never run".to_owned(),
                Some("up_to_date" | "installed" | "upgraded") => "up to date".to_owned(),
                Some("rollback_failed" | "install_failed" | "failed") => "failing".to_owned(),
                Some(other) => other.replace('_', " "),
            }
        };
        rows.push(serde_json::json!({
            "app": app.name.as_str(),
            "last_good": status.last_good.as_ref().map(|l| l.version.clone()),
            "newest": record.newest,
            "state": state_name,
            "reason": record.last_reason,
            "rolled_back": record.rolled_back,
            "held": record.held.keys().collect::<Vec<_>>(),
            "open_alerts": status.open_alerts.len(),
        }));
    }
    let doc = serde_json::json!({"apps": rows, "last_round": recorded.last_round});
    out.emit(&doc, |w| {
        writeln!(w, "{:<20} {:<14} {:<14} state", "app", "last-good", "newest")?;
        for row in &rows {
            let s = |k: &str| row[k].as_str().map_or_else(|| "-".to_owned(), lkg_reconcile::short_version);
            writeln!(w, "{:<20} {:<14} {:<14} {}", s("app"), s("last_good"), s("newest"), s("state"))?;
        }
        match &recorded.last_round {
            Some(r) => writeln!(
                w,
                "last round: {} at {} ({})",
                r.outcome,
                r.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                seconds(r.duration_ms)
            ),
            None => writeln!(w, "last round: none yet"),
        }
    })?;
    Ok(Exit::Ok)
}

/// `12.3 s`.
fn seconds(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, ms % 1000 / 100)
}

struct Observer {
    progress: Mutex<Progress>,
}

impl Observer {
    fn clear(&self) {
        self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl lkg_core::Progress<FleetEvent<'_>> for Observer {
    fn report(&self, event: &FleetEvent<'_>) {
        let mut progress = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            FleetEvent::Discovered { apps } => progress.step(&format!("discovered the versions of {apps} apps")),
            FleetEvent::Start { app, decision } => progress.step(&format!("{app}: {}", describe(decision))),
            FleetEvent::Done(round) => progress.step(&format!("{}: {}", round.app, round.state)),
            FleetEvent::Reconcile { app, event: lkg_reconcile::Event::Step { step, version } } => {
                progress.update(&format!("{app}: {step} {version}"));
            }
            FleetEvent::Note(note) => progress.step(&format!("  {note}")),
            _ => {}
        }
    }
}
