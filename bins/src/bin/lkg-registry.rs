//! `lkg-registry`: inspect, copy, promote, sign and verify images in OCI
//! registries. Thin: parse, call `lkg_registry`, print, map to an exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: stdout/stderr are its interface

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_registry::promote::{
    Artifact, Outcome, PromoteError, PromoteOptions, PromotionPlan, PromotionReport, PromotionState,
};
use lkg_registry::sign::{PublicKey, SigningKey, VerifyError};
use lkg_registry::{Client, ClientOptions, Platform, Reference, RegistryError, copy, inspect, sign};

/// Inspect, copy, promote and sign images in any OCI registry.
///
/// Credentials come from REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
/// $DOCKER_CONFIG/config.json or ~/.docker/config.json (and their credential
/// helpers). Loopback registries are spoken to over plain HTTP; others only
/// over HTTPS unless listed with --insecure-registry.
///
/// Exit codes: 0 ok (promotion complete or nothing to move, signature
/// verified); 1 failed (a signature does not verify, content does not match
/// its digest, a promoted tag names something else, the registry refused the
/// work); 2 bad input (malformed reference or key, an image or
/// candidate that does not exist: nothing was changed); 4 partial (a
/// promotion moved some stable tags: re-run it, or --revert); 5 environment
/// (registry unreachable, auth refused, promotion locked by another run).
// Doc comments here are the `--help` text, where backticks would show.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Parser)]
#[command(name = "lkg-registry", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    common: Common,

    /// Allow plain HTTP to this registry (host[:port]); repeatable.
    #[arg(long, global = true, value_name = "HOST")]
    insecure_registry: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[allow(clippy::doc_markdown)] // `--help` text
#[derive(Debug, Subcommand)]
enum Command {
    /// Show an image's digest, media type, labels, creation time, platforms and layers.
    Inspect {
        /// The image: host[:port]/repo[:tag][@digest] (docker:// accepted).
        reference: String,
    },
    /// Copy an image by digest (every platform unless --platform is given).
    Copy {
        /// The source image.
        source: String,
        /// The destination (a tag is written last).
        destination: String,
        /// Only this platform (os/arch[/variant]); repeatable.
        #[arg(long, value_name = "PLATFORM")]
        platform: Vec<String>,
    },
    /// Promote candidates to stable tags together, journalled: all tags move, or the result says which did.
    ///
    /// Exit codes: 0 complete (or nothing to do), 4 partial (re-run the same command
    /// to finish, or add --revert), 1 verification failed, 5 registry unreachable
    /// with stable untouched, 2 bad input (e.g. a candidate is missing: nothing touched).
    Promote {
        /// CANDIDATE=STABLE[,EXTRA_TAG...], e.g.
        /// ghcr.io/o/img-candidate:43=ghcr.io/o/img:latest,stable-20260522; repeatable.
        #[arg(long = "artifact", value_name = "SPEC", required = true)]
        artifacts: Vec<String>,
        /// Sign every stable digest with this cosign key (password in COSIGN_PASSWORD).
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
        /// Put back the stable digests recorded before this plan's promotion.
        #[arg(long, conflicts_with = "sign_key")]
        revert: bool,
    },
    /// Sign an image (cosign format) with a private key; existing signatures are kept.
    Sign {
        /// The image (a tag is resolved to its digest first).
        reference: String,
        /// PKCS#8 PEM or cosign encrypted key (password in COSIGN_PASSWORD).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
    /// Verify an image's cosign signature with a public key (exit 1 if it does not verify).
    Verify {
        /// The image.
        reference: String,
        /// The SPKI PEM public key (cosign.pub).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
}

fn parse_ref(s: &str) -> Result<Reference, Failure> {
    s.parse().map_err(|e: RegistryError| Failure::of(&e))
}

fn password() -> Option<Vec<u8>> {
    std::env::var_os("COSIGN_PASSWORD").map(std::ffi::OsString::into_encoded_bytes)
}

fn main() -> ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        let out = Output::new(cli.common.json);
        let options = ClientOptions { insecure_registries: cli.insecure_registry.clone(), ..ClientOptions::default() };
        let client = Client::new(options).map_err(|e| Failure::of(&e))?;
        let runtime = lkg_registry::runtime().map_err(|e| lkg_cli::runtime_failure(&e))?;
        runtime.block_on(run(&cli, &client, out))
    })
}

