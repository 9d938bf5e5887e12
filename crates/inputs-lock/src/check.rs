//! Is a lock (or manifest) fit for an exact replay? Every problem is listed,
//! each naming its field.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::document::{Document, DocumentError, Kind, Profile, json_type};
use crate::model::{GitPart, ImagePart, Input, Part, value_text};
use crate::reference::{Digest, ImageRef, ReferenceError, is_full_commit};

/// One thing wrong with a file, naming the field it is in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The field, as a dotted path (`base_image`, `inputs.base_image_digest`,
    /// `run.id`, `inputs.kernel_releases[0]`); `(file)` for the file itself.
    pub field: String,
    /// What is wrong, with its details.
    #[serde(flatten)]
    pub issue: Issue,
    /// The issue in words, with what to do next.
    pub message: String,
}

impl Problem {
    /// A problem with `field`; the message is rendered from `issue`.
    pub fn new(field: impl Into<String>, issue: Issue) -> Problem {
        let message = issue.to_string();
        Problem { field: field.into(), issue, message }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Issue {
    /// The file is missing or is not a JSON object of a known layout.
    #[error("{reason}")]
    Unreadable {
        /// Why.
        reason: String,
    },
    /// A required field is absent.
    #[error("is missing")]
    Missing,
    /// A field has the wrong JSON type.
    #[error("must be {expected}, found {found}")]
    WrongType {
        /// What the field must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A format version this lkg does not read.
    #[error("is {found}; this lkg reads version {supported}: upgrade lkg or regenerate the file")]
    UnsupportedVersion {
        /// The version found.
        found: Value,
        /// The version supported.
        supported: u64,
    },
    /// `null` where a value must be.
    #[error("is null")]
    Null,
    /// An empty string, list or object.
    #[error("is empty")]
    Empty,
    /// A placeholder left in place of a real value.
    #[error("`{}` is a placeholder ({}): put the real value from a run's build-inputs.json", clip(value), clip(marker))]
    Placeholder {
        /// The value.
        value: String,
        /// The placeholder found in it.
        marker: String,
    },
    /// An image reference with a tag but no digest: the tag can move.
    #[error("`{}` is not pinned by digest (a tag can move): pin it as NAME@sha256:<64 hex>", clip(value))]
    NotPinned {
        /// The value.
        value: String,
    },
    /// Not an image reference at all.
    #[error("{reason}")]
    MalformedReference {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A digest that is short, upper-case or of an unknown algorithm.
    #[error("{reason}")]
    MalformedDigest {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A git ref that is not a full commit id.
    #[error(
        "`{}` is not a full commit id (40 lowercase hex characters): branch names and short ids do not pin",
        clip(value)
    )]
    MalformedCommit {
        /// The value.
        value: String,
    },
    /// Two fields of one input disagree.
    #[error("`{}` disagrees with {other_field} `{}`", clip(value), clip(other_value))]
    Inconsistent {
        /// This field's value.
        value: String,
        /// The other field.
        other_field: String,
        /// Its value.
        other_value: String,
    },
    /// A dispatch-time value differs from the lock's.
    #[error(
        "replay mismatch: the lock has `{lock}` but `{given}` was given for `{input}`; \
         dispatch the replay with the lock's value, or update the lock"
    )]
    ReplayMismatch {
        /// The input.
        input: String,
        /// The lock's value.
        lock: String,
        /// The value given (e.g. the workflow's dispatch input).
        given: String,
    },
    /// `--expect` names something the file does not have.
    #[error("names no input of this file; its inputs are: {}", known.join(", "))]
    UnknownExpectation {
        /// The name given.
        name: String,
        /// The inputs the file has.
        known: Vec<String>,
    },
}

/// A value a replay is dispatched with, to compare with the lock's:
/// `--expect build_container=ghcr.io/ublue-os/devcontainer@sha256:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// An input name (`build_container`: its pin), `input.part`
    /// (`base_image.digest`) or a field of the file (`inputs.base_image_digest`).
    pub name: String,
    /// The value given.
    pub value: String,
}

/// `--expect` text that is not `NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not NAME=VALUE (for example build_container=ghcr.io/ublue-os/devcontainer@sha256:...)")]
pub struct ExpectationError(String);

