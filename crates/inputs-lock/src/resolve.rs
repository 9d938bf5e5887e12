//! Resolving floating inputs to immutable ones through a [`Resolver`].
//!
//! # Why the resolver is async, and takes a sink for layers
//!
//! The real resolver is `lkg-registry`'s HTTP client, which is async
//! (reqwest on tokio): a synchronous trait would force it to block inside
//! its own runtime. So the trait's methods return `Send` futures (plain
//! `async fn` in an `impl`; no boxing, no runtime named here).
//!
//! A layer is handed over as a *push* stream: [`Resolver::read_layer`]
//! writes the blob's bytes, as they arrive, into a [`std::io::Write`] sink.
//! Kernel detection ([`LayerScan`]) is a sans-I/O state machine behind that
//! sink (gzip inflate, then tar header parsing, skipping file contents), so
//! it neither needs an async tar library nor holds a layer in memory, and
//! the same code reads a layer from a file, a registry or a test's `Vec`.
//! The registry checks the blob's digest as it streams; the scan checks the
//! gzip trailer and the tar's end.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::check::{Problem, check};
use crate::document::{Document, Profile};
use crate::kernel::{KernelError, LayerKernels, LayerScan, fedora_release, merge_layers, natural_cmp};
use crate::model::{GitInput, ImageInput, ImagePart, Input, Inputs, RunMetadata};
use crate::reference::{Digest, ImageRef, is_full_commit};

/// The label the OS-image pipeline derives the immutable base tag from.
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";
/// The label that names the kernel of an ostree image.
pub const KERNEL_LABEL: &str = "ostree.linux";
/// How many tags from the repository's tag list are probed when none of the
/// derived candidates matches.
const MAX_LISTED_PROBES: usize = 20;

/// An image as its registry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The digest the reference resolves to: for a multi-platform image, the
    /// index's own digest (what a pin must name, as `skopeo inspect` reports).
    pub digest: Digest,
    /// The config labels of the platform image.
    pub labels: BTreeMap<String, String>,
    /// The platform image's layers, lowest first.
    pub layers: Vec<Layer>,
}

/// One layer blob of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The blob's digest.
    pub digest: Digest,
    /// Its media type (`application/vnd.oci.image.layer.v1.tar+gzip`, ...).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Where floating inputs are resolved: an OCI registry (`lkg-registry`), a
/// local OCI image layout ([`crate::OciLayouts`]), a test's fake.
///
/// Not-found is an answer (`Ok(None)`), not an error: the immutable-tag
/// search probes tags that may not exist, and a lock whose image is gone
/// must be told apart from a registry that is down.
pub trait Resolver: Sync {
    /// The resolver's own error (network, auth, I/O).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The digest `image` (a tag or digest reference) resolves to, `None` when
    /// it does not exist. A registry answers this with a `HEAD` of the manifest.
    fn digest(&self, image: &ImageRef) -> impl Future<Output = Result<Option<Digest>, Self::Error>> + Send;

    /// The image `image` resolves to: digest, config labels, layers. `None`
    /// when it does not exist.
    fn inspect(&self, image: &ImageRef) -> impl Future<Output = Result<Option<Image>, Self::Error>> + Send;

    /// Every tag of `repository`'s repository.
    fn tags(&self, repository: &ImageRef) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// Writes the blob of `layer` (from `repository`) into `sink` as it
    /// arrives, verifying its digest. When the sink refuses bytes (the scan
    /// found a malformed layer), stop and return an error.
    fn read_layer(
        &self,
        repository: &ImageRef,
        layer: &Layer,
        sink: &mut (dyn Write + Send),
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What to resolve: named inputs, in the order the manifest will list them.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The layout of the manifest written.
    pub profile: Profile,
    /// The inputs.
    pub inputs: Vec<(String, SpecInput)>,
    /// The lock file path recorded in an OS-image manifest.
    pub lock_file_path: Option<String>,
}

/// How one input is resolved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SpecInput {
    /// An image, usually by a floating tag: resolved to its digest.
    Image {
        /// The reference (`ghcr.io/ublue-os/kinoite-main:latest`).
        reference: String,
        /// Find the immutable tag that matches the image's version label, as
        /// the OS-image pipeline does for its base image.
        immutable_tag: bool,
        /// The parts the manifest records.
        record: Vec<ImagePart>,
    },
    /// The value of a label of an image input.
    Label {
        /// The image input.
        image: String,
        /// The label.
        key: String,
    },
    /// Every kernel release installed in an image input, oldest first.
    KernelReleases {
        /// The image input.
        image: String,
    },
    /// The newest kernel release of an image input.
    KernelRelease {
        /// The image input.
        image: String,
    },
    /// The Fedora release of an image input's newest kernel (`fc43` -> `43`).
    FedoraVersion {
        /// The image input.
        image: String,
    },
    /// A fixed value.
    Value(Value),
    /// A git repository at a commit (it must be given: lkg does not resolve
    /// branch names).
    Git(GitInput),
    /// Whether the run replays a lock (`true` with `--lock`).
    UsesLock,
    /// The lock file's path.
    LockPath,
}

