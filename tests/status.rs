//! `persnap status`, as a monitoring system runs it: real protected
//! databases, real backups (sqlite-online, no root needed) under a real
//! writer, a real failed backup, and the exit codes and words each gives.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;
use persnap::registry::{Database, Registry};

struct Machine {
    data: tempfile::TempDir,
    registry: tempfile::TempDir,
    units: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            data: tempfile::tempdir().unwrap(),
            registry: tempfile::tempdir().unwrap(),
            units: tempfile::tempdir().unwrap(),
        }
    }

    fn persnap(&self, args: &[&str]) -> Output {
        std::process::Command::new(bin("persnap"))
            .args(args)
            .env("PERSNAP_DATA_DIR", self.data.path())
            .env(
                "PERSNAP_REGISTRY_DIR",
                self.registry.path().join("databases"),
            )
            .env("PERSNAP_UNIT_DIR", self.units.path())
            .output()
            .unwrap()
    }

    fn status(&self) -> (Option<i32>, String, String) {
        let out = self.persnap(&["status"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr(&out),
        )
    }

    fn backup(&self, src: &Path, dest: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "backup",
            "--source",
            src.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
            "--method",
            "sqlite-online",
        ];
        args.extend(extra);
        self.persnap(&args)
    }
}

#[test]
fn status_tells_monitoring_whether_each_database_is_protected() {
    let m = Machine::new();
    let (code, _, err) = m.status();
    assert_eq!(code, Some(3), "nothing protected: unknown\n{err}");
    assert!(err.contains("No database is protected"), "{err}");

    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", Mode::Rollback, 2);
    let folder = persnap::fsutil::canonicalize(src.path()).unwrap();
    let mut entry = Database::new("orders", &folder, "persistence.db");
    entry.location = Some(dest.path().to_owned());
    Registry::at(m.registry.path().join("databases"))
        .add(&entry)
        .unwrap();

    let (code, out, err) = m.status();
    assert_eq!(
        code,
        Some(2),
        "registered, never backed up: critical\n{out}{err}"
    );
    assert!(out.contains("orders: Never backed up."), "{out}");
    assert!(out.contains("set a schedule"), "{out}");
    assert!(err.contains("never backed up: orders"), "{err}");

    // A real backup under a live writer.
    let writer = Writer::start(&db);
    let done = m.backup(src.path(), dest.path(), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    writer.stop();
    let (code, out, err) = m.status();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("orders: Protected: last verified backup just now."),
        "{out}"
    );
    assert!(
        out.contains(&format!("Backups go to {}", dest.path().display())),
        "{out}"
    );
    assert!(out.contains("free."), "the free space is shown: {out}");

    // Three days later (the history says so), with no schedule: attention.
    let history = History::at(m.data.path());
    let mut good = history.load().unwrap().pop().unwrap();
    good.started -= chrono::Duration::days(3);
    good.finished = good.finished.map(|t| t - chrono::Duration::days(3));
    history.upsert(&good).unwrap();
    let (code, out, _) = m.status();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("orders: No backup for 3 days."), "{out}");
    // A monitoring system may ask for more.
    let strict = m.persnap(&["status", "--max-age", "5d"]);
    assert_eq!(strict.status.code(), Some(0), "{}", stderr(&strict));

    // A backup that fails for real: the correlator holds its lock past the timeout.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();
    let failed = m.backup(src.path(), dest.path(), &["--timeout", "1"]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    drop(conn);
    let (code, out, err) = m.status();
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("orders: The last backup today at")
            && out.contains("failed: copying the database failed."),
        "{out}"
    );
    assert!(err.contains("failing: orders"), "{err}");

    // The same as JSON, for scripts.
    let json = m.persnap(&["status", "--json"]);
    assert_eq!(json.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let card = &v["databases"][0];
    assert_eq!(card["name"], "orders");
    assert_eq!(card["level"], "failing");
    assert!(matches!(
        serde_json::from_value::<Outcome>(card["last_run"]["outcome"].clone()).unwrap(),
        Outcome::Failed { .. }
    ));
    assert_eq!(card["last_good"]["id"], good.id.as_str());

    // A good backup again clears it.
    let done = m.backup(src.path(), dest.path(), &[]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(m.status().0, Some(0));
}

/// A scheduled run the helper turns down before it starts (its backup
/// location is gone) is recorded as a failed scheduled run, so status says
/// it failed and why — not that it was missed, not nothing.
#[test]
fn a_scheduled_run_refused_before_it_starts_is_a_failure() {
    if !require_root("a_scheduled_run_refused_before_it_starts_is_a_failure") {
        return;
    }
    let m = Machine::new();
    let src = tempfile::tempdir().unwrap();
    make_store(src.path(), "persistence.db", Mode::Wal, 1);
    let registry = Registry::at(m.registry.path().join("databases"));
    let mut db = Database::new("orders", src.path(), "persistence.db");
    db.location = Some("/var/tmp/persnap-gone-location".into());
    registry.add(&db).unwrap();
    let out = m.persnap(&[
        "backup",
        "--source",
        src.path().to_str().unwrap(),
        "--dest",
        "/var/tmp/persnap-gone-location",
        "--scheduled",
        "nightly",
    ]);
    assert!(!out.status.success());
    let runs = History::at(m.data.path()).load().unwrap();
    assert_eq!(runs.len(), 1, "the refusal is recorded: {}", stderr(&out));
    assert_eq!(runs[0].scheduled.as_deref(), Some("nightly"));
    assert!(matches!(runs[0].outcome, Outcome::Failed { .. }));
    let (code, said, _) = m.status();
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("The scheduled backup")
            && said.contains("failed: the backup location is not there"),
        "{said}"
    );
}

