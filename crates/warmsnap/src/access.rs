//! Decisions about a stack's volumes, as pure functions over facts the engine
//! module gathers: how to reach each volume's data ([`choose_access`]) and
//! whether the stack is quiet enough to touch its volumes ([`quiet_verdict`]).

use std::collections::BTreeMap;

use bollard::models::Volume;
use serde::Serialize;

use crate::error::SnapError;

/// How volume data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Access {
    /// Direct when it is safe (plain local volume, engine on this host, lkg
    /// running as root, and the mount point checked to be the engine's),
    /// otherwise through the engine's archive endpoint.
    #[default]
    Auto,
    /// Always through the engine's archive endpoint (works anywhere).
    Archive,
    /// Always by reading the mount point; refused where that is not safe.
    Direct,
}

/// How a volume is created: name, driver, options, labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeSpec {
    pub(crate) name: String,
    pub(crate) driver: String,
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
}

impl From<&Volume> for VolumeSpec {
    fn from(volume: &Volume) -> VolumeSpec {
        VolumeSpec {
            name: volume.name.clone(),
            driver: volume.driver.clone(),
            options: volume.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            labels: volume.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// Facts about where lkg runs, relative to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Locality {
    /// The engine reports this machine's host name.
    pub(crate) same_host: bool,
    /// lkg runs as root, so it can read every file of a volume.
    pub(crate) root: bool,
}

/// Which access to use for a volume, or why direct access is impossible.
/// A direct read or write is only safe for a plain local volume: with driver
/// options (an NFS or tmpfs mount) the data is mounted at the mount point
/// only while a container uses it, so the directory would look empty.
/// Whether the mount point really is the engine's is checked later, against
/// a helper container (`Engine::is_local_mount`).
pub(crate) fn choose_access(requested: Access, volume: &VolumeSpec, locality: &Locality) -> Result<Access, SnapError> {
    if requested == Access::Archive {
        return Ok(Access::Archive);
    }
    let reason = if volume.driver != "local" {
        Some(format!("its driver is {:?}, which keeps the data elsewhere", volume.driver))
    } else if !volume.options.is_empty() {
        Some("it is a local volume with mount options, mounted only while a container uses it".to_owned())
    } else if !locality.same_host {
        Some("the engine runs on another host".to_owned())
    } else if !locality.root {
        Some("lkg does not run as root, so it may not read or write every file".to_owned())
    } else {
        None
    };
    match (reason, requested) {
        (None, _) => Ok(Access::Direct),
        (Some(_), Access::Auto) => Ok(Access::Archive),
        (Some(reason), _) => Err(SnapError::DirectUnavailable { volume: volume.name.clone(), reason }),
    }
}

/// A container that references a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeUser {
    pub(crate) volume: String,
    pub(crate) container: String,
    pub(crate) state: String,
}

impl VolumeUser {
    fn running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused" | "removing" | "stopping")
    }
}

/// What the volumes are needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Reading: only running containers matter.
    Take,
    /// Removing and recreating: any container blocks it.
    Restore,
}