/// Why a spec cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("cannot read the spec")]
    Document(#[from] crate::DocumentError),
    /// A field is wrong.
    #[error("spec field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong and what it should be.
        reason: String,
    },
}

impl Spec {
    /// Reads a spec file: an OS-image spec (`{"profile": "os-image",
    /// "base_image": ..., "build_container": ..., "zfs_minor_version": ...,
    /// "akmods_upstream_ref": ...}`, the lock's fields with floating images
    /// allowed) or a generic one (`{"inputs": {"name": {"image": ...}, ...}}`).
    pub fn read(path: &Path) -> Result<Spec, SpecError> {
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_TEXT)
            .map_err(|source| crate::DocumentError::Read { path: path.to_owned(), source })?;
        Spec::parse(&text, &path.display().to_string())
    }

    /// Parses spec text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Spec, SpecError> {
        let value: Value = serde_json::from_str(text).map_err(|e| crate::DocumentError::Json {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
            message: crate::document::strip_position(&e.to_string()),
        })?;
        let Value::Object(body) = value else {
            return Err(invalid("(spec)", "a spec is a JSON object"));
        };
        let profile = match body.get("profile").map(|p| p.as_str()) {
            None => {
                if body.contains_key("inputs") {
                    Profile::Generic
                } else {
                    Profile::OsImage
                }
            }
            Some(Some("os-image")) => Profile::OsImage,
            Some(Some("generic")) => Profile::Generic,
            Some(_) => return Err(invalid("profile", "must be \"os-image\" or \"generic\"")),
        };
        let spec = match profile {
            Profile::OsImage => os_image_spec(&body)?,
            Profile::Generic => generic_spec(&body)?,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that references parse, derived inputs name image inputs of
    /// the spec, and git inputs have a full commit. [`Spec::parse`] does
    /// this; [`resolve`] does it again for specs built in code.
    pub fn validate(&self) -> Result<(), SpecError> {
        let images: Vec<&str> =
            self.inputs.iter().filter(|(_, i)| matches!(i, SpecInput::Image { .. })).map(|(n, _)| n.as_str()).collect();
        for (name, input) in &self.inputs {
            let field = format!("inputs.{name}");
            match input {
                SpecInput::Image { reference, .. } => {
                    ImageRef::parse(reference).map_err(|e| invalid(&field, &lkg_core::render_chain(&e)))?;
                }
                SpecInput::Label { image, .. }
                | SpecInput::KernelReleases { image }
                | SpecInput::KernelRelease { image }
                | SpecInput::FedoraVersion { image } => {
                    if !images.contains(&image.as_str()) {
                        return Err(invalid(
                            &field,
                            &format!("names `{image}`, which is not an image input of this spec"),
                        ));
                    }
                }
                SpecInput::Git(git) => match &git.commit {
                    Some(c) if is_full_commit(c) => {}
                    _ => {
                        return Err(invalid(
                            &field,
                            "a git input needs `commit`, a full 40-hex commit id (lkg does not resolve branch names)",
                        ));
                    }
                },
                SpecInput::Value(_) | SpecInput::UsesLock | SpecInput::LockPath => {}
            }
        }
        Ok(())
    }
}

fn invalid(field: &str, reason: &str) -> SpecError {
    SpecError::Invalid { field: field.to_owned(), reason: reason.to_owned() }
}

