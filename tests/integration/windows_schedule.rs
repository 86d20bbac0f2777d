//! Windows scheduled runs with the real persnap.exe under wine: the exact
//! argument string a Task Scheduler task carries (the schedule's name; the
//! backup comes from its record) makes a backup recorded in the schedule's
//! history as scheduled (paths with spaces and `%` included), and `persnap schedule toast` (how a failed run tells the user)
//! puts a balloon — a toast on Windows 10 and later — into the notification
//! area and removes it again. Starting the toast in another user's session
//! needs SYSTEM and a real Windows; not here.
#![cfg(windows)]

use std::os::windows::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use persnap::history::{History, Outcome};
use persnap::loadgen::{self, Mode};
use persnap::schedule::{Schedule, When, taskschd};

fn persnap_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("persnap.exe")
}

#[test]
fn a_toast_is_shown_in_the_notification_area() {
    let out = Command::new(persnap_exe())
        .args([
            "schedule",
            "toast",
            "--summary",
            "persnap: the scheduled backup “nightly” failed",
            "--body",
            "C:\\Apama\\store: failed during snapshot: insufficient storage",
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Shown: persnap: the scheduled backup “nightly” failed"),
        "{said}"
    );
}

#[test]
fn the_tasks_arguments_make_a_scheduled_backup() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("my store");
    // Task Scheduler would expand %TEMP% on a task's command line; the
    // folder's name must reach the backup as it is.
    let dest = root.path().join("backups 100% %TEMP% & co");
    let history = root.path().join("op's history");
    for dir in [&src, &dest, &history] {
        std::fs::create_dir(dir).unwrap();
    }
    loadgen::init(&src.join("persistence.db"), Mode::Wal, 1).unwrap();
    let s = Schedule {
        name: "nightly".into(),
        source: persnap::volume::canonical(&src).unwrap(),
        dest: persnap::volume::canonical(&dest).unwrap(),
        store_name: "persistence.db".into(),
        method: "sqlite-online".parse().unwrap(),
        retention: persnap::retention::RetentionPolicy {
            keep_last: Some(2),
            keep_days: None,
        },
        pace: Default::default(),
        when: When::parse("02:00").unwrap(),
        history_dir: history.clone(),
        created: None,
        uid: None,
        run_as: None,
        password: Default::default(),
        repository: None,
        unlock: None,
        offsite: None,
        offsite_unlock: None,
        drill: false,
    };
    // The record in the administrators' schedules folder, as `schedule add`
    // leaves it, then exactly what the task's <Arguments> holds.
    let records = root.path().join("schedules");
    persnap::sys::create_admin_dir(&records).unwrap();
    // Where `schedule add` sends a SYSTEM run's history, the only place a
    // record may name.
    let mut s = s;
    s.history_dir = records.join("history").join("nightly");
    persnap::sys::create_admin_dir(&s.history_dir).unwrap();
    let history = s.history_dir.clone();
    std::fs::write(
        records.join("nightly.json"),
        serde_json::to_vec(&s).unwrap(),
    )
    .unwrap();
    let args = taskschd::arguments(&s);
    assert!(!args.contains('%'), "{args}");
    let out = Command::new(persnap_exe())
        .raw_arg(args)
        .env("PERSNAP_SCHEDULE_DIR", &records)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = History::at(&history).load().unwrap();
    let run = runs.last().expect("recorded in the schedule's history");
    assert_eq!(run.outcome, Outcome::Completed);
    assert_eq!(run.scheduled.as_deref(), Some("nightly"));
    assert_eq!(run.source, s.source);
    let backup = run.backup_path.clone().unwrap();
    assert!(backup.starts_with(&s.dest), "{}", backup.display());
}

/// A backup kept on a network share (`\\host\share`, and the long form
/// `\\?\UNC\host\share` a mapped drive canonicalizes to) is written,
/// verified and restored from there: SQLite must open it through its share
/// path. tests/windows/run.sh makes `PERSNAP_TEST_SHARE` a share onto
/// wine's temporary folder.
#[test]
fn a_backup_on_a_network_share_verifies_and_restores() {
    let Some(share) = std::env::var_os("PERSNAP_TEST_SHARE") else {
        assert!(
            std::env::var_os("PERSNAP_REQUIRE_ROOT_TESTS").is_none(),
            "CI sets up the share; it must not be skipped there"
        );
        eprintln!("SKIP: PERSNAP_TEST_SHARE is not set (tests/windows/run.sh sets it)");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("store");
    std::fs::create_dir(&src).unwrap();
    // A rollback journal, emptied after each commit: nothing to replay, so
    // verification opens the copy in place, through its share path.
    loadgen::init(&src.join("persistence.db"), Mode::Rollback, 1).unwrap();
    let below = root.path().file_name().unwrap();
    let on_share = PathBuf::from(&share)
        .join(below)
        .join("backups on the share");
    std::fs::create_dir(&on_share).unwrap();
    let history = root.path().join("history");
    let registry = root.path().join("registry");
    let persnap = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(persnap_exe())
            .args(args)
            .env("PERSNAP_DATA_DIR", &history)
            .env("PERSNAP_REGISTRY_DIR", &registry)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "persnap {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    persnap(&[
        "backup".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
        "--dest".as_ref(),
        on_share.as_os_str(),
        "--method".as_ref(),
        "sqlite-online".as_ref(),
    ]);
    let backup = std::fs::read_dir(&on_share)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("manifest.json").is_file())
        .expect("a finished backup on the share");
    let name = backup.file_name().unwrap().to_owned();
    let unc = on_share.join(&name);
    let verbatim = PathBuf::from(format!(
        r"\\?\UNC\{}",
        unc.to_string_lossy().trim_start_matches('\\')
    ));
    for path in [&unc, &verbatim] {
        persnap(&["verify".as_ref(), path.as_os_str()]);
    }
    // Back in place of the (protected) store it came from.
    let target = &src;
    persnap(&[
        "database".as_ref(),
        "add".as_ref(),
        "share-test".as_ref(),
        "--source".as_ref(),
        src.as_os_str(),
    ]);
    persnap(&[
        "restore".as_ref(),
        "--to".as_ref(),
        target.as_os_str(),
        verbatim.as_os_str(),
    ]);
    let conn = rusqlite::Connection::open(target.join("persistence.db")).unwrap();
    let report = loadgen::check_invariant(&conn).unwrap();
    assert!(
        report.accounts > 0,
        "the restored database holds the workload: {report:?}"
    );
}
