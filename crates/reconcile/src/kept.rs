//! The files a version was deployed from, kept under the state dir, so that
//! a rollback deploys exactly them: never the target's files, and never
//! files re-read from a place that may have changed since (a recipe checked
//! out at another tag, a compose file edited for the next version).
//!
//! `<state-dir>/apps/<app>/deployed/<version>-<digest>/`, written once and
//! never changed (the digest covers every kept byte, so a version deployed
//! again from other files gets another directory), and read-only once in
//! place: write bits cleared ([`seal`]: files `0400`, directories `0555`;
//! the files stay their owner's alone, as every reconcile state file, since
//! a kept `secrets:` or `env_file` may hold credentials):
//!
//! ```text
//! files.json           what is kept: compose files in -c order, every file with its sha256
//! compose-<n>.yml      compose file n, every relative path in it made absolute
//! refs/<n>/<path>      a file compose file n refers to (configs, secrets, env_file)
//! ```
//!
//! A compose file's relative paths are resolved against its own directory by
//! `docker stack deploy`; the kept copy lives elsewhere, so they are made
//! absolute: files whose content is part of the deploy (`configs`, `secrets`,
//! `env_file`) point into `refs/`, bind-mount sources (data, not recipe)
//! point to where they were.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use lkg_core::{AppName, hex};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;
use sha2::{Digest as _, Sha256};

use crate::error::ReconcileError;
use crate::files::{read_json, state_io, write_json};

/// The files one version of an app was deployed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedFiles {
    /// The version.
    pub version: String,
    /// Where the copies are.
    pub dir: PathBuf,
    /// The compose files as given, in `-c` order (for people: the copies are what is deployed).
    pub sources: Vec<PathBuf>,
    /// The kept compose files, relative to `dir`, in `-c` order.
    pub compose: Vec<PathBuf>,
    /// Every kept file, relative to `dir`, with its sha256.
    pub files: Vec<KeptFile>,
}

/// One kept file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    /// Relative to [`DeployedFiles::dir`].
    pub path: PathBuf,
    /// Hex sha256 of its content.
    pub sha256: String,
}

const MANIFEST: &str = "files.json";

