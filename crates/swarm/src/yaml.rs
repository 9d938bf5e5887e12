//! Reading the YAML lkg is handed (compose files, reconcile configs, fleet
//! files) so that a small hostile document costs neither gigabytes nor
//! minutes: every YAML lkg reads goes through [`from_str`].
//!
//! `serde_yaml_ng` alone lets three shapes through (issue 16, finding 5):
//!
//! - **aliases**: `*a` repeats the anchored node wherever it appears, so
//!   1,000 aliases of a 1 MB string build 1 GB of values (`update` reached
//!   3.9 GB). lkg measures what the aliases expand to while deserialising,
//!   before building anything, and refuses a document that expands past
//!   [`expansion_limit`] (8 times the file, at least 1 MiB);
//! - **deep nesting**: libyaml's scanner costs time quadratic in the depth of
//!   `[`/`{` nesting (100,000 `[` took 45 s), and it reads the whole document
//!   before `serde_yaml_ng`'s own depth limit is checked. No YAML lkg reads
//!   needs more than a few dozen brackets, so a document with more than
//!   [`MAX_FLOW_INDICATORS`] of them, anywhere, quoted or not, is refused
//!   before libyaml sees it (a count that can only over-estimate the depth,
//!   so no quoting trick hides one); the depth itself, block and flow, is
//!   checked exactly while deserialising ([`MAX_DEPTH`]);
//! - **size**: libyaml's events take 60-150 bytes of memory per input byte,
//!   so a document is at most [`MAX_INPUT`].
//!
//! ```
//! let services: serde_yaml_ng::Value = lkg_swarm::yaml::from_str("services: {app: {image: busybox}}")?;
//! assert!(services["services"]["app"].is_mapping());
//!
//! let bomb = format!("a: &a {}\nb: [{}]\n", "x".repeat(500_000), ["*a"; 20].join(", "));
//! let err = lkg_swarm::yaml::from_str::<serde_yaml_ng::Value>(&bomb).unwrap_err();
//! assert!(matches!(err, lkg_swarm::yaml::YamlError::Expansion { .. }), "{err}");
//! # Ok::<(), lkg_swarm::yaml::YamlError>(())
//! ```

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

/// The deepest nesting of sequences and mappings lkg reads (compose files
/// nest about eight levels). Below `serde_yaml_ng`'s own limit of 128, so
/// this error, which says what to do, is the one a user sees.
pub const MAX_DEPTH: usize = 64;

/// The most `[` and `{` characters a document may hold, counted anywhere
/// (in strings and comments too): a bound on its flow nesting that costs
/// libyaml about 0.3 s at worst, and far above what a compose file has.
pub const MAX_FLOW_INDICATORS: usize = 10_000;

/// The largest YAML document lkg reads (a 1 MiB `- - - ...` still takes
/// 150 MB of libyaml events; compose files are a few kilobytes).
pub const MAX_INPUT: usize = 1 << 20;

/// The least expansion every document is allowed, however small.
pub const MIN_EXPANSION: usize = 1 << 20;

/// How many times its own size a document may expand to through aliases.
pub const EXPANSION_FACTOR: usize = 8;

/// What every node counts towards the expansion besides its text: a node
/// costs memory even when it is empty.
const NODE_COST: usize = 8;

/// The most a document of `len` bytes may expand to: [`EXPANSION_FACTOR`]
/// times `len`, at least [`MIN_EXPANSION`]. Expansion counts every scalar's
/// bytes and 8 bytes per node, each alias counting its whole anchored node
/// again; a document without aliases stays near its own size.
pub fn expansion_limit(len: usize) -> usize {
    len.saturating_mul(EXPANSION_FACTOR).max(MIN_EXPANSION)
}

