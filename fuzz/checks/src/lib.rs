//! The properties lkg's fuzz targets assert, one function per target, each
//! taking the fuzzer's bytes. `fuzz/fuzz_targets/<target>.rs` calls its
//! function under libFuzzer (nightly, `scripts/fuzz`), and `tests/replay.rs`
//! calls the same function on every file of `fuzz/corpus/<target>/` on
//! stable, in `scripts/test`: a crash the fuzzer found stays fixed once its
//! input is committed there.
//!
//! A check asserts what must hold of what a parser accepts (it prints back
//! to an equal value, it stays inside the volume, serialising and reading
//! back changes nothing), not only that it does not panic.
//!
//! ```
//! lkg_fuzz_checks::run("image_reference", b"ghcr.io/a/b:1.0");
//! assert!(lkg_fuzz_checks::TARGETS.iter().any(|(name, _)| *name == "compose_yaml"));
//! ```
//!
//! # Limitations
//!
//! - The inputs are bytes; a target that needs text skips what is not UTF-8.
//! - Parsers that are not public are reached through the nearest public API
//!   (the auth-file parser through `DockerConfig`, the tar rules through
//!   `lkg_warmsnap::archive::inspect`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(
    clippy::missing_panics_doc,
    reason = "every check panics when its property fails: that is what a fuzzer detects"
)]

use std::cmp::Ordering;
use std::path::PathBuf;
use std::str::FromStr as _;

/// A target's check: it panics when its property fails.
pub type Check = fn(&[u8]);

/// Every target: its name (the file under `fuzz/fuzz_targets/` and the
/// directory under `fuzz/corpus/`) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("recipe_version", recipe_version),
    ("ordered_version", ordered_version),
    ("image_reference", image_reference),
    ("www_authenticate", www_authenticate),
    ("manifest", manifest),
    ("auth_file", auth_file),
    ("inputs_document", inputs_document),
    ("compose_yaml", compose_yaml),
    ("state_files", state_files),
    ("release_notes", release_notes),
    ("volume_archive", volume_archive),
    ("fleet_file", fleet_file),
    ("notify_url", notify_url),
];