/// Copies the compose files `compose` (and the files they refer to) for
/// `version` of `app`; returns what was kept. Keeping the same content twice
/// reuses the first copy.
pub(crate) fn keep(
    state_dir: &Path,
    app: &AppName,
    version: &str,
    compose: &[PathBuf],
) -> Result<DeployedFiles, ReconcileError> {
    // Everything in memory first: the digest names the directory.
    let mut contents: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut kept_compose = Vec::new();
    let root = state_dir.join("apps").join(app.as_str()).join("deployed");
    for (n, source) in compose.iter().enumerate() {
        let text = lkg_core::input::read_to_string(source, lkg_core::input::MAX_DOCUMENT)
            .map_err(|e| state_io("read", source, e))?;
        let base = source.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = std::path::absolute(&base).map_err(|e| state_io("resolve", &base, e))?;
        let mut yaml: Value = lkg_swarm::yaml::from_str(&text)
            .map_err(|e| ReconcileError::Invalid(format!("compose file {}: {e}", source.display())))?;
        let mut refs = Vec::new();
        absolutize(&mut yaml, &base, &mut refs);
        let mut placed = Vec::new();
        for reference in refs {
            let Some(relative) = inside(&reference.relative) else {
                // `../x` or an absolute path: outside what the recipe ships; left pointing there.
                continue;
            };
            let original = base.join(&relative);
            let bytes = fs_err::read(&original).map_err(|e| state_io("read", &original, e))?;
            let kept = PathBuf::from("refs").join(n.to_string()).join(&relative);
            placed.push((reference.pointer.clone(), kept.clone()));
            if !contents.iter().any(|(p, _)| *p == kept) {
                contents.push((kept, bytes));
            }
        }
        let name = PathBuf::from(format!("compose-{n}.yml"));
        // Placeholders until the directory is known: `refs/...` paths are
        // made absolute below, once the digest names the directory.
        for (pointer, kept) in &placed {
            set(&mut yaml, pointer, Value::String(format!("{{LKG_KEPT}}/{}", kept.display())));
        }
        let text = serde_yaml_ng::to_string(&yaml)
            .map_err(|e| ReconcileError::Invalid(format!("cannot write compose file {}: {e}", source.display())))?;
        contents.push((name.clone(), text.into_bytes()));
        kept_compose.push(name);
    }
    let mut hasher = Sha256::new();
    for (path, bytes) in &contents {
        hasher.update(path.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(bytes);
        hasher.update([0]);
    }
    let digest = hex(&hasher.finalize());
    let dir = root.join(format!("{version}-{}", &digest[..12]));
    let placeholder = "{LKG_KEPT}";
    let dir_text = dir.to_string_lossy().into_owned();
    let contents: Vec<(PathBuf, Vec<u8>)> = contents
        .into_iter()
        .map(|(path, bytes)| {
            if kept_compose.contains(&path) {
                let text = String::from_utf8_lossy(&bytes).replace(placeholder, &dir_text);
                (path, text.into_bytes())
            } else {
                (path, bytes)
            }
        })
        .collect();
    let files: Vec<KeptFile> =
        contents.iter().map(|(path, bytes)| KeptFile { path: path.clone(), sha256: sha256(bytes) }).collect();
    let kept = DeployedFiles {
        version: version.to_owned(),
        dir: dir.clone(),
        sources: compose.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect(),
        compose: kept_compose,
        files,
    };
    if let Some(existing) = read_json::<DeployedFiles>(&dir.join(MANIFEST))?
        && existing.files == kept.files
        && existing.verified().is_ok()
    {
        seal(&existing.dir)?;
        return Ok(existing);
    }
    // Written beside the final place, then renamed: a crash leaves a temp
    // directory (removed by the next keep), never a half-kept version.
    let staging = root.join(format!(".{version}-{}.{}.tmp", &digest[..12], std::process::id()));
    remove_sealed(&staging)?;
    for (path, bytes) in &contents {
        let target = staging.join(path);
        lkg_core::state_file::create_dir(&target)?;
        lkg_core::state_file::write_with(&target, bytes, lkg_core::state_file::Mode::Private)?;
    }
    write_json(&staging.join(MANIFEST), &kept)?;
    // A copy whose checksums no longer match (damaged, or edited by hand) is
    // replaced by this one, which has the same content by its digest.
    remove_sealed(&dir)?;
    fs_err::rename(&staging, &dir).map_err(|e| state_io("rename into place", &staging, e))?;
    seal(&dir)?;
    lkg_core::state_file::sync_dir(&root)?;
    Ok(kept)
}

/// Makes the tree at `dir` read-only: clears every write bit of its
/// directories and regular files (symlinks are left alone: chmod would
/// follow them). Checksums, not modes, are what lkg trusts; the modes keep
/// an editor, a `sed -i` or a stray `git checkout` from changing what a
/// rollback will deploy. Root ignores them, which is why lkg also verifies.
pub(crate) fn seal(dir: &Path) -> Result<(), ReconcileError> {
    chmod_tree(dir, |mode| mode & !0o222)
}

/// Removes the tree at `dir`, sealed or not (absent is fine): its
/// directories get their owner's write bit back first, as `rm -rf` needs.
pub(crate) fn remove_sealed(dir: &Path) -> Result<(), ReconcileError> {
    if fs_err::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    chmod_tree(dir, |mode| mode | 0o200)?;
    fs_err::remove_dir_all(dir).map_err(|e| state_io("remove", dir, e))
}

/// Applies `change` to the mode of every directory and regular file below
/// and including `path`; a directory's entries before the directory itself,
/// so that sealing never locks the walk out.
fn chmod_tree(path: &Path, change: fn(u32) -> u32) -> Result<(), ReconcileError> {
    let meta = fs_err::symlink_metadata(path).map_err(|e| state_io("inspect", path, e))?;
    if meta.is_dir() {
        // A directory being unsealed must be writable before its entries
        // can be removed, and readable to list them: owner bits first.
        let own = meta.permissions().mode() | 0o500;
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(own & 0o7777))
            .map_err(|e| state_io("set the permissions of", path, e))?;
        for entry in fs_err::read_dir(path).map_err(|e| state_io("list", path, e))? {
            let entry = entry.map_err(|e| state_io("list", path, e))?;
            chmod_tree(&entry.path(), change)?;
        }
    } else if !meta.is_file() {
        return Ok(());
    }
    let mode = change(meta.permissions().mode() & 0o7777);
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| state_io("set the permissions of", path, e))
}

impl DeployedFiles {
    /// Checks every kept file against its checksum; the compose files to
    /// deploy, in order.
    pub(crate) fn verified(&self) -> Result<Vec<PathBuf>, ReconcileError> {
        for file in &self.files {
            let path = self.dir.join(&file.path);
            let bytes = fs_err::read(&path).map_err(|e| state_io("read", &path, e))?;
            let actual = sha256(&bytes);
            if actual != file.sha256 {
                return Err(ReconcileError::Invalid(format!(
                    "the kept file {} of version {} has changed (sha256 {actual}, kept as {}): lkg will not deploy \
                     files it cannot vouch for; restore it, or deploy that version by hand",
                    path.display(),
                    self.version,
                    file.sha256
                )));
            }
        }
        Ok(self.compose.iter().map(|c| self.dir.join(c)).collect())
    }
}