fn text_field(body: &Map<String, Value>, field: &str) -> Result<String, SpecError> {
    match body.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(invalid(field, "must be a non-empty string")),
        None => Err(invalid(field, "is missing")),
    }
}

/// The OS-image pipeline's inputs, in `build-inputs.json` order.
fn os_image_spec(body: &Map<String, Value>) -> Result<Spec, SpecError> {
    let known = [
        "profile",
        "base_image",
        "build_container",
        "zfs_minor_version",
        "akmods_upstream_ref",
        "lock_file_path",
        "description",
        "version",
    ];
    if let Some(unknown) = body.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(
            unknown,
            &format!("is not an OS-image spec field; the fields are {}", known[1..6].join(", ")),
        ));
    }
    let image = |field: &str, immutable_tag: bool, record: Vec<ImagePart>| -> Result<SpecInput, SpecError> {
        Ok(SpecInput::Image { reference: text_field(body, field)?, immutable_tag, record })
    };
    let base = "base_image".to_owned();
    let commit = text_field(body, "akmods_upstream_ref")?;
    let lock_file_path = body.get("lock_file_path").and_then(Value::as_str).map(str::to_owned);
    Ok(Spec {
        profile: Profile::OsImage,
        inputs: vec![
            ("use_input_lock".into(), SpecInput::UsesLock),
            ("lock_file_path".into(), SpecInput::LockPath),
            ("fedora_version".into(), SpecInput::FedoraVersion { image: base.clone() }),
            ("kernel_release".into(), SpecInput::KernelRelease { image: base.clone() }),
            ("kernel_releases".into(), SpecInput::KernelReleases { image: base.clone() }),
            (base, image("base_image", true, ImagePart::ALL.to_vec())?),
            (
                "build_container".into(),
                image("build_container", false, vec![ImagePart::Ref, ImagePart::Pinned, ImagePart::Digest])?,
            ),
            ("zfs_minor_version".into(), SpecInput::Value(Value::from(text_field(body, "zfs_minor_version")?))),
            ("akmods_upstream_ref".into(), SpecInput::Git(GitInput { commit: Some(commit), ..GitInput::default() })),
        ],
        lock_file_path,
    })
}

fn generic_spec(body: &Map<String, Value>) -> Result<Spec, SpecError> {
    let Some(Value::Object(fields)) = body.get("inputs") else {
        return Err(invalid("inputs", "must be an object of named inputs"));
    };
    let mut inputs = Vec::new();
    for (name, value) in fields {
        let field = format!("inputs.{name}");
        let Value::Object(o) = value else {
            return Err(invalid(&field, "must be an object such as {\"image\": \"REF\"} or {\"value\": \"...\"}"));
        };
        let text = |key: &str| o.get(key).and_then(Value::as_str).map(str::to_owned);
        let input = if let Some(reference) = text("image") {
            let record = match o.get("record") {
                None => ImagePart::ALL.to_vec(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| p.as_str().and_then(ImagePart::from_name))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        invalid(&format!("{field}.record"), "lists parts among ref, name, tag, pinned, digest")
                    })?,
                Some(_) => return Err(invalid(&format!("{field}.record"), "must be a list")),
            };
            SpecInput::Image { reference, immutable_tag: o.get("immutable_tag") == Some(&Value::Bool(true)), record }
        } else if let Some(Value::Object(label)) = o.get("label") {
            let get = |k: &str| label.get(k).and_then(Value::as_str).map(str::to_owned);
            match (get("image"), get("key")) {
                (Some(image), Some(key)) => SpecInput::Label { image, key },
                _ => return Err(invalid(&format!("{field}.label"), "needs `image` and `key`")),
            }
        } else if let Some(image) = text("kernel_releases") {
            SpecInput::KernelReleases { image }
        } else if let Some(image) = text("kernel_release") {
            SpecInput::KernelRelease { image }
        } else if let Some(image) = text("fedora_version") {
            SpecInput::FedoraVersion { image }
        } else if let Some(value) = o.get("value") {
            SpecInput::Value(value.clone())
        } else if let Some(Value::Object(git)) = o.get("git") {
            let get = |k: &str| git.get(k).and_then(Value::as_str).map(str::to_owned);
            SpecInput::Git(GitInput { url: get("url"), reference: get("ref"), commit: get("commit") })
        } else {
            return Err(invalid(
                &field,
                "must have one of `image`, `label`, `kernel_releases`, `kernel_release`, `fedora_version`, `value`, `git`",
            ));
        };
        inputs.push((name.clone(), input));
    }
    Ok(Spec { profile: Profile::Generic, inputs, lock_file_path: None })
}

