//! Manifest and lock files as they are on disk, in one of two profiles.
//!
//! A [`Document`] keeps the file's JSON object exactly as read (field order
//! and unknown fields included), so what lkg writes back is what it read; the
//! generic [`Inputs`] view is derived from it on demand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{GitInput, GitPart, ImageInput, ImagePart, Input, Inputs, Part, RunMetadata};

/// The layout of a file: which field holds which input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Profile {
    /// The OS-image pipeline's files: `build-inputs.json` with flat
    /// `inputs.base_image_pinned`-style fields, and `ci/inputs.lock.json`
    /// with top-level `base_image`, `build_container`, ...
    OsImage,
    /// lkg's own layout for any pipeline: `inputs.<name>` is
    /// `{"image": {...}}`, `{"git": {...}}` or `{"value": ...}`.
    Generic,
}

impl Profile {
    /// `os-image` or `generic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::OsImage => "os-image",
            Profile::Generic => "generic",
        }
    }
}

/// Whether a file records a run or pins inputs for a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// A build-input manifest (`build-inputs.json`): what a run used.
    Manifest,
    /// A lock file (`ci/inputs.lock.json`): what a replay must use.
    Lock,
}

impl Kind {
    /// `manifest` or `lock`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest",
            Kind::Lock => "lock",
        }
    }
}

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The file does not exist.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("{origin} is not valid JSON (line {line}, column {column}): {message}")]
    Json {
        /// Where the text came from.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column.
        column: usize,
        /// `serde_json`'s description.
        message: String,
    },
    /// The JSON is not an object.
    #[error("{origin} holds a JSON {found}, not an object: a manifest or lock file is one JSON object")]
    NotAnObject {
        /// Where the text came from.
        origin: String,
        /// What it holds instead.
        found: &'static str,
    },
    /// The object is neither a manifest nor a lock file of a known profile.
    #[error(
        "{origin} is neither a build-input manifest (`schema_version` and `inputs`) nor a lock file \
         (`version` with `base_image` or `inputs`); its top-level fields are: {}", fields.join(", ")
    )]
    UnknownFormat {
        /// Where the text came from.
        origin: String,
        /// Its top-level field names.
        fields: Vec<String>,
    },
    /// Writing failed; the destination is unchanged.
    #[error("cannot write {}: {source} (the file is unchanged)", path.display())]
    Write {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A manifest or lock file: its JSON object as read, its profile and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    profile: Profile,
    kind: Kind,
    body: Map<String, Value>,
}

/// The input fields of an OS-image lock that hold images and git commits;
/// every other field is a plain value.
const OS_IMAGE_LOCK_IMAGES: [&str; 2] = ["base_image", "build_container"];
/// Fields of the OS-image files that hold a git commit (the field name says
/// `ref`, but the pipeline stores a commit there).
const OS_IMAGE_GIT: [&str; 1] = ["akmods_upstream_ref"];
/// Top-level fields of an OS-image lock that describe the lock, not an input.
const LOCK_METADATA: [&str; 2] = ["version", "description"];

/// The description the OS-image pipeline's own lock file carries.
pub const OS_IMAGE_LOCK_DESCRIPTION: &str = "Pinned inputs for workflow_dispatch replay mode. Update this file from the latest build-inputs artifact when reproducing or validating a specific run.";

