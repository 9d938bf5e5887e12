//! Other processes for the contention and crash tests: this test binary,
//! run again with `LKG_CANONICAL_CHILD` set, plays one part and reports on
//! stdout with lines prefixed `LKG-CHILD:`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use lkg_canonical::{AppName, Canonicals, Record, Status};

const ROLE_VAR: &str = "LKG_CANONICAL_CHILD";
const PREFIX: &str = "LKG-CHILD:";
/// A child never outlives a stuck test by more than this.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// A child process playing a part; killed when dropped.
pub(crate) struct Part {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl Part {
    /// Starts this binary as a child playing `role` (`hold-lock` or `stage`)
    /// on `app` under `state`.
    pub(crate) fn start(role: &str, state: &Path, app: &str) -> Part {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["child::plays_its_part", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, format!("{role}\n{}\n{app}", state.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test child::plays_its_part ... " before it on the same line.
                if let Some(at) = line.find(PREFIX) {
                    let _ = tx.send(line[at + PREFIX.len()..].trim().to_owned());
                }
            }
        });
        Part { child, lines }
    }

    /// The next report line, waiting at most 30 s.
    pub(crate) fn expect(&self, what: &str) -> String {
        let line =
            self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|e| panic!("child never said {what}: {e}"));
        assert!(line.starts_with(what), "child said {line:?}, expected {what}");
        line[what.len()..].trim().to_owned()
    }

    /// Closes the child's stdin: a holder releases its lock and exits.
    pub(crate) fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for the child");
        assert!(status.success(), "child failed: {status}");
    }

    /// SIGKILL: no destructor, no cleanup runs in the child.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill the child");
        self.child.wait().expect("reap the child");
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{PREFIX} {line}").unwrap();
    out.flush().unwrap();
}

/// Blocks until the parent closes stdin, for at most [`CHILD_LIFETIME`].
fn wait_for_parent() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(CHILD_LIFETIME);
}

/// Run by the tests above as a child process, it plays the part named in
/// `LKG_CANONICAL_CHILD`. Run on its own, it checks what the parts rely on:
/// a lock held through one open file refuses a second open, even in the same
/// process (`flock` locks belong to the open file, not the process).
#[test]
fn plays_its_part() {
    let Ok(spec) = std::env::var(ROLE_VAR) else {
        let state = tempfile::tempdir().unwrap();
        let canonicals = Canonicals::new(state.path());
        let app = AppName::new("solo").unwrap();
        let held = canonicals.lock(&app, "first", Duration::ZERO, |_| {}).unwrap();
        let err = canonicals.lock(&app, "second", Duration::ZERO, |_| {}).unwrap_err();
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        held.release().unwrap();
        canonicals.lock(&app, "third", Duration::ZERO, |_| {}).unwrap();
        return;
    };
    let mut parts = spec.lines();
    let (role, state, app) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let canonicals = Canonicals::new(Path::new(state));
    let app = AppName::new(app).unwrap();
    let lock = canonicals.lock(&app, &format!("test child {role}"), Duration::ZERO, |_| {}).unwrap();
    match role {
        "hold-lock" => {
            say(&format!("LOCKED {}", serde_json::to_string(lock.owner()).unwrap()));
            wait_for_parent();
            lock.release().unwrap();
        }
        "share" => {
            // Like `lkg-canonical lock APP -- CMD`: the command inherits the lock.
            lock.share_with_children().unwrap();
            let mut command = std::process::Command::new("sleep").arg("60").spawn().unwrap();
            say(&format!("SHARED {}", command.id()));
            say(&format!("OWNER {}", serde_json::to_string(lock.owner()).unwrap()));
            wait_for_parent();
            let _ = command.kill();
            let _ = command.wait();
            lock.release().unwrap();
        }
        "stage" => {
            let mut record = canonicals.get(&app).unwrap().expect("the parent wrote a record first");
            record.version = "9.9.9+crash".to_owned();
            record.status = Status::Warm;
            let staged = canonicals.stage(&lock, &record).unwrap();
            say(&format!("STAGED {}", staged.temp_path().display()));
            wait_for_parent();
            // The parent kills this process before it gets here.
            staged.commit().unwrap();
        }
        other => panic!("unknown part {other:?}"),
    }
}

/// A record for tests.
pub(crate) fn record(app: &str, version: &str, volumes: &[&str]) -> Record {
    Record::new(
        AppName::new(app).unwrap(),
        format!("warm-canon-{app}.ci.example.net"),
        version.to_owned(),
        "0123456789abcdef0123456789abcdef01234567".to_owned(),
        Status::Idle,
        "2026-06-17T08:39:30Z".parse().unwrap(),
        volumes.iter().map(|v| (*v).to_owned()).collect(),
    )
}
