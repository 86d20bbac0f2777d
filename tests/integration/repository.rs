//! Backups into a repository in the restic format, through the real CLI:
//! a folder repository, a restic REST server (`rclone serve restic` on
//! loopback), SFTP (OpenSSH's sshd) and S3 storage (moto's server), under a
//! live writer; every stored backup restored by Debian's own `restic` (an
//! independent reader) and checked with integrity_check and the workload's
//! invariant; a killed backup leaves the repository passing `restic check`;
//! a wrong password, wrong S3 keys and an unreachable server are said
//! plainly, and nothing is recorded as good.
#![cfg(target_os = "linux")]

use crate::common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;
use persnap::repository::Listed;

const PASSWORD: &str = "correct horse battery staple";

/// A place for a repository and its password file, on a machine of its
/// own (history, staging, registry).
struct Setup {
    machine: Machine,
    password_file: PathBuf,
}

impl std::ops::Deref for Setup {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.machine
    }
}

impl std::ops::DerefMut for Setup {
    fn deref_mut(&mut self) -> &mut Machine {
        &mut self.machine
    }
}

impl Setup {
    fn new() -> Setup {
        let machine = Machine::in_dir(Path::new("/var/tmp"));
        let password_file = machine.path("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        Setup {
            machine,
            password_file,
        }
    }

    /// The CLI with this setup's history, staging folder and registry, and
    /// the repository in the environment (as PERSNAP_REPOSITORY and
    /// PERSNAP_PASSWORD_FILE): every backup location flag has them.
    fn persnap(&self, repo: &str, args: &[&str]) -> Output {
        self.command(repo, args).output().unwrap()
    }

    fn command(&self, repo: &str, args: &[&str]) -> Command {
        let mut cmd = self.machine.command(args);
        cmd.env("PERSNAP_REPOSITORY", repo)
            .env("PERSNAP_PASSWORD_FILE", &self.password_file);
        cmd
    }

    /// `persnap backup` of the store in `store_dir` into `repo`.
    fn backup(&self, repo: &str, store_dir: &Path, method: &str) -> Command {
        self.command(
            repo,
            &[
                "backup",
                "--source",
                store_dir.to_str().unwrap(),
                "--method",
                method,
            ],
        )
    }

    /// A new repository with a store of `size_mb` MiB to back up.
    fn with_store(&self, repo: &str, mode: Mode, size_mb: u64) -> PathBuf {
        ok(&self.persnap(repo, &["repo", "init"]));
        let store_dir = self.path("store");
        std::fs::create_dir(&store_dir).unwrap();
        make_store(&store_dir, "persistence.db", mode, size_mb);
        store_dir
    }

    fn restic(&self, repo: &str, args: &[&str]) -> Output {
        Command::new("restic")
            .arg("--repo")
            .arg(repo)
            .arg("--password-file")
            .arg(&self.password_file)
            .arg("--no-cache")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("restic (Debian's package) runs")
    }

