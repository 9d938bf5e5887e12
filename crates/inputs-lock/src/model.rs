//! The generic model: named inputs, each an image, a git commit or a value,
//! plus the metadata of the run that used them.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;

/// The inputs of a build, by name, in the order the file or spec gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    entries: Vec<(String, Input)>,
}

impl Inputs {
    /// No inputs.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Adds `input` as `name`, or replaces the input of that name in place.
    pub fn insert(&mut self, name: impl Into<String>, input: Input) {
        let name = name.into();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = input,
            None => self.entries.push((name, input)),
        }
    }

    /// The input called `name`.
    pub fn get(&self, name: &str) -> Option<&Input> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Input> {
        self.entries.iter_mut().find(|(n, _)| n == name).map(|(_, i)| i)
    }

    /// Names and inputs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Input)> {
        self.entries.iter().map(|(n, i)| (n.as_str(), i))
    }

    /// Input names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// How many inputs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Serialize for Inputs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, input) in &self.entries {
            map.serialize_entry(name, input)?;
        }
        map.end()
    }
}

/// One input of a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Input {
    /// A container image.
    Image(ImageInput),
    /// A git repository at a commit.
    Git(GitInput),
    /// A plain value: a string, a flag, a number, a list.
    Value(Value),
}

impl Input {
    /// The one value that pins this input: an image's `name@digest`, a git
    /// commit, a value's text (a list joined by spaces). `None` when the
    /// input has nothing that pins it.
    pub fn pin(&self) -> Option<String> {
        match self {
            Input::Image(image) => image.pin(),
            Input::Git(git) => git.commit.clone(),
            Input::Value(value) => Some(value_text(value)),
        }
    }

    /// The part of this input named `part`, as text.
    pub fn part(&self, part: Part) -> Option<String> {
        match (self, part) {
            (Input::Image(image), Part::Image(p)) => image.part(p).map(str::to_owned),
            (Input::Git(git), Part::Git(p)) => git.part(p).map(str::to_owned),
            (Input::Value(value), Part::Value) => Some(value_text(value)),
            _ => None,
        }
    }

    /// `image`, `git` or `value`.
    pub fn kind(&self) -> &'static str {
        match self {
            Input::Image(_) => "image",
            Input::Git(_) => "git",
            Input::Value(_) => "value",
        }
    }
}

/// A value as one line of text: strings as they are, lists joined by spaces
/// (as the OS-image pipeline passes `KERNEL_RELEASES`), anything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")
        }
        other => other.to_string(),
    }
}

/// A container image input. Every part is optional because files carry
/// different subsets: a lock has only `pinned`, a manifest all five.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageInput {
    /// The reference as given, possibly floating (`kinoite-main:latest`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The repository name (`ghcr.io/ublue-os/kinoite-main`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An immutable tag that pointed at the digest when resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The manifest digest (`sha256:...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `name@digest`: what a replay pulls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

impl ImageInput {
    /// `pinned`, else `name@digest`, else nothing.
    pub fn pin(&self) -> Option<String> {
        self.pinned.clone().or_else(|| Some(format!("{}@{}", self.name.as_ref()?, self.digest.as_ref()?)))
    }

    /// One part as text.
    pub fn part(&self, part: ImagePart) -> Option<&str> {
        match part {
            ImagePart::Ref => self.reference.as_deref(),
            ImagePart::Name => self.name.as_deref(),
            ImagePart::Tag => self.tag.as_deref(),
            ImagePart::Digest => self.digest.as_deref(),
            ImagePart::Pinned => self.pinned.as_deref(),
        }
    }

    pub(crate) fn part_mut(&mut self, part: ImagePart) -> &mut Option<String> {
        match part {
            ImagePart::Ref => &mut self.reference,
            ImagePart::Name => &mut self.name,
            ImagePart::Tag => &mut self.tag,
            ImagePart::Digest => &mut self.digest,
            ImagePart::Pinned => &mut self.pinned,
        }
    }
}

/// A git input: a repository at a full commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GitInput {
    /// Where the repository lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The branch or tag the commit was taken from (informational: it moves).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The full commit id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl GitInput {
    /// One part as text.
    pub fn part(&self, part: GitPart) -> Option<&str> {
        match part {
            GitPart::Url => self.url.as_deref(),
            GitPart::Ref => self.reference.as_deref(),
            GitPart::Commit => self.commit.as_deref(),
        }
    }

    pub(crate) fn part_mut(&mut self, part: GitPart) -> &mut Option<String> {
        match part {
            GitPart::Url => &mut self.url,
            GitPart::Ref => &mut self.reference,
            GitPart::Commit => &mut self.commit,
        }
    }
}