/// Runs target `name` on `data`.
///
/// # Panics
///
/// When `name` is not in [`TARGETS`], or its property fails.
pub fn run(name: &str, data: &[u8]) {
    let (_, check) = TARGETS.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    check(data);
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `<recipe-semver>+<app-version>` (lkg-canonical): a version that parses
/// displays as written and parses again to the same version; it is never a
/// major bump from itself; `check_version` accepts every version that parses.
pub fn recipe_version(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(version) = lkg_canonical::RecipeVersion::parse(text) else { return };
    let shown = version.to_string();
    assert_eq!(shown, version.as_str(), "Display and as_str agree");
    let again = lkg_canonical::RecipeVersion::parse(&shown).expect("a displayed version parses");
    assert_eq!(again.as_str(), version.as_str());
    assert_eq!(again.recipe(), version.recipe());
    assert_eq!(again.app(), version.app());
    assert!(lkg_canonical::major_bump(&version, &again).is_none(), "{text:?} is a major bump from itself");
}

/// Version order (lkg-reconcile `OrderedVersion`): a version that parses
/// keeps its text and compares equal to itself; comparing two versions
/// either way gives opposite answers; `version_tag` is a Docker tag.
pub fn ordered_version(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (left, right) = text.split_once('\n').unwrap_or((text, text));
    for side in [left, right] {
        let tag = lkg_reconcile::version_tag(side);
        assert!(tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')), "{tag:?}");
    }
    let (Some(a), Some(b)) = (lkg_reconcile::OrderedVersion::parse(left), lkg_reconcile::OrderedVersion::parse(right))
    else {
        return;
    };
    assert_eq!(a.as_str(), left);
    assert_eq!(a.compare(&a), Some(Ordering::Equal), "{left:?} equals itself");
    assert_eq!(a.compare(&b), b.compare(&a).map(Ordering::reverse), "{left:?} vs {right:?}");
    let again = lkg_reconcile::OrderedVersion::parse(a.as_str()).expect("parses again");
    assert_eq!(again.compare(&a), Some(Ordering::Equal));
}

/// Image references and digests (lkg-registry `Reference`, lkg-inputs-lock
/// `ImageRef` and `Digest`): each prints back to an equal value, and the
/// two reference parsers agree on the repository of what both accept.
pub fn image_reference(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let registry = lkg_registry::Reference::from_str(text).ok();
    if let Some(reference) = &registry {
        let shown = reference.to_string();
        let again = lkg_registry::Reference::from_str(&shown).unwrap_or_else(|e| panic!("{shown:?}: {e}"));
        assert_eq!(&again, reference, "{text:?} printed as {shown:?}");
        assert_eq!(reference.at_tag("t").tag(), Some("t"));
    }
    if let Ok(image) = lkg_inputs_lock::ImageRef::parse(text) {
        let shown = image.to_string();
        let again = lkg_inputs_lock::ImageRef::parse(&shown).unwrap_or_else(|e| panic!("{shown:?}: {e}"));
        assert_eq!(again, image, "{text:?} printed as {shown:?}");
        assert_eq!(image.digest(), again.digest());
    }
    if let Ok(digest) = lkg_inputs_lock::Digest::parse(text) {
        let again = lkg_inputs_lock::Digest::parse(digest.as_str()).expect("a digest parses again");
        assert_eq!(again, digest);
        assert_eq!(digest.as_str(), format!("{}:{}", digest.algorithm().as_str(), digest.hex()));
    }
}

/// `WWW-Authenticate` (lkg-registry `Challenge`): a Bearer challenge has a
/// realm; parsing is the same for any case of the scheme and surrounding blanks.
pub fn www_authenticate(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let challenge = lkg_registry::auth::Challenge::parse(text);
    let padded = format!("  {text}\t");
    assert_eq!(lkg_registry::auth::Challenge::parse(&padded), challenge, "blanks around the value change nothing");
    if let Some((scheme, rest)) = text.trim().split_once(char::is_whitespace) {
        let upper = format!("{} {rest}", scheme.to_ascii_uppercase());
        assert_eq!(lkg_registry::auth::Challenge::parse(&upper), challenge, "the scheme is case-insensitive");
    }
}

/// Manifests, indexes and configs (lkg-registry): what parses serialises
/// and parses back to the same JSON; platforms print back equal.
pub fn manifest(data: &[u8]) {
    let (kind, body) = data.split_first().map_or((0, data), |(k, rest)| (*k, rest));
    let media_type = match kind % 4 {
        0 => None,
        1 => Some("application/vnd.oci.image.manifest.v1+json"),
        2 => Some("application/vnd.oci.image.index.v1+json"),
        _ => Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    };
    if let Ok(manifest) = lkg_registry::Manifest::from_bytes(body.to_vec(), media_type)
        && let Ok(parsed) = manifest.parse()
    {
        match parsed {
            lkg_registry::ManifestKind::Image(image) => round_trips(&image),
            lkg_registry::ManifestKind::Index(index) => {
                round_trips(&index);
                for descriptor in &index.manifests {
                    if let Some(platform) = &descriptor.platform {
                        platform_prints_back(platform);
                    }
                }
            }
        }
    }
    if let Ok(config) = serde_json::from_slice::<lkg_registry::ImageConfig>(body) {
        round_trips(&config);
        let _ = config.platform();
    }
    if let Some(text) = text(body)
        && let Ok(platform) = lkg_registry::Platform::from_str(text)
    {
        platform_prints_back(&platform);
    }
}

fn platform_prints_back(platform: &lkg_registry::Platform) {
    let shown = platform.to_string();
    if let Ok(again) = lkg_registry::Platform::from_str(&shown) {
        assert_eq!(again.to_string(), shown, "{platform:?}");
    }
}

/// `value` serialises to JSON that reads back and serialises the same: a
/// fixed point after one round (times are written to the second, so the
/// first read may lose a fraction, the second nothing).
fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) {
    let first = serde_json::to_string(value).expect("serialises");
    let read: T = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first}: {e}"));
    let second = serde_json::to_string(&read).expect("serialises");
    assert_eq!(first, second, "reading back changes it");
}