impl FromStr for Expectation {
    type Err = ExpectationError;
    fn from_str(s: &str) -> Result<Expectation, ExpectationError> {
        match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok(Expectation { name: name.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err(ExpectationError(s.to_owned())),
        }
    }
}

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The file checked.
    pub file: String,
    /// Its profile, when it could be read.
    pub profile: Option<Profile>,
    /// Manifest or lock, when it could be read.
    pub kind: Option<Kind>,
    /// How many inputs it has.
    pub inputs: usize,
    /// Every problem found; empty when the file is fit for replay.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// No problems.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.profile, self.kind) {
            (Some(p), Some(k)) => format!("{} {}, {} inputs", p.as_str(), k.as_str(), self.inputs),
            _ => "unreadable".to_owned(),
        };
        if self.is_ok() {
            return writeln!(f, "{}: ok ({what}): every input is pinned", self.file);
        }
        writeln!(f, "{}: {} ({what})", self.file, crate::plural(self.problems.len(), "problem"))?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// Checks the file at `path`. A missing file or one that is not a manifest
/// or lock is a problem in the report, not an error: the verdict is "this
/// cannot be replayed". Only an I/O failure other than "not found" is an error.
pub fn check_file(path: &Path, expectations: &[Expectation]) -> Result<CheckReport, DocumentError> {
    let file = path.display().to_string();
    match Document::read(path) {
        Ok(doc) => Ok(CheckReport {
            file,
            profile: Some(doc.profile()),
            kind: Some(doc.kind()),
            inputs: doc.inputs().len(),
            problems: check(&doc, expectations),
        }),
        // Not UTF-8, or larger than lkg reads: the file's content is the
        // problem, reported like unparsable JSON (exit 1, not "unreadable").
        Err(DocumentError::Read { source, .. }) if source.kind() == std::io::ErrorKind::InvalidData => {
            Ok(CheckReport {
                file: file.clone(),
                profile: None,
                kind: None,
                inputs: 0,
                problems: vec![Problem::new("(file)", Issue::Unreadable { reason: source.to_string() })],
            })
        }
        Err(e @ DocumentError::Read { .. }) => Err(e),
        Err(e) => {
            let reason = match e {
                // The pipeline's "Replay lock file not found", with the usual cause.
                DocumentError::NotFound { path } => {
                    format!(
                        "{} does not exist: a replay needs the lock committed on the branch it runs",
                        path.display()
                    )
                }
                other => lkg_core::render_chain(&other),
            };
            Ok(CheckReport {
                file,
                profile: None,
                kind: None,
                inputs: 0,
                problems: vec![Problem::new("(file)", Issue::Unreadable { reason })],
            })
        }
    }
}

/// Every problem of `doc`: structure (missing fields, wrong types, versions),
/// empty and placeholder values anywhere (unknown fields included), image
/// inputs not pinned by a well-formed digest, git inputs not at a full
/// commit, fields of one input that disagree, and `expectations` that differ
/// from the file's values.
pub fn check(doc: &Document, expectations: &[Expectation]) -> Vec<Problem> {
    let mut problems = structure(doc);
    let mut flagged: BTreeSet<String> = problems.iter().map(|p| p.field.clone()).collect();
    let mut leaves = Vec::new();
    walk_leaves(&Value::Object(doc.body().clone()), "", &mut leaves);
    for problem in leaves {
        if flagged.insert(problem.field.clone()) {
            problems.push(problem);
        }
    }
    problems.extend(pins(doc, &flagged));
    problems.extend(expect(doc, expectations));
    problems
}

/// Only the structural problems: missing fields, wrong types, unknown
/// versions. Commands that read a file for something else than replay
/// (`diff`) refuse a file with these, since its inputs cannot be trusted.
pub fn structure(doc: &Document) -> Vec<Problem> {
    let mut problems = Vec::new();
    let body = doc.body();
    let mut need = |path: &str, shape: Shape| {
        if let Some(p) = shape.check(path, lookup(body, path)) {
            problems.push(p);
        }
    };
    match (doc.profile(), doc.kind()) {
        (Profile::OsImage, Kind::Lock) => {
            need("version", Shape::Version);
            for field in ["description", "base_image", "build_container", "zfs_minor_version", "akmods_upstream_ref"] {
                need(field, Shape::Text);
            }
        }
        (Profile::OsImage, Kind::Manifest) => {
            need("schema_version", Shape::Version);
            run_shape(&mut need);
            need("inputs", Shape::Object);
            need("inputs.use_input_lock", Shape::Bool);
            for field in ["lock_file_path", "fedora_version", "kernel_release"] {
                need(&format!("inputs.{field}"), Shape::Text);
            }
            need("inputs.kernel_releases", Shape::TextList);
            for part in ImagePart::ALL {
                need(&format!("inputs.base_image_{}", part.as_str()), Shape::Text);
            }
            for part in ["ref", "pinned", "digest"] {
                need(&format!("inputs.build_container_{part}"), Shape::Text);
            }
            need("inputs.zfs_minor_version", Shape::Text);
            need("inputs.akmods_upstream_ref", Shape::Text);
        }
        (Profile::Generic, kind) => {
            if kind == Kind::Lock {
                need("version", Shape::Version);
                need("description", Shape::Text);
            } else {
                need("schema_version", Shape::Version);
                if body.contains_key("run") || body.contains_key("generated_at") {
                    run_shape(&mut need);
                }
            }
            need("inputs", Shape::Object);
            if let Some(Value::Object(inputs)) = body.get("inputs") {
                for (name, value) in inputs {
                    generic_input_shape(name, value, kind, &mut need);
                }
            }
        }
    }
    problems
}

