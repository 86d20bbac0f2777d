//! Backups of a live database on a real btrfs loop volume (needs root).
//!
//! A `persnap-loadgen` process writes invariant-keeping transfers the whole
//! time; every backup is checked with SQLite's integrity check AND the
//! invariant. Backup destinations are on the root disk, another filesystem,
//! as real backups are (a copy within one btrfs volume would be a reflink and
//! hide torn copies).
#![cfg(target_os = "linux")]

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;
use persnap::method::Method;
use persnap::pace::Pace;
use persnap::progress::{CancelToken, Phase, Silent};
use persnap::store::FileRole;

const BACKUPS_PER_MODE: usize = 20;

fn backups_under_writer(mode: Mode, test: &str) {
    if !require_root(test) {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(400);
    let db = make_store(&store_dir, "persistence.db", mode, 24);
    let Destination {
        mut history,
        backups,
        dir: _keep,
    } = Destination::new();
    let mut writer = Writer::start(&db);
    let mut last_transfers = -1;
    let mut mid_transaction = 0;
    // Rollback journal: gentle (the default); WAL: as fast as possible.
    let mut req = BackupRequest::new(&store_dir, &backups);
    if mode == Mode::Wal {
        req.pace = Pace::Fast;
    }
    for i in 0..BACKUPS_PER_MODE {
        let report = run_backup(&req, &mut history, &mut Silent, &CancelToken::new())
            .unwrap_or_else(|f| panic!("backup {i} failed during {}: {}", f.step, f.error));
        assert_eq!(report.manifest.method, Method::Btrfs);
        assert_eq!(report.manifest.verification.integrity, "ok");
        let companion = if mode == Mode::Wal {
            FileRole::Wal
        } else {
            FileRole::Journal
        };
        if report
            .manifest
            .files
            .iter()
            .any(|f| f.role == companion && f.size > 0)
        {
            mid_transaction += 1;
        }
        let transfers = check_backup(&report.backup_dir, "persistence.db");
        assert!(
            transfers > last_transfers,
            "backup {i} saw {transfers} transfers after {last_transfers}: writer stalled?"
        );
        last_transfers = transfers;
        assert!(writer.is_running(), "writer died during backup {i}");
    }
    let stats = writer.stop();
    eprintln!(
        "{test}: {BACKUPS_PER_MODE} backups consistent; {mid_transaction} captured a non-empty {mode:?} companion file; \
         writer did {} transactions, worst commit {:.1} ms",
        stats.transactions, stats.max_commit_ms
    );
    assert!(vol.snapshot_leftovers().is_empty(), "snapshots left behind");
    assert!(
        work_leftovers(&backups).is_empty(),
        "work folders left behind"
    );
    let runs = history.load().unwrap();
    assert_eq!(runs.len(), BACKUPS_PER_MODE);
    assert!(
        runs.iter()
            .all(|r| r.outcome == Outcome::Completed && r.verification.is_some())
    );
    assert!(runs.iter().all(|r| r.pace == Some(req.pace)));
}

/// A gentle backup of a store big enough for hundreds of steps, under a
/// writer committing 100 times a second as a correlator does: it finishes,
/// every copy is consistent, and it did rest (and a fast one did not).
#[test]
fn gentle_backup_of_a_live_store_is_consistent_and_finishes() {
    if !require_root("gentle_backup_of_a_live_store_is_consistent_and_finishes") {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(900);
    let db = make_store(&store_dir, "persistence.db", Mode::Rollback, 200);
    let Destination {
        mut history,
        backups,
        dir: _keep,
    } = Destination::new();
    let mut writer = Writer::start_at_rate(&db, 100.0);
    for pace in [Pace::Gentle, Pace::Fast, Pace::Gentle] {
        let mut req = BackupRequest::new(&store_dir, &backups);
        req.pace = pace;
        let report = run_backup(&req, &mut history, &mut Silent, &CancelToken::new())
            .unwrap_or_else(|f| panic!("{pace} backup failed during {}: {}", f.step, f.error));
        check_backup(&report.backup_dir, "persistence.db");
        assert_eq!(report.run.pace, Some(pace));
        match pace {
            Pace::Fast => assert_eq!(report.run.rested_secs, None),
            _ => assert!(
                report.run.rested_secs.is_some_and(|s| s > 0.0),
                "a gentle backup of 200 MiB rests between steps: {:?}",
                report.run.rested_secs
            ),
        }
        eprintln!(
            "{pace}: {:.2} s, rested {:.2} s",
            report.run.duration_secs.unwrap_or_default(),
            report.run.rested_secs.unwrap_or_default()
        );
        assert!(writer.is_running(), "writer died during the {pace} backup");
    }
    let stats = writer.stop();
    eprintln!(
        "writer: {} commits, worst {:.1} ms, p99 {:.1} ms",
        stats.transactions, stats.max_commit_ms, stats.p99_commit_ms
    );
    assert!(vol.snapshot_leftovers().is_empty(), "snapshots left behind");
    assert!(
        work_leftovers(&backups).is_empty(),
        "work folders left behind"
    );
}

#[test]
fn twenty_backups_under_writer_rollback_journal() {
    backups_under_writer(
        Mode::Rollback,
        "twenty_backups_under_writer_rollback_journal",
    );
}

#[test]
fn twenty_backups_under_writer_wal() {
    backups_under_writer(Mode::Wal, "twenty_backups_under_writer_wal");
}

/// The checks above are not vacuous: a plain copy of the live files, taken
/// under the same writer, is caught as torn.
#[test]
fn plain_live_copy_is_caught_as_torn() {
    if !require_root("plain_live_copy_is_caught_as_torn") {
        return;
    }
    let (_vol, store_dir) = LoopVolume::btrfs_with_subvolume(400);
    let db = make_store(&store_dir, "persistence.db", Mode::Rollback, 24);
    let writer = Writer::start(&db);
    let copies = tempfile::tempdir().unwrap();
    let mut torn = None;
    for attempt in 0..40 {
        let dir = copies.path().join(attempt.to_string());
        std::fs::create_dir(&dir).unwrap();
        for name in ["persistence.db", "persistence.db-journal"] {
            let _ = std::fs::copy(store_dir.join(name), dir.join(name)); // the journal may come and go
        }
        if let Err(why) = consistency(&dir, "persistence.db") {
            torn = Some((attempt + 1, why));
            break;
        }
    }
    writer.stop();
    let (attempts, why) = torn.expect(
        "40 plain copies of a live database all looked consistent: the checks are too weak",
    );
    eprintln!("plain copy torn after {attempts} attempt(s): {why}");
}

/// After a failure once the snapshot exists: no snapshot, no work folder,
/// and the run is recorded, but not as Completed.
fn assert_nothing_left(vol: &LoopVolume, backups: &Path, history: &History, expected: &str) {
    assert!(
        vol.snapshot_leftovers().is_empty(),
        "snapshot left behind: {:?}",
        vol.snapshot_leftovers()
    );
    assert!(
        work_leftovers(backups).is_empty(),
        "work folder left behind: {:?}",
        work_leftovers(backups)
    );
    assert_eq!(
        std::fs::read_dir(backups).unwrap().count(),
        0,
        "nothing may be kept"
    );
    let run = history.load().unwrap().pop().expect("run recorded");
    assert_eq!(run.outcome.label(), expected, "{:?}", run.outcome);
    assert!(run.backup_path.is_none());
}

#[test]
fn failure_after_snapshot_leaves_nothing_behind() {
    if !require_root("failure_after_snapshot_leaves_nothing_behind") {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store_dir, "persistence.db", Mode::Rollback, 4);
    let Destination {
        mut history,
        backups,
        dir: _keep,
    } = Destination::new();
    let req = BackupRequest::new(&store_dir, &backups);

    // 1. An I/O error: the .partial folder vanishes as the copy starts.
    let mut sabotage = OnPhase(|phase| {
        if phase == Phase::Copy {
            assert_eq!(
                vol.snapshot_leftovers().len(),
                1,
                "the snapshot exists when the copy starts"
            );
            for name in work_leftovers(&backups) {
                std::fs::remove_dir_all(backups.join(name)).unwrap();
            }
        }
    });
    let failure = run_backup(&req, &mut history, &mut sabotage, &CancelToken::new()).unwrap_err();
    assert_eq!(failure.step, Phase::Copy);
    assert!(
        failure.error.to_string().contains("Could not create"),
        "{}",
        failure.error
    );
    assert_nothing_left(&vol, &backups, &history, "failed");

    // 2. A cancel (Ctrl-C, the GUI's Cancel button) once the snapshot exists.
    let cancel = CancelToken::new();
    let mut cancel_at_copy = OnPhase(|phase| {
        if phase == Phase::Copy {
            cancel.cancel();
        }
    });
    let failure = run_backup(&req, &mut history, &mut cancel_at_copy, &cancel).unwrap_err();
    assert!(matches!(failure.error, persnap::Error::Cancelled));
    assert_nothing_left(&vol, &backups, &history, "cancelled");

    // 3. A panic (a bug) once the snapshot exists.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut bug = OnPhase(|phase| assert_ne!(phase, Phase::Copy, "injected bug"));
        let _ = run_backup(&req, &mut history, &mut bug, &CancelToken::new());
    }));
    assert!(panicked.is_err(), "the panic propagates to the caller");
    assert_nothing_left(&vol, &backups, &history, "failed");

    // 4. Verification fails: a byte of the copy changes before it is checked.
    let mut corrupt = OnPhase(|phase| {
        if phase == Phase::Verify {
            let partial = backups
                .join(&work_leftovers(&backups)[0])
                .join("persistence.db");
            let mut bytes = std::fs::read(&partial).unwrap();
            bytes[5000] ^= 0xff;
            std::fs::write(&partial, bytes).unwrap();
        }
    });
    let failure = run_backup(&req, &mut history, &mut corrupt, &CancelToken::new()).unwrap_err();
    assert_eq!(
        (failure.step, failure.error.kind().exit_code()),
        (Phase::Verify, 5),
        "{}",
        failure.error
    );
    assert_nothing_left(&vol, &backups, &history, "failed");
}

