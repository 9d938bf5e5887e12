//! Orphans: services of a stack that its compose files no longer declare.
//!
//! `docker stack deploy` only creates and updates services; one the new
//! compose dropped keeps running the old version (a base's `sidekiq` kept
//! running its old image after an upgrade that removed it, so the upgraded
//! stack was not the one the new version declares). `docker stack deploy
//! --prune` exists but prunes by the CLI's own view and cannot be told to
//! do nothing when the compose is unreadable; lkg plans the removal from the
//! parsed compose files and removes nothing if they cannot be read.

use std::collections::BTreeSet;

use serde::Serialize;

/// Which services to remove and which to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// Services to remove (full names, `<stack>_<service>`).
    pub remove: Vec<String>,
    /// Services the compose files declare (full names).
    pub keep: Vec<String>,
}

impl PrunePlan {
    /// Plans the prune of `stack`, whose services are `existing` (full
    /// names, as the engine lists them by the stack label), against the
    /// `declared` service names of its compose files.
    ///
    /// A labelled service whose name lacks the `<stack>_` prefix was not
    /// created by `docker stack deploy` for this stack: it is kept.
    pub fn new<'a>(stack: &str, declared: &BTreeSet<String>, existing: impl IntoIterator<Item = &'a str>) -> PrunePlan {
        let prefix = format!("{stack}_");
        let mut plan = PrunePlan { remove: Vec::new(), keep: Vec::new() };
        for name in existing {
            match name.strip_prefix(&prefix) {
                Some(short) if !declared.contains(short) => plan.remove.push(name.to_owned()),
                _ => plan.keep.push(name.to_owned()),
            }
        }
        plan.remove.sort();
        plan.keep.sort();
        plan
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
#[non_exhaustive]
pub enum PruneOutcome {
    /// Orphans were removed (possibly none).
    Pruned {
        /// Removed services.
        removed: Vec<String>,
        /// Services kept because the compose declares them.
        kept: Vec<String>,
    },
    /// Nothing was removed, and why.
    Skipped {
        /// The reason.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_services_the_compose_dropped() {
        let declared: BTreeSet<String> = ["app".to_owned(), "db".to_owned()].into();
        let plan =
            PrunePlan::new("disc", &declared, ["disc_app", "disc_sidekiq", "disc_db", "disc_app_extra", "other"]);
        assert_eq!(plan.remove, ["disc_app_extra", "disc_sidekiq"]);
        assert_eq!(plan.keep, ["disc_app", "disc_db", "other"]);
    }
}