    fn listed(&self, repo: &str) -> Vec<Listed> {
        let out = self.persnap(repo, &["repo", "list", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Nothing is left in the staging folder: only the repository keeps
    /// the backups.
    fn assert_nothing_staged(&self) {
        let left: Vec<_> = std::fs::read_dir(self.path("staging"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left in the staging folder: {left:?}");
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Restores snapshot `id` with Debian's restic and checks it: integrity
/// and the invariant. Returns the transfer count it holds.
fn restic_restores(setup: &Setup, repo: &str, id: &str, database: &str) -> i64 {
    let target = setup.path(&format!("restic-{id}"));
    ok(&setup.restic(repo, &["restore", id, "--target", target.to_str().unwrap()]));
    let set = target.join("persnap").join(database);
    assert!(
        set.join("manifest.json").is_file(),
        "the manifest travels with the backup"
    );
    check_backup_without_manifest(&set)
}

/// [`check_backup`] on a set that also holds its manifest.
fn check_backup_without_manifest(set: &Path) -> i64 {
    let db_only = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(set).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "manifest.json" {
            std::fs::copy(entry.path(), db_only.path().join(entry.file_name())).unwrap();
        }
    }
    check_backup(db_only.path(), "persistence.db")
}

/// The runs of the history: each completed, stored in the repository and
/// read back from it, with no staged folder left recorded.
fn assert_recorded_as_stored(history: &History, ids: &[String]) {
    let runs = history.load().unwrap();
    assert_eq!(runs.len(), ids.len(), "{runs:#?}");
    for (run, id) in runs.iter().zip(ids) {
        assert_eq!(run.outcome, Outcome::Completed, "{run:#?}");
        let stored = run
            .repository
            .as_ref()
            .expect("recorded with its repository");
        assert_eq!(&stored.snapshot, id);
        assert!(stored.check.hashes_match && stored.check.integrity == "ok");
        assert!(
            stored
                .check
                .checked
                .contains("read back from the repository")
        );
        assert!(run.backup_path.is_none(), "the staged set is gone");
    }
}

fn repository_backups_under_writer(setup: &Setup, repo: &str, store_dir: &Path, method: &str) {
    repository_backups_read_by_restic_at(setup, repo, repo, store_dir, method);
}

/// [`repository_backups_under_writer`], where restic reads the repository
/// at `restic_repo` (the same files, reached its own way).
fn repository_backups_read_by_restic_at(
    setup: &Setup,
    repo: &str,
    restic_repo: &str,
    store_dir: &Path,
    method: &str,
) {
    let out = setup.persnap(repo, &["repo", "init"]);
    ok(&out);
    let again = setup.persnap(repo, &["repo", "init"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("already a repository"));

    let db = store_dir.join("persistence.db");
    let writer = Writer::start(&db);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = setup.backup(repo, store_dir, method).output().unwrap();
        let id = ok(&out);
        assert!(
            stderr(&out).contains("Stored in the repository"),
            "{}",
            stderr(&out)
        );
        ids.push(id);
    }
    writer.stop();
    setup.assert_nothing_staged();
    assert_recorded_as_stored(&setup.history(), &ids);
    // `persnap history` names each by its id in the repository.
    let history = ok(&setup.persnap(repo, &["history"]));
    for id in &ids {
        assert!(history.contains(&format!("{} in ", &id[..8])), "{history}");
    }

    let listed = setup.listed(repo);
    let database = persnap::registry::suggest_name(
        &persnap::registry::Registry::at(setup.path("databases")),
        &std::fs::canonicalize(store_dir).unwrap(),
        "persistence.db",
    );
    assert_eq!(listed.iter().map(|l| l.id.clone()).collect::<Vec<_>>(), ids);
    for l in &listed {
        assert_eq!(l.host, persnap::manifest::host_name());
        assert_eq!(l.database, database);
        assert_eq!(l.store_name, "persistence.db");
    }

    // An independent reader: Debian's restic lists, checks and restores
    // every one of them, and each is consistent, later ones later.
    let snapshots = ok(&setup.restic(restic_repo, &["snapshots", "--json"]));
    let snapshots: Vec<serde_json::Value> = serde_json::from_str(&snapshots).unwrap();
    assert_eq!(snapshots.len(), 3);
    for s in &snapshots {
        let tags: Vec<&str> = s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert!(tags.contains(&"persnap"), "{tags:?}");
        assert!(tags.contains(&format!("database={database}").as_str()));
    }
    ok(&setup.restic(restic_repo, &["check", "--read-data"]));
    let mut last = -1;
    for id in &ids {
        let transfers = restic_restores(setup, restic_repo, id, &database);
        assert!(transfers > last, "{transfers} after {last}");
        last = transfers;
        // The staged set is hashed where it is (in memory, most likely):
        // the disk is read by the repository's check of what was stored.
        // Its manifest (stored with it) says so.
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                setup
                    .path(&format!("restic-{id}"))
                    .join("persnap")
                    .join(&database)
                    .join("manifest.json"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["verification"]["read_back"], "memory",
            "{manifest}"
        );
    }
    if !repo.contains(':') {
        // A folder repository: its new files were flushed and dropped from
        // memory before the read-back, which therefore read the disk.
        for run in setup.history().load().unwrap() {
            let checked = run.repository.unwrap().check.checked;
            assert!(checked.contains("read from the disk"), "{checked}");
        }
    }

    // And persnap reads one back whole and checks it.
    let out = setup.persnap(repo, &["verify", &ids[1][..8]]);
    assert!(ok(&out).starts_with("OK:"), "{}", stderr(&out));
    setup.assert_nothing_staged();
    eprintln!("3 backups stored in {repo}, each restored by restic and consistent");
}

#[test]
fn live_backups_into_a_folder_repository_restore_consistent_with_restic() {
    if !require_root("live_backups_into_a_folder_repository_restore_consistent_with_restic") {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(400);
    make_store(&store_dir, "persistence.db", Mode::Rollback, 24);
    let setup = Setup::new();
    let repo = setup.path("repo");
    repository_backups_under_writer(&setup, repo.to_str().unwrap(), &store_dir, "auto");
    assert!(vol.snapshot_leftovers().is_empty());

    // Stored deduplicated: three backups of a 24 MiB store whose writer
    // changed some pages take far less than three copies.
    let store = dir_size(&store_dir);
    let stored = dir_size(&repo);
    eprintln!(
        "repository {} for 3 backups of a {} store ({:.2}x one copy)",
        persnap::units::bytes(stored),
        persnap::units::bytes(store),
        stored as f64 / store as f64
    );
    assert!(
        stored < 3 * store,
        "not deduplicated: {stored} >= 3 x {store}"
    );
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// `rclone serve restic` on a loopback port, serving a folder.
struct RestServer {
    child: Child,
    url: String,
}

impl RestServer {
    fn start(dir: &Path) -> Option<RestServer> {
        if Command::new("rclone").arg("version").output().is_err() {
            if std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_some() {
                panic!("rclone is missing, and PERSNAP_REQUIRE_ROOT_TESTS forbids skipping");
            }
            eprintln!("SKIP: rclone is not installed (apt-get install rclone)");
            return None;
        }
        let port = free_port();
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("rclone")
            .args(["serve", "restic", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rclone serve restic did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(RestServer {
            child,
            url: format!("rest:http://127.0.0.1:{port}/"),
        })
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// OpenSSH's sshd on a loopback port, with a host key of its own and one
/// client key it accepts (root's; it runs as a real daemon, so the test
/// needs root), and what rclone's SFTP needs to log in and check the
/// server: `RCLONE_SFTP_KEY_FILE`, `RCLONE_SFTP_KNOWN_HOSTS_FILE`.
struct SftpServer {
    child: Child,
    port: u16,
    /// The server's key, as ssh shows it (`SHA256:…`).
    fingerprint: String,
    env: Vec<(String, OsString)>,
}

impl SftpServer {
    fn start(dir: &Path) -> SftpServer {
        SftpServer::start_on(dir, free_port(), None)
    }

    /// A server with a host key of its own, answering on `port`, letting
    /// in `client_key` when given (someone answering in a real server's
    /// place would let anyone in).
    fn start_on(dir: &Path, port: u16, client_key: Option<PathBuf>) -> SftpServer {
        std::fs::create_dir_all(dir).unwrap();
        let key = |name: &str| {
            let path = dir.join(name);
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&path)
                .output()
                .expect("ssh-keygen (openssh-client) runs");
            assert!(out.status.success(), "{}", stderr(&out));
            path
        };
        // Two keys, as a usual server has: rclone is shown the ECDSA one.
        let host_key = key("host_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
            .arg(dir.join("host_key_ecdsa"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let ecdsa_key = dir.join("host_key_ecdsa");
        let client_key = client_key.unwrap_or_else(|| key("client_key"));
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPidFile {}\n\
                 Subsystem sftp internal-sftp\n",
                host_key.display(),
                ecdsa_key.display(),
                dir.join("authorized_keys").display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        // sshd's privilege separation folder.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd (openssh-server) starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let known_hosts = dir.join("known_hosts");
        let public = |key: &Path| std::fs::read_to_string(key.with_extension("pub")).unwrap();
        std::fs::write(
            &known_hosts,
            format!(
                "[127.0.0.1]:{port} {}[127.0.0.1]:{port} {}",
                public(&host_key),
                public(&ecdsa_key)
            ),
        )
        .unwrap();
        // The key rclone checks, as ssh shows it: `256 SHA256:… comment
        // (ECDSA)`.
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(ecdsa_key.with_extension("pub"))
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        SftpServer {
            child,
            port,
            fingerprint,
            env: vec![
                ("RCLONE_SFTP_KEY_FILE".into(), client_key.into()),
                ("RCLONE_SFTP_KNOWN_HOSTS_FILE".into(), known_hosts.into()),
            ],
        }
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn live_backups_over_sftp_restore_consistent_with_restic() {
    if !require_root("live_backups_over_sftp_restore_consistent_with_restic") {
        return;
    }
    let mut setup = Setup::new();
    let server = SftpServer::start(&setup.path("sshd"));
    setup.env = server.env.clone();
    let served = setup.path("served");
    let repo = format!("sftp:root@127.0.0.1:{}:{}", server.port, served.display());
    let store_dir = setup.path("store");
    std::fs::create_dir(&store_dir).unwrap();
    make_store(&store_dir, "persistence.db", Mode::Rollback, 8);
    // Stored through SSH; Debian's restic reads what reached the server's
    // disk.
    repository_backups_read_by_restic_at(
        &setup,
        &repo,
        served.to_str().unwrap(),
        &store_dir,
        "sqlite-online",
    );

    // A server whose key is not the one trusted is refused, in words.
    std::fs::write(
        &server.env[1].1,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz5GdxhRtXgrXjrbSNz6V7jg8qfcFGL3mq+w5pWBp4y\n",
            server.port
        ),
    )
    .unwrap();
    let out = setup.persnap(&repo, &["repo", "list"]);
    assert!(
        !out.status.success(),
        "a server with another key was trusted"
    );
    assert!(
        stderr(&out).contains(&format!(
            "answered with the key {} (ecdsa-sha2-nistp256), which is not trusted",
            server.fingerprint
        )),
        "{}",
        stderr(&out)
    );
    // Nothing of the failed attempt is recorded as a backup.
    assert_eq!(setup.history().load().unwrap().len(), 3);
}

/// Someone in the path who answers for the SSH server (here: another sshd
/// with a key of its own, on the same address, letting the same client
/// in) must not be taken for it: a server whose key is not trusted is
/// refused before anything is sent, with its key's fingerprint as ssh
/// shows it and the location that trusts it; once trusted (pinned in the
/// location, or in known_hosts) it works; a server with another key at
/// the same address is refused again.
#[test]
fn an_sftp_server_is_trusted_only_with_its_own_key() {
    if !require_root("an_sftp_server_is_trusted_only_with_its_own_key") {
        return;
    }
    let mut setup = Setup::new();
    let server = SftpServer::start(&setup.path("sshd"));
    let home = setup.path("home");
    std::fs::create_dir(&home).unwrap();
    // The client key only: no known_hosts file of the test's, and a home
    // whose known_hosts does not know the server yet.
    setup.env = vec![server.env[0].clone(), ("HOME".into(), home.clone().into())];
    let served = setup.path("served");
    let repo = format!("sftp:root@127.0.0.1:{}:{}", server.port, served.display());

    let out = setup.persnap(&repo, &["repo", "init"]);
    let said = stderr(&out);
    assert!(
        !out.status.success(),
        "an unknown server was trusted: {said}"
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    let pinned = format!("{repo}#host-key={}", server.fingerprint);
    assert!(
        said.contains(&format!(
            "answered with the key {} (ecdsa-sha2-nistp256), which is not trusted",
            server.fingerprint
        )) && said.contains(&pinned),
        "{said}"
    );
    assert!(!served.exists(), "something was sent to an unknown server");

    // Trusted by its pinned key: created, and listed.
    ok(&setup.persnap(&pinned, &["repo", "init"]));
    assert!(setup.listed(&pinned).is_empty());
    // Trusted through ~/.ssh/known_hosts (hashed, as ssh writes it).
    std::fs::create_dir(home.join(".ssh")).unwrap();
    std::fs::copy(
        setup.path("sshd").join("known_hosts"),
        home.join(".ssh/known_hosts"),
    )
    .unwrap();
    let hashed = Command::new("ssh-keygen")
        .args(["-H", "-f"])
        .arg(home.join(".ssh/known_hosts"))
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{}", stderr(&hashed));
    assert!(setup.listed(&repo).is_empty());

    // Another machine answers at the server's address.
    let port = server.port;
    let client_key = PathBuf::from(&server.env[0].1);
    drop(server);
    let impostor = SftpServer::start_on(&setup.path("impostor"), port, Some(client_key));
    for location in [&pinned, &repo] {
        let out = setup.persnap(location, &["repo", "list"]);
        let said = stderr(&out);
        assert!(
            !out.status.success(),
            "{location}: the impostor was trusted"
        );
        assert!(
            said.contains(&format!("answered with the key {}", impostor.fingerprint)),
            "{said}"
        );
    }
    let out = setup.persnap(&pinned, &["repo", "list"]);
    assert!(
        stderr(&out).contains("someone may be answering in the server's place"),
        "{}",
        stderr(&out)
    );
}

/// Plain http:// to another machine would let anyone in between answer
/// in the server's place: refused unless the location says so.
#[test]
fn plain_http_to_another_machine_is_refused_unless_allowed() {
    let setup = Setup::new();
    for repo in [
        "rest:http://192.0.2.7:8000/",
        "s3:http://192.0.2.7:9000/bucket",
    ] {
        let started = Instant::now();
        let out = setup.persnap(repo, &["repo", "list"]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{repo}: {said}");
        assert!(
            said.contains("plain http://") && said.contains("#allow-plain-http"),
            "{said}"
        );
        // Refused as written, not after trying to reach it.
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn live_backups_to_a_rest_server_restore_consistent_with_restic() {
    let setup = Setup::new();
    let Some(server) = RestServer::start(&setup.path("served")) else {
        return;
    };
    let store_dir = setup.path("store");
    std::fs::create_dir(&store_dir).unwrap();
    make_store(&store_dir, "persistence.db", Mode::Wal, 8);
    repository_backups_under_writer(&setup, &server.url, &store_dir, "sqlite-online");
}

/// moto's S3 server (`moto_server`, from PyPI: `.ci/setup` installs it) on
/// a loopback port, checking keys as S3 does: one user whose keys may do
/// anything, so that other keys are refused. It has a bucket with
/// versioning on, [`S3Server::BUCKET`].
struct S3Server {
    child: Child,
    port: u16,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// moto (5.x) answers a multipart upload into a bucket without
    /// versioning with the version id "null", then refuses (400) the HEAD
    /// of that version that rclone 1.60 sends to check the upload, where S3
    /// itself takes it: so backups go to a bucket with versioning on.
    const BUCKET: &str = "persnap-test";

    fn start(dir: &Path) -> Option<S3Server> {
        if Command::new("moto_server").arg("--help").output().is_err() {
            if std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_some() {
                panic!("moto_server is missing, and PERSNAP_REQUIRE_ROOT_TESTS forbids skipping");
            }
            eprintln!("SKIP: moto_server is not installed (.ci/setup installs it from PyPI)");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("moto.log");
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // The first five requests (the user, its keys, its policy, the
            // bucket and its versioning, below) go unchecked; every one
            // after them needs good keys.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "5")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("moto_server starts");
        // Killed from here on, whatever happens.
        let mut server = S3Server {
            child,
            port,
            access_key: String::new(),
            secret_key: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.iam("Action=CreateUser&UserName=persnap");
        let key = server.iam("Action=CreateAccessKey&UserName=persnap");
        let field = |name: &str| {
            let open = format!("<{name}>");
            let start = key.find(&open).unwrap_or_else(|| panic!("{key}")) + open.len();
            key[start..start + key[start..].find('<').unwrap()].to_owned()
        };
        server.access_key = field("AccessKeyId");
        server.secret_key = field("SecretAccessKey");
        // {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}
        server.iam(
            "Action=PutUserPolicy&UserName=persnap&PolicyName=all&PolicyDocument=\
             %7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A\
             %22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        );
        let bucket = format!("/{}", Self::BUCKET);
        server.unsigned("PUT", &bucket, "s3", "", "");
        server.unsigned(
            "PUT",
            &format!("{bucket}?versioning"),
            "s3",
            "application/xml",
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Status>Enabled</Status></VersioningConfiguration>",
        );
        Some(server)
    }

    fn iam(&self, form: &str) -> String {
        self.unsigned(
            "POST",
            "/",
            "iam",
            "application/x-www-form-urlencoded",
            &format!("{form}&Version=2010-05-08"),
        )
    }

    /// One request to the server for `service`, unsigned (only the first
    /// five are taken so); its answer.
    fn unsigned(
        &self,
        method: &str,
        path: &str,
        service: &str,
        content_type: &str,
        body: &str,
    ) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=setup/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{method} {path}: {answer}"
        );
        answer
    }

    /// The keys, as persnap and restic take them, and (as some systems
    /// set it) a CA bundle in AWS_CA_BUNDLE, which rclone 1.60 cannot
    /// take as it is (persnap hands it over as RCLONE_CA_CERT).
    fn env(&self) -> Vec<(String, OsString)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone().into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.secret_key.clone().into(),
            ),
            (
                "AWS_CA_BUNDLE".into(),
                "/etc/ssl/certs/ca-certificates.crt".into(),
            ),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn live_backups_into_s3_storage_restore_consistent_with_restic() {
    let mut setup = Setup::new();
    let Some(server) = S3Server::start(&setup.path("moto")) else {
        return;
    };
    setup.env = server.env();
    let url = format!("s3:http://127.0.0.1:{}", server.port);
    let repo = format!("{url}/{}/backups", S3Server::BUCKET);
    let store_dir = setup.path("store");
    std::fs::create_dir(&store_dir).unwrap();
    make_store(&store_dir, "persistence.db", Mode::Wal, 8);
    // Stored through rclone's S3; Debian's restic reads the bucket itself.
    repository_backups_under_writer(&setup, &repo, &store_dir, "sqlite-online");

    // `repo init` makes a bucket that is not there yet.
    let elsewhere = format!("{url}/persnap-new/backups");
    ok(&setup.persnap(&elsewhere, &["repo", "init"]));
    assert_eq!(
        ok(&setup.restic(&elsewhere, &["snapshots", "--json"])),
        "[]"
    );

    // Wrong keys: refused, said in plain words, and nothing of the attempt
    // is recorded as a backup.
    let out = setup
        .backup(&repo, &store_dir, "sqlite-online")
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "refused the keys it was given (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) && stderr(&out)
            .contains("Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the keys of a user"),
        "{}",
        stderr(&out)
    );
    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let refused = runs.iter().max_by_key(|r| r.started).unwrap();
    assert!(
        matches!(refused.outcome, Outcome::Failed { .. })
            && refused.repository.is_none()
            && refused.verification.is_none(),
        "{refused:#?}"
    );
    setup.assert_nothing_staged();
    assert_eq!(setup.listed(&repo).len(), 3, "nothing more was stored");
    drop(server);
}

#[test]
fn a_wrong_password_or_an_unreachable_server_is_said_plainly_and_nothing_is_recorded_good() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 1);
    let backup = |repo: &str, password_file: &Path| {
        setup
            .backup(repo, &store_dir, "sqlite-online")
            .env("PERSNAP_PASSWORD_FILE", password_file)
            .output()
            .unwrap()
    };
    let wrong = setup.path("wrong");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let out = backup(repo, &wrong);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("The password for the repository")
            && stderr(&out).contains("is wrong"),
        "{}",
        stderr(&out)
    );

    // An address with a password in it, which must never be written.
    let nobody = format!(
        "rest:http://backup:in-the-address@127.0.0.1:{}/",
        free_port()
    );
    let out = backup(&nobody, &setup.password_file);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Could not reach the repository")
            && stderr(&out).contains("Check that the server is running"),
        "{}",
        stderr(&out)
    );

    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 2, "both refusals are recorded: {runs:#?}");
    for run in &runs {
        assert!(
            matches!(run.outcome, Outcome::Failed { .. }),
            "{:?}",
            run.outcome
        );
        assert!(run.repository.is_none() && run.verification.is_none());
    }
    setup.assert_nothing_staged();
    assert!(setup.listed(repo).is_empty(), "nothing was stored");

    // The log for support (issue #31) holds both runs' steps and how
    // they ended, in the words said above; no password is anywhere on
    // the disk but in the files that were given.
    let log = std::fs::read_to_string(setup.path("logs").join("persnap.log")).unwrap();
    assert_eq!(log.matches("started: persnap backup").count(), 2, "{log}");
    assert!(log.contains("failed during prepare"), "{log}");
    assert!(
        log.contains("ERROR")
            && log.contains("is wrong")
            && log.contains("Could not reach the repository"),
        "{log}"
    );
    let holding = |secret: &str| -> Vec<PathBuf> {
        files_under(setup.dir.path())
            .into_iter()
            .filter(|f| {
                std::fs::read(f)
                    .is_ok_and(|b| b.windows(secret.len()).any(|w| w == secret.as_bytes()))
            })
            .collect()
    };
    for (secret, file) in [
        (PASSWORD, &setup.password_file),
        ("not the password", &wrong),
    ] {
        assert_eq!(
            holding(secret),
            vec![file.clone()],
            "{secret:?} is written elsewhere"
        );
    }
    assert!(
        holding("in-the-address").is_empty(),
        "the address's password is written: {:?}",
        holding("in-the-address")
    );
}

/// Starts a backup into `repo` and returns once it is storing.
fn start_and_wait_for_store(setup: &Setup, repo: &str, store_dir: &Path) -> Child {
    let mut child = setup
        .backup(repo, store_dir, "sqlite-online")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_phase(&mut child, "== prepare", "== store in repository");
    child
}

#[test]
fn a_backup_cancelled_while_storing_stops_and_leaves_no_backup() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 96);
    let mut child = start_and_wait_for_store(&setup, repo, &store_dir);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    // Ctrl-C.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(6), "cancelled, and said so");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the cancel took {:?}",
        started.elapsed()
    );
    ok(&setup.restic(repo, &["check"]));
    assert_eq!(ok(&setup.restic(repo, &["snapshots", "--json"])), "[]");
    setup.assert_nothing_staged();
    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Outcome::Cancelled);
}

/// The pack files of the folder repository `repo`.
fn pack_files(repo: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut packs = std::collections::BTreeSet::new();
    for dir in std::fs::read_dir(repo.join("data")).unwrap() {
        for pack in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            packs.insert(pack.unwrap().path());
        }
    }
    packs
}

/// Starts `persnap backup` of `store_dir` into `repo` paused at the debug
/// builds' seam `PERSNAP_TEST_PAUSE_BEFORE_{before}` (a FIFO): returns the
/// running backup and the FIFO's writing end, once the backup waits on it
/// (a line written lets it go on).
#[cfg(debug_assertions)]
fn paused_backup(
    setup: &Setup,
    repo: &str,
    store_dir: &Path,
    method: &str,
    before: &str,
) -> (Child, std::fs::File) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let fifo = setup.path(&format!("pause-{}", uuid::Uuid::new_v4().simple()));
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = setup
        .backup(repo, store_dir, method)
        .env(format!("PERSNAP_TEST_PAUSE_BEFORE_{before}"), &fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The FIFO opens for writing once the backup opens it to read (until
    // then: ENXIO).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => return (child, f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => panic!("{e}"),
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the backup ended before its pause {before}: {status}");
        }
        assert!(Instant::now() < deadline, "the backup never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A set staged for a repository alone is not read back from the disk
/// before it is stored: its pieces were hashed as they came from the
/// snapshot, and the stored list must be exactly those. A staged copy
/// that gives other bytes back when it is stored (damaged on its way
/// through the disk) is caught, and nothing is listed or left staged.
#[cfg(debug_assertions)]
#[test]
fn a_staged_set_changed_before_it_is_stored_is_caught_by_its_pieces() {
    if !require_root("a_staged_set_changed_before_it_is_stored_is_caught_by_its_pieces") {
        return;
    }
    let setup = Setup::new();
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    ok(&setup.persnap(repo, &["repo", "init"]));
    let (_vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store_dir, "persistence.db", Mode::Rollback, 8);
    let staging = setup.path("staging");
    let staged_now = || -> Vec<String> {
        std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    ok(&setup.backup(repo, &store_dir, "btrfs").output().unwrap());
    let runs = setup.history().load().unwrap();
    let checked = &runs[0].repository.as_ref().unwrap().check.checked;
    assert!(
        checked.contains("matched the pieces hashed as its files were read from the snapshot"),
        "{checked}"
    );
    assert!(staged_now().is_empty(), "{:?}", staged_now());

    let (child, mut go) = paused_backup(&setup, repo, &store_dir, "btrfs", "STORE");
    // Staged and verified: the set, and its pieces beside it.
    let names = staged_now();
    let set = names
        .iter()
        .find(|n| !n.starts_with('.'))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(
        names.contains(&format!(".persnap-pieces-{set}")),
        "{names:?}"
    );
    let db = staging.join(set).join("persistence.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&db, &bytes).unwrap();
    std::io::Write::write_all(&mut go, b"go\n").unwrap();
    drop(go);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "a failed check: {}",
        stderr(&out)
    );
    // Caught because the stored list is not the pieces hashed from the
    // snapshot; said as what happened: the staged copy changed (not the
    // repository).
    assert!(
        stderr(&out).contains("changed after it was verified, before it was stored"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        setup.listed(repo).len(),
        1,
        "only the first backup is listed"
    );
    assert!(staged_now().is_empty(), "{:?}", staged_now());
    let check = setup.restic(repo, &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A repository backup killed while storing or while checking what it
/// stored leaves the repository whole (`restic check`) and lists nothing
/// new; what it left staged (the set and the pieces hashed from the
/// snapshot) goes with the next backup once no run can still be using it.
#[cfg(debug_assertions)]
#[test]
fn a_repository_backup_killed_while_storing_or_checking_leaves_nothing_listed() {
    if !require_root("a_repository_backup_killed_while_storing_or_checking_leaves_nothing_listed") {
        return;
    }
    let setup = Setup::new();
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    ok(&setup.persnap(repo, &["repo", "init"]));
    let (_vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store_dir, "persistence.db", Mode::Wal, 8);
    ok(&setup.backup(repo, &store_dir, "btrfs").output().unwrap());
    let staging = setup.path("staging");
    let staged_now = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    for before in ["STORE", "READ_BACK"] {
        let (mut child, _go) = paused_backup(&setup, repo, &store_dir, "btrfs", before);
        child.kill().unwrap();
        child.wait().unwrap();
        let check = setup.restic(repo, &["check"]);
        assert!(
            check.status.success(),
            "killed before {before}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert_eq!(
            setup.listed(repo).len(),
            1,
            "killed before {before}: nothing new is listed"
        );
    }
    // Two runs' sets and their pieces are left staged.
    let left = staged_now();
    assert_eq!(
        left.iter()
            .filter(|n| n.starts_with(".persnap-pieces-"))
            .count(),
        2,
        "{left:?}"
    );
    assert_eq!(left.len(), 4, "{left:?}");
    // Younger than an hour they may be another run's: the next backup
    // leaves them. Older, it removes them, and says so.
    let out = setup.backup(repo, &store_dir, "btrfs").output().unwrap();
    ok(&out);
    assert_eq!(staged_now(), left, "{}", stderr(&out));
    run_ok(Command::new("find").arg(&staging).args([
        "-mindepth",
        "1",
        "-exec",
        "touch",
        "-h",
        "-d",
        "3 hours ago",
        "{}",
        "+",
    ]));
    let out = setup.backup(repo, &store_dir, "btrfs").output().unwrap();
    ok(&out);
    assert!(staged_now().is_empty(), "{:?}", staged_now());
    assert!(
        stderr(&out).contains("left by a backup for a repository that stopped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.listed(repo).len(), 3);
    let check = setup.restic(repo, &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A pack this backup wrote, damaged on the storage after it was written
/// (one byte in the middle of it), is caught by the backup's own read-back:
/// the backup fails, is recorded as failed, and is never listed. The
/// backup waits for the damage at a FIFO (a debug build's test pause), so
/// the damage always comes between the store and the read-back. The
/// failed run's pieces stay in the repository: the next backup, which
/// reuses them, reads that pack back too and fails as well, rather than
/// being recorded as good.
#[cfg(debug_assertions)]
#[test]
fn a_damaged_new_pack_is_caught_by_the_backups_own_read_back() {
    let setup = Setup::new();
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 8);
    // A first backup, so that the second writes only some packs.
    ok(&setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap());
    let mut left = 200;
    persnap::loadgen::run(&store_dir.join("persistence.db"), || {
        left -= 1;
        left < 0
    })
    .unwrap();
    let before = pack_files(&repo_dir);
    let (child, mut go) = paused_backup(&setup, repo, &store_dir, "sqlite-online", "READ_BACK");
    let new: Vec<PathBuf> = pack_files(&repo_dir).difference(&before).cloned().collect();
    assert!(!new.is_empty(), "the backup wrote packs");
    let damaged = new
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    // Pack files are read-only, as restic leaves them.
    std::fs::set_permissions(damaged, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(damaged, &bytes).unwrap();
    std::io::Write::write_all(&mut go, b"go\n").unwrap();
    drop(go);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(5),
        "a failed check: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("does not read back as it was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        setup.listed(repo).len(),
        1,
        "only the first backup is listed"
    );
    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        matches!(
            &runs[1].outcome,
            Outcome::Failed {
                step: persnap::progress::Phase::Store,
                ..
            }
        ),
        "{:?}",
        runs[1].outcome
    );
    setup.assert_nothing_staged();

    // The same database again, unchanged: its pieces are those of the
    // failed run, in the damaged pack.
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not read back as it was written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.listed(repo).len(), 1, "never recorded as good");
}

#[test]
fn a_backup_killed_while_storing_leaves_the_repository_passing_check() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 96);
    let mut child = start_and_wait_for_store(&setup, repo, &store_dir);
    // Let it write some packs first.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();

    ok(&setup.restic(repo, &["check"]));
    let snapshots = ok(&setup.restic(repo, &["snapshots", "--json"]));
    assert_eq!(snapshots, "[]", "no snapshot of a killed backup");
    let runs = setup.history().recover().unwrap();
    assert_eq!(runs.len(), 1, "the killed run is seen as interrupted");
    // Its staged set stays until it is an hour old (a live run may hold no
    // lock for a moment between its backup and its store) …
    let staged: Vec<PathBuf> = std::fs::read_dir(setup.path("staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap();
    ok(&out);
    assert!(staged[0].is_dir(), "a young staged set was swept");
    // … then the next backup removes it, and restic finds that one whole.
    run_ok(
        Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(&staged[0]),
    );
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap();
    let id = ok(&out);
    assert!(
        stderr(&out).contains("staged for a repository by a run that stopped before storing it"),
        "{}",
        stderr(&out)
    );
    setup.assert_nothing_staged();
    ok(&setup.restic(repo, &["check", "--read-data"]));
    let database = setup.listed(repo)[0].database.clone();
    restic_restores(&setup, repo, &id, &database);
}

/// Reads `child`'s messages until `line` has been said (once `after`
/// was).
fn wait_for_phase(child: &mut Child, after: &str, line: &str) {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let mut past = false;
    loop {
        let next = lines
            .next()
            .unwrap_or_else(|| panic!("the backup ended before {line}: {seen}"))
            .unwrap();
        seen.push_str(&next);
        seen.push('\n');
        past |= next.contains(after);
        if past && next.contains(line) {
            break;
        }
    }
    // The rest of its messages, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
}

#[test]
fn a_backup_killed_during_its_read_back_is_never_listed_and_retention_sweeps_old_leftovers() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 96);
    // Stored, being read back and checked: killed before the check ends.
    let mut child = setup
        .backup(repo, &store_dir, "sqlite-online")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_phase(&mut child, "== store in repository", "== verify");
    child.kill().unwrap();
    child.wait().unwrap();

    ok(&setup.restic(repo, &["check"]));
    assert!(
        setup.listed(repo).is_empty(),
        "an unchecked backup is listed"
    );
    let pending = |setup: &Setup| -> Vec<serde_json::Value> {
        let out = ok(&setup.restic(repo, &["snapshots", "--tag", "persnap-pending", "--json"]));
        serde_json::from_str(&out).unwrap()
    };
    let left = pending(&setup);
    assert_eq!(
        left.len(),
        1,
        "the killed run's unchecked snapshot, tagged as such"
    );
    let database = left[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t.as_str().unwrap().strip_prefix("database="))
        .expect("its database tag")
        .to_owned();
    let host = left[0]["hostname"].as_str().unwrap().to_owned();
    assert!(setup.history().recover().unwrap()[0].repository.is_none());

    // An unchecked snapshot of the same database from three days ago (a
    // run that died then), made by restic itself.
    let old_set = setup.path("old-set");
    std::fs::create_dir(&old_set).unwrap();
    std::fs::write(old_set.join("persistence.db"), b"not a backup").unwrap();
    let old_time = persnap::units::LocalTime::local_second(
        &(chrono::Local::now() - chrono::TimeDelta::days(3)),
    );
    ok(&setup.restic(
        repo,
        &[
            "backup",
            "--host",
            &host,
            "--time",
            &old_time,
            "--tag",
            &format!("persnap-pending,database={database},store=persistence.db"),
            old_set.to_str().unwrap(),
        ],
    ));
    assert_eq!(pending(&setup).len(), 2);

    // The next backup goes through and is listed; retention removes the old
    // leftover and keeps the young one (it could be a run still checking).
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .args(["--keep-last", "5"])
        .output()
        .unwrap();
    let id = ok(&out);
    assert!(
        stderr(&out).contains("1 unfinished backup(s) removed"),
        "{}",
        stderr(&out)
    );
    let left = pending(&setup);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["hostname"], host.as_str());
    assert!(left[0]["time"].as_str().unwrap() > old_time.as_str());
    let listed = setup.listed(repo);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    ok(&setup.restic(repo, &["check", "--read-data"]));
    restic_restores(&setup, repo, &id, &database);
    let runs = setup.history().load().unwrap();
    let last = runs.iter().max_by_key(|r| r.started).unwrap();
    assert_eq!(
        last.repository.as_ref().map(|s| s.snapshot.as_str()),
        Some(id.as_str())
    );
}

#[test]
fn repository_retention_keeps_the_newest_and_pinned_and_prunes_the_rest() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 2);
    let writer = Writer::start(&store_dir.join("persistence.db"));
    let ids: Vec<String> = (0..5)
        .map(|_| {
            ok(&setup
                .backup(repo, &store_dir, "sqlite-online")
                .output()
                .unwrap())
        })
        .collect();
    writer.stop();
    let database = setup.listed(repo)[0].database.clone();

    // Pin the second one: it gets a new id, and says why it is kept.
    let pinned = ok(&setup.persnap(repo, &["pin", &ids[1][..8], "--note", "before the upgrade"]));
    assert_ne!(pinned, ids[1]);
    let listed = setup.listed(repo);
    let entry = listed
        .iter()
        .find(|l| l.id == pinned)
        .expect("the pinned backup");
    assert!(entry.pinned && entry.note.as_deref() == Some("before the upgrade"));

    let prune = |extra: &[&str]| {
        let mut args = vec!["prune", "--database", &database, "--keep-last", "2"];
        args.extend_from_slice(extra);
        setup.persnap(repo, &args)
    };
    // A dry run names the two that would go, and removes nothing.
    let dry = ok(&prune(&["--dry-run"]));
    let would: Vec<&str> = dry.lines().collect();
    assert_eq!(would, [ids[0].as_str(), ids[2].as_str()], "{dry}");
    assert_eq!(setup.listed(repo).len(), 5);

    let out = prune(&[]);
    let gone = ok(&out);
    assert_eq!(gone.lines().collect::<Vec<_>>(), would);
    assert!(
        stderr(&out).contains("2 backup(s) removed, 3 kept"),
        "{}",
        stderr(&out)
    );
    let left: Vec<String> = setup.listed(repo).into_iter().map(|l| l.id).collect();
    assert_eq!(left.len(), 3);
    assert!(left.contains(&pinned) && left.contains(&ids[3]) && left.contains(&ids[4]));
    ok(&setup.restic(repo, &["check", "--read-data"]));
    for id in &left {
        restic_restores(&setup, repo, id, &database);
    }

    // A backup with --keep-last 1 applies it right after it is stored:
    // the new one and the pinned one stay.
    let newest = ok(&setup
        .backup(repo, &store_dir, "sqlite-online")
        .args(["--keep-last", "1"])
        .output()
        .unwrap());
    let mut left: Vec<String> = setup.listed(repo).into_iter().map(|l| l.id).collect();
    left.sort();
    let mut expected = vec![pinned, newest];
    expected.sort();
    assert_eq!(left, expected);

    // A folder has no hourly rule: refused, not ignored.
    let folder = setup.path("folder");
    std::fs::create_dir(&folder).unwrap();
    let out = setup.persnap(
        repo,
        &[
            "prune",
            "--dest",
            folder.to_str().unwrap(),
            "--keep-hourly",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("apply to repositories"),
        "{}",
        stderr(&out)
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[test]
fn a_damaged_repository_is_said_plainly_and_its_backup_never_passes_verify() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 4);
    let id = ok(&setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap());
    // Read back whole: every byte where it belongs (the manifest's hashes
    // and the integrity check say so).
    let out = setup.persnap(repo, &["verify", &id[..8]]);
    assert!(ok(&out).starts_with("OK:"), "{}", stderr(&out));

    // One byte changed inside the largest pack file (a piece of the
    // database; a pack's own list of pieces is at its end).
    let pack = files_under(&setup.path("repo").join("data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a pack file");
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x5a;
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&pack, perms).unwrap();
    std::fs::write(&pack, &bytes).unwrap();

    let out = setup.persnap(repo, &["verify", &id[..8]]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{said}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{said}"
    );
    assert!(
        said.contains("does not match what was stored")
            && said.contains("restic check --read-data"),
        "{said}"
    );
    // Not a crash, and nothing of the damaged copy left behind.
    assert!(!said.contains("panicked"), "{said}");
    setup.assert_nothing_staged();
    // restic agrees that the repository is damaged.
    assert!(
        !setup
            .restic(repo, &["check", "--read-data"])
            .status
            .success()
    );
}

/// Whoever can write to a repository's storage (without its password)
/// plants a key file asking for scrypt with N = 2^20 (1 GiB) and p = 16:
/// rustic would try it at every open, for minutes, before the password is
/// judged. It is refused at once, in words, naming the file.
#[test]
fn a_planted_key_file_that_would_stall_every_open_is_refused_at_once() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    let repo = repo.to_str().unwrap();
    ok(&setup.persnap(repo, &["repo", "init"]));
    assert!(setup.listed(repo).is_empty());
    let keys = setup.path("repo").join("keys");
    let real = files_under(&keys).pop().expect("the repository's key");
    let mut key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    key["N"] = (1u32 << 20).into();
    key["p"] = 16.into();
    // Named to be listed (and tried) first.
    let planted = "0".repeat(64);
    std::fs::write(keys.join(&planted), serde_json::to_vec(&key).unwrap()).unwrap();

    let started = Instant::now();
    let out = setup.persnap(repo, &["repo", "list"]);
    let said = stderr(&out);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {said}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("neither restic nor persnap makes") && said.contains(&planted),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");

    // Removed, the repository opens again.
    std::fs::remove_file(keys.join(&planted)).unwrap();
    assert!(setup.listed(repo).is_empty());
}

/// A two-faced REST server (restic's protocol, what `repo list` needs)
/// over the repository folder `root`: its key files are listed as they
/// are the first time, and from the second listing on with `planted`
/// listed first, so that a key file judged on the first read is not the
/// one tried on a second.
struct TwoFacedServer {
    url: String,
    key_listings: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TwoFacedServer {
    fn start(root: PathBuf, planted: (String, Vec<u8>)) -> TwoFacedServer {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("rest:http://{}/", listener.local_addr().unwrap());
        let key_listings = std::sync::Arc::new(AtomicUsize::new(0));
        let listings = key_listings.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (root, planted, listings) = (root.clone(), planted.clone(), listings.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut request = String::new();
                        if reader.read_line(&mut request).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = request.split_whitespace();
                        let method = parts.next().unwrap_or_default().to_owned();
                        let path = parts.next().unwrap_or_default().trim_start_matches('/');
                        let path = path.to_owned();
                        let mut length = 0usize;
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).unwrap();
                            if header.trim().is_empty() {
                                break;
                            }
                            if let Some(v) = header.to_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let files = |dir: &Path| -> Vec<(String, u64)> {
                            files_under(dir)
                                .iter()
                                .map(|f| {
                                    let name =
                                        f.file_name().unwrap().to_string_lossy().into_owned();
                                    (name, std::fs::metadata(f).unwrap().len())
                                })
                                .collect()
                        };
                        let found: Option<Vec<u8>> = if path == "keys/" {
                            let mut listed = files(&root.join("keys"));
                            if listings.fetch_add(1, Ordering::SeqCst) > 0 {
                                listed.insert(0, (planted.0.clone(), planted.1.len() as u64));
                            }
                            Some(list_json(&listed))
                        } else if let Some(dir) = path.strip_suffix('/') {
                            Some(list_json(&files(&root.join(dir))))
                        } else if path == format!("keys/{}", planted.0) {
                            Some(planted.1.clone())
                        } else {
                            let file = match path.strip_prefix("data/") {
                                Some(id) if id.len() > 2 => {
                                    root.join("data").join(&id[..2]).join(id)
                                }
                                _ => root.join(&path),
                            };
                            std::fs::read(file).ok()
                        };
                        let head = |status: &str, n: usize| {
                            format!("HTTP/1.1 {status}\r\nContent-Length: {n}\r\n\r\n")
                        };
                        let answer = match found {
                            Some(bytes) if method == "HEAD" => {
                                head("200 OK", bytes.len()).into_bytes()
                            }
                            Some(bytes) => {
                                [head("200 OK", bytes.len()).into_bytes(), bytes].concat()
                            }
                            None => head("404 Not Found", 0).into_bytes(),
                        };
                        if stream.write_all(&answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        TwoFacedServer { url, key_listings }
    }
}

fn list_json(files: &[(String, u64)]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, size)| serde_json::json!({ "name": name, "size": size }))
        .collect();
    serde_json::to_vec(&entries).unwrap()
}

/// Storage that answers one way when the key files are judged and
/// another way when they are used (a hostile server, or someone in the
/// path of plain http to it) cannot slip in a key file never judged: the
/// key files are read once, and the repository opened with the master key
/// found in them.
#[test]
fn a_key_file_slipped_in_after_the_keys_were_judged_is_never_tried() {
    let setup = Setup::new();
    let repo = setup.path("repo");
    ok(&setup.persnap(repo.to_str().unwrap(), &["repo", "init"]));
    let real = files_under(&repo.join("keys")).pop().unwrap();
    let mut key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    key["N"] = (1u32 << 20).into();
    key["p"] = 16.into();
    let server = TwoFacedServer::start(
        repo.clone(),
        ("0".repeat(64), serde_json::to_vec(&key).unwrap()),
    );

    let started = Instant::now();
    let out = setup.persnap(&server.url, &["repo", "list"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}: {}",
        started.elapsed(),
        stderr(&out)
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        server
            .key_listings
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the key files were listed more than once"
    );
}

/// A mount undone when dropped (a test that fails leaves none).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_remote_is_said_plainly_and_leaves_no_backup() {
    if !require_root("a_full_remote_is_said_plainly_and_leaves_no_backup") {
        return;
    }
    let setup = Setup::new();
    // The server's storage: a 3 MiB tmpfs, for an 8 MiB store of random
    // bytes (which neither compress nor deduplicate).
    let served = setup.path("served");
    std::fs::create_dir(&served).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
            .arg(&served),
    );
    let _unmount = Unmount(served.clone());
    let server = RestServer::start(&served).expect("rclone is installed in CI");
    let store_dir = setup.with_store(&server.url, Mode::Rollback, 1);
    let conn = rusqlite::Connection::open(store_dir.join("persistence.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE filler(x);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2000)
         INSERT INTO filler SELECT randomblob(4000) FROM c;",
    )
    .unwrap();
    drop(conn);
    let out = setup
        .backup(&server.url, &store_dir, "sqlite-online")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its storage is full") && stderr(&out).contains("free space"),
        "{}",
        stderr(&out)
    );
    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 1);
    assert!(
        matches!(runs[0].outcome, Outcome::Failed { .. }) && runs[0].repository.is_none(),
        "{:#?}",
        runs[0]
    );
    setup.assert_nothing_staged();
    assert!(setup.listed(&server.url).is_empty(), "nothing was stored");
    drop(server);
}

#[test]
fn an_offsite_copy_goes_to_a_second_repository_and_its_failure_keeps_the_backup() {
    let setup = Setup::new();
    let Some(server) = RestServer::start(&setup.path("served")) else {
        return;
    };
    let local = setup.path("repo");
    let local = local.to_str().unwrap();
    let store_dir = setup.with_store(local, Mode::Wal, 4);
    // The offsite repository has its own password.
    let offsite_password = setup.path("offsite-password");
    std::fs::write(&offsite_password, "another one\n").unwrap();
    let offsite = |args: &[&str]| {
        setup
            .command(&server.url, args)
            .env("PERSNAP_PASSWORD_FILE", &offsite_password)
            .output()
            .unwrap()
    };
    ok(&offsite(&["repo", "init"]));
    let url = server.url.clone();
    let backup = || {
        setup
            .backup(local, &store_dir, "sqlite-online")
            .args(["--offsite", &url])
            .env("PERSNAP_OFFSITE_PASSWORD_FILE", &offsite_password)
            .output()
            .unwrap()
    };
    let writer = Writer::start(&store_dir.join("persistence.db"));
    let ids: Vec<String> = (0..2).map(|_| ok(&backup())).collect();
    writer.stop();
    setup.assert_nothing_staged();
    let database = setup.listed(local)[0].database.clone();

    // Both repositories hold both backups; restic restores the offsite
    // ones, consistent.
    let out = offsite(&["repo", "list", "--json"]);
    let remote: Vec<Listed> = serde_json::from_slice(&ok(&out).into_bytes()).unwrap();
    assert_eq!(remote.len(), 2);
    let remote_restic = |args: &[&str]| {
        Command::new("restic")
            .args(["--repo", &server.url, "--no-cache", "--password-file"])
            .arg(&offsite_password)
            .args(args)
            .output()
            .unwrap()
    };
    ok(&remote_restic(&["check", "--read-data"]));
    let mut last = -1;
    for r in &remote {
        let target = setup.path(&format!("offsite-{}", r.short_id()));
        ok(&remote_restic(&[
            "restore",
            &r.id,
            "--target",
            target.to_str().unwrap(),
        ]));
        let transfers = check_backup_without_manifest(&target.join("persnap").join(&database));
        assert!(transfers > last);
        last = transfers;
    }
    let runs = setup.history().load().unwrap();
    for (run, id) in runs.iter().zip(&ids) {
        assert_eq!(&run.repository.as_ref().unwrap().snapshot, id);
        match &run.offsite {
            Some(persnap::repository::Offsite::Stored { copy }) => {
                assert!(copy.check.hashes_match && copy.check.integrity == "ok");
                assert!(remote.iter().any(|r| r.id == copy.snapshot));
            }
            other => panic!("offsite copy not recorded: {other:?}"),
        }
    }

    // The offsite server goes away: the backup is still taken, stored
    // and recorded good here; its offsite copy is recorded as failed, and
    // the exit status says so.
    drop(server);
    let out = backup();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("The backup is good and kept, but its offsite copy failed"),
        "{}",
        stderr(&out)
    );
    let runs = setup.history().load().unwrap();
    let run = runs.last().unwrap();
    assert_eq!(run.outcome, Outcome::Completed);
    assert!(run.repository.is_some());
    assert!(
        matches!(&run.offsite, Some(persnap::repository::Offsite::Failed { message, .. }) if message.contains("Could not reach")),
        "{:?}",
        run.offsite
    );
    assert_eq!(setup.listed(local).len(), 3);
    setup.assert_nothing_staged();
}

/// A new machine restores a database from a repository with one command:
/// the newest backup of the database by its name, into a new folder, an
/// empty one, or a folder only root can change (a correlator run as
/// root). Every refusal — a folder others can change, one holding a
/// database persnap does not protect, a database in use — is said before
/// anything is read out of the repository: the repository's packs are
/// moved out of reach meanwhile, so reading one would fail otherwise.
#[test]
fn a_new_machine_restores_from_a_repository_without_traps() {
    if !require_root("a_new_machine_restores_from_a_repository_without_traps") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = Setup::new();
    let repo_dir = old.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let store_dir = old.with_store(repo, Mode::Rollback, 4);
    ok(&old
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap());
    let newest = ok(&old
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap());
    let expected = transfers_in(&store_dir.join("persistence.db"));
    let database = old.listed(repo)[0].database.clone();

    // The new machine: its own history, staging folder and registry.
    let new = Setup::new();
    let restore = |to: &Path| {
        new.persnap(
            repo,
            &[
                "restore",
                "--database",
                &database,
                "--to",
                to.to_str().unwrap(),
            ],
        )
    };
    let place = tempfile::Builder::new()
        .prefix("persnap-new-machine-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::set_permissions(place.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // Refusals, with the packs out of reach.
    let data = repo_dir.join("data");
    let away = repo_dir.join("data-away");
    std::fs::rename(&data, &away).unwrap();
    let shared = place.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = restore(&shared);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("can be changed by other users"),
        "{}",
        stderr(&out)
    );
    let foreign = place.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    make_store(&foreign, "persistence.db", Mode::Rollback, 1);
    let out = restore(&foreign);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("of a database persnap does not protect"),
        "{}",
        stderr(&out)
    );
    // A protected database the correlator still has open.
    let registry = persnap::registry::Registry::at(new.path("databases"));
    registry
        .add(&persnap::registry::Database::new(
            "orders",
            std::fs::canonicalize(&foreign).unwrap(),
            "persistence.db",
        ))
        .unwrap();
    let held = rusqlite::Connection::open(foreign.join("persistence.db")).unwrap();
    let out = restore(&foreign);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Stop the correlator first"),
        "{}",
        stderr(&out)
    );
    drop(held);
    new.assert_nothing_staged();
    assert!(
        new.history().load().unwrap().is_empty(),
        "nothing ran, so nothing is recorded"
    );
    std::fs::rename(&away, &data).unwrap();

    // Too little room to read it out first (the staging folder on a full
    // disk): said before anything is read or asked of the administrator.
    let tiny = place.path().join("tiny");
    std::fs::create_dir(&tiny).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&tiny),
    );
    let _unmount = Unmount(tiny.clone());
    let rooted = place.path().join("apama").join("store");
    let out = new
        .command(
            repo,
            &[
                "restore",
                "--database",
                &database,
                "--to",
                rooted.to_str().unwrap(),
            ],
        )
        .env("PERSNAP_STAGING_DIR", &tiny)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not enough room in")
            && stderr(&out).contains("to read the backup out of the repository")
            && stderr(&out).contains("Nothing was read out"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&tiny).unwrap().count(),
        0,
        "nothing was read out"
    );
    assert!(!rooted.exists(), "nothing was made for the restore");
    assert!(new.history().load().unwrap().is_empty());

    // A new folder (and its parent) in a folder only root can change: the
    // database is restored as root, and nothing is world-writable.
    let out = restore(&rooted);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Creates the folder"),
        "the plan is said first: {said}"
    );
    assert!(said.contains("Written as root"), "{said}");
    assert!(said.contains(&newest[..8]), "the newest backup: {said}");
    let restored = rooted.join("persistence.db");
    assert_eq!(ok(&out), restored.to_str().unwrap());
    assert_eq!(transfers_in(&restored), expected);
    for path in [&rooted, &rooted.parent().unwrap().to_owned(), &restored] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(meta.uid(), 0, "{}", path.display());
        assert_eq!(
            meta.mode() & 0o002,
            0,
            "{} is world-writable",
            path.display()
        );
    }

