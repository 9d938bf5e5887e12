//! `lkg-swarm`: deploy to Docker Swarm and tell honestly whether it converged.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary prints
#![allow(clippy::doc_markdown)] // doc comments are the --help text, where backticks would show
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_core::Classify as _;
use lkg_swarm::{
    CommandDeployer, CommitCheck, ComposeFiles, DeployError, DeployRequest, Deployer, ProgressEvent, PruneOutcome,
    ResolveImage, StackDeployer, Swarm,
};

/// Deploy to Docker Swarm with an honest verdict, and manage a stack's lifecycle.
///
/// `deploy` runs `docker stack deploy` (or --deploy-command), stamps every
/// service with a unique deploy id, and waits for a verdict that belongs to
/// this deploy: converged or no_change (exit 0); rolled_back, paused,
/// rollback_paused, failed, superseded or deadline_exceeded (exit 1).
/// Exit 2: bad input; 4: partly applied; 5: the engine is unreachable or the
/// deployer cannot be run.
#[derive(Parser)]
#[command(name = "lkg-swarm", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy a stack and wait for its verdict.
    Deploy {
        /// The stack name.
        #[arg(long)]
        stack: String,
        /// Compose file; repeat for overrides, applied in order.
        #[arg(short = 'c', long = "compose-file", value_name = "FILE", required = true)]
        compose: Vec<PathBuf>,
        /// After a successful deploy, remove services the compose files no longer declare.
        #[arg(long)]
        prune: bool,
        /// Seconds to wait for a verdict; then `deadline_exceeded` (swarm itself waits forever).
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        timeout: u64,
        /// Failed tasks of this deploy after which a service that is not all
        /// running is `task_failed`, without waiting for --timeout (swarm
        /// restarts crashing tasks for ever); 0 waits for the timeout.
        #[arg(long, default_value_t = lkg_swarm::DEFAULT_TASK_FAILURE_LIMIT, value_name = "N")]
        max_task_failures: usize,
        /// `docker stack deploy --resolve-image`.
        #[arg(long, value_enum, default_value_t = ResolveImage::Always)]
        resolve_image: ResolveImage,
        /// The docker CLI to run (e.g. /usr/bin/docker for Debian's 20.10 CLI).
        #[arg(long, default_value = "docker", value_name = "PATH")]
        docker: PathBuf,
        /// Run this command instead of `docker stack deploy` (split on spaces).
        /// Placeholders: {stack} {deploy_id} {overlay} {compose}; the command
        /// must apply the {overlay} compose file that stamps the deploy id.
        #[arg(long, value_name = "COMMAND")]
        deploy_command: Option<String>,
        /// Environment for compose variable interpolation, KEY=VALUE; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
    },
    /// Print each service's current state without waiting.
    Status {
        /// The stack name.
        #[arg(long)]
        stack: String,
    },
    /// Print the deployed identity (coop-cloud labels) and compare its commit.
    Identity {
        /// The stack name.
        #[arg(long)]
        stack: String,
        /// The service to read (default: the `app` service, else the first labelled one).
        #[arg(long)]
        service: Option<String>,
        /// Exit 1 unless the deployed chaos commit matches (short and full ids match by prefix).
        #[arg(long, value_name = "SHA")]
        expect_commit: Option<String>,
    },
    /// Remove services the compose files no longer declare (nothing if they cannot be read).
    Prune {
        /// The stack name.
        #[arg(long)]
        stack: String,
        /// Compose file; repeat for overrides.
        #[arg(short = 'c', long = "compose-file", value_name = "FILE", required = true)]
        compose: Vec<PathBuf>,
    },
    /// List the stack's volumes.
    Volumes {
        /// The stack name.
        #[arg(long)]
        stack: String,
    },
    /// Remove the stack's services, networks, secrets and configs; keep its volumes.
    Undeploy {
        /// The stack name.
        #[arg(long)]
        stack: String,
        /// Wait until every task, container and network of the stack is gone.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        timeout: u64,
    },
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

fn main() -> std::process::ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        lkg_cli::block_on(run(cli))?
    })
}

