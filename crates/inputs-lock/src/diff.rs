//! What moved between two runs: input differences, kept apart from run
//! metadata differences (ids, timestamps), which always differ.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::document::{Document, Kind, Profile};
use crate::model::{GitPart, ImagePart, Input, Inputs};

/// The differences between two manifests (or a manifest and a lock).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// No input differs: the two runs used the same inputs.
    pub same_inputs: bool,
    /// Inputs present on both sides.
    pub common_inputs: usize,
    /// Input differences: what a build used differently. Field names are
    /// `input` or `input.part` (`base_image.digest`).
    pub inputs: Vec<Difference>,
    /// Differences in everything else (run id, timestamps, repository):
    /// expected between two runs, never a cause on their own.
    pub run: Vec<Difference>,
    /// The commit both runs built, when their `run.sha` is the same: then
    /// any input difference is a floating input that moved: the likely cause
    /// when one commit behaves differently in two runs.
    pub same_commit: Option<String>,
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The field (`base_image.digest`, `kernel_release`, `run.id`).
    pub field: String,
    /// Changed, added or removed.
    pub change: Change,
    /// The old value, absent when added.
    pub old: Option<Value>,
    /// The new value, absent when removed.
    pub new: Option<Value>,
}

/// How a field differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// Both sides have it, with different values.
    Changed,
    /// Only the new side has it.
    Added,
    /// Only the old side has it.
    Removed,
}

impl Difference {
    fn between(field: String, old: Option<Value>, new: Option<Value>) -> Difference {
        let change = match (&old, &new) {
            (None, _) => Change::Added,
            (_, None) => Change::Removed,
            _ => Change::Changed,
        };
        Difference { field, change, old, new }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            None => "(absent)".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        write!(f, "{}: {} -> {}", self.field, show(&self.old), show(&self.new))
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.same_inputs {
            writeln!(f, "inputs are the same ({} inputs)", self.common_inputs)?;
        } else {
            let count = |c: Change| self.inputs.iter().filter(|d| d.change == c).count();
            writeln!(
                f,
                "inputs differ: {} changed, {} added, {} removed",
                count(Change::Changed),
                count(Change::Added),
                count(Change::Removed)
            )?;
            for difference in &self.inputs {
                writeln!(f, "  {difference}")?;
            }
            if let Some(sha) = &self.same_commit {
                writeln!(
                    f,
                    "  note: both runs built commit {sha}: a floating input moved; \
                     replay the good run with `lkg-inputs lock-from` to confirm"
                )?;
            }
        }
        if self.run.is_empty() {
            writeln!(f, "run metadata is the same")
        } else {
            writeln!(f, "run metadata: {} (not inputs)", crate::plural(self.run.len(), "difference"))?;
            for difference in &self.run {
                writeln!(f, "  {difference}")?;
            }
            Ok(())
        }
    }
}

/// Compares `old` with `new`. Image inputs are compared part by part
/// (`ref`, `name`, `tag`, `digest`, `pinned`), only where both sides have the
/// part, so a lock (which has only `pinned`) compares with a manifest; a
/// `pinned` that changed only because its digest did is not repeated.
pub fn diff(old: &Document, new: &Document) -> Diff {
    let (a, b) = (old.inputs(), new.inputs());
    let mut inputs = Vec::new();
    let mut common = 0;
    for (name, left) in a.iter() {
        match b.get(name) {
            Some(right) => {
                common += 1;
                compare(name, left, right, &mut inputs);
            }
            None => inputs.push(Difference::between(name.to_owned(), Some(whole(left)), None)),
        }
    }
    for (name, right) in b.iter() {
        if a.get(name).is_none() {
            inputs.push(Difference::between(name.to_owned(), None, Some(whole(right))));
        }
    }
    let (ma, mb) = (metadata(old), metadata(new));
    let mut run = Vec::new();
    for (field, left) in &ma {
        match mb.iter().find(|(f, _)| f == field) {
            Some((_, right)) if right == left => {}
            Some((_, right)) => run.push(Difference::between(field.clone(), Some(left.clone()), Some(right.clone()))),
            None => run.push(Difference::between(field.clone(), Some(left.clone()), None)),
        }
    }
    for (field, right) in &mb {
        if !ma.iter().any(|(f, _)| f == field) {
            run.push(Difference::between(field.clone(), None, Some(right.clone())));
        }
    }
    let sha =
        |m: &[(String, Value)]| m.iter().find(|(f, _)| f == "run.sha").and_then(|(_, v)| v.as_str().map(str::to_owned));
    let same_commit = match (sha(&ma), sha(&mb)) {
        (Some(x), Some(y)) if x == y => Some(x),
        _ => None,
    };
    Diff { same_inputs: inputs.is_empty(), common_inputs: common, inputs, run, same_commit }
}

fn compare(name: &str, left: &Input, right: &Input, out: &mut Vec<Difference>) {
    let mut part = |part: &str, l: Option<&str>, r: Option<&str>| {
        if let (Some(l), Some(r)) = (l, r)
            && l != r
        {
            out.push(Difference::between(format!("{name}.{part}"), Some(l.into()), Some(r.into())));
            return true;
        }
        false
    };
    match (left, right) {
        (Input::Image(l), Input::Image(r)) => {
            let mut digest_moved = false;
            for p in [ImagePart::Ref, ImagePart::Name, ImagePart::Tag, ImagePart::Digest, ImagePart::Pinned] {
                if p == ImagePart::Pinned && digest_moved {
                    continue;
                }
                let moved = part(p.as_str(), l.part(p), r.part(p));
                digest_moved |= p == ImagePart::Digest && moved;
            }
        }
        (Input::Git(l), Input::Git(r)) => {
            for p in GitPart::ALL {
                part(p.as_str(), l.part(p), r.part(p));
            }
        }
        (Input::Value(l), Input::Value(r)) => {
            if l != r {
                out.push(Difference::between(name.to_owned(), Some(l.clone()), Some(r.clone())));
            }
        }
        // A lock's git commit and a manifest's plain value for the same name
        // still compare by their pin.
        (l, r) => {
            if l.pin() != r.pin() {
                out.push(Difference::between(name.to_owned(), Some(whole(l)), Some(whole(r))));
            }
        }
    }
}

/// One value standing for a whole input: its pin, else its JSON.
fn whole(input: &Input) -> Value {
    match input {
        Input::Value(v) => v.clone(),
        other => other.pin().map_or_else(|| serde_json::to_value(other).unwrap_or(Value::Null), Value::from),
    }
}

/// Every non-input field of `doc`, flattened to dotted paths.
fn metadata(doc: &Document) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let input_fields: Inputs = doc.inputs();
    for (key, value) in doc.body() {
        let is_input = match (doc.profile(), doc.kind()) {
            (Profile::OsImage, Kind::Lock) => input_fields.get(key).is_some(),
            _ => key == "inputs",
        };
        if !is_input {
            flatten(key, value, &mut out);
        }
    }
    out
}

fn flatten(path: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, v) in fields {
                flatten(&format!("{path}.{key}"), v, out);
            }
        }
        other => out.push((path.to_owned(), other.clone())),
    }
}