    // An empty folder of the correlator's user: restored as that user.
    let owned = place.path().join("owned");
    std::fs::create_dir(&owned).unwrap();
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
    let out = restore(&owned);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Written as nobody"),
        "{}",
        stderr(&out)
    );
    let restored = owned.join("persistence.db");
    assert_eq!(std::fs::metadata(&restored).unwrap().uid(), 65534);
    assert_eq!(transfers_in(&restored), expected);

    // An empty folder may be registered first (to restore into later).
    let later = place.path().join("later");
    std::fs::create_dir(&later).unwrap();
    let add = |args: &[&str]| {
        let mut cmd = new.command(
            repo,
            &[
                &[
                    "database",
                    "add",
                    "later",
                    "--source",
                    later.to_str().unwrap(),
                ],
                args,
            ]
            .concat(),
        );
        cmd.env_remove("PERSNAP_REPOSITORY")
            .env_remove("PERSNAP_PASSWORD_FILE");
        cmd.output().unwrap()
    };
    // Protected with a place for its backups, it would need a test
    // snapshot of a database that is not there yet: restore first.
    let out = add(&["--dest", place.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restore one into it first"),
        "{}",
        stderr(&out)
    );
    let out = add(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no database yet"), "{}", stderr(&out));
    let out = restore(&later);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the protected database later"),
        "{}",
        stderr(&out)
    );
    assert_eq!(transfers_in(&later.join("persistence.db")), expected);
    new.assert_nothing_staged();
}