/// A relative path in a compose file whose file is part of the deploy.
struct Reference {
    pointer: Vec<Key>,
    relative: PathBuf,
}

#[derive(Clone)]
enum Key {
    Name(String),
    Index(usize),
}

/// Makes every relative path of a compose file absolute: bind-mount sources
/// directly, and collects the files that are part of the deploy (configs,
/// secrets, `env_file`) in `refs` for copying.
fn absolutize(yaml: &mut Value, base: &Path, refs: &mut Vec<Reference>) {
    let name = |s: &str| Key::Name(s.to_owned());
    for section in ["configs", "secrets"] {
        let Some(Value::Mapping(entries)) = yaml.get(section) else { continue };
        let keys: Vec<String> = entries.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect();
        for key in keys {
            if let Some(Value::String(file)) = yaml.get(section).and_then(|e| e.get(&key)).and_then(|e| e.get("file")) {
                refs.push(Reference {
                    pointer: vec![name(section), name(&key), name("file")],
                    relative: PathBuf::from(file),
                });
            }
        }
    }
    let Some(Value::Mapping(services)) = yaml.get_mut("services") else { return };
    for (service_name, service) in services.iter_mut() {
        let Some(service_name) = service_name.as_str().map(str::to_owned) else { continue };
        match service.get("env_file") {
            Some(Value::String(file)) => refs.push(Reference {
                pointer: vec![name("services"), name(&service_name), name("env_file")],
                relative: PathBuf::from(file),
            }),
            Some(Value::Sequence(files)) => {
                for (i, file) in files.iter().enumerate() {
                    if let Value::String(file) = file {
                        refs.push(Reference {
                            pointer: vec![name("services"), name(&service_name), name("env_file"), Key::Index(i)],
                            relative: PathBuf::from(file),
                        });
                    }
                }
            }
            _ => {}
        }
        let Some(Value::Sequence(volumes)) = service.get_mut("volumes") else { continue };
        for volume in volumes {
            match volume {
                // Short syntax: a source that starts with `.` or `~` is a path.
                Value::String(short) => {
                    if let Some((source, rest)) = short.split_once(':')
                        && source.starts_with('.')
                    {
                        *short = format!("{}:{rest}", base.join(source).display());
                    }
                }
                Value::Mapping(long) => {
                    let bind = long.get("type").and_then(Value::as_str) == Some("bind");
                    if let Some(Value::String(source)) = long.get_mut("source")
                        && bind
                        && !Path::new(source.as_str()).is_absolute()
                        && !source.starts_with('~')
                    {
                        *source = base.join(&*source).display().to_string();
                    }
                }
                _ => {}
            }
        }
    }
}

fn set(yaml: &mut Value, pointer: &[Key], value: Value) {
    let mut node = yaml;
    for key in pointer {
        let next = match key {
            Key::Name(k) => node.get_mut(k.as_str()),
            Key::Index(i) => node.get_mut(*i),
        };
        let Some(next) = next else { return };
        node = next;
    }
    *node = value;
}

