//! `lkg-snap` as a user runs it: output, exit codes, and SIGKILL at many
//! points of a take and of a restore. These run the real binary, which is
//! why they live in the bins package (`CARGO_BIN_EXE_lkg-snap` exists only
//! here).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use lkg_testkit::{Env, env, unique_name};

use crate::common::{json, text};

fn snap(state: &Path, args: &[&str]) -> Output {
    snap_command(state, args).output().expect("run lkg-snap")
}

fn snap_command(state: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lkg-snap"));
    command.arg("--state-dir").arg(state).args(args).envs(env().vars()).stdin(Stdio::null());
    command
}

/// A volume labelled as a volume of stack `stack`, removed on drop with any
/// helper container lkg-snap left for `app`.
struct Volume<'e> {
    env: &'e Env,
    name: String,
    app: String,
}

impl<'e> Volume<'e> {
    fn new(env: &'e Env, stack: &str, key: &str) -> Volume<'e> {
        let name = format!("{stack}_{key}");
        env.docker(&["volume", "create", "--label", &format!("com.docker.stack.namespace={stack}"), &name]);
        Volume { env, name, app: stack.to_owned() }
    }

    fn sh(&self, script: &str) -> String {
        self.env.on_volume(&self.name, &["sh", "-euc", script])
    }

    fn helpers(&self) -> Vec<String> {
        self.env.warmsnap_helpers(&self.app)
    }

    /// What is beside the volume's data directory `_data` in the local
    /// driver's directory of the volume, where direct restores stage (the
    /// tests run beside the engine, as root).
    fn beside_data(&self) -> Vec<String> {
        let mountpoint = self.env.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &self.name]);
        let dir = Path::new(mountpoint.trim()).parent().expect("the mount point has a parent").to_owned();
        let mut names: Vec<String> =
            fs_err::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    /// Helpers left that no process of `killed` asked for. A killed run's
    /// create request that was already sent is still carried out by the
    /// engine, possibly after the re-run ended, so such a helper may be left;
    /// the next run removes it (checked at the end of each sweep).
    fn helpers_not_of(&self, killed: &[u32]) -> Vec<String> {
        self.helpers()
            .into_iter()
            .filter(|id| {
                let pid = self.env.docker(&[
                    "container",
                    "inspect",
                    "-f",
                    r#"{{index .Config.Labels "org.lkg.warmsnap.pid"}}"#,
                    id,
                ]);
                !killed.iter().any(|k| k.to_string() == pid.trim())
            })
            .collect()
    }
}

impl Drop for Volume<'_> {
    fn drop(&mut self) {
        self.env.remove_warmsnap_helpers(&self.app);
        let _ = self.env.try_docker(&["volume", "rm", "-f", &self.name]);
    }
}

