//! `lkg-snap`: take, verify, restore and show last-known-good volume snapshots.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary prints
#![allow(clippy::doc_markdown)] // doc comments are the --help text, where backticks would show

use std::io::Write;
use std::sync::Mutex;

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_warmsnap::remote::Agent;
use lkg_warmsnap::{
    Access, AnyStore, AppName, Event, Meta, RestoreRequest, SnapError, Store, StoreArgs, StoreError, TakeRequest,
    Verdict,
};

/// Last-known-good snapshots of a swarm stack's volumes.
///
/// A snapshot is one tar per volume of the stack plus meta.json, kept under
/// <state-dir>/apps/<app>/snapshot/. It is taken only while the stack is
/// undeployed, read from the volume's mount point when this machine can
/// (--access auto, the default) or else streamed through the engine's archive
/// endpoint of a helper container that never runs, and replaces the previous
/// snapshot atomically,
/// only after it has been checked (read back; with a registry store, as it is
/// uploaded). Restore never touches a
/// live volume before every checksum and every archive entry has passed:
/// with direct access it extracts each archive beside the volume's data
/// while checking it, then swaps the new content in with one atomic rename;
/// through the engine it checks first, then recreates each volume and fills
/// it. Either way the volume ends with exactly the archived content.
///
/// With --store oci://HOST[:PORT]/REPOSITORY the snapshots live in a
/// registry instead, as OCI artifacts (docs/snapshots.md, "Registry store"):
/// a volume archive already in the repository is not uploaded again, a
/// volume new to it is uploaded while it is archived, a volume whose files
/// did not change since the last-good (same paths, metadata, inodes and
/// ctimes) is not even read, every byte read back is checked against its
/// digest, and <app>-last-good moves only after the whole snapshot is there.
///
/// Exit codes: 0 ok; 1 a snapshot does not verify (damaged, tampered, unsafe
/// entries) or `show` found none; 2 bad input; 4 a restore stopped half-way
/// (run it again); 5 environment: engine or store registry unreachable, stack
/// deployed or volume in use, snapshot locked by another run, I/O error.
#[derive(Parser)]
#[command(name = "lkg-snap", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Snapshot the stack's volumes as the app's last-known-good (the stack must be undeployed).
    Take {
        /// The app whose last-known-good this becomes.
        #[arg(long)]
        app: String,
        /// The swarm stack whose volumes are taken (com.docker.stack.namespace).
        #[arg(long)]
        stack: String,
        /// The app version deployed on this data, recorded in meta.json.
        #[arg(long)]
        version: Option<String>,
        /// The commit of that version, recorded in meta.json.
        #[arg(long)]
        commit: Option<String>,
        /// The app's domain, recorded in meta.json.
        #[arg(long)]
        domain: Option<String>,
        /// How to read volumes: auto reads the mount point directly when the
        /// engine is local, lkg runs as root and the volume is a plain local
        /// one; archive always goes through the engine.
        #[arg(long, value_enum, default_value_t = Access::Auto)]
        access: Access,
        /// The swarm node (id or hostname) whose volumes to take, when it is
        /// not the node of the engine lkg talks to: lkg's agent takes them
        /// there as a swarm job and uploads them to the --store oci://
        /// registry, which that node must reach (docs/multi-node.md).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// With --node: a volume to take (repeatable); default: the volumes
        /// of the app's last-known-good. The manager cannot list another
        /// node's volumes.
        #[arg(long = "volume", value_name = "NAME", requires = "node")]
        volumes: Vec<String>,
    },
    /// Re-read the snapshot and check every size, checksum and entry (exit 1 names what differs).
    Verify {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Replace the stack's volumes with the snapshot's content (the stack must be undeployed).
    Restore {
        /// The app.
        #[arg(long)]
        app: String,
        /// The stack to restore into; default: the one recorded in meta.json.
        #[arg(long)]
        stack: Option<String>,
        /// How to write volumes: auto extracts into the mount point of the
        /// recreated volume when the engine is local, lkg runs as root and
        /// the volume is a plain local one; archive always uploads through
        /// the engine.
        #[arg(long, value_enum, default_value_t = Access::Auto)]
        access: Access,
        /// Restore onto this swarm node (id or hostname), for example to move
        /// an app off a lost node: lkg's agent pulls the snapshot from the
        /// --store oci:// registry there, checks it, and fills the volumes,
        /// creating those the node lacks (docs/multi-node.md).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
    },
    /// Show an app's snapshot, or list the apps that have one.
    Show {
        /// The app; without it, list the apps.
        #[arg(long)]
        app: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        let out = Output::new(cli.common.json);
        let store = cli.store.open(&cli.common.state_dir()?).map_err(|e| Failure::of(&e))?;
        let agent = cli.store.agent();
        lkg_cli::block_on(run(cli.command, &store, &agent, out))?
    })
}