/// The workload's committed transfers in a database, after its integrity
/// check and invariant.
fn transfers_in(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
    persnap::loadgen::check_invariant(&conn)
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()))
        .transfers
}

/// Restore drills: a protected database kept in a folder, a repository and
/// an offsite repository is proven restorable from all three; then one
/// place at a time is damaged — a folder backup's file truncated, a byte
/// flipped in a repository pack, a pack deleted offsite — and each drill
/// fails naming the database, the place and the backup, and `persnap
/// status` says so and exits 2.
#[test]
fn restore_drills_prove_every_place_and_name_the_damaged_one() {
    if !require_root("restore_drills_prove_every_place_and_name_the_damaged_one") {
        return;
    }
    let setup = Setup::new();
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let offsite_dir = setup.path("offsite");
    let offsite = offsite_dir.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 4);
    ok(&setup.persnap(offsite, &["repo", "init"]));
    let dest = setup.path("backups");
    std::fs::create_dir(&dest).unwrap();
    let mut db = persnap::registry::Database::new(
        "orders",
        std::fs::canonicalize(&store_dir).unwrap(),
        "persistence.db",
    );
    db.location = Some(dest.clone());
    db.repository = Some(persnap::registry::InRepository {
        location: repo.into(),
        keep: Default::default(),
        staged: false,
    });
    db.offsite = Some(persnap::registry::InRepository {
        location: offsite.into(),
        keep: Default::default(),
        staged: false,
    });
    persnap::registry::Registry::at(setup.path("databases"))
        .add(&db)
        .unwrap();
    let password = setup.password_file.to_str().unwrap().to_owned();
    for _ in 0..2 {
        let mut backup = setup.backup(repo, &store_dir, "sqlite-online");
        backup.args(["--dest", dest.to_str().unwrap(), "--offsite", offsite]);
        backup.args(["--offsite-password-file", &password]);
        ok(&backup.output().unwrap());
    }
    let drill = || {
        setup.persnap(
            repo,
            &[
                "drill",
                "orders",
                "--password-file",
                &password,
                "--offsite-password-file",
                &password,
            ],
        )
    };
    let status = || setup.persnap(repo, &["status"]);

    // Intact: proven restorable from all three, and said so.
    let out = drill();
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    for place in [
        format!("the backup location {}: restorable", dest.display()),
        format!("the repository {repo}: restorable"),
        format!("the offsite repository {offsite}: restorable"),
    ] {
        assert!(said.contains(&place), "{place:?} in {said}");
    }
    assert!(said.contains("part 1 of 4 of its packs read"), "{said}");
    let out = status();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Last proven restorable today at"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(setup.history().load().unwrap().iter().any(|r| {
        r.kind == persnap::history::RunKind::Drill
            && r.drill
                .as_ref()
                .is_some_and(|d| d.passed() && d.places.len() == 3)
    }));

    // Each kind of damage, one at a time, each put right afterwards.
    let newest_folder = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .max()
        .unwrap();
    let largest_pack = |root: &Path| {
        files_under(&root.join("data"))
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap()
    };
    let writable = |path: &Path| {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(path, perms).unwrap();
    };
    let db_file = newest_folder.join("persistence.db");
    let pack = largest_pack(&repo_dir);
    let offsite_pack = largest_pack(&offsite_dir);
    type Damage<'a> = (&'a Path, Box<dyn Fn(&[u8]) -> Option<Vec<u8>> + 'a>, String);
    let damages: Vec<Damage> = vec![
        (
            &db_file,
            Box::new(|b: &[u8]| Some(b[..b.len() / 2].to_vec())),
            format!("the backup location {}", dest.display()),
        ),
        (
            &pack,
            Box::new(|b: &[u8]| {
                let mut b = b.to_vec();
                let middle = b.len() / 3;
                b[middle] ^= 0x5a;
                Some(b)
            }),
            format!("the repository {repo}"),
        ),
        (
            &offsite_pack,
            Box::new(|_: &[u8]| None),
            format!("the offsite repository {offsite}"),
        ),
    ];
    for (path, damage, place) in damages {
        let original = std::fs::read(path).unwrap();
        writable(path);
        match damage(&original) {
            Some(bytes) => std::fs::write(path, bytes).unwrap(),
            None => std::fs::remove_file(path).unwrap(),
        }
        let out = drill();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(5), "{place}: {said}");
        assert!(said.contains("Restore drill of orders"), "{said}");
        let broken = said
            .lines()
            .find(|l| l.contains(&format!("{place}:")) && !l.contains("restorable"))
            .unwrap_or_else(|| panic!("{place} is named: {said}"));
        assert!(
            broken.contains("the backup ")
                && (broken.contains("is damaged")
                    || broken.contains("could not be read back whole"))
                || broken.contains("is damaged or missing"),
            "the backup and what is wrong: {broken}"
        );
        let out = status();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        assert!(
            shown.contains("not restorable from") && shown.contains(&place),
            "{shown}"
        );
        std::fs::write(path, &original).unwrap();
        let out = drill();
        assert!(out.status.success(), "put right: {}", stderr(&out));
    }
    setup.assert_nothing_staged();
}

