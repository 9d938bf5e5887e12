//! `lkg-registry`: inspect, copy, promote, sign and verify images in OCI
//! registries. Thin: parse, call `lkg_registry`, print, map to an exit code.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary: stdout/stderr are its interface

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_registry::cosign::{self, Accept, SignFormat, Signed, Verification};
use lkg_registry::promote::{
    Artifact, Outcome, PromoteError, PromoteOptions, PromotionPlan, PromotionReport, PromotionState,
};
use lkg_registry::sign::{PublicKey, SigningKey};
use lkg_registry::{Client, ClientOptions, Platform, Reference, Referrers, RegistryError, copy, inspect};

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
        /// Also copy the image's referrers (signatures, SBOMs, attestations; 4 levels deep).
        #[arg(long)]
        referrers: bool,
    },
    /// List the referrers of an image (OCI 1.1: signatures, SBOMs, attestations).
    ///
    /// Uses the registry's referrers API, or the referrers tag schema (the index
    /// tagged sha256-<hex>) where the registry has none.
    Referrers {
        /// The image (a tag is resolved to its digest first).
        reference: String,
        /// Only referrers of this artifact type (e.g. application/spdx+json).
        #[arg(long, value_name = "TYPE")]
        artifact_type: Option<String>,
    },
    /// Attach a file (an SBOM, an attestation, any artifact) to an image as an OCI 1.1 referrer.
    ///
    /// Through the registry's referrers API, or the referrers tag schema where it has
    /// none; `referrers` lists it, `promote` and `copy --referrers` carry it. The file
    /// is the referrer's one layer, at most 64 MiB.
    Attach {
        /// The image (a tag is resolved to its digest first).
        reference: String,
        /// The referrer's artifact type, e.g. application/spdx+json.
        #[arg(long, value_name = "TYPE")]
        artifact_type: String,
        /// The artifact's content.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The layer's media type (default: the artifact type).
        #[arg(long, value_name = "TYPE")]
        media_type: Option<String>,
        /// An annotation of the referrer, KEY=VALUE; repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        annotation: Vec<String>,
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
        /// With --sign-key: the signature formats to write (bundle: a Sigstore bundle referrer,
        /// as cosign 3 writes; legacy: the sha256-<hex>.sig tag of cosign 1 and 2).
        #[arg(long, value_enum, default_value_t = SignFormat::Both, requires = "sign_key", value_name = "FORMAT")]
        sign_format: SignFormat,
        /// Put back the stable digests recorded before this plan's promotion.
        #[arg(long, conflicts_with = "sign_key")]
        revert: bool,
        /// Do not carry the candidates' referrers (signatures, SBOMs, attestations) to stable.
        #[arg(long)]
        no_referrers: bool,
    },
    /// Sign an image as cosign does, with a private key; existing signatures are kept.
    ///
    /// By default in both formats: a Sigstore bundle attached as a referrer (what
    /// cosign 3 writes and verifies) and the sha256-<hex>.sig tag (cosign 1 and 2).
    /// Signing again with the same key adds nothing.
    Sign {
        /// The image (a tag is resolved to its digest first).
        reference: String,
        /// PKCS#8 PEM or cosign encrypted key (password in COSIGN_PASSWORD).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The signature formats to write.
        #[arg(long, value_enum, default_value_t = SignFormat::Both)]
        format: SignFormat,
    },
    /// Verify an image's cosign signature with a public key (exit 1 if it does not verify).
    ///
    /// Looks for Sigstore bundles among the image's referrers (cosign 3) and for the
    /// sha256-<hex>.sig tag (cosign 1 and 2); one signature by the key, in a format
    /// --accept allows, verifies the image. Each bundle found is reported with its
    /// own verdict. Keyless (certificate) bundles are reported, never accepted.
    Verify {
        /// The image.
        reference: String,
        /// The SPKI PEM public key (cosign.pub).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The signature formats that count.
        #[arg(long, value_enum, default_value_t = Accept::Any)]
        accept: Accept,
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
        Command::Copy { source, destination, platform, referrers } => {
            let src = parse_ref(source)?;
            let dst = parse_ref(destination)?;
            let platforms = platform
                .iter()
                .map(|p| p.parse::<Platform>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::of(&e))?;
            let mut progress = Progress::stderr();
            progress.update(&format!("copying {src} to {dst}"));
            let options = copy::CopyOptions { platforms, referrers: *referrers };
            let report = copy::copy(client, &src, &dst, &options).await.map_err(|e| Failure::of(&e))?;
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
                )?;
                if *referrers {
                    writeln!(w, "  referrers  {} carried", report.referrers.len())?;
                    for r in &report.referrers {
                        writeln!(w, "    {}  {}", r.digest, r.artifact_type.as_deref().unwrap_or("-"))?;
                    }
                }
                Ok(())
            })?;
            Ok(Exit::Ok)
        }
        Command::Referrers { reference, artifact_type } => {
            let r = parse_ref(reference)?;
            let digest = match r.digest() {
                Some(d) => d.clone(),
                None => client.resolve(&r).await.map_err(|e| Failure::of(&e))?,
            };
            let list = client.referrers(&r, &digest, artifact_type.as_deref()).await.map_err(|e| Failure::of(&e))?;
            out.emit(&list, |w| print_referrers(w, &r, &list))?;
            Ok(Exit::Ok)
        }
        Command::Attach { reference, artifact_type, file, media_type, annotation } => {
            let r = parse_ref(reference)?;
            let annotations = annotation
                .iter()
                .map(|a| match a.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                    _ => Err(Failure::new(Exit::Usage, format!("--annotation {a:?}: expected KEY=VALUE"))),
                })
                .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?;
            let content = read_artifact(file)?;
            let digest = match r.digest() {
                Some(d) => d.clone(),
                None => client.resolve(&r).await.map_err(|e| Failure::of(&e))?,
            };
            let layer = (media_type.clone().unwrap_or_else(|| artifact_type.clone()), content);
            let pushed =
                lkg_registry::referrers::attach(client, &r, &digest, artifact_type, &[layer], Some(annotations))
                    .await
                    .map_err(|e| Failure::of(&e))?;
            out.emit(&pushed, |w| {
                let via = match pushed.via {
                    lkg_registry::ReferrersVia::Api => "the registry's referrers API".to_owned(),
                    lkg_registry::ReferrersVia::TagSchema => {
                        format!("the referrers tag {}", lkg_registry::referrers::referrers_tag(&digest))
                    }
                };
                writeln!(
                    w,
                    "attached {} to {}@{digest} ({artifact_type}, listed by {via})",
                    pushed.digest,
                    r.repository()
                )
            })?;
            Ok(Exit::Ok)
        }
        Command::Promote { artifacts, sign_key, sign_format, revert, no_referrers } => {
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
            let options = PromoteOptions {
                state_dir: cli.common.state_dir()?,
                sign_key,
                sign_format: *sign_format,
                referrers: !*no_referrers,
            };
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
        Command::Sign { reference, key, format } => {
            let r = parse_ref(reference)?;
            let key = SigningKey::from_file(key, password().as_deref()).map_err(|e| Failure::of(&e))?;
            let report = cosign::sign(client, &r, &key, *format).await.map_err(|e| Failure::of(&e))?;
            out.emit(&report, |w| print_signed(w, &report))?;
            Ok(Exit::Ok)
        }
        Command::Verify { reference, key, accept } => {
            let r = parse_ref(reference)?;
            let key = PublicKey::from_file(key).map_err(|e| Failure::of(&e))?;
            let verdict = cosign::verify(client, &r, &key, *accept).await.map_err(|e| Failure::of(&e))?;
            out.emit(&verdict, |w| print_verification(w, &verdict))?;
            Ok(if verdict.verified { Exit::Ok } else { Exit::Failed })
        }
    }
}

