//! Restore: round trips of live-written databases, and every refusal
//! leaving the store exactly as it was.
#![cfg(target_os = "linux")]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::{History, Outcome, RunKind};
use persnap::loadgen::{self, Mode};
use persnap::method::{Method, MethodChoice};
use persnap::progress::{CancelToken, Silent};
use persnap::restore::{RestoreRequest, SAFETY_PREFIX, run_restore};

/// Every file in `dir` (not folders) with the SHA-256 of its bytes.
fn files(dir: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let digest = sha2::Sha256::digest(std::fs::read(&p).unwrap());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                persnap::copy::hex(&digest),
            )
        })
        .collect()
}

fn backup(source: &Path, dest: &Path, method: Method, history: &mut History) -> PathBuf {
    let mut req = BackupRequest::new(source, dest);
    req.method = MethodChoice::Explicit(method);
    run_backup(&req, history, &mut Silent, &CancelToken::new())
        .unwrap_or_else(|f| panic!("backup failed: {}", f.error))
        .backup_dir
}

fn restore(
    backup: &Path,
    target: &Path,
    history: &mut History,
) -> Result<persnap::restore::RestoreReport, persnap::Error> {
    let req = RestoreRequest {
        backup: backup.to_owned(),
        target: target.to_owned(),
        store_names: Vec::new(),
        unprotected: false,
    };
    run_restore(&req, history, &mut Silent, &CancelToken::new()).map_err(|(_, e)| e)
}

fn transfers(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    loadgen::check_invariant(&conn)
        .unwrap_or_else(|e| panic!("{}: {e}", db.display()))
        .transfers
}

/// Snapshot backups taken while a writer commits (so a hot journal or WAL
/// is captured), restored over the stopped store: one consistent file, the
/// backup's exact state, the old files kept aside.
fn round_trip(mode: Mode, test: &str) {
    if !require_root(test) {
        return;
    }
    let (_vol, store) = LoopVolume::btrfs_with_subvolume(300);
    let db = make_store(&store, "persistence.db", mode, 6);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());

    let writer = Writer::start(&db);
    let taken = backup(&store, &dest.backups, Method::Btrfs, &mut history);
    let expected = check_backup(&taken, "persistence.db");
    let stats = writer.stop();
    assert!(stats.transactions > 0);
    let before = files(&store);
    let backup_files = files(&taken);

    let report = restore(&taken, &store, &mut history).unwrap();
    assert_eq!(report.restored, store.join("persistence.db"));
    assert_eq!(report.verification.integrity, "ok");
    assert_eq!(
        transfers(&db),
        expected,
        "the restored store holds exactly the backup's state"
    );
    let now = files(&store);
    assert_eq!(
        now.keys().collect::<Vec<_>>(),
        ["persistence.db"],
        "one self-contained file, no journal or WAL"
    );
    let safety = report.safety_dir.expect("the old files were kept");
    assert!(
        safety
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(SAFETY_PREFIX)
    );
    assert_eq!(
        files(&safety),
        before,
        "the files that were there are kept, byte for byte"
    );
    assert_eq!(
        files(&taken),
        backup_files,
        "the backup itself is untouched"
    );
    assert!(
        names_with_prefix(&store, ".persnap").is_empty(),
        "no staging left"
    );
    let runs = history.load().unwrap();
    let last = runs.last().unwrap();
    assert_eq!(
        (last.kind, &last.outcome),
        (RunKind::Restore, &Outcome::Completed)
    );
    assert_eq!(last.source, taken);

    // The correlator can use it: a writer runs on the restored store.
    let writer = Writer::start(&db);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(writer.stop().transactions > 0);
    assert!(transfers(&db) > expected);
}

#[test]
fn restore_round_trip_of_a_live_written_database_rollback_journal() {
    round_trip(
        Mode::Rollback,
        "restore_round_trip_of_a_live_written_database_rollback_journal",
    );
}

#[test]
fn restore_round_trip_of_a_live_written_database_wal() {
    round_trip(
        Mode::Wal,
        "restore_round_trip_of_a_live_written_database_wal",
    );
}