/// `path` if it stays inside its base directory (no `..`, not absolute).
fn inside(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppName {
        AppName::new("shop").unwrap()
    }

    #[test]
    fn a_rollback_deploys_the_kept_copy_whatever_happens_to_the_originals() {
        let state = tempfile::tempdir().unwrap();
        let recipe = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(recipe.path().join("conf")).unwrap();
        std::fs::write(recipe.path().join("conf/nginx.conf"), "listen 80;\n").unwrap();
        std::fs::write(recipe.path().join("app.env"), "MODE=v1\n").unwrap();
        let compose = recipe.path().join("compose.yml");
        std::fs::write(
            &compose,
            "services:\n  app:\n    image: app:${LKG_VERSION}\n    env_file: ./app.env\n    volumes:\n      - ./data:/data\n      - named:/cache\n      - {type: bind, source: ./logs, target: /logs}\nconfigs:\n  nginx:\n    file: ./conf/nginx.conf\nvolumes:\n  named: {}\n",
        )
        .unwrap();
        let kept = keep(state.path(), &app(), "1.0.0", std::slice::from_ref(&compose)).unwrap();
        assert!(kept.dir.starts_with(state.path().join("apps/shop/deployed")));
        assert!(kept.dir.file_name().unwrap().to_string_lossy().starts_with("1.0.0-"));
        let paths: Vec<String> = kept.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, ["refs/0/conf/nginx.conf", "refs/0/app.env", "compose-0.yml"]);

        // The originals change for the next version; the kept copy does not.
        std::fs::write(&compose, "services:\n  broken: {image: app:2}\n").unwrap();
        std::fs::write(recipe.path().join("conf/nginx.conf"), "broken\n").unwrap();
        let files = kept.verified().unwrap();
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("image: app:${LKG_VERSION}"), "{text}");
        let dir = kept.dir.display();
        assert!(text.contains(&format!("{dir}/refs/0/app.env")), "{text}");
        assert!(text.contains(&format!("{dir}/refs/0/conf/nginx.conf")), "{text}");
        let base = recipe.path().display();
        assert!(
            text.contains(&format!("{base}/./data:/data")) || text.contains(&format!("{base}/data:/data")),
            "{text}"
        );
        assert!(text.contains("named:/cache"), "named volumes stay names: {text}");
        assert!(
            text.contains(&format!("source: {base}/./logs")) || text.contains(&format!("source: {base}/logs")),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(kept.dir.join("refs/0/conf/nginx.conf")).unwrap(), "listen 80;\n");

        // The manifest reads back; keeping the same content again reuses it.
        let read: DeployedFiles = read_json(&kept.dir.join(MANIFEST)).unwrap().unwrap();
        assert_eq!(read, kept);
    }

    #[test]
    fn a_changed_kept_file_is_refused_not_deployed() {
        let state = tempfile::tempdir().unwrap();
        let recipe = tempfile::tempdir().unwrap();
        let compose = recipe.path().join("v1.yml");
        std::fs::write(&compose, "services:\n  app: {image: app:1}\n").unwrap();
        let kept = keep(state.path(), &app(), "1.0.0", std::slice::from_ref(&compose)).unwrap();
        let again = keep(state.path(), &app(), "1.0.0", std::slice::from_ref(&compose)).unwrap();
        assert_eq!(again, kept, "the same content is kept once");
        // Read-only as kept: write bits cleared, the files still the owner's alone.
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&kept.dir), 0o555, "{}", kept.dir.display());
        for file in ["compose-0.yml", MANIFEST] {
            assert_eq!(mode(&kept.dir.join(file)), 0o400, "{file}");
        }
        // Someone forces an edit anyway (chmod, or root, which ignores modes).
        let tampered = kept.dir.join("compose-0.yml");
        std::fs::set_permissions(&kept.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&tampered, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&tampered, "services:\n  app: {image: evil}\n").unwrap();
        let err = kept.verified().unwrap_err();
        assert!(matches!(err, ReconcileError::Invalid(_)), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("has changed") && err.contains("1.0.0"), "{err}");
        assert!(err.contains(&tampered.display().to_string()) && err.contains("will not deploy"), "{err}");
        // Keeping the same files again replaces the damaged copy, sealed.
        let rekept = keep(state.path(), &app(), "1.0.0", std::slice::from_ref(&compose)).unwrap();
        assert_eq!(rekept.dir, kept.dir);
        rekept.verified().unwrap();
        assert_eq!((mode(&kept.dir), mode(&tampered)), (0o555, 0o400));
        // Other content for the same version gets its own directory.
        std::fs::write(&compose, "services:\n  app: {image: app:1b}\n").unwrap();
        let other = keep(state.path(), &app(), "1.0.0", std::slice::from_ref(&compose)).unwrap();
        assert_ne!(other.dir, kept.dir);
        other.verified().unwrap();
        // A sealed tree is removed whole, nested read-only directories included.
        remove_sealed(&kept.dir).unwrap();
        assert!(!kept.dir.exists());
        remove_sealed(&kept.dir).unwrap();
    }

    #[test]
    fn sealing_clears_write_bits_and_leaves_symlinks_alone() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(tree.join("sub/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(tree.join("a.yml"), "a\n").unwrap();
        std::fs::set_permissions(tree.join("a.yml"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "not ours\n").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
        seal(&tree).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            [mode(&tree), mode(&tree.join("sub")), mode(&tree.join("sub/run.sh")), mode(&tree.join("a.yml"))],
            [0o555, 0o555, 0o555, 0o444]
        );
        assert_eq!(mode(&outside), 0o644, "a link's target is not the tree's");
        remove_sealed(&tree).unwrap();
        assert!(!tree.exists() && outside.exists());
    }
}
