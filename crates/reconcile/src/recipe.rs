//! Recipe repositories: version V's files are read from the repository's
//! tag V (abra's model: a recipe's files change between versions, services
//! come and go), never from anyone's work tree.
//!
//! `<state-dir>/apps/<app>/recipe.git` caches a remote repository (cloned
//! bare, fetched with the `git` CLI, never prompting for credentials);
//! `<state-dir>/apps/<app>/recipes/<V>/` holds tag V's files, extracted with
//! `git archive`, checksummed (`.lkg-files.json`), made read-only, and reused
//! while the tag names the same commit and every checksum matches (else
//! extracted again: the tag, not the copy, is the source). What is
//! deployed from there is kept again, with checksums, as every deploy is
//! (`kept.rs`), so a rollback needs neither the tag nor the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_core::AppName;

use serde::{Deserialize, Serialize};

use crate::error::ReconcileError;
use crate::files::{read_json, state_io, write_json};
use crate::kept::{KeptFile, remove_sealed, seal};
use crate::spec::{AppSpec, RecipeSource};

/// How long one git command may take (a fetch over a slow network included).
const GIT_TIMEOUT: Duration = Duration::from_secs(180);

/// `spec` with its compose files and release notes read from the recipe's
/// tag `version`; a spec without a recipe is returned as it is.
pub(crate) async fn resolve(state_dir: &Path, spec: &AppSpec, version: &str) -> Result<AppSpec, ReconcileError> {
    let Some(recipe) = &spec.recipe else { return Ok(spec.clone()) };
    let dir = materialize(state_dir, &spec.app, recipe, version).await?;
    let mut resolved = spec.clone();
    resolved.compose = recipe.compose.iter().map(|name| dir.join(name)).collect();
    for file in &resolved.compose {
        if !file.is_file() {
            return Err(ReconcileError::Invalid(format!(
                "the recipe's tag {version} has no {}: name the compose files with --compose-file",
                file.strip_prefix(&dir).unwrap_or(file).display()
            )));
        }
    }
    lkg_swarm::ComposeFiles::load(&resolved.compose)?;
    resolved.release_notes = dir.join("releaseNotes");
    Ok(resolved)
}

/// Extracts the recipe's tag `version` into `<state>/apps/<app>/recipes/<version>/`.
async fn materialize(
    state_dir: &Path,
    app: &AppName,
    recipe: &RecipeSource,
    version: &str,
) -> Result<PathBuf, ReconcileError> {
    let app_dir = state_dir.join("apps").join(app.as_str());
    let repo = if is_remote(&recipe.location) {
        let cache = app_dir.join("recipe.git");
        if cache.join("HEAD").is_file() {
            git(&cache, &["fetch", "--quiet", "--force", "--tags", "--prune", "origin"]).await?;
        } else {
            if cache.exists() {
                fs_err::remove_dir_all(&cache).map_err(|e| state_io("remove", &cache, e))?;
            }
            fs_err::create_dir_all(&app_dir).map_err(|e| state_io("create", &app_dir, e))?;
            let target = cache.to_string_lossy().into_owned();
            git(&app_dir, &["clone", "--quiet", "--bare", "--", &recipe.location, &target]).await?;
        }
        cache
    } else {
        PathBuf::from(&recipe.location)
    };
    let commit =
        match git(&repo, &["rev-parse", "--verify", "--quiet", &format!("refs/tags/{version}^{{commit}}")]).await {
            Ok(commit) => commit.trim().to_owned(),
            Err(_) => {
                return Err(ReconcileError::Invalid(format!(
                    "the recipe {} has no tag {version}: a version's files are read from its tag",
                    lkg_core::redact::url(&recipe.location)
                )));
            }
        };
    let recipes = app_dir.join("recipes");
    let dir = recipes.join(version);
    if let Ok(Some(extracted)) = read_json::<Extracted>(&dir.join(EXTRACTED))
        && extracted.commit == commit
        && checksums(&dir).is_ok_and(|files| files == extracted.files)
    {
        seal(&dir)?;
        return Ok(dir);
    }
    fs_err::create_dir_all(&recipes).map_err(|e| state_io("create", &recipes, e))?;
    let staging = recipes.join(format!(".{version}.{}.tmp", std::process::id()));
    let archive = recipes.join(format!(".{version}.{}.tar", std::process::id()));
    remove_sealed(&staging)?;
    fs_err::create_dir_all(&staging).map_err(|e| state_io("create", &staging, e))?;
    let archive_text = archive.to_string_lossy().into_owned();
    git(&repo, &["archive", "--format=tar", "-o", &archive_text, &commit]).await?;
    let extracted = tokio::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&staging)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| state_io("run tar to extract", &archive, e))?;
    let _ = fs_err::remove_file(&archive);
    if !extracted.status.success() {
        return Err(ReconcileError::Recipe(format!(
            "tar could not extract tag {version}: {}",
            String::from_utf8_lossy(&extracted.stderr).trim()
        )));
    }
    let files = checksums(&staging)?;
    write_json(&staging.join(EXTRACTED), &Extracted { commit, files })?;
    remove_sealed(&dir)?;
    fs_err::rename(&staging, &dir).map_err(|e| state_io("rename into place", &staging, e))?;
    seal(&dir)?;
    Ok(dir)
}