async fn run(cli: Cli) -> Result<Exit, Failure> {
    let out = Output::new(cli.common.json);
    let swarm = Swarm::connect().await.map_err(|e| Failure::of(&e))?;
    match cli.command {
        Command::Deploy {
            stack,
            compose,
            prune,
            timeout,
            max_task_failures,
            resolve_image,
            docker,
            deploy_command,
            env,
        } => {
            let mut request = DeployRequest::new(stack, compose)
                .timeout(Duration::from_secs(timeout))
                .task_failure_limit(max_task_failures)
                .prune(prune);
            request.env = env;
            if let Some(line) = deploy_command {
                let deployer = CommandDeployer::parse(&line)
                    .ok_or_else(|| Failure::new(Exit::Usage, "--deploy-command is empty"))?;
                return deploy(&swarm, &deployer, &request, out).await;
            }
            let deployer = StackDeployer::new().program(docker).resolve_image(resolve_image);
            deploy(&swarm, &deployer, &request, out).await
        }
        Command::Status { stack } => status(&swarm, &stack, out).await,
        Command::Identity { stack, service, expect_commit } => {
            identity(&swarm, &stack, service.as_deref(), expect_commit.as_deref(), out).await
        }
        Command::Prune { stack, compose } => prune(&swarm, &stack, &compose, out).await,
        Command::Volumes { stack } => {
            let volumes = swarm.volumes(&stack).await.map_err(|e| Failure::of(&e))?;
            let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
            out.emit(&names, |w| names.iter().try_for_each(|n| writeln!(w, "{n}")))?;
            Ok(Exit::Ok)
        }
        Command::Undeploy { stack, wait, timeout } => {
            undeploy(&swarm, &stack, wait.then(|| Duration::from_secs(timeout)), out).await
        }
    }
}