/// What a resolution is doing, for progress lines.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Reading an image's manifest and config.
    Inspecting {
        /// The input.
        input: &'a str,
        /// The reference.
        reference: &'a str,
    },
    /// Checking whether a candidate tag points at the image's digest.
    ProbingTag {
        /// The input.
        input: &'a str,
        /// The tag.
        tag: &'a str,
    },
    /// Reading a layer's tar headers for kernel releases.
    ScanningLayer {
        /// The input.
        input: &'a str,
        /// 1-based layer number.
        number: usize,
        /// Layers in the image.
        count: usize,
        /// The layer.
        layer: &'a Layer,
    },
}

/// The run a resolution is recorded for.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// `generated_at`, RFC 3339 UTC (`2026-02-27T12:00:00Z`).
    pub generated_at: String,
    /// Run metadata (from CI variables).
    pub run: RunMetadata,
    /// The path recorded as `lock_file_path` (default `ci/inputs.lock.json`).
    pub lock_file_path: Option<String>,
}

impl RunContext {
    /// The run this process is part of: `generated_at` is now, run metadata
    /// comes from GitHub Actions' `GITHUB_*` variables when they are set.
    pub fn from_environment() -> RunContext {
        RunContext {
            generated_at: crate::timestamp(jiff::Timestamp::now()),
            run: RunMetadata::from_github_env(|name| std::env::var(name).ok()),
            lock_file_path: None,
        }
    }
}

/// A resolved manifest, and what is worth telling about how it was found.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The build-input manifest.
    pub manifest: Document,
    /// Observations (which candidate tags were tried, a kernel label that
    /// disagrees with the kernel directories).
    pub notes: Vec<String>,
}

/// Why resolution failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The spec is inconsistent (see [`Spec::validate`]).
    #[error(transparent)]
    Spec(SpecError),
    /// The lock fails `check`: replaying it would not be exact.
    #[error("the lock is not fit for replay ({}):\n{}", crate::plural(problems.len(), "problem"), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    LockInvalid {
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// In lock mode an image input has no value in the lock.
    #[error(
        "input `{input}` would float in lock mode: the lock has no image for it; add it to the lock or run without --lock"
    )]
    Floats {
        /// The input.
        input: String,
    },
    /// The lock pins an input the spec does not declare.
    #[error(
        "the lock pins `{input}`, which the spec does not declare: a replay would not use it; add it to the spec or remove it from the lock"
    )]
    UnusedLockInput {
        /// The input.
        input: String,
    },
    /// The image does not exist.
    #[error(
        "input `{input}`: `{reference}` does not exist (check the name and tag, and that the registry still has it)"
    )]
    NotFound {
        /// The input.
        input: String,
        /// The reference.
        reference: String,
    },
    /// The resolver failed (registry unreachable, auth refused, I/O).
    #[error("input `{input}`: cannot {action} `{reference}`: {source}")]
    Resolver {
        /// The input.
        input: String,
        /// What was being done.
        action: &'static str,
        /// The reference.
        reference: String,
        /// The resolver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A layer could not be read for kernel releases.
    #[error("input `{input}`: layer {layer} of `{reference}`: {source}")]
    Layer {
        /// The input.
        input: String,
        /// The image.
        reference: String,
        /// The layer.
        layer: Digest,
        /// What is wrong with it.
        source: KernelError,
    },
    /// The image has no kernel release directory.
    #[error(
        "input `{input}`: no kernel release directory under usr/lib/modules/ or lib/modules/ in `{reference}` ({layers} layers read)"
    )]
    NoKernel {
        /// The input.
        input: String,
        /// The image.
        reference: String,
        /// Layers read.
        layers: usize,
    },
    /// A newest kernel whose name carries no `fcNN`.
    #[error("input `{input}`: kernel release `{kernel}` names no Fedora release (`fcNN`)")]
    NoFedoraRelease {
        /// The input.
        input: String,
        /// The kernel release.
        kernel: String,
    },
    /// A label the spec asks for is absent.
    #[error("input `{input}`: image `{reference}` has no label `{label}`")]
    MissingLabel {
        /// The input.
        input: String,
        /// The image.
        reference: String,
        /// The label.
        label: String,
    },
    /// The version label cannot give an immutable tag.
    #[error(
        "input `{input}`: cannot derive an immutable tag for `{reference}`: label {VERSION_LABEL} is {}, expected MAJOR.YYYYMMDD[.N] (e.g. 43.20260227.1)",
        value.as_deref().map_or("absent".to_owned(), |v| format!("`{v}`"))
    )]
    VersionLabel {
        /// The input.
        input: String,
        /// The image.
        reference: String,
        /// The label's value.
        value: Option<String>,
    },
    /// No immutable tag points at the image's digest.
    #[error("input `{input}`: no immutable tag of {name} points at {digest}; tried {}", tried.join(", "))]
    NoImmutableTag {
        /// The input.
        input: String,
        /// The repository.
        name: String,
        /// The digest.
        digest: Digest,
        /// The tags tried.
        tried: Vec<String>,
    },
    /// Asked for a digest, the resolver answered with another.
    #[error(
        "input `{input}`: asked for `{reference}`, the resolver answered {served}: refusing an image that is not the pinned one"
    )]
    DigestMismatch {
        /// The input.
        input: String,
        /// The pinned reference.
        reference: String,
        /// The digest served.
        served: Digest,
    },
}

