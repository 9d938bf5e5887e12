use std::path::PathBuf;

use crate::{Exit, Failure};

/// The flags every lkg job takes. Flatten it into a job's clap parser:
/// `#[command(flatten)] common: Common`.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Print one JSON document on stdout instead of the human report.
    #[arg(long, global = true)]
    pub json: bool,

    // Doc comments on clap fields are the `--help` text, where backticks would show.
    #[allow(clippy::doc_markdown)]
    /// Directory for lkg's state: records, journals, snapshots, alerts.
    /// Defaults to $LKG_STATE_DIR, else $XDG_STATE_HOME/lkg, else ~/.local/state/lkg.
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Common {
    /// The state directory to use: `--state-dir`, else [`default_state_dir`].
    pub fn state_dir(&self) -> Result<PathBuf, Failure> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => default_state_dir(|name| std::env::var_os(name)).ok_or_else(|| {
                Failure::new(Exit::Usage, "cannot choose a state directory: HOME is not set")
                    .with_hint("pass --state-dir DIR or set LKG_STATE_DIR")
            }),
        }
    }
}

/// `$LKG_STATE_DIR`, else `$XDG_STATE_HOME/lkg`, else `$HOME/.local/state/lkg`
/// (the XDG base directory spec's default for state). Relative values are
/// ignored, as the spec requires.
pub fn default_state_dir(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(dir) = absolute("LKG_STATE_DIR") {
        return Some(dir);
    }
    if let Some(dir) = absolute("XDG_STATE_HOME") {
        return Some(dir.join("lkg"));
    }
    absolute("HOME").map(|home| home.join(".local/state/lkg"))
}

#[cfg(test)]
mod tests {
    use super::default_state_dir;
    use std::ffi::OsString;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn state_dir_precedence() {
        let all = [("LKG_STATE_DIR", "/srv/lkg"), ("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/u")];
        assert_eq!(default_state_dir(env(&all)), Some(PathBuf::from("/srv/lkg")));
        assert_eq!(default_state_dir(env(&all[1..])), Some(PathBuf::from("/x/state/lkg")));
        assert_eq!(default_state_dir(env(&all[2..])), Some(PathBuf::from("/home/u/.local/state/lkg")));
        assert_eq!(default_state_dir(env(&[])), None);
    }

    #[test]
    fn relative_xdg_values_are_ignored() {
        let vars = [("XDG_STATE_HOME", "relative/state"), ("HOME", "/home/u")];
        assert_eq!(default_state_dir(env(&vars)), Some(PathBuf::from("/home/u/.local/state/lkg")));
    }
}