async fn status(swarm: &Swarm, stack: &str, out: Output) -> Result<Exit, Failure> {
    let status = swarm.status(stack).await.map_err(|e| Failure::of(&e))?;
    out.emit(&status, |w| {
        if status.services.is_empty() {
            writeln!(w, "stack {stack} has no services")?;
        }
        for s in &status.services {
            let update = s.update.as_ref().map_or_else(
                || "no update status".to_owned(),
                |u| format!("{}{}", u.state, u.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()),
            );
            writeln!(
                w,
                "{}  {}/{} running  {}  {}  {}",
                s.service,
                s.running,
                s.desired,
                update,
                s.image.as_deref().unwrap_or("-"),
                s.deploy_id.as_deref().unwrap_or("no deploy id")
            )?;
            for error in &s.task_errors {
                writeln!(w, "    {error}")?;
            }
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

async fn identity(
    swarm: &Swarm,
    stack: &str,
    service: Option<&str>,
    expect_commit: Option<&str>,
    out: Output,
) -> Result<Exit, Failure> {
    let identity = swarm.identity(stack, service).await.map_err(|e| Failure::of(&e))?;
    let check = expect_commit
        .map(|sha| identity.check_commit(sha))
        .transpose()
        .map_err(|e| Failure::from_error(Exit::Usage, &e))?;
    let exit = match &check {
        None | Some(CommitCheck::Match { .. }) => Exit::Ok,
        Some(_) => Exit::Failed,
    };
    let json = serde_json::json!({"identity": identity, "commit_check": check});
    out.emit(&json, |w| {
        writeln!(w, "service:       {}", identity.service)?;
        writeln!(w, "recipe:        {}", identity.recipe.as_deref().unwrap_or("-"))?;
        writeln!(w, "version:       {}", identity.version.as_deref().unwrap_or("-"))?;
        writeln!(w, "chaos version: {}", identity.chaos_version.as_deref().unwrap_or("-"))?;
        writeln!(w, "dirty:         {}", if identity.dirty { "yes (+U)" } else { "no" })?;
        match &check {
            Some(CommitCheck::Match { deployed, expected }) => {
                writeln!(w, "commit:        matches (deployed {deployed}, expected {expected})")
            }
            Some(CommitCheck::Mismatch { deployed, expected }) => {
                writeln!(w, "commit:        MISMATCH: deployed {deployed}, expected {expected}")
            }
            Some(CommitCheck::NoCommit { version }) => writeln!(
                w,
                "commit:        none deployed (not a chaos deploy; version {})",
                version.as_deref().unwrap_or("unknown")
            ),
            Some(_) | None => Ok(()),
        }
    })?;
    Ok(exit)
}

async fn prune(swarm: &Swarm, stack: &str, compose: &[PathBuf], out: Output) -> Result<Exit, Failure> {
    let outcome = match ComposeFiles::load(compose) {
        Ok(files) => swarm.prune(stack, &files).await.map_err(|e| Failure::of(&e))?,
        Err(e) => PruneOutcome::Skipped { reason: format!("removed nothing: {e}") },
    };
    let exit = if matches!(outcome, PruneOutcome::Skipped { .. }) { Exit::Usage } else { Exit::Ok };
    out.emit(&outcome, |w| match &outcome {
        PruneOutcome::Pruned { removed, kept } => {
            for s in removed {
                writeln!(w, "removed {s}")?;
            }
            writeln!(w, "{} removed, {} kept", removed.len(), kept.len())
        }
        PruneOutcome::Skipped { reason } => writeln!(w, "{reason}"),
        _ => Ok(()),
    })?;
    Ok(exit)
}

async fn undeploy(swarm: &Swarm, stack: &str, wait: Option<Duration>, out: Output) -> Result<Exit, Failure> {
    let report = match swarm.undeploy(stack, wait).await {
        Ok(report) => report,
        Err(e) => {
            let failure = Failure::of(&e);
            return Err(if failure.exit() == Exit::Partial {
                failure.with_hint("the services are removed; re-run `lkg-swarm undeploy --wait` to wait for the rest")
            } else {
                failure
            });
        }
    };
    out.emit(&report, |w| {
        writeln!(w, "removed {} services, {} networks", report.services.len(), report.networks.len())?;
        writeln!(
            w,
            "kept volumes: {}",
            if report.kept_volumes.is_empty() { "none".to_owned() } else { report.kept_volumes.join(", ") }
        )?;
        for left in &report.left {
            writeln!(w, "not removed yet: {left}")?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

async fn deploy<D: Deployer + Sync>(
    swarm: &Swarm,
    deployer: &D,
    request: &DeployRequest,
    out: Output,
) -> Result<Exit, Failure> {
    // The library reports through `&self`; the progress line is mutable state.
    let progress = Mutex::new(Progress::stderr());
    let report_progress = |event: &ProgressEvent<'_>| {
        let mut progress = progress.lock().unwrap_or_else(PoisonError::into_inner);
        match *event {
            ProgressEvent::Deploying { deploy_id, deployer } => {
                progress.step(&format!("deploying {deploy_id} with {deployer}"));
            }
            ProgressEvent::Applied => progress.step("applied; watching"),
            ProgressEvent::Phase { service, phase } => progress.update(&format!("{service}: {phase}")),
            ProgressEvent::Decided(v) => progress.step(&format!("{}: {}", v.service, v.verdict)),
            ProgressEvent::EventsUnavailable { reason } => {
                progress.step(&format!("events unavailable ({reason}); polling, subscribing again shortly"));
            }
            ProgressEvent::EventsResumed => progress.step("events resumed"),
            ProgressEvent::Removed { service } => progress.step(&format!("removed orphan {service}")),
            _ => {}
        }
    };
    let report = match swarm.deploy(deployer, request, &report_progress).await {
        Ok(report) => report,
        Err(e @ DeployError::Deployer { .. }) => {
            let exit = Exit::of(e.kind());
            let DeployError::Deployer { source, applied } = e else { unreachable!("matched above") };
            // The deployer's whole cause chain ("No such file or directory"),
            // then the library's note on what the deploy changed and what to
            // do next, which its message ends with.
            let cause = Failure::from_error(exit, &source).message().to_owned();
            let shown = source.to_string();
            let whole = DeployError::Deployer { source, applied }.to_string();
            let note = whole.strip_prefix(&shown).unwrap_or_default();
            return Err(Failure::new(exit, format!("{cause}{note}")));
        }
        Err(e) => return Err(Failure::of(&e)),
    };
    drop(progress);
    out.emit(&report, |w| {
        writeln!(w, "stack {}: {} (deploy {})", report.stack, report.verdict.verdict, report.deploy_id)?;
        for s in &report.verdict.services {
            writeln!(w, "  {}: {} - {}", s.service, s.verdict, s.reason)?;
            for error in &s.task_errors {
                writeln!(w, "      {error}")?;
            }
        }
        match &report.prune {
            Some(PruneOutcome::Pruned { removed, .. }) if removed.is_empty() => writeln!(w, "prune: no orphans"),
            Some(PruneOutcome::Pruned { removed, .. }) => writeln!(w, "prune: removed {}", removed.join(", ")),
            Some(PruneOutcome::Skipped { reason }) => writeln!(w, "prune: skipped: {reason}"),
            _ => Ok(()),
        }
    })?;
    Ok(if report.verdict.is_success() { Exit::Ok } else { Exit::Failed })
}
