//! Retention on real backup folders: applied after a verified backup, by
//! `persnap prune` (with --dry-run), never touching what is not a good
//! persnap backup of this store, and finishing interrupted deletions.
#![cfg(target_os = "linux")]

use crate::common;

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
    std::fs::write(interrupted.join(persnap::retention::DELETION_MARKER), "").unwrap();
    let lines = persnap::backup::sweep_leftovers(std::slice::from_ref(&dest.backups));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Finished deleting old backup")),
        "{lines:?}"
    );
    assert!(!interrupted.exists());
}

/// `persnap prune --keep-last N` at `dest`.
fn prune_keep_last(data: &Path, dest: &Path, n: u32) -> std::process::Output {
    let out = persnap(
        data,
        &[
            "prune",
            "--dest",
            dest.to_str().unwrap(),
            "--keep-last",
            &n.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

#[test]
fn folders_planted_in_a_shared_location_push_out_no_real_backup() {
    if !require_root("folders_planted_in_a_shared_location_push_out_no_real_backup") {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let real: Vec<PathBuf> = (0..3)
        .map(|_| {
            backup(
                store.path(),
                &dest.backups,
                &mut history,
                RetentionPolicy::default(),
            )
        })
        .collect();
    // A co-writer (uid 65534) plants three folders named like newer
    // backups, each with a manifest copied from a real one saying
    // "verified", finished in the future.
    let manifest = std::fs::read_to_string(real[0].join("manifest.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let mut planted = Vec::new();
    for i in 0..3 {
        value["finished"] = serde_json::json!(format!("2099-01-0{}T00:00:00Z", i + 1));
        let dir = dest.backups.join(format!(
            "persistence.db-2099010{}T000000Z-0000000{i}",
            i + 1
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), value.to_string()).unwrap();
        std::os::unix::fs::lchown(dir.join("manifest.json"), Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::lchown(&dir, Some(65534), Some(65534)).unwrap();
        planted.push(dir);
    }
    prune_keep_last(data.path(), &dest.backups, 3);
    for dir in real.iter().chain(&planted) {
        assert!(dir.exists(), "{} was deleted", dir.display());
    }
    // Retention still works on what is ours: the oldest real one goes.
    prune_keep_last(data.path(), &dest.backups, 2);
    assert!(!real[0].exists() && real[1].exists() && real[2].exists());
    assert!(planted.iter().all(|p| p.exists()), "not ours to delete");
}

#[test]
fn a_backup_renamed_to_look_like_an_interrupted_deletion_survives_the_sweep() {
    let store = tempfile::tempdir().unwrap();
    make_store(store.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let pinned = backup(
        store.path(),
        &dest.backups,
        &mut history,
        RetentionPolicy::default(),
    );
    let plain = backup(
        store.path(),
        &dest.backups,
        &mut history,
        RetentionPolicy::default(),
    );
    let out = persnap(
        data.path(),
        &["pin", pinned.to_str().unwrap(), "--note", "keep"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Someone who may rename in the location sets both aside under the
    // name retention uses for a deletion in progress.
    let aside = |dir: &Path| {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let to = dir.with_file_name(format!("{}{name}", persnap::retention::DELETING_PREFIX));
        std::fs::rename(dir, &to).unwrap();
        to
    };
    let (pinned_aside, plain_aside) = (aside(&pinned), aside(&plain));
    let lines = persnap::backup::sweep_leftovers(std::slice::from_ref(&dest.backups));
    assert!(pinned_aside.join("manifest.json").exists(), "{lines:?}");
    assert!(plain_aside.join("manifest.json").exists(), "{lines:?}");
    // Even marked as ours, a pinned backup is never finished off.
    std::fs::write(pinned_aside.join(persnap::retention::DELETION_MARKER), "").unwrap();
    persnap::backup::sweep_leftovers(std::slice::from_ref(&dest.backups));
    assert!(pinned_aside.join("manifest.json").exists());
}

/// Two databases with the same store name backed up into one location
/// (the obvious setup): each one's retention keeps its own newest and
/// never deletes the other's.
#[test]
fn databases_sharing_a_location_never_prune_each_other() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    make_store(a.path(), "persistence.db", Mode::Wal, 1);
    make_store(b.path(), "persistence.db", Mode::Wal, 1);
    let dest = Destination::new();
    let data = tempfile::tempdir().unwrap();
    let mut history = History::at(data.path());
    let keep_one = RetentionPolicy {
        keep_last: Some(1),
        keep_days: None,
    };
    let b_first = backup(
        b.path(),
        &dest.backups,
        &mut history,
        RetentionPolicy::default(),
    );
    let a_first = backup(a.path(), &dest.backups, &mut history, keep_one);
    let a_second = backup(a.path(), &dest.backups, &mut history, keep_one);
    assert!(!a_first.exists(), "a's older backup goes, by its policy");
    assert!(a_second.exists());
    assert!(b_first.exists(), "b's only backup is not a's to delete");
}
