//! `lkg-reconcile`: health-gated updates of long-lived swarm apps, behind a
//! safety gate, with data-safe rollback, crash recovery and a quick mode.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary prints
#![allow(clippy::doc_markdown)] // doc comments are the --help text, where backticks would show
#![allow(rustdoc::invalid_html_tags)] // and where <version>, <app> are placeholders, not HTML

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_reconcile::{
    Alerts, AppConfig, AppName, AppStatus, Event, Gate, GateDecision, HttpCheck, Outcome, QuickRequest, ReconcileError,
    Reconciler, ReleaseNotes, Report, ResolveImage, SnapshotAccess, SwarmPlatform, UpdateRequest,
};
use lkg_warmsnap::StoreArgs;

/// Update long-lived swarm apps safely: a safety gate, a health gate, and a
/// rollback that brings the data back.
///
/// update: the safety gate holds a major bump (either side of
/// <recipe>+<app>) or release notes that mark a manual migration (exit 3,
/// nothing touched, an alert carries the notes). Otherwise: record
/// last-good; stateful apps are undeployed and snapshotted; the target is
/// deployed (its version reaches the compose files as ${LKG_VERSION} and
/// ${LKG_VERSION_TAG}) and must pass swarm's verdict and the health checks N
/// times in a row within a deadline. Then last-good := target (exit 0). On
/// failure the snapshot is restored, last-good redeployed and checked, and a
/// rollback alert written (exit 1); a failed rollback is the loudest alert.
/// Every alert is a file under <state-dir>/alerts/ and also goes to each
/// --notify channel (ntfy, Slack, Discord, mail, generic JSON webhooks); a
/// channel that fails never changes the outcome.
///
/// quick: test a candidate on the app's canonical; never promotes.
/// recover: finish or undo a run that was killed. Every step is journalled
/// first, so a killed run is finished or rolled back by the next update,
/// quick or recover of the same app.
///
/// Exit codes: 0 ok; 1 rolled back, rollback failed, a first install that
/// failed, a quick candidate that failed, was interrupted or whose restore
/// failed, or a recover whose rollback failed again; 2 bad input (nothing
/// changed; also: quick without a canonical); 3 held by the safety gate; 5
/// environment: engine unreachable, app locked by another run, state
/// directory unusable, or (quick) the canonical itself unhealthy. See docs/reconcile.md and docs/runbook.md.
#[derive(Parser)]
#[command(name = "lkg-reconcile", version, about, long_about)]
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
    /// Update an app to a target version behind the safety and health gates.
    Update {
        #[command(flatten)]
        app: AppArgs,
        /// The version to update to (compose sees ${LKG_VERSION} and
        /// ${LKG_VERSION_TAG}); or an image pinned by digest, TAG@sha256:HEX
        /// (compose also sees ${LKG_DIGEST}: image: REPO@${LKG_DIGEST}).
        #[arg(long)]
        target: String,
        /// The version running now, when lkg cannot tell (an unlabelled stack
        /// with no last-good record).
        #[arg(long, value_name = "VERSION")]
        last_good: Option<String>,
        /// Release notes of the target (instead of <release-notes>/<target>.md).
        #[arg(long, conflicts_with = "notes_file")]
        notes: Option<String>,
        /// A file holding the release notes of the target.
        #[arg(long, value_name = "FILE")]
        notes_file: Option<PathBuf>,
    },
    /// Test a candidate on the app's canonical: reattach, upgrade, check; then
    /// undeploy keeping volumes (pass) or restore the known-good data (fail).
    Quick {
        #[command(flatten)]
        app: AppArgs,
        /// The candidate version.
        #[arg(long)]
        candidate: String,
        /// A command run once after the health gate passed (sh -c); it must exit 0.
        #[arg(long, value_name = "CMD")]
        check: Option<String>,
    },
    /// Finish or undo a run of the app that was killed (no flags needed: the
    /// journal knows how to deploy and check the app).
    Recover {
        /// The app.
        #[arg(long)]
        app: String,
        /// Drop the journal without touching the app, after repairing it by hand.
        #[arg(long)]
        abandon: bool,
        /// Wait up to SECS for another run of the app to finish.
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        wait: f64,
    },
    /// Show what lkg knows about an app: last-good, an interrupted run, the
    /// lock, the last run, open alerts.
    Status {
        /// The app; without it, every app with reconcile state.
        #[arg(long)]
        app: Option<String>,
    },
    /// List alerts (open ones by default), and acknowledge them.
    Alerts {
        /// Only this app's.
        #[arg(long)]
        app: Option<String>,
        /// Include acknowledged alerts.
        #[arg(long)]
        all: bool,
        /// Acknowledge the open alerts listed (move them to alerts/acked/).
        #[arg(long)]
        ack: bool,
    },
    /// Ask the safety gate alone: would LAST_GOOD -> TARGET be held? (exit 0 or 3)
    Gate {
        /// The version running now.
        #[arg(long, value_name = "VERSION")]
        last_good: String,
        /// The version to update to.
        #[arg(long)]
        target: String,
        /// Release notes of the target.
        #[arg(long, conflicts_with_all = ["notes_file", "release_notes"])]
        notes: Option<String>,
        /// A file holding them.
        #[arg(long, value_name = "FILE", conflicts_with = "release_notes")]
        notes_file: Option<PathBuf>,
        /// The directory holding <target>.md.
        #[arg(long, value_name = "DIR")]
        release_notes: Option<PathBuf>,
        /// A manual-migration marker (repeatable; replaces the defaults).
        #[arg(long, value_name = "TEXT")]
        marker: Vec<String>,
    },
}