impl Document {
    /// Reads and recognises a manifest or lock file.
    pub fn read(path: &Path) -> Result<Document, DocumentError> {
        let text = lkg_core::input::read_to_string(path, lkg_core::input::MAX_DOCUMENT).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DocumentError::NotFound { path: path.to_owned() }
            } else {
                DocumentError::Read { path: path.to_owned(), source }
            }
        })?;
        Document::parse(&text, &path.display().to_string())
    }

    /// Parses JSON text; `origin` names it in errors (a path, `-`).
    pub fn parse(text: &str, origin: &str) -> Result<Document, DocumentError> {
        let value: Value = serde_json::from_str(text).map_err(|e| DocumentError::Json {
            origin: origin.to_owned(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        Document::from_value(value, origin)
    }

    /// Recognises a parsed JSON value.
    pub fn from_value(value: Value, origin: &str) -> Result<Document, DocumentError> {
        let Value::Object(body) = value else {
            return Err(DocumentError::NotAnObject { origin: origin.to_owned(), found: json_type(&value) });
        };
        let (profile, kind) = detect(&body).ok_or_else(|| DocumentError::UnknownFormat {
            origin: origin.to_owned(),
            fields: body.keys().cloned().collect(),
        })?;
        Ok(Document { profile, kind, body })
    }

    /// The file's profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Manifest or lock.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The JSON object, exactly as read.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The inputs, in file order. Fields of the wrong JSON type are left out
    /// of their input (the check reports them); unknown fields of an
    /// OS-image file become value inputs, so nothing is dropped.
    pub fn inputs(&self) -> Inputs {
        match (self.profile, self.kind) {
            (Profile::OsImage, Kind::Manifest) => match self.body.get("inputs") {
                Some(Value::Object(fields)) => os_image_manifest_inputs(fields),
                _ => Inputs::new(),
            },
            (Profile::OsImage, Kind::Lock) => os_image_lock_inputs(&self.body),
            (Profile::Generic, _) => match self.body.get("inputs") {
                Some(Value::Object(fields)) => generic_inputs(fields),
                _ => Inputs::new(),
            },
        }
    }

    /// Where `part` of input `input` lives in this file, as a dotted path
    /// (`inputs.base_image_digest`, `base_image`, `inputs.x.image.digest`).
    pub fn field_path(&self, input: &str, part: Part) -> String {
        field_path(self.profile, self.kind, input, part)
    }

    /// The input and part a field path (or an input name) designates, for
    /// `--expect NAME=VALUE`: an input name means its pin, `input.part` a
    /// part, and a file field path (with or without `inputs.`) that field.
    pub fn locate(&self, name: &str) -> Option<(String, Option<Part>)> {
        let inputs = self.inputs();
        if inputs.get(name).is_some() {
            return Some((name.to_owned(), None));
        }
        for (input_name, input) in inputs.iter() {
            for part in parts_of(input) {
                let path = self.field_path(input_name, part);
                let short = path.strip_prefix("inputs.").unwrap_or(&path);
                let dotted = format!("{input_name}.{}", part.as_str());
                if name == path || name == short || name == dotted {
                    return Some((input_name.to_owned(), Some(part)));
                }
            }
        }
        None
    }

    /// A new manifest in `profile`'s layout, fields in the pipeline's order.
    pub fn new_manifest(profile: Profile, generated_at: &str, run: &RunMetadata, inputs: &Inputs) -> Document {
        let mut body = Map::new();
        body.insert("schema_version".into(), Value::from(1));
        body.insert("generated_at".into(), Value::from(generated_at));
        if let Value::Object(meta) = serde_json::to_value(run).unwrap_or(Value::Null) {
            body.extend(meta);
        }
        let fields = match profile {
            Profile::OsImage => os_image_manifest_fields(inputs),
            Profile::Generic => generic_fields(inputs, false),
        };
        body.insert("inputs".into(), Value::Object(fields));
        Document { profile, kind: Kind::Manifest, body }
    }

    /// A new lock in `profile`'s layout: images by `name@digest`, git inputs
    /// by commit, values as they are.
    pub fn new_lock(profile: Profile, description: &str, inputs: &Inputs) -> Document {
        let mut body = Map::new();
        body.insert("version".into(), Value::from(1));
        body.insert("description".into(), Value::from(description));
        match profile {
            Profile::OsImage => {
                for (name, input) in inputs.iter() {
                    let value = match input {
                        Input::Image(image) => image.pin().map(Value::from),
                        Input::Git(git) => git.commit.clone().map(Value::from),
                        Input::Value(value) => Some(value.clone()),
                    };
                    body.insert(name.to_owned(), value.unwrap_or(Value::Null));
                }
            }
            Profile::Generic => {
                body.insert("inputs".into(), Value::Object(generic_fields(inputs, true)));
            }
        }
        Document { profile, kind: Kind::Lock, body }
    }

    /// The file's text: pretty JSON (two-space indent, as `jq` and Python's
    /// `json.dumps(indent=2)` write it) and a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.body).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the file atomically: a reader sees the old file or the new
    /// one, never half of one, and a failure leaves the old one in place.
    pub fn write(&self, path: &Path) -> Result<(), DocumentError> {
        // Mode 0644 whatever the umask: a lock file is committed and read by everyone.
        lkg_core::state_file::write(path, self.to_json().as_bytes()).map_err(|error| match error {
            lkg_core::StateFileError::Io { source, .. } => DocumentError::Write { path: path.to_owned(), source },
            other => DocumentError::Write { path: path.to_owned(), source: std::io::Error::other(other.to_string()) },
        })
    }
}

/// `serde_json` appends " at line L column C"; the error carries them apart.
pub(crate) fn strip_position(message: &str) -> String {
    message.rfind(" at line ").map_or(message, |i| &message[..i]).to_owned()
}

pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn detect(body: &Map<String, Value>) -> Option<(Profile, Kind)> {
    let has = |key: &str| body.contains_key(key);
    let manifest_markers = has("schema_version") || has("generated_at") || has("run");
    match body.get("inputs") {
        Some(Value::Object(inputs)) => {
            let generic = inputs.is_empty() || inputs.values().any(is_tagged_input);
            let kind = if manifest_markers || !has("version") { Kind::Manifest } else { Kind::Lock };
            Some((if generic { Profile::Generic } else { Profile::OsImage }, kind))
        }
        Some(_) if manifest_markers => Some((Profile::OsImage, Kind::Manifest)),
        _ if has("base_image") || has("build_container") => Some((Profile::OsImage, Kind::Lock)),
        _ if manifest_markers => Some((Profile::OsImage, Kind::Manifest)),
        _ => None,
    }
}

fn is_tagged_input(value: &Value) -> bool {
    matches!(value, Value::Object(o) if o.len() == 1 && o.keys().all(|k| matches!(k.as_str(), "image" | "git" | "value")))
}

/// `base_image_digest` -> (`base_image`, Digest), when `base_image` is one of
/// the file's image inputs.
fn split_image_field<'a>(key: &'a str, images: &BTreeSet<&str>) -> Option<(&'a str, ImagePart)> {
    let (prefix, suffix) = key.rsplit_once('_')?;
    let part = ImagePart::from_name(suffix)?;
    images.contains(prefix).then_some((prefix, part))
}

fn os_image_manifest_inputs(fields: &Map<String, Value>) -> Inputs {
    // An image input is any `X_pinned` / `X_digest` pair's prefix, so inputs a
    // newer pipeline adds (`brew_image_pinned`) are images without a code change.
    let images: BTreeSet<&str> =
        fields.keys().filter_map(|k| k.strip_suffix("_pinned").or_else(|| k.strip_suffix("_digest"))).collect();
    let mut inputs = Inputs::new();
    for (key, value) in fields {
        if let Some((name, part)) = split_image_field(key, &images) {
            if inputs.get(name).is_none() {
                inputs.insert(name, Input::Image(ImageInput::default()));
            }
            if let (Some(Input::Image(image)), Value::String(s)) = (inputs.get_mut(name), value) {
                *image.part_mut(part) = Some(s.clone());
            }
        } else if OS_IMAGE_GIT.contains(&key.as_str()) {
            inputs.insert(
                key.clone(),
                Input::Git(GitInput { commit: value.as_str().map(str::to_owned), ..GitInput::default() }),
            );
        } else {
            inputs.insert(key.clone(), Input::Value(value.clone()));
        }
    }
    inputs
}

fn os_image_lock_inputs(body: &Map<String, Value>) -> Inputs {
    let mut inputs = Inputs::new();
    for (key, value) in body {
        if LOCK_METADATA.contains(&key.as_str()) {
            continue;
        }
        let text = value.as_str().map(str::to_owned);
        let input = if OS_IMAGE_LOCK_IMAGES.contains(&key.as_str()) {
            Input::Image(ImageInput { pinned: text, ..ImageInput::default() })
        } else if OS_IMAGE_GIT.contains(&key.as_str()) {
            Input::Git(GitInput { commit: text, ..GitInput::default() })
        } else {
            Input::Value(value.clone())
        };
        inputs.insert(key.clone(), input);
    }
    inputs
}

fn generic_inputs(fields: &Map<String, Value>) -> Inputs {
    let mut inputs = Inputs::new();
    for (name, value) in fields {
        let Value::Object(tagged) = value else { continue };
        let text = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        let input = match (tagged.get("image"), tagged.get("git"), tagged.get("value")) {
            (Some(Value::Object(o)), _, _) => {
                let mut image = ImageInput::default();
                for part in ImagePart::ALL {
                    *image.part_mut(part) = text(o, part.as_str());
                }
                Input::Image(image)
            }
            (_, Some(Value::Object(o)), _) => {
                let mut git = GitInput::default();
                for part in GitPart::ALL {
                    *git.part_mut(part) = text(o, part.as_str());
                }
                Input::Git(git)
            }
            (_, _, Some(v)) => Input::Value(v.clone()),
            _ => continue,
        };
        inputs.insert(name.clone(), input);
    }
    inputs
}

fn os_image_manifest_fields(inputs: &Inputs) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, input) in inputs.iter() {
        match input {
            Input::Image(image) => {
                for part in ImagePart::ALL {
                    if let Some(v) = image.part(part) {
                        fields.insert(format!("{name}_{}", part.as_str()), Value::from(v));
                    }
                }
            }
            Input::Git(git) => {
                fields.insert(name.to_owned(), git.commit.clone().map_or(Value::Null, Value::from));
            }
            Input::Value(value) => {
                fields.insert(name.to_owned(), value.clone());
            }
        }
    }
    fields
}