/// docker/podman auth files (lkg-registry `DockerConfig`): no file makes a
/// lookup panic; the entry docker writes (`auths.<host>.auth` =
/// base64(`user:password`)) reads back as exactly that user and password.
pub fn auth_file(data: &[u8]) {
    use base64::Engine as _;
    use lkg_registry::CredentialSource as _;
    use std::io::Write as _;
    let write = |bytes: &[u8]| {
        let mut file = tempfile::NamedTempFile::new().expect("a temp file");
        file.write_all(bytes).expect("write the auth file");
        file
    };
    let file = write(data);
    let config = lkg_registry::DockerConfig::from_files(vec![file.path().to_path_buf()]);
    for registry in ["docker.io", "ghcr.io", "127.0.0.1:5000", "index.docker.io"] {
        let _ = config.credential(registry);
    }
    // The written form, with a user and password taken from the input.
    let Some(text) = text(data) else { return };
    let (user, password) = text.split_once('\n').unwrap_or((text, "secret"));
    if user.is_empty() || user.contains(':') {
        return;
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = serde_json::json!({"auths": {"registry.example:5000": {"auth": auth}}});
    let file = write(json.to_string().as_bytes());
    let config = lkg_registry::DockerConfig::from_files(vec![file.path().to_path_buf()]);
    match config.credential("registry.example:5000") {
        Ok(Some(lkg_registry::Credential::Basic { username, password: read })) => {
            assert_eq!((username.as_str(), read.as_str()), (user, password));
        }
        other => panic!("docker's own entry for {user:?} reads as {other:?}"),
    }
}

/// build-inputs manifests and lock files (lkg-inputs-lock `Document`): a
/// document that parses writes out as JSON that parses to an equal document.
pub fn inputs_document(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(document) = lkg_inputs_lock::Document::parse(text, "fuzz") else { return };
    let json = document.to_json();
    let again = lkg_inputs_lock::Document::parse(&json, "fuzz").unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(again, document, "{json}");
    let _ = document.inputs();
}

/// Compose files (lkg-swarm): what `yaml::check` accepts nests no deeper
/// than its limit (so `serde_yaml_ng`'s own recursion limit never fires);
/// an accepted compose file names valid services, and the overlay lkg
/// writes for it is itself a compose file with the same services.
pub fn compose_yaml(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match lkg_swarm::yaml::from_str::<serde_yaml_ng::Value>(text) {
        Ok(value) => assert!(depth(&value) <= lkg_swarm::yaml::MAX_DEPTH, "deeper than the limit"),
        Err(lkg_swarm::yaml::YamlError::Syntax(e)) => {
            // The message, not the input it may quote ("duplicate entry with key \"recursion limit...\"").
            assert!(!e.to_string().starts_with("recursion limit exceeded"), "the depth limit let through {e}");
        }
        Err(_) => {}
    }
    let sources = [(PathBuf::from("compose.yml"), text.to_owned())];
    let Ok(files) = lkg_swarm::ComposeFiles::parse(&sources) else { return };
    assert!(!files.services().is_empty());
    let id = lkg_swarm::DeployId::generate();
    let overlay = files.deploy_overlay(&id);
    let stamped =
        lkg_swarm::ComposeFiles::parse(&[sources[0].clone(), (PathBuf::from("overlay.yml"), overlay.clone())])
            .unwrap_or_else(|e| panic!("the overlay is refused: {e}\n{overlay}"));
    assert_eq!(stamped.services(), files.services(), "{overlay}");
    assert_eq!(stamped.version(), files.version());
}

fn depth(value: &serde_yaml_ng::Value) -> usize {
    match value {
        serde_yaml_ng::Value::Sequence(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_yaml_ng::Value::Mapping(map) => 1 + map.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        serde_yaml_ng::Value::Tagged(tagged) => depth(&tagged.value),
        _ => 0,
    }
}

/// State files (canonical records, reconcile journals, last-good, alerts
/// and last runs, the fleet state, warmsnap's `meta.json`): the first byte
/// picks the file, the rest is its JSON; what reads serialises to a fixed point.
pub fn state_files(data: &[u8]) {
    fn check<T: serde::Serialize + serde::de::DeserializeOwned>(json: &[u8]) {
        if let Ok(value) = serde_json::from_slice::<T>(json) {
            round_trips(&value);
        }
    }
    let Some((kind, json)) = data.split_first() else { return };
    match kind % 7 {
        0 => check::<lkg_canonical::Record>(json),
        1 => check::<lkg_reconcile::Journal>(json),
        2 => check::<lkg_reconcile::LastGood>(json),
        3 => check::<lkg_reconcile::Alert>(json),
        4 => check::<lkg_reconcile::Report>(json),
        5 => check::<lkg_fleet::FleetState>(json),
        _ => check::<lkg_warmsnap::Meta>(json),
    }
}

/// The release-notes gate (lkg-reconcile `Gate`): notes that begin with a
/// marker always hold; a patch update with notes passes exactly when the
/// gate finds no marker in them; a first install always passes.
pub fn release_notes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let gate = lkg_reconcile::Gate::default();
    let notes = lkg_reconcile::ReleaseNotes::given(text.as_ref());
    let matched = gate.matches(&text);
    let decision = gate.decide(Some("1.0.0+1.0.0"), "1.0.1+1.0.0", Some(&notes));
    assert_eq!(decision.passes(), matched.is_empty(), "{decision:?}");
    assert!(gate.decide(None, "1.0.1+1.0.0", Some(&notes)).passes());
    for marker in lkg_reconcile::DEFAULT_MARKERS {
        let marked = lkg_reconcile::ReleaseNotes::given(format!("{marker}\n{text}"));
        let decision = gate.decide(Some("1.0.0+1.0.0"), "1.0.1+1.0.0", Some(&marked));
        assert!(!decision.passes(), "notes beginning with {marker:?} pass: {decision:?}");
    }
}

/// Volume archives through the restore checks (lkg-warmsnap `archive::inspect`):
/// every entry of an archive they accept lies under `data/`, climbs out with
/// no `..`, and is no path below a symbolic link of the same archive.
pub fn volume_archive(data: &[u8]) {
    let progress = std::sync::atomic::AtomicU64::new(0);
    if lkg_warmsnap::archive::inspect(data, &progress).is_err() {
        return;
    }
    let mut archive = tar::Archive::new(data);
    let mut links: Vec<Vec<u8>> = Vec::new();
    for entry in archive.entries().expect("an accepted archive reads") {
        let entry = entry.expect("an accepted entry reads");
        let path = entry.path_bytes().into_owned();
        let trimmed = path.strip_suffix(b"/").unwrap_or(&path);
        assert!(trimmed == b"data" || trimmed.starts_with(b"data/"), "outside data/: {path:?}");
        let components: Vec<&[u8]> = trimmed.split(|b| *b == b'/').collect();
        assert!(components.iter().all(|c| !c.is_empty() && *c != b".." && *c != b"."), "not canonical: {path:?}");
        for link in &links {
            assert!(
                !(trimmed.starts_with(link) && trimmed.get(link.len()) == Some(&b'/')),
                "below a symlink: {path:?}"
            );
        }
        if entry.header().entry_type().is_hard_link()
            && let Some(target) = entry.link_name_bytes()
        {
            let target = target.into_owned();
            assert!(target.starts_with(b"data/"), "a hard link out of data/: {target:?}");
            assert!(!target.split(|b| *b == b'/').any(|c| c == b".."), "a hard link climbing out: {target:?}");
        }
        if entry.header().entry_type().is_symlink() {
            links.push(trimmed.to_vec());
        }
    }
    assert_eq!(progress.load(std::sync::atomic::Ordering::Relaxed), data.len() as u64, "read to its end");
}

/// Fleet files (lkg-fleet): an accepted file runs at least one app at a
/// time, names each app once, and every channel it lists parses.
pub fn fleet_file(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(fleet) = lkg_fleet::Fleet::parse(std::path::Path::new("/fuzz/fleet.yml"), text) else { return };
    assert!(fleet.max_parallel >= 1 && fleet.discovery_parallel >= 1);
    let mut names: Vec<&str> = fleet.apps.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "an app listed twice");
    for url in &fleet.notify {
        assert!(lkg_notify::Channel::parse(url).is_ok(), "{url:?}");
    }
}

/// Notification URLs (lkg-notify `Channel`): what parses is shown without
/// the password of its userinfo, and parses the same twice.
pub fn notify_url(data: &[u8]) {
    let Some(url) = text(data) else { return };
    let Ok(channel) = lkg_notify::Channel::parse(url) else { return };
    let again = lkg_notify::Channel::parse(url).expect("parses twice");
    assert_eq!(channel.redacted(), again.redacted());
    assert_eq!(channel.to_string(), channel.redacted(), "Display is the redacted form");
    let shown = channel.redacted();
    if let Some(password) = password(url)
        && password.len() >= 6
        && url.matches(password).count() == 1
    {
        assert!(!shown.contains(password), "{shown:?} shows the password of {url:?}");
    }
}

/// The password of `scheme://user:password@host/...`, as written.
fn password(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(password)
}