async fn run(command: Command, store: &AnyStore, agent: &Agent, out: Output) -> Result<Exit, Failure> {
    let progress = TtyProgress(Mutex::new(Progress::stderr()));
    let exit = match command {
        Command::Take { app, stack, version, commit, domain, access, node, volumes } => {
            let mut request = TakeRequest::new(app_name(&app)?, &stack).map_err(|e| usage(&e))?.access(access);
            request.version = version;
            request.commit = commit;
            request.domain = domain;
            let at = At { agent, node: node.as_deref() };
            take(store, &request, &at, &volumes, out, &progress).await
        }
        Command::Verify { app } => verify(store, &app_name(&app)?, out, &progress).await,
        Command::Restore { app, stack, access, node } => {
            let mut request = RestoreRequest::new(app_name(&app)?).access(access);
            if let Some(stack) = stack {
                request = request.stack(&stack).map_err(|e| usage(&e))?;
            }
            restore(store, &request, &At { agent, node: node.as_deref() }, out, &progress).await
        }
        Command::Show { app: Some(app) } => show(store, &app_name(&app)?, out).await,
        Command::Show { app: None } => {
            let apps = lkg_warmsnap::list(store).await.map_err(|e| failure(&e))?;
            out.emit(&serde_json::json!({ "apps": apps }), |w| apps.iter().try_for_each(|app| writeln!(w, "{app}")))?;
            Ok(Exit::Ok)
        }
    };
    progress.clear();
    exit
}

/// Where a take or restore reaches the volumes: through the engine, or on
/// another node through lkg's agent.
struct At<'a> {
    agent: &'a Agent,
    node: Option<&'a str>,
}

async fn take(
    store: &AnyStore,
    request: &TakeRequest,
    at: &At<'_>,
    volumes: &[String],
    out: Output,
    progress: &TtyProgress,
) -> Result<Exit, Failure> {
    let docker = lkg_warmsnap::connect().await.map_err(|e| failure(&SnapError::from(e)))?;
    let report = lkg_warmsnap::remote::take_at(&docker, store, at.agent, request, at.node, volumes, progress)
        .await
        .map_err(|e| failure(&e))?;
    progress.clear();
    out.emit(&report, |w| {
        header(w, "took the snapshot of", &report.meta)?;
        for volume in &report.volumes {
            let s = &volume.summary;
            let access = if volume.access == Access::Direct { "direct" } else { "archive" };
            let unchanged = if volume.unchanged { ", unchanged: the last-good's archive kept" } else { "" };
            writeln!(
                w,
                "  {:<32} {:>10}  {} files, {} dirs, {} links  sha256 {}…  ({access}{unchanged})",
                volume.name,
                Progress::bytes(s.bytes),
                s.files,
                s.directories,
                s.symlinks + s.hard_links,
                &s.sha256[..16],
            )?;
        }
        if let Some(uploaded) = report.uploaded_bytes {
            writeln!(w, "uploaded {} of archives (the registry had the rest)", Progress::bytes(uploaded))?;
        }
        writeln!(w, "stored in {}", report.location)
    })?;
    Ok(Exit::Ok)
}

async fn verify<S: Store>(store: &S, app: &AppName, out: Output, progress: &TtyProgress) -> Result<Exit, Failure> {
    let report = lkg_warmsnap::verify(store, app, progress).await.map_err(|e| failure(&e))?;
    progress.clear();
    out.emit(&report, |w| {
        // "verified" only when it did: a failing check says so from its first word.
        let what = if report.ok { "verified the snapshot of" } else { "FAILED to verify the snapshot of" };
        header(w, what, &report.snapshot.meta)?;
        for volume in &report.volumes {
            let verdict = match &volume.verdict {
                Verdict::Ok { summary } => format!("ok ({} entries)", summary.entries),
                Verdict::Mismatch { actual_bytes, actual_sha256 } => format!(
                    "MISMATCH: expected {} bytes sha256 {}, found {actual_bytes} bytes sha256 {actual_sha256}",
                    volume.bytes, volume.sha256
                ),
                Verdict::Missing => "MISSING: the archive file is gone".to_owned(),
                Verdict::Refused { reason } => format!("REFUSED: {reason}"),
                _ => "FAILED".to_owned(),
            };
            writeln!(w, "  {:<32} {verdict}", volume.name)?;
        }
        writeln!(w, "in {}", report.snapshot.location)
    })?;
    if report.ok {
        return Ok(Exit::Ok);
    }
    let names: Vec<&str> = report.failures().map(|v| v.name.as_str()).collect();
    Err(Failure::new(
        Exit::Failed,
        format!("the snapshot of app {app} does not verify: volume {} differs from its record", names.join(", ")),
    )
    .with_hint("do not restore it; take a new snapshot from a known-good deployment"))
}