/// `cmd` run as the machine `host`: in a UTS namespace of its own, whose
/// host name is `host` (root only), with the same arguments and
/// environment.
fn as_machine(host: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\"", host])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// Disaster recovery end to end, on the command line: machine A (a host
/// name of its own) backs up a live database into `rclone serve restic`
/// with an offsite copy in S3 storage; A and its first repository are
/// lost; machine B (another host name, its own history, staging folder
/// and registry) restores A's newest backup from the offsite repository
/// alone into a new, empty folder — consistent — and B's next backup goes
/// into that repository under B's name.
#[test]
fn a_lost_machine_is_restored_from_its_offsite_repository_alone() {
    if !require_root("a_lost_machine_is_restored_from_its_offsite_repository_alone") {
        return;
    }
    let mut a = Setup::new();
    let Some(s3) = S3Server::start(&a.path("moto")) else {
        return;
    };
    a.env = s3.env();
    let Some(rest) = RestServer::start(&a.path("served")) else {
        return;
    };
    let offsite = format!(
        "s3:http://127.0.0.1:{}/{}/offsite",
        s3.port,
        S3Server::BUCKET
    );
    let offsite_password = a.path("offsite-password");
    std::fs::write(&offsite_password, "kept far away\n").unwrap();
    let store_dir = a.with_store(&rest.url, Mode::Wal, 4);
    let mut init = a.command(&offsite, &["repo", "init"]);
    init.env("PERSNAP_PASSWORD_FILE", &offsite_password);
    ok(&init.output().unwrap());
    let writer = Writer::start(&store_dir.join("persistence.db"));
    for _ in 0..2 {
        let mut backup = a.backup(&rest.url, &store_dir, "sqlite-online");
        backup
            .args(["--offsite", &offsite])
            .env("PERSNAP_OFFSITE_PASSWORD_FILE", &offsite_password);
        let out = as_machine("machine-a", &backup).output().unwrap();
        ok(&out);
        assert!(stderr(&out).contains("Offsite: Stored"), "{}", stderr(&out));
    }
    writer.stop();
    // Machine A is gone, and its first repository with it.
    drop(rest);
    std::fs::remove_dir_all(&store_dir).unwrap();

    let mut b = Setup::new();
    b.env = s3.env();
    let offsite_on_b = |args: &[&str]| {
        let mut cmd = b.command(&offsite, args);
        cmd.env("PERSNAP_PASSWORD_FILE", &offsite_password);
        as_machine("machine-b", &cmd).output().unwrap()
    };
    let listed: Vec<Listed> =
        serde_json::from_str(&ok(&offsite_on_b(&["repo", "list", "--json"]))).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|l| l.host == "machine-a"));
    let newest = listed.iter().max_by_key(|l| l.time).unwrap();
    let place = tempfile::Builder::new()
        .prefix("persnap-machine-b-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let target = place.path().join("apama").join("store");
    let out = offsite_on_b(&[
        "restore",
        "--database",
        &newest.database,
        "--latest",
        "--to",
        target.to_str().unwrap(),
    ]);
    let said = stderr(&out);
    assert_eq!(
        ok(&out),
        target.join("persistence.db").to_str().unwrap(),
        "{said}"
    );
    assert!(said.contains(newest.short_id()), "the newest: {said}");
    assert!(said.contains("on machine-a"), "{said}");
    let restored = check_backup(&target, "persistence.db");
    assert!(restored > 0, "the workload's transfers are there");
    b.assert_nothing_staged();

    // B goes on backing up into the same repository, under its own name.
    let out = offsite_on_b(&[
        "backup",
        "--source",
        target.to_str().unwrap(),
        "--method",
        "sqlite-online",
    ]);
    ok(&out);
    let listed: Vec<Listed> =
        serde_json::from_str(&ok(&offsite_on_b(&["repo", "list", "--json"]))).unwrap();
    let mut hosts: Vec<&str> = listed.iter().map(|l| l.host.as_str()).collect();
    hosts.sort_unstable();
    assert_eq!(hosts, ["machine-a", "machine-a", "machine-b"]);
}

