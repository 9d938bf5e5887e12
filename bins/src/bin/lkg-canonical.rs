//! `lkg-canonical`: keep the record of each app's canonical deployment.
#![allow(clippy::print_stderr)] // a binary: warnings go to stderr

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lkg_canonical::{
    AppLock, AppName, Canonicals, DomainScheme, EngineVolumes, Holder, LOCKS_VAR, LockError, Namespace,
    PromotionOutcome, PromotionRequest, Reserved, Run, RunKind, RunResult, Stages, Status, StoreError, Target,
    Timestamp,
};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use serde_json::json;

/// Keep the record of each app's canonical: the long-lived deployment at a
/// stable domain whose data is the known-good state quick upgrade tests
/// start from.
///
/// Records live in <state-dir>/apps/<app>/canonical.json. Commands that change
/// a record take the app's lock first (one run per app at a time); a busy
/// lock fails at once with who holds it, unless --wait SECS is given.
///
/// Exit codes: 0 ok; 1 promotion refused, app has no canonical (show, check);
/// 2 bad input (app name, domain collision, malformed record); 5 lock held by
/// another run, Docker engine or file system unavailable. `lock` exits with
/// its command's code.
#[derive(Debug, Parser)]
#[command(name = "lkg-canonical", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show one app's canonical (exit 1 if it has none), or all of them.
    Show {
        /// The app.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        app: Option<String>,
        /// Every app's canonical, as a table.
        #[arg(long)]
        all: bool,
    },
    /// Apply the promotion rules to a finished run; on success seed or
    /// advance the app's canonical to the run's version, else exit 1 with
    /// every reason.
    ///
    /// Only a cold, full, green run on the app's latest version may promote.
    Promote(PromoteArgs),
    /// Record that the canonical is deployed (warm) or undeployed with its
    /// volumes kept (idle).
    SetStatus {
        /// The app.
        app: String,
        /// warm or idle.
        status: Status,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Remove the app's record. Its stack and volumes are left alone.
    Forget {
        /// The app.
        app: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    // Doc comments here are the --help text, where backticks would show.
    #[allow(clippy::doc_markdown)]
    /// Whether the app has a canonical: a record and every volume it lists,
    /// looked up in the Docker engine of DOCKER_HOST. Exit 0 yes, 1 no.
    Check {
        /// The app.
        app: String,
    },
    #[allow(clippy::doc_markdown)] // --help text, where backticks would show
    /// Run a command while holding the app's lock: one run per app at a time.
    ///
    /// The command inherits the lock, so the app stays locked until it ends
    /// even if lkg-canonical is killed. lkg-canonical and lkg-reconcile
    /// commands it runs on the same app join the lock (through
    /// LKG_CANONICAL_LOCKS) instead of
    /// waiting for it. Exits with the command's exit code (128+N if a signal
    /// N ended it).
    #[command(arg_required_else_help = true)]
    Lock {
        /// The app.
        app: String,
        #[command(flatten)]
        wait: WaitArg,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Print the canonical domain the scheme derives for an app, or the
    /// collision that forbids it (exit 2).
    Domain {
        /// The app.
        app: String,
        #[command(flatten)]
        scheme: SchemeArgs,
    },
}

#[derive(Debug, Args)]
struct PromoteArgs {
    /// The app.
    #[arg(long)]
    app: String,
    /// The version the run tested, e.g. 3.6.0+1.24.2-rootless.
    #[arg(long)]
    version: String,
    /// Its commit.
    #[arg(long)]
    commit: String,
    /// How the run deployed: cold (from scratch) or quick (on the canonical).
    #[arg(long, value_enum)]
    run: RunKind,
    /// Whether the run ran every stage.
    #[arg(long, value_enum)]
    stages: Stages,
    /// The run tested the app's latest version.
    #[arg(long, conflicts_with = "not_latest", required_unless_present = "not_latest")]
    latest: bool,
    /// The run tested a pinned ref (a PR head, an older tag).
    #[arg(long)]
    not_latest: bool,
    /// How the run ended.
    #[arg(long, value_enum)]
    result: RunResult,
    /// A volume holding the canonical's data (repeat for several). Required
    /// to seed; when advancing, omitting it keeps the recorded volumes.
    #[arg(long = "volume", value_name = "NAME")]
    volumes: Vec<String>,
    /// The status to record: warm if the run left the canonical deployed.
    #[arg(long, value_enum, default_value = "warm")]
    status: Status,
    #[command(flatten)]
    scheme: OptionalScheme,
    #[command(flatten)]
    wait: WaitArg,
}

/// The domain scheme; the base domain is optional (needed only to seed).
#[derive(Debug, Args)]
struct OptionalScheme {
    /// The base domain canonicals live under, e.g. ci.example.net. Needed to
    /// seed a canonical; when advancing, the recorded domain is checked against it.
    #[arg(long, env = "LKG_CANONICAL_BASE_DOMAIN", value_name = "DOMAIN")]
    base_domain: Option<String>,
    #[command(flatten)]
    rest: NamespaceArgs,
}

#[derive(Debug, Args)]
struct SchemeArgs {
    /// The base domain canonicals live under, e.g. ci.example.net.
    #[arg(long, env = "LKG_CANONICAL_BASE_DOMAIN", value_name = "DOMAIN")]
    base_domain: String,
    #[command(flatten)]
    rest: NamespaceArgs,
}

#[derive(Debug, Args)]
struct NamespaceArgs {
    /// The label prefix of canonical domains: <namespace>-<app>.<base>.
    #[arg(long, env = "LKG_CANONICAL_NAMESPACE", default_value = lkg_canonical::DEFAULT_NAMESPACE)]
    namespace: String,
    /// A domain something else already uses, and who: DOMAIN=USER, e.g.
    /// "warm-keycloak.ci.example.net=live keycloak SSO". Repeatable; the
    /// environment variable takes a comma-separated list.
    #[arg(long = "reserved", env = "LKG_CANONICAL_RESERVED", value_delimiter = ',', value_name = "DOMAIN=USER")]
    reserved: Vec<String>,
}

#[derive(Debug, Args)]
struct WaitArg {
    /// Wait up to SECS for the app's lock if another run holds it (default: fail at once).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    wait: f64,
}

fn main() -> std::process::ExitCode {
    let mut command_exit = None;
    let exit = lkg_cli::run(|| {
        let cli = Cli::parse();
        if let Command::Lock { app, wait, command } = &cli.command {
            let canonicals = Canonicals::new(&cli.common.state_dir()?);
            command_exit = Some(run_locked(&canonicals, &app_name(app)?, wait, command)?);
            return Ok(Exit::Ok);
        }
        let out = Output::new(cli.common.json);
        let state = cli.common.state_dir()?;
        let canonicals = Canonicals::new(&state);
        match cli.command {
            Command::Show { app: Some(app), .. } => show(&canonicals, &app_name(&app)?, out),
            Command::Show { app: None, .. } => {
                let readable = canonicals.all_checked().map_err(|e| Failure::of(&e))?;
                let (records, unreadable) = (readable.records, readable.unreadable);
                // One bad record never hides the others: they are shown, it is named.
                for (app, error) in &unreadable {
                    eprintln!("lkg-canonical: warning: app {app}: {}", lkg_core::render_chain(error));
                }
                out.emit(&records, |w| w.write_all(lkg_canonical::table(&records).as_bytes()))?;
                Ok(Exit::Ok)
            }
            Command::Promote(args) => promote(&canonicals, &args, out),
            Command::SetStatus { app, status, wait } => {
                let name = app_name(&app)?;
                // Refused before the lock: a refused command leaves nothing behind.
                canonicals.existing(&name).map_err(|e| Failure::of(&e))?;
                let lock = lock(&canonicals, &name, "lkg-canonical set-status", &wait)?;
                let record = canonicals.set_status(&lock, status, Timestamp::now()).map_err(|e| Failure::of(&e))?;
                release(lock)?;
                out.emit(&record, |w| write!(w, "{record}"))?;
                Ok(Exit::Ok)
            }
            Command::Forget { app, wait } => {
                let name = app_name(&app)?;
                if !canonicals.app_dir(&name).exists() {
                    // Nothing was ever recorded: nothing to lock, nothing to create.
                    let value = json!({"app": app, "forgotten": null, "removed": false});
                    out.emit(&value, |w| writeln!(w, "{app} had no canonical record; nothing to forget"))?;
                    return Ok(Exit::Ok);
                }
                let lock = lock(&canonicals, &name, "lkg-canonical forget", &wait)?;
                // `forget` drops a record too broken to read (what the
                // "malformed" error tells the user to do) and returns None
                // for it, as for no record at all: tell the two apart.
                let unreadable = matches!(
                    canonicals.get(lock.app()),
                    Err(StoreError::Malformed { .. } | StoreError::WrongApp { .. })
                );
                let record = canonicals.forget(&lock).map_err(|e| Failure::of(&e))?;
                release(lock)?;
                let removed = record.is_some() || unreadable;
                let value = json!({"app": app, "forgotten": record, "removed": removed});
                out.emit(&value, |w| match &record {
                    None if unreadable => writeln!(w, "removed the unreadable canonical record of {app}"),
                    Some(r) if r.volumes.is_empty() => writeln!(w, "forgot the canonical of {app} ({})", r.version),
                    Some(r) => writeln!(
                        w,
                        "forgot the canonical of {app} ({}); its volumes are still there: {}",
                        r.version,
                        r.volumes.join(", ")
                    ),
                    None => writeln!(w, "{app} had no canonical record; nothing to forget"),
                })?;
                Ok(Exit::Ok)
            }
            Command::Check { app } => check(&canonicals, &app_name(&app)?, out),
            Command::Domain { app, scheme } => {
                let app = app_name(&app)?;
                let scheme = build_scheme(&scheme.base_domain, &scheme.rest)?;
                let domain = scheme.domain_for(&app).map_err(|e| Failure::of(&e))?;
                out.emit(&json!({"app": app, "domain": domain, "scheme": scheme}), |w| writeln!(w, "{domain}"))?;
                Ok(Exit::Ok)
            }
            Command::Lock { .. } => unreachable!("handled above"),
        }
    });
    command_exit.map_or(exit, std::process::ExitCode::from)
}

/// Runs `command` under the app's lock; returns its exit code.
fn run_locked(
    canonicals: &Canonicals,
    app: &AppName,
    wait: &WaitArg,
    command: &[std::ffi::OsString],
) -> Result<u8, Failure> {
    let shown = command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let lock = lock(canonicals, app, &format!("lkg-canonical lock -- {shown}"), wait)?;
    lock.share_with_children().map_err(|e| Failure::of(&e))?;
    let locks = lock.locks_for_children(std::env::var(LOCKS_VAR).ok().as_deref());
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env(LOCKS_VAR, locks)
        .status()
        .map_err(|e| Failure::new(Exit::Environment, format!("cannot run {shown}: {e}")));
    // Released only once the command is done: unlocking would free it for the command too.
    release(lock)?;
    let status = status?;
    Ok(match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    })
}

fn show(canonicals: &Canonicals, app: &AppName, out: Output) -> Result<Exit, Failure> {
    let record = canonicals.get(app).map_err(|e| Failure::of(&e))?;
    out.emit(&record, |w| match &record {
        Some(r) => write!(w, "{r}"),
        None => writeln!(w, "{app} has no canonical"),
    })?;
    Ok(if record.is_some() { Exit::Ok } else { Exit::Failed })
}

fn promote(canonicals: &Canonicals, args: &PromoteArgs, out: Output) -> Result<Exit, Failure> {
    let app = app_name(&args.app)?;
    let scheme = args.scheme.base_domain.as_deref().map(|base| build_scheme(base, &args.scheme.rest)).transpose()?;
    let run = Run {
        kind: args.run,
        stages: args.stages,
        target: if args.latest { Target::Latest } else { Target::Pinned },
        result: args.result,
    };
    let request = PromotionRequest {
        version: args.version.clone(),
        commit: args.commit.clone(),
        run,
        scheme: scheme.as_ref(),
        volumes: args.volumes.clone(),
        status: args.status,
        now: Timestamp::now(),
    };
    // Refused before the lock is taken: bad input and a run the rules
    // refuse change nothing, and leave nothing behind.
    let outcome = if let Some(refused) = canonicals.refusal(&app, &request).map_err(|e| Failure::of(&e))? {
        refused
    } else {
        let lock = lock(canonicals, &app, "lkg-canonical promote", &args.wait)?;
        let outcome = canonicals.promote(&lock, &request).map_err(|e| Failure::of(&e))?;
        release(lock)?;
        outcome
    };
    out.emit(&outcome, |w| write!(w, "{outcome}"))?;
    Ok(if matches!(outcome, PromotionOutcome::Refused { .. }) { Exit::Failed } else { Exit::Ok })
}

fn check(canonicals: &Canonicals, app: &AppName, out: Output) -> Result<Exit, Failure> {
    let presence = lkg_cli::block_on(async {
        let docker = lkg_swarm::docker::connect().await.map_err(|e| Failure::from_error(Exit::Environment, &e))?;
        canonicals.presence(app, &EngineVolumes::new(docker)).await.map_err(|e| Failure::of(&e))
    })??;
    let value = json!({"app": app, "has_canonical": presence.is_present(), "presence": presence});
    out.emit(&value, |w| writeln!(w, "{app}: {presence}"))?;
    Ok(if presence.is_present() { Exit::Ok } else { Exit::Failed })
}

fn lock(canonicals: &Canonicals, app: &AppName, purpose: &str, wait: &WaitArg) -> Result<AppLock, Failure> {
    let wait = Duration::try_from_secs_f64(wait.wait)
        .map_err(|_| Failure::new(Exit::Usage, format!("--wait {} is not a number of seconds", wait.wait)))?;
    let mut progress = Progress::stderr();
    // Joined instead when started by `lkg-canonical lock APP -- ...`, which holds it for us.
    let lock = canonicals
        .lock_or_join(app, purpose, wait, |holder: &Holder| {
            progress.step(&format!("waiting up to {wait:?} for the lock of {app}, held by {holder}"));
        })
        // A held lock is the environment's state, not bad input (docs/exit-codes.md).
        .map_err(|e: LockError| Failure::of(&e))?;
    if let Some(previous) = lock.took_over_from() {
        eprintln!(
            "lkg-canonical: warning: took over the lock of {app} from pid {} on {} ({}, since {:.0}), which ended \
             without releasing it; its run may have left work half done",
            previous.pid, previous.host, previous.purpose, previous.started
        );
    }
    Ok(lock)
}

fn release(lock: AppLock) -> Result<(), Failure> {
    lock.release().map_err(|e| Failure::of(&e))
}

fn app_name(name: &str) -> Result<AppName, Failure> {
    AppName::new(name).map_err(|e| Failure::of(&e))
}

fn build_scheme(base: &str, rest: &NamespaceArgs) -> Result<DomainScheme, Failure> {
    let mut scheme = DomainScheme::new(base)
        .and_then(|s| Ok(s.namespace(Namespace::new(&rest.namespace)?)))
        .map_err(|e| Failure::of(&e))?;
    for spec in &rest.reserved {
        scheme = scheme.reserve(Reserved::parse(spec).map_err(|e| Failure::of(&e))?);
    }
    Ok(scheme)
}