#[test]
fn take_show_verify_and_restore_from_the_command_line() {
    let env = env();
    let stack = unique_name("snapcli");
    let volume = Volume::new(env, &stack, "data");
    volume.sh("echo known-good > /data/marker; mkdir /data/d; chown 1000:1000 /data/d");
    let state = tempfile::tempdir().unwrap();

    let out = snap(
        state.path(),
        &["take", "--app", &stack, "--stack", &stack, "--version", "1.2.0", "--commit", "0a1b2c3", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let taken = json(&out);
    assert_eq!(taken["meta"]["app"], stack.as_str());
    assert_eq!(taken["meta"]["volumes"][0]["name"], volume.name.as_str());
    assert_eq!(taken["volumes"][0]["summary"]["files"], 1);
    assert!(out.stderr.is_empty(), "no progress when stderr is not a terminal: {}", text(&out.stderr));

    let out = snap(state.path(), &["show", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0));
    let sha = taken["meta"]["volumes"][0]["sha256"].as_str().unwrap().to_owned();
    let shown = lkg_testkit::redact(&text(&out.stdout).replace(&sha, "[SHA256]").replace(&stack, "[STACK]"));
    insta::assert_snapshot!(shown, @r"
    the snapshot of app [STACK] (stack [STACK]), taken [TS]: version 1.2.0, commit 0a1b2c3, domain -
      [STACK]_data          3.0 KiB  sha256 [SHA256]
    in [TMP]
    ");
    let out = snap(state.path(), &["show", "--json"]);
    assert_eq!(json(&out)["apps"], serde_json::json!([stack]));
    let out = snap(state.path(), &["show", "--app", "nobody"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(1), "app nobody has no last-known-good snapshot\n".to_owned())
    );

    volume.sh("echo broken > /data/marker; touch /data/new");
    let out = snap(state.path(), &["restore", "--app", &stack, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let restored = json(&out);
    assert_eq!(restored["volumes"][0]["existed"], true);
    assert_eq!(volume.sh("cat /data/marker; ls /data; stat -c %u:%g /data/d"), "known-good\nd\nmarker\n1000:1000");

    // Damage the archive: verify names the volume and exits 1; restore refuses and changes nothing.
    let archive = state.path().join(format!("apps/{stack}/snapshot/volumes/{}.tar", volume.name));
    let mut bytes = fs_err::read(&archive).unwrap();
    let content = bytes.windows(10).position(|w| w == b"known-good").expect("the marker's content");
    bytes[content] ^= 1;
    fs_err::write(&archive, bytes).unwrap();
    let out = snap(state.path(), &["verify", "--app", &stack]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains(&volume.name) && text(&out.stdout).contains("MISMATCH"));
    assert!(text(&out.stdout).starts_with("FAILED to verify the snapshot of app"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains(&format!("volume {} differs", volume.name)), "{}", text(&out.stderr));
    volume.sh("echo after > /data/marker");
    let out = snap(state.path(), &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("does not match its record"), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), "after");
}

#[test]
fn exit_codes_follow_the_documented_table() {
    let env = env();
    let state = tempfile::tempdir().unwrap();
    // 2: bad input.
    let out = snap(state.path(), &["take", "--app", "Not_An_App", "--stack", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("app name \"Not_An_App\" is invalid"), "{}", text(&out.stderr));
    let out = snap(state.path(), &["restore", "--app", "nothing-here"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // 5: environment: the engine is unreachable; a volume is in use.
    let out = snap_command(state.path(), &["take", "--app", "a", "--stack", "a"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the Docker engine"), "{}", text(&out.stderr));
    let stack = unique_name("snapexit");
    let volume = Volume::new(env, &stack, "data");
    let container = unique_name("snapexit");
    env.hold_volume(&volume.name, &container);
    let out = snap(state.path(), &["take", "--app", &stack, "--stack", &stack]);
    let _ = env.try_docker(&["rm", "-f", &container]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("volume {} is in use by container {container}", volume.name)));
}

/// Kills `lkg-snap take --access ACCESS` with SIGKILL at points spread over
/// a whole take. After each kill the last-known-good verifies (it is the
/// previous snapshot, or the new one if the kill came after the swap), and a
/// re-run succeeds and cleans what the killed run left.
#[allow(clippy::print_stderr)] // where the kills landed, for `--no-capture` readers
fn sigkill_sweep(access: &str) {
    const KILLS: u32 = 6;
    let env = env();
    let stack = unique_name("snapkill");
    let volume = Volume::new(env, &stack, "data");
    volume.sh("dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null; mkdir /data/many; \
         i=0; while [ $i -lt 800 ]; do echo $i > /data/many/$i; i=$((i+1)); done");
    let state = tempfile::tempdir().unwrap();
    let args = |version: &str| -> Vec<String> {
        ["take", "--app", &stack, "--stack", &stack, "--access", access, "--version", version]
            .map(str::to_owned)
            .to_vec()
    };
    let take = |version: &str| snap(state.path(), &args(version).iter().map(String::as_str).collect::<Vec<_>>());
    let version_of_last_good = || {
        let out = snap(state.path(), &["verify", "--app", &stack, "--json"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "the last-known-good must verify: {stdout}{stderr}");
        json(&out)["snapshot"]["meta"]["version"].as_str().unwrap().to_owned()
    };

    let started = Instant::now();
    let out = take("initial");
    let full = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut last_good = "initial".to_owned();

    let (mut outcomes, mut killed) = (Vec::new(), Vec::new());
    for i in 0..KILLS {
        let attempt = format!("killed-{i}");
        volume.sh(&format!("echo {attempt} > /data/marker"));
        let mut child = snap_command(state.path(), &args(&attempt).iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * (2 * i + 1) / (2 * KILLS));
        killed.push(child.id());
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let found = version_of_last_good();
        assert!(
            found == last_good || found == attempt,
            "kill {i}: the last-known-good is {found}, neither {last_good} nor {attempt}"
        );
        outcomes.push(if status.success() {
            "finished"
        } else if found == attempt {
            "killed after the swap"
        } else {
            "killed before the swap"
        });

        let rerun = format!("rerun-{i}");
        let out = take(&rerun);
        assert_eq!(out.status.code(), Some(0), "re-run after kill {i}: {}", text(&out.stderr));
        assert_eq!(version_of_last_good(), rerun);
        last_good = rerun;
        let snapshots = state.path().join(format!("apps/{stack}/snapshots"));
        let mut left: Vec<String> =
            fs_err::read_dir(&snapshots).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.retain(|n| n != ".lock");
        assert_eq!(left.len(), 1, "after re-run {i}: only the current generation is left: {left:?}");
        let left = volume.helpers_not_of(&killed);
        assert!(left.is_empty(), "after re-run {i}: helper containers left: {left:?}");
    }
    // Whatever late requests of the killed runs created, the next run removes.
    let out = take("final");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(volume.helpers().is_empty(), "after the last take: helper containers left: {:?}", volume.helpers());
    eprintln!("{access}: a full take took {full:?}; kills: {outcomes:?}");
    // The sweep must have hit the take, not only its end.
    assert!(outcomes.contains(&"killed before the swap"), "{outcomes:?} (a full take took {full:?})");
}

#[test]
fn sigkill_during_a_direct_take_never_loses_the_last_known_good() {
    sigkill_sweep("direct");
}

#[test]
fn sigkill_during_an_archive_take_never_loses_the_last_known_good() {
    sigkill_sweep("archive");
}

/// Names, owners, modes, sizes and content of everything in the volume, as
/// one hash.
fn fingerprint(volume: &Volume<'_>) -> String {
    volume.sh("cd /data; (find . -exec stat -c '%n %u:%g %a %s' {} + | sort; \
         find . -type f | sort | xargs md5sum) | md5sum")
}

/// Kills `lkg-snap restore --access ACCESS` with SIGKILL at points spread
/// over a whole restore. After each kill the snapshot still verifies, and a
/// re-run of the restore brings back exactly the snapshot's content, however
/// far the killed run got, and leaves no helper container. A direct restore
/// swaps the volume's content in one rename, so after a kill the volume holds
/// exactly the old data or exactly the snapshot, and the re-run leaves
/// nothing beside the volume's data; an archive restore recreates the
/// volume, so the volume may be missing, half filled or done.
#[allow(clippy::print_stderr)] // where the kills landed, for `--no-capture` readers
fn restore_sigkill_sweep(access: &str) {
    const KILLS: u32 = 6;
    let env = env();
    let stack = unique_name("snaprkill");
    let volume = Volume::new(env, &stack, "data");
    volume.sh("dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null; mkdir /data/many; \
         i=0; while [ $i -lt 800 ]; do echo $i > /data/many/$i; i=$((i+1)); done; \
         chown -R 1000:1000 /data/many; chmod 0750 /data/many");
    let state = tempfile::tempdir().unwrap();
    let out = snap(state.path(), &["take", "--app", &stack, "--stack", &stack, "--access", access]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let snapshot = fingerprint(&volume);
    let restore = ["restore", "--app", stack.as_str(), "--access", access];

    let mutate = || volume.sh("echo changed > /data/many/7; rm /data/big; touch /data/extra");
    mutate();
    let old = fingerprint(&volume);
    let started = Instant::now();
    let out = snap(state.path(), &restore);
    let full = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fingerprint(&volume), snapshot);

    let (mut outcomes, mut killed) = (Vec::new(), Vec::new());
    for i in 0..KILLS {
        mutate();
        let mut child =
            snap_command(state.path(), &restore).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(full * (2 * i + 1) / (2 * KILLS));
        killed.push(child.id());
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let found = fingerprint(&volume);
        outcomes.push(match (status.success(), found == snapshot) {
            (true, _) => "finished",
            (false, true) => "killed, the snapshot in place",
            (false, false) if found == old => "killed, the old data in place",
            (false, false) => "killed half-way",
        });
        if access == "direct" {
            assert!(found == old || found == snapshot, "kill {i}: a direct restore leaves the old data or the new");
        }

        let out = snap(state.path(), &["verify", "--app", &stack]);
        assert_eq!(out.status.code(), Some(0), "kill {i}: the snapshot must still verify: {}", text(&out.stderr));
        let out = snap(state.path(), &restore);
        assert_eq!(out.status.code(), Some(0), "re-run after kill {i}: {}", text(&out.stderr));
        assert_eq!(fingerprint(&volume), snapshot, "after kill {i} and a re-run the volume is the snapshot");
        let left = volume.helpers_not_of(&killed);
        assert!(left.is_empty(), "after re-run {i}: helper containers left: {left:?}");
        assert_eq!(volume.beside_data(), ["_data"], "after re-run {i}: nothing left beside the data");
    }
    // Whatever late requests of the killed runs created, the next run removes.
    mutate();
    let out = snap(state.path(), &restore);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fingerprint(&volume), snapshot);
    assert!(volume.helpers().is_empty(), "after the last restore: helper containers left: {:?}", volume.helpers());
    eprintln!("{access}: a full restore took {full:?}; kills: {outcomes:?}");
    assert!(outcomes.iter().any(|o| o.starts_with("killed")), "{outcomes:?} (a full restore took {full:?})");
    if access == "direct" {
        // The sweep must have hit the restore before its swap, where the
        // volume is left as it was.
        assert!(outcomes.contains(&"killed, the old data in place"), "{outcomes:?} (a full restore took {full:?})");
    }
}

#[test]
fn sigkill_during_a_direct_restore_is_healed_by_a_rerun() {
    restore_sigkill_sweep("direct");
}

#[test]
fn sigkill_during_an_archive_restore_is_healed_by_a_rerun() {
    restore_sigkill_sweep("archive");
}

#[test]
fn a_registry_store_from_the_command_line() {
    let env = env();
    let stack = unique_name("snapoci");
    let volume = Volume::new(env, &stack, "data");
    // Content of its own: the layer is this test's alone, even in a shared registry.
    volume.sh(&format!("echo known-good {stack} > /data/marker"));
    let state = tempfile::tempdir().unwrap();
    let store = format!("oci://{}/lkg/{stack}", env.registry_a);
    let with_store = |args: &[&str]| snap(state.path(), &[&["--store", store.as_str()], args].concat());

    let out = with_store(&["take", "--app", &stack, "--stack", &stack, "--version", "1.0.0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let taken = json(&out);
    let location = taken["location"].as_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{store}:{stack}-last-good@sha256:")), "{location}");
    let out = with_store(&["show", "--json"]);
    assert_eq!(json(&out)["apps"], serde_json::json!([stack]), "{}", text(&out.stderr));
    assert!(!state.path().join(format!("apps/{stack}/snapshot")).exists(), "nothing kept locally");

    volume.sh("echo changed > /data/marker");
    let out = with_store(&["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), format!("known-good {stack}"));

    // The layer altered at rest in the registry's storage: verify says so
    // (exit 1), restore refuses and leaves the volume as it is.
    let sha = taken["meta"]["volumes"][0]["sha256"].as_str().unwrap();
    let blob = env.dir.join(format!("registry-a/data/docker/registry/v2/blobs/sha256/{}/{sha}/data", &sha[..2]));
    let original = fs_err::read(&blob).expect("the layer in the registry's storage");
    let mut bytes = original.clone();
    let at = bytes.windows(10).position(|w| w == b"known-good").expect("the marker's content");
    bytes[at] ^= 1;
    fs_err::write(&blob, &bytes).unwrap();
    volume.sh("echo live > /data/marker");
    let out = with_store(&["verify", "--app", &stack]);
    let verified = text(&out.stdout);
    let restored = with_store(&["restore", "--app", &stack]);
    fs_err::write(&blob, &original).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(verified.contains("REFUSED") && verified.contains("digest"), "{verified}");
    assert_eq!(restored.status.code(), Some(1), "{}", text(&restored.stderr));
    assert!(text(&restored.stderr).contains("digest"), "{}", text(&restored.stderr));
    assert_eq!(volume.sh("cat /data/marker"), "live", "the volume is untouched");

    // 2: not a store URL; 5: a registry nobody answers at.
    let out = snap(state.path(), &["--store", "oci://nowhere", "show"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("oci://HOST[:PORT]/REPOSITORY"), "{}", text(&out.stderr));
    let port = lkg_testkit::free_port();
    let out = snap(state.path(), &["--store", &format!("oci://127.0.0.1:{port}/lkg/x"), "show", "--app", &stack]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
}

#[test]
fn registry_snapshots_signed_with_a_key_and_refused_without_its_signature() {
    let env = env();
    let stack = unique_name("snapsig");
    let volume = Volume::new(env, &stack, "data");
    volume.sh("echo signed > /data/marker");
    let state = tempfile::tempdir().unwrap();
    let store = format!("oci://{}/lkg/{stack}", env.registry_a);
    let key = |name: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/registry").join(name);
    let (signing, public, other) = (key("signing-key.pem"), key("signing-key.pub"), key("other-key.pub"));
    let with =
        |extra: &[&str], args: &[&str]| snap(state.path(), &[&["--store", store.as_str()], extra, args].concat());
    let sign = ["--sign-key", signing.to_str().unwrap()];
    let verify = ["--verify-key", public.to_str().unwrap()];
    let wrong = ["--verify-key", other.to_str().unwrap()];

    let out = with(&sign, &["take", "--app", &stack, "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    volume.sh("echo live > /data/marker");
    // The wrong key: refused before anything is read or restored.
    let out = with(&wrong, &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is not signed by the verify key"), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), "live");
    // The right key: verified, restored.
    let out = with(&verify, &["verify", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = with(&verify, &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), "signed");

    // A snapshot taken without the key is not trusted by a reader that asks for one.
    let out = with(&[], &["take", "--app", &stack, "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = with(&verify, &["show", "--app", &stack]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is not signed by the verify key"), "{}", text(&out.stderr));
    // Keys belong to a registry store.
    let out = snap(state.path(), &[&sign[..], &["show"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--sign-key, --verify-key"), "{}", text(&out.stderr));
}

/// The layers of `app`'s last-known-good in registry `a`'s repository `repo`.
fn last_good_layers(repo: &str, app: &str) -> Vec<serde_json::Value> {
    let env = env();
    let out = Command::new("curl")
        .args(["-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .arg(format!("http://{}/v2/{repo}/manifests/{app}-last-good", env.registry_a))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    json(&out)["layers"].as_array().unwrap().clone()
}

#[test]
fn registry_snapshots_encrypted_to_age_recipients_are_read_only_with_the_identity() {
    let env = env();
    let stack = unique_name("snapage");
    let volume = Volume::new(env, &stack, "data");
    volume.sh(&format!("echo plaintext-{stack} > /data/marker"));
    let state = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let keygen = |name: &str| {
        let path = keys.path().join(name);
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&path)
            .output()
            .expect("age-keygen (scripts/testenv installs age)");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let public = Command::new("age-keygen").arg("-y").arg(&path).output().unwrap();
        (path, text(&public.stdout).trim().to_owned())
    };
    let ((identity, recipient), (stranger, _)) = (keygen("key.txt"), keygen("other.txt"));
    let repo = format!("lkg/{stack}");
    let store = format!("oci://{}/{repo}", env.registry_a);
    let mut outputs = Vec::new();
    let mut with = |extra: &[&str], args: &[&str]| {
        let out = snap(state.path(), &[&["--store", store.as_str()], extra, args].concat());
        outputs.push(format!("{}{}", text(&out.stdout), text(&out.stderr)));
        out
    };
    let encrypt = ["--encrypt-to", recipient.as_str()];
    let decrypt = ["--identity", identity.to_str().unwrap()];

    let out = with(&encrypt, &["take", "--app", &stack, "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let layers = last_good_layers(&repo, &stack);
    assert_eq!(layers[0]["mediaType"], "application/vnd.lkg.snapshot.volume.v1.tar+age", "{layers:#?}");
    // The registry holds ciphertext only, and the age tool opens it.
    let digest = layers[0]["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_owned();
    let blob = env.dir.join(format!("registry-a/data/docker/registry/v2/blobs/sha256/{}/{digest}/data", &digest[..2]));
    let sealed = fs_err::read(&blob).unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"plaintext"), "the registry sees the data");
    let opened = Command::new("sh")
        .arg("-c")
        .arg(format!("age -d -i {} {} | tar -xOf - data/marker", identity.display(), blob.display()))
        .output()
        .unwrap();
    assert_eq!(text(&opened.stdout).trim(), format!("plaintext-{stack}"), "{}", text(&opened.stderr));

    // Without the identity, or with another, nothing is read or restored.
    volume.sh("echo live > /data/marker");
    let out = with(&[], &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is encrypted"), "{}", text(&out.stderr));
    let out = with(&["--identity", stranger.to_str().unwrap()], &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot decrypt"), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), "live", "the volume is untouched");
    // With it: verified and restored.
    let out = with(&decrypt, &["verify", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = with(&decrypt, &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(volume.sh("cat /data/marker"), format!("plaintext-{stack}"));

    // Unchanged data, same recipients: the encrypted layer is reused, not uploaded again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = with(&encrypt, &["take", "--app", &stack, "--stack", &stack]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(last_good_layers(&repo, &stack)[0]["digest"], layers[0]["digest"]);
    assert!(text(&out.stdout).contains("uploaded 0 B of archives"), "{}", text(&out.stdout));

    // A bad identity file is named by line, never quoted.
    let bad = keys.path().join("bad.txt");
    fs_err::write(&bad, "# created: today\nAGE-SECRET-KEY-1NOTAKEYATALLSECRETPART\n").unwrap();
    let out = with(&["--identity", bad.to_str().unwrap()], &["restore", "--app", &stack]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("line 2 is not an age X25519 identity"), "{}", text(&out.stderr));
    let secrets: Vec<String> = [&identity, &stranger]
        .iter()
        .flat_map(|p| {
            fs_err::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("AGE-SECRET"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .chain(["SECRETPART".to_owned()])
        .collect();
    for output in &outputs {
        for secret in &secrets {
            assert!(!output.contains(secret.as_str()), "a secret key was printed: {output}");
        }
    }
}
