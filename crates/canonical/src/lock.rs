//! One run per app at a time: an advisory lock on `<state-dir>/apps/<app>/lock`.
//!
//! The lock is an `flock(2)` on a file that is never deleted (deleting it
//! would let a waiter lock the unlinked inode while a newcomer locks a new
//! file). The kernel drops an `flock` when its holder dies, however it dies,
//! so a crashed run cannot leave the app locked; what a crash leaves is the
//! holder's details in the file, which the next holder reports as a takeover.
//! The holder writes its details (pid, host, start time, purpose) into the
//! file so that a refused run can say who holds the lock and whether that
//! process is still alive.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use lkg_core::AppName;

/// How often a waiting run retries the lock.
const POLL: Duration = Duration::from_millis(100);

/// Who holds (or last held) an app's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Owner {
    /// A random id for this holding, to tell two holdings by one pid apart.
    pub id: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// When it took the lock.
    #[serde(with = "crate::record::ts_serde")]
    pub started: Timestamp,
    /// What it is doing, e.g. `lkg-canonical promote`.
    pub purpose: String,
    /// The kernel boot id of the holder's host: a pid from before a reboot is dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's start time in clock ticks since boot (`/proc/<pid>/stat`
    /// field 22): a reused pid has another start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
}

/// Whether a lock's owner is still running, as far as this host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Liveness {
    /// Same host, and the process with that pid and start time runs.
    Alive,
    /// Same host, and that process is gone (or the host rebooted since).
    Exited,
    /// Another host: lkg cannot see its processes.
    OtherHost,
    /// The holder has not written its details yet (it is starting), or they
    /// are unreadable.
    Unknown,
}

/// The current holder of a lock, as seen by a run that could not take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The details the holder wrote, if any.
    pub owner: Option<Owner>,
    /// Whether it still runs.
    pub liveness: Liveness,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(owner) = &self.owner else {
            return f.write_str("a process that has not written its details yet");
        };
        write!(f, "pid {} on host {} ({}), since {:.0}", owner.pid, owner.host, owner.purpose, owner.started)?;
        match self.liveness {
            Liveness::Alive => f.write_str("; it is running"),
            Liveness::Exited => f.write_str(
                "; that process has exited, yet the lock is still held: a process it started inherited the lock \
                 file; find it with `fuser -v` on the lock file",
            ),
            Liveness::OtherHost => f.write_str("; it runs on another host, so lkg cannot tell whether it is alive"),
            Liveness::Unknown => Ok(()),
        }
    }
}

/// Why an app's lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another run holds the lock.
    #[error(
        "app {app} is locked by another run: held by {holder} (lock file {path}, waited {secs:.1} s); \
         wait for it with --wait SECS, or stop that run",
        secs = .waited.as_secs_f64()
    )]
    Held {
        /// The app.
        app: AppName,
        /// The lock file.
        path: PathBuf,
        /// Who holds it.
        holder: Box<Holder>,
        /// How long this run waited.
        waited: Duration,
    },
    /// An enclosing run's lock was to be joined, but it does not hold it.
    #[error(
        "app {app} should be locked by an enclosing `lkg-canonical lock` (lock id {id}), but {}; \
         was the enclosing run stopped?",
        match holder { Some(h) => format!("it is held by {h}"), None => "nothing holds it".to_owned() }
    )]
    NotJoinable {
        /// The app.
        app: AppName,
        /// The lock id the caller was given.
        id: String,
        /// Who holds the lock instead, if anyone.
        holder: Option<Box<Holder>>,
    },
    /// The lock file could not be created, read or written.
    #[error("cannot use the lock file {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A held app lock. Dropping it releases the lock; [`AppLock::release`] does
/// the same and reports errors.
#[derive(Debug)]
pub struct AppLock {
    app: AppName,
    path: PathBuf,
    file: Option<File>,
    owner: Owner,
    took_over: Option<Owner>,
}