/// Stores made with sqlite-online (no root needed) for the refusals.
fn online_fixture() -> (
    tempfile::TempDir,
    PathBuf,
    Destination,
    tempfile::TempDir,
    PathBuf,
) {
    let store = tempfile::tempdir().unwrap();
    let db = make_store(store.path(), "persistence.db", Mode::Rollback, 2);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let taken = backup(
        store.path(),
        &dest.backups,
        Method::SqliteOnline,
        &mut history,
    );
    (store, db, dest, data, taken)
}

#[test]
fn restore_is_refused_while_a_process_holds_the_database_open() {
    let (store, db, _dest, data, taken) = online_fixture();
    let before = files(store.path());
    // A correlator stand-in: another process holding the file open.
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .stdin(std::fs::File::open(&db).unwrap())
        .spawn()
        .unwrap();
    let err = restore(&taken, store.path(), &mut History::at(data.path())).unwrap_err();
    let _ = holder.kill();
    let _ = holder.wait();
    let text = err.to_string();
    assert!(text.contains("Stop the correlator first"), "{text}");
    assert!(
        text.contains(&format!("process {} (sleep)", holder.id())),
        "names who holds it: {text}"
    );
    assert_eq!(err.kind().exit_code(), 7);
    assert_eq!(files(store.path()), before, "the store is untouched");
    assert!(
        std::fs::read_dir(store.path())
            .unwrap()
            .all(|e| e.unwrap().path().is_file()),
        "no safety or staging folder"
    );
    let runs = History::at(data.path()).load().unwrap();
    assert!(
        matches!(runs.last().unwrap().outcome, Outcome::Failed { .. }),
        "the refusal is recorded"
    );
}

#[test]
fn a_damaged_backup_is_refused_and_the_store_left_alone() {
    let (store, _db, _dest, data, taken) = online_fixture();
    let before = files(store.path());
    let main = taken.join("persistence.db");
    let mut bytes = std::fs::read(&main).unwrap();
    bytes[5000] ^= 0x55;
    std::fs::write(&main, bytes).unwrap();
    let err = restore(&taken, store.path(), &mut History::at(data.path())).unwrap_err();
    assert!(err.to_string().contains("incomplete or altered"), "{err}");
    assert_eq!(files(store.path()), before);
    assert_eq!(
        std::fs::read_dir(store.path()).unwrap().count(),
        before.len(),
        "nothing added"
    );
}

#[test]
fn restore_into_a_new_folder_and_through_the_cli() {
    let (_store, _db, _dest, data, taken) = online_fixture();
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("new-store");
    let report = restore(&taken, &fresh, &mut History::at(data.path())).unwrap();
    assert!(report.safety_dir.is_none(), "nothing to keep aside");
    assert_eq!(files(&fresh).len(), 1);
    transfers(&fresh.join("persistence.db"));

    if !require_root("restore_into_a_new_folder_and_through_the_cli (CLI part)") {
        return;
    }
    // Again over it, through the CLI and the helper: the first restore's
    // file goes to a safety folder. The helper restores only into a
    // protected database's folder, as its (non-root) owner.
    let registry = persnap::registry::Registry::at(data.path().join("databases"));
    registry
        .add(&persnap::registry::Database::new(
            "fresh",
            std::fs::canonicalize(&fresh).unwrap(),
            "persistence.db",
        ))
        .unwrap();
    std::os::unix::fs::chown(&fresh, Some(65534), Some(65534)).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(bin("persnap"))
            .args(args)
            .env("PERSNAP_DATA_DIR", data.path())
            .env("PERSNAP_REGISTRY_DIR", registry.dir())
            .output()
            .unwrap()
    };
    let out = cli(&[
        "restore",
        taken.to_str().unwrap(),
        "--to",
        fresh.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        fresh.join("persistence.db").to_str().unwrap()
    );
    assert!(
        stderr(&out).contains("newer Apama version"),
        "the version warning is shown: {}",
        stderr(&out)
    );
    assert_eq!(names_with_prefix(&fresh, SAFETY_PREFIX).len(), 1);
    use std::os::unix::fs::MetadataExt;
    let restored = std::fs::metadata(fresh.join("persistence.db")).unwrap();
    assert_eq!(restored.uid(), 65534, "written as the folder's owner");
    let bad = cli(&[
        "restore",
        fresh.to_str().unwrap(),
        "--to",
        parent.path().to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
