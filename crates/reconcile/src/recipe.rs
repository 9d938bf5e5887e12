//! Recipe repositories: version V's files are read from the repository's
//! tag V (abra's model: a recipe's files change between versions, services
//! come and go), never from anyone's work tree.
//!
//! `<state-dir>/apps/<app>/recipe.git` caches a remote repository (cloned
//! bare, fetched with the `git` CLI, never prompting for credentials);
//! `<state-dir>/apps/<app>/recipes/<V>/` holds tag V's files, extracted with
//! `git archive` and reused while the tag names the same commit. What is
//! deployed from there is kept again, with checksums, as every deploy is
//! (`kept.rs`), so a rollback needs neither the tag nor the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lkg_core::AppName;

use crate::error::ReconcileError;
use crate::files::state_io;
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
    let stamp = dir.join(".lkg-commit");
    if fs_err::read_to_string(&stamp).is_ok_and(|c| c.trim() == commit) {
        return Ok(dir);
    }
    fs_err::create_dir_all(&recipes).map_err(|e| state_io("create", &recipes, e))?;
    let staging = recipes.join(format!(".{version}.{}.tmp", std::process::id()));
    let archive = recipes.join(format!(".{version}.{}.tar", std::process::id()));
    if staging.exists() {
        fs_err::remove_dir_all(&staging).map_err(|e| state_io("remove", &staging, e))?;
    }
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
    lkg_core::state_file::write(&staging.join(".lkg-commit"), format!("{commit}\n").as_bytes())?;
    if dir.exists() {
        fs_err::remove_dir_all(&dir).map_err(|e| state_io("remove", &dir, e))?;
    }
    fs_err::rename(&staging, &dir).map_err(|e| state_io("rename into place", &staging, e))?;
    Ok(dir)
}

/// A URL git fetches (`https://`, `ssh://`, `git@host:path`), not a local path.
pub(crate) fn is_remote(location: &str) -> bool {
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