/// What `recipes/<V>/` holds: the commit tag V named, and every file's sha256.
#[derive(Debug, Serialize, Deserialize)]
struct Extracted {
    commit: String,
    files: Vec<KeptFile>,
}

const EXTRACTED: &str = ".lkg-files.json";

/// Every regular file and symlink below `dir` (but [`EXTRACTED`]), by
/// relative path, with the sha256 of its content (of `symlink:<target>`
/// for a link, which is never followed).
fn checksums(dir: &Path) -> Result<Vec<KeptFile>, ReconcileError> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<KeptFile>) -> Result<(), ReconcileError> {
        let mut entries: Vec<PathBuf> = fs_err::read_dir(dir)
            .map_err(|e| state_io("list", dir, e))?
            .map(|entry| entry.map(|e| e.path()).map_err(|e| state_io("list", dir, e)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            let meta = fs_err::symlink_metadata(&path).map_err(|e| state_io("inspect", &path, e))?;
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            let bytes = if meta.is_dir() {
                walk(root, &path, files)?;
                continue;
            } else if meta.is_symlink() {
                let target = fs_err::read_link(&path).map_err(|e| state_io("read", &path, e))?;
                format!("symlink:{}", target.display()).into_bytes()
            } else if relative == Path::new(EXTRACTED) {
                continue;
            } else {
                fs_err::read(&path).map_err(|e| state_io("read", &path, e))?
            };
            files.push(KeptFile { path: relative, sha256: crate::kept::sha256(&bytes) });
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    Ok(files)
}

/// A URL git fetches (`https://`, `ssh://`, `git@host:path`), not a local path.
pub fn is_remote(location: &str) -> bool {
    location.contains("://") || (location.contains('@') && location.contains(':') && !location.starts_with('/'))
}

/// Runs `git -C dir args`, never prompting, bounded in time; its stdout.
async fn git(dir: &Path, args: &[&str]) -> Result<String, ReconcileError> {
    let mut command = tokio::process::Command::new("git");
    command
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = lkg_core::redact::text(&format!("git {}", args.join(" ")));
    let output = match tokio::time::timeout(GIT_TIMEOUT, command.output()).await {
        Err(_) => return Err(ReconcileError::Recipe(format!("{shown} took more than {}s", GIT_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(ReconcileError::Recipe(format!("cannot run {shown}: {e} (is git installed?)"))),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let said = lkg_core::redact::text(String::from_utf8_lossy(&output.stderr).trim());
        Err(ReconcileError::Recipe(format!("{shown} failed ({}): {said}", output.status)))
    }
}

/// A tag of a recipe repository: a version, and when it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeTag {
    /// The tag's name (`1.2.0`, `10.7.1+26.6.2`).
    pub name: String,
    /// When it was made, in Unix seconds: the tagger's date of an annotated
    /// tag, the commit's date of a lightweight one.
    pub created: i64,
}

/// The tags of the recipe at `location` for `app`: a local repository is
/// read in place; a URL is fetched into the same cache under `state_dir`
/// that `update` deploys from (`apps/<app>/recipe.git`), with the same
/// timeout and without prompting for credentials.
pub async fn recipe_tags(state_dir: &Path, app: &AppName, location: &str) -> Result<Vec<RecipeTag>, ReconcileError> {
    let repo = if is_remote(location) {
        let app_dir = state_dir.join("apps").join(app.as_str());
        let cache = app_dir.join("recipe.git");
        if cache.join("HEAD").is_file() {
            git(&cache, &["fetch", "--quiet", "--force", "--tags", "--prune", "origin"]).await?;
        } else {
            fs_err::create_dir_all(&app_dir).map_err(|e| state_io("create", &app_dir, e))?;
            let target = cache.to_string_lossy().into_owned();
            git(&app_dir, &["clone", "--quiet", "--bare", "--", location, &target]).await?;
        }
        cache
    } else {
        PathBuf::from(location)
    };
    let listed =
        git(&repo, &["for-each-ref", "--format=%(refname:strip=2)%09%(creatordate:unix)", "refs/tags"]).await?;
    Ok(listed
        .lines()
        .filter_map(|line| {
            let (name, created) = line.split_once('\t')?;
            Some(RecipeTag { name: name.to_owned(), created: created.trim().parse().unwrap_or(0) })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::AppConfig;

    fn git_in(repo: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@lkg.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@lkg.invalid")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    fn spec(location: &str) -> AppSpec {
        let mut config =
            AppConfig { app: Some("shop".into()), recipe: Some(location.to_owned()), ..AppConfig::default() };
        config.health.http.push(crate::HttpCheck::new("http://127.0.0.1:9/health"));
        config.into_spec().unwrap()
    }

    #[tokio::test]
    async fn a_remote_recipe_is_cloned_once_then_fetched_for_new_tags() {
        let source = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        git_in(source.path(), &["init", "--quiet"]);
        std::fs::write(source.path().join("compose.yml"), "services:\n  app: {image: app:1}\n").unwrap();
        git_in(source.path(), &["add", "-A"]);
        git_in(source.path(), &["commit", "--quiet", "-m", "1"]);
        git_in(source.path(), &["tag", "1.0.0"]);
        let spec = spec(&format!("file://{}", source.path().display()));

        let resolved = resolve(state.path(), &spec, "1.0.0").await.unwrap();
        let dir = state.path().join("apps/shop/recipes/1.0.0");
        assert_eq!(resolved.compose, [dir.join("compose.yml")]);
        assert_eq!(resolved.release_notes, dir.join("releaseNotes"));
        assert!(state.path().join("apps/shop/recipe.git/HEAD").is_file(), "a bare clone caches it");

        // A tag pushed later is fetched; the earlier version's files stay.
        std::fs::write(source.path().join("compose.yml"), "services:\n  app: {image: app:2}\n").unwrap();
        git_in(source.path(), &["commit", "--quiet", "-am", "2"]);
        git_in(source.path(), &["tag", "1.1.0"]);
        let newer = resolve(state.path(), &spec, "1.1.0").await.unwrap();
        assert!(std::fs::read_to_string(&newer.compose[0]).unwrap().contains("app:2"));
        assert!(std::fs::read_to_string(&resolved.compose[0]).unwrap().contains("app:1"));

        let err = resolve(state.path(), &spec, "2.0.0").await.unwrap_err();
        assert!(matches!(err, ReconcileError::Invalid(_)) && err.to_string().contains("has no tag 2.0.0"), "{err}");
    }

    #[tokio::test]
    async fn a_materialized_version_is_read_only_checksummed_and_extracted_again_if_changed() {
        use std::os::unix::fs::PermissionsExt as _;
        let source = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        git_in(source.path(), &["init", "--quiet"]);
        std::fs::create_dir_all(source.path().join("conf")).unwrap();
        std::fs::write(source.path().join("compose.yml"), "services:\n  app: {image: app:1}\n").unwrap();
        std::fs::write(source.path().join("conf/app.conf"), "mode = 1\n").unwrap();
        git_in(source.path(), &["add", "-A"]);
        git_in(source.path(), &["commit", "--quiet", "-m", "1"]);
        git_in(source.path(), &["tag", "1.0.0"]);
        let spec = spec(&source.path().display().to_string());
        let resolved = resolve(state.path(), &spec, "1.0.0").await.unwrap();
        let dir = state.path().join("apps/shop/recipes/1.0.0");

        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!((mode(&dir), mode(&dir.join("conf"))), (0o555, 0o555));
        assert_eq!((mode(&dir.join("compose.yml")), mode(&dir.join("conf/app.conf"))), (0o444, 0o444));
        let extracted: Extracted = read_json(&dir.join(EXTRACTED)).unwrap().unwrap();
        let listed: Vec<String> = extracted.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(listed, ["compose.yml", "conf/app.conf"]);
        assert_eq!(extracted.files[0].sha256, crate::kept::sha256(b"services:\n  app: {image: app:1}\n"));

        // Changed by hand (after a chmod, or by root): the tag's files come back.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&resolved.compose[0], std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&resolved.compose[0], "services:\n  app: {image: evil}\n").unwrap();
        let again = resolve(state.path(), &spec, "1.0.0").await.unwrap();
        assert_eq!(std::fs::read_to_string(&again.compose[0]).unwrap(), "services:\n  app: {image: app:1}\n");
        assert_eq!((mode(&dir), mode(&again.compose[0])), (0o555, 0o444), "sealed again");
        // Unchanged: reused as it is.
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&again.compose[0]);
        resolve(state.path(), &spec, "1.0.0").await.unwrap();
        assert_eq!(inode(&again.compose[0]), before, "an intact copy is not extracted again");
    }

    #[tokio::test]
    async fn a_recipe_url_with_credentials_is_never_shown_with_them() {
        let state = tempfile::tempdir().unwrap();
        // Nothing listens on port 9: the clone fails at once.
        let spec = spec("http://ci-bot:TOPSECRET@127.0.0.1:9/recipes/shop.git");
        let err = resolve(state.path(), &spec, "1.0.0").await.unwrap_err();
        let text = lkg_core::render_chain(&err);
        assert!(matches!(err, ReconcileError::Recipe(_)), "{err:?}");
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(text.contains("http://***@127.0.0.1:9/recipes/shop.git"), "{text}");
    }

    #[test]
    fn remote_locations_are_told_from_paths() {
        for remote in ["https://git.coopcloud.tech/coop-cloud/gitea.git", "ssh://git@host/r.git", "git@host:r.git"] {
            assert!(is_remote(remote), "{remote}");
        }
        for local in ["/srv/recipes/gitea", "recipes/gitea", "./gitea"] {
            assert!(!is_remote(local), "{local}");
        }
    }
}