fn print_signed(w: &mut dyn Write, s: &Signed) -> std::io::Result<()> {
    let what = if s.added { "signed" } else { "already signed by this key:" };
    writeln!(w, "{what} {}", s.reference)?;
    if let Some(b) = &s.bundle {
        let state = if b.added { "added" } else { "already there" };
        writeln!(w, "  bundle  {state}: referrer {}", b.referrer)?;
    }
    if let Some(l) = &s.legacy {
        let state = if l.added { "added" } else { "already there" };
        writeln!(w, "  legacy  {state}: {} signature(s) in {}", l.signatures, l.signature_tag)?;
    }
    Ok(())
}

fn print_verification(w: &mut dyn Write, v: &Verification) -> std::io::Result<()> {
    if v.verified {
        writeln!(w, "verified: {} is signed by this key", v.reference)?;
    } else {
        writeln!(w, "NOT verified: {}", v.error.as_deref().unwrap_or("no signature by this key"))?;
    }
    if let Some(b) = &v.bundle {
        let via = match b.via {
            lkg_registry::ReferrersVia::Api => "referrers API",
            lkg_registry::ReferrersVia::TagSchema => "referrers tag",
        };
        let good = b.candidates.iter().filter(|c| c.verified.is_some()).count();
        writeln!(w, "  bundle  {good} of {} Sigstore bundle referrer(s) verify (from the {via})", b.candidates.len())?;
        for c in &b.candidates {
            match (&c.verified, &c.error) {
                (Some(ok), _) => {
                    writeln!(w, "    {}  verified (bundle v{}, {})", c.referrer, ok.version, ok.content.annotation())?;
                }
                (None, Some(e)) => writeln!(w, "    {}  {}", c.referrer, e)?,
                (None, None) => {}
            }
        }
        if b.skipped > 0 {
            writeln!(w, "    {} more not looked at (at most {} are)", b.skipped, cosign::MAX_CANDIDATES)?;
        }
    }
    if let Some(l) = &v.legacy {
        match (&l.report, &l.error) {
            (Some(r), _) => writeln!(
                w,
                "  legacy  {} of {} signature(s) in {} verify",
                r.verified.len(),
                r.signatures,
                r.signature_tag
            )?,
            (None, Some(e)) => writeln!(w, "  legacy  {e}")?,
            (None, None) => {}
        }
    }
    Ok(())
}

