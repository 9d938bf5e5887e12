//! `lkg-inputs`: pin every input of a build, replay it exactly, and say what moved.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a binary prints
#![allow(clippy::doc_markdown)] // doc comments are the --help text, where backticks would show

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use lkg_cli::{Common, Exit, Failure, Output, Progress};
use lkg_core::{Classify as _, FailureKind};
use lkg_inputs_lock::{
    Document, Event, Expectation, ImageRef, LockError, OciLayouts, Resolution, ResolveError, Resolver, RunContext,
    Spec, check_file, diff, lock_from, merge_layers, scan_layer, structure,
};
use lkg_registry::{Client, ClientOptions, Platform, RegistryResolver, ResolverError};

/// Build-input manifests (build-inputs.json) and lock files (ci/inputs.lock.json).
///
/// A manifest records every input a run used, resolved to immutable values:
/// images as name@sha256:..., git inputs as full commits, plain values. A
/// lock pins the inputs a replay must use. Both the OS-image pipeline's files
/// and lkg's generic layout are read and written as they are (field order and
/// unknown fields kept).
///
/// Replay: `lkg-inputs check-lock ci/inputs.lock.json --expect build_container=$INPUT`,
/// then `lkg-inputs resolve --spec SPEC --lock ci/inputs.lock.json --out build-inputs.json`.
/// Same commit, different behaviour: `lkg-inputs diff good/build-inputs.json bad/build-inputs.json`.
///
/// Exit codes: 0 ok (lock valid, same inputs, written); 1 the verdict is no
/// (lock problems, replay mismatch, inputs differ; check-lock counts a
/// missing or unparsable lock as a problem); 2 bad input (a missing or
/// malformed file, spec error, image or label missing); 5 environment
/// (registry unreachable, a file that exists but cannot be read).
#[derive(Parser)]
#[command(name = "lkg-inputs", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that a lock (or manifest) is fit for an exact replay; list every problem.
    ///
    /// Checks: the file exists and parses; every field is non-empty and no
    /// placeholder (REPLACE_ME, TODO, FIXME, <...>, changeme, xxx); images are
    /// pinned by a well-formed sha256 digest; git inputs are full 40-hex
    /// commits; each --expect value equals the lock's ("replay mismatch"
    /// otherwise). Exit 1 lists every problem, one per line, field first.
    CheckLock {
        /// The lock file (or a build-inputs.json manifest).
        file: PathBuf,
        /// A dispatch-time value that must equal the lock's: an input name
        /// (build_container), input.part (base_image.digest) or a field of the
        /// file (inputs.base_image_digest). Repeatable.
        #[arg(long = "expect", value_name = "NAME=VALUE")]
        expect: Vec<Expectation>,
    },
    /// Show which inputs differ between two manifests (or a manifest and a lock).
    ///
    /// Input differences (old -> new, added, removed) are listed apart from run
    /// metadata differences (run id, timestamps), which always differ between
    /// two runs. Exit 0 when the inputs are the same, 1 when they differ.
    Diff {
        /// The older (known-good) manifest.
        old: PathBuf,
        /// The newer manifest.
        new: PathBuf,
    },
    /// Write the lock that replays the run a manifest records.
    ///
    /// Prints the lock on stdout, or writes it atomically with --out (prefer
    /// --out: a shell redirect empties the old lock before lkg runs, even if
    /// the manifest turns out to be unusable). A lock that would not pass
    /// check-lock is refused.
    LockFrom {
        /// The run's build-inputs.json.
        manifest: PathBuf,
        /// Write the lock here (atomically) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The lock's description (default: the pipeline's replay text).
        #[arg(long)]
        description: Option<String>,
    },
    /// Resolve a spec's floating inputs and write a build-inputs.json manifest.
    ///
    /// Images resolve to digests, the base image's immutable tag is the one
    /// matching its version label, kernel releases are read from the image's
    /// layer tar headers (whiteouts honoured). With --lock nothing floats: the
    /// lock's pins are used and must still exist. generated_at is now; run
    /// metadata comes from GITHUB_* variables when set.
    ///
    /// Images are read from their registries: credentials come from
    /// REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json (and their
    /// credential helpers); loopback registries are spoken to over
    /// plain HTTP, others only over HTTPS unless listed with
    /// --insecure-registry. With --layout, every image is read from OCI image
    /// layouts on disk instead, and no registry is asked.
    ///
    /// Exit codes: 0 written; 1 the lock is not fit for replay; 2 an image,
    /// pin, platform, label or kernel is missing, or the spec is wrong; 5 a
    /// registry is unreachable, refused the credentials or served content
    /// that does not match its digest.
    Resolve {
        /// The spec: {"profile": "os-image", "base_image": ..., "build_container": ...,
        /// "zfs_minor_version": ..., "akmods_upstream_ref": ...} or a generic
        /// {"inputs": {...}} spec (see docs/inputs.md).
        #[arg(long, value_name = "SPEC")]
        spec: PathBuf,
        /// Where to write the manifest (atomically).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replay this lock instead of resolving floating references.
        #[arg(long, value_name = "FILE")]
        lock: Option<PathBuf>,
        /// Resolve REPOSITORY's images from the OCI image layout in DIR
        /// (made by `skopeo copy docker://IMAGE oci:DIR:TAG`) instead of its
        /// registry. Repeatable; once given, every image of the spec must
        /// have a layout.
        #[arg(long = "layout", value_name = "REPOSITORY=DIR")]
        layouts: Vec<String>,
        /// The platform picked from multi-platform images (os/arch[/variant]).
        #[arg(long, value_name = "OS/ARCH", default_value = "linux/amd64")]
        platform: String,
        /// Allow plain HTTP to this registry (host[:port]); repeatable.
        #[arg(long, value_name = "HOST", conflicts_with = "layouts")]
        insecure_registry: Vec<String>,
    },
    /// List the kernel releases installed by image layers (tar or tar.gz files, lowest first).
    ///
    /// Reads tar headers only, honouring whiteouts across layers; prints one
    /// release per line in natural order. Exit 1 when there is none.
    Kernels {
        /// The layer files, in image order (lowest first).
        #[arg(required = true)]
        layers: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    lkg_cli::run(|| {
        let cli = Cli::parse();
        let out = Output::new(cli.common.json);
        match cli.command {
            Command::CheckLock { file, expect } => check_lock(out, &file, &expect),
            Command::Diff { old, new } => diff_command(out, &old, &new),
            Command::LockFrom { manifest, out: path, description } => {
                lock_from_command(out, &manifest, path.as_deref(), description.as_deref())
            }
            Command::Resolve { spec, out: path, lock, layouts, platform, insecure_registry } => {
                let source =
                    ImageSource { layouts: &layouts, platform: &platform, insecure_registries: &insecure_registry };
                resolve_command(out, &spec, &path, lock.as_deref(), &source)
            }
            Command::Kernels { layers } => kernels(out, &layers),
        }
    })
}