/// A [`persnap::progress::Progress`] that cancels the run as its `at`-th
/// phase begins, and notes the phases.
struct CancelAt {
    at: usize,
    seen: Vec<persnap::progress::Phase>,
    cancel: persnap::progress::CancelToken,
}

impl persnap::progress::Progress for CancelAt {
    fn phase(&mut self, phase: persnap::progress::Phase) {
        if self.seen.len() == self.at {
            self.cancel.cancel();
        }
        self.seen.push(phase);
    }
    fn bytes(&mut self, _: persnap::progress::Phase, _: u64, _: u64) {}
    fn log(&mut self, _: persnap::progress::Level, _: &str) {}
}

/// sqlite-online needs no helper.
struct NoHelper;

impl persnap::pipeline::Helper for NoHelper {
    fn call(
        &mut self,
        _: &persnap::protocol::Request,
        _: &mut dyn persnap::progress::Progress,
        _: &mut dyn persnap::history::Recorder,
        _: &persnap::progress::CancelToken,
    ) -> Result<persnap::protocol::Reply, persnap::protocol::RemoteFailure> {
        panic!("a sqlite-online backup asked for the helper")
    }
}

/// The engine's one pipeline (what the command line and the app both
/// call), cancelled as each of its phases begins, in turn: a backup into
/// a repository with an offsite copy. Each run ends cancelled with no new
/// backup listed in the repository — or, cancelled while its offsite copy
/// is made, with the backup good and only that copy cancelled — the run
/// recorded so, both repositories passing `restic check`, nothing staged.
#[test]
fn a_cancel_in_each_phase_of_the_pipeline_leaves_no_backup_half_made() {
    use persnap::pipeline::{Job, Target};
    use persnap::progress::CancelToken;
    let setup = Setup::new();
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let offsite_dir = setup.path("offsite");
    let offsite = offsite_dir.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 8);
    ok(&setup.persnap(offsite, &["repo", "init"]));
    let target = |place: &str| Target {
        location: persnap::repository::Address::parse(place).unwrap(),
        password: Some(persnap::repository::Password::from_file(&setup.password_file).unwrap()),
        keep: Default::default(),
        remember: false,
    };
    let job = || {
        let mut backup = persnap::backup::BackupRequest::new(&store_dir, setup.path("staging"));
        backup.method = "sqlite-online".parse().unwrap();
        Job {
            backup,
            staged: true,
            repository: Some(target(repo)),
            offsite: Some(target(offsite)),
            schedule: None,
            run_as: None,
        }
    };
    let history = setup.history();
    let mut all = CancelAt {
        at: usize::MAX,
        seen: Vec::new(),
        cancel: CancelToken::new(),
    };
    let done = persnap::pipeline::run(
        job(),
        &history,
        &mut history.clone(),
        &mut NoHelper,
        &mut all,
        &CancelToken::new(),
    )
    .unwrap();
    assert!(matches!(done.offsite, Some(Ok(_))));
    let phases = all.seen;
    eprintln!("phases: {phases:?}");
    assert!(phases.len() >= 5, "{phases:?}");
    let mut listed = (1, 1);
    for (at, phase) in phases.iter().enumerate() {
        let cancel = CancelToken::new();
        let mut progress = CancelAt {
            at,
            seen: Vec::new(),
            cancel: cancel.clone(),
        };
        let result = persnap::pipeline::run(
            job(),
            &history,
            &mut history.clone(),
            &mut NoHelper,
            &mut progress,
            &cancel,
        );
        let run = history.load().unwrap().pop().unwrap();
        match &result {
            Err(f) => {
                assert_eq!(f.kind, persnap::ErrorKind::Cancelled, "at {phase}: {f}");
                assert_eq!(run.outcome, Outcome::Cancelled, "at {phase}");
            }
            Ok(done) => {
                // Too late for the backup: only its offsite copy stops.
                assert!(
                    matches!(&done.offsite, Some(Err(f)) if f.kind == persnap::ErrorKind::Cancelled),
                    "at {phase} ({at}): {:?}",
                    done.offsite
                );
                assert_eq!(run.outcome, Outcome::Completed);
                assert!(matches!(
                    run.offsite,
                    Some(persnap::repository::Offsite::Failed { .. })
                ));
                listed.0 += 1;
            }
        }
        eprintln!(
            "cancelled as phase {at} ({phase}) began: {}",
            match &result {
                Err(_) => "the backup was cancelled".to_owned(),
                Ok(_) => "the backup stands, its offsite copy was cancelled".to_owned(),
            }
        );
        assert_eq!(setup.listed(repo).len(), listed.0, "at {phase} ({at})");
        assert_eq!(setup.listed(offsite).len(), listed.1, "at {phase} ({at})");
        ok(&setup.restic(repo, &["check"]));
        ok(&setup.restic(offsite, &["check"]));
        setup.assert_nothing_staged();
    }
}

