//! Mail through a real SMTP server: Debian's python3-aiosmtpd, started here
//! on a free loopback port, writing what it receives to a Maildir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lkg_core::SystemClock;
use lkg_notify::{Channel, Notifier};

use crate::message;

/// The Python that has Debian's python3-aiosmtpd (not a pyenv shim's).
const PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd on 127.0.0.1, killed when dropped.
struct MailServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl MailServer {
    /// Starts it; fails the test when aiosmtpd is missing: tests never skip
    /// (`scripts/testenv up` installs it).
    fn start() -> MailServer {
        let has = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).stderr(Stdio::null()).status();
        assert!(
            has.is_ok_and(|s| s.success()),
            "aiosmtpd is missing (CI={}): run `scripts/testenv up`, which installs Debian's python3-aiosmtpd, \
             or `apt-get install python3-aiosmtpd`",
            std::env::var("CI").unwrap_or_default()
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let port = lkg_testkit::free_port();
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = MailServer { child, port, maildir, _dir: dir };
        lkg_testkit::wait_until("aiosmtpd to listen", Duration::from_secs(20), Duration::from_millis(100), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        server
    }

    /// The mails received so far, as text.
    fn mails(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        let Ok(entries) = std::fs::read_dir(&new) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| read(&e.path())).collect()
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_real_smtp_server_receives_the_mail() {
    let server = MailServer::start();
    let url = format!(
        "smtp://127.0.0.1:{}/?fromaddress=lkg@example.org&fromname=lkg&toaddresses=ops@example.org,oncall@example.org&subject=prod",
        server.port
    );
    let channel = Channel::parse(&url).unwrap();
    assert_eq!(channel.scheme(), "smtp");
    let mut message = message();
    message.title = "lkg: shop rolled back 1.1.0 -> 1.0.0".to_owned();
    message.text = "GET /health answered 503\nreason: unhealthy".to_owned();
    let deliveries = Notifier::new(vec![channel]).unwrap().send(&message, &SystemClock).await;
    assert!(deliveries[0].delivered, "{deliveries:?}");
    assert_eq!(deliveries[0].attempts, 1);
    let mails = lkg_testkit::wait_until("the mail", Duration::from_secs(10), Duration::from_millis(50), || {
        Some(server.mails()).filter(|m| !m.is_empty())
    });
    assert_eq!(mails.len(), 1, "one mail for both recipients: {mails:?}");
    let mail = mails[0].replace("\r\n", "\n");
    assert!(mail.contains("From: lkg <lkg@example.org>\n"), "{mail}");
    assert!(mail.contains("To: ops@example.org, oncall@example.org\n"), "{mail}");
    assert!(mail.contains("Subject: prod: lkg: shop rolled back 1.1.0 -> 1.0.0\n"), "{mail}");
    assert!(mail.contains("Content-Type: text/plain; charset=utf-8\n"), "{mail}");
    assert!(mail.contains("\n\nGET /health answered 503\nreason: unhealthy"), "{mail}");
    // The envelope: aiosmtpd records whom the message was handed to.
    assert!(mail.contains("X-RcptTo: ops@example.org, oncall@example.org"), "{mail}");
}

#[tokio::test]
async fn a_dead_smtp_server_is_retried_and_reported() {
    let url = format!("smtp://127.0.0.1:{}/?from=lkg@example.org&to=ops@example.org", lkg_testkit::free_port());
    let notifier = Notifier::new(vec![Channel::parse(&url).unwrap()]).unwrap().retries(3, Duration::from_millis(10));
    let deliveries = notifier.send(&message(), &SystemClock).await;
    assert_eq!((deliveries[0].delivered, deliveries[0].attempts), (false, 3), "{deliveries:?}");
    assert!(deliveries[0].error.as_deref().unwrap().starts_with("SMTP 127.0.0.1:"), "{deliveries:?}");
}