struct Resolved {
    text: String,
    reference: ImageRef,
    image: Image,
    tag: Option<String>,
    kernels: Option<Vec<String>>,
}

/// Resolves `spec` through `resolver`, or replays `lock`: with a lock nothing
/// floats, every image is the lock's pin (and must still exist), values and
/// commits are the lock's. Kernel releases, labels and the immutable tag are
/// derived from the resolved images either way.
pub async fn resolve<R: Resolver>(
    resolver: &R,
    spec: &Spec,
    lock: Option<&Document>,
    context: &RunContext,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Resolution, ResolveError> {
    spec.validate().map_err(ResolveError::Spec)?;
    let lock_inputs = match lock {
        Some(lock) => {
            let problems = check(lock, &[]);
            if !problems.is_empty() {
                return Err(ResolveError::LockInvalid { problems });
            }
            let locked = lock.inputs();
            // A pin the spec does not use would be silently dropped from the
            // replay: refuse rather than replay something else.
            if let Some(name) = locked.names().into_iter().find(|n| !spec.inputs.iter().any(|(s, _)| s == n)) {
                return Err(ResolveError::UnusedLockInput { input: name.to_owned() });
            }
            Some(locked)
        }
        None => None,
    };
    let mut notes = Vec::new();
    let mut images: HashMap<String, Resolved> = HashMap::new();
    for (name, input) in &spec.inputs {
        let SpecInput::Image { reference, immutable_tag, .. } = input else { continue };
        let text = match &lock_inputs {
            Some(locked) => match locked.get(name).and_then(Input::pin) {
                Some(pin) => pin,
                None => return Err(ResolveError::Floats { input: name.clone() }),
            },
            None => reference.clone(),
        };
        let resolved = resolve_image(resolver, name, &text, *immutable_tag, &mut notes, progress).await?;
        images.insert(name.clone(), resolved);
    }
    // Kernel releases are read once per image, however many inputs use them.
    for (_, input) in &spec.inputs {
        if let SpecInput::KernelReleases { image }
        | SpecInput::KernelRelease { image }
        | SpecInput::FedoraVersion { image } = input
            && let Some(resolved) = images.get_mut(image)
            && resolved.kernels.is_none()
        {
            let kernels = kernel_releases(resolver, image, &resolved.reference, &resolved.image, progress).await?;
            if let (Some(label), Some(newest)) = (resolved.image.labels.get(KERNEL_LABEL), kernels.last())
                && label != newest
            {
                notes.push(format!(
                    "{image}: label {KERNEL_LABEL}={label} but the newest kernel directory is {newest}; the directory wins"
                ));
            }
            resolved.kernels = Some(kernels);
        }
    }
    let inputs = assemble(spec, &images, lock_inputs.as_ref(), context)?;
    let manifest = Document::new_manifest(spec.profile, &context.generated_at, &context.run, &inputs);
    Ok(Resolution { manifest, notes })
}

/// The manifest's inputs, in spec order, from the resolved images and the lock.
fn assemble(
    spec: &Spec,
    images: &HashMap<String, Resolved>,
    lock_inputs: Option<&Inputs>,
    context: &RunContext,
) -> Result<Inputs, ResolveError> {
    let mut inputs = Inputs::new();
    for (name, input) in &spec.inputs {
        let kernels_of = |image: &str| images.get(image).and_then(|r| r.kernels.clone()).unwrap_or_default();
        let value = match input {
            SpecInput::Image { record, .. } => {
                let r = resolved(images, name)?;
                let mut image = ImageInput::default();
                let pinned = r.reference.with_digest(&r.image.digest).to_string();
                for part in record {
                    *image.part_mut(*part) = match part {
                        ImagePart::Ref => Some(r.text.clone()),
                        ImagePart::Name => Some(r.reference.name()),
                        ImagePart::Tag => r.tag.clone(),
                        ImagePart::Digest => Some(r.image.digest.to_string()),
                        ImagePart::Pinned => Some(pinned.clone()),
                    };
                }
                Input::Image(image)
            }
            SpecInput::Label { image, key } => {
                let r = resolved(images, image)?;
                match r.image.labels.get(key) {
                    Some(v) => Input::Value(Value::from(v.as_str())),
                    None => {
                        return Err(ResolveError::MissingLabel {
                            input: name.clone(),
                            reference: r.text.clone(),
                            label: key.clone(),
                        });
                    }
                }
            }
            SpecInput::KernelReleases { image } => Input::Value(Value::from(kernels_of(image))),
            SpecInput::KernelRelease { image } => Input::Value(Value::from(kernels_of(image).last().cloned())),
            SpecInput::FedoraVersion { image } => {
                let newest = kernels_of(image).last().cloned().unwrap_or_default();
                match fedora_release(&newest) {
                    Some(v) => Input::Value(Value::from(v)),
                    None => return Err(ResolveError::NoFedoraRelease { input: name.clone(), kernel: newest }),
                }
            }
            SpecInput::Value(value) => match lock_inputs.and_then(|l| l.get(name)) {
                Some(Input::Value(locked)) => Input::Value(locked.clone()),
                Some(other) => Input::Value(other.pin().map_or(Value::Null, Value::from)),
                None => Input::Value(value.clone()),
            },
            SpecInput::Git(git) => {
                let mut git = git.clone();
                if let Some(commit) = lock_inputs.and_then(|l| l.get(name)).and_then(Input::pin) {
                    git.commit = Some(commit);
                }
                Input::Git(git)
            }
            SpecInput::UsesLock => Input::Value(Value::Bool(lock_inputs.is_some())),
            SpecInput::LockPath => Input::Value(Value::from(
                context
                    .lock_file_path
                    .clone()
                    .or_else(|| spec.lock_file_path.clone())
                    .unwrap_or_else(|| "ci/inputs.lock.json".to_owned()),
            )),
        };
        inputs.insert(name.clone(), value);
    }
    Ok(inputs)
}

/// The resolved image input `name`; every image input is resolved before
/// inputs are assembled, and `Spec::validate` checked the names.
fn resolved<'a>(images: &'a HashMap<String, Resolved>, name: &str) -> Result<&'a Resolved, ResolveError> {
    images.get(name).ok_or_else(|| {
        ResolveError::Spec(SpecError::Invalid {
            field: format!("inputs.{name}"),
            reason: "is not an image input".into(),
        })
    })
}