fn check_lock(out: Output, file: &Path, expect: &[Expectation]) -> Result<Exit, Failure> {
    let report = check_file(file, expect).map_err(|e| Failure::of(&e))?;
    out.emit(&report, |w| write!(w, "{report}"))?;
    Ok(if report.is_ok() { Exit::Ok } else { Exit::Failed })
}

fn read(path: &Path) -> Result<Document, Failure> {
    Document::read(path).map_err(|e| Failure::of(&e))
}

/// Reads a document whose inputs will be compared: wrong field types make
/// any comparison meaningless, so they are refused with every problem listed.
fn read_typed(path: &Path) -> Result<Document, Failure> {
    let doc = read(path)?;
    let problems: Vec<String> = structure(&doc)
        .into_iter()
        .filter(|p| !matches!(p.issue, lkg_inputs_lock::Issue::Missing))
        .map(|p| format!("  {p}"))
        .collect();
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(Failure::new(
            Exit::Usage,
            format!("{} has fields of the wrong type:\n{}", path.display(), problems.join("\n")),
        )
        .with_hint(format!("run `lkg-inputs check-lock {}` for the full list", path.display())))
    }
}

fn diff_command(out: Output, old: &Path, new: &Path) -> Result<Exit, Failure> {
    let (a, b) = (read_typed(old)?, read_typed(new)?);
    let d = diff(&a, &b);
    out.emit(&d, |w| write!(w, "{d}"))?;
    Ok(if d.same_inputs { Exit::Ok } else { Exit::Failed })
}