/// A YAML document lkg refuses. Callers wrap it in their own error, which
/// names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlError {
    /// The text is not YAML, or not the YAML the caller expects.
    #[error("not valid YAML: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    /// The document is larger than [`MAX_INPUT`].
    #[error("{len} bytes of YAML, more than the {limit} lkg reads; no compose or config file needs that much")]
    Input {
        /// The document's size.
        len: usize,
        /// [`MAX_INPUT`].
        limit: usize,
    },
    /// More `[` and `{` than [`MAX_FLOW_INDICATORS`].
    #[error(
        "more than {limit} `[` and `{{` characters: refused before parsing, as nesting that deep costs minutes; \
         write long lists as block sequences (`- item`)"
    )]
    FlowIndicators {
        /// [`MAX_FLOW_INDICATORS`].
        limit: usize,
    },
    /// Sequences and mappings nested deeper than [`MAX_DEPTH`].
    #[error("sequences and mappings nested deeper than {limit} levels; lkg reads no YAML that deep")]
    Depth {
        /// [`MAX_DEPTH`].
        limit: usize,
    },
    /// Aliases expand the document past [`expansion_limit`].
    #[error(
        "its aliases (`*name`) expand it to more than {limit} bytes ({factor} times the file, at least 1 MiB): \
         refused as an alias bomb; repeat fewer large anchored values"
    )]
    Expansion {
        /// The limit for this document.
        limit: usize,
        /// [`EXPANSION_FACTOR`].
        factor: usize,
    },
}

impl YamlError {
    /// The line the parser stopped at (1-based), for a syntax error that has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            YamlError::Syntax(e) => e.location().map(|l| l.line()),
            _ => None,
        }
    }
}

impl lkg_core::Classify for YamlError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Input
    }
}

/// Deserialises `text` as a `T` once [`check`] accepts it.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check(text)?;
    Ok(serde_yaml_ng::from_str(text)?)
}

/// Refuses `text` when it is larger than [`MAX_INPUT`], holds more than
/// [`MAX_FLOW_INDICATORS`] `[`/`{`, nests deeper than [`MAX_DEPTH`] or
/// expands past [`expansion_limit`]; a syntax error is reported too. Costs
/// one parse, without building values.
pub fn check(text: &str) -> Result<(), YamlError> {
    if text.len() > MAX_INPUT {
        return Err(YamlError::Input { len: text.len(), limit: MAX_INPUT });
    }
    if flow_indicators(text) > MAX_FLOW_INDICATORS {
        return Err(YamlError::FlowIndicators { limit: MAX_FLOW_INDICATORS });
    }
    let mut budget = Budget { left: expansion_limit(text.len()), refused: None };
    let measured = Measure { budget: &mut budget, depth: 0 }.deserialize(serde_yaml_ng::Deserializer::from_str(text));
    match (measured, budget.refused) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(refusal)) => Err(refusal.into_error(text.len())),
        (Err(e), None) => Err(YamlError::Syntax(e)),
    }
}

/// The `[` and `{` in `text`, wherever they are: libyaml's flow nesting
/// can never be deeper.
fn flow_indicators(text: &str) -> usize {
    text.bytes().filter(|b| matches!(b, b'[' | b'{')).count()
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Depth,
    Expansion,
}

impl Refusal {
    fn into_error(self, len: usize) -> YamlError {
        match self {
            Refusal::Depth => YamlError::Depth { limit: MAX_DEPTH },
            Refusal::Expansion => YamlError::Expansion { limit: expansion_limit(len), factor: EXPANSION_FACTOR },
        }
    }
}

struct Budget {
    left: usize,
    refused: Option<Refusal>,
}

impl Budget {
    fn charge<E: de::Error>(&mut self, bytes: usize) -> Result<(), E> {
        match self.left.checked_sub(bytes + NODE_COST) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => self.refuse(Refusal::Expansion),
        }
    }

    fn refuse<E: de::Error>(&mut self, refusal: Refusal) -> Result<(), E> {
        self.refused = Some(refusal);
        // The typed refusal is in `refused`; this text never reaches a user.
        Err(E::custom("refused"))
    }
}

/// Walks a document the way a value would be built, counting instead of
/// allocating: aliases are replayed by `serde_yaml_ng`, so each counts its
/// anchored node again.
struct Measure<'b> {
    budget: &'b mut Budget,
    depth: usize,
}

impl Measure<'_> {
    fn nested(&mut self) -> Measure<'_> {
        Measure { budget: self.budget, depth: self.depth + 1 }
    }

    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.budget.charge(0)?;
        if self.depth >= MAX_DEPTH {
            return self.budget.refuse(Refusal::Depth);
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Measure<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Measure<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.budget.charge(s.len())
    }

    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<(), E> {
        self.budget.charge(b.len())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.budget.charge(0)
    }

    fn visit_some<D: de::Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        self.nested().deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        self.nested().deserialize(d)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.nested())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.nested())?.is_some() {
            map.next_value_seed(self.nested())?;
        }
        Ok(())
    }

    // A tagged node (`!tag value`): the tag, then the value.
    fn visit_enum<A: de::EnumAccess<'de>>(mut self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess as _;
        let (tag, contents) = data.variant_seed(Tag)?;
        self.budget.charge(tag)?;
        contents.newtype_variant_seed(self.nested())
    }
}