fn resolver_error<E: std::error::Error + Send + Sync + 'static>(
    input: &str,
    action: &'static str,
    reference: &str,
) -> impl FnOnce(E) -> ResolveError {
    let (input, reference) = (input.to_owned(), reference.to_owned());
    move |e| ResolveError::Resolver { input, action, reference, source: Box::new(e) }
}

async fn resolve_image<R: Resolver>(
    resolver: &R,
    input: &str,
    text: &str,
    immutable_tag: bool,
    notes: &mut Vec<String>,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Resolved, ResolveError> {
    // Spec and lock references were validated; a lock pin passed `check`.
    let reference = ImageRef::parse(text)
        .map_err(|e| ResolveError::NotFound { input: input.to_owned(), reference: lkg_core::render_chain(&e) })?;
    progress(Event::Inspecting { input, reference: text });
    let image = resolver
        .inspect(&reference)
        .await
        .map_err(resolver_error(input, "inspect", text))?
        .ok_or_else(|| ResolveError::NotFound { input: input.to_owned(), reference: text.to_owned() })?;
    if let Some(pinned) = reference.digest()
        && *pinned != image.digest
    {
        return Err(ResolveError::DigestMismatch {
            input: input.to_owned(),
            reference: text.to_owned(),
            served: image.digest,
        });
    }
    let tag = if immutable_tag {
        let (tag, tried) = immutable_tag_for(resolver, input, &reference, &image, progress).await?;
        notes.push(format!("{input}: immutable tag {tag} (candidates tried: {})", tried.join(" ")));
        Some(tag)
    } else {
        reference.tag().map(str::to_owned)
    };
    Ok(Resolved { text: text.to_owned(), reference, image, tag, kernels: None })
}

/// `-YYYYMMDD` or `-YYYYMMDD.N` at the end: a tag the pipeline treats as
/// immutable.
pub fn is_date_stamped(tag: &str) -> bool {
    let Some((_, stamp)) = tag.rsplit_once('-') else { return false };
    let (date, serial) = stamp.split_once('.').map_or((stamp, None), |(d, s)| (d, Some(s)));
    date.len() == 8
        && date.bytes().all(|b| b.is_ascii_digit())
        && serial.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The candidate immutable tags for an image tagged `source_tag` whose
/// version label is `version` (`43.20260227.1`), in the pipeline's order:
/// `<source>-<stamp>`, `latest-<stamp>`, `<major>-<stamp>`. `None` when the
/// label is not `MAJOR.YYYYMMDD[.N]`.
pub fn immutable_tag_candidates(source_tag: Option<&str>, version: &str) -> Option<Vec<String>> {
    let (major, stamp) = version.split_once('.')?;
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) || !is_date_stamped(&format!("-{stamp}")) {
        return None;
    }
    let mut candidates = Vec::new();
    for candidate in
        [source_tag.map(|s| format!("{s}-{stamp}")), Some(format!("latest-{stamp}")), Some(format!("{major}-{stamp}"))]
            .into_iter()
            .flatten()
    {
        if !candidates.contains(&candidate) {
            candidates.push(candidate);
        }
    }
    Some(candidates)
}

async fn immutable_tag_for<R: Resolver>(
    resolver: &R,
    input: &str,
    reference: &ImageRef,
    image: &Image,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<(String, Vec<String>), ResolveError> {
    let text = reference.to_string();
    let candidates = match reference.tag() {
        // Already immutable: keep it, once it is shown to point at the digest.
        Some(tag) if is_date_stamped(tag) => vec![tag.to_owned()],
        source => {
            let version = image.labels.get(VERSION_LABEL);
            version.and_then(|v| immutable_tag_candidates(source, v)).ok_or_else(|| ResolveError::VersionLabel {
                input: input.to_owned(),
                reference: text.clone(),
                value: version.cloned(),
            })?
        }
    };
    let mut tried = Vec::new();
    for tag in &candidates {
        tried.push(tag.clone());
        if probe_tag(resolver, input, reference, tag, progress).await?.as_ref() == Some(&image.digest) {
            return Ok((tag.clone(), tried));
        }
    }
    // None of the derived names: look for other tags with the same stamp in
    // the repository's list, newest first (the registry may use a prefix the
    // pipeline does not derive).
    if let Some(stamp) = candidates.first().and_then(|c| c.rsplit_once('-')).map(|(_, s)| format!("-{s}")) {
        let mut listed: Vec<String> = resolver
            .tags(&reference.repository())
            .await
            .map_err(resolver_error(input, "list the tags of", &reference.name()))?
            .into_iter()
            .filter(|t| t.ends_with(&stamp) && !tried.contains(t))
            .collect();
        listed.sort_by(|a, b| natural_cmp(b, a));
        for tag in listed.into_iter().take(MAX_LISTED_PROBES) {
            tried.push(tag.clone());
            if probe_tag(resolver, input, reference, &tag, progress).await?.as_ref() == Some(&image.digest) {
                return Ok((tag, tried));
            }
        }
    }
    Err(ResolveError::NoImmutableTag {
        input: input.to_owned(),
        name: reference.name(),
        digest: image.digest.clone(),
        tried,
    })
}

async fn probe_tag<R: Resolver>(
    resolver: &R,
    input: &str,
    reference: &ImageRef,
    tag: &str,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Option<Digest>, ResolveError> {
    progress(Event::ProbingTag { input, tag });
    let candidate = reference.with_tag(tag);
    resolver.digest(&candidate).await.map_err(resolver_error(input, "resolve", &candidate.to_string()))
}

async fn kernel_releases<R: Resolver>(
    resolver: &R,
    input: &str,
    reference: &ImageRef,
    image: &Image,
    progress: &mut (dyn FnMut(Event<'_>) + Send),
) -> Result<Vec<String>, ResolveError> {
    let repository = reference.repository();
    let text = reference.to_string();
    let mut layers: Vec<LayerKernels> = Vec::with_capacity(image.layers.len());
    for (i, layer) in image.layers.iter().enumerate() {
        progress(Event::ScanningLayer { input, number: i + 1, count: image.layers.len(), layer });
        let mut scan = LayerScan::new();
        let read = resolver.read_layer(&repository, layer, &mut scan).await;
        // The scan's own error says more than the resolver's "sink refused".
        let layer_error = |source| ResolveError::Layer {
            input: input.to_owned(),
            reference: text.clone(),
            layer: layer.digest.clone(),
            source,
        };
        if let Some(error) = scan.error() {
            return Err(layer_error(error.clone()));
        }
        read.map_err(resolver_error(input, "read a layer of", &text))?;
        layers.push(scan.finish().map_err(layer_error)?);
    }
    let releases = merge_layers(&layers);
    if releases.is_empty() {
        return Err(ResolveError::NoKernel { input: input.to_owned(), reference: text, layers: layers.len() });
    }
    Ok(releases)
}

impl lkg_core::Classify for SpecError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

impl lkg_core::Classify for ResolveError {
    fn kind(&self) -> lkg_core::FailureKind {
        use lkg_core::FailureKind;
        match self {
            // The lock fails its check: a replay would not be exact.
            ResolveError::LockInvalid { .. } => FailureKind::Verdict,
            // A registry that served other content than it named; and a
            // resolver's error, which this crate cannot look into: "could not
            // ask", unless the caller, who knows the resolver, tells bad input apart.
            ResolveError::DigestMismatch { .. } | ResolveError::Resolver { .. } => FailureKind::Environment,
            _ => FailureKind::Input,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_stamps() {
        assert!(is_date_stamped("latest-20260227"));
        assert!(is_date_stamped("43-20260227.1"));
        assert!(!is_date_stamped("latest"));
        assert!(!is_date_stamped("latest-2026022"));
        assert!(!is_date_stamped("latest-20260227."));
    }

    #[test]
    fn candidates_follow_the_pipeline() {
        assert_eq!(
            immutable_tag_candidates(Some("latest"), "43.20260227.1").unwrap(),
            ["latest-20260227.1", "43-20260227.1"]
        );
        assert_eq!(
            immutable_tag_candidates(Some("stable"), "43.20260227").unwrap(),
            ["stable-20260227", "latest-20260227", "43-20260227"]
        );
        assert_eq!(immutable_tag_candidates(None, "43.20260227.1").unwrap(), ["latest-20260227.1", "43-20260227.1"]);
        assert_eq!(immutable_tag_candidates(Some("latest"), "43"), None);
        assert_eq!(immutable_tag_candidates(Some("latest"), "v43.2026"), None);
    }
}
