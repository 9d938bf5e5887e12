//! Volumes, listings and snapshots for the tests, on the real engine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lkg_swarm::docker::STACK_NAMESPACE_LABEL as STACK_LABEL;
use lkg_testkit::Env;
use lkg_warmsnap::{AppName, Docker, LocalStore};

pub(crate) fn env() -> &'static Env {
    lkg_testkit::env()
}

pub(crate) async fn docker() -> Docker {
    lkg_warmsnap::connect_to(&env().docker_host).await.expect("connect to the test engine")
}

/// A stack's worth of volumes, labelled as `docker stack deploy` labels them,
/// without deploying anything; removed (with any helper container of its app)
/// when dropped.
pub(crate) struct Volumes {
    pub(crate) stack: String,
    pub(crate) app: AppName,
    names: Vec<String>,
}

impl Volumes {
    pub(crate) fn new(prefix: &str) -> Volumes {
        let stack = lkg_testkit::unique_name(prefix);
        let app = AppName::new(&stack).expect("unique names are app names");
        Volumes { stack, app, names: Vec::new() }
    }

    /// Creates `<stack>_<key>` with the stack label.
    pub(crate) fn create(&mut self, key: &str) -> String {
        let name = format!("{}_{key}", self.stack);
        let label = format!("{STACK_LABEL}={}", self.stack);
        env().docker(&["volume", "create", "--label", &label, &name]);
        self.names.push(name.clone());
        name
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        env().remove_warmsnap_helpers(self.app.as_str());
        for name in &self.names {
            let _ = env().try_docker(&["volume", "rm", "-f", name]);
        }
    }
}

/// Runs a busybox shell script with `volume` at `/data` (no network).
pub(crate) fn sh(volume: &str, script: &str) -> String {
    env().on_volume(volume, &["sh", "-euc", script])
}

/// Every entry of a volume with owner, mode, type, size (files), link
/// count, mtime and link target, plus the SHA-256 of every file, sorted: two
/// volumes with equal listings have the same content.
pub(crate) fn listing(volume: &str) -> String {
    listings(&[volume]).remove(0)
}

/// [`listing`] of several volumes, from one container.
pub(crate) fn listings(volumes: &[&str]) -> Vec<String> {
    listings_with(volumes, "%n|%u:%g|%a|%F|%s|%h|%Y|%N")
}

/// [`listing`] plus inode and ctime: equal only if nothing was even rewritten.
pub(crate) fn strict_listing(volume: &str) -> String {
    listings_with(&[volume], "%n|%u:%g|%a|%F|%s|%h|%Y|%N|%i|%Z").remove(0)
}

const SEPARATOR: &str = "=== next volume ===";

fn listings_with(volumes: &[&str], format: &str) -> Vec<String> {
    let mut args = vec!["run".to_owned(), "--rm".to_owned(), "--network".to_owned(), "none".to_owned()];
    let mut script = String::new();
    for (i, volume) in volumes.iter().enumerate() {
        args.extend(["-v".to_owned(), format!("{volume}:/v{i}:ro")]);
        let _ = write!(
            script,
            "cd /v{i} && find . -exec stat -c '{format}' {{}} + | sort && find . -type f -exec sha256sum {{}} + | sort -k2; echo '{SEPARATOR}'; "
        );
    }
    args.extend([env().busybox_image.clone(), "sh".to_owned(), "-euc".to_owned(), script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let raw = env().docker(&args);
    raw.split(SEPARATOR)
        .take(volumes.len())
        .map(|one| {
            // A directory's size depends on the order its entries were created
            // in; its content is listed entry by entry anyway.
            one.trim()
                .lines()
                .map(|line| {
                    let mut fields: Vec<&str> = line.split('|').collect();
                    if fields.get(3) == Some(&"directory") {
                        fields[4] = "-";
                    }
                    fields.join("|")
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// Rich content: many small files, one large file, nested directories,
/// symlinks (relative, absolute, dangling, one level up), a hard link,
/// non-root owners, special modes, a long path, a name with a space.
pub(crate) const RICH: &str = r#"
cd /data
mkdir -p many deep/a/b/c/d/e/f/g "with space"
i=0; while [ $i -lt 1500 ]; do echo "small file $i" > many/f$i; i=$((i+1)); done
dd if=/dev/urandom of=large.bin bs=1M count=8 2>/dev/null
echo nested > deep/a/b/c/d/e/f/g/leaf
echo spaced > "with space/a file"
ln -s deep/a/b/c/d/e/f/g/leaf rel-link
ln -s /etc/passwd abs-link
ln -s ../elsewhere up-link
ln -s missing dangling
ln large.bin large.hardlink
mkdir owned; echo mine > owned/file; chown -R 1000:1000 owned; chmod 0750 owned; chmod 0640 owned/file
echo odd > odd-owner; chown 1001:1002 odd-owner; chmod 4755 odd-owner
long=$(printf 'n%.0s' $(seq 1 150)); mkdir -p "deep/$long"; echo long > "deep/$long/$long"
chown 33:33 /data; chmod 0711 /data
"#;

/// Changes to undo: files deleted, changed, added; modes and owners changed.
pub(crate) const MUTATE: &str = r"
cd /data
rm -f many/f7 many/f1000 rel-link
echo changed > deep/a/b/c/d/e/f/g/leaf
echo new > new-file; mkdir -p new-dir/sub; echo x > new-dir/sub/x
dd if=/dev/urandom of=large.bin bs=1k count=3 conv=notrunc 2>/dev/null
chmod 0777 /data; chown 0:0 owned
";

/// A snapshot written straight into the documented local layout, so a test
/// can store what `take` never would.
pub(crate) fn plant_snapshot(
    state: &Path,
    app: &AppName,
    meta: &serde_json::Value,
    archives: &[(&str, &[u8])],
) -> PathBuf {
    let app_dir = state.join("apps").join(app.as_str());
    let generation = "20260101T000000Z-00000000";
    let dir = app_dir.join("snapshots").join(generation);
    fs_err::create_dir_all(dir.join("volumes")).unwrap();
    fs_err::write(dir.join("meta.json"), serde_json::to_vec_pretty(meta).unwrap()).unwrap();
    for (volume, bytes) in archives {
        fs_err::write(dir.join("volumes").join(format!("{volume}.tar")), bytes).unwrap();
    }
    let link = app_dir.join("snapshot");
    let _ = fs_err::remove_file(&link);
    std::os::unix::fs::symlink(format!("snapshots/{generation}"), &link).unwrap();
    link
}

pub(crate) fn store(dir: &tempfile::TempDir) -> LocalStore {
    LocalStore::new(dir.path())
}

/// Helper containers of `app` still in the engine.
pub(crate) fn helpers(app: &AppName) -> Vec<String> {
    env().warmsnap_helpers(app.as_str())
}

/// The local mount point of `volume` (the tests run beside the engine, as root).
pub(crate) fn mountpoint(volume: &str) -> PathBuf {
    PathBuf::from(env().docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).trim())
}

/// The names in the local driver's directory of `volume`, beside its data
/// directory `_data`: where direct restores stage, and what they may leave.
pub(crate) fn beside_data(volume: &str) -> Vec<String> {
    let dir = mountpoint(volume).parent().expect("the mount point has a parent").to_owned();
    let mut names: Vec<String> =
        fs_err::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}
