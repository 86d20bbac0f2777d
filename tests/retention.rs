//! Retention on real backup folders: applied after a verified backup, by
//! `persnap prune` (with --dry-run), never touching what is not a good
//! persnap backup of this store, and finishing interrupted deletions.
#![cfg(target_os = "linux")]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::History;
use persnap::loadgen::Mode;
use persnap::method::{Method, MethodChoice};
use persnap::progress::{CancelToken, Silent};
use persnap::retention::RetentionPolicy;

fn backup(
    source: &Path,
    dest: &Path,
    history: &mut History,
    retention: RetentionPolicy,
) -> PathBuf {
    let mut req = BackupRequest::new(source, dest);
    req.method = MethodChoice::Explicit(Method::SqliteOnline);
    req.retention = retention;
    run_backup(&req, history, &mut Silent, &CancelToken::new())
        .unwrap_or_else(|f| panic!("{}", f.error))
        .backup_dir
}

fn backups_in(dest: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    all.sort();
    all
}

#[test]
fn a_pinned_backup_outlives_any_retention() {
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let keep_all = RetentionPolicy::default();
    let first = backup(store.path(), &dest.backups, &mut history, keep_all);
    let out = persnap(
        data.path(),
        &[
            "pin",
            first.to_str().unwrap(),
            "--note",
            "before upgrading Apama to 10.15",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second = backup(store.path(), &dest.backups, &mut history, keep_all);
    let keep_one = RetentionPolicy {
        keep_last: Some(1),
        keep_days: None,
    };
    let third = backup(store.path(), &dest.backups, &mut history, keep_one);
    assert_eq!(
        backups_in(&dest.backups),
        {
            let mut kept = vec![first.clone(), third.clone()];
            kept.sort();
            kept
        },
        "the pinned one and the newest stay; the second went"
    );
    assert!(!second.exists());
    assert_eq!(
        persnap::pin::read(&first).unwrap().note,
        "before upgrading Apama to 10.15"
    );
    // The pinned backup still verifies: nothing was added to it.
    let out = persnap(data.path(), &["verify", first.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Unpinned, prune may take it.
    let out = persnap(data.path(), &["pin", first.to_str().unwrap(), "--remove"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = persnap(
        data.path(),
        &[
            "prune",
            "--dest",
            dest.backups.to_str().unwrap(),
            "--keep-last",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(backups_in(&dest.backups), [third]);
}

#[test]
fn retention_after_backups_and_by_prune() {
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let keep_all = RetentionPolicy::default();
    let mut made: Vec<PathBuf> = (0..4)
        .map(|_| backup(store.path(), &dest.backups, &mut history, keep_all))
        .collect();

    // Things that are not good backups of this store are never touched.
    let foreign = dest.backups.join("persistence.db-notes");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("readme.txt"), "mine").unwrap();
    let unreadable = dest
        .backups
        .join("persistence.db-20200101T000000Z-deadbeef");
    std::fs::create_dir(&unreadable).unwrap();
    std::fs::write(unreadable.join("manifest.json"), "{ not json").unwrap();

    // Keep the newest two, applied after the fifth backup verified.
    made.push(backup(
        store.path(),
        &dest.backups,
        &mut history,
        RetentionPolicy {
            keep_last: Some(2),
            keep_days: None,
        },
    ));
    let left = backups_in(&dest.backups);
    assert!(
        left.contains(&made[4]) && left.contains(&made[3]),
        "the newest two stay: {left:?}"
    );
    assert!(
        !made[..3].iter().any(|b| b.exists()),
        "older backups went: {left:?}"
    );
    assert!(foreign.join("readme.txt").is_file() && unreadable.join("manifest.json").is_file());

    // prune --dry-run lists, deletes nothing; prune deletes.
    let args = |extra: &[&str]| {
        let mut a = vec![
            "prune",
            "--dest",
            dest.backups.to_str().unwrap(),
            "--keep-last",
            "1",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let dry: Vec<String> = args(&["--dry-run"]);
    let out = persnap(
        data.path(),
        &dry.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Would delete {}", made[3].display())
    );
    assert!(made[3].exists(), "a dry run deletes nothing");
    let real: Vec<String> = args(&[]);
    let out = persnap(
        data.path(),
        &real.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !made[3].exists() && made[4].exists(),
        "the newest good backup is never deleted"
    );
    let nothing = persnap(
        data.path(),
        &["prune", "--dest", dest.backups.to_str().unwrap()],
    );
    assert_eq!(
        nothing.status.code(),
        Some(2),
        "no policy given: refused, {}",
        stderr(&nothing)
    );

    // A deletion interrupted after the rename is finished by the next sweep.
    let interrupted = dest
        .backups
        .join(".persnap-deleting-persistence.db-20200101T000000Z-0badf00d");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::write(interrupted.join("manifest.json"), "{}").unwrap();
    let lines = persnap::backup::sweep_leftovers(std::slice::from_ref(&dest.backups));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Finished deleting old backup")),
        "{lines:?}"
    );
    assert!(!interrupted.exists());
}
