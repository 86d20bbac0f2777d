//! The explicit `sqlite-online` method under a live writer (no root needed).
#![cfg(target_os = "linux")]

use crate::common;

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::History;
use persnap::loadgen::Mode;
use persnap::method::{Method, MethodChoice};
use persnap::progress::{CancelToken, Silent};

fn online_backups_under_writer(mode: Mode) {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", mode, 8);
    let mut history = History::at(dest.path().join("history"));
    let writer = Writer::start(&db);
    let mut req = BackupRequest::new(src.path(), dest.path());
    req.method = MethodChoice::Explicit(Method::SqliteOnline);
    for i in 0..5 {
        let report = run_backup(&req, &mut history, &mut Silent, &CancelToken::new())
            .unwrap_or_else(|f| panic!("online backup {i} failed during {}: {}", f.step, f.error));
        assert_eq!(report.manifest.method, Method::SqliteOnline);
        assert_eq!(report.manifest.files.len(), 1, "one self-contained file");
        check_backup(&report.backup_dir, "persistence.db");
    }
    let stats = writer.stop();
    eprintln!(
        "{mode:?}: 5 online backups consistent; writer's worst commit {:.1} ms",
        stats.max_commit_ms
    );
    assert!(work_leftovers(dest.path()).is_empty());
}

#[test]
fn online_backups_under_writer_rollback_journal() {
    online_backups_under_writer(Mode::Rollback);
}

#[test]
fn online_backups_under_writer_wal() {
    online_backups_under_writer(Mode::Wal);
}

/// Holds an exclusive lock on a rollback-journal database, as a correlator
/// in the middle of a long commit would.
fn lock_exclusively(db: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; UPDATE accounts SET balance = balance WHERE id = 0;")
        .unwrap();
    conn
}

#[test]
fn online_backup_gives_up_at_its_timeout_and_keeps_nothing() {
    let src = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", Mode::Rollback, 1);
    let _lock = lock_exclusively(&db);
    let started = std::time::Instant::now();
    let out = persnap(
        data.path(),
        &[
            "backup",
            "--source",
            src.path().to_str().unwrap(),
            "--dest",
            data.path().to_str().unwrap(),
            "--method",
            "sqlite-online",
            "--timeout",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("did not finish within 1 s"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed().as_secs() < 10);
    assert!(work_leftovers(data.path()).is_empty());
}

/// A run killed outright (SIGKILL: no cleanup code runs) is recorded as
/// interrupted by the next invocation, and its `.partial` folder is removed.
#[test]
fn killed_run_becomes_interrupted_and_its_leftovers_go() {
    let src = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let db = make_store(src.path(), "persistence.db", Mode::Rollback, 1);
    let lock = lock_exclusively(&db);
    let mut child = std::process::Command::new(bin("persnap"))
        .args([
            "backup",
            "--source",
            src.path().to_str().unwrap(),
            "--dest",
            dest.path().to_str().unwrap(),
            "--method",
            "sqlite-online",
        ])
        .env("PERSNAP_DATA_DIR", data.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while work_leftovers(dest.path()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never started copying"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let running = persnap(data.path(), &["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(
        runs[0]["outcome"]["status"], "running",
        "a live run stays running"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(lock);

    let after = persnap(data.path(), &["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(runs[0]["outcome"]["status"], "interrupted");
    assert_eq!(
        work_leftovers(dest.path()).len(),
        1,
        "history alone removes nothing"
    );
    let cleanup = persnap(data.path(), &["cleanup"]);
    assert!(cleanup.status.success(), "{}", stderr(&cleanup));
    assert!(String::from_utf8_lossy(&cleanup.stdout).contains("Removed unfinished backup folder"));
    assert!(work_leftovers(dest.path()).is_empty());
}