/// A part of an image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImagePart {
    /// The reference as given.
    Ref,
    /// The repository name.
    Name,
    /// The immutable tag.
    Tag,
    /// The digest.
    Digest,
    /// `name@digest`.
    Pinned,
}

impl ImagePart {
    /// Every part, in the order files write them.
    pub const ALL: [ImagePart; 5] =
        [ImagePart::Ref, ImagePart::Name, ImagePart::Tag, ImagePart::Pinned, ImagePart::Digest];

    /// The part's name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePart::Ref => "ref",
            ImagePart::Name => "name",
            ImagePart::Tag => "tag",
            ImagePart::Digest => "digest",
            ImagePart::Pinned => "pinned",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<ImagePart> {
        ImagePart::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A part of a git input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GitPart {
    /// The repository URL.
    Url,
    /// The branch or tag.
    Ref,
    /// The commit.
    Commit,
}

impl GitPart {
    /// Every part, in the order files write them.
    pub const ALL: [GitPart; 3] = [GitPart::Url, GitPart::Ref, GitPart::Commit];

    /// The part's name in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            GitPart::Url => "url",
            GitPart::Ref => "ref",
            GitPart::Commit => "commit",
        }
    }
}

/// A part of any input: what a field of a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Part {
    /// A part of an image input.
    Image(ImagePart),
    /// A part of a git input.
    Git(GitPart),
    /// A value input's value.
    Value,
}

impl Part {
    /// `digest`, `commit`, `value`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Image(p) => p.as_str(),
            Part::Git(p) => p.as_str(),
            Part::Value => "value",
        }
    }
}

/// What a manifest records about the run that produced it. Field names are
/// those of the OS-image pipeline's `build-inputs.json` (GitHub Actions'
/// `GITHUB_*` variables).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunMetadata {
    /// `owner/repo` (`GITHUB_REPOSITORY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The workflow's name (`GITHUB_WORKFLOW`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The run (`GITHUB_RUN_*`, `GITHUB_REF`, `GITHUB_SHA`, `GITHUB_ACTOR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

/// One CI run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Run {
    /// The run id (a number on GitHub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The attempt of this run (re-runs count up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Value>,
    /// The run number within the workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<Value>,
    /// The git ref that triggered the run (`refs/heads/main`).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The commit the run built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    /// Who triggered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl RunMetadata {
    /// Run metadata from GitHub Actions' environment variables, read through
    /// `var` (pass `|name| std::env::var(name).ok()`). Missing or empty
    /// variables leave their field out; numeric ids are written as numbers,
    /// as the pipeline's `jq tonumber` does.
    pub fn from_github_env(var: impl Fn(&str) -> Option<String>) -> RunMetadata {
        let text = |name: &str| var(name).filter(|v| !v.is_empty());
        let number =
            |name: &str| text(name).map(|v| v.parse::<u64>().map_or_else(|_| Value::String(v.clone()), Value::from));
        let run = Run {
            id: number("GITHUB_RUN_ID"),
            attempt: number("GITHUB_RUN_ATTEMPT"),
            number: number("GITHUB_RUN_NUMBER"),
            reference: text("GITHUB_REF"),
            sha: text("GITHUB_SHA"),
            actor: text("GITHUB_ACTOR"),
        };
        RunMetadata {
            repository: text("GITHUB_REPOSITORY"),
            workflow: text("GITHUB_WORKFLOW"),
            run: (run != Run::default()).then_some(run),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_metadata_from_github_variables() {
        let vars = [
            ("GITHUB_REPOSITORY", "danathar/kinoite-zfs"),
            ("GITHUB_WORKFLOW", "Build And Promote Main Image"),
            ("GITHUB_RUN_ID", "22512345678"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_RUN_NUMBER", "412"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_ACTOR", "danathar"),
        ];
        let meta = RunMetadata::from_github_env(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned()));
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["run"]["id"], serde_json::json!(22_512_345_678_u64));
        assert_eq!(json["run"]["ref"], "refs/heads/main");
        assert_eq!(json["workflow"], "Build And Promote Main Image");
        assert_eq!(RunMetadata::from_github_env(|_| None), RunMetadata::default());
    }

    #[test]
    fn pins() {
        let image = ImageInput { name: Some("r/x".into()), digest: Some("sha256:ab".into()), ..Default::default() };
        assert_eq!(Input::Image(image).pin().as_deref(), Some("r/x@sha256:ab"));
        assert_eq!(Input::Value(serde_json::json!(["a", "b"])).pin().as_deref(), Some("a b"));
        assert_eq!(Input::Value(serde_json::json!(true)).pin().as_deref(), Some("true"));
    }
}