/// A backup whose list of pieces is longer than the 4 MiB a set's list
/// was once capped at (a 72 MiB store in 1 KiB pieces lists ~74,000 of
/// them, ~5 MB; in the product's 8 KiB pieces that is a store over about
/// 490 MiB) is stored and read back: the cap grows with the set.
#[test]
fn a_backup_with_a_long_list_of_pieces_is_stored_and_read_back() {
    let mut setup = Setup::new();
    setup
        .env
        .push(("PERSNAP_REPO_CHUNKING".into(), OsString::from("1")));
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 72);
    // A repository's own rules (daily) with no backup folder.
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .args(["--keep-daily", "7"])
        .output()
        .unwrap();
    let id = ok(&out);
    assert_eq!(setup.listed(repo).len(), 1, "{}", stderr(&out));
    // And read out again whole (the drill's and restore's path).
    let out = setup.persnap(repo, &["verify", id.trim()]);
    ok(&out);
}

/// A store too large for the repository's list of pieces (a sparse 70 GiB
/// database against 1 KiB pieces, which allow about 15 GiB) is refused in
/// words before any snapshot or copy, and recorded as refused; nothing is
/// stored or staged.
#[test]
fn a_store_too_large_for_the_repositorys_list_is_refused_before_any_work() {
    let mut setup = Setup::new();
    setup
        .env
        .push(("PERSNAP_REPO_CHUNKING".into(), OsString::from("1")));
    let repo_dir = setup.path("repo");
    let repo = repo_dir.to_str().unwrap();
    let store_dir = setup.with_store(repo, Mode::Rollback, 1);
    // Sparse: the header stays, the size says 70 GiB.
    std::fs::OpenOptions::new()
        .write(true)
        .open(store_dir.join("persistence.db"))
        .unwrap()
        .set_len(70 << 30)
        .unwrap();
    let out = setup
        .backup(repo, &store_dir, "sqlite-online")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("is too large for this repository"), "{said}");
    assert!(said.contains("Nothing was stored"), "{said}");
    assert!(!said.contains("== copy"), "refused before any copy: {said}");
    assert!(setup.listed(repo).is_empty());
    setup.assert_nothing_staged();
    let runs = setup.history().load().unwrap();
    assert_eq!(runs.len(), 1);
    assert!(
        matches!(&runs[0].outcome, Outcome::Failed { message, .. } if message.contains("too large")),
        "{:?}",
        runs[0].outcome
    );
}