fn lock_from_command(
    out: Output,
    manifest: &Path,
    path: Option<&Path>,
    description: Option<&str>,
) -> Result<Exit, Failure> {
    let doc = read(manifest)?;
    let lock = lock_from(&doc, description).map_err(|e| {
        let failure = Failure::of(&e);
        match e {
            LockError::Invalid { .. } | LockError::Inconsistent { .. } => {
                failure.with_hint("lock from the build-inputs.json of a run that resolved every input")
            }
            _ => failure,
        }
    })?;
    match path {
        None => {
            // stdout is the lock itself, in either mode.
            Output::new(false).emit(&(), |w| w.write_all(lock.to_json().as_bytes()))?;
        }
        Some(path) => {
            lock.write(path).map_err(|e| Failure::of(&e))?;
            let summary = serde_json::json!({
                "written": path,
                "profile": lock.profile(),
                "inputs": lock.inputs().names(),
            });
            out.emit(&summary, |w| {
                writeln!(
                    w,
                    "wrote {} ({} lock: {})",
                    path.display(),
                    lock.profile().as_str(),
                    lock.inputs().names().join(", ")
                )
            })?;
        }
    }
    Ok(Exit::Ok)
}

/// Where `resolve` reads images: registries, or OCI layouts on disk.
struct ImageSource<'a> {
    layouts: &'a [String],
    platform: &'a str,
    insecure_registries: &'a [String],
}