/// How to deploy and check the app: flags, or a config file (flags win).
#[derive(Args)]
#[allow(clippy::struct_excessive_bools)] // on/off flags of the command line
struct AppArgs {
    /// A per-app YAML config file (see docs/reconcile.md); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The app (a DNS label; its state lives under <state-dir>/apps/<app>/).
    #[arg(long)]
    app: Option<String>,
    /// The swarm stack (default: the app name; for quick: the canonical's domain with '.' -> '_').
    #[arg(long)]
    stack: Option<String>,
    /// A compose file (repeatable, in -c order).
    #[arg(short = 'c', long = "compose", value_name = "FILE")]
    compose: Vec<PathBuf>,
    /// A recipe git repository (a path or a URL) instead of -c: version V's
    /// files are read from its tag V, release notes from its releaseNotes/.
    #[arg(long, value_name = "PATH_OR_URL", conflicts_with = "compose")]
    recipe: Option<String>,
    /// With --recipe: a compose file inside the recipe (repeatable; default compose.yml).
    #[arg(long = "compose-file", value_name = "NAME", requires = "recipe")]
    compose_file: Vec<String>,
    /// Snapshot the volumes before the update and restore them on failure (default).
    #[arg(long, conflicts_with = "stateless")]
    stateful: bool,
    /// No data to protect: roll back by redeploying last-good only.
    #[arg(long)]
    stateless: bool,
    /// An HTTP health check URL ({version} is replaced by the version checked).
    #[arg(long, value_name = "URL")]
    health: Vec<String>,
    /// The status the --health URLs must answer.
    #[arg(long, value_name = "CODE", default_value_t = 200)]
    health_status: u16,
    /// Text the --health responses must contain ({version} is replaced).
    #[arg(long, value_name = "TEXT")]
    health_body: Option<String>,
    /// A health check command (sh -c, repeatable): exit 0 is healthy. It sees
    /// LKG_APP, LKG_STACK, LKG_VERSION, LKG_VERSION_TAG (LKG_DIGEST for a
    /// version pinned by digest).
    #[arg(long, value_name = "CMD")]
    health_cmd: Vec<String>,
    /// Do not require every service to run all its tasks with healthy containers.
    #[arg(long)]
    no_task_health: bool,
    /// Consecutive passing rounds required (default 3, or the config file's).
    #[arg(long, value_name = "N")]
    health_passes: Option<u32>,
    /// Seconds between rounds (default 2, or the config file's).
    #[arg(long, value_name = "SECS")]
    health_interval: Option<f64>,
    /// Seconds allowed to reach the passes in a row (default 120, or the
    /// config file's).
    #[arg(long, value_name = "SECS")]
    health_deadline: Option<f64>,
    /// Seconds allowed for swarm's verdict on a deploy (and for an undeploy);
    /// default 300, or the config file's.
    #[arg(long, value_name = "SECS")]
    deploy_timeout: Option<f64>,
    /// Failed tasks of a deploy after which a crash-looping service is
    /// task_failed (and the update rolls back) without waiting for
    /// --deploy-timeout; default 3, or the config file's; 0 waits.
    #[arg(long, value_name = "N")]
    max_task_failures: Option<usize>,
    /// A command in place of `docker stack deploy` ({stack}, {compose}, {overlay}, {deploy_id}).
    #[arg(long, value_name = "CMD")]
    deploy_command: Option<String>,
    /// The docker CLI to use (e.g. /usr/bin/docker).
    #[arg(long, value_name = "PATH")]
    docker: Option<PathBuf>,
    /// docker stack deploy --resolve-image.
    #[arg(long, value_enum)]
    resolve_image: Option<ResolveImage>,
    /// docker stack deploy --with-registry-auth.
    #[arg(long)]
    with_registry_auth: bool,
    /// How snapshots reach volume data.
    #[arg(long, value_enum)]
    snapshot_access: Option<SnapshotAccess>,
    /// On a multi-node swarm, hold every service that mounts a volume on the
    /// node that holds the data (adds `node.id == <node>` through lkg's
    /// overlay) instead of refusing a service that could start elsewhere.
    #[arg(long)]
    pin_to_data_node: bool,
    /// A compose interpolation variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The directory holding release notes <version>.md (default: releaseNotes/ beside the first compose file).
    #[arg(long, value_name = "DIR")]
    release_notes: Option<PathBuf>,
    /// A manual-migration marker (repeatable; replaces the defaults).
    #[arg(long, value_name = "TEXT")]
    marker: Vec<String>,
    /// Also send every alert to a notification channel (repeatable; replaces
    /// the config file's `notify:`): ntfy://[user:pass@]host/topic,
    /// slack://hook:A-B-C@webhook, discord://token@webhookid,
    /// smtp://[user:pass@]host:port/?from=...&to=..., generic+https://... (the
    /// alert JSON). Each is retried with backoff after the alert file is
    /// written; one that fails never fails the run. See docs/notifications.md.
    #[arg(long = "notify", value_name = "URL")]
    notify: Vec<String>,
    /// POST every alert as JSON to an http(s) URL: the same as --notify URL
    /// (the generic channel).
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
    /// Wait up to SECS for another run of the app to finish.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    wait: f64,
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
    let observer = Observer::new();
    match command {
        Command::Update { app, target, last_good, notes, notes_file } => {
            let wait = secs(app.wait, "--wait")?;
            let spec = app.into_config()?.into_spec().map_err(|e| failure(&e))?;
            let notes = match (notes, notes_file) {
                (Some(text), _) => Some(ReleaseNotes::given(text)),
                (None, Some(file)) => Some(read_notes(&file)?),
                (None, None) => None,
            };
            let platform = connect(state, store).await?;
            let request = UpdateRequest { target, notes, last_good };
            let reconciler = Reconciler::new(&platform, state, &observer).lock_wait(wait);
            // Boxed: a whole reconcile is a large future.
            let report = Box::pin(reconciler.update(&spec, &request)).await.map_err(|e| failure(&e))?;
            observer.clear();
            print_report(&report, out)?;
            Ok(update_exit(report.outcome))
        }
        Command::Quick { app, candidate, check } => {
            let wait = secs(app.wait, "--wait")?;
            let spec = app.into_config()?.into_quick_spec(state).map_err(|e| failure(&e))?;
            let platform = connect(state, store).await?;
            let reconciler = Reconciler::new(&platform, state, &observer).lock_wait(wait);
            let request = QuickRequest { candidate, check };
            let report = Box::pin(reconciler.quick(&spec, &request)).await.map_err(|e| failure(&e))?;
            observer.clear();
            print_report(&report, out)?;
            Ok(match report.outcome {
                Outcome::Passed => Exit::Ok,
                Outcome::CanonicalUnhealthy => Exit::Environment,
                _ => Exit::Failed,
            })
        }
        Command::Recover { app, abandon, wait } => {
            let app = AppName::new(&app).map_err(|e| failure(&ReconcileError::from(e)))?;
            let platform = connect(state, store).await?;
            let reconciler = Reconciler::new(&platform, state, &observer).lock_wait(secs(wait, "--wait")?);
            let recovered = Box::pin(reconciler.recover(&app, abandon)).await.map_err(|e| failure(&e))?;
            observer.clear();
            let Some(report) = recovered else {
                out.emit(&serde_json::json!({"app": app.as_str(), "outcome": "nothing_to_recover"}), |w| {
                    writeln!(w, "app {app}: no interrupted run; nothing to recover")
                })?;
                return Ok(Exit::Ok);
            };
            print_report(&report, out)?;
            Ok(if report.outcome.keeps_journal() { Exit::Failed } else { Exit::Ok })
        }
        Command::Status { app } => status(state, app.as_deref(), out).await,
        Command::Alerts { app, all, ack } => alerts(state, app.as_deref(), all, ack, out),
        Command::Gate { last_good, target, notes, notes_file, release_notes, marker } => {
            for version in [&last_good, &target] {
                lkg_reconcile::check_version(version).map_err(|e| failure(&e))?;
            }
            let notes = match (notes, notes_file, release_notes) {
                (Some(text), _, _) => Some(ReleaseNotes::given(text)),
                (None, Some(file), _) => Some(read_notes(&file)?),
                (None, None, Some(dir)) if !dir.is_dir() => {
                    // A typo here would pass the gate without a word.
                    return Err(Failure::new(
                        Exit::Usage,
                        format!("--release-notes {}: no such directory", dir.display()),
                    ));
                }
                (None, None, Some(dir)) => ReleaseNotes::read(&dir, &target)
                    .map_err(|e| Failure::new(Exit::Usage, format!("cannot read the release notes: {e}")))?,
                (None, None, None) => None,
            };
            let gate = if marker.is_empty() {
                Gate::default()
            } else {
                Gate::with_markers(&marker).map_err(|e| failure(&e))?
            };
            let decision = gate.decide(Some(&last_good), &target, notes.as_ref());
            out.emit(&decision, |w| match &decision {
                GateDecision::Pass { reason } => writeln!(w, "pass: {reason}"),
                GateDecision::Hold { kind, reason, .. } => writeln!(w, "HOLD ({}): {reason}", kind.alert_kind()),
            })?;
            Ok(if decision.passes() { Exit::Ok } else { Exit::Held })
        }
    }
}