/// The most an attached file may hold: an artifact, not an image layer.
const MAX_ARTIFACT: u64 = 64 << 20;

fn read_artifact(path: &std::path::Path) -> Result<lkg_registry::Bytes, Failure> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| Failure::new(Exit::Usage, format!("--file: {e}"));
    let too_large = || {
        Failure::new(
            Exit::Usage,
            format!(
                "--file {}: more than the {} MiB an attached artifact may hold (push large content as an image)",
                path.display(),
                MAX_ARTIFACT >> 20
            ),
        )
    };
    let file = fs_err::File::open(path).map_err(unreadable)?;
    if file.metadata().map_err(unreadable)?.len() > MAX_ARTIFACT {
        return Err(too_large());
    }
    // Bounded however the file grows meanwhile, or if it is a pipe.
    let mut content = Vec::new();
    file.take(MAX_ARTIFACT + 1).read_to_end(&mut content).map_err(unreadable)?;
    if content.len() as u64 > MAX_ARTIFACT {
        return Err(too_large());
    }
    Ok(lkg_registry::Bytes::from(content))
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

fn print_referrers(w: &mut dyn Write, r: &Reference, list: &Referrers) -> std::io::Result<()> {
    let via = match list.via {
        lkg_registry::ReferrersVia::Api => "the registry's referrers API".to_owned(),
        lkg_registry::ReferrersVia::TagSchema => {
            format!("the referrers tag {}", lkg_registry::referrers::referrers_tag(&list.subject))
        }
    };
    writeln!(w, "{} referrer(s) of {}@{} (from {via})", list.manifests.len(), r.repository(), list.subject)?;
    for d in &list.manifests {
        writeln!(w, "  {}  {}", d.digest, d.artifact_type.as_deref().unwrap_or("-"))?;
        for (k, v) in d.annotations.iter().flatten() {
            writeln!(w, "    {k}={v}")?;
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
        if !a.referrers.is_empty() {
            let types: Vec<&str> = a.referrers.iter().map(|r| r.artifact_type.as_deref().unwrap_or("-")).collect();
            writeln!(w, "    referrers {} carried ({})", a.referrers.len(), types.join(", "))?;
        }
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