fn generic_fields(inputs: &Inputs, lock: bool) -> Map<String, Value> {
    let mut fields = Map::new();
    for (name, input) in inputs.iter() {
        let tagged = match input {
            // A lock needs only what a replay pulls.
            Input::Image(image) if lock => {
                serde_json::json!({ "image": { "pinned": image.pin() } })
            }
            other => serde_json::to_value(other).unwrap_or(Value::Null),
        };
        fields.insert(name.to_owned(), tagged);
    }
    fields
}

pub(crate) fn field_path(profile: Profile, kind: Kind, input: &str, part: Part) -> String {
    match (profile, kind, part) {
        (Profile::OsImage, Kind::Manifest, Part::Image(p)) => format!("inputs.{input}_{}", p.as_str()),
        (Profile::OsImage, Kind::Manifest, _) => format!("inputs.{input}"),
        (Profile::OsImage, Kind::Lock, _) => input.to_owned(),
        (Profile::Generic, _, Part::Image(p)) => format!("inputs.{input}.image.{}", p.as_str()),
        (Profile::Generic, _, Part::Git(p)) => format!("inputs.{input}.git.{}", p.as_str()),
        (Profile::Generic, _, Part::Value) => format!("inputs.{input}.value"),
    }
}

/// The parts an input has (for images and git, the ones present).
pub(crate) fn parts_of(input: &Input) -> Vec<Part> {
    match input {
        Input::Image(image) => {
            ImagePart::ALL.into_iter().filter(|p| image.part(*p).is_some()).map(Part::Image).collect()
        }
        Input::Git(git) => GitPart::ALL.into_iter().filter(|p| git.part(*p).is_some()).map(Part::Git).collect(),
        Input::Value(_) => vec![Part::Value],
    }
}

impl lkg_core::Classify for DocumentError {
    fn kind(&self) -> lkg_core::FailureKind {
        match self {
            // Not UTF-8, or larger than lkg reads: the file is the problem.
            DocumentError::Read { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
                lkg_core::FailureKind::Input
            }
            // The file is there but cannot be read, or cannot be written.
            DocumentError::Read { .. } | DocumentError::Write { .. } => lkg_core::FailureKind::Environment,
            _ => lkg_core::FailureKind::Input,
        }
    }
}