impl AppArgs {
    fn into_config(self) -> Result<AppConfig, Failure> {
        let mut config = match &self.config {
            Some(path) => AppConfig::load(path).map_err(|e| failure(&e))?,
            None => AppConfig::default(),
        };
        if self.app.is_some() {
            config.app = self.app;
        }
        if self.stack.is_some() {
            config.stack = self.stack;
        }
        if !self.compose.is_empty() {
            config.compose = self.compose;
            config.recipe = None;
            config.compose_file.clear();
        }
        if self.recipe.is_some() {
            config.recipe = self.recipe;
            config.compose.clear();
        }
        if !self.compose_file.is_empty() {
            config.compose_file = self.compose_file;
        }
        if self.stateful {
            config.stateful = Some(true);
        }
        if self.stateless {
            config.stateful = Some(false);
        }
        let health = &mut config.health;
        if !self.health.is_empty() {
            health.http = self
                .health
                .into_iter()
                .map(|url| HttpCheck { url, status: self.health_status, body: self.health_body.clone() })
                .collect();
        }
        if !self.health_cmd.is_empty() {
            health.commands = self.health_cmd;
        }
        if self.no_task_health {
            health.tasks = false;
        }
        if let Some(passes) = self.health_passes {
            health.passes = passes;
        }
        if let Some(s) = self.health_interval {
            health.interval = secs(s, "--health-interval")?;
        }
        if let Some(s) = self.health_deadline {
            health.deadline = secs(s, "--health-deadline")?;
        }
        let deploy = &mut config.deploy;
        if let Some(s) = self.deploy_timeout {
            deploy.timeout = secs(s, "--deploy-timeout")?;
        }
        if let Some(n) = self.max_task_failures {
            deploy.max_task_failures = n;
        }
        if self.deploy_command.is_some() {
            deploy.command = self.deploy_command;
        }
        if self.docker.is_some() {
            deploy.docker = self.docker;
        }
        if let Some(mode) = self.resolve_image {
            deploy.resolve_image = mode;
        }
        if self.with_registry_auth {
            deploy.registry_auth = true;
        }
        if let Some(access) = self.snapshot_access {
            deploy.snapshot_access = access;
        }
        if self.pin_to_data_node {
            deploy.pin_to_data_node = true;
        }
        for pair in self.env {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Failure::new(Exit::Usage, format!("--env {pair:?} is not KEY=VALUE")))?;
            config.env.insert(key.to_owned(), value.to_owned());
        }
        if self.release_notes.is_some() {
            config.release_notes = self.release_notes;
        }
        if !self.marker.is_empty() {
            config.markers = Some(self.marker);
        }
        if !self.notify.is_empty() {
            config.notify = self.notify;
        }
        if self.webhook.is_some() {
            config.webhook = self.webhook;
        }
        Ok(config)
    }
}

