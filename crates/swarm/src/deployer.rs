//! Who applies a stack: `docker stack deploy`, or any command in its place.
//!
//! lkg does not convert compose files to service specs itself: the tool users
//! already run does, and lkg watches the result. Every deployer gets the
//! user's compose files plus one generated overlay (see
//! [`ComposeFiles::deploy_overlay`](crate::ComposeFiles::deploy_overlay)) that
//! stamps the deploy id; a deployer that drops the overlay leaves lkg unable
//! to tell this deploy's status from an earlier one, and the verdict says so.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::DeployId;

/// What a deployer is asked to apply.
#[derive(Debug, Clone, Copy)]
pub struct DeployInvocation<'a> {
    /// The stack name.
    pub stack: &'a str,
    /// The compose files in `-c` order, the deploy-id overlay last.
    pub files: &'a [PathBuf],
    /// The overlay alone.
    pub overlay: &'a Path,
    /// The deploy id the overlay stamps.
    pub deploy_id: &'a DeployId,
    /// Extra environment for compose variable interpolation.
    pub env: &'a [(String, String)],
}

/// Applies a stack's compose files to the swarm and returns once the specs
/// are submitted (not once they converge: lkg watches that itself).
pub trait Deployer {
    /// Applies the stack.
    fn deploy(&self, invocation: &DeployInvocation<'_>) -> impl Future<Output = Result<(), DeployerError>> + Send;

    /// A short description for reports ("docker stack deploy").
    fn describe(&self) -> String;
}

/// The deployer's command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployerError {
    /// The program could not be started.
    #[error("cannot run {program}: is it installed and on PATH?")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
}

/// `docker stack deploy --resolve-image` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum ResolveImage {
    /// Ask the registry for the digest of every image (docker's default).
    #[default]
    Always,
    /// Only for images whose reference changed.
    Changed,
    /// Use image references as written (images present only on the node).
    Never,
}

impl ResolveImage {
    fn as_str(self) -> &'static str {
        match self {
            ResolveImage::Always => "always",
            ResolveImage::Changed => "changed",
            ResolveImage::Never => "never",
        }
    }
}

/// The real deployer: `docker stack deploy -c ... -c overlay STACK`.
///
/// Works with the 20.10 CLI (no `--detach` flag: it never waits) and with
/// newer ones (25+), where `--detach=true` is passed explicitly so the CLI
/// returns once the specs are submitted and prints no notice about the flag.
#[derive(Debug)]
pub struct StackDeployer {
    program: PathBuf,
    host: Option<String>,
    resolve_image: ResolveImage,
    with_registry_auth: bool,
    has_detach: OnceCell<bool>,
}

impl StackDeployer {
    /// `docker` from PATH, talking to `DOCKER_HOST`.
    pub fn new() -> StackDeployer {
        StackDeployer {
            program: PathBuf::from("docker"),
            host: None,
            resolve_image: ResolveImage::default(),
            with_registry_auth: false,
            has_detach: OnceCell::new(),
        }
    }

    /// Uses another docker CLI binary (e.g. `/usr/bin/docker`).
    #[must_use]
    pub fn program(mut self, program: impl Into<PathBuf>) -> StackDeployer {
        self.program = program.into();
        self
    }

    /// Sets `DOCKER_HOST` for the CLI (default: inherited).
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> StackDeployer {
        self.host = Some(host.into());
        self
    }

    /// `--resolve-image` (default `always`, as docker's).
    #[must_use]
    pub fn resolve_image(mut self, mode: ResolveImage) -> StackDeployer {
        self.resolve_image = mode;
        self
    }

    /// `--with-registry-auth`: send registry credentials to the swarm agents.
    #[must_use]
    pub fn with_registry_auth(mut self, yes: bool) -> StackDeployer {
        self.with_registry_auth = yes;
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.stdin(Stdio::null()).kill_on_drop(true);
        if let Some(host) = &self.host {
            command.env("DOCKER_HOST", host);
        }
        command
    }

    /// Whether this CLI knows `stack deploy --detach` (docker 25+; Debian's
    /// 20.10 CLI does not, and rejects the flag).
    async fn has_detach(&self) -> Result<bool, DeployerError> {
        self.has_detach
            .get_or_try_init(|| async {
                let output =
                    self.command().args(["stack", "deploy", "--help"]).output().await.map_err(|source| {
                        DeployerError::Spawn { program: self.program.display().to_string(), source }
                    })?;
                Ok(String::from_utf8_lossy(&output.stdout).contains("--detach"))
            })
            .await
            .copied()
    }
}