fn resolve_command(
    out: Output,
    spec_path: &Path,
    path: &Path,
    lock_path: Option<&Path>,
    source: &ImageSource<'_>,
) -> Result<Exit, Failure> {
    let spec = Spec::read(spec_path).map_err(|e| Failure::of(&e))?;
    let lock = lock_path.map(read).transpose()?;
    let mut context = RunContext::from_environment();
    context.lock_file_path = lock_path.map(|p| p.display().to_string());
    let resolution = if source.layouts.is_empty() {
        let resolver = registry_resolver(source.platform, source.insecure_registries)?;
        run_resolution(&resolver, &spec, lock.as_ref(), &context)?
    } else {
        run_resolution(&oci_layouts(source.layouts, source.platform)?, &spec, lock.as_ref(), &context)?
    };
    resolution.manifest.write(path).map_err(|e| Failure::of(&e))?;
    let manifest = &resolution.manifest;
    let summary = serde_json::json!({
        "written": path,
        "notes": resolution.notes,
        "manifest": manifest.body(),
    });
    out.emit(&summary, |w| {
        writeln!(w, "wrote {}", path.display())?;
        for (name, input) in manifest.inputs().iter() {
            writeln!(w, "  {name}: {}", input.pin().unwrap_or_default())?;
        }
        for note in &resolution.notes {
            writeln!(w, "  note: {note}")?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}

/// The registry resolver, with the client `lkg-registry` uses: credentials
/// from the Docker config files and helpers, plain HTTP for loopback and
/// `--insecure-registry` hosts only.
fn registry_resolver(platform: &str, insecure_registries: &[String]) -> Result<RegistryResolver, Failure> {
    let platform: Platform = platform.parse().map_err(|e| Failure::from_error(Exit::Usage, &e))?;
    let options = ClientOptions { insecure_registries: insecure_registries.to_vec(), ..ClientOptions::default() };
    let client = Client::new(options).map_err(|e| Failure::of(&e))?;
    Ok(RegistryResolver::new(client, platform))
}

fn oci_layouts(layouts: &[String], platform: &str) -> Result<OciLayouts, Failure> {
    let usage = |m: String| Failure::new(Exit::Usage, m);
    let (os, arch) = platform.split_once('/').ok_or_else(|| usage(format!("--platform {platform} is not OS/ARCH")))?;
    let mut resolver = OciLayouts::new().with_platform(os, arch);
    for layout in layouts {
        let (repository, dir) =
            layout.split_once('=').ok_or_else(|| usage(format!("--layout {layout} is not REPOSITORY=DIR")))?;
        let repository = ImageRef::parse(repository).map_err(|e| Failure::of(&e))?;
        if !Path::new(dir).join("index.json").is_file() {
            return Err(usage(format!("--layout {layout}: {dir} is not an OCI image layout (no index.json)")));
        }
        resolver.add(&repository, dir);
    }
    Ok(resolver)
}

/// Runs a resolution with progress on stderr when it is a terminal, on
/// `lkg-registry`'s multi-thread runtime: the registry resolver downloads a
/// layer on one worker while this thread scans it.
fn run_resolution<R: Resolver>(
    resolver: &R,
    spec: &Spec,
    lock: Option<&Document>,
    context: &RunContext,
) -> Result<Resolution, Failure> {
    let runtime = lkg_registry::runtime().map_err(|e| lkg_cli::runtime_failure(&e))?;
    let mut progress = Progress::stderr();
    let mut report = |event: Event<'_>| match event {
        Event::Inspecting { input, reference } => progress.update(&format!("{input}: inspecting {reference}")),
        Event::ProbingTag { input, tag } => progress.update(&format!("{input}: checking tag {tag}")),
        Event::ScanningLayer { input, number, count, layer } => progress.update(&format!(
            "{input}: reading layer {number}/{count} ({}) for kernel releases",
            Progress::bytes(layer.size)
        )),
        _ => {}
    };
    let result = runtime.block_on(lkg_inputs_lock::resolve(resolver, spec, lock, context, &mut report));
    result.map_err(|e| resolve_failure(&e))
}

/// Exit codes of `resolve`: 1 for a lock unfit for replay, 5 when a
/// registry could not be asked or served the wrong content, 2 for what is
/// missing or wrong in the spec, the lock's pins or the images.
fn resolve_failure(e: &ResolveError) -> Failure {
    // The resolver's error is lkg-registry's, which inputs-lock does not
    // know: its kind is told here, where the two crates meet.
    let failure = match e {
        ResolveError::Resolver { source, .. } => match source.downcast_ref::<ResolverError>() {
            Some(r) if r.kind() == FailureKind::Input => Failure::from_error(Exit::Usage, e),
            _ => Failure::of(e),
        },
        _ => Failure::of(e),
    };
    let exit = failure.exit();
    match e {
        ResolveError::Resolver { .. } if exit == Exit::Environment => failure.with_hint(
            "re-run when the registry answers; a registry that is not on loopback and speaks plain HTTP needs --insecure-registry HOST",
        ),
        _ => failure,
    }
}

#[allow(clippy::disallowed_methods, reason = "its errors carry the path as a field")]
fn kernels(out: Output, layers: &[PathBuf]) -> Result<Exit, Failure> {
    let mut progress = Progress::stderr();
    let mut scanned = Vec::with_capacity(layers.len());
    for (i, path) in layers.iter().enumerate() {
        progress.update(&format!("reading layer {}/{}: {}", i + 1, layers.len(), path.display()));
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::new(Exit::Usage, format!("cannot open layer {}: {e}", path.display())))?;
        let layer = scan_layer(file).map_err(|e| {
            let exit = Exit::of(e.kind());
            Failure::new(exit, format!("layer {}: {}", path.display(), lkg_core::render_chain(&e)))
        })?;
        scanned.push(layer);
    }
    progress.clear();
    let releases = merge_layers(&scanned);
    let summary = serde_json::json!({ "kernel_releases": releases, "layers": layers.len() });
    out.emit(&summary, |w| releases.iter().try_for_each(|r| writeln!(w, "{r}")))?;
    if releases.is_empty() {
        // On stderr: stdout stays one release per line for `$(lkg-inputs kernels ...)`.
        eprintln!(
            "lkg-inputs: no kernel release in {} layer(s): none has usr/lib/modules/<release>/ or lib/modules/<release>/",
            layers.len()
        );
        return Ok(Exit::Failed);
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["lkg-inputs", "check-lock", "lock.json", "--expect", "build_container=x@y", "--json"])
                .unwrap();
        assert!(cli.common.json);
        assert!(matches!(cli.command, Command::CheckLock { ref expect, .. } if expect[0].name == "build_container"));
        let bad = Cli::try_parse_from(["lkg-inputs", "check-lock", "lock.json", "--expect", "novalue"]).err().unwrap();
        assert_eq!(bad.exit_code(), 2);
    }

    #[test]
    fn resolve_errors_map_to_documented_exit_codes() {
        let resolver = |source: ResolverError| ResolveError::Resolver {
            input: "base_image".into(),
            action: "inspect",
            reference: "ghcr.io/x:latest".into(),
            source: Box::new(source),
        };
        let unreachable = lkg_registry::RegistryError::Unreachable { registry: "r".into(), reason: "down".into() };
        let failure = resolve_failure(&resolver(ResolverError::Registry(unreachable)));
        assert_eq!(failure.exit(), Exit::Environment);
        assert!(failure.to_string().contains("--insecure-registry"), "{failure}");
        let no_platform = ResolverError::NoPlatform {
            reference: "x".into(),
            platform: "linux/s390x".parse().unwrap(),
            available: vec![],
        };
        assert_eq!(resolve_failure(&resolver(no_platform)).exit(), Exit::Usage);
        let missing = ResolveError::NotFound { input: "base_image".into(), reference: "x".into() };
        assert_eq!(resolve_failure(&missing).exit(), Exit::Usage);
        let digest = lkg_inputs_lock::Digest::sha256(b"x");
        let served = ResolveError::DigestMismatch { input: "x".into(), reference: "x".into(), served: digest };
        assert_eq!(resolve_failure(&served).exit(), Exit::Environment);
        assert_eq!(resolve_failure(&ResolveError::LockInvalid { problems: vec![] }).exit(), Exit::Failed);
    }

    #[test]
    fn insecure_registries_are_for_registries_not_layouts() {
        let args = ["lkg-inputs", "resolve", "--spec", "s", "--out", "o", "--insecure-registry", "reg.lan:5000"];
        assert!(Cli::try_parse_from(args).is_ok());
        let both = [&args[..], &["--layout", "reg.lan:5000/x=dir"]].concat();
        assert_eq!(Cli::try_parse_from(both).err().unwrap().exit_code(), 2);
    }

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a test writes its fixture")]
    fn layouts_are_repository_equals_an_existing_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = oci_layouts(&["ghcr.io/x".into()], "linux/amd64").unwrap_err();
        assert!(err.message().contains("is not REPOSITORY=DIR"), "{err}");
        let err = oci_layouts(&[format!("ghcr.io/x={}", dir.path().display())], "linux/amd64").unwrap_err();
        assert!(err.message().contains("no index.json"), "{err}");
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        assert!(oci_layouts(&[format!("ghcr.io/x={}", dir.path().display())], "linux/amd64").is_ok());
        assert_eq!(oci_layouts(&[], "amd64").unwrap_err().exit(), Exit::Usage);
    }
}