fn update_exit(outcome: Outcome) -> Exit {
    match outcome {
        Outcome::Upgraded | Outcome::Installed | Outcome::Current | Outcome::Abandoned => Exit::Ok,
        Outcome::Held => Exit::Held,
        _ => Exit::Failed,
    }
}

/// The swarm, and the snapshot store `store` names.
async fn connect(state: &Path, args: &StoreArgs) -> Result<SwarmPlatform, Failure> {
    let store = args.open(state).map_err(|e| Failure::of(&e))?;
    Ok(SwarmPlatform::connect(state).await.map_err(|e| failure(&e))?.with_store(store).with_agent(args.agent()))
}

fn read_notes(file: &Path) -> Result<ReleaseNotes, Failure> {
    let text = lkg_core::input::read_to_string(file, lkg_core::input::MAX_TEXT)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read the release notes {}: {e}", file.display())))?;
    Ok(ReleaseNotes { source: file.display().to_string(), ..ReleaseNotes::given(text) })
}

fn secs(value: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| Failure::new(Exit::Usage, format!("{flag} {value}: give a number of seconds, 0 or more")))
}

fn failure(error: &ReconcileError) -> Failure {
    Failure::of(error)
}

fn print_report(report: &Report, out: Output) -> Result<(), Failure> {
    if report.outcome.keeps_journal() {
        // The loudest message: on stderr whatever the output format, so it
        // reaches a log even when stdout is parsed.
        eprintln!(
            "\n!!! ROLLBACK FAILED: app {} is NOT known to run its last-good version {} !!!\n!!! {}\n!!! next: \
             lkg-reconcile status --app {}; lkg-reconcile recover --app {} once the cause is fixed\n",
            report.app,
            report.previous_last_good.as_deref().unwrap_or("-"),
            report.detail.as_deref().unwrap_or(""),
            report.app,
            report.app
        );
    }
    out.emit(report, |w| human_report(w, report))
}

