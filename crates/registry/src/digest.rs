//! Checking content against a [`Digest`] (`lkg_inputs_lock`'s type), with
//! the registry's error.

use crate::{Digest, RegistryError};

/// Verification of fetched or uploaded content against the digest that
/// names it.
///
/// ```
/// use lkg_registry::{Digest, VerifyDigest};
/// let d = Digest::sha256(b"hello");
/// assert!(d.verify(b"hello", "blob").is_ok());
/// assert!(d.verify(b"hellO", "blob").is_err());
/// ```
pub trait VerifyDigest {
    /// Checks that `bytes` hash to this digest; `what` names the content in the error.
    fn verify(&self, bytes: &[u8], what: &str) -> Result<(), RegistryError>;
}

impl VerifyDigest for Digest {
    fn verify(&self, bytes: &[u8], what: &str) -> Result<(), RegistryError> {
        let actual = self.of_same_kind(bytes);
        if &actual == self {
            Ok(())
        } else {
            Err(RegistryError::DigestMismatch { what: what.to_owned(), expected: self.clone(), actual })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        let d = Digest::sha256(b"hello");
        d.verify(b"hello", "x").unwrap();
        let err = d.verify(b"hellO", "blob").unwrap_err().to_string();
        assert!(err.contains("blob") && err.contains("sha256:2cf24d"), "{err}");
        let err = RegistryError::from("sha256:ABC".parse::<Digest>().unwrap_err());
        assert!(err.is_input(), "{err}");
        assert!(err.to_string().starts_with("invalid digest \"sha256:ABC\": "), "{err}");
    }
}
