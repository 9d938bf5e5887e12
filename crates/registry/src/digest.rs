use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

use crate::RegistryError;

/// A content digest, `sha256:<64 hex>` (or `sha512:<128 hex>`), as the OCI
/// distribution spec names every manifest and blob.
///
/// Parsing validates the algorithm and the hex; [`Digest::verify`] and
/// [`DigestWriter`] check content against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// The hash functions a [`Digest`] can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Digest {
    /// A digest from text another parser has validated with the same rules
    /// (`lkg_inputs_lock::Digest`).
    pub(crate) fn from_validated(text: &str) -> Digest {
        debug_assert!(text.parse::<Digest>().is_ok(), "{text} is not a valid digest");
        Digest(text.to_owned())
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex(&Sha256::digest(bytes))))
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        if self.0.starts_with("sha512:") { Algorithm::Sha512 } else { Algorithm::Sha256 }
    }

    /// The hex part, after `sha256:`.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }

    /// The whole digest, `sha256:...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest of `bytes` under this digest's algorithm.
    #[must_use]
    pub fn of_same_kind(&self, bytes: &[u8]) -> Digest {
        let mut w = DigestWriter::new(self.algorithm());
        w.update(bytes);
        w.finish()
    }

    /// Checks that `bytes` hash to this digest; `what` names the content in the error.
    pub fn verify(&self, bytes: &[u8], what: &str) -> Result<(), RegistryError> {
        let actual = self.of_same_kind(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(RegistryError::DigestMismatch { what: what.to_owned(), expected: self.clone(), actual })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Digest, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidDigest { input: s.to_owned(), reason: reason.to_owned() };
        let (alg, hex) = s.split_once(':').ok_or_else(|| bad("expected <algorithm>:<hex>"))?;
        let len = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(bad("only sha256 and sha512 are supported")),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad(&format!("expected {len} lowercase hex digits")));
        }
        Ok(Digest(s.to_owned()))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing of streamed content (a blob copied chunk by chunk).
#[derive(Debug, Clone)]
pub enum DigestWriter {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl DigestWriter {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> DigestWriter {
        match algorithm {
            Algorithm::Sha256 => DigestWriter::Sha256(Sha256::new()),
            Algorithm::Sha512 => DigestWriter::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestWriter::Sha256(h) => h.update(bytes),
            DigestWriter::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self {
            DigestWriter::Sha256(h) => Digest(format!("sha256:{}", hex(&h.finalize()))),
            DigestWriter::Sha512(h) => Digest(format!("sha512:{}", hex(&h.finalize()))),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        let d = Digest::sha256(b"hello");
        assert_eq!(d.as_str(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        d.verify(b"hello", "x").unwrap();
        let err = d.verify(b"hellO", "blob").unwrap_err().to_string();
        assert!(err.contains("blob") && err.contains("sha256:2cf24d"), "{err}");
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<Digest>().is_err());
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut w = DigestWriter::new(Algorithm::Sha256);
        w.update(b"hel");
        w.update(b"lo");
        assert_eq!(w.finish(), Digest::sha256(b"hello"));
    }
}