/// Run metadata is typed when present but not required: a manifest written
/// outside CI has none, and replay does not need it.
fn run_shape(need: &mut impl FnMut(&str, Shape)) {
    need("generated_at", Shape::Text);
    need("repository", Shape::OptionalText);
    need("workflow", Shape::OptionalText);
    need("run", Shape::OptionalObject);
    for field in ["id", "attempt", "number"] {
        need(&format!("run.{field}"), Shape::OptionalInteger);
    }
    for field in ["ref", "sha", "actor"] {
        need(&format!("run.{field}"), Shape::OptionalText);
    }
}

fn generic_input_shape(name: &str, value: &Value, kind: Kind, need: &mut impl FnMut(&str, Shape)) {
    let base = format!("inputs.{name}");
    let tagged = match value {
        Value::Object(o) if o.len() == 1 => o.iter().next(),
        _ => None,
    };
    match tagged {
        Some((tag, _)) if tag == "image" => {
            need(&format!("{base}.image"), Shape::Object);
            for part in ImagePart::ALL {
                let required = kind == Kind::Lock && part == ImagePart::Pinned;
                need(
                    &format!("{base}.image.{}", part.as_str()),
                    if required { Shape::Text } else { Shape::OptionalText },
                );
            }
        }
        Some((tag, _)) if tag == "git" => {
            need(&format!("{base}.git"), Shape::Object);
            for part in GitPart::ALL {
                let required = part == GitPart::Commit;
                need(
                    &format!("{base}.git.{}", part.as_str()),
                    if required { Shape::Text } else { Shape::OptionalText },
                );
            }
        }
        Some((tag, _)) if tag == "value" => {}
        _ => need(&base, Shape::TaggedInput),
    }
}

/// What a known field must hold.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Version,
    Text,
    OptionalText,
    Bool,
    OptionalInteger,
    TextList,
    Object,
    OptionalObject,
    TaggedInput,
}

impl Shape {
    fn check(self, path: &str, value: Option<&Value>) -> Option<Problem> {
        let wrong = |expected| {
            Some(Problem::new(path, Issue::WrongType { expected, found: value.map_or("nothing", json_type) }))
        };
        let Some(value) = value else {
            return match self {
                Shape::OptionalText | Shape::OptionalInteger | Shape::OptionalObject => None,
                _ => Some(Problem::new(path, Issue::Missing)),
            };
        };
        match (self, value) {
            (Shape::Version, Value::Number(n)) if n.as_u64() == Some(1) => None,
            (Shape::Version, Value::Number(_)) => {
                Some(Problem::new(path, Issue::UnsupportedVersion { found: value.clone(), supported: 1 }))
            }
            (Shape::Version, _) => wrong("the number 1"),
            // Null is reported by the leaf walk, once.
            (_, Value::Null)
            | (Shape::Text | Shape::OptionalText, Value::String(_))
            | (Shape::Bool, Value::Bool(_))
            | (Shape::Object | Shape::OptionalObject, Value::Object(_)) => None,
            (Shape::OptionalInteger, Value::Number(n)) if n.is_u64() => None,
            (Shape::TextList, Value::Array(items)) if items.iter().all(Value::is_string) => None,
            (Shape::Text | Shape::OptionalText, _) => wrong("a string"),
            (Shape::Bool, _) => wrong("true or false"),
            (Shape::OptionalInteger, _) => wrong("a whole number"),
            (Shape::TextList, _) => wrong("a list of strings"),
            (Shape::Object | Shape::OptionalObject, _) => wrong("an object"),
            (Shape::TaggedInput, _) => wrong("an object with exactly one of `image`, `git`, `value`"),
        }
    }
}