impl AppLock {
    /// Takes the lock at `path` for `app`, waiting up to `wait` (zero: do not
    /// wait). `on_wait` is called once, with the holder, when the lock is
    /// busy and the run starts waiting.
    pub(crate) fn acquire(
        path: PathBuf,
        app: &AppName,
        purpose: &str,
        wait: Duration,
        mut on_wait: impl FnMut(&Holder),
    ) -> Result<AppLock, LockError> {
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        let holder = Box::new(read_holder(&path));
                        return Err(LockError::Held { app: app.clone(), path, holder, waited });
                    }
                    if !told {
                        on_wait(&read_holder(&path));
                        told = true;
                    }
                    std::thread::sleep(POLL.min(wait.saturating_sub(waited)));
                }
                Err(TryLockError::Error(source)) => return Err(io(source)),
            }
        }
        // Details left in the file belong to a holder that ended without
        // releasing (killed, crashed): the kernel dropped its lock, we took it over.
        let mut previous = String::new();
        file.read_to_string(&mut previous).map_err(io)?;
        let took_over = serde_json::from_str::<Owner>(&previous).ok();
        let owner = this_process(purpose);
        let text = serde_json::to_string_pretty(&owner).expect("an owner serialises");
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(AppLock { app: app.clone(), path, file: Some(file), owner, took_over })
    }

    /// The app this lock serialises.
    pub fn app(&self) -> &AppName {
        &self.app
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This holding's details, as written to the lock file.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The previous holder, when it ended without releasing the lock (it was
    /// killed or crashed): its run may have left work half done.
    pub fn took_over_from(&self) -> Option<&Owner> {
        self.took_over.as_ref()
    }

    /// This holding's id (also in [`AppLock::owner`]), which a process this
    /// run starts can [`join`](crate::Canonicals::join_lock) with.
    pub fn id(&self) -> &str {
        &self.owner.id
    }

    /// Whether this is a joined lock (held by an enclosing process, not by
    /// this value): dropping it releases nothing.
    pub fn is_joined(&self) -> bool {
        self.file.is_none()
    }

    /// The value of [`LOCKS_VAR`] for the processes this holding shares its
    /// lock with ([`share_with_children`](AppLock::share_with_children)):
    /// `outer` (this process's own value, if any) plus `app=id`.
    pub fn locks_for_children(&self, outer: Option<&str>) -> String {
        let mine = format!("{}={}", self.app, self.owner.id);
        match outer {
            Some(outer) if !outer.is_empty() => format!("{outer},{mine}"),
            _ => mine,
        }
    }

    /// Lets the processes this run spawns from now on hold the lock too: the
    /// lock file stays open in them (its close-on-exec flag is cleared), and
    /// an `flock` lasts while any process holds its file open. So if this
    /// process is killed while a child still works, the app stays locked
    /// until the child is done too. The lock must not be released while the
    /// children run: unlocking releases it for all of them.
    pub fn share_with_children(&self) -> Result<(), LockError> {
        let Some(file) = &self.file else { return Ok(()) };
        rustix::io::fcntl_setfd(file, rustix::io::FdFlags::empty())
            .map_err(|e| LockError::Io { path: self.path.clone(), source: e.into() })
    }

    /// Joins the lock an enclosing process holds with holding id `id`, for
    /// a process that it started (`lkg-canonical lock APP -- CMD` tells CMD
    /// the id). The result changes records like a held lock, but releases
    /// nothing when dropped.
    #[allow(clippy::disallowed_methods, reason = "the lock needs a std File; its errors carry the path as a field")]
    pub(crate) fn join(path: PathBuf, app: &AppName, id: &str) -> Result<AppLock, LockError> {
        let not_joinable = |holder: Option<Holder>| LockError::NotJoinable {
            app: app.clone(),
            id: id.to_owned(),
            holder: holder.map(Box::new),
        };
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_joinable(None)),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        match file.try_lock_shared() {
            // Nobody holds it: the enclosing run is gone.
            Ok(()) => return Err(not_joinable(None)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        let holder = read_holder(&path);
        match holder.owner.clone() {
            Some(owner) if owner.id == id => Ok(AppLock { app: app.clone(), path, file: None, owner, took_over: None }),
            _ => Err(not_joinable(Some(holder))),
        }
    }

    /// Releases the lock: clears the holder's details, then unlocks.
    pub fn release(mut self) -> Result<(), LockError> {
        self.clear()
    }

    fn clear(&mut self) -> Result<(), LockError> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let io = |source| LockError::Io { path: self.path.clone(), source };
        // Cleared before unlocking, so that the next holder sees a clean
        // release rather than a takeover.
        file.set_len(0).map_err(io)?;
        file.sync_data().map_err(io)?;
        file.unlock().map_err(io)
    }
}