/// A tag's name, measured.
struct Tag;

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Tag {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML tag")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        Ok(s.len())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;
    use serde_yaml_ng::Value;

    fn refusal(text: &str) -> YamlError {
        from_str::<Value>(text).expect_err("refused")
    }

    #[test]
    fn ordinary_documents_with_anchors_and_merge_keys_are_read() {
        let text = "x-defaults: &defaults\n  restart: always\n  deploy: {replicas: 1}\nservices:\n  a:\n    <<: *defaults\n    image: a\n  b:\n    <<: *defaults\n    image: b\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n";
        let value: Value = from_str(text).unwrap();
        assert_eq!(value["services"]["b"]["image"], "b");
        assert!(from_str::<Value>("").is_ok(), "an empty document is null");
    }

    #[test]
    fn aliases_of_a_large_string_are_refused_before_anything_is_built() {
        // Issue 16's shape: a 1 MB string and 1,000 aliases of it (1 GB expanded).
        let big = "x".repeat(1_000_000);
        let text = format!("a: &a \"{big}\"\nb:\n{}", "  - *a\n".repeat(1000));
        let started = std::time::Instant::now();
        let err = refusal(&text);
        assert!(matches!(err, YamlError::Expansion { factor: 8, .. }), "{err}");
        assert!(err.to_string().contains("alias bomb"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn nested_aliases_are_refused() {
        // Billion laughs: each level repeats the one before ten times.
        let mut text = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for n in 1..9 {
            let prev = format!("*l{}", n - 1);
            let _ = writeln!(text, "l{n}: &l{n} [{}]", [prev.as_str(); 10].join(", "));
        }
        assert!(matches!(refusal(&text), YamlError::Expansion { .. }));
    }

    #[test]
    fn a_few_aliases_within_the_limit_are_fine() {
        let text = format!("a: &a \"{}\"\nb: [*a, *a, *a]\n", "x".repeat(100_000));
        let value: Value = from_str(&text).unwrap();
        assert_eq!(value["b"][2].as_str().unwrap().len(), 100_000);
        assert_eq!(expansion_limit(10), MIN_EXPANSION);
        assert_eq!(expansion_limit(1 << 20), 8 << 20);
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_libyaml_reads_it() {
        let started = std::time::Instant::now();
        let err = refusal(&format!("x: {}", "[".repeat(100_000)));
        assert!(matches!(err, YamlError::FlowIndicators { limit: 10_000 }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
        // Within the count, the depth is measured exactly.
        let err = refusal(&format!("x: {}{}", "[".repeat(65), "]".repeat(65)));
        assert!(matches!(err, YamlError::Depth { limit: 64 }), "{err}");
        let ok = format!("x: {}{}", "[".repeat(63), "]".repeat(63));
        assert!(from_str::<Value>(&ok).is_ok());
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let err = refusal(&format!("{}x", "- ".repeat(100_000)));
        assert!(matches!(err, YamlError::Depth { limit: 64 }), "{err}");
        let mut text = String::new();
        for level in 0..70 {
            let _ = writeln!(text, "{}k{level}:", " ".repeat(level));
        }
        assert!(matches!(refusal(&text), YamlError::Depth { .. }));
    }

    #[test]
    fn tagged_nodes_are_measured_too() {
        let text = format!("a: &a !big \"{}\"\nb: [{}]\n", "x".repeat(300_000), ["*a"; 30].join(", "));
        assert!(matches!(refusal(&text), YamlError::Expansion { .. }));
        assert!(from_str::<Value>("a: !t [1, 2]").is_ok());
    }

    #[test]
    fn oversized_documents_and_syntax_errors_say_so() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Typed {
            #[allow(dead_code, reason = "only its presence is checked")]
            a: u32,
        }
        let err = refusal(&"#".repeat(MAX_INPUT + 1));
        assert!(matches!(err, YamlError::Input { .. }), "{err}");
        let err = refusal("a: [");
        assert!(err.to_string().starts_with("not valid YAML: "), "{err}");
        assert_eq!(err.line(), Some(2));
        assert!(matches!(from_str::<Typed>("b: 1").unwrap_err(), YamlError::Syntax(_)));
    }
}