fn human_report(w: &mut dyn Write, report: &Report) -> std::io::Result<()> {
    if let Some(previous) = &report.interrupted_run {
        writeln!(w, "first finished an interrupted run:")?;
        human_report(w, previous)?;
        writeln!(w)?;
    }
    let from = report.previous_last_good.as_deref().unwrap_or("nothing");
    writeln!(
        w,
        "{} ({}): {} -> {}: {}",
        report.app,
        report.stack,
        from,
        report.target,
        report.outcome.as_str().replace('_', " ")
    )?;
    if let Some(resumed) = &report.resumed {
        writeln!(w, "  resumed run {} (pid {}), killed at step {}", resumed.run, resumed.pid, resumed.step)?;
    }
    if let Some(detail) = &report.detail {
        writeln!(w, "  {detail}")?;
    }
    if let Some(GateDecision::Pass { reason }) = &report.gate {
        writeln!(w, "  gate: pass ({reason})")?;
    }
    let last_good = report.last_good.as_deref().unwrap_or("none");
    let mut facts = vec![format!("last-good: {last_good}")];
    if let Some(recovered) = report.recovered {
        facts.push(if recovered { "recovered".into() } else { "NOT recovered".into() });
    }
    if report.data_restored {
        facts.push("data restored from the snapshot".into());
    }
    writeln!(w, "  {}", facts.join(", "))?;
    if let Some(alert) = &report.alert {
        writeln!(w, "  alert {}: {}", alert.kind, alert.path)?;
        for d in &alert.deliveries {
            if d.delivered {
                writeln!(w, "    delivered to {}", d.channel)?;
            } else {
                writeln!(w, "    NOT delivered to {} ({})", d.channel, d.error.as_deref().unwrap_or("no answer"))?;
            }
        }
    }
    for note in &report.notes {
        writeln!(w, "  note: {note}")?;
    }
    let t = &report.timeline;
    if !t.steps.is_empty() {
        writeln!(w, "  timeline:")?;
        for s in &t.steps {
            writeln!(
                w,
                "    {:>7.1}s  {:<17} {:>6.1}s{}",
                ms(s.at_ms),
                s.step.as_str(),
                ms(s.ms),
                if s.ok { "" } else { "  failed" }
            )?;
        }
    }
    writeln!(
        w,
        "  total {:.1}s: docker {:.1}s, data {:.1}s, health checks {:.1}s, lkg {:.2}s ({}%)",
        ms(t.total_ms),
        ms(t.docker_ms),
        ms(t.data_ms),
        ms(t.health_ms),
        ms(t.overhead_ms),
        t.overhead_pct
    )?;
    match (t.downtime_ms, t.detect_ms) {
        (Some(down), Some(detect)) => {
            writeln!(w, "  down {:.1}s; the failure was detected {:.1}s after the deploy began", ms(down), ms(detect))
        }
        (Some(down), None) => writeln!(w, "  down {:.1}s", ms(down)),
        (None, Some(detect)) => writeln!(w, "  the failure was detected {:.1}s after the deploy began", ms(detect)),
        (None, None) => Ok(()),
    }
}

