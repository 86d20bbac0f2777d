//! Fault injection: nothing is ever lost or left behind (needs root).
//!
//! - the helper SIGKILLed right after the snapshot, mid-copy and mid-verify:
//!   the next run leaves no snapshot or `.partial`, history says interrupted;
//! - the backup location fills up mid-copy: a clear error, `.partial`
//!   removed, nothing recorded as good;
//! - the source folder removed mid-backup;
//! - 100 consecutive backups under a live writer, all consistent.
#![cfg(target_os = "linux")]

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use persnap::backup::{BackupRequest, run_backup};
use persnap::history::{History, Outcome};
use persnap::loadgen::Mode;
use persnap::progress::{CancelToken, Phase, Silent};

/// The pid of the persnap-helper whose parent is `parent`.
fn helper_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent) && String::from_utf8_lossy(&cmd).contains("persnap-helper")
        })
}

/// Run the CLI; SIGKILL its helper when stderr shows `trigger`.
fn kill_helper_at(store: &Path, dest: &Path, data: &Path, trigger: &str) -> String {
    let mut cli = Command::new(bin("persnap"))
        .args([
            "backup",
            "--source",
            store.to_str().unwrap(),
            "--dest",
            dest.to_str().unwrap(),
        ])
        .env("PERSNAP_DATA_DIR", data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut killed = false;
    for line in BufReader::new(cli.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if !killed && line.contains(trigger) {
            let helper = helper_of(cli.id()).expect("the helper runs");
            unsafe { libc::kill(helper as i32, libc::SIGKILL) };
            killed = true;
        }
    }
    let status = cli.wait().unwrap();
    assert!(killed, "never saw {trigger:?}:\n{seen}");
    assert_eq!(
        status.code(),
        Some(1),
        "the CLI reports the helper's death:\n{seen}"
    );
    assert!(seen.contains("stopped unexpectedly"), "{seen}");
    seen
}

#[test]
fn helper_killed_after_snapshot_mid_copy_and_mid_verify() {
    if !require_root("helper_killed_after_snapshot_mid_copy_and_mid_verify") {
        return;
    }
    let (vol, store) = LoopVolume::btrfs_with_subvolume(600);
    make_store(&store, "persistence.db", Mode::Rollback, 120);
    let dest = tempfile::Builder::new()
        .prefix("persnap-faults-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    for (i, trigger) in ["Created snapshot", "== copy", "== verify"]
        .into_iter()
        .enumerate()
    {
        kill_helper_at(&store, dest.path(), data.path(), trigger);
        // Killed outright: its leftovers stay until a sweep, which any
        // backup makes of every mount, also one of another module's tests
        // running beside this one: that the kill came mid-run is shown by
        // the history (interrupted), and that nothing stays, below.
        let history = History::at(data.path());
        assert_eq!(
            history.recover().unwrap().len(),
            1,
            "{trigger}: the run becomes interrupted"
        );
        assert_eq!(history.load().unwrap()[i].outcome, Outcome::Interrupted);
        let cleanup = persnap(data.path(), &["cleanup"]);
        assert!(cleanup.status.success(), "{}", stderr(&cleanup));
        assert!(
            vol.snapshot_leftovers().is_empty(),
            "{trigger}: snapshot swept"
        );
        assert!(
            work_leftovers(dest.path()).is_empty(),
            "{trigger}: .partial swept"
        );
    }
    let ok = persnap(
        data.path(),
        &[
            "backup",
            "--source",
            store.to_str().unwrap(),
            "--dest",
            dest.path().to_str().unwrap(),
        ],
    );
    assert!(
        ok.status.success(),
        "a clean run afterwards: {}",
        stderr(&ok)
    );
}

#[test]
fn destination_filling_up_mid_copy() {
    if !require_root("destination_filling_up_mid_copy") {
        return;
    }
    let (vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Wal, 16);
    let small = LoopVolume::new("ext4", 64);
    let mut history = History::at(tempfile::tempdir().unwrap().keep());
    // Enough room at the check; then something else takes the space.
    let filler = small.mount.join("someone-elses-file");
    let mut fill = OnPhase(|phase| {
        if phase != Phase::Copy {
            return;
        }
        let free = persnap::fsutil::free_space(&small.mount).unwrap();
        let f = std::fs::File::create(&filler).unwrap();
        let _ = f.set_len(0);
        let _ = Command::new("fallocate")
            .args(["-l", &(free - 1_000_000).to_string()])
            .arg(&filler)
            .status();
    });
    let failure = run_backup(
        &BackupRequest::new(&store, &small.mount),
        &mut history,
        &mut fill,
        &CancelToken::new(),
    )
    .unwrap_err();
    let message = failure.error.to_string();
    assert_eq!(failure.error.kind().exit_code(), 4, "{message}");
    assert!(
        message.contains("No space left") && message.contains("free space"),
        "{message}"
    );
    assert!(work_leftovers(&small.mount).is_empty(), ".partial removed");
    assert!(vol.snapshot_leftovers().is_empty());
    assert_eq!(history.load().unwrap()[0].outcome.label(), "failed");

    // And when it does not fit from the start, it says so before copying.
    std::fs::remove_file(&filler).unwrap();
    let big = LoopVolume::new("ext4", 24);
    let failure = run_backup(
        &BackupRequest::new(&store, &big.mount),
        &mut history,
        &mut Silent,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert_eq!(failure.step, Phase::Prepare);
    assert!(
        failure
            .error
            .to_string()
            .starts_with("Not enough free space"),
        "{}",
        failure.error
    );
    assert!(vol.snapshot_leftovers().is_empty());
}

#[test]
fn source_folder_removed_mid_backup() {
    if !require_root("source_folder_removed_mid_backup") {
        return;
    }
    let (vol, store) = LoopVolume::btrfs_with_subvolume(300);
    make_store(&store, "persistence.db", Mode::Rollback, 8);
    let Destination {
        mut history,
        backups,
        dir: _keep,
    } = Destination::new();

    // Removed once the snapshot exists: the snapshot still has it, and the
    // backup (of the moment of the snapshot) is complete and verified.
    let mut remove = OnPhase(|phase| {
        if phase == Phase::Copy {
            for f in std::fs::read_dir(&store).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
    });
    let report = run_backup(
        &BackupRequest::new(&store, &backups),
        &mut history,
        &mut remove,
        &CancelToken::new(),
    )
    .unwrap();
    check_backup(&report.backup_dir, "persistence.db");

    // Removed before the snapshot: the snapshot shows no store; a clear error.
    make_store(&store, "persistence.db", Mode::Rollback, 1);
    let mut remove = OnPhase(|phase| {
        if phase == Phase::Snapshot {
            std::fs::remove_file(store.join("persistence.db")).unwrap();
        }
    });
    let failure = run_backup(
        &BackupRequest::new(&store, &backups),
        &mut history,
        &mut remove,
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(
        failure
            .error
            .to_string()
            .contains("No database file named persistence.db"),
        "{}",
        failure.error
    );
    assert!(vol.snapshot_leftovers().is_empty());
    assert!(work_leftovers(&backups).is_empty());
    assert_eq!(
        history.load().unwrap().last().unwrap().outcome.label(),
        "failed"
    );
}

#[test]
fn hundred_consecutive_backups_under_a_writer() {
    if !require_root("hundred_consecutive_backups_under_a_writer") {
        return;
    }
    let (vol, store) = LoopVolume::btrfs_with_subvolume(400);
    let db = make_store(&store, "persistence.db", Mode::Wal, 4);
    let Destination {
        mut history,
        backups,
        dir: _keep,
    } = Destination::new();
    let writer = Writer::start(&db);
    let mut last = -1;
    for i in 0..100 {
        let report = run_backup(
            &BackupRequest::new(&store, &backups),
            &mut history,
            &mut Silent,
            &CancelToken::new(),
        )
        .unwrap_or_else(|f| panic!("backup {i}: {}", f.error));
        let transfers = check_backup(&report.backup_dir, "persistence.db");
        assert!(transfers >= last, "backup {i} went back in time");
        last = transfers;
        std::fs::remove_dir_all(&report.backup_dir).unwrap();
    }
    let stats = writer.stop();
    eprintln!(
        "100 backups consistent; writer did {} transactions, worst commit {:.1} ms",
        stats.transactions, stats.max_commit_ms
    );
    assert!(vol.snapshot_leftovers().is_empty() && work_leftovers(&backups).is_empty());
    assert!(
        history
            .load()
            .unwrap()
            .iter()
            .all(|r| r.outcome == Outcome::Completed)
    );
}
