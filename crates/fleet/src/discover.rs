//! Where new versions come from: the tags of an app's recipe repository
//! (with the `git` CLI, through lkg-reconcile's recipe cache) or of an image
//! repository (through lkg-registry: paging, auth and timeouts as every lkg
//! registry call).

use std::path::Path;

use jiff::Timestamp;
use lkg_reconcile::OrderedVersion;
use lkg_registry::{Client, Reference};

use crate::error::FleetError;
use crate::file::{FleetApp, Source};
use crate::plan::Candidate;

/// At most this many of the newest tags of an image repository are asked
/// for their `created` time per round (a cooldown needs it; a repository
/// with a long history must not cost a request per tag).
const MAX_CREATED_LOOKUPS: usize = 5;

/// The versions `app`'s source offers, newest first; tags that are not
/// versions (`latest`, `sha-abc`) are left out. `current` (what runs)
/// bounds which image tags are asked for their publication time. A
/// floating source offers one version: its tag's digest now.
pub async fn discover(
    state_dir: &Path,
    app: &FleetApp,
    current: Option<&str>,
    registry: &Client,
) -> Result<Vec<Candidate>, FleetError> {
    let mut candidates = match &app.source {
        Source::Recipe { location } => lkg_reconcile::recipe_tags(state_dir, &app.name, location)
            .await?
            .into_iter()
            .filter(|tag| lkg_reconcile::check_version(&tag.name).is_ok())
            .map(|tag| Candidate { version: tag.name, published: Timestamp::from_second(tag.created).ok() })
            .collect(),
        Source::Registry { repository, floating: Some(tag) } => {
            return floating(app, repository, tag, current, registry).await.map(|c| vec![c]);
        }
        Source::Registry { repository, floating: None } => {
            let repo: Reference = repository.parse()?;
            let tags = registry.list_tags_paged(&repo, 1000).await?;
            tags.iter()
                .filter_map(|tag| version_of_tag(tag).map(|version| (tag, version)))
                .map(|(_, version)| Candidate { version, published: None })
                .collect::<Vec<_>>()
        }
    };
    sort_newest_first(&mut candidates);
    if let Source::Registry { repository, .. } = &app.source
        && !app.policy.cooldown.is_zero()
    {
        let repo: Reference = repository.parse()?;
        let current = current.and_then(OrderedVersion::parse);
        let newer = candidates.iter_mut().filter(|c| {
            let v = OrderedVersion::parse(&c.version);
            match (&current, v) {
                (Some(cur), Some(v)) => cur.compare(&v) == Some(std::cmp::Ordering::Less),
                _ => true,
            }
        });
        for candidate in newer.take(MAX_CREATED_LOOKUPS) {
            let tag = lkg_reconcile::version_tag(&candidate.version);
            let image = Reference::new(repo.registry(), repo.repository(), Some(&tag), None);
            let config = registry.image_config(&image, None).await?;
            candidate.published = config.created.as_deref().and_then(|c| c.parse::<Timestamp>().ok());
        }
    }
    Ok(candidates)
}

/// What floating `tag` of `repository` points to now, as a version pinned
/// by digest. Its `created` is read only when a cooldown needs it and the
/// digest is not the one running (an unchanged round costs one `HEAD`).
async fn floating(
    app: &FleetApp,
    repository: &str,
    tag: &str,
    current: Option<&str>,
    registry: &Client,
) -> Result<Candidate, FleetError> {
    let repo: Reference = repository.parse()?;
    let tagged = Reference::new(repo.registry(), repo.repository(), Some(tag), None);
    let digest = registry.resolve(&tagged).await?;
    let version = format!("{tag}@{digest}");
    // A registry could answer another algorithm (sha512): not a version lkg deploys.
    lkg_reconcile::check_version(&version)?;
    let mut candidate = Candidate { version, published: None };
    if !app.policy.cooldown.is_zero() && current != Some(candidate.version.as_str()) {
        let config = registry.image_config(&tagged.at_digest(&digest), None).await?;
        candidate.published = config.created.as_deref().and_then(|c| c.parse::<Timestamp>().ok());
    }
    Ok(candidate)
}

/// The version an image tag stands for: the tag itself (`1.2.3`), or the
/// `<recipe>+<app>` version whose tag form it is (`1.2.3_4.5.6`, as
/// `${LKG_VERSION_TAG}` writes it). `None` for tags that are not versions.
pub fn version_of_tag(tag: &str) -> Option<String> {
    if OrderedVersion::parse(tag).is_some() {
        return Some(tag.to_owned());
    }
    let joined = tag.replacen('_', "+", 1);
    (joined != tag && OrderedVersion::parse(&joined).is_some() && lkg_reconcile::version_tag(&joined) == tag)
        .then_some(joined)
}

/// Sorts versions newest first: `<recipe>+<app>` versions, then plain ones,
/// then tags that are not versions (a total order, as `sort_by` needs).
pub fn sort_newest_first(candidates: &mut Vec<Candidate>) {
    // Each version parsed once, not once per comparison.
    let mut keyed: Vec<(u8, Option<OrderedVersion>, Candidate)> = candidates
        .drain(..)
        .map(|c| {
            let parsed = OrderedVersion::parse(&c.version);
            let rank = match &parsed {
                Some(_) if c.version.contains('+') => 0,
                Some(_) => 1,
                None => 2,
            };
            (rank, parsed, c)
        })
        .collect();
    keyed.sort_by(|(ra, va, a), (rb, vb, b)| {
        ra.cmp(rb).then_with(|| match (va, vb) {
            (Some(va), Some(vb)) => vb.compare(va).unwrap_or(std::cmp::Ordering::Equal),
            _ => a.version.cmp(&b.version),
        })
    });
    candidates.extend(keyed.into_iter().map(|(_, _, c)| c));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_read_as_versions() {
        assert_eq!(version_of_tag("1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(version_of_tag("v1.2.3").as_deref(), Some("v1.2.3"));
        assert_eq!(version_of_tag("1.2.3_4.5.6").as_deref(), Some("1.2.3+4.5.6"));
        assert_eq!(version_of_tag("10.7.1_26.6.2-rootless").as_deref(), Some("10.7.1+26.6.2-rootless"));
        for not in ["latest", "sha-0a1b2c", "stable", "1.2.3_"] {
            assert_eq!(version_of_tag(not), None, "{not}");
        }
    }
}
