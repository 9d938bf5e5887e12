//! The unique id that marks every service a deploy touched.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The service label (`Spec.Labels`) that carries the deploy id.
///
/// It is a *service* label (compose `deploy.labels`), not a container label:
/// changing it changes the service spec, so swarm records a new
/// `PreviousSpec`, but it does not change the task template, so a deploy that
/// changes nothing else restarts no task.
pub const DEPLOY_ID_LABEL: &str = "lkg.deploy-id";

/// A deploy id: `deploy-` and 16 lowercase hex digits, new for every deploy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeployId(String);

/// A string that is not a deploy id.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{value:?} is not an lkg deploy id (expected `deploy-` and 16 hex digits)")]
pub struct InvalidDeployId {
    /// The rejected value.
    pub value: String,
}

impl DeployId {
    /// A fresh id. Uniqueness comes from the OS-seeded `RandomState`, the
    /// clock, the process id and a per-process counter: two deploys never
    /// share one, even from two processes in the same nanosecond.
    pub fn generate() -> DeployId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        DeployId(format!("deploy-{:016x}", hasher.finish()))
    }

    /// Parses `deploy-<16 hex>`.
    pub fn parse(value: &str) -> Result<DeployId, InvalidDeployId> {
        let valid = value.strip_prefix("deploy-").is_some_and(|hex| {
            hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid { Ok(DeployId(value.to_owned())) } else { Err(InvalidDeployId { value: value.to_owned() }) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeployId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DeployId {
    type Error = InvalidDeployId;
    fn try_from(value: String) -> Result<DeployId, InvalidDeployId> {
        DeployId::parse(&value)
    }
}

impl From<DeployId> for String {
    fn from(id: DeployId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = DeployId::generate();
        let b = DeployId::generate();
        assert_ne!(a, b);
        assert_eq!(DeployId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn rejects_what_is_not_an_id() {
        for bad in ["", "deploy-", "deploy-0123456789ABCDEF", "deploy-0123456789abcde", "x-0123456789abcdef"] {
            assert!(DeployId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