fn lookup<'a>(body: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = body.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Empty, null and placeholder values anywhere in the file.
fn walk_leaves(value: &Value, path: &str, out: &mut Vec<Problem>) {
    let child = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::Null => out.push(Problem::new(path, Issue::Null)),
        Value::String(s) if s.trim().is_empty() => out.push(Problem::new(path, Issue::Empty)),
        Value::String(s) => {
            if let Some(marker) = placeholder(s) {
                out.push(Problem::new(path, Issue::Placeholder { value: s.clone(), marker }));
            }
        }
        Value::Array(items) if items.is_empty() => out.push(Problem::new(path, Issue::Empty)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_leaves(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) if o.is_empty() && !path.is_empty() => out.push(Problem::new(path, Issue::Empty)),
        Value::Object(o) => {
            for (key, v) in o {
                walk_leaves(v, &child(key), out);
            }
        }
        Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The placeholder in `value`, if any: `REPLACE_ME`, `CHANGEME`/`CHANGE_ME`
/// anywhere; `TODO`, `FIXME`, `TBD` or a run of three or more `x` as a word;
/// `<...>` (`<digest>`). Words, not substrings, so "Mastodon" is not "TODO".
pub fn placeholder(value: &str) -> Option<String> {
    let upper = value.to_ascii_uppercase();
    for marker in ["REPLACE_ME", "REPLACE-ME", "CHANGE_ME", "CHANGEME"] {
        if upper.contains(marker) {
            return Some(marker.to_owned());
        }
    }
    if let Some(open) = value.find('<')
        && let Some(close) = value[open..].find('>')
        && close > 1
    {
        return Some(value[open..=open + close].to_owned());
    }
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| matches!(*word, "TODO" | "FIXME" | "TBD") || (word.len() >= 3 && word.bytes().all(|b| b == b'X')))
        .map(str::to_owned)
}

/// Image pins, digests, commits and their agreement, for fields not already
/// reported.
fn pins(doc: &Document, flagged: &BTreeSet<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, input) in doc.inputs().iter() {
        let field = |part: Part| doc.field_path(name, part);
        let usable = |part: Part, value: Option<&str>| -> Option<String> {
            let value = value?;
            (!flagged.contains(&field(part))).then(|| value.to_owned())
        };
        match input {
            Input::Image(image) => {
                let pinned_field = field(Part::Image(ImagePart::Pinned));
                let pinned = usable(Part::Image(ImagePart::Pinned), image.pinned.as_deref());
                let pinned_ref = pinned.as_deref().and_then(|v| match pinned_problem(v) {
                    Ok(r) => Some(r),
                    Err(issue) => {
                        problems.push(Problem::new(&pinned_field, issue));
                        None
                    }
                });
                let digest = usable(Part::Image(ImagePart::Digest), image.digest.as_deref()).and_then(|v| {
                    Digest::parse(&v)
                        .map_err(|e| {
                            problems.push(Problem::new(
                                field(Part::Image(ImagePart::Digest)),
                                Issue::MalformedDigest { value: v.clone(), reason: clipped(&e.to_string(), &v) },
                            ));
                        })
                        .ok()
                });
                if let Some(reference) = usable(Part::Image(ImagePart::Ref), image.reference.as_deref())
                    && let Err(e) = ImageRef::parse(&reference)
                {
                    problems.push(Problem::new(field(Part::Image(ImagePart::Ref)), reference_issue(&reference, e)));
                }
                let name_ref = usable(Part::Image(ImagePart::Name), image.name.as_deref()).and_then(|v| {
                    ImageRef::parse(&v)
                        .map_err(|e| {
                            problems.push(Problem::new(field(Part::Image(ImagePart::Name)), reference_issue(&v, e)));
                        })
                        .ok()
                });
                if let (Some(p), Some(d)) = (&pinned_ref, &digest)
                    && p.digest() != Some(d)
                {
                    problems.push(Problem::new(
                        &pinned_field,
                        Issue::Inconsistent {
                            value: p.to_string(),
                            other_field: field(Part::Image(ImagePart::Digest)),
                            other_value: d.to_string(),
                        },
                    ));
                }
                if let (Some(p), Some(n)) = (&pinned_ref, &name_ref)
                    && p.name() != n.name()
                {
                    problems.push(Problem::new(
                        &pinned_field,
                        Issue::Inconsistent {
                            value: p.to_string(),
                            other_field: field(Part::Image(ImagePart::Name)),
                            other_value: image.name.clone().unwrap_or_default(),
                        },
                    ));
                }
            }
            Input::Git(git) => {
                if let Some(commit) = usable(Part::Git(GitPart::Commit), git.commit.as_deref())
                    && !is_full_commit(&commit)
                {
                    problems.push(Problem::new(
                        field(Part::Git(GitPart::Commit)),
                        Issue::MalformedCommit { value: commit },
                    ));
                }
            }
            Input::Value(_) => {}
        }
    }
    problems
}

