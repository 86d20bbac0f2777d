//! A repository's password kept in the user's keyring, through the real CLI
//! and a real Secret Service: GNOME Keyring on a private session bus that
//! the test starts (its own HOME, so no real keyring is touched). Run as
//! root (CI), the bus, the keyring and persnap all run as an unprivileged
//! user, as on a desktop: root itself never asks a keyring.
//! `secret-tool` (libsecret, another client) reads what persnap kept; a
//! wrong password is never kept; with the password kept, a backup into the
//! repository needs neither a password file nor a terminal; forgotten, it
//! is asked for again.
#![cfg(target_os = "linux")]

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use persnap::loadgen::Mode;

const PASSWORD: &str = "kept in the keyring";
/// The desktop user the test acts as when it runs as root.
const USER: &str = "persnap_keyring";

/// `program`, run as the test's desktop user (as that user when the test
/// runs as root, with the environment given).
fn as_user(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if !persnap::fsutil::is_root() {
        return Command::new(program);
    }
    // setpriv runs the program in its place (no process of its own in
    // between), so killing the child kills the daemon.
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", USER, "--regid", USER, "--init-groups", "--"])
        .arg(program);
    cmd
}

/// A folder of the desktop user's.
fn user_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("persnap-keyring-")
        .tempdir_in("/var/tmp")
        .unwrap();
    if persnap::fsutil::is_root() {
        if Command::new("id")
            .arg(USER)
            .output()
            .is_ok_and(|o| !o.status.success())
        {
            run_ok(Command::new("useradd").args(["--create-home", USER]));
        }
        run_ok(Command::new("chown").args([USER]).arg(dir.path()));
    }
    dir
}

/// A private session bus with GNOME Keyring's Secret Service on it,
/// unlocked with a password of its own; both stopped when dropped.
struct SecretService {
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Option<Child>,
    address: String,
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in self.keyring.iter_mut().chain([&mut self.bus]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl SecretService {
    fn start() -> Option<SecretService> {
        let missing: Vec<_> = ["dbus-daemon", "gnome-keyring-daemon", "secret-tool"]
            .into_iter()
            .filter(|tool| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .map_or(true, |o| !o.status.success())
            })
            .collect();
        if !missing.is_empty() {
            assert!(
                std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_none(),
                "{missing:?} missing, and PERSNAP_REQUIRE_ROOT_TESTS forbids skipping (.ci/setup installs them)"
            );
            eprintln!(
                "SKIP: {missing:?} not installed (apt-get install dbus gnome-keyring libsecret-tools)"
            );
            return None;
        }
        let dir = user_dir();
        for sub in ["home", "run"] {
            run_ok(as_user("mkdir").arg(dir.path().join(sub)));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join("run"),
                std::fs::Permissions::from_mode(0o700),
            )
            .unwrap();
        }
        let mut bus = as_user("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .envs(Self::env_of(dir.path()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut address = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let mut service = SecretService {
            dir,
            bus,
            keyring: None,
            address: address.trim().to_owned(),
        };
        let mut keyring = as_user("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--foreground"])
            .envs(service.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // --unlock reads the keyring's own password from stdin, to its end.
        keyring
            .stdin
            .take()
            .unwrap()
            .write_all(b"the keyring's own password")
            .unwrap();
        service.keyring = Some(keyring);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owned = as_user("gdbus")
                .args([
                    "call",
                    "--session",
                    "--dest",
                    "org.freedesktop.DBus",
                    "--object-path",
                    "/org/freedesktop/DBus",
                    "--method",
                    "org.freedesktop.DBus.NameHasOwner",
                    "org.freedesktop.secrets",
                ])
                .envs(service.env())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&owned.stdout).contains("true") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "GNOME Keyring did not come up on the private bus: {}",
                String::from_utf8_lossy(&owned.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(service)
    }