#[allow(clippy::too_many_lines)] // one arm per subcommand, each parse -> call -> print
async fn run(cli: &Cli, client: &Client, out: Output) -> Result<Exit, Failure> {
    match &cli.command {
        Command::Inspect { reference } => {
            let r = parse_ref(reference)?;
            let info = inspect::inspect(client, &r).await.map_err(|e| Failure::of(&e))?;
            out.emit(&info, |w| print_inspection(w, &info))?;
            Ok(Exit::Ok)
        }
        Command::Copy { source, destination, platform } => {
            let src = parse_ref(source)?;
            let dst = parse_ref(destination)?;
            let platforms = platform
                .iter()
                .map(|p| p.parse::<Platform>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::of(&e))?;
            let mut progress = Progress::stderr();
            progress.update(&format!("copying {src} to {dst}"));
            let report =
                copy::copy(client, &src, &dst, &copy::CopyOptions { platforms }).await.map_err(|e| Failure::of(&e))?;
            progress.clear();
            out.emit(&report, |w| {
                writeln!(w, "copied {src} to {dst}")?;
                if let Some(d) = &report.digest {
                    writeln!(w, "  digest     {d}")?;
                }
                writeln!(
                    w,
                    "  manifests  {} written, {} already there",
                    report.manifests_pushed, report.manifests_existing
                )?;
                writeln!(
                    w,
                    "  blobs      {} mounted, {} already there, {} uploaded ({})",
                    report.blobs_mounted,
                    report.blobs_existing,
                    report.blobs_uploaded,
                    Progress::bytes(report.bytes_uploaded)
                )
            })?;
            Ok(Exit::Ok)
        }
        Command::Promote { artifacts, sign_key, revert } => {
            let plan = PromotionPlan {
                artifacts: artifacts
                    .iter()
                    .map(|a| a.parse::<Artifact>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| Failure::of(&e))?,
            };
            let sign_key = match sign_key {
                Some(path) => Some(SigningKey::from_file(path, password().as_deref()).map_err(|e| Failure::of(&e))?),
                None => None,
            };
            let options = PromoteOptions { state_dir: cli.common.state_dir()?, sign_key };
            let result = if *revert {
                lkg_registry::promote::revert(client, &plan, &options).await
            } else {
                lkg_registry::promote::promote(client, &plan, &options).await
            };
            let report = result.map_err(|e| promote_failure(&e))?;
            out.emit(&report, |w| print_promotion(w, &report))?;
            Ok(match report.outcome {
                Outcome::Ok => Exit::Ok,
                Outcome::Partial => Exit::Partial,
                Outcome::VerificationFailed | Outcome::Failed => Exit::Failed,
                Outcome::Unreachable => Exit::Environment,
            })
        }
        Command::Sign { reference, key } => {
            let r = parse_ref(reference)?;
            let key = SigningKey::from_file(key, password().as_deref()).map_err(|e| Failure::of(&e))?;
            let report = sign::sign(client, &r, &key).await.map_err(|e| Failure::of(&e))?;
            out.emit(&report, |w| {
                let what = if report.added { "signed" } else { "already signed by this key:" };
                writeln!(
                    w,
                    "{what} {} ({} signature(s) in {})",
                    report.reference, report.signatures, report.signature_tag
                )
            })?;
            Ok(Exit::Ok)
        }
        Command::Verify { reference, key } => {
            let r = parse_ref(reference)?;
            let key = PublicKey::from_file(key).map_err(|e| Failure::of(&e))?;
            match sign::verify(client, &r, &key).await {
                Ok(report) => {
                    out.emit(&serde_json::json!({"verified": true, "report": report}), |w| {
                        writeln!(
                            w,
                            "verified: {} has {} valid signature(s) by this key",
                            report.reference,
                            report.verified.len()
                        )
                    })?;
                    Ok(Exit::Ok)
                }
                Err(VerifyError::Registry(e)) => Err(Failure::of(&e)),
                Err(e) => {
                    let kind = match &e {
                        VerifyError::NoSignature { .. } => "no_signature",
                        VerifyError::WrongKey { .. } => "wrong_key",
                        VerifyError::TamperedPayload { .. } => "tampered_payload",
                        VerifyError::DigestMismatch { .. } => "digest_mismatch",
                        VerifyError::LayerDigestMismatch { .. } => "layer_digest_mismatch",
                        _ => "invalid",
                    };
                    out.emit(&serde_json::json!({"verified": false, "reason": kind, "error": e.to_string()}), |w| {
                        writeln!(w, "NOT verified: {e}")
                    })?;
                    Ok(Exit::Failed)
                }
            }
        }
    }
}

fn promote_failure(e: &PromoteError) -> Failure {
    let failure = Failure::of(e);
    match e {
        PromoteError::CandidateMissing { .. }
        | PromoteError::InvalidPlan(_)
        | PromoteError::NoJournal { .. }
        | PromoteError::Registry(_) => failure.with_hint("stable tags were not touched"),
        PromoteError::Locked { .. } => failure.with_hint("wait for the other run to finish, then re-run"),
        _ => failure,
    }
}