fn pinned_problem(value: &str) -> Result<ImageRef, Issue> {
    match ImageRef::parse(value) {
        Ok(r) if r.digest().is_some() => Ok(r),
        Ok(_) => Err(Issue::NotPinned { value: value.to_owned() }),
        Err(e) => Err(reference_issue(value, e)),
    }
}

fn reference_issue(value: &str, error: ReferenceError) -> Issue {
    match error {
        ReferenceError::Digest { source, .. } => {
            Issue::MalformedDigest { value: value.to_owned(), reason: clipped(&source.to_string(), value) }
        }
        other => Issue::MalformedReference { value: value.to_owned(), reason: clipped(&other.to_string(), value) },
    }
}

/// A value as a problem quotes it: whole up to 512 characters (any valid
/// pinned reference), clipped after, so a 10 MB field is not printed back.
fn clip(value: &str) -> String {
    lkg_core::clip_at(value, 512)
}

/// `reason` with `value` in it [`clip`]ped.
fn clipped(reason: &str, value: &str) -> String {
    if value.chars().nth(512).is_some() { reason.replace(value, &clip(value)) } else { reason.to_owned() }
}

fn expect(doc: &Document, expectations: &[Expectation]) -> Vec<Problem> {
    let inputs = doc.inputs();
    let mut problems = Vec::new();
    for expectation in expectations {
        let Some((name, part)) = doc.locate(&expectation.name) else {
            problems.push(Problem::new(
                format!("--expect {}", expectation.name),
                Issue::UnknownExpectation {
                    name: expectation.name.clone(),
                    known: inputs.names().into_iter().map(str::to_owned).collect(),
                },
            ));
            continue;
        };
        let Some(input) = inputs.get(&name) else { continue };
        let part = part.unwrap_or(match input {
            Input::Image(_) => Part::Image(ImagePart::Pinned),
            Input::Git(_) => Part::Git(GitPart::Commit),
            Input::Value(_) => Part::Value,
        });
        let lock_value = match (input, part) {
            (Input::Image(image), Part::Image(ImagePart::Pinned)) => image.pin(),
            (Input::Value(value), Part::Value) => Some(value_text(value)),
            _ => input.part(part),
        };
        let field = doc.field_path(&name, part);
        match lock_value {
            None => problems.push(Problem::new(field, Issue::Missing)),
            Some(lock) if !same_value(&lock, &expectation.value, input) => problems.push(Problem::new(
                field,
                Issue::ReplayMismatch { input: name.clone(), lock, given: expectation.value.clone() },
            )),
            Some(_) => {}
        }
    }
    problems
}

/// Image pins compare as images (`busybox@sha256:x` is
/// `docker.io/library/busybox@sha256:x`); everything else as exact text.
fn same_value(lock: &str, given: &str, input: &Input) -> bool {
    if lock == given {
        return true;
    }
    if !matches!(input, Input::Image(_)) {
        return false;
    }
    match (ImageRef::parse(lock), ImageRef::parse(given)) {
        (Ok(a), Ok(b)) => a.digest().is_some() && a.name() == b.name() && a.digest() == b.digest(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_words_not_substrings() {
        for value in [
            "REPLACE_ME",
            "ghcr.io/x@sha256:REPLACE_ME",
            "TODO",
            "fix me: TODO later",
            "<digest>",
            "xxx",
            "sha256:xxxxxxxx",
            "changeme",
            "FIXME",
        ] {
            assert!(placeholder(value).is_some(), "{value}");
        }
        for value in
            ["Mastodon", "ghcr.io/ublue-os/kinoite-main@sha256:5cba", "6.18.9-200.fc43.x86_64", "a < b", "2.4", "todos"]
        {
            assert_eq!(placeholder(value), None, "{value}");
        }
    }

    #[test]
    fn expectations_parse() {
        let e: Expectation = "build_container=ghcr.io/x@sha256:a=b".parse().unwrap();
        assert_eq!((e.name.as_str(), e.value.as_str()), ("build_container", "ghcr.io/x@sha256:a=b"));
        assert!("novalue".parse::<Expectation>().is_err());
        assert!("=x".parse::<Expectation>().is_err());
    }
}
