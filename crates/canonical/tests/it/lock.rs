//! Two processes contending for one app's lock.

use std::time::{Duration, Instant};

use lkg_canonical::{AppName, Canonicals, Liveness, LockError, Owner};

use crate::child::Part;

fn setup() -> (tempfile::TempDir, Canonicals, AppName) {
    let state = tempfile::tempdir().unwrap();
    let canonicals = Canonicals::new(state.path());
    (state, canonicals, AppName::new("gitea").unwrap())
}

#[test]
fn a_second_process_is_refused_with_the_owners_details() {
    let (state, canonicals, app) = setup();
    let holder = Part::start("hold-lock", state.path(), app.as_str());
    let owner: Owner = serde_json::from_str(&holder.expect("LOCKED")).unwrap();
    assert_eq!(owner.pid, holder.child.id());

    let err = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap_err();
    let LockError::Held { holder: held_by, .. } = &err else { panic!("{err:?}") };
    assert_eq!(held_by.owner.as_ref(), Some(&owner));
    assert_eq!(held_by.liveness, Liveness::Alive);
    let text = err.to_string();
    assert!(text.contains(&format!("pid {} on host {}", owner.pid, owner.host)), "{text}");
    assert!(text.contains("(test child hold-lock)") && text.contains("it is running"), "{text}");
    assert!(text.contains("--wait SECS"), "{text}");
    // Without taking it, the holder can be inspected.
    assert_eq!(canonicals.lock_holder(&app).unwrap().unwrap().owner, Some(owner));
    holder.finish();
    assert!(canonicals.lock_holder(&app).unwrap().is_none());
}

#[test]
fn a_waiting_process_gets_the_lock_when_the_holder_releases_it() {
    let (state, canonicals, app) = setup();
    let holder = Part::start("hold-lock", state.path(), app.as_str());
    let owner: Owner = serde_json::from_str(&holder.expect("LOCKED")).unwrap();

    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        holder.finish();
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    let lock = canonicals.lock(&app, "promote", Duration::from_secs(20), |h| seen.push(h.clone())).unwrap();
    let waited = start.elapsed();
    releaser.join().unwrap();
    assert!(waited >= Duration::from_millis(400), "took the lock after {waited:?}, while it was held");
    assert_eq!(seen.len(), 1, "told once that it waits");
    assert_eq!(seen[0].owner.as_ref(), Some(&owner));
    // A clean release is not a takeover.
    assert_eq!(lock.took_over_from(), None);
    assert_eq!(lock.owner().pid, std::process::id());
}

#[test]
fn waiting_is_bounded() {
    let (state, canonicals, app) = setup();
    let holder = Part::start("hold-lock", state.path(), app.as_str());
    holder.expect("LOCKED");
    let start = Instant::now();
    let err = canonicals.lock(&app, "promote", Duration::from_millis(600), |_| {}).unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(err, LockError::Held { waited, .. } if waited >= Duration::from_millis(600)), "{err:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    holder.finish();
}

#[test]
fn a_dead_owners_lock_is_taken_over_and_reported() {
    let (state, canonicals, app) = setup();
    let holder = Part::start("hold-lock", state.path(), app.as_str());
    let owner: Owner = serde_json::from_str(&holder.expect("LOCKED")).unwrap();
    holder.kill();

    // The kernel dropped the dead process's lock; its details are still in the file.
    let lock = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap();
    assert_eq!(lock.took_over_from(), Some(&owner));
    lock.release().unwrap();
    let again = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap();
    assert_eq!(again.took_over_from(), None, "a released lock is not a takeover");
}

/// Kills a process by pid when dropped, even if an assertion fails first.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-9", &self.0.to_string()]).status();
    }
}

/// A run killed while a command it started still works: the command keeps
/// the app locked, and the refusal says the owner is gone but its child holds on.
#[test]
fn a_command_started_under_the_lock_keeps_it_after_its_owner_dies() {
    let (state, canonicals, app) = setup();
    let owner_part = Part::start("share", state.path(), app.as_str());
    let command_pid: u32 = owner_part.expect("SHARED").parse().unwrap();
    let owner: Owner = serde_json::from_str(&owner_part.expect("OWNER")).unwrap();
    let command = Reap(command_pid);
    owner_part.kill();

    let err = canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).unwrap_err();
    let LockError::Held { holder, .. } = &err else { panic!("{err:?}") };
    assert_eq!(holder.owner.as_ref(), Some(&owner));
    assert_eq!(holder.liveness, Liveness::Exited);
    assert!(err.to_string().contains("a process it started inherited the lock file"), "{err}");

    drop(command);
    let lock = lkg_testkit::wait_until(
        "the command's end to free the lock",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || canonicals.lock(&app, "promote", Duration::ZERO, |_| {}).ok(),
    );
    assert_eq!(lock.took_over_from(), Some(&owner));
}

#[test]
fn a_started_process_joins_its_parents_lock_and_only_that() {
    let (_state, canonicals, app) = setup();
    let lock = canonicals.lock(&app, "lkg-canonical lock -- ./run.sh", Duration::ZERO, |_| {}).unwrap();
    let joined = canonicals.join_lock(&app, lock.id()).unwrap();
    assert!(joined.is_joined());
    assert_eq!(joined.owner(), lock.owner());
    canonicals.put(&joined, &crate::child::record("gitea", "1.0.0+1", &["v"])).unwrap();
    drop(joined);
    // Dropping the joined lock released nothing.
    assert!(canonicals.lock(&app, "other", Duration::ZERO, |_| {}).is_err());

    let err = canonicals.join_lock(&app, "0000000000000000").unwrap_err();
    assert!(matches!(&err, LockError::NotJoinable { holder: Some(_), .. }), "{err:?}");
    lock.release().unwrap();
    let err = canonicals.join_lock(&app, "0000000000000000").unwrap_err();
    assert!(err.to_string().contains("nothing holds it; was the enclosing run stopped?"), "{err}");
}