#[allow(clippy::cast_precision_loss)] // display only
fn ms(value: u64) -> f64 {
    value as f64 / 1000.0
}

async fn status(state: &Path, app: Option<&str>, out: Output) -> Result<Exit, Failure> {
    let apps = match app {
        Some(app) => vec![AppName::new(app).map_err(|e| failure(&ReconcileError::from(e)))?],
        None => lkg_reconcile::reconciled_apps(state).map_err(|e| failure(&e))?,
    };
    // The deployed version needs the engine; status still works without it.
    let platform = SwarmPlatform::connect(state).await.ok();
    let mut statuses: Vec<AppStatus> = Vec::new();
    for app in &apps {
        statuses.push(lkg_reconcile::status(state, app, platform.as_ref()).await.map_err(|e| failure(&e))?);
    }
    out.emit(&serde_json::json!({"apps": statuses}), |w| {
        if statuses.is_empty() {
            writeln!(w, "no app has reconcile state in {}", state.display())?;
        }
        for s in &statuses {
            writeln!(w, "app {}", s.app)?;
            match &s.last_good {
                Some(l) => {
                    writeln!(w, "  last-good: {} (stack {}, {} since {})", l.version, l.stack, l.source, l.since)?;
                    match &l.files {
                        Some(files) => writeln!(w, "  files:     {} (a rollback deploys these)", files.dir.display())?,
                        None => writeln!(w, "  files:     none kept (a rollback deploys the files given for the run)")?,
                    }
                }
                None => writeln!(w, "  last-good: none recorded")?,
            }
            if let Some(deployed) = &s.deployed {
                writeln!(w, "  deployed:  {deployed}")?;
            }
            match &s.journal {
                Some(j) if j.rollback_failure.is_some() => writeln!(
                    w,
                    "  ROLLBACK FAILED in run {} ({} -> {}): {}\n  next: fix the cause, then `lkg-reconcile recover --app {}`",
                    j.run,
                    j.last_good.as_deref().unwrap_or("-"),
                    j.target,
                    j.rollback_failure.as_ref().map(|f| f.detail.as_str()).unwrap_or_default(),
                    s.app
                )?,
                Some(j) => writeln!(
                    w,
                    "  run {} ({} -> {}) is at step {} since {} (pid {}){}",
                    j.run,
                    j.last_good.as_deref().unwrap_or("-"),
                    j.target,
                    j.step,
                    j.step_started,
                    j.pid,
                    if s.lock.is_some() { "" } else { "; it is not running: `lkg-reconcile recover` finishes it" }
                )?,
                None => writeln!(w, "  no run in progress")?,
            }
            if let Some(holder) = &s.lock {
                writeln!(w, "  lock: held by {holder}")?;
            }
            if let Some(run) = &s.last_run {
                writeln!(
                    w,
                    "  last run: {} {} -> {}{}",
                    run.command.as_str(),
                    run.target,
                    run.outcome.as_str(),
                    run.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
                )?;
            }
            if !s.open_alerts.is_empty() {
                writeln!(w, "  open alerts: {} (lkg-reconcile alerts --app {})", s.open_alerts.join(", "), s.app)?;
            }
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

fn alerts(state: &Path, app: Option<&str>, all: bool, ack: bool, out: Output) -> Result<Exit, Failure> {
    // The same rule as every other command's --app: '../../etc' is no app.
    if let Some(app) = app {
        AppName::new(app).map_err(|e| failure(&ReconcileError::from(e)))?;
    }
    let alerts = Alerts::new(state);
    let (listed, unreadable) = alerts.list_checked(app, all).map_err(|e| failure(&e))?;
    // One damaged file never hides the others: they are listed, it is named.
    for bad in &unreadable {
        eprintln!("lkg-reconcile: warning: cannot read the alert {}: {}", bad.path.display(), bad.reason);
    }
    let acked = if ack { alerts.ack_listed(&listed).map_err(|e| failure(&e))? } else { Vec::new() };
    let mut value = serde_json::json!({"alerts": listed, "acked": acked});
    if !unreadable.is_empty() {
        value["unreadable"] = serde_json::json!(unreadable);
    }
    out.emit(&value, |w| {
        if listed.is_empty() {
            writeln!(w, "no {}alerts", if all { "" } else { "open " })?;
        }
        for l in &listed {
            let a = &l.alert;
            let recovered = match a.recovered {
                Some(true) => " recovered",
                Some(false) => " NOT RECOVERED",
                None => "",
            };
            writeln!(
                w,
                "{} {:<22} {} {} -> {}{recovered}{}",
                a.ts,
                a.kind.as_str(),
                a.app,
                a.last_good.as_deref().unwrap_or("-"),
                a.attempted,
                if l.acked { " (acked)" } else { "" }
            )?;
            writeln!(w, "    {}", a.detail)?;
            if let Some(notes) = &a.notes {
                let first = notes.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
                writeln!(w, "    notes: {first}")?;
            }
        }
        if !acked.is_empty() {
            writeln!(w, "acknowledged {} alert(s)", acked.len())?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

/// Progress on stderr when it is a terminal; in test builds, the crash-test hook.
struct Observer {
    progress: Mutex<Progress>,
    #[cfg(feature = "fault-injection")]
    kill_at: Option<(lkg_reconcile::Step, Duration)>,
}

impl Observer {
    fn new() -> Observer {
        Observer {
            progress: Mutex::new(Progress::stderr()),
            // Crash testing (bins/tests/it/reconcile.rs), only in builds with
            // the `fault-injection` feature: with `LKG_RECONCILE_KILL_AT=<step>`
            // the process SIGKILLs itself right after the journal names that
            // step, before the step does anything; with `<step>+<secs>`, that
            // long into the step.
            #[cfg(feature = "fault-injection")]
            kill_at: std::env::var("LKG_RECONCILE_KILL_AT").ok().and_then(|spec| {
                let (step, delay) = spec.split_once('+').unwrap_or((&spec, "0"));
                Some((step.parse().ok()?, Duration::try_from_secs_f64(delay.parse().ok()?).ok()?))
            }),
        }
    }

    fn clear(&self) {
        self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl lkg_reconcile::Progress<Event<'_>> for Observer {
    fn report(&self, event: &Event<'_>) {
        #[cfg(feature = "fault-injection")]
        if let (Event::Step { step, .. }, Some((at, delay))) = (event, self.kill_at)
            && *step == at
        {
            if delay.is_zero() {
                kill_self();
            }
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                kill_self();
            });
        }
        let mut progress = self.progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Step { step, version } => progress.step(&format!("{step} {version}")),
            Event::Note(note) => progress.step(&format!("  {note}")),
            Event::Health { version, round, streak, probe } => {
                let failures = probe.failures();
                progress.update(&format!(
                    "  health of {version}: round {round}, {streak} in a row{}",
                    if failures.is_empty() { String::new() } else { format!(" ({failures})") }
                ));
            }
            Event::Deploy(deploy) => {
                if let Some(line) = describe_deploy(deploy) {
                    progress.update(&line);
                }
            }
            _ => {}
        }
    }
}

fn describe_deploy(event: &lkg_reconcile::DeployProgress<'_>) -> Option<String> {
    use lkg_reconcile::DeployProgress as P;
    match event {
        P::Deploying { deploy_id, deployer } => Some(format!("  {deployer} ({deploy_id})")),
        P::Phase { service, phase } => Some(format!("  {service}: {phase}")),
        P::Decided(verdict) => Some(format!("  {}: {} ({})", verdict.service, verdict.verdict, verdict.reason)),
        _ => None,
    }
}

#[cfg(feature = "fault-injection")]
fn kill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
    // `kill` delivers SIGKILL before it exits; nothing below runs.
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