fn print_inspection(w: &mut dyn Write, info: &inspect::Inspection) -> std::io::Result<()> {
    writeln!(w, "{}", info.reference)?;
    writeln!(w, "  digest      {}", info.digest)?;
    writeln!(w, "  media type  {}", info.media_type)?;
    let index = info.labels.is_none();
    if index {
        writeln!(
            w,
            "  an index of {} platform(s); the digest above is the index's, not any platform's",
            info.platforms.len()
        )?;
    }
    for p in &info.platforms {
        if index {
            writeln!(w, "  {}  {}", p.platform, p.digest)?;
        } else {
            writeln!(w, "  platform    {}", p.platform)?;
        }
        let pad = if index { "    " } else { "  " };
        if let Some(c) = &p.created {
            writeln!(w, "{pad}created     {c}")?;
        }
        let total: u64 = p.layers.iter().map(|l| l.size).sum();
        writeln!(w, "{pad}layers      {} ({})", p.layers.len(), Progress::bytes(total))?;
        if p.labels.is_empty() {
            writeln!(w, "{pad}labels      none")?;
        } else {
            writeln!(w, "{pad}labels")?;
            for (k, v) in &p.labels {
                writeln!(w, "{pad}  {k}={v}")?;
            }
        }
    }
    Ok(())
}

fn print_promotion(w: &mut dyn Write, r: &PromotionReport) -> std::io::Result<()> {
    let state = match r.state {
        PromotionState::Complete => "complete",
        PromotionState::Partial => "PARTIAL",
        PromotionState::Unchanged => "unchanged",
    };
    let resumed = if r.resumed { " (resumed an earlier run)" } else { "" };
    writeln!(w, "{} {state}{resumed}", r.action)?;
    for a in &r.artifacts {
        let previous = a.previous_digest.as_ref().map_or("nothing".to_owned(), ToString::to_string);
        writeln!(w, "  {} -> {}", a.source, a.stable)?;
        writeln!(w, "    digest    {}", a.digest)?;
        writeln!(w, "    previous  {previous}")?;
        let moved = if a.tags_moved.is_empty() { "none".to_owned() } else { a.tags_moved.join(", ") };
        writeln!(w, "    moved     {moved}{}", if a.signed { "  (signed)" } else { "" })?;
    }
    if r.action == "promote" {
        writeln!(w, "  blob bytes uploaded: {}", r.bytes_uploaded)?;
    }
    for m in &r.mismatches {
        let show = |d: &Option<lkg_registry::Digest>| d.as_ref().map_or("nothing".to_owned(), ToString::to_string);
        writeln!(w, "  WRONG: {} names {}, expected {}", m.tag, show(&m.actual), show(&m.expected))?;
    }
    if let Some(e) = &r.error {
        writeln!(w, "  stopped by: {e}")?;
    }
    for n in &r.notes {
        writeln!(w, "  note: {n}")?;
    }
    match (r.action, r.outcome) {
        ("promote", Outcome::Partial) => writeln!(
            w,
            "  stable is half-promoted. Next: re-run this exact command to finish, or add --revert to restore the previous digests (journal {})",
            r.journal.display()
        )?,
        ("promote", Outcome::Unreachable | Outcome::Failed) => {
            writeln!(w, "  no stable tag moved: stable is as it was. Re-run when the registry answers.")?;
        }
        ("promote", Outcome::VerificationFailed) => writeln!(
            w,
            "  a stable tag does not name its candidate after the move (another writer?). Inspect the tags above, then re-run or --revert."
        )?,
        ("revert", Outcome::Partial | Outcome::VerificationFailed) => {
            writeln!(w, "  the revert is unfinished: re-run the same command with --revert")?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn promote_needs_an_artifact_and_revert_excludes_signing() {
        assert!(Cli::try_parse_from(["lkg-registry", "promote"]).is_err());
        assert!(
            Cli::try_parse_from(["lkg-registry", "promote", "--artifact", "a:1=a:2", "--revert", "--sign-key", "k"])
                .is_err()
        );
        let cli = Cli::try_parse_from(["lkg-registry", "--json", "promote", "--artifact", "a:1=a:2,audit"]).unwrap();
        assert!(cli.common.json);
    }

    #[test]
    fn errors_map_to_documented_exit_codes() {
        let unreachable = RegistryError::Unreachable { registry: "r".into(), reason: "down".into() };
        assert_eq!(Failure::of(&unreachable).exit(), Exit::Environment);
        let missing = RegistryError::NotFound { what: "manifest x".into() };
        assert_eq!(Failure::of(&missing).exit(), Exit::Usage);
        let e = PromoteError::CandidateMissing { candidate: "x".into() };
        assert_eq!(promote_failure(&e).exit(), Exit::Usage);
    }
}
