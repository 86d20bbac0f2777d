//! The elevated helper: hostile input is refused with specific errors, and
//! a real backup runs end to end as an unprivileged user → pkexec → polkit
//! → helper as root (root-only part: CI starts a system D-Bus and polkitd).
#![cfg(target_os = "linux")]

use crate::common;

use std::io::{BufReader, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use persnap::loadgen::Mode;
use persnap::protocol::{self, Event};

/// Feed raw bytes to the helper; return its events and exit code.
fn helper_with(input: &[u8]) -> (Vec<Event>, i32) {
    let mut child = Command::new(bin("persnap-helper"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input); // the helper may stop reading early
    drop(stdin);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    while let Ok(e) = protocol::read_frame::<Event>(&mut out) {
        events.push(e);
    }
    (events, child.wait().unwrap().code().unwrap())
}

/// The helper must answer with exactly one error frame naming the problem.
fn refused(input: &[u8], code: i32, needle: &str) {
    let (events, got) = helper_with(input);
    assert_eq!(events.len(), 1, "{events:?}");
    let Event::Error { message, .. } = &events[0] else {
        panic!("expected an error frame, got {events:?}")
    };
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
    assert_eq!(got, code, "{message}");
}

fn backup_frame(source: &Path, dest: &Path, store: &str, method: &str) -> Vec<u8> {
    let v = serde_json::json!({
        "version": 2, "type": "backup", "source": source, "dest": dest, "store_name": store,
        "method": method, "options": {"online_timeout_secs": 60, "snapshot_size": null}
    });
    let mut line = serde_json::to_vec(&v).unwrap();
    line.push(b'\n');
    line
}

struct Folders {
    _src: tempfile::TempDir,
    _dest: tempfile::TempDir,
    source: PathBuf,
    dest: PathBuf,
}

fn folders() -> Folders {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    make_store(src.path(), "persistence.db", Mode::Rollback, 1);
    let source = std::fs::canonicalize(src.path()).unwrap();
    let dest_path = std::fs::canonicalize(dest.path()).unwrap();
    Folders {
        _src: src,
        _dest: dest,
        source,
        dest: dest_path,
    }
}

#[test]
fn malformed_frames_are_protocol_errors() {
    refused(b"this is not json\n", 9, "not valid JSON");
    refused(b"", 9, "ended before a frame");
    refused(
        &vec![b'{'; protocol::MAX_FRAME + 100],
        9,
        "larger than 65536 bytes",
    );
    refused(
        br#"{"version":7,"type":"cleanup"}"#,
        9,
        "version mismatch: got 7",
    );
    refused(br#"{"type":"cleanup"}"#, 9, "no version field");
    refused(br#"{"version":2,"type":"format-disk"}"#, 9, "format-disk");
    let f = folders();
    refused(
        &backup_frame(&f.source, &f.dest, "persistence.db", "copy-live-files"),
        9,
        "copy-live-files",
    );
}

#[test]
fn hostile_requests_are_refused_specifically() {
    let f = folders();
    let frame = |source: &Path, dest: &Path, store: &str| backup_frame(source, dest, store, "auto");
    refused(
        &frame(Path::new("relative/store"), &f.dest, "persistence.db"),
        2,
        "is not an absolute path",
    );
    let dotdot = f.source.join("..").join(f.source.file_name().unwrap());
    refused(
        &frame(&dotdot, &f.dest, "persistence.db"),
        2,
        "contains . or .. components",
    );
    refused(
        &frame(&f.source, &f.dest, "../../etc/shadow"),
        2,
        "path separator",
    );
    let inside = f.source.join("backups");
    std::fs::create_dir(&inside).unwrap();
    refused(
        &frame(&f.source, &inside, "persistence.db"),
        2,
        "is inside the database folder",
    );
    refused(
        &frame(&f.source, f.source.parent().unwrap(), "persistence.db"),
        2,
        "is inside the backup location",
    );

    let linked_dir = f.dest.join("link-to-source");
    symlink(&f.source, &linked_dir).unwrap();
    refused(
        &frame(&linked_dir, &f.dest, "persistence.db"),
        2,
        "is not canonical",
    );

    std::fs::write(f.source.join("notes.db"), vec![b'x'; 200]).unwrap();
    refused(
        &frame(&f.source, &f.dest, "notes.db"),
        2,
        "is not an SQLite database",
    );
    symlink("/etc/shadow", f.source.join("shadow.db")).unwrap();
    refused(
        &frame(&f.source, &f.dest, "shadow.db"),
        2,
        "is a symbolic link",
    );

    let bad_timeout = serde_json::json!({
        "version": 2, "type": "backup", "source": f.source, "dest": f.dest, "store_name": "persistence.db",
        "method": "auto", "options": {"online_timeout_secs": 0, "snapshot_size": null}
    });
    refused(
        format!("{bad_timeout}\n").as_bytes(),
        2,
        "online_timeout_secs",
    );
    let old = serde_json::json!({"version": 2, "type": "cleanup", "dests": [&f.dest]});
    refused(format!("{old}\n").as_bytes(), 9, "dests");

    // A restore may carry only a new protection of the folder it restores.
    let backup = f.dest.join("a-backup");
    std::fs::create_dir(&backup).unwrap();
    std::fs::write(backup.join("manifest.json"), b"{}").unwrap();
    let target = f.dest.join("new-store");
    let protect = |source: &Path, replace: bool| {
        serde_json::json!({
            "type": "protect", "name": "orders", "source": source, "store_name": "persistence.db",
            "location": f.dest, "method": "auto",
            "options": {"online_timeout_secs": 60, "snapshot_size": null},
            "test_snapshot": true, "replace": replace
        })
    };
    let restore = |then: serde_json::Value| {
        let v = serde_json::json!({
            "version": 2, "type": "restore", "backup": backup, "target": target,
            "then_protect": then
        });
        format!("{v}\n")
    };
    refused(
        restore(protect(&f.source, false)).as_bytes(),
        2,
        "must newly protect the very folder restored into",
    );
    refused(
        restore(protect(&target, true)).as_bytes(),
        2,
        "must newly protect the very folder restored into",
    );
    refused(
        restore(serde_json::json!({"type": "cleanup"})).as_bytes(),
        2,
        "only a protection may follow a restore",
    );
}

#[test]
fn closing_stdin_cancels_a_running_request() {
    // A valid sqlite-online backup kept waiting by a writer's exclusive
    // lock; its caller hangs up: the helper cancels and keeps nothing.
    let f = folders();
    let lock = rusqlite::Connection::open(f.source.join("persistence.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();
    let (events, code) = helper_with(&backup_frame(
        &f.source,
        &f.dest,
        "persistence.db",
        "sqlite-online",
    ));
    let last = events.last().expect("events");
    assert!(
        matches!(
            last,
            Event::Error {
                kind: persnap::ErrorKind::Cancelled,
                ..
            }
        ),
        "{last:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Run { .. })),
        "the run is reported for the caller's history"
    );
    assert_eq!(code, 6);
    assert!(work_leftovers(&f.dest).is_empty());
}

// ---- pkexec end to end (root only) ----

const TEST_USER: &str = "persnap_tester";
const RULE: &str = "/etc/polkit-1/rules.d/10-persnap-test.rules";

/// Installs helper, policy and a test rule; undoes all of it on drop.
struct PolkitSetup;

impl PolkitSetup {
    fn new() -> PolkitSetup {
        if !Path::new("/usr/bin/pkexec").exists()
            || !Path::new("/usr/lib/polkit-1/polkitd").exists()
        {
            panic!("pkexec and polkitd are needed (run .ci/setup)");
        }
        let dev_install =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("installer/linux/dev-install.sh");
        run_ok(Command::new(dev_install).arg(bin("persnap-helper")));
        if Command::new("id")
            .arg(TEST_USER)
            .output()
            .is_ok_and(|o| !o.status.success())
        {
            run_ok(Command::new("useradd").args(["--create-home", TEST_USER]));
        }
        start_system_bus();
        PolkitSetup
    }

    /// Also grant the test user the admin action (standing for the
    /// administrator's password, which CI cannot type).
    fn admin_rule(&self) {
        let rule = format!(
            "{}\npolkit.addRule(function(action, subject) {{\n  if (action.id == \"io.github.persnap.admin\" && subject.user == \"{TEST_USER}\") return polkit.Result.YES;\n}});\n",
            std::fs::read_to_string(RULE).unwrap()
        );
        std::fs::write(RULE, rule).unwrap();
        let _ = Command::new("pkill").args(["-x", "polkitd"]).status();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    /// Install the shipped example rule (operators may back up) with the
    /// test user in "operators", and restart polkitd so it reads it now.
    fn operators_rule(&self) {
        let _ = Command::new("groupadd").args(["-f", "operators"]).status();
        run_ok(Command::new("usermod").args(["-aG", "operators", TEST_USER]));
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("installer/linux/50-persnap-operators.rules.example");
        std::fs::copy(example, RULE).unwrap();
        let _ = Command::new("pkill").args(["-x", "polkitd"]).status();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// pkexec reaches polkitd over the system D-Bus, which starts polkitd on
/// demand. A socket file alone proves nothing (a stopped daemon leaves it
/// behind), so connect to it, and start a fresh daemon when nobody answers.
fn start_system_bus() {
    const SOCKET: &str = "/run/dbus/system_bus_socket";
    if std::os::unix::net::UnixStream::connect(SOCKET).is_ok() {
        return;
    }
    std::fs::create_dir_all("/run/dbus").unwrap();
    let _ = std::fs::remove_file(SOCKET);
    let _ = std::fs::remove_file("/run/dbus/pid");
    run_ok(Command::new("dbus-daemon").args(["--system", "--fork"]));
    for _ in 0..50 {
        if std::os::unix::net::UnixStream::connect(SOCKET).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the system D-Bus daemon did not come up at {SOCKET}");
}

impl Drop for PolkitSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(RULE);
        let dev_install =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("installer/linux/dev-install.sh");
        let _ = Command::new(dev_install).arg("--uninstall").output();
        let _ = Command::new("pkill").args(["-x", "polkitd"]).status();
    }
}

/// A second user standing for the correlator's service account.
fn service_user() -> u32 {
    const SVC: &str = "persnap_svc";
    if Command::new("id")
        .arg(SVC)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        run_ok(Command::new("useradd").args(["--system", SVC]));
    }
    uid_of(SVC)
}

fn uid_of(user: &str) -> u32 {
    run_ok(Command::new("id").args(["-u", user]))
        .parse()
        .unwrap()
}

/// A folder the test user owns, in a place it can reach.
fn user_dir(uid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("persnap-user-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    dir
}

fn as_test_user(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", TEST_USER, "--", "env"])
        .arg(format!("PERSNAP_DATA_DIR={}", data.display()))
        .arg(format!("XDG_RUNTIME_DIR={}", data.display()))
        .arg(bin("persnap"))
        .args(args)
        .output()
        .unwrap()
}

/// The helper through the real pkexec as the test user, raw: a request
/// frame in, the helper's frames and exit code out (what a hostile caller
/// can send, whatever the front end would do).
fn pkexec_raw(level: &str, frame: &[u8]) -> (Vec<Event>, i32) {
    let mut child = Command::new("runuser")
        .args(["-u", TEST_USER, "--", "/usr/bin/pkexec", HELPER, level])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(frame);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    while let Ok(e) = protocol::read_frame::<Event>(&mut out) {
        let last = matches!(e, Event::Done { .. } | Event::Error { .. });
        events.push(e);
        if last {
            break;
        }
    }
    drop(stdin);
    (events, child.wait().unwrap().code().unwrap_or(-1))
}

const HELPER: &str = "/usr/libexec/persnap/persnap-helper";
const REGISTRY: &str = "/etc/persnap/databases";

fn error_of(events: &[Event]) -> String {
    match events.last() {
        Some(Event::Error { message, .. }) => message.clone(),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Registers a database in the system registry for the test; removed on drop.
struct Registered(String);

impl Registered {
    fn new(name: &str, folder: &Path) -> Registered {
        persnap::registry::Registry::at(REGISTRY)
            .add(&persnap::registry::Database::new(
                name,
                folder,
                "persistence.db",
            ))
            .unwrap();
        Registered(name.into())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let _ = persnap::registry::Registry::at(REGISTRY).remove(&self.0);
    }
}

/// Everything under `dir` (and `dir`) belongs to `uid`; nothing is
/// writable by group or others.
fn all_owned_by(dir: &Path, uid: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(meta.uid(), uid, "{} belongs to the user", p.display());
        assert_eq!(
            meta.permissions().mode() & 0o022,
            0,
            "{} is writable by others",
            p.display()
        );
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

#[test]
fn an_operator_backs_up_protected_databases_and_nothing_else() {
    if !require_root("an_operator_backs_up_protected_databases_and_nothing_else") {
        return;
    }
    let polkit = PolkitSetup::new();
    let uid = uid_of(TEST_USER);
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    let db = make_store(&store_dir, "persistence.db", Mode::Wal, 8);
    let dest = user_dir(uid);
    let data = user_dir(uid);
    let args = [
        "backup",
        "--source",
        store_dir.to_str().unwrap(),
        "--dest",
        dest.path().to_str().unwrap(),
    ];

    // The shipped example rule, for a member of "operators".
    polkit.operators_rule();
    // Not registered: the front end needs the administrator, polkit says no.
    let out = as_test_user(data.path(), &args);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("not authorized"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "nothing written"
    );

    let _registered = Registered::new("pkexec-test", &store_dir);
    let writer = Writer::start(&db);
    // umask 000 must not leave anything open to others.
    let out = Command::new("runuser")
        .args([
            "-u",
            TEST_USER,
            "--",
            "sh",
            "-c",
            "umask 000; exec env \"$@\"",
            "sh",
        ])
        .arg(format!("PERSNAP_DATA_DIR={}", data.path().display()))
        .arg(format!("XDG_RUNTIME_DIR={}", data.path().display()))
        .arg(bin("persnap"))
        .args(args)
        .output()
        .unwrap();
    writer.stop();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    let backup = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    check_backup(&backup, "persistence.db");
    all_owned_by(&backup, uid);
    let run_dir = std::fs::symlink_metadata("/run/persnap").unwrap();
    assert_eq!(
        (run_dir.uid(), run_dir.mode() & 0o777),
        (0, 0o700),
        "/run/persnap stays root's"
    );
    let runs = persnap::history::History::at(data.path()).load().unwrap();
    assert_eq!(runs.len(), 1, "the user's own history records the run");
    assert_eq!(runs[0].outcome, persnap::history::Outcome::Completed);
    assert_eq!(runs[0].backup_path.as_deref(), Some(backup.as_path()));
    assert!(vol.snapshot_leftovers().is_empty());

    // Asked directly at the backup level, everything but a registered
    // backup is refused, and nothing is written.
    let secret_dir = tempfile::Builder::new()
        .prefix("persnap-secret-")
        .tempdir_in("/var/tmp")
        .unwrap();
    make_store(secret_dir.path(), "persistence.db", Mode::Rollback, 1);
    let secret = std::fs::canonicalize(secret_dir.path()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let frame = backup_frame(
        &secret,
        &std::fs::canonicalize(dest.path()).unwrap(),
        "persistence.db",
        "sqlite-online",
    );
    let before = std::fs::read_dir(dest.path()).unwrap().count();
    let (events, code) = pkexec_raw("backup", &frame);
    assert!(
        error_of(&events).contains("protected database"),
        "{events:?}"
    );
    assert_eq!(code, 8);
    // A registered database, but what only the administrator may choose
    // (the snapshot's size), or a location the operator cannot see.
    let registered_frame = |dest: &Path, size: Option<u64>| {
        let v = serde_json::json!({
            "version": 2, "type": "backup", "source": store_dir, "dest": dest, "store_name": "persistence.db",
            "method": "auto", "options": {"online_timeout_secs": 60, "snapshot_size": size}
        });
        format!("{v}\n").into_bytes()
    };
    let (events, _) = pkexec_raw(
        "backup",
        &registered_frame(&std::fs::canonicalize(dest.path()).unwrap(), Some(1 << 40)),
    );
    assert!(error_of(&events).contains("snapshot size"), "{events:?}");
    let hidden = secret.join("not-there");
    let (events, _) = pkexec_raw("backup", &registered_frame(&hidden, None));
    let said = error_of(&events);
    assert!(
        said.contains("Permission denied") && !said.contains("does not exist"),
        "root must not say what is in a folder the operator cannot see: {said}"
    );
    // Nor does a refusal show what is in a folder the operator cannot list.
    std::fs::write(secret.join("private-name.txt"), b"x").unwrap();
    let probe = backup_frame(
        &secret,
        &std::fs::canonicalize(dest.path()).unwrap(),
        "nothere.db",
        "auto",
    );
    let (events, _) = pkexec_raw("backup", &probe);
    let said = error_of(&events);
    assert!(
        !said.contains("private-name") && !said.contains("persistence.db"),
        "{said}"
    );
    let line = |v: serde_json::Value| format!("{v}\n").into_bytes();
    let (events, _) = pkexec_raw(
        "backup",
        &line(
            serde_json::json!({"version": 2, "type": "restore", "backup": backup, "target": store_dir}),
        ),
    );
    assert!(error_of(&events).contains("administrator"), "{events:?}");
    let (events, _) = pkexec_raw(
        "backup",
        &line(
            serde_json::json!({"version": 2, "type": "database-add", "name": "mine", "source": secret, "store_name": "persistence.db"}),
        ),
    );
    assert!(error_of(&events).contains("administrator"), "{events:?}");
    let (events, _) = pkexec_raw(
        "backup",
        &line(serde_json::json!({"version": 2, "type": "schedule-remove", "name": "nightly"})),
    );
    assert!(error_of(&events).contains("administrator"), "{events:?}");
    // The admin level is the administrator's: the operators rule does not grant it.
    let (events, code) = pkexec_raw("admin", &frame);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(code, 127, "pkexec refuses the admin action");
    // Without a level pkexec matches no persnap action at all.
    let (_, code) = pkexec_raw("worker", &frame);
    assert_eq!(code, 127);
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        before,
        "nothing written"
    );
    assert!(
        persnap::registry::Registry::at(REGISTRY)
            .get("mine")
            .unwrap()
            .is_none()
    );

    // Restore is the administrator's (a rule stands for the password): only
    // into a protected database's folder, never a root-owned one, and
    // written as the folder's owner, who cannot read the user's backup
    // (root opens it as the user who asked).
    polkit.admin_rule();
    let svc = service_user();
    let svc_dir = tempfile::Builder::new()
        .prefix("persnap-svc-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let svc_store = std::fs::canonicalize(svc_dir.path()).unwrap();
    make_store(&svc_store, "persistence.db", Mode::Rollback, 1);
    let restore_args = |to: &Path| {
        vec![
            "restore".to_owned(),
            backup.display().to_string(),
            "--to".to_owned(),
            to.display().to_string(),
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        as_test_user(data.path(), &args)
    };
    let out = run(restore_args(&svc_store));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("of a database persnap does not protect"),
        "{}",
        stderr(&out)
    );
    let _svc_registered = Registered::new("pkexec-svc", &svc_store);
    // Root's folder, but another user's group may change it: refused.
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(&svc_store, None, Some(svc)).unwrap();
    std::fs::set_permissions(&svc_store, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = run(restore_args(&svc_store));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to root") && stderr(&out).contains("writable by others"),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&svc_store, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(&svc_store).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(svc), Some(svc)).unwrap();
    }
    std::os::unix::fs::chown(&svc_store, Some(svc), Some(svc)).unwrap();
    let out = run(restore_args(&svc_store));
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    all_owned_by(&svc_store, svc);
    let restored = svc_store.join("persistence.db");
    persnap::verify::check_database(&restored).unwrap();
    assert_eq!(
        std::fs::read_dir(&svc_store)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("before-restore-"))
            .count(),
        1,
        "the old files are kept aside"
    );

    // A backup of another store than the one registered there is refused.
    persnap::registry::Registry::at(REGISTRY)
        .add(&persnap::registry::Database::new(
            "pkexec-svc",
            &svc_store,
            "other.db",
        ))
        .unwrap();
    // Said before the helper is asked (which would refuse it too).
    let out = run(restore_args(&svc_store));
    assert!(
        stderr(&out).contains("whose store is other.db, not persistence.db"),
        "{}",
        stderr(&out)
    );

    // The finished backup is the user's; swapping it for a link to a root
    // folder afterwards gives the user nothing (no chown by path anywhere).
    let victim = tempfile::Builder::new()
        .prefix("persnap-victim-")
        .tempdir_in("/var/tmp")
        .unwrap();
    std::fs::write(victim.path().join("shadow"), b"root only").unwrap();
    std::fs::rename(&backup, dest.path().join("moved")).unwrap();
    symlink(victim.path(), &backup).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        std::fs::metadata(victim.path().join("shadow"))
            .unwrap()
            .uid(),
        0
    );

    a_registered_location_is_written_by_its_owner(&polkit, &store_dir, data.path());
}

/// A protected database's registered location is written by its owner,
/// whoever asks (#29): an operator's "Back up now" and root's (the
/// schedule's) runs alike, into a folder operators once had to be able to
/// write (`owner:operators 2775`).
fn a_registered_location_is_written_by_its_owner(
    polkit: &PolkitSetup,
    store_dir: &Path,
    data: &Path,
) {
    use std::os::unix::fs::PermissionsExt;
    polkit.operators_rule();
    let operator = uid_of(TEST_USER);
    let operators: u32 = run_ok(Command::new("getent").args(["group", "operators"]))
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    const OWNER: &str = "persnap_owner";
    if Command::new("id")
        .arg(OWNER)
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        run_ok(Command::new("useradd").args(["--system", "--user-group", OWNER]));
    }
    let owner = uid_of(OWNER);
    let loc_dir = tempfile::Builder::new()
        .prefix("persnap-loc-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let loc = std::fs::canonicalize(loc_dir.path()).unwrap();
    let mode = |m: u32| std::fs::set_permissions(&loc, std::fs::Permissions::from_mode(m)).unwrap();
    std::os::unix::fs::chown(&loc, Some(owner), Some(owner)).unwrap();
    mode(0o755);
    let mut db = persnap::registry::Database::new("pkexec-test", store_dir, "persistence.db");
    db.location = Some(loc.clone());
    db.retention.keep_last = Some(1);
    persnap::registry::Registry::at(REGISTRY).add(&db).unwrap();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "backup".to_owned(),
            "--source".to_owned(),
            store_dir.display().to_string(),
            "--dest".to_owned(),
            loc.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let root_data = tempfile::tempdir().unwrap();
    let as_root = |extra: &[&str]| {
        Command::new(bin("persnap"))
            .args(args(extra))
            .env("PERSNAP_DATA_DIR", root_data.path())
            .output()
            .unwrap()
    };
    let as_operator = || {
        let a = args(&[]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        as_test_user(data, &a)
    };
    let path_of = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", stderr(out));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    // Root asking writes as the location's owner too.
    let first = path_of(&as_root(&[]));
    let second = path_of(&as_root(&[]));
    all_owned_by(&second, owner);

    // The old setup: operators may write in the location.
    std::os::unix::fs::chown(&loc, Some(owner), Some(operators)).unwrap();
    mode(0o2775);
    // An operator plants three folders named like newer backups, each with
    // a manifest saying "verified", and sets a real backup aside under the
    // name of an interrupted deletion.
    let manifest = std::fs::read_to_string(second.join("manifest.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let mut planted = Vec::new();
    for i in 1..=3 {
        value["finished"] = serde_json::json!(format!("2099-01-0{i}T00:00:00Z"));
        let dir = loc.join(format!("persistence.db-2099010{i}T000000Z-0000000{i}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), value.to_string()).unwrap();
        for p in [dir.join("manifest.json"), dir.clone()] {
            std::os::unix::fs::lchown(&p, Some(operator), Some(operators)).unwrap();
        }
        planted.push(dir);
    }
    let aside = loc.join(format!(
        ".persnap-deleting-{}",
        first.file_name().unwrap().to_str().unwrap()
    ));
    run_ok(Command::new("runuser").args([
        "-u",
        TEST_USER,
        "--",
        "mv",
        first.to_str().unwrap(),
        aside.to_str().unwrap(),
    ]));
    // While others may change the location, nobody's backup is written
    // there — the operator's nor the owner's — and the words say why.
    for out in [as_operator(), as_root(&["--keep-last", "1"])] {
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("can be changed by"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("chmod 755"), "{}", stderr(&out));
    }
    // The administrator makes it the owner's alone. The owner's next run,
    // with retention, loses nothing of its own to what was planted or
    // renamed.
    mode(0o755);
    let third = path_of(&as_root(&["--keep-last", "1"]));
    assert!(
        aside.join("manifest.json").exists(),
        "set aside, never removed"
    );
    assert!(
        !second.exists(),
        "the older real backup goes, by the policy"
    );
    assert!(third.exists(), "the newest real backup stays");
    assert!(
        planted.iter().all(|p| p.exists()),
        "not the owner's to judge"
    );
    // The operator's "Back up now" still works, and its backup is the
    // location owner's, though the operator cannot write there; it prunes
    // nothing (clicks cannot push restore points out).
    let theirs = path_of(&as_operator());
    check_backup(&theirs, "persistence.db");
    all_owned_by(&theirs, owner);
    // A set staged for a repository is not flushed to the disk and is
    // hashed where it is: asked for into the location, the location still
    // keeps a backup read back from the disk.
    let staged = serde_json::json!({
        "version": 2, "type": "backup", "source": store_dir, "dest": loc, "store_name": "persistence.db",
        "method": "auto", "options": {"online_timeout_secs": 60, "snapshot_size": null, "staged": {"piece_size": 8192}}
    });
    let (events, code) = pkexec_raw("backup", format!("{staged}\n").as_bytes());
    assert_eq!(code, 0, "{events:?}");
    let kept = match events.last() {
        Some(Event::Done { result }) => match &**result {
            protocol::Reply::Backup {
                manifest,
                backup_dir,
            } => {
                assert_eq!(
                    manifest.verification.read_back,
                    Some(persnap::manifest::ReadBack::Disk),
                    "the helper never lets a staged set into a protected location"
                );
                backup_dir.clone()
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    check_backup(&kept, "persistence.db");
    std::fs::remove_dir_all(&kept).unwrap();
    // Users pass through root's folder of run folders to their own.
    let users = std::fs::symlink_metadata(persnap::sys::USERS_RUN_DIR).unwrap();
    assert_eq!((users.uid(), users.mode() & 0o777), (0, 0o755));
    assert!(third.exists(), "an operator's backup deletes nothing");
    // Nor do an operator's clicks push the schedule's backups out later:
    // they are counted apart by the owner's retention.
    let theirs_again = path_of(&as_operator());
    let fourth = path_of(&as_root(&["--keep-last", "2"]));
    assert!(
        third.exists() && fourth.exists(),
        "the owner's two newest stay, whatever the operator clicked"
    );
    assert!(theirs.exists() && theirs_again.exists());
    // A location of root's: root writes only its own backups, never an
    // operator's (its copy and check would run in the root process).
    std::os::unix::fs::chown(&loc, Some(0), Some(0)).unwrap();
    let out = as_operator();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("root writes only its own backups"),
        "{}",
        stderr(&out)
    );
    std::os::unix::fs::chown(&loc, Some(owner), Some(owner)).unwrap();
    // Protected, the location's owner is recorded: a location made again
    // in its place by someone else is refused, never written for them.
    db.location_owner = Some(owner);
    persnap::registry::Registry::at(REGISTRY).add(&db).unwrap();
    std::os::unix::fs::chown(&loc, Some(operator), Some(operator)).unwrap();
    let out = as_root(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("now belongs to"), "{}", stderr(&out));
    std::os::unix::fs::chown(&loc, Some(owner), Some(owner)).unwrap();
    path_of(&as_root(&[]));
}

#[test]
fn a_caller_that_stops_reading_cannot_hold_a_snapshot() {
    if !require_root("a_caller_that_stops_reading_cannot_hold_a_snapshot") {
        return;
    }
    use std::os::fd::AsRawFd;
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store_dir, "persistence.db", Mode::Rollback, 64);
    let dest = tempfile::Builder::new()
        .prefix("persnap-stall-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let frame = backup_frame(
        &std::fs::canonicalize(&store_dir).unwrap(),
        &std::fs::canonicalize(dest.path()).unwrap(),
        "persistence.db",
        "auto",
    );
    let mut child = Command::new(bin("persnap-helper"))
        .env("PERSNAP_STALL_SECS", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The smallest pipe there is: a few frames fill it.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&frame).unwrap();
    // Keep stdin open (closing it would cancel) and never read.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the helper waits for ever on a caller that stopped reading"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop((stdin, stdout));
    assert!(
        status.code().is_some(),
        "the helper exited by itself: {status:?}"
    );
    assert!(
        vol.snapshot_leftovers().is_empty(),
        "no snapshot left: {:?}",
        vol.snapshot_leftovers()
    );
    assert!(work_leftovers(dest.path()).is_empty());
}