impl Drop for AppLock {
    fn drop(&mut self) {
        // Best effort: closing the file releases the flock in any case.
        let _ = self.clear();
    }
}

/// The environment variable through which a lock holder tells the
/// processes it starts which locks they may join: `app=id,app=id`, each id a
/// holding ([`AppLock::id`]) that the starting process keeps while they run.
/// `lkg-canonical lock APP -- CMD` sets it; [`Canonicals::lock_or_join`](crate::Canonicals::lock_or_join)
/// reads it.
pub const LOCKS_VAR: &str = "LKG_CANONICAL_LOCKS";

/// The holding id that `locks` (a [`LOCKS_VAR`] value) names for `app`.
pub fn inherited_lock(locks: Option<&str>, app: &AppName) -> Option<String> {
    locks?
        .split(',')
        .find_map(|entry| entry.split_once('=').filter(|(a, _)| *a == app.as_str()).map(|(_, id)| id.to_owned()))
}

/// Who holds the lock at `path`, without taking it.
pub(crate) fn read_holder(path: &Path) -> Holder {
    let owner = fs_err::read_to_string(path).ok().and_then(|text| serde_json::from_str::<Owner>(&text).ok());
    let liveness = owner.as_ref().map_or(Liveness::Unknown, |o| judge(o, &HostFacts::here(), process_start));
    Holder { owner, liveness }
}

/// What this host knows about itself, to judge an owner's liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostFacts {
    pub(crate) host: String,
    pub(crate) boot_id: Option<String>,
}

impl HostFacts {
    fn here() -> HostFacts {
        HostFacts { host: hostname(), boot_id: boot_id() }
    }
}

/// Whether `owner` still runs, given this host's facts and a way to read a
/// pid's start time (`None`: no such process).
pub(crate) fn judge(owner: &Owner, here: &HostFacts, start_of: impl Fn(u32) -> Option<u64>) -> Liveness {
    if owner.host != here.host {
        return Liveness::OtherHost;
    }
    if owner.boot_id.is_some() && here.boot_id.is_some() && owner.boot_id != here.boot_id {
        return Liveness::Exited;
    }
    match (start_of(owner.pid), owner.process_start) {
        (None, _) => Liveness::Exited,
        (Some(now), Some(then)) if now != then => Liveness::Exited,
        (Some(_), _) => Liveness::Alive,
    }
}

fn this_process(purpose: &str) -> Owner {
    let pid = std::process::id();
    Owner {
        id: random_id(),
        pid,
        host: hostname(),
        // Whole seconds, as written to the lock file, so the holder's copy equals what others read.
        started: Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid timestamp"),
        purpose: purpose.to_owned(),
        boot_id: boot_id(),
        process_start: process_start(pid),
    }
}

fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process; the clock separates holdings.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i128(Timestamp::now().as_nanosecond());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// The host name, from the kernel (Linux); `unknown` elsewhere.
fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn boot_id() -> Option<String> {
    fs_err::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// Field 22 of `/proc/<pid>/stat`, the process start time. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted
/// after its closing parenthesis.
fn process_start(pid: u32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: field 22 is the 20th.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// A held lock, one that cannot be joined or a lock file that cannot be
/// used: the environment's state, not bad input.
impl lkg_core::Classify for LockError {
    fn kind(&self) -> lkg_core::FailureKind {
        lkg_core::FailureKind::Environment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(host: &str, pid: u32, boot: &str, start: u64) -> Owner {
        Owner {
            id: "0".repeat(16),
            pid,
            host: host.to_owned(),
            started: "2026-06-17T23:20:00Z".parse().unwrap(),
            purpose: "lkg-canonical promote".to_owned(),
            boot_id: Some(boot.to_owned()),
            process_start: Some(start),
        }
    }

    #[test]
    fn the_inherited_lock_is_the_one_named_for_the_app() {
        let gitea = AppName::new("gitea").unwrap();
        assert_eq!(inherited_lock(None, &gitea), None);
        assert_eq!(inherited_lock(Some(""), &gitea), None);
        assert_eq!(inherited_lock(Some("discourse=a1"), &gitea), None);
        assert_eq!(inherited_lock(Some("discourse=a1,gitea=b2"), &gitea).as_deref(), Some("b2"));
        // A prefix of another app's name is not the app.
        assert_eq!(inherited_lock(Some("gitea-lts=c3"), &gitea), None);
    }

    #[test]
    fn children_inherit_the_outer_locks_and_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let gitea = AppName::new("gitea").unwrap();
        let lock = AppLock::acquire(dir.path().join("lock"), &gitea, "test", Duration::ZERO, |_| {}).unwrap();
        let id = lock.id().to_owned();
        assert_eq!(lock.locks_for_children(None), format!("gitea={id}"));
        assert_eq!(lock.locks_for_children(Some("")), format!("gitea={id}"));
        let nested = lock.locks_for_children(Some("discourse=a1"));
        assert_eq!(nested, format!("discourse=a1,gitea={id}"));
        assert_eq!(inherited_lock(Some(&nested), &gitea), Some(id));
    }

    #[test]
    fn liveness_on_this_host_checks_pid_and_start_time() {
        let here = HostFacts { host: "cc-ci".to_owned(), boot_id: Some("boot-1".to_owned()) };
        let running = |pid: u32| (pid == 42).then_some(1000);
        assert_eq!(judge(&owner("cc-ci", 42, "boot-1", 1000), &here, running), Liveness::Alive);
        assert_eq!(judge(&owner("cc-ci", 43, "boot-1", 1000), &here, running), Liveness::Exited);
        // Pid 42 was reused by a later process.
        assert_eq!(judge(&owner("cc-ci", 42, "boot-1", 999), &here, running), Liveness::Exited);
        // The host rebooted since: whatever runs as 42 now is someone else.
        assert_eq!(judge(&owner("cc-ci", 42, "boot-0", 1000), &here, running), Liveness::Exited);
        assert_eq!(judge(&owner("other", 42, "boot-1", 1000), &here, running), Liveness::OtherHost);
    }

    #[test]
    fn this_process_is_alive() {
        let me = this_process("test");
        assert_eq!(judge(&me, &HostFacts::here(), process_start), Liveness::Alive);
        assert!(me.process_start.is_some());
    }

    #[test]
    fn the_holder_message_says_what_lkg_can_and_cannot_tell() {
        let o = owner("builder-2", 4242, "b", 1);
        let other = Holder { owner: Some(o.clone()), liveness: Liveness::OtherHost };
        assert_eq!(
            other.to_string(),
            "pid 4242 on host builder-2 (lkg-canonical promote), since 2026-06-17T23:20:00Z; it runs on another \
             host, so lkg cannot tell whether it is alive"
        );
        let alive = Holder { owner: Some(o), liveness: Liveness::Alive };
        assert!(alive.to_string().ends_with("; it is running"), "{alive}");
    }
}