/// Decides whether a stack is quiet enough: no services, and no container
/// that could write to (take) or holds (restore) one of its volumes.
pub(crate) fn quiet_verdict(
    stack: &str,
    mut services: Vec<String>,
    users: &[VolumeUser],
    purpose: Purpose,
) -> Result<(), SnapError> {
    if !services.is_empty() {
        services.sort();
        return Err(SnapError::Deployed { stack: stack.to_owned(), services });
    }
    let blocking = |u: &&VolumeUser| purpose == Purpose::Restore || u.running();
    let mut by_volume: BTreeMap<&str, Vec<&VolumeUser>> = BTreeMap::new();
    for user in users.iter().filter(blocking) {
        by_volume.entry(&user.volume).or_default().push(user);
    }
    if let Some((volume, users)) = by_volume.into_iter().next() {
        return Err(SnapError::VolumeInUse {
            volume: volume.to_owned(),
            containers: users.iter().map(|u| format!("{} ({})", u.container, u.state)).collect(),
            running: users.iter().any(|u| u.running()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(volume: &str, container: &str, state: &str) -> VolumeUser {
        VolumeUser { volume: volume.to_owned(), container: container.to_owned(), state: state.to_owned() }
    }

    #[test]
    fn a_deployed_stack_is_refused_naming_its_services() {
        let err = quiet_verdict("app", vec!["app_web".into(), "app_db".into()], &[], Purpose::Take).unwrap_err();
        insta::assert_snapshot!(err, @"stack app is deployed (services: app_db, app_web): undeploy it first (`docker stack rm app`) and wait until its containers have stopped");
    }

    #[test]
    fn take_ignores_stopped_users_restore_does_not() {
        let users = [user("app_data", "old", "exited")];
        assert!(quiet_verdict("app", vec![], &users, Purpose::Take).is_ok());
        let err = quiet_verdict("app", vec![], &users, Purpose::Restore).unwrap_err();
        insta::assert_snapshot!(err, @"volume app_data is in use by container old (exited): stop and remove it first");
        let users = [user("app_data", "app_web.1.x", "running"), user("app_data", "b", "exited")];
        let err = quiet_verdict("app", vec![], &users, Purpose::Take).unwrap_err();
        insta::assert_snapshot!(err, @"volume app_data is in use by container app_web.1.x (running): stop it first");
    }

    #[test]
    fn services_are_reported_before_volume_users() {
        let users = [user("app_data", "app_web.1.x", "running")];
        let err = quiet_verdict("app", vec!["app_web".into()], &users, Purpose::Restore).unwrap_err();
        assert!(matches!(err, SnapError::Deployed { .. }), "{err}");
    }

    #[test]
    fn a_stack_without_services_or_users_is_quiet() {
        assert!(quiet_verdict("app", vec![], &[], Purpose::Take).is_ok());
        assert!(quiet_verdict("app", vec![], &[], Purpose::Restore).is_ok());
    }

    #[test]
    fn restore_names_every_user_of_the_first_volume_and_whether_one_runs() {
        let users = [
            user("app_logs", "tail", "running"),
            user("app_data", "app_web.1.x", "running"),
            user("app_data", "old", "exited"),
        ];
        let err = quiet_verdict("app", vec![], &users, Purpose::Restore).unwrap_err();
        insta::assert_snapshot!(err, @"volume app_data is in use by containers app_web.1.x (running), old (exited): stop them first");
        let SnapError::VolumeInUse { volume, containers, running } = err else { panic!("{err}") };
        assert_eq!((volume.as_str(), containers.len(), running), ("app_data", 2, true));
    }

    #[test]
    fn only_states_that_can_write_count_as_running() {
        for state in ["running", "restarting", "paused", "removing", "stopping"] {
            assert!(user("v", "c", state).running(), "{state}");
        }
        for state in ["created", "exited", "dead", ""] {
            assert!(!user("v", "c", state).running(), "{state}");
        }
    }

    fn volume(driver: &str, options: &[(&str, &str)]) -> VolumeSpec {
        VolumeSpec {
            name: "app_data".to_owned(),
            driver: driver.to_owned(),
            options: options.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn direct_access_only_for_plain_local_volumes_on_this_host_as_root() {
        let here = Locality { same_host: true, root: true };
        let plain = volume("local", &[]);
        assert_eq!(choose_access(Access::Auto, &plain, &here).unwrap(), Access::Direct);
        assert_eq!(choose_access(Access::Archive, &plain, &here).unwrap(), Access::Archive);
        let nfs = volume("local", &[("type", "nfs"), ("o", "addr=10.0.0.1")]);
        assert_eq!(choose_access(Access::Auto, &nfs, &here).unwrap(), Access::Archive);
        let err = choose_access(Access::Direct, &nfs, &here).unwrap_err();
        assert!(err.to_string().contains("mounted only while a container uses it"), "{err}");
        assert_eq!(choose_access(Access::Auto, &volume("rexray", &[]), &here).unwrap(), Access::Archive);
        let remote = Locality { same_host: false, root: true };
        assert_eq!(choose_access(Access::Auto, &plain, &remote).unwrap(), Access::Archive);
        let user = Locality { same_host: true, root: false };
        assert!(matches!(choose_access(Access::Direct, &plain, &user), Err(SnapError::DirectUnavailable { .. })));
    }

    #[test]
    fn direct_is_granted_when_asked_and_safe() {
        let here = Locality { same_host: true, root: true };
        assert_eq!(choose_access(Access::Direct, &volume("local", &[]), &here).unwrap(), Access::Direct);
    }

    #[test]
    fn archive_is_granted_whatever_the_volume_and_host() {
        let nowhere = Locality { same_host: false, root: false };
        let nfs = volume("rexray", &[("type", "nfs")]);
        assert_eq!(choose_access(Access::Archive, &nfs, &nowhere).unwrap(), Access::Archive);
    }

    #[test]
    fn refused_direct_access_says_why() {
        let here = Locality { same_host: true, root: true };
        let refusal = |volume: &VolumeSpec, locality: &Locality| {
            let auto = choose_access(Access::Auto, volume, locality).unwrap();
            assert_eq!(auto, Access::Archive, "auto falls back to the archive endpoint");
            choose_access(Access::Direct, volume, locality).unwrap_err().to_string()
        };
        insta::assert_snapshot!(refusal(&volume("rexray", &[]), &here), @r#"cannot read volume app_data directly: its driver is "rexray", which keeps the data elsewhere; use the archive access instead"#);
        insta::assert_snapshot!(refusal(&volume("local", &[("type", "tmpfs")]), &here), @"cannot read volume app_data directly: it is a local volume with mount options, mounted only while a container uses it; use the archive access instead");
        let remote = Locality { same_host: false, root: true };
        insta::assert_snapshot!(refusal(&volume("local", &[]), &remote), @"cannot read volume app_data directly: the engine runs on another host; use the archive access instead");
        let user = Locality { same_host: true, root: false };
        insta::assert_snapshot!(refusal(&volume("local", &[]), &user), @"cannot read volume app_data directly: lkg does not run as root, so it may not read or write every file; use the archive access instead");
    }

    #[test]
    fn the_volume_is_refused_before_the_host() {
        let nowhere = Locality { same_host: false, root: false };
        let err = choose_access(Access::Direct, &volume("rexray", &[("type", "nfs")]), &nowhere).unwrap_err();
        assert!(err.to_string().contains("its driver is \"rexray\""), "{err}");
    }
}