    fn env_of(dir: &Path) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("HOME", dir.join("home")),
            ("XDG_DATA_HOME", dir.join("home/.local/share")),
            ("XDG_CONFIG_HOME", dir.join("home/.config")),
            ("XDG_RUNTIME_DIR", dir.join("run")),
        ]
    }

    /// The environment a program of this session runs with.
    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let mut env = Self::env_of(self.dir.path());
        env.push(("DBUS_SESSION_BUS_ADDRESS", PathBuf::from(&self.address)));
        env
    }

    /// What `secret-tool` (libsecret) finds kept for the repository.
    fn lookup(&self, repo: &str) -> Option<String> {
        let out = as_user("secret-tool")
            .args(["lookup", "service", "persnap repository", "username", repo])
            .envs(self.env())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The CLI in the keyring's session, with its own history, staging and
/// registry, and no terminal.
fn persnap(service: &SecretService, work: &Path, args: &[&str]) -> Output {
    as_user(bin("persnap"))
        .args(args)
        .envs(service.env())
        .env("PERSNAP_DATA_DIR", work.join("history"))
        .env("PERSNAP_STAGING_DIR", work.join("staging"))
        .env("PERSNAP_REGISTRY_DIR", work.join("databases"))
        .env_remove("PERSNAP_PASSWORD_FILE")
        .env_remove("PERSNAP_REPOSITORY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", stderr(out));
    stderr(out)
}

#[test]
fn a_repository_password_kept_in_the_keyring_is_used_and_forgotten() {
    let Some(service) = SecretService::start() else {
        return;
    };
    let work = user_dir();
    let work = work.path();
    for sub in ["history", "staging", "databases", "store"] {
        run_ok(as_user("mkdir").arg(work.join(sub)));
    }
    let (right, wrong) = (work.join("right"), work.join("wrong"));
    std::fs::write(&right, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&wrong, "not the password\n").unwrap();
    let repo = work.join("repo");
    let repo = repo.to_str().unwrap();
    ok(&persnap(
        &service,
        work,
        &[
            "repo",
            "init",
            "--repo",
            repo,
            "--password-file",
            right.to_str().unwrap(),
        ],
    ));
    make_store(&work.join("store"), "persistence.db", Mode::Wal, 2);
    if persnap::fsutil::is_root() {
        run_ok(Command::new("chown").args(["-R", USER]).arg(work));
    }
    let backup = |service: &SecretService| {
        persnap(
            service,
            work,
            &[
                "backup",
                "--source",
                work.join("store").to_str().unwrap(),
                "--repo",
                repo,
                "--method",
                "sqlite-online",
            ],
        )
    };

    // Nothing kept yet, and no terminal to ask on: said, with the way out.
    let out = backup(&service);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("persnap repo remember"),
        "{}",
        stderr(&out)
    );

    // A wrong password is not kept.
    let out = persnap(
        &service,
        work,
        &[
            "repo",
            "remember",
            "--repo",
            repo,
            "--password-file",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is wrong"), "{}", stderr(&out));
    assert_eq!(service.lookup(repo), None);

    // The right one is, where another Secret Service client finds it.
    let said = ok(&persnap(
        &service,
        work,
        &[
            "repo",
            "remember",
            "--repo",
            repo,
            "--password-file",
            right.to_str().unwrap(),
        ],
    ));
    assert!(said.contains("is kept in the keyring"), "{said}");
    assert_eq!(service.lookup(repo).as_deref(), Some(PASSWORD));

    // A backup and a listing need no password now.
    ok(&backup(&service));
    let listed = persnap(&service, work, &["repo", "list", "--repo", repo, "--json"]);
    ok(&listed);
    let listed: Vec<persnap::repository::Listed> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // It never reached the history or the staging folder.
    for entry in walk(work) {
        if entry.is_file() && !entry.starts_with(work.join("repo")) {
            let text = std::fs::read(&entry).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(PASSWORD) || entry == right,
                "the password is written in {entry:?}"
            );
        }
    }

    // Forgotten: gone from the keyring, and asked for again.
    let said = ok(&persnap(
        &service,
        work,
        &["repo", "forget", "--repo", repo],
    ));
    assert!(said.contains("no longer kept"), "{said}");
    assert_eq!(service.lookup(repo), None);
    let out = backup(&service);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("persnap repo remember"),
        "{}",
        stderr(&out)
    );
    let said = ok(&persnap(
        &service,
        work,
        &["repo", "forget", "--repo", repo],
    ));
    assert!(said.contains("No password"), "{said}");
}

/// Every file and folder under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