#[test]
fn sweep_removes_only_leftover_persnap_snapshots() {
    if !require_root("sweep_removes_only_leftover_persnap_snapshots") {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store_dir, "persistence.db", Mode::Wal, 2);
    let m = &vol.mount;
    let snapshot = |name: &str, readonly: bool| {
        let mut cmd = Command::new("btrfs");
        cmd.args(["subvolume", "snapshot"]);
        if readonly {
            cmd.arg("-r");
        }
        run_ok(cmd.arg(&store_dir).arg(m.join(name)));
    };
    snapshot(".persnap-snapshot-0badf00d", true); // leftover of a killed run
    snapshot(".persnap-snapshot-writable", false); // not read-only: not ours
    snapshot("users-own-snapshot", true); // no tag: not ours
    std::fs::create_dir(m.join(".persnap-snapshot-plaindir")).unwrap(); // not a subvolume
    let live = persnap::fsutil::RunLock::acquire("1ive1ive").unwrap();
    snapshot(".persnap-snapshot-1ive1ive", true); // its run is alive

    let data = tempfile::tempdir().unwrap();
    let out = persnap(data.path(), &["cleanup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The leftover is gone; the output need not say so: every backup
    // sweeps every mount, so one running alongside (another test) may
    // have removed it first, with the same code.
    let mut left = names_with_prefix(m, "");
    left.sort();
    assert_eq!(
        left,
        [
            ".persnap-snapshot-1ive1ive",
            ".persnap-snapshot-plaindir",
            ".persnap-snapshot-writable",
            "apama",
            "users-own-snapshot"
        ]
    );
    drop(live);
    let out = persnap(data.path(), &["cleanup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Gone once its run is gone (whoever's sweep removed it: a backup of
    // another test sweeps every mount too, so the output need not say so).
    assert!(
        !names_with_prefix(m, "").contains(&".persnap-snapshot-1ive1ive".to_owned()),
        "removed once its run is gone: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A folder whose subvolume the mount does not show cannot be snapshotted
/// (asked for btrfs, persnap names the method that applies), but it can be
/// cloned: `auto` takes a copy-on-write clone under SQLite's lock instead.
#[test]
fn folder_whose_subvolume_is_hidden_is_cloned_not_snapshotted() {
    if !require_root("folder_whose_subvolume_is_hidden_is_cloned_not_snapshotted") {
        return;
    }
    let (vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    let inner = store_dir.join("inner");
    std::fs::create_dir(&inner).unwrap();
    make_store(&inner, "persistence.db", Mode::Rollback, 1);
    let bind = vol.dir.path().join("bind");
    std::fs::create_dir(&bind).unwrap();
    run_ok(Command::new("mount").arg("--bind").arg(&inner).arg(&bind));
    let data = tempfile::tempdir().unwrap();
    let backup = |method: &str| {
        persnap(
            data.path(),
            &[
                "backup",
                "--source",
                bind.to_str().unwrap(),
                "--dest",
                data.path().to_str().unwrap(),
                "--method",
                method,
            ],
        )
    };
    let snapshot = backup("btrfs");
    let cloned = backup("auto");
    run_ok(Command::new("umount").arg(&bind));
    assert_eq!(snapshot.status.code(), Some(2), "{}", stderr(&snapshot));
    let err = stderr(&snapshot);
    assert!(err.contains("the reflink method applies here"), "{err}");
    assert!(cloned.status.success(), "{}", stderr(&cloned));
    let set = std::path::PathBuf::from(String::from_utf8_lossy(&cloned.stdout).trim());
    let manifest = persnap::manifest::read(&set).unwrap();
    assert_eq!(manifest.method, Method::Reflink);
    check_backup(&set, "persistence.db");
    assert!(vol.snapshot_leftovers().is_empty());
    assert!(names_with_prefix(&inner, ".persnap-clone-").is_empty());
}

#[test]
fn cli_backup_then_verify_detects_tampering() {
    if !require_root("cli_backup_then_verify_detects_tampering") {
        return;
    }
    let (_vol, store_dir) = LoopVolume::btrfs_with_subvolume(300);
    let db = make_store(&store_dir, "store.db", Mode::Wal, 6);
    let writer = Writer::start(&db);
    let data = tempfile::tempdir().unwrap();
    let out = persnap(
        data.path(),
        &[
            "backup",
            "--source",
            store_dir.to_str().unwrap(),
            "--dest",
            data.path().to_str().unwrap(),
            "--store-name",
            "store.db",
        ],
    );
    writer.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    let backup = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        backup.starts_with(data.path().to_str().unwrap()) && backup.contains("store.db-"),
        "prints the path: {backup}"
    );
    check_backup(Path::new(&backup), "store.db");

    let ok = persnap(data.path(), &["verify", &backup]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK:"));

    let history = persnap(data.path(), &["history", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs[0]["outcome"]["status"], "completed");
    assert_eq!(runs[0]["backup_path"], backup.as_str());
    assert_eq!(runs[0]["verification"]["integrity"], "ok");

    let main = Path::new(&backup).join("store.db");
    let mut bytes = std::fs::read(&main).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&main, &bytes).unwrap();
    let bad = persnap(data.path(), &["verify", &backup]);
    assert_eq!(bad.status.code(), Some(5), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("does not match its recorded SHA-256"),
        "{}",
        stderr(&bad)
    );

    std::fs::write(Path::new(&backup).join("stray"), b"x").unwrap();
    let stray = persnap(data.path(), &["verify", &backup]);
    assert_eq!(stray.status.code(), Some(5));
    assert!(stderr(&stray).contains("stray"), "{}", stderr(&stray));
}

#[test]
fn auto_refuses_a_volume_without_snapshots() {
    if !require_root("auto_refuses_a_volume_without_snapshots") {
        return;
    }
    let vol = LoopVolume::new("ext4", 64);
    make_store(&vol.mount, "persistence.db", Mode::Rollback, 1);
    let data = tempfile::tempdir().unwrap();
    let src = vol.mount.to_str().unwrap();
    let dest = data.path().to_str().unwrap();
    let out = persnap(data.path(), &["backup", "--source", src, "--dest", dest]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("No snapshot is possible")
            && err.contains("ext4")
            && err.contains("never copies live"),
        "{err}"
    );
    let explicit = persnap(
        data.path(),
        &[
            "backup", "--source", src, "--dest", dest, "--method", "btrfs",
        ],
    );
    assert_eq!(explicit.status.code(), Some(2), "{}", stderr(&explicit));
    assert!(
        stderr(&explicit).contains("The btrfs method does not apply"),
        "{}",
        stderr(&explicit)
    );
    assert_eq!(work_leftovers(data.path()), Vec::<String>::new());
}

#[test]
fn verification_scratch_copy_is_a_reflink_on_btrfs_and_xfs() {
    if !require_root("verification_scratch_copy_is_a_reflink_on_btrfs_and_xfs") {
        return;
    }
    for fs in ["btrfs", "xfs", "ext4"] {
        let vol = LoopVolume::new(fs, 300);
        let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 253) as u8).collect();
        let src = vol.mount.join("a");
        std::fs::write(&src, &data).unwrap();
        let cancel = CancelToken::new();
        let mut meter = persnap::copy::Meter {
            phase: Phase::Verify,
            done: 0,
            total: 0,
            progress: &mut Silent,
            cancel: &cancel,
            pacer: persnap::pace::Pacer::fast(),
        };
        let (size, sha) =
            persnap::copy::scratch_copy(&src, &vol.mount.join("b"), &mut meter).unwrap();
        assert_eq!(
            std::fs::read(vol.mount.join("b")).unwrap(),
            data,
            "{fs}: same bytes"
        );
        let (_, expected) = persnap::copy::hash_file(&src, &mut meter).unwrap();
        assert_eq!(
            (size, sha),
            (data.len() as u64, expected),
            "{fs}: hash of the source"
        );
        run_ok(&mut Command::new("sync"));
        let extents = run_ok(Command::new("filefrag").arg("-v").arg(vol.mount.join("b")));
        let shared = extents.contains("shared");
        assert_eq!(
            shared,
            fs != "ext4",
            "{fs}: reflinked where the filesystem can, copied elsewhere:\n{extents}"
        );
    }
}