/// A monitoring check runs `persnap status` as root. A schedule's maker
/// puts a FIFO (or a link to a root-only file) where their history goes:
/// status still answers within seconds, reads nothing of root's, and says
/// that history could not be read.
#[test]
fn status_as_root_is_not_stalled_or_misled_by_a_users_history() {
    use std::os::unix::fs::lchown;
    if !require_root("status_as_root_is_not_stalled_or_misled_by_a_users_history") {
        return;
    }
    use chrono::{NaiveTime, Utc};
    use persnap::schedule::{Schedule, When, systemd};
    let m = Machine::new();
    let src = tempfile::tempdir().unwrap();
    let registry = Registry::at(m.registry.path().join("databases"));
    registry
        .add(&Database::new("orders", src.path(), "persistence.db"))
        .unwrap();
    let mut schedules = Vec::new();
    for (name, plant) in [("fifo", "fifo"), ("link", "link")] {
        let theirs = tempfile::tempdir_in("/var/tmp").unwrap();
        let history = theirs.path().join("history.json");
        match plant {
            "fifo" => {
                let c = std::ffi::CString::new(history.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: mkfifo with a valid C string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
            }
            _ => std::os::unix::fs::symlink("/etc/shadow", &history).unwrap(),
        }
        lchown(&history, Some(65534), Some(65534)).unwrap();
        lchown(theirs.path(), Some(65534), Some(65534)).unwrap();
        let s = Schedule {
            name: name.into(),
            source: src.path().to_owned(),
            dest: "/var/tmp/persnap-nowhere".into(),
            store_name: "persistence.db".into(),
            method: persnap::method::MethodChoice::Auto,
            retention: Default::default(),
            pace: Default::default(),
            when: When::Daily(NaiveTime::from_hms_opt(2, 0, 0).unwrap()),
            history_dir: theirs.path().to_owned(),
            created: Some(Utc::now()),
            uid: Some(65534),
            run_as: None,
            password: Default::default(),
            repository: None,
            unlock: None,
            offsite: None,
            offsite_unlock: None,
            drill: false,
        };
        systemd::write_units(&s, m.units.path(), &bin("persnap")).unwrap();
        schedules.push(theirs);
    }
    let mut child = std::process::Command::new(bin("persnap"))
        .arg("status")
        .env("PERSNAP_DATA_DIR", m.data.path())
        .env("PERSNAP_REGISTRY_DIR", m.registry.path().join("databases"))
        .env("PERSNAP_UNIT_DIR", m.units.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(5) {
            child.kill().unwrap();
            panic!("persnap status hung on a FIFO for a history");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "never backed up: {said}");
    assert_eq!(
        said.matches("The history of the schedule").count(),
        2,
        "both histories refused, in words: {said}"
    );
    assert!(!said.contains("root:"), "nothing of /etc/shadow: {said}");
}