impl Default for StackDeployer {
    fn default() -> StackDeployer {
        StackDeployer::new()
    }
}

impl Deployer for StackDeployer {
    async fn deploy(&self, invocation: &DeployInvocation<'_>) -> Result<(), DeployerError> {
        let mut args: Vec<String> = vec!["stack".into(), "deploy".into()];
        if self.has_detach().await? {
            args.push("--detach=true".into());
        }
        args.extend(["--resolve-image".into(), self.resolve_image.as_str().into()]);
        if self.with_registry_auth {
            args.push("--with-registry-auth".into());
        }
        for file in invocation.files {
            args.push("-c".into());
            args.push(file.display().to_string());
        }
        args.push(invocation.stack.to_owned());
        let mut command = self.command();
        command.args(&args).envs(invocation.env.iter().map(|(k, v)| (k, v)));
        run(command, &self.program.display().to_string(), &args).await
    }

    fn describe(&self) -> String {
        format!("{} stack deploy", self.program.display())
    }
}

/// Any command in place of `docker stack deploy`, e.g. `abra app deploy`.
///
/// Arguments may contain placeholders: `{stack}`, `{deploy_id}`, `{overlay}`
/// (the overlay file) and `{compose}` (all files, overlay last, joined with
/// `:` as in `COMPOSE_FILE`). The same values are in the environment as
/// `LKG_STACK`, `LKG_DEPLOY_ID`, `LKG_DEPLOY_OVERLAY` and `LKG_COMPOSE_FILES`.
/// The command must apply the overlay (for abra: add it to the app's
/// `COMPOSE_FILE`), or lkg cannot attribute the update to this deploy.
#[derive(Debug, Clone)]
pub struct CommandDeployer {
    program: String,
    args: Vec<String>,
}

impl CommandDeployer {
    /// `program` with `args`.
    pub fn new(program: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> CommandDeployer {
        CommandDeployer { program: program.into(), args: args.into_iter().map(Into::into).collect() }
    }

    /// Splits a command line on whitespace (no quoting: wrap anything more
    /// complex in a script). `None` if it is empty.
    pub fn parse(command_line: &str) -> Option<CommandDeployer> {
        let mut words = command_line.split_whitespace();
        let program = words.next()?;
        Some(CommandDeployer::new(program, words))
    }
}

impl Deployer for CommandDeployer {
    async fn deploy(&self, invocation: &DeployInvocation<'_>) -> Result<(), DeployerError> {
        let compose = invocation.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(":");
        let overlay = invocation.overlay.display().to_string();
        let args: Vec<String> = self
            .args
            .iter()
            .map(|arg| {
                arg.replace("{stack}", invocation.stack)
                    .replace("{deploy_id}", invocation.deploy_id.as_str())
                    .replace("{overlay}", &overlay)
                    .replace("{compose}", &compose)
            })
            .collect();
        let mut command = Command::new(&self.program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .envs(invocation.env.iter().map(|(k, v)| (k, v)))
            .env("LKG_STACK", invocation.stack)
            .env("LKG_DEPLOY_ID", invocation.deploy_id.as_str())
            .env("LKG_DEPLOY_OVERLAY", &overlay)
            .env("LKG_COMPOSE_FILES", &compose);
        run(command, &self.program, &args).await
    }

    fn describe(&self) -> String {
        std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}

async fn run(mut command: Command, program: &str, args: &[String]) -> Result<(), DeployerError> {
    let output = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| DeployerError::Spawn { program: program.to_owned(), source })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    // The end of stderr holds the error; a long progress log before it does not help.
    let tail_start = stderr.char_indices().rev().nth(1999).map_or(0, |(i, _)| i);
    Err(DeployerError::Failed {
        command: format!("{program} {}", args.join(" ")),
        status: output.status.to_string(),
        stderr: stderr[tail_start..].to_owned(),
    })
}

impl lkg_core::Classify for DeployerError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            // A deployer that cannot even start (no docker CLI, a typo in the
            // command) is the environment, not a verdict on the deploy.
            DeployerError::Spawn { .. } => lkg_core::FailureKind::Environment,
            _ => lkg_core::FailureKind::Verdict,
        }
    }
}
