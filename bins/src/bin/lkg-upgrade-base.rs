//! `lkg-upgrade-base`: choose the version to test an upgrade from.

use std::path::PathBuf;

use clap::Parser;
use lkg_canonical::AppName;
use lkg_cli::{Common, Exit, Failure, Output};
use lkg_upgrade_base::overlay::{self, OverlayDecision};
use lkg_upgrade_base::{BasePlan, Inputs, LastGreen, Order, RecipeVersion, overlays_report, resolve};
use serde::Serialize;

// Doc comments here are the --help text, where backticks would show.
#[allow(clippy::doc_markdown)]
/// Choose the version to test an upgrade from, over a local git repository.
///
/// Order, each step recorded with why it was taken or passed over:
/// --override; last-green (--last-green, or the canonical of --app under
/// --state-dir) unless it is the head's own version; the tip of the target
/// branch (origin/main, main, then origin/master, master) unless head is that
/// tip or behind it; the newest release tag strictly older than head; else
/// skip. --order reorders or drops the middle three.
///
/// Versions are <recipe-semver>+<app-version> tags (3.5.3+1.24.2-rootless);
/// other tags are skipped with a warning. The head's version is the highest
/// version tag at head, or --head-version.
///
/// Exit codes: 0 a plan (including "skip"); 2 bad input (not a repository,
/// unknown --head or --override, malformed version or record); 5 the
/// repository or state dir cannot be read, or the repository is damaged (an
/// object missing where history is not cut by a shallow clone or grafts).
#[derive(Debug, Parser)]
#[command(name = "lkg-upgrade-base", version)]
struct Cli {
    #[command(flatten)]
    common: Common,
    /// The recipe repository (bare, or the top of a work tree).
    #[arg(long, value_name = "PATH")]
    repo: PathBuf,
    /// The revision under test: a branch, tag, commit or HEAD.
    #[arg(long, value_name = "REF", default_value = "HEAD")]
    head: String,
    /// The branch a change merges onto; main falls back to master.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    target_branch: String,
    /// An explicit base: a version tag, or any branch, tag or commit.
    #[arg(long = "override", value_name = "VERSION|REF")]
    override_base: Option<String>,
    /// The last-green version (the version of the app's canonical).
    #[arg(long, value_name = "VERSION", conflicts_with = "app")]
    last_green: Option<String>,
    /// Read last-green from this app's canonical record under --state-dir.
    #[arg(long, value_name = "APP")]
    app: Option<String>,
    /// The head's version, when no version tag is at head.
    #[arg(long, value_name = "VERSION")]
    head_version: Option<String>,
    /// The middle steps, comma-separated, in the order to try them
    /// (default last-green,target-branch,older-tag); those left out are not tried.
    #[arg(long, value_name = "STEPS")]
    order: Option<String>,
    /// A previous/ directory of base overlays (previous/<version>/...): report
    /// which apply to the chosen base and which are stale.
    #[arg(long, value_name = "DIR")]
    overlays: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    plan: &'a BasePlan,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlays: Option<&'a [OverlayDecision]>,
}

fn main() -> std::process::ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        let out = Output::new(cli.common.json);
        let order =
            cli.order.as_deref().map(str::parse::<Order>).transpose().map_err(|e| Failure::of(&e))?.unwrap_or_default();
        // The parse error quotes the value; name the flag it came from.
        let version = |flag: &str, value: &str| {
            RecipeVersion::parse(value).map_err(|e| Failure::new(Exit::Usage, format!("{flag} {e}")))
        };
        let head_version = cli.head_version.as_deref().map(|v| version("--head-version", v)).transpose()?;
        let last_green = match (&cli.last_green, &cli.app) {
            (Some(given), _) => {
                // A typo here would otherwise pass the step over and plan from
                // another base with exit 0, as --head-version does not.
                version("--last-green", given)?;
                Some(LastGreen { version: given.clone(), commit: None, from: "--last-green".to_owned() })
            }
            (None, Some(app)) => {
                let app = AppName::new(app).map_err(|e| Failure::of(&e))?;
                let state = cli.common.state_dir()?;
                lkg_upgrade_base::last_green_from_canonical(&state, &app).map_err(|e| Failure::of(&e))?
            }
            (None, None) => None,
        };
        let inputs = Inputs {
            target_branch: cli.target_branch.clone(),
            override_base: cli.override_base.clone(),
            last_green,
            head_version,
            order,
            ..Inputs::new(&cli.head)
        };
        let plan = resolve(&cli.repo, &inputs).map_err(|e| Failure::of(&e))?;
        let decisions = match &cli.overlays {
            Some(dir) => Some(overlay::decide(&overlay::scan(dir).map_err(|e| Failure::of(&e))?, &plan)),
            None => None,
        };
        let report = Report { plan: &plan, overlays: decisions.as_deref() };
        out.emit(&report, |w| {
            write!(w, "{plan}")?;
            match &decisions {
                Some(d) => w.write_all(overlays_report(d).as_bytes()),
                None => Ok(()),
            }
        })?;
        Ok(Exit::Ok)
    })
}