async fn restore(
    store: &AnyStore,
    request: &RestoreRequest,
    at: &At<'_>,
    out: Output,
    progress: &TtyProgress,
) -> Result<Exit, Failure> {
    let docker = lkg_warmsnap::connect().await.map_err(|e| failure(&SnapError::from(e)))?;
    let report = lkg_warmsnap::remote::restore_at(&docker, store, at.agent, request, at.node, progress)
        .await
        .map_err(|e| failure(&e))?;
    progress.clear();
    out.emit(&report, |w| {
        header(w, &format!("restored into stack {} the snapshot of", report.stack), &report.snapshot)?;
        for volume in &report.volumes {
            let how = if volume.existed { "replaced" } else { "created (it was missing)" };
            let access = if volume.access == Access::Direct { "direct" } else { "archive" };
            writeln!(w, "  {:<32} {:>10}  {how}  ({access})", volume.name, Progress::bytes(volume.bytes))?;
        }
        for name in &report.untouched {
            writeln!(w, "  {name:<32} {:>10}  left as is (not in the snapshot)", "")?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

async fn show<S: Store>(store: &S, app: &AppName, out: Output) -> Result<Exit, Failure> {
    let snapshot = lkg_warmsnap::show(store, app).await.map_err(|e| failure(&e))?;
    let value = serde_json::json!({ "app": app, "snapshot": snapshot });
    out.emit(&value, |w| match &snapshot {
        Some(snapshot) => {
            header(w, "the snapshot of", &snapshot.meta)?;
            for volume in &snapshot.meta.volumes {
                writeln!(w, "  {:<32} {:>10}  sha256 {}", volume.name, Progress::bytes(volume.bytes), volume.sha256)?;
            }
            writeln!(w, "in {}", snapshot.location)
        }
        None => writeln!(w, "app {app} has no last-known-good snapshot"),
    })?;
    Ok(if snapshot.is_some() { Exit::Ok } else { Exit::Failed })
}

fn header(w: &mut dyn Write, what: &str, meta: &Meta) -> std::io::Result<()> {
    let field = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    writeln!(
        w,
        "{what} app {} (stack {}), taken {}: version {}, commit {}, domain {}",
        meta.app,
        meta.stack,
        meta.ts,
        field(&meta.version),
        field(&meta.commit),
        field(&meta.domain)
    )
}

fn app_name(app: &str) -> Result<AppName, Failure> {
    AppName::new(app).map_err(|e| usage(&e.into()))
}

fn usage(e: &lkg_warmsnap::NameError) -> Failure {
    Failure::of(e)
}

/// An error with its exit code (its kind, docs/exit-codes.md) and what to do next.
fn failure(error: &SnapError) -> Failure {
    let hint = match error {
        SnapError::Refused { .. } | SnapError::Mismatch { .. } => {
            Some("run `lkg-snap verify` for the state of every volume")
        }
        SnapError::Store(StoreError::Meta { .. } | StoreError::MissingVolume { .. } | StoreError::Layout { .. }) => {
            Some("the snapshot is damaged: take a new one from a known-good deployment")
        }
        _ => None,
    };
    let failure = Failure::of(error);
    match hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// Progress lines on stderr when it is a terminal.
struct TtyProgress(Mutex<Progress>);

impl TtyProgress {
    fn clear(&self) {
        if let Ok(mut p) = self.0.lock() {
            p.clear();
        }
    }
}

impl lkg_warmsnap::Progress<Event<'_>> for TtyProgress {
    fn report(&self, event: &Event<'_>) {
        let Ok(mut p) = self.0.lock() else { return };
        let total = event.total.map(|t| format!(" of {}", Progress::bytes(t))).unwrap_or_default();
        let line = format!(
            "{} {} ({}/{}): {}{total}",
            event.phase.verb(),
            event.volume,
            event.index,
            event.count,
            Progress::bytes(event.bytes)
        );
        if event.done { p.step(&line) } else { p.update(&line) }
    }
}
