use std::fs::File;
use std::path::Path;

use crate::Env;

/// How a fixture app image behaves once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves `/health` with 200.
    Healthy,
    /// Serves, but `/health` answers 503 (`LKG_APP_HEALTH=fail`): a bad release.
    Unhealthy,
    /// Exits with status 3 at start (`LKG_APP_CRASH=1`): an image that cannot start.
    Crash,
}

impl Behaviour {
    fn suffix(self) -> &'static str {
        match self {
            Behaviour::Healthy => "",
            Behaviour::Unhealthy => "-unhealthy",
            Behaviour::Crash => "-crash",
        }
    }

    fn env(self) -> Option<&'static str> {
        match self {
            Behaviour::Healthy => None,
            Behaviour::Unhealthy => Some("LKG_APP_HEALTH=fail"),
            Behaviour::Crash => Some("LKG_APP_CRASH=1"),
        }
    }
}

/// A fixture app image: the static app from `fixtures/app`, reporting
/// `version`, with a [`Behaviour`].
///
/// ```no_run
/// use lkg_testkit::{App, Behaviour};
/// let v2 = App::new("2.0.0").import(lkg_testkit::env());            // lkg-fixture/app:2.0.0
/// let v3 = App::new("3.0.0").behaviour(Behaviour::Unhealthy).import(lkg_testkit::env()); // ...:3.0.0-unhealthy
/// ```
///
/// The tag is the version with characters that Docker tags do not allow
/// (`+`) replaced by `_`, plus a suffix naming a non-healthy behaviour, so one
/// tag always means one behaviour, whichever test imported it first.
#[derive(Debug, Clone)]
pub struct App {
    repo: String,
    version: String,
    behaviour: Behaviour,
}

impl App {
    /// A healthy app image in `lkg-fixture/app` reporting `version`.
    pub fn new(version: &str) -> App {
        App { repo: "lkg-fixture/app".to_owned(), version: version.to_owned(), behaviour: Behaviour::Healthy }
    }

    /// Sets the behaviour.
    #[must_use]
    pub fn behaviour(mut self, behaviour: Behaviour) -> App {
        self.behaviour = behaviour;
        self
    }

    /// Uses another repository name (e.g. a test's own namespace).
    #[must_use]
    pub fn repo(mut self, repo: &str) -> App {
        repo.clone_into(&mut self.repo);
        self
    }

    /// The image reference this app is imported as.
    pub fn reference(&self) -> String {
        let tag: String = self
            .version
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
            .collect();
        format!("{}:{tag}{}", self.repo, self.behaviour.suffix())
    }

    /// Imports the image into the private engine unless an up-to-date one
    /// exists (same fixture build, same behaviour), and returns its reference.
    pub fn import(&self, env: &Env) -> String {
        self.import_into(&env.app_rootfs, &env.dir.join("images"), |args| env.docker(args), |args| env.try_docker(args))
    }

    /// Imports the image from `rootfs` into the engine that `docker` and
    /// `try_docker` run against (see [`App::import`]), locking `lock_dir`'s
    /// `import.lock` against parallel imports of the same tag.
    pub fn import_into(
        &self,
        rootfs: &Path,
        lock_dir: &Path,
        docker: impl Fn(&[&str]) -> String,
        try_docker: impl Fn(&[&str]) -> std::process::Output,
    ) -> String {
        let reference = self.reference();
        let fixture_sum = docker(&[
            "image",
            "inspect",
            "lkg-fixture/app:latest",
            "--format",
            "{{index .Config.Labels \"org.lkg.fixture.sha256\"}}",
        ]);
        let current = || {
            let out = try_docker(&[
                "image",
                "inspect",
                &reference,
                "--format",
                "{{index .Config.Labels \"org.lkg.fixture.sha256\"}}",
            ]);
            String::from_utf8_lossy(&out.stdout).trim() == fixture_sum
        };
        if current() {
            return reference;
        }
        // Parallel tests import the same tags; one import per tag is enough.
        std::fs::create_dir_all(lock_dir).expect("create the image lock directory");
        let lock = File::create(lock_dir.join("import.lock")).expect("create the image import lock");
        lock.lock().expect("lock the image import lock");
        if !current() {
            let sum_label = format!("LABEL org.lkg.fixture.sha256={fixture_sum}");
            let version_env = format!("ENV LKG_APP_VERSION={}", self.version);
            let behaviour_env = self.behaviour.env().map(|e| format!("ENV {e}"));
            let rootfs = rootfs.to_string_lossy().into_owned();
            let mut args = vec![
                "import",
                "--change",
                &sum_label,
                "--change",
                "ENTRYPOINT [\"/app\"]",
                "--change",
                "CMD [\"serve\"]",
                "--change",
                "EXPOSE 8080",
                "--change",
                "VOLUME [\"/data\"]",
                "--change",
                &version_env,
            ];
            if let Some(e) = &behaviour_env {
                args.extend(["--change", e]);
            }
            args.extend([rootfs.as_str(), reference.as_str()]);
            docker(&args);
        }
        reference
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_valid_tags_and_name_the_behaviour() {
        assert_eq!(App::new("2.0.0").reference(), "lkg-fixture/app:2.0.0");
        assert_eq!(
            App::new("1.2.0+3.4.5").behaviour(Behaviour::Unhealthy).reference(),
            "lkg-fixture/app:1.2.0_3.4.5-unhealthy"
        );
        assert_eq!(App::new("9").behaviour(Behaviour::Crash).repo("lkg-demo/app").reference(), "lkg-demo/app:9-crash");
    }
}
